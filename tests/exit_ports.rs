//! Cleanup that sees how the body ended, ported from the languages and
//! crates that have it. Each test cites its source; the expected output is
//! the source's own, translated only where Rust must differ (a panic for an
//! exception or a Go `panic`, `Result` for a Zig error union).
#![cfg(feature = "std")]

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use deferral::{Errors, Exit, Outcome, When, scope, scope_local};
use support::order::Order::{Concurrent, Fifo, Lifo};
use support::{block_on, yield_now};

type Out = Arc<Mutex<Vec<String>>>;

fn println(out: &Out, line: impl Into<String>) {
    out.lock().unwrap().push(line.into());
}

fn lines(out: &Out) -> Vec<String> {
    out.lock().unwrap().clone()
}

// ---------------------------------------------------------------------------
// The Go Programming Language Specification, "Defer statements"
// (https://go.dev/ref/spec#Defer_statements):
//
//     // f returns 42
//     func f() (result int) {
//         defer func() {
//             // result is accessed after it was set to 6 by the return statement
//             result *= 7
//         }()
//         return 6
//     }
//
// and: "if the surrounding function ... is panicking ..., deferred
// functions are executed" — all of them, including one that would amend the
// result (it sees that there is none).
// ---------------------------------------------------------------------------

#[test]
fn go_spec_deferred_closure_amends_the_named_result_6_to_42() {
    let f = || {
        scope(async |d| {
            d.defer_with(|exit: &mut Exit<i32>| {
                if let Some(result) = exit.output_mut() {
                    *result *= 7;
                }
            });
            6
        })
    };
    assert_eq!(block_on(f()), 42);
}

#[test]
fn go_spec_deferred_functions_run_while_panicking_the_amending_one_too() {
    for order in [Lifo, Fifo, Concurrent] {
        let out = Out::default();
        let o = out.clone();
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            block_on(support::order::run(order, async move |d| {
                let o1 = o.clone();
                d.defer(move || println(&o1, "deferred 1"));
                let o2 = o.clone();
                d.defer_with(move |exit: &mut Exit<i32>| {
                    // It runs, and sees that there is no result to amend.
                    assert!(exit.is_panicked());
                    assert!(exit.output_mut().is_none());
                    println(&o2, "amending: no result");
                });
                let o3 = o.clone();
                d.defer_async(async move {
                    yield_now().await;
                    println(&o3, "deferred async");
                });
                yield_now().await;
                panic!("f panics");
            }))
        }))
        .unwrap_err();
        assert_eq!(panicked.downcast_ref::<&str>(), Some(&"f panics"));
        let mut ran = lines(&out);
        if order == Lifo {
            assert_eq!(ran, ["deferred async", "amending: no result", "deferred 1"]);
        }
        ran.sort();
        assert_eq!(
            ran,
            ["amending: no result", "deferred 1", "deferred async"],
            "{order:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The Go Blog, "Defer, Panic, and Recover" (Andrew Gerrand, 2010,
// https://go.dev/blog/defer-panic-and-recover):
//
//     func main() {
//         f()
//         fmt.Println("Returned normally from f.")
//     }
//
//     func f() {
//         defer func() {
//             if r := recover(); r != nil {
//                 fmt.Println("Recovered in f", r)
//             }
//         }()
//         fmt.Println("Calling g.")
//         g(0)
//         fmt.Println("Returned normally from g.")
//     }
//
//     func g(i int) {
//         if i > 3 {
//             fmt.Println("Panicking!")
//             panic(fmt.Sprintf("%v", i))
//         }
//         defer fmt.Println("Defer in g", i)
//         fmt.Println("Printing in g", i)
//         g(i + 1)
//     }
// ---------------------------------------------------------------------------

/// `g`, one scope per call, recursing through boxed futures.
fn g(out: Out, i: i32) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(scope(async move |d| {
        if i > 3 {
            println(&out, "Panicking!");
            std::panic::panic_any(format!("{i}"));
        }
        let o = out.clone();
        d.defer(move || println(&o, format!("Defer in g {i}")));
        println(&out, format!("Printing in g {i}"));
        g(out, i + 1).await;
    }))
}

