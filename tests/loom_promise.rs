//! loom models of every cross-thread handoff of the promise module: settle
//! vs. poll vs. drop, of promise and resolver, on two threads; and the
//! `AtomicWaker` they build on.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_promise`
//! (`.ci/run` bounds `LOOM_MAX_PREEMPTIONS`).
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use deferral::promise::Refusal;
use deferral::{DeferredPromise, PromiseCell, PromiseError};
use loom::thread;

#[derive(Default)]
struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn waker() -> (Arc<Flag>, Waker) {
    let flag = Arc::new(Flag::default());
    (flag.clone(), Waker::from(flag))
}

/// A value that counts its drops (in the model's memory).
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn leak_cell<T, E>() -> &'static PromiseCell<T, E> {
    Box::leak(Box::new(PromiseCell::new()))
}

fn poll<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Resolve on one thread while the other polls: no lost wake-up, the value
/// arrives exactly once, the cell is free afterwards.
#[test]
fn cell_resolve_vs_poll() {
    loom::model(|| {
        let cell = leak_cell::<u32, ()>();
        let (promise, resolver) = cell.promise().unwrap();
        let mut promise = Box::pin(promise);
        let t = thread::spawn(move || resolver.resolve(7).unwrap());
        let (flag, w) = waker();
        match promise.as_mut().poll(&mut Context::from_waker(&w)) {
            Poll::Ready(v) => assert_eq!(v, Ok(7)),
            Poll::Pending => {
                t.join().unwrap();
                assert_eq!(flag.0.load(SeqCst), 1, "lost wake-up");
                assert_eq!(poll(&mut promise, &w), Poll::Ready(Ok(7)));
                assert!(cell.is_free());
                return;
            }
        }
        t.join().unwrap();
        assert!(cell.is_free());
    });
}

/// The resolver is dropped (abandons) while the promise polls.
#[test]
fn cell_abandon_vs_poll() {
    loom::model(|| {
        let cell = leak_cell::<u32, ()>();
        let (promise, resolver) = cell.promise().unwrap();
        let mut promise = Box::pin(promise);
        let t = thread::spawn(move || drop(resolver));
        let (flag, w) = waker();
        if let Poll::Ready(v) = poll(&mut promise, &w) {
            assert_eq!(v, Err(PromiseError::Abandoned));
            t.join().unwrap();
        } else {
            t.join().unwrap();
            assert_eq!(flag.0.load(SeqCst), 1, "lost wake-up");
            assert_eq!(
                poll(&mut promise, &w),
                Poll::Ready(Err(PromiseError::Abandoned))
            );
        }
        assert!(cell.is_free());
    });
}

/// Resolve on one thread while the promise is dropped on the other: the
/// value is dropped exactly once (by the promise, or handed back), and
/// whichever side finishes last frees the cell.
#[test]
fn cell_resolve_vs_promise_drop() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let cell = leak_cell::<Tracked, ()>();
        let (promise, resolver) = cell.promise().unwrap();
        let d = drops.clone();
        let t = thread::spawn(move || {
            match resolver.resolve(Tracked(d)) {
                Ok(()) => {}
                Err(refused) => {
                    assert_eq!(refused.reason(), Refusal::Closed);
                    drop(refused.into_value());
                }
            }
            drop(resolver);
        });
        drop(promise);
        t.join().unwrap();
        assert_eq!(drops.load(SeqCst), 1);
        assert!(cell.is_free());
    });
}

/// Both sides dropped concurrently, nothing settled: the cell ends free.
#[test]
fn cell_resolver_drop_vs_promise_drop() {
    loom::model(|| {
        let cell = leak_cell::<u32, ()>();
        let (promise, resolver) = cell.promise().unwrap();
        let t = thread::spawn(move || drop(resolver));
        drop(promise);
        t.join().unwrap();
        assert!(cell.is_free());
        // and it is reusable
        let (promise, resolver) = cell.promise().unwrap();
        resolver.resolve(1).unwrap();
        let (_, w) = waker();
        let mut promise = Box::pin(promise);
        assert_eq!(poll(&mut promise, &w), Poll::Ready(Ok(1)));
    });
}

