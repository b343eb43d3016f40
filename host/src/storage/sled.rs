//! `Db`, the embedded [`Storage`] on sled: the only module that uses sled. Keys and the
//! record encoding are in `codec.rs`.
//!
//! Everything lives in one tree, by key prefix, so that one `apply_batch` is one atomic
//! write: `i` idempotency entries, `m` messages, `o` pending outbox records and `p` published
//! ones (by sequence number), `q` dead letters, `a` audit events (by message and version),
//! `s` the sequence counter. Writes that read first (claims, commits, delivery records) run
//! under one mutex, so a batch is never based on a stale read; a sequence number is taken and
//! written in the same critical section, so sequence order is commit order.
//!
//! Durability: commits are flushed by one flusher thread that serves every waiter with one
//! `flush` (group commit). The relay reads only records at or below the flushed sequence.
//! sled flushes with `sync_file_range`, which survives a process crash but does not flush
//! the disk's cache: for power-loss durability, use a backend that fsyncs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::codec::{
    audit_key, audit_prefix, dead_letter_key, decode, encode, idempotency_key, message_key,
    outbox_key,
};
use crate::audit;
use crate::storage::{
    AuditDraft, AuditEvent, Claim, ClaimToken, Commit, Completed, DeadLetter, DeadLetterKind,
    Delivery, DeliveryOutcome, Depths, Durable, MessageRecord, OutboxRecord, Storage, StorageError,
};

