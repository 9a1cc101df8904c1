//! Hostile use: everything here is safe Rust a user may write, and the crate
//! must survive it without UB, double drops, lost values or hangs. (Misuse
//! the type system rejects — a thunk keeping the handle, a guard escaping —
//! is in `tests/ui/`.)

mod support;

#[cfg(feature = "std")]
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Poll, Waker};

use deferral::scope::ScopeBuilder;
use deferral::{DeferredPromise, Guard, PromiseCell, scope};
use support::order::Order::{Concurrent, Lifo};
use support::{DropCounter, DropLog, Gate, WakeCounter, block_on, poll_once};

/// A waker whose `wake` panics (and that counts its drops).
#[cfg(feature = "std")]
fn panicking_waker(drops: &'static std::sync::atomic::AtomicUsize) -> Waker {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::{RawWaker, RawWakerVTable};
    fn clone(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE)
    }
    fn wake(p: *const ()) {
        drop_w(p);
        panic!("waker panicked");
    }
    fn wake_by_ref(_: *const ()) {
        panic!("waker panicked");
    }
    fn drop_w(p: *const ()) {
        // SAFETY: `p` is the `&'static AtomicUsize` given to `panicking_waker`.
        unsafe { &*(p as *const AtomicUsize) }.fetch_add(1, SeqCst);
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_w);
    // SAFETY: the vtable functions only use `p` as the `&'static AtomicUsize`.
    unsafe {
        Waker::from_raw(RawWaker::new(
            drops as *const AtomicUsize as *const (),
            &VTABLE,
        ))
    }
}

#[test]
#[cfg(feature = "std")]
fn a_thunk_registering_more_thunks_during_top_level_cleanup_gets_them_back() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(scope(async move |d| {
        d.defer(move || {
            // Cleanup is not the body: there is no scope to register on.
            let l2 = l.clone();
            let refused = deferral::scope::try_defer(move || l2.push("ran by hand")).unwrap_err();
            (refused.into_inner())();
            assert!(deferral::scope::try_defer_async(async {}).is_err());
            l.push("thunk");
        });
    }));
    assert_eq!(log.events(), ["ran by hand", "thunk"]);
}

#[test]
fn polling_with_a_different_waker_every_time_wakes_only_the_latest() {
    for order in [Lifo, Concurrent] {
        let gate = Gate::new();
        let wait = gate.wait();
        let mut s = pin!(support::order::run(order, async move |d| {
            d.defer_async(wait);
        }));
        let counters: Vec<WakeCounter> = (0..4).map(|_| WakeCounter::new()).collect();
        for c in &counters {
            assert_eq!(poll_once(s.as_mut(), c), Poll::Pending);
        }
        gate.open();
        let wakes: Vec<usize> = counters.iter().map(WakeCounter::wakes).collect();
        assert_eq!(
            wakes,
            [0, 0, 0, 1],
            "{order:?}: only the latest waker is woken"
        );
        // A finished scope has dropped its thunks and wake set already.
        assert_eq!(poll_once(s.as_mut(), &counters[3]), Poll::Ready(()));
        drop(gate); // the thunk's future kept a waker in it
        for c in &counters {
            assert_eq!(c.live(), 0, "{order:?}: no waker kept after the scope");
        }
    }
}

#[test]
fn stale_thunk_wakers_are_harmless_after_the_scope_is_gone() {
    for order in [Lifo, Concurrent] {
        let gate = Gate::new();
        let wait = gate.wait();
        let stolen: Arc<std::sync::Mutex<Option<Waker>>> = Arc::default();
        let steal = stolen.clone();
        let counter = WakeCounter::new();
        {
            let mut s = pin!(support::order::run(order, async move |d| {
                d.defer_async(async move {
                    // Keep the thunk's waker beyond the scope's life.
                    std::future::poll_fn(|cx| {
                        *steal.lock().unwrap() = Some(cx.waker().clone());
                        Poll::Ready(())
                    })
                    .await;
                    wait.await;
                });
            }));
            assert_eq!(poll_once(s.as_mut(), &counter), Poll::Pending);
            gate.open();
            assert_eq!(poll_once(s.as_mut(), &counter), Poll::Ready(()));
        }
        drop(gate);
        let waker = stolen.lock().unwrap().take().unwrap();
        // In sequential orders a thunk is polled with the scope's own waker,
        // so the stolen one is a clone of it; with per-thunk wakers (alloc,
        // concurrent) it is the thunk's, which keeps no scope waker alive.
        let per_thunk = cfg!(feature = "alloc") && order == Concurrent;
        assert_eq!(counter.live(), if per_thunk { 0 } else { 1 }, "{order:?}");
        waker.wake_by_ref();
        waker.wake();
        assert_eq!(counter.live(), 0, "{order:?}");
    }
}

