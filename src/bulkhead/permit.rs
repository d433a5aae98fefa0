//! CORE: permits, which hold a slot and give it back exactly once, on drop, and the handle's
//! methods that hand them out without waiting.

use std::fmt;

use super::Bulkhead;
use super::shared::Shared;
use crate::error::{FullCause, Rejected};
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

// The permit API of the handle: where permits come from without waiting (waiting ones come
// from the futures of `acquire` and `acquire_owned`).
impl<T> Bulkhead<T> {
    /// Takes a slot if one is free, without waiting (and without overtaking queued calls).
    ///
    /// # Errors
    ///
    /// [`Rejected::BulkheadFull`] when no slot is free.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let _slot = bulkhead.try_acquire()?;
    /// assert!(bulkhead.try_acquire().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<BulkheadPermit<'_>, Rejected> {
        match self.shared.sem.try_acquire() {
            Some(in_flight) => Ok(BulkheadPermit::new(&self.shared, in_flight)),
            None => Err(self.shared.reject(FullCause::QueueFull)),
        }
    }

    /// [`try_acquire`](Self::try_acquire) with a permit that owns a handle to the bulkhead.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let permit = bulkhead.try_acquire_owned()?;
    /// let worker = std::thread::spawn(move || drop(permit));
    /// worker.join().unwrap();
    /// assert_eq!(bulkhead.metrics().in_flight, 0, "the slot came back");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedBulkheadPermit, Rejected> {
        match self.shared.sem.try_acquire() {
            Some(in_flight) => Ok(OwnedBulkheadPermit::new(self.shared.clone(), in_flight)),
            None => Err(self.shared.reject(FullCause::QueueFull)),
        }
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
