//! palisade in one page: policies wrapping a flaky call, printing what each one did.
//!
//! Run it with `cargo run --example quickstart`. No network; it takes about two seconds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use palisade::Rejected;
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
use palisade::retry::{Backoff, Jitter, Retry};
use palisade::telemetry::{Event, EventKind};
use palisade::timeout::{Timeout, TimeoutConfig};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// A stand-in for a remote dependency that answers after `latency`.
async fn backend(latency: Duration) -> Result<&'static str, BoxError> {
    tokio::time::sleep(latency).await;
    Ok("200 OK")
}

/// Prints the time since the start, so the story shows when things happened.
struct Stamp(Instant);

impl Stamp {
    fn now(&self) -> String {
        format!("[{:>4} ms]", self.0.elapsed().as_millis())
    }
}

/// What a policy refusal looks like to the caller, in words.
fn describe(e: &BoxError) -> String {
    match e.downcast_ref::<Rejected>() {
        Some(Rejected::Timeout(elapsed)) => format!(
            "cut off after {:?} by `{}`; the call's future was dropped",
            elapsed.duration(),
            elapsed.policy_name()
        ),
        Some(Rejected::CircuitOpen(open)) => format!(
            "rejected by `{}` without calling the backend; retry after {:?}",
            open.policy_name(),
            open.retry_after().unwrap_or_default()
        ),
        Some(Rejected::BulkheadFull(full)) => format!(
            "rejected by `{}`: all {} slots busy ({:?})",
            full.policy_name(),
            full.max_concurrent(),
            full.cause()
        ),
        Some(other) => format!("rejected: {other}"),
        None => format!("backend failed: {e}"),
    }
}

async fn timeout(t: &Stamp) -> Result<(), BoxError> {
    println!("== Timeout: give each call 200 ms, then cut it off ==");
    let timeout = Timeout::new(
        TimeoutConfig::builder()
            .name("backend-timeout")
            .duration(Duration::from_millis(200))
            .build()?,
    );

    let fast = timeout.run(|| backend(Duration::from_millis(50))).await;
    println!("{} fast call (50 ms): {fast:?}", t.now());
    let hung = timeout.run(|| backend(Duration::from_secs(10))).await;
    println!(
        "{} hung call (10 s): {}",
        t.now(),
        describe(&hung.unwrap_err())
    );

    println!("-- the same Timeout handle as a tower layer --");
    let mut svc = ServiceBuilder::new()
        .layer(timeout.layer())
        .service_fn(|latency_ms: u64| backend(Duration::from_millis(latency_ms)));
    for latency_ms in [20, 500] {
        match svc.ready().await?.call(latency_ms).await {
            Ok(v) => println!("{} tower call ({latency_ms} ms): {v}", t.now()),
            Err(e) => println!("{} tower call ({latency_ms} ms): {}", t.now(), describe(&e)),
        }
    }
    Ok(())
}

async fn circuit_breaker(t: &Stamp) -> Result<(), BoxError> {
    println!("\n== Circuit breaker: stop calling a backend that keeps failing ==");
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .name("payments")
            .consecutive_failures(3)
            .break_duration(Duration::from_millis(300))
            .listener(|e: &Event| {
                if let EventKind::StateChanged { from, to } = e.kind() {
                    println!(
                        "    `{}` changed state: {from:?} -> {to:?}",
                        e.policy_name()
                    );
                }
            })
            .build()?,
    );
    // The backend is down for its first four calls, then recovers.
    let calls_made = AtomicU32::new(0);
    let flaky = || async {
        let n = calls_made.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= 4 {
            Err::<&str, BoxError>(format!("503 on backend call {n}").into())
        } else {
            Ok("200 OK")
        }
    };
    for call in 1..=5 {
        match breaker.run(flaky).await {
            Ok(v) => println!("{} call {call}: {v}", t.now()),
            Err(e) => println!("{} call {call}: {}", t.now(), describe(&e)),
        }
    }
    println!(
        "{} 5 calls, {} reached the backend",
        t.now(),
        calls_made.load(Ordering::SeqCst)
    );

    for round in 1..=2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        match breaker.run(flaky).await {
            Ok(v) => println!("{} probe {round} after the break: {v}", t.now()),
            Err(e) => println!(
                "{} probe {round} after the break: {}",
                t.now(),
                describe(&e)
            ),
        }
    }
    println!("{} the breaker is {:?}", t.now(), breaker.state());
    assert_eq!(breaker.state(), CircuitState::Closed);
    Ok(())
}

async fn retry(t: &Stamp) -> Result<(), BoxError> {
    println!("\n== Retry: up to 4 attempts, exponential backoff with jitter ==");
    let retry = Retry::new(
        Retry::builder()
            .name("search-retry")
            .max_attempts(4)
            .backoff(
                Backoff::exponential(Duration::from_millis(50), 2.0, Duration::from_millis(400))
                    .jitter(Jitter::Equal),
            )
            .listener(|e: &Event| println!("    `{}`: {:?}", e.policy_name(), e.kind()))
            .build()?,
    );
    // Fails twice with a transient error, then answers.
    let out = retry
        .run_with_attempt(|attempt| async move {
            if attempt < 3 {
                println!("{} attempt {attempt}: 503, transient", t.now());
                Err::<&str, BoxError>("503 Service Unavailable".into())
            } else {
                println!("{} attempt {attempt}: 200", t.now());
                Ok("200 OK")
            }
        })
        .await;
    println!("{} result: {out:?}", t.now());
    Ok(())
}

async fn bulkhead(t: &Stamp) -> Result<(), BoxError> {
    println!("\n== Bulkhead: at most 2 calls at once, 1 more may wait up to 200 ms ==");
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .name("reports")
            .max_concurrent(2)
            .max_queue(1)
            .max_wait(Duration::from_millis(200))
            .build()?,
    );
    // Five slow calls (150 ms each) arrive together.
    let calls = (1..=5).map(|i| {
        let bulkhead = bulkhead.clone();
        async move {
            let out = bulkhead.run(|| backend(Duration::from_millis(150))).await;
            (i, out, t.now())
        }
    });
    let results = futures_util::future::join_all(calls).await;
    for (i, out, at) in results {
        match out {
            Ok(v) => println!("{at} call {i}: {v}"),
            Err(e) => println!("{at} call {i}: {}", describe(&e)),
        }
    }
    let m = bulkhead.metrics();
    println!(
        "{} in flight {}, queued {}, rejected so far {}",
        t.now(),
        m.in_flight,
        m.queued,
        m.rejected
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let t = Stamp(Instant::now());
    timeout(&t).await?;
    retry(&t).await?;
    circuit_breaker(&t).await?;
    bulkhead(&t).await?;
    Ok(())
}
