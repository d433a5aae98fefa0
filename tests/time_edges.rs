//! Probes of the rate limiter, the per-key map and the clocks at the edges of time: readings
//! at the top of the u64 range, clocks whose lagging reading lags by exactly its bound (or
//! not at all, or whose bound is huge), readings that go back, timers that fire late, idle
//! times of a nanosecond, maps full of busy keys for hours. No state may get stuck for any
//! idle span or traffic pattern, and a lagging reading may never change an admission.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::Rejected;
use palisade::clock::{Clock, FakeClock, Ticks};
use palisade::keyed::{Keyed, KeyedConfig};
use palisade::rate_limiter::RateLimiter;

type NoWait = fn(Duration) -> std::future::Ready<()>;

fn no_wait(_: Duration) -> std::future::Ready<()> {
    std::future::ready(())
}

fn config(
    count: u32,
    period: Duration,
    burst: u32,
    max_wait: Duration,
) -> palisade::rate_limiter::RateLimiterConfig {
    RateLimiter::builder()
        .rate(count, period)
        .burst(burst)
        .max_wait(max_wait)
        .build()
        .unwrap()
}

/// Runs `f` on a thread of its own and fails if it has not returned after a generous bound:
/// a probe for a loop that never ends (the bound is no timing assertion; it only stands in
/// for "forever").
fn returns<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what}: still running after 20 s (spinning for ever?)"))
}

// ===== the top of the clock's range =====

/// A FakeClock advanced by `Duration::MAX` reads `Ticks::MAX` (the clock saturates). An
/// admission there moves the bucket's TAT to `now + T`, which saturates to `u64::MAX`: the
/// value a per-key map writes to retire a bucket. The key's next `try_acquire` was then told
/// "retired, look again", found the same entry (nothing had removed it) and spun for ever.
#[test]
fn a_keyed_limiter_at_the_end_of_the_clock_never_spins_for_ever() {
    let outcome = returns("keyed try_acquire at Ticks::MAX", || {
        let clock = FakeClock::new();
        let limiter = RateLimiter::with_timer_and_clock(
            config(10, Duration::from_secs(1), 2, Duration::ZERO),
            no_wait as NoWait,
            clock.clone(),
        );
        let keyed: Keyed<u32, _, _> =
            Keyed::with_clock(KeyedConfig::default(), limiter, clock.clone());
        keyed.try_acquire(&1).unwrap();
        clock.advance(Duration::MAX);
        (0..5)
            .map(|_| keyed.try_acquire(&1).is_ok())
            .collect::<Vec<_>>()
    });
    assert!(
        outcome[0],
        "a bucket idle for centuries is full: {outcome:?}"
    );
}

/// The same a few nanoseconds short of the end, where `now + T` overflows the word without
/// the clock itself having saturated.
#[test]
fn a_keyed_limiter_a_token_short_of_the_end_of_the_clock_never_spins_for_ever() {
    let outcome = returns("keyed try_acquire near Ticks::MAX", || {
        let clock = FakeClock::new();
        let limiter = RateLimiter::with_timer_and_clock(
            config(10, Duration::from_secs(1), 2, Duration::ZERO),
            no_wait as NoWait,
            clock.clone(),
        );
        let keyed: Keyed<u32, _, _> =
            Keyed::with_clock(KeyedConfig::default(), limiter, clock.clone());
        clock.set(Ticks::from_nanos(u64::MAX - 50_000_000));
        (0..5)
            .map(|_| keyed.try_acquire(&1).is_ok())
            .collect::<Vec<_>>()
    });
    assert!(outcome[0], "{outcome:?}");
}

/// A plain limiter whose clock has saturated cannot be limited exactly any more (no later
/// turn is representable); it must not refuse for ever, nor panic.
#[test]
fn a_limiter_at_the_end_of_the_clock_is_never_refused_for_ever() {
    let clock = FakeClock::new();
    let limiter = RateLimiter::with_timer_and_clock(
        config(1, Duration::from_secs(3600), 1, Duration::ZERO),
        no_wait as NoWait,
        clock.clone(),
    );
    limiter.try_acquire().unwrap();
    clock.advance(Duration::MAX);
    assert!(
        limiter.try_acquire().is_ok(),
        "idle for centuries: a full bucket"
    );
    let _ = limiter.metrics();
}

