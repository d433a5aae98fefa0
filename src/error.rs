//! The crate's error model: one rejection type for every policy, a wrapper for callers whose
//! error type cannot absorb it, and the error returned by config builders.
//!
//! # Why one type
//!
//! Every policy keeps the caller's error type `E` and turns its own rejections into it with
//! `E: From<Rejected>`. Stacking any number of policies, in any order, therefore leaves the
//! error type unchanged: one `impl From<Rejected> for MyError` serves the whole crate.
//! [`AsRejected`] goes the other way, so classifiers can tell a rejection from an error of the
//! called service once both live inside `E`.
//!
//! Callers who cannot implement `From<Rejected>` (foreign error types such as
//! `std::io::Error`, because of the orphan rule) have two paths that need no impl at all:
//! - `tower::BoxError` (`Box<dyn Error + Send + Sync>`): std's blanket `From<E: Error>`
//!   already covers [`Rejected`], and [`AsRejected`] finds it again by downcasting;
//! - [`Error<E>`], which holds either a [`Rejected`] or the inner `E`.
//!
//! [`ConfigError`] never appears at run time: it only comes out of a config builder's `build()`
//! (or from deserialising a config) and names the field, the rule it broke and the value.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A call that a policy refused or cut short.
///
/// Each variant wraps a small `Copy` struct that says which policy acted and what the caller
/// needs to react (for example how long to wait before trying again).
///
/// # Examples
///
/// ```
/// use palisade::{Rejected, error::Elapsed};
/// use std::time::Duration;
///
/// let rejected = Rejected::from(Elapsed::new("search", Duration::from_millis(250)));
/// assert!(rejected.is_timeout());
/// assert_eq!(rejected.policy_name(), "search");
/// assert_eq!(rejected.to_string(), "policy `search`: timed out after 250ms");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// A timeout policy cut the call short.
    #[error(transparent)]
    Timeout(#[from] Elapsed),
    /// A circuit breaker refused the call because it is open.
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    /// A bulkhead refused the call because it had no free slot.
    #[error(transparent)]
    BulkheadFull(#[from] BulkheadFull),
    /// A rate limiter refused the call: over its rate, or a cost above its burst.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// A per-key policy had no room for a new key: every key it keeps is in use.
    #[error(transparent)]
    TooManyKeys(#[from] TooManyKeys),
    /// A fleet-wide limit could not reach the store that keeps it (Redis) and its fail mode
    /// is to refuse: not "over the limit" but "the limit cannot be checked".
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl Rejected {
    /// The name of the policy that rejected the call.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, error::CircuitOpen};
    ///
    /// let rejected = Rejected::from(CircuitOpen::isolated("payments"));
    /// assert_eq!(rejected.policy_name(), "payments");
    /// ```
    pub const fn policy_name(&self) -> &'static str {
        match self {
            Rejected::Timeout(e) => e.policy_name(),
            Rejected::CircuitOpen(e) => e.policy_name(),
            Rejected::BulkheadFull(e) => e.policy_name(),
            Rejected::RateLimited(e) => e.policy_name(),
            Rejected::TooManyKeys(e) => e.policy_name(),
            Rejected::Unavailable(e) => e.policy_name(),
        }
    }

    /// How long the caller should wait before the same call can be admitted, when the policy
    /// knows.
    ///
    /// An open breaker knows when it will half-open, and a rate limiter when the call would be
    /// admitted; a timeout or a full bulkhead does not.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, error::CircuitOpen};
    /// use std::time::Duration;
    ///
    /// let rejected = Rejected::from(CircuitOpen::new("payments", Duration::from_secs(3)));
    /// assert_eq!(rejected.retry_after(), Some(Duration::from_secs(3)));
    /// ```
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejected::Timeout(_) => None,
            Rejected::CircuitOpen(e) => e.retry_after(),
            Rejected::BulkheadFull(_) => None,
            Rejected::RateLimited(e) => e.retry_after(),
            Rejected::TooManyKeys(_) => None,
            Rejected::Unavailable(e) => e.retry_after(),
        }
    }

    /// Whether this is a timeout.
    ///
    /// Timeouts are failures of the called service (it was too slow); the other rejections are
    /// load shedding by a policy and are ignored by the default classifiers of other policies.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, error::Elapsed};
    /// use std::time::Duration;
    ///
    /// assert!(Rejected::from(Elapsed::new("db", Duration::from_secs(1))).is_timeout());
    /// ```
    pub const fn is_timeout(&self) -> bool {
        matches!(self, Rejected::Timeout(_))
    }
}

