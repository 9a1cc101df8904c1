//! `catch_panics` (`std`): a panicking executor, handler or followed future
//! becomes a rejection, as a throwing JS executor does.

use std::any::Any;
use std::boxed::Box;
use std::string::String;

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::deferred::DeferredPromise;
use super::inner::{PromiseFuture, sealed::Sealed};

/// The error of a [`catch_panics`](crate::DeferredPromise::catch_panics)
/// promise: the promise's own error, or the panic that unwound out of its
/// poll (the JS executor's `throw`, turned into a rejection).
///
/// ```
/// use deferral::promise::Caught;
/// use deferral::{DeferredPromise, PromiseError};
///
/// let p = DeferredPromise::<u8, PromiseError<()>>::new(|_res| panic!("sensor on fire")).catch_panics();
/// match futures::executor::block_on(p) {
///     Err(Caught::Panicked(panic)) => assert_eq!(panic.message(), Some("sensor on fire")),
///     other => panic!("{other:?}"),
/// }
/// let p = DeferredPromise::<u8, PromiseError<&str>>::new(|res| res.reject("no")).catch_panics();
/// assert!(matches!(
///     futures::executor::block_on(p),
///     Err(Caught::Rejected(PromiseError::Rejected("no")))
/// ));
/// ```
#[derive(Debug)]
pub enum Caught<E> {
    /// The promise rejected with its own error.
    Rejected(E),
    /// Polling the promise panicked.
    Panicked(Panic),
}

impl<E: fmt::Display> fmt::Display for Caught<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caught::Rejected(e) => e.fmt(f),
            Caught::Panicked(p) => p.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Caught<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Caught::Rejected(e) => Some(e),
            Caught::Panicked(_) => None,
        }
    }
}

/// A caught panic: its payload, with the message when it has one.
///
/// ```
/// use deferral::promise::Caught;
/// use deferral::DeferredPromise;
///
/// let p = DeferredPromise::<u8, ()>::lazy(|| async { panic!("{}", 42) }).catch_panics();
/// let Err(Caught::Panicked(panic)) = futures::executor::block_on(p) else { unreachable!() };
/// assert_eq!(panic.to_string(), "panicked: 42");
/// ```
pub struct Panic(Box<dyn Any + Send + 'static>);

impl Panic {
    /// The panic message, if the payload is a string (`panic!` with a
    /// message).
    ///
    /// ```
    /// # use deferral::promise::Caught;
    /// # use deferral::{DeferredPromise, PromiseError};
    /// let p = DeferredPromise::<u8, PromiseError<()>>::new(|_| panic!("boom")).catch_panics();
    /// let Err(Caught::Panicked(panic)) = futures::executor::block_on(p) else { unreachable!() };
    /// assert_eq!(panic.message(), Some("boom"));
    /// ```
    pub fn message(&self) -> Option<&str> {
        self.0
            .downcast_ref::<&'static str>()
            .copied()
            .or_else(|| self.0.downcast_ref::<String>().map(String::as_str))
    }

    /// The payload, e.g. to [`std::panic::resume_unwind`] it.
    ///
    /// ```
    /// # use deferral::promise::Caught;
    /// # use deferral::{DeferredPromise, PromiseError};
    /// let p = DeferredPromise::<u8, PromiseError<()>>::new(|_| std::panic::panic_any(7u32)).catch_panics();
    /// let Err(Caught::Panicked(panic)) = futures::executor::block_on(p) else { unreachable!() };
    /// assert_eq!(panic.into_payload().downcast_ref::<u32>(), Some(&7));
    /// ```
    pub fn into_payload(self) -> Box<dyn Any + Send + 'static> {
        self.0
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Panic").field(&self.message()).finish()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(m) => write!(f, "panicked: {m}"),
            None => f.write_str("panicked"),
        }
    }
}

