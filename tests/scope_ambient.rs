//! The ambient API (`std`): `deferral::defer` registers on the innermost
//! scope whose body is being polled on this thread; `Err(NoScope)` outside.
#![cfg(feature = "std")]

mod support;

use support::{DropLog, block_on, yield_now};

#[test]
fn outside_any_scope_the_thunk_comes_back() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    static RAN: AtomicBool = AtomicBool::new(false);
    let err = deferral::scope::try_defer(|| RAN.store(true, SeqCst)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`deferral::defer` called outside any scope"
    );
    assert!(!RAN.load(SeqCst));
    (err.into_inner())();
    assert!(
        RAN.load(SeqCst),
        "nothing is lost: the caller got the thunk back"
    );
    let err = deferral::scope::try_defer_async(async {}).unwrap_err();
    block_on(err.into_inner());
}

#[test]
fn inside_a_scope_across_await_points_and_nested_the_innermost_wins() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(deferral::scope(async move |_| {
        let l1 = l.clone();
        deferral::scope::try_defer(move || l1.push("outer 1")).unwrap();
        yield_now().await; // re-entered on the next poll
        let l2 = l.clone();
        deferral::scope(async move |_: &deferral::Defer<()>| {
            let l3 = l2.clone();
            deferral::scope::try_defer(move || l3.push("inner")).unwrap();
            yield_now().await;
            let l4 = l2.clone();
            deferral::scope::try_defer_async(async move {
                yield_now().await;
                l4.push("inner async");
            })
            .unwrap();
        })
        .await;
        let l5 = l.clone();
        deferral::scope::try_defer(move || l5.push("outer 2")).unwrap();
    }));
    assert_eq!(log.events(), ["inner async", "inner", "outer 2", "outer 1"]);
    assert!(
        deferral::scope::try_defer(|| ()).is_err(),
        "the scope is gone once it finished"
    );
}

#[test]
fn a_thunk_running_during_cleanup_registers_on_the_enclosing_scope() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(deferral::scope(async move |_| {
        let l1 = l.clone();
        deferral::scope(async move |d: &deferral::Defer<()>| {
            d.defer(move || {
                let l2 = l1.clone();
                // Not in the inner body any more: goes to the outer scope.
                deferral::scope::try_defer(move || l2.push("registered during cleanup")).unwrap();
                l1.push("inner cleanup");
            });
        })
        .await;
        l.push("outer body end");
    }));
    assert_eq!(
        log.events(),
        [
            "inner cleanup",
            "outer body end",
            "registered during cleanup"
        ]
    );
}

#[test]
fn another_thread_is_outside_the_scope() {
    block_on(deferral::scope(async |_| {
        let from_thread = std::thread::spawn(|| deferral::scope::try_defer(|| ()).is_err())
            .join()
            .unwrap();
        assert!(from_thread);
    }));
}
