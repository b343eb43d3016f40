//! What one commit of a message holds: its outcome under its idempotency key, the message,
//! and either its events for the outbox or its dead letter entry, with the audit events that
//! say so. Built here, written by the store all at once.

use jiff::Timestamp;
use serde_json::json;

use std::sync::Arc;

use super::routes::{Route, Version};
use crate::outcome::{Accepted, Answered, AnsweredEvent, Cause, Queued, Rejected, Settled};
use crate::plugin::{DomainCommand, DomainEvent};
use crate::storage::{
    AuditDraft, ClaimToken, Commit, Completed, DeadLetter, DeadLetterKind, MessageRecord,
    OutboxEvent,
};
use crate::trace::TraceContext;

/// A message on its way to a commit, with what every commit of it shares.
pub(super) struct Settlement<'a> {
    pub(super) route: &'a Route,
    /// The plugin version that made the outcome: it names the events and the dead letter.
    pub(super) version: Arc<Version>,
    pub(super) record: MessageRecord,
    /// The claim held; `None` for a replay, which holds none.
    pub(super) claim: Option<ClaimToken>,
    /// The sha256 of the body.
    pub(super) fingerprint: String,
    pub(super) now: Timestamp,
    /// Audit events that come first (`received`, `replayed`).
    pub(super) audit: Vec<AuditDraft>,
    /// Whether this is the message's first commit (set by [`Settlement::received`]).
    pub(super) new_message: bool,
}

