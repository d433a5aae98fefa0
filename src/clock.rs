//! Time as the policies see it: a [`Clock`] that reads [`Ticks`].
//!
//! Policies never call `std::time::Instant::now()` themselves. They read the clock they were
//! built with and pass the reading into their cores, which are pure functions of it. That is
//! what makes their decisions reproducible in tests:
//!
//! - [`TscClock`] (the default) reads the CPU's time-stamp counter, calibrated once against
//!   the OS clock (about 11 ns a reading on the bench VM, against 19 for the OS clock); its
//!   lagging reading, which an open breaker and a limiting rate limiter take, is a shared
//!   recent reading checked against the kernel's coarse clock (a few nanoseconds);
//! - [`MonotonicClock`] reads the system's monotonic clock (what `std::time::Instant` reads),
//!   with the kernel's coarse clock as its lagging reading;
//! - [`TokioClock`] (feature `tokio`) reads `tokio::time::Instant`, so `tokio::time::pause()`
//!   and `advance()` drive every policy in a test; the default with the `test-util` feature;
//! - [`CoarseClock`] reads only the kernel's coarse clock, trading precision for speed;
//! - `FakeClock` (feature `test-util`) is moved by hand.
//!
//! Besides [`Clock::now`], a clock may offer a cheaper reading that lags by a known bound,
//! [`Clock::now_lagging`]. It is for questions of the form "is this deadline still more than
//! the lag away?", which an open circuit breaker asks on every rejection; when the answer is
//! no, the breaker reads `now()`, so its decisions are those of the exact clock.
//!
//! # The default clock, and tests with paused time
//!
//! [`DefaultClock`] is `TscClock`: production gets the fast clock without asking. A rate
//! limiter that is not limiting reads the exact clock on every admission (its bucket is full,
//! and the new state counts from the exact time), which is where the counter's reading pays:
//! an admission on `MonotonicClock` pays `clock_gettime` instead. Reading tokio's clock costs
//! more still (it looks up the runtime's clock on every read, to follow `pause()`): on the
//! shared bench machine an open reject took about 37 ns on `TokioClock` against about 5 on
//! `MonotonicClock`, and as much on `TscClock`.
//!
//! Tests that drive time with `tokio::time::pause()` / `advance()` (or
//! `#[tokio::test(start_paused = true)]`) need the policies to read tokio's clock. Turn on the
//! `test-util` feature in your **dev-dependencies** and `DefaultClock` becomes `TokioClock` in
//! test builds only (cargo enables dev-dependencies' features for tests, examples and benches,
//! never for a plain `cargo build` of your binary):
//!
//! ```toml
//! [dependencies]
//! palisade = "0.1"
//!
//! [dev-dependencies]
//! palisade = { version = "0.1", features = ["test-util"] }
//! ```
//!
//! The trade-off: without `test-util`, a test on paused time sees the policies keep real
//! time. Sleeps (tokio's timer) jump ahead while breakers, retry deadlines and budgets, and the
//! fallback cache's age do not move, so a breaker does not half-open after `advance(break)`.
//! A handle built with an explicit clock (`with_clock(config, TokioClock)`) reads that clock
//! whatever the features say.
//!
//! Every clock counts from its own origin (the moment it was created), so readings of two
//! clocks cannot be compared. A clone shares its origin with the original.

use std::fmt;
use std::time::Duration;

/// A reading of a [`Clock`]: nanoseconds since the clock's origin.
///
/// Arithmetic saturates instead of overflowing: a `u64` of nanoseconds lasts 584 years.
///
/// # Examples
///
/// ```
/// use palisade::clock::Ticks;
/// use std::time::Duration;
///
/// let start = Ticks::from_duration(Duration::from_secs(1));
/// let later = start + Duration::from_millis(500);
/// assert_eq!(later.saturating_duration_since(start), Duration::from_millis(500));
/// assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ticks(u64);

impl Ticks {
    /// The clock's origin.
    pub const ZERO: Ticks = Ticks(0);

    /// The latest representable reading.
    pub const MAX: Ticks = Ticks(u64::MAX);

    /// A reading `nanos` nanoseconds after the origin.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::Ticks;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Ticks::from_nanos(1_500).as_duration(), Duration::from_nanos(1_500));
    /// ```
    #[inline]
    pub const fn from_nanos(nanos: u64) -> Self {
        Ticks(nanos)
    }

    /// A reading `d` after the origin, saturating at [`Ticks::MAX`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::Ticks;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Ticks::from_duration(Duration::from_micros(2)).as_nanos(), 2_000);
    /// assert_eq!(Ticks::from_duration(Duration::MAX), Ticks::MAX);
    /// ```
    #[inline]
    pub const fn from_duration(d: Duration) -> Self {
        Ticks(saturating_nanos(d))
    }

    /// Nanoseconds since the origin.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::Ticks;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Ticks::from_duration(Duration::from_millis(3)).as_nanos(), 3_000_000);
    /// ```
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time since the origin.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::Ticks;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Ticks::from_nanos(2_000_000_000).as_duration(), Duration::from_secs(2));
    /// ```
    #[inline]
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::Ticks;
    /// use std::time::Duration;
    ///
    /// let (a, b) = (Ticks::from_nanos(100), Ticks::from_nanos(250));
    /// assert_eq!(b.saturating_duration_since(a), Duration::from_nanos(150));
    /// assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    /// ```
    #[inline]
    pub const fn saturating_duration_since(self, earlier: Ticks) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Ticks::MAX`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::Ticks;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Ticks::ZERO.saturating_add(Duration::from_nanos(5)), Ticks::from_nanos(5));
    /// assert_eq!(Ticks::MAX.saturating_add(Duration::from_secs(1)), Ticks::MAX);
    /// ```
    #[inline]
    pub const fn saturating_add(self, d: Duration) -> Ticks {
        Ticks(self.0.saturating_add(saturating_nanos(d)))
    }

    /// `self - d`, saturating at [`Ticks::ZERO`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::Ticks;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Ticks::from_nanos(9).saturating_sub(Duration::from_nanos(4)), Ticks::from_nanos(5));
    /// assert_eq!(Ticks::from_nanos(9).saturating_sub(Duration::from_secs(1)), Ticks::ZERO);
    /// ```
    #[inline]
    pub const fn saturating_sub(self, d: Duration) -> Ticks {
        Ticks(self.0.saturating_sub(saturating_nanos(d)))
    }
}

