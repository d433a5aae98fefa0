//! Markdown reports from the bench binaries: `benches/RESULTS.md` and the README's summary
//! table from `hot_path`'s criterion estimates, `benches/ALLOCATIONS.md` from `alloc_report`.
//!
//! Cases are told apart by their name: `palisade…` is ours, `bare…` is the group's baseline,
//! anything else is a peer, and a peer whose name contains [`LIKE_FOR_LIKE`] is the one a
//! palisade case should be compared with even when another peer is faster. `hot_path`
//! registers its groups through [`group`] so that the report knows every case this binary
//! was built to run, in order, and can refuse to write a table from a partial (filtered) or
//! stale run. The README summary has a row for every palisade case (the default
//! configuration, and each opt-in variant under a name that says what it uses) against the
//! group's fastest peer, and a second row against the like-for-like peer when that is not
//! the fastest. Groups whose name contains [`TWO_THREADS`] measure the aggregate time per
//! call across both threads, and both files say so.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion};

/// Marks the peer that does the same work as palisade's case (see the module docs).
pub const LIKE_FOR_LIKE: &str = "(like for like)";
/// In a group's name: its cases run on two threads at once.
pub const TWO_THREADS: &str = ", 2 threads";

/// What a figure from a 2-thread group is, for both reports.
const TWO_THREADS_NOTE: &str = "Groups named `2 threads` give the **aggregate time per call \
    across both threads** (the wall time over the calls of both): lower is better, and a \
    figure at or below the group's 1-thread figure means the operation scales. `fixed count` \
    gives each thread the same number of calls, so a thread that finishes first lets the \
    other run its last calls uncontended; `fixed time` has both call for the same window of \
    wall time, which keeps them contending to the end (a lock convoy shows there).";

const README_START: &str = "<!-- bench:start -->";
const README_END: &str = "<!-- bench:end -->";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Baseline,
    Palisade,
    Peer,
}

impl Kind {
    pub fn of(case: &str) -> Kind {
        if case.starts_with("palisade") {
            Kind::Palisade
        } else if case.starts_with("bare") {
            Kind::Baseline
        } else {
            Kind::Peer
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline",
            Kind::Palisade => "palisade",
            Kind::Peer => "peer",
        }
    }
}

/// Every (group, case) registered so far, in registration order. A static rather than a
/// field so that [`Group`] can borrow the `Criterion` as `benchmark_group` does.
static PLAN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// A criterion group that also records its cases for the report.
pub struct Group<'a> {
    name: String,
    inner: BenchmarkGroup<'a, WallTime>,
}

/// `c.benchmark_group(name)`, recorded for the report.
pub fn group<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    Group {
        name: name.to_owned(),
        inner: c.benchmark_group(name),
    }
}

impl Group<'_> {
    pub fn bench_function<F: FnMut(&mut Bencher<'_, WallTime>)>(
        &mut self,
        case: &str,
        f: F,
    ) -> &mut Self {
        PLAN.lock()
            .unwrap()
            .push((self.name.clone(), case.to_owned()));
        self.inner.bench_function(case, f);
        self
    }

    pub fn finish(self) {
        self.inner.finish();
    }
}

/// True when cargo ran the binary as a benchmark (`cargo bench`), not as a test
/// (`cargo test --benches` runs each case once and saves nothing).
pub fn is_bench_run() -> bool {
    std::env::args().skip(1).any(|a| a == "--bench")
}

struct Row {
    case: String,
    kind: Kind,
    ns: f64,
}

struct GroupResult {
    name: String,
    rows: Vec<Row>,
}

impl GroupResult {
    fn first(&self, kind: Kind) -> Option<&Row> {
        self.rows.iter().find(|r| r.kind == kind)
    }

    fn best_peer(&self) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| r.kind == Kind::Peer)
            .min_by(|a, b| a.ns.total_cmp(&b.ns))
    }

    /// The like-for-like peer, when it is not already the fastest.
    fn like_for_like_peer(&self) -> Option<&Row> {
        let best = self.best_peer()?;
        self.rows
            .iter()
            .find(|r| r.kind == Kind::Peer && r.case.contains(LIKE_FOR_LIKE))
            .filter(|r| r.case != best.case)
    }

    fn on_two_threads(&self) -> bool {
        self.name.contains(TWO_THREADS)
    }
}

