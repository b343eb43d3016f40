//! Entity streams on `dragoman serve`: every committed event is appended to the stream of the
//! entity it is about, with where it came from; a redelivery appends nothing; a route can keep
//! none; the streams verify with the audit trail, online and offline.

use tests::net::{self, Http, Server, Webhook};

#[test]
fn issue_13_committed_events_join_their_entity_stream_with_their_provenance() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let config = net::config(&webhook.sink_table("hook"), "\"hook\"", "")
        + "\n[routes.quiet]\nplugin = \""
        + tests::wasm::ACME_ERP_ORDERS
        + "\"\nentity_streams = false\n";
    let mut server = Server::start(dir.path(), &config);
    let http = Http::new();
    let post = |route: &str, body: &str, key: &str| {
        http.send(
            "POST",
            &format!("{}/v1/routes/{route}/messages", server.url()),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            body.as_bytes(),
        )
        .unwrap()
    };
    let first = post("orders", tests::seed_order(), "k-1");
    assert_eq!(
        first.status,
        202,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let message_id = first.json()["message_id"].as_str().unwrap().to_owned();
    let event_id = first.json()["events"][0].as_str().unwrap().to_owned();
    // The same delivery again, and another order: neither adds to the first stream.
    assert_eq!(post("orders", tests::seed_order(), "k-1").status, 200);
    let other = tests::seed_order().replacen("SEED-2026-000417", "OTHER-1", 1);
    assert_eq!(post("orders", &other, "k-2").status, 202);
    // A route that keeps no streams.
    let quiet = tests::seed_order().replacen("SEED-2026-000417", "QUIET-1", 1);
    assert_eq!(post("quiet", &quiet, "k-3").status, 202);

    let get = |path: &str| {
        http.send("GET", &format!("{}{path}", server.url()), &[], b"")
            .unwrap()
    };
    let stream = get("/v1/entities/order/SEED-2026-000417/events");
    assert_eq!(
        stream.status,
        200,
        "{}",
        String::from_utf8_lossy(&stream.body)
    );
    let stream = stream.json();
    let events = stream["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{stream:#}");
    let event = &events[0];
    assert_eq!(event["seq"], 1);
    assert_eq!(event["id"], event_id.as_str());
    assert_eq!(event["type"], "order.created.v1");
    assert_eq!(event["data"]["id"], "SEED-2026-000417");
    assert_eq!(event["provenance"]["message_id"], message_id.as_str());
    assert_eq!(event["provenance"]["route"], "orders");
    assert_eq!(event["provenance"]["plugin"], "acme-erp-orders@1.0.0");
    assert_eq!(
        event["provenance"]["plugin_sha256"].as_str().unwrap().len(),
        64
    );
    assert_eq!(get("/v1/entities/order/OTHER-1/events").status, 200);
    assert_eq!(get("/v1/entities/order/QUIET-1/events").status, 404);
    assert_eq!(get("/v1/entities/order/NEVER/events").status, 404);

    // The topology, drawn: the vendor, both routes' translator, the entity type its events
    // were about (the quiet route's none), the sink.
    let drawn = std::process::Command::new(tests::dragoman_bin())
        .args(["topology", "--format", "mermaid", "--server", &server.url()])
        .output()
        .unwrap();
    let mermaid = String::from_utf8_lossy(&drawn.stdout);
    assert!(drawn.status.success(), "{mermaid}");
    for line in [
        "flowchart LR",
        "  route_orders[\"orders: acme-erp-orders@1.0.0\"]",
        "  vendor_acme_2d_erp_2f_v1 -->|\"POST /v1/routes/orders/messages\"| route_orders",
        "  route_orders --> entity_order",
        "  entity_order --> sink_hook",
        "  sink_hook[[\"hook (http)\"]]",
    ] {
        assert!(
            mermaid.lines().any(|l| l == line),
            "{line:?} not in\n{mermaid}"
        );
    }
    assert!(!mermaid.contains("route_quiet -->"), "{mermaid}");
    let dot = get("/v1/topology?format=dot");
    assert_eq!(dot.status, 200);
    assert!(String::from_utf8_lossy(&dot.body).starts_with("digraph dragoman {"));
    assert_eq!(get("/v1/topology?format=pie").status, 400);
    assert_eq!(
        get("/v1/topology").json()["routes"]["orders"]["sinks"][0],
        "hook"
    );

    // Online and offline, the audit trail and the entity streams verify together.
    let verified = get("/v1/audit/verify").json();
    assert_eq!(
        verified["findings"].as_array().unwrap().len(),
        0,
        "{verified:#}"
    );
    server.stop();
    let stdout = net::verify_offline(&server.data_dir);
    // Three messages' audit streams (the redelivery is noted on the first's) and two entity
    // streams: SEED-2026-000417 and OTHER-1.
    assert!(
        stdout.ends_with("5 streams verified, 0 problems\n"),
        "{stdout}"
    );
}
