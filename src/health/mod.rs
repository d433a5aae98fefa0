//! Health reports: is this process fit to receive traffic, and why not?
//!
//! A [`HealthRegistry`] holds named components: circuit breakers, bulkheads and checks of
//! your own. Asking it for a [`HealthReport`] reads each component's snapshot at that moment
//! (nothing runs in the background) and grades it:
//!
//! | Component | [`Healthy`](HealthStatus::Healthy) | [`Degraded`](HealthStatus::Degraded) | [`Unhealthy`](HealthStatus::Unhealthy) |
//! |---|---|---|---|
//! | breaker, critical | closed or disabled | half-open | open or isolated |
//! | breaker, not critical | closed or disabled | half-open, open or isolated | never |
//! | bulkhead | below its saturation threshold | at or above it (in flight + queued over the limit) | never |
//! | per-host breakers, critical | every breaker closed | some not closed | at least the given share open or isolated (half-open ones count as degraded) |
//! | per-host breakers, not critical | none open | some open | never |
//! | Redis link, critical | its breaker closed | half-open | open or isolated |
//! | Redis link, not critical | its breaker closed | half-open, open or isolated | never |
//! | check, critical | as the check says | as the check says | as the check says |
//! | check, not critical | as the check says | when the check says degraded or unhealthy | never |
//!
//! The report's status is the worst of its components'. Each component says why, in words a
//! person on call can act on ("closed: 2 of 40 calls failed", "open: 17 rejected so far",
//! "9 of 10 slots in use, 3 queued"). Names must be unique within a registry: registering a
//! second component under a name already taken is a [`ConfigError`].
//!
//! Checks run on the thread asking for the report, outside the registry's lock, so a check
//! may itself register components without deadlocking, and a slow check does not hold up
//! registration.
//!
//! # Liveness and readiness
//!
//! Kubernetes and most load balancers ask two questions, and they must not be confused:
//! - **readiness** ([`readiness`](HealthRegistry::readiness)): should this instance get
//!   traffic now? Every component counts. Unhealthy means "send traffic elsewhere"
//!   (HTTP 503); degraded still serves (200), with the reason in the body.
//! - **liveness** ([`liveness`](HealthRegistry::liveness)): is the process itself working, or
//!   should it be restarted? Only checks registered with
//!   [`liveness_check`](HealthRegistry::liveness_check) count. Breakers and bulkheads never
//!   do: a dependency being down is not cured by restarting its callers, and counting it
//!   would turn one outage into a restart storm.
//!
//! [`HealthReport::http_status`] gives the status code for either view (200, or 503 when
//! unhealthy). With the `serde` feature the report serializes to:
//!
//! ```json
//! {
//!   "status": "degraded",
//!   "components": {
//!     "payments": { "kind": "circuit_breaker", "status": "degraded", "critical": false,
//!                   "reason": "half-open: probing" },
//!     "db-pool":  { "kind": "bulkhead", "status": "healthy", "critical": true,
//!                   "reason": "3 of 20 slots in use, 0 queued" }
//!   }
//! }
//! ```
//!
//! the shape of Spring Boot's actuator and ASP.NET Core's health UI (an overall `status`
//! and one entry per component), which dashboards and probes already read.
//!
//! # Clone semantics
//!
//! The registry is a cheap handle: clones share the components, so the one your HTTP
//! handler holds sees components registered later. It holds clones of the policy handles,
//! which share state with the handles your calls go through.
//!
//! # Examples
//!
//! ```
//! use palisade::circuit_breaker::CircuitBreaker;
//! use palisade::health::{HealthRegistry, HealthStatus};
//!
//! let breaker = CircuitBreaker::new(CircuitBreaker::builder().name("payments").build()?);
//! let health = HealthRegistry::new();
//! health.circuit_breaker(&breaker, true)?;
//!
//! assert_eq!(health.readiness().status(), HealthStatus::Healthy);
//! breaker.isolate();
//! let report = health.readiness();
//! assert_eq!(report.status(), HealthStatus::Unhealthy);
//! assert_eq!(report.http_status(), 503);
//! assert_eq!(health.liveness().http_status(), 200, "a dependency is not the process");
//! # Ok::<(), palisade::ConfigError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::{CircuitBreaker, CircuitState, TripModel};
use crate::clock::Clock;
use crate::error::ConfigError;
use crate::keyed::Keyed;

