//! The handle a scope's body registers cleanup with ([`Defer`]), what a
//! registration returns (a [`Registration`] token, a [`Guard`], or [`Full`]),
//! and the two flavours of scope: [`Sendable`] (`scope`) and [`Local`]
//! (`scope_local`).

use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use crate::exit::{CleanupOutput, Exit, Fallible};
use crate::slab::{Clears, Entry, Flavour, Payload, SlabCore, TakeFn, sealed};
use crate::thunk::{
    AsyncThunk, Decided, GuardAsync, GuardThunk, ON_SUCCESS, ON_UNWIND, OnCond, OnError, OnErrorFn,
    OnExitFn, Thunk, ThunkWith, When,
};

/// The flavour of [`scope`](crate::scope): cleanup is `Send + 'static`, so
/// the scope can be spawned on a multi-threaded runtime even while its body
/// holds the handle across `.await`.
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// fn spawnable<F: Send>(_: F) {}
/// spawnable(deferral::scope(async |d: &deferral::Defer<u8>| {
///     d.defer(|| println!("closed"));
///     1
/// }));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Sendable;

/// The flavour of [`scope_local`](crate::scope_local): cleanup may borrow
/// anything that outlives the call (`'env`) — `&mut` peripherals, a `Vec`
/// on the caller's stack, `Rc<RefCell<..>>` — and need not be `Send`. The
/// scope is then `!Send`: run it where it was made (a thread-mode or
/// current-thread executor, a `LocalSet`, or simply `.await` it).
///
/// Invariant in `'env`, so a body cannot shorten it to register cleanup
/// that borrows its own locals (they are gone when cleanup runs):
///
/// ```compile_fail
/// # futures::executor::block_on(async {
/// deferral::scope_local(async |d| {
///     let local = String::from("dropped with the body");
///     d.try_defer(|| println!("{local}")).unwrap(); // error: does not live long enough
/// })
/// .await;
/// # });
/// ```
pub struct Local<'env>(PhantomData<(Invariant<'env>, NotSend)>);

/// `fn(&'env ()) -> &'env ()`: invariant in `'env`.
type Invariant<'env> = fn(&'env ()) -> &'env ();
/// Neither `Send` nor `Sync`.
type NotSend = *mut ();

impl fmt::Debug for Local<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Local")
    }
}

impl sealed::Sealed for Sendable {}
impl sealed::Sealed for Local<'_> {}

impl Flavour for Sendable {
    const LOCKS: bool = true;
    const SENDABLE: bool = true;
}

impl Flavour for Local<'_> {
    const LOCKS: bool = false;
    const SENDABLE: bool = false;
}

/// What a scope of flavour `K` can hold: `Send + 'static` for [`Sendable`]
/// (`scope`), anything that outlives `'env` for [`Local<'env>`]
/// (`scope_local`). Implemented for every type that qualifies; sealed.
///
/// ```
/// use deferral::{Fits, Local, Sendable};
/// fn fits<K, X: Fits<K>>(_: &X) {}
/// let v = vec![1];
/// fits::<Sendable, _>(&String::new());
/// fits::<Local<'_>, _>(&&v); // a borrow
/// fits::<Local<'_>, _>(&std::rc::Rc::new(1)); // not `Send`
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be held by this scope's cleanup",
    label = "must be `Send + 'static` for `scope`, or outlive the scope for `scope_local`",
    note = "cleanup that borrows the caller's state or is not `Send` needs `deferral::scope_local`"
)]
pub trait Fits<K>: fits::Sealed {}

mod fits {
    pub trait Sealed {}
    impl<X> Sealed for X {}
}

impl<X: Send + 'static> Fits<Sendable> for X {}
impl<'env, X: 'env> Fits<Local<'env>> for X {}

/// The handle a scope's body uses to register deferred work.
///
/// The body gets `&Defer<T, K>`, where `T` is the body's output type and
/// `K` the scope's flavour ([`Sendable`] for [`scope`](crate::scope),
/// [`Local`] for [`scope_local`](crate::scope_local)); the reference cannot
/// escape the body. Every registration returns a token that can cancel
/// (defuse) it before it runs, or, if the inline slab is full and the
/// `alloc` feature is off, [`Full`] with the thunk handed back.
///
/// ```
/// # futures::executor::block_on(async {
/// let out = deferral::scope(async |d| {
///     d.try_defer(|| println!("second")).unwrap();
///     d.try_defer(|| println!("first")).unwrap();
///     42
/// })
/// .await;
/// assert_eq!(out, 42);
/// # });
/// ```
///
/// The handle is invariant in `T`, so a thunk cannot pretend a borrowed
/// output lives longer than it does:
///
/// ```compile_fail
/// # use deferral::Defer;
/// fn widen<'d, 'a>(d: &'d Defer<&'a str>) -> &'d Defer<&'static str> {
///     d // error: lifetime may not live long enough
/// }
/// ```
#[repr(transparent)]
pub struct Defer<T, K: Flavour = Sendable> {
    /// The scope's slab: the handle *is* its core (one allocation-free
    /// borrow of the scope future).
    core: SlabCore<K>,
    /// Registrations are typed by the output. `fn(T) -> T` keeps `Defer`
    /// `Send + Sync` whatever `T` is (no `T` is stored here) and makes it
    /// *invariant* in `T`: were it contravariant (`fn(T)`), a
    /// `&Defer<&'short U>` would coerce to `&Defer<&'static U>` and a
    /// `defer_with` thunk could keep the short reference forever.
    _out: PhantomData<fn(T) -> T>,
}

