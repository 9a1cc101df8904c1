//! `SharedCell`: a `static`, allocation-free promise awaited by up to `N`
//! tasks, settled from a thread or a simulated interrupt; full slots; by
//! clone and by reference; hostile wakers (every `Behaviour`) with
//! exactly-once drops of every value and clone.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use deferral::SharedCell;
use deferral::promise::{Refusal, WaitersFull};
use support::{Behaviour, WakeCounter, block_on};
#[cfg(feature = "std")]
use support::{Call, Hostile};

/// A cloneable value counting how many instances exist: every clone is a
/// new instance, every drop removes one.
#[derive(Debug)]
struct Counted {
    live: Arc<AtomicUsize>,
    made: Arc<AtomicUsize>,
    value: u32,
}

impl Counted {
    fn new(live: &Arc<AtomicUsize>, made: &Arc<AtomicUsize>, value: u32) -> Self {
        live.fetch_add(1, SeqCst);
        made.fetch_add(1, SeqCst);
        Counted {
            live: live.clone(),
            made: made.clone(),
            value,
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(&self.live, &self.made, self.value)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

#[test]
fn every_waiter_on_its_own_thread_gets_the_value() {
    static CELL: SharedCell<String, (), 8> = SharedCell::new();
    let threads = if cfg!(miri) { 3 } else { 8 };
    let waiters: Vec<_> = (0..threads).map(|_| CELL.wait().unwrap()).collect();
    let handles: Vec<_> = waiters
        .into_iter()
        .map(|w| std::thread::spawn(move || block_on(w)))
        .collect();
    // The "interrupt": another thread settles the cell.
    std::thread::spawn(|| CELL.resolve("up".to_string()).unwrap())
        .join()
        .unwrap();
    for h in handles {
        assert_eq!(h.join().unwrap(), Ok("up".to_string()));
    }
    assert_eq!(CELL.waiters(), 0);
}

#[test]
fn waiters_racing_the_settlement_on_threads() {
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for _ in 0..rounds {
        let cell = &SharedCell::<u32, (), 4>::new();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|_| s.spawn(move || block_on(cell.wait().unwrap())))
                .collect();
            let settler = s.spawn(move || cell.resolve(5).unwrap());
            for h in handles {
                assert_eq!(h.join().unwrap(), Ok(5));
            }
            settler.join().unwrap();
        });
        assert_eq!(cell.waiters(), 0);
    }
}

/// The interrupt fires inside a waiter's registration (`Waker::clone`) and
/// settles the cell from there: nothing spins, the re-check sees the value.
#[test]
fn settled_by_an_interrupt_preempting_registration() {
    static CELL: SharedCell<u32, (), 2> = SharedCell::new();
    static ARMED: AtomicUsize = AtomicUsize::new(0);
    unsafe fn clone(_: *const ()) -> RawWaker {
        if ARMED.swap(0, SeqCst) == 1 {
            CELL.resolve(42).unwrap();
        }
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    unsafe fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);

    let mut other = CELL.wait().unwrap();
    let mut w = CELL.wait().unwrap();
    let good = WakeCounter::new();
    assert!(support::poll_once(Pin::new(&mut other), &good).is_pending());
    ARMED.store(1, SeqCst);
    // SAFETY: the vtable functions ignore the (null) data pointer.
    let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
    assert_eq!(
        Pin::new(&mut w).poll(&mut Context::from_waker(&waker)),
        Poll::Ready(Ok(42))
    );
    assert_eq!(good.wakes(), 1, "the other waiter was woken");
    assert_eq!(
        support::poll_once(Pin::new(&mut other), &good),
        Poll::Ready(Ok(42))
    );
}

