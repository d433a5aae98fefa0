//! CORE: delays between attempts, as plain iterators. Nothing here sleeps or reads a clock.
//!
//! A [`Backoff`] is a small `Copy` description: a base schedule (constant, linear or
//! exponential, each capped) and a [`Jitter`]. [`Backoff::iter`] turns it into an
//! `Iterator<Item = Duration>` of the delays after the first, second, … failed attempt. The
//! arithmetic saturates at the cap for any attempt count, and a seeded [`Rng`] makes the
//! jittered sequence reproducible.
//!
//! Jitter spreads the retries of many callers so they do not hit a recovering service in
//! lock-step (the formulas are those of Marc Brooker's "Exponential Backoff And Jitter",
//! AWS Architecture Blog, 2015):
//!
//! | Jitter | delay for base delay `b` |
//! |---|---|
//! | `None` | `b` |
//! | `Full` | uniform in `[0, b]` |
//! | `Equal` | `b/2` + uniform in `[0, b/2]` |
//! | `Decorrelated` | uniform in `[initial, 3 × previous delay]`, capped (ignores `b`) |
//! | `Proportional(p)` | `b × (1 + u)` with `u` uniform in `[-p, p]` |
//!
//! Every delay is at most the schedule's cap.

use std::time::Duration;

use crate::error::ConfigError;
use crate::rng::{Rng, SeededRng};

/// The longest delay, hint cap or deadline a config accepts: one day.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The shape of the delays between attempts, before jitter.
///
/// # Examples
///
/// ```
/// use palisade::retry::{Backoff, Jitter};
/// use std::time::Duration;
///
/// let ms = Duration::from_millis;
/// let backoff = Backoff::exponential(ms(100), 2.0, ms(1000));
/// let delays: Vec<_> = backoff.iter(1).take(6).collect();
/// assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
/// # let _ = Jitter::Full;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub(crate) schedule: Schedule,
    pub(crate) jitter: Jitter,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Schedule {
    Constant(Duration),
    Linear {
        initial: Duration,
        step: Duration,
        max: Duration,
    },
    Exponential {
        initial: Duration,
        factor: f64,
        max: Duration,
    },
}

/// How delays are randomised, so that many callers retrying at once do not hit a recovering
/// service in lock-step (the formulas of Marc Brooker's "Exponential Backoff And Jitter",
/// AWS Architecture Blog, 2015). For a base delay `b`:
///
/// | Jitter | delay |
/// |---|---|
/// | `None` | `b` |
/// | `Full` | uniform in `[0, b]` |
/// | `Equal` | `b/2` + uniform in `[0, b/2]` |
/// | `Decorrelated` | uniform in `[initial, 3 × previous delay]` (ignores `b`) |
/// | `Proportional(p)` | `b × (1 + u)`, `u` uniform in `[-p, p]` |
///
/// Every delay is then capped at the schedule's maximum.
///
/// # Examples
///
/// ```
/// use palisade::retry::{Backoff, Jitter};
/// use std::time::Duration;
///
/// let base = Duration::from_millis(100);
/// let equal = Backoff::constant(base).jitter(Jitter::Equal);
/// for delay in equal.iter(1).take(20) {
///     assert!(delay >= base / 2 && delay <= base);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// The base delay as is.
    None,
    /// Uniform in `[0, base]`.
    Full,
    /// Half the base delay plus uniform in `[0, base / 2]`.
    Equal,
    /// AWS's decorrelated jitter: uniform in `[initial, 3 × previous]`, capped.
    Decorrelated,
    /// The base delay, plus or minus up to this fraction of it (in `(0, 1]`).
    Proportional(f64),
}

impl Backoff {
    /// The same delay every time.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Backoff;
    /// use std::time::Duration;
    ///
    /// let delays: Vec<_> = Backoff::constant(Duration::from_millis(50)).iter(0).take(3).collect();
    /// assert_eq!(delays, [Duration::from_millis(50); 3]);
    /// ```
    pub const fn constant(delay: Duration) -> Self {
        Backoff {
            schedule: Schedule::Constant(delay),
            jitter: Jitter::None,
        }
    }

    /// `initial`, `initial + step`, `initial + 2 × step`, … capped at `max`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Backoff;
    /// use std::time::Duration;
    ///
    /// let ms = Duration::from_millis;
    /// let backoff = Backoff::linear(ms(100), ms(100), ms(250));
    /// let delays: Vec<_> = backoff.iter(0).take(4).collect();
    /// assert_eq!(delays, [ms(100), ms(200), ms(250), ms(250)]);
    /// ```
    pub const fn linear(initial: Duration, step: Duration, max: Duration) -> Self {
        Backoff {
            schedule: Schedule::Linear { initial, step, max },
            jitter: Jitter::None,
        }
    }

