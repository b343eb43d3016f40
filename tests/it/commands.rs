//! Outbound commands through the vendor's circuit breaker, against a fault-injecting vendor
//! stub on loopback: every transition of the breaker, each degradation mode, a queue that
//! survives SIGKILL, and a sink down for a simulated hour. Time that the breaker or the
//! relay reads comes from an injected clock; the tests move it, and wait on conditions with
//! bounded timeouts.

use std::sync::Arc;
use std::time::Duration;

use dragoman::Host;
use dragoman::clock::ManualClock;
use dragoman::config::Config;
use tests::net::{self, Http, Reply, Webhook, wait_until};
use tests::vendor::{Fault, VendorStub};

/// The vendor's breaker in these tests: judged over the last 10 calls once 4 are in, opens
/// at 50 % failures, waits 10 s (then 20 s, 40 s, up to 60 s), lets 2 probes through.
const BREAKER: &str = "[vendors.acme.breaker]\nwindow_calls = 10\nminimum_calls = 4\n\
    failure_rate_percent = 50\nwait_in_open_ms = 10000\nwait_multiplier = 2\n\
    max_wait_in_open_ms = 60000\nprobes = 2\nprobe_timeout_ms = 30000\n";

/// A host served in-process on loopback, on an injected clock.
struct Rig {
    http: Http,
    base: String,
    clock: ManualClock,
    host: Host,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A host with `sinks`, vendor `acme` at `stub` and `routes` (each may take commands).
    fn start(stub: &VendorStub, sinks: &str, routes: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\n\
             [sandbox]\ncache_dir = \"{cache}\"\n[relay]\npoll_interval_ms = 50\n\
             {sinks}\n[vendors.acme]\nbase_url = \"{base}\"\n{BREAKER}\n{routes}",
            data = dir.path().join("data").display(),
            cache = tests::shared_cache().display(),
            base = stub.base_url(),
        );
        let config = Config::parse(&text, dir.path()).unwrap();
        let clock = ManualClock::new(jiff::Timestamp::now());
        let host = Host::builder()
            .config(config)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let http = Http::new();
        let listener = http
            .runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = host.clone();
        http.runtime().spawn(async move {
            let _ = serving
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            http,
            base,
            clock,
            host,
            stop: Some(stop),
            _dir: dir,
        }
    }

    fn command(&self, route: &str, key: &str, command: &str) -> Reply {
        self.http
            .send(
                "POST",
                &format!("{}/v1/routes/{route}/commands", self.base),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                command.as_bytes(),
            )
            .unwrap()
    }

