//! `PromiseExt`: `deferred_then`, `deferred_catch`, `deferred_finally` and
//! `deferred_then_catch` — continuations that run only when followed.

use core::fmt;
use core::future::{Future, Ready, ready};
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project::pin_project;

use super::deferred::{DeferredPromise, Sealed, Source};
use super::state::{Progress, PromiseState};

/// What a handler may return: a value (`Ok`/`Err`, or `()`), or a future to
/// follow (a [`DeferredPromise`], or any future wrapped in [`Follow`]) — the
/// JS rule that a handler returning a thenable is adopted.
///
/// ```
/// use deferral::{DeferredPromise, Follow, PromiseExt};
/// use futures::executor::block_on;
///
/// let value = DeferredPromise::<u8, ()>::resolved(1).deferred_then(|v| Ok(v + 1));
/// let promise = DeferredPromise::<u8, ()>::resolved(1)
///     .deferred_then(|v| DeferredPromise::lazy(move || async move { Ok(v + 2) }));
/// let future = DeferredPromise::<u8, ()>::resolved(1)
///     .deferred_then(|v| Follow(async move { Ok(v + 3) }));
/// assert_eq!(block_on(value), Ok(2));
/// assert_eq!(block_on(promise), Ok(3));
/// assert_eq!(block_on(future), Ok(4));
/// ```
pub trait Reaction<E> {
    /// The value the reaction fulfils with.
    type Value;
    /// The future that produces the reaction's settlement.
    type Future: Future<Output = Result<Self::Value, E>>;

    /// Turns the handler's return value into a future to follow.
    ///
    /// ```
    /// use deferral::Reaction;
    ///
    /// let fut = Reaction::<()>::into_reaction(Ok::<u8, ()>(1));
    /// assert_eq!(futures::executor::block_on(fut), Ok(1));
    /// ```
    fn into_reaction(self) -> Self::Future;

    /// The settlement right away when there is nothing to follow (a value),
    /// else the future to follow: a chain then settles without storing and
    /// polling a ready future.
    #[doc(hidden)]
    #[inline]
    fn into_next(self) -> Next<Self::Future, Result<Self::Value, E>>
    where
        Self: Sized,
    {
        Next::Follow(self.into_reaction())
    }
}

impl<U, E> Reaction<E> for Result<U, E> {
    type Value = U;
    type Future = Ready<Result<U, E>>;

    fn into_reaction(self) -> Self::Future {
        ready(self)
    }

    #[inline]
    fn into_next(self) -> Next<Self::Future, Result<U, E>> {
        Next::Done(self)
    }
}

/// A handler that returns nothing fulfils with `()` (JS: `undefined`).
impl<E> Reaction<E> for () {
    type Value = ();
    type Future = Ready<Result<(), E>>;

    fn into_reaction(self) -> Self::Future {
        ready(Ok(()))
    }

    #[inline]
    fn into_next(self) -> Next<Self::Future, Result<(), E>> {
        Next::Done(Ok(()))
    }
}

impl<U, E, S: Source<U, E>> Reaction<E> for DeferredPromise<U, E, S> {
    type Value = U;
    type Future = Self;

    fn into_reaction(self) -> Self {
        self
    }
}

impl<F, U, E> Reaction<E> for Follow<F>
where
    F: Future<Output = Result<U, E>>,
{
    type Value = U;
    type Future = F;

    fn into_reaction(self) -> F {
        self.0
    }
}

/// Wraps a future a handler returns, so the promise follows it (adopts its
/// settlement).
///
/// ```
/// use deferral::{DeferredPromise, Follow, PromiseExt};
///
/// let p = DeferredPromise::<u8, ()>::resolved(2)
///     .deferred_then(|v| Follow(std::future::ready(Ok(v * 10))));
/// assert_eq!(futures::executor::block_on(p), Ok(20));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Follow<F>(pub F);

