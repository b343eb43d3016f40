//! Ingest: deduplicate a message by its idempotency key, translate it, commit the outcome in
//! one write, and answer once the write is durable.
//!
//! The key is the caller's, else the one the plugin derives from the content, else the
//! body's hash. The claim on it is taken before the plugin translates, so that concurrent
//! deliveries of one key run the commit once (the plugin may run for each: translation is
//! pure); a commit whose claim was taken over writes nothing.
//!
//! A key the plugin derived is settled only by an accepted message. A rejection is kept under
//! the body's hash instead, so that a byte-identical redelivery gets the stored `422` while a
//! different body under the same derived key (a corrected resend, or the genuine delivery
//! after a forged one) is translated. Such a message holds two claims: the derived key's and
//! the body's.

use std::time::Instant;

use jiff::Timestamp;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

use super::commit::Settlement;
use super::routes::Route;
use super::{
    Arrival, Incoming, NotWritten, Pipeline, admission, hash_key, storage_failure, transient,
    vendor_message,
};
use crate::outcome::{Cause, FAULT_CODE, InFlight, Ingested, Unavailable};
use crate::plugin::{DomainEvent, Fault, Lease, TranslateError, VendorMessage};
use crate::storage::{AuditDraft, Claim, ClaimToken, Completed, MessageRecord};

/// What the plugin made of a message: events or a refusal, or a fault.
type Translation = Result<Result<Vec<DomainEvent>, TranslateError>, Fault>;

/// What the blocking part wrote: nothing, or a commit to make durable before answering,
/// which wakes the relay if it gave the outbox an event.
enum Written {
    Nothing,
    Commit { outbox: bool },
}

impl Pipeline {
    /// Ingests one message on `route`: deduplicates it, translates it, commits the outcome
    /// and answers once it is durable.
    pub(crate) async fn ingest(&self, route: &str, incoming: Incoming) -> Ingested {
        let route = match admission::admit(&self.core.routes, route, &incoming) {
            Ok(route) => route.clone(),
            Err(refusal) => return Ingested::Refused(refusal),
        };
        self.run(route, incoming, None).await
    }

    /// Dead-letters a message the host will not try again, without running the plugin on it:
    /// a broker's message delivered as often as its source allows, or refused at the door.
    /// Its key is claimed and settled as a rejection with `failure` is, so a redelivery of it
    /// is a duplicate, and the entry is replayable like any translation dead letter.
    pub(crate) async fn give_up(
        &self,
        route: &str,
        incoming: Incoming,
        failure: crate::plugin::Failure,
    ) -> Ingested {
        let Some(route) = self.core.routes.get(route) else {
            return Ingested::Refused(crate::outcome::Refusal::UnknownRoute {
                route: route.to_owned(),
            });
        };
        self.run(route.clone(), incoming, Some(failure)).await
    }

