//! An axum server that sheds load: a bulkhead and a timeout as middleware, rejections
//! answered with 503 and `Retry-After` (a timeout with 504).
//!
//! ```sh
//! cargo run -p palisade-net --example axum_server
//! ```
//!
//! The example starts the server on 127.0.0.1 and plays the clients itself: three slow
//! requests at once against two slots, then a request that hangs past its time. Pass
//! `--serve` to keep it running and try it with curl.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use palisade::LiftLayer;
use palisade::bulkhead::Bulkhead;
use palisade::http::ShedLayer;
use palisade::timeout::Timeout;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .name("handlers")
            .max_concurrent(2)
            .build()?,
    );
    let timeout = Timeout::new(
        Timeout::builder()
            .duration(Duration::from_millis(500))
            .build()?,
    );
    let app = Router::new()
        .route(
            "/report",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                "report ready"
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "never"
            }),
        )
        .layer(
            ServiceBuilder::new()
                // Outermost: a full bulkhead becomes 503 + Retry-After, a timeout 504.
                .layer(ShedLayer::new().retry_after(Duration::from_secs(2)))
                .layer(timeout.layer())
                .layer(bulkhead.layer())
                // axum's handlers cannot fail; lift so the policies can.
                .layer(LiftLayer),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving on http://{addr} (2 slots, 500 ms per request)\n");
    let server = tokio::spawn(axum::serve(listener, app).into_future());
    if std::env::args().any(|a| a == "--serve") {
        server.await??;
        return Ok(());
    }

    let client = reqwest::Client::new();
    println!("three requests for /report at once:");
    let calls = (0..3).map(|_| client.get(format!("http://{addr}/report")).send());
    for (i, answer) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        let resp = answer?;
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        println!(
            "  #{}: {} retry-after={retry_after:?}",
            i + 1,
            resp.status()
        );
    }
    println!("\none request for /hang:");
    let resp = client.get(format!("http://{addr}/hang")).send().await?;
    println!("  {} after the 500 ms timeout", resp.status());
    println!("\nbulkhead: {:?}", bulkhead.metrics());
    println!("timeout:  {:?}", timeout.metrics());
    server.abort();
    Ok(())
}
