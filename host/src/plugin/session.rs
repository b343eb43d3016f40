//! A `Session`: one instance of a plugin for the calls about one message, each call under
//! the deadline, the memory cap and the output cap, and what it returns checked against the
//! contract (`rules.rs`) before anyone sees it. A fault poisons the session.

use std::fmt;
use std::sync::Arc;

use serde_json::value::RawValue;
use wasmtime::component::Instance;
use wasmtime::{Store, Trap};

use super::state::PluginState;
use super::{
    DomainCommand, DomainEvent, Fault, FaultKind, Limits, Plugin, PluginConfig, PluginInner,
    PluginRef, STDERR_TAIL, TranslateError, VendorMessage, VendorRequest, VendorResponse, engine,
    new_store_for, outbound, rules, wit,
};

/// One instance, for the calls about one message (or, through [`Instances`](super::Instances), several
/// messages). After a fault it refuses every call: a trapped instance is never entered again.
pub struct Session {
    plugin: Plugin,
    store: Store<PluginState>,
    instance: Instance,
    poisoned: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("plugin", &self.plugin.inner.id)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Session {
    /// A fresh instance of `plugin`, with the route's plugin config.
    pub(super) fn start(plugin: &Plugin, config: Arc<PluginConfig>) -> Result<Self, Fault> {
        let inner = &plugin.inner;
        let mut store = new_store_for(&inner.runtime.inner, inner.who.clone(), config);
        match inner.pre.instantiate(&mut store) {
            Ok(instance) => Ok(Self {
                plugin: plugin.clone(),
                store,
                instance,
                poisoned: false,
            }),
            Err(e) => {
                let fault = classify(&inner.id, &inner.runtime.inner.settings.limits, &store, &e);
                store.data().flush_output();
                Err(fault)
            }
        }
    }

    /// Whether a fault has discarded this instance.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The key the plugin derives for the message, if it derives one.
    ///
    /// # Errors
    ///
    /// A [`Fault`] as for [`Plugin::translate`]; a plugin without the inbound direction is
    /// an `InvalidOutput` fault.
    pub fn idempotency_key(&mut self, message: &VendorMessage) -> Result<Option<String>, Fault> {
        let key = self.call(|store, instance, plugin| {
            let indices = plugin.inbound.as_ref().ok_or_else(|| missing("inbound"))?;
            indices
                .load(&mut *store, instance)?
                .call_idempotency_key(&mut *store, message)
        })?;
        if let Some(key) = &key {
            self.check_size(key.len())?;
        }
        Ok(key)
    }

    /// Translates a vendor message into domain events.
    ///
    /// # Errors
    ///
    /// As [`Plugin::translate`].
    pub fn translate(
        &mut self,
        message: &VendorMessage,
    ) -> Result<Result<Vec<DomainEvent>, TranslateError>, Fault> {
        let result = self.call(|store, instance, plugin| {
            let indices = plugin.inbound.as_ref().ok_or_else(|| missing("inbound"))?;
            indices
                .load(&mut *store, instance)?
                .call_translate(&mut *store, message)
        })?;
        self.events(result)
    }

    /// Encodes a domain command as a vendor request.
    ///
    /// # Errors
    ///
    /// As [`Plugin::translate`].
    pub fn encode(
        &mut self,
        command: &DomainCommand,
    ) -> Result<Result<VendorRequest, TranslateError>, Fault> {
        let result = self.call_outbound(|store, exports| exports.call_encode(store, command))?;
        if let Ok(request) = &result {
            let headers: usize = request
                .headers
                .iter()
                .map(|h| h.name.len() + h.value.len())
                .sum();
            self.check_size(
                request.method.len() + request.path.len() + headers + request.body.len(),
            )?;
        }
        Ok(result)
    }

    /// Decodes a vendor response into domain events.
    ///
    /// # Errors
    ///
    /// As [`Plugin::translate`].
    pub fn decode(
        &mut self,
        command: &DomainCommand,
        response: &VendorResponse,
    ) -> Result<Result<Vec<DomainEvent>, TranslateError>, Fault> {
        let result =
            self.call_outbound(|store, exports| exports.call_decode(store, command, response))?;
        self.events(result)
    }

    /// Calls into the outbound exports, a contract fault when the plugin has none.
    fn call_outbound<R>(
        &mut self,
        f: impl FnOnce(&mut Store<PluginState>, &outbound::Guest) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        self.call(|store, instance, plugin| {
            let indices = plugin
                .outbound
                .as_ref()
                .ok_or_else(|| missing("outbound"))?;
            let exports = indices.load(&mut *store, instance)?;
            f(store, &exports)
        })
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<PluginState>, &Instance, &PluginInner) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let plugin = &self.plugin.inner;
        if self.poisoned {
            return Err(Fault::new(
                plugin.id.clone(),
                FaultKind::Trap {
                    message: "the instance was discarded after an earlier fault".into(),
                    backtrace: None,
                },
            ));
        }
        // Each call gets the whole deadline, also on a reused instance.
        let settings = &plugin.runtime.inner.settings;
        self.store
            .set_epoch_deadline(engine::ticks(settings.limits.deadline, settings.epoch_tick));
        let result = f(&mut self.store, &self.instance, plugin);
        let result = result.map_err(|e| {
            self.poisoned = true;
            classify(
                &plugin.id,
                &plugin.runtime.inner.settings.limits,
                &self.store,
                &e,
            )
        });
        self.store.data().flush_output();
        result
    }

