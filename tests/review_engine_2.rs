//! A second hostile review of the scope engine, after the changes that
//! followed 333b878: the `GONE` tag, an async entry dropped by its own
//! ready poll, concurrent cleanup's start-order index, the slab's core
//! written at the first poll, the bump allocator's unrounded fast path and
//! the body's end handled in the arm that knows it ended. Each finding's
//! reproducer is named `r2_N_...` and was seen failing before its fix (the
//! fix's commit message says how); the rest are the attacks that found
//! nothing, kept as coverage. Run natively in the three feature sets and
//! under Miri (Stacked and Tree Borrows, strict provenance, symbolic
//! alignment).

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use deferral::scope::{Concurrent, Fifo, Lifo, Local, ScopeBuilder};
use deferral::{Defer, When};
use support::order::{ORDERS, Order};
use support::{DropCounter, WakeCounter, poll_once, yield_now};

/// Fewer rounds under Miri.
const fn rounds(native: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { native }
}

/// A future that is pending `n` times (waking itself each time), then
/// ready; holds `keep` until dropped.
struct PendN<K> {
    n: usize,
    keep: Option<K>,
}

impl<K> PendN<K> {
    fn new(n: usize, keep: K) -> Self {
        PendN {
            n,
            keep: Some(keep),
        }
    }
}

impl<K> Unpin for PendN<K> {}

impl<K> Future for PendN<K> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        assert!(self.keep.is_some(), "polled after completion");
        if self.n == 0 {
            return Poll::Ready(());
        }
        self.n -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Drives `fut` to completion with a counting waker (the futures here
/// always wake themselves), at most `limit` polls.
fn drive<F: Future + ?Sized>(mut fut: Pin<&mut F>, limit: usize) -> Option<F::Output> {
    let counter = WakeCounter::new();
    (0..limit).find_map(|_| match poll_once(fut.as_mut(), &counter) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    })
}

// ------------------------------------------------------------ finding 1
// Without `std` nothing is caught: a body closure that panics while it is
// called (its synchronous prefix), or a body future whose destructor panics
// after it returned, unwinds out of the scope's first `poll` with the phase
// already `Cleanup` and the driver not started (the chain still in the
// slab). `Drop` copes (`cancel_rest` starts the driver if the slab still
// holds a chain), but a scope *polled again* — which the `Future` contract
// allows after a panic, `FutureExt::catch_unwind` does it, a `select!` arm
// can — went straight to driving its empty driver: every registered cleanup
// leaked (never run, never dropped) and the poll panicked with
// "unreachable: a returned body has an output". With `std` both pass (the
// panic is caught inside the first poll and the cleanup runs there).

/// A body future that is ready at once (with its value) and panics when
/// dropped.
struct ReadyThenBomb<T>(T, Option<support::drops::PanicOnDrop>);

impl<T: Copy + Unpin> Future for ReadyThenBomb<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        Poll::Ready(self.0)
    }
}

impl<T> Drop for ReadyThenBomb<T> {
    fn drop(&mut self) {
        drop(self.1.take());
    }
}

#[test]
fn r2_1_a_scope_polled_again_after_its_body_closure_unwound_runs_its_cleanup() {
    for order in ORDERS {
        let drops = DropCounter::new();
        let t = drops.tracked();
        let body = move |d: &Defer<u8, Local<'_>, 256>| {
            d.defer(move || drop(t));
            if std::hint::black_box(true) {
                panic!("the body's synchronous prefix panics");
            }
            std::future::ready(7)
        };
        let b = ScopeBuilder::new().capacity::<256>();
        let mut scope: Pin<Box<dyn Future<Output = u8>>> = match order {
            Order::Lifo => Box::pin(b.order(Lifo).run_local(body)),
            Order::Fifo => Box::pin(b.order(Fifo).run_local(body)),
            Order::Concurrent => Box::pin(b.order(Concurrent).run_local(body)),
        };
        let counter = WakeCounter::new();
        let first = catch_unwind(AssertUnwindSafe(|| poll_once(scope.as_mut(), &counter)));
        assert!(first.is_err(), "{order:?}: the body's panic");
        // Polled again after the panic: it may panic again, but the cleanup
        // registered before the panic must run (once), not leak.
        let second = catch_unwind(AssertUnwindSafe(|| poll_once(scope.as_mut(), &counter)));
        assert!(second.is_err(), "{order:?}: there is no output to return");
        let _ = catch_unwind(AssertUnwindSafe(|| drop(scope)));
        assert_eq!(drops.get(), 1, "{order:?}: the registered cleanup ran once");
    }
}

#[test]
fn r2_1_a_scope_polled_again_after_its_returned_body_panicked_on_drop_runs_its_cleanup() {
    for order in ORDERS {
        let drops = DropCounter::new();
        let (t, bomb) = (drops.tracked(), drops.panicking());
        let body = move |d: &Defer<u8, Local<'_>, 256>| {
            d.defer(move || drop(t));
            ReadyThenBomb(7u8, Some(bomb))
        };
        let b = ScopeBuilder::new().capacity::<256>();
        let mut scope: Pin<Box<dyn Future<Output = u8>>> = match order {
            Order::Lifo => Box::pin(b.order(Lifo).run_local(body)),
            Order::Fifo => Box::pin(b.order(Fifo).run_local(body)),
            Order::Concurrent => Box::pin(b.order(Concurrent).run_local(body)),
        };
        let counter = WakeCounter::new();
        let first = catch_unwind(AssertUnwindSafe(|| poll_once(scope.as_mut(), &counter)));
        assert!(first.is_err(), "{order:?}: the body's destructor panicked");
        let _ = catch_unwind(AssertUnwindSafe(|| poll_once(scope.as_mut(), &counter)));
        let _ = catch_unwind(AssertUnwindSafe(|| drop(scope)));
        assert_eq!(
            drops.get(),
            2,
            "{order:?}: the bomb, and the cleanup (run once)"
        );
    }
}

