//! More ports of the exit-stack features `deferral` imitates (Go
//! `defer`/`recover`, Python `contextlib.ExitStack`/`AsyncExitStack`, TC39
//! `DisposableStack`/`AsyncDisposableStack`, bluss/scopeguard), from an
//! audit for behaviours `exit_ports.rs` did not cover. Each test cites its
//! source and asserts the upstream expectation, translated as
//! `exit_ports.rs` does (an exception or a Go panic ≈ a Rust panic;
//! `__exit__` returning True ≈ `Exit::recover`) — except where `deferral`
//! differs on purpose, which the test's name says (`..._differs`) and its
//! comment explains:
//!
//! - **The first panic stays** (the spec: "the first panic is resumed
//!   after all ran"): a panic raised by a cleanup while another is in
//!   flight is dropped, so `recover` and the panic that escapes are the
//!   first one; Go, Python and JS keep the latest and chain the others
//!   (JS's `SuppressedError`). Errors that must all survive go in the
//!   output (`Errors<E>`), not in panics.
//! - **A cleanup is not inside its scope's body**: one that registers
//!   ambiently (`deferral::defer`) registers on an enclosing scope, not on
//!   the scope that is cleaning up (Python's `ExitStack` runs it itself).
#![cfg(feature = "std")]

mod support;

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use deferral::{DeferStack, Exit, Guard, Outcome, When, scope, scope_local};
use support::order::{ORDERS, Order};
use support::{DropLog, block_on, yield_now};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

fn lines(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic>".into())
}

// ===========================================================================
// Go
// ===========================================================================

// The Go Blog, "Defer, Panic, and Recover", rule 1: "A deferred function's
// arguments are evaluated when the defer statement is evaluated."
//
//     func a() {
//         i := 0
//         defer fmt.Println(i)
//         i++
//         return
//     }                       // prints 0
#[test]
fn go_blog_a_arguments_are_evaluated_when_deferred() {
    let printed = RefCell::new(Vec::new());
    block_on(scope_local(async |d| {
        let mut i = 0;
        let arg = i; // evaluated now
        let printed = &printed;
        d.defer(move || printed.borrow_mut().push(arg));
        i += 1;
        assert_eq!(i, 1);
    }));
    assert_eq!(*printed.borrow(), [0]);
}

// The Go Programming Language Specification, "Handling panics": "The
// return value of recover is nil when the goroutine is not panicking ...
// [it] will return nil and have no other effect."
#[test]
fn go_spec_recover_when_not_panicking_returns_nil_and_has_no_effect() {
    let out = block_on(scope(async |d| {
        d.defer_with(|exit: &mut Exit<i32>| {
            assert!(exit.recover(99).is_none(), "nothing to recover");
            assert!(exit.is_returned());
        });
        1
    }));
    assert_eq!(out, 1, "recover had no effect on the result");
}

