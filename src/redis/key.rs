//! What can key a fleet-wide limit: anything written into the Redis key's last part.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Rejected;
use crate::telemetry::{EventKind, Telemetry};

/// A key of a fleet-wide limit (a user, an IP, a tenant), written into the Redis key after
/// the limit's prefix and name.
///
/// Implemented for strings, IP addresses, integers, references to them, and `Option` of
/// them (what the [`keyed::axum`](crate::keyed) key functions return): `None` writes the
/// empty key, which every caller without a key shares (the axum extractors never give an
/// empty key for a real one). Implement it for your own key type by writing a form that
/// two distinct keys never share.
///
/// # Examples
///
/// ```
/// use palisade::redis::RedisKey;
/// use std::net::Ipv4Addr;
///
/// let mut out = String::new();
/// Ipv4Addr::new(10, 0, 0, 7).write_key(&mut out);
/// assert_eq!(out, "10.0.0.7");
///
/// struct Tenant(u32);
/// impl RedisKey for Tenant {
///     fn write_key(&self, out: &mut String) {
///         self.0.write_key(out)
///     }
/// }
/// ```
pub trait RedisKey {
    /// Appends this key's form to `out`.
    fn write_key(&self, out: &mut String);
}

impl RedisKey for str {
    fn write_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl RedisKey for String {
    fn write_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for &T {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for Box<T> {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for std::sync::Arc<T> {
    fn write_key(&self, out: &mut String) {
        (**self).write_key(out);
    }
}

impl<T: RedisKey> RedisKey for Option<T> {
    fn write_key(&self, out: &mut String) {
        if let Some(key) = self {
            key.write_key(out);
        }
    }
}

macro_rules! display_keys {
    ($($t:ty),*) => {$(
        impl RedisKey for $t {
            fn write_key(&self, out: &mut String) {
                // Writing into a String cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

display_keys!(
    IpAddr, Ipv4Addr, Ipv6Addr, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

/// Where one limit's keys live in Redis (`{prefix}:{kind}:{policy}:`), and its telemetry,
/// which reports each key's events with the caller's key.
pub(crate) struct KeySpace {
    head: String,
    telemetry: Telemetry,
}

impl KeySpace {
    /// The keys of the limit `telemetry` names, of kind `kind` (`rl`, `ss`), under `prefix`.
    pub(crate) fn new(prefix: &str, kind: &str, telemetry: Telemetry) -> Self {
        KeySpace {
            head: format!("{prefix}:{kind}:{}:", telemetry.name()),
            telemetry,
        }
    }

    /// The Redis key of a caller's key.
    pub(crate) fn redis_key<K: RedisKey + ?Sized>(&self, key: &K) -> String {
        // The caller's part is written on its own and appended: a `RedisKey` that replaced
        // its buffer instead of appending could otherwise write outside the prefix.
        let mut part = String::new();
        key.write_key(&mut part);
        let mut out = String::with_capacity(self.head.len() + part.len());
        out.push_str(&self.head);
        out.push_str(&part);
        out
    }

    /// The caller's own key (after the prefix and name), for events and the local state.
    pub(crate) fn user_key<'a>(&self, redis_key: &'a str) -> &'a str {
        // `get`: never a panic, whatever string it is given.
        redis_key.get(self.head.len()..).unwrap_or("")
    }

    /// Counts a refusal of the call on `redis_key` in `over_limit` (the limit's own
    /// refusals; one for Redis being down was counted when the fail mode decided it,
    /// `Failed::decide`), then reports it.
    pub(crate) fn refuse(
        &self,
        redis_key: &str,
        over_limit: &AtomicU64,
        rejected: Rejected,
    ) -> Rejected {
        if !matches!(rejected, Rejected::Unavailable(_)) {
            // Relaxed: statistics.
            over_limit.fetch_add(1, Ordering::Relaxed);
        }
        self.telemetry_for(redis_key)
            .emit(|| EventKind::Rejected(rejected));
        rejected
    }

    /// The limit's telemetry for the call on `redis_key`, carrying the caller's key when a
    /// listener will see it.
    pub(crate) fn telemetry_for(&self, redis_key: &str) -> Telemetry {
        if self.telemetry.has_listener() {
            self.telemetry
                .for_key(Some(Arc::from(self.user_key(redis_key))))
        } else {
            self.telemetry.clone()
        }
    }
}
