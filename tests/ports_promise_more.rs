//! A completeness pass over the upstream test suites the promise side
//! imitates: every test of faern/oneshot's `tests/` directory,
//! rust-lang/futures-rs `futures/tests/future_shared.rs`,
//! `futures/tests/oneshot.rs`, `futures-channel/tests/oneshot.rs`, and
//! tokio-rs/tokio `tokio/tests/sync_oneshot.rs`, at the newest version
//! stored for each file, classified as covered (by which test), not
//! applicable (why), or ported here.
//!
//! Versions read: faern/oneshot `tests/sync.rs` @079cfff, `tests/async.rs`
//! @33cb022, `tests/future.rs` @33cb022, `tests/loom.rs` @26066b2,
//! `tests/miri.rs` @079cfff, `tests/raw.rs` @94d9c8a, `tests/assert_mem.rs`
//! @3567896, `tests/all_tests.rs` @121c93b (the crate's first test file,
//! since split into sync.rs: each of its tests has a sync.rs namesake and
//! is classified there, see the last rows); futures-rs
//! `futures/tests/future_shared.rs` @2a0fb5f (the newest stored: with
//! `ptr_hash`), `futures/tests/oneshot.rs` @8f828b2,
//! `futures-channel/tests/oneshot.rs` @8fc1ef1; tokio
//! `tokio/tests/sync_oneshot.rs` @0931406 (with the `is_empty` tests).
//! Not read: futures-rs `futures/tests/future_lazy.rs` (no such file is
//! stored for futures-rs; `future::lazy` is only used inside
//! `future_shared.rs` `drop_in_poll`), `future_try_join_all.rs` (no
//! counterpart: deferral has no join combinator), and
//! `future_try_flatten_stream.rs` (not relevant).
//!
//! Idioms as in `tests/ports_promise.rs`: oneshot `Sender` ≈ `Resolver`
//! (of a `PromiseCell`, `PromiseCell::lazy` or `detached` promise),
//! `Receiver` ≈ the promise; a dropped sender ≈ a dropped resolver →
//! `PromiseError::Abandoned`; `Sender::is_closed` / `is_canceled` ≈
//! `Resolver::is_closed`; `Receiver::has_message` / `is_closed` /
//! `is_empty` ≈ `DeferredPromise::state()` (which reads the cell without
//! polling: `Fulfilled` once a value waits, `Rejected` once the resolver
//! was dropped); `try_recv` ≈ `state()` or one poll with a no-op waker.
//! Blocking receives (`recv`, `recv_ref`) ≈ `block_on`.
//!
//! Key: C = covered by an existing test (`pp::` = tests/ports_promise.rs,
//! `pc::` = tests/ports_cells.rs, `pr::` = tests/promise.rs, `lp::` =
//! tests/loom_promise.rs, run with `--cfg loom`); N/A = not applicable,
//! with the reason; P = ported here (test name).
//!
//! Counts (upstream tests, C / N/A / P): oneshot sync.rs 23 = 15 / 6 / 2;
//! async.rs 9 = 7 / 0 / 2; future.rs 1 = 1 / 0 / 0; loom.rs 9 = 5 / 0 / 4;
//! miri.rs 16 = 14 / 0 / 2; raw.rs 3 = 0 / 3 / 0; assert_mem.rs 1 =
//! 0 / 1 / 0; all_tests.rs 15 = 10 / 5 / 0; futures-rs future_shared.rs
//! 13 = 13 / 0 / 0; futures/tests/oneshot.rs 6 = 6 / 0 / 0;
//! futures-channel/tests/oneshot.rs 8 = 2 / 6 / 0; tokio sync_oneshot.rs
//! 20 = 10 / 8 / 2. In all 124 upstream tests: C 83, N/A 29, P 12, ported
//! by 10 tests here (some ports cover more than one upstream test, and
//! every port runs each mode the upstream test has no cover for), plus
//! `drops_tasks_lazy_cell`, a lazy-cell leg of a covered test. No port
//! found a bug.
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | **faern/oneshot tests/sync.rs** | | |
//! | send_before_try_recv | C | pc::oneshot_send_before_try_recv_cell (a second take: pr::poll_after_completion_panics_in_cell_mode) |
//! | send_before_recv | P | send_before_recv_values_of_every_size (`()`, `u8`, `u64`, `[u8; 4096]`; cell, lazy cell, detached) |
//! | send_before_recv_ref | C | pr::resolve_before_the_first_poll_is_returned_by_it; the second receive: try_recv_after_completion_differs |
//! | send_before_recv_timeout | N/A | no blocking receive with a timeout (a runtime's timeout wraps the promise); the value part is send_before_recv |
//! | send_then_drop_receiver | C | pp::message_in_channel_dropped_on_receiver_drop_cell |
//! | send_with_dropped_receiver | C | pp::oneshot_drop_rx_cell_returns_the_value (and _detached, _lazy_cell) |
//! | try_recv_with_dropped_sender | C | pc::oneshot_dropped_sender_then_first_poll_is_abandoned_cell (the lazy modes, waker untouched: send_then_poll_touches_no_waker) |
//! | recv_with_dropped_sender | C | pc::oneshot_dropped_sender_then_first_poll_is_abandoned_cell; pr::abandoned_resolver_is_a_typed_outcome_in_every_mode |
//! | recv_before_send | C | pr::resolve_from_another_thread_while_polling; pp::oneshot_send_from_a_thread_detached |
//! | recv_timeout_before_send | N/A | timeout receive (as above); the value part is recv_before_send |
//! | recv_before_send_then_drop_sender | C | pp::oneshot_drop_tx_on_another_thread_detached; tx_rx_thread_matrix (cell) |
//! | recv_timeout_before_send_then_drop_sender | N/A | timeout receive; the rest is recv_before_send_then_drop_sender |
//! | try_recv | C | pr::only_the_latest_waker_is_woken (`state()` is `Pending` while nothing was sent) |
//! | try_recv_then_drop_receiver | C | lp::cell_resolve_vs_poll_then_drop; pp::cancel_sends_race_accounts_for_every_value |
//! | recv_deadline_and_timeout_no_time | N/A | no deadline / timeout receive |
//! | recv_deadline_time_should_elapse | N/A | no deadline receive |
//! | recv_timeout_time_should_elapse | N/A | no timeout receive |
//! | non_send_type_can_be_used_on_same_thread | C | pc::oneshot_non_send_type_can_be_used_on_same_thread |
//! | message_in_channel_dropped_on_receiver_drop | C | pp::message_in_channel_dropped_on_receiver_drop_cell / _detached |
//! | send_error_drops_message_correctly | C | pp::send_error_drops_message_correctly |
//! | send_error_drops_message_correctly_on_into_inner | C | pp::send_error_drops_message_correctly |
//! | dropping_receiver_disconnects_sender | C | pp::is_canceled_after_the_promise_is_dropped_detached_and_lazy (+ the `Resolver::is_closed` doc test for the cell) |
//! | dropping_sender_disconnects_receiver | P | dropping_sender_disconnects_receiver_detached_and_lazy (cell: pc::oneshot_dropped_sender_then_first_poll_is_abandoned_cell) |
//! | **faern/oneshot tests/async.rs** | | |
//! | send_before_await_tokio | C | pr::resolve_before_the_first_poll_is_returned_by_it |
//! | send_before_await_async_std | C | same (the runtime does not matter: a counting waker) |
//! | await_with_dropped_sender_tokio | C | pc::oneshot_dropped_sender_then_first_poll_is_abandoned_cell |
//! | await_with_dropped_sender_async_std | C | same |
//! | await_before_send_tokio | P | await_before_send_value_is_dropped_once_by_the_receiver |
//! | await_before_send_async_std | P | same test |
//! | await_before_send_then_drop_sender_tokio | C | pp::close_tx_wakes_and_abandons_detached_and_lazy; pp::oneshot_drop_tx_on_another_thread_detached |
//! | await_before_send_then_drop_sender_async_std | C | same |
//! | poll_receiver_then_drop_it | C | pp::poll_receiver_then_drop_it_cell_and_detached |
//! | **faern/oneshot tests/future.rs** | | |
//! | multiple_receiver_polls_keeps_only_latest_waker | C | pr::only_the_latest_waker_is_woken; pp::receiver_changes_task_detached / _lazy_cell |
//! | **faern/oneshot tests/raw.rs** | | |
//! | test_raw_sender | N/A | no `into_raw`/`from_raw`: a resolver is not one pointer (a cell resolver is a `&'static` + generation; a `static` cell needs no raw round trip) |
//! | test_raw_receiver | N/A | same |
//! | test_raw_sender_and_receiver | N/A | same |
//! | **faern/oneshot tests/assert_mem.rs** | | |
//! | channel_endpoints_single_pointer | N/A | no single-pointer promise: the sizes deferral documents are checked by pr::sizes ("the promise is its future plus one byte") |
//! | **faern/oneshot tests/loom.rs** | | |
//! | try_recv | C | lp::cell_resolve_vs_poll (a poll with a waker that is never woken ≈ try_recv) |
//! | send_recv_different_threads | C | pr::resolve_from_another_thread_while_polling; lp::cell_resolve_vs_poll |
//! | recv_drop_sender_different_threads | C | lp::cell_abandon_vs_poll |
//! | async_recv | C | pr::resolve_from_another_thread_while_polling |
//! | send_then_poll | P | send_then_poll_touches_no_waker (cell: clones only in pr::resolve_before_the_first_poll_is_returned_by_it) |
//! | poll_then_send | P | poll_then_send_exact_waker_counts |
//! | poll_with_different_wakers | C | pr::only_the_latest_waker_is_woken; pp::receiver_changes_task_detached / _lazy_cell |
//! | poll_then_try_recv | P | poll_then_try_recv_keeps_the_registration (cell: pr::only_the_latest_waker_is_woken) |
//! | poll_then_try_recv_while_sending | P | poll_then_spin_on_state_while_sending |
//! | **faern/oneshot tests/miri.rs** | | |
//! | tx_send_rx_drop | C | lp::cell_resolve_vs_promise_drop; also tx_rx_thread_matrix |
//! | tx_send_rx_recv_done | C | lp::cell_resolve_vs_poll; tx_rx_thread_matrix |
//! | tx_send_rx_recv_ref | C | as tx_send_rx_recv_done (`recv_ref` ≈ `block_on(&mut promise)`) |
//! | tx_send_rx_recv_timeout | C | as tx_send_rx_recv_done (the timeout never fires there) |
//! | tx_send_rx_try_recv_to_completion | C | lp::cell_resolve_vs_poll; tx_rx_thread_matrix (spin-poll) |
//! | tx_send_rx_try_recv_then_drop | C | lp::cell_resolve_vs_poll_then_drop |
//! | tx_send_rx_poll_to_completion | C | lp::cell_resolve_vs_poll |
//! | tx_send_rx_poll_then_drop | C | lp::cell_resolve_vs_poll_then_drop |
//! | tx_drop_rx_drop | C | lp::cell_resolver_drop_vs_promise_drop |
//! | tx_drop_rx_recv_done | C | lp::cell_abandon_vs_poll |
//! | tx_drop_rx_recv_ref | C | lp::cell_abandon_vs_poll |
//! | tx_drop_rx_recv_timeout | C | lp::cell_abandon_vs_poll |
//! | tx_drop_rx_try_recv_to_completion | C | lp::cell_abandon_vs_poll |
//! | tx_drop_rx_try_recv_then_drop | P | tx_rx_thread_matrix (no loom model drops the resolver against a poll-then-drop) |
//! | tx_drop_rx_poll_to_completion | C | lp::cell_abandon_vs_poll |
//! | tx_drop_rx_poll_then_drop | P | tx_rx_thread_matrix |
//! | **futures-rs futures/tests/future_shared.rs** | | |
//! | one_thread | C | pp::shared_wait_on_multiple_threads |
//! | two_threads | C | pp::shared_wait_on_multiple_threads |
//! | many_threads | C | pp::shared_wait_on_multiple_threads (64 threads) |
//! | drop_on_one_task_ok | C | pp::shared_drop_on_one_task_ok |
//! | drop_in_poll | C | pp::shared_drop_in_poll |
//! | peek | C | pp::shared_peek |
//! | downgrade | C | pp::shared_downgrade |
//! | ptr_eq | C | pp::shared_ptr_eq (symmetry included); its `ptr_hash` half is N/A: `SharedPromise` has no `ptr_hash` |
//! | dont_clone_in_single_owner_shared_future | C | pp::shared_dont_clone_in_single_owner_shared_future |
//! | dont_do_unnecessary_clones_on_output | C | pp::shared_dont_do_unnecessary_clones_on_output |
//! | shared_future_that_wakes_itself_until_pending_is_returned | C | pp::shared_future_that_wakes_itself_until_pending_is_returned |
//! | panic_while_poll | C | pp::shared_panic_while_poll |
//! | poll_while_panic | C | pp::shared_poll_while_panic |
//! | **futures-rs futures/tests/oneshot.rs** | | |
//! | oneshot_send1 | C | pp::oneshot_send_from_a_thread_detached |
//! | oneshot_send2 | C | pr::resolve_before_the_first_poll_is_returned_by_it (sent before the receiver runs) |
//! | oneshot_send3 | C | pp::oneshot_send_from_a_thread_detached (delay 5 ms) |
//! | oneshot_drop_tx1 | C | pc::oneshot_dropped_sender_then_first_poll_is_abandoned_cell |
//! | oneshot_drop_tx2 | C | pp::oneshot_drop_tx_on_another_thread_detached |
//! | oneshot_drop_rx | C | pp::oneshot_drop_rx_cell_returns_the_value |
//! | **futures-rs futures-channel/tests/oneshot.rs** | | |
//! | smoke_poll | N/A | `Sender::poll_cancel`: a resolver has no waker to be told of the promise's drop (`is_closed` is a check, covered by pp::is_canceled_after_the_promise_is_dropped_detached_and_lazy) |
//! | cancel_notifies | N/A | `poll_cancel` wake-up (as smoke_poll) |
//! | cancel_lots | N/A | `poll_cancel` wake-up, 20000 rounds |
//! | cancel_after_sender_drop_doesnt_notify | N/A | the sender's `poll_cancel` waker |
//! | close | N/A | `Receiver::close` without dropping: deferral's receiver closes by being dropped (pp::close_rx_never_polled_cell) |
//! | close_wakes | N/A | `Receiver::close` waking `poll_cancel` |
//! | is_canceled | C | pp::is_canceled_after_the_promise_is_dropped_detached_and_lazy |
//! | cancel_sends | C | pp::cancel_sends_race_accounts_for_every_value |
//! | **tokio tokio/tests/sync_oneshot.rs** | | |
//! | send_recv | C | pp::send_recv_detached; pr::only_the_latest_waker_is_woken (cell) |
//! | async_send_recv | C | pr::resolve_before_the_first_poll_is_returned_by_it |
//! | close_tx | C | pp::close_tx_wakes_and_abandons_detached_and_lazy; pr::abandoned_resolver_is_a_typed_outcome_in_every_mode |
//! | close_rx | C | pp::close_rx_never_polled_cell, pp::is_canceled_after_the_promise_is_dropped_detached_and_lazy (its `poll_closed` half: N/A, no sender-side wait) |
//! | async_rx_closed | N/A | `Sender::closed().await`: no sender-side wait |
//! | explicit_close_poll | N/A | `Receiver::close` (the receiver closes by being dropped) |
//! | explicit_close_try_recv | N/A | `Receiver::close` |
//! | close_try_recv_poll | N/A | `Receiver::close` then a poll that panics; deferral's one misuse panic is polling after completion (try_recv_after_completion_differs) |
//! | close_after_recv | N/A | `Receiver::close` |
//! | try_recv_after_completion | C | pc::oneshot_send_before_try_recv_cell (`state()` after the take), pr::poll_after_completion_panics_in_cell_mode |
//! | try_recv_after_completion_await | P | try_recv_after_completion_differs (detached and lazy cell) |
//! | drops_tasks | C | pp::drops_tasks_cell_and_detached (its `poll_closed` half: N/A); a lazy-cell leg added here: drops_tasks_lazy_cell |
//! | receiver_changes_task | C | pp::receiver_changes_task_detached / _lazy_cell; pr::only_the_latest_waker_is_woken |
//! | sender_changes_task | N/A | `poll_closed` on two tasks: no sender-side wait |
//! | receiver_is_closed_send | P | receiver_is_closed_after_send_detached_and_lazy (cell: pr::resolve_before_the_first_poll_is_returned_by_it) |
//! | receiver_is_closed_drop | C | pc::oneshot_dropped_sender_then_first_poll_is_abandoned_cell; other modes here: dropping_sender_disconnects_receiver_detached_and_lazy |
//! | receiver_is_closed_rx_close | N/A | `Receiver::close` |
//! | receiver_is_empty_send | C | pc::oneshot_send_before_try_recv_cell (`state()` Unstarted → Fulfilled; after the take `is_terminated`) |
//! | receiver_is_empty_drop | C | pc::oneshot_dropped_sender_then_first_poll_is_abandoned_cell |
//! | receiver_is_empty_rx_close | N/A | `Receiver::close` |
//! | **faern/oneshot tests/all_tests.rs (first layout)** | | |
//! | send_before_recv_ref | C | see sync.rs send_before_recv_ref |
//! | send_before_recv | C | send_before_recv_values_of_every_size |
//! | send_before_try_recv | C | see sync.rs |
//! | send_before_recv_timeout | N/A | timeout receive |
//! | send_then_drop_receiver | C | see sync.rs |
//! | send_with_dropped_receiver | C | see sync.rs |
//! | recv_with_dropped_sender | C | see sync.rs |
//! | try_recv_with_dropped_sender | C | see sync.rs |
//! | recv_before_send | C | see sync.rs |
//! | recv_timeout_before_send | N/A | timeout receive (see sync.rs) |
//! | recv_before_send_then_drop_sender | C | see sync.rs |
//! | recv_timeout_before_send_then_drop_sender | N/A | timeout receive (see sync.rs) |
//! | try_recv | C | see sync.rs |
//! | recv_deadline_and_timeout_no_time / _time_should_elapse | N/A | deadline receive (two tests, one row) |
#![cfg(feature = "std")]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use deferral::promise::{PromiseState, Refusal};
use deferral::{DeferredPromise, PromiseCell, PromiseError, Resolver};
use futures_core::future::FusedFuture;
use support::drops::Tracked;
use support::{DropCounter, WakeCounter, block_on};

