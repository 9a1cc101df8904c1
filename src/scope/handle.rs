//! The handle a scope's body registers cleanup with ([`Defer`]), and what
//! a registration returns: a [`Registration`] token or a [`Guard`].
//!
//! Eight ways in, along three lines: a closure or a future (`_async`),
//! alone or guarding a value the body uses meanwhile (`guard`), blind or
//! seeing how the body ended (`_with`). When a registration runs at all is
//! a value, [`When`], set on its token.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use super::entry::{
    AsyncPayload, Entry, Head, Payload, SyncPayload, TakeFn, async_vtable, payload_of,
    sync_vtable, take_payload,
};
use super::exit::{CleanupOutput, Exit, Fallible, Outcome, When, classify};
use super::flavour::{DEFAULT_CAPACITY, Fits, Flavour, Full, Sendable};
use super::payload::{
    Call, CallWith, GuardCall, GuardCallWith, GuardStart, GuardWithStart, Now, Task, WithStart,
};
use super::slab::{ALIGN, Core, Pushed};
use super::stack::DeferStack;


/// The handle a scope's body uses to register cleanup.
///
/// The body gets `&Defer<T, K, N>`: `T` is the body's output type, `K` the
/// scope's [flavour](super::Flavour) ([`Sendable`] for
/// [`scope`](crate::scope()), [`Local`](super::Local) for
/// [`scope_local`](crate::scope_local)), `N` its inline capacity. The
/// reference cannot escape the body.
///
/// | | runs | sees how the body ended |
/// |---|---|---|
/// | a closure | [`defer`](Self::defer) | [`defer_with`](Self::defer_with): `&mut Exit<T>` |
/// | a future | [`defer_async`](Self::defer_async) | [`defer_async_with`](Self::defer_async_with): [`Outcome`] |
/// | a value, sync cleanup | [`guard`](Self::guard) | [`guard_with`](Self::guard_with): `&mut Exit<T>` |
/// | a value, async cleanup | [`guard_async`](Self::guard_async) | [`guard_async_with`](Self::guard_async_with): [`Outcome`], and a fallback |
///
/// Each returns a token: [`Registration::when`] / [`Guard::when`] make it
/// conditional, `cancel` / [`Guard::defuse`] take it back. With `alloc` a
/// full slab spills to the heap; without, a cleanup that can never fit is a
/// compile error, and a slab that runs out panics — unless the scope is
/// [`Fixed`](super::Fixed), whose registrations return `Result<_, Full<_>>`.
///
/// ```
/// # futures::executor::block_on(async {
/// let out = deferral::scope(async |d| {
///     d.defer(|| println!("second"));
///     d.defer(|| println!("first"));
///     42
/// })
/// .await;
/// assert_eq!(out, 42);
/// # });
/// ```
///
/// A cleanup that can never fit a slab that cannot grow (without `alloc`,
/// or [`fixed`](crate::scope::ScopeBuilder::fixed)) is a compile error
/// when the program is built (it is found while the registration is
/// instantiated, so `cargo check` does not report it):
///
/// ```compile_fail
/// # futures::executor::block_on(async {
/// deferral::scope::ScopeBuilder::new()
///     .capacity::<32>()
///     .fixed()
///     .run(async |d| {
///         let big = [1u8; 64];
///         let _ = d.defer(move || assert_eq!(big[0], 1)); // error: can never fit
///     })
///     .await;
/// # });
/// ```
///
/// The handle is invariant in `T`, so a cleanup cannot pretend a borrowed
/// output lives longer than it does:
///
/// ```compile_fail
/// # use deferral::Defer;
/// fn widen<'d, 'a>(d: &'d Defer<&'a str>) -> &'d Defer<&'static str> {
///     d // error: lifetime may not live long enough
/// }
/// ```
#[repr(transparent)]
pub struct Defer<T, K: Flavour = Sendable, const N: usize = DEFAULT_CAPACITY> {
    /// The scope's slab: the handle *is* its core.
    core: Core<K>,
    /// `fn(T) -> T`: `Send + Sync` whatever `T` is (no `T` is stored),
    /// and *invariant* in `T` (see above).
    _out: PhantomData<fn(T) -> T>,
}

