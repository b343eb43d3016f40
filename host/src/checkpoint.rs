//! Signed checkpoints: every chain's head (each audit stream and entity stream: its last
//! position and hash) at one instant, signed with Ed25519 and published outside the store.
//! Whoever can write the store can recompute every hash of a chain, but cannot sign: a chain
//! rewritten from any point before a checkpoint no longer has the head that checkpoint names,
//! and `dragoman audit verify --checkpoints FILE` says so.
//!
//! A checkpoint is a C2SP signed note whose text follows `tlog-checkpoint` in spirit:
//!
//! ```text
//! dragoman.example/audit                      origin: the signing key's name
//! 2                                           how many chains
//! 4mYnBq…=                                    root: base64 sha256 of the head lines
//! time 2026-12-07T18:00:00Z                   when the heads were read
//! head m-1 4 9f86d081…                        per chain: its name (percent-encoded),
//! head entity:order/A-1 2 60303ae2…           its last position and that event's hash
//!
//! — dragoman.example/audit AbCd…              key name, base64(key id ‖ signature)
//! ```
//!
//! The signature covers the text up to the blank line. Chains are named as findings name
//! them: a message's id, or `entity:TYPE/ID`. The note format is pure (this module and
//! `checkpoint/key.rs`); reading the heads walks a store; `anchor.rs` signs and publishes
//! them at an interval.

mod key;

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use sha2::{Digest as _, Sha256};

pub use self::key::{KeyError, SignerKey, VerifierKey};
use crate::chain::{Finding, Walk};
use crate::storage::{AuditItem, EntityRef, Storage, StorageError};

/// The prefix of a signature line.
const SIGNATURE: &str = "\u{2014} ";

/// One chain's head: its last event's position and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The chain: a message's id, or `entity:TYPE/ID`.
    pub chain: String,
    /// Its last event's position (version or sequence number).
    pub position: u64,
    /// That event's hash.
    pub hash: String,
}

/// Every chain's head at one instant, as a signer vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Who signs: the key's name.
    pub origin: String,
    /// When the heads were read.
    pub time: Timestamp,
    /// The heads, in the store's walk order.
    pub heads: Vec<Head>,
}

/// Why a checkpoint cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The text is not a signed checkpoint note.
    #[error("not a checkpoint: {0}")]
    Malformed(String),
    /// No signature line is the key's.
    #[error("no signature by the key {key}")]
    NotSigned {
        /// The key's name.
        key: String,
    },
    /// The key's signature does not verify: the text was changed, or signed by another key
    /// of the same name.
    #[error("the signature of {key} does not verify")]
    BadSignature {
        /// The key's name.
        key: String,
    },
}

impl Checkpoint {
    /// The note's text: what the signature covers.
    fn text(&self) -> String {
        let lines = head_lines(&self.heads);
        format!(
            "{}\n{}\n{}\ntime {}\n{lines}",
            self.origin,
            self.heads.len(),
            root(&lines),
            self.time
        )
    }

    /// The signed note.
    pub fn sign(&self, key: &SignerKey) -> String {
        let text = self.text();
        let line = key.sign_line(&text);
        format!("{text}\n{line}")
    }

    /// Reads one signed note, trusting it only when `key` signed it and its origin is the
    /// key's name.
    ///
    /// # Errors
    ///
    /// [`CheckpointError`] saying why it is not trusted.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Self, CheckpointError> {
        let (text, signatures) = note
            .split_once("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let text = format!("{text}\n");
        let mut verdict = None;
        for line in signatures.lines().filter(|l| !l.is_empty()) {
            let (name, signature) = line
                .strip_prefix(SIGNATURE)
                .and_then(|rest| rest.split_once(' '))
                .ok_or_else(|| malformed("a signature line is not `— NAME SIGNATURE`"))?;
            if name == key.name() {
                verdict = key.verify(signature, &text).or(verdict);
            }
        }
        match verdict {
            None => {
                return Err(CheckpointError::NotSigned {
                    key: key.name().to_owned(),
                });
            }
            Some(false) => {
                return Err(CheckpointError::BadSignature {
                    key: key.name().to_owned(),
                });
            }
            Some(true) => {}
        }
        let checkpoint = parse(&text)?;
        if checkpoint.origin != key.name() {
            return Err(malformed(&format!(
                "its origin {} is not the key's name",
                checkpoint.origin
            )));
        }
        Ok(checkpoint)
    }
}

fn malformed(problem: &str) -> CheckpointError {
    CheckpointError::Malformed(problem.to_owned())
}

/// `head NAME POSITION HASH` per chain.
fn head_lines(heads: &[Head]) -> String {
    let mut lines = String::new();
    for head in heads {
        lines.push_str(&format!(
            "head {} {} {}\n",
            crate::percent::encode(&head.chain),
            head.position,
            head.hash
        ));
    }
    lines
}

