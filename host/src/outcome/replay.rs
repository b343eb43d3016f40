//! What a batch replay of dead letters answers ([`crate::Host::replay_batch`]).

use super::{Activated, Replayed, Unavailable};
use crate::plugin::DomainEvent;
use crate::storage::Producer;

/// What a batch replay did, or would do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ReplayedBatch {
    /// Every matching entry, oldest first, with what became of it (or would).
    Done {
        /// The version the entries went (or would go) through.
        target: Producer,
        /// Whether nothing was stored.
        dry_run: bool,
        /// The entries.
        items: Vec<BatchItem>,
    },
    /// No route has that name.
    UnknownRoute {
        /// The name asked for.
        route: String,
    },
    /// The target version could not be had: unknown, ambiguous, or refused by its checks.
    Target(Box<Activated>),
    /// The host could not do it now.
    Unavailable(Unavailable),
}

/// One entry of a batch replay.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// The dead letter entry.
    pub dead_letter: String,
    /// Its message.
    pub message_id: String,
    /// What became of it.
    pub outcome: ItemOutcome,
}

/// What became of one entry, or would.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ItemOutcome {
    /// Dry run: the target would commit these events.
    Events(Vec<DomainEvent>),
    /// Dry run: the target would refuse it.
    Refused {
        /// The plugin's code.
        code: String,
        /// Its sentence.
        message: String,
    },
    /// Dry run: the target faulted, or the message is gone.
    Fault(String),
    /// Replayed for real, as a single replay answers.
    Replayed(Replayed),
}
