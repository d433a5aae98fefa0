//! A [`Pipeline`], or one policy, as a [`reqwest_middleware::Middleware`]: callers keep
//! `client.get(url).send().await`, and the policies run around every request.
//!
//! # Semantics
//!
//! [`PipelineMiddleware`] runs its pipeline's policies in the pipeline's order (see
//! [`pipeline`](crate::pipeline)) around the rest of the middleware chain and the client:
//!
//! - **Responses are graded by status** with a [`StatusClassifier`] (by default 5xx, 408 and
//!   429 are failures; change it with [`statuses`](PipelineMiddleware::statuses)). A failing
//!   response counts against the breaker and is retried, and if the retry gives up, the caller
//!   gets that last response as the `Ok` it was: a 503 stays a 503, never an error. Transport
//!   errors are failures; a rejection by a palisade middleware further down the chain is
//!   ignored by the breaker and not retried, as with tower layers.
//! - **Retries re-send** a copy of the request made with [`reqwest::Request::try_clone`]
//!   before each attempt, through a clone of the rest of the chain, so the middleware below
//!   runs once per attempt. A request whose body is a stream cannot be copied: it is sent
//!   once, and the retry's [`RetryGaveUp`](crate::telemetry::EventKind::RetryGaveUp) event
//!   says [`GiveUp::NotCloneable`](crate::retry::GiveUp) if it failed.
//! - **`Retry-After`** on a failing response sets the delay before the next attempt (read with
//!   [`retry_after`]), capped by the retry's
//!   [`max_hint`](crate::retry::RetryConfigBuilder::max_hint); a delay that reaches past the
//!   retry's deadline ends the call with that response instead.
//! - **The timeout** covers an attempt until the response's headers arrive (what the chain
//!   returns), not the reading of its body.
//! - **A rejection** (open breaker, full bulkhead, timeout) comes out as
//!   `reqwest_middleware::Error::Middleware` holding the [`Rejected`]; [`AsRejected`] finds it
//!   again (`err.as_rejected()`), and so do the policies of a palisade middleware above this
//!   one.
//!
//! A pipeline built with
//! [`build_in_order`](crate::pipeline::PipelineBuilder::build_in_order) runs in that order,
//! with two differences: each attempt gets a copy of the request's extensions
//! (what the middleware below writes into them does not come back up), and a request that
//! cannot be copied runs through the pipeline without its retry. `Retry-After` is not read
//! there.
//!
//! # Examples
//!
//! ```no_run
//! use palisade::http::middleware::PipelineMiddleware;
//! use palisade::pipeline::Pipeline;
//! use palisade::{circuit_breaker::CircuitBreaker, retry::Retry, timeout::{Timeout, TimeoutConfig}};
//! use reqwest_middleware::ClientBuilder;
//! use std::time::Duration;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::builder()
//!     .retry(Retry::new(Retry::builder().max_attempts(3).build()?))
//!     .circuit_breaker(CircuitBreaker::new(CircuitBreaker::builder().build()?))
//!     .timeout(Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(2)).build()?))
//!     .build();
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(PipelineMiddleware::new(pipeline))
//!     .build();
//! let resp = client.get("http://localhost:8080/orders").send().await?;
//! println!("{}", resp.status());
//! # Ok(())
//! # }
//! ```
//!
//! One policy alone is a pipeline of one: `PipelineMiddleware::from(retry)`, and likewise
//! for a [`CircuitBreaker`], a [`Bulkhead`] or a [`Timeout`].
//!
//! # Order among other middleware
//!
//! Middleware runs in the order it is added, the first one outermost. What is added before
//! this one sees each call once (its final response or error); what is added after it runs
//! once per attempt, inside the timeout and the bulkhead slot. So add tracing of the whole
//! call and anything that must see the caller's result before it, and per-attempt concerns
//! after it: auth headers that must be fresh on a retry, per-attempt logging.
//!
//! # Allocation
//!
//! `reqwest_middleware::Middleware::handle` returns a boxed future (the trait is written with
//! `async_trait`), so every request through this middleware makes one heap allocation for it,
//! on top of the one `Next::run` makes for the rest of the chain. This is a documented
//! exception to the crate's no-allocation rule, which holds for the policies themselves: the
//! future inside the box is the policies' own, unboxed.
//!
//! # Cancellation
//!
//! Dropping the `send()` future drops the attempt in flight (releasing its bulkhead slot and
//! its breaker permit, counting nothing) or the retry's sleep (giving back the budget token of
//! the retry that did not start), as with [`Pipeline::run`].
//!
//! # Clone semantics
//!
//! The middleware holds clones of the policies' handles, so it shares their state (breaker,
//! slots, budget, counters) with every other clone: the breaker of a reqwest client and of a
//! tower stack built from one handle is one breaker. Cloning the middleware shares it too.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use super::{StatusClassifier, retry_after};
use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::CircuitBreaker;
use crate::classify::{DefaultClassifier, Outcome};
use crate::clock::{Clock, DefaultClock};
use crate::error::{AsRejected, Rejected};
use crate::pipeline::Pipeline;
use crate::retry::{self, Attempts, Retry, Verdict};
use crate::timeout::Timeout;
use crate::timer::{DefaultTimer, Timer};

