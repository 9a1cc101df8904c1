//! What an executor may return: nothing, the `Result` of a settlement, or
//! (where the resolver may outlive the executor) an [`Adopt`] future that
//! the promise then drives — so that `res.adopt(fetch())` written as an
//! executor's last expression settles the promise, or does not compile.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::error::SettleError;
use super::resolver::Adopt;

pub(crate) mod sealed {
    pub trait Sealed {}

    /// A driven future that can say it already finished: an [`Adopt`]
    /// whose settlement's wake panicked stays in its slot, done, and must
    /// be dropped, not polled again (see `drive_adopted`).
    ///
    /// [`Adopt`]: super::Adopt
    pub trait Finished {
        fn finished(&self) -> bool;
    }
}

/// What the executor of [`DeferredPromise::detached`] or
/// [`PromiseCell::lazy`] may return: `()`, the `Result` of
/// [`resolve`](crate::Resolver::resolve) / `reject` / `settle` (a refusal is
/// ignored, as a dropped value would be), or [`Adopt`]
/// (`resolver.adopt(future)`), which the promise then drives to completion
/// itself — the JS executor `res => res(fetch(..))`.
///
/// Anything else is a compile error, so an `Adopt` (or a join handle, or
/// any value that was meant to matter) is never dropped silently.
///
/// [`DeferredPromise::detached`]: crate::DeferredPromise::detached
/// [`PromiseCell::lazy`]: crate::PromiseCell::lazy
///
/// ```
/// use deferral::PromiseCell;
///
/// static CELL: PromiseCell<u32, ()> = PromiseCell::new();
/// let fetch = async { Ok(200) };
/// let status = CELL.lazy(|res| res.adopt(fetch)).unwrap();
/// assert_eq!(futures::executor::block_on(status), Ok(200));
/// ```
///
/// ```compile_fail
/// use deferral::PromiseCell;
///
/// static CELL: PromiseCell<u32, ()> = PromiseCell::new();
/// // A value the executor did not mean to drop: end the body with `;`.
/// let p = CELL.lazy(|res| 42).unwrap();
/// ```
#[diagnostic::on_unimplemented(
    message = "an executor cannot return `{Self}`",
    label = "this executor returns `{Self}`",
    note = "an executor returns `()`, the `Result` of `resolve`/`reject`/`settle`, or `resolver.adopt(future)` (which the promise drives)",
    note = "to discard the value, end the executor's body with `;`"
)]
pub trait ExecutorReturn<'a, T, E>: sealed::Sealed {
    /// What the promise drives after the executor returned.
    #[doc(hidden)]
    type Drive: Future + sealed::Finished;

    /// The future to drive, if any.
    #[doc(hidden)]
    fn into_drive(self) -> Option<Self::Drive>;
}

/// What the executor of [`DeferredPromise::new`] may return: `()` or the
/// `Result` of [`resolve`](crate::Resolver::resolve) / `reject` / `settle`.
///
/// Its resolver lives only as long as the executor runs, so it cannot
/// [`adopt`](crate::Resolver::adopt) a future: that is a compile error
/// whose message points at [`DeferredPromise::lazy`] (the executor
/// `res => res(future)`) and at [`DeferredPromise::detached`] /
/// [`PromiseCell`](crate::PromiseCell) (a resolver that may leave).
///
/// [`DeferredPromise::new`]: crate::DeferredPromise::new
/// [`DeferredPromise::lazy`]: crate::DeferredPromise::lazy
/// [`DeferredPromise::detached`]: crate::DeferredPromise::detached
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
///
/// let unit = DeferredPromise::<u8, PromiseError<()>>::new(|res| {
///     res.resolve(1).unwrap();
/// });
/// let result = DeferredPromise::<u8, PromiseError<()>>::new(|res| res.resolve(2));
/// assert_eq!(futures::executor::block_on(unit), Ok(1));
/// assert_eq!(futures::executor::block_on(result), Ok(2));
/// ```
///
/// ```compile_fail
/// use deferral::DeferredPromise;
///
/// // `new`'s resolver cannot outlive its executor: use `lazy(|| fetch)`.
/// let p = DeferredPromise::<u8, PromiseError<()>>::new(|res| res.adopt(async { Ok(1) }));
/// ```
#[diagnostic::on_unimplemented(
    message = "the executor of `DeferredPromise::new` cannot return `{Self}`",
    label = "this executor returns `{Self}`",
    note = "`new`'s executor returns `()` or the `Result` of `resolve`/`reject`/`settle`; to discard a value, end its body with `;`",
    note = "to settle with a future's output (`res(fetch(..))` in JS), use `DeferredPromise::lazy(|| future)`: `new`'s resolver cannot outlive the executor, so it cannot `adopt`",
    note = "to settle later or from elsewhere (a spawned task, a thread, an interrupt), use `DeferredPromise::detached` (with `alloc`) or a `PromiseCell`, whose resolvers may leave the executor and adopt futures"
)]
pub trait LocalExecutorReturn: sealed::Sealed {}