impl<T, K: Flavour, const N: usize> fmt::Debug for Defer<T, K, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Defer").finish_non_exhaustive()
    }
}

/// A token's tie to the output type: `Send + Sync` whatever `T` is (no
/// `T` is held), invariant in it.
type Out<T> = fn(T) -> T;

/// Where a registration landed: its head, how to take it back, and where
/// its payload is (inside a context wrapper, if it got one).
struct Stored<P> {
    head: NonNull<Head>,
    /// The core's epoch when it was stored (read under the slab's lock).
    epoch: u64,
    take: TakeFn,
    payload: *mut P,
}

/// A cleanup of payload `P` can never fit a slab of `N` bytes that cannot
/// grow: a compile error (see `Defer`).
const fn fits<K: Flavour, P, const N: usize>() {
    let grows = K::GROWS && cfg!(feature = "alloc");
    assert!(
        grows || (size_of::<Entry<P>>() <= N && align_of::<Entry<P>>() <= ALIGN),
        "deferral: this cleanup can never fit the scope's slab (its size plus a two-word \
         head exceeds the capacity, or it is aligned beyond 16): raise \
         `ScopeBuilder::capacity`, or box what it captures"
    );
}

impl<T, K: Flavour, const N: usize> Defer<T, K, N> {
    /// The handle of a slab core.
    pub(crate) fn of(core: &Core<K>) -> &Self {
        // SAFETY: `Defer` is a `repr(transparent)` wrapper of `Core<K>`
        // (its other field is a zero-sized marker).
        unsafe { &*core::ptr::from_ref(core).cast::<Self>() }
    }

    #[inline(always)]
    fn push_sync<P: SyncPayload<T>>(&self, payload: P) -> Result<Stored<P>, P> {
        const { fits::<K, P, N>() };
        #[cfg(feature = "std")]
        {
            // Registered while a context variable is set: it runs in that
            // context. In the empty one nothing is captured or wrapped.
            let snapshot = crate::Snapshot::capture();
            if !snapshot.is_empty() {
                use super::payload::InContext;
                let wrapped = InContext { payload, snapshot };
                // SAFETY: the vtable of `Entry<InContext<P>>`.
                return match unsafe { self.core.push(sync_vtable::<T, InContext<P>>(), wrapped) } {
                    Ok(Pushed { head, epoch }) => Ok(Stored {
                        head,
                        epoch,
                        take: take_payload::<T, InContext<P>>,
                        // SAFETY: only computes an address.
                        payload: unsafe { &raw mut (*payload_of::<InContext<P>>(head)).payload },
                    }),
                    Err(wrapped) => Err(wrapped.payload),
                };
            }
        }
        // SAFETY: the vtable of `Entry<P>`.
        match unsafe { self.core.push(sync_vtable::<T, P>(), payload) } {
            Ok(Pushed { head, epoch }) => Ok(Stored {
                head,
                epoch,
                take: take_payload::<T, P>,
                payload: payload_of::<P>(head),
            }),
            Err(payload) => Err(payload),
        }
    }

    #[inline(always)]
    fn push_async<P: AsyncPayload<T>>(&self, payload: P) -> Result<Stored<P>, P> {
        const { fits::<K, P, N>() };
        #[cfg(feature = "std")]
        {
            let snapshot = crate::Snapshot::capture();
            if !snapshot.is_empty() {
                use super::payload::InContext;
                let wrapped = InContext { payload, snapshot };
                // SAFETY: the vtable of `Entry<InContext<P>>`.
                return match unsafe { self.core.push(async_vtable::<T, InContext<P>>(), wrapped) } {
                    Ok(Pushed { head, epoch }) => Ok(Stored {
                        head,
                        epoch,
                        take: take_payload::<T, InContext<P>>,
                        // SAFETY: only computes an address.
                        payload: unsafe { &raw mut (*payload_of::<InContext<P>>(head)).payload },
                    }),
                    Err(wrapped) => Err(wrapped.payload),
                };
            }
        }
        // SAFETY: the vtable of `Entry<P>`.
        match unsafe { self.core.push(async_vtable::<T, P>(), payload) } {
            Ok(Pushed { head, epoch }) => Ok(Stored {
                head,
                epoch,
                take: take_payload::<T, P>,
                payload: payload_of::<P>(head),
            }),
            Err(payload) => Err(payload),
        }
    }

