//! The bulkhead on both surfaces, with paused tokio time.

mod support;

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::bulkhead::{Bulkhead, BulkheadConfigBuilder, BulkheadLayer};
use palisade::error::{BulkheadFull, FullCause};
use palisade::telemetry::{Event, EventKind};
use palisade::{AsRejected, Rejected};
use rand::{Rng, SeedableRng};
use support::AppError;
use tokio::time::{advance, sleep};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{BoxError, Layer, Service};
use tower_test::{assert_request_eq, mock};

fn bulkhead(b: BulkheadConfigBuilder) -> Bulkhead {
    Bulkhead::new(b.name("db").build().unwrap())
}

fn full(limit: u32, cause: FullCause) -> Rejected {
    Rejected::BulkheadFull(BulkheadFull::new("db", limit, cause))
}

#[tokio::test(start_paused = true)]
async fn layer_reserves_in_poll_ready_and_fails_the_call_when_full() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1));
    let (svc, mut handle) = mock::pair::<&str, &str>();
    handle.allow(2);
    let mut first = mock::Spawn::new(BulkheadLayer::new(bh.clone()).layer(svc.clone()));
    let mut second = mock::Spawn::new(bh.layer().layer(svc));

    assert_ready_ok!(first.poll_ready());
    assert_eq!(
        bh.metrics().in_flight,
        1,
        "the slot is reserved by poll_ready"
    );
    assert_ready_ok!(second.poll_ready(), "full is not a readiness error");
    let err = second.call("b").await.unwrap_err();
    assert_eq!(err.as_rejected(), Some(&full(1, FullCause::QueueFull)));

    let mut call = task::spawn(first.call("a"));
    assert_request_eq!(handle, "a").send_response("ok");
    assert_eq!(assert_ready_ok!(call.poll()), "ok");
    assert_eq!(
        bh.metrics().in_flight,
        0,
        "the slot came back when the call completed"
    );
    assert_eq!(bh.metrics().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_clone_never_inherits_a_reservation() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(2));
    let svc = bh
        .layer()
        .layer(tower::service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    let mut ready = mock::Spawn::new(svc);
    assert_ready_ok!(ready.poll_ready());
    let mut clone = ready.get_ref().clone();
    assert_eq!(bh.metrics().in_flight, 1, "cloning reserved nothing");
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(clone.call(()))))
        .unwrap_err();
    assert_eq!(
        panic.downcast_ref::<&str>().copied(),
        Some("BulkheadService: poll_ready must be called before call")
    );
    ready.call(()).await.unwrap();
    assert_eq!(bh.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_ready_service_or_a_response_future_gives_the_slot_back() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1));
    let (svc, mut handle) = mock::pair::<(), ()>();
    handle.allow(1);
    let mut ready = mock::Spawn::new(bh.layer().layer(svc.clone()));
    assert_ready_ok!(ready.poll_ready());
    drop(ready);
    assert_eq!(bh.metrics().in_flight, 0);

    let mut svc = mock::Spawn::new(bh.layer().layer(svc));
    assert_ready_ok!(svc.poll_ready());
    let call = svc.call(());
    assert_eq!(bh.metrics().in_flight, 1);
    drop(call);
    assert_eq!(bh.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn queued_poll_ready_waits_for_a_slot_then_times_out_at_max_wait() {
    let bh = bulkhead(
        Bulkhead::builder()
            .max_concurrent(1)
            .max_queue(1)
            .max_wait(Duration::from_millis(100)),
    );
    let held = bh.try_acquire().unwrap();
    let mut svc = mock::Spawn::new(bh.layer().layer(tower::service_fn(|_: ()| async {
        Ok::<_, BoxError>("served")
    })));
    assert!(
        svc.poll_ready().is_pending(),
        "queued: Pending, not an error"
    );
    assert_eq!(bh.metrics().queued, 1);
    advance(Duration::from_millis(60)).await;
    drop(held);
    assert_ready_ok!(svc.poll_ready(), "granted the released slot");
    assert_eq!(svc.call(()).await.unwrap(), "served");

    let held = bh.try_acquire().unwrap();
    assert!(svc.poll_ready().is_pending());
    advance(Duration::from_millis(100)).await;
    assert_ready_ok!(
        svc.poll_ready(),
        "the wait ran out: ready, with the call failing"
    );
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(err.as_rejected(), Some(&full(1, FullCause::WaitTimedOut)));
    assert_eq!(bh.metrics().queued, 0);
    drop(held);
    assert_eq!(bh.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_in_first_out() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1).max_queue(8));
    let order = Arc::new(Mutex::new(Vec::new()));
    let held = bh.try_acquire().unwrap();
    let mut waiters: Vec<_> = (0..5)
        .map(|i| {
            let order = order.clone();
            task::spawn(bh.run(move || async move {
                order.lock().unwrap().push(i);
                sleep(Duration::from_millis(10)).await;
                Ok::<_, Rejected>(())
            }))
        })
        .collect();
    for w in &mut waiters {
        assert_pending!(w.poll());
    }
    // A newcomer that does not wait cannot overtake them.
    assert!(bh.try_acquire().is_err());
    drop(held);
    let mut done = [false; 5];
    for _ in 0..5 {
        for (w, done) in waiters.iter_mut().zip(&mut done) {
            if !*done && w.poll().is_ready() {
                *done = true;
            }
        }
        advance(Duration::from_millis(10)).await;
    }
    for (w, done) in waiters.iter_mut().zip(&mut done) {
        if !*done {
            assert_ready_ok!(w.poll());
        }
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_dropped_while_queued_takes_no_slot() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1).max_queue(2));
    let held = bh.try_acquire().unwrap();
    let mut first = task::spawn(bh.run(|| async { Ok::<_, Rejected>(1) }));
    let mut second = task::spawn(bh.run(|| async { Ok::<_, Rejected>(2) }));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    drop(first);
    assert_eq!(bh.metrics().queued, 1);
    drop(held);
    assert!(second.is_woken());
    assert_eq!(assert_ready!(second.poll()), Ok(2));
    assert_eq!((bh.metrics().in_flight, bh.metrics().queued), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn run_gives_the_slot_back_on_success_error_panic_and_drop() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1));
    let ok: Result<u8, AppError> = bh.run(|| async { Ok(1) }).await;
    assert_eq!(ok, Ok(1));
    let err: Result<u8, AppError> = bh.run(|| async { Err(AppError::Backend("boom")) }).await;
    assert_eq!(
        err,
        Err(AppError::Backend("boom")),
        "the caller's error passes unchanged"
    );

    let panicking = tokio::spawn({
        let bh = bh.clone();
        async move {
            let _: Result<(), Rejected> = bh
                .run(|| async {
                    panic!("the call panicked");
                })
                .await;
        }
    });
    assert!(panicking.await.unwrap_err().is_panic());
    assert_eq!(bh.metrics().in_flight, 0, "the panic gave the slot back");

    let mut dropped = task::spawn(bh.run(|| async {
        sleep(Duration::from_secs(60)).await;
        Ok::<_, Rejected>(())
    }));
    assert_pending!(dropped.poll());
    assert_eq!(bh.metrics().in_flight, 1);
    drop(dropped);
    assert_eq!(bh.metrics().in_flight, 0);

    let _held = bh.try_acquire().unwrap();
    let mut made = false;
    let rejected: Result<(), AppError> = bh
        .run(|| {
            made = true;
            async { Ok(()) }
        })
        .await;
    assert_eq!(
        rejected,
        Err(AppError::Rejected(full(1, FullCause::QueueFull)))
    );
    assert!(!made, "a rejected call is never made");
}

