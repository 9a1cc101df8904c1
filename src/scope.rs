//! `DeferScope`: run an async body, then its deferred thunks.
//!
//! [`scope`] is the entry point. Its body receives a [`Defer`] handle to
//! register cleanup; when the body returns (or panics), the scope runs every
//! registered thunk — closures and futures — and only then resolves to the
//! body's output.
//!
//! # Structure
//!
//! `scope` returns a [`DeferScope`] wrapping an `async fn` whose frame owns
//! the [`Slab`] (so the slab is pinned for free) and a [`Defer`] handle
//! pointing at it. That frame calls the body with `&Defer` and awaits a
//! hand-written, poll-driven [`Driver`] that owns the body future and drives
//! the thunks after it. The body future type of an async closure cannot be
//! named on stable Rust, which is why an `async fn` frame, not a struct
//! field, holds it; everything else is ordinary `poll` code.
//!
//! The handle has no lifetime parameter on purpose: a lifetime in the
//! handle's type defeats rustc's `Send` inference for the whole scope future
//! (the auto-trait check generalises it), so thunks are `Send + 'static`.
//! That makes a scope spawnable on multi-threaded runtimes; values a cleanup
//! needs are moved in with [`Defer::guard`].

use core::fmt;
use core::marker::PhantomData;
use core::pin::{Pin, pin};
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;
use pin_project::{pin_project, pinned_drop};

use crate::panic::{self as panicking, Panic};
#[cfg(feature = "alloc")]
use crate::slab::BoxedThunk;
use crate::slab::{Entry, Payload, RawSlab, Slab};
use crate::thunk::{AsyncThunk, AsyncThunkWith, GuardAsync, GuardThunk, Thunk, ThunkWith};

/// Inline slab capacity, in bytes, of a scope made by [`scope`].
///
/// Enough for about eight small closures on a 64-bit target. Choose another
/// with [`ScopeBuilder::capacity`].
pub const DEFAULT_CAPACITY: usize = 512;

/// The order in which a scope runs its deferred thunks after the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Last registered, first run — Go's `defer` and Rust's drop order.
    #[default]
    Lifo,
    /// First registered, first run.
    Fifo,
    /// The sync thunks run first (LIFO), then every async thunk is started
    /// (first polled in LIFO order) and they are polled together, like the
    /// seed's `Promise.all`. With `alloc`, each async thunk gets its own
    /// waker and a wake-up polls only the thunks that were woken; without
    /// it, a wake-up polls every unfinished thunk.
    Concurrent,
}

/// The handle a scope's body uses to register deferred work.
///
/// The body gets `&Defer<T>`, where `T` is the body's output type; the
/// reference cannot escape the body. Every registration returns a token that
/// can cancel (defuse) it before it runs, or, if the inline slab is full and
/// the `alloc` feature is off, [`Full`] with the thunk handed back.
///
/// ```
/// # futures::executor::block_on(async {
/// let out = deferral::scope(async |d| {
///     d.defer(|| println!("second")).unwrap();
///     d.defer(|| println!("first")).unwrap();
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
pub struct Defer<T> {
    /// Points at the slab in the same `async fn` frame; see [`scope`].
    slab: RawSlab<'static>,
    /// Registrations are typed by the output. `fn(T) -> T` keeps `Defer:
    /// Send + Sync` whatever `T` is (no `T` is stored here) and makes it
    /// *invariant* in `T`: were it contravariant (`fn(T)`), a
    /// `&Defer<&'short U>` would coerce to `&Defer<&'static U>` and a
    /// `defer_with` thunk could keep the short reference forever.
    _out: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Defer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Defer").finish_non_exhaustive()
    }
}

