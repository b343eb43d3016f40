//! How the embedded store lays records out: the keys of each kind of record (by prefix, in
//! one tree) and the encoding of values, a format byte then the record: MessagePack with
//! field names (format 2), the same LZ4-compressed when that is smaller (format 3), or JSON
//! as hosts before them wrote (format 1). The encoding is a compatibility boundary: a record
//! written by an older host must still be read.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::storage::{EntityRef, StorageError};

mod fields;
pub(crate) use self::fields::{base64_bytes, hex_digest};

/// The record format this host writes, the first byte of every value: MessagePack with
/// field names, bytes as bytes (a body is not base64 text), self-describing so that JSON
/// values (audit data, answers) and untagged records read back.
pub(super) const FORMAT: u8 = 2;

/// The format of records written by hosts before format 2: JSON, bytes as base64 text.
/// Read, never written.
pub(super) const JSON_FORMAT: u8 = 1;

/// A record of format 2, LZ4-compressed (a block with its length before it, little-endian
/// u32): written for records of [`COMPRESS_FROM`] bytes or more when that makes them smaller.
pub(super) const COMPRESSED_FORMAT: u8 = 3;

/// Records shorter than this stay as they are: too little to gain.
const COMPRESS_FROM: usize = 192;

/// The largest record a compressed one may claim to hold, so that a damaged length cannot ask
/// for more memory than a record ever takes.
const MAX_RECORD: usize = 256 << 20;

// ===== Keys =====
//
// One tree, by prefix (the first byte, then a 0):
// - `i` route 0 key: a processed key's outcome;
// - `x` expiry route 0 key: the expiry index, so a sweep reads only what has expired;
// - `m` id: a message; `q` id: a dead letter; `a` message 0 version: an audit event;
// - `Q` route 0 id: a route's index of its dead letters, so its oldest are found at once;
// - `o` seq: an event with sinks to go (its delivery state is per sink, below);
// - `d` sink 0 keylen key seq: one sink's delivery state for one event, grouped by partition
//   key, in commit order;
// - `r` sink 0 due key: when a partition key's next delivery to a sink is due, so a sink
//   reads only what is due;
// - `h` sink 0 key: the due instant of that `r` entry, to find it again;
// - `t` at seq: a published event, by when it was published, so compaction reads only what
//   has aged out;
// - `n` type 0 id 0 seq: an event in its entity's stream (an event's subject holds no
//   control character, so no 0 byte);
// - `y` route 0 type: the entity types a route's events were about;
// - `z` projector 0 type 0 id 0 seq: a snapshot of an entity's state by one projector
//   version (`name@version@sha256`, no 0 byte), after its stream's first `seq` events;
// - `s` name: the sequence counter, the layout version and the depth counters.
// Sink and route names hold no 0 byte (they are checked names); partition keys may hold any
// byte, so they are length-prefixed or last.

pub(super) const SEQ: &[u8] = b"s\0seq";
pub(super) const LAYOUT: &[u8] = b"s\0layout";
pub(super) const COUNTERS: &[u8] = b"s\0depths";

/// The layout this host writes: per-sink delivery state and time indexes (2). Layout 1 kept
/// one record per event with every sink's state in it, and no indexes.
pub(super) const CURRENT_LAYOUT: u8 = 2;

/// An instant as 8 bytes that sort as the instants do.
pub(super) fn instant(at: jiff::Timestamp) -> [u8; 8] {
    instant_bits(at).to_be_bytes()
}

/// The first 8-byte instant after `at`: the exclusive end of a range "at or before `at`".
pub(super) fn instant_after(at: jiff::Timestamp) -> [u8; 8] {
    instant_bits(at).saturating_add(1).to_be_bytes()
}

fn instant_bits(at: jiff::Timestamp) -> u64 {
    #[expect(clippy::cast_sign_loss, reason = "the sign bit is flipped to sort")]
    let bits = at.as_microsecond() as u64;
    bits ^ (1 << 63)
}