/// A timeout policy gave up waiting for the call.
///
/// # Examples
///
/// ```
/// use palisade::error::Elapsed;
/// use std::time::Duration;
///
/// let elapsed = Elapsed::new("search", Duration::from_secs(2));
/// assert_eq!(elapsed.duration(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("policy `{policy}`: timed out after {duration:?}")]
pub struct Elapsed {
    policy: &'static str,
    duration: Duration,
}

impl Elapsed {
    /// A timeout of `duration` by the policy named `policy`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, error::Elapsed};
    /// use std::time::Duration;
    ///
    /// let rejected = Rejected::from(Elapsed::new("search", Duration::from_millis(800)));
    /// assert!(rejected.is_timeout());
    /// ```
    pub const fn new(policy: &'static str, duration: Duration) -> Self {
        Elapsed { policy, duration }
    }

    /// The name of the timeout policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::Elapsed;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Elapsed::new("search", Duration::from_secs(1)).policy_name(), "search");
    /// ```
    pub const fn policy_name(&self) -> &'static str {
        self.policy
    }

    /// The duration the call was given before it was cut short.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::Elapsed;
    /// use std::time::Duration;
    ///
    /// let elapsed = Elapsed::new("search", Duration::from_millis(250));
    /// assert_eq!(elapsed.duration(), Duration::from_millis(250));
    /// ```
    pub const fn duration(&self) -> Duration {
        self.duration
    }
}

/// A circuit breaker refused the call because it is open.
///
/// # Examples
///
/// ```
/// use palisade::error::CircuitOpen;
/// use std::time::Duration;
///
/// let open = CircuitOpen::new("payments", Duration::from_millis(1500));
/// assert_eq!(open.retry_after(), Some(Duration::from_millis(1500)));
/// assert!(!open.is_isolated());
/// assert!(CircuitOpen::isolated("payments").retry_after().is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("policy `{policy}`: circuit open{}", OpenFor(*.retry_after))]
pub struct CircuitOpen {
    policy: &'static str,
    // `None` while the breaker is isolated by hand: nobody knows when it will close.
    retry_after: Option<Duration>,
}

struct OpenFor(Option<Duration>);

impl fmt::Display for OpenFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, ", retry after {d:?}"),
            None => f.write_str(" (isolated)"),
        }
    }
}

impl CircuitOpen {
    /// An open breaker named `policy` that will admit a probe in `retry_after`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::CircuitOpen;
    /// use std::time::Duration;
    ///
    /// let open = CircuitOpen::new("payments", Duration::from_secs(5));
    /// assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
    /// assert!(!open.is_isolated());
    /// ```
    pub const fn new(policy: &'static str, retry_after: Duration) -> Self {
        CircuitOpen {
            policy,
            retry_after: Some(retry_after),
        }
    }

    /// A breaker named `policy` held open by hand, with no time at which it will close.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::CircuitOpen;
    ///
    /// let open = CircuitOpen::isolated("payments");
    /// assert!(open.is_isolated());
    /// assert_eq!(open.retry_after(), None);
    /// ```
    pub const fn isolated(policy: &'static str) -> Self {
        CircuitOpen {
            policy,
            retry_after: None,
        }
    }

