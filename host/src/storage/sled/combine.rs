//! Commits combined: those that wait for the writer lock go to sled as one batch.
//!
//! sled applies one batch at a time, whatever the thread (a batch takes its global
//! concurrency lock), and each batch pays a fixed cost besides its keys: about 90 µs, against
//! about 24 µs a key, measured on this machine. One batch per commit made that fixed cost the
//! limit of ingest. So a commit encodes what needs no read and joins the queue. One committer
//! at a time leads: it takes the writer lock and stages every queued commit in order, each
//! reading through what the ones before it staged (`sled/staging.rs`), writes them all in one
//! batch, and wakes each of them with its outcome. The others sleep until woken: a follower
//! never takes the writer lock only to find its commit written, for those hand-offs, one
//! after another, each a context switch, were what kept the lock idle between batches.
//! A leader leads until its own commit is written, then hands the lead to the oldest waiting
//! commit, so that no committer leads for ever under a steady load.
//!
//! What held for one commit holds for the group: sequence numbers are taken in queue order
//! under the lock, so sequence order is commit order; the batch is atomic, so a crash keeps
//! all of it or none; a commit that fails to stage (a damaged head, say) fails alone.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;

use super::chains::{self, Opened};
use super::staging::{Pending, Staging, Writes};
use super::{Db, WriteState};
use crate::storage::codec::{
    Counters, IdempotencyEntry, SEQ, dead_letter_key, encode, expiry_key, idempotency_key,
    message_key,
};
use crate::storage::{
    AuditDraft, AuditEvent, Commit, DeadLetter, EntityDraft, OutboxEvent, StorageError,
};

/// The most commits in one batch: a bound on the batch, not a goal.
const MOST: usize = 64;

/// A queued commit's place: where its outcome is left, and how its committer is woken.
#[derive(Debug)]
pub(super) struct Ticket {
    outcome: OnceLock<Result<(), StorageError>>,
    /// Set when the committer is handed the lead.
    lead: AtomicBool,
    committer: Thread,
}

impl Ticket {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            outcome: OnceLock::new(),
            lead: AtomicBool::new(false),
            committer: std::thread::current(),
        })
    }

    /// Leaves the outcome and wakes the committer.
    fn settle(&self, outcome: Result<(), StorageError>) {
        let _ = self.outcome.set(outcome);
        self.committer.unpark();
    }

    fn hand_lead(&self) {
        self.lead.store(true, Ordering::Release);
        self.committer.unpark();
    }
}

#[derive(Debug, Default)]
struct Waiting {
    jobs: VecDeque<(Prepared, Arc<Ticket>)>,
    /// Whether a committer leads; while one does, every queued commit is its to write.
    led: bool,
}

/// Commits waiting to be written, oldest first.
#[derive(Debug, Default)]
pub(super) struct Queue(Mutex<Waiting>);

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a commit: its ticket, and whether its committer leads.
    fn push(&self, prepared: Prepared) -> (Arc<Ticket>, bool) {
        let ticket = Ticket::new();
        let mut waiting = self.lock();
        waiting.jobs.push_back((prepared, ticket.clone()));
        let leads = !waiting.led;
        waiting.led = true;
        (ticket, leads)
    }

    fn take(&self) -> Vec<(Prepared, Arc<Ticket>)> {
        let mut waiting = self.lock();
        let n = waiting.jobs.len().min(MOST);
        waiting.jobs.drain(..n).collect()
    }

    /// Hands the lead to the oldest waiting commit, or leaves no one leading.
    fn pass_lead(&self) {
        let mut waiting = self.lock();
        match waiting.jobs.front() {
            Some((_, next)) => next.hand_lead(),
            None => waiting.led = false,
        }
    }
}

/// The lead, held: passed on when dropped.
struct Leading<'a>(&'a Queue);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.pass_lead();
    }
}

