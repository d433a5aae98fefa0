//! The read path of the concurrent maps a keyed policy could hold its per-key instances in:
//! a lookup of a key that is there (every call on a known user, IP or host), 10 000 string
//! keys, on 1 thread and on 2 threads at once (aggregate time per lookup: lower is better,
//! at or below the 1-thread figure means it scales). Run with
//! `cargo bench -p palisade-benches --bench keyed_map`; not part of the README table.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use criterion::Criterion;

const KEYS: usize = 10_000;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user-{i:08}")).collect()
}

/// `lookup` over every key in turn, `iters` times in all, on `threads` threads at once:
/// the wall time over all lookups of all threads.
fn on_threads(
    threads: usize,
    iters: u64,
    keys: &[String],
    lookup: &(impl Fn(&str) -> u64 + Sync),
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut sum = 0u64;
                for i in 0..iters as usize {
                    sum = sum.wrapping_add(lookup(&keys[(i * 7 + t * 13) % KEYS]));
                }
                black_box(sum);
            });
        }
    });
    start.elapsed() / threads as u32
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let keys = keys();

    let std_map: RwLock<HashMap<String, u64>> = RwLock::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u64))
            .collect(),
    );
    let dash: dashmap::DashMap<String, u64> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), i as u64))
        .collect();
    let papaya: papaya::HashMap<String, u64> = papaya::HashMap::new();
    {
        let pinned = papaya.pin();
        for (i, k) in keys.iter().enumerate() {
            pinned.insert(k.clone(), i as u64);
        }
    }
    let scc: scc::HashMap<String, u64> = scc::HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let _ = scc.insert(k.clone(), i as u64);
    }

    let std_get = |k: &str| *std_map.read().unwrap().get(k).unwrap();
    let dash_get = |k: &str| *dash.get(k).unwrap();
    let papaya_get = |k: &str| *papaya.pin().get(k).unwrap();
    let scc_get = |k: &str| scc.read(k, |_, v| *v).unwrap();

    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("keyed_map/get existing key, {threads} thread(s)"));
        g.bench_function("std RwLock<HashMap>", |b| {
            b.iter_custom(|n| on_threads(threads, n, &keys, &std_get))
        });
        g.bench_function("dashmap", |b| {
            b.iter_custom(|n| on_threads(threads, n, &keys, &dash_get))
        });
        g.bench_function("papaya", |b| {
            b.iter_custom(|n| on_threads(threads, n, &keys, &papaya_get))
        });
        g.bench_function("scc", |b| {
            b.iter_custom(|n| on_threads(threads, n, &keys, &scc_get))
        });
        g.finish();
    }
    c.final_summary();
}
