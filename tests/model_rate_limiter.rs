//! The real rate limiter against an integer reference model: random sequences of weighted
//! acquisitions and clock moves (week-long idle spells included) must admit the same calls
//! and refuse the others with the same `retry_after`, to the nanosecond.
//!
//! The model is a token bucket kept the plain way: a level in nanoseconds of refill (one
//! token is `period / count` of it, rounded up), refilled as time passes and capped at the
//! burst. The limiter keeps no level at all, only the time its bucket would be full again.

#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade::clock::{Clock, FakeClock, Ticks};
use palisade::error::LimitCause;
use palisade::rate_limiter::RateLimiter;
use palisade::{Rejected, timer::TokioTimer};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Debug, Clone)]
enum Op {
    Acquire(u32),
    Advance(u64),
    /// Nothing happens for a week.
    Idle,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0u32..8).prop_map(Op::Acquire),
            4 => (0u64..2_000_000_000).prop_map(Op::Advance),
            1 => Just(Op::Idle),
        ],
        1..150,
    )
}

/// A clock whose cheap reading moves in ticks of `TICK` behind the exact one, as the kernel's
/// coarse clock does, and which counts its exact readings.
#[derive(Debug, Clone)]
struct TickClock {
    exact: FakeClock,
    exact_reads: Arc<AtomicU64>,
    lagging_reads: Arc<AtomicU64>,
}

const TICK: Duration = Duration::from_millis(4);

impl Clock for TickClock {
    fn now(&self) -> Ticks {
        self.exact_reads.fetch_add(1, Ordering::Relaxed);
        self.exact.now()
    }

    fn now_lagging(&self) -> Ticks {
        self.lagging_reads.fetch_add(1, Ordering::Relaxed);
        let ns = self.exact.now().as_nanos();
        Ticks::from_nanos(ns - ns % TICK.as_nanos() as u64)
    }

    fn max_lag(&self) -> Duration {
        TICK
    }
}

