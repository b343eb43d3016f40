//! Bytes per message: a host on sled ingests `--messages` seed orders (100,000 by default,
//! each with an order id of its own) on a route with one webhook sink (the relay does not
//! run, so every event stays in the outbox as at its commit); then, with the host gone, the
//! store's size on disk is set against the logical bytes it holds: the bodies, the events'
//! data and the audit facts (kind and data as JSON). Last, `dragoman audit verify
//! --data-dir` walks the store, and its peak resident memory (`VmHWM`, read every 10 ms
//! until it exits) and time are printed. Then `dragoman archive --older-than-secs 0` moves
//! every audit event to an archive, and `audit verify --archive` walks both, printed the
//! same way.
//!
//! Run: `cargo bench -p dragoman --bench bytes` (`-- --messages N --clients N`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dragoman::storage::{AuditItem, Db, Storage as _};
use dragoman::{Host, Incoming, Ingested};

mod support;
use support::{arg, root};

#[path = "support/seed.rs"]
mod seed;

#[path = "../../tests/wasm_build.rs"]
#[allow(dead_code, reason = "this benchmark builds only the Rust plugin")]
mod wasm_build;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let messages = arg("--messages", 100_000);
    let clients = arg("--clients", 64);
    let seed::Seed { translator, order } = seed::seed(&root());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = seed::orders_config(
        &translator,
        dir.path(),
        "[sinks.hook]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/events\"\n",
        "sinks = [\"hook\"]\n",
    );
    let runtime = seed::runtime();
    let started = Instant::now();
    let bodies = runtime.block_on(ingest(config, &order, messages, clients));
    let took = started.elapsed();
    println!(
        "{messages} seed orders ingested in {:.1} s ({:.0} msg/s)",
        took.as_secs_f64(),
        messages as f64 / took.as_secs_f64()
    );
    let data = dir.path().join("data");
    // The host is gone; `Db::open` waits out the moment sled holds its lock after that.
    let store = Db::open(&data).expect("the store opens");
    let (audit_bytes, audit_facts) = audit_bytes(&store);
    let events = event_bytes(&store);
    drop(store);
    let logical = bodies + events + audit_bytes;
    let (length, allocated) = size_on_disk(&data);
    let per = |bytes: u64| bytes as f64 / messages as f64;
    println!(
        "logical: {logical} bytes ({:.0} per message): bodies {bodies}, event data {events}, \
         {audit_facts} audit facts {audit_bytes}",
        per(logical)
    );
    println!(
        "on disk: {length} bytes in files ({:.0} per message, {:.2} x logical), {allocated} \
         allocated ({:.2} x logical)",
        per(length),
        length as f64 / logical as f64,
        allocated as f64 / logical as f64
    );
    let (peak, verify_took, printed) = verify(&data, &[]);
    println!(
        "audit verify: {} in {:.1} s, peak resident memory {:.0} MiB",
        printed.trim(),
        verify_took.as_secs_f64(),
        peak as f64 / f64::from(1 << 20)
    );

    // Every audit event archived (the relay did not run: each stream keeps an anchor), then
    // the store and the archive verified together.
    let archive = dir.path().join("archive");
    let live = |data: &Path| {
        Db::open(data)
            .and_then(|db| db.live_bytes())
            .expect("the store reads")
    };
    let live_before = live(&data);
    let archived = std::process::Command::new(env!("CARGO_BIN_EXE_dragoman"))
        .args(["archive", "--older-than-secs", "0", "--data-dir"])
        .arg(&data)
        .arg("--archive")
        .arg(&archive)
        .output()
        .expect("dragoman archive runs");
    assert!(archived.status.success(), "dragoman archive failed");
    println!(
        "archive: {}; the store's records {live_before} bytes before, {} after",
        String::from_utf8_lossy(&archived.stdout).trim(),
        live(&data)
    );
    let (peak, verify_took, printed) = verify(&data, &["--archive".as_ref(), archive.as_os_str()]);
    println!(
        "audit verify --archive: {} in {:.1} s, peak resident memory {:.0} MiB",
        printed.trim(),
        verify_took.as_secs_f64(),
        peak as f64 / f64::from(1 << 20)
    );
}

/// Ingests `messages` orders from `clients` tasks; the bytes of the bodies sent.
async fn ingest(config: dragoman::config::Config, order: &str, messages: u64, clients: u64) -> u64 {
    let host = Arc::new(
        Host::builder()
            .config(config)
            .build()
            .expect("the host starts"),
    );
    let next = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (host, next, bytes, order) =
            (host.clone(), next.clone(), bytes.clone(), order.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    return;
                }
                let body = order.replace("SEED-2026-000417", &format!("BYTES-{n:09}"));
                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                let incoming = Incoming {
                    content_type: Some("application/json".into()),
                    body: body.into_bytes(),
                    ..Incoming::default()
                };
                match host.ingest("orders", incoming).await {
                    Ingested::Accepted(_) => {}
                    other => panic!("order {n}: {other:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a client task");
    }
    bytes.load(Ordering::Relaxed)
}

/// The audit facts' bytes (kind and data as JSON), and how many there are.
fn audit_bytes(store: &Db) -> (u64, u64) {
    let (mut bytes, mut facts) = (0u64, 0u64);
    store
        .walk_audit(&mut |_, item| {
            if let AuditItem::Event(event) = item {
                bytes += (event.kind.len() + event.data.to_string().len()) as u64;
                facts += 1;
            }
            Ok(())
        })
        .expect("the audit trail is read");
    (bytes, facts)
}

/// The events' data, once each (every event is in its entity's stream).
fn event_bytes(store: &Db) -> u64 {
    let mut bytes = 0u64;
    store
        .walk_entities(&mut |_, event| {
            bytes += event.event.data.len() as u64;
            Ok(())
        })
        .expect("the entity streams are read");
    bytes
}

/// The files' lengths under `dir`, and the blocks allocated to them.
fn size_on_disk(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let (mut length, mut allocated) = (0, 0);
    for entry in std::fs::read_dir(dir).expect("the data dir is read") {
        let entry = entry.expect("an entry");
        let meta = entry.metadata().expect("its metadata");
        if meta.is_dir() {
            let (l, a) = size_on_disk(&entry.path());
            length += l;
            allocated += a;
        } else {
            length += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    (length, allocated)
}

/// Runs `dragoman audit verify --data-dir` on `data`: its peak resident memory in bytes, its
/// time and what it printed.
fn verify(data: &Path, more: &[&std::ffi::OsStr]) -> (u64, Duration, String) {
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dragoman"))
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .args(more)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dragoman starts");
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().expect("the child is waited for").is_none() {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib * 1024);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let output = child.wait_with_output().expect("its output");
    assert!(output.status.success(), "audit verify failed");
    (
        peak,
        took,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