/// A stale resolver of a finished generation races the next generation's
/// pair: it is refused and cannot disturb the new promise.
#[test]
fn stale_resolver_vs_reuse() {
    loom::model(|| {
        let cell = leak_cell::<u32, ()>();
        let (promise, resolver) = cell.promise().unwrap();
        resolver.resolve(1).unwrap();
        let (_, w) = waker();
        let mut promise = Box::pin(promise);
        assert_eq!(poll(&mut promise, &w), Poll::Ready(Ok(1)));
        let t = thread::spawn(move || {
            let refused = resolver.resolve(2).unwrap_err();
            assert_eq!(refused.reason(), Refusal::Stale);
            drop(resolver);
        });
        let (promise, fresh) = cell.promise().unwrap();
        let mut promise = Box::pin(promise);
        let first = poll(&mut promise, &w);
        assert_eq!(
            first,
            Poll::Pending,
            "the stale resolver settled the new promise"
        );
        fresh.resolve(3).unwrap();
        t.join().unwrap();
        assert_eq!(poll(&mut promise, &w), Poll::Ready(Ok(3)));
    });
}

/// The `Arc` (detached) mode: the resolver settles from another thread while
/// the promise polls, then is dropped.
#[test]
fn detached_reject_vs_poll() {
    loom::model(|| {
        let slot = Arc::new(std::sync::Mutex::new(None));
        let s = slot.clone();
        let mut promise = Box::pin(DeferredPromise::<u32, PromiseError<u8>>::detached(
            move |r| {
                *s.lock().unwrap() = Some(r);
            },
        ));
        let (flag, w) = waker();
        assert_eq!(poll(&mut promise, &w), Poll::Pending); // runs the executor
        let resolver = slot.lock().unwrap().take().unwrap();
        let t = thread::spawn(move || resolver.reject(9).unwrap());
        let first = poll(&mut promise, &w);
        t.join().unwrap();
        match first {
            Poll::Ready(v) => assert_eq!(v, Err(PromiseError::Rejected(9))),
            Poll::Pending => {
                assert!(flag.0.load(SeqCst) >= 1, "lost wake-up");
                assert_eq!(
                    poll(&mut promise, &w),
                    Poll::Ready(Err(PromiseError::Rejected(9)))
                );
            }
        }
    });
}

/// Waker replaced between polls while the resolver settles: the latest
/// waker is woken (or the poll that registered it saw the value).
#[test]
fn waker_replaced_vs_resolve() {
    loom::model(|| {
        let cell = leak_cell::<u32, ()>();
        let (promise, resolver) = cell.promise().unwrap();
        let mut promise = Box::pin(promise);
        let (_old_flag, old) = waker();
        let (new_flag, new) = waker();
        assert_eq!(poll(&mut promise, &old), Poll::Pending);
        let t = thread::spawn(move || resolver.resolve(5).unwrap());
        let second = poll(&mut promise, &new);
        t.join().unwrap();
        if second.is_pending() {
            assert_eq!(new_flag.0.load(SeqCst), 1, "the latest waker was not woken");
            assert_eq!(poll(&mut promise, &new), Poll::Ready(Ok(5)));
        }
    });
}

/// Resolve on one thread; the other polls once and then drops the promise
/// whatever it saw: the value is dropped exactly once, the cell ends free.
#[test]
fn cell_resolve_vs_poll_then_drop() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let cell = leak_cell::<Tracked, ()>();
        let (promise, resolver) = cell.promise().unwrap();
        let d = drops.clone();
        let t = thread::spawn(move || {
            if let Err(refused) = resolver.resolve(Tracked(d)) {
                assert_eq!(refused.reason(), Refusal::Closed);
            }
        });
        let mut promise = Box::pin(promise);
        let (_, w) = waker();
        let polled = poll(&mut promise, &w);
        drop(promise);
        drop(polled);
        t.join().unwrap();
        assert_eq!(drops.load(SeqCst), 1);
        assert!(cell.is_free());
    });
}

/// Two clones of a `SharedPromise` polled on two threads while the source is
/// resolved on one of them: exactly one drives the source at a time, every
/// clone that returned `Pending` is woken, both get the value.
#[test]
fn shared_clones_poll_vs_resolve() {
    use deferral::SharedPromise;
    loom::model(|| {
        let cell = leak_cell::<u32, ()>();
        let (source, resolver) = cell.promise().unwrap();
        let a = SharedPromise::new(source);
        let b = a.clone();
        let t = thread::spawn(move || {
            let (flag, w) = waker();
            let mut b = Box::pin(b);
            let first = poll(&mut b, &w);
            resolver.resolve(3).unwrap();
            (b, flag, w, first)
        });
        let mut a = Box::pin(a);
        let (flag_a, wa) = waker();
        let first_a = poll(&mut a, &wa);
        let (mut b, flag_b, wb, first_b) = t.join().unwrap();
        for (first, flag, clone, w) in [
            (first_a, flag_a, &mut a, &wa),
            (first_b, flag_b, &mut b, &wb),
        ] {
            match first {
                Poll::Ready(v) => assert_eq!(v, Ok(3)),
                Poll::Pending => {
                    assert!(flag.0.load(SeqCst) >= 1, "a waiting clone was not woken");
                    assert_eq!(poll(clone, w), Poll::Ready(Ok(3)));
                }
            }
        }
    });
}