impl<T, K: Flavour> fmt::Debug for Defer<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Defer").finish_non_exhaustive()
    }
}

impl<T, K: Flavour> Defer<T, K> {
    /// The handle of a slab core.
    pub(crate) fn of(core: &SlabCore<K>) -> &Self {
        // SAFETY: `Defer` is a `repr(transparent)` wrapper of `SlabCore<K>`
        // (its other field is a zero-sized marker).
        unsafe { &*ptr::from_ref(core).cast::<Self>() }
    }

    #[cfg(all(test, feature = "std", not(loom)))]
    pub(crate) fn core_for_tests(&self) -> &SlabCore<K> {
        &self.core
    }

    #[inline(always)]
    fn register<P, X>(&self, payload: P) -> Result<Registration<'_, X, K>, Full<X>>
    where
        P: Payload<T, Taken = X>,
    {
        match self.core.push::<T, P>(payload) {
            Ok((entry, _, take)) => Ok(Registration {
                core: &self.core,
                entry,
                take,
                clears: self.core.clears(),
                _taken: PhantomData,
            }),
            Err(p) => Err(Full(p.take())),
        }
    }

    /// Defers `f` until the body has ended; it runs however the body ended
    /// (returned, panicked, or cancelled), like Go's `defer`.
    ///
    /// `f` may return `()`, or a `Result<(), E>` whose error is then
    /// [added](Exit::add_error) to the output — a failing cleanup turns
    /// `Ok` into `Err` (see [`CleanupOutput`]).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// static CLOSED: AtomicBool = AtomicBool::new(false);
    /// deferral::scope(async |d| {
    ///     d.try_defer(|| CLOSED.store(true, Ordering::SeqCst)).unwrap();
    ///     assert!(!CLOSED.load(Ordering::SeqCst));
    /// })
    /// .await;
    /// assert!(CLOSED.load(Ordering::SeqCst));
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer<F, R>(&self, f: F) -> Result<Registration<'_, F, K>, Full<F>>
    where
        F: FnOnce() -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        self.register(Thunk(f))
    }

    /// Defers `f`, which sees how the body ended and may change the output
    /// — Go's deferred closures over named results, and `recover()` (see
    /// [`Exit`]). It runs however the body ended; if it panicked or was
    /// cancelled there is no output to change.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::Exit;
    /// let out = deferral::scope(async |d| {
    ///     d.try_defer_with(|exit: &mut Exit<Result<u8, &str>>| {
    ///         if let Some(out @ Ok(_)) = exit.output_mut() {
    ///             *out = Err("close failed"); // a failing close is not lost
    ///         }
    ///     })
    ///     .unwrap();
    ///     Ok(1)
    /// })
    /// .await;
    /// assert_eq!(out, Err("close failed"));
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_with<F>(&self, f: F) -> Result<Registration<'_, F, K>, Full<F>>
    where
        F: FnOnce(&mut Exit<T>) + Fits<K>,
    {
        self.register(ThunkWith(f))
    }

    /// Defers `f` to run only if the body returned and nothing panicked
    /// since — `scopeguard::defer_on_success!`. Skipped on a panic or a
    /// cancellation. (A body that returns `Err` returned: pair this with
    /// [`defer_on_error`](Self::defer_on_error), or look at the output
    /// with [`defer_with`](Self::defer_with).)
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// static COMMITTED: AtomicBool = AtomicBool::new(false);
    /// deferral::scope(async |d| {
    ///     d.try_defer_on_success(|| COMMITTED.store(true, Ordering::SeqCst)).unwrap();
    /// })
    /// .await;
    /// assert!(COMMITTED.load(Ordering::SeqCst));
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_on_success<F, R>(&self, f: F) -> Result<Registration<'_, F, K>, Full<F>>
    where
        F: FnOnce() -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        self.register(When::<F, ON_SUCCESS>(f))
    }

    /// Defers `f` to run only while a panic is in flight — the body's, an
    /// earlier cleanup's, or (with `std`) one unwinding through the code
    /// that dropped the scope: `scopeguard::defer_on_unwind!`.
    ///
    /// ```
    /// # #[cfg(feature = "std")]
    /// # futures::executor::block_on(async {
    /// use futures::FutureExt;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// static LOGGED: AtomicBool = AtomicBool::new(false);
    /// let out = std::panic::AssertUnwindSafe(deferral::scope(async |d| {
    ///     d.try_defer_on_unwind(|| LOGGED.store(true, Ordering::SeqCst)).unwrap();
    ///     panic!("boom");
    /// }))
    /// .catch_unwind()
    /// .await;
    /// assert!(out.is_err() && LOGGED.load(Ordering::SeqCst));
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_on_unwind<F, R>(&self, f: F) -> Result<Registration<'_, F, K>, Full<F>>
    where
        F: FnOnce() -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        self.register(When::<F, ON_UNWIND>(f))
    }

    /// Defers `f` to run only if the output is an error when cleanup
    /// reaches it, and gives it the error — Zig's `errdefer |err|`. The
    /// output is read then, not when the body returned: a cleanup that ran
    /// before and failed (turning `Ok` into `Err`) triggers it too.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let l = log.clone();
    /// let out: Result<(), String> = deferral::scope(async |d| {
    ///     d.try_defer_on_error(move |err: &mut String| l.lock().unwrap().push(err.clone()))
    ///         .unwrap();
    ///     Err("out of memory".to_string())
    /// })
    /// .await;
    /// assert!(out.is_err());
    /// assert_eq!(*log.lock().unwrap(), ["out of memory"]);
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_on_error<F>(&self, f: F) -> Result<Registration<'_, F, K>, Full<F>>
    where
        T: Fallible,
        F: FnOnce(&mut T::Error) + Fits<K>,
    {
        self.register(OnError(f))
    }

    /// Defers a future: it is not polled before the body has ended, and
    /// the scope resolves only after it has finished. It runs however the
    /// body ended. Its output is reported like a sync cleanup's
    /// ([`CleanupOutput`]): `()`, an error for the output, or a closure
    /// that changes it.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.try_defer_async(async { /* flush, close, say goodbye */ }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_async<Fut>(&self, fut: Fut) -> Result<Registration<'_, Fut, K>, Full<Fut>>
    where
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        self.register(AsyncThunk(fut))
    }

    /// Defers a future whose output, a `FnOnce(&mut Exit<T>)`, is then
    /// applied to the scope's [`Exit`]: async cleanup that changes the
    /// output once its async work is done.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::Exit;
    /// let out = deferral::scope(async |d| {
    ///     d.try_defer_async_with(async {
    ///         let flushed: Result<(), &str> = Err("disk full"); // an async flush
    ///         move |exit: &mut Exit<Result<(), &str>>| {
    ///             if let Err(e) = flushed {
    ///                 exit.add_error(e);
    ///             }
    ///         }
    ///     })
    ///     .unwrap();
    ///     Ok(())
    /// })
    /// .await;
    /// assert_eq!(out, Err("disk full"));
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_async_with<Fut>(&self, fut: Fut) -> Result<Registration<'_, Fut, K>, Full<Fut>>
    where
        Fut: Future + Fits<K>,
        Fut::Output: FnOnce(&mut Exit<T>),
    {
        self.register(AsyncThunk(fut))
    }

    /// Defers async cleanup that decides from how the body ended what to
    /// do: when cleanup reaches it, `f` gets the [`Exit`] and returns the
    /// future to run (Python's `__aexit__`). The future's output is
    /// reported as for [`defer_async`](Self::defer_async), so it can change
    /// the exit after its work — even [recover](Exit::recover) a panic.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::Exit;
    /// let out = deferral::scope(async |d| {
    ///     d.try_defer_async_on_exit(|exit: &mut Exit<Result<u8, String>>| {
    ///         let failed = exit.error_mut().is_some();
    ///         async move {
    ///             if failed { /* roll back, asynchronously */ }
    ///             move |exit: &mut Exit<Result<u8, String>>| {
    ///                 if failed {
    ///                     exit.output_mut().map(|out| *out = Ok(0)); // suppressed
    ///                 }
    ///             }
    ///         }
    ///     })
    ///     .unwrap();
    ///     Err("failed".to_string())
    /// })
    /// .await;
    /// assert_eq!(out, Ok(0));
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_async_on_exit<F, Fut>(&self, f: F) -> Result<Registration<'_, F, K>, Full<F>>
    where
        F: FnOnce(&mut Exit<T>) -> Fut + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        self.register(Decided::<_, Fut>::Waiting(OnExitFn(f)))
    }

    /// Defers a future that runs only if the body returned and nothing
    /// panicked since (see [`defer_on_success`](Self::defer_on_success));
    /// otherwise it is dropped unpolled when cleanup reaches it.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.try_defer_async_on_success(async { /* commit */ }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_async_on_success<Fut>(
        &self,
        fut: Fut,
    ) -> Result<Registration<'_, Fut, K>, Full<Fut>>
    where
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        self.register(Decided::<_, Fut>::Waiting(OnCond::<Fut, ON_SUCCESS>(fut)))
    }

    /// Defers a future that runs only while a panic is in flight (see
    /// [`defer_on_unwind`](Self::defer_on_unwind)); otherwise it is dropped
    /// unpolled when cleanup reaches it.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.try_defer_async_on_unwind(async { unreachable!("nothing panicked") }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_async_on_unwind<Fut>(
        &self,
        fut: Fut,
    ) -> Result<Registration<'_, Fut, K>, Full<Fut>>
    where
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        self.register(Decided::<_, Fut>::Waiting(OnCond::<Fut, ON_UNWIND>(fut)))
    }

    /// Async `errdefer`: if the output is an error when cleanup reaches
    /// it, `f` gets the error and returns the future to run (a rollback
    /// that needs the error, say); otherwise nothing runs.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// let rolled_back = Arc::new(Mutex::new(None));
    /// let r = rolled_back.clone();
    /// let _: Result<(), String> = deferral::scope(async |d| {
    ///     d.try_defer_async_on_error(move |err: &mut String| {
    ///         let err = err.clone();
    ///         async move { *r.lock().unwrap() = Some(err) } // an async rollback
    ///     })
    ///     .unwrap();
    ///     Err("constraint violated".to_string())
    /// })
    /// .await;
    /// assert_eq!(rolled_back.lock().unwrap().as_deref(), Some("constraint violated"));
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_defer_async_on_error<F, Fut>(&self, f: F) -> Result<Registration<'_, F, K>, Full<F>>
    where
        T: Fallible,
        F: FnOnce(&mut T::Error) -> Fut + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        self.register(Decided::<_, Fut>::Waiting(OnErrorFn(f)))
    }

    /// Moves `value` into the scope, gives the body a [`Guard`] to it for
    /// the whole run, and runs `cleanup(value)` after the body.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let len = deferral::scope(async |d| {
    ///     let mut buf = d.try_guard(Vec::new(), |buf| assert_eq!(buf, [1, 2])).unwrap();
    ///     buf.push(1);
    ///     buf.push(2);
    ///     buf.len()
    /// })
    /// .await;
    /// assert_eq!(len, 2);
    /// # });
    /// ```
    ///
    /// In [`scope_local`](crate::scope_local) the value may be a borrow,
    /// like `scopeguard::guard(&mut adc, ..)`:
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// struct Adc { on: bool }
    /// let mut adc = Adc { on: true };
    /// deferral::scope_local(async |d| {
    ///     let mut adc = d.try_guard(&mut adc, |adc| adc.on = false).unwrap();
    ///     assert!(adc.on); // `&mut Adc` for the whole body
    /// })
    /// .await;
    /// assert!(!adc.on);
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_guard<V, F, R>(
        &self,
        value: V,
        cleanup: F,
    ) -> Result<Guard<'_, V, F, K>, Full<(V, F)>>
    where
        V: Fits<K>,
        F: FnOnce(V) -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        match self.core.push::<T, _>(GuardThunk { value, cleanup }) {
            Ok((entry, payload, take)) => {
                // SAFETY: we just pushed a `GuardThunk<V, F>` at `payload`
                // (wrapped in `InContext` when a context was set, which is
                // `repr(C)` with the payload first).
                Ok(unsafe { Guard::new(&self.core, entry, take, guard_value::<V, F>(payload)) })
            }
            Err(GuardThunk { value, cleanup }) => Err(Full((value, cleanup))),
        }
    }

    /// Like [`guard`](Self::guard), with an async cleanup: after the body,
    /// `cleanup(value)` is called and its future polled to completion — the
    /// Rust form of Go's `defer conn.Close()`. The cleanup runs however the
    /// body ended. If it returns `Result<(), E>`, a failure is
    /// [added](Exit::add_error) to the output: a failing `close()` turns
    /// `Ok` into `Err` ([`CleanupOutput`]).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// struct Conn;
    /// impl Conn {
    ///     async fn close(self) {}
    ///     fn send(&mut self, _: &str) {}
    /// }
    /// deferral::scope(async |d| {
    ///     let mut conn = d.try_guard_async(Conn, |c| c.close()).unwrap();
    ///     conn.send("hello"); // `conn` is `&mut Conn` for the whole body
    /// })
    /// .await;
    /// # });
    /// ```
    ///
    /// With a fallible `close`, whose error the output keeps:
    ///
    /// ```
    /// # #[cfg(feature = "std")]
    /// # futures::executor::block_on(async {
    /// use std::io;
    /// struct File;
    /// impl File {
    ///     async fn close(self) -> io::Result<()> {
    ///         Err(io::Error::other("close failed"))
    ///     }
    ///     fn write(&mut self, _: &[u8]) -> io::Result<()> {
    ///         Ok(())
    ///     }
    /// }
    /// let out: io::Result<()> = deferral::scope(async |d| {
    ///     let mut f = d.try_guard_async(File, |f| f.close())?;
    ///     f.write(b"data")?; // the body uses the file as `&mut File`
    ///     Ok(())
    /// })
    /// .await;
    /// assert_eq!(out.unwrap_err().to_string(), "close failed");
    /// # });
    /// ```
    #[inline(always)]
    pub fn try_guard_async<V, F, Fut>(
        &self,
        value: V,
        cleanup: F,
    ) -> Result<Guard<'_, V, F, K>, Full<(V, F)>>
    where
        V: Fits<K>,
        F: FnOnce(V) -> Fut + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        match self.core.push::<T, _>(GuardAsync::Armed { value, cleanup }) {
            Ok((entry, payload, take)) => {
                // SAFETY: we just pushed a `GuardAsync<V, F, Fut>`, armed, at
                // `payload` (see `guard`).
                Ok(unsafe {
                    Guard::new(
                        &self.core,
                        entry,
                        take,
                        guard_async_value::<V, F, Fut>(payload),
                    )
                })
            }
            Err(GuardAsync::Armed { value, cleanup }) => Err(Full((value, cleanup))),
            Err(_) => unreachable!(),
        }
    }

    /// How many registrations are pending (guards included) — JS's
    /// `disposed` turned around, async-safe-defer's `len()`.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     assert_eq!(d.len(), 0);
    ///     d.defer(|| ());
    ///     let _g = d.guard(1, drop);
    ///     assert_eq!(d.len(), 2);
    /// })
    /// .await;
    /// # });
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// Nothing is pending.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| assert!(d.is_empty())).await;
    /// # });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every pending registration unrun — except guarded values,
    /// which the body may be using (defuse or run those through their
    /// [`Guard`]) — and returns how many were dropped (async-safe-defer's
    /// `clear()`: after a commit, say). Their bytes are free again.
    ///
    /// Tokens of registrations made before are refused from now on
    /// ([`Registration::try_cancel`] returns `None`, [`Registration::cancel`]
    /// panics): their registration may be gone.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer(|| unreachable!("rolled back"));
    ///     d.defer_async(async { unreachable!("rolled back") });
    ///     // ... the transaction committed: no rollback.
    ///     assert_eq!(d.clear(), 2);
    ///     assert!(d.is_empty());
    /// })
    /// .await;
    /// # });
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// With `std`, if a destructor panics the others are still dropped, and
    /// the first panic resumes from here.
    pub fn clear(&self) -> usize {
        // SAFETY: a handle exists only while the body runs; each entry is
        // claimed (ours), and dropped once.
        unsafe {
            self.core.remove_where(
                |_| true,
                false,
                |live| {
                    live.drop_payload();
                    true
                },
            )
        }
    }

    /// Moves every pending registration that can run outside this scope
    /// into `stack` (which then owns it) and returns how many moved —
    /// Python's `ExitStack.pop_all()`, JS's `DisposableStack.move()`, from a
    /// scope. What stays: guarded values (move those with
    /// [`Guard::move_to`]), cleanup that reads this scope's output
    /// (`defer_with`, `defer_on_error`, a `Result`-returning cleanup), and,
    /// without `alloc`, what does not fit: registrations move oldest
    /// first, so the stack runs them in the scope's order, and moving
    /// stops at the first that does not fit.
    ///
    /// Tokens of registrations made before are refused from now on
    /// ([`Registration::try_cancel`] returns `None`), also those of what stayed.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use deferral::DeferStack;
    /// let mut owned: DeferStack = DeferStack::new();
    /// deferral::scope(async |d| {
    ///     d.defer(|| println!("closed by the stack's owner"));
    ///     assert_eq!(d.move_all(&mut owned), 1); // construction succeeded
    /// })
    /// .await;
    /// assert_eq!(owned.len(), 1);
    /// owned.dispose().await;
    /// # });
    /// # }
    /// ```
    pub fn move_all<const M: usize>(&self, stack: &mut crate::DeferStack<K, M>) -> usize {
        // SAFETY: a handle exists only while the body runs (nothing was
        // polled); the predicate admits portable payloads only; the stack
        // has the same flavour, so its payloads fit.
        unsafe {
            self.core
                .remove_where(|v| v.is_portable(), true, |live| stack.accept(live))
        }
    }
}

