//! Ports of CPython's `Lib/test/test_context.py` (python/cpython,
//! commit 01afd3c227de36afa69404ff35f0558d14ce28a5) to `ContextVar` and
//! `Snapshot`. Each test names the Python test it ports.
//!
//! The mapping: `var.set(v)` ... `var.reset(token)` is `var.run(v, || ..)`
//! (scoped: the reset happens when the closure returns, also on unwind);
//! `copy_context()` is `Snapshot::capture()`; `ctx.run(f)` is
//! `snapshot.run(f)`; a generator with its own `_context` is a future
//! wrapped with `Snapshot::wrap`; a plain future sees the poller's context
//! (a "dependent" generator). `ContextVar(name, default=..)` has no
//! default here: `get()` returns `None` when unset. Tokens (`reset` with a
//! used token or another variable's) have no counterpart: the scoped API
//! makes those mistakes unrepresentable.

#![cfg(feature = "std")]

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use deferral::{ContextVar, Snapshot};

static C: ContextVar<&'static str> = ContextVar::new();
static D: ContextVar<&'static str> = ContextVar::new();
static N: ContextVar<u32> = ContextVar::new();
static L: ContextVar<Vec<u32>> = ContextVar::new();

/// Returns `Pending` once (waking itself), then `Ready`.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn yield_once() -> YieldOnce {
    YieldOnce(false)
}

/// Polls `f` once with `ctx` current.
fn poll_in<F: Future>(f: Pin<&mut F>, ctx: &Snapshot) -> Poll<F::Output> {
    ctx.run(|| f.poll(&mut Context::from_waker(Waker::noop())))
}

type Seen = Arc<Mutex<Vec<Option<&'static str>>>>;

fn record(seen: &Seen) {
    seen.lock().unwrap().push(C.get());
}

/// test_context.py `ContextTest.test_context_getset_1`: unset → `None`
/// (`get(None)`); set 42, then `'spam'`, reset back to 42; a context
/// copied while `'spam2'` is set keeps it (`len` 1) after the resets; a
/// context copied at the end does not have the variable (`len` 0).
#[test]
fn getset_1() {
    assert_eq!(C.get(), None);
    let ctx1 = N.run(42, || {
        assert_eq!(N.get(), Some(42));
        N.run(7, || assert_eq!(N.get(), Some(7))); // set('spam'); reset(t)
        assert_eq!(N.get(), Some(42));
        N.run(99, || {
            assert_eq!(N.get(), Some(99));
            Snapshot::capture()
        })
    });
    assert_eq!(N.get(), None); // reset(t0)
    assert_eq!(ctx1.get(&N), Some(&99));
    assert_eq!(ctx1.len(), 1);
    let ctx2 = Snapshot::capture();
    assert_eq!(ctx2.get(&N), None);
    assert_eq!(ctx2.len(), 0);
}

/// test_context.py `ContextTest.test_context_run_2`: `ctx.run(f, ...)`
/// returns what `f` returns.
#[test]
fn run_2_returns_the_result() {
    let ctx = Snapshot::empty();
    assert_eq!(ctx.run(|| (1, "bar")), (1, "bar"));
    let ctx = C.run("x", Snapshot::capture);
    assert_eq!(ctx.run(|| (C.get(), 11)), (Some("x"), 11));
}

/// test_context.py `ContextTest.test_context_run_3`: an exception raised
/// in `ctx.run(func)` propagates out of it.
#[test]
fn run_3_propagates_panics() {
    let ctx = C.run("x", Snapshot::capture);
    let err = catch_unwind(AssertUnwindSafe(|| {
        ctx.run(|| {
            let zero = std::hint::black_box(0);
            1 / zero
        })
    }));
    assert!(err.is_err());
    assert_eq!(C.get(), None);
}

/// test_context.py `ContextTest.test_context_run_4`: inside `ctx1.run`,
/// the variable is unset; set to `'spam'`, `ctx2.run(func2)` (an empty
/// context) does not see it; afterwards it is `'spam'` again; a copy has
/// exactly it.
#[test]
fn run_4_nested_runs_of_different_contexts() {
    let ctx1 = Snapshot::empty();
    let ctx2 = Snapshot::empty();
    let cur = D.run("outer", || {
        ctx1.run(|| {
            assert_eq!((C.get(), D.get()), (None, None));
            C.run("spam", || {
                ctx2.run(|| assert_eq!((C.get(), D.get()), (None, None)));
                assert_eq!(C.get(), Some("spam"));
                let cur = Snapshot::capture();
                assert_eq!(cur.len(), 1);
                assert_eq!(cur.get(&C), Some(&"spam"));
                cur
            })
        })
    });
    assert_eq!(cur.get(&C), Some(&"spam"));
    assert_eq!((C.get(), D.get()), (None, None));
}

