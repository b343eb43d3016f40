//! Projectors: the fold of an entity type's domain events into its state, as a sandboxed
//! component of the `dragoman:projector` contract (`wit/projector/`). Loaded by the same
//! runtime as translators (engine, linker, compiled cache, limits), but a contract of its own:
//! a translator is not a projector, nor the reverse.
//!
//! A [`Fold`] is one instance for one read: the initial state, then one `apply` per event.
//! Each call gets the whole deadline; a trap, a missed deadline, a memory cap or output that
//! is not JSON is a [`Fault`] that ends the fold. A refused transition is a value
//! ([`Refusal`]), not a fault: the caller keeps the state and goes on.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::link::exports_fold;
use super::session::{check_size, guarded, instantiate};
use super::state::PluginState;
use super::{
    Fault, FaultKind, Linked, LoadError, PluginConfig, PluginRef, Runtime, cache, exports,
    new_store_for, wasmparser_is_core_module,
};
use crate::bindings::projector::dragoman::projector::types as wit;
use crate::bindings::projector::exports::dragoman::projector::fold;

/// The projector contract version this host binds.
pub const PROJECTOR_CONTRACT: &str = "dragoman:projector@0.1.0";

/// What a projector says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectorInfo {
    /// Its name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// The entity type it folds, for example `order`.
    pub entity_type: String,
}

/// One event as a fold reads it.
pub type FoldEvent = wit::EntityEvent;

/// A transition the projector refused: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Kebab-case, for example `already-shipped`.
    pub code: String,
    /// For people.
    pub message: String,
}

/// A loaded, checked projector. Cheap to clone.
#[derive(Clone)]
pub struct Projector {
    inner: Arc<ProjectorInner>,
}

struct ProjectorInner {
    runtime: Runtime,
    id: PluginRef,
    info: ProjectorInfo,
    pre: InstancePre<PluginState>,
    indices: fold::GuestIndices,
}

impl fmt::Debug for Projector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projector")
            .field("id", &self.inner.id)
            .field("entity_type", &self.inner.info.entity_type)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Compiles (or loads from the cache) a projector component, checks it against the
    /// projector contract and reads its info; `what` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`Runtime::load`], with [`LoadError::Contract`] for a component that does not
    /// export the fold (a translator, for example).
    pub fn load_projector(&self, wasm: &[u8], what: &str) -> Result<Projector, LoadError> {
        let linked = self.link(wasm, what)?;
        self.projector(linked, what)
    }

    /// A linked component checked against the projector contract, its info read.
    pub(super) fn projector(&self, linked: Linked, what: &str) -> Result<Projector, LoadError> {
        let inner = &self.inner;
        let Linked {
            sha256,
            component,
            pre,
            ..
        } = linked;
        let contract = |message: String| LoadError::Contract {
            what: what.to_owned(),
            message,
        };
        let indices = fold::GuestIndices::new(&pre).map_err(|_| {
            contract(format!(
                "it is not a projector: it exports no `dragoman:projector/fold@0.1.0` ({})",
                exports(&component, &inner.engine)
            ))
        })?;
        // Instantiate once, so a bad projector is refused at load, not on its first read.
        let metadata = |message: String| LoadError::Metadata {
            what: what.to_owned(),
            message,
        };
        let mut store = new_store_for(inner, what.into(), Arc::new(PluginConfig::new()));
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| metadata(format!("{e:#}")))?;
        let info = indices
            .load(&mut store, &instance)
            .map_err(|e| contract(format!("{e:#}")))?
            .call_info(&mut store)
            .map_err(|e| metadata(format!("{e:#}")))?;
        store.data().flush_output();
        if info.entity_type.is_empty() || info.entity_type.contains(['.', '/']) {
            return Err(contract(format!(
                "its entity type {:?} is not one segment of an event type (such as `order`)",
                info.entity_type
            )));
        }
        Ok(Projector {
            inner: Arc::new(ProjectorInner {
                runtime: self.clone(),
                id: PluginRef {
                    name: info.name.clone(),
                    version: info.version.clone(),
                    sha256,
                },
                info: ProjectorInfo {
                    name: info.name,
                    version: info.version,
                    entity_type: info.entity_type,
                },
                pre,
                indices,
            }),
        })
    }

    /// Whether `wasm` is a projector component rather than a translator: it exports the fold.
    /// Bytes that do not compile are not.
    pub fn is_projector(&self, wasm: &[u8]) -> bool {
        let inner = &self.inner;
        if wasmparser_is_core_module(wasm) {
            return false;
        }
        let sha256 = cache::sha256_hex(wasm);
        inner
            .cache
            .load(&inner.engine, wasm, &sha256)
            .ok()
            .is_some_and(|(component, _)| exports_fold(&component, &inner.engine))
    }
}

