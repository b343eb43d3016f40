//! Activation: a plugin's version received, checked and made active on the routes that serve
//! the plugin, while messages flow; and the way back (rollback, or any kept version by hand).
//!
//! A candidate is checked off the hot path, on a blocking thread: it is compiled (or taken
//! from the cache), checked against the contract and the directions each route uses, its
//! name checked against the plugin it was given as, and the fixtures it carries run
//! (`fixtures/embedded.rs`). A candidate that fails any step is refused with the reason and
//! nothing changes. Only then is it kept in the registry, recorded as active, and swapped in
//! whole: a message takes its route's version once (`routes.rs`), so it is translated wholly
//! by one version and its events name that one; the old version's instances go when the last
//! message holding it ends.
//!
//! One change at a time: activations, pushes and rollbacks queue on one lock, so a route's
//! history in the registry is the order its versions served in. Every change is an audit
//! event: received and refused on the plugin's stream (`plugin:NAME`), activated on the
//! route's (`route:NAME`), each with the hashes involved.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Pipeline;
use super::routes::Route;
use crate::config::CanaryPolicy;
use crate::fixtures;
use crate::outcome::{Activated, CandidateRefused, Collected, Swap, Unavailable};
use crate::plugin::{Plugin, Provenance, Runtime};
use crate::projection::{FoldVersions, Projections};
use crate::registry::{Found, Registry, Selector, Serve, Version, plugin_stream};

/// The registry, the runtime candidates load into, the lock that orders changes, when a
/// canary is rolled back by itself, and the projectors (whose versions change here too).
#[derive(Debug)]
pub(crate) struct Versions {
    pub(crate) registry: Registry,
    runtime: Runtime,
    changing: tokio::sync::Mutex<()>,
    pub(crate) canary: CanaryPolicy,
    pub(super) projections: Projections,
    /// This host, as the changes it shares with the other hosts of its store name it.
    pub(super) origin: i64,
}

impl Versions {
    pub(super) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(crate) fn new(
        registry: Registry,
        runtime: Runtime,
        canary: CanaryPolicy,
        projections: Projections,
    ) -> Self {
        Self {
            registry,
            runtime,
            changing: tokio::sync::Mutex::new(()),
            canary,
            projections,
            origin: rand::random::<i64>(),
        }
    }

    /// Projector changes, now.
    fn folds(&self, now: jiff::Timestamp) -> FoldVersions<'_> {
        FoldVersions {
            registry: &self.registry,
            runtime: &self.runtime,
            projections: &self.projections,
            now,
        }
    }
}

/// The audit stream of a route's plugin changes.
pub(crate) fn route_stream(route: &str) -> String {
    format!("route:{route}")
}

/// How a version came to be activated, as the audit trail says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum How {
    /// Received (pushed, uploaded or dropped into the watched directory).
    Received,
    /// Named by hand among the kept versions.
    ByHand,
    /// A route's rollback.
    Rollback,
}

impl How {
    fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::ByHand => "by_hand",
            Self::Rollback => "rollback",
        }
    }
}

/// A candidate that passed every check, ready to swap in.
pub(super) struct Checked {
    pub(super) plugin: Plugin,
    pub(super) loaded: Provenance,
    version: Version,
    fixtures: usize,
    /// The routes that serve the plugin, which it was checked against.
    routes: Vec<Arc<Route>>,
}

/// A candidate that failed a check: the name it gives itself (or the one it was given as,
/// when it did not load), and why.
pub(super) struct Failed {
    name: String,
    pub(super) reason: CandidateRefused,
}

impl Pipeline {
    /// Receives a version of a plugin (the component's bytes; of plugin `name` when given,
    /// else of the plugin it names itself): checks it, keeps it in the registry and serves it
    /// as `serve` says on every route that serves the plugin.
    pub(crate) async fn push(&self, name: Option<&str>, wasm: Vec<u8>, serve: Serve) -> Activated {
        self.push_as(name, wasm, serve, true).await
    }

    /// This host, as the plugin changes it shares name it.
    pub(crate) fn origin(&self) -> i64 {
        self.core.versions.origin
    }

    /// Serves what another host of the store made its plugin serve: pushed as here, and not
    /// shared again.
    pub(crate) async fn follow(&self, name: &str, wasm: Vec<u8>, serve: Serve) -> Activated {
        self.push_as(Some(name), wasm, serve, false).await
    }

