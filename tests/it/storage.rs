//! The storage conformance suite, from ../shared/PROPERTIES.md: what any backend must do.
//! Each property is a function over a `Backend`, run on sled (`Db`, in a temporary
//! directory) and on PostgreSQL (`Postgres`, in a database of the test's own, dropped after
//! it; the directory then holds only its URL).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use dragoman::outcome::{Accepted, Cause, Rejected, Settled};
use dragoman::storage::{
    Anchor, AuditDraft, AuditItem, Claim, ClaimToken, Commit, Completed, DeadLetter,
    DeadLetterKind, DeliveryOutcome, EntityDraft, EntityRef, MessageRecord, OutboxEvent,
    PendingDelivery, Storage, StorageError, StreamCut,
};
use dragoman::storage::{Db, Postgres};
use jiff::Timestamp;
use serde_json::json;

/// How the suite opens a backend on a directory (reopening it on the same directory is a
/// restart).
type Backend = fn(&Path) -> Arc<dyn Storage>;

fn sled(dir: &Path) -> Arc<dyn Storage> {
    Arc::new(Db::open(dir).expect("the store opens"))
}

/// Where a PostgreSQL store's directory keeps its database's URL.
const DATABASE_URL: &str = "database-url";

fn postgres(dir: &Path) -> Arc<dyn Storage> {
    let url = std::fs::read_to_string(dir.join(DATABASE_URL)).expect("the test's database");
    Arc::new(Postgres::connect(&url, 8).expect("the store opens"))
}

const BACKENDS: &[(&str, Backend)] = &[("sled", sled), ("postgres", postgres)];

