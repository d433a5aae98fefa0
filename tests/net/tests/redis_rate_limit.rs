//! The fleet-wide rate limit (`palisade::redis::RedisRateLimiter`) against a real
//! `redis-server` of each test's own: GCRA decided in Redis, keys and their expiry, waiting
//! and giving a turn back, two OS processes sharing one limit, local reservation, script
//! reloading, and the tower layer.
//!
//! Real sockets, so real time: short durations, generous bounds, bounded loops, outcomes
//! asserted rather than timings. The links here have a round-trip timeout far above any
//! loopback round trip and fail closed, so a slow machine shows up as a failed assertion
//! naming `Unavailable`, never as a call silently admitted by a fail mode.

#[path = "../support/redis.rs"]
mod redis_support;

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use palisade::Rejected;
use palisade::error::LimitCause;
use palisade::rate_limiter::RateLimiterConfig;
use palisade::redis::{
    FailMode, RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig,
    RedisRateLimiterConfigBuilder,
};
use redis_support::{RedisServer, is_child, spawn_self, wait_ok};
use tower::{Service, ServiceExt, service_fn};

/// Far above a loopback round trip, even on a busy machine: these tests are about decisions,
/// and `redis_failures.rs` about timeouts.
const ROUND_TRIP: Duration = Duration::from_secs(5);
/// How long a bounded loop waits for something Redis or a spawned task does by itself.
const BOUND: Duration = Duration::from_secs(10);
const URL_ENV: &str = "PALISADE_TEST_REDIS_URL";
const RUN_ENV: &str = "PALISADE_TEST_RUN_MS";

fn link(url: &str) -> RedisLink {
    link_with_prefix(url, "palisade")
}

fn link_with_prefix(url: &str, prefix: &'static str) -> RedisLink {
    RedisLink::new(
        RedisConfig::builder()
            .url(url)
            .key_prefix(prefix)
            .round_trip_timeout(ROUND_TRIP)
            .connect_timeout(ROUND_TRIP)
            .build()
            .unwrap(),
    )
}

/// `count` per `period` in bursts of `burst`, failing closed.
fn limit(
    name: &'static str,
    count: u32,
    period: Duration,
    burst: u32,
    max_wait: Duration,
) -> RedisRateLimiterConfigBuilder {
    let limit = RateLimiterConfig::builder()
        .name(name)
        .rate(count, period)
        .burst(burst)
        .max_wait(max_wait)
        .build()
        .unwrap();
    RedisRateLimiterConfig::builder(limit).fail_mode(FailMode::Closed)
}

fn limiter(
    link: &RedisLink,
    name: &'static str,
    count: u32,
    period: Duration,
    burst: u32,
) -> RedisRateLimiter {
    RedisRateLimiter::new(
        link,
        limit(name, count, period, burst, Duration::ZERO)
            .build()
            .unwrap(),
    )
}

/// The wait of a refusal over the rate; panics on anything else.
fn over_rate(outcome: Result<(), Rejected>) -> Duration {
    match outcome {
        Err(Rejected::RateLimited(limited)) => {
            assert_eq!(limited.cause(), LimitCause::OverRate, "{limited:?}");
            limited
                .retry_after()
                .expect("a refusal over the rate knows its wait")
        }
        other => panic!("expected a refusal over the rate, got {other:?}"),
    }
}

/// The integer of a RESP integer reply (`":3\r\n"`).
fn int(reply: &str) -> i64 {
    reply
        .strip_prefix(':')
        .and_then(|r| r.strip_suffix("\r\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {reply:?}"))
}

/// The text of a RESP bulk-string reply, `None` for nil.
fn bulk(reply: &str) -> Option<String> {
    if reply == "$-1\r\n" {
        return None;
    }
    let (_, rest) = reply
        .strip_prefix('$')
        .and_then(|r| r.split_once("\r\n"))
        .unwrap_or_else(|| panic!("not a bulk reply: {reply:?}"));
    Some(rest.strip_suffix("\r\n").unwrap().to_string())
}