impl<T> Defer<T> {
    /// The slab, with its lifetime tied to the borrow of the handle.
    fn slab(&self) -> RawSlab<'_> {
        self.slab
    }

    fn register<P, X>(&self, payload: P) -> Result<Deferred<'_, X>, Full<X>>
    where
        P: Payload<T, Taken = X>,
    {
        match self.slab().push::<T, P>(payload) {
            Ok(entry) => Ok(Deferred {
                slab: self.slab(),
                entry,
                _taken: PhantomData,
            }),
            Err(p) => Err(Full(p.take())),
        }
    }

    /// Defers `f` until the body has returned.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// static CLOSED: AtomicBool = AtomicBool::new(false);
    /// deferral::scope(async |d| {
    ///     d.defer(|| CLOSED.store(true, Ordering::SeqCst)).unwrap();
    ///     assert!(!CLOSED.load(Ordering::SeqCst));
    /// })
    /// .await;
    /// assert!(CLOSED.load(Ordering::SeqCst));
    /// # });
    /// ```
    pub fn defer<F>(&self, f: F) -> Result<Deferred<'_, F>, Full<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        self.register(Thunk(f))
    }

    /// Defers `f`, which sees and may change the body's output — Go's named
    /// results. Not run if there is no output (the body panicked, or the
    /// scope was dropped first).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|out: &mut Result<u8, &str>| {
    ///         if out.is_ok() {
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
    pub fn defer_with<F>(&self, f: F) -> Result<Deferred<'_, F>, Full<F>>
    where
        F: FnOnce(&mut T) + Send + 'static,
    {
        self.register(ThunkWith(f))
    }

    /// Defers a future: it is not polled before the body has returned, and
    /// the scope resolves only after it has finished.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_async(async { /* flush, close, say goodbye */ }).unwrap();
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn defer_async<Fut>(&self, fut: Fut) -> Result<Deferred<'_, Fut>, Full<Fut>>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.register(AsyncThunk(fut))
    }

    /// Defers a future whose output, a `FnOnce(&mut T)`, is then applied to
    /// the body's output (if there is one): async cleanup that can turn `Ok`
    /// into `Err`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_async_with(async {
    ///         let flushed: Result<(), &str> = Err("disk full"); // an async flush
    ///         move |out: &mut Result<(), &str>| {
    ///             if let (Ok(()), Err(e)) = (&*out, flushed) {
    ///                 *out = Err(e);
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
    pub fn defer_async_with<Fut>(&self, fut: Fut) -> Result<Deferred<'_, Fut>, Full<Fut>>
    where
        Fut: Future + Send + 'static,
        Fut::Output: FnOnce(&mut T),
    {
        self.register(AsyncThunkWith(fut))
    }

    /// Moves `value` into the scope, gives the body a [`Guard`] to it for
    /// the whole run, and runs `cleanup(value)` after the body.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let len = deferral::scope(async |d| {
    ///     let mut buf = d.guard(Vec::new(), |buf| assert_eq!(buf, [1, 2])).unwrap();
    ///     buf.push(1);
    ///     buf.push(2);
    ///     buf.len()
    /// })
    /// .await;
    /// assert_eq!(len, 2);
    /// # });
    /// ```
    pub fn guard<V, F>(&self, value: V, cleanup: F) -> Result<Guard<'_, V>, Full<(V, F)>>
    where
        V: Send + 'static,
        F: FnOnce(V) + Send + 'static,
    {
        match self.slab().push::<T, _>(GuardThunk { value, cleanup }) {
            // SAFETY: we just pushed a `GuardThunk<V, F>`; the entry's payload
            // address is its address (wrapped in `InContext` when a context
            // was set, which is `repr(C)` with the payload first).
            Ok(entry) => Ok(unsafe { Guard::new(self.slab(), entry, guard_value::<V, F>) }),
            Err(GuardThunk { value, cleanup }) => Err(Full((value, cleanup))),
        }
    }

    /// Like [`guard`](Self::guard), with an async cleanup: after the body,
    /// `cleanup(value)` is called and its future polled to completion — the
    /// Rust form of Go's `defer conn.Close()`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// struct Conn;
    /// impl Conn {
    ///     async fn close(self) {}
    ///     fn send(&mut self, _: &str) {}
    /// }
    /// deferral::scope(async |d| {
    ///     let mut conn = d.guard_async(Conn, |c| c.close()).unwrap();
    ///     conn.send("hello"); // `conn` is `&mut Conn` for the whole body
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn guard_async<V, F, Fut>(&self, value: V, cleanup: F) -> Result<Guard<'_, V>, Full<(V, F)>>
    where
        V: Send + 'static,
        F: FnOnce(V) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match self
            .slab()
            .push::<T, _>(GuardAsync::Armed { value, cleanup })
        {
            Ok(entry) => {
                // SAFETY: we just pushed a `GuardAsync<V, F, Fut>`, armed; the
                // entry's payload address is its address (see `guard`).
                Ok(unsafe { Guard::new(self.slab(), entry, guard_async_value::<V, F, Fut>) })
            }
            Err(GuardAsync::Armed { value, cleanup }) => Err(Full((value, cleanup))),
            Err(_) => unreachable!(),
        }
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

