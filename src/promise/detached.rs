//! `DeferredPromise::detached` (`alloc`): the resolver may go anywhere, the
//! shared state lives behind an `Arc` allocated at the first poll.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::deferred::{DeferredPromise, polled_after_completion};
use super::error::PromiseError;
use super::executor::{ExecutorReturn, drive_adopted};
#[cfg(not(feature = "std"))]
use super::inner::ContextSlot;
use super::inner::{PromiseFuture, in_context, sealed::Sealed};
use super::resolver::Resolver;
use super::slot::{RawSlot, SlotFuture};
use super::state::{Progress, PromiseState};
use crate::context::Captured;
use crate::sync::Arc;

impl<T: 'static, E: 'static> DeferredPromise<T, PromiseError<E>> {
    /// A promise whose `executor` runs at the first poll and receives a
    /// `'static` [`Resolver`] that may leave it: be stored, moved to another
    /// task or thread, settled later. The shared state is allocated (one
    /// `Arc`) at the first poll, not before; the resolver is `Send` when
    /// `T` and `E` are. Its error type is `PromiseError<E>`, `E` being
    /// what the resolver rejects with (see "Its error type" on
    /// [`DeferredPromise`]).
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    ///
    /// let p = DeferredPromise::<u32, PromiseError<()>>::detached(|resolver| {
    ///     std::thread::spawn(move || resolver.resolve(7).unwrap());
    /// });
    /// assert_eq!(futures::executor::block_on(p), Ok(7));
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn detached<X, R>(
        executor: X,
    ) -> DeferredPromise<T, PromiseError<E>, Detached<X, T, E, R::Drive>>
    where
        X: FnOnce(Resolver<'static, T, E>) -> R,
        R: ExecutorReturn<'static, T, E>,
    {
        DeferredPromise::from_future(Detached {
            executor: Some(executor),
            promise: None,
            drive: None,
            context: Captured::capture(),
        })
    }
}

/// The promise's side of the `Arc`-shared state.
type SharedSide<T, E> = SlotFuture<Arc<RawSlot<T, E>>, T, E>;

/// The future of a [`DeferredPromise::detached`] promise: the executor,
/// waiting for the first poll, then the promise's side of the `Arc`-shared
/// state and whatever the executor left to drive (an
/// [`Adopt`](crate::promise::Adopt)).
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
/// use deferral::promise::{Detached, Nothing};
///
/// // The promise `detached` returns, stored in a struct:
/// struct Job<X> {
///     done: DeferredPromise<u8, PromiseError<()>, Detached<X, u8, (), Nothing>>,
/// }
/// let job = Job {
///     done: DeferredPromise::detached(|r| {
///         let _ = r.resolve(1);
///     }),
/// };
/// assert_eq!(futures::executor::block_on(job.done), Ok(1));
/// ```
pub struct Detached<X, T, E, D> {
    executor: Option<X>,
    promise: Option<SharedSide<T, E>>,
    /// Structurally pinned (see `poll_inner`).
    drive: Option<D>,
    context: Captured,
}

impl<X, T, E, D: Unpin> Unpin for Detached<X, T, E, D> {}
impl<X, T, E, D> Sealed for Detached<X, T, E, D> {}

impl<X, T: 'static, E: 'static, D> Detached<X, T, E, D> {
    fn poll_inner<R>(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, PromiseError<E>>>
    where
        X: FnOnce(Resolver<'static, T, E>) -> R,
        R: ExecutorReturn<'static, T, E, Drive = D>,
        D: Future + super::executor::sealed::Finished,
    {
        // SAFETY: `drive` is structurally pinned: never moved out of a
        // pinned `Detached` (only dropped in place by `set(None)` and the
        // drop glue), no `Drop` impl, not `repr(packed)`, `Unpin` only if
        // `D` is. The other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let (promise, context, drive) = (&mut this.promise, &this.context, &mut this.drive);
        let executor = &mut this.executor;
        // The creation context is entered only around user code: the
        // executor (first poll) and the future it handed over, if any (not
        // the slot's waker registration: the waker is the poller's).
        if let Some(executor) = executor.take() {
            in_context(context, || {
                let slot = Arc::new(RawSlot::new());
                let generation = match slot.reserve() {
                    Ok(generation) => generation,
                    // A fresh slot is free.
                    Err(_) => super::deferred::unreachable_state(),
                };
                *promise = Some(SlotFuture::new(slot.clone(), generation));
                // An `Adopt` returned by the executor is driven below.
                *drive = executor(Resolver::shared(slot, generation)).into_drive();
            });
        }
        // SAFETY: pinned, as above.
        drive_adopted(context, unsafe { Pin::new_unchecked(&mut *drive) }, cx);
        match promise {
            Some(promise) => promise.poll_slot(cx),
            None => polled_after_completion(),
        }
    }
}

impl<X, R, T: 'static, E: 'static, D> Future for Detached<X, T, E, D>
where
    X: FnOnce(Resolver<'static, T, E>) -> R,
    R: ExecutorReturn<'static, T, E, Drive = D>,
    D: Future + super::executor::sealed::Finished,
{
    type Output = Result<T, PromiseError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_inner(cx)
    }
}

impl<X, R, T: 'static, E: 'static, D> PromiseFuture<T, PromiseError<E>> for Detached<X, T, E, D>
where
    X: FnOnce(Resolver<'static, T, E>) -> R,
    R: ExecutorReturn<'static, T, E, Drive = D>,
    D: Future + super::executor::sealed::Finished,
{
    const PEEKS: bool = true;
    const RESUMES_AFTER_PANIC: bool = true;

    unsafe fn peek(this: *const Self, unstarted: bool) -> PromiseState {
        // SAFETY: as the caller guarantees; only the plain fields of the
        // shared side and its atomic are read, never the executor or `D`.
        match unsafe { &(*this).promise } {
            Some(promise) => promise.peek(false),
            None if unstarted => PromiseState::Pending(Progress::Unstarted),
            None => PromiseState::Pending(Progress::Started),
        }
    }

    #[cfg(feature = "std")]
    fn poll_catching(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Result<Poll<Self::Output>, crate::panic::Panic> {
        match crate::panic::catch(|| self.as_mut().poll_inner(cx)) {
            Ok(poll) => Ok(poll),
            // SAFETY: only the unpinned shared side is touched.
            Err(panic) => match unsafe { self.get_unchecked_mut() }.promise.as_mut() {
                // A settlement made before the panic stands (JS).
                Some(promise) => match promise.take_now() {
                    Some(Err(PromiseError::Abandoned)) | None => Err(panic),
                    // The payload dropped while `outcome` is a local (see
                    // `Executor::poll_catching`).
                    Some(outcome) => {
                        drop(panic);
                        Ok(Poll::Ready(outcome))
                    }
                },
                None => Err(panic),
            },
        }
    }
}
