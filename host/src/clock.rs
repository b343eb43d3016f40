//! The host's clock, injectable so that tests control expiry, retention and backoff.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

/// Where the host reads the time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to. Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock that reads `start`.
    pub fn new(start: Timestamp) -> Self {
        let nanos =
            i64::try_from(start.as_nanosecond()).expect("a time within the i64 nanosecond range");
        Self {
            nanos: Arc::new(AtomicI64::new(nanos)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).expect("a step within the i64 nanosecond range");
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanosecond(i128::from(self.nanos.load(Ordering::SeqCst)))
            .expect("the clock stays in range")
    }
}

/// A task's beat: the first beat comes one `interval` after the start, later ones an interval
/// after the last (a beat missed while the task worked is not made up).
#[derive(Debug)]
pub(crate) struct Beat(tokio::time::Interval);

impl Beat {
    pub(crate) async fn new(interval: std::time::Duration) -> Self {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate.
        ticks.tick().await;
        Self(ticks)
    }

    /// Waits for the next beat: `false` once `cancel` is cancelled.
    pub(crate) async fn next(&mut self, cancel: &tokio_util::sync::CancellationToken) -> bool {
        tokio::select! {
            () = cancel.cancelled() => false,
            _ = self.0.tick() => true,
        }
    }
}