/// base64 sha256 of the head lines.
fn root(lines: &str) -> String {
    STANDARD.encode(Sha256::digest(lines.as_bytes()))
}

/// The checkpoint in a note's text (signature already checked).
fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
    let mut lines = text.lines();
    let mut next = |what: &str| {
        lines
            .next()
            .ok_or_else(|| malformed(&format!("its {what} line is missing")))
    };
    let origin = next("origin")?.to_owned();
    let count: usize = next("count")?
        .parse()
        .map_err(|_| malformed("its second line is not a count"))?;
    let signed_root = next("root")?.to_owned();
    let time = next("time")?
        .strip_prefix("time ")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| malformed("its fourth line is not `time TIMESTAMP`"))?;
    let mut heads = Vec::with_capacity(count.min(1 << 20));
    for line in lines {
        let mut parts = line.strip_prefix("head ").unwrap_or_default().split(' ');
        let (Some(chain), Some(position), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(&format!(
                "`{line}` is not `head NAME POSITION HASH`"
            )));
        };
        heads.push(Head {
            chain: crate::percent::decode(chain),
            position: position
                .parse()
                .map_err(|_| malformed(&format!("`{line}` has no position")))?,
            hash: hash.to_owned(),
        });
    }
    if heads.len() != count {
        return Err(malformed(&format!(
            "it counts {count} chains and lists {}",
            heads.len()
        )));
    }
    if root(&head_lines(&heads)) != signed_root {
        return Err(malformed("its root is not the digest of its heads"));
    }
    Ok(Checkpoint {
        origin,
        time,
        heads,
    })
}

