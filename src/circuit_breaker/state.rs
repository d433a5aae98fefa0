//! CORE: the breaker's admission state, packed in one `AtomicU64` and changed only through the
//! pure functions below inside compare-and-swap loops.
//!
//! # Layout
//!
//! ```text
//!  63   61 60      49 48    43 42     38 37                       0
//! [state ][  epoch  ][probes ][reopens ][ deadline, ms since origin ]
//!   3 bits  12 bits    6 bits   5 bits    38 bits, wrapping
//! ```
//!
//! - `state`: [`CircuitState`].
//! - `epoch`: bumped by every transition; permits carry the epoch they were admitted in, and a
//!   result recorded against another epoch is ignored. It wraps after 4096 transitions: a call
//!   that stays in flight across 4096 transitions could be counted in the wrong period, which
//!   the docs accept.
//! - `probes`: half-open probes in flight (at most 63).
//! - `reopens`: how many times the breaker re-opened from half-open since it last closed
//!   (saturating at 31); it grows the break duration.
//! - `deadline`: while open, when the breaker may half-open; while half-open, when it gives
//!   up on the probes in flight and re-opens. Milliseconds since the clock's origin, modulo
//!   2^38 (8.7 years). Every deadline is at most [`MAX_DEADLINE_MS`] ahead of the reading it
//!   was computed from, so a wrapped distance beyond [`HORIZON_MS`] means the deadline is past.
//!   That alone cannot tell a deadline 10 ms ahead from one 2^38 ms - 10 ms behind, so the
//!   word has a full-width companion, `since_ms`, raised before every compare-and-swap that
//!   sets a deadline to the start that deadline counts from. Every deadline the word holds is
//!   at most [`STALE_MS`] past `since_ms`, so a reading further past it than that has passed
//!   them all, whatever the wrapped distance says: a breaker left idle for any span opens its
//!   gate on the first call. (This assumes no thread sits between its clock reading and its
//!   compare-and-swap for years.)
//!
//! # Rounding
//!
//! Deadlines are set from [`Now::start_ms`], the reading rounded *up* to a millisecond plus
//! the clock's [`resolution`](crate::clock::Clock::resolution), and checked against
//! [`Now::ms`], the reading rounded *down*. A break or a half-open wait therefore never ends
//! before its configured duration, on any clock; it may end up to a millisecond (plus one
//! tick of a coarse clock) late.
//!
//! # Memory ordering
//!
//! The word is read with `Acquire` and replaced with `AcqRel` compare-and-swap, so a thread
//! that sees a transition also sees what its winner wrote before it (the window reset on
//! close, the probe tally reset on half-open, the `since_ms` raised before a deadline was
//! set). Nothing else is published through the word.

use super::CircuitState;
use crate::sync::{AtomicU64, Ordering};

// The word's encoding of a state: it belongs to the word, so it stays here while the enum
// lives with the events.
impl CircuitState {
    const fn bits(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
            CircuitState::Isolated => 3,
            CircuitState::Disabled => 4,
        }
    }

    const fn from_bits(bits: u64) -> CircuitState {
        match bits {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::Isolated,
            // Only `bits()` writes the field, so 4 is the only other value.
            _ => CircuitState::Disabled,
        }
    }
}

const DEADLINE_BITS: u32 = 38;
const REOPENS_SHIFT: u32 = 38;
const PROBES_SHIFT: u32 = 43;
const EPOCH_SHIFT: u32 = 49;
const STATE_SHIFT: u32 = 61;

const DEADLINE_MASK: u64 = (1 << DEADLINE_BITS) - 1;
const REOPENS_MASK: u64 = 0x1f;
const PROBES_MASK: u64 = 0x3f;
pub(crate) const EPOCH_MASK: u64 = 0xfff;

