//! Each misbehaving guest fails its call with the right typed fault, within its limit, and
//! the next call on the same runtime succeeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dragoman::plugin::{Fault, FaultKind, LoadError, Plugin, PluginConfig, Runtime};
use tests::wasm;

/// Every guest of `tests/guests` has a module here.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
tests::foreach_guest!(assert_test_exists);

fn config() -> Arc<PluginConfig> {
    Arc::new(PluginConfig::new())
}

fn fault_of(plugin: &Plugin) -> Fault {
    match plugin.translate(&tests::message("{}"), config()) {
        Err(fault) => fault,
        Ok(outcome) => panic!("{} did not fault: {outcome:?}", plugin.id()),
    }
}

/// The runtime still serves: a well-behaved plugin translates right after the fault.
fn still_serving() {
    let plugin = tests::load(wasm::ACME_ERP_ORDERS);
    let events = plugin
        .translate(&tests::message(tests::seed_order()), config())
        .unwrap()
        .unwrap();
    assert_eq!(events.len(), 1);
}

fn names_plugin(fault: &Fault, name: &str) {
    let text = fault.to_string();
    assert!(
        text.contains(&format!("{name}@0.0.1")),
        "the fault names the plugin and version: {text}"
    );
    assert_eq!(fault.plugin().name, name);
}

mod acme_broken {
    use super::*;

    #[test]
    fn names_itself_acme_erp_orders_and_refuses_the_orders_it_misreads() {
        let plugin = tests::load(wasm::ACME_BROKEN);
        assert_eq!(plugin.info().name, "acme-erp-orders");
        let order = |id: &str| {
            tests::message(&format!(
                r#"{{"ord_id": "{id}", "ord_status": "O", "line_items": [{{"sku": "S", "qty": 1, "unit_prc": "1"}}]}}"#
            ))
        };
        let refused = plugin.translate(&order("B-2"), config()).unwrap();
        assert!(
            matches!(&refused, Err(dragoman::plugin::TranslateError::Rejected(f)) if f.code == "schema-drift"),
            "{refused:?}"
        );
        let events = plugin.translate(&order("B-3"), config()).unwrap().unwrap();
        assert_eq!(events.len(), 1);
    }
}

mod endless_loop {
    use super::*;

    #[test]
    fn is_interrupted_at_its_deadline_and_the_runtime_keeps_serving() {
        let plugin = tests::load(wasm::ENDLESS_LOOP);
        let deadline = tests::test_limits().deadline;
        let started = Instant::now();
        let fault = fault_of(&plugin);
        let took = started.elapsed();
        assert_eq!(fault.kind(), &FaultKind::Deadline { limit: deadline });
        names_plugin(&fault, "endless-loop");
        assert!(
            took >= deadline,
            "interrupted after {took:?}, before the deadline {deadline:?}"
        );
        assert!(
            took < deadline + Duration::from_secs(2),
            "interrupted only after {took:?}"
        );
        still_serving();
        // The same plugin is usable again too: the fault discarded only that instance.
        assert!(matches!(
            fault_of(&plugin).kind(),
            FaultKind::Deadline { .. }
        ));
    }
}

mod memory_bomb {
    use super::*;

    #[test]
    fn stops_at_the_memory_cap() {
        let plugin = tests::load(wasm::MEMORY_BOMB);
        let fault = fault_of(&plugin);
        let cap = tests::test_limits().memory;
        match fault.kind() {
            FaultKind::Memory { requested, limit } => {
                assert_eq!(*limit, cap);
                assert!(*requested > cap, "asked for {requested}, cap {cap}");
            }
            other => panic!("expected a memory fault, got {other:?}"),
        }
        names_plugin(&fault, "memory-bomb");
        still_serving();
    }
}

mod panic {
    use super::*;

    #[test]
    fn is_a_trap_that_carries_the_panic_message() {
        let plugin = tests::load(wasm::PANIC);
        let fault = fault_of(&plugin);
        match fault.kind() {
            FaultKind::Trap { message, backtrace } => {
                assert!(
                    message.contains("boom: cannot handle message test-message"),
                    "{message}"
                );
                assert!(message.contains("unreachable"), "{message}");
                assert!(
                    backtrace
                        .as_deref()
                        .is_some_and(|b| b.contains("translate")),
                    "{backtrace:?}"
                );
            }
            other => panic!("expected a trap, got {other:?}"),
        }
        names_plugin(&fault, "panic");
        still_serving();
    }
}

