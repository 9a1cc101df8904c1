//! A grace deadline: cleanup raced against a caller-supplied timer, so a
//! cleanup that never finishes cannot hang shutdown; what was cut short is
//! reported (with the body's output), not silently lost.

mod support;

use std::pin::pin;
use std::task::Poll;

use support::order::Order::{Concurrent, Fifo, Lifo};
use support::{DropLog, Gate, WakeCounter, poll_once, yield_now};

#[test]
fn cleanup_that_never_finishes_is_cut_short_when_the_deadline_fires() {
    for order in [Lifo, Fifo, Concurrent] {
        let log = DropLog::new();
        let l = log.clone();
        let deadline = Gate::new();
        let d2 = deadline.clone();
        let timer_made = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tm = timer_made.clone();
        let mut scope = pin!(support::order::run_grace(
            order,
            async move |d| {
                let (a, held) = (l.clone(), l.on_drop("hangs"));
                d.defer_async(async move {
                    let _held = held;
                    a.push("hang: started");
                    std::future::pending::<()>().await
                });
                let (b, held) = (l.clone(), l.on_drop("quick"));
                d.defer_async(async move {
                    let _held = held;
                    yield_now().await;
                    b.push("quick: done");
                });
                let c = l.clone();
                d.defer(move || c.push("sync: done"));
                yield_now().await;
                "output"
            },
            move || {
                tm.store(true, std::sync::atomic::Ordering::SeqCst);
                d2.wait()
            }
        ));
        let waker = WakeCounter::new();
        assert!(
            poll_once(scope.as_mut(), &waker).is_pending(),
            "the body awaits"
        );
        assert!(
            !timer_made.load(std::sync::atomic::Ordering::SeqCst),
            "the timer starts with cleanup, not before"
        );
        for _ in 0..5 {
            assert!(
                poll_once(scope.as_mut(), &waker).is_pending(),
                "{order:?}: hangs"
            );
        }
        assert!(timer_made.load(std::sync::atomic::Ordering::SeqCst));
        deadline.open();
        let Poll::Ready(out) = poll_once(scope.as_mut(), &waker) else {
            panic!("{order:?}: resolves when the deadline fires");
        };
        let cut = out.unwrap_err();
        // FIFO starts the hanging one first: the quick one never started.
        let fifo = order == Fifo;
        assert_eq!(cut.cut(), if fifo { 2 } else { 1 }, "{order:?}: cut short");
        assert_eq!(cut.into_output(), "output");
        let events = log.events();
        for e in [
            "hang: started",
            "drop hangs",
            "quick: done",
            "drop quick",
            "sync: done",
        ] {
            let expected = usize::from(!(fifo && e == "quick: done"));
            assert_eq!(
                events.iter().filter(|x| *x == e).count(),
                expected,
                "{order:?}: {e}: {events:?}"
            );
        }
    }
}

#[test]
fn cleanup_that_finishes_in_time_resolves_ok() {
    let mut scope = pin!(
        deferral::scope(async |d| {
            d.defer_async(async { yield_now().await });
            7
        })
        .grace(std::future::pending::<()>)
    );
    let waker = WakeCounter::new();
    let out = loop {
        if let Poll::Ready(out) = poll_once(scope.as_mut(), &waker) {
            break out;
        }
    };
    assert_eq!(out.unwrap(), 7);
}

#[test]
fn a_deadline_before_any_cleanup_started_cuts_everything_async_and_runs_sync() {
    let log = DropLog::new();
    let l = log.clone();
    let out = support::block_on(
        deferral::scope::ScopeBuilder::new()
            .capacity::<256>()
            .run(async move |d| {
                let a = l.clone();
                d.defer(move || a.push("sync ran"));
                let held = l.on_drop("async");
                d.defer_async(async move {
                    let _held = held;
                    std::future::pending::<()>().await
                });
                d.defer_async(async { std::future::pending::<()>().await });
            })
            .grace(|| async {}),
    );
    assert_eq!(out.unwrap_err().cut(), 2);
    let mut events = log.events();
    events.sort();
    assert_eq!(events, ["drop async", "sync ran"]);
}

#[cfg(feature = "std")]
#[test]
fn a_panicking_body_still_resumes_its_panic_when_cut_short() {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        support::block_on(
            deferral::scope(async |d| {
                d.defer_async(std::future::pending::<()>());
                panic!("body panicked")
            })
            .grace(|| async {}),
        )
    }));
    let p = result.unwrap_err();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"body panicked"));
}
