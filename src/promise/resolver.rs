//! `Resolver`: the settling half of a promise (the JS executor's `resolve`
//! and `reject`).

use core::cell::Cell;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::error::{Refusal, SettleError};
use super::slot::{RawSlot, Settled};
#[cfg(feature = "alloc")]
use crate::sync::Arc;

/// Where a resolver writes its settlement.
enum Target<'a, T, E> {
    /// A slot on the stack of the promise's first poll
    /// ([`DeferredPromise::new`](crate::DeferredPromise::new)): the resolver
    /// cannot leave the executor, no shared state exists.
    Local(
        *mut Option<Result<T, E>>,
        PhantomData<&'a mut Option<Result<T, E>>>,
    ),
    /// A [`PromiseCell`](crate::PromiseCell), for one generation.
    Cell(&'a RawSlot<T, E>, u32),
    /// Heap-shared state (`DeferredPromise::detached`).
    #[cfg(feature = "alloc")]
    Shared(Arc<RawSlot<T, E>>, u32),
}

/// The settling half of a promise: `resolve`, `reject`, or adopt a future.
///
/// The first settlement wins; a later one is refused and hands the value back
/// ([`SettleError`]). A resolver dropped without settling makes its promise
/// fail with [`PromiseError::Abandoned`](crate::PromiseError::Abandoned):
/// never a hang, never a panic.
///
/// Where it may go depends on how the promise was made:
/// - [`DeferredPromise::new`](crate::DeferredPromise::new): only inside the
///   executor (the `'a` lifetime keeps it there; no shared state, no heap);
/// - [`PromiseCell`](crate::PromiseCell): anywhere the cell's borrow reaches
///   (`'static` for a `static` cell): other tasks, threads, interrupt handlers;
/// - `DeferredPromise::detached` (`alloc`): anywhere, `'static`.
///
/// A resolver is `Send` when `T` and `E` are, and never `Sync` (settling
/// takes `&self`, but only one place may hold it).
///
/// The resolver of [`DeferredPromise::new`](crate::DeferredPromise::new)
/// cannot escape its executor — this does not compile ("borrowed data
/// escapes outside of closure"; use `DeferredPromise::detached` or a
/// [`PromiseCell`](crate::PromiseCell) for a resolver that leaves):
///
/// ```compile_fail
/// use deferral::{DeferredPromise, Resolver};
///
/// let mut stash: Option<Resolver<'_, u8, ()>> = None;
/// let p = DeferredPromise::<u8, PromiseError<()>>::new(|r| stash = Some(r));
/// ```
///
/// and a resolver cannot be shared between threads (it is `!Sync`):
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<deferral::Resolver<'static, u8, ()>>();
/// ```
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
/// use deferral::promise::Refusal;
/// use futures::executor::block_on;
///
/// let p = DeferredPromise::<u32, PromiseError<String>>::new(|resolver| {
///     resolver.resolve(1).unwrap();
///     let refused = resolver.reject("too late".into()).unwrap_err();
///     assert_eq!(refused.reason(), Refusal::AlreadySettled);
///     assert_eq!(refused.into_value(), Err("too late".to_string()));
/// });
/// assert_eq!(block_on(p), Ok(1));
/// ```
pub struct Resolver<'a, T, E> {
    /// Dropped by hand in `Drop` (an `Arc` only for `Shared`), so that the
    /// drop of a local or cell resolver is inline, with no drop glue call.
    target: core::mem::ManuallyDrop<Target<'a, T, E>>,
    phase: Cell<Phase>,
}

/// Where a resolver is in its life. Once it is not `Live` it never touches
/// shared state again: that, not the cell's generation counter, is what
/// keeps a finished resolver away from a reused cell (see `promise::cell`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Holds its generation: may settle, or abandon on drop.
    Live,
    /// Its settlement was accepted.
    Settled,
    /// It found its promise dropped and freed the cell.
    Released,
}

