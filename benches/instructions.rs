//! Instruction counts (callgrind) of every benchmark case, and the report.
//!
//! - `instructions case GROUP ROW ITERS` runs one case `ITERS` times inside
//!   `deferral_bench_measure` (after an uncounted warm-up) and prints the
//!   heap allocations it made; `valgrind --tool=callgrind
//!   --toggle-collect='*deferral_bench_measure*'` counts its instructions.
//! - `instructions report [--out FILE] [--command CMD]` runs every case that
//!   way, reads criterion's wall-time estimates from `target/criterion/`
//!   (written by the `scope` and `promise` benches just before), and writes
//!   `BENCHMARKS.md`. `bash benches/report.sh` does all of it.

// The 64-long `deferred_then`/`map_ok` chains nest 64 types deep.
#![recursion_limit = "1024"]

#[allow(dead_code)]
mod cases;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts allocations (and reallocations) so every row can report
/// allocations per iteration.
struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // ORDERING: a statistic read after the measured loop on this thread.
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // ORDERING: as in `alloc`.
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Iterations per case under callgrind.
const ITERS: u64 = 500;

/// Fewer iterations for the big linearity cases (they run for milliseconds
/// under callgrind).
fn iters_for(gid: &str) -> u64 {
    if gid.ends_with("_4096") {
        10
    } else if gid.ends_with("_512") {
        50
    } else {
        ITERS
    }
}

struct Row {
    ours: bool,
    id: &'static str,
    label: &'static str,
}

struct Group {
    id: &'static str,
    title: &'static str,
    note: &'static str,
    rows: Vec<Row>,
}

#[inline(never)]
fn deferral_bench_warm_up<F: FnMut()>(mut f: F, iters: u64) {
    for _ in 0..iters {
        f();
    }
}

#[inline(never)]
fn deferral_bench_measure<F: FnMut()>(mut f: F, iters: u64) {
    for _ in 0..iters {
        f();
    }
}

/// Runs `f` as the measured case; returns the allocations it made.
fn measure(f: impl FnMut() + Copy, iters: u64) -> u64 {
    deferral_bench_warm_up(f, 10);
    // ORDERING: single-threaded statistic.
    let before = ALLOCS.load(Ordering::Relaxed);
    deferral_bench_measure(f, iters);
    ALLOCS.load(Ordering::Relaxed) - before
}

macro_rules! registry {
    ($( $gid:literal $title:literal $note:literal [ $( $kind:ident $rid:literal $label:literal $f:path ),* $(,)? ] )*) => {
        pub(super) fn push_groups(groups: &mut Vec<Group>) {
            $(
                groups.push(Group {
                    id: $gid,
                    title: $title,
                    note: $note,
                    rows: vec![$( Row { ours: stringify!($kind) == "ours", id: $rid, label: $label } ),*],
                });
            )*
        }

        /// Runs the case `gid`/`rid`; `None` if there is no such case.
        pub(super) fn run_case(gid: &str, rid: &str, iters: u64) -> Option<u64> {
            $($(
                if gid == $gid && rid == $rid {
                    return Some(measure($f, iters));
                }
            )*)*
            None
        }
    };
}

mod scope_registry {
    use super::*;
    cases::scope_groups!(registry);
    pub(super) use push_groups as push;
    pub(super) use run_case as run;
}

mod promise_registry {
    use super::*;
    cases::promise_groups!(registry);
    pub(super) use push_groups as push;
    pub(super) use run_case as run;
}

fn groups() -> Vec<Group> {
    let mut groups = Vec::new();
    scope_registry::push(&mut groups);
    promise_registry::push(&mut groups);
    groups
}

fn main() {
    // `cargo bench` appends `--bench`; flags are read by name below.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    match positional.as_slice() {
        ["case", gid, rid, iters] => {
            let iters = iters.parse().expect("ITERS is a number");
            let allocs = scope_registry::run(gid, rid, iters)
                .or_else(|| promise_registry::run(gid, rid, iters))
                .unwrap_or_else(|| panic!("no case {gid}/{rid}"));
            println!("allocs {allocs}");
        }
        ["report", rest @ ..] => report(rest),
        _ => {
            eprintln!(
                "instruction-count harness: run `bash benches/report.sh` \
                 (or `instructions report` / `instructions case GROUP ROW ITERS`)"
            );
        }
    }
}

