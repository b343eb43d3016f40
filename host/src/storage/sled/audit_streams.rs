//! Audit streams in the sled store: drafts sealed onto their message's stream, one record
//! per commit and stream. A stream is read for its head under the writer lock; a new
//! message's stream is sealed from its start without either.

use std::collections::BTreeMap;

use super::{Db, sled_error};
use crate::audit;
use crate::storage::codec::{AuditRecord, audit_key, audit_prefix, decode, encode};
use crate::storage::{AuditDraft, AuditEvent, StorageError};

impl Db {
    /// Seals audit drafts onto their streams, in `batch`.
    pub(super) fn append_audit(
        &self,
        batch: &mut ::sled::Batch,
        drafts: Vec<AuditDraft>,
    ) -> Result<(), StorageError> {
        // Each stream's drafts, in order, sealed after its last event: one record each.
        for (message_id, drafts) in by_stream(drafts) {
            let head = match self
                .tree()
                .scan_prefix(audit_prefix(&message_id))
                .next_back()
                .transpose()
                .map_err(sled_error)?
            {
                Some((k, v)) => decode::<AuditRecord>(&k, &v)?.into_events().pop(),
                None => None,
            };
            seal_segment(batch, &message_id, head, drafts);
        }
        Ok(())
    }
}

/// Seals the drafts of `message_id`, a new message, as the start of its stream, without a
/// read; returns the drafts of other streams, to be appended after their heads.
pub(super) fn open_stream(
    batch: &mut ::sled::Batch,
    message_id: &str,
    drafts: Vec<AuditDraft>,
) -> Vec<AuditDraft> {
    let (own, others): (Vec<_>, Vec<_>) = drafts
        .into_iter()
        .partition(|draft| draft.message_id == message_id);
    if !own.is_empty() {
        seal_segment(batch, message_id, None, own);
    }
    others
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

/// Seals one stream's drafts after `head` (none: they open the stream) as one record.
fn seal_segment(
    batch: &mut ::sled::Batch,
    message_id: &str,
    mut head: Option<AuditEvent>,
    drafts: Vec<AuditDraft>,
) {
    let mut segment = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let event = audit::seal(head.as_ref(), draft);
        head = Some(event.clone());
        segment.push(event);
    }
    let first = segment.first().map_or(0, |event| event.version);
    batch.insert(
        audit_key(message_id, first),
        encode(&AuditRecord::Segment(segment)),
    );
}