fn each(property: fn(Backend, &Path)) {
    for (name, backend) in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let database = (*name == "postgres").then(|| {
            let database = tests::pg::TestDatabase::create();
            std::fs::write(dir.path().join(DATABASE_URL), database.url()).unwrap();
            database
        });
        eprintln!("backend {name}");
        property(*backend, dir.path());
        drop(database);
    }
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn at(ms: i64) -> Timestamp {
    t0().checked_add(jiff::SignedDuration::from_millis(ms))
        .unwrap()
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn fresh(claim: Claim) -> ClaimToken {
    match claim {
        Claim::Fresh(token) => token,
        other => panic!("expected a fresh claim, got {other:?}"),
    }
}

fn message(id: &str, key: &str) -> MessageRecord {
    MessageRecord {
        id: id.into(),
        route: "orders".into(),
        key: key.into(),
        content_type: None,
        headers: vec![],
        body: b"{}".to_vec(),
        received_at: t0(),
        cut: None,
    }
}

fn event(id: &str, message_id: &str, partition: &str) -> OutboxEvent {
    OutboxEvent {
        id: id.into(),
        message_id: message_id.into(),
        route: "orders".into(),
        event_type: "order.created.v1".into(),
        subject: partition.into(),
        partition_key: partition.into(),
        data: "{}".into(),
        time: t0(),
        traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01".into(),
        tracestate: None,
        producer: None,
    }
}

fn draft(message_id: &str, kind: &str) -> AuditDraft {
    AuditDraft {
        message_id: message_id.into(),
        kind: kind.into(),
        data: json!({}),
        at: t0(),
    }
}

fn commit(
    claim: Option<ClaimToken>,
    message_id: &str,
    key: &str,
    events: &[&str],
    expires_ms: i64,
) -> Commit {
    Commit {
        claim,
        completed: Completed {
            fingerprint: "f".into(),
            settled: Settled::Accepted(Accepted {
                message_id: message_id.into(),
                idempotency_key: key.into(),
                events: events.iter().map(|id| (*id).to_owned()).collect(),
            }),
            expires_at: at(expires_ms),
        },
        message: message(message_id, key),
        events: events
            .iter()
            .map(|id| (event(id, message_id, "p"), vec!["hook".to_owned()]))
            .collect(),
        dead_letter: None,
        resolves: None,
        audit: vec![
            draft(message_id, "received"),
            draft(message_id, "committed"),
        ],
        new_message: false,
        entities: vec![],
    }
}

/// Every delivery `sink` may make at `now`, key by key.
fn due_at(store: &dyn Storage, sink: &str, now: Timestamp) -> Vec<PendingDelivery> {
    store
        .due(sink, now, &BTreeSet::new(), 1000, 1000)
        .unwrap()
        .chains
        .into_iter()
        .flat_map(|chain| chain.deliveries)
        .collect()
}

/// Every delivery `sink` may make, whenever due.
fn pending(store: &dyn Storage, sink: &str) -> Vec<PendingDelivery> {
    due_at(store, sink, Timestamp::MAX)
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Claims `key` and commits message `id` with `events` under it.
fn commit_one(store: &dyn Storage, id: &str, key: &str, events: &[&str]) {
    let token = fresh(store.claim("orders", key, t0(), TIMEOUT).unwrap());
    store
        .commit(commit(Some(token), id, key, events, 60_000))
        .unwrap();
}

#[test]
fn ic1_a_committed_key_is_done_with_its_stored_outcome() {
    each(|backend, dir| {
        let store = backend(dir);
        commit_one(&*store, "m1", "k", &["e1"]);
        for _ in 0..3 {
            match store.claim("orders", "k", at(1), TIMEOUT).unwrap() {
                Claim::Done(done) => assert_eq!(
                    done.settled,
                    Settled::Accepted(Accepted {
                        message_id: "m1".into(),
                        idempotency_key: "k".into(),
                        events: vec!["e1".into()],
                    })
                ),
                other => panic!("{other:?}"),
            }
        }
        block_on(store.durable()).unwrap();
        assert_eq!(
            pending(&*store, "hook").len(),
            1,
            "one set of outbox events"
        );
    });
}

#[test]
fn ic2_concurrent_claims_of_one_key_give_exactly_one_fresh() {
    each(|backend, dir| {
        let store = backend(dir);
        for m in [2usize, 8, 64] {
            let key = format!("k{m}");
            let barrier = Arc::new(Barrier::new(m));
            let results: Vec<Claim> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..m)
                    .map(|_| {
                        let (store, barrier, key) = (store.clone(), barrier.clone(), key.clone());
                        scope.spawn(move || {
                            barrier.wait();
                            store.claim("orders", &key, t0(), TIMEOUT).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let fresh = results
                .iter()
                .filter(|c| matches!(c, Claim::Fresh(_)))
                .count();
            let in_flight = results
                .iter()
                .filter(|c| matches!(c, Claim::InFlight))
                .count();
            assert_eq!((fresh, in_flight), (1, m - 1), "M = {m}");
        }
    });
}

#[test]
fn ic3_a_claim_left_by_a_crash_is_not_a_record_and_is_taken_after_restart() {
    each(|backend, dir| {
        {
            let store = backend(dir);
            fresh(store.claim("orders", "k", t0(), TIMEOUT).unwrap());
            // The process dies between claim and commit: nothing but the claim was written.
        }
        let store = backend(dir);
        fresh(store.claim("orders", "k", at(1), TIMEOUT).unwrap());
        assert!(pending(&*store, "hook").is_empty());
        assert!(store.audit_streams().unwrap().is_empty());
        assert!(store.message("m1").unwrap().is_none());
    });
}

#[test]
fn ic5_a_released_key_runs_again_and_a_rejection_is_remembered() {
    each(|backend, dir| {
        let store = backend(dir);
        let token = fresh(store.claim("orders", "k", t0(), TIMEOUT).unwrap());
        store.release(&token).unwrap();
        let token = fresh(store.claim("orders", "k", t0(), TIMEOUT).unwrap());
        let mut rejected = commit(Some(token), "m1", "k", &[], 60_000);
        rejected.completed.settled = Settled::Rejected(Rejected {
            message_id: "m1".into(),
            dead_letter: "d1".into(),
            cause: Cause::Refused,
            code: "invalid-value".into(),
            error: "no".into(),
        });
        rejected.dead_letter = Some(dead_letter("d1", "m1"));
        store.commit(rejected).unwrap();
        assert!(
            matches!(store.claim("orders", "k", at(1), TIMEOUT).unwrap(), Claim::Done(d) if matches!(d.settled, Settled::Rejected(_)))
        );
        assert_eq!(store.dead_letters(None, 10).unwrap().len(), 1);
    });
}

fn dead_letter(id: &str, message_id: &str) -> DeadLetter {
    DeadLetter {
        id: id.into(),
        kind: DeadLetterKind::Translation,
        message_id: message_id.into(),
        route: "orders".into(),
        error: "bad".into(),
        code: "rejected".into(),
        plugin: "p@1".into(),
        plugin_sha256: "ab".into(),
        attempts: 1,
        created_at: t0(),
        updated_at: t0(),
        bytes: 2,
    }
}

/// A rejection of message `id` on `route` with a body of `size` bytes, dead-lettered as `d-{id}`.
fn reject_on(store: &dyn Storage, route: &str, id: &str, size: usize) {
    let key = format!("k-{id}");
    let token = fresh(store.claim(route, &key, t0(), TIMEOUT).unwrap());
    let mut c = commit(Some(token), id, &key, &[], 60_000);
    c.message.route = route.into();
    c.message.body = vec![b'x'; size];
    let mut entry = dead_letter(&format!("d-{id}"), id);
    entry.route = route.into();
    entry.bytes = size as u64;
    c.dead_letter = Some(entry);
    store.commit(c).unwrap();
}

#[test]
fn ic6_an_in_flight_claim_is_taken_after_its_timeout_never_before() {
    each(|backend, dir| {
        let store = backend(dir);
        fresh(
            store
                .claim("orders", "k", t0(), Duration::from_millis(1000))
                .unwrap(),
        );
        assert_eq!(
            store.claim("orders", "k", at(999), TIMEOUT).unwrap(),
            Claim::InFlight,
            "timeout - 1 ms"
        );
        let late = fresh(store.claim("orders", "k", at(1001), TIMEOUT).unwrap());
        assert_eq!(late.key, "k");
        // The boundary, as for retention: a claim is over at the instant its timeout ends.
        fresh(
            store
                .claim("orders", "j", t0(), Duration::from_millis(1000))
                .unwrap(),
        );
        fresh(store.claim("orders", "j", at(1000), TIMEOUT).unwrap());
    });
}

#[test]
fn ic6_a_commit_by_a_claim_that_was_taken_over_writes_nothing() {
    each(|backend, dir| {
        let store = backend(dir);
        let slow = fresh(
            store
                .claim("orders", "k", t0(), Duration::from_millis(10))
                .unwrap(),
        );
        let fast = fresh(store.claim("orders", "k", at(11), TIMEOUT).unwrap());
        let lost = store.commit(commit(Some(slow), "m-slow", "k", &["e-slow"], 60_000));
        assert!(
            matches!(lost, Err(StorageError::ClaimLost { .. })),
            "{lost:?}"
        );
        store
            .commit(commit(Some(fast), "m-fast", "k", &["e-fast"], 60_000))
            .unwrap();
        block_on(store.durable()).unwrap();
        let pending: Vec<String> = pending(&*store, "hook")
            .into_iter()
            .map(|r| r.event.id)
            .collect();
        assert_eq!(
            pending,
            ["e-fast"],
            "all or nothing: the lost commit left no event"
        );
        assert!(
            store.history("m-slow").unwrap().is_empty(),
            "nor an audit event"
        );
        assert!(
            store.message("m-slow").unwrap().is_none(),
            "nor the message"
        );
    });
}

#[test]
fn ic7_expiry_compares_the_stored_expiry_with_the_clock() {
    each(|backend, dir| {
        let store = backend(dir);
        let token = fresh(store.claim("orders", "k", t0(), TIMEOUT).unwrap());
        store
            .commit(commit(Some(token), "m1", "k", &[], 5_000))
            .unwrap();
        assert!(matches!(
            store.claim("orders", "k", at(4_999), TIMEOUT).unwrap(),
            Claim::Done(_)
        ));
        fresh(store.claim("orders", "k", at(5_000), TIMEOUT).unwrap());
    });
}

#[test]
fn ic10_keys_are_scoped_per_route() {
    each(|backend, dir| {
        let store = backend(dir);
        fresh(store.claim("orders", "k", t0(), TIMEOUT).unwrap());
        fresh(store.claim("invoices", "k", t0(), TIMEOUT).unwrap());
    });
}

#[test]
fn ic12_the_key_store_stays_bounded_under_steady_load() {
    each(|backend, dir| {
        let store = backend(dir);
        // 10 rounds of 50 keys with a 1 s retention, one round a second, sweeping each round.
        for round in 0..10i64 {
            let now = at(round * 1000);
            for k in 0..50 {
                let key = format!("r{round}-k{k}");
                let token = fresh(store.claim("orders", &key, now, TIMEOUT).unwrap());
                let mut c = commit(
                    Some(token),
                    &format!("m-{key}"),
                    &key,
                    &[],
                    round * 1000 + 1000,
                );
                c.audit.clear();
                store.commit(c).unwrap();
            }
            let removed = store.sweep(now, now, 1000).unwrap().removed;
            if round > 0 {
                assert_eq!(
                    removed, 50,
                    "round {round}: the previous round's keys expired"
                );
            }
        }
    });
}

#[test]
fn ob1_ob5_events_are_pending_in_commit_order_once_durable() {
    each(|backend, dir| {
        let store = backend(dir);
        for n in 0..5 {
            let key = format!("k{n}");
            let token = fresh(store.claim("orders", &key, t0(), TIMEOUT).unwrap());
            store
                .commit(commit(
                    Some(token),
                    &format!("m{n}"),
                    &key,
                    &[&format!("e{n}a"), &format!("e{n}b")],
                    60_000,
                ))
                .unwrap();
        }
        block_on(store.durable()).unwrap();
        let pending = pending(&*store, "hook");
        let ids: Vec<&str> = pending.iter().map(|r| r.event.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "e0a", "e0b", "e1a", "e1b", "e2a", "e2b", "e3a", "e3b", "e4a", "e4b"
            ]
        );
        assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    });
}

#[test]
fn ob8_an_event_leaves_only_when_every_sink_has_it_and_its_retention_passed() {
    each(|backend, dir| {
        let store = backend(dir);
        let token = fresh(store.claim("orders", "k", t0(), TIMEOUT).unwrap());
        let mut c = commit(Some(token), "m1", "k", &[], 60_000);
        c.events = vec![(event("e1", "m1", "p"), vec!["a".into(), "b".into()])];
        store.commit(c).unwrap();
        block_on(store.durable()).unwrap();
        let seq = pending(&*store, "a")[0].seq;
        store
            .record_delivery(
                seq,
                "a",
                DeliveryOutcome::Delivered,
                vec![draft("m1", "publish_succeeded")],
                at(1),
            )
            .unwrap();
        assert!(pending(&*store, "a").is_empty(), "sink a has it");
        assert_eq!(pending(&*store, "b").len(), 1, "sink b still waits");
        assert_eq!(store.depths().unwrap().outbox, 1);
        store
            .record_delivery(seq, "b", DeliveryOutcome::Delivered, vec![], at(2))
            .unwrap();
        assert!(pending(&*store, "b").is_empty());
        assert_eq!(store.depths().unwrap().outbox, 0);
        assert_eq!(
            store.sweep(at(3), at(1), 1000).unwrap().removed,
            0,
            "published at 2 ms: kept while its retention runs"
        );
        assert_eq!(
            store.sweep(at(3), at(2), 1000).unwrap().removed,
            1,
            "then compacted"
        );
    });
}

/// Commits message `id` under key `key` with `events` as (event id, partition key), each for
/// `sinks`.
fn commit_to(store: &dyn Storage, id: &str, key: &str, events: &[(&str, &str)], sinks: &[&str]) {
    let token = fresh(store.claim("orders", key, t0(), TIMEOUT).unwrap());
    let mut c = commit(Some(token), id, key, &[], 60_000);
    c.events = events
        .iter()
        .map(|(event_id, partition)| {
            (
                event(event_id, id, partition),
                sinks.iter().map(|s| (*s).to_owned()).collect(),
            )
        })
        .collect();
    store.commit(c).unwrap();
}

fn ids(deliveries: &[PendingDelivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.event.id.as_str()).collect()
}

#[test]
fn ob9_a_key_in_backoff_at_one_sink_holds_up_neither_other_keys_nor_other_sinks() {
    each(|backend, dir| {
        let store = backend(dir);
        commit_to(
            &*store,
            "m1",
            "k1",
            &[("e1", "p1"), ("e2", "p1")],
            &["a", "b"],
        );
        commit_to(&*store, "m2", "k2", &[("e3", "p2")], &["a", "b"]);
        block_on(store.durable()).unwrap();
        let e1 = pending(&*store, "a")[0].seq;
        let failed = DeliveryOutcome::Failed {
            error: "connection refused".into(),
            next_at: at(1000),
        };
        store
            .record_delivery(e1, "a", failed, vec![], at(1))
            .unwrap();

        let due = store.due("a", at(500), &BTreeSet::new(), 100, 100).unwrap();
        let keys: Vec<&str> = due
            .chains
            .iter()
            .map(|c| c.partition_key.as_str())
            .collect();
        assert_eq!(
            keys,
            ["p2"],
            "p1 waits for its retry at sink a; p2 does not"
        );
        assert_eq!(due.next_at, Some(at(1000)), "and says when p1 is due");
        assert_eq!(
            ids(&due_at(&*store, "b", at(500))),
            ["e1", "e2", "e3"],
            "sink b is not held up by sink a"
        );
        let again = store
            .due("a", at(1000), &BTreeSet::new(), 100, 100)
            .unwrap();
        let chains: Vec<(&str, Vec<&str>)> = again
            .chains
            .iter()
            .map(|c| (c.partition_key.as_str(), ids(&c.deliveries)))
            .collect();
        // A backend may give a head that failed before on its own: the rest follow it.
        assert_eq!(
            chains[0],
            ("p2", vec!["e3"]),
            "the key that waited longer first"
        );
        assert_eq!(chains[1].0, "p1");
        assert!(
            ["e1", "e2"].starts_with(&chains[1].1) && !chains[1].1.is_empty(),
            "once due, p1 in commit order: {:?}",
            chains[1].1
        );
        let head = &again.chains[1].deliveries[0].delivery;
        assert_eq!((head.attempts, head.next_at), (1, Some(at(1000))));
        store
            .record_delivery(e1, "a", DeliveryOutcome::Delivered, vec![], at(1000))
            .unwrap();
        let after: Vec<PendingDelivery> = due_at(&*store, "a", at(1000))
            .into_iter()
            .filter(|d| d.event.partition_key == "p1")
            .collect();
        assert_eq!(ids(&after), ["e2"], "then the next of p1");
    });
}

#[test]
fn ob10_keys_being_delivered_are_skipped_and_reads_are_bounded() {
    each(|backend, dir| {
        let store = backend(dir);
        for n in 1..=3 {
            let partition = format!("p{n}");
            commit_to(
                &*store,
                &format!("m{n}"),
                &format!("k{n}"),
                &[
                    (&format!("e{n}a"), &partition),
                    (&format!("e{n}b"), &partition),
                ],
                &["a"],
            );
        }
        block_on(store.durable()).unwrap();
        let busy = BTreeSet::from(["p1".to_owned()]);
        let due = store.due("a", at(1), &busy, 100, 100).unwrap();
        let keys: Vec<&str> = due
            .chains
            .iter()
            .map(|c| c.partition_key.as_str())
            .collect();
        assert_eq!(keys, ["p2", "p3"]);
        let due = store.due("a", at(1), &BTreeSet::new(), 1, 1).unwrap();
        assert_eq!(due.chains.len(), 1, "at most `chains` keys");
        assert_eq!(
            due.chains[0].deliveries.len(),
            1,
            "at most `per_chain` each"
        );
        assert_eq!(ids(&due.chains[0].deliveries), ["e1a"], "the oldest first");
    });
}

/// BH-2: an operator's "retry now" makes the keys a sink holds in backoff due at once (one
/// key, or all), with the attempts as they were, in one write with its audit events; keys
/// that are due anyway, and other sinks, are left as they are.
#[test]
fn ob13_held_keys_are_released_now_with_their_attempts_and_an_audit_event() {
    each(|backend, dir| {
        let store = backend(dir);
        for (id, key, partition) in [("m1", "k1", "p1"), ("m2", "k2", "p2"), ("m3", "k3", "p3")] {
            commit_to(
                &*store,
                id,
                key,
                &[(&format!("e-{id}"), partition)],
                &["a", "b"],
            );
        }
        block_on(store.durable()).unwrap();
        for head in pending(&*store, "a").into_iter().take(2) {
            let failed = DeliveryOutcome::Failed {
                error: "429".into(),
                next_at: at(86_400_000),
            };
            store
                .record_delivery(head.seq, "a", failed, vec![], at(1))
                .unwrap();
        }
        let keys = |due: &[PendingDelivery]| {
            let mut keys: Vec<String> = due.iter().map(|d| d.event.partition_key.clone()).collect();
            keys.sort();
            keys
        };
        assert_eq!(
            keys(&due_at(&*store, "a", at(10))),
            ["p3"],
            "p1 and p2 held"
        );
        let audit = |released: &dragoman::storage::Released| {
            vec![AuditDraft {
                message_id: "sink:a".into(),
                kind: "released".into(),
                data: json!({"keys": released.keys}),
                at: at(10),
            }]
        };
        let one = store
            .release_held("a", Some("p2"), at(10), 100, &audit)
            .unwrap();
        assert_eq!((one.keys.clone(), one.more), (vec!["p2".to_owned()], false));
        assert_eq!(keys(&due_at(&*store, "a", at(10))), ["p2", "p3"]);
        let released = due_at(&*store, "a", at(10));
        let p2 = released
            .iter()
            .find(|d| d.event.partition_key == "p2")
            .unwrap();
        assert_eq!(p2.delivery.attempts, 1, "attempts as they were");
        // The rest, one write a key at most.
        let rest = store.release_held("a", None, at(10), 1, &audit).unwrap();
        assert_eq!(
            (rest.keys.clone(), rest.more),
            (vec!["p1".to_owned()], false)
        );
        assert_eq!(keys(&due_at(&*store, "a", at(10))), ["p1", "p2", "p3"]);
        let none = store.release_held("a", None, at(10), 100, &audit).unwrap();
        assert!(none.keys.is_empty() && !none.more);
        assert_eq!(keys(&due_at(&*store, "b", at(10))), ["p1", "p2", "p3"]);
        let history = store.history("sink:a").unwrap();
        let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["released", "released"],
            "nothing released, nothing written"
        );
        assert_eq!(history[1].data["keys"], json!(["p1"]));
    });
}

#[test]
fn ob11_depths_are_counters_kept_by_every_write_and_across_a_restart() {
    each(|backend, dir| {
        {
            let store = backend(dir);
            commit_to(
                &*store,
                "m1",
                "k1",
                &[("e1", "p1"), ("e2", "p2")],
                &["a", "b"],
            );
            commit_to(&*store, "m2", "k2", &[("e3", "p3")], &["a"]);
            block_on(store.durable()).unwrap();
            let depths = store.depths().unwrap();
            assert_eq!(depths.outbox, 3);
            assert_eq!((depths.sinks["a"], depths.sinks["b"]), (3, 2));
            assert_eq!(depths.oldest, Some(t0()));
            let a = pending(&*store, "a");
            store
                .record_delivery(a[0].seq, "a", DeliveryOutcome::Delivered, vec![], at(1))
                .unwrap();
            let mut entry = dead_letter("d-e3", "m2");
            entry.kind = DeadLetterKind::Delivery {
                sink: "a".into(),
                event: Box::new(a[2].event.clone()),
            };
            store
                .record_delivery(
                    a[2].seq,
                    "a",
                    DeliveryOutcome::DeadLettered(Box::new(entry)),
                    vec![],
                    at(2),
                )
                .unwrap();
            let depths = store.depths().unwrap();
            assert_eq!(depths.outbox, 2, "e1 waits for b; e3 is dead-lettered");
            assert_eq!((depths.sinks["a"], depths.sinks["b"]), (1, 2));
            assert_eq!(depths.dead_letters, 1);
            store.requeue("d-e3", vec![]).unwrap();
            let depths = store.depths().unwrap();
            assert_eq!(
                (depths.outbox, depths.sinks["a"], depths.dead_letters),
                (3, 2, 0)
            );
            block_on(store.durable()).unwrap();
        }
        let store = backend(dir);
        let depths = store.depths().unwrap();
        assert_eq!(
            (
                depths.outbox,
                depths.sinks["a"],
                depths.sinks["b"],
                depths.dead_letters
            ),
            (3, 2, 2, 0),
            "after a restart"
        );
        assert_eq!(ids(&pending(&*store, "a")), ["e2", "e3"]);
    });
}

#[test]
fn ic13_a_sweep_goes_in_bounded_batches_and_spares_a_key_processed_again() {
    each(|backend, dir| {
        let store = backend(dir);
        for n in 0..50i64 {
            let key = format!("k{n}");
            let token = fresh(store.claim("orders", &key, t0(), TIMEOUT).unwrap());
            let expires = if n < 25 { 1000 } else { 5000 };
            let mut c = commit(Some(token), &format!("m{n}"), &key, &[], expires);
            c.audit.clear();
            store.commit(c).unwrap();
        }
        // k0 expires at 1 s, is processed again at 1.5 s and kept until 9 s.
        let token = fresh(store.claim("orders", "k0", at(1500), TIMEOUT).unwrap());
        let mut c = commit(Some(token), "m0-again", "k0", &[], 9000);
        c.audit.clear();
        store.commit(c).unwrap();

        let mut removed = 0;
        let mut sweeps = 0;
        loop {
            let swept = store.sweep(at(2000), Timestamp::MIN, 10).unwrap();
            assert!(swept.removed <= 10);
            removed += swept.removed;
            sweeps += 1;
            if !swept.more {
                break;
            }
            assert!(sweeps < 10, "the sweep ends");
        }
        assert_eq!(removed, 24, "k1..k24; k0 was processed again");
        assert!(sweeps >= 3, "in batches of at most 10");
        assert!(matches!(
            store.claim("orders", "k0", at(2000), TIMEOUT).unwrap(),
            Claim::Done(_)
        ));
        assert!(matches!(
            store.claim("orders", "k30", at(2000), TIMEOUT).unwrap(),
            Claim::Done(_)
        ));
        fresh(store.claim("orders", "k1", at(2000), TIMEOUT).unwrap());
    });
}

#[test]
fn dl4_attempt_counts_survive_a_restart() {
    each(|backend, dir| {
        {
            let store = backend(dir);
            commit_one(&*store, "m1", "k", &["e1"]);
            block_on(store.durable()).unwrap();
            let seq = pending(&*store, "hook")[0].seq;
            for n in 1..=2 {
                let outcome = DeliveryOutcome::Failed {
                    error: format!("503 #{n}"),
                    next_at: at(n * 100),
                };
                store
                    .record_delivery(seq, "hook", outcome, vec![], at(n))
                    .unwrap();
            }
            block_on(store.durable()).unwrap();
        }
        let store = backend(dir);
        let pending = pending(&*store, "hook");
        let delivery = &pending[0].delivery;
        assert_eq!(
            (delivery.attempts, delivery.last_error.as_deref()),
            (2, Some("503 #2"))
        );
    });
}

/// BH-2: each route's dead letters are counted with the bytes they keep (across a restart),
/// listed oldest first whatever other routes hold, and an eviction takes the entry's stored
/// message with it, audited, while a discard keeps the message.
#[test]
fn dl7_a_route_s_dead_letters_are_counted_listed_oldest_first_and_evicted_whole() {
    each(|backend, dir| {
        {
            let store = backend(dir);
            for (n, route) in ["a", "b", "a", "b", "a"].iter().enumerate() {
                reject_on(&*store, route, &format!("m{n}"), 100 * (n + 1));
            }
            let depths = store.depths().unwrap();
            assert_eq!(depths.dead_letters, 5);
            let a = depths.dead_letter_routes["a"];
            assert_eq!((a.count, a.bytes), (3, 100 + 300 + 500));
            let ids = |route: &str, after: Option<&str>| -> Vec<String> {
                store
                    .route_dead_letters(route, after, 2)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.id)
                    .collect()
            };
            assert_eq!(ids("a", None), ["d-m0", "d-m2"]);
            assert_eq!(ids("a", Some("d-m2")), ["d-m4"]);
            assert_eq!(ids("b", None), ["d-m1", "d-m3"]);
            let evicted = AuditDraft {
                message_id: "m0".into(),
                kind: "dead_letter_evicted".into(),
                data: json!({}),
                at: t0(),
            };
            store.evict_dead_letter("d-m0", vec![evicted]).unwrap();
            assert!(
                store.message("m0").unwrap().is_none(),
                "its body went with it"
            );
            assert_eq!(
                store.history("m0").unwrap().last().unwrap().kind,
                "dead_letter_evicted"
            );
            store.discard_dead_letter("d-m1", vec![]).unwrap();
            assert!(
                store.message("m1").unwrap().is_some(),
                "a discard keeps the message"
            );
            assert!(matches!(
                store.evict_dead_letter("d-m0", vec![]),
                Err(StorageError::NotFound { .. })
            ));
            block_on(store.durable()).unwrap();
        }
        let store = backend(dir);
        let depths = store.depths().unwrap();
        assert_eq!(depths.dead_letters, 3);
        let (a, b) = (
            depths.dead_letter_routes["a"],
            depths.dead_letter_routes["b"],
        );
        assert_eq!((a.count, a.bytes, b.count, b.bytes), (2, 800, 1, 400));
        assert_eq!(store.route_dead_letters("a", None, 10).unwrap().len(), 2);
    });
}

#[test]
fn es1_appends_to_one_stream_from_many_threads_stay_one_chain() {
    each(|backend, dir| {
        let store = backend(dir);
        std::thread::scope(|scope| {
            for t in 0..8 {
                let store = store.clone();
                scope.spawn(move || {
                    for n in 0..25 {
                        store
                            .append(vec![AuditDraft {
                                message_id: "m1".into(),
                                kind: format!("t{t}-{n}"),
                                data: json!({}),
                                at: t0(),
                            }])
                            .unwrap();
                    }
                });
            }
        });
        let streams = store.audit_streams().unwrap();
        let versions: Vec<u64> = streams["m1"].iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=200).collect::<Vec<u64>>());
        assert!(dragoman::audit::verify(&streams).is_empty());
    });
}

