//! Allocations of a `TaskQueue`: none without `alloc`; with it, only its
//! shared wake flags and the wakers pointing into them (a bound independent
//! of the number of tasks and of the window). Own binary: it installs the
//! counting allocator.

#[path = "support/alloc.rs"]
#[cfg_attr(feature = "alloc", allow(dead_code))] // `assert_no_alloc`
mod counting_alloc;
mod support;

use std::pin::pin;
use std::task::{Context, Poll};

#[allow(unused_imports)]
use counting_alloc::{assert_no_alloc, count_allocations};
use deferral::TaskQueue;
use deferral::queue::Yield;
use futures::Stream;
use support::{WakeCounter, yield_now};

async fn task(i: usize) -> usize {
    yield_now().await;
    yield_now().await;
    i
}

const TASKS: usize = if cfg!(miri) { 20 } else { 500 };

/// Keeps the window topped up (one push per result), runs `TASKS` tasks
/// through a queue of window 8 with concurrency 4, returns the sum.
fn scenario(order: Yield, cx: &mut Context<'_>) -> usize {
    let mut queue = pin!(TaskQueue::with_capacity::<8>().concurrency(4).order(order));
    let mut pushed = 0;
    while pushed < 8 {
        queue.as_mut().push(task(pushed)).unwrap();
        pushed += 1;
    }
    let mut sum = 0;
    loop {
        match queue.as_mut().poll_next(cx) {
            Poll::Ready(Some(i)) => {
                sum += i;
                if pushed < TASKS {
                    queue.as_mut().push(task(pushed)).unwrap();
                    pushed += 1;
                }
            }
            Poll::Ready(None) => return sum,
            Poll::Pending => {}
        }
    }
}

#[test]
#[cfg(not(feature = "alloc"))]
fn a_queue_without_alloc_never_allocates() {
    let waker = WakeCounter::new().waker();
    let mut cx = Context::from_waker(&waker);
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let sum = assert_no_alloc(|| scenario(order, &mut cx));
        assert_eq!(sum, TASKS * (TASKS - 1) / 2, "{order:?}");
    }
}

#[test]
#[cfg(feature = "alloc")]
fn a_queue_with_alloc_allocates_only_its_slot_wakers() {
    let waker = WakeCounter::new().waker();
    let mut cx = Context::from_waker(&waker);
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let (sum, n) = count_allocations(|| scenario(order, &mut cx));
        assert_eq!(sum, TASKS * (TASKS - 1) / 2, "{order:?}");
        // The wake flags (`Arc` + bitset) and one waker per window slot
        // (8): nothing per task or per poll.
        assert!(n <= 2 + 8, "{order:?}: {n} allocations for {TASKS} tasks");
        // Since the slot wakers share the flags' `Arc`: the `Arc`, the
        // bitset and the anchors, and in completion order the buffer of
        // finished slots — whatever the window.
        assert!(n <= 4, "{order:?}: {n} allocations for {TASKS} tasks");
    }
}
