//! palisade as axum server middleware: a bulkhead and a timeout that shed load with 503 and
//! `Retry-After`, checked over a real socket with a real client. Real time, short durations,
//! generous bounds; the server stops when the test ends.

#[path = "../support/server.rs"]
mod server;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use palisade::LiftLayer;
use palisade::bulkhead::Bulkhead;
use palisade::http::ShedLayer;
use palisade::timeout::Timeout;
use server::Serving;
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceBuilder;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn a_full_bulkhead_sheds_load_with_503_and_retry_after() {
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .name("handlers")
            .max_concurrent(1)
            .build()
            .unwrap(),
    );
    // The handler tells the test it started, then holds its slot until released.
    let (started_tx, mut started) = mpsc::channel::<()>(1);
    let release = std::sync::Arc::new(Semaphore::new(0));
    let gate = release.clone();
    let app = Router::new()
        .route(
            "/work",
            get(move || {
                let (started_tx, gate) = (started_tx.clone(), gate.clone());
                async move {
                    started_tx.send(()).await.unwrap();
                    let _permit = gate.acquire().await.unwrap();
                    "done"
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ShedLayer::new().retry_after(Duration::from_secs(2)))
                .layer(bulkhead.layer())
                .layer(LiftLayer),
        );
    let server = Serving::start(app).await;
    let url = format!("http://{}/work", server.addr);
    let client = reqwest::Client::new();

    let first = tokio::spawn(client.get(&url).send());
    tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("the first request reached its handler");
    assert_eq!(bulkhead.metrics().in_flight, 1);

    let shed = client.get(&url).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "2");
    assert_eq!(bulkhead.metrics().rejected, 1);

    release.add_permits(1);
    let done = first.await.unwrap().unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(done.text().await.unwrap(), "done");
    assert_eq!(bulkhead.metrics().in_flight, 0, "the slot came back");

    release.add_permits(1);
    let again = tokio::time::timeout(Duration::from_secs(10), client.get(&url).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.status(), 200, "served again once a slot is free");
}

#[tokio::test]
async fn a_handler_over_its_time_is_answered_504_and_the_server_keeps_serving() {
    let timeout = Timeout::new(Timeout::builder().duration(ms(100)).build().unwrap());
    let app = Router::new()
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "never"
            }),
        )
        .route("/quick", get(|| async { "quick" }))
        .layer(
            ServiceBuilder::new()
                .layer(ShedLayer::new())
                .layer(timeout.layer())
                .layer(LiftLayer),
        );
    let server = Serving::start(app).await;
    let client = reqwest::Client::new();

    let hung = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(format!("http://{}/hang", server.addr)).send(),
    )
    .await
    .expect("answered long before the handler would finish")
    .unwrap();
    assert_eq!(
        hung.status(),
        504,
        "a timeout is a gateway timeout, not overload"
    );
    assert!(hung.headers().get("retry-after").is_none());
    assert_eq!(timeout.metrics().timed_out, 1);

    let quick = client
        .get(format!("http://{}/quick", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(quick.status(), 200);
}

/// Every layer's service can sit in an axum `Router`, which shares services across threads.
#[test]
fn every_policy_service_is_send_sync_and_clone() {
    fn shareable<T: Send + Sync + Clone + 'static>(_: &T) {}
    use palisade::circuit_breaker::CircuitBreaker;
    use palisade::pipeline::Pipeline;
    use palisade::retry::Retry;
    use tower::Layer;

    // What axum hands a layer: a Clone + Send + Sync service of requests.
    let route = tower::service_fn(|_: axum::extract::Request| async {
        Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::empty()))
    });
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let breaker = CircuitBreaker::new(CircuitBreaker::builder().build().unwrap());
    let retry = Retry::new(Retry::builder().build().unwrap());
    let timeout = Timeout::new(Timeout::builder().build().unwrap());
    let lifted = LiftLayer.layer(route);
    shareable(&bulkhead.layer().layer(lifted.clone()));
    shareable(&breaker.layer().layer(lifted.clone()));
    shareable(&retry.layer().layer(lifted.clone()));
    shareable(&timeout.layer().layer(lifted.clone()));
    shareable(&ShedLayer::new().layer(lifted.clone()));
    let pipeline = Pipeline::builder()
        .bulkhead(bulkhead)
        .circuit_breaker(breaker)
        .retry(retry)
        .timeout(timeout)
        .build();
    shareable(&pipeline.layer().layer(lifted));
}
