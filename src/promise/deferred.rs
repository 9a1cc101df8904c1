//! `DeferredPromise`: the lazy promise state machine.

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;
use pin_project::pin_project;

use super::error::PromiseError;
use super::executor::LocalExecutorReturn;
use super::resolver::Resolver;
use super::state::{Progress, PromiseState};

mod sealed {
    pub trait Sealed {}

    /// What a promise keeps of the context it was created in: a
    /// [`Snapshot`](crate::Snapshot) for sources that run code (with `std`),
    /// `()` for those that run none or without `std`.
    pub trait ContextSlot {
        /// Captures the current context (nothing for `()`).
        fn capture() -> Self;
        /// Calls `f` inside the captured context.
        fn run<R>(&self, f: impl FnOnce() -> R) -> R;
    }
}

pub(crate) use sealed::{ContextSlot, Sealed};

impl ContextSlot for () {
    #[inline(always)]
    fn capture() {}
    #[inline(always)]
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

#[cfg(feature = "std")]
impl ContextSlot for crate::Snapshot {
    #[inline]
    fn capture() -> Self {
        crate::Snapshot::capture()
    }
    #[inline]
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::Snapshot::run(self, f)
    }
}

/// What a [`DeferredPromise`] holds before its first poll, and how it starts.
///
/// Implemented by the crate's source types ([`FromExecutor`], [`FromFuture`], [`FromValue`],
/// the cell and detached sources, the combinators); sealed. The third type
/// parameter of `DeferredPromise<T, E, S>` is one of these.
///
/// ```
/// use deferral::{DeferredPromise, Source};
///
/// fn unstarted<T, E, S: Source<T, E>>(p: &DeferredPromise<T, E, S>) -> bool {
///     !p.state().is_settled()
/// }
/// assert!(unstarted(&DeferredPromise::<u8, ()>::new(|r| r.resolve(1))));
/// ```
pub trait Source<T, E>: Sealed {
    /// The future the promise polls once started.
    #[doc(hidden)]
    type Running: Future<Output = Result<T, E>>;

    /// What the promise keeps of its creation context: the snapshot for
    /// sources that run code (with `std`), `()` for the others.
    #[doc(hidden)]
    type Context: ContextSlot;

    /// Runs the executor (or whatever starts this source). Called inside the
    /// promise's first poll, exactly once.
    #[doc(hidden)]
    fn start(self) -> Self::Running;

    /// The state reported before the first poll.
    #[doc(hidden)]
    fn unstarted_state(&self) -> PromiseState {
        PromiseState::Pending(Progress::Unstarted)
    }

    /// The state reported while running.
    #[doc(hidden)]
    fn running_state(_running: &Self::Running) -> PromiseState {
        PromiseState::Pending(Progress::Started)
    }
}

