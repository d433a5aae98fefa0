//! CORE: the breaker's controller, the compare-and-swap loops around the pure transitions of
//! [`state`](super::state): admission (closed fast path, lagging-clock open rejection, the
//! cold path that moves the state), recording results into the window or the half-open
//! tally, manual moves, and the in-order hand-over of transitions to the listener.
//!
//! Every state change here completes before any user code runs (see
//! [`telemetry`](crate::telemetry#user-code-runs-last)): a permit exists before a listener
//! hears of the transition that admitted it, and a probe's slot is settled before its result
//! is reported.

use super::CircuitState;
use super::config::{CircuitBreakerConfig, TripModel};
use super::state::{self, Admission, AtomicState, Epoch, Now, Phase, Tally, Timing, Word};
use super::transitions::Transitions;
use super::window::{CountRing, Sample, TimeRing, Window};
use crate::classify::Outcome;
use crate::clock::Clock;
use crate::counter::StripedCounter;
use crate::error::{CircuitOpen, Rejected};
use crate::sync::{AtomicU64, Ordering};
use crate::telemetry::{EventKind, Telemetry};

/// A breaker's shared state: the packed word and its companions, the window, the timing
/// rules, the clock and the listener. Clones of the handle share one.
pub(super) struct Shared<C> {
    pub(super) state: AtomicState,
    // Successes and failures of the current half-open period: epoch << 32 | failures << 16 |
    // successes. Touched only by probes.
    pub(super) tally: AtomicU64,
    pub(super) window: Window,
    pub(super) timing: Timing,
    pub(super) slow_threshold_ns: Option<u64>,
    // Bit `failure as u8`: whether a closed result of that kind needs a clock reading (slow
    // calls are timed, a time window picks a bucket). Worked out once, so that `finish` tests
    // one bit rather than the slow rule and the window's variant.
    timed_results: u8,
    pub(super) clock: C,
    // The clock's resolution, read once: deadlines start this much after a reading.
    pub(super) resolution_ns: u64,
    pub(super) telemetry: Telemetry,
    pub(super) transitions: Transitions,
    // Striped: every rejecting thread writes it, and a shared line would serialise the
    // threads of an open breaker (and evict the state word every admission reads).
    pub(super) rejected: StripedCounter,
    pub(super) config: CircuitBreakerConfig,
}

/// A rejection as the cold admission paths hand it back: the retry-after in whole
/// milliseconds, or [`Refusal::ISOLATED`] for none.
///
/// Eight bytes, so that `Result<Ticket, Refusal>` fits in two registers and the inlined caller
/// builds the [`Rejected`] where it returns it. A `Result<Ticket, Rejected>` comes back through
/// memory in narrow stores that the caller then copies in wide loads, which the CPU cannot
/// forward from its store buffer: the stall cost a third of an open breaker's rejection.
#[derive(Debug, Clone, Copy)]
struct Refusal(u64);

impl Refusal {
    const ISOLATED: u64 = u64::MAX;
}

/// What a permit remembers about its admission.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    phase: Phase,
    epoch: Epoch,
    // Clock reading at admission, only taken when slow calls are detected.
    start_ns: u64,
}

impl<C: Clock> Shared<C> {
    /// The same state for one key of many: counters without stripes (see
    /// `StripedCounter::unstriped`), events that carry the key.
    pub(super) fn per_key(self, key: Option<std::sync::Arc<str>>) -> Self {
        Shared {
            rejected: StripedCounter::unstriped(),
            telemetry: self.telemetry.for_key(key),
            ..self
        }
    }

    /// The breaker's state for `config`, reading `clock`.
    pub(super) fn new(config: CircuitBreakerConfig, clock: C) -> Self {
        let slow = config.slow_rule();
        let window = match config.model {
            TripModel::ConsecutiveFailures(threshold) => Window::Consecutive {
                threshold,
                failures: crate::sync::AtomicU32::new(0),
                slow: slow.map(|s| (CountRing::new(s.min_calls), s)),
            },
            TripModel::CountWindow { size, .. } => Window::Count {
                ring: CountRing::new(size),
                rule: config.rule().expect("window models have a rule"),
                slow,
            },
            TripModel::TimeWindow {
                duration, buckets, ..
            }
            | TripModel::FailuresWithin {
                duration, buckets, ..
            } => Window::time(
                TimeRing::new(buckets, duration.as_nanos() as u64 / u64::from(buckets)),
                config.rule().expect("window models have a rule"),
                slow,
            ),
        };
        let timed = |failure: bool| config.slow.is_some() || window.needs_clock(failure);
        Shared {
            state: AtomicState::new(),
            tally: AtomicU64::new(0),
            timed_results: u8::from(timed(false)) | (u8::from(timed(true)) << 1),
            window,
            timing: config.timing(),
            slow_threshold_ns: config.slow.map(|s| s.threshold().as_nanos() as u64),
            resolution_ns: crate::clock::saturating_nanos(clock.resolution()),
            clock,
            telemetry: config.telemetry.clone(),
            transitions: Transitions::new(),
            rejected: StripedCounter::new(),
            config,
        }
    }
}

