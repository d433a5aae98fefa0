//! A pipeline of policies around a flaky dependency, with a fallback chain around it, printing
//! what happened to each request. Offline; about a second.
//!
//! Run it with `cargo run --example pipeline`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::fallback::Fallback;
use palisade::pipeline::Pipeline;
use palisade::retry::{Backoff, Retry};
use palisade::telemetry::{Event, EventKind};
use palisade::timeout::{Timeout, TimeoutConfig};
use palisade::{AsRejected, Rejected};

/// The caller's own error type: one `From<Rejected>` serves every policy.
#[derive(Debug)]
enum ProfileError {
    Rejected(Rejected),
    Backend(String),
}

impl From<Rejected> for ProfileError {
    fn from(r: Rejected) -> Self {
        ProfileError::Rejected(r)
    }
}

impl AsRejected for ProfileError {
    fn as_rejected(&self) -> Option<&Rejected> {
        match self {
            ProfileError::Rejected(r) => Some(r),
            ProfileError::Backend(_) => None,
        }
    }
}

/// Prints the events that matter to a reader: retries, state changes, fallbacks.
fn log(e: &Event) {
    match e.kind() {
        EventKind::RetryScheduled { attempt, delay } => {
            println!("      retry: attempt {attempt} in {delay:?}")
        }
        EventKind::StateChanged { from, to } => println!("      breaker: {from:?} -> {to:?}"),
        EventKind::FallbackUsed { level } => println!("      fallback: level {level} served"),
        EventKind::TimedOut { after } => println!("      timeout: cut off after {after:?}"),
        _ => {}
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let pipeline = Pipeline::builder()
        // Given in any order; run as retry -> breaker -> bulkhead -> timeout -> call.
        .timeout(Timeout::new(
            TimeoutConfig::builder()
                .duration(Duration::from_millis(100))
                .listener(log)
                .build()?,
        ))
        .circuit_breaker(CircuitBreaker::new(
            CircuitBreaker::builder()
                .consecutive_failures(3)
                .break_duration(Duration::from_millis(400))
                .listener(log)
                .build()?,
        ))
        .bulkhead(Bulkhead::new(
            Bulkhead::builder().max_concurrent(4).build()?,
        ))
        .retry(Retry::new(
            Retry::builder()
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(20)))
                .deadline(Duration::from_millis(500))
                .listener(log)
                .build()?,
        ))
        .build();
    let fallback = Fallback::new(
        Fallback::builder()
            .cache_max_age(Duration::from_secs(60))
            .listener(log)
            .build()?,
    );

    // The profile service answers the first request, then fails for a while, then recovers.
    let calls = AtomicU32::new(0);
    let profile_service = |id: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            match n {
                1 | 5.. => Ok(format!("profile #{id} (fresh, call {n})")),
                // A hung call: the timeout cuts it off.
                3 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok("never".to_string())
                }
                _ => Err(ProfileError::Backend(format!("503 on call {n}"))),
            }
        }
    };

    for request in 1..=4 {
        if request == 4 {
            println!("  ... waiting for the breaker's break to end");
            tokio::time::sleep(Duration::from_millis(450)).await;
        }
        println!("[{:>4} ms] request {request}", start.elapsed().as_millis());
        let out = fallback
            .run(|| pipeline.run(|| profile_service(42)))
            .or_else(|failed| async move {
                match failed {
                    Err(ProfileError::Backend(why)) => println!("      primary failed: {why}"),
                    Err(ProfileError::Rejected(r)) => println!("      primary refused: {r}"),
                    Ok(_) => {}
                }
                Err(ProfileError::Backend("replica down too".into()))
            })
            .or_cached()
            .or_value("anonymous profile".to_string())
            .await;
        match out {
            Ok(profile) => println!("   -> {profile}"),
            Err(e) => println!("   -> error: {e:?}"),
        }
    }
    println!(
        "[{:>4} ms] the profile service saw {} calls",
        start.elapsed().as_millis(),
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}
