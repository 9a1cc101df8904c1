//! A completeness pass over the upstream exit-stack test suites: every test
//! of CPython's `TestBaseExitStack` / `TestExitStack` / `TestAsyncExitStack`
//! (Lib/test/test_contextlib.py, test_contextlib_async.py, with `closing`,
//! `nullcontext` and `suppress`), of test262's
//! `built-ins/DisposableStack/**` and `built-ins/AsyncDisposableStack/**`,
//! and of bluss/scopeguard (`src/tests.rs`, the doc examples of `src/lib.rs`
//! and `src/scope_guard.rs`), classified as (a) covered — by the named test,
//! (b) not applicable — why, or (c) ported here. Translation as in
//! `exit_ports.rs` and `ports_scope.rs`: an exception ≈ a Rust panic,
//! `__exit__` returning True ≈ `Exit::recover`, `with` ≈ a scope, an
//! `ExitStack` ≈ a scope's registrations or a `DeferStack`; **the first panic
//! stays** where Python and JS keep the latest and chain the others (tests
//! that meet that rule are named `..._differs`).
//!
//! # CPython, Lib/test/test_contextlib.py `TestBaseExitStack` (run by both
//! `TestExitStack` and, through `SyncAsyncExitStack`, `TestAsyncExitStack`)
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | test_instance_docs | b | docstrings |
//! | test_no_resources | c | `python_test_no_resources` |
//! | test_callback | c | `python_test_callback_arguments_reach_each_callback` (the `TypeError`s for a missing callable and `__wrapped__` metadata: b, the compiler checks arity) |
//! | test_push | a | ports_scope `python_test_push_callbacks_before_suppression_see_ok` |
//! | test_enter_context | a | ports_scope `python_test_enter_context_order` |
//! | test_enter_context_errors | b | a guard is a value and a cleanup: an object lacking `__enter__`/`__exit__` does not compile |
//! | test_close | a | ports_scope `python_test_close_runs_callbacks_now_and_not_again` |
//! | test_pop_all | a | owned_cleanup `python_pop_all_keeps_files_open_until_close_is_called` |
//! | test_exit_raise | a | exit_ports `python_push_async_exit_that_does_not_suppress_lets_it_propagate`, scope_panic `body_panic_runs_sync_and_async_thunks_then_resumes` |
//! | test_exit_suppress | a | exit_ports `python_push_async_exit_suppresses_the_exception` |
//! | test_exit_exception_traceback | b / a | frames are CPython's; which exception escapes (the body's, first stays): scope_panic `body_panic_wins_over_thunk_panics` |
//! | test_exit_exception_chaining_reference | c | `python_test_exit_exception_chaining_reference_differs` (nested scopes) |
//! | test_exit_exception_chaining | a | ports_scope `python_test_exit_exception_chaining_differs` |
//! | test_exit_exception_explicit_none_context | b | `__context__` bookkeeping; a cleanup replacing the panic (recover, then panic anew) is ports_scope `go_recover_then_panic_again_outer_defer_recovers_the_new_panic` |
//! | test_exit_exception_non_suppressing | a | ports_scope `python_test_exit_exception_non_suppressing` |
//! | test_exit_exception_with_correct_context | c | `python_test_exit_exception_with_correct_context_differs` (guards) |
//! | test_exit_exception_with_existing_context | c | `python_test_exit_exception_with_existing_context_differs` |
//! | test_body_exception_suppress | a | exit_ports `python_push_async_exit_suppresses_the_exception` |
//! | test_exit_exception_chaining_suppress | a | ports_scope `python_test_exit_exception_chaining_suppress` |
//! | test_excessive_nesting | a | ports_scope `python_test_excessive_nesting_10000_callbacks` |
//! | test_instance_bypass | b | Python looks `__exit__` up on the type; Rust has no instance attributes |
//! | test_dont_reraise_RuntimeError | c | `python_test_dont_reraise_runtime_error` (sync and async) |
//!
//! # CPython, Lib/test/test_contextlib_async.py `TestAsyncExitStack` (its own tests)
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | test_async_callback | c | `python_test_async_callback_arguments_reach_each_async_callback`, and dropped mid-cleanup: `python_test_async_callback_scope_dropped_mid_cleanup` |
//! | test_async_push | a | ports_scope `python_test_async_push_callbacks_before_suppression_see_ok` |
//! | test_async_enter_context / test_enter_async_context | a | ports_scope `python_test_enter_async_context_order` |
//! | test_enter_async_context_errors | b | as test_enter_context_errors |
//! | test_async_exit_exception_chaining | a | ports_scope `python_test_async_exit_exception_chaining_differs` |
//! | test_async_exit_exception_explicit_none_context | b | as the sync one |
//! | test_instance_bypass_async | b | as test_instance_bypass |
//!
//! # CPython, `closing` / `nullcontext` / `suppress`
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | ClosingTestCase.test_instance_docs | b | docstrings |
//! | ClosingTestCase.test_closing | c | `python_closing_closes_on_exit` (sync guard, async guard) |
//! | ClosingTestCase.test_closing_error | c | `python_closing_error_closes_and_propagates` |
//! | NullcontextTestCase.test_nullcontext, TestAsyncNullcontext.test_async_nullcontext | b | a plain value is its own "null context": no API |
//! | TestSuppress.test_instance_docs, test_no_result_from_enter | b | docstrings; `suppress` yields nothing to bind |
//! | TestSuppress.test_no_exception, test_exact_exception, test_other_exception, test_no_args, test_multiple_exception_args | c | `python_suppress_exact_other_none_and_several_kinds` |
//! | TestSuppress.test_exception_hierarchy | b | panic payloads have no class hierarchy (a predicate over the payload is the counterpart, used above) |
//! | TestSuppress.test_cm_is_reentrant | c | `python_suppress_is_reentrant_nested` |
//! | TestSuppress.test_exception_groups | b | no exception groups: the first panic stays (`Errors<E>` collects errors, not panics) |
//! | (no upstream test) suppression in a scope dropped mid-cleanup | c | `python_suppress_in_a_scope_dropped_mid_cleanup` |
//!
//! # test262, built-ins/DisposableStack
//!
//! | upstream test(s) | class | where / why |
//! |---|---|---|
//! | is-a-constructor, constructor, prototype/constructor, prototype/Symbol.dispose, Symbol.toStringTag, prop-desc, proto, and every `length`, `name`, `not-a-constructor`, `prop-desc`, `this-not-object-throws`, `this-does-not-have-internal-disposablestate-throws`, `disposed/does-not-have-disposablestate-internal-slot` (≈ 45 files) | b | spec-internal: property descriptors, `this` checks, function metadata — a Rust method has none |
//! | adopt/adds-value-onDispose | a | ports_scope `js_async_disposable_stack_use_adopt_defer_each_run_once` |
//! | adopt/allows-any-value | b | the value is generic: any type, `()` included |
//! | adopt/puts-value-onDispose-on-top-of-stack | c | `js_adopt_use_adopt_dispose_in_reverse_order` |
//! | adopt/returns-value | a | the guard derefs to the value: scope_order `guards_give_the_body_mutable_access_and_cleanup_gets_the_final_value` |
//! | adopt/throws-if-onDispose-not-callable, defer/throws-if-onDispose-not-callable | b | a non-callable cleanup does not compile |
//! | defer/adds-onDispose, defer/puts-onDispose-on-top-of-stack | a | owned_cleanup `stack_dispose_runs_everything_lifo_sync_and_async` |
//! | defer/returns-undefined, dispose/returns-undefined | b | they return `()` |
//! | dispose/disposes-resources-in-reverse-order | a | owned_cleanup `stack_dispose_runs_everything_lifo_sync_and_async` |
//! | dispose/does-not-reinvoke-disposers-if-already-disposed, dispose/does-not-throw-if-already-disposed, dispose/sets-state-to-disposed | b | `dispose(self)` consumes the stack: a second dispose does not compile (once-only: ports_scope `js_async_disposable_stack_use_adopt_defer_each_run_once`) |
//! | dispose/throws-error-as-is-if-only-one-error-during-disposal | c | `js_dispose_throws_the_error_as_is_if_only_one` |
//! | dispose/throws-suppressederror-if-multiple-errors-during-disposal | a | ports_scope `js_async_disposable_stack_the_last_thrown_error_is_outermost_differs` (the same three sync `defer`s); kept errors: exit_ports `js_async_disposable_stack_two_failing_disposals_are_both_kept` |
//! | disposed/getter, returns-false-when-not-disposed, returns-true-when-disposed | b | no disposed state (consumed); `len`/`is_empty` instead: owned_cleanup `async_safe_defer_len_and_clear` |
//! | move/does-not-dispose-resources, move/returns-new-disposablestack-that-contains-moved-resources | a | owned_cleanup `js_plugin_host_moves_its_disposables_and_disposes_them_once` |
//! | move/returns-new-disposablestack-that-is-still-pending, move/sets-state-to-disposed, move/throws-if-disposed | c | `js_move_leaves_the_old_stack_usable_differs` |
//! | move/returns-new-disposablestack, move/still-returns-new-disposablestack-when-subclassed | b | `take` returns `Self`; no subclassing |
//! | use/adds-value, use/puts-value-on-top-of-stack | a | ports_scope `js_async_disposable_stack_use_adopt_defer_each_run_once`; the order: `js_adopt_use_adopt_dispose_in_reverse_order` |
//! | use/returns-value | a | as adopt/returns-value |
//! | use/allows-null-value, use/allows-undefined-value | b | no null resource (an `Option` is a value like any other) |
//! | use/Symbol.dispose-getter, use/gets-value-Symbol.dispose-property-once | b | no dynamic method lookup: the cleanup is fixed at registration |
//! | use/throws-if-disposed, use/throws-if-value-* (null, undefined, not callable, missing, not object) | b | consumed stack; type-checked cleanup |
//!
//! # test262, built-ins/AsyncDisposableStack (the 51 files the index holds, and
//! the further names seen cited: disposeAsync/explicit-await-for-null,
//! -undefined, Symbol.asyncDispose-method-not-async, defer/throws-if-onDisposeAsync-not-callable)
//!
//! | upstream test(s) | class | where / why |
//! |---|---|---|
//! | is-a-constructor, prototype/constructor, prototype/Symbol.asyncDispose, and every `length`, `name`, `not-a-constructor`, `prop-desc`, `this-*`, `disposed/getter`, `disposed/length` | b | spec-internal, as above |
//! | adopt/adds-value-onDisposeAsync | a | ports_scope `js_async_disposable_stack_use_adopt_defer_each_run_once` |
//! | adopt/allows-any-value | b | generic value |
//! | adopt/async-disposable-stack-adopt, adopt/puts-value-onDisposeAsync-on-top-of-stack | c | `js_adopt_use_adopt_dispose_in_reverse_order`, and its dispose dropped midway: `js_adopt_use_adopt_dispose_dropped_midway` |
//! | adopt/…-on-disposed-stack, defer/…-on-disposed-stack, use/…-on-disposed-stack, move/…-on-disposed-stack, move/throws-if-disposed, use/throws-if-disposed | b | `dispose(self)` consumes the stack |
//! | defer/adds-onDisposeAsync, defer/async-disposable-stack-defer, defer/puts-onDisposeAsync-on-top-of-stack | a | ports_scope `js_async_disposable_stack_awaits_each_disposal_in_turn_lifo` |
//! | defer/returns-undefined, disposeAsync/resolves-to-undefined, disposeAsync/returns-promise | b | `()`; `Dispose` is a `Future<Output = ()>` |
//! | defer/throws-if-onDisposeAsync-not-callable | b | type-checked |
//! | disposeAsync/disposes-resources-in-reverse-order | a | ports_scope `js_async_disposable_stack_awaits_each_disposal_in_turn_lifo` |
//! | disposeAsync/does-not-reinvoke-disposers-if-already-disposed | a | ports_scope `js_async_disposable_stack_use_adopt_defer_each_run_once` |
//! | disposeAsync/does-not-reject-if-already-disposed | b | consumed |
//! | disposeAsync/rejects-with-suppressederror-if-multiple-errors-during-disposal | a | ports_scope `js_async_disposable_stack_the_last_thrown_error_is_outermost_differs` |
//! | disposeAsync/Symbol.asyncDispose-method-not-async, use/adds-sync-disposable-value | a | a sync cleanup in a disposed-async stack: owned_cleanup `stack_dispose_runs_everything_lifo_sync_and_async` |
//! | disposeAsync/explicit-await-for-null, -undefined | b | microtask ticks of a `null` resource: no null resources, no microtask queue |
//! | move/async-disposable-stack-move, move/returns-new-asyncdisposablestack-that-contains-moved-resources | a | owned_cleanup `js_plugin_host_moves_its_disposables_and_disposes_them_once` |
//! | move/async-disposable-stack-move-not-same-objects | b | two Rust values are never the same object |
//! | use/adds-async-disposable-value, use/puts-value-on-top-of-stack | a | ports_scope `js_async_disposable_stack_awaits_each_disposal_in_turn_lifo` |
//! | use/allows-null-value, use/allows-undefined-value, use/Symbol.asyncDispose-getter, use/Symbol.dispose-getter, use/gets-value-* (3), use/throws-if-value-* (7) | b | as the sync stack's |
//!
//! # bluss/scopeguard
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | tests.rs test_defer | a | ports_scope `scopeguard_test_defer_does_not_run_early` |
//! | tests.rs test_defer_success_1, _2, test_defer_unwind_1, _2 | a | exit_ports `scopeguard_defer_success_1` … `scopeguard_defer_unwind_2` |
//! | tests.rs test_only_dropped_by_closure_when_run | a | ports_scope `scopeguard_test_only_dropped_by_closure_when_run` |
//! | tests.rs test_dropped_once_when_not_run | a | ports_scope `scopeguard_test_dropped_once_when_not_run` |
//! | tests.rs test_into_inner | a | ports_scope `scopeguard_test_into_inner` |
//! | lib.rs doc "Hello World", `defer!`, "the guard owns a file" | a | ports_scope `scopeguard_test_defer_does_not_run_early`, scope_order `guards_give_the_body_mutable_access_and_cleanup_gets_the_final_value` |
//! | lib.rs doc "the guard restores an invariant" (`insertion_sort_first`) | c | `scopeguard_doc_guard_restores_an_invariant_when_a_comparison_panics` |
//! | scope_guard.rs doc `into_inner` (conditional defuse) | a | ports_scope `scopeguard_test_into_inner` |
//! | scope_guard.rs doc `guard_on_unwind` emulated by defusing at the end | c | `scopeguard_doc_on_unwind_by_defusing_at_the_end` |
//! | scope_guard.rs `into_inner`'s drop order ("if the closure's `drop` panics, unwinding still tries to drop `value`") | c | `scopeguard_into_inner_drops_the_value_when_the_closure_drop_panics` (found `Guard::defuse` leaking the value; fixed) |
#![cfg(feature = "std")]