// ------------------------------------------------------------------ report

struct Measured {
    /// Instructions per iteration (callgrind `Ir`).
    instructions: Option<f64>,
    /// Heap allocations per iteration.
    allocs: Option<f64>,
    /// Median wall time per iteration, in nanoseconds (criterion).
    nanos: Option<f64>,
}

fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1).copied())
}

fn report(args: &[&str]) {
    // The workspace root (this package is its `benches/` member).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let out = flag(args, "--out").map_or_else(|| root.join("BENCHMARKS.md"), PathBuf::from);
    let command = flag(args, "--command").unwrap_or("bash benches/report.sh");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let criterion = target.join("criterion");
    let have_valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    let scratch = std::env::temp_dir().join(format!("deferral-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");

    let groups = groups();
    let mut results = Vec::new();
    for group in &groups {
        let mut rows = Vec::new();
        for row in &group.rows {
            let (instructions, allocs) = if have_valgrind {
                callgrind(&scratch, group.id, row.id)
            } else {
                (None, None)
            };
            let nanos = criterion_median(&criterion, group.id, row.id);
            eprintln!(
                "{}/{}: {} Ir, {} allocs, {} ns",
                group.id,
                row.id,
                fmt_opt(instructions, 0),
                fmt_opt(allocs, 2),
                fmt_opt(nanos, 1)
            );
            rows.push(Measured {
                instructions,
                allocs,
                nanos,
            });
        }
        results.push(rows);
    }
    let _ = std::fs::remove_dir_all(&scratch);

    let md = render(&groups, &results, command, have_valgrind);
    std::fs::write(&out, md).expect("write the report");
    eprintln!("wrote {}", out.display());
}

/// Runs one case under callgrind: (instructions, allocations) per iteration.
fn callgrind(scratch: &Path, gid: &str, rid: &str) -> (Option<f64>, Option<f64>) {
    let file = scratch.join(format!("{gid}.{rid}.callgrind"));
    let iters = iters_for(gid);
    let exe = std::env::current_exe().expect("current exe");
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg("--toggle-collect=*deferral_bench_measure*")
        .arg(&exe)
        .args(["case", gid, rid, &iters.to_string()])
        .output()
        .expect("run valgrind");
    if !output.status.success() {
        eprintln!(
            "{gid}/{rid}: callgrind failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return (None, None);
    }
    let allocs = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("allocs "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map(|n| n / iters as f64);
    let profile = std::fs::read_to_string(&file).unwrap_or_default();
    let total = profile
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse::<f64>().ok());
    (total.map(|t| t / iters as f64), allocs)
}

/// The median of criterion's last run of `gid/rid`, in nanoseconds.
fn criterion_median(criterion: &Path, gid: &str, rid: &str) -> Option<f64> {
    let json =
        std::fs::read_to_string(criterion.join(gid).join(rid).join("new/estimates.json")).ok()?;
    let median = &json[json.find("\"median\"")?..];
    let estimate = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = estimate.find([',', '}'])?;
    estimate[..end].trim().parse().ok()
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.decimals$}"))
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(o), Some(t)) if t > 0.0 => Some(o / t),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_string(), |r| format!("{r:.2}×"))
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// A target from SPEC.md "Performance": `ours ÷ theirs ≤ max` in `group`.
struct Target {
    what: &'static str,
    group: &'static str,
    ours: &'static str,
    theirs: &'static str,
    max: f64,
}

