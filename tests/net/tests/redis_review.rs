//! An adversarial review of the fleet-wide limits (#22): each test here failed on the code
//! it was written against, and guards its fix (or is a probe that passed as written).
//!
//! Real sockets, so real time: short durations, generous bounds, bounded loops, outcomes
//! asserted rather than timings.

#[path = "../support/redis.rs"]
mod redis_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use palisade::Rejected;
use palisade::circuit_breaker::CircuitBreakerConfig;
use palisade::config::Policies;
use palisade::rate_limiter::RateLimiterConfig;
use palisade::redis::{
    FailMode, RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig,
    RedisSessionLimiter, RedisSessionLimiterConfig,
};
use redis_support::RedisServer;

const ROUND_TRIP: Duration = Duration::from_secs(2);
const BOUND: Duration = Duration::from_secs(10);

/// A link whose breaker opens after `failures` consecutive failed round trips.
fn link(url: &str, failures: u32) -> RedisLink {
    let breaker = CircuitBreakerConfig::builder()
        .name("review-link")
        .consecutive_failures(failures)
        .break_duration(Duration::from_millis(200))
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

fn rate(link: &RedisLink, name: &'static str) -> RedisRateLimiter {
    let limit = RateLimiterConfig::builder()
        .name(name)
        .rate(1, Duration::from_secs(60))
        .burst(1)
        .build()
        .unwrap();
    RedisRateLimiter::new(
        link,
        RedisRateLimiterConfig::builder(limit)
            .fail_mode(FailMode::Closed)
            .build()
            .unwrap(),
    )
}

/// Sends inline commands on one connection and returns the first line of each reply.
fn inline(port: u16, commands: &[&str]) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    commands
        .iter()
        .map(|c| {
            writer.write_all(format!("{c}\r\n").as_bytes()).unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line
        })
        .collect()
}

// ===== secrets =====

/// `redact` ends the authority at the first '/', '?' or '#', but an unencoded password may
/// hold any of them (base64 passwords hold '/'): the part before it is shown as the host.
#[test]
fn a_password_with_a_slash_question_mark_or_hash_never_shows() {
    for url in [
        "redis://:s3cr/et@127.0.0.1:6379/",
        "redis://user:s3cr/et@127.0.0.1:6379/",
        "redis://:s3cr?et@127.0.0.1:6379/",
        "redis://:s3cr#et@127.0.0.1:6379/",
    ] {
        let builder = RedisConfig::builder().url(url);
        let debug = format!("{builder:?}");
        let built = match builder.build() {
            Ok(config) => format!("{config:?} {}", config.url()),
            Err(e) => format!("{e} {e:?} {}", e.value()),
        };
        assert!(
            !debug.contains("s3cr") && !built.contains("s3cr"),
            "{url}: the builder shows {debug}; the build shows {built}"
        );
    }
}

/// A URL written in `url_env` by mistake is quoted as the variable's name.
#[test]
fn a_url_written_in_url_env_is_not_quoted() {
    let file = "[redis]\nurl_env = \"redis://:hunter2@cache.internal:6379/0\"\n";
    let Err(err) = Policies::from_toml_str(file) else {
        panic!("no such variable is set");
    };
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
}

// ===== the link =====

