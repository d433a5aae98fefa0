//! Server-side load shedding: rejections become `503`, `429` or `504` responses with
//! `Retry-After`.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::{AsRejected, LimitCause, Rejected};

/// Turns the errors of the services under it into responses, so a server's policies shed
/// load in the terms clients and load balancers understand:
///
/// - an open circuit or a full bulkhead becomes `503 Service Unavailable` with
///   `Retry-After`: the rejection's own [`retry_after`](Rejected::retry_after) where it has
///   one (an open breaker knows when it will probe), else the layer's default (1 s), in whole
///   seconds rounded up;
/// - a rate limiter's refusal becomes `429 Too Many Requests` with `Retry-After` when the
///   call would be admitted (rounded up to whole seconds; the layer's default when the
///   refusal does not say); a cost above the limiter's burst, which waiting never admits,
///   also gets `429`, without `Retry-After` (map it to `413` with your own layer if clients
///   should read it as "too large");
/// - a per-key bulkhead's refusal (one caller's own concurrent calls, a session limit:
///   [`BulkheadFull::per_key`](crate::error::BulkheadFull::per_key)) is that caller's
///   doing, not the server's load: `429` too, with the layer's default `Retry-After`; a
///   [`TooManyKeys`](crate::error::TooManyKeys) refusal is the server's: `503`; so is an
///   [`Unavailable`](crate::error::Unavailable) one (a fleet-wide limit failing closed
///   because its store is down), with its `retry_after` when the link's breaker knows it;
/// - a timeout becomes `504 Gateway Timeout` (no `Retry-After`: the server is not saying it
///   is overloaded, only that this call took too long);
/// - any other error becomes `500 Internal Server Error`.
///
/// The statuses can be changed ([`overload_status`](Self::overload_status),
/// [`rate_limited_status`](Self::rate_limited_status),
/// [`timeout_status`](Self::timeout_status)).
///
/// Its error type is `Infallible`, as axum's `Router::layer` and hyper require. Put it
/// outermost, above [`timeout.layer()`](crate::timeout::Timeout::layer) and
/// [`bulkhead.layer()`](crate::bulkhead::Bulkhead::layer), with a
/// [`LiftLayer`](crate::LiftLayer) innermost when the handlers' error type cannot hold a
/// rejection (axum's is `Infallible`). Responses have an empty body by default; with
/// [`body`](Self::body) they say why, in plain text or as RFC 9457 problem details
/// (`application/problem+json`). The response body type needs `Default + From<String>`
/// (`String`, axum's `Body`, `http_body_util::Full<Bytes>` all qualify).
///
/// A readiness error from the inner service is kept and answered by the next `call`, so the
/// server stays up.
///
/// # Examples
///
/// ```
/// use palisade::http::ShedLayer;
/// use palisade::{Error, LiftLayer, bulkhead::Bulkhead};
/// use std::convert::Infallible;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[cfg(feature = "tokio")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
/// let held = bulkhead.try_acquire()?; // the only slot is busy
/// let mut server = ServiceBuilder::new()
///     .layer(ShedLayer::new())
///     .layer(bulkhead.layer())
///     .layer(LiftLayer)
///     .service_fn(|_req: http::Request<()>| async {
///         Ok::<_, Infallible>(http::Response::new(String::from("hello")))
///     });
/// let resp = server.ready().await?.call(http::Request::new(())).await?;
/// assert_eq!(resp.status(), 503);
/// assert_eq!(resp.headers()["retry-after"], "1");
/// # drop(held);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "tokio"))] fn main() {}
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ShedLayer {
    retry_after: Duration,
    overload: StatusCode,
    limited: StatusCode,
    timeout: StatusCode,
    body: ShedBody,
}

/// What the body of a shed response says; see [`ShedLayer::body`].
///
/// # Examples
///
/// ```
/// use palisade::http::{ShedBody, ShedLayer};
///
/// let layer = ShedLayer::new().body(ShedBody::ProblemJson);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ShedBody {
    /// No body (the default).
    #[default]
    Empty,
    /// The rejection's message as `text/plain; charset=utf-8`, for example
    /// `circuit breaker "payments" is open`.
    Text,
    /// RFC 9457 problem details as `application/problem+json`: `type`, `title`, `status`
    /// and `detail` (the rejection's message).
    ProblemJson,
}

impl Default for ShedLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ShedLayer {
    /// A layer whose `Retry-After` is 1 s when a rejection does not say.
    pub const fn new() -> Self {
        ShedLayer {
            retry_after: Duration::from_secs(1),
            overload: StatusCode::SERVICE_UNAVAILABLE,
            limited: StatusCode::TOO_MANY_REQUESTS,
            timeout: StatusCode::GATEWAY_TIMEOUT,
            body: ShedBody::Empty,
        }
    }

    /// The status for an open circuit or a full bulkhead. Default `503 Service Unavailable`.
    pub const fn overload_status(mut self, status: StatusCode) -> Self {
        self.overload = status;
        self
    }

