//! Moves a store written by an older host to the current layout, once, at open, in one
//! batch: a data dir keeps its keys, its pending deliveries (with their attempt counts and
//! retry times) and its published events across the upgrade.
//!
//! Layout 1 (no `s/layout` record) kept one outbox record per event with every sink's
//! delivery state in it, published events by sequence number, claims in flight as records,
//! and no indexes. Layout 2 is described in `codec.rs`.

use std::collections::BTreeSet;

use super::sled_error;
use crate::storage::StorageError;
use crate::storage::codec::{
    COUNTERS, CURRENT_LAYOUT, Counters, EventRecord, IdempotencyEntry, LAYOUT, LegacyOutboxRecord,
    LegacyPublished, Published, SEQ, decode, delivery_key, encode, event_key, expiry_key, head_key,
    instant, published_key, route_dead_letter_key, schedule_key,
};

/// Brings `tree` to [`CURRENT_LAYOUT`].
pub(super) fn to_current(tree: &::sled::Tree) -> Result<(), StorageError> {
    let layout = tree.get(LAYOUT).map_err(sled_error)?.map(|v| v.to_vec());
    match layout.as_deref() {
        Some([CURRENT_LAYOUT]) => Ok(()),
        Some(other) => Err(StorageError::Corrupt {
            key: "s/layout".into(),
            message: format!(
                "layout {other:?} is not one this host reads (it writes {CURRENT_LAYOUT})"
            ),
        }),
        None if tree.get(SEQ).map_err(sled_error)?.is_none() && tree.is_empty() => {
            // A new store.
            tree.insert(LAYOUT, &[CURRENT_LAYOUT]).map_err(sled_error)?;
            Ok(())
        }
        None => from_layout_1(tree),
    }
}

fn from_layout_1(tree: &::sled::Tree) -> Result<(), StorageError> {
    let mut batch = ::sled::Batch::default();
    let mut counters = Counters::default();
    // Outbox records in sequence order: the first of a key at a sink heads its chain.
    let mut heads = BTreeSet::new();
    for item in tree.scan_prefix(b"o\0") {
        let (k, v) = item.map_err(sled_error)?;
        let record: LegacyOutboxRecord = decode(&k, &v)?;
        let event = record.event;
        let key = event.partition_key.clone();
        for (sink, delivery) in &record.pending {
            batch.insert(delivery_key(sink, &key, record.seq), encode(delivery));
            *counters.sinks.entry(sink.clone()).or_default() += 1;
            if heads.insert((sink.clone(), key.clone())) {
                let due = delivery.next_at.unwrap_or(event.time);
                batch.insert(head_key(sink, &key), &instant(due));
                batch.insert(schedule_key(sink, due, &key), &[]);
            }
        }
        counters.outbox += 1;
        let sinks = record.pending.into_keys().collect();
        batch.insert(
            &event_key(record.seq),
            encode(&EventRecord {
                event: Some(event),
                sinks,
                kept_at: None,
            }),
        );
    }
    for item in tree.scan_prefix(b"p\0") {
        let (k, v) = item.map_err(sled_error)?;
        let published: LegacyPublished = decode(&k, &v)?;
        batch.remove(k);
        batch.insert(
            published_key(published.at, published.record.seq),
            encode(&Published {
                at: published.at,
                event: Some(published.record.event),
                kept_at: None,
            }),
        );
    }
    for item in tree.scan_prefix(b"i\0") {
        let (k, v) = item.map_err(sled_error)?;
        match decode::<IdempotencyEntry>(&k, &v)? {
            IdempotencyEntry::InFlight {} => batch.remove(k),
            IdempotencyEntry::Done(completed) => {
                let rest = &k[2..];
                let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                let route = String::from_utf8_lossy(&rest[..split]);
                let key = String::from_utf8_lossy(rest.get(split + 1..).unwrap_or_default());
                batch.insert(expiry_key(completed.expires_at, &route, &key), &[]);
            }
        }
    }
    counters.dead_letters = tree.scan_prefix(b"q\0").count() as u64;
    batch.insert(COUNTERS, encode(&counters));
    batch.insert(LAYOUT, &[CURRENT_LAYOUT]);
    tree.apply_batch(batch).map_err(sled_error)?;
    tree.flush().map_err(sled_error)?;
    tracing::info!(
        outbox = counters.outbox,
        dead_letters = counters.dead_letters,
        "moved the store to layout {CURRENT_LAYOUT}"
    );
    Ok(())
}

/// Counts dead letters per route, and indexes them by route, in a store written before hosts
/// did (once: the counters then say so).
pub(super) fn count_routes(
    tree: &::sled::Tree,
    mut counters: Counters,
) -> Result<Counters, StorageError> {
    if counters.routes_counted {
        return Ok(counters);
    }
    let mut batch = ::sled::Batch::default();
    let dead_letters = counters.dead_letters;
    counters.dead_letters = 0;
    counters.routes.clear();
    for item in tree.scan_prefix(b"q\0") {
        let (k, v) = item.map_err(sled_error)?;
        let entry: crate::storage::DeadLetter = decode(&k, &v)?;
        batch.insert(route_dead_letter_key(&entry.route, &entry.id), &[]);
        counters.dead_letter(&entry, true);
    }
    if counters.dead_letters != dead_letters {
        tracing::warn!(
            counted = counters.dead_letters,
            kept = dead_letters,
            "the dead letter counter did not match the entries; counted again"
        );
    }
    counters.routes_counted = true;
    batch.insert(COUNTERS, encode(&counters));
    tree.apply_batch(batch).map_err(sled_error)?;
    Ok(counters)
}
