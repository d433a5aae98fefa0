//! Hot-path overhead of palisade's policies against a bare call and the Rust peers doing the
//! same work, in one criterion run. Run with `cargo bench -p palisade-benches --bench hot_path`.
//!
//! Every case completes a call whose inner future is ready at once, so what is measured is the
//! policy's own overhead. Compare figures within a group only, as ratios: the machines are
//! shared and noisy.
//!
//! # Naming
//!
//! The report (`common::report`) tells cases apart by the start of their name, so keep to it:
//! `palisade…` is ours, `bare…` is the group's baseline, anything else is a peer. Every group
//! has exactly one baseline; it is the work without any policy (the call or service alone), or,
//! where a policy does nothing but bookkeeping, the least any implementation must do (one clock
//! read for an open breaker, one atomic add and sub for a concurrency limit). A group holds one
//! model of a policy, so that "best peer" compares like with like; the breaker's consecutive,
//! count-window and time-window models are separate groups.
//!
//! Breaker and bulkhead admission run on 1 and 2 threads (`, 2 threads`: the aggregate wall
//! time per operation, see [`per_op_on_threads`]). The layer groups run on one thread only: a
//! tower service is driven through `&mut self`, so two threads would measure two services.
//!
//! # Report
//!
//! After the run, `main` writes `benches/RESULTS.md` (every case) and the summary table between
//! the `<!-- bench:start -->` and `<!-- bench:end -->` markers of `README.md`, but only when every
//! case has an estimate from this run; with a filter it says so and leaves both files alone.
//!
//! # Not compared
//!
//! governor is a rate limiter and palisade has none yet, so no group would compare like with
//! like; it gets a group with the rate limiter.

use std::future::{Ready, ready};
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;

mod common;
use common::report::{self, group};
use common::{Echo, call_now, poll_now, run_now};
use palisade::Rejected;
use palisade::timeout::{Timeout, TimeoutConfig};
use tower::{BoxError, Layer};

fn timeout_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // tokio's sleep (used eagerly by tower and tokio) needs the runtime's handle in scope.
    let _guard = rt.enter();
    let limit = Duration::from_secs(1);
    let timeout = Timeout::new(TimeoutConfig::builder().duration(limit).build().unwrap());

    let mut g = group(c, "timeout/future");
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

    let mut g = group(c, "timeout/layer");
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
    let mut tr = tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(limit)
        .build()
        .layer(Echo);
    g.bench_function("tower-resilience TimeLimiter", |b| {
        b.iter(|| call_now(&mut tr, black_box(1)))
    });
    g.finish();
}

/// Two groups for a synchronous operation, `name` on one thread and `name, 2 threads`, each
/// with the baseline, palisade's case and at most one peer. Generic rather than `dyn` so that
/// every case is inlined alike: a virtual call is a large share of a few nanoseconds.
fn on_one_and_two_threads<B, O, P>(
    c: &mut Criterion,
    name: &str,
    bare: (&str, B),
    ours: (&str, O),
    peer: Option<(&str, P)>,
) where
    B: Fn() + Sync,
    O: Fn() + Sync,
    P: Fn() + Sync,
{
    fn case(g: &mut report::Group<'_>, threads: u32, name: &str, op: &(impl Fn() + Sync)) {
        if threads == 1 {
            g.bench_function(name, |b| b.iter(op));
        } else {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| per_op_on_threads(threads, iters, op))
            });
        }
    }
    for threads in [1, 2] {
        let mut g = match threads {
            1 => group(c, name),
            n => group(c, &format!("{name}, {n} threads")),
        };
        case(&mut g, threads, bare.0, &bare.1);
        case(&mut g, threads, ours.0, &ours.1);
        if let Some((peer_name, op)) = &peer {
            case(&mut g, threads, peer_name, op);
        }
        g.finish();
    }
}

/// Aggregate cost per operation with `threads` threads doing `op` at once: wall time over
/// all operations, so a figure at or below the 1-thread one means the operation scales.
fn per_op_on_threads(threads: u32, iters: u64, op: &(impl Fn() + Sync)) -> Duration {
    let barrier = std::sync::Barrier::new(threads as usize);
    let start = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                start
                    .lock()
                    .unwrap()
                    .get_or_insert_with(std::time::Instant::now);
                for _ in 0..iters {
                    op();
                }
            });
        }
    });
    let started = start.into_inner().unwrap().unwrap();
    started.elapsed() / threads
}