    /// Runs a message admitted on `route`: translated, or settled as `given_up` says.
    async fn run(
        &self,
        route: std::sync::Arc<Route>,
        incoming: Incoming,
        given_up: Option<crate::plugin::Failure>,
    ) -> Ingested {
        let started = Instant::now();
        // The route's own place first: its backlog waits in its own queue, not the host's.
        let Ok(place) = route.bulkhead.enter().await else {
            self.core.metrics.busy(&route.name);
            return Ingested::Unavailable(Unavailable::RouteBusy {
                route: route.name.clone(),
            });
        };
        let Ok(worker) = self.core.workers.clone().acquire_owned().await else {
            return Ingested::Unavailable(Unavailable::ShuttingDown);
        };
        let permit = (place, worker);
        let pipeline = self.clone();
        let bulkhead = route.bulkhead.clone();
        let timed = route.clone();
        // The message's span from its door to its flush; its stages are its children, and it
        // continues the caller's trace.
        let door = tracing::info_span!(
            "door",
            otel.kind = "server",
            messaging.system = "dragoman",
            messaging.operation.type = "receive",
            messaging.destination.name = %route.name,
            route = %route.name,
            message_id = tracing::field::Empty,
            plugin = tracing::field::Empty,
        );
        crate::trace::continue_caller(
            &door,
            incoming.traceparent.as_deref(),
            incoming.tracestate.as_deref(),
        );
        let in_door = door.clone();
        let work = move || {
            in_door.in_scope(|| pipeline.ingest_blocking(&route, incoming, given_up, permit))
        };
        let began = Instant::now();
        // A route whose last message ran long runs this one at a lower priority, so that a
        // plugin spinning to its deadline does not slow the other routes' messages.
        let ran = if bulkhead.is_slow() {
            crate::bulkhead::slow_lane(work).await
        } else {
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| tracing::error!(error = %e, "ingest task failed"))
                .ok()
        };
        bulkhead.took(began.elapsed());
        let Some((outcome, written)) = ran else {
            return Ingested::Unavailable(Unavailable::Internal("the ingest task failed".into()));
        };
        if let Written::Commit { outbox } = written
            && let Err(e) = {
                use tracing::Instrument as _;
                let flush = tracing::info_span!(parent: &door, "flush");
                self.durable(outbox).instrument(flush).await
            }
        {
            tracing::error!(error = %e, "flush failed");
            return Ingested::Unavailable(Unavailable::Internal(
                "the commit could not be made durable".into(),
            ));
        }
        self.core.metrics.observe("ingest", started);
        timed.latency.observe(started.elapsed());
        outcome
    }

    /// The blocking part, under a worker `permit` until the plugin is done; also says what it
    /// wrote.
    fn ingest_blocking(
        &self,
        route: &Route,
        incoming: Incoming,
        given_up: Option<crate::plugin::Failure>,
        permit: (crate::bulkhead::Permit, OwnedSemaphorePermit),
    ) -> (Ingested, Written) {
        let core = &self.core;
        // Run within the message's door span (see `run`).
        let door = tracing::Span::current();
        let Arrival {
            now,
            fingerprint,
            id,
            trace,
        } = self.arrive(&route.name, &incoming, &door);
        let message_id = id.to_string();
        door.record("message_id", message_id.as_str());
        let Incoming {
            content_type,
            headers,
            body,
            idempotency_key,
            ..
        } = incoming;
        let headers = route.headers.keep(headers);
        let message = vendor_message(message_id, content_type, headers.clone(), body);

        let started = Instant::now();
        // One version for the whole message: it translates, and its events name it. While a
        // canary runs, the key's deciding input chooses which (the same for every retry).
        let version = route.version_for(idempotency_key.as_deref().unwrap_or(&fingerprint));
        if !door.is_disabled() {
            door.record("plugin", version.producer.label());
        }
        let mut lease = version.instances.get();
        let caller_key = idempotency_key.is_some();
        let (key, source, early_fault) =
            key_for(idempotency_key, &mut lease, &message, &fingerprint);
        let claimed = tracing::info_span!("claim", key_source = ?source).in_scope(|| {
            let claim = self.claim(route, &key, caller_key.then_some(fingerprint.as_str()), now)?;
            // A derived key: a rejection of this very body was settled under its hash.
            if source != KeySource::Derived {
                return Ok((claim, None));
            }
            match self.claim(route, &hash_key(&fingerprint), None, now) {
                Ok(body_claim) => Ok((claim, Some(body_claim))),
                Err(answer) => {
                    self.release(&claim);
                    Err(answer)
                }
            }
        });
        let (claim, body_claim) = match claimed {
            Ok(claims) => claims,
            Err(answer) => return (answer, Written::Nothing),
        };
        let claims = Claims {
            key: claim,
            body: body_claim,
        };
        // A message given up on says nothing of the version: it is neither judged nor shadowed.
        let translated = given_up.is_none();
        let producer = &version.producer;
        let translating = tracing::info_span!(
            "translate",
            plugin.name = %producer.name,
            plugin.version = %producer.version,
            plugin.sha256 = %producer.sha256,
            outcome = tracing::field::Empty,
        );
        let translation = translating.in_scope(|| match (given_up, early_fault, lease) {
            (Some(failure), _, _) => Ok(Err(TranslateError::Rejected(failure))),
            (None, Some(fault), _) | (None, None, Err(fault)) => Err(fault),
            (None, None, Ok(mut session)) => session.translate(&message),
        });
        translating.record(
            "outcome",
            match &translation {
                Ok(Ok(_)) => "events",
                Ok(Err(TranslateError::Transient(_))) => "transient",
                Ok(Err(TranslateError::Rejected(_))) => "rejected",
                Err(_) => "fault",
            },
        );
        core.metrics.observe("translate", started);
        drop(permit);
        if translated {
            self.judge(route, &version, !matches!(translation, Ok(Ok(_))));
        }
        if translated && let Some(shadow) = route.shadow() {
            let output = super::shadow::output(&translation);
            shadow.offer(&message, &version.producer, output);
        }
        let settlement = Settlement {
            route,
            version: version.clone(),
            claim: Some(claims.key.clone()),
            now,
            audit: vec![],
            new_message: false,
            fingerprint,
            record: MessageRecord {
                id: message.id,
                route: route.name.clone(),
                key,
                content_type: message.content_type,
                headers,
                body: message.body,
                received_at: now,
                cut: None,
            },
        }
        .received();
        self.settle(settlement, translation, &claims, &trace)
    }

    /// Claims `key` on `route`: the claim, or the answer when it is not fresh. A key seen
    /// before answers its stored outcome (checked against the caller's `payload`
    /// fingerprint when the caller gave the key).
    fn claim(
        &self,
        route: &Route,
        key: &str,
        payload: Option<&str>,
        now: Timestamp,
    ) -> Result<ClaimToken, Ingested> {
        match self
            .core
            .storage
            .claim(&route.name, key, now, route.inflight_timeout)
        {
            Ok(Claim::Fresh(claim)) => Ok(claim),
            Ok(Claim::Done(done)) => Err(self.duplicate(route, key.to_owned(), payload, done, now)),
            Ok(Claim::InFlight) => Err(Ingested::InFlight(InFlight {
                idempotency_key: key.to_owned(),
                taken_over: false,
            })),
            Err(e) => Err(Ingested::Unavailable(storage_failure(&e))),
        }
    }

    /// Commits what the plugin made of the message; a transient refusal or a failed write
    /// gives the keys back, so that a redelivery runs (IC-4, IC-5). An acceptance settles
    /// the message's key; a rejection settles the body's hash instead when the plugin derived
    /// the key (the derived key stays open for another body).
    fn settle(
        &self,
        mut settlement: Settlement<'_>,
        translation: Translation,
        claims: &Claims,
        trace: &crate::trace::TraceContext,
    ) -> (Ingested, Written) {
        let route = settlement.route;
        let rejected = |settlement: Settlement<'_>, cause, code, message| {
            let (commit, rejected) = settlement.reject(cause, code, message);
            (commit, Ingested::Rejected(rejected))
        };
        let settling = match (&translation, &claims.body) {
            (Ok(Ok(_)), _) | (_, None) => &claims.key,
            (_, Some(body)) => {
                settlement.claim = Some(body.clone());
                body
            }
        };
        let (commit, outcome) = match translation {
            Ok(Ok(events)) => {
                let (commit, accepted) = settlement.accept(events, trace);
                (commit, Ingested::Accepted(accepted))
            }
            Ok(Err(TranslateError::Transient(failure))) => {
                claims.release(self);
                return (Ingested::Transient(transient(failure)), Written::Nothing);
            }
            Ok(Err(TranslateError::Rejected(failure))) => {
                rejected(settlement, Cause::Refused, failure.code, failure.message)
            }
            Err(fault) => rejected(
                settlement,
                Cause::Fault,
                FAULT_CODE.into(),
                fault.to_string(),
            ),
        };
        let outbox = commit.feeds_outbox();
        let started = Instant::now();
        let written =
            tracing::info_span!("commit").in_scope(|| self.write_commit(commit, settling));
        // The claim that did not settle is given back (the one that did is gone with its
        // write, or was given back by a failed one).
        claims.release_other(self, settling);
        match written {
            Ok(()) => {
                self.core.metrics.observe("commit", started);
                match &outcome {
                    Ingested::Accepted(_) => {
                        self.core.metrics.translated(&route.name);
                        tracing::debug!("translated and committed");
                    }
                    Ingested::Rejected(rejected) => {
                        self.core.metrics.rejected(&route.name);
                        tracing::info!(code = %rejected.code, dead_letter = %rejected.dead_letter, "message dead-lettered");
                    }
                    _ => self.core.metrics.rejected(&route.name),
                }
                (outcome, Written::Commit { outbox })
            }
            Err(NotWritten::TakenOver(in_flight)) => {
                (Ingested::InFlight(in_flight), Written::Nothing)
            }
            Err(NotWritten::Failed(unavailable)) => {
                (Ingested::Unavailable(unavailable), Written::Nothing)
            }
        }
    }

    pub(super) fn release(&self, claim: &ClaimToken) {
        if let Err(e) = self.core.storage.release(claim) {
            tracing::error!(error = %e, "releasing a claim failed");
        }
    }

    /// A key seen before: the stored outcome. A key the caller gave must come with the same
    /// payload (`fingerprint`), or it is refused as reused; a key the plugin derived from the
    /// content (`None` here) is the plugin's word that the two bodies are one message, such as
    /// a gateway's redelivery with a new delivery id, and is a duplicate whatever the bytes.
    fn duplicate(
        &self,
        route: &Route,
        key: String,
        fingerprint: Option<&str>,
        done: Completed,
        now: Timestamp,
    ) -> Ingested {
        if fingerprint.is_some_and(|f| f != done.fingerprint) {
            return Ingested::KeyReused {
                idempotency_key: key,
                message_id: done.settled.message_id().to_owned(),
            };
        }
        self.core.metrics.duplicate(&route.name);
        let draft = AuditDraft::new(
            done.settled.message_id(),
            now,
            "deduplicated",
            json!({"route": route.name, "idempotency_key": key}),
        );
        if let Err(e) = self.core.storage.append(vec![draft]) {
            tracing::warn!(error = %e, "recording a duplicate in the audit trail failed");
        }
        Ingested::Duplicate(done.settled)
    }
}