/// The tickets a round took: any it leaves unsettled (it panicked midway) fail when it is
/// dropped, so that no committer sleeps for ever.
struct Taken(Vec<Arc<Ticket>>);

impl Drop for Taken {
    fn drop(&mut self) {
        for ticket in &self.0 {
            if ticket.outcome.get().is_none() {
                ticket.settle(Err(StorageError::Backend(
                    "the batch holding this commit was abandoned".into(),
                )));
            }
        }
    }
}

/// A commit with what needs no read encoded, before the writer lock.
#[derive(Debug)]
pub(super) struct Prepared {
    writes: Writes,
    /// The head of the new message's audit stream, sealed from its start.
    opened: Option<AuditEvent>,
    /// Drafts for streams that have a head to read.
    audit: Vec<AuditDraft>,
    events: Vec<(OutboxEvent, Vec<String>)>,
    dead_letter: Option<DeadLetter>,
    resolves: Option<String>,
    entities: Vec<EntityDraft>,
}

impl Prepared {
    /// Encodes the key's outcome, its expiry entry and the message, and a new message's audit
    /// stream, under the idempotency key `key` of `route`.
    pub(super) fn new(commit: Commit, route: &str, key: &str) -> Self {
        let mut writes = Writes::default();
        let expires_at = commit.completed.expires_at;
        writes.insert(
            idempotency_key(route, key),
            encode(&IdempotencyEntry::Done(commit.completed)),
        );
        writes.insert(expiry_key(expires_at, route, key), &[]);
        writes.insert(message_key(&commit.message.id), encode(&commit.message));
        // A new message's stream starts with this commit: sealed without a read or the lock.
        let Opened { head, others } = if commit.new_message {
            chains::open_stream(&mut writes, &commit.message.id, commit.audit)
        } else {
            Opened {
                head: None,
                others: commit.audit,
            }
        };
        Self {
            writes,
            opened: head,
            audit: others,
            events: commit.events,
            dead_letter: commit.dead_letter,
            resolves: commit.resolves,
            entities: commit.entities,
        }
    }
}

/// The commits of one batch so far.
struct Group {
    writes: Writes,
    pending: Pending,
    counters: Counters,
    next_seq: u64,
}

/// One commit staged after the group's.
struct Staged {
    writes: Writes,
    moved: Pending,
    counters: Counters,
    next_seq: u64,
}

impl Db {
    /// Queues `prepared`, waits until it is written (leading the writes when it is its
    /// turn) and returns its outcome.
    pub(super) fn write_queued(&self, prepared: Prepared) -> Result<(), StorageError> {
        let queue = &self.inner.queue;
        let (ticket, mut leads) = queue.push(prepared);
        while !leads {
            if let Some(outcome) = ticket.outcome.get() {
                return outcome.clone();
            }
            if ticket.lead.load(Ordering::Acquire) {
                leads = true;
            } else {
                // Woken by its outcome or by the lead; a spurious wake only looks again.
                std::thread::park();
            }
        }
        self.lead(&ticket);
        ticket
            .outcome
            .get()
            .cloned()
            .unwrap_or_else(|| Err(StorageError::Backend("a commit was left unsettled".into())))
    }

    /// Writes queued commits, oldest first, until the one of `ticket` is written, then passes
    /// the lead on.
    fn lead(&self, ticket: &Ticket) {
        let queue = &self.inner.queue;
        // Passed on however this ends, a panic included: no one else would ever lead.
        let _leading = Leading(queue);
        {
            let mut state = self.lock();
            // The leader's commit is queued until a round takes it, and each round takes the
            // oldest: it is written within a few rounds.
            while ticket.outcome.get().is_none() {
                let jobs = queue.take();
                if jobs.is_empty() {
                    // Only the leader takes commits, and it settles what it takes.
                    ticket.settle(Err(StorageError::Backend(
                        "a queued commit was lost before it was written".into(),
                    )));
                    break;
                }
                self.write_group(&mut state, jobs);
            }
        }
    }

