//! Policies read from a TOML file, then put to work.
//!
//! ```sh
//! cargo run --example config_file --features toml [path/to/policies.toml]
//! ```
//!
//! Without a path it reads `examples/policies.toml`. It prints what it loaded, runs a flaky
//! call through the pipeline built from the file's "search" policies, and shows the errors a
//! typo and a refused value in a file give. With the `yaml` or `json` feature, a `.yaml`,
//! `.yml` or `.json` path works the same way.

use palisade::config::Policies;
use palisade::retry::Retry;
use palisade::{ConfigError, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies.toml").into());
    let policies = Policies::from_path(&path)?;
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

    // One pipeline from the "search" table of each kind.
    let search = policies.pipeline("search")?;
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
    println!("\na file with a typo gives:\n{}", refused(typo));
    let bad = "[bulkhead.search]\nmax_concurrent = 0\n";
    println!("\na value the builder refuses gives:\n{}", refused(bad));
    Ok(())
}

/// The error from reading `text` as the file `policies.toml`, in the temp dir.
fn refused(text: &str) -> ConfigError {
    let path = std::env::temp_dir().join(format!("palisade-example-{}", std::process::id()));
    let file = path.join("policies.toml");
    let err = std::fs::create_dir_all(&path)
        .and_then(|()| std::fs::write(&file, text))
        .map_err(|e| ConfigError::new("<file>", "cannot be written", format_args!("{e}")))
        .and_then(|()| Policies::from_path(&file).map(drop));
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir(&path);
    match err {
        Err(e) => e,
        Ok(()) => ConfigError::new("<file>", "was expected to be refused", text),
    }
}
