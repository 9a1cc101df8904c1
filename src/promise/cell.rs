//! `PromiseCell`: a reusable, `static` home for one promise/resolver pair,
//! and the futures of its promises ([`CellPromise`], [`CellExecutor`]). The
//! protocol itself is `promise::slot`'s.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::deferred::{DeferredPromise, polled_after_completion};
use super::error::{CellBusy, PromiseError};
use super::executor::{ExecutorReturn, drive_adopted};
#[cfg(not(feature = "std"))]
use super::inner::ContextSlot;
use super::inner::{PromiseFuture, in_context, sealed::Sealed};
use super::resolver::Resolver;
use super::slot::{RawSlot, SlotFuture};
use super::state::PromiseState;
use crate::context::Captured;

/// A reusable, `const`-constructible home for one promise/resolver pair at a
/// time: no heap, lock-free, the resolver may settle from another thread or an
/// interrupt handler.
///
/// [`promise`](PromiseCell::promise) hands out a promise and a resolver tagged
/// with the cell's current generation. Once both are done (the promise took
/// its settlement or was dropped; the resolver settled or was dropped) the
/// cell is free again and the generation moves on, so a resolver kept from an
/// earlier use is refused ([`Refusal::Stale`](crate::promise::Refusal::Stale))
/// instead of settling the newer promise. Asking for a promise while the
/// cell is busy returns [`CellBusy`].
///
/// The resolver's `resolve`, `reject` and drop never block and never spin
/// on the other side, so they are safe in an interrupt handler; the promise's
/// waker is woken from there. For an interrupt that settles with no resolver
/// to park (the latest value kept until a task waits, as embassy-sync's
/// `Signal`), use a [`SignalCell`](crate::promise::SignalCell).
///
/// ```
/// use deferral::{PromiseCell, PromiseError};
/// use futures::executor::block_on;
///
/// static DMA_DONE: PromiseCell<u32, &str> = PromiseCell::new();
///
/// let (promise, resolver) = DMA_DONE.promise().unwrap();
/// // In firmware the resolver goes to the interrupt handler; here a thread.
/// std::thread::spawn(move || resolver.resolve(512).unwrap());
/// assert_eq!(block_on(promise), Ok(512));
///
/// // The cell is reusable once its pair is done.
/// let (promise, resolver) = DMA_DONE.promise().unwrap();
/// resolver.reject("bus error").unwrap();
/// assert_eq!(block_on(promise), Err(PromiseError::Rejected("bus error")));
/// ```
pub struct PromiseCell<T, E> {
    raw: RawSlot<T, E>,
}

