//! CORE: a rate limit as the generic cell rate algorithm (GCRA) in one atomic word.
//!
//! A limit of `n` calls per `period` with a burst of `b` is a token bucket of `b` tokens that
//! refills one token every `T = period / n` (the emission interval). GCRA keeps no token
//! count and needs no refill task: it keeps the bucket's **theoretical arrival time** (TAT),
//! the time at which the bucket would be full again if nothing more were taken. A call of
//! cost `c` arriving at `now` moves it to `max(TAT, now) + c·T`, and is admitted when that
//! is at most `now + b·T` (the bucket held at least `c` tokens). Otherwise it would be
//! admitted `max(TAT, now) + c·T − (now + b·T)` later: the caller may wait that long (its
//! turn is reserved by moving the TAT now), or is refused with that as its `retry_after`.
//! A cost above `b` is never admitted, however long the caller waits.
//!
//! The TAT is held in one `AtomicU64` as nanoseconds since the clock's origin, changed by
//! [`decide`] (pure, integer arithmetic, no overflow for any input) inside a
//! compare-and-swap loop: no lock, no allocation, at most one exact clock reading per
//! decision (none while the lagging reading settles it: see [`decide_lagging`], and
//! [`ExactFirst`] for which reading a decision takes first). A word
//! behind `now` means a full bucket, so no idle span can leave it stuck; at a nanosecond
//! unit, the word reaches its end after 584 years of uptime (within a refill span of it,
//! the TAT stops at [`LAST_TAT`] and every call is admitted).
//!
//! The emission interval is rounded **up** to a whole nanosecond, so the limiter never
//! admits more than `n` per `period` (at most one nanosecond per call slower).
//!
//! # Giving a reservation back
//!
//! A caller that reserved a later turn and is dropped before it gives its cost back if its
//! reservation is still the latest (the TAT is where it left it): the next caller then
//! finds the bucket as if the dropped one had never asked. A reservation with later ones
//! behind it stays taken: moving the TAT back under them would let a newcomer take the
//! same instant as a caller already waiting for it, over the limit.
//!
//! # Retiring a per-key bucket
//!
//! A per-key map evicts a full bucket by moving its TAT to [`RETIRED`], which no real TAT
//! reaches, with a compare-and-swap from a TAT not ahead of the clock. A caller whose
//! compare-and-swap loses to it, or who loads it, is told so ([`Decision::Retired`]) and
//! looks the key up again; a caller who moved the TAT first makes the retirement fail. So a
//! map can admit on a key without a lease of its own around the word.
//!
//! # Memory ordering
//!
//! The word publishes nothing but itself: every access is `Relaxed`, and the compare-and-
//! swap decides races by the word's modification order alone. Two callers racing for the
//! last token cannot both see it: the loser's compare-and-swap fails and it decides again
//! against the winner's TAT (loom model below).

use crate::clock::{Clock, saturating_nanos};
use crate::sync::{AtomicU8, AtomicU64, CachePadded, Ordering};

/// A rate as the core uses it, from a validated config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Nanoseconds per token, at least 1.
    emission_ns: u64,
    /// The bucket's size in tokens, at least 1.
    burst: u32,
    /// `burst × emission`, kept rather than multiplied out on every decision.
    capacity_ns: u64,
}

impl Rate {
    /// `count` tokens per `period_ns`, in bursts of up to `burst`. Validation keeps
    /// `count`, `burst` and the period above zero and `burst × emission` far below 2^63
    /// (see [`Rate::MAX_SPAN_NS`]); this clamps anyway, so that no input can overflow.
    pub(crate) fn new(count: u32, period_ns: u64, burst: u32) -> Rate {
        let emission_ns = period_ns.div_ceil(u64::from(count.max(1))).max(1);
        let burst = burst.max(1);
        let emission_ns = emission_ns.min(Self::MAX_SPAN_NS / u64::from(burst));
        Rate {
            emission_ns,
            burst,
            capacity_ns: u64::from(burst) * emission_ns,
        }
    }

    /// The longest a full bucket takes to refill from empty: no reading plus it, and no TAT,
    /// comes near the end of the word.
    pub(crate) const MAX_SPAN_NS: u64 = 1 << 62;

    #[cfg(all(test, not(loom)))]
    pub(crate) fn emission_ns(&self) -> u64 {
        self.emission_ns
    }