async fn f(out: Out, recovers: bool) {
    scope(async |d| {
        if recovers {
            let o = out.clone();
            d.defer_with(move |exit: &mut Exit<()>| {
                if let Some(r) = exit.recover(()) {
                    let r = r.downcast_ref::<String>().unwrap();
                    println(&o, format!("Recovered in f {r}"));
                }
            });
        }
        println(&out, "Calling g.");
        g(out.clone(), 0).await;
        println(&out, "Returned normally from g.");
    })
    .await
}

#[test]
fn go_blog_recover_in_f_stops_the_panic_of_g() {
    let out = Out::default();
    block_on(async {
        f(out.clone(), true).await;
        println(&out, "Returned normally from f.");
    });
    assert_eq!(
        lines(&out),
        [
            "Calling g.",
            "Printing in g 0",
            "Printing in g 1",
            "Printing in g 2",
            "Printing in g 3",
            "Panicking!",
            "Defer in g 3",
            "Defer in g 2",
            "Defer in g 1",
            "Defer in g 0",
            "Recovered in f 4",
            "Returned normally from f.",
        ]
    );
}

/// The same blog post: "If we remove the deferred function from f the
/// panic is not recovered and reaches the top of the goroutine's call
/// stack" — every deferred call in `g` still runs on the way.
#[test]
fn go_blog_without_recover_the_panic_reaches_the_caller() {
    let out = Out::default();
    let panic = catch_unwind(AssertUnwindSafe(|| {
        block_on(async {
            f(out.clone(), false).await;
            println(&out, "Returned normally from f.");
        })
    }))
    .unwrap_err();
    assert_eq!(
        panic.downcast_ref::<String>().map(String::as_str),
        Some("4")
    );
    assert_eq!(
        lines(&out),
        [
            "Calling g.",
            "Printing in g 0",
            "Printing in g 1",
            "Printing in g 2",
            "Printing in g 3",
            "Panicking!",
            "Defer in g 3",
            "Defer in g 2",
            "Defer in g 1",
            "Defer in g 0",
        ]
    );
}

/// The same blog post's rules 1–3: arguments are evaluated when the defer
/// statement is, deferred calls run LIFO ("3210"), and they "may read and
/// assign to the returning function's named return values":
///
///     func c() (i int) {
///         defer func() { i++ }()
///         return 1
///     }
#[test]
fn go_blog_lifo_and_named_result_increment() {
    let printed = Arc::new(Mutex::new(String::new()));
    let p = printed.clone();
    block_on(scope(async move |d| {
        for i in 0..4 {
            let p = p.clone();
            d.defer(move || p.lock().unwrap().push_str(&i.to_string()));
        }
    }));
    assert_eq!(*printed.lock().unwrap(), "3210");

    let c = scope(async |d| {
        d.defer_with(|exit: &mut Exit<i32>| *exit.output_mut().unwrap() += 1);
        1
    });
    assert_eq!(block_on(c), 2);
}

// ---------------------------------------------------------------------------
// Zig language reference, "errdefer" (https://ziglang.org/documentation/
// master/#errdefer):
//
//     fn captureError(captured: *?anyerror) !void {
//         errdefer |err| {
//             captured.* = err;
//         }
//         return error.GeneralFailure;
//     }
//
//     test "errdefer capture" {
//         var captured: ?anyerror = null;
//         if (captureError(&captured)) unreachable else |err| {
//             try std.testing.expectEqual(error.GeneralFailure, captured.?);
//             try std.testing.expectEqual(error.GeneralFailure, err);
//         }
//     }
//
// and "defer"'s companion example, `deferErrorExample(is_error)`: prints
// "start of function", then on error "encountered an error!", and always
// "end of function" (defer and errdefer unwind in reverse order).
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum ZigError {
    GeneralFailure,
    DeferError,
}

