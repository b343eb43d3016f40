//! Retention of the audit trail: the events of each message's audit stream older than its
//! route's hot retention move, a run at a time, into one archive segment (a file per run,
//! with its digest beside it), and leave an anchor in the hot store (the last archived
//! event's version, hash and time, the segment's name and digest, and the message's state
//! folded through it). The hot stream goes on from the anchor: new events are sealed after
//! it, `audit verify` starts the stream's walk there, and a message's state is folded on
//! from the anchor's.
//!
//! A run reads the store stream by stream (memory holds one stream), writes the segment,
//! and only once the segment is whole and synced cuts the hot streams, each in the same write
//! as its anchor, a batch at a time. A crash before the cut leaves a segment that no anchor
//! names, and the events still hot; the next run archives them again.
//!
//! What reads the archive: [`verify_store`] (verification over archive and hot store) and
//! [`message_state`] (a message's state at an instant only the archive holds).

mod directory;
mod segment;
mod verify;

use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

use jiff::Timestamp;

pub use self::directory::Directory;
use self::segment::{SegmentReader, SegmentWriter, StreamSegment};
pub use self::verify::verify_store;
use crate::audit::{self, MessageState};
use crate::storage::{Anchor, AuditEvent, AuditItem, Storage, StorageError, StreamCut};

/// How many streams one write of the hot store cuts.
const CUT_BATCH: usize = 512;

/// Where archived segments are kept: a directory ([`Directory`]); an object store would
/// implement the same.
pub trait SegmentStore: Send + Sync + fmt::Debug {
    /// Starts segment `name`: nothing is visible under the name until the sink finishes, and
    /// a sink dropped unfinished leaves nothing.
    ///
    /// # Errors
    ///
    /// [`ArchiveError`] when the segment cannot be started.
    fn create(&self, name: &str) -> Result<Box<dyn SegmentSink>, ArchiveError>;

    /// The segments kept, in name order (which is the order they were written in).
    ///
    /// # Errors
    ///
    /// [`ArchiveError`] when the archive cannot be listed.
    fn list(&self) -> Result<Vec<String>, ArchiveError>;

    /// Reads segment `name`.
    ///
    /// # Errors
    ///
    /// [`ArchiveError`] when there is no such segment or it cannot be read.
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, ArchiveError>;

    /// The digest kept beside segment `name` (lower-case hex sha256).
    ///
    /// # Errors
    ///
    /// [`ArchiveError`] when it cannot be read.
    fn digest(&self, name: &str) -> Result<String, ArchiveError>;
}

/// A segment being written.
pub trait SegmentSink: Write + Send {
    /// Makes the segment visible, whole, with `digest` beside it.
    ///
    /// # Errors
    ///
    /// [`ArchiveError`] when it cannot be made durable; then the segment is not visible.
    fn finish(self: Box<Self>, digest: &str) -> Result<(), ArchiveError>;
}

/// An archive failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Reading or writing the archive failed.
    #[error("archive {path}: {source}")]
    Io {
        /// The file or segment.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A segment is damaged or not a segment.
    #[error("archive segment {segment} cannot be read: {message}")]
    Corrupt {
        /// The segment.
        segment: String,
        /// Why.
        message: String,
    },
    /// The hot store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What one run archived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archiving {
    /// The segment written, if anything was old enough.
    pub segment: Option<String>,
    /// Its digest.
    pub digest: Option<String>,
    /// How many streams were cut.
    pub streams: u64,
    /// How many events left the hot store.
    pub events: u64,
}

