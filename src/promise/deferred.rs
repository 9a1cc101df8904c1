//! `DeferredPromise`: the lazy promise, and the futures of its own
//! constructors (`new`, `lazy`, `resolved`, `rejected`).
//!
//! A `DeferredPromise<T, E, F>` is a thin wrapper: the future `F` that does
//! the work (one per constructor and combinator: [`Executor`], [`Lazy`],
//! [`Ready`], the combinators, the cell and detached futures, or the boxed
//! [`Erased`]) behind an `UnsafeCell`, and one `progress` byte beside it
//! that `state()`, `is_terminated()` and `Debug` read — so those `&self`
//! accessors never make a reference over a possibly self-borrowing future
//! (see `promise::inner`).

use core::cell::UnsafeCell;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;

use super::error::PromiseError;
use super::executor::LocalExecutorReturn;
#[cfg(not(feature = "std"))]
use super::inner::ContextSlot;
use super::inner::{Erased, PromiseFuture, in_context, sealed::Sealed};
use super::resolver::Resolver;
use super::state::{Progress, PromiseState};
use crate::context::Captured;

/// `progress` values: what the promise reports, and whether it finished.
const UNSTARTED: u8 = 0;
const STARTED: u8 = 1;
const FULFILLED: u8 = 2;
const REJECTED: u8 = 3;
/// Set once the promise handed out its settlement (or its poll panicked).
const TERMINATED: u8 = 4;

/// A promise whose work runs inside its first poll, never before.
///
/// `DeferredPromise<T, E, F>` is a `Future<Output = Result<T, E>>`.
/// Creating it runs nothing (`state()` is `Pending(Unstarted)`); the first
/// `poll` runs the executor (or handler, or starts the future), then the
/// promise is `Pending(Started)` until it settles (`Fulfilled` /
/// `Rejected`). Never polled ⇒ the executor never runs and is simply
/// dropped. Polling it again after it returned `Ready` panics with
/// "`DeferredPromise` polled after completion";
/// [`FusedFuture::is_terminated`] tells you when that would happen.
///
/// # Its error type: one rule
///
/// **`E` is what awaiting the promise can fail with.** A promise settled
/// by a [`Resolver`] can also fail because that resolver was dropped
/// unsettled, so its `E` is [`PromiseError<R>`](PromiseError), `R` being
/// what the resolver rejects with; a promise that follows a value or a
/// future keeps that error type. The turbofish names the promise's own
/// `E`: `DeferredPromise::<u8, PromiseError<MyErr>>::new(|r| r.reject(MyErr))`
/// is a `DeferredPromise<u8, PromiseError<MyErr>, _>`.
///
/// | constructor | `F` | `E` |
/// |---|---|---|
/// | [`new`](DeferredPromise::new) | [`Executor`] | `PromiseError<R>` |
/// | `detached` (`alloc`) | [`Detached`](crate::promise::Detached) | `PromiseError<R>` |
/// | [`PromiseCell::promise`](crate::PromiseCell::promise) / [`lazy`](crate::PromiseCell::lazy) | [`CellPromise`](crate::promise::CellPromise) / [`CellExecutor`](crate::promise::CellExecutor) | `PromiseError<R>` |
/// | [`lazy`](DeferredPromise::lazy) | [`Lazy`] | the future's |
/// | [`resolved`](DeferredPromise::resolved) / [`rejected`](DeferredPromise::rejected) | [`Ready`] | any |
/// | [`deferred_then`](crate::PromiseExt::deferred_then) and the other combinators | [`Then`](crate::promise::Then), ... | the source's (or the handler's) |
/// | [`boxed`](DeferredPromise::boxed) (`alloc`) | [`Erased`] | unchanged |
///
/// # Naming the type
///
/// With `alloc`, `DeferredPromise<T, E>` — the third parameter left to its
/// default — is the boxed promise
/// ([`BoxPromise<'static, T, E>`](crate::promise::BoxPromise)): `.boxed()`
/// turns any promise with that
/// output into it, so that is the type a struct field or a `Vec` stores.
/// Without a heap, name the future: `F` is a closure's type for `new`,
/// `lazy` and the combinators, so use a function pointer as the executor
/// (`Executor<fn(Resolver<'_, T, R>), T, R>`) or a
/// [`PromiseCell`](crate::PromiseCell), whose promise type
/// [`CellPromise`](crate::promise::CellPromise) names no closure.
///
/// # Panics
///
/// A panic in the executor, a handler or the future being followed
/// unwinds out of `poll`, as with any future (the choice of futures-rs and
/// tokio: the executor or the task's join handle decides what a panic
/// means). The promise is then finished: `state()` reports `Rejected`,
/// [`FusedFuture::is_terminated`] is `true`, and polling it again panics
/// with "`DeferredPromise` polled after completion". A resolver dropped by
/// the unwinding abandons its promise, so whoever else waits on it sees
/// [`PromiseError::Abandoned`], never a hang. With `std`,
/// [`catch_panics`](DeferredPromise::catch_panics) opts in to the JS
/// behaviour instead: the panic becomes `Err(Caught::Panicked(..))`, a
/// rejection, and a panic after a settlement leaves the settlement in
/// place.
///
/// # Sizes
///
/// The promise is its future plus one byte (the `progress` that `state()`
/// reads), rounded up to the future's alignment. With `std`, futures that
/// run code (`new`, `lazy`, `detached`, `PromiseCell::lazy`, the
/// combinators) also keep the context they were created in (a
/// [`Snapshot`](crate::Snapshot), one pointer); `resolved`, `rejected` and
/// `PromiseCell::promise` capture nothing. `tests/promise.rs` (`sizes`)
/// prints them.
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
/// use deferral::promise::{Progress, PromiseState};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static CALLED: AtomicBool = AtomicBool::new(false);
/// let promise = DeferredPromise::<u32, PromiseError<()>>::new(|res| {
///     CALLED.store(true, Ordering::SeqCst);
///     res.resolve(123)
/// });
/// // The promise exists but the executor has not run.
/// assert!(!CALLED.load(Ordering::SeqCst));
/// assert_eq!(promise.state(), PromiseState::Pending(Progress::Unstarted));
///
/// assert_eq!(futures::executor::block_on(promise), Ok(123));
/// assert!(CALLED.load(Ordering::SeqCst));
/// ```
#[must_use = "a deferred promise does nothing until it is polled (awaited)"]
pub struct DeferredPromise<T, E, F = Erased<'static, T, E>> {
    /// Structurally pinned (see `project`); only `poll`, `Drop` glue and
    /// `into_future` reach it, never a `&self` method.
    future: UnsafeCell<F>,
    /// One of `UNSTARTED`..`REJECTED`, with `TERMINATED` once finished.
    progress: u8,
    _output: PhantomData<fn() -> Result<T, E>>,
}