/// Finding 2 of the review of bf5d9a4: the promise read its value, then
/// dropped its registered waker *before* freeing the cell; a panicking
/// destructor there left the state `OK`, and the next poll or the drop read
/// the value again (double drop). Explored under every interleaving of a
/// resolver on another thread: whichever side takes the registration out
/// drops it; the value is dropped exactly once; the cell ends up free.
#[test]
fn finding_2_panicking_waker_drop_while_taking_the_value() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::task::{RawWaker, RawWakerVTable};

    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, drop_raw);
    unsafe fn clone(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE)
    }
    unsafe fn noop(_: *const ()) {}
    unsafe fn drop_raw(p: *const ()) {
        // SAFETY: `p` is the leaked `AtomicBool` below.
        let armed = unsafe { &*p.cast::<std::sync::atomic::AtomicBool>() };
        if armed.swap(false, SeqCst) {
            panic!("waker drop panics");
        }
    }

    loom::model(|| {
        let cell = leak_cell::<Tracked, ()>();
        let drops = Arc::new(AtomicUsize::new(0));
        let (promise, resolver) = cell.promise().unwrap();
        let mut promise = Box::pin(promise);
        let value = Tracked(drops.clone());
        let t = thread::spawn(move || {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                resolver.resolve(value).map_err(drop).unwrap();
            }));
        });
        let armed: &'static std::sync::atomic::AtomicBool =
            Box::leak(Box::new(std::sync::atomic::AtomicBool::new(true)));
        // SAFETY: the vtable only reads `p` as that `AtomicBool`.
        let hostile = unsafe {
            Waker::from_raw(RawWaker::new(
                (armed as *const std::sync::atomic::AtomicBool).cast(),
                &VTABLE,
            ))
        };
        let mut out = None;
        for _ in 0..2 {
            if let Ok(Poll::Ready(v)) =
                catch_unwind(AssertUnwindSafe(|| poll(&mut promise, &hostile)))
            {
                out = Some(v);
                break;
            }
        }
        t.join().unwrap();
        let out = match out {
            Some(v) => v,
            None => {
                let (_, w) = waker();
                match catch_unwind(AssertUnwindSafe(|| poll(&mut promise, &w))) {
                    Ok(Poll::Ready(v)) => v,
                    other => panic!(
                        "still pending after the resolver finished: {:?}",
                        other.is_ok()
                    ),
                }
            }
        };
        assert!(out.is_ok());
        drop(out);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(hostile)));
        let _ = catch_unwind(AssertUnwindSafe(move || drop(promise)));
        assert_eq!(drops.load(SeqCst), 1, "the value was dropped exactly once");
        assert!(cell.is_free());
    });
}

/// A clone polls (and registers) on one thread while another clone's poll
/// completes the source and closes the waiter list: the registration either
/// lands before the close (and is woken) or finds the list closed (and reads
/// the output). No registered waker leaks into the closed list.
#[test]
fn shared_registration_vs_completion() {
    use deferral::SharedPromise;
    loom::model(|| {
        let a = SharedPromise::new(DeferredPromise::<u32, ()>::resolved(5));
        let b = a.clone();
        let t = thread::spawn(move || {
            let (flag, w) = waker();
            let mut b = Box::pin(b);
            let first = poll(&mut b, &w);
            (b, flag, w, first)
        });
        let (flag_a, wa) = waker();
        let mut a = Box::pin(a);
        let first_a = poll(&mut a, &wa);
        let (mut b, flag_b, wb, first_b) = t.join().unwrap();
        for (first, flag, clone, w) in [
            (first_a, &flag_a, &mut a, &wa),
            (first_b, &flag_b, &mut b, &wb),
        ] {
            match first {
                Poll::Ready(v) => assert_eq!(v, Ok(5)),
                Poll::Pending => {
                    assert!(flag.0.load(SeqCst) >= 1, "a waiting clone was not woken");
                    assert_eq!(poll(clone, w), Poll::Ready(Ok(5)));
                }
            }
        }
        // Both done, both still alive: the list holds no waker of theirs.
        assert_eq!(Arc::strong_count(&flag_a), 2, "a's waker is still held");
        assert_eq!(Arc::strong_count(&flag_b), 2, "b's waker is still held");
        drop((a, b, wa, wb));
    });
}

