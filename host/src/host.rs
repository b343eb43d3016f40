//! `Host`, the composition root: builds the parts from a [`Config`] (the routes with their
//! plugins, the store, the sinks, the relay, the HTTP API), wires them, and runs them until
//! shutdown. It holds no logic of its own; nothing in the crate imports it.
//!
//! Shutdown order: stop accepting, finish in-flight requests, stop the relay after its
//! current pass, flush the store.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::anchor::Checkpointer;
use crate::archive::StateAt;
use crate::audit::Finding;
use crate::circuits::Circuits;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, HttpConfig};
use crate::delivery::{Deliver, Sink};
use crate::outcome::{Activated, Commanded, Discarded, Ingested, Replayed, Translated};
use crate::pipeline::{Incoming, Pipeline, QueuedCommands, Routes, Versions};
use crate::plugin::Runtime;
use crate::projection::Projections;
use crate::registry::{Registry, Selector, Serve};
use crate::relay::{Relay, RelayParts, Release, RouteDelivery, Running, Wake};
use crate::source::Sources;
use crate::storage::{AuditEvent, Db, DeadLetter, Storage};
use crate::telemetry::Metrics;
use crate::transport::Api;
use crate::vendor::Vendors;
use crate::watched::WatchedDir;
use crate::{Error, transport};

/// A running integration host. Cheap to clone.
///
/// [`Host::serve`] runs the HTTP API and the relay on a listener; a service that has its own
/// server mounts [`Host::api`] and runs [`Host::run`] beside it.
#[derive(Clone)]
pub struct Host {
    pipeline: Pipeline,
    relay: Arc<Relay>,
    /// The breakers, whose watcher logs and audits their transitions.
    circuits: Circuits,
    /// The watched plugins directory, if the config names one.
    watched: Option<Arc<WatchedDir>>,
    /// The routes' broker sources.
    sources: Sources,
    /// Signs and publishes checkpoints, if the config asks for them.
    checkpointer: Option<Arc<Checkpointer>>,
    /// Archives old history and removes old bodies, if a route keeps them for a limited time.
    retention: Option<Arc<crate::retention::Retention>>,
    metrics: Arc<Metrics>,
    api: Api,
    http: HttpConfig,
    projections: Projections,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

/// Builds a [`Host`] from a [`Config`].
#[derive(Debug, Default)]
pub struct HostBuilder {
    config: Option<Config>,
    clock: Option<Arc<dyn Clock>>,
    storage: Option<Arc<dyn Storage>>,
}

impl HostBuilder {
    /// The configuration.
    ///
    /// By default, none: `build` fails without one.
    pub fn config(&mut self, config: Config) -> &mut Self {
        self.config = Some(config);
        self
    }

    /// The clock for expiry, retention and backoff.
    ///
    /// By default, the system clock.
    pub fn clock(&mut self, clock: Arc<dyn Clock>) -> &mut Self {
        self.clock = Some(clock);
        self
    }

    /// The store.
    ///
    /// By default, the embedded sled store in the config's `data_dir`.
    pub fn storage(&mut self, storage: Arc<dyn Storage>) -> &mut Self {
        self.storage = Some(storage);
        self
    }