impl std::ops::Add<Duration> for Ticks {
    type Output = Ticks;

    #[inline]
    fn add(self, rhs: Duration) -> Ticks {
        self.saturating_add(rhs)
    }
}

impl fmt::Debug for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticks({:?})", self.as_duration())
    }
}

#[inline]
pub(crate) const fn saturating_nanos(d: Duration) -> u64 {
    let nanos = d.as_nanos();
    if nanos > u64::MAX as u128 {
        u64::MAX
    } else {
        nanos as u64
    }
}

/// A source of [`Ticks`] that never goes backwards.
///
/// Implement it to drive policies from your own notion of time (a simulation, a test
/// harness). Readings must be monotonic: a policy may treat a reading earlier than one it has
/// already seen as equal to it.
///
/// # Examples
///
/// ```
/// use palisade::clock::{Clock, Ticks};
///
/// // A clock frozen at one instant, for a table test.
/// #[derive(Clone)]
/// struct Frozen(Ticks);
///
/// impl Clock for Frozen {
///     fn now(&self) -> Ticks {
///         self.0
///     }
/// }
///
/// assert_eq!(Frozen(Ticks::from_nanos(7)).now().as_nanos(), 7);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current reading.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, MonotonicClock};
    ///
    /// let clock = MonotonicClock::new();
    /// let start = clock.now();
    /// std::thread::sleep(std::time::Duration::from_millis(1));
    /// assert!(clock.now().saturating_duration_since(start) >= std::time::Duration::from_millis(1));
    /// ```
    fn now(&self) -> Ticks;

    /// A reading that may lag, for callers that only need to know a deadline is still well
    /// ahead: never later than what [`now`](Clock::now) returns at the same moment, and at
    /// most [`max_lag`](Clock::max_lag) earlier.
    ///
    /// An open circuit breaker reads this on every rejection and reads [`now`](Clock::now)
    /// only in the last `max_lag` of its break, so a clock with a cheaper approximate source
    /// makes rejections cheaper without moving the moment the break ends.
    ///
    /// The default is [`now`](Clock::now) itself, with no lag.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, MonotonicClock};
    ///
    /// let clock = MonotonicClock::new();
    /// let recent = clock.now_lagging();
    /// let exact = clock.now();
    /// assert!(recent <= exact);
    /// ```
    #[inline]
    fn now_lagging(&self) -> Ticks {
        self.now()
    }

    /// How far [`now_lagging`](Clock::now_lagging) may trail [`now`](Clock::now). The
    /// default is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, MonotonicClock};
    ///
    /// let lag = MonotonicClock::new().max_lag();
    /// assert!(lag <= std::time::Duration::from_millis(20));
    /// ```
    #[inline]
    fn max_lag(&self) -> Duration {
        Duration::ZERO
    }

    /// How far real time may already be past a [`now`](Clock::now) reading: one tick of a
    /// clock that only moves in ticks. Policies that start a wait from a reading start it
    /// this much later, so no wait ends before its duration in real time. The default is
    /// zero, for clocks read at full precision.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, CoarseClock, MonotonicClock};
    ///
    /// assert!(MonotonicClock::new().resolution().is_zero());
    /// # #[cfg(target_os = "linux")]
    /// assert!(!CoarseClock::new().resolution().is_zero());
    /// ```
    #[inline]
    fn resolution(&self) -> Duration {
        Duration::ZERO
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    #[inline]
    fn now(&self) -> Ticks {
        (**self).now()
    }

    #[inline]
    fn now_lagging(&self) -> Ticks {
        (**self).now_lagging()
    }

    #[inline]
    fn max_lag(&self) -> Duration {
        (**self).max_lag()
    }

    #[inline]
    fn resolution(&self) -> Duration {
        (**self).resolution()
    }
}

/// The clock policies use unless given another: [`TscClock`], or [`TokioClock`] with the
/// `test-util` and `tokio` features (see the [module docs](self) for why, and for tests with
/// paused time).
///
/// # Examples
///
/// ```
/// use palisade::clock::{Clock, DefaultClock};
///
/// let clock = DefaultClock::default();
/// let earlier = clock.now();
/// assert!(clock.now() >= earlier);
/// ```
#[cfg(all(feature = "tokio", feature = "test-util"))]
pub type DefaultClock = TokioClock;

/// The clock policies use unless given another: [`TscClock`], or `TokioClock` with the
/// `test-util` and `tokio` features (see the [module docs](self) for why, and for tests with
/// paused time).
///
/// # Examples
///
/// ```
/// use palisade::clock::{Clock, DefaultClock};
///
/// let clock = DefaultClock::default();
/// let earlier = clock.now();
/// assert!(clock.now() >= earlier);
/// ```
#[cfg(not(all(feature = "tokio", feature = "test-util")))]
pub type DefaultClock = TscClock;

/// A clock that reads the operating system's monotonic clock, as `std::time::Instant` does.
///
/// On Linux it reads `CLOCK_MONOTONIC` (what `Instant::now()` reads there) and offers the
/// kernel's coarse copy of the same clock, `CLOCK_MONOTONIC_COARSE`, as
/// [`now_lagging`](Clock::now_lagging): a few nanoseconds to read instead of about twenty on
/// a typical VM, at most one kernel tick behind (1 to 10 ms; [`max_lag`](Clock::max_lag)
/// allows [`MONOTONIC_MAX_LAG`]). An open breaker on this clock rejects without an exact
/// reading until the last few milliseconds of its break, and its break still ends on time.
/// Elsewhere both readings come from `std::time::Instant` and there is no lag.
///
/// It is a real clock: `tokio::time::pause()` does not move it. Choose it over the default
/// [`TscClock`] where the CPU's counter is not to be trusted (a hypervisor that migrates
/// guests between hosts without keeping the counter in step, which the kernel then reports
/// by not using `tsc` as its clock source), or to read exactly what `Instant::now()` reads.
///
/// # Examples
///
/// ```
/// use palisade::clock::{Clock, MonotonicClock};
///
/// let clock = MonotonicClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// assert!(clock.now_lagging() <= clock.now());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: MonotonicOrigin,
}

