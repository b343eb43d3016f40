//! The `embed` example (`examples/embed`): an axum order service with Dragoman inside. Both
//! doors are driven over loopback: the service's own `POST /orders`, which calls
//! `Host::ingest` and answers from the typed outcome, and Dragoman's API mounted under
//! `/integrations/`; the events of both reach the webhook, and SIGTERM stops the service and
//! the relay cleanly.

use std::time::Duration;

use tests::net::{self, Http, Server, Webhook, wait_until};

fn order(id: &str) -> String {
    format!(
        r#"{{"ord_id": "{id}", "ord_status": "O", "line_items": [{{"sku": "S", "qty": 2, "unit_prc": "1.25"}}]}}"#
    )
}

#[test]
fn the_embedding_service_serves_both_doors_and_shuts_down_cleanly() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let embed = (
        tests::embed_bin().to_owned(),
        vec![
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--route".to_owned(),
            "orders".to_owned(),
        ],
    );
    let mut server = Server::start_program(embed, dir.path(), &net::config(&sinks, "\"hook\"", ""));
    let http = Http::new();
    let json = [("content-type", "application/json")];

    // The service's own door: its handler ingests and matches on the outcome.
    let own = format!("{}/orders", server.url());
    let first = http
        .send("POST", &own, &json, order("EMB-1").as_bytes())
        .unwrap();
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.json()["order"], "accepted");
    let again = http
        .send("POST", &own, &json, order("EMB-1").as_bytes())
        .unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["order"], "already accepted");
    assert_eq!(again.json()["message_id"], first.json()["message_id"]);
    let refused = http
        .send(
            "POST",
            &own,
            &json,
            br#"{"ord_id": "EMB-X", "ord_status": "?", "line_items": []}"#,
        )
        .unwrap();
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["order"], "refused");
    assert!(refused.json()["dead_letter"].is_string());

    // Dragoman's door, mounted under /integrations/.
    let mounted = format!("{}/integrations/v1/routes/orders/messages", server.url());
    let second = http
        .send("POST", &mounted, &json, order("EMB-2").as_bytes())
        .unwrap();
    assert_eq!(
        second.status,
        202,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    let health = http
        .send(
            "GET",
            &format!("{}/integrations/healthz", server.url()),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(health.status, 200);
    let dlq = http
        .send(
            "GET",
            &format!("{}/integrations/v1/dlq", server.url()),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(dlq.json()["dead_letters"].as_array().map(Vec::len), Some(1));
    let own_health = http
        .send("GET", &format!("{}/health", server.url()), &[], b"")
        .unwrap();
    assert_eq!(own_health.status, 200);

    // The relay runs in the service's runtime: both orders' events reach the webhook.
    let expected = [
        first.json()["events"][0].as_str().unwrap().to_owned(),
        second.json()["events"][0].as_str().unwrap().to_owned(),
    ];
    wait_until(
        Duration::from_secs(20),
        "both events at the webhook",
        || {
            let ids: Vec<String> = webhook.received().into_iter().map(|r| r.id).collect();
            expected.iter().all(|id| ids.contains(id))
        },
    );
    let subjects: Vec<String> = webhook.received().into_iter().map(|r| r.subject).collect();
    assert!(subjects.contains(&"EMB-1".to_owned()) && subjects.contains(&"EMB-2".to_owned()));

    // One graceful shutdown for the service and the host.
    let status = server.stop();
    assert!(status.success(), "the service exited with {status}");
}