/// The claims an ingest holds: its key's, and the body's hash's when the plugin derived the
/// key.
struct Claims {
    key: ClaimToken,
    body: Option<ClaimToken>,
}

impl Claims {
    fn release(&self, pipeline: &Pipeline) {
        pipeline.release(&self.key);
        if let Some(body) = &self.body {
            pipeline.release(body);
        }
    }

    /// Gives back the claim that is not `settling`.
    fn release_other(&self, pipeline: &Pipeline, settling: &ClaimToken) {
        let other = if *settling == self.key {
            self.body.as_ref()
        } else {
            Some(&self.key)
        };
        if let Some(other) = other {
            pipeline.release(other);
        }
    }
}

/// Where a message's idempotency key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    /// The caller's `Idempotency-Key`.
    Caller,
    /// The plugin derived it from the content.
    Derived,
    /// The body's hash.
    Body,
}

/// The message's idempotency key: the caller's, else the plugin's (when valid), else the
/// body's hash. A fault while the plugin derives it is kept: the message then fails with it.
fn key_for(
    given: Option<String>,
    lease: &mut Result<Lease<'_>, Fault>,
    message: &VendorMessage,
    fingerprint: &str,
) -> (String, KeySource, Option<Fault>) {
    if let Some(key) = given {
        return (key, KeySource::Caller, None);
    }
    let (derived, fault) = match lease {
        Ok(session) => match session.idempotency_key(message) {
            Ok(key) => (key, None),
            Err(fault) => (None, Some(fault)),
        },
        Err(fault) => (None, Some(fault.clone())),
    };
    match derived.filter(|k| admission::valid_key(k).is_ok()) {
        Some(key) => (key, KeySource::Derived, fault),
        None => (hash_key(fingerprint), KeySource::Body, fault),
    }
}
