//! Signed checkpoints: a host on PostgreSQL publishes every chain's head, signed, to a
//! webhook; `dragoman audit verify --checkpoints` passes on the untouched store, fails on an
//! audit stream rewritten in the database with every hash recomputed (which the walk alone
//! passes), and reports a checkpoint whose signature does not verify.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use dragoman::storage::AuditEvent;
use sha2::{Digest as _, Sha256};
use tests::net::{self, Http, Server, Webhook, wait_until};
use tests::pg::{Session, TestDatabase};

const ORIGIN: &str = "dragoman.test/orders";

/// `dragoman checkpoint keygen`: the signer key and the verifier key.
fn keygen() -> (String, String) {
    let output = Command::new(tests::dragoman_bin())
        .args(["checkpoint", "keygen", ORIGIN])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines().map(str::to_owned);
    let (signer, verifier) = (lines.next().unwrap(), lines.next().unwrap());
    assert!(
        signer.starts_with(&format!("PRIVATE+KEY+{ORIGIN}+")),
        "{signer}"
    );
    assert!(verifier.starts_with(&format!("{ORIGIN}+")), "{verifier}");
    (signer, verifier)
}

/// `dragoman audit verify --database-url URL --checkpoints FILE --checkpoint-key KEY`.
fn verify(url: &str, file: &Path, key: &str) -> (Output, String) {
    let output = Command::new(tests::dragoman_bin())
        .args(["audit", "verify", "--database-url", url, "--checkpoints"])
        .arg(file)
        .args(["--checkpoint-key", key])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// The checkpoint notes the webhook received, in order.
fn notes(webhook: &Webhook) -> Vec<String> {
    webhook
        .received()
        .into_iter()
        .filter(|r| r.event_type == "dragoman.checkpoint.v1")
        .map(|r| {
            assert_eq!(net::header_text(&r.headers, "ce-source"), "/dragoman");
            assert_eq!(r.subject, ORIGIN);
            r.data["note"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// sha256 over length-prefixed parts, as the audit chain hashes an event.
fn chain_hash(event: &AuditEvent) -> String {
    let version = event.version.to_be_bytes();
    let at = event.at.to_string();
    let data = serde_json::to_string(&event.data).unwrap();
    let parts: [&[u8]; 6] = [
        event.prev.as_bytes(),
        event.message_id.as_bytes(),
        &version,
        event.kind.as_bytes(),
        at.as_bytes(),
        data.as_bytes(),
    ];
    let mut digest = Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites `stream`'s first event in the database and recomputes every hash after it, as
/// someone who can write the store and knows its format would: the chain stays consistent.
fn rewrite_consistently(session: &Session, stream: &str) -> usize {
    let rows = session.query(&format!(
        "SELECT version, event FROM dragoman.audit WHERE stream = '{stream}' ORDER BY version"
    ));
    let mut prev = "0".repeat(64);
    for (n, row) in rows.iter().enumerate() {
        let mut event: AuditEvent = tests::pg::stored_record(&row.get::<_, Vec<u8>>(1));
        if n == 0 {
            event.data["rewritten"] = serde_json::Value::Bool(true);
        }
        event.prev = prev;
        event.hash = chain_hash(&event);
        prev = event.hash.clone();
        // Encoded as the host encodes a record (format 2: MessagePack with field names).
        let mut bytes = vec![2u8];
        bytes.extend(rmp_serde::to_vec_named(&event).unwrap());
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        session.run(&format!(
            "UPDATE dragoman.audit SET event = decode('{hex}', 'hex') \
             WHERE stream = '{stream}' AND version = {}",
            row.get::<_, i64>(0)
        ));
    }
    rows.len()
}

#[test]
fn a_chain_rewritten_with_every_hash_recomputed_fails_against_a_signed_checkpoint() {
    let (signer, verifier) = keygen();
    let database = TestDatabase::create();
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "{}\n{}",
        webhook.sink_table("hook"),
        webhook.sink_table("anchor")
    );
    let config = tests::pg::with_store_url(
        &format!(
            "{}\n[checkpoints]\nkey = {{ env = \"CHECKPOINT_KEY\" }}\nsink = \"anchor\"\n\
             interval_secs = 1\n",
            net::config(&sinks, "\"hook\"", "")
        ),
        database.url(),
    );
    let mut server = Server::start_with_env(dir.path(), &config, &[("CHECKPOINT_KEY", &signer)]);
    let http = Http::new();
    let ingest = format!("{}/v1/routes/orders/messages", server.url());
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = tests::seed_order().replace("SEED-2026-000417", &format!("C-{n}"));
        let reply = http
            .send(
                "POST",
                &ingest,
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.text());
        ids.push(reply.json()["message_id"].as_str().unwrap().to_owned());
    }
    // A checkpoint that names the head of every message's stream.
    wait_until(
        Duration::from_secs(30),
        "a checkpoint naming the three messages",
        || {
            notes(&webhook)
                .iter()
                .any(|note| ids.iter().all(|id| note.contains(&format!("\nhead {id} "))))
        },
    );
    let metrics = http
        .send("GET", &format!("{}/metrics", server.url()), &[], b"")
        .unwrap()
        .text();
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(value("dragoman_checkpoints_published_total ") >= 1.0);
    assert!(value("dragoman_checkpoint_time_seconds ") > 1.7e9);
    assert_eq!(value("dragoman_checkpoints_failed_total "), 0.0);
    server.stop();
    let notes = notes(&webhook);
    assert!(
        notes.iter().all(|n| n.starts_with(&format!("{ORIGIN}\n"))),
        "{notes:?}"
    );
    let file = dir.path().join("checkpoints.txt");
    std::fs::write(&file, notes.concat()).unwrap();

    // Untouched: every checkpoint is trusted and the store agrees with them.
    let (output, stdout) = verify(database.url(), &file, &verifier);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{} checkpoints trusted, 0 refused", notes.len())),
        "{stdout}"
    );
    assert!(stdout.contains(" 0 problems"), "{stdout}");

    // The first message's stream rewritten with every hash recomputed: the walk alone finds
    // nothing, the checkpoints find it.
    let session = Session::open(database.url());
    let rewritten = rewrite_consistently(&session, &ids[0]);
    assert!(rewritten >= 2, "{rewritten} events");
    let walk = net::verify_database(database.url());
    assert!(walk.contains(" 0 problems"), "{walk}");
    let (output, stdout) = verify(database.url(), &file, &verifier);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("message {} event ", ids[0]))
            && stdout.contains("the chain was rewritten"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("message {} ", ids[1])),
        "only the rewritten stream: {stdout}"
    );

    // A checkpoint whose text was changed no longer verifies, and is reported.
    let forged = notes[notes.len() - 1].replacen("\nhead ", "\nhead x", 1);
    std::fs::write(&file, &forged).unwrap();
    let (output, stdout) = verify(database.url(), &file, &verifier);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "checkpoint 1: the signature of {ORIGIN} does not verify"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 checkpoints trusted, 1 refused"),
        "{stdout}"
    );

    // Another key of the same name signed nothing here.
    let (_, other) = keygen();
    std::fs::write(&file, notes.concat()).unwrap();
    let (output, stdout) = verify(database.url(), &file, &other);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("checkpoint 1: no signature by the key {ORIGIN}")),
        "{stdout}"
    );
}
