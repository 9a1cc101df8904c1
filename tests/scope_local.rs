//! `scope_local`: cleanup that borrows the caller's state (`&mut` locals,
//! peripherals) and holds `!Send` values (`Rc<RefCell<..>>`), run on
//! single-threaded executors; cancelled at every await point, everything
//! still runs or is dropped exactly once.

mod support;

use std::cell::RefCell;
use std::pin::pin;

use deferral::scope_local;
use support::order::{ORDERS, Order};
use support::{WakeCounter, block_on, poll_once, yield_now};

/// A pretend peripheral.
#[derive(Debug, Default)]
struct Adc {
    powered: bool,
    samples: u32,
}

impl Adc {
    fn power_off(&mut self) {
        self.powered = false;
    }
}

#[test]
fn cleanup_borrows_mut_locals_go_style() {
    // `let mut log = Vec::new(); defer(|| log.push(..))`, and a `&mut`
    // peripheral guarded like `scopeguard::guard(&mut adc, ..)`.
    let mut log: Vec<&str> = Vec::new();
    let mut adc = Adc::default();
    let out = block_on(scope_local(async |d| {
        let mut adc = d.guard(&mut adc, Adc::power_off);
        adc.powered = true;
        d.defer(|| log.push("deferred"));
        yield_now().await;
        adc.samples += 1;
        adc.samples
    }));
    assert_eq!(out, 1);
    assert_eq!(log, ["deferred"]);
    assert!(!adc.powered, "the borrowed peripheral was powered off");
    assert_eq!(adc.samples, 1);
}

#[test]
fn async_cleanup_borrows_too_in_every_order() {
    for order in ORDERS {
        let mut log: Vec<String> = Vec::new();
        let log_ref = &RefCell::new(&mut log);
        block_on(support::order::run_local(order, async |d| {
            for i in 0..3 {
                d.defer_async(async move {
                    yield_now().await;
                    log_ref.borrow_mut().push(format!("async {i}"));
                });
            }
            d.defer(|| log_ref.borrow_mut().push("sync".into()));
        }));
        let mut sorted = log.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["async 0", "async 1", "async 2", "sync"],
            "{order:?}"
        );
    }
}

/// A `scope_local` that borrows, dropped after k polls for every k: the
/// borrowed peripheral is powered off exactly once, every value is dropped
/// exactly once, the body first.
#[test]
fn a_borrowing_scope_local_cancelled_at_every_await_point() {
    use support::DropLog;
    for order in ORDERS {
        let total = {
            let mut adc = Adc::default();
            let log = DropLog::new();
            let counter = WakeCounter::new();
            let mut s = pin!(scenario(order, &mut adc, &log));
            let mut n = 1;
            while poll_once(s.as_mut(), &counter).is_pending() {
                n += 1;
            }
            n
        };
        assert!(total >= 3, "{order:?}: {total}");
        for k in 0..=total {
            let mut adc = Adc::default();
            let log = DropLog::new();
            let counter = WakeCounter::new();
            {
                let mut s = Box::pin(scenario(order, &mut adc, &log));
                for _ in 0..k {
                    if poll_once(s.as_mut(), &counter).is_ready() {
                        break;
                    }
                }
            }
            let events = log.events();
            let count = |e: &str| events.iter().filter(|x| *x == e).count();
            let context = format!("{order:?}, dropped after {k} polls: {events:?}");
            if k > 0 {
                assert!(!adc.powered, "{context}");
                assert_eq!(count("power off"), 1, "{context}");
                assert_eq!(count("drop value"), 1, "{context}");
                assert_eq!(count("sync ran"), 1, "sync cleanup always runs ({context})");
                // Registered only after the first await point: then
                // dropped exactly once (after running, or unpolled).
                assert!(count("async ran") <= count("drop async"), "{context}");
                assert!(count("drop async") <= 1, "{context}");
                if let Some(body) = events.iter().position(|e| e == "drop body local") {
                    let first = events.iter().position(|e| e == "sync ran").unwrap();
                    assert!(body < first, "the body goes first ({context})");
                }
            } else {
                assert!(events.is_empty(), "never polled: nothing ran ({context})");
            }
            assert_eq!(counter.live(), 0, "no waker kept ({context})");
        }
    }
}

fn scenario<'a>(
    order: Order,
    adc: &'a mut Adc,
    log: &'a support::DropLog,
) -> support::order::Boxed<'a, ()> {
    support::order::run_local_n::<256, _, _>(order, async move |d| {
        let mut adc = d.guard(adc, move |adc| {
            adc.power_off();
            log.push("power off");
        });
        adc.powered = true;
        let value = log.on_drop("value");
        d.defer(move || {
            drop(value);
            log.push("sync ran");
        });
        yield_now().await;
        let held = log.on_drop("async");
        d.defer_async(async move {
            let _held = held;
            yield_now().await;
            log.push("async ran");
        });
        let _local = log.on_drop("body local");
        yield_now().await;
        adc.samples += 1;
    })
}

#[test]
fn cancelling_the_newest_registrations_frees_their_bytes() {
    // A fixed 64-byte slab (it never spills, with or without `alloc`) holds
    // two 8-byte thunks and their heads on 64-bit; a loop that registers
    // and cancels never fills it.
    let fixed = deferral::scope::ScopeBuilder::new()
        .capacity::<64>()
        .fixed();
    block_on(fixed.run_local(async |d| {
        for i in 0..1000u64 {
            let a = d.defer(move || assert!(i < 1000)).expect("room again");
            let b = d.defer(move || assert!(i < 1000)).expect("room again");
            let _ = b.cancel();
            let _ = a.cancel();
        }
        // Cancelled in registration order, the older one's bytes come back
        // too once the newer one's are.
        let a = d.defer(|| ()).unwrap();
        let b = d.defer(|| ()).unwrap();
        let _ = a.cancel(); // not the newest: its bytes wait for b's
        let _ = b.cancel(); // now both are free
        let _c = d.defer(|| ()).expect("room after both were cancelled");
        let _d = d.defer(|| ()).expect("and for a second one");
    }));
}
