//! Resilience policies for async Rust: keep a service alive when the things it calls fail.
//!
//! Every policy is one handle that works two ways: as a tower [`Layer`](tower::Layer) around
//! any `Service` (reqwest, tonic, hyper, axum), and as a plain async wrapper around any
//! closure or future, with no tower in sight. A handle shared by a tower stack and a closure
//! call site is one policy, with one state.
//!
//! | Policy | tower layer | async wrapper | feature |
//! |---|---|---|---|
//! | [Timeout](timeout) | [`TimeoutLayer`](timeout::TimeoutLayer) | [`Timeout::run`](timeout::Timeout::run), [`run_once`](timeout::Timeout::run_once) | a timer (`tokio`) |
//! | [Circuit breaker](circuit_breaker) | [`CircuitBreakerLayer`](circuit_breaker::CircuitBreakerLayer) | [`CircuitBreaker::run`](circuit_breaker::CircuitBreaker::run), [`run_once`](circuit_breaker::CircuitBreaker::run_once), permits | none |
//! | [Bulkhead](bulkhead) | [`BulkheadLayer`](bulkhead::BulkheadLayer) | [`Bulkhead::run`](bulkhead::Bulkhead::run), [`run_once`](bulkhead::Bulkhead::run_once), permits | a timer for `max_wait` |
//! | [Rate limiter](rate_limiter) | [`RateLimiterLayer`](rate_limiter::RateLimiterLayer) | [`RateLimiter::run`](rate_limiter::RateLimiter::run), [`run_once`](rate_limiter::RateLimiter::run_once), [`try_acquire`](rate_limiter::RateLimiter::try_acquire), [`acquire`](rate_limiter::RateLimiter::acquire) | a timer for `max_wait` |
//! | [Per key](keyed): a limiter, bulkhead or breaker per user, IP or host | [`KeyedLayer`](keyed::KeyedLayer) | [`Keyed::run`](keyed::Keyed::run), [`try_acquire`](keyed::Keyed::try_acquire) | as the policy |
//! | Fleet-wide in Redis: a rate or session limit per key shared by every instance | `RedisLimitLayer` | `RedisRateLimiter::run`, `RedisSessionLimiter::run` | `redis` (with `tokio`) |
//! | [Retry](retry) | [`RetryLayer`](retry::RetryLayer) | [`Retry::run`](retry::Retry::run), [`run_with_attempt`](retry::Retry::run_with_attempt) | a timer (`tokio`) |
//! | [Pipeline](pipeline) | [`Pipeline::layer`](pipeline::Pipeline::layer) | [`Pipeline::run`](pipeline::Pipeline::run) | a timer (`tokio`) |
//! | [Fallback](fallback) | [`FallbackLayer`](fallback::FallbackLayer) (`fallback.layer().or_service(..)`) | [`Fallback::run`](fallback::Fallback::run) + [`or_else`](fallback::future::RunFuture::or_else) / [`or_cached`](fallback::future::RunFuture::or_cached) / [`or_value`](fallback::future::RunFuture::or_value) | none |
//!
//! Layers need the `tower` feature (on by default). The cores (breaker state machine and
//! windows, bulkhead slots, backoff, retry budget, the rate limiter's GCRA) build with no
//! features at all.
//!
//! # Quick start: closures
//!
//! ```
//! use palisade::{Rejected, timeout::{Timeout, TimeoutConfig}};
//! use std::time::Duration;
//!
//! # #[cfg(all(feature = "tokio"))]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade::ConfigError> {
//! let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_millis(200)).build()?);
//! let answer: Result<u32, Rejected> = timeout.run(|| async { Ok(42) }).await;
//! assert_eq!(answer, Ok(42));
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "tokio")))] fn main() {}
//! ```
//!
//! The same handles compose; outermost first, the recommended order is retry → circuit
//! breaker → rate limiter → bulkhead → timeout → call. [`Pipeline`] applies it for you
//! (and cuts each attempt's timeout, and its wait for a rate limiter's turn, to a retry
//! deadline); by hand it reads:
//!
//! ```
//! use palisade::{Rejected, bulkhead::Bulkhead, circuit_breaker::CircuitBreaker, retry::Retry,
//!     timeout::{Timeout, TimeoutConfig}};
//! use std::time::Duration;
//!
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade::ConfigError> {
//! let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
//! let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
//! let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(10).build()?);
//! let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(2)).build()?);
//!
//! let answer: Result<u32, Rejected> = retry
//!     .run(|| breaker.run(|| bulkhead.run(|| timeout.run(|| async { Ok(42) }))))
//!     .await;
//! assert_eq!(answer, Ok(42));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))] fn main() {}
//! ```
//!
//! # Quick start: tower
//!
//! ```
//! use palisade::{bulkhead::Bulkhead, circuit_breaker::CircuitBreaker, retry::Retry,
//!     timeout::{Timeout, TimeoutConfig}};
//! use std::time::Duration;
//! use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[cfg(all(feature = "tokio", feature = "tower"))]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
//! let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
//! let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(10).build()?);
//! let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_millis(200)).build()?);
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(retry.layer())
//!     .layer(breaker.layer())
//!     .layer(bulkhead.layer())
//!     .layer(timeout.layer())
//!     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) });
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "tokio", feature = "tower")))] fn main() {}
//! ```
//!
//! # Layout
//!
//! Every policy is a folder under `src/` with the same files in the same roles, so a policy's
//! semantics, core, closure adapter and tower adapter are found by file name alone:
//!
//! | File | Holds |
//! |---|---|
//! | `mod.rs` | the module docs (semantics, cancellation, clone behaviour, an example) and the handle: `new`, `builder`, `run` (`run_once` for the single-shot policies), `layer`, `metrics` |
//! | `config.rs` | the config, its builder and every validation rule |
//! | `future.rs` | every future of the policy: the closure one, and behind `tower` the tower one |
//! | `layer.rs`, `service.rs` | only the tower `Layer` and `Service` |
//! | `policy.rs` | the traits a user implements for this policy, if it has any (never in a tower file) |
//! | `metrics.rs` | the metrics snapshot |
//! | a file named for its core | the hot part, with no tower and no futures in it |
//!
//! The cores: the breaker's state word and decision in `circuit_breaker/state.rs`, its
//! compare-and-swap controller in `controller.rs`, its windows in `window.rs`; the bulkhead's
//! slots in `bulkhead/semaphore.rs`; the retry's decision after each attempt in
//! `retry/attempts.rs`, with `backoff.rs` and `budget.rs`; the fallback's steps in
//! `fallback/chain.rs`; the pipeline's custom order in `pipeline/custom.rs`.
//!
//! Crate-wide: `classify.rs` (the one [`Classifier`] trait every policy grades results with),
//! `error.rs` (the error model below), `clock.rs` and `timer.rs` (time), `telemetry/` (events,
//! listeners, and the types the events carry), `config/` (files), `health/`, `http/` and
//! `presets.rs`. Imports follow the modules' paths, never the crate root's re-exports, and
//! `telemetry` imports from no policy.
//!
//! # Error model
//!
//! Policies never wrap the caller's error in a per-policy error type. They keep it, and turn
//! their own refusals into it through `From<`[`Rejected`]`>`: a tower service keeps
//! `type Error = S::Error` and asks `S::Error: From<Rejected>`; `run` keeps `E` and asks
//! `E: From<Rejected>`. Stacking any number of policies in any order leaves the error type
//! unchanged, so one `impl From<Rejected> for MyError` serves the whole crate.
//!
//! [`Rejected`] is one `#[non_exhaustive]` enum for every policy: a timeout
//! ([`Elapsed`](error::Elapsed)), an open circuit ([`CircuitOpen`](error::CircuitOpen), with
//! the time until it half-opens in `retry_after()`), a full bulkhead
//! ([`BulkheadFull`](error::BulkheadFull)), a rate limit ([`RateLimited`](error::RateLimited),
//! with the time until the call would be admitted). Each names the policy that acted.
//!
//! Classifiers must tell a rejection by an inner policy from a failure of the called service
//! once both live in `E`; [`AsRejected`] finds a rejection inside `E`. Implement it next to
//! `From<Rejected>`:
//!
//! ```
//! use palisade::{AsRejected, Rejected};
//!
//! #[derive(Debug)]
//! enum MyError {
//!     Rejected(Rejected),
//!     Db(String),
//! }
//! impl From<Rejected> for MyError {
//!     fn from(r: Rejected) -> Self {
//!         MyError::Rejected(r)
//!     }
//! }
//! impl AsRejected for MyError {
//!     fn as_rejected(&self) -> Option<&Rejected> {
//!         match self {
//!             MyError::Rejected(r) => Some(r),
//!             MyError::Db(_) => None,
//!         }
//!     }
//! }
//! # let _ = MyError::Db(String::new());
//! ```
//!
//! Two paths need no impl at all, and are the only ones for foreign error types (the orphan
//! rule forbids `impl From<Rejected> for std::io::Error`):
//!
//! - `tower::BoxError`: std's blanket `From<E: Error>` already turns a [`Rejected`] into it,
//!   and [`AsRejected`] finds it again by downcasting;
//! - [`Error<E>`](Error): `Rejected(Rejected)` or `Inner(E)`. Lift the innermost call once
//!   (`.map_err(Error::Inner)`, or [`LiftLayer`] in a tower stack).
//!
//! Invalid configuration is a [`ConfigError`] from the builder's `build()`, naming the field,
//! the rule and the value. It never appears at run time, and no policy panics on any input.
//!
//! # Time and runtimes
//!
//! Policies read time from a [`Clock`](clock::Clock) and sleep on a [`Timer`](timer::Timer),
//! never from `std::time::Instant::now()` directly. The default clock is the fast one,
//! [`TscClock`](clock::TscClock): the CPU's time-stamp counter for exact readings, and for
//! an open breaker's check of its break a recent reading validated by the kernel's coarse
//! clock (a few nanoseconds); the exact clock is read only in the break's last milliseconds,
//! so the break still ends on time. The default timer (feature `tokio`) is
//! tokio's; without tokio any `Fn(Duration) -> impl Future` serves as a timer.
//!
//! **Tests with paused time**: put `palisade = { version = "0.1", features = ["test-util"] }`
//! in your dev-dependencies. The default clock then becomes
//! [`TokioClock`](clock::TokioClock) in test builds, so `tokio::time::pause()` and `advance()`
//! drive every policy without real waiting; your release build keeps the fast clock. Without
//! it, paused sleeps jump ahead while breakers and deadlines keep real time (see
//! [`clock`] for the trade-off). [`CoarseClock`](clock::CoarseClock) reads only the coarse
//! clock, at a granularity of a few
//! milliseconds. Jitter is reproducible: give the retry a
//! [`seed`](retry::RetryConfigBuilder::seed).
//!
//! On tokio (feature `tokio`), a refusal (an open breaker, a full bulkhead) takes a unit of
//! the task's cooperative budget, as tokio's own resources do when they complete, so a loop
//! over refused calls still yields to its runtime every 128 or so and cannot starve the
//! worker's timers and tasks. So do the bulkhead's [`acquire`](bulkhead::Bulkhead::acquire)
//! futures when they hand out a slot at once, as `tokio::sync::Semaphore::acquire` does. A
//! call admitted by `run` or a layer takes none of its own: the call's future takes part
//! through tokio's resources, and a second unit per call would halve the work a task does
//! per scheduling (tower's `ConcurrencyLimit` and tokio's `timeout` wrap the same way).
//!
//! # Feature flags
//!
//! | Feature | Default | Enables |
//! |---|---|---|
//! | `tokio` | yes | [`TokioTimer`](timer::TokioTimer) as the default timer; [`TokioClock`](clock::TokioClock) |
//! | `tower` | yes | the `Layer` / `Service` adapters, [`LiftLayer`] |
//! | `tracing` | no | [`TracingListener`](telemetry::TracingListener) |
//! | `metrics` | no | `MetricsListener`: every event as `palisade_*` series through the `metrics` facade |
//! | `serde` | no | [`config`]: every config from TOML / YAML / JSON files, validated like the builders; serializable health reports |
//! | `toml`, `yaml`, `json` | no | `serde`, and [`Policies::from_path`](config::Policies::from_path) for files in that format |
//! | `http` | no | [`http`]: status classifier, `Retry-After` hints, a request cloner; with `tower`, load shedding with 503 |
//! | `redis` | no | `redis`: fleet-wide rate and session limits kept in Redis (implies `tokio`; needs Rust 1.88) |
//! | `axum` | no | [`keyed::axum`]: per-key policies keyed by client IP (connection, or trusted proxies' `X-Forwarded-For` / `Forwarded`) or a header (implies `tower` and `http`) |
//! | `reqwest-middleware` | no | [`http::middleware`]: a pipeline or one policy as a `reqwest_middleware::Middleware` (implies `tokio` and `http`) |
//! | `test-util` | no | for dev-dependencies: [`TokioClock`](clock::TokioClock) as the default clock, so paused tokio time drives every policy; [`FakeClock`](clock::FakeClock) |
//!
//! With no features, the policy cores, the closure wrappers (given a timer) and the error
//! model build on std alone.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (edition 2024). Raising it is a minor-version change, announced in the changelog.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![deny(unsafe_code)]

pub mod bulkhead;
pub mod circuit_breaker;
pub mod classify;
pub mod clock;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod config;
mod coop;
mod counter;
pub mod error;
pub mod fallback;
pub mod health;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod keyed;
#[cfg(feature = "tower")]
mod lift;
pub mod pipeline;
pub mod prelude;
pub mod presets;
pub mod rate_limiter;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod retry;
mod rng;
mod sync;
pub mod telemetry;
pub mod timeout;
pub mod timer;
mod validate;

pub use bulkhead::Bulkhead;
pub use circuit_breaker::CircuitBreaker;
pub use classify::{AllErrors, Classifier, DefaultClassifier, Outcome};
pub use error::{AsRejected, ConfigError, Error, Rejected};
pub use fallback::Fallback;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use lift::{Lift, LiftFuture, LiftLayer};
pub use pipeline::Pipeline;
pub use retry::Retry;
pub use timeout::Timeout;