/// The notes in a file of several, one after another (each its text, a blank line and its
/// signature lines).
pub fn notes(file: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut in_signatures = false;
    for line in file.lines() {
        if in_signatures && !line.starts_with(SIGNATURE) {
            notes.push(std::mem::take(&mut current));
            in_signatures = false;
        }
        if current.is_empty() && line.is_empty() {
            continue;
        }
        if line.is_empty() {
            in_signatures = true;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.is_empty() {
        notes.push(current);
    }
    notes
}

/// Every chain's head in `storage` now, walking it event by event (memory holds the heads,
/// one per chain).
///
/// # Errors
///
/// When the store cannot be read.
pub fn heads(storage: &dyn Storage) -> Result<Vec<Head>, StorageError> {
    let mut heads: Vec<Head> = Vec::new();
    storage.walk_audit(&mut |stream, item| {
        let same = heads.last().is_some_and(|head| head.chain == stream);
        // A stream's anchor is its head until an event follows it.
        let (position, hash) = match item {
            AuditItem::Anchor(anchor) => (anchor.version, anchor.hash),
            AuditItem::Event(event) => (event.version, event.hash),
        };
        advance(&mut heads, same, || stream.to_owned(), position, hash);
        Ok(())
    })?;
    let mut current: Option<EntityRef> = None;
    storage.walk_entities(&mut |entity, event| {
        let same = current.as_ref() == Some(entity);
        if !same {
            current = Some(entity.clone());
        }
        advance(&mut heads, same, || entity.chain(), event.seq, event.hash);
        Ok(())
    })?;
    Ok(heads)
}

/// The walk's next event, at `position` with `hash`: the new head of the last chain when
/// `same`, else the first of a new chain, named by `chain` (once per chain, not per event).
fn advance(
    heads: &mut Vec<Head>,
    same: bool,
    chain: impl FnOnce() -> String,
    position: u64,
    hash: String,
) {
    match heads.last_mut() {
        Some(head) if same => {
            head.position = position;
            head.hash = hash;
        }
        _ => heads.push(Head {
            chain: chain(),
            position,
            hash,
        }),
    }
}

/// The positions checkpoints vouch for, checked as a verification walks past them.
#[derive(Debug, Default)]
pub(crate) struct Anchors {
    chains: HashMap<String, Vec<Anchor>>,
}

#[derive(Debug)]
struct Anchor {
    position: u64,
    hash: String,
    time: Timestamp,
    seen: bool,
}

impl Anchors {
    /// The heads of `checkpoints`.
    pub(crate) fn new(checkpoints: &[Checkpoint]) -> Self {
        let mut chains: HashMap<String, Vec<Anchor>> = HashMap::new();
        for checkpoint in checkpoints {
            for head in &checkpoint.heads {
                chains.entry(head.chain.clone()).or_default().push(Anchor {
                    position: head.position,
                    hash: head.hash.clone(),
                    time: checkpoint.time,
                    seen: false,
                });
            }
        }
        Self { chains }
    }

    /// Checks the event at `position` of the chain `walk` is on, whose hash is `hash`.
    pub(crate) fn check(&mut self, walk: &mut Walk, position: u64, hash: &str) {
        let Some(anchors) = self.chains.get_mut(walk.stream()) else {
            return;
        };
        for anchor in anchors.iter_mut().filter(|a| a.position == position) {
            anchor.seen = true;
            if anchor.hash != hash {
                walk.found(
                    position,
                    format!(
                        "its hash is not the one the checkpoint of {} signed: the chain was \
                         rewritten",
                        anchor.time
                    ),
                );
            }
        }
    }

    /// Takes the heads of `chain` below `position` as out of reach: they were archived, and
    /// only a check with the archive reads them.
    pub(crate) fn archived(&mut self, chain: &str, position: u64) {
        if let Some(anchors) = self.chains.get_mut(chain) {
            for anchor in anchors.iter_mut().filter(|a| a.position < position) {
                anchor.seen = true;
            }
        }
    }

    /// The positions a checkpoint vouched for that the walk never reached.
    pub(crate) fn finish(self) -> Vec<Finding> {
        let mut findings: Vec<Finding> = self
            .chains
            .into_iter()
            .flat_map(|(chain, anchors)| {
                anchors.into_iter().filter(|a| !a.seen).map(move |a| Finding {
                    message_id: chain.clone(),
                    version: a.position,
                    problem: format!(
                        "the checkpoint of {} signed this event, and the store no longer holds it",
                        a.time
                    ),
                })
            })
            .collect();
        findings.sort_by(|a, b| (&a.message_id, a.version).cmp(&(&b.message_id, b.version)));
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(origin: &str) -> Checkpoint {
        Checkpoint {
            origin: origin.into(),
            time: "2026-12-07T18:00:00Z".parse().unwrap(),
            heads: vec![
                Head {
                    chain: "m 1".into(),
                    position: 4,
                    hash: "ab".repeat(32),
                },
                Head {
                    chain: "entity:order/A-1".into(),
                    position: 2,
                    hash: "cd".repeat(32),
                },
            ],
        }
    }

    #[test]
    fn a_signed_note_opens_with_its_key_into_the_same_checkpoint() {
        let key = SignerKey::generate("dragoman.test/audit").unwrap();
        let note = checkpoint(key.name()).sign(&key);
        assert!(note.starts_with("dragoman.test/audit\n2\n"), "{note}");
        assert!(note.contains("\nhead m%201 4 "), "{note}");
        assert!(note.contains("\n\n\u{2014} dragoman.test/audit "), "{note}");
        assert_eq!(
            Checkpoint::open(&note, &key.verifier()).unwrap(),
            checkpoint(key.name())
        );
    }

    #[test]
    fn a_changed_head_or_another_key_is_refused() {
        let key = SignerKey::generate("k").unwrap();
        let note = checkpoint("k").sign(&key);
        let changed = note.replacen(" 4 ", " 5 ", 1);
        assert_eq!(
            Checkpoint::open(&changed, &key.verifier()),
            Err(CheckpointError::BadSignature { key: "k".into() })
        );
        let other = SignerKey::generate("other").unwrap();
        assert_eq!(
            Checkpoint::open(&note, &other.verifier()),
            Err(CheckpointError::NotSigned {
                key: "other".into()
            })
        );
        // Signed by the key, but its origin is another's.
        let foreign = checkpoint("someone-else").sign(&key);
        assert!(matches!(
            Checkpoint::open(&foreign, &key.verifier()),
            Err(CheckpointError::Malformed(m)) if m.contains("origin")
        ));
    }

    #[test]
    fn a_file_of_notes_splits_into_each() {
        let key = SignerKey::generate("k").unwrap();
        let first = checkpoint("k").sign(&key);
        let mut second = checkpoint("k");
        second.heads.pop();
        let second = second.sign(&key);
        let file = format!("{first}\n{second}");
        let notes = notes(&file);
        assert_eq!(notes, [first, second]);
        assert_eq!(
            Checkpoint::open(&notes[1], &key.verifier())
                .unwrap()
                .heads
                .len(),
            1
        );
    }

    #[test]
    fn anchors_find_a_rewritten_and_a_missing_position() {
        let mut anchors = Anchors::new(&[checkpoint("k")]);
        let mut walk = Walk::new("m 1");
        anchors.check(&mut walk, 3, "whatever");
        anchors.check(&mut walk, 4, &"ef".repeat(32));
        let findings = walk.finish();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].version, 4);
        assert!(findings[0].problem.contains("rewritten"));
        let unseen = anchors.finish();
        assert_eq!(unseen.len(), 1, "{unseen:?}");
        assert_eq!(unseen[0].message_id, "entity:order/A-1");
        assert!(unseen[0].problem.contains("no longer holds"));
    }
}
