//! The Redis link: one connection manager, the scripts, the link's own breaker and the
//! round-trip timeout, shared by every fleet-wide limit built on it.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ErrorKind, RedisError, RedisResult, Value};

use super::config::{RedisConfig, redact};
use super::scripts::Scripts;
use crate::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::error::{LinkFailure, Rejected};

/// A failed round trip: why, and when the link will try again if it knows (its breaker's
/// half-open time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed {
    pub(crate) cause: LinkFailure,
    pub(crate) retry_after: Option<Duration>,
    /// Whether the command may have run in Redis though its reply never came back (a
    /// timeout, a malformed reply, a connection that died after the command was written):
    /// false only when no attempt can have reached the server, or the server answered with
    /// an error.
    pub(crate) may_have_run: bool,
}

impl Failed {
    /// Counts and reports this failed round trip as decided by `mode` (count first, then
    /// the listener: a panicking listener leaves the count right) and returns the decision
    /// for the caller to carry out.
    pub(crate) fn decide(
        self,
        mode: super::config::FailMode,
        counts: &FailCounts,
        telemetry: &crate::telemetry::Telemetry,
    ) -> crate::telemetry::FailDecision {
        use super::config::FailMode;
        use crate::telemetry::FailDecision;
        let (count, decided) = match mode {
            FailMode::Closed => (&counts.closed, FailDecision::Refused),
            FailMode::Local { .. } => (&counts.local, FailDecision::Local),
            _ => (&counts.open, FailDecision::Admitted),
        };
        // Relaxed: statistics.
        count.fetch_add(1, Ordering::Relaxed);
        telemetry.emit(|| crate::telemetry::EventKind::LinkFailed {
            cause: self.cause,
            decided,
        });
        decided
    }
}

/// The calls a fleet-wide limiter could not get decided by Redis, by what its fail mode
/// decided: its `failed_open`, `failed_closed` and `decided_locally` metrics.
#[derive(Debug, Default)]
pub(crate) struct FailCounts {
    open: AtomicU64,
    closed: AtomicU64,
    local: AtomicU64,
}

impl FailCounts {
    /// (admitted unchecked, refused, decided by the local share); Relaxed: statistics, each
    /// read on its own.
    pub(crate) fn read(&self) -> (u64, u64, u64) {
        (
            self.open.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
            self.local.load(Ordering::Relaxed),
        )
    }
}

pub(crate) struct LinkShared {
    pub(crate) config: RedisConfig,
    // Made on first use, inside the runtime: the connection manager spawns a task when
    // built, so building it in `RedisLink::new` would tie the link to a runtime at
    // construction (and panic outside one). Dropped after a connection failure, so the next
    // round trip makes a new one (see `round_trip`). The number tells managers apart.
    conn: Mutex<(u64, Option<ConnectionManager>)>,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) scripts: Scripts,
    round_trips: AtomicU64,
    failures: AtomicU64,
    // The last failure's text, for the health report and `last_failure` (never on the
    // decision path: written only when a round trip fails).
    last_failure: Mutex<Option<(LinkFailure, String)>>,
}

impl LinkShared {
    pub(crate) fn new(config: RedisConfig) -> Self {
        LinkShared {
            breaker: CircuitBreaker::new(config.breaker.clone()),
            config,
            conn: Mutex::new((0, None)),
            scripts: Scripts::new(),
            round_trips: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }

    /// The current connection manager and its number, made now if there is none, and
    /// whether it was made now (a fresh connection).
    fn connection(&self) -> Result<(u64, ConnectionManager, bool), (LinkFailure, String)> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = &slot.1 {
            return Ok((slot.0, conn.clone(), false));
        }
        // No retries inside the manager: a refused connection fails its round trip at once
        // (as "connection failed", not as a timeout), the next round trip connects again,
        // and the link's breaker, not the manager's backoff, decides how often a dead
        // server is tried.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.round_trip_timeout))
            .set_number_of_retries(0);
        let made =
            ConnectionManager::new_lazy_with_config(self.config.client.clone(), manager_config)
                .map_err(|e| (LinkFailure::Connection, describe(&e)))?;
        slot.0 += 1;
        slot.1 = Some(made.clone());
        Ok((slot.0, made, true))
    }

    /// Drops connection manager number `n` if it is still the current one: the redis
    /// crate's manager reconnects by itself only after an I/O error on a command, and keeps
    /// a connection whose handshake failed (a refused password, a read-only replica after a
    /// failover) or whose driver task died with the runtime that spawned it for ever.
    fn drop_connection(&self, n: u64) {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if slot.0 == n {
            slot.1 = None;
        }
    }

