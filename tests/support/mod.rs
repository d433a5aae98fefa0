//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set when the value holding it is dropped: proves that a policy dropped a future.
#[derive(Debug, Clone, Default)]
pub struct DropFlag(Arc<AtomicBool>);

impl DropFlag {
    pub fn new() -> Self {
        Self::default()
    }

    /// A guard that sets the flag when dropped; move it into the future under test.
    pub fn guard(&self) -> DropGuard {
        DropGuard(self.0.clone())
    }

    pub fn is_dropped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Counts the events a listener received, by a key chosen by the test.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// An error type of the caller's own, as users write it: one `From<Rejected>` for the crate.
#[derive(Debug, PartialEq, Eq)]
pub enum AppError {
    Rejected(palisade::Rejected),
    Backend(&'static str),
}

impl From<palisade::Rejected> for AppError {
    fn from(r: palisade::Rejected) -> Self {
        AppError::Rejected(r)
    }
}

impl palisade::AsRejected for AppError {
    fn as_rejected(&self) -> Option<&palisade::Rejected> {
        match self {
            AppError::Rejected(r) => Some(r),
            AppError::Backend(_) => None,
        }
    }
}
