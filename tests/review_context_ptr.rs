//! A hostile review of 6b6cc4fc: the thread-local `CURRENT` holds the
//! current snapshot's map (`Arc::as_ptr`) instead of the snapshot's
//! address; `with_current` rebuilds a borrowed snapshot from it
//! (`ManuallyDrop` over `Arc::from_raw`, no count taken or given back);
//! promises enter their creation context out of line by map pointer;
//! `Snapshot` got a `Drop` that hands its `Arc` by value to an out-of-line
//! `release`; the program-wide `EVER_ENTERED` flag is gone and every fast
//! path (`runs_as_is`, `capture`, `Snapshot::run`, the promises'
//! `in_context`) tests this thread's `CURRENT` directly.
//!
//! Attacked: context values whose destructors read and set context
//! variables (run inside `release`: after `ContextVar::run`'s `f`, when a
//! captured clone outlives the run, inside a run whose closure drops the
//! only other owner, from a `WithContext` or a promise dropped elsewhere,
//! from a thread-local destructor at thread exit) — every one sees the
//! context of whoever drops the last owner, never the map being freed;
//! panicking value destructors and panicking closures in `Snapshot::run`,
//! `ContextVar::run`, `ContextVar::with` (the borrowed `Arc` must not give
//! a count back on unwind), `WithContext` polls and promise polls (context
//! restored after every unwind, `f`'s result dropped once); nested runs of
//! the same snapshot (a no-op enter: the same map pointer) and of others,
//! interleaved; captures taken at every depth and used after their guards
//! and source snapshots are gone; `WithContext`s and promises left
//! un-dropped after a pending poll (`ManuallyDrop`, released at the end so
//! Miri's leak check holds); `DeferredPromise::new`, `lazy`,
//! `deferred_then` chains, `detached` and `SharedPromise` created in one
//! context (or the empty one) and polled in another, on this or another
//! thread (user code sees the creation context, the poller's is hidden —
//! including an empty creation context under a non-empty poller, the path
//! that now stores a null `CURRENT` out of line); a thread that never set a
//! context while others hold theirs; one map current on several threads at
//! once, clones captured and dropped concurrently with the owner's drop;
//! `release` re-entered from a value destructor that runs and drops the
//! last owner of another map; thread exit after a panic unwound out of a
//! run, with thread-local destructors reading and setting context.
//!
//! Verdict: no bug found. Every test passes on 6b6cc4fc, natively and
//! under Miri (Stacked and Tree Borrows, strict provenance, symbolic
//! alignment): no use after free, no count imbalance (each context value
//! is dropped exactly once, at the asserted point), no context leaking
//! out of a run, a poll or a thread. `CURRENT` cannot dangle: every guard
//! borrows the snapshot whose map it installs (one strong count for the
//! guard's life) and guards are stack locals restored in LIFO order, so
//! the last count of a current map is never given back while it is
//! current. Checked against mutants (in a scratch copy, not committed):
//! `runs_as_is` without its `current_is_empty()` test fails 3 tests
//! (`empty_context_promises_hide_a_non_empty_poller`,
//! `nested_runs_of_the_same_and_different_snapshots`,
//! `captures_from_nested_contexts_outlive_their_guards`); `with_current`
//! without its `ManuallyDrop` aborts the binary (a double free).
//! Observed, not a bug: a `deferred_then` link drops its settled source
//! inside its own poll, so the source's captured snapshot (if its last
//! owner) dies in the link's creation context
//! (`promises_polled_on_another_thread`).
#![cfg(feature = "std")]
#![allow(clippy::type_complexity)]

mod support;

use std::cell::RefCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::{Arc, Barrier, Mutex};
use std::task::Poll;

use deferral::{ContextVar, DeferredPromise, PromiseError, PromiseExt, SharedPromise, Snapshot};
use support::{WakeCounter, block_on, poll_once, yield_now};

static N: ContextVar<u32> = ContextVar::new();
static W: ContextVar<&'static str> = ContextVar::new();
static P: ContextVar<Probe> = ContextVar::new();

