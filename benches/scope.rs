//! Wall time (criterion) of `DeferScope` against the alternatives; the cases
//! live in `benches/cases/`. `bash benches/report.sh` runs this with the
//! other harnesses and writes `BENCHMARKS.md`.

// The 64-long `deferred_then`/`map_ok` chains nest 64 types deep.
#![recursion_limit = "1024"]
// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

#[allow(dead_code)]
mod cases;

use criterion::{Criterion, criterion_group, criterion_main};

macro_rules! criterion_groups {
    ($( $gid:literal $title:literal $note:literal [ $( $kind:ident $rid:literal $label:literal $f:path ),* $(,)? ] )*) => {
        fn benches(c: &mut Criterion) {
            $({
                let mut group = c.benchmark_group($gid);
                $( group.bench_function($rid, |b| b.iter($f)); )*
                group.finish();
            })*
        }
    };
}

cases::scope_groups!(criterion_groups);

criterion_group!(scope, benches);
criterion_main!(scope);