#[test]
fn full_slots_are_refused_until_a_waiter_leaves_or_the_cell_settles() {
    let cell = &SharedCell::<u8, (), 2>::new();
    let a = cell.wait().unwrap();
    let b = cell.wait_ref().unwrap();
    assert_eq!(cell.wait().err(), Some(WaitersFull));
    assert_eq!(cell.wait_ref().err(), Some(WaitersFull));
    assert_eq!(
        WaitersFull.to_string(),
        "every waiter slot of the shared cell is taken"
    );
    drop(a);
    let c = cell.wait().unwrap();
    assert_eq!(cell.wait().err(), Some(WaitersFull));
    cell.resolve(3).unwrap();
    // Settled: no slot needed any more.
    let late: Vec<_> = (0..5).map(|_| cell.wait().unwrap()).collect();
    assert_eq!(block_on(b), Ok(&3));
    assert_eq!(block_on(c), Ok(3));
    for w in late {
        assert_eq!(block_on(w), Ok(3));
    }
    assert_eq!(cell.waiters(), 0);
}

#[test]
fn first_settlement_wins_and_refusals_hand_the_value_back() {
    let cell = &SharedCell::<String, String, 1>::new();
    cell.reject("e1".into()).unwrap();
    let refused = cell.resolve("v".into()).unwrap_err();
    assert_eq!(
        (refused.reason(), refused.into_value()),
        (Refusal::AlreadySettled, Ok("v".to_string()))
    );
    assert_eq!(cell.get(), Some(Err(&"e1".to_string())));
    assert_eq!(block_on(cell.wait().unwrap()), Err("e1".to_string()));
}

#[test]
fn values_and_clones_are_dropped_exactly_once() {
    let live = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    {
        let mut cell = SharedCell::<Counted, (), 4>::new();
        let waiters: Vec<_> = (0..3).map(|_| cell.wait().unwrap()).collect();
        let by_ref = cell.wait_ref().unwrap();
        cell.resolve(Counted::new(&live, &made, 7)).unwrap();
        let refused = cell.resolve(Counted::new(&live, &made, 8)).unwrap_err();
        drop(refused);
        for w in waiters {
            assert_eq!(block_on(w).unwrap().value, 7);
        }
        assert_eq!(block_on(by_ref).unwrap().value, 7);
        assert_eq!(live.load(SeqCst), 1, "only the cell's value is left");
        let taken = cell.reset().unwrap().unwrap();
        assert_eq!(live.load(SeqCst), 1);
        drop(taken);
        assert_eq!(live.load(SeqCst), 0);
        cell.resolve(Counted::new(&live, &made, 9)).unwrap();
        // Dropping the cell drops its value.
    }
    assert_eq!(live.load(SeqCst), 0, "{} made", made.load(SeqCst));
}

/// With `std` only: without it the crate catches no panic (firmware
/// aborts on panic), and the first panicking `wake` unwinds out of
/// `resolve`.
#[test]
#[cfg(feature = "std")]
fn a_panicking_wake_does_not_stop_the_other_wakes() {
    let cell = &SharedCell::<u8, (), 3>::new();
    let hostile = Hostile::new().panic_on(Call::Wake, 1);
    let good = WakeCounter::new();
    let mut a = cell.wait().unwrap();
    let mut b = cell.wait().unwrap();
    let mut c = cell.wait().unwrap();
    assert!(support::poll_once(Pin::new(&mut a), &good).is_pending());
    let hw = hostile.waker();
    assert!(
        Pin::new(&mut b)
            .poll(&mut Context::from_waker(&hw))
            .is_pending()
    );
    drop(hw);
    assert!(support::poll_once(Pin::new(&mut c), &good).is_pending());
    let settled = catch_unwind(AssertUnwindSafe(|| cell.resolve(1)));
    assert!(settled.is_err(), "the waker's panic resumes from `resolve`");
    assert!(cell.is_settled(), "the settlement stands");
    assert_eq!(good.wakes(), 2, "both other waiters were woken");
    for w in [&mut a, &mut b, &mut c] {
        assert_eq!(support::poll_once(Pin::new(w), &good), Poll::Ready(Ok(1)));
    }
    assert_eq!(hostile.live(), 0);
}

