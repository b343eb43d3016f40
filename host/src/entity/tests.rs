use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{EntityRef, draft, seal, verify};
use crate::storage::{EntityEvent, OutboxEvent};

fn event(id: &str, event_type: &str, subject: &str, data: &str) -> OutboxEvent {
    OutboxEvent {
        id: id.into(),
        message_id: format!("m-{id}"),
        route: "orders".into(),
        event_type: event_type.into(),
        subject: subject.into(),
        partition_key: subject.into(),
        data: data.into(),
        time: Timestamp::from_second(1_800_000_000).unwrap(),
        traceparent: String::new(),
        tracestate: None,
        producer: None,
    }
}

fn stream(events: &[(&str, &str)]) -> Vec<EntityEvent> {
    let mut out: Vec<EntityEvent> = Vec::new();
    for (id, event_type) in events {
        let draft = draft(&event(id, event_type, "A-1", "{}")).unwrap();
        out.push(seal(out.last(), draft));
    }
    out
}

#[test]
fn the_entity_is_the_first_segment_of_the_type_and_the_subject() {
    let entity = EntityRef::of("order.paid.v1", "A-1").unwrap();
    assert_eq!(
        (entity.entity_type.as_str(), entity.id.as_str()),
        ("order", "A-1")
    );
    assert_eq!(entity.label(), "order/A-1");
    assert_eq!(EntityRef::of("nodot", "A-1"), None);
}

#[test]
fn the_event_time_is_read_from_the_data_when_it_says() {
    let said = draft(&event(
        "e",
        "order.paid.v1",
        "A-1",
        r#"{"occurred_at": "2026-12-01T14:02:00Z", "x": [1]}"#,
    ))
    .unwrap();
    assert_eq!(
        said.occurred_at,
        Some("2026-12-01T14:02:00Z".parse().unwrap())
    );
    for data in [r#"{"x": 1}"#, r#"{"occurred_at": "yesterday"}"#, "[1]"] {
        let silent = draft(&event("e", "order.paid.v1", "A-1", data)).unwrap();
        assert_eq!(silent.occurred_at, None, "{data}");
    }
}

#[test]
fn a_sealed_stream_verifies_and_any_edit_removal_or_reordering_is_found() {
    let events = stream(&[
        ("1", "order.created.v1"),
        ("2", "order.paid.v1"),
        ("3", "order.shipped.v1"),
    ]);
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let entity = events[0].entity.clone();
    let check = |events: Vec<EntityEvent>| verify(&BTreeMap::from([(entity.clone(), events)]));
    assert!(check(events.clone()).is_empty());

    let mut edited = events.clone();
    edited[1].event.data = r#"{"amount": 1}"#.into();
    let found = check(edited);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].message_id.as_str(), found[0].version),
        ("entity:order/A-1", 2)
    );
    assert!(found[0].problem.contains("edited"));

    let mut removed = events.clone();
    removed.remove(1);
    assert!(!check(removed).is_empty());

    let mut reordered = events.clone();
    reordered.swap(1, 2);
    assert!(!check(reordered).is_empty());

    let mut moved = events;
    moved[2].entity.id = "A-2".into();
    assert!(
        check(moved)
            .iter()
            .any(|f| f.problem.contains("stored in order/A-1"))
    );
}

#[test]
fn commit_times_never_go_back_along_a_stream() {
    let later = event("e1", "order.created.v1", "A-1", "{}");
    let mut earlier = event("e2", "order.paid.v1", "A-1", "{}");
    // The second commit took its time before the first's, and landed after it.
    earlier.time = later.time - jiff::SignedDuration::from_millis(5);
    let first = seal(None, draft(&later).unwrap());
    let second = seal(Some(&first), draft(&earlier).unwrap());
    assert_eq!(second.committed_at, first.committed_at);
    assert_eq!(
        second.event.time, earlier.time,
        "the event keeps its own time"
    );
    let mut streams = BTreeMap::new();
    streams.insert(first.entity.clone(), vec![first, second.clone()]);
    assert!(verify(&streams).is_empty());
    // The stream's time is in the chain: moving it is found.
    let mut moved = second;
    moved.committed_at = moved.event.time;
    streams.values_mut().next().unwrap()[1] = moved;
    assert_eq!(verify(&streams).len(), 1);
}
