//! The circuit breaker: a state machine that stops calling a downstream that is failing, so
//! that its failure does not cascade into the host, and probes it now and then to find out
//! when it is back. A module of its own, usable without the rest of the host.
//!
//! - **Closed**: calls go through and are counted in a rolling window (the last N calls, or
//!   the last N seconds: `breaker/window.rs`, lock-free). Once the window holds at least
//!   `minimum_calls`, a failure rate or slow-call rate at or above its threshold opens it.
//! - **Open**: calls are refused at once, with the time until the next probe, for
//!   `wait_in_open`, which grows by `wait_multiplier` with each reopening up to
//!   `max_wait_in_open`. Outcomes of calls let through before it opened are ignored: they
//!   neither extend nor restart the wait.
//! - **Half-open**: exactly `probes` calls are let through (decided under a lock, so a crowd
//!   arriving at the edge gets no more); all must succeed to close, one failure reopens. A
//!   probe whose permit is dropped without an outcome counts as failed, and probes not back
//!   within `probe_timeout` are given up as failed by the next caller: a lost probe cannot
//!   wedge the breaker.
//! - **Forced open** and **disabled**, set by an operator, hold until reset.
//!
//! Which outcomes count as failures is the caller's to say ([`Outcome`]); for HTTP each
//! breaker has a [`FailurePolicy`] ([`Breaker::classify`]), by default: timeouts, connection
//! errors, 5xx and 429 count, other 4xx do not (they are the caller's fault, not the
//! downstream's health).
//!
//! The closed path takes no lock: an atomic load of the state, and the window's atomics when
//! the outcome is recorded. Transitions take one mutex. Time comes from the injected clock.

mod window;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;

use crate::clock::Clock;

pub use self::window::Snapshot;
use self::window::Window;

/// How a breaker judges and waits.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// The rolling window.
    pub window: WindowKind,
    /// Opens at or above this share of failed calls (0 to 1).
    pub failure_rate: f64,
    /// Opens at or above this share of slow calls (0 to 1; above 1: never).
    pub slow_rate: f64,
    /// A call that takes this long or longer is slow.
    pub slow_call: Duration,
    /// The window must hold this many calls before a rate is judged.
    pub minimum_calls: u32,
    /// How long the first opening lasts.
    pub wait_in_open: Duration,
    /// Each reopening waits this many times longer than the one before (1: always the same).
    pub wait_multiplier: u32,
    /// The longest wait.
    pub max_wait_in_open: Duration,
    /// Calls let through in half-open; all must succeed to close.
    pub probes: u32,
    /// Probes not back within this long are given up as failed.
    pub probe_timeout: Duration,
    /// Which outcomes of an HTTP call count as failures ([`Breaker::classify`]).
    pub failures: FailurePolicy,
}

/// Which outcomes of an HTTP call count against the downstream's health. By default:
/// no answer (a timeout, a connection error), 429 and every 5xx. A status that is not
/// listed and is 400 or above is ignored (the caller's fault); below 400 is a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// The statuses that count as failures, as inclusive ranges.
    pub statuses: Vec<std::ops::RangeInclusive<u16>>,
    /// Whether a call that got no answer counts as failed.
    pub no_answer: bool,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            statuses: vec![429..=429, 500..=599],
            no_answer: true,
        }
    }
}

impl FailurePolicy {
    /// The outcome of an exchange: `None` for one that got no answer, else its status.
    pub fn classify(&self, status: Option<u16>) -> Outcome {
        match status {
            None if self.no_answer => Outcome::Failure,
            None => Outcome::Ignored,
            Some(status) if self.statuses.iter().any(|r| r.contains(&status)) => Outcome::Failure,
            Some(400..) => Outcome::Ignored,
            Some(_) => Outcome::Success,
        }
    }
}