type Out<T> = Result<T, PromiseError<()>>;
type Boxed<T> = Pin<Box<dyn FusedPromise<T>>>;

/// A promise of any mode, boxed: a fused future with a `state()`.
trait FusedPromise<T>: FusedFuture<Output = Out<T>> + Send {
    fn state(&self) -> PromiseState;
}

impl<T, F> FusedPromise<T> for DeferredPromise<T, PromiseError<()>, F>
where
    F: deferral::promise::PromiseFuture<T, PromiseError<()>> + Send,
    T: Send,
{
    fn state(&self) -> PromiseState {
        DeferredPromise::state(self)
    }
}

type Slot<T> = Arc<Mutex<Option<Resolver<'static, T, ()>>>>;

/// How the promise/resolver pair of a test is made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `PromiseCell::promise` (a leaked, per-call cell).
    Cell,
    /// `PromiseCell::lazy`, the executor stashing its resolver.
    LazyCell,
    /// `DeferredPromise::detached`, the executor stashing its resolver.
    Detached,
}

const MODES: [Mode; 3] = [Mode::Cell, Mode::LazyCell, Mode::Detached];

/// A fresh cell for one pair (leaked: the tests make few of them). Kept
/// reachable from a `static`, as a `static` cell would be, so that Miri's
/// leak check (which ignores memory reachable from statics) does not count
/// it.
fn leak_cell<T: Send + 'static>() -> &'static PromiseCell<T, ()> {
    static KEPT: Mutex<Vec<&'static (dyn std::any::Any + Send + Sync)>> = Mutex::new(Vec::new());
    let cell: &'static PromiseCell<T, ()> = Box::leak(Box::new(PromiseCell::new()));
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(cell);
    cell
}