#[test]
fn es8_a_new_message_s_commit_opens_its_stream_as_a_read_would_and_more_follow_it() {
    each(|backend, dir| {
        let store = backend(dir);
        let mut opening = commit(None, "m1", "k1", &["e1"], 60_000);
        opening.new_message = true;
        // A draft of another stream in the same commit is sealed after that stream's head.
        store.append(vec![draft("m0", "received")]).unwrap();
        opening.audit.push(draft("m0", "noted"));
        store.commit(opening).unwrap();
        store.append(vec![draft("m1", "delivered")]).unwrap();
        // The same commit with the flag off, on another message: the same chain shape.
        store
            .commit(commit(None, "m2", "k2", &["e2"], 60_000))
            .unwrap();
        let streams = store.audit_streams().unwrap();
        let shape = |id: &str| -> Vec<(u64, String)> {
            streams[id]
                .iter()
                .map(|e| (e.version, e.kind.clone()))
                .collect()
        };
        assert_eq!(
            shape("m1"),
            [(1, "received"), (2, "committed"), (3, "delivered")].map(|(v, k)| (v, k.to_owned()))
        );
        assert_eq!(
            shape("m0"),
            [(1, "received"), (2, "noted")].map(|(v, k)| (v, k.to_owned()))
        );
        assert_eq!(shape("m2").len(), 2);
        assert_eq!(streams["m1"][0].prev, streams["m2"][0].prev);
        assert!(dragoman::audit::verify(&streams).is_empty());
    });
}

