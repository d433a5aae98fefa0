//! Why a retry stopped: the payload of [`RetryGaveUp`](super::EventKind::RetryGaveUp).

/// Why a retry stopped without a success.
///
/// Also at `palisade::retry::GiveUp`.
///
/// # Examples
///
/// ```
/// use palisade::retry::Retry;
/// use palisade::telemetry::{Event, EventKind, GiveUp};
/// use std::sync::{Arc, Mutex};
///
/// # #[cfg(feature = "tokio")]
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade::ConfigError> {
/// let gave_up = Arc::new(Mutex::new(None));
/// let seen = gave_up.clone();
/// let retry = Retry::new(
///     Retry::builder()
///         .max_attempts(2)
///         .listener(move |e: &Event| {
///             if let EventKind::RetryGaveUp { reason, .. } = e.kind() {
///                 *seen.lock().unwrap() = Some(reason);
///             }
///         })
///         .build()?,
/// );
/// let _: Result<(), palisade::Error<&str>> = retry.run(|| async { Err(palisade::Error::Inner("down")) }).await;
/// assert_eq!(*gave_up.lock().unwrap(), Some(GiveUp::AttemptsExhausted));
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "tokio"))] fn main() {}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUp {
    /// `max_attempts` attempts were made.
    AttemptsExhausted,
    /// The next delay would have used up the time left before the deadline.
    Deadline,
    /// The retry budget was spent.
    Budget,
    /// The last result was not retryable (an inner policy's rejection, or what a classifier
    /// said).
    NotRetryable,
    /// The request could not be cloned, so it was sent once.
    NotCloneable,
}
