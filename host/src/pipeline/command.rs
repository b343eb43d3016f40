//! Commands, the outbound side: the caller needs the vendor's answer.
//!
//! A command `{"type", "subject", "data"}` is deduplicated by its key (the caller's
//! `Idempotency-Key`, else the body's hash) in a namespace of its own per route, encoded by
//! the route's plugin into a vendor request, sent through the vendor's breaker
//! (`crate::vendor`), and the answer decoded by the plugin into domain events, committed like
//! any ingest and given to the caller; the same key gets the stored answer again. While the
//! vendor's circuit is open nothing is sent and the route's degradation answers
//! (`command/degrade.rs`); in `queue` mode the command waits in the outbox and is sent by
//! the relay once the circuit closes (`command/queued.rs`).
//!
//! The claim on the key is held across the vendor call, so concurrent deliveries of one
//! command make one call; a claim is given back (nothing stored) when no answer came, when
//! the plugin asks for a retry, and when the degradation stores nothing.

mod degrade;
mod queued;

use std::sync::Arc;

use jiff::Timestamp;
use serde::Deserialize;

use super::commit::Settlement;
use super::routes::{Route, Version};
use super::{Arrival, Incoming, NotWritten, Pipeline, hash_key, storage_failure, transient};
use crate::outcome::{Cause, Commanded, FAULT_CODE, InFlight, Refusal, Unavailable};
use crate::plugin::{DomainCommand, Fault, TranslateError, VendorRequest, VendorResponse};
use crate::storage::{Claim, ClaimToken, Commit, Completed, DeadLetterKind, MessageRecord};
use crate::vendor::{Gate, Vendor, VendorError};

pub(crate) use self::queued::QueuedCommands;

/// The namespace of a route's command keys, apart from its messages' keys (a route name
/// cannot hold `/`).
fn namespace(route: &str) -> String {
    format!("{route}/commands")
}

/// Where a route's last good answer to a command type and subject is kept.
fn cache_key(route: &str, command: &DomainCommand) -> String {
    format!("{route}\0{}\0{}", command.command_type, command.subject)
}

/// A command as a caller sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    #[serde(rename = "type")]
    command_type: String,
    subject: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// A command claimed and encoded, ready to go to the vendor.
struct Prepared {
    route: Arc<Route>,
    version: Arc<Version>,
    claim: ClaimToken,
    record: MessageRecord,
    fingerprint: String,
    command: DomainCommand,
    request: VendorRequest,
    trace: crate::trace::TraceContext,
    now: Timestamp,
    /// Whether this is the command's first commit (a queued command was received before).
    first: bool,
}

impl Prepared {
    /// Sends the encoded request to `vendor`, the command's key as its `Idempotency-Key`.
    async fn send(
        &self,
        vendor: &Vendor,
        policy: &crate::config::CommandsConfig,
        gate: &Gate,
    ) -> Result<VendorResponse, VendorError> {
        vendor
            .send(&self.request, &self.record.key, &self.trace, policy, gate)
            .await
    }

    fn settlement(&self) -> Settlement<'_> {
        let settlement = Settlement {
            route: &self.route,
            version: self.version.clone(),
            record: self.record.clone(),
            claim: Some(self.claim.clone()),
            fingerprint: self.fingerprint.clone(),
            now: self.now,
            audit: vec![],
            new_message: false,
        };
        if self.first {
            settlement.received()
        } else {
            settlement
        }
    }
}

impl Pipeline {
    /// Carries out one command on `route` and answers with the vendor's answer as domain
    /// events, once they are durable.
    pub(crate) async fn command(&self, route: &str, incoming: Incoming) -> Commanded {
        let (route, command) = match self.admit_command(route, &incoming) {
            Ok(admitted) => admitted,
            Err(refusal) => return Commanded::Refused(refusal),
        };
        let policy = route
            .commands
            .clone()
            .expect("admitted routes take commands");
        let Some(vendor) = self.core.vendors.get(&policy.vendor).cloned() else {
            return Commanded::Unavailable(Unavailable::Internal(format!(
                "vendor {} is not configured",
                policy.vendor
            )));
        };
        // The command's span from its door to its answer, continuing the caller's trace; the
        // vendor's attempts are its children.
        let span = tracing::info_span!(
            "command",
            otel.kind = "server",
            route = %route.name,
            command.type = %command.command_type,
        );
        crate::trace::continue_caller(
            &span,
            incoming.traceparent.as_deref(),
            incoming.tracestate.as_deref(),
        );
        use tracing::Instrument as _;
        self.carry_out(route, command, incoming, policy, vendor)
            .instrument(span)
            .await
    }