/// How far [`MonotonicClock::now_lagging`](Clock::now_lagging) may trail its exact reading on
/// Linux: above the longest kernel tick (10 ms at `HZ=100`) with room for a late tick.
///
/// If the kernel ever falls further behind (a stalled timekeeping CPU), an open breaker on
/// [`MonotonicClock`] or [`TscClock`] ends its break late by the excess, never early; a
/// rate limiter that is limiting may admit the excess's worth of tokens more, once (see
/// the [rate limiter's semantics](crate::rate_limiter#semantics)).
///
/// [`TscClock`]: crate::clock::TscClock
///
/// # Examples
///
/// ```
/// use palisade::clock::{Clock, MonotonicClock, MONOTONIC_MAX_LAG};
///
/// # #[cfg(target_os = "linux")]
/// assert_eq!(MonotonicClock::new().max_lag(), MONOTONIC_MAX_LAG);
/// ```
pub const MONOTONIC_MAX_LAG: Duration = Duration::from_millis(16);

#[cfg(any(target_os = "linux", target_os = "android"))]
type MonotonicOrigin = u64;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
type MonotonicOrigin = std::time::Instant;

impl MonotonicClock {
    /// A clock whose origin is now.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, MonotonicClock};
    ///
    /// let clock = MonotonicClock::new();
    /// assert!(clock.now().as_duration() < std::time::Duration::from_secs(1), "counts from now");
    /// ```
    pub fn new() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let origin = raw_nanos(rustix::time::ClockId::Monotonic);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let origin = std::time::Instant::now();
        MonotonicClock { origin }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Ticks {
        Ticks(raw_nanos(rustix::time::ClockId::Monotonic).saturating_sub(self.origin))
    }

    /// The coarse copy of the same kernel clock: it is the exact clock's value at the last
    /// tick, so it never leads it.
    #[inline]
    fn now_lagging(&self) -> Ticks {
        Ticks(coarse_nanos().saturating_sub(self.origin))
    }

    #[inline]
    fn max_lag(&self) -> Duration {
        MONOTONIC_MAX_LAG
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Ticks {
        Ticks(saturating_nanos(
            std::time::Instant::now().saturating_duration_since(self.origin),
        ))
    }
}

/// The default clock outside tests: the CPU's time-stamp counter, scaled to nanoseconds.
///
/// - **Exact reading** ([`now`](Clock::now)): the counter (`rdtsc` on x86-64, `cntvct_el0`
///   on AArch64), read through [`quanta`](https://docs.rs/quanta), which checks that the
///   counter is invariant (it ticks at one rate across cores and power states) and calibrates
///   it against the OS monotonic clock once per process (when the first clock is built:
///   0.6 ms on the bench VM, 200 ms at most). Where there is no usable counter, or (Linux
///   on x86) where the kernel does not keep its own time on it (its clock source is not
///   `tsc`: it found the counter drifting, or out of step between CPUs), the clock reads the
///   OS monotonic clock instead. On the 2-vCPU bench VM a reading took about 11 ns,
///   against about 19 for `clock_gettime(CLOCK_MONOTONIC)` ([`MonotonicClock`]'s exact
///   reading); it is the clock governor reads by default.
/// - **Lagging reading** ([`now_lagging`](Clock::now_lagging), Linux): the latest exact
///   reading any `TscClock` of the process took since the kernel's coarse clock last ticked.
///   Checking the tick costs a read of `CLOCK_MONOTONIC_COARSE` (about 4 ns there); the first
///   caller after each tick takes an exact reading and leaves it for the others. The reading
///   was exact when it was taken, so it never leads [`now`](Clock::now), and it was taken
///   since the tick the caller sees, so it trails by at most a tick ([`max_lag`](Clock::max_lag)
///   is [`MONOTONIC_MAX_LAG`], as for [`MonotonicClock`]). Elsewhere the lagging reading is
///   the exact one.
/// - **A counter that goes back** (many machines restart it from zero after a suspend to
///   RAM) would hold every clock still until it passed its old value again. The clock
///   leaves it for the OS clock for good: at once when the counter falls below its value at
///   the first clock's creation, otherwise at the first lagging reading after the jump
///   (until then, exact readings stand still, as any reading below an earlier one counts
///   as that one). It carries on from a reading no later than the counter's last (the
///   latest reading it shared, or the OS clock's time less 0.1 %), so breaks may end late
///   after such a jump, never early. The same happens when the kernel leaves the counter
///   while the process runs (checked every 10 s on a lagging reading).
///
/// The counter is calibrated once and not against later NTP corrections of the OS clock, so
/// over hours its readings may drift from the OS clock's by the system clock's frequency
/// error (parts per million): harmless for intervals (breaks, waits, rate periods), which is
/// all a policy measures. Readings of two `TscClock`s share the counter, not the origin.
///
/// It is a real clock: `tokio::time::pause()` does not move it. With the `test-util` feature,
/// [`DefaultClock`] is [`TokioClock`] instead (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use palisade::clock::{Clock, TscClock};
///
/// let clock = TscClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// assert!(clock.now_lagging() <= clock.now());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    source: &'static TscSource,
    /// Nanoseconds on the source at this clock's origin.
    origin_ns: u64,
}

/// The counter, calibrated once per process, and the lagging readings all clocks share.
#[derive(Debug)]
struct TscSource {
    /// `None` where the kernel does not keep its own time on the counter: the OS clock then
    /// (see [`counter_trusted`]).
    counter: Option<quanta::Clock>,
    /// The counter's raw value when the source was made: readings count from it, so they
    /// fit in nanoseconds for 584 years of uptime. [`LEFT`] once the counter is left (and
    /// from the start without one), so that every raw value is below it: the exact path
    /// needs no check of its own.
    base: std::sync::atomic::AtomicU64,
    /// The OS clock's reading when the source was made.
    os_base: u64,
    /// Added (wrapping) to the OS clock's reading once the counter is left, or without
    /// one: set before `base` becomes [`LEFT`] (`Release`), so a reader that loads
    /// [`LEFT`] (`Acquire`) reads it set.
    os_offset: std::sync::atomic::AtomicU64,
    /// Held while the counter is left, so that it is left once.
    leaving: std::sync::Mutex<()>,
    /// When the lagging readings next read the kernel's clock source again, in readings of
    /// this source.
    #[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
    recheck_at: std::sync::atomic::AtomicU64,
    // Not under loom: a process-wide static cannot hold loom's atomics, which live in one
    // model run; the loom model below builds its own.
    #[cfg(not(loom))]
    recent: recent::Recent,
}

