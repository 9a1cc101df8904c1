//! Ports of the tests of the libraries the promise API imitates
//! (futures-rs `oneshot` and `Shared`, tokio `sync::oneshot`, faern/oneshot,
//! tc39/test262 `Promise.prototype.then/catch/finally`, embassy-sync
//! `Signal`), translated to `DeferredPromise` / `Resolver` / `PromiseCell` /
//! `SharedPromise` / `SignalCell` / `SharedCell`.
//!
//! Idioms: oneshot `Sender` ≈ `Resolver`, `Receiver` ≈ the promise; a
//! dropped sender ≈ a dropped resolver → `PromiseError::Abandoned`;
//! `Sender::is_canceled`/`is_closed` ≈ `Resolver::is_closed`; `send` after
//! the receiver is gone ≈ `resolve` refused with `Refusal::Closed` and the
//! value handed back. A thrown JS exception ≈ `Err` from the handler, or a
//! panic turned into a rejection by `catch_panics`.
//!
//! Only behaviours not already covered by tests/promise.rs,
//! tests/promise_api.rs, tests/promise_chain.rs, tests/shared_cell.rs,
//! tests/signal_cell.rs, tests/hostile_shared.rs, tests/promise_alloc.rs,
//! tests/promise_adopt.rs are ported here.
#![cfg(feature = "std")]

mod support;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;

use deferral::promise::{Caught, Follow, Refusal, SignalCell};
use deferral::{DeferredPromise, PromiseCell, PromiseError, PromiseExt, Resolver, SharedCell};
use futures_core::future::FusedFuture;
use support::{DropCounter, WakeCounter, block_on, poll_once};

type Stash<T, E> = Arc<Mutex<Option<Resolver<'static, T, E>>>>;

fn stash<T, E>() -> Stash<T, E> {
    Arc::new(Mutex::new(None))
}

fn take<T, E>(s: &Stash<T, E>) -> Resolver<'static, T, E> {
    s.lock()
        .unwrap()
        .take()
        .expect("the executor ran and stored its resolver")
}

/// A `detached` promise whose executor stores its resolver in the stash.
fn detached<T: Send + 'static, E: Send + 'static>(
    s: &Stash<T, E>,
) -> Pin<Box<impl FusedFuture<Output = Result<T, PromiseError<E>>> + use<T, E>>> {
    let s = s.clone();
    Box::pin(DeferredPromise::<T, PromiseError<E>>::detached(move |r| {
        *s.lock().unwrap() = Some(r);
    }))
}

// ====================================================================
// futures-rs oneshot, tokio sync_oneshot, faern/oneshot
// ====================================================================

/// rust-lang/futures-rs `futures/tests/oneshot.rs` `oneshot_drop_rx`;
/// faern/oneshot `tests/sync.rs` `send_with_dropped_receiver`:
/// `send` after the receiver was dropped returns the value.
#[test]
fn oneshot_drop_rx_cell_returns_the_value() {
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    drop(p);
    let e = r.resolve(2).unwrap_err();
    assert_eq!(e.reason(), Refusal::Closed);
    assert_eq!(e.into_value(), Ok(2));
}

/// Same as above, `detached` (the resolver exists once the promise was
/// polled, so it is polled once, then dropped).
#[test]
fn oneshot_drop_rx_detached_returns_the_value() {
    let s = stash::<i32, ()>();
    let mut p = detached(&s);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    let r = take(&s);
    drop(p);
    let e = r.resolve(2).unwrap_err();
    assert_eq!(e.reason(), Refusal::Closed);
    assert_eq!(e.into_value(), Ok(2));
}

/// Same as above, `PromiseCell::lazy`.
#[test]
fn oneshot_drop_rx_lazy_cell_returns_the_value() {
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let s = stash::<i32, ()>();
    let s2 = s.clone();
    let mut p = Box::pin(
        CELL.lazy(move |r| {
            *s2.lock().unwrap() = Some(r);
        })
        .unwrap(),
    );
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    let r = take(&s);
    drop(p);
    let e = r.resolve(2).unwrap_err();
    assert_eq!(e.reason(), Refusal::Closed);
    assert_eq!(e.into_value(), Ok(2));
    drop(r);
    assert!(CELL.is_free());
}

/// rust-lang/futures-rs `futures-channel/tests/oneshot.rs` `is_canceled`;
/// faern/oneshot `tests/sync.rs` `dropping_receiver_disconnects_sender`;
/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs` `close_rx` (`is_closed`):
/// detached and lazy-cell modes (the cell mode is a doc test).
#[test]
fn is_canceled_after_the_promise_is_dropped_detached_and_lazy() {
    let s = stash::<u32, ()>();
    let mut p = detached(&s);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    let r = take(&s);
    assert!(!r.is_closed());
    drop(p);
    assert!(r.is_closed());

    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let s2 = s.clone();
    let mut p = Box::pin(CELL.lazy(move |r| *s2.lock().unwrap() = Some(r)).unwrap());
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    let r = take(&s);
    assert!(!r.is_closed());
    drop(p);
    assert!(r.is_closed());
}

/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs` `close_rx` (first half:
/// `let (tx, _) = channel(); assert_err!(tx.send(1))`): the promise is
/// dropped at once, never polled; the resolver is closed and refuses.
#[test]
fn close_rx_never_polled_cell() {
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let (_, r) = CELL.promise().unwrap();
    assert!(r.is_closed());
    assert_eq!(r.resolve(1).unwrap_err().reason(), Refusal::Closed);
    drop(r);
    assert!(CELL.is_free());
}

/// `Resolver::is_closed` docs: "the promise was dropped (or already took a
/// settlement)"; tokio-rs/tokio `sync_oneshot.rs` `receiver_is_closed_send`
/// is the receiver's side of the same fact.
#[test]
fn is_closed_after_the_promise_took_the_settlement() {
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    r.resolve(17).unwrap();
    assert_eq!(block_on(p), Ok(17));
    assert!(r.is_closed());

    let s = stash::<i32, ()>();
    let mut p = detached(&s);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    let r = take(&s);
    r.resolve(17).unwrap();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Ready(Ok(17)));
    assert!(r.is_closed());
}