/// The registrations that cannot fail: with `alloc` a full slab spills to
/// the heap, so there is no `Result` to unwrap. Without `alloc` only the
/// `try_` forms exist (a slab can fill up; they hand the thunk back), so
/// code written for `no_std` keeps compiling when another crate turns
/// `alloc` on, and no registration is ever dropped unnoticed.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
impl<T, K: Flavour> Defer<T, K> {
    /// Defers `f` until the body has ended; it runs however the body ended
    /// (returned, panicked or cancelled), like Go's `defer`. `f` may return
    /// `()` or a `Result<(), E>` whose error is [added](Exit::add_error) to the
    /// output.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer(|| println!("closed"));
    ///     println!("open");
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer<F, R>(&self, f: F) -> Registration<'_, F, K>
    where
        F: FnOnce() -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        stored(self.try_defer(f))
    }

    /// Defers `f`, which sees how the body ended and may change the output (see
    /// [`try_defer_with`](Self::try_defer_with)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|exit| {
    ///         if let Some(out) = exit.output_mut() {
    ///             *out += 1;
    ///         }
    ///     });
    ///     1
    /// })
    /// .await;
    /// assert_eq!(out, 2);
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_with<F>(&self, f: F) -> Registration<'_, F, K>
    where
        F: FnOnce(&mut Exit<T>) + Fits<K>,
    {
        stored(self.try_defer_with(f))
    }

    /// Defers `f` to run only if the body returned and nothing panicked since
    /// (see [`try_defer_on_success`](Self::try_defer_on_success)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_on_success(|| println!("committed"));
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_on_success<F, R>(&self, f: F) -> Registration<'_, F, K>
    where
        F: FnOnce() -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        stored(self.try_defer_on_success(f))
    }

    /// Defers `f` to run only while a panic is in flight (see
    /// [`try_defer_on_unwind`](Self::try_defer_on_unwind)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_on_unwind(|| unreachable!("nothing panicked"));
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_on_unwind<F, R>(&self, f: F) -> Registration<'_, F, K>
    where
        F: FnOnce() -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        stored(self.try_defer_on_unwind(f))
    }

    /// Defers `f` to run only if the body returned an error, with that error
    /// (Zig's `errdefer`; see
    /// [`try_defer_on_error`](Self::try_defer_on_error)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_on_error(|e: &mut String| e.push_str(", rolled back"));
    ///     Err::<(), _>(String::from("failed"))
    /// })
    /// .await;
    /// assert_eq!(out.unwrap_err(), "failed, rolled back");
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_on_error<F>(&self, f: F) -> Registration<'_, F, K>
    where
        T: Fallible,
        F: FnOnce(&mut T::Error) + Fits<K>,
    {
        stored(self.try_defer_on_error(f))
    }

    /// Defers a future, awaited after the body however it ended (see
    /// [`try_defer_async`](Self::try_defer_async)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_async(async { println!("flushed") });
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_async<Fut>(&self, fut: Fut) -> Registration<'_, Fut, K>
    where
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        stored(self.try_defer_async(fut))
    }

    /// Defers a future whose output then sees, and may change, how the body
    /// ended (see [`try_defer_async_with`](Self::try_defer_async_with)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_async_with(async {
    ///         |exit: &mut deferral::Exit<u8>| {
    ///             if let Some(out) = exit.output_mut() {
    ///                 *out = 9;
    ///             }
    ///         }
    ///     });
    ///     1
    /// })
    /// .await;
    /// assert_eq!(out, 9);
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_async_with<Fut>(&self, fut: Fut) -> Registration<'_, Fut, K>
    where
        Fut: Future + Fits<K>,
        Fut::Output: FnOnce(&mut Exit<T>),
    {
        stored(self.try_defer_async_with(fut))
    }

    /// Defers `f`, called with how the body ended; the future it returns is
    /// awaited (see
    /// [`try_defer_async_on_exit`](Self::try_defer_async_on_exit)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_async_on_exit(|exit: &mut deferral::Exit<()>| {
    ///         let ok = !exit.is_panicked();
    ///         async move { assert!(ok) }
    ///     });
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_async_on_exit<F, Fut>(&self, f: F) -> Registration<'_, F, K>
    where
        F: FnOnce(&mut Exit<T>) -> Fut + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        stored(self.try_defer_async_on_exit(f))
    }

    /// [`defer_async`](Self::defer_async), awaited only if the body returned
    /// and nothing panicked (see
    /// [`try_defer_async_on_success`](Self::try_defer_async_on_success)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_async_on_success(async { println!("committed") });
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_async_on_success<Fut>(&self, fut: Fut) -> Registration<'_, Fut, K>
    where
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        stored(self.try_defer_async_on_success(fut))
    }

    /// [`defer_async`](Self::defer_async), awaited only while a panic is in
    /// flight (see
    /// [`try_defer_async_on_unwind`](Self::try_defer_async_on_unwind)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_async_on_unwind(async { unreachable!("nothing panicked") });
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_async_on_unwind<Fut>(&self, fut: Fut) -> Registration<'_, Fut, K>
    where
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        stored(self.try_defer_async_on_unwind(fut))
    }

    /// Defers `f`, called with the body's error if it returned one; the future
    /// it returns is awaited (see
    /// [`try_defer_async_on_error`](Self::try_defer_async_on_error)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_async_on_error(|e: &mut &str| {
    ///         let what = *e;
    ///         async move { println!("rolling back after {what}") }
    ///     });
    ///     Err::<(), _>("failed")
    /// })
    /// .await;
    /// assert!(out.is_err());
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_async_on_error<F, Fut>(&self, f: F) -> Registration<'_, F, K>
    where
        T: Fallible,
        F: FnOnce(&mut T::Error) -> Fut + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        stored(self.try_defer_async_on_error(f))
    }

    /// Moves `value` into the scope and hands back a [`Guard`] to use it;
    /// `cleanup(value)` runs after the body unless the guard is defused (see
    /// [`try_guard`](Self::try_guard)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let n = deferral::scope(async |d| {
    ///     let mut conn = d.guard(vec!["open"], |c| println!("closing {c:?}"));
    ///     conn.push("query");
    ///     conn.len()
    /// })
    /// .await;
    /// assert_eq!(n, 2);
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn guard<V, F, R>(&self, value: V, cleanup: F) -> Guard<'_, V, F, K>
    where
        V: Fits<K>,
        F: FnOnce(V) -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        stored(self.try_guard(value, cleanup))
    }

    /// [`guard`](Self::guard) with an async cleanup, awaited after the body
    /// (see [`try_guard_async`](Self::try_guard_async)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     let conn = d.guard_async(String::from("db"), async |c| println!("closed {c}"));
    ///     assert_eq!(*conn, "db");
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn guard_async<V, F, Fut>(&self, value: V, cleanup: F) -> Guard<'_, V, F, K>
    where
        V: Fits<K>,
        F: FnOnce(V) -> Fut + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        stored(self.try_guard_async(value, cleanup))
    }
}