#[pin_project(project = StageProj, project_replace = StageReplace)]
enum Stage<S, R> {
    Unstarted(S),
    Started(#[pin] R),
    Done { fulfilled: bool },
}

/// A promise whose executor runs inside its first poll, never before.
///
/// `DeferredPromise<T, E, S>` is a `Future<Output = Result<T, E>>`. Creating
/// it runs nothing (`state()` is `Pending(Unstarted)`); the first `poll` runs
/// the executor, then the promise is `Pending(Started)` until it settles
/// (`Fulfilled` / `Rejected`). Never polled ⇒ the executor never runs and is
/// simply dropped. Polling it again after it returned `Ready` panics with
/// "`DeferredPromise` polled after completion"; [`FusedFuture::is_terminated`]
/// tells you when that would happen.
///
/// Promises settled by a [`Resolver`] can be abandoned, so their error type is
/// [`PromiseError<E>`]; `?` on them needs `From<PromiseError<E>>` for your
/// error. Promises that cannot be abandoned keep their own error type.
///
/// | constructor | `S` | output | shared state |
/// |---|---|---|---|
/// | [`new`](DeferredPromise::new) | [`FromExecutor`] | `Result<T, PromiseError<E>>` | none: settled inside the executor |
/// | [`PromiseCell::promise`](crate::PromiseCell::promise) / [`lazy`](crate::PromiseCell::lazy) | [`CellPromise`](crate::promise::CellPromise) / [`CellRun`](crate::promise::CellRun) | `Result<T, PromiseError<E>>` | a `static` cell, no heap |
/// | `detached` (`alloc`) | `FromDetached` | `Result<T, PromiseError<E>>` | `Arc` |
/// | [`lazy`](DeferredPromise::lazy) | [`FromFuture`] | the future's `Result<T, E>` | none |
/// | [`resolved`](DeferredPromise::resolved) / [`rejected`](DeferredPromise::rejected) | [`FromValue`] (the default) | `Result<T, E>` | none |
///
/// # Naming the type
///
/// `S` is the closure's type for `new`, `lazy` and the combinators, so the
/// full type cannot be written down. With `alloc`, box it:
/// `field: BoxPromise<'static, T, E>` holds any promise with that output
/// ([`boxed`](DeferredPromise::boxed), [`boxed_local`](DeferredPromise::boxed_local),
/// [`BoxPromise`](crate::promise::BoxPromise)). Without a heap, use a
/// function pointer as the executor (`FromExecutor<fn(Resolver<'_, T, E>)>`, see
/// [`FromExecutor`]) or a [`PromiseCell`](crate::PromiseCell), whose promise type
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
/// [`PromiseExt::catch_panics`](crate::PromiseExt::catch_panics) opts in
/// to the JS behaviour instead: the panic becomes
/// `Err(Caught::Panicked(..))`, a rejection.
///
/// `DeferredPromise<T, E>` names the default `S = FromValue<T, E>`. Sizes
/// (printed by the `sizes` test in `tests/promise.rs`, x86_64):
/// `DeferredPromise<u32, ()>` (resolved/rejected) is 12 bytes; a `new`
/// promise with a capture-less executor is 8 bytes (the state tag and the
/// settled `Result<u32, PromiseError<()>>`; captures add their size); a
/// [`PromiseCell`](crate::PromiseCell) promise is 24 bytes (the cell
/// reference, its generation, flags) with or without `defer`. With `std`,
/// promises that run code (`new`, `lazy`, `defer`, `detached`, the
/// combinators) also keep the context they were created in
/// ([`Snapshot`](crate::Snapshot), one pointer): `new` is then 16 bytes and
/// `defer` 32; `resolved`, `rejected` and `PromiseCell::promise` capture
/// nothing.
///
/// ```
/// use deferral::{DeferredPromise, Progress, PromiseState};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static CALLED: AtomicBool = AtomicBool::new(false);
/// let promise = DeferredPromise::<u32, ()>::new(|res| {
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
pub struct DeferredPromise<T, E, S = FromValue<T, E>>
where
    S: Source<T, E>,
{
    /// Structurally pinned (see `project`): its `Started` state.
    stage: Stage<S, S::Running>,
    /// The context current at creation: the executor, handlers and the
    /// started future run inside it (see [`crate::ContextVar`]).
    context: S::Context,
    _output: PhantomData<fn() -> Result<T, E>>,
}

impl<T, E> DeferredPromise<T, E> {
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
    /// (no heap; its resolver may go to an interrupt handler, or the cell
    /// itself is settled with [`PromiseCell::resolve`](crate::PromiseCell::resolve)).
    /// To settle with a future's output (JS `res(fetch(..))`), use
    /// [`lazy`](DeferredPromise::lazy): `new`'s resolver cannot `adopt`.
    ///
    /// ```
    /// use deferral::DeferredPromise;
    ///
    /// let p = DeferredPromise::<u32, ()>::new(|res| res.resolve(123));
    /// assert_eq!(futures::executor::block_on(p), Ok(123));
    /// ```
    pub fn new<X, R>(executor: X) -> DeferredPromise<T, PromiseError<E>, FromExecutor<X>>
    where
        X: for<'a> FnOnce(Resolver<'a, T, E>) -> R,
        R: LocalExecutorReturn,
    {
        DeferredPromise::from_start(FromExecutor { executor })
    }

    /// A promise that calls `make` at its first poll and follows the future
    /// it returns (the JS executor `res => res(future)`).
    ///
    /// ```
    /// use deferral::DeferredPromise;
    ///
    /// let p = DeferredPromise::lazy(|| async { Ok::<_, ()>(2 + 2) });
    /// assert_eq!(futures::executor::block_on(p), Ok(4));
    /// ```
    pub fn lazy<F, Fut>(make: F) -> DeferredPromise<T, E, FromFuture<F>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        DeferredPromise::from_start(FromFuture { make })
    }

    /// An already fulfilled promise (`state()` is `Fulfilled`).
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseState};
    ///
    /// let p = DeferredPromise::<_, ()>::resolved(1);
    /// assert_eq!(p.state(), PromiseState::Fulfilled);
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    pub fn resolved(value: T) -> Self {
        DeferredPromise::from_start(FromValue(Some(Ok(value))))
    }

    /// An already rejected promise (`state()` is `Rejected`).
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseState};
    ///
    /// let p = DeferredPromise::<u8, _>::rejected("boom");
    /// assert_eq!(p.state(), PromiseState::Rejected);
    /// assert_eq!(futures::executor::block_on(p), Err("boom"));
    /// ```
    pub fn rejected(error: E) -> Self {
        DeferredPromise::from_start(FromValue(Some(Err(error))))
    }
}

