//! Instruction counts per call on the hot paths, for comparing two commits on a noisy,
//! shared machine: `bash benches/icount.sh` runs each case under callgrind twice (with
//! `SHORT` and `LONG` calls) and reports the difference per call, which cancels the setup.
//!
//! Run alone (`cargo bench -p palisade-benches --bench icount -- <case> <calls>`) it does the
//! calls and exits; with no case (as `cargo bench` runs it) it runs every case a few times,
//! so a broken case fails the build's smoke run rather than the measurement.
//!
//! The cases mirror `hot_path.rs`: the same builders and the same out-of-line drivers for
//! futures and services; a synchronous operation is kept out of line by `repeat`'s
//! `dyn FnMut` call. Clocks: the `breaker_closed_*` and rate limiter cases run on
//! `MonotonicClock` (kept so that counts compare across commits), and
//! `breaker_closed_time_window_default_clock` is the same window on the default clock
//! (`TscClock`, whose counter valgrind emulates: count its cases, do not time them); the
//! open-reject cases are named for their clock.

use std::future::ready;
use std::hint::black_box;
use std::time::Duration;

mod common;
use common::{
    Echo, PendingOnceEcho, call_now, call_to_completion, pending_once, poll_now, run_now,
    run_to_completion,
};
use palisade::Rejected;
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::{CircuitBreaker, TripModel};
use palisade::clock::{CoarseClock, MonotonicClock};
use palisade::pipeline::{Pipeline, Stage};
use palisade::retry::Retry;
use palisade::timeout::{Timeout, TimeoutConfig};
use tower::Layer;

/// Every case, by name: each builds its policy, then returns the operation to repeat.
const CASES: &[&str] = &[
    "breaker_closed_consecutive",
    "breaker_closed_count_window",
    "breaker_closed_time_window",
    "breaker_closed_time_window_default_clock",
    "breaker_open_reject_default_clock",
    "breaker_open_reject_monotonic",
    "breaker_open_reject_coarse",
    "breaker_run",
    "breaker_layer",
    "bulkhead_try_acquire",
    "bulkhead_acquire_queue_enabled",
    "bulkhead_run",
    "bulkhead_layer",
    "timeout_run_once",
    "timeout_layer",
    "timeout_run_once_pending_once",
    "timeout_layer_pending_once",
    "retry_run",
    "retry_layer",
    "pipeline_run_5",
    "pipeline_run_5_custom_order",
    "stack_layer_5",
    "rate_limiter_admitted",
    "rate_limiter_refused",
    "keyed_rate_limiter_admitted",
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [case, calls] => run(case, calls.parse().expect("calls is a number")),
        [] => CASES.iter().for_each(|case| run(case, 10)),
        _ => panic!("usage: icount [<case> <calls>]"),
    }
}

/// The calls that `icount.sh` counts: callgrind collects inside this function only
/// (`--toggle-collect`), so setup (a runtime, a policy, the first `TscClock`'s calibration,
/// whose length depends on timing) never enters the counts.
#[inline(never)]
fn measured(calls: u64, op: &mut dyn FnMut()) {
    (0..calls).for_each(|_| op());
}

