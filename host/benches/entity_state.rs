//! The state of an entity at an instant, from its stream of 10,000 events folded by the order
//! fold (a real projector component), with and without snapshots, in the same run.
//!
//! One order's stream is written to a new sled store: its creation, then carrier scans
//! (`order.shipped.v1`, 50 tracking numbers in turn, so the state stays the size of a real
//! order's while every event is applied). Then the state at instants spread evenly over the
//! stream's commit times, and at the present, is read through `Projections::state_at`:
//!
//! 1. **without snapshots**: every read folds the stream from its first event;
//! 2. **with snapshots** (every 100 events): one read first writes the snapshots, then each
//!    read loads the latest snapshot that fits its instant and applies at most 100 events.
//!
//! Each reports p50, p99 and the longest read; the summary gives the ratio of the two p50s.
//!
//! Run: `cargo bench -p dragoman --bench entity_state` (`-- --events N --reads N --every N`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dragoman::outcome::{Accepted, Settled};
use dragoman::plugin::Runtime;
use dragoman::projection::{Basis, Projections};
use dragoman::storage::{
    Commit, Completed, Db, EntityDraft, EntityRef, MessageRecord, OutboxEvent, Storage,
};
use jiff::{SignedDuration, Timestamp};

mod support;
use support::{arg, root};

#[path = "../../tests/wasm_build.rs"]
#[allow(dead_code, reason = "this benchmark builds only the Rust projector")]
mod wasm_build;

const ORDER: &str = "A-1001";

/// The stream: a creation, then scans, one commit each, a millisecond apart.
fn write_stream(store: &Db, events: u64, t0: Timestamp) {
    let entity = EntityRef::of("order.created.v1", ORDER).expect("a dotted type");
    for n in 0..events {
        let (event_type, data) = if n == 0 {
            (
                "order.created.v1",
                r#"{"id":"A-1001","status":"open","items":[{"product_sku":"SKU-RED-42","quantity":2,"unit_price":{"amount_minor":1250,"currency":"EUR"}}]}"#.to_owned(),
            )
        } else {
            (
                "order.shipped.v1",
                format!(
                    r#"{{"order_id":"A-1001","carrier":"swiftship","tracking_number":"SWS-{}"}}"#,
                    n % 50
                ),
            )
        };
        let time = t0 + SignedDuration::from_millis(i64::try_from(n).expect("small"));
        let event = OutboxEvent {
            id: format!("e-{n}"),
            message_id: format!("m-{n}"),
            route: "orders".into(),
            event_type: event_type.into(),
            subject: ORDER.into(),
            partition_key: ORDER.into(),
            data,
            time,
            traceparent: String::new(),
            tracestate: None,
            producer: None,
        };
        let key = format!("k-{n}");
        let commit = Commit {
            claim: None,
            completed: Completed {
                fingerprint: "f".into(),
                settled: Settled::Accepted(Accepted {
                    message_id: event.message_id.clone(),
                    idempotency_key: key.clone(),
                    events: vec![event.id.clone()],
                }),
                expires_at: time + SignedDuration::from_hours(24),
            },
            message: MessageRecord {
                id: event.message_id.clone(),
                route: "orders".into(),
                key,
                content_type: None,
                headers: vec![],
                body: b"{}".to_vec(),
                received_at: time,
                cut: None,
            },
            events: vec![],
            dead_letter: None,
            resolves: None,
            audit: vec![],
            new_message: false,
            entities: vec![EntityDraft {
                entity: entity.clone(),
                event,
                occurred_at: None,
            }],
        };
        store.commit(commit).expect("the commit is written");
    }
    store.flush().expect("the store flushes");
}

struct Figures {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Reads the state at `reads` instants spread over the stream (the last one: now).
fn measure(projections: &Projections, reads: u64, events: u64, t0: Timestamp) -> Figures {
    let entity = EntityRef::of("order.created.v1", ORDER).expect("a dotted type");
    let mut latencies = Vec::new();
    for r in 0..reads {
        let at = (r + 1 < reads).then(|| {
            let offset = (events - 1) * (r + 1) / reads;
            t0 + SignedDuration::from_millis(i64::try_from(offset).expect("small"))
        });
        let started = Instant::now();
        let state = projections
            .state_at(&entity, at, Basis::Committed)
            .expect("the state is folded");
        latencies.push(started.elapsed());
        assert!(state.through > 0 && state.refused.is_empty());
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures {
        p50: at(0.50),
        p99: at(0.99),
        max: *latencies.last().expect("at least one read"),
    }
}

fn report(name: &str, f: &Figures) {
    println!(
        "{name:<18} p50 {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms",
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.max.as_secs_f64() * 1e3,
    );
}

fn main() {
    let events = arg("--events", 10_000);
    let reads = arg("--reads", 200);
    let every = arg("--every", 100);
    let root = root();
    let target = wasm_build::target_dir(&root);
    wasm_build::build(&root.join("plugins/order-fold/Cargo.toml"), &target)
        .expect("the order fold builds");
    let wasm = std::fs::read(wasm_build::artifact(&target, "order-fold")).expect("built");
    let runtime = Runtime::builder().build().expect("the runtime builds");
    let projector = runtime
        .load_projector(&wasm, "order-fold")
        .expect("the order fold loads");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(Db::open(dir.path()).expect("the store opens"));
    let t0 = Timestamp::now();
    write_stream(&store, events, t0);
    let storage: Arc<dyn Storage> = store;
    println!(
        "entity state: one order of {events} events, {reads} reads at instants spread over it"
    );

    // Without snapshots first: no snapshot exists yet, and this one writes none.
    let without = Projections::new(storage.clone(), vec![(projector.clone(), u64::MAX)]);
    let bare = measure(&without, (reads / 10).max(3), events, t0);
    report("without snapshots", &bare);

    let with = Projections::new(storage, vec![(projector, every)]);
    let started = Instant::now();
    measure(&with, 1, events, t0);
    println!(
        "(the first read with snapshots folded the stream and wrote them in {:.1} ms)",
        started.elapsed().as_secs_f64() * 1e3
    );
    let snapped = measure(&with, reads, events, t0);
    report(&format!("snapshots every {every}"), &snapped);
    println!(
        "summary: with/without p50 = {:.4} ({:.1}x faster); target with snapshots: p50 under 5 ms",
        snapped.p50.as_secs_f64() / bare.p50.as_secs_f64(),
        bare.p50.as_secs_f64() / snapped.p50.as_secs_f64(),
    );
}
