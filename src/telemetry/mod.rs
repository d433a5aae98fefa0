//! Events the policies report, and the listener that receives them.
//!
//! Every policy handle may carry one [`Listener`], set on its config. When none is set,
//! reporting costs one branch and nothing is built. When one is set, it receives each
//! [`Event`] by reference, on the thread and inside the call that caused it, so it should be
//! quick (count, log, or hand the `Copy` event to a channel).
//!
//! Events are `Copy` and carry the policy's name as a `&'static str`: nothing is allocated to
//! report them.
//!
//! With the `tracing` feature, [`TracingListener`] turns events into `tracing` records; with
//! the `metrics` feature, [`MetricsListener`] records them through the `metrics` facade. A
//! pair `(a, b)` of listeners is a listener that gives each event to both, so one policy can
//! feed logs and metrics at once.
//!
//! # User code runs last
//!
//! Every policy completes its own state change (a slot taken or given back, a half-open probe
//! admitted or settled, a budget token spent or refunded, a state transition) before it calls
//! any user code: a listener, a classifier, a retry hint, a request cloner. A panic in that
//! code unwinds through the caller with nothing left taken, and the policy serves the next
//! call as if the callback had returned. A listener reached while its thread is already
//! unwinding (a permit dropped by a panicking call) still receives the event, but a panic of
//! its own is caught and discarded there: a second panic during unwinding would abort the
//! process.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use self::circuit_state::CircuitState;
use crate::error::Rejected;

mod give_up;
pub use give_up::GiveUp;

// Public as `palisade::circuit_breaker::CircuitState`.
pub(crate) mod circuit_state;
#[cfg(feature = "metrics")]
mod metrics_listener;
#[cfg(feature = "metrics")]
pub use metrics_listener::MetricsListener;

/// Something a policy did, and which policy did it.
///
/// # Examples
///
/// ```
/// use palisade::telemetry::{Event, EventKind};
///
/// fn log(event: &Event) {
///     if let EventKind::TimedOut { after } = event.kind() {
///         println!("{} gave up after {after:?}", event.policy_name());
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    policy: &'static str,
    kind: EventKind,
    // The key of a per-key instance (see `keyed`), as its `Debug` form.
    key: Option<Arc<str>>,
}

impl Event {
    /// An event of `kind` reported by the policy named `policy`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::telemetry::{Event, EventKind, Listener};
    ///
    /// // For testing a listener of your own.
    /// let event = Event::new("cache", EventKind::FallbackUsed { level: 2 });
    /// let print = |e: &Event| println!("{}: {:?}", e.policy_name(), e.kind());
    /// print.on_event(&event);
    /// ```
    pub const fn new(policy: &'static str, kind: EventKind) -> Self {
        Event {
            policy,
            kind,
            key: None,
        }
    }

    /// The key of the instance that reported the event, for the instances of a per-key
    /// [`Keyed`](crate::keyed::Keyed) map (the key's `Debug` form); `None` for a policy of
    /// its own. Every key's instance reports under its map's one policy name, so that
    /// metrics keep one series per policy; the key rides here, for logs.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use palisade::telemetry::Event;
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let config = RateLimiter::builder()
    ///     .name("per-user")
    ///     .rate(1, Duration::from_secs(60))
    ///     .listener(move |e: &Event| sink.lock().unwrap().push((e.policy_name(), e.key().map(String::from))))
    ///     .build()?;
    /// let per_user: Keyed<String, _> = Keyed::new(KeyedConfig::default(), RateLimiter::new(config));
    /// per_user.try_acquire("ada")?;
    /// assert!(per_user.try_acquire("ada").is_err());
    /// let seen = seen.lock().unwrap();
    /// assert!(seen.contains(&("per-user", Some(String::from("\"ada\"")))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The name of the policy that reported the event.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::telemetry::{Event, EventKind};
    ///
    /// assert_eq!(Event::new("cache", EventKind::FallbackUsed { level: 1 }).policy_name(), "cache");
    /// ```
    pub const fn policy_name(&self) -> &'static str {
        self.policy
    }

    /// What happened.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use palisade::telemetry::{Event, EventKind};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let events = Arc::new(Mutex::new(Vec::new()));
    /// let sink = events.clone();
    /// let config = Bulkhead::builder()
    ///     .max_concurrent(2)
    ///     .listener(move |e: &Event| sink.lock().unwrap().push(e.kind()))
    ///     .build()?;
    /// let bulkhead = Bulkhead::new(config);
    /// drop(bulkhead.try_acquire()?);
    /// let kinds = events.lock().unwrap();
    /// assert!(kinds.contains(&EventKind::BulkheadAdmitted { in_flight: 1 }));
    /// assert!(kinds.contains(&EventKind::BulkheadReleased { in_flight: 1 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn kind(&self) -> EventKind {
        self.kind
    }
}

