//! Snapshots on every handle, and the `metrics` facade exporter, checked with the
//! debugging recorder of `metrics-util`.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::retry::{Backoff, Retry, RetryBudget};
use palisade::telemetry::MetricsListener;
use palisade::timeout::Timeout;
use palisade::{Error, Rejected};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// One recorded series: name, sorted labels, value.
type Series = (String, Vec<(String, String)>, DebugValue);

/// Every series recorded so far.
fn series(snapshotter: &Snapshotter) -> Vec<Series> {
    let mut out: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn find<'a>(all: &'a [Series], name: &str, labels: &[(&str, &str)]) -> &'a DebugValue {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    &all.iter()
        .find(|(n, l, _)| n == name && *l == want)
        .unwrap_or_else(|| panic!("no series {name} {labels:?} in {all:#?}"))
        .2
}

fn counter(v: &DebugValue) -> u64 {
    match v {
        DebugValue::Counter(n) => *n,
        other => panic!("not a counter: {other:?}"),
    }
}

fn gauge(v: &DebugValue) -> f64 {
    match v {
        DebugValue::Gauge(g) => g.into_inner(),
        other => panic!("not a gauge: {other:?}"),
    }
}

fn histogram(v: &DebugValue) -> Vec<f64> {
    match v {
        DebugValue::Histogram(h) => h.iter().map(|x| x.into_inner()).collect(),
        other => panic!("not a histogram: {other:?}"),
    }
}

#[test]
fn retry_snapshot_counts_calls_retries_recoveries_and_give_ups() {
    let rt = paused_runtime();
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(10)))
            .budget(RetryBudget::new(Duration::from_secs(10), 1, 0.5))
            .build()
            .unwrap(),
    );
    let clone = retry.clone();
    rt.block_on(async {
        // Succeeds at once.
        let _: Result<u8, Error<&str>> = retry.run(|| async { Ok(1) }).await;
        // Fails once, then succeeds: one retry, one recovery.
        let mut first = true;
        let _: Result<u8, Error<&str>> = clone
            .run(|| {
                let fail = std::mem::take(&mut first);
                async move { if fail { Err(Error::Inner("x")) } else { Ok(2) } }
            })
            .await;
        // Always fails: two retries, then gives up.
        let _: Result<u8, Error<&str>> = retry.run(|| async { Err(Error::Inner("x")) }).await;
    });
    let m = retry.metrics();
    assert_eq!(m.calls, 3);
    assert_eq!(m.retries, 3);
    assert_eq!(m.attempts, 6);
    assert_eq!(m.recovered, 1);
    assert_eq!(m.gave_up, 1);
    // 10 s of budget: a floor of 1 retry per second (10) plus half of 3 first attempts,
    // minus the 3 retries taken.
    let left = m.budget_left.expect("a budget is configured");
    assert!((left - 8.5).abs() < 1e-9, "budget left {left}");
    assert_eq!(clone.metrics(), m, "clones share the counters");
}

#[test]
fn a_retry_dropped_during_its_backoff_is_not_counted() {
    let rt = paused_runtime();
    let retry = Retry::new(
        Retry::builder()
            .backoff(Backoff::constant(Duration::from_secs(10)))
            .build()
            .unwrap(),
    );
    rt.block_on(async {
        let call = retry.run(|| async { Err::<(), _>(Error::Inner("down")) });
        // Cut during the 10 s backoff: the retry was scheduled, never started.
        assert!(tokio::time::timeout(ms(5), call).await.is_err());
    });
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.attempts), (1, 0, 1));
}

#[test]
fn timeout_snapshot_counts_calls_cut_short() {
    let rt = paused_runtime();
    let timeout = Timeout::new(Timeout::builder().duration(ms(50)).build().unwrap());
    rt.block_on(async {
        let _ = timeout.run(|| async { Ok::<_, Rejected>(()) }).await;
        let slow = timeout.clone().run_once(async {
            tokio::time::sleep(ms(100)).await;
            Ok::<_, Rejected>(())
        });
        assert!(slow.await.unwrap_err().is_timeout());
    });
    let m = timeout.metrics();
    assert_eq!(m.timed_out, 1);
    assert_eq!(m.duration, ms(50));
}

