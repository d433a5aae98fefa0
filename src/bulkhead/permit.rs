//! CORE: permits, which hold a slot and give it back exactly once, on drop.

use std::fmt;

use super::Shared;
use crate::sync::Arc;

/// A bulkhead slot, borrowed from the [`Bulkhead`](super::Bulkhead); given back on drop.
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::Bulkhead;
///
/// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
/// let permit = bulkhead.try_acquire()?;
/// assert!(bulkhead.try_acquire().is_err());
/// drop(permit);
/// assert!(bulkhead.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the slot is given back as soon as the permit is dropped"]
#[clippy::has_significant_drop]
pub struct BulkheadPermit<'a> {
    shared: &'a Shared,
}

/// A bulkhead slot holding its own handle to the bulkhead; given back on drop.
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::Bulkhead;
///
/// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
/// let permit = bulkhead.try_acquire_owned()?;
/// std::thread::spawn(move || drop(permit)).join().unwrap();
/// assert!(bulkhead.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the slot is given back as soon as the permit is dropped"]
#[clippy::has_significant_drop]
pub struct OwnedBulkheadPermit {
    shared: Arc<Shared>,
}

// The permit exists before the admission is reported: if the listener panics, unwinding
// drops the permit, and the slot goes back.
impl<'a> BulkheadPermit<'a> {
    /// Wraps a slot already taken; `in_flight` is the count its admission left.
    #[inline]
    pub(super) fn new(shared: &'a Shared, in_flight: u32) -> Self {
        let permit = BulkheadPermit { shared };
        shared.admitted(in_flight);
        permit
    }
}

impl OwnedBulkheadPermit {
    /// Wraps a slot already taken; `in_flight` is the count its admission left.
    #[inline]
    pub(super) fn new(shared: Arc<Shared>, in_flight: u32) -> Self {
        let permit = OwnedBulkheadPermit { shared };
        permit.shared.admitted(in_flight);
        permit
    }
}

impl Drop for BulkheadPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl Drop for OwnedBulkheadPermit {
    #[inline]
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl fmt::Debug for BulkheadPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit")
            .field("policy", &self.shared.telemetry.name())
            .finish()
    }
}

impl fmt::Debug for OwnedBulkheadPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBulkheadPermit")
            .field("policy", &self.shared.telemetry.name())
            .finish()
    }
}
