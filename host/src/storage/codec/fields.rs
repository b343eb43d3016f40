//! How fields of stored records are encoded where serde's default would waste bytes: raw
//! bytes, digests and keys as bytes in MessagePack, and as text in JSON (the API and records
//! of format 1). Each reads back whichever form a record holds.

/// Bytes in stored records: raw bytes in MessagePack; base64 text in JSON (records of format
/// 1, and the JSON answers of the API), a quarter of the size of a JSON array of numbers.
/// Either form reads back whatever the record's format.
pub(crate) mod base64_bytes {
    use std::fmt;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&STANDARD.encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_any(Bytes)
    }

    /// Bytes as raw bytes, as base64 text, or as a sequence of numbers.
    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes, or base64 text")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
            STANDARD.decode(text).map_err(E::custom)
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

/// A digest in stored records: 32 raw bytes in MessagePack, where its hex text takes 64 (and
/// LZ4 cannot shrink hex); lower-case hex in JSON. Text that is not a 64-digit lower-case
/// digest is stored as text, and either form reads back as the same text.
pub(crate) mod hex_digest {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// The digest's 32 bytes, when `text` is one in lower-case hex.
    fn bytes(text: &str) -> Option<[u8; 32]> {
        let digits = text.as_bytes();
        if digits.len() != 64
            || !digits
                .iter()
                .all(|d| matches!(d, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let hex = |d: u8| char::from(d).to_digit(16).expect("checked above");
            *byte = u8::try_from(hex(pair[0]) * 16 + hex(pair[1])).expect("two hex digits");
        }
        Some(out)
    }

    pub(crate) fn serialize<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
        match bytes(text) {
            Some(raw) if !serializer.is_human_readable() => serializer.serialize_bytes(&raw),
            _ => serializer.serialize_str(text),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<String, D::Error> {
        deserializer.deserialize_any(Digest)
    }

    /// A digest as raw bytes or as text.
    struct Digest;

    impl<'de> Visitor<'de> for Digest {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a digest, as bytes or text")
        }

        fn visit_bytes<E: de::Error>(self, raw: &[u8]) -> Result<String, E> {
            Ok(crate::hex::encode(raw))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_owned())
        }

        /// Bytes as a sequence of numbers (a record read into a JSON value first).
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
            let mut raw = Vec::with_capacity(32);
            while let Some(byte) = seq.next_element::<u8>()? {
                raw.push(byte);
            }
            Ok(crate::hex::encode(&raw))
        }
    }
}

/// An optional key in a record, as bytes (see [`base64_bytes`]).
pub(super) mod optional_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::base64_bytes::serialize(bytes, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Key(#[serde(with = "super::base64_bytes")] Vec<u8>);
        Ok(Option::<Key>::deserialize(deserializer)?.map(|Key(bytes)| bytes))
    }
}
