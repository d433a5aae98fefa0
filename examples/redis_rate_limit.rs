//! Fleet-wide limits in Redis under axum: each user gets 5 requests per 10 seconds across
//! every instance of the service, and at most 2 requests in flight at once; refusals are
//! answered with 429 and `Retry-After`.
//!
//! ```sh
//! redis-server --port 6379 &          # or: apt-get install redis-server
//! cargo run -p palisade-net --example redis_rate_limit
//! ```
//!
//! The Redis URL comes from `REDIS_URL` (default `redis://127.0.0.1:6379/`). The example
//! starts the server on 127.0.0.1 and plays the clients itself: one user over their rate,
//! then one user over their sessions while another is unaffected. Pass `--serve` to keep it
//! running and try it with curl (`curl -i -H 'x-user-id: ada' http://ADDR/report`); start
//! two of them against the same Redis and the limits hold across both.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use palisade::LiftLayer;
use palisade::http::ShedLayer;
use palisade::keyed::axum::HeaderKey;
use palisade::rate_limiter::RateLimiterConfig;
use palisade::redis::{
    FailMode, RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig,
    RedisSessionLimiter, RedisSessionLimiterConfig,
};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let link = RedisLink::new(
        RedisConfig::builder()
            .url(url)
            .key_prefix("palisade-example")
            .build()?,
    );
    if let Err(cause) = link.ping().await {
        eprintln!(
            "No Redis server answered at {} ({cause}).\n\
             Start one with `redis-server --port 6379` (Debian: `apt-get install redis-server`),\n\
             or point REDIS_URL at yours, then run the example again.",
            link.config().url()
        );
        std::process::exit(2);
    }

    // Across the fleet: 5 requests per 10 s per user, at most 2 at once. If Redis goes
    // away, each instance keeps half of each limit on its own.
    let per_user = RedisRateLimiter::new(
        &link,
        RedisRateLimiterConfig::builder(
            RateLimiterConfig::builder()
                .name("per-user")
                .rate(5, Duration::from_secs(10))
                .build()?,
        )
        .fail_mode(FailMode::Local { share: 0.5 })
        .build()?,
    );
    let sessions = RedisSessionLimiter::new(
        &link,
        RedisSessionLimiterConfig::builder()
            .name("sessions")
            .max_per_key(2)
            .fail_mode(FailMode::Local { share: 0.5 })
            .build()?,
    );
    let user = HeaderKey::from_static("x-user-id");

    let app = Router::new()
        .route(
            "/report",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "report ready"
            }),
        )
        .layer(
            ServiceBuilder::new()
                // Outermost: a refusal becomes 429 + Retry-After.
                .layer(ShedLayer::new())
                .layer(per_user.layer(user.clone().key_fn()))
                .layer(sessions.layer(user.key_fn()))
                // axum's handlers cannot fail; lift so the policies can.
                .layer(LiftLayer),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!(
        "serving on http://{addr}; limits kept in {}\n",
        link.config().url()
    );
    let server = tokio::spawn(axum::serve(listener, app).into_future());
    if std::env::args().any(|a| a == "--serve") {
        server.await??;
        return Ok(());
    }

    let client = reqwest::Client::new();
    let get = |who: &str| {
        client
            .get(format!("http://{addr}/report"))
            .header("x-user-id", who)
            .send()
    };
    let show = |who: &str, resp: reqwest::Response| {
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        println!("  {who}: {} retry-after={retry_after:?}", resp.status());
    };

    // A fresh run: forget what an earlier run of the example left in Redis.
    let run = std::process::id();
    let (ada, bob) = (&*format!("ada-{run}"), &*format!("bob-{run}"));

    println!("{ada} asks 7 times, one after the other (5 per 10 s):");
    for _ in 0..7 {
        show(ada, get(ada).await?);
    }
    println!("\n{bob} asks 3 times at once (2 at a time), and {ada} once more:");
    let at_once = futures_util::future::join_all((0..3).map(|_| get(bob))).await;
    for resp in at_once {
        show(bob, resp?);
    }
    show(ada, get(ada).await?);

    println!("\nper-user: {:?}", per_user.metrics());
    println!("sessions: {:?}", sessions.metrics());
    println!("link:     {:?}", link.metrics());
    server.abort();
    Ok(())
}
