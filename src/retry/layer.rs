use tower::Layer;

use super::future::NoHint;
use super::{Defaults, Retry, RetryService};
use crate::clock::DefaultClock;
use crate::timer::DefaultTimer;

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

/// Applies a [`Retry`] to a tower service.
///
/// # Examples
///
/// ```
/// use palisade::Outcome;
/// use palisade::retry::{Retry, RetryLayer};
///
/// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
/// // Retry 503 responses too, sending a copy of the request each time.
/// let layer = RetryLayer::new(retry).when(|r: &Result<u16, tower::BoxError>| match r {
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
    P = Defaults,
    RC = CloneRequest,
    H = NoHint,
> {
    retry: Retry<T, C>,
    predicate: P,
    cloner: RC,
    hint: H,
}

impl<T, C> RetryLayer<T, C> {
    /// A layer retrying with `retry`, the default rules, and `Clone` for requests.
    pub fn new(retry: Retry<T, C>) -> Self {
        RetryLayer {
            retry,
            predicate: Defaults,
            cloner: CloneRequest,
            hint: NoHint,
        }
    }
}

impl<T, C, P, RC, H> RetryLayer<T, C, P, RC, H> {
    /// Retries what `classifier` calls a failure, and nothing else.
    pub fn when<Cl>(self, classifier: Cl) -> RetryLayer<T, C, super::Classified<Cl>, RC, H> {
        RetryLayer {
            retry: self.retry,
            predicate: super::Classified(classifier),
            cloner: self.cloner,
            hint: self.hint,
        }
    }

    /// Copies requests with `cloner` instead of `Clone`.
    pub fn cloner<RC2>(self, cloner: RC2) -> RetryLayer<T, C, P, RC2, H> {
        RetryLayer {
            retry: self.retry,
            predicate: self.predicate,
            cloner,
            hint: self.hint,
        }
    }

    /// Takes delays from responses when `hint` returns one (a `Retry-After`).
    pub fn hint<H2>(self, hint: H2) -> RetryLayer<T, C, P, RC, H2> {
        RetryLayer {
            retry: self.retry,
            predicate: self.predicate,
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

impl<T: Clone, C: Clone> Retry<T, C> {
    /// A tower layer retrying with this policy; the same as [`RetryLayer::new`] on a clone.
    pub fn layer(&self) -> RetryLayer<T, C> {
        RetryLayer::new(self.clone())
    }
}

impl<S, T: Clone, C: Clone, P: Clone, RC: Clone, H: Clone> Layer<S> for RetryLayer<T, C, P, RC, H> {
    type Service = RetryService<S, T, C, P, RC, H>;

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
