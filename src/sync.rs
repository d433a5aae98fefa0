//! The atomics and `Arc` the lock-free cores use: std's normally, loom's under `--cfg loom`, so
//! the same core code is model-checked by the loom tests (`RUSTFLAGS="--cfg loom" cargo test
//! --release --lib`). Cores import from here, never from `std::sync` directly.

#![allow(unused_imports)]

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Keeps a value on a cache line of its own (two lines: adjacent-line prefetch pulls pairs on
/// x86), so writes to it do not slow down readers of its neighbours.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
