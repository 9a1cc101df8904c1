//! `SharedPromise` (`alloc`): a cloneable promise; every clone gets the
//! settlement.
//!
//! # How it works
//!
//! The clones share an `Arc<Inner>`: a state word, the source future
//! (replaced by its output once it completes) and a [`Notifier`], which is
//! both the waiter list (one slot per clone that polled: its latest waker,
//! or `None` once that waker was taken to be woken) and the waker given to
//! the source.
//!
//! | state      | the slot holds       | who may touch it                     |
//! |------------|----------------------|--------------------------------------|
//! | `IDLE`     | the source           | nobody (the next poller CASes in)    |
//! | `POLLING`  | the source           | the one clone that moved it there    |
//! | `COMPLETE` | the output           | every clone through `&`; the last strong handle moves it out |
//! | `POISONED` | the source, or the output (the destructor panicked) | nobody but `Drop` |
//!
//! A clone's poll publishes its waker first, then tries `IDLE -> POLLING`.
//! The winner polls the source with the notifier's waker, which wakes
//! *every* registered waiter; the losers return `Pending` and are woken by
//! that waker or by the completion. `Pending` puts the state back to `IDLE`.
//! On `Ready` the poller drops the source in place, writes the output, then
//! **closes** the list: under its lock it empties the slots, marks the list
//! closed and only then stores `COMPLETE`. So a registration either lands
//! before the close (and is woken) or finds the list closed (and reads the
//! final state), and a clone that sees `COMPLETE` knows its slot is gone
//! (its `Drop` skips the lock). Nothing starts the source before some clone
//! is polled.
//!
//! A clone that is dropped unregisters its slot; if it had been woken but
//! not yet re-polled (it might have been the one to drive the source), it
//! passes the wake-up on to the remaining waiters, so none of them hangs.
//!
//! A clone that is ready tries `Arc::try_unwrap`: it succeeds only when no
//! other strong handle exists, and by moving the count to zero it stops
//! every [`WeakSharedPromise`] from upgrading, so the output can be moved
//! out instead of cloned. Otherwise the clone clones the output, then lets
//! go of its `Arc` (as futures' `Shared` does): either way a handle that
//! returned the output holds nothing, so the last handle still waiting
//! moves the output out rather than cloning it, and the state is freed as
//! soon as no waiting handle needs it. [`SharedPromise::peek`] lends the
//! output through a strong handle, whose existence keeps every other handle
//! from moving it out, and which cannot move it itself while it is
//! borrowed.
//!
//! # Foreign code
//!
//! Wakers (`clone`, `wake`, `drop`), the source (`poll`, `drop`) and the
//! output (`clone`) are foreign code: they may panic, or re-enter this
//! promise (drop or poll another clone, or the last one). None of it runs
//! under the lock, and the state is consistent before each call:
//!
//! - `register` clones the waker before locking and drops the waker it
//!   replaced after unlocking;
//! - waking takes the wakers out under the lock and wakes them after
//!   unlocking. A `wake` (or `drop`) that panics does not stop the others:
//!   with `std` each is caught, the rest are woken, then the first panic is
//!   resumed in whoever woke them (the thread that woke the source, or the
//!   poll that completed it: that clone's next poll returns the output).
//!   Without `std` nothing can be caught: the panic unwinds at once and a
//!   guard wakes the rest while it does (a second panic there aborts);
//! - if the source panics, in `poll` or in its destructor (run by the
//!   completing poll), a guard closes the list with `POISONED` and wakes
//!   every waiter while the panic unwinds; each clone's next poll then
//!   panics with "`SharedPromise`'s source panicked". The output of a source
//!   whose destructor panicked is kept and dropped with the last clone.
//!
//! # The lock, with and without `std`
//!
//! With `std` the waiter list is behind a `std::sync::Mutex`: a thread that
//! finds it taken sleeps rather than spins, which matters when many threads
//! wait on one promise (they all wake together). Without `std` there is
//! nothing to sleep on, so it is a spin lock; it is held only for a few
//! `Vec` edits, never across foreign code. Either way, do not wake the
//! source's waker from an interrupt handler that can pre-empt a poll or drop
//! of the same `SharedPromise` on the same core: the handler would wait for
//! a lock its own core holds. Settle from an interrupt through a
//! [`PromiseCell`] resolver instead: it never locks.
//!
//! [`PromiseCell`]: crate::PromiseCell

