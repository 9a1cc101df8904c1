//! The registrations without a `Result` (issue "A newcomer's first hour"):
//! with `alloc` every `Defer` registration and `DeferStack::defer` store
//! (spilling past the inline slab), in the same order and with the same
//! effects as their `try_` forms; the ambient `defer` panics outside a
//! scope (the thunk is never dropped silently) and `scope_fn` runs a
//! zero-argument `async fn`.
#![cfg(feature = "alloc")]

mod support;

use deferral::scope::ScopeBuilder;
use deferral::{DeferStack, Exit, Outcome, When};
use support::{DropLog, block_on, yield_now};

#[test]
fn every_registration_runs_its_cleanup_in_order() {
    let log = DropLog::new();
    let l = log.clone();
    let out = block_on(deferral::scope(async move |d| {
        let p = |s: &'static str| {
            let l = l.clone();
            move || l.push(s)
        };
        d.defer(p("defer"));
        let q = p("with");
        d.defer_with(move |_: &mut Exit<Result<u8, String>>| q());
        // An `Err` is not success (issue "A surface one can hold in one's
        // head"): `When::Ok` does not run, `When::Err` does.
        d.defer(p("when ok: never")).when(When::Ok);
        d.defer(p("when panicked: never")).when(When::Panicked);
        let q = p("when err");
        d.defer_with(move |exit: &mut Exit<Result<u8, String>>| {
            if let Some(e) = exit.error_mut() {
                e.push('!');
                q()
            }
        });
        let q = p("async");
        d.defer_async(async move { q() });
        let q = p("async edits the output");
        d.defer_async(async move {
            move |exit: &mut Exit<Result<u8, String>>| {
                q();
                assert!(exit.output().is_some());
            }
        });
        let q = p("async_with");
        d.defer_async_with(move |outcome: Outcome| async move {
            assert_eq!(outcome, Outcome::Err);
            q()
        });
        d.defer_async(async move { unreachable!() }).when(When::Ok);
        let q = p("async when err");
        d.defer_async(async move { q() }).when(When::Err);
        let q = p("guard");
        let g = d.guard(5u8, move |v| {
            assert_eq!(v, 6);
            q()
        });
        let q = p("guard_with");
        let _gw = d.guard_with(1u8, move |v, exit: &mut Exit<Result<u8, String>>| {
            assert_eq!((v, exit.outcome()), (1, Outcome::Err));
            q()
        });
        let q = p("guard_async");
        let h = d.guard_async(7u8, move |_| async move { q() });
        let q = p("guard_async_with");
        let _gaw = d.guard_async_with(
            9u8,
            move |v, outcome| async move {
                assert_eq!((v, outcome), (9, Outcome::Err));
                q()
            },
            |_| unreachable!("the cleanup ran: no fallback"),
        );
        let mut g = g;
        *g += 1;
        yield_now().await;
        Err::<u8, _>(format!("failed {}", *h))
    }));
    assert_eq!(out, Err("failed 7!".to_string()));
    assert_eq!(
        log.events(),
        [
            "guard_async_with",
            "guard_async",
            "guard_with",
            "guard",
            "async when err",
            "async_with",
            "async edits the output",
            "async",
            "when err",
            "with",
            "defer",
        ]
    );
}

#[test]
fn past_the_inline_slab_they_spill_instead_of_failing() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(ScopeBuilder::new().capacity::<16>().run(async move |d| {
        for i in 0..100u32 {
            let l = l.clone();
            let big = [i; 16]; // 64 bytes: never fits 16 inline
            d.defer(move || {
                if big[0] == 0 {
                    l.push("first");
                }
            });
        }
        assert_eq!(d.len(), 100);
    }));
    assert_eq!(log.events(), ["first"]);
}

#[test]
fn defer_stack_infallible_forms() {
    let log = DropLog::new();
    let mut stack: DeferStack<deferral::scope::Sendable, 16> = DeferStack::new();
    for i in 0..10u64 {
        let l = log.clone();
        let pad = [i; 4];
        stack.defer(move || {
            if pad[0] == 9 {
                l.push("last registered, first run");
            }
        });
    }
    let l = log.clone();
    stack.defer_async(async move { l.push("async") });
    assert_eq!(stack.len(), 11);
    block_on(stack.dispose());
    assert_eq!(log.events(), ["async", "last registered, first run"]);
}

#[cfg(feature = "std")]
#[test]
fn the_ambient_defer_panics_outside_a_scope_and_drops_nothing_silently() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, SeqCst);
        }
    }
    let c = Counted;
    let panic = std::panic::catch_unwind(move || {
        deferral::defer(move || drop(c));
    })
    .unwrap_err();
    let message = panic.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("outside any scope"), "{message}");
    assert!(message.contains("try_defer"), "{message}");
    // Not run (there is no scope to run it), but dropped: with the panic.
    assert_eq!(DROPPED.load(SeqCst), 1);
}

#[cfg(feature = "std")]
#[test]
fn scope_fn_runs_the_seeds_zero_argument_async_fns() {
    use std::sync::Mutex;
    static LOG: Mutex<Vec<&str>> = Mutex::new(Vec::new());
    async fn defer_test() -> i32 {
        deferral::defer(|| LOG.lock().unwrap().push("defer 1"));
        LOG.lock().unwrap().push("not defer");
        1
    }
    async fn defer_test2() -> i32 {
        deferral::defer(|| LOG.lock().unwrap().push("defer 2"));
        yield_now().await;
        LOG.lock().unwrap().push("not defer 2");
        1
    }
    assert_eq!(block_on(deferral::scope::scope_fn(defer_test)), 1);
    assert_eq!(block_on(deferral::scope::scope_fn(defer_test2)), 1);
    assert_eq!(
        *LOG.lock().unwrap(),
        ["not defer", "defer 1", "not defer 2", "defer 2"]
    );
}

#[cfg(feature = "std")]
#[test]
fn ambient_infallible_forms_register_on_the_innermost_scope() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(deferral::scope::scope_fn(async move || {
        let a = l.clone();
        deferral::defer(move || a.push("defer"));
        let a = l.clone();
        deferral::defer_async(async move { a.push("defer_async") });
        // The token of an ambient registration cancels it (O(1)).
        let a = l.clone();
        let token = deferral::defer(move || a.push("cancelled"));
        assert!(token.cancel().is_ok());
    }));
    assert_eq!(log.events(), ["defer_async", "defer"]);
}