mod support;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any, resume_unwind};
use std::sync::{Arc, Mutex};

use deferral::{Defer, DeferStack, Errors, Exit, Guard, scope, scope_local};
use support::order::{ORDERS, Order};
use support::{DropLog, WakeCounter, block_on, poll_once, yield_now};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

fn lines(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic>".into())
}

/// A Python exception instance: its class and its argument.
#[derive(Debug, Clone, PartialEq)]
struct Exc(&'static str, u32);

// ===========================================================================
// CPython TestBaseExitStack / TestAsyncExitStack
// ===========================================================================

/// CPython `test_no_resources`: `with ExitStack(): pass` — an empty scope,
/// and an empty stack disposed of and dropped, do nothing and return.
#[test]
fn python_test_no_resources() {
    assert_eq!(block_on(scope(async |_| 7)), 7);
    assert_eq!(block_on(scope_local(async |d| d.len())), 0);
    let stack: DeferStack = DeferStack::new();
    assert!(stack.is_empty());
    block_on(stack.dispose());
    drop(DeferStack::<deferral::scope::Sendable>::new());
}

type Call = (Vec<i32>, Vec<(&'static str, i32)>);

fn expected_calls() -> Vec<Call> {
    vec![
        (vec![], vec![]),
        (vec![1], vec![]),
        (vec![1, 2], vec![]),
        (vec![], vec![("example", 1)]),
        (vec![1], vec![("example", 1)]),
        (vec![1, 2], vec![("example", 1)]),
        (vec![1, 2], vec![("self", 3), ("callback", 4)]),
    ]
}

/// CPython `test_callback`: callbacks registered with their arguments in
/// reverse order run LIFO, so they record `expected` in order; each gets
/// exactly its own arguments (captured by the closure when registered). In
/// `Fifo` and `Concurrent` order (sync cleanup starts in registration
/// order) the record is reversed.
#[test]
fn python_test_callback_arguments_reach_each_callback() {
    for order in ORDERS {
        let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
        let c = calls.clone();
        block_on(support::order::run(order, async move |d| {
            for (args, kwds) in expected_calls().into_iter().rev() {
                let c = c.clone();
                d.defer(move || c.lock().unwrap().push((args, kwds)));
            }
        }));
        let mut want = expected_calls();
        if order != Order::Lifo {
            want.reverse();
        }
        assert_eq!(*calls.lock().unwrap(), want, "{order:?}");
    }
}

/// CPython `test_async_callback` (`push_async_callback(_exit, *args,
/// **kwds)`): the same with async callbacks, each awaited in turn.
#[test]
fn python_test_async_callback_arguments_reach_each_async_callback() {
    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let c = calls.clone();
    block_on(scope(async move |d| {
        for (args, kwds) in expected_calls().into_iter().take(6).rev() {
            let c = c.clone();
            d.defer_async(async move {
                yield_now().await;
                c.lock().unwrap().push((args, kwds));
            });
        }
    }));
    let want: Vec<Call> = expected_calls().into_iter().take(6).collect();
    assert_eq!(*calls.lock().unwrap(), want);
}

/// CPython `test_async_callback`, cancelled: the `async with` is dropped
/// while the first (newest) async callback awaits. That one is dropped
/// where it stands; the ones that never started are handed over — with no
/// runtime and no handler here, dropped unpolled. None records a call;
/// each is dropped exactly once.
#[test]
fn python_test_async_callback_scope_dropped_mid_cleanup() {
    let log = DropLog::new();
    let l = log.clone();
    let mut fut = Box::pin(scope(async move |d| {
        for (i, (args, kwds)) in expected_calls().into_iter().take(6).enumerate().rev() {
            let (l, held) = (l.clone(), l.on_drop(&format!("callback {i}")));
            d.defer_async(async move {
                let _held = held;
                yield_now().await;
                l.push(format!("called with {args:?} {kwds:?}"));
            });
        }
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    assert!(log.events().is_empty(), "{:?}", log.events());
    drop(fut);
    let mut events = log.events();
    assert_eq!(events[0], "drop callback 0", "the started one first");
    events.sort();
    let want: Vec<String> = (0..6).map(|i| format!("drop callback {i}")).collect();
    assert_eq!(events, want);
}

/// CPython `test_exit_exception_chaining_reference`, nested `with`
/// statements rather than one stack:
///
/// ```python
/// with RaiseExc(IndexError):
///     with RaiseExcWithContext(KeyError, AttributeError):
///         with SuppressExc():
///             with RaiseExc(ValueError):
///                 1 / 0
/// # IndexError escapes (context KeyError <- AttributeError);
/// # SuppressExc saw ValueError (context ZeroDivisionError)
/// ```
///
/// deferral differs (the first panic stays): the innermost scope drops
/// ValueError and resumes the ZeroDivisionError, which the suppressing
/// scope sees and recovers; `RaiseExcWithContext` raises AttributeError,
/// catches it and panics KeyError, which reaches the outer scope's body;
/// its cleanup's IndexError is dropped, and KeyError escapes.
#[test]
fn python_test_exit_exception_chaining_reference_differs() {
    let saved = Arc::new(Mutex::new(None::<Exc>));
    let ran = Log::default();
    let (s, r) = (saved.clone(), ran.clone());
    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let r1 = r.clone();
            d.defer(move || {
                push(&r1, "raise IndexError");
                panic_any(Exc("IndexError", 0))
            });
            scope(async move |d: &Defer<()>| {
                let r2 = r.clone();
                d.defer(move || {
                    let inner = catch_unwind(|| panic_any(Exc("AttributeError", 0)));
                    assert!(inner.is_err());
                    push(&r2, "raise KeyError from AttributeError");
                    panic_any(Exc("KeyError", 0))
                });
                scope(async move |d: &Defer<()>| {
                    let r3 = r.clone();
                    d.defer_with(move |exit: &mut Exit<()>| {
                        let p = exit.recover(()).expect("a panic in flight");
                        *s.lock().unwrap() = p.downcast_ref::<Exc>().cloned();
                        push(&r3, "suppress");
                    });
                    scope(async move |d: &Defer<()>| {
                        let r4 = r.clone();
                        d.defer(move || {
                            push(&r4, "raise ValueError");
                            panic_any(Exc("ValueError", 0))
                        });
                        yield_now().await;
                        panic_any(Exc("ZeroDivisionError", 0));
                    })
                    .await;
                })
                .await;
            })
            .await;
        }))
    }))
    .unwrap_err();
    assert_eq!(
        lines(&ran),
        [
            "raise ValueError",
            "suppress",
            "raise KeyError from AttributeError",
            "raise IndexError"
        ]
    );
    assert_eq!(
        *saved.lock().unwrap(),
        Some(Exc("ZeroDivisionError", 0)),
        "Python: ValueError"
    );
    assert_eq!(
        p.downcast_ref::<Exc>(),
        Some(&Exc("KeyError", 0)),
        "Python: IndexError"
    );
}