/// A registered clone is dropped on one thread while the other settles the
/// source (its waker wakes every waiter) and completes it: the drop either
/// unregisters (before the close) or sees the final state and skips the
/// list. Its waker is dropped exactly once, the value once.
#[test]
fn shared_drop_vs_resolve_and_completion() {
    use deferral::SharedPromise;
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let cell = leak_cell::<Arc<Tracked>, ()>();
        let (source, resolver) = cell.promise().unwrap();
        let mut a = Box::pin(SharedPromise::new(source));
        let mut b = Box::pin(a.clone());
        let (_, wa) = waker();
        let (flag_b, wb) = waker();
        assert!(poll(&mut a, &wa).is_pending());
        assert!(poll(&mut b, &wb).is_pending());
        drop(wb);
        let t = thread::spawn(move || drop(b));
        assert!(resolver.resolve(Arc::new(Tracked(drops.clone()))).is_ok());
        let out = poll(&mut a, &wa);
        t.join().unwrap();
        assert!(
            matches!(out, Poll::Ready(Ok(_))),
            "a was woken: it completes"
        );
        assert_eq!(Arc::strong_count(&flag_b), 1, "b's waker leaked");
        drop((a, out));
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// The pass-on: `b` registers while `a` drives the source, the source's
/// waker fires (another thread settles it) during or after `a`'s poll, and
/// `a` is dropped right after that poll, never to poll again. `b` is woken
/// (by the source's waker, by `a`'s completion, or by `a`'s drop passing its
/// wake-up on) and gets the value. Three threads: exhaustive would take
/// hours, so preemptions are bounded (4 unless `LOOM_MAX_PREEMPTIONS` says:
/// about 5 s in release). With `std` only: without it the waiter list is a
/// spin lock, and three threads spinning exceed loom's branch budget (the
/// two-thread models above cover the spin lock).
#[cfg(feature = "std")]
#[test]
fn shared_woken_clone_dropped_passes_the_wake_on() {
    use deferral::SharedPromise;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(4));
    builder.check(|| {
        let cell = leak_cell::<u32, ()>();
        let (source, resolver) = cell.promise().unwrap();
        let mut a = Box::pin(SharedPromise::new(source));
        let b = a.clone();
        let settle = thread::spawn(move || resolver.resolve(8).unwrap());
        let waiter = thread::spawn(move || {
            let (flag, w) = waker();
            let mut b = Box::pin(b);
            let first = poll(&mut b, &w);
            (b, flag, w, first)
        });
        let (_, wa) = waker();
        let _ = poll(&mut a, &wa);
        drop(a);
        settle.join().unwrap();
        let (mut b, flag_b, wb, first_b) = waiter.join().unwrap();
        match first_b {
            Poll::Ready(v) => assert_eq!(v, Ok(8)),
            Poll::Pending => {
                assert!(flag_b.0.load(SeqCst) >= 1, "the clone left was not woken");
                assert_eq!(poll(&mut b, &wb), Poll::Ready(Ok(8)));
            }
        }
    });
}

fn leak_shared<T, E, const N: usize>() -> &'static deferral::SharedCell<T, E, N> {
    Box::leak(Box::new(deferral::SharedCell::new()))
}

