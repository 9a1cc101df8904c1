//! Issue 21, finding 11: the queue's `&self` accessors, called between two
//! polls of self-borrowing futures — a task, its timeout timer and the
//! rate limit's window timer, each keeping `&mut` to its own local across
//! a pending `.await` — must not make a shared reference over them. Run
//! under Miri with Stacked Borrows and with `-Zmiri-tree-borrows`.
//!
//! On `c9d10e1`, `len()` (any `&self` accessor: it took `&TaskQueue`)
//! covered the rate limit's window timer, which lived outside the ring's
//! cells: Stacked Borrows reported "<tag> was later invalidated at offsets
//! [0x0..0x490] by a SharedReadOnly retag" at `queue.len()` and the UB at
//! the timer's next write through its own borrow
//! (`accessors_between_polls_of_a_self_borrowing_rate_limit_window`).

mod support;

use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use deferral::TaskQueue;
use deferral::queue::Level;
use futures::stream::FusedStream;
use futures::{Stream, StreamExt};
use support::yield_now;

/// A timer that keeps `&mut` to a local across two pending awaits.
async fn self_borrowing_sleep() {
    let mut ticks = [0u8; 4];
    let r = &mut ticks;
    yield_now().await;
    r[0] += 1;
    yield_now().await;
    r[1] += r[0];
}

/// A task that keeps `&mut` to a local across two pending awaits.
async fn self_borrowing_task(seed: u32) -> u32 {
    let mut local = [seed; 4];
    let r = &mut local;
    yield_now().await;
    r[0] += 1;
    yield_now().await;
    r.iter().sum()
}

/// Every `&self` accessor (and `Debug`, `FusedStream`).
fn read_everything<Q>(queue: &Q) -> usize
where
    Q: FusedStream + std::fmt::Debug,
{
    let text = format!("{queue:?}");
    assert!(text.contains("TaskQueue"));
    usize::from(queue.is_terminated())
}

#[test]
fn accessors_between_polls_of_a_self_borrowing_rate_limit_window() {
    let mut queue = pin!(
        TaskQueue::new()
            .concurrency(4)
            .timer(|_: Duration| self_borrowing_sleep())
            .rate_limit(1, Duration::from_secs(1))
    );
    queue
        .as_mut()
        .push_all([1, 2].map(core::future::ready))
        .unwrap();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    // Task 1 starts and opens the window (its timer is made, not polled).
    assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(Some(1)));
    // The window is used up: its timer is polled (it borrows itself).
    assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Pending);
    // Accessors between two polls of the timer.
    assert_eq!(queue.len(), 1);
    assert!(!queue.is_empty());
    assert_eq!(queue.unstarted(), 1);
    assert_eq!(queue.running(), 0);
    assert!(!queue.is_terminated());
    assert!(format!("{queue:?}").contains("TaskQueue"));
    // The timer writes through its own borrow, then completes.
    let mut out = Vec::new();
    for _ in 0..10 {
        match queue.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(n)) => out.push(n),
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
        let _ = queue.len();
    }
    assert_eq!(out, [2]);
}

/// Self-borrowing tasks with self-borrowing timeout timers, every accessor
/// between every two polls; then `until` (whose level check reads the
/// queue between polls) and its `Debug`.
#[test]
fn accessors_between_polls_of_self_borrowing_tasks_and_timeouts() {
    let mut queue = pin!(
        TaskQueue::new()
            .concurrency(2)
            .timer(|_: Duration| async {
                self_borrowing_sleep().await;
                std::future::pending::<()>().await // never times out
            })
            .timeout(Duration::from_secs(1))
    );
    for seed in 0..4 {
        queue.push(self_borrowing_task(seed)).unwrap();
    }
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    for _ in 0..20 {
        let _ = read_everything(&*queue);
        let _ = (queue.len(), queue.unstarted(), queue.running());
        let _ = (queue.is_paused(), queue.is_closed(), queue.is_stopped());
        let _ = (queue.max_running(), queue.capacity());
        match queue.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(n)) => out.push(n.unwrap()),
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    assert_eq!(out, [1, 5, 9, 13]);
    // `until` reads the queue after each poll; its `Debug` too.
    for seed in 0..3 {
        queue.push(self_borrowing_task(seed)).unwrap();
    }
    let mut until = pin!(queue.as_mut().until(Level::Idle));
    let mut batch = Vec::new();
    for _ in 0..20 {
        assert!(format!("{until:?}").contains("Until"));
        match until.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(n)) => batch.push(n.unwrap()),
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    assert_eq!(batch, [1, 5, 9]);
    assert!(futures::executor::block_on(queue.next()).is_none());
}
