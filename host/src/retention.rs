//! The host's retention: at an interval, each route's audit history past its hot retention
//! moves to the archive ([`crate::archive::archive`]), and its message bodies past theirs are
//! removed. A body goes only when no dead letter names its message (a replay needs it) and
//! no sink still waits for an event older than it (a queued command is sent from it): the
//! oldest pending event bounds the pass.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::archive::{self, ArchiveError, Archiving, SegmentStore};
use crate::clock::Clock;
use crate::config::HotRetention;
use crate::storage::{Storage, StorageError};
use crate::telemetry::Metrics;

/// Messages one page of the bodies' pass reads.
const PAGE: usize = 1000;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Retained {
    /// The history archived.
    pub(crate) archived: Archiving,
    /// Bodies removed.
    pub(crate) bodies: u64,
}

/// Moves old history out and removes old bodies, for one store.
#[derive(Debug)]
pub(crate) struct Retention {
    storage: Arc<dyn Storage>,
    archive: Option<Arc<dyn SegmentStore>>,
    routes: BTreeMap<String, HotRetention>,
    interval: Duration,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Retention {
    /// `None` when no route keeps anything for a limited time.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        archive: Option<Arc<dyn SegmentStore>>,
        routes: BTreeMap<String, HotRetention>,
        interval: Duration,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        let limited = routes
            .values()
            .any(|r| r.bodies.is_some() || (r.history.is_some() && archive.is_some()));
        limited.then_some(Self {
            storage,
            archive,
            routes,
            interval,
            clock,
            metrics,
        })
    }

    /// Runs every interval until `cancel`.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut beat = crate::clock::Beat::new(self.interval).await;
        while beat.next(&cancel).await {
            let this = self.clone();
            let done = tokio::task::spawn_blocking(move || this.once())
                .await
                .map_err(|e| ArchiveError::Storage(StorageError::Backend(e.to_string())))
                .and_then(|done| done);
            match done {
                Ok(done) => {
                    self.metrics
                        .retained(done.archived.events, done.bodies, true);
                    tracing::info!(
                        segment = done.archived.segment.as_deref().unwrap_or(""),
                        events = done.archived.events,
                        streams = done.archived.streams,
                        bodies = done.bodies,
                        "retention ran"
                    );
                }
                Err(e) => {
                    self.metrics.retained(0, 0, false);
                    tracing::error!(error = %e, "retention failed this interval");
                }
            }
        }
    }

    /// One run, at the clock's now.
    ///
    /// # Errors
    ///
    /// When the store or the archive fails.
    pub(crate) fn once(&self) -> Result<Retained, ArchiveError> {
        let now = self.clock.now();
        let archived = match &self.archive {
            Some(store) => archive::archive(
                self.storage.as_ref(),
                store.as_ref(),
                &|route| self.routes.get(route).and_then(|r| r.history),
                now,
            )?,
            None => Archiving::default(),
        };
        let bodies = self.forget_bodies(now)?;
        Ok(Retained { archived, bodies })
    }

    /// Removes every body past its route's retention at `now` that nothing needs.
    fn forget_bodies(&self, now: Timestamp) -> Result<u64, StorageError> {
        let before = |keep: Duration| {
            jiff::SignedDuration::try_from(keep)
                .ok()
                .and_then(|keep| now.checked_sub(keep).ok())
        };
        let cutoffs: BTreeMap<&str, Timestamp> = self
            .routes
            .iter()
            .filter_map(|(route, r)| Some((route.as_str(), before(r.bodies?)?)))
            .collect();
        // Nothing received after the latest cut-off can go; nor after an event a sink still
        // waits for.
        let Some(mut until) = cutoffs.values().max().copied() else {
            return Ok(0);
        };
        if let Some(oldest) = self.storage.depths()?.oldest {
            until = until.min(oldest);
        }
        let kept = self.dead_lettered()?;
        let forget = |id: &str, route: &str, received: Timestamp| {
            if received >= until {
                return None;
            }
            let old = cutoffs.get(route).is_some_and(|cut| received < *cut);
            Some(old && !kept.contains(id))
        };
        let (mut removed, mut after) = (0, None);
        loop {
            let page = self
                .storage
                .forget_messages(after.as_deref(), PAGE, &forget)?;
            removed += page.removed;
            if page.ended || page.last.is_none() {
                return Ok(removed);
            }
            after = page.last;
        }
    }

    /// The messages dead letters name: their bodies stay. The channel is bounded per route.
    fn dead_lettered(&self) -> Result<HashSet<String>, StorageError> {
        let mut ids = HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.storage.dead_letters(after.as_deref(), PAGE)?;
            let full = page.len() == PAGE;
            after = page.last().map(|e| e.id.clone());
            ids.extend(page.into_iter().map(|e| e.message_id));
            if !full {
                return Ok(ids);
            }
        }
    }
}
