//! The real breaker against a plain reference model (VecDeque windows, no atomics): random
//! configs and random sequences of admissions, results, drops, clock moves and manual
//! changes must give the same admissions, states and state-change events after every step.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, OwnedCallPermit, SlowCalls, TripModel,
};
use palisade::clock::{Clock, Ticks};
use palisade::telemetry::{Event, EventKind};
use palisade::{Outcome, Rejected};
use proptest::prelude::*;

/// Moved by hand. Its lagging reading trails the exact one by a fixed `lag_ns`, within the
/// `max_lag` it declares, so the breaker's cheap open-state check runs against decisions the
/// reference makes on the exact time.
#[derive(Debug, Clone, Default)]
struct ManualClock {
    nanos: Arc<AtomicU64>,
    lag_ns: u64,
    max_lag: Duration,
}

impl ManualClock {
    fn lagging(lag_ns: u64, max_lag: Duration) -> Self {
        ManualClock {
            nanos: Arc::default(),
            lag_ns,
            max_lag,
        }
    }
    fn advance_ns(&self, ns: u64) {
        self.nanos.fetch_add(ns, Ordering::SeqCst);
    }
    fn ns(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Ticks {
        Ticks::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    fn now_lagging(&self) -> Ticks {
        Ticks::from_nanos(
            self.nanos
                .load(Ordering::SeqCst)
                .saturating_sub(self.lag_ns),
        )
    }
    fn max_lag(&self) -> Duration {
        self.max_lag
    }
}

/// No lag (the default clock behaviour), or a lag up to a declared bound of 1 to 20 ms.
fn lag() -> impl Strategy<Value = (u64, Duration)> {
    prop_oneof![
        Just((0, Duration::ZERO)),
        (1u64..=20_000_000).prop_flat_map(|max| (0..=max, Just(Duration::from_nanos(max)))),
    ]
}

// ===== the configuration under test =====

#[derive(Debug, Clone, Copy)]
enum Model {
    Consecutive(u32),
    Count {
        size: u32,
        ratio: f64,
        min: u32,
    },
    Time {
        duration_ms: u64,
        buckets: u32,
        ratio: f64,
        min: u32,
    },
    Within {
        failures: u32,
        duration_ms: u64,
        buckets: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    model: Model,
    slow: Option<(u64, f64, u32)>, // threshold ms, ratio, minimum calls
    break_ms: u64,
    max_break_ms: u64,
    permitted: u32,
    threshold: u32,
    wait_ms: u64,
}

fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.25), Just(0.5), Just(0.75), Just(1.0)]
}

fn spec() -> impl Strategy<Value = Spec> {
    let model = prop_oneof![
        (1u32..5).prop_map(Model::Consecutive),
        (1u32..7, ratio())
            .prop_flat_map(|(size, ratio)| (Just(size), Just(ratio), 1..=size))
            .prop_map(|(size, ratio, min)| Model::Count { size, ratio, min }),
        (1u32..5, 1u64..6, ratio(), 1u32..5).prop_map(|(buckets, secs, ratio, min)| {
            Model::Time {
                duration_ms: secs * 1000,
                buckets,
                ratio,
                min,
            }
        }),
        (1u32..5, 1u32..5, 1u64..6).prop_map(|(failures, buckets, secs)| Model::Within {
            failures,
            duration_ms: secs * 1000,
            buckets,
        }),
    ];
    let slow = proptest::option::of((50u64..400, ratio(), 1u32..4));
    (model, slow, 100u64..1000, 0u64..4, 1u32..4, 50u64..3000).prop_flat_map(
        |(model, slow, break_ms, growth, permitted, wait_ms)| {
            (1..=permitted).prop_map(move |threshold| Spec {
                model,
                slow,
                break_ms,
                max_break_ms: break_ms << growth,
                permitted,
                threshold,
                wait_ms,
            })
        },
    )
}

/// What the listener saw, and whether it is to panic on the next event it receives.
#[derive(Debug, Default)]
struct Listening {
    log: Mutex<Vec<(CircuitState, CircuitState)>>,
    armed: AtomicBool,
}

