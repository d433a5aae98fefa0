//! Heap allocations and bytes per call, for palisade and the peers doing the same work.
//!
//! Run with `cargo bench -p palisade-benches --bench alloc_report`. It prints a table and, under `cargo bench`,
//! writes it to `benches/ALLOCATIONS.md` (not under `cargo test`, whose runs would rewrite a
//! tracked file). It measures counts, not time, so its figures are the same on every machine.
//! Case names follow `hot_path`'s convention: `palisade…` is ours, anything else a peer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::ready;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod common;
use common::{Echo, call_now, poll_now};
use palisade::Rejected;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::timeout::{Timeout, TimeoutConfig};
use tower::Layer;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; the counters are plain
// atomics that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CALLS: u64 = 1000;

/// (allocations, bytes) per call of `f`, after a warm-up call.
fn per_call(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..CALLS {
        f();
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    (
        (a1 - a0) as f64 / CALLS as f64,
        (b1 - b0) as f64 / CALLS as f64,
    )
}

fn main() {
    // criterion-style flags (`--bench`, filters) are accepted and ignored.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut rows: Vec<(&str, &str, (f64, f64))> = Vec::new();

    let breaker = CircuitBreaker::new(CircuitBreaker::builder().build().unwrap());
    rows.push((
        "breaker admit+record",
        "palisade try_acquire + success",
        per_call(|| breaker.try_acquire().unwrap().success()),
    ));
    rows.push((
        "breaker admit+record",
        "palisade run",
        per_call(|| {
            let _: Result<u64, Rejected> = poll_now(breaker.run(|| ready(Ok(1))));
        }),
    ));
    let failsafe = failsafe::Config::new().build();
    rows.push((
        "breaker admit+record",
        "failsafe call",
        per_call(|| {
            use failsafe::CircuitBreaker as _;
            failsafe.call(|| Ok::<_, ()>(black_box(1))).unwrap();
        }),
    ));
    let recloser = recloser::Recloser::custom().build();
    rows.push((
        "breaker admit+record",
        "recloser call",
        per_call(|| {
            recloser.call(|| Ok::<_, ()>(black_box(1))).unwrap();
        }),
    ));

    let mut ours = breaker.layer().layer(Echo);
    rows.push((
        "breaker layer",
        "palisade CircuitBreakerLayer",
        per_call(|| call_now(&mut ours, black_box(1))),
    ));
    let mut theirs = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .layer(Echo);
    rows.push((
        "breaker layer",
        "tower-resilience CircuitBreakerLayer",
        per_call(|| call_now(&mut theirs, black_box(1))),
    ));

    let timeout = Timeout::new(
        TimeoutConfig::builder()
            .duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let mut ours = timeout.layer().layer(Echo);
    rows.push((
        "timeout layer",
        "palisade TimeoutLayer",
        per_call(|| call_now(&mut ours, black_box(1))),
    ));
    let mut tower_timeout = tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(Echo);
    rows.push((
        "timeout layer",
        "tower TimeoutLayer",
        per_call(|| call_now(&mut tower_timeout, black_box(1))),
    ));
    let mut tr = tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(Duration::from_secs(1))
        .build()
        .layer(Echo);
    rows.push((
        "timeout layer",
        "tower-resilience TimeLimiter",
        per_call(|| call_now(&mut tr, black_box(1))),
    ));

    let bulkhead = palisade::bulkhead::Bulkhead::new(
        palisade::bulkhead::Bulkhead::builder()
            .max_concurrent(64)
            .build()
            .unwrap(),
    );
    rows.push((
        "bulkhead acquire+release",
        "palisade try_acquire",
        per_call(|| drop(bulkhead.try_acquire().unwrap())),
    ));
    let semaphore = tokio::sync::Semaphore::new(64);
    rows.push((
        "bulkhead acquire+release",
        "tokio Semaphore::try_acquire",
        per_call(|| drop(semaphore.try_acquire().unwrap())),
    ));
    let queued = palisade::bulkhead::Bulkhead::new(
        palisade::bulkhead::Bulkhead::builder()
            .max_concurrent(64)
            .max_queue(64)
            .build()
            .unwrap(),
    );
    rows.push((
        "bulkhead queued acquire+release (slot free)",
        "palisade acquire",
        per_call(|| drop(poll_now(queued.acquire()).unwrap())),
    ));
    rows.push((
        "bulkhead queued acquire+release (slot free)",
        "tokio Semaphore::acquire",
        per_call(|| drop(poll_now(semaphore.acquire()).unwrap())),
    ));
    let mut ours = bulkhead.layer().layer(Echo);
    rows.push((
        "bulkhead layer",
        "palisade BulkheadLayer",
        per_call(|| call_now(&mut ours, black_box(1))),
    ));
    let mut limit = tower::limit::ConcurrencyLimitLayer::new(64).layer(Echo);
    rows.push((
        "bulkhead layer",
        "tower ConcurrencyLimitLayer",
        per_call(|| call_now(&mut limit, black_box(1))),
    ));
    let mut theirs = tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(64)
        .build()
        .unwrap()
        .layer(Echo);
    rows.push((
        "bulkhead layer",
        "tower-resilience BulkheadLayer",
        per_call(|| call_now(&mut theirs, black_box(1))),
    ));

    let retry = palisade::retry::Retry::new(palisade::retry::Retry::builder().build().unwrap());
    rows.push((
        "retry, first attempt succeeds",
        "palisade run",
        per_call(|| {
            let _: Result<u64, Rejected> = poll_now(retry.run(|| ready(Ok(1))));
        }),
    ));
    rows.push((
        "retry, first attempt succeeds",
        "backon Retryable",
        per_call(|| {
            use backon::Retryable;
            let _: Result<u64, Rejected> =
                poll_now((|| ready(Ok(1))).retry(backon::ExponentialBuilder::default()));
        }),
    ));
    let mut ours = retry.layer().layer(Echo);
    rows.push((
        "retry layer, first attempt succeeds",
        "palisade RetryLayer",
        per_call(|| call_now(&mut ours, black_box(1))),
    ));
    let mut theirs = tower_resilience::retry::RetryLayer::<u64, u64, tower::BoxError>::builder()
        .max_attempts(3)
        .build()
        .layer(Echo);
    rows.push((
        "retry layer, first attempt succeeds",
        "tower-resilience RetryLayer",
        per_call(|| call_now(&mut theirs, black_box(1))),
    ));

    let breaker = CircuitBreaker::new(CircuitBreaker::builder().build().unwrap());
    let fallback =
        palisade::fallback::Fallback::new(palisade::fallback::Fallback::builder().build().unwrap());
    let mut ours = tower::ServiceBuilder::new()
        .layer(fallback.layer().or_value(0))
        .layer(retry.layer())
        .layer(breaker.layer())
        .layer(bulkhead.layer())
        .layer(timeout.layer())
        .service(Echo);
    rows.push((
        "5-policy tower stack",
        "palisade",
        per_call(|| call_now(&mut ours, black_box(1))),
    ));
    let mut theirs = common::tower_resilience_stack();
    rows.push((
        "5-policy tower stack",
        "tower-resilience",
        per_call(|| call_now(&mut theirs, black_box(1))),
    ));

    // Rate limiters, each admitting every call, direct and per key; and what a new key costs
    // (its instance and its place in the map).
    {
        use governor::{Quota, RateLimiter as Governor};
        use palisade::keyed::{Keyed, KeyedConfig};
        use palisade::rate_limiter::RateLimiter;
        let huge = std::num::NonZeroU32::new(1 << 29).unwrap();
        let ours = RateLimiter::new(
            RateLimiter::builder()
                .rate(1 << 29, Duration::from_secs(1))
                .build()
                .unwrap(),
        );
        let theirs = Governor::direct(Quota::per_second(huge));
        rows.push((
            "rate limiter admit",
            "palisade try_acquire",
            per_call(|| ours.try_acquire().unwrap()),
        ));
        rows.push((
            "rate limiter admit",
            "governor check",
            per_call(|| theirs.check().unwrap()),
        ));
        let ours_keyed: Keyed<u64, _> = Keyed::new(KeyedConfig::default(), ours.clone());
        let theirs_keyed = Governor::<u64, _, _>::keyed(Quota::per_second(huge));
        rows.push((
            "rate limiter admit, existing key",
            "palisade Keyed::try_acquire",
            per_call(|| ours_keyed.try_acquire(black_box(&7)).unwrap()),
        ));
        rows.push((
            "rate limiter admit, existing key",
            "governor keyed check_key",
            per_call(|| theirs_keyed.check_key(black_box(&7)).unwrap()),
        ));
        let mut next = 1_000u64;
        rows.push((
            "rate limiter admit, new key",
            "palisade Keyed::try_acquire",
            per_call(|| {
                next += 1;
                ours_keyed.try_acquire(&next).unwrap()
            }),
        ));
        let mut next = 1_000u64;
        rows.push((
            "rate limiter admit, new key",
            "governor keyed check_key",
            per_call(|| {
                next += 1;
                theirs_keyed.check_key(&next).unwrap()
            }),
        ));
    }

    // A cached fallback keeps a copy of each success: free for a response whose clone does not
    // allocate, one allocation per call for one whose clone does. Reported, not a hot path.
    let cached = palisade::fallback::Fallback::new(
        palisade::fallback::Fallback::builder()
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let mut ours = cached.layer().or_cached().layer(Echo);
    rows.push((
        "fallback or_cached, u64 response",
        "palisade",
        per_call(|| call_now(&mut ours, black_box(1))),
    ));
    let strings = || {
        tower::service_fn(|n: u64| ready(Ok::<_, tower::BoxError>(format!("response body {n}"))))
    };
    let mut bare = strings();
    rows.push((
        "String response (the service allocates it)",
        "bare service",
        per_call(|| call_now(&mut bare, black_box(1))),
    ));
    let cached_strings = palisade::fallback::Fallback::new(
        palisade::fallback::Fallback::builder()
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let mut ours = cached_strings.layer().or_cached().layer(strings());
    rows.push((
        "String response (the service allocates it)",
        "palisade fallback or_cached (clones each success)",
        per_call(|| call_now(&mut ours, black_box(1))),
    ));

    println!("| operation | implementation | allocations per call | bytes per call |");
    println!("|---|---|---:|---:|");
    for (op, who, (allocs, bytes)) in &rows {
        println!("| {op} | {who} | {allocs:.2} | {bytes:.0} |");
    }
    if common::report::is_bench_run() {
        common::report::write_allocations(&rows);
    }
}
