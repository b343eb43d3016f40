//! What a command answers ([`crate::Host::command`]): the vendor's answer as domain events,
//! a designed degradation while the vendor's circuit is open, or one of the answers an
//! ingest gives too.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{InFlight, Refusal, Rejected, Settled, Transient, Unavailable};

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Commanded {
    /// The vendor answered; the events the plugin made of its answer are committed.
    Answered(Answered),
    /// The same command key and payload came before: the answer given then, as it was.
    Duplicate(Settled),
    /// The vendor's circuit is open: nothing was sent, and the route's degradation answers.
    Degraded(Degraded),
    /// The plugin refused the command or the vendor's answer for good (or faulted); it is in
    /// the dead letter channel.
    Rejected(Rejected),
    /// The plugin asked for the command again later (for example, it read the vendor's
    /// answer as a passing failure); nothing was stored.
    Transient(Transient),
    /// The vendor gave no answer after the route's attempts; nothing was stored.
    VendorFailed {
        /// What happened on the last attempt.
        error: String,
    },
    /// Another delivery of the same key is being processed; nothing was stored.
    InFlight(InFlight),
    /// The key was used before for a different command; nothing was stored.
    KeyReused {
        /// The key.
        idempotency_key: String,
        /// The command the key belongs to.
        message_id: String,
    },
    /// Refused at the door, before any plugin ran; nothing was stored.
    Refused(Refusal),
    /// The host could not do it now; nothing was stored.
    Unavailable(Unavailable),
}

/// The vendor's answer to a command, as domain events: what the caller gets, and what a
/// redelivery of the same key gets again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// The host's id of the command, also its correlation id.
    pub message_id: String,
    /// The key it was deduplicated by, and sent to the vendor as `Idempotency-Key`.
    pub idempotency_key: String,
    /// The vendor's HTTP status.
    pub vendor_status: u16,
    /// The events the plugin made of the answer, in commit order.
    pub events: Vec<AnsweredEvent>,
}

/// One event of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnsweredEvent {
    /// Its id in the outbox.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its subject.
    pub subject: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its payload, a JSON document.
    pub data: serde_json::Value,
}

/// A command accepted while the vendor's circuit was open, kept in the outbox and sent once
/// it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The host's id of the command.
    pub message_id: String,
    /// The key it was deduplicated by.
    pub idempotency_key: String,
}

/// The route's degradation, while the vendor's circuit is open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Degraded {
    /// `fail`, or `cached` with nothing cached: try again when the next probe may go
    /// (`None`: an operator forced the circuit open).
    Failed {
        /// Until the next probe.
        retry_after: Option<Duration>,
    },
    /// `cached`: the last good answer for the same command type and subject.
    Cached {
        /// That answer.
        answer: Answered,
        /// How old it is.
        age: Duration,
    },
    /// `default`: the answer the route configures.
    Default(serde_json::Value),
    /// `queue`: stored, to be sent once the circuit closes.
    Queued(Queued),
}
