//! `SignalCell` (issue 25 item 4): an interrupt settles a `static` cell with
//! no resolver; a settlement made before anyone waits is kept, a newer one
//! replaces an older one nobody took (latest wins, as embassy-sync's
//! `Signal`), and the waiter's output is the plain `Result<T, E>`. Settled
//! from a simulated interrupt (a thread, a waker callback firing inside
//! registration), the hostile-waker matrix, and every value dropped exactly
//! once. (Replaces `cell_signal.rs`, which tested `PromiseCell::wait`, the
//! signal half that this type took over with the semantics firmware needs:
//! on c9d10e1 `CELL.resolve(v)` before `CELL.wait()` handed the value back.)

mod support;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use deferral::promise::{CellBusy, Refusal, SignalCell};
use support::{Behaviour, DropCounter, Hostile, WakeCounter, block_on};

type Tracked = support::drops::Tracked;

/// The firmware pattern: a task waits for the ADC, the conversion-complete
/// interrupt (here a thread) settles the `static` cell. Some rounds the
/// interrupt fires before the task waits (kept), some after (woken), and a
/// timed-out wait (dropped) leaves the cell's claim free at once.
#[test]
fn firmware_adc_settled_from_an_interrupt_before_or_after_the_wait() {
    static ADC: SignalCell<u16, &'static str> = SignalCell::new();
    let rounds: u16 = if cfg!(miri) { 5 } else { 200 };
    for round in 0..rounds {
        if round % 2 == 0 {
            ADC.resolve(round).unwrap(); // before anyone waits: kept
            assert_eq!(block_on(ADC.wait().unwrap()), Ok(round));
        } else {
            let sample = ADC.wait().unwrap();
            let isr = std::thread::spawn(move || ADC.resolve(round).unwrap());
            assert_eq!(block_on(sample), Ok(round));
            isr.join().unwrap();
        }
        // A timed-out wait: the next one is possible at once.
        drop(ADC.wait().unwrap());
        assert!(!ADC.is_signaled());
    }
}

#[test]
fn the_latest_settlement_wins_and_replaced_values_are_dropped_once() {
    static CELL: SignalCell<Tracked, Tracked> = SignalCell::new();
    let drops = DropCounter::new();
    CELL.resolve(drops.tracked()).map_err(drop).unwrap();
    CELL.reject(drops.tracked()).map_err(drop).unwrap();
    assert_eq!(drops.get(), 1, "the replaced settlement was dropped");
    CELL.resolve(drops.tracked()).map_err(drop).unwrap();
    assert_eq!(drops.get(), 2);
    let out = block_on(CELL.wait().unwrap());
    assert!(out.is_ok(), "the latest (a resolve) wins");
    drop(out);
    assert_eq!(drops.get(), 3);
    assert!(!CELL.is_signaled());
    CELL.resolve(drops.tracked()).map_err(drop).unwrap();
    CELL.reset();
    assert_eq!(drops.get(), 4, "reset drops the stale settlement");
    assert_eq!(CELL.try_take().map(drop), None);
}

#[test]
fn one_waiter_at_a_time_and_no_abandoned_arm() {
    static CELL: SignalCell<u8, ()> = SignalCell::new();
    let first = CELL.wait().unwrap();
    assert_eq!(CELL.wait().err(), Some(CellBusy));
    drop(first);
    let second = CELL.wait().unwrap();
    CELL.reject(()).unwrap();
    // The output is `Result<u8, ()>`: nothing but the settlement.
    let out: Result<u8, ()> = block_on(second);
    assert_eq!(out, Err(()));
    // A finished waiter gave its claim back.
    assert!(CELL.wait().is_ok());
}