/// A registration that has not run yet; [`cancel`](Deferred::cancel) it to
/// take the thunk back. Dropping the token keeps the registration.
///
/// ```
/// # futures::executor::block_on(async {
/// deferral::scope(async |d| {
///     let token = d.defer(|| unreachable!("cancelled")).unwrap();
///     let thunk = token.cancel(); // defused: handed back, never run
///     drop(thunk);
/// })
/// .await;
/// # });
/// ```
pub struct Deferred<'d, X> {
    slab: RawSlab<'d>,
    entry: Entry,
    _taken: PhantomData<X>,
}

impl<X> fmt::Debug for Deferred<'_, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred").finish_non_exhaustive()
    }
}

impl<X> Deferred<'_, X> {
    /// Defuses the registration and hands back what was deferred (the
    /// closure or future), unrun.
    pub fn cancel(self) -> X {
        // SAFETY: the token exists only while the body runs (its lifetime
        // is the handle's borrow), so the entry is still armed; `self` is
        // consumed, so this is its only take; the entry's payload `Taken`
        // type is `X` (see `Defer::register`).
        unsafe { self.slab.take_erased::<X>(self.entry) }
    }
}

/// A value guarded by its scope: the body uses it through `Deref` /
/// `DerefMut`, and its cleanup runs after the body unless it is
/// [defused](Guard::defuse).
///
/// ```
/// # futures::executor::block_on(async {
/// deferral::scope(async |d| {
///     let guard = d.guard(String::from("tmp"), |_| unreachable!()).unwrap();
///     let value: String = deferral::Guard::defuse(guard); // no cleanup
///     assert_eq!(value, "tmp");
/// })
/// .await;
/// # });
/// ```
pub struct Guard<'d, V> {
    slab: RawSlab<'d>,
    entry: Entry,
    value: NonNull<V>,
    _owns: PhantomData<&'d mut V>,
}

// SAFETY: a `Guard` is a unique reference to `V` (`&mut V`): `Send` when `V`
// is; defusing goes through the slab lock.
unsafe impl<V: Send> Send for Guard<'_, V> {}
// SAFETY: through `&Guard` only `&V` is reachable: `Sync` when `V` is.
unsafe impl<V: Sync> Sync for Guard<'_, V> {}

impl<'d, V> Guard<'d, V> {
    /// # Safety
    /// `entry` was just pushed on `slab`, with a payload whose `Taken` is
    /// `V` and for which `value_of` returns the guarded value's address.
    unsafe fn new(slab: RawSlab<'d>, entry: Entry, value_of: unsafe fn(*mut u8) -> *mut V) -> Self {
        // SAFETY: as the caller guarantees.
        let value = unsafe { NonNull::new_unchecked(value_of(entry.payload())) };
        Guard {
            slab,
            entry,
            value,
            _owns: PhantomData,
        }
    }

    /// Takes the value back: its cleanup will not run.
    pub fn defuse(guard: Self) -> V {
        // SAFETY: as in `Deferred::cancel`; the payload's `Taken` is `V`.
        unsafe { guard.slab.take_erased::<V>(guard.entry) }
    }
}

impl<V> core::ops::Deref for Guard<'_, V> {
    type Target = V;
    fn deref(&self) -> &V {
        // SAFETY: the value lives in the armed payload until the guard is
        // defused (which consumes it) or the body ends (which outlives it).
        unsafe { self.value.as_ref() }
    }
}

impl<V> core::ops::DerefMut for Guard<'_, V> {
    fn deref_mut(&mut self) -> &mut V {
        // SAFETY: as in `deref`; the guard is the value's only accessor.
        unsafe { self.value.as_mut() }
    }
}

impl<V: fmt::Debug> fmt::Debug for Guard<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Guard").field(&**self).finish()
    }
}

/// The slab was full: the registration is handed back, nothing is lost.
///
/// Only returned without the `alloc` feature; with it a full slab spills to
/// the heap. Grow the slab with [`ScopeBuilder::capacity`].
pub struct Full<X>(X);

