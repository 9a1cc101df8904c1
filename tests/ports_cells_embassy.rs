//! Completeness pass over embassy-sync's `Signal`, `Watch`, `OnceLock`,
//! `LazyLock` and `waitqueue` wakers and maitake-sync's `WaitCell` and
//! `WaitQueue`: every upstream test read is classified against this crate's
//! tests, and the applicable ones nothing covered yet are ported below
//! (each citing its source). Earlier passes: tests/ports_cells.rs,
//! tests/ports_cells_zig.rs.
//!
//! Classes: **covered** — by the test named; **N/A** — why;
//! **ported** — by the test named here. A `_differs` test asserts our
//! documented behaviour where it deliberately differs from upstream.
//!
//! ## embassy-rs/embassy `embassy-sync/src/signal.rs` (0 tests)
//!
//! No `#[cfg(test)]` module (0947061f read; a2c47330 and
//! `channel/signal.rs` 21072bee per the earlier pass). Its documented
//! behaviours are ported in tests/ports_cells.rs (overwrite, wait after
//! signal, the displaced waker) and here: `signal_waiter_dropped_while_registered_is_not_woken_later_differs`,
//! `signal_wait_polled_after_completion_panics_differs`.
//!
//! ## `embassy-sync/src/waitqueue/*.rs` (0 tests)
//!
//! No test module in any file read: `atomic_waker.rs` (0954b006),
//! `atomic_waker_turbo.rs` (5b0a3bd6), `waker_registration.rs` (24548a2e),
//! `cell_waker_registration.rs` (2112b6b6), `critical_section_waker.rs`
//! (5592f3a8), `multi_waker.rs` (0954b006), `waker.rs` (f22297e3), `mod.rs`
//! (131cb54e). Our cells keep their wakers in a lock-free `AtomicWaker` per
//! waiter (`SignalCell`: one; `SharedCell`: one per slot). The documented
//! behaviours of the upstream types, ported here:
//!
//! | upstream doc | ported as |
//! |---|---|
//! | `AtomicWaker::register`: same task (`will_wake`) keeps the stored waker, no clone | `atomic_waker_register_same_task_keeps_one_clone` |
//! | `AtomicWaker`: "registering another waker will replace the previous one without waking it" | `atomic_waker_register_replaces_without_waking_shared_cell` |
//! | `WakerRegistration` / `CellWakerRegistration::register`: the previous waker "will be woken" | `waker_registration_displaced_waker_is_woken_shared_cell_differs` |
//! | `AtomicWaker::wake`: `wake_by_ref`, the waker stays registered (a second wake wakes again) | `atomic_waker_second_wake_before_repoll_differs` |
//! | `MultiWakerRegistration::register`: full buffer → wake every waker, then register | `multi_waker_full_refuses_and_wakes_nobody_shared_cell_differs` |
//! | `MultiWakerRegistration::register`: a waker of a task already registered takes no slot | `multi_waker_same_task_twice_holds_two_slots_shared_cell_differs` |
//! | `MultiWakerRegistration::wake`: wake every waker, by value, and clear | `multi_waker_many_waiters_each_woken_once_shared_cell` |
//!
//! ## `embassy-sync/src/watch.rs` (13 tests; 309f07aa)
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | `multiple_sends` | covered | `ports_cells_zig::watch_multiple_sends_signal_cell` |
//! | `all_try_get` | covered | `ports_cells::once_lock_shared_cell` |
//! | `once_lock_like` | covered | `ports_cells_zig::watch_once_lock_like_signal_cell`, `ports_cells_zig::watch_once_lock_like_second_send_refused_shared_cell_differs` |
//! | `sender_modify` | N/A | no in-place modify: a `SharedCell` is a latch, a `SignalCell`'s value belongs to its taker |
//! | `predicate_fn` | N/A | no `*_and(predicate)` waits or tries in our API |
//! | `receive_after_create` | covered | `ports_cells::watch_max_receivers_drop_shared_cell`, `ports_cells::signal_wait_after_signal_is_ready_without_registering` |
//! | `max_receivers_drop` | covered | `ports_cells::watch_max_receivers_drop_shared_cell` |
//! | `multiple_receivers` | covered | `ports_cells_zig::watch_multiple_receivers_anon_receiver_is_get_shared_cell` |
//! | `clone_senders` | covered | `ports_cells_zig::watch_clone_senders_two_settlers_signal_cell` |
//! | `use_dynamics` | N/A | `Dyn*` handles (dispatch over the mutex type); ours are plain `&` |
//! | `convert_to_dyn` | N/A | as `use_dynamics` |
//! | `dynamic_receiver_count` | covered | `shared_cell::full_slots_are_refused_until_a_waiter_leaves_or_the_cell_settles` |
//! | `contains_value` | covered | `ports_cells::once_lock_shared_cell` (`is_settled`), `signal_cell::the_latest_settlement_wins_and_replaced_values_are_dropped_once` (`is_signaled`) |
//!
//! ## `embassy-sync/src/once_lock.rs` (6 tests)
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | `once_lock` | covered | `ports_cells::once_lock_shared_cell` |
//! | `once_lock_get_or_init` | covered | `ports_cells_zig::once_lock_get_or_init_racing_initialisers_shared_cell` |
//! | `once_lock_static` | covered | `ports_cells::once_lock_async_and_take_init_shared_cell` |
//! | `once_lock_async` | covered | `ports_cells::once_lock_async_and_take_init_shared_cell` |
//! | `once_lock_into_inner` | covered | `ports_cells_zig::once_lock_into_inner_is_reset_shared_cell` |
//! | `once_lock_take_init` | covered | `ports_cells::once_lock_async_and_take_init_shared_cell` |
//!
//! ## `embassy-sync/src/lazy_lock.rs` (3 tests)
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | `test_lazy_lock` | covered | `ports_cells::lazy_lock_drop_cell_lazy_captures_and_value` |
//! | `test_lazy_lock_into_inner` | covered | the same (awaiting the lazy promise consumes it) |
//! | `test_lazy_drop` | covered | `ports_cells::lazy_lock_drop_cell_lazy_captures_and_value` |
//!
//! ## hawkw/mycelium `maitake-sync/src/wait_cell.rs` (6 tests + 2 loom; 0c870e03)
//!
//! (No `wait_cell/tests.rs` is stored; the tests are inline. tokio-rs has no
//! maitake repository stored: mycelium is where maitake-sync lives.)
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | `wait_smoke` | covered | `ports_cells::signal_wait_smoke_from_another_thread` |
//! | `wait_spurious_poll` | covered | `ports_cells::signal_wait_spurious_poll` |
//! | `subscribe` | covered | `ports_cells_zig::maitake_subscribe_a_wait_is_subscribed_from_its_creation` |
//! | `wake_before_subscribe` | covered | `ports_cells::signal_wait_after_signal_is_ready_without_registering` |
//! | `wake_debounce` | covered | `ports_cells::signal_overwritten_while_a_waiter_is_registered_latest_wins` |
//! | `subscribe_doesnt_self_wake` | covered | `ports_cells_zig::maitake_subscribe_doesnt_self_wake_signal_cell` |
//! | loom `basic` | covered | `ports_cells_zig::maitake_loom_basic_resolve_and_reject_race_a_blocked_waiter` |
//! | loom `subscribe` | covered | `ports_cells::signal_wait_smoke_from_another_thread`, `loom_promise::signal_settle_vs_wait` |
//!
//! ## `maitake-sync/src/wait_queue/tests.rs` (1 test; 441080e0)
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | `wait_future_is_future` | ported | `wait_queue_wait_futures_are_fused_futures` |
//!
//! ## `maitake-sync/src/wait_queue/tests/alloc_tests.rs` (9 tests; 441080e0, 27486193 has the first 8)
//!
//! `WaitQueue::wake` (one waiter, FIFO, a wakeup stored when nobody waits)
//! maps to `SignalCell` (one waiter, a settlement stored); `wake_all` /
//! `close` map to `SharedCell`'s `resolve` / `reject` (every waiter).
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | `wake_all` | covered | `ports_cells::wait_queue_wake_all_shared_cell` |
//! | `close` | covered | `ports_cells::wait_queue_close_then_register_after_close_shared_cell` |
//! | `wake_one` | ported | `wait_queue_wake_one_relay_single_waiter_differs` |
//! | `wake_not_subscribed` | covered | `ports_cells::signal_wait_spurious_poll` (pending, woken, ready) |
//! | `wake_after_subscribe` | ported | `wait_queue_wake_after_subscribe_then_poll_again_differs` (its first half: `ports_cells_zig::maitake_subscribe_a_wait_is_subscribed_from_its_creation`) |
//! | `poll_after_subscribe` | covered | `ports_cells::signal_wait_spurious_poll` (a wait is subscribed from creation; its poll is pending) |
//! | `subscribe_after_poll` | covered | `ports_cells::signal_wait_spurious_poll` (second poll pending) |
//! | `subscribe_consumes_wakeup` | ported | `SignalCell` half covered by `ports_cells::signal_wait_after_signal_is_ready_without_registering`; `SharedCell` half here: `wait_queue_subscribe_consumes_wakeup_latch_shared_cell_differs` |
//! | `wait_owned_future_is_future` | N/A | no owned (`Arc`) waits: our cells are borrowed, usually from a `static`; the `Future` half is `wait_queue_wait_futures_are_fused_futures` |
//!
//! ## `maitake-sync/src/wait_queue/tests/loom.rs` (8 tests; 49513022, 2cea7c13, and the older inline `mod loom` 48977221 — same tests)
//!
//! Run with threads (small counts under Miri), not loom; `loom_promise.rs`
//! models the pairwise races of our cells.
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | `wake_one` | ported | `wait_queue_loom_wake_one_wait_made_on_the_thread_signal_cell` |
//! | `wake_all_sequential` | ported | `wait_queue_loom_wake_all_sequential_shared_cell` |
//! | `wake_all_concurrent` | covered | `shared_cell::every_waiter_on_its_own_thread_gets_the_value`, `shared_cell::waiters_racing_the_settlement_on_threads` |
//! | `wake_all_reregistering` | ported | `wait_queue_loom_wake_all_reregistering_latch_shared_cell_differs` |
//! | `wake_close` | ported | `wait_queue_loom_wake_close_on_threads_shared_cell` |
//! | `wake_one_many` | ported | `wait_queue_loom_wake_one_many_relay_signal_cell` |
//! | `wake_mixed` | ported | `wait_queue_loom_wake_mixed_signal_cell` |
//! | `drop_wait_future` | ported | `wait_queue_loom_drop_wait_future_signal_cell` |
//!
//! The older inline layout (48977221: `mod alloc` with `wake_all`, `close`,
//! `wake_one` on maitake's `Scheduler`) holds the same tests, classified as
//! above.
//!
//! ## Unhappy paths beyond the upstream tests
//!
//! `shared_cell_waiter_dropped_while_registered_then_a_new_waiter_takes_its_slot`
//! (a waiter dropped while registered, a second one replacing it) and
//! `shared_cell_slot_churn_on_threads_while_settling` (racing threads
//! claiming and dropping slots around the settlement; no lost wake-up, no
//! leaked waker).
//!
//! Totals — embassy `signal.rs` 0; `waitqueue/*` 0 (7 documented behaviours
//! ported); `watch.rs` 13: 9 covered / 4 N/A / 0 ported; `once_lock.rs` 6:
//! 6 / 0 / 0; `lazy_lock.rs` 3: 3 / 0 / 0; maitake `wait_cell.rs` 8: 8 / 0 /
//! 0; `wait_queue/tests.rs` 1: 0 / 0 / 1; `alloc_tests.rs` 9: 5 / 1 / 3;
//! `loom.rs` 8: 1 / 0 / 7. No test exposed a bug.
#![cfg(feature = "std")]

