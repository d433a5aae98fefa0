//! CORE: permits, which carry a call's admission (phase and epoch) to its result.

use std::fmt;

use super::{CircuitBreaker, Ticket};
use crate::classify::Outcome;
use crate::clock::Clock;

/// Leave to make one call through a [`CircuitBreaker`], borrowed from it.
///
/// Record the call's outcome with [`record`](Self::record), [`success`](Self::success) or
/// [`failure`](Self::failure). Dropping the permit unrecorded counts as nothing, and frees a
/// half-open probe slot at once.
///
/// # Examples
///
/// ```
/// use palisade::{Outcome, circuit_breaker::CircuitBreaker};
///
/// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
/// let permit = breaker.try_acquire()?;
/// permit.record(Outcome::Success);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping a permit releases it without recording an outcome"]
#[clippy::has_significant_drop]
pub struct CallPermit<'a, C: Clock = crate::clock::DefaultClock> {
    breaker: &'a CircuitBreaker<C>,
    ticket: Option<Ticket>,
}

/// Leave to make one call through a [`CircuitBreaker`], holding its own handle to it; from
/// [`CircuitBreaker::try_acquire_owned`]. Behaves as [`CallPermit`].
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::CircuitBreaker;
///
/// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
/// let permit = breaker.try_acquire_owned()?;
/// drop(breaker);
/// permit.failure();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping a permit releases it without recording an outcome"]
#[clippy::has_significant_drop]
pub struct OwnedCallPermit<C: Clock = crate::clock::DefaultClock> {
    breaker: CircuitBreaker<C>,
    ticket: Option<Ticket>,
}

macro_rules! permit_methods {
    () => {
        /// Records the call's outcome and gives the permit back.
        #[inline]
        pub fn record(mut self, outcome: Outcome) {
            if let Some(ticket) = self.ticket.take() {
                self.breaker.shared.finish(ticket, outcome);
            }
        }

        /// Records a success.
        #[inline]
        pub fn success(self) {
            self.record(Outcome::Success)
        }

        /// Records a failure.
        #[inline]
        pub fn failure(self) {
            self.record(Outcome::Failure)
        }
    };
}

impl<'a, C: Clock> CallPermit<'a, C> {
    #[inline]
    pub(super) fn new(breaker: &'a CircuitBreaker<C>, ticket: Ticket) -> Self {
        CallPermit {
            breaker,
            ticket: Some(ticket),
        }
    }

    permit_methods!();
}

impl<C: Clock> OwnedCallPermit<C> {
    #[inline]
    pub(super) fn new(breaker: CircuitBreaker<C>, ticket: Ticket) -> Self {
        OwnedCallPermit {
            breaker,
            ticket: Some(ticket),
        }
    }

    permit_methods!();
}

impl<C: Clock> Drop for CallPermit<'_, C> {
    #[inline]
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.shared.release(ticket);
        }
    }
}

impl<C: Clock> Drop for OwnedCallPermit<C> {
    #[inline]
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.shared.release(ticket);
        }
    }
}

impl<C: Clock> fmt::Debug for CallPermit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallPermit")
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl<C: Clock> fmt::Debug for OwnedCallPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedCallPermit")
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// A breaker permit of either kind, as held by the breaker's futures.
///
/// Sealed: implemented by [`CallPermit`] and [`OwnedCallPermit`] only.
pub trait Permit: sealed::Sealed {
    /// Records the call's outcome.
    fn record(self, outcome: Outcome);
}

impl<C: Clock> Permit for CallPermit<'_, C> {
    #[inline]
    fn record(self, outcome: Outcome) {
        CallPermit::record(self, outcome)
    }
}

impl<C: Clock> Permit for OwnedCallPermit<C> {
    #[inline]
    fn record(self, outcome: Outcome) {
        OwnedCallPermit::record(self, outcome)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<C: crate::clock::Clock> Sealed for super::CallPermit<'_, C> {}
    impl<C: crate::clock::Clock> Sealed for super::OwnedCallPermit<C> {}
}
