//! Body decoding that trusts the bytes, not the declared content type: the part of the
//! guest SDK that the host shares, in a crate of its own so that the host does not build the
//! guest's bindings.
//!
//! Vendors declare `application/json` and send XML, prefix JSON with a byte order mark, or
//! post form data. [`decode`] looks at the body itself:
//!
//! - a UTF-8 byte order mark is dropped; a UTF-16 one (either order) is decoded;
//! - after leading white space, `{` or `[` is JSON, `<` is XML, and `key=value` pairs joined
//!   by `&` are form data; any other JSON value (a string, a number) is JSON too.
//!
//! Every format becomes one [`serde_json::Value`] tree, so one serde struct reads them all:
//!
//! - JSON numbers keep their exact text (no floating point on the way);
//! - an XML root element becomes an object of its children; a child that repeats becomes an
//!   array; a leaf's text becomes a string and an empty element `null`; attributes become
//!   `@name` keys; namespaces are dropped;
//! - form keys with brackets nest: `items[0][sku]=A` is `{"items": [{"sku": "A"}]}`; a key
//!   that repeats becomes an array.
//!
//! Failures are an [`Error`] whose [`ErrorKind`] has one of these codes: `empty-body`, `invalid-encoding`,
//! `malformed-json`, `malformed-xml`, `malformed-form`, `unsupported-format`.

#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The format a body turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// XML.
    Xml,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// A decoded body.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// What the body turned out to be.
    pub format: Format,
    /// The body as one tree.
    pub value: Value,
}

/// Decodes `body`; `declared` is the content type the sender declared, used only in error
/// messages and to prefer form data for a body that could be read either way.
///
/// # Errors
///
/// An [`Error`] with one of the codes in the module documentation.
pub fn decode(body: &[u8], declared: Option<&str>) -> Result<Document, Error> {
    let text = text(body)?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(Error::new(ErrorKind::Empty, "the body is empty"));
    }
    let declared_form = declared.is_some_and(|d| {
        d.trim()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    match trimmed.as_bytes()[0] {
        b'{' | b'[' => json(trimmed),
        b'<' => xml(trimmed),
        _ if looks_like_form(trimmed)
            && (declared_form || serde_json::from_str::<Value>(trimmed).is_err()) =>
        {
            form(trimmed)
        }
        _ => match serde_json::from_str::<Value>(trimmed) {
            Ok(value) => Ok(Document {
                format: Format::Json,
                value,
            }),
            Err(_) => Err(Error::new(
                ErrorKind::UnsupportedFormat,
                format!(
                    "the body is neither JSON, XML nor form data (declared content type: {})",
                    declared.unwrap_or("none")
                ),
            )),
        },
    }
}

/// Checks that `body` decodes, by the same rules as [`decode`], without building the tree
/// for JSON (the host runs this on every message before any plugin).
///
/// # Errors
///
/// As [`decode`].
pub fn check(body: &[u8], declared: Option<&str>) -> Result<Format, Error> {
    let text = text(body)?;
    let trimmed = text.trim_start();
    if matches!(trimmed.as_bytes().first(), Some(b'{' | b'[')) {
        return serde_json::from_str::<serde::de::IgnoredAny>(trimmed)
            .map(|_| Format::Json)
            .map_err(|e| {
                Error::new(
                    ErrorKind::MalformedJson,
                    format!("the body is not valid JSON: {e}"),
                )
            });
    }
    decode(body, declared).map(|document| document.format)
}

/// Decodes `body` and deserializes it into `T`. A JSON body is read straight into `T`, with
/// no intermediate tree; XML and form data go through [`decode`].
///
/// # Errors
///
/// As [`decode`] and [`deserialize`].
pub fn parse<T: DeserializeOwned>(body: &[u8], declared: Option<&str>) -> Result<T, Error> {
    let text = text(body)?;
    let trimmed = text.trim_start();
    if matches!(trimmed.as_bytes().first(), Some(b'{' | b'[')) {
        let mut json = serde_json::Deserializer::from_str(trimmed);
        let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            if e.inner().is_syntax() || e.inner().is_eof() {
                Error::new(
                    ErrorKind::MalformedJson,
                    format!("the body is not valid JSON: {}", e.inner()),
                )
            } else {
                data_error(&e.path().to_string(), &e.into_inner().to_string())
            }
        })?;
        json.end().map_err(|e| {
            Error::new(
                ErrorKind::MalformedJson,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        return Ok(value);
    }
    deserialize(decode(body, declared)?)
}

/// Deserializes a decoded document into `T`, mapping serde's complaints to stable codes.
///
/// # Errors
///
/// An [`Error`] with code `missing-field` (a required field is absent), `invalid-value` (a
/// field has the wrong type or an unknown variant) or `invalid-payload` (anything else).
pub fn deserialize<T: DeserializeOwned>(document: Document) -> Result<T, Error> {
    serde_path_to_error::deserialize(document.value)
        .map_err(|e| data_error(&e.path().to_string(), &e.into_inner().to_string()))
}

/// A document that does not fit the type: `missing-field`, `invalid-value` or
/// `invalid-payload`, with the path to the value when serde does not name it.
fn data_error(path: &str, message: &str) -> Error {
    // Errors from inside a list read from a tree start with the element's index: `[0] ..`.
    let bare = message
        .trim_start_matches(|c: char| c == '[' || c == ']' || c.is_ascii_digit() || c == ' ');
    let kind = if bare.starts_with("missing field") {
        ErrorKind::MissingField
    } else if bare.starts_with("invalid type")
        || bare.starts_with("invalid value")
        || bare.starts_with("unknown variant")
    {
        ErrorKind::InvalidValue
    } else {
        ErrorKind::InvalidPayload
    };
    // serde_json appends the position for errors read from text; the path says more.
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    };
    if path == "." {
        Error::new(kind, message)
    } else {
        Error::new(kind, format!("{path}: {message}"))
    }
}

fn text(body: &[u8]) -> Result<std::borrow::Cow<'_, str>, Error> {
    let utf16 = |bytes: &[u8], big_endian: bool| -> Result<String, Error> {
        if !bytes.len().is_multiple_of(2) {
            return Err(Error::new(
                ErrorKind::Encoding,
                "the UTF-16 body has an odd number of bytes",
            ));
        }
        let units = bytes.chunks_exact(2).map(|pair| {
            let pair = [pair[0], pair[1]];
            if big_endian {
                u16::from_be_bytes(pair)
            } else {
                u16::from_le_bytes(pair)
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Encoding,
                    format!("the UTF-16 body is malformed: {e}"),
                )
            })
    };
    match body {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, false).map(Into::into),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, true).map(Into::into),
        _ => utf8(body),
    }
}

