//! Adversarial probes of the per-key maps (second review of issue 21): eviction must be
//! invisible to a key's rate limiter and bulkhead, cancellation at every poll of a queued
//! or waiting call leaves nothing held, and per-host breakers evicted past their break
//! leave the counts a health report reads in step. Each held on the code it was written
//! against (1aaf793); each was checked to fail on a planted fault where noted.
#![cfg(all(feature = "tokio", feature = "tower"))]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use palisade::Rejected;
use palisade::bulkhead::Bulkhead;
use palisade::clock::{Clock, Ticks};
use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
use palisade::rate_limiter::RateLimiter;
use palisade::timer::TokioTimer;
use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::{Layer, Service};

type NoWait = fn(Duration) -> std::future::Ready<()>;

fn no_wait(_: Duration) -> std::future::Ready<()> {
    std::future::ready(())
}

/// A clock whose lagging reading is the exact one rounded down to a tick, as a coarse
/// kernel clock is: it exercises the slack eviction allows for a lagging reading.
#[derive(Clone, Debug)]
struct TickClock {
    nanos: Arc<AtomicU64>,
    tick_ns: u64,
}

impl TickClock {
    fn new(tick_ns: u64) -> Self {
        TickClock {
            nanos: Arc::new(AtomicU64::new(0)),
            tick_ns,
        }
    }

    fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for TickClock {
    fn now(&self) -> Ticks {
        Ticks::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn now_lagging(&self) -> Ticks {
        let now = self.nanos.load(Ordering::SeqCst);
        Ticks::from_nanos(now - now % self.tick_ns.max(1))
    }

    fn max_lag(&self) -> Duration {
        Duration::from_nanos(self.tick_ns)
    }
}

#[derive(Debug, Clone)]
enum LimitOp {
    /// `try_acquire_n` on a key (no lease).
    Take(u8, u32),
    /// `run` on a key, completed at once (a lease for the call's length).
    Run(u8),
    /// `run` on a key whose call stays in flight until `Release`.
    Hold(u8),
    Release(usize),
    Advance(u64),
    Evict,
}

fn limit_ops() -> impl Strategy<Value = Vec<LimitOp>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0u8..4, 0u32..5).prop_map(|(k, c)| LimitOp::Take(k, c)),
            2 => (0u8..4).prop_map(LimitOp::Run),
            1 => (0u8..4).prop_map(LimitOp::Hold),
            1 => any::<usize>().prop_map(LimitOp::Release),
            // Small steps too, so that calls land near the edges of refills and idle times.
            2 => (0u64..20).prop_map(LimitOp::Advance),
            2 => (0u64..400).prop_map(LimitOp::Advance),
            1 => (0u64..4_000).prop_map(LimitOp::Advance),
            2 => Just(LimitOp::Evict),
        ],
        1..150,
    )
}

/// Admitted, or refused with this `retry_after` (None: never admitted).
fn outcome(r: Result<(), Rejected>) -> Result<(), Option<Duration>> {
    match r {
        Ok(()) => Ok(()),
        Err(Rejected::RateLimited(limited)) => Err(limited.retry_after()),
        Err(other) => panic!("unexpected rejection {other:?}"),
    }
}

type Work = Pin<Box<dyn Future<Output = Result<(), Rejected>>>>;
type Make = Box<dyn FnOnce() -> Work>;

fn held_call(rx: oneshot::Receiver<()>) -> Make {
    Box::new(move || {
        Box::pin(async move {
            rx.await.ok();
            Ok(())
        })
    })
}

