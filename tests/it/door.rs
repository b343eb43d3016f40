//! The door: no client can exhaust the host. Connections beyond the cap, slow request heads
//! and bodies, saturated ingest, oversized `Expect: 100-continue` requests and encoded bodies,
//! each against the real binary over loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tests::net::{self, Http, Server};

fn config(http: &str) -> String {
    format!("{}\n[http]\n{http}\n", net::config("", "", ""))
}

/// Opens a connection with read and write timeouts of `limit`.
fn connect(server: &Server, limit: Duration) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("the host accepts");
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.set_write_timeout(Some(limit)).unwrap();
    stream
}

/// Reads until the host closes the connection (or `limit` passes: then panics); returns what
/// it sent.
fn read_to_close(stream: &mut TcpStream, limit: Duration, what: &str) -> String {
    let deadline = Instant::now() + limit;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: still open after {limit:?}"
        );
        match stream.read(&mut buffer) {
            Ok(0) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&received).into_owned();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// `GET /healthz` on a new connection: the status line, and how long the answer took.
fn healthz(server: &Server) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = connect(server, Duration::from_secs(10));
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: dragoman\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(10), "healthz");
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (status, started.elapsed())
}

#[test]
fn issue_9_connections_beyond_the_cap_do_not_lock_out_a_new_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config("max_connections = 32"));
    // Idle connections, three times the cap, held open.
    let held: Vec<TcpStream> = (0..96)
        .map(|_| connect(&server, Duration::from_secs(5)))
        .collect();
    let (status, took) = healthz(&server);
    assert_eq!(status, "HTTP/1.1 200 OK");
    eprintln!("/healthz answered in {took:?} with 96 idle connections held against a cap of 32");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The host closed the oldest idle ones to make room: most held connections are gone.
    let mut closed = 0;
    for mut stream in held {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if matches!(stream.read(&mut [0u8; 1]), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert!(
        closed >= 64,
        "only {closed} of 96 idle connections were closed"
    );
    let log = server.log();
    assert!(log.len() < 20, "the log stays short: {log:#?}");
}

#[test]
fn issue_9_the_cap_stays_below_the_file_limit_and_the_log_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // The host runs with 400 file handles and the default cap of 1,024 connections.
    let shell = (
        std::path::PathBuf::from("sh"),
        vec![
            "-c".into(),
            "ulimit -n 400 && exec \"$0\" serve \"$@\"".into(),
            tests::dragoman_bin().display().to_string(),
        ],
    );
    let server = Server::start_program(shell, dir.path(), &config(""));
    let held: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    let (status, took) = healthz(&server);
    assert_eq!(
        status,
        "HTTP/1.1 200 OK",
        "after {} connections",
        held.len()
    );
    eprintln!(
        "/healthz answered in {took:?} with {} connections held",
        held.len()
    );
    let log = server.log();
    assert!(
        log.iter().any(|l| l.contains("max_connections is above")),
        "the lowered cap is said: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("accept failed")),
        "no file handle ran out: {log:#?}"
    );
    assert!(log.len() < 20, "the log stays short: {log:#?}");
}

#[test]
fn issue_9_a_slow_request_head_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config("header_timeout_ms = 500"));
    let mut stream = connect(&server, Duration::from_secs(1));
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: dragoman\r\n")
        .unwrap();
    let started = Instant::now();
    read_to_close(&mut stream, Duration::from_secs(10), "a half-sent head");
    eprintln!("a half-sent head was cut off after {:?}", started.elapsed());
    // An idle kept-alive connection too.
    let mut idle = connect(&server, Duration::from_secs(1));
    read_to_close(&mut idle, Duration::from_secs(10), "an idle connection");
}

