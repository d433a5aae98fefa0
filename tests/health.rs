//! Health reports: state changes drive them and they serialize to the documented JSON. The
//! probes over a real socket are in the `palisade-net` member (`tests/net/tests/health_http.rs`).

use std::time::Duration;

use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::health::{Check, ComponentKind, HealthRegistry, HealthReport, HealthStatus};
use serde_json::json;

fn breaker(name: &'static str) -> CircuitBreaker {
    CircuitBreaker::new(
        CircuitBreaker::builder()
            .name(name)
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(10))
            .build()
            .unwrap(),
    )
}

fn status_of(report: &HealthReport, name: &str) -> HealthStatus {
    report.component(name).unwrap().status
}

#[tokio::test(start_paused = true)]
async fn breaker_states_drive_the_report_by_criticality() {
    let payments = breaker("payments");
    let search = breaker("search");
    let health = HealthRegistry::new();
    health.circuit_breaker(&payments, true).unwrap();
    health.circuit_breaker(&search, false).unwrap();
    assert_eq!(health.readiness().status(), HealthStatus::Healthy);

    // The non-critical breaker opens: degraded, and it says why.
    search.try_acquire().unwrap().failure();
    let report = health.readiness();
    assert_eq!(report.status(), HealthStatus::Degraded);
    assert_eq!(status_of(&report, "search"), HealthStatus::Degraded);
    assert!(
        report
            .component("search")
            .unwrap()
            .reason
            .starts_with("open")
    );
    assert_eq!(report.http_status(), 200, "degraded still serves");

    // The critical one opens: unhealthy.
    payments.try_acquire().unwrap().failure();
    let report = health.readiness();
    assert_eq!(report.status(), HealthStatus::Unhealthy);
    assert_eq!(status_of(&report, "payments"), HealthStatus::Unhealthy);
    assert_eq!(report.http_status(), 503);

    // After the break, a probe is in flight: half-open is degraded.
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = payments.try_acquire().unwrap();
    assert_eq!(
        status_of(&health.readiness(), "payments"),
        HealthStatus::Degraded
    );
    probe.success();
    assert_eq!(
        status_of(&health.readiness(), "payments"),
        HealthStatus::Healthy
    );

    // Isolated by hand is as bad as open; disabled passes everything and is healthy.
    payments.isolate();
    assert_eq!(
        status_of(&health.readiness(), "payments"),
        HealthStatus::Unhealthy
    );
    payments.disable();
    assert_eq!(
        status_of(&health.readiness(), "payments"),
        HealthStatus::Healthy
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_recovers_when_a_break_ends_without_traffic() {
    // A load balancer that removes the instance on 503 sends it nothing: the report must
    // see the break end by itself.
    let payments = breaker("payments");
    let health = HealthRegistry::new();
    health.circuit_breaker(&payments, true).unwrap();
    payments.try_acquire().unwrap().failure();
    assert_eq!(health.readiness().http_status(), 503);
    tokio::time::advance(Duration::from_secs(10)).await;
    let report = health.readiness();
    assert_eq!(status_of(&report, "payments"), HealthStatus::Degraded);
    assert_eq!(
        report.http_status(),
        200,
        "half-open serves, so the probes can come"
    );
}

#[tokio::test]
async fn a_saturated_bulkhead_degrades_and_recovers() {
    let pool = Bulkhead::new(
        Bulkhead::builder()
            .name("pool")
            .max_concurrent(4)
            .build()
            .unwrap(),
    );
    let health = HealthRegistry::new();
    health.bulkhead(&pool, true, 0.75).unwrap();

    let a = pool.try_acquire().unwrap();
    let b = pool.try_acquire().unwrap();
    assert_eq!(health.readiness().status(), HealthStatus::Healthy, "2 of 4");
    let c = pool.try_acquire().unwrap();
    let report = health.readiness();
    assert_eq!(
        report.status(),
        HealthStatus::Degraded,
        "3 of 4 reaches 0.75"
    );
    assert_eq!(
        report.component("pool").unwrap().reason,
        "3 of 4 slots in use, 0 queued"
    );
    assert_eq!(
        report.component("pool").unwrap().kind,
        ComponentKind::Bulkhead
    );
    drop((a, b, c));
    assert_eq!(health.readiness().status(), HealthStatus::Healthy);

    for bad in [0.0, 1.5, f64::NAN] {
        let err = health.bulkhead(&pool, true, bad).unwrap_err();
        assert_eq!(err.field(), "saturation");
    }
}

#[test]
fn liveness_counts_only_liveness_checks_and_readiness_counts_everything() {
    let health = HealthRegistry::new();
    let db = breaker("db");
    health.circuit_breaker(&db, true).unwrap();
    health
        .check("cache", false, || Check::unhealthy("redis unreachable"))
        .unwrap();
    health
        .liveness_check("event-loop", || Check::healthy("ticking"))
        .unwrap();
    db.isolate();

    let live = health.liveness();
    assert_eq!(live.status(), HealthStatus::Healthy);
    assert_eq!(live.components().len(), 1);
    assert_eq!(live.components()[0].name, "event-loop");

    let ready = health.readiness();
    assert_eq!(ready.status(), HealthStatus::Unhealthy);
    let names: Vec<_> = ready.components().iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["db", "cache", "event-loop"], "registration order");
    assert_eq!(
        status_of(&ready, "cache"),
        HealthStatus::Degraded,
        "a non-critical check cannot make the process unhealthy"
    );

    let clone = health.clone();
    clone
        .liveness_check("worker", || Check::unhealthy("wedged"))
        .unwrap();
    assert_eq!(
        health.liveness().http_status(),
        503,
        "clones share components"
    );

    let twin = breaker("db");
    let err = health.circuit_breaker(&twin, false).unwrap_err();
    assert_eq!(err.field(), "name");
    assert!(err.to_string().contains("\"db\""), "{err}");
    assert_eq!(
        health.readiness().components().len(),
        4,
        "the twin was not added"
    );
}

#[test]
fn a_check_can_register_a_component_while_a_report_runs() {
    let health = HealthRegistry::new();
    let inner = health.clone();
    health
        .check("registrar", false, move || {
            // Would deadlock if checks ran under the registry's lock.
            let _ = inner.check("late", false, || Check::healthy("added by a check"));
            Check::healthy("ok")
        })
        .unwrap();
    assert_eq!(health.readiness().components().len(), 1);
    let names: Vec<_> = health
        .readiness()
        .components()
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names, ["registrar", "late"]);
}