#[test]
fn es9_concurrent_commits_about_one_entity_and_key_keep_every_stream_whole() {
    // A backend may write commits that wait together in one batch: each must read the heads
    // the ones before it left (entity stream, audit stream, delivery chain), not the store's.
    each(|backend, dir| {
        let store = backend(dir);
        let order = EntityRef::of("order.created.v1", "A-1").unwrap();
        std::thread::scope(|scope| {
            for t in 0..8 {
                let store = store.clone();
                scope.spawn(move || {
                    for n in 0..25 {
                        let (id, key) = (format!("m{t}-{n}"), format!("k{t}-{n}"));
                        let token = fresh(store.claim("orders", &key, t0(), TIMEOUT).unwrap());
                        let mut commit = with_entities(
                            commit(Some(token), &id, &key, &[&format!("e{t}-{n}")], 60_000),
                            "A-1",
                            &["order.created.v1"],
                        );
                        commit.new_message = true;
                        commit.audit.push(draft("shared", &id));
                        store.commit(commit).unwrap();
                    }
                });
            }
        });
        block_on(store.durable()).unwrap();
        let stream = store.entity_stream(&order).unwrap();
        let seqs: Vec<u64> = stream.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
        assert!(dragoman::entity::verify(&store.entity_streams().unwrap()).is_empty());
        let audit = store.audit_streams().unwrap();
        let versions: Vec<u64> = audit["shared"].iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=200).collect::<Vec<u64>>());
        assert!(dragoman::audit::verify(&audit).is_empty());
        // The outbox holds the events in the order the stream does: commit order.
        let deliveries = pending(&*store, "hook");
        let seqs: Vec<u64> = deliveries.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
        let in_stream: Vec<&str> = stream.iter().map(|e| e.event.id.as_str()).collect();
        assert_eq!(ids(&deliveries), in_stream);
        let depths = store.depths().unwrap();
        assert_eq!((depths.outbox, depths.sinks.get("hook")), (200, Some(&200)));
    });
}