/// test_context.py `ContextTest.test_context_run_5`: a variable set
/// inside `ctx.run(func)` that then raises is unset afterwards.
#[test]
fn run_5_a_panic_after_a_set_leaks_nothing() {
    let ctx = Snapshot::empty();
    let err = catch_unwind(AssertUnwindSafe(|| {
        ctx.run(|| {
            assert_eq!(C.get(), None);
            C.run("spam", || panic!("1 / 0"))
        })
    }));
    assert!(err.is_err());
    assert_eq!(C.get(), None);
}

/// test_context.py `ContextTest.test_context_run_6` (and
/// `test_context_getset_3`): inside `ctx.run(fun)`, `c.set(42)` is seen by
/// `c.get()` and by `ctx.get(c)`. Python contexts are mutable: the set
/// changes `ctx`.
///
/// deferral differs: a `Snapshot` never changes once made (TC39
/// `AsyncContext.Snapshot`); a set inside its run is seen by `get()`, not
/// by the snapshot (capture a new one to keep it).
#[test]
fn run_6_a_set_inside_run_is_seen_in_the_context_differs() {
    let ctx = Snapshot::empty();
    ctx.run(|| {
        assert_eq!(N.get(), None);
        assert_eq!(ctx.get(&N), None);
        N.run(42, || {
            assert_eq!(N.get(), Some(42));
            assert_eq!(ctx.get(&N), None, "the snapshot is unchanged");
            assert_eq!(Snapshot::capture().get(&N), Some(&42));
        });
    });
}

/// test_context.py `ContextTest.test_context_run_7` (and
/// `test_context_manager_is_not_reentrant`): `ctx.run(fun)` inside
/// `ctx.run(fun)` raises `RuntimeError('... is already entered')`.
///
/// deferral differs (documented on `Snapshot::run`): a snapshot never
/// changes, so running it inside its own run is harmless and allowed, as
/// TC39's `AsyncContext.Snapshot` allows it.
#[test]
fn run_7_a_context_entered_twice_differs() {
    let ctx = C.run("x", Snapshot::capture);
    let nested = ctx.run(|| catch_unwind(AssertUnwindSafe(|| ctx.run(|| C.get()))));
    assert_eq!(nested.ok(), Some(Some("x")));
}

/// test_context.py `ContextTest.test_context_getset_5`: in a copied
/// context, setting a new list and appending to it leaves the outer
/// value (`[]`) alone.
#[test]
fn getset_5_a_copy_isolates_the_caller() {
    L.run(vec![], || {
        Snapshot::capture().run(|| {
            L.run(vec![], || {
                let mut v = L.get().unwrap();
                v.push(42); // a clone: values are shared read-only
                L.run(v, || assert_eq!(L.get(), Some(vec![42])));
            })
        });
        assert_eq!(L.get(), Some(vec![]));
    });
}

/// test_context.py `ContextTest.test_context_copy_1`: inside
/// `ctx1.run`, `c.set(10)`; `ctx2 = ctx1.copy()` has 10; `c.set(20)`:
/// `ctx1[c]` is 20, `ctx2[c]` still 10; in `ctx2.run`, `c.get()` is 10
/// and `c.set(30)` makes `ctx2[c]` 30 while `ctx1[c]` stays 20. Faithful
/// port of the mutations (they are made to `ctx1`/`ctx2` in Python).
///
/// deferral differs as in `run_6`: snapshots never change (the next test
/// is the counterpart with captured snapshots).
#[test]
fn copy_1_sets_inside_run_change_the_context_differs() {
    let ctx1 = Snapshot::empty();
    ctx1.run(|| {
        N.run(10, || {
            let ctx2 = ctx1.clone(); // ctx1.copy()
            assert_eq!(ctx2.get(&N), None, "a copy of an unchanged snapshot");
            N.run(20, || {
                assert_eq!(ctx1.get(&N), None);
                assert_eq!(N.get(), Some(20));
            });
        });
    });
}

