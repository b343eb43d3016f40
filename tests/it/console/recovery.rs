//! The 2 AM story on the console: a bad version activated from the plugins page, its
//! refusals dead-lettered, dry run and replayed through the good version from the dead
//! letters page; a shadow's differences and a canary's standing on the plugins page.

use std::time::Duration;

use tests::browser::{Browser, screenshots_dir};
use tests::net::{Webhook, wait_until};

use super::journey;

/// The 2 AM story on the console: a new version of the orders translator (the test guest
/// `acme-broken`, 3.0.0-broken, which refuses every order whose id ends in an even digit) is
/// activated from the Plugins page after a confirmation that shows its audit entry; the
/// orders it refuses are dead-lettered; one is discarded with a reason from its message's
/// page; on the Dead letters page every entry that matches is selected, a dry run pinned to
/// 1.0.0 shows what each would become and stores nothing, and the replay (entry by entry,
/// with progress) delivers them and empties the page; a replayed message's page shows its
/// journey in order.
#[test]
fn dead_letters_are_selected_dry_run_through_a_kept_version_and_replayed_from_the_console() {
    const ORDERS: usize = 5;
    let webhook = Webhook::start();
    let rig = tests::swap::Swapping::start(&webhook, false);
    let v1 = tests::swap::sha256(&rig.v1);
    let broken = tests::swap::sha256(tests::wasm::ACME_BROKEN.as_ref());
    let wasm = std::fs::read(tests::wasm::ACME_BROKEN).unwrap();
    let kept = rig.call("PUT", "/v1/plugins/acme-erp-orders?activate=false", &wasm);
    assert_eq!(kept.status, 201, "{}", kept.json());
    let dlq = || {
        rig.call("GET", "/v1/dlq", b"").json()["dead_letters"]
            .as_array()
            .unwrap()
            .len()
    };
    let browser = Browser::start();
    let shots = screenshots_dir();

    // An open API (no admin token): the console gives the browser a session at once.
    browser.goto(&rig.url("/console/plugins"));
    browser.wait_text(
        "#plugin-acme-erp-orders .serving",
        Duration::from_secs(10),
        |t| t.contains("orders serves 1.0.0"),
    );
    browser.screenshot(&shots.join("plugins.png"));
    browser.click("#activate-acme-erp-orders-3\\.0\\.0-broken");
    browser.wait_text("#question", Duration::from_secs(10), |t| {
        t.contains("Activate version 3.0.0-broken of acme-erp-orders")
    });
    assert_eq!(rig.active(), v1, "nothing changes before the confirmation");
    browser.click("#confirm");
    let audit = browser.wait_text("#audit", Duration::from_secs(30), |t| {
        t.contains("3.0.0-broken")
    });
    assert!(
        audit.contains("route:orders") && audit.contains("plugin_activated"),
        "{audit}"
    );
    assert_eq!(rig.active(), broken);

    // What the new version refuses is dead-lettered; what it reads goes through.
    for n in 0..ORDERS {
        let reply = rig.post(&tests::swap::order(&format!("NIGHT-{}", n * 2)));
        assert_eq!(reply.status, 422, "{}", reply.json());
        assert_eq!(reply.json()["code"], "schema-drift");
    }
    assert_eq!(rig.post(&tests::swap::order("DAY-1")).status, 202);
    // One more, which the operator discards with a reason from its message's page.
    let duplicate = rig.post(&tests::swap::order("DUPLICATE-6"));
    assert_eq!(duplicate.status, 422);
    let duplicate = duplicate.json()["message_id"].as_str().unwrap().to_owned();
    assert_eq!(dlq(), ORDERS + 1);
    browser.goto(&rig.url(&format!("/console/messages/{duplicate}")));
    browser.wait_text("#status", Duration::from_secs(10), |t| {
        t.contains("dead_lettered")
    });
    browser.type_into("#reason", "sent twice by the vendor's retry");
    browser.click("#discard-entry");
    browser.wait_text("#status", Duration::from_secs(10), |t| {
        t.contains("discarded")
    });
    assert_eq!(
        journey(&browser).last().map(String::as_str),
        Some("discarded")
    );
    assert!(
        browser
            .text("#journey")
            .contains("sent twice by the vendor's retry")
    );
    assert_eq!(dlq(), ORDERS);

    // The dead letters the new version made, all selected, dry run pinned to 1.0.0.
    browser.goto(&rig.url("/console/dead-letters?route=orders&plugin=3.0.0-broken"));
    browser.wait_text("#matched", Duration::from_secs(10), |t| {
        t.starts_with(&format!("{ORDERS} match"))
    });
    let listed = browser.text("#dead-letters");
    assert!(
        listed.contains("schema-drift") && listed.contains("acme-erp-orders@3.0.0-broken"),
        "each entry's fault and provenance: {listed}"
    );
    browser.screenshot(&shots.join("dead-letters.png"));
    browser.click("#select-all");
    browser.execute("document.querySelector('#version').value = '1.0.0'; return null");
    browser.click("#dry-run");
    browser.wait_text("#stored", Duration::from_secs(30), |t| {
        t.contains("Nothing was stored")
    });
    let counts = browser.text("#counts");
    assert!(
        counts.contains("acme-erp-orders@1.0.0")
            && counts.contains(&format!("{ORDERS} would_accept")),
        "{counts}"
    );
    let outcomes = browser.text("#outcomes");
    for n in 0..ORDERS {
        assert!(outcomes.contains(&format!("NIGHT-{}", n * 2)), "{outcomes}");
    }
    browser.screenshot(&shots.join("dry-run.png"));
    assert_eq!(dlq(), ORDERS, "a dry run stores nothing");
    assert_eq!(webhook.received().len(), 1, "and delivers nothing");

    // The page's script replays them one by one, counting as it goes.
    browser.click("#replay-now");
    browser.wait_text("#progress", Duration::from_secs(60), |t| {
        t == format!("Replayed {ORDERS} of {ORDERS}.")
    });
    browser.wait_text("#counts", Duration::from_secs(10), |t| {
        t.contains(&format!("{ORDERS} accepted"))
    });
    wait_until(
        Duration::from_secs(30),
        "every replayed order delivered",
        || webhook.received().len() == ORDERS + 1,
    );
    let through_v1 = webhook
        .received()
        .iter()
        .filter(|r| r.plugin_sha256 == v1)
        .count();
    assert_eq!(
        through_v1, ORDERS,
        "each through the version it was pinned to"
    );
    assert_eq!(dlq(), 0);

    // A replayed message's page: its journey in order, from the refusal to the delivery.
    browser.click("#outcomes tr.outcome a");
    browser.wait_text("#status", Duration::from_secs(10), |t| {
        t.contains("published")
    });
    let kinds = journey(&browser);
    let story = [
        "received",
        "rejected",
        "dead_lettered",
        "replayed",
        "translated",
        "committed",
        "publish_succeeded",
    ];
    let mut at = 0;
    for kind in story {
        let found = kinds[at..].iter().position(|k| k == kind);
        assert!(found.is_some(), "{kind} after step {at} of {kinds:?}");
        at += found.unwrap() + 1;
    }
    let steps = browser.text("#journey");
    assert!(
        steps.contains("acme-erp-orders@3.0.0-broken") && steps.contains("acme-erp-orders@1.0.0"),
        "{steps}"
    );
    browser.screenshot(&shots.join("message.png"));

    browser.goto(&rig.url("/console/dead-letters?route=orders"));
    browser.wait_text("#matched", Duration::from_secs(10), |t| {
        t.starts_with("0 match")
    });
}