    fn check_size(&mut self, size: usize) -> Result<(), Fault> {
        let limit = self.plugin.inner.runtime.inner.settings.limits.output;
        if size > limit {
            self.poisoned = true;
            return Err(Fault::new(
                self.plugin.inner.id.clone(),
                FaultKind::Output { size, limit },
            ));
        }
        Ok(())
    }

    fn events(
        &mut self,
        result: Result<Vec<wit::DomainEvent>, TranslateError>,
    ) -> Result<Result<Vec<DomainEvent>, TranslateError>, Fault> {
        let events = match result {
            Ok(events) => events,
            Err(refusal) => {
                let failure = match &refusal {
                    TranslateError::Rejected(f) | TranslateError::Transient(f) => f,
                };
                self.check_size(failure.code.len() + failure.message.len())?;
                return Ok(Err(refusal));
            }
        };
        let size = events
            .iter()
            .map(|e| e.event_type.len() + e.subject.len() + e.partition_key.len() + e.data.len())
            .sum();
        self.check_size(size)?;
        let invalid = |message: String| {
            Fault::new(
                self.plugin.inner.id.clone(),
                FaultKind::InvalidOutput { message },
            )
        };
        let checked = events
            .into_iter()
            .enumerate()
            .map(|(n, event)| {
                if let Some(message) =
                    rules::event_fault(n, &event.event_type, &event.subject, &event.partition_key)
                {
                    return Err(invalid(message));
                }
                let data = RawValue::from_string(event.data).map_err(|e| {
                    invalid(format!(
                        "event {n} ({}) data is not JSON: {e}",
                        event.event_type
                    ))
                })?;
                Ok(DomainEvent {
                    event_type: event.event_type,
                    subject: event.subject,
                    partition_key: event.partition_key,
                    data,
                })
            })
            .collect::<Result<Vec<_>, _>>();
        // Output the host refuses is a fault like any other: the instance is not entered
        // again, so a reused one cannot carry whatever state produced it.
        if checked.is_err() {
            self.poisoned = true;
        }
        checked.map(Ok)
    }
}

fn missing(direction: &str) -> wasmtime::Error {
    wasmtime::format_err!("the plugin does not implement the {direction} direction")
}

/// Maps a wasmtime error from a call into a fault.
fn classify(
    id: &PluginRef,
    limits: &Limits,
    store: &Store<PluginState>,
    error: &wasmtime::Error,
) -> Fault {
    let kind = if let Some(requested) = store.data().limiter.memory_exceeded {
        FaultKind::Memory {
            requested,
            limit: limits.memory,
        }
    } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        FaultKind::Deadline {
            limit: limits.deadline,
        }
    } else {
        let mut message = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        let tail = store.data().stderr_tail(STDERR_TAIL);
        let said: Vec<&str> = tail
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        if !said.is_empty() {
            message.push_str("; guest stderr: ");
            message.push_str(&said.join(" "));
        }
        let backtrace = error
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(ToString::to_string);
        FaultKind::Trap { message, backtrace }
    };
    match &kind {
        FaultKind::Trap {
            backtrace: Some(backtrace),
            ..
        } => {
            tracing::warn!(target: "dragoman::plugin", plugin = %id, fault = %kind, %backtrace, "plugin call failed");
        }
        _ => {
            tracing::warn!(target: "dragoman::plugin", plugin = %id, fault = %kind, "plugin call failed")
        }
    }
    Fault::new(id.clone(), kind)
}
