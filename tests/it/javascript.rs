//! The JavaScript translator: the same fixtures as the Rust one through the same runtime, a
//! stray `throw` reported as a fault with its message, and instance reuse.

use std::sync::Arc;

use dragoman::plugin::{FaultKind, PluginConfig};
use tests::wasm;

fn orders_js() -> &'static str {
    tests::built(wasm::ACME_ERP_ORDERS_JS, wasm::ACME_ERP_ORDERS_JS_BUILD)
}

#[test]
fn the_javascript_translator_passes_the_rust_translators_fixtures() {
    assert_eq!(tests::load(orders_js()).info().name, "acme-erp-orders");
    let n = tests::passes_fixtures(orders_js(), wasm::ACME_ERP_ORDERS_FIXTURES);
    assert!(n >= 25, "the full fixture set, found {n}");
}

#[test]
fn a_stray_javascript_throw_is_a_fault_with_its_message_file_and_line_and_the_next_message_is_served()
 {
    let plugin = tests::load(tests::built(wasm::JS_STRAY, wasm::JS_STRAY_BUILD));
    let config = Arc::new(PluginConfig::new());
    let fault = plugin
        .translate(&tests::message("boom"), config.clone())
        .unwrap_err();
    assert_eq!(fault.plugin().name, "js-stray");
    match fault.kind() {
        FaultKind::Trap { message, .. } => {
            assert!(
                message.contains(
                    "plugin fault: TypeError: stray bug on a boom (app.js, line 17, in check)"
                ),
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
    tests::reuse_gives_the_fresh_output(orders_js());
}

/// The JavaScript runtime grows its heap with the messages a reused instance sees (about
/// 3.6 KiB a seed order, to some 95 MiB before it collects): the pool hands out a fresh
/// instance once one has grown past half the memory cap, so 10,000 messages through a pool
/// that reuses without end never meet the cap.
#[test]
fn issue_25_a_reused_javascript_instance_is_retired_before_its_heap_meets_the_cap() {
    let plugin = tests::load(orders_js());
    let cap = tests::test_limits().memory;
    let instances = dragoman::plugin::Instances::new(plugin, std::sync::Arc::default(), u32::MAX);
    let message = tests::message(tests::seed_order());
    let mut fresh = 0;
    let mut last = usize::MAX;
    for _ in 0..10_000 {
        let mut lease = instances.get().expect("an instance");
        lease
            .translate(&message)
            .expect("no fault")
            .expect("translates");
        let memory = lease.memory_bytes();
        assert!(memory <= cap, "{memory} bytes");
        if memory < last {
            fresh += 1;
        }
        last = memory;
    }
    assert!(fresh > 1, "instances were retired as their heap grew");
}

#[test]
fn the_javascript_translator_agrees_with_the_rust_translator_on_generated_orders() {
    tests::agrees_with_the_rust_translator(orders_js(), 400);
}

#[test]
fn issue_12_event_data_of_the_wrong_type_is_a_fault_naming_the_field_not_a_panic() {
    let plugin = tests::load(tests::built(wasm::JS_STRAY, wasm::JS_STRAY_BUILD));
    let fault = plugin
        .translate(&tests::message("object"), Arc::new(PluginConfig::new()))
        .unwrap_err();
    match fault.kind() {
        FaultKind::Trap { message, .. } => {
            assert!(
                message.contains(
                    "plugin fault: OutputError: events[0].data is object: it must be a string"
                ),
                "{message}"
            );
            assert!(!message.contains("panicked"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}
