//! Liveness and readiness probes with axum, fed by palisade's health registry.
//!
//! ```sh
//! cargo run --example health_server --features serde
//! ```
//!
//! The example starts the server on 127.0.0.1 (a free port), then plays a load balancer: it
//! asks both probes, breaks the upstream's circuit, asks again, and prints what it got. No
//! network beyond the loopback is needed. Pass `--serve` to keep the server running and try
//! it with curl.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::health::{Check, HealthRegistry, HealthReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// 200 or 503, with the report as JSON.
fn answer(report: HealthReport) -> (StatusCode, axum::Json<HealthReport>) {
    let code = StatusCode::from_u16(report.http_status()).unwrap_or(StatusCode::OK);
    (code, axum::Json(report))
}

fn probes(health: HealthRegistry) -> Router {
    let live = health.clone();
    Router::new()
        .route(
            "/health/live",
            get(move || async move { answer(live.liveness()) }),
        )
        .route(
            "/health/ready",
            get(move || async move { answer(health.readiness()) }),
        )
}

/// What a probe sees: the status line and the body.
async fn probe(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let status = raw.lines().next().unwrap_or_default().to_owned();
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok(format!("{status}\n    {body}"))
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
    health.circuit_breaker(&upstream, true); // can't serve without it
    health.circuit_breaker(&recommendations, false); // nice to have
    health.bulkhead(&pool, true, 0.9)?;
    health.liveness_check("runtime", || Check::healthy("answering"));

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
