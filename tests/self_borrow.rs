//! Futures that borrow their own state across a pending `.await` — as every
//! `async fn` with a local reference does — paused inside a scope's body, a
//! thunk, a promise and a queue task. Run under Miri with its default
//! (Stacked Borrows) rules and with `-Zmiri-tree-borrows`: a shared
//! reference to a pinned self-borrowing future, made between two polls,
//! invalidates the future's own pointers and is undefined behaviour.

mod support;

use std::pin::pin;
use std::task::Poll;

use deferral::{DeferredPromise, TaskQueue, scope};
use support::{WakeCounter, poll_once, yield_now};

/// Keeps `&mut` to a local across a pending await point.
async fn self_borrowing(seed: u32) -> u32 {
    let mut local = [seed; 4];
    let r = &mut local;
    yield_now().await;
    r[0] += 1;
    yield_now().await;
    r.iter().sum()
}

#[test]
fn a_body_pausing_inside_a_self_borrowing_future() {
    // The finding of the review (bf5d9a4): Stacked Borrows UB in `Driver::poll`.
    let out = support::block_on(scope(async |_| self_borrowing(1).await + 1));
    assert_eq!(out, 6);
}

#[test]
fn a_body_pausing_while_borrowing_a_guard() {
    let out = support::block_on(scope(async |d| {
        let mut g = d.guard(vec![1u32, 2], |v| assert_eq!(v, [1, 2, 3]));
        let r = &mut *g;
        yield_now().await;
        r.push(3);
        self_borrowing(r.len() as u32).await
    }));
    assert_eq!(out, 13);
}

#[test]
fn thunks_pausing_inside_self_borrowing_futures_in_every_order() {
    for order in support::order::ORDERS {
        let counter = WakeCounter::new();
        let mut s = support::order::run_n::<2048, _, _>(order, async |d| {
            for seed in 0..3 {
                d.defer_async(async move {
                    assert_eq!(self_borrowing(seed).await, 4 * seed + 1);
                });
            }
            self_borrowing(7).await
        });
        let mut polls = 0;
        let out = loop {
            polls += 1;
            if let Poll::Ready(out) = poll_once(s.as_mut(), &counter) {
                break out;
            }
            assert!(polls < 100, "{order:?}: the scope never finished");
        };
        assert_eq!(out, 29, "{order:?}");
    }
}

#[test]
fn a_scope_dropped_while_its_body_is_paused_in_a_self_borrowing_future() {
    let counter = WakeCounter::new();
    for k in 1..=3 {
        let mut s = Box::pin(scope(async |d| {
            d.defer(|| ());
            self_borrowing(1).await
        }));
        for _ in 0..k {
            let _ = poll_once(s.as_mut(), &counter);
        }
        drop(s);
    }
}

#[test]
fn a_promise_pausing_inside_a_self_borrowing_future() {
    let p = DeferredPromise::lazy(|| async { Ok::<_, ()>(self_borrowing(2).await) });
    assert_eq!(support::block_on(p), Ok(9));
}

#[test]
fn queue_tasks_pausing_inside_self_borrowing_futures() {
    use futures::StreamExt;
    let out = support::block_on(async {
        let mut queue = pin!(TaskQueue::new().concurrency(2));
        for seed in 0..4 {
            queue.as_mut().push(self_borrowing(seed)).unwrap();
        }
        queue.collect::<Vec<_>>().await
    });
    assert_eq!(out, [1, 5, 9, 13]);
}
