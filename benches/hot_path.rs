//! Hot-path overhead of palisade's policies against a bare call and the Rust peers doing the
//! same work, in one criterion run. Run with `cargo bench -p palisade-benches --bench hot_path`.
//!
//! Compare figures within a group only, as ratios: the machines are shared and noisy.
//!
//! # What is measured
//!
//! Every palisade case is the policy's default configuration (`X::new(X::builder()..build())`
//! with only the settings a policy requires, such as a bulkhead's limit), unless its name or
//! its group's name says which option it uses: `palisade (MonotonicClock)` is built with
//! `with_clock(.., MonotonicClock::new())`, `palisade (default)` with `new`, whatever clock
//! that is. The breaker's trip models are separate groups, each named for its model.
//!
//! Most cases complete a call whose inner future is ready at once, so what is measured is
//! the policy's own overhead. The timeout groups also have an `inner pending once` variant:
//! the inner future is pending at its first poll (it wakes itself) and ready at its second,
//! so every timeout really arms its timer. palisade creates its timer only when the inner
//! future is pending, which makes the ready case its best case; both are shown.
//!
//! # Drivers
//!
//! Every case runs through one of the out-of-line drivers in `common` (`sync_now` for a
//! synchronous operation, `run_now` / `call_now` for a future or service that completes at
//! its first poll, `run_to_completion` / `call_to_completion` with a poll loop for one that
//! does not), and each driver `black_box`es what the case returns, rejections included.
//! Futures are built and polled inside the driver with a no-op waker and no runtime (one is
//! entered, so that tokio's timers can be created, but never run). So the retry closure
//! group's figure is one `Retry::run` future built and polled once inside `run_now`; inside
//! an executor each call would add the executor's own cost, the same for every contender.
//!
//! # Threads
//!
//! Breaker and bulkhead admission also run on 2 threads, in two variants, each its own group:
//!
//! - `, 2 threads, fixed count`: each thread does criterion's iteration count of calls.
//! - `, 2 threads, fixed time`: both threads call for the same wall-clock window and count
//!   their calls. A fixed count lets one thread finish early and run the rest uncontended,
//!   which hides a peer's lock convoy; a fixed window keeps both contending to the end.
//!
//! Both report the aggregate wall time per call across both threads (see
//! [`per_call_on_threads_fixed_count`] and [`per_call_on_threads_fixed_time`]): lower is
//! better, and a figure at or below the group's 1-thread figure means the operation scales.
//! The layer groups run on one thread only: a tower service is driven through `&mut self`,
//! so two threads would measure two services.
//!
//! # Retry layer: which comparison is like for like
//!
//! palisade's retry handle always shares its state between clones (its counters, and its
//! budget when one is set), so each call through the layer writes shared state. tower's retry
//! with a stateless policy writes nothing shared and is the floor; tower's retry whose policy
//! holds a shared `TpsBudget` does shared writes on every call too, and is the like-for-like
//! peer (named so, and given its own row in the README). `Retry::leak`, which made the handle
//! `'static` to skip the shared writes, was removed by the one-shape issue (#18), so there is
//! no leaked-handle case any more.
//!
//! # Naming
//!
//! The report (`common::report`) tells cases apart by the start of their name, so keep to it:
//! `palisade…` is ours, `bare…` is the group's baseline, anything else is a peer, and a peer
//! whose name contains `(like for like)` is compared in the README even when a faster peer
//! exists. Every group has exactly one baseline; it is the work without any policy (the call
//! or service alone), or, where a policy does nothing but bookkeeping, the least any
//! implementation must do (one clock read for an open breaker, one atomic add and sub for a
//! concurrency limit). A group holds one model of a policy, so that "best peer" compares like
//! with like.
//!
//! # Report
//!
//! After the run, `main` writes `benches/RESULTS.md` (every case) and the summary table between
//! the `<!-- bench:start -->` and `<!-- bench:end -->` markers of `README.md` (every palisade
//! case), but only when every case has an estimate from this run; with a filter it says so and
//! leaves both files alone.
//!
//! # Rate limiter
//!
//! palisade's rate limiter against governor's direct (unkeyed) limiter, each on its default
//! clock: admitted under a rate no case reaches (a CAS on one word each), and refused once
//! the bucket is empty; and keyed, on a key already in the map: palisade's `Keyed` (papaya)
//! against governor's keyed limiter (dashmap).

