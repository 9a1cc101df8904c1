//! What context capture adds to the hot paths that capture on every call, in
//! the empty context (the common case): a `DeferredPromise` created, polled
//! and settled (next to `futures::future::lazy`), and one sync thunk
//! registered and run in a `DeferScope`. Uses only APIs that predate the
//! context module, so the same file measures the crate before and after it.
//!
//! `cargo bench -p deferral-bench --bench context_overhead -- --warm-up-time 1 --measurement-time 2`
#![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group};
use deferral::DeferredPromise;

fn poll_ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!(),
    }
}

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("promise_create_poll_settle");
    g.bench_function("futures_lazy", |b| {
        b.iter(|| poll_ready(futures::future::lazy(|_| Ok::<u32, ()>(black_box(1)))))
    });
    g.bench_function("deferred_promise_new", |b| {
        b.iter(|| {
            poll_ready(DeferredPromise::<u32, deferral::PromiseError<()>>::new(
                |r| r.resolve(black_box(1)),
            ))
        })
    });
    g.bench_function("deferred_promise_lazy", |b| {
        b.iter(|| {
            poll_ready(DeferredPromise::lazy(|| {
                std::future::ready(Ok::<u32, ()>(black_box(1)))
            }))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("scope_one_sync_thunk");
    g.bench_function("register_and_run", |b| {
        b.iter(|| {
            poll_ready(deferral::scope(async |d| {
                d.defer(|| {
                    black_box(());
                });
            }))
        })
    });
    g.finish();
}

criterion_group!(benches, overhead);

/// `DEFERRAL_COUNT=<op>:<iterations>` runs one operation that many times and
/// exits, for instruction counts under
/// `valgrind --tool=cachegrind --cache-sim=no` (subtract a run with 0).
fn count(spec: &str) {
    let (op, n) = spec
        .split_once(':')
        .expect("DEFERRAL_COUNT=<op>:<iterations>");
    let n: u64 = n.parse().expect("iterations");
    for _ in 0..n {
        match op {
            "futures_lazy" => {
                let _ = black_box(poll_ready(futures::future::lazy(|_| {
                    Ok::<u32, ()>(black_box(1))
                })));
            }
            "deferred_promise_new" => {
                let _ = black_box(poll_ready(
                    DeferredPromise::<u32, deferral::PromiseError<()>>::new(|r| {
                        r.resolve(black_box(1))
                    }),
                ));
            }
            "deferred_promise_lazy" => {
                let _ = black_box(poll_ready(DeferredPromise::lazy(|| {
                    std::future::ready(Ok::<u32, ()>(black_box(1)))
                })));
            }
            "scope_one_sync_thunk" => poll_ready(deferral::scope(async |d| {
                d.defer(|| {
                    black_box(());
                });
            })),
            _ => panic!("unknown op {op}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("DEFERRAL_COUNT") {
        return count(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