// ------------------------------------------------------------ finding 2
// The same unwinding, seen by the cleanup that runs when the scope is then
// dropped: without `std` the exit recorded nothing (no panic payload, no
// flag), so a body closure that panicked while called, or a returned body
// whose destructor panicked, looked like a body that returned normally:
// `Outcome::Ok`, and a `When::Ok` commit ran after the panic while the
// rollback did not. With `std` the panic is recorded: `Outcome::Panicked`.

#[test]
fn r2_2_a_body_closure_that_unwound_is_not_seen_as_returned() {
    type Out = Result<(), ()>;
    for order in ORDERS {
        let log = support::DropLog::new();
        let (a, b, c) = (log.clone(), log.clone(), log.clone());
        let body = move |d: &Defer<Out, Local<'_>, 256>| {
            d.defer(move || a.push("commit")).when(When::Ok);
            d.defer(move || b.push("rollback")).when(When::Failed);
            d.defer_with(move |exit: &mut deferral::Exit<Out>| {
                c.push(format!("{:?}", exit.outcome()));
            });
            if std::hint::black_box(true) {
                panic!("the body's synchronous prefix panics");
            }
            std::future::ready(Ok(()))
        };
        let b = ScopeBuilder::new().capacity::<256>();
        let mut scope: Pin<Box<dyn Future<Output = Out>>> = match order {
            Order::Lifo => Box::pin(b.order(Lifo).run_local(body)),
            Order::Fifo => Box::pin(b.order(Fifo).run_local(body)),
            Order::Concurrent => Box::pin(b.order(Concurrent).run_local(body)),
        };
        let first = catch_unwind(AssertUnwindSafe(|| {
            poll_once(scope.as_mut(), &WakeCounter::new())
        }));
        assert!(first.is_err());
        let _ = catch_unwind(AssertUnwindSafe(|| drop(scope)));
        let mut events = log.events();
        events.sort();
        assert_eq!(events, ["Panicked", "rollback"], "{order:?}");
    }
}

#[test]
fn r2_2_a_returned_body_whose_destructor_unwound_is_seen_as_panicked() {
    type Out = Result<u8, ()>;
    for order in ORDERS {
        let log = support::DropLog::new();
        let drops = DropCounter::new();
        let (a, b, c, bomb) = (log.clone(), log.clone(), log.clone(), drops.panicking());
        let body = move |d: &Defer<Out, Local<'_>, 256>| {
            d.defer(move || a.push("commit")).when(When::Ok);
            d.defer(move || b.push("rollback")).when(When::Panicked);
            d.defer_with(move |exit: &mut deferral::Exit<Out>| {
                // (The output is kept with `std`, lost while unwinding without.)
                c.push(format!("{:?}", exit.outcome()));
            });
            ReadyThenBomb(Ok(7), Some(bomb))
        };
        let b = ScopeBuilder::new().capacity::<256>();
        let mut scope: Pin<Box<dyn Future<Output = Out>>> = match order {
            Order::Lifo => Box::pin(b.order(Lifo).run_local(body)),
            Order::Fifo => Box::pin(b.order(Fifo).run_local(body)),
            Order::Concurrent => Box::pin(b.order(Concurrent).run_local(body)),
        };
        let first = catch_unwind(AssertUnwindSafe(|| {
            poll_once(scope.as_mut(), &WakeCounter::new())
        }));
        assert!(first.is_err());
        let _ = catch_unwind(AssertUnwindSafe(|| drop(scope)));
        let mut events = log.events();
        events.sort();
        assert_eq!(events, ["Panicked", "rollback"], "{order:?}");
    }
}

// ----------------------------------------------- attacks that found nothing
// Kept as coverage: each tries a corner the review suspected.

