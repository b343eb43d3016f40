//! The crate's one error type: opaque, with a [`ErrorKind`] to branch on.

use std::fmt;

use crate::config::ConfigError;
use crate::fixtures::FixtureError;
use crate::plugin::{Fault, LoadError};
use crate::registry::RegistryError;
use crate::storage::StorageError;

/// What kind of thing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A component could not be loaded as a plugin.
    Load,
    /// A plugin call faulted: trap, deadline, memory, output.
    Fault,
    /// Contract fixtures could not be read.
    Fixture,
    /// The configuration is invalid.
    Config,
    /// The store failed.
    Storage,
    /// The plugin registry could not be read or written.
    Registry,
}

/// An error from the Dragoman host library.
#[derive(Debug)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Debug, thiserror::Error)]
enum Inner {
    #[error(transparent)]
    Load(LoadError),
    #[error(transparent)]
    Fault(Fault),
    #[error(transparent)]
    Fixture(FixtureError),
    #[error(transparent)]
    Config(ConfigError),
    #[error("{0}")]
    ConfigMessage(String),
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Registry(RegistryError),
}

impl Error {
    /// What kind of thing failed.
    ///
    /// ```
    /// use dragoman::{Error, ErrorKind};
    /// use dragoman::plugin::Runtime;
    ///
    /// let runtime = Runtime::builder().build()?;
    /// let error: Error = runtime.load(b"not wasm", "junk").unwrap_err().into();
    /// assert_eq!(error.kind(), ErrorKind::Load);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match *self.inner {
            Inner::Load(_) => ErrorKind::Load,
            Inner::Fault(_) => ErrorKind::Fault,
            Inner::Fixture(_) => ErrorKind::Fixture,
            Inner::Config(_) | Inner::ConfigMessage(_) => ErrorKind::Config,
            Inner::Storage(_) => ErrorKind::Storage,
            Inner::Registry(_) => ErrorKind::Registry,
        }
    }

    /// Whether a plugin call faulted.
    ///
    /// ```
    /// use dragoman::Error;
    /// use dragoman::plugin::Runtime;
    ///
    /// let runtime = Runtime::builder().build()?;
    /// let error: Error = runtime.load(b"not wasm", "junk").unwrap_err().into();
    /// assert!(!error.is_fault());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_fault(&self) -> bool {
        self.kind() == ErrorKind::Fault
    }

    /// The fault, when a plugin call faulted.
    pub fn fault(&self) -> Option<&Fault> {
        match &*self.inner {
            Inner::Fault(fault) => Some(fault),
            _ => None,
        }
    }
}

impl Error {
    pub(crate) fn config(message: String) -> Self {
        Self {
            inner: Box::new(Inner::ConfigMessage(message)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        Self {
            inner: Box::new(Inner::Load(e)),
        }
    }
}

impl From<Fault> for Error {
    fn from(e: Fault) -> Self {
        Self {
            inner: Box::new(Inner::Fault(e)),
        }
    }
}

impl From<FixtureError> for Error {
    fn from(e: FixtureError) -> Self {
        Self {
            inner: Box::new(Inner::Fixture(e)),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self {
            inner: Box::new(Inner::Config(e)),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Self {
            inner: Box::new(Inner::Storage(e)),
        }
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Self {
            inner: Box::new(Inner::Registry(e)),
        }
    }
}