impl TscSource {
    fn get() -> &'static TscSource {
        static SOURCE: std::sync::OnceLock<TscSource> = std::sync::OnceLock::new();
        SOURCE.get_or_init(|| {
            let counter =
                counter_trusted(kernel_clocksource(&mut [0; 32])).then(quanta::Clock::new);
            let os_base = os_nanos();
            TscSource {
                base: std::sync::atomic::AtomicU64::new(counter.as_ref().map_or(LEFT, |c| c.raw())),
                counter,
                os_base,
                // Without a counter, readings count from the source's start.
                os_offset: std::sync::atomic::AtomicU64::new(0u64.wrapping_sub(os_base)),
                leaving: std::sync::Mutex::new(()),
                #[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
                recheck_at: std::sync::atomic::AtomicU64::new(saturating_nanos(RECHECK)),
                #[cfg(not(loom))]
                recent: recent::Recent::new(),
            }
        })
    }

    /// Nanoseconds since the source was made; never below an earlier reading on the same
    /// core, unless the counter itself went back (see [`leave_counter`](Self::leave_counter)).
    #[inline(always)]
    fn nanos(&self) -> u64 {
        if let Some(counter) = &self.counter {
            let raw = counter.raw();
            // Acquire: a base of `LEFT` comes with the OS clock's offset.
            let base = self.base.load(std::sync::atomic::Ordering::Acquire);
            if raw >= base {
                return counter.delta_as_nanos(base, raw);
            }
            return self.leave_counter();
        }
        self.os_reading()
    }

    /// Whether the OS clock is read: the counter was left, or there was none.
    #[inline]
    fn is_left(&self) -> bool {
        self.base.load(std::sync::atomic::Ordering::Acquire) == LEFT
    }

    /// The OS clock's reading, carried on from the counter's (see
    /// [`leave_counter`](Self::leave_counter)).
    #[inline]
    fn os_reading(&self) -> u64 {
        os_nanos().wrapping_add(self.os_offset.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// As [`nanos`](Self::nanos), for the reading left for the lagging ones (taken by one
    /// caller a tick): here the counter is checked.
    ///
    /// - A reading more than a tick behind the latest shared one means the counter went
    ///   back. The shared reading is loaded first: it was taken before this call's, so only
    ///   a counter that went back puts it ahead (loaded after, a caller paused between the
    ///   two would find it moved on by others, and take a sound counter for a broken one).
    /// - Every [`RECHECK`] the kernel's clock source is read again (a file read of a few
    ///   microseconds, on one caller's lagging reading), and a counter the kernel has left
    ///   since (its watchdog found it drifting) is left too.
    #[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
    fn nanos_checked(&self) -> u64 {
        self.checked(self.recent.latest())
    }

    /// [`nanos_checked`](Self::nanos_checked) given the shared reading loaded before it.
    #[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
    fn checked(&self, latest: u64) -> u64 {
        let ns = self.nanos();
        if went_back(ns, latest) {
            return self.leave_counter();
        }
        let recheck_at = self.recheck_at.load(std::sync::atomic::Ordering::Relaxed);
        if ns >= recheck_at && !self.is_left() {
            // Racing callers may each read the file once; no more.
            self.recheck_at.store(
                ns.saturating_add(saturating_nanos(RECHECK)),
                std::sync::atomic::Ordering::Relaxed,
            );
            if !counter_trusted(kernel_clocksource(&mut [0; 32])) {
                return self.leave_counter();
            }
        }
        ns
    }

    /// Leaves the counter for the OS clock for good.
    ///
    /// A counter that went back would hold every clock of the process still (a reading
    /// below an earlier one counts as that one) until it passed its old value again, which
    /// after a suspend that reset it is as long as the machine had run: breaks that never
    /// end, buckets that never refill. So the source reads the OS clock from then on,
    /// carrying on from the later of the latest shared reading and the OS clock's time since
    /// the source was made less [`MAX_DRIFT_PPM`] of it. Neither is ahead of what the counter
    /// read (the counter counted that time too, and drifts from the OS clock by less than
    /// that), so no break ends early and no bucket gains tokens; exact readings handed out
    /// since the shared one may have been later, and clocks then stand still until the OS
    /// clock passes them (a break ends late by that much, never early).
    ///
    /// The switch happens once, under a lock, and reads the OS clock there: a caller paused
    /// before the lock cannot base the offset on a reading older than those others were
    /// given meanwhile. Once left, every exact reading comes here (its raw value is below
    /// [`LEFT`]) and reads the OS clock without the lock.
    #[cold]
    #[inline(never)]
    fn leave_counter(&self) -> u64 {
        if !self.is_left() {
            let _guard = self
                .leaving
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !self.is_left() {
                #[cfg(not(loom))]
                let latest = self.recent.latest();
                #[cfg(loom)]
                let latest = 0u64;
                let os = os_nanos();
                let elapsed = os.saturating_sub(self.os_base);
                let carry_on = latest.max(elapsed - elapsed / (1_000_000 / MAX_DRIFT_PPM));
                self.os_offset.store(
                    carry_on.wrapping_sub(os),
                    std::sync::atomic::Ordering::Relaxed,
                );
                self.base.store(LEFT, std::sync::atomic::Ordering::Release);
            }
        }
        self.os_reading()
    }
}

/// [`TscSource::base`] once the counter is left: above every raw value.
const LEFT: u64 = u64::MAX;

/// How often a `TscClock` reads the kernel's clock source again (see
/// [`TscSource::nanos_checked`]).
#[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
const RECHECK: Duration = Duration::from_secs(10);

/// The most the counter and the OS clock drift apart, in parts per million: the kernel slews
/// its clock for NTP by at most 500 ppm, and the counter's calibration errs by far less.
const MAX_DRIFT_PPM: u64 = 1_000;

/// Whether a reading `ns` is more than a tick behind `latest`, a reading taken earlier:
/// the counter went back (it restarts from zero after a suspend to RAM on many machines),
/// which no skew between cores explains.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[cfg_attr(loom, allow(dead_code))]
fn went_back(ns: u64, latest: u64) -> bool {
    ns.saturating_add(saturating_nanos(MONOTONIC_MAX_LAG)) < latest
}

/// Whether to read the CPU's counter, given the clock source the kernel keeps its own time
/// on (Linux on x86). quanta checks that the CPU calls its counter invariant; the kernel
/// goes further: it watches the counter against other clocks at run time and leaves it
/// when it drifts or jumps (as on some hypervisors), or never takes it when the counters
/// of different CPUs are out of step. A `TscClock` then reads the OS clock, as the kernel
/// does: checked when the first clock is built, and again every [`RECHECK`] on a lagging
/// reading. Unknown (no sysfs, another architecture): the counter, as quanta decides.
fn counter_trusted(kernel_clocksource: Option<&str>) -> bool {
    kernel_clocksource.is_none_or(|source| source.trim() == "tsc")
}

/// The clock source the kernel keeps its time on, where that decides between the counter
/// and the OS clock (Linux on x86), read into `buf` (no allocation: it is read again on
/// a lagging reading every [`RECHECK`]).
fn kernel_clocksource(buf: &mut [u8; 32]) -> Option<&str> {
    if !cfg!(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86", target_arch = "x86_64")
    )) {
        return None;
    }
    use std::io::Read;
    let mut file =
        std::fs::File::open("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .ok()?;
    let len = file.read(buf).ok()?;
    std::str::from_utf8(&buf[..len]).ok()
}

/// The OS monotonic clock in nanoseconds, from an origin of its own.
#[inline]
fn os_nanos() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let nanos = raw_nanos(rustix::time::ClockId::Monotonic);
    // Elsewhere the "coarse" clock is the exact one.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let nanos = coarse_nanos();
    nanos
}