/// Continuations on any `Future<Output = Result<T, E>>` that return
/// [`DeferredPromise`]s: building them runs nothing; a handler runs only when
/// the promise it returned is polled, after its source settled.
///
/// ```
/// use deferral::{DeferredPromise, PromiseExt};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// static RAN: AtomicUsize = AtomicUsize::new(0);
/// let p = DeferredPromise::<u8, ()>::resolved(1).deferred_then(|v| {
///     RAN.fetch_add(1, Ordering::SeqCst);
///     Ok(v)
/// });
/// assert_eq!(RAN.load(Ordering::SeqCst), 0);
/// assert_eq!(futures::executor::block_on(p), Ok(1));
/// assert_eq!(RAN.load(Ordering::SeqCst), 1);
/// ```
pub trait PromiseExt<T, E>: Future<Output = Result<T, E>> + Sized {
    /// On fulfilment, runs `on_fulfilled(value)` and follows what it returns
    /// (a [`Reaction`]); a rejection passes through untouched.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, ()>::resolved(1).deferred_then(|v| Ok(v + 1));
    /// assert_eq!(futures::executor::block_on(p), Ok(2));
    /// ```
    fn deferred_then<H, R>(self, on_fulfilled: H) -> DeferredPromise<R::Value, E, Then<Self, H>>
    where
        H: FnOnce(T) -> R,
        R: Reaction<E>,
    {
        DeferredPromise::from_running(Chain::new(self, OnFulfilled(on_fulfilled)))
    }

    /// On rejection, runs `on_rejected(error)` and follows what it returns
    /// (recovering with a value, or failing with a new error type `E2`); a
    /// fulfilment passes through untouched.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseExt};
    /// use core::convert::Infallible;
    ///
    /// let p = DeferredPromise::<u8, &str>::rejected("boom")
    ///     .deferred_catch(|e| Ok::<_, Infallible>(e.len() as u8));
    /// assert_eq!(futures::executor::block_on(p), Ok(4));
    /// ```
    fn deferred_catch<H, R, E2>(self, on_rejected: H) -> DeferredPromise<T, E2, Catch<Self, H, E2>>
    where
        H: FnOnce(E) -> R,
        R: Reaction<E2, Value = T>,
    {
        DeferredPromise::from_running(Chain::new(self, OnRejected(on_rejected, PhantomData)))
    }

    /// The two-handler `then(onFulfilled, onRejected)`: exactly one of the
    /// handlers runs, and the promise follows what it returns.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, &str>::rejected("boom")
    ///     .deferred_then_catch(|v| Ok::<_, ()>(v as usize), |e| Ok(e.len()));
    /// assert_eq!(futures::executor::block_on(p), Ok(4));
    /// ```
    fn deferred_then_catch<H1, H2, R1, R2, E2>(
        self,
        on_fulfilled: H1,
        on_rejected: H2,
    ) -> DeferredPromise<R1::Value, E2, ThenCatch<Self, H1, H2, E2>>
    where
        H1: FnOnce(T) -> R1,
        H2: FnOnce(E) -> R2,
        R1: Reaction<E2>,
        R2: Reaction<E2, Value = R1::Value>,
    {
        DeferredPromise::from_running(Chain::new(
            self,
            OnEither(on_fulfilled, on_rejected, PhantomData),
        ))
    }

    /// After the source settles either way, runs `on_settled()` and follows
    /// what it returns; then hands out the source's settlement, unless the
    /// handler failed (its error wins, as in JS).
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, &str>::rejected("boom").deferred_finally(|| ());
    /// assert_eq!(futures::executor::block_on(p), Err("boom"));
    /// ```
    fn deferred_finally<H, R>(self, on_settled: H) -> DeferredPromise<T, E, Finally<Self, H>>
    where
        H: FnOnce() -> R,
        R: Reaction<E, Value = ()>,
    {
        DeferredPromise::from_running(Chain::new(self, OnSettled(on_settled)))
    }

