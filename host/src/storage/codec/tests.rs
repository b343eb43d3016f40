use super::*;
use crate::outcome::{Accepted, Cause, Rejected, Settled};
use crate::storage::Completed;

fn read(json: &str) -> Completed {
    let mut bytes = vec![JSON_FORMAT];
    bytes.extend_from_slice(json.as_bytes());
    decode(b"i\0orders\0k", &bytes).expect("the record decodes")
}

#[test]
fn a_key_stored_as_an_accepted_answer_reads_back_as_the_accepted_outcome() {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .encode(br#"{"events":["e1","e2"],"idempotency_key":"k","message_id":"m1"}"#);
    let json = format!(
        r#"{{"fingerprint":"f","message_id":"m1","status":202,"body":"{body}","expires_at":"2030-01-01T00:00:00Z"}}"#
    );
    assert_eq!(
        read(&json).settled,
        Settled::Accepted(Accepted {
            message_id: "m1".into(),
            idempotency_key: "k".into(),
            events: vec!["e1".into(), "e2".into()],
        })
    );
}

#[test]
fn a_key_stored_as_a_problem_reads_back_as_the_rejection_with_its_cause() {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(
        br#"{"code":"plugin-fault","dead_letter":"d1","detail":"trap","message_id":"m1","status":422,"title":"The translator failed","type":"urn:dragoman:problem:plugin-fault"}"#,
    );
    let json = format!(
        r#"{{"fingerprint":"f","message_id":"m1","status":422,"body":"{body}","expires_at":"2030-01-01T00:00:00Z"}}"#
    );
    assert_eq!(
        read(&json).settled,
        Settled::Rejected(Rejected {
            message_id: "m1".into(),
            dead_letter: "d1".into(),
            cause: Cause::Fault,
            code: "plugin-fault".into(),
            error: "trap".into(),
        })
    );
}

#[test]
fn a_key_stored_as_its_outcome_round_trips() {
    let completed = Completed {
        fingerprint: "f".into(),
        settled: Settled::Rejected(Rejected {
            message_id: "m1".into(),
            dead_letter: "d1".into(),
            cause: Cause::Refused,
            code: "invalid-value".into(),
            error: "no".into(),
        }),
        expires_at: "2030-01-01T00:00:00Z".parse().unwrap(),
    };
    assert_eq!(
        decode::<Completed>(b"k", &encode(&completed)).unwrap(),
        completed
    );
}

fn message(body: &[u8]) -> crate::storage::MessageRecord {
    crate::storage::MessageRecord {
        id: "m1".into(),
        route: "orders".into(),
        key: "k".into(),
        content_type: Some("application/json".into()),
        headers: vec![("x-acme".into(), "1".into())],
        body: body.to_vec(),
        received_at: "2030-01-01T00:00:00Z".parse().unwrap(),
        cut: None,
    }
}

/// Bytes that do not compress: a linear congruential sequence's high bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state.to_be_bytes()[0]
        })
        .collect()
}

/// A body is stored as its bytes: the record is its length and a little more, where JSON
/// made it a third larger as base64. Bytes that do not compress stay uncompressed.
#[test]
fn a_body_is_stored_as_bytes_in_the_current_format() {
    let body = noise(3000);
    let record = message(&body);
    let stored = encode(&record);
    assert_eq!(stored[0], FORMAT);
    assert!(
        stored.len() < body.len() + 200,
        "{} bytes for a body of {}",
        stored.len(),
        body.len()
    );
    let json = serde_json::to_vec(&record).unwrap();
    assert!(json.len() > body.len() * 4 / 3, "JSON holds base64");
    assert_eq!(
        decode::<crate::storage::MessageRecord>(b"m\0m1", &stored).unwrap(),
        record
    );
}

