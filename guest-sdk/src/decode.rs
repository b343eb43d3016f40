//! Body decoding that trusts the bytes, not the declared content type.
//!
//! The rules live in the crate `dragoman-body`, which the host shares to check every body at
//! the door; see its documentation for them. Here its failures become `rejected` errors with
//! the same codes: `empty-body`, `invalid-encoding`, `malformed-json`, `malformed-xml`,
//! `malformed-form`, `unsupported-format`, and for a document that does not fit the type,
//! `missing-field`, `invalid-value` and `invalid-payload`.

use serde::de::DeserializeOwned;

pub use dragoman_body::{Document, Format};

use crate::Error;

/// Decodes `body`; `declared` is the content type the sender declared, used only in error
/// messages and to prefer form data for a body that could be read either way.
///
/// # Errors
///
/// `rejected` with one of the codes in the module documentation.
pub fn decode(body: &[u8], declared: Option<&str>) -> Result<Document, Error> {
    dragoman_body::decode(body, declared).map_err(rejected)
}

/// Checks that `body` decodes, by the same rules as [`decode`], without building the tree
/// for JSON.
///
/// # Errors
///
/// As [`decode`].
pub fn check(body: &[u8], declared: Option<&str>) -> Result<Format, Error> {
    dragoman_body::check(body, declared).map_err(rejected)
}

/// Decodes `body` and deserializes it into `T`. A JSON body is read straight into `T`, with
/// no intermediate tree; XML and form data go through [`decode`].
///
/// # Errors
///
/// As [`decode`] and [`deserialize`].
pub fn parse<T: DeserializeOwned>(body: &[u8], declared: Option<&str>) -> Result<T, Error> {
    dragoman_body::parse(body, declared).map_err(rejected)
}

/// Deserializes a decoded document into `T`, mapping serde's complaints to stable codes.
///
/// # Errors
///
/// `rejected` with code `missing-field` (a required field is absent), `invalid-value` (a
/// field has the wrong type or an unknown variant) or `invalid-payload` (anything else).
pub fn deserialize<T: DeserializeOwned>(document: Document) -> Result<T, Error> {
    dragoman_body::deserialize(document).map_err(rejected)
}

/// Every decoding failure is the sender's: the body will not get better by retrying.
fn rejected(e: dragoman_body::Error) -> Error {
    Error::rejected(e.code(), e.message())
}