use alloc::sync::{Arc, Weak};
use alloc::task::Wake;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::mem::{self, ManuallyDrop};
use core::pin::Pin;
use core::ptr;
use core::task::{Context, Poll, Waker};

use futures_core::future::FusedFuture;

use super::inner::in_context;
#[cfg(not(feature = "std"))]
use super::inner::ContextSlot;
use crate::context::Captured;
use crate::panic::{self as panicking, Panic};
use crate::sync::{AtomicU32, Ordering, UnsafeCell};

const IDLE: u32 = 0;
const POLLING: u32 = 1;
const COMPLETE: u32 = 2;
const POISONED: u32 = 3;

/// A handle that is not done holds the shared state (a literal panic: no
/// formatting code in `no_std` builds).
#[cold]
#[inline(never)]
fn not_done_holds_state() -> ! {
    panic!("deferral: a SharedPromise handle that is not done holds the state")
}

/// What every poll panics with once the source panicked (a literal: no
/// formatting code in `no_std` builds).
#[cold]
#[inline(never)]
#[track_caller]
fn poisoned() -> ! {
    panic!("`SharedPromise`'s source panicked")
}

/// A cloneable, lazily started promise: the first clone that is polled starts
/// (polls) the source; every clone resolves to a clone of its output, except
/// the last one: a clone that is the only strong handle left when it becomes
/// ready (no other clone still waiting or unpolled, and no
/// [`WeakSharedPromise`] upgraded meanwhile) gets the output itself, moved,
/// not cloned. As with futures' `Shared`, a handle that returned the output
/// lets go of the shared state: it no longer counts, [`peek`](Self::peek)s
/// nothing and is [`ptr_eq`](Self::ptr_eq) to no other handle.
///
/// Every waiting clone's latest waker is woken; a dropped clone unregisters
/// its waker. Like a [`DeferredPromise`](crate::DeferredPromise), the source
/// runs in the context current when `new` was called (with `std`; see
/// [`context`](crate::context)), whichever clone happens to poll it.
///
/// If the source panics, in its `poll` or in its destructor, that poll's
/// panic propagates, every waiting clone is woken, and every later poll of
/// any clone panics with "`SharedPromise`'s source panicked".
///
/// [`peek`](Self::peek) reads the output without waiting,
/// [`downgrade`](Self::downgrade) makes a handle that does not keep the
/// promise (or its output) alive, [`ptr_eq`](Self::ptr_eq) tells whether two
/// handles share one promise.
///
/// ```
/// use deferral::{DeferredPromise, PromiseError, SharedPromise};
/// use futures::executor::block_on;
///
/// let a = SharedPromise::new(DeferredPromise::<String, PromiseError<()>>::new(|r| {
///     r.resolve("config".to_string())
/// }));
/// let b = a.clone();
/// assert_eq!(block_on(b), Ok("config".to_string()));
/// assert_eq!(block_on(a), Ok("config".to_string()));
/// ```
#[must_use = "a shared promise does nothing until one of its clones is polled"]
pub struct SharedPromise<F: Future> {
    /// The shared state; `None` once this handle returned the output (moved
    /// or cloned), which also makes it `done`.
    inner: Option<Arc<Inner<F>>>,
    /// This clone's slot in the waiter list, once it polled.
    key: Option<usize>,
    done: bool,
}

/// A weak handle on a [`SharedPromise`]: it does not keep the promise, its
/// source or its output alive, and [`upgrade`](Self::upgrade)s to a new
/// clone while some strong handle still exists.
///
/// ```
/// use deferral::{DeferredPromise, SharedPromise};
/// use futures::executor::block_on;
///
/// let shared = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(4));
/// let weak = shared.downgrade();
/// let clone = weak.upgrade().expect("`shared` is alive");
/// assert!(clone.ptr_eq(&shared));
/// assert_eq!(block_on(clone), Ok(4));
/// drop(shared);
/// assert!(weak.upgrade().is_none(), "no strong handle is left");
/// ```
pub struct WeakSharedPromise<F: Future>(Weak<Inner<F>>);

enum Slot<F: Future> {
    Running(F),
    Complete(F::Output),
}