    /// With `std`: a panic unwinding out of this promise's poll — its
    /// executor, a handler, the future it follows — becomes
    /// `Err(Caught::Panicked(..))` instead of unwinding through the
    /// caller's `poll`, as a throwing JS executor rejects its promise. Opt
    /// in per promise; without it panics propagate (see "Panics" on
    /// [`DeferredPromise`]).
    ///
    /// ```
    /// use deferral::promise::Caught;
    /// use deferral::{DeferredPromise, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, ()>::resolved(1)
    ///     .deferred_then(|_| -> Result<u8, ()> { panic!("handler bug") })
    ///     .catch_panics();
    /// let out = futures::executor::block_on(p);
    /// assert!(matches!(out, Err(Caught::Panicked(ref p)) if p.message() == Some("handler bug")));
    /// ```
    #[cfg(feature = "std")]
    fn catch_panics(self) -> super::catch::CatchPanics<Self> {
        super::catch::CatchPanics::new(self)
    }
}

impl<T, E, F: Future<Output = Result<T, E>>> PromiseExt<T, E> for F {}

/// The source of a [`PromiseExt::deferred_then`] promise.
///
/// ```
/// use deferral::{DeferredPromise, PromiseExt};
///
/// let p = DeferredPromise::<u8, ()>::resolved(1).deferred_then(|v| Ok(v));
/// # drop(p);
/// ```
pub struct Then<P, H> {
    source: P,
    handler: H,
}

/// The source of a [`PromiseExt::deferred_catch`] promise.
///
/// ```
/// use deferral::{DeferredPromise, PromiseExt};
///
/// let p = DeferredPromise::<u8, ()>::resolved(1).deferred_catch(|()| Ok::<u8, ()>(0));
/// # drop(p);
/// ```
pub struct Catch<P, H, E2> {
    source: P,
    handler: H,
    _error: PhantomData<fn() -> E2>,
}

/// The source of a [`PromiseExt::deferred_then_catch`] promise.
///
/// ```
/// use deferral::{DeferredPromise, PromiseExt};
///
/// let p = DeferredPromise::<u8, ()>::resolved(1)
///     .deferred_then_catch(|v| Ok::<u8, ()>(v), |()| Ok(0));
/// # drop(p);
/// ```
pub struct ThenCatch<P, H1, H2, E2> {
    source: P,
    on_fulfilled: H1,
    on_rejected: H2,
    _error: PhantomData<fn() -> E2>,
}

/// The source of a [`PromiseExt::deferred_finally`] promise.
///
/// ```
/// use deferral::{DeferredPromise, PromiseExt};
///
/// let p = DeferredPromise::<u8, ()>::resolved(1).deferred_finally(|| ());
/// # drop(p);
/// ```
pub struct Finally<P, H> {
    source: P,
    handler: H,
}

impl<P, H> Sealed for Then<P, H> {}
impl<P, H, E2> Sealed for Catch<P, H, E2> {}
impl<P, H1, H2, E2> Sealed for ThenCatch<P, H1, H2, E2> {}
impl<P, H> Sealed for Finally<P, H> {}

impl<T, E, P, H, R> Source<R::Value, E> for Then<P, H>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce(T) -> R,
    R: Reaction<E>,
{
    type Running = Chain<P, OnFulfilled<H>, R::Future>;
    type Context = crate::context::Captured;

    fn running_state(running: &Self::Running) -> PromiseState {
        running.state()
    }

    fn start(self) -> Self::Running {
        Chain::new(self.source, OnFulfilled(self.handler))
    }
}

impl<T, E, E2, P, H, R> Source<T, E2> for Catch<P, H, E2>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce(E) -> R,
    R: Reaction<E2, Value = T>,
{
    type Running = Chain<P, OnRejected<H, E2>, R::Future>;
    type Context = crate::context::Captured;

    fn running_state(running: &Self::Running) -> PromiseState {
        running.state()
    }

    fn start(self) -> Self::Running {
        Chain::new(self.source, OnRejected(self.handler, PhantomData))
    }
}

