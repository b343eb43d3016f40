use dragoman::fixtures::{self, Verdict};
use tests::wasm;

fn all_pass(plugin: &str, dir: &str) -> usize {
    tests::passes_fixtures(plugin, dir)
}

#[test]
fn acme_erp_orders_passes_its_fixtures() {
    let n = all_pass(wasm::ACME_ERP_ORDERS, wasm::ACME_ERP_ORDERS_FIXTURES);
    assert!(n >= 25, "expected the full fixture set, found {n}");
}

/// A reused instance of the seed translator keeps no state that grows: its linear memory
/// after 10,000 messages is what it was after one (the translate bench prints the time per
/// call against the call's ordinal too).
#[test]
fn issue_25_a_reused_instance_s_memory_stays_flat_over_10_000_calls() {
    tests::reused_memory_stays_flat(wasm::ACME_ERP_ORDERS, 10_000);
}

#[test]
fn acme_erp_orders_v2_passes_its_fixtures() {
    let n = all_pass(wasm::ACME_ERP_ORDERS_V2, wasm::ACME_ERP_ORDERS_V2_FIXTURES);
    assert!(n >= 15, "expected the full fixture set, found {n}");
}

#[test]
fn both_versions_give_the_same_domain_event_for_the_same_order() {
    let v1 = tests::load(wasm::ACME_ERP_ORDERS);
    let v2 = tests::load(wasm::ACME_ERP_ORDERS_V2);
    let config = std::sync::Arc::new(dragoman::plugin::PluginConfig::new());
    let dir = std::path::Path::new(wasm::ACME_ERP_ORDERS_FIXTURES);
    let v1_body = std::fs::read_to_string(dir.join("open.input.json")).unwrap();
    let dir = std::path::Path::new(wasm::ACME_ERP_ORDERS_V2_FIXTURES);
    let v2_body = std::fs::read_to_string(dir.join("open.input.json")).unwrap();
    let a = v1
        .translate(&tests::message(&v1_body), config.clone())
        .unwrap()
        .unwrap();
    let b = v2
        .translate(&tests::message(&v2_body), config)
        .unwrap()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        v1.info().name,
        v2.info().name,
        "v2 is a new version of the same plugin"
    );
    assert_ne!(v1.info().version, v2.info().version);
}

#[test]
fn v2_translates_every_v1_fixture_message_as_v1_does() {
    let v1 = tests::load(wasm::ACME_ERP_ORDERS);
    let v2 = tests::load(wasm::ACME_ERP_ORDERS_V2);
    let mut compared = 0;
    for fixture in fixtures::discover(wasm::ACME_ERP_ORDERS_FIXTURES.as_ref()).unwrap() {
        let expected: serde_json::Value = serde_json::from_slice(&fixture.expected.bytes).unwrap();
        let config: dragoman::plugin::PluginConfig =
            serde_json::from_value(expected["config"].clone()).unwrap_or_default();
        let config = std::sync::Arc::new(config);
        let content_type = fixtures::content_type_for(&fixture.input.path).map(str::to_owned);
        let message = dragoman::plugin::VendorMessage {
            content_type,
            body: fixture.input.bytes.clone(),
            ..tests::message("")
        };
        let a = v1.translate(&message, config.clone()).unwrap();
        // A v1 message the v1 translator refuses is one v2 may read as v2 (and refuse
        // differently); every message v1 accepts, v2 translates the same.
        if let Ok(events) = a {
            let b = v2.translate(&message, config).unwrap();
            assert_eq!(Some(events), b.ok(), "{}", fixture.name);
            compared += 1;
        }
    }
    assert!(compared >= 8, "{compared} accepted fixtures compared");
}