/// The embedded store.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: ::sled::Db,
    tree: ::sled::Tree,
    /// This process's id: a claim left by another process is stale.
    boot: u64,
    write: Mutex<WriteState>,
    flush: Arc<Flusher>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// Stops the flush thread so that the sled files are released when the last handle goes.
    fn drop(&mut self) {
        self.flush.stop.store(true, Ordering::SeqCst);
        {
            let mut wake = self
                .flush
                .wake
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *wake = true;
            self.flush.signal.notify_one();
        }
        let thread = self
            .flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
struct WriteState {
    next_seq: u64,
}

#[derive(Debug)]
struct Flusher {
    /// Bumped by every commit.
    committed: AtomicU64,
    /// The highest outbox sequence number committed.
    committed_seq: AtomicU64,
    /// The highest outbox sequence number known durable.
    durable_seq: AtomicU64,
    wake: Mutex<bool>,
    signal: Condvar,
    /// Set when the store is dropped.
    stop: std::sync::atomic::AtomicBool,
    done: watch::Sender<Result<u64, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum IdempotencyEntry {
    InFlight {
        token: u64,
        boot: u64,
        until: Timestamp,
    },
    Done(Completed),
}

#[derive(Debug, Serialize, Deserialize)]
struct Published {
    at: Timestamp,
    record: OutboxRecord,
}

impl Db {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when sled cannot open the directory (another holder keeps
    /// its lock for longer than a few seconds, or its files are damaged), and
    /// [`StorageError::Corrupt`] when the sequence counter cannot be read.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        let db = open_sled(dir)?;
        let tree = db.open_tree("pipeline").map_err(sled_error)?;
        let next_seq = match tree.get(b"s\0seq").map_err(sled_error)? {
            Some(bytes) => {
                let bytes: [u8; 8] =
                    bytes
                        .as_ref()
                        .try_into()
                        .map_err(|_| StorageError::Corrupt {
                            key: "s/seq".into(),
                            message: format!("{} bytes, expected 8", bytes.len()),
                        })?;
                u64::from_be_bytes(bytes)
            }
            None => 1,
        };
        let (done, _) = watch::channel(Ok(0));
        let flush = Arc::new(Flusher {
            committed: AtomicU64::new(0),
            committed_seq: AtomicU64::new(next_seq - 1),
            durable_seq: AtomicU64::new(next_seq - 1),
            wake: Mutex::new(false),
            signal: Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
            done,
        });
        let flusher_db = db.clone();
        let flusher = Arc::downgrade(&flush);
        let thread = std::thread::Builder::new()
            .name("dragoman-flush".into())
            .spawn(move || run_flusher(&flusher_db, &flusher))
            .map_err(|e| backend(format!("cannot start the flush thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                tree,
                boot: rand::random(),
                write: Mutex::new(WriteState { next_seq }),
                flush,
                flusher: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Flushes everything to disk now.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the flush fails.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.db.flush().map(drop).map_err(sled_error)
    }

    fn lock(&self) -> MutexGuard<'_, WriteState> {
        // The state is a counter that is only advanced after a successful write.
        self.inner
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        self.inner
            .tree
            .get(key)
            .map_err(sled_error)?
            .map(|v| decode(key, &v))
            .transpose()
    }

    fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(::sled::IVec, T), StorageError>> + '_ {
        self.inner.tree.scan_prefix(prefix).map(|item| {
            let (k, v) = item.map_err(sled_error)?;
            let value = decode(&k, &v)?;
            Ok((k, value))
        })
    }

    /// Seals audit drafts onto their streams, in `batch`.
    fn append_audit(
        &self,
        batch: &mut ::sled::Batch,
        drafts: Vec<AuditDraft>,
    ) -> Result<(), StorageError> {
        let mut heads: BTreeMap<String, Option<AuditEvent>> = BTreeMap::new();
        for draft in drafts {
            if !heads.contains_key(&draft.message_id) {
                let last = self
                    .inner
                    .tree
                    .scan_prefix(audit_prefix(&draft.message_id))
                    .next_back()
                    .transpose()
                    .map_err(sled_error)?
                    .map(|(k, v)| decode::<AuditEvent>(&k, &v))
                    .transpose()?;
                heads.insert(draft.message_id.clone(), last);
            }
            let head = heads.get_mut(&draft.message_id).expect("inserted above");
            let event = audit::seal(head.as_ref(), draft);
            batch.insert(audit_key(&event.message_id, event.version), encode(&event));
            *head = Some(event);
        }
        Ok(())
    }

    fn apply(&self, batch: ::sled::Batch) -> Result<(), StorageError> {
        self.inner.tree.apply_batch(batch).map_err(sled_error)
    }
}

impl Storage for Db {
    fn claim(
        &self,
        route: &str,
        key: &str,
        now: Timestamp,
        in_flight_timeout: Duration,
    ) -> Result<Claim, StorageError> {
        let k = idempotency_key(route, key);
        let _guard = self.lock();
        match self.get::<IdempotencyEntry>(&k)? {
            Some(IdempotencyEntry::Done(completed)) if completed.expires_at > now => {
                return Ok(Claim::Done(completed));
            }
            Some(IdempotencyEntry::InFlight { boot, until, .. })
                if boot == self.inner.boot && until > now =>
            {
                return Ok(Claim::InFlight);
            }
            _ => {}
        }
        let token = rand::random();
        let until = now.checked_add(in_flight_timeout).unwrap_or(Timestamp::MAX);
        let entry = IdempotencyEntry::InFlight {
            token,
            boot: self.inner.boot,
            until,
        };
        self.inner
            .tree
            .insert(k, encode(&entry))
            .map_err(sled_error)?;
        Ok(Claim::Fresh(ClaimToken {
            route: route.into(),
            key: key.into(),
            token,
        }))
    }

    fn release(&self, claim: &ClaimToken) -> Result<(), StorageError> {
        let k = idempotency_key(&claim.route, &claim.key);
        let _guard = self.lock();
        if let Some(IdempotencyEntry::InFlight { token, .. }) = self.get::<IdempotencyEntry>(&k)?
            && token == claim.token
        {
            self.inner.tree.remove(k).map_err(sled_error)?;
        }
        Ok(())
    }

    fn commit(&self, commit: Commit) -> Result<(), StorageError> {
        let mut guard = self.lock();
        let idem = idempotency_key(&commit.message.route, &commit.message.key);
        if let Some(claim) = &commit.claim {
            match self.get::<IdempotencyEntry>(&idem)? {
                Some(IdempotencyEntry::InFlight { token, .. }) if token == claim.token => {}
                _ => {
                    return Err(StorageError::ClaimLost {
                        key: claim.key.clone(),
                    });
                }
            }
        }
        let mut batch = ::sled::Batch::default();
        batch.insert(idem, encode(&IdempotencyEntry::Done(commit.completed)));
        batch.insert(message_key(&commit.message.id), encode(&commit.message));
        let mut seq = guard.next_seq;
        for (event, sinks) in commit.events {
            let pending: BTreeMap<String, Delivery> = sinks
                .into_iter()
                .map(|s| (s, Delivery::default()))
                .collect();
            let record = OutboxRecord {
                seq,
                event,
                pending,
            };
            if record.pending.is_empty() {
                // A route without sinks: the event is published as it is committed.
                let at = record.event.time;
                batch.insert(
                    outbox_key(b'p', seq).to_vec(),
                    encode(&Published { at, record }),
                );
            } else {
                batch.insert(outbox_key(b'o', seq).to_vec(), encode(&record));
            }
            seq += 1;
        }
        batch.insert(b"s\0seq".to_vec(), seq.to_be_bytes().to_vec());
        if let Some(entry) = &commit.dead_letter {
            batch.insert(dead_letter_key(&entry.id), encode(entry));
        }
        if let Some(id) = &commit.resolves {
            batch.remove(dead_letter_key(id));
        }
        self.append_audit(&mut batch, commit.audit)?;
        self.apply(batch)?;
        guard.next_seq = seq;
        self.inner
            .flush
            .committed_seq
            .store(seq - 1, Ordering::SeqCst);
        self.inner.flush.committed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn append(&self, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        let _guard = self.lock();
        let mut batch = ::sled::Batch::default();
        self.append_audit(&mut batch, audit)?;
        self.apply(batch)
    }

    fn durable(&self) -> Durable {
        let flush = self.inner.flush.clone();
        let target = flush.committed.load(Ordering::SeqCst);
        let mut done = flush.done.subscribe();
        Box::pin(async move {
            if target == 0 {
                return Ok(());
            }
            {
                let mut wake = flush
                    .wake
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *wake = true;
                flush.signal.notify_one();
            }
            loop {
                match &*done.borrow_and_update() {
                    Ok(flushed) if *flushed >= target => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(backend(e.clone())),
                }
                done.changed()
                    .await
                    .map_err(|_| backend("the flush thread stopped".into()))?;
            }
        })
    }

    fn pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        let durable = self.inner.flush.durable_seq.load(Ordering::SeqCst);
        let mut out = Vec::new();
        for item in self.scan::<OutboxRecord>(b"o\0") {
            let (_, record) = item?;
            if record.seq > durable || out.len() >= limit {
                break;
            }
            out.push(record);
        }
        Ok(out)
    }

    fn record_delivery(
        &self,
        seq: u64,
        sink: &str,
        outcome: DeliveryOutcome,
        audit: Vec<AuditDraft>,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let _guard = self.lock();
        let key = outbox_key(b'o', seq);
        let Some(mut record) = self.get::<OutboxRecord>(&key)? else {
            return Err(StorageError::NotFound {
                what: "outbox record",
                id: seq.to_string(),
            });
        };
        let mut batch = ::sled::Batch::default();
        match outcome {
            DeliveryOutcome::Delivered => {
                record.pending.remove(sink);
            }
            DeliveryOutcome::Failed { error, next_at } => {
                let delivery = record.pending.entry(sink.to_owned()).or_default();
                delivery.attempts += 1;
                delivery.next_at = Some(next_at);
                delivery.last_error = Some(error);
            }
            DeliveryOutcome::DeadLettered(entry) => {
                record.pending.remove(sink);
                batch.insert(dead_letter_key(&entry.id), encode(&entry));
            }
        }
        if record.pending.is_empty() {
            batch.remove(key.to_vec());
            batch.insert(
                outbox_key(b'p', seq).to_vec(),
                encode(&Published { at: now, record }),
            );
        } else {
            batch.insert(key.to_vec(), encode(&record));
        }
        self.append_audit(&mut batch, audit)?;
        self.apply(batch)
    }

    fn requeue(&self, dead_letter: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        let mut guard = self.lock();
        let Some(entry) = self.get::<DeadLetter>(&dead_letter_key(dead_letter))? else {
            return Err(StorageError::NotFound {
                what: "dead letter",
                id: dead_letter.into(),
            });
        };
        let DeadLetterKind::Delivery { sink, event } = entry.kind else {
            return Err(StorageError::NotFound {
                what: "delivery dead letter",
                id: dead_letter.into(),
            });
        };
        let seq = guard.next_seq;
        let record = OutboxRecord {
            seq,
            event: *event,
            pending: BTreeMap::from([(sink, Delivery::default())]),
        };
        let mut batch = ::sled::Batch::default();
        batch.insert(outbox_key(b'o', seq).to_vec(), encode(&record));
        batch.insert(b"s\0seq".to_vec(), (seq + 1).to_be_bytes().to_vec());
        batch.remove(dead_letter_key(dead_letter));
        self.append_audit(&mut batch, audit)?;
        self.apply(batch)?;
        guard.next_seq = seq + 1;
        self.inner.flush.committed_seq.store(seq, Ordering::SeqCst);
        self.inner.flush.committed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StorageError> {
        self.scan::<DeadLetter>(b"q\0")
            .map(|item| item.map(|(_, v)| v))
            .collect()
    }

    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StorageError> {
        self.get(&dead_letter_key(id))
    }

    fn update_dead_letter(
        &self,
        entry: DeadLetter,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StorageError> {
        let _guard = self.lock();
        let key = dead_letter_key(&entry.id);
        if self.inner.tree.get(&key).map_err(sled_error)?.is_none() {
            return Err(StorageError::NotFound {
                what: "dead letter",
                id: entry.id,
            });
        }
        let mut batch = ::sled::Batch::default();
        batch.insert(key, encode(&entry));
        self.append_audit(&mut batch, audit)?;
        self.apply(batch)
    }

    fn discard_dead_letter(&self, id: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        let _guard = self.lock();
        let key = dead_letter_key(id);
        if self.inner.tree.get(&key).map_err(sled_error)?.is_none() {
            return Err(StorageError::NotFound {
                what: "dead letter",
                id: id.into(),
            });
        }
        let mut batch = ::sled::Batch::default();
        batch.remove(key);
        self.append_audit(&mut batch, audit)?;
        self.apply(batch)
    }

    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StorageError> {
        self.get(&message_key(id))
    }

    fn history(&self, message_id: &str) -> Result<Vec<AuditEvent>, StorageError> {
        self.scan::<AuditEvent>(&audit_prefix(message_id))
            .map(|item| item.map(|(_, v)| v))
            .collect()
    }

    fn audit_streams(&self) -> Result<BTreeMap<String, Vec<AuditEvent>>, StorageError> {
        let mut streams: BTreeMap<String, Vec<AuditEvent>> = BTreeMap::new();
        for item in self.inner.tree.scan_prefix(b"a\0") {
            let (k, v) = item.map_err(sled_error)?;
            // The stream is named by the key, so an event moved between streams is caught.
            let id = k[2..].split(|b| *b == 0).next().unwrap_or_default();
            let id = String::from_utf8_lossy(id).into_owned();
            let event = decode::<AuditEvent>(&k, &v)?;
            streams.entry(id).or_default().push(event);
        }
        Ok(streams)
    }

    fn sweep(&self, now: Timestamp, published_before: Timestamp) -> Result<u64, StorageError> {
        let mut removed = 0;
        let _guard = self.lock();
        let mut batch = ::sled::Batch::default();
        for item in self.scan::<IdempotencyEntry>(b"i\0") {
            let (k, entry) = item?;
            let expired = match entry {
                IdempotencyEntry::Done(completed) => completed.expires_at <= now,
                IdempotencyEntry::InFlight { until, boot, .. } => {
                    until <= now || boot != self.inner.boot
                }
            };
            if expired {
                batch.remove(k);
                removed += 1;
            }
        }
        for item in self.scan::<Published>(b"p\0") {
            let (k, published) = item?;
            if published.at <= published_before {
                batch.remove(k);
                removed += 1;
            }
        }
        self.apply(batch)?;
        Ok(removed)
    }

    fn depths(&self) -> Result<Depths, StorageError> {
        let mut depths = Depths::default();
        for item in self.scan::<OutboxRecord>(b"o\0") {
            let (_, record) = item?;
            depths.outbox += 1;
            depths.oldest = Some(
                depths
                    .oldest
                    .map_or(record.event.time, |t: Timestamp| t.min(record.event.time)),
            );
        }
        depths.dead_letters = self.inner.tree.scan_prefix(b"q\0").count() as u64;
        Ok(depths)
    }
}

fn run_flusher(db: &::sled::Db, flusher: &std::sync::Weak<Flusher>) {
    loop {
        let Some(f) = flusher.upgrade() else { return };
        {
            let mut wake = f
                .wake
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while !*wake {
                wake = f
                    .signal
                    .wait(wake)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            *wake = false;
        }
        if f.stop.load(Ordering::SeqCst) {
            // The store is being dropped: one last flush, then go.
            let _ = db.flush();
            return;
        }
        let generation = f.committed.load(Ordering::SeqCst);
        let seq = f.committed_seq.load(Ordering::SeqCst);
        let result = db.flush().map(|_| generation).map_err(|e| e.to_string());
        if result.is_ok() {
            f.durable_seq.fetch_max(seq, Ordering::SeqCst);
        }
        drop(f.done.send_replace(result));
    }
}

fn sled_error(e: ::sled::Error) -> StorageError {
    backend(e.to_string())
}

/// How long `open` waits for the data dir's lock. sled releases the lock when the last of its
/// handles goes, and its background threads hold handles for a moment after a store in this
/// process is dropped; a restart in the same process waits that moment out. Another process
/// holding the lock is reported when the wait runs out.
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn open_sled(dir: &Path) -> Result<::sled::Db, StorageError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let opened =
            std::panic::catch_unwind(|| ::sled::Config::new().path(dir).open()).map_err(|_| {
                backend(format!(
                    "the store in {} is damaged and cannot be opened",
                    dir.display()
                ))
            })?;
        match opened {
            Ok(db) => return Ok(db),
            Err(::sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if Instant::now() >= deadline {
                    return Err(backend(format!(
                        "the store in {} is in use: another process (or a store in this \
                         process that is still open) holds its lock",
                        dir.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(backend(format!(
                    "cannot open the store in {}: {e}",
                    dir.display()
                )));
            }
        }
    }
}

fn backend(message: String) -> StorageError {
    StorageError::Backend(message)
}