    fn write_group(&self, state: &mut WriteState, jobs: Vec<(Prepared, Arc<Ticket>)>) {
        let _taken = Taken(jobs.iter().map(|(_, ticket)| ticket.clone()).collect());
        let mut group = Group {
            writes: Writes::default(),
            pending: Pending::default(),
            counters: state.counters.clone(),
            next_seq: state.next_seq,
        };
        let mut members = Vec::with_capacity(jobs.len());
        for (prepared, ticket) in jobs {
            match self.stage(&group, prepared, &state.entity_types) {
                Ok(staged) => {
                    group.writes.append(staged.writes);
                    group.pending.absorb(staged.moved);
                    group.counters = staged.counters;
                    group.next_seq = staged.next_seq;
                    members.push(ticket);
                }
                Err(e) => ticket.settle(Err(e)),
            }
        }
        if members.is_empty() {
            return;
        }
        if group.next_seq != state.next_seq {
            group
                .writes
                .insert(SEQ, group.next_seq.to_be_bytes().to_vec());
        }
        let outcome = self.apply(state, group.writes, group.counters);
        if outcome.is_ok() {
            state.next_seq = group.next_seq;
            state.entity_types.extend(group.pending.types);
            self.inner.flush.committed(group.next_seq - 1);
        }
        for ticket in members {
            ticket.settle(outcome.clone());
        }
    }

