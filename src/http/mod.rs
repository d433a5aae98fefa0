//! HTTP: which responses are failures, what `Retry-After` asks for, how to send a request
//! again, and (with `tower`) how a server sheds load.
//!
//! - [`StatusClassifier`] grades `http::Response`s by status: 5xx, 408 (Request Timeout) and
//!   429 (Too Many Requests) are failures by default, everything else a success; any code can
//!   be moved either way. Errors are graded like the [`DefaultClassifier`]: a transport error
//!   is a failure, an inner policy's rejection is ignored. Give it to a breaker
//!   (`.classify(..)`) or a retry (`.classify(..)`).
//! - [`retry_after`] reads a `Retry-After` header, in delta-seconds (`120`) or as an
//!   HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two obsolete forms RFC 9110 asks
//!   recipients to accept). A malformed value, or a date in the past, is no hint at all,
//!   never an error. [`retry_after_hint`] plugs it into a retry, which caps the delay with
//!   its `max_hint`, and gives up instead when the delay reaches past its deadline.
//! - [`CloneHttpRequest`] (with `tower`) copies an `http::Request` whose body is `Clone` (method, URI,
//!   version, headers, extensions and body), so a [`RetryLayer`](crate::retry::RetryLayer)
//!   can send it again.
//! - [`GrpcClassifier`] grades gRPC results by status code (`UNAVAILABLE`,
//!   `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED` and friends are failures), read from a
//!   trailers-only response's `grpc-status` header under a tonic client, or from the result
//!   on the closure surface.
//! - [`ShedLayer`] (with `tower`) answers the rejections of the policies under it with
//!   `503 Service Unavailable` and a `Retry-After` header (a timeout with `504 Gateway
//!   Timeout`), so a server under a bulkhead and a timeout sheds load the way clients and
//!   load balancers understand.
//!
//! # Other clients
//!
//! Clients with their own response types (reqwest, for one) use the same pieces:
//! [`StatusClassifier::with_status`] grades any response given how to read its code, and
//! [`retry_after`] takes a `HeaderMap`. reqwest's `Client` is a tower
//! `Service<reqwest::Request>`, so a retry re-sends through `reqwest::Request::try_clone`:
//! `retry.layer().cloner(|r: &reqwest::Request| r.try_clone())`. The README's reqwest recipe
//! shows the whole client (it is compiled and run as a doctest by the workspace's
//! `palisade-net` member, which depends on reqwest).
//!
//! A closure rather than an adapter type keeps reqwest out of palisade's dependencies (and
//! its version out of our semver); a request whose body is a stream has no `try_clone`, so it
//! is sent once and the retry reports [`GiveUp::NotCloneable`](crate::retry::GiveUp).
//!
//! Clients built with `reqwest_middleware` take a whole pipeline, or one policy, as one
//! middleware: see [`middleware`] (feature `reqwest-middleware`, which does depend on
//! reqwest 0.12 and reqwest-middleware 0.4). It lives here, next to the classifier and the
//! `Retry-After` reader it is built from.
//!
//! # Examples
//!
//! ```
//! use palisade::Outcome;
//! use palisade::classify::Classifier;
//! use palisade::http::{StatusClassifier, retry_after};
//! use http::{HeaderMap, HeaderValue, Response, header::RETRY_AFTER};
//! use std::time::Duration;
//!
//! let classifier = StatusClassifier::new().success(503); // a 503 here means "try later"
//! let resp = Ok::<_, palisade::Rejected>(Response::new(()));
//! assert_eq!(classifier.classify(&resp), Outcome::Success);
//! assert_eq!(classifier.outcome(502), Outcome::Failure);
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
//! assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
//! ```

mod grpc;
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod middleware;
#[cfg(feature = "tower")]
mod shed;

pub use grpc::{GrpcClassifier, WithCode};

#[cfg(feature = "tower")]
pub use shed::{ShedBody, ShedFuture, ShedLayer, ShedService};

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, Response};

use crate::classify::{Classifier, DefaultClassifier, Outcome};
use crate::error::{AsRejected, Rejected};
#[cfg(feature = "tower")]
use crate::retry::RequestCloner;

/// Grades responses by status code; see the [module docs](self).
///
/// A 500-bit set, one bit per code from 100 to 599: `Copy`, and a lookup is a shift.
///
/// # Examples
///
/// ```
/// use palisade::Outcome;
/// use palisade::http::StatusClassifier;
///
/// let c = StatusClassifier::new();
/// assert_eq!(c.outcome(200), Outcome::Success);
/// assert_eq!(c.outcome(404), Outcome::Success, "the server answered; the caller erred");
/// for failing in [408, 429, 500, 503, 599] {
///     assert_eq!(c.outcome(failing), Outcome::Failure);
/// }
/// assert_eq!(c.failure(404).outcome(404), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusClassifier {
    failures: [u64; 8],
}