/// A clock with an origin far in the past: the same decisions as one that started at zero,
/// as long as the readings stay a refill span (at most 2^62 ns) short of the end.
#[test]
fn decisions_do_not_depend_on_where_the_clock_started() {
    for offset in [0, 1 << 40, u64::MAX / 2, u64::MAX - (1 << 62) - (1 << 50)] {
        let base = FakeClock::new();
        let shifted = FakeClock::new();
        shifted.set(Ticks::from_nanos(offset));
        let cfg = config(7, Duration::from_millis(700), 3, Duration::ZERO);
        let a = RateLimiter::with_timer_and_clock(cfg.clone(), no_wait as NoWait, base.clone());
        let b = RateLimiter::with_timer_and_clock(cfg, no_wait as NoWait, shifted.clone());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..5_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let cost = (rng % 4) as u32;
            let ra = a.try_acquire_n(cost);
            let rb = b.try_acquire_n(cost);
            assert_eq!(
                ra.map_err(|e| e.retry_after()),
                rb.map_err(|e| e.retry_after()),
                "offset {offset}, step {step}"
            );
            let d = Duration::from_nanos((rng >> 20) % 300_000_000);
            base.advance(d);
            shifted.advance(d);
        }
    }
}

// ===== lagging readings =====

/// How a [`Lagging`] clock's cheap reading relates to its exact one.
#[derive(Debug, Clone, Copy)]
enum Lag {
    /// Lags by exactly `max_lag` (clamped at the origin).
    Exactly(Duration),
    /// Does not lag, though `max_lag` says it may.
    None(Duration),
    /// Reads the origin, under a bound of `Duration::MAX`.
    Unbounded,
}

/// A clock over `exact` whose lagging reading follows `lag`, counting its readings.
#[derive(Debug, Clone)]
struct Lagging {
    exact: FakeClock,
    lag: Lag,
    reads: Arc<AtomicU64>,
}

impl Clock for Lagging {
    fn now(&self) -> Ticks {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.exact.now()
    }

    fn now_lagging(&self) -> Ticks {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match self.lag {
            Lag::Exactly(d) => self.exact.now().saturating_sub(d),
            Lag::None(_) => self.exact.now(),
            Lag::Unbounded => Ticks::ZERO,
        }
    }

    fn max_lag(&self) -> Duration {
        match self.lag {
            Lag::Exactly(d) | Lag::None(d) => d,
            Lag::Unbounded => Duration::MAX,
        }
    }
}

/// A timer that records each wait and does not sleep.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Duration>>>);

impl Recorded {
    fn timer(&self) -> impl Fn(Duration) -> std::future::Ready<()> + Clone + Send + Sync + 'static {
        let waits = self.0.clone();
        move |d| {
            waits.lock().unwrap().push(d);
            std::future::ready(())
        }
    }
}

/// What one call got: admitted (after a wait, zero for none), or refused with a
/// `retry_after`.
fn outcome(r: Result<(), Rejected>, waits: &Recorded) -> Result<Duration, Option<Duration>> {
    let wait = waits.0.lock().unwrap().pop().unwrap_or_default();
    r.map(|()| wait).map_err(|e| e.retry_after())
}