/// A record that compresses is stored LZ4-compressed, reads back the same, and one whose
/// length was damaged is reported, not allocated.
#[test]
fn a_record_that_compresses_is_stored_compressed() {
    let order = crate::storage::OutboxEvent {
        id: "e1".into(),
        message_id: "m1".into(),
        route: "orders".into(),
        event_type: "order.created.v1".into(),
        subject: "A-1".into(),
        partition_key: "A-1".into(),
        data: format!(
            "{{\"lines\": [{}]}}",
            vec![r#"{"sku": "ACME-ANVIL-50KG", "qty": 2, "unit_price": "249.99"}"#; 15].join(", ")
        ),
        time: "2030-01-01T00:00:00Z".parse().unwrap(),
        traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01".into(),
        tracestate: None,
        producer: None,
    };
    let stored = encode(&order);
    assert_eq!(stored[0], COMPRESSED_FORMAT);
    assert!(
        stored.len() * 3 < order.data.len(),
        "{} bytes for {} of data",
        stored.len(),
        order.data.len()
    );
    assert_eq!(
        decode::<crate::storage::OutboxEvent>(b"o", &stored).unwrap(),
        order
    );
    let mut damaged = stored.clone();
    damaged[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode::<crate::storage::OutboxEvent>(b"o", &damaged),
        Err(StorageError::Corrupt { message, .. }) if message.contains("length")
    ));
    let short = encode(&"a short record");
    assert_eq!(short[0], FORMAT, "too short to compress");
}

/// A record a host before format 2 wrote (JSON, the body in base64) reads back the same.
#[test]
fn a_record_in_json_still_reads() {
    let record = message(b"{\"ord_id\": \"A-1\"}");
    let mut old = vec![JSON_FORMAT];
    old.extend(serde_json::to_vec(&record).unwrap());
    assert_eq!(
        decode::<crate::storage::MessageRecord>(b"m\0m1", &old).unwrap(),
        record
    );
    let unknown = [9u8, 1, 2];
    assert!(matches!(
        decode::<crate::storage::MessageRecord>(b"m\0m1", &unknown),
        Err(StorageError::Corrupt { .. })
    ));
}

/// Audit data is free-form JSON: it reads back equal, so its hash still verifies.
#[test]
fn free_form_json_round_trips_exactly() {
    let value = serde_json::json!({
        "n": 1, "neg": -7, "big": u64::MAX, "f": 1.5, "s": "x", "null": null,
        "list": [true, {"nested": []}]
    });
    let back: serde_json::Value = decode(b"a\0m1", &encode(&value)).unwrap();
    assert_eq!(back, value);
    assert_eq!(back.to_string(), value.to_string());
}

/// Digests are stored as their 32 bytes and read back as the same hex, whichever way they
/// were stored; JSON (the API) keeps them as hex.
#[test]
fn digests_are_stored_as_bytes_and_read_back_as_hex() {
    let event = crate::audit::seal(
        None,
        crate::storage::AuditDraft::new(
            "m1",
            "2030-01-01T00:00:00Z".parse().unwrap(),
            "received",
            serde_json::json!({}),
        ),
    );
    let stored = encode(&event);
    // The same record with its digests as text, as hosts before wrote it.
    #[derive(Serialize)]
    struct Old<'a> {
        message_id: &'a str,
        version: u64,
        kind: &'a str,
        data: &'a serde_json::Value,
        at: jiff::Timestamp,
        prev: &'a str,
        hash: &'a str,
    }
    let mut as_text = vec![FORMAT];
    let old = Old {
        message_id: &event.message_id,
        version: event.version,
        kind: &event.kind,
        data: &event.data,
        at: event.at,
        prev: &event.prev,
        hash: &event.hash,
    };
    rmp_serde::encode::write_named(&mut as_text, &old).unwrap();
    assert!(
        stored.len() + 64 <= as_text.len(),
        "{} against {}",
        stored.len(),
        as_text.len()
    );
    let back: crate::storage::AuditEvent = decode(b"a", &stored).unwrap();
    assert_eq!(back, event);
    let old: crate::storage::AuditEvent = decode(b"a", &as_text).unwrap();
    assert_eq!(old, event);
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["hash"], event.hash.as_str());
    // Not a digest: kept as text.
    let odd = crate::storage::AuditEvent {
        prev: "not-a-digest".into(),
        ..event
    };
    let back: crate::storage::AuditEvent = decode(b"a", &encode(&odd)).unwrap();
    assert_eq!(back.prev, "not-a-digest");
}
