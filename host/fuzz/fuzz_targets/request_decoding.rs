//! Fuzzes what the host does with a message before any plugin runs: the idempotency key
//! header and the body, decoded by its bytes (BOM, UTF-8/16, JSON, XML, form data).
//! Any input must give `Ok` or a 4xx problem, never a panic.
//!
//! Run from `host/`: `cargo +nightly fuzz run request_decoding`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the declared content type, the next the key's length.
    let (Some(&kind), Some(&key_len)) = (data.first(), data.get(1)) else {
        return;
    };
    let rest = &data[2..];
    let split = usize::from(key_len).min(rest.len());
    let (key, body) = rest.split_at(split);
    let content_type = match kind % 4 {
        0 => None,
        1 => Some("application/json"),
        2 => Some("application/xml"),
        _ => Some("application/x-www-form-urlencoded"),
    };
    let key = (kind & 0x80 != 0).then_some(key);
    if let Err(refusal) = dragoman::check_message(content_type, key, body) {
        let status = dragoman::transport::refusal_status(&refusal).as_u16();
        assert!((400..500).contains(&status), "{status}");
    }
});