/// Which policy a handle is, as [`EventKind::Created`] reports it.
///
/// # Examples
///
/// ```
/// use palisade::telemetry::PolicyKind;
///
/// assert_ne!(PolicyKind::Retry, PolicyKind::Timeout);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyKind {
    /// A [`CircuitBreaker`](crate::circuit_breaker::CircuitBreaker).
    CircuitBreaker,
    /// A [`Bulkhead`](crate::bulkhead::Bulkhead).
    Bulkhead,
    /// A [`Retry`](crate::retry::Retry).
    Retry,
    /// A [`Timeout`](crate::timeout::Timeout).
    Timeout,
    /// A [`Fallback`](crate::fallback::Fallback).
    Fallback,
    /// A [`RateLimiter`](crate::rate_limiter::RateLimiter).
    RateLimiter,
}

/// What a policy did.
///
/// New kinds are added as policies land, so matches need a wildcard arm.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
/// use palisade::telemetry::{Event, EventKind};
/// use std::sync::{Arc, Mutex};
///
/// let transitions = Arc::new(Mutex::new(Vec::new()));
/// let sink = transitions.clone();
/// let listener = move |e: &Event| match e.kind() {
///     EventKind::StateChanged { from, to } => sink.lock().unwrap().push((from, to)),
///     _ => {} // new kinds are added over time
/// };
/// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).listener(listener).build()?);
/// breaker.try_acquire()?.failure();
/// assert_eq!(*transitions.lock().unwrap(), [(CircuitState::Closed, CircuitState::Open)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A handle was built (once per handle, not per clone): a metrics listener registers the
    /// policy's gauges here, so a breaker reads closed before its first call.
    Created {
        /// Which policy.
        kind: PolicyKind,
    },
    /// A timeout cut a call short after `after`; its future was dropped.
    TimedOut {
        /// The duration the call was given.
        after: Duration,
    },
    /// A policy refused a call without running it.
    Rejected(Rejected),
    /// A circuit breaker changed state. Reported once per transition, in the order the
    /// transitions happened: each event's `from` is the previous event's `to`. When threads
    /// race, a transition may be delivered by another thread than the one that made it (the
    /// one delivering at the time), after that thread's call has returned.
    StateChanged {
        /// The state before.
        from: CircuitState,
        /// The state after.
        to: CircuitState,
    },
    /// A retry will make attempt number `attempt` after `delay`.
    RetryScheduled {
        /// The attempt about to be made (2 for the first retry).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// A retry stopped without a success; the caller gets the last result as it was.
    RetryGaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why it stopped.
        reason: GiveUp,
    },
    /// A call succeeded after at least one retry (a first-attempt success reports nothing).
    RetrySucceeded {
        /// Attempts made, the successful one included.
        attempts: u32,
    },
    /// A fallback served level `level` (1 for the first alternative) because everything
    /// before it failed.
    FallbackUsed {
        /// The level that was used.
        level: u8,
    },
    /// A bulkhead gave a call a slot; `in_flight` counts it.
    BulkheadAdmitted {
        /// Calls holding a slot, this one included.
        in_flight: u32,
    },
    /// A call gave its bulkhead slot back (finished, failed, or dropped).
    BulkheadReleased {
        /// Calls still holding a slot, as seen just before the release.
        in_flight: u32,
    },
    /// A fleet-wide limit ([`palisade::redis`](crate::redis)) could not get its decision
    /// from its store, and decided by its fail mode instead. Reported once per call so
    /// decided (a metrics listener counts them); the link's own breaker reports its state
    /// changes under the link's name.
    LinkFailed {
        /// Why the store did not answer.
        cause: crate::error::LinkFailure,
        /// What the fail mode decided.
        decided: FailDecision,
    },
    /// A circuit breaker counted a call's outcome (not reported while disabled, nor for
    /// ignored outcomes or results that arrive after a transition).
    CallRecorded {
        /// Whether it counted as a failure.
        failure: bool,
        /// Whether it was slower than the slow-call threshold.
        slow: bool,
    },
}

