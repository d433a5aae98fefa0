//! The fleet-wide limits against a real local redis-server: round trips per admitted call
//! (plain, and with local reservation), the latency a decision adds over a bare `PING` on
//! the same connection (p50 and p99), and throughput with 64 concurrent callers.
//!
//! Run with `cargo bench -p palisade-benches --bench redis`. It starts its own
//! `redis-server` on a free 127.0.0.1 port (and stops it by process id at the end); without
//! one installed it says how to get it and exits. It prints a table; under `cargo bench` it
//! also writes it to `benches/REDIS.md`. Latencies are of this machine's loopback and
//! scheduler, so compare the columns of one run, not runs.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade::rate_limiter::RateLimiterConfig;
use palisade::redis::{
    RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig, RedisSessionLimiter,
    RedisSessionLimiterConfig,
};

/// A redis-server of the bench's own, killed on drop.
struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Server {
    fn start() -> Option<Server> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = std::env::temp_dir().join(format!("palisade-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Server { child, port, dir };
        // Bounded: the server answers within a second or two on any machine.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn limiter(link: &RedisLink, name: &'static str, batch: Option<u32>) -> RedisRateLimiter {
    // Fast enough that a hot key is never refused in the bench: decisions, not refusals,
    // are measured.
    let limit = RateLimiterConfig::builder()
        .name(name)
        .rate(1_000_000, Duration::from_secs(1))
        .burst(100_000)
        .build()
        .unwrap();
    let mut config = RedisRateLimiterConfig::builder(limit);
    if let Some(batch) = batch {
        config = config.local_reservation(batch, Duration::from_millis(50));
    }
    RedisRateLimiter::new(link, config.build().unwrap())
}

fn new_link(port: u16) -> RedisLink {
    RedisLink::new(
        RedisConfig::builder()
            .url(format!("redis://127.0.0.1:{port}/"))
            .round_trip_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
}

/// Latency of `n` sequential operations, sorted.
async fn latencies<F, Fut>(n: usize, mut op: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        op().await;
        out.push(t.elapsed());
    }
    out.sort();
    out
}

/// Admitted calls per second with `callers` tasks each making `each` decisions on one key.
async fn throughput(limiter: RedisRateLimiter, callers: usize, each: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    limiter
                        .try_acquire("hot")
                        .await
                        .expect("never refused in the bench");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (callers * each) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench --no-run` builds this; `cargo test --benches` runs it with `--bench`
    // absent: do the work only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(server) = Server::start() else {
        eprintln!(
            "redis bench: could not start `redis-server` (install it: `apt-get install \
             redis-server`, or run `bash .ci/run`, which does)"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let table = runtime.block_on(run(server.port));
    println!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("REDIS.md");
    let _ = std::fs::write(out, table);
    drop(server);
}

async fn run(port: u16) -> String {
    let n = 5_000;
    let mut table = String::from(
        "# Fleet-wide limits against a local redis-server\n\n\
         Written by `cargo bench -p palisade-benches --bench redis` (one run, one machine; \
         loopback, 2 tokio workers).\n\n",
    );

    // Round trips per admitted call, on one hot key.
    table.push_str("| mode, one hot key | admitted | round trips | round trips per admitted call |\n|---|---:|---:|---:|\n");
    for (label, batch) in [
        ("plain", None),
        ("local reservation, batch 10", Some(10)),
        ("local reservation, batch 50", Some(50)),
    ] {
        let link = new_link(port);
        let limiter = limiter(&link, "round-trips", batch);
        for _ in 0..n {
            limiter.try_acquire("hot").await.unwrap();
        }
        let (admitted, trips) = (limiter.metrics().admitted, link.metrics().round_trips);
        table.push_str(&format!(
            "| {label} | {admitted} | {trips} | {:.3} |\n",
            trips as f64 / admitted as f64
        ));
    }

    // Latency over PING on the same connection.
    let link = new_link(port);
    let rate = limiter(&link, "latency", None);
    let sessions = RedisSessionLimiter::new(
        &link,
        RedisSessionLimiterConfig::builder()
            .name("latency-sessions")
            .max_per_key(1_000)
            .build()
            .unwrap(),
    );
    link.ping().await.unwrap();
    let ping = latencies(n, || async {
        link.ping().await.unwrap();
    })
    .await;
    let decide = latencies(n, || async {
        rate.try_acquire("user-1").await.unwrap();
    })
    .await;
    let lease = latencies(n, || async {
        let held = sessions.acquire("user-1").await.unwrap();
        held.release().await;
    })
    .await;
    table.push_str("\n| sequential, µs | p50 | p99 | p50 over PING | p99 over PING |\n|---|---:|---:|---:|---:|\n");
    let (p50, p99) = (percentile(&ping, 0.5), percentile(&ping, 0.99));
    table.push_str(&format!(
        "| PING | {} | {} | | |\n",
        micros(p50),
        micros(p99)
    ));
    for (label, lat) in [
        ("rate decision", &decide),
        ("session acquire + release (2 round trips)", &lease),
    ] {
        let (q50, q99) = (percentile(lat, 0.5), percentile(lat, 0.99));
        table.push_str(&format!(
            "| {label} | {} | {} | {} | {} |\n",
            micros(q50),
            micros(q99),
            micros(q50.saturating_sub(p50)),
            micros(q99.saturating_sub(p99)),
        ));
    }

    // Throughput, 64 callers on one connection.
    table.push_str(
        "\n| 64 concurrent callers, one hot key | admitted calls per second |\n|---|---:|\n",
    );
    for (label, batch) in [("plain", None), ("local reservation, batch 10", Some(10))] {
        let link = new_link(port);
        let limiter = limiter(&link, "throughput", batch);
        limiter.try_acquire("warm-up").await.unwrap();
        let per_second = throughput(limiter, 64, 500).await;
        table.push_str(&format!("| {label} | {per_second:.0} |\n"));
    }
    table
}
