//! In-order delivery of a breaker's state changes to its listener.
//!
//! Two threads that make consecutive transitions can reach their `emit` calls in the other
//! order, and a listener would see `Open → HalfOpen` before `Closed → Open`. So, when a
//! listener is set, a transition's compare-and-swap and the queueing of its report happen
//! under one lock: reports queue in the order the transitions happened. Whichever thread
//! finds nobody delivering then delivers the queue, front first, outside the lock.
//!
//! The lock is taken only by transitions (never by an admission or a result that changes no
//! state) and only with a listener; it guards a compare-and-swap and a push, never user code.
//! So a panicking listener poisons nothing, and a listener that calls back into the breaker
//! and makes a transition cannot deadlock: its report joins the queue and the delivering
//! thread delivers it next. If a listener panics, the delivering thread goes on delivering
//! the rest while the panic unwinds (a listener's panic during unwinding is caught), so no
//! report waits for a transition that may never come.

use std::collections::VecDeque;

use super::CircuitState;
use super::state::Word;
use crate::sync::{Mutex, MutexGuard};
use crate::telemetry::{EventKind, Telemetry};

#[derive(Debug)]
pub(crate) struct Transitions {
    queue: Mutex<Queue>,
}

#[derive(Debug)]
pub(crate) struct Queue {
    /// Whether a thread is delivering; others only queue.
    delivering: bool,
    reports: VecDeque<(CircuitState, CircuitState)>,
}

impl Queue {
    /// Queues the report of the compare-and-swap that replaced `from` with `to`.
    pub(crate) fn push(&mut self, from: Word, to: Word) {
        if from.epoch() == to.epoch() {
            // Probe bookkeeping within one half-open period: no transition.
            return;
        }
        if from.state() == CircuitState::HalfOpen && to.state() == CircuitState::HalfOpen {
            // Re-opened when the half-open wait ran out, and half-opened again at once.
            self.reports
                .push_back((CircuitState::HalfOpen, CircuitState::Open));
            self.reports
                .push_back((CircuitState::Open, CircuitState::HalfOpen));
        } else if from.state() != to.state() {
            self.reports.push_back((from.state(), to.state()));
        }
    }
}

impl Transitions {
    pub(crate) fn new() -> Self {
        Transitions {
            queue: Mutex::new(Queue {
                delivering: false,
                reports: VecDeque::with_capacity(4),
            }),
        }
    }

    /// The queue, locked, to hold across a transition's compare-and-swap and the push of its
    /// report; `None` without a listener, when there is nothing to order.
    #[inline]
    pub(crate) fn queue(&self, telemetry: &Telemetry) -> Option<MutexGuard<'_, Queue>> {
        telemetry.has_listener().then(|| self.queue.lock())
    }

    /// Delivers the queued reports, in order, unless another thread is delivering them.
    pub(crate) fn deliver(&self, telemetry: &Telemetry) {
        if !telemetry.has_listener() {
            return;
        }
        {
            let mut queue = self.queue.lock();
            if queue.delivering || queue.reports.is_empty() {
                return;
            }
            queue.delivering = true;
        }
        self.deliver_queued(telemetry);
    }

    /// Delivers until the queue is empty; the caller has set `delivering`.
    fn deliver_queued(&self, telemetry: &Telemetry) {
        loop {
            let Some((from, to)) = ({
                let mut queue = self.queue.lock();
                let next = queue.reports.pop_front();
                if next.is_none() {
                    queue.delivering = false;
                }
                next
            }) else {
                return;
            };
            let guard = DeliverOnUnwind(self, telemetry);
            telemetry.emit(|| EventKind::StateChanged { from, to });
            std::mem::forget(guard);
        }
    }
}

/// Goes on delivering when a listener unwinds out of [`Transitions::deliver_queued`].
struct DeliverOnUnwind<'a>(&'a Transitions, &'a Telemetry);

impl Drop for DeliverOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.deliver_queued(self.1);
    }
}
