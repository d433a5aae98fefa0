//! The Timeout policy on both surfaces, with paused tokio time.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::error::Elapsed;
use palisade::telemetry::{Event, EventKind};
use palisade::timeout::{Timeout, TimeoutConfig, TimeoutLayer};
use palisade::{AsRejected, Error, Rejected};
use support::{AppError, Counter, DropFlag, DropGuard};
use tokio::time::{Instant, advance, sleep};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_test::{assert_request_eq, mock};

const LIMIT: Duration = Duration::from_secs(1);

fn timeout() -> Timeout {
    Timeout::new(
        TimeoutConfig::builder()
            .duration(LIMIT)
            .name("backend")
            .build()
            .unwrap(),
    )
}

fn elapsed() -> Rejected {
    Rejected::Timeout(Elapsed::new("backend", LIMIT))
}

#[tokio::test(start_paused = true)]
async fn response_before_deadline_passes_through_untouched() {
    let (svc, mut handle) = mock::pair::<&str, String>();
    let mut svc = timeout().layer().layer(svc);
    handle.allow(1);
    let mut call = task::spawn(svc.ready().await.unwrap().call("ping"));

    assert_request_eq!(handle, "ping").send_response("pong".to_string());
    advance(LIMIT - Duration::from_millis(1)).await;
    assert_eq!(assert_ready_ok!(call.poll()), "pong");
}

#[tokio::test(start_paused = true)]
async fn layer_fails_at_the_deadline_and_drops_the_response_future() {
    let flag = DropFlag::new();
    let per_call = flag.clone();
    let inner = tower::service_fn(move |_: ()| {
        let guard = per_call.guard();
        async move {
            let _guard = guard;
            std::future::pending::<Result<(), BoxError>>().await
        }
    });
    let mut svc = timeout().layer().layer(inner);
    let started = Instant::now();
    let mut call = task::spawn(svc.ready().await.unwrap().call(()));

    assert_pending!(call.poll());
    advance(LIMIT - Duration::from_millis(1)).await;
    assert_pending!(call.poll());
    assert!(!flag.is_dropped(), "dropped before the deadline");

    advance(Duration::from_millis(1)).await;
    assert!(call.is_woken());
    let err = assert_ready!(call.poll()).unwrap_err();
    assert_eq!(started.elapsed(), LIMIT);
    assert_eq!(err.downcast_ref::<Rejected>(), Some(&elapsed()));
    assert!(
        flag.is_dropped(),
        "the timed-out future must be dropped at once"
    );
}

#[tokio::test(start_paused = true)]
async fn run_once_fails_at_the_deadline_and_drops_the_inner_future() {
    let flag = DropFlag::new();
    let guard = flag.guard();
    let mut call = task::spawn(timeout().run_once(async move {
        let _guard = guard;
        sleep(Duration::from_secs(60)).await;
        Ok::<_, Rejected>(())
    }));

    assert_pending!(call.poll());
    advance(LIMIT).await;
    assert_eq!(assert_ready!(call.poll()), Err(elapsed()));
    // The future itself is still alive: the work was cancelled when time ran out.
    assert!(flag.is_dropped());
}

#[tokio::test(start_paused = true)]
async fn a_result_ready_at_the_deadline_wins() {
    let out: Result<u8, Rejected> = timeout()
        .run(|| async {
            sleep(LIMIT).await;
            Ok(1)
        })
        .await;
    assert_eq!(out, Ok(1));
}

#[tokio::test(start_paused = true)]
async fn one_handle_serves_the_layer_and_run() {
    let timeout = timeout();

    let slow_closure: Result<(), BoxError> = timeout
        .run(|| async {
            sleep(LIMIT * 2).await;
            Ok(())
        })
        .await;
    assert!(slow_closure.unwrap_err().is::<Rejected>());

    let mut svc = timeout
        .layer()
        .layer(tower::service_fn(|d: Duration| async move {
            sleep(d).await;
            Ok::<_, BoxError>(d)
        }));
    let fast = svc.ready().await.unwrap().call(LIMIT / 2).await.unwrap();
    assert_eq!(fast, LIMIT / 2);
    let slow = svc
        .ready()
        .await
        .unwrap()
        .call(LIMIT * 2)
        .await
        .unwrap_err();
    assert_eq!(slow.as_rejected(), Some(&elapsed()));
}

#[tokio::test(start_paused = true)]
async fn the_callers_error_type_passes_through_unchanged() {
    let timeout = timeout();
    let backend_err: Result<(), AppError> = timeout
        .run(|| async { Err(AppError::Backend("db down")) })
        .await;
    assert_eq!(backend_err, Err(AppError::Backend("db down")));

    let timed_out: Result<(), AppError> = timeout.run_once(std::future::pending()).await;
    assert_eq!(timed_out, Err(AppError::Rejected(elapsed())));

    // The tower surface keeps the inner service's error type too.
    let mut svc = timeout.layer().layer(tower::service_fn(|_: ()| async {
        Err::<(), _>(AppError::Backend("db down"))
    }));
    let err: AppError = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err, AppError::Backend("db down"));
}

