//! Typed translation errors: `rejected` (the input is wrong: dead-letter, do not retry) and
//! `transient` (a later attempt may succeed).
//!
//! Codes are stable, kebab-case and meant for machines; messages are for people and name
//! the field or value at fault.

use core::fmt;

use crate::__bindings::wit;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is wrong and will stay wrong.
    Rejected,
    /// Something other than the input failed; a later attempt may succeed.
    Transient,
}

/// A translation that failed on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    code: String,
    message: String,
}

impl Error {
    /// The input is wrong and will stay wrong: the host dead-letters it.
    pub fn rejected(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Rejected,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A later attempt may succeed: the host stores nothing and asks the sender to retry.
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            code: code.into(),
            message: message.into(),
        }
    }

    /// `rejected` with code `missing-field`.
    pub fn missing_field(field: &str) -> Self {
        Self::rejected("missing-field", format!("missing field `{field}`"))
    }

    /// `rejected` with code `invalid-value`, naming the field and the value.
    pub fn invalid_value(field: &str, value: impl fmt::Display, why: &str) -> Self {
        Self::rejected(
            "invalid-value",
            format!("field `{field}` has value `{value}`: {why}"),
        )
    }

    /// Whether retrying can help.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The sentence for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_wit(self) -> wit::TranslateError {
        let failure = wit::Failure {
            code: self.code,
            message: self.message,
        };
        match self.kind {
            ErrorKind::Rejected => wit::TranslateError::Rejected(failure),
            ErrorKind::Transient => wit::TranslateError::Transient(failure),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Rejected => "rejected",
            ErrorKind::Transient => "transient",
        };
        write!(f, "{kind} ({}): {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}