impl<T, E, E2, P, H1, H2, R1, R2> Source<R1::Value, E2> for ThenCatch<P, H1, H2, E2>
where
    P: Future<Output = Result<T, E>>,
    H1: FnOnce(T) -> R1,
    H2: FnOnce(E) -> R2,
    R1: Reaction<E2>,
    R2: Reaction<E2, Value = R1::Value>,
{
    type Running = Chain<P, OnEither<H1, H2, E2>, Either<R1::Future, R2::Future>>;
    type Context = crate::context::Captured;

    fn running_state(running: &Self::Running) -> PromiseState {
        running.state()
    }

    fn start(self) -> Self::Running {
        Chain::new(
            self.source,
            OnEither(self.on_fulfilled, self.on_rejected, PhantomData),
        )
    }
}

impl<T, E, P, H, R> Source<T, E> for Finally<P, H>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce() -> R,
    R: Reaction<E, Value = ()>,
{
    type Running = Chain<P, OnSettled<H>, Holding<R::Future, T, E>>;
    type Context = crate::context::Captured;

    fn running_state(running: &Self::Running) -> PromiseState {
        running.state()
    }

    fn start(self) -> Self::Running {
        Chain::new(self.source, OnSettled(self.handler))
    }
}

macro_rules! opaque_debug {
    ($($name:ident<$($p:ident),*>),*) => {$(
        impl<$($p),*> fmt::Debug for $name<$($p),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    )*};
}

opaque_debug!(Then<P, H>, Catch<P, H, E2>, ThenCatch<P, H1, H2, E2>, Finally<P, H>);

/// What happens when a chain's source settles: settle right away, or follow
/// a reaction future. (Public in a private module: never nameable outside.)
pub trait Step<In> {
    /// The chain's output.
    type Output;
    /// The future a handler's reaction becomes.
    type Reaction: Future<Output = Self::Output>;

    /// Runs the handler (if this settlement calls for it).
    fn step(self, input: In) -> Next<Self::Reaction, Self::Output>;
}

/// The result of a [`Step`].
pub enum Next<F, O> {
    /// Follow this future.
    Follow(F),
    /// Settle with this.
    Done(O),
}

/// `deferred_then`'s step.
pub struct OnFulfilled<H>(H);
/// `deferred_catch`'s step.
pub struct OnRejected<H, E2>(H, PhantomData<fn() -> E2>);
/// `deferred_then_catch`'s step.
pub struct OnEither<H1, H2, E2>(H1, H2, PhantomData<fn() -> E2>);
/// `deferred_finally`'s step.
pub struct OnSettled<H>(H);

impl<T, E, H, R> Step<Result<T, E>> for OnFulfilled<H>
where
    H: FnOnce(T) -> R,
    R: Reaction<E>,
{
    type Output = Result<R::Value, E>;
    type Reaction = R::Future;

    fn step(self, input: Result<T, E>) -> Next<R::Future, Self::Output> {
        match input {
            Ok(value) => (self.0)(value).into_next(),
            Err(error) => Next::Done(Err(error)),
        }
    }
}

impl<T, E, E2, H, R> Step<Result<T, E>> for OnRejected<H, E2>
where
    H: FnOnce(E) -> R,
    R: Reaction<E2, Value = T>,
{
    type Output = Result<T, E2>;
    type Reaction = R::Future;

    fn step(self, input: Result<T, E>) -> Next<R::Future, Self::Output> {
        match input {
            Ok(value) => Next::Done(Ok(value)),
            Err(error) => (self.0)(error).into_next(),
        }
    }
}

impl<T, E, E2, H1, H2, R1, R2> Step<Result<T, E>> for OnEither<H1, H2, E2>
where
    H1: FnOnce(T) -> R1,
    H2: FnOnce(E) -> R2,
    R1: Reaction<E2>,
    R2: Reaction<E2, Value = R1::Value>,
{
    type Output = Result<R1::Value, E2>;
    type Reaction = Either<R1::Future, R2::Future>;

    fn step(self, input: Result<T, E>) -> Next<Self::Reaction, Self::Output> {
        Next::Follow(match input {
            Ok(value) => Either::Left((self.0)(value).into_reaction()),
            Err(error) => Either::Right((self.1)(error).into_reaction()),
        })
    }
}