/// The registration of an `alloc` scope or `DeferStack`, which spills
/// instead of filling up: never `Err` (a heap chunk whose layout would
/// overflow `isize` panics in the slab, as `Vec::push` does; an allocation
/// failure aborts), so the arm is dead code the optimiser removes.
#[cfg(feature = "alloc")]
#[inline(always)]
#[track_caller]
pub(crate) fn stored<R, X>(r: Result<R, Full<X>>) -> R {
    match r {
        Ok(registration) => registration,
        Err(_) => panic!("deferral: a thunk too large for any allocation"),
    }
}

/// # Safety
/// `payload` points to a live `GuardThunk<V, F>` (alone, or as the first
/// field of a `repr(C)` `InContext`).
unsafe fn guard_value<V, F>(payload: *mut u8) -> *mut V {
    // SAFETY: as the caller guarantees.
    unsafe { ptr::addr_of_mut!((*payload.cast::<GuardThunk<V, F>>()).value) }
}

/// # Safety
/// `payload` points to a live `GuardAsync<V, F, Fut>` in its `Armed` state.
unsafe fn guard_async_value<V, F, Fut>(payload: *mut u8) -> *mut V {
    // SAFETY: as the caller guarantees; a reference to the value is fine
    // because nobody else touches an armed payload while the body runs.
    match unsafe { &mut *payload.cast::<GuardAsync<V, F, Fut>>() } {
        GuardAsync::Armed { value, .. } => value,
        _ => unreachable!(),
    }
}