/// The most half-open probes the word can count.
pub(crate) const MAX_PROBES: u32 = PROBES_MASK as u32;
/// The most re-opens the word counts; the break duration stops growing long before.
const MAX_REOPENS: u32 = REOPENS_MASK as u32;
/// No break or half-open wait is longer than this (config validation caps them below it).
pub(crate) const MAX_DEADLINE_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// How far ahead of a reading a deadline can appear: a maximal duration counted from a start
/// rounded up and pushed on by a coarse clock's resolution, or a re-open's break counted from
/// a half-open deadline already reached. A wrapped distance beyond this is a deadline passed.
pub(crate) const HORIZON_MS: u64 = 2 * MAX_DEADLINE_MS;
/// A reading this far past `since_ms` has passed every deadline the word can hold: at most a
/// half-open wait plus the longest break past the time it was set.
pub(crate) const STALE_MS: u64 = 2 * MAX_DEADLINE_MS;
// A deadline passed by anything up to STALE_MS (plus the horizon) must still read as passed.
const _: () = assert!(HORIZON_MS + STALE_MS + HORIZON_MS < (1 << DEADLINE_BITS));

/// An epoch as carried by permits.
pub(crate) type Epoch = u16;

/// The packed admission word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    #[inline]
    pub(crate) const fn new(
        state: CircuitState,
        epoch: Epoch,
        probes: u32,
        reopens: u32,
        deadline_ms: u64,
    ) -> Word {
        Word(
            (state.bits() << STATE_SHIFT)
                | ((epoch as u64 & EPOCH_MASK) << EPOCH_SHIFT)
                | ((probes as u64 & PROBES_MASK) << PROBES_SHIFT)
                | ((reopens as u64 & REOPENS_MASK) << REOPENS_SHIFT)
                | (deadline_ms & DEADLINE_MASK),
        )
    }

    #[inline]
    pub(crate) const fn state(self) -> CircuitState {
        CircuitState::from_bits(self.0 >> STATE_SHIFT)
    }

    #[inline]
    pub(crate) const fn epoch(self) -> Epoch {
        ((self.0 >> EPOCH_SHIFT) & EPOCH_MASK) as Epoch
    }

    #[inline]
    pub(crate) const fn probes(self) -> u32 {
        ((self.0 >> PROBES_SHIFT) & PROBES_MASK) as u32
    }

    #[inline]
    pub(crate) const fn reopens(self) -> u32 {
        ((self.0 >> REOPENS_SHIFT) & REOPENS_MASK) as u32
    }

    #[inline]
    pub(crate) const fn deadline(self) -> u64 {
        self.0 & DEADLINE_MASK
    }

    const fn next_epoch(self) -> Epoch {
        (self.epoch().wrapping_add(1)) & EPOCH_MASK as Epoch
    }

    const fn with_probes(self, probes: u32) -> Word {
        Word::new(
            self.state(),
            self.epoch(),
            probes,
            self.reopens(),
            self.deadline(),
        )
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Word")
            .field("state", &self.state())
            .field("epoch", &self.epoch())
            .field("probes", &self.probes())
            .field("reopens", &self.reopens())
            .field("deadline_ms", &self.deadline())
            .finish()
    }
}

/// A clock reading as the transitions use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// The reading in whole milliseconds, rounded down: what deadlines are checked against.
    pub(crate) ms: u64,
    /// The reading plus the clock's resolution, rounded up: the start deadlines are set from,
    /// so none ends before its duration however late the reading was.
    pub(crate) start_ms: u64,
    /// Whether the reading is so far past `since_ms` that every deadline in the word is over.
    pub(crate) stale: bool,
}

impl Now {
    /// The reading `now_ns` of a clock that may trail real time by `resolution_ns`, against
    /// the word's `since_ms`.
    #[inline]
    pub(crate) const fn new(now_ns: u64, resolution_ns: u64, since_ms: u64) -> Now {
        let ms = now_ns / 1_000_000;
        Now {
            ms,
            start_ms: now_ns.saturating_add(resolution_ns).div_ceil(1_000_000),
            stale: stale(ms, since_ms),
        }
    }
}

