//! The real bulkhead against a plain reference model: random sequences of acquisitions,
//! releases, cancelled waiters, resizes, clock moves (long idle spells included) and
//! listeners that panic must admit, queue, grant and reject the same calls, never run more
//! calls than the limit allows, and end with every slot free.
//!
//! A panicking listener unwinds through the caller after the bulkhead's state change is
//! complete: an admission whose event panics is an admission at once given back (the permit
//! is dropped by the unwinding), a release or a rejection whose event panics is still a
//! release or a rejection.

#![cfg(feature = "tokio")]

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use palisade::bulkhead::{Bulkhead, OwnedBulkheadPermit, future::AcquireOwned};
use palisade::error::FullCause;
use palisade::telemetry::{Event, EventKind};
use palisade::{Rejected, timer::TokioTimer};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::task::Poll;
use tokio_test::task::{Spawn, spawn};

#[derive(Debug, Clone)]
enum Op {
    TryAcquire,
    Acquire,
    Release(usize),
    Cancel(usize),
    Resize(u32),
    Advance(u64),
    /// The listener panics on the next event of this kind.
    Trap(Trap),
    /// Nothing happens for a week.
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Trap {
    Admitted = 1,
    Released = 2,
    Rejected = 3,
}

impl Trap {
    fn from_u8(n: u8) -> Option<Trap> {
        [Trap::Admitted, Trap::Released, Trap::Rejected]
            .into_iter()
            .find(|t| *t as u8 == n)
    }
}

/// The payload of the listener's panics, told apart from real failures by the panic hook.
struct ListenerPanic;

/// A listener that panics once on the kind it is armed with, and records what it did.
#[derive(Clone, Default)]
struct Tripwire {
    armed: Arc<AtomicU8>,
    fired: Arc<AtomicU8>,
}

impl Tripwire {
    fn listener(&self) -> impl Fn(&Event) + Send + Sync + 'static {
        let wire = self.clone();
        move |event: &Event| {
            let kind = match event.kind() {
                EventKind::BulkheadAdmitted { .. } => Trap::Admitted,
                EventKind::BulkheadReleased { .. } => Trap::Released,
                EventKind::Rejected(_) => Trap::Rejected,
                _ => return,
            };
            if wire
                .armed
                .compare_exchange(kind as u8, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                wire.fired.store(kind as u8, Ordering::SeqCst);
                std::panic::panic_any(ListenerPanic);
            }
        }
    }

    /// Runs `f`; `Err(kind)` if the listener panicked on an event of that kind.
    fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, Trap> {
        std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
            assert!(
                payload.is::<ListenerPanic>(),
                "a panic not from the listener"
            );
            Trap::from_u8(self.fired.swap(0, Ordering::SeqCst)).expect("fired")
        })
    }
}

/// Keeps the listener's own panics out of the test output.
fn quiet_listener_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<ListenerPanic>() {
                default(info);
            }
        }));
    });
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::TryAcquire),
        5 => Just(Op::Acquire),
        5 => any::<usize>().prop_map(Op::Release),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => (1u32..6).prop_map(Op::Resize),
        2 => (1u64..150).prop_map(Op::Advance),
        1 => prop_oneof![Just(Trap::Admitted), Just(Trap::Released), Just(Trap::Rejected)]
            .prop_map(Op::Trap),
        1 => Just(Op::Idle),
    ]
}

/// What the reference expects of a waiter.
#[derive(Debug)]
struct Waiting {
    id: usize,
    deadline_ms: u64,
}

#[derive(Debug)]
struct Reference {
    limit: u32,
    max_queue: usize,
    max_wait_ms: u64,
    now_ms: u64,
    in_flight: u32,
    queue: VecDeque<Waiting>,
}

impl Reference {
    fn try_acquire(&mut self) -> bool {
        if !self.queue.is_empty() || self.in_flight >= self.limit {
            return false;
        }
        self.in_flight += 1;
        true
    }

    /// `Some(true)`: admitted; `Some(false)`: queued; `None`: full.
    fn acquire(&mut self, id: usize) -> Option<bool> {
        if self.queue.is_empty() && self.in_flight < self.limit {
            self.in_flight += 1;
            return Some(true);
        }
        if self.queue.len() >= self.max_queue {
            return None;
        }
        self.queue.push_back(Waiting {
            id,
            deadline_ms: self.now_ms + self.max_wait_ms,
        });
        Some(false)
    }

    /// The waiter granted the released slot, if any.
    fn release(&mut self) -> Option<usize> {
        if self.in_flight <= self.limit {
            if let Some(w) = self.queue.pop_front() {
                return Some(w.id);
            }
        }
        self.in_flight -= 1;
        None
    }