    /// The name of the circuit breaker.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::CircuitOpen;
    ///
    /// assert_eq!(CircuitOpen::isolated("payments").policy_name(), "payments");
    /// ```
    pub const fn policy_name(&self) -> &'static str {
        self.policy
    }

    /// The time left until the breaker half-opens, or `None` while it is isolated.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use palisade::Rejected;
    /// use std::time::Duration;
    ///
    /// let config = CircuitBreaker::builder()
    ///     .consecutive_failures(1)
    ///     .break_duration(Duration::from_secs(30))
    ///     .build()?;
    /// let breaker = CircuitBreaker::new(config);
    /// breaker.try_acquire()?.failure();
    /// let Err(Rejected::CircuitOpen(open)) = breaker.try_acquire() else { unreachable!() };
    /// // The time left of the 30 s break.
    /// let left = open.retry_after().unwrap();
    /// assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(31));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the breaker was isolated (forced open) by hand.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use palisade::Rejected;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// breaker.isolate();
    /// let Err(Rejected::CircuitOpen(open)) = breaker.try_acquire() else { unreachable!() };
    /// assert!(open.is_isolated());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub const fn is_isolated(&self) -> bool {
        self.retry_after.is_none()
    }
}

/// Why a bulkhead refused a call.
///
/// # Examples
///
/// ```
/// use palisade::error::{BulkheadFull, FullCause};
///
/// let full = BulkheadFull::new("db", 8, FullCause::WaitTimedOut);
/// assert_eq!(full.cause(), FullCause::WaitTimedOut);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FullCause {
    /// Every slot was taken and the queue was full (or the bulkhead has no queue).
    QueueFull,
    /// The call waited in the queue for the bulkhead's `max_wait` without getting a slot.
    WaitTimedOut,
}

/// A bulkhead refused the call because all of its slots were taken.
///
/// # Examples
///
/// ```
/// use palisade::error::{BulkheadFull, FullCause};
///
/// let full = BulkheadFull::new("db", 8, FullCause::QueueFull);
/// assert_eq!(full.max_concurrent(), 8);
/// assert_eq!(full.to_string(), "policy `db`: bulkhead full (8 concurrent calls, queue full)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("policy `{policy}`: bulkhead full ({max_concurrent} concurrent calls, {})", match .cause {
    FullCause::QueueFull => "queue full",
    FullCause::WaitTimedOut => "wait timed out",
})]
pub struct BulkheadFull {
    policy: &'static str,
    max_concurrent: u32,
    cause: FullCause,
    per_key: bool,
}

impl BulkheadFull {
    /// A full bulkhead named `policy` with a limit of `max_concurrent` calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, error::{BulkheadFull, FullCause}};
    ///
    /// let rejected = Rejected::from(BulkheadFull::new("db", 4, FullCause::QueueFull));
    /// assert!(matches!(rejected, Rejected::BulkheadFull(_)));
    /// ```
    pub const fn new(policy: &'static str, max_concurrent: u32, cause: FullCause) -> Self {
        BulkheadFull {
            policy,
            max_concurrent,
            cause,
            per_key: false,
        }
    }

    /// The same refusal, by one key's bulkhead in a [`Keyed`](crate::keyed::Keyed) map: a
    /// limit on one caller's own concurrent calls (a session limit), which
    /// [`ShedLayer`](crate::http::ShedLayer) answers with 429 rather than 503.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{BulkheadFull, FullCause};
    ///
    /// let full = BulkheadFull::new("sessions", 2, FullCause::QueueFull).for_key();
    /// assert!(full.per_key());
    /// ```
    pub const fn for_key(self) -> Self {
        BulkheadFull {
            per_key: true,
            ..self
        }
    }

    /// Whether one key's bulkhead refused the call (see [`for_key`](Self::for_key)).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{BulkheadFull, FullCause};
    ///
    /// assert!(!BulkheadFull::new("db", 4, FullCause::QueueFull).per_key());
    /// ```
    pub const fn per_key(&self) -> bool {
        self.per_key
    }