/// Every async registration kind, pending 0..3 times, in every order and
/// flavour: each is polled to completion and dropped exactly once by its
/// own ready poll (never again by a driver), and a `guard_async_with`
/// fallback never runs for a cleanup that started.
#[test]
fn ready_async_cleanup_of_every_kind_is_dropped_exactly_once() {
    for order in ORDERS {
        for local in [false, true] {
            let drops = DropCounter::new();
            let fallbacks = Arc::new(AtomicUsize::new(0));
            let ran = Arc::new(AtomicUsize::new(0));
            let (dr, fb, rn) = (drops.clone(), fallbacks.clone(), ran.clone());
            // One body per flavour (a closure's handle type is fixed).
            macro_rules! body {
                () => {
                    async move |d| {
                        for n in 0..3 {
                            let (t, r) = (dr.tracked(), rn.clone());
                            d.defer_async(async move {
                                PendN::new(n, t).await;
                                r.fetch_add(1, SeqCst);
                            });
                            let (t, r) = (dr.tracked(), rn.clone());
                            d.defer_async_with(move |outcome| async move {
                                assert_eq!(outcome, deferral::Outcome::Ok);
                                PendN::new(n, t).await;
                                r.fetch_add(1, SeqCst);
                            });
                            let r = rn.clone();
                            let _g = d.guard_async(dr.tracked(), move |t| async move {
                                PendN::new(n, t).await;
                                r.fetch_add(1, SeqCst);
                            });
                            let (f, r) = (fb.clone(), rn.clone());
                            let _g = d.guard_async_with(
                                dr.tracked(),
                                move |t, _| async move {
                                    PendN::new(n, t).await;
                                    r.fetch_add(1, SeqCst);
                                },
                                move |_| {
                                    f.fetch_add(1, SeqCst);
                                },
                            );
                        }
                        Ok::<u8, ()>(1)
                    }
                };
            }
            let b = ScopeBuilder::new().capacity::<1024>();
            let mut scope: Pin<Box<dyn Future<Output = Result<u8, ()>>>> = match (order, local) {
                (Order::Lifo, false) => Box::pin(b.order(Lifo).run(body!())),
                (Order::Fifo, false) => Box::pin(b.order(Fifo).run(body!())),
                (Order::Concurrent, false) => Box::pin(b.order(Concurrent).run(body!())),
                (Order::Lifo, true) => Box::pin(b.order(Lifo).run_local(body!())),
                (Order::Fifo, true) => Box::pin(b.order(Fifo).run_local(body!())),
                (Order::Concurrent, true) => Box::pin(b.order(Concurrent).run_local(body!())),
            };
            assert_eq!(drive(scope.as_mut(), 100), Some(Ok(1)), "{order:?}");
            drop(scope);
            assert_eq!(ran.load(SeqCst), 12, "{order:?} local={local}");
            assert_eq!(
                drops.get(),
                12,
                "{order:?} local={local}: each dropped once"
            );
            assert_eq!(fallbacks.load(SeqCst), 0);
        }
    }
}

/// Conditions mixed with async and sync entries: the one-test fast path
/// (`plain`) and the tagged slow path agree, entries whose condition fails
/// are dropped unrun (once), and concurrent cleanup's index (sized by
/// counting live async entries) holds every async entry that starts.
#[test]
fn conditions_mixed_with_async_and_sync_in_every_order() {
    type Out = Result<u8, u8>;
    for order in ORDERS {
        for failing in [false, true] {
            let drops = DropCounter::new();
            let ran = Arc::new(Mutex::new(Vec::new()));
            let (dr, rn) = (drops.clone(), ran.clone());
            let mut scope = support::order::run(order, async move |d: &Defer<Out, _, 1024>| {
                let whens = [
                    When::Always,
                    When::Ok,
                    When::Err,
                    When::Failed,
                    When::Panicked,
                ];
                for (i, when) in whens.into_iter().enumerate() {
                    let (t, r) = (dr.tracked(), rn.clone());
                    d.defer_async(async move {
                        PendN::new(i % 2, t).await;
                        r.lock().unwrap().push(format!("async {when:?}"));
                    })
                    .when(when);
                    let (t, r) = (dr.tracked(), rn.clone());
                    d.defer(move || {
                        drop(t);
                        r.lock().unwrap().push(format!("sync {when:?}"));
                    })
                    .when(when);
                }
                if failing { Err(1) } else { Ok(1) }
            });
            let out = drive(scope.as_mut(), 100).expect("finished");
            drop(scope);
            assert_eq!(out, if failing { Err(1) } else { Ok(1) });
            assert_eq!(drops.get(), 10, "{order:?}: every entry dropped once");
            let mut ran = ran.lock().unwrap().clone();
            ran.sort();
            let expect: &[&str] = if failing {
                &["Always", "Err", "Failed"]
            } else {
                &["Always", "Ok"]
            };
            let mut want: Vec<String> = expect
                .iter()
                .flat_map(|w| [format!("async {w}"), format!("sync {w}")])
                .collect();
            want.sort();
            assert_eq!(ran, want, "{order:?} failing={failing}");
        }
    }
}

/// Concurrent cleanup across more than one word of wake flags: each
/// cleanup parks its waker for a thread to wake (several times, also after
/// it finished and after the scope is gone); stale wake-ups of finished
/// entries are ignored and the scope finishes. Miri runs it with threads.
#[test]
fn concurrent_cleanup_woken_from_another_thread_with_stale_wakes() {
    let n = rounds(70, 66);
    let parked: Arc<Mutex<Vec<Waker>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let drops = DropCounter::new();
    let (p, dn, dr) = (parked.clone(), done.clone(), drops.clone());
    // Inline room for all of them also without `alloc`.
    let scope = ScopeBuilder::new()
        .capacity::<16384>()
        .order(Concurrent)
        .run(async move |d| {
            for i in 0..n {
                let (p, dn, t) = (p.clone(), dn.clone(), dr.tracked());
                d.defer_async(async move {
                    let _t = t;
                    // Parks its waker, then waits to be woken `i % 3 + 1` times.
                    let mut left = i % 3 + 1;
                    std::future::poll_fn(|cx| {
                        p.lock().unwrap().push(cx.waker().clone());
                        if left == 0 {
                            return Poll::Ready(());
                        }
                        left -= 1;
                        Poll::Pending
                    })
                    .await;
                    dn.fetch_add(1, SeqCst);
                });
            }
        });
    let stop = Arc::new(AtomicUsize::new(0));
    let (p, s) = (parked.clone(), stop.clone());
    let waker_thread = std::thread::spawn(move || {
        while s.load(SeqCst) == 0 {
            let batch: Vec<Waker> = p.lock().unwrap().drain(..).collect();
            for w in &batch {
                w.wake_by_ref();
            }
            // Woken again: stale for the ones that finish meanwhile.
            for w in batch {
                w.wake();
            }
            std::thread::yield_now();
        }
    });
    support::block_on(scope);
    assert_eq!(done.load(SeqCst), n);
    assert_eq!(drops.get(), n, "each dropped once");
    // Wakers outlive the scope: waking and dropping them is harmless.
    stop.store(1, SeqCst);
    waker_thread.join().unwrap();
    for w in parked.lock().unwrap().drain(..) {
        w.wake();
    }
}

