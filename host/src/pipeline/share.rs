//! What a plugin serves, shared with the other hosts of the store: after a change made here
//! (a version made active, a canary started or ended), the plugin's row in the store names
//! the version it serves now, with the component; the other hosts follow it
//! (`crate::follow`).

use super::activate::Versions;
use crate::outcome::Activated;
use crate::storage::{SharedPlugin, Storage};

/// Shares what `activated` made the plugin serve; a failure is logged (this host serves it
/// already, and the others keep what they serve).
pub(super) fn share(versions: &Versions, storage: &dyn Storage, activated: &Activated) {
    let (name, sha256, canary) = match activated {
        Activated::Serving { version, .. } => (version.name.clone(), version.sha256.clone(), None),
        Activated::Canary {
            version, percent, ..
        } => (version.name.clone(), version.sha256.clone(), Some(*percent)),
        // The canary ended: the active version serves all, there as here.
        Activated::CanaryEnded { name, routes } => {
            let Some(active) = routes
                .first()
                .and_then(|route| versions.registry.route(route))
                .map(|state| state.active)
            else {
                return;
            };
            (name.clone(), active, None)
        }
        _ => return,
    };
    let shared = versions
        .registry
        .component(&sha256)
        .map(|wasm| SharedPlugin {
            name: name.clone(),
            sha256,
            canary,
            wasm,
            origin: versions.origin,
            generation: 0,
        });
    let outcome = match shared {
        Ok(shared) => storage.share_plugin(&shared).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = outcome {
        tracing::error!(plugin = name, %error, "sharing the plugin's change with the other hosts failed");
    }
}