/// CPython `test_exit_exception_with_correct_context` (bpo-20317): three
/// context managers whose `finally` raises exc4, exc3, exc2, around a body
/// raising exc1; Python raises exc4 (context exc3 <- exc2 <- exc1).
///
/// deferral differs (the first panic stays): every guard's cleanup runs,
/// newest first (exc2, exc3, exc4 — one of them async), and exc1 escapes.
#[test]
fn python_test_exit_exception_with_correct_context_differs() {
    let ran = Log::default();
    let r = ran.clone();
    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let r4 = r.clone();
            let _cm4 = d.guard(Exc("Exception", 4), move |e| {
                push(&r4, "finally 4");
                panic_any(e)
            });
            let r3 = r.clone();
            let _cm3 = d.guard_async(Exc("Exception", 3), move |e| async move {
                yield_now().await;
                push(&r3, "finally 3");
                panic_any(e)
            });
            let r2 = r.clone();
            let _cm2 = d.guard(Exc("Exception", 2), move |e| {
                push(&r2, "finally 2");
                panic_any(e)
            });
            yield_now().await;
            panic_any(Exc("Exception", 1));
        }))
    }))
    .unwrap_err();
    assert_eq!(lines(&ran), ["finally 2", "finally 3", "finally 4"]);
    assert_eq!(
        p.downcast_ref::<Exc>(),
        Some(&Exc("Exception", 1)),
        "Python: exc4"
    );
}

