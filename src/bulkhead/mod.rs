//! Bulkhead: cap how many calls run at once, so one slow dependency cannot take every task,
//! connection and thread.
//!
//! # Semantics
//!
//! A [`Bulkhead`] has `max_concurrent` slots. A call takes one before it starts and gives it
//! back when it ends, however it ends. When every slot is taken:
//!
//! - with no queue (`max_queue = 0`, the default), the call is rejected at once with
//!   [`Rejected::BulkheadFull`] ([`FullCause::QueueFull`]);
//! - with a queue, up to `max_queue` calls wait, served **first in, first out**; a call that
//!   finds the queue full is rejected at once, and one that waits longer than `max_wait` is
//!   rejected with [`FullCause::WaitTimedOut`]. A newcomer never overtakes a waiter: a slot
//!   given back while calls wait goes straight to the oldest.
//!
//! [`set_max_concurrent`](Bulkhead::set_max_concurrent) resizes it at run time: a raise admits
//! waiters at once; a cut lets the calls in flight finish and admits no one until they are
//! under the new limit.
//!
//! # Examples
//!
//! With closures:
//!
//! ```
//! use palisade::{Rejected, bulkhead::Bulkhead};
//!
//! # #[cfg(all(feature = "tokio"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade::ConfigError> {
//! let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(2).build()?);
//! let out: Result<u32, Rejected> = bulkhead.run(|| async { Ok(7) }).await;
//! assert_eq!(out, Ok(7));
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "tokio")))] fn main() {}
//! ```
//!
//! As a tower layer (the same handle, the same slots):
//!
//! ```
//! use palisade::bulkhead::Bulkhead;
//! use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[cfg(all(feature = "tokio", feature = "tower"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(8).build()?);
//! let mut svc = ServiceBuilder::new()
//!     .layer(bulkhead.layer())
//!     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) });
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "tokio", feature = "tower")))] fn main() {}
//! ```
//!
//! # Tower readiness
//!
//! [`BulkheadService`]'s `poll_ready` first reserves a slot, then asks the inner service
//! whether it is ready, the order of tower's `ConcurrencyLimit`:
//!
//! - **Admitted**: the slot is held while the inner service is `Pending` (an exhausted
//!   connection pool, say), and `poll_ready` stays `Pending` until the inner service is
//!   ready. Reserving first means a call that waits for the inner service already counts
//!   against the limit, so the bulkhead never lets more calls queue on the dependency than
//!   it has slots. The slot moves into the response future, which gives it back when it
//!   completes or is dropped; dropping the service gives back a slot it reserved.
//! - **Full, failing fast**: `poll_ready` returns `Ready(Ok(()))` at once, without polling
//!   the inner service, and `call` returns a future that fails with
//!   [`Rejected::BulkheadFull`] without calling it (tower's `LoadShed`). A full bulkhead is
//!   never `Ready(Err)`, which tower treats as fatal. The rejection is counted and reported
//!   by `call`, once per refused call.
//! - **Full, with a queue**: `poll_ready` is `Pending` while the service waits in line; when
//!   the queue is full or `max_wait` runs out, it is `Ready(Ok(()))` and the call fails as
//!   above.
//!
//! A refusal holds nothing, so it is not kept: each `poll_ready` asks again, and takes a
//! slot that came free since the last one. A clone of the service starts without a
//! reservation.
//!
//! # Cancellation
//!
//! A call dropped while queued leaves the queue and takes no slot; if a slot was handed to it
//! at that very moment, it passes it on to the next waiter. A slot is given back exactly once
//! however the call ends: success, error, panic inside the call, or drop. A call dropped while
//! running has its future dropped first and its slot given back after, so no more calls than
//! slots hold resources even while a cancelled call's destructor runs.
//!
//! # Listeners
//!
//! As everywhere in the crate ([user code runs last](crate::telemetry#user-code-runs-last)),
//! the slot is taken or given back before the listener hears of it: a permit exists before
//! [`BulkheadAdmitted`](crate::telemetry::EventKind::BulkheadAdmitted) is reported, and a
//! slot is back before [`BulkheadReleased`](crate::telemetry::EventKind::BulkheadReleased)
//! is. A listener that panics unwinds through the caller with every slot accounted for: a
//! permit whose admission panicked is dropped by the unwinding, which gives its slot back
//! (or hands it to the next waiter), and a service or future that was waiting in line
//! leaves the queue. The `in_flight` these events carry is the count left by the atomic
//! step that took or gave back the slot, not a later read.
//!
//! # Clone semantics
//!
//! Clones share the same slots, queue and counters: clone the handle into every place that
//! calls the same dependency.
//!
//! # Why our own queue
//!
//! Fail-fast admission is a compare-and-swap on one counter, with no lock and no allocation.
//! The queue could have been `tokio::sync::Semaphore`, but a second counter beside ours would
//! give two sources of truth for resizing, `try_acquire` and snapshots, and would tie the
//! queue to tokio. Ours is a mutex-guarded `VecDeque` next to the counter. The mutex is taken
//! only to join the queue and to hand a slot to a waiter: with a queue configured but nobody
//! waiting, acquire and release stay lock-free (tokio's semaphore takes its waiter lock on
//! every release). Its correctness is checked by loom models and a proptest against a
//! reference model; its cost by `benches/hot_path.rs`.

