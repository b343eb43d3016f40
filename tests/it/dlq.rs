//! The dead letter channel: a rejected message lands there, is replayed once the cause is
//! fixed, and the audit trail tells the whole story.

use std::process::Command;
use std::time::Duration;

use tests::net::{self, Http, Server, Webhook, wait_until};

fn dragoman(server: &Server, args: &[&str]) -> (i32, serde_json::Value) {
    let output = Command::new(tests::dragoman_bin())
        .args(args)
        .arg("--server")
        .arg(server.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), json)
}

#[test]
fn a_rejected_message_is_dead_lettered_then_replayed_once_fixed() {
    rejected_then_replayed(None);
}

/// The same `dragoman dlq` story on a host whose store is PostgreSQL.
#[test]
fn on_postgresql_a_rejected_message_is_dead_lettered_then_replayed_once_fixed() {
    let database = tests::pg::TestDatabase::create();
    rejected_then_replayed(Some(&database));
}

fn rejected_then_replayed(database: Option<&tests::pg::TestDatabase>) {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let config = |extra: &str| {
        let config = net::config(&sinks, "\"hook\"", extra);
        match database {
            Some(database) => tests::pg::with_store(&config, database),
            None => config,
        }
    };
    let broken = config("[routes.orders.plugin_config]\ncurrency = \"euro\"\n");
    let mut server = Server::start(dir.path(), &broken);
    let http = Http::new();
    let body = tests::seed_order().replacen("SEED-2026-000417", "DLQ-1", 1);
    let url = |server: &Server| format!("{}/v1/routes/orders/messages", server.url());

    // The route's config names a currency that does not exist: the plugin rejects.
    let rejected = http
        .send(
            "POST",
            &url(&server),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(rejected.status, 422);
    let problem = rejected.json();
    assert_eq!(problem["code"], "invalid-currency");
    let entry = problem["dead_letter"].as_str().unwrap().to_owned();
    let message_id = problem["message_id"].as_str().unwrap().to_owned();

    let (code, listed) = dragoman(&server, &["dlq", "list"]);
    assert_eq!(code, 0);
    assert_eq!(listed["dead_letters"][0]["id"], entry.as_str());
    let (code, shown) = dragoman(&server, &["dlq", "show", &entry]);
    assert_eq!(code, 0);
    assert_eq!(shown["dead_letter"]["plugin"], "acme-erp-orders@1.0.0");
    assert_eq!(shown["dead_letter"]["attempts"], 1);
    assert!(
        shown["message"]["body"].as_str().unwrap().contains("DLQ-1"),
        "the original message is kept"
    );

    // Replaying before the fix fails again and keeps the entry, with the new attempt.
    let (code, again) = dragoman(&server, &["dlq", "replay", &entry]);
    assert_eq!(code, 1);
    assert_eq!(again["code"], "invalid-currency");
    let (_, shown) = dragoman(&server, &["dlq", "show", &entry]);
    assert_eq!(shown["dead_letter"]["attempts"], 2);

    // Fix the cause: restart with the right currency (a clean stop first).
    let status = server.stop();
    assert!(status.success(), "SIGTERM stops the host cleanly: {status}");
    server.set_config(&config(
        "[routes.orders.plugin_config]\ncurrency = \"EUR\"\n",
    ));
    server.restart();
    let (code, replayed) = dragoman(&server, &["dlq", "replay", &entry]);
    assert_eq!(code, 0, "{replayed}");
    let event = replayed["events"][0].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(30),
        "the replayed event at the sink",
        || webhook.counts().contains_key(&event),
    );
    assert_eq!(
        webhook.received()[0].data["items"][0]["unit_price"]["currency"],
        "EUR"
    );

    // Replaying twice creates nothing: the entry is gone.
    let (code, _) = dragoman(&server, &["dlq", "replay", &entry]);
    assert_eq!(code, 1);
    // The vendor redelivering the original now gets the accepted outcome.
    let redelivered = http
        .send(
            "POST",
            &url(&server),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(redelivered.status, 200);
    assert_eq!(redelivered.json()["events"][0], event.as_str());
    assert_eq!(webhook.counts().len(), 1, "no second event");

    // The audit trail tells the story.
    wait_until(
        Duration::from_secs(10),
        "the delivery in the audit trail",
        || {
            let state = http
                .send(
                    "GET",
                    &format!("{}/v1/messages/{message_id}", server.url()),
                    &[],
                    b"",
                )
                .unwrap();
            state.json()["status"] == "published"
        },
    );
    let history = http
        .send(
            "GET",
            &format!("{}/v1/messages/{message_id}/history", server.url()),
            &[],
            b"",
        )
        .unwrap()
        .json();
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "received",
            "rejected",
            "dead_lettered",
            "replayed",
            "replayed",
            "translated",
            "committed",
            "publish_succeeded",
            "deduplicated"
        ],
    );

    // A second rejected message, discarded: the discard is audited.
    server.stop();
    server.set_config(&broken);
    server.restart();
    let other = tests::seed_order().replacen("SEED-2026-000417", "DLQ-2", 1);
    let rejected = http
        .send(
            "POST",
            &url(&server),
            &[("content-type", "application/json")],
            other.as_bytes(),
        )
        .unwrap();
    let entry = rejected.json()["dead_letter"].as_str().unwrap().to_owned();
    let other_id = rejected.json()["message_id"].as_str().unwrap().to_owned();
    let discarded = Command::new(tests::dragoman_bin())
        .args(["dlq", "discard", &entry, "--server", &server.url()])
        .status()
        .unwrap();
    assert!(discarded.success());
    let state = http
        .send(
            "GET",
            &format!("{}/v1/messages/{other_id}", server.url()),
            &[],
            b"",
        )
        .unwrap()
        .json();
    assert_eq!(state["status"], "discarded");
    let (_, listed) = dragoman(&server, &["dlq", "list"]);
    assert_eq!(listed["dead_letters"].as_array().unwrap().len(), 0);

    // Offline, the chains verify.
    server.stop();
    let stdout = match database {
        None => net::verify_offline(&server.data_dir),
        Some(database) => net::verify_database(database.url()),
    };
    assert!(
        // Two messages' audit streams, and the entity stream of the replayed order.
        stdout.contains("3 streams verified, 0 problems"),
        "{stdout}"
    );
}

