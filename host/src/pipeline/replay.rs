//! Replay pinned to a version: the translation dead letters of a route that match a filter
//! (error code, the plugin version that failed them, when they were made), run through a
//! version of the route's plugin that the registry keeps (by default the active one): first
//! as a dry run that says what each would become and stores nothing, then for real, entry by
//! entry, each as `POST /v1/dlq/{id}/replay` does. Replaying twice duplicates nothing: an
//! entry that went through is gone, and one replay of an entry runs at a time.

use std::sync::Arc;

use jiff::Timestamp;

use super::Pipeline;
use super::routes::{Route, Version};
use super::vendor_message;
use crate::outcome::{Activated, BatchItem, ItemOutcome, ReplayedBatch, Unavailable};
use crate::registry::Selector;
use crate::storage::{DeadLetter, DeadLetterKind};

/// The most entries one batch takes.
pub const MAX_BATCH: usize = 10_000;

/// Which dead letters a batch replay takes: translation entries of `route`, and of those
/// the ones every given field matches.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// The route.
    pub route: String,
    /// The entry's code (the plugin's, or `plugin-fault`).
    pub code: Option<String>,
    /// The plugin version that failed the entry: its version, or a prefix of its sha256.
    pub plugin: Option<String>,
    /// Made at or after.
    pub since: Option<Timestamp>,
    /// Made before.
    pub until: Option<Timestamp>,
}

impl ReplayFilter {
    fn matches(&self, entry: &DeadLetter) -> bool {
        let plugin_matches = |plugin: &str| {
            let version = entry.plugin.rsplit_once('@').map_or("", |(_, v)| v);
            version == plugin || (plugin.len() >= 12 && entry.plugin_sha256.starts_with(plugin))
        };
        entry.kind == DeadLetterKind::Translation
            && self.code.as_ref().is_none_or(|c| *c == entry.code)
            && self.plugin.as_deref().is_none_or(plugin_matches)
            && self.since.is_none_or(|t| entry.created_at >= t)
            && self.until.is_none_or(|t| entry.created_at < t)
    }
}

impl Pipeline {
    /// Replays the entries `filter` matches through `target` (a kept version of the route's
    /// plugin; the active one when `None`), or with `dry_run` says what each would become.
    pub(crate) async fn replay_batch(
        &self,
        filter: ReplayFilter,
        target: Option<Selector>,
        dry_run: bool,
    ) -> ReplayedBatch {
        let Some(route) = self.core.routes.get(&filter.route).cloned() else {
            return ReplayedBatch::UnknownRoute {
                route: filter.route,
            };
        };
        let pipeline = self.clone();
        let found = tokio::task::spawn_blocking(move || {
            let version = pipeline.target(&route, target)?;
            let entries = matching(&*pipeline.core.storage, &filter)
                .map_err(|e| Box::new(Activated::Unavailable(super::storage_failure(&e))))?;
            Ok::<_, Box<Activated>>((route, version, entries))
        })
        .await;
        let (route, version, entries) = match found {
            Ok(Ok(found)) => found,
            Ok(Err(refused)) => return ReplayedBatch::Target(refused),
            Err(_) => {
                let failed = Unavailable::Internal("the replay task failed".into());
                return ReplayedBatch::Unavailable(failed);
            }
        };
        let mut items = Vec::with_capacity(entries.len());
        for entry in entries {
            let outcome = if dry_run {
                let (pipeline, route, version, id) = (
                    self.clone(),
                    route.clone(),
                    version.clone(),
                    entry.message_id.clone(),
                );
                tokio::task::spawn_blocking(move || pipeline.would(&route, &version, &id))
                    .await
                    .unwrap_or_else(|e| ItemOutcome::Fault(format!("the dry run failed: {e}")))
            } else {
                ItemOutcome::Replayed(self.replay_through(&entry.id, Some(version.clone())).await)
            };
            items.push(BatchItem {
                dead_letter: entry.id,
                message_id: entry.message_id,
                outcome,
            });
        }
        ReplayedBatch::Done {
            target: version.producer.clone(),
            dry_run,
            items,
        }
    }

