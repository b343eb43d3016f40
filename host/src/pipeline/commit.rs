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
}

impl Settlement<'_> {
    /// With the `received` audit event first: a message's first commit.
    pub(super) fn received(mut self) -> Self {
        let record = &self.record;
        self.audit.push(AuditDraft::new(
            &record.id,
            self.now,
            "received",
            json!({
                "route": self.route.name,
                "idempotency_key": record.key,
                "content_type": record.content_type,
                "bytes": record.body.len(),
                "fingerprint": self.fingerprint,
            }),
        ));
        self
    }

    /// The commit of a translated message: its events go to the outbox for every sink of
    /// the route.
    pub(super) fn accept(self, events: Vec<DomainEvent>, traceparent: &str) -> (Commit, Accepted) {
        let Self {
            route,
            version,
            record,
            claim,
            fingerprint,
            now,
            mut audit,
        } = self;
        let producer = &version.producer;
        let events: Vec<OutboxEvent> = events
            .into_iter()
            .map(|event| OutboxEvent {
                id: uuid::Uuid::now_v7().to_string(),
                message_id: record.id.clone(),
                route: route.name.clone(),
                event_type: event.event_type,
                subject: event.subject,
                partition_key: event.partition_key,
                data: event.data.get().to_owned(),
                time: now,
                traceparent: traceparent.to_owned(),
                producer: Some(producer.clone()),
            })
            .collect();
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        audit.push(AuditDraft::new(
            &record.id,
            now,
            "translated",
            json!({
                "plugin": producer.label(),
                "sha256": producer.sha256,
                "events": ids.len(),
            }),
        ));
        audit.push(AuditDraft::new(
            &record.id,
            now,
            "committed",
            json!({"events": ids, "sinks": route.sinks}),
        ));
        let accepted = Accepted {
            message_id: record.id.clone(),
            idempotency_key: record.key.clone(),
            events: ids,
        };
        let commit = Commit {
            claim,
            completed: Completed {
                fingerprint,
                settled: Settled::Accepted(accepted.clone()),
                expires_at: expires_at(route, now),
            },
            message: record,
            events: events
                .into_iter()
                .map(|e| (e, route.sinks.clone()))
                .collect(),
            dead_letter: None,
            resolves: None,
            audit,
        };
        (commit, accepted)
    }

    /// The commit of a message its plugin refused or faulted on: a dead letter entry naming
    /// the plugin.
    pub(super) fn reject(self, cause: Cause, code: String, error: String) -> (Commit, Rejected) {
        let Self {
            route,
            version,
            record,
            claim,
            fingerprint,
            now,
            mut audit,
        } = self;
        let entry = DeadLetter {
            id: uuid::Uuid::now_v7().to_string(),
            kind: DeadLetterKind::Translation,
            message_id: record.id.clone(),
            route: route.name.clone(),
            error: error.clone(),
            code: code.clone(),
            plugin: version.producer.label(),
            plugin_sha256: version.producer.sha256.clone(),
            attempts: 1,
            created_at: now,
            updated_at: now,
        };
        audit.push(AuditDraft::new(
            &record.id,
            now,
            "rejected",
            json!({"code": code, "error": error, "plugin": entry.plugin, "sha256": entry.plugin_sha256}),
        ));
        audit.push(AuditDraft::new(
            &record.id,
            now,
            "dead_lettered",
            json!({"dead_letter": entry.id, "error": error}),
        ));
        let rejected = Rejected {
            message_id: record.id.clone(),
            dead_letter: entry.id.clone(),
            cause,
            code,
            error,
        };
        let commit = Commit {
            claim,
            completed: Completed {
                fingerprint,
                settled: Settled::Rejected(rejected.clone()),
                expires_at: expires_at(route, now),
            },
            message: record,
            events: Vec::new(),
            dead_letter: Some(entry),
            resolves: None,
            audit,
        };
        (commit, rejected)
    }
}

impl Settlement<'_> {
    /// The commit of a command answered by its vendor: as [`Settlement::accept`], with the
    /// vendor's status in the trail, and the answer (the events themselves) stored under the
    /// key.
    pub(super) fn answer(
        mut self,
        vendor_status: u16,
        events: Vec<DomainEvent>,
        traceparent: &str,
    ) -> (Commit, Answered) {
        self.audit.push(AuditDraft::new(
            &self.record.id,
            self.now,
            "vendor_answered",
            json!({"status": vendor_status}),
        ));
        let (mut commit, accepted) = self.accept(events, traceparent);
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
        self,
        vendor: &str,
        command: &DomainCommand,
        traceparent: &str,
    ) -> (Commit, Queued) {
        let Self {
            route,
            version,
            record,
            claim,
            fingerprint,
            now,
            mut audit,
        } = self;
        let event = OutboxEvent {
            id: uuid::Uuid::now_v7().to_string(),
            message_id: record.id.clone(),
            route: route.name.clone(),
            event_type: command.command_type.clone(),
            subject: command.subject.clone(),
            partition_key: command.subject.clone(),
            data: command.data.clone(),
            time: now,
            traceparent: traceparent.to_owned(),
            producer: Some(version.producer.clone()),
        };
        audit.push(AuditDraft::new(
            &record.id,
            now,
            "queued",
            json!({"vendor": vendor, "event": event.id}),
        ));
        let queued = Queued {
            message_id: record.id.clone(),
            idempotency_key: record.key.clone(),
        };
        let commit = Commit {
            claim,
            completed: Completed {
                fingerprint,
                settled: Settled::Queued(queued.clone()),
                expires_at: expires_at(route, now),
            },
            message: record,
            events: vec![(event, vec![vendor.to_owned()])],
            dead_letter: None,
            resolves: None,
            audit,
        };
        (commit, queued)
    }
}

/// When the key may be forgotten.
fn expires_at(route: &Route, now: Timestamp) -> Timestamp {
    now.checked_add(route.retention).unwrap_or(Timestamp::MAX)
}
