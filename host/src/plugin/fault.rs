//! Plugin faults: a call that ended in a trap, a missed deadline, a memory cap, oversize or
//! malformed output. Distinct from a translation the plugin refused on purpose (`rejected`,
//! `transient`), which is a value, not an error.

use std::fmt;
use std::time::Duration;

use super::PluginRef;

/// What went wrong in a plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// The guest trapped: a panic, an `unreachable`, a stack overflow, a bad memory access.
    Trap {
        /// What the trap was, then the guest's last words on stderr, if any (a panic message).
        message: String,
        /// Where in the guest it happened, when wasmtime could tell.
        backtrace: Option<String>,
    },
    /// The call ran past its wall-clock deadline and was interrupted.
    Deadline {
        /// The deadline it missed.
        limit: Duration,
    },
    /// The guest tried to grow a linear memory past the cap.
    Memory {
        /// The size it asked for, in bytes.
        requested: usize,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The call returned more bytes than allowed.
    Output {
        /// What it returned, in bytes.
        size: usize,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The call returned something the contract forbids (an event payload that is not JSON,
    /// an event type that is not a dotted, versioned name, an empty subject).
    InvalidOutput {
        /// What is wrong with it.
        message: String,
    },
}

/// A plugin call that failed through the plugin's fault, naming the plugin and its version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin} {kind}")]
pub struct Fault {
    plugin: PluginRef,
    kind: FaultKind,
}

impl Fault {
    pub(crate) fn new(plugin: PluginRef, kind: FaultKind) -> Self {
        Self { plugin, kind }
    }

    /// The plugin that faulted.
    pub fn plugin(&self) -> &PluginRef {
        &self.plugin
    }

    /// What went wrong.
    pub fn kind(&self) -> &FaultKind {
        &self.kind
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trap { message, .. } => write!(f, "trapped: {message}"),
            Self::Deadline { limit } => {
                write!(f, "missed its deadline of {} ms", limit.as_millis())
            }
            Self::Memory { requested, limit } => {
                write!(
                    f,
                    "exceeded its memory cap of {limit} bytes (asked for {requested})"
                )
            }
            Self::Output { size, limit } => {
                write!(
                    f,
                    "returned {size} bytes, over the output cap of {limit} bytes"
                )
            }
            Self::InvalidOutput { message } => write!(f, "returned invalid output: {message}"),
        }
    }
}