/// What a probe's destructor saw: (its id, `N`, `W`, the id of the probe
/// current then, the length of the current snapshot).
type Seen = (u32, Option<u32>, Option<&'static str>, Option<u32>, usize);

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    fn probe(&self, id: u32) -> Probe {
        Probe {
            id,
            log: self.clone(),
            on_drop: OnDrop::Read,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum OnDrop {
    /// Reads the current context.
    Read,
    /// Reads it, then sets `N` to `id` and reads again inside.
    ReadAndSet,
    /// Reads it, then panics.
    Panic,
}

/// A context value whose destructor reads (and sets) context variables.
struct Probe {
    id: u32,
    log: Log,
    on_drop: OnDrop,
}

fn seen_now(id: u32) -> Seen {
    (
        id,
        N.get(),
        W.get(),
        P.with(|p| p.map(|p| p.id)),
        Snapshot::capture().len(),
    )
}

impl Drop for Probe {
    fn drop(&mut self) {
        let now = seen_now(self.id);
        self.log.0.lock().unwrap().push(now);
        match self.on_drop {
            OnDrop::Read => {}
            OnDrop::ReadAndSet => {
                let inner = N.run(self.id, || seen_now(self.id + 1000));
                self.log.0.lock().unwrap().push(inner);
                // And a capture taken inside, dropped outside.
                let cap = N.run(self.id, Snapshot::capture);
                assert_eq!(cap.get(&N), Some(&self.id));
                self.log.0.lock().unwrap().push(seen_now(self.id + 2000));
            }
            OnDrop::Panic => panic!("probe {} panics", self.id),
        }
    }
}

fn empty_now() -> Seen {
    seen_now(0)
}

/// `ContextVar::run` drops its snapshot after `f`, once the guard is gone:
/// the value's destructor (the snapshot is its last owner) sees the
/// enclosing context, not the map being freed.
#[test]
fn value_drop_after_var_run_sees_the_enclosing_context() {
    let log = Log::default();
    let out = N.run(1, || {
        W.run("outer", || {
            P.run(log.probe(7), || {
                assert_eq!(seen_now(0), (0, Some(1), Some("outer"), Some(7), 3));
                N.run(2, || seen_now(0))
            })
        })
    });
    assert_eq!(out, (0, Some(2), Some("outer"), Some(7), 3));
    assert_eq!(log.take(), [(7, Some(1), Some("outer"), None, 2)]);
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// Nested runs of the same variable: the inner snapshot is the last owner
/// of the inner probe only; it is dropped with the outer probe current.
#[test]
fn value_drop_in_a_nested_run_sees_the_outer_value() {
    let log = Log::default();
    P.run(log.probe(1), || {
        P.run(log.probe(2), || {
            assert_eq!(P.with(|p| p.map(|p| p.id)), Some(2));
        });
        assert_eq!(log.take(), [(2, None, None, Some(1), 1)]);
    });
    assert_eq!(log.take(), [(1, None, None, None, 0)]);
}

/// A destructor that sets context variables (runs `N.run` and captures
/// inside `release`) while another snapshot is current.
#[test]
fn value_drop_that_sets_context_variables() {
    let log = Log::default();
    let probe = Probe {
        id: 5,
        log: log.clone(),
        on_drop: OnDrop::ReadAndSet,
    };
    W.run("w", || {
        P.run(probe, || ());
        assert_eq!(W.get(), Some("w"));
        assert_eq!(N.get(), None);
    });
    assert_eq!(
        log.take(),
        [
            (5, None, Some("w"), None, 1),
            (1005, Some(5), Some("w"), None, 2),
            (2005, None, Some("w"), None, 1),
        ]
    );
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// A capture taken inside the run outlives it: the run's drop gives back
/// one count only; the value dies with the capture, wherever that is
/// dropped (here inside another context, then in the empty one).
#[test]
fn a_capture_outliving_its_run_keeps_the_value_until_dropped() {
    let log = Log::default();
    let cap = N.run(3, || P.run(log.probe(1), Snapshot::capture));
    assert!(log.take().is_empty(), "the capture still owns the probe");
    assert_eq!(cap.get(&P).map(|p| p.id), Some(1));
    assert_eq!(
        cap.run(|| (N.get(), P.with(|p| p.map(|p| p.id)))),
        (Some(3), Some(1))
    );
    assert_eq!(empty_now(), (0, None, None, None, 0));
    W.run("dropper", || drop(cap));
    assert_eq!(log.take(), [(1, None, Some("dropper"), None, 1)]);

    let cap = P.run(log.probe(2), Snapshot::capture);
    drop(cap);
    assert_eq!(log.take(), [(2, None, None, None, 0)]);
}

/// `Snapshot::run` whose closure drops the only other owner of the map it
/// made current (a clone moved in): the run's borrow keeps the map, the
/// value stays readable, and dies when the borrowed snapshot does.
#[test]
fn run_whose_closure_drops_the_only_other_owner() {
    let log = Log::default();
    let s = Snapshot::empty().with_value(&P, log.probe(4));
    let other = s.clone();
    let seen = s.run(move || {
        drop(other);
        // Capture and drop again, twice, with the map current.
        drop(Snapshot::capture());
        let again = Snapshot::capture();
        (seen_now(0), again)
    });
    assert_eq!(seen.0, (0, None, None, Some(4), 1));
    assert!(log.take().is_empty());
    // The run is over; `s` and the capture remain.
    drop(s);
    assert!(log.take().is_empty());
    N.run(9, || drop(seen.1));
    assert_eq!(log.take(), [(4, Some(9), None, None, 1)]);
}

/// A temporary snapshot (its only owner) run inside a run of another one,
/// the closure dropping the outer snapshot's other owner; then the
/// temporary dies at the end of its statement, with the outer current.
#[test]
fn temporary_snapshot_dropped_with_another_current() {
    let log = Log::default();
    let outer = Snapshot::empty().with_value(&N, 1);
    outer.run(|| {
        let r = Snapshot::capture()
            .with_value(&P, log.probe(8))
            .run(|| seen_now(0));
        assert_eq!(r, (0, Some(1), None, Some(8), 2));
        assert_eq!(log.take(), [(8, Some(1), None, None, 1)]);
        assert_eq!(N.get(), Some(1));
    });
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// A value whose destructor panics, the snapshot of `ContextVar::run` its
/// last owner: the panic reaches the caller after `f` returned; `f`'s
/// result is dropped once (by the unwinding) and the context restored.
#[test]
fn panicking_value_drop_after_var_run() {
    let log = Log::default();
    let result_drops = support::DropCounter::new();
    let probe = Probe {
        id: 6,
        log: log.clone(),
        on_drop: OnDrop::Panic,
    };
    N.run(1, || {
        let r = catch_unwind(AssertUnwindSafe(|| P.run(probe, || result_drops.tracked())));
        assert!(r.is_err());
        assert_eq!(result_drops.get(), 1, "f's result dropped by the unwinding");
        assert_eq!(log.take(), [(6, Some(1), None, None, 1)]);
        assert_eq!(seen_now(0), (0, Some(1), None, None, 1));
    });
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// A panicking value drop while the snapshot of a *different* run is
/// current: the snapshot dropped (its last owner) inside `run`'s closure.
#[test]
fn panicking_value_drop_inside_another_run() {
    let log = Log::default();
    let s = Snapshot::empty().with_value(
        &P,
        Probe {
            id: 3,
            log: log.clone(),
            on_drop: OnDrop::Panic,
        },
    );
    let outer = Snapshot::empty().with_value(&W, "outer");
    let r = catch_unwind(AssertUnwindSafe(|| outer.run(move || drop(s))));
    assert!(r.is_err());
    assert_eq!(log.take(), [(3, None, Some("outer"), None, 1)]);
    assert_eq!(empty_now(), (0, None, None, None, 0));
    assert_eq!(outer.run(|| W.get()), Some("outer"));
}

/// Panicking closures in `Snapshot::run` and `ContextVar::run`, nested
/// three deep in alternating contexts: each level sees its own context
/// after catching the panic of the level below.
#[test]
fn panicking_closures_restore_every_level() {
    let s = Snapshot::empty().with_value(&W, "snap");
    N.run(1, || {
        let r = catch_unwind(AssertUnwindSafe(|| {
            s.run(|| {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    N.run(2, || {
                        assert_eq!((N.get(), W.get()), (Some(2), Some("snap")));
                        panic!("inner")
                    })
                }));
                assert!(r.is_err());
                assert_eq!((N.get(), W.get()), (None, Some("snap")));
                panic!("middle")
            })
        }));
        assert!(r.is_err());
        assert_eq!((N.get(), W.get()), (Some(1), None));
    });
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// A panic inside `ContextVar::with`'s callback unwinds through
/// `with_current`'s borrowed `Arc` (`ManuallyDrop`): it must give back no
/// count. The value is dropped exactly once, when its real owner goes.
#[test]
fn panic_in_with_callback_gives_back_no_count() {
    let log = Log::default();
    let s = Snapshot::empty().with_value(&P, log.probe(2));
    s.run(|| {
        for _ in 0..3 {
            let r = catch_unwind(AssertUnwindSafe(|| {
                P.with(|p| {
                    assert_eq!(p.map(|p| p.id), Some(2));
                    panic!("in with")
                })
            }));
            assert!(r.is_err());
            // A capture and its drop, between the panics.
            drop(Snapshot::capture());
        }
        assert_eq!(P.with(|p| p.map(|p| p.id)), Some(2));
    });
    assert!(log.take().is_empty());
    drop(s);
    assert_eq!(log.take(), [(2, None, None, None, 0)]);
}

/// Nested runs of the same snapshot (entering changes nothing: the same
/// map pointer) and of a clone (the same map) interleaved with a different
/// snapshot holding equal values (another map): each level restores its
/// own.
#[test]
fn nested_runs_of_the_same_and_different_snapshots() {
    let a = Snapshot::empty().with_value(&N, 1);
    let a2 = a.clone();
    let b = Snapshot::empty().with_value(&N, 1).with_value(&W, "b");
    let c = Snapshot::empty().with_value(&N, 1);
    let trace = a.run(|| {
        let mut t = vec![(N.get(), W.get())];
        a.run(|| {
            a2.run(|| {
                t.push((N.get(), W.get()));
                b.run(|| {
                    t.push((N.get(), W.get()));
                    a.run(|| {
                        t.push((N.get(), W.get()));
                        c.run(|| t.push((N.get(), W.get())));
                        t.push((N.get(), W.get()));
                    });
                    t.push((N.get(), W.get()));
                    Snapshot::empty().run(|| t.push((N.get(), W.get())));
                    t.push((N.get(), W.get()));
                });
                t.push((N.get(), W.get()));
            });
            t.push((N.get(), W.get()));
        });
        t.push((N.get(), W.get()));
        t
    });
    let one = (Some(1), None);
    let bee = (Some(1), Some("b"));
    assert_eq!(
        trace,
        [
            one,
            one,
            bee,
            one,
            one,
            one,
            bee,
            (None, None),
            bee,
            one,
            one,
            one
        ]
    );
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// Captures taken at every depth of nested contexts, kept after every guard
/// and every source snapshot is gone, then read, run and dropped in an
/// arbitrary order: each still holds its own map.
#[test]
fn captures_from_nested_contexts_outlive_their_guards() {
    let log = Log::default();
    let caps: Vec<Snapshot> = N.run(1, || {
        let mut caps = vec![Snapshot::capture()];
        P.run(log.probe(1), || {
            caps.push(Snapshot::capture());
            N.run(2, || {
                caps.push(Snapshot::capture());
                P.run(log.probe(2), || {
                    caps.push(Snapshot::capture());
                    Snapshot::empty().run(|| caps.push(Snapshot::capture()));
                });
            });
        });
        caps
    });
    assert!(log.take().is_empty(), "captures still own both probes");
    assert_eq!(empty_now(), (0, None, None, None, 0));
    let read = |s: &Snapshot| (s.get(&N).copied(), s.get(&P).map(|p| p.id), s.len());
    let got: Vec<_> = caps.iter().map(read).collect();
    assert_eq!(
        got,
        [
            (Some(1), None, 1),
            (Some(1), Some(1), 2),
            (Some(2), Some(1), 2),
            (Some(2), Some(2), 2),
            (None, None, 0),
        ]
    );
    let ran: Vec<_> = caps
        .iter()
        .map(|s| s.run(|| (N.get(), P.with(|p| p.map(|p| p.id)))))
        .collect();
    assert_eq!(
        ran,
        [
            (Some(1), None),
            (Some(1), Some(1)),
            (Some(2), Some(1)),
            (Some(2), Some(2)),
            (None, None),
        ]
    );
    let mut caps = caps;
    let last_probe2 = caps.remove(3);
    let probe1_holders = caps; // 0..=2 and the empty one
    // Drop the last owner of probe 2 inside a run of a probe-1 capture.
    probe1_holders[1].run(|| drop(last_probe2));
    assert_eq!(log.take(), [(2, Some(1), None, Some(1), 2)]);
    W.run("end", || drop(probe1_holders));
    assert_eq!(log.take(), [(1, None, Some("end"), None, 1)]);
}

/// Polls `fut` once, in the `W = "poller"` context; returns the output.
fn poll_as_poller<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    W.run("poller", || {
        let w = WakeCounter::new();
        let r = poll_once(fut, &w);
        assert_eq!(W.get(), Some("poller"));
        r
    })
}

/// A `WithContext` polled once (pending) then left undropped: nothing of
/// its snapshot stays current (the guard lived in the poll); its value is
/// alive until the wrapper is finally dropped, in the dropper's context.
#[test]
fn undropped_with_context_after_a_pending_poll() {
    let log = Log::default();
    let fut = P.scope(log.probe(1), async {
        yield_now().await;
        P.with(|p| p.map(|p| p.id))
    });
    let mut fut = ManuallyDrop::new(Box::pin(fut));
    assert!(poll_as_poller(fut.as_mut()).is_pending());
    assert_eq!(empty_now(), (0, None, None, None, 0));
    // Something else runs on this thread while it is parked.
    assert_eq!(N.run(4, || seen_now(0)), (0, Some(4), None, None, 1));
    assert!(log.take().is_empty());
    assert_eq!(poll_as_poller(fut.as_mut()), Poll::Ready(Some(1)));
    assert!(log.take().is_empty());
    // Released at last (for Miri's leak check), in another context.
    // SAFETY: dropped once, never used again.
    N.run(5, || unsafe { ManuallyDrop::drop(&mut fut) });
    assert_eq!(log.take(), [(1, Some(5), None, None, 1)]);
}

/// A promise polled once (pending) from inside another promise's poll,
/// then left undropped there: the outer promise's context is intact after
/// it, and the poller's after the outer poll.
#[test]
fn undropped_promise_after_a_pending_poll_inside_another() {
    let inner = N.run(1, || {
        DeferredPromise::<_, ()>::lazy(|| async {
            yield_now().await;
            Ok(N.get())
        })
    });
    let slot: Arc<Mutex<Option<ManuallyDrop<Pin<Box<_>>>>>> = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    let outer = N.run(2, move || {
        let mut inner = Some(inner);
        DeferredPromise::<_, ()>::lazy(move || {
            std::future::poll_fn(move |cx| {
                let mut p = ManuallyDrop::new(Box::pin(inner.take().expect("polled once")));
                let r = p.as_mut().poll(cx);
                assert!(r.is_pending());
                *s2.lock().unwrap() = Some(p);
                Poll::Ready(Ok::<_, ()>((N.get(), W.get())))
            })
        })
    });
    let out = W.run("poller", || block_on(outer));
    assert_eq!(out, Ok((Some(2), None)));
    assert_eq!(empty_now(), (0, None, None, None, 0));
    let mut p = slot.lock().unwrap().take().unwrap();
    // The left-over promise still finishes in its own creation context.
    let out = W.run("late", || block_on(p.as_mut()));
    assert_eq!(out, Ok(Some(1)));
    // SAFETY: dropped once, never used again.
    unsafe { ManuallyDrop::drop(&mut p) };
}

/// Promises made in one context and polled in another: the executor, the
/// lazy future (across polls), the handlers of a `deferred_then` chain
/// (each in its own link's context) and a detached executor see their
/// creation context; the poller's `W` is hidden from all of them and back
/// after each poll.
#[test]
fn promises_see_their_creation_context_not_the_pollers() {
    type Ctx = (Option<u32>, Option<&'static str>);
    let new = N.run(1, || {
        DeferredPromise::<Ctx, PromiseError<()>>::new(|r| r.resolve((N.get(), W.get())))
    });
    let lazy = N.run(2, || {
        DeferredPromise::<_, ()>::lazy(|| {
            let at_make: Ctx = (N.get(), W.get());
            async move {
                yield_now().await;
                Ok::<_, ()>((at_make, (N.get(), W.get())))
            }
        })
    });
    let chain = N.run(3, || {
        let p = DeferredPromise::<u32, ()>::lazy(|| async {
            yield_now().await;
            Ok(N.get().unwrap())
        });
        let p = N.run(4, || {
            p.deferred_then(|v| Ok::<_, ()>((v, (N.get(), W.get()))))
        });
        N.run(5, || {
            p.deferred_then(|(v, ctx)| {
                DeferredPromise::lazy(move || async move {
                    yield_now().await;
                    Ok::<_, ()>((v, ctx, (N.get(), W.get())))
                })
            })
        })
    });
    let detached = N.run(6, || {
        DeferredPromise::<Ctx, PromiseError<()>>::detached(|r| {
            let ctx = (N.get(), W.get());
            std::thread::spawn(move || r.resolve(ctx).unwrap());
        })
    });
    assert_eq!(empty_now(), (0, None, None, None, 0));

    let mut new = pin!(new);
    assert_eq!(
        poll_as_poller(new.as_mut()),
        Poll::Ready(Ok((Some(1), None)))
    );
    let mut lazy = pin!(lazy);
    assert!(poll_as_poller(lazy.as_mut()).is_pending());
    assert_eq!(
        poll_as_poller(lazy.as_mut()),
        Poll::Ready(Ok(((Some(2), None), (Some(2), None))))
    );
    let mut chain = pin!(chain);
    let out = loop {
        if let Poll::Ready(out) = poll_as_poller(chain.as_mut()) {
            break out;
        }
    };
    assert_eq!(out, Ok((3, (Some(4), None), (Some(5), None))));
    let out = W.run("poller", || block_on(detached));
    assert_eq!(out, Ok((Some(6), None)));
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// Promises made in the *empty* context and polled inside a non-empty one:
/// `runs_as_is` is false (the current context is not empty), so the
/// promise enters null out of line: user code sees nothing of the poller's.
#[test]
fn empty_context_promises_hide_a_non_empty_poller() {
    let new = DeferredPromise::<_, PromiseError<()>>::new(|r| r.resolve(Snapshot::capture().len()));
    let lazy = DeferredPromise::<_, ()>::lazy(|| {
        let at_make = Snapshot::capture().len();
        async move {
            yield_now().await;
            Ok::<_, ()>((at_make, Snapshot::capture().len(), N.get()))
        }
    });
    let chain = DeferredPromise::<u32, ()>::resolved(1)
        .deferred_then(|v| Ok::<_, ()>((v, Snapshot::capture().is_empty(), W.get())));
    let detached =
        DeferredPromise::<_, PromiseError<()>>::detached(|r| r.resolve(Snapshot::capture().len()));
    let shared = SharedPromise::new(async {
        yield_now().await;
        (N.get(), W.get())
    });
    let shared2 = shared.clone();
    N.run(7, || {
        let mut new = pin!(new);
        assert_eq!(poll_as_poller(new.as_mut()), Poll::Ready(Ok(0)));
        let mut lazy = pin!(lazy);
        assert!(poll_as_poller(lazy.as_mut()).is_pending());
        assert_eq!(N.get(), Some(7));
        assert_eq!(poll_as_poller(lazy.as_mut()), Poll::Ready(Ok((0, 0, None))));
        let mut chain = pin!(chain);
        assert_eq!(
            poll_as_poller(chain.as_mut()),
            Poll::Ready(Ok((1, true, None)))
        );
        let mut detached = pin!(detached);
        assert_eq!(poll_as_poller(detached.as_mut()), Poll::Ready(Ok(0)));
        let mut shared = pin!(shared);
        assert!(poll_as_poller(shared.as_mut()).is_pending());
        assert_eq!(poll_as_poller(shared.as_mut()), Poll::Ready((None, None)));
        assert_eq!(N.get(), Some(7));
    });
    assert_eq!(block_on(shared2), (None, None));
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// Promises and wrapped futures made in one context on this thread, moved
/// to another thread mid-way (after a pending poll) and finished there
/// inside that thread's own context: user code sees the creation context;
/// the other thread's context is intact after each poll and never seen
/// here.
#[test]
fn promises_polled_on_another_thread() {
    let log = Log::default();
    let lazy = N.run(1, || {
        P.run(log.probe(1), || {
            DeferredPromise::<_, ()>::lazy(|| async {
                yield_now().await;
                Ok::<_, ()>((N.get(), W.get(), P.with(|p| p.map(|p| p.id))))
            })
        })
    });
    let chain = N.run(2, || {
        lazy.deferred_then(|v| Ok::<_, ()>((v, N.get(), W.get())))
    });
    let wrapped = N.run(3, || {
        Snapshot::capture().wrap(async {
            yield_now().await;
            (N.get(), W.get())
        })
    });
    let mut chain = Box::pin(chain);
    let mut wrapped = Box::pin(wrapped);
    assert!(poll_as_poller(chain.as_mut()).is_pending());
    assert!(poll_as_poller(wrapped.as_mut()).is_pending());
    let (a, b) = std::thread::spawn(move || {
        W.run("thread", || {
            let a = block_on(chain);
            assert_eq!(W.get(), Some("thread"));
            let b = block_on(wrapped);
            assert_eq!((N.get(), W.get()), (None, Some("thread")));
            (a, b)
        })
    })
    .join()
    .unwrap();
    assert_eq!(a, Ok(((Some(1), None, Some(1)), Some(2), None)));
    assert_eq!(b, (Some(3), None));
    // The lazy (the probe's last owner, its captured snapshot) was dropped
    // on the other thread as it settled, inside the `then` link's poll: in
    // that link's creation context (`N = 2`, no probe), the thread's `W`
    // hidden.
    assert_eq!(log.take(), [(1, Some(2), None, None, 1)]);
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// A thread that never set a context sees none — no value, an empty
/// capture, promises made there run in the empty context — while other
/// threads hold theirs current (the old program-wide flag's case).
#[test]
fn a_thread_that_never_set_a_context_sees_none() {
    let threads = if cfg!(miri) { 2 } else { 4 };
    let barrier = Arc::new(Barrier::new(threads + 1));
    let release = Arc::new(Barrier::new(threads + 1));
    let holders: Vec<_> = (0..threads)
        .map(|i| {
            let (barrier, release) = (barrier.clone(), release.clone());
            std::thread::spawn(move || {
                N.run(i as u32 + 10, || {
                    W.run("holder", || {
                        barrier.wait();
                        release.wait();
                        (N.get(), W.get())
                    })
                })
            })
        })
        .collect();
    let clean = std::thread::spawn({
        let (barrier, release) = (barrier.clone(), release.clone());
        move || {
            barrier.wait();
            let seen = (
                empty_now(),
                Snapshot::capture().is_empty(),
                block_on(DeferredPromise::<_, ()>::lazy(|| async {
                    Ok::<_, ()>((N.get(), W.get()))
                })),
                Snapshot::empty().run(|| N.get()),
            );
            release.wait();
            seen
        }
    });
    let seen = clean.join().unwrap();
    assert_eq!(
        seen,
        ((0, None, None, None, 0), true, Ok((None, None)), None)
    );
    for (i, h) in holders.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), (Some(i as u32 + 10), Some("holder")));
    }
}

/// Thread exit right after a panic unwound out of a run on a spawned
/// thread: the guards restored the empty context on the way out, so a
/// thread-local destructor sees none (and may set its own); a snapshot
/// kept in a thread-local (the probe's last owner) is released during
/// thread-local destruction, its destructor reading the (empty) context.
#[test]
fn thread_exit_after_a_panic_inside_a_run() {
    struct AtExit(Log);
    impl Drop for AtExit {
        fn drop(&mut self) {
            let outer = seen_now(100);
            let inner = N.run(101, || seen_now(101));
            let mut l = self.0.0.lock().unwrap();
            l.push(outer);
            l.push(inner);
        }
    }
    thread_local! {
        static AT_EXIT: RefCell<Option<AtExit>> = const { RefCell::new(None) };
        static KEPT: RefCell<Option<Snapshot>> = const { RefCell::new(None) };
    }
    let log = Log::default();
    let l = log.clone();
    let r = std::thread::spawn(move || {
        N.run(1, || {
            P.run(l.probe(9), || {
                AT_EXIT.with(|a| *a.borrow_mut() = Some(AtExit(l.clone())));
                KEPT.with(|k| *k.borrow_mut() = Some(Snapshot::capture()));
                W.run("doomed", || panic!("thread dies inside a run"))
            })
        })
    })
    .join();
    assert!(r.is_err());
    let mut seen = log.take();
    seen.sort_by_key(|s| s.0);
    assert_eq!(
        seen,
        [
            (9, None, None, None, 0),
            (100, None, None, None, 0),
            (101, Some(101), None, None, 1),
        ]
    );
}

/// A lazy promise made where a probe is set, dropped unpolled and polled
/// once (pending) in other contexts: the probe's last owner (the promise's
/// captured snapshot) dies in the dropper's context, exactly once.
#[test]
fn promise_dropped_elsewhere_releases_its_context_there() {
    let log = Log::default();
    let unpolled = P.run(log.probe(1), || {
        DeferredPromise::<_, ()>::lazy(|| async { Ok::<_, ()>(P.with(|p| p.map(|p| p.id))) })
    });
    let mut started = Box::pin(P.run(log.probe(2), || {
        DeferredPromise::<_, ()>::lazy(|| async {
            yield_now().await;
            Ok::<_, ()>(P.with(|p| p.map(|p| p.id)))
        })
    }));
    assert!(log.take().is_empty());
    N.run(3, || drop(unpolled));
    assert_eq!(log.take(), [(1, Some(3), None, None, 1)]);
    assert!(poll_as_poller(started.as_mut()).is_pending());
    W.run("dropper", || drop(started));
    assert_eq!(log.take(), [(2, None, Some("dropper"), None, 1)]);
}

/// A `WithContext` whose inner future owns the only other clone of the
/// wrapper's snapshot: its drop (inside the snapshot) gives that count
/// back with the map current; the wrapper's own count goes after its
/// guard, in the dropper's context.
#[test]
fn with_context_dropped_with_the_inner_future_owning_a_clone() {
    let log = Log::default();
    let s = Snapshot::empty().with_value(&P, log.probe(5));
    let clone = s.clone();
    let fut = s.wrap(async move {
        let _keep = clone;
        yield_now().await;
    });
    let mut fut = Box::pin(fut);
    assert!(poll_as_poller(fut.as_mut()).is_pending());
    N.run(6, || drop(fut));
    assert_eq!(log.take(), [(5, Some(6), None, None, 1)]);
}

/// A panicking poll inside `WithContext` and inside promises (the lazy's
/// future, a handler), caught by the poller: the poller's context is back
/// after every unwind, and the panicking future's context value is
/// released once, where its owner is dropped.
#[test]
fn panicking_polls_restore_the_pollers_context() {
    let log = Log::default();
    let wrapped = P.scope(log.probe(1), async {
        yield_now().await;
        panic!("wrapped")
    });
    let lazy = P.run(log.probe(2), || {
        DeferredPromise::<u32, ()>::lazy(|| async {
            yield_now().await;
            panic!("lazy")
        })
    });
    let then = P.run(log.probe(3), || {
        DeferredPromise::<u32, ()>::resolved(1).deferred_then(|_| -> Result<u32, ()> {
            assert_eq!(P.with(|p| p.map(|p| p.id)), Some(3));
            panic!("handler")
        })
    });
    let mut wrapped = Box::pin(wrapped);
    let mut lazy = Box::pin(lazy);
    let mut then = Box::pin(then);
    N.run(9, || {
        assert!(poll_as_poller(wrapped.as_mut()).is_pending());
        assert!(poll_as_poller(lazy.as_mut()).is_pending());
        for r in [
            catch_unwind(AssertUnwindSafe(|| {
                poll_as_poller(wrapped.as_mut()).is_ready()
            })),
            catch_unwind(AssertUnwindSafe(|| {
                poll_as_poller(lazy.as_mut()).is_ready()
            })),
            catch_unwind(AssertUnwindSafe(|| {
                poll_as_poller(then.as_mut()).is_ready()
            })),
        ] {
            assert!(r.is_err());
            assert_eq!(seen_now(0), (0, Some(9), None, None, 1));
        }
    });
    assert!(log.take().is_empty());
    drop(wrapped);
    drop(lazy);
    drop(then);
    let mut seen = log.take();
    seen.sort_by_key(|s| s.0);
    assert_eq!(
        seen,
        [
            (1, None, None, None, 0),
            (2, None, None, None, 0),
            (3, None, None, None, 0),
        ]
    );
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

static H: ContextVar<Holder> = ContextVar::new();

/// A context value that owns a snapshot and, when dropped, runs it and
/// drops it inside that run's closure's caller: `release` re-entered from
/// a value destructor, with another map current.
struct Holder {
    snap: Mutex<Option<Snapshot>>,
    log: Log,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let s = self.snap.lock().unwrap().take().unwrap();
        let inside = s.run(|| seen_now(50));
        self.log.0.lock().unwrap().push(inside);
        // The last owner of the probe's map: released from inside this
        // `release`, the holder's own map no longer current.
        N.run(51, || drop(s));
    }
}

/// `release` re-entered: the holder's snapshot is the last owner of the
/// holder, whose destructor runs and drops the last owner of a probe.
#[test]
fn release_reentered_from_a_value_destructor() {
    let log = Log::default();
    let inner = Snapshot::empty()
        .with_value(&P, log.probe(4))
        .with_value(&W, "inner");
    let holder = Holder {
        snap: Mutex::new(Some(inner)),
        log: log.clone(),
    };
    let out = N.run(1, || H.run(holder, || N.run(2, Snapshot::capture)));
    // The capture still owns the holder.
    assert!(log.take().is_empty());
    assert_eq!(out.get(&N), Some(&2));
    W.run("outer", || drop(out));
    assert_eq!(
        log.take(),
        [
            (50, None, Some("inner"), Some(4), 2),
            (4, Some(51), Some("outer"), None, 2),
        ]
    );
    assert_eq!(empty_now(), (0, None, None, None, 0));
}

/// One snapshot current on several threads at once, each capturing and
/// dropping clones of it while the others do and while the original owner
/// drops its own: the probe is dropped exactly once, by whichever thread
/// held the last count, after its run (in that thread's outer context).
#[test]
fn one_map_current_on_several_threads_at_once() {
    let (threads, rounds) = if cfg!(miri) { (2, 3) } else { (4, 200) };
    let log = Log::default();
    let s = Snapshot::empty().with_value(&P, log.probe(7));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (s, start) = (s.clone(), start.clone());
            std::thread::spawn(move || {
                W.run("worker", || {
                    s.run(|| {
                        start.wait();
                        for _ in 0..rounds {
                            let c = Snapshot::capture();
                            assert_eq!(c.get(&P).map(|p| p.id), Some(7));
                            let d = N.run(i as u32, Snapshot::capture);
                            drop(c);
                            assert_eq!(d.run(|| N.get()), Some(i as u32));
                        }
                        P.with(|p| p.map(|p| p.id))
                    })
                })
            })
        })
        .collect();
    start.wait();
    drop(s);
    for h in handles {
        assert_eq!(h.join().unwrap(), Some(7));
    }
    // Every thread left its run before dropping its clone (the closure's
    // capture, dropped with the closure after `W.run` returned), so the
    // last owner died in the empty context of whichever thread it was.
    assert_eq!(log.take(), [(7, None, None, None, 0)]);
}