/// A pair of `mode`. For the lazy modes the resolver exists only once the
/// promise was polled: `None` then, and `resolver_after_poll` takes it.
fn pair<T: Send + 'static>(mode: Mode) -> (Boxed<T>, Option<Resolver<'static, T, ()>>, Slot<T>) {
    let slot: Slot<T> = Arc::new(Mutex::new(None));
    let s = slot.clone();
    match mode {
        Mode::Cell => {
            let (p, r) = leak_cell::<T>().promise().unwrap();
            (Box::pin(p), Some(r), slot)
        }
        Mode::LazyCell => {
            let p = leak_cell::<T>()
                .lazy(move |r| *s.lock().unwrap() = Some(r))
                .unwrap();
            (Box::pin(p), None, slot)
        }
        Mode::Detached => {
            let p = DeferredPromise::<T, PromiseError<()>>::detached(move |r| {
                *s.lock().unwrap() = Some(r);
            });
            (Box::pin(p), None, slot)
        }
    }
}

fn resolver_after_poll<T>(slot: &Slot<T>) -> Resolver<'static, T, ()> {
    slot.lock()
        .unwrap()
        .take()
        .expect("the first poll ran the executor")
}

/// Polls once with the given waker (the caller keeps it, as the upstream
/// tests keep their `Context`).
fn poll_with<F: Future + ?Sized>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// A pair of `mode` polled once (pending) with a throwaway waker when the
/// resolver only exists after a poll, so every mode hands a resolver back.
fn started_pair<T: Send + 'static>(mode: Mode) -> (Boxed<T>, Resolver<'static, T, ()>) {
    let (mut p, r, slot) = pair::<T>(mode);
    match r {
        Some(r) => (p, r),
        None => {
            assert!(poll_with(p.as_mut(), Waker::noop()).is_pending());
            (p, resolver_after_poll(&slot))
        }
    }
}

