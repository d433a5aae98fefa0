//! CORE: a retry budget, shared by every clone of a [`Retry`](super::Retry) handle.
//!
//! Max-attempts alone lets a fleet multiply its load during an outage: every caller retries,
//! so a service at its limit receives three or four times its normal traffic just when it can
//! least take it. A budget caps retries as a fraction of recent first attempts (Finagle's
//! `RetryBudget`, tower's `TpsBudget`): each first attempt deposits one call, each retry
//! withdraws one, and a retry is only allowed while
//!
//! ```text
//! first attempts in the last ttl × retry_ratio + min_per_sec × ttl  >  retries in the last ttl
//! ```
//!
//! The `min_per_sec` floor keeps a trickle of retries going for callers with little traffic.
//!
//! A retry takes its token when it is scheduled, so that callers waiting out their backoffs
//! at the same time cannot all count on the same last token, and holds it as a [`Token`]
//! until the retry starts. A call dropped before then (during its backoff, or while a tower
//! service is not ready) gives the token back: the budget counts retries made.
//!
//! The window is a ring of ten time slots, each claimed by compare-and-swap on its slot
//! number when time moves into it ([`claim_slot`](crate::counter), shared with the breaker's
//! time window); the claimer sets the slot's counts afresh before it publishes the new
//! number, so no reader takes an expired slice's counts for the new one's (a loom model pins
//! this down). The budget is approximate in two ways: concurrent callers may together
//! overdraw it by the number of threads racing on its last token, and a count made while
//! another caller is moving its slot to a new slice is dropped (a first attempt not counted,
//! a retry refused; the refusal errs on the side the budget exists for).
//!
//! # Memory ordering
//!
//! Counters are `Relaxed` (independent tallies). A slot's number is claimed with `AcqRel`
//! (set to a mark no reader counts) and set to the new slice with `Release` once the counts
//! are set afresh; readers load it with `Acquire`, so they see those counts or later ones
//! under the new number. A refund reads the number with `Acquire` for the same reason, then
//! takes one withdrawal back with a `Relaxed` compare-and-swap loop that never goes below
//! zero.

use std::time::Duration;

use crate::counter::{Claim, UNCLAIMED, claim_slot, slot_is_live};
use crate::error::ConfigError;
use crate::sync::{Arc, AtomicU64, Ordering};

const SLOTS: u64 = 10;

/// The settings of a retry budget.
///
/// # Examples
///
/// ```
/// use palisade::retry::RetryBudget;
/// use std::time::Duration;
///
/// // Retries may add 20% to the first attempts of the last 10 s, plus 1 retry per second.
/// let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.2);
/// # let _ = budget;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    ttl: Duration,
    min_per_sec: u32,
    retry_ratio: f64,
}

impl RetryBudget {
    /// A budget over the last `ttl` (1 s to 60 s) allowing `retry_ratio` retries per first
    /// attempt (in (0, 1000]) plus `min_per_sec` retries per second.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Retry, RetryBudget};
    /// use std::time::Duration;
    ///
    /// // Retries may add 10 % to the first attempts of the last 10 s, plus 2 a second.
    /// let budget = RetryBudget::new(Duration::from_secs(10), 2, 0.1);
    /// let retry = Retry::new(Retry::builder().budget(budget).build()?);
    /// # let _ = retry;
    /// assert!(Retry::builder().budget(RetryBudget::new(Duration::ZERO, 2, 0.1)).build().is_err());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub const fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f64) -> Self {
        RetryBudget {
            ttl,
            min_per_sec,
            retry_ratio,
        }
    }

    /// The window over which attempts are counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryBudget;
    /// use std::time::Duration;
    ///
    /// assert_eq!(RetryBudget::new(Duration::from_secs(10), 1, 0.2).ttl(), Duration::from_secs(10));
    /// ```
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Retries always allowed per second.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryBudget;
    /// use std::time::Duration;
    ///
    /// assert_eq!(RetryBudget::new(Duration::from_secs(10), 1, 0.2).min_per_sec(), 1);
    /// ```
    pub const fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }

    /// Retries allowed per first attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryBudget;
    /// use std::time::Duration;
    ///
    /// assert_eq!(RetryBudget::new(Duration::from_secs(10), 1, 0.2).retry_ratio(), 0.2);
    /// ```
    pub const fn retry_ratio(&self) -> f64 {
        self.retry_ratio
    }

    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        let in_section = |e: ConfigError| e.in_section("budget");
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            return Err(in_section(ConfigError::new(
                "ttl",
                "must be between 1s and 60s",
                self.ttl,
            )));
        }
        if !(self.retry_ratio > 0.0 && self.retry_ratio <= 1000.0) {
            return Err(in_section(ConfigError::new(
                "retry_ratio",
                "must be in (0, 1000]",
                self.retry_ratio,
            )));
        }
        Ok(self)
    }
}

#[derive(Debug)]
struct Slot {
    // The slot number (now / slot_ns) the counts belong to; u64::MAX when never used.
    number: AtomicU64,
    deposits: AtomicU64,
    withdrawals: AtomicU64,
}