/// A registration that has not run yet; [`cancel`](Registration::cancel) it to
/// take the thunk back. Dropping the token keeps the registration.
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// deferral::scope(async |d| {
///     let token = d.defer(|| unreachable!("cancelled"));
///     let thunk = token.cancel(); // defused: handed back, never run
///     drop(thunk);
/// })
/// .await;
/// # });
/// # }
/// ```
pub struct Registration<'d, X, K: Flavour = Sendable> {
    core: &'d SlabCore<K>,
    entry: Entry,
    /// Takes the payload back as an `X` (linked only where `cancel` is).
    take: TakeFn,
    /// The slab's `clears` count when registered: if registrations were
    /// cleared or moved since, this one may be gone.
    clears: Clears,
    _taken: PhantomData<X>,
}

// SAFETY: a token is a claim on one entry of a slab plus the right to take
// its `X` out: it may move to another thread when the slab is shared
// between threads (`SlabCore<K>: Sync`, which covers locking) and `X` may.
unsafe impl<X: Send, K: Flavour> Send for Registration<'_, X, K> where SlabCore<K>: Sync {}
// SAFETY: `&Registration` allows nothing but `Debug`; `Sync` follows `X` like
// any owner of an `X` would.
unsafe impl<X: Sync, K: Flavour> Sync for Registration<'_, X, K> {}

