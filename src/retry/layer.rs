use tower::Layer;

use super::policy::{CloneRequest, NoHint};
use super::{Retry, RetryService};
use crate::classify::DefaultClassifier;
use crate::clock::DefaultClock;
use crate::timer::DefaultTimer;

/// Applies a [`Retry`] to a tower service.
///
/// Holds a clone of the handle (clones share the budget and the counters), the
/// [`Classifier`](crate::Classifier) that decides what is retried (the
/// [`DefaultClassifier`] unless [`classify`](Self::classify) changes it), the
/// [`RequestCloner`](super::RequestCloner) that copies requests, and an optional
/// [`Hint`](super::Hint).
///
/// # Examples
///
/// ```
/// use palisade::Outcome;
/// use palisade::retry::{Retry, RetryLayer};
///
/// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
/// // Retry 503 responses too, sending a copy of the request each time.
/// let layer = RetryLayer::new(retry).classify(|r: &Result<u16, tower::BoxError>| match r {
///     Ok(503) | Err(_) => Outcome::Failure,
///     Ok(_) => Outcome::Success,
/// });
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer<
    T = DefaultTimer,
    C = DefaultClock,
    Cl = DefaultClassifier,
    RC = CloneRequest,
    H = NoHint,
> {
    retry: Retry<T, C>,
    classifier: Cl,
    cloner: RC,
    hint: H,
}

impl<T, C> RetryLayer<T, C> {
    /// A layer retrying with `retry`'s policy: the [`DefaultClassifier`], `Clone` for the
    /// request, no hints.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Retry, RetryLayer};
    ///
    /// let retry = Retry::new(Retry::builder().build()?);
    /// let layer = RetryLayer::new(retry.clone());
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(retry: Retry<T, C>) -> Self {
        RetryLayer {
            retry,
            classifier: DefaultClassifier,
            cloner: CloneRequest,
            hint: NoHint,
        }
    }
}

impl<T, C, Cl, RC, H> RetryLayer<T, C, Cl, RC, H> {
    /// Decides what is retried with `classifier`, as
    /// [`RunFuture::classify`](super::future::RunFuture::classify) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::AllErrors;
    /// use palisade::retry::Retry;
    ///
    /// let retry = Retry::new(Retry::builder().build()?);
    /// // Every error is retried, an inner policy's rejection too.
    /// let layer = retry.layer().classify(AllErrors);
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> RetryLayer<T, C, Cl2, RC, H> {
        RetryLayer {
            retry: self.retry,
            classifier,
            cloner: self.cloner,
            hint: self.hint,
        }
    }

    /// Copies requests with `cloner` instead of `Clone`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    ///
    /// struct Req(Vec<u8>);
    /// let retry = Retry::new(Retry::builder().build()?);
    /// let layer = retry.layer().cloner(|r: &Req| Some(Req(r.0.clone())));
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn cloner<RC2>(self, cloner: RC2) -> RetryLayer<T, C, Cl, RC2, H> {
        RetryLayer {
            retry: self.retry,
            classifier: self.classifier,
            cloner,
            hint: self.hint,
        }
    }

    /// Takes delays from responses when `hint` returns one (a `Retry-After`), as
    /// [`RunFuture::hint`](super::future::RunFuture::hint) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    /// use std::time::Duration;
    ///
    /// let retry = Retry::new(Retry::builder().build()?);
    /// // The server's "busy, come back later" arrives as an error: (status, seconds).
    /// let layer = retry.layer().hint(|r: &Result<u16, palisade::Error<(u16, u64)>>| match r {
    ///     Err(palisade::Error::Inner((_, secs))) => Some(Duration::from_secs(*secs)),
    ///     _ => None,
    /// });
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn hint<H2>(self, hint: H2) -> RetryLayer<T, C, Cl, RC, H2> {
        RetryLayer {
            retry: self.retry,
            classifier: self.classifier,
            cloner: self.cloner,
            hint,
        }
    }
}

impl<T, C> From<Retry<T, C>> for RetryLayer<T, C> {
    fn from(retry: Retry<T, C>) -> Self {
        RetryLayer::new(retry)
    }
}

impl<S, T, C, Cl, RC, H> Layer<S> for RetryLayer<T, C, Cl, RC, H>
where
    T: Clone,
    C: Clone,
    Cl: Clone,
    RC: Clone,
    H: Clone,
{
    type Service = RetryService<S, T, C, Cl, RC, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService::new(
            inner,
            self.retry.clone(),
            self.classifier.clone(),
            self.cloner.clone(),
            self.hint.clone(),
        )
    }
}