    pub(crate) fn burst(&self) -> u32 {
        self.burst
    }

    /// The time a full bucket spans: `burst × emission`.
    fn capacity_ns(&self) -> u64 {
        self.capacity_ns
    }
}

/// What a call of some cost gets at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admitted now; the TAT moves to `tat`.
    Admit { tat: u64 },
    /// Admitted after `wait_ns`, which is within the caller's wait; the TAT moves to `tat`
    /// now, so the turn is the caller's.
    Wait { tat: u64, wait_ns: u64 },
    /// Not admitted: it would be in `retry_after_ns`, longer than the caller waits.
    Refuse { retry_after_ns: u64 },
    /// The cost is above the burst: never admitted.
    Never,
    /// The bucket was retired by its per-key map: nothing was decided.
    Retired,
}

/// The TAT of a bucket its per-key map has retired: above every real TAT (those stay below
/// the clock's reading plus a refill span of at most 2^62 ns, and never reach it: see
/// [`LAST_TAT`]).
pub(crate) const RETIRED: u64 = u64::MAX;

/// The latest TAT an admission moves the word to. Within a refill span of the end of the
/// word (a clock read 438 years after its origin, or a test clock advanced by
/// `Duration::MAX`), `now + c·T` saturates; left at `u64::MAX` it would read as
/// [`RETIRED`], and a per-key map's caller would be told to look the key up again, find
/// the same entry, and spin for ever. Held here instead, the bucket admits every call
/// from then on: no later turn is representable, and refusing for ever would be worse.
pub(crate) const LAST_TAT: u64 = RETIRED - 1;

/// The decision for a call of `cost` tokens arriving at `now_ns`, against the TAT `tat_ns`,
/// for a caller willing to wait up to `max_wait_ns` for its turn.
#[inline]
pub(crate) fn decide(
    tat_ns: u64,
    now_ns: u64,
    cost: u32,
    rate: Rate,
    max_wait_ns: u64,
) -> Decision {
    if cost > rate.burst {
        return Decision::Never;
    }
    // Takes nothing, so it is admitted even while waiters hold turns past the capacity,
    // and moves nothing.
    if cost == 0 {
        return Decision::Admit { tat: tat_ns };
    }
    // A TAT behind `now` is a full bucket: counted from `now`.
    let (tat, admitted_at) = after_taking(tat_ns.max(now_ns), cost, rate);
    if admitted_at <= now_ns {
        return Decision::Admit { tat };
    }
    let wait_ns = admitted_at - now_ns;
    if wait_ns <= max_wait_ns {
        Decision::Wait { tat, wait_ns }
    } else {
        Decision::Refuse {
            retry_after_ns: wait_ns,
        }
    }
}

/// The TAT once `cost` tokens are taken from a bucket counted from `from_ns`, stopped at
/// [`LAST_TAT`], and the time from which that call is admitted (the new TAT less the
/// capacity): the one step [`decide`] and [`decide_lagging`] share.
#[inline(always)]
fn after_taking(from_ns: u64, cost: u32, rate: Rate) -> (u64, u64) {
    // cost ≤ burst, so the step is at most the capacity: below 2^62.
    let tat = from_ns
        .saturating_add(u64::from(cost) * rate.emission_ns)
        .min(LAST_TAT);
    (tat, tat.saturating_sub(rate.capacity_ns()))
}

/// The decision for every reading in `[recent_ns, recent_ns + lag_ns]`, when one decision
/// holds for them all: a clock's lagging reading (cheap) then settles the call without its
/// exact one. `None` when the exact reading is needed.
///
/// - A TAT at or past the latest possible reading means a bucket that is not full at any
///   of them: the new TAT is `tat + cost·T` whatever the reading, so an admission is sure
///   when it holds at the earliest reading, and a refusal when the wait is still too long
///   at the latest. The `retry_after` is counted from the earliest reading: at most
///   `lag_ns` longer than the exact one, never shorter.
/// - A TAT behind it may be a full bucket, whose new TAT is counted from the exact reading.
#[inline]
pub(crate) fn decide_lagging(
    tat_ns: u64,
    recent_ns: u64,
    lag_ns: u64,
    cost: u32,
    rate: Rate,
    max_wait_ns: u64,
) -> Option<Decision> {
    if cost > rate.burst {
        return Some(Decision::Never);
    }
    if cost == 0 {
        return Some(Decision::Admit { tat: tat_ns });
    }
    let latest_ns = recent_ns.saturating_add(lag_ns);
    if tat_ns < latest_ns {
        return None;
    }
    let (tat, admitted_at) = after_taking(tat_ns, cost, rate);
    if admitted_at <= recent_ns {
        return Some(Decision::Admit { tat });
    }
    if admitted_at > latest_ns && admitted_at - latest_ns > max_wait_ns {
        return Some(Decision::Refuse {
            retry_after_ns: admitted_at - recent_ns,
        });
    }
    None
}