/// A [`Pipeline`]'s policies around every request of a `reqwest_middleware` client; see the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use palisade::http::middleware::PipelineMiddleware;
/// use palisade::retry::Retry;
/// use reqwest_middleware::ClientBuilder;
///
/// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(PipelineMiddleware::from(retry))
///     .build();
/// # let _ = client;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct PipelineMiddleware<T = DefaultTimer, C = DefaultClock> {
    pipeline: Pipeline<T, C>,
    statuses: StatusClassifier,
}

impl<T, C> PipelineMiddleware<T, C> {
    /// Runs `pipeline`'s policies around every request, grading responses with
    /// [`StatusClassifier::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::http::middleware::PipelineMiddleware;
    /// use palisade::{bulkhead::Bulkhead, pipeline::Pipeline};
    ///
    /// let pipeline = Pipeline::builder()
    ///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(16).build()?))
    ///     .build();
    /// let middleware = PipelineMiddleware::new(pipeline);
    /// assert!(middleware.pipeline().bulkhead().is_some());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(pipeline: Pipeline<T, C>) -> Self {
        PipelineMiddleware {
            pipeline,
            statuses: StatusClassifier::new(),
        }
    }

    /// Grades responses with `statuses` instead: which status codes are failures that the
    /// breaker counts and the retry retries.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::http::{StatusClassifier, middleware::PipelineMiddleware};
    /// use palisade::{Outcome, retry::Retry};
    ///
    /// let retry = Retry::new(Retry::builder().build()?);
    /// // This service answers 409 while a resource is being created: worth another try.
    /// let middleware = PipelineMiddleware::from(retry).statuses(StatusClassifier::new().failure(409));
    /// assert_eq!(middleware.status_classifier().outcome(409), Outcome::Failure);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn statuses(mut self, statuses: StatusClassifier) -> Self {
        self.statuses = statuses;
        self
    }

    /// The pipeline whose policies run around each request.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::http::middleware::PipelineMiddleware;
    /// use palisade::timeout::{Timeout, TimeoutConfig};
    /// use std::time::Duration;
    ///
    /// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?);
    /// let middleware = PipelineMiddleware::from(timeout);
    /// assert!(middleware.pipeline().retry().is_none());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn pipeline(&self) -> &Pipeline<T, C> {
        &self.pipeline
    }

    /// How responses are graded.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::http::{StatusClassifier, middleware::PipelineMiddleware};
    /// use palisade::pipeline::Pipeline;
    ///
    /// let middleware = PipelineMiddleware::new(Pipeline::builder().build());
    /// assert_eq!(*middleware.status_classifier(), StatusClassifier::new());
    /// ```
    pub fn status_classifier(&self) -> &StatusClassifier {
        &self.statuses
    }
}

impl<T, C> From<Pipeline<T, C>> for PipelineMiddleware<T, C> {
    fn from(pipeline: Pipeline<T, C>) -> Self {
        Self::new(pipeline)
    }
}

impl<T, C: Clone> From<Retry<T, C>> for PipelineMiddleware<T, C> {
    /// A retry alone, with its own clock for its deadline.
    fn from(retry: Retry<T, C>) -> Self {
        let clock = retry.clock().clone();
        Self::new(
            crate::pipeline::PipelineBuilder::with_clock(clock)
                .retry(retry)
                .build(),
        )
    }
}

impl<C: Default> From<CircuitBreaker<C>> for PipelineMiddleware<DefaultTimer, C> {
    /// A breaker alone (with no retry, the pipeline never reads its clock).
    fn from(breaker: CircuitBreaker<C>) -> Self {
        Self::new(
            crate::pipeline::PipelineBuilder::with_clock(C::default())
                .circuit_breaker(breaker)
                .build(),
        )
    }
}

impl<T> From<Bulkhead<T>> for PipelineMiddleware<T, DefaultClock> {
    /// A bulkhead alone.
    fn from(bulkhead: Bulkhead<T>) -> Self {
        Self::new(
            crate::pipeline::PipelineBuilder::with_clock(DefaultClock::default())
                .bulkhead(bulkhead)
                .build(),
        )
    }
}

impl<T> From<Timeout<T>> for PipelineMiddleware<T, DefaultClock> {
    /// A timeout alone.
    fn from(timeout: Timeout<T>) -> Self {
        Self::new(
            crate::pipeline::PipelineBuilder::with_clock(DefaultClock::default())
                .timeout(timeout)
                .build(),
        )
    }
}