impl Default for StatusClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusClassifier {
    /// 5xx, 408 and 429 are failures; everything else is a success.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::StatusClassifier;
    ///
    /// let c = StatusClassifier::new();
    /// assert_eq!(c.outcome(503), Outcome::Failure);
    /// assert_eq!(c.outcome(429), Outcome::Failure);
    /// assert_eq!(c.outcome(400), Outcome::Success);
    /// ```
    pub const fn new() -> Self {
        let mut c = StatusClassifier { failures: [0; 8] };
        let mut code = 500;
        while code < 600 {
            c = c.set(code, true);
            code += 1;
        }
        c.set(408, true).set(429, true)
    }

    const fn set(mut self, code: u16, failure: bool) -> Self {
        if code >= 100 && code < 600 {
            let i = (code - 100) as usize;
            let bit = 1u64 << (i % 64);
            if failure {
                self.failures[i / 64] |= bit;
            } else {
                self.failures[i / 64] &= !bit;
            }
        }
        self
    }

    /// Counts `code` as a failure too. Codes outside 100..=599 are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::StatusClassifier;
    ///
    /// // A service that answers 409 while it is overloaded.
    /// let c = StatusClassifier::new().failure(409);
    /// assert_eq!(c.outcome(409), Outcome::Failure);
    /// ```
    pub const fn failure(self, code: u16) -> Self {
        self.set(code, true)
    }

    /// Counts `code` as a success instead. Codes outside 100..=599 are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::StatusClassifier;
    ///
    /// // A 501 says the request is unsupported, not that the server is failing.
    /// let c = StatusClassifier::new().success(501);
    /// assert_eq!(c.outcome(501), Outcome::Success);
    /// assert_eq!(c.outcome(500), Outcome::Failure);
    /// ```
    pub const fn success(self, code: u16) -> Self {
        self.set(code, false)
    }

    /// What a response with status `code` means. Codes outside 100..=599 (which `http`
    /// cannot produce, but a raw number can) are failures: the peer is not speaking HTTP.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::StatusClassifier;
    ///
    /// let c = StatusClassifier::new();
    /// assert_eq!(c.outcome(204), Outcome::Success);
    /// assert_eq!(c.outcome(502), Outcome::Failure);
    /// assert_eq!(c.outcome(42), Outcome::Failure, "not HTTP");
    /// ```
    #[inline]
    pub const fn outcome(&self, code: u16) -> Outcome {
        if code < 100 || code >= 600 {
            return Outcome::Failure;
        }
        let i = (code - 100) as usize;
        if self.failures[i / 64] & (1u64 << (i % 64)) != 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

impl StatusClassifier {
    /// The same grading for a response type of another client, given how to read its status
    /// code.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Outcome, Rejected};
    /// use palisade::classify::Classifier;
    /// use palisade::http::StatusClassifier;
    ///
    /// struct MyResponse { code: u16 }
    /// let classifier = StatusClassifier::new().with_status(|r: &MyResponse| r.code);
    /// assert_eq!(classifier.classify(&Ok::<_, Rejected>(MyResponse { code: 503 })), Outcome::Failure);
    /// ```
    pub fn with_status<F>(self, status: F) -> WithStatus<F> {
        WithStatus {
            codes: self,
            status,
        }
    }
}

/// A [`StatusClassifier`] for any response type; from [`StatusClassifier::with_status`].
///
/// # Examples
///
/// ```
/// use palisade::http::{StatusClassifier, WithStatus};
/// use palisade::{Classifier, Error, Outcome};
///
/// struct Reply { status: u16 }
/// let classifier: WithStatus<_> = StatusClassifier::new().with_status(|r: &Reply| r.status);
/// assert_eq!(classifier.classify(&Ok::<_, Error<()>>(Reply { status: 200 })), Outcome::Success);
/// assert_eq!(classifier.classify(&Ok::<_, Error<()>>(Reply { status: 503 })), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct WithStatus<F> {
    codes: StatusClassifier,
    status: F,
}

impl<R, E, F> Classifier<R, E> for WithStatus<F>
where
    E: AsRejected,
    F: Fn(&R) -> u16,
{
    #[inline]
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        match result {
            Ok(resp) => self.codes.outcome((self.status)(resp)),
            Err(_) => Classifier::<R, E>::classify(&DefaultClassifier, result),
        }
    }

