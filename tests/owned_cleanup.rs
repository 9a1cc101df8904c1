//! Owning cleanup: a `DeferStack` filled directly or from a scope and
//! disposed of later (ports of JS `DisposableStack.move()` and Python's
//! `ExitStack.pop_all()`), running or clearing cleanup early (ports of
//! async-safe-defer's `clear`, `run_now`, `into_parts`, `len`), ambient
//! tokens, and exactly-once accounting on every new path.
#![cfg(feature = "std")]

mod support;

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use deferral::{DeferStack, Exit, Guard, When, scope};
use support::{DropLog, block_on, yield_now};

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

fn lines(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

// ---------------------------------------------------------------------------
// ECMAScript explicit resource management, README "Assist in Complex
// Construction" (https://github.com/tc39/proposal-explicit-resource-management):
//
//     class PluginHost {
//       #disposed = false; #disposables; #channel; #socket;
//       constructor() {
//         using stack = new DisposableStack();
//         this.#channel = stack.use(new NodeProcessIpcChannelAdapter(process));
//         this.#socket = stack.use(new NodePluginHostIpcSocket(this.#channel));
//         this.#disposables = stack.move();
//       }
//       [Symbol.dispose]() {
//         if (!this.#disposed) {
//           this.#disposed = true;
//           const disposables = this.#disposables;
//           this.#socket = undefined; this.#channel = undefined;
//           this.#disposables = undefined;
//           disposables[Symbol.dispose]();
//         }
//       }
//     }
//
// If construction fails, `stack` is disposed when the constructor exits:
// what was opened so far is closed. If it succeeds, everything moves into
// `#disposables`, disposed of with the host.
// ---------------------------------------------------------------------------

struct PluginHost {
    disposed: bool,
    disposables: Option<DeferStack>,
}

impl PluginHost {
    fn new(log: &Log, socket_fails: bool) -> Result<PluginHost, &'static str> {
        let mut stack = DeferStack::new();
        push(log, "channel subscribed");
        let l = log.clone();
        stack.defer(move || push(&l, "channel unsubscribed"));
        if socket_fails {
            return Err("socket failed"); // `stack` is disposed here
        }
        push(log, "socket opened");
        let l = log.clone();
        stack.defer(move || push(&l, "socket closed"));
        Ok(PluginHost {
            disposed: false,
            disposables: Some(stack.take()), // `stack.move()`
        })
    }

    fn dispose(&mut self) {
        if !self.disposed {
            self.disposed = true;
            drop(self.disposables.take());
        }
    }
}

#[test]
fn js_plugin_host_construction_failure_disposes_what_was_opened() {
    let log = Log::default();
    assert_eq!(PluginHost::new(&log, true).err(), Some("socket failed"));
    assert_eq!(lines(&log), ["channel subscribed", "channel unsubscribed"]);
}

#[test]
fn js_plugin_host_moves_its_disposables_and_disposes_them_once() {
    let log = Log::default();
    let mut host = PluginHost::new(&log, false).unwrap();
    assert_eq!(lines(&log), ["channel subscribed", "socket opened"]);
    host.dispose();
    host.dispose(); // idempotent, as `#disposed` makes it
    assert_eq!(
        lines(&log),
        [
            "channel subscribed",
            "socket opened",
            "socket closed",
            "channel unsubscribed"
        ]
    );
}

// ---------------------------------------------------------------------------
// Python, contextlib.ExitStack.pop_all
// (https://docs.python.org/3/library/contextlib.html#contextlib.ExitStack.pop_all):
//
//     with ExitStack() as stack:
//         files = [stack.enter_context(open(fname)) for fname in filenames]
//         # Hold onto the close method, but don't call it yet.
//         close_files = stack.pop_all().close
//         # If opening any file fails, all previously opened files will be
//         # closed automatically. If all files are opened successfully,
//         # they will remain open even after the with statement ends.
//         # close_files() can then be invoked explicitly to close them all.
//
// The `with` block is a scope; `pop_all` is `Defer::move_all`.
// ---------------------------------------------------------------------------

