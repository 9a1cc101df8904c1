//! Zero allocations: a scope whose thunks fit its inline slab never touches
//! the heap — in every feature set for LIFO/FIFO, and for concurrent cleanup
//! too without `alloc`. Own binary: it installs the counting allocator.

#[path = "support/alloc.rs"]
mod counting_alloc;
mod support;

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

#[allow(unused_imports)]
use counting_alloc::{assert_no_alloc, count_allocations};
use deferral::scope::{Concurrent, Fifo, Lifo, Order, ScopeBuilder};
use support::{WakeCounter, yield_now};

// One counter per test: the tests of this binary run in parallel.
static RAN_INLINE: AtomicUsize = AtomicUsize::new(0);
#[cfg(feature = "alloc")]
static RAN_CONCURRENT: AtomicUsize = AtomicUsize::new(0);

fn drive<F: Future>(fut: F, cx: &mut Context<'_>) -> F::Output {
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return out;
        }
    }
}

fn scenario<O: Order + Default>(ran: &'static AtomicUsize) -> impl Future<Output = u32> {
    let bump = move || {
        ran.fetch_add(1, SeqCst);
    };
    ScopeBuilder::new()
        .capacity::<1024>()
        .order(O::default())
        .run(async move |d| {
            d.defer(bump);
            d.defer_with(|exit: &mut deferral::Exit<u32>| *exit.output_mut().unwrap() += 1);
            d.defer_async(async move {
                yield_now().await;
                bump();
            });
            let mut g = d.guard([0_u8; 32], |buf| assert_eq!(buf[0], 9));
            g[0] = 9;
            d.guard_async(5_u64, move |n| async move {
                yield_now().await;
                assert_eq!(n, 5);
                bump();
            });
            let token = d.defer(|| unreachable!());
            let _thunk = token.cancel();
            yield_now().await;
            41
        })
}

#[test]
fn a_scope_that_fits_inline_does_not_allocate() {
    let waker = WakeCounter::new().waker();
    let mut cx = Context::from_waker(&waker);
    let mut check = |order: &str, run: &dyn Fn(&mut Context<'_>) -> u32| {
        let before = RAN_INLINE.load(SeqCst);
        let out = assert_no_alloc(|| run(&mut cx));
        assert_eq!(out, 42, "{order}");
        assert_eq!(RAN_INLINE.load(SeqCst) - before, 3, "{order}");
    };
    check("Lifo", &|cx| drive(scenario::<Lifo>(&RAN_INLINE), cx));
    check("Fifo", &|cx| drive(scenario::<Fifo>(&RAN_INLINE), cx));
    if !cfg!(feature = "alloc") {
        check("Concurrent", &|cx| {
            drive(scenario::<Concurrent>(&RAN_INLINE), cx)
        });
    }
}

#[test]
#[cfg(feature = "alloc")]
fn concurrent_cleanup_with_alloc_allocates_only_its_wakers() {
    let waker = WakeCounter::new().waker();
    let mut cx = Context::from_waker(&waker);
    let (out, n) = count_allocations(|| drive(scenario::<Concurrent>(&RAN_CONCURRENT), &mut cx));
    assert_eq!(out, 42);
    // The wake set (box, shared state, bitset, index), one waker per async
    // thunk (2 here); nothing per poll.
    assert!(n <= 7, "concurrent cleanup made {n} allocations");
}