/// How well a component, or the whole process, is doing. Ordered from best to worst.
///
/// # Examples
///
/// ```
/// use palisade::health::HealthStatus;
///
/// assert!(HealthStatus::Healthy < HealthStatus::Degraded);
/// let worst = [HealthStatus::Degraded, HealthStatus::Unhealthy].into_iter().max();
/// assert_eq!(worst.map(HealthStatus::as_str), Some("unhealthy"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HealthStatus {
    /// Working as intended.
    Healthy,
    /// Serving, with something wrong worth knowing (a non-critical dependency is down, a
    /// pool is nearly full).
    Degraded,
    /// Should not get traffic (readiness) or should be restarted (liveness).
    Unhealthy,
}

impl HealthStatus {
    /// The name used in reports: `healthy`, `degraded` or `unhealthy`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::HealthStatus;
    ///
    /// assert_eq!(HealthStatus::Degraded.as_str(), "degraded");
    /// assert_eq!(HealthStatus::Unhealthy.to_string(), HealthStatus::Unhealthy.as_str());
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check of your own found: a status and a reason.
///
/// # Examples
///
/// ```
/// use palisade::health::{Check, HealthStatus};
///
/// let disk = Check::degraded("disk 91% full");
/// assert_eq!(disk.status(), HealthStatus::Degraded);
/// assert_eq!(Check::healthy("ok").reason(), "ok");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    status: HealthStatus,
    reason: Cow<'static, str>,
}

impl Check {
    /// A check with `status` and `reason`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthStatus};
    ///
    /// let queue_depth = 1_200;
    /// let status = if queue_depth > 1_000 { HealthStatus::Degraded } else { HealthStatus::Healthy };
    /// let check = Check::new(status, format!("{queue_depth} jobs queued"));
    /// assert_eq!(check.status(), HealthStatus::Degraded);
    /// ```
    pub fn new(status: HealthStatus, reason: impl Into<Cow<'static, str>>) -> Self {
        Check {
            status,
            reason: reason.into(),
        }
    }

    /// Healthy, because `reason`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthStatus};
    ///
    /// assert_eq!(Check::healthy("connected").status(), HealthStatus::Healthy);
    /// ```
    pub fn healthy(reason: impl Into<Cow<'static, str>>) -> Self {
        Check::new(HealthStatus::Healthy, reason)
    }

    /// Degraded, because `reason`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthStatus};
    ///
    /// assert_eq!(Check::degraded("replica lagging").status(), HealthStatus::Degraded);
    /// ```
    pub fn degraded(reason: impl Into<Cow<'static, str>>) -> Self {
        Check::new(HealthStatus::Degraded, reason)
    }

    /// Unhealthy, because `reason`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthStatus};
    ///
    /// assert_eq!(Check::unhealthy("no connection").status(), HealthStatus::Unhealthy);
    /// ```
    pub fn unhealthy(reason: impl Into<Cow<'static, str>>) -> Self {
        Check::new(HealthStatus::Unhealthy, reason)
    }

