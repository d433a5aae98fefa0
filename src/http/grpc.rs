//! gRPC outcomes: which status codes are failures.

use http::Response;

use crate::classify::{Classifier, DefaultClassifier, Outcome};
use crate::error::{AsRejected, Rejected};

/// gRPC status codes, as numbers (tonic's `Code as i32`).
mod code {
    pub(super) const CANCELLED: i32 = 1;
    pub(super) const UNKNOWN: i32 = 2;
    pub(super) const DEADLINE_EXCEEDED: i32 = 4;
    pub(super) const PERMISSION_DENIED: i32 = 7;
    pub(super) const RESOURCE_EXHAUSTED: i32 = 8;
    pub(super) const ABORTED: i32 = 10;
    pub(super) const UNIMPLEMENTED: i32 = 12;
    pub(super) const INTERNAL: i32 = 13;
    pub(super) const UNAVAILABLE: i32 = 14;
    pub(super) const DATA_LOSS: i32 = 15;
    pub(super) const UNAUTHENTICATED: i32 = 16;
}

/// Grades gRPC results by status code.
///
/// By default `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`,
/// `INTERNAL`, `UNKNOWN` and `DATA_LOSS` are failures (the server or the path to it is in
/// trouble); `CANCELLED` is ignored (the caller gave up, which says nothing of the server);
/// every other code, `OK` included, is a success: `NOT_FOUND` or `INVALID_ARGUMENT` is a
/// healthy server answering a bad request. Codes can be moved with
/// [`failure`](Self::failure), [`success`](Self::success) and [`ignore`](Self::ignore).
///
/// # Where the status is
///
/// gRPC sends a status in the response's trailers, or, for a call that fails before any
/// message, in its headers ("trailers-only", how servers answer `UNAVAILABLE` and most
/// errors). Under a tonic client (as a tower layer over a `Channel`), a policy sees the HTTP
/// response before its body is read: this classifier reads `grpc-status` from the headers
/// and grades a `200` response without one as a success (its status comes in the
/// trailers, after the policy has let go). A response with another HTTP status and no
/// `grpc-status` (a proxy's bare `503` when it has no healthy upstream) is graded as the
/// code gRPC maps that status to, as tonic reports it: `429`, `502`, `503` and `504` as
/// `UNAVAILABLE`, `400` as `INTERNAL`, `401` as `UNAUTHENTICATED`, `403` as
/// `PERMISSION_DENIED`, `404` as `UNIMPLEMENTED`, any other as `UNKNOWN`. A `grpc-status`
/// other than `0` to `16` written plainly (`00`, `+5`, `17`, garbage) is graded as
/// `UNKNOWN`, which is what tonic reports for it.
///
/// On the closure surface, where tonic has already turned every status into
/// `Result<_, tonic::Status>`, use [`with_code`](Self::with_code) to read the code from the
/// result.
///
/// # Examples
///
/// ```
/// use palisade::{Outcome, Rejected};
/// use palisade::classify::Classifier;
/// use palisade::http::GrpcClassifier;
///
/// let grpc = GrpcClassifier::new();
/// let unavailable = http::Response::builder().header("grpc-status", "14").body(()).unwrap();
/// assert_eq!(grpc.classify(&Ok::<_, Rejected>(unavailable)), Outcome::Failure);
/// assert_eq!(grpc.outcome(5), Outcome::Success, "NOT_FOUND: the server is fine");
/// assert_eq!(grpc.outcome(1), Outcome::Ignore, "CANCELLED by the caller");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    failures: u32,
    ignored: u32,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

const fn bit(code: i32) -> u32 {
    if code >= 0 && code < 32 { 1 << code } else { 0 }
}

impl GrpcClassifier {
    /// The default grading; see the type's docs.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::GrpcClassifier;
    ///
    /// let grpc = GrpcClassifier::new();
    /// assert_eq!(grpc.outcome(0), Outcome::Success, "OK");
    /// assert_eq!(grpc.outcome(14), Outcome::Failure, "UNAVAILABLE");
    /// ```
    pub const fn new() -> Self {
        GrpcClassifier {
            failures: bit(code::UNKNOWN)
                | bit(code::DEADLINE_EXCEEDED)
                | bit(code::RESOURCE_EXHAUSTED)
                | bit(code::ABORTED)
                | bit(code::INTERNAL)
                | bit(code::UNAVAILABLE)
                | bit(code::DATA_LOSS),
            ignored: bit(code::CANCELLED),
        }
    }

    /// Counts `code` as a failure.
    ///
    /// Codes outside `0..=16` are not gRPC codes: they are always graded a failure, and
    /// naming one here changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::GrpcClassifier;
    ///
    /// // FAILED_PRECONDITION (9) from a server whose state is broken.
    /// assert_eq!(GrpcClassifier::new().failure(9).outcome(9), Outcome::Failure);
    /// ```
    pub const fn failure(mut self, code: i32) -> Self {
        self.failures |= bit(code);
        self.ignored &= !bit(code);
        self
    }

