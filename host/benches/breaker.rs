//! The breaker's cost per call on the closed path against a bare call, in the same run, and
//! calls per second from 8 threads on one breaker.
//!
//! Run: `cargo bench -p dragoman --bench breaker`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dragoman::breaker::{Admission, Breaker, BreakerConfig, Outcome, WindowKind};
use dragoman::clock::SystemClock;

/// The call a breaker guards: as cheap as a call can be, so that what is measured is the
/// breaker.
#[inline(never)]
fn downstream(n: u64) -> Result<u64, ()> {
    Ok(black_box(n).wrapping_add(1))
}

fn guarded(breaker: &Breaker, n: u64) -> Option<u64> {
    match breaker.admit() {
        Admission::Permitted(permit) => {
            let result = downstream(n);
            permit.record(if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            });
            result.ok()
        }
        Admission::Refused { .. } => None,
    }
}

fn breaker(config: BreakerConfig) -> Breaker {
    Breaker::new(config, Arc::new(SystemClock))
}

fn closed_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed path");
    group.bench_function("a bare call", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            downstream(n)
        });
    });
    let count = breaker(BreakerConfig::default());
    group.bench_function("through a breaker, count window", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            guarded(&count, n)
        });
    });
    let timed = breaker(BreakerConfig {
        window: WindowKind::Time(Duration::from_secs(60)),
        slow_rate: 0.5,
        ..BreakerConfig::default()
    });
    group.bench_function("through a breaker, time window and slow calls", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            guarded(&timed, n)
        });
    });
    group.finish();
}

/// 8 threads calling through one breaker: the time per call, all threads together.
fn eight_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("8 threads, one breaker");
    let shared = Arc::new(breaker(BreakerConfig::default()));
    group.bench_function("per call", |b| {
        b.iter_custom(|iterations| {
            let per_thread = iterations.div_ceil(8);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    let shared = shared.clone();
                    scope.spawn(move || {
                        for n in 0..per_thread {
                            black_box(guarded(&shared, n));
                        }
                    });
                }
            });
            started.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, closed_path, eight_threads);
criterion_main!(benches);