    /// The status for a rate limiter's refusal. Default `429 Too Many Requests`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::http::ShedLayer;
    /// use http::StatusCode;
    ///
    /// let layer = ShedLayer::new().rate_limited_status(StatusCode::SERVICE_UNAVAILABLE);
    /// # let _ = layer;
    /// ```
    pub const fn rate_limited_status(mut self, status: StatusCode) -> Self {
        self.limited = status;
        self
    }

    /// The status for a timeout. Default `504 Gateway Timeout`.
    pub const fn timeout_status(mut self, status: StatusCode) -> Self {
        self.timeout = status;
        self
    }

    /// What the body of a shed response says. Default [`ShedBody::Empty`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::http::{ShedBody, ShedLayer};
    /// use palisade::{LiftLayer, timeout::Timeout};
    /// use std::{convert::Infallible, time::Duration};
    /// use tower::{Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let timeout = Timeout::new(Timeout::builder().duration(Duration::from_millis(10)).build()?);
    /// let mut server = ServiceBuilder::new()
    ///     .layer(ShedLayer::new().body(ShedBody::ProblemJson))
    ///     .layer(timeout.layer())
    ///     .layer(LiftLayer)
    ///     .service_fn(|_req: http::Request<()>| async {
    ///         tokio::time::sleep(Duration::from_secs(1)).await;
    ///         Ok::<_, Infallible>(http::Response::new(String::new()))
    ///     });
    /// let resp = server.ready().await?.call(http::Request::new(())).await?;
    /// assert_eq!(resp.status(), 504);
    /// assert_eq!(resp.headers()["content-type"], "application/problem+json");
    /// assert!(resp.body().contains(r#""status":504"#));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub const fn body(mut self, body: ShedBody) -> Self {
        self.body = body;
        self
    }

    /// The `Retry-After` for overload rejections that do not carry one (a full bulkhead); a
    /// timeout's 504 has none.
    /// Sent in whole seconds, rounded up; zero sends `0` ("retry now").
    pub const fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
        self
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = ShedService<S>;

    fn layer(&self, inner: S) -> ShedService<S> {
        ShedService {
            inner,
            layer: *self,
            not_ready: None,
        }
    }
}

/// The service of a [`ShedLayer`].
pub struct ShedService<S> {
    inner: S,
    layer: ShedLayer,
    /// A readiness error, already graded (`Some(None)`: not a rejection), for the next call.
    not_ready: Option<Option<Rejected>>,
}

