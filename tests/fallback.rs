//! The fallback chain with paused tokio time.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::bulkhead::Bulkhead;
use palisade::error::FullCause;
use palisade::fallback::Fallback;
use palisade::telemetry::{Event, EventKind};
use palisade::{Outcome, Rejected};
use support::AppError;
use tokio::time::{advance, sleep};
use tokio_test::{assert_pending, task};

type Levels = Arc<Mutex<Vec<u8>>>;

fn fallback(max_age: Option<Duration>) -> (Fallback<String>, Levels) {
    let levels: Levels = Arc::default();
    let seen = levels.clone();
    let mut b = Fallback::builder()
        .name("profile")
        .listener(move |e: &Event| {
            if let EventKind::FallbackUsed { level } = e.kind() {
                seen.lock().unwrap().push(level);
            }
        });
    if let Some(age) = max_age {
        b = b.cache_max_age(age);
    }
    (Fallback::new(b.build().unwrap()), levels)
}

async fn ok(s: &str) -> Result<String, AppError> {
    Ok(s.to_string())
}

async fn down(what: &'static str) -> Result<String, AppError> {
    Err(AppError::Backend(what))
}

#[tokio::test(start_paused = true)]
async fn alternatives_are_tried_in_order_until_one_works() {
    let (fb, levels) = fallback(Some(Duration::from_secs(60)));
    assert_eq!(fb.run(|| ok("v1")).or_cached().await.unwrap(), "v1");
    assert!(
        levels.lock().unwrap().is_empty(),
        "a working primary uses no fallback"
    );

    let out = fb
        .run(|| down("primary"))
        .or_else(|failed| async move {
            assert_eq!(
                failed,
                Err(AppError::Backend("primary")),
                "the alternative sees the failure"
            );
            down("replica").await
        })
        .or_cached()
        .or_value("static".to_string())
        .await;
    assert_eq!(out.unwrap(), "v1", "the cached primary answer");
    assert_eq!(*levels.lock().unwrap(), [1, 2]);
    let m = fb.metrics();
    assert_eq!((m.used, m.cache_hits), (2, 1), "the replica and the cache");
}

#[tokio::test(start_paused = true)]
async fn the_cache_is_served_only_while_younger_than_its_max_age() {
    let (fb, levels) = fallback(Some(Duration::from_secs(30)));
    fb.run(|| ok("fresh")).or_cached().await.unwrap();
    advance(Duration::from_secs(30)).await;
    assert_eq!(
        fb.run(|| down("p")).or_cached().await.unwrap(),
        "fresh",
        "30 s old: still served"
    );
    advance(Duration::from_secs(1)).await;
    let out = fb
        .run(|| down("p"))
        .or_cached()
        .or_value("default".into())
        .await;
    assert_eq!(out.unwrap(), "default", "31 s old: too old");
    assert_eq!(*levels.lock().unwrap(), [1, 2]);
    // A new primary success refreshes it.
    fb.run(|| ok("newer")).or_cached().await.unwrap();
    assert_eq!(fb.cached().as_deref(), Some("newer"));
}

#[tokio::test(start_paused = true)]
async fn only_the_primarys_own_successes_are_cached() {
    let (fb, _) = fallback(Some(Duration::from_secs(60)));
    let out = fb
        .run(|| down("p"))
        .or_else(|_| ok("from replica"))
        .or_cached()
        .await;
    assert_eq!(out.unwrap(), "from replica");
    assert_eq!(
        fb.cached(),
        None,
        "a fallback's answer is not the last good primary answer"
    );
    // Without a max age nothing is cached at all.
    let (plain, _) = fallback(None);
    plain.run(|| ok("v")).or_cached().await.unwrap();
    assert_eq!(plain.cached(), None);
}