    /// Counts `code` as a success.
    ///
    /// Codes outside `0..=16` are not gRPC codes: they are always graded a failure, and
    /// naming one here changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::GrpcClassifier;
    ///
    /// // RESOURCE_EXHAUSTED (8) as a quota answer, not an outage.
    /// assert_eq!(GrpcClassifier::new().success(8).outcome(8), Outcome::Success);
    /// ```
    pub const fn success(mut self, code: i32) -> Self {
        self.failures &= !bit(code);
        self.ignored &= !bit(code);
        self
    }

    /// Ignores `code`: not counted, not retried.
    ///
    /// Codes outside `0..=16` are not gRPC codes: they are always graded a failure, and
    /// naming one here changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::GrpcClassifier;
    ///
    /// // DEADLINE_EXCEEDED (4) set by the caller's own short deadline.
    /// assert_eq!(GrpcClassifier::new().ignore(4).outcome(4), Outcome::Ignore);
    /// ```
    pub const fn ignore(mut self, code: i32) -> Self {
        self.failures &= !bit(code);
        self.ignored |= bit(code);
        self
    }

    /// What status `code` means. Codes gRPC does not define (outside 0..=16) are failures.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::http::GrpcClassifier;
    ///
    /// let grpc = GrpcClassifier::new();
    /// assert_eq!(grpc.outcome(5), Outcome::Success, "NOT_FOUND");
    /// assert_eq!(grpc.outcome(1), Outcome::Ignore, "CANCELLED");
    /// assert_eq!(grpc.outcome(99), Outcome::Failure, "not a gRPC code");
    /// ```
    #[inline]
    pub const fn outcome(&self, code: i32) -> Outcome {
        if code < 0 || code > 16 || self.failures & bit(code) != 0 {
            Outcome::Failure
        } else if self.ignored & bit(code) != 0 {
            Outcome::Ignore
        } else {
            Outcome::Success
        }
    }

    /// The same grading for results of any type, given the status code of a result (0 for
    /// `OK`).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Outcome;
    /// use palisade::classify::Classifier;
    /// use palisade::http::GrpcClassifier;
    ///
    /// // With tonic: `|r: &Result<Response<T>, Status>| r.as_ref().map_or_else(|s| s.code() as i32, |_| 0)`.
    /// struct Status(i32);
    /// let grpc = GrpcClassifier::new()
    ///     .with_code(|r: &Result<&str, Status>| r.as_ref().map_or_else(|s| s.0, |_| 0));
    /// assert_eq!(grpc.classify(&Err(Status(14))), Outcome::Failure);
    /// assert_eq!(grpc.classify(&Ok("SERVING")), Outcome::Success);
    /// ```
    pub fn with_code<F>(self, code: F) -> WithCode<F> {
        WithCode { codes: self, code }
    }
}

impl<B, E: AsRejected> Classifier<Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(resp) => match resp.headers().get("grpc-status") {
                None => match from_http_status(resp.status().as_u16()) {
                    Some(code) => self.outcome(code),
                    None => Outcome::Success,
                },
                Some(v) => self.outcome(read_code(v.as_bytes())),
            },
            Err(_) => Classifier::<Response<B>, E>::classify(&DefaultClassifier, result),
        }
    }

    // As `StatusClassifier`: errors are the default classifier's, rejections included.
    #[inline]
    fn rejection<'r>(&self, result: &'r Result<Response<B>, E>) -> Option<&'r Rejected> {
        Classifier::<Response<B>, E>::rejection(&DefaultClassifier, result)
    }
}

/// A `grpc-status` value as tonic reads it, byte for byte: `0` to `16` written plainly,
/// and anything else (`00`, `+5`, `17`, garbage) `UNKNOWN`, the code the caller then sees.
const fn read_code(value: &[u8]) -> i32 {
    match *value {
        [d @ b'0'..=b'9'] => (d - b'0') as i32,
        [b'1', d @ b'0'..=b'6'] => 10 + (d - b'0') as i32,
        _ => code::UNKNOWN,
    }
}

/// The code gRPC gives a response that has no `grpc-status` in its headers, from its HTTP
/// status (gRPC's `http-grpc-status-mapping.md`, which tonic follows); `None` for `200`,
/// whose status comes in the trailers.
const fn from_http_status(status: u16) -> Option<i32> {
    match status {
        200 => None,
        400 => Some(code::INTERNAL),
        401 => Some(code::UNAUTHENTICATED),
        403 => Some(code::PERMISSION_DENIED),
        404 => Some(code::UNIMPLEMENTED),
        429 | 502 | 503 | 504 => Some(code::UNAVAILABLE),
        _ => Some(code::UNKNOWN),
    }
}

