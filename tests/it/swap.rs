//! Hot swap: a route's plugin activated again and again while messages flow (issue 11, a
//! first step: activation through the library, `Host::activate`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dragoman::outcome::Activated;
use tests::net::{self, Webhook, wait_until};
use tests::vendor::VendorStub;
use tests::wasm;

use crate::commands::Rig;

fn order(id: &str) -> String {
    format!(
        r#"{{"ord_id": "{id}", "ord_status": "O", "line_items": [{{"sku": "S", "qty": 2, "unit_prc": "1.25"}}]}}"#
    )
}

#[test]
fn issue_11_swapping_the_plugin_ten_times_under_load_fails_no_message_and_each_has_one_version() {
    let rust = wasm::ACME_ERP_ORDERS;
    let python = tests::built(wasm::ACME_ERP_ORDERS_PY, wasm::ACME_ERP_ORDERS_PY_BUILD);
    let webhook = Webhook::start();
    let routes = format!("[routes.orders]\nplugin = \"{rust}\"\nsinks = [\"hook\"]\n");
    let rig = Rig::start(&VendorStub::start(), &webhook.sink_table("hook"), &routes);

    // Four clients post distinct orders until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/v1/routes/orders/messages", rig.base);
    let mut clients = Vec::new();
    for c in 0..4 {
        let (client, url, stop, accepted) = (
            rig.http.client(),
            url.clone(),
            stop.clone(),
            accepted.clone(),
        );
        clients.push(rig.http.runtime().spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 5_000 {
                n += 1;
                let body = order(&format!("SW-{c}-{n}")).into_bytes();
                let reply = net::send(
                    &client,
                    "POST",
                    &url,
                    &[("content-type", "application/json")],
                    body,
                )
                .await
                .unwrap();
                if reply.status == 202 {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
                statuses.push(reply.status);
            }
            statuses
        }));
    }

    let mut swapped = Vec::new();
    for i in 0..10 {
        let seen = accepted.load(Ordering::SeqCst);
        wait_until(
            Duration::from_secs(30),
            "messages flow between swaps",
            || accepted.load(Ordering::SeqCst) >= seen + 20,
        );
        let file = if i % 2 == 0 { python } else { rust };
        match rig
            .http
            .runtime()
            .block_on(rig.host.activate("orders", file))
        {
            Activated::Swapped { from, to, .. } => swapped.push((from.sha256, to.sha256)),
            other => panic!("swap {i}: {other:?}"),
        }
    }
    // A candidate that is not a component is refused, and the active version keeps serving.
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"not wasm").unwrap();
    let refused = rig
        .http
        .runtime()
        .block_on(rig.host.activate("orders", junk.path()));
    assert!(matches!(refused, Activated::Refused { .. }), "{refused:?}");
    let seen = accepted.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(30),
        "messages flow after the refusal",
        || accepted.load(Ordering::SeqCst) >= seen + 20,
    );
    stop.store(true, Ordering::SeqCst);
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| rig.http.runtime().block_on(c).unwrap())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 202),
        "every request accepted: {:?}",
        {
            let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
            for s in &statuses {
                *counts.entry(*s).or_default() += 1;
            }
            counts
        }
    );

    // Nothing lost; each message's events come from one version, as their provenance says.
    wait_until(
        Duration::from_secs(60),
        "every event reaches the sink",
        || webhook.counts().len() >= statuses.len(),
    );
    let shas: BTreeSet<String> = swapped
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    assert_eq!(shas.len(), 2, "two versions took turns");
    let mut by_message: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in webhook.received() {
        assert!(
            shas.contains(&event.plugin_sha256),
            "{}",
            event.plugin_sha256
        );
        let message = event.headers["ce-correlationid"]
            .to_str()
            .unwrap()
            .to_owned();
        by_message
            .entry(message)
            .or_default()
            .insert(event.plugin_sha256);
    }
    assert_eq!(
        by_message.len(),
        statuses.len(),
        "one message per accepted request"
    );
    assert!(by_message.values().all(|v| v.len() == 1));
    let versions: BTreeSet<&String> = by_message.values().flatten().collect();
    assert_eq!(versions.len(), 2, "both versions served messages");

    // Every activation is in the route's audit stream, with both hashes.
    let history = rig
        .http
        .runtime()
        .block_on(rig.host.history("route:orders"))
        .unwrap();
    assert_eq!(history.len(), 10);
    for (event, (from, to)) in history.iter().zip(&swapped) {
        assert_eq!(event.kind, "plugin_activated");
        assert_eq!(
            (&event.data["from_sha256"], &event.data["to_sha256"]),
            (&serde_json::json!(from), &serde_json::json!(to))
        );
    }
}