/// The plugins page while 2.0.0 runs in shadow (each difference side by side: what 1.0.0
/// refused, what 2.0.0 made of it), then as a canary started from the page (its failure rate
/// against the active version's), then rolled back.
#[test]
fn the_plugins_page_shows_a_shadow_side_by_side_and_a_canary_against_the_active_version() {
    let webhook = Webhook::start();
    let rig = tests::swap::Swapping::start(&webhook, false);
    let wasm = std::fs::read(&rig.v2).unwrap();
    let shadowing = rig.call("PUT", "/v1/plugins/acme-erp-orders?shadow=true", &wasm);
    assert_eq!(shadowing.status, 201, "{}", shadowing.json());
    for n in 0..2 {
        assert_eq!(
            rig.post(&tests::swap::order_v2(&format!("V2-{n}"))).status,
            422
        );
        assert_eq!(
            rig.post(&tests::swap::order(&format!("V1-{n}"))).status,
            202
        );
    }
    let shadow = || {
        rig.call("GET", "/v1/plugins/acme-erp-orders/shadow", b"")
            .json()
    };
    wait_until(Duration::from_secs(30), "the shadow compares four", || {
        shadow()["shadow"]["orders"]["compared"].as_u64() >= Some(4)
    });

    let browser = Browser::start();
    browser.goto(&rig.url("/console/plugins"));
    let report = browser.wait_text("#shadow-orders", Duration::from_secs(10), |t| {
        t.contains("4 compared, 2 the same, 2 different, 0 dropped")
    });
    let differences = browser.execute(
        "return [...document.querySelectorAll('#shadow-orders tr.difference')]\
         .map(r => [...r.querySelectorAll('pre')].map(p => p.textContent))",
    );
    let rows = differences.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    for row in rows {
        assert!(row[0].as_str().unwrap().contains("missing-field"), "{row}");
        assert!(
            row[1].as_str().unwrap().contains("order.created.v1"),
            "{row}"
        );
    }
    browser.screenshot(&screenshots_dir().join("plugins-shadow.png"));
    assert_eq!(
        rig.call("DELETE", "/v1/plugins/acme-erp-orders/shadow", b"")
            .status,
        200
    );

    // A canary of 2.0.0 on half the messages, started from the page.
    browser.goto(&rig.url("/console/plugins"));
    browser.click("#canary-acme-erp-orders-2\\.0\\.0");
    browser.wait_text("#question", Duration::from_secs(10), |t| {
        t.contains("Start a canary of version 2.0.0")
    });
    browser.execute("document.querySelector('#percent').value = '50'; return null");
    browser.click("#confirm");
    browser.wait_text("#answer", Duration::from_secs(30), |t| t.contains("canary"));
    for n in 0..20 {
        assert_eq!(rig.post(&tests::swap::order(&format!("C-{n}"))).status, 202);
    }
    browser.goto(&rig.url("/console/plugins"));
    let canary = browser.wait_text("#canary-orders", Duration::from_secs(10), |t| {
        t.contains("Canary 2.0.0 on 50% of orders: failures 0.0% of")
    });
    assert!(canary.contains("against 1.0.0's 0.0% of"), "{canary}");
    browser.screenshot(&screenshots_dir().join("plugins-canary.png"));

    // Rolled back: the canary ends.
    browser.click("#rollback-acme-erp-orders");
    browser.click("#confirm");
    browser.wait_text("#answer", Duration::from_secs(30), |t| !t.is_empty());
    browser.goto(&rig.url("/console/plugins"));
    browser.wait_text(
        "#plugin-acme-erp-orders .serving",
        Duration::from_secs(10),
        |t| t.contains("orders serves 1.0.0"),
    );
    assert_eq!(
        browser.text("#canary-orders"),
        "",
        "no canary after the rollback"
    );
}
