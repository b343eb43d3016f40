//! The outbox on sled: each event is stored once (`o`), and each sink keeps its own delivery
//! state per event (`d`), grouped by partition key in commit order, with one schedule entry
//! per partition key that has deliveries to go (`r`, by when it is due). A sink reads only
//! its own keys that are due; a key in backoff, or another sink's backlog, is never read.
//!
//! A partition key's schedule entry is made when its first delivery to a sink is enqueued,
//! moved to the retry time when a delivery fails, and removed when its last delivery is done,
//! all under the writer lock and in the same batch as the change it follows.

use std::borrow::Cow;
use std::collections::BTreeSet;

use jiff::Timestamp;

use super::staging::{Pending, Staging, Writes};
use super::{Db, sled_error};
use crate::storage::codec::{
    Counters, EventRecord, Published, SEQ, dead_letter_key, decode, delivery_key, delivery_prefix,
    encode, event_key, head_key, instant, published_key, read_instant, read_seq, schedule_key,
    schedule_prefix,
};
use crate::storage::{
    AuditDraft, DeadLetter, DeadLetterKind, Delivery, DeliveryOutcome, Due, DueChain, EntityEvent,
    OutboxEvent, PendingDelivery, Released, StorageError,
};

impl Db {
    /// Puts `event` in the outbox for `sinks` as number `seq`, in `staging`. `sinks` is not
    /// empty: an event for no sink is not kept (the commit's audit events name it, the
    /// message keeps its body).
    pub(super) fn enqueue(
        &self,
        staging: &mut Staging<'_>,
        counters: &mut Counters,
        seq: u64,
        event: OutboxEvent,
        sinks: Vec<String>,
    ) -> Result<(), StorageError> {
        let key = &event.partition_key;
        for sink in &sinks {
            staging
                .writes
                .insert(delivery_key(sink, key, seq), encode(&Delivery::default()));
            *counters.sinks.entry(sink.clone()).or_default() += 1;
            if !staging.has_chain(self, sink, key)? {
                // The key's first delivery to go at this sink: due now.
                staging
                    .writes
                    .insert(head_key(sink, key), &instant(event.time));
                staging
                    .writes
                    .insert(schedule_key(sink, event.time, key), &[]);
                staging.opened_chain(sink, key);
            }
        }
        counters.outbox += 1;
        let kept_at = staging.entity_keys.remove(&event.id);
        let record = EventRecord {
            event: kept_at.is_none().then_some(event),
            sinks,
            kept_at,
        };
        staging.writes.insert(&event_key(seq), encode(&record));
        Ok(())
    }

