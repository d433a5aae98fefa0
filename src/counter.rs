//! Counters shared by the policies.
//!
//! - [`StripedCounter`]: a statistics counter that threads can bump without contending: one
//!   cache line per stripe, each thread on its own stripe, summed when read. For counts that
//!   many threads write on a path that must scale (rejections while a breaker is open) and
//!   that only snapshots read.
//! - [`claim_slot`] / [`slot_is_live`]: the bookkeeping of rings of time slots (the breaker's
//!   time window, the retry budget), each slot tagged with the time-slice number it counts.
//!
//! # Memory ordering
//!
//! Stripes are `Relaxed`: each is an independent tally, and a snapshot's sum only has to be a
//! value the counter passed through while it was read. A slot's tag is claimed with `AcqRel`,
//! so the clearing that follows a claim is ordered after it for threads that see the new tag.

use std::cell::Cell;

use crate::sync::{AtomicU64, CachePadded, Ordering};

/// The tag of a time slot that has never counted anything.
pub(crate) const UNCLAIMED: u64 = u64::MAX;

/// Moves the slot tagged by `tag` to time slice `number` if it holds an older one; true for
/// the one caller that must then clear its counts. `seen < number` also keeps a clock that
/// stutters backwards from wiping a newer slot.
#[inline]
pub(crate) fn claim_slot(tag: &AtomicU64, number: u64) -> bool {
    let seen = tag.load(Ordering::Acquire);
    (seen == UNCLAIMED || seen < number)
        && tag
            .compare_exchange(seen, number, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

/// Whether a slot tagged `tag` counts in a window of `len` slices ending at `current`.
#[inline]
pub(crate) fn slot_is_live(tag: u64, current: u64, len: u64) -> bool {
    tag != UNCLAIMED && (current.saturating_sub(len.saturating_sub(1))..=current).contains(&tag)
}

#[derive(Debug)]
pub(crate) struct StripedCounter {
    stripes: Box<[CachePadded<AtomicU64>]>,
}

impl StripedCounter {
    /// A counter with one stripe per hardware thread (a power of two, at most 16), so that
    /// a busy process pays a few hundred bytes per counter, not kilobytes.
    pub(crate) fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stripes = threads.clamp(1, 16).next_power_of_two();
        StripedCounter {
            stripes: (0..stripes)
                .map(|_| CachePadded(AtomicU64::new(0)))
                .collect(),
        }
    }

    #[inline]
    pub(crate) fn incr(&self) {
        let i = thread_stripe() & (self.stripes.len() - 1);
        self.stripes[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// This thread's stripe: threads are numbered in the order they first count anything.
#[inline]
fn thread_stripe() -> usize {
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        if s.get() == usize::MAX {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            s.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & (usize::MAX >> 1));
        }
        s.get()
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_thread() {
        let counter = StripedCounter::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counter.incr();
                    }
                });
            }
        });
        counter.incr();
        assert_eq!(counter.sum(), 4001);
    }
}