impl Settlement<'_> {
    /// With the `received` audit event first: a message's first commit, which opens its
    /// audit stream (its id was minted on arrival).
    pub(super) fn received(mut self) -> Self {
        self.new_message = true;
        let record = &self.record;
        let data = json!({
            "route": self.route.name,
            "idempotency_key": record.key,
            "content_type": record.content_type,
            "bytes": record.body.len(),
            "fingerprint": self.fingerprint,
        });
        self.audit("received", data);
        self
    }

    /// An outbox event of this message, made by its plugin version now.
    fn event(
        &self,
        event_type: String,
        subject: String,
        partition_key: String,
        data: String,
        trace: &TraceContext,
    ) -> OutboxEvent {
        OutboxEvent {
            id: uuid::Uuid::now_v7().to_string(),
            message_id: self.record.id.clone(),
            route: self.route.name.clone(),
            event_type,
            subject,
            partition_key,
            data,
            time: self.now,
            traceparent: trace.traceparent.clone(),
            tracestate: trace.tracestate.clone(),
            producer: Some(self.version.producer.clone()),
        }
    }

    /// An audit event of this message, now.
    fn audit(&mut self, kind: &str, data: serde_json::Value) {
        let draft = AuditDraft::new(&self.record.id, self.now, kind, data);
        self.audit.push(draft);
    }

    /// The commit every settlement ends in: `settled` under the key (kept for the route's
    /// retention), the message, and what it adds to the outbox or the dead letter channel.
    fn into_commit(
        self,
        settled: Settled,
        events: Vec<(OutboxEvent, Vec<String>)>,
        dead_letter: Option<DeadLetter>,
    ) -> Commit {
        let entities = if self.route.entity_streams {
            events
                .iter()
                .filter_map(|(event, _)| crate::entity::draft(event))
                .collect()
        } else {
            Vec::new()
        };
        Commit {
            claim: self.claim,
            completed: Completed {
                fingerprint: self.fingerprint,
                settled,
                expires_at: expires_at(self.route, self.now),
            },
            message: self.record,
            events,
            dead_letter,
            resolves: None,
            audit: self.audit,
            new_message: self.new_message,
            entities,
        }
    }

    /// The commit of a translated message: its events go to the outbox for every sink of
    /// the route.
    pub(super) fn accept(
        mut self,
        events: Vec<DomainEvent>,
        trace: &TraceContext,
    ) -> (Commit, Accepted) {
        let events: Vec<OutboxEvent> = events
            .into_iter()
            .map(|event| {
                let data = event.data.get().to_owned();
                self.event(
                    event.event_type,
                    event.subject,
                    event.partition_key,
                    data,
                    trace,
                )
            })
            .collect();
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let producer = self.version.producer.clone();
        self.audit(
            "translated",
            json!({
                "plugin": producer.label(),
                "sha256": producer.sha256,
                "events": ids.len(),
            }),
        );
        let sinks = self.route.sinks.clone();
        self.audit("committed", json!({"events": ids, "sinks": sinks}));
        let accepted = Accepted {
            message_id: self.record.id.clone(),
            idempotency_key: self.record.key.clone(),
            events: ids,
        };
        let events = events.into_iter().map(|e| (e, sinks.clone())).collect();
        let commit = self.into_commit(Settled::Accepted(accepted.clone()), events, None);
        (commit, accepted)
    }

    /// The commit of a message its plugin refused or faulted on: a dead letter entry naming
    /// the plugin.
    pub(super) fn reject(
        mut self,
        cause: Cause,
        code: String,
        error: String,
    ) -> (Commit, Rejected) {
        if let Some(max) = self.route.dead_letters.max_body_bytes {
            self.record.cut_body(max);
        }
        let entry = DeadLetter {
            id: uuid::Uuid::now_v7().to_string(),
            kind: DeadLetterKind::Translation,
            message_id: self.record.id.clone(),
            route: self.route.name.clone(),
            error: error.clone(),
            code: code.clone(),
            plugin: self.version.producer.label(),
            plugin_sha256: self.version.producer.sha256.clone(),
            attempts: 1,
            created_at: self.now,
            updated_at: self.now,
            bytes: self.record.body.len() as u64,
        };
        self.audit(
            "rejected",
            json!({"code": code, "error": error, "plugin": entry.plugin, "sha256": entry.plugin_sha256}),
        );
        self.audit(
            "dead_lettered",
            json!({"dead_letter": entry.id, "error": error}),
        );
        let rejected = Rejected {
            message_id: self.record.id.clone(),
            dead_letter: entry.id.clone(),
            cause,
            code,
            error,
        };
        let commit = self.into_commit(Settled::Rejected(rejected.clone()), Vec::new(), Some(entry));
        (commit, rejected)
    }

    /// The commit of a command answered by its vendor: as [`Settlement::accept`], with the
    /// vendor's status in the trail, and the answer (the events themselves) stored under the
    /// key.
    pub(super) fn answer(
        mut self,
        vendor_status: u16,
        events: Vec<DomainEvent>,
        trace: &TraceContext,
    ) -> (Commit, Answered) {
        self.audit("vendor_answered", json!({"status": vendor_status}));
        let (mut commit, accepted) = self.accept(events, trace);
        let answered = Answered {
            message_id: accepted.message_id,
            idempotency_key: accepted.idempotency_key,
            vendor_status,
            events: commit
                .events
                .iter()
                .map(|(event, _)| AnsweredEvent {
                    id: event.id.clone(),
                    event_type: event.event_type.clone(),
                    subject: event.subject.clone(),
                    partition_key: event.partition_key.clone(),
                    data: serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null),
                })
                .collect(),
        };
        commit.completed.settled = Settled::Answered(answered.clone());
        (commit, answered)
    }

    /// The commit of a command queued while its vendor's circuit is open: the command goes
    /// to the outbox for the vendor (a sink of the vendor's name), sent once it closes.
    pub(super) fn queue(
        mut self,
        vendor: &str,
        command: &DomainCommand,
        trace: &TraceContext,
    ) -> (Commit, Queued) {
        let event = self.event(
            command.command_type.clone(),
            command.subject.clone(),
            command.subject.clone(),
            command.data.clone(),
            trace,
        );
        self.audit("queued", json!({"vendor": vendor, "event": event.id}));
        let queued = Queued {
            message_id: self.record.id.clone(),
            idempotency_key: self.record.key.clone(),
        };
        let events = vec![(event, vec![vendor.to_owned()])];
        let commit = self.into_commit(Settled::Queued(queued.clone()), events, None);
        (commit, queued)
    }
}

/// When the key may be forgotten.
fn expires_at(route: &Route, now: Timestamp) -> Timestamp {
    now.checked_add(route.retention).unwrap_or(Timestamp::MAX)
}