/// Counts the calls running at once, however they end.
struct Running<'a>(&'a AtomicU32);

impl<'a> Running<'a> {
    fn enter(active: &'a AtomicU32, peak: &AtomicU32) -> Self {
        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Running(active)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn thousands_of_calls_cancelled_at_random_points_leave_every_slot_free() {
    const LIMIT: u32 = 16;
    let bh = bulkhead(
        Bulkhead::builder()
            .max_concurrent(LIMIT)
            .max_queue(256)
            .max_wait(Duration::from_millis(400)),
    );
    let active = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut tasks = Vec::new();
    for _ in 0..4000 {
        let (bh, active, peak) = (bh.clone(), active.clone(), peak.clone());
        let work = Duration::from_millis(rng.random_range(1..50));
        tasks.push(tokio::spawn(async move {
            let _: Result<(), Rejected> = bh
                .run(|| async {
                    // Counted down on drop too: an aborted call leaves through its guard.
                    let _running = Running::enter(&active, &peak);
                    sleep(work).await;
                    Ok(())
                })
                .await;
        }));
    }
    // Cancel half of them at random points: queued, running, or already done.
    for _ in 0..2000 {
        let i = rng.random_range(0..tasks.len());
        tasks[i].abort();
        if rng.random_bool(0.1) {
            tokio::task::yield_now().await;
            advance(Duration::from_millis(rng.random_range(0..5))).await;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let m = bh.metrics();
    assert_eq!((m.in_flight, m.queued, m.available), (0, 0, LIMIT));
    assert_eq!(active.load(Ordering::SeqCst), 0);
    assert!(
        peak.load(Ordering::SeqCst) <= LIMIT,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(
        peak.load(Ordering::SeqCst) > 1,
        "the test must actually run calls at once"
    );
}

#[tokio::test(start_paused = true)]
async fn resizing_takes_effect_for_new_admissions_only() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(2).max_queue(4));
    let a = bh.try_acquire().unwrap();
    let b = bh.try_acquire().unwrap();
    let mut waiting = task::spawn(bh.acquire());
    assert_pending!(waiting.poll());
    bh.set_max_concurrent(3).unwrap();
    assert!(waiting.is_woken());
    let c = assert_ready_ok!(waiting.poll());
    assert_eq!(bh.metrics().in_flight, 3);

    bh.set_max_concurrent(1).unwrap();
    assert_eq!(
        bh.metrics().in_flight,
        3,
        "calls in flight are not disturbed"
    );
    assert!(bh.try_acquire().is_err());
    drop(a);
    drop(b);
    assert!(bh.try_acquire().is_err(), "still at the new limit of 1");
    drop(c);
    assert!(bh.try_acquire().is_ok());
    let err = bh.set_max_concurrent(0).unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_rejects_at_once() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1).max_queue(1));
    let _held = bh.try_acquire().unwrap();
    let mut queued = task::spawn(bh.acquire());
    assert_pending!(queued.poll());
    let rejected = bh.acquire().await.unwrap_err();
    assert_eq!(rejected, full(1, FullCause::QueueFull));
    assert_eq!(bh.metrics().rejected, 1);
}

#[test]
fn every_invalid_config_names_its_field() {
    let cases = [
        (Bulkhead::builder(), "max_concurrent"),
        (Bulkhead::builder().max_concurrent(0), "max_concurrent"),
        (
            Bulkhead::builder().max_concurrent(u32::MAX),
            "max_concurrent",
        ),
        (
            Bulkhead::builder().max_concurrent(1).max_queue(u32::MAX),
            "max_queue",
        ),
        (
            Bulkhead::builder()
                .max_concurrent(1)
                .max_wait(Duration::from_secs(1)),
            "max_wait",
        ),
        (
            Bulkhead::builder()
                .max_concurrent(1)
                .max_queue(1)
                .max_wait(Duration::ZERO),
            "max_wait",
        ),
        (
            Bulkhead::builder()
                .max_concurrent(1)
                .max_queue(1)
                .max_wait(Duration::from_secs(2 * 86_400)),
            "max_wait",
        ),
        (Bulkhead::builder().max_concurrent(1).name(" "), "name"),
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
    send_sync::<Bulkhead>();
    send_sync::<BulkheadLayer>();
    send_sync::<palisade::bulkhead::BulkheadPermit<'static>>();
    send_sync::<palisade::bulkhead::OwnedBulkheadPermit>();
    send::<palisade::bulkhead::BulkheadService<tower::util::BoxCloneSyncService<(), (), BoxError>>>(
    );
    send::<palisade::bulkhead::future::AcquireOwned<palisade::timer::TokioTimer>>();
    send::<palisade::bulkhead::future::Acquire<'static, palisade::timer::TokioTimer>>();
    type Call = std::future::Ready<Result<(), Rejected>>;
    send::<
        palisade::bulkhead::future::RunFuture<
            'static,
            fn() -> Call,
            Call,
            palisade::timer::TokioTimer,
        >,
    >();
    send::<palisade::bulkhead::future::ResponseFuture<Call>>();
}

// ===== a panicking listener loses no slot =====

/// The event kind the listener panics on, while armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Trap {
    Admitted = 1,
    Released = 2,
    Rejected = 3,
}

const TRAPS: [Trap; 3] = [Trap::Admitted, Trap::Released, Trap::Rejected];

/// Arms and disarms a listener that panics on one kind of event.
#[derive(Clone, Default)]
struct Tripwire(Arc<AtomicU8>);

impl Tripwire {
    fn arm(&self, trap: Trap) {
        self.0.store(trap as u8, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

/// A bulkhead named "db" whose listener panics on the kind `Tripwire` is armed with.
fn trapped(b: BulkheadConfigBuilder) -> (Bulkhead, Tripwire) {
    let wire = Tripwire::default();
    let armed = wire.0.clone();
    let listener = move |event: &Event| {
        let kind = match event.kind() {
            EventKind::BulkheadAdmitted { .. } => Trap::Admitted,
            EventKind::BulkheadReleased { .. } => Trap::Released,
            EventKind::Rejected(_) => Trap::Rejected,
            _ => return,
        };
        if armed.load(Ordering::SeqCst) == kind as u8 {
            panic!("listener panicked on {kind:?}");
        }
    };
    (
        Bulkhead::new(b.name("db").listener(listener).build().unwrap()),
        wire,
    )
}

/// One slot, failing fast; one slot with a queue of one and a 100 ms wait.
fn one_slot_modes() -> [(&'static str, BulkheadConfigBuilder); 2] {
    [
        ("fail-fast", Bulkhead::builder().max_concurrent(1)),
        (
            "queued",
            Bulkhead::builder()
                .max_concurrent(1)
                .max_queue(1)
                .max_wait(Duration::from_millis(100)),
        ),
    ]
}

#[track_caller]
fn assert_listener_panics(what: &str, f: impl FnOnce()) {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    assert!(caught.is_err(), "{what}: the trapped event never fired");
}

/// Disarms the listener, then checks that the one slot is free and admits a call.
#[track_caller]
fn assert_slot_back(bh: &Bulkhead, wire: &Tripwire, what: &str) {
    wire.disarm();
    let m = bh.metrics();
    assert_eq!(
        (m.in_flight, m.queued, m.available),
        (0, 0, 1),
        "{what}: a slot is lost"
    );
    let permit = bh.try_acquire();
    assert!(permit.is_ok(), "{what}: the next call is refused");
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_any_event_of_run_leaves_every_slot_free() {
    for (mode, builder) in one_slot_modes() {
        let queued = mode == "queued";
        for trap in TRAPS {
            let what = format!("{mode} run, panic on {trap:?}");
            let (bh, wire) = trapped(builder.clone());
            let call = || bh.run(|| async { Ok::<_, Rejected>(()) });
            match trap {
                Trap::Admitted | Trap::Released => {
                    wire.arm(trap);
                    assert_listener_panics(&what, || {
                        let _ = task::spawn(call()).poll();
                    });
                }
                Trap::Rejected => {
                    let held = bh.try_acquire().unwrap();
                    let mut waiter = task::spawn(call());
                    if queued {
                        assert_pending!(waiter.poll(), "{what}: queued behind the held slot");
                    }
                    wire.arm(trap);
                    // Fail-fast: refused at once. Queued: the queue is full.
                    assert_listener_panics(&what, || {
                        let _ = task::spawn(call()).poll();
                    });
                    if queued {
                        advance(Duration::from_millis(100)).await;
                        assert_listener_panics(&format!("{what} (wait timed out)"), || {
                            let _ = waiter.poll();
                        });
                    }
                    drop((waiter, held));
                }
            }
            assert_slot_back(&bh, &wire, &what);

            if queued && trap == Trap::Admitted {
                // The slot handed to a queued call at release.
                let what = format!("{what}, granted from the queue");
                let held = bh.try_acquire().unwrap();
                let mut waiter = task::spawn(call());
                assert_pending!(waiter.poll());
                wire.arm(trap);
                drop(held);
                assert_listener_panics(&what, || {
                    let _ = waiter.poll();
                });
                drop(waiter);
                assert_slot_back(&bh, &wire, &what);
            }
        }
    }
}

/// poll_ready, call and the response: wherever the event fires.
fn serve<S>(svc: &mut mock::Spawn<S>)
where
    S: Service<(), Error = BoxError>,
{
    if svc.poll_ready().is_ready() {
        let _ = task::spawn(svc.call(())).poll();
    }
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_any_event_of_the_service_leaves_every_slot_free() {
    for (mode, builder) in one_slot_modes() {
        let queued = mode == "queued";
        for trap in TRAPS {
            let what = format!("{mode} service, panic on {trap:?}");
            let (bh, wire) = trapped(builder.clone());
            let service = || {
                mock::Spawn::new(
                    bh.layer()
                        .layer(tower::service_fn(|_: ()| async { Ok::<_, BoxError>("ok") })),
                )
            };
            let mut svc = service();
            match trap {
                Trap::Admitted | Trap::Released => {
                    wire.arm(trap);
                    assert_listener_panics(&what, || serve(&mut svc));
                }
                Trap::Rejected => {
                    let held = bh.try_acquire().unwrap();
                    let mut other = service();
                    if queued {
                        assert_pending!(other.poll_ready(), "{what}: queued behind the held slot");
                    }
                    wire.arm(trap);
                    assert_listener_panics(&what, || serve(&mut svc));
                    if queued {
                        advance(Duration::from_millis(100)).await;
                        assert_listener_panics(&format!("{what} (wait timed out)"), || {
                            serve(&mut other)
                        });
                    }
                    drop((other, held));
                }
            }
            assert_slot_back(&bh, &wire, &what);

            if queued && trap == Trap::Admitted {
                let what = format!("{what}, granted from the queue");
                let held = bh.try_acquire().unwrap();
                assert_pending!(svc.poll_ready());
                wire.arm(trap);
                drop(held);
                assert_listener_panics(&what, || serve(&mut svc));
                assert_slot_back(&bh, &wire, &what);
            }
            // The service that saw the panic serves the next call.
            assert_ready_ok!(svc.poll_ready(), "{what}");
            assert_eq!(svc.call(()).await.unwrap(), "ok", "{what}");
            assert_eq!(bh.metrics().in_flight, 0, "{what}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_any_event_of_a_permit_leaves_every_slot_free() {
    for (mode, builder) in one_slot_modes() {
        let queued = mode == "queued";
        for trap in TRAPS {
            let what = format!("{mode} permits, panic on {trap:?}");
            let (bh, wire) = trapped(builder.clone());
            match trap {
                Trap::Admitted => {
                    wire.arm(trap);
                    assert_listener_panics(&what, || drop(bh.try_acquire()));
                    assert_listener_panics(&what, || drop(bh.try_acquire_owned()));
                    assert_listener_panics(&what, || drop(task::spawn(bh.acquire()).poll()));
                    assert_listener_panics(&what, || drop(task::spawn(bh.acquire_owned()).poll()));
                }
                Trap::Released => {
                    let permit = bh.try_acquire().unwrap();
                    wire.arm(trap);
                    assert_listener_panics(&what, || drop(permit));
                    wire.disarm();
                    let permit = bh.try_acquire_owned().unwrap();
                    wire.arm(trap);
                    assert_listener_panics(&what, || drop(permit));
                }
                Trap::Rejected => {
                    let held = bh.try_acquire().unwrap();
                    wire.arm(trap);
                    assert_listener_panics(&what, || drop(bh.try_acquire()));
                    assert_listener_panics(&what, || drop(bh.try_acquire_owned()));
                    if !queued {
                        assert_listener_panics(&what, || drop(task::spawn(bh.acquire()).poll()));
                    }
                    drop(held);
                }
            }
            assert_slot_back(&bh, &wire, &what);

            if queued && trap == Trap::Admitted {
                let what = format!("{what}, granted from the queue");
                let held = bh.try_acquire().unwrap();
                let mut borrowed = task::spawn(bh.acquire());
                assert_pending!(borrowed.poll());
                wire.arm(trap);
                drop(held);
                assert_listener_panics(&what, || drop(borrowed.poll()));
                drop(borrowed);
                assert_slot_back(&bh, &wire, &what);

                wire.disarm();
                let held = bh.try_acquire().unwrap();
                let mut owned = task::spawn(bh.acquire_owned());
                assert_pending!(owned.poll());
                wire.arm(trap);
                drop(held);
                assert_listener_panics(&what, || drop(owned.poll()));
                drop(owned);
                assert_slot_back(&bh, &wire, &what);
            }
        }
    }
}

// ===== tower readiness =====

#[tokio::test(start_paused = true)]
async fn a_refusal_is_not_kept_across_poll_ready_once_a_slot_frees() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1));
    let (inner, mut handle) = mock::pair::<&str, &str>();
    handle.allow(1);
    let mut svc = mock::Spawn::new(bh.layer().layer(inner));
    let held = bh.try_acquire().unwrap();
    assert_ready_ok!(svc.poll_ready(), "full: ready, and the call would fail");
    assert_ready_ok!(svc.poll_ready(), "still full");
    drop(held);
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(bh.metrics().in_flight, 1, "poll_ready took the freed slot");
    let mut call = task::spawn(svc.call("a"));
    assert_pending!(
        call.poll(),
        "admitted: the request went to the inner service"
    );
    assert_request_eq!(handle, "a").send_response("ok");
    assert_eq!(assert_ready_ok!(call.poll()), "ok");
    assert_eq!(bh.metrics().rejected, 0, "no call was refused");

    // Refused calls are counted once each, however often poll_ready was asked.
    let held = bh.try_acquire().unwrap();
    for _ in 0..3 {
        assert_ready_ok!(svc.poll_ready());
    }
    let err = svc.call("b").await.unwrap_err();
    assert_eq!(err.as_rejected(), Some(&full(1, FullCause::QueueFull)));
    assert_eq!(bh.metrics().rejected, 1);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_queued_refusal_is_not_kept_across_poll_ready_once_the_wait_ran_out() {
    let bh = bulkhead(
        Bulkhead::builder()
            .max_concurrent(1)
            .max_queue(1)
            .max_wait(Duration::from_millis(100)),
    );
    let (inner, mut handle) = mock::pair::<&str, &str>();
    handle.allow(1);
    let mut svc = mock::Spawn::new(bh.layer().layer(inner));
    let held = bh.try_acquire().unwrap();
    assert_pending!(svc.poll_ready(), "queued");
    advance(Duration::from_millis(100)).await;
    assert_ready_ok!(
        svc.poll_ready(),
        "the wait ran out: ready, the call would fail"
    );
    drop(held);
    assert_ready_ok!(svc.poll_ready(), "asked again and admitted");
    let mut call = task::spawn(svc.call("a"));
    assert_pending!(
        call.poll(),
        "admitted: the request went to the inner service"
    );
    assert_request_eq!(handle, "a").send_response("ok");
    assert_eq!(assert_ready_ok!(call.poll()), "ok");
    assert_eq!((bh.metrics().in_flight, bh.metrics().rejected), (0, 0));

    // A full queue: asked again, the service joins the queue once there is room.
    let held = bh.try_acquire().unwrap();
    let mut other = mock::Spawn::new(bh.layer().layer(tower::service_fn(|_: &str| async {
        Ok::<_, BoxError>("other")
    })));
    assert_pending!(other.poll_ready());
    assert_ready_ok!(svc.poll_ready(), "the queue is full");
    drop(other);
    assert_pending!(svc.poll_ready(), "in line now");
    drop(held);
    assert!(svc.is_woken());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call("b"));
    assert_pending!(
        call.poll(),
        "admitted: the request went to the inner service"
    );
    assert_request_eq!(handle, "b").send_response("ok");
    assert_eq!(assert_ready_ok!(call.poll()), "ok");
    assert_eq!((bh.metrics().in_flight, bh.metrics().rejected), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_full_fail_fast_bulkhead_refuses_at_once_over_an_inner_service_that_is_not_ready() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1));
    let (inner, mut handle) = mock::pair::<&str, &str>();
    handle.allow(0);
    let mut admitted = mock::Spawn::new(bh.layer().layer(inner.clone()));
    let mut refused = mock::Spawn::new(bh.layer().layer(inner));

    assert_pending!(
        admitted.poll_ready(),
        "admitted: waits for the inner service"
    );
    assert_eq!(bh.metrics().in_flight, 1, "and holds its slot meanwhile");
    assert_ready_ok!(
        refused.poll_ready(),
        "full: refused at once, not after the inner service"
    );
    let err = refused.call("b").await.unwrap_err();
    assert_eq!(err.as_rejected(), Some(&full(1, FullCause::QueueFull)));

    handle.allow(1);
    assert!(admitted.is_woken());
    assert_ready_ok!(admitted.poll_ready());
    let mut call = task::spawn(admitted.call("a"));
    assert_request_eq!(handle, "a").send_response("ok");
    assert_eq!(assert_ready_ok!(call.poll()), "ok");
    assert_eq!(bh.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_sub_millisecond_max_wait_reaches_the_timer_exactly() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let timer = {
        let asked = asked.clone();
        move |d: Duration| {
            asked.lock().unwrap().push(d);
            sleep(d)
        }
    };
    let waits = [Duration::from_nanos(1), Duration::from_micros(500)];
    for wait in waits {
        let config = Bulkhead::builder()
            .max_concurrent(1)
            .max_queue(1)
            .max_wait(wait)
            .name("db")
            .build()
            .unwrap();
        assert_eq!(config.max_wait(), Some(wait), "kept as given");
        let bh = Bulkhead::with_timer(config, timer.clone());
        let _held = bh.try_acquire().unwrap();
        let mut waiter = task::spawn(bh.acquire());
        assert_pending!(waiter.poll());
        advance(Duration::from_millis(1)).await;
        assert_eq!(
            assert_ready!(waiter.poll()).unwrap_err(),
            full(1, FullCause::WaitTimedOut)
        );
    }
    assert_eq!(*asked.lock().unwrap(), waits, "never rounded, never zero");
}

// ===== the call futures' states =====

/// Part of a call's future: when dropped, notes how many slots were taken at that moment,
/// and panics if asked to.
struct SeesSlots {
    bulkhead: Bulkhead,
    seen: Arc<AtomicU32>,
    panics: bool,
}

impl Drop for SeesSlots {
    fn drop(&mut self) {
        self.seen
            .store(self.bulkhead.metrics().in_flight, Ordering::SeqCst);
        if self.panics {
            panic!("the call's destructor");
        }
    }
}

async fn hang(_holding: SeesSlots) -> Result<(), Rejected> {
    std::future::pending().await
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_is_dropped_before_its_slot_goes_back_even_if_its_destructor_panics() {
    for panics in [false, true] {
        let bh = bulkhead(Bulkhead::builder().max_concurrent(1));
        let seen = Arc::new(AtomicU32::new(u32::MAX));
        let sees = || SeesSlots {
            bulkhead: bh.clone(),
            seen: seen.clone(),
            panics,
        };

        let holding = sees();
        let mut call = task::spawn(bh.run(move || hang(holding)));
        assert_pending!(call.poll());
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(call)));
        assert_eq!(dropped.is_err(), panics);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "run: the slot was held meanwhile"
        );
        assert_eq!(bh.metrics().in_flight, 0, "run: then given back");

        let mut svc = mock::Spawn::new(bh.layer().layer(tower::service_fn(|_: ()| hang(sees()))));
        assert_ready_ok!(svc.poll_ready());
        let mut response = task::spawn(svc.call(()));
        assert_pending!(response.poll());
        seen.store(u32::MAX, Ordering::SeqCst);
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(response)));
        assert_eq!(dropped.is_err(), panics);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "tower: the slot was held meanwhile"
        );
        assert_eq!(bh.metrics().in_flight, 0, "tower: then given back");
    }
}

#[tokio::test(start_paused = true)]
async fn a_finished_or_refused_call_future_cannot_be_polled_again() {
    let bh = bulkhead(Bulkhead::builder().max_concurrent(1));
    let polled_again = |poll: &mut dyn FnMut()| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(poll)).is_err()
    };

