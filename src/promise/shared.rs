//! `SharedPromise` (`alloc`): a cloneable promise; every clone gets the
//! settlement.
//!
//! # How it works
//!
//! The clones share an `Arc` holding a state word (`IDLE`, `POLLING`,
//! `COMPLETE`, `POISONED`), the source future (replaced by its output once it
//! completes) and a waiter list (a slab of `Option<Waker>`, one slot per
//! clone that has polled, behind a short spin lock).
//!
//! A clone's poll registers its waker first, then tries `IDLE -> POLLING`.
//! The winner polls the source with a waker that wakes *every* registered
//! waiter; the others return `Pending` and are woken by that waker or by the
//! completion. On completion the poller stores the output, publishes
//! `COMPLETE` and wakes all waiters; every clone then clones the output.
//! Nothing starts the source before some clone is polled.
//!
//! A clone that is dropped unregisters its slot; if it had been woken but
//! not yet re-polled (so it might have been the one to drive the source),
//! it passes the wake-up on to the remaining waiters, so none of them hangs.
//!
//! The spin lock is held only to edit the list or to wake the wakers; do not
//! wake the source's waker from an interrupt handler that can pre-empt a poll
//! of the same `SharedPromise` on the same core (use a [`PromiseCell`]
//! resolver there: it never spins).
//!
//! [`PromiseCell`]: crate::PromiseCell

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use futures_core::future::FusedFuture;

use crate::sync::{AtomicU32, Ordering, UnsafeCell, spin_loop};

const IDLE: u32 = 0;
const POLLING: u32 = 1;
const COMPLETE: u32 = 2;
const POISONED: u32 = 3;

/// A cloneable, lazily started promise: the first clone that is polled starts
/// (polls) the source; every clone resolves to a clone of its output.
///
/// Every waiting clone's latest waker is woken; a dropped clone unregisters
/// its waker. If the source panics while polled, that poll's panic
/// propagates and every later poll of any clone panics too.
///
/// ```
/// use deferral::{DeferredPromise, SharedPromise};
/// use futures::executor::block_on;
///
/// let a = SharedPromise::new(DeferredPromise::<String, ()>::new(|r| {
///     r.resolve("config".to_string())
/// }));
/// let b = a.clone();
/// assert_eq!(block_on(b), Ok("config".to_string()));
/// assert_eq!(block_on(a), Ok("config".to_string()));
/// ```
#[must_use = "a shared promise does nothing until one of its clones is polled"]
pub struct SharedPromise<F: Future> {
    inner: Arc<Inner<F>>,
    /// This clone's slot in the waiter list, once it polled.
    key: Option<usize>,
    done: bool,
}

enum Slot<F: Future> {
    Running(F),
    Complete(F::Output),
}

struct Inner<F: Future> {
    state: AtomicU32,
    slot: UnsafeCell<Slot<F>>,
    notifier: Arc<Notifier>,
}

// SAFETY: the future is touched only by the clone that moved `state` to
// `POLLING` (one thread at a time, so `F: Send` suffices); after `COMPLETE`
// the output is only read through `&`, from any thread, so it must be
// `Send + Sync`.
unsafe impl<F: Future + Send> Send for Inner<F> where F::Output: Send + Sync {}
// SAFETY: as for `Send`.
unsafe impl<F: Future + Send> Sync for Inner<F> where F::Output: Send + Sync {}

/// The waiter list, and the waker given to the source.
struct Notifier {
    lock: AtomicU32,
    waiters: UnsafeCell<Waiters>,
}

#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

// SAFETY: `waiters` is only accessed under the spin lock (`with_waiters`);
// `Waker` is `Send + Sync`.
unsafe impl Send for Notifier {}
// SAFETY: as for `Send`.
unsafe impl Sync for Notifier {}

impl Notifier {
    fn with_waiters<R>(&self, f: impl FnOnce(&mut Waiters) -> R) -> R {
        // ORDERING: `Acquire` on taking the lock pairs with the `Release` of
        // the previous unlock, so its edits of the list are visible.
        while self
            .lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spin_loop();
        }
        struct Unlock<'a>(&'a AtomicU32);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                // ORDERING: `Release` publishes our edits to the next locker
                // (also on unwind, if a waker panics).
                self.0.store(0, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.lock);
        // SAFETY: we hold the lock: no other access to the list exists.
        self.waiters.with_mut(|waiters| f(unsafe { &mut *waiters }))
    }

    fn wake_all(&self) {
        self.with_waiters(|w| {
            for waker in w.slots.iter_mut().filter_map(Option::take) {
                waker.wake();
            }
        });
    }
}

impl Wake for Notifier {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

impl<F: Future> SharedPromise<F> {
    /// Wraps `future`; nothing runs until a clone is polled.
    ///
    /// ```
    /// use deferral::{DeferredPromise, SharedPromise};
    ///
    /// let shared = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1));
    /// let clone = shared.clone();
    /// assert_eq!(futures::executor::block_on(clone), Ok(1));
    /// # drop(shared);
    /// ```
    pub fn new(future: F) -> Self {
        SharedPromise {
            inner: Arc::new(Inner {
                state: AtomicU32::new(IDLE),
                slot: UnsafeCell::new(Slot::Running(future)),
                notifier: Arc::new(Notifier {
                    lock: AtomicU32::new(0),
                    waiters: UnsafeCell::new(Waiters::default()),
                }),
            }),
            key: None,
            done: false,
        }
    }

