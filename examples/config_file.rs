//! Policies read from a TOML file, then put to work.
//!
//! ```sh
//! cargo run --example config_file --features serde [path/to/policies.toml]
//! ```
//!
//! Without a path it reads `examples/policies.toml`. It prints what it loaded, runs a flaky
//! call through the pipeline built from the file, and shows the error a typo in a file gives.

use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::config::Policies;
use palisade::pipeline::Pipeline;
use palisade::retry::Retry;
use palisade::timeout::Timeout;
use palisade::{ConfigError, Error};

fn load(text: &str) -> Result<Policies, ConfigError> {
    let document = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError::new("<file>", "is not TOML", format_args!("{e}")))?;
    Policies::load(document)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies.toml").into());
    let policies = load(&std::fs::read_to_string(&path)?)?;
    println!("loaded from {path}:");
    for (name, c) in &policies.timeout {
        println!("  timeout {name}: {:?}", c.duration());
    }
    for (name, c) in &policies.retry {
        println!(
            "  retry {name}: {} attempts, {:?}",
            c.max_attempts(),
            c.backoff()
        );
    }
    for (name, c) in &policies.circuit_breaker {
        println!("  circuit breaker {name}: {:?}", c.trip_model());
    }
    for (name, c) in &policies.bulkhead {
        println!("  bulkhead {name}: {} concurrent", c.max_concurrent());
    }

    // One pipeline from the four "search" tables.
    let search = Pipeline::builder()
        .timeout(Timeout::new(policies.timeout["search"].clone()))
        .retry(Retry::new(policies.retry["search"].clone()))
        .circuit_breaker(CircuitBreaker::new(
            policies.circuit_breaker["search"].clone(),
        ))
        .bulkhead(Bulkhead::new(policies.bulkhead["search"].clone()))
        .build();
    let mut attempt = 0;
    let answer: Result<&str, Error<&str>> = search
        .run(|| {
            attempt += 1;
            let n = attempt;
            async move {
                if n < 2 {
                    Err(Error::Inner("503"))
                } else {
                    Ok("results")
                }
            }
        })
        .await;
    println!("\nsearch answered {answer:?} after {attempt} attempts");
    println!("retry metrics: {:?}", search.retry().map(Retry::metrics));

    let typo =
        "[retry.search]\nmax_attempts = 3\nbackof = { kind = \"constant\", delay = \"1s\" }\n";
    println!("\na file with a typo gives:\n{}", load(typo).unwrap_err());
    let bad = "[bulkhead.search]\nmax_concurrent = 0\n";
    println!(
        "\na value the builder refuses gives:\n{}",
        load(bad).unwrap_err()
    );
    Ok(())
}
