use std::fmt;

use tower::Layer;

use super::chain::{NoSteps, OrCached, OrElseWith, OrService, OrValue, Then};
use super::{Fallback, FallbackService};
use crate::classify::AllErrors;
use crate::clock::DefaultClock;

/// Applies a fallback chain to a tower service: the inner service is the primary, and the
/// alternatives added with [`or_else`](Self::or_else), [`or_service`](Self::or_service),
/// [`or_cached`](Self::or_cached) and [`or_value`](Self::or_value) are tried in that order,
/// each only if everything before it failed (every `Err` by default; see
/// [`classify`](Self::classify)). Alternatives get a copy of the request, so requests must be
/// `Clone`.
///
/// The rules are those of [`Fallback::run`]'s chain (the same code runs both); the last type
/// parameter is the list of alternatives, a type this crate builds and nobody needs to write.
///
/// # Examples
///
/// ```
/// use palisade::fallback::{Fallback, FallbackLayer};
/// use tower::{BoxError, Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let fallback = Fallback::new(Fallback::builder().build()?);
/// let replica = tower::service_fn(|id: u32| async move { Ok::<_, BoxError>(format!("replica {id}")) });
/// let mut svc = FallbackLayer::new(fallback)
///     .or_service(replica)
///     .or_value("unknown".to_string())
///     .layer(tower::service_fn(|_: u32| async { Err::<String, BoxError>("primary down".into()) }));
/// assert_eq!(svc.ready().await?.call(7).await?, "replica 7");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FallbackLayer<T, C = DefaultClock, Cl = AllErrors, St = NoSteps> {
    fallback: Fallback<T, C>,
    classifier: Cl,
    steps: St,
}

impl<T, C> FallbackLayer<T, C> {
    /// A layer with no alternatives yet, falling back on every `Err`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Fallback, FallbackLayer};
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let layer = FallbackLayer::new(Fallback::new(Fallback::builder().build()?)).or_value(0_u32);
    /// let mut svc = layer.layer(tower::service_fn(|_: ()| async { Err::<u32, BoxError>("down".into()) }));
    /// assert_eq!(svc.ready().await?.call(()).await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(fallback: Fallback<T, C>) -> Self {
        FallbackLayer {
            fallback,
            classifier: AllErrors,
            steps: NoSteps,
        }
    }
}

impl<T, C> From<Fallback<T, C>> for FallbackLayer<T, C> {
    fn from(fallback: Fallback<T, C>) -> Self {
        FallbackLayer::new(fallback)
    }
}

impl<T, C, Cl, St> FallbackLayer<T, C, Cl, St> {
    /// Falls back on what `classifier` calls a failure, instead of on every `Err`. It decides
    /// after every level (the primary and each alternative) whether the next one runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Outcome, fallback::Fallback};
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// // Fall back on a 5xx answered as `Ok`, not only on errors.
    /// let mut svc = fallback
    ///     .layer()
    ///     .classify(|r: &Result<u16, BoxError>| match r {
    ///         Ok(s) if *s < 500 => Outcome::Success,
    ///         _ => Outcome::Failure,
    ///     })
    ///     .or_value(200)
    ///     .layer(tower::service_fn(|_: ()| async { Ok::<u16, BoxError>(503) }));
    /// assert_eq!(svc.ready().await?.call(()).await?, 200);
    /// # Ok(())
    /// # }
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> FallbackLayer<T, C, Cl2, St> {
        FallbackLayer {
            fallback: self.fallback,
            classifier,
            steps: self.steps,
        }
    }

    fn add<L>(self, step: L) -> FallbackLayer<T, C, Cl, Then<St, L>> {
        FallbackLayer {
            fallback: self.fallback,
            classifier: self.classifier,
            steps: Then(self.steps, step),
        }
    }

    /// Then an async closure, given a copy of the request and the failed result.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let mut svc = fallback
    ///     .layer()
    ///     .or_else(|id: u32, _failed| async move { Ok::<_, BoxError>(format!("placeholder {id}")) })
    ///     .layer(tower::service_fn(|_: u32| async { Err::<String, BoxError>("down".into()) }));
    /// assert_eq!(svc.ready().await?.call(3).await?, "placeholder 3");
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_else<A>(self, alternative: A) -> FallbackLayer<T, C, Cl, Then<St, OrElseWith<A>>> {
        self.add(OrElseWith(alternative))
    }

    /// Then another service, given a copy of the request (a replica, a degraded endpoint).
    /// A clone of it is polled for readiness, then called, only when the chain gets to it.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let replica = tower::service_fn(|q: &'static str| async move { Ok::<_, BoxError>(format!("replica: {q}")) });
    /// let mut svc = fallback
    ///     .layer()
    ///     .or_service(replica)
    ///     .layer(tower::service_fn(|_: &'static str| async { Err::<String, BoxError>("down".into()) }));
    /// assert_eq!(svc.ready().await?.call("users").await?, "replica: users");
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_service<S>(self, service: S) -> FallbackLayer<T, C, Cl, Then<St, OrService<S>>> {
        self.add(OrService(service))
    }

    /// Then the primary's last success while younger than the fallback's `cache_max_age`
    /// (the primary's successes are stored as they pass).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::time::Duration;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// static DOWN: AtomicBool = AtomicBool::new(false);
    /// let fallback = Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(60)).build()?);
    /// let mut svc = fallback.layer().or_cached().layer(tower::service_fn(|_: ()| async {
    ///     if DOWN.load(Ordering::Relaxed) { Err::<u32, BoxError>("down".into()) } else { Ok(7) }
    /// }));
    /// assert_eq!(svc.ready().await?.call(()).await?, 7);
    /// DOWN.store(true, Ordering::Relaxed);
    /// assert_eq!(svc.ready().await?.call(()).await?, 7, "served from the cache");
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_cached(self) -> FallbackLayer<T, C, Cl, Then<St, OrCached>> {
        self.add(OrCached)
    }

    /// Then a fixed value (cloned into each call).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let mut svc = fallback
    ///     .layer()
    ///     .or_value(Vec::<String>::new())
    ///     .layer(tower::service_fn(|_: ()| async { Err::<Vec<String>, BoxError>("down".into()) }));
    /// assert!(svc.ready().await?.call(()).await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_value(self, value: T) -> FallbackLayer<T, C, Cl, Then<St, OrValue<T>>> {
        self.add(OrValue(value))
    }
}

impl<S, T, C, Cl: Clone, St: Clone> Layer<S> for FallbackLayer<T, C, Cl, St> {
    type Service = FallbackService<S, T, C, Cl, St>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService::new(
            inner,
            self.fallback.clone(),
            self.classifier.clone(),
            self.steps.clone(),
        )
    }
}

impl<T, C, Cl, St> fmt::Debug for FallbackLayer<T, C, Cl, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}
