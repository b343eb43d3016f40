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
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// The problems of the stream named `stream`, each with the position where it was found.
pub(crate) fn check<'a>(stream: &str, links: impl IntoIterator<Item = Link<'a>>) -> Vec<Finding> {
    let mut problems = Vec::new();
    let mut prev = GENESIS;
    for (n, link) in links.into_iter().enumerate() {
        let expected = n as u64 + 1;
        if link.position != expected {
            problems.push((
                expected,
                format!(
                    "version {} where {expected} was expected: an event is missing or out of order",
                    link.position
                ),
            ));
        }
        if link.prev != prev {
            problems.push((
                expected,
                "its `prev` is not the hash of the event before it".into(),
            ));
        }
        if link.computed != link.hash {
            problems.push((
                expected,
                "its contents do not match its hash: it was edited".into(),
            ));
        }
        prev = link.hash;
    }
    problems
        .into_iter()
        .map(|(version, problem)| Finding {
            message_id: stream.to_owned(),
            version,
            problem,
        })
        .collect()
}
