//! Projector versions while the host runs: pushed, refused, activated by hand, rolled back
//! and kept over a restart, while entity reads run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tests::net::{self, Http, Reply, Server, Webhook, wait_until};
use tests::swap::packed;
use tests::wasm;

/// The fixtures of the second version of `order-fold`.
const V2_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guests/order-fold-v2/fixtures");

/// Orders and cancellations from the ERP, folded by `order-fold` 1.0.0 with a snapshot every
/// 2 events.
fn config(webhook: &Webhook) -> String {
    let extra = format!(
        "[routes.cancellations]\nplugin = \"{}\"\nsinks = [\"hook\"]\n\n\
         [projectors.order]\nplugin = \"{}\"\nsnapshot_every = 2\n",
        wasm::ACME_ERP_CANCELLATIONS,
        wasm::ORDER_FOLD
    );
    net::config(&webhook.sink_table("hook"), "\"hook\"", &extra)
}

fn call(http: &Http, server: &Server, method: &str, path: &str, body: &[u8]) -> Reply {
    http.send(method, &format!("{}{path}", server.url()), &[], body)
        .unwrap()
}

fn read(http: &Http, server: &Server) -> Value {
    let reply = call(http, server, "GET", "/v1/entities/order/A-1", b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// The version that folded a read.
fn folded_by(read: &Value) -> &str {
    read["projector"]["version"].as_str().unwrap()
}

/// Each version's own state of the order, created then cancelled.
fn assert_state_of_its_version(read: &Value) {
    match folded_by(read) {
        "1.0.0" => assert_eq!(read["state"]["status"], "cancelled", "{read:#}"),
        "2.0.0" => assert_eq!(
            read["state"],
            json!(["order.created.v1", "order.cancelled.v1"]),
            "{read:#}"
        ),
        other => panic!("folded by {other}: {read:#}"),
    }
}

#[test]
fn issue_25_a_projector_pushed_while_entity_reads_run_folds_the_reads_after_it() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &config(&webhook));
    let http = Http::new();
    let created = call(
        &http,
        &server,
        "POST",
        "/v1/routes/orders/messages",
        tests::swap::order("A-1").as_bytes(),
    );
    assert_eq!(created.status, 202, "{}", created.text());
    let cancel =
        json!({"ord_id": "A-1", "cancel_reason": "CUST", "cancelled_at": "2026-12-01 10:00:00"});
    let cancelled = call(
        &http,
        &server,
        "POST",
        "/v1/routes/cancellations/messages",
        cancel.to_string().as_bytes(),
    );
    assert_eq!(cancelled.status, 202, "{}", cancelled.text());
    // 1.0.0 folds the stream and keeps its snapshot at 2; the next read starts from it.
    let first = read(&http, &server);
    assert_eq!(folded_by(&first), "1.0.0");
    assert_state_of_its_version(&first);
    let again = read(&http, &server);
    assert_eq!(
        (&again["snapshot"], &again["applied"]),
        (&json!(2), &json!(0))
    );

    // Reads run in a loop while 2.0.0 is pushed.
    let reads = Arc::new(Mutex::new(Vec::<Value>::new()));
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let reader = {
        let (reads, stop, done) = (reads.clone(), stop.clone(), done.clone());
        let url = server.url();
        std::thread::spawn(move || {
            let http = Http::new();
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let reply = http
                    .send("GET", &format!("{url}/v1/entities/order/A-1"), &[], b"")
                    .unwrap();
                assert_eq!(reply.status, 200, "{}", reply.text());
                reads.lock().unwrap().push(reply.json());
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    wait_until(Duration::from_secs(10), "reads before the push", || {
        done.load(Ordering::SeqCst) >= 3
    });
    let v2 = packed(dir.path(), wasm::ORDER_FOLD_V2, V2_FIXTURES, "v2.wasm");
    let pushed = call(
        &http,
        &server,
        "PUT",
        "/v1/plugins/order-fold",
        &std::fs::read(&v2).unwrap(),
    );
    assert_eq!(pushed.status, 201, "{}", pushed.text());
    let answer = pushed.json();
    assert_eq!(answer["status"], "folding", "{answer:#}");
    assert_eq!(answer["version"]["folds"], "order", "{answer:#}");
    let changed = &answer["changed"][0];
    assert_eq!(
        (
            &changed["entity_type"],
            &changed["from"]["version"],
            &changed["to"]["version"]
        ),
        (&json!("order"), &json!("1.0.0"), &json!("2.0.0")),
        "{answer:#}"
    );
    let after_push = done.load(Ordering::SeqCst);
    wait_until(Duration::from_secs(10), "reads after the push", || {
        done.load(Ordering::SeqCst) >= after_push + 3
    });
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();

    let reads = reads.lock().unwrap();
    for read in reads.iter() {
        assert_state_of_its_version(read);
    }
    let switched = reads
        .iter()
        .position(|r| folded_by(r) == "2.0.0")
        .expect("a read after the push folds with 2.0.0");
    assert!(switched > 0, "reads before the push fold with 1.0.0");
    assert!(
        reads[switched..].iter().all(|r| folded_by(r) == "2.0.0"),
        "once 2.0.0 folds, no read goes back to 1.0.0"
    );
    // 2.0.0 never starts from 1.0.0's snapshot: its first read folds the whole stream.
    let first_v2 = &reads[switched];
    assert_eq!(
        (&first_v2["snapshot"], &first_v2["applied"]),
        (&Value::Null, &json!(2)),
        "{first_v2:#}"
    );
    drop(reads);
    // Its own snapshot serves it next.
    let own = read(&http, &server);
    assert_eq!(folded_by(&own), "2.0.0");
    assert_eq!((&own["snapshot"], &own["applied"]), (&json!(2), &json!(0)));

    // A candidate whose fixtures fail is refused; 2.0.0 keeps folding.
    let wrong = packed(
        dir.path(),
        wasm::ORDER_FOLD_V2,
        wasm::ORDER_FOLD_FIXTURES,
        "wrong.wasm",
    );
    let refused = call(
        &http,
        &server,
        "PUT",
        "/v1/plugins/order-fold",
        &std::fs::read(&wrong).unwrap(),
    );
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(
        refused.json()["code"],
        "fixture-failed",
        "{}",
        refused.text()
    );
    assert_eq!(folded_by(&read(&http, &server)), "2.0.0");
    // A projector is no canary.
    let canary = call(
        &http,
        &server,
        "PUT",
        "/v1/plugins/order-fold?canary=10",
        &std::fs::read(&v2).unwrap(),
    );
    assert_eq!(canary.status, 409, "{}", canary.text());
    assert_eq!(
        canary.json()["type"],
        "urn:dragoman:problem:not-for-projectors",
        "{}",
        canary.text()
    );

    // Rolled back, 1.0.0 folds again, from its own snapshot.
    let back = call(
        &http,
        &server,
        "POST",
        "/v1/plugins/order-fold/rollback",
        b"",
    );
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(
        back.json()["changed"][0]["to"]["version"],
        "1.0.0",
        "{}",
        back.text()
    );
    let rolled = read(&http, &server);
    assert_eq!(folded_by(&rolled), "1.0.0");
    assert_state_of_its_version(&rolled);
    assert_eq!(
        (&rolled["snapshot"], &rolled["applied"]),
        (&json!(2), &json!(0))
    );

    // Activated by hand, 2.0.0 is what a restart folds with: the registry recorded it.
    let by_hand = call(
        &http,
        &server,
        "POST",
        "/v1/plugins/order-fold/activate",
        br#"{"version": "2.0.0"}"#,
    );
    assert_eq!(by_hand.status, 200, "{}", by_hand.text());
    server.stop();
    server.restart();
    let restarted = read(&http, &server);
    assert_eq!(folded_by(&restarted), "2.0.0", "{restarted:#}");
    let listed = call(&http, &server, "GET", "/v1/plugins", b"").json();
    let folds = &listed["plugins"]["order-fold"]["folds"]["order"];
    assert_eq!(folds["active"]["version"], "2.0.0", "{listed:#}");
    assert_eq!(
        folds["previous"].as_array().map(Vec::len),
        Some(1),
        "{listed:#}"
    );
    // Each version change is on the entity type's audit stream.
    let audit = call(
        &http,
        &server,
        "GET",
        "/v1/messages/projector:order/history",
        b"",
    );
    assert_eq!(audit.status, 200, "{}", audit.text());
    let kinds: Vec<Value> = audit.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![json!("projector_activated"); 3],
        "{}",
        audit.text()
    );
}
