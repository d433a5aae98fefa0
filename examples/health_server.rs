//! Liveness and readiness probes with axum, fed by palisade's health registry.
//!
//! ```sh
//! cargo run -p palisade-net --example health_server
//! ```
//!
//! The example starts the server on 127.0.0.1 (a free port), then plays a load balancer: it
//! asks both probes, breaks the upstream's circuit, asks again, and prints what it got. No
//! network beyond the loopback is needed. Pass `--serve` to keep the server running and try
//! it with curl.

#[path = "../tests/net/support/probes.rs"]
mod probes;

use std::time::Duration;

use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::health::{Check, HealthRegistry};
use probes::{get_once, probes};
use tokio::net::TcpListener;

/// What a probe sees: the status code and the body.
async fn probe(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let (code, body) = get_once(addr, path).await?;
    Ok(format!("{code}\n    {body}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = CircuitBreaker::new(
        CircuitBreaker::builder()
            .name("upstream")
            .consecutive_failures(3)
            .break_duration(Duration::from_secs(30))
            .build()?,
    );
    let recommendations =
        CircuitBreaker::new(CircuitBreaker::builder().name("recommendations").build()?);
    let pool = Bulkhead::new(
        Bulkhead::builder()
            .name("db-pool")
            .max_concurrent(10)
            .build()?,
    );

    let health = HealthRegistry::new();
    health.circuit_breaker(&upstream, true)?; // can't serve without it
    health.circuit_breaker(&recommendations, false)?; // nice to have
    health.bulkhead(&pool, true, 0.9)?;
    health.liveness_check("runtime", || Check::healthy("answering"))?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("probes on http://{addr}/health/live and http://{addr}/health/ready\n");
    let server = tokio::spawn(axum::serve(listener, probes(health)).into_future());

    if std::env::args().any(|a| a == "--serve") {
        server.await??;
        return Ok(());
    }

    println!("all well:");
    println!("  ready: {}", probe(addr, "/health/ready").await?);

    recommendations.isolate();
    println!("\nrecommendations isolated (not critical):");
    println!("  ready: {}", probe(addr, "/health/ready").await?);

    for _ in 0..3 {
        upstream.try_acquire()?.failure();
    }
    println!("\nupstream failed 3 times, its breaker opened (critical):");
    println!("  ready: {}", probe(addr, "/health/ready").await?);
    println!("  live:  {}", probe(addr, "/health/live").await?);
    println!("\nreadiness sends traffic elsewhere; liveness does not restart the process.");

    server.abort();
    Ok(())
}
