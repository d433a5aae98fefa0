//! CORE: the closed breaker's memory of recent outcomes, and the rule that trips it.
//!
//! Three models, all lock-free and allocation-free after construction:
//!
//! - **consecutive**: one counter of failures in a row; a success clears it. A success while
//!   the counter is already zero only reads it, so a healthy breaker shared by many threads
//!   writes nothing and keeps its cache line shared.
//! - **count window**: the last `size` calls, as a ring of one-byte slots. A call takes the
//!   next position and swaps its outcome into that slot; the aggregate counters change only
//!   when the outcome differs from the one it replaced. In windows of at least
//!   [`BLOCKED_FROM`] slots, threads take positions from the shared cursor eight at a time,
//!   so the cursor's cache line is written once per eight calls rather than by every call.
//! - **time window**: a ring of buckets, each covering `duration / buckets` and tagged with the
//!   time slice it holds. The first call of a new slice claims the bucket by compare-and-swap
//!   on the tag, starts its counts at its own call, then tags it with the slice. Under a count rule ("N failures within D") without a slow-call
//!   rule, a success can change no decision, so it is not recorded at all: it reads no clock
//!   and writes nothing, and only failures rotate the buckets. The window's `calls` are then
//!   its failures, as the consecutive model's are.
//!
//! Slow calls are counted beside failures in the same window. Under the consecutive model, a
//! small count window of the last `minimum_calls` calls tracks them.
//!
//! # Approximation
//!
//! The counters are separate atomics, read one after another, so under concurrent recording
//! the trip decision may see a count that is one or two calls behind. Two calls racing on the
//! same count slot (more calls in flight than the window has slots), or a call landing in a
//! bucket while the first call of its slice sets it up, can lose a count. The trip rule is
//! evaluated again on every failure, so a decision missed by a race is taken by the next
//! failure. A bucket being set up reads as empty, so no reader ever counts an expired slice's
//! calls as current ones: a race can delay a trip, never make one.
//!
//! With positions taken in blocks, one thread's calls fill the ring in exact order, but with
//! several threads the window is the last `size` positions handed out: up to seven per thread
//! are reserved and not yet used (their slots still hold older outcomes), and a thread using
//! a reserved position later overwrites an outcome newer than its own. A thread that inherits
//! an exited thread's slot inherits its block too. Both shift the window by at most seven
//! calls per thread, which is why only windows of [`BLOCKED_FROM`] slots or more use blocks.
//!
//! # Memory ordering
//!
//! Every counter uses `Relaxed`: each is an independent tally, and no other memory is
//! published through it. A bucket's tag is claimed (set to `CLEARING`) with `AcqRel` and set
//! to the new slice with `Release` once the counts are set afresh; readers load it with
//! `Acquire`, so they see those counts or later ones under the new tag.

use crate::counter::{
    Claim, MAX_STRIPES, UNCLAIMED, cached_slot, claim_slot, slot_is_live, thread_slot,
};
use crate::sync::{AtomicU32, AtomicU64, CachePadded, Ordering};

/// One call's contribution to a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

impl Sample {
    const fn code(self) -> u8 {
        // 0 is an empty slot.
        1 | ((self.failure as u8) << 1) | ((self.slow as u8) << 2)
    }
}

/// Totals over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

/// When the counts of a window trip the breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rule {
    /// `failures / calls >= ratio` once `calls >= min_calls`.
    Ratio { ratio: f64, min_calls: u32 },
    /// `failures >= failures`.
    Count { failures: u32 },
}

/// Slow-call rule: `slow / calls >= ratio` once `calls >= min_calls`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SlowRule {
    pub(crate) ratio: f64,
    pub(crate) min_calls: u32,
}

#[inline]
fn ratio_reached(part: u32, calls: u32, ratio: f64, min_calls: u32) -> bool {
    // A racing reader can see `part > calls`; that is still a ratio of at least 1.
    calls >= min_calls && calls > 0 && f64::from(part) >= ratio * f64::from(calls)
}

