//! The Python translator: the same fixtures as the Rust one through the same runtime, a
//! stray exception reported as a fault with its message, and instance reuse.

use std::sync::Arc;

use dragoman::plugin::{FaultKind, PluginConfig};
use tests::wasm;

fn orders_py() -> &'static str {
    tests::built(wasm::ACME_ERP_ORDERS_PY, wasm::ACME_ERP_ORDERS_PY_BUILD)
}

#[test]
fn the_python_translator_passes_the_rust_translators_fixtures() {
    assert_eq!(tests::load(orders_py()).info().name, "acme-erp-orders");
    let n = tests::passes_fixtures(orders_py(), wasm::ACME_ERP_ORDERS_FIXTURES);
    assert!(n >= 25, "the full fixture set, found {n}");
}

#[test]
fn a_stray_python_exception_is_a_fault_with_its_message_file_and_line_and_the_next_message_is_served()
 {
    let plugin = tests::load(tests::built(wasm::PY_STRAY, wasm::PY_STRAY_BUILD));
    let config = Arc::new(PluginConfig::new());
    let fault = plugin
        .translate(&tests::message("boom"), config.clone())
        .unwrap_err();
    assert_eq!(fault.plugin().name, "py-stray");
    match fault.kind() {
        // The SDK's wrapper keeps where it happened: the file and line of the raise.
        FaultKind::Trap { message, .. } => assert!(
            message.contains(
                "plugin fault: ValueError: stray bug on a boom (app.py, line 20, in check)"
            ),
            "{message}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(fault.to_string().contains("py-stray@0.0.1"), "{fault}");
    let events = plugin
        .translate(&tests::message("{}"), config)
        .unwrap()
        .unwrap();
    assert_eq!(events[0].event_type, "py.seen.v1");
}

#[test]
fn a_reused_python_instance_gives_the_same_output() {
    tests::reuse_gives_the_fresh_output(orders_py());
}

#[test]
fn issue_25_a_reused_python_instance_s_memory_stays_flat_over_10_000_calls() {
    tests::reused_memory_stays_flat(orders_py(), 10_000);
}

#[test]
fn the_python_translator_agrees_with_the_rust_translator_on_generated_orders() {
    tests::agrees_with_the_rust_translator(orders_py(), 400);
}

#[test]
fn issue_12_event_data_of_the_wrong_type_is_a_fault_naming_the_field_not_a_panic() {
    let plugin = tests::load(tests::built(wasm::PY_STRAY, wasm::PY_STRAY_BUILD));
    let fault = plugin
        .translate(&tests::message("dict"), Arc::new(PluginConfig::new()))
        .unwrap_err();
    match fault.kind() {
        FaultKind::Trap { message, .. } => {
            assert!(
                message.contains(
                    "plugin fault: OutputError: events[0].data is a dict: it must be a str"
                ),
                "{message}"
            );
            assert!(!message.contains("panicked"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}
