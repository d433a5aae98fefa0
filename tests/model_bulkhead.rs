//! The real bulkhead against a plain reference model: random sequences of acquisitions,
//! releases, cancelled waiters, resizes and clock moves must admit, queue, grant and reject
//! the same calls, never run more calls than the limit allows, and end with every slot free.

#![cfg(feature = "tokio")]

use std::collections::VecDeque;
use std::time::Duration;

use palisade::bulkhead::{Bulkhead, OwnedBulkheadPermit, future::AcquireOwned};
use palisade::error::FullCause;
use palisade::{Rejected, timer::TokioTimer};
use proptest::prelude::*;
use tokio_test::task::{Spawn, spawn};

#[derive(Debug, Clone)]
enum Op {
    TryAcquire,
    Acquire,
    Release(usize),
    Cancel(usize),
    Resize(u32),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::TryAcquire),
        5 => Just(Op::Acquire),
        5 => any::<usize>().prop_map(Op::Release),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => (1u32..6).prop_map(Op::Resize),
        2 => (1u64..150).prop_map(Op::Advance),
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
        let max_wait_ms = 100;
        let mut builder = Bulkhead::builder().max_concurrent(limit).max_queue(max_queue);
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
                Op::TryAcquire => {
                    let real = bulkhead.try_acquire_owned();
                    prop_assert_eq!(real.is_ok(), reference.try_acquire(), "step {}", step);
                    if let Ok(p) = real {
                        calls.push(Some(Call::Held(p)));
                    }
                }
                Op::Acquire => {
                    let id = calls.len();
                    let mut fut = spawn(bulkhead.acquire_owned());
                    let want = reference.acquire(id);
                    match (fut.poll(), want) {
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
                        calls[id] = None;
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
            }
            // Poll every waiter: exactly the ones the reference granted get their slot, exactly
            // the expired ones are rejected, in the reference's order.
            for (id, call) in calls.iter_mut().enumerate() {
                let Some(Call::Waiting(fut)) = call else { continue };
                match fut.poll() {
                    std::task::Poll::Pending => {
                        prop_assert!(!granted.contains(&id) && !expired.contains(&id), "step {}: {} still waits", step, id);
                    }
                    std::task::Poll::Ready(Ok(p)) => {
                        prop_assert!(granted.contains(&id), "step {}: {} granted unexpectedly", step, id);
                        *call = Some(Call::Held(p));
                    }
                    std::task::Poll::Ready(Err(Rejected::BulkheadFull(f))) => {
                        prop_assert_eq!(f.cause(), FullCause::WaitTimedOut);
                        prop_assert!(expired.contains(&id), "step {}: {} timed out unexpectedly", step, id);
                        *call = None;
                    }
                    std::task::Poll::Ready(Err(other)) => prop_assert!(false, "{:?}", other),
                }
            }
            let m = bulkhead.metrics();
            let held = calls.iter().filter(|c| matches!(c, Some(Call::Held(_)))).count() as u32;
            prop_assert_eq!(m.in_flight, reference.in_flight, "step {}", step);
            prop_assert_eq!(m.in_flight, held, "step {}: the counter matches the permits alive", step);
            prop_assert_eq!(m.queued as usize, reference.queue.len(), "step {}", step);
            // Never more calls than the limit, except those already in flight when it was cut.
            prop_assert!(
                m.in_flight <= reference.limit || m.in_flight <= in_flight_before,
                "step {}: {} in flight, limit {}",
                step,
                m.in_flight,
                reference.limit
            );
        }
        calls.clear();
        let m = bulkhead.metrics();
        prop_assert_eq!((m.in_flight, m.queued), (0, 0));
    }
}
