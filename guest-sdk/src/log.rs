//! Structured logging into the host's tracing. The host adds the plugin's name and version
//! and the message id to every line.

use crate::__bindings::metadata::dragoman::translator::log as wit_log;

pub use wit_log::Level;

/// Emits a line with key-value fields.
pub fn event(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wit_log::log(level, message, &fields);
}

/// Emits a line at debug level.
pub fn debug(message: &str) {
    event(Level::Debug, message, &[]);
}

/// Emits a line at info level.
pub fn info(message: &str) {
    event(Level::Info, message, &[]);
}

/// Emits a line at warn level.
pub fn warn(message: &str) {
    event(Level::Warn, message, &[]);
}

/// Emits a line at error level.
pub fn error(message: &str) {
    event(Level::Error, message, &[]);
}
