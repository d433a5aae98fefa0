//! What a user implements for a timeout: how each request's duration is chosen (tower
//! surface).

use std::time::Duration;

/// Chooses a request's timeout: `None` means the configured duration.
///
/// Implemented for every `Fn(&Req) -> Option<Duration>`; pass one to
/// [`TimeoutLayer::per_request`](super::TimeoutLayer::per_request).
///
/// # Examples
///
/// ```
/// use palisade::timeout::RequestDuration;
/// use std::time::Duration;
///
/// /// A request that carries its caller's deadline.
/// struct Query {
///     budget: Option<Duration>,
/// }
///
/// struct FromBudget;
///
/// impl RequestDuration<Query> for FromBudget {
///     fn duration_for(&self, req: &Query) -> Option<Duration> {
///         req.budget
///     }
/// }
///
/// let short = Query { budget: Some(Duration::from_millis(50)) };
/// assert_eq!(FromBudget.duration_for(&short), Some(Duration::from_millis(50)));
/// ```
pub trait RequestDuration<Req> {
    /// The duration for `req`, or `None` for the configured one.
    fn duration_for(&self, req: &Req) -> Option<Duration>;
}

impl<Req, F> RequestDuration<Req> for F
where
    F: Fn(&Req) -> Option<Duration>,
{
    #[inline]
    fn duration_for(&self, req: &Req) -> Option<Duration> {
        self(req)
    }
}

/// Every request gets the configured duration (the default for
/// [`TimeoutLayer`](super::TimeoutLayer)).
///
/// # Examples
///
/// ```
/// use palisade::timeout::{ConfiguredDuration, RequestDuration};
///
/// assert_eq!(ConfiguredDuration.duration_for(&"any request"), None);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfiguredDuration;

impl<Req> RequestDuration<Req> for ConfiguredDuration {
    #[inline]
    fn duration_for(&self, _: &Req) -> Option<Duration> {
        None
    }
}
