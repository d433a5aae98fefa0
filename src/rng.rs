//! Randomness for jitter (and later fault injection), reproducible when seeded.
//!
//! [`Rng`] is the small interface the policies draw from; rand's `SmallRng` implements it.
//! [`RngSource`] is what a policy handle keeps: a stream of seeds from which each call forks
//! its own `SmallRng` the first time it needs a random number (so the happy path never
//! touches it).
//!
//! A source seeded with [`RngSource::seeded`] is shared by its clones and hands out the same
//! sequence of generators on every run, so a test that drives calls one after another sees
//! the same jitter every time (calls racing on several threads fork in whatever order they
//! arrive). A source from [`RngSource::from_entropy`] holds no state at all: it forks from a
//! per-thread seed stream, itself seeded once per thread from the operating system, so
//! cloning it into every call costs nothing.

use rand::SeedableRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use rand::rngs::SmallRng;

/// A source of uniformly distributed random numbers.
///
/// # Examples
///
/// ```
/// use palisade::rng::{Rng, RngSource};
///
/// let mut rng = RngSource::seeded(7).fork();
/// let x = rng.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
pub trait Rng {
    /// A uniformly distributed `u64`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rng::{Rng, RngSource};
    ///
    /// let mut a = RngSource::seeded(1).fork();
    /// let mut b = RngSource::seeded(1).fork();
    /// assert_eq!(a.next_u64(), b.next_u64(), "same seed, same numbers");
    /// ```
    fn next_u64(&mut self) -> u64;

    /// A uniformly distributed `f64` in `[0, 1)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rng::{Rng, RngSource};
    ///
    /// let mut rng = RngSource::from_entropy().fork();
    /// for _ in 0..100 {
    ///     assert!((0.0..1.0).contains(&rng.next_f64()));
    /// }
    /// ```
    fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly, so every value is equally likely.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl Rng for SmallRng {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        rand::RngCore::next_u64(self)
    }
}

impl<R: Rng + ?Sized> Rng for &mut R {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

/// A stream of seeds for per-call generators; clones of a seeded source share it.
///
/// # Examples
///
/// ```
/// use palisade::rng::{Rng, RngSource};
///
/// let a = RngSource::seeded(42);
/// let b = RngSource::seeded(42);
/// assert_eq!(a.fork().next_u64(), b.fork().next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct RngSource {
    // `None`: fork from this thread's entropy-seeded stream.
    seeded: Option<Arc<AtomicU64>>,
}

// SplitMix64's increment (the golden ratio in 64 bits): adding it walks a full-period sequence.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl RngSource {
    /// A source whose generators are the same on every run; clones share its stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rng::{Rng, RngSource};
    ///
    /// // Two runs of a test draw the same sequences of generators.
    /// let run = || {
    ///     let source = RngSource::seeded(2024);
    ///     (source.fork().next_u64(), source.fork().next_u64())
    /// };
    /// assert_eq!(run(), run());
    /// ```
    pub fn seeded(seed: u64) -> Self {
        RngSource {
            seeded: Some(Arc::new(AtomicU64::new(seed))),
        }
    }

    /// A source seeded from the operating system's entropy (once per thread).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rng::{Rng, RngSource};
    ///
    /// let source = RngSource::from_entropy();
    /// let (x, y) = (source.fork().next_u64(), source.fork().next_u64());
    /// assert_ne!(x, y);
    /// ```
    pub fn from_entropy() -> Self {
        RngSource { seeded: None }
    }

    /// A new generator, independent of the ones forked before it.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rng::{Rng, RngSource};
    ///
    /// let source = RngSource::seeded(9);
    /// let shared = source.clone();
    /// // Clones share the stream: the next fork differs from the first.
    /// assert_ne!(source.fork().next_u64(), shared.fork().next_u64());
    /// ```
    pub fn fork(&self) -> SmallRng {
        let z = match &self.seeded {
            // Relaxed: the counter only has to hand out distinct values; it orders nothing.
            Some(state) => state
                .fetch_add(GAMMA, Ordering::Relaxed)
                .wrapping_add(GAMMA),
            None => thread_seed(),
        };
        SmallRng::seed_from_u64(mix64(z))
    }
}

impl Default for RngSource {
    fn default() -> Self {
        Self::from_entropy()
    }
}

/// The next value of this thread's seed stream, seeded from the OS on first use.
fn thread_seed() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    STATE.with(|state| {
        let mut z = state.get();
        if z == 0 {
            // `| 1`: a seed of 0 would mean "not seeded yet" forever.
            z = rand::RngCore::next_u64(&mut SmallRng::from_os_rng()) | 1;
        }
        z = z.wrapping_add(GAMMA);
        state.set(z);
        z
    })
}

// SplitMix64's output function (Steele, Lea and Flood, 2014): decorrelates consecutive states.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forks_differ_from_each_other() {
        for source in [RngSource::seeded(1), RngSource::from_entropy()] {
            let a = source.fork().next_u64();
            let b = source.fork().next_u64();
            assert_ne!(a, b);
        }
    }

    #[test]
    fn clones_of_a_seeded_source_share_its_stream() {
        let a = RngSource::seeded(5);
        let b = a.clone();
        let first = a.fork().next_u64();
        assert_ne!(
            b.fork().next_u64(),
            first,
            "the clone continues the same stream"
        );
        assert_eq!(RngSource::seeded(5).fork().next_u64(), first);
    }

    #[test]
    fn next_f64_stays_in_unit_interval() {
        struct Max;
        impl Rng for Max {
            fn next_u64(&mut self) -> u64 {
                u64::MAX
            }
        }
        assert!(Max.next_f64() < 1.0);
        let mut rng = RngSource::seeded(3).fork();
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