    let mut done = task::spawn(bh.run(|| async { Ok::<_, Rejected>(1) }));
    assert_eq!(assert_ready!(done.poll()), Ok(1));
    assert_eq!(
        bh.metrics().in_flight,
        0,
        "the slot went back with the result"
    );
    assert!(polled_again(&mut || {
        let _ = done.poll();
    }));

    let held = bh.try_acquire().unwrap();
    let mut refused = task::spawn(bh.run(|| async { Ok::<_, Rejected>(1) }));
    assert_eq!(
        assert_ready!(refused.poll()),
        Err(full(1, FullCause::QueueFull))
    );
    assert!(polled_again(&mut || {
        let _ = refused.poll();
    }));
    drop(held);

    let mut svc = mock::Spawn::new(
        bh.layer()
            .layer(tower::service_fn(|_: ()| async { Ok::<_, Rejected>(2) })),
    );
    assert_ready_ok!(svc.poll_ready());
    let mut response = task::spawn(svc.call(()));
    assert_eq!(assert_ready!(response.poll()), Ok(2));
    assert_eq!(bh.metrics().in_flight, 0);
    assert!(polled_again(&mut || {
        let _ = response.poll();
    }));
    assert_eq!(bh.metrics().rejected, 1, "the refusal was counted once");
}

#[tokio::test(start_paused = true)]
async fn admitted_and_released_events_count_the_calls_holding_a_slot() {
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let seen = kinds.clone();
    let bh = bulkhead(Bulkhead::builder().max_concurrent(2).max_queue(1).listener(
        move |e: &Event| {
            let k = e.kind();
            if matches!(
                k,
                EventKind::BulkheadAdmitted { .. } | EventKind::BulkheadReleased { .. }
            ) {
                seen.lock().unwrap().push(k);
            }
        },
    ));
    let first = bh.try_acquire().unwrap();
    let second = bh.try_acquire().unwrap();
    let mut queued = task::spawn(bh.acquire());
    assert_pending!(queued.poll());
    // The waiter's flag is set in the word while it waits: released, the slot goes to it.
    drop(first);
    let third = assert_ready!(queued.poll()).unwrap();
    drop(second);
    drop(third);
    use EventKind::{BulkheadAdmitted as In, BulkheadReleased as Out};
    assert_eq!(
        *kinds.lock().unwrap(),
        [
            In { in_flight: 1 },
            In { in_flight: 2 },
            Out { in_flight: 2 },
            In { in_flight: 2 },
            Out { in_flight: 2 },
            Out { in_flight: 1 },
        ]
    );
}