    /// The command admitted on `route`, within its span.
    async fn carry_out(
        &self,
        route: Arc<Route>,
        command: DomainCommand,
        incoming: Incoming,
        policy: crate::config::CommandsConfig,
        vendor: Arc<Vendor>,
    ) -> Commanded {
        let pipeline = self.clone();
        let span = tracing::Span::current();
        let prepared = match self
            .blocking(move || span.in_scope(|| pipeline.prepare(route, command, incoming)))
            .await
        {
            Ok(Ok(prepared)) => prepared,
            Ok(Err((answer, committed))) => return self.durable_answer(answer, committed).await,
            Err(unavailable) => return Commanded::Unavailable(unavailable),
        };
        let sent = prepared.send(&vendor, &policy, &Gate::Breaker).await;
        let response = match sent {
            Ok(response) => response,
            Err(VendorError::Open { retry_after }) => {
                return self.degrade(prepared, &policy, &vendor, retry_after).await;
            }
            Err(error) => {
                tracing::warn!(%error, vendor = policy.vendor, "a command got no answer");
                self.release(&prepared.claim);
                return Commanded::VendorFailed {
                    error: error.to_string(),
                };
            }
        };
        let pipeline = self.clone();
        match self
            .blocking(move || pipeline.conclude(&prepared, &response))
            .await
        {
            Ok((answer, committed)) => self.durable_answer(answer, committed).await,
            Err(unavailable) => Commanded::Unavailable(unavailable),
        }
    }

    /// A known route that takes commands, and a body that is a command.
    fn admit_command(
        &self,
        route: &str,
        incoming: &Incoming,
    ) -> Result<(Arc<Route>, DomainCommand), Refusal> {
        let found = self
            .core
            .routes
            .get(route)
            .ok_or_else(|| Refusal::UnknownRoute {
                route: route.to_owned(),
            })?;
        if found.commands.is_none() {
            return Err(Refusal::NoCommands {
                route: route.to_owned(),
            });
        }
        if incoming.body.is_empty() {
            return Err(Refusal::EmptyBody);
        }
        let body: CommandBody =
            serde_json::from_slice(&incoming.body).map_err(|e| Refusal::BadCommand {
                reason: format!(
                    "the body is not a command {{\"type\", \"subject\", \"data\"}}: {e}"
                ),
            })?;
        if body.command_type.trim().is_empty() || body.subject.trim().is_empty() {
            return Err(Refusal::BadCommand {
                reason: "a command's `type` and `subject` are not empty".into(),
            });
        }
        let command = DomainCommand {
            command_type: body.command_type,
            subject: body.subject,
            data: body.data.to_string(),
        };
        Ok((found.clone(), command))
    }

