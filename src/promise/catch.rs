//! `catch_panics` (`std`): a panicking executor, handler or followed future
//! becomes a rejection, as a throwing JS executor does.

use std::any::Any;
use std::boxed::Box;
use std::string::String;

use core::fmt;
use core::future::Future;
use core::panic::AssertUnwindSafe;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;

/// The error of a [`catch_panics`](crate::PromiseExt::catch_panics)
/// promise: the promise's own error, or the panic that unwound out of its
/// poll (the JS executor's `throw`, turned into a rejection).
///
/// ```
/// use deferral::promise::Caught;
/// use deferral::{DeferredPromise, PromiseError, PromiseExt};
///
/// let p = DeferredPromise::<u8, ()>::new(|_res| panic!("sensor on fire")).catch_panics();
/// match futures::executor::block_on(p) {
///     Err(Caught::Panicked(panic)) => assert_eq!(panic.message(), Some("sensor on fire")),
///     other => panic!("{other:?}"),
/// }
/// let p = DeferredPromise::<u8, &str>::new(|res| res.reject("no")).catch_panics();
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
/// use deferral::{DeferredPromise, PromiseExt};
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
    /// # use deferral::{DeferredPromise, PromiseExt};
    /// let p = DeferredPromise::<u8, ()>::new(|_| panic!("boom")).catch_panics();
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
    /// # use deferral::{DeferredPromise, PromiseExt};
    /// let p = DeferredPromise::<u8, ()>::new(|_| std::panic::panic_any(7u32)).catch_panics();
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

/// A future that turns a panic unwinding out of its inner future's `poll`
/// into `Err(Caught::Panicked(..))`; made by
/// [`PromiseExt::catch_panics`](crate::PromiseExt::catch_panics). After a
/// caught panic the inner future is never polled again (only dropped).
///
/// ```
/// use deferral::{DeferredPromise, PromiseExt};
///
/// let p = DeferredPromise::<u8, ()>::resolved(1).catch_panics();
/// assert_eq!(futures::executor::block_on(p).unwrap(), 1);
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct CatchPanics<F> {
    /// Structurally pinned (see `project`).
    inner: F,
    done: bool,
}

impl<F> CatchPanics<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner, done: false }
    }

    /// The pinned inner future and the flag.
    fn project(self: Pin<&mut Self>) -> (Pin<&mut F>, &mut bool) {
        // SAFETY: `inner` is structurally pinned: it is never moved out of
        // a pinned `CatchPanics` (no method hands it out by value, there is
        // no `Drop` impl, the struct is not `repr(packed)`), and the
        // auto-`Unpin` impl requires `F: Unpin`. `done` is not pinned.
        unsafe {
            let this = self.get_unchecked_mut();
            (Pin::new_unchecked(&mut this.inner), &mut this.done)
        }
    }
}

impl<T, E, F: Future<Output = Result<T, E>>> Future for CatchPanics<F> {
    type Output = Result<T, Caught<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (inner, done) = self.project();
        assert!(!*done, "`CatchPanics` polled after completion");
        // `AssertUnwindSafe`: after a caught panic the inner future is never
        // observed again, only dropped.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx)));
        let out = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => out.map_err(Caught::Rejected),
            Err(payload) => Err(Caught::Panicked(Panic(payload))),
        };
        *done = true;
        Poll::Ready(out)
    }
}

impl<T, E, F: Future<Output = Result<T, E>>> FusedFuture for CatchPanics<F> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<F> fmt::Debug for CatchPanics<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatchPanics")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