#[tokio::test(start_paused = true)]
async fn box_error_rejection_downcasts_to_rejected() {
    let out: Result<(), BoxError> = timeout().run_once(std::future::pending()).await;
    let err = out.unwrap_err();
    assert_eq!(err.downcast_ref::<Rejected>(), Some(&elapsed()));
    assert_eq!(err.as_rejected(), Some(&elapsed()));
}

#[tokio::test(start_paused = true)]
async fn foreign_errors_travel_in_error_wrapper() {
    let io: Result<(), Error<std::io::Error>> = timeout()
        .run(|| async { Err(Error::Inner(std::io::Error::other("reset"))) })
        .await;
    assert!(matches!(io, Err(Error::Inner(e)) if e.to_string() == "reset"));

    let timed_out: Result<(), Error<std::io::Error>> =
        timeout().run_once(std::future::pending()).await;
    assert!(matches!(timed_out, Err(Error::Rejected(r)) if r == elapsed()));
}

#[tokio::test(start_paused = true)]
async fn per_request_duration_overrides_the_configured_one() {
    let layer = TimeoutLayer::new(timeout()).per_request(|budget: &Option<Duration>| *budget);
    let mut svc = layer.layer(tower::service_fn(|_: Option<Duration>| async {
        sleep(Duration::from_millis(500)).await;
        Ok::<_, BoxError>(())
    }));

    let start = Instant::now();
    let tight = svc
        .ready()
        .await
        .unwrap()
        .call(Some(Duration::from_millis(100)))
        .await;
    let err = tight.unwrap_err();
    let rejected = err.downcast_ref::<Rejected>().unwrap();
    assert_eq!(
        rejected,
        &Rejected::Timeout(Elapsed::new("backend", Duration::from_millis(100)))
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));

    // `None` falls back to the configured second, which the 500 ms call fits in.
    svc.ready().await.unwrap().call(None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_cannot_ask_for_more_than_the_configured_timeout() {
    let layer = TimeoutLayer::new(timeout()).per_request(|budget: &Option<Duration>| *budget);
    let mut svc = layer.layer(tower::service_fn(|_: Option<Duration>| async {
        sleep(Duration::from_secs(5)).await;
        Ok::<_, BoxError>(())
    }));
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Some(Duration::from_secs(3_600)))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Rejected>(),
        Some(&Rejected::Timeout(Elapsed::new(
            "backend",
            Duration::from_secs(1)
        )))
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_does_not_cover_waiting_for_readiness() {
    let (svc, mut handle) = mock::pair::<(), ()>();
    let mut svc = mock::Spawn::new(timeout().layer().layer(svc));
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    advance(LIMIT * 5).await;
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());

    let mut call = task::spawn(svc.call(()));
    assert_request_eq!(handle, ()).send_response(());
    assert_ready_ok!(call.poll());
}

#[tokio::test(start_paused = true)]
async fn the_clock_starts_at_the_first_poll() {
    let timeout = timeout();
    let fut = timeout.run(|| async {
        sleep(LIMIT / 2).await;
        Ok::<_, Rejected>(())
    });
    // Time spent before the future is awaited does not count against it.
    advance(LIMIT * 3).await;
    assert_eq!(fut.await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_reported_once_to_the_listener() {
    let timeouts = Counter::default();
    let seen = timeouts.clone();
    let timeout = Timeout::new(
        TimeoutConfig::builder()
            .duration(LIMIT)
            .name("reported")
            .listener(move |e: &Event| {
                assert_eq!(e.policy_name(), "reported");
                if e.kind() == (EventKind::TimedOut { after: LIMIT }) {
                    seen.incr();
                }
            })
            .build()
            .unwrap(),
    );
    let _: Result<(), Rejected> = timeout.run(|| async { Ok(()) }).await;
    assert_eq!(timeouts.get(), 0);
    let _: Result<(), Rejected> = timeout.run_once(std::future::pending()).await;
    assert_eq!(timeouts.get(), 1);
}

#[test]
fn every_invalid_config_names_its_field() {
    let cases = [
        (
            TimeoutConfig::builder().duration(Duration::ZERO),
            "duration",
            "0ns",
        ),
        (
            TimeoutConfig::builder().duration(Duration::from_secs(366 * 24 * 3600)),
            "duration",
            "31622400s",
        ),
        (
            TimeoutConfig::builder().duration(Duration::MAX),
            "duration",
            "18446744073709551615.999999999s",
        ),
        (TimeoutConfig::builder().name(""), "name", "\"\""),
        (TimeoutConfig::builder().name("   "), "name", "\"   \""),
    ];
    for (builder, field, value) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert_eq!(err.value(), value, "{err}");
        assert!(err.to_string().starts_with(field), "{err}");
    }
    assert!(
        TimeoutConfig::builder()
            .duration(palisade::timeout::MAX_TIMEOUT)
            .build()
            .is_ok()
    );
}

#[test]
fn handles_services_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Timeout>();
    send_sync::<TimeoutLayer>();
    send_sync::<
        palisade::timeout::TimeoutService<tower::util::BoxCloneSyncService<(), (), BoxError>>,
    >();
    send::<
        palisade::timeout::future::RunFuture<
            std::future::Ready<Result<(), Rejected>>,
            palisade::timer::TokioTimer,
        >,
    >();
}