impl<T, E, S: Source<T, E>> DeferredPromise<T, E, S> {
    pub(crate) fn from_start(source: S) -> Self {
        DeferredPromise {
            stage: Stage::Unstarted(source),
            context: S::Context::capture(),
            _output: PhantomData,
        }
    }

    /// A promise whose source starts where it lies: for sources whose
    /// `start` only moves them into their running state (the
    /// combinators), the promise is built in that state directly, so the
    /// first poll moves nothing. (Moving a combinator's source at its first
    /// poll copied the rest of the chain: starting a chain of `n` cost
    /// O(n²) bytes.) The running state itself reports `Unstarted` until it
    /// is polled ([`Source::running_state`]).
    pub(crate) fn from_running(running: S::Running) -> Self {
        DeferredPromise {
            stage: Stage::Started(running),
            context: S::Context::capture(),
            _output: PhantomData,
        }
    }

    /// Where the promise is in its life. After it handed out its settlement
    /// it keeps reporting `Fulfilled` or `Rejected`.
    ///
    /// ```
    /// use deferral::{DeferredPromise, Progress, PromiseState};
    ///
    /// let mut p = Box::pin(DeferredPromise::<u8, ()>::new(|r| r.resolve(1)));
    /// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
    /// assert_eq!(futures::executor::block_on(p.as_mut()), Ok(1));
    /// assert_eq!(p.state(), PromiseState::Fulfilled);
    /// ```
    pub fn state(&self) -> PromiseState {
        match &self.stage {
            Stage::Unstarted(source) => source.unstarted_state(),
            Stage::Started(running) => S::running_state(running),
            Stage::Done { fulfilled: true } => PromiseState::Fulfilled,
            Stage::Done { fulfilled: false } => PromiseState::Rejected,
        }
    }
}

impl<T, E, S: Source<T, E, Running = S>> DeferredPromise<T, E, S> {
    /// The source, for sources that are their own running state, until the
    /// promise finished.
    pub(crate) fn source(&self) -> Option<&S> {
        match &self.stage {
            Stage::Unstarted(source) | Stage::Started(source) => Some(source),
            Stage::Done { .. } => None,
        }
    }
}

// Only a started promise's running state is pinned (the unstarted source
// is moved out to start it; the context is never pinned).
impl<T, E, S: Source<T, E>> Unpin for DeferredPromise<T, E, S> where S::Running: Unpin {}

impl<T, E, S: Source<T, E>> DeferredPromise<T, E, S> {
    /// The pinned stage and the captured context.
    #[inline(always)]
    fn project(self: Pin<&mut Self>) -> (Pin<&mut Stage<S, S::Running>>, &mut S::Context) {
        // SAFETY: `stage` is structurally pinned: never moved out of a
        // pinned promise (no by-value accessor, no `Drop` impl, not
        // `repr(packed)`); the promise is `Unpin` only if `S::Running` is
        // (above), which is exactly when `Stage` is (its only pinned
        // field is `Started`'s). `context` is not pinned.
        unsafe {
            let this = self.get_unchecked_mut();
            (Pin::new_unchecked(&mut this.stage), &mut this.context)
        }
    }
}

impl<T, E, S: Source<T, E>> Future for DeferredPromise<T, E, S> {
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let (mut stage, context) = self.project();
        // Everything the promise runs — the executor or handler, then the
        // future it started — runs in the context captured at creation
        // (kept until the promise is dropped). Dropping an unfinished
        // promise drops its executor or future in the dropper's context:
        // a `Drop` impl here costs ~30 instructions on every promise
        // (measured with `benches/context_overhead.rs`).
        context.run(|| {
            if let StageProj::Unstarted(_) = stage.as_mut().project() {
                // Move the source out (it was never pinned: `Unstarted` is
                // not a structurally pinned field). If `start` panics, the
                // promise is left `Done` and polling it again panics with
                // the message below.
                let source = match stage
                    .as_mut()
                    .project_replace(Stage::Done { fulfilled: false })
                {
                    StageReplace::Unstarted(source) => source,
                    _ => unreachable!("checked just above"),
                };
                stage.set(Stage::Started(source.start()));
            }
            match stage.as_mut().project() {
                StageProj::Started(running) => {
                    let outcome = core::task::ready!(running.poll(cx));
                    stage.set(Stage::Done {
                        fulfilled: outcome.is_ok(),
                    });
                    Poll::Ready(outcome)
                }
                StageProj::Done { .. } => panic!("`DeferredPromise` polled after completion"),
                StageProj::Unstarted(_) => unreachable!("started above"),
            }
        })
    }
}