fn done_call() -> Make {
    Box::new(|| Box::pin(async { Ok(()) }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Eviction forgets only buckets at rest, which a fresh bucket replaces exactly: so a
    /// map that evicts must decide every call (admit, or refuse with the same
    /// `retry_after`) as limiters kept for ever would, whatever the rate, burst, idle
    /// time, clock lag and mix of leased and unleased calls. (Fails at once when
    /// `Gcra::try_retire` is made to retire a bucket a second short of full.)
    #[test]
    fn eviction_is_invisible_to_a_keys_limiter(
        count in 1u32..6,
        period_ms in 100u64..3_000,
        burst in 1u32..5,
        idle_ms in prop_oneof![1u64..50, 1u64..500, 1u64..5_000],
        tick_ms in 0u64..50,
        ops in limit_ops(),
    ) {
        let clock = TickClock::new(tick_ms * 1_000_000);
        let config = RateLimiter::builder()
            .rate(count, Duration::from_millis(period_ms))
            .burst(burst)
            .build()
            .unwrap();
        let make = || RateLimiter::with_timer_and_clock(config.clone(), no_wait as NoWait, clock.clone());
        let keyed: Keyed<u8, _, _> = Keyed::with_clock(
            KeyedConfig::builder().max_keys(8).idle(Duration::from_millis(idle_ms)).build().unwrap(),
            make(),
            clock.clone(),
        );
        // Made up front: a limiter made on a key's first call is the same as one made earlier.
        let kept: HashMap<u8, RateLimiter<NoWait, TickClock>> = (0..4).map(|k| (k, make())).collect();
        let mut held = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                LimitOp::Take(key, cost) => {
                    let reference = &kept[&key];
                    let want = outcome(reference.try_acquire_n(cost));
                    let got = outcome(keyed.try_acquire_n(&key, cost));
                    prop_assert_eq!(got, want, "op {}: take({}, {})", i, key, cost);
                }
                LimitOp::Run(key) => {
                    let reference = &kept[&key];
                    let want = tokio_test::task::spawn(reference.run(done_call())).poll();
                    let got = tokio_test::task::spawn(keyed.run(&key, done_call())).poll();
                    let (Poll::Ready(want), Poll::Ready(got)) = (want, got) else {
                        panic!("a call with no max_wait decides at once");
                    };
                    prop_assert_eq!(outcome(got), outcome(want), "op {}: run({})", i, key);
                }
                LimitOp::Hold(key) => {
                    let reference = &kept[&key];
                    let (tx, rx) = oneshot::channel();
                    let (rtx, rrx) = oneshot::channel();
                    let mut want = tokio_test::task::spawn(reference.run(held_call(rrx)));
                    let mut got = tokio_test::task::spawn(keyed.run(&key, held_call(rx)));
                    match (want.poll(), got.poll()) {
                        (Poll::Pending, Poll::Pending) => held.push((got, tx, want, rtx)),
                        (Poll::Ready(want), Poll::Ready(got)) => {
                            prop_assert_eq!(outcome(got), outcome(want), "op {}: hold({})", i, key);
                        }
                        (want, got) => prop_assert!(false, "op {}: hold({}): {:?} vs {:?}", i, key, got.is_ready(), want.is_ready()),
                    }
                }
                LimitOp::Release(n) => {
                    if !held.is_empty() {
                        let (mut got, tx, mut want, rtx) = held.remove(n % held.len());
                        tx.send(()).unwrap();
                        rtx.send(()).unwrap();
                        prop_assert!(got.poll().is_ready());
                        prop_assert!(want.poll().is_ready());
                    }
                }
                LimitOp::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                LimitOp::Evict => {
                    keyed.evict_idle();
                }
            }
        }
    }
}

fn sessions(idle: Duration) -> Keyed<String, Bulkhead<TokioTimer>> {
    Keyed::new(
        KeyedConfig::builder().idle(idle).build().unwrap(),
        Bulkhead::with_timer(
            Bulkhead::builder()
                .max_concurrent(1)
                .max_queue(2)
                .max_wait(Duration::from_secs(30))
                .build()
                .unwrap(),
            TokioTimer,
        ),
    )
}

/// Forgets every key at rest: three idle times of quiet, evicting after each.
async fn quiet_spell<P: palisade::keyed::PerKey>(keyed: &Keyed<String, P>, idle: Duration) {
    for _ in 0..3 {
        tokio::time::advance(idle).await;
        keyed.evict_idle();
    }
}

/// A call queued behind the key's one slot, dropped after each number of polls (never
/// polled, queued, queued a while, granted the slot coming free but not yet running):
/// the key ends with no slot taken, nobody queued and no lease, so it is evicted.
#[tokio::test(start_paused = true)]
async fn a_queued_call_dropped_at_any_poll_leaves_the_key_at_rest() {
    let idle = Duration::from_secs(60);
    for polls in 0..4 {
        let keyed = sessions(idle);
        let (tx, rx) = oneshot::channel::<()>();
        let mut tx = Some(tx);
        let mut running = tokio_test::task::spawn(keyed.run("ada", move || async move {
            rx.await.ok();
            Ok::<_, Rejected>(())
        }));
        assert!(running.poll().is_pending());
        let mut queued =
            tokio_test::task::spawn(keyed.run("ada", || async { Ok::<_, Rejected>(()) }));
        for poll in 0..polls {
            match poll {
                2 => {
                    // The slot comes free: the queued call is granted it, not yet polled.
                    tx.take().unwrap().send(()).unwrap();
                    assert!(running.poll().is_ready());
                }
                _ => tokio::time::advance(Duration::from_secs(1)).await,
            }
            let _ = queued.poll();
        }
        drop(queued);
        drop(running);
        let m = keyed.metrics("ada").unwrap();
        assert_eq!((m.in_flight, m.queued), (0, 0), "after {polls} polls");
        quiet_spell(&keyed, idle).await;
        assert!(keyed.is_empty(), "after {polls} polls the key stays");
    }
}