    /// `initial`, `initial × factor`, `initial × factor²`, … capped at `max`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Backoff;
    /// use std::time::Duration;
    ///
    /// let ms = Duration::from_millis;
    /// let backoff = Backoff::exponential(ms(100), 2.0, ms(500));
    /// let delays: Vec<_> = backoff.iter(0).take(5).collect();
    /// assert_eq!(delays, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
    /// ```
    pub const fn exponential(initial: Duration, factor: f64, max: Duration) -> Self {
        Backoff {
            schedule: Schedule::Exponential {
                initial,
                factor,
                max,
            },
            jitter: Jitter::None,
        }
    }

    /// The same schedule with `jitter`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Backoff, Jitter};
    /// use std::time::Duration;
    ///
    /// let base = Duration::from_millis(200);
    /// let full = Backoff::constant(base).jitter(Jitter::Full);
    /// assert!(full.iter(3).take(20).all(|d| d <= base));
    /// ```
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The longest delay this backoff produces.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Backoff;
    /// use std::time::Duration;
    ///
    /// let backoff = Backoff::exponential(Duration::from_millis(100), 2.0, Duration::from_secs(5));
    /// assert_eq!(backoff.cap(), Duration::from_secs(5));
    /// assert_eq!(Backoff::constant(Duration::from_secs(1)).cap(), Duration::from_secs(1));
    /// ```
    pub const fn cap(&self) -> Duration {
        match self.schedule {
            Schedule::Constant(d) => d,
            Schedule::Linear { max, .. } | Schedule::Exponential { max, .. } => max,
        }
    }

    const fn initial(&self) -> Duration {
        match self.schedule {
            Schedule::Constant(d) => d,
            Schedule::Linear { initial, .. } | Schedule::Exponential { initial, .. } => initial,
        }
    }

    /// The delays after each failed attempt, with the jitter drawn from a generator seeded
    /// with `seed`: the same seed gives the same delays on every run. (A retry draws its own
    /// from [`RetryConfigBuilder::seed`](super::RetryConfigBuilder::seed), or from entropy.)
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Backoff, Jitter};
    /// use std::time::Duration;
    ///
    /// // The same seed gives the same jittered delays.
    /// let backoff = Backoff::exponential(Duration::from_millis(10), 2.0, Duration::from_secs(1)).jitter(Jitter::Full);
    /// let a: Vec<_> = backoff.iter(7).take(5).collect();
    /// let b: Vec<_> = backoff.iter(7).take(5).collect();
    /// assert_eq!(a, b);
    /// ```
    pub fn iter(self, seed: u64) -> BackoffIter {
        self.iter_with(SeededRng::new(seed))
    }

    /// The delays, drawing jitter from `rng` (a retry's call forks its own).
    pub(crate) fn iter_with(self, rng: SeededRng) -> BackoffIter {
        BackoffIter {
            backoff: self,
            attempt: 0,
            previous: self.initial(),
            rng,
        }
    }

    /// The un-jittered delay after failed attempt `n` (1-based), saturating at the cap.
    fn base(&self, n: u32) -> Duration {
        let steps = n.saturating_sub(1);
        match self.schedule {
            Schedule::Constant(d) => d,
            Schedule::Linear { initial, step, max } => step
                .checked_mul(steps)
                .and_then(|grown| initial.checked_add(grown))
                .map_or(max, |d| d.min(max)),
            Schedule::Exponential {
                initial,
                factor,
                max,
            } => {
                // powi saturates to +inf and from_secs_f64 would panic on it: clamp first.
                let secs = initial.as_secs_f64() * factor.powi(steps.min(i32::MAX as u32) as i32);
                if secs.is_finite() && secs < max.as_secs_f64() {
                    Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max))
                } else {
                    max
                }
            }
        }
    }

    /// Checks the schedule and jitter, naming `backoff.<field>` in errors.
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        let in_section = |e: ConfigError| e.in_section("backoff");
        let cap = self.cap();
        match self.schedule {
            Schedule::Constant(_) => {}
            Schedule::Linear { initial, .. } | Schedule::Exponential { initial, .. } => {
                if cap.is_zero() {
                    return Err(in_section(ConfigError::new(
                        "max",
                        "must be greater than zero",
                        cap,
                    )));
                }
                if initial > cap {
                    return Err(in_section(ConfigError::new(
                        "initial",
                        "must be at most max",
                        initial,
                    )));
                }
            }
        }
        if let Schedule::Exponential { factor, .. } = self.schedule {
            if !(factor.is_finite() && factor >= 1.0) {
                return Err(in_section(ConfigError::new(
                    "factor",
                    "must be finite and at least 1",
                    factor,
                )));
            }
        }
        if cap > MAX_DELAY {
            return Err(in_section(ConfigError::new(
                "max",
                format!("must be at most {:?}", MAX_DELAY),
                cap,
            )));
        }
        if let Jitter::Proportional(p) = self.jitter {
            if !(p > 0.0 && p <= 1.0) {
                return Err(in_section(ConfigError::new(
                    "jitter",
                    "proportion must be in (0, 1]",
                    p,
                )));
            }
        }
        if self.jitter == Jitter::Decorrelated && self.initial().is_zero() {
            return Err(in_section(ConfigError::new(
                "initial",
                "must be greater than zero for decorrelated jitter",
                self.initial(),
            )));
        }
        Ok(self)
    }
}

