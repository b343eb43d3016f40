use super::*;
use crate::outcome::{Accepted, Cause, Rejected, Settled};
use crate::storage::Completed;

fn read(json: &str) -> Completed {
    let mut bytes = vec![FORMAT];
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