/// The shared state of a budget.
#[derive(Debug)]
pub(crate) struct Budget {
    slots: Box<[Slot]>,
    slot_ns: u64,
    retry_ratio: f64,
    reserve: f64,
}

impl Budget {
    pub(crate) fn new(settings: RetryBudget) -> Self {
        Budget {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    number: AtomicU64::new(UNCLAIMED),
                    deposits: AtomicU64::new(0),
                    withdrawals: AtomicU64::new(0),
                })
                .collect(),
            slot_ns: (settings.ttl.as_nanos() as u64 / SLOTS).max(1),
            retry_ratio: settings.retry_ratio,
            reserve: f64::from(settings.min_per_sec) * settings.ttl.as_secs_f64(),
        }
    }

    /// Adds one first attempt (`deposit`) or retry (`withdrawal`) to the slot of `now_ns`,
    /// moving the slot to that time slice first if it held an older one. False when another
    /// caller is moving the slot right now: the count is dropped (a deposit lost, a retry
    /// refused), never added to the expired slice's counts that readers would take for the
    /// new one's.
    fn count(&self, now_ns: u64, withdrawal: bool) -> bool {
        let number = now_ns / self.slot_ns;
        let slot = &self.slots[(number % SLOTS) as usize];
        let counter = if withdrawal {
            &slot.withdrawals
        } else {
            &slot.deposits
        };
        match claim_slot(&slot.number, number) {
            Claim::Count => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Claim::Claimed => {
                // The slot's first count of the slice: its counts start here, and readers see
                // them with the tag (Release), never the expired slice's under it.
                slot.deposits
                    .store(u64::from(!withdrawal), Ordering::Relaxed);
                slot.withdrawals
                    .store(u64::from(withdrawal), Ordering::Relaxed);
                slot.number.store(number, Ordering::Release);
            }
            Claim::Busy => return false,
        }
        true
    }

    /// Records a first attempt.
    pub(crate) fn deposit(&self, now_ns: u64) {
        self.count(now_ns, false);
    }

    /// Records a retry if the budget allows one.
    pub(crate) fn withdraw(&self, now_ns: u64) -> bool {
        self.balance(now_ns) >= 1.0 && self.count(now_ns, true)
    }

    /// Takes back a withdrawal made at `at_ns` for a retry that was never made.
    fn refund(&self, at_ns: u64) {
        let number = at_ns / self.slot_ns;
        let slot = &self.slots[(number % SLOTS) as usize];
        // Once the slot holds a later time slice, the withdrawal has left the window already.
        // A claim racing with this check can make the refund take back one of the new
        // slice's withdrawals instead: the same approximation as a deposit lost to a claim.
        // Acquire, as in `balance`: pairs with the claim's AcqRel, so a slot seen with this
        // number has had its clearing done.
        if slot.number.load(Ordering::Acquire) == number {
            let _ = slot
                .withdrawals
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| w.checked_sub(1));
        }
    }

    /// Retries the budget allows now.
    pub(crate) fn balance(&self, now_ns: u64) -> f64 {
        let current = now_ns / self.slot_ns;
        let (mut deposits, mut withdrawals) = (0u64, 0u64);
        for slot in self.slots.iter() {
            if slot_is_live(slot.number.load(Ordering::Acquire), current, SLOTS) {
                deposits = deposits.saturating_add(slot.deposits.load(Ordering::Relaxed));
                withdrawals = withdrawals.saturating_add(slot.withdrawals.load(Ordering::Relaxed));
            }
        }
        deposits as f64 * self.retry_ratio + self.reserve - withdrawals as f64
    }
}

/// A retry's withdrawal from the budget, held from when the retry is scheduled until it
/// starts; dropped unspent (the call was dropped first), it is given back.
#[derive(Debug)]
pub(crate) struct Token {
    budget: Arc<Budget>,
    at_ns: u64,
    spent: bool,
}

impl Token {
    /// Withdraws a token from `budget` at `now_ns`, if the budget allows a retry.
    pub(crate) fn withdraw(budget: &Arc<Budget>, now_ns: u64) -> Option<Token> {
        budget.withdraw(now_ns).then(|| Token {
            budget: budget.clone(),
            at_ns: now_ns,
            spent: false,
        })
    }