impl TscClock {
    /// A clock whose origin is now. The first clock built in a process calibrates the
    /// counter (see the type's docs); later ones only read it.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, TscClock};
    ///
    /// let clock = TscClock::new();
    /// assert!(clock.now().as_duration() < std::time::Duration::from_secs(1), "counts from now");
    /// ```
    pub fn new() -> Self {
        let source = TscSource::get();
        TscClock {
            source,
            origin_ns: source.nanos(),
        }
    }
}

impl Default for TscClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TscClock {
    // `#[inline(always)]`, with `TscSource::nanos`: left to the compiler, a rate limiter's
    // admission called both out of line.
    #[inline(always)]
    fn now(&self) -> Ticks {
        Ticks(self.source.nanos().saturating_sub(self.origin_ns))
    }

    #[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
    #[inline]
    fn now_lagging(&self) -> Ticks {
        let source = self.source;
        let ns = source.recent.get(coarse_nanos(), || source.nanos_checked());
        Ticks(ns.saturating_sub(self.origin_ns))
    }

    #[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
    #[inline]
    fn max_lag(&self) -> Duration {
        MONOTONIC_MAX_LAG
    }
}

/// The lagging reading [`TscClock`] shares between threads.
///
/// # Memory ordering
///
/// A caller that sees a new tick takes an exact reading, raises the shared reading to it
/// (`fetch_max`, `Relaxed`: readings only go up) and then stores the tick (`Release`). A
/// caller that loads the tick it just read from the kernel (`Acquire`) therefore loads a
/// reading at least as recent as the one stored with that tick, which was taken after that
/// tick began: at most a tick old. Any value it loads was some caller's exact reading,
/// taken before it was stored, so it never leads the loader's own exact reading. Callers
/// racing across a tick may store an older tick last; later callers then see a mismatch and
/// refresh again, which costs a reading, never correctness.
// Under loom only its model reads it: `TscSource` holds none there (see its field).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod recent {
    use crate::sync::{AtomicU64, CachePadded, Ordering};

    /// No tick stored yet: no kernel reading equals it.
    const NONE: u64 = u64::MAX;

    #[derive(Debug)]
    pub(crate) struct Recent {
        tick: CachePadded<(AtomicU64, AtomicU64)>,
    }

    impl Recent {
        pub(crate) fn new() -> Self {
            Recent {
                tick: CachePadded((AtomicU64::new(NONE), AtomicU64::new(0))),
            }
        }

        /// The shared reading if it was taken during the coarse tick `tick`; otherwise an
        /// exact reading from `exact`, left for the other callers in this tick.
        // Read by `TscClock::now_lagging`, which only Linux has.
        #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
        #[inline]
        pub(crate) fn get(&self, tick: u64, exact: impl FnOnce() -> u64) -> u64 {
            let (stored_tick, reading) = &*self.tick;
            if stored_tick.load(Ordering::Acquire) == tick {
                return reading.load(Ordering::Relaxed);
            }
            let ns = exact();
            reading.fetch_max(ns, Ordering::Relaxed);
            stored_tick.store(tick, Ordering::Release);
            ns
        }

        /// The latest reading shared (zero before the first).
        pub(crate) fn latest(&self) -> u64 {
            self.tick.1.load(Ordering::Relaxed)
        }
    }
}

/// A clock that trades precision for speed: the kernel's coarse monotonic clock on Linux
/// (`CLOCK_MONOTONIC_COARSE`, a few nanoseconds to read instead of about twenty on a
/// typical VM, ticking every 1 to 10 ms), [`MonotonicClock`]'s reading elsewhere.
///
/// Every reading is coarse, so timed windows and slow-call thresholds get the same
/// granularity (keep thresholds well above it). A reading may trail real time by up to a
/// tick, which [`resolution`](Clock::resolution) reports ([`MONOTONIC_MAX_LAG`] on Linux, a
/// tick with room for a late one), so a breaker starts its break that much after the reading:
/// a break never ends early, and may end up to that much plus a tick late. For
/// cheap rejections alone the default [`TscClock`] (or [`MonotonicClock`]) is the better
/// choice: it uses its lagging reading only where a lag cannot change a decision.
///
/// It is a real clock: `tokio::time::pause()` does not move it. Use [`TokioClock`] (the
/// default) in tests that pause time.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::CircuitBreaker;
/// use palisade::clock::{Clock, CoarseClock};
///
/// let breaker = CircuitBreaker::with_clock(CircuitBreaker::builder().build()?, CoarseClock::new());
/// let clock = CoarseClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// # let _ = breaker;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CoarseClock {
    origin: u64,
    tick: Duration,
}