// Effective Go, "Recover" (https://go.dev/doc/effective_go#recover): a
// deferred function recovers, sets the named results, and re-panics if
// the panic is not its own:
//
//     func Compile(str string) (regexp *Regexp, err error) {
//         regexp = new(Regexp)
//         defer func() {
//             if e := recover(); e != nil {
//                 regexp = nil    // Clear return value.
//                 err = e.(Error) // Will re-panic if not a parse error.
//             }
//         }()
//         return regexp.doParse(str), nil
//     }
//
// "If it does not [have the local type Error], the type assertion will
// fail, causing a run-time error that continues the stack unwinding as
// though nothing had interrupted it."
#[derive(Debug, PartialEq, Clone)]
struct ParseError(&'static str);

fn compile(input: &'static str) -> Result<&'static str, ParseError> {
    block_on(scope(async move |d| {
        d.defer_with(|exit: &mut Exit<Result<&'static str, ParseError>>| {
            if let Some(e) = exit.recover(Err(ParseError("placeholder"))) {
                match e.downcast::<ParseError>() {
                    Ok(e) => *exit.output_mut().unwrap() = Err(*e),
                    Err(other) => resume_unwind(other), // re-panic
                }
            }
        });
        match input {
            "(" => std::panic::panic_any(ParseError("missing )")),
            "bug" => panic!("index out of range"),
            _ => Ok(input),
        }
    }))
}

#[test]
fn effective_go_recover_sets_the_error_result_or_re_panics() {
    assert_eq!(compile("a+"), Ok("a+"));
    assert_eq!(compile("("), Err(ParseError("missing )")));
    let p = catch_unwind(|| compile("bug")).unwrap_err();
    assert_eq!(message(&*p), "index out of range", "unwinding continues");
}

// Go: a deferred function that recovers and panics anew; an outer deferred
// function recovers the *new* panic (runtime semantics of the spec's
// "Handling panics"; `recover` returns "the value passed to panic").
//
//     func f() {
//         defer func() { fmt.Println(recover()) }()         // "re: first"
//         defer func() { panic("re: " + recover().(string)) }()
//         panic("first")
//     }
#[test]
fn go_recover_then_panic_again_outer_defer_recovers_the_new_panic() {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    block_on(scope(async move |d| {
        d.defer_with(move |exit: &mut Exit<()>| {
            *s.lock().unwrap() = exit.recover(()).map(|p| message(&*p));
        });
        d.defer_with(|exit: &mut Exit<()>| {
            let p = exit.recover(()).unwrap();
            panic!("re: {}", message(&*p));
        });
        panic!("first");
    }));
    assert_eq!(seen.lock().unwrap().as_deref(), Some("re: first"));
}

// The same Go re-panic, with the recovering cleanup async (an async
// `__aexit__`-shaped cleanup: async work, then a closure over the exit).
#[test]
fn go_recover_then_panic_again_from_async_cleanup() {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    block_on(scope(async move |d| {
        d.defer_with(move |exit: &mut Exit<()>| {
            *s.lock().unwrap() = exit.recover(()).map(|p| message(&*p));
        });
        d.defer_async(async {
            yield_now().await;
            |exit: &mut Exit<()>| {
                let p = exit.recover(()).unwrap();
                panic!("re: {}", message(&*p));
            }
        });
        yield_now().await;
        panic!("first");
    }));
    assert_eq!(seen.lock().unwrap().as_deref(), Some("re: first"));
}

// Go: a panic in a deferred function while already panicking *replaces*
// the first for `recover` (the runtime prints "panic: first [recovered]"
// chains; `recover()` returns the newest value). Go spec "Handling
// panics": recover returns "the value passed to the call of panic" that
// is current.
//
//     func f() (r any) {
//         defer func() { r = recover() }()      // gets "second"
//         defer func() { panic("second") }()
//         panic("first")
//     }
//
// deferral differs: the first panic stays, so `recover` gets "first" (the
// later panic is dropped).
#[test]
fn go_panic_in_deferred_call_replaces_the_first_for_recover_differs() {
    let out = block_on(scope(async |d| {
        d.defer_with(|exit: &mut Exit<String>| {
            let p = exit.recover(String::new()).unwrap();
            *exit.output_mut().unwrap() = message(&*p);
        });
        d.defer(|| panic!("second"));
        panic!("first");
    }));
    assert_eq!(out, "first");
}

// ===========================================================================
// Python contextlib (CPython Lib/test/test_contextlib.py, TestBaseExitStack)
// ===========================================================================

// test_push: exit callbacks registered after `_suppress_exc` run first and
// see the exception; `_suppress_exc` returns True; those registered
// before it see none.
//
//     with self.exit_stack() as stack:
//         stack.push(_expect_ok)
//         stack.push(ExitCM(_expect_ok))
//         stack.push(_suppress_exc)
//         stack.push(ExitCM(_expect_exc))
//         stack.push(_expect_exc)
//         stack.push(_expect_exc)
//         1/0
#[test]
fn python_test_push_callbacks_before_suppression_see_ok() {
    let log = Log::default();
    let l = log.clone();
    block_on(scope(async move |d| {
        for name in ["expect_ok 1", "expect_ok cm"] {
            let l = l.clone();
            d.defer_with(move |exit: &mut Exit<()>| {
                assert!(!exit.is_panicked(), "{name}");
                assert!(exit.panic_payload().is_none(), "{name}");
                push(&l, name);
            });
        }
        let l1 = l.clone();
        d.defer_with(move |exit: &mut Exit<()>| {
            assert!(exit.recover(()).is_some());
            push(&l1, "suppress");
        });
        for name in ["expect_exc cm", "expect_exc 1", "expect_exc 2"] {
            let l = l.clone();
            d.defer_with(move |exit: &mut Exit<()>| {
                assert!(exit.is_panicked(), "{name}");
                assert_eq!(message(exit.panic_payload().unwrap()), "division by zero");
                push(&l, name);
            });
        }
        panic!("division by zero");
    }));
    assert_eq!(
        lines(&log),
        [
            "expect_exc 2",
            "expect_exc 1",
            "expect_exc cm",
            "suppress",
            "expect_ok cm",
            "expect_ok 1"
        ]
    );
}

// test_enter_context:
//
//     with self.exit_stack() as stack:
//         @stack.callback  # Registered first => cleaned up last
//         def _exit(): result.append(4)
//         stack.enter_context(cm)   # __enter__ appends 1, __exit__ 3
//         result.append(2)
//     self.assertEqual(result, [1, 2, 3, 4])
#[test]
fn python_test_enter_context_order() {
    let log = Log::default();
    let l = log.clone();
    block_on(scope(async move |d| {
        let l4 = l.clone();
        d.defer(move || push(&l4, "4"));
        push(&l, "1"); // __enter__
        let l3 = l.clone();
        let _cm = d.guard("cm", move |_| push(&l3, "3"));
        push(&l, "2");
    }));
    assert_eq!(lines(&log), ["1", "2", "3", "4"]);
}

// test_close: `stack.close()` inside the `with` runs the callbacks now;
// the `with` exit then runs nothing again.
//
//     with self.exit_stack() as stack:
//         @stack.callback
//         def _exit(): result.append(1)
//         stack.close()
//         result.append(2)
//     self.assertEqual(result, [1, 2])
//
// Our `close()`: move everything into a `DeferStack` and dispose of it.
#[test]
fn python_test_close_runs_callbacks_now_and_not_again() {
    let log = Log::default();
    let l = log.clone();
    block_on(scope(async move |d| {
        let l1 = l.clone();
        d.defer(move || push(&l1, "1"));
        let mut now: DeferStack = DeferStack::new();
        assert_eq!(d.move_all(&mut now), 1);
        now.dispose().await;
        push(&l, "2");
        assert!(d.is_empty());
    }));
    assert_eq!(lines(&log), ["1", "2"]);
}

// test_exit_exception_non_suppressing (bpo-19092):
//
//     with self.exit_stack() as stack:
//         stack.callback(lambda: None)
//         stack.callback(raise_exc, IndexError)
//     -> IndexError
//
//     with self.exit_stack() as stack:
//         stack.callback(raise_exc, KeyError)
//         stack.push(suppress_exc)
//         stack.callback(raise_exc, IndexError)
//     -> KeyError
#[test]
fn python_test_exit_exception_non_suppressing() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            d.defer(move || {
                r.fetch_add(1, SeqCst);
            });
            d.defer(|| panic!("IndexError"));
        }))
    }))
    .unwrap_err();
    assert_eq!(message(&*p), "IndexError");
    assert_eq!(ran.load(SeqCst), 1);

    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async |d| {
            d.defer(|| panic!("KeyError"));
            d.defer_with(|exit: &mut Exit<()>| {
                assert!(exit.recover(()).is_some());
            });
            d.defer(|| panic!("IndexError"));
        }))
    }))
    .unwrap_err();
    assert_eq!(message(&*p), "KeyError");
}

