//! The fallback chain with paused tokio time.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::bulkhead::Bulkhead;
use palisade::error::FullCause;
use palisade::fallback::{Chain, Fallback};
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

#[test]
fn handles_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Fallback<String>>();
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
    use tower::{Layer, Service, ServiceExt};

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
}