/// A per-entry waker cloned by a cleanup and woken after the cleanup
/// finished, after the scope finished, and from another thread after the
/// scope was dropped.
#[test]
fn a_per_entry_waker_outlives_its_entry_and_its_scope() {
    let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
    let k = kept.clone();
    let mut scope = Box::pin(
        ScopeBuilder::new()
            .capacity::<1024>()
            .order(Concurrent)
            .run(async move |d| {
                let k = k.clone();
                d.defer_async(async move {
                    std::future::poll_fn(|cx| {
                        *k.lock().unwrap() = Some(cx.waker().clone());
                        cx.waker().wake_by_ref();
                        Poll::Ready(())
                    })
                    .await;
                });
                d.defer_async(async {
                    yield_now().await;
                    yield_now().await;
                });
            }),
    );
    // The first entry is finished at the first cleanup poll; its waker
    // (woken already) wakes again while the second still runs.
    let counter = WakeCounter::new();
    assert!(poll_once(scope.as_mut(), &counter).is_pending());
    kept.lock().unwrap().as_ref().unwrap().wake_by_ref();
    assert_eq!(drive(scope.as_mut(), 10), Some(()));
    kept.lock().unwrap().as_ref().unwrap().wake_by_ref();
    drop(scope);
    let w = kept.lock().unwrap().take().unwrap();
    std::thread::spawn(move || w.wake()).join().unwrap();
}

/// The owner's waker panics when cloned (concurrent cleanup registers it
/// outside the catch) at several points: polled again with a sane waker,
/// every cleanup still runs and is dropped exactly once.
#[test]
fn concurrent_cleanup_with_an_owner_waker_whose_clone_panics() {
    for k in 1..=3 {
        let drops = DropCounter::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let (dr, rn) = (drops.clone(), ran.clone());
        let mut scope = Box::pin(
            ScopeBuilder::new()
                .capacity::<1024>()
                .order(Concurrent)
                .run(async move |d| {
                    for n in 0..3 {
                        let (t, r) = (dr.tracked(), rn.clone());
                        d.defer_async(async move {
                            PendN::new(n, t).await;
                            r.fetch_add(1, SeqCst);
                        });
                    }
                    yield_now().await;
                }),
        );
        let hostile = support::Hostile::new().panic_on(support::Call::Clone, k);
        let mut finished = false;
        for _ in 0..4 {
            let waker = hostile.waker();
            let polled = catch_unwind(AssertUnwindSafe(|| {
                scope.as_mut().poll(&mut Context::from_waker(&waker))
            }));
            if matches!(polled, Ok(Poll::Ready(()))) {
                finished = true;
                break;
            }
        }
        if !finished {
            assert_eq!(drive(scope.as_mut(), 20), Some(()), "k={k}");
        }
        drop(scope);
        assert_eq!((ran.load(SeqCst), drops.get()), (3, 3), "k={k}");
    }
}

/// A cleanup whose poll panics, in every order, pending or at its first
/// poll: dropped once (by the driver, not again by anyone), the others run,
/// and (with `std`) the scope finishes and resumes the panic; without
/// `std` the panic unwinds out of the poll and the scope is polled again.
#[test]
fn a_panicking_async_poll_is_dropped_once_and_the_rest_run() {
    for order in ORDERS {
        for before in 0..2 {
            let drops = DropCounter::new();
            let ran = Arc::new(AtomicUsize::new(0));
            let (dr, rn) = (drops.clone(), ran.clone());
            let mut scope = support::order::run(order, async move |d| {
                for n in 0..2 {
                    let (t, r) = (dr.tracked(), rn.clone());
                    d.defer_async(async move {
                        PendN::new(n, t).await;
                        r.fetch_add(1, SeqCst);
                    });
                }
                let t = dr.tracked();
                d.defer_async(async move {
                    PendN::new(before, t).await;
                    panic!("a cleanup's poll panics");
                });
                for n in 0..2 {
                    let (t, r) = (dr.tracked(), rn.clone());
                    d.defer_async(async move {
                        PendN::new(n, t).await;
                        r.fetch_add(1, SeqCst);
                    });
                }
            });
            let counter = WakeCounter::new();
            let mut panics = 0;
            let mut finished = false;
            for _ in 0..20 {
                match catch_unwind(AssertUnwindSafe(|| poll_once(scope.as_mut(), &counter))) {
                    Ok(Poll::Ready(())) => {
                        finished = true;
                        break;
                    }
                    Ok(Poll::Pending) => {}
                    Err(_) => {
                        panics += 1;
                        if cfg!(feature = "std") {
                            // Finished: resumed the cleanup's panic.
                            finished = true;
                            break;
                        }
                    }
                }
            }
            assert!(finished, "{order:?}");
            assert_eq!(panics, 1, "{order:?}");
            drop(scope);
            assert_eq!(ran.load(SeqCst), 4, "{order:?} before={before}");
            assert_eq!(
                drops.get(),
                5,
                "{order:?} before={before}: each dropped once"
            );
        }
    }
}