#[test]
fn es7_the_state_at_an_instant_folds_the_events_recorded_by_then() {
    each(|backend, dir| {
        let store = backend(dir);
        let mut events = Vec::new();
        for (n, kind) in ["received", "translated", "committed"]
            .into_iter()
            .enumerate()
        {
            events.push(AuditDraft {
                message_id: "m1".into(),
                kind: kind.into(),
                data: json!({"events": ["e1"], "sinks": ["hook"]}),
                at: at(n as i64 * 10),
            });
        }
        store.append(events).unwrap();
        let history = store.history("m1").unwrap();
        assert_eq!(
            dragoman::audit::fold("m1", &history, Some(at(5))).status,
            "received"
        );
        assert_eq!(
            dragoman::audit::fold("m1", &history, Some(at(20))).status,
            "committed"
        );
        assert_eq!(
            dragoman::audit::fold("m1", &history, None),
            dragoman::audit::fold("m1", &history, Some(at(1000)))
        );
    });
}

#[test]
fn st2_a_damaged_data_dir_is_an_error_at_open_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    drop(Db::open(dir.path()).unwrap());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"this is not a sled file").unwrap();
        }
    }
    let opened = std::panic::catch_unwind(|| Db::open(dir.path()).map(drop));
    match opened {
        Ok(Err(e)) => assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        ),
        Ok(Ok(())) => panic!("a damaged store opened"),
        Err(_) => panic!("opening a damaged store panicked"),
    }
}

#[test]
fn st3_a_store_in_use_is_a_clear_error_and_opens_once_closed() {
    let dir = tempfile::tempdir().unwrap();
    let first = Db::open(dir.path()).unwrap();
    let err = Db::open(dir.path()).expect_err("the lock is held");
    assert!(err.to_string().contains("is in use"), "{err}");
    drop(first);
    Db::open(dir.path()).expect("the store opens once the first is closed");
}

#[test]
fn ic14_a_claim_in_a_namespace_of_its_own_is_settled_there_not_under_the_message_s_route() {
    // A command's key lives in `ROUTE/commands`; its message record names the route.
    each(|backend, dir| {
        let store = backend(dir);
        let timeout = Duration::from_secs(30);
        let claim = fresh(store.claim("orders/commands", "k1", t0(), timeout).unwrap());
        store
            .commit(commit(Some(claim), "m1", "k1", &[], 60_000))
            .unwrap();
        assert!(matches!(
            store
                .claim("orders/commands", "k1", at(1), timeout)
                .unwrap(),
            Claim::Done(_)
        ));
        assert!(
            matches!(
                store.claim("orders", "k1", at(1), timeout).unwrap(),
                Claim::Fresh(_)
            ),
            "the same key on the route's messages is another key"
        );
        assert_eq!(store.message("m1").unwrap().unwrap().route, "orders");
    });
}

#[test]
fn ob12_a_kept_answer_replaces_the_one_before_and_survives_a_restart() {
    each(|backend, dir| {
        {
            let store = backend(dir);
            assert_eq!(store.recall_answer("orders\0get\0A-1").unwrap(), None);
            store
                .remember_answer("orders\0get\0A-1", &json!({"n": 1}), at(1))
                .unwrap();
            store
                .remember_answer("orders\0get\0A-1", &json!({"n": 2}), at(2))
                .unwrap();
            store
                .remember_answer("orders\0get\0A-2", &json!({"n": 3}), at(3))
                .unwrap();
            block_on(store.durable()).unwrap();
        }
        let store = backend(dir);
        assert_eq!(
            store.recall_answer("orders\0get\0A-1").unwrap(),
            Some((json!({"n": 2}), at(2)))
        );
        assert_eq!(
            store.recall_answer("orders\0get\0A-2").unwrap(),
            Some((json!({"n": 3}), at(3)))
        );
    });
}