/// `SharedCell`: one waiter polls on another thread while the main thread
/// polls a second waiter and then settles (the interrupt): each waiter that
/// returned `Pending` was woken, every waiter gets the value, every slot is
/// given back. (Two threads: a third made the exhaustive search take
/// minutes.)
#[test]
fn shared_cell_two_waiters_vs_settle() {
    loom::model(|| {
        let cell = leak_shared::<u32, (), 2>();
        let mut a = cell.wait().unwrap();
        let mut b = cell.wait().unwrap();
        let t = thread::spawn(move || {
            let (flag, w) = waker();
            let first = poll(&mut a, &w);
            (a, flag, w, first)
        });
        let (flag_b, wb) = waker();
        let first_b = poll(&mut b, &wb);
        cell.resolve(3).unwrap();
        let (mut a, flag_a, wa, first_a) = t.join().unwrap();
        for (first, flag, w, waiter) in
            [(first_a, flag_a, wa, &mut a), (first_b, flag_b, wb, &mut b)]
        {
            match first {
                Poll::Ready(v) => assert_eq!(v, Ok(3)),
                Poll::Pending => {
                    assert_eq!(flag.0.load(SeqCst), 1, "lost wake-up");
                    assert_eq!(poll(waiter, &w), Poll::Ready(Ok(3)));
                }
            }
        }
        drop((a, b));
        assert_eq!(cell.waiters(), 0);
    });
}

/// `SharedCell`: a waiter is dropped on one thread while a settlement wakes
/// it on another, and a new waiter claims the freed slot: nobody spins, the
/// new waiter gets the value, the slots end free.
#[test]
fn shared_cell_waiter_drop_vs_settle_vs_reclaim() {
    loom::model(|| {
        let cell = leak_shared::<u32, (), 1>();
        let mut first = cell.wait().unwrap();
        let (_, w) = waker();
        assert!(poll(&mut first, &w).is_pending());
        let t = thread::spawn(move || cell.resolve(9).unwrap());
        drop(first);
        let mut second = cell.wait().unwrap();
        let (flag, w2) = waker();
        let polled = poll(&mut second, &w2);
        t.join().unwrap();
        match polled {
            Poll::Ready(v) => assert_eq!(v, Ok(9)),
            Poll::Pending => {
                assert!(flag.0.load(SeqCst) >= 1, "lost wake-up");
                assert_eq!(poll(&mut second, &w2), Poll::Ready(Ok(9)));
            }
        }
        assert_eq!(cell.waiters(), 0);
    });
}

/// `SharedCell`: the waker is replaced between two polls while the
/// settlement runs: the latest waker is woken (or the poll saw the value).
#[test]
fn shared_cell_waker_replaced_vs_settle() {
    loom::model(|| {
        let cell = leak_shared::<u32, (), 2>();
        let mut w = cell.wait_ref().unwrap();
        let (_old_flag, old) = waker();
        let (new_flag, new) = waker();
        assert!(poll(&mut w, &old).is_pending());
        let t = thread::spawn(move || cell.resolve(5).unwrap());
        let second = poll(&mut w, &new);
        t.join().unwrap();
        match second {
            Poll::Ready(v) => assert_eq!(v, Ok(&5)),
            Poll::Pending => {
                assert_eq!(new_flag.0.load(SeqCst), 1, "the latest waker was not woken");
                assert_eq!(poll(&mut w, &new), Poll::Ready(Ok(&5)));
            }
        }
    });
}

// ------------------------------------------------------------- SignalCell

fn leak_signal<T, E>() -> &'static deferral::promise::SignalCell<T, E> {
    Box::leak(Box::new(deferral::promise::SignalCell::new()))
}

/// The interrupt settles while the task polls its wait: no lost wake-up,
/// the value arrives exactly once.
#[test]
fn signal_settle_vs_wait() {
    loom::model(|| {
        let cell = leak_signal::<u32, ()>();
        let mut wait = cell.wait().unwrap();
        let t = thread::spawn(move || cell.resolve(7).unwrap());
        let (flag, w) = waker();
        let first = poll(&mut wait, &w);
        t.join().unwrap();
        match first {
            Poll::Ready(v) => assert_eq!(v, Ok(7)),
            Poll::Pending => {
                assert_eq!(flag.0.load(SeqCst), 1, "lost wake-up");
                assert_eq!(poll(&mut wait, &w), Poll::Ready(Ok(7)));
            }
        }
        assert!(!cell.is_signaled());
    });
}

/// Two settlers (an interrupt pre-empting another) while the task takes:
/// every value is taken, replaced or refused (`Busy`) — dropped exactly
/// once — and the latest survives until taken.
#[test]
fn signal_two_settlers_vs_take() {
    loom::model(|| {
        let cell = leak_signal::<Tracked, ()>();
        let drops = Arc::new(AtomicUsize::new(0));
        let settler = |d: Arc<AtomicUsize>| {
            thread::spawn(move || {
                if let Err(refused) = cell.resolve(Tracked(d)) {
                    assert_eq!(refused.reason(), Refusal::Busy);
                }
            })
        };
        let a = settler(drops.clone());
        let b = settler(drops.clone());
        let taken = cell.try_take();
        a.join().unwrap();
        b.join().unwrap();
        drop(taken);
        cell.reset();
        assert_eq!(drops.load(SeqCst), 2, "each value dropped exactly once");
        assert!(!cell.is_signaled());
    });
}

