//! What the host's operations answer: values an embedder matches on, with no HTTP in them.
//!
//! Expected outcomes are values, not errors: a duplicate, a key in flight, a plugin's
//! refusal, a body refused at the door are all answers the caller must handle, each with the
//! facts it needs. The HTTP transport maps them to statuses and RFC 9457 problems in one
//! place (`transport/problem.rs`).

mod command;
mod plugins;
mod replay;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::command::{Answered, AnsweredEvent, Commanded, Degraded, Queued};
pub use self::plugins::{Activated, CandidateRefused, Refold, Swap};
pub use self::replay::{BatchItem, ItemOutcome, ReplayedBatch};

use crate::plugin::DomainEvent;

/// What became of a message handed to [`crate::Host::ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ingested {
    /// Translated and committed, durably: its events are in the outbox.
    Accepted(Accepted),
    /// The plugin refused it or faulted on it; it is in the dead letter channel, durably.
    Rejected(Rejected),
    /// The same idempotency key and payload came before: the outcome given then, as it was.
    Duplicate(Settled),
    /// Another delivery of the same key is being processed; nothing was stored.
    InFlight(InFlight),
    /// The key was used before for a different payload; nothing was stored.
    KeyReused {
        /// The key.
        idempotency_key: String,
        /// The message the key belongs to.
        message_id: String,
    },
    /// The plugin asked for the message again later; nothing was stored.
    Transient(Transient),
    /// Refused at the door, before any plugin ran; nothing was stored.
    Refused(Refusal),
    /// The host could not do it now; nothing was stored.
    Unavailable(Unavailable),
}

/// How a message was settled; remembered under its idempotency key, and given back to every
/// redelivery of it within the retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Settled {
    /// Its events were committed.
    Accepted(Accepted),
    /// It went to the dead letter channel.
    Rejected(Rejected),
    /// A command the vendor answered.
    Answered(Answered),
    /// A command queued while the vendor's circuit was open.
    Queued(Queued),
}

impl Settled {
    /// The message's id.
    pub fn message_id(&self) -> &str {
        match self {
            Self::Accepted(accepted) => &accepted.message_id,
            Self::Rejected(rejected) => &rejected.message_id,
            Self::Answered(answered) => &answered.message_id,
            Self::Queued(queued) => &queued.message_id,
        }
    }
}

/// A message whose events were committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The host's id of the message, also its correlation id.
    pub message_id: String,
    /// The key it was deduplicated by.
    pub idempotency_key: String,
    /// The ids of its events, in commit order.
    pub events: Vec<String>,
}

/// A message the plugin refused or faulted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The host's id of the message.
    pub message_id: String,
    /// Its entry in the dead letter channel.
    pub dead_letter: String,
    /// Whether the plugin refused it or failed.
    pub cause: Cause,
    /// A stable code: the plugin's, or `plugin-fault`.
    pub code: String,
    /// What went wrong, for people.
    pub error: String,
}

/// Why a plugin did not translate a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The plugin refused it (`rejected`): the input is wrong.
    Refused,
    /// The plugin failed: a trap, a missed deadline, memory or output over its limit.
    Fault,
}

/// The code of a dead letter whose plugin faulted.
pub const FAULT_CODE: &str = "plugin-fault";

/// Another delivery of the key holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The key.
    pub idempotency_key: String,
    /// Whether this delivery held the key and lost it to another one (its in-flight timeout
    /// passed) before it could commit.
    pub taken_over: bool,
}

/// A plugin's `transient` refusal: try again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient {
    /// The plugin's code.
    pub code: String,
    /// The plugin's sentence.
    pub message: String,
    /// When to try again.
    pub retry_after: Duration,
}

/// How long a caller waits before it tries again after a transient refusal or an outage.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why the host refused a message at the door, before any plugin ran.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No route has that name.
    UnknownRoute {
        /// The name asked for.
        route: String,
    },
    /// The caller's idempotency key is not 1 to 255 bytes of visible ASCII.
    BadKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The body is empty.
    EmptyBody,
    /// The body is larger than the host takes.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not a readable document: no translator could read it.
    Unreadable(dragoman_body::Error),
    /// The request itself could not be read.
    BadRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// The body did not arrive within the time allowed.
    SlowBody {
        /// The time allowed.
        limit: std::time::Duration,
    },
    /// The body is content-encoded (`gzip`, …), which the host does not decode.
    Encoded {
        /// The `Content-Encoding` given.
        encoding: String,
    },
    /// The route takes no commands (it has no `[routes.NAME.commands]`).
    NoCommands {
        /// The route.
        route: String,
    },
    /// The body is not a command: `{"type": …, "subject": …, "data": …}`.
    BadCommand {
        /// What is wrong with it.
        reason: String,
    },
    /// The route takes messages with a credential (`[routes.NAME.auth]`), and this one came
    /// without it, or with a wrong one; nothing was stored.
    Unauthenticated {
        /// The route.
        route: String,
        /// `bearer`, `basic` or `standard_webhooks`.
        scheme: &'static str,
        /// What was wrong, without the credential.
        reason: String,
    },
}

