//! What the clones of a bulkhead share: the semaphore, and the counting and reporting around
//! it.

use std::time::Duration;

use super::BulkheadConfig;
use super::semaphore::Semaphore;
use crate::counter::StripedCounter;
use crate::error::{BulkheadFull, FullCause, Rejected};
use crate::telemetry::{EventKind, Telemetry};

/// The state behind a [`Bulkhead`](super::Bulkhead) handle and its permits.
pub(super) struct Shared {
    pub(super) sem: Semaphore,
    pub(super) max_wait: Option<Duration>,
    pub(super) telemetry: Telemetry,
    pub(super) rejected: StripedCounter,
    pub(super) config: BulkheadConfig,
    // One key's bulkhead in a per-key map: its refusals say so.
    pub(super) per_key: bool,
}

// The counts in events come from the atomic step that took or gave back the slot: read
// afterwards, they could include calls that came and went in between.
impl Shared {
    pub(super) fn new(config: BulkheadConfig) -> Self {
        let telemetry = config.telemetry.clone();
        Shared::with(config, telemetry, StripedCounter::new(), false)
    }

    /// The state of one key's bulkhead in a per-key map: its counter in one word (a map of
    /// many keys would otherwise hold a stripe per hardware thread for each), and the key's
    /// telemetry.
    pub(super) fn for_key(config: BulkheadConfig, key: Option<std::sync::Arc<str>>) -> Self {
        let telemetry = config.telemetry.for_key(key);
        Shared::with(config, telemetry, StripedCounter::unstriped(), true)
    }

    fn with(
        config: BulkheadConfig,
        telemetry: Telemetry,
        rejected: StripedCounter,
        per_key: bool,
    ) -> Self {
        Shared {
            sem: Semaphore::new(config.max_concurrent, config.max_queue),
            max_wait: config.max_wait,
            telemetry,
            rejected,
            config,
            per_key,
        }
    }

    /// Reports an admission; called by a permit that already holds the slot, so that a
    /// panicking listener unwinds through the permit's drop and the slot comes back.
    #[inline]
    pub(super) fn admitted(&self, in_flight: u32) {
        self.telemetry
            .emit(|| EventKind::BulkheadAdmitted { in_flight });
    }

    /// Gives the slot back, then reports it: a panicking listener finds it returned.
    #[inline]
    pub(super) fn release(&self) {
        let in_flight = self.sem.release();
        self.telemetry
            .emit(|| EventKind::BulkheadReleased { in_flight });
    }

    #[cold]
    pub(super) fn reject(&self, cause: FullCause) -> Rejected {
        self.rejected.incr();
        let full = BulkheadFull::new(self.telemetry.name(), self.sem.limit(), cause);
        let rejected = Rejected::BulkheadFull(if self.per_key { full.for_key() } else { full });
        self.telemetry.emit(|| EventKind::Rejected(rejected));
        rejected
    }
}
