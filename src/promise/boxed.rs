//! `BoxPromise` and `LocalBoxPromise` (`alloc`): promise types you can
//! name — a struct field, a `Vec` of promises made by different closures, a
//! trait method's return type.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;

use super::deferred::{DeferredPromise, Source};
use super::state::PromiseState;

/// The object-safe face of a `DeferredPromise`: poll it, ask its state.
trait DynPromise<T, E>: Future<Output = Result<T, E>> {
    fn dyn_state(&self) -> PromiseState;
    fn dyn_is_terminated(&self) -> bool;
}

impl<T, E, S: Source<T, E>> DynPromise<T, E> for DeferredPromise<T, E, S> {
    fn dyn_state(&self) -> PromiseState {
        self.state()
    }

    fn dyn_is_terminated(&self) -> bool {
        FusedFuture::is_terminated(self)
    }
}

/// A boxed, type-erased, `Send` [`DeferredPromise`] resolving to
/// `Result<T, E>`: one nameable type for every promise with that output,
/// whatever made it. Made by [`DeferredPromise::boxed`] (one allocation).
/// Still lazy: boxing runs nothing.
///
/// Storing a promise in a struct field is one line:
///
/// ```
/// use deferral::promise::BoxPromise;
/// use deferral::{DeferredPromise, PromiseError};
///
/// struct Client {
///     handshake: BoxPromise<'static, u32, PromiseError<std::io::Error>>,
/// }
///
/// let client = Client {
///     handshake: DeferredPromise::new(|res| res.resolve(0x1337)).boxed(),
/// };
/// // Promises from different closures, in one `Vec`:
/// let all: Vec<BoxPromise<'static, u32, PromiseError<std::io::Error>>> = vec![
///     client.handshake,
///     DeferredPromise::new(|res| res.resolve(2)).boxed(),
///     DeferredPromise::detached(|res| {
///         std::thread::spawn(move || res.resolve(3));
///     })
///     .boxed(),
/// ];
/// let out: Vec<_> = all.into_iter().map(futures::executor::block_on).collect();
/// assert_eq!(out.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [0x1337, 2, 3]);
/// ```
#[must_use = "a deferred promise does nothing until it is polled (awaited)"]
pub struct BoxPromise<'a, T, E> {
    inner: Pin<Box<dyn DynPromise<T, E> + Send + 'a>>,
}

/// A boxed, type-erased [`DeferredPromise`] that need not be `Send` (it may
/// hold an `Rc`, or a resolver of `!Send` values): the local form of
/// [`BoxPromise`], made by [`DeferredPromise::boxed_local`].
///
/// ```
/// use deferral::promise::LocalBoxPromise;
/// use deferral::DeferredPromise;
/// use std::rc::Rc;
///
/// let shared = Rc::new(5);
/// let s = shared.clone();
/// let p: LocalBoxPromise<'_, u32, ()> =
///     DeferredPromise::lazy(move || async move { Ok(*s + 1) }).boxed_local();
/// assert_eq!(futures::executor::block_on(p), Ok(6));
/// ```
#[must_use = "a deferred promise does nothing until it is polled (awaited)"]
pub struct LocalBoxPromise<'a, T, E> {
    inner: Pin<Box<dyn DynPromise<T, E> + 'a>>,
}

impl<T, E, S: Source<T, E>> DeferredPromise<T, E, S> {
    /// Boxes this promise into a [`BoxPromise`], a type you can name (one
    /// allocation; nothing runs). An inherent method, so it wins over
    /// `futures::FutureExt::boxed` (which would lose `state()`).
    ///
    /// ```
    /// use deferral::promise::BoxPromise;
    /// use deferral::{DeferredPromise, Progress, PromiseError, PromiseState};
    ///
    /// let p: BoxPromise<'static, u8, PromiseError<()>> =
    ///     DeferredPromise::new(|r| r.resolve(1)).boxed();
    /// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    pub fn boxed<'a>(self) -> BoxPromise<'a, T, E>
    where
        Self: Send + 'a,
    {
        BoxPromise {
            inner: Box::pin(self),
        }
    }

    /// Boxes this promise into a [`LocalBoxPromise`] (no `Send` needed).
    ///
    /// ```
    /// use deferral::DeferredPromise;
    ///
    /// let p = DeferredPromise::<u8, ()>::resolved(1).boxed_local();
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    pub fn boxed_local<'a>(self) -> LocalBoxPromise<'a, T, E>
    where
        Self: 'a,
    {
        LocalBoxPromise {
            inner: Box::pin(self),
        }
    }
}

macro_rules! boxed_promise_impls {
    ($name:ident) => {
        impl<T, E> $name<'_, T, E> {
            /// The boxed promise's [`DeferredPromise::state`].
            ///
            /// ```
            /// use deferral::{DeferredPromise, PromiseState};
            ///
            /// let p = DeferredPromise::<u8, ()>::rejected(()).boxed();
            /// assert_eq!(p.state(), PromiseState::Rejected);
            /// ```
            pub fn state(&self) -> PromiseState {
                self.inner.dyn_state()
            }
        }

        impl<T, E> Future for $name<'_, T, E> {
            type Output = Result<T, E>;

            #[inline]
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
                self.inner.as_mut().poll(cx)
            }
        }

        impl<T, E> FusedFuture for $name<'_, T, E> {
            fn is_terminated(&self) -> bool {
                self.inner.dyn_is_terminated()
            }
        }

        impl<T, E> fmt::Debug for $name<'_, T, E> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("state", &self.state())
                    .finish_non_exhaustive()
            }
        }
    };
}

boxed_promise_impls!(BoxPromise);
boxed_promise_impls!(LocalBoxPromise);

impl<'a, T, E> From<BoxPromise<'a, T, E>> for LocalBoxPromise<'a, T, E> {
    /// Forgets that the promise is `Send`.
    ///
    /// ```
    /// use deferral::promise::LocalBoxPromise;
    /// use deferral::DeferredPromise;
    ///
    /// let p: LocalBoxPromise<'_, u8, ()> = DeferredPromise::resolved(1).boxed().into();
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    fn from(p: BoxPromise<'a, T, E>) -> Self {
        LocalBoxPromise { inner: p.inner }
    }
}