fn utf8(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, Error> {
    std::str::from_utf8(bytes).map(Into::into).map_err(|e| {
        Error::new(
            ErrorKind::Encoding,
            format!(
                "the body is not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

fn json(text: &str) -> Result<Document, Error> {
    serde_json::from_str(text)
        .map(|value| Document {
            format: Format::Json,
            value,
        })
        .map_err(|e| {
            Error::new(
                ErrorKind::MalformedJson,
                format!("the body is not valid JSON: {e}"),
            )
        })
}

// ===== XML =====

fn xml(text: &str) -> Result<Document, Error> {
    let document = roxmltree::Document::parse(text).map_err(|e| {
        Error::new(
            ErrorKind::MalformedXml,
            format!("the body is not valid XML: {e}"),
        )
    })?;
    Ok(Document {
        format: Format::Xml,
        value: element(document.root_element()),
    })
}

fn element(node: roxmltree::Node<'_, '_>) -> Value {
    let mut map = Map::new();
    for attribute in node.attributes() {
        map.insert(
            format!("@{}", attribute.name()),
            Value::String(attribute.value().to_owned()),
        );
    }
    let mut text = String::new();
    let mut has_children = false;
    for child in node.children() {
        if child.is_element() {
            has_children = true;
            insert(&mut map, child.tag_name().name().to_owned(), element(child));
        } else if child.is_text() {
            text.push_str(child.text().unwrap_or_default());
        }
    }
    let text = text.trim();
    if !has_children && map.is_empty() {
        return if text.is_empty() {
            Value::Null
        } else {
            Value::String(text.to_owned())
        };
    }
    if !text.is_empty() {
        map.insert("#text".to_owned(), Value::String(text.to_owned()));
    }
    Value::Object(map)
}

/// Inserts `value` under `key`, turning a repeated key into an array in document order.
fn insert(map: &mut Map<String, Value>, key: String, value: Value) {
    match map.get_mut(&key) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            map.insert(key, value);
        }
    }
}

// ===== Form data =====

fn looks_like_form(text: &str) -> bool {
    let text = text.trim_end();
    text.contains('=')
        && text.split('&').all(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            !key.is_empty()
                && pair
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"%+-._~*[]=!$'(),;:@/?".contains(&b))
        })
}

fn form(text: &str) -> Result<Document, Error> {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(text.trim_end().as_bytes()) {
        let path = key_path(&key).ok_or_else(|| {
            Error::new(
                ErrorKind::MalformedForm,
                format!("form key `{key}` has unbalanced brackets"),
            )
        })?;
        place(&mut root, &path, Value::String(value.into_owned()));
    }
    Ok(Document {
        format: Format::Form,
        value: arrays(Value::Object(root)),
    })
}

/// `a[b][0]` is `["a", "b", "0"]`; `a[]` appends (an empty segment).
fn key_path(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(at) => (&key[..at], &key[at..]),
        None => return Some(vec![key.to_owned()]),
    };
    let mut path = vec![head.to_owned()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        path.push(inner[..end].to_owned());
        rest = &inner[end + 1..];
    }
    Some(path)
}

fn place(map: &mut Map<String, Value>, path: &[String], value: Value) {
    let (first, rest) = path
        .split_first()
        .expect("a key path has at least one segment");
    if rest.is_empty() {
        insert(map, first.clone(), value);
        return;
    }
    if rest.len() == 1 && rest[0].is_empty() {
        // `a[]=x`: append to the list under `a`.
        match map
            .entry(first.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(items) => items.push(value),
            other => {
                let previous = other.take();
                *other = Value::Array(vec![previous, value]);
            }
        }
        return;
    }
    let entry = map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        let previous = entry.take();
        let mut nested = Map::new();
        nested.insert("#text".to_owned(), previous);
        *entry = Value::Object(nested);
    }
    if let Value::Object(nested) = entry {
        place(nested, rest, value);
    }
}

