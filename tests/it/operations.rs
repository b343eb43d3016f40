//! Operating a host: the admin token, health, readiness, topology, metrics, state at an
//! instant.

use std::time::Duration;

use tests::net::{self, Http, Server, Webhook, wait_until};

#[test]
fn admin_calls_need_the_token_and_report_the_host() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let config = net::config(&sinks, "\"hook\"", "")
        .replace("data_dir =", "admin_token = \"s3cret\"\ndata_dir =");
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    let base = server.url();
    let auth = [("authorization", "Bearer s3cret")];

    // Health and readiness are open; ingest needs no token.
    assert_eq!(
        http.send("GET", &format!("{base}/healthz"), &[], b"")
            .unwrap()
            .status,
        200
    );
    wait_until(Duration::from_secs(10), "readiness", || {
        http.send("GET", &format!("{base}/readyz"), &[], b"")
            .unwrap()
            .status
            == 200
    });
    let body = tests::seed_order();
    let accepted = http
        .send(
            "POST",
            &format!("{base}/v1/routes/orders/messages"),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(accepted.status, 202);
    let message = accepted.json()["message_id"].as_str().unwrap().to_owned();

    for path in [
        "/v1/routes",
        "/v1/dlq",
        "/metrics",
        "/v1/audit/verify",
        &format!("/v1/messages/{message}"),
    ] {
        let denied = http
            .send("GET", &format!("{base}{path}"), &[], b"")
            .unwrap();
        assert_eq!(denied.status, 401, "{path} without the token");
        let wrong = http
            .send(
                "GET",
                &format!("{base}{path}"),
                &[("authorization", "Bearer nope")],
                b"",
            )
            .unwrap();
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        assert_eq!(
            http.send("GET", &format!("{base}{path}"), &auth, b"")
                .unwrap()
                .status,
            200,
            "{path} with the token"
        );
    }

    let topology = http
        .send("GET", &format!("{base}/v1/routes"), &auth, b"")
        .unwrap()
        .json();
    assert_eq!(
        topology["routes"]["orders"]["plugin"]["name"],
        "acme-erp-orders"
    );
    assert_eq!(topology["routes"]["orders"]["sinks"][0], "hook");
    assert_eq!(topology["sinks"]["hook"]["type"], "http");

    wait_until(Duration::from_secs(30), "the event at the sink", || {
        webhook.counts().len() == 1
    });
    let metrics = String::from_utf8(
        http.send("GET", &format!("{base}/metrics"), &auth, b"")
            .unwrap()
            .body,
    )
    .unwrap();
    for family in [
        "dragoman_messages_received_total{route=\"orders\"} 1",
        "dragoman_messages_translated_total{route=\"orders\"} 1",
        "dragoman_events_published_total{sink=\"hook\"} 1",
        "dragoman_outbox_depth",
        "dragoman_outbox_oldest_age_seconds",
        "dragoman_dlq_size 0",
        "dragoman_stage_latency_seconds_bucket{le=\"0.005\",stage=\"translate\"}",
    ] {
        assert!(metrics.contains(family), "{family} in\n{metrics}");
    }

    // The state now, and at the instant of the first audit event.
    wait_until(
        Duration::from_secs(10),
        "the publication in the audit trail",
        || {
            http.send("GET", &format!("{base}/v1/messages/{message}"), &auth, b"")
                .unwrap()
                .json()["status"]
                == "published"
        },
    );
    let history = http
        .send(
            "GET",
            &format!("{base}/v1/messages/{message}/history"),
            &auth,
            b"",
        )
        .unwrap()
        .json();
    let first = history["events"][0]["at"].as_str().unwrap().to_owned();
    let then = http
        .send(
            "GET",
            &format!("{base}/v1/messages/{message}?at={first}"),
            &auth,
            b"",
        )
        .unwrap()
        .json();
    assert_eq!(
        then["version"], 3,
        "received, translated and committed share the commit instant"
    );
    assert_eq!(then["status"], "committed");
    let bad = http
        .send(
            "GET",
            &format!("{base}/v1/messages/{message}?at=yesterday"),
            &auth,
            b"",
        )
        .unwrap();
    assert_eq!(bad.status, 400);
    let missing = http
        .send(
            "GET",
            &format!("{base}/v1/messages/no-such-message"),
            &auth,
            b"",
        )
        .unwrap();
    assert_eq!(missing.status, 404);
}