#[test]
fn exporter_records_named_and_labelled_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = paused_runtime();
        rt.block_on(async {
            let breaker = CircuitBreaker::new(
                CircuitBreaker::builder()
                    .name("db")
                    .consecutive_failures(2)
                    .break_duration(Duration::from_secs(5))
                    .listener(MetricsListener)
                    .build()
                    .unwrap(),
            );
            breaker.try_acquire().unwrap().success();
            breaker.try_acquire().unwrap().failure();
            breaker.try_acquire().unwrap().failure();
            assert!(breaker.try_acquire().is_err());

            let bulkhead = Bulkhead::new(
                Bulkhead::builder()
                    .name("pool")
                    .max_concurrent(1)
                    .listener(MetricsListener)
                    .build()
                    .unwrap(),
            );
            let held = bulkhead.try_acquire().unwrap();
            assert!(bulkhead.try_acquire().is_err());
            drop(held);

            let timeout = Timeout::new(
                Timeout::builder()
                    .name("slow")
                    .duration(ms(10))
                    .listener(MetricsListener)
                    .build()
                    .unwrap(),
            );
            let never = std::future::pending::<Result<(), Rejected>>();
            assert!(timeout.run_once(never).await.is_err());

            let retry = Retry::new(
                Retry::builder()
                    .name("api")
                    .max_attempts(2)
                    .backoff(Backoff::constant(ms(250)))
                    .listener(MetricsListener)
                    .build()
                    .unwrap(),
            );
            let _: Result<(), Error<&str>> =
                retry.run(|| async { Err(Error::Inner("down")) }).await;
        });
    });

    let all = series(&snapshotter);
    let db = [("policy", "db")];
    assert_eq!(
        counter(find(
            &all,
            "palisade_calls_total",
            &[("policy", "db"), ("outcome", "success")]
        )),
        1
    );
    assert_eq!(
        counter(find(
            &all,
            "palisade_calls_total",
            &[("policy", "db"), ("outcome", "failure")]
        )),
        2
    );
    assert_eq!(
        gauge(find(&all, "palisade_circuit_state", &db)),
        2.0,
        "open"
    );
    assert_eq!(
        counter(find(
            &all,
            "palisade_circuit_transitions_total",
            &[("policy", "db"), ("to", "open")]
        )),
        1
    );
    assert_eq!(
        counter(find(
            &all,
            "palisade_rejections_total",
            &[("policy", "db"), ("reason", "circuit_open")]
        )),
        1
    );
    assert_eq!(
        counter(find(
            &all,
            "palisade_rejections_total",
            &[("policy", "pool"), ("reason", "bulkhead_full")]
        )),
        1
    );
    assert_eq!(
        gauge(find(
            &all,
            "palisade_bulkhead_in_flight",
            &[("policy", "pool")]
        )),
        0.0,
        "the slot was given back"
    );
    assert_eq!(
        counter(find(&all, "palisade_timeouts_total", &[("policy", "slow")])),
        1
    );
    let api = [("policy", "api")];
    assert_eq!(counter(find(&all, "palisade_retries_total", &api)), 1);
    assert_eq!(
        histogram(find(&all, "palisade_retry_delay_seconds", &api)),
        vec![0.25]
    );
    let give_up = [("policy", "api"), ("reason", "attempts_exhausted")];
    assert_eq!(
        counter(find(&all, "palisade_retry_give_ups_total", &give_up)),
        1
    );
    assert_eq!(
        histogram(find(&all, "palisade_retry_attempts", &api)),
        vec![2.0]
    );
    assert!(
        all.iter()
            .all(|(name, labels, _)| name.starts_with("palisade_")
                && labels.iter().any(|(k, _)| k == "policy")),
        "every series is palisade_* with a policy label: {all:#?}"
    );
}

#[test]
fn gauges_exist_from_the_moment_a_policy_is_built() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let _breaker = CircuitBreaker::new(
            CircuitBreaker::builder()
                .name("idle-db")
                .listener(MetricsListener)
                .build()
                .unwrap(),
        );
        let bulkhead = Bulkhead::new(
            Bulkhead::builder()
                .name("idle-pool")
                .max_concurrent(2)
                .listener(MetricsListener)
                .build()
                .unwrap(),
        );
        let all = series(&snapshotter);
        let closed = gauge(find(
            &all,
            "palisade_circuit_state",
            &[("policy", "idle-db")],
        ));
        assert_eq!(closed, 0.0, "closed before its first call");
        let idle = gauge(find(
            &all,
            "palisade_bulkhead_in_flight",
            &[("policy", "idle-pool")],
        ));
        assert_eq!(idle, 0.0);

        // A second bulkhead of the same name does not move a gauge with calls in flight.
        let held = bulkhead.try_acquire().unwrap();
        let _twin = Bulkhead::new(
            Bulkhead::builder()
                .name("idle-pool")
                .max_concurrent(2)
                .listener(MetricsListener)
                .build()
                .unwrap(),
        );
        let all = series(&snapshotter);
        let busy = gauge(find(
            &all,
            "palisade_bulkhead_in_flight",
            &[("policy", "idle-pool")],
        ));
        assert_eq!(busy, 1.0);
        drop(held);
    });
}

/// Breakers kept per host share their map's policy name: their transitions are counted, but
/// one host's state must not overwrite the state gauge for another's (with host b open and
/// host a closing last, it once read "closed"), so they leave it alone.
#[test]
fn per_key_breakers_count_transitions_and_leave_the_state_gauge_alone() {
    let rt = paused_runtime();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let per_host: palisade::keyed::Keyed<String, _> = palisade::keyed::Keyed::new(
                palisade::keyed::KeyedConfig::default(),
                CircuitBreaker::new(
                    CircuitBreaker::builder()
                        .name("hosts")
                        .consecutive_failures(1)
                        .break_duration(ms(1000))
                        .listener(MetricsListener)
                        .build()
                        .unwrap(),
                ),
            );
            let fail = || async { Err::<(), _>(palisade::Error::Inner(())) };
            let ok = || async { Ok::<(), palisade::Error<()>>(()) };
            let _ = per_host.run("a", fail).await;
            let _ = per_host.run("b", fail).await;
            tokio::time::advance(ms(2000)).await;
            let _ = per_host.run("a", ok).await; // a's probe succeeds: closed
            let _ = per_host.run("b", fail).await; // b's probe fails: open again, last
            assert_eq!(per_host.open_breakers(), 1);
            let all = series(&snapshotter);
            let hosts = [("policy", "hosts")];
            assert_eq!(
                gauge(find(&all, "palisade_circuit_state", &hosts)),
                0.0,
                "the prototype's value when it was built, untouched by the hosts"
            );
            let opened = [("policy", "hosts"), ("to", "open")];
            assert_eq!(
                counter(find(&all, "palisade_circuit_transitions_total", &opened)),
                3
            );
        })
    });
}