    fn breaker(&self) -> String {
        let reply = self
            .http
            .send("GET", &format!("{}/v1/breakers", self.base), &[], b"")
            .unwrap();
        reply.json()["breakers"]["acme"]["state"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn metrics(&self) -> String {
        let reply = self
            .http
            .send("GET", &format!("{}/metrics", self.base), &[], b"")
            .unwrap();
        String::from_utf8_lossy(&reply.body).into_owned()
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn cancel(id: &str) -> String {
    format!(r#"{{"type": "order.cancel.v1", "subject": "{id}", "data": {{"reason": "asked"}}}}"#)
}

fn get(id: &str) -> String {
    format!(r#"{{"type": "order.get.v1", "subject": "{id}", "data": {{}}}}"#)
}

fn route(name: &str, extra: &str) -> String {
    format!(
        "[routes.{name}]\nplugin = \"{plugin}\"\nsinks = [\"hook\"]\n\
         [routes.{name}.commands]\nvendor = \"acme\"\ntimeout_ms = 500\nattempts = 1\n{extra}\n",
        plugin = tests::wasm::ACME_ERP_ORDERS_V2,
    )
}

#[test]
fn issue_10_a_command_s_answer_comes_back_as_committed_events_and_a_retry_gets_it_again() {
    let stub = VendorStub::start();
    let webhook = Webhook::start();
    let rig = Rig::start(&stub, &webhook.sink_table("hook"), &route("orders", ""));

    let first = rig.command("orders", "cancel-A-1", &cancel("A-1"));
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let answer = first.json();
    assert_eq!(answer["vendor_status"], 200);
    assert_eq!(answer["events"][0]["type"], "order.cancelled.v1");
    assert_eq!(answer["events"][0]["data"]["status"], "cancelled");
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v2/orders/A-1/cancellation")
    );
    assert_eq!(seen[0].idempotency_key, "cancel-A-1");

    // The decoded events go to the route's sinks like any ingest.
    wait_until(
        Duration::from_secs(10),
        "the event reaches the sink",
        || {
            webhook
                .received()
                .iter()
                .any(|r| r.event_type == "order.cancelled.v1")
        },
    );
    let event = webhook.received()[0].clone();
    assert_eq!(event.id, answer["events"][0]["id"]);

    // The same key replays the stored answer; the vendor is not called again.
    let again = rig.command("orders", "cancel-A-1", &cancel("A-1"));
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json(), answer);
    assert_eq!(stub.requests(), 1);
    // The same key for another command is refused.
    let reused = rig.command("orders", "cancel-A-1", &cancel("A-2"));
    assert_eq!(reused.status, 422);
    assert_eq!(stub.requests(), 1);

    // A vendor's refusal for good is dead-lettered, and answered 422; a bad command is 400.
    let unknown = rig.command("orders", "cancel-Z-1", &cancel("Z-1"));
    assert_eq!(unknown.status, 422);
    assert_eq!(unknown.json()["code"], "unknown-order");
    let bad = rig.command("orders", "bad", r#"{"type": "order.cancel.v1"}"#);
    assert_eq!(bad.status, 400);
}

#[test]
fn issue_10_the_vendor_stub_drives_every_transition_of_the_vendor_s_breaker() {
    let stub = VendorStub::start();
    let webhook = Webhook::start();
    let rig = Rig::start(&stub, &webhook.sink_table("hook"), &route("orders", ""));
    let mut n = 0;
    let mut send = |rig: &Rig| {
        n += 1;
        rig.command("orders", &format!("k-{n}"), &get(&format!("A-{n}")))
    };

    // A 404 is the caller's problem: not counted against the vendor.
    for _ in 0..4 {
        assert_eq!(rig.command("orders", "z", &get("Z-1")).status, 422);
    }
    assert_eq!(rig.breaker(), "closed");
    // Four kinds of failure: 500, 429, a dropped connection, a timeout (1 s against 500 ms).
    // Three stay under the minimum of four calls... (the window holds the 404s as ignored)
    for fault in [Fault::Status(500), Fault::TooMany(1), Fault::Drop] {
        stub.set(fault);
        let reply = send(&rig);
        assert!(
            reply.status == 503 || reply.status == 502,
            "{fault:?}: {}",
            reply.status
        );
        assert_eq!(
            rig.breaker(),
            "closed",
            "after {fault:?}, below the minimum volume"
        );
    }
    stub.set(Fault::Latency(Duration::from_secs(1)));
    assert_eq!(send(&rig).status, 502);
    assert_eq!(
        rig.breaker(),
        "open",
        "4 of 4 failed: the minimum is reached"
    );

    // While open, calls fail fast, with the time until the probe; the stub sees nothing.
    stub.set(Fault::None);
    let before = stub.requests();
    for _ in 0..5 {
        let reply = send(&rig);
        assert_eq!(reply.status, 503);
        assert_eq!(reply.json()["type"], "urn:dragoman:problem:circuit-open");
        assert_eq!(reply.headers["retry-after"], "10");
    }
    assert_eq!(stub.requests(), before);

    // Half-open under 32 concurrent callers: exactly the 2 configured probes reach the stub.
    rig.advance(Duration::from_secs(10));
    stub.set(Fault::Latency(Duration::from_millis(300)));
    let client = rig.http.client();
    let url = format!("{}/v1/routes/orders/commands", rig.base);
    let statuses: Vec<u16> = rig.http.runtime().block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32 {
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(async move {
                let key = format!("crowd-{i}");
                let headers = [
                    ("content-type", "application/json"),
                    ("idempotency-key", key.as_str()),
                ];
                net::send(
                    &client,
                    "POST",
                    &url,
                    &headers,
                    get(&format!("C-{i}")).into_bytes(),
                )
                .await
                .unwrap()
                .status
            });
        }
        tasks.join_all().await
    });
    assert_eq!(
        stub.requests() - before,
        2,
        "exactly the configured probes went"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 30);
    assert_eq!(rig.breaker(), "closed", "both probes succeeded");

    // Failing again: it reopens (for the first wait again, 10 s); a failed probe reopens
    // it for twice as long.
    stub.set(Fault::Status(503));
    for _ in 0..4 {
        send(&rig);
    }
    assert_eq!(rig.breaker(), "open");
    assert_eq!(send(&rig).headers["retry-after"], "10");
    rig.advance(Duration::from_secs(10));
    let before = stub.requests();
    assert_eq!(send(&rig).status, 503, "the probe failed");
    assert_eq!(stub.requests(), before + 1);
    assert_eq!(rig.breaker(), "open");
    assert_eq!(send(&rig).headers["retry-after"], "20");

    // A lost probe: its caller goes away while the vendor is slow. The breaker counts it as
    // failed and reopens, instead of waiting half-open forever.
    rig.advance(Duration::from_secs(20));
    stub.set(Fault::Latency(Duration::from_secs(3)));
    let host = rig.host.clone();
    let probe = rig.http.runtime().spawn(async move {
        let incoming = dragoman::Incoming {
            content_type: Some("application/json".into()),
            body: get("LOST-1").into_bytes(),
            idempotency_key: Some("lost-1".into()),
            ..dragoman::Incoming::default()
        };
        host.command("orders", incoming).await
    });
    let seen = stub.requests();
    wait_until(Duration::from_secs(5), "the probe reaches the stub", || {
        stub.requests() > seen
    });
    probe.abort();
    wait_until(
        Duration::from_secs(5),
        "the lost probe reopens the breaker",
        || rig.breaker() == "open",
    );
    assert_eq!(send(&rig).headers["retry-after"], "40");
    rig.advance(Duration::from_secs(40));
    stub.set(Fault::None);
    assert_eq!(send(&rig).status, 200);
    assert_eq!(send(&rig).status, 200);
    assert_eq!(
        rig.breaker(),
        "closed",
        "not wedged: the next probes closed it"
    );

    // Every transition is in the breaker's audit stream and in the metrics.
    let history = || {
        rig.http
            .runtime()
            .block_on(rig.host.history("breaker:acme"))
            .unwrap()
    };
    wait_until(
        Duration::from_secs(5),
        "the transitions are in the audit trail",
        || history().len() >= 10,
    );
    let history = history();
    let moves: Vec<String> = history
        .iter()
        .map(|e| {
            format!(
                "{}>{}",
                e.data["from"].as_str().unwrap(),
                e.data["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            "closed>open",
            "open>half_open",
            "half_open>closed",
            "closed>open",
            "open>half_open",
            "half_open>open",
            "open>half_open",
            "half_open>open",
            "open>half_open",
            "half_open>closed",
        ],
        "every transition, in order, in the audit trail"
    );
    let metrics = rig.metrics();
    for to in ["open", "half_open", "closed"] {
        let line = format!("dragoman_breaker_transitions_total{{breaker=\"acme\",to=\"{to}\"}}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}