/// The delays of a [`Backoff`], one per failed attempt; never ends.
#[derive(Debug, Clone)]
///
/// # Examples
///
/// ```
/// use palisade::retry::Backoff;
/// use std::time::Duration;
///
/// let ms = Duration::from_millis;
/// let delays: Vec<_> = Backoff::linear(ms(100), ms(50), ms(200)).iter(0).take(4).collect();
/// assert_eq!(delays, [ms(100), ms(150), ms(200), ms(200)]);
/// ```
pub struct BackoffIter {
    backoff: Backoff,
    attempt: u32,
    previous: Duration,
    rng: SeededRng,
}

/// `lo + (hi - lo) × u` for `u` in `[0, 1)`, in nanoseconds, without overflow.
fn between(lo: Duration, hi: Duration, u: f64) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = (hi - lo).as_secs_f64() * u;
    lo + Duration::try_from_secs_f64(span)
        .unwrap_or(hi - lo)
        .min(hi - lo)
}

impl Iterator for BackoffIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.attempt = self.attempt.saturating_add(1);
        let cap = self.backoff.cap();
        let base = self.backoff.base(self.attempt);
        let delay = match self.backoff.jitter {
            Jitter::None => base,
            Jitter::Full => between(Duration::ZERO, base, self.rng.next_f64()),
            Jitter::Equal => between(base / 2, base, self.rng.next_f64()),
            Jitter::Decorrelated => {
                let initial = self.backoff.initial();
                let hi = self.previous.saturating_mul(3).min(cap);
                between(initial.min(cap), hi, self.rng.next_f64())
            }
            Jitter::Proportional(p) => {
                let u = (self.rng.next_f64() * 2.0 - 1.0) * p;
                let secs = base.as_secs_f64() * (1.0 + u);
                Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(cap)
            }
        }
        .min(cap);
        self.previous = delay;
        Some(delay)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn take(b: Backoff, n: usize) -> Vec<Duration> {
        b.iter(9).take(n).collect()
    }

    #[test]
    fn schedules_without_jitter() {
        assert_eq!(take(Backoff::constant(ms(50)), 3), [ms(50); 3]);
        assert_eq!(
            take(Backoff::linear(ms(100), ms(50), ms(220)), 5),
            [ms(100), ms(150), ms(200), ms(220), ms(220)]
        );
        assert_eq!(
            take(Backoff::exponential(ms(10), 3.0, ms(500)), 6),
            [ms(10), ms(30), ms(90), ms(270), ms(500), ms(500)]
        );
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        let exp = Backoff::exponential(ms(1), 10.0, Duration::from_secs(3600));
        assert_eq!(exp.base(u32::MAX), Duration::from_secs(3600));
        assert_eq!(exp.base(400), Duration::from_secs(3600));
        let lin = Backoff::linear(ms(1), Duration::from_secs(1 << 40), Duration::from_secs(60));
        assert_eq!(lin.base(u32::MAX), Duration::from_secs(60));
        let mut it = exp.jitter(Jitter::Full).iter(1);
        it.attempt = u32::MAX - 1;
        assert!(it.next().unwrap() <= Duration::from_secs(3600));
        assert!(it.next().unwrap() <= Duration::from_secs(3600));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let exp = Backoff::exponential(ms(100), 2.0, ms(3000));
        let rng = || SeededRng::new(42);
        for (i, d) in exp
            .jitter(Jitter::Full)
            .iter_with(rng())
            .take(1000)
            .enumerate()
        {
            assert!(d <= exp.base(i as u32 + 1), "{d:?}");
        }
        for (i, d) in exp
            .jitter(Jitter::Equal)
            .iter_with(rng())
            .take(1000)
            .enumerate()
        {
            let b = exp.base(i as u32 + 1);
            assert!(d >= b / 2 && d <= b, "{d:?} for {b:?}");
        }
        for (i, d) in exp
            .jitter(Jitter::Proportional(0.2))
            .iter_with(rng())
            .take(1000)
            .enumerate()
        {
            let b = exp.base(i as u32 + 1).as_secs_f64();
            let d = d.as_secs_f64();
            assert!(
                d >= b * 0.8 - 1e-9 && d <= (b * 1.2).min(3.0) + 1e-9,
                "{d} for {b}"
            );
        }
        let mut previous = ms(100);
        for d in exp.jitter(Jitter::Decorrelated).iter_with(rng()).take(1000) {
            assert!(d >= ms(100) && d <= ms(3000) && d <= previous * 3, "{d:?}");
            previous = d;
        }
    }

    #[test]
    fn seeded_jitter_is_reproducible() {
        let b = Backoff::exponential(ms(100), 2.0, ms(3000)).jitter(Jitter::Full);
        assert_eq!(take(b, 20), take(b, 20));
        assert_ne!(take(b, 20), b.iter(10).take(20).collect::<Vec<_>>());
    }
}
