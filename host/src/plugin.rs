//! Loading and running translator plugins: one [`Runtime`] (the wasmtime engine, the linker,
//! the compiled-component cache) and a [`Plugin`] per loaded component.
//!
//! Every call gets a fresh instance from the plugin's `InstancePre` in the pooling allocator,
//! with a new `Store` carrying the call's limits; nothing survives from one message to the
//! next. A fault discards the instance and leaves the runtime serving.
//!
//! This module knows nothing of HTTP or storage.

mod cache;
mod engine;
mod fault;
mod limits;
mod link;
mod output;
mod pool;
mod projector;
mod rules;
mod session;
mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

use crate::bindings::dragoman::translator::types as wit;
use crate::bindings::exports::dragoman::translator::{inbound, metadata, outbound};
pub(crate) use cache::sha256_hex;
pub use cache::{CompiledFile, Provenance};
pub use fault::{Fault, FaultKind};
pub use limits::{DEFAULT_DEADLINE, DEFAULT_LOG_CAPTURE, DEFAULT_MEMORY, DEFAULT_OUTPUT, Limits};
pub use link::Loaded;
use link::{Linked, exports, wasmparser_is_core_module};
pub use pool::{Instances, Lease};
pub use projector::{Fold, FoldEvent, PROJECTOR_CONTRACT, Projector, ProjectorInfo, Refusal};
pub use session::Session;
use state::PluginState;

/// The contract version this host binds.
pub const CONTRACT: &str = "dragoman:translator@0.1.0";

/// A route's plugin config: string keys and values, read by the plugin through the `config`
/// import.
pub type PluginConfig = BTreeMap<String, String>;

/// A message in the vendor's model.
pub type VendorMessage = wit::VendorMessage;
/// A header of a vendor message.
pub type Header = wit::Header;
/// Why a plugin refused a translation: a stable code and a sentence.
pub type Failure = wit::Failure;
/// A translation the plugin refused on purpose.
pub type TranslateError = wit::TranslateError;
/// A command of our domain model (outbound direction).
pub type DomainCommand = wit::DomainCommand;
/// An HTTP request in a vendor's model (outbound direction).
pub type VendorRequest = wit::VendorRequest;
/// A vendor's HTTP answer (outbound direction).
pub type VendorResponse = wit::VendorResponse;

/// By default, up to 64 instances alive at once.
pub const DEFAULT_MAX_INSTANCES: u32 = 64;

/// The largest component the host takes, uploaded or dropped in the watched directory (an
/// interpreter-based plugin is tens of MB).
pub const MAX_COMPONENT_BYTES: usize = 256 << 20;
/// By default, the epoch ticks every 5 ms: deadlines are enforced to within that.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(5);
/// By default, 1 MiB of each linear memory stays mapped between instances.
pub const DEFAULT_KEEP_RESIDENT: usize = 1 << 20;

/// How much of a stderr tail goes into a trap's message.
const STDERR_TAIL: usize = 2048;

// ===== Errors =====

/// Why a component could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{what} is not a valid WebAssembly component: {message}")]
    Compile {
        /// The file or description of the bytes.
        what: String,
        /// Why.
        message: String,
    },
    /// The component imports something the host does not provide.
    #[error("{what} cannot be linked: {message}")]
    Link {
        /// The file or description of the bytes.
        what: String,
        /// Why.
        message: String,
    },
    /// The component does not implement the contract.
    #[error("{what} does not implement {CONTRACT}: {message}")]
    Contract {
        /// The file or description of the bytes.
        what: String,
        /// What is missing or mistyped.
        message: String,
    },
    /// The component's `metadata.info` call faulted.
    #[error("{what}: calling metadata.info failed: {message}")]
    Metadata {
        /// The file or description of the bytes.
        what: String,
        /// Why.
        message: String,
    },
    /// The runtime itself could not be built.
    #[error("cannot build the plugin runtime: {message}")]
    Runtime {
        /// Why.
        message: String,
    },
}

// ===== Runtime =====

/// The wasmtime engine, linker and compiled-component cache shared by every plugin.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: cache::Cache,
    settings: engine::EngineSettings,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    settings: engine::EngineSettings,
    cache_dir: Option<PathBuf>,
    cache_max_bytes: u64,
}

/// By default, the compiled cache keeps at most this many bytes (1 GiB).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 1 << 30;

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            settings: engine::EngineSettings {
                limits: Limits::default(),
                max_instances: DEFAULT_MAX_INSTANCES,
                epoch_tick: DEFAULT_EPOCH_TICK,
                keep_resident: DEFAULT_KEEP_RESIDENT,
                quick_compile: false,
            },
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
        }
    }
}