/// Every kind of lagging reading gives the exact clock's admissions and waits; a refusal's
/// `retry_after` is the exact one, or up to the lag longer (documented), never shorter.
#[test]
fn a_lagging_reading_never_changes_an_admission_or_a_wait() {
    let lags = [
        Lag::Exactly(Duration::from_millis(4)),
        Lag::Exactly(Duration::from_nanos(1)),
        Lag::Exactly(Duration::from_secs(1)),
        Lag::Exactly(Duration::from_secs(10_000)),
        Lag::None(Duration::from_millis(4)),
        Lag::None(Duration::from_nanos(1)),
        Lag::Unbounded,
    ];
    for lag in lags {
        for (count, period, burst, max_wait) in [
            (10, Duration::from_secs(1), 5, Duration::ZERO),
            (10, Duration::from_secs(1), 1, Duration::from_millis(250)),
            (3, Duration::from_nanos(3), 2, Duration::from_nanos(2)),
            (
                1,
                Duration::from_secs(86_400),
                2,
                Duration::from_secs(86_400),
            ),
        ] {
            let cfg = config(count, period, burst, max_wait);
            let exact = FakeClock::new();
            let (wa, wb) = (Recorded::default(), Recorded::default());
            let a = RateLimiter::with_timer_and_clock(cfg.clone(), wa.timer(), exact.clone());
            let lagging = Lagging {
                exact: exact.clone(),
                lag,
                reads: Arc::default(),
            };
            let b = RateLimiter::with_timer_and_clock(cfg, wb.timer(), lagging.clone());
            let slack = match lag {
                Lag::Exactly(d) | Lag::None(d) => d,
                Lag::Unbounded => Duration::MAX,
            };
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            let mut decisions = 0u64;
            for step in 0..4_000 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let cost = (rng % 3) as u32;
                let (oa, ob) = if rng & 8 == 0 {
                    (
                        outcome(a.try_acquire_n(cost), &wa),
                        outcome(b.try_acquire_n(cost), &wb),
                    )
                } else {
                    (
                        outcome(
                            futures_util::FutureExt::now_or_never(a.acquire_n(cost)).unwrap(),
                            &wa,
                        ),
                        outcome(
                            futures_util::FutureExt::now_or_never(b.acquire_n(cost)).unwrap(),
                            &wb,
                        ),
                    )
                };
                decisions += 1;
                let ctx = format!(
                    "{lag:?} {count}/{period:?} burst {burst} wait {max_wait:?} step {step}"
                );
                match (oa, ob) {
                    (Ok(x), Ok(y)) => assert_eq!(x, y, "{ctx}: waits differ"),
                    (Err(Some(x)), Err(Some(y))) => {
                        assert!(
                            y >= x && y - x <= slack,
                            "{ctx}: retry_after {y:?} against {x:?}"
                        )
                    }
                    (x, y) => assert_eq!(x.map(drop), y.map(drop), "{ctx}: decisions differ"),
                }
                // Mostly small steps (a busy limiter), some of a period, a few of a day.
                let d = match (rng >> 8) % 16 {
                    0 => Duration::from_secs(86_400),
                    1..=3 => period,
                    _ => Duration::from_nanos((rng >> 16) % (period.as_nanos() as u64 / 2 + 2)),
                };
                exact.advance(d);
            }
            let reads = lagging.reads.load(Ordering::Relaxed);
            assert!(
                reads <= 2 * decisions,
                "{lag:?}: {reads} reads for {decisions} decisions"
            );
        }
    }
}

// ===== which reading a decision takes first =====

/// A clock whose lagging reading moves in ticks of `tick` behind `exact` (the kernel's
/// coarse clock), counting each kind of reading.
#[derive(Debug, Clone)]
struct Ticking {
    exact: FakeClock,
    tick: u64,
    exact_reads: Arc<AtomicU64>,
    lagging_reads: Arc<AtomicU64>,
}

impl Ticking {
    fn new(exact: &FakeClock, tick: Duration) -> Self {
        Ticking {
            exact: exact.clone(),
            tick: tick.as_nanos() as u64,
            exact_reads: Arc::default(),
            lagging_reads: Arc::default(),
        }
    }

    fn reads(&self) -> (u64, u64) {
        (
            self.exact_reads.load(Ordering::Relaxed),
            self.lagging_reads.load(Ordering::Relaxed),
        )
    }
}

impl Clock for Ticking {
    fn now(&self) -> Ticks {
        self.exact_reads.fetch_add(1, Ordering::Relaxed);
        self.exact.now()
    }

    fn now_lagging(&self) -> Ticks {
        self.lagging_reads.fetch_add(1, Ordering::Relaxed);
        let ns = self.exact.now().as_nanos();
        Ticks::from_nanos(ns - ns % self.tick)
    }

    fn max_lag(&self) -> Duration {
        Duration::from_nanos(self.tick)
    }
}

/// Reads per decision for a pattern of calls, each `(advance, cost, waits)`.
fn reads_per_decision(
    cfg: palisade::rate_limiter::RateLimiterConfig,
    calls: impl Iterator<Item = (Duration, u32, bool)>,
) -> (f64, u64, u64, u64) {
    let exact = FakeClock::new();
    let clock = Ticking::new(&exact, Duration::from_millis(4));
    let limiter = RateLimiter::with_timer_and_clock(cfg, no_wait as NoWait, clock.clone());
    let mut n = 0;
    let mut admitted = 0;
    for (advance, cost, waits) in calls {
        exact.advance(advance);
        let r = if waits {
            futures_util::FutureExt::now_or_never(limiter.acquire_n(cost)).unwrap()
        } else {
            limiter.try_acquire_n(cost)
        };
        admitted += u64::from(r.is_ok());
        n += 1;
    }
    let (e, l) = clock.reads();
    ((e + l) as f64 / n as f64, e, l, admitted)
}