#[test]
fn zig_errdefer_captures_the_error() {
    // `scope_local`: the errdefer writes through a `&mut` the caller owns,
    // exactly as Zig's `captured: *?anyerror`.
    let mut captured: Option<ZigError> = None;
    let result: Result<(), ZigError> = block_on(scope_local(async |d| {
        d.defer_with(|exit: &mut Exit<Result<(), ZigError>>| {
            captured = exit.error_mut().copied();
        });
        Err(ZigError::GeneralFailure)
    }));
    assert_eq!(result, Err(ZigError::GeneralFailure));
    assert_eq!(captured, Some(ZigError::GeneralFailure));
}

fn defer_error_example(is_error: bool, print: &mut Vec<&'static str>) -> Result<(), ZigError> {
    // Both cleanups borrow `print`, as two Zig defers share the caller's
    // frame: a `RefCell` outside the scope shares it.
    let print = std::cell::RefCell::new(print);
    let print = &print;
    block_on(scope_local(async |d| {
        print.borrow_mut().push("start of function");
        d.defer(move || print.borrow_mut().push("end of function"));
        // Zig's `errdefer`: the condition as a value.
        d.defer(move || print.borrow_mut().push("encountered an error!"))
            .when(When::Err);
        if is_error {
            return Err(ZigError::DeferError);
        }
        Ok(())
    }))
}

#[test]
fn zig_errdefer_runs_only_on_error_in_reverse_order() {
    let mut print = Vec::new();
    assert_eq!(
        defer_error_example(false, &mut print),
        Ok(()),
        "no error: errdefer skipped"
    );
    assert_eq!(print, ["start of function", "end of function"]);

    let mut print = Vec::new();
    assert_eq!(
        defer_error_example(true, &mut print),
        Err(ZigError::DeferError)
    );
    assert_eq!(
        print,
        [
            "start of function",
            "encountered an error!",
            "end of function"
        ]
    );
}

/// Zig's errdefer, async: the rollback is async work that needs the error.
/// An async cleanup sees the outcome; the error itself is read by a sync
/// cleanup that runs just before it (registered after it: LIFO).
#[test]
fn async_errdefer_rolls_back_only_on_error_seeing_it() {
    for fail in [false, true] {
        let rolled_back = Arc::new(Mutex::new(None));
        let r = rolled_back.clone();
        let error = Arc::new(Mutex::new(None::<String>));
        let e = error.clone();
        let result: Result<u8, String> = block_on(scope(async move |d| {
            d.defer_async(async move {
                yield_now().await; // the async rollback
                *r.lock().unwrap() = e.lock().unwrap().take();
            })
            .when(When::Err);
            d.defer_with(move |exit: &mut Exit<Result<u8, String>>| {
                *error.lock().unwrap() = exit.error_mut().cloned();
            });
            yield_now().await;
            if fail {
                Err("insert failed".to_string())
            } else {
                Ok(1)
            }
        }));
        assert_eq!(result.is_err(), fail);
        let expected = fail.then(|| "insert failed".to_string());
        assert_eq!(*rolled_back.lock().unwrap(), expected);
    }
}

// ---------------------------------------------------------------------------
// Python, contextlib.AsyncExitStack.push_async_exit
// (https://docs.python.org/3/library/contextlib.html#contextlib.AsyncExitStack.push_async_exit),
// whose callbacks are `__aexit__`-shaped and, like `ExitStack.push`, "can
// suppress exceptions the same way context manager __exit__() methods can"
// — CPython's Lib/test/test_contextlib.py `test_exit_suppress`, run async by
// test_contextlib_async.py's TestAsyncExitStack:
//
//     def suppress_exc(*exc_details):
//         return True
//     try:
//         with self.exit_stack() as stack:
//             stack.push(suppress_exc)
//             1/0
//     except IndexError as exc:
//         self.fail("Expected no exception, got IndexError")
//
// The callbacks registered later run first and see the exception; after the
// suppressing one, those that run later see none.
// ---------------------------------------------------------------------------