/// Moves every audit event older than its route's hot retention (`hot(route)`; `None`: kept
/// hot) at `now` into one new segment of `store`, and cuts the hot streams at anchors.
/// A stream's route is named by its `received` event (or its anchor's state); a stream whose
/// route is unknown stays hot. Within a stream, only a prefix moves: the events before the
/// first that is not old enough.
///
/// # Errors
///
/// [`ArchiveError`] when the store or the archive fails. Streams cut before the failure
/// stay cut (their segment is whole); the others stay hot.
pub fn archive(
    storage: &dyn Storage,
    store: &dyn SegmentStore,
    hot: &(dyn Fn(&str) -> Option<Duration> + Sync),
    now: Timestamp,
) -> Result<Archiving, ArchiveError> {
    let name = segment_name(now);
    let mut writer: Option<SegmentWriter> = None;
    let mut current: Option<Gathering> = None;
    let mut failed: Option<ArchiveError> = None;
    let mut put = |gathered: Gathering| -> Result<(), ArchiveError> {
        let Some(record) = gathered.record() else {
            return Ok(());
        };
        let writer = match &mut writer {
            Some(writer) => writer,
            empty => empty.insert(SegmentWriter::new(&name, store.create(&name)?)?),
        };
        writer.put(&record)
    };
    let walked = storage.walk_audit(&mut |stream, item| {
        if current.as_ref().is_none_or(|c| c.stream != stream)
            && let Some(done) = current.replace(Gathering::new(stream))
        {
            put(done).map_err(|e| {
                let message = e.to_string();
                failed = Some(e);
                StorageError::Backend(message)
            })?;
        }
        // A new stream has replaced the last one (and the first has set it).
        let gathering = current.as_mut().expect("set above");
        gathering.take(item, hot, now);
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    walked?;
    if let Some(done) = current.take() {
        put(done)?;
    }
    let Some(writer) = writer else {
        return Ok(Archiving::default());
    };
    let digest = writer.finish()?;
    let (streams, events) = cut(storage, store, &name, &digest)?;
    Ok(Archiving {
        segment: Some(name),
        digest: Some(digest),
        streams,
        events,
    })
}

/// A segment's name: `audit-` and the run's instant, so that names sort in time order.
fn segment_name(now: Timestamp) -> String {
    format!(
        "audit-{}-{:06}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        now.subsec_microsecond()
    )
}

/// Reads segment `name` back and cuts each of its streams in the hot store at the anchor
/// its record makes: how many streams and events.
fn cut(
    storage: &dyn Storage,
    store: &dyn SegmentStore,
    name: &str,
    digest: &str,
) -> Result<(u64, u64), ArchiveError> {
    let mut reader = SegmentReader::new(name, store.open(name)?)?;
    let (mut streams, mut events) = (0u64, 0u64);
    let mut batch = Vec::with_capacity(CUT_BATCH);
    while let Some(record) = reader.next_record()? {
        let Some(last) = record.events.last() else {
            continue;
        };
        let version = last.version;
        let anchor = (!record.closed).then(|| Anchor {
            version,
            hash: last.hash.clone(),
            at: record.events.iter().map(|e| e.at).max().unwrap_or(last.at),
            segment: name.to_owned(),
            digest: digest.to_owned(),
            state: record.state,
        });
        streams += 1;
        events += record.events.len() as u64;
        batch.push(StreamCut {
            stream: record.stream,
            version,
            anchor,
        });
        if batch.len() == CUT_BATCH {
            storage.archive_audit(&batch)?;
            batch.clear();
        }
    }
    storage.archive_audit(&batch)?;
    if reader.digest() != digest {
        return Err(ArchiveError::Corrupt {
            segment: name.to_owned(),
            message: "it changed while its streams were cut".into(),
        });
    }
    Ok((streams, events))
}

/// One stream as the walk hands it over: the prefix old enough to archive.
struct Gathering {
    stream: String,
    /// The state through the anchor, if the stream has one.
    state: Option<MessageState>,
    /// The instant before which events move; `None` until the route is known.
    before: Option<Timestamp>,
    /// Whether the prefix has ended (an event too young, or a route kept hot).
    ended: bool,
    events: Vec<AuditEvent>,
}

impl Gathering {
    fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            state: None,
            before: None,
            ended: false,
            events: Vec::new(),
        }
    }

    /// The route's cut-off: `None` ends the prefix.
    fn route(
        &mut self,
        route: Option<&str>,
        hot: &(dyn Fn(&str) -> Option<Duration> + Sync),
        now: Timestamp,
    ) {
        let before = route
            .and_then(hot)
            .and_then(|keep| jiff::SignedDuration::try_from(keep).ok())
            .and_then(|keep| now.checked_sub(keep).ok());
        match before {
            Some(before) => self.before = Some(before),
            None => self.ended = true,
        }
    }

    fn take(
        &mut self,
        item: AuditItem,
        hot: &(dyn Fn(&str) -> Option<Duration> + Sync),
        now: Timestamp,
    ) {
        if self.ended {
            return;
        }
        match item {
            AuditItem::Anchor(anchor) => {
                let state: Option<MessageState> = serde_json::from_value(anchor.state).ok();
                let route = state.as_ref().and_then(|s| s.route.clone());
                self.state = state;
                self.route(route.as_deref(), hot, now);
            }
            AuditItem::Event(event) => {
                if self.before.is_none() {
                    let route = (event.kind == "received")
                        .then(|| event.data.get("route").and_then(|r| r.as_str()))
                        .flatten();
                    self.route(route, hot, now);
                }
                match self.before {
                    Some(before) if !self.ended && event.at < before => self.events.push(event),
                    _ => self.ended = true,
                }
            }
        }
    }

    /// The stream's record, if anything moves.
    fn record(self) -> Option<StreamSegment> {
        if self.events.is_empty() {
            return None;
        }
        let start = self.state.unwrap_or_else(|| MessageState {
            message_id: self.stream.clone(),
            ..MessageState::default()
        });
        let state = audit::fold_from(start, &self.events, None);
        // Every hot event moves, and the message is settled for good: nothing will follow.
        let closed = !self.ended
            && state.dead_letter.is_none()
            && matches!(
                state.status.as_str(),
                "published" | "rejected" | "discarded"
            );
        Some(StreamSegment {
            state: serde_json::to_value(state).expect("a state serializes"),
            stream: self.stream,
            events: self.events,
            closed,
        })
    }
}