// ====================================================================
// faern/oneshot tests/sync.rs
// ====================================================================

fn send_before_recv_one<T>(value: T)
where
    T: Clone + PartialEq + std::fmt::Debug + Send + 'static,
{
    for mode in MODES {
        let expected = value.clone();
        let p: Boxed<T> = match mode {
            Mode::Cell => {
                let (p, r) = leak_cell::<T>().promise().unwrap();
                assert!(r.resolve(value.clone()).is_ok());
                Box::pin(p)
            }
            // The lazy modes settle inside their executor, at the first poll.
            Mode::LazyCell => {
                let v = value.clone();
                Box::pin(leak_cell::<T>().lazy(move |r| r.resolve(v)).unwrap())
            }
            Mode::Detached => {
                let v = value.clone();
                Box::pin(DeferredPromise::<T, PromiseError<()>>::detached(move |r| {
                    r.resolve(v)
                }))
            }
        };
        assert_eq!(block_on(p), Ok(expected), "{mode:?}");
    }
}

/// faern/oneshot `tests/sync.rs` `send_before_recv` (and all_tests.rs's):
/// a value sent before the blocking receive is received, for a
/// zero-sized, a one-byte, an eight-byte and a 4096-byte value; in every
/// resolver mode.
#[test]
fn send_before_recv_values_of_every_size() {
    send_before_recv_one(());
    send_before_recv_one(19u8);
    send_before_recv_one(21u64);
    send_before_recv_one([0b1010_1010u8; 4096]);
}