/// CPython `test_exit_exception_with_existing_context`: callbacks that
/// raise an exception and, in their `finally`, another:
///
/// ```python
/// stack.callback(raise_nested, exc4, exc5)
/// stack.callback(raise_nested, exc2, exc3)
/// raise exc1          # Python: exc5 escapes (context 4 <- 3 <- 2 <- 1)
/// ```
///
/// deferral differs (the first panic stays): a cleanup may catch its own
/// inner panic; the outer one it raises is dropped, as the body's exc1 is in
/// flight, and exc1 escapes. Each callback ran once.
#[test]
fn python_test_exit_exception_with_existing_context_differs() {
    fn raise_nested(inner: Exc, outer: Exc, ran: &Log) -> ! {
        let caught = catch_unwind(|| panic_any(inner.clone())).unwrap_err();
        push(
            ran,
            format!("{:?} then {:?}", caught.downcast_ref::<Exc>(), outer.1),
        );
        panic_any(outer)
    }
    let ran = Log::default();
    let r = ran.clone();
    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let r1 = r.clone();
            d.defer(move || raise_nested(Exc("Exception", 4), Exc("Exception", 5), &r1));
            let r2 = r.clone();
            d.defer_async(async move {
                yield_now().await;
                raise_nested(Exc("Exception", 2), Exc("Exception", 3), &r2)
            });
            panic_any(Exc("Exception", 1));
        }))
    }))
    .unwrap_err();
    assert_eq!(
        lines(&ran),
        [
            "Some(Exc(\"Exception\", 2)) then 3",
            "Some(Exc(\"Exception\", 4)) then 5"
        ]
    );
    assert_eq!(
        p.downcast_ref::<Exc>(),
        Some(&Exc("Exception", 1)),
        "Python: exc5"
    );
}

