//! The circuit breaker on both surfaces, with paused tokio time.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfigBuilder, CircuitBreakerLayer, CircuitState, SlowCalls,
    TripModel,
};
use palisade::error::{BulkheadFull, Elapsed, FullCause};
use palisade::telemetry::{Event, EventKind};
use palisade::{AsRejected, Outcome, Rejected};
use support::AppError;
use tokio::time::{advance, sleep};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_test::{assert_request_eq, mock};

const BREAK: Duration = Duration::from_secs(10);

fn builder() -> CircuitBreakerConfigBuilder {
    CircuitBreaker::builder()
        .name("backend")
        .consecutive_failures(2)
        .break_duration(BREAK)
}

fn breaker(b: CircuitBreakerConfigBuilder) -> CircuitBreaker {
    CircuitBreaker::new(b.build().unwrap())
}

type Transitions = Arc<Mutex<Vec<(CircuitState, CircuitState)>>>;

/// Records every state change the breaker reports.
fn transitions(b: CircuitBreakerConfigBuilder) -> (CircuitBreakerConfigBuilder, Transitions) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let b = b.listener(move |e: &Event| {
        if let EventKind::StateChanged { from, to } = e.kind() {
            seen.lock().unwrap().push((from, to));
        }
    });
    (b, log)
}

async fn fail(b: &CircuitBreaker) -> Result<(), AppError> {
    b.run(|| async { Err(AppError::Backend("down")) }).await
}

async fn succeed(b: &CircuitBreaker) -> Result<(), AppError> {
    b.run(|| async { Ok(()) }).await
}