impl<T, E> PromiseCell<T, E> {
    /// An empty cell, usable in a `static`.
    ///
    /// ```
    /// static CELL: deferral::PromiseCell<u8, ()> = deferral::PromiseCell::new();
    /// assert!(CELL.is_free());
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            raw: RawSlot::new(),
        }
    }

    /// An empty cell (not `const` under `--cfg loom`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            raw: RawSlot::new(),
        }
    }

    /// A promise and its resolver, sharing this cell. The promise is
    /// `Pending(Unstarted)` until first polled (it may already be settled by
    /// then: the resolver is live from the start).
    ///
    /// Errors with [`CellBusy`] while a previous pair is not done.
    ///
    /// ```
    /// use deferral::PromiseCell;
    ///
    /// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    /// let (promise, resolver) = CELL.promise().unwrap();
    /// resolver.resolve(1).unwrap();
    /// assert_eq!(futures::executor::block_on(promise), Ok(1));
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn promise(
        &self,
    ) -> Result<
        (
            DeferredPromise<T, PromiseError<E>, CellPromise<'_, T, E>>,
            Resolver<'_, T, E>,
        ),
        CellBusy,
    > {
        let generation = self.raw.reserve()?;
        let promise = DeferredPromise::from_future(CellPromise {
            inner: SlotFuture::new(&self.raw, generation),
        });
        Ok((promise, Resolver::cell(&self.raw, generation)))
    }

    /// A lazy promise sharing this cell: `executor` receives the resolver at
    /// the promise's first poll, never before (and never, if the promise is
    /// dropped unpolled: the cell is then free again).
    ///
    /// The cell is claimed now, so [`CellBusy`] is reported at creation.
    ///
    /// ```
    /// use deferral::PromiseCell;
    /// use deferral::promise::{Progress, PromiseState};
    ///
    /// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    /// let promise = CELL
    ///     .lazy(|resolver| {
    ///         std::thread::spawn(move || resolver.resolve(9).unwrap());
    ///     })
    ///     .unwrap();
    /// assert_eq!(promise.state(), PromiseState::Pending(Progress::Unstarted));
    /// assert_eq!(futures::executor::block_on(promise), Ok(9));
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn lazy<'a, X, R>(
        &'a self,
        executor: X,
    ) -> Result<DeferredPromise<T, PromiseError<E>, CellExecutor<'a, X, T, E, R::Drive>>, CellBusy>
    where
        X: FnOnce(Resolver<'a, T, E>) -> R,
        R: ExecutorReturn<'a, T, E>,
    {
        let generation = self.raw.reserve()?;
        Ok(DeferredPromise::from_future(CellExecutor {
            promise: CellPromise {
                inner: SlotFuture::new(&self.raw, generation),
            },
            executor: Some(executor),
            drive: None,
            context: Captured::capture(),
        }))
    }

    /// `true` when no promise or resolver of this cell is live.
    ///
    /// ```
    /// static CELL: deferral::PromiseCell<u8, ()> = deferral::PromiseCell::new();
    /// let pair = CELL.promise().unwrap();
    /// assert!(!CELL.is_free());
    /// drop(pair);
    /// assert!(CELL.is_free());
    /// ```
    pub fn is_free(&self) -> bool {
        self.raw.is_free()
    }
}

impl<T, E> Default for PromiseCell<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> core::fmt::Debug for PromiseCell<T, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PromiseCell")
            .field("free", &self.is_free())
            .finish_non_exhaustive()
    }
}

/// The future of a [`PromiseCell::promise`] promise: its side of the cell.
///
/// ```
/// use deferral::promise::CellPromise;
/// use deferral::{DeferredPromise, PromiseCell, PromiseError};
///
/// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
/// type Waiting = DeferredPromise<u8, PromiseError<()>, CellPromise<'static, u8, ()>>;
/// let (promise, resolver): (Waiting, _) = CELL.promise().unwrap();
/// resolver.resolve(3).unwrap();
/// assert_eq!(futures::executor::block_on(promise), Ok(3));
/// ```
pub struct CellPromise<'a, T, E> {
    inner: SlotFuture<&'a RawSlot<T, E>, T, E>,
}

impl<T, E> Unpin for CellPromise<'_, T, E> {}
impl<T, E> Sealed for CellPromise<'_, T, E> {}

impl<T, E> Future for CellPromise<'_, T, E> {
    type Output = Result<T, PromiseError<E>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.poll_slot(cx)
    }
}

impl<T, E> PromiseFuture<T, PromiseError<E>> for CellPromise<'_, T, E> {
    const PEEKS: bool = true;
    const RESUMES_AFTER_PANIC: bool = true;

    unsafe fn peek(this: *const Self, unstarted: bool) -> PromiseState {
        // SAFETY: as the caller guarantees: a live future nobody mutates;
        // `peek` reads the slot's atomic state word.
        unsafe { (*this).inner.peek(unstarted) }
    }

    #[cfg(feature = "std")]
    fn poll_catching(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Result<Poll<Self::Output>, crate::panic::Panic> {
        let this = self.get_mut();
        crate::panic::catch(|| this.inner.poll_slot(cx))
    }
}

/// The future of a [`PromiseCell::lazy`] promise: the executor, waiting for
/// the first poll, then the promise's side of the cell and whatever the
/// executor left to drive (an [`Adopt`](crate::promise::Adopt)).
///
/// ```
/// use deferral::PromiseCell;
///
/// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
/// let promise = CELL.lazy(|r| r.resolve(1)).unwrap();
/// assert_eq!(futures::executor::block_on(promise), Ok(1));
/// ```
pub struct CellExecutor<'a, X, T, E, D> {
    promise: CellPromise<'a, T, E>,
    executor: Option<X>,
    /// Structurally pinned (see `poll`).
    drive: Option<D>,
    context: Captured,
}

