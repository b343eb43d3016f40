//! The dead letter channel's operations: replay an entry (a translation entry goes through
//! the route's current plugin again; a delivery entry's event goes back to the outbox for its
//! sink) or discard it. Both are recorded in the audit trail.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::json;

use super::commit::Settlement;
use super::routes::{Route, Version};
use super::{Pipeline, storage_failure, transient, vendor_message};
use crate::outcome::{Cause, Discarded, FAULT_CODE, Rejected, Replayed, Unavailable};
use crate::plugin::{DomainEvent, TranslateError, sha256_hex};
use crate::storage::{
    AuditDraft, Claim, ClaimToken, DeadLetter, DeadLetterKind, MessageRecord, StorageError,
};

impl Pipeline {
    /// Re-runs a dead letter through the route's current plugin (a translation entry) or puts
    /// its event back in the outbox (a delivery entry); answers once that is durable.
    pub(crate) async fn replay(&self, id: &str) -> Replayed {
        self.replay_through(id, None).await
    }

    /// [`Pipeline::replay`], a translation entry going through `target` (a version of its
    /// route's plugin) when given instead of the active version.
    pub(crate) async fn replay_through(&self, id: &str, target: Option<Arc<Version>>) -> Replayed {
        let Some(turn) = Turn::take(self, id) else {
            return Replayed::InProgress {
                dead_letter: id.to_owned(),
            };
        };
        let pipeline = self.clone();
        let owned = id.to_owned();
        let ran = tokio::task::spawn_blocking(move || {
            let replayed = pipeline.replay_blocking(&owned, target);
            drop(turn);
            replayed
        })
        .await;
        let Ok((outcome, committed)) = ran else {
            return Replayed::Unavailable(Unavailable::Internal("the replay task failed".into()));
        };
        if committed && let Err(e) = self.durable(true).await {
            tracing::error!(error = %e, "flush failed");
            return Replayed::Unavailable(Unavailable::Internal(
                "the replay could not be made durable".into(),
            ));
        }
        outcome
    }

    fn replay_blocking(&self, id: &str, target: Option<Arc<Version>>) -> (Replayed, bool) {
        let storage = &self.core.storage;
        let now = self.core.clock.now();
        let entry = match storage.dead_letter(id) {
            Ok(Some(entry)) => entry,
            Ok(None) => return (not_found("dead letter", id), false),
            Err(e) => return (Replayed::Unavailable(storage_failure(&e)), false),
        };
        if let DeadLetterKind::Delivery { event, sink } = &entry.kind {
            let draft = replayed(
                &entry,
                now,
                json!({"dead_letter": id, "sink": sink, "event": event.id}),
            );
            return match storage.requeue(id, vec![draft]) {
                Ok(()) => {
                    let requeued = Replayed::Requeued {
                        dead_letter: id.to_owned(),
                        event: event.id.clone(),
                        sink: sink.clone(),
                    };
                    (requeued, true)
                }
                Err(e) => (Replayed::Unavailable(storage_failure(&e)), false),
            };
        }
        if entry.kind == DeadLetterKind::Command {
            return (
                Replayed::NotReplayable {
                    dead_letter: id.to_owned(),
                },
                false,
            );
        }
        let record = match storage.message(&entry.message_id) {
            Ok(Some(record)) => record,
            Ok(None) => return (not_found("message", &entry.message_id), false),
            Err(e) => return (Replayed::Unavailable(storage_failure(&e)), false),
        };
        if let Some(cut) = &record.cut {
            let cut = Replayed::BodyCut {
                dead_letter: id.to_owned(),
                kept: record.body.len() as u64,
                size: cut.size,
            };
            return (cut, false);
        }
        let Some(route) = self.core.routes.get(&record.route) else {
            let gone = Replayed::RouteGone {
                dead_letter: id.to_owned(),
                route: record.route,
            };
            return (gone, false);
        };
        let version = target.unwrap_or_else(|| route.version());
        self.retranslate(route, &version, entry, record, now)
    }

    /// A translation entry through `version` (one version for the whole replay: it
    /// translates, and it is the one named).
    fn retranslate(
        &self,
        route: &Route,
        version: &Arc<Version>,
        entry: DeadLetter,
        record: MessageRecord,
        now: Timestamp,
    ) -> (Replayed, bool) {
        let message = vendor_message(
            record.id.clone(),
            record.content_type.clone(),
            record.headers.clone(),
            record.body.clone(),
        );
        // The key first: one settled by another message since is not applied twice, and a
        // free one is held while the plugin runs.
        let claim = match self.replay_claim(route, &entry, &record, now) {
            Ok(claim) => claim,
            Err(answer) => return (answer, false),
        };
        let translation = version
            .instances
            .get()
            .and_then(|mut session| session.translate(&message));
        if !matches!(translation, Ok(Ok(_)))
            && let Some(claim) = &claim
        {
            self.release(claim);
        }
        let (cause, code, error) = match translation {
            Ok(Ok(events)) => {
                return self.commit_replay(route, version, (entry, claim), record, events, now);
            }
            Ok(Err(TranslateError::Transient(failure))) => {
                let outcome = Replayed::Transient {
                    dead_letter: entry.id,
                    transient: transient(failure),
                };
                return (outcome, false);
            }
            Ok(Err(TranslateError::Rejected(failure))) => {
                (Cause::Refused, failure.code, failure.message)
            }
            Err(fault) => (Cause::Fault, FAULT_CODE.to_owned(), fault.to_string()),
        };
        self.rejected_again(
            version,
            entry,
            Rejected {
                message_id: record.id,
                dead_letter: String::new(),
                cause,
                code,
                error,
            },
            now,
        )
    }

