//! The fleet-wide limits when Redis cannot decide: the server killed mid-test and restarted
//! (fail open, fail closed, the local fallback, the link's breaker, recovery), a peer
//! answering with malformed replies or never finishing one, and a script error from a key
//! of the wrong type. Every outcome is a decision by the fail mode, never a panic.
//!
//! Real sockets, so real time: short durations, generous bounds, bounded loops, outcomes
//! asserted rather than timings.

#[path = "../support/redis.rs"]
mod redis_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade::Rejected;
use palisade::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use palisade::error::{LimitCause, LinkFailure};
use palisade::health::{HealthRegistry, HealthStatus};
use palisade::rate_limiter::RateLimiterConfig;
use palisade::redis::{
    FailMode, RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig,
    RedisSessionLimiter, RedisSessionLimiterConfig,
};
use palisade::telemetry::{Event, EventKind, FailDecision};
use redis_support::{RedisServer, RespPeer};

/// Short, so a dead server costs little; a loopback round trip to a live one is far
/// quicker even on a busy machine.
const ROUND_TRIP: Duration = Duration::from_millis(200);
/// How long a bounded loop waits for the link to notice or recover.
const BOUND: Duration = Duration::from_secs(10);

/// A link whose breaker opens after `failures` consecutive failed round trips, for `pause`.
fn link(url: &str, failures: u32, pause: Duration) -> RedisLink {
    let breaker = CircuitBreakerConfig::builder()
        .name("redis-link")
        .consecutive_failures(failures)
        .break_duration(pause)
        .build()
        .unwrap();
    RedisLink::new(
        RedisConfig::builder()
            .url(url)
            .round_trip_timeout(ROUND_TRIP)
            .connect_timeout(ROUND_TRIP)
            .breaker(breaker)
            .build()
            .unwrap(),
    )
}

/// Every event kind a listener saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<EventKind>>>);

impl Seen {
    fn listener(&self) -> impl Fn(&Event) + Send + Sync + 'static {
        let seen = self.0.clone();
        move |e: &Event| seen.lock().unwrap().push(e.kind())
    }

    fn link_failures(&self, decided: FailDecision) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|k| matches!(k, EventKind::LinkFailed { decided: d, .. } if *d == decided))
            .count()
    }
}

/// One call a minute per key, burst 1: a second call on a key Redis decides is refused.
fn limiter(link: &RedisLink, name: &'static str, mode: FailMode, seen: &Seen) -> RedisRateLimiter {
    let limit = RateLimiterConfig::builder()
        .name(name)
        .rate(1, Duration::from_secs(60))
        .burst(1)
        .listener(seen.listener())
        .build()
        .unwrap();
    RedisRateLimiter::new(
        link,
        RedisRateLimiterConfig::builder(limit)
            .fail_mode(mode)
            .build()
            .unwrap(),
    )
}

fn is_over_rate(outcome: &Result<(), Rejected>) -> bool {
    matches!(outcome, Err(Rejected::RateLimited(l)) if l.cause() == LimitCause::OverRate)
}