// test_exit_exception_chaining_suppress: the suppressing callback runs last
// and swallows the exceptions raised by the callbacks before it.
//
//     with self.exit_stack() as stack:
//         stack.push(lambda *exc: True)
//         stack.push(lambda *exc: 1/0)
//         stack.push(lambda *exc: {}[1])
//     # no exception
#[test]
fn python_test_exit_exception_chaining_suppress() {
    let out = block_on(support::order::run(Order::Lifo, async |d| {
        d.defer_with(|exit: &mut Exit<u8>| {
            assert!(exit.recover(7).is_some());
        });
        d.defer(|| panic!("ZeroDivisionError"));
        d.defer(|| panic!("KeyError"));
        1
    }));
    assert_eq!(out, 7);
}

// test_exit_exception_chaining: each exception raised by a callback
// replaces the one in flight (it becomes its __context__); the suppressing
// callback sees the *latest* (ValueError, context ZeroDivisionError); the
// exception that escapes is the one raised last (IndexError).
//
//     with self.exit_stack() as stack:
//         stack.callback(raise_exc, IndexError)
//         stack.callback(raise_exc, KeyError)
//         stack.callback(raise_exc, AttributeError)
//         stack.push(suppress_exc)
//         stack.callback(raise_exc, ValueError)
//         1 / 0
//     except IndexError as exc: ...   # context KeyError, then AttributeError
//     inner_exc = saved_details[1]    # ValueError
//
// deferral differs: the first panic stays. ValueError is dropped (the body's
// panic is in flight), the suppressing cleanup recovers the body's panic,
// then AttributeError is the first panic again and escapes (KeyError and
// IndexError are dropped).
#[test]
fn python_test_exit_exception_chaining_differs() {
    let saved = Arc::new(Mutex::new(None));
    let s = saved.clone();
    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            d.defer(|| panic!("IndexError"));
            d.defer(|| panic!("KeyError"));
            d.defer(|| panic!("AttributeError"));
            d.defer_with(move |exit: &mut Exit<()>| {
                *s.lock().unwrap() = exit.recover(()).map(|p| message(&*p));
            });
            d.defer(|| panic!("ValueError"));
            panic!("ZeroDivisionError");
        }))
    }))
    .unwrap_err();
    assert_eq!(
        saved.lock().unwrap().as_deref(),
        Some("ZeroDivisionError"),
        "recover sees the first panic"
    );
    assert_eq!(
        message(&*p),
        "AttributeError",
        "the first after the recovery escapes"
    );
}

