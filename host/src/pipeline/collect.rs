//! Bounds the plugin registry and the compiled cache: after every version received (and on
//! an operator's call, `POST /v1/plugins/gc`, with a dry run), of each plugin the newest
//! `[plugins] keep_versions` stay, with every version that is protected (active on a route,
//! in a route's history for rollback, serving a canary or a shadow); the rest are removed
//! from the registry with their compiled files. The compiled cache also keeps itself within
//! its own byte cap, least recently used first (`plugin/cache.rs`).

use std::collections::BTreeSet;

use super::activate::Versions;
use crate::outcome::Collected;
use crate::registry::RegistryError;

impl Versions {
    /// Removes (or, with `dry_run`, names) the kept versions past the bound, sparing
    /// `protected` and every version a route serves or may roll back to.
    pub(crate) fn collect(
        &self,
        mut protected: BTreeSet<String>,
        dry_run: bool,
    ) -> Result<Collected, RegistryError> {
        protected.extend(self.registry.in_use());
        let gone = crate::registry::plan(
            &self.registry.versions()?,
            self.registry.keep_versions(),
            &protected,
        );
        if !dry_run {
            for version in &gone {
                self.registry.forget(&version.sha256)?;
            }
        }
        let hashes: Vec<&str> = gone.iter().map(|v| v.sha256.as_str()).collect();
        let compiled = self.runtime().forget_compiled(&hashes, dry_run);
        let bytes = gone.iter().map(|v| v.size).sum::<u64>()
            + compiled.iter().map(|c| c.bytes).sum::<u64>();
        if !dry_run && !gone.is_empty() {
            tracing::info!(
                versions = gone.len(),
                compiled = compiled.len(),
                bytes,
                "plugin versions past the bound removed"
            );
        }
        Ok(Collected {
            dry_run,
            versions: gone,
            compiled,
            bytes,
        })
    }
}
