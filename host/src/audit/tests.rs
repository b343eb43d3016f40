use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::json;

use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn stream(kinds: &[(&str, serde_json::Value)]) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = Vec::new();
    for (n, (kind, data)) in kinds.iter().enumerate() {
        let draft = AuditDraft {
            message_id: "m1".into(),
            kind: (*kind).into(),
            data: data.clone(),
            at: at(n as i64),
        };
        let event = seal(events.last().map(AuditEvent::tip).as_ref(), draft);
        events.push(event);
    }
    events
}

fn sample() -> Vec<AuditEvent> {
    stream(&[
        (
            "received",
            json!({"route": "orders", "idempotency_key": "k1"}),
        ),
        ("translated", json!({"plugin": "p@1.0.0", "sha256": "ab"})),
        (
            "committed",
            json!({"events": ["e1", "e2"], "sinks": ["hook"]}),
        ),
        ("publish_succeeded", json!({"sink": "hook", "event": "e1"})),
        (
            "publish_failed",
            json!({"sink": "hook", "event": "e2", "error": "503"}),
        ),
        ("publish_succeeded", json!({"sink": "hook", "event": "e2"})),
    ])
}

fn verify_one(events: Vec<AuditEvent>) -> Vec<Finding> {
    verify(&BTreeMap::from([("m1".to_owned(), events)]))
}

#[test]
fn a_sealed_stream_verifies() {
    let events = sample();
    assert_eq!(events[0].prev, GENESIS);
    assert_eq!(events[1].prev, events[0].hash);
    assert!(verify_one(events).is_empty());
}

#[test]
fn an_edited_event_is_found() {
    let mut events = sample();
    events[2].data = json!({"events": ["e1"], "sinks": ["hook"]});
    let findings = verify_one(events);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].version, 3);
    assert!(findings[0].problem.contains("edited"));
}

#[test]
fn a_removed_event_is_found() {
    let mut events = sample();
    events.remove(3);
    let findings = verify_one(events);
    assert!(
        findings
            .iter()
            .any(|f| f.version == 4 && f.problem.contains("missing")),
        "{findings:?}"
    );
}

#[test]
fn reordered_events_are_found() {
    let mut events = sample();
    events.swap(1, 2);
    assert!(!verify_one(events).is_empty());
}

#[test]
fn a_rehashed_edit_still_breaks_the_chain() {
    let mut events = sample();
    events[1].data = json!({"plugin": "evil@6.6.6"});
    events[1].hash = hash(&events[1]);
    let findings = verify_one(events);
    assert!(
        findings
            .iter()
            .any(|f| f.version == 3 && f.problem.contains("prev")),
        "{findings:?}"
    );
}

#[test]
fn folding_all_events_gives_the_live_state() {
    let state = fold("m1", &sample(), None);
    assert_eq!(state.status, "published");
    assert_eq!(state.plugin.as_deref(), Some("p@1.0.0"));
    assert_eq!(state.events, ["e1", "e2"]);
    assert_eq!(state.failed_attempts, 1);
    assert_eq!(state.version, 6);
}

#[test]
fn folding_up_to_an_instant_gives_the_state_then() {
    let events = sample();
    let state = fold("m1", &events, Some(at(3)));
    assert_eq!(state.status, "committed", "e2 was not delivered yet");
    assert_eq!(state.version, 4);
    assert_eq!(fold("m1", &events, Some(at(-1))).version, 0);
}