    /// The status found.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthStatus};
    ///
    /// assert_eq!(Check::degraded("slow").status(), HealthStatus::Degraded);
    /// ```
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Why.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::Check;
    ///
    /// assert_eq!(Check::unhealthy("no connection").reason(), "no connection");
    /// ```
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// What kind of component an entry of a report is.
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::Bulkhead;
/// use palisade::health::{Check, ComponentKind, HealthRegistry};
///
/// let pool = Bulkhead::new(Bulkhead::builder().name("pool").max_concurrent(4).build()?);
/// let health = HealthRegistry::new();
/// health.bulkhead(&pool, true, 0.9)?;
/// health.check("disk", false, || Check::healthy("ok"))?;
/// let kinds: Vec<ComponentKind> = health.readiness().components().iter().map(|c| c.kind).collect();
/// assert_eq!(kinds, [ComponentKind::Bulkhead, ComponentKind::Check]);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ComponentKind {
    /// A [`CircuitBreaker`].
    CircuitBreaker,
    /// A [`Bulkhead`].
    Bulkhead,
    /// A check of your own.
    Check,
    /// The circuit breakers of a [`Keyed`] map: one per host.
    KeyedCircuitBreakers,
    /// The link to the Redis server of fleet-wide limits (feature `redis`).
    RedisLink,
}

/// One component's entry in a [`HealthReport`].
///
/// # Examples
///
/// ```
/// use palisade::health::{Check, HealthRegistry, HealthStatus};
///
/// let health = HealthRegistry::new();
/// health.check("cache", false, || Check::unhealthy("redis unreachable"))?;
/// let report = health.readiness();
/// let cache = &report.components()[0];
/// assert_eq!(cache.name, "cache");
/// assert!(!cache.critical);
/// assert_eq!(cache.status, HealthStatus::Degraded, "graded down: not critical");
/// assert_eq!(cache.reason, "redis unreachable");
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ComponentHealth {
    /// The name it was registered under.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub name: Cow<'static, str>,
    /// What it is.
    pub kind: ComponentKind,
    /// Its grade, after its criticality was applied.
    pub status: HealthStatus,
    /// Whether it can make the report unhealthy.
    pub critical: bool,
    /// Why it has this status.
    pub reason: Cow<'static, str>,
}

/// The state of every component at one moment, from [`HealthRegistry::readiness`] or
/// [`HealthRegistry::liveness`].
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::CircuitBreaker;
/// use palisade::health::{ComponentKind, HealthRegistry, HealthStatus};
///
/// let search = CircuitBreaker::new(CircuitBreaker::builder().name("search").build()?);
/// let health = HealthRegistry::new();
/// health.circuit_breaker(&search, false)?;
/// search.isolate();
///
/// let report = health.readiness();
/// let entry = report.component("search").unwrap();
/// assert_eq!(entry.kind, ComponentKind::CircuitBreaker);
/// assert_eq!(entry.status, HealthStatus::Degraded, "not critical");
/// assert_eq!(entry.reason, "isolated by hand");
/// assert_eq!(report.http_status(), 200);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    status: HealthStatus,
    components: Vec<ComponentHealth>,
}

impl HealthReport {
    fn from_components(components: Vec<ComponentHealth>) -> Self {
        let status = components
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        HealthReport { status, components }
    }

    /// The worst status of the components (healthy when there are none).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthRegistry, HealthStatus};
    ///
    /// let health = HealthRegistry::new();
    /// assert_eq!(health.readiness().status(), HealthStatus::Healthy, "no components");
    /// health.check("db", true, || Check::unhealthy("down"))?;
    /// health.check("cache", false, || Check::healthy("ok"))?;
    /// assert_eq!(health.readiness().status(), HealthStatus::Unhealthy, "the worst one");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// The components, in the order they were registered.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthRegistry};
    ///
    /// let health = HealthRegistry::new();
    /// health.check("db", true, || Check::healthy("ok"))?;
    /// health.check("cache", false, || Check::healthy("ok"))?;
    /// let names: Vec<_> = health.readiness().components().iter().map(|c| c.name.clone()).collect();
    /// assert_eq!(names, ["db", "cache"]);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn components(&self) -> &[ComponentHealth] {
        &self.components
    }

    /// The component registered as `name`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthRegistry, HealthStatus};
    ///
    /// let health = HealthRegistry::new();
    /// health.check("db", true, || Check::degraded("slow"))?;
    /// let report = health.readiness();
    /// assert_eq!(report.component("db").map(|c| c.status), Some(HealthStatus::Degraded));
    /// assert!(report.component("queue").is_none());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn component(&self, name: &str) -> Option<&ComponentHealth> {
        self.components.iter().find(|c| c.name == name)
    }

    /// The HTTP status code a probe endpoint answers with: 200 while healthy or degraded
    /// (still serving), 503 when unhealthy.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthRegistry};
    ///
    /// let health = HealthRegistry::new();
    /// health.check("cache", false, || Check::unhealthy("down"))?;
    /// assert_eq!(health.readiness().http_status(), 200, "degraded still serves");
    /// health.check("db", true, || Check::unhealthy("down"))?;
    /// assert_eq!(health.readiness().http_status(), 503);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn http_status(&self) -> u16 {
        match self.status {
            HealthStatus::Healthy | HealthStatus::Degraded => 200,
            HealthStatus::Unhealthy => 503,
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for HealthReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;

        /// The components as a map keyed by name, in registration order.
        struct Components<'a>(&'a [ComponentHealth]);

        impl serde::Serialize for Components<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|c| (&*c.name, c)))
            }
        }

        let mut s = serializer.serialize_struct("HealthReport", 2)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("components", &Components(&self.components))?;
        s.end()
    }
}