/// The "interrupt" fires in the middle of the waiter's waker registration
/// (inside `Waker::clone`) and settles the cell from there: nothing spins,
/// and the poll's re-check sees the value.
#[test]
fn settled_by_an_interrupt_preempting_registration() {
    static CELL: SignalCell<u32, ()> = SignalCell::new();
    static ARMED: AtomicUsize = AtomicUsize::new(0);
    static WAKES: AtomicUsize = AtomicUsize::new(0);

    unsafe fn clone(_: *const ()) -> RawWaker {
        if ARMED.swap(0, SeqCst) == 1 {
            CELL.resolve(42).unwrap(); // the interrupt pre-empts `register` here
        }
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    unsafe fn wake(_: *const ()) {
        WAKES.fetch_add(1, SeqCst);
    }
    unsafe fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, noop);

    let waiting = CELL.wait().unwrap();
    ARMED.store(1, SeqCst);
    // SAFETY: the vtable functions ignore the (null) data pointer.
    let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
    let mut waiting = pin!(waiting);
    let poll = waiting.as_mut().poll(&mut Context::from_waker(&waker));
    assert_eq!(poll, Poll::Ready(Ok(42)));
    assert!(WAKES.load(SeqCst) <= 1, "at most one (spurious) wake-up");
    assert!(!CELL.is_signaled());
}

/// The interrupt settles again from inside the wake of the first
/// settlement (a waker callback): latest wins, the first value is dropped
/// once, the waiter gets the second.
#[test]
fn settled_again_from_a_waker_callback() {
    static CELL: SignalCell<Tracked, ()> = SignalCell::new();
    let drops = DropCounter::new();
    let hostile = Hostile::new();
    let mut waiting = Box::pin(CELL.wait().unwrap());
    let w = hostile.waker();
    assert!(
        waiting
            .as_mut()
            .poll(&mut Context::from_waker(&w))
            .is_pending()
    );
    let d = drops.clone();
    hostile.on_wake(move || CELL.resolve(d.tracked()).map_err(drop).unwrap());
    CELL.resolve(drops.tracked()).map_err(drop).unwrap();
    assert!(hostile.hook_ran());
    assert_eq!(drops.get(), 1, "the first settlement was replaced");
    let out = support::poll_once(waiting.as_mut(), &WakeCounter::new());
    assert!(matches!(out, Poll::Ready(Ok(_))));
    drop(out);
    assert_eq!(drops.get(), 2);
    drop(waiting);
    drop(w);
    assert_eq!(hostile.live(), 0);
}

