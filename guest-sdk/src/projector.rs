//! Projectors: the fold of one entity type's domain events into its state, a component of the
//! `dragoman:projector` contract. The host folds an entity's stream with it to answer "what
//! was this order's state at 14:02, and which vendor messages made it so".
//!
//! ```no_run
//! use dragoman_guest::{Projector, ProjectorInfo, Refusal, StreamEvent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { events: u64 }
//!
//! struct Count;
//!
//! impl Projector for Count {
//!     type State = Counter;
//!     fn info() -> ProjectorInfo {
//!         ProjectorInfo::new("counter", "1.0.0", "order")
//!     }
//!     fn initial() -> Counter {
//!         Counter::default()
//!     }
//!     fn apply(state: Counter, event: &StreamEvent) -> Result<Counter, Refusal> {
//!         if !event.event_type.starts_with("order.") {
//!             return Err(Refusal::new("not-an-order", format!("{} is not about an order", event.event_type)));
//!         }
//!         Ok(Counter { events: state.events + 1 })
//!     }
//! }
//!
//! dragoman_guest::export_projector!(Count);
//! # fn main() {}
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a projector is: its name, its own version and the entity type it folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorInfo {
    /// Kebab-case.
    pub name: String,
    /// Semver. Snapshots are keyed by it: bump it whenever `apply` changes.
    pub version: String,
    /// The first segment of the event types it folds, for example `order`.
    pub entity_type: String,
}

impl ProjectorInfo {
    /// Builds the info from its three parts.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        entity_type: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            entity_type: entity_type.into(),
        }
    }
}

/// A transition the domain does not allow: the host reports the event as refused with this
/// code and message, keeps the state as it was, and goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A stable, kebab-case code, for example `already-shipped`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl Refusal {
    /// A refusal with its code and sentence.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One event of the entity's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// Its place in the stream, from 1.
    pub seq: u64,
    /// What happened, for example `order.paid.v1`.
    pub event_type: String,
    /// The entity's id.
    pub subject: String,
    /// The payload, JSON.
    pub data: String,
    /// When the host committed it, RFC 3339.
    pub committed_at: String,
    /// When it happened by the vendor's word, RFC 3339, if the data says.
    pub occurred_at: Option<String>,
}

impl StreamEvent {
    pub(crate) fn from_wit(
        event: crate::__bindings::projector::dragoman::projector::types::EntityEvent,
    ) -> Self {
        Self {
            seq: event.seq,
            event_type: event.event_type,
            subject: event.subject,
            data: event.data,
            committed_at: event.committed_at,
            occurred_at: event.occurred_at,
        }
    }

    /// The payload as `T`.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] with code `invalid-event-data` naming the event and what does not fit.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Refusal> {
        serde_json::from_str(&self.data).map_err(|e| {
            Refusal::new(
                "invalid-event-data",
                format!("event {} ({}) data: {e}", self.seq, self.event_type),
            )
        })
    }
}

/// The fold of an entity type.
pub trait Projector {
    /// The entity's state, kept by the host as JSON between calls.
    type State: Serialize + DeserializeOwned;

    /// The projector's metadata; the same value on every call.
    fn info() -> ProjectorInfo;

    /// The state before the first event.
    fn initial() -> Self::State;

    /// The state after `event`.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when `event` cannot happen to an entity in `state`.
    fn apply(state: Self::State, event: &StreamEvent) -> Result<Self::State, Refusal>;
}

pub(crate) fn encode_state<S: Serialize>(state: &S) -> String {
    // A state that cannot be written as JSON is a bug in the projector: a fault, reported by
    // the host with this message.
    serde_json::to_string(state).expect("the projector's state serializes to JSON")
}

pub(crate) fn decode_state<S: DeserializeOwned>(state: &str) -> S {
    // The host passes back only what this projector version returned, so a state that does
    // not read is a bug in the projector (a `State` that does not round-trip): a fault.
    serde_json::from_str(state)
        .unwrap_or_else(|e| panic!("the state does not read back as the projector's State: {e}"))
}

/// Exports a type that implements [`Projector`] as a projector component. Use it once per
/// crate, in place of [`export!`](crate::export).
#[macro_export]
macro_rules! export_projector {
    ($projector:ty) => {
        #[doc(hidden)]
        type __DragomanProjector = $crate::__bindings::ProjectorAdapter<$projector>;
        $crate::__bindings::__export_projector!(
            __DragomanProjector with_types_in $crate::__bindings::projector
        );
    };
}