impl<T, E, H, R> Step<Result<T, E>> for OnSettled<H>
where
    H: FnOnce() -> R,
    R: Reaction<E, Value = ()>,
{
    type Output = Result<T, E>;
    type Reaction = Holding<R::Future, T, E>;

    fn step(self, input: Result<T, E>) -> Next<Self::Reaction, Self::Output> {
        Next::Follow(Holding {
            reaction: (self.0)().into_reaction(),
            held: Some(input),
        })
    }
}

/// The running state of every combinator: poll the source, run the step,
/// follow the reaction. A combinator's promise is built in this state (see
/// `DeferredPromise::from_running`): nothing moves at its first poll.
#[pin_project(project = ChainProj)]
pub enum Chain<P, K, F> {
    /// Waiting for the source.
    Source {
        /// The source promise/future.
        #[pin]
        source: P,
        /// The handler(s), until they run.
        step: Option<K>,
        /// Whether the chain was polled yet (for `state()`).
        polled: bool,
    },
    /// Following the handler's reaction.
    Reacting {
        /// The reaction future.
        #[pin]
        reaction: F,
    },
    /// Settled.
    Gone,
}

impl<P, K, F> Chain<P, K, F> {
    fn new(source: P, step: K) -> Self {
        Chain::Source {
            source,
            step: Some(step),
            polled: false,
        }
    }

    fn state(&self) -> PromiseState {
        match self {
            Chain::Source { polled: false, .. } => PromiseState::Pending(Progress::Unstarted),
            _ => PromiseState::Pending(Progress::Started),
        }
    }
}

impl<P, K, F> Future for Chain<P, K, F>
where
    P: Future,
    K: Step<P::Output, Reaction = F>,
    F: Future<Output = K::Output>,
{
    type Output = K::Output;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<K::Output> {
        loop {
            let next = match self.as_mut().project() {
                ChainProj::Source {
                    source,
                    step,
                    polled,
                } => {
                    *polled = true;
                    let input = core::task::ready!(source.poll(cx));
                    step.take().expect("a chain's step runs once").step(input)
                }
                ChainProj::Reacting { reaction } => {
                    let output = core::task::ready!(reaction.poll(cx));
                    Next::Done(output)
                }
                ChainProj::Gone => panic!("`DeferredPromise` polled after completion"),
            };
            match next {
                // Drop the settled source before following the reaction.
                Next::Follow(reaction) => self.set(Chain::Reacting { reaction }),
                Next::Done(output) => {
                    self.set(Chain::Gone);
                    return Poll::Ready(output);
                }
            }
        }
    }
}

/// One of two futures with the same output.
#[pin_project(project = EitherProj)]
pub enum Either<A, B> {
    /// The first.
    Left(#[pin] A),
    /// The second.
    Right(#[pin] B),
}

impl<A: Future, B: Future<Output = A::Output>> Future for Either<A, B> {
    type Output = A::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
        match self.project() {
            EitherProj::Left(a) => a.poll(cx),
            EitherProj::Right(b) => b.poll(cx),
        }
    }
}

/// `deferred_finally`'s reaction: the handler's future, holding the source's
/// settlement until it is done.
#[pin_project]
pub struct Holding<F, T, E> {
    #[pin]
    reaction: F,
    held: Option<Result<T, E>>,
}

impl<F, T, E> Future for Holding<F, T, E>
where
    F: Future<Output = Result<(), E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let this = self.project();
        let done = core::task::ready!(this.reaction.poll(cx));
        let held = this.held.take().expect("polled after completion");
        Poll::Ready(match done {
            Ok(()) => held,
            Err(error) => Err(error),
        })
    }
}