#[test]
fn report_serializes_to_the_documented_shape() {
    let health = HealthRegistry::new();
    let payments = breaker("payments");
    health.circuit_breaker(&payments, false).unwrap();
    health
        .check("disk", true, || Check::degraded("91% full"))
        .unwrap();
    payments.isolate();

    let value = serde_json::to_value(health.readiness()).unwrap();
    assert_eq!(
        value,
        json!({
            "status": "degraded",
            "components": {
                "payments": {
                    "kind": "circuit_breaker",
                    "status": "degraded",
                    "critical": false,
                    "reason": "isolated by hand"
                },
                "disk": {
                    "kind": "check",
                    "status": "degraded",
                    "critical": true,
                    "reason": "91% full"
                }
            }
        })
    );
    assert_eq!(
        serde_json::to_value(HealthRegistry::new().liveness()).unwrap(),
        json!({ "status": "healthy", "components": {} })
    );
}

#[test]
fn a_closed_breakers_reason_speaks_in_its_trip_models_terms() {
    let reason = |b: &CircuitBreaker| {
        let health = HealthRegistry::new();
        health.circuit_breaker(b, true).unwrap();
        let report = health.readiness();
        report.component(b.name()).unwrap().reason.clone()
    };
    let build = |b: palisade::circuit_breaker::CircuitBreakerConfigBuilder| {
        CircuitBreaker::new(b.build().unwrap())
    };
    let consecutive = build(CircuitBreaker::builder().name("a").consecutive_failures(5));
    consecutive.try_acquire().unwrap().success();
    consecutive.try_acquire().unwrap().failure();
    consecutive.try_acquire().unwrap().failure();
    assert_eq!(reason(&consecutive), "closed: 2 of 5 failures in a row");

    let within = build(
        CircuitBreaker::builder()
            .name("b")
            .failures_within(5, Duration::from_secs(30)),
    );
    for _ in 0..3 {
        within.try_acquire().unwrap().success();
        within.try_acquire().unwrap().failure();
    }
    assert_eq!(reason(&within), "closed: 3 of 5 failures within 30s");

    let ratio = build(CircuitBreaker::builder().name("c").trip_model(
        palisade::circuit_breaker::TripModel::CountWindow {
            size: 10,
            failure_ratio: 0.5,
            minimum_calls: 5,
        },
    ));
    ratio.try_acquire().unwrap().success();
    ratio.try_acquire().unwrap().failure();
    assert_eq!(reason(&ratio), "closed: 1 of 2 calls failed");
}

