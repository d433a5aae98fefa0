//! The defaults a production build gets: palisade without `test-util`, as a user's release
//! build has it. The crate's own `tests/default_clock.rs` pins the test route.
//!
//! Cargo unifies a package's features across one build, so when this package is built together
//! with palisade's own tests (whose dev-dependencies turn on `test-util`), palisade has the test
//! route here too and these checks have nothing to check. `.ci/run` therefore runs this package
//! alone, with `PALISADE_EXPECT_PRODUCTION_ROUTE=1`, which makes that case a failure.

use std::any::TypeId;
use std::time::Duration;

use palisade::circuit_breaker::CircuitBreaker;
use palisade::clock::{DefaultClock, TscClock};

/// Whether this build has the production route; when it does not, fails if CI expected it.
fn production_route() -> bool {
    let production = TypeId::of::<DefaultClock>() == TypeId::of::<TscClock>();
    assert!(
        production || std::env::var_os("PALISADE_EXPECT_PRODUCTION_ROUTE").is_none(),
        "palisade was built with `test-util`: run `cargo test -p palisade-examples` on its own"
    );
    production
}

#[test]
fn the_default_clock_is_the_fast_counter_one() {
    if !production_route() {
        return;
    }
    let clock = DefaultClock::default();
    assert_eq!(
        std::any::type_name_of_val(&clock),
        std::any::type_name::<TscClock>()
    );
}

#[tokio::test(start_paused = true)]
async fn without_test_util_paused_time_does_not_move_a_breaker() {
    if !production_route() {
        return;
    }
    // The documented trade-off: tokio's paused clock jumps, the policies' clock does not.
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    breaker.try_acquire().unwrap().failure();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(
        breaker.try_acquire().is_err(),
        "still open: the breaker keeps real time, and 60 real seconds have not passed"
    );
}
