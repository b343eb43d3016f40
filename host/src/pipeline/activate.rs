//! Activation: a route's plugin swapped for another version while messages flow. The
//! candidate is loaded (compiled, or taken from the cache) and checked against the contract
//! off the hot path, on a blocking thread; only then is it swapped in, whole. A message
//! takes the route's version once, so it is translated wholly by one version and its events
//! name that one; the old version's instances are dropped when the last message holding it
//! ends. Every activation is an audit event on the route's stream (`route:NAME`) with both
//! versions' hashes.

use std::path::PathBuf;

use serde_json::json;

use super::Pipeline;
use crate::outcome::{Activated, Unavailable};
use crate::storage::AuditDraft;

/// The audit stream of a route's plugin changes.
pub(crate) fn audit_stream(route: &str) -> String {
    format!("route:{route}")
}

impl Pipeline {
    /// Makes the component at `file` the active plugin of `route`.
    pub(crate) async fn activate(&self, route: &str, file: PathBuf) -> Activated {
        let Some(found) = self.core.routes.get(route).cloned() else {
            return Activated::UnknownRoute {
                route: route.to_owned(),
            };
        };
        let pipeline = self.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let refused = |reason: String| Activated::Refused {
                route: found.name.clone(),
                reason,
            };
            let plugin = match pipeline.core.runtime.load_file(&file) {
                Ok(plugin) => plugin,
                Err(e) => return refused(e.to_string()),
            };
            let from = match found.activate(plugin) {
                Ok(old) => old.producer.clone(),
                Err(e) => return refused(e.to_string()),
            };
            let to = found.version().producer.clone();
            let now = pipeline.core.clock.now();
            let draft = AuditDraft::new(
                &audit_stream(&found.name),
                now,
                "plugin_activated",
                json!({
                    "from": from.label(), "from_sha256": from.sha256,
                    "to": to.label(), "to_sha256": to.sha256,
                }),
            );
            if let Err(e) = pipeline.core.storage.append(vec![draft]) {
                tracing::error!(error = %e, "recording an activation in the audit trail failed");
            }
            tracing::warn!(
                route = found.name,
                from = from.label(),
                to = to.label(),
                "plugin activated"
            );
            Activated::Swapped {
                route: found.name.clone(),
                from,
                to,
            }
        })
        .await;
        ran.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the activation task failed");
            Activated::Unavailable(Unavailable::Internal("the activation task failed".into()))
        })
    }
}
