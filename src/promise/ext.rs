//! `PromiseExt`: `deferred_then`, `deferred_catch`, `deferred_finally` and
//! `deferred_then_catch` — continuations that run only when followed. Each
//! is its own future over one `First → Second → Empty` state machine
//! (`Chain`, as futures-util's `Flatten`): poll the source, run the
//! handler, follow what it returned.
//!
//! On a boxed promise (`DeferredPromise<T, E>`, `BoxPromise`,
//! `LocalBoxPromise`) the same methods are inherent and return a boxed
//! promise again: each link is one heap node that names its source's node,
//! so the erased driver (`promise::inner`) settles and drops a chain of any
//! length without recursion.

use core::future::{Future, Ready, ready};
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project::pin_project;

use super::deferred::{DeferredPromise, polled_after_completion, unreachable_state};
#[cfg(not(feature = "std"))]
use super::inner::ContextSlot;
use super::inner::{PromiseFuture, in_context, sealed::Sealed};
use crate::context::Captured;

/// What a handler may return: a value (`Ok`/`Err`, or `()`), or a future to
/// follow (a [`DeferredPromise`], or any future wrapped in [`Follow`]) — the
/// JS rule that a handler returning a thenable is adopted.
///
/// ```
/// use deferral::{DeferredPromise, PromiseExt};
/// use deferral::promise::Follow;
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
    /// use deferral::promise::Reaction;
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