    /// The retry started: the withdrawal stands.
    pub(crate) fn spend(mut self) {
        self.spent = true;
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if !self.spent {
            self.budget.refund(self.at_ns);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn retries_are_a_fraction_of_first_attempts_plus_a_floor() {
        let b = Budget::new(RetryBudget::new(Duration::from_secs(10), 0, 0.5));
        assert!(!b.withdraw(0), "nothing deposited, no floor");
        for _ in 0..4 {
            b.deposit(0);
        }
        assert!(b.withdraw(0));
        assert!(b.withdraw(S));
        assert!(!b.withdraw(S), "2 retries for 4 first attempts at 50%");

        let floor = Budget::new(RetryBudget::new(Duration::from_secs(10), 1, 0.1));
        let allowed = (0..100).filter(|_| floor.withdraw(0)).count();
        assert_eq!(allowed, 10, "1 per second over 10 s");
    }

    #[test]
    fn old_attempts_leave_the_window() {
        let b = Budget::new(RetryBudget::new(Duration::from_secs(10), 0, 1.0));
        for _ in 0..3 {
            b.deposit(0);
        }
        assert!(b.withdraw(0));
        assert!((b.balance(9 * S) - 2.0).abs() < 1e-9);
        assert!(
            b.balance(10 * S) < 1.0,
            "the deposits at t=0 are older than 10 s"
        );
        assert!(!b.withdraw(10 * S));
        b.deposit(11 * S);
        assert!(b.withdraw(11 * S), "refilled by new first attempts");
    }

    #[test]
    fn an_unspent_token_is_given_back_while_its_slot_is_in_the_window() {
        let b = Arc::new(Budget::new(RetryBudget::new(
            Duration::from_secs(10),
            0,
            1.0,
        )));
        b.deposit(0);
        let token = Token::withdraw(&b, 0).unwrap();
        assert!(
            Token::withdraw(&b, 0).is_none(),
            "one token for one deposit"
        );
        drop(token);
        assert!((b.balance(0) - 1.0).abs() < 1e-9, "given back");
        Token::withdraw(&b, 0).unwrap().spend();
        assert!(b.balance(0).abs() < 1e-9, "a spent token stays spent");

        // A token that outlives its slot has nothing left to give back.
        b.deposit(20 * S);
        let late = Token::withdraw(&b, 20 * S).unwrap();
        b.deposit(40 * S);
        b.deposit(40 * S);
        Token::withdraw(&b, 40 * S).unwrap().spend();
        drop(late);
        assert!(
            (b.balance(40 * S) - 1.0).abs() < 1e-9,
            "the later slice's withdrawal stands"
        );
    }

    #[test]
    fn first_attempts_in_every_slice_of_the_window_count() {
        let b = Budget::new(RetryBudget::new(Duration::from_secs(10), 0, 1.0));
        for second in 0..10 {
            b.deposit(second * S + S / 2);
        }
        assert!((b.balance(9 * S + S / 2) - 10.0).abs() < 1e-9);
        // A token taken in a later slice goes back to that slice's count.
        let b = Arc::new(b);
        let token = Token::withdraw(&b, 7 * S + 3).unwrap();
        assert!((b.balance(9 * S) - 9.0).abs() < 1e-9);
        drop(token);
        assert!((b.balance(9 * S) - 10.0).abs() < 1e-9, "given back");
    }

    #[test]
    fn a_budgets_settings_read_back_as_given_and_are_checked() {
        let settings = RetryBudget::new(Duration::from_secs(10), 3, 0.25);
        assert_eq!(
            (
                settings.ttl(),
                settings.min_per_sec(),
                settings.retry_ratio()
            ),
            (Duration::from_secs(10), 3, 0.25)
        );
        for ratio in [0.0, -1.0, 1000.5, f64::NAN] {
            let err = RetryBudget::new(Duration::from_secs(10), 3, ratio)
                .validate()
                .unwrap_err();
            assert_eq!(err.field(), "budget.retry_ratio", "{ratio}");
        }
        for ratio in [0.001, 1000.0] {
            assert!(
                RetryBudget::new(Duration::from_secs(10), 3, ratio)
                    .validate()
                    .is_ok()
            );
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Arc;

    #[test]
    fn concurrent_withdrawals_overdraw_by_at_most_the_racers() {
        loom::model(|| {
            let b = Arc::new(Budget::new(RetryBudget::new(
                Duration::from_secs(10),
                0,
                1.0,
            )));
            b.deposit(0);
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let b = b.clone();
                    loom::thread::spawn(move || b.withdraw(0))
                })
                .collect();
            let granted = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&g| g)
                .count();
            assert!((1..=2).contains(&granted), "{granted}");
            assert!(b.balance(0) >= -1.0);
        });
    }

    #[test]
    fn a_slot_moving_to_a_new_slice_never_shows_the_expired_counts() {
        const S: u64 = 1_000_000_000;
        loom::model(|| {
            let b = Arc::new(Budget::new(RetryBudget::new(
                Duration::from_secs(10),
                0,
                1.0,
            )));
            // Five first attempts in slice 0; at 10 s they have left the window, and slice 10
            // reuses their slot.
            for _ in 0..5 {
                b.deposit(0);
            }
            let depositor = {
                let b = b.clone();
                loom::thread::spawn(move || b.deposit(10 * S))
            };
            let reader = {
                let b = b.clone();
                loom::thread::spawn(move || b.balance(10 * S))
            };
            depositor.join().unwrap();
            let balance = reader.join().unwrap();
            assert!(balance <= 1.0, "expired deposits counted: {balance}");
            assert!(b.balance(10 * S) <= 1.0);
        });
    }
}