/// Work that never finishes, holding `guard` until it is dropped.
async fn hold_forever(guard: DropGuard) -> Result<(), BoxError> {
    let _guard = guard;
    std::future::pending().await
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_timed_out_leaves_nothing_half_done() {
    let timeout = Timeout::new(
        TimeoutConfig::builder()
            .duration(LIMIT)
            .name("backend")
            .listener(|e: &Event| {
                if let EventKind::TimedOut { .. } = e.kind() {
                    panic!("listener panicked on TimedOut");
                }
            })
            .build()
            .unwrap(),
    );
    let mut svc = mock::Spawn::new(timeout.layer().layer(tower::service_fn(hold_forever)));
    for surface in ["run_once", "service"] {
        let flag = DropFlag::new();
        let mut call = if surface == "run_once" {
            task::spawn(timeout.run_once(hold_forever(flag.guard())))
        } else {
            assert_ready_ok!(svc.poll_ready());
            task::spawn(svc.call(flag.guard()))
        };
        assert_pending!(call.poll());
        advance(LIMIT).await;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.poll()));
        assert!(caught.is_err(), "{surface}: the listener ran");
        assert!(
            flag.is_dropped(),
            "{surface}: the call was dropped before the listener ran"
        );
    }
    assert_eq!(
        timeout.metrics().timed_out,
        2,
        "both counted before the listener ran"
    );
    // The policy serves the next calls on both surfaces.
    assert_eq!(
        timeout
            .run_once(async { Ok::<_, BoxError>(7) })
            .await
            .unwrap(),
        7
    );
    assert_ready_ok!(svc.poll_ready());
    let flag = DropFlag::new();
    let mut call = task::spawn(svc.call(flag.guard()));
    assert_pending!(call.poll(), "a fresh call gets its full duration");
    advance(LIMIT / 2).await;
    assert_pending!(call.poll());
}

#[tokio::test(start_paused = true)]
async fn the_timeout_service_keeps_nothing_from_one_poll_ready_to_the_next() {
    let (inner, mut handle) = mock::pair::<(), ()>();
    let mut svc = mock::Spawn::new(timeout().layer().layer(inner));
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    advance(LIMIT * 3).await;
    assert_ready_ok!(svc.poll_ready(), "asked again, still ready");
    // The deadline runs from the response's first poll, not from either poll_ready.
    let mut call = task::spawn(svc.call(()));
    assert_pending!(call.poll());
    let request = assert_request_eq!(handle, ());
    advance(LIMIT / 2).await;
    request.send_response(());
    assert_ready_ok!(call.poll());

    // Not ready, time passes, ready: the wait is not charged to the next call either.
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    advance(LIMIT * 3).await;
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(()));
    assert_pending!(call.poll());
    advance(LIMIT).await;
    let err = assert_ready!(call.poll()).unwrap_err();
    assert_eq!(err.as_rejected(), Some(&elapsed()));
}

#[tokio::test(start_paused = true)]
async fn a_sub_millisecond_duration_reaches_the_timer_exactly() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let timer = {
        let asked = asked.clone();
        move |d: Duration| {
            asked.lock().unwrap().push(d);
            sleep(d)
        }
    };
    let durations = [
        Duration::from_nanos(1),
        Duration::from_nanos(999),
        Duration::from_micros(500),
        Duration::from_micros(1500),
    ];
    for d in durations {
        let config = TimeoutConfig::builder().duration(d).build().unwrap();
        assert_eq!(config.duration(), d, "kept as given");
        let timeout = Timeout::with_timer(config, timer.clone());
        let err = timeout
            .run_once(std::future::pending::<Result<(), Rejected>>())
            .await
            .unwrap_err();
        let Rejected::Timeout(elapsed) = err else {
            panic!("{err:?}")
        };
        assert_eq!(elapsed.duration(), d);
    }
    assert_eq!(
        *asked.lock().unwrap(),
        durations,
        "never rounded, never zero"
    );
}
