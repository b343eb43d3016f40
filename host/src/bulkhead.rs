//! A route's bulkhead: its own bound on the translations it runs at once and on the messages
//! that wait for one, so that a route whose plugin runs to its deadline takes no other
//! route's capacity (its backlog waits in its own queue, never in the host's), and a route
//! past its bound answers at once instead of queueing without end.
//!
//! A bound on places does not bound CPU: on a machine with few cores, a route whose plugin
//! spins to its deadline keeps a core busy at the same priority as everything else. So a
//! route whose last message took longer than [`SLOW`] runs its next ones in the slow lane:
//! each on a thread of its own at a lower scheduling priority (nice [`SLOW_NICE`]), which ends
//! with the message, so no thread of the shared pool is ever lowered (an unprivileged process
//! could not raise it back). A message under [`SLOW`] takes the route back to the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One route's bound. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Bulkhead {
    /// Translations running.
    running: Arc<Semaphore>,
    /// Translations running and messages waiting for one.
    admitted: Arc<Semaphore>,
    max_concurrency: usize,
    max_waiting: usize,
    /// Whether its last message took longer than [`SLOW`].
    slow: Arc<AtomicBool>,
}

/// A message that takes longer than this puts its route in the slow lane.
pub(crate) const SLOW: Duration = Duration::from_millis(200);

/// The nice value of a slow lane's thread: a tenth of a normal thread's share of a busy core.
pub(crate) const SLOW_NICE: i32 = 10;

/// A message's place in its route's bulkhead, running: given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    _running: OwnedSemaphorePermit,
    _admitted: OwnedSemaphorePermit,
}

/// The route runs and has waiting as many as its bound lets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl Bulkhead {
    /// At most `max_concurrency` translations at once (at least 1), and `max_waiting` more
    /// messages waiting for one.
    pub(crate) fn new(max_concurrency: usize, max_waiting: usize) -> Self {
        let max_concurrency = max_concurrency.max(1);
        Self {
            running: Arc::new(Semaphore::new(max_concurrency)),
            admitted: Arc::new(Semaphore::new(max_concurrency.saturating_add(max_waiting))),
            max_concurrency,
            max_waiting,
            slow: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the route's messages run in the slow lane now.
    pub(crate) fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }

    /// Notes how long one of its messages took: longer than [`SLOW`] puts the route in the
    /// slow lane, shorter takes it out.
    pub(crate) fn took(&self, elapsed: Duration) {
        self.slow.store(elapsed > SLOW, Ordering::Relaxed);
    }

    /// Translations it runs at once at most, and messages that may wait for one.
    pub(crate) fn bounds(&self) -> (usize, usize) {
        (self.max_concurrency, self.max_waiting)
    }

    /// A place to run: refused at once when the route has as many running and waiting as
    /// its bound lets, else once one of its translations is free (in arrival order).
    pub(crate) async fn enter(&self) -> Result<Permit, Full> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full)?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Full)?;
        Ok(Permit {
            _running: running,
            _admitted: admitted,
        })
    }
}

/// Runs `work` in the slow lane: on a new thread that lowers its own scheduling priority
/// first, and ends with it. `None` when no thread could be started.
pub(crate) async fn slow_lane<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let (done, answer) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("dragoman-slow".into())
        .spawn(move || {
            lower_own_priority();
            let _ = done.send(work());
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "a slow lane thread could not start");
        return None;
    }
    answer
        .await
        .map_err(|_| tracing::error!("a slow lane thread ended without an answer"))
        .ok()
}

/// Lowers the calling thread's scheduling priority to [`SLOW_NICE`] (on Linux a thread's
/// nice value is its own); elsewhere, or when refused, it runs as it is.
#[expect(unsafe_code, reason = "two libc calls on the calling thread's own id")]
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority takes plain integers and only
        // changes this thread's nice value.
        let changed = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid.cast_unsigned(), SLOW_NICE)
        };
        if changed != 0 {
            tracing::debug!("the slow lane thread keeps its priority");
        }
    }
}

/// A route's share of `workers` when the config sets none: the workers split evenly between
/// `routes` routes, at least one each, and, when there are other routes, never more than all
/// `cores` but one: a route whose plugin spins until its deadline on every translation it
/// runs then leaves a core to the others. Bounds that add up to at most the workers never
/// wait for each other.
pub(crate) fn fair_share(workers: usize, cores: usize, routes: usize) -> usize {
    let even = workers / routes.max(1);
    let share = if routes > 1 {
        even.min(cores.saturating_sub(1))
    } else {
        even
    };
    share.max(1)
}

#[cfg(test)]
mod tests {
    use super::{Bulkhead, Full, SLOW, SLOW_NICE, fair_share, slow_lane};

    #[tokio::test]
    async fn a_route_past_running_and_waiting_is_refused_at_once_and_a_freed_place_is_taken() {
        let bulkhead = Bulkhead::new(2, 1);
        let a = bulkhead.enter().await.unwrap();
        let b = bulkhead.enter().await.unwrap();
        // The third waits for a running place; the fourth finds no place at all.
        let waiting = tokio::spawn({
            let bulkhead = bulkhead.clone();
            async move { bulkhead.enter().await.map(|_| ()) }
        });
        for _ in 0..10_000 {
            if bulkhead.admitted.available_permits() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(bulkhead.admitted.available_permits(), 0, "the third waits");
        assert_eq!(bulkhead.enter().await.unwrap_err(), Full);
        assert!(!waiting.is_finished());
        drop(a);
        waiting.await.unwrap().unwrap();
        drop(b);
        assert!(bulkhead.enter().await.is_ok());
    }

    /// The calling thread's nice value, from the kernel (field 19 of its stat line).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn a_route_that_ran_long_runs_its_next_message_on_a_lowered_thread_of_its_own() {
        let bulkhead = Bulkhead::new(1, 0);
        assert!(!bulkhead.is_slow());
        bulkhead.took(SLOW + std::time::Duration::from_millis(1));
        assert!(bulkhead.is_slow());
        let here = own_nice();
        let (nice, name) =
            slow_lane(|| (own_nice(), std::thread::current().name().map(str::to_owned)))
                .await
                .unwrap();
        assert_eq!(nice, SLOW_NICE.max(here), "the slow lane runs lowered");
        assert_eq!(name.as_deref(), Some("dragoman-slow"));
        assert_eq!(own_nice(), here, "the caller's thread is untouched");
        bulkhead.took(std::time::Duration::from_millis(5));
        assert!(!bulkhead.is_slow(), "a quick message takes the route back");
    }

    #[test]
    fn the_fair_share_splits_the_workers_leaves_a_core_to_the_others_and_none_without() {
        // Two cores, four workers.
        assert_eq!(fair_share(4, 2, 1), 4, "one route has every worker");
        assert_eq!(fair_share(4, 2, 2), 1, "a core left to the other route");
        assert_eq!(fair_share(4, 2, 9), 1, "at least one");
        assert_eq!(fair_share(4, 2, 0), 4);
        // Eight cores, sixteen workers.
        assert_eq!(fair_share(16, 8, 2), 7);
        assert_eq!(fair_share(16, 8, 4), 4);
        assert_eq!(fair_share(16, 1, 2), 1, "one core: still one each");
    }
}