/// The rolling window of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last this many calls.
    Count(u32),
    /// The calls of the last this long, in ten buckets.
    Time(Duration),
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: WindowKind::Count(100),
            failure_rate: 0.5,
            slow_rate: 1.1,
            slow_call: Duration::from_secs(5),
            minimum_calls: 20,
            wait_in_open: Duration::from_secs(5),
            wait_multiplier: 2,
            max_wait_in_open: Duration::from_secs(300),
            probes: 3,
            probe_timeout: Duration::from_secs(30),
            failures: FailurePolicy::default(),
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through and are counted.
    Closed,
    /// Calls are refused until the wait is over.
    Open,
    /// A few probes go through.
    HalfOpen,
    /// Refused until an operator resets it.
    ForcedOpen,
    /// Every call goes through, nothing is counted, until an operator resets it.
    Disabled,
}

impl State {
    /// Its name in the API and the metrics: `closed`, `open`, `half_open`, `forced_open`,
    /// `disabled`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
        }
    }

    /// Its number in the metrics' gauge (0 closed to 4 disabled), and in the atomic that
    /// holds it.
    pub fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            _ => Self::Disabled,
        }
    }
}

/// What became of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Success,
    /// It failed in a way that says the downstream is unwell.
    Failure,
    /// It failed in a way that says nothing of the downstream's health (a 4xx): not counted.
    Ignored,
}

/// The default classification of an HTTP exchange: `None` for a timeout or a connection
/// error, else the status ([`FailurePolicy::default`]).
pub fn classify_http(status: Option<u16>) -> Outcome {
    FailurePolicy::default().classify(status)
}

/// A change of state, for metrics, logs and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// From.
    pub from: State,
    /// To.
    pub to: State,
    /// When.
    pub at: Timestamp,
}

/// Whether a call may go.
#[derive(Debug)]
#[must_use = "a permit must be given its outcome"]
pub enum Admission<'a> {
    /// It may: record its outcome on the permit.
    Permitted(Permit<'a>),
    /// It may not; the next probe may go in this long (`None` when forced open).
    Refused {
        /// Until the next probe.
        retry_after: Option<Duration>,
    },
}

/// A circuit breaker. Share it (`Arc`) between the callers of one downstream.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    state: AtomicU8,
    window: Window,
    inner: Mutex<Inner>,
    /// Told of every transition as it happens (under the transition lock: keep it quick).
    observer: Option<Observer>,
}

/// A function told of every transition at once: for gauges that must never lag the state.
#[derive(Clone)]
pub struct Observer(Arc<dyn Fn(&Transition) + Send + Sync>);

impl Observer {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

#[derive(Debug)]
struct Inner {
    /// When the current opening ends.
    open_until: Timestamp,
    /// The current opening's wait.
    wait: Duration,
    /// Bumped on every opening: a probe of an earlier half-open is not counted.
    generation: u64,
    half_open_since: Timestamp,
    probes_let_through: u32,
    probes_succeeded: u32,
    transitions: Vec<Transition>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        let window = match config.window {
            WindowKind::Count(size) => Window::count(size),
            WindowKind::Time(length) => Window::time(length, 10),
        };
        let now = clock.now();
        Self {
            window,
            clock,
            state: AtomicU8::new(State::Closed.code()),
            inner: Mutex::new(Inner {
                open_until: now,
                wait: config.wait_in_open,
                generation: 0,
                half_open_since: now,
                probes_let_through: 0,
                probes_succeeded: 0,
                transitions: Vec::new(),
            }),
            config,
            observer: None,
        }
    }

    /// A closed breaker that tells `observer` of every transition as it happens (besides
    /// keeping it for [`Breaker::take_transitions`]).
    pub fn with_observer(config: BreakerConfig, clock: Arc<dyn Clock>, observer: Observer) -> Self {
        Self {
            observer: Some(observer),
            ..Self::new(config, clock)
        }
    }

    /// The outcome of an HTTP exchange by this breaker's [`FailurePolicy`]: `None` for one
    /// that got no answer, else its status.
    pub fn classify(&self, status: Option<u16>) -> Outcome {
        self.config.failures.classify(status)
    }

    /// Where it stands now.
    pub fn state(&self) -> State {
        State::from_code(self.state.load(Ordering::Acquire))
    }

