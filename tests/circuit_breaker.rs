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
        CircuitBreakerLayer::new(other.clone()).classifier(|r: &Result<u16, BoxError>| match r {
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