#[test]
fn python_push_async_exit_suppresses_the_exception() {
    let out = Out::default();
    let (o1, o2) = (out.clone(), out.clone());
    type PyResult = Result<&'static str, ()>;
    let result = block_on(scope(async move |d| -> PyResult {
        // Registered first, runs last: the exception is gone by then.
        d.defer_async_with(move |outcome: Outcome| async move {
            println(&o1, format!("outer sees {outcome:?}"))
        });
        // suppress_exc: an async `__aexit__` that returns True: after its
        // async work it sees the exception and suppresses it.
        d.defer_async(async move {
            yield_now().await;
            move |exit: &mut Exit<PyResult>| {
                let exc = exit
                    .panic_payload()
                    .and_then(|p| p.downcast_ref::<&str>())
                    .map(|s| s.to_string());
                println(&o2, format!("suppress_exc got {exc:?}"));
                exit.recover(Ok("suppressed"));
            }
        });
        yield_now().await;
        let zero = std::hint::black_box(0);
        if zero == 0 {
            panic!("division by zero"); // 1/0
        }
        Ok("unreachable")
    }));
    assert_eq!(result, Ok("suppressed"));
    assert_eq!(
        lines(&out),
        [
            "suppress_exc got Some(\"division by zero\")",
            "outer sees Ok"
        ]
    );
}

/// `__aexit__` returning False (or not suppressing): the exception goes on.
#[test]
fn python_push_async_exit_that_does_not_suppress_lets_it_propagate() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let panic = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            d.defer_async_with(move |outcome: Outcome| {
                assert_eq!(outcome, Outcome::Panicked);
                async move {
                    s.fetch_add(1, SeqCst);
                }
            });
            panic!("IndexError");
        }))
    }))
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"IndexError"));
    assert_eq!(seen.load(SeqCst), 1);
}