/// What a fleet-wide limit decided for a call when its store could not answer (see
/// [`EventKind::LinkFailed`]).
///
/// # Examples
///
/// ```
/// use palisade::telemetry::FailDecision;
///
/// assert_ne!(FailDecision::Admitted, FailDecision::Refused);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailDecision {
    /// Fail open: the call was admitted unchecked.
    Admitted,
    /// Fail closed: the call was refused with [`Rejected::Unavailable`].
    Refused,
    /// The local fallback decided: an in-process limit at a share of the fleet's.
    Local,
}

/// Receives the events of the policies it is attached to.
///
/// Any `Fn(&Event) + Send + Sync + 'static` closure is a listener.
///
/// # Examples
///
/// ```
/// use palisade::telemetry::{Event, EventKind, Listener};
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let timeouts = Arc::new(AtomicU64::new(0));
/// let counter = timeouts.clone();
/// let listener = move |event: &Event| {
///     if matches!(event.kind(), EventKind::TimedOut { .. }) {
///         counter.fetch_add(1, Ordering::Relaxed);
///     }
/// };
/// let after = std::time::Duration::from_secs(1);
/// listener.on_event(&Event::new("search", EventKind::TimedOut { after }));
/// assert_eq!(timeouts.load(Ordering::Relaxed), 1);
/// ```
pub trait Listener: Send + Sync + 'static {
    /// Called once for each event, in the order the policy decided them.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::telemetry::{Event, EventKind, Listener};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// struct CountRejections(AtomicU32);
    ///
    /// impl Listener for CountRejections {
    ///     fn on_event(&self, event: &Event) {
    ///         if let EventKind::Rejected(_) = event.kind() {
    ///             self.0.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     }
    /// }
    ///
    /// let listener = CountRejections(AtomicU32::new(0));
    /// let rejected = palisade::error::CircuitOpen::isolated("db").into();
    /// listener.on_event(&Event::new("db", EventKind::Rejected(rejected)));
    /// assert_eq!(listener.0.load(Ordering::Relaxed), 1);
    /// ```
    fn on_event(&self, event: &Event);
}

impl<F> Listener for F
where
    F: Fn(&Event) + Send + Sync + 'static,
{
    #[inline]
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// Both listeners receive every event, `.0` first.
///
/// # Examples
///
/// ```
/// use palisade::telemetry::{Event, EventKind, Listener};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// static SEEN: AtomicU32 = AtomicU32::new(0);
/// let count = |_: &Event| {
///     SEEN.fetch_add(1, Ordering::Relaxed);
/// };
/// let both = (count, count);
/// both.on_event(&Event::new("db", EventKind::FallbackUsed { level: 1 }));
/// assert_eq!(SEEN.load(Ordering::Relaxed), 2);
/// ```
impl<A: Listener, B: Listener> Listener for (A, B) {
    #[inline]
    fn on_event(&self, event: &Event) {
        self.0.on_event(event);
        self.1.on_event(event);
    }
}

/// The `name` and `listener` setters every config builder has (fields `name` and
/// `listener`; the builder's module defines `DEFAULT_NAME`, or the constant named).
macro_rules! telemetry_setters {
    () => {
        $crate::telemetry::telemetry_setters!(DEFAULT_NAME);
    };
    ($default:ident) => {
        /// The name the policy reports under, in events, rejections and metrics: a
        /// `&'static str` or a `String` (a name known at run time, interned once when the
        /// config is built, so events stay `Copy`).
        ///
        /// Names are for a bounded set of policies, one per dependency: each distinct name
        /// is kept for the life of the process. Per-host or per-user instances belong to the
        /// keyed policies, which carry the key beside their parent's name.
        ///
        #[doc = concat!("Default: [`", stringify!($default), "`] followed by where `build` was called, such as")]
        /// `retry@src/main.rs:12`, so that unnamed policies are told apart. Must not be empty
        /// or blank.
        pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
            self.name = Some(name.into());
            self
        }

        /// A listener for this policy's events. Default: none.
        pub fn listener(mut self, listener: impl $crate::telemetry::Listener) -> Self {
            self.listener = Some(std::sync::Arc::new(listener));
            self
        }
    };
}

