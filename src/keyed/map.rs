//! The map behind a [`Keyed`](super::Keyed): entries, leases and eviction.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::KeyedConfig;
use super::lease::Leases;
use super::policy::PerKey;
use crate::clock::Clock;
use crate::error::{Rejected, TooManyKeys};

/// One key's policy, and what eviction needs to know about it.
pub(crate) struct Entry<P> {
    pub(crate) policy: P,
    pub(crate) leases: Leases,
    // The map's epoch when a call last took a lease (see `Shared::sweep`).
    last_epoch: AtomicU64,
}

impl<P> Entry<P> {
    /// Notes that a call used the entry in `epoch`. Written only when it changes, so the
    /// busy keys of one epoch write it once, not once per call.
    #[inline]
    fn touch(&self, epoch: u64) {
        // Relaxed: an estimate of idleness; a stale value only delays or hastens eviction
        // by an epoch, and eviction itself is guarded by the lease count.
        if self.last_epoch.load(Ordering::Relaxed) < epoch {
            self.last_epoch.fetch_max(epoch, Ordering::Relaxed);
        }
    }
}

/// When eviction last ran, and when the current epoch began.
struct Sweeps {
    last_ns: u64,
    epoch_start_ns: u64,
}

/// The state the clones of a [`Keyed`](super::Keyed) share.
pub(crate) struct Shared<K, P, C> {
    pub(crate) map: papaya::HashMap<K, Arc<Entry<P>>>,
    pub(crate) prototype: P,
    pub(crate) config: KeyedConfig,
    pub(crate) clock: C,
    idle_ns: u64,
    // Keys in the map, or about to be: a place is counted before its insert, so that racing
    // inserts never take the map past `max_keys`.
    count: AtomicUsize,
    // Advanced by eviction at most once per idle time; entries note the epoch of their last
    // use.
    epoch: AtomicU64,
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
        self.entry.leases.give_back();
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
        self.entry.leases.give_back();
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
        Shared {
            map: papaya::HashMap::new(),
            prototype,
            idle_ns: crate::clock::saturating_nanos(config.idle()),
            config,
            clock,
            count: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            sweeps: Mutex::new(Sweeps {
                last_ns: now_ns,
                epoch_start_ns: now_ns,
            }),
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
                    entry.touch(self.epoch.load(Ordering::Relaxed));
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
                        entry.touch(self.epoch.load(Ordering::Relaxed));
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
        if !self.reserve_place(max) {
            self.sweep(false);
            if !self.reserve_place(max) {
                return Err(Rejected::TooManyKeys(TooManyKeys::new(
                    self.prototype.policy_name(),
                    self.config.max_keys(),
                )));
            }
        }
        // The key's label for its events, made only when someone listens.
        let owned = key.to_owned();
        let label = self
            .prototype
            .has_listener()
            .then(|| Arc::from(format!("{owned:?}")));
        let entry = Arc::new(Entry {
            policy: self.prototype.sibling(label),
            leases: Leases::new(),
            last_epoch: AtomicU64::new(self.epoch.load(Ordering::Relaxed)),
        });
        let guard = self.map.guard();
        if self.map.try_insert(owned, entry, &guard).is_err() {
            // Another caller made it first.
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        drop(guard);
        self.sweep_if_due();
        Ok(())
    }

    /// Counts a place for a new key, if there is one.
    fn reserve_place(&self, max: usize) -> bool {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Runs eviction when an idle time has passed since it last ran, so that a map that
    /// keeps meeting new keys forgets the old ones without ever filling up.
    fn sweep_if_due(&self) {
        let last_ns = match self.sweeps.try_lock() {
            Ok(sweeps) => sweeps.last_ns,
            Err(_) => return,
        };
        if self.clock.now().as_nanos().saturating_sub(last_ns) >= self.idle_ns {
            self.sweep(false);
        }
    }

    /// Evicts the keys at rest that have been idle for at least the idle time; returns how
    /// many. Only one eviction runs at a time; a call that finds one running returns 0.
    ///
    /// Idleness is counted in epochs: an epoch lasts at least the idle time, and begins when
    /// eviction runs after the last one ended. A key last used in an epoch two or more
    /// before the current one was idle for a whole epoch, so for at least the idle time;
    /// one used since may have been used a moment ago. A key is so kept for between one and
    /// about three idle times after its last use (more when eviction runs seldom).
    ///
    /// Unless `forced`, eviction runs at most once per quarter of the idle time: when the
    /// map is full, a burst of new keys would otherwise walk the whole map once each.
    pub(crate) fn sweep(&self, forced: bool) -> usize {
        let Ok(mut sweeps) = self.sweeps.try_lock() else {
            return 0;
        };
        let now_ns = self.clock.now().as_nanos();
        if !forced && now_ns.saturating_sub(sweeps.last_ns) < self.idle_ns / 4 {
            return 0;
        }
        sweeps.last_ns = now_ns;
        let mut epoch = self.epoch.load(Ordering::Relaxed);
        if now_ns.saturating_sub(sweeps.epoch_start_ns) >= self.idle_ns {
            epoch += 1;
            sweeps.epoch_start_ns = now_ns;
            self.epoch.store(epoch, Ordering::Relaxed);
        }
        let mut evicted = 0;
        let guard = self.map.guard();
        for (key, entry) in self.map.iter(&guard) {
            if entry.last_epoch.load(Ordering::Relaxed).saturating_add(2) > epoch {
                continue;
            }
            // The lease count first, the policy second: once retired, no call can start on
            // the entry, so a policy seen at rest stays at rest until it is removed.
            if !entry.leases.try_retire() {
                continue;
            }
            if entry.policy.retire() {
                self.map.remove(key, &guard);
                self.count.fetch_sub(1, Ordering::Relaxed);
                evicted += 1;
            } else {
                entry.leases.unretire();
            }
        }
        evicted
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
