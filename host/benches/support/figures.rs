//! What a load run measured: throughput and latency percentiles, printed one line a run. The
//! ingest and PostgreSQL benchmarks share it.

use std::time::Duration;

pub(crate) struct Figures {
    pub(crate) throughput: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
    pub(crate) count: usize,
}

/// The figures of `latencies` measured over `elapsed`.
pub(crate) fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        count: latencies.len(),
    }
}

/// Prints one run's line.
pub(crate) fn show(name: &str, f: &Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:38} {:>8.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} messages)",
        f.throughput,
        ms(f.p50),
        ms(f.p99),
        ms(f.max),
        f.count
    );
}