/// The exception `second()` raises in CPython's
/// `test_dont_reraise_RuntimeError`, `from` its cause.
#[derive(Debug)]
struct UniqueException {
    cause: Box<dyn Any + Send>,
}

#[derive(Debug, PartialEq)]
struct UniqueRuntimeError(&'static str);

/// CPython `test_dont_reraise_RuntimeError` (bpo-27122):
///
/// ```python
/// @contextmanager
/// def second():
///     try: yield 1
///     except Exception as exc: raise UniqueException("new exception") from exc
/// @contextmanager
/// def first():
///     try: yield 1
///     except Exception as exc: raise exc
/// with ExitStack() as es_ctx:
///     es_ctx.enter_context(second())
///     es_ctx.enter_context(first())
///     raise UniqueRuntimeError("please no infinite loop.")
/// # UniqueException escapes; its cause is the very UniqueRuntimeError
/// ```
///
/// `first` recovers the panic and resumes the same payload; `second`
/// recovers that and panics anew, carrying it as its cause. Sync cleanups
/// and async ones (async work, then a closure over the exit).
#[test]
fn python_test_dont_reraise_runtime_error() {
    for asynchronous in [false, true] {
        let p = catch_unwind(AssertUnwindSafe(|| {
            block_on(scope(async move |d| {
                let second = |exit: &mut Exit<()>| {
                    if let Some(cause) = exit.recover(()) {
                        panic_any(UniqueException { cause });
                    }
                };
                let first = |exit: &mut Exit<()>| {
                    if let Some(exc) = exit.recover(()) {
                        resume_unwind(exc); // `raise exc`
                    }
                };
                if asynchronous {
                    d.defer_async(async move {
                        yield_now().await;
                        second
                    });
                    d.defer_async(async move {
                        yield_now().await;
                        first
                    });
                } else {
                    d.defer_with(second);
                    d.defer_with(first);
                }
                yield_now().await;
                panic_any(UniqueRuntimeError("please no infinite loop."));
            }))
        }))
        .unwrap_err();
        let exc = p.downcast_ref::<UniqueException>().unwrap_or_else(|| {
            panic!("UniqueException escapes ({asynchronous}): {}", message(&*p))
        });
        assert_eq!(
            exc.cause.downcast_ref::<UniqueRuntimeError>(),
            Some(&UniqueRuntimeError("please no infinite loop.")),
            "its cause is the body's exception, not re-wrapped ({asynchronous})"
        );
    }
}

// ===========================================================================
// CPython closing / suppress
// ===========================================================================

struct Closable {
    id: u32,
    state: Log,
}

impl Closable {
    fn close(self) {
        push(&self.state, format!("close {}", self.id));
    }

    async fn aclose(self) {
        yield_now().await;
        push(&self.state, format!("aclose {}", self.id));
    }
}

/// CPython `ClosingTestCase.test_closing`: `with closing(x) as y` — `y` is
/// `x`, and `x.close()` runs on exit (and only then). A sync guard, and an
/// async one (`aclosing`).
#[test]
fn python_closing_closes_on_exit() {
    let state = Log::default();
    let s = state.clone();
    block_on(scope(async move |d| {
        let y = d.guard(
            Closable {
                id: 1,
                state: s.clone(),
            },
            Closable::close,
        );
        assert_eq!(y.id, 1, "y is x");
        let z = d.guard_async(
            Closable {
                id: 2,
                state: s.clone(),
            },
            Closable::aclose,
        );
        assert_eq!(z.id, 2);
        yield_now().await;
        assert!(lines(&s).is_empty(), "not closed before the exit");
    }));
    assert_eq!(lines(&state), ["aclose 2", "close 1"]);
}

/// CPython `ClosingTestCase.test_closing_error`: the body raises; `close()`
/// still runs, and the exception propagates.
#[test]
fn python_closing_error_closes_and_propagates() {
    let state = Log::default();
    let s = state.clone();
    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let _y = d.guard(
                Closable {
                    id: 1,
                    state: s.clone(),
                },
                Closable::close,
            );
            let _z = d.guard_async(
                Closable {
                    id: 2,
                    state: s.clone(),
                },
                Closable::aclose,
            );
            yield_now().await;
            panic_any(Exc("ZeroDivisionError", 0));
        }))
    }))
    .unwrap_err();
    assert_eq!(p.downcast_ref::<Exc>(), Some(&Exc("ZeroDivisionError", 0)));
    assert_eq!(lines(&state), ["aclose 2", "close 1"]);
}