struct Inner<F: Future> {
    state: AtomicU32,
    slot: UnsafeCell<Slot<F>>,
    notifier: Arc<Notifier>,
    /// The context current at `new`: the source is polled and dropped in
    /// it, whichever clone drives it (`Send + Sync`, like the snapshot).
    context: Captured,
}

// SAFETY: the future is touched only by the clone that moved `state` to
// `POLLING` (one thread at a time, so `F: Send` suffices); after `COMPLETE`
// the output is only read through `&`, from any thread, so it must be
// `Send + Sync`. The other fields are `Send + Sync` themselves (the atomic
// state, the notifier, the captured context: a `Snapshot` or `()`).
unsafe impl<F: Future + Send> Send for Inner<F> where F::Output: Send + Sync {}
// SAFETY: as for `Send`.
unsafe impl<F: Future + Send> Sync for Inner<F> where F::Output: Send + Sync {}

impl<F: Future> Inner<F> {
    /// The output, lent.
    ///
    /// # Safety
    ///
    /// `COMPLETE` was read with `Acquire`, and the reference does not
    /// outlive the strong handle it was reached through (while one exists
    /// besides the caller's, nobody moves the output out).
    unsafe fn output(&self) -> &F::Output {
        // SAFETY: as the caller guarantees, the slot holds the output; it is
        // only ever moved out by the owner of the last strong count, so not
        // while the caller's handle lends it. Shared reads only.
        self.slot.with(|slot| match unsafe { &*slot } {
            Slot::Complete(output) => output,
            Slot::Running(_) => crate::promise::unreachable_state(),
        })
    }

    /// The output, moved out of an `Inner` nobody else can reach. Only
    /// after `COMPLETE` was read with `Acquire`.
    // Without `std` the captured context is `()`: its `drop` is a no-op.
    #[cfg_attr(not(feature = "std"), allow(dropping_copy_types))]
    fn into_output(self) -> F::Output {
        let Inner {
            slot,
            notifier,
            context,
            state: _,
        } = self;
        let output = match slot.into_inner() {
            Slot::Complete(output) => output,
            Slot::Running(_) => crate::promise::unreachable_state(),
        };
        // The rest is dropped while `output` is a local: if a context
        // value's (or a waker's) destructor panics, the unwinding drops the
        // output (a result moved out before a drop that unwinds would
        // leak, rust-lang/rust#47949).
        drop(notifier);
        drop(context);
        output
    }
}

// ------------------------------------------------------------------- lock

/// The waiter list's lock, with `std`: waiting threads sleep.
#[cfg(feature = "std")]
struct Lock<T>(crate::sync::Mutex<T>);

#[cfg(feature = "std")]
impl<T> Lock<T> {
    fn new(value: T) -> Self {
        Lock(crate::sync::Mutex::new(value))
    }

    /// Runs `f` on the locked value. `f` must not run foreign code.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // Poisoning cannot happen: `f` runs no foreign code and leaves the
        // list valid at every step (only an allocation failure could unwind
        // out of it, and that aborts).
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

/// The waiter list's lock, without `std`: a spin lock, held only for a few
/// `Vec` edits.
#[cfg(not(feature = "std"))]
struct Lock<T> {
    locked: crate::sync::AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only accessed while `locked` is held (`with`), by one
// thread at a time, like a `Mutex<T>`.
#[cfg(not(feature = "std"))]
unsafe impl<T: Send> Send for Lock<T> {}
// SAFETY: as for `Send`.
#[cfg(not(feature = "std"))]
unsafe impl<T: Send> Sync for Lock<T> {}

#[cfg(not(feature = "std"))]
impl<T> Lock<T> {
    fn new(value: T) -> Self {
        Lock {
            locked: crate::sync::AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the locked value. `f` must not run foreign code.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // ORDERING: `Acquire` on taking the lock pairs with the `Release` of
        // the previous unlock, so its edits are visible; a failed attempt
        // reads nothing (`Relaxed`).
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            crate::sync::spin_loop();
        }
        struct Unlock<'a>(&'a crate::sync::AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                // ORDERING: `Release` publishes our edits to the next locker.
                self.0.store(false, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.locked);
        // SAFETY: we hold the lock: no other access to the value exists.
        self.value.with_mut(|value| f(unsafe { &mut *value }))
    }
}

// --------------------------------------------------------------- notifier

/// The waiter list, and the waker given to the source.
struct Notifier {
    waiters: Lock<Waiters>,
}

#[derive(Default)]
struct Waiters {
    /// One slot per registered clone: its latest waker, or `None` once the
    /// waker was taken to be woken (and the clone has not polled since).
    slots: Vec<Option<Waker>>,
    /// Slots of dropped clones, for reuse.
    free: Vec<usize>,
    /// Set, with the final state, when the source completed or panicked:
    /// the slots were emptied and nothing registers any more.
    closed: bool,
}

impl Notifier {
    /// Publishes `waker` in the slot `*key` (allocating one if `None`),
    /// replacing the previous waker. Returns `false`, registering nothing,
    /// if the list is closed: the state is then final.
    fn register(&self, key: &mut Option<usize>, waker: &Waker) -> bool {
        // Foreign code, before locking. Always replacing keeps the latest
        // waker (a `will_wake` check would need the old one, under the
        // lock, and would save only this clone, not the lock).
        let new = waker.clone();
        let (registered, replaced) = self.waiters.with(|w| {
            if w.closed {
                return (false, Some(new));
            }
            let replaced = match *key {
                Some(k) => w.slots[k].replace(new),
                None => {
                    let k = match w.free.pop() {
                        Some(k) => {
                            w.slots[k] = Some(new);
                            k
                        }
                        None => {
                            w.slots.push(Some(new));
                            w.slots.len() - 1
                        }
                    };
                    *key = Some(k);
                    None
                }
            };
            (true, replaced)
        });
        // Foreign code, after unlocking; the registration stands even if
        // this panics.
        drop(replaced);
        registered
    }

