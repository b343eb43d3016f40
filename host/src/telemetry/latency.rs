//! A route's ingest latencies in doubling buckets, counted with one relaxed atomic add per
//! message: what the console reads for a route's p99 over an interval (two reads of the
//! counts, subtracted), with no lock on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets: the first holds up to [`FIRST`], each next one up to twice the one before; the
/// last holds everything longer.
pub(crate) const BUCKETS: usize = 24;
/// The first bucket's upper bound.
const FIRST: Duration = Duration::from_micros(100);

/// The counts of one route.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    counts: [AtomicU64; BUCKETS],
}

impl Latency {
    /// Counts one message that took `took`.
    pub(crate) fn observe(&self, took: Duration) {
        self.counts[bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub(crate) fn counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

/// The bucket `took` falls in.
fn bucket(took: Duration) -> usize {
    let mut bound = FIRST;
    for i in 0..BUCKETS - 1 {
        if took <= bound {
            return i;
        }
        bound *= 2;
    }
    BUCKETS - 1
}

/// The upper bound of bucket `i` (the last's is the one before it, doubled).
fn bound(i: usize) -> Duration {
    FIRST * (1u32 << i.min(BUCKETS - 1))
}

/// The `q` quantile (0 to 1) of what was counted between `before` and `after`, as the upper
/// bound of its bucket; `None` when nothing was.
pub(crate) fn quantile(
    before: &[u64; BUCKETS],
    after: &[u64; BUCKETS],
    q: f64,
) -> Option<Duration> {
    let counts: Vec<u64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bound(i));
        }
    }
    Some(bound(BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_of_an_interval_is_the_bound_of_the_bucket_its_rank_falls_in() {
        let latency = Latency::default();
        let before = latency.counts();
        assert_eq!(quantile(&before, &latency.counts(), 0.99), None);
        for _ in 0..99 {
            latency.observe(Duration::from_micros(150));
        }
        latency.observe(Duration::from_millis(30));
        let after = latency.counts();
        assert_eq!(
            quantile(&before, &after, 0.5),
            Some(Duration::from_micros(200))
        );
        assert_eq!(
            quantile(&before, &after, 0.99),
            Some(Duration::from_micros(200))
        );
        assert_eq!(
            quantile(&before, &after, 1.0),
            Some(Duration::from_micros(51_200))
        );
        // Only what came after `after` counts in the next interval.
        latency.observe(Duration::from_secs(3600));
        let last = quantile(&after, &latency.counts(), 0.99).unwrap();
        assert_eq!(last, bound(BUCKETS - 1));
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(FIRST), 0);
        assert_eq!(bucket(FIRST + Duration::from_nanos(1)), 1);
    }
}