/// The instant in 8 bytes written by [`instant`].
pub(super) fn read_instant(bytes: &[u8]) -> Option<jiff::Timestamp> {
    let bits = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    #[expect(clippy::cast_possible_wrap, reason = "undoes `instant_bits`")]
    let micros = (bits ^ (1 << 63)) as i64;
    jiff::Timestamp::from_microsecond(micros).ok()
}

pub(super) fn read_seq(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub(super) fn idempotency_key(route: &str, key: &str) -> Vec<u8> {
    [b"i\0", route.as_bytes(), b"\0", key.as_bytes()].concat()
}

pub(super) fn expiry_key(expires: jiff::Timestamp, route: &str, key: &str) -> Vec<u8> {
    [
        b"x\0".as_slice(),
        &instant(expires),
        route.as_bytes(),
        b"\0",
        key.as_bytes(),
    ]
    .concat()
}

/// The idempotency key an expiry entry points at.
pub(super) fn expired_idempotency_key(expiry_key: &[u8]) -> Vec<u8> {
    [b"i\0", expiry_key.get(10..).unwrap_or_default()].concat()
}

pub(super) fn message_key(id: &str) -> Vec<u8> {
    [b"m\0", id.as_bytes()].concat()
}

pub(super) fn outbox_key(prefix: u8, seq: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = prefix;
    key[2..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn event_key(seq: u64) -> [u8; 10] {
    outbox_key(b'o', seq)
}

pub(super) fn delivery_prefix(sink: &str, partition_key: &str) -> Vec<u8> {
    let len = u32::try_from(partition_key.len()).unwrap_or(u32::MAX);
    [
        b"d\0".as_slice(),
        sink.as_bytes(),
        b"\0",
        &len.to_be_bytes(),
        partition_key.as_bytes(),
    ]
    .concat()
}

pub(super) fn delivery_key(sink: &str, partition_key: &str, seq: u64) -> Vec<u8> {
    [
        delivery_prefix(sink, partition_key).as_slice(),
        &seq.to_be_bytes(),
    ]
    .concat()
}

pub(super) fn schedule_prefix(sink: &str) -> Vec<u8> {
    [b"r\0", sink.as_bytes(), b"\0"].concat()
}

pub(super) fn schedule_key(sink: &str, due: jiff::Timestamp, partition_key: &str) -> Vec<u8> {
    [
        schedule_prefix(sink).as_slice(),
        &instant(due),
        partition_key.as_bytes(),
    ]
    .concat()
}

pub(super) fn head_key(sink: &str, partition_key: &str) -> Vec<u8> {
    [b"h\0", sink.as_bytes(), b"\0", partition_key.as_bytes()].concat()
}

pub(super) fn published_key(at: jiff::Timestamp, seq: u64) -> Vec<u8> {
    [b"t\0".as_slice(), &instant(at), &seq.to_be_bytes()].concat()
}

pub(super) fn dead_letter_key(id: &str) -> Vec<u8> {
    [b"q\0", id.as_bytes()].concat()
}

/// A route's index of its dead letters (`Q`), in id order.
pub(super) fn route_dead_letter_prefix(route: &str) -> Vec<u8> {
    [b"Q\0", route.as_bytes(), b"\0"].concat()
}

pub(super) fn route_dead_letter_key(route: &str, id: &str) -> Vec<u8> {
    [route_dead_letter_prefix(route).as_slice(), id.as_bytes()].concat()
}

/// A route's last good answer to a command type and subject (`c`).
pub(super) fn answer_key(key: &str) -> Vec<u8> {
    [b"c\0", key.as_bytes()].concat()
}

/// A kept answer (`c`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct KeptAnswer {
    pub(super) answer: serde_json::Value,
    pub(super) at: jiff::Timestamp,
}

/// The audit events of one stream sealed in one write (`a`, keyed by the first one's
/// version), so that a commit's events for a message cost one insert, not one each. Stores
/// before this wrote one event per record, which is read as a segment of one.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum AuditRecord {
    Segment(Vec<crate::storage::AuditEvent>),
    One(crate::storage::AuditEvent),
}

impl AuditRecord {
    pub(super) fn into_events(self) -> Vec<crate::storage::AuditEvent> {
        match self {
            Self::Segment(events) => events,
            Self::One(event) => vec![event],
        }
    }
}

pub(super) fn audit_prefix(message_id: &str) -> Vec<u8> {
    [b"a\0", message_id.as_bytes(), b"\0"].concat()
}

pub(super) fn audit_key(message_id: &str, version: u64) -> Vec<u8> {
    [audit_prefix(message_id).as_slice(), &version.to_be_bytes()].concat()
}

/// An entity stream's keys: `n\0TYPE\0ID\0` and the event's place, so a stream reads in
/// order and its last event is the last key.
pub(super) fn entity_prefix(entity: &EntityRef) -> Vec<u8> {
    [
        b"n\0",
        entity.entity_type.as_bytes(),
        b"\0",
        entity.id.as_bytes(),
        b"\0",
    ]
    .concat()
}

pub(super) fn entity_key(entity: &EntityRef, seq: u64) -> Vec<u8> {
    [entity_prefix(entity).as_slice(), &seq.to_be_bytes()].concat()
}

/// The snapshots of one entity by one projector version, each after its place.
pub(super) fn snapshot_prefix(projector: &str, entity: &EntityRef) -> Vec<u8> {
    [
        b"z\0",
        projector.as_bytes(),
        b"\0",
        entity.entity_type.as_bytes(),
        b"\0",
        entity.id.as_bytes(),
        b"\0",
    ]
    .concat()
}

/// A snapshot after the stream's first `seq` events, in place order within its prefix.
pub(super) fn snapshot_key(projector: &str, entity: &EntityRef, seq: u64) -> Vec<u8> {
    [
        snapshot_prefix(projector, entity).as_slice(),
        &seq.to_be_bytes(),
    ]
    .concat()
}

/// The index of entity types by route, for the topology: `y\0ROUTE\0TYPE`, no value.
pub(super) fn entity_type_key(route: &str, entity_type: &str) -> Vec<u8> {
    [b"y\0", route.as_bytes(), b"\0", entity_type.as_bytes()].concat()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT];
    rmp_serde::encode::write_named(&mut bytes, value).expect("stored records serialize");
    if bytes.len() > COMPRESS_FROM {
        let mut compressed = vec![COMPRESSED_FORMAT];
        compressed.extend(lz4_flex::compress_prepend_size(&bytes[1..]));
        if compressed.len() < bytes.len() {
            return compressed;
        }
    }
    bytes
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StorageError> {
    let corrupt = |message: String| StorageError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        message,
    };
    match bytes.split_first() {
        Some((&FORMAT, rest)) => rmp_serde::from_slice(rest).map_err(|e| corrupt(e.to_string())),
        Some((&COMPRESSED_FORMAT, rest)) => {
            let claimed = rest
                .first_chunk::<4>()
                .map(|len| u32::from_le_bytes(*len) as usize);
            if claimed.is_none_or(|len| len > MAX_RECORD) {
                return Err(corrupt("a compressed record with a bad length".into()));
            }
            let record = lz4_flex::decompress_size_prepended(rest)
                .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
            rmp_serde::from_slice(&record).map_err(|e| corrupt(e.to_string()))
        }
        Some((&JSON_FORMAT, rest)) => {
            serde_json::from_slice(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((version, _)) => Err(corrupt(format!(
            "record format {version}, this host reads {JSON_FORMAT}, {FORMAT} and \
             {COMPRESSED_FORMAT}"
        ))),
        None => Err(corrupt("empty record".into())),
    }
}

// ===== Records =====

/// An event with sinks to go (`o`), and which sinks still wait for it. The event is kept once:
/// here, or, when the same commit wrote it into its entity's stream, only there (`kept_at`,
/// that entity event's key; `event` is then absent).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct EventRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) event: Option<crate::storage::OutboxEvent>,
    pub(super) sinks: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "fields::optional_bytes"
    )]
    pub(super) kept_at: Option<Vec<u8>>,
}