#[derive(Debug, PartialEq)]
struct TypeError;
#[derive(Debug, PartialEq)]
struct ZeroDivisionError;

/// `contextlib.suppress(*kinds)` as a cleanup: it recovers the panic in
/// flight if `kinds` accepts its payload (an `isinstance` check), and
/// records what it did.
fn suppress<T: Default>(d: &Defer<T>, kinds: fn(&(dyn Any + Send)) -> bool, seen: Log) {
    let cleanup = move |exit: &mut Exit<T>| {
        let matches = exit.panic_payload().is_some_and(kinds);
        if matches {
            exit.recover(T::default());
            push(&seen, "suppressed");
        } else {
            push(&seen, "not suppressed");
        }
    };
    let _ = d.defer_with(cleanup);
}

/// CPython `TestSuppress`: `test_no_exception`, `test_exact_exception`,
/// `test_other_exception`, `test_no_args` and `test_multiple_exception_args`.
#[test]
fn python_suppress_exact_other_none_and_several_kinds() {
    fn run(
        kinds: fn(&(dyn Any + Send)) -> bool,
        raise: Option<fn() -> !>,
    ) -> (Result<u32, Box<dyn Any + Send>>, Vec<String>) {
        let seen = Log::default();
        let s = seen.clone();
        let out = catch_unwind(AssertUnwindSafe(|| {
            block_on(scope(async move |d: &Defer<u32>| {
                suppress(d, kinds, s);
                if let Some(raise) = raise {
                    raise();
                }
                32 // pow(2, 5)
            }))
        }));
        (out, lines(&seen))
    }
    let type_error: fn() -> ! = || panic_any(TypeError);
    let zero_division: fn() -> ! = || panic_any(ZeroDivisionError);

    // test_no_exception: suppress(ValueError) around a body that returns.
    let (out, seen) = run(|p| p.is::<Exc>(), None);
    assert_eq!(out.unwrap(), 32);
    assert_eq!(seen, ["not suppressed"]);

    // test_exact_exception: suppress(TypeError) around len(5): no output
    // to give, so the output is the recover's (the type's default).
    let (out, seen) = run(|p| p.is::<TypeError>(), Some(type_error));
    assert_eq!(out.unwrap(), 0);
    assert_eq!(seen, ["suppressed"]);

    // test_other_exception: suppress(TypeError) around 1/0 raises.
    let (out, seen) = run(|p| p.is::<TypeError>(), Some(zero_division));
    assert!(out.unwrap_err().is::<ZeroDivisionError>());
    assert_eq!(seen, ["not suppressed"]);

    // test_no_args: suppress() suppresses nothing.
    let (out, _) = run(|_| false, Some(zero_division));
    assert!(out.unwrap_err().is::<ZeroDivisionError>());

    // test_multiple_exception_args: suppress(ZeroDivisionError, TypeError).
    for raise in [zero_division, type_error] {
        let (out, seen) = run(
            |p| p.is::<ZeroDivisionError>() || p.is::<TypeError>(),
            Some(raise),
        );
        assert_eq!(out.unwrap(), 0);
        assert_eq!(seen, ["suppressed"]);
    }
}

/// CPython `TestSuppress.test_cm_is_reentrant`: one `suppress(Exception)`
/// used in turn and nested: the inner use suppresses TypeError and the
/// outer body goes on (`outer_continued`), then the outer use suppresses
/// the outer 1/0.
#[test]
fn python_suppress_is_reentrant_nested() {
    let ignore_exceptions: fn(&(dyn Any + Send)) -> bool = |_| true;
    let seen = Log::default();
    let outer_continued = Arc::new(Mutex::new(false));
    let (s, oc) = (seen.clone(), outer_continued.clone());
    let s1 = seen.clone();
    block_on(scope(async move |d: &Defer<()>| {
        suppress(d, ignore_exceptions, s1);
    }));
    let s2 = seen.clone();
    block_on(scope(async move |d: &Defer<()>| {
        suppress(d, ignore_exceptions, s2);
        panic_any(TypeError) // len(5)
    }));
    block_on(scope(async move |d: &Defer<()>| {
        suppress(d, ignore_exceptions, s.clone());
        let s3 = s.clone();
        scope(async move |d: &Defer<()>| {
            suppress(d, ignore_exceptions, s3);
            yield_now().await;
            panic_any(TypeError)
        })
        .await;
        *oc.lock().unwrap() = true;
        panic_any(ZeroDivisionError) // 1/0
    }));
    assert!(*outer_continued.lock().unwrap());
    assert_eq!(
        lines(&seen),
        ["not suppressed", "suppressed", "suppressed", "suppressed"]
    );
}

/// (No upstream test: `suppress` meeting a cancellation.) The body panics;
/// cleanup starts with a newer async cleanup that waits; the scope is
/// dropped there. The started one is dropped; the older sync `suppress`
/// still runs in the drop and sees the body's panic: if it recovers it,
/// the drop returns quietly; if it does not, the body's panic resumes from
/// the drop (the first panic resumes after all ran).
#[test]
fn python_suppress_in_a_scope_dropped_mid_cleanup() {
    for suppresses in [true, false] {
        let seen = Log::default();
        let log = DropLog::new();
        let (s, l) = (seen.clone(), log.clone());
        let mut fut = Box::pin(scope(async move |d: &Defer<()>| {
            let kinds: fn(&(dyn Any + Send)) -> bool = if suppresses {
                |p| p.is::<ZeroDivisionError>()
            } else {
                |_| false
            };
            suppress(d, kinds, s);
            let held = l.on_drop("pending aexit");
            d.defer_async(async move {
                let _held = held;
                std::future::pending::<()>().await
            });
            panic_any(ZeroDivisionError)
        }));
        assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
        let dropped = catch_unwind(AssertUnwindSafe(move || drop(fut)));
        assert_eq!(log.events(), ["drop pending aexit"], "{suppresses}");
        if suppresses {
            assert!(dropped.is_ok());
            assert_eq!(lines(&seen), ["suppressed"]);
        } else {
            assert!(dropped.unwrap_err().is::<ZeroDivisionError>());
            assert_eq!(lines(&seen), ["not suppressed"]);
        }
    }
}

