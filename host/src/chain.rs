//! Hash chains, as the audit trail and the entity streams keep them: each record carries its
//! position (1, 2, 3…), the hash of the record before it and its own hash over that and its
//! fields. An edited, removed or reordered record breaks one of the three.
//!
//! Pure functions; what a record's fields are is its module's business.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of a stream's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// sha256 over `parts`, each prefixed by its length so that no two lists of parts collide,
/// in lower-case hex.
pub(crate) fn digest(parts: &[&[u8]]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    crate::hex::encode(&digest.finalize())
}

/// Where a chain stands: its last record's position and hash, what the next record is
/// sealed after. The last record itself, or the anchor left where older records were
/// archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tip {
    /// The last record's position.
    pub(crate) position: u64,
    /// Its hash.
    pub(crate) hash: String,
}

/// What a stream's check needs of one record.
pub(crate) struct Link<'a> {
    /// Its position as stored.
    pub(crate) position: u64,
    /// The hash of the record before it, as stored.
    pub(crate) prev: &'a str,
    /// Its hash as stored.
    pub(crate) hash: &'a str,
    /// Its hash computed again from its fields.
    pub(crate) computed: String,
}

/// A problem found in a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The stream: a message's id, or `entity:TYPE/ID` for an entity stream.
    pub message_id: String,
    /// The version at fault (or where one is missing).
    pub version: u64,
    /// What is wrong.
    pub problem: String,
}

/// A stream's check record by record, holding only the last hash: what verification of a
/// store of any size keeps in memory per stream.
#[derive(Debug)]
pub(crate) struct Walk {
    stream: String,
    /// Records seen.
    seen: u64,
    /// The hash of the last record.
    prev: String,
    findings: Vec<Finding>,
}

impl Walk {
    /// The check of the stream named `stream`, before its first record.
    pub(crate) fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            seen: 0,
            prev: GENESIS.to_owned(),
            findings: Vec::new(),
        }
    }

    /// The stream's name.
    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    /// Checks the next record: its position, its `prev` and its hash.
    pub(crate) fn step(&mut self, link: &Link<'_>) {
        self.seen += 1;
        let expected = self.seen;
        if link.position != expected {
            self.found(
                expected,
                format!(
                    "version {} where {expected} was expected: an event is missing or out of order",
                    link.position
                ),
            );
        }
        if link.prev != self.prev {
            self.found(
                expected,
                "its `prev` is not the hash of the event before it".into(),
            );
        }
        if link.computed != link.hash {
            self.found(
                expected,
                "its contents do not match its hash: it was edited".into(),
            );
        }
        link.hash.clone_into(&mut self.prev);
    }

    /// Starts the check after an anchor: the stream's records up to `tip` are in the archive,
    /// and the next one is sealed after it. An anchor anywhere but before the first record
    /// is a problem.
    pub(crate) fn resume(&mut self, tip: &Tip) {
        if self.seen != 0 {
            self.found(
                tip.position,
                "an anchor after events: the archive cut is out of place".into(),
            );
        }
        self.seen = tip.position;
        tip.hash.clone_into(&mut self.prev);
    }

    /// The tip the walk stands at.
    pub(crate) fn tip(&self) -> Tip {
        Tip {
            position: self.seen,
            hash: self.prev.clone(),
        }
    }

    /// Records a problem at `position`.
    pub(crate) fn found(&mut self, position: u64, problem: String) {
        self.findings.push(Finding {
            message_id: self.stream.clone(),
            version: position,
            problem,
        });
    }

    /// The position the next record should have.
    pub(crate) fn next(&self) -> u64 {
        self.seen + 1
    }

    /// The problems found.
    pub(crate) fn finish(self) -> Vec<Finding> {
        self.findings
    }
}

/// The walk over many streams whose records arrive stream by stream, as a store's walk hands
/// them over: one [`Walk`] at a time, so memory holds one stream's last hash, not the store.
#[derive(Debug)]
pub(crate) struct Walker<K> {
    current: Option<(K, Walk)>,
    streams: usize,
    findings: Vec<Finding>,
}

impl<K> Default for Walker<K> {
    fn default() -> Self {
        Self {
            current: None,
            streams: 0,
            findings: Vec::new(),
        }
    }
}

impl<K> Walker<K> {
    /// The walk of the stream `key` (named `name()` in findings): the current one, or a new
    /// one when the records of another stream begin. The key is owned only then.
    pub(crate) fn of<Q>(&mut self, key: &Q, name: impl FnOnce() -> String) -> &mut Walk
    where
        K: std::borrow::Borrow<Q>,
        Q: ToOwned<Owned = K> + PartialEq + ?Sized,
    {
        if self
            .current
            .as_ref()
            .is_none_or(|(current, _)| current.borrow() != key)
        {
            self.close();
            self.streams += 1;
            self.current = Some((key.to_owned(), Walk::new(&name())));
        }
        &mut self.current.as_mut().expect("set above").1
    }

    fn close(&mut self) {
        if let Some((_, walk)) = self.current.take() {
            self.findings.extend(walk.finish());
        }
    }

    /// How many streams were walked, and what is wrong with them.
    pub(crate) fn finish(mut self) -> (usize, Vec<Finding>) {
        self.close();
        (self.streams, self.findings)
    }
}
