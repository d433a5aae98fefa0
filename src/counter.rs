//! Counters shared by the policies.
//!
//! - [`StripedCounter`]: a statistics counter that threads can bump without contending and
//!   without a locked instruction: one cache line per stripe, each stripe written by the one
//!   thread that holds its slot, summed when read. For counts that many threads write on a
//!   path that must scale (rejections while a breaker is open, every retried call) and that
//!   only snapshots read.
//! - [`claim_slot`] / [`slot_is_live`]: the bookkeeping of rings of time slots (the breaker's
//!   time window, the retry budget), each slot tagged with the time-slice number it counts.
//!
//! # Memory ordering
//!
//! Stripes are `Relaxed`: each is an independent tally, and a snapshot's sum only has to be a
//! value the counter passed through while it was read. A stripe has one writer at a time (the
//! thread holding its slot), so that writer bumps it with a plain load and store; threads
//! without a slot share one more stripe and `fetch_add` it. A thread slot is taken with
//! `Acquire` and given back, when its thread exits, with `Release`, so the next holder's loads
//! see the last holder's stores. A slot's tag is claimed (set to [`CLEARING`]) with `AcqRel`;
//! the new tag is only stored (`Release`) once the counts are set,
//! so a reader that loads it (`Acquire`) sees those counts or later ones.

use std::cell::Cell;

use crate::sync::{AtomicU64, CachePadded, Ordering};

/// The tag of a time slot that has never counted anything.
pub(crate) const UNCLAIMED: u64 = u64::MAX;

/// The tag of a slot that one caller of [`claim_slot`] is setting up for a new
/// slice. It is never live: slice numbers stay far below it (a slice is at least a
/// millisecond long, so numbers stay under 2^45).
pub(crate) const CLEARING: u64 = u64::MAX - 1;

/// Where a recorder stands with the slot of its time slice, from [`claim_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The slot holds the slice (or a newer one, after a clock that stuttered backwards):
    /// count into it.
    Count,
    /// This caller moved the slot to the slice: its tag reads [`CLEARING`] until the caller
    /// has set the counts afresh and stored the slice number in the tag (`Release`).
    Claimed,
    /// Another caller is setting the slot up: a count added now could be wiped or, worse,
    /// added to counts of the expired slice that readers would take for the new one. The
    /// caller drops its count (see the breaker window's approximation).
    Busy,
}

/// Moves the slot tagged by `tag` to time slice `number` if it holds an older one. Readers
/// never see an expired slice's counts under the new slice's tag: the slot reads
/// [`CLEARING`], which no reader counts, from the claim until the claimer publishes its new
/// counts with the tag. `seen >= number` counts into the slot as it is, so that a clock that
/// stutters backwards never wipes a newer slice.
#[inline]
pub(crate) fn claim_slot(tag: &AtomicU64, number: u64) -> Claim {
    let current = |seen: u64| seen != UNCLAIMED && seen != CLEARING && seen >= number;
    let seen = tag.load(Ordering::Acquire);
    if current(seen) {
        return Claim::Count;
    }
    if seen == CLEARING {
        return Claim::Busy;
    }
    match tag.compare_exchange(seen, CLEARING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Claim::Claimed,
        Err(now) if current(now) => Claim::Count,
        // Being set up, or moved to an older slice by a recorder with an older reading.
        Err(_) => Claim::Busy,
    }
}

/// Whether a slot tagged `tag` counts in a window of `len` slices ending at `current`.
#[inline]
pub(crate) fn slot_is_live(tag: u64, current: u64, len: u64) -> bool {
    tag != UNCLAIMED && (current.saturating_sub(len.saturating_sub(1))..=current).contains(&tag)
}

/// The most stripes a counter has, and the number of thread slots.
pub(crate) const MAX_STRIPES: usize = 16;

#[derive(Debug)]
pub(crate) struct StripedCounter {
    /// `stripes[i]` is written only by the thread holding slot `i`.
    stripes: Box<[CachePadded<AtomicU64>]>,
    /// For threads whose slot is past the stripes, or that have none.
    overflow: CachePadded<AtomicU64>,
}