async fn open_all(names: &[&'static str], log: &Log) -> Result<DeferStack, String> {
    scope(async |d| {
        for &name in names {
            if name.starts_with('?') {
                return Err(format!("cannot open {name}"));
            }
            push(log, format!("open {name}"));
            let l = log.clone();
            d.defer(move || push(&l, format!("close {name}")));
        }
        let mut close_files = DeferStack::new();
        assert_eq!(d.move_all(&mut close_files), names.len());
        Ok(close_files)
    })
    .await
}

#[test]
fn python_pop_all_keeps_files_open_until_close_is_called() {
    let log = Log::default();
    let close_files = block_on(open_all(&["a", "b"], &log)).unwrap();
    assert_eq!(
        lines(&log),
        ["open a", "open b"],
        "still open after the scope"
    );
    drop(close_files); // `close_files()`
    assert_eq!(lines(&log), ["open a", "open b", "close b", "close a"]);
}

#[test]
fn python_pop_all_closes_what_was_opened_when_opening_fails() {
    let log = Log::default();
    let err = block_on(open_all(&["a", "b", "?c"], &log)).err().unwrap();
    assert_eq!(err, "cannot open ?c");
    assert_eq!(lines(&log), ["open a", "open b", "close b", "close a"]);
}

// ---------------------------------------------------------------------------
// async-safe-defer 0.2.0 (https://docs.rs/async-safe-defer/0.2.0): the
// guard's `run_now` and `into_parts` (tests/sync.rs
// `guard_can_run_immediately`, `guard_into_parts_...`), and the async
// scope's `len()` and `clear()` (remove every deferred operation without
// running it).
// ---------------------------------------------------------------------------

#[test]
fn async_safe_defer_run_now_runs_once_and_only_now() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(scope(async move |d| {
        let l2 = l.clone();
        let guard = d.guard(7, move |v| l2.push(format!("cleanup {v}")));
        assert_eq!(d.len(), 1);
        Guard::run_now(guard);
        l.push("after run_now");
        assert_eq!(d.len(), 0);
    }));
    assert_eq!(log.events(), ["cleanup 7", "after run_now"]);
}

#[test]
fn async_safe_defer_run_now_async_returns_the_cleanup_future() {
    let out: Result<(), String> = block_on(scope(async |d| {
        let guard = d.guard_async(String::from("conn"), |c| async move {
            yield_now().await;
            Err(format!("{c}: close failed"))
        });
        let closed = Guard::run_now(guard).await; // its error is ours
        assert_eq!(closed, Err("conn: close failed".to_string()));
        Ok(())
    }));
    assert_eq!(out, Ok(()), "not added to the scope's output");
}

#[test]
fn async_safe_defer_into_parts_returns_value_and_cleanup_unrun() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(scope(async move |d| {
        let l2 = l.clone();
        let guard = d.guard(vec![1], move |v| l2.push(format!("cleanup {v:?}")));
        let (mut value, cleanup) = Guard::into_parts(guard);
        value.push(2);
        l.push("split");
        cleanup(value);
    }));
    assert_eq!(log.events(), ["split", "cleanup [1, 2]"]);
}

#[test]
fn async_safe_defer_len_and_clear() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(scope(async move |d| {
        assert_eq!(d.len(), 0);
        let held = l.on_drop("sync");
        d.defer(move || drop(held));
        let held = l.on_drop("async");
        d.defer_async(async move { drop(held) });
        let l2 = l.clone();
        let _guard = d.guard(l.on_drop("guarded"), move |g| {
            l2.push("guard cleanup");
            drop(g)
        });
        assert_eq!(d.len(), 3);
        assert_eq!(d.clear(), 2, "guards stay with their Guard");
        assert_eq!(d.len(), 1);
        l.push("cleared");
    }));
    assert_eq!(
        log.events(),
        [
            "drop async",
            "drop sync",
            "cleared",
            "guard cleanup",
            "drop guarded"
        ]
    );
}

#[test]
fn clear_refuses_old_tokens_and_reuses_the_bytes() {
    block_on(
        deferral::scope::ScopeBuilder::new()
            .capacity::<64>()
            .run(async |d| {
                for _ in 0..1000 {
                    let token = d.defer(|| unreachable!("cleared"));
                    assert_eq!(d.clear(), 1);
                    assert!(token.try_cancel().is_none());
                }
                let token = d.defer(|| ());
                assert!(token.try_cancel().is_some(), "new tokens work");
            }),
    );
}

#[test]
#[should_panic(expected = "cleared or moved")]
fn cancel_after_clear_panics_with_a_message() {
    block_on(scope(async |d| {
        let token = d.defer(|| ());
        d.clear();
        let _ = token.cancel();
    }));
}

