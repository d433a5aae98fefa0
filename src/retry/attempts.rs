//! CORE: the bookkeeping of one call across its attempts, shared by both surfaces: how many
//! were made, when the first began, the backoff sequence and the sleep of a retry in
//! progress, the budget token a scheduled retry holds, and the decision of what comes next
//! after a result (return it, give up with a reason, or retry after a delay).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

use super::budget::Token;
use super::{Backoff, BackoffIter, Retry};
use crate::classify::{Classifier, Outcome};
use crate::clock::Clock;
use crate::rng::RngSource;
use crate::sync::Ordering;
use crate::telemetry::{EventKind, GiveUp};
use crate::timer::Timer;

/// What a result means to the retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    /// Return the result.
    Done,
    /// Try again; `after` (a rejection's `retry_after`) overrides the hint and the backoff.
    Retry { after: Option<Duration> },
}

impl Verdict {
    /// The verdict on `result`: what `classifier` calls a failure is retried, a success is
    /// returned, and so is an ignored result, except an inner policy's rejection (not a
    /// timeout) that the classifier reports while `retry_rejections` is set: that one is
    /// retried after its `retry_after`.
    #[inline]
    pub(crate) fn of<R, E, Cl>(
        classifier: &Cl,
        result: &Result<R, E>,
        retry_rejections: bool,
    ) -> Self
    where
        Cl: Classifier<R, E> + ?Sized,
    {
        match classifier.classify(result) {
            Outcome::Success => Verdict::Done,
            Outcome::Failure => Verdict::Retry { after: None },
            Outcome::Ignore if retry_rejections => match classifier.rejection(result) {
                Some(rejected) if !rejected.is_timeout() => Verdict::Retry {
                    after: rejected.retry_after(),
                },
                _ => Verdict::Done,
            },
            Outcome::Ignore => Verdict::Done,
        }
    }
}

/// What follows an attempt, by the rules alone; [`Retry::next`] adds the clock, the budget,
/// the counters and the events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision {
    /// Return the result: a success at the first attempt, or a final result that is no failure.
    Return,
    /// Return the result: a success after retries.
    Recovered,
    /// Return the result, which was worth retrying but cannot be.
    GiveUp(GiveUp),
    /// Try again, after `after` if the result asked for a delay.
    Retry {
        /// The delay the result asked for, if any.
        after: Option<Duration>,
    },
}

/// The rules after attempt number `made` (of at most `max_attempts`) ended in a result with
/// `verdict`, an `Err` when `failed`; `cloneable` says whether the request can be sent again.
/// A pure function of its arguments, so each rule is tested on its own.
#[inline]
pub(crate) fn decide(
    verdict: Verdict,
    failed: bool,
    made: u32,
    max_attempts: u32,
    cloneable: bool,
) -> Decision {
    match verdict {
        Verdict::Done if failed => Decision::GiveUp(GiveUp::NotRetryable),
        Verdict::Done if made > 1 => Decision::Recovered,
        Verdict::Done => Decision::Return,
        Verdict::Retry { .. } if !cloneable => Decision::GiveUp(GiveUp::NotCloneable),
        Verdict::Retry { .. } if made >= max_attempts => {
            Decision::GiveUp(GiveUp::AttemptsExhausted)
        }
        Verdict::Retry { after } => Decision::Retry { after },
    }
}

/// The deadline's rule: waiting `delay` when `spent` of the `deadline` is gone leaves no time
/// for another attempt. Waiting out all the time left would start an attempt with none (which
/// an inner timeout cut to the deadline turns into a failure the call never had), so the last
/// real result is the answer.
#[inline]
pub(crate) fn out_of_time(delay: Duration, spent: Duration, deadline: Option<Duration>) -> bool {
    deadline.is_some_and(|deadline| delay >= deadline.saturating_sub(spent))
}

/// The state of one call across its attempts; `Sl` is the timer's sleep.
#[derive(Debug)]
pub(crate) struct Attempts<Sl> {
    /// Attempts started so far.
    made: u32,
    /// Clock reading at the first attempt, when a deadline or budget needs it.
    started_ns: u64,
    // Everything only a retry needs (the backoff sequence, the sleep, the token) behind one
    // box made at the first retry that needs it: a call whose first attempt succeeds then
    // carries no allocation, and its future is not the size of the timer's sleep.
    retrying: Option<Pin<Box<Retrying<Sl>>>>,
}

