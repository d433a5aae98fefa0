//! The rate limiter (issue #21, in progress): so far its core, [`gcra`], tested on its own.
//! The policy around it (config, `RateLimiter` handle, closure and tower surfaces,
//! `Rejected::RateLimited`, per-key instances) comes next, in the shape of the other
//! policies' folders.

// Only the core's tests use it until the policy lands.
#[allow(dead_code)]
pub(crate) mod gcra;
