//! Timeout: cut a call short when it takes too long.
//!
//! # Semantics
//!
//! A [`Timeout`] gives each call a fixed [`duration`](TimeoutConfigBuilder::duration). The
//! call's future is polled first and its result passes through untouched if it is ready by the
//! deadline. Once the duration has passed, the call's future is **dropped** (which cancels the
//! work it was doing, such as an HTTP request in flight) and the caller gets
//! `Err(E::from(Rejected::Timeout(Elapsed)))`, where [`Elapsed`](crate::error::Elapsed)
//! carries the policy's name and the duration. A [`TimedOut`](crate::telemetry::EventKind)
//! event is reported.
//!
//! The clock starts at the first poll of the returned future, not when it is created. With the
//! tower layer, the timeout covers the response future only, not the wait for the inner
//! service's readiness (as in tower's own `Timeout`). Put a bulkhead or a readiness timeout
//! outside it to bound waiting for capacity.
//!
//! The layer can take the duration from each request (for example a deadline header) with
//! [`TimeoutLayer::per_request`]; requests for which the function returns `None` get the
//! configured duration.
//!
//! # Examples
//!
//! With closures:
//!
//! ```
//! use palisade::{Rejected, timeout::{Timeout, TimeoutConfig}};
//! use std::time::Duration;
//!
//! # #[cfg(all(feature = "tokio"))]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?);
//!
//! let fast: Result<u32, Rejected> = timeout.run(|| async { Ok(7) }).await;
//! assert_eq!(fast, Ok(7));
//!
//! let slow: Result<u32, Rejected> = timeout
//!     .run(|| async {
//!         tokio::time::sleep(Duration::from_secs(5)).await;
//!         Ok(7)
//!     })
//!     .await;
//! assert!(slow.unwrap_err().is_timeout());
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "tokio")))] fn main() {}
//! ```
//!
//! As a tower layer (the same handle):
//!
//! ```
//! use palisade::timeout::{Timeout, TimeoutConfig};
//! use std::time::Duration;
//! use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[cfg(all(feature = "tokio", feature = "tower"))]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?);
//! let mut svc = ServiceBuilder::new()
//!     .layer(timeout.layer())
//!     .service_fn(|name: &'static str| async move { Ok::<_, BoxError>(format!("hi {name}")) });
//! assert_eq!(svc.ready().await?.call("ann").await?, "hi ann");
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "tokio", feature = "tower")))] fn main() {}
//! ```
//!
//! # Cancellation
//!
//! Dropping the returned future drops the call's future and the timer with it; nothing is
//! reported. A timeout never outlives its future: there is no background task.
//!
//! When the time runs out, the call's future and the timer are dropped and the timeout is
//! counted before the listener hears of it ([user code runs
//! last](crate::telemetry#user-code-runs-last)): a listener that panics leaves nothing
//! half-done, and the service keeps no state between calls for it to spoil.
//! `TimeoutService::poll_ready` passes the inner service's answer through and keeps nothing
//! from one call to the next.
//!
//! # Clone semantics
//!
//! Clones share one small block of state: the name, the listener and the count of calls cut
//! short behind [`Timeout::metrics`], so a snapshot from any clone counts the timeouts of
//! all of them. Cloning bumps one reference count; each call's future holds one too, which
//! is how a timeout that fires can count itself.

mod config;
pub mod future;
#[cfg(feature = "tower")]
mod layer;
mod metrics;
#[cfg(feature = "tower")]
mod policy;
#[cfg(feature = "tower")]
mod service;

pub use config::{DEFAULT_NAME, DEFAULT_TIMEOUT, MAX_TIMEOUT, TimeoutConfig, TimeoutConfigBuilder};
#[cfg(feature = "tower")]
pub use layer::TimeoutLayer;
pub use metrics::TimeoutMetrics;
#[cfg(feature = "tower")]
pub use policy::{ConfiguredDuration, RequestDuration};
#[cfg(feature = "tower")]
pub use service::TimeoutService;

use std::future::Future;
use std::time::Duration;

use crate::error::Rejected;
use crate::telemetry::Telemetry;
use crate::timer::{DefaultTimer, Timer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use self::future::RunFuture;

/// A timeout policy: a duration, a name, an optional listener and a [`Timer`].
///
/// Build it from a [`TimeoutConfig`]; use it with [`run`](Self::run) /
/// [`run_once`](Self::run_once), or as a tower layer with [`layer`](Self::layer).
///
/// # Examples
///
/// ```
/// use palisade::timeout::{Timeout, TimeoutConfig};
/// use std::time::Duration;
///
/// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(2)).build()?);
/// assert_eq!(timeout.duration(), Duration::from_secs(2));
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Timeout<T = DefaultTimer> {
    duration: Duration,
    shared: Arc<Shared>,
    timer: T,
}

/// What clones of a handle and the futures they make share: each call holds one reference,
/// so a timeout that fires can count itself.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) telemetry: Telemetry,
    pub(crate) timed_out: AtomicU64,
}