fn config(spec: &Spec, listening: Arc<Listening>) -> CircuitBreakerConfig {
    let model = match spec.model {
        Model::Consecutive(n) => TripModel::ConsecutiveFailures(n),
        Model::Count { size, ratio, min } => TripModel::CountWindow {
            size,
            failure_ratio: ratio,
            minimum_calls: min,
        },
        Model::Time {
            duration_ms,
            buckets,
            ratio,
            min,
        } => TripModel::TimeWindow {
            duration: Duration::from_millis(duration_ms),
            buckets,
            failure_ratio: ratio,
            minimum_calls: min,
        },
        Model::Within {
            failures,
            duration_ms,
            buckets,
        } => TripModel::FailuresWithin {
            failures,
            duration: Duration::from_millis(duration_ms),
            buckets,
        },
    };
    let mut b = CircuitBreaker::builder()
        .trip_model(model)
        .break_duration(Duration::from_millis(spec.break_ms))
        .max_break_duration(Duration::from_millis(spec.max_break_ms))
        .permitted_in_half_open(spec.permitted)
        .success_threshold(spec.threshold)
        .max_wait_in_half_open(Duration::from_millis(spec.wait_ms))
        .listener(move |e: &Event| {
            if let EventKind::StateChanged { from, to } = e.kind() {
                listening.log.lock().unwrap().push((from, to));
            }
            if listening.armed.swap(false, Ordering::SeqCst) {
                panic!("listener armed to panic");
            }
        });
    if let Some((threshold, ratio, min)) = spec.slow {
        b = b
            .slow_calls(SlowCalls::new(Duration::from_millis(threshold), ratio).minimum_calls(min));
    }
    b.build().unwrap()
}

// ===== the reference =====

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed,
    Probe,
    Disabled,
}

#[derive(Debug, Clone, Copy)]
struct RefPermit {
    phase: Phase,
    epoch: u32,
    start_ns: u64,
}

const MS: u64 = 1_000_000;

/// Whole milliseconds, rounded down: what deadlines are checked against.
fn floor_ms(ns: u64) -> u64 {
    ns / MS
}

/// Whole milliseconds, rounded up: what deadlines start from, so none ends early.
fn ceil_ms(ns: u64) -> u64 {
    ns.div_ceil(MS)
}

/// Full-width times, in nanoseconds of the manual clock; deadlines in whole milliseconds.
#[derive(Debug)]
struct Reference {
    spec: Spec,
    state: CircuitState,
    epoch: u32,
    probes: u32,
    reopens: u32,
    deadline_ms: u64,
    consecutive: u32,
    // (failure, slow), newest last; also used for the consecutive model's slow calls.
    calls: VecDeque<(bool, bool)>,
    // (time slice, failure, slow).
    timed: Vec<(u64, bool, bool)>,
    // successes, failures of the current half-open period
    tally: (u32, u32),
    events: Vec<(CircuitState, CircuitState)>,
}

impl Reference {
    fn new(spec: Spec) -> Self {
        Reference {
            spec,
            state: CircuitState::Closed,
            epoch: 0,
            probes: 0,
            reopens: 0,
            deadline_ms: 0,
            consecutive: 0,
            calls: VecDeque::new(),
            timed: Vec::new(),
            tally: (0, 0),
            events: Vec::new(),
        }
    }

    fn go(&mut self, to: CircuitState) {
        if self.state != to {
            self.events.push((self.state, to));
        }
        self.state = to;
        self.epoch = (self.epoch + 1) % 4096;
        self.probes = 0;
        // Every half-open period starts from an empty tally.
        self.tally = (0, 0);
    }

    fn break_ms(&self, reopens: u32) -> u64 {
        if reopens == 0 || self.spec.max_break_ms <= self.spec.break_ms {
            return self.spec.break_ms;
        }
        ((self.spec.break_ms as f64 * 2f64.powi(reopens as i32)) as u64).min(self.spec.max_break_ms)
    }

