//! How the embedded store lays records out: the keys of each kind of record (by prefix, in
//! one tree) and the encoding of values, a format byte then JSON. The encoding is a
//! compatibility boundary: a record written by an older host must still be read.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::storage::StorageError;

/// The record format version, the first byte of every value.
pub(super) const FORMAT: u8 = 1;

pub(super) fn idempotency_key(route: &str, key: &str) -> Vec<u8> {
    [b"i\0", route.as_bytes(), b"\0", key.as_bytes()].concat()
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

pub(super) fn dead_letter_key(id: &str) -> Vec<u8> {
    [b"q\0", id.as_bytes()].concat()
}

pub(super) fn audit_prefix(message_id: &str) -> Vec<u8> {
    [b"a\0", message_id.as_bytes(), b"\0"].concat()
}

pub(super) fn audit_key(message_id: &str, version: u64) -> Vec<u8> {
    [audit_prefix(message_id).as_slice(), &version.to_be_bytes()].concat()
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT];
    serde_json::to_writer(&mut bytes, value).expect("stored records serialize");
    bytes
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StorageError> {
    let corrupt = |message: String| StorageError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        message,
    };
    match bytes.split_first() {
        Some((&FORMAT, rest)) => serde_json::from_slice(rest).map_err(|e| corrupt(e.to_string())),
        Some((version, _)) => Err(corrupt(format!(
            "record format {version}, this host reads {FORMAT}"
        ))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Bytes in stored records as base64 text: a quarter of the size of a JSON array of numbers,
/// and far quicker to write and read.
pub(crate) mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
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