pub(crate) use telemetry_setters;

/// A policy's name and optional listener, cloned into the futures that report for it.
#[derive(Clone)]
pub(crate) struct Telemetry {
    name: &'static str,
    listener: Option<Arc<dyn Listener>>,
    // Set for the instance of one key in a per-key map.
    key: Option<Arc<str>>,
}

impl Telemetry {
    pub(crate) fn new(name: &'static str, listener: Option<Arc<dyn Listener>>) -> Self {
        Telemetry {
            name,
            listener,
            key: None,
        }
    }

    /// The same telemetry for the instance of one key in a per-key map, whose events carry
    /// `key`.
    pub(crate) fn for_key(&self, key: Option<Arc<str>>) -> Self {
        Telemetry {
            key,
            ..self.clone()
        }
    }

    /// Checks a builder's name (see [`validate::check_name`](crate::validate::check_name))
    /// and makes it `'static`: a `String` is interned; no name gives `default` and the place
    /// the config's `build` was called from. Call it last in a `build`, after every other
    /// check, so that a refused config interns nothing.
    #[track_caller]
    pub(crate) fn build(
        name: Option<Cow<'static, str>>,
        default: &'static str,
        listener: Option<Arc<dyn Listener>>,
    ) -> Result<Self, crate::error::ConfigError> {
        // A policy with no listener of its own reports to the process-wide one, if set.
        let listener = listener.or_else(|| DEFAULT_LISTENER.get().cloned());
        let name = match name {
            Some(Cow::Borrowed(name)) => crate::validate::name(name)?,
            Some(Cow::Owned(name)) => {
                crate::validate::check_name(&name)?;
                intern(&name)
            }
            None => {
                let at = std::panic::Location::caller();
                intern(&format!("{default}@{}:{}", at.file(), at.line()))
            }
        };
        Ok(Telemetry::new(name, listener))
    }

    #[inline]
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Whether a listener is set.
    #[inline]
    pub(crate) fn has_listener(&self) -> bool {
        self.listener.is_some()
    }

    /// Reports that the handle this telemetry belongs to was built.
    #[cold]
    pub(crate) fn created(&self, kind: PolicyKind) {
        self.emit(|| EventKind::Created { kind });
    }

    /// Reports an event; `kind` is only built when a listener is set.
    #[inline]
    pub(crate) fn emit(&self, kind: impl FnOnce() -> EventKind) {
        if let Some(listener) = &self.listener {
            let event = Event {
                policy: self.name,
                kind: kind(),
                key: self.key.clone(),
            };
            emit_cold(&**listener, event);
        }
    }
}

#[cold]
#[inline(never)]
fn emit_cold(listener: &dyn Listener, event: Event) {
    if std::thread::panicking() {
        // Reached from a drop during unwinding: a second panic would abort the process.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            listener.on_event(&event);
        }));
    } else {
        listener.on_event(&event);
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("name", &self.name)
            .field("listener", &self.listener.as_ref().map(|_| "..."))
            .field("key", &self.key)
            .finish()
    }
}

