//! Retention and archival on a store of 100,000 messages: a sled store written as ingest
//! writes it (each message's record and body, and its audit stream: received, translated,
//! committed, then published a minute later, but for one message in ten, whose sink has not
//! taken it), spread over the last ten days. With the hot retention shortened to five days,
//! `dragoman archive` moves the older half's history into a segment: the settled messages'
//! streams whole (closed: no anchor left), the others up to an anchor. The store's live bytes
//! fall by that history, `audit verify` passes on the hot store alone and with the archive,
//! and a message's state at an instant in the archived past is refused without the archive
//! and answered with it.

use std::path::Path;
use std::process::{Command, Output};

use dragoman::storage::{AuditDraft, Commit, Completed, Db, MessageRecord, Storage};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

const MESSAGES: u64 = 100_000;
const DAY: i64 = 86_400;

fn dragoman(args: &[&str]) -> (Output, String) {
    let output = Command::new(tests::dragoman_bin())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// The id of message `n`, in time order as the host's are.
fn id(n: u64) -> String {
    format!("m-{n:08}")
}

/// When message `n` arrived: the first ten days ago, the last a few seconds ago.
fn received(start: Timestamp, n: u64) -> Timestamp {
    let step = (10 * DAY * 1_000_000 - 60_000_000) / MESSAGES as i64;
    start + SignedDuration::from_micros(n as i64 * step)
}

/// Writes the store: each message committed as ingest commits it, its publication appended
/// a minute later (batched across messages, as the relay's records are).
fn write_store(dir: &Path, start: Timestamp) {
    let store = Db::open(dir).unwrap();
    let order = tests::seed_order();
    let mut published = Vec::new();
    for n in 0..MESSAGES {
        let (id, at) = (id(n), received(start, n));
        let settled = dragoman::outcome::Settled::Accepted(dragoman::outcome::Accepted {
            message_id: id.clone(),
            idempotency_key: format!("k{n}"),
            events: vec![format!("{id}-e")],
        });
        store
            .commit(Commit {
                claim: None,
                completed: Completed {
                    fingerprint: "f".into(),
                    settled,
                    expires_at: at + SignedDuration::from_hours(24),
                },
                message: MessageRecord {
                    id: id.clone(),
                    route: "orders".into(),
                    key: format!("k{n}"),
                    content_type: Some("application/json".into()),
                    headers: vec![],
                    body: order.as_bytes().to_vec(),
                    received_at: at,
                    cut: None,
                },
                events: vec![],
                dead_letter: None,
                resolves: None,
                audit: vec![
                    AuditDraft::new(
                        &id,
                        at,
                        "received",
                        json!({"route": "orders", "idempotency_key": format!("k{n}")}),
                    ),
                    AuditDraft::new(
                        &id,
                        at + SignedDuration::from_secs(1),
                        "translated",
                        json!({"plugin": "seed-orders@1.0.0", "sha256": "ab".repeat(32)}),
                    ),
                    AuditDraft::new(
                        &id,
                        at + SignedDuration::from_secs(2),
                        "committed",
                        json!({"events": [format!("{id}-e")], "sinks": ["hook"]}),
                    ),
                ],
                new_message: true,
                entities: vec![],
            })
            .unwrap();
        if n % 10 == 0 {
            continue;
        }
        published.push(AuditDraft::new(
            &id,
            at + SignedDuration::from_secs(60),
            "publish_succeeded",
            json!({"sink": "hook", "event": format!("{id}-e")}),
        ));
        if published.len() == 1000 {
            store.append(std::mem::take(&mut published)).unwrap();
        }
    }
    store.append(published).unwrap();
    store.flush().unwrap();
}

/// The bytes of every file under `dir`.
fn size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn a_store_of_100000_messages_sheds_its_old_history_into_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (data, archive) = (dir.path().join("data"), dir.path().join("archive"));
    let start = Timestamp::now() - SignedDuration::from_secs(10 * DAY);
    write_store(&data, start);
    let before = size(&data);
    let live_before = Db::open(&data).unwrap().live_bytes().unwrap();
    let (data_s, archive_s) = (data.to_str().unwrap(), archive.to_str().unwrap());

    // Five days of hot history: the first half of the messages' streams move.
    let five_days = (5 * DAY).to_string();
    let (out, stdout) = dragoman(&[
        "archive",
        "--data-dir",
        data_s,
        "--archive",
        archive_s,
        "--older-than-secs",
        &five_days,
    ]);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streams: u64 = stdout
        .split(" events of ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        (MESSAGES / 2 - 100..=MESSAGES / 2 + 100).contains(&streams),
        "about half the streams move: {stdout}"
    );
    // A stream whose publication came less than a minute before the cut keeps that one hot;
    // one in ten was never published.
    let events: u64 = stdout
        .split("): ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let expected = streams * 4 - streams / 10;
    assert!(
        (expected - 20..=expected + 20).contains(&events),
        "{stdout}"
    );
    let segments: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(segments.len(), 2, "a segment and its digest: {segments:?}");

    let store = Db::open(&data).unwrap();
    // Message 0 waits for its sink: its stream keeps an anchor. Message 1 was published: its
    // stream is closed, in the archive alone. The newest message's stream is all hot.
    let (open, closed, new) = (id(0), id(1), id(MESSAGES - 1));
    assert!(store.history(&open).unwrap().is_empty());
    assert_eq!(store.audit_anchor(&open).unwrap().unwrap().version, 3);
    assert!(store.history(&closed).unwrap().is_empty());
    assert_eq!(store.audit_anchor(&closed).unwrap(), None);
    assert_eq!(store.history(&new).unwrap().len(), 4);
    // Bodies stay (their retention is another setting): every message still reads.
    assert!(store.message(&closed).unwrap().is_some());
    let live_after = store.live_bytes().unwrap();
    drop(store);
    let after = size(&data);
    let segment = segments.iter().find(|n| !n.ends_with(".sha256")).unwrap();
    let archived = std::fs::metadata(archive.join(segment)).unwrap().len();
    eprintln!(
        "store: {live_before} live bytes before, {live_after} after ({before} and {after} on \
         disk); the segment {archived} bytes"
    );
    // What the store holds falls by most of the segment's bytes (the same record encoding;
    // one stream in ten keeps an anchor); sled keeps its files' size and reuses what was
    // freed.
    assert!(
        live_before.saturating_sub(live_after) >= archived * 3 / 4,
        "the store sheds the history it archived: {live_before} -> {live_after}, segment \
         {archived}"
    );
    // A compaction gives the freed space back: the files fall by at least what was archived.
    let (out, stdout) = dragoman(&["compact", "--data-dir", data_s]);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compacted = size(&data);
    eprintln!(
        "compact: {} ({compacted} bytes under the data dir)",
        stdout.trim_end()
    );
    assert!(
        data.join("store").is_dir() && !data.join("db").exists(),
        "the compacted store replaces the old files"
    );
    assert!(
        compacted + archived <= before,
        "the store's files fall by the archived history: {before} -> {compacted}, segment \
         {archived}"
    );
    let store = Db::open(&data).unwrap();
    assert_eq!(
        store.live_bytes().unwrap(),
        live_after,
        "every record is copied"
    );
    drop(store);

    // The hot store alone: its own streams (the closed ones are the archive's).
    let (out, stdout) = dragoman(&["audit", "verify", "--data-dir", data_s]);
    assert!(out.status.success(), "{stdout}");
    // About one archived stream in ten keeps an anchor (and those whose publication came
    // after the cut); the rest are closed.
    let hot = MESSAGES - (streams - streams / 10);
    let verified: u64 = stdout
        .split(" streams verified, 0 problems")
        .next()
        .and_then(|line| line.rsplit('\n').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!((hot - 20..=hot + 20).contains(&verified), "{stdout}");
    // With the archive: every stream, each segment's digest, and each anchor where its
    // archived events end.
    let (out, stdout) = dragoman(&[
        "audit",
        "verify",
        "--data-dir",
        data_s,
        "--archive",
        archive_s,
    ]);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{MESSAGES} streams verified, 0 problems")),
        "{stdout}"
    );

    // A message's state a moment after it arrived (translated, not yet committed): only the
    // archive holds it, for the open stream as for the closed one.
    for (n, status_now) in [(0, "committed"), (1, "published")] {
        let instant = (received(start, n) + SignedDuration::from_millis(1500)).to_string();
        let id = id(n);
        let show = |archive: Option<&str>, at: bool| {
            let mut args = vec!["audit", "show", &id, "--data-dir", data_s];
            if at {
                args.extend(["--at", &instant]);
            }
            args.extend(archive.map(|a| ["--archive", a]).into_iter().flatten());
            dragoman(&args)
        };
        let (out, stdout) = show(None, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stderr.contains("--archive DIR"), "{stderr}");
        let (out, stdout) = show(Some(archive_s), true);
        assert!(out.status.success(), "{stdout}");
        let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(answer["state"]["status"], "received", "{answer}");
        assert_eq!(answer["state"]["version"], 2);
        assert_eq!(answer["state"]["plugin"], "seed-orders@1.0.0");
        let (out, stdout) = show(Some(archive_s), false);
        assert!(out.status.success(), "{stdout}");
        let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(answer["state"]["status"], status_now, "{answer}");
    }
    // The open stream's present needs no archive: folded on from its anchor.
    let (out, stdout) = dragoman(&["audit", "show", &id(0), "--data-dir", data_s]);
    assert!(out.status.success(), "{stdout}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["state"]["status"], "committed");
    assert_eq!(answer["anchor"]["version"], 3);
}

/// The value of the metric line that starts with `name ` in `/metrics`.
fn metric(http: &tests::net::Http, server: &tests::net::Server, name: &str) -> f64 {
    let text = http
        .send("GET", &format!("{}/metrics", server.url()), &[], b"")
        .unwrap()
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} "))?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// A host on PostgreSQL whose route keeps a second of history and of bodies: once its orders
/// are delivered, its retention task archives their streams (closed: published) and removes
/// their bodies; the archive and the store verify together, and a message's past is read
/// with the archive.
#[test]
fn a_host_archives_settled_history_and_forgets_old_bodies_as_it_runs() {
    use std::time::Duration;
    use tests::net::{self, Http, Server, Webhook, wait_until};

    let database = tests::pg::TestDatabase::create();
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = tests::pg::with_store_url(
        &net::config(
            &webhook.sink_table("hook"),
            "\"hook\"",
            &format!(
                "idempotency_retention_secs = 1\n\
                 [routes.orders.retention]\nhistory_secs = 1\nbodies_secs = 1\n\n\
                 [archive]\ndir = \"{}\"\ninterval_secs = 1\n",
                archive.display()
            ),
        ),
        database.url(),
    );
    let mut server = Server::start(dir.path(), &config);
    let http = Http::new();
    let mut ids = Vec::new();
    for n in 0..3 {
        let reply = server.send_order(&http, "orders", &format!("R-{n}"));
        ids.push(reply.json()["message_id"].as_str().unwrap().to_owned());
    }
    let received_at = jiff::Timestamp::now();
    wait_until(Duration::from_secs(30), "three deliveries", || {
        webhook.received().len() >= 3
    });
    wait_until(
        Duration::from_secs(30),
        "the three streams archived and their bodies gone",
        || {
            metric(&http, &server, "dragoman_forgotten_bodies_total") >= 3.0
                && ids.iter().all(|id| {
                    http.send(
                        "GET",
                        &format!("{}/v1/messages/{id}", server.url()),
                        &[],
                        b"",
                    )
                    .unwrap()
                    .status
                        == 404
                })
        },
    );
    assert!(metric(&http, &server, "dragoman_archived_events_total") >= 12.0);
    assert_eq!(
        metric(&http, &server, "dragoman_retention_failed_total"),
        0.0
    );
    server.stop();

    let session = tests::pg::Session::open(database.url());
    let left = session.query("SELECT count(*) FROM dragoman.messages");
    assert_eq!(left[0].get::<_, i64>(0), 0, "every body went");
    let left = session.query("SELECT count(*) FROM dragoman.audit");
    assert_eq!(left[0].get::<_, i64>(0), 0, "every stream is closed");

    let archive_s = archive.to_str().unwrap();
    let (out, stdout) = dragoman(&[
        "audit",
        "verify",
        "--database-url",
        database.url(),
        "--archive",
        archive_s,
    ]);
    assert!(out.status.success(), "{stdout}");
    // The three messages' streams, in the archive alone, and the three orders' entity
    // streams, which stay hot.
    assert!(
        stdout.contains("6 streams verified, 0 problems"),
        "{stdout}"
    );
    // Its state as it was delivered, from the archive; refused without it.
    let at = (received_at + jiff::SignedDuration::from_secs(600)).to_string();
    let show = |archive: &[&str]| {
        let mut args = vec![
            "audit",
            "show",
            &ids[0],
            "--database-url",
            database.url(),
            "--at",
            &at,
        ];
        args.extend(archive);
        dragoman(&args)
    };
    let (out, _) = show(&[]);
    assert_eq!(out.status.code(), Some(1));
    let (out, stdout) = show(&["--archive", archive_s]);
    assert!(out.status.success(), "{stdout}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["state"]["status"], "published", "{answer}");
}
