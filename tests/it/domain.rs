//! Several vendors into one domain model, and the state of an order at any instant: the ERP
//! creates and cancels, a payment gateway (signed webhooks, delivered twice) pays, a carrier
//! (XML declared as JSON, in Python) ships; `order-fold` folds the order's stream, with
//! snapshots, on either clock.

use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::Sha256;
use tests::net::{self, Http, Reply, Server, Webhook};

const SECRET: &str = "whsec_it";

/// The host with the quickstart's routes, the carrier's route and the order fold, snapshotting
/// every 2 events so that a short day uses snapshots too.
fn domain_config(webhook: &Webhook) -> String {
    net::config(&webhook.sink_table("hook"), "\"hook\"", "")
        + &format!(
            r#"
[routes.payments]
plugin = "{payments}"
sinks = ["hook"]
headers = ["paylane-signature"]
plugin_config = {{ signing_secret = "{SECRET}" }}

[routes.tracking]
plugin = "{tracking}"
sinks = ["hook"]

[routes.cancellations]
plugin = "{cancellations}"
sinks = ["hook"]

[projectors.order]
plugin = "{fold}"
snapshot_every = 2
"#,
            payments = tests::wasm::PAYLANE_PAYMENTS,
            tracking = tests::built(
                tests::wasm::SWIFTSHIP_TRACKING_PY,
                tests::wasm::SWIFTSHIP_TRACKING_PY_BUILD
            ),
            cancellations = tests::wasm::ACME_ERP_CANCELLATIONS,
            fold = tests::wasm::ORDER_FOLD,
        )
}

/// A host on [`domain_config`], with its webhook and directory (kept while the test runs).
fn start_domain() -> (Webhook, tempfile::TempDir, Server) {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &domain_config(&webhook));
    (webhook, dir, server)
}

/// Talks to the domain's routes as the vendors do.
struct Vendors<'a> {
    http: Http,
    server: &'a Server,
}

impl Vendors<'_> {
    fn post(&self, route: &str, content_type: &str, extra: &[(&str, &str)], body: &str) -> Reply {
        let mut headers = vec![("content-type", content_type)];
        headers.extend_from_slice(extra);
        self.http
            .send(
                "POST",
                &format!("{}/v1/routes/{route}/messages", self.server.url()),
                &headers,
                body.as_bytes(),
            )
            .unwrap()
    }

    fn create(&self, order: &str) -> Reply {
        let body = tests::seed_order().replacen("SEED-2026-000417", order, 1);
        self.post("orders", "application/json", &[], &body)
    }

    /// A signed `payment.captured` webhook, as the gateway delivers it (`delivery` is its
    /// own id for the delivery, new on every redelivery).
    fn pay(&self, order: &str, delivery: &str, at: Timestamp) -> Reply {
        self.pay_signed(order, delivery, at, SECRET)
    }

    /// [`Vendors::pay`] signed under `secret`: a forgery when it is not the route's.
    fn pay_signed(&self, order: &str, delivery: &str, at: Timestamp, secret: &str) -> Reply {
        let body = json!({
            "id": delivery,
            "type": "payment.captured",
            "created_at": at.to_string(),
            "payment": {"reference": format!("PAY-{order}"), "order_reference": order, "amount": "54997", "currency": "eur"},
        })
        .to_string();
        let t = "1764508200";
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let header = format!("t={t},v1={signature}");
        self.post(
            "payments",
            "application/json",
            &[("paylane-signature", &header)],
            &body,
        )
    }

    /// A carrier scan of `code` (`PU`: picked up), XML declared as JSON.
    fn scan(&self, order: &str, code: &str, at: Timestamp) -> Reply {
        let body = format!(
            r#"<TrackingEvent xmlns="urn:swiftship:tracking:2"><Shipment reference="{order}"><TrackingNumber>SWS-{order}</TrackingNumber><Status code="{code}">scan</Status><EventTime>{at}</EventTime></Shipment></TrackingEvent>"#
        );
        self.post("tracking", "application/json", &[], &body)
    }

    /// An ERP cancellation, in the ERP's wall time (UTC: the route sets no offset).
    fn cancel(&self, order: &str, at: Timestamp) -> Reply {
        let local = at.strftime("%Y-%m-%d %H:%M:%S").to_string();
        let body = json!({"ord_id": order, "cancel_reason": "CUST", "cancelled_at": local});
        self.post("cancellations", "application/json", &[], &body.to_string())
    }

    fn get(&self, path: &str) -> Reply {
        self.http
            .send("GET", &format!("{}{path}", self.server.url()), &[], b"")
            .unwrap()
    }

    /// The order's state at `at` on `clock` (`committed` or `occurred`).
    fn state(&self, order: &str, at: Option<Timestamp>, clock: &str) -> Value {
        let at = at
            .map(|t| format!("&at={}", t.to_string().replace('+', "%2B")))
            .unwrap_or_default();
        let reply = self.get(&format!("/v1/entities/order/{order}?time={clock}{at}"));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }
}