/// Without being polled a scope has no core: dropping it, `Debug`,
/// `is_terminated`, and a `Grace` around it (dropped, `Debug`) touch none.
#[test]
fn a_scope_never_polled_touches_no_core() {
    use futures::future::FusedFuture;
    let drops = DropCounter::new();
    let t = drops.tracked();
    let scope = deferral::scope(async move |d| {
        d.defer(move || drop(t));
    });
    assert!(format!("{scope:?}").contains("Init"));
    assert!(!scope.is_terminated());
    drop(scope);
    assert_eq!(drops.get(), 1, "the body closure (holding it) was dropped");
    let t = drops.tracked();
    let graced = deferral::scope_local(async move |d| {
        d.defer(move || drop(t));
        1
    })
    .grace(std::future::pending::<()>);
    assert!(format!("{graced:?}").contains("Init"));
    drop(graced);
    assert_eq!(drops.get(), 2);
    // Moved before its first poll (nothing points into it yet), then run.
    let t = drops.tracked();
    let scope = ScopeBuilder::new().capacity::<128>().run(async move |d| {
        d.defer(move || drop(t));
        2
    });
    let moved = Box::new(scope);
    let scope = *moved;
    assert_eq!(support::block_on(scope), 2);
    assert_eq!(drops.get(), 3);
}

/// An entry registered under a `ContextVar` carries a context snapshot
/// (`InContext`): the only part of a payload left for the ready poll to
/// drop (a finished `Task` holds nothing). Its value's destructor panics
/// the first time; each is dropped once wherever the entry finished — a
/// scope in any order, a `DeferStack`'s `Dispose`, a `BoxCleanup`, a
/// `Reaper` slot (freed once, and taken again afterwards).
#[cfg(feature = "std")]
mod context_remains {
    use super::*;
    use deferral::ContextVar;
    use deferral::cancel::{BoxCleanup, Reaper};

    /// Counts its drops; the first one (while armed) panics.
    struct Bomb {
        drops: Arc<AtomicUsize>,
        armed: bool,
    }

    impl Drop for Bomb {
        fn drop(&mut self) {
            self.drops.fetch_add(1, SeqCst);
            if self.armed {
                panic!("a context value's destructor panics");
            }
        }
    }

    static CTX: ContextVar<Bomb> = ContextVar::new();

    fn bomb(drops: &Arc<AtomicUsize>) -> Bomb {
        Bomb {
            drops: drops.clone(),
            armed: true,
        }
    }

    /// One test at a time sets the program's cancel handler.
    fn handler() -> std::sync::MutexGuard<'static, ()> {
        static HANDLER: Mutex<()> = Mutex::new(());
        HANDLER.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn panic_message(p: &(dyn std::any::Any + Send)) -> Option<&str> {
        p.downcast_ref::<&str>()
            .copied()
            .or_else(|| p.downcast_ref::<String>().map(String::as_str))
    }

    #[test]
    #[cfg_attr(miri, ignore = "hashbrown leaks its table when a value's drop panics")]
    fn in_a_scope_of_every_order_dropped_once_and_the_rest_run() {
        for order in ORDERS {
            let bombs = Arc::new(AtomicUsize::new(0));
            let ran = Arc::new(AtomicUsize::new(0));
            let (b, r) = (bombs.clone(), ran.clone());
            let mut scope = support::order::run(order, async move |d| {
                let r1 = r.clone();
                d.defer(move || {
                    r1.fetch_add(1, SeqCst);
                });
                // Two entries under two snapshots: both panic when dropped.
                for n in 0..2 {
                    let r2 = r.clone();
                    CTX.run(bomb(&b), || {
                        d.defer_async(async move {
                            PendN::new(n, ()).await;
                            r2.fetch_add(1, SeqCst);
                        });
                    });
                }
                let r3 = r.clone();
                d.defer_async(async move {
                    yield_now().await;
                    r3.fetch_add(1, SeqCst);
                });
            });
            let counter = WakeCounter::new();
            let finished = catch_unwind(AssertUnwindSafe(|| {
                (0..20).find_map(|_| match poll_once(scope.as_mut(), &counter) {
                    Poll::Ready(out) => Some(out),
                    Poll::Pending => None,
                })
            }));
            let p = finished.expect_err("the scope finished and resumed the panic");
            assert_eq!(
                panic_message(&*p),
                Some("a context value's destructor panics")
            );
            drop(scope);
            assert_eq!(ran.load(SeqCst), 4, "{order:?}");
            assert_eq!(
                bombs.load(SeqCst),
                2,
                "{order:?}: each snapshot dropped once"
            );
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "hashbrown leaks its table when a value's drop panics")]
    fn in_a_dispose_dropped_once_and_the_rest_run() {
        let bombs = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let mut stack: deferral::DeferStack<deferral::scope::Sendable, 512> =
            deferral::DeferStack::new();
        let (b, r) = (bombs.clone(), ran.clone());
        support::block_on(ScopeBuilder::new().capacity::<1024>().run(async |d| {
            let r1 = r.clone();
            d.defer(move || {
                r1.fetch_add(1, SeqCst);
            });
            let r2 = r.clone();
            CTX.run(bomb(&b), || {
                d.defer_async(async move {
                    yield_now().await;
                    r2.fetch_add(1, SeqCst);
                });
            });
            let r3 = r.clone();
            d.defer_async(async move {
                r3.fetch_add(1, SeqCst);
            });
            assert_eq!(d.move_all(&mut stack), 3);
        }));
        let mut dispose = pin_box(stack.dispose());
        let counter = WakeCounter::new();
        let finished = catch_unwind(AssertUnwindSafe(|| {
            (0..10).find_map(|_| match poll_once(dispose.as_mut(), &counter) {
                Poll::Ready(()) => Some(()),
                Poll::Pending => None,
            })
        }));
        assert!(
            finished.is_err(),
            "resumed the destructor's panic at the end"
        );
        drop(dispose);
        assert_eq!((ran.load(SeqCst), bombs.load(SeqCst)), (3, 1));
    }