/// Every hostile behaviour, as the waker of one of two waiters, settled
/// before or after the first poll, and with the hostile waiter dropped
/// instead of finishing: every waiter that stays gets the value, every
/// value and clone is dropped exactly once, no waker is kept, every slot is
/// given back.
#[test]
fn against_every_hostile_waker() {
    for behaviour in Behaviour::all() {
        for settle_before_poll in [false, true] {
            for drop_hostile_waiter in [false, true] {
                let live = Arc::new(AtomicUsize::new(0));
                let made = Arc::new(AtomicUsize::new(0));
                let case =
                    format!("{behaviour:?} before={settle_before_poll} drop={drop_hostile_waiter}");
                {
                    let cell = Arc::new(SharedCell::<Counted, (), 2>::new());
                    let hostile = behaviour.hostile();
                    let victim = Arc::new(std::sync::Mutex::new(None));
                    if behaviour == Behaviour::RunsHookOnWake {
                        // The wake tries to settle again (refused) and drops
                        // the hostile waiter.
                        let c = cell.clone();
                        let v = victim.clone();
                        let (l, m) = (live.clone(), made.clone());
                        hostile.on_wake(move || {
                            drop(c.resolve(Counted::new(&l, &m, 0)));
                            drop(v.lock().unwrap().take());
                        });
                    }
                    // The waiters borrow the cell, which outlives them
                    // (dropped at the end of this block).
                    let cell_ref: &'static SharedCell<Counted, (), 2> =
                        // SAFETY: not leaked; every waiter is dropped or
                        // finished before `cell` is (asserted below).
                        unsafe { &*Arc::as_ptr(&cell) };
                    let mut good_waiter = cell_ref.wait().unwrap();
                    let hostile_waiter = cell_ref.wait().unwrap();
                    *victim.lock().unwrap() = Some(Box::pin(hostile_waiter));
                    let good = WakeCounter::new();
                    let settle = || {
                        let _ = catch_unwind(AssertUnwindSafe(|| {
                            cell_ref
                                .resolve(Counted::new(&live, &made, 7))
                                .map_err(drop)
                                .unwrap()
                        }));
                    };
                    if settle_before_poll {
                        settle();
                    }
                    let mut good_out = match support::poll_once(Pin::new(&mut good_waiter), &good) {
                        Poll::Ready(out) => Some(out),
                        Poll::Pending => None,
                    };
                    {
                        let hw = hostile.waker();
                        let mut guard = victim.lock().unwrap();
                        if let Some(w) = guard.as_mut() {
                            let polled = catch_unwind(AssertUnwindSafe(|| {
                                w.as_mut().poll(&mut Context::from_waker(&hw))
                            }));
                            if let Ok(Poll::Ready(out)) = polled {
                                assert_eq!(out.unwrap().value, 7, "{case}");
                                *guard = None;
                            }
                        }
                        drop(guard);
                        let _ = catch_unwind(AssertUnwindSafe(move || drop(hw)));
                    }
                    if drop_hostile_waiter {
                        let w = victim.lock().unwrap().take();
                        let _ = catch_unwind(AssertUnwindSafe(move || drop(w)));
                    }
                    if !settle_before_poll {
                        settle();
                    }
                    // Whoever is still waiting completes with good wakers.
                    for _ in 0..3 {
                        let mut guard = victim.lock().unwrap();
                        let Some(w) = guard.as_mut() else { break };
                        let polled = catch_unwind(AssertUnwindSafe(|| {
                            w.as_mut().poll(&mut Context::from_waker(&good.waker()))
                        }));
                        if let Ok(Poll::Ready(out)) = polled {
                            assert_eq!(out.unwrap().value, 7, "{case}");
                            *guard = None;
                        }
                    }
                    assert!(victim.lock().unwrap().is_none(), "{case}: still pending");
                    if good_out.is_none() {
                        assert!(good.wakes() >= 1, "{case}: the good waiter was woken");
                        if let Poll::Ready(out) =
                            support::poll_once(Pin::new(&mut good_waiter), &good)
                        {
                            good_out = Some(out);
                        }
                    }
                    match good_out {
                        Some(Ok(v)) => assert_eq!(v.value, 7, "{case}"),
                        other => panic!("{case}: {other:?}"),
                    }
                    drop(good_waiter);
                    assert_eq!(cell.waiters(), 0, "{case}: every slot given back");
                    hostile.on_wake(|| ());
                    assert_eq!(hostile.live(), 0, "{case}: no waker kept");
                    assert_eq!(live.load(SeqCst), 1, "{case}: only the cell's value");
                }
                assert_eq!(live.load(SeqCst), 0, "{behaviour:?}: dropped once");
            }
        }
    }
}

