//! Deciding what a result means: success, failure, or neither.
//!
//! Policies do not assume that `Ok` is good and `Err` is bad. They ask a [`Classifier`], which
//! looks at the whole `Result` and answers with an [`Outcome`]:
//!
//! - an `Ok` can be a failure (an HTTP 503 returned as a response);
//! - an `Err` can be ignored (a request the caller cancelled, or load shedding by an inner
//!   policy, which says nothing about the health of the called service).
//!
//! Any `Fn(&Result<T, E>) -> Outcome` is a classifier. Two are provided:
//!
//! - [`DefaultClassifier`]: `Ok` is a success; an `Err` holding a load-shedding [`Rejected`]
//!   (open circuit, full bulkhead) is ignored; an `Err` holding a timeout is a failure, and so
//!   is every other `Err`. It needs `E:` [`AsRejected`] to look inside the error. Circuit
//!   breakers and retries use it unless told otherwise, so a breaker is not tripped (and a
//!   retry is not spent) by a bulkhead shedding load below it.
//! - [`AllErrors`]: every `Err` is a failure, every `Ok` a success, whatever the types. The
//!   fallback policy uses it, since a rejection is exactly when a fallback should be served.
//!
//! A caller that drops a future never produces a result, so cancellation is never classified:
//! it is neither a success nor a failure.
//!
//! # What you implement, and why
//!
//! One trait, [`Classifier`], for every policy: the breaker counts what it calls a failure,
//! the retry retries it, the fallback replaces it. Most users write a closure; a type is
//! worth it when it has settings (as [`StatusClassifier`](crate::http::StatusClassifier)
//! does). [`classify`](Classifier::classify) is the only required method.
//!
//! The one provided method, [`rejection`](Classifier::rejection), matters to retries only: a
//! retry ends on a result its classifier ignores, except that with
//! [`retry_rejections`](crate::retry::RetryConfigBuilder::retry_rejections) it retries an
//! inner policy's rejection (other than a timeout) after the rejection's `retry_after`. The
//! retry learns that an ignored result is a rejection from this method. The default answers
//! "none", so a classifier of your own decides alone what is retried;
//! [`DefaultClassifier`] finds the rejection through [`AsRejected`]. The delay a result asks
//! for (a `Retry-After`) is not the classifier's business: a retry takes it from an optional
//! [hint](crate::retry::Hint).
//!
//! # One method, everywhere
//!
//! Every policy that grades results takes its classifier through a method named `classify`,
//! on both surfaces: `breaker.run(..).classify(c)` and `breaker.layer().classify(c)`,
//! `retry.run(..).classify(c)` and `retry.layer().classify(c)`,
//! `fallback.run(..).classify(c)` and the fallback layer's `classify`, and for a whole
//! pipeline `Pipeline::builder().classify(c)` (or `pipeline.classify(c)` on a built one, such
//! as a preset's) and `pipeline.layer().classify(c)`, where the retry and the breaker share
//! it. The same closure or type serves them all.

use crate::error::{AsRejected, Rejected};

/// What a result means to a policy.
///
/// # Examples
///
/// ```
/// use palisade::Outcome;
///
/// assert!(Outcome::Failure.is_failure());
/// assert!(!Outcome::Ignore.is_failure());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Outcome {
    /// The call worked: breakers count it as a success, retries stop.
    Success,
    /// The call failed: breakers count it, retries try again, fallbacks step in.
    Failure,
    /// The result says nothing about the called service: nothing is counted or retried.
    Ignore,
}

impl Outcome {
    /// Whether this is [`Outcome::Success`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    ///
    /// assert!(Outcome::Success.is_success());
    /// assert!(!Outcome::Failure.is_success());
    /// assert!(!Outcome::Ignore.is_success());
    /// ```
    #[inline]
    pub const fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// Whether this is [`Outcome::Failure`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    ///
    /// assert!(Outcome::Failure.is_failure());
    /// assert!(!Outcome::Success.is_failure());
    /// assert!(!Outcome::Ignore.is_failure(), "ignored results are not counted");
    /// ```
    #[inline]
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure)
    }
}