impl Counts {
    fn trips(self, rule: Option<Rule>, slow: Option<SlowRule>) -> bool {
        let failed = match rule {
            Some(Rule::Ratio { ratio, min_calls }) => {
                ratio_reached(self.failures, self.calls, ratio, min_calls)
            }
            Some(Rule::Count { failures }) => self.failures >= failures,
            None => false,
        };
        failed || slow.is_some_and(|s| ratio_reached(self.slow, self.calls, s.ratio, s.min_calls))
    }
}

/// The trip model with its state.
#[derive(Debug)]
pub(crate) enum Window {
    Consecutive {
        threshold: u32,
        failures: AtomicU32,
        // Only with a slow-call rule: the last `min_calls` calls.
        slow: Option<(CountRing, SlowRule)>,
    },
    Count {
        ring: CountRing,
        rule: Rule,
        slow: Option<SlowRule>,
    },
    Time {
        ring: TimeRing,
        rule: Rule,
        slow: Option<SlowRule>,
        /// Whether successes are recorded: false for a count rule without a slow-call rule,
        /// which no success can bring nearer (see the module docs).
        successes: bool,
    },
}

impl Window {
    /// A time window over `ring` with these rules.
    pub(crate) fn time(ring: TimeRing, rule: Rule, slow: Option<SlowRule>) -> Self {
        Window::Time {
            ring,
            rule,
            successes: !matches!(rule, Rule::Count { .. }) || slow.is_some(),
            slow,
        }
    }

    /// Whether the window needs the time to record a call that failed or not (to pick its
    /// bucket).
    #[inline]
    pub(crate) fn needs_clock(&self, failure: bool) -> bool {
        match self {
            Window::Time { successes, .. } => failure || *successes,
            _ => false,
        }
    }

    /// Records one call at `now_ns` (ignored by windows that keep no time) and says whether
    /// the breaker should trip.
    #[inline]
    pub(crate) fn record(&self, sample: Sample, now_ns: u64) -> bool {
        match self {
            Window::Consecutive {
                threshold,
                failures,
                slow,
            } => {
                let tripped = if sample.failure {
                    // Relaxed: a tally; the trip itself is decided by the state word's CAS.
                    failures.fetch_add(1, Ordering::Relaxed).saturating_add(1) >= *threshold
                } else {
                    // Read first: a healthy breaker writes nothing, so its line stays shared.
                    if failures.load(Ordering::Relaxed) != 0 {
                        failures.store(0, Ordering::Relaxed);
                    }
                    false
                };
                let slow_tripped = slow.as_ref().is_some_and(|(ring, rule)| {
                    ring.record(sample);
                    sample.slow && ring.counts().trips(None, Some(*rule))
                });
                tripped || slow_tripped
            }
            Window::Count { ring, rule, slow } => {
                ring.record(sample);
                // Only a failure or a slow call can raise a ratio; skip the reads otherwise.
                (sample.failure || sample.slow) && ring.counts().trips(Some(*rule), *slow)
            }
            Window::Time {
                ring,
                rule,
                slow,
                successes,
            } => {
                if sample.failure || sample.slow {
                    ring.record(sample, now_ns);
                    ring.counts(now_ns).trips(Some(*rule), *slow)
                } else {
                    // Unless successes are kept, `now_ns` was not even read.
                    if *successes {
                        ring.record(sample, now_ns);
                    }
                    false
                }
            }
        }
    }

    /// The counts as of `now_ns`, for snapshots. The consecutive model reports its run of
    /// failures as both calls and failures.
    pub(crate) fn counts(&self, now_ns: u64) -> Counts {
        match self {
            Window::Consecutive { failures, slow, .. } => {
                let f = failures.load(Ordering::Relaxed);
                let slow = slow
                    .as_ref()
                    .map(|(ring, _)| ring.counts())
                    .unwrap_or_default();
                Counts {
                    calls: slow.calls.max(f),
                    failures: f,
                    slow: slow.slow,
                }
            }
            Window::Count { ring, .. } => ring.counts(),
            Window::Time { ring, .. } => ring.counts(now_ns),
        }
    }

