use super::*;

#[test]
fn rejections_are_small_and_copy() {
    fn is_copy<T: Copy + Send + Sync + 'static>() {}
    is_copy::<Rejected>();
    // A rejection travels inside every caller's error type: a name and a duration at most.
    assert!(std::mem::size_of::<Rejected>() <= 40);
}

#[test]
fn box_error_downcasts_to_rejected() {
    let boxed: Box<dyn std::error::Error + Send + Sync> =
        Rejected::from(BulkheadFull::new("db", 4, FullCause::QueueFull)).into();
    let found = boxed.as_rejected().copied();
    assert_eq!(
        found,
        Some(Rejected::BulkheadFull(BulkheadFull::new(
            "db",
            4,
            FullCause::QueueFull
        )))
    );
    let other: Box<dyn std::error::Error + Send + Sync> = "boom".into();
    assert!(other.as_rejected().is_none());
}

#[test]
fn circuit_open_display_says_when_to_retry() {
    let open = CircuitOpen::new("payments", Duration::from_millis(1500));
    assert_eq!(
        open.to_string(),
        "policy `payments`: circuit open, retry after 1.5s"
    );
    assert_eq!(
        CircuitOpen::isolated("payments").to_string(),
        "policy `payments`: circuit open (isolated)"
    );
}

#[test]
fn config_error_names_field_rule_and_value() {
    let err = ConfigError::new("failure_ratio", "must be in (0, 1]", 1.5);
    assert_eq!(err.to_string(), "failure_ratio must be in (0, 1], got 1.5");
    assert_eq!(err.rule(), "must be in (0, 1]");
    assert_eq!(err.value(), "1.5");
}

#[test]
fn a_rate_limit_keeps_its_retry_after_known_however_long() {
    use super::{LimitCause, RateLimited};
    // Durations past the word's two marks clamp below them: still a known wait, over rate.
    for after in [
        Duration::MAX,
        Duration::from_nanos(u64::MAX),
        Duration::from_nanos(u64::MAX - 1),
    ] {
        let limited = RateLimited::new("api", LimitCause::OverRate, Some(after));
        assert_eq!(limited.cause(), LimitCause::OverRate);
        assert_eq!(
            limited.retry_after(),
            Some(Duration::from_nanos(u64::MAX - 2))
        );
        assert_eq!(RateLimited::from_nanos("api", Some(u64::MAX)), limited);
    }
    let unknown = RateLimited::new("api", LimitCause::OverRate, None);
    assert_eq!(
        (unknown.cause(), unknown.retry_after()),
        (LimitCause::OverRate, None)
    );
    let never = RateLimited::new(
        "api",
        LimitCause::CostAboveBurst,
        Some(Duration::from_secs(1)),
    );
    assert_eq!(
        (never.cause(), never.retry_after()),
        (LimitCause::CostAboveBurst, None)
    );
    assert_eq!(RateLimited::from_nanos("api", None), never);
}