const TARGETS: &[Target] = &[
    Target {
        what: "empty scope ≤ 1.05× bare body",
        group: "scope_empty",
        ours: "scope",
        theirs: "bare",
        max: 1.05,
    },
    Target {
        what: "one sync thunk within 2× of `scopeguard::defer!`",
        group: "scope_sync_1",
        ours: "scope",
        theirs: "scopeguard",
        max: 2.0,
    },
    Target {
        what: "one sync thunk ≥ 5× cheaper than `Vec<Box<dyn FnOnce()>>`",
        group: "scope_sync_1",
        ours: "scope",
        theirs: "boxed",
        max: 0.2,
    },
    Target {
        what: "`DeferredPromise::new` no slower than `futures::future::lazy`",
        group: "promise_in_executor",
        ours: "new",
        theirs: "futures_lazy",
        max: 1.0,
    },
    Target {
        what: "`DeferredPromise::lazy` no slower than `futures::future::lazy`",
        group: "promise_in_executor",
        ours: "lazy",
        theirs: "futures_lazy",
        max: 1.0,
    },
    Target {
        what: "escaping resolver (`PromiseCell`) ≤ `futures::channel::oneshot`",
        group: "promise_escaping",
        ours: "cell",
        theirs: "futures_oneshot",
        max: 1.0,
    },
    Target {
        what: "escaping resolver (`PromiseCell`) ≤ `tokio::sync::oneshot`",
        group: "promise_escaping",
        ours: "cell",
        theirs: "tokio_oneshot",
        max: 1.0,
    },
    Target {
        what: "escaping resolver (`PromiseCell`) ≤ `oneshot`",
        group: "promise_escaping",
        ours: "cell",
        theirs: "oneshot",
        max: 1.0,
    },
    Target {
        what: "escaping resolver (`detached`, Arc) ≤ `futures::channel::oneshot`",
        group: "promise_escaping",
        ours: "detached",
        theirs: "futures_oneshot",
        max: 1.0,
    },
    Target {
        what: "escaping resolver (`detached`, Arc) ≤ `tokio::sync::oneshot`",
        group: "promise_escaping",
        ours: "detached",
        theirs: "tokio_oneshot",
        max: 1.0,
    },
    Target {
        what: "escaping resolver (`detached`, Arc) ≤ `oneshot`",
        group: "promise_escaping",
        ours: "detached",
        theirs: "oneshot",
        max: 1.0,
    },
    Target {
        what: "escaping resolver (`PromiseCell`) near `maitake_sync::WaitCell` (shown, no bound)",
        group: "promise_escaping",
        ours: "cell",
        theirs: "waitcell",
        max: f64::INFINITY,
    },
];

fn find<'a>(
    groups: &[Group],
    results: &'a [Vec<Measured>],
    gid: &str,
    rid: &str,
) -> Option<&'a Measured> {
    let g = groups.iter().position(|g| g.id == gid)?;
    let r = groups[g].rows.iter().position(|r| r.id == rid)?;
    Some(&results[g][r])
}