// SAFETY: the `Local` pointer is an exclusive borrow (`&'a mut`) of the slot,
// so moving the resolver moves that borrow, which is `Send` when the slot's
// contents are; the other targets are `Send` (`RawSlot` is `Sync` when
// `T, E: Send`). The resolver stays `!Sync` (raw pointer, `Cell`): two
// threads can never call `resolve` on one resolver at once.
unsafe impl<T: Send, E: Send> Send for Resolver<'_, T, E> {}

impl<'a, T, E> Resolver<'a, T, E> {
    pub(crate) fn local(slot: &'a mut Option<Result<T, E>>) -> Self {
        Self::with(Target::Local(slot, PhantomData))
    }

    pub(crate) fn cell(slot: &'a RawSlot<T, E>, generation: u32) -> Self {
        Self::with(Target::Cell(slot, generation))
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn shared(slot: Arc<RawSlot<T, E>>, generation: u32) -> Self {
        Self::with(Target::Shared(slot, generation))
    }

    fn with(target: Target<'a, T, E>) -> Self {
        Self {
            target: core::mem::ManuallyDrop::new(target),
            phase: Cell::new(Phase::Live),
        }
    }

    /// Fulfils the promise with `value`.
    ///
    /// Refused (the value handed back, as `Ok(value)`) when the promise is
    /// already settled, when the resolver is stale (its cell was reused) or
    /// when the promise was dropped. `resolve`, `reject` and `settle` all
    /// return the same type, so their results unify.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    ///
    /// let p = DeferredPromise::<&str, PromiseError<()>>::new(|r| r.resolve("done"));
    /// assert_eq!(futures::executor::block_on(p), Ok("done"));
    /// ```
    #[inline]
    pub fn resolve(&self, value: T) -> Result<(), SettleError<Result<T, E>>> {
        self.settle(Ok(value))
    }

    /// Rejects the promise with `error`.
    ///
    /// Refused (the error handed back, as `Err(error)`) in the same cases
    /// as [`resolve`](Resolver::resolve).
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    ///
    /// let p = DeferredPromise::<u8, PromiseError<&str>>::new(|r| r.reject("boom"));
    /// assert_eq!(futures::executor::block_on(p), Err(PromiseError::Rejected("boom")));
    /// ```
    #[inline]
    pub fn reject(&self, error: E) -> Result<(), SettleError<Result<T, E>>> {
        self.settle(Err(error))
    }

    /// Settles with `outcome`: `Ok` fulfils, `Err` rejects.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    ///
    /// let p = DeferredPromise::<u8, PromiseError<()>>::new(|r| r.settle(Ok(4)));
    /// assert_eq!(futures::executor::block_on(p), Ok(4));
    /// ```
    #[inline]
    pub fn settle(&self, outcome: Result<T, E>) -> Result<(), SettleError<Result<T, E>>> {
        let slot = match (&*self.target, self.phase.get()) {
            (Target::Local(slot, _), _) => {
                // SAFETY: the pointer comes from an exclusive borrow that
                // lives for `'a` (see `local`), and the resolver is `!Sync`,
                // so this is the only access to the slot right now.
                let slot = unsafe { &mut **slot };
                if slot.is_some() {
                    return Err(SettleError::new(outcome, Refusal::AlreadySettled));
                }
                *slot = Some(outcome);
                self.phase.set(Phase::Settled);
                return Ok(());
            }
            (_, Phase::Released) => return Err(SettleError::new(outcome, Refusal::Closed)),
            (Target::Cell(slot, generation), phase) => (*slot, *generation, phase),
            #[cfg(feature = "alloc")]
            (Target::Shared(slot, generation), phase) => (&**slot, *generation, phase),
        };
        let (slot, generation, phase) = slot;
        if phase == Phase::Settled {
            // Finished: never touch the cell again. Still ours if it holds
            // our settlement; otherwise it moved on.
            let reason = if slot.peek(generation, false).is_settled() {
                Refusal::AlreadySettled
            } else {
                Refusal::Stale
            };
            return Err(SettleError::new(outcome, reason));
        }
        match slot.settle(generation, outcome) {
            Settled::Accepted => {
                // Recorded before the wake runs foreign code: if it panics,
                // our drop must not abandon a settled generation.
                self.phase.set(Phase::Settled);
                slot.wake();
                Ok(())
            }
            Settled::Refused((outcome, reason)) => Err(SettleError::new(outcome, reason)),
            Settled::ClosedAndFreed(outcome) => {
                self.phase.set(Phase::Released);
                Err(SettleError::new(outcome, Refusal::Closed))
            }
        }
    }

    /// `true` when a settlement can no longer reach anyone: the promise was
    /// dropped (or already took a settlement), like `oneshot`'s
    /// `Sender::is_closed`. A producer can check it to skip work nobody
    /// waits for. Always `false` for the resolver of
    /// [`DeferredPromise::new`](crate::DeferredPromise::new), whose promise
    /// is the one running the executor.
    ///
    /// ```
    /// use deferral::PromiseCell;
    ///
    /// static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    /// let (promise, resolver) = CELL.promise().unwrap();
    /// assert!(!resolver.is_closed());
    /// drop(promise); // the waiter timed out, say
    /// assert!(resolver.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        match (&*self.target, self.phase.get()) {
            (Target::Local(..), _) => false,
            (_, Phase::Released) => true,
            (Target::Cell(slot, generation), _) => slot.is_closed(*generation),
            #[cfg(feature = "alloc")]
            (Target::Shared(slot, generation), _) => slot.is_closed(*generation),
        }
    }

    /// Adopts `future`: returns a future that drives it and settles this
    /// promise with its output (the JS executor's `res(fetch(..))`).
    ///
    /// Return it from the executor of `DeferredPromise::detached` or
    /// [`PromiseCell::lazy`](crate::PromiseCell::lazy) and the promise
    /// drives it ([`ExecutorReturn`](crate::promise::ExecutorReturn)): `detached(|res|
    /// res.adopt(fetch(..)))` resolves to `fetch`'s output. Anywhere else,
    /// someone must poll the returned [`Adopt`] (await it, spawn it, or join
    /// it with other work); dropping it before it finishes drops the
    /// resolver, which abandons the promise. The resolver of
    /// [`DeferredPromise::new`](crate::DeferredPromise::new) cannot adopt
    /// (a compile error): use
    /// [`DeferredPromise::lazy`](crate::DeferredPromise::lazy), which *is*
    /// the executor `res => res(future)`.
    ///
    /// ```
    /// use deferral::PromiseCell;
    /// use futures::executor::block_on;
    ///
    /// static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    /// let (promise, resolver) = CELL.promise().unwrap();
    /// let fetch = async { Ok::<u32, ()>(200) };
    /// let (driven, status) = block_on(futures::future::join(resolver.adopt(fetch), promise));
    /// assert!(driven.is_ok());
    /// assert_eq!(status, Ok(200));
    /// ```
    pub fn adopt<F>(self, future: F) -> Adopt<'a, F, T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        Adopt {
            future,
            resolver: Some(self),
        }
    }

    /// `true` once this resolver's settlement was accepted.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    ///
    /// let p = DeferredPromise::<u8, PromiseError<()>>::new(|r| {
    ///     assert!(!r.is_settled());
    ///     r.resolve(1).unwrap();
    ///     assert!(r.is_settled());
    /// });
    /// # drop(p);
    /// ```
    pub fn is_settled(&self) -> bool {
        self.phase.get() == Phase::Settled
    }
}