/// 50 concurrent replays of one translation dead letter run the plugin once: one commits
/// the events, the others are told a replay is in progress (409) or, once it resolved the
/// entry, that it is gone (404); the message's history has one `replayed` event.
#[test]
fn issue_8_concurrent_replays_of_one_entry_run_the_plugin_once() {
    const REPLAYS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let currency = |c: &str| {
        net::config(
            "",
            "",
            &format!("[routes.orders.plugin_config]\ncurrency = \"{c}\"\n"),
        )
    };
    let mut server = Server::start(dir.path(), &currency("euro"));
    let http = Http::new();
    let body = tests::seed_order().replacen("SEED-2026-000417", "DLQ-RACE", 1);
    let rejected = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(rejected.status, 422);
    let entry = rejected.json()["dead_letter"].as_str().unwrap().to_owned();
    let message_id = rejected.json()["message_id"].as_str().unwrap().to_owned();
    assert!(server.stop().success());
    server.set_config(&currency("EUR"));
    server.restart();

    let url = format!("{}/v1/dlq/{entry}/replay", server.url());
    let health = format!("{}/healthz", server.url());
    let client = http.client();
    let statuses: Vec<u16> = http.runtime().block_on(async {
        // Open the connections first, so the replays arrive together rather than one
        // connection's handshake after another.
        let mut warm = tokio::task::JoinSet::new();
        for _ in 0..REPLAYS {
            let (client, health) = (client.clone(), health.clone());
            warm.spawn(async move { net::send(&client, "GET", &health, &[], Vec::new()).await });
        }
        while let Some(done) = warm.join_next().await {
            assert_eq!(done.unwrap().unwrap().status, 200);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..REPLAYS {
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(async move {
                net::send(&client, "POST", &url, &[], Vec::new())
                    .await
                    .unwrap()
                    .status
            });
        }
        let mut statuses = Vec::new();
        while let Some(status) = tasks.join_next().await {
            statuses.push(status.unwrap());
        }
        statuses
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 404, 409].contains(s)),
        "{statuses:?}"
    );
    let history = http
        .send(
            "GET",
            &format!("{}/v1/messages/{message_id}/history", server.url()),
            &[],
            b"",
        )
        .unwrap()
        .json();
    let replays = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "replayed")
        .count();
    assert_eq!(replays, 1, "{history}");
}

