//! CORE: the bulkhead's slots, as an atomic counter with a FIFO queue of waiters beside it.
//!
//! # Fail-fast admission
//!
//! One `AtomicU32` word holds the number of calls holding a slot (low 31 bits) and a
//! `WAITERS` flag (top bit) set while the queue is not empty. Taking a slot is a
//! compare-and-swap that only succeeds below `limit` and with the flag clear; giving one back
//! is a `fetch_sub`, which cannot fail under contention. Without waiters, that is all: no
//! lock, no allocation.
//!
//! # The queue
//!
//! With a queue, the waiters live in a `VecDeque` under a mutex, oldest first. The flag is set
//! and cleared under that mutex, and a release that finds it set takes the mutex. Because
//! "is a slot free?" and "is anybody waiting?" are answered by the same word, a caller joining
//! the queue and a call giving its slot back cannot miss each other: the caller sets the flag
//! with a compare-and-swap that also checks the count (taking the slot instead if one is
//! free), and the release either decrements before that (and the caller takes the slot) or
//! sees the flag after it (and hands the slot over). This gives three invariants:
//!
//! 1. A slot given back while waiters exist goes **to the oldest waiter**: the release sees
//!    the flag in the value it decremented, and takes the slot again for the front of the
//!    queue under the mutex. The flag keeps newcomers out in between, so a newcomer can
//!    never take it first.
//! 2. A waiter is either in the queue and `Waiting`, or out of it and `Granted` (it owns a
//!    slot) or `Abandoned`. A waiter that gives up (dropped, or its `max_wait` ran out)
//!    removes itself under the mutex; if it was granted in the meantime, it gives the slot
//!    back, so the slot moves on to the next waiter. No slot is ever lost or counted twice.
//! 3. A waker is woken after the mutex is released.
//!
//! # Resizing
//!
//! `limit` can change at any time. Raising it grants queued waiters at once; lowering it lets
//! the calls in flight finish, and admits no one until the count is below the new limit.
//!
//! # Memory ordering
//!
//! Read-modify-writes of the word are `AcqRel` (tokio's semaphore makes the same choice), so
//! work done under a slot happens-before the next holder of that slot starts, for users who
//! rely on it; every race above is decided by the word's modification order, which needs no
//! stronger ordering. `limit` is `Relaxed`: a resize only has to be seen eventually, and the
//! queue's mutex orders it against grants. `queued` mirrors the queue's length for
//! snapshots only; it is written under the mutex.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use crate::sync::{Arc, AtomicU32, Mutex, Ordering};

/// Set in the word while the queue has waiters.
const WAITERS: u32 = 1 << 31;
const COUNT: u32 = WAITERS - 1;

/// A waiter's place in line.
#[derive(Debug)]
pub(crate) struct Node {
    state: Mutex<NodeState>,
}

#[derive(Debug)]
enum NodeState {
    Waiting(Option<Waker>),
    /// With the calls holding a slot once this one was counted in.
    Granted(u32),
    Abandoned,
}

/// How a queued acquisition began.
#[derive(Debug)]
pub(crate) enum Enqueued {
    /// A slot was free and nobody was waiting: it is ours (calls now holding one, ours
    /// included).
    Admitted(u32),
    /// In line; poll the node until granted.
    Waiting(Arc<Node>),
    /// No slot and no room in the queue.
    Full,
}

/// What a waiter that gave up was holding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// It left the queue without a slot.
    Left,
    /// It had been granted a slot, which it now owns (calls holding one at the grant).
    WasGranted(u32),
}

#[derive(Debug)]
pub(crate) struct Semaphore {
    // Calls holding a slot, plus the WAITERS flag.
    word: AtomicU32,
    limit: AtomicU32,
    queued: AtomicU32,
    max_queue: u32,
    queue: Mutex<VecDeque<Arc<Node>>>,
}

impl Semaphore {
    pub(crate) fn new(limit: u32, max_queue: u32) -> Self {
        Semaphore {
            word: AtomicU32::new(0),
            limit: AtomicU32::new(limit),
            queued: AtomicU32::new(0),
            max_queue,
            queue: Mutex::new(VecDeque::new()),
        }
    }

