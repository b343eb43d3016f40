//! A store written by a host of layout 1 opens with its pending deliveries (attempts and
//! retry times kept), published events, processed keys and dead letters, and none of its
//! claims in flight.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::json;

use super::Db;
use crate::outcome::{Accepted, Settled};
use crate::storage::codec::{IdempotencyEntry, JSON_FORMAT, encode, outbox_key};
use crate::storage::{Claim, Completed, DeliveryOutcome, Storage};

fn record(value: &serde_json::Value) -> Vec<u8> {
    let mut bytes = vec![JSON_FORMAT];
    bytes.extend_from_slice(value.to_string().as_bytes());
    bytes
}

fn event(id: &str, partition: &str) -> serde_json::Value {
    json!({
        "id": id, "message_id": "m1", "route": "orders", "event_type": "order.created.v1",
        "subject": partition, "partition_key": partition, "data": "{}",
        "time": "2027-01-01T00:00:00Z",
        "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"
    })
}

fn at(text: &str) -> Timestamp {
    text.parse().expect("an instant")
}

#[test]
fn a_layout_1_store_moves_to_the_current_layout_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = ::sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("pipeline").unwrap();
        tree.insert(b"s\0seq", &4u64.to_be_bytes()).unwrap();
        let failed = json!({"attempts": 2, "next_at": "2027-01-01T00:05:00Z", "last_error": "503"});
        let fresh = json!({"attempts": 0, "next_at": null, "last_error": null});
        tree.insert(
            outbox_key(b'o', 1),
            record(&json!({"seq": 1, "event": event("e1", "p1"), "pending": {"a": failed, "b": fresh}})),
        )
        .unwrap();
        tree.insert(
            outbox_key(b'o', 2),
            record(&json!({"seq": 2, "event": event("e2", "p1"), "pending": {"a": fresh}})),
        )
        .unwrap();
        tree.insert(
            outbox_key(b'p', 3),
            record(&json!({"at": "2027-01-01T00:00:01Z", "record": {"seq": 3, "event": event("e3", "p9"), "pending": {}}})),
        )
        .unwrap();
        let done = IdempotencyEntry::Done(Completed {
            fingerprint: "f".into(),
            settled: Settled::Accepted(Accepted {
                message_id: "m1".into(),
                idempotency_key: "k1".into(),
                events: vec!["e1".into(), "e2".into()],
            }),
            expires_at: at("2027-01-02T00:00:00Z"),
        });
        tree.insert(b"i\0orders\0k1", encode(&done)).unwrap();
        tree.insert(
            b"i\0orders\0k2",
            record(&json!({"state": "in_flight", "token": 7, "boot": 9, "until": "2099-01-01T00:00:00Z"})),
        )
        .unwrap();
        // A dead letter as hosts wrote them before they counted bytes per route.
        tree.insert(
            b"q\0d1",
            record(&json!({
                "id": "d1", "kind": {"kind": "translation"}, "message_id": "m9",
                "route": "orders", "error": "no", "code": "invalid-value",
                "plugin": "p@1", "plugin_sha256": "ab", "attempts": 1,
                "created_at": "2027-01-01T00:00:00Z", "updated_at": "2027-01-01T00:00:00Z"
            })),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let store = Db::open(dir.path()).expect("the old store opens");
    let never = Timestamp::MAX;
    let due = store
        .due("a", at("2027-01-01T00:01:00Z"), &BTreeSet::new(), 10, 10)
        .unwrap();
    assert!(due.chains.is_empty(), "p1 waits at sink a for its retry");
    assert_eq!(due.next_at, Some(at("2027-01-01T00:05:00Z")));
    let due = store.due("a", never, &BTreeSet::new(), 10, 10).unwrap();
    let a: Vec<(u64, u32)> = due.chains[0]
        .deliveries
        .iter()
        .map(|d| (d.seq, d.delivery.attempts))
        .collect();
    assert_eq!(
        a,
        [(1, 2)],
        "the head that failed twice, alone, its attempts kept"
    );
    store
        .record_delivery(1, "a", DeliveryOutcome::Delivered, vec![], never)
        .unwrap();
    let due = store.due("a", never, &BTreeSet::new(), 10, 10).unwrap();
    assert_eq!(
        due.chains[0].deliveries[0].seq, 2,
        "then the next, in order"
    );
    let due = store.due("b", never, &BTreeSet::new(), 10, 10).unwrap();
    assert_eq!(due.chains[0].deliveries[0].event.id, "e1");
    let depths = store.depths().unwrap();
    assert_eq!(
        (
            depths.outbox,
            depths.sinks["a"],
            depths.sinks["b"],
            depths.dead_letters
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(
        depths.dead_letter_routes["orders"].count, 1,
        "dead letters counted per route at open"
    );
    assert_eq!(
        store.route_dead_letters("orders", None, 10).unwrap()[0].id,
        "d1"
    );
    assert!(matches!(
        store
            .claim(
                "orders",
                "k1",
                at("2027-01-01T12:00:00Z"),
                std::time::Duration::from_secs(5)
            )
            .unwrap(),
        Claim::Done(_)
    ));
    assert!(
        matches!(
            store
                .claim(
                    "orders",
                    "k2",
                    at("2027-01-01T12:00:00Z"),
                    std::time::Duration::from_secs(5)
                )
                .unwrap(),
            Claim::Fresh(_)
        ),
        "a claim of the old process is gone"
    );
    let swept = store
        .sweep(at("2027-01-03T00:00:00Z"), at("2027-01-03T00:00:00Z"), 100)
        .unwrap();
    assert_eq!(
        swept.removed, 2,
        "the key and the published event are indexed by time"
    );
    drop(store);
    let store = Db::open(dir.path()).expect("it opens again, already moved");
    assert_eq!(
        store.depths().unwrap().outbox,
        2,
        "e1 waits for b, e2 for a"
    );
}

#[test]
fn audit_events_written_one_per_record_are_read_and_chained_onto() {
    use crate::storage::AuditDraft;
    let dir = tempfile::tempdir().unwrap();
    let first = crate::audit::seal(
        None,
        AuditDraft::new("m1", at("2027-01-01T00:00:00Z"), "received", json!({})),
    );
    {
        let db = ::sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("pipeline").unwrap();
        // As hosts before audit segments wrote it: one event, under its own version.
        tree.insert(
            crate::storage::codec::audit_key("m1", first.version),
            encode(&first),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let store = Db::open(dir.path()).unwrap();
    let later = at("2027-01-01T00:00:01Z");
    store
        .append(vec![
            AuditDraft::new("m1", later, "translated", json!({})),
            AuditDraft::new("m2", later, "received", json!({})),
            AuditDraft::new("m1", later, "committed", json!({})),
        ])
        .unwrap();
    let history = store.history("m1").unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["received", "translated", "committed"]);
    assert_eq!(history[0], first);
    let streams = store.audit_streams().unwrap();
    assert_eq!(streams["m1"], history);
    assert_eq!(streams["m2"].len(), 1);
    assert!(
        crate::audit::verify(&streams).is_empty(),
        "the chains hold across both forms"
    );
}

#[test]
fn an_entity_event_edited_on_disk_is_found_by_verify() {
    use crate::storage::{Commit, Completed, EntityRef, MessageRecord, OutboxEvent, Storage};
    let dir = tempfile::tempdir().unwrap();
    let now = at("2027-01-01T00:00:00Z");
    let event = |id: &str, event_type: &str| OutboxEvent {
        id: id.into(),
        message_id: "m1".into(),
        route: "orders".into(),
        event_type: event_type.into(),
        subject: "A-1".into(),
        partition_key: "A-1".into(),
        data: r#"{"amount_minor": 1250}"#.into(),
        time: now,
        traceparent: String::new(),
        tracestate: None,
        producer: None,
    };
    let events = vec![
        event("e1", "order.created.v1"),
        event("e2", "order.paid.v1"),
    ];
    {
        let store = Db::open(dir.path()).unwrap();
        store
            .commit(Commit {
                claim: None,
                completed: Completed {
                    fingerprint: "f".into(),
                    settled: crate::outcome::Settled::Accepted(crate::outcome::Accepted {
                        message_id: "m1".into(),
                        idempotency_key: "k".into(),
                        events: vec!["e1".into(), "e2".into()],
                    }),
                    expires_at: now,
                },
                message: MessageRecord {
                    id: "m1".into(),
                    route: "orders".into(),
                    key: "k".into(),
                    content_type: None,
                    headers: vec![],
                    body: b"{}".to_vec(),
                    received_at: now,
                    cut: None,
                },
                new_message: false,
                entities: events.iter().filter_map(crate::entity::draft).collect(),
                events: events.into_iter().map(|e| (e, vec![])).collect(),
                dead_letter: None,
                resolves: None,
                audit: vec![],
            })
            .unwrap();
        assert!(crate::entity::verify(&store.entity_streams().unwrap()).is_empty());
        store.flush().unwrap();
    }
    {
        // Someone with the files changes the amount of the payment.
        let db = ::sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("pipeline").unwrap();
        let order = EntityRef::of("order.paid.v1", "A-1").unwrap();
        let key = crate::storage::codec::entity_key(&order, 2);
        let stored = tree.get(&key).unwrap().unwrap();
        // The amount is text inside the event's data, whatever the record's format.
        let mut edited = stored.to_vec();
        let at = edited
            .windows(4)
            .position(|w| w == b"1250")
            .expect("the amount is in the record");
        edited[at..at + 4].copy_from_slice(b"9999");
        tree.insert(&key, edited).unwrap();
        db.flush().unwrap();
    }
    let store = Db::open(dir.path()).unwrap();
    let findings = crate::entity::verify(&store.entity_streams().unwrap());
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].message_id, "entity:order/A-1");
    assert_eq!(findings[0].version, 2);
    assert!(findings[0].problem.contains("edited"), "{findings:?}");
}
