//! Serde helpers for bodies where every value is text (XML, form data) as well as JSON.
//!
//! ```no_run
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
//!
//! The helpers read straight from the JSON parser when the body is JSON (no intermediate
//! tree), and from the decoded tree for XML and form data.

use core::fmt::{self, Display};
use core::marker::PhantomData;
use core::str::FromStr;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Error as _, MapAccess, SeqAccess, Visitor};
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
    let text = scalar_text(deserializer, "a number")?;
    let text = text.trim();
    text.parse::<T>()
        .map_err(|e| D::Error::custom(format!("invalid value: `{text}`: {e}")))
}

/// A string, or a number taken as its text (vendors send ids both ways).
///
/// # Errors
///
/// When the value is neither.
pub fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    scalar_text(deserializer, "a string")
}

/// The text of a string or of a number (exact, as written), for the other helpers.
pub(crate) fn scalar_text<'de, D: Deserializer<'de>>(
    deserializer: D,
    expected: &'static str,
) -> Result<String, D::Error> {
    deserializer.deserialize_any(ScalarText { expected })
}

struct ScalarText {
    expected: &'static str,
}

impl<'de> Visitor<'de> for ScalarText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    /// JSON numbers arrive as a map when they are read by their exact text.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<String, A::Error> {
        match Value::deserialize(MapAccessDeserializer::new(map))? {
            Value::Number(n) => Ok(n.to_string()),
            other => Err(A::Error::custom(format!(
                "invalid type: expected {}, found {other}",
                self.expected
            ))),
        }
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
    deserializer.deserialize_any(List(PhantomData))
}

struct List<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for List<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(items)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    /// One element, or a wrapper element around the list (XML): decided on the whole tree.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
        let value = Value::deserialize(MapAccessDeserializer::new(map))?;
        let items = match value {
            Value::Object(map)
                if map.len() == 1 && map.values().all(|v| v.is_array() || v.is_object()) =>
            {
                match map.into_iter().next().map(|(_, inner)| inner) {
                    Some(Value::Array(items)) => items,
                    Some(single) => vec![single],
                    None => Vec::new(),
                }
            }
            single => vec![single],
        };
        items
            .into_iter()
            .enumerate()
            .map(|(n, item)| {
                serde_json::from_value(item).map_err(|e| A::Error::custom(format!("[{n}] {e}")))
            })
            .collect()
    }
}