    fn reopen(&mut self, at_ms: u64) {
        self.reopens = (self.reopens + 1).min(31);
        self.go(CircuitState::Open);
        self.deadline_ms = at_ms + self.break_ms(self.reopens);
    }

    fn half_open(&mut self, now: u64) {
        self.go(CircuitState::HalfOpen);
        self.probes = 1;
        self.deadline_ms = ceil_ms(now) + self.spec.wait_ms;
    }

    /// The state a call at `now` would find, without moving anything.
    fn observed(&self, now: u64) -> CircuitState {
        let ms = floor_ms(now);
        match self.state {
            CircuitState::Open if ms >= self.deadline_ms => CircuitState::HalfOpen,
            CircuitState::HalfOpen if self.probes > 0 && ms >= self.deadline_ms => {
                let reopens = (self.reopens + 1).min(31);
                if ms >= self.deadline_ms + self.break_ms(reopens) {
                    CircuitState::HalfOpen
                } else {
                    CircuitState::Open
                }
            }
            s => s,
        }
    }

    fn admit(&mut self, now: u64) -> Result<RefPermit, Option<Duration>> {
        let ms = floor_ms(now);
        let permit = |phase, epoch| RefPermit {
            phase,
            epoch,
            start_ns: now,
        };
        match self.state {
            CircuitState::Closed => Ok(permit(Phase::Closed, self.epoch)),
            CircuitState::Disabled => Ok(permit(Phase::Disabled, self.epoch)),
            CircuitState::Isolated => Err(None),
            CircuitState::Open if ms >= self.deadline_ms => {
                self.half_open(now);
                Ok(permit(Phase::Probe, self.epoch))
            }
            CircuitState::Open => Err(Some(Duration::from_millis(self.deadline_ms - ms))),
            CircuitState::HalfOpen if self.probes == 0 => {
                // Nothing outstanding: this caller probes, with a fresh wait.
                self.probes = 1;
                self.deadline_ms = ceil_ms(now) + self.spec.wait_ms;
                Ok(permit(Phase::Probe, self.epoch))
            }
            CircuitState::HalfOpen if ms >= self.deadline_ms => {
                // Hung probes: re-opened when the wait ran out.
                self.reopen(self.deadline_ms);
                if ms >= self.deadline_ms {
                    self.half_open(now);
                    Ok(permit(Phase::Probe, self.epoch))
                } else {
                    Err(Some(Duration::from_millis(self.deadline_ms - ms)))
                }
            }
            CircuitState::HalfOpen if self.probes < self.spec.permitted => {
                self.probes += 1;
                Ok(permit(Phase::Probe, self.epoch))
            }
            CircuitState::HalfOpen => Err(Some(Duration::from_millis(self.deadline_ms - ms))),
            s => unreachable!("{s:?}"),
        }
    }

    fn is_slow(&self, p: RefPermit, now: u64) -> bool {
        self.spec
            .slow
            .is_some_and(|(threshold, _, _)| now - p.start_ns >= threshold * MS)
    }

    fn clear(&mut self) {
        self.consecutive = 0;
        self.calls.clear();
        self.timed.clear();
    }

    fn ratio_reached(part: u32, calls: u32, ratio: f64, min: u32) -> bool {
        calls >= min && calls > 0 && f64::from(part) >= ratio * f64::from(calls)
    }

    /// Calls, failures and slow calls in the time window at `now`.
    fn timed_counts(&self, now: u64) -> (u32, u32, u32) {
        let (Model::Time {
            duration_ms,
            buckets,
            ..
        }
        | Model::Within {
            duration_ms,
            buckets,
            ..
        }) = self.spec.model
        else {
            unreachable!()
        };
        let slice = now / (duration_ms * MS / u64::from(buckets));
        let oldest = slice.saturating_sub(u64::from(buckets) - 1);
        let live: Vec<_> = self.timed.iter().filter(|t| t.0 >= oldest).collect();
        let f = live.iter().filter(|t| t.1).count() as u32;
        let s = live.iter().filter(|t| t.2).count() as u32;
        (live.len() as u32, f, s)
    }