fn render(
    groups: &[Group],
    results: &[Vec<Measured>],
    command: &str,
    have_valgrind: bool,
) -> String {
    let mut md = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `{command}` on {date}. Regenerate with the same command \
         (it runs `cargo bench -p deferral-bench --bench scope --bench promise` with short criterion \
         times, then `cargo bench -p deferral-bench --bench instructions -- report`, which runs every \
         case under callgrind and writes this file).\n",
        date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    );
    let _ = writeln!(md, "| machine | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {cpu} |");
    let _ = writeln!(md, "| cores (`nproc`) | {cores} |");
    let _ = writeln!(md, "| rustc | {} |", shell("rustc", &["--version"]));
    let _ = writeln!(
        md,
        "| valgrind | {} |",
        if have_valgrind {
            shell("valgrind", &["--version"])
        } else {
            "not installed: no instruction counts".to_string()
        }
    );
    let _ = writeln!(
        md,
        "| profile | `bench` (release), default features (`std`) |\n"
    );
    let _ = writeln!(
        md,
        "**Reading the tables.** *Instructions* are callgrind's `Ir` per iteration \
         ({ITERS} iterations after a warm-up, fewer for the 512 and 4096 cases; deterministic, the figure to compare). \
         *Allocs* are heap allocations per iteration (a counting global allocator). \
         *Time* is criterion's median wall time per iteration; this machine is shared, \
         so times are noisy and only their order of magnitude is reliable. The ratio \
         columns are **ours ÷ this row** for each of our implementations: below 1× we \
         are cheaper, above 1× we cost more. Every case is one complete iteration \
         (create, drive by hand with a no-op waker, settle, drop) with `black_box`ed \
         inputs and outputs; no runtime is involved. The cases are in `benches/cases/`.\n"
    );

    let _ = writeln!(md, "## Targets (SPEC.md \"Performance\")\n");
    let _ = writeln!(
        md,
        "| target | instructions ratio | time ratio | verdict (instructions) |\n|---|---|---|---|"
    );
    for t in TARGETS {
        let ours = find(groups, results, t.group, t.ours);
        let theirs = find(groups, results, t.group, t.theirs);
        let ir = ratio(
            ours.and_then(|m| m.instructions),
            theirs.and_then(|m| m.instructions),
        );
        let time = ratio(ours.and_then(|m| m.nanos), theirs.and_then(|m| m.nanos));
        let verdict = match ir {
            None => "not measured",
            Some(_) if t.max.is_infinite() => "—",
            Some(r) if r <= t.max => "met",
            Some(_) => "**missed**",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {verdict} |",
            t.what,
            fmt_ratio(ir),
            fmt_ratio(time)
        );
    }
    let _ = writeln!(
        md,
        "\nThe `TaskQueue` (N = 1..4096, against `futures`' `buffered` / \
         `buffer_unordered` and `futures-buffered`) is the last section, from \
         `benches/queue.rs` in the same run.\n"
    );
    let _ = writeln!(md, "{}", include_str!("analysis.md"));

    for (group, rows) in groups.iter().zip(results) {
        let _ = writeln!(md, "## {}\n\n{}\n", group.title, group.note);
        let ours: Vec<usize> = (0..group.rows.len())
            .filter(|&i| group.rows[i].ours)
            .collect();
        let _ = write!(md, "| implementation | instructions | allocs | time |");
        for &o in &ours {
            let _ = write!(
                md,
                " `{0}` ÷ this (instr.) | `{0}` ÷ this (time) |",
                group.rows[o].id
            );
        }
        let _ = write!(md, "\n|---|--:|--:|--:|");
        for _ in &ours {
            let _ = write!(md, "--:|--:|");
        }
        let _ = writeln!(md);
        for (row, m) in group.rows.iter().zip(rows) {
            let name = if row.ours {
                format!("**{}** (ours, `{}`)", row.label, row.id)
            } else {
                format!("{} (`{}`)", row.label, row.id)
            };
            let _ = write!(
                md,
                "| {name} | {} | {} | {} |",
                fmt_opt(m.instructions, 0),
                fmt_opt(m.allocs, 2),
                m.nanos.map_or_else(|| "—".to_string(), fmt_nanos),
            );
            for &o in &ours {
                let base = &rows[o];
                let _ = write!(
                    md,
                    " {} | {} |",
                    fmt_ratio(ratio(base.instructions, m.instructions)),
                    fmt_ratio(ratio(base.nanos, m.nanos))
                );
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Sizes (`size_of`, bytes, this target)\n");
    let _ = writeln!(md, "| type | bytes |\n|---|--:|");
    for (name, size) in sizes() {
        let _ = writeln!(md, "| {name} | {size} |");
    }
    md
}

fn fmt_nanos(n: f64) -> String {
    if n >= 10_000.0 {
        format!("{:.1} µs", n / 1000.0)
    } else {
        format!("{n:.1} ns")
    }
}

fn sizes() -> Vec<(String, usize)> {
    use core::mem::{size_of, size_of_val};
    use deferral::scope::ScopeBuilder;
    use deferral::{DeferredPromise, PromiseCell, Resolver, SharedPromise};

    let bare = async { 0u32 };
    let scope = deferral::scope(async |_d| 0u32);
    let small = ScopeBuilder::new().capacity::<64>().run(async |_d| 0u32);
    let new = DeferredPromise::<u32, deferral::PromiseError<()>>::new(|r| r.resolve(1));
    let lazy = DeferredPromise::<u32, ()>::lazy(|| core::future::ready(Ok(1)));
    let detached = DeferredPromise::<u32, deferral::PromiseError<()>>::detached(drop);
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let (cell_promise, cell_resolver) = CELL.promise().unwrap();
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let shared_ours = SharedPromise::new(rx);
    let (_, rx2) = futures::channel::oneshot::channel::<u32>();
    let shared_futures = futures::FutureExt::shared(rx2);
    let futures_lazy = futures::future::lazy(|_| Ok::<u32, ()>(1));
    let guard = scopeguard::guard(0u64, |_| ());
    let rows = vec![
        (
            "bare `async { 0u32 }` (reference for the scope rows)".to_string(),
            size_of_val(&bare),
        ),
        (
            format!(
                "`deferral::scope(async \\|_d\\| 0u32)` (default capacity {} B)",
                deferral::scope::DEFAULT_CAPACITY
            ),
            size_of_val(&scope),
        ),
        (
            "`ScopeBuilder::new().capacity::<64>().run(..)`".to_string(),
            size_of_val(&small),
        ),
        (
            "`DeferScope` overhead with the default slab (scope − bare body)".to_string(),
            size_of_val(&scope) - size_of_val(&bare),
        ),
        (
            "`DeferScope` overhead without the slab bytes (scope − bare − capacity)".to_string(),
            size_of_val(&scope) - size_of_val(&bare) - deferral::scope::DEFAULT_CAPACITY,
        ),
        (
            "`DeferredPromise<u32, ()>` (`resolved`/`rejected`)".to_string(),
            size_of::<DeferredPromise<u32, ()>>(),
        ),
        (
            "`DeferredPromise::<u32, deferral::PromiseError<()>>::new(\\|r\\| r.resolve(1))`".to_string(),
            size_of_val(&new),
        ),
        (
            "`DeferredPromise::<u32, ()>::lazy(\\|\\| ready(Ok(1)))`".to_string(),
            size_of_val(&lazy),
        ),
        (
            "`DeferredPromise::<u32, deferral::PromiseError<()>>::detached(..)` (before the first poll)".to_string(),
            size_of_val(&detached),
        ),
        (
            "`PromiseCell::<u32, ()>::promise()` promise".to_string(),
            size_of_val(&cell_promise),
        ),
        (
            "`Resolver<'_, u32, ()>`".to_string(),
            size_of_val(&cell_resolver),
        ),
        (
            "`PromiseCell<u32, ()>`".to_string(),
            size_of::<PromiseCell<u32, ()>>(),
        ),
        (
            "`Resolver<'static, u32, ()>`".to_string(),
            size_of::<Resolver<'static, u32, ()>>(),
        ),
        (
            "`SharedPromise<oneshot::Receiver<u32>>` (one clone)".to_string(),
            size_of_val(&shared_ours),
        ),
        (
            "*theirs:* `futures::future::Shared<oneshot::Receiver<u32>>`".to_string(),
            size_of_val(&shared_futures),
        ),
        (
            "*theirs:* `futures::future::lazy(..)` (`FromFuture<F>`)".to_string(),
            size_of_val(&futures_lazy),
        ),
        (
            "*theirs:* `futures::channel::oneshot::Sender<u32>`".to_string(),
            size_of_val(&tx),
        ),
        (
            "*theirs:* `futures::channel::oneshot::Receiver<u32>`".to_string(),
            size_of::<futures::channel::oneshot::Receiver<u32>>(),
        ),
        (
            "*theirs:* `tokio::sync::oneshot::Sender<u32>`".to_string(),
            size_of::<tokio::sync::oneshot::Sender<u32>>(),
        ),
        (
            "*theirs:* `tokio::sync::oneshot::Receiver<u32>`".to_string(),
            size_of::<tokio::sync::oneshot::Receiver<u32>>(),
        ),
        (
            "*theirs:* `oneshot::Sender<u32>`".to_string(),
            size_of::<oneshot::Sender<u32>>(),
        ),
        (
            "*theirs:* `oneshot::Receiver<u32>`".to_string(),
            size_of::<oneshot::Receiver<u32>>(),
        ),
        (
            "*theirs:* `maitake_sync::WaitCell`".to_string(),
            size_of::<maitake_sync::WaitCell>(),
        ),
        (
            "*theirs:* `embassy_sync::signal::Signal<NoopRawMutex, u32>`".to_string(),
            size_of::<
                embassy_sync::signal::Signal<embassy_sync::blocking_mutex::raw::NoopRawMutex, u32>,
            >(),
        ),
        (
            "*theirs:* `embassy_sync::signal::Signal<CriticalSectionRawMutex, u32>`".to_string(),
            size_of::<
                embassy_sync::signal::Signal<
                    embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex,
                    u32,
                >,
            >(),
        ),
        (
            "*theirs:* `scopeguard::ScopeGuard<u64, F>` (F zero-sized)".to_string(),
            size_of_val(&guard),
        ),
    ];
    drop((cell_promise, cell_resolver, tx));
    rows
}