use std::cell::OnceCell;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;

mod common;
use common::report::{self, group};
use common::{
    Echo, PendingOnceEcho, call_now, call_to_completion, pending_once, poll_now, run_now,
    run_to_completion, sync_now,
};
use palisade::Rejected;
use palisade::timeout::{DEFAULT_TIMEOUT, Timeout};
use tower::{BoxError, Layer};

fn timeout_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // tokio's sleep (used eagerly by tower and tokio) needs the runtime's handle in scope.
    let _guard = rt.enter();
    // The default duration, the same for every contender.
    let limit = DEFAULT_TIMEOUT;
    let timeout = Timeout::new(Timeout::builder().build().unwrap());

    let mut g = group(c, "timeout/future, inner ready");
    g.bench_function("bare", |b| {
        b.iter(|| run_now(|| ready(Ok::<_, Rejected>(black_box(1u64)))))
    });
    g.bench_function("palisade run_once", |b| {
        b.iter(|| run_now(|| timeout.run_once(ready(Ok::<_, Rejected>(black_box(1u64))))))
    });
    g.bench_function("tokio::time::timeout", |b| {
        b.iter(|| {
            run_now(|| tokio::time::timeout(limit, ready(Ok::<_, Rejected>(black_box(1u64)))))
        })
    });
    g.finish();

    // Pending at the first poll: every contender arms its timer, then drops it.
    let mut g = group(c, "timeout/future, inner pending once");
    g.bench_function("bare", |b| {
        b.iter(|| run_to_completion(|| pending_once(Ok::<_, Rejected>(black_box(1u64)))))
    });
    g.bench_function("palisade run_once", |b| {
        b.iter(|| {
            run_to_completion(|| timeout.run_once(pending_once(Ok::<_, Rejected>(black_box(1u64)))))
        })
    });
    g.bench_function("tokio::time::timeout", |b| {
        b.iter(|| {
            run_to_completion(|| {
                tokio::time::timeout(limit, pending_once(Ok::<_, Rejected>(black_box(1u64))))
            })
        })
    });
    g.finish();

    let mut g = group(c, "timeout/layer, inner ready");
    let mut bare = Echo;
    g.bench_function("bare service", |b| {
        b.iter(|| call_now(&mut bare, black_box(1)))
    });
    let mut ours = timeout.layer().layer(Echo);
    g.bench_function("palisade TimeoutLayer", |b| {
        b.iter(|| call_now(&mut ours, black_box(1)))
    });
    let mut tower_timeout = tower::timeout::TimeoutLayer::new(limit).layer(Echo);
    g.bench_function("tower TimeoutLayer", |b| {
        b.iter(|| call_now(&mut tower_timeout, black_box(1)))
    });
    let time_limiter = tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(limit)
        .build();
    let mut tr = time_limiter.clone().layer(Echo);
    g.bench_function("tower-resilience TimeLimiter", |b| {
        b.iter(|| call_now(&mut tr, black_box(1)))
    });
    g.finish();

    let mut g = group(c, "timeout/layer, inner pending once");
    let mut bare = PendingOnceEcho;
    g.bench_function("bare service", |b| {
        b.iter(|| call_to_completion(&mut bare, black_box(1)))
    });
    let mut ours = timeout.layer().layer(PendingOnceEcho);
    g.bench_function("palisade TimeoutLayer", |b| {
        b.iter(|| call_to_completion(&mut ours, black_box(1)))
    });
    let mut tower_timeout = tower::timeout::TimeoutLayer::new(limit).layer(PendingOnceEcho);
    g.bench_function("tower TimeoutLayer", |b| {
        b.iter(|| call_to_completion(&mut tower_timeout, black_box(1)))
    });
    let mut tr = time_limiter.layer(PendingOnceEcho);
    g.bench_function("tower-resilience TimeLimiter", |b| {
        b.iter(|| call_to_completion(&mut tr, black_box(1)))
    });
    g.finish();
}