impl<T, E> Drop for Resolver<'_, T, E> {
    #[inline(always)]
    fn drop(&mut self) {
        // The common cases (settled; a local resolver) stay inline; only an
        // unsettled shared resolver reaches the cell.
        match &*self.target {
            // An empty local slot is read as "abandoned" by the promise.
            Target::Local(..) => {}
            Target::Cell(slot, generation) => {
                if self.phase.get() == Phase::Live {
                    abandon(slot, *generation);
                }
            }
            #[cfg(feature = "alloc")]
            Target::Shared(..) => drop_shared(self),
        }
    }
}

/// The drop of a resolver over `Arc`-shared state: abandon if unfinished,
/// then release the `Arc` (out of line: it may free the allocation).
#[cfg(feature = "alloc")]
#[inline(never)]
fn drop_shared<T, E>(resolver: &mut Resolver<'_, T, E>) {
    // SAFETY: called once, from `Drop`; the target is never used after.
    let target = unsafe { core::mem::ManuallyDrop::take(&mut resolver.target) };
    if let Target::Shared(slot, generation) = target {
        if resolver.phase.get() == Phase::Live {
            abandon(&slot, generation);
        }
        drop(slot);
    }
}

/// An unfinished resolver's drop: mark the generation abandoned (or free a
/// closed one) and wake the promise.
#[inline(never)]
fn abandon<T, E>(slot: &RawSlot<T, E>, generation: u32) {
    if slot.abandon(generation) {
        slot.wake();
    }
}