    #[inline(always)]
    fn token<X, P>(&self, stored: Stored<P>) -> Registration<'_, T, X, K> {
        Registration {
            core: &self.core,
            head: stored.head,
            take: stored.take,
            epoch: stored.epoch,
            _taken: PhantomData,
        }
    }

    /// # Safety
    /// `value` points to the guarded value inside the payload just stored,
    /// whose `Taken` is `(V, C)`.
    #[inline(always)]
    unsafe fn guard_token<V, C, P>(&self, stored: Stored<P>, value: *mut V) -> Guard<'_, T, V, C, K> {
        Guard {
            core: &self.core,
            head: stored.head,
            take: stored.take,
            // SAFETY: an address inside a stored payload: not null.
            value: unsafe { NonNull::new_unchecked(value) },
            _owns: PhantomData,
        }
    }

    /// Defers `f` until the body has ended; it runs however the body ended
    /// (returned, panicked, or cancelled), like Go's `defer`. `f` may return
    /// `()`, or a `Result<(), E>` whose error turns an `Ok` output into
    /// `Err` ([`CleanupOutput`]).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// static CLOSED: AtomicBool = AtomicBool::new(false);
    /// deferral::scope(async |d| {
    ///     d.defer(|| CLOSED.store(true, Ordering::SeqCst));
    ///     assert!(!CLOSED.load(Ordering::SeqCst));
    /// })
    /// .await;
    /// assert!(CLOSED.load(Ordering::SeqCst));
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer<F, R>(&self, f: F) -> K::Reg<Registration<'_, T, F, K>, F>
    where
        F: FnOnce() -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        K::reg(match self.push_sync(Call(f)) {
            Ok(stored) => Ok(self.token(stored)),
            Err(payload) => Err(Full(Payload::<T>::take(payload))),
        })
    }

    /// Defers `f`, which sees how the body ended and may change the output
    /// — Go's deferred closures over named results, and `recover()` (see
    /// [`Exit`]). It runs however the body ended.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::Exit;
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut Exit<Result<u8, &str>>| {
    ///         if let Some(out @ Ok(_)) = exit.output_mut() {
    ///             *out = Err("close failed"); // a failing close is not lost
    ///         }
    ///     });
    ///     Ok(1)
    /// })
    /// .await;
    /// assert_eq!(out, Err("close failed"));
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_with<F, R>(&self, f: F) -> K::Reg<Registration<'_, T, F, K>, F>
    where
        F: FnOnce(&mut Exit<T>) -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        K::reg(match self.push_sync(CallWith(f)) {
            Ok(stored) => Ok(self.token(stored)),
            Err(payload) => Err(Full(Payload::<T>::take(payload))),
        })
    }

    /// Defers a future: after the body it is polled to completion, before
    /// the scope resolves. Its output is reported like a closure's (`()`,
    /// a `Result<(), E>`, or a `FnOnce(&mut Exit<T>)` that changes the
    /// output after async work).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_async(async { println!("flushed after the body") });
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_async<Fut>(&self, fut: Fut) -> K::Reg<Registration<'_, T, Fut, K>, Fut>
    where
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        K::reg(match self.push_async(Task::<_, Fut>::Waiting(Now(fut))) {
            Ok(stored) => Ok(self.token(stored)),
            Err(payload) => Err(Full(Payload::<T>::take(payload))),
        })
    }

    /// Defers `f`, called with how the body ended when cleanup reaches it;
    /// the future it returns is then polled to completion. Also after a
    /// cancellation: the future runs wherever cancelled cleanup goes (see
    /// [`cancel`](crate::cancel)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::Outcome;
    /// let out: Result<(), &str> = deferral::scope(async |d| {
    ///     d.defer_async_with(async |outcome: Outcome| {
    ///         assert_eq!(outcome, Outcome::Err); // notify, roll back..
    ///     });
    ///     Err("failed")
    /// })
    /// .await;
    /// assert!(out.is_err());
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn defer_async_with<F, Fut>(&self, f: F) -> K::Reg<Registration<'_, T, F, K>, F>
    where
        T: Fallible,
        F: FnOnce(Outcome) -> Fut + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        K::reg(match self.push_async(Task::<_, Fut>::Waiting(WithStart(f))) {
            Ok(stored) => {
                // Handed over, it gets the outcome from untyped code.
                self.core.set_classify(classify::<T>);
                Ok(self.token(stored))
            }
            Err(payload) => Err(Full(Payload::<T>::take(payload))),
        })
    }

    /// Moves `value` into the scope and defers `cleanup(value)` until the
    /// body has ended; the body uses the value as `&mut V` through the
    /// returned [`Guard`] for its whole run — `scopeguard::guard`,
    /// scope-wide.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let len = deferral::scope(async |d| {
    ///     let mut buf = d.guard(Vec::new(), |buf| assert_eq!(buf, [1, 2]));
    ///     buf.push(1);
    ///     buf.push(2);
    ///     buf.len()
    /// })
    /// .await;
    /// assert_eq!(len, 2);
    /// # });
    /// ```
    ///
    /// In [`scope_local`](crate::scope_local) the value may be a borrow:
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// struct Adc { on: bool }
    /// let mut adc = Adc { on: true };
    /// deferral::scope_local(async |d| {
    ///     let adc = d.guard(&mut adc, |adc| adc.on = false);
    ///     assert!(adc.on); // `&mut Adc` for the whole body
    /// })
    /// .await;
    /// assert!(!adc.on);
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn guard<V, F, R>(&self, value: V, cleanup: F) -> K::Reg<Guard<'_, T, V, F, K>, (V, F)>
    where
        V: Fits<K>,
        F: FnOnce(V) -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        K::reg(match self.push_sync(GuardCall { value, cleanup }) {
            // SAFETY: the value of the `GuardCall` just stored.
            Ok(stored) => Ok(unsafe {
                let value = &raw mut (*stored.payload).value;
                self.guard_token(stored, value)
            }),
            Err(payload) => Err(Full(Payload::<T>::take(payload))),
        })
    }

    /// Like [`guard`](Self::guard), with a cleanup that also sees how the
    /// body ended: commit or roll back, then close, in one registration.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::Exit;
    /// struct Tx { committed: bool }
    /// let out: Result<u8, &str> = deferral::scope(async |d| {
    ///     let tx = d.guard_with(Tx { committed: false }, |mut tx, exit: &mut Exit<_>| {
    ///         tx.committed = exit.output().is_some_and(Result::is_ok);
    ///         assert!(!tx.committed); // rolled back
    ///     });
    ///     assert!(!tx.committed);
    ///     Err("failed")
    /// })
    /// .await;
    /// assert!(out.is_err());
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn guard_with<V, F, R>(
        &self,
        value: V,
        cleanup: F,
    ) -> K::Reg<Guard<'_, T, V, F, K>, (V, F)>
    where
        V: Fits<K>,
        F: FnOnce(V, &mut Exit<T>) -> R + Fits<K>,
        R: CleanupOutput<T>,
    {
        K::reg(match self.push_sync(GuardCallWith { value, cleanup }) {
            // SAFETY: the value of the `GuardCallWith` just stored.
            Ok(stored) => Ok(unsafe {
                let value = &raw mut (*stored.payload).value;
                self.guard_token(stored, value)
            }),
            Err(payload) => Err(Full(Payload::<T>::take(payload))),
        })
    }

    /// Like [`guard`](Self::guard), with an async cleanup: after the body,
    /// `cleanup(value)` is called and its future polled to completion — the
    /// Rust form of Go's `defer conn.Close()`. A `Result<(), E>` output
    /// turns an `Ok` output into `Err` (converted with `From`).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// struct Conn;
    /// impl Conn {
    ///     async fn close(self) {}
    ///     fn send(&mut self, _: &str) {}
    /// }
    /// deferral::scope(async |d| {
    ///     let mut conn = d.guard_async(Conn, Conn::close);
    ///     conn.send("hello"); // `conn` is `&mut Conn` for the whole body
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    pub fn guard_async<V, F, Fut>(
        &self,
        value: V,
        cleanup: F,
    ) -> K::Reg<Guard<'_, T, V, F, K>, (V, F)>
    where
        V: Fits<K>,
        F: FnOnce(V) -> Fut + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        K::reg(match self.push_async(Task::<_, Fut>::Waiting(GuardStart { value, cleanup })) {
            // SAFETY: the payload is `Waiting(GuardStart)`, untouched
            // until cleanup starts, which outlives every guard.
            Ok(stored) => Ok(unsafe {
                let value = match &mut *stored.payload {
                    Task::Waiting(start) => &raw mut start.value,
                    _ => unreachable!(),
                };
                self.guard_token(stored, value)
            }),
            Err(payload) => Err(Full(Payload::<T>::take(payload))),
        })
    }

    /// The async guard that sees how the body ended — commit on `Ok`, roll
    /// back on an error, a panic or a cancellation, and return the value
    /// (a pooled connection) however it ends, in one registration:
    /// `cleanup(value, outcome)`'s future is polled to completion after the
    /// body. If the cleanup can never start — the scope was cancelled and
    /// nothing runs its cleanup elsewhere (see [`cancel`](crate::cancel)),
    /// or its [condition](Guard::when) does not hold — `fallback(value)`
    /// gets the value instead, synchronously (pass `drop` for none).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] // (without: a slab sized with `ScopeBuilder::capacity`)
    /// # futures::executor::block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use deferral::Outcome;
    /// struct Conn { log: Vec<&'static str> }
    /// impl Conn {
    ///     async fn commit(&mut self) { self.log.push("commit") }
    ///     async fn rollback(&mut self) { self.log.push("rollback") }
    /// }
    /// let pool = Arc::new(Mutex::new(Vec::new()));
    /// let (p1, p2) = (pool.clone(), pool.clone());
    /// let out: Result<(), &str> = deferral::scope(async |d| {
    ///     let mut conn = d.guard_async_with(
    ///         Conn { log: vec![] },
    ///         async move |mut conn: Conn, outcome: Outcome| {
    ///             if outcome.is_ok() { conn.commit().await } else { conn.rollback().await }
    ///             p1.lock().unwrap().push(conn); // back to the pool
    ///         },
    ///         move |conn| p2.lock().unwrap().push(conn), // if it cannot run
    ///     );
    ///     conn.log.push("query");
    ///     Err("failed")
    /// })
    /// .await;
    /// assert!(out.is_err());
    /// assert_eq!(pool.lock().unwrap()[0].log, ["query", "rollback"]);
    /// # });
    /// ```
    #[inline(always)]
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn guard_async_with<V, F, G, Fut>(
        &self,
        value: V,
        cleanup: F,
        fallback: G,
    ) -> K::Reg<Guard<'_, T, V, (F, G), K>, (V, (F, G))>
    where
        T: Fallible,
        V: Fits<K>,
        F: FnOnce(V, Outcome) -> Fut + Fits<K>,
        G: FnOnce(V) + Fits<K>,
        Fut: Future + Fits<K>,
        Fut::Output: CleanupOutput<T>,
    {
        let start = GuardWithStart::new(value, cleanup, fallback);
        K::reg(match self.push_async(Task::<_, Fut>::Waiting(start)) {
            // SAFETY: as in `guard_async`.
            Ok(stored) => Ok(unsafe {
                // Handed over, it gets the outcome from untyped code.
                self.core.set_classify(classify::<T>);
                let value = match &mut *stored.payload {
                    Task::Waiting(start) => GuardWithStart::value_mut(start),
                    _ => unreachable!(),
                };
                self.guard_token(stored, value)
            }),
            Err(payload) => Err(Full(Payload::<T>::take(payload))),
        })
    }

    /// How many registrations are pending (guards included) — JS's
    /// `disposed` turned around, async-safe-defer's `len()`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     assert_eq!(d.len(), 0);
    ///     d.defer(|| ());
    ///     let _g = d.guard(1, drop);
    ///     assert_eq!(d.len(), 2);
    /// })
    /// .await;
    /// # });
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
    /// [`Guard`]) — and returns how many were dropped (after a commit, say).
    /// Their bytes are free again. Tokens of registrations made before are
    /// refused from now on ([`Registration::try_cancel`] returns `None`).
    ///
    /// ```
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
    /// ```
    ///
    /// # Panics
    ///
    /// With `std`, if a destructor panics the others are still dropped, and
    /// the first panic resumes from here.
    pub fn clear(&self) -> usize {
        self.core.clear()
    }

    /// Moves every pending registration that can run outside this scope
    /// into `stack` (which then owns it) and returns how many moved —
    /// Python's `ExitStack.pop_all()`, JS's `DisposableStack.move()`. What
    /// stays: guarded values (move those with [`Guard::move_to`]), cleanup
    /// that reads this scope's output (`defer_with` closures, a
    /// `Result`-returning cleanup; `defer_async_with` reads only the
    /// [`Outcome`] and moves) and, in a stack that cannot grow, what does
    /// not fit: they
    /// move oldest first, so the stack runs them in the scope's order, and
    /// moving stops at the first that does not fit. Tokens of registrations
    /// made before are refused from now on.
    ///
    /// ```
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
    /// ```
    pub fn move_all<const M: usize>(&self, stack: &mut DeferStack<K, M>) -> usize {
        // SAFETY: `move_all` hands over pending, never-polled, portable
        // entries of this flavour, which `accept` takes by copying them.
        self.core.move_all(|live| unsafe { stack.accept(live) })
    }
}