    fn cancel(&mut self, id: usize) {
        self.queue.retain(|w| w.id != id);
    }

    fn resize(&mut self, limit: u32) -> Vec<usize> {
        self.limit = limit;
        let mut granted = Vec::new();
        while self.in_flight < self.limit {
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            self.in_flight += 1;
            granted.push(w.id);
        }
        granted
    }

    fn advance(&mut self, ms: u64) -> Vec<usize> {
        self.now_ms += ms;
        let now = self.now_ms;
        let expired = self
            .queue
            .iter()
            .filter(|w| w.deadline_ms <= now)
            .map(|w| w.id)
            .collect();
        self.queue.retain(|w| w.deadline_ms > now);
        expired
    }
}

enum Call {
    // Kept alive for its drop, which gives the slot back.
    #[allow(dead_code)]
    Held(OwnedBulkheadPermit),
    Waiting(Spawn<AcquireOwned<TokioTimer>>),
}

/// After each step: polls every waiter (exactly the ones the reference granted get their
/// slot, exactly the expired ones are rejected, in the reference's order), then compares the
/// counts.
#[allow(clippy::too_many_arguments)]
fn check_step(
    calls: &mut [Option<Call>],
    reference: &mut Reference,
    bulkhead: &Bulkhead,
    wire: &Tripwire,
    step: usize,
    in_flight_before: u32,
    mut granted: Vec<usize>,
    expired: Vec<usize>,
) -> Result<(), TestCaseError> {
    // Waiters are in line in the order of their ids, so one pass in id order also reaches
    // those granted a slot given back by an earlier one's panicking admission.
    for (id, call) in calls.iter_mut().enumerate() {
        let Some(Call::Waiting(fut)) = call else {
            continue;
        };
        match wire.run(|| fut.poll()) {
            Ok(Poll::Pending) => {
                prop_assert!(
                    !granted.contains(&id) && !expired.contains(&id),
                    "step {}: {} still waits",
                    step,
                    id
                );
            }
            Ok(Poll::Ready(Ok(p))) => {
                prop_assert!(
                    granted.contains(&id),
                    "step {}: {} granted unexpectedly",
                    step,
                    id
                );
                *call = Some(Call::Held(p));
            }
            Ok(Poll::Ready(Err(Rejected::BulkheadFull(f)))) => {
                prop_assert_eq!(f.cause(), FullCause::WaitTimedOut);
                prop_assert!(
                    expired.contains(&id),
                    "step {}: {} timed out unexpectedly",
                    step,
                    id
                );
                *call = None;
            }
            Ok(Poll::Ready(Err(other))) => prop_assert!(false, "{:?}", other),
            Err(Trap::Admitted) => {
                // Granted, then given back by the unwinding: to the next in line, if any.
                prop_assert!(
                    granted.contains(&id),
                    "step {}: {} granted unexpectedly",
                    step,
                    id
                );
                *call = None;
                granted.extend(reference.release());
            }
            Err(Trap::Rejected) => {
                prop_assert!(
                    expired.contains(&id),
                    "step {}: {} timed out unexpectedly",
                    step,
                    id
                );
                *call = None;
            }
            Err(Trap::Released) => prop_assert!(false, "step {}: a waiter released", step),
        }
    }
    let m = bulkhead.metrics();
    let held = calls
        .iter()
        .filter(|c| matches!(c, Some(Call::Held(_))))
        .count() as u32;
    prop_assert_eq!(m.in_flight, reference.in_flight, "step {}", step);
    prop_assert_eq!(
        m.in_flight,
        held,
        "step {}: the counter matches the permits alive",
        step
    );
    prop_assert_eq!(m.queued as usize, reference.queue.len(), "step {}", step);
    // Never more calls than the limit, except those already in flight when it was cut.
    prop_assert!(
        m.in_flight <= reference.limit || m.in_flight <= in_flight_before,
        "step {}: {} in flight, limit {}",
        step,
        m.in_flight,
        reference.limit
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bulkhead_matches_reference(
        limit in 1u32..5,
        max_queue in 0u32..5,
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _guard = rt.enter();
        quiet_listener_panics();
        let max_wait_ms = 100;
        let wire = Tripwire::default();
        let mut builder = Bulkhead::builder()
            .max_concurrent(limit)
            .max_queue(max_queue)
            .listener(wire.listener());
        if max_queue > 0 {
            builder = builder.max_wait(Duration::from_millis(max_wait_ms));
        }
        let bulkhead = Bulkhead::new(builder.build().unwrap());
        let mut reference = Reference {
            limit,
            max_queue: max_queue as usize,
            max_wait_ms,
            now_ms: 0,
            in_flight: 0,
            queue: VecDeque::new(),
        };
        // Every call ever made, by id; `None` once it has ended.
        let mut calls: Vec<Option<Call>> = Vec::new();

        for (step, op) in ops.into_iter().enumerate() {
            let in_flight_before = reference.in_flight;
            // Waiters the reference says were granted (or timed out) by this step.
            let mut granted = Vec::new();
            let mut expired = Vec::new();
            match op {
                Op::TryAcquire => match wire.run(|| bulkhead.try_acquire_owned()) {
                    Ok(real) => {
                        prop_assert_eq!(real.is_ok(), reference.try_acquire(), "step {}", step);
                        if let Ok(p) = real {
                            calls.push(Some(Call::Held(p)));
                        }
                    }
                    Err(Trap::Admitted) => {
                        // Admitted, then given back by the unwinding.
                        prop_assert!(reference.try_acquire(), "step {}", step);
                        granted.extend(reference.release());
                    }
                    Err(Trap::Rejected) => prop_assert!(!reference.try_acquire(), "step {}", step),
                    Err(Trap::Released) => prop_assert!(false, "step {}: released nothing", step),
                },
                Op::Acquire => {
                    let id = calls.len();
                    let mut fut = spawn(bulkhead.acquire_owned());
                    let want = reference.acquire(id);
                    let polled = match wire.run(|| fut.poll()) {
                        Ok(polled) => polled,
                        Err(trap) => {
                            drop(fut);
                            calls.push(None);
                            match (trap, want) {
                                (Trap::Admitted, Some(true)) => granted.extend(reference.release()),
                                (Trap::Rejected, None) => {}
                                (trap, want) => prop_assert!(false, "step {}: {:?} vs reference {:?}", step, trap, want),
                            }
                            check_step(&mut calls, &mut reference, &bulkhead, &wire, step, in_flight_before, granted, expired)?;
                            continue;
                        }
                    };
                    match (polled, want) {
                        (std::task::Poll::Ready(Ok(p)), Some(true)) => calls.push(Some(Call::Held(p))),
                        (std::task::Poll::Pending, Some(false)) => calls.push(Some(Call::Waiting(fut))),
                        (std::task::Poll::Ready(Err(Rejected::BulkheadFull(f))), None) => {
                            prop_assert_eq!(f.cause(), FullCause::QueueFull);
                            calls.push(None);
                        }
                        (real, want) => prop_assert!(false, "step {}: real {:?} vs reference {:?}", step, real.map(|r| r.map(drop)), want),
                    }
                }
                Op::Release(i) => {
                    let held: Vec<usize> = (0..calls.len()).filter(|&j| matches!(calls[j], Some(Call::Held(_)))).collect();
                    if !held.is_empty() {
                        let id = held[i % held.len()];
                        let permit = calls[id].take();
                        if let Err(trap) = wire.run(|| drop(permit)) {
                            prop_assert_eq!(trap, Trap::Released, "step {}", step);
                        }
                        granted.extend(reference.release());
                    }
                }
                Op::Cancel(i) => {
                    let waiting: Vec<usize> = (0..calls.len()).filter(|&j| matches!(calls[j], Some(Call::Waiting(_)))).collect();
                    if !waiting.is_empty() {
                        let id = waiting[i % waiting.len()];
                        calls[id] = None;
                        reference.cancel(id);
                    }
                }
                Op::Resize(n) => {
                    bulkhead.set_max_concurrent(n).unwrap();
                    granted.extend(reference.resize(n));
                }
                Op::Advance(ms) => {
                    rt.block_on(tokio::time::advance(Duration::from_millis(ms)));
                    expired.extend(reference.advance(ms));
                }
                Op::Idle => {
                    let week_ms = 7 * 24 * 3_600_000;
                    rt.block_on(tokio::time::advance(Duration::from_millis(week_ms)));
                    expired.extend(reference.advance(week_ms));
                }
                Op::Trap(trap) => wire.armed.store(trap as u8, Ordering::SeqCst),
            }
            check_step(&mut calls, &mut reference, &bulkhead, &wire, step, in_flight_before, granted, expired)?;
        }
        wire.armed.store(0, Ordering::SeqCst);
        calls.clear();
        let m = bulkhead.metrics();
        prop_assert_eq!((m.in_flight, m.queued), (0, 0));
    }
}
