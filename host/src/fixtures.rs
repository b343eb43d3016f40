//! Contract fixtures: vendor inputs with the domain output (or the error) they must give.
//!
//! A fixtures directory holds pairs `NAME.input.EXT` and `NAME.expected.json`. The input is
//! the body, byte for byte. The expected file is a JSON object with these keys:
//!
//! - `content_type` (optional): the declared content type. By default it follows the input's
//!   extension: `json` is `application/json`, `xml` is `application/xml`, `form` is
//!   `application/x-www-form-urlencoded`, anything else declares none.
//! - `config` (optional): the route's plugin config, string to string.
//! - `headers` (optional): the headers the message arrives with, a list of `[name, value]`
//!   (a signature header, say).
//! - `idempotency_key` (optional): the key the plugin must derive (`null` for none).
//! - exactly one of `events` (the list of events: `type`, `subject`, `partition_key`,
//!   `data`) or `error` (`kind`: `rejected` or `transient`, `code`, and optionally the exact
//!   `message`).
//! - `description` (optional): what the fixture is about.
//!
//! A mismatch is shown as a line diff of the expected and actual JSON.
//!
//! The outbound direction has fixtures of its own (`fixtures/outbound.rs`): an input
//! `NAME.command.json` (a domain command) whose expected file gives the vendor request the
//! plugin must encode, and, with a vendor response, the events (or the error) it must
//! decode from it.
//!
//! A projector's fixtures (`fixtures/fold.rs`) are an input `NAME.events.json`, a list of
//! stream events, with the state they must fold to and the events the fold must refuse.
//!
//! A component can carry its fixtures (`embedded.rs`): `dragoman plugin pack` embeds a
//! directory's, and activation runs them before the version serves.

mod embedded;
pub mod fold;
mod outbound;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use embedded::{MAX_FILE_BYTES, MAX_FILES, SECTION, embedded, pack};
pub(crate) use embedded::{check_carried, is_whole};

use crate::plugin::{Fault, Plugin, PluginConfig, TranslateError, VendorMessage};

/// Why fixtures could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// An expected file is not what this module describes.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One input with its expectation, read into memory.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The name shared by the two files.
    pub name: String,
    /// The body file.
    pub input: FixtureFile,
    /// The expectation file.
    pub expected: FixtureFile,
}

/// A fixture file: where it came from, and its bytes.
#[derive(Debug, Clone)]
pub struct FixtureFile {
    /// Its path, or for a fixture embedded in a component, its name under `embedded:`.
    pub path: PathBuf,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// The outcome of one fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The plugin gave what was expected.
    Pass,
    /// It did not; `diff` shows expected (`-`) against actual (`+`).
    Fail {
        /// A unified line diff of the two JSON documents.
        diff: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    #[serde(default)]
    #[expect(dead_code, reason = "documentation for people reading the fixture")]
    description: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    config: PluginConfig,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default, deserialize_with = "present")]
    idempotency_key: Option<Option<String>>,
    events: Option<Vec<ExpectedEvent>>,
    error: Option<ExpectedError>,
}

/// One event a fixture expects. Every key is checked, at this level as at the top: a misspelt
/// one (`event_type`) is an error naming it, not a line of a diff.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedEvent {
    #[serde(rename = "type")]
    event_type: String,
    subject: String,
    partition_key: String,
    data: Value,
}

/// A refusal a fixture expects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedError {
    kind: RefusalKind,
    code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// `rejected` or `transient`; any other word is an error naming the two.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RefusalKind {
    Rejected,
    Transient,
}

/// Tells an absent key (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl FixtureFile {
    /// Its content as JSON of the shape `T`.
    /// An unknown or missing key is named with where it is (`events[0]: unknown field …`).
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, FixtureError> {
        let invalid = |message: String| FixtureError::Invalid {
            path: self.path.clone(),
            message,
        };
        let mut json = serde_json::Deserializer::from_slice(&self.bytes);
        let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            let path = e.path().to_string();
            invalid(if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            })
        })?;
        json.end().map_err(|e| invalid(e.to_string()))?;
        Ok(value)
    }
}