/// A listener that writes events as `tracing` records under the target `palisade`.
///
/// Rejections and timeouts are logged at `DEBUG` (they can be frequent under load and are
/// expected behaviour); state changes, as policies add them, at `INFO`. Every record has a
/// `policy` field, and a `key` field for the instances of a per-key map.
///
/// # Examples
///
/// ```
/// use palisade::telemetry::TracingListener;
/// use palisade::timeout::TimeoutConfig;
/// use std::time::Duration;
///
/// let config = TimeoutConfig::builder()
///     .duration(Duration::from_secs(2))
///     .name("search")
///     .listener(TracingListener)
///     .build()
///     .unwrap();
/// # let _ = config;
/// ```
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingListener;

#[cfg(feature = "tracing")]
impl Listener for TracingListener {
    fn on_event(&self, event: &Event) {
        let policy = event.policy_name();
        match event.kind() {
            EventKind::TimedOut { after } => tracing::debug!(
                target: "palisade",
                policy,
                key = event.key(),
                after_ms = millis(after),
                "call timed out"
            ),
            EventKind::Rejected(rejected) => tracing::debug!(
                target: "palisade",
                policy,
                key = event.key(),
                retry_after_ms = rejected.retry_after().map(millis),
                reason = %rejected,
                "call rejected"
            ),
            EventKind::StateChanged { from, to } => tracing::info!(
                target: "palisade",
                policy,
                key = event.key(),
                from = ?from,
                to = ?to,
                "circuit breaker state changed"
            ),
            EventKind::RetryScheduled { attempt, delay } => tracing::debug!(
                target: "palisade",
                policy,
                key = event.key(),
                attempt,
                delay_ms = millis(delay),
                "retry scheduled"
            ),
            EventKind::RetryGaveUp { attempts, reason } => tracing::debug!(
                target: "palisade",
                policy,
                key = event.key(),
                attempts,
                reason = ?reason,
                "retry gave up"
            ),
            EventKind::RetrySucceeded { attempts } => tracing::debug!(
                target: "palisade",
                policy,
                key = event.key(),
                attempts,
                "call succeeded after retrying"
            ),
            EventKind::FallbackUsed { level } => tracing::debug!(
                target: "palisade",
                policy,
                key = event.key(),
                level,
                "fallback used"
            ),
            EventKind::BulkheadAdmitted { in_flight } => tracing::trace!(
                target: "palisade",
                policy,
                key = event.key(),
                in_flight,
                "bulkhead admitted a call"
            ),
            EventKind::BulkheadReleased { in_flight } => tracing::trace!(
                target: "palisade",
                policy,
                key = event.key(),
                in_flight,
                "bulkhead slot released"
            ),
            EventKind::Created { kind } => tracing::debug!(
                target: "palisade",
                policy,
                key = event.key(),
                kind = ?kind,
                "policy created"
            ),
            EventKind::CallRecorded { failure, slow } => tracing::trace!(
                target: "palisade",
                policy,
                key = event.key(),
                failure,
                slow,
                "circuit breaker recorded a call"
            ),
            // A warning: the fleet-wide limit is not being enforced as configured.
            EventKind::LinkFailed { cause, decided } => tracing::warn!(
                target: "palisade",
                policy,
                key = event.key(),
                cause = %cause,
                decided = ?decided,
                "limit store unavailable; decided by the fail mode"
            ),
        }
    }
}

static DEFAULT_LISTENER: OnceLock<Arc<dyn Listener>> = OnceLock::new();

/// Sets the listener of every policy built from now on without a listener of its own, once
/// per process: a [`MetricsListener`](crate::telemetry) or a
/// [`TracingListener`](crate::telemetry) for the whole service instead of one on every
/// builder. Policies built before the call are not changed, and a listener given to a builder
/// replaces the default for that policy (combine both with a pair, `(a, b)`).
///
/// # Errors
///
/// A [`ConfigError`](crate::ConfigError) naming `default_listener` if it was set already: a
/// second call would leave the policies built in between reporting to the first.
///
/// # Examples
///
/// ```
/// use palisade::telemetry::{Event, set_default_listener};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// static EVENTS: AtomicU64 = AtomicU64::new(0);
/// set_default_listener(|_: &Event| {
///     EVENTS.fetch_add(1, Ordering::Relaxed);
/// })?;
/// assert!(set_default_listener(|_: &Event| {}).is_err(), "once per process");
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub fn set_default_listener(listener: impl Listener) -> Result<(), crate::error::ConfigError> {
    DEFAULT_LISTENER.set(Arc::new(listener)).map_err(|_| {
        crate::error::ConfigError::new(
            "default_listener",
            "can be set once per process",
            "a second listener",
        )
    })
}

