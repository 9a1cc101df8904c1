//! `BoxPromise` and `LocalBoxPromise` (`alloc`): promise types you can
//! name — a struct field, a `Vec` of promises made by different closures, a
//! trait method's return type.

use super::deferred::DeferredPromise;
use super::inner::{Erased, LocalErased, PromiseFuture};

/// A boxed, type-erased, `Send` [`DeferredPromise`] resolving to
/// `Result<T, E>`: one nameable type for every promise with that output,
/// whatever made it. `DeferredPromise<T, E>` (the default third parameter)
/// is `BoxPromise<'static, T, E>`. Made by [`DeferredPromise::boxed`] (one
/// allocation). Still lazy: boxing runs nothing.
///
/// Storing a promise in a struct field is one line:
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
///
/// struct Client {
///     handshake: DeferredPromise<u32, PromiseError<std::io::Error>>,
/// }
///
/// let client = Client {
///     handshake: DeferredPromise::new(|res| res.resolve(0x1337)).boxed(),
/// };
/// // Promises from different closures, in one `Vec`:
/// let all: Vec<DeferredPromise<u32, PromiseError<std::io::Error>>> = vec![
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
pub type BoxPromise<'a, T, E> = DeferredPromise<T, E, Erased<'a, T, E>>;

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
pub type LocalBoxPromise<'a, T, E> = DeferredPromise<T, E, LocalErased<'a, T, E>>;

impl<T, E, F: PromiseFuture<T, E>> DeferredPromise<T, E, F> {
    /// Boxes this promise into a [`BoxPromise`] — with `'a = 'static`, the
    /// plain `DeferredPromise<T, E>` — a type you can name (one allocation;
    /// nothing runs; a promise that is boxed already is moved, not boxed
    /// again). An inherent method, so it wins over
    /// `futures::FutureExt::boxed` (which would lose `state()`).
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    /// use deferral::promise::{Progress, PromiseState};
    ///
    /// let p: DeferredPromise<u8, PromiseError<()>> = DeferredPromise::new(|r| r.resolve(1)).boxed();
    /// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
    /// assert_eq!(futures::executor::block_on(p), Ok(1));
    /// ```
    pub fn boxed<'a>(self) -> BoxPromise<'a, T, E>
    where
        F: Send + 'a,
        T: 'a,
        E: 'a,
    {
        let (future, progress) = self.into_parts();
        DeferredPromise::with(future.into_erased(), progress)
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
        F: 'a,
        T: 'a,
        E: 'a,
    {
        let (future, progress) = self.into_parts();
        DeferredPromise::with(future.into_local_erased(), progress)
    }
}

impl<'a, T: 'a, E: 'a> From<BoxPromise<'a, T, E>> for LocalBoxPromise<'a, T, E> {
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
        p.boxed_local()
    }
}
