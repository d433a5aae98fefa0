//! What the clones of a rate limiter share: the GCRA word, and the counting and reporting
//! around it.

use std::time::Duration;

use super::RateLimiterConfig;
use super::gcra::{Decision, ExactFirst, Gcra, Rate};
use crate::clock::Clock;
use crate::counter::StripedCounter;
use crate::error::{RateLimited, Rejected};
use crate::telemetry::{EventKind, Telemetry};

/// The state behind a [`RateLimiter`](super::RateLimiter) handle and its futures.
pub(super) struct Shared {
    pub(super) gcra: Gcra,
    exact_first: ExactFirst,
    pub(super) rate: Rate,
    pub(super) max_wait_ns: u64,
    pub(super) telemetry: Telemetry,
    pub(super) admitted: StripedCounter,
    pub(super) limited: StripedCounter,
    pub(super) config: RateLimiterConfig,
}

/// A decision as the surfaces use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Admitted now; the TAT was moved to `tat` for it.
    Now { tat: u64 },
    /// Admitted after `wait`; the TAT was moved to `tat` for it (given back if the caller
    /// leaves first).
    Later { tat: u64, wait: Duration },
    /// Refused; not counted or reported yet (see [`Shared::refuse`]).
    Refused(Refusal),
}

/// A refusal before it is counted and reported: nanoseconds until the call would be
/// admitted, or `None` for a cost above the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    retry_after_ns: Option<u64>,
}

impl Shared {
    pub(super) fn new(config: RateLimiterConfig) -> Self {
        let telemetry = config.telemetry.clone();
        Shared::with(config, telemetry, StripedCounter::new)
    }

    /// The state of one key's limiter in a per-key map: counters in one word each (a map
    /// of many keys would otherwise hold a stripe per hardware thread for each), and the
    /// key's telemetry.
    pub(super) fn for_key(config: RateLimiterConfig, key: Option<std::sync::Arc<str>>) -> Self {
        let telemetry = config.telemetry.for_key(key);
        Shared::with(config, telemetry, StripedCounter::unstriped)
    }

    fn with(
        config: RateLimiterConfig,
        telemetry: Telemetry,
        counter: fn() -> StripedCounter,
    ) -> Self {
        Shared {
            gcra: Gcra::new(),
            exact_first: ExactFirst::default(),
            rate: config.rate,
            max_wait_ns: crate::clock::saturating_nanos(config.max_wait),
            telemetry,
            admitted: counter(),
            limited: counter(),
            config,
        }
    }

    /// Takes `cost` tokens at `now_ns`, or a later turn within `max_wait_ns`, or refuses.
    /// Nothing is counted here: the caller counts an admission with
    /// [`admitted`](Self::admitted) when its call goes ahead (a tower service may still give
    /// its turn back), and a refusal with [`refuse`](Self::refuse), once per refused call.
    ///
    /// The clock's lagging reading settles most refusals, and admissions while the bucket is
    /// not full; the exact one is read only when needed (see `gcra::decide_lagging`).
    ///
    /// The word is taken as never retired: a per-key map's leases keep a bucket that any
    /// surface but [`take_unleased`](Self::take_unleased) uses from being retired.
    // `#[inline(always)]`: with several surfaces calling it (try_acquire, the waits, the
    // pipeline's stage), the compiler kept it a call of its own, and `try_acquire` lost the
    // folding of its constant cost and zero wait: 122 → 163 instructions per admission
    // (`benches/icount.sh rate_limiter_admitted`; 123 with it).
    #[inline(always)]
    pub(super) fn take<C: Clock>(&self, clock: &C, cost: u32, max_wait_ns: u64) -> Turn {
        match self.take_if_live::<C, false>(clock, cost, max_wait_ns) {
            Some(turn) => turn,
            None => unreachable!("a word taken as never retired reports no retirement"),
        }
    }

    /// As [`take`](Self::take), or `None` when the bucket was retired by its per-key map.
    // `#[inline(always)]`, as `take`.
    #[inline(always)]
    pub(super) fn take_unleased<C: Clock>(
        &self,
        clock: &C,
        cost: u32,
        max_wait_ns: u64,
    ) -> Option<Turn> {
        self.take_if_live::<C, true>(clock, cost, max_wait_ns)
    }

    // `#[inline(always)]`, as `take`: left to the compiler, it stayed a call of its own
    // with the cost as an argument (see `Gcra::acquire_from_lagging` for the part kept out).
    #[inline(always)]
    fn take_if_live<C: Clock, const RETIRABLE: bool>(
        &self,
        clock: &C,
        cost: u32,
        max_wait_ns: u64,
    ) -> Option<Turn> {
        let decision = self.gcra.acquire_lagging::<C, RETIRABLE>(
            &self.exact_first,
            clock,
            cost,
            // By reference: read after the clock, so nothing is kept across its reading.
            &self.rate,
            max_wait_ns,
        );
        Some(match decision {
            Decision::Admit { tat } => Turn::Now { tat },
            Decision::Wait { tat, wait_ns } => Turn::Later {
                tat,
                wait: Duration::from_nanos(wait_ns),
            },
            Decision::Refuse { retry_after_ns } => Turn::Refused(Refusal {
                retry_after_ns: Some(retry_after_ns),
            }),
            Decision::Never => Turn::Refused(Refusal {
                retry_after_ns: None,
            }),
            Decision::Retired => return None,
        })
    }

    /// A call goes ahead on its turn: counted as admitted.
    #[inline]
    pub(super) fn admitted(&self) {
        self.admitted.incr();
    }

    /// A waiter left before its turn: the turn goes back if no later one was taken since.
    pub(super) fn leave(&self, tat: u64, cost: u32) {
        self.gcra.give_back(tat, cost, self.rate);
    }

    /// Counts and reports a refusal; the bucket was left as it was.
    // Inline, unlike most refusals: under overload it is the limiter's hot path. Built in
    // the caller's frame, the rejection is not copied through a second one (the copy cost
    // a store-forwarding stall per refusal); reporting stays out of line (`emit`).
    #[inline]
    pub(super) fn refuse(&self, refusal: Refusal) -> Rejected {
        self.limited.incr();
        let rejected = Rejected::RateLimited(RateLimited::from_nanos(
            self.telemetry.name(),
            refusal.retry_after_ns,
        ));
        self.telemetry.emit(|| EventKind::Rejected(rejected));
        rejected
    }
}