impl<X, K: Flavour> fmt::Debug for Registration<'_, X, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

impl<X, K: Flavour> Registration<'_, X, K> {
    /// Moves the registration into `stack`, which then owns it (its kind
    /// is kept: a `defer_on_success` there still runs only on success).
    /// The token comes back if the registration reads this scope's output
    /// (`defer_with`, `defer_on_error`, a `Result`-returning cleanup: it
    /// cannot run elsewhere), if the stack is full (only without `alloc`),
    /// or if it was cleared or moved already.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// deferral::scope(async |d| {
    ///     let token = d.defer(|| println!("later"));
    ///     token.move_to(&mut stack).unwrap();
    /// })
    /// .await;
    /// assert_eq!(stack.len(), 1);
    /// # });
    /// # }
    /// ```
    pub fn move_to<const M: usize>(self, stack: &mut crate::DeferStack<K, M>) -> Result<(), Self> {
        // SAFETY: as in `try_cancel`; the stack has the same flavour.
        let moved = unsafe {
            self.core
                .move_entry(self.entry, Some(self.clears), |live| stack.accept(live))
        };
        match moved {
            Some(true) => Ok(()),
            _ => Err(self),
        }
    }

    /// Defuses the registration and hands back what was deferred (the
    /// closure or future), unrun. If it was the newest registration its
    /// bytes in the slab are free again.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     let token = d.defer(|| unreachable!("cancelled"));
    ///     let thunk = token.cancel();
    ///     drop(thunk); // never run
    /// })
    /// .await;
    /// # });
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If [`Defer::clear`] or [`Defer::move_all`] ran since the
    /// registration (it may be gone): see [`try_cancel`](Self::try_cancel).
    pub fn cancel(self) -> X {
        self.try_cancel()
            .expect("deferral: the registration was cleared or moved (`Defer::clear`, `move_all`)")
    }

    /// Like [`cancel`](Self::cancel), or `None` if [`Defer::clear`] or
    /// [`Defer::move_all`] ran since the registration: it was dropped or
    /// moved then (or, for one `move_all` left behind, stays registered).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     let token = d.try_defer(|| unreachable!("cleared")).unwrap();
    ///     assert_eq!(d.clear(), 1);
    ///     assert!(token.try_cancel().is_none());
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn try_cancel(self) -> Option<X> {
        let mut dst = core::mem::MaybeUninit::<X>::uninit();
        // SAFETY: the token exists only while the body runs (its lifetime is
        // the handle's borrow), so cleanup has not begun; `self` is
        // consumed, so this is its only take; the payload's `Taken` is `X`.
        unsafe {
            self.core
                .take_into(
                    self.entry,
                    self.take,
                    dst.as_mut_ptr().cast(),
                    Some(self.clears),
                )
                .then(|| dst.assume_init())
        }
    }
}

