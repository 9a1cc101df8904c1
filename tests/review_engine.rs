//! A hostile review of the rewritten scope engine (after 333b878): each test
//! is the minimal reproducer of one finding, named `engine_N_...`, seen
//! failing before its fix (the commit that fixed it says how). Run under
//! Miri too, with Stacked and Tree Borrows: several are undefined behaviour
//! that only Miri (or a sanitizer) shows.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::Poll;

use deferral::scope::ScopeBuilder;
use support::{DropCounter, WakeCounter, poll_once, yield_now};

// -------------------------------------------------------------- engine 1
// The slab's bump allocator computed the room left as `limit - at` with a
// wrapping subtraction: when aligning the cursor moved `at` past `limit`
// (a region whose end is not 16-aligned), the "room" was huge and the entry
// was written past the region — past a heap chunk an earlier entry filled
// exactly, or past an inline capacity that is not a multiple of 16.

/// A cleanup whose entry (head + payload) is 1000 bytes, aligned to 8: it
/// spills to a chunk of exactly 32 + 1000 bytes, which it fills.
#[cfg(feature = "alloc")]
#[test]
fn engine_1_an_entry_after_one_that_filled_its_chunk_is_not_written_past_it() {
    let drops = DropCounter::new();
    let (a, b) = (drops.tracked(), drops.tracked());
    let out = support::block_on(deferral::scope(async move |d| {
        let big = [7u8; 976];
        d.defer(move || {
            assert_eq!(big[975], 7);
            drop(a);
        });
        // Aligned to 16: the cursor (chunk + 1032) rounds up past the end.
        let wide: u128 = u128::MAX;
        d.defer(move || {
            assert_eq!(wide, u128::MAX);
            drop(b);
        });
        d.len()
    }));
    assert_eq!(out, 2);
    assert_eq!(drops.get(), 2);
}

#[test]
fn engine_1_an_inline_capacity_not_a_multiple_of_16_is_never_overrun() {
    // 44 bytes: a 24-byte entry and a 16-byte one leave the cursor at 40;
    // a 16-aligned entry would start at 48, past the end.
    let drops = DropCounter::new();
    let (a, b, c) = (drops.tracked(), drops.tracked(), drops.tracked());
    let out = support::block_on(
        ScopeBuilder::new()
            .capacity::<44>()
            .fixed()
            .run(async move |d| {
                let first = d.defer(move || drop(a)).is_ok();
                let second = d.defer(|| ()).is_ok();
                let wide: u128 = 1;
                let third = d.defer(move || assert_eq!(wide, 1));
                let refused = third.is_err();
                drop(third);
                drop((b, c));
                (first, second, refused)
            }),
    );
    assert_eq!(out, (true, true, true), "the third does not fit: refused");
    assert_eq!(drops.get(), 3);
}

// -------------------------------------------------------------- engine 2
// A token read the core's epoch *after* its registration left the lock: a
// `clear` on another thread in between (a body sharing `&Defer` with
// `std::thread::scope`) raced with the read (a data race on a `Cell`), and
// the token could name the entry `clear` dropped with the new epoch — then
// take whatever entry was registered at those bytes next, with the wrong
// type's `take`.

#[test]
fn engine_2_a_token_made_while_another_thread_clears_is_never_confused() {
    let rounds = if cfg!(miri) { 20 } else { 2000 };
    let ran = AtomicUsize::new(0);
    support::block_on(ScopeBuilder::new().capacity::<1024>().run(async |d| {
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..rounds {
                    d.clear();
                }
            });
            s.spawn(|| {
                for i in 0..rounds {
                    let token = d.defer(move || {
                        let _ = i;
                    });
                    if let Some(f) = token.try_cancel() {
                        f();
                        ran.fetch_add(1, SeqCst);
                    }
                    let wide = [i as u64; 3];
                    let token = d.defer(move || assert_eq!(wide[2], i as u64));
                    if let Some(f) = token.try_cancel() {
                        f();
                    }
                }
            });
        });
    }));
}

// -------------------------------------------------------------- engine 3
// `Grace::poll` asked its timer `is_none()` on every poll: a shared
// reference over a started, possibly self-borrowing timer, between two of
// its polls (Stacked Borrows UB with any timer that keeps a borrow of its
// own state across an await).

async fn self_borrowing(rounds: u32) -> u32 {
    let mut local = [1u32; 4];
    let r = &mut local;
    for _ in 0..rounds {
        r[0] += 1;
        yield_now().await;
        r[0] += 1;
    }
    r.iter().sum()
}