/// The cause of a fail-closed refusal; panics on anything else.
fn unavailable<T: std::fmt::Debug>(
    outcome: Result<T, Rejected>,
) -> (LinkFailure, Option<Duration>) {
    match outcome {
        Err(Rejected::Unavailable(down)) => (down.cause(), down.retry_after()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Calls `call` until the link's breaker is open, within [`BOUND`]; each outcome goes to
/// `check`.
async fn until_open<F, Fut>(link: &RedisLink, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let deadline = Instant::now() + BOUND;
    while link.metrics().state != CircuitState::Open {
        assert!(
            Instant::now() < deadline,
            "the link's breaker did not open: {:?}",
            link.metrics()
        );
        call().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_admits_and_reports_the_link_failure() {
    let mut redis = RedisServer::start();
    let link = link(&redis.url(), 3, Duration::from_secs(1));
    let seen = Seen::default();
    let limiter = limiter(&link, "open", FailMode::Open, &seen);
    limiter.try_acquire("ada").await.unwrap();
    assert!(
        is_over_rate(&limiter.try_acquire("ada").await),
        "Redis decides while it runs"
    );

    redis.kill();
    // Over the limit or not, every call is admitted unchecked while Redis is away.
    for i in 0..10 {
        limiter
            .try_acquire("ada")
            .await
            .unwrap_or_else(|e| panic!("call {i} with Redis down: {e:?}"));
    }
    let m = limiter.metrics();
    assert_eq!(m.failed_open, 10, "{m:?}");
    assert_eq!(seen.link_failures(FailDecision::Admitted), 10);
    let (cause, text) = link
        .metrics()
        .last_failure
        .expect("the failure is recorded");
    assert!(
        matches!(cause, LinkFailure::Connection | LinkFailure::Timeout),
        "{cause:?}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_as_unavailable_the_breaker_fails_fast_and_the_link_recovers() {
    let mut redis = RedisServer::start();
    let pause = Duration::from_secs(1);
    let link = link(&redis.url(), 3, pause);
    let seen = Seen::default();
    let limiter = limiter(&link, "closed", FailMode::Closed, &seen);
    // The link's state in the health report: not critical, so degraded while down.
    let health = HealthRegistry::new();
    health.redis(&link, false).unwrap();
    limiter.try_acquire("ada").await.unwrap();
    assert_eq!(health.readiness().status(), HealthStatus::Healthy);

    redis.kill();
    // Refused, and not as "over the limit": a fresh key each time, which Redis would admit.
    let mut n = 0;
    until_open(&link, || {
        n += 1;
        let call = limiter.try_acquire(&n);
        async move {
            let (cause, _) = unavailable(call.await);
            assert_ne!(cause, LinkFailure::MalformedReply);
        }
    })
    .await;
    assert!(seen.link_failures(FailDecision::Refused) >= 3);
    let report = health.readiness();
    assert_eq!(report.status(), HealthStatus::Degraded, "{report:?}");
    let reason = &report.component(link.name()).unwrap().reason;
    assert!(
        reason.starts_with("down:") && reason.contains("last failure"),
        "{reason}"
    );
    assert!(report.component("redis-link").is_some(), "{report:?}");

    // Open: a call costs no round trip, and says when the link tries again.
    for _ in 0..5 {
        let before = link.metrics().round_trips;
        let (cause, retry_after) = unavailable(limiter.try_acquire("bob").await);
        if cause != LinkFailure::BreakerOpen {
            // The break ended under us (a stalled machine): this call was a probe.
            assert_ne!(link.metrics().state, CircuitState::Closed);
            continue;
        }
        assert_eq!(
            link.metrics().round_trips,
            before,
            "no round trip while open"
        );
        let retry_after = retry_after.expect("an open breaker knows when it half-opens");
        // The breaker counts in whole milliseconds, rounded up.
        assert!(
            retry_after <= pause + Duration::from_millis(50),
            "{retry_after:?}"
        );
    }
    assert!(limiter.metrics().failed_closed >= 8);
    assert_eq!(
        limiter.metrics().limited,
        0,
        "never reported as over the limit"
    );

    // Back (empty, its scripts forgotten): decisions come from Redis again.
    redis.restart();
    let deadline = Instant::now() + BOUND;
    loop {
        match limiter.try_acquire("after").await {
            Ok(()) => break,
            Err(Rejected::Unavailable(_)) => {
                assert!(
                    Instant::now() < deadline,
                    "no recovery within {BOUND:?}: {:?}",
                    link.metrics()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(is_over_rate(&limiter.try_acquire("after").await));
    assert_eq!(
        redis.command(&["EXISTS", "palisade:rl:closed:after"]),
        ":1\r\n"
    );
    assert_eq!(link.metrics().state, CircuitState::Closed);
    assert_eq!(health.readiness().status(), HealthStatus::Healthy);
    // The old bucket went with the old server.
    limiter.try_acquire("ada").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_local_applies_a_share_of_the_limit_in_process() {
    let mut redis = RedisServer::start();
    let link = link(&redis.url(), 2, Duration::from_secs(5));
    let seen = Seen::default();
    // Ten a second in bursts of ten; half of it locally: a burst of 5, one every 200 ms.
    let limit = RateLimiterConfig::builder()
        .name("local")
        .rate(10, Duration::from_secs(1))
        .listener(seen.listener())
        .build()
        .unwrap();
    let limiter = RedisRateLimiter::new(
        &link,
        RedisRateLimiterConfig::builder(limit)
            .fail_mode(FailMode::Local { share: 0.5 })
            .build()
            .unwrap(),
    );
    limiter.try_acquire("ada").await.unwrap();

    redis.kill();
    let started = Instant::now();
    let (mut admitted, mut refused) = (0u64, 0u64);
    for _ in 0..30 {
        match limiter.try_acquire("ada").await {
            Ok(()) => admitted += 1,
            Err(Rejected::RateLimited(l)) => {
                assert_eq!(l.cause(), LimitCause::OverRate);
                assert!(l.retry_after().is_some());
                refused += 1;
            }
            Err(other) => panic!("the local limit decides, got {other:?}"),
        }
    }
    let span = started.elapsed();
    let bound = 5 + (span.as_millis() / 200) as u64 + 1;
    assert!(
        (1..=bound).contains(&admitted),
        "{admitted} admitted locally in {span:?}; the local share allows 1..={bound}"
    );
    assert!(refused > 0, "the local burst of 5 ran out");
    assert_eq!(limiter.metrics().decided_locally, 30);
    assert_eq!(seen.link_failures(FailDecision::Local), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limits_follow_their_fail_mode_when_redis_is_down() {
    let mut redis = RedisServer::start();
    let link = link(&redis.url(), 2, Duration::from_secs(5));
    let make = |name, mode| {
        RedisSessionLimiter::new(
            &link,
            RedisSessionLimiterConfig::builder()
                .name(name)
                .max_per_key(4)
                .fail_mode(mode)
                .build()
                .unwrap(),
        )
    };
    let open = make("s-open", FailMode::Open);
    let closed = make("s-closed", FailMode::Closed);
    let local = make("s-local", FailMode::Local { share: 0.5 });
    let lease = closed.acquire("ada").await.unwrap();
    assert!(lease.is_fleet_wide());

    redis.kill();
    let (cause, _) = unavailable(closed.acquire("ada").await);
    assert_ne!(cause, LinkFailure::MalformedReply);
    let unchecked: Vec<_> = futures_util::future::join_all((0..6).map(|_| open.acquire("ada")))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(unchecked.iter().all(|l| !l.is_fleet_wide()));
    // Half of 4 in this process, then full; a dropped local lease frees its place at once.
    let first = local.acquire("ada").await.unwrap();
    let _second = local.acquire("ada").await.unwrap();
    assert!(!first.is_fleet_wide());
    match local.acquire("ada").await {
        Err(Rejected::BulkheadFull(full)) => assert_eq!(full.max_concurrent(), 2),
        other => panic!("expected the local share to be full, got {other:?}"),
    }
    drop(first);
    let _third = local.acquire("ada").await.unwrap();
    // Releasing a Redis lease with Redis down is no panic: it reports nothing removed.
    assert!(!lease.release().await);
    assert_eq!(closed.metrics().failed_closed, 1);
    assert_eq!(open.metrics().failed_open, 6);
    assert_eq!(local.metrics().decided_locally, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reply_is_a_link_failure_decided_by_the_fail_mode() {
    // A reply of the wrong shape for every command, the scripts included.
    let peer = RespPeer::start(b":5\r\n");
    let link = link(&peer.url(), 100, Duration::from_secs(1));
    let seen = Seen::default();
    let closed = limiter(&link, "malformed-closed", FailMode::Closed, &seen);
    let (cause, _) = unavailable(closed.try_acquire("ada").await);
    assert_eq!(cause, LinkFailure::MalformedReply);
    let (cause, text) = link.metrics().last_failure.unwrap();
    assert_eq!(cause, LinkFailure::MalformedReply, "{text}");

    let open = limiter(&link, "malformed-open", FailMode::Open, &seen);
    open.try_acquire("ada").await.unwrap();
    assert_eq!(open.metrics().failed_open, 1);

    let sessions = RedisSessionLimiter::new(
        &link,
        RedisSessionLimiterConfig::builder()
            .max_per_key(1)
            .fail_mode(FailMode::Closed)
            .build()
            .unwrap(),
    );
    let (cause, _) = unavailable(sessions.acquire("ada").await);
    assert_eq!(cause, LinkFailure::MalformedReply);
    assert!(
        peer.commands()
            .iter()
            .any(|c| c[0].eq_ignore_ascii_case("EVALSHA")),
        "the scripts reached the peer: {:?}",
        peer.commands()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_is_not_resp_is_a_failure_not_a_panic() {
    let peer = RespPeer::start(b"?not resp at all\r\n");
    let link = link(&peer.url(), 100, Duration::from_secs(1));
    let limiter = limiter(&link, "garbage", FailMode::Closed, &Seen::default());
    for _ in 0..3 {
        let (cause, _) = unavailable(limiter.try_acquire("ada").await);
        assert_ne!(cause, LinkFailure::BreakerOpen);
    }
    let (cause, text) = link.metrics().last_failure.unwrap();
    println!("a reply that is not RESP: {cause:?}: {text}");
    assert!(
        matches!(cause, LinkFailure::MalformedReply | LinkFailure::Connection),
        "{cause:?}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_is_a_timeout() {
    // Reads every command and answers none: a server stuck past the round-trip timeout.
    let peer = RespPeer::start(b"");
    let link = link(&peer.url(), 100, Duration::from_secs(1));
    let limiter = limiter(&link, "truncated", FailMode::Closed, &Seen::default());
    let (cause, _) = unavailable(limiter.try_acquire("ada").await);
    let (last, text) = link.metrics().last_failure.unwrap();
    assert_eq!(
        (cause, last),
        (LinkFailure::Timeout, LinkFailure::Timeout),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_error_is_a_server_failure_decided_by_the_fail_mode() {
    let redis = RedisServer::start();
    let link = link(&redis.url(), 100, Duration::from_secs(1));
    let seen = Seen::default();
    let closed = limiter(&link, "wrongtype", FailMode::Closed, &seen);
    // The bucket's key holds a list: the script's GET fails with WRONGTYPE.
    let key = "palisade:rl:wrongtype:ada";
    assert_eq!(redis.command(&["LPUSH", key, "x"]), ":1\r\n");
    let (cause, _) = unavailable(closed.try_acquire("ada").await);
    assert_eq!(cause, LinkFailure::Server);
    let (cause, text) = link.metrics().last_failure.unwrap();
    assert_eq!(cause, LinkFailure::Server);
    assert!(text.contains("WRONGTYPE"), "{text}");

    let open = RedisRateLimiter::new(
        &link,
        RedisRateLimiterConfig::builder(
            RateLimiterConfig::builder()
                .name("wrongtype")
                .rate(1, Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap(),
    );
    open.try_acquire("ada").await.unwrap();
    assert_eq!(open.metrics().failed_open, 1);

    // A session key holding a string.
    let sessions = RedisSessionLimiter::new(
        &link,
        RedisSessionLimiterConfig::builder()
            .name("wrongtype")
            .max_per_key(1)
            .fail_mode(FailMode::Closed)
            .build()
            .unwrap(),
    );
    assert_eq!(
        redis.command(&["SET", "palisade:ss:wrongtype:ada", "x"]),
        "+OK\r\n"
    );
    let (cause, _) = unavailable(sessions.acquire("ada").await);
    assert_eq!(cause, LinkFailure::Server);

    // With the key fixed, Redis decides again.
    redis.command(&["DEL", key]);
    closed.try_acquire("ada").await.unwrap();
    assert!(is_over_rate(&closed.try_acquire("ada").await));
}
