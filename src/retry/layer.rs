use tower::Layer;

use super::future::NoHint;
use super::{Defaults, Retry, RetryService};
use crate::clock::Clock;
use crate::timer::Timer;

/// Makes a copy of a request to send it again; `None` when it cannot (a streamed body).
///
/// Implemented by [`CloneRequest`] for every `Req: Clone`, and by every
/// `Fn(&Req) -> Option<Req>`.
///
/// # Examples
///
/// ```
/// use palisade::retry::RequestCloner;
///
/// // Only requests without a one-shot body can be sent again.
/// #[derive(Debug, PartialEq)]
/// struct Req { path: &'static str, one_shot: bool }
///
/// let cloner = |r: &Req| (!r.one_shot).then(|| Req { path: r.path, one_shot: false });
/// assert!(cloner.try_clone(&Req { path: "/", one_shot: true }).is_none());
/// ```
pub trait RequestCloner<Req> {
    /// A copy of `req`, or `None` if it cannot be sent again.
    fn try_clone(&self, req: &Req) -> Option<Req>;
}

impl<Req, F> RequestCloner<Req> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    #[inline]
    fn try_clone(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}

/// Copies requests with `Clone` (the default cloner of [`RetryLayer`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

impl<Req: Clone> RequestCloner<Req> for CloneRequest {
    #[inline]
    fn try_clone(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// How a [`RetryLayer`] holds its [`Retry`]: an owned handle, or a `&'static` one.
///
/// - `Retry<T, C>`: every service and response future holds a clone, which counts a
///   reference to the state the clones share (two atomic writes per call).
/// - `&'static Retry<T, C>`, from [`Retry::leak`] or a `static`: they hold a plain
///   reference, and a call whose first attempt succeeds writes nothing shared but its
///   call counter.
///
/// Sealed: these two are the only handles.
///
/// # Examples
///
/// ```
/// use palisade::retry::{Retry, RetryLayer};
/// use std::sync::LazyLock;
///
/// static RETRY: LazyLock<Retry> =
///     LazyLock::new(|| Retry::new(Retry::builder().max_attempts(3).build().unwrap()));
///
/// let per_call_counted = RetryLayer::new(RETRY.clone());
/// let plain_reference = RetryLayer::new(&*RETRY);
/// # let _ = (per_call_counted, plain_reference);
/// ```
pub trait RetryHandle: Clone + sealed::Sealed {
    /// The handle's timer.
    type Timer: Timer;
    /// The handle's clock.
    type Clock: Clock;
    /// The handle itself.
    fn handle(&self) -> &Retry<Self::Timer, Self::Clock>;
}

mod sealed {
    pub trait Sealed {}
    impl<T, C> Sealed for super::Retry<T, C> {}
    impl<T, C> Sealed for &'static super::Retry<T, C> {}
}

impl<T: Timer + Clone, C: Clock + Clone> RetryHandle for Retry<T, C> {
    type Timer = T;
    type Clock = C;

    #[inline(always)]
    fn handle(&self) -> &Retry<T, C> {
        self
    }
}

impl<T: Timer, C: Clock> RetryHandle for &'static Retry<T, C> {
    type Timer = T;
    type Clock = C;

    #[inline(always)]
    fn handle(&self) -> &Retry<T, C> {
        self
    }
}

/// Applies a [`Retry`] to a tower service.
///
/// `R` is how the layer holds the handle ([`RetryHandle`]): a `Retry` by default, or a
/// `&'static Retry` that spares every call a reference count.
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
pub struct RetryLayer<R = Retry, P = Defaults, RC = CloneRequest, H = NoHint> {
    retry: R,
    predicate: P,
    cloner: RC,
    hint: H,
}

impl<R> RetryLayer<R> {
    /// A layer retrying with `retry`'s policy: the default rules, `Clone` for the request,
    /// no hints.
    pub fn new(retry: R) -> Self {
        RetryLayer {
            retry,
            predicate: Defaults,
            cloner: CloneRequest,
            hint: NoHint,
        }
    }
}

impl<R, P, RC, H> RetryLayer<R, P, RC, H> {
    /// Retries what `classifier` calls a failure, and nothing else.
    pub fn classify<Cl>(self, classifier: Cl) -> RetryLayer<R, super::Classified<Cl>, RC, H> {
        self.predicate(super::Classified(classifier))
    }

    /// Decides what is retried with `predicate` (the default rules or a classifier's).
    pub(crate) fn predicate<P2>(self, predicate: P2) -> RetryLayer<R, P2, RC, H> {
        RetryLayer {
            retry: self.retry,
            predicate,
            cloner: self.cloner,
            hint: self.hint,
        }
    }

    /// Copies requests with `cloner` instead of `Clone`.
    pub fn cloner<RC2>(self, cloner: RC2) -> RetryLayer<R, P, RC2, H> {
        RetryLayer {
            retry: self.retry,
            predicate: self.predicate,
            cloner,
            hint: self.hint,
        }
    }

    /// Takes delays from responses when `hint` returns one (a `Retry-After`).
    pub fn hint<H2>(self, hint: H2) -> RetryLayer<R, P, RC, H2> {
        RetryLayer {
            retry: self.retry,
            predicate: self.predicate,
            cloner: self.cloner,
            hint,
        }
    }
}

impl<T, C> From<Retry<T, C>> for RetryLayer<Retry<T, C>> {
    fn from(retry: Retry<T, C>) -> Self {
        RetryLayer::new(retry)
    }
}

impl<T, C> From<&'static Retry<T, C>> for RetryLayer<&'static Retry<T, C>> {
    fn from(retry: &'static Retry<T, C>) -> Self {
        RetryLayer::new(retry)
    }
}

impl<T: Clone, C: Clone> Retry<T, C> {
    /// A tower layer retrying with this policy; the same as [`RetryLayer::new`] on a clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// static CALLS: AtomicU32 = AtomicU32::new(0);
    /// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
    /// let mut svc = ServiceBuilder::new().layer(retry.layer()).service_fn(|_: ()| async {
    ///     match CALLS.fetch_add(1, Ordering::Relaxed) {
    ///         0 => Err::<u32, BoxError>("reset".into()),
    ///         n => Ok(n),
    ///     }
    /// });
    /// assert_eq!(svc.ready().await?.call(()).await?, 1, "the second attempt");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn layer(&self) -> RetryLayer<Self> {
        RetryLayer::new(self.clone())
    }
}

impl<S, R: Clone, P: Clone, RC: Clone, H: Clone> Layer<S> for RetryLayer<R, P, RC, H> {
    type Service = RetryService<S, R, P, RC, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService::new(
            inner,
            self.retry.clone(),
            self.predicate.clone(),
            self.cloner.clone(),
            self.hint.clone(),
        )
    }
}