/// The counterpart of test_context_copy_1 in the immutable model: what
/// Python reads through the mutated `ctx1`/`ctx2` is read here through a
/// snapshot captured after the set; each run of a copy sees its own
/// values and sets inside it do not reach the other.
#[test]
fn copy_1_counterpart_with_captured_snapshots() {
    let ctx2 = N.run(10, Snapshot::capture);
    let ctx1 = N.run(20, Snapshot::capture);
    assert_eq!((ctx1.get(&N), ctx2.get(&N)), (Some(&20), Some(&10)));
    let ctx2_after = ctx2.run(|| {
        assert_eq!(N.get(), Some(10));
        N.run(30, || {
            assert_eq!(N.get(), Some(30));
            Snapshot::capture()
        })
    });
    assert_eq!(ctx2_after.get(&N), Some(&30));
    assert_eq!((ctx1.get(&N), ctx2.get(&N)), (Some(&20), Some(&10)));
}

/// test_context.py `ContextTest.test_context_threads_1`: ten threads each
/// set the variable ten times, sleep, and read back their own value.
#[test]
fn threads_1_each_thread_has_its_own_context() {
    let outer = N.run(1000, || {
        let handles: Vec<_> = (0..10u32)
            .map(|num| {
                std::thread::spawn(move || {
                    assert_eq!(N.get(), None, "a new thread starts empty");
                    for i in 0..10 {
                        N.run(num + i, || {
                            std::thread::sleep(std::time::Duration::from_micros(
                                ((num * 7 + i * 13) % 50) as u64 * 20,
                            ));
                            assert_eq!(N.get(), Some(num + i));
                        });
                    }
                    num
                })
            })
            .collect();
        let out: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (out, N.get())
    });
    assert_eq!(outer, ((0..10).collect::<Vec<_>>(), Some(1000)));
}

/// test_context.py `ContextTest.test_context_manager` and
/// `test_context_manager_nested`: `with copy_context():` a set inside is
/// gone at the exit; nested, the outer copy keeps `'outer'` while the
/// inner sets `'inner'`.
#[test]
fn context_manager_nested() {
    assert_eq!(C.get(), None);
    Snapshot::capture().run(|| {
        C.run("outer", || {
            let outer_ctx = Snapshot::capture();
            Snapshot::capture().run(|| {
                assert_eq!(C.get(), Some("outer"));
                C.run("inner", || {
                    assert_eq!(outer_ctx.get(&C), Some(&"outer"));
                    assert_eq!(C.get(), Some("inner"));
                });
            });
            assert_eq!(C.get(), Some("outer"));
        });
    });
    assert_eq!(C.get(), None);
}

/// test_context.py `ContextTest.test_context_manager_enter_again_after_exit`:
/// a context left with `'updated'` set shows it when entered again;
/// outside, the initial value. (Counterpart: the snapshot captured where
/// `'updated'` is set.)
#[test]
fn context_entered_again_after_exit() {
    let ctx = C.run("updated", Snapshot::capture);
    assert_eq!(C.get(), None);
    assert_eq!(ctx.run(|| C.get()), Some("updated"));
    assert_eq!(C.get(), None);
    assert_eq!(ctx.run(|| C.get()), Some("updated"));
}

/// test_context.py `GeneratorContextTest.test_none_is_dependent`: a
/// generator without its own context sees the caller's at every resume
/// (here: a plain future sees the poller's context at every poll).
#[test]
fn a_plain_future_is_dependent() {
    let seen = Seen::default();
    let s = seen.clone();
    let mut fut = pin!(async move {
        loop {
            record(&s);
            yield_once().await;
        }
    });
    let _ = poll_in(fut.as_mut(), &Snapshot::empty());
    let _ = poll_in(fut.as_mut(), &C.run("updated outer", Snapshot::capture));
    let _ = poll_in(fut.as_mut(), &C.run("updated inner", Snapshot::capture));
    let _ = poll_in(fut.as_mut(), &Snapshot::empty());
    assert_eq!(
        *seen.lock().unwrap(),
        [None, Some("updated outer"), Some("updated inner"), None]
    );
}

/// test_context.py `GeneratorContextTest.test_dependent_to_independent`
/// (and `test_independent_to_independent_same`): a generator given its
/// own context sees `'independent'` whatever the caller's.
#[test]
fn a_wrapped_future_is_independent() {
    let seen = Seen::default();
    let s = seen.clone();
    let ctx = C.run("independent", Snapshot::capture);
    let mut fut = pin!(ctx.wrap(async move {
        loop {
            record(&s);
            yield_once().await;
        }
    }));
    let _ = poll_in(fut.as_mut(), &Snapshot::empty());
    let _ = poll_in(fut.as_mut(), &C.run("new context", Snapshot::capture));
    let _ = poll_in(fut.as_mut(), &Snapshot::empty());
    assert_eq!(*seen.lock().unwrap(), [Some("independent"); 3]);
    assert_eq!(C.get(), None);
}