mod support;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::Poll;

use deferral::SharedCell;
use deferral::promise::{
    CellBusy, MAX_WAITERS, Refusal, SharedWait, SharedWaitRef, SignalCell, SignalWait, WaitersFull,
};
use futures_core::future::FusedFuture;
use support::drops::Tracked;
use support::{DropCounter, WakeCounter, block_on, poll_once, yield_now};

/// A `SignalCell` wait, retrying while another waiter holds the claim —
/// maitake's `Wait` does the same on `PollWaitError::Busy` (yield, retry).
fn claim<T, E>(cell: &'static SignalCell<T, E>) -> SignalWait<'static, T, E> {
    loop {
        match cell.wait() {
            Ok(w) => return w,
            Err(CellBusy) => std::thread::yield_now(),
        }
    }
}

// ====================================================================
// embassy-sync `waitqueue` wakers → the cells' `AtomicWaker`s
// ====================================================================

/// embassy-sync `waitqueue/atomic_waker.rs` `register` (`Some(w2) if
/// w2.will_wake(w) => Some(w2)`) and `waker_registration.rs` ("If both the
/// old and new Wakers wake the same task, we can simply keep the old waker,
/// skipping the clone"): polling again with the same task's waker stores
/// one clone only, and none is left alive after completion.
#[test]
fn atomic_waker_register_same_task_keeps_one_clone() {
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    static CELL: SharedCell<u8, (), 2> = SharedCell::new();
    let t = WakeCounter::new();
    let waker = t.waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut s = pin!(SIG.wait().unwrap());
    let mut c = pin!(CELL.wait().unwrap());
    for _ in 0..3 {
        assert_eq!(s.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(c.as_mut().poll(&mut cx), Poll::Pending);
    }
    assert_eq!(t.clones(), 2, "one stored clone per cell, not per poll");
    SIG.resolve(1).unwrap();
    CELL.resolve(2).unwrap();
    assert_eq!(t.wakes(), 2);
    assert_eq!(s.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
    assert_eq!(c.as_mut().poll(&mut cx), Poll::Ready(Ok(2)));
    drop(waker);
    assert_eq!(t.live(), 0, "no stored waker leaked");
}

/// embassy-sync `waitqueue/atomic_waker.rs` (`AtomicWaker`: "registering
/// another waker will replace the previous one without waking it"), on a
/// `SharedCell` slot: the waiter moved to another task is polled with a new
/// waker; the old one is dropped unwoken, the settlement wakes the new one.
#[test]
fn atomic_waker_register_replaces_without_waking_shared_cell() {
    static CELL: SharedCell<u8, (), 1> = SharedCell::new();
    let (t1, t2) = (WakeCounter::new(), WakeCounter::new());
    let mut w = pin!(CELL.wait().unwrap());
    assert_eq!(poll_once(w.as_mut(), &t1), Poll::Pending);
    assert_eq!(t1.live(), 1, "registered");
    assert_eq!(poll_once(w.as_mut(), &t2), Poll::Pending);
    assert_eq!(
        (t1.wakes(), t1.live()),
        (0, 0),
        "replaced: dropped, not woken"
    );
    CELL.resolve(5).unwrap();
    assert_eq!((t1.wakes(), t2.wakes()), (0, 1));
    assert_eq!(poll_once(w.as_mut(), &t2), Poll::Ready(Ok(5)));
    assert_eq!(t2.live(), 0);
}

/// embassy-sync `waitqueue/waker_registration.rs` and
/// `cell_waker_registration.rs` `register`: a waker registered "for another
/// task" is replaced and *woken*, "giving it a chance to reregister
/// itself" (two tasks sharing one registration wake each other in a loop).
///
/// deferral differs (`SharedCell`'s docs: each waiter owns its slot; a
/// waker it replaces "is dropped, not woken"; `SignalCell::wait`'s docs
/// likewise): two tasks never share a registration —
/// each waiter owns its slot — so a displaced waker can only be the same
/// waiter's, from before it moved; it is dropped unwoken. Two waiters in
/// two slots are both woken by the settlement, neither by the other.
#[test]
fn waker_registration_displaced_waker_is_woken_shared_cell_differs() {
    static CELL: SharedCell<u8, (), 2> = SharedCell::new();
    let (a, b, a2) = (WakeCounter::new(), WakeCounter::new(), WakeCounter::new());
    let mut wa = pin!(CELL.wait().unwrap());
    let mut wb = pin!(CELL.wait().unwrap());
    assert_eq!(poll_once(wa.as_mut(), &a), Poll::Pending);
    assert_eq!(poll_once(wb.as_mut(), &b), Poll::Pending);
    assert_eq!((a.wakes(), b.wakes()), (0, 0), "no ping-pong between tasks");
    assert_eq!(poll_once(wa.as_mut(), &a2), Poll::Pending);
    assert_eq!((a.wakes(), a.live()), (0, 0), "displaced: dropped unwoken");
    CELL.resolve(9).unwrap();
    assert_eq!((a.wakes(), a2.wakes(), b.wakes()), (0, 1, 1));
    assert_eq!(poll_once(wa.as_mut(), &a2), Poll::Ready(Ok(9)));
    assert_eq!(poll_once(wb.as_mut(), &b), Poll::Ready(Ok(9)));
}

/// embassy-sync `waitqueue/atomic_waker.rs` `wake` (`w.wake_by_ref();
/// cell.set(Some(w))`: the waker stays registered, so a second `wake`
/// before the task re-polls wakes it again).
///
/// deferral differs (module docs of `promise::signal`: settling "wakes the
/// waiter"; the `AtomicWaker` is tokio's shape, whose `wake` takes the
/// waker out): the first settlement wakes the waiter and consumes its
/// registration; a second one before the re-poll replaces the value and
/// wakes nobody (the task is already scheduled). The re-poll gets the
/// latest value and no waker is left behind.
#[test]
fn atomic_waker_second_wake_before_repoll_differs() {
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    let t = WakeCounter::new();
    let mut w = pin!(SIG.wait().unwrap());
    assert_eq!(poll_once(w.as_mut(), &t), Poll::Pending);
    SIG.resolve(1).unwrap();
    assert_eq!((t.wakes(), t.live()), (1, 0), "woken by value, taken out");
    SIG.resolve(2).unwrap();
    assert_eq!(t.wakes(), 1, "no second wake: nothing registered");
    assert_eq!(poll_once(w.as_mut(), &t), Poll::Ready(Ok(2)));
    assert_eq!(t.live(), 0);
}

/// embassy-sync `waitqueue/multi_waker.rs` `register`: "If the buffer is
/// full, wakes all the wakers, clears its buffer and registers the waker"
/// (every registered task re-polls and re-registers).
///
/// deferral differs (documented on `SharedCell`: "When all `N` slots are
/// taken by live waiters and nothing is settled yet, `wait` returns
/// `WaitersFull` at once"): the extra waiter is refused, and the waiters
/// already registered are not disturbed — no mass wake, no re-registration.
/// The settlement then wakes each of them exactly once.
#[test]
fn multi_waker_full_refuses_and_wakes_nobody_shared_cell_differs() {
    static CELL: SharedCell<u8, (), 2> = SharedCell::new();
    let (a, b) = (WakeCounter::new(), WakeCounter::new());
    let mut wa = pin!(CELL.wait().unwrap());
    let mut wb = pin!(CELL.wait_ref().unwrap());
    assert_eq!(poll_once(wa.as_mut(), &a), Poll::Pending);
    assert_eq!(poll_once(wb.as_mut(), &b), Poll::Pending);
    for _ in 0..3 {
        assert_eq!(CELL.wait().err(), Some(WaitersFull));
        assert_eq!(CELL.wait_ref().err(), Some(WaitersFull));
    }
    assert_eq!(
        (a.wakes(), b.wakes()),
        (0, 0),
        "nobody woken by the refusals"
    );
    assert_eq!((a.clones(), b.clones()), (1, 1), "nobody re-registered");
    CELL.resolve(4).unwrap();
    assert_eq!((a.wakes(), b.wakes()), (1, 1));
    assert_eq!(poll_once(wa.as_mut(), &a), Poll::Ready(Ok(4)));
    assert_eq!(poll_once(wb.as_mut(), &b), Poll::Ready(Ok(&4)));
    assert_eq!((a.live(), b.live()), (0, 0));
}

/// embassy-sync `waitqueue/multi_waker.rs` `register`: "If we already have
/// some waker that wakes the same task as `w`, do nothing" — one task
/// registering twice takes one buffer entry.
///
/// deferral differs (documented on `SharedCell::wait`: it "claims one of
/// the `N` waiter slots"): a slot belongs to a waiter, not to a task, so
/// one task holding two waits holds two slots (a third wait is refused)
/// and the settlement wakes its waker once per slot.
#[test]
fn multi_waker_same_task_twice_holds_two_slots_shared_cell_differs() {
    static CELL: SharedCell<u8, (), 2> = SharedCell::new();
    let t = WakeCounter::new();
    let mut first = pin!(CELL.wait().unwrap());
    let mut second = pin!(CELL.wait().unwrap());
    assert_eq!(poll_once(first.as_mut(), &t), Poll::Pending);
    assert_eq!(poll_once(second.as_mut(), &t), Poll::Pending);
    assert_eq!(CELL.waiters(), 2);
    assert_eq!(CELL.wait().err(), Some(WaitersFull));
    CELL.resolve(1).unwrap();
    assert_eq!(t.wakes(), 2, "one wake per slot");
    assert_eq!(poll_once(first.as_mut(), &t), Poll::Ready(Ok(1)));
    assert_eq!(poll_once(second.as_mut(), &t), Poll::Ready(Ok(1)));
    assert_eq!(t.live(), 0);
}

/// embassy-sync `waitqueue/multi_waker.rs` `wake` ("Wake all registered
/// wakers. This clears the buffer"; each woken by value, which drops it),
/// at our largest size: `MAX_WAITERS` waiters, one more refused; the
/// settlement wakes each exactly once and leaves no waker and no slot.
#[test]
fn multi_waker_many_waiters_each_woken_once_shared_cell() {
    static CELL: SharedCell<u32, (), MAX_WAITERS> = SharedCell::new();
    let counters: Vec<WakeCounter> = (0..MAX_WAITERS).map(|_| WakeCounter::new()).collect();
    let mut waits: Vec<_> = (0..MAX_WAITERS)
        .map(|_| Box::pin(CELL.wait().unwrap()))
        .collect();
    for (w, c) in waits.iter_mut().zip(&counters) {
        assert_eq!(poll_once(w.as_mut(), c), Poll::Pending);
    }
    assert_eq!(CELL.waiters(), MAX_WAITERS);
    assert_eq!(CELL.wait().err(), Some(WaitersFull));
    CELL.resolve(77).unwrap();
    for c in &counters {
        assert_eq!((c.wakes(), c.live()), (1, 0), "woken once, by value");
    }
    for (w, c) in waits.iter_mut().zip(&counters) {
        assert_eq!(poll_once(w.as_mut(), c), Poll::Ready(Ok(77)));
    }
    assert_eq!(CELL.waiters(), 0);
    assert!(counters.iter().all(|c| c.live() == 0));
}

// ====================================================================
// embassy-sync `Signal` → `SignalCell`: unhappy paths
// ====================================================================

/// embassy-sync `signal.rs` `poll_wait`: a pending wait leaves
/// `State::Waiting(waker)` in the signal; the future is a `poll_fn` with no
/// `Drop`, so a wait dropped while registered (a timeout) leaves its waker
/// there, and the next `signal` wakes that stale waker.
///
/// deferral differs (a `SignalWait` holds the cell's waiter claim "until
/// it completes or is dropped", and its drop takes its waker out): the
/// dropped wait's waker is released at once, a later settlement wakes
/// nobody and is kept, and the next wait gets it without registering.
#[test]
fn signal_waiter_dropped_while_registered_is_not_woken_later_differs() {
    static SIG: SignalCell<Tracked, ()> = SignalCell::new();
    let drops = DropCounter::new();
    let stale = WakeCounter::new();
    let mut w = Box::pin(SIG.wait().unwrap());
    assert_eq!(poll_once(w.as_mut(), &stale).map(|_| ()), Poll::Pending);
    assert_eq!(stale.live(), 1);
    drop(w); // the timeout
    assert_eq!(stale.live(), 0, "the registration went with the wait");
    SIG.resolve(drops.tracked()).map_err(drop).unwrap();
    assert_eq!(stale.wakes(), 0, "no stale wake");
    assert!(SIG.is_signaled(), "kept for the next wait");
    let next = WakeCounter::new();
    let mut w = Box::pin(SIG.wait().unwrap());
    match poll_once(w.as_mut(), &next) {
        Poll::Ready(Ok(v)) => drop(v),
        _ => panic!("the kept settlement"),
    }
    assert_eq!((next.clones(), drops.get()), (0, 1));
}

/// maitake-sync `WaitCell`'s and `WaitQueue`'s `Wait` docs ("This future
/// is fused, so once it has completed, any future calls to poll will
/// immediately return `Poll::Ready`"), as `wait_queue/tests/alloc_tests.rs`
/// `wake_after_subscribe` uses it (ready, then `subscribe` is ready again);
/// embassy's `Signal::wait` is a `poll_fn` that would wait for the next
/// signal instead.
///
/// deferral differs (documented on `SignalWait`: "polling it after it
/// completed panics"; it is a `FusedFuture` reporting `is_terminated`):
/// the second poll panics and changes nothing — the next settlement is
/// still there for the next wait.
#[test]
fn signal_wait_polled_after_completion_panics_differs() {
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    let t = WakeCounter::new();
    let mut w = Box::pin(SIG.wait().unwrap());
    SIG.resolve(1).unwrap();
    assert_eq!(poll_once(w.as_mut(), &t), Poll::Ready(Ok(1)));
    assert!(w.is_terminated());
    SIG.resolve(2).unwrap();
    let again = catch_unwind(AssertUnwindSafe(|| poll_once(w.as_mut(), &t)));
    assert!(again.is_err(), "polled after completion");
    assert!(SIG.is_signaled(), "the panic took nothing");
    drop(w);
    assert_eq!(block_on(SIG.wait().unwrap()), Ok(2));
}

// ====================================================================
// maitake-sync `WaitQueue` (alloc tests) → `SignalCell` / `SharedCell`
// ====================================================================

/// maitake-sync `wait_queue/tests.rs` `wait_future_is_future` (and the
/// future half of `alloc_tests.rs` `wait_owned_future_is_future`): the
/// waits are futures — here also fused, `Unpin`, `Send`.
#[test]
fn wait_queue_wait_futures_are_fused_futures() {
    fn fused<F: FusedFuture + Unpin + Send>(_: &F) {}
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    static CELL: SharedCell<u8, (), 2> = SharedCell::new();
    let s: SignalWait<'_, u8, ()> = SIG.wait().unwrap();
    let c: SharedWait<'_, u8, (), 2> = CELL.wait().unwrap();
    let r: SharedWaitRef<'_, u8, (), 2> = CELL.wait_ref().unwrap();
    fused(&s);
    fused(&c);
    fused(&r);
    assert!(!s.is_terminated() && !c.is_terminated() && !r.is_terminated());
}

/// maitake-sync `wait_queue/tests/alloc_tests.rs` `wake_one`: ten tasks
/// wait (all pending), one `wake` wakes the first, and each woken task
/// wakes the next: all ten complete.
///
/// deferral differs (documented on `SignalCell::wait`: "One waiter at a
/// time (`CellBusy` for a second)"): the relay works — each task takes the
/// value and passes the next one on — but only one task is waiting at any
/// time; the other nine are refused with `CellBusy` and retry (as maitake's
/// own `Wait` does on `PollWaitError::Busy`: wake itself, re-poll).
#[test]
fn wait_queue_wake_one_relay_single_waiter_differs() {
    const TASKS: usize = 10;
    static SIG: SignalCell<usize, ()> = SignalCell::new();
    static BUSY: AtomicUsize = AtomicUsize::new(0);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks: Vec<Pin<Box<dyn Future<Output = ()>>>> = (0..TASKS)
        .map(|_| {
            let seen = seen.clone();
            Box::pin(async move {
                let wait = loop {
                    match SIG.wait() {
                        Ok(w) => break w,
                        Err(CellBusy) => {
                            BUSY.fetch_add(1, SeqCst);
                            yield_now().await;
                        }
                    }
                };
                let v = wait.await.unwrap();
                seen.lock().unwrap().push(v);
                SIG.resolve(v + 1).unwrap(); // wake the next
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    let counters: Vec<WakeCounter> = (0..TASKS).map(|_| WakeCounter::new()).collect();
    for (task, c) in tasks.iter_mut().zip(&counters) {
        assert_eq!(poll_once(task.as_mut(), c), Poll::Pending);
    }
    assert!(seen.lock().unwrap().is_empty(), "none completed");
    assert_eq!(BUSY.load(SeqCst), TASKS - 1, "one waiter, nine refused");
    assert_eq!(counters[0].wakes(), 0, "the waiter is parked");

    SIG.resolve(0).unwrap();
    assert_eq!(counters[0].wakes(), 1, "the first is woken");
    let mut done = [false; TASKS];
    let mut rounds = 0;
    while done.iter().any(|d| !d) {
        rounds += 1;
        assert!(rounds <= 4 * TASKS, "the relay stalled");
        for (i, (task, c)) in tasks.iter_mut().zip(&counters).enumerate() {
            if !done[i] && poll_once(task.as_mut(), c).is_ready() {
                done[i] = true;
            }
        }
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..TASKS).collect::<Vec<_>>(),
        "each value taken once"
    );
    assert_eq!(SIG.try_take(), Some(Ok(TASKS)), "the last task's wake kept");
}

/// maitake-sync `wait_queue/tests/alloc_tests.rs` `wake_after_subscribe`:
/// subscribe (pending), `wake`, the poll is ready, and polling the
/// subscription again is ready too (the future is fused).
///
/// deferral differs: the first half holds (a wait is subscribed from its
/// creation, so a settlement before its first poll completes it); polling
/// the finished wait again panics (documented on `SignalWait` and on
/// `SharedCell`'s waits), and `is_terminated` says so beforehand.
#[test]
fn wait_queue_wake_after_subscribe_then_poll_again_differs() {
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    static CELL: SharedCell<u8, (), 1> = SharedCell::new();
    let t = WakeCounter::new();
    let mut s = Box::pin(SIG.wait().unwrap());
    let mut c = Box::pin(CELL.wait().unwrap());
    assert_eq!(poll_once(s.as_mut(), &t), Poll::Pending, "subscribed");
    assert_eq!(poll_once(c.as_mut(), &t), Poll::Pending, "subscribed");
    SIG.resolve(1).unwrap();
    CELL.resolve(2).unwrap();
    assert_eq!(poll_once(s.as_mut(), &t), Poll::Ready(Ok(1)));
    assert_eq!(poll_once(c.as_mut(), &t), Poll::Ready(Ok(2)));
    assert!(s.is_terminated() && c.is_terminated());
    assert!(catch_unwind(AssertUnwindSafe(|| poll_once(s.as_mut(), &t))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| poll_once(c.as_mut(), &t))).is_err());
    assert_eq!(CELL.waiters(), 0);
}

/// maitake-sync `wait_queue/tests/alloc_tests.rs` `subscribe_consumes_wakeup`:
/// a `wake` with nobody waiting is stored; the first wait consumes it, the
/// second is pending.
///
/// On a `SignalCell` the same holds (`ports_cells::signal_wait_after_signal_is_ready_without_registering`).
/// On a `SharedCell` deferral differs (documented: "The settlement stays
/// in the cell (a latch): `wait` after it resolves at once"): nothing is
/// consumed, every later wait is ready, and none needs a slot.
#[test]
fn wait_queue_subscribe_consumes_wakeup_latch_shared_cell_differs() {
    static CELL: SharedCell<u8, (), 1> = SharedCell::new();
    CELL.resolve(3).unwrap();
    let t = WakeCounter::new();
    let mut firsts: Vec<_> = (0..3).map(|_| Box::pin(CELL.wait().unwrap())).collect();
    for w in &mut firsts {
        assert_eq!(poll_once(w.as_mut(), &t), Poll::Ready(Ok(3)));
    }
    assert_eq!((t.clones(), CELL.waiters()), (0, 0));
}

// ====================================================================
// maitake-sync `WaitQueue` (loom tests) → threads
// ====================================================================

/// maitake-sync `wait_queue/tests/loom.rs` `wake_one`: the waiting thread
/// makes its wait itself, racing the main thread's `wake` (which may come
/// first and be stored): the wait always completes.
#[test]
fn wait_queue_loom_wake_one_wait_made_on_the_thread_signal_cell() {
    static SIG: SignalCell<u32, ()> = SignalCell::new();
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for round in 0..rounds {
        let waiter = std::thread::spawn(|| block_on(SIG.wait().unwrap()));
        SIG.resolve(round).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(round));
        assert!(!SIG.is_signaled());
    }
}

/// maitake-sync `wait_queue/tests/loom.rs` `wake_all_sequential`: two
/// waits made first, another thread wakes all, the main thread awaits one
/// after the other.
#[test]
fn wait_queue_loom_wake_all_sequential_shared_cell() {
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for round in 0..rounds {
        let cell = &SharedCell::<u32, (), 2>::new();
        let (wait1, wait2) = (cell.wait().unwrap(), cell.wait().unwrap());
        std::thread::scope(|s| {
            s.spawn(move || cell.resolve(round).unwrap());
            block_on(async {
                assert_eq!(wait1.await, Ok(round));
                assert_eq!(wait2.await, Ok(round));
            });
        });
        assert_eq!(cell.waiters(), 0);
    }
}

/// maitake-sync `wait_queue/tests/loom.rs` `wake_all_reregistering`: two
/// threads each wait twice; the main thread keeps calling `wake_all` until
/// both are done (a `wake_all` stores nothing, so each wait needs its own).
///
/// deferral differs (documented on `SharedCell`: settled once, a latch):
/// one settlement finishes both waits of both threads — the second wait
/// needs no slot and no wake — and a second settlement is refused.
#[test]
fn wait_queue_loom_wake_all_reregistering_latch_shared_cell_differs() {
    let rounds = if cfg!(miri) { 3 } else { 100 };
    for _ in 0..rounds {
        let cell = &SharedCell::<(), (), 2>::new();
        let done = &AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(move || {
                    block_on(async {
                        cell.wait().unwrap().await.unwrap();
                        cell.wait().unwrap().await.unwrap();
                    });
                    done.fetch_add(1, SeqCst);
                });
            }
            cell.resolve(()).unwrap();
        });
        assert_eq!(done.load(SeqCst), 2);
        let refused = cell.resolve(()).unwrap_err();
        assert_eq!(refused.reason(), Refusal::AlreadySettled);
        assert_eq!(cell.waiters(), 0);
    }
}

/// maitake-sync `wait_queue/tests/loom.rs` `wake_close`: two waits made on
/// the main thread, each blocked on its own thread; `close` fails both.
/// Ours: the rejection reaches both, by clone and by reference.
#[test]
fn wait_queue_loom_wake_close_on_threads_shared_cell() {
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for _ in 0..rounds {
        let cell = &SharedCell::<u8, &str, 2>::new();
        let (wait1, wait2) = (cell.wait().unwrap(), cell.wait_ref().unwrap());
        std::thread::scope(|s| {
            let t1 = s.spawn(move || block_on(wait1));
            let t2 = s.spawn(move || block_on(wait2));
            cell.reject("closed").unwrap();
            assert_eq!(t1.join().unwrap(), Err("closed"));
            assert_eq!(t2.join().unwrap(), Err(&"closed"));
        });
        assert_eq!(cell.waiters(), 0);
    }
}

/// maitake-sync `wait_queue/tests/loom.rs` `wake_one_many`: a stored
/// wakeup; two threads each wait, then wake (relay); finally the main
/// thread's wait completes on the last relayed wakeup. Ours: the value is
/// incremented at each hop; the threads race for the one waiter claim
/// (`CellBusy` → retry), no hop is lost or doubled.
#[test]
fn wait_queue_loom_wake_one_many_relay_signal_cell() {
    static SIG: SignalCell<u32, ()> = SignalCell::new();
    let rounds = if cfg!(miri) { 2 } else { 100 };
    for _ in 0..rounds {
        SIG.resolve(0).unwrap();
        let relay = || {
            let v = block_on(claim(&SIG)).unwrap();
            SIG.resolve(v + 1).unwrap();
        };
        let (t1, t2) = (std::thread::spawn(relay), std::thread::spawn(relay));
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(block_on(SIG.wait().unwrap()), Ok(2), "two hops");
        assert!(!SIG.is_signaled());
    }
}

/// maitake-sync `wait_queue/tests/loom.rs` `wake_mixed`: `wake_all` and
/// `wake` from two threads race a third thread that makes and awaits a
/// wait: it completes. Ours: a resolve and a reject race the waiter
/// (whose wait is made on its own thread): it gets one of them; the other
/// is kept, replaced or refused — every value dropped exactly once.
#[test]
fn wait_queue_loom_wake_mixed_signal_cell() {
    static SIG: SignalCell<Tracked, Tracked> = SignalCell::new();
    let drops = DropCounter::new();
    let rounds = if cfg!(miri) { 2 } else { 100 };
    for _ in 0..rounds {
        let (a, b) = (drops.tracked(), drops.tracked());
        let t1 = std::thread::spawn(move || drop(SIG.resolve(a)));
        let t2 = std::thread::spawn(move || drop(SIG.reject(b)));
        let t3 = std::thread::spawn(|| drop(block_on(claim(&SIG))));
        t1.join().unwrap();
        t2.join().unwrap();
        t3.join().unwrap();
        SIG.reset();
    }
    assert_eq!(drops.get(), 2 * rounds, "every value dropped exactly once");
}

/// maitake-sync `wait_queue/tests/loom.rs` `drop_wait_future`: one thread
/// polls a wait once — passing the wakeup on if it got it — and drops it;
/// another waits, wakes, and waits again; the main thread wakes once. A
/// wait dropped while registered must not swallow a wakeup: both threads
/// finish.
#[test]
fn wait_queue_loom_drop_wait_future_signal_cell() {
    static SIG: SignalCell<u32, ()> = SignalCell::new();
    let rounds = if cfg!(miri) { 2 } else { 100 };
    for _ in 0..rounds {
        let t1 = std::thread::spawn(|| {
            let t = WakeCounter::new();
            let mut wait = Box::pin(claim(&SIG));
            if let Poll::Ready(v) = poll_once(wait.as_mut(), &t) {
                SIG.resolve(v.unwrap()).unwrap(); // pass it on
            }
            drop(wait);
            // A settlement racing the drop may still hold (and be about to
            // wake) the registered waker: count it once everyone is done.
            t
        });
        let t2 = std::thread::spawn(|| {
            let v = block_on(claim(&SIG)).unwrap();
            SIG.resolve(v + 1).unwrap(); // the second notification
            block_on(claim(&SIG)).unwrap()
        });
        SIG.resolve(10).unwrap();
        let t = t1.join().unwrap();
        assert_eq!(t2.join().unwrap(), 11);
        SIG.reset();
        assert_eq!(t.live(), 0, "the dropped wait's waker was released");
    }
}

// ====================================================================
// Unhappy paths beyond the upstream tests
// ====================================================================

/// A `SharedCell` waiter dropped while registered (a timeout), then a new
/// waiter in the freed slot (the "second waiter replacing the first" of
/// embassy's `WakerRegistration`): the dropped one's waker is released at
/// once and never woken; the settlement wakes only the new one.
#[test]
fn shared_cell_waiter_dropped_while_registered_then_a_new_waiter_takes_its_slot() {
    static CELL: SharedCell<u8, (), 1> = SharedCell::new();
    let (old, new) = (WakeCounter::new(), WakeCounter::new());
    let mut first = Box::pin(CELL.wait().unwrap());
    assert_eq!(poll_once(first.as_mut(), &old), Poll::Pending);
    assert_eq!(CELL.wait().err(), Some(WaitersFull));
    drop(first);
    assert_eq!((old.live(), CELL.waiters()), (0, 0), "slot and waker freed");
    let mut second = Box::pin(CELL.wait_ref().unwrap());
    assert_eq!(poll_once(second.as_mut(), &new), Poll::Pending);
    CELL.resolve(8).unwrap();
    assert_eq!((old.wakes(), new.wakes()), (0, 1));
    assert_eq!(poll_once(second.as_mut(), &new), Poll::Ready(Ok(&8)));
    assert_eq!((new.live(), CELL.waiters()), (0, 0));
}

/// Racing threads claim a slot, register, and drop their wait (timeouts),
/// over and over, while one waiter blocks and the main thread settles: the
/// blocked waiter is never lost, every churned waker is released, and
/// every slot is free at the end.
#[test]
fn shared_cell_slot_churn_on_threads_while_settling() {
    let (rounds, iters) = if cfg!(miri) { (1, 4) } else { (50, 200) };
    for round in 0..rounds {
        let cell = &SharedCell::<u32, (), 4>::new();
        let blocked = cell.wait().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(move || block_on(blocked));
            let churners: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(move || {
                        let t = WakeCounter::new();
                        for _ in 0..iters {
                            let mut w = pin!(cell.wait().expect("3 of 4 slots at most"));
                            if let Poll::Ready(v) = poll_once(w.as_mut(), &t) {
                                assert_eq!(v, Ok(round));
                            }
                        }
                        t // counted once the settler is done too
                    })
                })
                .collect();
            std::thread::yield_now();
            cell.resolve(round).unwrap();
            assert_eq!(waiter.join().unwrap(), Ok(round));
            for c in churners {
                let t = c.join().unwrap();
                assert_eq!(t.live(), 0, "no churned waker leaked");
            }
        });
        assert_eq!(cell.waiters(), 0);
    }
}