/// A value guarded by its scope: the body uses it through `Deref` /
/// `DerefMut`, and its cleanup runs after the body unless it is
/// [defused](Guard::defuse).
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// deferral::scope(async |d| {
///     let guard = d.guard(String::from("tmp"), |_| unreachable!());
///     let value: String = deferral::Guard::defuse(guard); // no cleanup
///     assert_eq!(value, "tmp");
/// })
/// .await;
/// # });
/// # }
/// ```
pub struct Guard<'d, V, F, K: Flavour = Sendable> {
    core: &'d SlabCore<K>,
    entry: Entry,
    /// Takes the value and cleanup back (linked only where used).
    take: TakeFn,
    value: NonNull<V>,
    _owns: PhantomData<(&'d mut V, F)>,
}

// SAFETY: a `Guard` is a unique reference to `V` (`&mut V`) and the right to
// take `V` and `F` back: `Send` when they are and when taking may happen
// from another thread (`SlabCore<K>: Sync`).
unsafe impl<V: Send, F: Send, K: Flavour> Send for Guard<'_, V, F, K> where SlabCore<K>: Sync {}
// SAFETY: through `&Guard` only `&V` is reachable: `Sync` when `V` is.
unsafe impl<V: Sync, F, K: Flavour> Sync for Guard<'_, V, F, K> {}

impl<'d, V, F, K: Flavour> Guard<'d, V, F, K> {
    /// # Safety
    /// `entry` was just pushed on `core`, with a payload whose `Taken` is
    /// `V`; `value` is the guarded value's address in it.
    unsafe fn new(core: &'d SlabCore<K>, entry: Entry, take: TakeFn, value: *mut V) -> Self {
        // SAFETY: as the caller guarantees.
        let value = unsafe { NonNull::new_unchecked(value) };
        Guard {
            core,
            entry,
            take,
            value,
            _owns: PhantomData,
        }
    }

    /// Takes the value back: its cleanup will not run (it is dropped).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use deferral::Guard;
    /// deferral::scope(async |d| {
    ///     let tmp = d.guard(String::from("tmp"), |_| unreachable!("kept"));
    ///     let kept: String = Guard::defuse(tmp);
    ///     assert_eq!(kept, "tmp");
    /// })
    /// .await;
    /// # });
    /// # }
    /// ```
    pub fn defuse(guard: Self) -> V {
        Self::into_parts(guard).0
    }