    /// The name of the bulkhead.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{BulkheadFull, FullCause};
    ///
    /// assert_eq!(BulkheadFull::new("db", 4, FullCause::QueueFull).policy_name(), "db");
    /// ```
    pub const fn policy_name(&self) -> &'static str {
        self.policy
    }

    /// The bulkhead's limit on concurrent calls when it refused this one.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, bulkhead::Bulkhead};
    ///
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let _slot = bulkhead.try_acquire()?;
    /// let Err(Rejected::BulkheadFull(full)) = bulkhead.try_acquire() else { unreachable!() };
    /// assert_eq!(full.max_concurrent(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }

    /// Whether the queue was full or the wait ran out.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{BulkheadFull, FullCause};
    ///
    /// let full = BulkheadFull::new("db", 4, FullCause::WaitTimedOut);
    /// assert_eq!(full.cause(), FullCause::WaitTimedOut);
    /// ```
    pub const fn cause(&self) -> FullCause {
        self.cause
    }
}

/// Why a rate limiter refused a call.
///
/// # Examples
///
/// ```
/// use palisade::error::{LimitCause, RateLimited};
/// use std::time::Duration;
///
/// let limited = RateLimited::new("api", LimitCause::OverRate, Some(Duration::from_millis(40)));
/// assert_eq!(limited.cause(), LimitCause::OverRate);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitCause {
    /// Over the rate: the call would be admitted after [`RateLimited::retry_after`], longer
    /// than the caller waits.
    OverRate,
    /// The call's cost is above the limiter's burst: it is never admitted, however long the
    /// caller waits.
    CostAboveBurst,
}

/// A rate limiter refused the call.
///
/// # Examples
///
/// ```
/// use palisade::{Rejected, error::{LimitCause, RateLimited}};
/// use std::time::Duration;
///
/// let limited = RateLimited::new("api", LimitCause::OverRate, Some(Duration::from_millis(40)));
/// assert_eq!(Rejected::from(limited).retry_after(), Some(Duration::from_millis(40)));
/// assert_eq!(limited.to_string(), "policy `api`: rate limited, retry after 40ms");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("policy `{policy}`: {}", match (self.cause(), self.retry_after()) {
    (LimitCause::CostAboveBurst, _) => "cost above the burst, never admitted".to_string(),
    (_, Some(after)) => format!("rate limited, retry after {after:?}"),
    (_, None) => "rate limited".to_string(),
})]
pub struct RateLimited {
    policy: &'static str,
    // Nanoseconds until the call would be admitted, or one of the two marks below: a
    // rejection travels in every caller's error type, so it stays a name and a word.
    retry_after_ns: u64,
}

/// `retry_after_ns` of a cost above the burst.
const NEVER: u64 = u64::MAX;
/// `retry_after_ns` of a refusal over the rate whose wait is not known.
const UNKNOWN: u64 = u64::MAX - 1;

impl RateLimited {
    /// A refusal by the rate limiter named `policy`; `retry_after` is when the same call
    /// would be admitted (none for [`LimitCause::CostAboveBurst`], which never is).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{LimitCause, RateLimited};
    ///
    /// let never = RateLimited::new("api", LimitCause::CostAboveBurst, None);
    /// assert_eq!(never.retry_after(), None);
    /// ```
    pub const fn new(
        policy: &'static str,
        cause: LimitCause,
        retry_after: Option<Duration>,
    ) -> Self {
        match (cause, retry_after) {
            (LimitCause::CostAboveBurst, _) => RateLimited::from_nanos(policy, None),
            (LimitCause::OverRate, None) => RateLimited {
                policy,
                retry_after_ns: UNKNOWN,
            },
            (LimitCause::OverRate, Some(d)) => {
                RateLimited::from_nanos(policy, Some(crate::clock::saturating_nanos(d)))
            }
        }
    }

    /// As [`new`](Self::new), from the limiter's own figure: `Some(nanoseconds)` until the
    /// call would be admitted, or `None` for a cost above the burst. No `Duration` on the
    /// way: a refusal is a hot path too, under overload.
    #[inline]
    pub(crate) const fn from_nanos(policy: &'static str, retry_after_ns: Option<u64>) -> Self {
        let retry_after_ns = match retry_after_ns {
            None => NEVER,
            Some(ns) if ns >= UNKNOWN => UNKNOWN - 1,
            Some(ns) => ns,
        };
        RateLimited {
            policy,
            retry_after_ns,
        }
    }