    /// Frees slot `key`. Returns its waker (to be dropped after unlocking)
    /// and whether it had been woken without the clone polling since.
    fn unregister(&self, key: usize) -> (Option<Waker>, bool) {
        self.waiters.with(|w| {
            if w.closed {
                return (None, false);
            }
            let waker = w.slots[key].take();
            w.free.push(key);
            let woken = waker.is_none();
            (waker, woken)
        })
    }

    /// Wakes every registered waiter, outside the lock. Returns the first
    /// panic of a `wake`, after all were woken (see [`deliver`]).
    fn wake_all(&self) -> Option<Panic> {
        let wakers: Vec<Waker> = self
            .waiters
            .with(|w| w.slots.iter_mut().filter_map(Option::take).collect());
        deliver(wakers.into_iter().map(|waker| (waker, true)))
    }

    /// Empties and closes the list, then publishes `final_state` (`COMPLETE`
    /// or `POISONED`) in `state`, all under the lock. Returns the wakers, to
    /// be woken after unlocking.
    fn close(&self, state: &AtomicU32, final_state: u32) -> Vec<Option<Waker>> {
        self.waiters.with(|w| {
            w.closed = true;
            w.free = Vec::new();
            let slots = mem::take(&mut w.slots);
            // ORDERING: `Release`, after closing, inside the critical
            // section: a clone that reads the final state with `Acquire`
            // also sees the list closed and emptied (so it may skip the
            // lock), and the output written before this call. A
            // registration that takes the lock after us sees `closed`; one
            // that took it before us left its waker in `slots`.
            state.store(final_state, Ordering::Release);
            slots
        })
    }
}

impl Wake for Notifier {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(panic) = self.wake_all() {
            // Every waiter was woken; the panic goes to whoever woke the
            // source.
            panicking::resume(panic);
        }
    }
}

/// The slots of a closed list as deliveries: every waker is woken except
/// `own`'s (the clone doing the closing), which is only dropped.
fn deliveries(
    slots: Vec<Option<Waker>>,
    own: Option<usize>,
) -> impl Iterator<Item = (Waker, bool)> {
    slots
        .into_iter()
        .enumerate()
        .filter_map(move |(k, waker)| waker.map(|w| (w, Some(k) != own)))
}

/// Wakes (`true`) or drops (`false`) each waker; the lock is not held.
///
/// A `wake` or `drop` that panics does not stop the others. With `std` each
/// is caught and the first panic is returned, for the caller to resume once
/// every waker was delivered (later ones are dropped: only one can be
/// resumed). Without `std` nothing can be caught: the panic unwinds out of
/// here at once, and the guard delivers the rest while it unwinds (a second
/// panic then aborts).
fn deliver<I: Iterator<Item = (Waker, bool)>>(wakers: I) -> Option<Panic> {
    fn deliver_one(waker: Waker, wake: bool) {
        if wake { waker.wake() } else { drop(waker) }
    }
    struct Rest<I: Iterator<Item = (Waker, bool)>>(I);
    impl<I: Iterator<Item = (Waker, bool)>> Drop for Rest<I> {
        fn drop(&mut self) {
            // Empty unless a delivery is unwinding (only without `std`).
            for (waker, wake) in &mut self.0 {
                deliver_one(waker, wake);
            }
        }
    }
    let mut rest = Rest(wakers);
    let mut first = None;
    for (waker, wake) in &mut rest.0 {
        if let Err(panic) = panicking::catch(|| deliver_one(waker, wake)) {
            if first.is_none() {
                first = Some(panic);
            }
        }
    }
    first
}

// ---------------------------------------------------------------- promise

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
            inner: Some(Arc::new(Inner {
                state: AtomicU32::new(IDLE),
                slot: UnsafeCell::new(Slot::Running(future)),
                notifier: Arc::new(Notifier {
                    waiters: Lock::new(Waiters::default()),
                }),
                context: Captured::capture(),
            })),
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
        self.done || self.shared().state.load(Ordering::Acquire) == COMPLETE
    }

    /// The output, if the source completed, without waiting (and without
    /// starting the source). `None` while it has not completed, and for a
    /// handle that already returned the output (it holds nothing, as in
    /// futures' `Shared`).
    ///
    /// # Panics
    ///
    /// If the source panicked, like `poll`.
    ///
    /// ```
    /// use deferral::{DeferredPromise, SharedPromise};
    /// use futures::executor::block_on;
    ///
    /// let a = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(3));
    /// let b = a.clone();
    /// assert_eq!(b.peek(), None, "nothing started it yet");
    /// assert_eq!(block_on(a), Ok(3));
    /// assert_eq!(b.peek(), Some(&Ok(3)));
    /// ```
    pub fn peek(&self) -> Option<&F::Output> {
        let inner = self.inner.as_ref()?;
        // ORDERING: `Acquire` pairs with the final state's `Release` (in
        // `Notifier::close`), so the output is visible.
        match inner.state.load(Ordering::Acquire) {
            // SAFETY: `COMPLETE` read with `Acquire`; the reference lives as
            // long as `&self`, a strong handle: no other handle moves the
            // output out while it exists, and it cannot while borrowed.
            COMPLETE => Some(unsafe { inner.output() }),
            POISONED => poisoned(),
            _ => None,
        }
    }

    /// A weak handle on this promise (see [`WeakSharedPromise`]). For a
    /// handle that returned the output, one that never upgrades.
    ///
    /// ```
    /// use deferral::{DeferredPromise, SharedPromise};
    ///
    /// let shared = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1));
    /// let weak = shared.downgrade();
    /// assert!(weak.upgrade().is_some());
    /// drop(shared);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn downgrade(&self) -> WeakSharedPromise<F> {
        WeakSharedPromise(self.inner.as_ref().map_or_else(Weak::new, Arc::downgrade))
    }

    /// `true` if both handles are clones of one promise (`false` if either
    /// returned the output: it no longer belongs to any, as in futures'
    /// `Shared`).
    ///
    /// ```
    /// use deferral::{DeferredPromise, SharedPromise};
    ///
    /// let a = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1));
    /// let b = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1));
    /// assert!(a.ptr_eq(&a.clone()));
    /// assert!(!a.ptr_eq(&b));
    /// ```
    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.inner, &other.inner) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The shared state. Only for a handle that is not done (a done one may
    /// have moved the output out and hold nothing).
    fn shared(&self) -> &Inner<F> {
        self.inner
            .as_deref()
            .unwrap_or_else(|| not_done_holds_state())
    }

    /// The output: moved out if this is the last strong handle, cloned
    /// otherwise; either way this handle then holds nothing. Only after
    /// `COMPLETE` was read with `Acquire`.
    fn ready(&mut self) -> Poll<F::Output>
    where
        F::Output: Clone,
    {
        let inner = self.inner.take().unwrap_or_else(|| not_done_holds_state());
        match Arc::try_unwrap(inner) {
            // No other strong handle, and none can appear: weak handles do
            // not upgrade from a count of zero. Move the output out.
            Ok(inner) => {
                self.done = true;
                Poll::Ready(inner.into_output())
            }
            Err(inner) => {
                let inner = self.inner.insert(inner);
                // SAFETY: the caller read `COMPLETE` with `Acquire`; we hold
                // a strong handle while the reference lives.
                let output = unsafe { inner.output() }.clone();
                // After the clone (foreign code): if it panics, the next
                // poll tries again. Then let go of the state, the handle
                // consistent first.
                self.done = true;
                let ours = self.inner.take();
                // If ours is the last strong count by now (the other handle
                // let go meanwhile, or the output's `Clone` dropped it), this
                // drops the stored output: foreign code, with our clone
                // alive. Its panic must not unwind through the clone (a
                // second panic there would abort): with `std` it is caught,
                // the clone dropped outside any unwind, then it resumes.
                if let Err(panic) = panicking::catch(|| drop(ours)) {
                    drop(output);
                    panicking::resume(panic);
                }
                Poll::Ready(output)
            }
        }
    }

    /// Called when the list turned out to be closed: the state is final.
    fn settled(&mut self) -> Poll<F::Output>
    where
        F::Output: Clone,
    {
        // ORDERING: `Acquire`: we took the lock after the closer released
        // it, and the closer stored the final state before that.
        match self.shared().state.load(Ordering::Acquire) {
            COMPLETE => self.ready(),
            _ => poisoned(),
        }
    }

    /// Polls the source; the state is `POLLING` and it is ours.
    fn drive(&mut self) -> Poll<F::Output>
    where
        F::Output: Clone,
    {
        /// Armed while the source's `poll` or destructor runs: unwinding out
        /// of either closes the list with `POISONED` and wakes every waiter.
        struct Poison<'a> {
            notifier: &'a Notifier,
            state: &'a AtomicU32,
            own: Option<usize>,
        }
        impl Drop for Poison<'_> {
            fn drop(&mut self) {
                let slots = self.notifier.close(self.state, POISONED);
                // We are unwinding already: a waker's panic cannot be
                // resumed (with `std` it is caught and dropped here).
                let _ = deliver(deliveries(slots, self.own));
            }
        }

        let inner = self
            .inner
            .as_deref()
            .unwrap_or_else(|| not_done_holds_state());
        let poison = Poison {
            notifier: &inner.notifier,
            state: &inner.state,
            own: self.key,
        };
        let waker = Waker::from(inner.notifier.clone());
        // SAFETY: the state is `POLLING` and we moved it there: nobody else
        // touches the slot until we leave it.
        let poll = inner.slot.with_mut(|slot| match unsafe { &mut *slot } {
            Slot::Running(future) => in_context(&inner.context, || {
                // SAFETY: the future is pinned: it lives in the `Arc`'s
                // allocation, is never moved, and is dropped in place.
                unsafe { Pin::new_unchecked(future) }.poll(&mut Context::from_waker(&waker))
            }),
            Slot::Complete(_) => crate::promise::unreachable_state(),
        });
        let output = match poll {
            Poll::Ready(output) => output,
            Poll::Pending => {
                mem::forget(poison);
                // ORDERING: `Release` ends our access to the future for the
                // next poller's `Acquire` CAS.
                inner.state.store(IDLE, Ordering::Release);
                return Poll::Pending;
            }
        };

        /// Writes the output over the (dropped) source when dropped: after
        /// the source's destructor returned, or while it unwinds.
        struct Store<F: Future> {
            slot: *mut Slot<F>,
            output: ManuallyDrop<F::Output>,
        }
        impl<F: Future> Drop for Store<F> {
            fn drop(&mut self) {
                // SAFETY: `slot` is valid and ours (`POLLING`); the source
                // it held was dropped in place, so it is overwritten without
                // being dropped again. `output` is taken exactly once, here.
                unsafe {
                    let output = ManuallyDrop::take(&mut self.output);
                    ptr::write(self.slot, Slot::Complete(output));
                }
            }
        }
        inner.slot.with_mut(|slot| {
            // SAFETY: `POLLING` and ours, as above.
            let Slot::Running(future) = (unsafe { &mut *slot }) else {
                crate::promise::unreachable_state();
            };
            let future: *mut F = future;
            let store = Store {
                slot,
                output: ManuallyDrop::new(output),
            };
            // In the creation context, like its polls.
            in_context(&inner.context, || {
                // SAFETY: the source is dropped in place (pinned data may
                // be), exactly once, and never touched again: `store`
                // overwrites its slot, even if this destructor panics.
                unsafe { ptr::drop_in_place(future) }
            });
            drop(store);
        });
        mem::forget(poison);

        let slots = inner.notifier.close(&inner.state, COMPLETE);
        let own = self.key.take();
        if let Some(panic) = deliver(deliveries(slots, own)) {
            // Every waiter was woken; our next poll returns the output.
            panicking::resume(panic);
        }
        self.ready()
    }
}

