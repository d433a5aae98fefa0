//! In-order delivery of a breaker's state changes to its listener.
//!
//! Each transition is made by one compare-and-swap and moves the epoch on by one, so the
//! epochs number the transitions in the order they happened. Two threads that made
//! consecutive transitions can still reach their `emit` calls in the other order, and a
//! listener would see `Open → HalfOpen` before `Closed → Open`. So every thread that moves
//! the epoch posts what it did under the epoch it moved to, and whichever thread finds the
//! next epoch due delivers, in epoch order, every report that is ready. A report waits only
//! while the report before it has not been posted yet; the thread that posts that one then
//! delivers both.
//!
//! The lock guards the queue only: no listener runs under it, so a panicking listener poisons
//! nothing and a listener that calls back into the breaker (and makes a transition) cannot
//! deadlock: its report joins the queue and the delivering thread delivers it next.

use super::state::{CircuitState, EPOCH_MASK, Epoch};
use crate::sync::Mutex;
use crate::telemetry::{EventKind, Telemetry};

/// A transition's report: the states before and after, or `None` for an epoch move that kept
/// the state (a reset of a closed breaker), which only advances the sequence.
type Report = Option<(CircuitState, CircuitState)>;

#[derive(Debug)]
pub(crate) struct Transitions {
    queue: Mutex<Queue>,
}

#[derive(Debug)]
struct Queue {
    /// The epoch whose report is delivered next.
    next: Epoch,
    /// Whether a thread is delivering; others only post.
    delivering: bool,
    /// Reports posted ahead of their turn. Holds more than one only while threads race.
    waiting: Vec<(Epoch, Report)>,
}

impl Transitions {
    /// A sequence whose first transition moves the epoch from `epoch`.
    pub(crate) fn new(epoch: Epoch) -> Self {
        Transitions {
            queue: Mutex::new(Queue {
                next: next_epoch(epoch),
                delivering: false,
                waiting: Vec::with_capacity(4),
            }),
        }
    }

    /// Posts what one compare-and-swap did, a report for each epoch it moved through, and
    /// delivers whatever is due.
    ///
    /// All of them are posted before any is delivered: a listener that panics on the first
    /// must not leave the second unposted, which would stall every report after it. Without a
    /// listener it does nothing.
    pub(crate) fn post(&self, telemetry: &Telemetry, reports: &[(Epoch, Report)]) {
        if !telemetry.has_listener() {
            return;
        }
        let mut queue = self.queue.lock();
        queue.waiting.extend_from_slice(reports);
        if queue.delivering {
            // The delivering thread takes this report in its turn.
            return;
        }
        queue.delivering = true;
        drop(queue);
        self.deliver(telemetry);
    }

    /// Delivers the due reports, in order, until the next one has not been posted yet.
    fn deliver(&self, telemetry: &Telemetry) {
        loop {
            let mut queue = self.queue.lock();
            let due = queue.next;
            let Some(i) = queue.waiting.iter().position(|(e, _)| *e == due) else {
                queue.delivering = false;
                return;
            };
            let (_, report) = queue.waiting.swap_remove(i);
            queue.next = next_epoch(due);
            drop(queue);
            if let Some((from, to)) = report {
                // If the listener panics, the guard delivers the rest while the panic unwinds
                // (a listener's panic during unwinding is caught by `emit`), so no report is
                // left waiting for a transition that may never come.
                let guard = DeliverOnUnwind(self, telemetry);
                telemetry.emit(|| EventKind::StateChanged { from, to });
                std::mem::forget(guard);
            }
        }
    }
}

/// Goes on delivering when a listener unwinds out of [`Transitions::deliver`].
struct DeliverOnUnwind<'a>(&'a Transitions, &'a Telemetry);

impl Drop for DeliverOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.deliver(self.1);
    }
}

fn next_epoch(epoch: Epoch) -> Epoch {
    epoch.wrapping_add(1) & EPOCH_MASK as Epoch
}
