//! Zero allocations for promises settled inside their executor and for
//! `PromiseCell` promises (this binary installs the counting allocator).

#[path = "support/alloc.rs"]
mod counting_alloc;
mod support;

use std::pin::pin;
use std::task::{Context, Poll};

use counting_alloc::{assert_no_alloc, count_allocations};
use deferral::{DeferredPromise, PromiseCell, PromiseError, PromiseExt};
use support::WakeCounter;

#[test]
fn counter_sees_an_allocation() {
    // If the allocator stopped counting, every assertion below would pass
    // vacuously.
    let (_, n) = count_allocations(|| std::hint::black_box(Box::new(1_u8)));
    assert_eq!(n, 1);
}

#[test]
fn executor_settled_promise_does_not_allocate() {
    let counter = WakeCounter::new();
    let waker = counter.waker();
    let mut cx = Context::from_waker(&waker);
    assert_no_alloc(|| {
        let mut p = pin!(DeferredPromise::<u32, PromiseError<()>>::new(
            |r| r.resolve(7)
        ));
        assert_eq!(p.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
        let mut abandoned = pin!(DeferredPromise::<u32, PromiseError<()>>::new(|_| ()));
        assert_eq!(
            abandoned.as_mut().poll(&mut cx),
            Poll::Ready(Err(PromiseError::Abandoned))
        );
        let mut chain = pin!(
            DeferredPromise::<u32, PromiseError<()>>::new(|r| r.resolve(1))
                .deferred_then(|v| Ok(v + 1))
                .deferred_catch(|_| Ok::<u32, ()>(0))
                .deferred_finally(|| ())
        );
        assert_eq!(chain.as_mut().poll(&mut cx), Poll::Ready(Ok(2)));
    });
}

#[test]
fn promise_cell_promise_does_not_allocate() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let counter = WakeCounter::new();
    let waker = counter.waker();
    let mut cx = Context::from_waker(&waker);
    assert_no_alloc(|| {
        // create, poll (pending: stores the waker), resolve, poll
        let (p, r) = CELL.promise().unwrap();
        let mut p = pin!(p);
        assert_eq!(p.as_mut().poll(&mut cx), Poll::Pending);
        r.resolve(5).unwrap();
        assert_eq!(p.as_mut().poll(&mut cx), Poll::Ready(Ok(5)));
        drop(r);
        // the lazy form, through the executor
        let mut p = pin!(CELL.lazy(|r| r.resolve(6)).unwrap());
        assert_eq!(p.as_mut().poll(&mut cx), Poll::Ready(Ok(6)));
    });
    assert_eq!(counter.wakes(), 1);
}

#[test]
#[cfg(feature = "alloc")]
fn detached_promise_allocates_its_shared_state_once_at_first_poll() {
    let counter = WakeCounter::new();
    let waker = counter.waker();
    let mut cx = Context::from_waker(&waker);
    let (mut p, created) =
        count_allocations(|| Box::pin(DeferredPromise::<u32, PromiseError<()>>::detached(drop)));
    assert_eq!(created, 1, "only the Box of this test");
    let (_, polled) = count_allocations(|| {
        assert_eq!(
            p.as_mut().poll(&mut cx),
            Poll::Ready(Err(PromiseError::Abandoned))
        );
    });
    assert_eq!(polled, 1, "one Arc, at the first poll");
}
