//! The ambient API: `deferral::defer` registers on the innermost scope whose
//! body is being polled on this thread, like the seed's `AsyncLocalStorage`.
//!
//! A scope publishes its slab in a thread-local only for the duration of each
//! poll of its body, and restores the previous value afterwards (also on
//! unwind), so the pointer is never used after the slab is gone.

#[cfg(feature = "std")]
pub use enabled::*;

#[cfg(feature = "std")]
mod enabled {
    use core::cell::Cell;
    use core::fmt;
    use core::ptr::NonNull;

    use crate::defer::Sendable;
    use crate::slab::{Flavour, SlabCore};
    use crate::thunk::{AsyncThunk, Decided, ON_SUCCESS, ON_UNWIND, OnCond, Thunk, When};

    /// The slab of the scope whose body is being polled on this thread. A
    /// scope of either flavour is stored as a `SlabCore<Sendable>`: the
    /// layout is the same, and registering through it locks (which a
    /// `Local` slab does not need, and does not mind).
    type Current = Option<NonNull<SlabCore<Sendable>>>;

    std::thread_local! {
        static CURRENT: Cell<Current> = const { Cell::new(None) };
    }

    /// Makes `slab` the ambient scope while `f` runs.
    #[inline]
    pub(crate) fn enter<K: Flavour, R>(slab: &SlabCore<K>, f: impl FnOnce() -> R) -> R {
        struct Restore(Current);
        impl Drop for Restore {
            #[inline]
            fn drop(&mut self) {
                CURRENT.set(self.0);
            }
        }
        // The pointer is only reachable through `CURRENT` until `Restore`
        // puts the previous value back, which happens before `enter` returns
        // or unwinds, while the slab is certainly alive (our caller, the
        // scope, borrows it).
        let ours = NonNull::from(slab).cast::<SlabCore<Sendable>>();
        let _restore = Restore(CURRENT.replace(Some(ours)));
        f()
    }

    /// The ambient slab, if any.
    ///
    /// Its output type is unknown here: every payload registered through
    /// it is typed for the output `()` and returns `()`, so it reads only
    /// the untyped part of the scope's exit (see `thunk.rs`).
    fn current<'a>() -> Option<&'a SlabCore<Sendable>> {
        // SAFETY: set by `enter` only while the scope's slab is alive and
        // borrowed by the scope being polled on this thread; the thunks
        // registered through it are `Send + 'static`, which fits either
        // flavour; `SlabCore` is `repr(C)` with the flavour a zero-sized
        // marker, so the cast keeps the layout.
        CURRENT.get().map(|slab| unsafe { slab.as_ref() })
    }

    /// `defer`/`defer_async` was called outside any scope's body.
    ///
    /// Carries the thunk back: nothing is lost.
    pub struct NoScope<X>(X);

    impl<X> NoScope<X> {
        /// The thunk that could not be registered.
        pub fn into_inner(self) -> X {
            self.0
        }
    }

    impl<X> fmt::Debug for NoScope<X> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("NoScope(..)")
        }
    }

    impl<X> fmt::Display for NoScope<X> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`deferral::defer` called outside any scope")
        }
    }

    impl<X> core::error::Error for NoScope<X> {}

    /// Registers `f` on the innermost [`scope`](crate::scope) whose body is
    /// being polled on this thread; `Err(NoScope)` outside any.
    ///
    /// The seed's `defer`, for code that has no [`Defer`](crate::Defer)
    /// handle at hand. A thunk running during a scope's cleanup is no
    /// longer inside that scope's body: it registers on an enclosing one.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// async fn open_and_read() -> u32 {
    ///     deferral::defer(|| println!("closed")).unwrap();
    ///     7
    /// }
    /// assert_eq!(deferral::scope(async |_| open_and_read().await).await, 7);
    /// assert!(deferral::defer(|| ()).is_err()); // no scope here
    /// # });
    /// ```
    pub fn defer<F>(f: F) -> Result<(), NoScope<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        match current() {
            Some(slab) => slab
                .push::<(), _>(Thunk(f))
                .map(drop)
                .map_err(|Thunk(f)| NoScope(f)),
            None => Err(NoScope(f)),
        }
    }

    /// Registers a future on the innermost scope being polled on this
    /// thread (see [`defer`]); `Err(NoScope)` outside any.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::defer_async(async { println!("async cleanup") }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn defer_async<Fut>(fut: Fut) -> Result<(), NoScope<Fut>>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        match current() {
            Some(slab) => slab
                .push::<(), _>(AsyncThunk(fut))
                .map(drop)
                .map_err(|AsyncThunk(fut)| NoScope(fut)),
            None => Err(NoScope(fut)),
        }
    }

    /// Registers `f` on the innermost scope being polled on this thread,
    /// to run only if its body returns and nothing panics
    /// ([`Defer::defer_on_success`](crate::Defer::defer_on_success));
    /// `Err(NoScope)` outside any.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// async fn transfer() {
    ///     deferral::defer_on_success(|| println!("committed")).unwrap();
    /// }
    /// deferral::scope(async |_| transfer().await).await;
    /// # });
    /// ```
    pub fn defer_on_success<F>(f: F) -> Result<(), NoScope<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        push(When::<F, ON_SUCCESS>(f), |When(f)| f)
    }

    /// Registers `f` on the innermost scope being polled on this thread,
    /// to run only while a panic is in flight
    /// ([`Defer::defer_on_unwind`](crate::Defer::defer_on_unwind));
    /// `Err(NoScope)` outside any.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::defer_on_unwind(|| unreachable!("nothing panicked")).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn defer_on_unwind<F>(f: F) -> Result<(), NoScope<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        push(When::<F, ON_UNWIND>(f), |When(f)| f)
    }

    /// [`defer_async`], run only if the body returns and nothing panics.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::defer_async_on_success(async { /* commit */ }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn defer_async_on_success<Fut>(fut: Fut) -> Result<(), NoScope<Fut>>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        push(
            Decided::<_, Fut>::Waiting(OnCond::<Fut, ON_SUCCESS>(fut)),
            |d| match d {
                Decided::Waiting(OnCond(fut)) => fut,
                _ => unreachable!(),
            },
        )
    }

    /// [`defer_async`], run only while a panic is in flight.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::defer_async_on_unwind(async { unreachable!() }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn defer_async_on_unwind<Fut>(fut: Fut) -> Result<(), NoScope<Fut>>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        push(
            Decided::<_, Fut>::Waiting(OnCond::<Fut, ON_UNWIND>(fut)),
            |d| match d {
                Decided::Waiting(OnCond(fut)) => fut,
                _ => unreachable!(),
            },
        )
    }

    /// Registers `payload` (typed for the output `()`, returning `()`) on
    /// the ambient scope; hands back what `back` makes of it otherwise.
    #[inline]
    fn push<P: crate::slab::Payload<()>, X>(
        payload: P,
        back: fn(P) -> X,
    ) -> Result<(), NoScope<X>> {
        match current() {
            Some(slab) => slab
                .push::<(), _>(payload)
                .map(drop)
                .map_err(|p| NoScope(back(p))),
            None => Err(NoScope(back(payload))),
        }
    }
}

/// Without `std` there is no thread-local: nothing to publish.
#[cfg(not(feature = "std"))]
#[inline(always)]
pub(crate) fn enter<K, R>(_slab: &crate::slab::SlabCore<K>, f: impl FnOnce() -> R) -> R {
    f()
}