    async fn push_as(
        &self,
        name: Option<&str>,
        wasm: Vec<u8>,
        serve: Serve,
        share: bool,
    ) -> Activated {
        let pipeline = self.clone();
        let expected = name.map(str::to_owned);
        self.changing(share, move || {
            let checked = match pipeline.check(&wasm, expected.as_deref()) {
                Ok(checked) => checked,
                // Not a translator: a projector, whose versions change on their own terms.
                Err(Failed {
                    reason: CandidateRefused::WrongWorld(_),
                    ..
                }) if pipeline.core.versions.runtime.is_projector(&wasm) => {
                    let folds = pipeline.core.versions.folds(pipeline.core.clock.now());
                    let answer = folds.push(&wasm, expected.as_deref(), serve);
                    if let Activated::Folding { new: true, .. }
                    | Activated::Kept { new: true, .. } = answer
                    {
                        pipeline.collect_after_push();
                    }
                    return answer;
                }
                Err(Failed { name, reason }) => {
                    let sha256 = crate::plugin::sha256_hex(&wasm);
                    let name = expected.unwrap_or(name);
                    return pipeline.refused(name, sha256, reason);
                }
            };
            let routes = checked.routes.clone();
            let new = match pipeline
                .core
                .versions
                .registry
                .keep(&wasm, &checked.version)
            {
                Ok(new) => new,
                Err(e) => return Activated::registry_failed(&e),
            };
            pipeline.audit(
                &plugin_stream(&checked.version.name),
                "plugin_received",
                json!({
                    "version": checked.version.version, "sha256": checked.version.sha256,
                    "fixtures": checked.fixtures, "new": new,
                    "active": routes.iter().map(|r| r.version().producer.sha256.clone())
                        .collect::<Vec<_>>(),
                }),
            );
            let served = pipeline.serve(checked, new, serve, How::Received);
            if new {
                pipeline.collect_after_push();
            }
            served
        })
        .await
    }

    /// Serves the kept version of plugin `name` that `selector` names as `serve` says, on
    /// every route that serves the plugin.
    pub(crate) async fn activate(&self, name: &str, selector: Selector, serve: Serve) -> Activated {
        let pipeline = self.clone();
        let name = name.to_owned();
        self.changing(true, move || {
            let routes = pipeline.serving(&name);
            if routes.is_empty() {
                let folds = pipeline.core.versions.folds(pipeline.core.clock.now());
                return folds
                    .activate(&name, &selector, serve)
                    .unwrap_or(Activated::UnknownPlugin { name });
            }
            let checked = match pipeline.kept(&name, &selector) {
                Ok(checked) => checked,
                Err(answer) => return *answer,
            };
            pipeline.serve(checked, false, serve, How::ByHand)
        })
        .await
    }

    /// The kept version of plugin `name` that `selector` names, loaded and checked as a
    /// pushed one is; else what to answer.
    pub(super) fn kept(&self, name: &str, selector: &Selector) -> Result<Checked, Box<Activated>> {
        let registry = &self.core.versions.registry;
        let version = match registry.find(name, selector) {
            Ok(Found::One(version)) => version,
            Ok(Found::None) => {
                let selector = selector.to_string();
                let name = name.to_owned();
                return Err(Box::new(Activated::UnknownVersion { name, selector }));
            }
            Ok(Found::Ambiguous(versions)) => {
                let name = name.to_owned();
                return Err(Box::new(Activated::Ambiguous { name, versions }));
            }
            Err(e) => return Err(Box::new(Activated::registry_failed(&e))),
        };
        let wasm = registry
            .component(&version.sha256)
            .map_err(|e| Box::new(Activated::registry_failed(&e)))?;
        match self.check(&wasm, Some(name)) {
            // The registry's record, with its first receipt.
            Ok(checked) => Ok(Checked { version, ..checked }),
            Err(failed) => {
                let refused = self.refused(name.to_owned(), version.sha256, failed.reason);
                Err(Box::new(refused))
            }
        }
    }