impl<X> Full<X> {
    /// What could not be registered (the thunk, or the guarded value and
    /// its cleanup).
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
/// dropped (with `std` the slab spills to the heap, so this never happens
/// unless allocation itself fails).
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

/// Configures a scope: slab capacity, cleanup order, cancel handler.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::{Order, ScopeBuilder};
/// let out = ScopeBuilder::new()
///     .capacity::<1024>()
///     .order(Order::Fifo)
///     .run(async |d| {
///         d.defer(|| println!("runs first")).unwrap();
///         d.defer(|| println!("runs second")).unwrap();
///         "done"
///     })
///     .await;
/// assert_eq!(out, "done");
/// # });
/// ```
#[must_use = "a builder does nothing until `run`"]
pub struct ScopeBuilder<const N: usize = DEFAULT_CAPACITY> {
    order: Order,
    #[cfg(feature = "alloc")]
    on_cancel: Option<alloc::boxed::Box<dyn FnMut(BoxedThunk) + Send>>,
}

impl<const N: usize> fmt::Debug for ScopeBuilder<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeBuilder")
            .field("capacity", &N)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl Default for ScopeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ScopeBuilder {
    /// A builder with [`DEFAULT_CAPACITY`] and [`Order::Lifo`].
    pub fn new() -> Self {
        ScopeBuilder {
            order: Order::Lifo,
            #[cfg(feature = "alloc")]
            on_cancel: None,
        }
    }
}

impl<const N: usize> ScopeBuilder<N> {
    /// Sets the inline slab capacity to `M` bytes.
    pub fn capacity<const M: usize>(self) -> ScopeBuilder<M> {
        ScopeBuilder {
            order: self.order,
            #[cfg(feature = "alloc")]
            on_cancel: self.on_cancel,
        }
    }

    /// Sets the cleanup order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Gives the scope a handler for the async thunks that have not started
    /// when the scope is dropped early (cancelled): they cannot be awaited in
    /// `Drop`, so instead of dropping them unpolled the scope hands each one
    /// over, boxed, for example to spawn it on a runtime.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// let orphans = Arc::new(Mutex::new(Vec::new()));
    /// let sink = orphans.clone();
    /// let scope = deferral::ScopeBuilder::new()
    ///     .on_cancel(move |thunk| sink.lock().unwrap().push(thunk))
    ///     .run(async |d| {
    ///         d.defer_async(async { println!("goodbye") }).unwrap();
    ///         std::future::pending::<()>().await
    ///     });
    /// let mut scope = Box::pin(scope);
    /// let _ = futures::poll!(scope.as_mut()); // the body is now pending
    /// drop(scope); // cancelled: the async thunk is handed over
    /// let thunk = orphans.lock().unwrap().pop().unwrap();
    /// thunk.await; // prints "goodbye"
    /// # });
    /// ```
    #[cfg(feature = "alloc")]
    pub fn on_cancel(mut self, handler: impl FnMut(BoxedThunk) + Send + 'static) -> Self {
        self.on_cancel = Some(alloc::boxed::Box::new(handler));
        self
    }

    /// Runs `body` with a [`Defer`] handle, then its deferred thunks.
    pub fn run<T, F>(self, body: F) -> DeferScope<impl Future<Output = T>>
    where
        F: for<'d> AsyncFnOnce(&'d Defer<T>) -> T,
    {
        DeferScope {
            inner: run_scope::<N, T, F>(self.into_config(), body),
            done: false,
        }
    }

    fn into_config(self) -> Config {
        Config {
            order: self.order,
            #[cfg(feature = "alloc")]
            on_cancel: self.on_cancel,
        }
    }
}

struct Config {
    order: Order,
    #[cfg(feature = "alloc")]
    on_cancel: Option<alloc::boxed::Box<dyn FnMut(BoxedThunk) + Send>>,
}

