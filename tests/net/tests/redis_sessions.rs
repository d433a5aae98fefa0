//! The fleet-wide session limit (`palisade::redis::RedisSessionLimiter`) against a real
//! `redis-server` of each test's own: at most N leases per key across links and OS
//! processes, release on drop, renewal while a call runs long, a killed process's leases
//! expiring after their TTL, and the tower layer holding a lease until the response.
//!
//! Real sockets, so real time: short durations, generous bounds, bounded loops, outcomes
//! asserted rather than timings. The links fail closed with a round-trip timeout far above
//! a loopback round trip, so no lease is ever granted unchecked by a fail mode here.

#[path = "../support/redis.rs"]
mod redis_support;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade::Rejected;
use palisade::redis::{
    FailMode, RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig, SessionLease,
};
use redis_support::{RedisServer, is_child, spawn_self, wait_ok};
use tower::{Service, ServiceExt, service_fn};

const ROUND_TRIP: Duration = Duration::from_secs(5);
/// How long a bounded loop waits for something Redis or a spawned task does by itself.
const BOUND: Duration = Duration::from_secs(10);
const URL_ENV: &str = "PALISADE_TEST_REDIS_URL";
const RUN_ENV: &str = "PALISADE_TEST_RUN_MS";

fn link(url: &str) -> RedisLink {
    RedisLink::new(
        RedisConfig::builder()
            .url(url)
            .round_trip_timeout(ROUND_TRIP)
            .connect_timeout(ROUND_TRIP)
            .build()
            .unwrap(),
    )
}

fn sessions(link: &RedisLink, name: &'static str, max: u32, ttl: Duration) -> RedisSessionLimiter {
    RedisSessionLimiter::new(
        link,
        RedisSessionLimiterConfig::builder()
            .name(name)
            .max_per_key(max)
            .lease_ttl(ttl)
            .fail_mode(FailMode::Closed)
            .build()
            .unwrap(),
    )
}

/// Panics unless `outcome` is the refusal of a full key.
fn assert_full<T: std::fmt::Debug>(outcome: Result<T, Rejected>) {
    match outcome {
        Err(Rejected::BulkheadFull(full)) => {
            assert!(full.per_key(), "{full:?}");
            // When a place frees up depends on other calls.
            assert_eq!(Rejected::from(full).retry_after(), None);
        }
        other => panic!("expected the key to be full, got {other:?}"),
    }
}

fn zcard(redis: &RedisServer, key: &str) -> i64 {
    let reply = redis.command(&["ZCARD", key]);
    reply
        .strip_prefix(':')
        .and_then(|r| r.strip_suffix("\r\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {reply:?}"))
}

