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

/// `Ok` is a success; an open circuit or a full bulkhead inside the error is ignored; every
/// other error, timeouts included, is a failure.
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

/// A classifier borrowed: classifies as the one it points to. For the policies that hold a
/// classifier and lend it to the futures of one call (a pipeline's retry and breaker).
#[derive(Debug)]
pub(crate) struct ByRef<'a, Cl>(pub(crate) &'a Cl);

impl<T, E, Cl: Classifier<T, E>> Classifier<T, E> for ByRef<'_, Cl> {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.0.classify(result)
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
