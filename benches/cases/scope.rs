//! `DeferScope` cases and the alternatives.

use core::future::Future;
use core::hint::black_box;
use core::pin::Pin;

use deferral::scope::{Concurrent, Lifo, ScopeBuilder};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{YieldOnce, block};

type BoxedFut = Pin<Box<dyn Future<Output = ()> + Send>>;

// ---------------------------------------------------------------- empty

pub fn empty_ours() {
    black_box(block(deferral::scope(async |_d| black_box(1u32))));
}

pub fn empty_bare() {
    black_box(block(async { black_box(1u32) }));
}

// ----------------------------------------------------------- sync thunks

pub fn sync_ours<const N: usize>() {
    block(deferral::scope(async |d| {
        for i in 0..N {
            let x = black_box(i as u64);
            d.defer(move || {
                black_box(x);
            });
        }
    }));
}

pub fn sync_ours_big<const N: usize>() {
    block(ScopeBuilder::new().capacity::<4096>().run(async |d| {
        for i in 0..N {
            let x = black_box(i as u64);
            d.defer(move || {
                black_box(x);
            });
        }
    }));
}

pub fn sync_scopeguard_macro() {
    block(async {
        let x = black_box(0u64);
        scopeguard::defer! {
            black_box(x);
        }
    });
}

pub fn sync_scopeguard<const N: usize>() {
    block(async {
        let guards: [_; N] = core::array::from_fn(|i| {
            scopeguard::guard(black_box(i as u64), |x| {
                black_box(x);
            })
        });
        black_box(&guards);
    });
}

pub fn sync_asd<const N: usize>() {
    block(async {
        let guards: [_; N] = core::array::from_fn(|i| {
            let x = black_box(i as u64);
            async_safe_defer::defer(move || {
                black_box(x);
            })
        });
        black_box(&guards);
    });
}

pub fn sync_boxed<const N: usize>() {
    block(async {
        let mut thunks: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
        for i in 0..N {
            let x = black_box(i as u64);
            thunks.push(Box::new(move || {
                black_box(x);
            }));
        }
        while let Some(f) = thunks.pop() {
            f();
        }
    });
}

// ---------------------------------------------------------- async thunks

pub fn async_ours<const N: usize, const CONCURRENT: bool>() {
    let b = ScopeBuilder::new().capacity::<8192>();
    if CONCURRENT {
        block(b.order(Concurrent).run(async |d| {
            for i in 0..N {
                d.defer_async(YieldOnce::new(black_box(i as u64)));
            }
        }));
    } else {
        block(b.order(Lifo).run(async |d| {
            for i in 0..N {
                d.defer_async(YieldOnce::new(black_box(i as u64)));
            }
        }));
    }
}

pub fn async_asd<const N: usize>() {
    block(async {
        let mut scope = async_safe_defer::AsyncScope::new();
        for i in 0..N {
            let x = black_box(i as u64);
            scope.defer(move || Box::pin(YieldOnce::new(x)));
        }
        scope.run().await;
    });
}

fn boxed_futures<const N: usize>() -> Vec<BoxedFut> {
    let mut futs: Vec<BoxedFut> = Vec::new();
    for i in 0..N {
        futs.push(Box::pin(YieldOnce::new(black_box(i as u64))));
    }
    futs
}

pub fn async_boxed<const N: usize>() {
    block(async {
        let mut futs = boxed_futures::<N>();
        while let Some(f) = futs.pop() {
            f.await;
        }
    });
}

pub fn async_join_all<const N: usize>() {
    block(async {
        let futs = boxed_futures::<N>();
        futures::future::join_all(futs).await;
    });
}

pub fn async_unordered<const N: usize>() {
    block(async {
        let futs: FuturesUnordered<BoxedFut> = FuturesUnordered::new();
        for i in 0..N {
            futs.push(Box::pin(YieldOnce::new(black_box(i as u64))));
        }
        futs.for_each(|()| async {}).await;
    });
}

// ----------------------------------------------------------- guard_async

pub fn guard_async_ours() {
    block(deferral::scope(async |d| {
        let mut conn = d.guard_async(black_box(1u64), YieldOnce::new);
        *conn += 1;
    }));
}

pub fn guard_async_manual() {
    block(async {
        let mut conn = black_box(1u64);
        conn += 1;
        YieldOnce::new(conn).await;
    });
}

pub fn guard_async_asd() {
    block(async {
        let mut scope = async_safe_defer::AsyncScope::new();
        let mut conn = black_box(1u64);
        conn += 1;
        scope.defer(move || Box::pin(YieldOnce::new(conn)));
        scope.run().await;
    });
}

// ------------------------------------------------- sweeps over N (1..4096)
//
// Default capacity (256 B): past about ten entries the slab spills to heap
// chunks (the first of 256 B, each next twice as big), so these also show
// spilling. `ready` thunks finish on their first poll; `YieldOnce` thunks
// suspend once, which costs every sequential order one more poll of the
// whole scope per thunk.

pub fn sweep_sync<const N: usize>() {
    block(deferral::scope(async |d| {
        for i in 0..N {
            let x = black_box(i as u64);
            d.defer(move || {
                black_box(x);
            });
        }
    }));
}

pub fn sweep_sync_local<const N: usize>() {
    let sum = core::cell::Cell::new(0u64);
    let sum = &sum;
    block(deferral::scope_local(async |d| {
        for i in 0..N {
            let x = black_box(i as u64);
            d.defer(move || sum.set(sum.get() + x));
        }
    }));
    black_box(sum.get());
}

pub fn sweep_async_ready<const N: usize>() {
    block(deferral::scope(async |d| {
        for i in 0..N {
            let x = black_box(i as u64);
            d.defer_async(async move {
                black_box(x);
            });
        }
    }));
}

pub fn sweep_async<const N: usize, const CONCURRENT: bool>() {
    if CONCURRENT {
        block(ScopeBuilder::new().order(Concurrent).run(async |d| {
            for i in 0..N {
                d.defer_async(YieldOnce::new(black_box(i as u64)));
            }
        }));
    } else {
        block(deferral::scope(async |d| {
            for i in 0..N {
                d.defer_async(YieldOnce::new(black_box(i as u64)));
            }
        }));
    }
}

pub fn sweep_boxed_sync<const N: usize>() {
    sync_boxed::<N>();
}

pub fn sweep_unordered<const N: usize>() {
    async_unordered::<N>();
}

// ------------------------------------------------------- local flavours

pub fn local_sync_ours<const N: usize>() {
    let mut count = 0u64;
    block(deferral::scope_local(async |d| {
        for i in 0..N {
            let x = black_box(i as u64);
            let count = &mut count as *mut u64; // one borrow per thunk
            d.defer(move || {
                // SAFETY: the thunks run one after another, after the body.
                unsafe { *count += x };
            });
        }
    }));
    black_box(count);
}

pub fn local_sync_scopeguard<const N: usize>() {
    let mut count = 0u64;
    block(async {
        let count = &mut count as *mut u64;
        let guards: [_; N] = core::array::from_fn(|i| {
            scopeguard::guard(black_box(i as u64), move |x| {
                // SAFETY: the guards drop one after another.
                unsafe { *count += x };
            })
        });
        black_box(&guards);
    });
    black_box(count);
}
