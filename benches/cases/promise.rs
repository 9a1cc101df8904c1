//! `DeferredPromise` cases and the alternatives.

use core::cell::Cell;
use core::hint::black_box;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::Poll;

use deferral::{DeferredPromise, PromiseCell, PromiseExt, Resolver, SharedCell, SharedPromise};
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
use embassy_sync::signal::Signal;
use embassy_sync::watch::Watch;
use futures::{FutureExt, TryFutureExt};
use maitake_sync::WaitCell;

use super::{block, poll_once};

// --------------------------------------------------------- in the executor

pub fn in_executor_new() {
    black_box(block(
        DeferredPromise::<u32, deferral::PromiseError<()>>::new(|r| r.resolve(black_box(7))),
    ))
    .unwrap();
}

pub fn in_executor_lazy() {
    black_box(block(DeferredPromise::<u32, ()>::lazy(|| {
        core::future::ready(Ok(black_box(7)))
    })))
    .unwrap();
}

pub fn in_executor_futures_lazy() {
    black_box(block(futures::future::lazy(|_| {
        Ok::<u32, ()>(black_box(7))
    })))
    .unwrap();
}

// ------------------------------------------------------ escaping resolver

/// First poll pending, then `settle`, then the second poll is ready with 7.
#[inline(always)]
fn pending_settle_ready<F, T: PartialEq + core::fmt::Debug>(
    mut fut: Pin<&mut F>,
    settle: impl FnOnce(),
    expected: T,
) where
    F: core::future::Future<Output = T> + ?Sized,
{
    assert!(poll_once(fut.as_mut()).is_pending());
    settle();
    match poll_once(fut) {
        Poll::Ready(out) => assert_eq!(black_box(out), expected),
        Poll::Pending => panic!("not ready after settling"),
    }
}

pub fn escaping_detached() {
    let slot: Cell<Option<Resolver<'static, u32, ()>>> = Cell::new(None);
    let promise =
        pin!(DeferredPromise::<u32, deferral::PromiseError<()>>::detached(|r| slot.set(Some(r))));
    pending_settle_ready(
        promise,
        || slot.take().unwrap().resolve(black_box(7)).unwrap(),
        Ok(7),
    );
}

static CELL: PromiseCell<u32, ()> = PromiseCell::new();

pub fn escaping_cell() {
    let (promise, resolver) = CELL.promise().unwrap();
    let promise = pin!(promise);
    pending_settle_ready(promise, || resolver.resolve(black_box(7)).unwrap(), Ok(7));
}

pub fn escaping_futures_oneshot() {
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let rx = pin!(rx);
    pending_settle_ready(rx, || tx.send(black_box(7)).unwrap(), Ok(7));
}

pub fn escaping_tokio_oneshot() {
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let rx = pin!(rx);
    pending_settle_ready(rx, || tx.send(black_box(7)).unwrap(), Ok(7));
}

pub fn escaping_oneshot() {
    let (tx, rx) = oneshot::channel::<u32>();
    let rx = pin!(rx);
    pending_settle_ready(rx, || tx.send(black_box(7)).unwrap(), Ok(7));
}

static WAIT_CELL: WaitCell = WaitCell::new();
static WAIT_VALUE: AtomicU32 = AtomicU32::new(0);

pub fn escaping_waitcell() {
    let wait = pin!(async {
        WAIT_CELL.wait().await.unwrap();
        WAIT_VALUE.load(Ordering::Acquire)
    });
    pending_settle_ready(
        wait,
        || {
            WAIT_VALUE.store(black_box(7), Ordering::Release);
            WAIT_CELL.wake();
        },
        7,
    );
}

pub fn escaping_signal_noop() {
    let signal = Signal::<NoopRawMutex, u32>::new();
    let wait = pin!(signal.wait());
    pending_settle_ready(wait, || signal.signal(black_box(7)), 7);
}

static SIGNAL: Signal<CriticalSectionRawMutex, u32> = Signal::new();

pub fn escaping_signal_cs() {
    let wait = pin!(SIGNAL.wait());
    pending_settle_ready(wait, || SIGNAL.signal(black_box(7)), 7);
}

// --------------------------------------------------------- shared promise

pub fn shared_ours<const N: usize>() {
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let first = SharedPromise::new(rx);
    let mut clones = Vec::with_capacity(N);
    clones.extend((1..N).map(|_| first.clone()));
    clones.push(first);
    for c in &mut clones {
        assert!(poll_once(Pin::new(c)).is_pending());
    }
    tx.send(black_box(7)).unwrap();
    for c in &mut clones {
        assert_eq!(black_box(poll_once(Pin::new(c))), Poll::Ready(Ok(7)));
    }
}

pub fn shared_futures<const N: usize>() {
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let first = rx.shared();
    let mut clones = Vec::with_capacity(N);
    clones.extend((1..N).map(|_| first.clone()));
    clones.push(first);
    for c in &mut clones {
        assert!(poll_once(Pin::new(c)).is_pending());
    }
    tx.send(black_box(7)).unwrap();
    for c in &mut clones {
        assert_eq!(black_box(poll_once(Pin::new(c))), Poll::Ready(Ok(7)));
    }
}

// ---------------------------------------------------------- then chains

macro_rules! x8 {
    ($p:expr, $m:ident, $h:expr) => {
        $p.$m($h).$m($h).$m($h).$m($h).$m($h).$m($h).$m($h).$m($h)
    };
}

macro_rules! x64 {
    ($p:expr, $m:ident, $h:expr) => {
        x8!(
            x8!(
                x8!(
                    x8!(
                        x8!(x8!(x8!(x8!($p, $m, $h), $m, $h), $m, $h), $m, $h),
                        $m,
                        $h
                    ),
                    $m,
                    $h
                ),
                $m,
                $h
            ),
            $m,
            $h
        )
    };
}