/// faern/oneshot `tests/sync.rs` `dropping_sender_disconnects_receiver`
/// and tokio-rs/tokio `tokio/tests/sync_oneshot.rs`
/// `receiver_is_closed_drop`, for the modes whose resolver exists only
/// after the first poll: while the resolver lives the promise is
/// `Pending(Started)` ("not closed"); once it is dropped, `state()` reads
/// `Rejected` without a poll ("closed"), and the next poll is
/// `Abandoned`.
#[test]
fn dropping_sender_disconnects_receiver_detached_and_lazy() {
    for mode in [Mode::LazyCell, Mode::Detached] {
        let (mut p, r) = started_pair::<()>(mode);
        assert!(!p.state().is_settled(), "{mode:?}: !receiver.is_closed()");
        assert!(!r.is_closed(), "{mode:?}: !sender.is_closed()");
        drop(r);
        assert_eq!(p.state(), PromiseState::Rejected, "{mode:?}: is_closed()");
        assert!(!p.is_terminated(), "{mode:?}: nothing was taken yet");
        let w = WakeCounter::new();
        assert_eq!(
            poll_with(p.as_mut(), &w.waker()),
            Poll::Ready(Err(PromiseError::Abandoned)),
            "{mode:?}"
        );
        assert_eq!(w.clones(), 0, "{mode:?}: no waker stored once closed");
    }
}