/// Whether a reading of `ms` is so far past `since_ms` that every deadline in the word is
/// over.
#[inline]
const fn stale(ms: u64, since_ms: u64) -> bool {
    ms.saturating_sub(since_ms) > STALE_MS
}

/// Whether `now` has reached `deadline` (modulo 2^38).
///
/// No deadline is ever more than [`HORIZON_MS`] ahead, so one that appears further ahead is
/// behind us by a wrapped distance: reached. A stale reading has reached every deadline.
#[inline]
const fn reached(now: Now, deadline: u64) -> bool {
    let ahead = deadline.wrapping_sub(now.ms) & DEADLINE_MASK;
    now.stale || ahead == 0 || ahead > HORIZON_MS
}

/// Milliseconds from `now` until `deadline`, zero if reached.
#[inline]
const fn remaining_ms(now: Now, deadline: u64) -> u64 {
    if reached(now, deadline) {
        0
    } else {
        deadline.wrapping_sub(now.ms) & DEADLINE_MASK
    }
}

/// For an open breaker, the milliseconds left of its break counted from `recent_ms`, if the
/// break is surely not over although the exact time may be up to `lag_ms` past `recent_ms`;
/// `None` if it may be over, or the breaker is not open.
///
/// The check is [`reached`] at `recent_ms + lag_ms`, the latest the exact time can be, so a
/// `Some` never outlives the break as the exact clock sees it.
#[inline]
pub(crate) const fn surely_open(
    w: Word,
    recent_ms: u64,
    lag_ms: u64,
    since_ms: u64,
) -> Option<u64> {
    if !matches!(w.state(), CircuitState::Open) {
        return None;
    }
    let deadline = w.deadline();
    let latest_ms = recent_ms.saturating_add(lag_ms);
    let latest = Now {
        ms: latest_ms,
        start_ms: latest_ms,
        stale: stale(latest_ms, since_ms),
    };
    if reached(latest, deadline) {
        None
    } else {
        Some(deadline.wrapping_sub(recent_ms) & DEADLINE_MASK)
    }
}

/// The timing rules the transitions follow, from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) break_ms: u64,
    pub(crate) max_break_ms: u64,
    pub(crate) break_factor: f64,
    pub(crate) half_open_wait_ms: u64,
    pub(crate) permitted_probes: u32,
    pub(crate) success_threshold: u32,
}

impl Timing {
    /// The break duration after `reopens` re-opens without a close: exponential, capped.
    pub(crate) fn break_ms(&self, reopens: u32) -> u64 {
        if reopens == 0 || self.max_break_ms <= self.break_ms {
            return self.break_ms;
        }
        let grown = self.break_ms as f64 * self.break_factor.powi(reopens as i32);
        // `as` saturates on overflow and the cap bounds it; NaN cannot occur (factor >= 1).
        (grown as u64).min(self.max_break_ms)
    }
}

/// What a permit was admitted as, which decides what its result does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Closed,
    Probe,
    Disabled,
}

/// The outcome of an admission attempt, before the CAS that makes it real.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Admission {
    /// Admitted; `next` is the word to install first, if it changes.
    Admit {
        phase: Phase,
        epoch: Epoch,
        next: Option<Word>,
    },
    /// Rejected, with the milliseconds until the breaker may admit again (`None` while
    /// isolated); `next` is the word to install first, if it changes.
    Reject {
        retry_after_ms: Option<u64>,
        next: Option<Word>,
    },
}

