//! Lower-case hex, as digests are shown and compared.

/// `bytes` in lower-case hex, two digits a byte.
pub(crate) fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