fn run(case: &str, calls: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let repeat = |op: &mut dyn FnMut()| measured(calls, op);
    match case {
        "rate_limiter_admitted" => {
            let l = rate_limiter(1 << 29, Duration::from_secs(1));
            repeat(&mut || std::hint::black_box(l.try_acquire()).unwrap())
        }
        "keyed_rate_limiter_admitted" => {
            let keyed: palisade::keyed::Keyed<u64, _, _> = palisade::keyed::Keyed::with_clock(
                palisade::keyed::KeyedConfig::default(),
                rate_limiter(1 << 29, Duration::from_secs(1)),
                MonotonicClock::new(),
            );
            keyed.try_acquire(&7).unwrap();
            repeat(&mut || {
                std::hint::black_box(keyed.try_acquire(std::hint::black_box(&7))).unwrap()
            })
        }
        "rate_limiter_refused" => {
            let l = rate_limiter(1, Duration::from_secs(3600));
            l.try_acquire().unwrap();
            repeat(&mut || {
                std::hint::black_box(l.try_acquire()).unwrap_err();
            })
        }
        "breaker_closed_consecutive" => {
            let b = monotonic(CircuitBreaker::builder().consecutive_failures(5));
            repeat(&mut || b.try_acquire().unwrap().success())
        }
        "breaker_closed_count_window" => {
            let b = monotonic(
                CircuitBreaker::builder().trip_model(TripModel::CountWindow {
                    size: 100,
                    failure_ratio: 0.5,
                    minimum_calls: 100,
                }),
            );
            repeat(&mut || b.try_acquire().unwrap().success())
        }
        "breaker_closed_time_window" => {
            let b =
                monotonic(CircuitBreaker::builder().failures_within(5, Duration::from_secs(30)));
            repeat(&mut || b.try_acquire().unwrap().success())
        }
        "breaker_closed_time_window_default_clock" => {
            let b = CircuitBreaker::new(
                CircuitBreaker::builder()
                    .failures_within(5, Duration::from_secs(30))
                    .build()
                    .unwrap(),
            );
            repeat(&mut || b.try_acquire().unwrap().success())
        }
        "breaker_open_reject_default_clock" => {
            let b = CircuitBreaker::new(open_config());
            b.try_acquire().unwrap().failure();
            repeat(&mut || assert!(black_box(b.try_acquire()).is_err()))
        }
        "breaker_open_reject_monotonic" => {
            let b = CircuitBreaker::with_clock(open_config(), MonotonicClock::new());
            b.try_acquire().unwrap().failure();
            repeat(&mut || assert!(black_box(b.try_acquire()).is_err()))
        }
        "breaker_open_reject_coarse" => {
            let b = CircuitBreaker::with_clock(open_config(), CoarseClock::new());
            b.try_acquire().unwrap().failure();
            repeat(&mut || assert!(black_box(b.try_acquire()).is_err()))
        }
        "breaker_run" => {
            let b = CircuitBreaker::new(CircuitBreaker::builder().build().unwrap());
            repeat(&mut || run_now(|| b.run(|| ready(Ok::<_, Rejected>(black_box(1u64))))))
        }
        "breaker_layer" => {
            let b = CircuitBreaker::new(
                CircuitBreaker::builder()
                    .consecutive_failures(5)
                    .build()
                    .unwrap(),
            );
            let mut svc = b.layer().layer(Echo);
            repeat(&mut || call_now(&mut svc, black_box(1)))
        }
        "breaker_layer_tokio_clock" => {
            let b = CircuitBreaker::with_clock(
                CircuitBreaker::builder()
                    .consecutive_failures(5)
                    .build()
                    .unwrap(),
                palisade::clock::TokioClock::default(),
            );
            let mut svc = b.layer().layer(Echo);
            repeat(&mut || call_now(&mut svc, black_box(1)))
        }
        "bulkhead_try_acquire" => {
            let b = Bulkhead::new(Bulkhead::builder().max_concurrent(1024).build().unwrap());
            repeat(&mut || drop(b.try_acquire().unwrap()))
        }
        "bulkhead_acquire_queue_enabled" => {
            let b = Bulkhead::new(
                Bulkhead::builder()
                    .max_concurrent(1024)
                    .max_queue(64)
                    .build()
                    .unwrap(),
            );
            repeat(&mut || drop(poll_now(b.acquire()).unwrap()))
        }
        "bulkhead_run" => {
            let b = Bulkhead::new(Bulkhead::builder().max_concurrent(1024).build().unwrap());
            repeat(&mut || run_now(|| b.run(|| ready(Ok::<_, Rejected>(black_box(1u64))))))
        }
        "bulkhead_layer" => {
            let b = Bulkhead::new(Bulkhead::builder().max_concurrent(1024).build().unwrap());
            let mut svc = b.layer().layer(Echo);
            repeat(&mut || call_now(&mut svc, black_box(1)))
        }
        "timeout_run_once" => {
            let t = timeout();
            repeat(&mut || run_now(|| t.run_once(ready(Ok::<_, Rejected>(black_box(1u64))))))
        }
        "timeout_layer" => {
            let mut svc = timeout().layer().layer(Echo);
            repeat(&mut || call_now(&mut svc, black_box(1)))
        }
        // The inner future is pending once, so the timer is armed (and dropped) every call.
        "timeout_run_once_pending_once" => {
            let t = timeout();
            repeat(&mut || {
                run_to_completion(|| t.run_once(pending_once(Ok::<_, Rejected>(black_box(1u64)))))
            })
        }
        "timeout_layer_pending_once" => {
            let mut svc = timeout().layer().layer(PendingOnceEcho);
            repeat(&mut || call_to_completion(&mut svc, black_box(1)))
        }
        "retry_run" => {
            let r = Retry::new(Retry::builder().build().unwrap());
            repeat(&mut || run_now(|| r.run(|| ready(Ok::<_, Rejected>(black_box(1u64))))))
        }
        "retry_layer" => {
            let r = Retry::new(Retry::builder().build().unwrap());
            let mut svc = r.layer().layer(Echo);
            repeat(&mut || call_now(&mut svc, black_box(1)))
        }
        "pipeline_run_5" => {
            let (retry, breaker, bulkhead, timeout, fallback) = five();
            let pipeline = Pipeline::builder()
                .retry(retry)
                .circuit_breaker(breaker)
                .bulkhead(bulkhead)
                .timeout(timeout)
                .fallback(fallback)
                .build();
            repeat(&mut || {
                run_now(|| {
                    pipeline
                        .run(|| ready(Ok::<_, Rejected>(black_box(1u64))))
                        .or_value(0)
                })
            })
        }
        // Not the recommended order (the bulkhead's slot is held across the retries), so the
        // call takes the custom order's path.
        "pipeline_run_5_custom_order" => {
            let (retry, breaker, bulkhead, timeout, fallback) = five();
            let pipeline = Pipeline::builder()
                .retry(retry)
                .circuit_breaker(breaker)
                .bulkhead(bulkhead)
                .timeout(timeout)
                .fallback(fallback)
                .build_in_order(&[
                    Stage::Bulkhead,
                    Stage::Retry,
                    Stage::CircuitBreaker,
                    Stage::Timeout,
                ])
                .unwrap();
            repeat(&mut || {
                run_now(|| {
                    pipeline
                        .run(|| ready(Ok::<_, Rejected>(black_box(1u64))))
                        .or_value(0)
                })
            })
        }
        "stack_layer_5" => {
            let (retry, breaker, bulkhead, timeout, fallback) = five();
            let mut svc = tower::ServiceBuilder::new()
                .layer(fallback.layer().or_value(0))
                .layer(retry.layer())
                .layer(breaker.layer())
                .layer(bulkhead.layer())
                .layer(timeout.layer())
                .service(Echo);
            repeat(&mut || call_now(&mut svc, black_box(1)))
        }
        other => panic!("no case {other}; cases: {CASES:?}"),
    }
}