impl RuntimeBuilder {
    /// The limits every call runs under.
    ///
    /// By default, [`Limits::default`].
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.settings.limits = limits;
        self
    }

    /// Where compiled components are cached, so a restart does not recompile.
    ///
    /// By default, nowhere: every load compiles.
    pub fn cache_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// How many bytes of compiled components the cache keeps: past it, the least recently
    /// used files go after each write.
    ///
    /// By default, [`DEFAULT_CACHE_MAX_BYTES`].
    pub fn cache_max_bytes(&mut self, bytes: u64) -> &mut Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// How many plugin instances may be alive at once, across all plugins; a call beyond that
    /// fails as a trap.
    ///
    /// By default, [`DEFAULT_MAX_INSTANCES`].
    pub fn max_instances(&mut self, n: u32) -> &mut Self {
        self.settings.max_instances = n.max(1);
        self
    }

    /// How often the deadline clock ticks.
    ///
    /// By default, [`DEFAULT_EPOCH_TICK`].
    pub fn epoch_tick(&mut self, tick: Duration) -> &mut Self {
        self.settings.epoch_tick = tick.max(Duration::from_micros(100));
        self
    }

    /// How many bytes of each linear memory stay mapped when an instance ends.
    ///
    /// By default, [`DEFAULT_KEEP_RESIDENT`].
    pub fn keep_resident(&mut self, bytes: usize) -> &mut Self {
        self.settings.keep_resident = bytes;
        self
    }

    /// Compile faster and run slower: no optimisation of the compiled code. For an edit loop
    /// (`dragoman plugin dev`), where every save brings a new component that runs a handful
    /// of fixtures; not for serving.
    ///
    /// By default, off.
    pub fn quick_compile(&mut self, quick: bool) -> &mut Self {
        self.settings.quick_compile = quick;
        self
    }

    /// Builds the runtime and starts its epoch thread.
    ///
    /// # Errors
    ///
    /// [`LoadError::Runtime`] when the engine cannot be configured (a memory cap the pooling
    /// allocator refuses, for example) or the epoch thread cannot start.
    pub fn build(&self) -> Result<Runtime, LoadError> {
        let runtime = |message: String| LoadError::Runtime { message };
        let engine = engine::build(&self.settings).map_err(|e| runtime(format!("{e:#}")))?;
        engine::start_ticker(&engine, self.settings.epoch_tick)
            .map_err(|e| runtime(format!("cannot start the epoch thread: {e}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| runtime(format!("{e:#}")))?;
        crate::bindings::Translator::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(|e| runtime(format!("{e:#}")))?;
        let cache = cache::Cache::new(&engine, self.cache_dir.clone(), self.cache_max_bytes);
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                settings: self.settings.clone(),
            }),
        })
    }
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The limits calls run under.
    pub fn limits(&self) -> &Limits {
        &self.inner.settings.limits
    }

    /// Removes (unless `dry_run`) the cached compiled files of the components whose sha256
    /// `forgotten` holds; says which.
    pub(crate) fn forget_compiled(&self, forgotten: &[&str], dry_run: bool) -> Vec<CompiledFile> {
        self.inner.cache.forget(forgotten, dry_run)
    }

    /// Loads the component in `path`.
    ///
    /// # Errors
    ///
    /// See [`Runtime::load`], and [`LoadError::Read`] when the file cannot be read.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Plugin, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.to_owned(),
            error,
        })?;
        self.load(&bytes, &path.display().to_string())
    }

    /// Compiles (or loads from the cache) a component, links it, checks it against the
    /// contract and reads its metadata; `what` names it in errors.
    ///
    /// # Errors
    ///
    /// [`LoadError::Compile`] for bytes that are not a component, [`LoadError::Link`] for a
    /// component that imports what the host does not grant, [`LoadError::Contract`] for one
    /// that exports neither direction or exports them with the wrong types, and
    /// [`LoadError::Metadata`] when its `info` call faults.
    pub fn load(&self, wasm: &[u8], what: &str) -> Result<Plugin, LoadError> {
        self.load_with_provenance(wasm, what)
            .map(|(plugin, _)| plugin)
    }

    /// [`Runtime::load`], also telling whether the compiled form came from the cache.
    ///
    /// # Errors
    ///
    /// As [`Runtime::load`].
    pub fn load_with_provenance(
        &self,
        wasm: &[u8],
        what: &str,
    ) -> Result<(Plugin, Provenance), LoadError> {
        let linked = self.link(wasm, what)?;
        let provenance = linked.provenance;
        self.translator(linked, what)
            .map(|plugin| (plugin, provenance))
    }

    /// A linked component checked against the translator contract, its metadata read.
    // Long on purpose: one sequence (check the exports, instantiate, read the metadata)
    // whose steps share the component and the error context.
    fn translator(&self, linked: Linked, what: &str) -> Result<Plugin, LoadError> {
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
        let metadata = metadata::GuestIndices::new(&pre).map_err(|_| {
            contract(format!(
                "it exports no `dragoman:translator/metadata@0.1.0` ({})",
                exports(&component, &inner.engine)
            ))
        })?;
        let inbound = inbound::GuestIndices::new(&pre).ok();
        let outbound = outbound::GuestIndices::new(&pre).ok();
        if inbound.is_none() && outbound.is_none() {
            return Err(contract(format!(
                "it exports neither `dragoman:translator/inbound@0.1.0` nor `dragoman:translator/outbound@0.1.0` ({})",
                exports(&component, &inner.engine)
            )));
        }

        // Instantiate once: the exports are type-checked against the contract and the
        // metadata is read, so a bad plugin is refused at load, not on its first message.
        let provisional = PluginRef {
            name: what.to_owned(),
            version: "?".into(),
            sha256: sha256.clone(),
        };
        let mut store = new_store(inner, &provisional, Arc::new(PluginConfig::new()));
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Metadata {
                what: what.to_owned(),
                message: format!("{e:#}"),
            })?;
        let info = metadata
            .load(&mut store, &instance)
            .map_err(|e| contract(format!("{e:#}")))?
            .call_info(&mut store)
            .map_err(|e| LoadError::Metadata {
                what: what.to_owned(),
                message: format!("{e:#}"),
            })?;
        if let Some(indices) = &inbound {
            indices
                .load(&mut store, &instance)
                .map_err(|e| contract(format!("{e:#}")))?;
        }
        if let Some(indices) = &outbound {
            indices
                .load(&mut store, &instance)
                .map_err(|e| contract(format!("{e:#}")))?;
        }
        store.data().flush_output();

        let id = PluginRef {
            name: info.name.clone(),
            version: info.version.clone(),
            sha256,
        };
        let plugin = Plugin {
            inner: Arc::new(PluginInner {
                runtime: self.clone(),
                who: format!("{}@{}", id.name, id.version).into(),
                id,
                info: PluginInfo {
                    name: info.name,
                    version: info.version,
                    vendor_api_version: info.vendor_api_version,
                },
                pre,
                inbound,
                outbound,
            }),
        };
        Ok(plugin)
    }
}