/// Writes `benches/RESULTS.md` and the README summary from this run's estimates, or says
/// why it did not. `started` is taken before the first group runs: an estimate older than
/// that comes from an earlier run (or a filtered one) and must not be mixed in.
pub fn write_hot_path(started: SystemTime) {
    let dir = criterion_dir();
    let index = index_estimates(&dir);
    let plan = PLAN.lock().unwrap().clone();
    let mut groups: Vec<GroupResult> = Vec::new();
    for (group, case) in plan {
        let ns = match index.get(&(group.clone(), case.clone())) {
            Some(path) => fresh_median(path, started),
            None => None,
        };
        let Some(ns) = ns else {
            println!(
                "hot_path: benches/RESULTS.md and README.md not regenerated: no estimate from \
                 this run for `{group}` / `{case}` under {} (run without a filter)",
                dir.display()
            );
            return;
        };
        let row = Row {
            kind: Kind::of(&case),
            case,
            ns,
        };
        match groups.last_mut() {
            Some(g) if g.name == group => g.rows.push(row),
            _ => groups.push(GroupResult {
                name: group,
                rows: vec![row],
            }),
        }
    }

    let header = run_header("hot_path");
    // The repository root: this package lives in its `benches/` folder.
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let results = results_markdown(&header, &groups);
    write_or_warn(&root.join("benches/RESULTS.md"), &results);
    let readme_path = root.join("README.md");
    match std::fs::read_to_string(&readme_path) {
        Ok(readme) => match replace_between_markers(&readme, &summary_markdown(&header, &groups)) {
            Some(updated) => write_or_warn(&readme_path, &updated),
            None => println!("hot_path: README.md has no {README_START} … {README_END} section"),
        },
        Err(e) => println!("hot_path: cannot read {}: {e}", readme_path.display()),
    }
}

/// Writes `benches/ALLOCATIONS.md` from `(operation, case, (allocations, bytes))` rows.
pub fn write_allocations(rows: &[(&str, &str, (f64, f64))]) {
    let mut md = String::from("# Allocations per call\n\n");
    let _ = writeln!(md, "{}\n", run_header("alloc_report"));
    md.push_str(
        "Counted by a global allocator over 1000 calls after one warm-up call; the counts do \
         not depend on the machine.\n\n",
    );
    md.push_str("| operation | case | kind | allocations per call | bytes per call |\n");
    md.push_str("|---|---|---|---:|---:|\n");
    for (op, case, (allocs, bytes)) in rows {
        let kind = Kind::of(case).label();
        let _ = writeln!(md, "| {op} | {case} | {kind} | {allocs:.2} | {bytes:.0} |");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ALLOCATIONS.md");
    write_or_warn(&path, &md);
}

fn results_markdown(header: &str, groups: &[GroupResult]) -> String {
    let mut md = String::from("# Hot-path results\n\n");
    let _ = writeln!(md, "{header}\n");
    md.push_str(
        "Generated by the `hot_path` bench; do not edit. Times are criterion's median per \
         call; lower is better. `× bare` divides by the group's baseline; `× best peer` \
         divides a palisade case by the fastest peer in the same group, and `× like-for-like \
         peer` (where a group has a peer marked `(like for like)`) by that peer. \
         Compare within a group only. Each palisade case is the policy's default \
         configuration unless its name or its group's says which option it uses.\n\n",
    );
    md.push_str(TWO_THREADS_NOTE);
    md.push('\n');
    for g in groups {
        let _ = writeln!(md, "\n## {}\n", g.name);
        if g.on_two_threads() {
            md.push_str(
                "Aggregate time per call across both threads (wall time over all calls); \
                 at or below the 1-thread figure means it scales.\n\n",
            );
        }
        let bare = g.first(Kind::Baseline);
        let peer = g.best_peer();
        let like = g.like_for_like_peer();
        md.push_str("| case | kind | ns | × bare | × best peer |");
        if like.is_some() {
            md.push_str(" × like-for-like peer |");
        }
        md.push_str("\n|---|---|---:|---:|---:|");
        if like.is_some() {
            md.push_str("---:|");
        }
        md.push('\n');
        for r in &g.rows {
            let vs = |p: Option<&Row>| match (r.kind, p) {
                (Kind::Palisade, Some(p)) => ratio(r.ns, p.ns),
                _ => String::new(),
            };
            let _ = write!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.case,
                r.kind.label(),
                ns(r.ns),
                bare.map_or_else(String::new, |b| ratio(r.ns, b.ns)),
                vs(peer),
            );
            if like.is_some() {
                let _ = write!(md, " {} |", vs(like));
            }
            md.push('\n');
        }
    }
    md
}