impl<X, T, E, D: Unpin> Unpin for CellExecutor<'_, X, T, E, D> {}
impl<X, T, E, D> Sealed for CellExecutor<'_, X, T, E, D> {}

impl<X, T, E, D> Drop for CellExecutor<'_, X, T, E, D> {
    fn drop(&mut self) {
        if self.executor.is_some() {
            // Dropped unstarted: no resolver was ever made, so the promise
            // side is the only side; free the cell directly (the executor
            // itself is dropped afterwards, with the cell consistent).
            self.promise.inner.release_unstarted();
        }
    }
}

impl<'a, X, T, E, D> CellExecutor<'a, X, T, E, D> {
    /// Runs the executor at the first poll, then drives what it returned
    /// and polls the cell.
    fn poll_inner<R>(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, PromiseError<E>>>
    where
        X: FnOnce(Resolver<'a, T, E>) -> R,
        R: ExecutorReturn<'a, T, E, Drive = D>,
        D: Future + super::executor::sealed::Finished,
    {
        // SAFETY: `drive` is structurally pinned: it is never moved out of
        // a pinned `CellExecutor` (only dropped in place by `set(None)` and
        // by the drop glue; `Drop` above does not touch it), the type is not
        // `repr(packed)`, and it is `Unpin` only if `D` is. The other fields
        // are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let (promise, context) = (&mut this.promise, &this.context);
        let drive = &mut this.drive;
        // The creation context is entered only around user code: the
        // executor (first poll) and the future it handed over, if any (not
        // the slot's waker registration: the waker is the poller's).
        if let Some(executor) = this.executor.take() {
            in_context(context, || {
                let (&slot, generation) = promise.inner.parts();
                // If the executor panics, the resolver it got is dropped by
                // the unwinding (it abandons the generation) and the promise
                // side closes it when dropped.
                *drive = executor(Resolver::cell(slot, generation)).into_drive();
            });
        }
        // SAFETY: pinned, as above.
        drive_adopted(context, unsafe { Pin::new_unchecked(&mut *drive) }, cx);
        promise.inner.poll_slot(cx)
    }
}

impl<'a, X, R, T, E, D> Future for CellExecutor<'a, X, T, E, D>
where
    X: FnOnce(Resolver<'a, T, E>) -> R,
    R: ExecutorReturn<'a, T, E, Drive = D>,
    D: Future + super::executor::sealed::Finished,
{
    type Output = Result<T, PromiseError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.promise.inner.is_done() {
            polled_after_completion();
        }
        self.poll_inner(cx)
    }
}

impl<'a, X, R, T, E, D> PromiseFuture<T, PromiseError<E>> for CellExecutor<'a, X, T, E, D>
where
    X: FnOnce(Resolver<'a, T, E>) -> R,
    R: ExecutorReturn<'a, T, E, Drive = D>,
    D: Future + super::executor::sealed::Finished,
{
    const PEEKS: bool = true;
    const RESUMES_AFTER_PANIC: bool = true;

    unsafe fn peek(this: *const Self, unstarted: bool) -> PromiseState {
        // SAFETY: as the caller guarantees; only the plain fields of the
        // cell side and its atomic are read, never the executor or `D`.
        unsafe { (*this).promise.inner.peek(unstarted) }
    }

    #[cfg(feature = "std")]
    fn poll_catching(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Result<Poll<Self::Output>, crate::panic::Panic> {
        match crate::panic::catch(|| self.as_mut().poll_inner(cx)) {
            Ok(poll) => Ok(poll),
            // A settlement made before the panic stands (JS); a resolver
            // dropped unsettled by the unwinding left the panic as the
            // rejection.
            // SAFETY: only the unpinned cell side is touched.
            Err(panic) => match unsafe { self.get_unchecked_mut() }.promise.inner.take_now() {
                Some(Err(PromiseError::Abandoned)) | None => Err(panic),
                // The payload dropped while `outcome` is a local (see
                // `Executor::poll_catching`).
                Some(outcome) => {
                    drop(panic);
                    Ok(Poll::Ready(outcome))
                }
            },
        }
    }
}