/// Reads per decision under steady patterns, against a clock whose lagging reading ticks
/// every 4 ms. A decision needs one reading, the lagging or the exact one; which one it
/// tries first is a one-bit guess from the last decision, so a pattern that alternates
/// between a full bucket and a refusal pays both readings every other call (1.5), and
/// nothing pays them on every call. A limiter whose callers all wait needs the exact
/// reading for every wait: it paid both on every other call (1.5) while the guess was
/// reset by each wait into a bucket short of full.
#[test]
fn which_reading_comes_first_settles_most_decisions_with_one_reading() {
    let ms = Duration::from_millis;
    type Case = (
        &'static str,
        f64,
        palisade::rate_limiter::RateLimiterConfig,
        Vec<(Duration, u32, bool)>,
    );
    let cases: Vec<Case> = vec![
        (
            "waiting, every call waits (twice the rate)",
            1.0,
            config(10, Duration::from_secs(1), 1, Duration::from_secs(3600)),
            (0..10_000).map(|_| (ms(50), 1, true)).collect(),
        ),
        (
            "waiting, burst 5, twice the rate",
            1.0,
            config(10, Duration::from_secs(1), 5, Duration::from_secs(3600)),
            (0..10_000).map(|_| (ms(50), 1, true)).collect(),
        ),
        (
            "not limiting (half the rate)",
            1.0,
            config(10, Duration::from_secs(1), 10, Duration::ZERO),
            (0..10_000).map(|_| (ms(200), 1, false)).collect(),
        ),
        (
            "refusing, tight loop 1 ms, 100/s",
            1.2,
            config(100, Duration::from_secs(1), 10, Duration::ZERO),
            (0..10_000).map(|_| (ms(1), 1, false)).collect(),
        ),
        (
            "at the rate exactly, burst 10",
            1.0,
            config(100, Duration::from_secs(1), 10, Duration::ZERO),
            (0..10_000).map(|_| (ms(10), 1, false)).collect(),
        ),
        (
            "bursts of 10 after quiet spells",
            1.1,
            config(100, Duration::from_secs(1), 10, Duration::ZERO),
            (0..10_000)
                .map(|i| (if i % 10 == 0 { ms(500) } else { Duration::ZERO }, 1, false))
                .collect(),
        ),
        (
            "alternating full and refused",
            1.5,
            config(100, Duration::from_secs(1), 2, Duration::ZERO),
            (0..10_000)
                .map(|i| (if i % 2 == 0 { ms(30) } else { Duration::ZERO }, 2, false))
                .collect(),
        ),
    ];
    for (name, bound, cfg, calls) in cases {
        let (per_decision, exact, lagging, _) = reads_per_decision(cfg, calls.into_iter());
        assert!(
            per_decision <= bound + 0.001,
            "{name}: {per_decision:.3} reads a decision (exact {exact}, lagging {lagging}), above {bound}"
        );
    }
}

// ===== the per-key map =====

fn keyed_on(
    clock: &FakeClock,
    max_keys: u32,
    idle: Duration,
    cfg: palisade::rate_limiter::RateLimiterConfig,
) -> Keyed<u32, RateLimiter<NoWait, FakeClock>, FakeClock> {
    let limiter = RateLimiter::with_timer_and_clock(cfg, no_wait as NoWait, clock.clone());
    let config = KeyedConfig::builder()
        .max_keys(max_keys)
        .idle(idle)
        .build()
        .unwrap();
    Keyed::with_clock(config, limiter, clock.clone())
}

/// Runs a call on `key` through the keyed `run` (which holds a lease, noted at its end).
fn run_on(
    keyed: &Keyed<u32, RateLimiter<NoWait, FakeClock>, FakeClock>,
    key: u32,
) -> Result<(), Rejected> {
    futures_util::FutureExt::now_or_never(keyed.run(&key, || async { Ok::<_, Rejected>(()) }))
        .unwrap()
}

