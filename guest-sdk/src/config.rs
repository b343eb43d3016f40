//! The route's plugin config (read-only), as the operator set it.

use crate::__bindings::metadata::dragoman::translator::config as wit_config;

/// The value set for `key`, if any.
pub fn get(key: &str) -> Option<String> {
    wit_config::get(key)
}

/// Every key and value, sorted by key.
pub fn entries() -> Vec<(String, String)> {
    wit_config::entries()
}