/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs` `receiver_is_closed_send`
/// (and faern/oneshot `send_before_try_recv`'s `has_message()`), for the
/// modes whose resolver exists only after the first poll: before the
/// send `state()` is pending; after it, `Fulfilled` without a poll; the
/// poll then takes the value and the state stays `Fulfilled`.
#[test]
fn receiver_is_closed_after_send_detached_and_lazy() {
    for mode in [Mode::LazyCell, Mode::Detached] {
        let (mut p, r) = started_pair::<i32>(mode);
        assert!(
            !p.state().is_settled(),
            "{mode:?}: not closed before the send"
        );
        r.resolve(17).unwrap();
        assert_eq!(p.state(), PromiseState::Fulfilled, "{mode:?}: closed after");
        assert!(!r.is_closed(), "{mode:?}: the value is not taken yet");
        let w = WakeCounter::new();
        assert_eq!(poll_with(p.as_mut(), &w.waker()), Poll::Ready(Ok(17)));
        assert_eq!(p.state(), PromiseState::Fulfilled, "{mode:?}");
        assert!(p.is_terminated());
        assert!(r.is_closed(), "{mode:?}: the promise took it");
    }
}

// ====================================================================
// faern/oneshot tests/async.rs
// ====================================================================

/// faern/oneshot `tests/async.rs` `await_before_send_tokio` /
/// `await_before_send_async_std`: the receiver waits first; another task
/// (a thread here) sends a drop-counted value 10 ms later. The value is
/// not dropped on the way: only when the receiver drops what it got. In
/// every mode.
#[test]
fn await_before_send_value_is_dropped_once_by_the_receiver() {
    for mode in MODES {
        let counter = DropCounter::new();
        let message = counter.tracked();
        let (p, r, slot) = pair::<Tracked>(mode);
        let sender = thread::spawn(move || {
            let r = r.unwrap_or_else(|| {
                loop {
                    // The lazy modes: wait until the receiver's first poll ran
                    // the executor.
                    if let Some(r) = slot.lock().unwrap().take() {
                        break r;
                    }
                    thread::yield_now();
                }
            });
            thread::sleep(Duration::from_millis(10));
            r.resolve(message).map_err(|e| e.reason())
        });
        let returned = block_on(p).unwrap();
        assert_eq!(counter.get(), 0, "{mode:?}: not dropped in transit");
        drop(returned);
        assert_eq!(counter.get(), 1, "{mode:?}");
        assert_eq!(sender.join().unwrap(), Ok(()), "{mode:?}");
        assert_eq!(counter.get(), 1, "{mode:?}: dropped once");
    }
}

// ====================================================================
// faern/oneshot tests/loom.rs (run here with real threads or none)
// ====================================================================

/// faern/oneshot `tests/loom.rs` `send_then_poll`: a value sent before the
/// first poll is returned by it, and the waker is neither cloned, woken
/// nor dropped. For the lazy modes the executor sends inside the first
/// poll, before the promise would register.
#[test]
fn send_then_poll_touches_no_waker() {
    for mode in MODES {
        let mut p: Boxed<u128> = match mode {
            Mode::Cell => {
                let (p, r) = leak_cell::<u128>().promise().unwrap();
                r.resolve(1234).unwrap();
                Box::pin(p)
            }
            Mode::LazyCell => Box::pin(leak_cell::<u128>().lazy(|r| r.resolve(1234)).unwrap()),
            Mode::Detached => Box::pin(DeferredPromise::<u128, PromiseError<()>>::detached(|r| {
                r.resolve(1234)
            })),
        };
        let w = WakeCounter::new();
        let waker = w.waker();
        assert_eq!(poll_with(p.as_mut(), &waker), Poll::Ready(Ok(1234)));
        assert_eq!(
            (w.clones(), w.drops(), w.wakes()),
            (0, 0, 0),
            "{mode:?}: clone, drop, wake counts"
        );
    }
    // The sender dropped before the first poll (faern/oneshot `tests/sync.rs`
    // `try_recv_with_dropped_sender`), the lazy modes dropping it inside
    // their executor: `Abandoned` at once, the waker untouched.
    for mode in MODES {
        let mut p: Boxed<u128> = match mode {
            Mode::Cell => {
                let (p, r) = leak_cell::<u128>().promise().unwrap();
                drop(r);
                Box::pin(p)
            }
            Mode::LazyCell => Box::pin(leak_cell::<u128>().lazy(drop).unwrap()),
            Mode::Detached => Box::pin(DeferredPromise::<u128, PromiseError<()>>::detached(drop)),
        };
        let w = WakeCounter::new();
        let waker = w.waker();
        assert_eq!(
            poll_with(p.as_mut(), &waker),
            Poll::Ready(Err(PromiseError::Abandoned)),
            "{mode:?}"
        );
        assert_eq!((w.clones(), w.drops(), w.wakes()), (0, 0, 0), "{mode:?}");
    }
}

/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs` `drops_tasks` (receiver
/// half), the lazy-cell leg (cell and detached: pp::drops_tasks_cell_and_detached):
/// a pending promise, then both halves dropped, in either order: no
/// waker is kept and the cell is free.
#[test]
fn drops_tasks_lazy_cell() {
    for resolver_first in [true, false] {
        let cell = leak_cell::<i32>();
        let slot: Slot<i32> = Arc::new(Mutex::new(None));
        let s = slot.clone();
        let mut p = Box::pin(cell.lazy(move |r| *s.lock().unwrap() = Some(r)).unwrap());
        let w = WakeCounter::new();
        assert_eq!(poll_with(p.as_mut(), &w.waker()), Poll::Pending);
        let r = resolver_after_poll(&slot);
        if resolver_first {
            drop(r);
            drop(p);
        } else {
            drop(p);
            drop(r);
        }
        assert_eq!(w.live(), 0, "resolver first: {resolver_first}");
        assert!(cell.is_free(), "resolver first: {resolver_first}");
    }
}

/// faern/oneshot `tests/loom.rs` `poll_then_send`, with its exact counts:
/// the pending poll clones the waker once; the send wakes it once and
/// lets it go; the ready poll clones nothing more. In every mode.
#[test]
fn poll_then_send_exact_waker_counts() {
    for mode in MODES {
        let (mut p, r, slot) = pair::<u128>(mode);
        let w = WakeCounter::new();
        let waker = w.waker();
        assert_eq!(poll_with(p.as_mut(), &waker), Poll::Pending);
        assert_eq!((w.clones(), w.drops(), w.wakes()), (1, 0, 0), "{mode:?}");
        let r = r.unwrap_or_else(|| resolver_after_poll(&slot));
        r.resolve(1234).unwrap();
        assert_eq!((w.clones(), w.drops(), w.wakes()), (1, 1, 1), "{mode:?}");
        assert_eq!(poll_with(p.as_mut(), &waker), Poll::Ready(Ok(1234)));
        assert_eq!((w.clones(), w.drops(), w.wakes()), (1, 1, 1), "{mode:?}");
        drop(waker);
        assert_eq!(w.live(), 0, "{mode:?}: no waker kept");
    }
}

/// faern/oneshot `tests/loom.rs` `poll_then_try_recv`: a pending poll, a
/// `try_recv` (here `state()`, which reads without registering), and a
/// second pending poll with the same task's waker: exactly one waker of
/// the task stays registered (oneshot replaces it by a new clone,
/// deferral keeps the stored one when it `will_wake`: either way one is
/// live besides the task's own), nothing was woken, and the send then
/// wakes it once. Detached and lazy-cell modes (the cell mode is
/// pr::only_the_latest_waker_is_woken).
#[test]
fn poll_then_try_recv_keeps_the_registration() {
    for mode in [Mode::LazyCell, Mode::Detached] {
        let (mut p, r, slot) = pair::<u128>(mode);
        let w = WakeCounter::new();
        let waker = w.waker();
        assert_eq!(poll_with(p.as_mut(), &waker), Poll::Pending);
        assert!(!p.state().is_settled(), "{mode:?}: try_recv() is Empty");
        assert_eq!(poll_with(p.as_mut(), &waker), Poll::Pending);
        assert_eq!(w.live(), 2, "{mode:?}: the task's waker and one registered");
        assert_eq!(w.wakes(), 0, "{mode:?}");
        resolver_after_poll(&slot).resolve(5).unwrap();
        assert!(r.is_none());
        assert_eq!(w.wakes(), 1, "{mode:?}: the registered waker woken once");
        assert_eq!(poll_with(p.as_mut(), &waker), Poll::Ready(Ok(5)));
        drop(waker);
        assert_eq!(w.live(), 0, "{mode:?}");
    }
}

/// faern/oneshot `tests/loom.rs` `poll_then_try_recv_while_sending`: a
/// pending poll registers the task; another thread sends while this one
/// spins on `try_recv` (here `state()`, then one poll): the value arrives,
/// and the registered waker was cloned once, woken once and let go. In
/// every mode.
#[test]
fn poll_then_spin_on_state_while_sending() {
    for mode in MODES {
        let (mut p, r, slot) = pair::<u128>(mode);
        let w = WakeCounter::new();
        let waker = w.waker();
        assert_eq!(poll_with(p.as_mut(), &waker), Poll::Pending);
        assert_eq!((w.clones(), w.drops(), w.wakes()), (1, 0, 0), "{mode:?}");
        let r = r.unwrap_or_else(|| resolver_after_poll(&slot));
        let t = thread::spawn(move || r.resolve(1234).unwrap());
        while !p.state().is_settled() {
            std::hint::spin_loop();
        }
        assert_eq!(p.state(), PromiseState::Fulfilled, "{mode:?}");
        t.join().unwrap();
        assert_eq!((w.clones(), w.drops(), w.wakes()), (1, 1, 1), "{mode:?}");
        assert_eq!(poll_with(p.as_mut(), &waker), Poll::Ready(Ok(1234)));
        assert_eq!((w.clones(), w.drops(), w.wakes()), (1, 1, 1), "{mode:?}");
    }
}

// ====================================================================
// faern/oneshot tests/miri.rs
// ====================================================================

/// What the sending thread does.
#[derive(Clone, Copy, Debug)]
enum Tx {
    Send,
    Drop,
}

/// What the receiving thread does.
#[derive(Clone, Copy, Debug)]
enum Rx {
    /// Drops the promise.
    Drop,
    /// `block_on` (`recv`, `recv_ref`, `recv_timeout`, `.await`).
    BlockOn,
    /// Polls with a no-op waker until ready (`try_recv` / poll to
    /// completion).
    SpinPoll,
    /// Polls once, then drops the promise (`try_recv` / poll, then drop).
    PollOnceThenDrop,
}

fn rx_thread(mut p: Boxed<Tracked>, rx: Rx) -> Option<Out<Tracked>> {
    match rx {
        Rx::Drop => None,
        Rx::BlockOn => Some(block_on(p)),
        Rx::SpinPoll => loop {
            match poll_with(p.as_mut(), Waker::noop()) {
                Poll::Ready(out) => break Some(out),
                Poll::Pending => std::hint::spin_loop(),
            }
        },
        Rx::PollOnceThenDrop => match poll_with(p.as_mut(), Waker::noop()) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        },
    }
}

