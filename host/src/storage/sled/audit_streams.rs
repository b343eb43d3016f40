//! Audit streams in the sled store: drafts sealed onto their message's stream, one record
//! per commit and stream. A stream is read for its head under the writer lock; a new
//! message's stream is sealed from its start without either.

use std::collections::BTreeMap;

use super::Db;
use super::staging::{Staging, Writes};
use crate::audit;
use crate::storage::codec::{AuditRecord, audit_key, encode};
use crate::storage::{AuditDraft, AuditEvent, StorageError};

impl Db {
    /// Seals audit drafts onto their streams, in `staging`.
    pub(super) fn append_audit(
        &self,
        staging: &mut Staging<'_>,
        drafts: Vec<AuditDraft>,
    ) -> Result<(), StorageError> {
        // Each stream's drafts, in order, sealed after its last event: one record each.
        for (message_id, drafts) in by_stream(drafts) {
            let head = staging.audit_head(self, &message_id)?;
            if let Some(head) = seal_segment(&mut staging.writes, &message_id, head, drafts) {
                staging.moved_audit(head);
            }
        }
        Ok(())
    }
}

/// A new message's stream, sealed without a read: its head, and the drafts of other
/// streams, to be appended after their heads.
pub(super) struct Opened {
    pub(super) head: Option<AuditEvent>,
    pub(super) others: Vec<AuditDraft>,
}

/// Seals the drafts of `message_id`, a new message, as the start of its stream.
pub(super) fn open_stream(
    writes: &mut Writes,
    message_id: &str,
    drafts: Vec<AuditDraft>,
) -> Opened {
    let (own, others): (Vec<_>, Vec<_>) = drafts
        .into_iter()
        .partition(|draft| draft.message_id == message_id);
    let head = if own.is_empty() {
        None
    } else {
        seal_segment(writes, message_id, None, own)
    };
    Opened { head, others }
}

/// Drafts by the stream they join, each stream's in order.
fn by_stream(drafts: Vec<AuditDraft>) -> BTreeMap<String, Vec<AuditDraft>> {
    let mut streams: BTreeMap<String, Vec<AuditDraft>> = BTreeMap::new();
    for draft in drafts {
        streams
            .entry(draft.message_id.clone())
            .or_default()
            .push(draft);
    }
    streams
}

/// Seals one stream's drafts after `head` (none: they open the stream) as one record;
/// returns the stream's new head.
fn seal_segment(
    writes: &mut Writes,
    message_id: &str,
    mut head: Option<AuditEvent>,
    drafts: Vec<AuditDraft>,
) -> Option<AuditEvent> {
    let mut segment = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let event = audit::seal(head.as_ref(), draft);
        head = Some(event.clone());
        segment.push(event);
    }
    let first = segment.first().map_or(0, |event| event.version);
    writes.insert(
        audit_key(message_id, first),
        encode(&AuditRecord::Segment(segment)),
    );
    head
}