/// The connection manager only reconnects after an I/O error: a connection that failed in
/// its handshake (AUTH refused) stays failed in the manager for ever, so the link never
/// recovers once the server accepts the password, and its breaker never closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_recovers_once_the_server_accepts_its_password() {
    let redis = RedisServer::start();
    redis.command(&["CONFIG", "SET", "requirepass", "old-one"]);
    let url = format!("redis://:new-one@127.0.0.1:{}/", redis.port());
    let link = link(&url, 1_000);
    assert!(
        link.ping().await.is_err(),
        "the server wants another password"
    );

    // The operator rotates the password to the one the service has.
    let replies = inline(
        redis.port(),
        &["AUTH old-one", "CONFIG SET requirepass new-one"],
    );
    assert!(replies.iter().all(|r| r.starts_with("+OK")), "{replies:?}");

    let deadline = Instant::now() + BOUND;
    loop {
        match link.ping().await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the link never recovered: {e:?}, {:?}",
                link.metrics()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A link used on one runtime, then on another after the first is gone (a static link
/// across `#[tokio::test]`s, a runtime per job): the multiplexed connection's driver task
/// died with the first runtime, and the first round trip on the second fails ("broken
/// pipe"), decided by the fail mode and counted against the breaker.
#[test]
fn a_link_outlives_the_runtime_it_first_connected_on() {
    let redis = RedisServer::start();
    let link = link(&redis.url(), 1_000);
    let limiter = rate(&link, "runtimes");
    for round in 0..2 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let outcome = rt.block_on(limiter.try_acquire(&format!("k{round}")));
        assert!(
            outcome.is_ok(),
            "round {round}: {outcome:?}, {:?}",
            link.metrics()
        );
        drop(rt);
    }
}

// ===== the rate script =====

/// A bucket holding a number Lua reads but the reply cannot carry (`inf`, `1e300`): the
/// script refuses with a wait of that size, Redis turns it into i64::MIN, and the reply is
/// "malformed": the key is never decided again (a refusal writes nothing, so it never
/// expires) and every call on it counts against the link's breaker, which then opens for
/// every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_holding_a_huge_number_is_decided_and_does_not_trip_the_link() {
    let redis = RedisServer::start();
    let link = link(&redis.url(), 3);
    let limiter = rate(&link, "poison");
    redis.command(&["SET", "palisade:rl:poison:a", "inf"]);
    redis.command(&["SET", "palisade:rl:poison:b", "1e300"]);

    let mut poisoned = Vec::new();
    for _ in 0..3 {
        poisoned.push(limiter.try_acquire("a").await);
        poisoned.push(limiter.try_acquire("b").await);
    }
    let clean = limiter.try_acquire("clean").await;
    assert!(
        clean.is_ok(),
        "a fresh key is not decided by Redis: {clean:?}; {:?}",
        link.metrics()
    );
    assert!(
        poisoned
            .iter()
            .all(|o| !matches!(o, Err(Rejected::Unavailable(_)))),
        "{poisoned:?}"
    );
}

// ===== sessions =====

