//! `DeferredPromise::detached` (`alloc`): the resolver may go anywhere, the
//! shared state lives behind an `Arc` allocated at the first poll.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::cell::{RawSlot, SlotFuture};
use super::deferred::{DeferredPromise, Sealed, Source};
use super::error::PromiseError;
use super::executor::{Driving, ExecutorReturn};
use super::resolver::Resolver;
use super::state::PromiseState;
use crate::sync::Arc;

impl<T: 'static, E: 'static> DeferredPromise<T, E> {
    /// A promise whose `executor` runs at the first poll and receives a
    /// `'static` [`Resolver`] that may leave it: be stored, moved to another
    /// task or thread, settled later. The shared state is allocated (one
    /// `Arc`) at the first poll, not before; the resolver is `Send` when
    /// `T` and `E` are.
    ///
    /// ```
    /// use deferral::DeferredPromise;
    ///
    /// let p = DeferredPromise::<u32, ()>::detached(|resolver| {
    ///     std::thread::spawn(move || resolver.resolve(7).unwrap());
    /// });
    /// assert_eq!(futures::executor::block_on(p), Ok(7));
    /// ```
    pub fn detached<X, R>(executor: X) -> DeferredPromise<T, PromiseError<E>, FromDetached<X>>
    where
        X: FnOnce(Resolver<'static, T, E>) -> R,
        R: ExecutorReturn<'static, T, E>,
    {
        DeferredPromise::from_start(FromDetached { executor })
    }
}

/// The source of a [`DeferredPromise::detached`] promise: the executor,
/// waiting.
///
/// ```
/// use deferral::{DeferredPromise, Progress, PromiseState};
///
/// let p = DeferredPromise::<u8, ()>::detached(|r| drop(r));
/// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
/// # drop(p);
/// ```
pub struct FromDetached<X> {
    executor: X,
}

impl<X> Sealed for FromDetached<X> {}

impl<T, E, X, R> Source<T, PromiseError<E>> for FromDetached<X>
where
    T: 'static,
    E: 'static,
    X: FnOnce(Resolver<'static, T, E>) -> R,
    R: ExecutorReturn<'static, T, E>,
{
    type Running = Driving<DetachedPromise<T, E>, R::Drive>;
    type Context = crate::context::Captured;

    fn start(self) -> Self::Running {
        let slot = Arc::new(RawSlot::new());
        let generation = slot.reserve().expect("a fresh slot is free");
        let running = DetachedPromise {
            inner: SlotFuture::new(slot.clone(), generation),
        };
        // An `Adopt` returned by the executor is driven by the promise.
        let drive = (self.executor)(Resolver::shared(slot, generation)).into_drive();
        Driving::new(running, drive)
    }

    fn running_state(running: &Self::Running) -> PromiseState {
        running.promise().inner.peek(false)
    }
}

impl<X> fmt::Debug for FromDetached<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromDetached").finish_non_exhaustive()
    }
}

/// The running state of a [`DeferredPromise::detached`] promise: its side of
/// the `Arc`-shared state, the `S` parameter of the promise it returns. Not
/// constructible by hand; name it to store such a promise:
///
/// ```
/// use deferral::{DeferredPromise, PromiseError, Resolver};
/// use deferral::promise::{FromDetached, DetachedPromise};
/// // The promise `detached` returns, stored in a struct:
/// struct Job<X: FnOnce(Resolver<'static, u8, ()>)> {
///     done: DeferredPromise<u8, PromiseError<()>, FromDetached<X>>,
/// }
/// let job = Job {
///     done: DeferredPromise::<u8, ()>::detached(|r: Resolver<'static, u8, ()>| {
///         let _ = r.resolve(1);
///     }),
/// };
/// assert_eq!(futures::executor::block_on(job.done), Ok(1));
/// let _: Option<DetachedPromise<u8, ()>> = None; // its running state
/// ```
pub struct DetachedPromise<T, E> {
    inner: SlotFuture<Arc<RawSlot<T, E>>, T, E>,
}

impl<T, E> Future for DetachedPromise<T, E> {
    type Output = Result<T, PromiseError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.poll_slot(cx)
    }
}

impl<T, E> fmt::Debug for DetachedPromise<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetachedPromise")
            .field("state", &self.inner.peek(false))
            .finish_non_exhaustive()
    }
}