// SAFETY: through `&DeferredPromise` nothing but the `progress` byte is read,
// and `F::peek` (only for the cell-backed futures and `Erased`), which reads
// plain fields of the future and atomics: no `&F`, no `T` or `E` is ever
// reached. So sharing a promise between threads is sound whatever `F`,
// `T` and `E` are (as `&DeferScope` is).
unsafe impl<T, E, F> Sync for DeferredPromise<T, E, F> {}

// Only the future is pinned: the promise is `Unpin` exactly when it is
// (the auto impl, through `UnsafeCell<F>`).

impl<T, E, F> DeferredPromise<T, E, F> {
    /// A promise over `future`, reporting `progress` until first polled.
    #[inline(always)]
    pub(crate) const fn with(future: F, progress: u8) -> Self {
        DeferredPromise {
            future: UnsafeCell::new(future),
            progress,
            _output: PhantomData,
        }
    }

    /// A promise over `future`, `Pending(Unstarted)`.
    #[inline(always)]
    pub(crate) const fn from_future(future: F) -> Self {
        Self::with(future, UNSTARTED)
    }

    /// The future, by value (boxing and wrapping move it; the promise was
    /// never pinned, since it is moved by value).
    #[inline(always)]
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(crate) fn into_parts(self) -> (F, u8) {
        (self.future.into_inner(), self.progress)
    }

    /// The future, for a chain link that reads its source's erased node
    /// (`pending_child`): a plain read, while the link's driver has the
    /// only access to the chain.
    #[cfg(feature = "alloc")]
    pub(crate) fn future_ptr(&self) -> *mut F {
        self.future.get()
    }

    /// The future, mutably (for a chain link's iterative drop).
    #[cfg(feature = "alloc")]
    pub(crate) fn future_mut(&mut self) -> &mut F {
        self.future.get_mut()
    }

    /// The pinned future and the progress byte.
    #[inline(always)]
    fn project(self: Pin<&mut Self>) -> (Pin<&mut F>, &mut u8) {
        // SAFETY: `future` is structurally pinned: never moved out of a
        // pinned promise (`into_parts` takes `self` by value, so it only
        // applies to a promise that was never pinned; there is no `Drop`
        // impl; not `repr(packed)`), and the promise is `Unpin` only if `F`
        // is. `progress` is not pinned.
        unsafe {
            let this = self.get_unchecked_mut();
            (
                Pin::new_unchecked(this.future.get_mut()),
                &mut this.progress,
            )
        }
    }