/// A message's state at an instant, as the hot store (and the archive, when given) can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateAt {
    /// No such message: never received, or (without the archive) settled and archived whole.
    Unknown,
    /// The state.
    State(Box<MessageState>),
    /// The instant is before the message's archived events end: only the archive can tell.
    Archived {
        /// When its last archived event was recorded.
        until: Timestamp,
        /// The segment that holds it.
        segment: String,
    },
}

/// Message `id`'s state at `at` (now when `None`): folded on from its anchor when the instant
/// is after its archived events, else from the archive's events when `archive` is given.
///
/// # Errors
///
/// [`ArchiveError`] when the store or the archive cannot be read.
pub fn message_state(
    storage: &dyn Storage,
    id: &str,
    at: Option<Timestamp>,
    archive: Option<&dyn SegmentStore>,
) -> Result<StateAt, ArchiveError> {
    let events = storage.history(id)?;
    let anchor = storage.audit_anchor(id)?;
    let Some(anchor) = anchor else {
        if !events.is_empty() {
            return Ok(StateAt::State(Box::new(audit::fold(id, &events, at))));
        }
        // Unknown to the hot store: a closed stream lives in the archive alone.
        let Some(archive) = archive else {
            return Ok(StateAt::Unknown);
        };
        let archived = archived_events(archive, id)?;
        if archived.is_empty() {
            return Ok(StateAt::Unknown);
        }
        return Ok(StateAt::State(Box::new(audit::fold(id, &archived, at))));
    };
    if at.is_none_or(|at| at >= anchor.at) {
        let state: MessageState =
            serde_json::from_value(anchor.state).map_err(|e| StorageError::Corrupt {
                key: format!("anchor of {id}"),
                message: e.to_string(),
            })?;
        return Ok(StateAt::State(Box::new(audit::fold_from(
            state, &events, at,
        ))));
    }
    let Some(archive) = archive else {
        return Ok(StateAt::Archived {
            until: anchor.at,
            segment: anchor.segment,
        });
    };
    let mut all = archived_events(archive, id)?;
    all.retain(|e| e.version <= anchor.version);
    all.extend(events);
    Ok(StateAt::State(Box::new(audit::fold(id, &all, at))))
}

/// Stream `id`'s archived events, from every segment, in version order.
fn archived_events(store: &dyn SegmentStore, id: &str) -> Result<Vec<AuditEvent>, ArchiveError> {
    let mut events: Vec<AuditEvent> = Vec::new();
    for name in store.list()? {
        let mut reader = SegmentReader::new(&name, store.open(&name)?)?;
        while let Some(record) = reader.next_record()? {
            if record.stream == id {
                let after = events.last().map_or(0, |e| e.version);
                events.extend(record.events.into_iter().filter(|e| e.version > after));
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests;