#[test]
fn issue_9_a_body_shorter_than_declared_gets_408_and_the_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config("body_timeout_ms = 500"));
    let mut stream = connect(&server, Duration::from_secs(1));
    stream
        .write_all(
            b"POST /v1/routes/orders/messages HTTP/1.1\r\nHost: dragoman\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ord_id\":",
        )
        .unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(10), "a short body");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn issue_9_a_saturated_ingest_answers_503_with_retry_after_and_health_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &config("max_waiting = 0\nbody_timeout_ms = 30000"),
    );
    // Requests whose bodies never come hold every place (there are as many places as
    // workers, at most 2 per core).
    let holders: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = connect(&server, Duration::from_secs(5));
            stream
                .write_all(
                    b"POST /v1/routes/orders/messages HTTP/1.1\r\nHost: dragoman\r\n\
                      Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
                )
                .unwrap();
            stream
        })
        .collect();
    let http = Http::new();
    let url = format!("{}/v1/routes/orders/messages", server.url());
    let order = tests::seed_order().as_bytes();
    let headers = [("content-type", "application/json")];
    net::wait_until(
        Duration::from_secs(10),
        "a 503 for a saturated ingest",
        || http.send("POST", &url, &headers, order).unwrap().status == 503,
    );
    let busy = http.send("POST", &url, &headers, order).unwrap();
    assert_eq!(busy.status, 503);
    assert_eq!(busy.json()["type"], "urn:dragoman:problem:saturated");
    assert!(busy.headers.contains_key("retry-after"));
    for path in ["/healthz", "/readyz"] {
        let reply = http
            .send("GET", &format!("{}{path}", server.url()), &[], b"")
            .unwrap();
        assert_eq!(reply.status, 200, "{path} while ingest is saturated");
    }
    drop(holders);
    net::wait_until(
        Duration::from_secs(10),
        "ingest once the places are free",
        || http.send("POST", &url, &headers, order).unwrap().status == 202,
    );
}

#[test]
fn issue_9_an_oversized_expect_continue_gets_413_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(""));
    let mut stream = connect(&server, Duration::from_secs(5));
    stream
        .write_all(
            b"POST /v1/routes/orders/messages HTTP/1.1\r\nHost: dragoman\r\n\
              Content-Type: application/json\r\nContent-Length: 52428800\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(10), "an oversized request");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}

#[test]
fn issue_9_a_content_encoded_body_is_refused_with_415() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(""));
    let http = Http::new();
    let reply = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            tests::seed_order().as_bytes(),
        )
        .unwrap();
    assert_eq!(reply.status, 415);
    assert_eq!(
        reply.json()["type"],
        "urn:dragoman:problem:content-encoding"
    );
}

/// Posts the seed order to route `orders` and checks it is accepted.
fn ingest_seed_order(http: &Http, server: &Server) {
    let accepted = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &[("content-type", "application/json")],
            tests::seed_order().as_bytes(),
        )
        .unwrap();
    assert_eq!(accepted.status, 202);
}

/// Every file under `dir`, read whole, holds none of `secrets`.
fn assert_nowhere_in(dir: &std::path::Path, secrets: &[&str]) {
    let mut stack = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} is stored in {}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 0, "the store has files to look in");
}

#[test]
fn issue_9_credential_headers_are_neither_stored_shown_nor_given_to_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let probe = format!(
        "{}\n[routes.probe]\nplugin = \"{}\"\nheaders = [\"X-Vendor-Sig\"]\n",
        net::config(
            "",
            "",
            "[routes.orders.plugin_config]\ncurrency = \"euro\"\n"
        ),
        tests::wasm::BOTH_DIRECTIONS
    );
    let mut server = Server::start(dir.path(), &probe);
    let http = Http::new();
    let headers = [
        ("content-type", "application/json"),
        ("authorization", "Bearer s3cr3t-token"),
        ("cookie", "session=c00kie-value"),
        ("x-vendor-sig", "sig-1"),
        ("x-other", "other-1"),
    ];

    // What the plugin is given: its event lists the header names it saw.
    let translated = http
        .send(
            "POST",
            &format!("{}/v1/routes/probe/translate", server.url()),
            &headers,
            b"{}",
        )
        .unwrap();
    assert_eq!(translated.status, 200, "{:?}", translated.json());
    let data = &translated.json()["events"][0]["data"];
    let data: serde_json::Value = match data.as_str() {
        Some(text) => serde_json::from_str(text).unwrap(),
        None => data.clone(),
    };
    assert_eq!(data, serde_json::json!(["content-type", "x-vendor-sig"]));

    // A message the plugin rejects: its dead letter shows the message without them.
    let order = tests::seed_order().replacen("SEED-2026-000417", "SECRET-1", 1);
    let rejected = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &headers,
            order.as_bytes(),
        )
        .unwrap();
    assert_eq!(rejected.status, 422);
    let entry = rejected.json()["dead_letter"].as_str().unwrap().to_owned();
    let shown = http
        .send("GET", &format!("{}/v1/dlq/{entry}", server.url()), &[], b"")
        .unwrap();
    assert_eq!(shown.status, 200);
    let names: Vec<String> = shown.json()["message"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(names, ["content-type"], "the orders route names no header");
    let text = String::from_utf8_lossy(&shown.body);
    assert!(!text.contains("s3cr3t-token") && !text.contains("c00kie-value"));

    // An accepted message on the probe route, then nothing of the secrets at rest.
    let accepted = http
        .send(
            "POST",
            &format!("{}/v1/routes/probe/messages", server.url()),
            &headers,
            b"{\"n\": 1}",
        )
        .unwrap();
    assert_eq!(accepted.status, 202);
    assert_eq!(server.stop().code(), Some(0));
    assert_nowhere_in(
        &server.data_dir,
        &["s3cr3t-token", "c00kie-value", "other-1"],
    );
    assert!(
        !server
            .log()
            .iter()
            .any(|l| l.contains("s3cr3t-token") || l.contains("c00kie-value")),
        "nor in the log"
    );
}