    /// Stages one commit after the group's: what it reads, it reads through them.
    fn stage(
        &self,
        group: &Group,
        prepared: Prepared,
        known_types: &HashSet<Vec<u8>>,
    ) -> Result<Staged, StorageError> {
        let mut counters = group.counters.clone();
        let mut seq = group.next_seq;
        let mut staging = Staging::new(&group.pending, prepared.writes);
        if let Some(head) = prepared.opened {
            staging.moved_audit(head);
        }
        // The entity streams first: an outbox event they hold keeps its data there only.
        self.append_entities(&mut staging, prepared.entities, known_types)?;
        // Only an event with a sink to go takes a place in the outbox (and a number).
        for (event, sinks) in prepared.events {
            if !sinks.is_empty() {
                self.enqueue(&mut staging, &mut counters, seq, event, sinks)?;
                seq += 1;
            }
        }
        if let Some(entry) = &prepared.dead_letter {
            staging.put_dead_letter(entry);
            counters.dead_letter(entry, true);
        }
        if let Some(id) = &prepared.resolves {
            let key = dead_letter_key(id);
            // An entry resolved is one stored before: the tree has it, with its route.
            if staging.has_dead_letter(self, &key)?
                && let Some(entry) = self.get::<DeadLetter>(&key)?
            {
                staging.remove_dead_letter(&entry);
                counters.dead_letter(&entry, false);
            }
        }
        self.append_audit(&mut staging, prepared.audit)?;
        Ok(Staged {
            writes: staging.writes,
            moved: staging.own,
            counters,
            next_seq: seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::{Leading, Prepared, Ticket};
    use crate::outcome::{Accepted, Settled};
    use crate::storage::codec::{entity_key, message_key};
    use crate::storage::sled::Db;
    use crate::storage::{
        Commit, Completed, EntityDraft, EntityRef, MessageRecord, OutboxEvent, Storage,
        StorageError,
    };

    fn t0() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    /// A commit of message `id` with one event about order `subject`, for sink `hook`.
    fn commit(id: &str, subject: &str) -> Commit {
        let event = OutboxEvent {
            id: format!("e-{id}"),
            message_id: id.into(),
            route: "orders".into(),
            event_type: "order.created.v1".into(),
            subject: subject.into(),
            partition_key: subject.into(),
            data: "{}".into(),
            time: t0(),
            traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01".into(),
            tracestate: None,
            producer: None,
        };
        Commit {
            claim: None,
            completed: Completed {
                fingerprint: "f".into(),
                settled: Settled::Accepted(Accepted {
                    message_id: id.into(),
                    idempotency_key: id.into(),
                    events: vec![event.id.clone()],
                }),
                expires_at: t0(),
            },
            message: MessageRecord {
                id: id.into(),
                route: "orders".into(),
                key: id.into(),
                content_type: None,
                headers: vec![],
                body: b"{}".to_vec(),
                received_at: t0(),
                cut: None,
            },
            entities: vec![EntityDraft {
                entity: EntityRef::of(&event.event_type, subject).unwrap(),
                event: event.clone(),
                occurred_at: None,
            }],
            events: vec![(event, vec!["hook".into()])],
            dead_letter: None,
            resolves: None,
            audit: vec![],
            new_message: true,
        }
    }

    fn queue(store: &Db, id: &str, subject: &str) -> Arc<Ticket> {
        let prepared = Prepared::new(commit(id, subject), "orders", id);
        store.inner.queue.push(prepared).0
    }

    /// Three commits in one batch: the third reads the head the first staged, and the
    /// second, whose entity's head is damaged, fails alone and leaves nothing behind.
    #[test]
    fn a_commit_reads_what_its_group_staged_and_one_that_fails_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Db::open(dir.path()).unwrap();
        let damaged = EntityRef::of("order.created.v1", "B").unwrap();
        store
            .tree()
            .insert(entity_key(&damaged, 1), b"not a record".to_vec())
            .unwrap();
        let first = queue(&store, "m1", "A");
        let second = queue(&store, "m2", "B");
        let third = queue(&store, "m3", "A");
        // The third's committer leads (as if handed the lead) and writes all three.
        store.lead(&third);
        assert!(matches!(first.outcome.get(), Some(Ok(()))));
        assert!(matches!(
            second.outcome.get(),
            Some(Err(StorageError::Corrupt { .. }))
        ));
        assert!(matches!(third.outcome.get(), Some(Ok(()))));
        assert!(!store.inner.queue.lock().led, "no one leads an empty queue");

        let a = EntityRef::of("order.created.v1", "A").unwrap();
        let stream = store.entity_stream(&a).unwrap();
        let seqs: Vec<u64> = stream.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            vec![1, 2],
            "the third followed the first's staged head"
        );
        assert_eq!(stream[1].prev, stream[0].hash);
        assert!(store.message("m2").unwrap().is_none());
        assert!(!store.contains(&message_key("m2")).unwrap());
        // The outbox numbers the two written events 1 and 2, and counts two.
        let depths = store.depths().unwrap();
        assert_eq!(depths.outbox, 2);
        assert_eq!(depths.sinks.get("hook"), Some(&2));
        assert_eq!(store.lock().next_seq, 3);
    }

    /// A leader whose commit is written while others wait hands the lead to the oldest of
    /// them, which then writes the rest and leaves no one leading.
    #[test]
    fn a_leader_done_hands_the_lead_to_the_oldest_waiting_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Db::open(dir.path()).unwrap();
        let waiting = &store.inner.queue;
        let (first, leads) = waiting.push(Prepared::new(commit("m1", "A"), "orders", "m1"));
        assert!(leads, "the first of an idle queue leads");
        let round = waiting.take();
        let second = queue(&store, "m2", "A");
        let third = queue(&store, "m3", "B");
        store.write_group(&mut store.lock(), round);
        assert!(matches!(first.outcome.get(), Some(Ok(()))));
        drop(Leading(waiting));
        assert!(
            second.lead.load(Ordering::Acquire),
            "the oldest waiting leads"
        );
        assert!(!third.lead.load(Ordering::Acquire));
        assert!(waiting.lock().led);
        store.lead(&second);
        assert!(matches!(second.outcome.get(), Some(Ok(()))));
        assert!(matches!(third.outcome.get(), Some(Ok(()))));
        assert!(!waiting.lock().led);
    }
}