    /// Takes every route that serves plugin `name` back to the version it served before.
    pub(crate) async fn rollback(&self, name: &str) -> Activated {
        let pipeline = self.clone();
        let name = name.to_owned();
        self.changing(true, move || {
            let routes = pipeline.serving(&name);
            if routes.is_empty() {
                let folds = pipeline.core.versions.folds(pipeline.core.clock.now());
                return folds
                    .rollback(&name)
                    .unwrap_or(Activated::UnknownPlugin { name });
            }
            // A canary running is what a rollback takes back first.
            let ended = pipeline.end_canaries(&routes, "by_hand");
            if !ended.is_empty() {
                return Activated::CanaryEnded {
                    name,
                    routes: ended,
                };
            }
            let registry = &pipeline.core.versions.registry;
            // Every route's way back is checked first; then all go back, or none.
            let mut back = Vec::new();
            for route in &routes {
                let Some(previous) = registry.previous(&route.name) else {
                    continue;
                };
                let wasm = match registry.component(&previous) {
                    Ok(wasm) => wasm,
                    Err(e) => return Activated::registry_failed(&e),
                };
                // Checked against every route that serves the plugin, this one included.
                match pipeline.check(&wasm, None) {
                    Ok(checked) => back.push((route.clone(), checked)),
                    Err(failed) => return pipeline.refused(name, previous, failed.reason),
                }
            }
            let Some((_, last)) = back.last() else {
                return Activated::NothingToRollBack { name };
            };
            let version = last.version.clone();
            let names: Vec<&str> = back.iter().map(|(r, _)| r.name.as_str()).collect();
            if let Err(e) = registry.roll_back_all(&names) {
                return Activated::registry_failed(&e);
            }
            let swaps = back
                .iter()
                .map(|(route, checked)| {
                    let from = route.activate(checked.plugin.clone(), checked.loaded);
                    pipeline.swapped(route, &from.producer, How::Rollback)
                })
                .collect();
            Activated::Serving {
                version,
                new: false,
                swaps,
            }
        })
        .await
    }

