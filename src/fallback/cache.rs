//! The last good primary answer and when it was stored: the state behind `or_cached`.
//!
//! User code (`T::clone`, `T::drop`) never runs under the slot's lock. A store clones
//! before locking and drops the value it replaces after unlocking. A read cannot clone under
//! the lock either, so the first read of a stored value moves it into an `Arc<Mutex<T>>`
//! (one allocation, on the fallback path only) and every reader clones from its own handle
//! after unlocking: a slow or panicking `Clone` holds up neither stores nor other lookups
//! of the slot, and leaves the stored value as it was. The per-value mutex (rather than
//! requiring `T: Sync`) keeps `Fallback<T>` `Send + Sync` for any `T: Send`; readers of one
//! value clone it one at a time.

use std::time::Duration;

use crate::clock::Ticks;
use crate::sync::{Arc, Mutex};

/// A shared read handle on a cached value.
pub(crate) type Held<T> = Arc<Mutex<T>>;

pub(crate) struct Cache<T> {
    // `None`: caching is off and nothing is ever stored.
    max_age: Option<Duration>,
    slot: Mutex<Slot<T>>,
}

enum Slot<T> {
    Empty,
    // As stored by the primary's success path: no allocation, no reference count.
    Owned { value: T, at: Ticks },
    // After a first read, so that readers can clone it after unlocking.
    Shared { value: Held<T>, at: Ticks },
}

impl<T> Cache<T> {
    pub(crate) fn new(max_age: Option<Duration>) -> Self {
        Cache {
            max_age,
            slot: Mutex::new(Slot::Empty),
        }
    }

    pub(crate) fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    pub(crate) fn is_on(&self) -> bool {
        self.max_age.is_some()
    }

    /// Stores `value` as the last good answer, taken at `now`.
    pub(crate) fn put(&self, value: T, now: Ticks) {
        let replaced = std::mem::replace(&mut *self.slot.lock(), Slot::Owned { value, at: now });
        // The guard is gone: the old value's destructor runs unlocked.
        drop(replaced);
    }

    /// A handle on the stored value if it is no older than the max age at `now`.
    pub(crate) fn lookup(&self, now: Ticks) -> Option<Held<T>> {
        let max_age = self.max_age?;
        let mut slot = self.slot.lock();
        let at = match &*slot {
            Slot::Empty => return None,
            Slot::Owned { at, .. } | Slot::Shared { at, .. } => *at,
        };
        if now.saturating_duration_since(at) > max_age {
            return None;
        }
        if let Slot::Owned { .. } = &*slot {
            let Slot::Owned { value, at } = std::mem::replace(&mut *slot, Slot::Empty) else {
                unreachable!("matched just above, under the same lock");
            };
            *slot = Slot::Shared {
                value: Arc::new(Mutex::new(value)),
                at,
            };
        }
        match &*slot {
            Slot::Shared { value, .. } => Some(value.clone()),
            _ => unreachable!("made shared just above, under the same lock"),
        }
    }
}

/// Clones the value behind `held`: user code, so called with the slot unlocked.
pub(crate) fn clone_held<T: Clone>(held: &Held<T>) -> T {
    // A `Clone` that panicked here poisoned only this value's mutex, and only after reading
    // it through `&T`: the value is intact, which is what `Mutex::lock` assumes.
    held.lock().clone()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(secs: u64) -> Ticks {
        Ticks::ZERO.saturating_add(Duration::from_secs(secs))
    }

    #[test]
    fn a_value_is_served_until_it_is_older_than_the_max_age() {
        let cache = Cache::new(Some(MINUTE));
        assert!(cache.lookup(at(0)).is_none(), "empty");
        cache.put("v1", at(10));
        assert_eq!(cache.lookup(at(70)).map(|h| clone_held(&h)), Some("v1"));
        assert!(cache.lookup(at(71)).is_none(), "61 s old");
        cache.put("v2", at(71));
        assert_eq!(cache.lookup(at(71)).map(|h| clone_held(&h)), Some("v2"));
    }

    #[test]
    fn without_a_max_age_nothing_is_served() {
        let cache = Cache::new(None);
        assert!(!cache.is_on());
        cache.put(1, at(0));
        assert!(cache.lookup(at(0)).is_none());
    }

    #[test]
    fn a_handle_outlives_the_store_that_replaces_its_value() {
        let cache = Cache::new(Some(MINUTE));
        cache.put(String::from("old"), at(0));
        let held = cache.lookup(at(1)).unwrap();
        cache.put(String::from("new"), at(2));
        assert_eq!(
            clone_held(&held),
            "old",
            "the reader keeps what it looked up"
        );
        assert_eq!(
            cache.lookup(at(2)).map(|h| clone_held(&h)).as_deref(),
            Some("new")
        );
    }
}
