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
use tests::net::{self, Http, Reply, Server, Webhook, wait_until};
use tests::vendor::{Fault, VendorStub};

/// The vendor's breaker in these tests: judged over the last 10 calls once 4 are in, opens
/// at 50 % failures, waits 10 s (then 20 s, 40 s, up to 60 s), lets 2 probes through.
const BREAKER: &str = "[vendors.acme.breaker]\nwindow_calls = 10\nminimum_calls = 4\n\
    failure_rate_percent = 50\nwait_in_open_ms = 10000\nwait_multiplier = 2\n\
    max_wait_in_open_ms = 60000\nprobes = 2\nprobe_timeout_ms = 30000\n";

/// A host served in-process on loopback, on an injected clock.
pub(crate) struct Rig {
    pub(crate) http: Http,
    pub(crate) base: String,
    clock: ManualClock,
    pub(crate) host: Host,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A host with `sinks`, vendor `acme` at `stub` and `routes` (each may take commands).
    pub(crate) fn start(stub: &VendorStub, sinks: &str, routes: &str) -> Self {
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

/// Waits until `webhook` has the `order.cancelled.v1` events of `n` commands.
fn wait_for_cancellations(webhook: &Webhook, n: usize) {
    wait_until(
        Duration::from_secs(20),
        "the answers reach the sink",
        || {
            let ids: std::collections::BTreeSet<String> = webhook
                .received()
                .into_iter()
                .filter(|r| r.event_type == "order.cancelled.v1")
                .map(|r| r.id)
                .collect();
            ids.len() == n
        },
    );
}

/// Opens the vendor's breaker with four failed reads on `route`.
fn open_the_breaker(rig: &Rig, stub: &VendorStub, route: &str) {
    stub.set(Fault::Status(500));
    for i in 0..4 {
        rig.command(route, &format!("opening-{i}"), &get(&format!("O-{i}")));
    }
    assert_eq!(rig.breaker(), "open");
}

#[test]
fn issue_10_each_degradation_answers_as_configured_while_the_circuit_is_open() {
    let stub = VendorStub::start();
    let webhook = Webhook::start();
    let routes = [
        route("failing", "degradation = \"fail\""),
        route("cached", "degradation = \"cached\""),
        route(
            "defaulted",
            "degradation = \"default\"\ndefault_answer = { status = \"unknown\", note = \"ACME is down\" }",
        ),
        route("queued", "degradation = \"queue\""),
    ]
    .concat();
    let rig = Rig::start(&stub, &webhook.sink_table("hook"), &routes);
    // A good answer to remember, before the vendor fails.
    let good = rig.command("cached", "read-A-1", &get("A-1"));
    assert_eq!(good.status, 200);
    open_the_breaker(&rig, &stub, "failing");
    stub.set(Fault::None);
    let before = stub.requests();
    rig.advance(Duration::from_secs(4));

    // fail: 503 with Retry-After until the next probe (10 s after opening, 4 s ago).
    let failed = rig.command("failing", "f-1", &get("A-1"));
    assert_eq!(failed.status, 503);
    assert_eq!(failed.headers["dragoman-degraded"], "fail");
    assert_eq!(failed.headers["retry-after"], "6");

    // cached: the last good answer for the same command, with its age; none: as fail.
    let cached = rig.command("cached", "read-A-1-again", &get("A-1"));
    assert_eq!(cached.status, 200);
    assert_eq!(cached.headers["dragoman-degraded"], "cached");
    assert_eq!(cached.headers["age"], "4");
    assert_eq!(cached.json(), good.json());
    let uncached = rig.command("cached", "read-A-9", &get("A-9"));
    assert_eq!(uncached.status, 503);
    assert_eq!(uncached.headers["dragoman-degraded"], "fail");

    // default: the configured answer.
    let defaulted = rig.command("defaulted", "d-1", &get("A-1"));
    assert_eq!(defaulted.status, 200);
    assert_eq!(defaulted.headers["dragoman-degraded"], "default");
    assert_eq!(
        defaulted.json(),
        serde_json::json!({"status": "unknown", "note": "ACME is down"})
    );

    // queue: accepted and kept; the same key is answered the same; nothing is sent yet.
    for i in 1..=3 {
        let queued = rig.command("queued", &format!("q-{i}"), &cancel(&format!("Q-{i}")));
        assert_eq!(
            queued.status,
            202,
            "{}",
            String::from_utf8_lossy(&queued.body)
        );
        assert_eq!(queued.headers["dragoman-degraded"], "queue");
    }
    let again = rig.command("queued", "q-1", &cancel("Q-1"));
    assert_eq!(again.status, 202);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        stub.requests(),
        before,
        "nothing reached the vendor while open"
    );

    // The degradations that store nothing gave their keys back: once the circuit closes,
    // the same command is carried out.
    rig.advance(Duration::from_secs(6));
    wait_until(
        Duration::from_secs(20),
        "every queued command is sent",
        || (1..=3).all(|i| stub.ok_answers().contains_key(&format!("q-{i}"))),
    );
    wait_for_cancellations(&webhook, 3);
    for i in 1..=3 {
        assert_eq!(
            stub.ok_answers()[&format!("q-{i}")],
            1,
            "q-{i} was sent once"
        );
    }
    let f = rig.command("failing", "f-1", &get("A-1"));
    assert_eq!(
        f.status, 200,
        "the fail answer stored nothing under its key"
    );
}

#[test]
fn issue_10_queued_commands_are_sent_exactly_once_across_a_sigkill_while_the_circuit_is_open() {
    const COMMANDS: usize = 5;
    let stub = VendorStub::start();
    stub.set(Fault::Status(503));
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{{data_dir}}\"\nadmin_token = \"t0ken\"\n\
         [sandbox]\ncache_dir = \"{{cache_dir}}\"\n[relay]\npoll_interval_ms = 50\n\
         {sinks}\n[vendors.acme]\nbase_url = \"{base}\"\n\
         [vendors.acme.breaker]\nminimum_calls = 2\nwait_in_open_ms = 300\nwait_multiplier = 1\nprobes = 1\n\
         {route}[routes.orders.retry]\ninitial_backoff_ms = 100\nmax_backoff_ms = 500\n",
        sinks = webhook.sink_table("hook"),
        base = stub.base_url(),
        route = route("orders", "degradation = \"queue\""),
    );
    let mut server = Server::start(dir.path(), &config);
    let http = Http::new();
    let admin = [("authorization", "Bearer t0ken")];
    let forced = http
        .send(
            "POST",
            &format!("{}/v1/breakers/acme?action=force-open", server.url()),
            &admin,
            b"",
        )
        .unwrap();
    assert_eq!(forced.status, 200);
    // Every transition is a tracing event, naming the breaker and both states.
    wait_until(Duration::from_secs(5), "the transition in the log", || {
        server.log().iter().any(|line| {
            line.contains("circuit changed")
                && line.contains("acme")
                && line.contains("forced_open")
        })
    });
    for i in 0..COMMANDS {
        let key = format!("kill-{i}");
        let headers = [
            ("authorization", "Bearer t0ken"),
            ("content-type", "application/json"),
            ("idempotency-key", key.as_str()),
        ];
        let reply = http
            .send(
                "POST",
                &format!("{}/v1/routes/orders/commands", server.url()),
                &headers,
                cancel(&format!("K-{i}")).as_bytes(),
            )
            .unwrap();
        assert_eq!(
            reply.status,
            202,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert_eq!(stub.requests(), 0);

    // Killed while the circuit is open; back up with the vendor still failing, then healed.
    server.kill();
    server.restart();
    wait_until(
        Duration::from_secs(20),
        "the restarted host tries the vendor",
        || stub.requests() > 0,
    );
    stub.set(Fault::None);
    wait_until(
        Duration::from_secs(60),
        "every queued command is carried out",
        || stub.carried_out() == COMMANDS as u64,
    );
    wait_for_cancellations(&webhook, COMMANDS);
    let ok = stub.ok_answers();
    for i in 0..COMMANDS {
        assert_eq!(ok.get(&format!("kill-{i}")), Some(&1), "kill-{i}: {ok:?}");
    }
    // Another restart sends nothing again.
    let seen = stub.requests();
    server.kill();
    server.restart();
    // Nothing is left for the vendor: its queue is empty, as the store's counters say.
    wait_until(
        Duration::from_secs(20),
        "the restarted host reports the vendor's queue",
        || {
            http.send("GET", &format!("{}/metrics", server.url()), &admin, b"")
                .is_ok_and(|reply| {
                    String::from_utf8_lossy(&reply.body)
                        .contains("dragoman_sink_pending{sink=\"acme\"} 0")
                })
        },
    );
    assert_eq!(stub.requests(), seen);
    // The sink may get an event twice (delivery is at least once, the id deduplicates).
    assert_eq!(webhook.counts().len(), COMMANDS);
}

#[test]
fn issue_10_a_sink_down_for_a_simulated_hour_sees_only_probes_and_loses_nothing() {
    let hook = Webhook::start();
    let down = Webhook::start();
    down.fail_next(u32::MAX);
    let stub = VendorStub::start();
    let sinks = format!(
        "{}{}[sinks.down.breaker]\nminimum_calls = 4\nwait_in_open_ms = 10000\n\
         wait_multiplier = 2\nmax_wait_in_open_ms = 300000\nprobes = 1\n",
        hook.sink_table("hook"),
        down.sink_table("down")
    );
    let routes = format!(
        "[routes.orders]\nplugin = \"{}\"\nsinks = [\"hook\", \"down\"]\n",
        tests::wasm::ACME_ERP_ORDERS_V2
    );
    let rig = Rig::start(&stub, &sinks, &routes);
    let order = |id: &str| {
        format!(
            r#"{{"orderNumber": "{id}", "orderStatus": "OPEN", "lines": [{{"productCode": "S", "quantity": 1, "unitPrice": "1.00"}}]}}"#
        )
    };
    // The down sink's breaker once it is open and waiting (so no probe can go until the
    // clock moves): how many half-opens the metrics counted so far.
    let settled = |rig: &Rig| {
        let reply = rig
            .http
            .send("GET", &format!("{}/v1/breakers", rig.base), &[], b"")
            .unwrap();
        let breaker = &reply.json()["breakers"]["down"];
        let waiting = breaker["state"] == "open" && breaker["refusing_for_ms"].as_u64() > Some(0);
        let metrics = rig.metrics();
        let half_opens = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "dragoman_breaker_transitions_total{breaker=\"down\",to=\"half_open\"} ",
                )
            })
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        waiting.then_some(half_opens)
    };
    let settle = |rig: &Rig| {
        let mut found = None;
        wait_until(
            Duration::from_secs(5),
            "the down sink's breaker waits open",
            || {
                found = settled(rig);
                found.is_some()
            },
        );
        found.unwrap_or_default()
    };
    let mut opened = false;
    let mut first = None;
    let mut sent = 0;
    // An hour, a minute at a time: two messages a minute over three orders (partition keys).
    for minute in 0..60 {
        for j in 0..2 {
            let key = format!("m-{minute}-{j}");
            let reply = rig
                .http
                .send(
                    "POST",
                    &format!("{}/v1/routes/orders/messages", rig.base),
                    &[
                        ("content-type", "application/json"),
                        ("idempotency-key", &key),
                    ],
                    order(&format!("P-{}", (minute * 2 + j) % 3)).as_bytes(),
                )
                .unwrap();
            assert_eq!(reply.status, 202);
            sent += 1;
        }
        wait_until(
            Duration::from_secs(5),
            "the healthy sink keeps receiving",
            || hook.received().len() == sent,
        );
        // A minute after it opened (calls let through before have all arrived), and with
        // any probe of this minute concluded: the count from which only probes may go.
        if first.is_none() && opened {
            let half_opens = settle(&rig);
            first = Some((down.requests(), half_opens));
        }
        opened = opened || rig.metrics().contains("breaker=\"down\",to=\"open\"");
        rig.advance(Duration::from_secs(60));
    }
    let (requests_then, half_opens_then) = first.expect("the down sink's breaker opened");
    let half_opens = settle(&rig) - half_opens_then;
    let dlq = rig
        .http
        .runtime()
        .block_on(rig.host.dead_letters(None, 1000))
        .unwrap();
    assert!(dlq.is_empty(), "nothing was dead-lettered: {dlq:?}");
    assert!(half_opens >= 5, "it probed now and then: {half_opens}");
    assert_eq!(
        down.requests() - requests_then,
        half_opens,
        "once open, the down sink saw only the probes (one per half-open)"
    );

    // Back: every event arrives, in the order the healthy sink got them, per partition key.
    down.fail_next(0);
    rig.advance(Duration::from_secs(300));
    wait_until(
        Duration::from_secs(30),
        "the backlog reaches the sink that was down",
        || down.received().len() >= sent,
    );
    let per_key = |received: Vec<net::Received>| {
        let mut keys: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for r in received {
            keys.entry(r.partition_key).or_default().push(r.id);
        }
        keys
    };
    assert_eq!(per_key(down.received()), per_key(hook.received()));
    assert_eq!(
        down.counts().values().filter(|n| **n > 1).count(),
        0,
        "each once"
    );
}