/// A registration that has not run yet. [`when`](Self::when) makes it
/// conditional; [`cancel`](Self::cancel) takes the cleanup back. Dropping
/// the token keeps the registration.
///
/// ```
/// # futures::executor::block_on(async {
/// deferral::scope(async |d| {
///     let token = d.defer(|| unreachable!("cancelled"));
///     let cleanup = token.cancel(); // defused: handed back, never run
///     drop(cleanup);
/// })
/// .await;
/// # });
/// ```
pub struct Registration<'d, T, X, K: Flavour = Sendable> {
    core: &'d Core<K>,
    head: NonNull<Head>,
    /// Takes the payload back as an `X`.
    take: TakeFn,
    /// The core's epoch when registered: if it moved on (`clear`,
    /// `move_all`), the registration may be gone.
    epoch: u64,
    _taken: PhantomData<(X, Out<T>)>,
}

// SAFETY: a token is a claim on one entry of a core plus the right to take
// its `X` out: it may move to another thread when the core is shared
// between threads (`Core<K>: Sync`, which covers locking) and `X` may.
unsafe impl<T, X: Send, K: Flavour> Send for Registration<'_, T, X, K> where Core<K>: Sync {}
// SAFETY: `&Registration` allows nothing but `Debug`.
unsafe impl<T, X: Sync, K: Flavour> Sync for Registration<'_, T, X, K> {}