// test_excessive_nesting: "The original implementation would die with
// RecursionError here":
//
//     with self.exit_stack() as stack:
//         for i in range(10000):
//             stack.callback(int)
#[test]
fn python_test_excessive_nesting_10000_callbacks() {
    // Under Miri 600 (still several doublings of the spill chunks; the
    // full size is minutes there).
    const N: usize = if cfg!(miri) { 600 } else { 10_000 };
    for order in ORDERS {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        block_on(support::order::run(order, async move |d| {
            for _ in 0..N {
                let r = r.clone();
                d.defer(move || {
                    r.fetch_add(1, SeqCst);
                });
            }
        }));
        assert_eq!(ran.load(SeqCst), N, "{order:?}");
    }
    // Async ones too, and a stack disposed and a stack dropped.
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    block_on(scope(async move |d| {
        for _ in 0..N {
            let r = r.clone();
            d.defer_async(async move {
                r.fetch_add(1, SeqCst);
            });
        }
    }));
    assert_eq!(ran.load(SeqCst), N);
    let ran = Arc::new(AtomicUsize::new(0));
    let mut stack: DeferStack = DeferStack::new();
    for _ in 0..N {
        let r = ran.clone();
        stack.defer(move || {
            r.fetch_add(1, SeqCst);
        });
    }
    let mut dropped = stack.take();
    for _ in 0..N {
        let r = ran.clone();
        stack.defer_async(async move {
            r.fetch_add(1, SeqCst);
        });
    }
    block_on(stack.dispose());
    assert_eq!(ran.load(SeqCst), N);
    drop(std::mem::take(&mut dropped));
    assert_eq!(ran.load(SeqCst), 2 * N);
}