/// The host could not do what was asked now; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// The store failed; a retry may succeed.
    Storage(String),
    /// The host is shutting down.
    ShuttingDown,
    /// As many message requests wait for a worker as the host lets wait; a retry later may
    /// succeed.
    Saturated,
    /// The route runs and has waiting as many messages as its bulkhead lets (`max_concurrency`
    /// and `max_waiting`); a retry later may succeed.
    RouteBusy {
        /// The route.
        route: String,
    },
    /// A task of the host failed (a bug): the detail is in the log.
    Internal(String),
}

/// What [`crate::Host::translate`] answers: the translation, stored nowhere.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Translated {
    /// The events, and the idempotency key the plugin derived, if any.
    Events {
        /// The key the plugin derived from the content.
        idempotency_key: Option<String>,
        /// The events.
        events: Vec<DomainEvent>,
    },
    /// The plugin refused the message or faulted on it.
    Rejected {
        /// Whether it refused or failed.
        cause: Cause,
        /// The plugin's code, or `plugin-fault`.
        code: String,
        /// What went wrong.
        error: String,
    },
    /// The plugin asked for the message again later.
    Transient(Transient),
    /// Refused at the door.
    Refused(Refusal),
    /// The host could not do it now.
    Unavailable(Unavailable),
}

/// What [`crate::Host::replay`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replayed {
    /// A translation dead letter went through the plugin and its events were committed; the
    /// entry is gone.
    Accepted(Accepted),
    /// A delivery dead letter's event is back in the outbox for its sink; the entry is gone.
    Requeued {
        /// The entry.
        dead_letter: String,
        /// The event.
        event: String,
        /// The sink.
        sink: String,
    },
    /// The plugin refused or faulted again; the entry stays, updated.
    RejectedAgain(Rejected),
    /// The plugin asked for it again later; the entry stays as it was.
    Transient {
        /// The entry.
        dead_letter: String,
        /// The plugin's refusal.
        transient: Transient,
    },
    /// Another replay of the same entry is running; this one did nothing.
    InProgress {
        /// The entry.
        dead_letter: String,
    },
    /// No such entry.
    NotFound {
        /// What was missing: `dead letter` or `message`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The entry is a command's: it is not replayed (a vendor call is not repeated behind
    /// the caller's back); send the command again with a new key.
    NotReplayable {
        /// The entry.
        dead_letter: String,
    },
    /// The version asked to replay through cannot be had (unknown, ambiguous, refused by its
    /// checks); nothing changed.
    Target(Box<Activated>),
    /// The entry's idempotency key was settled by another message since it was refused (a
    /// corrected resend under the key the plugin derives was accepted): replaying it would
    /// apply the key twice. Nothing changed; discard the entry.
    Superseded {
        /// The entry.
        dead_letter: String,
        /// The message that settled the key.
        message_id: String,
    },
    /// The entry keeps only the first bytes of its message (the route caps what a dead
    /// letter keeps): there is not enough to translate. Nothing changed; have the vendor
    /// send it again, or discard the entry.
    BodyCut {
        /// The entry.
        dead_letter: String,
        /// The bytes kept.
        kept: u64,
        /// The whole body's size.
        size: u64,
    },
    /// The entry's route is no longer configured.
    RouteGone {
        /// The entry.
        dead_letter: String,
        /// The route.
        route: String,
    },
    /// The host could not do it now.
    Unavailable(Unavailable),
}

/// What [`crate::Host::discard`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Discarded {
    /// The entry is gone; the audit trail records it.
    Discarded,
    /// No such entry.
    NotFound,
    /// The host could not do it now.
    Unavailable(Unavailable),
}

/// What a collection of the plugin registry answers (`POST /v1/plugins/gc`): the versions
/// and compiled files removed, or with `dry_run` that would be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collected {
    /// Nothing was removed: this is what would be.
    pub dry_run: bool,
    /// The kept versions removed, oldest first.
    pub versions: Vec<crate::registry::Version>,
    /// Their compiled files.
    pub compiled: Vec<crate::plugin::CompiledFile>,
    /// The bytes freed.
    pub bytes: u64,
}

/// What an operator's "retry now" on a sink answers (`POST /v1/sinks/{sink}/retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retried {
    /// These partition keys waited for their retry time at the sink and are due now (none
    /// when nothing waited); the audit stream `sink:NAME` records it.
    Released {
        /// The sink.
        sink: String,
        /// The keys released.
        keys: Vec<String>,
    },
    /// No sink of that name.
    UnknownSink {
        /// The name asked for.
        sink: String,
    },
    /// The host could not do it now.
    Unavailable(Unavailable),
}