/// Tries `acquire` until it gets a lease, within [`BOUND`]; panics with the last refusal.
async fn acquire_within(sessions: &RedisSessionLimiter, key: &str) -> SessionLease {
    let deadline = Instant::now() + BOUND;
    loop {
        match sessions.acquire(key).await {
            Ok(lease) => return lease,
            Err(Rejected::BulkheadFull(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("no place for {key} within {BOUND:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_n_leases_per_key_across_two_links_and_a_dropped_lease_frees_its_place() {
    let redis = RedisServer::start();
    // Two instances of a service, each with a link of its own.
    let (link_a, link_b) = (link(&redis.url()), link(&redis.url()));
    let ttl = Duration::from_secs(30);
    let a = sessions(&link_a, "downloads", 2, ttl);
    let b = sessions(&link_b, "downloads", 2, ttl);
    let key = "palisade:ss:downloads:ada";

    let a1 = a.acquire("ada").await.unwrap();
    assert!(a1.is_fleet_wide());
    let b1 = b.acquire("ada").await.unwrap();
    assert_full(a.acquire("ada").await);
    assert_full(b.acquire("ada").await);
    assert_eq!(zcard(&redis, key), 2);
    // Another key has its own places.
    let other = b.acquire("bob").await.unwrap();
    assert_eq!(zcard(&redis, "palisade:ss:downloads:bob"), 1);
    assert_eq!(a.metrics().refused + b.metrics().refused, 2);

    // Dropping releases in a task of its own: the place frees up shortly after.
    drop(a1);
    let b2 = acquire_within(&b, "ada").await;
    assert_eq!(zcard(&redis, key), 2);

    // `release` waits for the removal and says whether a lease was removed.
    assert!(b1.release().await);
    assert_eq!(zcard(&redis, key), 1, "released before `release` returned");
    redis.command(&["DEL", key]);
    assert!(
        !b2.release().await,
        "a lease already gone is not removed twice"
    );
    assert!(other.release().await);
    assert_eq!(
        redis.command(&["DBSIZE"]),
        ":0\r\n",
        "an empty set is no key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_holds_the_place_while_the_call_runs() {
    let redis = RedisServer::start();
    let (link_a, link_b) = (link(&redis.url()), link(&redis.url()));
    let a = sessions(&link_a, "reports", 1, Duration::from_secs(30));
    let b = sessions(&link_b, "reports", 1, Duration::from_secs(30));
    let key = "palisade:ss:reports:ada";

    let out = a
        .run("ada", || {
            let (b, redis) = (&b, &redis);
            async move {
                assert_eq!(zcard(redis, key), 1);
                assert_full(b.acquire("ada").await);
                Ok::<_, Rejected>(7)
            }
        })
        .await
        .unwrap();
    assert_eq!(out, 7);
    // The lease went with the call's end.
    acquire_within(&b, "ada").await.release().await;

    // A refused run never calls the closure.
    let held = b.acquire("ada").await.unwrap();
    let called = AtomicU32::new(0);
    let refused = a
        .run("ada", || async {
            called.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Rejected>(())
        })
        .await;
    assert_full(refused);
    assert_eq!(called.load(Ordering::Relaxed), 0);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_renews_its_lease_so_no_one_takes_its_place() {
    let redis = RedisServer::start();
    let (link_a, link_b) = (link(&redis.url()), link(&redis.url()));
    let ttl = Duration::from_millis(600);
    let a = sessions(&link_a, "long", 1, ttl);
    let b = sessions(&link_b, "long", 1, ttl);

    let running = tokio::spawn({
        let a = a.clone();
        async move {
            a.run("ada", || async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok::<_, Rejected>(())
            })
            .await
        }
    });
    // Wait until the long call holds its lease, then keep trying for the rest of it: more
    // than three TTLs, so a lease not renewed would have expired and let `b` in.
    let deadline = Instant::now() + BOUND;
    while zcard(&redis, "palisade:ss:long:ada") == 0 {
        assert!(
            Instant::now() < deadline,
            "the long call never got its lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut tries = 0;
    while !running.is_finished() {
        match b.acquire("ada").await {
            Err(Rejected::BulkheadFull(_)) => tries += 1,
            Ok(lease) => {
                if running.is_finished() {
                    // Freed by the call's end between the check and the try.
                    drop(lease);
                    break;
                }
                panic!("another instance took the place of a running call after {tries} tries");
            }
            Err(other) => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.await.unwrap().unwrap();
    assert!(tries > 10, "only {tries} tries during the call");
    let m = a.metrics();
    assert!(m.renewed > 0, "{m:?}");
    assert_eq!(m.lost, 0, "{m:?}");
}

// ===== two OS processes =====

const SHARED_MAX: u32 = 3;

/// One session: held from `start` to `end` (ns since the epoch; one clock for every process
/// on this machine), inside the time its lease was in Redis.
type Hold = (u128, u128);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Four tasks taking sessions on one key for `run`, each held 20 to 60 ms; every hold.
async fn churn(url: &str, run: Duration) -> Vec<Hold> {
    let link = link(url);
    let sessions = sessions(&link, "shared", SHARED_MAX, Duration::from_secs(30));
    let until = Instant::now() + run;
    let tasks: Vec<_> = (0..4u64)
        .map(|task| {
            let sessions = sessions.clone();
            tokio::spawn(async move {
                let mut holds = Vec::new();
                let mut turn = task;
                while Instant::now() < until {
                    match sessions.acquire("hot").await {
                        Ok(lease) => {
                            assert!(lease.is_fleet_wide());
                            let start = now_ns();
                            turn += 1;
                            tokio::time::sleep(Duration::from_millis(20 + 10 * (turn % 5))).await;
                            holds.push((start, now_ns()));
                            lease.release().await;
                        }
                        Err(Rejected::BulkheadFull(_)) => {
                            tokio::time::sleep(Duration::from_millis(3)).await;
                        }
                        Err(other) => panic!("only Redis decides here: {other:?}"),
                    }
                }
                holds
            })
        })
        .collect();
    let mut holds = Vec::new();
    for task in tasks {
        holds.extend(task.await.unwrap());
    }
    holds
}

/// The child half of [`two_processes_share_one_session_limit`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_churns_sessions_on_the_shared_key() {
    if !is_child() {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let run = Duration::from_millis(std::env::var(RUN_ENV).unwrap().parse().unwrap());
    for (start, end) in churn(&url, run).await {
        println!("hold {start} {end}");
    }
}

/// The most holds that overlap at any instant.
fn max_overlap(holds: &[Hold]) -> usize {
    // At one instant an end comes before a start: a place handed over is not two held.
    let mut edges: Vec<(u128, i32)> = holds
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn two_processes_share_one_session_limit() {
    let redis = RedisServer::start();
    let url = redis.url();
    let run = Duration::from_millis(2_000);
    let run_ms = run.as_millis().to_string();
    let envs = [(URL_ENV, url.as_str()), (RUN_ENV, run_ms.as_str())];
    let children: Vec<_> = (0..2)
        .map(|_| spawn_self("child_churns_sessions_on_the_shared_key", &envs))
        .collect();

    // Meanwhile this process takes part too, and watches the set from outside.
    let watching = Arc::new(AtomicU64::new(0));
    let watcher = std::thread::spawn({
        let (port, watching) = (redis.port(), watching.clone());
        move || {
            let mut most = 0;
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                let reply = redis_support::command_at(port, &["ZCARD", "palisade:ss:shared:hot"]);
                let n: u64 = reply.trim_start_matches(':').trim_end().parse().unwrap();
                assert!(
                    n <= u64::from(SHARED_MAX),
                    "{n} leases on a key of {SHARED_MAX}"
                );
                most = most.max(n);
                watching.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            most
        }
    });
    let mut holds = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(churn(&url, run));
    let here = holds.len();
    let mut theirs = Vec::new();
    for child in children {
        let out = wait_ok(child);
        let before = holds.len();
        holds.extend(out.lines().filter_map(|line| {
            let (_, rest) = line.split_once("hold ")?;
            let (start, end) = rest.trim().split_once(' ')?;
            Some((start.parse().ok()?, end.parse().ok()?))
        }));
        theirs.push(holds.len() - before);
    }
    let most_seen = watcher.join().expect("the watcher saw too many leases");

    let most = max_overlap(&holds);
    println!(
        "sessions: {} holds ({here} here, {theirs:?} in the children), at most {most} at once; \
         ZCARD at most {most_seen} in {} looks",
        holds.len(),
        watching.load(Ordering::Relaxed)
    );
    assert!(
        most <= SHARED_MAX as usize,
        "{most} sessions at once across three processes, on a key of {SHARED_MAX}"
    );
    // Not vacuous: the key was full at times, and every process held sessions.
    assert_eq!(most, SHARED_MAX as usize, "the key was never full");
    assert!(theirs.iter().all(|&n| n > 0), "{theirs:?}");
}

/// Kills the child process when dropped, so a failing test leaves none behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child half of [`a_killed_process_leases_expire_after_their_ttl`]: takes every place
/// with a short TTL, says so, and holds them (renewing) until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_takes_every_place_and_waits_to_be_killed() {
    if !is_child() {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let link = link(&url);
    let sessions = sessions(&link, "crash", 2, Duration::from_millis(600));
    let leases = [
        sessions.acquire("ada").await.unwrap(),
        sessions.acquire("ada").await.unwrap(),
    ];
    println!("held");
    // Bounded, in case the parent died without killing us.
    tokio::time::sleep(Duration::from_secs(30)).await;
    drop(leases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_leases_expire_after_their_ttl() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut child = KillOnDrop(spawn_self(
        "child_takes_every_place_and_waits_to_be_killed",
        &[(URL_ENV, url.as_str())],
    ));
    // Its stdout, line by line, on a thread: the test's bounds stay ours.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("held") => break,
            Ok(_) => {}
            Err(e) => panic!("the child never said it held its leases: {e}"),
        }
    }

    let link = link(&url);
    let here = sessions(&link, "crash", 2, Duration::from_millis(600));
    assert_full(here.acquire("ada").await);
    // Past three TTLs, the living child's renewals still keep both places.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_full(here.acquire("ada").await);
    assert_eq!(zcard(&redis, "palisade:ss:crash:ada"), 2);

    // Killed, it neither releases nor renews: its leases run out by themselves.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Each of its leases runs out at its own last renewal plus the TTL.
    let lease = acquire_within(&here, "ada").await;
    let second = acquire_within(&here, "ada").await;
    assert_eq!(zcard(&redis, "palisade:ss:crash:ada"), 2, "only ours");
    assert!(lease.release().await && second.release().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_holds_the_lease_until_the_response_is_done() {
    let redis = RedisServer::start();
    let link = link(&redis.url());
    let sessions = sessions(&link, "tower", 1, Duration::from_secs(30));
    let key = "palisade:ss:tower:ada";
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    // A permit per request let through to its response.
    let finish = Arc::new(tokio::sync::Semaphore::new(0));
    let inner = service_fn({
        let finish = finish.clone();
        move |(user, _body): (String, u32)| {
            let (started_tx, finish) = (started_tx.clone(), finish.clone());
            async move {
                let _ = started_tx.send(());
                finish.acquire().await.unwrap().forget();
                Ok::<_, Rejected>(user)
            }
        }
    });
    let svc = tower::ServiceBuilder::new()
        .layer(sessions.layer(|req: &(String, u32)| req.0.clone()))
        .service(inner);

    let first = tokio::spawn({
        let mut svc = svc.clone();
        async move { svc.ready().await?.call(("ada".into(), 1)).await }
    });
    tokio::time::timeout(BOUND, started.recv())
        .await
        .expect("the first request reached the service");
    assert_eq!(
        zcard(&redis, key),
        1,
        "the lease is held while the response is pending"
    );
    let mut second = svc.clone();
    // Bounded: were it admitted, it would wait for `finish` like the first.
    let refused =
        tokio::time::timeout(BOUND, second.ready().await.unwrap().call(("ada".into(), 2)));
    assert_full(refused.await.expect("a full key refuses at once"));
    // Another key is not held back.
    let bob = tokio::spawn({
        let mut svc = svc.clone();
        async move { svc.ready().await?.call(("bob".into(), 3)).await }
    });
    tokio::time::timeout(BOUND, started.recv()).await.unwrap();

    finish.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap(), "ada");
    assert_eq!(bob.await.unwrap().unwrap(), "bob");
    let deadline = Instant::now() + BOUND;
    while zcard(&redis, key) != 0 {
        assert!(Instant::now() < deadline, "the lease outlived its response");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The place is free for the next request.
    let third = tokio::spawn({
        let mut svc = svc.clone();
        async move { svc.ready().await?.call(("ada".into(), 4)).await }
    });
    tokio::time::timeout(BOUND, started.recv()).await.unwrap();
    finish.add_permits(1);
    assert_eq!(third.await.unwrap().unwrap(), "ada");
}

/// `run_once` holds the place while its future runs and frees it after.
#[tokio::test]
async fn run_once_holds_the_place_while_its_future_runs() {
    let server = RedisServer::start();
    let link = link(&server.url());
    let sessions = sessions(&link, "once", 1, Duration::from_secs(30));
    let key = "palisade:ss:once:ada";
    let inside = sessions
        .run_once("ada", async { Ok::<_, Rejected>(zcard(&server, key)) })
        .await
        .unwrap();
    assert_eq!(inside, 1, "held while running");
    let deadline = Instant::now() + BOUND;
    while zcard(&server, key) != 0 {
        assert!(Instant::now() < deadline, "never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
