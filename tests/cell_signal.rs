//! Signal-style settlement of a `static PromiseCell` (`CELL.wait()`,
//! `CELL.resolve(v)`): no resolver parked anywhere, settled from a simulated
//! interrupt (a thread, a waker callback firing inside registration), a
//! timed-out wait followed at once by the next wait or pair, the
//! stale-generation guarantee kept for tickets and for pair resolvers, and
//! the hostile-waker matrix with exactly-once drops.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use deferral::promise::Ticket;
use deferral::{PromiseCell, PromiseError, Refusal};
use support::{Behaviour, DropCounter, Hostile, WakeCounter, block_on};

type Tracked = support::drops::Tracked;

/// The firmware pattern: a task waits for the ADC, the conversion-complete
/// interrupt (here a thread) settles the `static` cell directly. Repeated,
/// with a timed-out wait (the promise dropped) between rounds: the very
/// next `wait` or `promise` succeeds.
#[test]
fn firmware_adc_settled_from_an_interrupt_without_a_parked_resolver() {
    static ADC: PromiseCell<u16, &'static str> = PromiseCell::new();
    let rounds = if cfg!(miri) { 5 } else { 200 };
    for round in 0..rounds {
        let sample = ADC.wait().unwrap();
        let isr = std::thread::spawn(move || {
            // The interrupt handler: no resolver, just the cell.
            // The task is already waiting here, so a refusal is a bug.
            if let Err(refused) = ADC.resolve(round as u16) {
                panic!("refused: {:?}", refused.reason());
            }
        });
        assert_eq!(block_on(sample), Ok(round as u16));
        isr.join().unwrap();
        assert!(ADC.is_free());

        // A wait that times out: the promise is dropped unsettled.
        let timed_out = ADC.wait().unwrap();
        drop(timed_out);
        assert!(ADC.is_free(), "a dropped waiter frees the cell at once");
        // The late interrupt finds nobody and keeps its value.
        let refused = ADC.resolve(99).unwrap_err();
        assert_eq!(refused.reason(), Refusal::NoWaiter);
        // The next pair is available at once, too.
        let (p, r) = ADC.promise().unwrap();
        drop(p);
        drop(r);
    }
}

/// The "interrupt" fires in the middle of the waiter's waker registration
/// (inside `Waker::clone`) and settles the cell from there: nothing spins,
/// and the poll's re-check sees the value.
#[test]
fn settled_by_an_interrupt_preempting_registration() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
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
    assert!(CELL.is_free());
}

/// The interrupt settles from inside the wake of a *previous* registration
/// (a waker callback), i.e. while the executor is delivering a wake-up.
#[test]
fn settled_from_a_waker_callback() {
    static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    let drops = DropCounter::new();
    let hostile = Hostile::new();
    let waiting = CELL.wait().unwrap();
    let mut waiting = Box::pin(waiting);
    let w = hostile.waker();
    assert!(
        waiting
            .as_mut()
            .poll(&mut Context::from_waker(&w))
            .is_pending()
    );
    // A first settlement wakes `w`; its wake "interrupt" tries to settle
    // again and is refused with the value back.
    let d = drops.clone();
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let r = refusals.clone();
    hostile.on_wake(move || {
        let refused = CELL.resolve(d.tracked()).unwrap_err();
        r.lock().unwrap().push(refused.reason());
    });
    CELL.resolve(drops.tracked()).map_err(drop).unwrap();
    assert_eq!(*refusals.lock().unwrap(), [Refusal::AlreadySettled]);
    assert_eq!(
        drops.get(),
        1,
        "the refused value was handed back and dropped"
    );
    let out = support::poll_once(waiting.as_mut(), &WakeCounter::new());
    assert!(matches!(out, Poll::Ready(Ok(_))));
    drop(out);
    assert_eq!(drops.get(), 2);
    drop(waiting);
    drop(w);
    assert!(CELL.is_free());
    assert_eq!(hostile.live(), 0);
}

#[test]
fn nobody_waiting_hands_the_value_back() {
    static CELL: PromiseCell<String, String> = PromiseCell::new();
    let refused = CELL.resolve("a".into()).unwrap_err();
    assert_eq!(
        (refused.reason(), refused.into_value()),
        (Refusal::NoWaiter, "a".to_string())
    );
    let refused = CELL.reject("e".into()).unwrap_err();
    assert_eq!(
        (refused.reason(), refused.into_value()),
        (Refusal::NoWaiter, "e".to_string())
    );
    assert!(CELL.is_free());
}

/// A pair's promise belongs to its resolver: the cell's own `resolve`
/// cannot settle it (and so cannot free a generation under a live
/// resolver), and the pair's resolver still works.
#[test]
fn a_pair_is_never_settled_by_the_cell() {
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (promise, resolver) = CELL.promise().unwrap();
    assert_eq!(CELL.resolve(1).unwrap_err().reason(), Refusal::NoWaiter);
    assert_eq!(CELL.wait().err(), Some(deferral::CellBusy));
    resolver.resolve(2).unwrap();
    assert_eq!(block_on(promise), Ok(2));
    // A lazy `defer` promise too, before and after it started.
    let lazy = CELL.lazy(|r| r.resolve(3)).unwrap();
    assert_eq!(CELL.resolve(4).unwrap_err().reason(), Refusal::NoWaiter);
    assert_eq!(block_on(lazy), Ok(3));
    assert!(CELL.is_free());
}

