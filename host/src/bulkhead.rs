//! A route's bulkhead: its own bound on the translations it runs at once and on the messages
//! that wait for one, so that a route whose plugin runs to its deadline takes no other
//! route's capacity (its backlog waits in its own queue, never in the host's), and a route
//! past its bound answers at once instead of queueing without end.

use std::sync::Arc;

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
}

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
        }
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
    use super::{Bulkhead, Full, fair_share};

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