#[test]
fn issue_10_dragoman_command_sends_stdin_and_says_when_a_degradation_answered() {
    use std::io::Write as _;
    let stub = VendorStub::start();
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{{data_dir}}\"\nadmin_token = \"t0ken\"\n\
         [sandbox]\ncache_dir = \"{{cache_dir}}\"\n{sinks}\n[vendors.acme]\nbase_url = \"{base}\"\n{route}",
        sinks = webhook.sink_table("hook"),
        base = stub.base_url(),
        route = route("orders", "degradation = \"cached\""),
    );
    let server = Server::start(dir.path(), &config);
    let dragoman = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(tests::dragoman_bin())
            .args(args)
            .args(["--server", &server.url(), "--token", "t0ken"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dragoman runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let sent = dragoman(&["command", "orders", "--key", "cli-1"], &get("A-7"));
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(answer["events"][0]["type"], "order.snapshot.v1");
    assert_eq!(answer["events"][0]["subject"], "A-7");
    assert_eq!(stub.seen()[0].idempotency_key, "cli-1");

    // With the vendor's circuit forced open, the cached answer comes back, and says so.
    let forced = dragoman(&["breakers", "force-open", "acme"], "");
    assert!(forced.status.success());
    let cached = dragoman(&["command", "orders", "--key", "cli-2"], &get("A-7"));
    assert!(cached.status.success());
    let said = String::from_utf8_lossy(&cached.stderr);
    assert!(said.contains("degradation `cached`"), "{said}");
    let again: serde_json::Value = serde_json::from_slice(&cached.stdout).unwrap();
    assert_eq!(again, answer);
    assert_eq!(stub.requests(), 1);
    // Nothing cached for another order: a failure, exit 1.
    let failed = dragoman(&["command", "orders", "--key", "cli-3"], &get("A-8"));
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("degradation `fail`"));
}