#[test]
fn a_wrong_expectation_fails_with_a_diff() {
    let plugin = tests::load(wasm::ACME_ERP_ORDERS);
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(wasm::ACME_ERP_ORDERS_FIXTURES);
    std::fs::copy(
        source.join("open.input.json"),
        dir.path().join("open.input.json"),
    )
    .unwrap();
    let expected = std::fs::read_to_string(source.join("open.expected.json")).unwrap();
    std::fs::write(
        dir.path().join("open.expected.json"),
        expected.replace("1250", "1249"),
    )
    .unwrap();
    let found = fixtures::discover(dir.path()).unwrap();
    match fixtures::run(&plugin, &found[0]).unwrap() {
        Verdict::Fail { diff } => {
            assert!(
                diff.contains("-") && diff.contains("1249") && diff.contains("+"),
                "{diff}"
            );
            assert!(
                diff.lines()
                    .any(|l| l.starts_with('+') && l.contains("1250")),
                "{diff}"
            );
        }
        Verdict::Pass => panic!("a wrong expectation passed"),
    }
}

#[test]
fn malformed_fixture_directories_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        fixtures::discover(dir.path()).is_err(),
        "an empty directory has no fixtures"
    );
    std::fs::write(dir.path().join("a.input.json"), "{}").unwrap();
    let error = fixtures::discover(dir.path()).unwrap_err().to_string();
    assert!(error.contains("a.expected.json"), "{error}");
    std::fs::write(
        dir.path().join("a.expected.json"),
        r#"{"events": [], "surprise": 1}"#,
    )
    .unwrap();
    let found = fixtures::discover(dir.path()).unwrap();
    let plugin = tests::load(wasm::ACME_ERP_ORDERS);
    let error = fixtures::run(&plugin, &found[0]).unwrap_err().to_string();
    assert!(error.contains("surprise"), "{error}");
}

