//! The routes: each a loaded translator plugin with its instances, its sinks and its
//! idempotency and retry settings, built from the configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::config::{CommandsConfig, Config, RetryPolicy};
use crate::plugin::{Instances, Plugin, Runtime};
use crate::storage::Producer;

use super::headers::KeptHeaders;

/// A route with its loaded plugin.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) plugin: Plugin,
    /// The plugin as its events and dead letters name it, made once at load.
    pub(crate) producer: Producer,
    /// The plugin's instances with the route's config, reused as the route says.
    pub(crate) instances: Instances,
    pub(crate) sinks: Vec<String>,
    pub(crate) retention: Duration,
    pub(crate) inflight_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    /// Which request headers its messages keep.
    pub(crate) headers: KeptHeaders,
    /// How it sends commands to its vendor, if it takes commands.
    pub(crate) commands: Option<CommandsConfig>,
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
            let plugin = runtime.load_file(&route.plugin)?;
            if route.commands.is_some() && !plugin.directions().outbound {
                return Err(Error::config(format!(
                    "route {name}: it takes commands, but plugin {} does not implement the \
                     outbound direction",
                    route.plugin.display()
                )));
            }
            if !plugin.directions().inbound {
                return Err(Error::config(format!(
                    "route {name}: plugin {} does not implement the inbound direction",
                    route.plugin.display()
                )));
            }
            let id = plugin.id();
            let producer = Producer {
                name: id.name.clone(),
                version: id.version.clone(),
                sha256: id.sha256.clone(),
            };
            let instances = Instances::new(
                plugin.clone(),
                Arc::new(route.plugin_config.clone()),
                route.instance_reuse,
            );
            routes.insert(
                name.clone(),
                Arc::new(Route {
                    name: name.clone(),
                    instances,
                    plugin,
                    producer,
                    sinks: route.sinks.clone(),
                    retention: route.retention,
                    inflight_timeout: route.inflight_timeout,
                    retry: route.retry,
                    headers: KeptHeaders::new(&route.headers),
                    commands: route.commands.clone(),
                }),
            );
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