    /// Takes the value and its cleanup back, unrun: the scope forgets
    /// them (async-safe-defer's `ScopeGuard::into_parts`).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use deferral::Guard;
    /// deferral::scope(async |d| {
    ///     let guard = d.guard(vec![1], |v| assert_eq!(v, [1, 2]));
    ///     let (mut v, cleanup) = Guard::into_parts(guard);
    ///     v.push(2);
    ///     cleanup(v); // when and where you like
    /// })
    /// .await;
    /// # });
    /// # }
    /// ```
    pub fn into_parts(guard: Self) -> (V, F) {
        let mut dst = core::mem::MaybeUninit::<(V, F)>::uninit();
        // SAFETY: as in `Registration::cancel`; a guard's payload's `Taken` is
        // `(V, F)`; a guarded entry is never cleared or moved (no `clears`).
        unsafe {
            guard
                .core
                .take_into(guard.entry, guard.take, dst.as_mut_ptr().cast(), None);
            dst.assume_init()
        }
    }

    /// Moves the guarded value and its cleanup into `stack`, which then
    /// owns them (the body stops using the value). The guard comes back if
    /// its cleanup returns a `Result` for this scope's output, or if the
    /// stack is full (only without `alloc`).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use deferral::{DeferStack, Guard};
    /// let mut stack: DeferStack = DeferStack::new();
    /// deferral::scope(async |d| {
    ///     let conn = d.guard(String::from("conn"), |c| println!("closing {c}"));
    ///     Guard::move_to(conn, &mut stack).unwrap();
    /// })
    /// .await;
    /// drop(stack); // prints "closing conn"
    /// # });
    /// # }
    /// ```
    pub fn move_to<const M: usize>(
        guard: Self,
        stack: &mut crate::DeferStack<K, M>,
    ) -> Result<(), Self> {
        // SAFETY: as in `into_parts` (consumed on success: no reference to
        // the value survives); the stack has the same flavour.
        let moved = unsafe {
            guard
                .core
                .move_entry(guard.entry, None, |live| stack.accept(live))
        };
        match moved {
            Some(true) => Ok(()),
            _ => Err(guard),
        }
    }

    /// Runs the cleanup now, and hands back what it returns: for a sync
    /// guard its result, for an async one its future (await it). The scope
    /// forgets it (async-safe-defer's `ScopeGuard::run_now`, Python's
    /// `ExitStack.close()` for one resource). Its result is not added to the
    /// scope's output: it is yours.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use deferral::Guard;
    /// struct Conn;
    /// impl Conn {
    ///     async fn close(self) -> Result<(), &'static str> { Ok(()) }
    /// }
    /// let out: Result<(), &str> = deferral::scope(async |d| {
    ///     let conn = d.guard_async(Conn, Conn::close);
    ///     Guard::run_now(conn).await?; // closed here, its error ours to handle
    ///     Ok(())
    /// })
    /// .await;
    /// assert!(out.is_ok());
    /// # });
    /// # }
    /// ```
    pub fn run_now<R>(guard: Self) -> R
    where
        F: FnOnce(V) -> R,
    {
        let (value, cleanup) = Self::into_parts(guard);
        cleanup(value)
    }
}

impl<V, F, K: Flavour> core::ops::Deref for Guard<'_, V, F, K> {
    type Target = V;
    fn deref(&self) -> &V {
        // SAFETY: the value lives in the armed payload until the guard is
        // defused (which consumes it) or the body ends (which outlives it).
        unsafe { self.value.as_ref() }
    }
}

impl<V, F, K: Flavour> core::ops::DerefMut for Guard<'_, V, F, K> {
    fn deref_mut(&mut self) -> &mut V {
        // SAFETY: as in `deref`; the guard is the value's only accessor.
        unsafe { self.value.as_mut() }
    }
}

impl<V: fmt::Debug, F, K: Flavour> fmt::Debug for Guard<'_, V, F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Guard").field(&**self).finish()
    }
}

/// The slab was full: the registration is handed back, nothing is lost.
///
/// Only returned without the `alloc` feature (with it a full slab spills to
/// the heap). Grow the slab with
/// [`ScopeBuilder::capacity`](crate::ScopeBuilder::capacity), or cancel
/// registrations you no longer need: the newest ones give their bytes back.
///
/// ```
/// # futures::executor::block_on(async {
/// deferral::ScopeBuilder::new()
///     .capacity::<64>()
///     .run(async |d| {
///         let big = [0u8; 128];
///         match d.try_defer(move || drop(big)) {
///             Ok(_) => assert!(cfg!(feature = "alloc")), // spilled to the heap
///             Err(full) => (full.into_inner())(),        // run it by hand
///         }
///     })
///     .await;
/// # });
/// ```
pub struct Full<X>(X);

impl<X> Full<X> {
    pub(crate) fn new(x: X) -> Self {
        Full(x)
    }

    /// What could not be registered (the thunk, or the guarded value and
    /// its cleanup).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::ScopeBuilder::new()
    ///     .capacity::<0>()
    ///     .run(async |d| {
    ///         if let Err(full) = d.try_defer(|| println!("by hand")) {
    ///             (full.into_inner())();
    ///         }
    ///     })
    ///     .await;
    /// # });
    /// ```
    pub fn into_inner(self) -> X {
        self.0
    }
}

impl<X> fmt::Debug for Full<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<X> fmt::Display for Full<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the scope's defer slab is full")
    }
}

impl<X> core::error::Error for Full<X> {}

/// So that `?` works in bodies returning `io::Result`; the refused thunk is
/// dropped. With `alloc` the slab spills to the heap, so this happens only
/// for a payload too big to allocate.
#[cfg(feature = "std")]
impl<X> From<Full<X>> for std::io::Error {
    fn from(full: Full<X>) -> Self {
        drop(full);
        std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            "the scope's defer slab is full",
        )
    }
}