#[test]
fn issue_9_the_http_details_follow_the_rfcs() {
    let dir = tempfile::tempdir().unwrap();
    let config = config("").replacen("listen =", "admin_token = \"t0ken\"\nlisten =", 1);
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    let base = server.url();
    let routes = format!("{base}/v1/routes");

    // RFC 9110, 11.1: the scheme is case-insensitive; 11.6.1: a 401 names the scheme.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let token = format!("{scheme} t0ken");
        let reply = http
            .send("GET", &routes, &[("authorization", &token)], b"")
            .unwrap();
        assert_eq!(reply.status, 200, "{scheme}");
    }
    for wrong in ["Bearer t0ke", "Bearer t0ken2", "Basic t0ken", "t0ken"] {
        let reply = http
            .send("GET", &routes, &[("authorization", wrong)], b"")
            .unwrap();
        assert_eq!(reply.status, 401, "{wrong}");
        assert!(
            reply.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{wrong}"
        );
    }
    let admin = [("authorization", "Bearer t0ken")];

    // RFC 9110, 9.3.2: HEAD is GET without the body.
    for path in ["/healthz", "/v1/routes"] {
        let reply = http
            .send("HEAD", &format!("{base}{path}"), &admin, b"")
            .unwrap();
        assert_eq!(reply.status, 200, "HEAD {path}");
        assert!(reply.body.is_empty(), "HEAD {path}");
    }

    // RFC 3986: `//v1/...` is another path.
    let doubled = http
        .send("GET", &format!("{base}//v1/routes"), &admin, b"")
        .unwrap();
    assert_eq!(doubled.status, 404);

    // RFC 3986: query values are percent-decoded, as URLSearchParams and urlencode send them.
    let accepted = http
        .send(
            "POST",
            &format!("{base}/v1/routes/orders/messages"),
            &[("content-type", "application/json")],
            tests::seed_order().as_bytes(),
        )
        .unwrap();
    assert_eq!(accepted.status, 202);
    let id = accepted.json()["message_id"].as_str().unwrap().to_owned();
    let now = http
        .send("GET", &format!("{base}/v1/messages/{id}"), &admin, b"")
        .unwrap()
        .json();
    for at in [
        "2030-01-01T00%3A00%3A00Z",
        "2030-01-01T01%3A00%3A00%2B01%3A00",
    ] {
        let state = http
            .send(
                "GET",
                &format!("{base}/v1/messages/{id}?at={at}"),
                &admin,
                b"",
            )
            .unwrap();
        assert_eq!(state.status, 200, "at={at}: {:?}", state.json());
        assert_eq!(state.json()["status"], now["status"], "at={at}");
    }

    // OpenMetrics text is served as OpenMetrics.
    let metrics = http
        .send("GET", &format!("{base}/metrics"), &admin, b"")
        .unwrap();
    assert_eq!(
        metrics.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(String::from_utf8_lossy(&metrics.body).ends_with("# EOF\n"));
}