/// A [`GrpcClassifier`] for any result type; from [`GrpcClassifier::with_code`].
#[derive(Debug, Clone, Copy)]
pub struct WithCode<F> {
    codes: GrpcClassifier,
    code: F,
}

impl<R, E, F> Classifier<R, E> for WithCode<F>
where
    F: Fn(&Result<R, E>) -> i32,
{
    #[inline]
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        self.codes.outcome((self.code)(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_move_between_failure_success_and_ignore() {
        let g = GrpcClassifier::new();
        for failing in [2, 4, 8, 10, 13, 14, 15, 17, -1] {
            assert_eq!(g.outcome(failing), Outcome::Failure, "{failing}");
        }
        for fine in [0, 3, 5, 6, 7, 9, 11, 12, 16] {
            assert_eq!(g.outcome(fine), Outcome::Success, "{fine}");
        }
        assert_eq!(g.outcome(1), Outcome::Ignore);
        assert_eq!(g.success(14).outcome(14), Outcome::Success);
        assert_eq!(g.failure(1).outcome(1), Outcome::Failure);
        assert_eq!(g.ignore(13).outcome(13), Outcome::Ignore);
        let garbled = http::Response::builder()
            .header("grpc-status", "fourteen")
            .body(())
            .unwrap();
        assert_eq!(
            g.classify(&Ok::<_, crate::error::Rejected>(garbled)),
            Outcome::Failure
        );
    }

    #[test]
    fn a_grpc_status_that_is_not_a_canonical_code_is_graded_as_unknown() {
        // tonic reads `grpc-status` byte for byte ("0" to "16"); anything else reaches the
        // caller as UNKNOWN. Parsed as a number, "00" and "+0" were graded OK and "01" as
        // CANCELLED (ignored), while the caller got an UNKNOWN failure.
        let g = GrpcClassifier::new();
        let with = |g: GrpcClassifier, status: &str| {
            let resp = http::Response::builder()
                .header("grpc-status", status)
                .body(())
                .unwrap();
            g.classify(&Ok::<_, crate::error::Rejected>(resp))
        };
        for odd in [
            "00", "+0", "01", "+5", "05", "-0", "0x0", "016", "17", "fourteen", "",
        ] {
            assert_eq!(with(g, odd), Outcome::Failure, "{odd:?}");
            assert_eq!(
                with(g.ignore(2), odd),
                Outcome::Ignore,
                "{odd:?} is UNKNOWN"
            );
        }
        for (canonical, outcome) in [
            ("0", Outcome::Success),
            ("1", Outcome::Ignore),
            ("5", Outcome::Success),
            ("14", Outcome::Failure),
            ("16", Outcome::Success),
        ] {
            assert_eq!(with(g, canonical), outcome, "{canonical:?}");
        }
    }

    #[test]
    fn a_non_200_answer_without_grpc_status_is_graded_as_grpc_maps_it() {
        // An L7 proxy in front of an overloaded server (envoy's "no healthy upstream")
        // answers a bare 503 with no `grpc-status`: tonic reports UNAVAILABLE, gRPC's
        // HTTP-to-status mapping says so. Graded a success, a breaker over the channel
        // never opened on it.
        let g = GrpcClassifier::new();
        let bare = |status: u16| {
            let resp = http::Response::builder().status(status).body(()).unwrap();
            g.classify(&Ok::<_, crate::error::Rejected>(resp))
        };
        for unavailable in [429, 502, 503, 504] {
            assert_eq!(bare(unavailable), Outcome::Failure, "{unavailable}");
        }
        assert_eq!(bare(400), Outcome::Failure, "INTERNAL");
        assert_eq!(bare(500), Outcome::Failure, "UNKNOWN");
        assert_eq!(bare(401), Outcome::Success, "UNAUTHENTICATED: the caller's");
        assert_eq!(bare(403), Outcome::Success, "PERMISSION_DENIED");
        assert_eq!(bare(404), Outcome::Success, "UNIMPLEMENTED");
        assert_eq!(
            bare(200),
            Outcome::Success,
            "the status comes in the trailers"
        );
        let quota = GrpcClassifier::new().success(14);
        let resp = http::Response::builder().status(503).body(()).unwrap();
        assert_eq!(
            quota.classify(&Ok::<_, crate::error::Rejected>(resp)),
            Outcome::Success,
            "graded as the code it maps to, so moving the code moves it"
        );
        let trailers_only = http::Response::builder()
            .status(503)
            .header("grpc-status", "0")
            .body(())
            .unwrap();
        assert_eq!(
            g.classify(&Ok::<_, crate::error::Rejected>(trailers_only)),
            Outcome::Success,
            "a grpc-status header wins, as in tonic"
        );
    }
}