/// A commit that also appends its events to their entities' streams.
fn with_entities(mut commit: Commit, subject: &str, types: &[&str]) -> Commit {
    for ((event, _), event_type) in commit.events.iter_mut().zip(types) {
        event.event_type = (*event_type).to_owned();
        event.subject = subject.to_owned();
        event.data = format!(r#"{{"step": "{event_type}"}}"#);
    }
    commit.entities = commit
        .events
        .iter()
        .map(|(event, _)| EntityDraft {
            entity: EntityRef::of(&event.event_type, &event.subject).unwrap(),
            event: event.clone(),
            occurred_at: None,
        })
        .collect();
    commit
}

/// An event that is also in its entity's stream is delivered with its data, before and after
/// a restart, and after another sink took it (a backend may keep the data once).
#[test]
fn an_event_kept_in_its_entity_stream_is_delivered_with_its_data() {
    each(|backend, dir| {
        {
            let store = backend(dir);
            let token = fresh(store.claim("orders", "k1", t0(), TIMEOUT).unwrap());
            let mut c = commit(Some(token), "m1", "k1", &["e1", "e2"], 60_000);
            for (_, sinks) in &mut c.events {
                *sinks = vec!["a".into(), "b".into()];
            }
            store
                .commit(with_entities(
                    c,
                    "A-1",
                    &["order.created.v1", "order.paid.v1"],
                ))
                .unwrap();
            block_on(store.durable()).unwrap();
            let due = pending(&*store, "a");
            let data: Vec<&str> = due.iter().map(|d| d.event.data.as_str()).collect();
            assert_eq!(
                data,
                [
                    r#"{"step": "order.created.v1"}"#,
                    r#"{"step": "order.paid.v1"}"#
                ]
            );
            store
                .record_delivery(due[0].seq, "a", DeliveryOutcome::Delivered, vec![], at(1))
                .unwrap();
            block_on(store.durable()).unwrap();
        }
        let store = backend(dir);
        let due = pending(&*store, "b");
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].event.data, r#"{"step": "order.created.v1"}"#);
        let left = pending(&*store, "a");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].event.data, r#"{"step": "order.paid.v1"}"#);
        assert_eq!(
            store
                .entity_stream(&EntityRef::of("order.paid.v1", "A-1").unwrap())
                .unwrap()[1]
                .event
                .data,
            r#"{"step": "order.paid.v1"}"#
        );
    });
}

#[test]
fn issue_13_entity_streams_grow_with_their_commits_in_order_and_chained() {
    each(|backend, dir| {
        let order = EntityRef::of("order.created.v1", "A-1").unwrap();
        {
            let store = backend(dir);
            let first = fresh(store.claim("orders", "k1", t0(), TIMEOUT).unwrap());
            let c = commit(Some(first), "m1", "k1", &["e1", "e2"], 60_000);
            store
                .commit(with_entities(
                    c,
                    "A-1",
                    &["order.created.v1", "order.paid.v1"],
                ))
                .unwrap();
            // A lost claim appends nothing, as it commits nothing.
            let slow = fresh(
                store
                    .claim("orders", "k2", t0(), Duration::from_millis(10))
                    .unwrap(),
            );
            let fast = fresh(store.claim("orders", "k2", at(11), TIMEOUT).unwrap());
            let lost = with_entities(
                commit(Some(slow), "m2", "k2", &["lost"], 60_000),
                "A-1",
                &["order.cancelled.v1"],
            );
            assert!(store.commit(lost).is_err());
            let c = commit(Some(fast), "m3", "k2", &["e3", "e4"], 60_000);
            store
                .commit(with_entities(
                    c,
                    "A-1",
                    &["order.shipped.v1", "parcel.scanned.v1"],
                ))
                .unwrap();
            block_on(store.durable()).unwrap();
        }
        // After a restart, the streams are as committed.
        let store = backend(dir);
        let stream = store.entity_stream(&order).unwrap();
        let seen: Vec<(u64, &str, &str)> = stream
            .iter()
            .map(|e| (e.seq, e.event.id.as_str(), e.event.message_id.as_str()))
            .collect();
        assert_eq!(seen, [(1, "e1", "m1"), (2, "e2", "m1"), (3, "e3", "m3")]);
        let parcel = EntityRef::of("parcel.scanned.v1", "A-1").unwrap();
        assert_eq!(
            store.entity_stream(&parcel).unwrap().len(),
            1,
            "another entity type, another stream"
        );
        assert!(
            store
                .entity_stream(&EntityRef::of("order.x.v1", "B").unwrap())
                .unwrap()
                .is_empty()
        );
        let streams = store.entity_streams().unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[&order], stream);
        assert!(dragoman::entity::verify(&streams).is_empty());
    });
}