/// test_context.py `GeneratorContextTest.test_generator_calls_generator`:
/// an independent generator (`'outer'`) that calls another (`'inner'`):
/// each sees its own, the caller `'initial'`, five times over.
#[test]
fn a_wrapped_future_polls_a_wrapped_future() {
    let seen = Seen::default();
    let (s_in, s_out) = (seen.clone(), seen.clone());
    let ctx_inner = C.run("inner", Snapshot::capture);
    let ctx_outer = C.run("outer", Snapshot::capture);
    let mut inner = Box::pin(ctx_inner.wrap(async move {
        loop {
            record(&s_in);
            yield_once().await;
        }
    }));
    let mut outer = pin!(ctx_outer.wrap(async move {
        loop {
            record(&s_out);
            let _ = inner.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            record(&s_out);
            yield_once().await;
        }
    }));
    for _ in 0..5 {
        assert_eq!(C.get(), None);
        let _ = poll_in(outer.as_mut(), &Snapshot::empty());
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 15);
    for step in seen.chunks(3) {
        assert_eq!(step, [Some("outer"), Some("inner"), Some("outer")]);
    }
}

/// test_context.py `AsyncContextTest.test_generator_switch_between_independent_dependent`:
/// an async generator resumed outside any context (`'default'`), then
/// under ctx1 (`'in ctx1'`), then entering ctx2 itself (`'in ctx2'`,
/// also when resumed under ctx3), then leaving it (`'in ctx1'`).
#[test]
fn switch_between_independent_and_dependent() {
    let ctx1 = C.run("in ctx1", Snapshot::capture);
    let ctx2 = C.run("in ctx2", Snapshot::capture);
    let ctx3 = C.run("in ctx3", Snapshot::capture);
    let seen = Seen::default();
    let s = seen.clone();
    let inner_ctx = ctx2.clone();
    let mut fut = pin!(async move {
        record(&s);
        yield_once().await;
        record(&s);
        yield_once().await;
        let s2 = s.clone();
        inner_ctx
            .wrap(async move {
                record(&s2);
                yield_once().await;
                record(&s2);
                yield_once().await;
            })
            .await;
        record(&s);
    });
    assert!(poll_in(fut.as_mut(), &Snapshot::empty()).is_pending());
    assert!(poll_in(fut.as_mut(), &ctx1).is_pending());
    assert!(poll_in(fut.as_mut(), &ctx1).is_pending());
    assert!(poll_in(fut.as_mut(), &ctx3).is_pending());
    assert!(poll_in(fut.as_mut(), &ctx1).is_ready());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            None,
            Some("in ctx1"),
            Some("in ctx2"),
            Some("in ctx2"),
            Some("in ctx1")
        ]
    );
}

/// test_context.py `AsyncContextTest.test_asyncio_independent_contexts`:
/// two tasks interleaved, each setting its own value (`'B'`, `'C'`) after
/// reading the outer `'A'`; each keeps its own across the other's steps,
/// and the outer context is `'A'` at the end.
#[test]
fn interleaved_tasks_have_independent_contexts() {
    let seen = Seen::default();
    C.run("A", || {
        let (s1, s2) = (seen.clone(), seen.clone());
        let task1 = Snapshot::capture().wrap(async move {
            record(&s1);
            yield_once().await;
            C.scope("B", async {
                yield_once().await;
                record(&s1);
                yield_once().await;
                record(&s1);
            })
            .await;
            record(&s1);
        });
        let task2 = Snapshot::capture().wrap(async move {
            yield_once().await;
            record(&s2);
            C.scope("C", async {
                yield_once().await;
                record(&s2);
                yield_once().await;
                record(&s2);
            })
            .await;
        });
        futures::executor::block_on(async {
            futures::join!(task1, task2);
        });
        assert_eq!(C.get(), Some("A"));
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().filter(|v| **v == Some("B")).count(), 2);
    assert_eq!(seen.iter().filter(|v| **v == Some("C")).count(), 2);
    assert_eq!(seen.iter().filter(|v| **v == Some("A")).count(), 3);
    assert_eq!(C.get(), None);
}