    // Errors are graded as the default classifier grades them, so their rejections are
    // found the same way: a retry with `retry_rejections` waits one out.
    #[inline]
    fn rejection<'r>(&self, result: &'r Result<R, E>) -> Option<&'r Rejected> {
        Classifier::<R, E>::rejection(&DefaultClassifier, result)
    }
}

impl<B, E: AsRejected> Classifier<Response<B>, E> for StatusClassifier {
    #[inline]
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        self.with_status(|r: &Response<B>| r.status().as_u16())
            .classify(result)
    }

    #[inline]
    fn rejection<'r>(&self, result: &'r Result<Response<B>, E>) -> Option<&'r Rejected> {
        Classifier::<Response<B>, E>::rejection(&DefaultClassifier, result)
    }
}

/// The delay a `Retry-After` header in `headers` asks for, measured from now; `None` when
/// there is none, it is malformed, or its date has passed. When a response carries several,
/// the first one is read.
///
/// # Examples
///
/// ```
/// use palisade::http::retry_after;
/// use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
/// assert_eq!(retry_after(&headers), None, "malformed: no hint, no error");
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// Parses a `Retry-After` value as of `now`: delta-seconds (`"120"`) or an HTTP-date.
///
/// # Examples
///
/// ```
/// use palisade::http::parse_retry_after;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21 07:27:50 GMT
/// assert_eq!(parse_retry_after(" 30 ", now), Some(Duration::from_secs(30)));
/// assert_eq!(
///     parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
///     Some(Duration::from_secs(10))
/// );
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), None, "past");
/// assert_eq!(parse_retry_after("-5", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds too large for u64 mean "a very long time": saturate, and let the
        // retry's max_hint cap it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok().filter(|d| !d.is_zero())
}

/// A retry [hint](crate::retry::Hint) that reads `Retry-After` from a response (an error
/// has none).
///
/// # Examples
///
/// ```
/// use palisade::http::retry_after_hint;
/// use http::Response;
///
/// let resp = Response::builder().status(503).header("retry-after", "2").body(()).unwrap();
/// let hint = retry_after_hint(&Ok::<_, palisade::Rejected>(resp));
/// assert_eq!(hint, Some(std::time::Duration::from_secs(2)));
/// ```
pub fn retry_after_hint<B, E>(result: &Result<Response<B>, E>) -> Option<Duration> {
    result.as_ref().ok().and_then(|r| retry_after(r.headers()))
}

/// Copies an `http::Request` whose body is `Clone`, extensions included.
///
/// # Examples
///
/// ```
/// use palisade::http::CloneHttpRequest;
/// use palisade::retry::RequestCloner;
///
/// let req = http::Request::post("http://svc/orders").header("x-id", "7").body("{}").unwrap();
/// let copy = CloneHttpRequest.try_clone(&req).unwrap();
/// assert_eq!((copy.method(), copy.uri(), copy.headers(), copy.body()),
///            (req.method(), req.uri(), req.headers(), req.body()));
/// ```
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneHttpRequest;

#[cfg(feature = "tower")]
impl<B: Clone> RequestCloner<http::Request<B>> for CloneHttpRequest {
    fn try_clone(&self, req: &http::Request<B>) -> Option<http::Request<B>> {
        let mut copy = http::Request::new(req.body().clone());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn retry_after_reads_every_date_form_and_ignores_garbage() {
        // Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example, in its three forms.
        let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let now = at - Duration::from_secs(60);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(form, now),
                Some(Duration::from_secs(60)),
                "{form}"
            );
        }
        for garbage in [
            "",
            "  ",
            "1.5",
            "-1",
            "0x10",
            "tomorrow",
            "Sun, 06 Nov 1994",
            "١٢",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX)),
            "saturates, for max_hint to cap"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at),
            None,
            "now is not later"
        );
    }

    #[test]
    fn status_classifier_edges() {
        let c = StatusClassifier::new();
        assert_eq!(c.outcome(499), Outcome::Success);
        assert_eq!(c.outcome(99), Outcome::Failure);
        assert_eq!(c.outcome(600), Outcome::Failure);
        assert_eq!(c.success(429).outcome(429), Outcome::Success);
        assert_eq!(c.failure(1000), c, "out of range: ignored");
        let rejected: Result<Response<()>, crate::error::Rejected> =
            Err(crate::error::CircuitOpen::isolated("cb").into());
        assert_eq!(c.classify(&rejected), Outcome::Ignore);
    }
}
