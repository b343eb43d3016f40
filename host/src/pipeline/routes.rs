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

use crate::Error;
use crate::config::{CommandsConfig, Config, RetryPolicy, RouteConfig};
use crate::plugin::{Instances, Plugin, PluginConfig, Runtime};
use crate::storage::Producer;

use super::headers::KeptHeaders;

/// One version of a route's plugin, with its instances.
#[derive(Debug)]
pub(crate) struct Version {
    pub(crate) plugin: Plugin,
    /// The plugin as its events and dead letters name it, made once at load.
    pub(crate) producer: Producer,
    /// The plugin's instances with the route's config, reused as the route says.
    pub(crate) instances: Instances,
}

/// A route with its loaded plugin.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: String,
    active: RwLock<Arc<Version>>,
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
}

impl Route {
    /// The active version: take it once per operation.
    pub(crate) fn version(&self) -> Arc<Version> {
        self.active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `plugin` the active version; returns the one it replaces.
    ///
    /// # Errors
    ///
    /// A config error when the plugin lacks a direction the route uses.
    pub(crate) fn activate(&self, plugin: Plugin) -> Result<Arc<Version>, Error> {
        check_directions(
            &self.name,
            plugin.id().name.as_ref(),
            &plugin,
            self.commands.is_some(),
        )?;
        let version = Arc::new(version(plugin, &self.plugin_config, self.instance_reuse));
        let mut active = self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(std::mem::replace(&mut *active, version))
    }
}

fn version(plugin: Plugin, config: &Arc<PluginConfig>, reuse: u32) -> Version {
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
    /// Loads every route's plugin into `runtime`.
    ///
    /// # Errors
    ///
    /// A load error naming the plugin, or a config error for a plugin without the inbound
    /// direction.
    pub(crate) fn load(config: &Config, runtime: &Runtime) -> Result<Self, Error> {
        let mut routes = BTreeMap::new();
        for (name, route) in &config.routes {
            routes.insert(name.clone(), Arc::new(load_route(name, route, runtime)?));
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

fn load_route(name: &str, route: &RouteConfig, runtime: &Runtime) -> Result<Route, Error> {
    let plugin = runtime.load_file(&route.plugin)?;
    let shown = route.plugin.display().to_string();
    check_directions(name, &shown, &plugin, route.commands.is_some())?;
    let plugin_config = Arc::new(route.plugin_config.clone());
    let active = version(plugin, &plugin_config, route.instance_reuse);
    Ok(Route {
        name: name.to_owned(),
        active: RwLock::new(Arc::new(active)),
        plugin_config,
        instance_reuse: route.instance_reuse,
        sinks: route.sinks.clone(),
        retention: route.retention,
        inflight_timeout: route.inflight_timeout,
        retry: route.retry,
        headers: KeptHeaders::new(&route.headers),
        commands: route.commands.clone(),
    })
}