/// A wake that drops the waiter in the middle of the settlement (its hook
/// runs inside `resolve`): the value stays in the cell for the next wait.
#[test]
fn a_wake_that_drops_the_waiter_mid_settlement() {
    static CELL: SignalCell<Tracked, ()> = SignalCell::new();
    let drops = DropCounter::new();
    let hostile = Hostile::new();
    type Victim = Arc<Mutex<Option<Pin<Box<dyn Future<Output = Result<Tracked, ()>> + Send>>>>>;
    let victim: Victim = Arc::new(Mutex::new(Some(Box::pin(CELL.wait().unwrap()))));
    {
        let mut guard = victim.lock().unwrap();
        let waker = hostile.waker();
        assert!(
            guard
                .as_mut()
                .unwrap()
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    let v = victim.clone();
    hostile.on_wake(move || drop(v.lock().unwrap().take()));
    CELL.resolve(drops.tracked()).map_err(drop).unwrap();
    assert!(hostile.hook_ran());
    assert_eq!(drops.get(), 0, "kept for the next wait");
    assert_eq!(hostile.live(), 0);
    drop(block_on(CELL.wait().unwrap()));
    assert_eq!(drops.get(), 1);
}

/// Polls once with `waker`, catching a panic (`None`).
fn poll_caught<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Option<Poll<F::Output>> {
    catch_unwind(AssertUnwindSafe(|| {
        fut.poll(&mut Context::from_waker(waker))
    }))
    .ok()
}

/// Every hostile waker behaviour (panicking clone, wake, wake_by_ref, drop
/// on the 1st or 2nd call; a wake that settles again) against `wait` and
/// the cell's own `resolve`, settled before or after the first poll, and a
/// waiter dropped after a hostile registration: every value dropped exactly
/// once, every waiter completes, no waker kept, the claim free.
#[test]
fn signal_against_every_hostile_waker() {
    static HOSTILE_CELL: SignalCell<Tracked, ()> = SignalCell::new();
    for behaviour in Behaviour::all() {
        for settle_before_poll in [false, true] {
            let cell = &HOSTILE_CELL;
            let drops = DropCounter::new();
            let hostile = behaviour.hostile();
            if behaviour == Behaviour::RunsHookOnWake {
                // The wake "interrupt" settles again: the newer one is kept.
                let d = drops.clone();
                hostile.on_wake(move || drop(cell.resolve(d.tracked())));
            }
            let mut waiting = Box::pin(cell.wait().unwrap());
            let settle = || {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    cell.resolve(drops.tracked()).map_err(drop).unwrap()
                }));
            };
            if settle_before_poll {
                settle();
            }
            let mut out = None;
            let good = WakeCounter::new();
            for attempt in 0..4 {
                let waker = if attempt == 0 {
                    hostile.waker()
                } else {
                    good.waker()
                };
                let polled = poll_caught(waiting.as_mut(), &waker);
                let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
                if let Some(Poll::Ready(v)) = polled {
                    out = Some(v);
                    break;
                }
                if attempt == 0 && !settle_before_poll {
                    settle();
                }
            }
            let out = out.unwrap_or_else(|| panic!("{behaviour:?}: still pending"));
            assert!(out.is_ok(), "{behaviour:?}");
            drop(out);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(waiting)));
            let created = if behaviour == Behaviour::RunsHookOnWake && !settle_before_poll {
                2
            } else {
                1
            };
            assert_eq!(
                drops.get(),
                created,
                "{behaviour:?} before={settle_before_poll}: each value dropped once"
            );
            assert!(!cell.is_signaled(), "{behaviour:?}");
            assert_eq!(hostile.live(), 0, "{behaviour:?}: no waker kept");
            assert!(cell.wait().is_ok(), "{behaviour:?}: the claim is free");
        }
        // Dropped after a hostile registration, with and without a value.
        for settle_first in [false, true] {
            let cell = &HOSTILE_CELL;
            let drops = DropCounter::new();
            let hostile = behaviour.hostile();
            let mut waiting = Box::pin(cell.wait().unwrap());
            let waker = hostile.waker();
            let _ = poll_caught(waiting.as_mut(), &waker);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
            if settle_first {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    cell.resolve(drops.tracked()).map_err(drop).unwrap()
                }));
            }
            let _ = catch_unwind(AssertUnwindSafe(move || drop(waiting)));
            assert_eq!(
                hostile.live(),
                0,
                "{behaviour:?} settle_first={settle_first}"
            );
            assert!(cell.wait().is_ok(), "reusable");
            cell.reset();
            assert_eq!(
                drops.get(),
                usize::from(settle_first),
                "{behaviour:?} settle_first={settle_first}"
            );
        }
    }
}

/// Settlements from two threads while the waiter takes values: every value
/// is either taken, replaced (dropped by the settler) or refused (handed
/// back, `Busy`), exactly once.
#[test]
fn racing_settlements_and_takes_account_for_every_value_once() {
    static CELL: SignalCell<Tracked, ()> = SignalCell::new();
    let rounds = if cfg!(miri) { 20 } else { 2_000 };
    let drops = DropCounter::new();
    let made = Arc::new(AtomicUsize::new(0));
    let settler = |drops: DropCounter, made: Arc<AtomicUsize>| {
        std::thread::spawn(move || {
            for _ in 0..rounds {
                made.fetch_add(1, SeqCst);
                if let Err(refused) = CELL.resolve(drops.tracked()) {
                    assert_eq!(refused.reason(), Refusal::Busy);
                }
            }
        })
    };
    let a = settler(drops.clone(), made.clone());
    let b = settler(drops.clone(), made.clone());
    while !(a.is_finished() && b.is_finished()) {
        drop(CELL.try_take());
    }
    a.join().unwrap();
    b.join().unwrap();
    CELL.reset();
    assert_eq!(made.load(SeqCst), 2 * rounds);
    assert_eq!(drops.get(), made.load(SeqCst), "every value dropped once");
}