/// The fixtures in `dir`, sorted by name.
///
/// # Errors
///
/// [`FixtureError::Read`] when the directory or a file cannot be read, and
/// [`FixtureError::Invalid`] for an input without an expected file or the reverse, or a
/// directory with no fixture at all.
pub fn discover(dir: &Path) -> Result<Vec<Fixture>, FixtureError> {
    let read = |path: &Path, error| FixtureError::Read {
        path: path.to_owned(),
        error,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read(dir, e))? {
        let path = entry.map_err(|e| read(dir, e))?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if is_fixture_file(file) {
            let bytes = std::fs::read(&path).map_err(|e| read(&path, e))?;
            files.push((file.to_owned(), FixtureFile { path, bytes }));
        }
    }
    pair(dir, files)
}

/// Whether the file's name ends with `suffix`: which kind of fixture an input is.
fn named(input: &Path, suffix: &str) -> bool {
    input
        .file_name()
        .and_then(|f| f.to_str())
        .is_some_and(|f| f.ends_with(suffix))
}

/// Whether a file name is one of a fixture's two files.
fn is_fixture_file(file: &str) -> bool {
    file.ends_with(".expected.json")
        || file.ends_with(".command.json")
        || file.ends_with(".events.json")
        || file.contains(".input.")
        || file.ends_with(".input")
}

/// Pairs each input with its expected file, by name: the fixtures of a directory or of a
/// component's embedded bundle (`what` names it in errors), sorted by name.
fn pair(what: &Path, files: Vec<(String, FixtureFile)>) -> Result<Vec<Fixture>, FixtureError> {
    let mut inputs = BTreeMap::new();
    let mut expected = BTreeMap::new();
    for (file, content) in files {
        if let Some(name) = file.strip_suffix(".expected.json") {
            expected.insert(name.to_owned(), content);
        } else if let Some(name) = file
            .strip_suffix(".command.json")
            .or_else(|| file.strip_suffix(".events.json"))
            .or_else(|| file.split_once(".input.").map(|(name, _)| name))
            .or_else(|| file.strip_suffix(".input"))
        {
            let path = content.path.clone();
            if inputs.insert(name.to_owned(), content).is_some() {
                let message = format!("fixture `{name}` has more than one input file");
                return Err(FixtureError::Invalid { path, message });
            }
        }
    }
    if let Some((name, file)) = expected
        .iter()
        .find(|(name, _)| !inputs.contains_key(*name))
    {
        return Err(FixtureError::Invalid {
            path: file.path.clone(),
            message: format!(
                "no `{name}.input.*`, `{name}.command.json` or `{name}.events.json` file beside it"
            ),
        });
    }
    let fixtures: Vec<Fixture> = inputs
        .into_iter()
        .map(|(name, input)| match expected.remove(&name) {
            Some(expected) => Ok(Fixture {
                name,
                input,
                expected,
            }),
            None => Err(FixtureError::Invalid {
                path: input.path,
                message: format!("no `{name}.expected.json` beside it"),
            }),
        })
        .collect::<Result<_, _>>()?;
    if fixtures.is_empty() {
        return Err(FixtureError::Invalid {
            path: what.to_owned(),
            message: "no fixtures (`NAME.input.*`, `NAME.command.json` or \
                      `NAME.events.json`, with `NAME.expected.json`)"
                .into(),
        });
    }
    Ok(fixtures)
}

/// The declared content type for an input file, from its extension.
pub fn content_type_for(input: &Path) -> Option<&'static str> {
    match input.extension().and_then(|e| e.to_str()) {
        Some("json") => Some("application/json"),
        Some("xml") => Some("application/xml"),
        Some("form") => Some("application/x-www-form-urlencoded"),
        _ => None,
    }
}