/// Decides an admission at `now`.
#[inline]
pub(crate) fn admit(w: Word, now: Now, t: &Timing) -> Admission {
    match w.state() {
        CircuitState::Closed => Admission::Admit {
            phase: Phase::Closed,
            epoch: w.epoch(),
            next: None,
        },
        CircuitState::Disabled => Admission::Admit {
            phase: Phase::Disabled,
            epoch: w.epoch(),
            next: None,
        },
        CircuitState::Isolated => Admission::Reject {
            retry_after_ms: None,
            next: None,
        },
        CircuitState::Open => {
            if reached(now, w.deadline()) {
                half_open(w, now, t)
            } else {
                Admission::Reject {
                    retry_after_ms: Some(remaining_ms(now, w.deadline())),
                    next: None,
                }
            }
        }
        CircuitState::HalfOpen => {
            if w.probes() == 0 {
                // Nothing outstanding (earlier probes were dropped, ignored or inconclusive):
                // this caller is the next probe, however long the breaker sat idle, and the
                // wait for a verdict starts again with it.
                Admission::Admit {
                    phase: Phase::Probe,
                    epoch: w.epoch(),
                    next: Some(Word::new(
                        CircuitState::HalfOpen,
                        w.epoch(),
                        1,
                        w.reopens(),
                        now.start_ms.wrapping_add(t.half_open_wait_ms),
                    )),
                }
            } else if !reached(now, w.deadline()) {
                if w.probes() < t.permitted_probes {
                    Admission::Admit {
                        phase: Phase::Probe,
                        epoch: w.epoch(),
                        next: Some(w.with_probes(w.probes() + 1)),
                    }
                } else {
                    // Every probe slot is taken; the probes decide within the half-open wait.
                    Admission::Reject {
                        retry_after_ms: Some(remaining_ms(now, w.deadline())),
                        next: None,
                    }
                }
            } else {
                // The probes in flight never reported: the breaker gave up on them when the
                // wait ran out, and its next break counts from then, not from this call.
                let reopened = reopen(w, w.deadline(), t);
                if reached(now, reopened.deadline()) {
                    // That break is over too (a long quiet spell): this caller probes.
                    half_open(reopened, now, t)
                } else {
                    Admission::Reject {
                        retry_after_ms: Some(remaining_ms(now, reopened.deadline())),
                        next: Some(reopened),
                    }
                }
            }
        }
    }
}

/// The admission of the first probe of a new half-open period after the break of `open`.
fn half_open(open: Word, now: Now, t: &Timing) -> Admission {
    let epoch = open.next_epoch();
    Admission::Admit {
        phase: Phase::Probe,
        epoch,
        next: Some(Word::new(
            CircuitState::HalfOpen,
            epoch,
            1,
            open.reopens(),
            now.start_ms.wrapping_add(t.half_open_wait_ms),
        )),
    }
}

/// The state a call arriving at `now` would find: what [`admit`] would move the breaker to,
/// without moving it. An open breaker whose break is over reads half-open, so a view of the
/// breaker (health, metrics) does not wait for traffic to see the break end.
pub(crate) fn observed(w: Word, now: Now, t: &Timing) -> CircuitState {
    match admit(w, now, t) {
        Admission::Admit {
            phase: Phase::Probe,
            ..
        } => CircuitState::HalfOpen,
        Admission::Admit { .. } => w.state(),
        Admission::Reject {
            next: Some(next), ..
        } => next.state(),
        Admission::Reject { next: None, .. } => w.state(),
    }
}

/// The word after re-opening from half-open at `at_ms`: one more re-open, a longer break.
fn reopen(w: Word, at_ms: u64, t: &Timing) -> Word {
    let reopens = (w.reopens() + 1).min(MAX_REOPENS);
    Word::new(
        CircuitState::Open,
        w.next_epoch(),
        0,
        reopens,
        at_ms.wrapping_add(t.break_ms(reopens)),
    )
}

/// The word after the closed breaker admitted in `epoch` trips at `now`, if it still is.
pub(crate) fn trip(w: Word, epoch: Epoch, now: Now, t: &Timing) -> Option<Word> {
    (w.state() == CircuitState::Closed && w.epoch() == epoch).then(|| {
        Word::new(
            CircuitState::Open,
            w.next_epoch(),
            0,
            0,
            now.start_ms.wrapping_add(t.break_ms(0)),
        )
    })
}

