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

impl<T: Clone> Bulkhead<T> {
    /// A tower layer sharing this bulkhead's slots; the same as [`BulkheadLayer::new`] on a
    /// clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(bulkhead.layer())
    ///     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
    /// let _held = bulkhead.try_acquire()?; // a closure call site holds the only slot
    /// assert!(svc.ready().await?.call(1).await.is_err());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn layer(&self) -> BulkheadLayer<T> {
        BulkheadLayer::new(self.clone())
    }
}

impl<S, T: Clone> Layer<S> for BulkheadLayer<T> {
    type Service = BulkheadService<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService::new(inner, self.bulkhead.clone())
    }
}
