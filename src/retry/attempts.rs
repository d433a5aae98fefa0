//! CORE: the bookkeeping of one call across its attempts, shared by both surfaces: how many
//! were made, when the first began, the backoff sequence and the sleep of a retry in
//! progress, the budget token a scheduled retry holds, and the decision of what comes next
//! after a result (return it, give up with a reason, or retry after a delay).

use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

use super::budget::Token;
use super::{Backoff, BackoffIter, GiveUp, Retry, Verdict};
use crate::clock::Clock;
use crate::rng::{RngSource, SeededRng};
use crate::sync::Ordering;
use crate::telemetry::EventKind;

/// The state of one call across its attempts; `Sl` is the timer's sleep.
///
/// Everything only a retry needs (the backoff sequence and the sleep) sits behind one box
/// made at the first retry that needs it. A call whose first attempt succeeds then carries
/// no allocation, and its future's drop adds one pointer test, small enough to inline into
/// the caller: out of line, that drop was half the layer's happy-path cost (2.2 of 4.5 ns).
#[derive(Debug)]
pub(crate) struct Attempts<Sl> {
    /// Attempts started so far.
    made: u32,
    /// Clock reading at the first attempt, when a deadline or budget needs it.
    started_ns: u64,
    // Freed by `Drop` below, out of line: the drop glue of a box holding the timer's sleep
    // is large enough that LLVM would keep the whole future's drop out of line.
    retrying: ManuallyDrop<Option<Pin<Box<Retrying<Sl>>>>>,
}

impl<Sl> Drop for Attempts<Sl> {
    #[inline]
    fn drop(&mut self) {
        if self.retrying.is_some() {
            free(&mut self.retrying);
        }
    }
}

/// `extern "C"` so that no panic can unwind out of it (one aborts instead): a drop that can
/// unwind needs a cleanup path in the future's drop glue, which then no longer inlines.
/// What it drops is the box, the backoff (plain data), a budget token whose retry never
/// started (giving it back is a few atomic operations that cannot panic), and a sleep only
/// when the call was dropped during its backoff, since `poll_sleep` drops a finished one.
#[cold]
#[inline(never)]
extern "C" fn free<X>(slot: &mut ManuallyDrop<Option<X>>) {
    drop(ManuallyDrop::into_inner(std::mem::replace(
        slot,
        ManuallyDrop::new(None),
    )));
}

pin_project! {
    /// What a call keeps once it retries.
    #[derive(Debug)]
    struct Retrying<Sl> {
        // Forked from the seed stream at the first retry that uses the backoff.
        backoff: Option<BackoffIter<SeededRng>>,
        // The budget's token for the scheduled retry, until it starts; dropped with the call
        // before then, it goes back to the budget.
        token: Option<Token>,
        #[pin]
        sleep: Option<Sl>,
    }
}

impl<Sl> Attempts<Sl> {
    pub(crate) fn new() -> Self {
        Attempts {
            made: 0,
            started_ns: 0,
            retrying: ManuallyDrop::new(None),
        }
    }

    pub(crate) fn made(&self) -> u32 {
        self.made
    }

    /// A first attempt that worked: [`Retry::next`] would return it with nothing to count
    /// (not a recovery, not a give-up), so the futures' inline paths return it themselves.
    #[inline]
    pub(crate) fn first_success(&self, verdict: Verdict, failed: bool) -> bool {
        verdict == Verdict::Done && !failed && self.made == 1
    }

    fn retrying(&mut self) -> Pin<&mut Retrying<Sl>> {
        self.retrying
            .get_or_insert_with(|| {
                Box::pin(Retrying {
                    backoff: None,
                    token: None,
                    sleep: None,
                })
            })
            .as_mut()
    }

    /// Starts the wait before the next attempt.
    pub(crate) fn sleep(&mut self, sleep: Sl) {
        self.retrying().project().sleep.set(Some(sleep));
    }

    /// Polls the wait [`sleep`](Self::sleep) started.
    pub(crate) fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()>
    where
        Sl: Future<Output = ()>,
    {
        let Some(retrying) = self.retrying.as_mut() else {
            unreachable!("a call only waits after `sleep` started the wait");
        };
        let mut slot = retrying.as_mut().project().sleep;
        let Some(sleep) = slot.as_mut().as_pin_mut() else {
            unreachable!("a call only waits after `sleep` started the wait");
        };
        ready!(sleep.poll(cx));
        // Dropped here, where a panic may unwind, rather than by `free`.
        slot.set(None);
        Poll::Ready(())
    }

    fn hold(&mut self, token: Token) {
        *self.retrying().project().token = Some(token);
    }

    /// The scheduled retry starts: its token, if it took one, is spent.
    fn spend_token(&mut self) {
        if let Some(token) = self
            .retrying
            .as_mut()
            .and_then(|r| r.as_mut().project().token.take())
        {
            token.spend();
        }
    }