    fn pin_box<F: Future>(f: F) -> Pin<Box<F>> {
        Box::pin(f)
    }

    #[test]
    #[cfg_attr(miri, ignore = "hashbrown leaks its table when a value's drop panics")]
    fn in_a_box_cleanup_dropped_once() {
        static TAKEN: Mutex<Vec<BoxCleanup>> = Mutex::new(Vec::new());
        let _h = handler();
        deferral::cancel::set_cancel_handler(|orphan| {
            TAKEN.lock().unwrap().push(orphan.into_boxed())
        });
        let bombs = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let (b, r) = (bombs.clone(), ran.clone());
        {
            let mut scope = Box::pin(ScopeBuilder::new().capacity::<1024>().run(async move |d| {
                CTX.run(bomb(&b), || {
                    d.defer_async(async move {
                        yield_now().await;
                        r.fetch_add(1, SeqCst);
                    });
                });
                std::future::pending::<()>().await
            }));
            assert!(poll_once(scope.as_mut(), &WakeCounter::new()).is_pending());
        }
        deferral::cancel::clear_cancel_handler();
        let mut cleanup = Box::pin(TAKEN.lock().unwrap().pop().expect("handed over"));
        let counter = WakeCounter::new();
        assert!(poll_once(cleanup.as_mut(), &counter).is_pending());
        assert!(format!("{cleanup:?}").contains("done: false"));
        let p = catch_unwind(AssertUnwindSafe(|| poll_once(cleanup.as_mut(), &counter)))
            .expect_err("the snapshot's destructor panics");
        assert_eq!(
            panic_message(&*p),
            Some("a context value's destructor panics")
        );
        assert!(format!("{cleanup:?}").contains("done: true"));
        // Polled again: a clean panic, nothing touched twice.
        let again = catch_unwind(AssertUnwindSafe(|| poll_once(cleanup.as_mut(), &counter)));
        assert!(again.is_err());
        drop(cleanup);
        assert_eq!((ran.load(SeqCst), bombs.load(SeqCst)), (1, 1));
    }

    #[test]
    #[cfg_attr(miri, ignore = "hashbrown leaks its table when a value's drop panics")]
    fn in_a_reaper_slot_freed_once_and_reused() {
        static REAPER: Reaper<1, 256> = Reaper::new();
        let _h = handler();
        deferral::cancel::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
        let bombs = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let cancel_one = |armed: bool| {
            let (b, r) = (bombs.clone(), ran.clone());
            let mut scope = Box::pin(ScopeBuilder::new().capacity::<1024>().run(async move |d| {
                let value = Bomb { drops: b, armed };
                CTX.run(value, || {
                    d.defer_async(async move {
                        yield_now().await;
                        r.fetch_add(1, SeqCst);
                    });
                });
                std::future::pending::<()>().await
            }));
            assert!(poll_once(scope.as_mut(), &WakeCounter::new()).is_pending());
        };
        cancel_one(true);
        assert_eq!((REAPER.pending(), REAPER.missed()), (1, 0));
        let mut reap = Box::pin(REAPER.run());
        let counter = WakeCounter::new();
        assert!(poll_once(reap.as_mut(), &counter).is_pending());
        let p = catch_unwind(AssertUnwindSafe(|| poll_once(reap.as_mut(), &counter)))
            .expect_err("the snapshot's destructor panics in the reaper task");
        assert_eq!(
            panic_message(&*p),
            Some("a context value's destructor panics")
        );
        assert_eq!(REAPER.pending(), 0, "the slot was freed");
        assert_eq!((ran.load(SeqCst), bombs.load(SeqCst)), (1, 1));
        // The slot takes the next one, and the same runner finishes it.
        cancel_one(false);
        assert_eq!((REAPER.pending(), REAPER.missed()), (1, 0));
        for _ in 0..2 {
            assert!(poll_once(reap.as_mut(), &counter).is_pending());
        }
        deferral::cancel::clear_cancel_handler();
        assert_eq!(REAPER.pending(), 0);
        assert_eq!((ran.load(SeqCst), bombs.load(SeqCst)), (2, 2));
    }
}