    /// Forgets everything (on close and on reset).
    pub(crate) fn clear(&self) {
        match self {
            Window::Consecutive { failures, slow, .. } => {
                failures.store(0, Ordering::Relaxed);
                if let Some((ring, _)) = slow {
                    ring.clear();
                }
            }
            Window::Count { ring, .. } => ring.clear(),
            Window::Time { ring, .. } => ring.clear(),
        }
    }
}

/// Positions a thread takes from a ring's shared cursor at once.
const BLOCK: u32 = 8;

/// The smallest window whose positions are taken in blocks: small enough windows (a slow-call
/// ring of `minimum_calls`, say) would be shifted too much by the reserved positions.
pub(crate) const BLOCKED_FROM: u32 = 64;

/// The last `size` calls; see the module docs for how positions are handed out.
#[derive(Debug)]
pub(crate) struct CountRing {
    slots: Box<[crate::sync::AtomicU8]>,
    // Lemire's fastmod constant for `slots.len()`: `next % len` without a division, which
    // would cost as much as the rest of a record.
    modulus: u64,
    // On lines of its own: every call reads the fields above, and a thread taking a block
    // writes this one, which on a shared line took the others' line away every few calls
    // (criterion, count window (100), 2 threads: 18-24 -> 8.3-9.0 ns aggregate a call,
    // against 7.8-8.5 on one thread).
    next: CachePadded<AtomicU32>,
    /// Per thread slot (see `counter::thread_slot`): the next position of its block in the
    /// low half, the block's end in the high half. Written only by the thread holding the
    /// slot, so a load and a store suffice.
    blocks: Box<[CachePadded<AtomicU64>]>,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

impl CountRing {
    pub(crate) fn new(size: u32) -> Self {
        let size = size.max(1);
        CountRing {
            slots: (0..size).map(|_| crate::sync::AtomicU8::new(0)).collect(),
            modulus: (u64::MAX / u64::from(size)).wrapping_add(1),
            next: CachePadded(AtomicU32::new(0)),
            // One block per thread slot (16 padded lines, 2 KiB): slots are numbered in the
            // order threads first count, so a process with a runtime's workers, its main
            // thread and a few others uses more slots than it has cores.
            blocks: if size >= BLOCKED_FROM {
                (0..MAX_STRIPES)
                    .map(|_| CachePadded(AtomicU64::new(0)))
                    .collect()
            } else {
                Box::default()
            },
            calls: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            slow: AtomicU32::new(0),
        }
    }

    /// The position of this call: the next of this thread's block, or the shared cursor's
    /// next for a thread without a slot.
    #[inline]
    fn position(&self) -> u32 {
        // The slot as cached, unchecked, as `StripedCounter::incr` takes it: "not asked yet"
        // is past the blocks too, so one bounds check covers both.
        match self.blocks.get(cached_slot()) {
            Some(block) => self.position_in(block),
            None => self.position_slow(),
        }
    }

    /// A thread that has not asked for its slot yet, has none, or a ring without blocks.
    #[inline(never)]
    fn position_slow(&self) -> u32 {
        match self.blocks.get(thread_slot()) {
            Some(block) => self.position_in(block),
            None => self.next.fetch_add(1, Ordering::Relaxed),
        }
    }

    #[inline]
    fn position_in(&self, block: &AtomicU64) -> u32 {
        let b = block.load(Ordering::Relaxed);
        let (at, end) = (b as u32, (b >> 32) as u32);
        let (at, end) = if at == end {
            let start = self.next.fetch_add(BLOCK, Ordering::Relaxed);
            (start, start.wrapping_add(BLOCK))
        } else {
            (at, end)
        };
        block.store(
            u64::from(at.wrapping_add(1)) | (u64::from(end) << 32),
            Ordering::Relaxed,
        );
        at
    }