// ===========================================================================
// test262 DisposableStack / AsyncDisposableStack
// ===========================================================================

#[derive(Debug, PartialEq)]
struct MyError(u32);

/// test262 DisposableStack/prototype/dispose/
/// throws-error-as-is-if-only-one-error-during-disposal.js: one failing
/// disposer's error is thrown as it is, not wrapped. A panic payload
/// resumes as it was raised — from `dispose` (sync or async cleanup), from
/// a dropped stack, and from a scope; an error returned by the one failing
/// cleanup is the output's error, alone.
#[test]
fn js_dispose_throws_the_error_as_is_if_only_one() {
    let ran = Log::default();
    let mut stack: DeferStack = DeferStack::new();
    let r = ran.clone();
    stack.defer(move || push(&r, "older ran"));
    stack.defer(|| panic_any(MyError(1)));
    let p = catch_unwind(AssertUnwindSafe(|| block_on(stack.dispose()))).unwrap_err();
    assert_eq!(p.downcast_ref::<MyError>(), Some(&MyError(1)));
    assert_eq!(lines(&ran), ["older ran"]);

    let mut stack: DeferStack = DeferStack::new();
    stack.defer_async(async {
        yield_now().await;
        panic_any(MyError(2))
    });
    let p = catch_unwind(AssertUnwindSafe(|| block_on(stack.dispose()))).unwrap_err();
    assert_eq!(p.downcast_ref::<MyError>(), Some(&MyError(2)));

    let mut stack: DeferStack = DeferStack::new();
    stack.defer(|| panic_any(MyError(3)));
    let p = catch_unwind(AssertUnwindSafe(move || drop(stack))).unwrap_err();
    assert_eq!(p.downcast_ref::<MyError>(), Some(&MyError(3)));

    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async |d| {
            d.defer(|| panic_any(MyError(4)));
        }))
    }))
    .unwrap_err();
    assert_eq!(p.downcast_ref::<MyError>(), Some(&MyError(4)));

    let out: Result<(), MyError> = block_on(scope(async |d| {
        d.defer(|| Ok::<(), MyError>(()));
        d.defer(|| Err(MyError(5)));
        Ok(())
    }));
    assert_eq!(out, Err(MyError(5)));
    let out: Result<(), Errors<MyError>> = block_on(scope(async |d| {
        d.defer_async(async { Err::<(), _>(MyError(6)) });
        Ok(())
    }));
    assert_eq!(out.unwrap_err().into_vec(), [MyError(6)]);
}

/// Fills `stack` as test262's adopt tests do: `adopt(42, push)`,
/// `use({[Symbol.asyncDispose]() { push(43) }})`, `adopt(44, push)` — the
/// adopted values are guards moved in from a scope, the async disposable a
/// future (`pending` keeps it waiting).
fn adopt_use_adopt(stack: &mut DeferStack, values: &Log, log: &DropLog, pending: bool) {
    for (value, asynchronous) in [(42, false), (43, true), (44, false)] {
        if asynchronous {
            let (v, held) = (values.clone(), log.on_drop("43"));
            stack.defer_async(async move {
                let _held = held;
                yield_now().await;
                if pending {
                    std::future::pending::<()>().await;
                }
                push(&v, "43");
            });
            continue;
        }
        let v = values.clone();
        block_on(scope(async |d| {
            let g = d.guard(value, move |value| push(&v, value.to_string()));
            assert_eq!(*g, value, "adopt returns the value");
            Guard::move_to(g, &mut *stack).unwrap();
        }));
    }
}

/// test262 AsyncDisposableStack/prototype/adopt/async-disposable-stack-adopt.js
/// (and adopt/puts-value-onDisposeAsync-on-top-of-stack.js,
/// DisposableStack/prototype/adopt/puts-value-onDispose-on-top-of-stack.js):
/// adopted values and a used async disposable, interleaved, are disposed
/// of in reverse order: `[44, 43, 42]`.
#[test]
fn js_adopt_use_adopt_dispose_in_reverse_order() {
    let values = Log::default();
    let log = DropLog::new();
    let mut stack: DeferStack = DeferStack::new();
    adopt_use_adopt(&mut stack, &values, &log, false);
    assert_eq!(stack.len(), 3);
    assert!(lines(&values).is_empty(), "nothing runs before dispose");
    block_on(stack.dispose());
    assert_eq!(lines(&values), ["44", "43", "42"]);
    assert_eq!(log.events(), ["drop 43"]);
}

/// The same stack, its `disposeAsync()` dropped while the async disposer
/// (43) waits: 44 ran, 43 is dropped where it stands, 42 (sync) runs in the
/// drop. Each runs or drops once.
#[test]
fn js_adopt_use_adopt_dispose_dropped_midway() {
    let values = Log::default();
    let log = DropLog::new();
    let mut stack: DeferStack = DeferStack::new();
    adopt_use_adopt(&mut stack, &values, &log, true);
    let mut dispose = Box::pin(stack.dispose());
    let counter = WakeCounter::new();
    assert!(poll_once(dispose.as_mut(), &counter).is_pending());
    assert!(poll_once(dispose.as_mut(), &counter).is_pending());
    assert_eq!(lines(&values), ["44"]);
    drop(dispose);
    assert_eq!(lines(&values), ["44", "42"]);
    assert_eq!(log.events(), ["drop 43"]);
}