/// Runs `ops` on `limiter` (whose clock follows `exact`) and on the model, with callers that
/// never wait: the same admissions, the same causes, counters and tokens, and each
/// `retry_after` from the model's wait up to `slack` longer (a clock's lag).
fn admits_and_refuses_as_the_model_does<C: Clock>(
    limiter: &RateLimiter<TokioTimer, C>,
    exact: &FakeClock,
    mut model: Bucket,
    ops: Vec<Op>,
    slack: Duration,
) -> Result<(), TestCaseError> {
    let (mut admitted, mut limited) = (0u64, 0u64);
    for (id, op) in ops.into_iter().enumerate() {
        match op {
            Op::Advance(ns) => exact.advance(Duration::from_nanos(ns)),
            Op::Idle => exact.advance(Duration::from_secs(7 * 86_400)),
            Op::Acquire(cost) => {
                let now = exact.now().as_nanos();
                match (limiter.try_acquire_n(cost), model.take(id, cost, now)) {
                    (Ok(()), Got::Now) => admitted += 1,
                    (Err(Rejected::RateLimited(got)), Got::Refused(want)) => {
                        limited += 1;
                        match want {
                            None => {
                                prop_assert_eq!(got.cause(), LimitCause::CostAboveBurst);
                                prop_assert_eq!(got.retry_after(), None);
                            }
                            Some(wait) => {
                                prop_assert_eq!(got.cause(), LimitCause::OverRate);
                                let after = got.retry_after().unwrap().as_nanos();
                                prop_assert!(
                                    after >= wait && after - wait <= slack.as_nanos(),
                                    "{} against {}",
                                    after,
                                    wait
                                );
                            }
                        }
                    }
                    (got, want) => {
                        prop_assert!(false, "cost {}: {:?} against {:?}", cost, got, want)
                    }
                }
            }
        }
        let m = limiter.metrics();
        model.refill(exact.now().as_nanos());
        prop_assert_eq!(m.tokens, model.tokens());
        prop_assert_eq!((m.admitted, m.limited), (admitted, limited));
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_limiter_admits_and_refuses_as_the_model_does(
        count in 1u32..1_000,
        period_ms in 1u64..10_000,
        burst in 1u32..6,
        ops in ops(),
    ) {
        let clock = FakeClock::new();
        let limiter = RateLimiter::with_timer_and_clock(
            RateLimiter::builder()
                .rate(count, Duration::from_millis(period_ms))
                .burst(burst)
                .build()
                .unwrap(),
            TokioTimer,
            clock.clone(),
        );
        let model = Bucket::new(count, period_ms, burst, 0);
        admits_and_refuses_as_the_model_does(&limiter, &clock, model, ops, Duration::ZERO)?;
    }

    #[test]
    fn a_clock_with_a_cheap_lagging_reading_changes_no_admission(
        count in 1u32..1_000,
        period_ms in 1u64..10_000,
        burst in 1u32..6,
        ops in ops(),
    ) {
        let exact = FakeClock::new();
        let clock = TickClock {
            exact: exact.clone(),
            exact_reads: Arc::default(),
            lagging_reads: Arc::default(),
        };
        let limiter = RateLimiter::with_timer_and_clock(
            RateLimiter::builder()
                .rate(count, Duration::from_millis(period_ms))
                .burst(burst)
                .build()
                .unwrap(),
            TokioTimer,
            clock,
        );
        let model = Bucket::new(count, period_ms, burst, 0);
        // Counted from the lagging reading: never shorter, at most a tick longer.
        admits_and_refuses_as_the_model_does(&limiter, &exact, model, ops, TICK)?;
    }
}

/// Ten calls a second, a burst of ten, on `clock`.
fn ten_a_second(clock: TickClock) -> RateLimiter<TokioTimer, TickClock> {
    RateLimiter::with_timer_and_clock(
        RateLimiter::builder()
            .rate(10, Duration::from_secs(1))
            .build()
            .unwrap(),
        TokioTimer,
        clock,
    )
}

#[test]
fn refusals_of_an_empty_bucket_never_read_the_exact_clock() {
    let exact = FakeClock::new();
    let reads = Arc::new(AtomicU64::new(0));
    let clock = TickClock {
        exact: exact.clone(),
        exact_reads: reads.clone(),
        lagging_reads: Arc::default(),
    };
    let limiter = ten_a_second(clock);
    exact.advance(Duration::from_secs(1));
    // A full bucket: the first admission reads the exact clock to count from it, and so
    // the next one reads it first too, finds the bucket short of full, and goes back to
    // the lagging reading.
    limiter.try_acquire().unwrap();
    assert_eq!(reads.load(Ordering::Relaxed), 1);
    // Nine more drain it; the TAT is ahead of every reading now.
    for _ in 0..9 {
        limiter.try_acquire().unwrap();
    }
    assert_eq!(reads.load(Ordering::Relaxed), 2);
    for _ in 0..100 {
        assert!(limiter.try_acquire().is_err());
    }
    assert_eq!(
        reads.load(Ordering::Relaxed),
        2,
        "a refusal read the exact clock"
    );
}

#[test]
fn a_limiter_that_is_not_limiting_reads_one_clock_per_admission() {
    // Its bucket is full at every call, so every admission needs the exact reading; after
    // the first, it takes that one alone, not the lagging one as well.
    let exact = FakeClock::new();
    let (exact_reads, lagging_reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clock = TickClock {
        exact: exact.clone(),
        exact_reads: exact_reads.clone(),
        lagging_reads: lagging_reads.clone(),
    };
    let limiter = ten_a_second(clock);
    for _ in 0..50 {
        exact.advance(Duration::from_secs(2));
        limiter.try_acquire().unwrap();
    }
    let (exact_reads, lagging_reads) = (
        exact_reads.load(Ordering::Relaxed),
        lagging_reads.load(Ordering::Relaxed),
    );
    assert_eq!(exact_reads, 50);
    assert_eq!(
        lagging_reads, 1,
        "only the first admission tried the lagging reading"
    );
    assert_eq!(limiter.metrics().admitted, 50);
}

/// A sleep that ends when the fake clock reaches its deadline (polled by hand).
struct ClockSleep {
    clock: FakeClock,
    until: Ticks,
}

impl std::future::Future for ClockSleep {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.clock.now() >= self.until {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

/// The reference: a token bucket kept the plain way, as a level in nanoseconds of refill
/// (one token is `period / count` of it, rounded up), refilled as time passes and capped at
/// the burst. Callers that wait may take it below zero, down to `-max_wait`; a stack of the
/// takes that moved it says which can be given back: only the top (the real limiter gives
/// a turn back only while no later one was taken). With `max_wait` zero it never goes below
/// zero.
#[derive(Debug)]
struct Bucket {
    level: i128,
    emission: i128,
    burst: u32,
    max_wait: i128,
    at: u64,
    stack: Vec<(usize, i128)>,
}

#[derive(Debug, PartialEq)]
enum Got {
    Now,
    Later(u128),
    Refused(Option<u128>),
}

impl Bucket {
    fn new(count: u32, period_ms: u64, burst: u32, max_wait_ms: u64) -> Bucket {
        let emission = i128::from((period_ms * 1_000_000).div_ceil(u64::from(count)));
        Bucket {
            level: emission * i128::from(burst),
            emission,
            burst,
            max_wait: i128::from(max_wait_ms) * 1_000_000,
            at: 0,
            stack: Vec::new(),
        }
    }

    /// Whole tokens now (after a `refill`).
    fn tokens(&self) -> u32 {
        (self.level.max(0) / self.emission) as u32
    }

    fn refill(&mut self, now: u64) {
        let full = self.emission * i128::from(self.burst);
        self.level = (self.level + i128::from(now - self.at)).min(full);
        self.at = now;
    }

    fn take(&mut self, id: usize, cost: u32, now: u64) -> Got {
        self.refill(now);
        if cost > self.burst {
            return Got::Refused(None);
        }
        if cost == 0 {
            return Got::Now;
        }
        let need = self.emission * i128::from(cost);
        if self.level >= need {
            self.level -= need;
            self.stack.push((id, need));
            return Got::Now;
        }
        let wait = need - self.level;
        if wait <= self.max_wait {
            self.level -= need;
            self.stack.push((id, need));
            Got::Later(wait as u128)
        } else {
            Got::Refused(Some(wait as u128))
        }
    }

    fn give_back(&mut self, id: usize, now: u64) {
        self.refill(now);
        if self.stack.last().is_some_and(|&(top, _)| top == id) {
            let (_, need) = self.stack.pop().unwrap();
            let full = self.emission * i128::from(self.burst);
            self.level = (self.level + need).min(full);
        }
    }
}

#[derive(Debug, Clone)]
enum WaitOp {
    Acquire(u32),
    Cancel(usize),
    Advance(u64),
}

proptest! {
    #[test]
    fn waits_and_cancelled_waits_match_a_bucket_with_debt(
        count in 1u32..100,
        period_ms in 1u64..2_000,
        burst in 1u32..4,
        max_wait_ms in 0u64..3_000,
        ops in prop::collection::vec(prop_oneof![
            5 => (0u32..5).prop_map(WaitOp::Acquire),
            2 => any::<usize>().prop_map(WaitOp::Cancel),
            3 => (0u64..1_500_000_000).prop_map(WaitOp::Advance),
        ], 1..80),
    ) {
        let clock = FakeClock::new();
        let sleeps = clock.clone();
        let timer = move |d: Duration| ClockSleep { clock: sleeps.clone(), until: sleeps.now() + d };
        let limiter = RateLimiter::with_timer_and_clock(
            RateLimiter::builder()
                .rate(count, Duration::from_millis(period_ms))
                .burst(burst)
                .max_wait(Duration::from_millis(max_wait_ms))
                .build()
                .unwrap(),
            timer,
            clock.clone(),
        );
        let mut model = Bucket::new(count, period_ms, burst, max_wait_ms);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        // Waiters still waiting, by id, with their due time.
        let mut waiting: Vec<(usize, u64, std::pin::Pin<Box<_>>)> = Vec::new();
        let mut admitted = 0u64;
        for (id, op) in ops.into_iter().enumerate() {
            let now = clock.now().as_nanos();
            match op {
                WaitOp::Acquire(cost) => {
                    let want = model.take(id, cost, now);
                    let mut fut = Box::pin(limiter.acquire_n(cost));
                    let got = match fut.as_mut().poll(&mut cx) {
                        std::task::Poll::Ready(Ok(())) => Got::Now,
                        std::task::Poll::Ready(Err(Rejected::RateLimited(l))) => {
                            Got::Refused(l.retry_after().map(|d| d.as_nanos()))
                        }
                        std::task::Poll::Ready(Err(other)) => panic!("{other:?}"),
                        std::task::Poll::Pending => match want {
                            Got::Later(wait) => {
                                waiting.push((id, now + wait as u64, fut));
                                Got::Later(wait)
                            }
                            _ => Got::Later(u128::MAX),
                        },
                    };
                    prop_assert_eq!(&got, &want, "op {}", id);
                    if got == Got::Now {
                        admitted += 1;
                    }
                }
                WaitOp::Cancel(i) => {
                    if !waiting.is_empty() {
                        let (id, _, fut) = waiting.remove(i % waiting.len());
                        drop(fut);
                        model.give_back(id, now);
                    }
                }
                WaitOp::Advance(ns) => clock.advance(Duration::from_nanos(ns)),
            }
            // Every waiter whose turn has come is done when polled, and no other.
            let now = clock.now().as_nanos();
            let mut still = Vec::new();
            for (id, due, mut fut) in waiting.drain(..) {
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(Ok(())) => {
                        prop_assert!(now >= due, "waiter {} done at {} before {}", id, now, due);
                        admitted += 1;
                    }
                    std::task::Poll::Ready(Err(e)) => prop_assert!(false, "a waiter refused: {:?}", e),
                    std::task::Poll::Pending => {
                        prop_assert!(now < due, "waiter {} still waiting at {} after {}", id, now, due);
                        still.push((id, due, fut));
                    }
                }
            }
            waiting = still;
            model.refill(now);
            prop_assert_eq!(limiter.metrics().tokens, model.tokens());
            prop_assert_eq!(limiter.metrics().admitted, admitted);
        }
    }
}