fn monotonic(
    builder: palisade::circuit_breaker::CircuitBreakerConfigBuilder,
) -> CircuitBreaker<MonotonicClock> {
    CircuitBreaker::with_clock(builder.build().unwrap(), MonotonicClock::new())
}

fn open_config() -> palisade::circuit_breaker::CircuitBreakerConfig {
    CircuitBreaker::builder()
        .consecutive_failures(1)
        .break_duration(Duration::from_secs(3600))
        .build()
        .unwrap()
}

fn timeout() -> Timeout {
    Timeout::new(
        TimeoutConfig::builder()
            .duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
}

fn five() -> (
    Retry,
    CircuitBreaker,
    Bulkhead,
    Timeout,
    palisade::fallback::Fallback<u64>,
) {
    (
        Retry::new(Retry::builder().build().unwrap()),
        CircuitBreaker::new(CircuitBreaker::builder().build().unwrap()),
        Bulkhead::new(Bulkhead::builder().max_concurrent(1024).build().unwrap()),
        timeout(),
        palisade::fallback::Fallback::new(palisade::fallback::Fallback::builder().build().unwrap()),
    )
}

/// A rate limiter of `count` calls per `period`, default burst, on `MonotonicClock` (see
/// the module docs).
fn rate_limiter(
    count: u32,
    period: Duration,
) -> palisade::rate_limiter::RateLimiter<palisade::timer::DefaultTimer, MonotonicClock> {
    palisade::rate_limiter::RateLimiter::with_timer_and_clock(
        palisade::rate_limiter::RateLimiter::builder()
            .rate(count, period)
            .build()
            .unwrap(),
        Default::default(),
        MonotonicClock::new(),
    )
}
