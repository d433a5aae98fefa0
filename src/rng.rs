//! Randomness for jitter (and later fault injection), reproducible when seeded. Private: a
//! user reaches it only through a seed ([`RetryConfigBuilder::seed`], [`Backoff::iter`]);
//! which algorithm is inside is not part of the API.
//!
//! A retry handle keeps a stream of seeds from which each call forks its own generator the
//! first time it needs a random number (so the happy path never touches it). Give the retry
//! a seed and its clones share one stream that hands out the same sequence of generators on
//! every run, so a test that drives calls one after another sees the same jitter every time
//! (calls racing on several threads fork in whatever order they arrive). Without one, each
//! thread's stream is seeded once from the operating system, and cloning the handle's source
//! into every call costs nothing.
//!
//! [`RetryConfigBuilder::seed`]: crate::retry::RetryConfigBuilder::seed
//! [`Backoff::iter`]: crate::retry::Backoff::iter

use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of uniformly distributed random numbers.
pub(crate) trait Rng {
    /// A uniformly distributed `u64`.
    fn next_u64(&mut self) -> u64;

    /// A uniformly distributed `f64` in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly, so every value is equally likely.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl<R: Rng + ?Sized> Rng for &mut R {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

/// A small, fast generator (not for cryptography), the same numbers for the same seed.
#[derive(Debug, Clone)]
pub(crate) struct SeededRng(SmallRng);

impl SeededRng {
    /// A generator that draws the same numbers for the same `seed` on every run.
    pub(crate) fn new(seed: u64) -> Self {
        SeededRng(SmallRng::seed_from_u64(seed))
    }

    /// A generator seeded from the operating system's entropy (through this thread's seed
    /// stream, so only the thread's first one asks the operating system).
    pub(crate) fn from_entropy() -> Self {
        SeededRng::mixed(thread_seed())
    }

    /// A generator from one value of a seed stream, decorrelated from its neighbours.
    fn mixed(z: u64) -> Self {
        SeededRng::new(mix64(z))
    }
}

impl Rng for SeededRng {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }
}

/// A stream of seeds for per-call generators; clones of a seeded source share it.
#[derive(Debug, Clone)]
pub(crate) struct RngSource {
    // `None`: fork from this thread's entropy-seeded stream.
    seeded: Option<Arc<AtomicU64>>,
}

// SplitMix64's increment (the golden ratio in 64 bits): adding it walks a full-period sequence.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl RngSource {
    /// A source whose generators are the same on every run; clones share its stream.
    pub(crate) fn seeded(seed: u64) -> Self {
        RngSource {
            seeded: Some(Arc::new(AtomicU64::new(seed))),
        }
    }

    /// A source seeded from the operating system's entropy (once per thread).
    pub(crate) fn from_entropy() -> Self {
        RngSource { seeded: None }
    }

    /// A new generator, independent of the ones forked before it.
    pub(crate) fn fork(&self) -> SeededRng {
        match &self.seeded {
            // Relaxed: the counter only has to hand out distinct values; it orders nothing.
            Some(state) => SeededRng::mixed(
                state
                    .fetch_add(GAMMA, Ordering::Relaxed)
                    .wrapping_add(GAMMA),
            ),
            None => SeededRng::from_entropy(),
        }
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