impl<F: Future> Clone for SharedPromise<F> {
    /// Another handle on the same promise (it has not polled yet). A clone
    /// of a handle that returned the output is done too: that handle holds
    /// nothing to share.
    fn clone(&self) -> Self {
        SharedPromise {
            inner: self.inner.clone(),
            key: None,
            done: self.inner.is_none(),
        }
    }
}

impl<F: Future> WeakSharedPromise<F> {
    /// A new clone of the promise, unless no strong handle is left (all
    /// were dropped, or the last one moved the output out).
    ///
    /// ```
    /// use deferral::{DeferredPromise, SharedPromise};
    /// use futures::executor::block_on;
    ///
    /// let shared = SharedPromise::new(DeferredPromise::<String, ()>::resolved("v".into()));
    /// let weak = shared.downgrade();
    /// // The last strong handle moves the output out: nothing is left to upgrade to.
    /// assert_eq!(block_on(shared), Ok("v".to_string()));
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<SharedPromise<F>> {
        self.0.upgrade().map(|inner| SharedPromise {
            inner: Some(inner),
            key: None,
            done: false,
        })
    }
}

impl<F: Future> Clone for WeakSharedPromise<F> {
    /// Another weak handle on the same promise.
    fn clone(&self) -> Self {
        WeakSharedPromise(self.0.clone())
    }
}

