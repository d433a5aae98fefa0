//! The default clock in test builds: with `test-util` (this crate's own dev-dependency, as
//! the docs ask of users) it is `TokioClock`, so paused tokio time drives every policy.
//! palisade-examples' `tests/production_defaults.rs` pins the production route.
#![cfg(all(feature = "tokio", feature = "test-util"))]

use std::time::Duration;

use palisade::circuit_breaker::CircuitBreaker;
use palisade::clock::{DefaultClock, TokioClock};

#[test]
fn with_test_util_the_default_clock_is_tokios() {
    // Fails to compile if the test route ever loses it.
    let _: TokioClock = DefaultClock::default();
}

#[tokio::test(start_paused = true)]
async fn with_test_util_paused_time_moves_a_breaker_from_open_to_half_open() {
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    breaker.try_acquire().unwrap().failure();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(breaker.try_acquire().is_err(), "open for the whole break");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        breaker.try_acquire().is_ok(),
        "a probe once the break is over"
    );
}
