use std::time::Duration;

use super::*;
use crate::clock::FakeClock;
use crate::error::Rejected;

type Timer = fn(Duration) -> std::future::Ready<()>;

fn no_wait(_: Duration) -> std::future::Ready<()> {
    std::future::ready(())
}

const IDLE: Duration = Duration::from_secs(10);

fn limiters(
    clock: &FakeClock,
    max_keys: u32,
) -> Keyed<u32, RateLimiter<Timer, FakeClock>, FakeClock> {
    let config = RateLimiter::builder()
        .rate(10, Duration::from_secs(1))
        .build()
        .unwrap();
    let limiter = RateLimiter::with_timer_and_clock(config, no_wait as Timer, clock.clone());
    let config = KeyedConfig::builder()
        .max_keys(max_keys)
        .idle(IDLE)
        .build()
        .unwrap();
    Keyed::with_clock(config, limiter, clock.clone())
}

fn held<K, P, C>(keyed: &Keyed<K, P, C>, key: &K) -> u64
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    P: PerKey,
    C: Clock,
{
    keyed
        .shared
        .map
        .pin()
        .get(key)
        .map_or(0, |e| e.leases.held())
}

#[test]
fn a_key_idle_for_three_idle_times_is_evicted_and_comes_back_full() {
    let clock = FakeClock::new();
    let keyed = limiters(&clock, 10);
    for _ in 0..10 {
        keyed.try_acquire(&1).unwrap();
    }
    assert!(keyed.try_acquire(&1).is_err());
    for _ in 0..3 {
        clock.advance(IDLE);
        keyed.evict_idle();
    }
    assert!(!keyed.contains_key(&1));
    assert_eq!(keyed.len(), 0);
    for _ in 0..10 {
        keyed.try_acquire(&1).unwrap();
    }
}

#[test]
fn a_key_used_within_the_idle_time_stays() {
    let clock = FakeClock::new();
    let keyed = limiters(&clock, 10);
    for _ in 0..10 {
        keyed.try_acquire(&1).unwrap();
        clock.advance(IDLE - Duration::from_millis(1));
        assert_eq!(keyed.evict_idle(), 0);
    }
    assert!(keyed.contains_key(&1));
}

#[test]
fn a_bucket_that_has_not_refilled_is_not_evicted() {
    let clock = FakeClock::new();
    let config = RateLimiter::builder()
        .rate(1, Duration::from_secs(3600))
        .build()
        .unwrap();
    let limiter = RateLimiter::with_timer_and_clock(config, no_wait as Timer, clock.clone());
    let keyed: Keyed<u32, _, _> = Keyed::with_clock(
        KeyedConfig::builder().idle(IDLE).build().unwrap(),
        limiter,
        clock.clone(),
    );
    keyed.try_acquire(&1).unwrap();
    for _ in 0..10 {
        clock.advance(IDLE);
        keyed.evict_idle();
    }
    assert!(
        keyed.contains_key(&1),
        "evicting it would hand out a new token"
    );
    assert!(keyed.try_acquire(&1).is_err());
    clock.advance(Duration::from_secs(3600));
    for _ in 0..3 {
        clock.advance(IDLE);
        keyed.evict_idle();
    }
    assert!(!keyed.contains_key(&1));
}

#[test]
fn a_full_map_of_recent_keys_refuses_a_new_key_and_takes_it_once_one_is_idle() {
    let clock = FakeClock::new();
    let keyed = limiters(&clock, 3);
    for key in 0..3 {
        keyed.try_acquire(&key).unwrap();
    }
    let refused = keyed.try_acquire(&3).unwrap_err();
    assert!(matches!(refused, Rejected::TooManyKeys(full) if full.max_keys() == 3));
    assert_eq!(keyed.len(), 3);
    for _ in 0..3 {
        clock.advance(IDLE);
        keyed.evict_idle();
    }
    keyed.try_acquire(&3).unwrap();
    assert_eq!(keyed.len(), 1);
}

#[test]
fn a_full_map_evicts_on_its_own_when_a_new_key_arrives() {
    let clock = FakeClock::new();
    let keyed = limiters(&clock, 3);
    for key in 0..3 {
        keyed.try_acquire(&key).unwrap();
    }
    // No explicit eviction: new keys trigger it, at most once per quarter idle time.
    let mut admitted = 0;
    for key in 3..100 {
        clock.advance(IDLE / 4);
        if keyed.try_acquire(&key).is_ok() {
            admitted += 1;
        }
        assert!(keyed.len() <= 3);
    }
    assert!(admitted > 20, "only {admitted} new keys admitted");
}

#[test]
fn leases_are_given_back_after_each_call() {
    let clock = FakeClock::new();
    let keyed = limiters(&clock, 3);
    keyed.try_acquire(&1).unwrap();
    let _ = keyed.try_acquire_n(&1, 100);
    assert_eq!(held(&keyed, &1), 0);
}