    /// `true` once the promise handed out its settlement (or its poll
    /// panicked): polling it again would panic.
    #[inline]
    fn finished(&self) -> bool {
        self.progress & TERMINATED != 0
    }
}

impl<T, E, F: PromiseFuture<T, E>> DeferredPromise<T, E, F> {
    /// Where the promise is in its life. After it handed out its settlement
    /// it keeps reporting `Fulfilled` or `Rejected`.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    /// use deferral::promise::{Progress, PromiseState};
    ///
    /// let mut p = Box::pin(DeferredPromise::<u8, PromiseError<()>>::new(|r| r.resolve(1)));
    /// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
    /// assert_eq!(futures::executor::block_on(p.as_mut()), Ok(1));
    /// assert_eq!(p.state(), PromiseState::Fulfilled);
    /// ```
    pub fn state(&self) -> PromiseState {
        match self.progress & !TERMINATED {
            FULFILLED => PromiseState::Fulfilled,
            REJECTED => PromiseState::Rejected,
            // SAFETY: `&self`: nobody accesses the future mutably, and
            // `peek` reads plain fields and atomics only.
            progress if F::PEEKS => unsafe { F::peek(self.future.get(), progress == UNSTARTED) },
            UNSTARTED => PromiseState::Pending(Progress::Unstarted),
            _ => PromiseState::Pending(Progress::Started),
        }
    }
}

impl<T, E, F: PromiseFuture<T, E>> Future for DeferredPromise<T, E, F> {
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let (future, progress) = self.project();
        if *progress & TERMINATED != 0 {
            polled_after_completion();
        }
        // A panic out of `poll` leaves the promise rejected and finished,
        // unless its future can resume (a cell's, whose panic came from a
        // waker: the settlement is still in the slot); that one stays
        // started, its state read from the cell.
        *progress = if F::RESUMES_AFTER_PANIC {
            STARTED
        } else {
            REJECTED | TERMINATED
        };
        let poll = future.poll(cx);
        *progress = match &poll {
            Poll::Pending => STARTED,
            Poll::Ready(Ok(_)) => FULFILLED | TERMINATED,
            Poll::Ready(Err(_)) => REJECTED | TERMINATED,
        };
        poll
    }
}

/// The one panic of a misused promise (a literal: no formatting code).
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn polled_after_completion() -> ! {
    panic!("`DeferredPromise` polled after completion")
}

impl<T, E, F: PromiseFuture<T, E>> FusedFuture for DeferredPromise<T, E, F> {
    fn is_terminated(&self) -> bool {
        self.finished()
    }
}

impl<T, E, F: PromiseFuture<T, E>> fmt::Debug for DeferredPromise<T, E, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredPromise")
            .field("state", &self.state())
            .field("terminated", &self.finished())
            .finish_non_exhaustive()
    }
}

// ------------------------------------------------------------ constructors

impl<T, E> DeferredPromise<T, PromiseError<E>> {
    /// A promise whose `executor` runs at the first poll and settles it
    /// through the [`Resolver`] it receives — the JS `new Promise(executor)`,
    /// made lazy.
    ///
    /// The resolver cannot leave the executor (no shared state, no heap, no
    /// allocation): if the executor returns without settling, the promise
    /// fails with [`PromiseError::Abandoned`]. The executor returns `()` or
    /// the `Result` of a settlement ([`LocalExecutorReturn`]: so
    /// `|r| r.resolve(v)` works, and nothing else is dropped silently).
    ///
    /// # "borrowed data escapes outside of closure"
    ///
    /// Moving the resolver out of the executor — into `tokio::spawn`, a
    /// thread, a `static` — fails to compile with
    ///
    /// ```text
    /// error[E0521]: borrowed data escapes outside of closure
    ///   |     `res` is a reference that is only valid in the closure body
    /// ```
    ///
    /// (`res` is not a reference: it is a [`Resolver`] that borrows the
    /// promise's stack slot). To settle later or from elsewhere, use
    /// `DeferredPromise::detached` (with `alloc`: a `'static`, `Send`
    /// resolver behind an `Arc`) or a [`PromiseCell`](crate::PromiseCell)
    /// (no heap; its resolver may go to an interrupt handler). To settle
    /// with a future's output (JS `res(fetch(..))`), use
    /// [`lazy`](DeferredPromise::lazy): `new`'s resolver cannot `adopt`.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    ///
    /// let p = DeferredPromise::<u32, PromiseError<()>>::new(|res| res.resolve(123));
    /// assert_eq!(futures::executor::block_on(p), Ok(123));
    /// ```
    #[inline]
    pub fn new<X, R>(executor: X) -> DeferredPromise<T, PromiseError<E>, Executor<X, T, E>>
    where
        X: for<'a> FnOnce(Resolver<'a, T, E>) -> R,
        R: LocalExecutorReturn,
    {
        DeferredPromise::from_future(Executor {
            executor: Some(executor),
            context: Captured::capture(),
            _output: PhantomData,
        })
    }
}

