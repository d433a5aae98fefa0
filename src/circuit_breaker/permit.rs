//! CORE: permits, which carry a call's admission (phase and epoch) to its result, and the
//! handle's methods that hand them out.

use std::fmt;

use super::CircuitBreaker;
use super::controller::Ticket;
use crate::classify::Outcome;
use crate::clock::Clock;
use crate::error::Rejected;

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

// The permit API of the handle: where permits come from.
impl<C: Clock> CircuitBreaker<C> {
    /// Asks to make a call: a permit if the breaker admits it, the rejection otherwise.
    ///
    /// Record the call's outcome with the permit; dropping it unrecorded counts as nothing.
    ///
    /// # Errors
    ///
    /// [`Rejected::CircuitOpen`] while open, isolated, or half-open with every probe slot
    /// taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// match breaker.try_acquire() {
    ///     Ok(permit) => permit.success(),
    ///     Err(rejected) => println!("not now: {rejected}"),
    /// }
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<CallPermit<'_, C>, Rejected> {
        self.shared
            .admit()
            .map(|ticket| CallPermit::new(self, ticket))
    }

    /// [`try_acquire`](Self::try_acquire) with a permit that owns a handle to the breaker, for
    /// permits that must outlive the borrow (spawned tasks, `'static` futures).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// let permit = breaker.try_acquire_owned()?;
    /// std::thread::spawn(move || permit.success()).join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // Always inlined: with more than one caller of the same instantiation in a binary (a
    // layer and a `run`, say) the compiler kept it a call of its own, and the breaker layer
    // went from 23 to 31 ns a call (icount driver, `breaker_layer`: 227 against 245
    // instructions).
    #[inline(always)]
    pub fn try_acquire_owned(&self) -> Result<OwnedCallPermit<C>, Rejected> {
        self.shared
            .admit()
            .map(|ticket| OwnedCallPermit::new(self.clone(), ticket))
    }
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
pub(super) trait Permit {
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
