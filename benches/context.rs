//! Context capture cost: flat (one `Arc` clone) whatever the number of
//! variables set, and free in the empty context; reading a variable; setting
//! one (copy on write, linear in the number of variables, for comparison).
//!
//! `cargo bench -p deferral-bench --bench context -- --warm-up-time 1 --measurement-time 2`
#![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group};
use deferral::{ContextVar, Snapshot};

static PROBE: ContextVar<u64> = ContextVar::new();

/// A snapshot with `n` variables set (`PROBE` among them when `n > 0`).
fn snapshot_of(n: usize, vars: &[ContextVar<u64>]) -> Snapshot {
    let mut s = Snapshot::empty();
    if n > 0 {
        s = s.with_value(&PROBE, 7);
    }
    for v in vars.iter().take(n.saturating_sub(1)) {
        s = s.with_value(v, 1);
    }
    s
}

fn context(c: &mut Criterion) {
    let vars: Vec<ContextVar<u64>> = (0..1000).map(|_| ContextVar::new()).collect();
    let sizes = [0_usize, 1, 10, 100, 1000];

    let mut g = c.benchmark_group("capture");
    for &n in &sizes {
        let snap = snapshot_of(n, &vars);
        assert_eq!(snap.len(), n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            snap.run(|| b.iter(|| black_box(Snapshot::capture())))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("get");
    for &n in &sizes {
        let snap = snapshot_of(n, &vars);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            snap.run(|| b.iter(|| black_box(PROBE.get())))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("run_set_one");
    for &n in &sizes {
        let snap = snapshot_of(n, &vars);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            snap.run(|| b.iter(|| PROBE.run(black_box(1), || black_box(()))))
        });
    }
    g.finish();
}

criterion_group!(benches, context);

/// `DEFERRAL_COUNT=<capture|get|run_set_one>:<variables>:<iterations>` runs
/// one operation that many times inside a snapshot of that many variables
/// and exits, for instruction counts under
/// `valgrind --tool=cachegrind --cache-sim=no` (subtract a run with 0
/// iterations).
fn count(spec: &str) {
    let mut parts = spec.split(':');
    let (op, n, iters) = (
        parts.next().expect("op"),
        parts
            .next()
            .expect("variables")
            .parse::<usize>()
            .expect("variables"),
        parts
            .next()
            .expect("iterations")
            .parse::<u64>()
            .expect("iterations"),
    );
    let vars: Vec<ContextVar<u64>> = (0..1000).map(|_| ContextVar::new()).collect();
    snapshot_of(n, &vars).run(|| {
        for _ in 0..iters {
            match op {
                "capture" => drop(black_box(Snapshot::capture())),
                "get" => drop(black_box(PROBE.get())),
                "run_set_one" => PROBE.run(black_box(1), || black_box(())),
                _ => panic!("unknown op {op}"),
            }
        }
    });
}

fn main() {
    if let Ok(spec) = std::env::var("DEFERRAL_COUNT") {
        return count(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