    /// Runs `work` on a blocking thread, under a worker permit.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        let Ok(permit) = self.core.workers.acquire().await else {
            return Err(Unavailable::ShuttingDown);
        };
        let ran = tokio::task::spawn_blocking(work).await;
        drop(permit);
        ran.map_err(|e| {
            tracing::error!(error = %e, "a command task failed");
            Unavailable::Internal("the command task failed".into())
        })
    }

    /// Makes what was committed durable before answering.
    async fn durable_answer(&self, answer: Commanded, committed: bool) -> Commanded {
        if committed && let Err(e) = self.durable(true).await {
            tracing::error!(error = %e, "flush failed");
            return Commanded::Unavailable(Unavailable::Internal(
                "the commit could not be made durable".into(),
            ));
        }
        answer
    }

    /// Claims the key and encodes the command; or the answer, when it ends here.
    fn prepare(
        &self,
        route: Arc<Route>,
        command: DomainCommand,
        incoming: Incoming,
    ) -> Result<Prepared, (Commanded, bool)> {
        let core = &self.core;
        let Arrival {
            now,
            fingerprint,
            id,
            trace,
        } = self.arrive(&route.name, &incoming, &tracing::Span::current());
        let key = incoming
            .idempotency_key
            .unwrap_or_else(|| hash_key(&fingerprint));
        let claim =
            match core
                .storage
                .claim(&namespace(&route.name), &key, now, route.inflight_timeout)
            {
                Ok(Claim::Fresh(claim)) => claim,
                Ok(Claim::Done(done)) => return Err((duplicate(key, &fingerprint, done), false)),
                Ok(Claim::InFlight) => {
                    let in_flight = InFlight {
                        idempotency_key: key,
                        taken_over: false,
                    };
                    return Err((Commanded::InFlight(in_flight), false));
                }
                Err(e) => return Err((Commanded::Unavailable(storage_failure(&e)), false)),
            };
        let record = MessageRecord {
            id: id.to_string(),
            route: route.name.clone(),
            key,
            content_type: Some("application/json".into()),
            headers: route.headers.keep(incoming.headers),
            body: incoming.body,
            received_at: now,
            cut: None,
        };
        // One version encodes and decodes the command, and names its events.
        let version = route.version();
        let encoded = version
            .instances
            .get()
            .and_then(|mut session| session.encode(&command));
        let mut prepared = Prepared {
            route,
            version,
            claim,
            record,
            fingerprint,
            command,
            request: VendorRequest {
                method: String::new(),
                path: String::new(),
                headers: vec![],
                body: vec![],
            },
            trace,
            now,
            first: true,
        };
        match encoded {
            Ok(Ok(request)) => {
                prepared.request = request;
                Ok(prepared)
            }
            Ok(Err(TranslateError::Transient(failure))) => {
                self.release(&prepared.claim);
                Err((Commanded::Transient(transient(failure)), false))
            }
            Ok(Err(TranslateError::Rejected(failure))) => {
                Err(self.reject(&prepared, Cause::Refused, failure.code, failure.message))
            }
            Err(fault) => Err(self.reject(
                &prepared,
                Cause::Fault,
                FAULT_CODE.into(),
                fault.to_string(),
            )),
        }
    }

    /// Decodes the vendor's answer and commits what the plugin made of it.
    fn conclude(&self, prepared: &Prepared, response: &VendorResponse) -> (Commanded, bool) {
        match decode(prepared, response) {
            Ok(Ok(events)) => {
                let (commit, answered) =
                    prepared
                        .settlement()
                        .answer(response.status, events, &prepared.trace);
                let (answer, committed) =
                    self.write(prepared, commit, Commanded::Answered(answered.clone()));
                if committed {
                    let key = cache_key(&prepared.route.name, &prepared.command);
                    let value = serde_json::to_value(&answered).expect("an answer serializes");
                    if let Err(e) = self
                        .core
                        .storage
                        .remember_answer(&key, &value, prepared.now)
                    {
                        tracing::warn!(error = %e, "keeping the answer for the cache failed");
                    }
                }
                (answer, committed)
            }
            Ok(Err(TranslateError::Transient(failure))) => {
                self.release(&prepared.claim);
                (Commanded::Transient(transient(failure)), false)
            }
            Ok(Err(TranslateError::Rejected(failure))) => {
                self.reject(prepared, Cause::Refused, failure.code, failure.message)
            }
            Err(fault) => self.reject(prepared, Cause::Fault, FAULT_CODE.into(), fault.to_string()),
        }
    }

    /// Dead-letters a command the plugin refused or faulted on.
    fn reject(
        &self,
        prepared: &Prepared,
        cause: Cause,
        code: String,
        error: String,
    ) -> (Commanded, bool) {
        let (mut commit, rejected) = prepared.settlement().reject(cause, code, error);
        if let Some(entry) = &mut commit.dead_letter {
            entry.kind = DeadLetterKind::Command;
        }
        self.write(prepared, commit, Commanded::Rejected(rejected))
    }

    /// Writes `commit`, answering `answer` once it is written.
    fn write(&self, prepared: &Prepared, commit: Commit, answer: Commanded) -> (Commanded, bool) {
        let route = &prepared.route.name;
        match self.write_commit(commit, &prepared.claim) {
            Ok(()) => {
                match answer {
                    Commanded::Answered(_) => self.core.metrics.translated(route),
                    Commanded::Rejected(_) => self.core.metrics.rejected(route),
                    _ => {}
                }
                (answer, true)
            }
            Err(NotWritten::TakenOver(in_flight)) => (Commanded::InFlight(in_flight), false),
            Err(NotWritten::Failed(unavailable)) => (Commanded::Unavailable(unavailable), false),
        }
    }
}

/// The plugin's reading of the vendor's answer.
fn decode(
    prepared: &Prepared,
    response: &VendorResponse,
) -> Result<Result<Vec<crate::plugin::DomainEvent>, TranslateError>, Fault> {
    prepared
        .version
        .instances
        .get()
        .and_then(|mut session| session.decode(&prepared.command, response))
}

/// A key seen before: the stored answer for the same command, a refusal for another.
fn duplicate(key: String, fingerprint: &str, done: Completed) -> Commanded {
    if done.fingerprint != fingerprint {
        return Commanded::KeyReused {
            idempotency_key: key,
            message_id: done.settled.message_id().to_owned(),
        };
    }
    Commanded::Duplicate(done.settled)
}

/// What a cached answer is, read back.
fn cached(value: serde_json::Value) -> Option<crate::outcome::Answered> {
    serde_json::from_value(value).ok()
}