/// Runs `body` with a [`Defer`] handle; when it returns, runs the deferred
/// thunks (LIFO), then resolves to the body's output.
///
/// ```
/// # futures::executor::block_on(async {
/// use std::sync::{Arc, Mutex};
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let (a, b) = (log.clone(), log.clone());
/// let out = deferral::scope(async |d| {
///     d.defer(move || a.lock().unwrap().push("close file")).unwrap();
///     d.defer(move || b.lock().unwrap().push("unlock")).unwrap();
///     "body result"
/// })
/// .await;
/// assert_eq!(out, "body result");
/// assert_eq!(*log.lock().unwrap(), ["unlock", "close file"]);
/// # });
/// ```
///
/// # Size
///
/// On x86_64 an empty scope adds 208 bytes (with `std`; 128 with no
/// features) to its body's future, plus the `N` bytes of its slab
/// ([`DEFAULT_CAPACITY`] here). A registration takes a 40-byte header plus
/// the thunk, aligned. `tests/scope_capacity.rs` prints the figures.
///
/// # Panics and cancellation
///
/// With `std`, a panic in the body still runs every thunk (async ones are
/// polled to completion), then the panic resumes from `poll`; a panic in a
/// thunk does not stop the others, and the first panic resumes after all
/// ran. If the scope is dropped before it finished, the body is dropped
/// first, then the remaining sync thunks run (LIFO) and the async ones are
/// dropped unpolled (or given to [`ScopeBuilder::on_cancel`]). A thunk that
/// panics while the scope is being dropped *during unwinding* aborts the
/// process (a double panic), as any panicking destructor would.
pub fn scope<T, F>(body: F) -> DeferScope<impl Future<Output = T>>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T>) -> T,
{
    ScopeBuilder::new().run(body)
}

async fn run_scope<const N: usize, T, F>(config: Config, body: F) -> T
where
    F: for<'d> AsyncFnOnce(&'d Defer<T>) -> T,
{
    // Pinned in this frame: headers may point into the slab from now on.
    let slab = pin!(Slab::<N>::new());
    let raw = slab.as_ref().raw();
    let handle = Defer {
        // SAFETY: the handle lives in this frame, is declared after the slab
        // (so dropped before it), and is only ever lent out as `&Defer`,
        // whose lifetime cannot outlast this frame. Thunks are `'static`,
        // so none can keep the handle past the body.
        slab: unsafe { raw.detach() },
        _out: PhantomData,
    };
    // Calling the body may already run user code (a closure returning a
    // future runs its synchronous prefix now): give it the same treatment
    // as a poll, the ambient scope and panic catching.
    let body = panicking::catch(|| crate::ambient::enter(raw, || body(&handle)));
    Driver::new(body, raw, config).await
}

/// The hand-written state machine: polls the body, then the thunks.
#[pin_project(PinnedDrop)]
struct Driver<'s, B, T> {
    #[pin]
    body: Body<B>,
    slab: RawSlab<'s>,
    config: Config,
    /// The body's output, once it returned.
    out: Option<T>,
    /// The first panic (body or thunk), resumed after cleanup.
    panic: Option<Panic>,
    /// Cleanup has begun (the body is gone).
    cleaning: bool,
    /// Concurrent mode: every armed thunk has been started.
    started_all: bool,
    /// `poll` returned `Ready`: the body is gone and every thunk ran, so
    /// `Drop` has nothing left to do.
    finished: bool,
    /// Boxed: only concurrent cleanup needs it, and it allocates anyway.
    #[cfg(feature = "alloc")]
    wake_set: Option<alloc::boxed::Box<crate::wake_set::WakeSet>>,
}