/// test262 DisposableStack/prototype/move/sets-state-to-disposed.js,
/// throws-if-disposed.js and returns-new-disposablestack-that-is-still-pending.js:
/// after `move()` the old stack is disposed (using it throws a
/// ReferenceError) and the new one is pending.
///
/// deferral differs: `take()` leaves the old stack *empty*, not disposed —
/// there is no disposed state to be in (a disposed stack is consumed) — so
/// it accepts new cleanup and runs it when dropped; the new stack is
/// pending and accepts more too. Nothing moved runs twice.
#[test]
fn js_move_leaves_the_old_stack_usable_differs() {
    let ran = Log::default();
    let mut stack: DeferStack = DeferStack::new();
    let r = ran.clone();
    stack.defer(move || push(&r, "moved a"));
    let mut moved = stack.take();
    assert!(lines(&ran).is_empty(), "move does not dispose");
    assert_eq!((stack.len(), moved.len()), (0, 1));
    let r = ran.clone();
    stack.defer(move || push(&r, "old b")); // JS: ReferenceError
    let r = ran.clone();
    moved.defer_async(async move {
        yield_now().await;
        push(&r, "moved c")
    });
    block_on(moved.dispose());
    assert_eq!(lines(&ran), ["moved c", "moved a"]);
    drop(stack);
    assert_eq!(lines(&ran), ["moved c", "moved a", "old b"]);
}

// ===========================================================================
// bluss/scopeguard doc examples
// ===========================================================================

/// scopeguard's `lib.rs` example "The guard restores an invariant on scope
/// exit" (`insertion_sort_first`): the first element is taken out, leaving
/// a hole that moves while comparisons run; a guard plugs the hole on exit
/// — also when a comparison panics. Safe Rust: the hole is a `None`.
#[test]
fn scopeguard_doc_guard_restores_an_invariant_when_a_comparison_panics() {
    struct Hole<'a> {
        v: &'a mut Vec<Option<String>>,
        index: usize,
        value: Option<String>,
    }
    fn insertion_sort_first(v: &mut Vec<Option<String>>, panic_at: Option<usize>) {
        block_on(scope_local(async move |d| {
            let value = v[0].take();
            let hole = Hole { v, index: 0, value };
            let mut hole = d.guard(hole, |hole: Hole<'_>| {
                let index = hole.index;
                hole.v[index] = hole.value; // plug the hole
            });
            for i in 1..hole.v.len() {
                if panic_at == Some(i) {
                    panic!("comparison panics");
                }
                if hole.value.as_ref() >= hole.v[i].as_ref() {
                    let index = hole.index;
                    hole.v[index] = hole.v[index + 1].take();
                    hole.index += 1;
                } else {
                    break;
                }
            }
        }));
    }
    let data = || ["c", "a", "b", "d"].map(|s| Some(s.to_string())).to_vec();
    let mut v = data();
    insertion_sort_first(&mut v, None);
    assert_eq!(v, ["a", "b", "c", "d"].map(|s| Some(s.to_string())));
    let mut v = data();
    let p = catch_unwind(AssertUnwindSafe(|| insertion_sort_first(&mut v, Some(2)))).unwrap_err();
    assert_eq!(message(&*p), "comparison panics");
    assert!(v.iter().all(Option::is_some), "whole again: {v:?}");
    let mut sorted: Vec<_> = v.into_iter().flatten().collect();
    sorted.sort();
    assert_eq!(sorted, ["a", "b", "c", "d"]);
}

/// scopeguard's `guard_on_unwind` doc example: "to emulate 'only run guard
/// on unwind' ... use the default guard and simply manually defuse it at
/// the end of scope". The cleanup runs only if the body panics before it
/// reaches the defuse.
#[test]
fn scopeguard_doc_on_unwind_by_defusing_at_the_end() {
    for panics in [false, true] {
        let ran = Cell::new(0);
        let trace = RefCell::new(Vec::new());
        let out = catch_unwind(AssertUnwindSafe(|| {
            block_on(scope_local(async |d| {
                let guard = d.guard((), |()| ran.set(ran.get() + 1));
                trace.borrow_mut().push("rest of the code");
                yield_now().await;
                if panics {
                    panic!("unwinding");
                }
                Guard::defuse(guard); // reached the end without unwinding
            }))
        }));
        assert_eq!(out.is_err(), panics);
        assert_eq!(ran.get(), usize::from(panics), "panics: {panics}");
        assert_eq!(*trace.borrow(), ["rest of the code"]);
    }
}

/// scopeguard's `ScopeGuard::into_inner` (src/scope_guard.rs): "Drop the
/// closure after `value` has been read, so that if the closure's `drop`
/// function panics, unwinding still tries to drop `value`." `Guard::defuse`
/// with a cleanup whose captures panic when dropped: the panic reaches the
/// caller, and the value is dropped exactly once (not leaked, not twice);
/// the scope's other cleanup still runs.
///
/// This test found a leak, now fixed: `Guard::defuse` was
/// `Self::into_parts(guard).0`; the `(V, C)` temporary's `C` was dropped
/// after `V` moved into the return place, and when that drop panicked the
/// moved-out `V` was never dropped (the language leaks a tail expression's
/// result when a temporary's destructor unwinds, rust-lang/rust#47949).
/// It now drops the cleanup while the value is a local.
#[test]
fn scopeguard_into_inner_drops_the_value_when_the_closure_drop_panics() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("closure drop panics");
        }
    }
    let log = DropLog::new();
    let l = log.clone();
    let p = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let l1 = l.clone();
            d.defer(move || l1.push("other cleanup"));
            let bomb = PanicOnDrop;
            let g = d.guard(l.on_drop("value"), move |_v| drop(bomb));
            let _value = Guard::defuse(g);
            l.push("unreachable: defuse panicked");
        }))
    }))
    .unwrap_err();
    assert_eq!(message(&*p), "closure drop panics");
    assert_eq!(log.events(), ["drop value", "other cleanup"]);
}