#[test]
fn issue_12_a_misspelt_key_at_any_level_of_a_fixture_is_an_error_naming_it() {
    let plugin = tests::load(wasm::ACME_ERP_ORDERS);
    let outbound = tests::load(wasm::ACME_ERP_ORDERS_V2);
    let event = r#"{"type": "order.created.v1", "subject": "A", "partition_key": "A", "data": {}}"#;
    let misspelt_event = event.replace(r#""type""#, r#""event_type""#);
    for (plugin, input, expected, named) in [
        (
            &plugin,
            "a.input.json",
            format!(r#"{{"events": [{misspelt_event}]}}"#),
            "events[0].event_type: unknown field `event_type`",
        ),
        (
            &plugin,
            "a.input.json",
            r#"{"error": {"kind": "rejected", "code": "x", "mesage": "typo"}}"#.to_owned(),
            "error.mesage: unknown field `mesage`",
        ),
        (
            &plugin,
            "a.input.json",
            r#"{"error": {"kind": "refused", "code": "x"}}"#.to_owned(),
            "error.kind: unknown variant `refused`",
        ),
        (
            &plugin,
            "a.input.json",
            r#"{"events": [{"type": "order.created.v1", "subject": "A", "data": {}}]}"#.to_owned(),
            "events[0]: missing field `partition_key`",
        ),
        (
            &outbound,
            "a.command.json",
            r#"{"request": {"method": "GET", "path": "/", "header": []}}"#.to_owned(),
            "request.header: unknown field `header`",
        ),
        (
            &outbound,
            "a.command.json",
            format!(
                r#"{{"request": {{"method": "GET", "path": "/"}}, "response": {{"status": 200}}, "events": [{misspelt_event}]}}"#
            ),
            "events[0].event_type: unknown field `event_type`",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let body = if input.ends_with(".command.json") {
            r#"{"type": "order.get.v1", "subject": "A-1"}"#
        } else {
            "{}"
        };
        std::fs::write(dir.path().join(input), body).unwrap();
        std::fs::write(dir.path().join("a.expected.json"), &expected).unwrap();
        let found = fixtures::discover(dir.path()).unwrap();
        let error = fixtures::run(plugin, &found[0]).unwrap_err().to_string();
        assert!(error.contains(named), "{expected}: {error}");
    }
}

#[test]
fn issue_10_the_v2_plugin_s_outbound_fixtures_check_both_halves() {
    let plugin = tests::load(wasm::ACME_ERP_ORDERS_V2);
    let source = std::path::Path::new(wasm::ACME_ERP_ORDERS_V2_FIXTURES);
    let found = fixtures::discover(source).unwrap();
    let outbound: Vec<_> = found
        .iter()
        .filter(|f| f.input.path.to_string_lossy().ends_with(".command.json"))
        .collect();
    assert!(outbound.len() >= 8, "outbound fixtures: {}", outbound.len());
    for fixture in &outbound {
        assert_eq!(
            fixtures::run(&plugin, fixture).unwrap(),
            Verdict::Pass,
            "{}",
            fixture.name
        );
    }

    // A wrong request (the encode half) and a wrong event (the decode half) each fail.
    let expected = std::fs::read_to_string(source.join("cancel.expected.json")).unwrap();
    for (wrong, shown) in [
        (
            expected.replace("/cancellation", "/cancel"),
            "/cancellation",
        ),
        (
            expected.replace("order.cancelled.v1", "order.canceled.v1"),
            "order.cancelled.v1",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            source.join("cancel.command.json"),
            dir.path().join("cancel.command.json"),
        )
        .unwrap();
        std::fs::write(dir.path().join("cancel.expected.json"), wrong).unwrap();
        let found = fixtures::discover(dir.path()).unwrap();
        match fixtures::run(&plugin, &found[0]).unwrap() {
            Verdict::Fail { diff } => assert!(
                diff.lines()
                    .any(|l| l.starts_with('+') && l.contains(shown)),
                "{diff}"
            ),
            Verdict::Pass => panic!("a wrong expectation passed"),
        }
    }
}

#[test]
fn issue_13_the_payment_gateway_translator_passes_its_fixtures() {
    let n = all_pass(wasm::PAYLANE_PAYMENTS, wasm::PAYLANE_PAYMENTS_FIXTURES);
    assert_eq!(n, 13);
}

#[test]
fn issue_13_the_erp_cancellations_translator_passes_its_fixtures() {
    let n = all_pass(
        wasm::ACME_ERP_CANCELLATIONS,
        wasm::ACME_ERP_CANCELLATIONS_FIXTURES,
    );
    assert_eq!(n, 7);
}

#[test]
fn issue_13_the_python_carrier_translator_passes_its_fixtures() {
    let plugin = tests::built(
        wasm::SWIFTSHIP_TRACKING_PY,
        wasm::SWIFTSHIP_TRACKING_PY_BUILD,
    );
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/swiftship-tracking-py/fixtures"
    );
    assert_eq!(all_pass(plugin, dir), 7);
}

/// The order fold through `dragoman plugin test`, as its author runs it, and a wrong
/// expectation fails with the diff.
#[test]
fn issue_13_the_order_fold_passes_its_fixtures_through_plugin_test() {
    let run = |fixtures: &str| {
        std::process::Command::new(tests::dragoman_bin())
            .args(["plugin", "test", wasm::ORDER_FOLD, fixtures])
            .output()
            .unwrap()
    };
    let out = run(wasm::ORDER_FOLD_FIXTURES);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with("14 passed, 0 failed\n"), "{text}");
    assert!(text.contains("ok   cancel-after-shipping"), "{text}");

    let wrong = tempfile::tempdir().unwrap();
    let from = std::path::Path::new(wasm::ORDER_FOLD_FIXTURES);
    std::fs::copy(
        from.join("a-day-in-order.events.json"),
        wrong.path().join("day.events.json"),
    )
    .unwrap();
    std::fs::write(
        wrong.path().join("day.expected.json"),
        r#"{"state": {"status": "paid"}, "refused": [{"seq": 3, "code": "already-shipped"}]}"#,
    )
    .unwrap();
    let out = run(wrong.path().to_str().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL day"), "{text}");
    assert!(text.contains("+    \"status\": \"shipped\""), "{text}");

    let checked = std::process::Command::new(tests::dragoman_bin())
        .args(["plugin", "check", wasm::ORDER_FOLD])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(text.contains("entity type:        order"), "{text}");
    assert!(text.contains("dragoman:projector@0.1.0"), "{text}");
}
