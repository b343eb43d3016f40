//! The archive as verification reads it beside the hot store: every segment checked in
//! order, then each hot stream's start met (`audit::ArchiveCheck`).

use std::collections::HashMap;

use super::segment::SegmentReader;
use super::{ArchiveError, SegmentStore};
use crate::audit::{self, ArchiveCheck};
use crate::chain::{Finding, Tip, Walk};
use crate::checkpoint::{Anchors, Checkpoint};
use crate::storage::{Anchor, Storage, StorageError};

/// The archive as verification reads it: every segment checked in order, each stream's
/// archived events chained on from the segment before, and each stream's archived tip kept
/// for the hot store's anchor to meet. Memory holds one tip per archived stream.
#[derive(Debug)]
pub(crate) struct Archived<'a> {
    store: &'a dyn SegmentStore,
    tips: HashMap<String, Tip>,
    digests: HashMap<String, String>,
    /// Hot streams whose anchor met the archive.
    met: usize,
}

impl<'a> Archived<'a> {
    /// The archive in `store`, not yet read.
    pub(crate) fn new(store: &'a dyn SegmentStore) -> Self {
        Self {
            store,
            tips: HashMap::new(),
            digests: HashMap::new(),
            met: 0,
        }
    }

    /// Reads and checks every segment: its digest against the one beside it, and each
    /// stream's events (checkpoint heads among them are checked by `anchors`).
    fn check_all(&mut self, anchors: &mut Anchors) -> Vec<Finding> {
        let mut findings = Vec::new();
        let names = match self.store.list() {
            Ok(names) => names,
            Err(e) => return vec![segment_finding("archive", e.to_string())],
        };
        for name in names {
            if let Err(e) = self.check_segment(&name, anchors, &mut findings) {
                findings.push(segment_finding(&name, e.to_string()));
            }
        }
        findings
    }

    fn check_segment(
        &mut self,
        name: &str,
        anchors: &mut Anchors,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ArchiveError> {
        let mut reader = SegmentReader::new(name, self.store.open(name)?)?;
        while let Some(record) = reader.next_record()? {
            let Some(first) = record.events.first() else {
                continue;
            };
            let mut walk = Walk::new(&record.stream);
            let known = self.tips.get(&record.stream);
            match known {
                // Archived again after a run that wrote its segment and crashed before the
                // cut: the overlap is checked by its own chain and by the known tip below.
                Some(tip) if first.version <= tip.position => walk.resume(&Tip {
                    position: first.version - 1,
                    hash: first.prev.clone(),
                }),
                Some(tip) => walk.resume(tip),
                None => {}
            }
            for event in &record.events {
                audit::step(&mut walk, event);
                anchors.check(&mut walk, event.version, &event.hash);
                if let Some(tip) = known.filter(|t| t.position == event.version)
                    && tip.hash != event.hash
                {
                    walk.found(
                        event.version,
                        format!("segment {name} holds another event at this version"),
                    );
                }
            }
            let reached = walk.tip();
            if known.is_none_or(|t| t.position < reached.position) {
                self.tips.insert(record.stream.clone(), reached);
            }
            findings.extend(walk.finish());
        }
        let computed = reader.digest();
        let kept = self.store.digest(name)?;
        if computed != kept {
            findings.push(segment_finding(
                name,
                format!("its bytes hash to {computed}, not to the digest {kept} kept beside it"),
            ));
        }
        self.digests.insert(name.to_owned(), computed);
        Ok(())
    }

    /// Checks a hot stream that starts without an anchor: it must not be one the archive
    /// holds the start of.
    fn fresh_stream(&self, walk: &mut Walk) {
        if let Some(tip) = self.tips.get(walk.stream()) {
            walk.found(
                1,
                format!(
                    "the stream starts again though the archive holds it up to version {}",
                    tip.position
                ),
            );
        }
    }

    /// Checks a hot stream's anchor against the archive: the segment it names must be there
    /// with the digest it recorded, and the stream's archived events must end where it says.
    fn meet_anchor(&mut self, walk: &mut Walk, anchor: &Anchor) {
        self.met += 1;
        match self.digests.get(&anchor.segment) {
            None => walk.found(
                anchor.version,
                format!(
                    "its anchor names segment {}, which is not in the archive",
                    anchor.segment
                ),
            ),
            Some(digest) if *digest != anchor.digest => walk.found(
                anchor.version,
                format!(
                    "segment {} is not the one its anchor recorded: the digests differ",
                    anchor.segment
                ),
            ),
            Some(_) => {}
        }
        match self.tips.get(walk.stream()) {
            Some(tip) if tip.position == anchor.version && tip.hash == anchor.hash => {}
            Some(tip) => walk.found(
                anchor.version,
                format!(
                    "its anchor is not where its archived events end (version {}, hash {})",
                    tip.position, tip.hash
                ),
            ),
            None => walk.found(
                anchor.version,
                "its anchor stands for archived events that no segment holds".into(),
            ),
        }
    }
}

impl ArchiveCheck for Archived<'_> {
    fn check(&mut self, anchors: &mut Anchors) -> Vec<Finding> {
        self.check_all(anchors)
    }

    fn fresh(&self, walk: &mut Walk) {
        self.fresh_stream(walk);
    }

    fn meet(&mut self, walk: &mut Walk, anchor: &Anchor) {
        self.meet_anchor(walk, anchor);
    }

    fn archived_only(&self) -> usize {
        self.tips.len().saturating_sub(self.met)
    }
}

/// Verifies the store and the archive in `store` together (see [`audit::verify_store`]):
/// every segment's digest and archived streams, then the hot store, each anchor where its
/// stream's archived events end and naming a segment with the digest it recorded. Memory
/// holds one tip per archived stream besides what the walk holds. An archive that cannot be
/// read is a finding.
///
/// # Errors
///
/// [`StorageError`] when the store cannot be read.
pub fn verify_store(
    storage: &dyn Storage,
    checkpoints: &[Checkpoint],
    store: &dyn SegmentStore,
) -> Result<(usize, Vec<Finding>), StorageError> {
    let mut archived = Archived::new(store);
    audit::verify_with(storage, checkpoints, Some(&mut archived))
}

fn segment_finding(name: &str, problem: String) -> Finding {
    Finding {
        message_id: format!("segment {name}"),
        version: 0,
        problem,
    }
}