/// Turns objects whose keys are all indices (`{"0": .., "1": ..}`) into arrays, by index.
fn arrays(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let indexed = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            let map: Map<String, Value> = map.into_iter().map(|(k, v)| (k, arrays(v))).collect();
            if indexed {
                let mut items: Vec<(usize, Value)> = map
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(usize::MAX), v))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(map)
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(arrays).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests;

// ===== Error =====

/// Why a body could not be read, or did not fit the type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `empty-body`: nothing but white space.
    Empty,
    /// `invalid-encoding`: not UTF-8, or malformed UTF-16 after its byte order mark.
    Encoding,
    /// `malformed-json`.
    MalformedJson,
    /// `malformed-xml`.
    MalformedXml,
    /// `malformed-form`.
    MalformedForm,
    /// `unsupported-format`: neither JSON, XML nor form data.
    UnsupportedFormat,
    /// `missing-field`: a required field is absent.
    MissingField,
    /// `invalid-value`: a field has the wrong type or an unknown variant.
    InvalidValue,
    /// `invalid-payload`: the document does not fit the type for another reason.
    InvalidPayload,
}

impl ErrorKind {
    /// The stable, machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty-body",
            Self::Encoding => "invalid-encoding",
            Self::MalformedJson => "malformed-json",
            Self::MalformedXml => "malformed-xml",
            Self::MalformedForm => "malformed-form",
            Self::UnsupportedFormat => "unsupported-format",
            Self::MissingField => "missing-field",
            Self::InvalidValue => "invalid-value",
            Self::InvalidPayload => "invalid-payload",
        }
    }
}

/// A body that could not be decoded, with the sentence that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable, machine-readable code of [`Error::kind`].
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The sentence for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

impl std::error::Error for Error {}