/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs` `send_recv`: a pending
/// receiver is woken by the send and then ready. Detached mode.
#[test]
fn send_recv_detached() {
    let s = stash::<i32, ()>();
    let mut p = detached(&s);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    assert!(!p.is_terminated());
    take(&s).resolve(1).unwrap();
    assert_eq!(w.wakes(), 1);
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Ready(Ok(1)));
    assert!(p.is_terminated());
}

/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs` `close_tx`; faern/oneshot
/// `tests/async.rs` `await_before_send_then_drop_sender_*`: a pending
/// receiver is woken by the sender's drop and errors. Detached and
/// lazy-cell modes (cell mode is in tests/promise.rs).
#[test]
fn close_tx_wakes_and_abandons_detached_and_lazy() {
    let s = stash::<i32, ()>();
    let mut p = detached(&s);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    drop(take(&s));
    assert_eq!(w.wakes(), 1, "the resolver's drop wakes the promise");
    assert_eq!(
        poll_once(p.as_mut(), &w),
        Poll::Ready(Err(PromiseError::Abandoned))
    );

    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let s2 = s.clone();
    let mut p = Box::pin(CELL.lazy(move |r| *s2.lock().unwrap() = Some(r)).unwrap());
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    drop(take(&s));
    assert_eq!(w.wakes(), 1);
    assert_eq!(
        poll_once(p.as_mut(), &w),
        Poll::Ready(Err(PromiseError::Abandoned))
    );
    drop(p);
    assert!(CELL.is_free());
}

/// A resolver dropped on another thread while the receiver waits
/// (rust-lang/futures-rs `futures/tests/oneshot.rs` `oneshot_drop_tx2`;
/// faern/oneshot `tests/sync.rs` `recv_before_send_then_drop_sender`).
#[test]
fn oneshot_drop_tx_on_another_thread_detached() {
    let p = DeferredPromise::<i32, PromiseError<()>>::detached(|r| {
        thread::spawn(move || {
            thread::sleep(std::time::Duration::from_millis(10));
            drop(r)
        });
    });
    assert_eq!(block_on(p), Err(PromiseError::Abandoned));
}

/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs` `receiver_changes_task`;
/// faern/oneshot `tests/future.rs`
/// `multiple_receiver_polls_keeps_only_latest_waker`. Detached mode (the
/// cell mode is in tests/promise.rs).
#[test]
fn receiver_changes_task_detached() {
    let s = stash::<i32, ()>();
    let mut p = detached(&s);
    let (t1, t2) = (WakeCounter::new(), WakeCounter::new());
    assert_eq!(poll_once(p.as_mut(), &t1), Poll::Pending);
    assert_eq!((t1.clones(), t1.live()), (1, 1), "one clone kept");
    assert_eq!(poll_once(p.as_mut(), &t2), Poll::Pending);
    assert_eq!((t1.clones(), t1.live()), (1, 0), "the first waker dropped");
    assert_eq!((t2.clones(), t2.live()), (1, 1));
    take(&s).resolve(1).unwrap();
    assert_eq!((t1.wakes(), t2.wakes()), (0, 1));
    assert_eq!(poll_once(p.as_mut(), &t2), Poll::Ready(Ok(1)));
    assert_eq!(t2.live(), 0);
}

/// Same, `PromiseCell::lazy`.
#[test]
fn receiver_changes_task_lazy_cell() {
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let s = stash::<i32, ()>();
    let s2 = s.clone();
    let mut p = Box::pin(CELL.lazy(move |r| *s2.lock().unwrap() = Some(r)).unwrap());
    let (t1, t2) = (WakeCounter::new(), WakeCounter::new());
    assert_eq!(poll_once(p.as_mut(), &t1), Poll::Pending);
    assert_eq!(poll_once(p.as_mut(), &t2), Poll::Pending);
    assert_eq!((t1.clones(), t1.live()), (1, 0));
    take(&s).resolve(1).unwrap();
    assert_eq!((t1.wakes(), t2.wakes()), (0, 1));
    assert_eq!(poll_once(p.as_mut(), &t2), Poll::Ready(Ok(1)));
    assert_eq!(t2.live(), 0);
}

/// tokio-rs/tokio `tokio/tests/sync_oneshot.rs` `drops_tasks`: a pending
/// receiver, then both halves dropped: no waker is kept.
#[test]
fn drops_tasks_cell_and_detached() {
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let mut p = Box::pin(p);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    drop(r);
    drop(p);
    assert_eq!(w.live(), 0, "cell: resolver dropped first");
    assert!(CELL.is_free());

    let (p, r) = CELL.promise().unwrap();
    let mut p = Box::pin(p);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    drop(p);
    assert_eq!(w.live(), 0, "cell: promise dropped first");
    drop(r);
    assert!(CELL.is_free());

    let s = stash::<i32, ()>();
    let mut p = detached(&s);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    let r = take(&s);
    drop(p);
    assert_eq!(w.live(), 0, "detached: promise dropped first");
    drop(r);

    let mut p = detached(&s);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    drop(take(&s));
    drop(p);
    assert_eq!(w.live(), 0, "detached: resolver dropped first");
}

/// faern/oneshot `tests/sync.rs` `message_in_channel_dropped_on_receiver_drop`:
/// a value sent but never received is dropped when the receiver is.
#[test]
fn message_in_channel_dropped_on_receiver_drop_cell() {
    static CELL: PromiseCell<support::drops::Tracked, ()> = PromiseCell::new();
    let counter = DropCounter::new();
    let (p, r) = CELL.promise().unwrap();
    r.resolve(counter.tracked()).unwrap();
    assert_eq!(counter.get(), 0);
    drop(p);
    assert_eq!(counter.get(), 1, "dropping the promise dropped the value");
    drop(r);
    assert_eq!(counter.get(), 1);
    assert!(CELL.is_free());
}

/// Same, detached (the promise polled once so that the resolver exists).
#[test]
fn message_in_channel_dropped_on_receiver_drop_detached() {
    let counter = DropCounter::new();
    let s = stash::<support::drops::Tracked, ()>();
    let mut p = detached(&s);
    let w = WakeCounter::new();
    assert!(poll_once(p.as_mut(), &w).is_pending());
    let r = take(&s);
    r.resolve(counter.tracked()).unwrap();
    assert_eq!(counter.get(), 0);
    drop(p);
    assert_eq!(counter.get(), 1, "dropping the promise dropped the value");
    drop(r);
    assert_eq!(counter.get(), 1);
}

/// faern/oneshot `tests/sync.rs` `send_error_drops_message_correctly` and
/// `send_error_drops_message_correctly_on_into_inner`.
#[test]
fn send_error_drops_message_correctly() {
    static CELL: PromiseCell<support::drops::Tracked, ()> = PromiseCell::new();
    let counter = DropCounter::new();
    let (p, r) = CELL.promise().unwrap();
    drop(p);
    let e = r.resolve(counter.tracked()).unwrap_err();
    assert_eq!(counter.get(), 0);
    drop(e);
    assert_eq!(counter.get(), 1);

    let e = r.resolve(counter.tracked()).unwrap_err();
    let v = e.into_value();
    assert_eq!(counter.get(), 1);
    drop(v);
    assert_eq!(counter.get(), 2);
}

/// faern/oneshot `tests/async.rs` `poll_receiver_then_drop_it`: the
/// receiver is polled (pending), then dropped (a timeout): `send` fails.
#[test]
fn poll_receiver_then_drop_it_cell_and_detached() {
    static CELL: PromiseCell<(), ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let mut p = Box::pin(p);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    drop(p);
    assert_eq!(r.resolve(()).unwrap_err().reason(), Refusal::Closed);
    drop(r);
    assert!(CELL.is_free());

    let s = stash::<(), ()>();
    let mut p = detached(&s);
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    drop(p);
    assert_eq!(take(&s).resolve(()).unwrap_err().reason(), Refusal::Closed);
}

/// rust-lang/futures-rs `futures/tests/oneshot.rs` `oneshot_send1`..`3`:
/// send from another thread before, during and after the receiver waits
/// (detached: the resolver goes to the thread).
#[test]
fn oneshot_send_from_a_thread_detached() {
    for delay in [0u64, 5] {
        let p = DeferredPromise::<i32, PromiseError<()>>::detached(move |r| {
            thread::spawn(move || {
                thread::sleep(std::time::Duration::from_millis(delay));
                r.resolve(1).unwrap()
            });
        });
        assert_eq!(block_on(p), Ok(1));
    }
}

/// FusedFuture (futures-rs `Shared::is_terminated`, used in
/// `future_shared.rs` `ptr_eq`) for every promise mode and wait future.
#[test]
fn is_terminated_for_every_mode() {
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let mut p = Box::pin(p);
    assert!(!p.is_terminated());
    r.resolve(1).unwrap();
    assert!(!p.is_terminated(), "settled but not taken");
    assert_eq!(block_on(p.as_mut()), Ok(1));
    assert!(p.is_terminated());

    static SIG: SignalCell<u8, ()> = SignalCell::new();
    let mut w = Box::pin(SIG.wait().unwrap());
    assert!(!w.is_terminated());
    SIG.resolve(2).unwrap();
    assert_eq!(block_on(w.as_mut()), Ok(2));
    assert!(w.is_terminated());

    static SH: SharedCell<u8, (), 2> = SharedCell::new();
    let mut w = Box::pin(SH.wait().unwrap());
    assert!(!w.is_terminated());
    SH.resolve(3).unwrap();
    assert_eq!(block_on(w.as_mut()), Ok(3));
    assert!(w.is_terminated());
}

// ====================================================================
// futures-rs future_shared.rs
// ====================================================================

/// rust-lang/futures-rs `futures/tests/future_shared.rs`
/// `send_shared_oneshot_and_wait_on_multiple_threads` (`one_thread`,
/// `two_threads`, `many_threads` — 1000 threads there, 64 here): clones
/// wait on threads spawned before the value is sent.
#[test]
fn shared_wait_on_multiple_threads() {
    use deferral::SharedPromise;
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    for threads in [1usize, 2, 64] {
        let (p, r) = CELL.promise().unwrap();
        let f = SharedPromise::new(p);
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let c = f.clone();
                thread::spawn(move || assert_eq!(block_on(c).unwrap(), 6))
            })
            .collect();
        r.resolve(6).unwrap();
        assert_eq!(block_on(f).unwrap(), 6);
        for h in handles {
            h.join().unwrap();
        }
        drop(r);
        assert!(CELL.is_free());
    }
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs` `drop_on_one_task_ok`:
/// one clone is polled inside a `select` on one thread and dropped when
/// the other branch wins; a clone on another thread still gets the value.
#[test]
fn shared_drop_on_one_task_ok() {
    use deferral::SharedPromise;
    use futures::channel::oneshot;
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let (p, tx) = CELL.promise().unwrap();
    let f1 = SharedPromise::new(p);
    let f2 = f1.clone();
    let (tx2, rx2) = oneshot::channel::<u32>();
    let t1 = thread::spawn(move || {
        let f = futures::future::select(f1, rx2);
        drop(futures::executor::block_on(f));
    });
    let (tx3, rx3) = oneshot::channel::<u32>();
    let t2 = thread::spawn(move || {
        let x = futures::executor::block_on(f2).unwrap();
        tx3.send(x).unwrap();
    });
    tx2.send(11).unwrap(); // cancel `f1`
    t1.join().unwrap();
    tx.resolve(42).unwrap(); // should resolve `f2`, then `rx3`
    let result = futures::executor::block_on(rx3).unwrap();
    assert_eq!(result, 42);
    t2.join().unwrap();
}

