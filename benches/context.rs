//! Context capture cost: flat (one `Arc` clone) whatever the number of
//! variables set, and free in the empty context; reading a variable; setting
//! one (copy on write, linear in the number of variables, for comparison).
//!
//! `cargo bench --bench context -- --warm-up-time 1 --measurement-time 2`
#![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
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
criterion_main!(benches);
