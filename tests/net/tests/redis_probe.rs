//! Adversarial probes of the fleet-wide limits (cancellation, lost replies, the tower
//! service's readiness, lost leases). Each test either failed on the code it was written
//! against and guards its fix, or is a probe that held as written (its doc says which).
//!
//! Real sockets, so real time: short durations, generous bounds, bounded loops, outcomes
//! asserted rather than timings.

#[path = "../support/redis.rs"]
mod redis_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use palisade::Rejected;
use palisade::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use palisade::error::LinkFailure;
use palisade::redis::{
    FailMode, RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig,
};
use redis_support::RedisServer;
use tower::{BoxError, Service, ServiceExt};

const ROUND_TRIP: Duration = Duration::from_secs(2);
const BOUND: Duration = Duration::from_secs(10);

/// A link whose breaker opens after `failures` consecutive failed round trips and
/// half-opens after `pause`.
fn link(url: &str, failures: u32, pause: Duration) -> RedisLink {
    let breaker = CircuitBreakerConfig::builder()
        .name("probe-link")
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

fn sessions(link: &RedisLink, name: &'static str, ttl: Duration) -> RedisSessionLimiter {
    RedisSessionLimiter::new(
        link,
        RedisSessionLimiterConfig::builder()
            .name(name)
            .max_per_key(1)
            .lease_ttl(ttl)
            .fail_mode(FailMode::Closed)
            .build()
            .unwrap(),
    )
}

fn zcard(redis: &RedisServer, key: &str) -> i64 {
    let reply = redis.command(&["ZCARD", key]);
    reply
        .trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {reply:?}"))
}

/// Waits (bounded) until `done` holds, polling every 20 ms; whether it did.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

// ===== a reply lost with its connection =====

/// A TCP proxy to Redis that, while armed, lets a script call (`EVALSHA`) through to the
/// server and then closes the client's connection instead of passing the reply on: the
/// script ran, the caller never hears of it (a reset connection, a proxy's idle timeout,
/// `CLIENT KILL` at the wrong instant).
struct ReplyEater {
    port: u16,
    // How many script replies are still to be eaten.
    armed: Arc<AtomicU32>,
}

impl ReplyEater {
    fn start(redis_port: u16) -> ReplyEater {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicU32::new(0));
        let armed_in = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    return;
                };
                let eat = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (armed, eat_in) = (armed_in.clone(), eat.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let script = buf[..n]
                            .windows(7)
                            .any(|w| w.eq_ignore_ascii_case(b"EVALSHA"));
                        // Marked before the command reaches the server, so before its reply.
                        if script
                            && armed
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| {
                                    a.checked_sub(1)
                                })
                                .is_ok()
                        {
                            eat_in.store(true, Ordering::SeqCst);
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if eat.load(Ordering::SeqCst) {
                            break;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Both);
                    let _ = s_in.shutdown(Shutdown::Both);
                });
            }
        });
        ReplyEater { port, armed }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// Redis grants the lease, and the connection dies before the reply comes back (on the
/// kept connection and on the fresh one the link tries next). The acquisition failed as
/// a connection failure, which the code took to mean "nothing can have been added", so
/// the lease stayed in Redis with no holder and no renewal: with `max_per_key(1)` the key
/// was refused to everyone for the lease's whole TTL (30 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_reply_was_lost_with_the_connection_is_removed() {
    let redis = RedisServer::start();
    let eater = ReplyEater::start(redis.port());
    let proxied = link(&eater.url(), 1_000, Duration::from_secs(1));
    let direct = link(&redis.url(), 1_000, Duration::from_secs(1));
    let ttl = Duration::from_secs(30);
    let (a, b) = (
        sessions(&proxied, "lost-reply", ttl),
        sessions(&direct, "lost-reply", ttl),
    );
    // Connected and the script loaded, so the eaten replies are the acquisition's own.
    a.acquire("warm").await.unwrap().release().await;
    eater.armed.store(2, Ordering::SeqCst);
    let outcome = a.acquire("ada").await;
    assert!(
        matches!(&outcome, Err(Rejected::Unavailable(u)) if u.cause() == LinkFailure::Connection),
        "{outcome:?}"
    );
    assert_eq!(
        eater.armed.load(Ordering::SeqCst),
        0,
        "both replies were eaten"
    );

    let key = "palisade:ss:lost-reply:ada";
    assert!(
        eventually(|| zcard(&redis, key) == 0).await,
        "a lease no one holds stays in Redis: {}",
        zcard(&redis, key)
    );
    let lease = b.acquire("ada").await;
    assert!(lease.is_ok(), "{lease:?}");
}

// ===== the link's breaker =====