impl<T, E, F: PromiseFuture<T, E>> DeferredPromise<T, E, F> {
    /// With `std`: a panic unwinding out of this promise's poll — its
    /// executor, a handler, the future it follows — becomes
    /// `Err(Caught::Panicked(..))` instead of unwinding through the
    /// caller's `poll`, as a throwing JS executor rejects its promise. And
    /// as in JS, a panic *after* the promise was settled (`res.resolve(v);
    /// panic!()`) is ignored: the first settlement stands. Opt in per
    /// promise; without it panics propagate (see "Panics" on
    /// [`DeferredPromise`]).
    ///
    /// It catches where it stands: put it right after the promise whose
    /// panic should become a rejection. A panic is not a settlement, so it
    /// unwinds through the links built on that promise — a
    /// `deferred_catch` or `deferred_finally` after a panicking executor
    /// does not run — up to the first `catch_panics`; from there on the
    /// chain sees `Err(Caught::Panicked(..))` like any rejection.
    ///
    /// ```
    /// use deferral::promise::Caught;
    /// use deferral::{DeferredPromise, PromiseError, PromiseExt};
    ///
    /// let p = DeferredPromise::<u8, ()>::resolved(1)
    ///     .deferred_then(|_| -> Result<u8, ()> { panic!("handler bug") })
    ///     .catch_panics();
    /// let out = futures::executor::block_on(p);
    /// assert!(matches!(out, Err(Caught::Panicked(ref p)) if p.message() == Some("handler bug")));
    ///
    /// // Resolved, then panicked: the value stands (JS ignores a late throw).
    /// let p = DeferredPromise::<u8, PromiseError<()>>::new(|res| {
    ///     res.resolve(123).unwrap();
    ///     panic!("after resolving");
    /// })
    /// .catch_panics();
    /// assert_eq!(futures::executor::block_on(p).unwrap(), 123);
    ///
    /// // JS `new Promise(() => { throw e }).finally(f)`: catch first.
    /// use std::cell::Cell;
    /// let ran = Cell::new(false);
    /// let p = DeferredPromise::<u8, PromiseError<()>>::new(|_| panic!("thrown"))
    ///     .catch_panics()
    ///     .deferred_finally(|| ran.set(true));
    /// assert!(futures::executor::block_on(p).is_err());
    /// assert!(ran.get());
    /// ```
    pub fn catch_panics(self) -> DeferredPromise<T, Caught<E>, CatchPanics<F>> {
        let (inner, progress) = self.into_parts();
        DeferredPromise::with(CatchPanics { inner }, progress)
    }
}

/// The future of a [`catch_panics`](DeferredPromise::catch_panics) promise:
/// the promise's own future, each poll under `catch_unwind`. After a caught
/// panic the inner future is never polled again (only dropped).
///
/// ```
/// use deferral::DeferredPromise;
///
/// let p = DeferredPromise::<u8, ()>::resolved(1).catch_panics();
/// assert_eq!(futures::executor::block_on(p).unwrap(), 1);
/// ```
pub struct CatchPanics<F> {
    /// Structurally pinned (see `poll`).
    inner: F,
}

impl<F: Unpin> Unpin for CatchPanics<F> {}
impl<F> Sealed for CatchPanics<F> {}

impl<T, E, F> Future for CatchPanics<F>
where
    F: PromiseFuture<T, E> + Future<Output = Result<T, E>>,
{
    type Output = Result<T, Caught<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned: never moved out of a
        // pinned `CatchPanics` (no by-value accessor, no `Drop`, not
        // `repr(packed)`), and the type is `Unpin` only if `F` is.
        let inner = unsafe { self.map_unchecked_mut(|this| &mut this.inner) };
        // The promise's wrapper never polls again after `Ready`, so the
        // inner future, which may have panicked, is only dropped after.
        match inner.poll_catching(cx) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(out.map_err(Caught::Rejected)),
            Err(payload) => Poll::Ready(Err(Caught::Panicked(Panic(payload)))),
        }
    }
}

impl<T, E, F> PromiseFuture<T, Caught<E>> for CatchPanics<F>
where
    F: PromiseFuture<T, E> + Future<Output = Result<T, E>>,
{
    const PEEKS: bool = F::PEEKS;

    unsafe fn peek(this: *const Self, unstarted: bool) -> super::state::PromiseState {
        // SAFETY: as the caller guarantees; a newtype.
        unsafe { F::peek(&raw const (*this).inner, unstarted) }
    }
}
