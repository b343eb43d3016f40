//! A `Session`: one instance of a plugin for the calls about one message, each call under
//! the deadline, the memory cap and the output cap, and what it returns checked against the
//! contract (`rules.rs`) before anyone sees it. A fault poisons the session.

use std::fmt;
use std::sync::Arc;

use serde_json::value::RawValue;
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, Trap};

use super::state::PluginState;
use super::{
    DomainCommand, DomainEvent, Fault, FaultKind, Limits, Plugin, PluginConfig, PluginInner,
    PluginRef, RuntimeInner, STDERR_TAIL, TranslateError, VendorMessage, VendorRequest,
    VendorResponse, engine, new_store_for, outbound, rules, wit,
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
        let (store, instance) = instantiate(
            &inner.pre,
            &inner.runtime.inner,
            &inner.id,
            inner.who.clone(),
            config,
        )?;
        Ok(Self {
            plugin: plugin.clone(),
            store,
            instance,
            poisoned: false,
        })
    }

    /// Whether a fault has discarded this instance.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The bytes of linear memory the instance has grown to (what a guest's heap takes),
    /// all its memories together.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory
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
        let instance = &self.instance;
        guarded(
            &mut self.store,
            &mut self.poisoned,
            &plugin.id,
            &plugin.runtime.inner,
            |store| f(store, instance, plugin),
        )
    }

    fn check_size(&mut self, size: usize) -> Result<(), Fault> {
        let plugin = &self.plugin.inner;
        check_size(&mut self.poisoned, &plugin.id, &plugin.runtime.inner, size)
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

/// A fresh instance in a new store carrying the call limits; a trap while instantiating is a
/// fault.
pub(super) fn instantiate(
    pre: &InstancePre<PluginState>,
    runtime: &RuntimeInner,
    id: &PluginRef,
    who: Arc<str>,
    config: Arc<PluginConfig>,
) -> Result<(Store<PluginState>, Instance), Fault> {
    let mut store = new_store_for(runtime, who, config);
    match pre.instantiate(&mut store) {
        Ok(instance) => Ok((store, instance)),
        Err(e) => {
            let fault = classify(id, &runtime.settings.limits, &store, &e);
            store.data().flush_output();
            Err(fault)
        }
    }
}

/// One call into an instance, as every call is made: refused once a fault has poisoned the
/// instance, with the whole deadline armed (also on a reused instance), a wasmtime error
/// mapped to a fault that poisons it, and what the guest printed flushed to tracing.
pub(super) fn guarded<R>(
    store: &mut Store<PluginState>,
    poisoned: &mut bool,
    id: &PluginRef,
    runtime: &RuntimeInner,
    f: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<R>,
) -> Result<R, Fault> {
    if *poisoned {
        return Err(Fault::new(
            id.clone(),
            FaultKind::Trap {
                message: "the instance was discarded after an earlier fault".into(),
                backtrace: None,
            },
        ));
    }
    let settings = &runtime.settings;
    store.set_epoch_deadline(engine::ticks(settings.limits.deadline, settings.epoch_tick));
    let result = f(store).map_err(|e| {
        *poisoned = true;
        classify(id, &settings.limits, store, &e)
    });
    store.data().flush_output();
    result
}

/// An output cap overrun as a fault that poisons the instance.
pub(super) fn check_size(
    poisoned: &mut bool,
    id: &PluginRef,
    runtime: &RuntimeInner,
    size: usize,
) -> Result<(), Fault> {
    let limit = runtime.settings.limits.output;
    if size > limit {
        *poisoned = true;
        return Err(Fault::new(id.clone(), FaultKind::Output { size, limit }));
    }
    Ok(())
}

fn missing(direction: &str) -> wasmtime::Error {
    wasmtime::format_err!("the plugin does not implement the {direction} direction")
}

/// Maps a wasmtime error from a call into a fault.
pub(super) fn classify(
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
