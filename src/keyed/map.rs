//! The map behind a [`Keyed`](super::Keyed): entries, leases and eviction.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use super::KeyedConfig;
use super::lease::Leases;
use super::policy::PerKey;
use crate::clock::Clock;
use crate::error::{Rejected, TooManyKeys};

/// One key's policy, and what eviction needs to know about it.
pub(crate) struct Entry<P> {
    pub(crate) policy: P,
    pub(crate) leases: Leases,
    // When a lease on the entry was last given back (or the entry made), on the map's
    // clock's lagging reading, written at most once per `Touch::granule_ns`.
    last_touch: AtomicU64,
    touch: Arc<Touch>,
}

/// How a lease notes the time it ends: the map's clock, shared by its entries.
pub(crate) struct Touch {
    now_lagging: Box<dyn Fn() -> u64 + Send + Sync>,
    // A touch closer than this to the last one is not written: a busy key writes its
    // entry's time a few times per idle time, not once per call. Eviction allows for it.
    granule_ns: u64,
}

impl<P> Entry<P> {
    /// Notes that a lease on the entry ended now.
    #[inline]
    fn touch(&self) {
        let now = (self.touch.now_lagging)();
        // Relaxed: the time is published by the lease's release that follows (`give_back`,
        // which eviction's `try_retire` acquires); concurrent touches keep the latest.
        // Saturating: a clock read near the end of its range (a test clock advanced by
        // `Duration::MAX`) would overflow the sum, a panic in the lease's drop.
        if now
            >= self
                .last_touch
                .load(Ordering::Relaxed)
                .saturating_add(self.touch.granule_ns)
        {
            self.last_touch.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Gives a lease back, noting its end first. The map's clock is user code: if reading
    /// it panics, the lease is still given back (by the guard, as the panic unwinds).
    #[inline]
    fn release(&self) {
        let give_back = GiveBack(&self.leases);
        self.touch();
        drop(give_back);
    }
}

/// Gives a lease back when dropped, on the normal path and as a panic unwinds.
struct GiveBack<'a>(&'a Leases);

impl Drop for GiveBack<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// When eviction last ran.
struct Sweeps {
    last_ns: u64,
}

/// The state the clones of a [`Keyed`](super::Keyed) share.
pub(crate) struct Shared<K, P, C> {
    pub(crate) map: papaya::HashMap<K, Arc<Entry<P>>>,
    pub(crate) prototype: P,
    pub(crate) config: KeyedConfig,
    pub(crate) clock: Arc<C>,
    idle_ns: u64,
    // Keys in the map, or about to be: a place is counted before its insert, so that racing
    // inserts never take the map past `max_keys`.
    count: AtomicUsize,
    // Inserts between their place's reservation and the end of their map insert: a caller
    // refused a place waits for them, since one may be making its very key.
    inserting: AtomicUsize,
    touch: Arc<Touch>,
    // How much earlier than a lease's real end its noted time may be: the lagging
    // reading's lag and the touch granule.
    slack_ns: u64,
    sweeps: Mutex<Sweeps>,
}

/// A lease on one key's entry: while it lives, the entry stays in the map.
pub(crate) struct Lease<'a, P> {
    entry: &'a Entry<P>,
}

impl<'a, P> Lease<'a, P> {
    /// The key's policy, for as long as the map is borrowed: a future made from it must not
    /// outlive the lease (the keyed futures hold both, the lease dropped last).
    pub(crate) fn policy(&self) -> &'a P {
        &self.entry.policy
    }
}

impl<P> Drop for Lease<'_, P> {
    fn drop(&mut self) {
        self.entry.release();
    }
}

/// A lease that owns its entry, for futures that outlive the map's borrow (tower's).
#[cfg(feature = "tower")]
pub(crate) struct OwnedLease<P> {
    entry: Arc<Entry<P>>,
}

#[cfg(feature = "tower")]
impl<P> OwnedLease<P> {
    pub(crate) fn policy(&self) -> &P {
        &self.entry.policy
    }
}

#[cfg(feature = "tower")]
impl<P> Drop for OwnedLease<P> {
    fn drop(&mut self) {
        self.entry.release();
    }
}

