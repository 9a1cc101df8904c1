//! The ambient API: [`defer`] registers on the innermost scope whose body
//! is being polled on this thread, like the seed's `AsyncLocalStorage`
//! (`std`).
//!
//! A scope publishes its core in a thread-local only for the duration of
//! each poll of its body, and restores the previous value afterwards (also
//! on unwind), so the pointer is never used after the core is gone.

#[cfg(feature = "std")]
pub use enabled::*;

#[cfg(feature = "std")]
mod enabled {
    use core::cell::Cell;
    use core::fmt;
    use core::marker::PhantomData;
    use core::ptr::NonNull;

    use crate::scope::entry::{Head, TakeFn, async_vtable, sync_vtable, take_payload};
    use crate::scope::flavour::{Flavour, Sendable};
    use crate::scope::payload::{Call, InContext, Now, Task};
    use crate::scope::slab::{Core, Pushed};

    /// The core of the scope whose body is being polled on this thread. A
    /// core of any flavour is stored as a `Core<Sendable>`: the layout is
    /// the same, registering through it locks (which a `Local` core does
    /// not need, and does not mind), and whether it grows is read from
    /// the core itself.
    type Current = Option<NonNull<Core<Sendable>>>;

    std::thread_local! {
        static CURRENT: Cell<Current> = const { Cell::new(None) };
    }

    /// Makes `core` the ambient scope while `f` runs.
    #[inline]
    pub(crate) fn enter<K: Flavour, R>(core: &Core<K>, f: impl FnOnce() -> R) -> R {
        struct Restore(Current);
        impl Drop for Restore {
            #[inline]
            fn drop(&mut self) {
                CURRENT.set(self.0);
            }
        }
        // The pointer is only reachable through `CURRENT` until `Restore`
        // puts the previous value back, which happens before `enter`
        // returns or unwinds, while the core is certainly alive (our
        // caller, the scope, borrows it).
        let ours = NonNull::from(core).cast::<Core<Sendable>>();
        let _restore = Restore(CURRENT.replace(Some(ours)));
        f()
    }

    /// The ambient core, if any. Every payload registered through it is
    /// typed for the output `()` and returns `()`: it never reads the
    /// scope's typed exit (it is portable).
    fn current<'a>() -> Option<&'a Core<Sendable>> {
        // SAFETY: set by `enter` only while the scope's core is alive and
        // borrowed by the scope being polled on this thread; the payloads
        // registered through it are `Send + 'static`, which fits any
        // flavour; `Core` is `repr(C)` with the flavour a zero-sized
        // marker, so the cast keeps the layout.
        CURRENT.get().map(|core| unsafe { core.as_ref() })
    }

    /// [`defer`]/[`defer_async`] was called outside any scope's body (or
    /// the scope's fixed slab was full). Carries the cleanup back.
    ///
    /// ```
    /// let refused = deferral::scope::try_defer(|| println!("run by hand")).unwrap_err();
    /// println!("{refused}"); // "`deferral::defer` called outside any scope"
    /// (refused.into_inner())();
    /// ```
    pub struct NoScope<X>(X);

    impl<X> NoScope<X> {
        /// The cleanup that could not be registered.
        ///
        /// ```
        /// if let Err(refused) = deferral::scope::try_defer(|| println!("run by hand")) {
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
    /// panic: the cleanup comes back. A cleanup running during a scope's
    /// cleanup is no longer inside that scope's body: it registers on an
    /// enclosing one.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// async fn open_and_read() -> u32 {
    ///     deferral::scope::try_defer(|| println!("closed")).unwrap();
    ///     7
    /// }
    /// assert_eq!(deferral::scope(async |_| open_and_read().await).await, 7);
    /// assert!(deferral::scope::try_defer(|| ()).is_err()); // no scope here
    /// # });
    /// ```
    pub fn try_defer<F>(f: F) -> Result<AmbientRegistration<F>, NoScope<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        let Some(core) = current() else {
            return Err(NoScope(f));
        };
        // Registered while a context variable is set: it runs in that
        // context (as a handle's registrations do).
        let snapshot = crate::Snapshot::capture();
        if !snapshot.is_empty() {
            type P<F> = InContext<Call<F>>;
            let wrapped = InContext {
                payload: Call(f),
                snapshot,
            };
            // SAFETY: the vtable of `Entry<P<F>>`.
            return match unsafe { core.push(sync_vtable::<(), P<F>>(), wrapped) } {
                Ok(pushed) => Ok(token(core, pushed, take_payload::<(), P<F>>)),
                Err(wrapped) => Err(NoScope(wrapped.payload.0)),
            };
        }
        // SAFETY: the vtable of `Entry<Call<F>>`.
        match unsafe { core.push(sync_vtable::<(), Call<F>>(), Call(f)) } {
            Ok(pushed) => Ok(token(core, pushed, take_payload::<(), Call<F>>)),
            Err(Call(f)) => Err(NoScope(f)),
        }
    }