    /// What the breaker's metrics report as its window at `now`: calls, failures, slow calls.
    fn counts(&self, now: u64) -> (u32, u32, u32) {
        let count = |calls: &VecDeque<(bool, bool)>, pick: fn(&(bool, bool)) -> bool| {
            calls.iter().filter(|c| pick(c)).count() as u32
        };
        match self.spec.model {
            // The run of failures, and the slow calls among the last `minimum_calls` calls.
            Model::Consecutive(_) => (
                (self.calls.len() as u32).max(self.consecutive),
                self.consecutive,
                count(&self.calls, |c| c.1),
            ),
            Model::Count { .. } => (
                self.calls.len() as u32,
                count(&self.calls, |c| c.0),
                count(&self.calls, |c| c.1),
            ),
            Model::Time { .. } | Model::Within { .. } => self.timed_counts(now),
        }
    }

    fn record_closed(&mut self, failure: bool, slow: bool, now: u64) -> bool {
        let slow_rule = self.spec.slow;
        let slow_trips = |calls: u32, slow_n: u32| {
            slow_rule.is_some_and(|(_, r, min)| Self::ratio_reached(slow_n, calls, r, min))
        };
        match self.spec.model {
            Model::Consecutive(n) => {
                let mut trips = false;
                if failure {
                    self.consecutive += 1;
                    trips = self.consecutive >= n;
                } else {
                    self.consecutive = 0;
                }
                if let Some((_, _, min)) = slow_rule {
                    self.calls.push_back((failure, slow));
                    if self.calls.len() > min as usize {
                        self.calls.pop_front();
                    }
                    let s = self.calls.iter().filter(|c| c.1).count() as u32;
                    trips |= slow && slow_trips(self.calls.len() as u32, s);
                }
                trips
            }
            Model::Count { size, ratio, min } => {
                self.calls.push_back((failure, slow));
                if self.calls.len() > size as usize {
                    self.calls.pop_front();
                }
                let calls = self.calls.len() as u32;
                let f = self.calls.iter().filter(|c| c.0).count() as u32;
                let s = self.calls.iter().filter(|c| c.1).count() as u32;
                (failure || slow)
                    && (Self::ratio_reached(f, calls, ratio, min) || slow_trips(calls, s))
            }
            Model::Time {
                duration_ms,
                buckets,
                ..
            }
            | Model::Within {
                duration_ms,
                buckets,
                ..
            } => {
                let slice = now / (duration_ms * MS / u64::from(buckets));
                // "N failures within D" keeps no successes unless slow calls are detected.
                let keeps_successes =
                    !matches!(self.spec.model, Model::Within { .. }) || slow_rule.is_some();
                if failure || slow || keeps_successes {
                    self.timed.push((slice, failure, slow));
                }
                if !(failure || slow) {
                    return false;
                }
                let (calls, f, s) = self.timed_counts(now);
                let failed = match self.spec.model {
                    Model::Time { ratio, min, .. } => Self::ratio_reached(f, calls, ratio, min),
                    Model::Within { failures, .. } => f >= failures,
                    _ => unreachable!(),
                };
                failed || slow_trips(calls, s)
            }
        }
    }

