//! The routes: each a loaded translator plugin with its instances, its sinks and its
//! idempotency and retry settings, built from the configuration.
//!
//! A route's plugin is its active [`Version`], swapped whole: an operation takes the version
//! once ([`Route::version`]) and does all its plugin calls and names its events with that
//! one, so a message is translated wholly by one version even while another is activated;
//! the old version's instances go when the last operation that holds it ends.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;

use crate::Error;
use crate::config::{CommandsConfig, Config, RetryPolicy, RouteConfig};
use crate::plugin::{Instances, Plugin, PluginConfig, Provenance, Runtime};
use crate::registry::Registry;
use crate::storage::Producer;

use super::canary::Canary;
use super::headers::KeptHeaders;
use super::shadow::Shadow;

/// One version of a route's plugin, with its instances.
#[derive(Debug)]
pub(crate) struct Version {
    pub(crate) plugin: Plugin,
    /// The plugin as its events and dead letters name it, made once at load.
    pub(crate) producer: Producer,
    /// The plugin's instances with the route's config, reused as the route says.
    pub(crate) instances: Instances,
    /// Whether its compiled form came from the cache or was compiled.
    pub(crate) loaded: Provenance,
}

/// A route with its loaded plugin.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: String,
    active: RwLock<Arc<Version>>,
    /// A version serving a share of the messages beside the active one, if any.
    canary: RwLock<Option<Arc<Canary>>>,
    /// A candidate translating the messages in shadow, if any.
    shadow: RwLock<Option<Arc<Shadow>>>,
    plugin_config: Arc<PluginConfig>,
    instance_reuse: u32,
    pub(crate) sinks: Vec<String>,
    pub(crate) retention: Duration,
    pub(crate) inflight_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    /// Which request headers its messages keep.
    pub(crate) headers: KeptHeaders,
    /// How it sends commands to its vendor, if it takes commands.
    pub(crate) commands: Option<CommandsConfig>,
    /// Whether its events go to their entities' streams too.
    pub(crate) entity_streams: bool,
    /// How much of the dead letter channel it may fill.
    pub(crate) dead_letters: crate::config::DeadLetterBound,
    /// Its own bound on translations running and waiting.
    pub(crate) bulkhead: crate::bulkhead::Bulkhead,
    /// How long its ingests took, for the console's p99.
    pub(crate) latency: crate::telemetry::Latency,
}

impl Route {
    /// The active version: take it once per operation.
    pub(crate) fn version(&self) -> Arc<Version> {
        self.active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The version a message whose key is decided by `stable_key` meets: the canary's for
    /// its share of keys while one runs, else the active one. Take it once per message.
    pub(crate) fn version_for(&self, stable_key: &str) -> Arc<Version> {
        if let Some(canary) = self.canary()
            && canary.takes(stable_key)
        {
            return canary.version.clone();
        }
        self.version()
    }

    /// The canary running, if any.
    pub(crate) fn canary(&self) -> Option<Arc<Canary>> {
        self.canary
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts (or replaces) a canary of `plugin` (checked with [`Route::check`]) for
    /// `percent` of the messages; returns the one it replaces.
    pub(crate) fn start_canary(
        &self,
        plugin: Plugin,
        loaded: Provenance,
        percent: u8,
    ) -> Option<Arc<Canary>> {
        let canary = Arc::new(Canary::new(self.candidate(plugin, loaded), percent));
        self.canary
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(canary)
    }

    /// Ends the canary, whichever it is; returns it.
    pub(crate) fn end_canary(&self) -> Option<Arc<Canary>> {
        self.canary
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Ends the canary if it is still `canary`; whether it did.
    pub(crate) fn end_canary_if(&self, canary: &Arc<Canary>) -> bool {
        let mut slot = self
            .canary
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, canary)) {
            *slot = None;
            return true;
        }
        false
    }

    /// `plugin` as a version of this route (its config, its instances), serving nothing yet.
    pub(crate) fn candidate(&self, plugin: Plugin, loaded: Provenance) -> Arc<Version> {
        Arc::new(version(
            plugin,
            loaded,
            &self.plugin_config,
            self.instance_reuse,
        ))
    }

    /// The shadow running, if any.
    pub(crate) fn shadow(&self) -> Option<Arc<Shadow>> {
        self.shadow
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets (or ends, with `None`) the shadow; returns the one it replaces.
    pub(crate) fn set_shadow(&self, shadow: Option<Arc<Shadow>>) -> Option<Arc<Shadow>> {
        std::mem::replace(
            &mut *self
                .shadow
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            shadow,
        )
    }

    /// Whether `plugin` can serve this route: it has every direction the route uses.
    ///
    /// # Errors
    ///
    /// A config error naming the missing direction.
    pub(crate) fn check(&self, plugin: &Plugin) -> Result<(), Error> {
        let what = plugin.id().to_string();
        check_directions(&self.name, &what, plugin, self.commands.is_some())
    }

    /// Makes `plugin` (checked with [`Route::check`]) the active version; returns the one it
    /// replaces.
    pub(crate) fn activate(&self, plugin: Plugin, loaded: Provenance) -> Arc<Version> {
        let version = Arc::new(version(
            plugin,
            loaded,
            &self.plugin_config,
            self.instance_reuse,
        ));
        let mut active = self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *active, version)
    }
}

fn version(plugin: Plugin, loaded: Provenance, config: &Arc<PluginConfig>, reuse: u32) -> Version {
    let id = plugin.id();
    let producer = Producer {
        name: id.name.clone(),
        version: id.version.clone(),
        sha256: id.sha256.clone(),
    };
    let instances = Instances::new(plugin.clone(), config.clone(), reuse);
    Version {
        plugin,
        producer,
        instances,
        loaded,
    }
}

/// A route's plugin must translate inbound, and outbound too when the route takes commands.
fn check_directions(route: &str, what: &str, plugin: &Plugin, commands: bool) -> Result<(), Error> {
    if commands && !plugin.directions().outbound {
        return Err(Error::config(format!(
            "route {route}: it takes commands, but plugin {what} does not implement the \
             outbound direction"
        )));
    }
    if !plugin.directions().inbound {
        return Err(Error::config(format!(
            "route {route}: plugin {what} does not implement the inbound direction"
        )));
    }
    Ok(())
}

/// Every route, by name.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    routes: BTreeMap<String, Arc<Route>>,
}