#[test]
fn clear_with_a_panicking_destructor_drops_the_rest_then_resumes() {
    let log = DropLog::new();
    let l = log.clone();
    let panic = catch_unwind(AssertUnwindSafe(|| {
        block_on(scope(async move |d| {
            let held = l.on_drop("a");
            d.defer(move || drop(held));
            let p = support::DropCounter::new().panicking();
            d.defer(move || drop(p));
            let held = l.on_drop("c");
            d.defer(move || drop(held));
            d.clear();
        }))
    }))
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"PanicOnDrop dropped"));
    let mut events = log.events();
    events.sort();
    assert_eq!(events, ["drop a", "drop c"]);
}

// ---------------------------------------------------------------------------
// DeferStack itself.
// ---------------------------------------------------------------------------

#[test]
fn stack_dispose_runs_everything_lifo_sync_and_async() {
    let log = Log::default();
    let mut stack: DeferStack = DeferStack::new();
    for i in 0..3 {
        let l = log.clone();
        stack.defer(move || push(&l, format!("sync {i}")));
        let l = log.clone();
        stack.defer_async(async move {
            yield_now().await;
            push(&l, format!("async {i}"));
        });
    }
    block_on(stack.dispose());
    assert_eq!(
        lines(&log),
        [
            "async 2", "sync 2", "async 1", "sync 1", "async 0", "sync 0"
        ]
    );
}

#[test]
fn stack_spills_past_its_inline_bytes_and_keeps_the_order() {
    let log = Log::default();
    let mut stack: DeferStack<deferral::scope::Sendable, 64> = DeferStack::new();
    for i in 0..50 {
        let l = log.clone();
        let big = [i as u8; 40];
        stack.defer(move || push(&l, format!("{}", big[0])));
    }
    assert_eq!(stack.len(), 50);
    let moved = stack.take(); // moving a stack moves its inline bytes
    drop(moved);
    let expected: Vec<String> = (0..50).rev().map(|i| i.to_string()).collect();
    assert_eq!(lines(&log), expected);
}

#[test]
fn a_dropped_stack_runs_sync_cleanup_and_drops_async_cleanup_once() {
    let log = DropLog::new();
    let mut stack: DeferStack = DeferStack::new();
    let (l, held) = (log.clone(), log.on_drop("sync"));
    stack.defer(move || {
        l.push("run sync");
        drop(held)
    });
    let held = log.on_drop("async");
    stack.defer_async(async move { drop(held) });
    drop(stack); // no cancel handler in this test binary
    assert_eq!(log.events(), ["drop async", "run sync", "drop sync"]);
}

#[test]
fn stack_dispose_with_panics_runs_the_rest_and_resumes_the_first() {
    let log = DropLog::new();
    let mut stack: DeferStack = DeferStack::new();
    let l = log.clone();
    stack.defer(move || l.push("oldest"));
    stack.defer(|| panic!("second"));
    stack.defer_async(async {
        yield_now().await;
        panic!("first")
    });
    let l = log.clone();
    stack.defer(move || l.push("newest"));
    let panic = catch_unwind(AssertUnwindSafe(|| block_on(stack.dispose()))).unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"first"));
    assert_eq!(log.events(), ["newest", "oldest"]);
}

#[test]
fn a_dispose_dropped_midway_drops_the_started_one_and_runs_the_rest() {
    let log = DropLog::new();
    let mut stack: DeferStack = DeferStack::new();
    let (l, held) = (log.clone(), log.on_drop("older sync"));
    stack.defer(move || {
        l.push("run older sync");
        drop(held)
    });
    let held = log.on_drop("pending async");
    stack.defer_async(async move {
        let _held = held;
        std::future::pending::<()>().await
    });
    let mut dispose = Box::pin(stack.dispose());
    assert!(support::poll_once(dispose.as_mut(), &support::WakeCounter::new()).is_pending());
    drop(dispose);
    assert_eq!(
        log.events(),
        ["drop pending async", "run older sync", "drop older sync"]
    );
}