impl<F: Future> fmt::Debug for WeakSharedPromise<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSharedPromise")
            .field("strong", &self.0.strong_count())
            .finish_non_exhaustive()
    }
}

impl<F> Future for SharedPromise<F>
where
    F: Future,
    F::Output: Clone,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `SharedPromise` is `Unpin`: the source is pinned in the `Arc`.
        let this = self.get_mut();
        if this.done {
            panic!("`SharedPromise` polled after completion");
        }
        let inner = this
            .inner
            .as_deref()
            .unwrap_or_else(|| not_done_holds_state());
        // ORDERING: `Acquire` pairs with the `Release` store of the final
        // state (in `Notifier::close`), so the output is visible.
        match inner.state.load(Ordering::Acquire) {
            COMPLETE => return this.ready(),
            POISONED => poisoned(),
            _ => {}
        }
        // Publish the waker first, then try to become the poller: a poller
        // that finishes after our registration wakes us, one that finished
        // before it closed the list.
        if !inner.notifier.register(&mut this.key, cx.waker()) {
            return this.settled();
        }
        // ORDERING: `Acquire` on success pairs with the previous poller's
        // `Release` of `IDLE` (its accesses to the future happen before
        // ours); on failure, with the final state's `Release` (see above).
        match inner
            .state
            .compare_exchange(IDLE, POLLING, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => this.drive(),
            // Another clone is polling: it, or the source's waker, wakes us.
            Err(POLLING) => Poll::Pending,
            Err(COMPLETE) => this.ready(),
            Err(_) => poisoned(),
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
        let (Some(key), Some(inner), false) = (self.key, self.inner.as_deref(), self.done) else {
            return;
        };
        // ORDERING: `Acquire` pairs with the final state's `Release`, stored
        // after the list was closed and emptied: our slot is gone already.
        if matches!(inner.state.load(Ordering::Acquire), COMPLETE | POISONED) {
            return;
        }
        let (waker, woken) = inner.notifier.unregister(key);
        if woken {
            // We were woken (maybe to drive the source) and will not poll
            // again: pass the wake-up on.
            if let Some(panic) = inner.notifier.wake_all() {
                panicking::resume_unless_panicking(panic);
            }
        }
        // Our waker, if not woken: foreign code, after unlocking.
        if let Err(panic) = panicking::catch(|| drop(waker)) {
            panicking::resume_unless_panicking(panic);
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
