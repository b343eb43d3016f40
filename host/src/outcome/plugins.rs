//! What the plugin registry's operations answer: a version received, activated or rolled
//! back ([`crate::Host::push`], [`crate::Host::activate`], [`crate::Host::rollback`]).

use crate::plugin::{LoadError, PluginRef};
use crate::registry::{RegistryError, Version};
use crate::storage::Producer;

use super::Unavailable;

/// What became of a version pushed, activated or rolled back to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activated {
    /// The version serves the next messages of every route listed (each route that serves
    /// the plugin); messages in flight finish on the version they started with, whose
    /// instances go when the last of them ends.
    Serving {
        /// The version.
        version: Version,
        /// Whether the registry received it just now (a push of a version it had is not).
        new: bool,
        /// The routes that changed version; a route that served it already is not listed.
        swaps: Vec<Swap>,
    },
    /// Serving a share of the messages of every route listed, beside the active version.
    Canary {
        /// The version.
        version: Version,
        /// Whether the registry received it just now.
        new: bool,
        /// The share of each route's messages, in percent.
        percent: u8,
        /// The routes.
        routes: Vec<String>,
    },
    /// Translating the messages of every route listed in shadow.
    Shadowing {
        /// The version.
        version: Version,
        /// Whether the registry received it just now.
        new: bool,
        /// The routes.
        routes: Vec<String>,
    },
    /// The shadow stopped on the routes listed.
    ShadowStopped {
        /// The plugin.
        name: String,
        /// The routes.
        routes: Vec<String>,
    },
    /// A rollback ended the canary on the routes listed; their active version serves all.
    CanaryEnded {
        /// The plugin.
        name: String,
        /// The routes.
        routes: Vec<String>,
    },
    /// A projector version folds the reads of each entity type listed from now on (a read
    /// under way finishes on the version it started with).
    Folding {
        /// The version.
        version: Version,
        /// Whether the registry received it just now.
        new: bool,
        /// The entity types whose projector changed; one folded by it already is not listed.
        changed: Vec<Refold>,
    },
    /// A projector was asked to serve as a canary or a shadow, which only a translator can:
    /// a read is not a message whose outcome can be judged.
    NotForProjectors {
        /// The projector.
        name: String,
        /// What was asked: `canary` or `shadow`.
        asked: &'static str,
    },
    /// Kept in the registry and checked, but not made active: asked not to, or no route
    /// serves a plugin of that name (no `[projectors.TYPE]` table names the type a
    /// projector folds).
    Kept {
        /// The version.
        version: Version,
        /// Whether the registry received it just now.
        new: bool,
    },
    /// The candidate failed a check; nothing changed, the active version keeps serving.
    Refused {
        /// The plugin's name, as asked for.
        name: String,
        /// The candidate's sha256.
        sha256: String,
        /// Why.
        reason: CandidateRefused,
    },
    /// No route serves a plugin of that name (to activate or roll back).
    UnknownPlugin {
        /// The name asked for.
        name: String,
    },
    /// The registry has no version of the plugin that the selector names.
    UnknownVersion {
        /// The plugin.
        name: String,
        /// The selector, as given.
        selector: String,
    },
    /// The selector names several versions (one version string on different components):
    /// name one by its sha256.
    Ambiguous {
        /// The plugin.
        name: String,
        /// The versions it names.
        versions: Vec<Version>,
    },
    /// No route serving the plugin has an earlier version to go back to.
    NothingToRollBack {
        /// The plugin.
        name: String,
    },
    /// The host could not do it now; nothing changed.
    Unavailable(Unavailable),
}

/// One route moved from one version to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    /// The route.
    pub route: String,
    /// The version it served.
    pub from: Producer,
    /// The version it serves now.
    pub to: Producer,
}

/// One entity type's projector moved from one version to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refold {
    /// The entity type.
    pub entity_type: String,
    /// The version that folded it.
    pub from: PluginRef,
    /// The version that folds it now.
    pub to: PluginRef,
}

impl Activated {
    /// The answer when the registry failed: logged, and nothing changed.
    pub(crate) fn registry_failed(e: &RegistryError) -> Self {
        tracing::error!(error = %e, "the plugin registry failed");
        Self::Unavailable(Unavailable::Storage(e.to_string()))
    }
}

/// Why a candidate version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateRefused {
    /// The bytes are not a WebAssembly component, or it does not compile.
    #[error("{0}")]
    NotAComponent(String),
    /// It imports what the host does not grant, or does not export the contract's world.
    #[error("{0}")]
    WrongWorld(String),
    /// Its `metadata.info` call faulted.
    #[error("{0}")]
    Metadata(String),
    /// It names itself differently from the plugin it was given as.
    #[error("the component names itself `{found}`, not `{expected}`")]
    OtherPlugin {
        /// The name it was given as.
        expected: String,
        /// The name it gives itself.
        found: String,
    },
    /// It lacks a direction a route that serves the plugin uses.
    #[error("{0}")]
    Directions(String),
    /// One of the fixtures it carries failed.
    #[error("fixture `{fixture}` failed:\n{diff}")]
    Fixture {
        /// The fixture's name.
        fixture: String,
        /// Expected (`-`) against actual (`+`).
        diff: String,
    },
    /// The fixtures it carries cannot be read.
    #[error("its fixtures cannot be read: {0}")]
    Fixtures(String),
}

impl CandidateRefused {
    /// A stable code for the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAComponent(_) => "not-a-component",
            Self::WrongWorld(_) => "wrong-world",
            Self::Metadata(_) => "metadata-fault",
            Self::OtherPlugin { .. } => "other-plugin",
            Self::Directions(_) => "missing-direction",
            Self::Fixture { .. } => "fixture-failed",
            Self::Fixtures(_) => "bad-fixtures",
        }
    }
}

impl From<LoadError> for CandidateRefused {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Link { .. } | LoadError::Contract { .. } => Self::WrongWorld(e.to_string()),
            LoadError::Metadata { .. } => Self::Metadata(e.to_string()),
            _ => Self::NotAComponent(e.to_string()),
        }
    }
}