fn summary_markdown(header: &str, groups: &[GroupResult]) -> String {
    let mut md = format!(
        "{header}\n\nMedian ns per call; lower is better. All cases: \
         [benches/RESULTS.md](benches/RESULTS.md). One row per palisade case, each the \
         policy's default configuration unless its name or its group's says which option it \
         uses; `peer` is the group's fastest peer, and a peer marked `(like for like)` gets a \
         row of its own when it is not the fastest.\n\n{TWO_THREADS_NOTE}\n\n"
    );
    md.push_str(
        "| group | palisade case | palisade ns (2 threads: aggregate per call) | peer | peer ns \
         | palisade / peer | palisade / bare |\n\
         |---|---|---:|---|---:|---:|---:|\n",
    );
    for g in groups {
        let vs_bare = |ours: &Row| {
            g.first(Kind::Baseline)
                .map_or_else(String::new, |b| ratio(ours.ns, b.ns))
        };
        // Every compared peer, or one row with no peer when the group has none.
        let mut peers: Vec<Option<&Row>> = [g.best_peer(), g.like_for_like_peer()]
            .into_iter()
            .flatten()
            .map(Some)
            .collect();
        if peers.is_empty() {
            peers.push(None);
        }
        for ours in g.rows.iter().filter(|r| r.kind == Kind::Palisade) {
            for &peer in &peers {
                let (peer_name, peer_ns, vs_peer) = match peer {
                    Some(p) => (p.case.as_str(), ns(p.ns), ratio(ours.ns, p.ns)),
                    None => ("(none)", String::new(), String::new()),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {peer_name} | {peer_ns} | {vs_peer} | {} |",
                    g.name,
                    ours.case,
                    ns(ours.ns),
                    vs_bare(ours),
                );
            }
        }
    }
    md
}

/// Replaces what lies between the README markers, keeping the markers.
fn replace_between_markers(text: &str, body: &str) -> Option<String> {
    let start = text.find(README_START)? + README_START.len();
    let end = start + text[start..].find(README_END)?;
    Some(format!("{}\n{body}{}", &text[..start], &text[end..]))
}

/// The line that says when, where and how the figures were made.
fn run_header(bench: &str) -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut command = format!("cargo bench -p palisade-benches --bench {bench}");
    if !args.is_empty() {
        command = format!("{command} -- {}", args.join(" "));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Run on {} (UTC), {}, {cpus} logical CPUs, with `{command}`.",
        utc_date(SystemTime::now()),
        cpu_model().unwrap_or_else(|| "unknown CPU".to_owned()),
    )
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// `YYYY-MM-DD` in UTC, without a date crate: days since 1970 to a civil date
/// (Howard Hinnant's `civil_from_days`, on 400-year eras starting in March).
fn utc_date(t: SystemTime) -> String {
    let days = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Where criterion writes, by its own rule minus the `cargo metadata` step: a target dir set
/// only in a cargo config file is not seen, and the report then says it found no estimates.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(target) => PathBuf::from(target).join("criterion"),
        // The workspace's target dir, at the repository root.
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"),
    }
}

/// (group, case) → `…/new/estimates.json`. Criterion shortens and sanitises directory
/// names (and renames on clashes), so the ids are read back from each `benchmark.json`
/// instead of rebuilding the path.
fn index_estimates(dir: &Path) -> HashMap<(String, String), PathBuf> {
    let mut index = HashMap::new();
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    };
    for group_dir in subdirs(dir) {
        for case_dir in subdirs(&group_dir) {
            let new = case_dir.join("new");
            let Some(id) = read_json(&new.join("benchmark.json")) else {
                continue;
            };
            if let (Some(g), Some(c)) = (id["group_id"].as_str(), id["function_id"].as_str()) {
                // Two directories may hold the same id: criterion cuts long names to the
                // same prefix and numbers the clashes in the order of each run, so a run
                // with another filter or order leaves a stale copy. The newest one counts.
                let estimates = new.join("estimates.json");
                let key = (g.to_owned(), c.to_owned());
                if index
                    .get(&key)
                    .is_none_or(|old: &PathBuf| modified(old) < modified(&estimates))
                {
                    index.insert(key, estimates);
                }
            }
        }
    }
    index
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

/// The median of an estimates file written after `started`. The median rather than the
/// mean: the machines are shared, and a few preempted samples move the mean.
fn fresh_median(path: &Path, started: SystemTime) -> Option<f64> {
    if modified(path)? < started {
        return None;
    }
    read_json(path)?["median"]["point_estimate"].as_f64()
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_or_warn(path: &Path, text: &str) {
    match std::fs::write(path, text) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => println!("cannot write {}: {e}", path.display()),
    }
}

fn ns(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
}