#[test]
fn issue_9_sink_credentials_are_used_and_shown_nowhere() {
    use base64::Engine as _;
    let basic = tests::net::Webhook::start();
    let keyed = tests::net::Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook-token"), "b3arer-secret\n").unwrap();
    std::fs::write(dir.path().join("hook-key"), "k3y-secret").unwrap();
    let sinks = format!(
        "[sinks.basic]\ntype = \"http\"\nurl = \"http://us3r:p%40ss-secret@{}/events?api_key=qu3ry-secret\"\n\n\
         [sinks.keyed]\ntype = \"http\"\nurl = \"{}\"\nbearer_token = {{ file = \"hook-token\" }}\n\
         headers = {{ \"X-Api-Key\" = {{ file = \"hook-key\" }} }}\n",
        basic.addr,
        keyed.url()
    );
    let config = net::config(&sinks, "\"basic\", \"keyed\"", "").replacen(
        "listen =",
        "admin_token = { file = \"hook-token\" }\nlisten =",
        1,
    );
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    ingest_seed_order(&http, &server);
    net::wait_until(Duration::from_secs(30), "a delivery at each sink", || {
        !basic.received().is_empty() && !keyed.received().is_empty()
    });
    let expected = base64::engine::general_purpose::STANDARD.encode("us3r:p@ss-secret");
    assert_eq!(
        basic.received()[0].headers["authorization"],
        format!("Basic {expected}").as_str()
    );
    let keyed_headers = &keyed.received()[0].headers;
    assert_eq!(keyed_headers["authorization"], "Bearer b3arer-secret");
    assert_eq!(keyed_headers["x-api-key"], "k3y-secret");

    // The topology shows how each sink authenticates, never with what.
    let topology = http
        .send(
            "GET",
            &format!("{}/v1/routes", server.url()),
            &[("authorization", "Bearer b3arer-secret")],
            b"",
        )
        .unwrap();
    assert_eq!(topology.status, 200, "the admin token came from a file");
    let text = String::from_utf8_lossy(&topology.body).into_owned();
    let sinks = &topology.json()["sinks"];
    assert_eq!(sinks["basic"]["auth"], "basic");
    assert_eq!(sinks["keyed"]["auth"], "bearer");
    assert_eq!(sinks["keyed"]["headers"], serde_json::json!(["x-api-key"]));
    let secrets = [
        "us3r",
        "p%40ss-secret",
        "p@ss-secret",
        "qu3ry-secret",
        "b3arer-secret",
        "k3y-secret",
    ];
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in {text}");
        assert!(
            !server.log().iter().any(|l| l.contains(secret)),
            "{secret} in the log"
        );
    }
}

#[test]
fn issue_9_an_https_webhook_gets_signed_deliveries_a_standard_verifier_accepts() {
    use base64::Engine as _;
    let certificates = tests::tls::Certificates::new();
    let webhook = tests::net::Webhook::start_tls(certificates.server.clone());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &certificates.ca_pem).unwrap();
    let key: Vec<u8> = (0u8..32).collect();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(&key)
    );
    std::fs::write(dir.path().join("signing"), &secret).unwrap();
    let sinks = format!(
        "[sinks.secure]\ntype = \"http\"\nurl = \"https://127.0.0.1:{}/events\"\n\
         ca_file = \"ca.pem\"\nsigning_secret = {{ file = \"signing\" }}\n",
        webhook.addr.port()
    );
    let server = Server::start(dir.path(), &net::config(&sinks, "\"secure\"", ""));
    let http = Http::new();
    ingest_seed_order(&http, &server);
    net::wait_until(Duration::from_secs(30), "a delivery over HTTPS", || {
        !webhook.received().is_empty()
    });
    let delivery = webhook.received()[0].clone();
    let body = serde_json::to_vec(&delivery.data).unwrap();
    // The body as sent: the webhook kept its JSON; the event's data is what the plugin wrote.
    let sent = delivery.raw_body.clone();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&sent).unwrap(),
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    );
    assert_eq!(delivery.headers["webhook-id"], delivery.id.as_str());
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    verifier
        .verify(&sent, &delivery.headers)
        .expect("a Standard Webhooks verifier accepts the delivery");
    let wrong = standardwebhooks::Webhook::new(&format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    ))
    .unwrap();
    assert!(
        wrong.verify(&sent, &delivery.headers).is_err(),
        "a wrong secret fails verification"
    );
    let mut tampered = sent.clone();
    tampered.push(b' ');
    assert!(verifier.verify(&tampered, &delivery.headers).is_err());
    let topology = http
        .send("GET", &format!("{}/v1/routes", server.url()), &[], b"")
        .unwrap();
    assert_eq!(topology.json()["sinks"]["secure"]["signed"], true);
    assert!(!String::from_utf8_lossy(&topology.body).contains(&secret));
}