/// Payloads of every alignment the allocator treats differently.
#[derive(Clone, Copy, PartialEq, Debug)]
#[repr(align(16))]
struct A16(u8, u64);

#[cfg(feature = "alloc")]
#[derive(Clone, Copy, PartialEq, Debug)]
#[repr(align(32))]
struct A32(u8);

#[cfg(feature = "alloc")]
#[derive(Clone, Copy, PartialEq, Debug)]
#[repr(align(64))]
struct A64(u8);

/// A deterministic pseudo-random sequence (no dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below
    }
}

/// The value a cleanup holds, checked where it lies (in place for async
/// cleanup, which is polled in the slab) and after a move.
fn check<V: Copy + PartialEq + std::fmt::Debug>(v: &V, want: V) {
    assert_eq!(*v, want);
    assert_eq!(
        std::ptr::from_ref(v).addr() % align_of::<V>(),
        0,
        "misaligned"
    );
}

/// Registers and cancels (newest first or from the middle, which gives
/// bytes back only when the newest are gone) payloads of mixed sizes and
/// alignments — zero-sized, byte, word, 16-aligned, an odd 24-byte array,
/// sync and async; every value arrives intact and aligned, each runs or is
/// handed back exactly once. With `fixed`, registrations past the end are
/// refused (the slab is filled exactly at times).
macro_rules! mixed_alignment_run {
    ($d:ident, $steps:expr, $seed:expr, $ran:ident, $refused:ident, $tokens:ident, $wrap:ident, $handed:ident $(, $over:expr)?) => {{
        let mut lcg = Lcg($seed);
        let mut expected = 0usize;
        for step in 0..$steps {
            let x = step as u8;
            if lcg.next(4) == 3 && !$tokens.is_empty() {
                let at = if lcg.next(2) == 0 { $tokens.len() - 1 } else { lcg.next($tokens.len()) };
                let cancel: Box<dyn FnOnce() -> bool> = $tokens.remove(at);
                assert!(cancel(), "a pending registration is handed back");
                continue;
            }
            let kinds = 8 $( + { let _ = $over; 2 } )?;
            let r = $ran.clone();
            macro_rules! sync {
                ($v:expr) => {{
                    let v = $v;
                    $wrap!($d.defer(move || {
                        check(&v, $v);
                        r.fetch_add(1, SeqCst);
                    }), $handed, SYNC)
                }};
            }
            macro_rules! asynch {
                ($v:expr) => {{
                    let v = $v;
                    $wrap!($d.defer_async(async move {
                        check(&v, $v);
                        yield_now().await;
                        check(&v, $v);
                        r.fetch_add(1, SeqCst);
                    }), $handed, ASYNC)
                }};
            }
            let token: Option<Box<dyn FnOnce() -> bool>> = match lcg.next(kinds) {
                0 => sync!(()),
                1 => sync!(x),
                2 => sync!(x as u64 * 3),
                3 => sync!(A16(x, 7)),
                4 => sync!([x; 24]),
                5 => asynch!(()),
                6 => asynch!(x as u64),
                7 => asynch!(A16(x, 9)),
                #[allow(unused_variables)]
                pick => Option::<Option<Box<dyn FnOnce() -> bool>>>::None
                    $(.or({
                        let _ = $over;
                        Some(if pick == 8 { sync!(A32(x)) } else { asynch!(A64(x)) })
                    }))?
                    .expect("an over-aligned kind"),
            };
            match token {
                Some(t) => {
                    expected += 1;
                    $tokens.push(t);
                }
                None => $refused += 1,
            }
        }
        expected
    }};
}

/// Runs what a cancelled registration handed back.
macro_rules! run_taken {
    (SYNC, $f:ident) => {
        $f()
    };
    (ASYNC, $f:ident) => {
        support::block_on($f)
    };
}