fn retry_after(r: Result<(), AppError>) -> Option<Duration> {
    match r {
        Err(AppError::Rejected(Rejected::CircuitOpen(open))) => open.retry_after(),
        other => panic!("expected an open circuit, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn run_trips_rejects_half_opens_and_closes() {
    let (b, log) = transitions(builder());
    let breaker = breaker(b);
    assert_eq!(fail(&breaker).await, Err(AppError::Backend("down")));
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(fail(&breaker).await, Err(AppError::Backend("down")));
    assert_eq!(breaker.state(), CircuitState::Open);

    // Rejected without running the call, with the time left until half-open.
    let mut ran = false;
    let out: Result<(), AppError> = breaker
        .run(|| {
            ran = true;
            async { Ok(()) }
        })
        .await;
    assert!(!ran, "an open breaker must not make the call");
    assert_eq!(retry_after(out), Some(BREAK));
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        retry_after(succeed(&breaker).await),
        Some(Duration::from_secs(6))
    );

    advance(Duration::from_secs(6)).await;
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(
        *log.lock().unwrap(),
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn layer_rejects_through_the_call_future_never_poll_ready() {
    let breaker = breaker(builder());
    let (svc, mut handle) = mock::pair::<&str, &str>();
    let mut svc = mock::Spawn::new(breaker.layer().layer(svc));

    for _ in 0..2 {
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut call = task::spawn(svc.call("req"));
        assert_request_eq!(handle, "req").send_error("boom");
        assert!(assert_ready!(call.poll()).is_err());
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    handle.allow(1);
    assert_ready_ok!(svc.poll_ready(), "an open breaker is not a readiness error");
    let err = svc.call("req").await.unwrap_err();
    assert!(
        matches!(err.as_rejected(), Some(Rejected::CircuitOpen(_))),
        "{err}"
    );
    assert!(
        handle.poll_request().is_pending(),
        "the inner service must not be called"
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_mid_flight_frees_its_slot_and_the_breaker_recovers() {
    let breaker = breaker(builder());
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    advance(BREAK).await;

    let mut probe = task::spawn(breaker.run(|| async {
        sleep(Duration::from_secs(60)).await;
        Ok::<_, AppError>(())
    }));
    assert_pending!(probe.poll());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert!(
        retry_after(succeed(&breaker).await).is_some(),
        "the one probe slot is taken"
    );

    drop(probe);
    assert_eq!(
        succeed(&breaker).await,
        Ok(()),
        "the dropped probe counted as nothing"
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_tower_response_future_frees_its_probe() {
    let breaker = breaker(builder());
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    advance(BREAK).await;

    let (svc, mut handle) = mock::pair::<(), ()>();
    let mut svc = mock::Spawn::new(breaker.layer().layer(svc));
    handle.allow(2);
    assert_ready_ok!(svc.poll_ready());
    let call = svc.call(());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    drop(call);
    // A service dropped while holding a reserved probe permit frees it too.
    let mut other = mock::Spawn::new(
        breaker
            .layer()
            .layer(tower::service_fn(|_: ()| async { Ok::<_, BoxError>(()) })),
    );
    assert_ready_ok!(other.poll_ready());
    drop(other);
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn probes_that_never_report_cannot_keep_it_half_open() {
    let wait = Duration::from_secs(3);
    let (b, log) = transitions(builder().max_wait_in_half_open(wait));
    let breaker = breaker(b);
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    advance(BREAK).await;

    let hung = breaker.try_acquire().unwrap();
    advance(wait).await;
    // The next caller finds the probe overdue: the breaker opens again and says for how long.
    assert_eq!(retry_after(succeed(&breaker).await), Some(BREAK));
    assert_eq!(breaker.state(), CircuitState::Open);
    // The hung probe's late success belongs to a finished period and changes nothing.
    hung.success();
    assert_eq!(breaker.state(), CircuitState::Open);

    advance(BREAK).await;
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(
        log.lock().unwrap().as_slice(),
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_break_grows_on_each_reopen_and_resets_after_a_close() {
    let breaker = breaker(
        builder()
            .break_duration(Duration::from_secs(1))
            .max_break_duration(Duration::from_secs(4)),
    );
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    let mut breaks = Vec::new();
    for _ in 0..4 {
        let wait = retry_after(succeed(&breaker).await).unwrap();
        breaks.push(wait.as_secs());
        advance(wait).await;
        fail(&breaker).await.unwrap_err(); // the probe fails: open again
    }
    assert_eq!(breaks, [1, 2, 4, 4]);

    advance(Duration::from_secs(4)).await;
    assert_eq!(succeed(&breaker).await, Ok(()));
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    assert_eq!(
        retry_after(succeed(&breaker).await),
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn slow_successes_trip_it_as_slow_calls_not_failures() {
    let breaker = breaker(
        builder()
            .consecutive_failures(100)
            .slow_calls(SlowCalls::new(Duration::from_millis(100), 0.5).minimum_calls(4)),
    );
    let slow = || async {
        sleep(Duration::from_millis(150)).await;
        Ok::<_, AppError>(())
    };
    succeed(&breaker).await.unwrap();
    succeed(&breaker).await.unwrap();
    breaker.run(slow).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed, "1 slow of 3 calls");
    let m = breaker.metrics();
    assert_eq!((m.slow_calls, m.failures), (1, 0));
    breaker.run(slow).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open, "2 slow of 4 calls");
}

#[tokio::test(start_paused = true)]
async fn failures_within_a_duration_trip_it_and_old_ones_expire() {
    let breaker = breaker(builder().failures_within(3, Duration::from_secs(30)));
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    advance(Duration::from_secs(31)).await;
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "the first two expired"
    );
    for _ in 0..20 {
        succeed(&breaker).await.unwrap();
    }
    fail(&breaker).await.unwrap_err();
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "successes do not dilute a count rule"
    );
}

#[tokio::test(start_paused = true)]
async fn time_window_trips_on_ratio_after_minimum_throughput() {
    let breaker = breaker(builder().trip_model(TripModel::TimeWindow {
        duration: Duration::from_secs(10),
        buckets: 5,
        failure_ratio: 0.5,
        minimum_calls: 4,
    }));
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "below the minimum of calls"
    );
    succeed(&breaker).await.unwrap();
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Open, "4 of 5 failed");
}

#[tokio::test(start_paused = true)]
async fn count_window_trips_on_ratio() {
    let breaker = breaker(builder().trip_model(TripModel::CountWindow {
        size: 4,
        failure_ratio: 0.75,
        minimum_calls: 4,
    }));
    for _ in 0..4 {
        succeed(&breaker).await.unwrap();
    }
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Closed, "2 of the last 4");
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Open, "3 of the last 4");
}

#[tokio::test(start_paused = true)]
async fn a_late_failure_from_before_the_close_cannot_reopen_it() {
    let breaker = breaker(builder().consecutive_failures(1));
    let late = breaker.try_acquire().unwrap();
    fail(&breaker).await.unwrap_err();
    advance(BREAK).await;
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    late.failure();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_late_success_from_before_the_trip_cannot_close_it() {
    let breaker = breaker(builder().consecutive_failures(1));
    let late = breaker.try_acquire().unwrap();
    fail(&breaker).await.unwrap_err();
    advance(BREAK).await;
    let probe = breaker.try_acquire().unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    late.success();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    probe.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_success_threshold_needs_that_many_probes() {
    let breaker = breaker(builder().permitted_in_half_open(3).success_threshold(2));
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    advance(BREAK).await;
    let (a, b, c) = (
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    );
    assert!(breaker.try_acquire().is_err(), "3 probes permitted");
    a.failure();
    assert_eq!(
        breaker.state(),
        CircuitState::HalfOpen,
        "2 of 3 can still succeed"
    );
    b.success();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    c.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn isolate_reset_and_disable() {
    let breaker = breaker(builder());
    breaker.isolate();
    let out = succeed(&breaker).await;
    assert!(matches!(out, Err(AppError::Rejected(Rejected::CircuitOpen(o))) if o.is_isolated()));
    advance(BREAK * 100).await;
    assert_eq!(
        breaker.state(),
        CircuitState::Isolated,
        "time never ends an isolation"
    );

    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
    fail(&breaker).await.unwrap_err();
    breaker.reset();
    fail(&breaker).await.unwrap_err();
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "reset cleared the window"
    );

    breaker.disable();
    for _ in 0..10 {
        fail(&breaker).await.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Disabled);
    assert_eq!(
        breaker.metrics().failures,
        1,
        "only the failure from before disable(): a disabled breaker counts nothing"
    );
    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn outcomes_come_from_the_classifier() {
    let breaker = breaker(builder());
    // Load shedding by an inner policy says nothing about the backend.
    for _ in 0..5 {
        let shed: Result<(), AppError> = breaker
            .run(|| async {
                Err(AppError::Rejected(
                    BulkheadFull::new("pool", 4, FullCause::QueueFull).into(),
                ))
            })
            .await;
        shed.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    // A timeout is the backend being too slow: a failure.
    for _ in 0..2 {
        let slow: Result<(), AppError> = breaker
            .run(|| async {
                Err(AppError::Rejected(
                    Elapsed::new("t", Duration::from_secs(1)).into(),
                ))
            })
            .await;
        slow.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    // An `Ok` that is really a failure, through the layer's classifier.
    let other = self::breaker(builder());
    let layer =
        CircuitBreakerLayer::new(other.clone()).classify(|r: &Result<u16, BoxError>| match r {
            Ok(503) | Err(_) => Outcome::Failure,
            Ok(_) => Outcome::Success,
        });
    let mut svc = layer.layer(tower::service_fn(|_: ()| async {
        Ok::<u16, BoxError>(503)
    }));
    for _ in 0..2 {
        assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 503);
    }
    assert_eq!(other.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_cloned_service_does_not_inherit_a_permit() {
    let breaker = breaker(builder());
    let svc = breaker
        .layer()
        .layer(tower::service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    let mut ready = mock::Spawn::new(svc);
    assert_ready_ok!(ready.poll_ready());
    let mut clone = ready.get_ref().clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(clone.call(()));
    }));
    let panic = result.unwrap_err();
    let msg = panic.downcast_ref::<&str>().copied().unwrap_or_default();
    assert_eq!(
        msg,
        "CircuitBreakerService: poll_ready must be called before call"
    );
    ready.call(()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn metrics_report_window_and_rejections() {
    let breaker = breaker(builder().consecutive_failures(3));
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    let m = breaker.metrics();
    assert_eq!(
        (m.state, m.failures, m.rejected),
        (CircuitState::Closed, 2, 0)
    );
    fail(&breaker).await.unwrap_err();
    succeed(&breaker).await.unwrap_err();
    succeed(&breaker).await.unwrap_err();
    let m = breaker.metrics();
    assert_eq!((m.state, m.rejected), (CircuitState::Open, 2));
}

#[test]
fn every_invalid_config_names_its_field() {
    let d = Duration::from_secs;
    let cases: Vec<(CircuitBreakerConfigBuilder, &str)> = vec![
        (builder().consecutive_failures(0), "trip_model.failures"),
        (
            builder().trip_model(TripModel::CountWindow {
                size: 0,
                failure_ratio: 0.5,
                minimum_calls: 1,
            }),
            "trip_model.size",
        ),
        (
            builder().trip_model(TripModel::CountWindow {
                size: 70_000,
                failure_ratio: 0.5,
                minimum_calls: 1,
            }),
            "trip_model.size",
        ),
        (
            builder().trip_model(TripModel::CountWindow {
                size: 10,
                failure_ratio: f64::NAN,
                minimum_calls: 1,
            }),
            "trip_model.failure_ratio",
        ),
        (
            builder().trip_model(TripModel::CountWindow {
                size: 10,
                failure_ratio: 0.0,
                minimum_calls: 1,
            }),
            "trip_model.failure_ratio",
        ),
        (
            builder().trip_model(TripModel::CountWindow {
                size: 10,
                failure_ratio: 0.5,
                minimum_calls: 11,
            }),
            "trip_model.minimum_calls",
        ),
        (
            builder().trip_model(TripModel::TimeWindow {
                duration: Duration::ZERO,
                buckets: 10,
                failure_ratio: 0.5,
                minimum_calls: 1,
            }),
            "trip_model.duration",
        ),
        (
            builder().trip_model(TripModel::TimeWindow {
                duration: Duration::from_millis(5),
                buckets: 10,
                failure_ratio: 0.5,
                minimum_calls: 1,
            }),
            "trip_model.duration",
        ),
        (
            builder().trip_model(TripModel::TimeWindow {
                duration: d(10),
                buckets: 0,
                failure_ratio: 0.5,
                minimum_calls: 1,
            }),
            "trip_model.buckets",
        ),
        (
            builder().trip_model(TripModel::TimeWindow {
                duration: d(10),
                buckets: 10,
                failure_ratio: 1.5,
                minimum_calls: 1,
            }),
            "trip_model.failure_ratio",
        ),
        (
            builder().trip_model(TripModel::TimeWindow {
                duration: d(10),
                buckets: 10,
                failure_ratio: 0.5,
                minimum_calls: 0,
            }),
            "trip_model.minimum_calls",
        ),
        (builder().failures_within(0, d(30)), "trip_model.failures"),
        (
            builder().failures_within(5, d(2 * 86_400)),
            "trip_model.duration",
        ),
        (
            builder().slow_calls(SlowCalls::new(Duration::ZERO, 0.5)),
            "slow_calls.threshold",
        ),
        (
            builder().slow_calls(SlowCalls::new(d(1), f64::INFINITY)),
            "slow_calls.ratio",
        ),
        (
            builder().slow_calls(SlowCalls::new(d(1), 0.5).minimum_calls(0)),
            "slow_calls.minimum_calls",
        ),
        (builder().break_duration(Duration::ZERO), "break_duration"),
        (builder().break_duration(d(2 * 86_400)), "break_duration"),
        (
            builder().break_duration(d(10)).max_break_duration(d(5)),
            "max_break_duration",
        ),
        (
            builder().max_break_duration(d(2 * 86_400)),
            "max_break_duration",
        ),
        (builder().break_growth_factor(0.5), "break_growth_factor"),
        (
            builder().break_growth_factor(f64::NAN),
            "break_growth_factor",
        ),
        (
            builder().permitted_in_half_open(0),
            "permitted_in_half_open",
        ),
        (
            builder().permitted_in_half_open(64),
            "permitted_in_half_open",
        ),
        (
            builder().permitted_in_half_open(2).success_threshold(3),
            "success_threshold",
        ),
        (builder().success_threshold(0), "success_threshold"),
        (
            builder().max_wait_in_half_open(Duration::ZERO),
            "max_wait_in_half_open",
        ),
        (builder().name(""), "name"),
    ];
    for (b, field) in cases {
        let err = b.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(err.to_string().starts_with(field), "{err}");
    }
}

#[test]
fn handles_services_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<CircuitBreaker>();
    send_sync::<CircuitBreakerLayer>();
    send_sync::<palisade::circuit_breaker::CallPermit<'static>>();
    send_sync::<palisade::circuit_breaker::OwnedCallPermit>();
    send::<
        palisade::circuit_breaker::CircuitBreakerService<
            tower::util::BoxCloneSyncService<(), (), BoxError>,
        >,
    >();
    send::<
        palisade::circuit_breaker::future::RunFuture<
            'static,
            std::future::Ready<Result<(), Rejected>>,
            palisade::clock::TokioClock,
        >,
    >();
    send::<
        palisade::circuit_breaker::future::ResponseFuture<std::future::Ready<Result<(), Rejected>>>,
    >();
}

/// Counts exact readings; its lagging reading trails the exact one by 12 ms within a
/// declared 16 ms.
#[derive(Clone, Default)]
struct LaggingClock {
    nanos: Arc<std::sync::atomic::AtomicU64>,
    exact_reads: Arc<std::sync::atomic::AtomicU64>,
}

impl LaggingClock {
    fn advance(&self, d: Duration) {
        let d = u64::try_from(d.as_nanos()).unwrap();
        self.nanos.fetch_add(d, std::sync::atomic::Ordering::SeqCst);
    }
    fn exact_reads(&self) -> u64 {
        self.exact_reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl palisade::clock::Clock for LaggingClock {
    fn now(&self) -> palisade::clock::Ticks {
        self.exact_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        palisade::clock::Ticks::from_nanos(self.nanos.load(std::sync::atomic::Ordering::SeqCst))
    }
    fn now_lagging(&self) -> palisade::clock::Ticks {
        let nanos = self.nanos.load(std::sync::atomic::Ordering::SeqCst);
        palisade::clock::Ticks::from_nanos(nanos.saturating_sub(12_000_000))
    }
    fn max_lag(&self) -> Duration {
        Duration::from_millis(16)
    }
}

#[test]
fn an_open_breaker_rejects_on_the_lagging_reading_and_still_half_opens_on_time() {
    let clock = LaggingClock::default();
    clock.advance(Duration::from_secs(1));
    let b = CircuitBreaker::with_clock(builder().build().unwrap(), clock.clone());
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), CircuitState::Open);

    // Far from the end of the break: no exact reading at all, and a retry-after that is
    // never shorter than the exact time left (10 s here, counted from 12 ms earlier).
    let before = clock.exact_reads();
    for _ in 0..100 {
        let err = b.try_acquire().err().unwrap();
        assert_eq!(err.retry_after(), Some(BREAK + Duration::from_millis(12)));
    }
    clock.advance(BREAK - Duration::from_millis(17));
    let err = b.try_acquire().err().unwrap();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(29)));
    assert_eq!(
        clock.exact_reads(),
        before,
        "the lagging reading settled every rejection"
    );

    // Within the lag of the end: the exact clock decides, and it says 1 ms is left.
    clock.advance(Duration::from_millis(16));
    let err = b.try_acquire().err().unwrap();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(1)));
    assert_eq!(clock.exact_reads(), before + 1);

    // At the end on the exact clock, although the lagging one is still 12 ms short of it.
    clock.advance(Duration::from_millis(1));
    let probe = b
        .try_acquire()
        .expect("the break is over on the exact clock");
    assert_eq!(b.state(), CircuitState::HalfOpen);
    probe.success();
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn a_failures_within_breaker_reads_the_clock_once_per_failure_and_never_for_a_success() {
    let clock = LaggingClock::default();
    let b = CircuitBreaker::with_clock(
        builder()
            .failures_within(3, Duration::from_secs(30))
            .build()
            .unwrap(),
        clock.clone(),
    );
    for _ in 0..100 {
        b.try_acquire().unwrap().success();
    }
    assert_eq!(clock.exact_reads(), 0, "a success counts for nothing");
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().failure();
    assert_eq!(clock.exact_reads(), 2);
    // The failure that trips opens the breaker at the reading it was counted at.
    b.try_acquire().unwrap().failure();
    assert_eq!(clock.exact_reads(), 3);
    assert_eq!(b.state(), CircuitState::Open);
    let m = b.metrics();
    assert_eq!(
        (m.calls, m.failures),
        (3, 3),
        "the window holds only failures"
    );

    // With slow calls detected, every call is timed, from admission to result.
    let clock = LaggingClock::default();
    let b = CircuitBreaker::with_clock(
        builder()
            .failures_within(3, Duration::from_secs(30))
            .slow_calls(SlowCalls::new(Duration::from_secs(1), 0.5))
            .build()
            .unwrap(),
        clock.clone(),
    );
    b.try_acquire().unwrap().success();
    assert_eq!(clock.exact_reads(), 2);
    let m = b.metrics();
    assert_eq!((m.calls, m.failures), (1, 0), "and kept");
}

// ===== quiet spells, long idle, panicking listeners, stale readiness =====

/// The breaker of the quiet-half-open report: one failure trips it for 5 s, half-open waits
/// 2 s for its probes, and each re-open doubles the break up to 60 s.
fn sparse() -> CircuitBreakerConfigBuilder {
    CircuitBreaker::builder()
        .consecutive_failures(1)
        .break_duration(Duration::from_secs(5))
        .max_wait_in_half_open(Duration::from_secs(2))
        .max_break_duration(Duration::from_secs(60))
}

#[tokio::test(start_paused = true)]
async fn a_dropped_or_ignored_probe_hands_the_next_late_call_the_probe() {
    for ignore in [false, true] {
        let breaker = breaker(sparse());
        fail(&breaker).await.unwrap_err();
        advance(Duration::from_secs(5)).await;
        let probe = breaker.try_acquire().unwrap();
        if ignore {
            probe.record(Outcome::Ignore);
        } else {
            drop(probe);
        }
        // Later than the half-open wait: nothing is outstanding, so nothing re-opens it.
        advance(Duration::from_secs(3)).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "ignore {ignore}");
        assert_eq!(succeed(&breaker).await, Ok(()), "ignore {ignore}");
        assert_eq!(breaker.state(), CircuitState::Closed, "ignore {ignore}");
    }
}

#[tokio::test(start_paused = true)]
async fn calls_sparser_than_the_half_open_wait_still_close_the_breaker() {
    let breaker = breaker(sparse().permitted_in_half_open(2).success_threshold(2));
    fail(&breaker).await.unwrap_err();
    advance(Duration::from_secs(5)).await;
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(
        breaker.state(),
        CircuitState::HalfOpen,
        "one success of two"
    );
    advance(Duration::from_secs(3)).await;
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_reopens_the_breaker_from_the_end_of_the_wait() {
    let breaker = breaker(sparse());
    fail(&breaker).await.unwrap_err();
    advance(Duration::from_secs(5)).await;
    let hung = breaker.try_acquire().unwrap();
    advance(Duration::from_secs(3)).await;
    // Given up at 2 s into half-open; the doubled break (10 s) runs from then: 9 s left.
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        retry_after(succeed(&breaker).await),
        Some(Duration::from_secs(9))
    );
    drop(hung);
    advance(Duration::from_secs(9)).await;
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_idle_past_its_break_reads_half_open_without_traffic() {
    let breaker = breaker(builder());
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.metrics().state, CircuitState::Open);
    advance(BREAK).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.metrics().state, CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_idle_for_years_admits_a_probe_on_the_first_call() {
    // 2^38 ms, the span after which the breaker's packed deadlines repeat, and around it.
    let wrap = Duration::from_millis(1 << 38);
    for extra in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(5),
    ] {
        let breaker = breaker(builder());
        fail(&breaker).await.unwrap_err();
        fail(&breaker).await.unwrap_err();
        advance(wrap + extra).await;
        assert_eq!(
            breaker.state(),
            CircuitState::HalfOpen,
            "idle {extra:?} past a wrap"
        );
        assert_eq!(
            succeed(&breaker).await,
            Ok(()),
            "idle {extra:?} past a wrap"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_sub_millisecond_break_and_wait_are_never_shorter_than_configured() {
    let breaker = breaker(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_micros(999))
            .max_wait_in_half_open(Duration::from_micros(500)),
    );
    fail(&breaker).await.unwrap_err();
    assert!(
        breaker.try_acquire().is_err(),
        "a 999 µs break is a break, not none"
    );
    // Whole milliseconds, rounded up: over at 1 ms, not before 999 µs.
    advance(Duration::from_micros(998)).await;
    assert!(breaker.try_acquire().is_err());
    advance(Duration::from_micros(2)).await;
    let probe = breaker.try_acquire().unwrap();
    // A 500 µs wait is not a zero wait: the probe still owns the period and can close it.
    probe.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_break_tripped_between_milliseconds_never_ends_early() {
    let breaker = breaker(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_millis(10)),
    );
    advance(Duration::from_micros(1_999)).await;
    fail(&breaker).await.unwrap_err();
    // 9.000001 ms after the trip: rounding the trip time down would have ended it here.
    advance(Duration::from_nanos(9_000_001)).await;
    assert!(breaker.try_acquire().is_err());
    // Just short of 10 ms after the trip, still open; at 12.000 ms (the trip rounded up to
    // 2 ms, plus 10) it is over.
    advance(Duration::from_nanos(999_998)).await;
    assert!(breaker.try_acquire().is_err());
    advance(Duration::from_nanos(1_001)).await;
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_half_open_period_starts_from_an_empty_tally_after_the_epoch_wraps() {
    let wait = Duration::from_secs(1);
    let breaker = breaker(
        builder()
            .consecutive_failures(1)
            .permitted_in_half_open(2)
            .success_threshold(2)
            .max_wait_in_half_open(wait),
    );
    fail(&breaker).await.unwrap_err();
    advance(BREAK).await;
    // One success of the two needed, in this half-open period.
    assert_eq!(succeed(&breaker).await, Ok(()));
    // 2 048 periods whose probes hang: each next caller finds the wait and the break after
    // it over, so the breaker re-opens and half-opens again (two epochs). That moves the
    // 12-bit epoch round to this period's value again.
    let mut hung = breaker.try_acquire().unwrap();
    for _ in 0..2048 {
        advance(wait + BREAK).await;
        let next = breaker.try_acquire().unwrap();
        drop(hung);
        hung = next;
    }
    drop(hung);
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(
        breaker.state(),
        CircuitState::HalfOpen,
        "a success from 2 048 periods ago must not count"
    );
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

/// Picks the events a listener panics on.
type Picks = fn(&EventKind) -> bool;

/// A listener that panics on every event of the kind `panics_on` picks.
fn panicking_on(b: CircuitBreakerConfigBuilder, panics_on: Picks) -> CircuitBreakerConfigBuilder {
    b.listener(move |e: &Event| {
        if panics_on(&e.kind()) {
            panic!("listener");
        }
    })
}

fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_any_event_leaves_no_probe_taken() {
    let kinds: [(&str, Picks); 3] = [
        ("state changed", |k| {
            matches!(k, EventKind::StateChanged { .. })
        }),
        ("call recorded", |k| {
            matches!(k, EventKind::CallRecorded { .. })
        }),
        ("rejected", |k| matches!(k, EventKind::Rejected(_))),
    ];
    for (name, panics_on) in kinds {
        let breaker = breaker(panicking_on(
            builder()
                .consecutive_failures(1)
                .permitted_in_half_open(2)
                .success_threshold(2),
            panics_on,
        ));
        quietly(|| breaker.try_acquire().map(|p| p.failure()));
        assert_eq!(
            breaker.state(),
            CircuitState::Open,
            "{name}: the trip happened"
        );
        quietly(|| breaker.try_acquire().map(drop));
        advance(BREAK).await;
        // The first probe half-opens the breaker; a panic there must not keep its slot.
        quietly(|| breaker.try_acquire().map(|p| p.success()));
        // A probe whose success leaves the period undecided gives its slot back before the
        // listener hears of it.
        quietly(|| breaker.try_acquire().map(|p| p.success()));
        let state = breaker.state();
        // Both slots are free (or the breaker closed): two more probes are admitted.
        let a = breaker.try_acquire();
        let b = breaker.try_acquire();
        assert!(
            a.is_ok() && b.is_ok(),
            "{name}: state {state:?}, slots taken after a listener panic"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_undecided_probe_frees_its_slot_before_a_panicking_listener_runs() {
    let breaker = breaker(panicking_on(
        builder()
            .consecutive_failures(1)
            .permitted_in_half_open(2)
            .success_threshold(2),
        |k| matches!(k, EventKind::CallRecorded { .. }),
    ));
    quietly(|| breaker.try_acquire().map(|p| p.failure()));
    advance(BREAK).await;
    let held = breaker.try_acquire().unwrap();
    let second = breaker.try_acquire().unwrap();
    assert!(
        quietly(|| second.success()).is_none(),
        "the listener panicked"
    );
    // The slot the second probe held is free again for the next caller.
    assert!(breaker.try_acquire().is_ok());
    drop(held);
}

#[test]
fn state_changes_reach_the_listener_in_the_order_they_happened() {
    let log = Arc::new(Mutex::new(Vec::<(CircuitState, CircuitState)>::new()));
    let seen = log.clone();
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .listener(move |e: &Event| {
                if let EventKind::StateChanged { from, to } = e.kind() {
                    seen.lock().unwrap().push((from, to));
                }
            })
            .build()
            .unwrap(),
    );
    std::thread::scope(|s| {
        for t in 0..4 {
            let breaker = &breaker;
            s.spawn(move || {
                for i in 0..5_000 {
                    match (t + i) % 4 {
                        0 => breaker.isolate(),
                        1 => breaker.reset(),
                        2 => breaker.disable(),
                        _ => {
                            if let Ok(p) = breaker.try_acquire() {
                                p.failure();
                            }
                        }
                    }
                }
            });
        }
    });
    let log = log.lock().unwrap();
    assert!(log.len() > 1_000, "{} transitions", log.len());
    for (i, pair) in log.windows(2).enumerate() {
        assert_eq!(pair[0].1, pair[1].0, "event {i}: {pair:?}");
    }
    // And the last report is the breaker's state now.
    assert_eq!(log.last().unwrap().1, breaker.state());
}

#[tokio::test(start_paused = true)]
async fn the_longest_break_the_config_allows_lasts_to_its_end() {
    use palisade::circuit_breaker::MAX_DURATION;
    let b = breaker(builder().break_duration(MAX_DURATION));
    for _ in 0..2 {
        let _ = fail(&b).await;
    }
    assert_eq!(b.state(), CircuitState::Open);
    advance(MAX_DURATION - Duration::from_millis(1)).await;
    assert!(
        b.try_acquire().is_err(),
        "a 24 h break is still on a millisecond before its end"
    );
    advance(Duration::from_millis(1)).await;
    assert!(b.try_acquire().is_ok(), "the break is over");
    assert_eq!(b.state(), CircuitState::HalfOpen);
}

#[test]
fn a_breakers_debug_output_shows_its_state() {
    let b = breaker(builder().consecutive_failures(1));
    assert!(format!("{b:?}").contains("Closed"), "{b:?}");
    b.try_acquire().unwrap().failure();
    let shown = format!("{b:?}");
    assert!(
        shown.contains("backend") && shown.contains("Open"),
        "{shown}"
    );
}

#[test]
fn a_state_change_made_by_a_listener_is_reported_after_the_listener_returns() {
    // The listener resets the breaker when it hears that it opened: that second change must
    // wait for the first report to finish, not be reported from inside it.
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let handle = Arc::new(Mutex::new(None::<CircuitBreaker>));
    let (seen, reach) = (log.clone(), handle.clone());
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .listener(move |e: &Event| {
                if let EventKind::StateChanged { from, to } = e.kind() {
                    seen.lock().unwrap().push(format!("enter {from:?}->{to:?}"));
                    if to == CircuitState::Open {
                        let breaker = reach.lock().unwrap().clone();
                        breaker.expect("set before the first call").reset();
                    }
                    seen.lock().unwrap().push(format!("exit {from:?}->{to:?}"));
                }
            })
            .build()
            .unwrap(),
    );
    *handle.lock().unwrap() = Some(breaker.clone());
    breaker.try_acquire().unwrap().failure();
    // Break the cycle listener -> handle -> breaker -> listener.
    handle.lock().unwrap().take();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "enter Closed->Open",
            "exit Closed->Open",
            "enter Open->Closed",
            "exit Open->Closed"
        ]
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_asks_again_after_the_break_ends() {
    let breaker = breaker(builder().consecutive_failures(1));
    let (svc, mut handle) = mock::pair::<&str, &str>();
    let mut svc = mock::Spawn::new(breaker.layer().layer(svc));
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call("req"));
    assert_request_eq!(handle, "req").send_error("boom");
    assert!(assert_ready!(call.poll()).is_err());
    assert_eq!(breaker.state(), CircuitState::Open);

    handle.allow(1);
    assert_ready_ok!(svc.poll_ready(), "refused, not a readiness error");
    advance(BREAK).await;
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call("probe"));
    assert_request_eq!(handle, "probe").send_response("ok");
    assert_eq!(
        assert_ready_ok!(call.poll()),
        "ok",
        "the backend was probed"
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_refuses_at_once_over_an_inner_service_that_is_not_ready() {
    let breaker = breaker(builder().consecutive_failures(1));
    breaker.try_acquire().unwrap().failure();
    let (svc, mut handle) = mock::pair::<&str, &str>();
    let mut svc = mock::Spawn::new(breaker.layer().layer(svc));
    handle.allow(0);
    assert_ready_ok!(svc.poll_ready(), "nothing to wait for while open");
    let err = svc.call("req").await.unwrap_err();
    assert!(
        matches!(err.as_rejected(), Some(Rejected::CircuitOpen(_))),
        "{err}"
    );

    // Admitted, it waits for the inner service without holding a probe slot.
    advance(BREAK).await;
    assert_pending!(svc.poll_ready());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let probe = breaker
        .try_acquire()
        .expect("the probe slot is free while the service waits");
    drop(probe);
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
}

// ===== the call future's states =====

#[tokio::test(start_paused = true)]
async fn a_probe_whose_call_or_classifier_panics_frees_its_slot_and_counts_nothing() {
    let breaker = breaker(builder());
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    advance(BREAK).await;

    // The call panics while polled: the future is dropped with its permit unrecorded.
    let mut call = task::spawn(breaker.run(|| async {
        if BREAK > Duration::ZERO {
            panic!("call");
        }
        Ok::<(), AppError>(())
    }));
    assert!(quietly(|| call.poll()).is_none(), "the call panicked");
    drop(call);
    assert_eq!(breaker.state(), CircuitState::HalfOpen, "nothing counted");

    // The classifier panics once the call is over: the permit is already out of the future
    // and drops unrecorded.
    let mut call = task::spawn(
        breaker
            .run(|| async { Ok::<(), AppError>(()) })
            .classify(|_: &Result<(), AppError>| -> Outcome { panic!("classifier") }),
    );
    assert!(quietly(|| call.poll()).is_none(), "the classifier panicked");
    assert_eq!(breaker.state(), CircuitState::HalfOpen, "nothing counted");

    // Both probe slots went back: the next call is the probe, and its success closes it.
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_call_future_records_once_refuses_once_and_is_done_after() {
    let breaker = breaker(builder().consecutive_failures(1));
    let mut call = task::spawn(breaker.run(|| async { Err::<(), _>(AppError::Backend("down")) }));
    assert_eq!(assert_ready!(call.poll()), Err(AppError::Backend("down")));
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "the failure was recorded"
    );
    assert!(
        quietly(|| call.poll()).is_none(),
        "a finished call cannot be polled again"
    );

    let refused = breaker.run(|| async { Ok::<(), AppError>(()) });
    assert!(refused.is_rejected());
    let mut refused = task::spawn(refused);
    assert!(matches!(
        assert_ready!(refused.poll()),
        Err(AppError::Rejected(Rejected::CircuitOpen(_)))
    ));
    assert!(
        quietly(|| refused.poll()).is_none(),
        "the rejection is handed out once"
    );

    // The tower surface's future has the same states.
    let mut svc = mock::Spawn::new(
        breaker
            .layer()
            .layer(tower::service_fn(|_: ()| async { Ok::<_, AppError>(()) })),
    );
    assert_ready_ok!(svc.poll_ready());
    let response = svc.call(());
    assert!(response.is_rejected());
    let mut response = task::spawn(response);
    assert!(matches!(
        assert_ready!(response.poll()),
        Err(AppError::Rejected(Rejected::CircuitOpen(_)))
    ));
    assert!(quietly(|| response.poll()).is_none());
    assert_eq!(breaker.metrics().rejected, 2, "each refusal counted once");
}