    /// The name of the rate limiter.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{LimitCause, RateLimited};
    ///
    /// assert_eq!(RateLimited::new("api", LimitCause::OverRate, None).policy_name(), "api");
    /// ```
    pub const fn policy_name(&self) -> &'static str {
        self.policy
    }

    /// Why the call was refused.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{LimitCause, RateLimited};
    ///
    /// let never = RateLimited::new("api", LimitCause::CostAboveBurst, None);
    /// assert_eq!(never.cause(), LimitCause::CostAboveBurst);
    /// ```
    pub const fn cause(&self) -> LimitCause {
        if self.retry_after_ns == NEVER {
            LimitCause::CostAboveBurst
        } else {
            LimitCause::OverRate
        }
    }

    /// How long until the same call would be admitted; `None` for a cost above the burst.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{LimitCause, RateLimited};
    /// use std::time::Duration;
    ///
    /// let limited = RateLimited::new("api", LimitCause::OverRate, Some(Duration::from_secs(1)));
    /// assert_eq!(limited.retry_after(), Some(Duration::from_secs(1)));
    /// ```
    pub const fn retry_after(&self) -> Option<Duration> {
        match self.retry_after_ns {
            NEVER | UNKNOWN => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

/// A per-key policy ([`Keyed`](crate::keyed::Keyed)) refused a call for a new key: it keeps
/// `max_keys` keys, and none of them could be evicted at its last eviction pass (each had a
/// call in flight, or state a fresh instance would lose, or was used within the idle time).
/// A full map runs a pass at most once per quarter of the idle time, so that a flood of new
/// keys does not walk the map once each: a key that became evictable since is evicted by the
/// next pass, up to that quarter later (or at once by
/// [`Keyed::evict_idle`](crate::keyed::Keyed::evict_idle)).
///
/// # Examples
///
/// ```
/// use palisade::{Rejected, error::TooManyKeys};
///
/// let full = TooManyKeys::new("per-user", 10_000);
/// assert_eq!(full.max_keys(), 10_000);
/// assert_eq!(Rejected::from(full).retry_after(), None);
/// assert_eq!(full.to_string(), "policy `per-user`: no room for a new key (10000 in use)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("policy `{policy}`: no room for a new key ({max_keys} in use)")]
pub struct TooManyKeys {
    policy: &'static str,
    max_keys: u32,
}

impl TooManyKeys {
    /// A refusal by the per-key policy named `policy`, which keeps at most `max_keys` keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::TooManyKeys;
    ///
    /// assert_eq!(TooManyKeys::new("hosts", 64).policy_name(), "hosts");
    /// ```
    pub const fn new(policy: &'static str, max_keys: u32) -> Self {
        TooManyKeys { policy, max_keys }
    }

    /// The name of the per-key policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::TooManyKeys;
    ///
    /// assert_eq!(TooManyKeys::new("hosts", 64).policy_name(), "hosts");
    /// ```
    pub const fn policy_name(&self) -> &'static str {
        self.policy
    }

    /// The most keys the policy keeps.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::TooManyKeys;
    ///
    /// assert_eq!(TooManyKeys::new("hosts", 64).max_keys(), 64);
    /// ```
    pub const fn max_keys(&self) -> u32 {
        self.max_keys
    }
}

/// Why a fleet-wide limit could not get its decision from the store that keeps it (the
/// Redis link of [`palisade::redis`](crate::redis)).
///
/// # Examples
///
/// ```
/// use palisade::error::LinkFailure;
///
/// assert_eq!(LinkFailure::Timeout.to_string(), "no reply within the round-trip timeout");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum LinkFailure {
    /// The connection could not be made, or broke.
    #[error("connection failed")]
    Connection,
    /// No reply came within the link's round-trip timeout.
    #[error("no reply within the round-trip timeout")]
    Timeout,
    /// The server answered with an error (a script error, a full memory, a wrong type).
    #[error("the server answered with an error")]
    Server,
    /// The reply did not have the shape the script returns.
    #[error("malformed reply")]
    MalformedReply,
    /// The link's own circuit breaker is open after failed round trips: no round trip was
    /// tried, so the decision cost nothing.
    #[error("the link's breaker is open")]
    BreakerOpen,
}