impl<S: Clone> Clone for ShedService<S> {
    fn clone(&self) -> Self {
        // A kept readiness error belongs to this handle's next call, not to a clone.
        ShedService {
            inner: self.inner.clone(),
            layer: self.layer,
            not_ready: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ShedService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S> ShedService<S> {
    /// Wraps `inner` (what [`ShedLayer::layer`](Layer::layer) does).
    pub fn new(inner: S, layer: ShedLayer) -> Self {
        layer.layer(inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl ShedLayer {
    /// The response for an error: see the type's docs.
    fn answer<B: Default + From<String>>(&self, error: Option<&Rejected>) -> Response<B> {
        let (status, retry_after) = match error {
            Some(Rejected::Timeout(_)) => (self.timeout, None),
            // A cost above the burst gets no Retry-After: waiting never admits it.
            Some(Rejected::RateLimited(limited)) => (
                self.limited,
                match limited.cause() {
                    LimitCause::CostAboveBurst => None,
                    _ => Some(limited.retry_after().unwrap_or(self.retry_after)),
                },
            ),
            // One caller's own concurrency (a per-key bulkhead): too many requests of its
            // own, not an overloaded server.
            Some(Rejected::BulkheadFull(full)) if full.per_key() => {
                (self.limited, Some(self.retry_after))
            }
            Some(rejected) => (
                self.overload,
                Some(rejected.retry_after().unwrap_or(self.retry_after)),
            ),
            None => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let detail = match error {
            Some(rejected) => rejected.to_string(),
            None => String::from("the service failed"),
        };
        let mut resp = match self.body {
            ShedBody::Empty => Response::new(B::default()),
            ShedBody::Text => {
                let mut resp = Response::new(B::from(detail));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                resp
            }
            ShedBody::ProblemJson => {
                let json = format!(
                    r#"{{"type":"about:blank","title":"{}","status":{},"detail":"{}"}}"#,
                    json_escape(status.canonical_reason().unwrap_or("")),
                    status.as_u16(),
                    json_escape(&detail),
                );
                let mut resp = Response::new(B::from(json));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                resp
            }
        };
        *resp.status_mut() = status;
        if let Some(after) = retry_after {
            // Saturating: the layer's default may be as long as `Duration::MAX`, whose
            // seconds rounded up do not fit (a wrap would say "retry now").
            let secs = after
                .as_secs()
                .saturating_add(u64::from(after.subsec_nanos() > 0));
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// `text` as the inside of a JSON string: policy names are the user's, and may hold quotes.
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

impl<S, Req, B> Service<Req> for ShedService<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: AsRejected,
    B: Default + From<String>,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_none() {
            if let Err(e) = ready!(self.inner.poll_ready(cx)) {
                self.not_ready = Some(e.as_rejected().copied());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let state = match self.not_ready.take() {
            Some(graded) => Answer::Now { graded },
            None => Answer::Inner {
                fut: self.inner.call(req),
            },
        };
        ShedFuture {
            state,
            layer: self.layer,
        }
    }
}

pin_project! {
    /// The response future of a [`ShedService`].
    pub struct ShedFuture<F> {
        #[pin]
        state: Answer<F>,
        layer: ShedLayer,
    }
}

pin_project! {
    #[project = AnswerProj]
    enum Answer<F> {
        Inner { #[pin] fut: F },
        Now { graded: Option<Rejected> },
    }
}

impl<F> fmt::Debug for ShedFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedFuture").finish_non_exhaustive()
    }
}

impl<F, E, B> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: AsRejected,
    B: Default + From<String>,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let graded = match this.state.project() {
            AnswerProj::Inner { fut } => match ready!(fut.poll(cx)) {
                Ok(resp) => return Poll::Ready(Ok(resp)),
                Err(e) => e.as_rejected().copied(),
            },
            AnswerProj::Now { graded } => *graded,
        };
        Poll::Ready(Ok(this.layer.answer(graded.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BulkheadFull, CircuitOpen, Elapsed, FullCause, LimitCause, RateLimited};

    fn answer(layer: ShedLayer, error: Option<Rejected>) -> Response<String> {
        layer.answer(error.as_ref())
    }

    #[test]
    fn each_rejection_gets_its_status_and_retry_after() {
        let layer = ShedLayer::new();
        let timeout = answer(
            layer,
            Some(Elapsed::new("db", Duration::from_secs(2)).into()),
        );
        assert_eq!(timeout.status(), 504);
        assert!(timeout.headers().get(RETRY_AFTER).is_none());

        let open = CircuitOpen::new("db", Duration::from_millis(5_200));
        let open = answer(layer, Some(open.into()));
        assert_eq!(open.status(), 503);
        assert_eq!(open.headers()[RETRY_AFTER], "6", "rounded up");

        let full = BulkheadFull::new("pool", 4, FullCause::QueueFull);
        let full = answer(layer, Some(full.into()));
        assert_eq!(full.status(), 503);
        assert_eq!(full.headers()[RETRY_AFTER], "1", "the layer's default");
        assert_eq!(full.body(), "", "no body unless asked");

        assert_eq!(answer(layer, None).status(), 500);

        let custom = ShedLayer::new()
            .overload_status(StatusCode::TOO_MANY_REQUESTS)
            .timeout_status(StatusCode::SERVICE_UNAVAILABLE);
        let full = BulkheadFull::new("pool", 4, FullCause::QueueFull);
        assert_eq!(answer(custom, Some(full.into())).status(), 429);
        let late = Elapsed::new("db", Duration::from_secs(2));
        assert_eq!(answer(custom, Some(late.into())).status(), 503);

        let limited = RateLimited::new(
            "api",
            LimitCause::OverRate,
            Some(Duration::from_millis(1_500)),
        );
        let limited = answer(layer, Some(limited.into()));
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()[RETRY_AFTER], "2", "rounded up");
        let never = RateLimited::new("api", LimitCause::CostAboveBurst, None);
        let never = answer(layer, Some(never.into()));
        assert_eq!(never.status(), 429);
        assert!(
            never.headers().get(RETRY_AFTER).is_none(),
            "waiting never helps"
        );
        let limited = RateLimited::new("api", LimitCause::OverRate, Some(Duration::from_secs(1)));
        let as_503 = ShedLayer::new().rate_limited_status(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer(as_503, Some(limited.into())).status(), 503);
    }

    #[test]
    fn the_longest_default_retry_after_is_sent_without_overflow() {
        // Rounding `Duration::MAX` up to whole seconds overflowed: a panic in a debug build,
        // and `Retry-After: 0` ("retry now") in a release one.
        let layer = ShedLayer::new().retry_after(Duration::MAX);
        let full = BulkheadFull::new("pool", 4, FullCause::QueueFull);
        let full = answer(layer, Some(full.into()));
        assert_eq!(full.headers()[RETRY_AFTER], u64::MAX.to_string().as_str());
    }

    #[test]
    fn bodies_name_the_reason_in_text_or_problem_details() {
        let open = Rejected::from(CircuitOpen::isolated("pay\"ments\\"));
        let text = answer(ShedLayer::new().body(ShedBody::Text), Some(open));
        assert_eq!(text.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(text.body(), &open.to_string());

        let json = answer(ShedLayer::new().body(ShedBody::ProblemJson), Some(open));
        assert_eq!(json.headers()[CONTENT_TYPE], "application/problem+json");
        let parsed: serde_json::Value = serde_json::from_str(json.body()).unwrap();
        assert_eq!(parsed["status"], 503);
        assert_eq!(parsed["title"], "Service Unavailable");
        assert_eq!(parsed["type"], "about:blank");
        assert_eq!(
            parsed["detail"],
            open.to_string(),
            "quotes in names survive"
        );
        assert_eq!(json_escape("a\nb"), "a\\u000ab");
    }
}