    /// The event of the outbox record numbered `seq`: borrowed from it, or read from its
    /// entity stream, which keeps it instead.
    pub(super) fn event_of<'r>(
        &self,
        seq: u64,
        record: &'r EventRecord,
    ) -> Result<Cow<'r, OutboxEvent>, StorageError> {
        let missing = |message: &str| StorageError::Corrupt {
            key: format!("o/{seq}"),
            message: message.into(),
        };
        match (&record.event, &record.kept_at) {
            (Some(event), _) => Ok(Cow::Borrowed(event)),
            (None, Some(key)) => self
                .get::<EntityEvent>(key)?
                .map(|kept| Cow::Owned(kept.event))
                .ok_or_else(|| missing("its event is in an entity stream that does not hold it")),
            (None, None) => Err(missing("an outbox record without its event")),
        }
    }

    /// The event of the outbox record numbered `seq`, owned: moved out of it, or read from
    /// its entity stream.
    fn take_event(&self, seq: u64, mut record: EventRecord) -> Result<OutboxEvent, StorageError> {
        match record.event.take() {
            Some(event) => Ok(event),
            None => Ok(self.event_of(seq, &record)?.into_owned()),
        }
    }

    pub(super) fn due_chains(
        &self,
        sink: &str,
        now: Timestamp,
        busy: &BTreeSet<String>,
        chains: usize,
        per_chain: usize,
    ) -> Result<Due, StorageError> {
        let durable = self.inner.flush.durable_seq();
        let prefix = schedule_prefix(sink);
        let mut due = Due::default();
        // Keys skipped because the caller has them, or because their next event is not
        // durable yet, are few; the bound keeps a pathological store from a long read.
        let mut skips = busy.len() + 1024;
        for item in self.tree().scan_prefix(&prefix) {
            if due.chains.len() >= chains {
                break;
            }
            let (k, _) = item.map_err(sled_error)?;
            let (at, key) = schedule_entry(&prefix, &k)?;
            if at > now {
                due.next_at = Some(at);
                break;
            }
            let deliveries = if busy.contains(&key) {
                Vec::new()
            } else {
                self.chain(sink, &key, durable, per_chain)?
            };
            if deliveries.is_empty() {
                skips = skips.saturating_sub(1);
                if skips == 0 {
                    break;
                }
                continue;
            }
            due.chains.push(DueChain {
                partition_key: key,
                deliveries,
            });
        }
        Ok(due)
    }

    /// Up to `limit` of `key`'s deliveries at `sink`, in commit order, stopping at the first
    /// that is not durable yet.
    fn chain(
        &self,
        sink: &str,
        key: &str,
        durable: u64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StorageError> {
        let prefix = delivery_prefix(sink, key);
        let mut out = Vec::new();
        let mut limit = limit;
        for item in self.tree().scan_prefix(&prefix) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(sled_error)?;
            let Some(seq) = read_seq(&k[prefix.len()..]) else {
                return Err(StorageError::Corrupt {
                    key: String::from_utf8_lossy(&k).replace('\0', "/"),
                    message: "a delivery key without its sequence number".into(),
                });
            };
            if seq > durable {
                break;
            }
            let delivery: Delivery = decode(&k, &v)?;
            if out.is_empty() && delivery.attempts > 0 {
                // The head has failed before and will likely fail again: read it alone, and
                // the rest once it is through.
                limit = 1;
            }
            let Some(record) = self.get::<EventRecord>(&event_key(seq))? else {
                return Err(StorageError::Corrupt {
                    key: format!("o/{seq}"),
                    message: format!("sink {sink} waits for an event that is not stored"),
                });
            };
            out.push(PendingDelivery {
                seq,
                event: self.take_event(seq, record)?,
                delivery,
            });
        }
        Ok(out)
    }

    pub(super) fn record(
        &self,
        seq: u64,
        sink: &str,
        outcome: DeliveryOutcome,
        audit: Vec<AuditDraft>,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let mut state = self.lock();
        let not_found = || StorageError::NotFound {
            what: "outbox delivery",
            id: format!("{seq} to {sink}"),
        };
        let Some(mut record) = self.get::<EventRecord>(&event_key(seq))? else {
            return Err(not_found());
        };
        let key = self.event_of(seq, &record)?.partition_key.clone();
        let delivery_key = delivery_key(sink, &key, seq);
        let Some(mut delivery) = self.get::<Delivery>(&delivery_key)? else {
            return Err(not_found());
        };
        let head = head_key(sink, &key);
        let due = match self.tree().get(&head).map_err(sled_error)? {
            Some(bytes) => read_instant(&bytes),
            None => None,
        };
        let mut counters = state.counters.clone();
        let mut batch = Writes::default();
        let mut dead_letter = None;
        let done = match outcome {
            DeliveryOutcome::Delivered => true,
            DeliveryOutcome::DeadLettered(entry) => {
                counters.dead_letter(&entry, true);
                dead_letter = Some(entry);
                true
            }
            DeliveryOutcome::Failed { error, next_at } => {
                delivery.attempts += 1;
                delivery.next_at = Some(next_at);
                delivery.last_error = Some(error);
                delivery.first_failed_at.get_or_insert(now);
                batch.insert(delivery_key.clone(), encode(&delivery));
                // The key waits at this sink until the retry.
                if let Some(due) = due {
                    batch.remove(schedule_key(sink, due, &key));
                }
                batch.insert(head.clone(), &instant(next_at));
                batch.insert(schedule_key(sink, next_at, &key), &[]);
                false
            }
        };
        if done {
            batch.remove(delivery_key.clone());
            if let Some(n) = counters.sinks.get_mut(sink) {
                *n = n.saturating_sub(1);
            }
            record.sinks.retain(|s| s != sink);
            if record.sinks.is_empty() {
                batch.remove(&event_key(seq));
                batch.insert(
                    published_key(now, seq),
                    encode(&Published {
                        at: now,
                        event: record.event,
                        kept_at: record.kept_at,
                    }),
                );
                counters.outbox = counters.outbox.saturating_sub(1);
            } else {
                batch.insert(&event_key(seq), encode(&record));
            }
            // The last delivery of the key at this sink takes its schedule with it.
            let more = self
                .tree()
                .scan_prefix(delivery_prefix(sink, &key))
                .keys()
                .take(2)
                .any(|k| k.map_or(true, |k| k.as_ref() != delivery_key.as_slice()));
            if !more {
                batch.remove(head);
                if let Some(due) = due {
                    batch.remove(schedule_key(sink, due, &key));
                }
            }
        }
        let pending = Pending::default();
        let mut staging = Staging::new(&pending, batch);
        if let Some(entry) = &dead_letter {
            staging.put_dead_letter(entry);
        }
        self.append_audit(&mut staging, audit)?;
        self.apply(&mut state, staging.writes, counters)
    }

    /// Makes up to `limit` keys held in backoff at `sink` (or only `partition_key`) due at
    /// `now`, their attempts and budget as they were; with `audit`'s events, in one batch.
    pub(super) fn release_held_keys(
        &self,
        sink: &str,
        partition_key: Option<&str>,
        now: Timestamp,
        limit: usize,
        audit: &dyn Fn(&Released) -> Vec<AuditDraft>,
    ) -> Result<Released, StorageError> {
        let mut state = self.lock();
        let prefix = schedule_prefix(sink);
        let mut held = Vec::new();
        let mut more = false;
        let keys: Box<dyn Iterator<Item = _>> = match partition_key {
            // One key: its head says when it is due.
            Some(key) => Box::new(
                self.tree()
                    .get(head_key(sink, key))
                    .map_err(sled_error)?
                    .and_then(|bytes| read_instant(&bytes))
                    .map(|at| Ok((at, key.to_owned())))
                    .into_iter(),
            ),
            // Every key due after now, in the order they are due.
            None => Box::new(
                self.tree()
                    .range(schedule_key(sink, now, "")..)
                    .keys()
                    .take_while(|k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
                    .map(|k| schedule_entry(&prefix, &k.map_err(sled_error)?)),
            ),
        };
        for item in keys {
            let (at, key) = item?;
            if at <= now {
                continue;
            }
            if held.len() == limit {
                more = true;
                break;
            }
            held.push((at, key));
        }
        let mut batch = Writes::default();
        for (at, key) in &held {
            batch.remove(schedule_key(sink, *at, key));
            batch.insert(head_key(sink, key), &instant(now));
            batch.insert(schedule_key(sink, now, key), &[]);
            // The head delivery waits for its own `next_at` too.
            if let Some(item) = self.tree().scan_prefix(delivery_prefix(sink, key)).next() {
                let (k, v) = item.map_err(sled_error)?;
                let mut delivery: Delivery = decode(&k, &v)?;
                delivery.next_at = None;
                batch.insert(k.to_vec(), encode(&delivery));
            }
        }
        let released = Released {
            keys: held.into_iter().map(|(_, key)| key).collect(),
            more,
        };
        if released.keys.is_empty() {
            return Ok(released);
        }
        let pending = Pending::default();
        let mut staging = Staging::new(&pending, batch);
        self.append_audit(&mut staging, audit(&released))?;
        let counters = state.counters.clone();
        self.apply(&mut state, staging.writes, counters)?;
        Ok(released)
    }

    pub(super) fn requeue_delivery(
        &self,
        dead_letter: &str,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StorageError> {
        let mut state = self.lock();
        let Some(entry) = self.get::<DeadLetter>(&dead_letter_key(dead_letter))? else {
            return Err(StorageError::NotFound {
                what: "dead letter",
                id: dead_letter.into(),
            });
        };
        let DeadLetterKind::Delivery { sink, event } = entry.kind.clone() else {
            return Err(StorageError::NotFound {
                what: "delivery dead letter",
                id: dead_letter.into(),
            });
        };
        let seq = state.next_seq;
        let mut counters = state.counters.clone();
        let pending = Pending::default();
        let mut staging = Staging::new(&pending, Writes::default());
        self.enqueue(&mut staging, &mut counters, seq, *event, vec![sink])?;
        staging.writes.insert(SEQ, (seq + 1).to_be_bytes().to_vec());
        staging.remove_dead_letter(&entry);
        counters.dead_letter(&entry, false);
        self.append_audit(&mut staging, audit)?;
        self.apply(&mut state, staging.writes, counters)?;
        state.next_seq = seq + 1;
        self.inner.flush.committed(seq);
        Ok(())
    }
}

/// A schedule key of a sink (under `prefix`): when the partition key is due, and the key.
fn schedule_entry(prefix: &[u8], k: &[u8]) -> Result<(Timestamp, String), StorageError> {
    let rest = &k[prefix.len()..];
    let at = read_instant(rest).ok_or_else(|| StorageError::Corrupt {
        key: String::from_utf8_lossy(k).replace('\0', "/"),
        message: "a schedule key without its instant".into(),
    })?;
    Ok((at, String::from_utf8_lossy(&rest[8..]).into_owned()))
}
