//! The test helpers test themselves: a helper that miscounts would make
//! every test built on it pass for the wrong reason.

mod support;

use std::pin::pin;
use std::task::Poll;
use support::{DropCounter, DropLog, WakeCounter, block_on, poll_once};

#[test]
fn wake_counter_counts_clones_wakes_and_drops() {
    let counter = WakeCounter::new();
    let waker = counter.waker();
    let clone = waker.clone();
    assert_eq!(
        (counter.clones(), counter.wakes(), counter.live()),
        (1, 0, 2)
    );
    clone.wake_by_ref();
    clone.wake(); // consumes the clone: a wake and a drop
    assert_eq!(
        (counter.wakes(), counter.drops(), counter.live()),
        (2, 1, 1)
    );
    drop(waker);
    assert_eq!((counter.drops(), counter.live()), (2, 0));
}

#[test]
fn block_on_runs_a_future_woken_from_another_thread() {
    struct WakeFromThread(bool);
    impl Future for WakeFromThread {
        type Output = &'static str;
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<&'static str> {
            if self.0 {
                return Poll::Ready("done");
            }
            self.0 = true;
            let waker = cx.waker().clone();
            std::thread::spawn(move || waker.wake());
            Poll::Pending
        }
    }
    assert_eq!(block_on(WakeFromThread(false)), "done");
}

#[test]
fn poll_once_reports_pending() {
    let counter = WakeCounter::new();
    let mut fut = pin!(std::future::pending::<()>());
    assert_eq!(poll_once(fut.as_mut(), &counter), Poll::Pending);
}

#[test]
fn drop_counter_and_log_record_each_drop_once() {
    let drops = DropCounter::new();
    let log = DropLog::new();
    {
        let _a = drops.tracked();
        let _b = log.on_drop("b");
        let _c = log.on_drop("c");
    }
    assert_eq!(drops.get(), 1);
    assert_eq!(log.events(), ["drop c", "drop b"]);
}

#[test]
fn panic_on_drop_counts_then_panics() {
    let drops = DropCounter::new();
    let value = drops.panicking();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(value)));
    assert!(result.is_err());
    assert_eq!(drops.get(), 1);
}
