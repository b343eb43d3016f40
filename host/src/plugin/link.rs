//! The first steps of every load, whichever the contract: refuse a core module, compile or
//! load from the cache, link against the host's imports. Then the exports say which
//! contract the component implements ([`Runtime::load_any`]), so a component of either kind
//! is compiled once.

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre};

use super::state::PluginState;
use super::{LoadError, Plugin, Projector, Provenance, Runtime, cache};

/// A component of either contract.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// `dragoman:translator`.
    Translator(Plugin),
    /// `dragoman:projector`.
    Projector(Projector),
}

impl Runtime {
    /// Loads a component as a projector when it exports the fold, else as a translator:
    /// compiled (or loaded from the cache) and linked once.
    ///
    /// # Errors
    ///
    /// As [`Runtime::load`] and [`Runtime::load_projector`].
    pub fn load_any(&self, wasm: &[u8], what: &str) -> Result<Loaded, LoadError> {
        let linked = self.link(wasm, what)?;
        if exports_fold(&linked.component, &self.inner.engine) {
            self.projector(linked, what).map(Loaded::Projector)
        } else {
            self.translator(linked, what).map(Loaded::Translator)
        }
    }
}

/// Whether a component exports the projector contract's fold.
pub(super) fn exports_fold(component: &Component, engine: &Engine) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with("dragoman:projector/fold@"))
}

/// A component compiled (or loaded from the cache) and linked, not yet checked against a
/// contract.
pub(super) struct Linked {
    pub(super) sha256: String,
    pub(super) component: Component,
    pub(super) pre: InstancePre<PluginState>,
    pub(super) provenance: Provenance,
}

impl Runtime {
    /// The first steps of every load, whichever the contract: refuse a core module, compile
    /// or load from the cache, link against the host's imports.
    pub(super) fn link(&self, wasm: &[u8], what: &str) -> Result<Linked, LoadError> {
        let inner = &self.inner;
        let sha256 = cache::sha256_hex(wasm);
        if wasmparser_is_core_module(wasm) {
            return Err(LoadError::Compile {
                what: what.to_owned(),
                message: "it is a core WebAssembly module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)".into(),
            });
        }
        let (component, provenance) =
            inner
                .cache
                .load(&inner.engine, wasm, &sha256)
                .map_err(|e| LoadError::Compile {
                    what: what.to_owned(),
                    message: format!("{e:#}"),
                })?;
        let pre = inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                what: what.to_owned(),
                message: format!("{e:#}"),
            })?;
        Ok(Linked {
            sha256,
            component,
            pre,
            provenance,
        })
    }
}

/// A component's exports, for error messages.
pub(super) fn exports(component: &Component, engine: &Engine) -> String {
    let names: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    if names.is_empty() {
        "it exports nothing".into()
    } else {
        format!("it exports {}", names.join(", "))
    }
}

/// Core modules start with layer 0 in the version field; components with layer 1.
pub(super) fn wasmparser_is_core_module(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [0, 0]
}
