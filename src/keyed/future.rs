//! The future of a call through one key's policy: the policy's own future, holding a lease
//! on the key for as long as it lives.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::map::Lease;
use crate::error::Rejected;

pin_project! {
    /// The future returned by a [`Keyed`](super::Keyed) map's `run` and `run_once`: the
    /// key's policy's own future (a rate limiter's, a bulkhead's or a breaker's `RunFuture`),
    /// and a lease that keeps the key from being evicted until the future completes or is
    /// dropped; or, when the map had no room for a new key, the refusal.
    ///
    /// Dropping it drops the policy's future first (which gives back its slot, turn or
    /// permit, as that policy documents) and then the lease.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Rejected;
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let per_user: Keyed<String, _> = Keyed::new(
    ///     KeyedConfig::default(),
    ///     RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(1)).build()?),
    /// );
    /// let future = per_user.run("ada", || async { Ok::<_, Rejected>(1) });
    /// assert_eq!(future.await?, 1);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[project = KeyedProj]
    pub struct KeyedFuture<'a, P, F> {
        // Declared before the lease: dropped first, so the policy's slot or turn is back
        // before the key may be evicted.
        #[pin]
        state: State<'a, P, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<'a, P, F> {
        Running { #[pin] call: F, lease: Lease<'a, P> },
        Refused { rejected: Rejected },
        Done,
    }
}

impl<'a, P, F> KeyedFuture<'a, P, F> {
    pub(super) fn running(call: F, lease: Lease<'a, P>) -> Self {
        KeyedFuture {
            state: State::Running { call, lease },
        }
    }

    pub(super) fn refused(rejected: Rejected) -> Self {
        KeyedFuture {
            state: State::Refused { rejected },
        }
    }
}

impl<P, F, R, E> Future for KeyedFuture<'_, P, F>
where
    F: Future<Output = Result<R, E>>,
    E: From<Rejected>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        match state.as_mut().project() {
            // The policy's future takes part in tokio's budget itself.
            StateProj::Running { call, .. } => {
                let out = ready!(call.poll(cx));
                // The lease goes with the finished call, not with this future.
                state.set(State::Done);
                Poll::Ready(out)
            }
            StateProj::Refused { rejected } => {
                let rejected = *rejected;
                let budget = ready!(crate::coop::poll_proceed(cx));
                budget.made_progress();
                state.set(State::Done);
                Poll::Ready(Err(E::from(rejected)))
            }
            StateProj::Done => panic!("KeyedFuture polled after completion"),
        }
    }
}