/// How a group runs its cases: on one thread, or on two in one of two ways.
#[derive(Clone, Copy)]
enum Threads {
    One,
    /// Each of 2 threads does a fixed number of calls.
    TwoFixedCount,
    /// 2 threads call for the same fixed window of wall time.
    TwoFixedTime,
}

impl Threads {
    const ALL: [Threads; 3] = [Threads::One, Threads::TwoFixedCount, Threads::TwoFixedTime];

    /// The group's name; `common::report` recognises the 2-thread groups by ", 2 threads".
    fn group_name(self, name: &str) -> String {
        match self {
            Threads::One => name.to_owned(),
            Threads::TwoFixedCount => format!("{name}, 2 threads, fixed count"),
            Threads::TwoFixedTime => format!("{name}, 2 threads, fixed time"),
        }
    }
}

/// The groups `name` on one thread, `name, 2 threads, fixed count` and `name, 2 threads,
/// fixed time`, each with the cases `cases` adds through [`case`].
fn on_one_and_two_threads(
    c: &mut Criterion,
    name: &str,
    mut cases: impl FnMut(&mut report::Group<'_>, Threads),
) {
    for threads in Threads::ALL {
        let mut g = group(c, &threads.group_name(name));
        cases(&mut g, threads);
        g.finish();
    }
}

/// One case of a synchronous operation, each call through [`sync_now`]. Generic rather than
/// `dyn` so that every case is built alike: a virtual call is a large share of a few
/// nanoseconds.
fn case<R>(g: &mut report::Group<'_>, threads: Threads, name: &str, op: &(impl Fn() -> R + Sync)) {
    match threads {
        Threads::One => {
            g.bench_function(name, |b| b.iter(|| sync_now(op)));
        }
        Threads::TwoFixedCount => {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| per_call_on_threads_fixed_count(2, iters, op))
            });
        }
        Threads::TwoFixedTime => {
            // Measured once per case, when criterion first runs it (not when a filter skips it).
            let cost = OnceCell::new();
            g.bench_function(name, |b| {
                let cost = *cost.get_or_init(|| cost_on_one_thread(op));
                b.iter_custom(|iters| per_call_on_threads_fixed_time(2, iters, cost, op))
            });
        }
    }
}

/// Aggregate cost per call with `threads` threads each doing `iters` calls of `op` at once:
/// the wall time from the first thread's start to the last one's end, over all calls, so a
/// figure at or below the 1-thread one means the operation scales. A thread that finishes
/// first leaves the other to run its last calls uncontended; see
/// [`per_call_on_threads_fixed_time`].
fn per_call_on_threads_fixed_count<R>(
    threads: u32,
    iters: u64,
    op: &(impl Fn() -> R + Sync),
) -> Duration {
    let arrived = AtomicU32::new(0);
    let start = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start_together(&arrived, threads);
                start.lock().unwrap().get_or_insert_with(Instant::now);
                for _ in 0..iters {
                    sync_now(op);
                }
            });
        }
    });
    let started = start.into_inner().unwrap().unwrap();
    started.elapsed() / threads
}