/// A lease ending at the end of the clock notes its end time: that must not overflow (the
/// touch compared `now` with `last + granule` unsaturated, a panic in a debug build, in the
/// lease's drop).
#[test]
fn a_lease_ending_at_the_end_of_the_clock_does_not_overflow() {
    let clock = FakeClock::new();
    let keyed = keyed_on(
        &clock,
        4,
        Duration::from_secs(60),
        config(10, Duration::from_secs(1), 10, Duration::ZERO),
    );
    run_on(&keyed, 1).unwrap();
    clock.advance(Duration::MAX);
    run_on(&keyed, 1).unwrap();
    run_on(&keyed, 1).unwrap();
    run_on(&keyed, 2).unwrap();
    keyed.evict_idle();
}

/// An idle time of one nanosecond: a key is evicted exactly once its bucket has been full
/// for that nanosecond, not a nanosecond before, and the map never stays full.
#[test]
fn a_one_nanosecond_idle_time_evicts_at_its_boundary_exactly() {
    let clock = FakeClock::new();
    // One token each 100 ms: a call leaves the bucket full again 100 ms later.
    let keyed = keyed_on(
        &clock,
        1,
        Duration::from_nanos(1),
        config(10, Duration::from_secs(1), 10, Duration::ZERO),
    );
    keyed.try_acquire(&1).unwrap();
    clock.advance(Duration::from_millis(100));
    assert!(
        matches!(keyed.try_acquire(&2), Err(Rejected::TooManyKeys(_))),
        "key 1 is full again only now: not yet idle for a nanosecond"
    );
    clock.advance(Duration::from_nanos(1));
    keyed.try_acquire(&2).unwrap();
    assert!(!keyed.contains_key(&1));
    // The same through a lease.
    clock.advance(Duration::from_millis(100));
    run_on(&keyed, 2).unwrap();
    clock.advance(Duration::from_millis(100));
    assert!(matches!(run_on(&keyed, 3), Err(Rejected::TooManyKeys(_))));
    clock.advance(Duration::from_nanos(1));
    run_on(&keyed, 3).unwrap();
}

/// A map full of busy keys for three hours refuses every new key all along, and takes one
/// again within an idle time and a quarter (the eviction pace) plus a refill of the last
/// busy key going quiet.
#[test]
fn a_map_full_of_busy_keys_for_hours_then_drains() {
    let clock = FakeClock::new();
    let idle = Duration::from_secs(10);
    let keyed = keyed_on(
        &clock,
        8,
        idle,
        config(10, Duration::from_secs(1), 10, Duration::ZERO),
    );
    for second in 0..3 * 3600u32 {
        for key in 0..8 {
            // Half the keys through try_acquire (no lease), half through run (a lease).
            if key % 2 == 0 {
                keyed.try_acquire(&key).unwrap();
            } else {
                run_on(&keyed, key).unwrap();
            }
        }
        assert!(
            matches!(
                keyed.try_acquire(&(100 + second)),
                Err(Rejected::TooManyKeys(_))
            ),
            "second {second}: a busy key was evicted"
        );
        clock.advance(Duration::from_secs(1));
    }
    // Quiet: a new key is refused while the old ones may be busy, then taken.
    let quiet_from = clock.now();
    let mut taken_after = None;
    for ms in 0..60_000u64 {
        if keyed.try_acquire(&1_000_000).is_ok() {
            taken_after = Some(clock.now().saturating_duration_since(quiet_from));
            break;
        }
        let _ = ms;
        clock.advance(Duration::from_millis(1));
    }
    let taken_after = taken_after.expect("a map of quiet keys never took a new one");
    assert!(
        taken_after <= idle + idle / 4 + Duration::from_millis(101),
        "took {taken_after:?}"
    );
    clock.advance(idle * 2);
    keyed.evict_idle();
    assert!(
        keyed.len() <= 1,
        "{} keys left after two idle times",
        keyed.len()
    );
}

// ===== waiters on paused time =====

