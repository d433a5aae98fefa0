//! Health probes served by axum answer 200 / 503 over a real local socket.

#[path = "../support/probes.rs"]
mod probes;
#[path = "../support/server.rs"]
mod server;

use std::time::Duration;

use palisade::circuit_breaker::CircuitBreaker;
use palisade::health::{Check, HealthRegistry};
use probes::{get_once, probes};
use server::Serving;

fn breaker(name: &'static str) -> CircuitBreaker {
    CircuitBreaker::new(
        CircuitBreaker::builder()
            .name(name)
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(10))
            .build()
            .unwrap(),
    )
}

/// One GET to a probe: the status code and the JSON body.
async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = get_once(addr, path).await.unwrap();
    (code, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn axum_probes_answer_200_then_503_over_a_real_socket() {
    let health = HealthRegistry::new();
    let upstream = breaker("upstream");
    health.circuit_breaker(&upstream, true).unwrap();
    health
        .liveness_check("process", || Check::healthy("ok"))
        .unwrap();

    let server = Serving::start(probes(health)).await;
    let addr = server.addr;

    // Real time and a real socket: generous bound, so a slow machine cannot flake it.
    let check = async {
        assert_eq!(get_json(addr, "/health/ready").await.0, 200);
        assert_eq!(get_json(addr, "/health/live").await.0, 200);

        upstream.try_acquire().unwrap().failure();
        let (code, body) = get_json(addr, "/health/ready").await;
        assert_eq!(code, 503);
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["components"]["upstream"]["status"], "unhealthy");

        let (code, body) = get_json(addr, "/health/live").await;
        assert_eq!(code, 200, "an open breaker is not a reason to restart");
        assert_eq!(body["components"]["process"]["reason"], "ok");
    };
    tokio::time::timeout(Duration::from_secs(30), check)
        .await
        .expect("the probes answered");
    drop(server);
}