/// Whole tokens the bucket holds at `now_ns`.
#[inline]
pub(crate) fn tokens(tat_ns: u64, now_ns: u64, rate: Rate) -> u32 {
    let used_ns = tat_ns.saturating_sub(now_ns);
    let free_ns = rate.capacity_ns().saturating_sub(used_ns);
    // At most `burst`: fits.
    (free_ns / rate.emission_ns) as u32
}

/// The shared word, on cache lines of its own: every admission writes it, and the
/// limiter's read-mostly fields (the rate, the name, the counters' stripes) should not move
/// between cores with it.
#[derive(Debug)]
pub(crate) struct Gcra {
    tat: CachePadded<AtomicU64>,
}

/// Which clock reading a limiter's next decision takes first (see [`Gcra::acquire_lagging`]).
///
/// Set when the last decision needed the exact reading (the bucket was full, or nearly, or
/// the caller waits for a later turn, which counts from the exact reading): the
/// next one takes it first instead of the lagging one, which would not settle it. A hint
/// only: any value gives a correct decision, so it is `Relaxed`, and written only when it
/// changes. It lives with the limiter's read-mostly fields, not beside the word: a load of
/// it ahead of the clock reading would otherwise fetch the word's line once more under
/// contention (two threads admitting: about 80 ns a call beside the word, 60 apart).
#[derive(Debug, Default)]
pub(crate) struct ExactFirst(AtomicU8);

impl Gcra {
    pub(crate) fn new() -> Gcra {
        Gcra {
            tat: CachePadded(AtomicU64::new(0)),
        }
    }

    /// Decides for a call of `cost` at `now_ns` and, when it is admitted now or later, moves
    /// the TAT for it.
    #[cfg(test)]
    pub(crate) fn acquire(&self, now_ns: u64, cost: u32, rate: Rate, max_wait_ns: u64) -> Decision {
        /// A clock stopped at one reading, without lag.
        struct At(u64);
        impl crate::clock::Clock for At {
            fn now(&self) -> crate::clock::Ticks {
                crate::clock::Ticks::from_nanos(self.0)
            }
        }
        let hint = ExactFirst::default();
        self.acquire_lagging::<_, true>(&hint, &At(now_ns), cost, &rate, max_wait_ns)
    }