    /// Replays one entry through the kept version `target` names (the active one when
    /// `None`).
    pub(crate) async fn replay_pinned(
        &self,
        id: &str,
        target: Option<Selector>,
    ) -> crate::outcome::Replayed {
        use crate::outcome::Replayed;
        let Some(selector) = target else {
            return self.replay(id).await;
        };
        let pipeline = self.clone();
        let owned = id.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            let entry = match pipeline.core.storage.dead_letter(&owned) {
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    return Err(Replayed::NotFound {
                        what: "dead letter",
                        id: owned,
                    });
                }
                Err(e) => return Err(Replayed::Unavailable(super::storage_failure(&e))),
            };
            let Some(route) = pipeline.core.routes.get(&entry.route).cloned() else {
                return Err(Replayed::RouteGone {
                    dead_letter: owned,
                    route: entry.route,
                });
            };
            pipeline
                .target(&route, Some(selector))
                .map_err(Replayed::Target)
        })
        .await;
        match found {
            Ok(Ok(version)) => self.replay_through(id, Some(version)).await,
            Ok(Err(answer)) => answer,
            Err(_) => Replayed::Unavailable(Unavailable::Internal("the replay task failed".into())),
        }
    }

    /// A version of `route`'s plugin to replay through: the kept one `selector` names
    /// (checked as an activation is), or the active one.
    pub(crate) fn target(
        &self,
        route: &Route,
        selector: Option<Selector>,
    ) -> Result<Arc<Version>, Box<Activated>> {
        let Some(selector) = selector else {
            return Ok(route.version());
        };
        let name = route.version().producer.name.clone();
        let checked = self.kept(&name, &selector)?;
        Ok(route.candidate(checked.plugin, checked.loaded))
    }

    /// What `version` would make of the message `id`, storing nothing.
    fn would(&self, route: &Route, version: &Version, id: &str) -> ItemOutcome {
        let record = match self.core.storage.message(id) {
            Ok(Some(record)) => record,
            Ok(None) => return ItemOutcome::Fault(format!("message {id} is no longer stored")),
            Err(e) => return ItemOutcome::Fault(e.to_string()),
        };
        if let Some(cut) = &record.cut {
            return ItemOutcome::Fault(format!(
                "only the first {} of the message's {} bytes are kept: it cannot be replayed",
                record.body.len(),
                cut.size
            ));
        }
        let message = vendor_message(
            record.id,
            record.content_type,
            route.headers.keep(record.headers),
            record.body,
        );
        match version
            .instances
            .get()
            .and_then(|mut session| session.translate(&message))
        {
            Ok(Ok(events)) => ItemOutcome::Events(events),
            Ok(Err(refused)) => {
                let (crate::plugin::TranslateError::Rejected(f)
                | crate::plugin::TranslateError::Transient(f)) = refused;
                ItemOutcome::Refused {
                    code: f.code,
                    message: f.message,
                }
            }
            Err(fault) => ItemOutcome::Fault(fault.to_string()),
        }
    }
}

/// The dead letters `filter` matches, oldest first, at most [`MAX_BATCH`].
pub(super) fn matching(
    storage: &dyn crate::storage::Storage,
    filter: &ReplayFilter,
) -> Result<Vec<DeadLetter>, crate::storage::StorageError> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page =
            storage.route_dead_letters(&filter.route, after.as_deref(), super::MAX_LISTING)?;
        let full = page.len() == super::MAX_LISTING;
        after = page.last().map(|e| e.id.clone());
        found.extend(page.into_iter().filter(|e| filter.matches(e)));
        if !full || found.len() >= MAX_BATCH {
            found.truncate(MAX_BATCH);
            return Ok(found);
        }
    }
}