#[test]
fn polling_after_completion_panics_and_fused_reports_it() {
    use futures::future::FusedFuture;
    let cell = &SharedCell::<u8, (), 1>::new();
    let mut w = cell.wait().unwrap();
    cell.resolve(1).unwrap();
    assert!(!w.is_terminated());
    assert_eq!(block_on(&mut w), Ok(1));
    assert!(w.is_terminated());
    let again = catch_unwind(AssertUnwindSafe(|| {
        support::poll_once(Pin::new(&mut w), &WakeCounter::new())
    }));
    assert!(again.is_err());
}

#[test]
fn is_send_and_sync_and_unpin() {
    fn send_sync<T: Send + Sync>() {}
    fn unpin<T: Unpin>() {}
    send_sync::<SharedCell<String, (), 4>>();
    send_sync::<deferral::promise::SharedWait<'static, String, (), 4>>();
    unpin::<deferral::promise::SharedWait<'static, String, (), 4>>();
    unpin::<deferral::promise::SharedWaitRef<'static, String, (), 4>>();
}

/// Issue 21 finding 8: a panicking `clone` of the settlement must leave the
/// waiter able to hand the value out on its next poll (the value is latched
/// in the cell). On c9d10e1 the waiter was marked done before the clone, so
/// the next poll panicked "polled after completion".
#[test]
fn finding_8_a_panicking_clone_leaves_the_waiter_able_to_finish() {
    use futures::future::FusedFuture;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    static FAIL: AtomicBool = AtomicBool::new(true);
    #[derive(Debug, PartialEq)]
    struct Flaky(u8);
    impl Clone for Flaky {
        fn clone(&self) -> Self {
            if FAIL.swap(false, SeqCst) {
                panic!("clone fails once");
            }
            Flaky(self.0)
        }
    }
    static CELL: SharedCell<Flaky, (), 1> = SharedCell::new();
    let mut w = Box::pin(CELL.wait().unwrap());
    CELL.resolve(Flaky(7)).map_err(drop).unwrap();
    let counter = WakeCounter::new();
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        support::poll_once(w.as_mut(), &counter)
    }));
    assert!(first.is_err(), "the clone panicked");
    assert!(!w.is_terminated());
    assert_eq!(
        support::poll_once(w.as_mut(), &counter),
        Poll::Ready(Ok(Flaky(7)))
    );
    assert!(w.is_terminated());
}

/// Issue 21 finding 9: `reset` after a waiter was passed to `mem::forget`
/// (its slot still claimed, its waker still registered) must not fire a
/// debug assertion from safe code; it empties the cell, drops the leftover
/// waker, and the cell works again. On c9d10e1: "no waiter can be alive".
#[test]
fn finding_9_reset_after_a_forgotten_waiter() {
    let mut cell = SharedCell::<u8, (), 2>::new();
    let counter = WakeCounter::new();
    let mut w = cell.wait().unwrap();
    assert!(support::poll_once(Pin::new(&mut w), &counter).is_pending());
    std::mem::forget(w);
    cell.resolve(1).unwrap();
    assert_eq!(cell.reset(), Some(Ok(1)));
    assert_eq!(
        counter.live(),
        0,
        "the forgotten waiter's waker was dropped"
    );
    assert_eq!(cell.waiters(), 0);
    let (a, b) = (cell.wait().unwrap(), cell.wait().unwrap());
    cell.resolve(2).unwrap();
    assert_eq!(block_on(a), Ok(2));
    assert_eq!(block_on(b), Ok(2));
}
