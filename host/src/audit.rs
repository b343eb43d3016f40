//! The audit trail's rules: how an event is sealed into its stream (version and hash chain),
//! how a stream is verified, and how a message's state is folded from its events.
//!
//! Pure functions, but for [`verify_store`], which reads a store's streams and walks them;
//! the store decides where events live.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::chain::{self, Link, Tip, Walk, Walker};
pub use crate::chain::{Finding, GENESIS};
use crate::checkpoint::{Anchors, Checkpoint};
use crate::storage::{AuditDraft, AuditEvent, AuditItem, Storage, StorageError};

/// Appends one event of `kind` to `stream` at `at`, for a change already made: a failure
/// is logged, and the change stands.
pub(crate) fn record(
    storage: &dyn Storage,
    stream: &str,
    at: Timestamp,
    kind: &str,
    data: serde_json::Value,
) {
    if let Err(e) = storage.append(vec![AuditDraft::new(stream, at, kind, data)]) {
        tracing::error!(error = %e, stream, kind, "recording a change in the audit trail failed");
    }
}

/// Gives a draft its version and hash, after `head` (where the stream stands, if it has begun).
pub(crate) fn seal(head: Option<&Tip>, draft: AuditDraft) -> AuditEvent {
    let (version, prev) = match head {
        Some(head) => (head.position + 1, head.hash.clone()),
        None => (1, GENESIS.to_owned()),
    };
    let mut event = AuditEvent {
        message_id: draft.message_id,
        version,
        kind: draft.kind,
        data: draft.data,
        at: draft.at,
        prev,
        hash: String::new(),
    };
    event.hash = hash(&event);
    event
}

/// sha256 over the previous hash and every other field, in a fixed order.
fn hash(event: &AuditEvent) -> String {
    chain::digest(&[
        event.prev.as_bytes(),
        event.message_id.as_bytes(),
        &event.version.to_be_bytes(),
        event.kind.as_bytes(),
        event.at.to_string().as_bytes(),
        // serde_json writes object keys in sorted order: a stable encoding.
        serde_json::to_string(&event.data)
            .expect("JSON values serialize")
            .as_bytes(),
    ])
}

/// Walks every stream: versions must run 1, 2, 3…, each event must hash to its `hash`, and
/// each `prev` must be the hash before it. An edited, removed or reordered event breaks one
/// of these.
pub fn verify(streams: &BTreeMap<String, Vec<AuditEvent>>) -> Vec<Finding> {
    let mut walker = Walker::<String>::default();
    for (id, events) in streams {
        for event in events {
            step(walker.of(id.as_str(), || id.clone()), event);
        }
    }
    walker.finish().1
}

/// Checks the next event of the stream `walk` is on.
pub(crate) fn step(walk: &mut Walk, event: &AuditEvent) {
    if event.message_id != walk.stream() {
        let problem = format!(
            "event names stream {} but is stored in {}",
            event.message_id,
            walk.stream()
        );
        walk.found(walk.next(), problem);
    }
    walk.step(&Link {
        position: event.version,
        prev: &event.prev,
        hash: &event.hash,
        computed: hash(event),
    });
}

/// Verifies every stream `storage` keeps, the audit trail's and the entity streams (see
/// [`crate::entity::verify`]): how many there are, and what is wrong. The host's
/// `/v1/audit/verify` and the offline `dragoman audit verify --data-dir` both call it. The
/// store is walked event by event: memory holds one stream's last hash and the findings,
/// whatever the store's size.
///
/// # Errors
///
/// [`StorageError`] when the store cannot be read.
pub fn verify_store(storage: &dyn Storage) -> Result<(usize, Vec<Finding>), StorageError> {
    verify_store_against(storage, &[])
}

/// [`verify_store`], and every head the `checkpoints` signed must still be in its chain with
/// the hash they signed: a chain whose hashes were all recomputed after a change passes the
/// walk, not this. Memory also holds the checkpoints' heads.
///
/// # Errors
///
/// [`StorageError`] when the store cannot be read.
pub fn verify_store_against(
    storage: &dyn Storage,
    checkpoints: &[Checkpoint],
) -> Result<(usize, Vec<Finding>), StorageError> {
    verify_with(storage, checkpoints, None)
}

/// What verification asks of an archive beside the hot store (`archive::Archived`): to
/// check its own segments first, then to meet each hot stream where it starts.
pub(crate) trait ArchiveCheck {
    /// Checks every segment; checkpoint heads among the archived events go to `anchors`.
    fn check(&mut self, anchors: &mut Anchors) -> Vec<Finding>;
    /// A hot stream that starts without an anchor.
    fn fresh(&self, walk: &mut Walk);
    /// A hot stream's anchor.
    fn meet(&mut self, walk: &mut Walk, anchor: &crate::storage::Anchor);
    /// Archived streams no anchor met: the closed ones.
    fn archived_only(&self) -> usize;
}