/// The clone that drove the source is dropped while the source is
/// pending: the others keep the source (not restarted, not dropped) and
/// one of them drives it on (futures-rs `Shared`: dropping a clone does
/// not cancel the others; `drop_on_one_task_ok` single-threaded).
#[test]
fn shared_drop_of_the_driving_clone_does_not_cancel_the_source() {
    use deferral::SharedPromise;
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let runs2 = runs.clone();
    let s = stash::<u32, ()>();
    let s2 = s.clone();
    let src = CELL
        .lazy(move |r| {
            runs2.fetch_add(1, SeqCst);
            *s2.lock().unwrap() = Some(r);
        })
        .unwrap();
    let mut a = Box::pin(SharedPromise::new(src));
    let mut b = Box::pin(a.clone());
    let (wa, wb) = (WakeCounter::new(), WakeCounter::new());
    assert_eq!(poll_once(a.as_mut(), &wa), Poll::Pending);
    assert_eq!(poll_once(b.as_mut(), &wb), Poll::Pending);
    drop(a);
    let r = take(&s);
    assert!(!r.is_closed(), "the source is still alive");
    r.resolve(5).unwrap();
    assert_eq!(wb.wakes(), 1);
    assert_eq!(poll_once(b.as_mut(), &wb), Poll::Ready(Ok(5)));
    assert_eq!(runs.load(SeqCst), 1);
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs` `drop_in_poll`:
/// the source's poll drops another clone (kept in a slot the source
/// reaches).
#[test]
fn shared_drop_in_poll() {
    use deferral::SharedPromise;
    type Slot = Rc<RefCell<Option<Pin<Box<dyn Future<Output = i32>>>>>>;
    let slot1: Slot = Rc::new(RefCell::new(None));
    let slot2 = slot1.clone();
    let future1 = SharedPromise::new(futures::future::lazy(move |_| {
        slot2.replace(None); // drop the other clone
        1
    }));
    let future2: Pin<Box<dyn Future<Output = i32>>> = Box::pin(future1.clone());
    slot1.replace(Some(future2));
    assert_eq!(block_on(future1), 1);
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs` `peek`: nothing
/// to peek before a clone polled the source, even if the value was sent;
/// after one clone completed, the others peek it, repeatedly.
#[test]
fn shared_peek() {
    use deferral::SharedPromise;
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let (p, tx0) = CELL.promise().unwrap();
    let f1 = SharedPromise::new(p);
    let f2 = f1.clone();
    for _ in 0..2 {
        assert!(f1.peek().is_none());
        assert!(f2.peek().is_none());
    }
    tx0.resolve(42).unwrap();
    for _ in 0..2 {
        assert!(f1.peek().is_none());
        assert!(f2.peek().is_none());
    }
    assert_eq!(block_on(f1), Ok(42));
    for _ in 0..2 {
        assert_eq!(*f2.peek().unwrap(), Ok(42));
    }
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs` `downgrade`.
/// (futures' `downgrade` returns `Option`; ours a weak handle that never
/// upgrades when the handle moved the output out.)
#[test]
fn shared_downgrade() {
    use deferral::SharedPromise;
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let (p, tx) = CELL.promise().unwrap();
    let shared = SharedPromise::new(p);
    let weak = shared.downgrade();
    let mut shared2 = weak.upgrade().unwrap();
    tx.resolve(42).unwrap();
    assert_eq!(block_on(shared).unwrap(), 42);
    // `shared2` is outstanding: downgrading and upgrading still work.
    assert!(shared2.downgrade().upgrade().is_some());
    assert!(weak.upgrade().is_some());
    assert_eq!(block_on(&mut shared2).unwrap(), 42);
    // Every strong handle is exhausted.
    assert!(weak.upgrade().is_none());
    assert!(shared2.downgrade().upgrade().is_none());
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs` `ptr_eq`: once a
/// clone completed it no longer `ptr_eq`s the others; the others still
/// compare equal to their new clones.
#[test]
fn shared_ptr_eq() {
    use deferral::SharedPromise;
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let (p, tx) = CELL.promise().unwrap();
    let shared = SharedPromise::new(p);
    let mut shared2 = shared.clone();
    assert!(shared.ptr_eq(&shared2));
    assert!(shared2.ptr_eq(&shared));
    tx.resolve(42).unwrap();
    assert_eq!(block_on(&mut shared2).unwrap(), 42);
    assert!(shared2.is_terminated());
    assert!(
        !shared.ptr_eq(&shared2),
        "futures-rs: a completed Shared no longer ptr_eq's its former clones"
    );
    let shared3 = shared.clone();
    assert!(shared.ptr_eq(&shared3));
    static CELL2: PromiseCell<i32, ()> = PromiseCell::new();
    let (p4, _tx4) = CELL2.promise().unwrap();
    let shared4 = SharedPromise::new(p4);
    assert!(!shared.ptr_eq(&shared4));
}

/// Counts its clones.
#[derive(Debug)]
struct CountClone(Arc<AtomicUsize>);

impl Clone for CountClone {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, SeqCst);
        CountClone(self.0.clone())
    }
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs`
/// `dont_clone_in_single_owner_shared_future`.
#[test]
fn shared_dont_clone_in_single_owner_shared_future() {
    use deferral::SharedPromise;
    let counter = CountClone(Arc::new(AtomicUsize::new(0)));
    let rx = SharedPromise::new(DeferredPromise::<CountClone, ()>::resolved(counter));
    assert_eq!(block_on(rx).unwrap().0.load(SeqCst), 0);
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs`
/// `dont_do_unnecessary_clones_on_output`.
#[test]
fn shared_dont_do_unnecessary_clones_on_output() {
    use deferral::SharedPromise;
    let counter = CountClone(Arc::new(AtomicUsize::new(0)));
    let rx = SharedPromise::new(DeferredPromise::<CountClone, ()>::resolved(counter));
    assert_eq!(block_on(rx.clone()).unwrap().0.load(SeqCst), 1);
    assert_eq!(block_on(rx.clone()).unwrap().0.load(SeqCst), 2);
    assert_eq!(block_on(rx).unwrap().0.load(SeqCst), 2);
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs`
/// `shared_future_that_wakes_itself_until_pending_is_returned`.
#[test]
fn shared_future_that_wakes_itself_until_pending_is_returned() {
    use deferral::SharedPromise;
    let proceed = Cell::new(false);
    let fut = SharedPromise::new(futures::future::poll_fn(|cx| {
        if proceed.get() {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }));
    assert_eq!(
        futures::executor::block_on(futures::future::join(fut, async { proceed.set(true) })),
        ((), ())
    );
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs` `panic_while_poll`
/// (their message "inner future panicked during poll"; ours is documented
/// as "`SharedPromise`'s source panicked").
#[test]
#[should_panic(expected = "`SharedPromise`'s source panicked")]
fn shared_panic_while_poll() {
    use deferral::SharedPromise;
    let fut = SharedPromise::new(futures::future::poll_fn::<i8, _>(|_cx| panic!("test")));
    let fut_captured = fut.clone();
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        block_on(fut_captured);
    }))
    .unwrap_err();
    block_on(fut);
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs` `poll_while_panic`:
/// a shared future is usable from a destructor that runs during unwinding.
#[test]
#[should_panic(expected = "test_marker")]
fn shared_poll_while_panic() {
    use deferral::SharedPromise;
    struct S;
    impl Drop for S {
        fn drop(&mut self) {
            let fut = SharedPromise::new(futures::future::ready(1));
            assert_eq!(block_on(fut.clone()), 1);
            assert_eq!(block_on(fut), 1);
        }
    }
    let _s = S {};
    panic!("test_marker");
}

/// futures-rs `Shared` semantics: a clone made after completion gets the
/// value at once, the source does not run again.
#[test]
fn shared_clone_after_completion() {
    use deferral::SharedPromise;
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let a = SharedPromise::new(DeferredPromise::<u8, PromiseError<()>>::new(move |res| {
        r.fetch_add(1, SeqCst);
        res.resolve(9)
    }));
    let keep = a.clone();
    assert_eq!(block_on(a), Ok(9));
    let late = keep.clone();
    let mut late = Box::pin(late);
    let w = WakeCounter::new();
    assert_eq!(poll_once(late.as_mut(), &w), Poll::Ready(Ok(9)));
    assert_eq!(w.clones(), 0, "no waker registered for a completed promise");
    assert_eq!(block_on(keep), Ok(9));
    assert_eq!(runs.load(SeqCst), 1);
}

/// Clones polled on different tasks: each task's waker is woken when the
/// value arrives, and each task's repoll with a fresh waker is ready
/// (futures-rs `Shared`, `future_shared.rs` multiple threads, single-step).
#[test]
fn shared_clones_on_different_tasks_each_woken() {
    use deferral::SharedPromise;
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let a = SharedPromise::new(p);
    let mut clones: Vec<_> = (0..4).map(|_| Box::pin(a.clone())).collect();
    drop(a);
    let tasks: Vec<_> = (0..4).map(|_| WakeCounter::new()).collect();
    for (c, t) in clones.iter_mut().zip(&tasks) {
        assert_eq!(poll_once(c.as_mut(), t), Poll::Pending);
    }
    r.resolve(1).unwrap();
    for t in &tasks {
        assert_eq!(t.wakes(), 1);
    }
    for (c, t) in clones.iter_mut().zip(&tasks) {
        assert_eq!(poll_once(c.as_mut(), t), Poll::Ready(Ok(1)));
    }
    drop(clones);
    for t in &tasks {
        assert_eq!(t.live(), 0);
    }
}

// ====================================================================
// tc39/test262 Promise.prototype.then / catch / finally
// ====================================================================

/// tc39/test262 `test/built-ins/Promise/prototype/finally/resolution-value-no-override.js`:
/// `Promise.resolve(1).finally(() => 2)` fulfils with 1 (a handler value,
/// or a fulfilled promise it returns, does not override).
#[test]
fn finally_resolution_value_no_override() {
    let calls = Cell::new(0);
    let p = DeferredPromise::<u8, &str>::resolved(1).deferred_finally(|| {
        calls.set(calls.get() + 1);
        DeferredPromise::<(), &str>::resolved(())
    });
    assert_eq!(block_on(p), Ok(1));
    let p = DeferredPromise::<u8, &str>::resolved(1).deferred_finally(|| {
        calls.set(calls.get() + 1);
        Follow(async { Ok::<(), &str>(()) })
    });
    assert_eq!(block_on(p), Ok(1));
    assert_eq!(calls.get(), 2);
}

/// tc39/test262 `test/built-ins/Promise/prototype/finally/rejection-reason-no-fulfill.js`.
#[test]
fn finally_rejection_reason_no_fulfill() {
    let sequence = RefCell::new(Vec::new());
    let p = DeferredPromise::<u8, &str>::rejected("original")
        .deferred_finally(|| {
            sequence.borrow_mut().push(1);
            Ok::<(), &str>(())
        })
        .deferred_then(|_| -> Result<u8, &str> {
            panic!("promise is rejected pre-finally; onFulfill should not be called")
        })
        .deferred_catch(|reason| {
            sequence.borrow_mut().push(2);
            assert_eq!(reason, "original");
            Ok::<u8, ()>(0)
        });
    assert_eq!(block_on(p), Ok(0));
    assert_eq!(*sequence.borrow(), [1, 2]);
}

/// tc39/test262 `test/built-ins/Promise/prototype/finally/rejection-reason-override-with-throw.js`
/// (a throw ≈ the handler's `Err`).
#[test]
fn finally_rejection_reason_override_with_throw() {
    let count = Cell::new(0);
    let p = DeferredPromise::<u8, &str>::rejected("original")
        .deferred_finally(|| {
            count.set(count.get() + 1);
            Err::<(), &str>("thrown")
        })
        .deferred_then(|_| -> Result<u8, &str> {
            panic!("promise is rejected; onFulfill should not be called")
        })
        .deferred_catch(|reason| {
            count.set(count.get() + 1);
            assert_eq!(reason, "thrown");
            Ok::<u8, ()>(0)
        });
    assert_eq!(block_on(p), Ok(0));
    assert_eq!(count.get(), 2, "both callbacks were called");
}

/// Same, the throw as a panic, turned into a rejection by `catch_panics`
/// (the only way a panic becomes a rejection).
#[test]
fn finally_rejection_reason_override_with_panic_through_catch_panics() {
    let p = DeferredPromise::<u8, &str>::rejected("original")
        .deferred_finally(|| -> Result<(), &str> { panic!("thrown") })
        .catch_panics()
        .deferred_catch(|reason| match reason {
            Caught::Panicked(p) => Ok::<u8, ()>(if p.message() == Some("thrown") { 1 } else { 2 }),
            Caught::Rejected(_) => Ok(3),
        });
    assert_eq!(block_on(p), Ok(1));
}

/// tc39/test262 `test/built-ins/Promise/prototype/finally/resolved-observable-then-calls.js`:
/// `yes.then(x => x).finally(() => no).catch(e => e === noReason)`; the
/// promise returned by onFinally is followed exactly once.
#[test]
fn finally_resolved_handler_returns_a_rejected_promise() {
    let follows = Arc::new(AtomicUsize::new(0));
    let count = Cell::new(0);
    let f = follows.clone();
    let p = DeferredPromise::<&str, &str>::resolved("yes")
        .deferred_then(|x| {
            count.set(count.get() + 1);
            assert_eq!(x, "yes");
            Ok(x)
        })
        .deferred_finally(move || {
            DeferredPromise::<(), &str>::lazy(move || {
                f.fetch_add(1, SeqCst);
                async { Err("no") }
            })
        })
        .deferred_catch(|e| {
            count.set(count.get() + 1);
            assert_eq!(e, "no");
            Ok::<&str, ()>("caught")
        });
    assert_eq!(block_on(p), Ok("caught"));
    assert_eq!(count.get(), 2);
    assert_eq!(follows.load(SeqCst), 1, "onFinally's promise followed once");
}

/// tc39/test262 `test/built-ins/Promise/prototype/finally/rejected-observable-then-calls.js`:
/// `no.catch(e => { throw e }).finally(() => yes).catch(e => e === noReason)`.
#[test]
fn finally_rejected_handler_returns_a_fulfilled_promise() {
    let follows = Arc::new(AtomicUsize::new(0));
    let f = follows.clone();
    let count = Cell::new(0);
    let p = DeferredPromise::<u8, &str>::rejected("no")
        .deferred_catch(|e| {
            count.set(count.get() + 1);
            assert_eq!(e, "no");
            Err::<u8, &str>(e)
        })
        .deferred_finally(move || {
            DeferredPromise::<(), &str>::lazy(move || {
                f.fetch_add(1, SeqCst);
                async { Ok(()) }
            })
        })
        .deferred_catch(|e| {
            count.set(count.get() + 1);
            assert_eq!(e, "no");
            Ok::<u8, ()>(7)
        });
    assert_eq!(block_on(p), Ok(7));
    assert_eq!(count.get(), 2);
    assert_eq!(follows.load(SeqCst), 1);
}

/// `Promise.prototype.finally` waits for the promise onFinally returns
/// before settling (spec: `thenFinally` returns `promise.then(() => value)`;
/// test262 `finally/resolved-observable-then-calls.js` relies on it):
/// pending until it settles, woken when it does; if it is abandoned, its
/// rejection wins.
#[test]
fn finally_waits_for_a_pending_handler_promise() {
    static CELL: PromiseCell<(), ()> = PromiseCell::new();
    let (gate, r) = CELL.promise().unwrap();
    let p = DeferredPromise::<u8, PromiseError<()>>::resolved(5).deferred_finally(move || gate);
    let mut p = Box::pin(p);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    r.resolve(()).unwrap();
    assert_eq!(w.wakes(), 1);
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Ready(Ok(5)));

    let (gate, r) = CELL.promise().unwrap();
    let p = DeferredPromise::<u8, PromiseError<()>>::resolved(5).deferred_finally(move || gate);
    let mut p = Box::pin(p);
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    drop(r);
    assert_eq!(
        poll_once(p.as_mut(), &w),
        Poll::Ready(Err(PromiseError::Abandoned))
    );
}

/// tc39/test262 `test/built-ins/Promise/prototype/then/rxn-handler-identity.js`
/// and `rxn-handler-thrower.js`: a settlement the link has no handler for
/// passes through unchanged, and the other handler is not called.
#[test]
fn then_and_catch_pass_through() {
    let called = Cell::new(false);
    let p = DeferredPromise::<u8, &str>::rejected("reason").deferred_then(|v| {
        called.set(true);
        Ok(v)
    });
    assert_eq!(block_on(p), Err("reason"));
    let p = DeferredPromise::<u8, &str>::resolved(3).deferred_catch(|e| {
        called.set(true);
        Err::<u8, &str>(e)
    });
    assert_eq!(block_on(p), Ok(3));
    assert!(!called.get());
}

/// tc39/test262 `then/rxn-handler-fulfilled-return-abrupt.js` (onFulfilled
/// throws → the derived promise rejects with the thrown value), as an
/// `Err`, and the two-handler form: a rejection produced by onFulfilled
/// is not handed to the same `then`'s onRejected (ECMA-262
/// PerformPromiseThen: exactly one reaction runs).
#[test]
fn then_catch_on_fulfilled_error_skips_on_rejected() {
    let rejected_called = Cell::new(false);
    let p = DeferredPromise::<u8, &str>::resolved(1).deferred_then_catch(
        |_v| Err::<u8, &str>("thrown"),
        |_e| {
            rejected_called.set(true);
            Ok(0)
        },
    );
    assert_eq!(block_on(p), Err("thrown"));
    assert!(!rejected_called.get());
}

/// tc39/test262 `then/rxn-handler-fulfilled-return-abrupt.js` with a
/// thrown exception: a panic in the handler, turned into a rejection by
/// `catch_panics`, reaches the next `catch` (JS `p.then(throw).catch(h)`).
#[test]
fn then_handler_panic_reaches_the_next_catch_through_catch_panics() {
    let p = DeferredPromise::<u8, ()>::resolved(1)
        .deferred_then(|_| -> Result<u8, ()> { panic!("thrown") })
        .catch_panics()
        .deferred_catch(|e| match e {
            Caught::Panicked(p) => Ok::<u8, ()>(if p.message() == Some("thrown") {
                10
            } else {
                11
            }),
            Caught::Rejected(()) => Ok(12),
        });
    assert_eq!(block_on(p), Ok(10));
}

/// tc39/test262 `then/rxn-handler-rejected-return-normal.js` and
/// `-return-abrupt.js`: onRejected returning a value fulfils; throwing
/// (an `Err`) rejects with the new reason.
#[test]
fn catch_handler_return_normal_and_abrupt() {
    let p = DeferredPromise::<u8, &str>::rejected("r").deferred_catch(|_| Ok::<u8, ()>(4));
    assert_eq!(block_on(p), Ok(4));
    let p = DeferredPromise::<u8, &str>::rejected("r")
        .deferred_catch(|e| Err::<u8, String>(format!("{e}!")));
    assert_eq!(block_on(p), Err("r!".to_string()));
}

/// tc39/test262 `then/resolve-pending-fulfilled-*` (a handler returns a
/// pending promise: the derived promise follows it, settling only when it
/// does) and `S25.4.5.3_A5.1_T1` (a `then` on a pending promise runs when
/// the promise is resolved later).
#[test]
fn then_handler_returning_a_pending_promise_is_followed() {
    static SRC: PromiseCell<u8, ()> = PromiseCell::new();
    static INNER: PromiseCell<u8, ()> = PromiseCell::new();
    let (src, src_r) = SRC.promise().unwrap();
    let (inner, inner_r) = INNER.promise().unwrap();
    let mut inner_slot = Some(inner);
    let ran = Cell::new(0);
    let p = src.deferred_then(|v| {
        ran.set(ran.get() + 1);
        assert_eq!(v, 1);
        inner_slot.take().unwrap()
    });
    let mut p = pin!(p);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    assert_eq!(ran.get(), 0);
    src_r.resolve(1).unwrap();
    assert_eq!(w.wakes(), 1);
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    assert_eq!(ran.get(), 1);
    inner_r.resolve(2).unwrap();
    assert_eq!(w.wakes(), 2);
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Ready(Ok(2)));
    assert_eq!(ran.get(), 1);
}

/// Chaining order (test262 `then/S25.4.5.3_A5.2_T1`-style sequences and
/// `finally/rejection-reason-no-fulfill.js`'s `checkSequence`): handlers
/// of a chain run in chain order, each once, and a `finally` in the middle
/// sees nothing and passes the value on.
#[test]
fn chain_runs_handlers_in_order_once_each() {
    let seq = RefCell::new(Vec::new());
    let p = DeferredPromise::<u32, PromiseError<()>>::new(|r| {
        seq.borrow_mut().push("executor");
        r.resolve(1)
    })
    .deferred_then(|v| {
        seq.borrow_mut().push("then1");
        Ok(v + 1)
    })
    .deferred_finally(|| seq.borrow_mut().push("finally"))
    .deferred_then(|v| {
        seq.borrow_mut().push("then2");
        Ok(v * 10)
    })
    .deferred_catch(|_e| {
        seq.borrow_mut().push("catch");
        Ok::<u32, ()>(0)
    });
    assert!(seq.borrow().is_empty());
    assert_eq!(block_on(p), Ok(20));
    assert_eq!(*seq.borrow(), ["executor", "then1", "finally", "then2"]);
}

/// tc39/test262 `test/built-ins/Promise/reject-via-abrupt.js`
/// (`new Promise(() => { throw e })` rejects with `e` — here only through
/// `catch_panics`) and `exception-after-resolve-in-executor.js` (a throw
/// after `resolve` is ignored), for `detached`; and a panic in a
/// `detached` executor after it handed its resolver away does not hang the
/// promise: with `catch_panics` it is a rejection.
#[test]
fn executor_throw_rejects_through_catch_panics_detached() {
    let p = DeferredPromise::<u8, PromiseError<()>>::detached(|_r| -> () { panic!("boom") })
        .catch_panics();
    match block_on(p) {
        Err(Caught::Panicked(p)) => assert_eq!(p.message(), Some("boom")),
        other => panic!("expected a caught panic, got {other:?}"),
    }
    // Resolved first, then thrown: the resolution stands (as for `new`).
    let p = DeferredPromise::<u8, PromiseError<()>>::detached(|r| {
        r.resolve(3).unwrap();
        panic!("late");
    })
    .catch_panics();
    assert_eq!(block_on(p).unwrap(), 3);
}

// ====================================================================
// embassy-sync Signal
// ====================================================================

/// embassy-rs/embassy `embassy-sync/src/signal.rs` `Signal::signaled`
/// ("does not clear the signal") and `try_take`: checking leaves the
/// value; taking it empties the cell; a wait afterwards waits for the next
/// settlement.
#[test]
fn signal_signaled_does_not_clear_and_try_take_does() {
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    SIG.resolve(1).unwrap();
    assert!(SIG.is_signaled());
    assert!(SIG.is_signaled());
    assert_eq!(SIG.try_take(), Some(Ok(1)));
    assert!(!SIG.is_signaled());
    let mut w = Box::pin(SIG.wait().unwrap());
    let wc = WakeCounter::new();
    assert_eq!(poll_once(w.as_mut(), &wc), Poll::Pending);
    SIG.resolve(2).unwrap();
    assert_eq!(wc.wakes(), 1);
    assert_eq!(poll_once(w.as_mut(), &wc), Poll::Ready(Ok(2)));
}

/// tokio `sync::AtomicWaker` and faern/oneshot
/// (`multiple_receiver_polls_keeps_only_latest_waker`): a wait polled by a
/// new waker keeps the new one and drops the old one unwoken (embassy's
/// `Signal::poll_wait` wakes the old one: see
/// `ports_cells.rs::embassy_signal_poll_with_a_new_waker_drops_the_displaced_one_differs`);
/// `will_wake` keeps the stored one; the signal wakes the latest.
#[test]
fn signal_wait_keeps_the_latest_waker() {
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    let mut w = Box::pin(SIG.wait().unwrap());
    let (t1, t2) = (WakeCounter::new(), WakeCounter::new());
    assert_eq!(poll_once(w.as_mut(), &t1), Poll::Pending);
    assert_eq!(poll_once(w.as_mut(), &t2), Poll::Pending);
    assert_eq!(t1.live(), 0);
    let waker = t2.waker();
    let clones = t2.clones();
    assert!(
        w.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    assert_eq!(t2.clones(), clones, "will_wake kept the stored waker");
    SIG.resolve(5).unwrap();
    assert_eq!((t1.wakes(), t2.wakes()), (0, 1));
    assert_eq!(poll_once(w.as_mut(), &t2), Poll::Ready(Ok(5)));
    drop(waker);
    assert_eq!(t2.live(), 0);
}

/// embassy `Signal::reset` while a task waits: the waiter keeps waiting
/// for the next signal (reset drops only a stored value).
#[test]
fn signal_reset_while_waiting_keeps_the_waiter() {
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    let mut w = Box::pin(SIG.wait().unwrap());
    let t = WakeCounter::new();
    assert_eq!(poll_once(w.as_mut(), &t), Poll::Pending);
    SIG.reset();
    assert_eq!(poll_once(w.as_mut(), &t), Poll::Pending);
    SIG.resolve(8).unwrap();
    assert_eq!(t.wakes(), 1);
    assert_eq!(poll_once(w.as_mut(), &t), Poll::Ready(Ok(8)));
}

/// tokio-rs/tokio `sync_oneshot.rs` `receiver_changes_task` for the
/// static multi-waiter cell: each waiter's latest waker is woken, a
/// replaced one is dropped and not woken.
#[test]
fn shared_cell_waiter_changes_task() {
    static SH: SharedCell<u8, (), 2> = SharedCell::new();
    let mut a = Box::pin(SH.wait().unwrap());
    let (t1, t2) = (WakeCounter::new(), WakeCounter::new());
    assert_eq!(poll_once(a.as_mut(), &t1), Poll::Pending);
    assert_eq!(poll_once(a.as_mut(), &t2), Poll::Pending);
    assert_eq!(t1.live(), 0);
    SH.resolve(1).unwrap();
    assert_eq!((t1.wakes(), t2.wakes()), (0, 1));
    assert_eq!(poll_once(a.as_mut(), &t2), Poll::Ready(Ok(1)));
    assert_eq!(t2.live(), 0);
}

// ====================================================================
// Second round
// ====================================================================

/// rust-lang/futures-rs `futures-channel/tests/oneshot.rs` `cancel_sends`
/// (20000 rounds there): the receiver goes away on one thread while the
/// sender sends on another. Every value is dropped exactly once: by the
/// cell with the dropped promise, or handed back in the refusal.
#[test]
fn cancel_sends_race_accounts_for_every_value() {
    static CELL: PromiseCell<support::drops::Tracked, ()> = PromiseCell::new();
    let rounds = if cfg!(miri) { 10 } else { 2000 };
    let counter = DropCounter::new();
    for i in 0..rounds {
        let (p, r) = CELL.promise().unwrap();
        let value = counter.tracked();
        let t = thread::spawn(move || {
            let out = r.resolve(value);
            drop(out);
            drop(r);
        });
        if i % 2 == 0 {
            drop(p);
        } else {
            let mut p = Box::pin(p);
            let w = WakeCounter::new();
            let _ = poll_once(p.as_mut(), &w);
            drop(p);
        }
        t.join().unwrap();
        assert_eq!(
            counter.get(),
            i + 1,
            "round {i}: the value was dropped exactly once"
        );
        assert!(CELL.is_free());
    }

    let counter = DropCounter::new();
    for i in 0..rounds {
        let s = stash::<support::drops::Tracked, ()>();
        let mut p = detached(&s);
        let w = WakeCounter::new();
        assert!(poll_once(p.as_mut(), &w).is_pending());
        let r = take(&s);
        let value = counter.tracked();
        let t = thread::spawn(move || drop(r.resolve(value)));
        drop(p);
        t.join().unwrap();
        assert_eq!(counter.get(), i + 1, "detached round {i}");
    }
}

/// rust-lang/futures-rs `future_shared.rs` "clone after completion" for the
/// static multi-waiter cell: a waiter that arrives after the settlement
/// gets it at once; dropping one waiter does not disturb the others.
#[test]
fn shared_cell_late_waiter_and_dropped_waiter() {
    static SH: SharedCell<u8, (), 3> = SharedCell::new();
    let mut a = Box::pin(SH.wait().unwrap());
    let b = Box::pin(SH.wait().unwrap());
    let (ta, tb) = (WakeCounter::new(), WakeCounter::new());
    assert_eq!(poll_once(a.as_mut(), &ta), Poll::Pending);
    let mut b = b;
    assert_eq!(poll_once(b.as_mut(), &tb), Poll::Pending);
    drop(b);
    assert_eq!(tb.live(), 0, "the dropped waiter's waker is gone");
    SH.resolve(4).unwrap();
    assert_eq!((ta.wakes(), tb.wakes()), (1, 0));
    assert_eq!(poll_once(a.as_mut(), &ta), Poll::Ready(Ok(4)));
    let mut late = Box::pin(SH.wait().unwrap());
    let tl = WakeCounter::new();
    assert_eq!(poll_once(late.as_mut(), &tl), Poll::Ready(Ok(4)));
    assert_eq!(tl.clones(), 0);
}

/// embassy-rs/embassy `embassy-sync/src/signal.rs`: a value signalled
/// while no task waits (the waiter timed out and was dropped) is kept
/// for the next `wait`.
#[test]
fn signal_kept_after_a_dropped_wait() {
    static SIG: SignalCell<u8, ()> = SignalCell::new();
    let mut w = Box::pin(SIG.wait().unwrap());
    let t = WakeCounter::new();
    assert_eq!(poll_once(w.as_mut(), &t), Poll::Pending);
    drop(w);
    assert_eq!(t.live(), 0);
    SIG.resolve(3).unwrap();
    assert_eq!(t.wakes(), 0);
    assert!(SIG.is_signaled());
    let mut w = Box::pin(SIG.wait().unwrap());
    assert_eq!(poll_once(w.as_mut(), &t), Poll::Ready(Ok(3)));
}

/// tc39/test262 `then/resolve-settled-rejected-*` / `rxn-handler-fulfilled-return-*`:
/// onFulfilled returning a rejected promise rejects the derived promise.
#[test]
fn then_handler_returning_a_rejected_promise_rejects() {
    let p = DeferredPromise::<u8, &str>::resolved(1)
        .deferred_then(|_| DeferredPromise::<u8, &str>::rejected("inner"));
    assert_eq!(block_on(p), Err("inner"));
}

/// tc39/test262 `catch` ≈ `then(undefined, onRejected)` with a handler
/// returning a pending promise: the derived promise follows it.
#[test]
fn catch_handler_returning_a_pending_promise_is_followed() {
    static INNER: PromiseCell<u8, ()> = PromiseCell::new();
    let (inner, r) = INNER.promise().unwrap();
    let mut slot = Some(inner);
    let p = DeferredPromise::<u8, &str>::rejected("r").deferred_catch(|_| slot.take().unwrap());
    let mut p = pin!(p);
    let w = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Pending);
    r.resolve(6).unwrap();
    assert_eq!(w.wakes(), 1);
    assert_eq!(poll_once(p.as_mut(), &w), Poll::Ready(Ok(6)));
}

/// tc39/test262 `test/built-ins/Promise/reject-via-abrupt.js` (the
/// executor throws → the promise rejects) combined with
/// `prototype/finally/rejection-reason-no-fulfill.js` (onFinally runs on a
/// rejection, which passes through): `new Promise(() => { throw e }).finally(f)`
/// runs `f` and rejects with `e`.
/// With `catch_panics` right after the executor the JS chain is
/// reproduced (next test). deferral differs when `catch_panics` is put at
/// the end of the chain instead: a panic is not a settlement, it unwinds
/// through the `deferred_finally` link (which does not run) to the
/// `catch_panics` (documented there: "It catches where it stands").
#[test]
fn executor_panic_then_finally_with_catch_panics_at_the_end_differs() {
    let finally_ran = Cell::new(false);
    let p = DeferredPromise::<u8, PromiseError<()>>::new(|_r| -> () { panic!("thrown") })
        .deferred_finally(|| finally_ran.set(true))
        .catch_panics();
    let out = block_on(p);
    assert!(matches!(out, Err(Caught::Panicked(_))));
    assert!(
        !finally_ran.get(),
        "the panic unwound through the finally link"
    );
}

/// The same chain with `catch_panics` placed right after the executor
/// (what the docs prescribe for the JS behaviour): `finally` runs.
#[test]
fn executor_panic_then_finally_runs_with_catch_panics_first() {
    let finally_ran = Cell::new(false);
    let p = DeferredPromise::<u8, PromiseError<()>>::new(|_r| -> () { panic!("thrown") })
        .catch_panics()
        .deferred_finally(|| finally_ran.set(true));
    let out = block_on(p);
    assert!(matches!(out, Err(Caught::Panicked(_))));
    assert!(finally_ran.get());
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs`
/// `send_shared_oneshot_and_wait_on_multiple_threads` with the sender
/// dropped instead of sending (futures-rs `oneshot_drop_tx2`): every clone,
/// on every thread, is woken and gets the abandonment.
#[test]
fn shared_clones_on_threads_all_see_the_dropped_resolver() {
    use deferral::SharedPromise;
    static CELL: PromiseCell<i32, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let f = SharedPromise::new(p);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let c = f.clone();
            thread::spawn(move || block_on(c))
        })
        .collect();
    thread::sleep(std::time::Duration::from_millis(5));
    thread::spawn(move || drop(r)).join().unwrap();
    for h in handles {
        assert_eq!(h.join().unwrap(), Err(PromiseError::Abandoned));
    }
    assert_eq!(block_on(f), Err(PromiseError::Abandoned));
    assert!(CELL.is_free());
}

/// rust-lang/futures-rs `futures/tests/future_shared.rs`
/// `dont_do_unnecessary_clones_on_output`, with the completed handles
/// kept alive (awaited through `&mut`, as `downgrade`/`ptr_eq` there do):
/// futures-rs releases a handle's share when it completes, so the last
/// handle still polled moves the output out (1 clone in total here).
#[test]
fn shared_dont_do_unnecessary_clones_with_completed_handles_kept() {
    use deferral::SharedPromise;
    let counter = CountClone(Arc::new(AtomicUsize::new(0)));
    let mut a = SharedPromise::new(DeferredPromise::<CountClone, ()>::resolved(counter));
    let mut b = a.clone();
    assert_eq!(block_on(&mut b).unwrap().0.load(SeqCst), 1);
    // `b` is done and still alive; `a` is the only handle still waiting.
    assert_eq!(
        block_on(&mut a).unwrap().0.load(SeqCst),
        1,
        "futures-rs: the last pending handle moves the output (no second clone)"
    );
}