/// A published event (`t`), kept for the relay's retention; like an [`EventRecord`]'s, its
/// event may be kept in its entity stream instead (`kept_at`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Published {
    pub(super) at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) event: Option<crate::storage::OutboxEvent>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "fields::optional_bytes"
    )]
    pub(super) kept_at: Option<Vec<u8>>,
}

/// What the depth gauges read, kept up to date by every write that changes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Counters {
    pub(super) outbox: u64,
    pub(super) dead_letters: u64,
    pub(super) sinks: std::collections::BTreeMap<String, u64>,
    /// Dead letters per route; counted at open in stores written before hosts kept them
    /// (`routes_counted`).
    #[serde(default)]
    pub(super) routes: std::collections::BTreeMap<String, crate::storage::DeadLetterDepth>,
    #[serde(default)]
    pub(super) routes_counted: bool,
}

impl Counters {
    /// Counts a dead letter in (`add`) or out, in the total and its route's.
    pub(super) fn dead_letter(&mut self, entry: &crate::storage::DeadLetter, add: bool) {
        if add {
            self.dead_letters += 1;
        } else {
            self.dead_letters = self.dead_letters.saturating_sub(1);
        }
        let route = self.routes.entry(entry.route.clone()).or_default();
        route.count(entry, add);
        if route.count == 0 {
            self.routes.remove(&entry.route);
        }
    }
}