// contextlib.ExitStack.__exit__ pops callbacks `while self._exit_callbacks`
// (CPython Lib/contextlib.py), so a callback that registers another one
// while the stack unwinds has it run by the same stack, before `with`
// exits. Our nearest form: an *async* cleanup registering ambiently
// (the sync case is pinned in tests/scope_ambient.rs).
//
// deferral differs: the registration goes to the enclosing scope (it runs
// after "after inner with"), documented on `try_defer`; it is not lost.
#[test]
fn python_callback_registered_during_unwinding_differs() {
    let log = Log::default();
    let l = log.clone();
    block_on(scope(async move |_| {
        let l1 = l.clone();
        scope(async move |d: &deferral::Defer<()>| {
            let l2 = l1.clone();
            d.defer_async(async move {
                let l3 = l2.clone();
                let r = deferral::scope::try_defer(move || push(&l3, "registered during cleanup"));
                assert!(r.is_ok(), "some scope takes it");
                push(&l2, "inner cleanup");
            });
        })
        .await;
        push(&l, "after inner with");
    }));
    assert_eq!(
        lines(&log),
        [
            "inner cleanup",
            "after inner with",
            "registered during cleanup"
        ]
    );
}

// ===========================================================================
// Python contextlib async (CPython Lib/test/test_contextlib_async.py,
// TestAsyncExitStack)
// ===========================================================================

// test_async_push: the async version of test_push.
#[test]
fn python_test_async_push_callbacks_before_suppression_see_ok() {
    let log = Log::default();
    let l = log.clone();
    block_on(scope(async move |d| {
        for name in ["expect_ok 1", "expect_ok cm"] {
            let l = l.clone();
            d.defer_async_with(move |outcome: Outcome| async move {
                yield_now().await;
                assert_eq!(outcome, Outcome::Ok, "{name}");
                push(&l, name);
            });
        }
        let l1 = l.clone();
        d.defer_async(async move {
            yield_now().await;
            move |exit: &mut Exit<()>| {
                assert!(exit.recover(()).is_some());
                push(&l1, "suppress");
            }
        });
        for name in ["expect_exc cm", "expect_exc 1", "expect_exc 2"] {
            let l = l.clone();
            d.defer_async_with(move |outcome: Outcome| async move {
                yield_now().await;
                assert_eq!(outcome, Outcome::Panicked, "{name}");
                push(&l, name);
            });
        }
        yield_now().await;
        panic!("division by zero");
    }));
    assert_eq!(
        lines(&log),
        [
            "expect_exc 2",
            "expect_exc 1",
            "expect_exc cm",
            "suppress",
            "expect_ok cm",
            "expect_ok 1"
        ]
    );
}

// test_enter_async_context:
//
//     async with AsyncExitStack() as stack:
//         @stack.push_async_callback  # Registered first => cleaned up last
//         async def _exit(): result.append(4)
//         await stack.enter_async_context(cm)  # __aenter__ 1, __aexit__ 3
//         result.append(2)
//     self.assertEqual(result, [1, 2, 3, 4])
#[test]
fn python_test_enter_async_context_order() {
    let log = Log::default();
    let l = log.clone();
    block_on(scope(async move |d| {
        let l4 = l.clone();
        d.defer_async(async move {
            yield_now().await;
            push(&l4, "4")
        });
        yield_now().await;
        push(&l, "1");
        let l3 = l.clone();
        let _cm = d.guard_async("cm", move |_| async move {
            yield_now().await;
            push(&l3, "3")
        });
        push(&l, "2");
    }));
    assert_eq!(lines(&log), ["1", "2", "3", "4"]);
}

// test_async_exit_exception_chaining: as the sync test, with
// push_async_callback / push_async_exit.
// deferral differs as in the sync test: the first panic stays.
#[test]
fn python_test_async_exit_exception_chaining_differs() {
    let saved = Arc::new(Mutex::new(None));
    let s = saved.clone();
    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            for name in ["IndexError", "KeyError", "AttributeError"] {
                d.defer_async(async move {
                    yield_now().await;
                    panic!("{name}")
                });
            }
            d.defer_async(async move {
                yield_now().await;
                move |exit: &mut Exit<()>| {
                    *s.lock().unwrap() = exit.recover(()).map(|p| message(&*p));
                }
            });
            d.defer_async(async {
                yield_now().await;
                panic!("ValueError")
            });
            panic!("ZeroDivisionError");
        }))
    }))
    .unwrap_err();
    assert_eq!(saved.lock().unwrap().as_deref(), Some("ZeroDivisionError"));
    assert_eq!(message(&*p), "AttributeError");
}