impl<T, E> DeferredPromise<T, E> {
    /// A promise that calls `make` at its first poll and follows the future
    /// it returns (the JS executor `res => res(future)`). Its error type is
    /// the future's.
    ///
    /// ```
    /// use deferral::DeferredPromise;
    ///
    /// let p = DeferredPromise::lazy(|| async { Ok::<_, ()>(2 + 2) });
    /// assert_eq!(futures::executor::block_on(p), Ok(4));
    /// ```
    #[inline]
    pub fn lazy<M, Fut>(make: M) -> DeferredPromise<T, E, Lazy<M, Fut>>
    where
        M: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        DeferredPromise::from_future(Lazy {
            state: LazyState::Unstarted(make),
            context: Captured::capture(),
        })
    }

    /// An already fulfilled promise (`state()` is `Fulfilled`).
    ///
    /// ```
    /// use deferral::DeferredPromise;
    /// use deferral::promise::PromiseState;
    ///
    /// let p = DeferredPromise::<_, ()>::resolved(1);
    /// assert_eq!(p.state(), PromiseState::Fulfilled);
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    #[inline]
    pub const fn resolved(value: T) -> DeferredPromise<T, E, Ready<T, E>> {
        DeferredPromise::with(Ready(Some(Ok(value))), FULFILLED)
    }

    /// An already rejected promise (`state()` is `Rejected`).
    ///
    /// ```
    /// use deferral::DeferredPromise;
    /// use deferral::promise::PromiseState;
    ///
    /// let p = DeferredPromise::<u8, _>::rejected("boom");
    /// assert_eq!(p.state(), PromiseState::Rejected);
    /// assert_eq!(futures::executor::block_on(p), Err("boom"));
    /// ```
    #[inline]
    pub const fn rejected(error: E) -> DeferredPromise<T, E, Ready<T, E>> {
        DeferredPromise::with(Ready(Some(Err(error))), REJECTED)
    }
}

// ----------------------------------------------------------------- Executor

/// The future of a [`DeferredPromise::new`] promise: the executor, waiting
/// for the first poll (and the context it was created in).
///
/// ```
/// use deferral::promise::Executor;
/// use deferral::{DeferredPromise, PromiseError, Resolver};
///
/// fn answer(r: Resolver<'_, u8, ()>) {
///     r.resolve(42).unwrap();
/// }
/// type Answer = DeferredPromise<u8, PromiseError<()>, Executor<fn(Resolver<'_, u8, ()>), u8, ()>>;
/// let p: Answer = DeferredPromise::new(answer as fn(Resolver<'_, u8, ()>));
/// assert_eq!(futures::executor::block_on(p), Ok(42));
/// ```
pub struct Executor<X, T, E> {
    executor: Option<X>,
    context: Captured,
    _output: PhantomData<fn() -> Result<T, E>>,
}

// Nothing is pinned: the executor runs by value.
impl<X, T, E> Unpin for Executor<X, T, E> {}
impl<X, T, E> Sealed for Executor<X, T, E> {}

impl<X, T, E> Executor<X, T, E> {
    /// Runs the executor with a resolver over a local slot, in the
    /// creation context. With `catch`, a panic is caught and handed back
    /// beside whatever settlement was made before it.
    #[inline(always)]
    fn run<R>(&mut self, catch: bool) -> (Result<T, PromiseError<E>>, Option<crate::panic::Panic>)
    where
        X: for<'a> FnOnce(Resolver<'a, T, E>) -> R,
        R: LocalExecutorReturn,
    {
        let Some(executor) = self.executor.take() else {
            polled_after_completion();
        };
        let mut slot = None;
        let panic = in_context(&self.context, || {
            if catch {
                crate::panic::catch(|| drop(executor(Resolver::local(&mut slot)))).err()
            } else {
                drop(executor(Resolver::local(&mut slot)));
                None
            }
        });
        let outcome = match slot {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(PromiseError::Rejected(error)),
            None => Err(PromiseError::Abandoned),
        };
        (outcome, panic)
    }
}