    /// The plugin translated the entry's message: its events are committed and the entry
    /// resolved, in one write, under `claim` when the replay holds one.
    fn commit_replay(
        &self,
        route: &Route,
        version: &Arc<Version>,
        (entry, claim): (DeadLetter, Option<ClaimToken>),
        record: MessageRecord,
        events: Vec<DomainEvent>,
        now: Timestamp,
    ) -> (Replayed, bool) {
        let audit = vec![replayed(
            &entry,
            now,
            json!({"dead_letter": entry.id, "plugin": version.producer.label()}),
        )];
        let settlement = Settlement {
            route,
            version: version.clone(),
            fingerprint: sha256_hex(&record.body),
            record,
            claim: claim.clone(),
            now,
            audit,
            new_message: false,
        };
        // A replay starts a trace of its own (within the caller's span when it is traced).
        let trace =
            crate::trace::carried(&tracing::Span::current(), None, None, uuid::Uuid::now_v7());
        let (mut commit, accepted) = settlement.accept(events, &trace);
        commit.resolves = Some(entry.id);
        let committed = self.core.storage.commit(commit);
        if committed.is_err()
            && let Some(claim) = &claim
        {
            self.release(claim);
        }
        match committed {
            Ok(()) => {
                self.core.metrics.translated(&route.name);
                (Replayed::Accepted(accepted), true)
            }
            Err(e) => (Replayed::Unavailable(storage_failure(&e)), false),
        }
    }

    /// The claim a replay commits under: the message's key when nothing holds it (a key the
    /// plugin derived, whose rejection did not settle it), none when the key is settled by this
    /// very message (its rejection, replaced by the commit). A key settled by another message
    /// since (a corrected resend was accepted) is not applied twice.
    fn replay_claim(
        &self,
        route: &Route,
        entry: &DeadLetter,
        record: &MessageRecord,
        now: Timestamp,
    ) -> Result<Option<ClaimToken>, Replayed> {
        let storage = &self.core.storage;
        match storage.claim(&route.name, &record.key, now, route.inflight_timeout) {
            Ok(Claim::Fresh(claim)) => Ok(Some(claim)),
            Ok(Claim::Done(done)) if done.settled.message_id() == record.id => Ok(None),
            Ok(Claim::Done(done)) => Err(Replayed::Superseded {
                dead_letter: entry.id.clone(),
                message_id: done.settled.message_id().to_owned(),
            }),
            Ok(Claim::InFlight) => Err(Replayed::Unavailable(Unavailable::Internal(format!(
                "a delivery of key `{}` is being processed; replay once it is settled",
                record.key
            )))),
            Err(e) => Err(Replayed::Unavailable(storage_failure(&e))),
        }
    }

    /// The plugin refused (or faulted) again: the entry stays, with one more attempt and the
    /// plugin that tried.
    fn rejected_again(
        &self,
        version: &Version,
        entry: DeadLetter,
        mut rejected: Rejected,
        now: Timestamp,
    ) -> (Replayed, bool) {
        let plugin_name = version.producer.label();
        let draft = replayed(
            &entry,
            now,
            json!({"dead_letter": entry.id, "plugin": plugin_name, "code": rejected.code, "error": rejected.error}),
        );
        rejected.dead_letter = entry.id.clone();
        let updated = DeadLetter {
            attempts: entry.attempts + 1,
            error: rejected.error.clone(),
            code: rejected.code.clone(),
            plugin: plugin_name,
            plugin_sha256: version.producer.sha256.clone(),
            updated_at: now,
            ..entry
        };
        match self.core.storage.update_dead_letter(updated, vec![draft]) {
            Ok(()) => (Replayed::RejectedAgain(rejected), false),
            Err(e) => (Replayed::Unavailable(storage_failure(&e)), false),
        }
    }

    /// Discards a dead letter for good; the audit trail records it, with the operator's
    /// reason when one is given.
    pub(crate) async fn discard(&self, id: &str, reason: Option<&str>) -> Discarded {
        let pipeline = self.clone();
        let id = id.to_owned();
        let reason = reason.map(str::to_owned);
        let ran = tokio::task::spawn_blocking(move || {
            let storage = &pipeline.core.storage;
            let Some(entry) = storage.dead_letter(&id)? else {
                return Ok(false);
            };
            let draft = AuditDraft::new(
                &entry.message_id,
                pipeline.core.clock.now(),
                "discarded",
                match reason {
                    Some(reason) => json!({"dead_letter": id, "reason": reason}),
                    None => json!({"dead_letter": id}),
                },
            );
            storage.discard_dead_letter(&id, vec![draft])?;
            Ok::<_, StorageError>(true)
        })
        .await;
        match ran {
            Ok(Ok(true)) => Discarded::Discarded,
            Ok(Ok(false)) => Discarded::NotFound,
            Ok(Err(e)) => Discarded::Unavailable(storage_failure(&e)),
            Err(_) => {
                Discarded::Unavailable(Unavailable::Internal("the discard task failed".into()))
            }
        }
    }
}

fn replayed(entry: &DeadLetter, at: Timestamp, data: serde_json::Value) -> AuditDraft {
    AuditDraft::new(&entry.message_id, at, "replayed", data)
}

fn not_found(what: &'static str, id: &str) -> Replayed {
    Replayed::NotFound {
        what,
        id: id.to_owned(),
    }
}

/// The one replay of an entry that may run now; the entry is free again when it drops,
/// however the replay ended. A concurrent replay of the same entry is answered at once
/// instead of running the plugin a second time on a message that is being resolved.
struct Turn {
    pipeline: Pipeline,
    id: String,
}

impl Turn {
    fn take(pipeline: &Pipeline, id: &str) -> Option<Self> {
        let fresh = pipeline
            .core
            .replaying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned());
        fresh.then(|| Self {
            pipeline: pipeline.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.pipeline
            .core
            .replaying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}