static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// The one `&'static str` for `name`, allocated the first time it is seen: a name known only
/// at run time (a `String` given to a builder, a key in a config file) costs one allocation
/// for the life of the process, however often a policy of that name is built.
pub(crate) fn intern(name: &str) -> &'static str {
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Whether `name` was ever interned.
#[cfg(test)]
pub(crate) fn interned(name: &str) -> bool {
    let names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    names.as_ref().is_some_and(|names| names.contains(name))
}

/// Milliseconds with their fraction: a 500 µs timeout must not log as 0 ms.
#[cfg(feature = "tracing")]
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "tracing")]
    #[test]
    fn tracing_fields_keep_sub_millisecond_durations() {
        assert_eq!(millis(Duration::from_micros(500)), 0.5);
        assert_eq!(millis(Duration::from_secs(2)), 2_000.0);
    }

    #[test]
    fn a_name_known_at_run_time_is_interned_once() {
        use crate::timeout::TimeoutConfig;
        let build = |name: String| TimeoutConfig::builder().name(name).build().unwrap().name();
        let a = build(format!("tenant-{}", 7));
        let b = build(String::from("tenant-7"));
        assert_eq!(a, "tenant-7");
        assert!(std::ptr::eq(a, b), "one allocation per distinct name");
        let blank = TimeoutConfig::builder().name(String::from(" ")).build();
        assert_eq!(blank.unwrap_err().field(), "name");
        assert!(!interned(" "), "a refused name is not kept");
    }

    #[test]
    fn unnamed_policies_are_told_apart_by_where_they_were_built() {
        use crate::retry::RetryConfig;
        let here = RetryConfig::builder().build().unwrap();
        let there = RetryConfig::builder().build().unwrap();
        assert!(
            here.name().starts_with("retry@src/telemetry/mod.rs:"),
            "{}",
            here.name()
        );
        assert_ne!(here.name(), there.name());
        // The same place gives the same name: a loop does not grow the set of names.
        let names: Vec<_> = (0..3)
            .map(|_| RetryConfig::builder().build().unwrap().name())
            .collect();
        assert!(names.iter().all(|n| std::ptr::eq(*n, names[0])));
    }

    #[test]
    fn listener_is_object_safe() {
        fn _obj_safe(_: &dyn Listener) {}
    }

    #[test]
    fn emit_builds_nothing_without_listener() {
        let quiet = Telemetry::new("t", None);
        quiet.emit(|| unreachable!("the event must not be built without a listener"));
    }

    #[test]
    fn a_listener_panicking_during_unwinding_does_not_abort() {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEEN: AtomicU32 = AtomicU32::new(0);
        let telemetry = Telemetry::new(
            "t",
            Some(Arc::new(|_: &Event| {
                SEEN.fetch_add(1, Ordering::Relaxed);
                panic!("listener");
            })),
        );
        struct EmitsOnDrop(Telemetry);
        impl Drop for EmitsOnDrop {
            fn drop(&mut self) {
                self.0.emit(|| EventKind::BulkheadReleased { in_flight: 1 });
            }
        }
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = EmitsOnDrop(telemetry.clone());
            panic!("the call");
        }));
        let message = caught.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"the call"));
        assert_eq!(
            SEEN.load(Ordering::Relaxed),
            1,
            "the event still reached the listener"
        );
        // Outside unwinding the listener's panic reaches the caller as before.
        assert!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || telemetry.emit(|| EventKind::FallbackUsed { level: 1 })
            ))
            .is_err()
        );
    }
}