#[pin_project(project = BodyProj, project_replace = BodyOwn)]
enum Body<B> {
    Running(#[pin] B),
    Gone,
}

impl<'s, B: Future<Output = T>, T> Driver<'s, B, T> {
    /// `body` is `Err` if creating the body future panicked: cleanup then
    /// starts at once, and the panic resumes after it.
    fn new(body: Result<B, Panic>, slab: RawSlab<'s>, config: Config) -> Self {
        let (body, panic) = match body {
            Ok(body) => (Body::Running(body), None),
            Err(panic) => (Body::Gone, Some(panic)),
        };
        Driver {
            cleaning: panic.is_some(),
            body,
            slab,
            config,
            out: None,
            panic,
            started_all: false,
            finished: false,
            #[cfg(feature = "alloc")]
            wake_set: None,
        }
    }
}

impl<B: Future<Output = T>, T> Future for Driver<'_, B, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        // Through the projection, never `Deref`: a `&Driver` would be a
        // shared reference to the pinned body too, which invalidates the
        // body's pointers into itself (Stacked Borrows UB).
        if !*self.as_mut().project().cleaning {
            let mut this = self.as_mut().project();
            let BodyProj::Running(body) = this.body.as_mut().project() else {
                unreachable!("body gone before cleanup")
            };
            let slab = *this.slab;
            let polled = panicking::catch(|| crate::ambient::enter(slab, || body.poll(cx)));
            match polled {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(out)) => *this.out = Some(out),
                Err(panic) => *this.panic = Some(panic),
            }
            // Drop the body before any thunk runs: it may hold guards.
            if let Err(panic) = panicking::catch(|| {
                this.body.project_replace(Body::Gone);
            }) {
                this.panic.get_or_insert(panic);
            }
            *this.cleaning = true;
        }
        // Thunks registered in a context run in it (they carry it, see
        // `RawSlab::push`); the others were registered in the empty one.
        core::task::ready!(crate::context::isolated(|| self.as_mut().poll_cleanup(cx)));
        let this = self.project();
        if let Some(panic) = this.panic.take() {
            panicking::resume(panic);
        }
        *this.finished = true;
        Poll::Ready(this.out.take().expect("deferral: scope output taken twice"))
    }
}