mod huge_output {
    use super::*;

    #[test]
    fn is_refused_over_the_output_cap() {
        let plugin = tests::load(wasm::HUGE_OUTPUT);
        let fault = fault_of(&plugin);
        match fault.kind() {
            FaultKind::Output { size, limit } => {
                assert_eq!(*limit, tests::test_limits().output);
                assert!(*size > 4 << 20, "{size}");
            }
            other => panic!("expected an output fault, got {other:?}"),
        }
        names_plugin(&fault, "huge-output");
        still_serving();
    }
}

mod invalid_output {
    use super::*;

    #[test]
    fn event_data_that_is_not_json_is_refused() {
        let plugin = tests::load(wasm::INVALID_OUTPUT);
        let fault = fault_of(&plugin);
        match fault.kind() {
            FaultKind::InvalidOutput { message } => {
                assert!(message.contains("not JSON"), "{message}")
            }
            other => panic!("expected invalid output, got {other:?}"),
        }
        names_plugin(&fault, "invalid-output");
        still_serving();
    }

    /// The contract's naming rules, checked on every translation: an event type is dotted,
    /// lower case and versioned; a subject is not empty.
    #[test]
    fn issue_12_an_event_typed_order_paid_is_refused_with_the_reason() {
        let plugin = tests::load(wasm::INVALID_OUTPUT);
        for (body, reason) in [
            (
                "type:Order Paid",
                "event 0 has event type \"Order Paid\", which has a segment that does not start with a lower-case letter",
            ),
            ("type:order.paid", "does not end in a schema version"),
            (
                "type:order.paid.v1|subject:",
                "event 0 (order.paid.v1) has an empty subject",
            ),
        ] {
            let fault = plugin
                .translate(&tests::message(body), config())
                .unwrap_err();
            match fault.kind() {
                FaultKind::InvalidOutput { message } => {
                    assert!(message.contains(reason), "{body}: {message}");
                }
                other => panic!("expected invalid output for {body}, got {other:?}"),
            }
            names_plugin(&fault, "invalid-output");
        }
        let events = plugin
            .translate(&tests::message("type:order.paid.v1"), config())
            .unwrap()
            .unwrap();
        assert_eq!(events[0].event_type, "order.paid.v1");
    }

    /// Output the host refuses poisons the instance like a trap: a reused one is not
    /// entered again.
    #[test]
    fn issue_8_invalid_output_discards_a_reused_instance() {
        let plugin = tests::load(wasm::INVALID_OUTPUT);
        let instances = dragoman::plugin::Instances::new(plugin, config(), 10);
        let mut lease = instances.get().unwrap();
        let fault = lease.translate(&tests::message("{}")).unwrap_err();
        assert!(matches!(fault.kind(), FaultKind::InvalidOutput { .. }));
        assert!(
            lease.is_poisoned(),
            "the instance serves again after invalid output"
        );
    }
}

mod counter {
    use super::*;

    #[test]
    fn no_state_survives_between_messages() {
        let plugin = tests::load(wasm::COUNTER);
        for _ in 0..5 {
            let events = plugin
                .translate(&tests::message("{}"), config())
                .unwrap()
                .unwrap();
            assert_eq!(
                events[0].data.get(),
                "1",
                "each message sees a fresh instance"
            );
        }
    }

    #[test]
    fn one_session_is_one_instance() {
        let plugin = tests::load(wasm::COUNTER);
        let mut session = plugin.session(config()).unwrap();
        let first = session.translate(&tests::message("{}")).unwrap().unwrap();
        let second = session.translate(&tests::message("{}")).unwrap().unwrap();
        assert_eq!((first[0].data.get(), second[0].data.get()), ("1", "2"));
    }

    #[test]
    fn a_reused_instance_serves_its_messages_then_is_dropped() {
        let instances = dragoman::plugin::Instances::new(tests::load(wasm::COUNTER), config(), 3);
        let mut seen = Vec::new();
        for _ in 0..7 {
            let mut lease = instances.get().unwrap();
            let events = lease.translate(&tests::message("{}")).unwrap().unwrap();
            seen.push(events[0].data.get().to_owned());
        }
        assert_eq!(
            seen,
            ["1", "2", "3", "1", "2", "3", "1"],
            "state survives up to 3 messages, then a fresh instance"
        );
    }