    #[inline]
    fn record(&self, sample: Sample) {
        // Relaxed throughout: see the module's memory-ordering section.
        let n = self.position();
        let i = fastmod(n, self.modulus, self.slots.len() as u32) as usize;
        let new = sample.code();
        let slot = &self.slots[i];
        // A full window of successes is the steady state: a slot that already holds this
        // outcome needs no write, which saves a read-modify-write per call.
        if slot.load(Ordering::Relaxed) == new {
            return;
        }
        let old = slot.swap(new, Ordering::Relaxed);
        if old == new {
            return;
        }
        if old == 0 {
            self.calls.fetch_add(1, Ordering::Relaxed);
        }
        adjust(&self.failures, old & 2 != 0, new & 2 != 0);
        adjust(&self.slow, old & 4 != 0, new & 4 != 0);
    }

    fn counts(&self) -> Counts {
        Counts {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            slow: self.slow.load(Ordering::Relaxed),
        }
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        self.calls.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
    }
}

/// `a % d` for `m = u64::MAX / d + 1`, wrapping to 0 for `d = 1` (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019): exact for every 32-bit `a` and `d`.
#[inline]
fn fastmod(a: u32, m: u64, d: u32) -> u32 {
    let low = m.wrapping_mul(u64::from(a));
    ((u128::from(low) * u128::from(d)) >> 64) as u32
}

#[inline]
fn adjust(counter: &AtomicU32, was: bool, is: bool) {
    match (was, is) {
        (false, true) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        (true, false) => {
            // Saturating: a racing clear may already have zeroed the counter.
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(1))
            });
        }
        _ => {}
    }
}

/// Buckets of `bucket_ns` each, covering `buckets.len() * bucket_ns`.
#[derive(Debug)]
pub(crate) struct TimeRing {
    buckets: Box<[Bucket]>,
    bucket_ns: u64,
}

#[derive(Debug)]
struct Bucket {
    // The time slice (now / bucket_ns) the counts belong to; u64::MAX for never used.
    slice: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

impl TimeRing {
    pub(crate) fn new(buckets: u32, bucket_ns: u64) -> Self {
        TimeRing {
            buckets: (0..buckets.max(1))
                .map(|_| Bucket {
                    slice: AtomicU64::new(UNCLAIMED),
                    calls: AtomicU32::new(0),
                    failures: AtomicU32::new(0),
                    slow: AtomicU32::new(0),
                })
                .collect(),
            bucket_ns: bucket_ns.max(1),
        }
    }

    #[inline]
    fn record(&self, sample: Sample, now_ns: u64) {
        let slice = now_ns / self.bucket_ns;
        let bucket = &self.buckets[(slice % self.buckets.len() as u64) as usize];
        match claim_slot(&bucket.slice, slice) {
            Claim::Count => {
                bucket.calls.fetch_add(1, Ordering::Relaxed);
                if sample.failure {
                    bucket.failures.fetch_add(1, Ordering::Relaxed);
                }
                if sample.slow {
                    bucket.slow.fetch_add(1, Ordering::Relaxed);
                }
            }
            Claim::Claimed => {
                // The bucket's first call of the slice: its counts start at this call, and
                // readers see them with the tag, never the expired slice's under it.
                bucket.calls.store(1, Ordering::Relaxed);
                bucket
                    .failures
                    .store(u32::from(sample.failure), Ordering::Relaxed);
                bucket.slow.store(u32::from(sample.slow), Ordering::Relaxed);
                bucket.slice.store(slice, Ordering::Release);
            }
            Claim::Busy => {}
        }
    }