    /// As [`acquire`](Self::acquire), on `clock`, whose lagging reading trails its exact one
    /// by at most its `max_lag`. Each is read at most once, and most decisions take one of
    /// them:
    ///
    /// - the lagging reading settles a refusal, and an admission into a bucket that is not
    ///   full ([`decide_lagging`]); when it cannot, the exact one is read too;
    /// - a bucket found full needs the exact reading (its new TAT counts from it), and a
    ///   limiter that is not limiting finds its bucket full on almost every call; so after
    ///   a decision that needed the exact reading, the next one reads it first, until one
    ///   finds the bucket well short of full again and does not wait (a wait counts from
    ///   the exact reading).
    ///
    /// With `RETIRABLE`, a retired word is told apart ([`Decision::Retired`]); without, the
    /// word is known never to be retired (a limiter of its own, or a per-key one under a
    /// lease) and costs no check.
    // `#[inline(always)]`: the exact-first path is the whole of an admission while the
    // limiter is not limiting (see `acquire_from_lagging` for what is kept out).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn acquire_lagging<C: Clock, const RETIRABLE: bool>(
        &self,
        hint: &ExactFirst,
        clock: &C,
        cost: u32,
        rate: &Rate,
        max_wait_ns: u64,
    ) -> Decision {
        let lag_ns = saturating_nanos(clock.max_lag());
        // A clock without lag: its lagging reading is the exact one.
        if lag_ns == 0 {
            let now_ns = clock.now_lagging().as_nanos();
            let current = self.tat.load(Ordering::Relaxed);
            return self.acquire_at::<RETIRABLE>(current, now_ns, cost, rate, max_wait_ns);
        }
        if hint.0.load(Ordering::Relaxed) != 0 {
            let now_ns = clock.now().as_nanos();
            let current = self.tat.load(Ordering::Relaxed);
            let decision = self.acquire_at::<RETIRABLE>(current, now_ns, cost, rate, max_wait_ns);
            // Short of full by more than the lag, and not a wait (a wait counts from the
            // exact reading, which a waiting limiter's every call then needs): the lagging
            // reading would have settled this one, so the next decision starts with it
            // again. Cleared on waits too, every other call of a limiter whose callers all
            // wait paid both readings.
            if current >= now_ns.saturating_add(lag_ns)
                && !matches!(decision, Decision::Wait { .. })
            {
                hint.0.store(0, Ordering::Relaxed);
            }
            return decision;
        }
        self.acquire_from_lagging::<C, RETIRABLE>(
            hint,
            clock.now_lagging().as_nanos(),
            lag_ns,
            clock,
            cost,
            rate,
            max_wait_ns,
        )
    }

    /// The decision at the exact reading `now_ns`, from the TAT `current` as loaded: moves
    /// the TAT for an admission, deciding again against a TAT another caller moved first.
    #[inline]
    fn acquire_at<const RETIRABLE: bool>(
        &self,
        mut current: u64,
        now_ns: u64,
        cost: u32,
        rate: &Rate,
        max_wait_ns: u64,
    ) -> Decision {
        loop {
            if RETIRABLE && current == RETIRED {
                return Decision::Retired;
            }
            let decision = decide(current, now_ns, cost, *rate, max_wait_ns);
            match self.commit(current, decision) {
                Ok(decision) => return decision,
                Err(seen) => current = seen,
            }
        }
    }

    /// Moves the TAT from `current` for an admission, now or later; `Err` with the TAT seen
    /// when another caller moved it first. A refusal moves nothing.
    #[inline(always)]
    fn commit(&self, current: u64, decision: Decision) -> Result<Decision, u64> {
        let tat = match decision {
            Decision::Admit { tat } | Decision::Wait { tat, .. } => tat,
            Decision::Refuse { .. } | Decision::Never | Decision::Retired => return Ok(decision),
        };
        self.tat
            .compare_exchange_weak(current, tat, Ordering::Relaxed, Ordering::Relaxed)
            .map(|_| decision)
    }

    /// The decision from the lagging reading `recent_ns` while it settles it; from the exact
    /// one, read once, from the first time it does not.
    // Out of line: it keeps the exact-first path, a limiter's common case while it is not
    // limiting, small enough to inline whole into `try_acquire`. With this part inline too,
    // the compiler kept the whole decision a call of its own, the cost an argument
    // (`perf annotate` of `benches/hot_path.rs`).
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn acquire_from_lagging<C: Clock, const RETIRABLE: bool>(
        &self,
        hint: &ExactFirst,
        recent_ns: u64,
        lag_ns: u64,
        clock: &C,
        cost: u32,
        rate: &Rate,
        max_wait_ns: u64,
    ) -> Decision {
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            if RETIRABLE && current == RETIRED {
                return Decision::Retired;
            }
            let Some(decision) =
                decide_lagging(current, recent_ns, lag_ns, cost, *rate, max_wait_ns)
            else {
                let now_ns = clock.now().as_nanos();
                hint.0.store(1, Ordering::Relaxed);
                // Loaded again after the exact reading, which takes longer than the rest: a
                // TAT loaded before it would more often be stale at the compare-and-swap
                // under contention.
                let current = self.tat.load(Ordering::Relaxed);
                return self.acquire_at::<RETIRABLE>(current, now_ns, cost, rate, max_wait_ns);
            };
            match self.commit(current, decision) {
                Ok(decision) => return decision,
                Err(seen) => current = seen,
            }
        }
    }

    /// Gives back a reservation of `cost` that moved the TAT to `tat_ns`, if no later one
    /// was made since (see the module docs). True if it was given back.
    pub(crate) fn give_back(&self, tat_ns: u64, cost: u32, rate: Rate) -> bool {
        let before = tat_ns.saturating_sub(u64::from(cost) * rate.emission_ns);
        self.tat
            .compare_exchange(tat_ns, before, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Whole tokens left at `now_ns`.
    pub(crate) fn tokens(&self, now_ns: u64, rate: Rate) -> u32 {
        tokens(self.tat.load(Ordering::Relaxed), now_ns, rate)
    }

    /// Retires the bucket if it is full at `now_ns` (a TAT not ahead of the clock, which a
    /// bucket never used has too); true if it did. See the module docs.
    pub(crate) fn try_retire(&self, now_ns: u64) -> bool {
        let current = self.tat.load(Ordering::Relaxed);
        current <= now_ns
            && self
                .tat
                .compare_exchange(current, RETIRED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Arc;

    /// A per-key map retiring a full bucket races a caller taking a token without a
    /// lease: either the caller is admitted and the retirement fails (the bucket is no
    /// longer full), or the bucket is retired and the caller is told so; never both.
    #[test]
    fn retiring_a_bucket_races_an_admission_and_exactly_one_wins() {
        loom::model(|| {
            let rate = Rate::new(2, 1_000_000_000, 2);
            let gcra = Arc::new(Gcra::new());
            let caller = {
                let gcra = gcra.clone();
                loom::thread::spawn(move || gcra.acquire(5, 1, rate, 0))
            };
            let retired = gcra.try_retire(5);
            match caller.join().unwrap() {
                Decision::Admit { .. } => {
                    assert!(!retired, "retired a bucket a caller had just drawn from");
                    assert_eq!(gcra.tokens(5, rate), 1);
                }
                Decision::Retired => assert!(retired),
                other => panic!("unexpected {other:?}"),
            }
        });
    }

    #[test]
    fn threads_racing_for_the_last_token_never_over_admit() {
        loom::model(|| {
            // Two tokens a second, a burst of two; one is taken already.
            let rate = Rate::new(2, 1_000_000_000, 2);
            let gcra = Arc::new(Gcra::new());
            assert!(matches!(
                gcra.acquire(0, 1, rate, 0),
                Decision::Admit { .. }
            ));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let gcra = gcra.clone();
                    loom::thread::spawn(move || {
                        matches!(gcra.acquire(0, 1, rate, 0), Decision::Admit { .. })
                    })
                })
                .collect();
            let admitted = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&a| a)
                .count();
            assert_eq!(admitted, 1, "one token left, one admitted");
            assert_eq!(gcra.tokens(0, rate), 0);
        });
    }

    #[test]
    fn a_reservation_given_back_races_a_newcomer_without_losing_or_doubling_a_turn() {
        loom::model(|| {
            // One token a second, no waiting beyond 1 s: the first takes the token, the
            // second reserves the next second.
            let rate = Rate::new(1, 1_000_000_000, 1);
            let gcra = Arc::new(Gcra::new());
            assert!(matches!(
                gcra.acquire(0, 1, rate, 0),
                Decision::Admit { .. }
            ));
            let Decision::Wait { tat, .. } = gcra.acquire(0, 1, rate, 1_000_000_000) else {
                panic!("the next second is free to reserve");
            };
            let canceller = {
                let gcra = gcra.clone();
                loom::thread::spawn(move || gcra.give_back(tat, 1, rate))
            };
            let newcomer = {
                let gcra = gcra.clone();
                loom::thread::spawn(move || gcra.acquire(0, 1, rate, 1_000_000_000))
            };
            let given_back = canceller.join().unwrap();
            let got = newcomer.join().unwrap();
            match got {
                // The newcomer took the turn given back: the TAT is where the reservation
                // had left it.
                Decision::Wait { wait_ns, .. } => {
                    assert!(given_back, "the second second is only free if given back");
                    assert_eq!(wait_ns, 1_000_000_000);
                }
                // Refused: the reservation still held the turn when it looked.
                Decision::Refuse { .. } => {}
                other => panic!("{other:?}"),
            }
            // The newcomer holds the second second, or nobody does: never two turns at
            // once, and none lost.
            let tat = gcra.tat.load(Ordering::Relaxed);
            let expected = match got {
                Decision::Wait { .. } => 2_000_000_000,
                _ => 1_000_000_000,
            };
            assert_eq!(tat, expected);
        });
    }
}