fn source_ours() -> DeferredPromise<u32, (), deferral::promise::Ready<u32, ()>> {
    DeferredPromise::resolved(black_box(1))
}

fn source_futures() -> futures::future::Ready<Result<u32, ()>> {
    futures::future::ready(Ok(black_box(1)))
}

pub fn then_ours_1() {
    let p = source_ours().deferred_then(|v| Ok::<u32, ()>(v + 1));
    assert_eq!(black_box(block(p)), Ok(2));
}

pub fn then_ours_8() {
    let p = x8!(source_ours(), deferred_then, |v| Ok::<u32, ()>(v + 1));
    assert_eq!(black_box(block(p)), Ok(9));
}

pub fn then_ours_64() {
    let p = x64!(source_ours(), deferred_then, |v| Ok::<u32, ()>(v + 1));
    assert_eq!(black_box(block(p)), Ok(65));
}

/// The same chain on a boxed promise, `p = p.deferred_then(..)` in a loop
/// (one heap node per link, settled by the iterative driver).
pub fn then_boxed_64() {
    then_boxed::<64>();
}

/// `N` boxed links (linearity: the cost per link is flat in `N`).
pub fn then_boxed<const N: u32>() {
    let mut p: DeferredPromise<u32, ()> = source_ours().boxed();
    for _ in 0..N {
        p = p.deferred_then(|v| Ok(v + 1));
    }
    assert_eq!(black_box(block(p)), Ok(N + 1));
}

/// The boxed baseline: `futures`' boxed `map_ok`, `p = p.map_ok(..).boxed()`.
pub fn then_map_ok_boxed_64() {
    let mut p: futures::future::BoxFuture<'static, Result<u32, ()>> = source_futures().boxed();
    for _ in 0..64 {
        p = p.map_ok(|v| v + 1).boxed();
    }
    assert_eq!(black_box(block(p)), Ok(65));
}

pub fn then_map_ok_1() {
    let p = source_futures().map_ok(|v| v + 1);
    assert_eq!(black_box(block(p)), Ok(2));
}

pub fn then_map_ok_8() {
    let p = x8!(source_futures(), map_ok, |v| v + 1);
    assert_eq!(black_box(block(p)), Ok(9));
}

pub fn then_map_ok_64() {
    let p = x64!(source_futures(), map_ok, |v| v + 1);
    assert_eq!(black_box(block(p)), Ok(65));
}

pub fn then_and_then_1() {
    let p = source_futures().and_then(|v| futures::future::ready(Ok(v + 1)));
    assert_eq!(black_box(block(p)), Ok(2));
}

pub fn then_and_then_8() {
    let p = x8!(source_futures(), and_then, |v| futures::future::ready(Ok(
        v + 1
    )));
    assert_eq!(black_box(block(p)), Ok(9));
}

pub fn then_and_then_64() {
    let p = x64!(source_futures(), and_then, |v| futures::future::ready(Ok(
        v + 1
    )));
    assert_eq!(black_box(block(p)), Ok(65));
}

// ------------------------------------------------------ signal-style cell

static SIGNAL_CELL: deferral::promise::SignalCell<u32, ()> = deferral::promise::SignalCell::new();

/// `CELL.wait()` then the "interrupt" settles the cell itself.
pub fn signal_cell() {
    let waiting = pin!(SIGNAL_CELL.wait().unwrap());
    pending_settle_ready(
        waiting,
        || SIGNAL_CELL.resolve(black_box(7)).unwrap(),
        Ok(7),
    );
}

// ------------------------------------------- static multi-waiter promise

/// `N` waiters on a `SharedCell` (created per iteration, as the `Watch`
/// below): each polled (`Pending`), one settlement, each polled (`Ready`).
pub fn multi_shared_cell<const N: usize>() {
    let cell = SharedCell::<u32, (), N>::new();
    let mut waiters: [_; N] = core::array::from_fn(|_| cell.wait().unwrap());
    for w in &mut waiters {
        assert!(poll_once(Pin::new(w)).is_pending());
    }
    cell.resolve(black_box(7)).unwrap();
    for w in &mut waiters {
        assert_eq!(black_box(poll_once(Pin::new(w))), Poll::Ready(Ok(7)));
    }
}

/// The same with `embassy_sync::watch::Watch<CriticalSectionRawMutex, _, N>`
/// (`receiver()` per waiter, `changed()` futures, `Sender::send`).
pub fn multi_watch<const N: usize>() {
    let watch = Watch::<CriticalSectionRawMutex, u32, N>::new();
    let mut receivers: [_; N] = core::array::from_fn(|_| watch.receiver().unwrap());
    let futures = receivers.each_mut().map(|r| r.changed());
    let mut futures = pin!(futures);
    for i in 0..N {
        // SAFETY: the array is pinned and its elements are never moved out.
        let f = unsafe { futures.as_mut().map_unchecked_mut(|a| &mut a[i]) };
        assert!(poll_once(f).is_pending());
    }
    watch.sender().send(black_box(7));
    for i in 0..N {
        // SAFETY: as above.
        let f = unsafe { futures.as_mut().map_unchecked_mut(|a| &mut a[i]) };
        assert_eq!(black_box(poll_once(f)), Poll::Ready(7));
    }
}

/// One waiter on `embassy_sync::signal::Signal<CriticalSectionRawMutex, _>`
/// (created per iteration): it serves a single waiter only.
pub fn multi_signal_1() {
    let signal = Signal::<CriticalSectionRawMutex, u32>::new();
    let wait = pin!(signal.wait());
    pending_settle_ready(wait, || signal.signal(black_box(7)), 7);
}