#[test]
fn a_bad_config_is_refused_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\nbogus = 1\n[routes.r]\nplugin = \"p.wasm\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(tests::dragoman_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bogus") && stderr.contains("line 3"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Auth cannot be off by accident: an empty token is refused like an empty secret from the
/// environment, and a non-loopback `listen` with no token refuses to start unless the config
/// says `allow_unauthenticated_admin = true`, which starts with a warning.
#[test]
fn issue_25_an_empty_token_and_an_open_non_loopback_listen_are_refused_at_start() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let serve = |name: &str, config: &str| {
        let path = dir.path().join(name);
        let data = dir.path().join(format!("{name}-data"));
        let config = config
            .replace("{data_dir}", &data.display().to_string())
            .replace("{cache_dir}", &tests::shared_cache().display().to_string());
        std::fs::write(&path, config).unwrap();
        let mut child = std::process::Command::new(tests::dragoman_bin())
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A host that starts instead of refusing is stopped, and the test says so.
        let refused = (0..1500).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            child.try_wait().unwrap().is_some()
        });
        if !refused {
            child.kill().unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert!(refused, "{name}: the host started: {output:?}");
        output
    };
    let base = net::config(&webhook.sink_table("hook"), "\"hook\"", "");
    let empty = serve(
        "empty.toml",
        &base.replace("data_dir =", "admin_token = \"\"\ndata_dir ="),
    );
    assert_eq!(empty.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(stderr.contains("admin_token is empty"), "{stderr}");

    // Refused before anything binds: the address is never opened.
    let open = serve(
        "open.toml",
        &base.replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\""),
    );
    assert_eq!(open.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert!(
        stderr.contains("not a loopback address")
            && stderr.contains("admin_token")
            && stderr.contains("allow_unauthenticated_admin"),
        "{stderr}"
    );

    // Allowed on purpose (on loopback here, to open nothing): it starts and warns.
    let allowed = base.replace(
        "data_dir =",
        "allow_unauthenticated_admin = true\ndata_dir =",
    );
    let allowed_dir = dir.path().join("allowed");
    std::fs::create_dir(&allowed_dir).unwrap();
    let server = Server::start(&allowed_dir, &allowed);
    wait_until(Duration::from_secs(10), "the warning in the log", || {
        server
            .log()
            .iter()
            .any(|line| line.contains("allow_unauthenticated_admin = true"))
    });
}