    /// What the window holds now.
    pub fn snapshot(&self) -> Snapshot {
        self.window.snapshot(micros(self.clock.now()))
    }

    /// The transitions since the last call, oldest first.
    pub fn take_transitions(&self) -> Vec<Transition> {
        std::mem::take(&mut self.lock().transitions)
    }

    /// How long calls will be refused from now on, without asking for a call: while open,
    /// until the next probe; half-open with every probe out, until they are given up; forced
    /// open, `Duration::MAX`; else `None`. A caller with work waiting sleeps this long (or
    /// until a probe it made comes back) instead of asking again and again.
    pub fn refusing_for(&self) -> Option<Duration> {
        match self.state() {
            State::ForcedOpen => Some(Duration::MAX),
            State::Open => {
                let now = self.clock.now();
                let open_until = self.lock().open_until;
                (now < open_until).then(|| until(now, open_until))
            }
            State::HalfOpen => {
                let now = self.clock.now();
                let inner = self.lock();
                let given_up = inner
                    .half_open_since
                    .checked_add(self.config.probe_timeout)
                    .unwrap_or(Timestamp::MAX);
                (inner.probes_let_through >= self.config.probes && now < given_up)
                    .then(|| until(now, given_up))
            }
            State::Closed | State::Disabled => None,
        }
    }

