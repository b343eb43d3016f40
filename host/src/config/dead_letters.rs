//! A route's bound on its dead letter channel, `[routes.NAME.dead_letters]`: anyone who can
//! reach a route can make it refuse messages, so what its refusals keep is bounded, by count
//! and by the bytes of the bodies kept, the oldest removed first; and a body kept in one can
//! be cut to its first bytes (its size and full hash kept).

use serde::Deserialize;

/// By default, a route keeps at most this many dead letters.
pub const DEFAULT_MAX_DEAD_LETTERS: u64 = 10_000;

/// By default, a route's dead letters keep at most this many bytes of bodies (256 MiB).
pub const DEFAULT_MAX_DEAD_LETTER_BYTES: u64 = 256 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadLetters {
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    max_body_bytes: Option<u64>,
}

/// How much of the dead letter channel a route may fill; past it, its oldest entries are
/// removed (each removal audited and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterBound {
    /// Entries kept at most.
    pub max_entries: u64,
    /// Bytes of bodies (a message's, or a refused event's data) kept at most.
    pub max_bytes: u64,
    /// A refused message's body is kept up to this many bytes (its size and sha256 whole);
    /// `None` keeps it whole. A message cut short cannot be replayed.
    pub max_body_bytes: Option<u64>,
}

impl Default for DeadLetterBound {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_DEAD_LETTERS,
            max_bytes: DEFAULT_MAX_DEAD_LETTER_BYTES,
            max_body_bytes: None,
        }
    }
}

impl RawDeadLetters {
    pub(super) fn check(self, route: &str) -> Result<DeadLetterBound, String> {
        let bound = DeadLetterBound {
            max_entries: self.max_entries.unwrap_or(DEFAULT_MAX_DEAD_LETTERS),
            max_bytes: self.max_bytes.unwrap_or(DEFAULT_MAX_DEAD_LETTER_BYTES),
            max_body_bytes: self.max_body_bytes,
        };
        if bound.max_entries == 0 || bound.max_bytes == 0 {
            return Err(format!(
                "routes.{route}.dead_letters: max_entries and max_bytes are at least 1"
            ));
        }
        Ok(bound)
    }
}