/// `--log-format json` (here by `DRAGOMAN_LOG_FORMAT`): every line of a run with an ingest, a
/// dead letter and a delivery is one JSON object; the lines of a message carry its id, route
/// and plugin version; no line holds the body or a secret of the config.
#[test]
fn json_logs_parse_line_by_line_and_hold_no_body_or_secret() {
    const TOKEN: &str = "adm-7f3a9c-token";
    const BEARER: &str = "hook-51e2b8-bearer";
    const MARK: &str = "BODY-MARK-93d1";
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "{}bearer_token = \"{BEARER}\"\n",
        webhook.sink_table("hook")
    );
    let config = net::config(&sinks, "\"hook\"", "").replace(
        "data_dir =",
        &format!("admin_token = \"{TOKEN}\"\ndata_dir ="),
    );
    let mut server = Server::start_with_env(
        dir.path(),
        &config,
        &[
            ("DRAGOMAN_LOG", "info,dragoman=debug"),
            ("DRAGOMAN_LOG_FORMAT", "json"),
        ],
    );
    let http = Http::new();
    let url = format!("{}/v1/routes/orders/messages", server.url());
    let json = [("content-type", "application/json")];
    let accepted =
        tests::seed_order().replacen("\"ord_id\": \"", &format!("\"ord_id\": \"{MARK}-"), 1);
    assert!(accepted.contains(MARK));
    let reply = http.send("POST", &url, &json, accepted.as_bytes()).unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text());
    let message = reply.json()["message_id"].as_str().unwrap().to_owned();
    let refused = format!(r#"{{"ord_id": "{MARK}-2", "ord_status": "Z", "line_items": []}}"#);
    let reply = http.send("POST", &url, &json, refused.as_bytes()).unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text());
    wait_until(Duration::from_secs(20), "the delivery", || {
        !webhook.received().is_empty()
    });
    // The delivery's log line is written after the webhook answered.
    wait_until(Duration::from_secs(20), "the delivery's log line", || {
        server
            .log()
            .iter()
            .any(|line| line.contains("\"delivered\""))
    });
    assert!(server.stop().success());

    let lines = server.log();
    let mut seen = std::collections::BTreeSet::new();
    for line in &lines {
        let object: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(object.is_object(), "{line}");
        for level_and_time in ["level", "timestamp"] {
            assert!(object.get(level_and_time).is_some(), "{line}");
        }
        for secret in [TOKEN, BEARER, MARK] {
            assert!(!line.contains(secret), "`{secret}` in a log line: {line}");
        }
        let text = object["message"].as_str().unwrap_or_default().to_owned();
        // The span of the message: its id, route and plugin version.
        let span = object["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["name"] == "door"));
        if text == "translated and committed" || text == "message dead-lettered" {
            let span = span.unwrap_or_else(|| panic!("no message span: {line}"));
            assert_eq!(span["route"], "orders", "{line}");
            assert!(
                span["plugin"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("acme-erp-orders@"),
                "{line}"
            );
            if text == "translated and committed" {
                assert_eq!(span["message_id"], message.as_str(), "{line}");
            } else {
                assert_eq!(object["code"], "unknown-status", "{line}");
            }
        }
        if text == "delivered" {
            assert_eq!(object["message_id"], message.as_str(), "{line}");
            assert_eq!(object["sink"], "hook", "{line}");
        }
        seen.insert(text);
    }
    for expected in [
        "translated and committed",
        "message dead-lettered",
        "delivered",
        "shut down cleanly",
    ] {
        assert!(
            seen.contains(expected),
            "no `{expected}` line in {lines:#?}"
        );
    }
}

/// A message with the caller's `traceparent` makes one trace at an OTLP/HTTP receiver: the
/// door span continues the caller's, claim, translate (with the plugin's version), commit and
/// flush are its children, and the webhook delivery's send span is a child of the door linked
/// to it; the webhook gets that trace too. A caller's unsampled trace exports nothing, and
/// without an endpoint no exporter runs.
#[test]
fn a_traced_message_makes_one_trace_from_the_door_to_the_webhook() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER: &str = "00f067aa0ba902b7";
    const UNSAMPLED: &str = "9a1c0e5b2d7f4e3a8b6c5d4e3f2a1b0c";
    let collector = tests::otlp::Collector::start();
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let config = net::config(&webhook.sink_table("hook"), "\"hook\"", "");
    let endpoint = collector.endpoint();
    let mut server = Server::start_with_env(
        dir.path(),
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let http = Http::new();
    let url = format!("{}/v1/routes/orders/messages", server.url());
    let send = |trace: &str, flags: &str, order: &str| {
        let traceparent = format!("00-{trace}-{CALLER}-{flags}");
        let body = tests::seed_order().replace("SEED-2026-000417", order);
        let reply = http
            .send(
                "POST",
                &url,
                &[
                    ("content-type", "application/json"),
                    ("traceparent", traceparent.as_str()),
                    ("tracestate", "acme=7"),
                ],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.text());
    };
    send(TRACE, "01", "TRACED-1");
    collector.wait_for(&["door", "send"]);
    let spans = collector.spans();
    let one = |name: &str| {
        let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one `{name}` span: {spans:#?}");
        found[0].clone()
    };
    let door = one("door");
    for span in &spans {
        assert_eq!(span.trace_id, TRACE, "one trace: {span:#?}");
        assert_eq!(span.service, "dragoman");
    }
    assert_eq!(
        door.parent_span_id, CALLER,
        "the door continues the caller's span"
    );
    assert_eq!(door.kind, 2, "a server span");
    assert_eq!(door.attributes["messaging.destination.name"], "orders");
    assert_eq!(door.attributes["messaging.operation.type"], "receive");
    for stage in ["claim", "translate", "commit", "flush"] {
        assert_eq!(
            one(stage).parent_span_id,
            door.span_id,
            "{stage} under the door"
        );
    }
    let translate = one("translate");
    assert_eq!(translate.attributes["plugin.name"], "acme-erp-orders");
    assert_eq!(translate.attributes["plugin.version"], "1.0.0");
    let sent = one("send");
    assert_eq!(
        sent.parent_span_id, door.span_id,
        "the send continues the ingest"
    );
    assert_eq!(sent.links, vec![(TRACE.to_owned(), door.span_id.clone())]);
    assert_eq!(sent.kind, 4, "a producer span");
    assert_eq!(sent.attributes["messaging.system"], "http");
    assert_eq!(sent.attributes["messaging.operation.type"], "send");
    assert_eq!(sent.attributes["messaging.destination.name"], "hook");
    // The webhook got the send span's context, in the header and the CloudEvents extension.
    let received = webhook.received();
    assert_eq!(received.len(), 1);
    let expected = format!("00-{TRACE}-{}-01", sent.span_id);
    assert_eq!(received[0].traceparent, expected);
    assert_eq!(received[0].headers["ce-traceparent"], expected.as_str());
    assert_eq!(received[0].headers["tracestate"], "acme=7");

    // Unsampled by the caller: carried on as such, and not exported.
    send(UNSAMPLED, "00", "UNSAMPLED-1");
    wait_until(Duration::from_secs(20), "the second delivery", || {
        webhook.received().len() == 2
    });
    let second = &webhook.received()[1];
    assert!(
        second.traceparent.starts_with(&format!("00-{UNSAMPLED}-"))
            && second.traceparent.ends_with("-00"),
        "{}",
        second.traceparent
    );
    assert!(
        server
            .thread_names()
            .iter()
            .any(|n| n.starts_with("OpenTelemetry")),
        "the exporter's thread runs"
    );
    // SIGTERM: the host exports what it still holds before it exits.
    assert!(server.stop().success());
    assert!(
        collector.spans().iter().all(|s| s.trace_id != UNSAMPLED),
        "an unsampled trace was exported"
    );

    // No endpoint: no exporter thread, nothing received.
    let before = collector.spans().len();
    let quiet_dir = tempfile::tempdir().unwrap();
    let quiet = Server::start(quiet_dir.path(), &config);
    send_to(&http, &quiet, TRACE);
    assert!(
        !quiet
            .thread_names()
            .iter()
            .any(|n| n.starts_with("OpenTelemetry")),
        "{:?}",
        quiet.thread_names()
    );
    assert_eq!(collector.spans().len(), before);
}

/// Posts the seed order to `server` with a sampled trace context.
fn send_to(http: &Http, server: &Server, trace: &str) {
    let reply = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &[
                ("content-type", "application/json"),
                ("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01")),
            ],
            tests::seed_order().as_bytes(),
        )
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text());
}
