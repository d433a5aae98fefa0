//! The lease count of a per-key entry: how a call keeps its key from being evicted, and how
//! eviction makes sure that no call holds the key it removes.
//!
//! One word: the number of leases held, and a `RETIRED` bit that eviction sets, only while
//! no lease is held, before it looks at the policy. A caller that finds the bit set takes
//! nothing and looks the key up again; eviction then either removes the entry or clears the
//! bit. Both sides change the same word with read-modify-writes, so they are ordered: either
//! the lease comes first and the retirement fails, or the retirement comes first and the
//! lease is refused.

use crate::sync::{AtomicU64, Ordering};

/// Set while eviction owns the entry.
const RETIRED: u64 = 1 << 63;

/// Leases held on one entry, and whether eviction owns it.
#[derive(Debug)]
pub(crate) struct Leases(AtomicU64);

impl Leases {
    pub(crate) fn new() -> Self {
        Leases(AtomicU64::new(0))
    }

    /// Takes a lease, unless eviction owns the entry.
    #[inline]
    pub(crate) fn take(&self) -> bool {
        // Acquire: the call's work on the policy stays after the lease; eviction reads the
        // policy only after its retirement, which this increment would have made fail.
        let before = self.0.fetch_add(1, Ordering::Acquire);
        if before & RETIRED == 0 {
            return true;
        }
        // Relaxed: nothing was done under this lease.
        self.0.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Gives a lease back.
    #[inline]
    pub(crate) fn give_back(&self) {
        // Release: whatever the call did to the policy (a drained bucket, a slot taken and
        // given back) is seen by the eviction whose retirement reads this count.
        self.0.fetch_sub(1, Ordering::Release);
    }

    /// Makes eviction the owner of the entry, when no lease is held.
    pub(crate) fn try_retire(&self) -> bool {
        // Acquire: pairs with the last `give_back`, so that the policy read next shows the
        // last lease holder's work.
        self.0
            .compare_exchange(0, RETIRED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Hands the entry back to callers: eviction decided to keep it. Leases refused
    /// meanwhile were given back already, so the count is zero again.
    pub(crate) fn unretire(&self) {
        // Relaxed: eviction only read the policy; it publishes nothing.
        self.0.fetch_and(!RETIRED, Ordering::Relaxed);
    }

    /// Leases held now (a snapshot; eviction's bit not counted).
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.0.load(Ordering::Relaxed) & !RETIRED
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{Arc, AtomicU64, Ordering};

    /// A caller and an eviction race for one entry whose "policy" is a counter the caller
    /// bumps and gives back: eviction removes the entry only when it saw the counter at rest
    /// and no lease was held, and a caller never works on a removed entry.
    #[test]
    fn eviction_never_removes_an_entry_under_lease() {
        loom::model(|| {
            let leases = Arc::new(Leases::new());
            let busy = Arc::new(AtomicU64::new(0));
            let removed = Arc::new(AtomicU64::new(0));
            let caller = {
                let (leases, busy, removed) = (leases.clone(), busy.clone(), removed.clone());
                loom::thread::spawn(move || {
                    if leases.take() {
                        assert_eq!(removed.load(Ordering::Relaxed), 0, "leased a removed entry");
                        busy.fetch_add(1, Ordering::Relaxed);
                        // Work that leaves the policy not at rest when it is seen.
                        busy.fetch_add(1, Ordering::Relaxed);
                        leases.give_back();
                        true
                    } else {
                        false
                    }
                })
            };
            let evicted = if leases.try_retire() {
                let at_rest = busy.load(Ordering::Relaxed) == 0;
                if at_rest {
                    removed.store(1, Ordering::Relaxed);
                    true
                } else {
                    leases.unretire();
                    false
                }
            } else {
                false
            };
            let leased = caller.join().unwrap();
            // Exactly one of them got the entry when it was idle at the start, unless the
            // caller came first and eviction then saw its work.
            if evicted {
                assert!(!leased, "evicted an entry a caller worked on");
            }
            assert_eq!(leases.held(), 0);
        });
    }

    /// Two callers and an eviction: the count ends at zero, and eviction never succeeds
    /// while either holds a lease.
    #[test]
    fn refused_leases_leave_no_count() {
        loom::model(|| {
            let leases = Arc::new(Leases::new());
            let inside = Arc::new(AtomicU64::new(0));
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let (leases, inside) = (leases.clone(), inside.clone());
                    loom::thread::spawn(move || {
                        if leases.take() {
                            inside.fetch_add(1, Ordering::Relaxed);
                            inside.fetch_sub(1, Ordering::Relaxed);
                            leases.give_back();
                        }
                    })
                })
                .collect();
            if leases.try_retire() {
                assert_eq!(inside.load(Ordering::Relaxed), 0, "retired while leased");
                leases.unretire();
            }
            for caller in callers {
                caller.join().unwrap();
            }
            assert_eq!(leases.held(), 0);
            assert!(leases.try_retire());
        });
    }
}