#[test]
#[cfg(feature = "std")]
fn a_panicking_scope_waker_does_not_wedge_concurrent_cleanup() {
    static DROPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let gate = Gate::new();
    let wait = gate.wait();
    let mut s = pin!(support::order::run(Concurrent, async move |d| {
        d.defer_async(wait);
    }));
    let bad = panicking_waker(&DROPS);
    assert!(
        s.as_mut()
            .poll(&mut std::task::Context::from_waker(&bad))
            .is_pending()
    );
    // The thunk's waker wakes the scope's waker, which panics into `open`.
    assert!(catch_unwind(AssertUnwindSafe(|| gate.open())).is_err());
    // The wake-up was recorded before the panic: a good poll finishes.
    assert_eq!(poll_once(s.as_mut(), &WakeCounter::new()), Poll::Ready(()));
}

#[test]
#[cfg(feature = "std")]
fn a_panicking_promise_waker_still_delivers_the_value() {
    static DROPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut p = pin!(
        DeferredPromise::<u32, deferral::PromiseError<()>>::detached(move |r| tx.send(r).unwrap())
    );
    let bad = panicking_waker(&DROPS);
    assert!(
        p.as_mut()
            .poll(&mut std::task::Context::from_waker(&bad))
            .is_pending()
    );
    let resolver = rx.recv().unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| resolver.resolve(5))).is_err());
    assert_eq!(
        poll_once(p.as_mut(), &WakeCounter::new()),
        Poll::Ready(Ok(5))
    );
}

#[test]
#[cfg(feature = "alloc")]
fn resolving_inside_the_executor_and_again_from_a_thread_is_refused() {
    let p = DeferredPromise::<u32, deferral::PromiseError<()>>::detached(|r| {
        r.resolve(1).unwrap();
        std::thread::spawn(move || {
            let refused = r.resolve(2).unwrap_err();
            assert_eq!(refused.reason(), deferral::promise::Refusal::AlreadySettled);
            assert_eq!(
                refused.into_value(),
                Ok(2),
                "the refused value is handed back"
            );
        })
        .join()
        .unwrap();
    });
    assert_eq!(block_on(p), Ok(1));
}

#[test]
#[allow(clippy::forget_non_drop)] // the point: forgetting a token is harmless
fn forgetting_guards_and_tokens_keeps_their_registrations() {
    let drops = DropCounter::new();
    let log = DropLog::new();
    let (l1, l2, t) = (log.clone(), log.clone(), drops.tracked());
    block_on(scope(async move |d| {
        let guard = d.guard(t, move |t| {
            l1.push("guard cleanup");
            drop(t);
        });
        std::mem::forget(guard); // leaks only the pointer: cleanup still runs
        std::mem::forget(d.defer(move || l2.push("thunk")));
    }));
    assert_eq!(log.events(), ["thunk", "guard cleanup"]);
    assert_eq!(drops.get(), 1);
}

#[test]
fn defusing_after_other_registrations_and_in_any_order() {
    let log = DropLog::new();
    let l = log.clone();
    // Room for 15 guards without `alloc`.
    let out = block_on(ScopeBuilder::new().capacity::<2048>().run(async move |d| {
        // One cleanup type for all (a guard's type names its cleanup's).
        fn logger(l: DropLog) -> impl FnOnce(u32) + Send + 'static {
            move |i| l.push(format!("cleanup {i}"))
        }
        let mut guards = Vec::new();
        for i in 0..10 {
            guards.push(d.guard(i, logger(l.clone())));
        }
        // Defuse every other one, from the middle outwards.
        let mut taken = Vec::new();
        for i in [5, 3, 7, 1, 9] {
            let filler = d.guard(100, logger(DropLog::new()));
            let g = std::mem::replace(&mut guards[i], filler);
            taken.push(Guard::defuse(g));
        }
        taken
    }));
    assert_eq!(out, [5, 3, 7, 1, 9]);
    assert_eq!(
        log.events(),
        [
            "cleanup 8",
            "cleanup 6",
            "cleanup 4",
            "cleanup 2",
            "cleanup 0"
        ]
    );
}

#[test]
#[cfg_attr(miri, ignore = "leaks on purpose, which Miri reports as an error")]
fn forgetting_a_scope_a_promise_or_a_resolver_is_safe() {
    let log = DropLog::new();
    let l = log.clone();
    let mut s = Box::pin(scope(async move |d| {
        d.defer(move || l.push("never runs: the scope is leaked"));
        std::future::pending::<()>().await
    }));
    assert!(poll_once(s.as_mut(), &WakeCounter::new()).is_pending());
    std::mem::forget(s);
    assert!(log.events().is_empty());
    #[cfg(feature = "std")]
    assert!(
        deferral::scope::try_defer(|| ()).is_err(),
        "no ambient scope is left behind"
    );

    // A leaked promise never runs again; a leaked resolver leaves its
    // promise pending, like a leaked channel sender.
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let (promise, resolver) = CELL.promise().unwrap();
    std::mem::forget(resolver);
    let mut promise = pin!(promise);
    assert!(poll_once(promise.as_mut(), &WakeCounter::new()).is_pending());
    assert!(
        CELL.promise().is_err(),
        "the cell stays busy while a resolver is leaked"
    );
    let captured = String::from("leaked with the executor, never run");
    std::mem::forget(DeferredPromise::<u32, deferral::PromiseError<()>>::new(
        move |r| {
            drop(captured);
            r.resolve(1)
        },
    ));
}