    /// `true` once the source completed (some clone can take the output
    /// without waiting).
    ///
    /// ```
    /// use deferral::{DeferredPromise, SharedPromise};
    ///
    /// let a = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1));
    /// let b = a.clone();
    /// assert!(!b.is_settled());
    /// futures::executor::block_on(a).unwrap();
    /// assert!(b.is_settled());
    /// ```
    pub fn is_settled(&self) -> bool {
        // ORDERING: a snapshot for reporting; `Acquire` as in `poll`.
        self.inner.state.load(Ordering::Acquire) == COMPLETE
    }

    fn register(&mut self, waker: &Waker) {
        let key = self.key;
        let new_key = self.inner.notifier.with_waiters(|w| match key {
            Some(k) => {
                match &mut w.slots[k] {
                    Some(current) if current.will_wake(waker) => {}
                    slot => *slot = Some(waker.clone()),
                }
                k
            }
            None => match w.free.pop() {
                Some(k) => {
                    w.slots[k] = Some(waker.clone());
                    k
                }
                None => {
                    w.slots.push(Some(waker.clone()));
                    w.slots.len() - 1
                }
            },
        });
        self.key = Some(new_key);
    }

    fn output(&self) -> F::Output
    where
        F::Output: Clone,
    {
        // SAFETY: called after observing `COMPLETE` with `Acquire`: the slot
        // holds the output and is never written again; shared reads only.
        self.inner.slot.with(|slot| match unsafe { &*slot } {
            Slot::Complete(output) => output.clone(),
            Slot::Running(_) => unreachable!("COMPLETE implies an output"),
        })
    }
}

impl<F: Future> Clone for SharedPromise<F> {
    /// Another handle on the same promise (it has not polled yet).
    fn clone(&self) -> Self {
        SharedPromise {
            inner: self.inner.clone(),
            key: None,
            done: false,
        }
    }
}

impl<F> Future for SharedPromise<F>
where
    F: Future,
    F::Output: Clone,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        assert!(!self.done, "`SharedPromise` polled after completion");
        // ORDERING: `Acquire` pairs with the poller's `Release` store of
        // `COMPLETE`, so the output it wrote is visible.
        if self.inner.state.load(Ordering::Acquire) == COMPLETE {
            self.done = true;
            return Poll::Ready(self.output());
        }
        // Publish the waker first, then try to become the poller.
        self.register(cx.waker());
        // ORDERING: `Acquire` on success pairs with the previous poller's
        // `Release` (its accesses to the future happen before ours); on
        // failure, with the `COMPLETE` store (see above).
        match self
            .inner
            .state
            .compare_exchange(IDLE, POLLING, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {}
            Err(COMPLETE) => {
                self.done = true;
                return Poll::Ready(self.output());
            }
            // Another clone is polling: it (or the source's waker) wakes us.
            Err(POLLING) => return Poll::Pending,
            Err(_) => panic!("`SharedPromise`'s source panicked while polled"),
        }

        struct Poison<'a>(&'a AtomicU32);
        impl Drop for Poison<'_> {
            fn drop(&mut self) {
                // ORDERING: reached only by unwinding out of the source's
                // poll; nothing is published, `Relaxed` would do.
                self.0.store(POISONED, Ordering::Release);
            }
        }
        let inner = &*self.inner;
        let poison = Poison(&inner.state);
        let waker = Waker::from(inner.notifier.clone());
        // SAFETY: we moved the state to `POLLING`: nobody else touches the
        // slot until we leave it. The future is pinned: it lives in the
        // `Arc`'s allocation and is only ever dropped in place.
        let poll = inner.slot.with_mut(|slot| match unsafe { &mut *slot } {
            Slot::Running(future) => {
                // SAFETY: see above; the future never moves.
                unsafe { Pin::new_unchecked(future) }.poll(&mut Context::from_waker(&waker))
            }
            Slot::Complete(_) => unreachable!("a completed source is never polled"),
        });
        core::mem::forget(poison);
        match poll {
            Poll::Pending => {
                // ORDERING: `Release` ends our access to the future for the
                // next poller's `Acquire`.
                inner.state.store(IDLE, Ordering::Release);
                Poll::Pending
            }
            Poll::Ready(output) => {
                // SAFETY: still `POLLING`: exclusive access. Dropping the
                // future in place is allowed for pinned data.
                inner
                    .slot
                    .with_mut(|slot| unsafe { *slot = Slot::Complete(output) });
                // ORDERING: `Release` publishes the output to every clone's
                // `Acquire` load.
                inner.state.store(COMPLETE, Ordering::Release);
                inner.notifier.wake_all();
                self.done = true;
                Poll::Ready(self.output())
            }
        }
    }
}

impl<F> FusedFuture for SharedPromise<F>
where
    F: Future,
    F::Output: Clone,
{
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<F: Future> Drop for SharedPromise<F> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let woken = self.inner.notifier.with_waiters(|w| {
            let woken = w.slots[key].take().is_none();
            w.free.push(key);
            woken
        });
        // ORDERING: a hint only: an extra wake-up is harmless.
        if woken && !self.done && self.inner.state.load(Ordering::Acquire) != COMPLETE {
            // We were woken to drive the source but will not: pass it on.
            self.inner.notifier.wake_all();
        }
    }
}

impl<F: Future> fmt::Debug for SharedPromise<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPromise")
            .field("settled", &self.is_settled())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
