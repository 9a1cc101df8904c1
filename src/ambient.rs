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

    use core::marker::PhantomData;

    use crate::defer::Sendable;
    use crate::slab::{Flavour, Header, Payload, SlabCore, TakeFn};
    use crate::thunk::{AsyncThunk, Decided, ON_SUCCESS, ON_UNWIND, OnCond, Thunk, Tokened, When};

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
    ///
    /// ```
    /// let refused = deferral::try_defer(|| println!("run by hand")).unwrap_err();
    /// println!("{refused}"); // "`deferral::defer` called outside any scope"
    /// ```
    pub struct NoScope<X>(X);

    impl<X> NoScope<X> {
        /// The thunk that could not be registered.
        ///
        /// ```
        /// if let Err(refused) = deferral::try_defer(|| println!("run by hand")) {
        ///     (refused.into_inner())();
        /// }
        /// ```
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

    /// [`defer`], with `Err(NoScope)` outside any scope's body instead of a
    /// panic: the thunk comes back.
    ///
    /// A thunk running during a scope's cleanup is no
    /// longer inside that scope's body: it registers on an enclosing one.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// async fn open_and_read() -> u32 {
    ///     deferral::try_defer(|| println!("closed")).unwrap();
    ///     7
    /// }
    /// assert_eq!(deferral::scope(async |_| open_and_read().await).await, 7);
    /// assert!(deferral::try_defer(|| ()).is_err()); // no scope here
    /// # });
    /// ```
    pub fn try_defer<F>(f: F) -> Result<AmbientRegistration<F>, NoScope<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        push(Thunk(f), |Thunk(f)| f)
    }

    /// Registers a future on the innermost scope being polled on this
    /// thread (see [`defer`]); `Err(NoScope)` outside any.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::try_defer_async(async { println!("async cleanup") }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn try_defer_async<Fut>(fut: Fut) -> Result<AmbientRegistration<Fut>, NoScope<Fut>>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        push(AsyncThunk(fut), |AsyncThunk(fut)| fut)
    }

    /// Registers `f` on the innermost scope being polled on this thread,
    /// to run only if its body returns and nothing panics
    /// ([`Defer::defer_on_success`](crate::Defer::defer_on_success));
    /// `Err(NoScope)` outside any.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// async fn transfer() {
    ///     deferral::try_defer_on_success(|| println!("committed")).unwrap();
    /// }
    /// deferral::scope(async |_| transfer().await).await;
    /// # });
    /// ```
    pub fn try_defer_on_success<F>(f: F) -> Result<AmbientRegistration<F>, NoScope<F>>
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
    ///     deferral::try_defer_on_unwind(|| unreachable!("nothing panicked")).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn try_defer_on_unwind<F>(f: F) -> Result<AmbientRegistration<F>, NoScope<F>>
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
    ///     deferral::try_defer_async_on_success(async { /* commit */ }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn try_defer_async_on_success<Fut>(
        fut: Fut,
    ) -> Result<AmbientRegistration<Fut>, NoScope<Fut>>
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
    ///     deferral::try_defer_async_on_unwind(async { unreachable!() }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn try_defer_async_on_unwind<Fut>(
        fut: Fut,
    ) -> Result<AmbientRegistration<Fut>, NoScope<Fut>>
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

    /// Registers `f` on the innermost [`scope`](crate::scope) whose body is
    /// being polled on this thread — the seed's `defer`, and Go's, for
    /// code that has no [`Defer`](crate::Defer) handle at hand.
    ///
    /// # Panics
    ///
    /// Outside any scope's body, like `tokio::spawn` outside a runtime (the
    /// seed's `defer` throws there): a cleanup is never dropped silently.
    /// [`try_defer`] hands the thunk back instead.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// async fn open_and_read() -> u32 {
    ///     deferral::defer(|| println!("closed"));
    ///     7
    /// }
    /// assert_eq!(deferral::scope(async |_| open_and_read().await).await, 7);
    /// # });
    /// ```
    #[track_caller]
    pub fn defer<F>(f: F) -> AmbientRegistration<F>
    where
        F: FnOnce() + Send + 'static,
    {
        registered(try_defer(f))
    }

    /// Registers a future on the innermost scope being polled on this
    /// thread ([`defer`]). Panics outside any; [`try_defer_async`] does not.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::defer_async(async { println!("async cleanup") });
    /// })
    /// .await;
    /// # });
    /// ```
    #[track_caller]
    pub fn defer_async<Fut>(fut: Fut) -> AmbientRegistration<Fut>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        registered(try_defer_async(fut))
    }

    /// [`defer`], run only if the body returns and nothing panics. Panics
    /// outside any scope; [`try_defer_on_success`] does not.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// async fn transfer() {
    ///     deferral::defer_on_success(|| println!("committed"));
    /// }
    /// deferral::scope(async |_| transfer().await).await;
    /// # });
    /// ```
    #[track_caller]
    pub fn defer_on_success<F>(f: F) -> AmbientRegistration<F>
    where
        F: FnOnce() + Send + 'static,
    {
        registered(try_defer_on_success(f))
    }

    /// [`defer`], run only while a panic is in flight. Panics outside any
    /// scope; [`try_defer_on_unwind`] does not.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::defer_on_unwind(|| unreachable!("nothing panicked"));
    /// })
    /// .await;
    /// # });
    /// ```
    #[track_caller]
    pub fn defer_on_unwind<F>(f: F) -> AmbientRegistration<F>
    where
        F: FnOnce() + Send + 'static,
    {
        registered(try_defer_on_unwind(f))
    }

    /// [`defer_async`], run only if the body returns and nothing panics.
    /// Panics outside any scope; [`try_defer_async_on_success`] does not.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::defer_async_on_success(async { /* commit */ });
    /// })
    /// .await;
    /// # });
    /// ```
    #[track_caller]
    pub fn defer_async_on_success<Fut>(fut: Fut) -> AmbientRegistration<Fut>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        registered(try_defer_async_on_success(fut))
    }

    /// [`defer_async`], run only while a panic is in flight. Panics
    /// outside any scope; [`try_defer_async_on_unwind`] does not.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::defer_async_on_unwind(async { unreachable!() });
    /// })
    /// .await;
    /// # });
    /// ```
    #[track_caller]
    pub fn defer_async_on_unwind<Fut>(fut: Fut) -> AmbientRegistration<Fut>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        registered(try_defer_async_on_unwind(fut))
    }

    /// The registration, or a panic naming the caller: outside a scope.
    #[track_caller]
    #[inline]
    fn registered<X>(r: Result<AmbientRegistration<X>, NoScope<X>>) -> AmbientRegistration<X> {
        match r {
            Ok(registration) => registration,
            // The thunk is dropped while unwinding: loud, never silent.
            Err(_) => panic!(
                "`deferral::defer` called outside any scope's body (use `deferral::try_defer` to get the thunk back)"
            ),
        }
    }

    /// Registers `payload` (typed for the output `()`, returning `()`) on
    /// the ambient scope, with a token; hands back what `back` makes of it
    /// otherwise.
    #[inline]
    fn push<P, X>(payload: P, back: fn(P) -> X) -> Result<AmbientRegistration<X>, NoScope<X>>
    where
        P: Payload<(), Taken = X>,
    {
        let Some(slab) = current() else {
            return Err(NoScope(back(payload)));
        };
        let id = next_id();
        match slab.push::<(), _>(Tokened { id, payload }) {
            Ok((entry, _, take)) => Ok(AmbientRegistration {
                slab: NonNull::from(slab),
                entry: entry.header(),
                take,
                id,
                _taken: PhantomData,
            }),
            Err(Tokened { payload, .. }) => Err(NoScope(back(payload))),
        }
    }

    /// A program-wide unique id for an ambient registration; 0 once the
    /// 2^64 ids ran out (such a registration cannot be cancelled).
    fn next_id() -> u64 {
        #[cfg(target_has_atomic = "64")]
        {
            use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
            static NEXT: AtomicU64 = AtomicU64::new(1);
            // ORDERING: only uniqueness matters, which every RMW on one
            // atomic gives.
            NEXT.fetch_update(Relaxed, Relaxed, |id| id.checked_add(1))
                .unwrap_or(0)
        }
        #[cfg(not(target_has_atomic = "64"))]
        {
            static NEXT: std::sync::Mutex<u64> = std::sync::Mutex::new(1);
            let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
            let id = *next;
            *next = id.checked_add(1).unwrap_or(0);
            if id == 0 { 0 } else { id }
        }
    }

    /// The token of an ambient registration ([`defer`] and friends): it can
    /// cancel it from inside the same scope's body, on the same thread.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     let token = deferral::try_defer(|| unreachable!("cancelled")).unwrap();
    ///     let thunk = token.cancel().ok().unwrap(); // defused, handed back
    ///     drop(thunk);
    /// })
    /// .await;
    /// # });
    /// ```
    pub struct AmbientRegistration<X> {
        slab: NonNull<SlabCore<Sendable>>,
        entry: NonNull<Header>,
        take: TakeFn,
        id: u64,
        /// `!Send`: it is used on the thread whose ambient scope it names.
        _taken: PhantomData<(X, *const ())>,
    }

    impl<X> fmt::Debug for AmbientRegistration<X> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("AmbientRegistration")
                .finish_non_exhaustive()
        }
    }

    impl<X> AmbientRegistration<X> {
        /// Defuses the registration and hands back what was deferred, unrun
        /// — if its scope's body is being polled on this thread right now
        /// (the innermost scope: where it was registered) and it is still
        /// pending. Otherwise the token comes back: the registration ran,
        /// was cleared, or its scope is not the current one.
        ///
        /// ```
        /// # futures::executor::block_on(async {
        /// let token = std::cell::Cell::new(None);
        /// deferral::scope(async |_| {
        ///     token.set(Some(deferral::try_defer(|| println!("runs")).unwrap()));
        /// })
        /// .await;
        /// // Its scope is gone: the token is refused, nothing is touched.
        /// assert!(token.take().unwrap().cancel().is_err());
        /// # });
        /// ```
        pub fn cancel(self) -> Result<X, Self> {
            let Some(slab) = current() else {
                return Err(self);
            };
            if !core::ptr::eq(slab, self.slab.as_ptr()) || self.id == 0 {
                return Err(self);
            }
            let mut dst = core::mem::MaybeUninit::<X>::uninit();
            // SAFETY: `slab` is the live ambient scope (its body is being
            // polled); `take_tokened` finds the entry in its chain by the id,
            // unique in the program, so it is this token's registration,
            // whose payload's `Taken` is `X`.
            if unsafe { slab.take_tokened(self.entry, self.id, self.take, dst.as_mut_ptr().cast()) }
            {
                // SAFETY: written by the take.
                Ok(unsafe { dst.assume_init() })
            } else {
                Err(self)
            }
        }
    }
}

/// Without `std` there is no thread-local: nothing to publish.
#[cfg(not(feature = "std"))]
#[inline(always)]
pub(crate) fn enter<K, R>(_slab: &crate::slab::SlabCore<K>, f: impl FnOnce() -> R) -> R {
    f()
}
