//! The sending of commands queued while their vendor's circuit was open.
//!
//! A queued command is an outbox event for a sink named after the vendor, so the relay
//! keeps it through restarts, holds it while the vendor's breaker refuses (its lane reads
//! nothing then), sends it once a probe may go, in order per subject, and retries it with
//! the route's budget. Delivering it here means: encode it again (translation is pure), send
//! it once with the command's key as `Idempotency-Key` (the lane holds the breaker's
//! permit), decode the answer and commit its events under the command's key in a namespace
//! of its own. That commit is checked before sending, so an event delivered again after a
//! crash that followed the commit is not sent twice; between the vendor's answer and the
//! commit, only the vendor's deduplication by `Idempotency-Key` stands between a crash and a
//! second call.

use std::future::Future;
use std::pin::Pin;

use super::Prepared;
use crate::delivery::{Deliver, DeliveryError};
use crate::outcome::Commanded;
use crate::pipeline::Pipeline;
use crate::plugin::{DomainCommand, TranslateError};
use crate::storage::{Claim, OutboxEvent};
use crate::vendor::{Gate, VendorError, retry_after};

/// The namespace of a route's commands that were queued and then sent.
fn sent_namespace(route: &str) -> String {
    format!("{route}/commands/sent")
}

/// Every vendor's queued commands, as the relay's sinks named after the vendors.
#[derive(Debug, Clone)]
pub(crate) struct QueuedCommands {
    pipeline: Pipeline,
}

impl QueuedCommands {
    pub(crate) fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

impl Deliver for QueuedCommands {
    fn deliver<'a>(
        &'a self,
        event: &'a OutboxEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>> {
        Box::pin(self.pipeline.send_queued(event))
    }
}

impl Pipeline {
    async fn send_queued(&self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        let gone = |what: &str| DeliveryError::Unencodable(what.to_owned());
        let route = self
            .core
            .routes
            .get(&event.route)
            .cloned()
            .ok_or_else(|| gone("the command's route is no longer configured"))?;
        let policy = route
            .commands
            .clone()
            .ok_or_else(|| gone("the command's route no longer takes commands"))?;
        let vendor = self
            .core
            .vendors
            .get(&policy.vendor)
            .cloned()
            .ok_or_else(|| gone("the command's vendor is no longer configured"))?;
        let pipeline = self.clone();
        let (event_owned, route_owned) = (event.clone(), route.clone());
        let prepared = self
            .blocking(move || pipeline.prepare_queued(route_owned, &event_owned))
            .await
            .map_err(|e| DeliveryError::Refused(format!("{e:?}")))??;
        let Some(prepared) = prepared else {
            return Ok(());
        };
        let sent = prepared.send(&vendor, &policy, &Gate::Admitted).await;
        let response = match sent {
            Ok(response) if response.status == 429 || response.status >= 500 => {
                self.release(&prepared.claim);
                let status = http::StatusCode::from_u16(response.status)
                    .unwrap_or(http::StatusCode::BAD_GATEWAY);
                return Err(DeliveryError::Status {
                    status,
                    retry_after: retry_after(&response),
                });
            }
            Ok(response) => response,
            Err(error) => {
                self.release(&prepared.claim);
                return Err(match error {
                    VendorError::Timeout { after } => DeliveryError::Timeout { after },
                    VendorError::Unsendable(e) => DeliveryError::Unencodable(e),
                    other => DeliveryError::Connect(other.to_string()),
                });
            }
        };
        let pipeline = self.clone();
        let (answer, committed) = self
            .blocking(move || pipeline.conclude(&prepared, &response))
            .await
            .map_err(|e| DeliveryError::Refused(format!("{e:?}")))?;
        match self.durable_answer(answer, committed).await {
            Commanded::Answered(_) | Commanded::Rejected(_) | Commanded::Duplicate(_) => Ok(()),
            Commanded::Transient(t) => Err(DeliveryError::Refused(format!(
                "the plugin asked for the answer again later: {}",
                t.message
            ))),
            other => Err(DeliveryError::Refused(format!(
                "the answer could not be committed: {other:?}"
            ))),
        }
    }

    /// The stored command, claimed for sending and encoded; `None` when it was sent and
    /// committed before.
    fn prepare_queued(
        &self,
        route: std::sync::Arc<crate::pipeline::routes::Route>,
        event: &OutboxEvent,
    ) -> Result<Option<Prepared>, DeliveryError> {
        let storage = &self.core.storage;
        let failed = |e: crate::storage::StorageError| DeliveryError::Refused(e.to_string());
        let record = storage
            .message(&event.message_id)
            .map_err(failed)?
            .ok_or_else(|| DeliveryError::Unencodable("the command's record is gone".into()))?;
        let now = self.core.clock.now();
        let claim = match storage
            .claim(
                &sent_namespace(&route.name),
                &record.key,
                now,
                route.inflight_timeout,
            )
            .map_err(failed)?
        {
            Claim::Fresh(claim) => claim,
            Claim::Done(_) => return Ok(None),
            Claim::InFlight => {
                return Err(DeliveryError::Refused("the command is being sent".into()));
            }
        };
        let command = DomainCommand {
            command_type: event.event_type.clone(),
            subject: event.subject.clone(),
            data: event.data.clone(),
        };
        let version = route.version();
        let encoded = version
            .instances
            .get()
            .and_then(|mut session| session.encode(&command));
        let request = match encoded {
            Ok(Ok(request)) => request,
            Ok(Err(TranslateError::Transient(f) | TranslateError::Rejected(f))) => {
                self.release(&claim);
                return Err(DeliveryError::Unencodable(format!(
                    "the plugin refused the command: {} ({})",
                    f.message, f.code
                )));
            }
            Err(fault) => {
                self.release(&claim);
                return Err(DeliveryError::Unencodable(fault.to_string()));
            }
        };
        Ok(Some(Prepared {
            fingerprint: crate::plugin::sha256_hex(&record.body),
            route,
            version,
            claim,
            record,
            command,
            request,
            trace: crate::trace::TraceContext::of(event),
            now,
            first: false,
        }))
    }
}