// ===========================================================================
// TC39 explicit resource management (test262)
// ===========================================================================

// test262 built-ins/AsyncDisposableStack/prototype/disposeAsync/
// disposes-resources-in-reverse-order.js, with the spec's DisposeResources
// step 1.a "Perform ? Await(result)" per resource: each async disposal
// finishes before the next (older) one starts.
#[test]
fn js_async_disposable_stack_awaits_each_disposal_in_turn_lifo() {
    let log = Log::default();
    let mut stack: DeferStack = DeferStack::new();
    for name in ["a", "b", "c"] {
        let l = log.clone();
        stack.defer_async(async move {
            push(&l, format!("start {name}"));
            yield_now().await;
            yield_now().await;
            push(&l, format!("end {name}"));
        });
    }
    block_on(stack.dispose());
    assert_eq!(
        lines(&log),
        ["start c", "end c", "start b", "end b", "start a", "end a"]
    );
}

// test262 built-ins/AsyncDisposableStack/prototype/disposeAsync/
// rejects-with-suppressederror-if-multiple-errors-during-disposal.js:
//
//     stack.defer(function () { throw error1; });
//     stack.defer(function () { throw error2; });
//     stack.defer(function () { throw error3; });
//     await stack.disposeAsync();
//     // e.error === error1 (the last thrown), e.suppressed.error === error2,
//     // e.suppressed.suppressed === error3
//
// deferral differs: every disposer runs, and the first panic (error3, the
// last registered runs first) resumes; the others are dropped.
#[test]
fn js_async_disposable_stack_the_last_thrown_error_is_outermost_differs() {
    let mut stack: DeferStack = DeferStack::new();
    stack.defer(|| panic!("error1"));
    stack.defer(|| panic!("error2"));
    stack.defer(|| panic!("error3"));
    let p = catch_unwind(AssertUnwindSafe(|| block_on(stack.dispose()))).unwrap_err();
    assert_eq!(message(&*p), "error3");
}

// test262 .../disposeAsync/does-not-reinvoke-disposers-if-already-disposed.js:
// `use`, `adopt` and `defer` disposers each run exactly once. Ours: a
// guarded value moved in (`adopt`), a future (`use` of an async
// disposable) and a closure (`defer`).
#[test]
fn js_async_disposable_stack_use_adopt_defer_each_run_once() {
    let counts = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let mut stack: DeferStack = DeferStack::new();
    let c = counts.clone();
    stack.defer_async(async move {
        c[0].fetch_add(1, SeqCst);
    });
    let c = counts.clone();
    block_on(scope(async |d| {
        let g = d.guard((), move |()| {
            c[1].fetch_add(1, SeqCst);
        });
        Guard::move_to(g, &mut stack).unwrap();
    }));
    let c = counts.clone();
    stack.defer(move || {
        c[2].fetch_add(1, SeqCst);
    });
    block_on(stack.dispose());
    let got: Vec<usize> = counts.iter().map(|c| c.load(SeqCst)).collect();
    assert_eq!(got, [1, 1, 1]);
}

// ===========================================================================
// bluss/scopeguard src/tests.rs
// ===========================================================================

// test_defer: `defer!(drops.set(1000)); assert_eq!(drops.get(), 0);` —
// nothing runs before the scope ends.
#[test]
fn scopeguard_test_defer_does_not_run_early() {
    let drops = Cell::new(0);
    block_on(scope_local(async |d| {
        d.defer(|| drops.set(1000));
        assert_eq!(drops.get(), 0);
        yield_now().await;
        assert_eq!(drops.get(), 0);
    }));
    assert_eq!(drops.get(), 1000);
}

// test_only_dropped_by_closure_when_run: the guarded value is dropped by
// the closure that consumes it, and the closure's captures once.
//
//     let value = guard((), |()| value_drops.set(1 + value_drops.get()));
//     let guard = guard(value, |_| closure_drops.set(1 + closure_drops.get()));
//     drop(guard);  // value_drops == 1, closure_drops == 1
#[test]
fn scopeguard_test_only_dropped_by_closure_when_run() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(scope(async move |d| {
        let value = l.on_drop("value");
        let (l1, captured) = (l.clone(), l.on_drop("captured"));
        let _g = d.guard(value, move |v| {
            l1.push("closure runs");
            drop(v);
            drop(captured);
        });
        assert!(l.events().is_empty());
    }));
    assert_eq!(
        log.events(),
        ["closure runs", "drop value", "drop captured"]
    );
}