/// Probe (held): the link's breaker half-opens, and its one probe is a round trip whose
/// caller gives up mid-flight. The dropped permit must give the probe back, or the link
/// would stay half-open with no probe left, deciding every call by its fail mode for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_half_open_probe_does_not_wedge_the_link() {
    let mut redis = RedisServer::start();
    let link = link(&redis.url(), 1, Duration::from_millis(200));
    let s = sessions(&link, "half-open", Duration::from_secs(30));
    s.acquire("warm").await.unwrap().release().await;
    redis.kill();
    assert!(s.acquire("ada").await.is_err());
    assert_eq!(link.metrics().state, CircuitState::Open);
    redis.restart();
    assert!(
        eventually(|| link.metrics().state == CircuitState::HalfOpen).await,
        "{:?}",
        link.metrics()
    );
    // The probe's round trip is in flight (connecting) when its caller leaves.
    let cancelled = tokio::time::timeout(Duration::from_micros(1), s.acquire("ada")).await;
    assert!(cancelled.is_err(), "the round trip was still in flight");

    let deadline = Instant::now() + BOUND;
    loop {
        match s.acquire("ada").await {
            Ok(lease) => {
                assert!(lease.is_fleet_wide());
                lease.release().await;
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the link stays wedged: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(link.metrics().state, CircuitState::Closed);
}

// ===== a lease lost while held =====

/// Probe (held): a held lease whose renewals fail (its link isolated) expires in Redis,
/// another instance takes the place, and once the link is back the holder's renewal
/// reports the lease lost (once) rather than adding it back over the limit; releasing it
/// then leaves the other instance's lease alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_expired_while_held_is_reported_lost_and_the_new_holder_keeps_its_place() {
    let redis = RedisServer::start();
    let (link_a, link_b) = (
        link(&redis.url(), 1_000, Duration::from_millis(100)),
        link(&redis.url(), 1_000, Duration::from_millis(100)),
    );
    let ttl = Duration::from_millis(300);
    let (a, b) = (
        sessions(&link_a, "lost", ttl),
        sessions(&link_b, "lost", ttl),
    );
    let held = a.acquire("ada").await.unwrap();
    link_a.breaker().isolate();
    let deadline = Instant::now() + BOUND;
    let taken = loop {
        match b.acquire("ada").await {
            Ok(lease) => break lease,
            Err(e) => assert!(Instant::now() < deadline, "the expired lease stays: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    link_a.breaker().reset();
    assert!(
        eventually(|| a.metrics().lost == 1).await,
        "{:?}",
        a.metrics()
    );
    let key = "palisade:ss:lost:ada";
    assert_eq!(zcard(&redis, key), 1);
    assert!(!held.release().await, "the lost lease was not in Redis");
    assert_eq!(zcard(&redis, key), 1, "the new holder's lease stays");
    assert_eq!(a.metrics().lost, 1, "counted once per loss");
    assert!(taken.release().await);
}

// ===== the tower service =====

/// An inner service that is ready once (the outer `poll_ready`), and whose clones are
/// never ready (`Pending`) or fail readiness (`Err`).
#[derive(Default)]
struct Readiness {
    first: bool,
    fail: bool,
    calls: Arc<AtomicU32>,
}

impl Clone for Readiness {
    fn clone(&self) -> Self {
        Readiness {
            first: false,
            fail: self.fail,
            calls: self.calls.clone(),
        }
    }
}

impl Readiness {
    /// A copy that is ready once, as the original.
    fn clone_ready(&self) -> Self {
        Readiness {
            first: true,
            ..self.clone()
        }
    }
}

impl Service<&'static str> for Readiness {
    type Response = ();
    type Error = BoxError;
    // Never completes: a request admitted at the first poll (its reply can land while that
    // poll runs, on a multi-thread runtime) calls the readied service and waits there.
    type Future = std::future::Pending<Result<(), BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.first {
            Poll::Ready(Ok(()))
        } else if self.fail {
            Poll::Ready(Err("not ready".into()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: &'static str) -> Self::Future {
        assert!(self.first, "called an inner service that is not ready");
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    }
}

/// Probe (held): a request admitted under a session lease whose inner service then never
/// gets ready (the future is dropped) or fails readiness: the lease is removed, once (one
/// round trip to take it, one to remove it), and no unready inner service is called.
/// A service readied and dropped without a call takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_for_an_inner_service_that_never_gets_ready_is_released_once() {
    let redis = RedisServer::start();
    for fail in [false, true] {
        let link = link(&redis.url(), 1_000, Duration::from_secs(1));
        let s = sessions(&link, "tower", Duration::from_secs(30));
        let calls = Arc::new(AtomicU32::new(0));
        let inner = Readiness {
            first: true,
            fail,
            calls: calls.clone(),
        };
        let layer = s.layer(|req: &&'static str| *req);
        // Readied and dropped without a call: no round trip.
        let mut idle = tower::Layer::layer(&layer, inner.clone_ready());
        idle.ready().await.unwrap();
        drop(idle);
        assert_eq!(link.metrics().round_trips, 0);

        let mut svc = tower::Layer::layer(&layer, inner);
        svc.ready().await.unwrap();
        let fut = svc.call("ada");
        let outcome = tokio::time::timeout(Duration::from_millis(300), fut).await;
        match outcome {
            // Never ready, or admitted at the first poll and called (never answers).
            Err(_) => {}
            Ok(Err(e)) if fail => assert_eq!(e.to_string(), "not ready"),
            other => panic!("fail {fail}: {other:?}"),
        }
        let key = "palisade:ss:tower:ada";
        assert!(eventually(|| zcard(&redis, key) == 0).await, "fail {fail}");
        // Removals run in tasks of their own: leave time for a second one to show.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            link.metrics().round_trips,
            2,
            "fail {fail}: {:?}",
            link.metrics()
        );
        assert!(calls.load(Ordering::SeqCst) <= 1);
    }
}