impl Timeout {
    /// A timeout from `config`, sleeping on the [`DefaultTimer`].
    ///
    /// Without the `tokio` feature there is no default timer; use
    /// [`with_timer`](Self::with_timer).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::{Timeout, TimeoutConfig};
    /// use std::time::Duration;
    ///
    /// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_millis(300)).build()?);
    /// assert_eq!(timeout.duration(), Duration::from_millis(300));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(config: TimeoutConfig) -> Self {
        Self::with_timer(config, DefaultTimer::default())
    }

    /// A builder for the config of a timeout (shortcut for [`TimeoutConfig::builder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::{DEFAULT_TIMEOUT, Timeout};
    ///
    /// let config = Timeout::builder().build()?;
    /// assert_eq!(config.duration(), DEFAULT_TIMEOUT);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn builder() -> TimeoutConfigBuilder {
        TimeoutConfig::builder()
    }
}

impl<T> Timeout<T> {
    /// A timeout from `config` that sleeps on `timer`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::{Timeout, TimeoutConfig};
    /// use std::time::Duration;
    ///
    /// let config = TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?;
    /// let timeout = Timeout::with_timer(config, |d: Duration| tokio::time::sleep(d));
    /// # let _ = timeout;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn with_timer(config: TimeoutConfig, timer: T) -> Self {
        let timeout = Timeout {
            duration: config.duration,
            shared: Arc::new(Shared {
                telemetry: config.telemetry,
                timed_out: AtomicU64::new(0),
            }),
            timer,
        };
        timeout
            .shared
            .telemetry
            .created(crate::telemetry::PolicyKind::Timeout);
        timeout
    }

    /// The time each call gets.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::Timeout;
    /// use std::time::Duration;
    ///
    /// let timeout = Timeout::new(Timeout::builder().duration(Duration::from_secs(5)).build()?);
    /// assert_eq!(timeout.duration(), Duration::from_secs(5));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The name the policy reports under.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::Timeout;
    ///
    /// let timeout = Timeout::new(Timeout::builder().name("search").build()?);
    /// assert_eq!(timeout.name(), "search");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.telemetry.name()
    }

    /// A snapshot of the policy: how many calls it cut short.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::{Timeout, TimeoutConfig};
    /// use std::time::Duration;
    ///
    /// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(2)).build()?);
    /// assert_eq!(timeout.metrics().timed_out, 0);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn metrics(&self) -> TimeoutMetrics {
        TimeoutMetrics {
            timed_out: self.shared.timed_out.load(Ordering::Relaxed),
            duration: self.duration,
        }
    }
}

impl<T: Timer + Clone> Timeout<T> {
    /// Runs the future made by `make` under this timeout.
    ///
    /// Same as [`run_once`](Self::run_once)`(make())`; the closure form matches the other
    /// policies, whose `run` may call it more than once.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, timeout::{Timeout, TimeoutConfig}};
    /// use std::time::Duration;
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?);
    /// let out: Result<&str, Rejected> = timeout.run(|| async { Ok("done") }).await;
    /// assert_eq!(out, Ok("done"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future drops the call's future.
    pub fn run<M, F, R, E>(&self, make: M) -> RunFuture<F, T>
    where
        M: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        self.run_once(make())
    }

    /// Runs `fut` under this timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, timeout::{Timeout, TimeoutConfig}};
    /// use std::time::Duration;
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_millis(10)).build()?);
    /// let never = std::future::pending::<Result<(), Rejected>>();
    /// let err = timeout.run_once(never).await.unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future drops `fut`.
    pub fn run_once<F, R, E>(&self, fut: F) -> RunFuture<F, T>
    where
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        self.run_once_for(fut, self.duration)
    }

    /// [`run_once`](Self::run_once) with a duration other than the configured one (a
    /// per-request deadline, or the time left of an overall budget).
    pub(crate) fn run_once_for<F>(&self, fut: F, duration: Duration) -> RunFuture<F, T> {
        RunFuture::new(fut, self.timer.clone(), duration, self.shared.clone())
    }
}

#[cfg(feature = "tower")]
impl<T> Timeout<T> {
    /// A tower layer applying this timeout; the same as [`TimeoutLayer::new`] on a clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::Timeout;
    /// use std::time::Duration;
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let timeout = Timeout::new(Timeout::builder().duration(Duration::from_secs(1)).build()?);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(timeout.layer())
    ///     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
    /// assert_eq!(svc.ready().await?.call(9).await?, 9);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn layer(&self) -> TimeoutLayer<T>
    where
        T: Clone,
    {
        TimeoutLayer::new(self.clone())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Timeout<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout")
            .field("duration", &self.duration)
            .field("telemetry", &self.shared.telemetry)
            .field("timer", &self.timer)
            .finish()
    }
}