impl<T, E, S: Source<T, E>> FusedFuture for DeferredPromise<T, E, S> {
    fn is_terminated(&self) -> bool {
        matches!(self.stage, Stage::Done { .. })
    }
}

impl<T, E, S: Source<T, E>> fmt::Debug for DeferredPromise<T, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredPromise")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// The source of a [`DeferredPromise::new`] promise: the executor, waiting.
///
/// ```
/// use deferral::promise::FromExecutor;
/// use deferral::{DeferredPromise, PromiseError, Resolver};
///
/// fn answer(r: Resolver<'_, u8, ()>) {
///     r.resolve(42).unwrap();
/// }
/// let p: DeferredPromise<u8, PromiseError<()>, FromExecutor<fn(Resolver<'_, u8, ()>)>> =
///     DeferredPromise::new(answer as fn(Resolver<'_, u8, ()>));
/// assert_eq!(futures::executor::block_on(p), Ok(42));
/// ```
pub struct FromExecutor<X> {
    executor: X,
}

impl<X> Sealed for FromExecutor<X> {}

impl<T, E, X, R> Source<T, PromiseError<E>> for FromExecutor<X>
where
    X: for<'a> FnOnce(Resolver<'a, T, E>) -> R,
    R: LocalExecutorReturn,
{
    type Running = FromValue<T, PromiseError<E>>;
    type Context = crate::context::Captured;

    #[inline]
    fn start(self) -> Self::Running {
        let mut slot = None;
        drop((self.executor)(Resolver::local(&mut slot)));
        FromValue(Some(match slot {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(PromiseError::Rejected(error)),
            None => Err(PromiseError::Abandoned),
        }))
    }
}

impl<X> fmt::Debug for FromExecutor<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromExecutor").finish_non_exhaustive()
    }
}

/// The source of a [`DeferredPromise::lazy`] promise: the function that makes
/// the future, waiting.
///
/// ```
/// use deferral::{DeferredPromise, Progress, PromiseState};
///
/// let p = DeferredPromise::lazy(|| std::future::ready(Ok::<u8, ()>(1)));
/// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
/// # drop(p);
/// ```
pub struct FromFuture<F> {
    make: F,
}

impl<F> Sealed for FromFuture<F> {}

impl<T, E, F, Fut> Source<T, E> for FromFuture<F>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Running = Fut;
    type Context = crate::context::Captured;

    #[inline]
    fn start(self) -> Fut {
        (self.make)()
    }
}

impl<F> fmt::Debug for FromFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFuture").finish_non_exhaustive()
    }
}

/// A settlement waiting to be handed out: the source of
/// [`DeferredPromise::resolved`] / [`rejected`](DeferredPromise::rejected)
/// (the default `S` of `DeferredPromise<T, E>`), and the running state of a
/// [`DeferredPromise::new`] promise.
///
/// ```
/// use deferral::DeferredPromise;
/// use deferral::promise::FromValue;
///
/// let p: DeferredPromise<u32, (), FromValue<u32, ()>> = DeferredPromise::resolved(5);
/// assert_eq!(futures::executor::block_on(p), Ok(5));
/// ```
pub struct FromValue<T, E>(Option<Result<T, E>>);

impl<T, E> Sealed for FromValue<T, E> {}

impl<T, E> Unpin for FromValue<T, E> {}

impl<T, E> Future for FromValue<T, E> {
    type Output = Result<T, E>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        Poll::Ready(
            self.0
                .take()
                .expect("`DeferredPromise` polled after completion"),
        )
    }
}

impl<T, E> Source<T, E> for FromValue<T, E> {
    type Running = Self;
    type Context = ();

    fn start(self) -> Self {
        self
    }

    fn unstarted_state(&self) -> PromiseState {
        Self::running_state(self)
    }

    fn running_state(running: &Self) -> PromiseState {
        match &running.0 {
            Some(Ok(_)) => PromiseState::Fulfilled,
            Some(Err(_)) => PromiseState::Rejected,
            None => PromiseState::Pending(Progress::Started),
        }
    }
}

impl<T, E> fmt::Debug for FromValue<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Settled")
            .field(&Self::running_state(self))
            .finish()
    }
}