fn breaker_benches(c: &mut Criterion) {
    use palisade::circuit_breaker::{CircuitBreaker, TripModel};
    use palisade::clock::MonotonicClock;

    let consecutive = CircuitBreaker::with_clock(
        CircuitBreaker::builder()
            .consecutive_failures(5)
            .build()
            .unwrap(),
        MonotonicClock::new(),
    );
    let count_window = CircuitBreaker::with_clock(
        CircuitBreaker::builder()
            .trip_model(TripModel::CountWindow {
                size: 100,
                failure_ratio: 0.5,
                minimum_calls: 100,
            })
            .build()
            .unwrap(),
        MonotonicClock::new(),
    );
    let time_window = CircuitBreaker::with_clock(
        CircuitBreaker::builder()
            .failures_within(5, Duration::from_secs(30))
            .build()
            .unwrap(),
        MonotonicClock::new(),
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

    let ours_consecutive = || consecutive.try_acquire().unwrap().success();
    let ours_count = || count_window.try_acquire().unwrap().success();
    let ours_time = || time_window.try_acquire().unwrap().success();
    let failsafe_call = || {
        use failsafe::CircuitBreaker as _;
        failsafe_consecutive
            .call(|| Ok::<_, ()>(black_box(1)))
            .unwrap();
    };
    let recloser_call = || {
        recloser.call(|| Ok::<_, ()>(black_box(1))).unwrap();
    };

    // The call the peers wrap, with no breaker around it.
    let bare_call = || {
        black_box(Ok::<_, ()>(black_box(1))).unwrap();
    };
    // One group per trip model, so that "best peer" is a peer with the same model.
    let bare = ("bare call", bare_call);
    let ours = "palisade try_acquire + success";
    on_one_and_two_threads(
        c,
        "breaker/closed admit+record, consecutive failures",
        bare,
        (ours, ours_consecutive),
        Some(("failsafe consecutive", failsafe_call)),
    );
    on_one_and_two_threads(
        c,
        "breaker/closed admit+record, count window (100)",
        bare,
        (ours, ours_count),
        Some(("recloser ring (100)", recloser_call)),
    );
    // No peer keeps failure counts over a time window.
    on_one_and_two_threads(
        c,
        "breaker/closed admit+record, time window (failures within 30 s)",
        bare,
        (ours, ours_time),
        None::<(&str, fn())>,
    );

    // Open: every call is rejected.
    consecutive.isolate();
    let open = CircuitBreaker::with_clock(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(3600))
            .build()
            .unwrap(),
        MonotonicClock::new(),
    );
    open.try_acquire().unwrap().failure();
    // The same breaker on the opt-in coarse clock (a few ms of granularity, a cheaper read).
    let open_coarse = CircuitBreaker::with_clock(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(3600))
            .build()
            .unwrap(),
        palisade::clock::CoarseClock::new(),
    );
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
    let mut g = group(c, "breaker/open reject");
    // The floor for any breaker whose open state ends on time: one reading of the clock.
    let clock = MonotonicClock::new();
    let clock_read = || {
        use palisade::clock::Clock;
        black_box(clock.now());
    };
    g.bench_function("bare clock read", |b| b.iter(clock_read));
    g.bench_function("palisade", |b| {
        b.iter(|| assert!(open.try_acquire().is_err()))
    });
    g.bench_function("palisade (CoarseClock)", |b| {
        b.iter(|| assert!(open_coarse.try_acquire().is_err()))
    });
    g.bench_function("failsafe", |b| {
        use failsafe::CircuitBreaker as _;
        b.iter(|| assert!(failsafe_open.call(|| Ok::<_, ()>(())).is_err()))
    });
    g.bench_function("recloser", |b| {
        b.iter(|| assert!(recloser_open.call(|| Ok::<_, ()>(())).is_err()))
    });
    g.finish();

    let mut g = group(c, "breaker/open reject, 2 threads");
    g.bench_function("bare clock read", |b| {
        b.iter_custom(|iters| per_op_on_threads(2, iters, &clock_read))
    });
    g.bench_function("palisade", |b| {
        b.iter_custom(|iters| per_op_on_threads(2, iters, &|| assert!(open.try_acquire().is_err())))
    });
    g.bench_function("palisade (CoarseClock)", |b| {
        b.iter_custom(|iters| {
            per_op_on_threads(2, iters, &|| assert!(open_coarse.try_acquire().is_err()))
        })
    });
    g.bench_function("failsafe", |b| {
        use failsafe::CircuitBreaker as _;
        b.iter_custom(|iters| {
            per_op_on_threads(2, iters, &|| {
                assert!(failsafe_open.call(|| Ok::<_, ()>(())).is_err())
            })
        })
    });
    g.bench_function("recloser", |b| {
        b.iter_custom(|iters| {
            per_op_on_threads(2, iters, &|| {
                assert!(recloser_open.call(|| Ok::<_, ()>(())).is_err())
            })
        })
    });
    g.finish();

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
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(5)
        .build()
        .unwrap();
    let mut ours = CircuitBreaker::new(breaker).layer().layer(Echo);
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

    let ours = Bulkhead::new(Bulkhead::builder().max_concurrent(1024).build().unwrap());
    let tokio_sem = tokio::sync::Semaphore::new(1024);
    let ours_op = || drop(ours.try_acquire().unwrap());
    let tokio_op = || drop(tokio_sem.try_acquire().unwrap());

    // The floor for any counting limiter: one atomic add to enter, one sub to leave.
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let bare = ("bare atomic add+sub", || {
        use std::sync::atomic::Ordering::{Acquire, Release};
        let counter = black_box(&counter);
        counter.fetch_add(1, Acquire);
        counter.fetch_sub(1, Release);
    });
    on_one_and_two_threads(
        c,
        "bulkhead/fail-fast acquire+release",
        bare,
        ("palisade try_acquire", ours_op),
        Some(("tokio Semaphore::try_acquire", tokio_op)),
    );

    // Queue enabled, slot free: the future completes at its first poll.
    let queued = Bulkhead::new(
        Bulkhead::builder()
            .max_concurrent(1024)
            .max_queue(64)
            .build()
            .unwrap(),
    );
    on_one_and_two_threads(
        c,
        "bulkhead/queue-enabled acquire+release (slot free)",
        bare,
        ("palisade acquire", || {
            drop(poll_now(queued.acquire()).unwrap())
        }),
        Some(("tokio Semaphore::acquire", || {
            drop(poll_now(tokio_sem.acquire()).unwrap())
        })),
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

fn retry_benches(c: &mut Criterion) {
    use palisade::retry::Retry;

    let ours = Retry::new(Retry::builder().build().unwrap());
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
    let mut tower_retry = tower::retry::RetryLayer::new(Attempts(3)).layer(Echo);
    g.bench_function("tower RetryLayer", |b| {
        b.iter(|| call_now(&mut tower_retry, black_box(1)))
    });
    // The like-for-like peer: palisade's retry always shares state between clones (metrics, and
    // the budget when set); tower's does when its policy holds a shared budget.
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
    g.bench_function("tower RetryLayer + TpsBudget", |b| {
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
    let timeout = Timeout::new(
        TimeoutConfig::builder()
            .duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    );

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
    let mut theirs = common::tower_resilience_stack();
    g.bench_function("tower-resilience tower stack", |b| {
        b.iter(|| poll_until_ready(&mut theirs, black_box(1)))
    });
    g.finish();
}

/// Ready, call, and poll until done: tower-resilience's boxed futures may need more than one
/// poll even around a ready service (they hop through its async mutex).
fn poll_until_ready<S: tower::Service<u64>>(svc: &mut S, req: u64) {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(r) = svc.poll_ready(&mut cx) {
            assert!(r.is_ok(), "the stack must be ready");
            break;
        }
    }
    let mut fut = std::pin::pin!(svc.call(req));
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            drop(black_box(out));
            return;
        }
    }
}

fn main() {
    // Estimates older than this belong to an earlier or filtered run (see `common::report`).
    let started = std::time::SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    timeout_benches(&mut c);
    breaker_benches(&mut c);
    bulkhead_benches(&mut c);
    retry_benches(&mut c);
    stack_benches(&mut c);
    c.final_summary();
    if report::is_bench_run() {
        report::write_hot_path(started);
    }
}
