//! The state of a circuit breaker, shared by the breaker and the events that report its
//! transitions. It lives with the events so that telemetry depends on no policy; the breaker
//! re-exports it as `palisade::circuit_breaker::CircuitState`.

/// The state of a circuit breaker.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::CircuitState;
///
/// assert!(CircuitState::Closed.admits_calls());
/// assert!(!CircuitState::Isolated.admits_calls());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls pass and their outcomes are counted.
    Closed,
    /// Calls are rejected until the break duration has passed.
    Open,
    /// A limited number of probe calls pass; their outcomes decide between closed and open.
    HalfOpen,
    /// Forced open by hand: calls are rejected until
    /// [`reset`](crate::circuit_breaker::CircuitBreaker::reset).
    Isolated,
    /// Switched off by hand: every call passes and nothing is counted.
    Disabled,
}

impl CircuitState {
    /// Whether calls can pass in this state (half-open admits a limited number).
    pub const fn admits_calls(self) -> bool {
        matches!(
            self,
            CircuitState::Closed | CircuitState::HalfOpen | CircuitState::Disabled
        )
    }
}
