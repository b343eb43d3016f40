//! The breaker's transitions, driven by a manual clock: no test sleeps.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::clock::ManualClock;

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap())
}

fn config() -> BreakerConfig {
    BreakerConfig {
        window: WindowKind::Count(20),
        failure_rate: 0.5,
        slow_rate: 1.1,
        slow_call: Duration::from_secs(1),
        minimum_calls: 10,
        wait_in_open: Duration::from_secs(10),
        wait_multiplier: 2,
        max_wait_in_open: Duration::from_secs(30),
        probes: 3,
        probe_timeout: Duration::from_secs(5),
        failures: FailurePolicy::default(),
    }
}

fn new(config: BreakerConfig) -> (Breaker, ManualClock) {
    let clock = clock();
    (Breaker::new(config, Arc::new(clock.clone())), clock)
}

fn call(breaker: &Breaker, outcome: Outcome) -> bool {
    match breaker.admit() {
        Admission::Permitted(permit) => {
            permit.record(outcome);
            true
        }
        Admission::Refused { .. } => false,
    }
}

fn retry_after(breaker: &Breaker) -> Option<Duration> {
    match breaker.admit() {
        Admission::Refused { retry_after } => retry_after,
        Admission::Permitted(_) => panic!("a call was let through"),
    }
}

/// Opens `breaker` with ten failures.
fn open(breaker: &Breaker) {
    for _ in 0..10 {
        assert!(call(breaker, Outcome::Failure));
    }
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn opens_at_the_threshold_only_once_the_minimum_volume_is_reached() {
    let (breaker, _) = new(config());
    for _ in 0..9 {
        assert!(call(&breaker, Outcome::Failure));
    }
    assert_eq!(breaker.state(), State::Closed, "9 calls: below the minimum");
    assert!(call(&breaker, Outcome::Failure));
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(retry_after(&breaker), Some(Duration::from_secs(10)));

    // Below the rate it stays closed however long it runs.
    let (breaker, _) = new(config());
    for n in 0..200 {
        let outcome = if n % 3 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        assert!(call(&breaker, outcome));
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "a third failing is under half"
    );
}

#[test]
fn a_caller_error_is_not_the_downstream_s_failure() {
    assert_eq!(
        classify_http(None),
        Outcome::Failure,
        "timeout or connection error"
    );
    for status in [429, 500, 502, 503, 504] {
        assert_eq!(classify_http(Some(status)), Outcome::Failure, "{status}");
    }
    for status in [400, 401, 404, 409, 422] {
        assert_eq!(classify_http(Some(status)), Outcome::Ignored, "{status}");
    }
    assert_eq!(classify_http(Some(201)), Outcome::Success);
    let (breaker, _) = new(config());
    for _ in 0..50 {
        assert!(call(&breaker, classify_http(Some(404))));
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0, "ignored calls are not counted");
}

#[test]
fn half_open_lets_exactly_the_probes_through_then_closes_when_all_succeed() {
    let (breaker, clock) = new(config());
    open(&breaker);
    clock.advance(Duration::from_secs(9));
    assert_eq!(retry_after(&breaker), Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    let permits: Vec<Permit<'_>> = (0..3)
        .map(|_| match breaker.admit() {
            Admission::Permitted(permit) => permit,
            Admission::Refused { .. } => panic!("a probe was refused"),
        })
        .collect();
    assert!(permits.iter().all(Permit::is_probe));
    assert_eq!(breaker.state(), State::HalfOpen);
    assert!(!call(&breaker, Outcome::Success), "a fourth is refused");
    for permit in permits {
        permit.record(Outcome::Success);
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot(), Snapshot::default(), "a fresh window");
    let states: Vec<(State, State)> = breaker
        .take_transitions()
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        states,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
}

#[test]
fn a_failed_probe_reopens_with_a_longer_wait_up_to_the_cap() {
    let (breaker, clock) = new(config());
    open(&breaker);
    for expected in [20, 30, 30] {
        clock.advance(retry_after(&breaker).unwrap());
        assert!(call(&breaker, Outcome::Failure), "the probe goes");
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(retry_after(&breaker), Some(Duration::from_secs(expected)));
    }
    clock.advance(Duration::from_secs(30));
    for _ in 0..3 {
        assert!(call(&breaker, Outcome::Success));
    }
    assert_eq!(breaker.state(), State::Closed);
    open(&breaker);
    assert_eq!(
        retry_after(&breaker),
        Some(Duration::from_secs(10)),
        "closing starts the waits over"
    );
}

#[test]
fn a_crowd_at_the_half_open_edge_gets_exactly_the_configured_probes() {
    let (breaker, clock) = new(config());
    open(&breaker);
    clock.advance(Duration::from_secs(10));
    let start = Barrier::new(32);
    let held = Barrier::new(32);
    let permitted = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..32)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let admission = breaker.admit();
                    // Every thread asks before any probe comes back.
                    held.wait();
                    match admission {
                        Admission::Permitted(permit) => {
                            permit.record(Outcome::Success);
                            1
                        }
                        Admission::Refused { .. } => 0,
                    }
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum::<u32>()
    });
    assert_eq!(permitted, 3, "exactly the configured probes");
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn a_lost_probe_does_not_wedge_the_breaker() {
    // A probe dropped without an outcome counts as failed.
    let (breaker, clock) = new(config());
    open(&breaker);
    clock.advance(Duration::from_secs(10));
    match breaker.admit() {
        Admission::Permitted(permit) => drop(permit),
        Admission::Refused { .. } => panic!("the probe was refused"),
    }
    assert_eq!(breaker.state(), State::Open);

    // Probes that never come back are given up after the probe timeout.
    clock.advance(Duration::from_secs(20));
    let stuck: Vec<Admission<'_>> = (0..3).map(|_| breaker.admit()).collect();
    assert!(stuck.iter().all(|a| matches!(a, Admission::Permitted(_))));
    assert!(!call(&breaker, Outcome::Success), "all probes are out");
    clock.advance(Duration::from_secs(5));
    assert!(!call(&breaker, Outcome::Success), "given up: open again");
    assert_eq!(breaker.state(), State::Open);
    std::mem::forget(stuck);
    clock.advance(Duration::from_secs(30));
    for _ in 0..3 {
        assert!(call(&breaker, Outcome::Success));
    }
    assert_eq!(breaker.state(), State::Closed, "it recovers");
}