impl<U, E, F: PromiseFuture<U, E>> Reaction<E> for DeferredPromise<U, E, F> {
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
/// use deferral::{DeferredPromise, PromiseExt};
/// use deferral::promise::Follow;
///
/// let p = DeferredPromise::<u8, ()>::resolved(2)
///     .deferred_then(|v| Follow(std::future::ready(Ok(v * 10))));
/// assert_eq!(futures::executor::block_on(p), Ok(20));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Follow<F>(pub F);

/// The result of running a handler: follow a future, or settle now.
#[doc(hidden)]
pub enum Next<F, O> {
    /// Follow this future.
    Follow(F),
    /// Settle with this.
    Done(O),
}

/// Continuations on any `Future<Output = Result<T, E>>` that return
/// [`DeferredPromise`]s: building them runs nothing; a handler runs only when
/// the promise it returned is polled, after its source settled.
///
/// On a boxed promise the same four methods are inherent
/// ([`DeferredPromise::deferred_then`] and friends) and return a boxed
/// promise, so `p = p.deferred_then(..)` works in a loop and a chain of any
/// length settles without recursion.
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
    #[inline]
    fn deferred_then<H, R>(
        self,
        on_fulfilled: H,
    ) -> DeferredPromise<R::Value, E, Then<Self, H, R::Future>>
    where
        H: FnOnce(T) -> R,
        R: Reaction<E>,
    {
        DeferredPromise::from_future(Then(Linked::new(self, on_fulfilled)))
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
    #[inline]
    fn deferred_catch<H, R, E2>(
        self,
        on_rejected: H,
    ) -> DeferredPromise<T, E2, Catch<Self, H, R::Future>>
    where
        H: FnOnce(E) -> R,
        R: Reaction<E2, Value = T>,
    {
        DeferredPromise::from_future(Catch(Linked::new(self, on_rejected)))
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
    #[allow(clippy::type_complexity)]
    #[inline]
    fn deferred_then_catch<H1, H2, R1, R2, E2>(
        self,
        on_fulfilled: H1,
        on_rejected: H2,
    ) -> DeferredPromise<R1::Value, E2, ThenCatch<Self, H1, H2, R1::Future, R2::Future>>
    where
        H1: FnOnce(T) -> R1,
        H2: FnOnce(E) -> R2,
        R1: Reaction<E2>,
        R2: Reaction<E2, Value = R1::Value>,
    {
        DeferredPromise::from_future(ThenCatch(Linked::new(self, (on_fulfilled, on_rejected))))
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
    #[allow(clippy::type_complexity)]
    #[inline]
    fn deferred_finally<H, R>(
        self,
        on_settled: H,
    ) -> DeferredPromise<T, E, Finally<Self, H, R::Future, T, E>>
    where
        H: FnOnce() -> R,
        R: Reaction<E, Value = ()>,
    {
        DeferredPromise::from_future(Finally(Linked::new(self, on_settled)))
    }
}

impl<T, E, F: Future<Output = Result<T, E>>> PromiseExt<T, E> for F {}

// ------------------------------------------------------------------ chain

/// One combinator's state: the source and the handler, then the reaction.
#[pin_project(project = ChainProj)]
enum Chain<P, H, F> {
    First {
        #[pin]
        source: P,
        /// Moved out when the source settles (never pinned).
        handler: H,
    },
    Second {
        #[pin]
        reaction: F,
    },
    Empty,
}

/// A combinator: its chain, and the context its handler and reaction run
/// in (the one current when it was made).
struct Linked<P, H, F> {
    /// Structurally pinned (see `poll_with`). No `Drop` impl here or in
    /// `Chain`: one would make dropck require a handler's borrows to
    /// outlive the promise (`tests/review_chain_drop.rs`, `dropck`), which
    /// `futures`' combinators do not.
    chain: Chain<P, H, F>,
    context: Captured,
}

impl<P, H, F> Linked<P, H, F> {
    #[inline(always)]
    fn new(source: P, handler: H) -> Self {
        Linked {
            chain: Chain::First { source, handler },
            context: Captured::capture(),
        }
    }

    /// Polls the source; once it settles, hands its output and the handler
    /// to `step` (the source is dropped first), then follows the reaction
    /// it returns, if any.
    #[inline(always)]
    fn poll_with<O>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        step: impl FnOnce(H, P::Output) -> Next<F, O>,
    ) -> Poll<O>
    where
        P: Future,
        F: Future<Output = O>,
    {
        // SAFETY: `chain` is structurally pinned: never moved out of a
        // pinned `Linked` (`take_handler` moves out only the unpinned
        // handler and drops the source in place; the only other `&mut`
        // path, `HasSource::source_mut` for an erased chain's `take_child`,
        // moves just the source's erased node handle — a pointer — out of
        // an unpinned field; no `Drop`; not `repr(packed)`),
        // and the combinators are `Unpin` only if `P` and `F` are.
        // `context` is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        let chain = unsafe { Pin::new_unchecked(&mut this.chain) };
        // Inline when no context is captured or current (the slow path is a
        // guard taken out of line, not a call taking this closure), so that
        // a chain's links inline into each other.
        in_context(&this.context, || Self::drive(chain, cx, step))
    }

    /// The state machine (see `poll_with`).
    #[inline(always)]
    fn drive<O>(
        mut chain: Pin<&mut Chain<P, H, F>>,
        cx: &mut Context<'_>,
        step: impl FnOnce(H, P::Output) -> Next<F, O>,
    ) -> Poll<O>
    where
        P: Future,
        F: Future<Output = O>,
    {
        if let ChainProj::First { source, .. } = chain.as_mut().project() {
            let input = core::task::ready!(source.poll(cx));
            // One write: the chain becomes `Empty`, the settled source is
            // dropped in place and the handler moved out; then the handler
            // runs (if it panics, the chain stays `Empty`).
            let handler = take_handler(chain.as_mut());
            match step(handler, input) {
                Next::Done(output) => return Poll::Ready(output),
                Next::Follow(reaction) => chain.set(Chain::Second { reaction }),
            }
        }
        match chain.as_mut().project() {
            ChainProj::Second { reaction } => {
                let output = core::task::ready!(reaction.poll(cx));
                chain.set(Chain::Empty);
                Poll::Ready(output)
            }
            _ => polled_after_completion(),
        }
    }
}

/// One step of a settled `First`: the handler moved out, the source
/// dropped in place, the chain `Empty` (also if that drop panics; the
/// handler is then dropped by the unwinding). What pin-project's
/// `project_replace` does, but its drop guard was a call per link (64
/// links: 2959 → 2520 instructions; without `std` 719 → 13, the whole
/// chain folded).
#[inline(always)]
fn take_handler<P, H, F>(chain: Pin<&mut Chain<P, H, F>>) -> H {
    /// Writes `Empty` over a chain whose fields were moved out or dropped.
    struct SetEmpty<P, H, F>(*mut Chain<P, H, F>);
    impl<P, H, F> Drop for SetEmpty<P, H, F> {
        #[inline(always)]
        fn drop(&mut self) {
            // SAFETY: the chain's fields are moved out or dropped (below):
            // overwriting it without a drop is what they need.
            unsafe { core::ptr::write(self.0, Chain::Empty) }
        }
    }
    // SAFETY: the source is dropped in place, never moved (it is pinned);
    // the handler is not pinned and is moved out by `read`, after which
    // only `SetEmpty` touches the chain, overwriting it unread.
    unsafe {
        let this: *mut Chain<P, H, F> = chain.get_unchecked_mut();
        let Chain::First { source, handler } = &mut *this else {
            unreachable_state();
        };
        let source: *mut P = source;
        let handler = core::ptr::read(handler);
        let _empty = SetEmpty(this);
        core::ptr::drop_in_place(source);
        handler
    }
}

macro_rules! combinator {
    ($(#[$doc:meta])* $name:ident<$($p:ident),*>, handler $h:ty, reaction $f:ty) => {
        $(#[$doc])*
        pub struct $name<$($p),*>(Linked<P, $h, $f>);

        impl<$($p),*> Unpin for $name<$($p),*> where P: Unpin, $f: Unpin {}
        impl<$($p),*> Sealed for $name<$($p),*> {}

        impl<$($p),*> $name<$($p),*> {
            /// The pinned combinator.
            #[inline(always)]
            fn linked(self: Pin<&mut Self>) -> Pin<&mut Linked<P, $h, $f>> {
                // SAFETY: a newtype: structurally pinned, no `Drop`, `Unpin`
                // only when its pinned parts are.
                unsafe { self.map_unchecked_mut(|this| &mut this.0) }
            }
        }
    };
}

combinator!(
    /// The future of a [`PromiseExt::deferred_then`] promise: the source and
    /// the handler, then the future the handler returned (`F`).
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, ()>::resolved(1).deferred_then(|v| Ok(v));
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    Then<P, H, F>, handler H, reaction F
);

combinator!(
    /// The future of a [`PromiseExt::deferred_catch`] promise.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, ()>::rejected(()).deferred_catch(|()| Ok::<u8, ()>(0));
    /// assert_eq!(futures::executor::block_on(p), Ok(0));
    /// ```
    Catch<P, H, F>, handler H, reaction F
);

combinator!(
    /// The future of a [`PromiseExt::deferred_then_catch`] promise.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, ()>::resolved(1)
    ///     .deferred_then_catch(|v| Ok::<u8, ()>(v), |()| Ok(0));
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    ThenCatch<P, H1, H2, F1, F2>, handler (H1, H2), reaction Either<F1, F2>
);

combinator!(
    /// The future of a [`PromiseExt::deferred_finally`] promise: the handler's
    /// future holds the source's settlement until it is done.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, ()>::resolved(1).deferred_finally(|| ());
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    Finally<P, H, F, T, E>, handler H, reaction Holding<F, T, E>
);

impl<P, H, F, R, T, E> Future for Then<P, H, F>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce(T) -> R,
    R: Reaction<E, Future = F>,
    F: Future<Output = Result<R::Value, E>>,
{
    type Output = Result<R::Value, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.linked().poll_with(cx, |handler, input| match input {
            Ok(value) => handler(value).into_next(),
            Err(error) => {
                // Unused, dropped while `error` is a local: if its
                // destructor panics, the unwinding drops the error (a
                // result moved out before a drop that unwinds would leak,
                // rust-lang/rust#47949).
                drop(handler);
                Next::Done(Err(error))
            }
        })
    }
}

impl<P, H, F, R, T, E> PromiseFuture<R::Value, E> for Then<P, H, F>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce(T) -> R,
    R: Reaction<E, Future = F>,
    F: Future<Output = Result<R::Value, E>>,
{
}

impl<P, H, F, R, T, E, E2> Future for Catch<P, H, F>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce(E) -> R,
    R: Reaction<E2, Value = T, Future = F>,
    F: Future<Output = Result<T, E2>>,
{
    type Output = Result<T, E2>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.linked().poll_with(cx, |handler, input| match input {
            Ok(value) => {
                // Unused: dropped while `value` is a local (see `Then`).
                drop(handler);
                Next::Done(Ok(value))
            }
            Err(error) => handler(error).into_next(),
        })
    }
}

impl<P, H, F, R, T, E, E2> PromiseFuture<T, E2> for Catch<P, H, F>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce(E) -> R,
    R: Reaction<E2, Value = T, Future = F>,
    F: Future<Output = Result<T, E2>>,
{
}

impl<P, H1, H2, F1, F2, R1, R2, T, E, U, E2> Future for ThenCatch<P, H1, H2, F1, F2>
where
    P: Future<Output = Result<T, E>>,
    H1: FnOnce(T) -> R1,
    H2: FnOnce(E) -> R2,
    R1: Reaction<E2, Value = U, Future = F1>,
    R2: Reaction<E2, Value = U, Future = F2>,
    F1: Future<Output = Result<U, E2>>,
    F2: Future<Output = Result<U, E2>>,
{
    type Output = Result<U, E2>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.linked()
            .poll_with(cx, |(on_fulfilled, on_rejected), input| match input {
                // The handler that did not run is dropped while the
                // reaction is a local (see `Then`).
                Ok(value) => {
                    let reaction = on_fulfilled(value).into_reaction();
                    drop(on_rejected);
                    Next::Follow(Either::Left(reaction))
                }
                Err(error) => {
                    let reaction = on_rejected(error).into_reaction();
                    drop(on_fulfilled);
                    Next::Follow(Either::Right(reaction))
                }
            })
    }
}

impl<P, H1, H2, F1, F2, R1, R2, T, E, U, E2> PromiseFuture<U, E2> for ThenCatch<P, H1, H2, F1, F2>
where
    P: Future<Output = Result<T, E>>,
    H1: FnOnce(T) -> R1,
    H2: FnOnce(E) -> R2,
    R1: Reaction<E2, Value = U, Future = F1>,
    R2: Reaction<E2, Value = U, Future = F2>,
    F1: Future<Output = Result<U, E2>>,
    F2: Future<Output = Result<U, E2>>,
{
}

impl<P, H, F, R, T, E> Future for Finally<P, H, F, T, E>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce() -> R,
    R: Reaction<E, Value = (), Future = F>,
    F: Future<Output = Result<(), E>>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.linked().poll_with(cx, |handler, input| {
            Next::Follow(Holding {
                reaction: handler().into_reaction(),
                held: Some(input),
            })
        })
    }
}