    /// Asks to make a call.
    pub fn admit(&self) -> Admission<'_> {
        match self.state() {
            State::Closed => Admission::Permitted(self.permit(Kind::Counted)),
            State::Disabled => Admission::Permitted(self.permit(Kind::Uncounted)),
            State::ForcedOpen => Admission::Refused { retry_after: None },
            State::Open | State::HalfOpen => self.admit_slow(),
        }
    }

    /// Open or half-open: decided under the lock.
    fn admit_slow(&self) -> Admission<'_> {
        let now = self.clock.now();
        let mut inner = self.lock();
        match self.state() {
            State::Closed => return Admission::Permitted(self.permit(Kind::Counted)),
            State::Disabled => return Admission::Permitted(self.permit(Kind::Uncounted)),
            State::ForcedOpen => return Admission::Refused { retry_after: None },
            State::Open if now < inner.open_until => {
                return Admission::Refused {
                    retry_after: Some(until(now, inner.open_until)),
                };
            }
            State::Open => {
                inner.generation += 1;
                inner.half_open_since = now;
                inner.probes_let_through = 0;
                inner.probes_succeeded = 0;
                self.set(&mut inner, State::HalfOpen, now);
            }
            State::HalfOpen => {}
        }
        if inner.probes_let_through < self.config.probes {
            inner.probes_let_through += 1;
            let generation = inner.generation;
            return Admission::Permitted(self.permit(Kind::Probe(generation)));
        }
        if until(inner.half_open_since, now) >= self.config.probe_timeout {
            // The probes were lost: count them as failed.
            self.reopen(&mut inner, now);
        }
        Admission::Refused {
            retry_after: Some(until(now, inner.open_until.max(now))),
        }
    }

    fn permit(&self, kind: Kind) -> Permit<'_> {
        let timed = matches!(kind, Kind::Counted) && self.config.slow_rate <= 1.0;
        Permit {
            breaker: self,
            kind,
            started: timed.then(|| self.clock.now()),
            done: false,
        }
    }

    fn record(&self, kind: Kind, started: Option<Timestamp>, outcome: Outcome) {
        match kind {
            Kind::Uncounted => {}
            Kind::Counted => self.record_counted(started, outcome),
            Kind::Probe(generation) => self.record_probe(generation, outcome),
        }
    }

    fn record_counted(&self, started: Option<Timestamp>, outcome: Outcome) {
        if outcome == Outcome::Ignored || self.state() != State::Closed {
            // A call let through before the breaker opened says nothing new, and must not
            // touch the wait of an opening that is running.
            return;
        }
        let now = if started.is_some() || self.window.needs_time() {
            Some(self.clock.now())
        } else {
            None
        };
        let slow = match (started, now) {
            (Some(started), Some(now)) => until(started, now) >= self.config.slow_call,
            _ => false,
        };
        let failed = outcome == Outcome::Failure;
        let now_micros = now.map_or(0, micros);
        self.window.record(failed, slow, now_micros);
        if !failed && !slow {
            return;
        }
        let snapshot = self.window.snapshot(now_micros);
        if snapshot.calls < u64::from(self.config.minimum_calls) || snapshot.calls == 0 {
            return;
        }
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let rate = |n: u64| n as f64 / snapshot.calls as f64;
        if rate(snapshot.failures) >= self.config.failure_rate
            || rate(snapshot.slow) >= self.config.slow_rate
        {
            let now = now.unwrap_or_else(|| self.clock.now());
            let mut inner = self.lock();
            if self.state() == State::Closed {
                inner.wait = self.config.wait_in_open;
                inner.open_until = now.checked_add(inner.wait).unwrap_or(Timestamp::MAX);
                inner.generation += 1;
                self.set(&mut inner, State::Open, now);
            }
        }
    }

    fn record_probe(&self, generation: u64, outcome: Outcome) {
        let now = self.clock.now();
        let mut inner = self.lock();
        if generation != inner.generation || self.state() != State::HalfOpen {
            return;
        }
        match outcome {
            Outcome::Failure => self.reopen(&mut inner, now),
            Outcome::Success | Outcome::Ignored => {
                inner.probes_succeeded += 1;
                if inner.probes_succeeded >= self.config.probes {
                    self.window.reset();
                    inner.wait = self.config.wait_in_open;
                    self.set(&mut inner, State::Closed, now);
                }
            }
        }
    }

    /// Half-open to open again, waiting longer.
    fn reopen(&self, inner: &mut Inner, now: Timestamp) {
        let grown = inner
            .wait
            .saturating_mul(self.config.wait_multiplier.max(1))
            .min(self.config.max_wait_in_open);
        inner.wait = grown;
        inner.open_until = now.checked_add(grown).unwrap_or(Timestamp::MAX);
        inner.generation += 1;
        self.set(inner, State::Open, now);
    }

    /// Forces it open until [`Breaker::reset`].
    pub fn force_open(&self) {
        self.operate(State::ForcedOpen);
    }

    /// Lets every call through, uncounted, until [`Breaker::reset`].
    pub fn disable(&self) {
        self.operate(State::Disabled);
    }

    /// Closed, with an empty window and the first wait.
    pub fn reset(&self) {
        self.window.reset();
        self.operate(State::Closed);
    }

    fn operate(&self, to: State) {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.generation += 1;
        inner.wait = self.config.wait_in_open;
        self.set(&mut inner, to, now);
    }

    fn set(&self, inner: &mut Inner, to: State, at: Timestamp) {
        let from = self.state();
        if from != to {
            self.state.store(to.code(), Ordering::Release);
            let transition = Transition { from, to, at };
            if let Some(observer) = &self.observer {
                (observer.0)(&transition);
            }
            inner.transitions.push(transition);
            tracing::debug!(from = ?from, to = ?to, "circuit breaker");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every field is consistent after each statement that changes it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counted,
    Uncounted,
    Probe(u64),
}

/// Leave to make one call; give it the call's outcome. Dropped without one, a probe counts
/// as failed (so a lost probe cannot wedge the breaker) and another call as not made.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    kind: Kind,
    started: Option<Timestamp>,
    done: bool,
}

impl Permit<'_> {
    /// Records what became of the call.
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker.record(self.kind, self.started, outcome);
    }

    /// Whether this call is a probe of a half-open breaker.
    pub fn is_probe(&self) -> bool {
        matches!(self.kind, Kind::Probe(_))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && matches!(self.kind, Kind::Probe(_)) {
            self.breaker
                .record(self.kind, self.started, Outcome::Failure);
        }
    }
}

fn micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

/// From `from` to `to`, zero if `to` is not later.
fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests;