type Probe = Box<dyn Fn() -> (ComponentKind, Check) + Send + Sync>;

/// Shared, so that a report can copy the list and run the checks outside the lock.
type Entries = Vec<Arc<Entry>>;

struct Entry {
    name: Cow<'static, str>,
    critical: bool,
    liveness: bool,
    probe: Probe,
}

/// Named components whose state makes up the process's health; see the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use palisade::health::{Check, HealthRegistry, HealthStatus};
///
/// let health = HealthRegistry::new();
/// health.check("cache", false, || Check::unhealthy("redis unreachable"))?;
/// let report = health.readiness();
/// // Not critical: an unhealthy cache only degrades the process.
/// assert_eq!(report.status(), HealthStatus::Degraded);
/// assert_eq!(report.component("cache").unwrap().reason, "redis unreachable");
///
/// let taken = health.check("cache", true, || Check::healthy("ok")).unwrap_err();
/// assert_eq!(taken.field(), "name", "names are unique");
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct HealthRegistry {
    entries: Arc<RwLock<Entries>>,
}

impl HealthRegistry {
    /// An empty registry (whose reports are healthy).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{HealthRegistry, HealthStatus};
    ///
    /// let health = HealthRegistry::new();
    /// let report = health.readiness();
    /// assert_eq!(report.status(), HealthStatus::Healthy);
    /// assert!(report.components().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn push(
        &self,
        name: Cow<'static, str>,
        critical: bool,
        liveness: bool,
        probe: Probe,
    ) -> Result<(), ConfigError> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.iter().any(|e| e.name == name) {
            return Err(ConfigError::new(
                "name",
                "must be unique in the health registry",
                name,
            ));
        }
        entries.push(Arc::new(Entry {
            name,
            critical,
            liveness,
            probe,
        }));
        Ok(())
    }

    /// Registers `breaker` under its own name. A `critical` breaker that is open makes the
    /// report unhealthy; otherwise it only degrades it.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` when a component of that name is registered already.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use palisade::health::{HealthRegistry, HealthStatus};
    ///
    /// let payments = CircuitBreaker::new(CircuitBreaker::builder().name("payments").build()?);
    /// let health = HealthRegistry::new();
    /// health.circuit_breaker(&payments, true)?;
    /// assert_eq!(health.readiness().status(), HealthStatus::Healthy);
    /// payments.isolate();
    /// assert_eq!(health.readiness().status(), HealthStatus::Unhealthy, "critical and open");
    /// assert!(health.circuit_breaker(&payments, true).is_err(), "already registered");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn circuit_breaker<C: Clock + Send + Sync + 'static>(
        &self,
        breaker: &CircuitBreaker<C>,
        critical: bool,
    ) -> Result<(), ConfigError> {
        let breaker = breaker.clone();
        let name = breaker.name();
        self.push(
            name.into(),
            critical,
            false,
            Box::new(move || (ComponentKind::CircuitBreaker, breaker_check(&breaker))),
        )
    }

    /// Registers `bulkhead` under its own name; it is degraded once its calls in flight plus
    /// its queued calls reach `saturation` (in (0, 1], e.g. 0.9) of its current limit.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `saturation` when it is not in (0, 1], or `name` when a
    /// component of that name is registered already.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use palisade::health::{HealthRegistry, HealthStatus};
    ///
    /// let pool = Bulkhead::new(Bulkhead::builder().name("pool").max_concurrent(2).build()?);
    /// let health = HealthRegistry::new();
    /// health.bulkhead(&pool, true, 0.5)?;
    /// let _held = pool.try_acquire()?;
    /// assert_eq!(health.readiness().status(), HealthStatus::Degraded);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bulkhead<T: Clone + Send + Sync + 'static>(
        &self,
        bulkhead: &Bulkhead<T>,
        critical: bool,
        saturation: f64,
    ) -> Result<(), ConfigError> {
        let saturation = crate::validate::ratio("saturation", saturation)?;
        let bulkhead = bulkhead.clone();
        let name = bulkhead.name();
        self.push(
            name.into(),
            critical,
            false,
            Box::new(move || {
                (
                    ComponentKind::Bulkhead,
                    bulkhead_check(&bulkhead, saturation),
                )
            }),
        )
    }

    /// Registers the breakers of a per-host [`Keyed`] map under its
    /// name: healthy while every host's breaker is closed, degraded while some are not (one
    /// host down leaves the others to serve), and unhealthy, when critical, once at least
    /// `unhealthy_share` (in (0, 1]) of the hosts kept have breakers not closed. The reason
    /// counts them and names up to three.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `unhealthy_share` when it is not in (0, 1], or `name` when a
    /// component of that name is registered already.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use palisade::health::{HealthRegistry, HealthStatus};
    /// use palisade::keyed::{Keyed, KeyedConfig};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let per_host: Keyed<String, _> = Keyed::new(
    ///     KeyedConfig::default(),
    ///     CircuitBreaker::new(CircuitBreaker::builder().name("upstreams").consecutive_failures(1).build()?),
    /// );
    /// let health = HealthRegistry::new();
    /// health.keyed_breakers(&per_host, true, 0.5)?;
    /// per_host.run("a.example", || async { Ok::<_, palisade::Error<()>>(()) }).await.unwrap();
    /// let _ = per_host.run("b.example", || async { Err::<(), _>(palisade::Error::Inner(())) }).await;
    /// let report = health.readiness();
    /// assert_eq!(report.status(), HealthStatus::Unhealthy, "half of the hosts are down");
    /// assert_eq!(report.component("upstreams").unwrap().reason, "1 of 2 hosts not closed: \"b.example\"");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn keyed_breakers<K, C, KC>(
        &self,
        keyed: &Keyed<K, CircuitBreaker<C>, KC>,
        critical: bool,
        unhealthy_share: f64,
    ) -> Result<(), ConfigError>
    where
        K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
        C: Clock + Clone,
        KC: Clock,
    {
        let share = crate::validate::ratio("unhealthy_share", unhealthy_share)?;
        let keyed = keyed.clone();
        self.push(
            keyed.name().into(),
            critical,
            false,
            Box::new(move || {
                (
                    ComponentKind::KeyedCircuitBreakers,
                    keyed_breakers_check(&keyed, share),
                )
            }),
        )
    }

    /// Registers a [`RedisLink`](crate::redis::RedisLink) under its name, graded by its own
    /// breaker: healthy while closed (round trips succeed), degraded while half-open (a
    /// probe is deciding), and while open or isolated unhealthy when `critical`, degraded
    /// otherwise. Whether it should be critical depends on the limits' fail modes: with
    /// [`FailMode::Closed`](crate::redis::FailMode::Closed) an outage refuses every limited
    /// call, so the instance should leave the load balancer; with `Open` or `Local` it still
    /// serves. The reason names the last failure (with any password redacted).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` when a component of that name is registered already.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{HealthRegistry, HealthStatus};
    /// use palisade::redis::{RedisConfig, RedisLink};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let health = HealthRegistry::new();
    /// health.redis(&link, true)?;
    /// assert_eq!(health.readiness().status(), HealthStatus::Healthy);
    /// link.breaker().isolate();
    /// assert_eq!(health.readiness().status(), HealthStatus::Unhealthy);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(&self, link: &crate::redis::RedisLink, critical: bool) -> Result<(), ConfigError> {
        let link = link.clone();
        self.push(
            link.name().into(),
            critical,
            false,
            Box::new(move || (ComponentKind::RedisLink, redis_check(&link))),
        )
    }

    /// Registers a readiness check of your own under `name`. It is called on every report,
    /// on the caller's thread, so it should read state, not do I/O (keep a background task
    /// that pings the dependency and have the check read its last result).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` when a component of that name is registered already.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthRegistry, HealthStatus};
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    ///
    /// // A background task would update this flag; the check only reads it.
    /// let connected = Arc::new(AtomicBool::new(true));
    /// let health = HealthRegistry::new();
    /// let flag = connected.clone();
    /// health.check("broker", true, move || {
    ///     if flag.load(Ordering::Relaxed) { Check::healthy("connected") } else { Check::unhealthy("disconnected") }
    /// })?;
    /// assert_eq!(health.readiness().status(), HealthStatus::Healthy);
    /// connected.store(false, Ordering::Relaxed);
    /// assert_eq!(health.readiness().status(), HealthStatus::Unhealthy);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn check(
        &self,
        name: impl Into<Cow<'static, str>>,
        critical: bool,
        check: impl Fn() -> Check + Send + Sync + 'static,
    ) -> Result<(), ConfigError> {
        self.push(
            name.into(),
            critical,
            false,
            Box::new(move || (ComponentKind::Check, check())),
        )
    }

    /// Registers a check that counts for liveness as well as readiness: one that tells
    /// whether the process itself works (an event loop that still ticks, a worker that is not
    /// wedged). Liveness checks are always critical.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` when a component of that name is registered already.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthRegistry, HealthStatus};
    ///
    /// let health = HealthRegistry::new();
    /// health.liveness_check("event-loop", || Check::healthy("ticking"))?;
    /// health.check("db", true, || Check::unhealthy("down"))?;
    /// // Readiness sees both; liveness only the liveness check.
    /// assert_eq!(health.readiness().status(), HealthStatus::Unhealthy);
    /// assert_eq!(health.liveness().status(), HealthStatus::Healthy);
    /// assert_eq!(health.liveness().components().len(), 1);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn liveness_check(
        &self,
        name: impl Into<Cow<'static, str>>,
        check: impl Fn() -> Check + Send + Sync + 'static,
    ) -> Result<(), ConfigError> {
        self.push(
            name.into(),
            true,
            true,
            Box::new(move || (ComponentKind::Check, check())),
        )
    }

    /// Every component: should this instance get traffic?
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthRegistry};
    ///
    /// let health = HealthRegistry::new();
    /// health.check("db", true, || Check::unhealthy("down"))?;
    /// let report = health.readiness();
    /// assert_eq!((report.status().as_str(), report.http_status()), ("unhealthy", 503));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn readiness(&self) -> HealthReport {
        self.report(|_| true)
    }

    /// Only the liveness checks: should this process be restarted?
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::health::{Check, HealthRegistry, HealthStatus};
    ///
    /// let health = HealthRegistry::new();
    /// health.check("db", true, || Check::unhealthy("down"))?;
    /// // A dependency being down is no reason to restart the process.
    /// assert_eq!(health.liveness().status(), HealthStatus::Healthy);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn liveness(&self) -> HealthReport {
        self.report(|e| e.liveness)
    }

    fn report(&self, include: impl Fn(&Entry) -> bool) -> HealthReport {
        // Copied out, so the checks run without the lock.
        let entries: Entries = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let components = entries
            .iter()
            .filter(|e| include(e))
            .map(|e| {
                let (kind, check) = (e.probe)();
                let status = if e.critical {
                    check.status
                } else {
                    check.status.min(HealthStatus::Degraded)
                };
                ComponentHealth {
                    name: e.name.clone(),
                    kind,
                    status,
                    critical: e.critical,
                    reason: check.reason,
                }
            })
            .collect();
        HealthReport::from_components(components)
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_list()
            .entries(entries.iter().map(|e| &e.name))
            .finish()
    }
}

