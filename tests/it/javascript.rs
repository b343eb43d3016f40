//! The JavaScript translator: the same fixtures as the Rust one through the same runtime, a
//! stray `throw` reported as a fault with its message, and instance reuse.

use std::sync::Arc;

use dragoman::fixtures::{self, Verdict};
use dragoman::plugin::{FaultKind, Instances, PluginConfig};
use tests::wasm;

fn orders_js() -> &'static str {
    tests::built(wasm::ACME_ERP_ORDERS_JS, wasm::ACME_ERP_ORDERS_JS_BUILD)
}

#[test]
fn the_javascript_translator_passes_the_rust_translators_fixtures() {
    let plugin = tests::load(orders_js());
    assert_eq!(plugin.info().name, "acme-erp-orders");
    let found = fixtures::discover(wasm::ACME_ERP_ORDERS_FIXTURES.as_ref()).unwrap();
    let failures: Vec<String> = found
        .iter()
        .filter_map(|fixture| match fixtures::run(&plugin, fixture).unwrap() {
            Verdict::Pass => None,
            Verdict::Fail { diff } => Some(format!("{}:\n{diff}", fixture.name)),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(found.len() >= 25);
}

#[test]
fn a_stray_javascript_throw_is_a_fault_with_its_message_and_the_next_message_is_served() {
    let plugin = tests::load(tests::built(wasm::JS_STRAY, wasm::JS_STRAY_BUILD));
    let config = Arc::new(PluginConfig::new());
    let fault = plugin
        .translate(&tests::message("boom"), config.clone())
        .unwrap_err();
    assert_eq!(fault.plugin().name, "js-stray");
    match fault.kind() {
        FaultKind::Trap { message, .. } => {
            assert!(
                message.contains("plugin fault: TypeError: stray bug on a boom"),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    let events = plugin
        .translate(&tests::message("{}"), config)
        .unwrap()
        .unwrap();
    assert_eq!(events[0].event_type, "js.seen.v1");
}

#[test]
fn a_reused_javascript_instance_gives_the_same_output() {
    let plugin = tests::load(orders_js());
    let instances = Instances::new(plugin.clone(), Arc::new(PluginConfig::new()), 10);
    let fresh = plugin
        .translate(&tests::message(tests::seed_order()), Arc::default())
        .unwrap()
        .unwrap();
    for _ in 0..5 {
        let reused = instances
            .get()
            .unwrap()
            .translate(&tests::message(tests::seed_order()))
            .unwrap()
            .unwrap();
        assert_eq!(reused, fresh);
    }
}