/// A Redis that restarts empty (no persistence, a failover to a fresh replica) forgets
/// every lease; the renewal then finds its lease gone and stops, so calls still running
/// are no longer counted and the fleet admits `max_per_key` more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_still_counts_after_redis_restarts_empty() {
    let mut redis = RedisServer::start();
    let link = link(&redis.url(), 1_000);
    let sessions = RedisSessionLimiter::new(
        &link,
        RedisSessionLimiterConfig::builder()
            .name("restart")
            .max_per_key(1)
            .lease_ttl(Duration::from_millis(900))
            .fail_mode(FailMode::Closed)
            .build()
            .unwrap(),
    );
    let held = sessions.acquire("ada").await.unwrap();
    redis.restart();

    // Wait for a renewal to land (renewed or found lost) after the restart.
    let before = sessions.metrics();
    let deadline = Instant::now() + BOUND;
    loop {
        let m = sessions.metrics();
        if m.renewed > before.renewed || m.lost > before.lost {
            break;
        }
        assert!(Instant::now() < deadline, "no renewal landed: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = loop {
        match sessions.acquire("ada").await {
            Err(Rejected::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    assert!(
        matches!(second, Err(Rejected::BulkheadFull(_))),
        "a second session while the first still runs: {second:?}, {:?}",
        sessions.metrics()
    );
    drop(held);
}

/// `read_take` checks an admitted reply's `taken` ("must not admit more than asked") but
/// not its wait: a reply admitting a call that may not wait (`try_acquire`, `max_wait` 0)
/// with a wait of days makes the call sleep that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_with_a_wait_beyond_max_wait_is_malformed() {
    // Admitted, wait 10^12 µs (11.5 days), 1 token, TAT 5.
    let peer = redis_support::RespPeer::start(b"*4\r\n:1\r\n:1000000000000\r\n:1\r\n:5\r\n");
    let link = link(&peer.url(), 1_000);
    let limiter = rate(&link, "long-wait");
    let outcome = tokio::time::timeout(BOUND, limiter.try_acquire("ada")).await;
    assert!(
        matches!(outcome, Ok(Err(Rejected::Unavailable(_)))),
        "a call that may not wait is parked: {outcome:?}"
    );
}

/// A key type that replaces the buffer instead of appending to it (a plain mistake in a
/// user's impl of a public trait): the limiter slices the key at the prefix's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_replaces_the_buffer_does_not_panic() {
    struct Replacing;
    impl palisade::redis::RedisKey for Replacing {
        fn write_key(&self, out: &mut String) {
            *out = String::from("k");
        }
    }
    // Nothing listens there: every call is decided by the local fallback.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let link = link(&format!("redis://127.0.0.1:{port}/"), 1_000);
    let limit = RateLimiterConfig::builder()
        .name("replacing")
        .rate(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let limiter = RedisRateLimiter::new(
        &link,
        RedisRateLimiterConfig::builder(limit)
            .fail_mode(FailMode::Local { share: 0.5 })
            .build()
            .unwrap(),
    );
    let outcome = tokio::spawn(async move { limiter.try_acquire(&Replacing).await }).await;
    assert!(outcome.is_ok(), "the limiter panicked: {outcome:?}");
}

/// The local fallback keeps the burst's share: a weighted call the fleet's burst admits,
/// above the local burst, is refused as `CostAboveBurst` ("never admitted, however long the
/// caller waits") during an outage that may last seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_fallback_never_calls_a_valid_cost_inadmissible() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let link = link(&format!("redis://127.0.0.1:{port}/"), 1_000);
    let limit = RateLimiterConfig::builder()
        .name("weighted-local")
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .build()
        .unwrap();
    let limiter = RedisRateLimiter::new(
        &link,
        RedisRateLimiterConfig::builder(limit)
            .fail_mode(FailMode::Local { share: 0.1 })
            .build()
            .unwrap(),
    );
    let outcome = limiter.try_acquire_n("ada", 5).await;
    assert!(
        !matches!(&outcome, Err(Rejected::RateLimited(l)) if l.cause() == palisade::error::LimitCause::CostAboveBurst),
        "{outcome:?}"
    );
}

/// `local_share` stretches the period by `1 / share` with `Duration::div_f64`, which panics
/// when the result does not fit a `Duration`; any share in (0, 1] passes the check first.
#[test]
fn a_tiny_local_share_is_refused_not_a_panic() {
    let built = std::panic::catch_unwind(|| {
        let limit = RateLimiterConfig::builder()
            .rate(1, Duration::from_secs(1))
            .build()
            .unwrap();
        RedisRateLimiterConfig::builder(limit)
            .fail_mode(FailMode::Local { share: 1e-300 })
            .build()
            .map(|_| ())
    });
    assert!(built.is_ok(), "the builder panicked");
    let file =
        "[redis_rate_limiter.tiny]\nrate = 1\nperiod = \"1s\"\nfail_mode = { local = 1e-300 }\n";
    let loaded = std::panic::catch_unwind(|| Policies::from_toml_str(file).map(|_| ()));
    assert!(loaded.is_ok(), "loading the file panicked");
}

fn sessions(link: &RedisLink, name: &'static str) -> RedisSessionLimiter {
    RedisSessionLimiter::new(
        link,
        RedisSessionLimiterConfig::builder()
            .name(name)
            .max_per_key(1)
            .lease_ttl(Duration::from_secs(30))
            .fail_mode(FailMode::Closed)
            .build()
            .unwrap(),
    )
}

/// An acquisition the caller drops while Redis holds its script (paused writes): Redis
/// grants the lease after the caller left, and the `Pending` guard must remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquisition_dropped_while_redis_holds_it_leaves_no_lease() {
    let redis = RedisServer::start();
    let (link_a, link_b) = (link(&redis.url(), 1_000), link(&redis.url(), 1_000));
    let (a, b) = (sessions(&link_a, "paused"), sessions(&link_b, "paused"));
    // Connected and the script loaded, so the dropped call is the script itself.
    a.acquire("warm").await.unwrap().release().await;
    let replies = inline(redis.port(), &["CLIENT PAUSE 1000 WRITE"]);
    assert!(replies[0].starts_with("+OK"), "{replies:?}");
    let dropped = tokio::time::timeout(Duration::from_millis(200), a.acquire("ada")).await;
    assert!(dropped.is_err(), "the pause held the script: {dropped:?}");

    let deadline = Instant::now() + BOUND;
    loop {
        match b.acquire("ada").await {
            Ok(lease) => {
                lease.release().await;
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the dropped lease stays: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A failed acquisition arms its `Pending` guard whatever the failure, so a refused
/// connection (nothing can have been added) spawns a removal that fails too: each call
/// counts twice against the link's breaker, which opens after half the configured failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_acquisition_counts_once_against_the_breaker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let link = link(&format!("redis://127.0.0.1:{port}/"), 4);
    let sessions = sessions(&link, "refused");
    for _ in 0..2 {
        assert!(matches!(
            sessions.acquire("ada").await,
            Err(Rejected::Unavailable(_))
        ));
    }
    // The removals run in tasks of their own: give them time to land.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && link.metrics().failures <= 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = link.metrics();
    assert_eq!(m.failures, 2, "{m:?}");
    assert_eq!(
        m.state,
        palisade::circuit_breaker::CircuitState::Closed,
        "{m:?}"
    );
}

/// Keys with bytes that mean something to RESP or to a terminal, an empty key and a long
/// one: each is a key of its own, decided by Redis, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_keys_are_keys_like_any_other() {
    let redis = RedisServer::start();
    let link = link(&redis.url(), 1_000);
    let limiter = rate(&link, "odd");
    let long = "x".repeat(100_000);
    let keys = [
        "",
        "a b",
        "\r\n*1\r\n$4\r\nPING\r\n",
        "\0nul",
        "ü→🙂",
        "rl:odd:",
        long.as_str(),
    ];
    for key in keys {
        assert!(limiter.try_acquire(key).await.is_ok(), "{key:?}");
    }
    for key in keys {
        let second = limiter.try_acquire(key).await;
        assert!(
            matches!(second, Err(Rejected::RateLimited(_))),
            "{key:?}: {second:?}"
        );
    }
}

/// Many callers on two links churning one key's places, some giving up mid-acquisition:
/// the places held at any instant never exceed the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_and_cancelled_acquisitions_never_over_admit() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let redis = RedisServer::start();
    let (link_a, link_b) = (link(&redis.url(), 1_000), link(&redis.url(), 1_000));
    // The same limit on two links: two instances of one fleet.
    let (a, b) = (sessions(&link_a, "churn"), sessions(&link_b, "churn"));
    let held = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let s = if t % 2 == 0 { a.clone() } else { b.clone() };
        let (held, peak) = (held.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40u32 {
                let acquire = s.acquire("ada");
                let lease = if (t + i) % 5 == 0 {
                    // Gives up almost at once: sometimes before, sometimes after Redis.
                    match tokio::time::timeout(Duration::from_micros(300), acquire).await {
                        Ok(Ok(lease)) => lease,
                        _ => continue,
                    }
                } else {
                    match acquire.await {
                        Ok(lease) => lease,
                        Err(_) => continue,
                    }
                };
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                held.fetch_sub(1, Ordering::SeqCst);
                if i % 2 == 0 {
                    lease.release().await;
                } else {
                    drop(lease);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 1,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
}