#[test]
fn issue_13_entity_streams_read_by_page_and_keep_snapshots_per_projector_version() {
    use dragoman::storage::{RefusedEvent, Snapshot, SnapshotBound};
    each(|backend, dir| {
        let order = EntityRef::of("order.created.v1", "A-1").unwrap();
        let store = backend(dir);
        let types = [
            "order.created.v1",
            "order.paid.v1",
            "order.shipped.v1",
            "order.cancelled.v1",
            "order.paid.v1",
        ];
        for (n, event_type) in types.iter().enumerate() {
            let key = format!("k{n}");
            let claim = fresh(store.claim("orders", &key, at(n as i64), TIMEOUT).unwrap());
            let c = commit(
                Some(claim),
                &format!("m{n}"),
                &key,
                &[&format!("e{n}")],
                60_000,
            );
            store
                .commit(with_entities(c, "A-1", &[event_type]))
                .unwrap();
        }
        // Pages: after a place, at most so many, in order.
        let page = |after, limit| -> Vec<u64> {
            store
                .entity_events(&order, after, limit)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(page(0, 2), [1, 2]);
        assert_eq!(page(2, 10), [3, 4, 5]);
        assert_eq!(page(5, 10), Vec::<u64>::new());
        assert!(
            store
                .entity_events(&EntityRef::of("order.x.v1", "B").unwrap(), 0, 10)
                .unwrap()
                .is_empty()
        );
        // Commit times never go back along the stream.
        let stream = store.entity_stream(&order).unwrap();
        assert!(
            stream
                .windows(2)
                .all(|w| w[0].committed_at <= w[1].committed_at)
        );

        let snapshot = |seq: u64, committed_ms: i64, occurred_ms: i64| Snapshot {
            seq,
            committed_at: at(committed_ms),
            occurred_until: at(occurred_ms),
            state: format!(r#"{{"seq": {seq}}}"#),
            refused: vec![RefusedEvent {
                seq: 1,
                code: "not-created".into(),
                message: "m".into(),
            }],
        };
        let v1 = "order-fold@1.0.0@aaaa";
        let v2 = "order-fold@1.1.0@bbbb";
        assert_eq!(
            store
                .entity_snapshot(&order, v1, SnapshotBound::Latest)
                .unwrap(),
            None
        );
        store
            .put_entity_snapshot(&order, v1, &snapshot(2, 100, 900))
            .unwrap();
        store
            .put_entity_snapshot(&order, v1, &snapshot(4, 300, 400))
            .unwrap();
        let found = |projector, bound| {
            store
                .entity_snapshot(&order, projector, bound)
                .unwrap()
                .map(|s| s.seq)
        };
        assert_eq!(found(v1, SnapshotBound::Latest), Some(4));
        assert_eq!(found(v1, SnapshotBound::CommittedBy(at(300))), Some(4));
        assert_eq!(found(v1, SnapshotBound::CommittedBy(at(299))), Some(2));
        assert_eq!(found(v1, SnapshotBound::CommittedBy(at(99))), None);
        // On event time, the later snapshot may fit where the earlier does not.
        assert_eq!(found(v1, SnapshotBound::OccurredBy(at(500))), Some(4));
        assert_eq!(found(v1, SnapshotBound::OccurredBy(at(399))), None);
        // Another projector version reads none of them.
        assert_eq!(found(v2, SnapshotBound::Latest), None);
        // A snapshot reads back whole, also after a restart.
        block_on(store.durable()).unwrap();
        drop(store);
        let store = backend(dir);
        assert_eq!(
            store
                .entity_snapshot(&order, v1, SnapshotBound::Latest)
                .unwrap(),
            Some(snapshot(4, 300, 400))
        );
    });
}

// ===== PostgreSQL: transactions that overlap, and stores that share a database =====
//
// sled writes one batch at a time under its writer lock, so its positions are taken in commit
// order and one process holds a data dir: these properties are about what only a shared
// database can do, and run on PostgreSQL.

/// A commit of message `id` under key `key` with one event `event` on partition `partition`.
fn commit_on(claim: ClaimToken, id: &str, event_id: &str, partition: &str) -> Commit {
    let mut c = commit(Some(claim.clone()), id, &claim.key, &[], 60_000);
    c.events = vec![(event(event_id, id, partition), vec!["hook".to_owned()])];
    c
}

#[test]
fn rp_commits_that_overlap_are_delivered_once_each_and_in_commit_order_per_key() {
    let database = tests::pg::TestDatabase::create();
    let store = Arc::new(Postgres::connect(database.url(), 8).unwrap());
    // A dead letter that the first commit resolves: a session of the test's holds its row,
    // so that commit stops after it took its position in the outbox, its transaction open.
    let token = fresh(store.claim("orders", "k0", t0(), TIMEOUT).unwrap());
    let mut first = commit(Some(token), "m0", "k0", &[], 60_000);
    first.dead_letter = Some(dead_letter("d1", "m0"));
    store.commit(first).unwrap();
    let holder = tests::pg::Session::open(database.url());
    holder.run("BEGIN; SELECT * FROM dragoman.dead_letters WHERE id = 'd1' FOR UPDATE");

    // Sessions' activity is read from a session of its own (a transaction reads it once).
    let observer = tests::pg::Session::open(database.url());
    let claim = |key: &str| fresh(store.claim("orders", key, t0(), TIMEOUT).unwrap());
    let mut a = commit_on(claim("ka"), "ma", "ea", "p");
    a.resolves = Some("d1".into());
    let b_same_key = commit_on(claim("kb"), "mb", "eb", "p");
    let c_other_key = commit_on(claim("kc"), "mc", "ec", "q");
    std::thread::scope(|scope| {
        let a_done = scope.spawn(|| store.commit(a));
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            observer.wait_for_waiters(1);
            // A later commit on the same partition key waits for the key, behind the first.
            let b_done = scope.spawn(|| store.commit(b_same_key));
            observer.wait_for_waiters(2);
            // A commit on another key goes through, with a later position than the open one.
            store.commit(c_other_key).unwrap();
            let seen = pending(&*store, "hook");
            assert_eq!(ids(&seen), ["ec"], "only what is committed is seen");
            b_done
        }));
        // The open transaction commits after the later one (and whatever happened above, so
        // that the threads end).
        holder.run("COMMIT");
        let b_done = checked.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        a_done.join().unwrap().unwrap();
        b_done.join().unwrap().unwrap();
    });
    let seen = pending(&*store, "hook");
    let mut by_key: Vec<(String, u64, String)> = seen
        .iter()
        .map(|d| (d.event.partition_key.clone(), d.seq, d.event.id.clone()))
        .collect();
    by_key.sort();
    let order: Vec<&str> = by_key.iter().map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(
        order,
        ["ea", "eb", "ec"],
        "commit order per key: {by_key:?}"
    );
    let c_seq = seen.iter().find(|d| d.event.id == "ec").unwrap().seq;
    let a_seq = seen.iter().find(|d| d.event.id == "ea").unwrap().seq;
    assert!(
        a_seq < c_seq,
        "the open commit had taken the earlier position"
    );
    // Each is delivered once: recorded, it is gone.
    for delivery in &seen {
        store
            .record_delivery(
                delivery.seq,
                "hook",
                DeliveryOutcome::Delivered,
                vec![],
                at(1),
            )
            .unwrap();
    }
    assert!(pending(&*store, "hook").is_empty());
    assert_eq!(store.depths().unwrap().outbox, 0);
}

#[test]
fn rp_two_stores_racing_on_one_key_get_one_fresh_and_a_dead_owner_s_claim_is_taken_at_once() {
    let database = tests::pg::TestDatabase::create();
    let one = Arc::new(Postgres::connect(database.url(), 4).unwrap());
    let two = Arc::new(Postgres::connect(database.url(), 4).unwrap());
    for n in 0..50 {
        let key = format!("k{n}");
        let barrier = Barrier::new(2);
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| {
                barrier.wait();
                one.claim("orders", &key, t0(), TIMEOUT).unwrap()
            });
            let b = scope.spawn(|| {
                barrier.wait();
                two.claim("orders", &key, t0(), TIMEOUT).unwrap()
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        let fresh = [&a, &b]
            .iter()
            .filter(|c| matches!(c, Claim::Fresh(_)))
            .count();
        let in_flight = [&a, &b]
            .iter()
            .filter(|c| matches!(c, Claim::InFlight))
            .count();
        assert_eq!((fresh, in_flight), (1, 1), "key {key}: {a:?} {b:?}");
    }
    // A live store's claim holds until its timeout; a store that is gone holds nothing.
    let held = fresh(one.claim("orders", "held", t0(), TIMEOUT).unwrap());
    assert_eq!(
        two.claim("orders", "held", at(1), TIMEOUT).unwrap(),
        Claim::InFlight
    );
    drop(one);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let taken = loop {
        match two.claim("orders", "held", at(2), TIMEOUT).unwrap() {
            Claim::Fresh(token) => break token,
            Claim::InFlight if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => panic!("the gone store's claim was not taken: {other:?}"),
        }
    };
    assert_ne!(taken.token, held.token);
    // The taker commits; the gone store's token could not have.
    two.commit(commit(Some(taken), "m1", "held", &["e1"], 60_000))
        .unwrap();
    assert!(matches!(
        two.claim("orders", "held", at(3), TIMEOUT).unwrap(),
        Claim::Done(_)
    ));
}

#[test]
fn rp_a_schema_newer_than_the_host_is_refused_and_migrations_apply_once() {
    let database = tests::pg::TestDatabase::create();
    // Four stores opening together on an empty database: the migrations apply once.
    std::thread::scope(|scope| {
        let opening: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| Postgres::connect(database.url(), 1).map(drop)))
            .collect();
        for store in opening {
            store.join().unwrap().unwrap();
        }
    });
    let session = tests::pg::Session::open(database.url());
    assert_eq!(
        session.count("SELECT count(*) FROM dragoman.schema_versions"),
        i64::from(Postgres::schema_version())
    );
    session.run("INSERT INTO dragoman.schema_versions (version, name) VALUES (999, 'future')");
    let err = Postgres::connect(database.url(), 1).expect_err("a newer schema");
    assert!(err.to_string().contains("version 999"), "{err}");
}