    fn next_backoff(&mut self, backoff: Backoff, rng: &RngSource) -> Duration {
        self.retrying()
            .project()
            .backoff
            .get_or_insert_with(|| backoff.iter(rng.fork()))
            .next()
            .unwrap_or(Duration::ZERO)
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Next {
    Return,
    RetryAfter(Duration),
}

impl<T, C: Clock> Retry<T, C> {
    /// Records the start of an attempt; returns its number.
    #[inline]
    pub(crate) fn begin<Sl>(&self, a: &mut Attempts<Sl>) -> u32 {
        a.made += 1;
        if a.made == 1 {
            a.started_ns = self.count_call();
        } else {
            self.start_retry(a);
        }
        a.made
    }

    /// Counted, and the token spent, when the retry starts, not when it is scheduled: a call
    /// dropped during its backoff made no attempt. Out of line, to keep the first attempt's
    /// inlined path small.
    #[cold]
    #[inline(never)]
    fn start_retry<Sl>(&self, a: &mut Attempts<Sl>) {
        a.spend_token();
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// [`begin`](Self::begin) for a call's first attempt, returning the call's state whole.
    ///
    /// The layer builds its response future from this in one go: filling a fresh `Attempts`
    /// field by field and then moving it into the future made the CPU read the 4-byte
    /// attempt count back as part of an 8-byte copy, which it cannot forward from its store
    /// buffer (a third of the layer's happy path, by perf).
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn first_attempt<Sl>(&self) -> Attempts<Sl> {
        Attempts {
            made: 1,
            started_ns: self.count_call(),
            retrying: ManuallyDrop::new(None),
        }
    }

    /// Counts a call; returns the clock reading its deadline and budget count from (zero when
    /// it has neither).
    #[inline]
    fn count_call(&self) -> u64 {
        let shared = &*self.shared;
        // Read before the count: after it, the compiler must assume the store may have
        // changed the flag and load the handle again.
        let timed = shared.timed;
        shared.calls.incr();
        if timed { self.start() } else { 0 }
    }

    /// The first attempt's clock reading, for a deadline or a budget. Out of line, so that
    /// `call` without either stays a leaf with a small frame.
    #[cold]
    #[inline(never)]
    fn start(&self) -> u64 {
        let now_ns = self.clock.now().as_nanos();
        if let Some(budget) = &self.shared.budget {
            budget.deposit(now_ns);
        }
        now_ns
    }

    /// Decides what follows an attempt whose result (an `Err` when `failed`) got `verdict`;
    /// `hint` is the delay a server asked for, and `cloneable` whether the request can be
    /// sent again.
    pub(crate) fn next<Sl>(
        &self,
        a: &mut Attempts<Sl>,
        verdict: Verdict,
        failed: bool,
        hint: Option<Duration>,
        cloneable: bool,
    ) -> Next {
        let after = match verdict {
            Verdict::Done if failed => return self.give_up(a.made, GiveUp::NotRetryable),
            Verdict::Done => {
                if a.made > 1 {
                    self.recovered(a.made);
                }
                return Next::Return;
            }
            Verdict::Retry { after } => after,
        };
        self.retry_or_give_up(a, after.or(hint), cloneable)
    }

    #[cold]
    fn retry_or_give_up<Sl>(
        &self,
        a: &mut Attempts<Sl>,
        hinted: Option<Duration>,
        cloneable: bool,
    ) -> Next {
        if !cloneable {
            return self.give_up(a.made, GiveUp::NotCloneable);
        }
        if a.made >= self.shared.config.max_attempts {
            return self.give_up(a.made, GiveUp::AttemptsExhausted);
        }
        let now_ns = if self.shared.timed {
            self.clock.now().as_nanos()
        } else {
            0
        };
        let delay = match hinted {
            Some(hint) => hint.min(self.shared.config.max_hint),
            None => a.next_backoff(self.shared.config.backoff, &self.shared.rng),
        };
        if let Some(deadline) = self.shared.config.deadline {
            let spent = Duration::from_nanos(now_ns.saturating_sub(a.started_ns));
            // Waiting out all the time left would start an attempt with none (which an inner
            // timeout cut to the deadline turns into a failure the call never had): the
            // last real result is the answer.
            if delay >= deadline.saturating_sub(spent) {
                return self.give_up(a.made, GiveUp::Deadline);
            }
        }
        if let Some(budget) = &self.shared.budget {
            match Token::withdraw(budget, now_ns) {
                // Held before the listener runs: if it panics, dropping the call gives the
                // token back.
                Some(token) => a.hold(token),
                None => return self.give_up(a.made, GiveUp::Budget),
            }
        }
        self.telemetry().emit(|| EventKind::RetryScheduled {
            attempt: a.made + 1,
            delay,
        });
        Next::RetryAfter(delay)
    }

    #[cold]
    fn give_up(&self, attempts: u32, reason: GiveUp) -> Next {
        self.shared.gave_up.fetch_add(1, Ordering::Relaxed);
        self.telemetry()
            .emit(|| EventKind::RetryGaveUp { attempts, reason });
        Next::Return
    }

    #[cold]
    fn recovered(&self, attempts: u32) {
        self.shared.recovered.fetch_add(1, Ordering::Relaxed);
        self.telemetry()
            .emit(|| EventKind::RetrySucceeded { attempts });
    }
}
