//! What a command is answered while its vendor's circuit is open, as the route's config
//! chose it: `fail` (try again when the next probe may go), `cached` (the last good answer
//! for the same command type and subject, with its age), `default` (a configured answer) or
//! `queue` (kept in the outbox and sent once the circuit closes). Only `queue` stores
//! anything; the others give the key back, so the same command sent later is carried out.

use std::sync::Arc;
use std::time::Duration;

use super::{Prepared, cache_key, cached};
use crate::config::{CommandsConfig, Degradation};
use crate::outcome::{Commanded, Degraded};
use crate::pipeline::Pipeline;
use crate::vendor::Vendor;

impl Pipeline {
    /// The route's degradation for a command its vendor's breaker refused.
    pub(super) async fn degrade(
        &self,
        prepared: Prepared,
        policy: &CommandsConfig,
        vendor: &Arc<Vendor>,
        retry_after: Option<Duration>,
    ) -> Commanded {
        // The time until the next probe, asked again: the refusal may be a moment old.
        let retry_after = vendor.breaker().refusing_for().or(retry_after);
        let route = prepared.route.name.clone();
        tracing::info!(
            route,
            vendor = policy.vendor,
            mode = policy.degradation.name(),
            "the vendor's circuit is open; degrading"
        );
        match &policy.degradation {
            Degradation::Fail => {
                self.release(&prepared.claim);
                Commanded::Degraded(Degraded::Failed { retry_after })
            }
            Degradation::Default(answer) => {
                self.release(&prepared.claim);
                Commanded::Degraded(Degraded::Default(answer.clone()))
            }
            Degradation::Cached => {
                self.release(&prepared.claim);
                let key = cache_key(&route, &prepared.command);
                let storage = self.core.storage.clone();
                let recalled = self.blocking(move || storage.recall_answer(&key)).await;
                let now = self.core.clock.now();
                match recalled {
                    Ok(Ok(Some((value, at)))) => match cached(value) {
                        Some(answer) => {
                            let age =
                                Duration::try_from(now.duration_since(at)).unwrap_or_default();
                            Commanded::Degraded(Degraded::Cached { answer, age })
                        }
                        None => Commanded::Degraded(Degraded::Failed { retry_after }),
                    },
                    Ok(Ok(None)) => Commanded::Degraded(Degraded::Failed { retry_after }),
                    Ok(Err(e)) => Commanded::Unavailable(super::storage_failure(&e)),
                    Err(unavailable) => Commanded::Unavailable(unavailable),
                }
            }
            Degradation::Queue => {
                let pipeline = self.clone();
                let vendor_name = policy.vendor.clone();
                let written = self
                    .blocking(move || {
                        let (commit, queued) = prepared.settlement().queue(
                            &vendor_name,
                            &prepared.command,
                            &prepared.trace,
                        );
                        pipeline.write(
                            &prepared,
                            commit,
                            Commanded::Degraded(Degraded::Queued(queued)),
                        )
                    })
                    .await;
                match written {
                    Ok((answer, committed)) => self.durable_answer(answer, committed).await,
                    Err(unavailable) => Commanded::Unavailable(unavailable),
                }
            }
        }
    }
}