/// Anyone who can reach a route can make it refuse: 200 refused messages of 760 KB leave the
/// route's dead letters within its byte bound, the oldest removed first, each removal counted
/// in `/metrics` and audited on its message, its body gone with it.
#[test]
fn issue_25_refused_messages_leave_the_dead_letters_within_their_byte_bound() {
    const SENT: usize = 200;
    const MAX_BYTES: u64 = 20 << 20;
    let dir = tempfile::tempdir().unwrap();
    let config = net::config(
        "",
        "",
        &format!("[routes.orders.dead_letters]\nmax_bytes = {MAX_BYTES}\n"),
    );
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    let pad = "x".repeat(760 << 10);
    let mut refused = Vec::new();
    for n in 0..SENT {
        let body = format!(
            r#"{{"ord_id": "BIG-{n}", "ord_status": "Q", "line_items": [], "pad": "{pad}"}}"#
        );
        let reply = http
            .send(
                "POST",
                &format!("{}/v1/routes/orders/messages", server.url()),
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(
            reply.status,
            422,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        refused.push(reply.json()["message_id"].as_str().unwrap().to_owned());
    }
    let get = |path: &str| {
        http.send("GET", &format!("{}{path}", server.url()), &[], b"")
            .unwrap()
    };
    let kept = get("/v1/dlq?limit=1000").json()["dead_letters"]
        .as_array()
        .unwrap()
        .clone();
    let bytes: u64 = kept.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    assert!(bytes <= MAX_BYTES, "{bytes} bytes kept");
    let per_body = (760 << 10) as u64;
    assert_eq!(kept.len() as u64, MAX_BYTES / per_body, "as many as fit");
    // The newest are kept.
    let newest: Vec<&str> = kept
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(newest, refused[SENT - kept.len()..]);
    let metrics = String::from_utf8(get("/metrics").body).unwrap();
    let evicted: usize = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("dragoman_dead_letters_evicted_total{route=\"orders\"}")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert_eq!(evicted, SENT - kept.len());
    // The oldest: gone with its body, and its history says why.
    let oldest = &refused[0];
    let history = get(&format!("/v1/messages/{oldest}/history")).json();
    let last = history["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "dead_letter_evicted", "{last:#}");
    assert_eq!(last["data"]["over"], "max_bytes");
    let verify = get("/v1/audit/verify").json();
    assert_eq!(verify["findings"], serde_json::json!([]), "{verify:#}");
}

#[test]
fn issue_25_a_route_that_caps_dead_letter_bodies_keeps_their_first_bytes_and_full_hash() {
    const SENT: usize = 20;
    const CAP: usize = 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = net::config(
        "",
        "",
        &format!("[routes.orders.dead_letters]\nmax_body_bytes = {CAP}\n"),
    );
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    let data = server.data_dir.clone();
    let before = net::dir_bytes(&data);
    let pad = "x".repeat(760 << 10);
    let post = |body: &str| {
        http.send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap()
    };
    let bodies: Vec<String> = (0..SENT)
        .map(|n| {
            format!(
                r#"{{"ord_id": "CUT-{n}", "ord_status": "Q", "line_items": [], "pad": "{pad}"}}"#
            )
        })
        .collect();
    let mut entries = Vec::new();
    for body in &bodies {
        let reply = post(body);
        assert_eq!(reply.status, 422, "{}", reply.text());
        entries.push(reply.json()["dead_letter"].as_str().unwrap().to_owned());
    }
    // 15 MiB refused; what stays on disk is a small multiple of what the cap keeps.
    let grown = net::dir_bytes(&data).saturating_sub(before);
    assert!(grown < 4 << 20, "the data directory grew by {grown} bytes");
    let get = |path: &str| {
        http.send("GET", &format!("{}{path}", server.url()), &[], b"")
            .unwrap()
    };
    let shown = get(&format!("/v1/dlq/{}", entries[0])).json();
    let message = &shown["message"];
    assert_eq!(message["body"].as_str().unwrap(), &bodies[0][..CAP]);
    assert_eq!(
        (&message["body_cut"]["size"], &message["body_cut"]["sha256"]),
        (
            &serde_json::json!(bodies[0].len()),
            &serde_json::json!(tests::swap::sha256_of(bodies[0].as_bytes()))
        ),
        "{shown:#}"
    );
    assert_eq!(shown["dead_letter"]["bytes"], CAP, "{shown:#}");
    // A byte-identical resend is still the stored answer: the key is the whole body's.
    let again = post(&bodies[0]);
    assert_eq!(again.status, 422);
    assert_eq!(
        again.headers.get("idempotent-replayed").unwrap(),
        "true",
        "{}",
        again.text()
    );
    // A cut body cannot be translated again.
    let replay = http
        .send(
            "POST",
            &format!("{}/v1/dlq/{}/replay", server.url(), entries[0]),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(replay.status, 409, "{}", replay.text());
    assert_eq!(
        replay.json()["type"],
        "urn:dragoman:problem:body-cut",
        "{}",
        replay.text()
    );
    assert_eq!(
        get(&format!("/v1/dlq/{}", entries[0])).status,
        200,
        "the entry stays"
    );
}