fn new_store(
    inner: &RuntimeInner,
    id: &PluginRef,
    config: Arc<PluginConfig>,
) -> Store<PluginState> {
    let who: Arc<str> = format!("{}@{}", id.name, id.version).into();
    new_store_for(inner, who, config)
}

fn new_store_for(
    inner: &RuntimeInner,
    who: Arc<str>,
    config: Arc<PluginConfig>,
) -> Store<PluginState> {
    let limits = &inner.settings.limits;
    let mut store = Store::new(&inner.engine, PluginState::new(who, config, limits));
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(engine::ticks(limits.deadline, inner.settings.epoch_tick));
    store.epoch_deadline_trap();
    store
}

// ===== Plugin =====

/// The name, version and content hash of a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PluginRef {
    /// The name the plugin gives itself.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The sha256 of the component's bytes, lower-case hex.
    pub sha256: String,
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{} (sha256 {})",
            self.name,
            self.version,
            &self.sha256[..12.min(self.sha256.len())]
        )
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// The vendor API version it speaks.
    pub vendor_api_version: String,
}

/// Which directions a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Directions {
    /// Vendor message to domain events.
    pub inbound: bool,
    /// Domain command to vendor request, vendor response to domain events.
    pub outbound: bool,
}

/// A loaded, checked plugin, ready to translate. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    runtime: Runtime,
    id: PluginRef,
    who: Arc<str>,
    info: PluginInfo,
    pre: InstancePre<PluginState>,
    inbound: Option<inbound::GuestIndices>,
    outbound: Option<outbound::GuestIndices>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Name, version and sha256.
    pub fn id(&self) -> &PluginRef {
        &self.inner.id
    }

    /// The plugin's metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// Which directions it implements.
    pub fn directions(&self) -> Directions {
        Directions {
            inbound: self.inner.inbound.is_some(),
            outbound: self.inner.outbound.is_some(),
        }
    }

    /// A fresh instance for one message, with the route's plugin config.
    ///
    /// # Errors
    ///
    /// A [`Fault`] when instantiation traps or no pool slot is free.
    pub fn session(&self, config: Arc<PluginConfig>) -> Result<Session, Fault> {
        Session::start(self, config)
    }

    /// Translates one vendor message in a fresh instance.
    ///
    /// # Errors
    ///
    /// A [`Fault`] when the plugin traps, misses its deadline, exceeds a cap or returns
    /// invalid output. A refusal by the plugin is the inner `Err`.
    pub fn translate(
        &self,
        message: &VendorMessage,
        config: Arc<PluginConfig>,
    ) -> Result<Result<Vec<DomainEvent>, TranslateError>, Fault> {
        self.session(config)?.translate(message)
    }
}

/// One event of our domain model, as a plugin produced it.
#[derive(Debug, Clone, Serialize)]
pub struct DomainEvent {
    /// What happened, for example `order.created.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The entity it is about.
    pub subject: String,
    /// The ordering key.
    pub partition_key: String,
    /// The payload, exactly as the plugin wrote it (checked to be JSON).
    pub data: Box<RawValue>,
}

impl PartialEq for DomainEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type
            && self.subject == other.subject
            && self.partition_key == other.partition_key
            && self.data.get() == other.data.get()
    }
}

#[cfg(test)]
mod tests;