/// A settlement racing a timed-out (dropped) waiter: the value stays for the
/// next wait, the waiter's waker is not kept, the claim is free.
#[test]
fn signal_settle_vs_waiter_drop() {
    loom::model(|| {
        let cell = leak_signal::<Tracked, ()>();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut wait = cell.wait().unwrap();
        let (_flag, w) = waker();
        assert!(poll(&mut wait, &w).is_pending());
        let d = drops.clone();
        let t = thread::spawn(move || cell.resolve(Tracked(d)).map_err(drop).unwrap());
        drop(wait);
        t.join().unwrap();
        let mut next = cell.wait().unwrap();
        let (_flag, w) = waker();
        let got = poll(&mut next, &w);
        assert!(matches!(got, Poll::Ready(Ok(_))), "kept for the next wait");
        drop(got);
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// Review of 4a85b46b: two clones complete at once on two threads; each
/// that clones the output then lets go of its `Arc`. `SharedPromise` uses
/// `alloc`'s `Arc` even under loom (loom's has no `Weak`), so loom does not
/// see the reference counts and its partial-order reduction never reorders
/// one clone's failed `try_unwrap` against the other's `Arc` drop (a free
/// model reached only "one moves, one clones"). So the output's `Clone`
/// waits (loom atomics) for the other clone to enter its own `Clone` too:
/// both `try_unwrap`s failed, and each run ends with one of the two polls
/// dropping the last `Arc`, hence the stored output, while the other
/// thread may still be cloning, dropping its clone or its `Arc`. Every
/// value is dropped exactly once, the state is freed, both handles hold
/// nothing.
#[test]
fn shared_two_clones_complete_and_let_go_at_once() {
    use deferral::SharedPromise;
    use loom::sync::atomic::AtomicUsize as LAtomic;

    struct Counts {
        clones: LAtomic,
        drops: LAtomic,
        in_clone: LAtomic,
    }
    struct Out(Arc<Counts>, usize);
    impl Clone for Out {
        fn clone(&self) -> Self {
            self.0.in_clone.fetch_add(1, SeqCst);
            while self.0.in_clone.load(SeqCst) < 2 {
                thread::yield_now();
            }
            let id = self.0.clones.fetch_add(1, SeqCst) + 1;
            Out(self.0.clone(), id)
        }
    }
    impl Drop for Out {
        fn drop(&mut self) {
            self.0.drops.fetch_add(1, SeqCst);
        }
    }

    fn until_ready<F: Future + Unpin>(f: &mut F) -> F::Output {
        let (flag, w) = waker();
        loop {
            let seen = flag.0.load(SeqCst);
            if let Poll::Ready(v) = poll(f, &w) {
                return v;
            }
            // Pending: the other clone drives; it wakes us when it completes.
            while flag.0.load(SeqCst) == seen {
                thread::yield_now();
            }
        }
    }

    loom::model(|| {
        let counts = Arc::new(Counts {
            clones: LAtomic::new(0),
            drops: LAtomic::new(0),
            in_clone: LAtomic::new(0),
        });
        let a = SharedPromise::new(DeferredPromise::<Out, ()>::resolved(Out(counts.clone(), 0)));
        let b = a.clone();
        let weak = a.downgrade();
        let t = thread::spawn(move || {
            let mut b = b;
            let v = until_ready(&mut b).map(|o| o.1).unwrap();
            assert!(
                b.peek().is_none(),
                "b returned the output: it holds nothing"
            );
            v
        });
        let mut a = a;
        let va = until_ready(&mut a).map(|o| o.1).unwrap();
        assert!(
            a.peek().is_none(),
            "a returned the output: it holds nothing"
        );
        let vb = t.join().unwrap();
        assert!(va != 0 && vb != 0 && va != vb, "both cloned: {va} {vb}");
        assert!(weak.upgrade().is_none(), "the state is freed");
        drop(a);
        let (clones, drops) = (counts.clones.load(SeqCst), counts.drops.load(SeqCst));
        assert_eq!((clones, drops), (2, 3), "every value dropped once");
    });
}