impl StripedCounter {
    /// A counter with two stripes per hardware thread (a power of two, at most 16): a
    /// runtime's workers take one slot each, and the threads beside them (the main thread,
    /// a blocking pool's) take more, so one per hardware thread left a worker of a 2-core
    /// machine counting through the shared word (a refusal on two threads then scaled to
    /// 1.3 times the 1-thread rate, not 2). A few hundred bytes per counter on small
    /// machines, 2 KiB at most.
    pub(crate) fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stripes = threads
            .saturating_mul(2)
            .clamp(1, MAX_STRIPES)
            .next_power_of_two();
        StripedCounter {
            stripes: (0..stripes)
                .map(|_| CachePadded(AtomicU64::new(0)))
                .collect(),
            overflow: CachePadded(AtomicU64::new(0)),
        }
    }

    /// A counter with no stripes, only the shared word: for the per-key instances of a
    /// [`Keyed`](crate::keyed::Keyed) map, which are many, each counted by few threads at a
    /// time, where a stripe per hardware thread would cost kilobytes per key.
    pub(crate) fn unstriped() -> Self {
        StripedCounter {
            // An empty boxed slice does not allocate.
            stripes: Box::new([]),
            overflow: CachePadded(AtomicU64::new(0)),
        }
    }

    #[inline]
    pub(crate) fn incr(&self) {
        // The slot as cached, unchecked: "not asked yet" is past every counter's stripes
        // too, so one bounds check covers both, and a thread asks for its slot on the
        // slow path below.
        match self.stripes.get(cached_slot()) {
            // No other thread writes this stripe while this one holds its slot, so a load
            // and a store cannot lose a count; readers see either value.
            Some(own) => bump(own),
            None => self.incr_slow(),
        }
    }

    #[cold]
    #[inline(never)]
    fn incr_slow(&self) {
        if self.stripes.is_empty() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.stripes.get(thread_slot()) {
            Some(own) => bump(own),
            None => {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn sum(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .fold(self.overflow.load(Ordering::Relaxed), u64::wrapping_add)
    }
}

// ===== thread slots =====

/// Not yet asked for a slot.
const NOT_ASKED: usize = usize::MAX;
/// No slot: all were taken, or the thread is exiting.
const NO_SLOT: usize = usize::MAX - 1;

/// Bit `i` set: slot `i` is held by a live thread.
static TAKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(NOT_ASKED) };
    static GUARD: SlotGuard = const { SlotGuard };
}

/// Gives the thread's slot back when the thread exits.
struct SlotGuard;

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let slot = SLOT.replace(NO_SLOT);
        if slot < MAX_STRIPES {
            // Release: the next holder of the slot sees this thread's last counts.
            TAKEN.fetch_and(!(1 << slot), std::sync::atomic::Ordering::Release);
        }
    }
}

