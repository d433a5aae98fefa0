use tower::Layer;

use super::{Bulkhead, BulkheadService};
use crate::timer::DefaultTimer;

/// Applies a [`Bulkhead`] to a tower service.
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::{Bulkhead, BulkheadLayer};
///
/// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(10).build()?);
/// let layer = BulkheadLayer::new(bulkhead);
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer<T = DefaultTimer> {
    bulkhead: Bulkhead<T>,
}

impl<T> BulkheadLayer<T> {
    /// A layer whose services share `bulkhead`'s slots.
    pub fn new(bulkhead: Bulkhead<T>) -> Self {
        BulkheadLayer { bulkhead }
    }
}

impl<T> From<Bulkhead<T>> for BulkheadLayer<T> {
    fn from(bulkhead: Bulkhead<T>) -> Self {
        BulkheadLayer::new(bulkhead)
    }
}

impl<S, T: Clone> Layer<S> for BulkheadLayer<T> {
    type Service = BulkheadService<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService::new(inner, self.bulkhead.clone())
    }
}
