//! Adversarial probes of `PipelineMiddleware` in a `reqwest_middleware` chain whose last
//! middleware answers from a script instead of the network, so time is tokio's paused
//! time: cancellation in a retry's wait, `Retry-After` values a hostile or broken server
//! sends, the retry's deadline, and what the breaker counts.
#![cfg(feature = "reqwest-middleware")]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::Extensions;
use palisade::AsRejected;
use palisade::Rejected;
use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
use palisade::http::middleware::PipelineMiddleware;
use palisade::pipeline::Pipeline;
use palisade::rate_limiter::RateLimiter;
use palisade::retry::{Backoff, GiveUp, Retry, RetryBudget};
use palisade::telemetry::{Event, EventKind};
use palisade::timeout::Timeout;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tokio::time::Instant;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One scripted answer: a status and an optional `Retry-After`, after a delay.
#[derive(Clone)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    delay: Duration,
}

fn status(status: u16) -> Reply {
    Reply {
        status,
        retry_after: None,
        delay: Duration::ZERO,
    }
}

fn with_retry_after(code: u16, value: &str) -> Reply {
    Reply {
        retry_after: Some(value.to_owned()),
        ..status(code)
    }
}

/// The end of the chain: answers each request with the next scripted reply (200 when the
/// script is empty), never touching the network.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    hits: Arc<AtomicUsize>,
}

impl Script {
    fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        let script = Script::default();
        script.replies.lock().unwrap().extend(replies);
        script
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn end(
        &self,
    ) -> impl for<'a> Fn(
        reqwest::Request,
        &'a mut Extensions,
        Next<'a>,
    ) -> BoxFuture<'a, reqwest_middleware::Result<reqwest::Response>>
    + Send
    + Sync
    + 'static {
        let script = self.clone();
        move |_req, _extensions, _next| {
            script.hits.fetch_add(1, Ordering::SeqCst);
            let reply = script
                .replies
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| status(200));
            Box::pin(async move {
                if !reply.delay.is_zero() {
                    tokio::time::sleep(reply.delay).await;
                }
                let mut resp = http::Response::builder().status(reply.status);
                if let Some(after) = reply.retry_after {
                    resp = resp.header("retry-after", after);
                }
                Ok(reqwest::Response::from(resp.body("").unwrap()))
            })
        }
    }
}

fn chain(middleware: impl Middleware, script: &Script) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .with(script.end())
        .build()
}

/// The delays the retry scheduled and the reasons it gave up, as its events said.
#[derive(Clone, Default)]
struct Seen {
    delays: Arc<Mutex<Vec<Duration>>>,
    gave_up: Arc<Mutex<Vec<GiveUp>>>,
}

impl Seen {
    fn listener(&self) -> impl Fn(&Event) + Send + Sync + 'static {
        let seen = self.clone();
        move |e: &Event| match e.kind() {
            EventKind::RetryScheduled { delay, .. } => seen.delays.lock().unwrap().push(delay),
            EventKind::RetryGaveUp { reason, .. } => seen.gave_up.lock().unwrap().push(reason),
            _ => {}
        }
    }
}

const URL: &str = "http://palisade.invalid/";