fn accepted(reply: &Reply) -> String {
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["message_id"].as_str().unwrap().to_owned()
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

fn committed(event: &Value) -> Timestamp {
    event["committed_at"].as_str().unwrap().parse().unwrap()
}

/// The instant halfway between two commits, if they are not the same instant.
fn between(a: Timestamp, b: Timestamp) -> Option<Timestamp> {
    let half = a.duration_until(b) / 2;
    (!half.is_zero()).then(|| a.checked_add(half).unwrap())
}

#[test]
fn issue_13_a_day_of_an_order_from_three_vendors_folds_to_the_right_state_at_every_instant() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &domain_config(&webhook));
    let vendors = Vendors {
        http: Http::new(),
        server: &server,
    };
    // Vendors' clocks: the payment an hour from now, the pickup two, the cancellation three.
    let t0 = Timestamp::now();
    let order = "SEED-2026-000417";
    let created = accepted(&vendors.create(order));
    let paid = accepted(&vendors.pay(order, "evt_1", t0 + hours(1)));
    // The gateway delivers the same payment again with a new delivery id: a duplicate.
    let again = vendors.pay(order, "evt_2", t0 + hours(1));
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.json()["message_id"], paid.as_str());
    // A caller's own key with another body is still refused.
    let keyed = |body: &str| {
        vendors.post(
            "orders",
            "application/json",
            &[("idempotency-key", "caller-key")],
            body,
        )
    };
    assert_eq!(
        keyed(&tests::seed_order().replacen(order, "K-1", 1)).status,
        202
    );
    assert_eq!(
        keyed(&tests::seed_order().replacen(order, "K-2", 1)).status,
        422
    );
    let shipped = accepted(&vendors.scan(order, "PU", t0 + hours(2)));
    assert_eq!(
        vendors.scan(order, "IT", t0 + hours(2)).json()["events"],
        json!([]),
        "an in-transit scan is no domain event"
    );
    let cancelled = accepted(&vendors.cancel(order, t0 + hours(3)));

    // The stream: four events, the duplicate not among them.
    let stream = vendors
        .get(&format!("/v1/entities/order/{order}/events"))
        .json();
    let events = stream["events"].as_array().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "order.created.v1",
            "order.paid.v1",
            "order.shipped.v1",
            "order.cancelled.v1"
        ]
    );
    let times: Vec<Timestamp> = events.iter().map(committed).collect();

    // Now: shipped, paid, the cancellation refused and reported, every event's provenance.
    let now = vendors.state(order, None, "committed");
    assert_eq!(now["state"]["status"], "shipped", "{now:#}");
    assert_eq!(
        now["state"]["paid"],
        json!({"amount_minor": 54997, "currency": "EUR"})
    );
    assert_eq!(now["refused"][0]["seq"], 4);
    assert_eq!(now["refused"][0]["code"], "already-shipped");
    let provenance: Vec<(String, String, String, Value)> = now["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let p = &e["provenance"];
            (
                p["message_id"].as_str().unwrap().to_owned(),
                p["route"].as_str().unwrap().to_owned(),
                p["plugin"].as_str().unwrap().to_owned(),
                e["outcome"].clone(),
            )
        })
        .collect();
    let refusal = json!({"refused": {"code": "already-shipped", "message": "event 4 (order.cancelled.v1) cannot apply to an order whose status is shipped"}});
    assert_eq!(
        provenance,
        [
            (
                created,
                "orders".into(),
                "acme-erp-orders@1.0.0".into(),
                json!("applied")
            ),
            (
                paid,
                "payments".into(),
                "paylane-payments@1.0.0".into(),
                json!("applied")
            ),
            (
                shipped,
                "tracking".into(),
                "swiftship-tracking@1.0.0".into(),
                json!("applied")
            ),
            (
                cancelled,
                "cancellations".into(),
                "acme-erp-cancellations@1.0.0".into(),
                refusal
            ),
        ]
    );
    assert_eq!(now["projector"]["name"], "order-fold");
    // The first read folded the stream and kept snapshots at 2 and 4; now one is read.
    let again = vendors.state(order, None, "committed");
    assert_eq!(
        (again["snapshot"].clone(), again["applied"].clone()),
        (json!(4), json!(0))
    );
    assert_eq!(again["state"], now["state"]);

    // Commit time: before the first event there is no order; at each commit, and halfway to
    // the next, the state that commit made.
    let before = vendors.state(
        order,
        Some(times[0] - SignedDuration::from_nanos(1)),
        "committed",
    );
    assert_eq!(before["state"]["status"], "none");
    assert_eq!(before["events"], json!([]));
    let expected = ["created", "paid", "shipped", "shipped"];
    for (i, status) in expected.iter().enumerate() {
        let mut instants = vec![times[i]];
        instants.extend(times.get(i + 1).and_then(|next| between(times[i], *next)));
        for at in instants {
            let state = vendors.state(order, Some(at), "committed");
            assert_eq!(state["state"]["status"], *status, "at {at}: {state:#}");
            assert_eq!(state["through"], i + 1, "at {at}");
            assert_eq!(state["events"].as_array().unwrap().len(), i + 1);
        }
    }
    // From the snapshot at 2, one more apply gives the state at the third commit.
    let third = vendors.state(order, Some(times[2]), "committed");
    assert_eq!(
        (third["snapshot"].clone(), third["applied"].clone()),
        (json!(2), json!(1))
    );

    // Event time: as the vendors tell it, between their instants.
    for (at, status) in [
        (t0 + SignedDuration::from_mins(30), "created"),
        (t0 + hours(1) + SignedDuration::from_mins(30), "paid"),
        (t0 + hours(2) + SignedDuration::from_mins(30), "shipped"),
        (t0 + hours(4), "shipped"),
    ] {
        let state = vendors.state(order, Some(at), "occurred");
        assert_eq!(state["state"]["status"], status, "at {at}: {state:#}");
    }

    // The timeline, as an operator reads it.
    let shown = std::process::Command::new(tests::dragoman_bin())
        .args(["entity", "show", "order", order, "--at"])
        .arg(times[3].to_string())
        .args(["--server", &server.url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    for line in [
        "status: shipped",
        "order.paid.v1  applied",
        "REFUSED already-shipped: event 4 (order.cancelled.v1) cannot apply to an order whose status is shipped",
        "on route payments, translated by paylane-payments@1.0.0",
        "on route tracking, translated by swiftship-tracking@1.0.0",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }

    // The streams verify with the audit trail.
    let verified = vendors.get("/v1/audit/verify").json();
    assert_eq!(verified["findings"], json!([]), "{verified:#}");
    server.stop();
}

#[test]
fn issue_13_late_and_out_of_order_events_are_recorded_and_read_on_either_clock() {
    let (_webhook, _dir, server) = start_domain();
    let vendors = Vendors {
        http: Http::new(),
        server: &server,
    };
    let t0 = Timestamp::now();
    // The carrier's pickup scan (two hours from now) arrives before the payment (one hour).
    let late = "LATE-1";
    accepted(&vendors.create(late));
    accepted(&vendors.scan(late, "PU", t0 + hours(2)));
    accepted(&vendors.pay(late, "evt_9", t0 + hours(1)));
    let events = vendors
        .get(&format!("/v1/entities/order/{late}/events"))
        .json();
    let times: Vec<Timestamp> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(committed)
        .collect();

    // Commit time: what the host knew. After the scan, shipped and not yet paid.
    let known = vendors.state(late, Some(times[1]), "committed");
    assert_eq!(known["state"]["status"], "shipped");
    assert_eq!(known["state"]["payments"], json!([]));
    // Event time: what happened. Between the payment and the pickup it was paid; the scan
    // is listed as `later`.
    let happened = vendors.state(
        late,
        Some(t0 + hours(1) + SignedDuration::from_mins(30)),
        "occurred",
    );
    assert_eq!(happened["state"]["status"], "paid", "{happened:#}");
    let outcomes: Vec<Value> = happened["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [json!("applied"), json!("later"), json!("applied")]
    );
    // In the end both clocks agree, and the fold's facts do not depend on arrival order.
    let end_committed = vendors.state(late, None, "committed");
    let end_occurred = vendors.state(late, Some(t0 + hours(3)), "occurred");
    assert_eq!(end_committed["state"], end_occurred["state"]);
    assert_eq!(end_committed["state"]["status"], "shipped");
    assert_eq!(end_committed["state"]["paid"]["amount_minor"], 54997);

    // A cancellation before shipping is accepted; a pickup after it is refused.
    let early = "EARLY-1";
    accepted(&vendors.create(early));
    accepted(&vendors.cancel(early, t0 + hours(1)));
    accepted(&vendors.scan(early, "PU", t0 + hours(2)));
    let state = vendors.state(early, None, "committed");
    assert_eq!(state["state"]["status"], "cancelled");
    assert_eq!(state["state"]["cancellation"]["reason"], "customer-request");
    assert_eq!(state["refused"][0]["code"], "cancelled");

    // Bad questions get clear answers.
    for (path, status, kind) in [
        (
            format!("/v1/entities/order/{late}?at=yesterday"),
            400,
            "bad-request",
        ),
        (
            format!("/v1/entities/order/{late}?time=wall"),
            400,
            "bad-request",
        ),
        ("/v1/entities/order/NEVER-1".to_owned(), 404, "not-found"),
        ("/v1/entities/parcel/P-1".to_owned(), 404, "no-projector"),
    ] {
        let reply = vendors.get(&path);
        assert_eq!(reply.status, status, "{path}");
        assert!(
            reply.json()["type"]
                .as_str()
                .unwrap_or_default()
                .ends_with(kind),
            "{path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
}

/// A forged payment webhook (a real payment reference, a wrong signature) sent before the
/// gateway's genuine one must not block it, and one sent after must learn nothing of it; an
/// ERP order refused and resent corrected under the same derived key is accepted, and the same
/// refused bytes again get the stored `422`.
#[test]
fn issue_25_a_forged_delivery_never_blocks_the_genuine_one() {
    let (_webhook, _dir, server) = start_domain();
    let vendors = Vendors {
        http: Http::new(),
        server: &server,
    };
    let order = "FORGE-1";
    accepted(&vendors.create(order));
    let at = Timestamp::now();
    let forged = vendors.pay_signed(order, "evt_forged", at, "not-the-secret");
    assert_eq!(
        forged.status,
        422,
        "{}",
        String::from_utf8_lossy(&forged.body)
    );
    assert_eq!(forged.json()["code"], "bad-signature");
    let genuine = accepted(&vendors.pay(order, "evt_1", at));
    let stream = vendors.get(&format!("/v1/entities/order/{order}/events"));
    assert_eq!(stream.status, 200);
    let types: Vec<String> = stream.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["order.created.v1", "order.paid.v1"]);
    // A forgery after it: refused on its own, nothing of the genuine message in the answer.
    let late = vendors.pay_signed(order, "evt_forged_2", at, "not-the-secret");
    assert_eq!(late.status, 422, "{}", String::from_utf8_lossy(&late.body));
    let answer = String::from_utf8_lossy(&late.body).into_owned();
    assert!(
        !answer.contains(&genuine),
        "the forgery's answer names the genuine message: {answer}"
    );
    assert!(!late.headers.contains_key("idempotent-replayed"));

    // An order the ERP got wrong, refused, then resent corrected: same derived key.
    let wrong = tests::seed_order()
        .replacen("SEED-2026-000417", "FIX-1", 1)
        .replacen("\"ord_status\": \"O\"", "\"ord_status\": \"Q\"", 1);
    let refused = vendors.post("orders", "application/json", &[], &wrong);
    assert_eq!(
        refused.status,
        422,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(refused.json()["code"], "unknown-status");
    // The same bytes again: the stored answer, byte for byte.
    let again = vendors.post("orders", "application/json", &[], &wrong);
    assert_eq!(again.status, 422);
    assert_eq!(again.body, refused.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let corrected = tests::seed_order().replacen("SEED-2026-000417", "FIX-1", 1);
    let fixed = accepted(&vendors.post("orders", "application/json", &[], &corrected));
    // Once accepted, the derived key is settled: the corrected order again is a duplicate.
    let dup = vendors.post("orders", "application/json", &[], &corrected);
    assert_eq!(dup.status, 200);
    assert_eq!(dup.json()["message_id"], fixed.as_str());
    // The refused entry's key is settled by the corrected order: replaying it would apply the
    // order twice, and is refused.
    let dlq = vendors.get("/v1/dlq").json();
    let entry = dlq["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "unknown-status")
        .expect("the refused order's dead letter")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let replay = vendors
        .http
        .send(
            "POST",
            &format!("{}/v1/dlq/{entry}/replay", server.url()),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(
        replay.status,
        409,
        "{}",
        String::from_utf8_lossy(&replay.body)
    );
    assert_eq!(replay.json()["message_id"], fixed.as_str());
}

/// An entity id holding `/`, a space, `?` and `%` is one path segment, percent-encoded: the
/// API decodes each segment once, and the command line encodes it.
#[test]
fn issue_25_an_entity_id_with_reserved_characters_is_reachable_by_api_and_cli() {
    let (_webhook, _dir, server) = start_domain();
    let vendors = Vendors {
        http: Http::new(),
        server: &server,
    };
    let order = "A/B C?%";
    let message = accepted(&vendors.create(order));
    let encoded = "A%2FB%20C%3F%25";
    let stream = vendors.get(&format!("/v1/entities/order/{encoded}/events"));
    assert_eq!(
        stream.status,
        200,
        "{}",
        String::from_utf8_lossy(&stream.body)
    );
    let events = stream.json()["events"].clone();
    assert_eq!(events[0]["data"]["id"], order, "{events:#}");
    assert_eq!(
        events[0]["provenance"]["message_id"],
        message.as_str(),
        "{events:#}"
    );
    let state = vendors.get(&format!("/v1/entities/order/{encoded}"));
    assert_eq!(
        state.status,
        200,
        "{}",
        String::from_utf8_lossy(&state.body)
    );
    assert_eq!(state.json()["state"]["status"], "created");
    // The message and its history, by id, the same way.
    let history = vendors.get(&format!("/v1/messages/{message}/history"));
    assert_eq!(history.status, 200);

    let shown = std::process::Command::new(tests::dragoman_bin())
        .args(["entity", "show", "order", order, "--server", &server.url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(text.contains("status: created"), "{text}");
    assert!(text.contains("order.created.v1"), "{text}");
}
