//! What the clones of a rate limiter share: the GCRA word, and the counting and reporting
//! around it.

use std::time::Duration;

use super::RateLimiterConfig;
use super::gcra::{Decision, Gcra, Rate};
use crate::counter::StripedCounter;
use crate::error::{LimitCause, RateLimited, Rejected};
use crate::telemetry::{EventKind, Telemetry};

/// The state behind a [`RateLimiter`](super::RateLimiter) handle and its futures.
pub(super) struct Shared {
    pub(super) gcra: Gcra,
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
    /// Admitted now.
    Now,
    /// Admitted after `wait`; the TAT was moved to `tat` for it (given back if the caller
    /// leaves first).
    Later { tat: u64, wait: Duration },
    /// Refused (already counted and reported).
    Refused(Rejected),
}

impl Shared {
    pub(super) fn new(config: RateLimiterConfig) -> Self {
        Shared {
            gcra: Gcra::new(),
            rate: config.rate,
            max_wait_ns: crate::clock::saturating_nanos(config.max_wait),
            telemetry: config.telemetry.clone(),
            admitted: StripedCounter::new(),
            limited: StripedCounter::new(),
            config,
        }
    }

    /// Takes `cost` tokens at `now_ns`, or a later turn within `max_wait_ns`, or refuses.
    /// The word is changed before anything is reported.
    #[inline]
    pub(super) fn take(&self, now_ns: u64, cost: u32, max_wait_ns: u64) -> Turn {
        match self.gcra.acquire(now_ns, cost, self.rate, max_wait_ns) {
            Decision::Admit { .. } => {
                self.admitted.incr();
                Turn::Now
            }
            Decision::Wait { tat, wait_ns } => Turn::Later {
                tat,
                wait: Duration::from_nanos(wait_ns),
            },
            Decision::Refuse { retry_after_ns } => Turn::Refused(self.refuse(
                LimitCause::OverRate,
                Some(Duration::from_nanos(retry_after_ns)),
            )),
            Decision::Never => Turn::Refused(self.refuse(LimitCause::CostAboveBurst, None)),
        }
    }

    /// A waiter's turn came: counted as admitted.
    #[inline]
    pub(super) fn waited(&self) {
        self.admitted.incr();
    }

    /// A waiter left before its turn: the turn goes back if no later one was taken since.
    pub(super) fn leave(&self, tat: u64, cost: u32) {
        self.gcra.give_back(tat, cost, self.rate);
    }

    #[cold]
    #[inline(never)]
    fn refuse(&self, cause: LimitCause, retry_after: Option<Duration>) -> Rejected {
        self.limited.incr();
        let rejected =
            Rejected::RateLimited(RateLimited::new(self.telemetry.name(), cause, retry_after));
        self.telemetry.emit(|| EventKind::Rejected(rejected));
        rejected
    }
}
