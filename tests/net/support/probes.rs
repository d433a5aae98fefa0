//! Health probe endpoints as an axum app serves them, and a minimal HTTP/1.1 GET to ask
//! them over a real socket (shared by tests/health.rs and examples/health_server.rs).

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use palisade::health::{HealthRegistry, HealthReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 200 or 503, with the report as JSON.
fn answer(report: HealthReport) -> (StatusCode, axum::Json<HealthReport>) {
    let code = StatusCode::from_u16(report.http_status()).unwrap_or(StatusCode::OK);
    (code, axum::Json(report))
}

/// `/health/live` and `/health/ready`, answered from `health`.
pub fn probes(health: HealthRegistry) -> Router {
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

/// One GET over a fresh connection: the status code and the body.
pub async fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let code = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((code, body))
}
