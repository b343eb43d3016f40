//! Flushes shared: one thread flushes sled for every waiter at once. A commit bumps a
//! generation; [`Storage::durable`](crate::storage::Storage::durable) waits until a flush
//! started after its commit has finished. The relay reads only events at or below the
//! highest sequence number known durable, so it never publishes what a crash could undo.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use tokio::sync::watch;

use crate::storage::{Durable, StorageError};

#[derive(Debug)]
pub(super) struct Flusher {
    /// Bumped by every commit.
    committed: AtomicU64,
    /// The highest outbox sequence number committed.
    committed_seq: AtomicU64,
    /// The highest outbox sequence number known durable.
    durable_seq: AtomicU64,
    wake: Mutex<bool>,
    signal: Condvar,
    /// Set when the store is dropped.
    stop: AtomicBool,
    done: watch::Sender<Result<u64, String>>,
}

impl Flusher {
    /// A flusher for a store whose last sequence number is `last_seq`, with its thread.
    pub(super) fn start(
        db: ::sled::Db,
        last_seq: u64,
    ) -> std::io::Result<(Arc<Self>, std::thread::JoinHandle<()>)> {
        let (done, _) = watch::channel(Ok(0));
        let flush = Arc::new(Self {
            committed: AtomicU64::new(0),
            committed_seq: AtomicU64::new(last_seq),
            durable_seq: AtomicU64::new(last_seq),
            wake: Mutex::new(false),
            signal: Condvar::new(),
            stop: AtomicBool::new(false),
            done,
        });
        let weak = Arc::downgrade(&flush);
        let thread = std::thread::Builder::new()
            .name("dragoman-flush".into())
            .spawn(move || run(&db, &weak))?;
        Ok((flush, thread))
    }

    /// Notes a commit whose last outbox sequence number is `seq`.
    pub(super) fn committed(&self, seq: u64) {
        self.committed_seq.fetch_max(seq, Ordering::SeqCst);
        self.committed.fetch_add(1, Ordering::SeqCst);
    }

    /// The highest sequence number known durable.
    pub(super) fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::SeqCst)
    }

    /// Resolves once everything committed before the call is durable.
    pub(super) fn durable(self: &Arc<Self>) -> Durable {
        let flush = self.clone();
        let target = flush.committed.load(Ordering::SeqCst);
        let mut done = flush.done.subscribe();
        Box::pin(async move {
            if target == 0 {
                return Ok(());
            }
            flush.wake();
            loop {
                match &*done.borrow_and_update() {
                    Ok(flushed) if *flushed >= target => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(StorageError::Backend(e.clone())),
                }
                done.changed()
                    .await
                    .map_err(|_| StorageError::Backend("the flush thread stopped".into()))?;
            }
        })
    }

    /// Stops the thread after one last flush.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let mut wake = self
            .wake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *wake = true;
        self.signal.notify_one();
    }
}

fn run(db: &::sled::Db, flusher: &Weak<Flusher>) {
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