/// With an OTLP endpoint, a command is a span continuing the caller's, each attempt to the
/// vendor a client span under it, and the vendor gets that span's context.
#[test]
fn a_traced_command_makes_a_vendor_command_span_and_the_vendor_gets_its_context() {
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let collector = tests::otlp::Collector::start();
    let stub = VendorStub::start();
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{{data_dir}}\"\n\
         [sandbox]\ncache_dir = \"{{cache_dir}}\"\n{sinks}\n[vendors.acme]\nbase_url = \"{base}\"\n{route}",
        sinks = webhook.sink_table("hook"),
        base = stub.base_url(),
        route = route("orders", ""),
    );
    let endpoint = collector.endpoint();
    let server = Server::start_with_env(
        dir.path(),
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let http = Http::new();
    let traceparent = format!("00-{TRACE}-b7ad6b7169203331-01");
    let reply = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/commands", server.url()),
            &[
                ("content-type", "application/json"),
                ("traceparent", traceparent.as_str()),
            ],
            get("T-1").as_bytes(),
        )
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    collector.wait_for(&["command", "vendor command"]);
    let spans = collector.spans();
    let call = spans
        .iter()
        .find(|s| s.name == "vendor command")
        .expect("found above");
    assert_eq!(call.trace_id, TRACE, "{call:#?}");
    assert_eq!(call.kind, 3, "a client span");
    let command = spans
        .iter()
        .find(|s| s.name == "command")
        .expect("the command's span");
    assert_eq!(
        command.parent_span_id, "b7ad6b7169203331",
        "the caller's child"
    );
    assert_eq!(call.parent_span_id, command.span_id, "the command's child");
    assert_eq!(call.attributes["http.request.method"], "GET");
    assert_eq!(call.attributes["http.response.status_code"], "200");
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].traceparent,
        format!("00-{TRACE}-{}-01", call.span_id),
        "the vendor got the span's context"
    );
}
