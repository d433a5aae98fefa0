//! The snapshot a breaker reports, from [`CircuitBreaker::metrics`](super::CircuitBreaker::metrics).

use super::CircuitState;
use super::window::Counts;

/// A snapshot of a breaker, from [`CircuitBreaker::metrics`](super::CircuitBreaker::metrics).
///
/// The window's counts can lag concurrent calls by a few (see the window's docs). For the
/// consecutive model, `calls` and `failures` are the current run of failures. For
/// [`FailuresWithin`](super::TripModel::FailuresWithin) without slow-call detection, which
/// records no successes, `calls` and `failures` are the failures within the duration.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreaker, CircuitBreakerMetrics};
///
/// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
/// breaker.try_acquire()?.success();
/// breaker.try_acquire()?.failure();
/// let m: CircuitBreakerMetrics = breaker.metrics();
/// // The default model counts failures in a row: the success ended the previous run.
/// assert_eq!((m.calls, m.failures), (1, 1));
/// assert_eq!(m.failure_ratio, 1.0);
/// assert_eq!(m.rejected, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerMetrics {
    /// The state as of the last call.
    pub state: CircuitState,
    /// Calls in the window.
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// `failures / calls`, 0 for an empty window.
    pub failure_ratio: f64,
    /// `slow_calls / calls`, 0 for an empty window.
    pub slow_ratio: f64,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
}

impl CircuitBreakerMetrics {
    /// The snapshot of a window's `counts` in `state`, with `rejected` calls since the start.
    pub(super) fn new(state: CircuitState, counts: Counts, rejected: u64) -> Self {
        let ratio = |part: u32| {
            if counts.calls == 0 {
                0.0
            } else {
                (f64::from(part) / f64::from(counts.calls)).min(1.0)
            }
        };
        CircuitBreakerMetrics {
            state,
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            failure_ratio: ratio(counts.failures),
            slow_ratio: ratio(counts.slow),
            rejected,
        }
    }
}