#[tokio::test(start_paused = true)]
async fn when_every_level_fails_the_last_levels_error_comes_out() {
    let (fb, levels) = fallback(Some(Duration::from_secs(60)));
    let out = fb
        .run(|| down("primary"))
        .or_else(|_| down("replica"))
        .or_cached()
        .await;
    assert_eq!(out, Err(AppError::Backend("replica")));
    assert_eq!(
        *levels.lock().unwrap(),
        [1],
        "an empty cache is not a level used"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_falls_back_to_the_cached_value() {
    let (fb, _) = fallback(Some(Duration::from_secs(60)));
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let call = || bulkhead.run(|| ok("live"));
    assert_eq!(fb.run(call).or_cached().await.unwrap(), "live");

    let _busy = bulkhead.try_acquire().unwrap();
    let shed: Result<String, AppError> = bulkhead.run(|| ok("live")).await;
    assert!(
        matches!(shed, Err(AppError::Rejected(Rejected::BulkheadFull(f))) if f.cause() == FullCause::QueueFull)
    );
    assert_eq!(
        fb.run(call).or_cached().await.unwrap(),
        "live",
        "served from the cache"
    );
}

#[tokio::test(start_paused = true)]
async fn a_classifier_decides_what_falls_back() {
    let (fb, _) = fallback(None);
    let by_status = |r: &Result<String, AppError>| match r {
        Ok(s) if s.starts_with("503") => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(AppError::Backend("not found")) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let out = fb
        .run(|| ok("503 busy"))
        .classify(by_status)
        .or_value("cached page".into())
        .await;
    assert_eq!(out.unwrap(), "cached page", "an Ok(503) fell back");
    let out = fb
        .run(|| down("not found"))
        .classify(by_status)
        .or_value("default".into())
        .await;
    assert_eq!(
        out,
        Err(AppError::Backend("not found")),
        "a 404 is an answer, not a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_chain_mid_alternative_caches_and_reports_nothing() {
    let (fb, levels) = fallback(Some(Duration::from_secs(60)));
    let mut chain = task::spawn(
        fb.run(|| down("primary"))
            .or_else(|_| async {
                sleep(Duration::from_secs(10)).await;
                ok("late").await
            })
            .or_cached(),
    );
    assert_pending!(chain.poll());
    assert_eq!(*levels.lock().unwrap(), [1], "the alternative started");
    drop(chain);
    advance(Duration::from_secs(20)).await;
    assert_eq!(fb.cached(), None);
    assert_eq!(*levels.lock().unwrap(), [1]);
}

#[test]
fn every_invalid_config_names_its_field() {
    for (b, field) in [
        (
            Fallback::builder().cache_max_age(Duration::ZERO),
            "cache_max_age",
        ),
        (
            Fallback::builder().cache_max_age(Duration::from_secs(8 * 24 * 3600)),
            "cache_max_age",
        ),
        (Fallback::builder().name(""), "name"),
    ] {
        let err = b.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
    }
}

/// A fallback caching for a minute whose listener panics on its first `FallbackUsed`.
fn panics_once_on_fallback_used() -> Fallback<String> {
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    Fallback::new(
        Fallback::builder()
            .name("profile")
            .cache_max_age(Duration::from_secs(60))
            .listener(move |e: &Event| {
                if matches!(e.kind(), EventKind::FallbackUsed { .. })
                    && armed.swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    panic!("listener");
                }
            })
            .build()
            .unwrap(),
    )
}

/// Awaits `fut`, which must panic; the future is dropped before this returns.
async fn must_panic<F: std::future::Future>(fut: F) {
    use futures_util::FutureExt;
    let caught = std::panic::AssertUnwindSafe(fut).catch_unwind().await;
    assert!(caught.is_err(), "the callback's panic reaches the caller");
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_each_level_leaves_the_cache_and_the_next_call_working() {
    for level in ["or_else", "or_cached", "or_value"] {
        let fb = panics_once_on_fallback_used();
        let ran_alternative = std::sync::atomic::AtomicBool::new(false);
        assert_eq!(fb.run(|| ok("v1")).or_cached().await.unwrap(), "v1");
        match level {
            "or_else" => {
                must_panic(fb.run(|| down("primary")).or_else(|_| async {
                    ran_alternative.store(true, std::sync::atomic::Ordering::SeqCst);
                    ok("replica").await
                }))
                .await
            }
            "or_cached" => must_panic(fb.run(|| down("primary")).or_cached()).await,
            _ => must_panic(fb.run(|| down("primary")).or_value("static".into())).await,
        }
        assert!(
            !ran_alternative.load(std::sync::atomic::Ordering::SeqCst),
            "{level}: the event comes before the alternative is started"
        );
        assert_eq!(fb.cached().as_deref(), Some("v1"), "{level}: cache intact");
        let out = fb
            .run(|| down("primary"))
            .or_else(|_| down("replica"))
            .or_cached()
            .await;
        assert_eq!(out.unwrap(), "v1", "{level}: the policy works afterwards");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_leaves_the_cache_and_the_next_call_working() {
    let (fb, levels) = fallback(Some(Duration::from_secs(60)));
    assert_eq!(fb.run(|| ok("v1")).or_cached().await.unwrap(), "v1");
    must_panic(
        fb.run(|| ok("v2"))
            .classify(|_: &Result<String, AppError>| -> Outcome { panic!("classifier") })
            .or_cached(),
    )
    .await;
    assert_eq!(fb.cached().as_deref(), Some("v1"), "nothing stored");
    assert!(levels.lock().unwrap().is_empty(), "nothing reported");
    assert_eq!(
        fb.run(|| down("primary")).or_cached().await.unwrap(),
        "v1",
        "the policy works afterwards"
    );
}

/// A value whose `Clone` panics once when armed.
#[derive(Debug)]
struct Fragile(&'static str, Arc<std::sync::atomic::AtomicBool>);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        if self.1.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("clone");
        }
        Fragile(self.0, self.1.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn a_value_whose_clone_panics_leaves_the_cache_as_it_was() {
    let fb: Fallback<Fragile> = Fallback::new(
        Fallback::builder()
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let v1 = Fragile("v1", armed.clone());
    let out: Result<Fragile, AppError> = fb.run(|| async { Ok(v1) }).or_cached().await;
    assert_eq!(out.unwrap().0, "v1");

    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let v2 = Fragile("v2", armed.clone());
    must_panic(fb.run(|| async { Ok::<_, AppError>(v2) }).or_cached()).await;
    assert_eq!(
        fb.cached().map(|v| v.0),
        Some("v1"),
        "the cache is as it was"
    );
    let out = fb
        .run(|| async { Err(AppError::Backend("down")) })
        .or_cached()
        .await;
    assert_eq!(out.unwrap().0, "v1", "the policy works afterwards");
}

#[tokio::test(start_paused = true)]
async fn a_value_whose_clone_panics_while_served_leaves_the_cache_working() {
    let fb: Fallback<Fragile> = Fallback::new(
        Fallback::builder()
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let v1 = Fragile("v1", armed.clone());
    let _: Result<Fragile, AppError> = fb.run(|| async { Ok(v1) }).or_cached().await;

    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    must_panic(
        fb.run(|| async { Err::<Fragile, _>(AppError::Backend("down")) })
            .or_cached(),
    )
    .await;
    assert_eq!(
        fb.metrics().cache_hits,
        1,
        "counted before the value's `Clone` ran"
    );
    assert_eq!(fb.cached().map(|v| v.0), Some("v1"), "the cache is intact");
    let out = fb
        .run(|| async { Err(AppError::Backend("down")) })
        .or_cached()
        .await;
    assert_eq!(out.unwrap().0, "v1", "and still served");
}

/// A value whose `Clone`, once armed, says it started and waits for the test's go-ahead.
#[derive(Debug)]
struct Gated(&'static str, Arc<Gate>);

#[derive(Debug)]
struct Gate {
    armed: std::sync::atomic::AtomicBool,
    started: Mutex<std::sync::mpsc::Sender<()>>,
    go: Mutex<std::sync::mpsc::Receiver<()>>,
    // Whether the go-ahead came; a deadlock guard, so a regression fails instead of hanging.
    went: std::sync::atomic::AtomicBool,
}

impl Clone for Gated {
    fn clone(&self) -> Self {
        let gate = &self.1;
        if gate.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            gate.started.lock().unwrap().send(()).unwrap();
            let go = gate
                .go
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            gate.went
                .store(go.is_ok(), std::sync::atomic::Ordering::SeqCst);
        }
        Gated(self.0, gate.clone())
    }
}

#[test]
fn a_cache_read_clones_after_unlocking_so_a_store_is_not_held_up() {
    use futures_util::FutureExt;
    let (started_tx, started) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let gate = Arc::new(Gate {
        armed: false.into(),
        started: Mutex::new(started_tx),
        go: Mutex::new(go_rx),
        went: false.into(),
    });
    let fb: Fallback<Gated, palisade::clock::MonotonicClock> = Fallback::with_clock(
        Fallback::builder()
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap(),
        palisade::clock::MonotonicClock::new(),
    );
    let store = |name: &'static str| {
        let value = Gated(name, gate.clone());
        let out: Result<Gated, AppError> = fb
            .run(|| async { Ok(value) })
            .or_cached()
            .now_or_never()
            .expect("a ready primary completes at once");
        assert_eq!(out.unwrap().0, name);
    };
    store("v1");
    gate.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::scope(|s| {
        let reader = s.spawn(|| fb.cached().map(|v| v.0));
        started.recv().unwrap();
        // The reader is inside `v1`'s `Clone`: the cache must take a new value meanwhile.
        store("v2");
        go.send(()).unwrap();
        assert_eq!(
            reader.join().unwrap(),
            Some("v1"),
            "the reader gets what it looked up"
        );
    });
    assert!(
        gate.went.load(std::sync::atomic::Ordering::SeqCst),
        "the store finished while the reader was cloning"
    );
    assert_eq!(fb.cached().map(|v| v.0), Some("v2"));
}

#[test]
fn handles_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Fallback<String>>();
    // Readers clone a cached value one at a time, so a value need not be `Sync`.
    send_sync::<Fallback<std::cell::Cell<u32>>>();
    fn future_is_send<F: std::future::Future + Send>(_: F) {}
    let (fb, _) = fallback(Some(Duration::from_secs(1)));
    future_is_send(
        fb.run(|| ok("x"))
            .or_else(|_| ok("y"))
            .or_cached()
            .or_value("z".into()),
    );
}

mod layer {
    use super::*;
    use palisade::fallback::FallbackLayer;
    use tokio_test::{assert_ready, assert_ready_ok};
    use tower::{Layer, Service, ServiceExt};
    use tower_test::{assert_request_eq, mock};

    /// A primary that answers its first `ok` calls, then fails.
    fn primary(
        ok: u32,
    ) -> impl Service<u32, Response = String, Error = AppError, Future: Send> + Clone {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        tower::service_fn(move |id: u32| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < ok {
                    Ok(format!("primary {id}"))
                } else {
                    Err(AppError::Backend("primary down"))
                }
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_tries_its_steps_in_order_with_a_copy_of_the_request() {
        let (fb, levels) = fallback(Some(Duration::from_secs(60)));
        let replica = tower::service_fn(|id: u32| async move {
            if id == 1 {
                Ok(format!("replica {id}"))
            } else {
                Err(AppError::Backend("replica down"))
            }
        });
        let mut svc = FallbackLayer::new(fb.clone())
            .or_else(|id: u32, failed: Result<String, AppError>| async move {
                assert_eq!(failed, Err(AppError::Backend("primary down")));
                let _ = id;
                Err(AppError::Backend("closure down"))
            })
            .or_service(replica)
            .or_cached()
            .or_value("default".to_string())
            .layer(primary(1));

        assert_eq!(
            svc.ready().await.unwrap().call(0).await.unwrap(),
            "primary 0"
        );
        assert!(levels.lock().unwrap().is_empty());
        assert_eq!(
            fb.cached().as_deref(),
            Some("primary 0"),
            "the primary's success was cached"
        );

        assert_eq!(
            svc.ready().await.unwrap().call(1).await.unwrap(),
            "replica 1"
        );
        assert_eq!(
            *levels.lock().unwrap(),
            [1, 2],
            "closure (level 1) failed, replica (2) served"
        );
        assert_eq!(
            fb.cached().as_deref(),
            Some("primary 0"),
            "a fallback's answer is not cached"
        );

        levels.lock().unwrap().clear();
        assert_eq!(
            svc.ready().await.unwrap().call(2).await.unwrap(),
            "primary 0"
        );
        assert_eq!(
            *levels.lock().unwrap(),
            [1, 2, 3],
            "the cache (level 3) served"
        );

        advance(Duration::from_secs(61)).await;
        levels.lock().unwrap().clear();
        assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), "default");
        assert_eq!(
            *levels.lock().unwrap(),
            [1, 2, 4],
            "the cache was too old; the value served"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_step_fails_the_last_error_comes_out_and_the_classifier_decides() {
        let (fb, _) = fallback(None);
        let mut svc = FallbackLayer::new(fb.clone())
            .or_else(|_: u32, _| async { Err::<String, _>(AppError::Backend("secondary down")) })
            .layer(primary(0));
        let out = svc.ready().await.unwrap().call(1).await;
        assert_eq!(out, Err(AppError::Backend("secondary down")));

        let never_falls_back = FallbackLayer::new(fb)
            .classify(|_: &Result<String, AppError>| Outcome::Success)
            .or_value("unused".to_string());
        let mut svc = never_falls_back.layer(primary(0));
        assert_eq!(
            svc.ready().await.unwrap().call(1).await,
            Err(AppError::Backend("primary down"))
        );
    }

    /// What the primary and the alternative answer in each step of the parity scenario.
    fn primary_answer(step: usize) -> Result<String, AppError> {
        match step {
            0 | 6 => Ok(format!("v{step}")),
            1 => Ok("503 busy".to_string()),
            4 => Err(AppError::Backend("not found")),
            _ => Err(AppError::Backend("primary down")),
        }
    }

    fn alternative_answer(step: usize) -> Result<String, AppError> {
        match step {
            1 => Ok("from the replica".to_string()),
            _ => Err(AppError::Backend("replica down")),
        }
    }

    static GRADED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// An `Ok(503)` falls back, a 404 is an answer; counts its calls.
    fn by_status(r: &Result<String, AppError>) -> Outcome {
        GRADED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match r {
            Ok(s) if s.starts_with("503") => Outcome::Failure,
            Ok(_) | Err(AppError::Backend("not found")) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }

    /// What one step of the scenario left behind: the answer, the levels reported, the
    /// metrics, the cache and how many times the classifier ran.
    type Seen = (
        Result<String, AppError>,
        Vec<u8>,
        (u64, u64),
        Option<String>,
        usize,
    );

    fn seen(out: Result<String, AppError>, fb: &Fallback<String>, levels: &Levels) -> Seen {
        let m = fb.metrics();
        (
            out,
            std::mem::take(&mut *levels.lock().unwrap()),
            (m.used, m.cache_hits),
            fb.cached(),
            GRADED.swap(0, std::sync::atomic::Ordering::SeqCst),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_chain_gives_the_same_answers_counts_and_events_through_run_and_the_layer() {
        let (by_run, run_levels) = fallback(Some(Duration::from_secs(60)));
        let (by_layer, layer_levels) = fallback(Some(Duration::from_secs(60)));
        let mut svc = by_layer
            .layer()
            .classify(by_status)
            .or_else(|step: usize, _failed| async move { alternative_answer(step) })
            .or_cached()
            .or_value("default".to_string())
            .layer(tower::service_fn(|step: usize| async move {
                primary_answer(step)
            }));
        let mut expected = vec![
            (Ok("v0".into()), vec![], (0, 0), Some("v0".into()), 1),
            (
                Ok("from the replica".into()),
                vec![1],
                (1, 0),
                Some("v0".into()),
                2,
            ),
            (Ok("v0".into()), vec![1, 2], (3, 1), Some("v0".into()), 3),
            (Ok("v0".into()), vec![1, 2], (5, 2), Some("v0".into()), 3),
            (
                Err(AppError::Backend("not found")),
                vec![],
                (5, 2),
                Some("v0".into()),
                1,
            ),
            (Ok("default".into()), vec![1, 3], (7, 2), None, 2),
            (Ok("v6".into()), vec![], (7, 2), Some("v6".into()), 1),
        ]
        .into_iter();
        for step in 0..7 {
            if step == 5 {
                advance(Duration::from_secs(61)).await;
            }
            let out = by_run
                .run(|| async move { primary_answer(step) })
                .classify(by_status)
                .or_else(move |_failed| async move { alternative_answer(step) })
                .or_cached()
                .or_value("default".to_string())
                .await;
            let through_run = seen(out, &by_run, &run_levels);
            let out = svc.ready().await.unwrap().call(step).await;
            let through_layer = seen(out, &by_layer, &layer_levels);
            assert_eq!(
                through_run, through_layer,
                "step {step}: the surfaces differ"
            );
            assert_eq!(Some(through_run), expected.next(), "step {step}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_alternative_service_is_asked_for_readiness_only_when_the_chain_reaches_it() {
        let (fb, levels) = fallback(Some(Duration::from_secs(60)));
        let (primary, mut primary_handle) = mock::pair::<&'static str, String>();
        let (replica, mut replica_handle) = mock::pair::<&'static str, String>();
        replica_handle.allow(0);
        let mut svc = mock::Spawn::new(fb.layer().or_service(replica).or_cached().layer(primary));

        primary_handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut call = task::spawn(svc.call("a"));
        assert_pending!(call.poll());
        assert_request_eq!(primary_handle, "a").send_response("primary a".to_string());
        assert_eq!(assert_ready!(call.poll()).unwrap(), "primary a");
        assert_eq!(fb.cached().as_deref(), Some("primary a"));

        primary_handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut call = task::spawn(svc.call("b"));
        assert_pending!(call.poll());
        assert_request_eq!(primary_handle, "b").send_error("primary down");
        assert_pending!(call.poll(), "the replica is not ready");
        assert_eq!(
            *levels.lock().unwrap(),
            [1],
            "counted and reported once started"
        );
        replica_handle.allow(1);
        assert!(call.is_woken(), "the replica's readiness wakes the call");
        assert_pending!(call.poll());
        assert_request_eq!(replica_handle, "b").send_response("replica b".to_string());
        assert_eq!(assert_ready!(call.poll()).unwrap(), "replica b");
        assert_eq!(
            fb.cached().as_deref(),
            Some("primary a"),
            "a replica's answer is not cached"
        );

        // The replica fails: the cache (level 2) answers.
        primary_handle.allow(1);
        replica_handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut call = task::spawn(svc.call("c"));
        assert_pending!(call.poll());
        assert_request_eq!(primary_handle, "c").send_error("primary down");
        assert_pending!(call.poll());
        assert_request_eq!(replica_handle, "c").send_error("replica down");
        assert_eq!(assert_ready!(call.poll()).unwrap(), "primary a");
        assert_eq!(*levels.lock().unwrap(), [1, 1, 2]);
        let m = fb.metrics();
        assert_eq!((m.used, m.cache_hits), (3, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_response_future_mid_alternative_caches_and_reports_nothing_more() {
        let (fb, levels) = fallback(Some(Duration::from_secs(60)));
        let (primary, mut primary_handle) = mock::pair::<&'static str, String>();
        let (replica, mut replica_handle) = mock::pair::<&'static str, String>();
        let mut svc = mock::Spawn::new(
            fb.layer()
                .or_service(replica)
                .or_value("default".to_string())
                .layer(primary),
        );
        primary_handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut call = task::spawn(svc.call("a"));
        assert_pending!(call.poll());
        assert_request_eq!(primary_handle, "a").send_error("primary down");
        assert_pending!(call.poll());
        let pending = assert_request_eq!(replica_handle, "a");
        drop(call);
        advance(Duration::from_secs(10)).await;
        pending.send_response("too late".to_string());
        assert_eq!(*levels.lock().unwrap(), [1], "the value was never reached");
        assert_eq!(fb.cached(), None);
        assert_eq!(fb.metrics().used, 1);
    }

    #[test]
    fn the_response_future_is_send() {
        fn send<T: Send>(_: &T) {}
        let (fb, _) = fallback(None);
        let mut svc = fb
            .layer()
            .or_else(|_: u32, _| ok("y"))
            .or_service(primary(1))
            .or_cached()
            .or_value("z".to_string())
            .layer(primary(1));
        send(&svc.call(1));
    }
}