impl<P, H, F, R, T, E> PromiseFuture<T, E> for Finally<P, H, F, T, E>
where
    P: Future<Output = Result<T, E>>,
    H: FnOnce() -> R,
    R: Reaction<E, Value = (), Future = F>,
    F: Future<Output = Result<(), E>>,
{
}

/// One of two futures with the same output (`deferred_then_catch`'s
/// reaction).
#[doc(hidden)]
#[pin_project(project = EitherProj)]
pub enum Either<A, B> {
    /// The first.
    Left(#[pin] A),
    /// The second.
    Right(#[pin] B),
}

impl<A: Future, B: Future<Output = A::Output>> Future for Either<A, B> {
    type Output = A::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
        match self.project() {
            EitherProj::Left(a) => a.poll(cx),
            EitherProj::Right(b) => b.poll(cx),
        }
    }
}

/// `deferred_finally`'s reaction: the handler's future, holding the source's
/// settlement until it is done.
#[doc(hidden)]
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let this = self.project();
        let done = core::task::ready!(this.reaction.poll(cx));
        match (done, this.held.take()) {
            (Ok(()), Some(held)) => Poll::Ready(held),
            (Err(error), Some(held)) => {
                // Dropped while `error` is a local (see `Then`).
                drop(held);
                Poll::Ready(Err(error))
            }
            (_, None) => polled_after_completion(),
        }
    }
}