#[test]
fn failures_of_calls_let_through_before_it_opened_do_not_move_its_wait() {
    let (breaker, clock) = new(config());
    let late: Vec<Permit<'_>> = (0..10)
        .map(|_| match breaker.admit() {
            Admission::Permitted(permit) => permit,
            Admission::Refused { .. } => panic!("closed lets calls through"),
        })
        .collect();
    open(&breaker);
    clock.advance(Duration::from_secs(6));
    for permit in late {
        permit.record(Outcome::Failure);
    }
    assert_eq!(
        retry_after(&breaker),
        Some(Duration::from_secs(4)),
        "the wait runs from the opening"
    );
    clock.advance(Duration::from_secs(4));
    assert!(call(&breaker, Outcome::Success), "the probe goes on time");
}

#[test]
fn slow_calls_open_it_too() {
    let (breaker, clock) = new(BreakerConfig {
        slow_rate: 0.5,
        ..config()
    });
    for _ in 0..10 {
        let Admission::Permitted(permit) = breaker.admit() else {
            panic!("refused")
        };
        clock.advance(Duration::from_secs(2));
        permit.record(Outcome::Success);
    }
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn a_time_window_forgets_what_is_older_than_it() {
    let (breaker, clock) = new(BreakerConfig {
        window: WindowKind::Time(Duration::from_secs(10)),
        ..config()
    });
    for _ in 0..9 {
        assert!(call(&breaker, Outcome::Failure));
    }
    clock.advance(Duration::from_secs(11));
    assert!(call(&breaker, Outcome::Failure));
    assert_eq!(
        breaker.state(),
        State::Closed,
        "the nine are out of the window"
    );
    assert_eq!(breaker.snapshot().calls, 1);
    for _ in 0..9 {
        assert!(call(&breaker, Outcome::Failure));
    }
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn an_operator_forces_it_open_disables_it_and_resets_it() {
    let (breaker, _) = new(config());
    breaker.force_open();
    assert_eq!(retry_after(&breaker), None);
    breaker.disable();
    for _ in 0..50 {
        assert!(call(&breaker, Outcome::Failure));
    }
    assert_eq!(breaker.state(), State::Disabled, "nothing is counted");
    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    open(&breaker);
}

#[test]
fn it_says_how_long_it_will_refuse_without_taking_a_probe() {
    let (breaker, clock) = new(config());
    assert_eq!(breaker.refusing_for(), None);
    open(&breaker);
    assert_eq!(breaker.refusing_for(), Some(Duration::from_secs(10)));
    clock.advance(Duration::from_secs(10));
    assert_eq!(breaker.refusing_for(), None, "a probe may go");
    let probes: Vec<Admission<'_>> = (0..3).map(|_| breaker.admit()).collect();
    assert_eq!(
        breaker.refusing_for(),
        Some(Duration::from_secs(5)),
        "every probe is out: until they are given up"
    );
    for probe in probes {
        if let Admission::Permitted(permit) = probe {
            permit.record(Outcome::Success);
        }
    }
    assert_eq!(breaker.refusing_for(), None);
    breaker.force_open();
    assert_eq!(breaker.refusing_for(), Some(Duration::MAX));
}