    fn counts(&self, now_ns: u64) -> Counts {
        let current = now_ns / self.bucket_ns;
        let mut total = Counts::default();
        for bucket in self.buckets.iter() {
            let slice = bucket.slice.load(Ordering::Acquire);
            if slot_is_live(slice, current, self.buckets.len() as u64) {
                total.calls = total
                    .calls
                    .saturating_add(bucket.calls.load(Ordering::Relaxed));
                total.failures = total
                    .failures
                    .saturating_add(bucket.failures.load(Ordering::Relaxed));
                total.slow = total
                    .slow
                    .saturating_add(bucket.slow.load(Ordering::Relaxed));
            }
        }
        total
    }

    fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.slice.store(UNCLAIMED, Ordering::Release);
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn count_ring_totals_match_its_slots_after_threads_record_in_blocks() {
        let ring = CountRing::new(100);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let ring = &ring;
                s.spawn(move || {
                    for n in 0..1003u32 {
                        ring.record(Sample {
                            failure: (n + t) % 3 == 0,
                            slow: n % 5 == 0,
                        });
                    }
                });
            }
        });
        let (mut calls, mut failures, mut slow) = (0, 0, 0);
        for slot in ring.slots.iter() {
            let code = slot.load(Ordering::Relaxed);
            calls += u32::from(code != 0);
            failures += u32::from(code & 2 != 0);
            slow += u32::from(code & 4 != 0);
        }
        let counts = ring.counts();
        assert_eq!(calls, 100, "4012 calls fill a window of 100");
        assert_eq!(
            (counts.calls, counts.failures, counts.slow),
            (calls, failures, slow)
        );
        // Every position handed out was used or is still reserved by a thread's block.
        let handed_out = ring.next.load(Ordering::Relaxed);
        assert!(
            (4 * 1003..4 * 1003 + 4 * BLOCK).contains(&handed_out),
            "{handed_out}"
        );
    }

    const OK: Sample = Sample {
        failure: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failure: true,
        slow: false,
    };
    const SLOW: Sample = Sample {
        failure: false,
        slow: true,
    };

    #[test]
    fn fastmod_is_the_remainder() {
        for d in [1u32, 2, 3, 7, 10, 100, 65_536, 65_537, u32::MAX] {
            let m = (u64::MAX / u64::from(d)).wrapping_add(1);
            for a in [
                0u32,
                1,
                2,
                99,
                100,
                101,
                65_535,
                65_536,
                u32::MAX - 1,
                u32::MAX,
            ] {
                assert_eq!(fastmod(a, m, d), a % d, "{a} % {d}");
            }
        }
    }

    #[test]
    fn consecutive_trips_on_the_nth_failure_in_a_row() {
        let w = Window::Consecutive {
            threshold: 3,
            failures: AtomicU32::new(0),
            slow: None,
        };
        assert!(!w.record(FAIL, 0));
        assert!(!w.record(FAIL, 0));
        assert!(!w.record(OK, 0), "a success breaks the run");
        assert!(!w.record(FAIL, 0));
        assert!(!w.record(FAIL, 0));
        assert!(w.record(FAIL, 0));
    }

    #[test]
    fn count_window_forgets_calls_older_than_its_size() {
        let rule = Rule::Ratio {
            ratio: 0.5,
            min_calls: 4,
        };
        let w = Window::Count {
            ring: CountRing::new(4),
            rule,
            slow: None,
        };
        assert!(!w.record(FAIL, 0));
        assert!(!w.record(FAIL, 0));
        assert!(!w.record(OK, 0));
        assert!(w.record(FAIL, 0), "3 of 4 failed");
        w.clear();
        for _ in 0..4 {
            assert!(!w.record(OK, 0));
        }
        assert!(!w.record(FAIL, 0), "1 of the last 4 failed");
        assert!(w.record(FAIL, 0), "2 of the last 4 failed");
        assert_eq!(
            w.counts(0),
            Counts {
                calls: 4,
                failures: 2,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_counts_only_its_duration() {
        // 4 buckets of 1 s.
        let s = 1_000_000_000;
        let w = Window::time(TimeRing::new(4, s), Rule::Count { failures: 3 }, None);
        assert!(!w.record(FAIL, 0));
        assert!(!w.record(FAIL, s));
        // The first failure falls out of the 4 s window at t = 4 s.
        assert!(!w.record(FAIL, 4 * s));
        assert_eq!(w.counts(4 * s).failures, 2);
        assert!(w.record(FAIL, 4 * s + 1));
    }

    #[test]
    fn failures_within_keeps_no_successes_unless_slow_calls_are_ruled() {
        let s = 1_000_000_000;
        let within = Window::time(TimeRing::new(4, s), Rule::Count { failures: 2 }, None);
        assert!(!within.needs_clock(false), "a success needs no reading");
        assert!(within.needs_clock(true));
        assert!(!within.record(OK, 0));
        assert!(!within.record(FAIL, s));
        assert!(!within.record(OK, 2 * s));
        assert_eq!(
            within.counts(2 * s),
            Counts {
                calls: 1,
                failures: 1,
                slow: 0
            },
            "the calls are the failures"
        );
        assert!(within.record(FAIL, 3 * s));

        // A slow-call ratio needs every call, so every call is kept, with its time.
        let slow = SlowRule {
            ratio: 0.5,
            min_calls: 4,
        };
        let timed = Window::time(TimeRing::new(4, s), Rule::Count { failures: 2 }, Some(slow));
        assert!(timed.needs_clock(false));
        for _ in 0..3 {
            assert!(!timed.record(OK, 0));
        }
        assert_eq!(timed.counts(0).calls, 3);
        // And so does a failure ratio.
        let ratio = Rule::Ratio {
            ratio: 0.5,
            min_calls: 2,
        };
        let by_ratio = Window::time(TimeRing::new(4, s), ratio, None);
        assert!(by_ratio.needs_clock(false));
        assert!(!by_ratio.record(OK, 0));
        assert!(!by_ratio.record(OK, 0));
        assert!(!by_ratio.record(FAIL, 0), "1 of 3 failed");
        assert!(by_ratio.record(FAIL, 0), "2 of 4 failed");
    }

    #[test]
    fn a_time_window_rotates_its_buckets_after_an_idle_span() {
        let s = 1_000_000_000;
        let w = Window::time(TimeRing::new(4, s), Rule::Count { failures: 3 }, None);
        assert!(!w.record(FAIL, 0));
        assert!(!w.record(FAIL, 3 * s));
        // Whole turns of the ring later, the last failure's bucket is the one a new failure
        // lands in, and it holds a slice long gone: the index repeats, the tag does not.
        for turns in [1, 2, 1_000_001] {
            let later = 3 * s + turns * 4 * s;
            assert_eq!(w.counts(later).failures, 0, "{turns} turns later");
            assert!(!w.record(FAIL, later));
            assert_eq!(w.counts(later).failures, 1, "{turns} turns later");
        }
    }

    #[test]
    fn slow_calls_trip_by_ratio_without_being_failures() {
        let slow = SlowRule {
            ratio: 0.5,
            min_calls: 2,
        };
        let w = Window::Count {
            ring: CountRing::new(10),
            rule: Rule::Ratio {
                ratio: 1.0,
                min_calls: 10,
            },
            slow: Some(slow),
        };
        assert!(!w.record(OK, 0));
        assert!(w.record(SLOW, 0));
        assert_eq!(
            w.counts(0),
            Counts {
                calls: 2,
                failures: 0,
                slow: 1
            }
        );

        let c = Window::Consecutive {
            threshold: 5,
            failures: AtomicU32::new(0),
            slow: Some((CountRing::new(2), slow)),
        };
        assert!(!c.record(SLOW, 0), "below the minimum of calls");
        assert!(c.record(SLOW, 0));
    }
}
