//! What a user may give a retry besides its config, each optional: a [`Hint`] (the delay a
//! result asks for), a [`Notify`] callback, and for the tower layer a [`RequestCloner`].
//! What is retried is decided by the crate's [`Classifier`](crate::Classifier).

use std::time::Duration;

/// The delay a result asks for (such as an HTTP `Retry-After`); any
/// `Fn(&Result<R, E>) -> Option<Duration>` is one.
///
/// Asked only about a result the retry is going to retry, when no rejection's `retry_after`
/// set the delay already. A delay it gives replaces the backoff's, cut to the config's
/// [`max_hint`](super::RetryConfigBuilder::max_hint).
///
/// # Examples
///
/// ```
/// use palisade::retry::Hint;
/// use std::time::Duration;
///
/// let from_seconds = |r: &Result<(), u64>| r.as_ref().err().map(|s| Duration::from_secs(*s));
/// assert_eq!(from_seconds.hint(&Err(3)), Some(Duration::from_secs(3)));
/// assert_eq!(from_seconds.hint(&Ok(())), None);
/// ```
pub trait Hint<R, E> {
    /// The delay `result` asks for, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Hint, NoHint};
    ///
    /// assert_eq!(Hint::<(), ()>::hint(&NoHint, &Err(())), None);
    /// ```
    fn hint(&self, result: &Result<R, E>) -> Option<Duration>;
}

impl<R, E, F> Hint<R, E> for F
where
    F: Fn(&Result<R, E>) -> Option<Duration>,
{
    #[inline]
    fn hint(&self, result: &Result<R, E>) -> Option<Duration> {
        self(result)
    }
}

/// No hints: the backoff decides every delay.
///
/// # Examples
///
/// ```
/// use palisade::retry::{Hint, NoHint};
///
/// // What `Retry::run` uses until `.hint(..)` replaces it: the backoff decides.
/// assert_eq!(Hint::<u8, &str>::hint(&NoHint, &Err("busy")), None);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHint;

impl<R, E> Hint<R, E> for NoHint {
    #[inline]
    fn hint(&self, _: &Result<R, E>) -> Option<Duration> {
        None
    }
}

/// Called before each retry with the result being retried, the number of the attempt that
/// produced it, and the delay before the next; any `Fn(&Result<R, E>, u32, Duration)` is one.
///
/// # Examples
///
/// ```
/// use palisade::retry::Notify;
/// use std::time::Duration;
///
/// let log = |r: &Result<(), &str>, attempt: u32, delay: Duration| {
///     println!("attempt {attempt} failed with {r:?}; next in {delay:?}");
/// };
/// log.notify(&Err("reset"), 1, Duration::from_millis(100));
/// ```
pub trait Notify<R, E> {
    /// Sees a result about to be retried.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Notify;
    /// use std::cell::Cell;
    /// use std::time::Duration;
    ///
    /// let calls = Cell::new(0);
    /// let count = |_: &Result<(), ()>, _: u32, _: Duration| calls.set(calls.get() + 1);
    /// count.notify(&Err(()), 1, Duration::ZERO);
    /// assert_eq!(calls.get(), 1);
    /// ```
    fn notify(&self, result: &Result<R, E>, attempt: u32, delay: Duration);
}

impl<R, E, F> Notify<R, E> for F
where
    F: Fn(&Result<R, E>, u32, Duration),
{
    #[inline]
    fn notify(&self, result: &Result<R, E>, attempt: u32, delay: Duration) {
        self(result, attempt, delay)
    }
}

/// No callback.
///
/// # Examples
///
/// ```
/// use palisade::retry::{NoNotify, Notify};
/// use std::time::Duration;
///
/// // What `Retry::run` uses until `.on_retry(..)` replaces it: nothing is called.
/// Notify::<(), ()>::notify(&NoNotify, &Err(()), 1, Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotify;

impl<R, E> Notify<R, E> for NoNotify {
    #[inline]
    fn notify(&self, _: &Result<R, E>, _: u32, _: Duration) {}
}

/// Makes a copy of a request to send it again; `None` when it cannot (a streamed body).
///
/// Implemented by [`CloneRequest`] for every `Req: Clone`, and by every
/// `Fn(&Req) -> Option<Req>`. The [`RetryLayer`](super::RetryLayer) copies the request
/// before each attempt it sends, keeping the copy for the next one.
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
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub trait RequestCloner<Req> {
    /// A copy of `req`, or `None` if it cannot be sent again.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{CloneRequest, RequestCloner};
    ///
    /// assert_eq!(CloneRequest.try_clone(&"GET /"), Some("GET /"));
    /// ```
    fn try_clone(&self, req: &Req) -> Option<Req>;
}

#[cfg(feature = "tower")]
impl<Req, F> RequestCloner<Req> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    #[inline]
    fn try_clone(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}

/// Copies requests with `Clone` (the default cloner of a [`RetryLayer`](super::RetryLayer)).
///
/// # Examples
///
/// ```
/// use palisade::retry::{CloneRequest, RequestCloner};
///
/// assert_eq!(CloneRequest.try_clone(&vec![1, 2]), Some(vec![1, 2]));
/// ```
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

#[cfg(feature = "tower")]
impl<Req: Clone> RequestCloner<Req> for CloneRequest {
    #[inline]
    fn try_clone(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}
