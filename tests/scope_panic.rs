//! Panics (with `std`): a panicking body still runs every thunk, async ones
//! included; a panicking thunk or destructor does not stop the others; the
//! first panic resumes after all ran; everything runs or drops exactly once.
#![cfg(feature = "std")]

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;

use deferral::scope;
use support::order::Order::{Concurrent, Fifo, Lifo};
use support::{DropCounter, DropLog, WakeCounter, block_on, poll_once, yield_now};

fn panic_message(err: Box<dyn std::any::Any + Send>) -> String {
    err.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn body_panic_runs_sync_and_async_thunks_then_resumes() {
    for order in [Lifo, Fifo, Concurrent] {
        let log = DropLog::new();
        let l = log.clone();
        let err = catch_unwind(AssertUnwindSafe(|| {
            block_on(support::order::run(order, async move |d| {
                let l1 = l.clone();
                d.defer(move || l1.push("sync"));
                let l2 = l.clone();
                d.defer_async(async move {
                    yield_now().await; // polled to completion after the panic
                    l2.push("async");
                });
                let l3 = l.clone();
                d.defer_with(move |exit: &mut deferral::Exit<()>| {
                    assert!(exit.is_panicked() && exit.output().is_none());
                    l3.push("with: runs, no output")
                });
                let _local = l.on_drop("body local");
                yield_now().await;
                panic!("body failed");
            }))
        }))
        .unwrap_err();
        assert_eq!(panic_message(err), "body failed", "{order:?}");
        let mut events = log.events();
        assert_eq!(
            events[0], "drop body local",
            "the body is dropped before cleanup ({order:?})"
        );
        events.sort();
        assert_eq!(
            events,
            ["async", "drop body local", "sync", "with: runs, no output"],
            "{order:?}"
        );
    }
}

#[test]
fn a_panicking_thunk_does_not_stop_the_others_and_the_first_panic_resumes() {
    let log = DropLog::new();
    let l = log.clone();
    let err = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let l1 = l.clone();
            d.defer(move || l1.push("oldest"));
            d.defer(|| panic!("second panic"));
            let l2 = l.clone();
            d.defer_async(async move {
                l2.push("async before panic");
                yield_now().await;
                panic!("async panic")
            });
            d.defer(|| panic!("first panic"));
            let l3 = l.clone();
            d.defer(move || l3.push("newest"));
        }))
    }))
    .unwrap_err();
    assert_eq!(panic_message(err), "first panic");
    assert_eq!(log.events(), ["newest", "async before panic", "oldest"]);
}

#[test]
fn body_panic_wins_over_thunk_panics() {
    let err = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async |d| {
            d.defer(|| panic!("thunk"));
            panic!("body");
        }))
    }))
    .unwrap_err();
    assert_eq!(panic_message(err), "body");
}

#[test]
fn panicking_destructors_are_dropped_once_and_do_not_stop_cleanup() {
    let drops = DropCounter::new();
    let log = DropLog::new();
    let (l, value) = (log.clone(), drops.panicking());
    let err = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let l1 = l.clone();
            d.defer(move || l1.push("older thunk"));
            // The guarded value's destructor panics when its cleanup drops it.
            d.guard(value, drop);
            let l2 = l.clone();
            d.defer(move || l2.push("newer thunk"));
        }))
    }))
    .unwrap_err();
    assert_eq!(panic_message(err), "PanicOnDrop dropped");
    assert_eq!(drops.get(), 1);
    assert_eq!(log.events(), ["newer thunk", "older thunk"]);
}

#[test]
fn a_body_whose_destructor_panics_still_runs_cleanup() {
    let drops = DropCounter::new();
    let log = DropLog::new();
    let (l, value) = (log.clone(), drops.panicking());
    let err = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let _held_by_body = value; // dropped when the body is
            d.defer(move || l.push("thunk"));
        }))
    }))
    .unwrap_err();
    assert_eq!(panic_message(err), "PanicOnDrop dropped");
    assert_eq!(drops.get(), 1);
    assert_eq!(log.events(), ["thunk"]);
}

#[test]
fn a_panicking_async_guard_cleanup_drops_nothing_twice() {
    let drops = DropCounter::new();
    let tracked = drops.tracked();
    let err = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            d.guard_async(tracked, |t| {
                drop(t);
                panic!("cleanup constructor");
                #[allow(unreachable_code)]
                async {}
            });
        }))
    }))
    .unwrap_err();
    assert_eq!(panic_message(err), "cleanup constructor");
    assert_eq!(drops.get(), 1);
}

#[test]
fn after_a_resumed_panic_the_scope_is_terminated() {
    use futures::future::FusedFuture;
    let mut s = pin!(scope(async |_| -> () { panic!("boom") }));
    let counter = WakeCounter::new();
    assert!(catch_unwind(AssertUnwindSafe(|| poll_once(s.as_mut(), &counter))).is_err());
    assert!(s.is_terminated());
    let err = catch_unwind(AssertUnwindSafe(|| poll_once(s.as_mut(), &counter))).unwrap_err();
    assert_eq!(panic_message(err), "`DeferScope` polled after completion");
}

#[test]
fn cancellation_with_a_panicking_sync_thunk_runs_the_rest_then_panics() {
    let log = DropLog::new();
    let l = log.clone();
    let mut s = Box::pin(scope(async move |d| {
        let l1 = l.clone();
        d.defer(move || l1.push("older"));
        d.defer(|| panic!("thunk during cancel"));
        let l2 = l.clone();
        d.defer(move || l2.push("newer"));
        std::future::pending::<()>().await
    }));
    assert!(poll_once(s.as_mut(), &WakeCounter::new()).is_pending());
    let err = catch_unwind(AssertUnwindSafe(move || drop(s))).unwrap_err();
    assert_eq!(panic_message(err), "thunk during cancel");
    assert_eq!(log.events(), ["newer", "older"]);
}

#[test]
fn a_panic_in_the_bodys_synchronous_prefix_still_runs_the_thunks() {
    // A closure returning a future satisfies `AsyncFnOnce`; its synchronous
    // part runs when the scope calls it, and must be covered too.
    let log = DropLog::new();
    let l = log.clone();
    let err = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(move |d: &deferral::Defer<()>| {
            d.defer(move || l.push("thunk"));
            if true {
                panic!("sync prefix");
            }
            async {}
        }))
    }))
    .unwrap_err();
    assert_eq!(panic_message(err), "sync prefix");
    assert_eq!(log.events(), ["thunk"]);
}

#[test]
fn the_ambient_scope_is_set_during_the_bodys_synchronous_prefix() {
    let registered = block_on(scope(|_: &deferral::Defer<bool>| {
        let ok = deferral::scope::try_defer(|| ()).is_ok();
        async move { ok }
    }));
    assert!(registered);
}