#[test]
fn tokens_and_guards_move_into_a_stack_keeping_their_kind() {
    let log = Log::default();
    let mut stack: DeferStack = DeferStack::new();
    let l = log.clone();
    block_on(scope(async |d| {
        let (a, b, c) = (l.clone(), l.clone(), l.clone());
        let t = d.defer(move || push(&a, "moved defer"));
        t.move_to(&mut stack).unwrap();
        let t = d
            .defer(move || push(&b, "moved on_unwind"))
            .when(When::Panicked);
        t.move_to(&mut stack).unwrap();
        let g = d.guard(String::from("conn"), move |s| {
            push(&c, format!("closed {s}"))
        });
        Guard::move_to(g, &mut stack).unwrap();
        // Cleanup that reads this scope's output cannot leave it.
        let t = d.defer_with(|_: &mut Exit<()>| ());
        let t = t.move_to(&mut stack).unwrap_err();
        let _ = t.cancel();
        assert_eq!(d.len(), 0);
    }));
    assert!(lines(&log).is_empty(), "moved: not run by the scope");
    assert_eq!(stack.len(), 3);
    block_on(stack.dispose());
    // The stack "returned": on_unwind stays quiet.
    assert_eq!(lines(&log), ["closed conn", "moved defer"]);
}

#[test]
fn move_all_leaves_typed_cleanup_and_guards_behind() {
    let log = Log::default();
    let mut stack: DeferStack = DeferStack::new();
    let l = log.clone();
    let out: Result<(), String> = block_on(scope(async |d| {
        let (a, b, c) = (l.clone(), l.clone(), l.clone());
        d.defer(move || push(&a, "portable"));
        let token = d.defer(move || push(&b, "portable too"));
        d.defer(|| Err::<(), String>("typed: reports to the output".into()));
        let _g = d.guard(1, move |_| push(&c, "guard stays"));
        assert_eq!(d.move_all(&mut stack), 2);
        assert!(
            token.try_cancel().is_none(),
            "tokens are refused after move_all"
        );
        assert_eq!(d.len(), 2);
        Ok(())
    }));
    assert_eq!(out, Err("typed: reports to the output".to_string()));
    assert_eq!(lines(&log), ["guard stays"]);
    drop(stack);
    assert_eq!(lines(&log), ["guard stays", "portable too", "portable"]);
}

#[test]
fn move_all_into_a_full_stack_without_room_keeps_the_rest_registered() {
    let log = Log::default();
    let mut stack: DeferStack<deferral::scope::Sendable, 0> = DeferStack::new();
    let l = log.clone();
    block_on(scope(async |d| {
        let a = l.clone();
        d.defer(move || push(&a, "ran in the scope or the stack"));
        let moved = d.move_all(&mut stack);
        // With `alloc` the stack spills; without, nothing fits and it stays.
        assert_eq!(moved, usize::from(cfg!(feature = "alloc")));
        assert_eq!(d.len() + moved, 1);
    }));
    drop(stack);
    assert_eq!(lines(&log), ["ran in the scope or the stack"]);
}

// ---------------------------------------------------------------------------
// Ambient tokens.
// ---------------------------------------------------------------------------

#[test]
fn ambient_token_cancels_inside_its_scope_only() {
    let log = Log::default();
    let l = log.clone();
    let stale = Rc::new(RefCell::new(None));
    let s = stale.clone();
    block_on(scope(async move |_| {
        let a = l.clone();
        let token = deferral::scope::try_defer(move || push(&a, "cancelled?")).unwrap();
        let f = token
            .cancel()
            .unwrap_or_else(|_| panic!("its own scope: cancelled"));
        drop(f);
        let b = l.clone();
        let kept = deferral::scope::try_defer(move || push(&b, "ran")).unwrap();
        // In a nested scope it is not the current one: refused, kept.
        let kept = scope(async move |_| kept.cancel().err().unwrap()).await;
        *s.borrow_mut() = Some(kept);
    }));
    assert_eq!(lines(&log), ["ran"]);
    // Its scope is gone: refused, nothing touched.
    let stale = stale.borrow_mut().take().unwrap();
    assert!(stale.cancel().is_err());
    // And in another scope (maybe at the same address): refused.
    let stale2 = Rc::new(RefCell::new(None));
    let s2 = stale2.clone();
    block_on(scope(async move |_| {
        *s2.borrow_mut() = Some(deferral::scope::try_defer(|| ()).unwrap());
    }));
    let token = stale2.borrow_mut().take().unwrap();
    block_on(scope(async move |_| {
        deferral::scope::try_defer(|| ()).unwrap();
        assert!(token.cancel().is_err());
    }));
}