/// Aggregate cost per call with `threads` threads calling `op` for the same window of wall
/// time, so both contend until the end. The window is criterion's iteration count at `cost`
/// (the 1-thread time per call), so a sample lasts about as long as criterion plans, but at
/// least a millisecond, so that a thread's start or a preemption is a small share of it; the
/// figure returned is `iters` times the aggregate time per call (the wall time over all the
/// calls made), so criterion's per-iteration estimate is that time per call.
fn per_call_on_threads_fixed_time<R>(
    threads: u32,
    iters: u64,
    cost: Duration,
    op: &(impl Fn() -> R + Sync),
) -> Duration {
    let window = cost.mul_f64(iters as f64).max(Duration::from_millis(1));
    // Read the clock about once a microsecond: rare enough to cost under 2 % of the calls
    // on a VM whose clock read takes 20 ns, often enough that a thread overruns the window
    // by a microsecond at most.
    let batch = (1000.0 / (cost.as_secs_f64() * 1e9)).clamp(1.0, 65_536.0) as u64;
    let arrived = AtomicU32::new(0);
    let start = std::sync::Mutex::new(None);
    let (calls, end) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start_together(&arrived, threads);
                    let deadline = *start.lock().unwrap().get_or_insert_with(Instant::now) + window;
                    let mut calls = 0u64;
                    loop {
                        for _ in 0..batch {
                            sync_now(op);
                        }
                        calls += batch;
                        let now = Instant::now();
                        if now >= deadline {
                            return (calls, now);
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).fold(
            (0, None),
            |(calls, end): (u64, Option<Instant>), (n, at)| {
                (calls + n, Some(end.map_or(at, |e| e.max(at))))
            },
        )
    });
    let started = start.into_inner().unwrap().unwrap();
    let per_call = end.unwrap().duration_since(started).as_secs_f64() / calls as f64;
    Duration::from_secs_f64(per_call * iters as f64)
}

/// Returns once all `threads` have called it, to each within about a microsecond. A
/// `Barrier` wakes its waiters through the scheduler, which on the shared machines took up
/// to a few milliseconds: longer than many samples, so that one thread often ran alone.
fn start_together(arrived: &AtomicU32, threads: u32) {
    arrived.fetch_add(1, Ordering::AcqRel);
    while arrived.load(Ordering::Acquire) < threads {
        // Not a bare spin: the thread still to arrive may need this CPU to start.
        std::thread::yield_now();
    }
}

/// `op`'s time per call on one thread, over about 20 ms after a short warm-up: the scale
/// that turns criterion's iteration counts into windows of wall time.
fn cost_on_one_thread<R>(op: &impl Fn() -> R) -> Duration {
    const BATCH: u32 = 1024;
    let run = |d: Duration| {
        let start = Instant::now();
        let mut calls = 0u32;
        while start.elapsed() < d {
            for _ in 0..BATCH {
                sync_now(op);
            }
            calls += BATCH;
        }
        start.elapsed() / calls
    };
    run(Duration::from_millis(5));
    run(Duration::from_millis(20)).max(Duration::from_nanos(1))
}