/// A fleet-wide limit refused a call because it could not check the limit (its store did
/// not answer in time, or at all) and it is set to fail closed.
///
/// Distinct from [`RateLimited`] and [`BulkheadFull`]: the caller is not over any limit.
/// [`ShedLayer`](crate::http::ShedLayer) answers it with 503.
///
/// # Examples
///
/// ```
/// use palisade::{Rejected, error::{LinkFailure, Unavailable}};
/// use std::time::Duration;
///
/// let down = Unavailable::new("per-user", LinkFailure::BreakerOpen, Some(Duration::from_secs(2)));
/// assert_eq!(Rejected::from(down).retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(
///     down.to_string(),
///     "policy `per-user`: limit store unavailable (the link's breaker is open), failing closed"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("policy `{policy}`: limit store unavailable ({cause}), failing closed")]
pub struct Unavailable {
    policy: &'static str,
    cause: LinkFailure,
    // Nanoseconds, `u64::MAX` for none: the rejection stays two words and a byte.
    retry_after_ns: u64,
}

impl Unavailable {
    /// A refusal by the fleet-wide limit named `policy`, whose store failed with `cause`;
    /// `retry_after` when the link knows when it will try again (its breaker's half-open
    /// time).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{LinkFailure, Unavailable};
    ///
    /// let down = Unavailable::new("sessions", LinkFailure::Timeout, None);
    /// assert_eq!(down.cause(), LinkFailure::Timeout);
    /// ```
    pub const fn new(
        policy: &'static str,
        cause: LinkFailure,
        retry_after: Option<Duration>,
    ) -> Self {
        let retry_after_ns = match retry_after {
            None => u64::MAX,
            Some(d) => {
                let ns = d.as_nanos();
                if ns >= u64::MAX as u128 {
                    u64::MAX - 1
                } else {
                    ns as u64
                }
            }
        };
        Unavailable {
            policy,
            cause,
            retry_after_ns,
        }
    }

    /// The name of the policy that refused.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{LinkFailure, Unavailable};
    ///
    /// assert_eq!(Unavailable::new("sessions", LinkFailure::Server, None).policy_name(), "sessions");
    /// ```
    pub const fn policy_name(&self) -> &'static str {
        self.policy
    }

    /// Why the store could not answer.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{LinkFailure, Unavailable};
    ///
    /// let down = Unavailable::new("sessions", LinkFailure::Connection, None);
    /// assert_eq!(down.cause(), LinkFailure::Connection);
    /// ```
    pub const fn cause(&self) -> LinkFailure {
        self.cause
    }

    /// When the link will try its store again, if it knows.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::error::{LinkFailure, Unavailable};
    ///
    /// assert_eq!(Unavailable::new("sessions", LinkFailure::Server, None).retry_after(), None);
    /// ```
    pub const fn retry_after(&self) -> Option<Duration> {
        match self.retry_after_ns {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

/// Either a rejection by a policy or the error of the called service.
///
/// For callers whose error type cannot implement `From<Rejected>` (foreign types, because of
/// the orphan rule). Lift the innermost call once with `.map_err(Error::Inner)` (or the tower
/// [`LiftLayer`](crate::LiftLayer)) and every policy above it can add its rejections.
///
/// # Examples
///
/// ```
/// use palisade::{Error, Rejected, error::Elapsed};
/// use std::time::Duration;
///
/// let io: Error<std::io::Error> = Error::Inner(std::io::ErrorKind::ConnectionReset.into());
/// assert!(io.rejected().is_none());
///
/// let timed_out: Error<std::io::Error> =
///     Rejected::from(Elapsed::new("db", Duration::from_secs(1))).into();
/// assert!(timed_out.rejected().is_some_and(Rejected::is_timeout));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// A policy refused the call or cut it short.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The called service failed.
    #[error(transparent)]
    Inner(E),
}

impl<E> Error<E> {
    /// The rejection, if this is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Error, Rejected, error::CircuitOpen};
    ///
    /// let err: Error<std::io::Error> = Rejected::from(CircuitOpen::isolated("db")).into();
    /// assert!(err.rejected().is_some_and(|r| matches!(r, Rejected::CircuitOpen(_))));
    /// ```
    pub const fn rejected(&self) -> Option<&Rejected> {
        match self {
            Error::Rejected(r) => Some(r),
            Error::Inner(_) => None,
        }
    }

    /// The inner service's error, if this is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Error;
    ///
    /// let err: Error<&str> = Error::Inner("connection reset");
    /// assert_eq!(err.into_inner(), Some("connection reset"));
    /// ```
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Rejected(_) => None,
            Error::Inner(e) => Some(e),
        }
    }
}

