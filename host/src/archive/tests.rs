use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::chain::Finding;
use crate::storage::{AuditDraft, Db};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

/// A message committed at `second` whose event no sink has taken yet: its stream stays open.
fn pending(store: &Db, id: &str, route: &str, second: i64) {
    store
        .append(vec![
            AuditDraft::new(id, at(second), "received", json!({"route": route})),
            AuditDraft::new(
                id,
                at(second),
                "committed",
                json!({"events": ["e"], "sinks": ["hook"]}),
            ),
        ])
        .unwrap();
}

/// A message's life on `route`: received and committed at `second`, published a minute
/// later.
fn life(store: &Db, id: &str, route: &str, second: i64) {
    pending(store, id, route, second);
    store
        .append(vec![AuditDraft::new(
            id,
            at(second + 60),
            "publish_succeeded",
            json!({"sink": "hook", "event": "e"}),
        )])
        .unwrap();
}

/// Orders keep a day of history, audit-only routes for good.
fn hot(route: &str) -> Option<Duration> {
    (route == "orders").then_some(Duration::from_secs(86_400))
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Db,
    archive: Directory,
    path: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Db::open(&dir.path().join("data")).unwrap();
    let path = dir.path().join("archive");
    let archive = Directory::open(&path).unwrap();
    Fixture {
        _dir: dir,
        store,
        archive,
        path,
    }
}

fn verify(store: &Db, archive: Option<&Directory>) -> Vec<Finding> {
    match archive {
        Some(archive) => verify_store(store, &[], archive).unwrap().1,
        None => crate::audit::verify_store(store).unwrap().1,
    }
}

#[test]
fn old_history_moves_to_a_segment_and_both_halves_verify() {
    let f = fixture();
    life(&f.store, "m-old", "orders", 0);
    pending(&f.store, "m-open", "orders", 0);
    life(&f.store, "m-kept", "audit-only", 0);
    life(&f.store, "m-new", "orders", 2 * 86_400);
    // A day and a half after the first messages: their history moves.
    let now = at(86_400 + 43_200);
    let done = archive(&f.store, &f.archive, &hot, now).unwrap();
    assert_eq!((done.streams, done.events), (2, 5));
    let segment = done.segment.unwrap();
    assert_eq!(f.archive.list().unwrap(), std::slice::from_ref(&segment));
    assert_eq!(f.archive.digest(&segment).unwrap(), done.digest.unwrap());
    for gone in ["m-old", "m-open"] {
        assert!(f.store.history(gone).unwrap().is_empty());
    }
    // The settled message's stream is closed: no anchor. The open one keeps one.
    assert_eq!(f.store.audit_anchor("m-old").unwrap(), None);
    assert_eq!(f.store.audit_anchor("m-open").unwrap().unwrap().version, 2);
    assert_eq!(f.store.history("m-kept").unwrap().len(), 3);
    assert_eq!(f.store.history("m-new").unwrap().len(), 3);

    assert!(verify(&f.store, None).is_empty());
    assert!(verify(&f.store, Some(&f.archive)).is_empty());

    let state = |id, at, archive: Option<&Directory>| {
        message_state(&f.store, id, at, archive.map(|a| a as &dyn SegmentStore)).unwrap()
    };
    // The open stream's present folds on from its anchor; an instant before the anchor
    // needs the archive.
    let StateAt::State(now_state) = state("m-open", None, None) else {
        panic!("the present is answered from the anchor");
    };
    assert_eq!(
        (now_state.status.as_str(), now_state.version),
        ("committed", 2)
    );
    assert!(matches!(
        state("m-open", Some(at(-1)), None),
        StateAt::Archived { ref segment, .. } if *segment == segment_name(now)
    ));
    let StateAt::State(before) = state("m-open", Some(at(-1)), Some(&f.archive)) else {
        panic!("the archive answers");
    };
    assert_eq!(before.version, 0, "nothing had happened yet");
    assert_eq!(
        state("m-open", None, Some(&f.archive)),
        StateAt::State(now_state)
    );
    // The closed one is the archive's alone.
    assert_eq!(state("m-old", Some(at(30)), None), StateAt::Unknown);
    let StateAt::State(then) = state("m-old", Some(at(30)), Some(&f.archive)) else {
        panic!("the archive answers");
    };
    assert_eq!((then.status.as_str(), then.version), ("committed", 2));

    // Nothing old enough: no segment.
    let again = archive(&f.store, &f.archive, &hot, now).unwrap();
    assert_eq!(again, Archiving::default());
    assert_eq!(f.archive.list().unwrap().len(), 1);
}

#[test]
fn a_stream_archived_in_two_runs_chains_across_segments_and_new_events_follow() {
    let f = fixture();
    pending(&f.store, "m1", "orders", 0);
    archive(&f.store, &f.archive, &hot, at(200_000)).unwrap();
    // Its delivery long after: sealed after the anchor, archived in a later run, which
    // closes the stream.
    f.store
        .append(vec![AuditDraft::new(
            "m1",
            at(300_000),
            "publish_succeeded",
            json!({"sink": "hook", "event": "e"}),
        )])
        .unwrap();
    assert_eq!(f.store.history("m1").unwrap()[0].version, 3);
    let second = archive(&f.store, &f.archive, &hot, at(500_000)).unwrap();
    assert_eq!(second.events, 1);
    assert_eq!(f.store.audit_anchor("m1").unwrap(), None);
    assert_eq!(f.archive.list().unwrap().len(), 2);
    assert!(verify(&f.store, Some(&f.archive)).is_empty());
    let StateAt::State(state) = message_state(&f.store, "m1", None, Some(&f.archive)).unwrap()
    else {
        panic!("the archive answers");
    };
    assert_eq!((state.status.as_str(), state.version), ("published", 3));

    // A stream that starts again after it was closed is found.
    f.store
        .append(vec![AuditDraft::new(
            "m1",
            at(600_000),
            "received",
            json!({}),
        )])
        .unwrap();
    let findings = verify(&f.store, Some(&f.archive));
    assert!(
        findings.iter().any(|f| f.problem.contains("starts again")),
        "{findings:?}"
    );
}

#[test]
fn a_damaged_or_missing_segment_is_found() {
    let f = fixture();
    pending(&f.store, "m1", "orders", 0);
    let done = archive(&f.store, &f.archive, &hot, at(200_000)).unwrap();
    let file = f.path.join(done.segment.as_ref().unwrap());
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let findings = verify(&f.store, Some(&f.archive));
    assert!(!findings.is_empty());
    assert!(
        findings
            .iter()
            .any(|f| f.message_id.starts_with("segment ")),
        "{findings:?}"
    );
    // Hot alone still verifies: the anchor is taken as it is.
    assert!(verify(&f.store, None).is_empty());

    std::fs::remove_file(&file).unwrap();
    let findings = verify(&f.store, Some(&f.archive));
    assert!(
        findings
            .iter()
            .any(|f| f.message_id == "m1" && f.problem.contains("not in the archive")),
        "{findings:?}"
    );
}

#[test]
fn a_segment_is_not_visible_until_it_is_whole() {
    let f = fixture();
    let mut sink = f.archive.create("audit-x").unwrap();
    sink.write_all(b"half").unwrap();
    assert!(f.archive.list().unwrap().is_empty());
    drop(sink);
    assert!(
        std::fs::read_dir(&f.path).unwrap().next().is_none(),
        "nothing left behind"
    );
    assert!(f.archive.create("../escape").is_err());
}