fn breaker_check<C: Clock>(breaker: &CircuitBreaker<C>) -> Check {
    let m = breaker.metrics();
    // Said in the trip model's own terms: under the two models that count only failures
    // (successes are not recorded), "n of n calls failed" would read as a total outage.
    let window = || match breaker.config().trip_model() {
        TripModel::ConsecutiveFailures(trips_at) => {
            format!("{} of {trips_at} failures in a row", m.failures)
        }
        TripModel::FailuresWithin {
            failures, duration, ..
        } => format!("{} of {failures} failures within {duration:?}", m.failures),
        _ => format!("{} of {} calls failed", m.failures, m.calls),
    };
    match m.state {
        CircuitState::Closed => Check::healthy(format!("closed: {}", window())),
        CircuitState::Disabled => Check::healthy("disabled: every call passes"),
        CircuitState::HalfOpen => Check::degraded("half-open: probing"),
        CircuitState::Open => Check::unhealthy(format!("open: {} rejected so far", m.rejected)),
        CircuitState::Isolated => Check::unhealthy("isolated by hand"),
    }
}

#[cfg(feature = "redis")]
fn redis_check(link: &crate::redis::RedisLink) -> Check {
    let m = link.metrics();
    let last = || match &m.last_failure {
        Some((cause, text)) => format!("last failure: {cause} ({text})"),
        None => String::from("no failure yet"),
    };
    match m.state {
        CircuitState::Closed | CircuitState::Disabled => Check::healthy(format!(
            "connected: {} round trips, {} failed",
            m.round_trips, m.failures
        )),
        CircuitState::HalfOpen => Check::degraded(format!("probing after failures; {}", last())),
        CircuitState::Open => Check::unhealthy(format!(
            "down: limits decided by their fail modes; {}",
            last()
        )),
        CircuitState::Isolated => {
            Check::unhealthy("isolated by hand: limits decided by their fail modes")
        }
    }
}