// ---------------------------------------------------------------------------
// ECMAScript explicit resource management, AsyncDisposableStack
// (https://github.com/tc39/proposal-explicit-resource-management; test262
// built-ins/AsyncDisposableStack/prototype/disposeAsync
// "throws-suppressederror-if-multiple-errors-during-disposal"):
//
//     var stack = new AsyncDisposableStack();
//     var error1 = new Error();
//     var error2 = new Error();
//     stack.try_defer(async function () { throw error1; });
//     stack.try_defer(async function () { throw error2; });
//     try { await stack.disposeAsync(); } catch (e) {
//         assert(e instanceof SuppressedError);
//         assert.sameValue(e.error, error1);
//         assert.sameValue(e.suppressed, error2);
//     }
//
// No error is lost: `Errors` keeps both, in the order they happened (error2
// is disposed of first), and the body's own error before them.
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct JsError(&'static str);

impl std::fmt::Display for JsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for JsError {}

#[test]
fn js_async_disposable_stack_two_failing_disposals_are_both_kept() {
    let result: Result<(), Errors<JsError>> = block_on(scope(async |d| {
        d.defer_async(async {
            yield_now().await;
            Err(JsError("error1"))
        });
        d.defer_async(async {
            yield_now().await;
            Err(JsError("error2"))
        });
        Ok(())
    }));
    let errors = result.unwrap_err();
    assert_eq!(
        errors.iter().collect::<Vec<_>>(),
        [&JsError("error2"), &JsError("error1")]
    );
    // `Display` shows the first and counts the rest; `{:#}` shows them all.
    assert_eq!(errors.to_string(), "error2 (and 1 later error)");
    assert_eq!(format!("{errors:#}"), "error2; error1");
    // `Error::source` is the first error's cause (none here), not its
    // sibling: anyhow and eyre print siblings as "Caused by:" otherwise.
    let mut chain = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(&errors);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    assert_eq!(chain, ["error2 (and 1 later error)"]);
    assert_eq!(errors.last(), &JsError("error1"), "the newest");
    // `?` works with it: into `Box<dyn Error>`.
    let boxed = || -> Result<(), Box<dyn std::error::Error>> { Err(errors)? };
    assert_eq!(
        boxed().unwrap_err().to_string(),
        "error2 (and 1 later error)"
    );
}

/// The same proposal's `await using` with a throwing body: the body's error
/// comes first, then each disposal's (JS nests them in `SuppressedError`s).
#[test]
fn js_body_error_then_disposal_errors_in_order() {
    let result: Result<u8, Errors<JsError>> = block_on(scope(async |d| {
        let _res = d.guard_async("resource", |_| async { Err(JsError("dispose failed")) });
        d.defer(|| Err(JsError("defer failed")));
        Err(JsError("body failed"))?
    }));
    let errors = result.unwrap_err();
    assert_eq!(
        errors.into_vec(),
        [
            JsError("body failed"),
            JsError("defer failed"),
            JsError("dispose failed")
        ]
    );
}

/// `Errors<io::Error>` converts into `io::Error` with `?` (kind of the
/// first), keeping the chain as its inner error.
#[test]
fn errors_of_io_errors_convert_with_question_mark() {
    use std::io;
    let run = || -> io::Result<()> {
        let r: Result<(), Errors<io::Error>> = block_on(scope(async |d| {
            d.defer(|| Err(io::Error::new(io::ErrorKind::BrokenPipe, "flush")));
            Err(io::Error::new(io::ErrorKind::NotFound, "open"))?
        }));
        r?;
        Ok(())
    };
    let e = run().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let inner = e
        .get_ref()
        .unwrap()
        .downcast_ref::<Errors<io::Error>>()
        .unwrap();
    assert_eq!(inner.len(), 2);
}

// ---------------------------------------------------------------------------
// scopeguard (https://github.com/bluss/scopeguard, src/lib.rs tests
// `test_defer_success_1`, `test_defer_success_2`, `test_defer_unwind_1`,
// `test_defer_unwind_2`):
//
//     let drops = Cell::new(0);
//     {
//         defer_on_success!(drops.set(1));
//         assert_eq!(drops.get(), 0);
//     }
//     assert_eq!(drops.get(), 1);
//
//     let _ = catch_unwind(|| { defer_on_success!(drops.set(1)); panic!("failure") });
//     assert_eq!(drops.get(), 0);
//
//     let _ = catch_unwind(|| { defer_on_unwind!(drops.set(1)); assert_eq!(drops.get(), 0); panic!("failure") });
//     assert_eq!(drops.get(), 1);
//
//     { defer_on_unwind!(drops.set(1)); }
//     assert_eq!(drops.get(), 0);
// ---------------------------------------------------------------------------

#[test]
fn scopeguard_defer_success_1() {
    let drops = std::cell::Cell::new(0);
    block_on(scope_local(async |d| {
        d.defer(|| drops.set(1)).when(When::Ok);
        assert_eq!(drops.get(), 0);
    }));
    assert_eq!(drops.get(), 1);
}

#[test]
fn scopeguard_defer_success_2() {
    let drops = std::cell::Cell::new(0);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope_local(async |d| {
            d.defer(|| drops.set(1)).when(When::Ok);
            panic!("failure")
        }))
    }));
    assert_eq!(drops.get(), 0);
}

#[test]
fn scopeguard_defer_unwind_1() {
    let drops = std::cell::Cell::new(0);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope_local(async |d| {
            d.defer(|| drops.set(1)).when(When::Panicked);
            assert_eq!(drops.get(), 0);
            panic!("failure")
        }))
    }));
    assert_eq!(drops.get(), 1);
}

#[test]
fn scopeguard_defer_unwind_2() {
    let drops = std::cell::Cell::new(0);
    block_on(scope_local(async |d| {
        d.defer(|| drops.set(1)).when(When::Panicked);
    }));
    assert_eq!(drops.get(), 0);
}

