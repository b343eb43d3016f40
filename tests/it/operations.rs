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
