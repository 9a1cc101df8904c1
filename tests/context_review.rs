//! Hostile review of "enter the creation context through a guard taken out
//! of line" (37aa41f0): panics at every depth of a nested-context chain,
//! promises moving between threads, re-entrant handlers, wakers that read
//! the context or panic, `detached` + `adopt`, `mem::forget` mid-chain.
#![cfg(feature = "std")]

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use deferral::{ContextVar, DeferredPromise, PromiseError, PromiseExt};

use support::{WakeCounter, block_on, poll_once, yield_now};

static V: ContextVar<u32> = ContextVar::new();
static W: ContextVar<&'static str> = ContextVar::new();

type Log = Arc<Mutex<Vec<(&'static str, Option<u32>)>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

/// A chain of four links, link k created under `V = k` (the source under
/// V = 1); the link at `depth` (1..=4) panics; the others record what they
/// see. Polled twice under `V = 99` / `W = "poller"` (plain and boxed);
/// after each poll (also the panicking one) and the drop, the poller's
/// context is intact.
#[test]
fn a_panic_at_any_depth_of_a_nested_chain_leaves_the_poller_intact() {
    for depth in 1..=4u32 {
        for boxed in [false, true] {
            let seen = log();
            let (s1, s2, s3, s4) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
            let src = V.run(1, || {
                DeferredPromise::<u32, u32>::lazy(move || async move {
                    yield_now().await;
                    s1.lock().unwrap().push(("src", V.get()));
                    if depth == 1 {
                        panic!("src");
                    }
                    Ok(V.get().unwrap())
                })
            });
            let chain = V.run(2, || {
                src.deferred_then(move |v| -> Result<u32, u32> {
                    s2.lock().unwrap().push(("then", V.get()));
                    if depth == 2 {
                        panic!("then");
                    }
                    Err(v * 10 + V.get().unwrap())
                })
            });
            let chain = V.run(3, || {
                W.run("inner", || {
                    chain.deferred_catch(move |e| -> Result<u32, u32> {
                        s3.lock().unwrap().push(("catch", V.get()));
                        assert_eq!(W.get(), Some("inner"));
                        if depth == 3 {
                            panic!("catch");
                        }
                        Ok(e * 10 + V.get().unwrap())
                    })
                })
            });
            let chain = V.run(4, || {
                chain.deferred_finally(move || {
                    s4.lock().unwrap().push(("finally", V.get()));
                    assert_eq!(W.get(), None);
                    if depth == 4 {
                        panic!("finally");
                    }
                })
            });
            let w = WakeCounter::new();
            let out = W.run("poller", || {
                V.run(99, || {
                    let check = || assert_eq!((V.get(), W.get()), (Some(99), Some("poller")));
                    let mut chain: Pin<Box<dyn std::future::Future<Output = Result<u32, u32>>>> =
                        if boxed {
                            Box::pin(chain.boxed_local())
                        } else {
                            Box::pin(chain)
                        };
                    assert!(poll_once(chain.as_mut(), &w).is_pending());
                    check();
                    let r = catch_unwind(AssertUnwindSafe(|| poll_once(chain.as_mut(), &w)));
                    check();
                    // Something created now captures the poller's context.
                    let after = DeferredPromise::<_, ()>::lazy(|| async { Ok(V.get()) });
                    assert_eq!(block_on(after), Ok(Some(99)));
                    check();
                    drop(chain);
                    check();
                    r
                })
            });
            assert_eq!((V.get(), W.get()), (None, None));
            let expected: Vec<_> = [
                ("src", Some(1)),
                ("then", Some(2)),
                ("catch", Some(3)),
                ("finally", Some(4)),
            ]
            .into_iter()
            .take(depth as usize)
            .collect();
            assert_eq!(
                *seen.lock().unwrap(),
                expected,
                "depth {depth} boxed {boxed}"
            );
            match depth {
                // The panic is a rejection or reaches the poller; either way
                // nothing above it ran.
                4 => assert!(out.is_err() || matches!(out, Ok(Poll::Ready(_)))),
                _ => assert!(out.is_err(), "depth {depth} boxed {boxed}: {out:?}"),
            }
        }
    }
}

/// A promise created on thread A under V = 3, polled first on thread B
/// (pending), then finished on thread C: each poll sees V = 3 inside and
/// leaves B's and C's own contexts as they were.
#[test]
fn a_promise_created_on_one_thread_runs_in_its_context_on_others() {
    let p = std::thread::spawn(|| {
        V.run(3, || {
            DeferredPromise::<u32, ()>::lazy(|| async {
                let a = V.get();
                yield_now().await;
                let b = V.get();
                Ok(a.unwrap() * 10 + b.unwrap())
            })
            .deferred_then(|v| Ok::<_, ()>((v, V.get())))
        })
    })
    .join()
    .unwrap();
    let mut p = Box::pin(p);
    let p = std::thread::spawn(move || {
        W.run("b", || {
            let w = WakeCounter::new();
            assert!(poll_once(p.as_mut(), &w).is_pending());
            assert_eq!((V.get(), W.get()), (None, Some("b")));
        });
        assert_eq!((V.get(), W.get()), (None, None));
        p
    })
    .join()
    .unwrap();
    let out = std::thread::spawn(move || {
        let mut p = p;
        V.run(7, || {
            let w = WakeCounter::new();
            let r = poll_once(p.as_mut(), &w);
            assert_eq!(V.get(), Some(7));
            r
        })
    })
    .join()
    .unwrap();
    assert_eq!(out, Poll::Ready(Ok((33, Some(3)))));
}

/// A handler that itself creates promises under other contexts and drives
/// them (one of which panics inside), nested three deep: every level sees
/// its own context before and after the nested ones.
#[test]
fn reentrant_handlers_see_their_own_context_around_nested_promises() {
    fn level(n: u32) -> u32 {
        let p = V.run(n, || {
            DeferredPromise::<u32, ()>::resolved(n).deferred_then(move |v| {
                assert_eq!(V.get(), Some(n));
                let nested = if n < 3 {
                    let inner = V.run(n + 10, || {
                        DeferredPromise::<u32, ()>::lazy(move || async move {
                            yield_now().await;
                            Ok(level(n + 1))
                        })
                    });
                    let got = block_on(inner).unwrap();
                    assert_eq!(V.get(), Some(n), "after the nested block_on");
                    got
                } else {
                    0
                };
                // A nested promise whose handler panics, caught here.
                let boom = V.run(n + 100, || {
                    DeferredPromise::<u32, ()>::resolved(0).deferred_then(|_| -> Result<u32, ()> {
                        assert!(V.get().unwrap() >= 100);
                        panic!("nested")
                    })
                });
                let r = catch_unwind(AssertUnwindSafe(|| block_on(boom)));
                assert!(r.is_err());
                assert_eq!(V.get(), Some(n), "after the nested panic");
                Ok(v * 1000 + nested)
            })
        });
        let before = V.get();
        let out = block_on(p).unwrap();
        assert_eq!(V.get(), before);
        out
    }
    assert_eq!(W.run("top", || level(1)), 6000);
    assert_eq!(V.get(), None);
}

/// A waker that records `V` on clone, wake and drop, and panics on the
/// `panic_on`-th clone (0: never).
struct ReadingWaker {
    log: Log,
    clones: std::sync::atomic::AtomicUsize,
    panic_on: usize,
}

fn reading_waker(log: Log, panic_on: usize) -> Waker {
    // SAFETY (every function below): `p` came from `Arc::into_raw` of a
    // `ReadingWaker` and owns one strong count (borrowed in `wake_by_ref`).
    unsafe fn clone(p: *const ()) -> RawWaker {
        // SAFETY: see above.
        let arc = unsafe { Arc::from_raw(p.cast::<ReadingWaker>()) };
        arc.log.lock().unwrap().push(("clone", V.get()));
        let n = arc.clones.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let new = arc.clone();
        let _ = Arc::into_raw(arc);
        if n == new.panic_on {
            drop(new);
            panic!("clone {n}");
        }
        RawWaker::new(Arc::into_raw(new).cast(), &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        // SAFETY: see above.
        let arc = unsafe { Arc::from_raw(p.cast::<ReadingWaker>()) };
        arc.log.lock().unwrap().push(("wake", V.get()));
    }
    unsafe fn wake_by_ref(p: *const ()) {
        // SAFETY: see above.
        let arc = unsafe { &*p.cast::<ReadingWaker>() };
        arc.log.lock().unwrap().push(("wake", V.get()));
    }
    unsafe fn drop_w(p: *const ()) {
        // SAFETY: see above.
        let arc = unsafe { Arc::from_raw(p.cast::<ReadingWaker>()) };
        arc.log.lock().unwrap().push(("drop", V.get()));
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_w);
    let arc = Arc::new(ReadingWaker {
        log,
        clones: 0.into(),
        panic_on,
    });
    // SAFETY: the vtable's functions keep the `Arc` count balanced.
    unsafe { Waker::from_raw(RawWaker::new(Arc::into_raw(arc).cast(), &VTABLE)) }
}

/// What a waker sees of the context when an escaping-resolver promise
/// (made by `make` under V = 1) registers it twice under V = 2 (dropping the
/// previous one) and its resolver wakes it under V = 3.
fn waker_contexts<P>(
    make: impl FnOnce(std::sync::mpsc::Sender<deferral::Resolver<'static, u32, ()>>) -> P,
) -> Vec<(&'static str, Option<u32>)>
where
    P: std::future::Future<Output = Result<u32, PromiseError<()>>>,
{
    let l = log();
    let (tx, rx) = std::sync::mpsc::channel();
    let p = V.run(1, || make(tx));
    let mut p = pin!(p);
    V.run(2, || {
        let w1 = reading_waker(l.clone(), 0);
        assert!(p.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        drop(w1);
        let w2 = reading_waker(l.clone(), 0);
        assert!(p.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        drop(w2);
    });
    let r = rx.recv().unwrap();
    V.run(3, || r.resolve(5).unwrap());
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Ready(Ok(5)));
    l.lock().unwrap().clone()
}

/// The waker is the poller's: the slot registers it (clones it, drops the
/// replaced one) in the poller's context (V = 2), and only the executor and
/// an adopted future run in the creation context. Before 37aa41f0 a
/// `detached` promise did both in V = 1; the review found `PromiseCell`'s
/// promises still did after it; now both follow the one rule.
const POLLERS: [(&str, Option<u32>); 6] = [
    ("clone", Some(2)),
    ("drop", Some(2)),
    ("clone", Some(2)),
    ("drop", Some(2)),
    ("drop", Some(2)),
    ("wake", Some(3)),
];

#[test]
fn a_detached_promise_registers_the_waker_in_the_pollers_context() {
    let seen = waker_contexts(|tx| {
        DeferredPromise::<u32, PromiseError<()>>::detached(move |r| tx.send(r).unwrap())
    });
    assert_eq!(seen, POLLERS);
}

#[test]
fn a_cell_promise_registers_the_waker_in_the_pollers_context() {
    static CELL: deferral::PromiseCell<u32, ()> = deferral::PromiseCell::new();
    let seen = waker_contexts(|tx| CELL.lazy(move |r| tx.send(r).unwrap()).unwrap());
    assert_eq!(seen, POLLERS);
}

/// For comparison: a `lazy` promise's future wakes in the creation
/// context; the waker passed in is dropped by the poller.
#[test]
fn a_lazy_promise_registers_the_waker_in_its_creation_context() {
    let l = log();
    let p = V.run(1, || {
        DeferredPromise::<u32, ()>::lazy(|| async {
            yield_now().await;
            Ok(1)
        })
    });
    let mut p = pin!(p);
    V.run(2, || {
        let w1 = reading_waker(l.clone(), 0);
        assert!(p.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        drop(w1);
    });
    // `yield_now` wakes by reference inside the future: creation context.
    assert_eq!(*l.lock().unwrap(), [("wake", Some(1)), ("drop", Some(2))]);
}

/// A waker whose clone panics, handed to a detached promise and to a chain
/// under nested contexts: the panic reaches the poller, whose context is
/// intact (the panic finishes the chain).
#[test]
fn a_waker_whose_clone_panics_leaves_the_context_intact() {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = V.run(1, || {
        DeferredPromise::<u32, PromiseError<()>>::detached(move |r| tx.send(r).unwrap())
    });
    let p = V.run(2, || {
        p.deferred_then(|v| Ok::<_, PromiseError<()>>(v + V.get().unwrap()))
    });
    let mut p = pin!(p);
    let l = log();
    W.run("poller", || {
        let w = reading_waker(l.clone(), 1);
        let r = catch_unwind(AssertUnwindSafe(|| {
            p.as_mut().poll(&mut Context::from_waker(&w))
        }));
        assert_eq!((V.get(), W.get()), (None, Some("poller")));
        assert!(r.is_err());
        // Cloned while the `deferred_then` link polls its source: that
        // link's context.
        assert_eq!(*l.lock().unwrap(), [("clone", Some(2))]);
    });
    if let Ok(r) = rx.try_recv() {
        r.resolve(40).unwrap();
        let w = WakeCounter::new();
        let out = catch_unwind(AssertUnwindSafe(|| poll_once(p.as_mut(), &w)));
        // The panic finished the chain: polling again panics.
        assert!(out.is_err());
        assert_eq!((V.get(), W.get()), (None, None));
    }
    assert_eq!((V.get(), W.get()), (None, None));
}

/// A future that records `V` when polled and when dropped.
struct Probe {
    log: Log,
    ready_after: u32,
    polls: u32,
}

impl std::future::Future for Probe {
    type Output = Result<u32, ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.log.lock().unwrap().push(("poll", V.get()));
        self.polls += 1;
        if self.polls > self.ready_after {
            Poll::Ready(Ok(self.polls))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(("drop", V.get()));
    }
}

/// `detached` whose executor adopts a future: polled, and dropped when it
/// finishes, in the creation context (V = 1), whoever polls (V = 2).
#[test]
fn a_detached_adopted_future_is_polled_and_dropped_in_the_creation_context() {
    let l = log();
    let l2 = l.clone();
    let p = V.run(1, || {
        DeferredPromise::<u32, PromiseError<()>>::detached(move |r| {
            r.adopt(Probe {
                log: l2,
                ready_after: 1,
                polls: 0,
            })
        })
    });
    assert_eq!(V.run(2, || block_on(p)), Ok(2));
    assert_eq!(
        *l.lock().unwrap(),
        [("poll", Some(1)), ("poll", Some(1)), ("drop", Some(1))]
    );
}

/// The same, dropped before it finishes: where does the adopted future's
/// drop run? In the dropper's context, as a `lazy` future's (unchanged).
#[test]
fn a_detached_adopted_future_dropped_early() {
    let l = log();
    let l2 = l.clone();
    let p = V.run(1, || {
        DeferredPromise::<u32, PromiseError<()>>::detached(move |r| {
            r.adopt(Probe {
                log: l2,
                ready_after: 10,
                polls: 0,
            })
        })
    });
    pending_then_dropped_under_v2(p);
    // Dropped with the promise, by its drop glue: outside the creation
    // context (so before 37aa41f0 too; `Snapshot::wrap` drops inside).
    assert_eq!(*l.lock().unwrap(), [("poll", Some(1)), ("drop", Some(2))]);
    let l = log();
    let l2 = l.clone();
    let lazy = V.run(1, || {
        DeferredPromise::<u32, ()>::lazy(move || Probe {
            log: l2,
            ready_after: 10,
            polls: 0,
        })
    });
    pending_then_dropped_under_v2(lazy);
    assert_eq!(*l.lock().unwrap(), [("poll", Some(1)), ("drop", Some(2))]);
}

/// Polls `p` once (pending) and drops it, under V = 2.
fn pending_then_dropped_under_v2(p: impl std::future::Future) {
    V.run(2, || {
        let mut p = Box::pin(p);
        let w = WakeCounter::new();
        assert!(poll_once(p.as_mut(), &w).is_pending());
        drop(p);
    });
}

/// An adopted future that panics when polled: the poller's context is
/// intact and the panic comes out.
#[test]
fn a_detached_adopted_future_that_panics() {
    let p = V.run(1, || {
        DeferredPromise::<u32, PromiseError<()>>::detached(move |r| {
            r.adopt(async {
                assert_eq!(V.get(), Some(1));
                yield_now().await;
                panic!("adopted")
            })
        })
    });
    let chain = V.run(3, || {
        p.deferred_then_catch(Ok::<_, ()>, |e| {
            assert_eq!(V.get(), Some(3));
            Ok(match e {
                PromiseError::Abandoned => 7,
                _ => 8,
            })
        })
    });
    let mut chain = pin!(chain);
    let w = WakeCounter::new();
    W.run("poller", || {
        assert!(poll_once(chain.as_mut(), &w).is_pending());
        assert_eq!((V.get(), W.get()), (None, Some("poller")));
        let r = catch_unwind(AssertUnwindSafe(|| poll_once(chain.as_mut(), &w)));
        assert_eq!((V.get(), W.get()), (None, Some("poller")));
        assert!(r.is_err(), "the adopted future's panic reaches the poller");
    });
}

/// A `detached` executor that panics, after settling or before, under a
/// nested context: the poller's context is intact.
#[test]
fn a_panicking_detached_executor_leaves_the_context_intact() {
    for settle_first in [false, true] {
        let p = V.run(1, || {
            W.run("exec", || {
                DeferredPromise::<u32, PromiseError<()>>::detached(move |r| {
                    assert_eq!((V.get(), W.get()), (Some(1), Some("exec")));
                    if settle_first {
                        r.resolve(1).unwrap();
                    }
                    panic!("executor")
                })
            })
        });
        let p = V.run(2, || p.deferred_finally(|| assert_eq!(V.get(), Some(2))));
        let mut p = pin!(p);
        let w = WakeCounter::new();
        V.run(9, || {
            let r = catch_unwind(AssertUnwindSafe(|| poll_once(p.as_mut(), &w)));
            assert_eq!((V.get(), W.get()), (Some(9), None));
            // A plain chain does not catch: the panic reaches the poller
            // even after a settlement (only `catch_panic` keeps it).
            assert!(r.is_err());
        });
    }
}

/// Where forgotten promises go: never dropped (as `mem::forget`), but
/// reachable from a static, so Miri's leak check does not report them.
static FORGOTTEN: Mutex<Vec<std::mem::ManuallyDrop<Box<dyn Send>>>> = Mutex::new(Vec::new());

fn forget<T: Send + 'static>(value: T) {
    FORGOTTEN
        .lock()
        .unwrap()
        .push(std::mem::ManuallyDrop::new(Box::new(value)));
}

/// `mem::forget` of a promise mid-chain (after a pending poll, and of a
/// nested one inside a handler): nothing of its context stays current.
#[test]
fn forgetting_a_promise_mid_chain_leaks_no_context() {
    let p = V.run(1, || {
        DeferredPromise::<u32, ()>::lazy(|| async {
            yield_now().await;
            Ok(1)
        })
        .deferred_then(Ok::<_, ()>)
    });
    let mut p = Box::pin(p);
    let w = WakeCounter::new();
    assert!(poll_once(p.as_mut(), &w).is_pending());
    forget(p);
    assert_eq!(V.get(), None);

    let outer = V.run(2, || {
        DeferredPromise::<u32, ()>::resolved(0).deferred_then(|_| {
            let inner = V.run(3, || {
                DeferredPromise::<u32, ()>::lazy(|| async {
                    assert_eq!(V.get(), Some(3));
                    yield_now().await;
                    Ok(0)
                })
                .deferred_catch(|()| Ok::<_, ()>(0))
            });
            let mut inner = Box::pin(inner);
            let w = WakeCounter::new();
            assert!(poll_once(inner.as_mut(), &w).is_pending());
            forget(inner);
            Ok::<_, ()>(V.get())
        })
    });
    assert_eq!(block_on(outer), Ok(Some(2)));
    assert_eq!(V.get(), None);
}

/// A long chain, each link in its own context, polled across many polls.
#[test]
fn a_long_chain_each_link_in_its_own_context() {
    let n = if cfg!(miri) { 8 } else { 64 };
    let mut p = DeferredPromise::<u32, ()>::lazy(|| async {
        yield_now().await;
        Ok(0)
    })
    .boxed();
    for k in 1..=n {
        p = V
            .run(k, || {
                p.deferred_then(move |v| {
                    assert_eq!(V.get(), Some(k));
                    V.run(k + 1000, || {
                        DeferredPromise::<u32, ()>::lazy(move || async move {
                            yield_now().await;
                            assert_eq!(V.get(), Some(k + 1000));
                            Ok(v + 1)
                        })
                    })
                })
            })
            .boxed();
    }
    assert_eq!(W.run("x", || block_on(p)), Ok(n));
    assert_eq!((V.get(), W.get()), (None, None));
}