/// Finds a [`Rejected`] inside an error type, if it holds one.
///
/// Default classifiers require it so they can tell load shedding by an inner policy (ignored)
/// from a failure of the called service. Implement it next to `From<Rejected>` for your own
/// error type.
///
/// # Examples
///
/// ```
/// use palisade::{AsRejected, Rejected};
///
/// #[derive(Debug)]
/// enum MyError {
///     Rejected(Rejected),
///     Http(u16),
/// }
///
/// impl From<Rejected> for MyError {
///     fn from(r: Rejected) -> Self {
///         MyError::Rejected(r)
///     }
/// }
///
/// impl AsRejected for MyError {
///     fn as_rejected(&self) -> Option<&Rejected> {
///         match self {
///             MyError::Rejected(r) => Some(r),
///             _ => None,
///         }
///     }
/// }
///
/// assert!(MyError::Http(503).as_rejected().is_none());
/// ```
pub trait AsRejected {
    /// The rejection held by `self`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{AsRejected, Error, Rejected, error::Elapsed};
    /// use std::time::Duration;
    ///
    /// let err: Error<std::io::Error> = Rejected::from(Elapsed::new("db", Duration::from_secs(1))).into();
    /// assert!(err.as_rejected().is_some_and(Rejected::is_timeout));
    /// ```
    fn as_rejected(&self) -> Option<&Rejected>;
}

impl AsRejected for Rejected {
    #[inline]
    fn as_rejected(&self) -> Option<&Rejected> {
        Some(self)
    }
}

impl<E> AsRejected for Error<E> {
    #[inline]
    fn as_rejected(&self) -> Option<&Rejected> {
        self.rejected()
    }
}

impl AsRejected for Box<dyn std::error::Error + Send + Sync> {
    #[inline]
    fn as_rejected(&self) -> Option<&Rejected> {
        self.downcast_ref::<Rejected>()
    }
}

impl AsRejected for Box<dyn std::error::Error> {
    #[inline]
    fn as_rejected(&self) -> Option<&Rejected> {
        self.downcast_ref::<Rejected>()
    }
}

/// A rejection travels through a `reqwest_middleware` chain as
/// `reqwest_middleware::Error::Middleware`, holding the [`Rejected`].
///
/// # Examples
///
/// ```
/// use palisade::{AsRejected, Rejected, error::Elapsed};
/// use std::time::Duration;
///
/// let err = reqwest_middleware::Error::from(Rejected::from(Elapsed::new("api", Duration::from_secs(2))));
/// assert!(err.is_middleware());
/// assert!(err.as_rejected().is_some_and(Rejected::is_timeout));
/// ```
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
impl From<Rejected> for reqwest_middleware::Error {
    fn from(rejected: Rejected) -> Self {
        reqwest_middleware::Error::middleware(rejected)
    }
}

