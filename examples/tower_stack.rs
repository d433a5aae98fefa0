//! All five policies as tower layers around one flaky service, printing what happened to
//! each request. Offline; about a second.
//!
//! Run it with `cargo run --example tower_stack`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::fallback::Fallback;
use palisade::retry::{Backoff, Retry};
use palisade::telemetry::{Event, EventKind};
use palisade::timeout::{Timeout, TimeoutConfig};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

fn log(e: &Event) {
    match e.kind() {
        EventKind::RetryScheduled { attempt, delay } => {
            println!(
                "      `{}`: attempt {attempt} in {delay:?}",
                e.policy_name()
            )
        }
        EventKind::StateChanged { from, to } => {
            println!("      `{}`: {from:?} -> {to:?}", e.policy_name())
        }
        EventKind::FallbackUsed { level } => {
            println!("      `{}`: level {level} served", e.policy_name())
        }
        EventKind::TimedOut { after } => {
            println!("      `{}`: cut off after {after:?}", e.policy_name())
        }
        EventKind::Rejected(r) => println!("      rejected: {r}"),
        _ => {}
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let fallback = Fallback::new(
        Fallback::builder()
            .name("quotes-fallback")
            .cache_max_age(Duration::from_secs(60))
            .listener(log)
            .build()?,
    );
    let retry = Retry::new(
        Retry::builder()
            .name("quotes-retry")
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(20)))
            .listener(log)
            .build()?,
    );
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .name("quotes-breaker")
            .consecutive_failures(3)
            .break_duration(Duration::from_millis(300))
            .listener(log)
            .build()?,
    );
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .name("quotes-bulkhead")
            .max_concurrent(4)
            .build()?,
    );
    let timeout = Timeout::new(
        TimeoutConfig::builder()
            .name("quotes-timeout")
            .duration(Duration::from_millis(100))
            .listener(log)
            .build()?,
    );

    // The quote service works once, then fails (one call hangs), then recovers at call 5.
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let quotes = tower::service_fn(move |symbol: &'static str| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            match n {
                1 | 5.. => Ok(format!("{symbol}: 101.5 (call {n})")),
                3 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok("never".to_string())
                }
                _ => Err(BoxError::from(format!("503 on call {n}"))),
            }
        }
    });

    // Outermost first: fallback, retry, breaker, bulkhead, timeout.
    let mut svc = ServiceBuilder::new()
        .layer(
            fallback
                .layer()
                .or_cached()
                .or_value("quote unavailable".to_string()),
        )
        .layer(retry.layer())
        .layer(breaker.layer())
        .layer(bulkhead.layer())
        .layer(timeout.layer())
        .service(quotes);

    for request in 1..=4 {
        if request == 4 {
            println!("  ... waiting for the breaker's break to end");
            tokio::time::sleep(Duration::from_millis(350)).await;
        }
        println!("[{:>4} ms] request {request}", start.elapsed().as_millis());
        match svc.ready().await?.call("ACME").await {
            Ok(quote) => println!("   -> {quote}"),
            Err(e) => println!("   -> error: {e}"),
        }
    }
    println!(
        "[{:>4} ms] the quote service saw {} calls",
        start.elapsed().as_millis(),
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}