#[test]
fn issue_9_the_cli_speaks_https_trusting_the_system_or_a_ca_file() {
    let certificates = tests::tls::Certificates::new();
    let host = tests::net::Webhook::start_tls(certificates.server.clone());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certificates.ca_pem).unwrap();
    let server = format!("https://127.0.0.1:{}", host.addr.port());
    let dlq = |ca_file: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(tests::dragoman_bin());
        command.args(["dlq", "list", "--server", &server]);
        command.env_remove("DRAGOMAN_CA_FILE");
        if let Some(ca_file) = ca_file {
            command.env("DRAGOMAN_CA_FILE", ca_file);
        }
        command.output().expect("dragoman runs")
    };
    let trusted = dlq(Some(&ca));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert_eq!(host.requests(), 1, "the call arrived over TLS");
    // The system's roots do not hold the test's CA: the same call is refused.
    let untrusted = dlq(None);
    assert!(!untrusted.status.success());
    assert_eq!(
        host.requests(),
        1,
        "nothing was sent without a trusted certificate"
    );
}

/// A route whose plugin runs to its deadline has its own bulkhead: past its running and
/// waiting bound it answers `503` with `Retry-After` at once, and a route beside it keeps
/// answering meanwhile.
#[test]
fn issue_25_a_route_whose_plugin_loops_is_held_in_its_own_bulkhead() {
    const SLOW: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let config = net::config("", "", "")
        + &format!(
            "\n[routes.slow]\nplugin = \"{}\"\nmax_concurrency = 1\nmax_waiting = 2\n",
            tests::wasm::ENDLESS_LOOP
        );
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    let url = |route: &str| format!("{}/v1/routes/{route}/messages", server.url());
    let client = http.client();
    let replies = http.runtime().block_on(async {
        let mut slow = tokio::task::JoinSet::new();
        for n in 0..SLOW {
            let (client, url) = (client.clone(), url("slow"));
            slow.spawn(async move {
                let body = format!(r#"{{"n": {n}}}"#).into_bytes();
                net::send(
                    &client,
                    "POST",
                    &url,
                    &[("content-type", "application/json")],
                    body,
                )
                .await
                .unwrap()
            });
        }
        // While the slow route is full, the other route answers.
        for n in 0..5 {
            let body = tests::seed_order().replacen("SEED-2026-000417", &format!("F-{n}"), 1);
            let reply = net::send(
                &client,
                "POST",
                &url("orders"),
                &[("content-type", "application/json")],
                body.into_bytes(),
            )
            .await
            .unwrap();
            assert_eq!(
                reply.status,
                202,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
        }
        let mut replies = Vec::new();
        while let Some(reply) = slow.join_next().await {
            replies.push(reply.unwrap());
        }
        replies
    });
    let busy: Vec<&net::Reply> = replies.iter().filter(|r| r.status == 503).collect();
    let ran = replies.iter().filter(|r| r.status == 422).count();
    assert_eq!(
        busy.len() + ran,
        SLOW,
        "each is refused at once or runs to its deadline"
    );
    assert!(busy.len() >= SLOW - 3 - 2, "{} refused", busy.len());
    for reply in &busy {
        assert_eq!(reply.json()["type"], "urn:dragoman:problem:route-busy");
        assert!(reply.headers.contains_key("retry-after"));
    }
    let metrics = http
        .send("GET", &format!("{}/metrics", server.url()), &[], b"")
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(&format!(
            "dragoman_messages_route_busy_total{{route=\"slow\"}} {}",
            busy.len()
        )),
        "{text}"
    );
}

/// Every file under `dir`, read whole, holds none of `needles`.
fn no_file_holds(dir: &std::path::Path, needles: &[Vec<u8>]) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{} holds {:?}",
                entry.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// A route with a bearer door: no token and a wrong one are `401` with nothing stored (no
/// file under the data directory holds the body), the right token and a rotated second one
/// are let in; refusals are counted per route.
#[test]
fn issue_25_a_bearer_route_lets_in_its_tokens_only_and_stores_nothing_else() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("second-token"), "rotated-t0ken\n").unwrap();
    let config = net::config("", "", "")
        + &format!(
            "\n[routes.orders.auth]\nbearer = [\"first-t0ken\", {{ file = \"{}\" }}]\n",
            dir.path().join("second-token").display()
        );
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    let post = |body: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        http.send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &headers,
            body.as_bytes(),
        )
        .unwrap()
    };
    let marker = "FORGED-ORDER-7f3a9c";
    let forged = tests::seed_order().replacen("SEED-2026-000417", marker, 1);
    for token in [None, Some("wrong"), Some("first-t0ke")] {
        let reply = post(&forged, token);
        assert_eq!(
            reply.status,
            401,
            "{token:?}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["type"], "urn:dragoman:problem:unauthenticated");
        assert_eq!(
            reply.headers["www-authenticate"],
            "Bearer realm=\"dragoman\""
        );
    }
    let first = tests::seed_order().replacen("SEED-2026-000417", "T-1", 1);
    assert_eq!(post(&first, Some("first-t0ken")).status, 202);
    let second = tests::seed_order().replacen("SEED-2026-000417", "T-2", 1);
    assert_eq!(post(&second, Some("rotated-t0ken")).status, 202);
    let metrics = http
        .send("GET", &format!("{}/metrics", server.url()), &[], b"")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains("dragoman_door_refused_total{route=\"orders\"} 3"),
        "three refusals counted"
    );
    // The refused body is nowhere: not as sent, not as stored bodies are encoded.
    let encoded = base64::engine::general_purpose::STANDARD.encode(&forged);
    let data = dir.path().join("data");
    no_file_holds(
        &data,
        &[
            marker.as_bytes().to_vec(),
            encoded.as_bytes()[..40].to_vec(),
        ],
    );
    // The tokens are never stored either.
    no_file_holds(&data, &[b"first-t0ken".to_vec(), b"rotated-t0ken".to_vec()]);
}