impl<T, C: Clock> fmt::Debug for PipelineMiddleware<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineMiddleware")
            .field("pipeline", &self.pipeline)
            .field("statuses", &self.statuses)
            .finish()
    }
}

// ===== impl Middleware =====

impl<T, C> Middleware for PipelineMiddleware<T, C>
where
    T: Timer + Clone,
    T::Sleep: Send,
    C: Clock + Clone,
{
    // What `#[async_trait]` would write: the one box per request is this `Box::pin`.
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.run(req, extensions, next))
    }
}

/// How an attempt ended, as the policies see it: a response graded a failure travels as an
/// `Err`, so the breaker counts it and the retry retries it, and comes back out as the `Ok`
/// it was.
enum Failed {
    Status(Response),
    Error(reqwest_middleware::Error),
}

impl From<Rejected> for Failed {
    fn from(rejected: Rejected) -> Self {
        Failed::Error(rejected.into())
    }
}

impl AsRejected for Failed {
    fn as_rejected(&self) -> Option<&Rejected> {
        match self {
            Failed::Error(e) => e.as_rejected(),
            Failed::Status(_) => None,
        }
    }
}

/// One attempt down the rest of the chain.
async fn send(
    next: Next<'_>,
    req: Request,
    extensions: &mut Extensions,
    statuses: StatusClassifier,
) -> Result<Response, Failed> {
    match next.run(req, extensions).await {
        Ok(resp) if statuses.outcome(resp.status().as_u16()) == Outcome::Failure => {
            Err(Failed::Status(resp))
        }
        Ok(resp) => Ok(resp),
        Err(e) => Err(Failed::Error(e)),
    }
}

impl<T, C> PipelineMiddleware<T, C>
where
    T: Timer + Clone,
    C: Clock + Clone,
{
    async fn run(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let p = &self.pipeline;
        let out = match p.retry() {
            _ if p.is_custom_order() => self.run_custom(req, extensions, next).await,
            Some(retry) => self.run_retried(retry, req, extensions, next).await,
            None => {
                p.attempt(|| send(next, req, extensions, self.statuses), None)
                    .await
            }
        };
        match out {
            Ok(resp) | Err(Failed::Status(resp)) => Ok(resp),
            Err(Failed::Error(e)) => Err(e),
        }
    }

    /// The recommended order: the retry's bookkeeping (the same as its `run` and its tower
    /// layer), around the pipeline's attempt, with the request copied before each send.
    async fn run_retried(
        &self,
        retry: &Retry<T, C>,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response, Failed> {
        let p = &self.pipeline;
        let timed = retry.config().deadline().is_some();
        let mut attempts = Attempts::new();
        let mut started = None;
        loop {
            // Copied before it is sent, as the tower layer does: the body may be gone after.
            let copy = req.try_clone();
            // Read after the retry's own reading at its first attempt, as `Pipeline::run`
            // does, so an attempt the retry starts with time left has time left here.
            if retry.begin(&mut attempts) == 1 && timed {
                started = Some(p.clock().now());
            }
            let attempt = || send(next.clone(), req, &mut *extensions, self.statuses);
            let out = p.attempt(attempt, started).await;
            let verdict = Verdict::of(&DefaultClassifier, &out, retry.retry_rejections());
            let hint = match (verdict, &out) {
                (Verdict::Retry { after: None }, Err(Failed::Status(resp))) => {
                    retry_after(resp.headers())
                }
                _ => None,
            };
            match retry.next(&mut attempts, verdict, out.is_err(), hint, copy.is_some()) {
                retry::Next::Return => return out,
                retry::Next::RetryAfter(delay) => {
                    drop(out);
                    if !delay.is_zero() {
                        attempts.sleep(retry.timer().sleep(delay));
                        poll_fn(|cx| attempts.poll_sleep(cx)).await;
                    }
                    let Some(copy) = copy else {
                        unreachable!("the retry gives up on a request it cannot copy");
                    };
                    req = copy;
                }
            }
        }
    }

    /// A custom order, through [`Pipeline::run`]; see the module docs.
    async fn run_custom(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response, Failed> {
        let once;
        let p = match req.try_clone() {
            None if self.pipeline.retry().is_some() => {
                once = self.pipeline.without_retry();
                &once
            }
            _ => &self.pipeline,
        };
        let mut original = Some(req);
        let shared = &*extensions;
        p.run(|| {
            // Every attempt but the last possible one sends a copy.
            let req = match original.as_ref().and_then(Request::try_clone) {
                Some(copy) => copy,
                None => original
                    .take()
                    .expect("a request that cannot be copied is sent once"),
            };
            let mut extensions = shared.clone();
            let next = next.clone();
            let statuses = self.statuses;
            async move { send(next, req, &mut extensions, statuses).await }
        })
        .await
    }
}