impl<X, R, T, E> Future for Executor<X, T, E>
where
    X: for<'a> FnOnce(Resolver<'a, T, E>) -> R,
    R: LocalExecutorReturn,
{
    type Output = Result<T, PromiseError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(self.get_mut().run(false).0)
    }
}

impl<X, R, T, E> PromiseFuture<T, PromiseError<E>> for Executor<X, T, E>
where
    X: for<'a> FnOnce(Resolver<'a, T, E>) -> R,
    R: LocalExecutorReturn,
{
    #[cfg(feature = "std")]
    fn poll_catching(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Result<Poll<Self::Output>, crate::panic::Panic> {
        match self.get_mut().run(true) {
            // Panicked before settling: the panic is the rejection.
            (Err(PromiseError::Abandoned), Some(panic)) => Err(panic),
            // Settled, then maybe panicked: a throw after a settlement is
            // ignored (JS), the first settlement stands. The payload is
            // dropped while `outcome` is a local: if its destructor
            // panics, the unwinding drops the outcome (a result moved out
            // before a drop that unwinds would leak, rust-lang/rust#47949).
            (outcome, panic) => {
                drop(panic);
                Ok(Poll::Ready(outcome))
            }
        }
    }
}

// --------------------------------------------------------------------- Lazy

enum LazyState<M, Fut> {
    Unstarted(M),
    Started(Fut),
    Done,
}

/// The future of a [`DeferredPromise::lazy`] promise: the function that
/// makes the future, then that future.
///
/// ```
/// use deferral::DeferredPromise;
/// use deferral::promise::{Progress, PromiseState};
///
/// let p = DeferredPromise::lazy(|| std::future::ready(Ok::<u8, ()>(1)));
/// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
/// # drop(p);
/// ```
pub struct Lazy<M, Fut> {
    /// Structurally pinned in `Started` (see `poll`).
    state: LazyState<M, Fut>,
    context: Captured,
}

impl<M, Fut: Unpin> Unpin for Lazy<M, Fut> {}
impl<M, Fut> Sealed for Lazy<M, Fut> {}

impl<T, E, M, Fut> Future for Lazy<M, Fut>
where
    M: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        // SAFETY: `Started`'s future is structurally pinned: it is never
        // moved out (it is dropped in place by the assignment of `Done`),
        // `Lazy` has no `Drop` and is `Unpin` only if `Fut` is. `M` in
        // `Unstarted` is not pinned: it is moved out to be called.
        let this = unsafe { self.get_unchecked_mut() };
        let state = &mut this.state;
        in_context(&this.context, || {
            if let LazyState::Unstarted(_) = state {
                // If `make` panics, the state is `Done`; the wrapper never
                // polls again.
                let LazyState::Unstarted(make) = core::mem::replace(state, LazyState::Done) else {
                    unreachable_state();
                };
                *state = LazyState::Started(make());
            }
            let LazyState::Started(future) = state else {
                polled_after_completion();
            };
            // SAFETY: pinned, as above.
            let out = core::task::ready!(unsafe { Pin::new_unchecked(future) }.poll(cx));
            *state = LazyState::Done;
            Poll::Ready(out)
        })
    }
}

impl<T, E, M, Fut> PromiseFuture<T, E> for Lazy<M, Fut>
where
    M: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
}

/// A state the code above just ruled out.
#[cold]
#[inline(never)]
pub(crate) fn unreachable_state() -> ! {
    panic!("deferral: unreachable promise state")
}

// -------------------------------------------------------------------- Ready

/// The future of a [`DeferredPromise::resolved`] /
/// [`rejected`](DeferredPromise::rejected) promise: the settlement, waiting
/// to be handed out.
///
/// ```
/// use deferral::DeferredPromise;
/// use deferral::promise::Ready;
///
/// let p: DeferredPromise<u32, (), Ready<u32, ()>> = DeferredPromise::resolved(5);
/// assert_eq!(futures::executor::block_on(p), Ok(5));
/// ```
pub struct Ready<T, E>(Option<Result<T, E>>);

impl<T, E> Unpin for Ready<T, E> {}
impl<T, E> Sealed for Ready<T, E> {}

impl<T, E> Future for Ready<T, E> {
    type Output = Result<T, E>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        match self.0.take() {
            Some(out) => Poll::Ready(out),
            None => polled_after_completion(),
        }
    }
}

impl<T, E> PromiseFuture<T, E> for Ready<T, E> {}