impl<B, T> Driver<'_, B, T> {
    fn out_ptr(out: &mut Option<T>) -> *mut () {
        out.as_mut()
            .map_or(ptr::null_mut(), |o| ptr::from_mut(o).cast())
    }

    /// Runs a sync entry the caller unlinked, recording a panic.
    fn run_sync(entry: Entry, out: *mut (), panic: &mut Option<Panic>) {
        // SAFETY: the caller unlinked the entry (owns it); it is sync; `out`
        // is null or points to the scope's `T`.
        if let Err(p) = panicking::catch(|| unsafe { entry.run(out) }) {
            panic.get_or_insert(p);
        }
    }

    /// Polls a running entry; on completion or panic, unlinks and frees it.
    fn poll_running(
        slab: RawSlab<'_>,
        entry: Entry,
        cx: &mut Context<'_>,
        out: *mut (),
        panic: &mut Option<Panic>,
    ) -> Poll<()> {
        // SAFETY: cleanup has the slab to itself; the entry is on the running
        // list with a live, pinned async payload.
        match panicking::catch(|| unsafe { entry.poll(cx, out) }) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                // SAFETY: finished: its payload has completed; unlink, then
                // drop what is left of it (a completed future) and free it.
                unsafe {
                    slab.unpark_running(entry);
                    Self::drop_entry(entry, panic);
                }
                Poll::Ready(())
            }
            Err(p) => {
                panic.get_or_insert(p);
                // SAFETY: as above: a future whose poll panicked is dropped.
                unsafe {
                    slab.unpark_running(entry);
                    Self::drop_entry(entry, panic);
                }
                Poll::Ready(())
            }
        }
    }

    /// # Safety
    /// The caller owns the unlinked entry and its payload is initialised.
    unsafe fn drop_entry(entry: Entry, panic: &mut Option<Panic>) {
        // SAFETY: as the caller guarantees.
        if let Err(p) = panicking::catch(|| unsafe { entry.drop_payload() }) {
            panic.get_or_insert(p);
        }
    }

    fn poll_cleanup(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let slab = *this.slab;
        let out = Self::out_ptr(this.out);
        let panic = this.panic;
        match this.config.order {
            Order::Lifo | Order::Fifo => {
                let lifo = this.config.order == Order::Lifo;
                loop {
                    // At most one async entry runs at a time in these orders.
                    // SAFETY: cleanup has the slab to itself.
                    if let Some(entry) = unsafe { slab.running() }.next() {
                        core::task::ready!(Self::poll_running(slab, entry, cx, out, panic));
                        continue;
                    }
                    // SAFETY: as above.
                    let Some(entry) = (unsafe { slab.pop_armed(lifo) }) else {
                        return Poll::Ready(());
                    };
                    if entry.is_async() {
                        // SAFETY: we own the unlinked entry.
                        unsafe { slab.park_running(entry) };
                    } else {
                        Self::run_sync(entry, out, panic);
                    }
                }
            }
            Order::Concurrent => {
                #[cfg(feature = "alloc")]
                let wake_set = this.wake_set;
                if !*this.started_all {
                    // SAFETY: cleanup has the slab to itself.
                    while let Some(entry) = unsafe { slab.pop_armed(true) } {
                        if entry.is_async() {
                            // SAFETY: we own the unlinked entry.
                            unsafe { slab.park_running(entry) };
                        } else {
                            Self::run_sync(entry, out, panic);
                        }
                    }
                    *this.started_all = true;
                    #[cfg(feature = "alloc")]
                    {
                        // SAFETY: as above.
                        *wake_set = Some(alloc::boxed::Box::new(crate::wake_set::WakeSet::new(
                            unsafe { slab.running() },
                        )));
                    }
                }
                #[cfg(feature = "alloc")]
                if let Some(set) = wake_set {
                    return set.poll(cx, |entry, cx| {
                        Self::poll_running(slab, entry, cx, out, panic)
                    });
                }
                // Without per-thunk wakers: poll every unfinished thunk.
                // SAFETY: as above; `running` snapshots each successor before
                // we may unlink the entry it yielded.
                for entry in unsafe { slab.running() } {
                    let _ = Self::poll_running(slab, entry, cx, out, panic);
                }
                // SAFETY: as above.
                if unsafe { slab.is_empty() } {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

#[pinned_drop]
impl<B, T> PinnedDrop for Driver<'_, B, T> {
    fn drop(self: Pin<&mut Self>) {
        let mut this = self.project();
        if *this.finished {
            // The common case: cleanup completed in `poll`.
            return;
        }
        // Cancelled (or unwinding out of `poll` without `std`): the body
        // goes first, then what is left of the cleanup.
        let mut panic = this.panic.take();
        if let Err(p) = panicking::catch(|| {
            this.body.as_mut().project_replace(Body::Gone);
        }) {
            panic.get_or_insert(p);
        }
        #[cfg(feature = "alloc")]
        drop(this.wake_set.take());
        let slab = *this.slab;
        // Started async thunks cannot finish now: drop them.
        // SAFETY: the body is gone, so we have the slab to ourselves; each
        // running entry is unlinked before its payload is dropped.
        while let Some(entry) = unsafe { slab.running() }.next() {
            // SAFETY: as above.
            unsafe {
                slab.unpark_running(entry);
                Self::drop_entry(entry, &mut panic);
            }
        }
        // The rest, LIFO: sync thunks run (without the output: it is being
        // discarded), async ones are dropped unpolled or handed over.
        // SAFETY: as above.
        while let Some(entry) = unsafe { slab.pop_armed(true) } {
            if !entry.is_async() {
                crate::context::isolated(|| Self::run_sync(entry, ptr::null_mut(), &mut panic));
                continue;
            }
            #[cfg(feature = "alloc")]
            if let Some(handler) = this.config.on_cancel.as_mut() {
                // SAFETY: we own the unlinked, never-polled async entry.
                match panicking::catch(|| unsafe { entry.into_boxed() }) {
                    Ok(Some(thunk)) => {
                        if let Err(p) = panicking::catch(move || handler(thunk)) {
                            panic.get_or_insert(p);
                        }
                    }
                    Ok(None) => {}
                    Err(p) => {
                        panic.get_or_insert(p);
                    }
                }
                continue;
            }
            // SAFETY: we own the unlinked entry.
            unsafe { Self::drop_entry(entry, &mut panic) };
        }
        if let Some(p) = panic {
            panicking::resume_unless_panicking(p);
        }
    }
}

/// The future returned by [`scope`] and [`ScopeBuilder::run`]: resolves to
/// the body's output after every deferred thunk has finished.
#[pin_project]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct DeferScope<Fut> {
    #[pin]
    inner: Fut,
    done: bool,
}

impl<Fut> fmt::Debug for DeferScope<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferScope")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<Fut: Future> Future for DeferScope<Fut> {
    type Output = Fut::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fut::Output> {
        let this = self.project();
        assert!(!*this.done, "`DeferScope` polled after completion");
        // Counted as done while polling, so a poll that panics (resuming a
        // body's panic) leaves a terminated future, not a resumable one.
        *this.done = true;
        let polled = this.inner.poll(cx);
        if polled.is_pending() {
            *this.done = false;
        }
        polled
    }
}

impl<Fut: Future> FusedFuture for DeferScope<Fut> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}