/// One host of four down degrades the report (the others serve); once its breaker lets a
/// probe through and it succeeds, the report is healthy again.
#[tokio::test(start_paused = true)]
async fn per_host_breakers_degrade_while_a_host_is_down_and_recover() {
    use palisade::keyed::{Keyed, KeyedConfig};
    let per_host: Keyed<String, _> = Keyed::new(
        KeyedConfig::default(),
        CircuitBreaker::new(
            CircuitBreaker::builder()
                .name("upstreams")
                .consecutive_failures(1)
                .break_duration(Duration::from_secs(5))
                .build()
                .unwrap(),
        ),
    );
    let health = HealthRegistry::new();
    health.keyed_breakers(&per_host, true, 0.5).unwrap();
    for host in ["a", "b", "c", "d"] {
        let ok = per_host
            .run(host, || async { Ok::<_, palisade::Error<()>>(()) })
            .await;
        assert!(ok.is_ok());
    }
    assert_eq!(health.readiness().status(), HealthStatus::Healthy);
    let _ = per_host
        .run("c", || async { Err::<(), _>(palisade::Error::Inner(())) })
        .await;
    let report = health.readiness();
    assert_eq!(report.status(), HealthStatus::Degraded);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["components"]["upstreams"]["kind"],
        "keyed_circuit_breakers"
    );
    assert_eq!(
        json["components"]["upstreams"]["reason"],
        "1 of 4 hosts not closed: \"c\""
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    let probe = per_host
        .run("c", || async { Ok::<_, palisade::Error<()>>(()) })
        .await;
    assert!(probe.is_ok());
    assert_eq!(health.readiness().status(), HealthStatus::Healthy);
}

/// The per-host count is exact through each change: hosts opening one by one (the share
/// crossing the threshold), breaks ending (half-open counts as degraded, never as down), a
/// probe closing one, and idle eviction emptying the map. `open_breakers` agrees with the
/// report at every step.
#[tokio::test(start_paused = true)]
async fn per_host_counts_follow_opening_half_opening_closing_and_eviction() {
    use palisade::keyed::{Keyed, KeyedConfig};
    let per_host: Keyed<String, _> = Keyed::new(
        KeyedConfig::builder()
            .idle(Duration::from_secs(60))
            .build()
            .unwrap(),
        CircuitBreaker::new(
            CircuitBreaker::builder()
                .name("hosts")
                .consecutive_failures(1)
                .break_duration(Duration::from_secs(10))
                .build()
                .unwrap(),
        ),
    );
    let health = HealthRegistry::new();
    health.keyed_breakers(&per_host, true, 0.5).unwrap();
    let seen = |want_open: usize| {
        let c = health.readiness().component("hosts").unwrap().clone();
        assert_eq!(per_host.open_breakers(), want_open, "{}", c.reason);
        (c.status, c.reason.into_owned())
    };
    for host in ["a", "b", "c", "d", "e"] {
        let ok = per_host
            .run(host, || async { Ok::<_, palisade::Error<()>>(()) })
            .await;
        assert!(ok.is_ok());
    }
    assert_eq!(
        seen(0),
        (
            HealthStatus::Healthy,
            "5 hosts, every breaker closed".into()
        )
    );
    let fail = |host: &'static str| {
        per_host.run(host, || async { Err::<(), _>(palisade::Error::Inner(())) })
    };
    let _ = fail("b").await;
    let _ = fail("d").await;
    let (status, reason) = seen(2);
    assert_eq!(status, HealthStatus::Degraded, "2 of 5 is below half");
    assert!(reason.starts_with("2 of 5 hosts not closed: "), "{reason}");
    assert!(
        reason.contains("\"b\"") && reason.contains("\"d\""),
        "{reason}"
    );
    let _ = fail("c").await;
    let (status, reason) = seen(3);
    assert_eq!(status, HealthStatus::Unhealthy, "3 of 5 is at least half");
    assert!(reason.starts_with("3 of 5 hosts not closed: "), "{reason}");

    // The breaks end: three half-open breakers are not down.
    tokio::time::advance(Duration::from_secs(10)).await;
    let (status, reason) = seen(3);
    assert_eq!(status, HealthStatus::Degraded, "{reason}");
    let probe = per_host
        .run("b", || async { Ok::<_, palisade::Error<()>>(()) })
        .await;
    assert!(probe.is_ok());
    let (status, reason) = seen(2);
    assert_eq!(status, HealthStatus::Degraded);
    assert!(reason.starts_with("2 of 5 hosts not closed: "), "{reason}");
    assert!(!reason.contains("\"b\""), "{reason}");

    // Idle for longer than the map keeps keys: closed and past-their-break breakers go.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(61)).await;
        per_host.evict_idle();
    }
    assert!(per_host.is_empty(), "{} kept", per_host.len());
    assert_eq!(
        seen(0),
        (
            HealthStatus::Healthy,
            "0 hosts, every breaker closed".into()
        )
    );
}