// ------------------------------------------------------- erased chains

#[cfg(feature = "alloc")]
mod erased_chain {
    use core::future::Future;
    use core::pin::Pin;
    use core::ptr::NonNull;
    use core::task::{Context, Poll};

    use super::{Catch, Chain, Finally, Linked, Then, ThenCatch};
    use crate::promise::deferred::DeferredPromise;
    use crate::promise::inner::{Erased, LocalErased, NodeFuture, OwnedNode, Raw, RawErased};
    use crate::promise::state::{Progress, PromiseState};

    /// A chain link over an erased promise, as a heap node: the combinator,
    /// and its source's node while that has not finished (kept beside the
    /// combinator so that the driver never reads the combinator, whose
    /// reaction may borrow itself).
    pub(super) struct Link<'a, C> {
        combinator: C,
        source: Option<NonNull<dyn Raw + 'a>>,
    }

    /// The erased handle a combinator's source is (for the boxed forms).
    pub(super) trait ErasedSource<'a> {
        /// The source's node.
        fn node(&self) -> Option<NonNull<dyn Raw + 'a>>;
        /// Takes the source's node out.
        fn take_node(&mut self) -> Option<OwnedNode<'a>>;
    }

    impl<'a, T, E> ErasedSource<'a> for DeferredPromise<T, E, Erased<'a, T, E>> {
        fn node(&self) -> Option<NonNull<dyn Raw + 'a>> {
            // SAFETY: a plain read of the handle (a pointer), while nobody
            // accesses the promise mutably.
            unsafe { (*self.future_ptr()).pending() }
        }

        fn take_node(&mut self) -> Option<OwnedNode<'a>> {
            self.future_mut().take()
        }
    }

    impl<'a, T, E> ErasedSource<'a> for DeferredPromise<T, E, LocalErased<'a, T, E>> {
        fn node(&self) -> Option<NonNull<dyn Raw + 'a>> {
            // SAFETY: as above.
            unsafe { (*self.future_ptr()).pending() }
        }

        fn take_node(&mut self) -> Option<OwnedNode<'a>> {
            self.future_mut().take()
        }
    }

    /// Reaches a combinator's source (for `take_child`).
    pub(super) trait HasSource {
        type Source;
        fn source_mut(&mut self) -> Option<&mut Self::Source>;
    }

    impl<P, H, F> HasSource for Linked<P, H, F> {
        type Source = P;
        fn source_mut(&mut self) -> Option<&mut P> {
            match &mut self.chain {
                Chain::First { source, .. } => Some(source),
                _ => None,
            }
        }
    }

    macro_rules! has_source {
        ($($name:ident<$($p:ident),*>),*) => {$(
            impl<$($p),*> HasSource for $name<$($p),*> {
                type Source = P;
                fn source_mut(&mut self) -> Option<&mut P> {
                    self.0.source_mut()
                }
            }
        )*};
    }
    has_source!(Then<P, H, F>, Catch<P, H, F>, ThenCatch<P, H1, H2, F1, F2>, Finally<P, H, F, T, E>);

    impl<C: Future> Future for Link<'_, C> {
        type Output = C::Output;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
            // SAFETY: `combinator` is structurally pinned (the node never
            // moves it; `source` is a plain pointer, not pinned).
            let this = unsafe { self.get_unchecked_mut() };
            // Polled only once the source's node finished (or was never
            // there): the combinator takes its settlement and frees it now.
            this.source = None;
            // SAFETY: as above.
            unsafe { Pin::new_unchecked(&mut this.combinator) }.poll(cx)
        }
    }

    impl<'a, C> NodeFuture for Link<'a, C>
    where
        C: Future + HasSource,
        C::Source: ErasedSource<'a>,
    {
        unsafe fn pending_child<'s>(this: *const Self) -> Option<NonNull<dyn Raw + 's>>
        where
            Self: 's,
        {
            // SAFETY: `this` is live; only the plain `source` field is read.
            let node = unsafe { (*this).source }?;
            // SAFETY: the node is owned by the combinator's source, alive
            // while `source` is set, and the driver has the only access.
            (!unsafe { node.as_ref().is_finished() }).then_some(node)
        }

        unsafe fn take_child<'s>(this: *mut Self) -> Option<OwnedNode<'s>>
        where
            Self: 's,
        {
            // SAFETY: the caller has the only access to the link (it is
            // being dropped); a `&mut` to the combinator is only made here,
            // never a shared reference.
            unsafe {
                (*this).source = None;
                (*this).combinator.source_mut()?.take_node()
            }
        }

        unsafe fn peek_node(_this: *const Self, unstarted: bool) -> PromiseState {
            if unstarted {
                PromiseState::Pending(Progress::Unstarted)
            } else {
                PromiseState::Pending(Progress::Started)
            }
        }
    }

    /// Boxes a combinator over an erased source (whose node is `source`,
    /// read before the source was moved into the combinator: moving the
    /// handle does not move the node) into a link node.
    pub(super) fn link<'a, C, U, E2>(
        combinator: C,
        source: Option<NonNull<dyn Raw + 'a>>,
    ) -> RawErased<'a, U, E2>
    where
        C: Future<Output = Result<U, E2>> + HasSource + 'a,
        C::Source: ErasedSource<'a>,
        U: 'a,
        E2: 'a,
    {
        RawErased::over(Link { combinator, source })
    }
}