impl<K, P, C> Shared<K, P, C>
where
    K: Hash + Eq + fmt::Debug + Send + Sync + 'static,
    P: PerKey,
    C: Clock,
{
    pub(crate) fn new(config: KeyedConfig, prototype: P, clock: C) -> Self {
        let now_ns = clock.now().as_nanos();
        let idle_ns = crate::clock::saturating_nanos(config.idle());
        let granule_ns = idle_ns / 8;
        let lag_ns = crate::clock::saturating_nanos(clock.max_lag());
        let clock = Arc::new(clock);
        let reader = clock.clone();
        Shared {
            map: papaya::HashMap::new(),
            prototype,
            idle_ns,
            config,
            clock,
            count: AtomicUsize::new(0),
            inserting: AtomicUsize::new(0),
            touch: Arc::new(Touch {
                now_lagging: Box::new(move || reader.now_lagging().as_nanos()),
                granule_ns,
            }),
            slack_ns: granule_ns.saturating_add(lag_ns),
            sweeps: Mutex::new(Sweeps { last_ns: now_ns }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Takes a lease on `key`'s entry, making the entry when the key is new.
    ///
    /// The crate's one `unsafe` outside a waiter queue: the keyed closure futures are the
    /// policies' own `RunFuture`s, which borrow the policy for the map's borrow `'a`, while
    /// the map keeps the policy only behind an epoch guard that must not be held across
    /// awaits. Cloning the entry's `Arc` instead would cost every call two more
    /// read-modify-writes and still leave a future that borrows from itself. The lease is
    /// what keeps the entry alive (loom model in `lease.rs`; eviction in `sweep`).
    #[inline]
    #[allow(unsafe_code)]
    pub(crate) fn lease<Q>(&self, key: &Q) -> Result<Lease<'_, P>, Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let entry = self.leased_entry(key, Arc::as_ptr)?;
        // SAFETY: the entry is behind an `Arc` the map holds, and the lease just taken keeps
        // it there: an entry leaves the map only through `sweep`, after `try_retire`, which
        // fails while a lease is held, or when the map itself is dropped, which the `&self`
        // borrow this lease carries rules out. So the `Arc`, and the entry it points to,
        // outlive the lease, though not the guard the pointer was read under.
        let entry: &Entry<P> = unsafe { &*entry };
        Ok(Lease { entry })
    }

    /// As [`lease`](Self::lease), holding a clone of the entry's `Arc`.
    #[cfg(feature = "tower")]
    pub(crate) fn lease_owned<Q>(&self, key: &Q) -> Result<OwnedLease<P>, Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.leased_entry(key, Arc::clone)
            .map(|entry| OwnedLease { entry })
    }

    /// Runs `act` on `key`'s policy (making the entry when the key is new) without a lease,
    /// for an action that ends before this returns and that the policy itself refuses once
    /// eviction retired it (`act` returns `None`: look again). The map's guard keeps the
    /// entry's memory alive meanwhile.
    #[inline]
    pub(crate) fn unleased<Q, R>(
        &self,
        key: &Q,
        act: impl Fn(&P) -> Option<R>,
    ) -> Result<R, Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut spins = 0u32;
        loop {
            {
                let guard = self.map.guard();
                if let Some(entry) = self.map.get(key, &guard) {
                    // No touch: the policy's own state tells how long it has been idle
                    // (see `PerKey::retire`).
                    if let Some(out) = act(&entry.policy) {
                        return Ok(out);
                    }
                    spin(&mut spins);
                    continue;
                }
            }
            self.insert(key)?;
        }
    }

    /// Takes a lease on `key`'s entry and returns what `keep` makes of it (a pointer, or a
    /// clone of its `Arc`), read under the map's guard.
    #[inline]
    fn leased_entry<Q, R>(&self, key: &Q, keep: impl Fn(&Arc<Entry<P>>) -> R) -> Result<R, Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut spins = 0u32;
        loop {
            {
                let guard = self.map.guard();
                if let Some(entry) = self.map.get(key, &guard) {
                    if entry.leases.take() {
                        return Ok(keep(entry));
                    }
                    spin(&mut spins);
                    continue;
                }
            }
            self.insert(key)?;
        }
    }

    /// Makes an entry for `key`, unless the map is full of keys that cannot be evicted.
    #[cold]
    fn insert<Q>(&self, key: &Q) -> Result<(), Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let max = self.config.max_keys() as usize;
        // Counted as under way before its place is taken: a caller that finds no place (it
        // acquires the count this insert's reservation released) sees this insert under way.
        // Relaxed: the reservation's release that follows publishes it.
        self.inserting.fetch_add(1, Ordering::Relaxed);
        if !self.reserve_place(max) {
            self.sweep(false);
            if !self.reserve_place(max) {
                // Relaxed: only this caller's own intent, which it does not wait for.
                self.inserting.fetch_sub(1, Ordering::Relaxed);
                return self.refuse_unless_made(key);
            }
        }
        // The place is counted; user code runs next (the key's `ToOwned` and `Debug`, the
        // policy's sibling): if it panics, the place is given back.
        let mut place = Place {
            count: &self.count,
            inserting: &self.inserting,
            kept: false,
        };
        // The key's label for its events, made only when someone listens.
        let owned = key.to_owned();
        let label = self
            .prototype
            .has_listener()
            .then(|| Arc::from(format!("{owned:?}")));
        let entry = Arc::new(Entry {
            policy: self.prototype.sibling(label),
            leases: Leases::new(),
            last_touch: AtomicU64::new(self.clock.now_lagging().as_nanos()),
            touch: self.touch.clone(),
        });
        let guard = self.map.guard();
        // Kept unless another caller made the key first.
        place.kept = self.map.try_insert(owned, entry, &guard).is_ok();
        drop(guard);
        drop(place);
        self.sweep_if_due();
        Ok(())
    }

    /// Refuses a new key for want of a place, unless a racing caller is making this very key
    /// (it then has a place): waits for the inserts under way, then looks once more.
    #[cold]
    fn refuse_unless_made<Q>(&self, key: &Q) -> Result<(), Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut spins = 0u32;
        loop {
            // Acquire: pairs with the release that ends each insert, so an insert counted
            // out here is in the map for the lookup that follows.
            let under_way = self.inserting.load(Ordering::Acquire);
            if self.map.pin().contains_key(key) {
                return Ok(());
            }
            if under_way == 0 {
                return Err(Rejected::TooManyKeys(TooManyKeys::new(
                    self.prototype.policy_name(),
                    self.config.max_keys(),
                )));
            }
            spin(&mut spins);
        }
    }

    /// Counts a place for a new key, if there is one.
    fn reserve_place(&self, max: usize) -> bool {
        // AcqRel / Acquire: a caller refused here has read the count from the reservations
        // that filled the map, and so sees their inserts under way (`refuse_unless_made`).
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Runs eviction when an idle time has passed since it last ran, so that a map that
    /// keeps meeting new keys forgets the old ones without ever filling up.
    fn sweep_if_due(&self) {
        let last_ns = match self.sweeps.try_lock() {
            Ok(sweeps) => sweeps.last_ns,
            // A panic in an earlier eviction (a user's clock) poisons nothing it guards.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().last_ns,
            Err(TryLockError::WouldBlock) => return,
        };
        if self.clock.now().as_nanos().saturating_sub(last_ns) >= self.idle_ns {
            self.sweep(false);
        }
    }

    /// Evicts the keys at rest that have been idle for at least the idle time; returns how
    /// many. Only one eviction runs at a time; a call that finds one running returns 0.
    ///
    /// A key is idle when no lease on it has ended for the idle time (each lease notes its
    /// end on the map's clock, up to `slack_ns` early, which eviction adds) and its policy
    /// agrees (a rate limiter's bucket tells when it was last used, since `try_acquire`
    /// takes no lease). So a key is kept for at least the idle time after its last use, and
    /// at most about an idle time and a quarter more, while new keys keep eviction running;
    /// a quiet spell of any length leaves every key idle.
    ///
    /// Unless `forced`, eviction runs at most once per quarter of the idle time: when the
    /// map is full, a burst of new keys would otherwise walk the whole map once each.
    pub(crate) fn sweep(&self, forced: bool) -> usize {
        let mut sweeps = match self.sweeps.try_lock() {
            Ok(sweeps) => sweeps,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return 0,
        };
        let now_ns = self.clock.now().as_nanos();
        if !forced && now_ns.saturating_sub(sweeps.last_ns) < self.idle_ns / 4 {
            return 0;
        }
        sweeps.last_ns = now_ns;
        // Keys last used at or before this instant are idle; before the clock has run that
        // long, none can be.
        let Some(idle_before) = now_ns.checked_sub(self.idle_ns.saturating_add(self.slack_ns))
        else {
            return 0;
        };
        let idle = self.config.idle();
        let mut evicted = 0;
        let guard = self.map.guard();
        for (key, entry) in self.map.iter(&guard) {
            // A first look, without owning the entry; checked again once owned.
            if entry.last_touch.load(Ordering::Relaxed) > idle_before {
                continue;
            }
            // The lease count first, the policy second: once retired, no call can start on
            // the entry, so a policy seen at rest stays at rest until it is removed.
            if !entry.leases.try_retire() {
                continue;
            }
            // Handed back to callers unless removed, even if the policy's check panics.
            let mut owned = Retired {
                leases: &entry.leases,
                removed: false,
            };
            // After the retirement, which acquired the last lease's release: its end is seen.
            if entry.last_touch.load(Ordering::Relaxed) <= idle_before && entry.policy.retire(idle)
            {
                self.map.remove(key, &guard);
                self.count.fetch_sub(1, Ordering::Relaxed);
                owned.removed = true;
                evicted += 1;
            }
        }
        evicted
    }
}

/// A place counted for a new key: given back on drop unless the key was inserted; its
/// drop ends the insert.
struct Place<'a> {
    count: &'a AtomicUsize,
    inserting: &'a AtomicUsize,
    kept: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        // Release: the map insert before it is seen by a refused caller's acquire.
        self.inserting.fetch_sub(1, Ordering::Release);
    }
}

/// An entry eviction owns: handed back to callers on drop unless it was removed.
struct Retired<'a> {
    leases: &'a Leases,
    removed: bool,
}

impl Drop for Retired<'_> {
    fn drop(&mut self) {
        if !self.removed {
            self.leases.unretire();
        }
    }
}

/// Waits a moment for eviction, which owns an entry for the time it takes to look at its
/// policy and then remove it or hand it back.
fn spin(spins: &mut u32) {
    *spins += 1;
    if *spins % 64 == 0 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}