    /// Loads every route's plugin, opens the store and wires the parts.
    ///
    /// # Errors
    ///
    /// A load error naming the route's plugin, a config error for a sink that cannot be
    /// made, or a storage error when the store cannot be opened.
    pub fn build(&self) -> Result<Host, Error> {
        let config = self
            .config
            .clone()
            .ok_or_else(|| Error::config("no configuration given".into()))?;
        if config.admin_token.is_none() && config.allow_unauthenticated_admin {
            tracing::warn!(
                listen = %config.listen,
                "the admin API has no token (allow_unauthenticated_admin = true): anyone who \
                 reaches the listen address can push plugins and replay or discard dead letters"
            );
        }
        let runtime = Runtime::builder()
            .limits(config.limits)
            .max_instances(config.max_instances)
            .cache_dir(&config.cache_dir)
            .cache_max_bytes(config.cache_max_bytes)
            .build()?;
        let clock = self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
        let registry = Registry::open(
            &config.data_dir.join("plugins"),
            config.plugins.keep_versions,
        )?;
        let routes = Routes::load(&config, &runtime, &registry, clock.now())?;
        let mut sinks = BTreeMap::new();
        for (name, sink) in &config.sinks {
            let sink = Sink::new(sink).map_err(|e| Error::config(format!("sink {name}: {e}")))?;
            sinks.insert(name.clone(), Arc::new(sink));
        }
        let storage: Arc<dyn Storage> = match &self.storage {
            Some(storage) => storage.clone(),
            None => open_store(&config)?,
        };
        let projections = load_projections(&config, &runtime, &registry, &storage, clock.now())?;
        let metrics = Arc::new(Metrics::default());
        let wake = Wake::default();
        let running = Running::default();
        let ready = running.clone();
        let deliveries = routes
            .iter()
            .map(|route| {
                let delivery = RouteDelivery {
                    retry: route.retry,
                    producer: route.version().producer.clone(),
                    dead_letters: route.dead_letters,
                };
                (route.name.clone(), delivery)
            })
            .collect();
        // One breaker per downstream: every sink and every vendor (their names are distinct).
        let circuits = Circuits::new(config.breakers.clone(), &clock, &metrics);
        let vendors = Vendors::new(&config.vendors, &circuits).map_err(Error::config)?;
        let pipeline = Pipeline::new(
            routes,
            storage.clone(),
            clock.clone(),
            metrics.clone(),
            wake.clone(),
            vendors,
            Versions::new(
                registry,
                runtime,
                config.plugins.canary,
                projections.clone(),
            ),
        );
        // Commands queued while a vendor's circuit was open wait in the outbox for a sink
        // named after the vendor, sent by the relay like any event.
        let queued: Arc<dyn Deliver> = Arc::new(QueuedCommands::new(pipeline.clone()));
        for name in config.vendors.keys() {
            sinks.insert(name.clone(), Arc::new(Sink::Host(queued.clone())));
        }
        let doors = crate::door::Doors::new(&config, clock.clone(), metrics.clone())
            .map_err(Error::config)?;
        let checkpointer = match &config.checkpoints {
            None => None,
            Some(checkpoints) => {
                let sink = sinks.get(&checkpoints.sink).cloned().ok_or_else(|| {
                    Error::config(format!("checkpoints.sink: no sink {}", checkpoints.sink))
                })?;
                Some(Arc::new(Checkpointer::new(
                    storage.clone(),
                    checkpoints.key.clone(),
                    (checkpoints.sink.clone(), sink),
                    checkpoints.interval,
                    clock.clone(),
                    metrics.clone(),
                )))
            }
        };
        let archive: Option<Arc<dyn crate::archive::SegmentStore>> = match &config.archive {
            None => None,
            Some(archive) => Some(Arc::new(
                crate::archive::Directory::open(&archive.dir)
                    .map_err(|e| Error::config(format!("archive.dir: {e}")))?,
            )),
        };
        let retention = crate::retention::Retention::new(
            storage.clone(),
            archive,
            config
                .routes
                .iter()
                .map(|(name, route)| (name.clone(), route.hot))
                .collect(),
            config
                .archive
                .as_ref()
                .map_or(crate::config::DEFAULT_ARCHIVE_INTERVAL, |a| a.interval),
            clock.clone(),
            metrics.clone(),
        )
        .map(Arc::new);
        let release = Release::new(
            storage.clone(),
            clock.clone(),
            wake.clone(),
            sinks.keys().cloned().collect(),
        );
        let relay = Relay::new(RelayParts {
            storage,
            sinks,
            circuits: circuits.clone(),
            routes: deliveries,
            clock,
            metrics: metrics.clone(),
            config: config.relay.clone(),
            wake,
            running: running.clone(),
        });
        let sources = Sources::new(&config, &circuits);
        let api = Api::new(
            pipeline.clone(),
            running,
            &config,
            circuits.clone(),
            projections.clone(),
            release,
            doors,
            sources.clone(),
        );
        let watched = config.plugins.watch_dir.clone().map(|dir| {
            let watched = WatchedDir::new(
                dir,
                config.plugins.debounce,
                pipeline.clone(),
                metrics.clone(),
                ready.clone(),
            );
            Arc::new(watched)
        });
        Ok(Host {
            pipeline,
            relay: Arc::new(relay),
            circuits,
            watched,
            sources,
            checkpointer,
            retention,
            metrics,
            api,
            http: config.http.clone(),
            projections,
        })
    }
}

/// Loads each entity type's projector (the registry's active version while the config names
/// the same file, as for routes); its own word for the entity type must match its table's,
/// or the wrong fold would answer.
fn load_projections(
    config: &Config,
    runtime: &Runtime,
    registry: &Registry,
    storage: &Arc<dyn Storage>,
    now: jiff::Timestamp,
) -> Result<Projections, Error> {
    let mut projectors = Vec::new();
    for (entity_type, projector) in &config.projectors {
        let bytes = std::fs::read(&projector.plugin).map_err(|error| {
            Error::from(crate::plugin::LoadError::Read {
                path: projector.plugin.clone(),
                error,
            })
        })?;
        let slot = crate::registry::projector_slot(entity_type);
        let start = registry.at_start(&slot, bytes, projector.plugin.display().to_string());
        let loaded = runtime.load_projector(&start.wasm, &start.shown)?;
        if loaded.info().entity_type != *entity_type {
            return Err(Error::config(format!(
                "projectors.{entity_type}: {} folds entity type `{}`, not `{entity_type}`",
                start.shown,
                loaded.info().entity_type
            )));
        }
        let version = crate::registry::Version::of_projector(&loaded, &start.wasm, now);
        registry.started(&slot, &start, &version)?;
        tracing::info!(entity_type, projector = %loaded.id(), "projector folds");
        projectors.push((loaded, projector.snapshot_every));
    }
    Ok(Projections::new(storage.clone(), projectors))
}

impl Host {
    /// A builder.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The store.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        self.pipeline.storage()
    }

