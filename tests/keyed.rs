//! Per-key policies: eviction never removes a key a call is inside (a proptest against a
//! plain model), the map stays under its cap whatever keys arrive, one host's breaker opens
//! alone, and the tower surface waits and refuses per key.

use std::collections::HashMap;
use std::time::Duration;

use palisade::Rejected;
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
use palisade::clock::FakeClock;
use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
use palisade::rate_limiter::RateLimiter;
use palisade::timer::TokioTimer;
use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt};

const IDLE: Duration = Duration::from_secs(10);
const MAX_KEYS: u32 = 4;
const SLOTS: u32 = 2;

#[derive(Debug, Clone)]
enum Op {
    /// A call for the key starts and stays in flight.
    Start(u8),
    /// The call at this index (modulo the calls in flight) ends: completed or dropped.
    End(usize, bool),
    Advance(u64),
    Evict,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0u8..6).prop_map(Op::Start),
            3 => (any::<usize>(), any::<bool>()).prop_map(|(i, done)| Op::End(i, done)),
            3 => (0u64..8_000).prop_map(Op::Advance),
            2 => Just(Op::Evict),
        ],
        1..120,
    )
}

type Work = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Rejected>>>>;
type Make = Box<dyn FnOnce() -> Work>;
type Call<'a> = tokio_test::task::Spawn<
    palisade::keyed::KeyedFuture<
        'a,
        Bulkhead<TokioTimer>,
        palisade::bulkhead::future::RunFuture<'a, Make, Work, TokioTimer>,
    >,
