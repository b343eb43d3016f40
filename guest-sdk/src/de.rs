//! Serde helpers for bodies where every value is text (XML, form data) as well as JSON.
//!
//! ```ignore
//! #[derive(serde::Deserialize)]
//! struct Line {
//!     #[serde(deserialize_with = "dragoman_guest::de::text")]
//!     sku: String,
//!     #[serde(deserialize_with = "dragoman_guest::de::number")]
//!     qty: i64,
//! }
//! #[derive(serde::Deserialize)]
//! struct Order {
//!     #[serde(deserialize_with = "dragoman_guest::de::list")]
//!     lines: Vec<Line>,
//! }
//! ```

use core::fmt::Display;
use core::str::FromStr;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A number given as a JSON number (read by its exact text) or as a string.
///
/// # Errors
///
/// When the value is neither, or its text does not parse as `T`.
pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = match Value::deserialize(deserializer)? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        other => {
            return Err(D::Error::custom(format!(
                "invalid type: expected a number, found {other}"
            )));
        }
    };
    text.parse::<T>()
        .map_err(|e| D::Error::custom(format!("invalid value: `{text}`: {e}")))
}

/// A string, or a number taken as its text (vendors send ids both ways).
///
/// # Errors
///
/// When the value is neither.
pub fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(D::Error::custom(format!(
            "invalid type: expected a string, found {other}"
        ))),
    }
}

/// A list given as a JSON array, or as XML makes it: one element alone, or elements inside
/// a wrapper (`<lines><line/><line/></lines>`). `null` is an empty list.
///
/// # Errors
///
/// When an element does not deserialize as `T`.
pub fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    fn items(value: Value) -> Vec<Value> {
        match value {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            Value::Object(map)
                if map.len() == 1 && map.values().all(|v| v.is_array() || v.is_object()) =>
            {
                let (_, inner) = map.into_iter().next().expect("the map has one entry");
                match inner {
                    Value::Array(items) => items,
                    single => vec![single],
                }
            }
            single => vec![single],
        }
    }
    items(Value::deserialize(deserializer)?)
        .into_iter()
        .enumerate()
        .map(|(n, item)| {
            serde_json::from_value(item).map_err(|e| D::Error::custom(format!("[{n}] {e}")))
        })
        .collect()
}