/// The word after a probe of `epoch` ends without deciding anything (dropped, ignored, or a
/// result that does not settle the half-open period yet), if it is still current.
pub(crate) fn release_probe(w: Word, epoch: Epoch) -> Option<Word> {
    (w.state() == CircuitState::HalfOpen && w.epoch() == epoch && w.probes() > 0)
        .then(|| w.with_probes(w.probes() - 1))
}

/// How the probes of one half-open period have done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) successes: u32,
    pub(crate) failures: u32,
}

/// The word after a probe of `epoch` reports, given the period's tally including it.
pub(crate) fn settle_probe(
    w: Word,
    epoch: Epoch,
    tally: Tally,
    now: Now,
    t: &Timing,
) -> Option<Word> {
    if w.state() != CircuitState::HalfOpen || w.epoch() != epoch {
        return None;
    }
    if tally.successes >= t.success_threshold {
        return Some(Word::new(CircuitState::Closed, w.next_epoch(), 0, 0, 0));
    }
    // Once more probes have failed than the rule can spare, the period cannot close.
    if tally.failures > t.permitted_probes - t.success_threshold {
        return Some(reopen(w, now.start_ms, t));
    }
    release_probe(w, epoch)
}

/// The word after a manual move to `to` (isolate, reset, disable). The epoch moves on even when
/// the state does not, so calls in flight from before a reset are not counted after it.
pub(crate) fn force(w: Word, to: CircuitState) -> Option<Word> {
    Some(Word::new(to, w.next_epoch(), 0, 0, 0))
}

/// The atomic word, its full-width `since_ms` companion, and the CAS loop.
#[derive(Debug)]
pub(crate) struct AtomicState {
    word: AtomicU64,
    since_ms: AtomicU64,
}

impl AtomicState {
    pub(crate) fn new() -> Self {
        AtomicState {
            word: AtomicU64::new(Word::new(CircuitState::Closed, 0, 0, 0, 0).0),
            since_ms: AtomicU64::new(0),
        }
    }

    /// The companion of the word last loaded: call after [`load`](Self::load) or a failed
    /// compare-and-swap.
    #[inline]
    pub(crate) fn since_ms(&self) -> u64 {
        // Relaxed: the Acquire load of the word that comes first synchronises with the CAS
        // that installed it, which the raise of its deadline's start came before.
        self.since_ms.load(Ordering::Relaxed)
    }

    /// Raises the companion before a compare-and-swap installs a deadline counted from
    /// `start_ms`.
    #[inline]
    pub(crate) fn raise_since(&self, start_ms: u64) {
        // Relaxed: published by the AcqRel CAS that follows. A raise whose CAS then fails only
        // makes the staleness check later, never wrongly early.
        self.since_ms.fetch_max(start_ms, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn load(&self) -> Word {
        // Acquire pairs with the AcqRel CAS below: whatever a transition's winner wrote
        // before its CAS is visible to a thread that sees the new word.
        Word(self.word.load(Ordering::Acquire))
    }

    /// Replaces `current` with `next`, or returns the word found instead.
    #[inline]
    pub(crate) fn cas(&self, current: Word, next: Word) -> Result<(), Word> {
        self.word
            .compare_exchange(current.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(Word)
    }

    /// Installs `f(current)` when it returns a word; retries on contention, re-running only the
    /// pure decision. Returns the word replaced and the new one, or `None` when `f` declined.
    #[inline]
    pub(crate) fn update(
        &self,
        mut current: Word,
        mut f: impl FnMut(Word) -> Option<Word>,
    ) -> Option<(Word, Word)> {
        loop {
            let next = f(current)?;
            match self.word.compare_exchange_weak(
                current.0,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((current, next)),
                Err(actual) => current = Word(actual),
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