// ===== impl Shared =====

/// Stands for a clock reading a result did not need. A reading may be this value too (the
/// latest [`Ticks`](crate::clock::Ticks)); the clock is then only read once more.
const NOT_READ: u64 = u64::MAX;

const TALLY_EPOCH_SHIFT: u32 = 32;

fn tally_word(epoch: Epoch, t: Tally) -> u64 {
    (u64::from(epoch) << TALLY_EPOCH_SHIFT)
        | (u64::from(t.failures.min(0xffff)) << 16)
        | u64::from(t.successes.min(0xffff))
}

impl<C: Clock> Shared<C> {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.clock.now().as_nanos()
    }

    /// A clock reading `now_ns` as the transitions use it, against the word loaded last.
    #[inline]
    fn at(&self, now_ns: u64) -> Now {
        Now::new(now_ns, self.resolution_ns, self.state.since_ms())
    }

    // Always inlined: the closed path is a few instructions, and out of line the
    // `Result<Ticket, Rejected>` would come back through memory into a wide copy that stalls
    // (see `Refusal`); one build with a single codegen unit left it out of line and an open
    // reject went from 5.5 to 10.9 ns.
    #[inline(always)]
    pub(super) fn admit(&self) -> Result<Ticket, Rejected> {
        let w = self.state.load();
        // The closed fast path: no clock unless slow calls are timed, no write.
        if w.state() == CircuitState::Closed || w.state() == CircuitState::Disabled {
            let phase = if w.state() == CircuitState::Closed {
                Phase::Closed
            } else {
                Phase::Disabled
            };
            let start_ns = match (phase, self.slow_threshold_ns) {
                (Phase::Closed, Some(_)) => self.now_ns(),
                _ => 0,
            };
            return Ok(Ticket {
                phase,
                epoch: w.epoch(),
                start_ns,
            });
        }
        self.admit_not_closed(w)
            .map_err(|refusal| self.rejection(refusal))
    }

    /// Open, half-open or isolated. An open breaker whose break is surely not over rejects on
    /// the clock's lagging reading alone; everything else takes the exact reading.
    #[inline(never)]
    fn admit_not_closed(&self, w: Word) -> Result<Ticket, Refusal> {
        if w.state() == CircuitState::Open {
            let recent_ns = self.clock.now_lagging().as_nanos();
            let max_lag = self.clock.max_lag();
            // The exact reading in ms is at most this much past the lagging one in ms.
            let lag_ms = crate::clock::saturating_nanos(max_lag).div_ceil(1_000_000);
            let since_ms = self.state.since_ms();
            if let Some(left_ms) = state::surely_open(w, recent_ns / 1_000_000, lag_ms, since_ms) {
                // Counted from the lagging reading: at most `lag_ms` longer than the exact
                // time left, so a caller who waits that long finds the break over.
                return Err(self.refuse(Some(left_ms)));
            }
            if max_lag.is_zero() {
                return self.admit_slow(recent_ns);
            }
        }
        self.admit_slow(self.now_ns())
    }

    // Out of line so that the rejection above, the common case while open, keeps a small
    // frame.
    #[cold]
    #[inline(never)]
    fn admit_slow(&self, now_ns: u64) -> Result<Ticket, Refusal> {
        loop {
            // The tally before the word: see `reset_tally`.
            let tally = self.tally.load(Ordering::Acquire);
            let current = self.state.load();
            let now = self.at(now_ns);
            let decision = state::admit(current, now, &self.timing);
            let next = match decision {
                Admission::Admit { next, .. } | Admission::Reject { next, .. } => next,
            };
            let moves = next.is_some_and(|next| next.epoch() != current.epoch());
            if let Some(next) = next {
                // A transition: its report queues in the order of the CASes (see
                // `transitions`), so the lock is held across the CAS.
                let mut queue = if moves {
                    self.transitions.queue(&self.telemetry)
                } else {
                    None
                };
                if moves && next.state() == CircuitState::HalfOpen {
                    self.reset_tally(tally, next.epoch());
                }
                if next.deadline() != current.deadline() || next.state() != current.state() {
                    // A new deadline, counted from `now.start_ms` or from one this reading has
                    // reached (a re-open after the half-open wait ran out). Only then: a raise
                    // over a deadline left as it was would hide how long it has stood.
                    self.state.raise_since(now.start_ms);
                }
                if self.state.cas(current, next).is_err() {
                    continue;
                }
                if let Some(queue) = &mut queue {
                    queue.push(current, next);
                }
            }
            return match decision {
                Admission::Admit { phase, epoch, .. } => {
                    let ticket = Ticket {
                        phase,
                        epoch,
                        start_ns: now_ns,
                    };
                    if moves {
                        // This caller holds a probe slot already: if a listener panics while
                        // hearing of the transition, the slot goes back.
                        let guard = ReleaseOnUnwind(self, ticket);
                        self.transitions.deliver(&self.telemetry);
                        std::mem::forget(guard);
                    }
                    Ok(ticket)
                }
                Admission::Reject { retry_after_ms, .. } => {
                    if moves {
                        self.transitions.deliver(&self.telemetry);
                    }
                    Err(self.refuse(retry_after_ms))
                }
            };
        }
    }

    /// Starts the tally of the half-open period `epoch` empty, whatever an earlier period
    /// with the same (wrapped) epoch left in it.
    ///
    /// Called before the compare-and-swap that opens the period, with the tally loaded before
    /// the word that CAS replaces. The reset is itself a compare-and-swap from that value, so
    /// a thread that lost the race for the transition cannot wipe the results of probes the
    /// winner has already admitted: those results changed the tally, and the reset fails.
    fn reset_tally(&self, seen: u64, epoch: Epoch) {
        let empty = tally_word(
            epoch,
            Tally {
                successes: 0,
                failures: 0,
            },
        );
        // AcqRel: published to the probes by the word's CAS that follows.
        let _ = self
            .tally
            .compare_exchange(seen, empty, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Counts and reports a rejection decided on a cold path.
    #[inline]
    fn refuse(&self, retry_after_ms: Option<u64>) -> Refusal {
        let refusal = Refusal(retry_after_ms.unwrap_or(Refusal::ISOLATED));
        self.rejected.incr();
        self.telemetry
            .emit(|| EventKind::Rejected(self.rejection(refusal)));
        refusal
    }

    #[inline]
    fn rejection(&self, refusal: Refusal) -> Rejected {
        let open = match refusal.0 {
            Refusal::ISOLATED => CircuitOpen::isolated(self.telemetry.name()),
            ms => CircuitOpen::new(self.telemetry.name(), std::time::Duration::from_millis(ms)),
        };
        Rejected::CircuitOpen(open)
    }

    /// The state a call arriving now would find.
    pub(super) fn observed_state(&self) -> CircuitState {
        let w = self.state.load();
        match w.state() {
            CircuitState::Open | CircuitState::HalfOpen => {
                state::observed(w, self.at(self.now_ns()), &self.timing)
            }
            other => other,
        }
    }

    /// Records the outcome of the call admitted with `ticket`.
    #[inline]
    pub(crate) fn finish(&self, ticket: Ticket, outcome: Outcome) {
        match ticket.phase {
            Phase::Disabled => {}
            Phase::Closed => {
                if outcome == Outcome::Ignore {
                    return;
                }
                let failure = outcome == Outcome::Failure;
                // At most one reading per result, and none for a result the window keeps
                // without time (a success of "N failures within D" is not kept at all).
                let (now_ns, slow) = if self.timed_results & (1 << u8::from(failure)) != 0 {
                    let now_ns = self.now_ns();
                    (now_ns, self.is_slow(ticket, now_ns))
                } else {
                    (NOT_READ, false)
                };
                let sample = Sample { failure, slow };
                let w = self.state.load();
                if w.state() != CircuitState::Closed || w.epoch() != ticket.epoch {
                    // A result from before a transition: it says nothing about this period.
                    return;
                }
                let tripped = if self.window.record(sample, now_ns) {
                    self.trip(ticket.epoch, now_ns)
                } else {
                    None
                };
                // The sample is counted and the trip made before any listener hears of them;
                // the trip's report is delivered after this event, even if it panics.
                let _deliver = tripped.map(|_| DeliverOnDrop(self));
                self.telemetry.emit(|| EventKind::CallRecorded {
                    failure: sample.failure,
                    slow: sample.slow,
                });
            }
            Phase::Probe => self.finish_probe(ticket, outcome),
        }
    }

    #[inline]
    fn is_slow(&self, ticket: Ticket, now_ns: u64) -> bool {
        self.slow_threshold_ns
            .is_some_and(|threshold| now_ns.saturating_sub(ticket.start_ns) >= threshold)
    }

    /// Opens the closed breaker admitted in `epoch`, if it still is, at `now_ns` unless that
    /// is [`NOT_READ`]; the transition made, to report once the caller's own state change is
    /// complete.
    #[cold]
    fn trip(&self, epoch: Epoch, now_ns: u64) -> Option<(Word, Word)> {
        let now_ns = if now_ns == NOT_READ {
            self.now_ns()
        } else {
            now_ns
        };
        let current = self.state.load();
        let now = self.at(now_ns);
        self.transition(current, |w| {
            let next = state::trip(w, epoch, now, &self.timing)?;
            self.state.raise_since(now.start_ms);
            Some(next)
        })
    }

    #[cold]
    fn finish_probe(&self, ticket: Ticket, outcome: Outcome) {
        if outcome == Outcome::Ignore {
            return self.release(ticket);
        }
        let now_ns = self.now_ns();
        let slow = self.is_slow(ticket, now_ns);
        let failed = outcome == Outcome::Failure || slow;
        let current = self.state.load();
        if current.state() != CircuitState::HalfOpen || current.epoch() != ticket.epoch {
            return;
        }
        let tally = self.add_to_tally(ticket.epoch, failed);
        if tally.successes >= self.timing.success_threshold {
            // Before the CAS that closes: the new closed period must start empty, and no
            // current permit writes the window while half-open.
            self.window.clear();
        }
        let now = self.at(now_ns);
        let settled = self.transition(current, |w| {
            let next = state::settle_probe(w, ticket.epoch, tally, now, &self.timing)?;
            if next.state() == CircuitState::Open {
                // A re-open, with a break counted from `now.start_ms`.
                self.state.raise_since(now.start_ms);
            }
            Some(next)
        });
        // The probe slot is back and the verdict made before any listener hears of it.
        let _deliver = settled.map(|_| DeliverOnDrop(self));
        self.telemetry.emit(|| EventKind::CallRecorded {
            failure: failed,
            slow,
        });
    }

    fn add_to_tally(&self, epoch: Epoch, failed: bool) -> Tally {
        // AcqRel/Acquire: probes of one period must see each other's counts to settle it once.
        let mut current = self.tally.load(Ordering::Acquire);
        loop {
            let mut tally = if (current >> TALLY_EPOCH_SHIFT) as Epoch == epoch {
                Tally {
                    successes: (current & 0xffff) as u32,
                    failures: ((current >> 16) & 0xffff) as u32,
                }
            } else {
                // Defensive: `reset_tally` starts every period at its epoch.
                Tally {
                    successes: 0,
                    failures: 0,
                }
            };
            if failed {
                tally.failures += 1;
            } else {
                tally.successes += 1;
            }
            match self.tally.compare_exchange_weak(
                current,
                tally_word(epoch, tally),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return tally,
                Err(actual) => current = actual,
            }
        }
    }

    /// Ends the call admitted with `ticket` without a result.
    #[inline]
    pub(crate) fn release(&self, ticket: Ticket) {
        if ticket.phase != Phase::Probe {
            // A closed or disabled permit holds nothing.
            return;
        }
        let current = self.state.load();
        self.state
            .update(current, |w| state::release_probe(w, ticket.epoch));
    }

    pub(super) fn force(&self, to: CircuitState) {
        let current = self.state.load();
        if self.transition(current, |w| state::force(w, to)).is_some() {
            self.transitions.deliver(&self.telemetry);
        }
    }

    /// [`AtomicState::update`] for a CAS that may make a transition: with a listener, under
    /// the lock of the report queue, which gets the transition's report (see `transitions`).
    /// The caller delivers the queue once its own state change is complete.
    fn transition(
        &self,
        current: Word,
        f: impl FnMut(Word) -> Option<Word>,
    ) -> Option<(Word, Word)> {
        let Some(mut queue) = self.transitions.queue(&self.telemetry) else {
            return self.state.update(current, f);
        };
        let done = self.state.update(current, f);
        if let Some((from, to)) = done {
            queue.push(from, to);
        }
        done
    }
}

/// Delivers the queued state changes when dropped: after the events of the call that made the
/// transition, and even if a listener panics on one of those.
struct DeliverOnDrop<'a, C: Clock>(&'a Shared<C>);

impl<C: Clock> Drop for DeliverOnDrop<'_, C> {
    fn drop(&mut self) {
        self.0.transitions.deliver(&self.0.telemetry);
    }
}

/// Releases a probe's slot if a listener unwinds before its permit exists.
struct ReleaseOnUnwind<'a, C: Clock>(&'a Shared<C>, Ticket);

impl<C: Clock> Drop for ReleaseOnUnwind<'_, C> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_cold_admission_result_fits_in_two_registers() {
        // See `Refusal`: larger, it comes back through memory and stalls the caller's copy.
        assert_eq!(std::mem::size_of::<Result<Ticket, Refusal>>(), 16);
    }
}