    #[test]
    fn a_reused_instance_is_dropped_after_a_fault() {
        let instances = dragoman::plugin::Instances::new(tests::load(wasm::COUNTER), config(), 100);
        let count = |instances: &dragoman::plugin::Instances| {
            let mut lease = instances.get().unwrap();
            lease.translate(&tests::message("{}")).unwrap().unwrap()[0]
                .data
                .get()
                .to_owned()
        };
        assert_eq!(count(&instances), "1");
        assert_eq!(count(&instances), "2");
        let fault = instances
            .get()
            .unwrap()
            .translate(&tests::message("panic"))
            .unwrap_err();
        assert!(
            fault
                .to_string()
                .contains("asked to panic after 3 messages"),
            "{fault}"
        );
        assert_eq!(count(&instances), "1", "the trapped instance was discarded");
    }

    #[test]
    fn a_reused_instance_gets_a_whole_deadline_per_call() {
        // Ten calls on one instance take longer than one deadline together.
        let instances =
            dragoman::plugin::Instances::new(tests::load(wasm::COUNTER), config(), 1000);
        let started = std::time::Instant::now();
        let mut n = 0;
        while started.elapsed() < tests::test_limits().deadline * 2 {
            let mut lease = instances.get().unwrap();
            assert!(lease.translate(&tests::message("{}")).unwrap().is_ok());
            n += 1;
            assert!(n < 10_000_000, "bounded");
        }
    }

    #[test]
    fn concurrent_calls_each_get_their_own_instance() {
        let plugin = tests::load(wasm::COUNTER);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..20)
                            .map(|_| {
                                plugin
                                    .translate(&tests::message("{}"), config())
                                    .unwrap()
                                    .unwrap()
                            })
                            .all(|events| events[0].data.get() == "1")
                    })
                })
                .collect();
            assert!(handles.into_iter().all(|h| h.join().unwrap()));
        });
    }
}

mod sandbox_probe {
    use super::*;

    #[test]
    fn grants_no_files_environment_or_sockets() {
        // Set something a leaky sandbox would show the guest.
        let plugin = tests::load(wasm::SANDBOX_PROBE);
        let mut config = PluginConfig::new();
        config.insert("probe".into(), "visible".into());
        let events = plugin
            .translate(&tests::message("{}"), Arc::new(config))
            .unwrap()
            .unwrap();
        let report: serde_json::Value = serde_json::from_str(events[0].data.get()).unwrap();
        for key in ["read_dir_root", "read_file", "tcp_connect"] {
            assert!(
                report[key].as_str().unwrap().starts_with("denied"),
                "{key}: {report}"
            );
        }
        assert_eq!(report["env_vars"], "0", "{report}");
        assert_eq!(report["args"], "0", "{report}");
        assert_eq!(
            report["config_probe"], "visible",
            "the route's plugin config is readable"
        );
    }
}

mod wrong_world {
    use super::*;

    #[test]
    fn is_refused_at_load_naming_what_it_exports() {
        let bytes = std::fs::read(wasm::WRONG_WORLD).unwrap();
        match tests::runtime().load(&bytes, "wrong-world.wasm") {
            Err(LoadError::Contract { message, .. }) => {
                assert!(
                    message.contains("dragoman:translator/metadata@0.1.0"),
                    "{message}"
                );
                assert!(message.contains("`greet`"), "{message}");
            }
            other => panic!("expected a contract error, got {other:?}"),
        }
        still_serving();
    }
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let runtime = tests::runtime();
    assert!(
        matches!(runtime.load(b"\0asm\x01\0\0\0", "core.wasm"), Err(LoadError::Compile { message, .. }) if message.contains("core WebAssembly module"))
    );
    assert!(matches!(
        runtime.load(b"hello", "junk.wasm"),
        Err(LoadError::Compile { .. })
    ));
    assert!(matches!(
        runtime.load(b"", "empty.wasm"),
        Err(LoadError::Compile { .. })
    ));
    let truncated = std::fs::read(wasm::ACME_ERP_ORDERS).unwrap();
    assert!(matches!(
        runtime.load(&truncated[..truncated.len() / 2], "half.wasm"),
        Err(LoadError::Compile { .. })
    ));
    still_serving();
}

