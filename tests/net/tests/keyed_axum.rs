//! Per-key policies as axum server middleware, over a real socket with a real client: a
//! rate limit per client IP and a concurrency (session) limit per user, both answered with
//! 429 and `Retry-After`. Real time, short durations, generous bounds; the server stops
//! when the test ends.

#[path = "../support/server.rs"]
mod server;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use palisade::LiftLayer;
use palisade::bulkhead::Bulkhead;
use palisade::http::ShedLayer;
use palisade::keyed::axum::{ClientIp, HeaderKey};
use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
use palisade::rate_limiter::RateLimiter;
use server::Serving;
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceBuilder;

const LOCALHOST: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

/// Two calls a minute per key: the third within the test is always over.
fn two_a_minute() -> RateLimiter {
    RateLimiter::new(
        RateLimiter::builder()
            .name("per-ip")
            .rate(2, Duration::from_secs(60))
            .build()
            .unwrap(),
    )
}

fn per_ip_app(per_ip: Keyed<Option<IpAddr>, RateLimiter>, client_ip: ClientIp) -> Router {
    Router::new().route("/", get(|| async { "hello" })).layer(
        ServiceBuilder::new()
            .layer(ShedLayer::new())
            .layer(KeyedLayer::new(per_ip, client_ip.key_fn()))
            .layer(LiftLayer),
    )
}

fn retry_after_secs(resp: &reqwest::Response) -> u64 {
    resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_client_over_its_ip_rate_gets_429_with_retry_after() {
    let per_ip = Keyed::new(KeyedConfig::default(), two_a_minute());
    let server =
        Serving::start_with_connect_info(per_ip_app(per_ip.clone(), ClientIp::peer())).await;
    let url = format!("http://{}/", server.addr);
    let client = reqwest::Client::new();

    for _ in 0..2 {
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let limited = client.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let after = retry_after_secs(&limited);
    assert!(
        (1..=60).contains(&after),
        "a token comes back within the period, got {after}"
    );
    assert_eq!(per_ip.metrics(&LOCALHOST).map(|m| m.limited), Some(1));

    // Without the opt-in, a forwarding header is the client's word and changes nothing.
    let spoofed = client
        .get(&url)
        .header("x-forwarded-for", "192.0.2.10")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 429);
    assert_eq!(per_ip.len(), 1, "one key: the connection's address");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_gets_its_own_bucket() {
    let per_ip = Keyed::new(KeyedConfig::default(), two_a_minute());
    // The test's client plays the one trusted proxy: it appends the address it "saw".
    let client_ip = ClientIp::behind_proxies(1).x_forwarded_for();
    let server = Serving::start_with_connect_info(per_ip_app(per_ip.clone(), client_ip)).await;
    let url = format!("http://{}/", server.addr);
    let client = reqwest::Client::new();
    let via_proxy = |seen: &'static str| {
        client
            .get(&url)
            .header("x-forwarded-for", format!("6.6.6.6, {seen}"))
            .send()
    };

    for _ in 0..2 {
        assert_eq!(via_proxy("192.0.2.10").await.unwrap().status(), 200);
    }
    let limited = via_proxy("192.0.2.10").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));

    let other = via_proxy("192.0.2.11").await.unwrap();
    assert_eq!(
        other.status(),
        200,
        "another client has a bucket of its own"
    );
    // No header: the peer's own key, not the limited client's.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    assert!(per_ip.contains_key(&ip("192.0.2.10")));
    assert!(per_ip.contains_key(&ip("192.0.2.11")));
    assert!(per_ip.contains_key(&LOCALHOST));
    assert!(
        !per_ip.contains_key(&ip("6.6.6.6")),
        "the client-written entry is never a key"
    );
}

#[tokio::test]
async fn a_user_at_their_session_limit_gets_429_until_their_calls_finish() {
    let sessions: Keyed<Option<String>, Bulkhead> = Keyed::new(
        KeyedConfig::default(),
        Bulkhead::new(
            Bulkhead::builder()
                .name("sessions")
                .max_concurrent(2)
                .build()
                .unwrap(),
        ),
    );
    // `/hold` tells the test it started, then holds the user's slot until released;
    // `/quick` answers at once.
    let (started_tx, mut started) = mpsc::channel::<()>(4);
    let release = Arc::new(Semaphore::new(0));
    let gate = release.clone();
    let app = Router::new()
        .route(
            "/hold",
            get(move || {
                let (started_tx, gate) = (started_tx.clone(), gate.clone());
                async move {
                    started_tx.send(()).await.unwrap();
                    let _permit = gate.acquire().await.unwrap();
                    "held"
                }
            }),
        )
        .route("/quick", get(|| async { "quick" }))
        .layer(
            ServiceBuilder::new()
                .layer(ShedLayer::new())
                .layer(KeyedLayer::new(
                    sessions.clone(),
                    HeaderKey::from_static("x-user-id").key_fn(),
                ))
                .layer(LiftLayer),
        );
    let server = Serving::start_with_connect_info(app).await;
    let client = reqwest::Client::new();
    let call = |path: &str, user: &str| {
        client
            .get(format!("http://{}{path}", server.addr))
            .header("x-user-id", user)
            .send()
    };
    let ada = Some(String::from("ada"));

    let held: Vec<_> = (0..2).map(|_| tokio::spawn(call("/hold", "ada"))).collect();
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .expect("ada's call reached its handler")
            .unwrap();
    }
    assert_eq!(sessions.metrics(&ada).map(|m| m.in_flight), Some(2));

    let refused = call("/quick", "ada").await.unwrap();
    assert_eq!(refused.status(), 429, "ada's own calls fill her sessions");
    assert!(refused.headers().contains_key("retry-after"));
    let grace = call("/quick", "grace").await.unwrap();
    assert_eq!(grace.status(), 200, "another user is admitted");
    assert_eq!(grace.text().await.unwrap(), "quick");

    release.add_permits(2);
    for call in held {
        let done = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("a released call finishes")
            .unwrap()
            .unwrap();
        assert_eq!(done.status(), 200);
        assert_eq!(done.text().await.unwrap(), "held");
    }
    assert_eq!(sessions.metrics(&ada).map(|m| m.in_flight), Some(0));

    let again = call("/quick", "ada").await.unwrap();
    assert_eq!(
        again.status(),
        200,
        "admitted again once her calls finished"
    );
}