pin_project! {
    /// What a call keeps once it retries. The fields are independent: they may drop in any
    /// order, and a sleep whose destructor panics still lets the token go back.
    #[derive(Debug)]
    struct Retrying<Sl> {
        // Forked from the seed stream at the first retry that uses the backoff.
        backoff: Option<BackoffIter>,
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
            retrying: None,
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
        // Dropped as soon as it fires, not kept until the next sleep or the end of the call.
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
            .get_or_insert_with(|| backoff.iter_with(rng.fork()))
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

impl<T: Timer, C: Clock> Retry<T, C> {
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
            retrying: None,
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
        let max = self.shared.config.max_attempts;
        match decide(verdict, failed, a.made, max, cloneable) {
            Decision::Return => Next::Return,
            Decision::Recovered => {
                self.recovered(a.made);
                Next::Return
            }
            Decision::GiveUp(reason) => self.give_up(a.made, reason),
            Decision::Retry { after } => self.schedule(a, after.or(hint)),
        }
    }

    /// Draws the delay before the next attempt and takes what it needs (the deadline's time,
    /// a budget token) before anything is reported.
    #[cold]
    fn schedule<Sl>(&self, a: &mut Attempts<Sl>, hinted: Option<Duration>) -> Next {
        let now_ns = if self.shared.timed {
            self.clock.now().as_nanos()
        } else {
            0
        };
        let delay = match hinted {
            Some(hint) => hint.min(self.shared.config.max_hint),
            None => a.next_backoff(self.shared.config.backoff, &self.shared.rng),
        };
        let spent = Duration::from_nanos(now_ns.saturating_sub(a.started_ns));
        // The sleep may end as late as the timer's tick allows.
        let waited = delay.saturating_add(self.timer().resolution());
        if out_of_time(waited, spent, self.shared.config.deadline) {
            return self.give_up(a.made, GiveUp::Deadline);
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::classify::{AllErrors, DefaultClassifier};
    use crate::error::{BulkheadFull, CircuitOpen, Elapsed, Error, FullCause, Rejected};

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn each_rule_after_an_attempt_decides_in_its_order() {
        let retry = Verdict::Retry { after: None };
        let asks = Verdict::Retry {
            after: Some(secs(2)),
        };
        // (verdict, failed, made, max, cloneable) -> decision
        let table = [
            ((Verdict::Done, false, 1, 3, true), Decision::Return),
            ((Verdict::Done, false, 2, 3, true), Decision::Recovered),
            ((Verdict::Done, false, 3, 3, false), Decision::Recovered),
            // An `Err` the rules do not retry is given up on, at any attempt.
            (
                (Verdict::Done, true, 1, 3, true),
                Decision::GiveUp(GiveUp::NotRetryable),
            ),
            (
                (Verdict::Done, true, 3, 3, false),
                Decision::GiveUp(GiveUp::NotRetryable),
            ),
            // A request that cannot be sent again is checked before the attempt count.
            (
                (retry, true, 3, 3, false),
                Decision::GiveUp(GiveUp::NotCloneable),
            ),
            (
                (retry, true, 1, 3, false),
                Decision::GiveUp(GiveUp::NotCloneable),
            ),
            (
                (retry, true, 3, 3, true),
                Decision::GiveUp(GiveUp::AttemptsExhausted),
            ),
            (
                (retry, true, 4, 3, true),
                Decision::GiveUp(GiveUp::AttemptsExhausted),
            ),
            ((retry, true, 2, 3, true), Decision::Retry { after: None }),
            // An `Ok` the classifier calls a failure is retried too.
            ((retry, false, 1, 2, true), Decision::Retry { after: None }),
            (
                (asks, true, 1, 1, true),
                Decision::GiveUp(GiveUp::AttemptsExhausted),
            ),
            (
                (asks, true, 1, 2, true),
                Decision::Retry {
                    after: Some(secs(2)),
                },
            ),
        ];
        for ((verdict, failed, made, max, cloneable), want) in table {
            assert_eq!(
                decide(verdict, failed, made, max, cloneable),
                want,
                "{verdict:?} failed={failed} made={made} max={max} cloneable={cloneable}"
            );
        }
    }

    #[test]
    fn a_wait_that_reaches_the_deadline_leaves_no_time_for_an_attempt() {
        assert!(
            !out_of_time(secs(100), secs(100), None),
            "no deadline, no limit"
        );
        assert!(
            !out_of_time(secs(1), secs(3), Some(secs(5))),
            "1 s wait, 2 s left"
        );
        assert!(
            out_of_time(secs(2), secs(3), Some(secs(5))),
            "a wait of all that is left"
        );
        assert!(out_of_time(secs(3), secs(3), Some(secs(5))));
        assert!(
            out_of_time(Duration::ZERO, secs(5), Some(secs(5))),
            "nothing left"
        );
        assert!(
            out_of_time(Duration::ZERO, secs(9), Some(secs(5))),
            "past it"
        );
        let just_under = secs(2) - Duration::from_nanos(1);
        assert!(!out_of_time(just_under, secs(3), Some(secs(5))));
    }

    #[test]
    fn the_default_classifier_retries_failures_and_rejections_only_when_asked() {
        let retry = Verdict::Retry { after: None };
        let open: Result<(), Rejected> = Err(CircuitOpen::new("db", secs(2)).into());
        let full: Result<(), Rejected> =
            Err(BulkheadFull::new("db", 4, FullCause::QueueFull).into());
        let timed_out: Result<(), Rejected> = Err(Elapsed::new("db", secs(1)).into());
        let io: Result<(), Error<&str>> = Err(Error::Inner("reset"));
        let of = |r: &Result<(), Rejected>, yes| Verdict::of(&DefaultClassifier, r, yes);
        assert_eq!(of(&open, false), Verdict::Done);
        assert_eq!(
            of(&open, true),
            Verdict::Retry {
                after: Some(secs(2))
            }
        );
        assert_eq!(of(&full, false), Verdict::Done, "load shedding below");
        assert_eq!(
            of(&full, true),
            retry,
            "no retry_after: the backoff decides"
        );
        assert_eq!(of(&timed_out, false), retry, "a timeout is a failure");
        assert_eq!(of(&Ok(()), true), Verdict::Done);
        assert_eq!(Verdict::of(&DefaultClassifier, &io, false), retry);
    }

    #[test]
    fn a_classifier_of_ones_own_decides_alone() {
        let only_503 = |r: &Result<u16, Rejected>| match r {
            Ok(503) => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignore,
        };
        let open: Result<u16, Rejected> = Err(CircuitOpen::new("db", secs(2)).into());
        let retry = Verdict::Retry { after: None };
        assert_eq!(Verdict::of(&only_503, &Ok(503), false), retry);
        assert_eq!(Verdict::of(&only_503, &Ok(200), true), Verdict::Done);
        assert_eq!(
            Verdict::of(&only_503, &open, true),
            Verdict::Done,
            "it reports no rejection, so retry_rejections has nothing to retry"
        );
        let full: Result<(), Rejected> =
            Err(BulkheadFull::new("db", 4, FullCause::QueueFull).into());
        assert_eq!(
            Verdict::of(&AllErrors, &full, false),
            retry,
            "every Err fails"
        );
    }

    #[test]
    fn a_reported_timeout_is_not_retried_as_a_rejection() {
        struct IgnoreAll;
        impl Classifier<(), Rejected> for IgnoreAll {
            fn classify(&self, _: &Result<(), Rejected>) -> Outcome {
                Outcome::Ignore
            }
            fn rejection<'r>(&self, r: &'r Result<(), Rejected>) -> Option<&'r Rejected> {
                r.as_ref().err()
            }
        }
        let timed_out: Result<(), Rejected> = Err(Elapsed::new("db", secs(1)).into());
        let open: Result<(), Rejected> = Err(CircuitOpen::new("db", secs(3)).into());
        assert_eq!(Verdict::of(&IgnoreAll, &timed_out, true), Verdict::Done);
        assert_eq!(
            Verdict::of(&IgnoreAll, &open, true),
            Verdict::Retry {
                after: Some(secs(3))
            }
        );
    }
}