    /// [`defer_async`], with `Err(NoScope)` outside any scope's body.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     deferral::scope::try_defer_async(async { println!("async cleanup") }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn try_defer_async<Fut>(fut: Fut) -> Result<AmbientRegistration<Fut>, NoScope<Fut>>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(core) = current() else {
            return Err(NoScope(fut));
        };
        type P<Fut> = Task<Now<Fut>, Fut>;
        let snapshot = crate::Snapshot::capture();
        if !snapshot.is_empty() {
            type W<Fut> = InContext<P<Fut>>;
            let wrapped = InContext {
                payload: P::<Fut>::Waiting(Now(fut)),
                snapshot,
            };
            // SAFETY: the vtable of `Entry<W<Fut>>`.
            return match unsafe { core.push(async_vtable::<(), W<Fut>>(), wrapped) } {
                Ok(pushed) => Ok(token(core, pushed, take_payload::<(), W<Fut>>)),
                Err(InContext {
                    payload: Task::Waiting(Now(fut)),
                    ..
                }) => Err(NoScope(fut)),
                Err(_) => unreachable!(),
            };
        }
        // SAFETY: the vtable of `Entry<P<Fut>>`.
        match unsafe { core.push(async_vtable::<(), P<Fut>>(), P::<Fut>::Waiting(Now(fut))) } {
            Ok(pushed) => Ok(token(core, pushed, take_payload::<(), P<Fut>>)),
            Err(Task::Waiting(Now(fut))) => Err(NoScope(fut)),
            Err(_) => unreachable!(),
        }
    }

    fn token<X>(core: &Core<Sendable>, pushed: Pushed, take: TakeFn) -> AmbientRegistration<X> {
        AmbientRegistration {
            core: NonNull::from(core),
            instance: core.instance(),
            epoch: pushed.epoch,
            head: pushed.head,
            take,
            _taken: PhantomData,
        }
    }

    /// Registers `f` on the innermost [`scope`](crate::scope()) whose body is
    /// being polled on this thread — the seed's `defer`, and Go's, for code
    /// that has no [`Defer`](crate::Defer) handle at hand. It runs however
    /// that body ends.
    ///
    /// # Panics
    ///
    /// Outside any scope's body, like `tokio::spawn` outside a runtime (the
    /// seed's `defer` throws there): a cleanup is never dropped silently.
    /// [`try_defer`] hands it back instead.
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

    /// Registers a future on the innermost scope whose body is being polled
    /// on this thread (see [`defer`]); awaited after that body.
    ///
    /// # Panics
    ///
    /// Outside any scope's body; [`try_defer_async`] hands it back instead.
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

    /// The registration, or a panic naming the caller.
    #[track_caller]
    #[inline]
    fn registered<X>(r: Result<AmbientRegistration<X>, NoScope<X>>) -> AmbientRegistration<X> {
        match r {
            Ok(registration) => registration,
            // The cleanup is dropped while unwinding: loud, never silent.
            Err(_) => panic!(
                "`deferral::defer` called outside any scope's body, or its fixed slab is full \
                 (use `deferral::scope::try_defer` to get the cleanup back)"
            ),
        }
    }

    /// The token of an ambient registration: it can cancel it from inside
    /// the same scope's body, on the same thread.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |_| {
    ///     let token = deferral::defer(|| unreachable!("cancelled"));
    ///     let cleanup = token.cancel().ok().unwrap(); // defused, handed back
    ///     drop(cleanup);
    /// })
    /// .await;
    /// # });
    /// ```
    pub struct AmbientRegistration<X> {
        core: NonNull<Core<Sendable>>,
        /// The scope's program-unique id: a scope at the same address later
        /// is another one.
        instance: u64,
        epoch: u64,
        head: NonNull<Head>,
        take: TakeFn,
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
        /// was cleared, or its scope is not the current one. O(1).
        ///
        /// ```
        /// # futures::executor::block_on(async {
        /// let token = std::cell::Cell::new(None);
        /// deferral::scope(async |_| {
        ///     token.set(Some(deferral::defer(|| println!("runs"))));
        /// })
        /// .await;
        /// // Its scope is gone: the token is refused, nothing is touched.
        /// assert!(token.take().unwrap().cancel().is_err());
        /// # });
        /// ```
        pub fn cancel(self) -> Result<X, Self> {
            let Some(core) = current() else {
                return Err(self);
            };
            if !core::ptr::eq(core, self.core.as_ptr())
                || self.instance == 0
                || core.instance_if_any() != self.instance
            {
                return Err(self);
            }
            let mut dst = core::mem::MaybeUninit::<X>::uninit();
            // SAFETY: `core` is the live ambient scope that made this token
            // (same address, same program-unique id), its body is being
            // polled (cleanup has not begun); the epoch check refuses a
            // token whose entry was cleared or moved; the payload's `Taken`
            // is `X`; `self` is consumed on success.
            if unsafe { core.take(self.head, Some(self.epoch), self.take, dst.as_mut_ptr().cast()) } {
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
pub(crate) fn enter<K: crate::scope::flavour::Flavour, R>(
    _core: &crate::scope::slab::Core<K>,
    f: impl FnOnce() -> R,
) -> R {
    f()
}