/// The TAT (µs of the server's clock) a bucket holds, `None` when the key is gone.
fn tat(redis: &RedisServer, key: &str) -> Option<u64> {
    bulk(&redis.command(&["GET", key])).map(|v| v.parse().expect("a TAT is an integer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_admitted_then_the_next_call_is_refused_with_about_an_interval_to_wait() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    // One token every 2 s: a refusal right after the burst waits close to 2 s, and only a
    // stall of over a second between two calls could bring it under the bound below.
    let limiter = limiter(&link, "burst", 1, Duration::from_secs(2), 3);
    for i in 0..3 {
        limiter
            .try_acquire("ada")
            .await
            .unwrap_or_else(|e| panic!("call {i} of the burst: {e:?}"));
    }
    let wait = over_rate(limiter.try_acquire("ada").await);
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_secs(2),
        "retry_after {wait:?} is not about the 2 s interval"
    );
    let m = limiter.metrics();
    assert_eq!((m.admitted, m.limited), (3, 1), "{m:?}");
    assert_eq!(link.metrics().round_trips, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_call_takes_its_cost_in_tokens() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let limiter = limiter(&link, "weighted", 1, Duration::from_secs(2), 5);
    limiter.try_acquire_n("tenant", 3).await.unwrap();
    // Two tokens left: three more are a token short (about one interval away)...
    let wait = over_rate(limiter.try_acquire_n("tenant", 3).await);
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_secs(2),
        "a call one token short waits about one interval, not {wait:?}"
    );
    // ...two fit exactly, and then nothing does.
    limiter.try_acquire_n("tenant", 2).await.unwrap();
    let wait = over_rate(limiter.try_acquire("tenant").await);
    assert!(wait > Duration::from_secs(1), "{wait:?}");
    // A cost of zero is free and takes no round trip.
    let before = link.metrics().round_trips;
    limiter.try_acquire_n("tenant", 0).await.unwrap();
    assert_eq!(link.metrics().round_trips, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_above_the_burst_is_refused_without_a_round_trip() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let limiter = limiter(&link, "costly", 100, Duration::from_secs(1), 5);
    match limiter.try_acquire_n("tenant", 6).await {
        Err(Rejected::RateLimited(limited)) => {
            assert_eq!(limited.cause(), LimitCause::CostAboveBurst);
            assert_eq!(limited.retry_after(), None, "it is never admitted");
        }
        other => panic!("expected CostAboveBurst, got {other:?}"),
    }
    assert_eq!(link.metrics().round_trips, 0);
    assert_eq!(redis.command(&["DBSIZE"]), ":0\r\n");
    // The burst itself fits.
    limiter.try_acquire_n("tenant", 5).await.unwrap();
    assert_eq!(link.metrics().round_trips, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_independent_and_named_prefix_rl_policy_key() {
    let redis = RedisServer::start();
    let link = link_with_prefix(&redis.url(), "shop");
    let limiter = limiter(&link, "api", 1, Duration::from_secs(60), 1);
    limiter.try_acquire("ada").await.unwrap();
    over_rate(limiter.try_acquire("ada").await);
    // Another key has its own full bucket, whatever the first one's state.
    limiter.try_acquire("bob").await.unwrap();
    limiter
        .try_acquire(&Ipv4Addr::new(10, 0, 0, 7))
        .await
        .unwrap();
    over_rate(limiter.try_acquire("bob").await);

    for key in ["shop:rl:api:ada", "shop:rl:api:bob", "shop:rl:api:10.0.0.7"] {
        assert_eq!(redis.command(&["EXISTS", key]), ":1\r\n", "{key}");
    }
    assert_eq!(redis.command(&["DBSIZE"]), ":3\r\n");

    // Another policy on the same link and key name is another bucket.
    let other = limiter_named(&link, "search");
    other.try_acquire("ada").await.unwrap();
    assert_eq!(redis.command(&["EXISTS", "shop:rl:search:ada"]), ":1\r\n");
}

fn limiter_named(link: &RedisLink, name: &'static str) -> RedisRateLimiter {
    limiter(link, name, 1, Duration::from_secs(60), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_key_expires_when_its_bucket_is_full_again() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    // Ten a second, burst ten: emptied at once, the bucket is full again after 1 s.
    let limiter = limiter(&link, "idle", 10, Duration::from_secs(1), 10);
    let key = "palisade:rl:idle:ada";
    limiter.try_acquire_n("ada", 10).await.unwrap();
    let pttl = int(&redis.command(&["PTTL", key]));
    assert!(
        pttl > 0 && pttl <= 1_000,
        "the key lives until its bucket is full (at most 1000 ms), PTTL {pttl}"
    );

    let deadline = Instant::now() + BOUND;
    while int(&redis.command(&["DBSIZE"])) != 0 {
        assert!(
            Instant::now() < deadline,
            "{key} still there after {BOUND:?}: PTTL {}",
            redis.command(&["PTTL", key])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A vanished key is a full bucket.
    limiter.try_acquire_n("ada", 10).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_call_is_admitted_at_about_its_turn_and_one_too_far_is_refused_at_once() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let interval = Duration::from_millis(500);
    let limiter = RedisRateLimiter::new(
        &link,
        limit(
            "waits",
            2,
            Duration::from_secs(1),
            1,
            Duration::from_millis(800),
        )
        .build()
        .unwrap(),
    );
    let started = Instant::now();
    limiter.acquire("ada").await.unwrap();
    // The next turn is one interval after the first call, which Redis saw after `started`.
    limiter.acquire("ada").await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= interval - Duration::from_millis(50) && waited < BOUND,
        "the second call should be admitted about {interval:?} after the first, not after {waited:?}"
    );
    // The turn after that is an interval away, within max_wait; a call that only tries is
    // refused with about that wait...
    let wait = over_rate(limiter.try_acquire("ada").await);
    assert!(wait > Duration::ZERO && wait <= interval, "{wait:?}");
    // ...and so is a waiting call whose turn is further than max_wait: the waiter below
    // takes the next turn, and the caller after it is 1 s away, over the 800 ms allowed.
    let key = "palisade:rl:waits:ada";
    let before = tat(&redis, key).expect("the TAT of the two calls");
    let waiter = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire("ada").await }
    });
    let taken = before + interval.as_micros() as u64;
    let deadline = Instant::now() + BOUND;
    while tat(&redis, key) != Some(taken) {
        assert!(Instant::now() < deadline, "the waiter never took its turn");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wait = over_rate(limiter.acquire("ada").await);
    assert!(
        wait > Duration::from_millis(800),
        "the refusal reports a wait past max_wait, got {wait:?}"
    );
    assert_eq!(
        tat(&redis, key),
        Some(taken),
        "a refused call takes no turn"
    );
    waiter.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_dropped_before_its_turn_gives_the_turn_back() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let interval = Duration::from_secs(5);
    let limiter = RedisRateLimiter::new(
        &link,
        limit("giveback", 1, interval, 1, Duration::from_secs(20))
            .build()
            .unwrap(),
    );
    let key = "palisade:rl:giveback:ada";
    limiter.try_acquire("ada").await.unwrap();
    let first = tat(&redis, key).expect("the first call set the TAT");

    // This caller's turn is 5 s away; it leaves while waiting for it. Redis moving the TAT
    // is not enough: dropped before the reply is read, the call does not know the TAT it
    // set and cannot give its turn back (the safe side: under-admission), so it leaves
    // well after the reply came, and well before its turn.
    let waiter = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire("ada").await }
    });
    let taken = first + interval.as_micros() as u64;
    let deadline = Instant::now() + BOUND;
    while tat(&redis, key) != Some(taken) {
        assert!(Instant::now() < deadline, "the waiter never took its turn");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "the waiter should still be waiting");
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());

    let deadline = Instant::now() + BOUND;
    loop {
        let now = tat(&redis, key);
        if now == Some(first) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the TAT is {now:?}, not back at {first} (an interval, {}, further while the \
             waiter held its turn)",
            first + interval.as_micros() as u64
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // So the next caller's turn is the abandoned one (under 5 s away), not the one after.
    let wait = over_rate(limiter.try_acquire("ada").await);
    assert!(wait <= interval, "{wait:?}");
}

/// The child half of [`two_processes_share_one_rate_limit`]; a plain run passes over it.
#[tokio::test(flavor = "current_thread")]
async fn child_hammers_the_shared_rate_limit() {
    if !is_child() {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let run = Duration::from_millis(std::env::var(RUN_ENV).unwrap().parse().unwrap());
    let admitted = hammer(&url, run).await;
    println!("admitted={admitted}");
}

/// Tries the shared key every millisecond or so for `run`; the count admitted.
async fn hammer(url: &str, run: Duration) -> u64 {
    let link = link(url);
    let limiter = shared_limiter(&link);
    let until = Instant::now() + run;
    let mut admitted = 0;
    while Instant::now() < until {
        match limiter.try_acquire("hot").await {
            Ok(()) => admitted += 1,
            Err(Rejected::RateLimited(_)) => {}
            Err(other) => panic!("only Redis decides here: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    admitted
}

const SHARED_BURST: u32 = 5;
const SHARED_INTERVAL: Duration = Duration::from_millis(50);

fn shared_limiter(link: &RedisLink) -> RedisRateLimiter {
    limiter(link, "shared", 20, Duration::from_secs(1), SHARED_BURST)
}

#[test]
fn two_processes_share_one_rate_limit() {
    let redis = RedisServer::start();
    let url = redis.url();
    let run = Duration::from_millis(1_500);
    let run_ms = run.as_millis().to_string();
    let envs = [(URL_ENV, url.as_str()), (RUN_ENV, run_ms.as_str())];

    let started = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|_| spawn_self("child_hammers_the_shared_rate_limit", &envs))
        .collect();
    let here = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(hammer(&url, run));
    let theirs: Vec<u64> = children
        .into_iter()
        .map(|child| {
            let out = wait_ok(child);
            out.lines()
                // libtest prints the test's name on the same line, before it.
                .find_map(|line| line.split_once("admitted=").map(|(_, n)| n))
                .unwrap_or_else(|| panic!("the child printed no count:\n{out}"))
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    // Every admission of every process happened within this span.
    let span = started.elapsed();

    let total = here + theirs.iter().sum::<u64>();
    let bound =
        u64::from(SHARED_BURST) + (span.as_micros() / SHARED_INTERVAL.as_micros()) as u64 + 1;
    assert!(
        total <= bound,
        "{total} admitted ({here} here, {theirs:?} in the children) in {span:?}; the fleet \
         limit allows at most {bound}"
    );
    println!("two processes and this one: {total} admitted in {span:?} (at most {bound})");
    // Not vacuous: the full bucket alone admits a burst, and each child got a share.
    assert!(total >= u64::from(SHARED_BURST), "{total}");
    assert!(
        theirs.iter().all(|&n| n > 0),
        "every process was admitted some calls: {theirs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_reservation_saves_round_trips_on_a_hot_key() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    // Fast enough that a tight loop never runs the bucket dry: every call is admitted, and
    // a round trip is needed only once a batch of ten is spent.
    let limiter = RedisRateLimiter::new(
        &link,
        limit(
            "reserve",
            1_000_000,
            Duration::from_secs(1),
            1_000,
            Duration::ZERO,
        )
        .local_reservation(10, Duration::from_secs(5))
        .build()
        .unwrap(),
    );
    let calls = 200;
    for i in 0..calls {
        limiter
            .try_acquire("hot")
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
    }
    let round_trips = link.metrics().round_trips;
    let m = limiter.metrics();
    assert_eq!(m.admitted, calls);
    assert!(
        round_trips < calls / 2,
        "{round_trips} round trips for {calls} calls with batches of 10"
    );
    assert_eq!(
        m.reserved + round_trips,
        calls,
        "each call either made a round trip or spent a reserved token: {m:?}"
    );
    println!(
        "local reservation: {round_trips} round trips for {calls} admitted calls ({:.3} per call)",
        round_trips as f64 / calls as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_tokens_are_dropped_after_their_hold() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let hold = Duration::from_millis(500);
    let limiter = RedisRateLimiter::new(
        &link,
        limit("hold", 100, Duration::from_secs(1), 10, Duration::ZERO)
            .local_reservation(10, hold)
            .build()
            .unwrap(),
    );
    limiter.try_acquire("hot").await.unwrap();
    assert_eq!(link.metrics().round_trips, 1);
    // Nine spare tokens, spendable for 500 ms: this one is local.
    limiter.try_acquire("hot").await.unwrap();
    assert_eq!(link.metrics().round_trips, 1, "spent from the reservation");
    tokio::time::sleep(hold * 3).await;
    // The eight left are past their hold: Redis is asked again.
    limiter.try_acquire("hot").await.unwrap();
    assert_eq!(
        link.metrics().round_trips,
        2,
        "tokens older than their hold must not be spent"
    );
    assert_eq!(limiter.metrics().reserved, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reserving_instances_overshoot_by_no_more_than_the_hold() {
    let redis = RedisServer::start();
    let interval = Duration::from_millis(10);
    let (burst, hold) = (10, Duration::from_millis(200));
    let run = Duration::from_secs(1);
    // Two instances of a service: a link and a limiter each, on one key.
    let instances: Vec<(RedisLink, RedisRateLimiter)> = (0..2)
        .map(|_| {
            let link = link(&redis.url());
            let limiter = RedisRateLimiter::new(
                &link,
                limit(
                    "overshoot",
                    100,
                    Duration::from_secs(1),
                    burst,
                    Duration::ZERO,
                )
                .local_reservation(5, hold)
                .build()
                .unwrap(),
            );
            (link, limiter)
        })
        .collect();
    let admitted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = instances
        .iter()
        .map(|(_, limiter)| {
            let (limiter, admitted) = (limiter.clone(), admitted.clone());
            tokio::spawn(async move {
                let until = Instant::now() + run;
                while Instant::now() < until {
                    match limiter.try_acquire("hot").await {
                        Ok(()) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Rejected::RateLimited(_)) => {}
                        Err(other) => panic!("only Redis decides here: {other:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let span = started.elapsed();
    let total = admitted.load(Ordering::Relaxed);
    let bound = u64::from(burst) + ((span + hold).as_micros() / interval.as_micros()) as u64 + 1;
    assert!(
        total <= bound,
        "{total} admitted by two reserving instances in {span:?}; at most {bound} allowed"
    );
    assert!(total >= u64::from(burst), "{total}");
    println!("two reserving instances: {total} admitted in {span:?} (at most {bound})");
    let reserved: u64 = instances.iter().map(|(_, l)| l.metrics().reserved).sum();
    assert!(reserved > 0, "the reservations were used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_go_on_after_the_server_forgets_its_scripts() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let limiter = limiter(&link, "flush", 1, Duration::from_secs(60), 2);
    limiter.try_acquire("ada").await.unwrap();
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]), "+OK\r\n");
    // EVALSHA now meets NOSCRIPT: the script is loaded again and the decision made, on the
    // bucket's state from before the flush.
    limiter.try_acquire("ada").await.unwrap();
    over_rate(limiter.try_acquire("ada").await);
    assert_eq!(link.metrics().failures, 0, "{:?}", link.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_answers_a_refusal_as_the_error() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let limiter = limiter(&link, "tower", 1, Duration::from_secs(60), 1);
    let calls = Arc::new(AtomicU64::new(0));
    let inner = service_fn({
        let calls = calls.clone();
        move |(user, body): (String, u32)| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Rejected>(format!("{user}:{body}"))
            }
        }
    });
    let mut svc = tower::ServiceBuilder::new()
        .layer(limiter.layer(|req: &(String, u32)| req.0.clone()))
        .service(inner);

    let reply = svc.ready().await.unwrap().call(("ada".into(), 1)).await;
    assert_eq!(reply.unwrap(), "ada:1");
    let refused = svc.ready().await.unwrap().call(("ada".into(), 2)).await;
    over_rate(refused.map(drop));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "a refused request never reaches the service"
    );
    let reply = svc.ready().await.unwrap().call(("bob".into(), 3)).await;
    assert_eq!(reply.unwrap(), "bob:3");
    assert_eq!(
        redis.command(&["EXISTS", "palisade:rl:tower:bob"]),
        ":1\r\n"
    );
}

/// `run` and `run_once` call the user's code only when admitted: a refused closure is never
/// called, a refused future never polled.
#[tokio::test]
async fn run_and_run_once_call_only_when_admitted() {
    let server = RedisServer::start();
    let link = link(&server.url());
    let limiter = limiter(&link, "runs", 1, Duration::from_secs(60), 2);
    let polled = Arc::new(AtomicU64::new(0));
    let count = |polled: &Arc<AtomicU64>| {
        let polled = polled.clone();
        async move {
            polled.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Rejected>(())
        }
    };
    limiter.run("k", || count(&polled)).await.unwrap();
    limiter.run_once("k", count(&polled)).await.unwrap();
    let refused = limiter.run("k", || count(&polled)).await;
    assert!(
        matches!(refused, Err(Rejected::RateLimited(_))),
        "{refused:?}"
    );
    let refused = limiter.run_once("k", count(&polled)).await;
    assert!(
        matches!(refused, Err(Rejected::RateLimited(_))),
        "{refused:?}"
    );
    assert_eq!(
        polled.load(Ordering::Relaxed),
        2,
        "only the admitted calls ran"
    );
}

/// A request waiting for Redis's answer holds none of the inner service's capacity: the
/// slot of a local bulkhead behind the layer, taken when the service was made ready, goes
/// back at the admission's first wait and is taken again once the request is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_on_redis_holds_no_slot_of_the_service_behind() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let limiter = limiter(&link, "behind", 100, Duration::from_secs(1), 100);
    let global = palisade::bulkhead::Bulkhead::new(
        palisade::bulkhead::Bulkhead::builder()
            .name("global")
            .max_concurrent(1)
            .build()
            .unwrap(),
    );
    let inner = service_fn(|(user, body): (String, u32)| async move {
        Ok::<_, Rejected>(format!("{user}:{body}"))
    });
    let mut svc = tower::ServiceBuilder::new()
        .layer(limiter.layer(|req: &(String, u32)| req.0.clone()))
        .layer(global.layer())
        .service(inner);

    svc.ready().await.unwrap();
    assert_eq!(
        global.metrics().in_flight,
        1,
        "readiness took the global slot"
    );
    let mut fut = Box::pin(svc.call(("ada".into(), 1)));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    assert!(
        first.is_pending(),
        "a round trip does not answer within its first poll"
    );
    assert_eq!(
        global.metrics().in_flight,
        0,
        "the request waiting on Redis gave the global slot back"
    );
    assert_eq!(fut.await.unwrap(), "ada:1");
    assert_eq!(global.metrics().in_flight, 0);
    assert_eq!(global.metrics().rejected, 0, "{:?}", global.metrics());
}