/// A fixed scope's registration as a cancel thunk (`None`: refused).
macro_rules! wrap_fixed {
    ($reg:expr, $handed:ident, $kind:ident) => {
        match $reg {
            Ok(token) => {
                let h = $handed.clone();
                Some(Box::new(move || {
                    let f = token.try_cancel().expect("pending");
                    h.fetch_add(1, SeqCst);
                    run_taken!($kind, f);
                    true
                }) as Box<dyn FnOnce() -> bool + '_>)
            }
            Err(_) => None,
        }
    };
}

/// A growing scope's registration as a cancel thunk.
#[cfg(feature = "alloc")]
macro_rules! wrap_growing {
    ($reg:expr, $handed:ident, $kind:ident) => {{
        let token = $reg;
        let h = $handed.clone();
        Some(Box::new(move || {
            let f = token.try_cancel().expect("pending");
            h.fetch_add(1, SeqCst);
            run_taken!($kind, f);
            true
        }) as Box<dyn FnOnce() -> bool + '_>)
    }};
}

#[test]
fn fixed_slabs_filled_exactly_and_reclaimed_with_mixed_alignments() {
    for seed in 0..rounds(16, 3) as u64 {
        for order in ORDERS {
            let ran = Arc::new(AtomicUsize::new(0));
            let handed = Arc::new(AtomicUsize::new(0));
            let (r, h) = (ran.clone(), handed.clone());
            macro_rules! body {
                () => {
                    async move |d| {
                        let mut tokens: Vec<Box<dyn FnOnce() -> bool + '_>> = Vec::new();
                        let mut refused = 0usize;
                        let made = mixed_alignment_run!(
                            d,
                            rounds(120, 40),
                            seed,
                            r,
                            refused,
                            tokens,
                            wrap_fixed,
                            h
                        );
                        (made, refused, tokens.len())
                    }
                };
            }
            // 200 bytes: not a multiple of 16 (aligning may pass the end).
            let b = ScopeBuilder::new().capacity::<200>().fixed();
            let mut scope: Pin<Box<dyn Future<Output = (usize, usize, usize)>>> = match order {
                Order::Lifo => Box::pin(b.order(Lifo).run(body!())),
                Order::Fifo => Box::pin(b.order(Fifo).run(body!())),
                Order::Concurrent => Box::pin(b.order(Concurrent).run(body!())),
            };
            let (made, refused, kept) = drive(scope.as_mut(), 200).expect("finished");
            drop(scope);
            assert!(refused > 0, "seed {seed}: the slab filled up");
            assert_eq!(handed.load(SeqCst) + kept, made, "seed {seed} {order:?}");
            assert_eq!(
                ran.load(SeqCst),
                made,
                "seed {seed} {order:?}: each ran once"
            );
        }
    }
}

/// The same with a growing slab of 64 inline bytes: entries spill to heap
/// chunks (aligned beyond 16 to a chunk of their own alignment), bytes are
/// given back in whichever region is current.
#[cfg(feature = "alloc")]
#[test]
fn growing_slabs_spill_and_reclaim_with_mixed_alignments() {
    for seed in 0..rounds(16, 3) as u64 {
        for order in ORDERS {
            let ran = Arc::new(AtomicUsize::new(0));
            let handed = Arc::new(AtomicUsize::new(0));
            let (r, h) = (ran.clone(), handed.clone());
            macro_rules! body {
                () => {
                    async move |d| {
                        let mut tokens: Vec<Box<dyn FnOnce() -> bool + '_>> = Vec::new();
                        let mut refused = 0usize;
                        let made = mixed_alignment_run!(
                            d,
                            rounds(150, 40),
                            seed,
                            r,
                            refused,
                            tokens,
                            wrap_growing,
                            h,
                            ()
                        );
                        assert_eq!(refused, 0);
                        (made, tokens.len())
                    }
                };
            }
            let b = ScopeBuilder::new().capacity::<64>();
            let mut scope: Pin<Box<dyn Future<Output = (usize, usize)>>> = match order {
                Order::Lifo => Box::pin(b.order(Lifo).run(body!())),
                Order::Fifo => Box::pin(b.order(Fifo).run(body!())),
                Order::Concurrent => Box::pin(b.order(Concurrent).run(body!())),
            };
            let (made, kept) = drive(scope.as_mut(), 200).expect("finished");
            drop(scope);
            assert_eq!(handed.load(SeqCst) + kept, made, "seed {seed} {order:?}");
            assert_eq!(
                ran.load(SeqCst),
                made,
                "seed {seed} {order:?}: each ran once"
            );
        }
    }
}

/// Head-aligned entries (the unrounded fast path) that fill a heap chunk
/// to its last byte, then one more (no room: a new chunk), then give the
/// newest back and take their bytes again; the values stay intact.
#[cfg(feature = "alloc")]
#[test]
fn head_aligned_entries_fill_a_chunk_exactly_and_reuse_it() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    // No inline room: every entry goes to a chunk. The first chunk is 256
    // bytes with a header of `3 words` rounded up to 16; entries of a
    // 40-byte payload and a two-word head fill what is left exactly on
    // 64-bit (4 x 56 = 224) and on 32-bit (5 x 48 = 240).
    let out = support::block_on(ScopeBuilder::new().capacity::<0>().run(async move |d| {
        let word = size_of::<usize>();
        let entry = 2 * word + 40;
        let room = 256 - (3 * word).next_multiple_of(16);
        assert_eq!(room % entry, 0, "the chunk is filled exactly");
        let fit = room / entry;
        let mut tokens = Vec::new();
        for i in 0..fit + 2 {
            let v = [i as u8; 40];
            let r = r.clone();
            tokens.push(d.defer(move || {
                assert_eq!(v, [i as u8; 40]);
                r.fetch_add(1, SeqCst);
            }));
        }
        // The newest three are given back (two in the second chunk, one in
        // the first: only the current region's bytes are reused)...
        for f in tokens.drain(fit - 1..).rev().map(|t| t.cancel()) {
            f();
        }
        // ...and taken again.
        for i in 0..3u8 {
            let v = [i + 100; 40];
            let r = r.clone();
            d.defer(move || {
                assert_eq!(v, [i + 100; 40]);
                r.fetch_add(1, SeqCst);
            });
        }
        drop(tokens);
        (fit, d.len())
    }));
    let (fit, len) = out;
    assert_eq!(len, fit - 1 + 3);
    assert_eq!(ran.load(SeqCst), fit + 2 + 3);
}