impl CoarseClock {
    /// A clock whose origin is now.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, CoarseClock};
    ///
    /// let clock = CoarseClock::new();
    /// let a = clock.now();
    /// assert!(clock.now() >= a);
    /// ```
    pub fn new() -> Self {
        CoarseClock {
            origin: coarse_nanos(),
            tick: coarse_tick(),
        }
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now(&self) -> Ticks {
        Ticks(coarse_nanos().saturating_sub(self.origin))
    }

    #[inline]
    fn resolution(&self) -> Duration {
        self.tick
    }
}

/// How far real time may be past a coarse reading: a kernel tick, with the same room for a
/// late tick that [`MonotonicClock`] allows its lagging reading.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse_tick() -> Duration {
    MONOTONIC_MAX_LAG
}

/// Elsewhere the coarse clock is the exact one.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn coarse_tick() -> Duration {
    Duration::ZERO
}

/// Nanoseconds on the coarse monotonic clock.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn coarse_nanos() -> u64 {
    raw_nanos(rustix::time::ClockId::MonotonicCoarse)
}

/// Nanoseconds on one of the kernel's monotonic clocks.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn raw_nanos(id: rustix::time::ClockId) -> u64 {
    let t = rustix::time::clock_gettime(id);
    // The monotonic clocks count from boot: both fields are non-negative.
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// Elsewhere, the exact clock, from a process-wide origin.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[inline]
fn coarse_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    saturating_nanos(std::time::Instant::now().saturating_duration_since(origin))
}

/// A clock that reads `tokio::time::Instant`, so `tokio::time::pause()` and
/// `tokio::time::advance()` move it.
///
/// It can be created and read outside a runtime; there it reads real time, like
/// `tokio::time::Instant::now()`.
///
/// # Examples
///
/// ```
/// use palisade::clock::{Clock, TokioClock};
/// use std::time::Duration;
///
/// #[tokio::main(flavor = "current_thread", start_paused = true)]
/// async fn main() {
///     let clock = TokioClock::new();
///     let before = clock.now();
///     tokio::time::advance(Duration::from_secs(5)).await;
///     assert_eq!(clock.now().saturating_duration_since(before), Duration::from_secs(5));
/// }
/// # #[cfg(not(all(feature = "tokio")))] fn main() {}
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

#[cfg(feature = "tokio")]
impl TokioClock {
    /// A clock whose origin is now.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, TokioClock};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let clock = TokioClock::new();
    /// tokio::time::advance(Duration::from_millis(30)).await;
    /// assert_eq!(clock.now().as_duration(), Duration::from_millis(30));
    /// # }
    /// ```
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

#[cfg(feature = "tokio")]
impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Ticks {
        Ticks(saturating_nanos(
            tokio::time::Instant::now().saturating_duration_since(self.origin),
        ))
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use fake::FakeClock;

#[cfg(any(test, feature = "test-util"))]
mod fake {
    use super::{Clock, Ticks, saturating_nanos};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A clock that only moves when told to; clones share the same time.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::{Clock, FakeClock, Ticks};
    /// use std::time::Duration;
    ///
    /// let clock = FakeClock::new();
    /// let shared = clock.clone();
    /// clock.advance(Duration::from_secs(3));
    /// assert_eq!(shared.now(), Ticks::from_duration(Duration::from_secs(3)));
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    #[derive(Debug, Clone, Default)]
    pub struct FakeClock {
        nanos: Arc<AtomicU64>,
    }

    impl FakeClock {
        /// A clock at its origin.
        ///
        /// # Examples
        ///
        /// ```
        /// use palisade::clock::{Clock, FakeClock, Ticks};
        ///
        /// assert_eq!(FakeClock::new().now(), Ticks::ZERO);
        /// ```
        pub fn new() -> Self {
            Self::default()
        }

        /// Moves the clock forward by `d` (saturating).
        ///
        /// # Examples
        ///
        /// ```
        /// use palisade::clock::{Clock, FakeClock, Ticks};
        /// use std::time::Duration;
        ///
        /// let clock = FakeClock::new();
        /// clock.advance(Duration::from_millis(250));
        /// clock.advance(Duration::from_millis(250));
        /// assert_eq!(clock.now(), Ticks::from_duration(Duration::from_millis(500)));
        /// ```
        pub fn advance(&self, d: Duration) {
            let d = saturating_nanos(d);
            // fetch_update instead of fetch_add so the clock saturates instead of wrapping.
            let _ = self
                .nanos
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    Some(n.saturating_add(d))
                });
        }

        /// Sets the clock to `t`, unless that would move it backwards.
        ///
        /// # Examples
        ///
        /// ```
        /// use palisade::clock::{Clock, FakeClock, Ticks};
        ///
        /// let clock = FakeClock::new();
        /// clock.set(Ticks::from_nanos(10));
        /// clock.set(Ticks::from_nanos(4));
        /// assert_eq!(clock.now(), Ticks::from_nanos(10), "never backwards");
        /// ```
        pub fn set(&self, t: Ticks) {
            self.nanos.fetch_max(t.as_nanos(), Ordering::AcqRel);
        }
    }