/// The same through the tower surface: a request whose future is dropped at any poll,
/// while queued for its key's slot, leaves the key at rest.
#[tokio::test(start_paused = true)]
async fn a_queued_tower_call_dropped_at_any_poll_leaves_the_key_at_rest() {
    let idle = Duration::from_secs(60);
    type Req = (&'static str, oneshot::Receiver<()>);
    let handler = tower::service_fn(|(_, rx): Req| async move {
        rx.await.ok();
        Ok::<_, Rejected>(())
    });
    for polls in 0..4 {
        let keyed = sessions(idle);
        let mut svc = KeyedLayer::new(keyed.clone(), |req: &Req| req.0.to_string()).layer(handler);
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let (tx1, rx1) = oneshot::channel::<()>();
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut running = tokio_test::task::spawn(svc.call(("ada", rx1)));
        assert!(running.poll().is_pending());
        let (_tx2, rx2) = oneshot::channel::<()>();
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut queued = tokio_test::task::spawn(svc.call(("ada", rx2)));
        let mut tx1 = Some(tx1);
        for poll in 0..polls {
            if poll == 2 {
                tx1.take().unwrap().send(()).unwrap();
                assert!(running.poll().is_ready());
            } else {
                tokio::time::advance(Duration::from_secs(1)).await;
            }
            let _ = queued.poll();
        }
        drop(queued);
        drop(running);
        let m = keyed.metrics("ada").unwrap();
        assert_eq!((m.in_flight, m.queued), (0, 0), "after {polls} polls");
        quiet_spell(&keyed, idle).await;
        assert!(keyed.is_empty(), "after {polls} polls the key stays");
    }
}

/// An open breaker in its break is never evicted, even by a flood of new hosts into a
/// full map (they are refused, typed, and the map does not grow), and stays in the
/// health report; once its break is over and the map has been quiet, it is evicted and
/// the report and `open_breakers` count it out together.
#[tokio::test(start_paused = true)]
async fn an_open_breaker_survives_a_flood_and_leaves_the_health_count_when_evicted() {
    use palisade::Error;
    use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    use palisade::health::{HealthRegistry, HealthStatus};

    let idle = Duration::from_secs(10);
    let per_host: Keyed<String, _> = Keyed::new(
        KeyedConfig::builder()
            .max_keys(3)
            .idle(idle)
            .build()
            .unwrap(),
        CircuitBreaker::new(
            CircuitBreaker::builder()
                .name("upstreams")
                .consecutive_failures(1)
                .break_duration(Duration::from_secs(45))
                .build()
                .unwrap(),
        ),
    );
    let health = HealthRegistry::new();
    health.keyed_breakers(&per_host, true, 0.5).unwrap();
    let _ = per_host
        .run("down", || async { Err::<(), _>(Error::Inner(())) })
        .await;
    assert_eq!(per_host.state("down"), Some(CircuitState::Open));
    for i in 0..40 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let host = format!("flood-{i}");
        let out = per_host
            .run(&*host, || async { Ok::<(), Error<()>>(()) })
            .await;
        if let Err(Error::Rejected(rejected)) = out {
            assert!(matches!(rejected, Rejected::TooManyKeys(_)), "{rejected:?}");
        }
        assert!(per_host.len() <= 3);
        assert_eq!(per_host.state("down"), Some(CircuitState::Open), "at {i}");
        assert_eq!(per_host.open_breakers(), 1);
        assert_ne!(health.readiness().status(), HealthStatus::Healthy);
    }
    // The break is over (45 s); a quiet spell, and the map forgets every key.
    for _ in 0..3 {
        tokio::time::advance(idle).await;
        per_host.evict_idle();
    }
    assert!(per_host.is_empty());
    assert_eq!(per_host.open_breakers(), 0);
    let report = health.readiness();
    assert_eq!(report.status(), HealthStatus::Healthy);
    assert_eq!(
        report.component("upstreams").unwrap().reason,
        "0 hosts, every breaker closed"
    );
}