#[tokio::test(start_paused = true)]
async fn dropping_the_call_in_its_retry_wait_gives_the_budget_token_back() {
    let script = Script::new([status(503)]);
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_secs(10)))
            .budget(RetryBudget::new(Duration::from_secs(10), 1, 0.01))
            .build()
            .unwrap(),
    );
    let client = chain(PipelineMiddleware::from(retry.clone()), &script);
    let before = retry.metrics().budget_left.unwrap();

    // The 503 schedules a retry 10 s away; the caller gives up after 1 s of it.
    let mut send = Box::pin(client.get(URL).send());
    let cut = tokio::time::timeout(Duration::from_secs(1), &mut send).await;
    assert!(cut.is_err(), "still waiting");
    let during = retry.metrics().budget_left.unwrap();
    assert!(
        during < before - 0.5,
        "the waiting retry holds a token: {during}"
    );
    drop(send);
    assert_eq!(script.hits(), 1, "the retry never started");

    let m = retry.metrics();
    assert_eq!(m.retries, 0);
    let after = m.budget_left.unwrap();
    assert!(
        after > before - 0.5,
        "the token of the retry that did not start came back: {before} -> {after}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_http_date_retry_after_is_honoured_and_capped_by_max_hint() {
    let in_an_hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3_600));
    let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(31));
    let script = Script::new([
        with_retry_after(503, &in_an_hour),
        with_retry_after(429, &soon),
    ]);
    let seen = Seen::default();
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(100)))
            .max_hint(Duration::from_secs(60))
            .listener(seen.listener())
            .build()
            .unwrap(),
    );
    let client = chain(PipelineMiddleware::from(retry), &script);

    let resp = client.get(URL).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(script.hits(), 3);
    let delays = seen.delays.lock().unwrap().clone();
    assert_eq!(delays.len(), 2);
    assert_eq!(delays[0], Duration::from_secs(60), "an hour, capped");
    // A date has whole seconds and the wall clock moved on a little: 29 s to 31 s.
    assert!(
        delays[1] >= Duration::from_secs(29) && delays[1] <= Duration::from_secs(31),
        "{:?}",
        delays[1]
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_negative_and_past_retry_after_values_fall_back_to_the_backoff() {
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3_600));
    for value in [
        "-5",
        "1.5",
        "0x10",
        "soon",
        "1e3",
        "+3",
        "",
        "Mon, 32 Foo 2015 99:99:99 GMT",
        past.as_str(),
    ] {
        let script = Script::new([with_retry_after(503, value)]);
        let seen = Seen::default();
        let retry = Retry::new(
            Retry::builder()
                .max_attempts(2)
                .backoff(Backoff::constant(Duration::from_millis(100)))
                .listener(seen.listener())
                .build()
                .unwrap(),
        );
        let client = chain(PipelineMiddleware::from(retry), &script);
        let resp = client.get(URL).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{value:?}");
        assert_eq!(
            *seen.delays.lock().unwrap(),
            [Duration::from_millis(100)],
            "{value:?}: no hint, the backoff's delay"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_capped_and_one_past_the_deadline_ends_the_call_at_once() {
    // Beyond u64 seconds: saturates, then max_hint caps it.
    let script = Script::new([with_retry_after(503, "999999999999999999999999999")]);
    let seen = Seen::default();
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(2)
            .max_hint(Duration::from_secs(2))
            .listener(seen.listener())
            .build()
            .unwrap(),
    );
    let client = chain(PipelineMiddleware::from(retry), &script);
    assert_eq!(client.get(URL).send().await.unwrap().status(), 200);
    assert_eq!(*seen.delays.lock().unwrap(), [Duration::from_secs(2)]);

    // Retry-After 30 s against a 10 s deadline: the 503 comes back now, not in 30 s.
    let script = Script::new([with_retry_after(503, "30")]);
    let seen = Seen::default();
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .max_hint(Duration::from_secs(60))
            .deadline(Duration::from_secs(10))
            .listener(seen.listener())
            .build()
            .unwrap(),
    );
    let client = chain(PipelineMiddleware::from(retry), &script);
    let started = Instant::now();
    let resp = client.get(URL).send().await.unwrap();
    assert_eq!(resp.status(), 503, "the response as it was");
    assert_eq!(resp.headers()["retry-after"], "30");
    assert_eq!(script.hits(), 1);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no sleep toward the deadline"
    );
    assert_eq!(*seen.gave_up.lock().unwrap(), [GiveUp::Deadline]);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_counts_5xx_and_timeouts_but_not_its_rate_limiters_refusals() {
    let script = Script::new([]);
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let limiter = RateLimiter::new(
        RateLimiter::builder()
            .rate(1, Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let pipeline = Pipeline::builder()
        .circuit_breaker(breaker.clone())
        .rate_limiter(limiter)
        .build();
    let client = chain(PipelineMiddleware::new(pipeline), &script);

    assert_eq!(client.get(URL).send().await.unwrap().status(), 200);
    for _ in 0..3 {
        let err = client.get(URL).send().await.unwrap_err();
        assert!(
            matches!(err.as_rejected(), Some(Rejected::RateLimited(_))),
            "{err:?}"
        );
    }
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "a refusal of our own limiter says nothing of the server"
    );
    assert_eq!(script.hits(), 1);

    tokio::time::advance(Duration::from_secs(60)).await;
    script.replies.lock().unwrap().push_back(status(502));
    assert_eq!(client.get(URL).send().await.unwrap().status(), 502);
    assert_eq!(breaker.state(), CircuitState::Open, "one 5xx opens it");

    // A timeout counts too.
    let script = Script::new([Reply {
        delay: Duration::from_secs(30),
        ..status(200)
    }]);
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let pipeline = Pipeline::builder()
        .circuit_breaker(breaker.clone())
        .timeout(Timeout::new(
            Timeout::builder()
                .duration(Duration::from_secs(1))
                .build()
                .unwrap(),
        ))
        .build();
    let client = chain(PipelineMiddleware::new(pipeline), &script);
    let err = client.get(URL).send().await.unwrap_err();
    assert!(
        err.as_rejected().is_some_and(Rejected::is_timeout),
        "{err:?}"
    );
    assert_eq!(breaker.state(), CircuitState::Open);
}