#[test]
fn a_key_with_a_call_in_flight_is_never_evicted() {
    let clock = FakeClock::new();
    let bulkhead = Bulkhead::with_timer(
        Bulkhead::builder().max_concurrent(1).build().unwrap(),
        no_wait as Timer,
    );
    let keyed: Keyed<u32, _, _> = Keyed::with_clock(
        KeyedConfig::builder().idle(IDLE).build().unwrap(),
        bulkhead,
        clock.clone(),
    );
    let mut call =
        tokio_test::task::spawn(keyed.run(&1, std::future::pending::<Result<(), Rejected>>));
    assert!(call.poll().is_pending());
    assert_eq!(held(&keyed, &1), 1);
    for _ in 0..10 {
        clock.advance(IDLE);
        assert_eq!(keyed.evict_idle(), 0);
    }
    assert_eq!(keyed.metrics(&1).map(|m| m.in_flight), Some(1));
    drop(call);
    assert_eq!(held(&keyed, &1), 0);
    assert_eq!(keyed.metrics(&1).map(|m| m.in_flight), Some(0));
    // Idle since long before: the next eviction takes it.
    clock.advance(IDLE);
    keyed.evict_idle();
    clock.advance(IDLE);
    keyed.evict_idle();
    assert!(!keyed.contains_key(&1));
}

#[test]
fn a_breaker_in_its_break_stays_and_one_past_it_goes() {
    let clock = FakeClock::new();
    let breaker = CircuitBreaker::with_clock(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(60))
            .build()
            .unwrap(),
        clock.clone(),
    );
    let keyed: Keyed<String, _, _> = Keyed::with_clock(
        KeyedConfig::builder().idle(IDLE).build().unwrap(),
        breaker,
        clock.clone(),
    );
    let mut call = tokio_test::task::spawn(keyed.run("down", || async {
        Err::<(), _>(crate::Error::Inner("refused"))
    }));
    assert!(call.poll().is_ready());
    drop(call);
    assert_eq!(keyed.state("down"), Some(CircuitState::Open));
    assert_eq!(keyed.open_breakers(), 1);
    for _ in 0..5 {
        clock.advance(IDLE);
        keyed.evict_idle();
    }
    assert!(
        keyed.contains_key("down"),
        "evicting it would forget the host is down"
    );
    for _ in 0..3 {
        clock.advance(IDLE);
        keyed.evict_idle();
    }
    assert!(!keyed.contains_key("down"));
}

#[test]
fn a_closed_breaker_with_a_call_in_flight_is_never_evicted() {
    let clock = FakeClock::new();
    let breaker =
        CircuitBreaker::with_clock(CircuitBreaker::builder().build().unwrap(), clock.clone());
    let keyed: Keyed<u32, _, _> = Keyed::with_clock(
        KeyedConfig::builder().idle(IDLE).build().unwrap(),
        breaker,
        clock.clone(),
    );
    // A closed breaker is at rest: only the lease keeps a long call's key.
    let mut call =
        tokio_test::task::spawn(keyed.run(&1, std::future::pending::<Result<(), Rejected>>));
    assert!(call.poll().is_pending());
    for _ in 0..10 {
        clock.advance(IDLE);
        assert_eq!(keyed.evict_idle(), 0);
    }
    assert!(keyed.contains_key(&1));
    drop(call);
    assert_eq!(held(&keyed, &1), 0);
    // Idle from the call's end, not its start.
    assert_eq!(keyed.evict_idle(), 0, "its call just ended");
    clock.advance(IDLE + IDLE / 4);
    assert_eq!(keyed.evict_idle(), 1);
}

#[test]
fn a_key_used_without_a_lease_is_kept_for_the_idle_time_after_its_last_admission() {
    let clock = FakeClock::new();
    let limiter = RateLimiter::with_timer_and_clock(
        RateLimiter::builder()
            .rate(10, Duration::from_secs(1))
            .build()
            .unwrap(),
        |_: Duration| std::future::ready(()),
        clock.clone(),
    );
    let keyed: Keyed<u32, _, _> = Keyed::with_clock(
        KeyedConfig::builder().idle(IDLE).build().unwrap(),
        limiter,
        clock.clone(),
    );
    keyed.try_acquire(&1).unwrap();
    // Used again just before the idle time from its insert is over.
    clock.advance(IDLE * 2);
    keyed.try_acquire(&1).unwrap();
    clock.advance(IDLE - Duration::from_millis(1));
    assert_eq!(
        keyed.evict_idle(),
        0,
        "admitted less than the idle time ago"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(keyed.evict_idle(), 1);
}

/// The map's clock is user code, read when a lease ends: a clock that panics there still
/// lets the lease go, so the key is not held for ever.
#[test]
fn a_clock_that_panics_when_a_call_ends_leaves_no_lease_held() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone)]
    struct Panicky(FakeClock, Arc<AtomicBool>);
    impl Clock for Panicky {
        fn now(&self) -> crate::clock::Ticks {
            self.0.now()
        }
        fn now_lagging(&self) -> crate::clock::Ticks {
            assert!(!self.1.load(Ordering::Relaxed), "the clock failed");
            self.0.now()
        }
    }
    let clock = FakeClock::new();
    let fail = Arc::new(AtomicBool::new(false));
    let bulkhead = Bulkhead::with_timer(
        Bulkhead::builder().max_concurrent(1).build().unwrap(),
        no_wait as Timer,
    );
    let keyed: Keyed<u32, _, _> = Keyed::with_clock(
        KeyedConfig::builder().idle(IDLE).build().unwrap(),
        bulkhead,
        Panicky(clock.clone(), fail.clone()),
    );
    let mut call = tokio_test::task::spawn(keyed.run(&1, || async { Ok::<_, Rejected>(()) }));
    fail.store(true, Ordering::Relaxed);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = call.poll();
    }));
    assert!(unwound.is_err(), "the clock's panic reached the caller");
    drop(call);
    assert_eq!(held(&keyed, &1), 0, "the lease was given back");
    fail.store(false, Ordering::Relaxed);
    clock.advance(IDLE * 2);
    assert_eq!(keyed.evict_idle(), 1);
}