#[test]
fn engine_3_grace_polls_a_self_borrowing_timer_soundly() {
    let mut graced = pin!(
        ScopeBuilder::new()
            .capacity::<1024>()
            .run(async |d| {
                d.defer_async(std::future::pending::<()>());
                1
            })
            .grace(|| async {
                self_borrowing(3).await;
            })
    );
    let counter = WakeCounter::new();
    let out = loop {
        if let Poll::Ready(out) = poll_once(graced.as_mut(), &counter) {
            break out;
        }
    };
    let cut = out.unwrap_err();
    assert_eq!((cut.cut(), cut.into_output()), (1, 1));
}

// -------------------------------------------------------------- engine 4
// `Reaper`'s `Drop` said "if one destructor panics, the rest are dropped
// while it unwinds", but the loop simply unwound: the cleanups in the later
// slots leaked.

#[test]
fn engine_4_a_dropped_reaper_drops_every_slot_even_if_one_panics() {
    use deferral::cancel::Reaper;
    use std::sync::Mutex;
    static HELD: Mutex<Option<Box<Reaper<2, 128>>>> = Mutex::new(None);
    let _h = handler();
    *HELD.lock().unwrap() = Some(Box::new(Reaper::new()));
    deferral::cancel::set_cancel_handler(|orphan| {
        HELD.lock().unwrap().as_ref().unwrap().hand_over(orphan)
    });
    let drops = DropCounter::new();
    let (bomb, tracked) = (drops.panicking(), drops.tracked());
    cancel(ScopeBuilder::new().capacity::<1024>().run(async move |d| {
        d.defer_async(async move {
            let _bomb = bomb;
        });
        std::future::pending::<()>().await
    }));
    cancel(ScopeBuilder::new().capacity::<1024>().run(async move |d| {
        d.defer_async(async move {
            let _tracked = tracked;
        });
        std::future::pending::<()>().await
    }));
    deferral::cancel::clear_cancel_handler();
    let reaper = HELD.lock().unwrap().take().unwrap();
    assert_eq!(reaper.pending(), 2);
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(reaper)));
    assert!(dropped.is_err(), "the first slot's cleanup panicked");
    assert_eq!(drops.get(), 2, "the second slot's cleanup was dropped too");
}

/// One test at a time sets the program's cancel handler.
fn handler() -> std::sync::MutexGuard<'static, ()> {
    static HANDLER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HANDLER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls a scope whose body never returns once, then drops it: cancelled.
fn cancel<F: Future>(scope: F) {
    let mut scope = pin!(scope);
    assert!(poll_once(scope.as_mut(), &WakeCounter::new()).is_pending());
}

// -------------------------------------------------------------- engine 5
// Without `std` (no `catch_unwind`), a cleanup that panicked while a stack
// or a cancelled scope was being finished unwound out of `drive::cancel`:
// the cleanups after it were neither run nor dropped. (With `std` each is
// caught, so these pass there either way.)

#[test]
fn engine_5_a_panicking_cleanup_in_a_dropped_stack_does_not_leak_the_rest() {
    let drops = DropCounter::new();
    let mut stack: deferral::DeferStack<deferral::scope::Sendable, 256> =
        deferral::DeferStack::new();
    let a = drops.tracked();
    stack.defer(move || drop(a)); // runs last (LIFO)
    stack.defer(|| panic!("a cleanup panics"));
    let c = drops.tracked();
    stack.defer(move || drop(c)); // runs first
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(stack)));
    assert!(dropped.is_err());
    assert_eq!(drops.get(), 2, "the cleanup after the panicking one ran");
}

#[test]
fn engine_5_a_panicking_cleanup_in_a_cancelled_scope_does_not_leak_the_rest() {
    let drops = DropCounter::new();
    let (a, c) = (drops.tracked(), drops.tracked());
    let mut scope = Box::pin(ScopeBuilder::new().capacity::<256>().run_local(async |d| {
        d.defer(move || drop(a));
        d.defer(|| panic!("a cleanup panics"));
        d.defer(move || drop(c));
        std::future::pending::<()>().await
    }));
    assert!(poll_once(scope.as_mut(), &WakeCounter::new()).is_pending());
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(scope)));
    assert!(dropped.is_err());
    assert_eq!(drops.get(), 2, "the cleanup after the panicking one ran");
}

// -------------------------------------------------------------- engine 6
// Without `std`, a body whose destructor panicked while a cancelled scope
// dropped it unwound out of the scope's `Drop` before the cleanup driver
// started: every registered cleanup leaked (never run, never dropped). The
// same after a body closure that panicked while being called.