fn keyed_breakers_check<K, C, KC>(keyed: &Keyed<K, CircuitBreaker<C>, KC>, share: f64) -> Check
where
    K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clock + Clone,
    KC: Clock,
{
    let (named, open, down, total) = keyed.open_keys(3);
    if open == 0 {
        return Check::healthy(format!("{total} hosts, every breaker closed"));
    }
    let names: Vec<String> = named.iter().map(|k| format!("{k:?}")).collect();
    let more = if open > named.len() { ", ..." } else { "" };
    let reason = format!(
        "{open} of {total} hosts not closed: {}{more}",
        names.join(", ")
    );
    // Half-open breakers count as degraded only, as a single breaker's do: the break is
    // over and a probe decides. Counting them as down would keep a critical map unhealthy
    // for ever, since an unhealthy instance gets no traffic to probe with.
    if down > 0 && down as f64 >= share * total as f64 {
        Check::unhealthy(reason)
    } else {
        Check::degraded(reason)
    }
}

fn bulkhead_check<T>(bulkhead: &Bulkhead<T>, saturation: f64) -> Check {
    let m = bulkhead.metrics();
    let busy = u64::from(m.in_flight) + u64::from(m.queued);
    let limit = u64::from(m.max_concurrent.max(1));
    let reason = format!(
        "{} of {} slots in use, {} queued",
        m.in_flight, m.max_concurrent, m.queued
    );
    if busy as f64 >= saturation * limit as f64 {
        Check::degraded(reason)
    } else {
        Check::healthy(reason)
    }
}