impl Routes {
    /// Loads every route's plugin into `runtime`: the version the registry says the route
    /// served, or the configured file when the configuration names another file than it did
    /// then (or the registry has no state for the route). The version loaded is kept in the
    /// registry and recorded as active.
    ///
    /// # Errors
    ///
    /// A load error naming the plugin, a config error for a plugin without the inbound
    /// direction, or a registry error.
    pub(crate) fn load(
        config: &Config,
        runtime: &Runtime,
        registry: &Registry,
        now: Timestamp,
    ) -> Result<Self, Error> {
        let mut routes = BTreeMap::new();
        let share = crate::bulkhead::fair_share(
            super::default_workers(),
            super::cores(),
            config.routes.len(),
        );
        for (name, route) in &config.routes {
            let bulkhead = crate::bulkhead::Bulkhead::new(
                route.max_concurrency.unwrap_or(share),
                route.max_waiting,
            );
            let route = load_route(name, route, runtime, registry, now, bulkhead)?;
            routes.insert(name.clone(), Arc::new(route));
        }
        Ok(Self { routes })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.get(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }
}

fn load_route(
    name: &str,
    route: &RouteConfig,
    runtime: &Runtime,
    registry: &Registry,
    now: Timestamp,
    bulkhead: crate::bulkhead::Bulkhead,
) -> Result<Route, Error> {
    let configured =
        std::fs::read(&route.plugin).map_err(|error| crate::plugin::LoadError::Read {
            path: route.plugin.clone(),
            error,
        })?;
    let start = registry.at_start(name, configured, route.plugin.display().to_string());
    let (plugin, loaded) = runtime.load_with_provenance(&start.wasm, &start.shown)?;
    check_directions(name, &start.shown, &plugin, route.commands.is_some())?;
    let kept = crate::registry::Version::of(&plugin, &start.wasm, now);
    registry.started(name, &start, &kept)?;
    tracing::info!(route = name, plugin = %plugin.id(), ?loaded, "route serves");
    let plugin_config = Arc::new(route.plugin_config.clone());
    let active = version(plugin, loaded, &plugin_config, route.instance_reuse);
    Ok(Route {
        name: name.to_owned(),
        active: RwLock::new(Arc::new(active)),
        canary: RwLock::new(None),
        shadow: RwLock::new(None),
        plugin_config,
        instance_reuse: route.instance_reuse,
        sinks: route.sinks.clone(),
        retention: route.retention,
        inflight_timeout: route.inflight_timeout,
        retry: route.retry,
        headers: KeptHeaders::new(&route.headers),
        commands: route.commands.clone(),
        entity_streams: route.entity_streams,
        dead_letters: route.dead_letters,
        bulkhead,
        latency: crate::telemetry::Latency::default(),
    })
}