impl Projector {
    /// Name, version and sha256: snapshots are keyed by all three.
    pub fn id(&self) -> &PluginRef {
        &self.inner.id
    }

    /// What it says about itself.
    pub fn info(&self) -> &ProjectorInfo {
        &self.inner.info
    }

    /// A fresh instance for one fold.
    ///
    /// # Errors
    ///
    /// A [`Fault`] when instantiation traps or no pool slot is free.
    pub fn fold(&self) -> Result<Fold, Fault> {
        let inner = &self.inner;
        let who: Arc<str> = format!("{}@{}", inner.id.name, inner.id.version).into();
        let (store, instance) = instantiate(
            &inner.pre,
            &inner.runtime.inner,
            &inner.id,
            who,
            Arc::new(PluginConfig::new()),
        )?;
        Ok(Fold {
            projector: self.clone(),
            store,
            instance,
            poisoned: false,
        })
    }
}

/// One instance of a projector, for the calls of one fold. After a fault it refuses every
/// call.
pub struct Fold {
    projector: Projector,
    store: Store<PluginState>,
    instance: Instance,
    poisoned: bool,
}

impl fmt::Debug for Fold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fold")
            .field("projector", &self.projector.inner.id)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Fold {
    /// The state before the first event, checked to be JSON.
    ///
    /// # Errors
    ///
    /// A [`Fault`] when the projector traps, misses its deadline, exceeds a cap or returns
    /// a state that is not JSON.
    pub fn initial_state(&mut self) -> Result<String, Fault> {
        let state = self.call(|store, guest| guest.call_initial_state(store))?;
        self.checked_state(state, "the initial state")
    }

    /// The state after `event`, or the projector's refusal of it.
    ///
    /// # Errors
    ///
    /// As [`Fold::initial_state`].
    pub fn apply(
        &mut self,
        state: &str,
        event: &FoldEvent,
    ) -> Result<Result<String, Refusal>, Fault> {
        match self.call(|store, guest| guest.call_apply(store, state, event))? {
            Ok(next) => {
                let what = format!("the state after event {} ({})", event.seq, event.event_type);
                self.checked_state(next, &what).map(Ok)
            }
            Err(failure) => {
                self.check_size(failure.code.len() + failure.message.len())?;
                Ok(Err(Refusal {
                    code: failure.code,
                    message: failure.message,
                }))
            }
        }
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<PluginState>, &fold::Guest) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let inner = &self.projector.inner;
        let instance = &self.instance;
        // Each call gets the whole deadline: a fold of many events is many calls.
        guarded(
            &mut self.store,
            &mut self.poisoned,
            &inner.id,
            &inner.runtime.inner,
            |store| {
                let guest = inner.indices.load(&mut *store, instance)?;
                f(store, &guest)
            },
        )
    }

    fn check_size(&mut self, size: usize) -> Result<(), Fault> {
        let inner = &self.projector.inner;
        check_size(&mut self.poisoned, &inner.id, &inner.runtime.inner, size)
    }

    fn checked_state(&mut self, state: String, what: &str) -> Result<String, Fault> {
        self.check_size(state.len())?;
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&state) {
            self.poisoned = true;
            return Err(Fault::new(
                self.projector.inner.id.clone(),
                FaultKind::InvalidOutput {
                    message: format!("{what} is not JSON: {e}"),
                },
            ));
        }
        Ok(state)
    }
}