/// A route with a Standard Webhooks door takes a delivery signed by an independent
/// implementation (the `standardwebhooks` crate), and refuses a wrong signature and a
/// timestamp ten minutes old.
#[test]
fn issue_25_a_standard_webhooks_route_checks_signature_and_age() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    let config = net::config("", "", "")
        + &format!("\n[routes.orders.auth]\nstandard_webhooks = {{ secret = \"{secret}\" }}\n");
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    let signer = standardwebhooks::Webhook::new(secret).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let post = |body: &str, id: &str, at: i64, signature: &str| {
        http.send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &[
                ("content-type", "application/json"),
                ("webhook-id", id),
                ("webhook-timestamp", &at.to_string()),
                ("webhook-signature", signature),
            ],
            body.as_bytes(),
        )
        .unwrap()
    };
    let body = tests::seed_order().replacen("SEED-2026-000417", "SW-1", 1);
    let signature = signer.sign("msg_1", now, body.as_bytes()).unwrap();
    let reply = post(&body, "msg_1", now, &signature);
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // The signature of another body.
    let other = tests::seed_order().replacen("SEED-2026-000417", "SW-2", 1);
    let reply = post(&other, "msg_2", now, &signature);
    assert_eq!(reply.status, 401);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("webhook-signature")
    );
    // Signed right, ten minutes ago.
    let old = now - 600;
    let stale = signer.sign("msg_3", old, other.as_bytes()).unwrap();
    let reply = post(&other, "msg_3", old, &stale);
    assert_eq!(reply.status, 401);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("tolerance")
    );
    // The signature is not kept with the message: no file holds it.
    no_file_holds(&dir.path().join("data"), &[signature.as_bytes().to_vec()]);
}
