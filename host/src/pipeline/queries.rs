//! What the store, the routes and the registry tell: the plugins kept and served, the dead
//! letter channel, a message's state folded from
//! its audit events, its history, the check of every audit chain, and the topology.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::Pipeline;
use crate::Error;
use crate::archive::{self, ArchiveError, StateAt};
use crate::audit::{self, Finding};
use crate::config::{HttpSink, SinkAuth, SinkConfig};
use crate::plugin::Provenance;
use crate::storage::{
    AuditEvent, DeadLetter, EntityEvent, EntityRef, MessageRecord, Storage, StorageError,
};
use crate::topology;

/// The most dead letter entries one listing gives.
pub(crate) const MAX_LISTING: usize = 1000;

impl Pipeline {
    /// Runs `read` on a blocking thread: reads of the store may scan, and an async thread
    /// must never wait on one.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn Storage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, Error> {
        let storage = self.core.storage.clone();
        tokio::task::spawn_blocking(move || read(&*storage))
            .await
            .map_err(|e| StorageError::Backend(format!("the read task failed: {e}")))?
            .map_err(Error::from)
    }

    /// Whether the store answers now.
    pub(crate) async fn store_ready(&self) -> Result<(), Error> {
        self.read(|storage| storage.ready()).await
    }

    /// Up to `limit` (at most [`MAX_LISTING`]) dead letter entries after `after`, oldest
    /// first.
    pub(crate) async fn dead_letters(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        let limit = limit.min(MAX_LISTING);
        self.read(move |storage| storage.dead_letters(after.as_deref(), limit))
            .await
    }

    /// The translation dead letters `filter` matches, oldest first, at most
    /// [`super::replay::MAX_BATCH`]: what a batch replay of that filter would take.
    pub(crate) async fn dead_letters_matching(
        &self,
        filter: crate::ReplayFilter,
    ) -> Result<Vec<DeadLetter>, Error> {
        self.read(move |storage| super::replay::matching(storage, &filter))
            .await
    }

    /// One dead letter entry with the message it concerns, if that is still stored.
    pub(crate) async fn dead_letter(
        &self,
        id: &str,
    ) -> Result<Option<(DeadLetter, Option<MessageRecord>)>, Error> {
        let id = id.to_owned();
        self.read(move |storage| {
            let Some(entry) = storage.dead_letter(&id)? else {
                return Ok(None);
            };
            let message = storage.message(&entry.message_id).ok().flatten();
            Ok(Some((entry, message)))
        })
        .await
    }

    /// The message's state folded from its audit events, at `at` or now; an instant before
    /// its archived events end is answered as [`StateAt::Archived`]: the host does not read
    /// the archive.
    pub(crate) async fn message_state(
        &self,
        id: &str,
        at: Option<Timestamp>,
    ) -> Result<StateAt, Error> {
        let id = id.to_owned();
        self.read(move |storage| {
            archive::message_state(storage, &id, at, None).map_err(|e| match e {
                ArchiveError::Storage(e) => e,
                other => StorageError::Backend(other.to_string()),
            })
        })
        .await
    }

    /// The message's audit events.
    pub(crate) async fn history(&self, id: &str) -> Result<Vec<AuditEvent>, Error> {
        let id = id.to_owned();
        self.read(move |storage| storage.history(&id)).await
    }

    /// Verifies every audit stream and every entity stream: how many there are, and what
    /// is wrong.
    pub(crate) async fn verify_audit(&self) -> Result<(usize, Vec<Finding>), Error> {
        self.read(audit::verify_store).await
    }

    /// An entity's stream, in commit order (empty for an entity never seen).
    pub(crate) async fn entity_stream(&self, entity: EntityRef) -> Result<Vec<EntityEvent>, Error> {
        self.read(move |storage| storage.entity_stream(&entity))
            .await
    }

    /// The routes, their plugins and `sinks`, as JSON.
    pub(crate) fn topology(&self, sinks: &BTreeMap<String, SinkConfig>) -> serde_json::Value {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .core
            .routes
            .iter()
            .map(|route| {
                let version = route.version();
                let id = version.plugin.id();
                let (max_concurrency, max_waiting) = route.bulkhead.bounds();
                (route.name.clone(), json!({
                    "plugin": {"name": id.name, "version": id.version, "sha256": id.sha256, "vendor_api_version": version.plugin.info().vendor_api_version},
                    "sinks": route.sinks,
                    "idempotency_retention_secs": route.retention.as_secs(),
                    "inflight_timeout_secs": route.inflight_timeout.as_secs(),
                    "instance_reuse": version.instances.max_uses(),
                    "headers": route.headers.names(),
                    "retry": {
                        "max_attempts": route.retry.max_attempts,
                        "max_retry_secs": route.retry.max_duration.as_secs(),
                        "initial_backoff_ms": route.retry.initial_backoff.as_millis() as u64,
                        "max_backoff_ms": route.retry.max_backoff.as_millis() as u64,
                        "multiplier": route.retry.multiplier,
                        "max_retry_after_ms": route.retry.max_retry_after.as_millis() as u64,
                    },
                    "max_concurrency": max_concurrency,
                    "max_waiting": max_waiting,
                    "dead_letters": {
                        "max_entries": route.dead_letters.max_entries,
                        "max_bytes": route.dead_letters.max_bytes,
                    },
                }))
            })
            .collect();
        let sinks: serde_json::Map<String, serde_json::Value> = sinks
            .iter()
            .map(|(name, sink)| {
                (name.clone(), match sink {
                    SinkConfig::Http(HttpSink { url, auth, headers, ca_file, signing_secret, .. }) => json!({
                        "type": "http",
                        "url": url.redacted(),
                        "auth": auth.as_ref().map(|auth| match auth {
                            SinkAuth::Bearer(_) => "bearer",
                            SinkAuth::Basic { .. } => "basic",
                        }),
                        "headers": headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                        "ca_file": ca_file,
                        "signed": signing_secret.is_some(),
                    }),
                    SinkConfig::Nats { url, stream, subject } => json!({"type": "nats", "url": url, "stream": stream, "subject": subject}),
                })
            })
            .collect();
        json!({"routes": routes, "sinks": sinks})
    }

    /// The topology as a picture in `format`: each route's vendor, plugin version, the entity
    /// types its committed events were about, and its sinks.
    pub(crate) async fn topology_picture(
        &self,
        sinks: &BTreeMap<String, SinkConfig>,
        sources: &BTreeMap<String, String>,
        format: topology::Format,
    ) -> Result<String, Error> {
        let picture = self.topology_model(sinks, sources).await?;
        Ok(topology::render(&picture, format))
    }

    /// What the topology picture shows, for a caller that draws it itself (the console).
    pub(crate) async fn topology_model(
        &self,
        sinks: &BTreeMap<String, SinkConfig>,
        sources: &BTreeMap<String, String>,
    ) -> Result<topology::Topology, Error> {
        let types = self.read(|storage| storage.entity_types()).await?;
        let mut picture = topology::Topology::default();
        for route in self.core.routes.iter() {
            let version = route.version();
            let id = version.plugin.id();
            picture.routes.insert(
                route.name.clone(),
                topology::RouteNode {
                    vendor_api: version.plugin.info().vendor_api_version.clone(),
                    command_vendor: route.commands.as_ref().map(|c| c.vendor.clone()),
                    plugin: format!("{}@{}", id.name, id.version),
                    entity_types: types.get(&route.name).cloned().unwrap_or_default(),
                    sinks: route.sinks.clone(),
                    source: sources.get(&route.name).cloned(),
                },
            );
        }
        for (name, sink) in sinks {
            let kind = match sink {
                SinkConfig::Http(_) => "http",
                SinkConfig::Nats { .. } => "nats",
            };
            picture.sinks.insert(name.clone(), kind.to_owned());
        }
        Ok(picture)
    }

    /// `route`'s ingest latency buckets now (`None` for no such route).
    pub(crate) fn route_latency(&self, route: &str) -> Option<[u64; crate::telemetry::BUCKETS]> {
        self.core.routes.get(route).map(|r| r.latency.counts())
    }

    /// The host's metrics, for a reader of single values (the console).
    pub(crate) fn metrics(&self) -> &crate::telemetry::Metrics {
        &self.core.metrics
    }

    /// The Prometheus text exposition; the relay refreshes the store's gauges once a second.
    pub(crate) fn metrics_text(&self) -> String {
        self.core.metrics.render()
    }

    /// Every kept version of every plugin, what each route serves (its active version,
    /// whether that was compiled or loaded from the cache, and the versions before it) and
    /// what folds each entity type (`folds`, on a projector's entry).
    pub(crate) async fn plugins(&self) -> Result<Value, crate::registry::RegistryError> {
        let pipeline = self.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let registry = &pipeline.core.versions.registry;
            let mut plugins = serde_json::Map::new();
            // A plugin's entry, the first time it is named.
            let blank = || json!({"versions": [], "routes": {}});
            for version in registry.versions()? {
                let entry = plugins.entry(version.name.clone()).or_insert_with(blank);
                entry["versions"]
                    .as_array_mut()
                    .expect("an array")
                    .push(json!(version));
            }
            for route in pipeline.core.routes.iter() {
                let active = route.version();
                let previous = registry
                    .route(&route.name)
                    .map(|s| s.previous)
                    .unwrap_or_default();
                let entry = plugins
                    .entry(active.producer.name.clone())
                    .or_insert_with(blank);
                let canary = route.canary().map(|c| {
                    json!({
                        "version": c.version.producer, "percent": c.percent,
                        "standing": c.standing(),
                    })
                });
                let shadow = route.shadow().map(|s| json!(s.report()));
                entry["routes"][route.name.as_str()] = json!({
                    "active": active.producer,
                    "loaded": match active.loaded {
                        Provenance::Cached => "cached",
                        Provenance::Compiled => "compiled",
                    },
                    "previous": previous,
                    "canary": canary,
                    "shadow": shadow,
                });
            }
            for projector in pipeline.core.versions.projections.projectors() {
                let entity_type = &projector.info().entity_type;
                let slot = crate::registry::projector_slot(entity_type);
                let previous = registry
                    .route(&slot)
                    .map(|s| s.previous)
                    .unwrap_or_default();
                let entry = plugins
                    .entry(projector.id().name.clone())
                    .or_insert_with(blank);
                entry["folds"][entity_type.as_str()] =
                    json!({"active": projector.id(), "previous": previous});
            }
            Ok(Value::Object(plugins))
        });
        listed.await.unwrap_or_else(|e| {
            Err(crate::registry::RegistryError::Damaged {
                path: "plugins".into(),
                message: format!("the listing task failed: {e}"),
            })
        })
    }
}