    /// One round trip through the link's breaker and timeout; `parse` reads the reply, and a
    /// reply it refuses counts as a failed round trip like any other.
    ///
    /// Dropped before it ends, it records nothing (the breaker's permit is dropped
    /// unrecorded), so a caller's cancellation never counts against the link.
    pub(crate) async fn round_trip<Fut, T>(
        &self,
        send: impl Fn(ConnectionManager) -> Fut,
        parse: impl FnOnce(&Value) -> Result<T, LinkFailure>,
    ) -> Result<T, Failed>
    where
        Fut: Future<Output = RedisResult<Value>>,
    {
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => {
                return Err(Failed {
                    cause: LinkFailure::BreakerOpen,
                    retry_after: Rejected::retry_after(&rejected),
                    may_have_run: false,
                });
            }
        };
        let deadline = tokio::time::Instant::now() + self.config.round_trip_timeout;
        // A connection kept from before may be stale (its server restarted, its runtime
        // gone, its handshake failed): one that fails is dropped and, within the same
        // deadline, one fresh connection is tried before the round trip counts as failed.
        let outcome;
        // Sticky across attempts: a stale connection that died after the command was
        // written may have run it, whatever the fresh one then does.
        let mut may_have_run = false;
        loop {
            let (n, conn, fresh) = match self.connection() {
                Ok(made) => made,
                Err(failed) => {
                    outcome = Err(failed);
                    break;
                }
            };
            // Relaxed: a statistic, read on its own.
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            outcome = match tokio::time::timeout_at(deadline, send(conn)).await {
                Ok(Ok(reply)) => parse(&reply).map_err(|cause| {
                    may_have_run = true;
                    (
                        cause,
                        format!("malformed reply: {}", short(&format!("{reply:?}"))),
                    )
                }),
                Ok(Err(e)) => {
                    let cause = classify(&e);
                    // A refused connection or handshake carried no command, and a server
                    // error is the command's own answer; any other I/O failure may have
                    // come after the command was written.
                    if cause != LinkFailure::Server
                        && !e.is_connection_refusal()
                        && !stale_connection(&e)
                    {
                        may_have_run = true;
                    }
                    if cause == LinkFailure::Connection || stale_connection(&e) {
                        self.drop_connection(n);
                        if !fresh {
                            continue;
                        }
                    }
                    Err((cause, describe(&e)))
                }
                Err(_) => {
                    may_have_run = true;
                    Err((
                        LinkFailure::Timeout,
                        format!("no reply within {:?}", self.config.round_trip_timeout),
                    ))
                }
            };
            break;
        }
        match outcome {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err((cause, text)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some((cause, text));
                // The breaker's listener runs here, after everything above is recorded.
                permit.failure();
                Err(Failed {
                    cause,
                    retry_after: None,
                    may_have_run,
                })
            }
        }
    }

    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn last_failure(&self) -> Option<(LinkFailure, String)> {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.breaker.state()
    }
}

impl fmt::Debug for LinkShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLink")
            .field("url", &self.config.url())
            .field("state", &self.breaker.state())
            .field("round_trips", &self.round_trips())
            .field("failures", &self.failures())
            .finish()
    }
}

/// Whether an error says the connection itself is unusable though it is up: a refused or
/// missing password, or a replica that now refuses writes.
fn stale_connection(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::Server(::redis::ServerErrorKind::ReadOnly)
    ) || e
        .code()
        .is_some_and(|code| matches!(code, "NOAUTH" | "WRONGPASS" | "READONLY"))
}

/// Which kind of failure a redis error is.
pub(crate) fn classify(e: &RedisError) -> LinkFailure {
    if e.is_timeout() {
        LinkFailure::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        LinkFailure::Connection
    } else {
        match e.kind() {
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => LinkFailure::MalformedReply,
            ErrorKind::Server(_) | ErrorKind::Extension => LinkFailure::Server,
            _ => LinkFailure::Connection,
        }
    }
}

/// A redis error as text for the health report: the crate's message, with anything that
/// looks like a URL redacted (the redis crate does not quote URLs in errors today; this
/// keeps a future message from leaking a password).
pub(crate) fn describe(e: &RedisError) -> String {
    let text = e.to_string();
    let redacted: Vec<String> = text
        .split(' ')
        .map(|word| {
            if word.contains("://") {
                redact(word)
            } else {
                word.to_string()
            }
        })
        .collect();
    short(&redacted.join(" ")).to_string()
}

fn short(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// A link shared by the limits built on it.
pub(crate) type Link = Arc<LinkShared>;