/// Stale generations: a ticket of a waiter that timed out is refused by the
/// next waiter; a finished pair resolver is still refused after signal-style
/// generations went by.
#[test]
fn tickets_and_old_resolvers_are_refused_by_newer_generations() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let (p, old) = CELL.promise().unwrap();
    old.resolve(1).unwrap();
    assert_eq!(block_on(p), Ok(1));

    let first = CELL.wait().unwrap();
    let ticket = first.ticket().unwrap();
    drop(first);
    let second = CELL.wait().unwrap();
    assert_ne!(second.ticket(), Some(ticket));
    let refused = CELL.settle_ticket(ticket, Ok(2)).unwrap_err();
    assert_eq!(refused.reason(), Refusal::Stale);
    assert_eq!(old.resolve(3).unwrap_err().reason(), Refusal::Stale);
    drop(old);
    // Round trip through an atomic, as an interrupt handler would.
    static SLOT: AtomicU32 = AtomicU32::new(0);
    SLOT.store(second.ticket().unwrap().to_bits(), SeqCst);
    CELL.settle_ticket(Ticket::from_bits(SLOT.load(SeqCst)), Ok(4))
        .unwrap();
    assert_eq!(block_on(second), Ok(4));
    assert!(CELL.is_free());
}

#[test]
fn a_wait_promise_is_never_abandoned_and_reports_its_state() {
    use deferral::{Progress, PromiseState};
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let mut waiting = Box::pin(CELL.wait().unwrap());
    assert_eq!(waiting.state(), PromiseState::Pending(Progress::Unstarted));
    assert!(support::poll_once(waiting.as_mut(), &WakeCounter::new()).is_pending());
    assert_eq!(waiting.state(), PromiseState::Pending(Progress::Started));
    CELL.reject(()).unwrap();
    assert_eq!(waiting.state(), PromiseState::Rejected);
    assert_eq!(
        support::poll_once(waiting.as_mut(), &WakeCounter::new()),
        Poll::Ready(Err(PromiseError::Rejected(())))
    );
    assert!(CELL.is_free());
}

/// Settles on one thread while the waiter is dropped on another, many
/// times: the value is dropped exactly once (taken by nobody and handed
/// back, or dropped by the closing waiter) and the cell always ends free.
#[test]
fn settle_racing_a_timed_out_waiter_drops_the_value_once() {
    static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    let rounds = if cfg!(miri) { 20 } else { 2_000 };
    let drops = DropCounter::new();
    for round in 0..rounds {
        let waiting = CELL.wait().unwrap();
        let value = drops.tracked();
        let isr = std::thread::spawn(move || {
            if let Err(refused) = CELL.resolve(value) {
                assert!(
                    matches!(refused.reason(), Refusal::Closed | Refusal::NoWaiter),
                    "{:?}",
                    refused.reason()
                );
            }
        });
        drop(waiting);
        isr.join().unwrap();
        assert_eq!(drops.get(), round + 1, "round {round}");
        assert!(CELL.is_free(), "round {round}");
    }
}

/// Polls once with `waker`, catching a panic (`None`).
fn poll_caught<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Option<Poll<F::Output>> {
    catch_unwind(AssertUnwindSafe(|| {
        fut.poll(&mut Context::from_waker(waker))
    }))
    .ok()
}

/// Every hostile waker behaviour against `wait` + the cell's own
/// `resolve`, settled before or after the first poll, and a waiter dropped
/// after a hostile registration: every value dropped exactly once, every
/// waiter completes, no waker kept, the cell free.
#[test]
fn signal_against_every_hostile_waker() {
    // One `static` cell, reused: every case must leave it free.
    static HOSTILE_CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    for behaviour in Behaviour::all() {
        for settle_before_poll in [false, true] {
            let cell = &HOSTILE_CELL;
            let drops = DropCounter::new();
            let hostile = behaviour.hostile();
            if behaviour == Behaviour::RunsHookOnWake {
                // The wake "interrupt" tries to settle again: refused.
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
                "{behaviour:?} before={settle_before_poll}"
            );
            assert!(cell.is_free(), "{behaviour:?}");
            assert_eq!(hostile.live(), 0, "{behaviour:?}");
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
            assert!(cell.is_free(), "{behaviour:?} settle_first={settle_first}");
            if !settle_first {
                let refused = cell.resolve(drops.tracked()).unwrap_err();
                assert_eq!(refused.reason(), Refusal::NoWaiter);
            }
            assert_eq!(drops.get(), 1, "{behaviour:?} settle_first={settle_first}");
            assert_eq!(hostile.live(), 0, "{behaviour:?}");
            assert!(cell.wait().is_ok(), "reusable");
        }
    }
}

/// A wake that drops the waiting promise in the middle of the settlement
/// (the waker's hook runs inside `resolve`): the value is dropped once, by
/// the closing promise, and the cell is free when `resolve` returns.
#[test]
fn a_wake_that_drops_the_waiter_mid_settlement() {
    static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    let drops = DropCounter::new();
    let hostile = Hostile::new();
    type Victim =
        Arc<Mutex<Option<Pin<Box<dyn Future<Output = Result<Tracked, PromiseError<()>>> + Send>>>>>;
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
    assert_eq!(drops.get(), 1);
    assert!(CELL.is_free());
    assert_eq!(hostile.live(), 0);
}