// test_dropped_once_when_not_run: a guard_on_unwind that does not run
// drops its value once and its closure (with its captures) once.
//
//     let guard = guard_on_unwind(value, |value| { drop(value); drop(captured); closure_drops += 1 });
//     drop(guard);  // value_drops == 1, captured_drops == 1, closure_drops == 0
#[test]
fn scopeguard_test_dropped_once_when_not_run() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(scope(async move |d| {
        let value = l.on_drop("value");
        let (l1, captured) = (l.clone(), l.on_drop("captured"));
        let _g = d
            .guard(value, move |v| {
                drop(v);
                drop(captured);
                l1.push("closure runs");
            })
            .when(When::Panicked);
    }));
    let mut events = log.events();
    events.sort();
    assert_eq!(events, ["drop captured", "drop value"]);
}

// test_into_inner: `ScopeGuard::into_inner` hands the value back and the
// closure never runs (the value — itself a guard — is not dropped either).
//
//     let value = guard(42, |_| dropped.set(true));
//     let guard = guard(value, |_| dropped.set(true));
//     let inner = ScopeGuard::into_inner(guard);
//     assert_eq!(dropped.get(), false);
//     assert_eq!(*inner, 42);
#[test]
fn scopeguard_test_into_inner() {
    let log = DropLog::new();
    let l = log.clone();
    let kept = block_on(scope(async move |d| {
        let inner = l.on_drop("inner");
        let l1 = l.clone();
        let g = d.guard((42, inner), move |_| l1.push("closure runs"));
        let (n, inner) = Guard::defuse(g);
        assert!(l.events().is_empty(), "{:?}", l.events());
        assert_eq!(n, 42);
        inner
    }));
    assert!(log.events().is_empty(), "{:?}", log.events());
    drop(kept);
    assert_eq!(log.events(), ["drop inner"]);
}

// scopeguard's `OnSuccess` strategy ("Run on scope exit through returning
// from the scope, i.e. not when unwinding") is `When::NotPanicked`: it runs
// for *any* return, an `Err` value included, and for a drop that does not
// unwind (a cancellation); `When::Ok`, a commit, skips both:
//
//     fn f() -> Result<(), E> {
//         let _g = guard_on_success((), |_| ran.set(true));
//         Err(e)
//     }   // ran == true
#[test]
fn scopeguard_on_success_runs_when_returning_an_err_value() {
    let (ran, committed) = (Cell::new(false), Cell::new(false));
    let out: Result<(), &str> = block_on(scope_local(async |d| {
        let _g = d.guard((), |()| ran.set(true)).when(When::NotPanicked);
        let _c = d.guard((), |()| committed.set(true)).when(When::Ok);
        Err("a returned error is not an unwind")
    }));
    assert!(out.is_err());
    assert!(ran.get(), "OnSuccess runs on every non-unwinding exit");
    assert!(!committed.get(), "When::Ok does not commit an Err");
}

// scopeguard's `OnSuccess` on a drop that does not unwind (our cancelled
// scope) runs; `OnUnwind` (`When::Panicked`) does not, and vice versa when
// the drop unwinds.
#[test]
fn scopeguard_on_success_runs_on_a_drop_that_does_not_unwind() {
    let (success, unwind) = (Cell::new(0), Cell::new(0));
    let mut scope = Box::pin(scope_local(async |d| {
        let _s = d
            .guard((), |()| success.set(success.get() + 1))
            .when(When::NotPanicked);
        let _u = d
            .guard((), |()| unwind.set(unwind.get() + 1))
            .when(When::Panicked);
        std::future::pending::<()>().await;
    }));
    let waker = std::task::Waker::noop();
    assert!(
        scope
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
            .is_pending()
    );
    drop(scope);
    assert_eq!((success.get(), unwind.get()), (1, 0));
}