    fn finish(&mut self, p: RefPermit, outcome: Outcome, now: u64) {
        match p.phase {
            Phase::Disabled => {}
            Phase::Closed => {
                if outcome == Outcome::Ignore
                    || self.state != CircuitState::Closed
                    || self.epoch != p.epoch
                {
                    return;
                }
                let slow = self.is_slow(p, now);
                if self.record_closed(outcome == Outcome::Failure, slow, now) {
                    self.reopens = 0;
                    self.go(CircuitState::Open);
                    self.deadline_ms = ceil_ms(now) + self.break_ms(0);
                }
            }
            Phase::Probe => {
                if outcome == Outcome::Ignore {
                    return self.release(p);
                }
                if self.state != CircuitState::HalfOpen || self.epoch != p.epoch {
                    return;
                }
                let failed = outcome == Outcome::Failure || self.is_slow(p, now);
                if failed {
                    self.tally.1 += 1;
                } else {
                    self.tally.0 += 1;
                }
                if self.tally.0 >= self.spec.threshold {
                    self.clear();
                    self.reopens = 0;
                    self.go(CircuitState::Closed);
                } else if self.tally.1 > self.spec.permitted - self.spec.threshold {
                    self.reopen(ceil_ms(now));
                } else {
                    self.probes = self.probes.saturating_sub(1);
                }
            }
        }
    }

    fn release(&mut self, p: RefPermit) {
        if p.phase == Phase::Probe
            && self.state == CircuitState::HalfOpen
            && self.epoch == p.epoch
            && self.probes > 0
        {
            self.probes -= 1;
        }
    }

    fn force(&mut self, to: CircuitState) {
        if to == CircuitState::Closed {
            self.clear();
        }
        self.reopens = 0;
        self.go(to);
    }
}

// ===== the ops =====

/// 2^38 ms: the span after which the breaker's wrapped deadlines repeat.
const WRAP_NS: u64 = (1 << 38) * MS;

#[derive(Debug, Clone)]
enum Op {
    /// A whole call: admit, take `ms`, record (if admitted). Most sequences are made of these,
    /// which is what carries them deep into trips, probes and re-opens.
    Call(Outcome, u64),
    Admit,
    Record(usize, Outcome),
    Drop(usize),
    Advance(u64),
    /// A fraction of a millisecond, so deadlines fall between readings.
    AdvanceNs(u64),
    /// A long quiet spell, around multiples of the deadline's wrap.
    Idle(u64),
    /// The listener panics on the next event it receives, whatever it is.
    ArmPanic,
    Isolate,
    Reset,
    Disable,
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignore),
    ];
    let duration = prop_oneof![Just(0u64), 1u64..500];
    let idle = prop_oneof![
        (1u64..4, 0u64..3_000).prop_map(|(k, ms)| k * WRAP_NS + ms * MS),
        (1u64..4, 1u64..3_000).prop_map(|(k, ms)| k * WRAP_NS - ms * MS),
        Just(WRAP_NS / 2),
        Just(8 * 24 * 3_600 * 1_000 * MS),
    ];
    prop_oneof![
        16 => (outcome.clone(), duration).prop_map(|(o, ms)| Op::Call(o, ms)),
        6 => Just(Op::Admit),
        6 => (any::<usize>(), outcome).prop_map(|(i, o)| Op::Record(i, o)),
        2 => any::<usize>().prop_map(Op::Drop),
        6 => prop_oneof![1u64..100, 100u64..3000].prop_map(Op::Advance),
        2 => (1u64..MS).prop_map(Op::AdvanceNs),
        1 => idle.prop_map(Op::Idle),
        2 => Just(Op::ArmPanic),
        1 => Just(Op::Isolate),
        1 => Just(Op::Reset),
        1 => Just(Op::Disable),
    ]
}

/// Keeps the expected panics of an armed listener out of the output, and only those.
fn quiet_armed_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"listener armed to panic") {
                default(info);
            }
        }));
    });
}

/// Runs `f`, which may reach a listener armed to panic.
fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

fn open_retry_after(r: &Rejected) -> Option<Duration> {
    match r {
        Rejected::CircuitOpen(open) => open.retry_after(),
        other => panic!("unexpected rejection {other:?}"),
    }
}