impl<T, X, K: Flavour> fmt::Debug for Registration<'_, T, X, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

impl<T, X, K: Flavour> Registration<'_, T, X, K> {
    /// Makes the registration run only [`When`] the body ended a certain
    /// way: `When::Err` is Zig's `errdefer`, `When::Ok` a commit,
    /// `When::Failed` a rollback. Does nothing if it was cleared or moved.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::When;
    /// let out: Result<(), &str> = deferral::scope(async |d| {
    ///     d.defer(|| println!("rolled back")).when(When::Err);
    ///     Err("failed")
    /// })
    /// .await;
    /// assert!(out.is_err());
    /// # });
    /// ```
    pub fn when(self, when: When) -> Self
    where
        T: Fallible,
    {
        self.core
            .set_when(self.head, Some(self.epoch), when, classify::<T>);
        self
    }

    /// Moves the registration into `stack`, which then owns it (its
    /// condition is kept). The token comes back if the registration reads
    /// this scope's output (a `_with` closure, a `Result`-returning cleanup:
    /// it cannot run elsewhere), if a fixed stack is full, or if it was
    /// cleared or moved already.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// deferral::scope(async |d| {
    ///     let token = d.defer(|| println!("later"));
    ///     token.move_to(&mut stack).unwrap();
    /// })
    /// .await;
    /// assert_eq!(stack.len(), 1);
    /// # });
    /// ```
    pub fn move_to<const M: usize>(self, stack: &mut DeferStack<K, M>) -> Result<(), Self> {
        let accept = |live| {
            // SAFETY: `move_entry` hands over a pending, never-polled,
            // portable entry of this flavour.
            unsafe { stack.accept(live) }
        };
        if self.core.move_entry(self.head, Some(self.epoch), accept) {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// Defuses the registration and hands back what was deferred (the
    /// closure or future), unrun.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     let token = d.defer(|| unreachable!("cancelled"));
    ///     drop(token.cancel()); // never run
    /// })
    /// .await;
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// If [`Defer::clear`] or [`Defer::move_all`] ran since the
    /// registration: see [`try_cancel`](Self::try_cancel).
    #[track_caller]
    pub fn cancel(self) -> X {
        self.try_cancel()
            .expect("deferral: the registration was cleared or moved (`Defer::clear`, `move_all`)")
    }

    /// Like [`cancel`](Self::cancel), or `None` if [`Defer::clear`] or
    /// [`Defer::move_all`] ran since the registration.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     let token = d.defer(|| unreachable!("cleared"));
    ///     assert_eq!(d.clear(), 1);
    ///     assert!(token.try_cancel().is_none());
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn try_cancel(self) -> Option<X> {
        let mut dst = core::mem::MaybeUninit::<X>::uninit();
        // SAFETY: the token exists only while the body runs (its lifetime
        // is the handle's borrow), so cleanup has not begun; `self` is
        // consumed, so this is its only take; the payload's `Taken` is `X`.
        unsafe {
            self.core
                .take(self.head, Some(self.epoch), self.take, dst.as_mut_ptr().cast())
                .then(|| dst.assume_init())
        }
    }
}

/// A value guarded by its scope: the body uses it through `Deref` /
/// `DerefMut`, and its cleanup `C` runs after the body unless it is
/// [defused](Guard::defuse).
///
/// ```
/// # futures::executor::block_on(async {
/// deferral::scope(async |d| {
///     let guard = d.guard(String::from("tmp"), |_| unreachable!());
///     let value: String = deferral::Guard::defuse(guard); // no cleanup
///     assert_eq!(value, "tmp");
/// })
/// .await;
/// # });
/// ```
pub struct Guard<'d, T, V, C, K: Flavour = Sendable> {
    core: &'d Core<K>,
    head: NonNull<Head>,
    /// Takes the value and cleanup back.
    take: TakeFn,
    value: NonNull<V>,
    _owns: PhantomData<(&'d mut V, C, Out<T>)>,
}

// SAFETY: a `Guard` is a unique reference to `V` (`&mut V`) and the right
// to take `V` and `C` back: `Send` when they are and when taking may
// happen from another thread (`Core<K>: Sync`).
unsafe impl<T, V: Send, C: Send, K: Flavour> Send for Guard<'_, T, V, C, K> where Core<K>: Sync {}
// SAFETY: through `&Guard` only `&V` is reachable: `Sync` when `V` is.
unsafe impl<T, V: Sync, C, K: Flavour> Sync for Guard<'_, T, V, C, K> {}

impl<T, V, C, K: Flavour> Guard<'_, T, V, C, K> {
    /// Makes the cleanup run only [`When`] the body ended a certain way
    /// (scopeguard's `guard_on_success` is `.when(When::NotPanicked)`;
    /// `.when(When::Ok)` is a commit that an `Err` output or a cancellation
    /// skips too); otherwise the value is dropped (or given to its
    /// fallback).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::When;
    /// let out: Result<(), &str> = deferral::scope(async |d| {
    ///     let _tx = d.guard("tx", |_| unreachable!("not committed")).when(When::Ok);
    ///     Err("failed")
    /// })
    /// .await;
    /// assert!(out.is_err());
    /// # });
    /// ```
    pub fn when(self, when: When) -> Self
    where
        T: Fallible,
    {
        self.core.set_when(self.head, None, when, classify::<T>);
        self
    }

    /// Takes the value back: its cleanup will not run (it is dropped).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::Guard;
    /// deferral::scope(async |d| {
    ///     let tmp = d.guard(String::from("tmp"), |_| unreachable!("kept"));
    ///     assert_eq!(Guard::defuse(tmp), "tmp");
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn defuse(guard: Self) -> V {
        let (value, cleanup) = Self::into_parts(guard);
        // Dropped while `value` is a local: if the cleanup's destructor
        // panics, the unwinding drops the value (scopeguard's `into_inner`
        // does the same). Not `into_parts(guard).0`: a temporary dropped
        // after the value moved to the return place leaks it when that
        // drop panics (rust-lang/rust#47949).
        drop(cleanup);
        value
    }

    /// Takes the value and its cleanup back, unrun: the scope forgets
    /// them (async-safe-defer's `ScopeGuard::into_parts`).
    ///
    /// ```
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
    /// ```
    pub fn into_parts(guard: Self) -> (V, C) {
        let mut dst = core::mem::MaybeUninit::<(V, C)>::uninit();
        // SAFETY: as in `Registration::try_cancel`; a guard's payload's
        // `Taken` is `(V, C)`; a guarded entry is never cleared or moved by
        // anyone but its guard, so the take cannot be refused.
        unsafe {
            let taken = guard
                .core
                .take(guard.head, None, guard.take, dst.as_mut_ptr().cast());
            debug_assert!(taken);
            dst.assume_init()
        }
    }

    /// Moves the guarded value and its cleanup into `stack`, which then
    /// owns them (the body stops using the value). The guard comes back if
    /// its cleanup reads this scope's output (`guard_with`, a `Result`
    /// cleanup), or if a fixed stack is full.
    ///
    /// ```
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
    /// ```
    pub fn move_to<const M: usize>(guard: Self, stack: &mut DeferStack<K, M>) -> Result<(), Self> {
        let accept = |live| {
            // SAFETY: as in `Registration::move_to` (consumed on success: no
            // reference to the value survives).
            unsafe { stack.accept(live) }
        };
        if guard.core.move_entry(guard.head, None, accept) {
            Ok(())
        } else {
            Err(guard)
        }
    }

    /// Runs the cleanup now, and hands back what it returns: for a sync
    /// guard its result, for an async one its future (await it). The scope
    /// forgets it (async-safe-defer's `ScopeGuard::run_now`, Python's
    /// `ExitStack.close()` for one resource).
    ///
    /// ```
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
    /// ```
    pub fn run_now<R>(guard: Self) -> R
    where
        C: FnOnce(V) -> R,
    {
        let (value, cleanup) = Self::into_parts(guard);
        cleanup(value)
    }
}

impl<T, V, C, K: Flavour> core::ops::Deref for Guard<'_, T, V, C, K> {
    type Target = V;
    fn deref(&self) -> &V {
        // SAFETY: the value lives in the pending payload until the guard
        // is defused (which consumes it) or the body ends (which outlives
        // it).
        unsafe { self.value.as_ref() }
    }
}

impl<T, V, C, K: Flavour> core::ops::DerefMut for Guard<'_, T, V, C, K> {
    fn deref_mut(&mut self) -> &mut V {
        // SAFETY: as in `deref`; the guard is the value's only accessor.
        unsafe { self.value.as_mut() }
    }
}

impl<T, V: fmt::Debug, C, K: Flavour> fmt::Debug for Guard<'_, T, V, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Guard").field(&**self).finish()
    }
}