    #[inline]
    fn has_queue(&self) -> bool {
        self.max_queue > 0
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & COUNT
    }

    #[inline]
    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Applies `f` to the word until it declines or its result is installed; returns the
    /// word installed.
    #[inline]
    fn update(&self, mut f: impl FnMut(u32) -> Option<u32>) -> Option<u32> {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            let next = f(current)?;
            match self.word.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(next),
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a slot without waiting, and without overtaking anyone in line. The only step of
    /// fail-fast admission. Returns the calls holding a slot, this one included, as the
    /// compare-and-swap left them: a later read could see other calls come and go.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<u32> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.update(|w| (w & WAITERS == 0 && w < limit).then_some(w + 1))
    }

    /// Takes a free slot for the queue's front (called with the queue locked); returns the
    /// calls holding a slot, that one included.
    fn take_for_queue(&self) -> Option<u32> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.update(|w| (w & COUNT < limit).then_some(w + 1))
            .map(|w| w & COUNT)
    }

    /// Takes a slot, or a place in line.
    pub(crate) fn enqueue(&self) -> Enqueued {
        if let Some(in_flight) = self.try_acquire() {
            return Enqueued::Admitted(in_flight);
        }
        if !self.has_queue() {
            return Enqueued::Full;
        }
        let mut queue = self.queue.lock();
        if queue.is_empty() {
            // One step decides between a free slot and joining the line: a release racing us
            // either freed the slot before (we take it) or sees the flag after (and hands its
            // slot over under the mutex we hold).
            let limit = self.limit.load(Ordering::Relaxed);
            let mut admitted = false;
            let word = self.update(|w| {
                admitted = w & COUNT < limit;
                Some(if admitted { w + 1 } else { w | WAITERS })
            });
            if let (true, Some(word)) = (admitted, word) {
                return Enqueued::Admitted(word & COUNT);
            }
        } else if queue.len() >= self.max_queue as usize {
            return Enqueued::Full;
        }
        let node = Arc::new(Node {
            state: Mutex::new(NodeState::Waiting(None)),
        });
        queue.push_back(node.clone());
        self.queued.store(queue.len() as u32, Ordering::Relaxed);
        Enqueued::Waiting(node)
    }

    /// Clears the flag once the queue is empty (called with the queue locked).
    fn settle_flag_locked(&self, queue: &VecDeque<Arc<Node>>) {
        self.queued.store(queue.len() as u32, Ordering::Relaxed);
        if queue.is_empty() {
            self.word.fetch_and(COUNT, Ordering::AcqRel);
        }
    }

    /// Whether `node` has been granted its slot (with the calls holding one at the grant);
    /// registers the waker if not.
    pub(crate) fn poll_granted(&self, node: &Node, cx: &mut Context<'_>) -> Poll<u32> {
        let mut state = node.state.lock();
        match &mut *state {
            NodeState::Granted(in_flight) => Poll::Ready(*in_flight),
            NodeState::Waiting(waker) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            // Only the owner abandons a node, and it stops polling when it does.
            NodeState::Abandoned => Poll::Pending,
        }
    }

    /// Takes `node` out of line. If it was granted a slot meanwhile, the caller now owns it.
    pub(crate) fn cancel(&self, node: &Arc<Node>) -> Cancelled {
        let mut queue = self.queue.lock();
        let mut state = node.state.lock();
        match *state {
            NodeState::Granted(in_flight) => Cancelled::WasGranted(in_flight),
            NodeState::Waiting(_) | NodeState::Abandoned => {
                *state = NodeState::Abandoned;
                drop(state);
                if let Some(i) = queue.iter().position(|n| Arc::ptr_eq(n, node)) {
                    queue.remove(i);
                    self.settle_flag_locked(&queue);
                }
                Cancelled::Left
            }
        }
    }

    /// Gives a slot back: to the oldest waiter if there is one and the limit allows, to the
    /// pool otherwise. Returns the calls that held a slot just before, this one included.
    #[inline]
    pub(crate) fn release(&self) -> u32 {
        // A fetch_sub never retries, so releases from many threads cost one read-modify-write
        // each; whether waiters need the slot is read from the value it replaced.
        let before = self.word.fetch_sub(1, Ordering::AcqRel);
        if before & WAITERS != 0 {
            self.hand_over();
        }
        before & COUNT
    }

    /// Gives the slot just released to the oldest waiter. While the flag is set no newcomer
    /// can take it (fail-fast admission needs the flag clear, and joining goes to the back of
    /// the line), so the decrement above and the increment here move the slot from one call
    /// to the next. The increment checks the limit: after a shrink, releases first bring the
    /// count down, and a grant made meanwhile by a resize may already have taken the room.
    #[cold]
    fn hand_over(&self) {
        let waker = {
            let mut queue = self.queue.lock();
            let mut waker = None;
            if !queue.is_empty() {
                if let Some(in_flight) = self.take_for_queue() {
                    waker = queue.pop_front().and_then(|next| grant(&next, in_flight));
                }
            }
            self.settle_flag_locked(&queue);
            waker
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Changes the limit; waiters are granted the room a raise makes.
    pub(crate) fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
        if !self.has_queue() {
            return;
        }
        let mut wakers = Vec::new();
        {
            let mut queue = self.queue.lock();
            while !queue.is_empty() {
                let Some(in_flight) = self.take_for_queue() else {
                    break;
                };
                if let Some(node) = queue.pop_front() {
                    wakers.extend(grant(&node, in_flight));
                }
            }
            self.settle_flag_locked(&queue);
        }
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Marks a waiter granted; returns its waker, to be woken once the queue is unlocked.
fn grant(node: &Node, in_flight: u32) -> Option<Waker> {
    let mut state = node.state.lock();
    match std::mem::replace(&mut *state, NodeState::Granted(in_flight)) {
        NodeState::Waiting(waker) => waker,
        // Nodes in the queue are always waiting: cancel() removes a node before abandoning it.
        NodeState::Granted(_) | NodeState::Abandoned => None,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn waiting(e: Enqueued) -> Arc<Node> {
        match e {
            Enqueued::Waiting(node) => node,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    #[test]
    fn fail_fast_admits_up_to_the_limit() {
        let s = Semaphore::new(2, 0);
        // Each admission and release reports the count its own atomic step saw.
        assert_eq!(s.try_acquire(), Some(1));
        assert_eq!(s.try_acquire(), Some(2));
        assert_eq!(s.try_acquire(), None);
        assert!(matches!(s.enqueue(), Enqueued::Full));
        assert_eq!(s.release(), 2);
        assert_eq!(s.try_acquire(), Some(2));
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn released_slots_go_to_waiters_in_order() {
        let s = Semaphore::new(1, 2);
        assert!(matches!(s.enqueue(), Enqueued::Admitted(1)));
        let first = waiting(s.enqueue());
        let second = waiting(s.enqueue());
        assert!(matches!(s.enqueue(), Enqueued::Full), "the queue holds 2");
        assert!(s.try_acquire().is_none(), "no barging past the queue");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(s.poll_granted(&first, &mut cx).is_pending());
        assert_eq!(s.release(), 1);
        assert_eq!(s.poll_granted(&first, &mut cx), Poll::Ready(1));
        assert!(s.poll_granted(&second, &mut cx).is_pending());
        assert_eq!((s.in_flight(), s.queued()), (1, 1));
    }

    #[test]
    fn a_cancelled_waiter_leaves_and_a_granted_one_owns_its_slot() {
        let s = Semaphore::new(1, 2);
        assert!(matches!(s.enqueue(), Enqueued::Admitted(1)));
        let first = waiting(s.enqueue());
        let second = waiting(s.enqueue());
        assert_eq!(s.cancel(&first), Cancelled::Left);
        s.release();
        assert_eq!(s.cancel(&second), Cancelled::WasGranted(1));
        s.release();
        assert_eq!((s.in_flight(), s.queued()), (0, 0));
    }

    #[test]
    fn resizing_grants_waiters_and_shrinking_waits_for_calls_to_finish() {
        let s = Semaphore::new(1, 4);
        assert!(s.try_acquire().is_some());
        let a = waiting(s.enqueue());
        let b = waiting(s.enqueue());
        s.set_limit(3);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(s.poll_granted(&a, &mut cx), Poll::Ready(2));
        assert_eq!(s.poll_granted(&b, &mut cx), Poll::Ready(3));
        assert_eq!(s.in_flight(), 3);
        s.set_limit(1);
        let c = waiting(s.enqueue());
        s.release();
        s.release();
        assert!(
            s.poll_granted(&c, &mut cx).is_pending(),
            "still at the new limit"
        );
        s.release();
        assert!(s.poll_granted(&c, &mut cx).is_ready());
        assert_eq!(s.in_flight(), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    #[test]
    fn fail_fast_never_exceeds_the_limit_and_every_slot_comes_back() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(1, 0));
            let active = Arc::new(AtomicU32::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (s, active) = (s.clone(), active.clone());
                    thread::spawn(move || {
                        if s.try_acquire().is_some() {
                            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 1, "{now} calls in flight with a limit of 1");
                            active.fetch_sub(1, Ordering::SeqCst);
                            s.release();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(s.in_flight(), 0);
        });
    }

    #[test]
    fn a_waiter_cancelled_while_a_slot_is_released_never_leaks_it() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(1, 1));
            assert!(matches!(s.enqueue(), Enqueued::Admitted(1)));
            let node = match s.enqueue() {
                Enqueued::Waiting(node) => node,
                other => panic!("{other:?}"),
            };
            let releaser = {
                let s = s.clone();
                thread::spawn(move || {
                    s.release();
                })
            };
            let canceller = {
                let s = s.clone();
                thread::spawn(move || {
                    if matches!(s.cancel(&node), Cancelled::WasGranted(_)) {
                        s.release();
                    }
                })
            };
            releaser.join().unwrap();
            canceller.join().unwrap();
            assert_eq!((s.in_flight(), s.queued()), (0, 0));
            assert!(s.try_acquire().is_some(), "the slot is free again");
        });
    }

    #[test]
    fn a_slot_released_to_a_queued_waiter_is_not_taken_by_a_newcomer() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(1, 1));
            assert!(s.try_acquire().is_some());
            let waiter = match s.enqueue() {
                Enqueued::Waiting(node) => node,
                other => panic!("{other:?}"),
            };
            let releaser = {
                let s = s.clone();
                thread::spawn(move || {
                    s.release();
                })
            };
            // Between the release's decrement and its hand-over, the count shows a free slot:
            // the flag must keep this newcomer out all the same.
            let newcomer = {
                let s = s.clone();
                thread::spawn(move || s.try_acquire().is_some())
            };
            releaser.join().unwrap();
            assert!(!newcomer.join().unwrap(), "a newcomer overtook the queue");
            let mut cx = Context::from_waker(Waker::noop());
            assert!(
                s.poll_granted(&waiter, &mut cx).is_ready(),
                "the waiter got the slot"
            );
            assert_eq!((s.in_flight(), s.queued()), (1, 0));
            s.release();
            assert_eq!(s.in_flight(), 0);
            assert!(
                s.try_acquire().is_some(),
                "the flag was cleared with the queue"
            );
        });
    }

    #[test]
    fn a_slot_released_while_another_caller_queues_is_not_lost() {
        loom::model(|| {
            let s = Arc::new(Semaphore::new(1, 1));
            assert!(s.try_acquire().is_some());
            let releaser = {
                let s = s.clone();
                thread::spawn(move || {
                    s.release();
                })
            };
            let outcome = s.enqueue();
            releaser.join().unwrap();
            match outcome {
                // Admitted in the one step that also sets the flag: it reports the calls
                // holding a slot with this one, as every admission does.
                Enqueued::Admitted(in_flight) => assert_eq!(in_flight, 1),
                Enqueued::Waiting(node) => {
                    let mut cx = Context::from_waker(Waker::noop());
                    assert!(s.poll_granted(&node, &mut cx).is_ready(), "lost wake-up");
                }
                Enqueued::Full => panic!("the queue had room"),
            }
            assert_eq!(s.in_flight(), 1);
            s.release();
            assert_eq!(s.in_flight(), 0);
        });
    }
}