#[cfg(feature = "alloc")]
macro_rules! erased_combinators {
    ($erased:ident, [$($send:tt)*], $example:literal) => {
        impl<'a, T: 'a, E: 'a> DeferredPromise<T, E, super::inner::$erased<'a, T, E>> {
            /// [`PromiseExt::deferred_then`] on a boxed promise: the result
            /// is boxed too (one allocation for the link), and a chain of
            /// any length settles and drops without recursion.
            ///
            #[doc = $example]
            pub fn deferred_then<H, R>(
                self,
                on_fulfilled: H,
            ) -> DeferredPromise<R::Value, E, super::inner::$erased<'a, R::Value, E>>
            where
                H: FnOnce(T) -> R $($send)* + 'a,
                R: Reaction<E>,
                R::Future: 'a $($send)*,
                R::Value: 'a,
            {
                use erased_chain::ErasedSource;
                let source = self.node();
                let node = erased_chain::link(Then(Linked::new(self, on_fulfilled)), source);
                DeferredPromise::from_future(super::inner::$erased(node))
            }

            /// [`PromiseExt::deferred_catch`] on a boxed promise: boxed too,
            /// settled without recursion (see
            /// [`deferred_then`](Self::deferred_then)).
            ///
            /// ```
            /// use deferral::DeferredPromise;
            ///
            /// let p: DeferredPromise<u8, &str> = DeferredPromise::rejected("no").boxed();
            /// let p = p.deferred_catch(|e| Ok::<u8, ()>(e.len() as u8));
            /// assert_eq!(futures::executor::block_on(p), Ok(2));
            /// ```
            pub fn deferred_catch<H, R, E2>(
                self,
                on_rejected: H,
            ) -> DeferredPromise<T, E2, super::inner::$erased<'a, T, E2>>
            where
                H: FnOnce(E) -> R $($send)* + 'a,
                R: Reaction<E2, Value = T>,
                R::Future: 'a $($send)*,
                E2: 'a,
            {
                use erased_chain::ErasedSource;
                let source = self.node();
                let node = erased_chain::link(Catch(Linked::new(self, on_rejected)), source);
                DeferredPromise::from_future(super::inner::$erased(node))
            }

            /// [`PromiseExt::deferred_then_catch`] on a boxed promise: boxed
            /// too, settled without recursion.
            ///
            /// ```
            /// use deferral::DeferredPromise;
            ///
            /// let p: DeferredPromise<u8, ()> = DeferredPromise::resolved(3).boxed();
            /// let p = p.deferred_then_catch(|v| Ok::<u8, ()>(v * 2), |()| Ok(0));
            /// assert_eq!(futures::executor::block_on(p), Ok(6));
            /// ```
            #[allow(clippy::type_complexity)]
            pub fn deferred_then_catch<H1, H2, R1, R2, E2>(
                self,
                on_fulfilled: H1,
                on_rejected: H2,
            ) -> DeferredPromise<R1::Value, E2, super::inner::$erased<'a, R1::Value, E2>>
            where
                H1: FnOnce(T) -> R1 $($send)* + 'a,
                H2: FnOnce(E) -> R2 $($send)* + 'a,
                R1: Reaction<E2>,
                R2: Reaction<E2, Value = R1::Value>,
                R1::Future: 'a $($send)*,
                R2::Future: 'a $($send)*,
                R1::Value: 'a,
                E2: 'a,
            {
                use erased_chain::ErasedSource;
                let source = self.node();
                let node = erased_chain::link(
                    ThenCatch(Linked::new(self, (on_fulfilled, on_rejected))),
                    source,
                );
                DeferredPromise::from_future(super::inner::$erased(node))
            }

            /// [`PromiseExt::deferred_finally`] on a boxed promise: boxed
            /// too, settled without recursion.
            ///
            /// ```
            /// use deferral::DeferredPromise;
            ///
            /// let p: DeferredPromise<u8, ()> = DeferredPromise::resolved(3).boxed();
            /// let p = p.deferred_finally(|| ());
            /// assert_eq!(futures::executor::block_on(p), Ok(3));
            /// ```
            pub fn deferred_finally<H, R>(
                self,
                on_settled: H,
            ) -> DeferredPromise<T, E, super::inner::$erased<'a, T, E>>
            where
                H: FnOnce() -> R $($send)* + 'a,
                R: Reaction<E, Value = ()>,
                R::Future: 'a $($send)*,
            {
                use erased_chain::ErasedSource;
                let source = self.node();
                let node = erased_chain::link(Finally(Linked::new(self, on_settled)), source);
                DeferredPromise::from_future(super::inner::$erased(node))
            }
        }
    };
}

#[cfg(feature = "alloc")]
erased_combinators!(
    Erased,
    [+ Send],
    "```\nuse deferral::DeferredPromise;\n\nlet mut p: DeferredPromise<u32, ()> = DeferredPromise::resolved(0).boxed();\nfor _ in 0..1000 {\n    p = p.deferred_then(|v| Ok(v + 1));\n}\nassert_eq!(futures::executor::block_on(p), Ok(1000));\n```"
);

#[cfg(feature = "alloc")]
erased_combinators!(
    LocalErased,
    [],
    "```\nuse deferral::DeferredPromise;\nuse deferral::promise::LocalBoxPromise;\n\nlet mut p: LocalBoxPromise<'_, u32, ()> = DeferredPromise::resolved(0).boxed_local();\nfor _ in 0..1000 {\n    p = p.deferred_then(|v| Ok(v + 1));\n}\nassert_eq!(futures::executor::block_on(p), Ok(1000));\n```"
);
