//! Taking part in tokio's cooperative budget.
//!
//! A tokio task runs until it awaits something that is not ready. A loop over calls that a
//! policy answers at once (an open breaker rejecting, a fail-fast bulkhead, a call whose
//! inner future is ready) would then never give its worker back, and timers and other tasks
//! on that worker would starve. tokio's own resources spend one unit of the task's budget
//! (128 per scheduling) each time they complete, and return `Pending` once it is spent, so
//! the task yields; the policies' futures do the same with [`poll_proceed`] (feature
//! `tokio`). Outside a tokio runtime, and without the feature, the budget is unlimited and
//! this costs a branch.

use std::task::{Context, Poll};

/// A unit of the task's budget, taken at the start of a poll: spent with
/// [`made_progress`](Self::made_progress) when the poll completes the future, given back
/// when it is dropped otherwise (the poll ended `Pending` on something else's account).
pub(crate) struct Budget {
    #[cfg(feature = "tokio")]
    restore: tokio::task::coop::RestoreOnPending,
}

impl Budget {
    /// Keeps the unit spent: the poll completed its future.
    #[inline]
    pub(crate) fn made_progress(&self) {
        #[cfg(feature = "tokio")]
        self.restore.made_progress();
    }
}

/// Takes a unit of the current task's budget, or returns `Pending` (with the task woken
/// again) when the budget is spent, so that the task yields to its runtime first.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<Budget> {
    #[cfg(feature = "tokio")]
    {
        tokio::task::coop::poll_proceed(cx).map(|restore| Budget { restore })
    }
    #[cfg(not(feature = "tokio"))]
    {
        let _ = cx;
        Poll::Ready(Budget {})
    }
}