>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Calls start and end on a few keys, the clock moves, eviction runs: a key with a call
    /// in flight is always in the map with exactly its calls' slots taken; a key that left
    /// had no call in flight and none started for at least the idle time; the map never
    /// holds more than its cap, and refuses a new key only when full.
    #[test]
    fn eviction_never_removes_a_key_with_a_call_in_flight(ops in ops()) {
        let clock = FakeClock::new();
        let bulkhead = Bulkhead::with_timer(
            Bulkhead::builder().max_concurrent(SLOTS).build().unwrap(),
            TokioTimer,
        );
        let keyed: Keyed<u8, _, _> = Keyed::with_clock(
            KeyedConfig::builder().max_keys(MAX_KEYS).idle(IDLE).build().unwrap(),
            bulkhead,
            clock.clone(),
        );
        let mut calls: Vec<(u8, Call<'_>, oneshot::Sender<()>)> = Vec::new();
        let mut held: HashMap<u8, u32> = HashMap::new();
        let mut last_start: HashMap<u8, Duration> = HashMap::new();
        let mut now = Duration::ZERO;
        for op in ops {
            let present: Vec<u8> = (0..6).filter(|k| keyed.contains_key(k)).collect();
            match op {
                Op::Start(key) => {
                    let (tx, rx) = oneshot::channel::<()>();
                    let make: Make = Box::new(move || Box::pin(async move { rx.await.ok(); Ok(()) }));
                    let mut call = tokio_test::task::spawn(keyed.run(&key, make));
                    let was_full = keyed.len() == MAX_KEYS as usize;
                    let known = keyed.contains_key(&key);
                    match call.poll() {
                        std::task::Poll::Pending => {
                            *held.entry(key).or_default() += 1;
                            last_start.insert(key, now);
                            calls.push((key, call, tx));
                        }
                        std::task::Poll::Ready(Err(Rejected::BulkheadFull(full))) => {
                            prop_assert!(full.per_key());
                            prop_assert_eq!(held.get(&key).copied().unwrap_or(0), SLOTS);
                            last_start.insert(key, now);
                        }
                        std::task::Poll::Ready(Err(Rejected::TooManyKeys(_))) => {
                            prop_assert!(!known && was_full, "refused a key with room");
                        }
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
                Op::End(i, complete) => {
                    if !calls.is_empty() {
                        let (key, mut call, tx) = calls.remove(i % calls.len());
                        if complete {
                            tx.send(()).unwrap();
                            prop_assert!(call.poll().is_ready());
                        }
                        drop(call);
                        *held.get_mut(&key).unwrap() -= 1;
                    }
                }
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    now += Duration::from_millis(ms);
                }
                Op::Evict => {
                    keyed.evict_idle();
                }
            }
            prop_assert!(keyed.len() <= MAX_KEYS as usize);
            for (&key, &n) in &held {
                if n > 0 {
                    prop_assert!(keyed.contains_key(&key), "key {} evicted with {} calls in flight", key, n);
                    prop_assert_eq!(keyed.metrics(&key).map(|m| m.in_flight), Some(n));
                }
            }
            for key in present {
                if !keyed.contains_key(&key) {
                    prop_assert_eq!(held.get(&key).copied().unwrap_or(0), 0);
                    let since = now - last_start.get(&key).copied().unwrap_or(Duration::ZERO);
                    prop_assert!(since >= IDLE, "key {} evicted {:?} after its last call", key, since);
                }
            }
        }
    }
}

/// A million distinct keys, ten thousand a second of (fake) time: the map never holds more
/// than its cap, and keeps admitting new keys as old ones go idle.
#[test]
fn a_million_keys_stay_under_the_cap() {
    let clock = FakeClock::new();
    let limiter = RateLimiter::with_timer_and_clock(
        RateLimiter::builder()
            .rate(10, Duration::from_secs(1))
            .build()
            .unwrap(),
        TokioTimer,
        clock.clone(),
    );
    let keyed: Keyed<u64, _, _> = Keyed::with_clock(
        KeyedConfig::builder()
            .max_keys(10_000)
            .idle(Duration::from_secs(1))
            .build()
            .unwrap(),
        limiter,
        clock.clone(),
    );
    let (mut admitted, mut too_many) = (0u64, 0u64);
    let mut most = 0;
    for key in 0..1_000_000u64 {
        if key % 100 == 0 {
            clock.advance(Duration::from_millis(10));
        }
        match keyed.try_acquire(&key) {
            Ok(()) => admitted += 1,
            Err(Rejected::TooManyKeys(_)) => too_many += 1,
            Err(other) => panic!("key {key}: {other}"),
        }
        most = most.max(keyed.len());
    }
    assert!(most <= 10_000, "the map held {most} keys");
    assert_eq!(admitted + too_many, 1_000_000);
    assert!(admitted >= 200_000, "only {admitted} keys admitted");
}

/// The inner service fails for one host: only that host's breaker opens, and the other
/// host's calls go through.
#[tokio::test(start_paused = true)]
async fn one_host_down_opens_only_its_breaker() {
    let per_host: Keyed<String, _> = Keyed::new(
        KeyedConfig::default(),
        CircuitBreaker::new(
            CircuitBreaker::builder()
                .consecutive_failures(3)
                .build()
                .unwrap(),
        ),
    );
    let hosts = tower::service_fn(|host: String| async move {
        if host == "down.example" {
            Err(palisade::Error::Inner("connection refused"))
        } else {
            Ok(host)
        }
    });
    let mut svc = KeyedLayer::new(per_host.clone(), |host: &String| host.clone()).layer(hosts);
    for _ in 0..3 {
        let out = svc.ready().await.unwrap().call("down.example".into()).await;
        assert!(matches!(out, Err(palisade::Error::Inner(_))));
        let out = svc.ready().await.unwrap().call("up.example".into()).await;
        assert!(out.is_ok());
    }
    let out = svc.ready().await.unwrap().call("down.example".into()).await;
    assert!(matches!(
        out,
        Err(palisade::Error::Rejected(Rejected::CircuitOpen(_)))
    ));
    for _ in 0..10 {
        let out = svc.ready().await.unwrap().call("up.example".into()).await;
        assert!(out.is_ok());
    }
    assert_eq!(per_host.state("down.example"), Some(CircuitState::Open));
    assert_eq!(per_host.state("up.example"), Some(CircuitState::Closed));
    assert_eq!(per_host.open_breakers(), 1);
}

/// With `max_wait`, the tower surface waits for the key's own turn, and a call for another
/// key does not wait behind it.
#[tokio::test(start_paused = true)]
async fn the_layer_waits_for_the_keys_own_turn() {
    let per_user: Keyed<String, _> = Keyed::new(
        KeyedConfig::default(),
        RateLimiter::new(
            RateLimiter::builder()
                .rate(1, Duration::from_secs(1))
                .max_wait(Duration::from_secs(5))
                .build()
                .unwrap(),
        ),
    );
    let echo = tower::service_fn(|req: (String, u32)| async move { Ok::<_, Rejected>(req.1) });
    let mut svc = KeyedLayer::new(per_user, |req: &(String, u32)| req.0.clone()).layer(echo);
    let start = tokio::time::Instant::now();
    assert_eq!(
        svc.ready().await.unwrap().call(("ada".into(), 1)).await,
        Ok(1)
    );
    assert_eq!(
        svc.ready().await.unwrap().call(("grace".into(), 2)).await,
        Ok(2)
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        svc.ready().await.unwrap().call(("ada".into(), 3)).await,
        Ok(3)
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

/// A waiting call dropped before its turn gives the turn back, and its lease: the next call
/// for the key gets the turn the dropped one had.
#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_call_gives_its_turn_back() {
    let per_user: Keyed<String, _> = Keyed::new(
        KeyedConfig::default(),
        RateLimiter::new(
            RateLimiter::builder()
                .rate(1, Duration::from_secs(1))
                .max_wait(Duration::from_secs(5))
                .build()
                .unwrap(),
        ),
    );
    per_user.try_acquire("ada").unwrap();
    let mut waiting =
        tokio_test::task::spawn(per_user.run("ada", || async { Ok::<_, Rejected>(1) }));
    assert!(waiting.poll().is_pending());
    drop(waiting);
    let start = tokio::time::Instant::now();
    assert_eq!(
        per_user.run("ada", || async { Ok::<_, Rejected>(2) }).await,
        Ok(2)
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "the dropped turn was not given back"
    );
}