/// [`verify_store_against`], and with `archived` the archive as well: its segments first,
/// then the hot store, each stream's start met by the archive. Without an archive, each
/// anchor is taken as it is, and checkpoint heads below it are left to a check with the
/// archive.
///
/// # Errors
///
/// [`StorageError`] when the store cannot be read.
pub(crate) fn verify_with(
    storage: &dyn Storage,
    checkpoints: &[Checkpoint],
    mut archived: Option<&mut (dyn ArchiveCheck + Send)>,
) -> Result<(usize, Vec<Finding>), StorageError> {
    let mut anchors = Anchors::new(checkpoints);
    let mut findings = Vec::new();
    if let Some(archived) = archived.as_deref_mut() {
        findings.extend(archived.check(&mut anchors));
    }
    let mut audit = Walker::<String>::default();
    storage.walk_audit(&mut |stream, item| {
        let walk = audit.of(stream, || stream.to_owned());
        match item {
            AuditItem::Anchor(anchor) => {
                match archived.as_deref_mut() {
                    Some(archived) => archived.meet(walk, &anchor),
                    None => anchors.archived(walk.stream(), anchor.version),
                }
                walk.resume(&anchor.tip());
                anchors.check(walk, anchor.version, &anchor.hash);
            }
            AuditItem::Event(event) => {
                if let Some(archived) = archived.as_deref_mut()
                    && walk.next() == 1
                {
                    archived.fresh(walk);
                }
                step(walk, &event);
                anchors.check(walk, event.version, &event.hash);
            }
        }
        Ok(())
    })?;
    let (mut audit_streams, audit_findings) = audit.finish();
    findings.extend(audit_findings);
    audit_streams += archived.map_or(0, |a| a.archived_only());
    let mut entities = Walker::default();
    storage.walk_entities(&mut |entity, event| {
        let walk = entities.of(entity, || entity.chain());
        crate::entity::step(walk, entity, &event);
        anchors.check(walk, event.seq, &event.hash);
        Ok(())
    })?;
    let (entity_streams, entity_findings) = entities.finish();
    findings.extend(entity_findings);
    findings.extend(anchors.finish());
    Ok((audit_streams + entity_streams, findings))
}

/// A message's state, folded from its audit events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    /// The message.
    pub message_id: String,
    /// Its route.
    pub route: Option<String>,
    /// Its idempotency key.
    pub idempotency_key: Option<String>,
    /// Where it stands: `received`, `committed`, `rejected`, `dead_lettered`, `published`,
    /// `discarded`.
    pub status: String,
    /// The plugin that translated it: `name@version`.
    pub plugin: Option<String>,
    /// The plugin's sha256.
    pub plugin_sha256: Option<String>,
    /// The events it became.
    pub events: Vec<String>,
    /// The sinks they go to.
    pub sinks: Vec<String>,
    /// Sink to event ids delivered there.
    pub delivered: BTreeMap<String, Vec<String>>,
    /// How many deliveries failed.
    pub failed_attempts: u64,
    /// How many redeliveries were answered from the stored outcome.
    pub duplicates: u64,
    /// The open dead letter entry, if any.
    pub dead_letter: Option<String>,
    /// The last error, if any.
    pub error: Option<String>,
    /// How many events the state was folded from.
    pub version: u64,
    /// When the last of them was recorded.
    pub updated_at: Option<Timestamp>,
}

/// Folds the events recorded at or before `at` (all of them when `None`).
pub fn fold(message_id: &str, events: &[AuditEvent], at: Option<Timestamp>) -> MessageState {
    let state = MessageState {
        message_id: message_id.into(),
        ..MessageState::default()
    };
    fold_from(state, events, at)
}

/// Folds on from `state` (the state through the events before `events`) the events
/// recorded at or before `at`.
// Long on purpose: one match over the event kinds, each arm a line or two of the state;
// split up, the fold would be harder to check against the list of kinds.
pub fn fold_from(
    mut state: MessageState,
    events: &[AuditEvent],
    at: Option<Timestamp>,
) -> MessageState {
    let text = |event: &AuditEvent, key: &str| {
        event
            .data
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    for event in events.iter().filter(|e| at.is_none_or(|at| e.at <= at)) {
        state.version = event.version;
        state.updated_at = Some(event.at);
        match event.kind.as_str() {
            "received" => {
                state.status = "received".into();
                state.route = text(event, "route");
                state.idempotency_key = text(event, "idempotency_key");
            }
            "deduplicated" => state.duplicates += 1,
            "translated" => {
                state.plugin = text(event, "plugin");
                state.plugin_sha256 = text(event, "sha256");
            }
            "committed" => {
                state.status = "committed".into();
                state.events = strings(&event.data["events"]);
                state.sinks = strings(&event.data["sinks"]);
                state.dead_letter = None;
                state.error = None;
                if state.events.is_empty() || state.sinks.is_empty() {
                    state.status = "published".into();
                }
            }
            "rejected" => {
                state.status = "rejected".into();
                state.error = text(event, "error");
                state.plugin = text(event, "plugin").or(state.plugin.take());
            }
            "publish_succeeded" => {
                if let (Some(sink), Some(id)) = (text(event, "sink"), text(event, "event")) {
                    state.delivered.entry(sink).or_default().push(id);
                }
                let all = state.sinks.iter().all(|sink| {
                    let done = state
                        .delivered
                        .get(sink)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    state.events.iter().all(|id| done.contains(id))
                });
                if all {
                    state.status = "published".into();
                }
            }
            "publish_failed" => {
                state.failed_attempts += 1;
                state.error = text(event, "error");
            }
            "dead_lettered" => {
                state.status = "dead_lettered".into();
                state.dead_letter = text(event, "dead_letter");
                state.error = text(event, "error").or(state.error.take());
            }
            "replayed" => {
                state.error = text(event, "error");
            }
            "discarded" => {
                state.status = "discarded".into();
                state.dead_letter = None;
            }
            _ => {}
        }
    }
    state
}

/// The strings of a JSON array (none for anything else).
fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