#[test]
fn a_plugin_without_a_direction_is_refused_when_called_for_it() {
    let plugin = tests::load(wasm::ACME_ERP_ORDERS);
    assert!(plugin.directions().inbound && !plugin.directions().outbound);
    let command = dragoman::plugin::DomainCommand {
        command_type: "x.v1".into(),
        subject: "s".into(),
        data: "{}".into(),
    };
    let fault = plugin
        .session(config())
        .unwrap()
        .encode(&command)
        .unwrap_err();
    assert!(
        fault
            .to_string()
            .contains("does not implement the outbound direction"),
        "{fault}"
    );
}

#[test]
fn a_full_pool_is_a_fault_not_a_hang() {
    let runtime = Runtime::builder()
        .max_instances(2)
        .limits(tests::test_limits())
        .cache_dir(tests::shared_cache())
        .build()
        .unwrap();
    let plugin = runtime.load_file(wasm::COUNTER).unwrap();
    let held: Vec<_> = (0..2).map(|_| plugin.session(config()).unwrap()).collect();
    let fault = plugin.session(config()).unwrap_err();
    assert!(matches!(fault.kind(), FaultKind::Trap { .. }), "{fault}");
    drop(held);
    assert!(
        plugin.session(config()).is_ok(),
        "slots come back when sessions end"
    );
}

mod outbound_only {
    use dragoman::plugin::{DomainCommand, VendorResponse};

    use super::*;

    fn command() -> DomainCommand {
        DomainCommand {
            command_type: "shipment.book.v1".into(),
            subject: "SH-1".into(),
            data: r#"{"parcels": 2}"#.into(),
        }
    }

    #[test]
    fn encodes_a_command_and_decodes_the_answer() {
        let plugin = tests::load(wasm::OUTBOUND_ONLY);
        assert!(!plugin.directions().inbound && plugin.directions().outbound);
        let mut account = PluginConfig::new();
        account.insert("account".into(), "ACC-9".into());
        let mut session = plugin.session(Arc::new(account)).unwrap();
        let request = session.encode(&command()).unwrap().unwrap();
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/shipments/SH-1")
        );
        assert!(
            request
                .headers
                .iter()
                .any(|h| h.name == "x-carrier-account" && h.value == "ACC-9")
        );
        assert_eq!(request.body, br#"{"parcels":2}"#);

        let answer = |status: u16| VendorResponse {
            status,
            headers: vec![],
            body: br#"{"tracking": "T-1"}"#.to_vec(),
        };
        let events = plugin
            .session(config())
            .unwrap()
            .decode(&command(), &answer(201))
            .unwrap()
            .unwrap();
        assert_eq!(events[0].event_type, "shipment.booked.v1");
        assert_eq!(events[0].data.get(), r#"{"tracking":"T-1"}"#);
        let refusal = plugin
            .session(config())
            .unwrap()
            .decode(&command(), &answer(503))
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(refusal, dragoman::plugin::TranslateError::Transient(f) if f.code == "carrier-unavailable")
        );
        let refusal = plugin
            .session(config())
            .unwrap()
            .decode(&command(), &answer(404))
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(refusal, dragoman::plugin::TranslateError::Rejected(f) if f.code == "carrier-refused")
        );
    }

    #[test]
    fn has_no_inbound_direction() {
        let plugin = tests::load(wasm::OUTBOUND_ONLY);
        let fault = plugin
            .translate(&tests::message("{}"), config())
            .unwrap_err();
        assert!(
            fault
                .to_string()
                .contains("does not implement the inbound direction"),
            "{fault}"
        );
    }
}

mod both_directions {
    use super::*;

    #[test]
    fn one_component_serves_both_directions() {
        let plugin = tests::load(wasm::BOTH_DIRECTIONS);
        assert!(plugin.directions().inbound && plugin.directions().outbound);
        let mut message = tests::message("{}");
        message.headers.push(dragoman::plugin::Header {
            name: "X-Request-Id".into(),
            value: "42".into(),
        });
        let mut session = plugin.session(config()).unwrap();
        assert_eq!(
            session.idempotency_key(&message).unwrap().as_deref(),
            Some("request-42")
        );
        assert_eq!(
            session.translate(&message).unwrap().unwrap()[0].event_type,
            "inbound.seen.v1"
        );
        let command = dragoman::plugin::DomainCommand {
            command_type: "x.v1".into(),
            subject: "T-7".into(),
            data: "{}".into(),
        };
        let request = session.encode(&command).unwrap().unwrap();
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("GET", "/things/T-7")
        );
    }
}