fn breaker_benches(c: &mut Criterion) {
    use palisade::circuit_breaker::{CircuitBreaker, TripModel};
    use palisade::clock::{CoarseClock, MonotonicClock};

    // Closed with a consecutive or count model, a breaker reads no clock.
    let consecutive = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(5)
            .build()
            .unwrap(),
    );
    let count_window = CircuitBreaker::new(
        CircuitBreaker::builder()
            .trip_model(TripModel::CountWindow {
                size: 100,
                failure_ratio: 0.5,
                minimum_calls: 100,
            })
            .build()
            .unwrap(),
    );
    // A time window reads the clock on every call, so it runs on the default clock (`new`)
    // and on the opt-in `MonotonicClock`.
    let time_window = CircuitBreaker::builder()
        .failures_within(5, Duration::from_secs(30))
        .build()
        .unwrap();
    let time_window = (
        CircuitBreaker::new(time_window.clone()),
        CircuitBreaker::with_clock(time_window, MonotonicClock::new()),
    );
    let failsafe_consecutive = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            5,
            failsafe::backoff::constant(Duration::from_secs(5)),
        ))
        .build();
    let recloser = recloser::Recloser::custom()
        .closed_len(100)
        .error_rate(0.5)
        .build();

    let failsafe_call = || {
        use failsafe::CircuitBreaker as _;
        failsafe_consecutive
            .call(|| Ok::<_, ()>(black_box(1)))
            .unwrap()
    };
    let recloser_call = || recloser.call(|| Ok::<_, ()>(black_box(1))).unwrap();

    // The call the peers wrap, with no breaker around it.
    let bare_call = || Ok::<_, ()>(black_box(1));
    const OURS: &str = "palisade try_acquire + success";
    const DEFAULT: &str = "palisade try_acquire + success (default)";
    const MONOTONIC: &str = "palisade try_acquire + success (MonotonicClock)";
    // One group per trip model, so that "best peer" is a peer with the same model.
    on_one_and_two_threads(
        c,
        "breaker/closed admit+record, consecutive failures",
        |g, t| {
            case(g, t, "bare call", &bare_call);
            case(g, t, OURS, &|| consecutive.try_acquire().unwrap().success());
            case(g, t, "failsafe consecutive", &failsafe_call);
        },
    );
    on_one_and_two_threads(
        c,
        "breaker/closed admit+record, count window (100)",
        |g, t| {
            case(g, t, "bare call", &bare_call);
            case(g, t, OURS, &|| {
                count_window.try_acquire().unwrap().success()
            });
            case(g, t, "recloser ring (100)", &recloser_call);
        },
    );
    // No peer keeps failure counts over a time window.
    on_one_and_two_threads(
        c,
        "breaker/closed admit+record, time window (failures within 30 s)",
        |g, t| {
            case(g, t, "bare call", &bare_call);
            case(g, t, DEFAULT, &|| {
                time_window.0.try_acquire().unwrap().success()
            });
            case(g, t, MONOTONIC, &|| {
                time_window.1.try_acquire().unwrap().success()
            });
        },
    );

    // Open: every call is rejected. An hour's break, so that no case sees it end.
    let open_config = || {
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let open_default = CircuitBreaker::new(open_config());
    let open_monotonic = CircuitBreaker::with_clock(open_config(), MonotonicClock::new());
    // The opt-in coarse clock: a few ms of granularity everywhere, a cheaper read.
    let open_coarse = CircuitBreaker::with_clock(open_config(), CoarseClock::new());
    open_default.try_acquire().unwrap().failure();
    open_monotonic.try_acquire().unwrap().failure();
    open_coarse.try_acquire().unwrap().failure();
    let failsafe_open = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            1,
            failsafe::backoff::constant(Duration::from_secs(3600)),
        ))
        .build();
    {
        use failsafe::CircuitBreaker as _;
        let _ = failsafe_open.call(|| Err::<(), _>(()));
    }
    let recloser_open = recloser::Recloser::custom()
        .closed_len(1)
        .open_wait(Duration::from_secs(3600))
        .build();
    for _ in 0..2 {
        let _ = recloser_open.call(|| Err::<(), _>(()));
    }
    // The floor for any breaker whose open state ends on time: one exact reading of the clock.
    let clock = MonotonicClock::new();
    let clock_read = || {
        use palisade::clock::Clock;
        clock.now()
    };
    // Each case returns its rejection (the driver `black_box`es it); that they are
    // rejections is checked once here, outside the measurement.
    let reject_default = || open_default.try_acquire();
    let reject_monotonic = || open_monotonic.try_acquire();
    let reject_coarse = || open_coarse.try_acquire();
    let reject_failsafe = || {
        use failsafe::CircuitBreaker as _;
        failsafe_open.call(|| Ok::<_, ()>(()))
    };
    let reject_recloser = || recloser_open.call(|| Ok::<_, ()>(()));
    assert!(reject_default().is_err() && reject_monotonic().is_err());
    assert!(reject_coarse().is_err() && reject_failsafe().is_err());
    assert!(reject_recloser().is_err());
    on_one_and_two_threads(c, "breaker/open reject", |g, t| {
        case(g, t, "bare clock read (MonotonicClock::now)", &clock_read);
        case(g, t, "palisade (default)", &reject_default);
        case(g, t, "palisade (MonotonicClock)", &reject_monotonic);
        case(g, t, "palisade (CoarseClock)", &reject_coarse);
        case(g, t, "failsafe", &reject_failsafe);
        case(g, t, "recloser", &reject_recloser);
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = group(c, "breaker/layer");
    let mut bare = Echo;
    g.bench_function("bare service", |b| {
        b.iter(|| call_now(&mut bare, black_box(1)))
    });
    // The default model, consecutive failures (5), is the one tower-resilience is given.
    let breaker = CircuitBreaker::new(CircuitBreaker::builder().build().unwrap());
    let mut ours = breaker.layer().layer(Echo);
    g.bench_function("palisade CircuitBreakerLayer", |b| {
        b.iter(|| call_now(&mut ours, black_box(1)))
    });
    let mut theirs = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .build()
        .unwrap()
        .layer(Echo);
    g.bench_function("tower-resilience CircuitBreakerLayer", |b| {
        b.iter(|| call_now(&mut theirs, black_box(1)))
    });
    g.finish();
}

fn bulkhead_benches(c: &mut Criterion) {
    use palisade::bulkhead::Bulkhead;

    // A limit no case reaches; fail-fast (no queue) is the default.
    let ours = Bulkhead::new(Bulkhead::builder().max_concurrent(1024).build().unwrap());
    let tokio_sem = tokio::sync::Semaphore::new(1024);
    // Each returns its permit, released when the driver drops it.
    let ours_op = || ours.try_acquire().unwrap();
    let tokio_op = || tokio_sem.try_acquire().unwrap();

    // The floor for any counting limiter: one atomic add to enter, one sub to leave.
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let bare = || {
        use std::sync::atomic::Ordering::{Acquire, Release};
        let counter = black_box(&counter);
        counter.fetch_add(1, Acquire);
        counter.fetch_sub(1, Release)
    };
    on_one_and_two_threads(c, "bulkhead/fail-fast acquire+release", |g, t| {
        case(g, t, "bare atomic add+sub", &bare);
        case(g, t, "palisade try_acquire", &ours_op);
        case(g, t, "tokio Semaphore::try_acquire", &tokio_op);
    });

    // Queue enabled, slot free: the future completes at its first poll.
    let queued = Bulkhead::new(
        Bulkhead::builder()
            .max_concurrent(1024)
            .max_queue(64)
            .build()
            .unwrap(),
    );
    let queued_op = || poll_now(queued.acquire()).unwrap();
    let tokio_queued_op = || poll_now(tokio_sem.acquire()).unwrap();
    on_one_and_two_threads(
        c,
        "bulkhead/queue-enabled acquire+release (slot free)",
        |g, t| {
            case(g, t, "bare atomic add+sub", &bare);
            case(g, t, "palisade acquire", &queued_op);
            case(g, t, "tokio Semaphore::acquire", &tokio_queued_op);
        },
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = group(c, "bulkhead/layer");
    let mut bare = Echo;
    g.bench_function("bare service", |b| {
        b.iter(|| call_now(&mut bare, black_box(1)))
    });
    let mut ours = ours.layer().layer(Echo);
    g.bench_function("palisade BulkheadLayer", |b| {
        b.iter(|| call_now(&mut ours, black_box(1)))
    });
    let mut tower_limit = tower::limit::ConcurrencyLimitLayer::new(1024).layer(Echo);
    g.bench_function("tower ConcurrencyLimitLayer", |b| {
        b.iter(|| call_now(&mut tower_limit, black_box(1)))
    });
    let mut theirs = tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(1024)
        .build()
        .unwrap()
        .layer(Echo);
    g.bench_function("tower-resilience BulkheadLayer", |b| {
        b.iter(|| call_now(&mut theirs, black_box(1)))
    });
    g.finish();
}

fn rate_limiter_benches(c: &mut Criterion) {
    use governor::{Quota, RateLimiter as Governor};
    use palisade::rate_limiter::RateLimiter;
    use std::num::NonZeroU32;

    // A rate and a burst no case reaches: every call is admitted.
    let huge = NonZeroU32::new(1 << 29).unwrap();
    let ours = RateLimiter::new(
        RateLimiter::builder()
            .rate(1 << 29, Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let theirs = Governor::direct(Quota::per_second(huge));
    let ours_op = || ours.try_acquire();
    let theirs_op = || theirs.check();
    // The default clock's exact reading, the one an admission into a full bucket takes.
    let clock = palisade::clock::TscClock::new();
    let bare = || palisade::clock::Clock::now(black_box(&clock));
    on_one_and_two_threads(c, "rate_limiter/admitted", |g, t| {
        case(g, t, "bare clock read (TscClock::now)", &bare);
        case(g, t, "palisade try_acquire", &ours_op);
        case(g, t, "governor check", &theirs_op);
    });

    // One call an hour, already taken: every call is refused.
    let ours_empty = RateLimiter::new(
        RateLimiter::builder()
            .rate(1, Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    ours_empty.try_acquire().unwrap();
    let theirs_empty = Governor::direct(Quota::per_hour(NonZeroU32::new(1).unwrap()));
    theirs_empty.check().unwrap();
    let ours_refused = || ours_empty.try_acquire();
    let theirs_refused = || theirs_empty.check();
    on_one_and_two_threads(c, "rate_limiter/refused", |g, t| {
        case(g, t, "bare clock read (TscClock::now)", &bare);
        case(g, t, "palisade try_acquire", &ours_refused);
        case(g, t, "governor check", &theirs_refused);
    });

    // Per key, on a key already in the map (both threads on the same key): palisade's
    // papaya map and lease around the same limiter, governor's dashmap keyed limiter.
    let ours_keyed: palisade::keyed::Keyed<u64, _> =
        palisade::keyed::Keyed::new(palisade::keyed::KeyedConfig::default(), ours.clone());
    ours_keyed.try_acquire(&7).unwrap();
    let theirs_keyed = Governor::keyed(Quota::per_second(huge));
    theirs_keyed.check_key(&7).unwrap();
    let ours_keyed_op = || ours_keyed.try_acquire(black_box(&7));
    let theirs_keyed_op = || theirs_keyed.check_key(black_box(&7));
    on_one_and_two_threads(c, "rate_limiter/keyed, existing key", |g, t| {
        case(g, t, "bare clock read (TscClock::now)", &bare);
        case(g, t, "palisade Keyed::try_acquire", &ours_keyed_op);
        case(g, t, "governor keyed check_key", &theirs_keyed_op);
    });
}

fn retry_benches(c: &mut Criterion) {
    use palisade::retry::Retry;

    let ours = Retry::new(Retry::builder().build().unwrap());
    // Each future is built and polled once inside `run_now`, with a no-op waker and no
    // runtime: the figure is the retry's own work, not an executor's.
    let mut g = group(c, "retry/closure, first attempt succeeds");
    g.bench_function("bare future", |b| {
        b.iter(|| run_now(|| ready(Ok::<_, Rejected>(black_box(1u64)))))
    });
    g.bench_function("palisade run", |b| {
        b.iter(|| run_now(|| ours.run(|| ready(Ok::<_, Rejected>(black_box(1u64))))))
    });
    g.bench_function("backon Retryable", |b| {
        use backon::Retryable;
        let builder = backon::ExponentialBuilder::default();
        b.iter(|| run_now(|| (|| ready(Ok::<_, Rejected>(black_box(1u64)))).retry(builder)))
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = group(c, "retry/layer, first attempt succeeds");
    let mut bare = Echo;
    g.bench_function("bare service", |b| {
        b.iter(|| call_now(&mut bare, black_box(1)))
    });
    let mut layered = ours.layer().layer(Echo);
    g.bench_function("palisade RetryLayer", |b| {
        b.iter(|| call_now(&mut layered, black_box(1)))
    });
    // The floor: a stateless policy writes nothing shared.
    let mut tower_retry = tower::retry::RetryLayer::new(Attempts(3)).layer(Echo);
    g.bench_function("tower RetryLayer, stateless policy", |b| {
        b.iter(|| call_now(&mut tower_retry, black_box(1)))
    });
    // The like-for-like peer: palisade's retry always shares state between clones (its
    // counters, and the budget when set), and tower's does when its policy holds a shared
    // budget. (`Retry::leak`, which let palisade skip the shared writes, went with #18.)
    let budget = std::sync::Arc::new(tower::retry::budget::TpsBudget::new(
        Duration::from_secs(10),
        1,
        0.2,
    ));
    let mut tower_budgeted = tower::retry::RetryLayer::new(Budgeted {
        attempts: 3,
        budget,
    })
    .layer(Echo);
    g.bench_function("tower RetryLayer, shared TpsBudget (like for like)", |b| {
        b.iter(|| call_now(&mut tower_budgeted, black_box(1)))
    });
    let mut theirs = tower_resilience::retry::RetryLayer::<u64, u64, BoxError>::builder()
        .max_attempts(3)
        .build()
        .layer(Echo);
    g.bench_function("tower-resilience RetryLayer", |b| {
        b.iter(|| call_now(&mut theirs, black_box(1)))
    });
    g.finish();
}

/// tower's retry policy for the comparison: up to `n` attempts on any error, no delay.
#[derive(Clone)]
struct Attempts(u32);

impl tower::retry::Policy<u64, u64, BoxError> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, BoxError>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's retry policy with a shared budget: a deposit per call, a withdrawal per retry.
#[derive(Clone)]
struct Budgeted {
    attempts: u32,
    budget: std::sync::Arc<tower::retry::budget::TpsBudget>,
}

impl tower::retry::Policy<u64, u64, BoxError> for Budgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, BoxError>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.attempts > 1 && self.budget.withdraw() => {
                self.attempts -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn stack_benches(c: &mut Criterion) {
    use palisade::bulkhead::Bulkhead;
    use palisade::circuit_breaker::CircuitBreaker;
    use palisade::pipeline::Pipeline;
    use palisade::retry::Retry;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let retry = Retry::new(Retry::builder().build().unwrap());
    let breaker = CircuitBreaker::new(CircuitBreaker::builder().build().unwrap());
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1024).build().unwrap());
    let timeout = Timeout::new(Timeout::builder().build().unwrap());

    let fallback =
        palisade::fallback::Fallback::new(palisade::fallback::Fallback::builder().build().unwrap());
    let pipeline = Pipeline::builder()
        .retry(retry.clone())
        .circuit_breaker(breaker.clone())
        .bulkhead(bulkhead.clone())
        .timeout(timeout.clone())
        .fallback(fallback.clone())
        .build();
    // Fallback, retry, breaker, bulkhead and timeout, in that order. The closure and the tower
    // forms are separate groups, each with its own bare baseline.
    let mut g = group(c, "stack/closure, 5 policies, happy path");
    g.bench_function("bare future", |b| {
        b.iter(|| run_now(|| ready(Ok::<_, Rejected>(black_box(1u64)))))
    });
    g.bench_function("palisade Pipeline::run", |b| {
        b.iter(|| {
            run_now(|| {
                pipeline
                    .run(|| ready(Ok::<_, Rejected>(black_box(1u64))))
                    .or_value(0)
            })
        })
    });
    g.finish();

    let mut g = group(c, "stack/layer, 5 policies, happy path");
    let mut bare = Echo;
    g.bench_function("bare service", |b| {
        b.iter(|| call_now(&mut bare, black_box(1)))
    });
    let mut stack = tower::ServiceBuilder::new()
        .layer(fallback.layer().or_value(0))
        .layer(retry.layer())
        .layer(breaker.layer())
        .layer(bulkhead.layer())
        .layer(timeout.layer())
        .service(Echo);
    g.bench_function("palisade tower stack", |b| {
        b.iter(|| call_now(&mut stack, black_box(1)))
    });
    // The same five policies from tower-resilience, in the same order.
    // Its boxed futures may need more than one poll even around a ready service (they hop
    // through its async mutex), hence the poll loop.
    let mut theirs = common::tower_resilience_stack();
    g.bench_function("tower-resilience tower stack", |b| {
        b.iter(|| call_to_completion(&mut theirs, black_box(1)))
    });
    g.finish();
}

fn main() {
    // Estimates older than this belong to an earlier or filtered run (see `common::report`).
    let started = std::time::SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    timeout_benches(&mut c);
    breaker_benches(&mut c);
    bulkhead_benches(&mut c);
    rate_limiter_benches(&mut c);
    retry_benches(&mut c);
    stack_benches(&mut c);
    c.final_summary();
    if report::is_bench_run() {
        report::write_hot_path(started);
    }
}
