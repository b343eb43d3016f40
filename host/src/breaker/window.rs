//! The rolling window a breaker judges by: the last N calls, or the calls of the last N
//! seconds. Lock-free: recording a call is a few atomic operations, whatever the window's
//! size (the count window subtracts the call it evicts, the time window the bucket it
//! reuses), so that many threads share one breaker without waiting on each other.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// What the window holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Calls in the window.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Of which were slow.
    pub slow: u64,
}

#[derive(Debug)]
pub(super) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(super) fn count(size: u32) -> Self {
        Self::Count(CountWindow::new(size))
    }

    pub(super) fn time(length: Duration, buckets: u32) -> Self {
        Self::Time(TimeWindow::new(length, buckets))
    }

    /// Records one call at `now_micros` (only the time window reads it).
    pub(super) fn record(&self, failed: bool, slow: bool, now_micros: i64) {
        match self {
            Self::Count(window) => window.record(failed, slow),
            Self::Time(window) => window.record(failed, slow, now_micros),
        }
    }

    pub(super) fn snapshot(&self, now_micros: i64) -> Snapshot {
        match self {
            Self::Count(window) => window.snapshot(),
            Self::Time(window) => window.snapshot(now_micros),
        }
    }

    pub(super) fn reset(&self) {
        match self {
            Self::Count(window) => window.reset(),
            Self::Time(window) => window.reset(),
        }
    }

    pub(super) fn needs_time(&self) -> bool {
        matches!(self, Self::Time(_))
    }
}

const RECORDED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

/// The last `size` calls: a ring of outcomes and running totals.
#[derive(Debug)]
pub(super) struct CountWindow {
    ring: Box<[AtomicU8]>,
    next: AtomicU64,
    failures: AtomicI64,
    slow: AtomicI64,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        Self {
            ring: (0..size.max(1)).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicU64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
        }
    }

    fn record(&self, failed: bool, slow: bool) {
        let code = RECORDED | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.ring.len() as u64;
        #[expect(clippy::cast_possible_truncation, reason = "an index into the ring")]
        let old = self.ring[slot as usize].swap(code, Ordering::Relaxed);
        let delta = |bit: u8| i64::from(code & bit != 0) - i64::from(old & bit != 0);
        if delta(FAILED) != 0 {
            self.failures.fetch_add(delta(FAILED), Ordering::Relaxed);
        }
        if delta(SLOW) != 0 {
            self.slow.fetch_add(delta(SLOW), Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> Snapshot {
        let count = |n: &AtomicI64| u64::try_from(n.load(Ordering::Relaxed)).unwrap_or(0);
        Snapshot {
            calls: self
                .next
                .load(Ordering::Relaxed)
                .min(self.ring.len() as u64),
            failures: count(&self.failures),
            slow: count(&self.slow),
        }
    }

    fn reset(&self) {
        for slot in &*self.ring {
            slot.store(0, Ordering::Relaxed);
        }
        self.next.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
    }
}

/// The calls of the last `length`, in buckets; a bucket is cleared when its time comes round
/// again, and its counts taken off the totals then.
#[derive(Debug)]
pub(super) struct TimeWindow {
    bucket_micros: i64,
    buckets: Box<[Bucket]>,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Which bucket length since the epoch it counts.
    epoch: AtomicI64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl TimeWindow {
    fn new(length: Duration, buckets: u32) -> Self {
        let buckets = buckets.max(1);
        let micros = i64::try_from(length.as_micros()).unwrap_or(i64::MAX);
        Self {
            bucket_micros: (micros / i64::from(buckets)).max(1),
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
        }
    }

    fn bucket(&self, epoch: i64) -> &Bucket {
        #[expect(clippy::cast_possible_truncation, reason = "an index")]
        let index = epoch.rem_euclid(self.buckets.len() as i64) as usize;
        &self.buckets[index]
    }

    fn record(&self, failed: bool, slow: bool, now_micros: i64) {
        let epoch = now_micros.div_euclid(self.bucket_micros);
        let bucket = self.bucket(epoch);
        let seen = bucket.epoch.load(Ordering::Relaxed);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
        bucket.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            bucket.failures.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            bucket.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sum of the buckets still in the window: read only when a call failed or was slow
    /// (a success cannot open a breaker), so its cost in buckets is paid only then.
    fn snapshot(&self, now_micros: i64) -> Snapshot {
        let epoch = now_micros.div_euclid(self.bucket_micros);
        let oldest = epoch - self.buckets.len() as i64 + 1;
        let mut snapshot = Snapshot::default();
        for bucket in &*self.buckets {
            let at = bucket.epoch.load(Ordering::Relaxed);
            if (oldest..=epoch).contains(&at) {
                snapshot.calls += bucket.calls.load(Ordering::Relaxed);
                snapshot.failures += bucket.failures.load(Ordering::Relaxed);
                snapshot.slow += bucket.slow.load(Ordering::Relaxed);
            }
        }
        snapshot
    }

    fn reset(&self) {
        for bucket in &*self.buckets {
            bucket.epoch.store(i64::MIN, Ordering::Relaxed);
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
    }
}