/// scopeguard's `OnUnwind` runs when the guard is dropped *during* an
/// unwinding panic: here a scope dropped (cancelled) while a panic unwinds
/// through the code that owns it.
#[test]
fn scopeguard_on_unwind_runs_for_a_scope_dropped_during_unwinding() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d2 = drops.clone();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut scope = Box::pin(scope(async move |d| {
            let d3 = d2.clone();
            d.defer(move || {
                d3.fetch_add(1, SeqCst);
            })
            .when(When::Panicked);
            d.defer(move || unreachable!("cancelled")).when(When::Ok);
            std::future::pending::<()>().await
        }));
        let _ = support::poll_once(scope.as_mut(), &support::WakeCounter::new());
        panic!("the owner panics; the scope is dropped while unwinding");
    }));
    assert_eq!(drops.load(SeqCst), 1);
}

/// The ambient forms, from code that has no handle: they run however the
/// body ends (conditions need the handle: they are about its output).
#[test]
fn ambient_forms_run_on_success_and_on_panic() {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let r = ran.clone();
    block_on(scope(async move |_| {
        let (a, b) = (r.clone(), r.clone());
        deferral::defer(move || a.lock().unwrap().push("sync"));
        deferral::defer_async(async move { b.lock().unwrap().push("async") });
    }));
    assert_eq!(*ran.lock().unwrap(), ["async", "sync"]);

    let ran = Arc::new(Mutex::new(Vec::new()));
    let r = ran.clone();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |_| -> u64 {
            let (a, b) = (r.clone(), r.clone());
            deferral::defer(move || a.lock().unwrap().push("sync"));
            deferral::defer_async(async move { b.lock().unwrap().push("async") });
            panic!("boom")
        }))
    }));
    assert_eq!(*ran.lock().unwrap(), ["async", "sync"]);
    assert!(deferral::scope::try_defer(|| ()).is_err(), "no scope here");
}

/// Recovering a panic that a cleanup (not the body) raised keeps the
/// body's output unless the cleanup supplies another.
#[test]
fn recover_a_cleanup_panic_after_the_body_returned() {
    let out = block_on(scope(async |d| {
        d.defer_with(|exit: &mut Exit<u8>| {
            assert!(exit.is_panicked());
            assert_eq!(exit.output(), Some(&1), "the body did return");
            let p = exit.recover(2).unwrap();
            assert_eq!(p.downcast_ref::<&str>(), Some(&"cleanup panics"));
        });
        d.defer(|| panic!("cleanup panics"));
        1
    }));
    assert_eq!(out, 2);
}

/// The guard counterpart of Go's `defer f.Close()` keeping its error: the
/// body uses the value as `&mut`, the cleanup consumes it, a failing close
/// turns `Ok` into `Err` — and a body error wins over it (Go's idiom
/// `if err == nil { err = cerr }`) unless the output is an `Errors` chain.
#[test]
fn guard_async_close_error_becomes_the_output_error() {
    struct File(Vec<u8>, bool);
    impl File {
        async fn close(self) -> Result<(), String> {
            yield_now().await;
            if self.1 {
                Err(format!("close failed after {} bytes", self.0.len()))
            } else {
                Ok(())
            }
        }
    }
    for (close_fails, body_fails) in [(false, false), (true, false), (false, true), (true, true)] {
        let result: Result<usize, String> = block_on(scope(async move |d| {
            let mut f = d.guard_async(File(Vec::new(), close_fails), File::close);
            f.0.extend_from_slice(b"data");
            yield_now().await;
            if body_fails {
                return Err("write failed".into());
            }
            Ok(f.0.len())
        }));
        let expected = match (close_fails, body_fails) {
            (_, true) => Err("write failed".to_string()),
            (true, false) => Err("close failed after 4 bytes".to_string()),
            (false, false) => Ok(4),
        };
        assert_eq!(result, expected);
    }
    // With `Errors`, both are kept.
    let result: Result<usize, Errors<String>> = block_on(scope(async |d| {
        let _f = d.guard_async(File(vec![1], true), File::close);
        Err("write failed".to_string())?
    }));
    assert_eq!(
        result.unwrap_err().into_vec(),
        ["write failed", "close failed after 1 bytes"]
    );
}