mod config;
pub mod future;
#[cfg(feature = "tower")]
mod layer;
mod metrics;
mod permit;
mod semaphore;
#[cfg(feature = "tower")]
mod service;
mod shared;

pub use config::{
    BulkheadConfig, BulkheadConfigBuilder, DEFAULT_MAX_QUEUE, DEFAULT_NAME, MAX_LIMIT, MAX_WAIT,
};
#[cfg(feature = "tower")]
pub use layer::BulkheadLayer;
pub use metrics::BulkheadMetrics;
pub use permit::{BulkheadPermit, OwnedBulkheadPermit};
#[cfg(feature = "tower")]
pub use service::BulkheadService;

use std::fmt;
use std::future::Future;

use crate::error::{ConfigError, FullCause, Rejected};
use crate::sync::Arc;
use crate::timer::{DefaultTimer, Timer};

use self::future::{Acquire, AcquireOwned, RunFuture};
use self::shared::Shared;

/// A bulkhead. Cheap to clone; clones share slots.
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::Bulkhead;
///
/// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
/// let held = bulkhead.try_acquire()?;
/// assert!(bulkhead.try_acquire().is_err());
/// drop(held);
/// assert_eq!(bulkhead.metrics().available, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Bulkhead<T = DefaultTimer> {
    shared: Arc<Shared>,
    timer: T,
}

impl<T: Clone> Clone for Bulkhead<T> {
    fn clone(&self) -> Self {
        Bulkhead {
            shared: self.shared.clone(),
            timer: self.timer.clone(),
        }
    }
}

impl Bulkhead {
    /// A bulkhead from `config`; queued calls time out on the [`DefaultTimer`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::{Bulkhead, BulkheadConfig};
    ///
    /// let bulkhead = Bulkhead::new(BulkheadConfig::builder().max_concurrent(8).build()?);
    /// assert_eq!(bulkhead.metrics().available, 8);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(config: BulkheadConfig) -> Self {
        Self::with_timer(config, DefaultTimer::default())
    }

    /// A builder for a bulkhead's config (shortcut for [`BulkheadConfig::builder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let config = Bulkhead::builder().max_concurrent(2).max_queue(10).build()?;
    /// assert_eq!((config.max_concurrent(), config.max_queue()), (2, 10));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn builder() -> BulkheadConfigBuilder {
        BulkheadConfig::builder()
    }
}

impl<T> Bulkhead<T> {
    /// A bulkhead from `config` whose queued calls time out on `timer` (only used when
    /// `max_wait` is set).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use std::time::Duration;
    ///
    /// let config = Bulkhead::builder().max_concurrent(4).build()?;
    /// let bulkhead = Bulkhead::with_timer(config, |d: Duration| tokio::time::sleep(d));
    /// # let _ = bulkhead;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn with_timer(config: BulkheadConfig, timer: T) -> Self {
        let bulkhead = Bulkhead {
            shared: Arc::new(Shared::new(config)),
            timer,
        };
        bulkhead
            .shared
            .telemetry
            .created(crate::telemetry::PolicyKind::Bulkhead);
        bulkhead
    }

    pub(crate) fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.shared.telemetry
    }

    /// A bulkhead with this one's config and timer and slots of its own, for a per-key map
    /// (no `Created` event: it is part of the map).
    pub(crate) fn sibling(&self, key: Option<std::sync::Arc<str>>) -> Self
    where
        T: Clone,
    {
        Bulkhead {
            shared: Arc::new(Shared::for_key(self.shared.config.clone(), key)),
            timer: self.timer.clone(),
        }
    }

    /// Changes the number of slots for calls admitted from now on; calls in flight are not
    /// disturbed. Values outside `1..=`[`MAX_LIMIT`] are refused.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `max_concurrent` for an invalid value; the limit is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// bulkhead.set_max_concurrent(3)?;
    /// assert_eq!(bulkhead.metrics().max_concurrent, 3);
    /// assert!(bulkhead.set_max_concurrent(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_max_concurrent(&self, n: u32) -> Result<(), ConfigError> {
        if !(1..=MAX_LIMIT).contains(&n) {
            return Err(ConfigError::new(
                "max_concurrent",
                format!("must be in 1..={MAX_LIMIT}"),
                n,
            ));
        }
        self.shared.sem.set_limit(n);
        Ok(())
    }

    /// A snapshot of the bulkhead.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(2).build()?);
    /// let _slot = bulkhead.try_acquire()?;
    /// let m = bulkhead.metrics();
    /// assert_eq!((m.in_flight, m.available, m.max_concurrent), (1, 1, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> BulkheadMetrics {
        let sem = &self.shared.sem;
        let (in_flight, max_concurrent) = (sem.in_flight(), sem.limit());
        BulkheadMetrics {
            in_flight,
            queued: sem.queued(),
            available: max_concurrent.saturating_sub(in_flight),
            max_concurrent,
            rejected: self.shared.rejected.sum(),
        }
    }

    /// The config the bulkhead was built from (its `max_concurrent` is the initial limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(4).build()?);
    /// bulkhead.set_max_concurrent(6)?;
    /// assert_eq!(bulkhead.config().max_concurrent(), 4, "the initial limit");
    /// assert_eq!(bulkhead.metrics().max_concurrent, 6);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn config(&self) -> &BulkheadConfig {
        &self.shared.config
    }

    /// The name the bulkhead reports under.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(4).name("db-pool").build()?);
    /// assert_eq!(bulkhead.name(), "db-pool");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.telemetry.name()
    }
}