    impl Clock for FakeClock {
        #[inline]
        fn now(&self) -> Ticks {
            Ticks::from_nanos(self.nanos.load(Ordering::Acquire))
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::recent::Recent;
    use crate::sync::{Arc, AtomicU64, Ordering};

    /// Callers sharing the lagging reading while time moves across ticks: every reading
    /// they get was taken within the tick they saw (never more than a tick old) and never
    /// leads the exact clock read after it.
    #[test]
    fn a_shared_lagging_reading_is_never_ahead_and_never_more_than_a_tick_old() {
        const TICK: u64 = 10;
        loom::model(|| {
            let time = Arc::new(AtomicU64::new(0));
            let recent = Arc::new(Recent::new());
            let ticker = {
                let time = time.clone();
                loom::thread::spawn(move || {
                    time.fetch_add(6, Ordering::SeqCst);
                    time.fetch_add(6, Ordering::SeqCst);
                })
            };
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (time, recent) = (time.clone(), recent.clone());
                    loom::thread::spawn(move || {
                        let tick = time.load(Ordering::SeqCst) / TICK * TICK;
                        let got = recent.get(tick, || time.load(Ordering::SeqCst));
                        let exact_after = time.load(Ordering::SeqCst);
                        assert!(got <= exact_after, "{got} leads the exact {exact_after}");
                        assert!(got >= tick, "{got} was taken before the tick {tick}");
                    })
                })
                .collect();
            ticker.join().unwrap();
            readers.into_iter().for_each(|r| r.join().unwrap());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(loom))]
    #[test]
    fn a_shared_lagging_reading_is_refreshed_once_per_tick_and_never_goes_down() {
        let recent = recent::Recent::new();
        let exact_reads = std::cell::Cell::new(0);
        let read = |ns: u64| {
            exact_reads.set(exact_reads.get() + 1);
            ns
        };
        // The first caller of a tick reads the exact clock; the next ones get its reading.
        assert_eq!(recent.get(100, || read(105)), 105);
        assert_eq!(recent.get(100, || read(999)), 105);
        assert_eq!(recent.get(100, || read(999)), 105);
        assert_eq!(exact_reads.get(), 1);
        // A new tick: a fresh reading.
        assert_eq!(recent.get(110, || read(112)), 112);
        assert_eq!(exact_reads.get(), 2);
        // A caller whose tick is older (it raced across the tick) stores its tick last: its
        // older reading does not lower the shared one, and the next caller on the current
        // tick refreshes rather than take a reading of the old tick.
        assert_eq!(recent.get(100, || read(108)), 108);
        assert_eq!(recent.get(110, || read(113)), 113);
        assert_eq!(recent.get(110, || read(999)), 113);
        assert_eq!(exact_reads.get(), 4);
    }

    #[test]
    fn the_counter_is_read_only_where_the_kernel_keeps_its_time_on_it() {
        assert!(counter_trusted(Some("tsc\n")));
        assert!(!counter_trusted(Some("kvm-clock\n")));
        assert!(!counter_trusted(Some("hpet\n")));
        assert!(!counter_trusted(Some("acpi_pm\n")));
        // No sysfs, or an architecture where the question does not arise: quanta decides.
        assert!(counter_trusted(None));
    }

    /// A source over quanta's mock counter, made at the counter's value `base`.
    #[cfg(not(loom))]
    fn mock_source(base: u64) -> (TscSource, std::sync::Arc<quanta::Mock>) {
        let (counter, mock) = quanta::Clock::mock();
        mock.increment(base);
        (source_over(Some(counter), base), mock)
    }