/// Classifies a result as a success, a failure, or neither.
///
/// # Examples
///
/// Treat a `503` response as a failure:
///
/// ```
/// use palisade::{Classifier, Outcome};
///
/// let by_status = |r: &Result<u16, std::io::Error>| match r {
///     Ok(status) if *status >= 500 => Outcome::Failure,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// };
/// assert_eq!(by_status.classify(&Ok(503)), Outcome::Failure);
/// assert_eq!(by_status.classify(&Ok(200)), Outcome::Success);
/// ```
pub trait Classifier<T, E> {
    /// What `result` means.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Classifier, DefaultClassifier, Outcome, Rejected};
    ///
    /// let ok: Result<u8, Rejected> = Ok(1);
    /// assert_eq!(DefaultClassifier.classify(&ok), Outcome::Success);
    /// ```
    fn classify(&self, result: &Result<T, E>) -> Outcome;

    /// The inner policy's rejection that `result` holds, if any. Only a retry asks, and only
    /// for a result [`classify`](Self::classify) called [`Ignore`](Outcome::Ignore): with
    /// [`retry_rejections`](crate::retry::RetryConfigBuilder::retry_rejections) it retries
    /// such a rejection (but a timeout) after its `retry_after`.
    ///
    /// The default finds none, so an ignored result ends the retry; [`DefaultClassifier`]
    /// looks inside the error with [`AsRejected`]. A classifier that wraps another forwards
    /// this method with [`classify`](Self::classify).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Classifier, DefaultClassifier, Outcome, Rejected};
    /// use palisade::error::CircuitOpen;
    /// use std::time::Duration;
    ///
    /// let open: Result<(), Rejected> = Err(CircuitOpen::new("db", Duration::from_secs(2)).into());
    /// assert_eq!(DefaultClassifier.classify(&open), Outcome::Ignore);
    /// assert_eq!(DefaultClassifier.rejection(&open).and_then(Rejected::retry_after), Some(Duration::from_secs(2)));
    /// // A closure grades results and says nothing about rejections.
    /// let every_err = |r: &Result<(), Rejected>| if r.is_ok() { Outcome::Success } else { Outcome::Ignore };
    /// assert!(every_err.rejection(&open).is_none());
    /// ```
    #[inline]
    fn rejection<'r>(&self, result: &'r Result<T, E>) -> Option<&'r Rejected> {
        let _ = result;
        None
    }
}

impl<T, E, F> Classifier<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// `Ok` is a success; a policy's rejection inside the error (an open circuit, a full
/// bulkhead, a rate limit, a limit store that is unavailable) is ignored; every other error,
/// timeouts included, is a failure.
///
/// # Examples
///
/// ```
/// use palisade::{Classifier, DefaultClassifier, Outcome, Rejected};
/// use palisade::error::{BulkheadFull, Elapsed, FullCause};
/// use std::time::Duration;
///
/// let shed: Result<(), Rejected> = Err(BulkheadFull::new("db", 4, FullCause::QueueFull).into());
/// let slow: Result<(), Rejected> = Err(Elapsed::new("db", Duration::from_secs(1)).into());
/// assert_eq!(DefaultClassifier.classify(&shed), Outcome::Ignore);
/// assert_eq!(DefaultClassifier.classify(&slow), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<T, E: AsRejected> Classifier<T, E> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => match e.as_rejected() {
                None | Some(Rejected::Timeout(_)) => Outcome::Failure,
                Some(_) => Outcome::Ignore,
            },
        }
    }

    #[inline]
    fn rejection<'r>(&self, result: &'r Result<T, E>) -> Option<&'r Rejected> {
        result.as_ref().err().and_then(AsRejected::as_rejected)
    }
}

/// Every `Err` is a failure and every `Ok` a success.
///
/// # Examples
///
/// ```
/// use palisade::{AllErrors, Classifier, Outcome};
///
/// assert_eq!(AllErrors.classify(&Err::<(), _>("boom")), Outcome::Failure);
/// assert_eq!(AllErrors.classify(&Ok::<_, &str>(1)), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AllErrors;

impl<T, E> Classifier<T, E> for AllErrors {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{CircuitOpen, Error};

    #[test]
    fn default_classifier_ignores_load_shedding_inside_error_wrapper() {
        let open: Result<(), Error<std::io::Error>> =
            Err(Rejected::from(CircuitOpen::isolated("cb")).into());
        assert_eq!(DefaultClassifier.classify(&open), Outcome::Ignore);
        let io: Result<(), Error<std::io::Error>> =
            Err(Error::Inner(std::io::ErrorKind::TimedOut.into()));
        assert_eq!(DefaultClassifier.classify(&io), Outcome::Failure);
        let ok: Result<(), Error<std::io::Error>> = Ok(());
        assert_eq!(DefaultClassifier.classify(&ok), Outcome::Success);
    }
}