#[test]
fn ambient_token_after_clear_is_refused() {
    block_on(scope(async |d| {
        let token = deferral::scope::try_defer(|| unreachable!("cleared")).unwrap();
        assert_eq!(d.clear(), 1);
        // A new registration may take the same bytes: the id tells them apart.
        deferral::scope::try_defer(|| ()).unwrap();
        assert!(token.cancel().is_err());
        assert_eq!(d.len(), 1);
    }));
}

// ---------------------------------------------------------------------------
// Every new path, cancelled at every await point: each value is dropped
// exactly once and each cleanup runs at most once, whether it stayed in the
// scope, was cleared, moved into a stack, run now or split off.
// ---------------------------------------------------------------------------

fn new_paths(log: DropLog, stack: Arc<Mutex<DeferStack>>) -> impl Future<Output = ()> {
    scope(async move |d| {
        macro_rules! probe {
            ($name:literal) => {{
                log.push(concat!("new ", $name));
                let (l, held) = (log.clone(), log.on_drop($name));
                move || {
                    l.push(concat!("run ", $name));
                    drop(held)
                }
            }};
        }
        d.defer(probe!("cleared"));
        d.defer_async({
            let run = probe!("cleared async");
            async move { run() }
        });
        yield_now().await;
        assert_eq!(d.clear(), 2);
        yield_now().await;
        d.defer(probe!("moved"));
        d.defer_async({
            let run = probe!("moved async");
            async move {
                yield_now().await;
                run()
            }
        });
        yield_now().await;
        assert_eq!(d.move_all(&mut stack.lock().unwrap()), 2);
        yield_now().await;
        let run = probe!("run now");
        let g = d.guard((), move |()| run());
        yield_now().await;
        Guard::run_now(g);
        let run = probe!("split");
        let g = d.guard((), move |()| run());
        let (value, cleanup) = Guard::into_parts(g);
        yield_now().await;
        cleanup(value);
        let run = probe!("moved guard");
        let g = d.guard((), move |()| run());
        Guard::move_to(g, &mut stack.lock().unwrap()).unwrap();
        yield_now().await;
        d.defer(probe!("stayed"));
        yield_now().await;
    })
}

#[test]
fn new_paths_cancelled_at_every_await_point_drop_everything_once() {
    let total = {
        let mut scope = Box::pin(new_paths(DropLog::new(), Arc::default()));
        let mut n = 1;
        while support::poll_once(scope.as_mut(), &support::WakeCounter::new()).is_pending() {
            n += 1;
        }
        n
    };
    for limit in 0..=total {
        for dispose in [false, true] {
            let log = DropLog::new();
            let stack: Arc<Mutex<DeferStack>> = Arc::default();
            let mut scope = Box::pin(new_paths(log.clone(), stack.clone()));
            let waker = support::WakeCounter::new();
            for _ in 0..limit {
                if support::poll_once(scope.as_mut(), &waker).is_ready() {
                    break;
                }
            }
            drop(scope);
            let stack = std::mem::take(&mut *stack.lock().unwrap());
            if dispose {
                block_on(stack.dispose());
            } else {
                drop(stack);
            }
            let events = log.events();
            let ctx = format!("dropped after {limit} polls, dispose={dispose}: {events:?}");
            for name in [
                "cleared",
                "cleared async",
                "moved",
                "moved async",
                "run now",
                "split",
                "moved guard",
                "stayed",
            ] {
                let count = |what: &str| {
                    events
                        .iter()
                        .filter(|e| **e == format!("{what} {name}"))
                        .count()
                };
                let (made, runs, drops) = (count("new"), count("run"), count("drop"));
                assert_eq!(drops, made, "{name} dropped exactly once if made: {ctx}");
                assert!(runs <= made, "{name} ran at most once: {ctx}");
            }
            // Once `clear` ran, what it cleared never runs.
            if let Some(at) = events.iter().position(|e| e == "new moved") {
                assert!(
                    !events[at..].iter().any(|e| e.starts_with("run cleared")),
                    "{ctx}"
                );
                assert!(
                    !events[..at].iter().any(|e| e.starts_with("run cleared")),
                    "{ctx}"
                );
            }
        }
    }
}