/// Runs one fixture through `plugin` in a fresh instance, as the host runs a message: the
/// idempotency key first, then the translation.
///
/// # Errors
///
/// [`FixtureError`] when the expected file is malformed. A
/// plugin fault is not an error: it is a failing verdict that shows the fault.
pub fn run(plugin: &Plugin, fixture: &Fixture) -> Result<Verdict, FixtureError> {
    if outbound::is_command(&fixture.input.path) {
        return outbound::run(plugin, fixture);
    }
    if fold::is_events(&fixture.input.path) {
        return Err(FixtureError::Invalid {
            path: fixture.input.path.clone(),
            message: format!(
                "a fold fixture, for a projector; {} is a translator",
                plugin.id()
            ),
        });
    }
    let body = fixture.input.bytes.clone();
    let invalid = |message: String| FixtureError::Invalid {
        path: fixture.expected.path.clone(),
        message,
    };
    let spec: Expected = fixture.expected.parse()?;

    let mut expected = serde_json::Map::new();
    if let Some(key) = &spec.idempotency_key {
        expected.insert("idempotency_key".into(), json!(key));
    }
    match (&spec.events, &spec.error) {
        (Some(events), None) => {
            expected.insert("events".into(), json!(events));
        }
        (None, Some(error)) => {
            expected.insert("error".into(), json!(error));
        }
        _ => return Err(invalid("give exactly one of `events` and `error`".into())),
    }

    let message = VendorMessage {
        id: format!("fixture-{}", fixture.name),
        content_type: spec
            .content_type
            .clone()
            .or_else(|| content_type_for(&fixture.input.path).map(str::to_owned)),
        headers: spec
            .headers
            .iter()
            .map(|(name, value)| crate::plugin::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        body,
    };
    let actual = outcome(plugin, &message, Arc::new(spec.config.clone()), &spec);
    Ok(verdict(expected, actual))
}

/// Pass when the plugin gave `expected`; else the diff (a fault shows as `{"fault": …}`).
fn verdict(expected: serde_json::Map<String, Value>, actual: Result<Value, Fault>) -> Verdict {
    let actual = actual.unwrap_or_else(|fault| json!({"fault": fault.to_string()}));
    let expected = Value::Object(expected);
    if actual == expected {
        return Verdict::Pass;
    }
    Verdict::Fail {
        diff: diff(&expected, &actual),
    }
}

/// A refusal as a fixture shows it: its kind and code, and its message when asked for.
fn refusal(refusal: TranslateError, with_message: bool) -> Value {
    let (kind, failure) = match refusal {
        TranslateError::Rejected(f) => ("rejected", f),
        TranslateError::Transient(f) => ("transient", f),
    };
    let mut e = json!({"kind": kind, "code": failure.code});
    if with_message {
        e["message"] = json!(failure.message);
    }
    e
}

fn outcome(
    plugin: &Plugin,
    message: &VendorMessage,
    config: Arc<PluginConfig>,
    spec: &Expected,
) -> Result<Value, Fault> {
    let mut session = plugin.session(config)?;
    let mut actual = serde_json::Map::new();
    if spec.idempotency_key.is_some() {
        actual.insert(
            "idempotency_key".into(),
            json!(session.idempotency_key(message)?),
        );
    }
    match session.translate(message)? {
        Ok(events) => {
            actual.insert(
                "events".into(),
                serde_json::to_value(&events).expect("events serialize"),
            );
        }
        Err(refused) => {
            // The message when the fixture gives one, and the reason when events were
            // expected.
            let with_message =
                spec.error.as_ref().is_some_and(|e| e.message.is_some()) || spec.events.is_some();
            actual.insert("error".into(), refusal(refused, with_message));
        }
    }
    Ok(Value::Object(actual))
}

/// A unified diff of two JSON documents, pretty-printed, expected as `-` and actual as `+`.
pub fn diff(expected: &Value, actual: &Value) -> String {
    let expected = serde_json::to_string_pretty(expected).expect("JSON values serialize") + "\n";
    let actual = serde_json::to_string_pretty(actual).expect("JSON values serialize") + "\n";
    similar::TextDiff::from_lines(&expected, &actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}