/// Finds the [`Rejected`] that a palisade middleware put in
/// `reqwest_middleware::Error::Middleware` (by downcasting); `None` for any other error.
///
/// # Examples
///
/// ```
/// use palisade::{AsRejected, Rejected, error::CircuitOpen};
///
/// let err: reqwest_middleware::Error = Rejected::from(CircuitOpen::isolated("api")).into();
/// assert_eq!(err.as_rejected().map(Rejected::policy_name), Some("api"));
/// let other = reqwest_middleware::Error::middleware(std::fmt::Error);
/// assert!(other.as_rejected().is_none());
/// ```
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
impl AsRejected for reqwest_middleware::Error {
    #[inline]
    fn as_rejected(&self) -> Option<&Rejected> {
        match self {
            reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Rejected>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }
}

impl AsRejected for std::convert::Infallible {
    #[inline]
    fn as_rejected(&self) -> Option<&Rejected> {
        match *self {}
    }
}

/// An invalid configuration: which field, which rule it broke, and the offending value.
///
/// Returned only by config builders (and config deserialisation); policies never fail at run
/// time because of their configuration.
///
/// # Examples
///
/// ```
/// use palisade::timeout::TimeoutConfig;
/// use std::time::Duration;
///
/// let err = TimeoutConfig::builder().duration(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "duration");
/// assert_eq!(err.to_string(), "duration must be greater than zero, got 0ns");
/// ```
///
/// An error from a config file also names the file (see [`file`](Self::file)), in front of
/// the message: `policies.toml: retry.api.max_attempts must be in 1..=1000, got 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    rule: Cow<'static, str>,
    value: String,
    file: Option<PathBuf>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        write!(f, "{} {}, got {}", self.field, self.rule, self.value)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A config error for `field`, which broke `rule` (phrased to follow the field's name,
    /// such as "must be greater than zero") with `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::ConfigError;
    ///
    /// let err = ConfigError::new("max_concurrent", "must be at least 1", 0);
    /// assert_eq!(err.to_string(), "max_concurrent must be at least 1, got 0");
    /// ```
    #[cold]
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        rule: impl Into<Cow<'static, str>>,
        value: impl fmt::Debug,
    ) -> Self {
        ConfigError {
            field: field.into(),
            rule: rule.into(),
            value: format!("{value:?}"),
            file: None,
        }
    }

    /// The same error with `prefix.` in front of the field name, for configs nested inside
    /// others (such as a named policy in a config file).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::ConfigError;
    ///
    /// let err = ConfigError::new("duration", "must be greater than zero", 0);
    /// assert_eq!(err.in_section("timeouts.search").field(), "timeouts.search.duration");
    /// ```
    #[cold]
    pub fn in_section(self, prefix: &str) -> Self {
        ConfigError {
            field: format!("{prefix}.{}", self.field).into(),
            ..self
        }
    }

    /// The name of the field (or config-file key) that is invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let err = Bulkhead::builder().max_concurrent(0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_concurrent");
    /// ```
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule the value broke, such as "must be greater than zero".
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::ConfigError;
    ///
    /// let err = ConfigError::new("duration", "must be greater than zero", 0);
    /// assert_eq!(err.rule(), "must be greater than zero");
    /// ```
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The offending value, as written in the message.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::ConfigError;
    ///
    /// let err = ConfigError::new("name", "must not be empty", "");
    /// assert_eq!(err.value(), "\"\"", "the value's `Debug` form");
    /// ```
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The same error, found in the config file at `path`: the message starts with the
    /// path, and [`file`](Self::file) returns it. The field stays the key's path inside the
    /// file.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::ConfigError;
    /// use std::path::Path;
    ///
    /// let err = ConfigError::new("timeout.search.duration", "must be greater than zero", 0)
    ///     .in_file("policies.toml");
    /// assert_eq!(err.file(), Some(Path::new("policies.toml")));
    /// assert_eq!(err.field(), "timeout.search.duration");
    /// assert_eq!(
    ///     err.to_string(),
    ///     "policies.toml: timeout.search.duration must be greater than zero, got 0"
    /// );
    /// ```
    #[cold]
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        ConfigError {
            file: Some(path.into()),
            ..self
        }
    }

    /// The config file the error was found in, if it came from one (such as through
    /// `Policies::from_path`, feature `serde`).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::ConfigError;
    ///
    /// let err = ConfigError::new("duration", "must be greater than zero", 0);
    /// assert_eq!(err.file(), None, "built in code, not read from a file");
    /// ```
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

#[cfg(test)]
mod tests;