type Req = (&'static str, oneshot::Receiver<()>);

/// The handler: each request answers once its own channel fires (or is dropped).
fn handler() -> impl Service<Req, Response = (), Error = Rejected, Future = impl Send> + Clone {
    tower::service_fn(|(_, rx): Req| async move {
        rx.await.ok();
        Ok::<_, Rejected>(())
    })
}

/// A per-user bulkhead with a queue in front of a global fail-fast bulkhead of two slots:
/// one user's call runs, its second waits in the user's queue. The waiting call does no
/// work, so it must not hold a global slot, and another user's call must get the one
/// that is free. It does not: the keyed service reserved the inner service's readiness
/// (a global slot) in its `poll_ready` and carried it into the future, where the call
/// then waited for its key's turn, so one user's queue drains the global limit.
#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_its_keys_turn_holds_no_inner_reservation() {
    let sessions: Keyed<&'static str, _> = Keyed::new(
        KeyedConfig::default(),
        Bulkhead::with_timer(
            Bulkhead::builder()
                .name("sessions")
                .max_concurrent(1)
                .max_queue(4)
                .max_wait(Duration::from_secs(60))
                .build()
                .unwrap(),
            TokioTimer,
        ),
    );
    let global = Bulkhead::with_timer(
        Bulkhead::builder()
            .name("global")
            .max_concurrent(2)
            .build()
            .unwrap(),
        TokioTimer,
    );
    let mut svc =
        KeyedLayer::new(sessions.clone(), |req: &Req| req.0).layer(global.layer().layer(handler()));
    let mut call = |user: &'static str| {
        let (tx, rx) = oneshot::channel::<()>();
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(svc.poll_ready(&mut cx).is_ready());
        (tokio_test::task::spawn(svc.call((user, rx))), tx)
    };
    let (mut running, tx1) = call("ada");
    assert!(running.poll().is_pending());
    let (mut queued, _tx2) = call("ada");
    assert!(
        queued.poll().is_pending(),
        "ada's second call waits for her slot"
    );
    assert_eq!(sessions.metrics("ada").map(|m| m.queued), Some(1));
    assert_eq!(
        global.metrics().in_flight,
        1,
        "only one call runs; the one waiting for its key holds a global slot"
    );
    let (mut other, _tx3) = call("grace");
    let polled = other.poll();
    assert!(
        polled.is_pending(),
        "grace's call runs in the free global slot: {polled:?}"
    );
    assert_eq!(global.metrics().in_flight, 2);
    // Ada's first call ends: her queued call takes her slot, then the global one it gave
    // back while it waited (a fresh clone of the inner service is made ready for it).
    tx1.send(()).unwrap();
    assert!(running.poll().is_ready());
    assert_eq!(global.metrics().in_flight, 1);
    assert!(queued.is_woken());
    assert!(queued.poll().is_pending(), "ada's second call runs");
    assert_eq!(global.metrics().in_flight, 2);
    assert_eq!(
        sessions.metrics("ada").map(|m| (m.in_flight, m.queued)),
        Some((1, 0))
    );
}

/// As above for a per-user rate limiter that waits for a turn: a call waiting for its key's
/// turn holds no slot of the global bulkhead behind it, and takes one when its turn comes.
#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_its_keys_rate_limit_turn_holds_no_inner_reservation() {
    let per_user: Keyed<&'static str, _> = Keyed::new(
        KeyedConfig::default(),
        RateLimiter::new(
            RateLimiter::builder()
                .name("per-user")
                .rate(1, Duration::from_secs(1))
                .burst(1)
                .max_wait(Duration::from_secs(5))
                .build()
                .unwrap(),
        ),
    );
    let global = Bulkhead::with_timer(
        Bulkhead::builder()
            .name("global")
            .max_concurrent(1)
            .build()
            .unwrap(),
        TokioTimer,
    );
    let mut svc =
        KeyedLayer::new(per_user, |req: &Req| req.0).layer(global.layer().layer(handler()));
    let mut call = |user: &'static str| {
        let (tx, rx) = oneshot::channel::<()>();
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(svc.poll_ready(&mut cx).is_ready());
        (tokio_test::task::spawn(svc.call((user, rx))), tx)
    };
    let (mut first, tx) = call("ada");
    assert!(first.poll().is_pending());
    tx.send(()).unwrap();
    assert!(
        first.poll().is_ready(),
        "ada's first call took her token and ended"
    );
    let (mut waiting, _tx) = call("ada");
    assert!(
        waiting.poll().is_pending(),
        "ada's second call waits a second for her turn"
    );
    assert_eq!(
        global.metrics().in_flight,
        0,
        "and holds no global slot meanwhile"
    );
    let (mut other, grace) = call("grace");
    assert!(
        other.poll().is_pending(),
        "grace's call runs in the one global slot"
    );
    grace.send(()).unwrap();
    assert!(other.poll().is_ready());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(waiting.is_woken());
    assert!(
        waiting.poll().is_pending(),
        "ada's turn came: her call runs"
    );
    assert_eq!(global.metrics().in_flight, 1);
}
