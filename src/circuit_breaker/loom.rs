//! loom models of the breaker's atomic core: several threads across the Open → HalfOpen edge,
//! probes dropped and settled concurrently, and racing trips.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib`.

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use super::{CircuitBreaker, CircuitBreakerConfigBuilder, CircuitState};
use crate::clock::FakeClock;
use crate::telemetry::{Event, EventKind};

/// Counts transitions into `to`.
fn counting(to: CircuitState) -> (Arc<AtomicUsize>, impl Fn(&Event) + Send + Sync + 'static) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let listener = move |e: &Event| {
        if let EventKind::StateChanged { to: t, .. } = e.kind() {
            if t == to {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    };
    (count, listener)
}

/// A breaker that is open with its break over, so the next calls race to half-open it.
fn open_and_due(builder: CircuitBreakerConfigBuilder) -> (CircuitBreaker<FakeClock>, FakeClock) {
    let clock = FakeClock::new();
    let breaker = CircuitBreaker::with_clock(
        builder
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(1))
            .build()
            .unwrap(),
        clock.clone(),
    );
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), CircuitState::Open);
    clock.advance(Duration::from_secs(2));
    (breaker, clock)
}

#[test]
fn half_open_admits_at_most_the_permitted_probes_and_reports_once() {
    loom::model(|| {
        let (half_opened, listener) = counting(CircuitState::HalfOpen);
        let (breaker, _clock) = open_and_due(
            CircuitBreaker::builder()
                .permitted_in_half_open(1)
                .listener(listener),
        );
        let in_flight = Arc::new(AtomicUsize::new(0));

        let threads: Vec<_> = (0..2)
            .map(|_| {
                let breaker = breaker.clone();
                let in_flight = in_flight.clone();
                thread::spawn(move || {
                    if let Ok(permit) = breaker.try_acquire() {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 1, "{now} probes in flight, 1 permitted");
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(half_opened.load(Ordering::SeqCst), 1);
        // Every probe was dropped: the slot is free again.
        assert!(breaker.try_acquire().is_ok());
    });
}

#[test]
fn a_dropped_probe_never_leaks_its_slot() {
    loom::model(|| {
        let (breaker, _clock) = open_and_due(CircuitBreaker::builder());
        let dropper = {
            let breaker = breaker.clone();
            thread::spawn(move || drop(breaker.try_acquire()))
        };
        let prober = {
            let breaker = breaker.clone();
            thread::spawn(move || match breaker.try_acquire() {
                Ok(permit) => {
                    permit.success();
                    true
                }
                Err(_) => false,
            })
        };
        dropper.join().unwrap();
        let closed_it = prober.join().unwrap();
        if closed_it {
            assert_eq!(breaker.state(), CircuitState::Closed);
        } else {
            assert_eq!(breaker.state(), CircuitState::HalfOpen);
        }
        // Either way the next caller gets in: nothing is stuck.
        assert!(breaker.try_acquire().is_ok());
    });
}

#[test]
fn concurrent_probes_settle_the_period_once() {
    loom::model(|| {
        let (closed, on_close) = counting(CircuitState::Closed);
        let (breaker, _clock) = open_and_due(
            CircuitBreaker::builder()
                .permitted_in_half_open(2)
                .success_threshold(2)
                .listener(on_close),
        );
        let first = breaker.try_acquire_owned().unwrap();
        let second = breaker.try_acquire_owned().unwrap();
        assert!(breaker.try_acquire().is_err(), "both probe slots are taken");
        let a = thread::spawn(move || first.success());
        let b = thread::spawn(move || second.success());
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        assert_eq!(breaker.state(), CircuitState::Closed);
    });
}

#[test]
fn racing_failures_trip_exactly_once() {
    loom::model(|| {
        let (opened, on_open) = counting(CircuitState::Open);
        let breaker = CircuitBreaker::with_clock(
            CircuitBreaker::builder()
                .consecutive_failures(2)
                .listener(on_open)
                .build()
                .unwrap(),
            FakeClock::new(),
        );
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    if let Ok(permit) = breaker.try_acquire() {
                        permit.failure();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn state_changes_reach_the_listener_in_transition_order() {
    loom::model(|| {
        let log = Arc::new(loom::sync::Mutex::new(Vec::new()));
        let seen = log.clone();
        let breaker = CircuitBreaker::with_clock(
            CircuitBreaker::builder()
                .listener(move |e: &Event| {
                    if let EventKind::StateChanged { from, to } = e.kind() {
                        seen.lock().unwrap().push((from, to));
                    }
                })
                .build()
                .unwrap(),
            FakeClock::new(),
        );
        let isolate = {
            let breaker = breaker.clone();
            thread::spawn(move || breaker.isolate())
        };
        let disable = {
            let breaker = breaker.clone();
            thread::spawn(move || breaker.disable())
        };
        isolate.join().unwrap();
        disable.join().unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[0].0, CircuitState::Closed, "{log:?}");
        assert_eq!(
            log[0].1, log[1].0,
            "each report starts where the last ended: {log:?}"
        );
        assert_eq!(log[1].1, breaker.state());
    });
}

#[test]
fn failures_racing_into_a_reused_bucket_never_count_the_expired_ones() {
    use super::TripModel;
    loom::model(|| {
        let (opened, on_open) = counting(CircuitState::Open);
        let clock = FakeClock::new();
        let breaker = CircuitBreaker::with_clock(
            CircuitBreaker::builder()
                .trip_model(TripModel::FailuresWithin {
                    failures: 3,
                    duration: Duration::from_secs(2),
                    buckets: 2,
                })
                .listener(on_open)
                .build()
                .unwrap(),
            clock.clone(),
        );
        // Two failures in the first bucket, then one whole turn of the ring: they have
        // expired, and the next failures land in their bucket.
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().failure();
        clock.advance(Duration::from_secs(2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || breaker.try_acquire().unwrap().failure())
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(opened.load(Ordering::SeqCst), 0, "2 live failures of 3");
        assert_eq!(breaker.state(), CircuitState::Closed);
        // A racing failure may be lost (see the window's docs), never an expired one kept.
        let failures = breaker.metrics().failures;
        assert!((1..=2).contains(&failures), "{failures}");
    });
}