/// faern/oneshot `tests/miri.rs`, all sixteen tests at once
/// (`tx_{send,drop}_rx_{drop,recv_done,recv_ref,recv_timeout,
/// try_recv_to_completion,try_recv_then_drop,poll_to_completion,
/// poll_then_drop}`): the sender and the receiver on two named threads,
/// every combination, in every mode, many rounds. Whatever the
/// interleaving: a receiver that waits to the end gets the value (or
/// `Abandoned` if the sender was dropped), a send is refused only if the
/// receiver went away (with the value handed back), every value is
/// dropped exactly once, and a cell is free afterwards.
#[test]
fn tx_rx_thread_matrix() {
    let rounds = if cfg!(miri) { 2 } else { 40 };
    let txs = [Tx::Send, Tx::Drop];
    let rxs = [Rx::Drop, Rx::BlockOn, Rx::SpinPoll, Rx::PollOnceThenDrop];
    for mode in MODES {
        for tx in txs {
            for rx in rxs {
                // One cell per combination, reused by its rounds.
                let cell = leak_cell::<Tracked>();
                for round in 0..rounds {
                    let counter = DropCounter::new();
                    let (p, r): (Boxed<Tracked>, _) = match mode {
                        Mode::Cell => {
                            let (p, r) = cell.promise().unwrap();
                            (Box::pin(p), r)
                        }
                        _ => started_pair::<Tracked>(mode),
                    };
                    let value = counter.tracked();
                    let rx_t = thread::Builder::new()
                        .name("rx_thread".into())
                        .spawn(move || rx_thread(p, rx))
                        .unwrap();
                    let tx_t = thread::Builder::new()
                        .name("tx_thread".into())
                        .spawn(move || match tx {
                            Tx::Send => Some(r.resolve(value).map_err(|e| e.reason())),
                            Tx::Drop => {
                                drop(r);
                                drop(value);
                                None
                            }
                        })
                        .unwrap();
                    let got = rx_t.join().unwrap();
                    let sent = tx_t.join().unwrap();
                    let at = format!("{mode:?} {tx:?} {rx:?} round {round}");
                    let waited_to_the_end = matches!(rx, Rx::BlockOn | Rx::SpinPoll);
                    match (tx, &got) {
                        (Tx::Send, Some(Ok(_)))
                        | (Tx::Drop, Some(Err(PromiseError::Abandoned))) => {}
                        (_, None) => assert!(!waited_to_the_end, "{at}: no outcome"),
                        (_, Some(other)) => panic!("{at}: unexpected {other:?}"),
                    }
                    match sent {
                        Some(Ok(())) | None => {}
                        Some(Err(reason)) => {
                            assert!(!waited_to_the_end, "{at}: send refused ({reason:?})");
                            assert_eq!(reason, Refusal::Closed, "{at}");
                        }
                    }
                    drop(got);
                    assert_eq!(counter.get(), 1, "{at}: the value dropped exactly once");
                    if mode == Mode::Cell {
                        assert!(cell.is_free(), "{at}: the cell is free again");
                    }
                }
            }
        }
    }
}