/// Waiters whose timers fire an hour late (the runtime was busy, or paused time jumped):
/// each is admitted once, and after the quiet spell the bucket is full, not owed.
#[tokio::test(start_paused = true)]
async fn waiters_whose_timers_fire_an_hour_late_leave_a_full_bucket() {
    let limiter = Arc::new(RateLimiter::new(config(
        10,
        Duration::from_secs(1),
        5,
        Duration::from_secs(1),
    )));
    for _ in 0..5 {
        limiter.try_acquire().unwrap();
    }
    // Ten waiters reserve the next second's turns; none has run past its reservation.
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire().await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert!(
        limiter.try_acquire().is_err(),
        "the next second is reserved"
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    for w in waiters {
        w.await.unwrap().unwrap();
    }
    let m = limiter.metrics();
    assert_eq!((m.admitted, m.tokens), (15, 5));
    for _ in 0..5 {
        limiter.try_acquire().unwrap();
    }
    assert!(limiter.try_acquire().is_err());
}

/// A one-nanosecond emission interval: waits below tokio's millisecond resolution end
/// late, never stuck, and the limiter never owes more than it reserved.
#[tokio::test(start_paused = true)]
async fn a_one_nanosecond_interval_with_waiters_never_gets_stuck() {
    let limiter = Arc::new(RateLimiter::new(config(
        1,
        Duration::from_nanos(1),
        1,
        Duration::from_nanos(50),
    )));
    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire().await.is_ok() })
        })
        .collect();
    let mut admitted = 0;
    for w in waiters {
        admitted += u64::from(w.await.unwrap());
    }
    assert!(admitted >= 51, "{admitted}");
    tokio::time::advance(Duration::from_nanos(1)).await;
    limiter.try_acquire().unwrap();
    // A week of quiet on the slowest rate.
    let daily = RateLimiter::new(config(
        1,
        Duration::from_secs(86_400),
        2,
        Duration::from_secs(86_400),
    ));
    daily.acquire_n(2).await.unwrap();
    let start = tokio::time::Instant::now();
    daily.acquire().await.unwrap();
    // Tokio's timer ends a sleep on its millisecond grid, and the nanosecond steps above
    // left the clock off it: up to a millisecond late, never early.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(86_400) && waited <= Duration::from_millis(86_400_001));
    assert!(daily.try_acquire().is_err());
    tokio::time::advance(Duration::from_secs(7 * 86_400)).await;
    daily.acquire_n(2).await.unwrap();
}

// ===== clocks that break their contract =====

/// A clock that goes back (a contract violation): no panic, and once it has passed its
/// earlier reading again, the limiter and the map behave as before.
#[test]
fn a_clock_that_goes_back_holds_still_then_recovers() {
    #[derive(Debug, Clone)]
    struct Jumpy(Arc<AtomicU64>);
    impl Clock for Jumpy {
        fn now(&self) -> Ticks {
            Ticks::from_nanos(self.0.load(Ordering::Relaxed))
        }
        fn now_lagging(&self) -> Ticks {
            Ticks::from_nanos(self.0.load(Ordering::Relaxed).saturating_sub(3))
        }
        fn max_lag(&self) -> Duration {
            Duration::from_nanos(3)
        }
    }
    let t = Arc::new(AtomicU64::new(0));
    let clock = Jumpy(t.clone());
    let limiter = RateLimiter::with_timer_and_clock(
        config(10, Duration::from_secs(1), 2, Duration::ZERO),
        no_wait as NoWait,
        clock.clone(),
    );
    let keyed: Keyed<u32, _, _> = Keyed::with_clock(
        KeyedConfig::builder()
            .max_keys(1)
            .idle(Duration::from_secs(1))
            .build()
            .unwrap(),
        limiter.clone(),
        clock.clone(),
    );
    let hour = 3_600_000_000_000u64;
    t.store(hour, Ordering::Relaxed);
    limiter.try_acquire_n(2).unwrap();
    keyed.try_acquire(&1).unwrap();
    // Back to the origin: refusals, a map that keeps its key, no panic.
    t.store(0, Ordering::Relaxed);
    let r = limiter.try_acquire().unwrap_err();
    assert!(r.retry_after().unwrap() > Duration::from_secs(3599));
    assert!(matches!(
        keyed.try_acquire(&2),
        Err(Rejected::TooManyKeys(_))
    ));
    assert_eq!(keyed.evict_idle(), 0);
    let _ = limiter.metrics();
    // Past the earlier reading again: as if the clock had stood still meanwhile.
    t.store(hour + 200_000_000, Ordering::Relaxed);
    limiter.try_acquire_n(2).unwrap();
    t.store(hour + 200_000_000 + 1_100_000_000, Ordering::Relaxed);
    keyed.try_acquire(&2).unwrap();
}
