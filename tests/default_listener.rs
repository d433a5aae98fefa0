//! The process-wide default listener. In a file of its own: it is set once per process, and
//! every policy built after it in this test binary reports to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use palisade::circuit_breaker::CircuitBreaker;
use palisade::telemetry::{Event, EventKind, PolicyKind, set_default_listener};

#[test]
fn policies_without_a_listener_report_to_the_default_one_set_once() {
    let before = CircuitBreaker::new(CircuitBreaker::builder().name("before").build().unwrap());

    let seen = Arc::new(Mutex::new(Vec::<(&'static str, EventKind)>::new()));
    let log = seen.clone();
    set_default_listener(move |e: &Event| log.lock().unwrap().push((e.policy_name(), e.kind())))
        .unwrap();
    let err = set_default_listener(|_: &Event| {}).unwrap_err();
    assert_eq!(err.field(), "default_listener");

    let after = CircuitBreaker::new(
        CircuitBreaker::builder()
            .name("after")
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let own = Arc::new(AtomicUsize::new(0));
    let counted = own.clone();
    let with_own = CircuitBreaker::new(
        CircuitBreaker::builder()
            .name("own")
            .listener(move |_: &Event| {
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap(),
    );
    before.try_acquire().unwrap().failure();
    after.try_acquire().unwrap().failure();
    with_own.try_acquire().unwrap().failure();

    let seen = seen.lock().unwrap();
    assert!(
        seen.contains(&(
            "after",
            EventKind::Created {
                kind: PolicyKind::CircuitBreaker
            }
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(name, kind)| *name == "after" && matches!(kind, EventKind::StateChanged { .. }))
    );
    assert!(
        seen.iter().all(|(name, _)| *name == "after"),
        "only the policy built after, without a listener of its own: {seen:?}"
    );
    assert_eq!(own.load(Ordering::SeqCst), 2, "created, call recorded");
}