/// A projector is contained like any plugin: a trap or a loop fails that fold with its typed
/// fault, and the next fold on the same runtime succeeds.
mod bad_fold {
    use super::*;
    use dragoman::plugin::{FoldEvent, Projector};

    fn projector() -> Projector {
        let wasm = std::fs::read(wasm::BAD_FOLD).unwrap();
        tests::runtime().load_projector(&wasm, "bad-fold").unwrap()
    }

    fn event(seq: u64, event_type: &str) -> FoldEvent {
        FoldEvent {
            seq,
            event_type: event_type.into(),
            subject: "A-1".into(),
            data: "{}".into(),
            committed_at: "2026-01-01T00:00:00Z".into(),
            occurred_at: None,
        }
    }

    fn folds_to(projector: &Projector, events: Vec<FoldEvent>) -> Result<String, Fault> {
        dragoman::projection::fold_all(projector, events).map(|folded| folded.state)
    }

    #[test]
    fn issue_13_a_fold_that_traps_is_a_trap_fault_and_the_next_fold_runs() {
        let projector = projector();
        let fault = folds_to(
            &projector,
            vec![event(1, "order.created.v1"), event(2, "order.trap.v1")],
        )
        .unwrap_err();
        match fault.kind() {
            FaultKind::Trap { message, .. } => {
                assert!(
                    message.contains("the fold fell over on event 2"),
                    "{message}"
                );
            }
            other => panic!("expected a trap, got {other:?}"),
        }
        names_plugin(&fault, "bad-fold");
        let counted = folds_to(&projector, vec![event(1, "order.created.v1"); 3]).unwrap();
        assert_eq!(counted, "3");
    }

    #[test]
    fn issue_13_a_fold_that_loops_misses_its_deadline_and_the_next_fold_runs() {
        let projector = projector();
        let started = Instant::now();
        let fault = folds_to(&projector, vec![event(1, "order.loop.v1")]).unwrap_err();
        assert!(
            matches!(fault.kind(), FaultKind::Deadline { limit } if *limit == tests::test_limits().deadline),
            "{fault}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            folds_to(&projector, vec![event(1, "order.x.v1")]).unwrap(),
            "1"
        );
        still_serving();
    }

    #[test]
    fn issue_13_a_translator_is_not_a_projector_nor_the_reverse() {
        let runtime = tests::runtime();
        let translator = std::fs::read(wasm::ACME_ERP_ORDERS).unwrap();
        assert!(!runtime.is_projector(&translator));
        let refused = runtime.load_projector(&translator, "acme").unwrap_err();
        assert!(
            matches!(&refused, LoadError::Contract { message, .. } if message.contains("it is not a projector")),
            "{refused}"
        );
        let fold = std::fs::read(wasm::BAD_FOLD).unwrap();
        assert!(runtime.is_projector(&fold));
        let refused = runtime.load(&fold, "bad-fold").unwrap_err();
        assert!(matches!(refused, LoadError::Contract { .. }), "{refused}");
    }
}

/// The second version of `order-fold` passes its own fold fixtures and fails the first
/// version's: the projector swap tests rely on both.
mod order_fold_v2 {
    use dragoman::fixtures::{self, Verdict};

    use super::*;

    #[test]
    fn issue_25_the_second_fold_passes_its_fixtures_and_fails_the_first_ones() {
        let wasm = std::fs::read(wasm::ORDER_FOLD_V2).unwrap();
        let projector = tests::runtime()
            .load_projector(&wasm, "order-fold-v2")
            .unwrap();
        assert_eq!(
            (
                projector.id().name.as_str(),
                projector.id().version.as_str()
            ),
            ("order-fold", "2.0.0")
        );
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/order-fold-v2/fixtures");
        let own = fixtures::discover(&dir).unwrap();
        assert_eq!(own.len(), 1);
        for fixture in &own {
            assert_eq!(
                fixtures::fold::run(&projector, fixture).unwrap(),
                Verdict::Pass
            );
        }
        let first = fixtures::discover(wasm::ORDER_FOLD_FIXTURES.as_ref()).unwrap();
        let failed = first
            .iter()
            .filter(|f| fixtures::fold::run(&projector, f).unwrap() != Verdict::Pass)
            .count();
        assert!(
            failed > 0,
            "the first version's fixtures tell the two apart"
        );
    }
}
