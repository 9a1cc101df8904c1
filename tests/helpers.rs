//! The test helpers test themselves: a helper that miscounts would make
//! every test built on it pass for the wrong reason.

mod support;

use std::pin::pin;
use std::sync::Arc;
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

#[test]
// `waker.clone().wake()` is deliberate: it exercises the by-value `wake`.
#[allow(clippy::waker_clone_wake)]
fn hostile_wakers_panic_exactly_on_the_planned_call() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use support::{Call, Hostile};
    for call in Call::ALL {
        for k in 1..=3 {
            let hostile = Hostile::new().panic_on(call, k);
            let waker = hostile.waker();
            let mut panicked_at = None;
            for n in 1..=4 {
                let result = catch_unwind(AssertUnwindSafe(|| match call {
                    Call::Clone => drop(waker.clone()),
                    #[allow(clippy::waker_clone_wake)] // a by-value wake is the point
                    Call::Wake => waker.clone().wake(),
                    Call::WakeByRef => waker.wake_by_ref(),
                    Call::Drop => drop(waker.clone()),
                }));
                if result.is_err() {
                    assert!(panicked_at.is_none(), "{call:?}: only one planned panic");
                    panicked_at = Some(n);
                }
            }
            assert_eq!(panicked_at, Some(k), "{call:?} panics on call #{k}");
            assert_eq!(hostile.panics(), 1);
            assert_eq!(hostile.count(call), 4);
        }
    }
}

#[test]
fn hostile_wakers_count_live_wakers_even_when_wake_panics() {
    use support::{Call, Hostile};
    let hostile = Hostile::new().panic_on(Call::Wake, 1);
    let waker = hostile.waker();
    let clone = waker.clone();
    assert_eq!(hostile.live(), 2);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| clone.wake()));
    assert!(result.is_err());
    assert_eq!(
        hostile.live(),
        1,
        "a panicking by-value wake still consumed its waker"
    );
    drop(waker);
    assert_eq!(hostile.live(), 0);
}

#[test]
fn hostile_wake_hook_runs_once_before_the_wake() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use support::Hostile;
    let hostile = Hostile::new();
    let victim = Arc::new(AtomicUsize::new(0));
    let v = victim.clone();
    hostile.on_wake(move || {
        v.fetch_add(1, SeqCst);
    });
    let waker = hostile.waker();
    waker.wake_by_ref();
    waker.wake_by_ref();
    assert!(hostile.hook_ran());
    assert_eq!(victim.load(SeqCst), 1);
    assert_eq!(hostile.wakes(), 2);
}