#[doc(hidden)]
/// Names the never type `!` on stable Rust (`fn() -> !` is a stable type,
/// and its output is `!`): an executor that only panics (`|_| todo!()`)
/// returns `!` in edition 2024.
pub trait FnOutput {
    /// The function's return type.
    type Output;
}

impl<O> FnOutput for fn() -> O {
    type Output = O;
}

/// The never type, `!`.
type Never = <fn() -> ! as FnOutput>::Output;

impl sealed::Sealed for Never {}
impl LocalExecutorReturn for Never {}

impl<T, E> ExecutorReturn<'_, T, E> for Never {
    type Drive = Nothing;

    #[inline(always)]
    fn into_drive(self) -> Option<Nothing> {
        self
    }
}

impl sealed::Sealed for () {}
impl<V> sealed::Sealed for Result<(), SettleError<V>> {}
impl<F, T, E> sealed::Sealed for Adopt<'_, F, T, E> {}

impl LocalExecutorReturn for () {}
impl<V> LocalExecutorReturn for Result<(), SettleError<V>> {}

impl<T, E> ExecutorReturn<'_, T, E> for () {
    type Drive = Nothing;

    #[inline(always)]
    fn into_drive(self) -> Option<Nothing> {
        None
    }
}

impl<T, E, V> ExecutorReturn<'_, T, E> for Result<(), SettleError<V>> {
    type Drive = Nothing;

    #[inline(always)]
    fn into_drive(self) -> Option<Nothing> {
        None
    }
}

impl<'a, F, T, E> ExecutorReturn<'a, T, E> for Adopt<'a, F, T, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Drive = Self;

    fn into_drive(self) -> Option<Self> {
        Some(self)
    }
}

/// No future to drive (uninhabited: an `Option<Nothing>` is always `None`
/// and takes no space).
#[doc(hidden)]
#[derive(Debug)]
pub enum Nothing {}

impl sealed::Finished for Nothing {
    fn finished(&self) -> bool {
        match *self {}
    }
}

impl<F, T, E> sealed::Finished for Adopt<'_, F, T, E> {
    #[inline]
    fn finished(&self) -> bool {
        self.is_finished()
    }
}

impl Future for Nothing {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        match *self {}
    }
}

/// Polls the future an escaping-resolver executor handed over (`adopt`), if
/// any, inside the promise's creation context, and drops it in place there
/// once it is done. Only user code runs in that context: the executor (by
/// its caller) and this future, not the slot's waker registration, which
/// belongs to the poller.
///
/// An `Adopt` that settled but whose settlement's wake panicked unwound out
/// of the poll that finished it: it is still here, finished. It is dropped
/// at the next poll instead of being polled again (which would panic and
/// keep the settlement in the slot out of reach).
#[inline(always)]
pub(crate) fn drive_adopted<D: Future + sealed::Finished>(
    context: &crate::context::Captured,
    mut drive: Pin<&mut Option<D>>,
    cx: &mut Context<'_>,
) {
    if drive.is_some() {
        super::inner::in_context(context, || {
            if let Some(d) = drive.as_mut().as_pin_mut() {
                if d.finished() || d.poll(cx).is_ready() {
                    // Settled (or refused): the adopted future is done.
                    drive.set(None);
                }
            }
        });
    }
}