/// The breaker's retry-after against the reference's exact one: equal, or, when the breaker
/// counted from its lagging reading, longer by no more than the lag rounded up to a ms.
fn retry_after_agrees(real: Option<Duration>, exact: Option<Duration>, max_lag: Duration) -> bool {
    match (real, exact) {
        (Some(real), Some(exact)) => {
            let slack = Duration::from_millis(max_lag.as_nanos().div_ceil(1_000_000) as u64);
            exact <= real && real <= exact + slack
        }
        (real, exact) => real == exact,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn breaker_matches_reference(
        spec in spec(),
        (lag_ns, max_lag) in lag(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        quiet_armed_panics();
        let clock = ManualClock::lagging(lag_ns, max_lag);
        let listening = Arc::new(Listening::default());
        let breaker = CircuitBreaker::with_clock(config(&spec, listening.clone()), clock.clone());
        let mut reference = Reference::new(spec);
        let mut live: Vec<(OwnedCallPermit<ManualClock>, RefPermit)> = Vec::new();

        for (step, op) in ops.into_iter().enumerate() {
            let now = clock.ns();
            match op {
                Op::Call(..) | Op::Admit => {
                    let call = match op { Op::Call(outcome, ms) => Some((outcome, ms)), _ => None };
                    let real = quietly(|| breaker.try_acquire_owned());
                    let want = reference.admit(now);
                    // A call takes its time whether or not it was admitted.
                    if let Some((_, ms)) = call {
                        clock.advance_ns(ms * MS);
                    }
                    match (real, want) {
                        // The listener panicked while the call was admitted: its slot went back.
                        (None, Ok(r)) => reference.release(r),
                        (None, Err(_)) => {}
                        (Some(Ok(p)), Ok(r)) => match call {
                            Some((outcome, ms)) => {
                                quietly(|| p.record(outcome));
                                reference.finish(r, outcome, now + ms * MS);
                            }
                            None => live.push((p, r)),
                        },
                        (Some(Err(e)), Err(retry)) => prop_assert!(
                            retry_after_agrees(open_retry_after(&e), retry, max_lag),
                            "step {}: retry-after {:?} vs exact {:?}", step, open_retry_after(&e), retry
                        ),
                        (Some(real), want) => prop_assert!(false, "step {}: real {:?} vs reference {:?}", step, real.map(drop), want.map(drop)),
                    }
                }
                Op::Record(i, outcome) if !live.is_empty() => {
                    let (p, r) = live.remove(i % live.len());
                    quietly(|| p.record(outcome));
                    reference.finish(r, outcome, now);
                }
                Op::Drop(i) if !live.is_empty() => {
                    let (p, r) = live.remove(i % live.len());
                    drop(p);
                    reference.release(r);
                }
                Op::Record(..) | Op::Drop(_) => {}
                Op::Advance(ms) => clock.advance_ns(ms * MS),
                Op::AdvanceNs(ns) => clock.advance_ns(ns),
                Op::Idle(ns) => {
                    // Bounded so the full-width reference never overflows.
                    if now < 1 << 62 {
                        clock.advance_ns(ns);
                    }
                }
                Op::ArmPanic => listening.armed.store(true, Ordering::SeqCst),
                Op::Isolate => { quietly(|| breaker.isolate()); reference.force(CircuitState::Isolated); }
                Op::Reset => { quietly(|| breaker.reset()); reference.force(CircuitState::Closed); }
                Op::Disable => { quietly(|| breaker.disable()); reference.force(CircuitState::Disabled); }
            }
            prop_assert_eq!(breaker.state(), reference.observed(clock.ns()), "step {}", step);
            // The window as the metrics read it, after bucket rotations and idle spans.
            let m = breaker.metrics();
            prop_assert_eq!(
                (m.calls, m.failures, m.slow_calls),
                reference.counts(clock.ns()),
                "step {}", step
            );
            prop_assert_eq!(&*listening.log.lock().unwrap(), &reference.events, "step {}", step);
        }
        // Whatever happened, dropping every permit leaves no probe slot taken: a breaker that
        // reads half-open admits the next call.
        live.clear();
        reference.probes = 0;
        listening.armed.store(false, Ordering::SeqCst);
        if reference.observed(clock.ns()) == CircuitState::HalfOpen {
            prop_assert!(breaker.try_acquire().is_ok());
        }
    }
}
