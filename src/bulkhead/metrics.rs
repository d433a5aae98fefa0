//! The snapshot a bulkhead reports, from [`Bulkhead::metrics`](super::Bulkhead::metrics).

/// A snapshot of a bulkhead, from [`Bulkhead::metrics`](super::Bulkhead::metrics).
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::{Bulkhead, BulkheadMetrics};
///
/// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
/// let _slot = bulkhead.try_acquire()?;
/// assert!(bulkhead.try_acquire().is_err());
/// let m: BulkheadMetrics = bulkhead.metrics();
/// assert_eq!((m.in_flight, m.queued, m.available, m.rejected), (1, 0, 0, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadMetrics {
    /// Calls holding a slot.
    pub in_flight: u32,
    /// Calls waiting for one.
    pub queued: u32,
    /// Free slots (0 while the calls in flight exceed a lowered limit).
    pub available: u32,
    /// The current limit.
    pub max_concurrent: u32,
    /// Calls rejected since the bulkhead was built.
    pub rejected: u64,
}