#[inline]
fn bump(own: &AtomicU64) {
    own.store(
        own.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// This thread's slot if it has asked for one; otherwise a value past every counter's
/// stripes, as [`thread_slot`] gives to a thread that has none.
#[inline]
pub(crate) fn cached_slot() -> usize {
    // Under loom, model threads share one OS thread and so would share a slot.
    if cfg!(loom) { NO_SLOT } else { SLOT.get() }
}

/// This thread's slot, or a value past every counter's stripes when it has none.
#[inline]
pub(crate) fn thread_slot() -> usize {
    let slot = cached_slot();
    if slot == NOT_ASKED { claim() } else { slot }
}

#[cold]
fn claim() -> usize {
    use std::sync::atomic::Ordering::{Acquire, Relaxed};
    let full = u32::MAX >> (32 - MAX_STRIPES);
    // Acquire: pairs with the Release of the thread that gave the slot back.
    let claimed = TAKEN.fetch_update(Acquire, Relaxed, |taken| {
        (taken & full != full).then(|| taken | (1 << (!taken).trailing_zeros()))
    });
    let slot = match claimed {
        Ok(taken) => (!taken).trailing_zeros() as usize,
        Err(_) => NO_SLOT,
    };
    SLOT.set(slot);
    // Registers the guard's destructor; a thread already exiting gives the slot back at once.
    if slot != NO_SLOT && GUARD.try_with(|_| ()).is_err() {
        drop(SlotGuard);
    }
    SLOT.get()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_claim_hides_the_slot_until_it_is_published() {
        let tag = AtomicU64::new(UNCLAIMED);
        assert_eq!(claim_slot(&tag, 7), Claim::Claimed);
        assert!(!slot_is_live(tag.load(Ordering::Acquire), 7, 4));
        assert_eq!(claim_slot(&tag, 7), Claim::Busy, "being set up");
        assert_eq!(claim_slot(&tag, 11), Claim::Busy, "even for a newer slice");
        tag.store(7, Ordering::Release);
        assert_eq!(claim_slot(&tag, 7), Claim::Count);
        assert_eq!(
            claim_slot(&tag, 3),
            Claim::Count,
            "an older reading counts into the newer slice rather than wipe it"
        );
        assert_eq!(claim_slot(&tag, 11), Claim::Claimed);
    }

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

    #[test]
    fn counts_from_more_threads_than_stripes_and_slots() {
        let counter = StripedCounter::new();
        // More threads than slots at once: some share the overflow stripe.
        std::thread::scope(|s| {
            for _ in 0..MAX_STRIPES + 4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counter.incr();
                    }
                });
            }
        });
        assert_eq!(counter.sum(), 1000 * (MAX_STRIPES as u64 + 4));
    }

    #[test]
    fn counts_survive_threads_coming_and_going() {
        let counter = StripedCounter::new();
        // One after another: whether or not a thread reuses the slot the last one gave back
        // (parallel tests take slots too, so that cannot be asserted here), no count is lost.
        for _ in 0..50 {
            std::thread::scope(|s| {
                s.spawn(|| {
                    for _ in 0..10 {
                        counter.incr();
                    }
                });
            });
        }
        assert_eq!(counter.sum(), 500);
    }

    /// Runs `body` alone in a child process (this test binary run again with the test's name
    /// as its filter): thread slots are process-wide, and tests running beside it take some.
    fn alone_in_a_process(name: &str, body: impl FnOnce()) {
        const CHILD: &str = "PALISADE_THREAD_SLOT_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return body();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_thread_keeps_its_slot_while_it_lives_and_gives_it_back_when_it_exits() {
        alone_in_a_process(
            "counter::tests::a_thread_keeps_its_slot_while_it_lives_and_gives_it_back_when_it_exits",
            || {
                use std::sync::{Barrier, mpsc};
                // Threads that hold their slot until the barrier: their slots are all
                // different, and no thread that comes and goes meanwhile gets one of them.
                let live = |n: usize, barrier: &'static Barrier| {
                    let (tx, rx) = mpsc::channel();
                    let handles: Vec<_> = (0..n)
                        .map(|_| {
                            let tx = tx.clone();
                            std::thread::spawn(move || {
                                tx.send(thread_slot()).unwrap();
                                barrier.wait();
                            })
                        })
                        .collect();
                    let slots: Vec<usize> = rx.iter().take(n).collect();
                    (slots, handles)
                };
                let barrier: &'static Barrier = Box::leak(Box::new(Barrier::new(9)));
                let (mut held, mut handles) = live(4, barrier);
                for _ in 0..3 * MAX_STRIPES {
                    let slot = std::thread::spawn(|| {
                        let slot = thread_slot();
                        assert_eq!(thread_slot(), slot, "asked twice, the same slot");
                        slot
                    })
                    .join()
                    .unwrap();
                    assert!(slot < MAX_STRIPES, "a slot was not given back: {slot}");
                    assert!(!held.contains(&slot), "{slot} is held by a live thread");
                }
                let (more, more_handles) = live(4, barrier);
                held.extend(more);
                handles.extend(more_handles);
                barrier.wait();
                handles.into_iter().for_each(|h| h.join().unwrap());
                let mut distinct = held.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), 8, "live threads share a slot: {held:?}");
                assert!(held.iter().all(|&s| s < MAX_STRIPES), "{held:?}");
            },
        );
    }
}
