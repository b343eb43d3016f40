//! A segment's bytes: the line `dragoman-segment 1`, then one record per audit stream (a
//! big-endian `u32` length and the stream's archived events with the message's state
//! folded through them, in the store's record encoding). The segment's digest is the
//! sha256 of all of it.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ArchiveError, SegmentSink};
use crate::storage::{AuditEvent, decode_record, encode_record};

const MAGIC: &[u8] = b"dragoman-segment 1\n";

/// The most a record may claim to be: a message's stream is short, and a damaged length must
/// not make the reader allocate without end.
const MAX_RECORD: u32 = 256 << 20;

/// One audit stream's archived events, in version order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StreamSegment {
    /// The stream: a message's id.
    pub(crate) stream: String,
    /// Its archived events.
    pub(crate) events: Vec<AuditEvent>,
    /// The message's state folded through the last of them
    /// ([`crate::audit::MessageState`] as JSON).
    pub(crate) state: serde_json::Value,
    /// Whether the stream is closed: archived whole, its message settled for good, so the
    /// hot store keeps no anchor of it.
    pub(crate) closed: bool,
}

/// A segment being written, hashed as it goes.
pub(crate) struct SegmentWriter {
    sink: Box<dyn SegmentSink>,
    digest: Sha256,
    name: String,
}

impl SegmentWriter {
    /// Starts segment `name` in `sink`.
    pub(crate) fn new(name: &str, sink: Box<dyn SegmentSink>) -> Result<Self, ArchiveError> {
        let mut writer = Self {
            sink,
            digest: Sha256::new(),
            name: name.to_owned(),
        };
        writer.write(MAGIC)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.digest.update(bytes);
        self.sink
            .write_all(bytes)
            .map_err(|source| ArchiveError::Io {
                path: self.name.clone(),
                source,
            })
    }

    /// Appends one stream's record.
    pub(crate) fn put(&mut self, record: &StreamSegment) -> Result<(), ArchiveError> {
        let bytes = encode_record(record);
        let length = u32::try_from(bytes.len())
            .ok()
            .filter(|n| *n <= MAX_RECORD)
            .ok_or_else(|| ArchiveError::Corrupt {
                segment: self.name.clone(),
                message: format!("stream {}'s record is too long", record.stream),
            })?;
        self.write(&length.to_be_bytes())?;
        self.write(&bytes)
    }

    /// Makes the segment visible; its digest.
    pub(crate) fn finish(mut self) -> Result<String, ArchiveError> {
        self.sink.flush().map_err(|source| ArchiveError::Io {
            path: self.name.clone(),
            source,
        })?;
        let digest = crate::hex::encode(&self.digest.finalize());
        self.sink.finish(&digest)?;
        Ok(digest)
    }
}

/// A segment read record by record, hashed as it goes.
pub(crate) struct SegmentReader {
    read: Box<dyn Read + Send>,
    digest: Sha256,
    name: String,
}

impl SegmentReader {
    /// Reads segment `name` from `read`, from its first line.
    pub(crate) fn new(name: &str, mut read: Box<dyn Read + Send>) -> Result<Self, ArchiveError> {
        let mut magic = [0u8; MAGIC.len()];
        read.read_exact(&mut magic)
            .map_err(|source| ArchiveError::Io {
                path: name.to_owned(),
                source,
            })?;
        if magic != MAGIC {
            return Err(ArchiveError::Corrupt {
                segment: name.to_owned(),
                message: "it does not start with `dragoman-segment 1`".into(),
            });
        }
        let mut digest = Sha256::new();
        digest.update(magic);
        Ok(Self {
            read,
            digest,
            name: name.to_owned(),
        })
    }

    /// The next record, or `None` at the end.
    pub(crate) fn next_record(&mut self) -> Result<Option<StreamSegment>, ArchiveError> {
        let mut length = [0u8; 4];
        match read_all(&mut self.read, &mut length) {
            Ok(0) => return Ok(None),
            Ok(4) => {}
            Ok(_) => return Err(self.corrupt("it ends inside a record's length".into())),
            Err(source) => {
                return Err(ArchiveError::Io {
                    path: self.name.clone(),
                    source,
                });
            }
        }
        let claimed = u32::from_be_bytes(length);
        if claimed > MAX_RECORD {
            return Err(self.corrupt(format!("a record claims {claimed} bytes")));
        }
        let mut bytes = vec![0u8; claimed as usize];
        self.read
            .read_exact(&mut bytes)
            .map_err(|_| self.corrupt("it ends inside a record".into()))?;
        self.digest.update(length);
        self.digest.update(&bytes);
        decode_record(self.name.as_bytes(), &bytes)
            .map(Some)
            .map_err(|e| self.corrupt(e.to_string()))
    }

    /// The digest of everything read.
    pub(crate) fn digest(self) -> String {
        crate::hex::encode(&self.digest.finalize())
    }

    fn corrupt(&self, message: String) -> ArchiveError {
        ArchiveError::Corrupt {
            segment: self.name.clone(),
            message,
        }
    }
}

/// Reads until `buf` is full or the input ends: how many bytes were read.
fn read_all(read: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