#[test]
fn rp_an_expired_lease_is_taken_over_and_the_old_holder_s_delivery_record_is_refused() {
    let database = tests::pg::TestDatabase::create();
    let one = Postgres::connect(database.url(), 4).unwrap();
    let two = Postgres::connect(database.url(), 4).unwrap();
    commit_one(&one, "m1", "k1", &["e1"]);
    // The first store to read takes the buckets it may: the key is its to deliver.
    let read = pending(&one, "hook");
    assert_eq!(ids(&read), ["e1"]);
    assert!(
        pending(&two, "hook").is_empty(),
        "the key is the first store's"
    );
    // The first store stops renewing (here: its lease of the key's bucket runs out).
    let session = tests::pg::Session::open(database.url());
    session.run(
        "UPDATE dragoman.leases SET expires_at = now() - interval '1 second'
         WHERE sink = 'hook' AND bucket = (hashtextextended('p', 0) & 63)::integer",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let taken = loop {
        let due = pending(&two, "hook");
        if !due.is_empty() {
            break due;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired lease was not taken"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ids(&taken), ["e1"]);
    assert_eq!(
        session.count(
            "SELECT term FROM dragoman.leases
             WHERE sink = 'hook' AND bucket = (hashtextextended('p', 0) & 63)::integer"
        ),
        2,
        "a new holder, a new term"
    );
    // The old holder delivered too, late: its record is refused; the new holder's is kept.
    let refused = one.record_delivery(
        read[0].seq,
        "hook",
        DeliveryOutcome::Delivered,
        vec![],
        at(1),
    );
    assert!(
        matches!(refused, Err(StorageError::LeaseLost { .. })),
        "{refused:?}"
    );
    two.record_delivery(
        taken[0].seq,
        "hook",
        DeliveryOutcome::Delivered,
        vec![],
        at(1),
    )
    .unwrap();
    assert!(pending(&two, "hook").is_empty());
    assert_eq!(two.depths().unwrap().outbox, 0);
}

/// An anchor for `stream` at `event`, as the archive leaves one.
fn anchor_at(event: &dragoman::storage::AuditEvent) -> Anchor {
    Anchor {
        version: event.version,
        hash: event.hash.clone(),
        at: event.at,
        segment: "audit-test".into(),
        digest: "ab".repeat(32),
        state: json!({"message_id": event.message_id, "status": "committed"}),
    }
}

fn cut(event: &dragoman::storage::AuditEvent, anchor: Option<Anchor>) -> StreamCut {
    StreamCut {
        stream: event.message_id.clone(),
        version: event.version,
        anchor,
    }
}

#[test]
fn ar1_a_stream_cut_at_an_anchor_goes_on_from_it_and_still_verifies() {
    each(|backend, dir| {
        let store = backend(dir);
        let mut opening = commit(None, "m1", "k1", &["e1"], 60_000);
        opening.new_message = true;
        store.commit(opening).unwrap();
        store.append(vec![draft("m1", "delivered")]).unwrap();
        let whole = store.history("m1").unwrap();
        assert_eq!(whole.len(), 3);

        // Cut inside the commit's record: its second event stays.
        let first = anchor_at(&whole[0]);
        store
            .archive_audit(&[cut(&whole[0], Some(first.clone()))])
            .unwrap();
        assert_eq!(store.history("m1").unwrap(), whole[1..].to_vec());
        assert_eq!(store.audit_anchor("m1").unwrap(), Some(first.clone()));
        let mut walked = Vec::new();
        store
            .walk_audit(&mut |stream, item| {
                walked.push((stream.to_owned(), item));
                Ok(())
            })
            .unwrap();
        assert_eq!(walked.len(), 3, "the anchor, then two events: {walked:?}");
        assert_eq!(walked[0].1, AuditItem::Anchor(first));
        assert_eq!(walked[1].1, AuditItem::Event(whole[1].clone()));
        let (streams, findings) = dragoman::audit::verify_store(&*store).unwrap();
        assert_eq!((streams, findings.len()), (1, 0), "{findings:?}");

        // Every event archived: the next one is sealed after the anchor, also after a
        // restart (the head is read from the store, not from a write in progress).
        let all = anchor_at(&whole[2]);
        store
            .archive_audit(&[cut(&whole[2], Some(all.clone()))])
            .unwrap();
        assert!(store.history("m1").unwrap().is_empty());
        drop(store);
        let store = backend(dir);
        store.append(vec![draft("m1", "replayed")]).unwrap();
        let after = store.history("m1").unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!((after[0].version, &after[0].prev), (4, &whole[2].hash));
        // A duplicate delivery noted in the same commit as another message's: the same.
        let mut other = commit(None, "m2", "k2", &["e2"], 60_000);
        other.audit.push(draft("m1", "deduplicated"));
        store.commit(other).unwrap();
        assert_eq!(store.history("m1").unwrap()[1].version, 5);

        // A cut behind the anchor changes nothing.
        store
            .archive_audit(&[cut(&whole[0], Some(anchor_at(&whole[0])))])
            .unwrap();
        assert_eq!(store.audit_anchor("m1").unwrap(), Some(all));
        assert_eq!(store.history("m1").unwrap().len(), 2);
        let (_, findings) = dragoman::audit::verify_store(&*store).unwrap();
        assert!(findings.is_empty(), "{findings:?}");

        // Closed: every event and the anchor go.
        let hot = store.history("m1").unwrap();
        store.archive_audit(&[cut(&hot[1], None)]).unwrap();
        assert!(store.history("m1").unwrap().is_empty());
        assert_eq!(store.audit_anchor("m1").unwrap(), None);
        assert!(!store.audit_streams().unwrap().contains_key("m1"));
    });
}

#[test]
fn ar2_old_message_bodies_go_page_by_page_and_a_pass_ends_where_told() {
    each(|backend, dir| {
        let store = backend(dir);
        for n in 1..=5 {
            store
                .commit(commit(
                    None,
                    &format!("m{n}"),
                    &format!("k{n}"),
                    &[],
                    60_000,
                ))
                .unwrap();
        }
        let asked = std::sync::Mutex::new(Vec::new());
        // Keep m2, end the pass at m5: two pages of two.
        let forget = |id: &str, route: &str, received: Timestamp| {
            assert_eq!((route, received), ("orders", t0()));
            asked.lock().unwrap().push(id.to_owned());
            (id != "m5").then_some(id != "m2")
        };
        let page = store.forget_messages(None, 2, &forget).unwrap();
        assert_eq!(
            (page.removed, page.last.as_deref(), page.ended),
            (1, Some("m2"), false)
        );
        let page = store.forget_messages(Some("m2"), 2, &forget).unwrap();
        assert_eq!(
            (page.removed, page.last.as_deref(), page.ended),
            (2, Some("m4"), false)
        );
        let page = store.forget_messages(Some("m4"), 2, &forget).unwrap();
        assert_eq!((page.removed, page.ended), (0, true));
        assert_eq!(*asked.lock().unwrap(), ["m1", "m2", "m3", "m4", "m5"]);
        let kept: Vec<bool> = (1..=5)
            .map(|n| store.message(&format!("m{n}")).unwrap().is_some())
            .collect();
        assert_eq!(kept, [false, true, false, false, true]);
    });
}