    /// Runs `change` on a blocking thread, after the changes before it; with `share`, what
    /// it made the plugin serve is shared with the other hosts of the store.
    async fn changing(
        &self,
        share: bool,
        change: impl FnOnce() -> Activated + Send + 'static,
    ) -> Activated {
        let _turn = self.core.versions.changing.lock().await;
        let pipeline = self.clone();
        tokio::task::spawn_blocking(move || {
            let activated = change();
            if share && pipeline.core.storage.shares_plugins() {
                super::share::share(&pipeline.core.versions, &*pipeline.core.storage, &activated);
            }
            activated
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "a plugin change failed");
            Activated::Unavailable(Unavailable::Internal("the plugin change failed".into()))
        })
    }

    /// Keeps the registry and the compiled cache within their bounds (names what would go,
    /// with `dry_run`), after the plugin changes under way.
    pub(crate) async fn collect_plugins(&self, dry_run: bool) -> Result<Collected, Unavailable> {
        let _turn = self.core.versions.changing.lock().await;
        let pipeline = self.clone();
        tokio::task::spawn_blocking(move || pipeline.collect_now(dry_run))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "the plugin collection failed");
                Err(Unavailable::Internal("the plugin collection failed".into()))
            })
    }

    /// Keeps the registry within its bound after a new version was kept (holding the change
    /// lock); a failure is logged, the push stands.
    fn collect_after_push(&self) {
        if let Err(e) = self.collect_now(false) {
            tracing::error!(error = ?e, "keeping the plugin registry within its bound failed");
        }
    }

    /// [`Pipeline::collect_plugins`] for a caller that holds the change lock.
    fn collect_now(&self, dry_run: bool) -> Result<Collected, Unavailable> {
        // Versions a canary or a shadow serves live only in memory: protected too.
        let mut protected = std::collections::BTreeSet::new();
        for route in self.core.routes.iter() {
            if let Some(canary) = route.canary() {
                protected.insert(canary.version.producer.sha256.clone());
            }
            if let Some(shadow) = route.shadow() {
                protected.insert(shadow.candidate.sha256.clone());
            }
        }
        self.core
            .versions
            .collect(protected, dry_run)
            .map_err(|e| Unavailable::Storage(e.to_string()))
    }

    /// The routes whose active version is a version of plugin `name`.
    pub(super) fn serving(&self, name: &str) -> Vec<Arc<Route>> {
        self.core
            .routes
            .iter()
            .filter(|route| route.version().producer.name == name)
            .cloned()
            .collect()
    }

    /// Every check of a candidate (of plugin `expected`, when given): it loads, it is that
    /// plugin, it can serve each route that serves the plugin, and the fixtures it carries
    /// pass.
    pub(super) fn check(&self, wasm: &[u8], expected: Option<&str>) -> Result<Checked, Failed> {
        let unnamed = |reason| Failed {
            name: expected.unwrap_or("unknown").to_owned(),
            reason,
        };
        let sha256 = crate::plugin::sha256_hex(wasm);
        let what = format!("candidate {}", &sha256[..12]);
        let (plugin, loaded) = self
            .core
            .versions
            .runtime
            .load_with_provenance(wasm, &what)
            .map_err(|e| unnamed(e.into()))?;
        let name = plugin.info().name.clone();
        let refused = |reason| Failed {
            name: name.clone(),
            reason,
        };
        if let Some(expected) = expected.filter(|e| *e != name) {
            return Err(refused(CandidateRefused::OtherPlugin {
                expected: expected.to_owned(),
                found: name.clone(),
            }));
        }
        let routes = self.serving(&name);
        for route in &routes {
            route
                .check(&plugin)
                .map_err(|e| refused(CandidateRefused::Directions(e.to_string())))?;
        }
        let fixtures =
            fixtures::check_carried(wasm, |f| fixtures::run(&plugin, f)).map_err(refused)?;
        let version = Version::of(&plugin, wasm, self.core.clock.now());
        Ok(Checked {
            plugin,
            loaded,
            version,
            fixtures,
            routes,
        })
    }

    /// Serves a checked version as `serve` says; `new` when the registry received it now.
    fn serve(&self, checked: Checked, new: bool, serve: Serve, how: How) -> Activated {
        if checked.routes.is_empty() || serve == Serve::Keep {
            return Activated::Kept {
                version: checked.version,
                new,
            };
        }
        if serve == Serve::Shadow {
            let routes = self.start_shadows(&checked.routes, &checked.plugin, checked.loaded);
            return Activated::Shadowing {
                version: checked.version,
                new,
                routes,
            };
        }
        if let Serve::Canary(percent) = serve {
            let routes =
                self.start_canaries(&checked.routes, &checked.plugin, checked.loaded, percent);
            return Activated::Canary {
                version: checked.version,
                new,
                percent: percent.clamp(1, 99),
                routes,
            };
        }
        match self.swap_in(&checked, how) {
            Ok(swaps) => Activated::Serving {
                version: checked.version,
                new,
                swaps,
            },
            Err(e) => Activated::registry_failed(&e),
        }
    }

    /// Records `checked` as active on each route it was checked against, then swaps it in;
    /// the swaps done. A canary running there ends: the version now active serves all.
    fn swap_in(
        &self,
        checked: &Checked,
        how: How,
    ) -> Result<Vec<Swap>, crate::registry::RegistryError> {
        let changing: Vec<&Arc<Route>> = checked
            .routes
            .iter()
            .filter(|route| route.version().producer.sha256 != checked.version.sha256)
            .collect();
        // Recorded before it serves, on every route or none: a restart serves what the
        // registry says, never a version that served without being recorded.
        let registry = &self.core.versions.registry;
        let names: Vec<&str> = changing.iter().map(|r| r.name.as_str()).collect();
        registry.set_active_all(&names, &checked.version.sha256)?;
        self.end_canaries(&checked.routes, "activation");
        Ok(changing
            .into_iter()
            .map(|route| {
                let from = route.activate(checked.plugin.clone(), checked.loaded);
                self.swapped(route, &from.producer, how)
            })
            .collect())
    }

    /// Audits and logs that `route` moved from `from` to its active version.
    fn swapped(&self, route: &Route, from: &crate::storage::Producer, how: How) -> Swap {
        let to = route.version().producer.clone();
        self.audit(
            &route_stream(&route.name),
            "plugin_activated",
            json!({
                "from": from.label(), "from_sha256": from.sha256,
                "to": to.label(), "to_sha256": to.sha256,
                "how": how.as_str(),
            }),
        );
        tracing::warn!(
            route = route.name,
            from = from.label(),
            to = to.label(),
            how = how.as_str(),
            "plugin activated"
        );
        Swap {
            route: route.name.clone(),
            from: from.clone(),
            to,
        }
    }

    /// Audits and logs a refusal, and answers it.
    pub(super) fn refused(
        &self,
        name: String,
        sha256: String,
        reason: CandidateRefused,
    ) -> Activated {
        self.audit(
            &plugin_stream(&name),
            "plugin_refused",
            json!({
                "sha256": sha256, "code": reason.code(), "reason": reason.to_string(),
                "active": self.serving(&name).iter()
                    .map(|r| r.version().producer.sha256.clone()).collect::<Vec<_>>(),
            }),
        );
        tracing::warn!(plugin = name, sha256, code = reason.code(), %reason, "candidate refused");
        Activated::Refused {
            name,
            sha256,
            reason,
        }
    }

    /// Appends one audit event now; a failure is logged (the change itself stands).
    pub(super) fn audit(&self, stream: &str, kind: &str, data: Value) {
        let now = self.core.clock.now();
        crate::audit::record(&*self.core.storage, stream, now, kind, data);
    }
}
