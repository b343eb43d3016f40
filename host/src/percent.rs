//! Percent-encoding (RFC 3986, 2.1): decoding path segments, query values and the userinfo
//! of sink URLs; encoding names into one space-free token (checkpoint lines).

/// `%XX` sequences to their bytes; a `%` not followed by two hex digits stays as it is, and
/// so does `+` (it is a space only in form bodies, not in URLs).
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "two hex digits are one byte"
            )]
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every byte outside the unreserved set (and `:`, `/`, `@`) as `%XX`: one
/// token without spaces, which [`decode`] gives back.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:/@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_what_browsers_and_urlencode_send() {
        assert_eq!(
            super::decode("2030-01-01T00%3A00%3A00Z"),
            "2030-01-01T00:00:00Z"
        );
        assert_eq!(super::decode("%2B01%3a00"), "+01:00");
        assert_eq!(super::decode("a+b%zz%4"), "a+b%zz%4");
        assert_eq!(super::decode("p%40ss"), "p@ss");
    }

    #[test]
    fn encoding_leaves_one_token_that_decodes_back() {
        let name = "entity:order/A 1%+\n\u{e9}";
        let encoded = super::encode(name);
        assert_eq!(encoded, "entity:order/A%201%25%2B%0A%C3%A9");
        assert_eq!(super::decode(&encoded), name);
    }
}