#[test]
fn engine_6_a_body_destructor_panicking_in_a_cancelled_scope_leaks_no_cleanup() {
    let drops = DropCounter::new();
    let (t, bomb) = (drops.tracked(), drops.panicking());
    let mut scope = Box::pin(
        ScopeBuilder::new()
            .capacity::<256>()
            .run_local(async move |d| {
                d.defer(move || drop(t));
                let _bomb = bomb;
                std::future::pending::<()>().await
            }),
    );
    assert!(poll_once(scope.as_mut(), &WakeCounter::new()).is_pending());
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(scope)));
    assert!(dropped.is_err(), "the body's destructor panicked");
    assert_eq!(drops.get(), 2, "the bomb, and the cleanup (run)");
}

#[test]
fn engine_6_a_body_closure_panicking_while_called_leaks_no_cleanup() {
    let drops = DropCounter::new();
    let t = drops.tracked();
    let mut scope = Box::pin(ScopeBuilder::new().capacity::<256>().run_local(
        move |d: &deferral::Defer<(), deferral::scope::Local<'_>, 256>| {
            d.defer(move || drop(t));
            if std::hint::black_box(true) {
                panic!("the body's synchronous prefix panics");
            }
            std::future::ready(())
        },
    ));
    let polled = catch_unwind(AssertUnwindSafe(|| {
        poll_once(scope.as_mut(), &WakeCounter::new())
    }));
    assert!(polled.is_err());
    let _ = catch_unwind(AssertUnwindSafe(|| drop(scope)));
    assert_eq!(
        drops.get(),
        1,
        "the cleanup registered before the panic ran"
    );
}

// ----------------------------------------------- attacks that found nothing
// Kept as coverage: each tries a corner the review suspected.

/// Aligned beyond the slab's 16 (a chunk of its own alignment) and zero-sized.
#[cfg(feature = "alloc")]
#[repr(align(64))]
#[derive(Clone, Copy)]
struct A64(u8);

#[cfg(feature = "alloc")]
#[repr(align(128))]
#[derive(Clone, Copy)]
struct A128(u8);

#[cfg(feature = "alloc")]
#[test]
fn over_aligned_and_zero_sized_payloads_in_every_order_cancelled_cleared_and_moved() {
    for order in support::order::ORDERS {
        let log = support::DropLog::new();
        let mut stack: deferral::DeferStack = deferral::DeferStack::new();
        let l = log.clone();
        support::block_on(support::order::run(order, async |d| {
            for round in 0..3u8 {
                let (a, b, c) = (l.clone(), l.clone(), l.clone());
                let x = A64(round);
                d.defer(move || {
                    assert_eq!(std::ptr::from_ref(&x).addr() % 64, 0);
                    a.push(format!("64/{}", x.0));
                });
                let y = A128(round);
                let token = d.defer_async(async move {
                    assert_eq!(std::ptr::from_ref(&y).addr() % 128, 0);
                    b.push(format!("128/{}", y.0));
                });
                if round == 1 {
                    drop(token.cancel());
                }
                for _ in 0..4 {
                    d.defer(|| ()); // zero-sized
                }
                d.defer(move || c.push(format!("zst/{round}")));
            }
            assert_eq!(d.len(), 3 * 7 - 1);
            // Move what can run elsewhere, then refill and clear half.
            assert_eq!(d.move_all(&mut stack), 3 * 7 - 1);
            let z = A128(9);
            let l2 = l.clone();
            d.defer(move || l2.push(format!("kept/{}", z.0)));
            let _gone = d.defer(move || unreachable!("cleared {}", z.0));
            assert_eq!(d.clear(), 2);
            let l3 = l.clone();
            d.defer(move || l3.push(format!("last/{}", z.0)));
        }));
        assert_eq!(log.events(), ["last/9"], "{order:?}");
        support::block_on(stack.dispose());
        let events = log.events();
        assert_eq!(events.len(), 1 + 3 + 2 + 3, "{order:?}: {events:?}");
        assert!(events.contains(&"128/0".to_owned()) && !events.contains(&"128/1".to_owned()));
    }
}

#[cfg(feature = "std")]
#[test]
fn a_destructor_run_by_clear_registers_and_cancels_through_the_ambient_api() {
    struct OnDrop(support::DropLog);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let l = self.0.clone();
            // Registers on the scope being cleared (its body is polled)...
            let token = deferral::defer(move || l.push("registered in a destructor"));
            // ...and cancels what it just registered, then registers again.
            assert!(token.cancel().is_ok());
            let l = self.0.clone();
            deferral::defer(move || l.push("kept"));
        }
    }
    let log = support::DropLog::new();
    let l = log.clone();
    support::block_on(deferral::scope(async |d| {
        let guard = OnDrop(l.clone());
        let stale = d.defer(move || drop(guard));
        assert_eq!(d.clear(), 1);
        assert!(stale.try_cancel().is_none());
        assert_eq!(d.len(), 1, "the destructor's registration");
    }));
    assert_eq!(log.events(), ["kept"]);
}