/// A processed key (`i`). Claims in flight are held in memory; layout 1 also stored them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum IdempotencyEntry {
    InFlight {},
    Done(crate::storage::Completed),
}

/// A layout-1 outbox record: the event and every sink's delivery state (`o`, and `p` once
/// published). Read only to move it to the current layout.
#[derive(Debug, Deserialize)]
pub(super) struct LegacyOutboxRecord {
    pub(super) seq: u64,
    pub(super) event: crate::storage::OutboxEvent,
    pub(super) pending: std::collections::BTreeMap<String, crate::storage::Delivery>,
}

/// A layout-1 published record (`p`).
#[derive(Debug, Deserialize)]
pub(super) struct LegacyPublished {
    pub(super) at: jiff::Timestamp,
    pub(super) record: LegacyOutboxRecord,
}

// ===== A processed key, as written by every version =====

/// A processed key's record. Hosts before the typed outcomes stored the HTTP answer (status
/// and body) instead of the outcome; such records are read by turning the answer back into
/// the outcome it was rendered from, so a data dir keeps its keys across the upgrade.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum CompletedRecord {
    Current {
        fingerprint: String,
        settled: crate::outcome::Settled,
        expires_at: jiff::Timestamp,
    },
    Answer {
        fingerprint: String,
        message_id: String,
        status: u16,
        #[serde(with = "base64_bytes")]
        body: Vec<u8>,
        expires_at: jiff::Timestamp,
    },
}

impl TryFrom<CompletedRecord> for crate::storage::Completed {
    type Error = String;

    fn try_from(record: CompletedRecord) -> Result<Self, String> {
        use crate::outcome::{Accepted, Cause, Rejected, Settled};
        match record {
            CompletedRecord::Current {
                fingerprint,
                settled,
                expires_at,
            } => Ok(Self {
                fingerprint,
                settled,
                expires_at,
            }),
            CompletedRecord::Answer {
                fingerprint,
                message_id,
                status,
                body,
                expires_at,
            } => {
                let body: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("the stored answer is not JSON: {e}"))?;
                let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
                let settled = if status == 202 {
                    Settled::Accepted(Accepted {
                        message_id,
                        idempotency_key: text("idempotency_key"),
                        events: body["events"]
                            .as_array()
                            .map(|ids| {
                                ids.iter()
                                    .filter_map(|id| id.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                } else {
                    Settled::Rejected(Rejected {
                        message_id,
                        dead_letter: text("dead_letter"),
                        cause: if text("type").ends_with(":plugin-fault") {
                            Cause::Fault
                        } else {
                            Cause::Refused
                        },
                        code: text("code"),
                        error: text("detail"),
                    })
                };
                Ok(Self {
                    fingerprint,
                    settled,
                    expires_at,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