impl<T: Timer> Bulkhead<T> {
    /// Waits for a slot, in line behind earlier callers, if the bulkhead has a queue.
    ///
    /// # Errors
    ///
    /// The future resolves to [`Rejected::BulkheadFull`] when the queue is full (or there is
    /// none) or `max_wait` runs out.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).max_queue(10).build()?);
    /// let permit = bulkhead.acquire().await?;
    /// drop(permit);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the queue; no slot is taken or lost.
    pub fn acquire(&self) -> Acquire<'_, T> {
        Acquire::new(self)
    }

    /// [`acquire`](Self::acquire) with a permit that owns a handle to the bulkhead.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).max_queue(1).build()?);
    /// let permit = bulkhead.acquire_owned().await?;
    /// let task = tokio::spawn(async move {
    ///     // The slot is held as long as the task holds the permit.
    ///     drop(permit);
    /// });
    /// task.await?;
    /// assert_eq!(bulkhead.metrics().in_flight, 0);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn acquire_owned(&self) -> AcquireOwned<T>
    where
        T: Clone,
    {
        AcquireOwned::new(self.clone())
    }

    /// Runs the future made by `make` holding a slot, waiting for one if the bulkhead queues.
    /// `make` is only called once the slot is held.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, bulkhead::Bulkhead};
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let _busy = bulkhead.try_acquire().unwrap();
    /// let out: Result<(), Rejected> = bulkhead.run(|| async { Ok(()) }).await;
    /// assert!(matches!(out, Err(Rejected::BulkheadFull(_))));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the queue or gives the slot back.
    pub fn run<M, F, R, E>(&self, make: M) -> RunFuture<'_, M, F, T>
    where
        M: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        // Fail fast without touching the queue machinery when a slot is free (or nobody may
        // wait for one).
        let slot = if let Some(in_flight) = self.shared.sem.try_acquire() {
            Ok(BulkheadPermit::new(&self.shared, in_flight))
        } else if self.shared.config.max_queue == 0 {
            Err(Some(self.shared.reject(FullCause::QueueFull)))
        } else {
            Err(None)
        };
        RunFuture::new(self, make, slot)
    }

    /// Runs `fut` holding a slot; see [`run`](Self::run). A rejected `fut` is dropped unpolled.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, bulkhead::Bulkhead};
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let out: Result<u8, Rejected> = bulkhead.run_once(async { Ok(1) }).await;
    /// assert_eq!(out, Ok(1));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run).
    pub fn run_once<F, R, E>(&self, fut: F) -> RunFuture<'_, impl FnOnce() -> F, F, T>
    where
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        self.run(move || fut)
    }
}

#[cfg(feature = "tower")]
impl<T: Clone> Bulkhead<T> {
    /// A tower layer sharing this bulkhead's slots; the same as [`BulkheadLayer::new`] on a
    /// clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(bulkhead.layer())
    ///     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
    /// let _held = bulkhead.try_acquire()?; // a closure call site holds the only slot
    /// assert!(svc.ready().await?.call(1).await.is_err());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn layer(&self) -> BulkheadLayer<T> {
        BulkheadLayer::new(self.clone())
    }
}

impl<T> fmt::Debug for Bulkhead<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.shared.telemetry.name())
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}