impl<T, E> fmt::Debug for Resolver<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let storage = match &*self.target {
            Target::Local(..) => "local",
            Target::Cell(..) => "cell",
            #[cfg(feature = "alloc")]
            Target::Shared(..) => "shared",
        };
        f.debug_struct("Resolver")
            .field("storage", &storage)
            .field("phase", &self.phase.get())
            .finish()
    }
}

/// A future that drives an adopted future and settles a [`Resolver`] with its
/// output; made by [`Resolver::adopt`].
///
/// Resolves to `Ok(())` when the settlement was accepted, or to the refused
/// outcome.
///
/// ```
/// use deferral::PromiseCell;
/// use futures::executor::block_on;
///
/// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
/// let (promise, resolver) = CELL.promise().unwrap();
/// block_on(resolver.adopt(async { Ok(5) })).unwrap();
/// assert_eq!(block_on(promise), Ok(5));
/// ```
#[must_use = "an adopted future settles nothing unless the `Adopt` is polled"]
pub struct Adopt<'a, F, T, E> {
    /// Structurally pinned (see `project`).
    future: F,
    resolver: Option<Resolver<'a, T, E>>,
}

// Only the future is pinned: the resolver may move.
impl<F: Unpin, T, E> Unpin for Adopt<'_, F, T, E> {}

impl<'a, F, T, E> Adopt<'a, F, T, E> {
    /// The pinned future and the resolver.
    fn project(self: Pin<&mut Self>) -> (Pin<&mut F>, &mut Option<Resolver<'a, T, E>>) {
        // SAFETY: `future` is structurally pinned: never moved out of a
        // pinned `Adopt` (no by-value accessor, no `Drop` impl, not
        // `repr(packed)`), and `Adopt` is `Unpin` only if `F` is (above).
        unsafe {
            let this = self.get_unchecked_mut();
            (Pin::new_unchecked(&mut this.future), &mut this.resolver)
        }
    }
}

impl<F, T, E> Adopt<'_, F, T, E> {
    /// `true` once it handed its outcome to the resolver (even if the
    /// settlement's wake then panicked): polling it again would panic.
    pub(crate) fn is_finished(&self) -> bool {
        self.resolver.is_none()
    }
}

impl<F, T, E> Future for Adopt<'_, F, T, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<(), SettleError<Result<T, E>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (future, resolver) = self.project();
        if resolver.is_none() {
            panic!("`Adopt` polled after completion");
        }
        let outcome = core::task::ready!(future.poll(cx));
        match resolver.take() {
            Some(resolver) => Poll::Ready(resolver.settle(outcome)),
            None => panic!("`Adopt` polled after completion"),
        }
    }
}

impl<F, T, E> fmt::Debug for Adopt<'_, F, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adopt")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}
