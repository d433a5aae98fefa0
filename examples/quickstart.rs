//! palisade in one page: policies wrapping a flaky call, printing what each one did.
//!
//! Run it with `cargo run --example quickstart`. No network; it takes about a second.

use std::time::{Duration, Instant};

use palisade::timeout::{Timeout, TimeoutConfig};
use palisade::{Rejected, telemetry::Event};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// A stand-in for a remote dependency: answers after `latency`, or never if it is "hung".
async fn backend(latency: Duration) -> Result<&'static str, BoxError> {
    tokio::time::sleep(latency).await;
    Ok("200 OK")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let t = move || format!("[{:>4} ms]", start.elapsed().as_millis());

    println!("== Timeout: give each call 200 ms, then cut it off ==");
    let timeout = Timeout::new(
        TimeoutConfig::builder()
            .name("backend-timeout")
            .duration(Duration::from_millis(200))
            .listener(|e: &Event| println!("    event from `{}`: {:?}", e.policy_name(), e.kind()))
            .build()?,
    );

    let fast = timeout.run(|| backend(Duration::from_millis(50))).await;
    println!("{} fast call (50 ms):  {fast:?}", t());

    let hung = timeout.run(|| backend(Duration::from_secs(10))).await;
    match hung {
        Err(e) => match e.downcast_ref::<Rejected>() {
            Some(Rejected::Timeout(elapsed)) => println!(
                "{} hung call (10 s):   cut off after {:?} by `{}`; its future was dropped",
                t(),
                elapsed.duration(),
                elapsed.policy_name()
            ),
            _ => println!("{} hung call failed: {e}", t()),
        },
        Ok(v) => println!("{} hung call answered?! {v}", t()),
    }

    println!("\n== The same Timeout handle as a tower layer ==");
    let mut svc = ServiceBuilder::new()
        .layer(timeout.layer())
        .service_fn(|latency_ms: u64| backend(Duration::from_millis(latency_ms)));
    for latency_ms in [20, 500] {
        let out = svc.ready().await?.call(latency_ms).await;
        println!(
            "{} tower call ({latency_ms} ms): {:?}",
            t(),
            out.map_err(|e| e.to_string())
        );
    }
    Ok(())
}