// ====================================================================
// tokio-rs/tokio tokio/tests/sync_oneshot.rs
// ====================================================================

/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs`
/// `try_recv_after_completion_await` (and faern/oneshot `send_before_recv_ref`'s
/// second receive): after the value was taken by a poll, tokio's
/// `try_recv` returns `Err(Closed)` and oneshot's receive errors.
///
/// deferral differs, as documented on `DeferredPromise` ("Polling it
/// again after it returned `Ready` panics with "`DeferredPromise` polled
/// after completion"; `FusedFuture::is_terminated` tells you when that
/// would happen"): the non-consuming check, `state()`, keeps reporting
/// `Fulfilled`, `is_terminated()` is true, and a second poll panics. Here
/// for the detached and lazy-cell modes (the cell mode is
/// pr::poll_after_completion_panics_in_cell_mode).
#[test]
fn try_recv_after_completion_differs() {
    for mode in [Mode::LazyCell, Mode::Detached] {
        let (mut p, r) = started_pair::<i32>(mode);
        r.resolve(17).unwrap();
        let w = WakeCounter::new();
        assert_eq!(poll_with(p.as_mut(), &w.waker()), Poll::Ready(Ok(17)));
        assert_eq!(p.state(), PromiseState::Fulfilled, "{mode:?}");
        assert!(p.is_terminated(), "{mode:?}");
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = poll_with(p.as_mut(), &w.waker());
        }))
        .expect_err("a second poll panics");
        let message = again
            .downcast_ref::<&str>()
            .copied()
            .map(str::to_owned)
            .or_else(|| again.downcast_ref::<String>().cloned());
        assert_eq!(
            message.as_deref(),
            Some("`DeferredPromise` polled after completion"),
            "{mode:?}"
        );
        drop(p);
        assert!(r.is_closed(), "{mode:?}");
    }
}