    /// A source over `counter` (none: the OS clock), made at the counter's value `base`.
    #[cfg(not(loom))]
    fn source_over(counter: Option<quanta::Clock>, base: u64) -> TscSource {
        let os_base = os_nanos();
        TscSource {
            base: std::sync::atomic::AtomicU64::new(if counter.is_some() { base } else { LEFT }),
            counter,
            os_base,
            os_offset: std::sync::atomic::AtomicU64::new(0u64.wrapping_sub(os_base)),
            leaving: std::sync::Mutex::new(()),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            recheck_at: std::sync::atomic::AtomicU64::new(u64::MAX),
            recent: recent::Recent::new(),
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn a_counter_that_restarts_below_its_base_is_left_for_the_os_clock_without_going_back() {
        let (source, mock) = mock_source(1_000_000_000);
        mock.increment(5_000_000_000u64);
        assert_eq!(source.nanos(), 5_000_000_000);
        // The lagging readings share it.
        assert_eq!(source.recent.get(1, || source.nanos()), 5_000_000_000);
        // A suspend resets the counter: from zero, below the source's base.
        mock.decrement(6_000_000_000u64);
        let after = source.nanos();
        assert!(source.is_left());
        // Carries on from the latest shared reading (the OS clock has run for less).
        assert!(after >= 5_000_000_000, "went back to {after}");
        assert!(
            after < 5_000_000_000 + 1_000_000_000,
            "jumped ahead to {after}"
        );
        // From now on the OS clock, never back, whatever the counter does.
        mock.increment(1u64);
        let mut last = after;
        for _ in 0..1_000 {
            let ns = source.nanos();
            assert!(ns >= last, "{ns} < {last}");
            last = ns;
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn a_reset_carries_on_from_the_os_clock_less_its_drift_never_ahead_of_the_counter() {
        const HOURS_2: u64 = 7_200_000_000_000;
        // The OS clock ran 27.4 ms more than the counter over two hours (the counter is
        // 3.8 ppm slow, as measured on the bench VM), and no lagging reading was shared
        // since the start: the switch carries on from the OS clock's time, less the most
        // the two may drift apart, so it is not ahead of the counter's last reading.
        let (mut source, mock) = mock_source(1_000_000_000);
        source.os_base = os_nanos() - (HOURS_2 + 27_400_000);
        mock.increment(HOURS_2);
        let before = source.nanos();
        mock.decrement(HOURS_2 + 500_000_000);
        let after = source.nanos();
        assert!(source.is_left());
        assert!(
            after <= before,
            "jumped ahead by {} ms",
            (after - before) / 1_000_000
        );
        // Behind by at most the drift allowance: clocks stand still that long at worst.
        assert!(before - after <= HOURS_2 / 1_000, "{before} - {after}");
    }

    #[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
    #[test]
    fn a_counter_that_goes_back_but_not_below_its_base_is_left_at_the_next_lagging_reading() {
        let (source, mock) = mock_source(1_000);
        mock.increment(10_000_000_000u64);
        assert_eq!(
            source.recent.get(1, || source.nanos_checked()),
            10_000_000_000
        );
        mock.decrement(4_000_000_000u64);
        // An exact reading alone cannot tell: it reads 6 s, which the policies take for 10.
        assert_eq!(source.nanos(), 6_000_000_000);
        assert!(!source.is_left());
        // The first lagging reading of the next tick compares it with the shared one.
        let lagging = source.recent.get(2, || source.nanos_checked());
        assert!(source.is_left());
        assert!(lagging >= 10_000_000_000);
        assert!(source.nanos() >= lagging);
    }

    #[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
    #[test]
    fn a_caller_paused_after_loading_the_shared_reading_does_not_leave_a_sound_counter() {
        // The check loads the shared reading before its own: while it is paused, others
        // move the shared reading on by more than a tick, and its own, taken after, is later
        // still. Had it loaded the shared one after its own, this is a counter gone back.
        let (source, mock) = mock_source(1_000);
        mock.increment(1_000_000_000u64);
        let latest = source.recent.get(1, || source.nanos_checked());
        let loaded = source.recent.latest();
        assert_eq!(loaded, latest);
        mock.increment(100_000_000u64);
        source.recent.get(2, || source.nanos()); // another caller, 100 ms on
        mock.increment(1u64);
        let ns = source.checked(loaded);
        assert!(!source.is_left());
        assert_eq!(ns, 1_100_000_001);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_jump_back_within_a_tick_is_not_taken_for_a_reset() {
        let tick = saturating_nanos(MONOTONIC_MAX_LAG);
        assert!(!went_back(1_000, 1_000));
        assert!(
            !went_back(5 * tick, 6 * tick),
            "a tick behind: skew or a lagging value"
        );
        assert!(went_back(5 * tick, 6 * tick + 1));
        assert!(went_back(0, 10 * tick));
    }

    #[cfg(not(loom))]
    #[test]
    fn the_counter_is_left_once_and_a_source_without_one_counts_from_its_start() {
        let (source, mock) = mock_source(1_000);
        mock.increment(2_000_000_000u64);
        source.recent.get(1, || source.nanos());
        let first = source.leave_counter();
        assert!(source.is_left());
        assert!(first >= 2_000_000_000, "{first}");
        let offset = source.os_offset.load(std::sync::atomic::Ordering::Relaxed);
        // Another caller, or the same one again: the offset stays, the readings go on.
        mock.increment(60_000_000_000u64);
        source.recent.get(2, || source.nanos());
        let second = source.leave_counter();
        assert_eq!(
            source.os_offset.load(std::sync::atomic::Ordering::Relaxed),
            offset
        );
        assert!(
            second >= first && second < first + 1_000_000_000,
            "{first} {second}"
        );
        // Without a counter: the OS clock, from zero at the start.
        let os_only = source_over(None, 0);
        assert!(os_only.is_left());
        let start = os_only.nanos();
        assert!(start < 1_000_000_000, "{start}");
        assert!(os_only.nanos() >= start);
    }

    #[test]
    fn the_kernel_clocksource_fits_its_buffer() {
        // The longest source names ("arch_sys_counter", "kvm-clock") fit, with the newline.
        let mut buf = [0; 32];
        if let Some(source) = kernel_clocksource(&mut buf) {
            assert!(source.ends_with('\n'), "{source:?} was cut short");
            assert!(!source.trim().is_empty());
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn tsc_clock_readings_never_go_back_and_the_lagging_one_never_leads() {
        let clock = TscClock::new();
        let mut last = clock.now();
        for _ in 0..200_000 {
            let lagging = clock.now_lagging();
            let exact = clock.now();
            assert!(lagging <= exact, "{lagging:?} > {exact:?}");
            assert!(exact >= last, "{exact:?} < {last:?}");
            last = exact;
        }
        // Clocks built later count from their own origin, over the same counter.
        let later = TscClock::new();
        assert!(later.now() <= clock.now());
    }

    #[cfg(not(loom))]
    #[test]
    fn tsc_clock_counts_nanoseconds_as_the_os_clock_does() {
        // Scaling, not speed: a counter left unscaled, or scaled twice, is off by the CPU's
        // frequency in GHz. The bound is loose so that a busy machine cannot fail it.
        let (tsc, os) = (TscClock::new(), MonotonicClock::new());
        let (tsc_start, os_start) = (tsc.now(), os.now());
        let mut os_elapsed = Duration::ZERO;
        // Bounded: each iteration reads the OS clock; 5 ms pass long before the bound.
        for _ in 0..100_000_000u64 {
            os_elapsed = os.now().saturating_duration_since(os_start);
            if os_elapsed >= Duration::from_millis(5) {
                break;
            }
        }
        let tsc_elapsed = tsc.now().saturating_duration_since(tsc_start);
        assert!(os_elapsed >= Duration::from_millis(5));
        assert!(
            tsc_elapsed >= os_elapsed / 2 && tsc_elapsed <= os_elapsed * 2,
            "tsc {tsc_elapsed:?} against os {os_elapsed:?}"
        );
    }

    #[test]
    fn ticks_saturate_instead_of_overflowing() {
        assert_eq!(Ticks::MAX + Duration::from_secs(1), Ticks::MAX);
        assert_eq!(Ticks::from_duration(Duration::MAX), Ticks::MAX);
        assert_eq!(
            Ticks::ZERO.saturating_sub(Duration::from_secs(1)),
            Ticks::ZERO
        );
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn coarse_clock_resolution_covers_the_kernel_tick() {
        let tick = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
        let tick = Duration::new(tick.tv_sec as u64, tick.tv_nsec as u32);
        let clock = CoarseClock::new();
        assert!(
            clock.resolution() >= tick,
            "{:?} < {tick:?}",
            clock.resolution()
        );
        // An exact clock trails real time by nothing.
        assert!(MonotonicClock::new().resolution().is_zero());
    }

    #[test]
    fn fake_clock_never_goes_backwards() {
        let clock = FakeClock::new();
        clock.advance(Duration::from_secs(10));
        clock.set(Ticks::from_duration(Duration::from_secs(2)));
        assert_eq!(clock.now(), Ticks::from_duration(Duration::from_secs(10)));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Ticks::MAX);
    }
}