    /// The entity types' projectors: entity state at any instant.
    pub fn projections(&self) -> &Projections {
        &self.projections
    }

    /// The HTTP API, to mount in a service's own router (a `tower` service over any request
    /// body of `Bytes`). Run [`Host::run`] beside it, or nothing is delivered.
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// Serves the HTTP API on `listener` and runs the relay until `shutdown` resolves, then
    /// shuts down in order: stop accepting, finish in-flight requests, stop the relay, flush.
    ///
    /// # Errors
    ///
    /// When the store cannot be flushed at the end.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let stop = CancellationToken::new();
        let background = self.run(stop.clone().cancelled_owned());
        let serving = async {
            transport::serve(self.api(), listener, &self.http, shutdown).await;
            stop.cancel();
        };
        let ((), finished) = tokio::join!(serving, background);
        finished
    }

    /// Runs the relay (and watches the plugins directory, if the config names one) until
    /// `shutdown` resolves, then lets its current pass finish and
    /// flushes the store. For an embedding service that serves [`Host::api`] itself: stop its
    /// server first, then resolve `shutdown`.
    ///
    /// # Errors
    ///
    /// When the store cannot be flushed at the end.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let cancel = CancellationToken::new();
        let relay = tokio::spawn(self.relay.clone().run(cancel.clone()));
        let watcher = tokio::spawn(
            self.circuits
                .clone()
                .watch(self.pipeline.storage().clone(), cancel.clone()),
        );
        let plugins = self
            .watched
            .clone()
            .map(|watched| tokio::spawn(watched.run(cancel.clone())));
        let follower =
            tokio::spawn(crate::follow::Follower::new(self.pipeline.clone()).run(cancel.clone()));
        let sources = {
            let (sources, pipeline, metrics) = (
                self.sources.clone(),
                self.pipeline.clone(),
                self.metrics.clone(),
            );
            let cancel = cancel.clone();
            tokio::spawn(async move { sources.run(pipeline, metrics, cancel).await })
        };
        let checkpoints = self
            .checkpointer
            .clone()
            .map(|checkpointer| tokio::spawn(checkpointer.run(cancel.clone())));
        let retention = self
            .retention
            .clone()
            .map(|retention| tokio::spawn(retention.run(cancel.clone())));
        shutdown.await;
        cancel.cancel();
        // The sources first: what they hold is committed and acknowledged before the end.
        if let Err(e) = sources.await {
            tracing::error!(error = %e, "the sources failed");
        }
        if let Some(checkpoints) = checkpoints
            && let Err(e) = checkpoints.await
        {
            tracing::error!(error = %e, "the checkpoint task failed");
        }
        if let Some(retention) = retention
            && let Err(e) = retention.await
        {
            tracing::error!(error = %e, "the retention task failed");
        }
        if let Err(e) = follower.await {
            tracing::error!(error = %e, "the plugin follower failed");
        }
        if let Some(plugins) = plugins
            && let Err(e) = plugins.await
        {
            tracing::error!(error = %e, "the plugins directory watcher failed");
        }
        if let Err(e) = watcher.await {
            tracing::error!(error = %e, "the breaker watcher failed");
        }
        if let Err(e) = relay.await {
            tracing::error!(error = %e, "the relay task failed");
        }
        self.pipeline.storage().durable().await?;
        tracing::info!("shut down cleanly");
        Ok(())
    }

    /// Ingests one message on `route`: deduplicates it by its idempotency key, translates
    /// it, commits the outcome and answers once the commit is durable.
    pub async fn ingest(&self, route: &str, incoming: Incoming) -> Ingested {
        self.pipeline.ingest(route, incoming).await
    }

    /// Carries out a domain command on `route`: the route's plugin encodes it, the host
    /// sends it to the route's vendor through the vendor's circuit breaker, and the plugin
    /// decodes the answer into domain events, committed to the outbox; answers with them
    /// once durable. The same key gets the same answer again. While the vendor's circuit is
    /// open, the route's degradation answers instead.
    pub async fn command(&self, route: &str, incoming: Incoming) -> Commanded {
        self.pipeline.command(route, incoming).await
    }

    /// Receives a version of a plugin (a component's bytes) while messages flow: it is
    /// loaded, checked against the contract, against `name` when given, and against the
    /// routes that serve the plugin, and the fixtures it carries are run; a refusal changes
    /// nothing. It is then kept in the registry and served as `serve` says: swapped in whole
    /// on every route that serves the plugin (messages in flight finish on the version they
    /// started with), or as a canary beside the active version.
    pub async fn push(&self, name: Option<&str>, wasm: Vec<u8>, serve: Serve) -> Activated {
        self.pipeline.push(name, wasm, serve).await
    }

    /// Serves a kept version of plugin `name` (by its version or its sha256) as `serve`
    /// says (active, or a canary) on every route that serves the plugin, checked as a pushed
    /// one is.
    pub async fn activate(&self, name: &str, selector: Selector, serve: Serve) -> Activated {
        self.pipeline.activate(name, selector, serve).await
    }

    /// Ends the canary of plugin `name` where one runs; else takes every route that serves
    /// the plugin back to the version it served before.
    pub async fn rollback(&self, name: &str) -> Activated {
        self.pipeline.rollback(name).await
    }

    /// Translates a message with the route's plugin and stores nothing.
    pub async fn translate(&self, route: &str, incoming: Incoming) -> Translated {
        self.pipeline.translate(route, incoming).await
    }

    /// Re-runs a dead letter through the route's current plugin (a translation entry) or puts
    /// its event back in the outbox (a delivery entry).
    pub async fn replay(&self, id: &str) -> Replayed {
        self.pipeline.replay(id).await
    }

    /// Re-runs a translation dead letter through a kept version of its route's plugin (the
    /// one `target` names, checked as an activation is; the active one when `None`).
    pub async fn replay_pinned(&self, id: &str, target: Option<Selector>) -> Replayed {
        self.pipeline.replay_pinned(id, target).await
    }

    /// Replays the translation dead letters `filter` matches (at most [`crate::MAX_BATCH`])
    /// through a kept version of the route's plugin (`target`; the active one when `None`),
    /// or with `dry_run` says what each would become and stores nothing.
    pub async fn replay_batch(
        &self,
        filter: crate::ReplayFilter,
        target: Option<Selector>,
        dry_run: bool,
    ) -> crate::outcome::ReplayedBatch {
        self.pipeline.replay_batch(filter, target, dry_run).await
    }

    /// Discards a dead letter for good; the audit trail records it.
    pub async fn discard(&self, id: &str) -> Discarded {
        self.pipeline.discard(id, None).await
    }

    /// Discards a dead letter for good; the audit trail records it with `reason`.
    pub async fn discard_with_reason(&self, id: &str, reason: &str) -> Discarded {
        self.pipeline.discard(id, Some(reason)).await
    }

    /// Up to `limit` entries of the dead letter channel (at most 1,000) after the entry
    /// `after`, oldest first.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub async fn dead_letters(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        self.pipeline
            .dead_letters(after.map(str::to_owned), limit)
            .await
    }

    /// The message's state folded from its audit events, at `at` or now.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub async fn message_state(&self, id: &str, at: Option<Timestamp>) -> Result<StateAt, Error> {
        self.pipeline.message_state(id, at).await
    }

    /// The message's audit events.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub async fn history(&self, id: &str) -> Result<Vec<AuditEvent>, Error> {
        self.pipeline.history(id).await
    }

    /// Verifies every audit stream: how many there are, and what is wrong.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub async fn verify_audit(&self) -> Result<(usize, Vec<Finding>), Error> {
        self.pipeline.verify_audit().await
    }
}

/// Opens the store the config names.
///
/// # Errors
///
/// A storage error when it cannot be opened or reached.
pub(crate) fn open_store(config: &Config) -> Result<Arc<dyn Storage>, Error> {
    Ok(match &config.store {
        crate::config::StoreConfig::Sled => Arc::new(Db::open(&config.data_dir)?),
        crate::config::StoreConfig::Postgres { url, pool } => {
            Arc::new(crate::storage::Postgres::connect(url.expose(), *pool)?)
        }
    })
}
