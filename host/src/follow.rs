//! Following the other hosts of a shared store: what they made their plugins serve (a
//! version made active, a canary started or ended) is read from the store every
//! [`FOLLOW_EVERY`] and served here too, through the same checked push as a version pushed
//! here (`Pipeline::follow`, which does not share it again). A host starting reads every
//! plugin's latest state, so a canary survives a restart of every host. An embedded store
//! shares nothing: no follower runs.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::outcome::Activated;
use crate::pipeline::Pipeline;
use crate::registry::Serve;

/// How often the store is asked what the plugins serve.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Reads the shared plugin states and serves them.
#[derive(Debug)]
pub(crate) struct Follower {
    pipeline: Pipeline,
}

impl Follower {
    pub(crate) fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }

    /// Follows until `cancel`.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let storage = self.pipeline.storage().clone();
        if !storage.shares_plugins() {
            return;
        }
        let origin = self.pipeline.origin();
        let mut after = 0;
        loop {
            let reading = storage.clone();
            let changes = tokio::task::spawn_blocking(move || reading.shared_plugins(after)).await;
            match changes {
                Ok(Ok(changes)) => {
                    for change in changes {
                        after = after.max(change.generation);
                        if change.origin == origin {
                            continue;
                        }
                        let serve = change.canary.map_or(Serve::Activate, Serve::Canary);
                        let activated =
                            self.pipeline.follow(&change.name, change.wasm, serve).await;
                        report(&change.name, &change.sha256, &activated);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading what the other hosts' plugins serve failed");
                }
                Err(e) => tracing::error!(error = %e, "the plugin follower's read failed"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
        }
    }
}

fn report(name: &str, sha256: &str, activated: &Activated) {
    match activated {
        Activated::Serving { swaps, .. } if swaps.is_empty() => {}
        Activated::Serving { .. } | Activated::Canary { .. } | Activated::Kept { .. } => {
            tracing::info!(
                plugin = name,
                sha256,
                "serving what another host made the plugin serve"
            );
        }
        other => tracing::warn!(
            plugin = name,
            sha256,
            outcome = ?other,
            "could not serve what another host made the plugin serve"
        ),
    }
}