#[test]
fn two_threads_register_guard_and_cancel_through_one_handle() {
    // Without `alloc` the kept half must fit the inline bytes.
    let rounds: u64 = if cfg!(miri) || !cfg!(feature = "alloc") {
        8
    } else {
        500
    };
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let out = support::block_on(ScopeBuilder::new().capacity::<1024>().run(async |d| {
        let mut g = d.guard(0u64, |_| ());
        std::thread::scope(|s| {
            for t in 0..2u64 {
                s.spawn(move || {
                    for i in 0..rounds {
                        let token = d.defer(move || {
                            RAN.fetch_add(1, SeqCst);
                        });
                        if (i + t) % 2 == 0 {
                            let _ = token.cancel();
                        }
                        let _ = d.len();
                    }
                });
            }
            for _ in 0..rounds {
                *g += 1;
            }
        });
        *g
    }));
    assert_eq!(out, rounds);
    assert_eq!(RAN.load(SeqCst) as u64, rounds);
}

// -------------------------------------------------------------- engine 7
// Concurrent cleanup (with `alloc`) counted a finished async entry only
// after dropping what was left of it: if that drop panicked — the context
// snapshot an entry registered under a `ContextVar` carries, whose value's
// destructor panics — the entry was gone but still counted as running, and
// the scope stayed pending for ever (nothing left to wake it).

#[cfg(feature = "std")]
mod engine_7 {
    use super::*;

    struct Bomb(&'static AtomicUsize);

    impl Drop for Bomb {
        fn drop(&mut self) {
            if self.0.swap(0, SeqCst) == 1 {
                panic!("a context value's destructor panics");
            }
        }
    }

    static CTX: deferral::ContextVar<Bomb> = deferral::ContextVar::new();

    #[test]
    #[cfg_attr(miri, ignore = "hashbrown leaks its table when a value's drop panics")]
    fn engine_7_concurrent_cleanup_whose_remains_panic_on_drop_still_finishes() {
        for order in support::order::ORDERS {
            static ARMED: AtomicUsize = AtomicUsize::new(0);
            ARMED.store(1, SeqCst);
            let mut scope = support::order::run(order, async |d| {
                CTX.run(Bomb(&ARMED), || {
                    d.defer_async(async {});
                });
                7
            });
            let counter = WakeCounter::new();
            let finished = catch_unwind(AssertUnwindSafe(|| {
                (0..10).find_map(|_| match poll_once(scope.as_mut(), &counter) {
                    Poll::Ready(out) => Some(out),
                    Poll::Pending => None,
                })
            }));
            let message = finished
                .err()
                .and_then(|p| p.downcast_ref::<&str>().copied());
            assert_eq!(
                message,
                Some("a context value's destructor panics"),
                "{order:?}: the scope finished and resumed the destructor's panic"
            );
        }
    }
}

/// Two scopes at the very same address (one `Pin<Box<Option<_>>>` slot,
/// refilled in place): an ambient token of the first never takes the
/// second's registration at the same bytes.
#[cfg(feature = "std")]
#[test]
fn an_ambient_token_of_a_scope_is_refused_by_the_next_scope_at_its_address() {
    use std::cell::RefCell;
    use std::rc::Rc;
    type Token = deferral::scope::AmbientRegistration<Box<dyn FnOnce() + Send>>;
    fn make(
        slot: Rc<RefCell<Option<Token>>>,
        log: support::DropLog,
    ) -> impl Future<Output = usize> {
        deferral::scope(async move |d| {
            let l = log.clone();
            let mine: Token = deferral::defer(Box::new(move || l.push("ran")));
            let old = slot.borrow_mut().take();
            match old {
                // The first scope leaves its token behind.
                None => *slot.borrow_mut() = Some(mine),
                Some(old) => {
                    assert!(old.cancel().is_err(), "another scope's token");
                    let _kept = mine; // its registration stays
                }
            }
            d.len()
        })
    }
    let log = support::DropLog::new();
    let token = Rc::new(RefCell::new(None));
    let mut slot = Box::pin(Some(make(token.clone(), log.clone())));
    let at = std::ptr::from_ref(&*slot).addr();
    let poll = |slot: &mut std::pin::Pin<Box<Option<_>>>| {
        poll_once(slot.as_mut().as_pin_mut().unwrap(), &WakeCounter::new())
    };
    assert_eq!(poll(&mut slot), Poll::Ready(1));
    slot.set(Some(make(token.clone(), log.clone())));
    assert_eq!(std::ptr::from_ref(&*slot).addr(), at, "the same address");
    assert_eq!(
        poll(&mut slot),
        Poll::Ready(1),
        "its own registration stayed"
    );
    assert_eq!(log.events(), ["ran", "ran"]);
}
