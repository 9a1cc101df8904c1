//! `DeferScope`: run an async body, then its deferred thunks.
//!
//! [`scope`] and [`scope_local`] are the entry points. The body receives a
//! [`Defer`] handle to register cleanup; when the body returns (or panics),
//! the scope runs every registered thunk — closures and futures — and only
//! then resolves to the body's output.
//!
//! # How it works
//!
//! [`DeferScope`] is one hand-written future that owns, inline: the slab
//! (whose core *is* the handle the body borrows), the body closure and then
//! the body future in the same bytes, how the body ended, and the cleanup
//! state. Its phases are `Init` (the closure, not called yet) → `Body` (the
//! future, polled) → `Cleanup` → `Done`, recorded in a one-byte tag so that
//! the body can be dropped *in place* after the tag moved on (a panicking
//! destructor can then never be run twice).
//!
//! The body future borrows the handle, which lives in the scope itself: a
//! self-reference, so the scope is `!Unpin` and never moves once polled.
//! Its type cannot be named on stable Rust (`AsyncFnOnce::CallOnceFuture`
//! is unstable), so [`ScopeBody`] names it: it is implemented for every
//! closure `for<'d> FnOnce(&'d Defer<..>) -> Fut`, which every
//! `async |d| ..` closure is. The scope stores the future at the lifetime
//! `'s` of its own type and hands the body a `&'s Defer` made from a
//! pointer to itself. That is sound for the same reason a borrow in an
//! `async fn`'s frame is: the body was type-checked for *every* `'d`, so it
//! cannot keep the handle beyond the call that lent it, and the scope drops
//! the body future before anything it borrows.
//!
//! Nothing in the scope is touched through a shared reference to the whole
//! scope (which would assert that the pinned body is not being mutated
//! through its own pointers — undefined behaviour for a self-borrowing
//! future under Stacked Borrows): every access is a raw-pointer projection
//! of one field.
//!
//! A scope with nothing registered pays for no cleanup machinery: after the
//! body it finds the slab empty and returns.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::{ManuallyDrop, MaybeUninit};
use core::pin::Pin;
use core::ptr;
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;

use crate::cleanup::{Cleaner, Order};
use crate::defer::{Defer, Local, Sendable};
use crate::exit::Exit;
use crate::panic as panicking;
use crate::slab::{Flavour, Slab};

/// Inline slab capacity, in bytes, of a scope made by [`scope`] or
/// [`scope_local`].
///
/// Enough for a dozen small closures on a 64-bit target (each takes a
/// two-word header plus its captures). Choose another with
/// [`ScopeBuilder::capacity`].
///
/// ```
/// assert_eq!(deferral::DEFAULT_CAPACITY, 256);
/// ```
pub const DEFAULT_CAPACITY: usize = 256;

/// The body of a scope: a closure called with the scope's handle that
/// returns the future to run. Implemented for every `async |d| ..` closure
/// (and every `FnOnce(&Defer<T, K>) -> impl Future<Output = T>` for all
/// lifetimes of the borrow); you never implement it.
///
/// `Wf` is an implementation detail: it bounds the lifetime `'d` to those
/// for which `&'d Defer<T, K>` makes sense, so that bodies may return
/// borrowed outputs.
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// use deferral::{Defer, ScopeBody};
/// fn is_body<F: for<'d> ScopeBody<'d, u8, deferral::Sendable, &'d (u8, deferral::Sendable)>>(_: F) {}
/// is_body(async |d: &Defer<u8>| {
///     d.defer(|| ());
///     1
/// });
/// # }
/// ```
pub trait ScopeBody<'d, T, K: Flavour, Wf = &'d (T, K)> {
    /// The body's future.
    type Fut: Future<Output = T>;

    /// Calls the body with the handle (the scope does; you never need to).
    ///
    /// ```
    /// use deferral::{Defer, ScopeBody};
    /// fn start<'d>(body: impl ScopeBody<'d, u8, deferral::Sendable>, d: &'d Defer<u8>) -> impl Future<Output = u8> {
    ///     body.call(d)
    /// }
    /// # futures::executor::block_on(deferral::scope(async |d| start(async |_: &Defer<u8>| 1, d).await));
    /// ```
    fn call(self, handle: &'d Defer<T, K>) -> Self::Fut;
}

impl<'d, T, K, F, Fut> ScopeBody<'d, T, K, &'d (T, K)> for F
where
    K: Flavour,
    F: FnOnce(&'d Defer<T, K>) -> Fut,
    Fut: Future<Output = T>,
{
    type Fut = Fut;

    #[inline(always)]
    fn call(self, handle: &'d Defer<T, K>) -> Fut {
        self(handle)
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
///         d.try_defer(|| println!("runs first")).unwrap();
///         d.try_defer(|| println!("runs second")).unwrap();
///         "done"
///     })
///     .await;
/// assert_eq!(out, "done");
/// # });
/// ```
#[must_use = "a builder does nothing until `run`"]
pub struct ScopeBuilder<const N: usize = DEFAULT_CAPACITY, H = NoHandler> {
    order: Order,
    handler: H,
}

/// The cancel handler of a [`ScopeBuilder`] that has none (the default).
///
/// ```
/// let _builder: deferral::ScopeBuilder<256, deferral::NoHandler> = deferral::ScopeBuilder::new();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHandler;

/// What [`ScopeBuilder::on_cancel`] stores.
#[cfg(feature = "alloc")]
type CancelHandler = alloc::boxed::Box<dyn FnMut(crate::slab::BoxedThunk) + Send>;

/// The cancel handler of a [`ScopeBuilder`] configured with
/// [`on_cancel`](ScopeBuilder::on_cancel) (`alloc`): such a builder can only
/// [`run`](ScopeBuilder::run) a `Send` scope.
///
/// ```
/// let _builder = deferral::ScopeBuilder::new().on_cancel(drop);
/// ```
#[cfg(feature = "alloc")]
pub struct OnCancel(CancelHandler);

#[cfg(feature = "alloc")]
impl fmt::Debug for OnCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnCancel(..)")
    }
}

impl<const N: usize, H> fmt::Debug for ScopeBuilder<N, H> {
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
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::ScopeBuilder::new().run(async |_| 1).await;
    /// assert_eq!(out, 1);
    /// # });
    /// ```
    pub const fn new() -> Self {
        ScopeBuilder {
            order: Order::Lifo,
            handler: NoHandler,
        }
    }
}

impl<const N: usize, H> ScopeBuilder<N, H> {
    /// Sets the inline slab capacity to `M` bytes.
    ///
    /// ```
    /// let builder = deferral::ScopeBuilder::new().capacity::<64>();
    /// # drop(builder);
    /// ```
    pub fn capacity<const M: usize>(self) -> ScopeBuilder<M, H> {
        ScopeBuilder {
            order: self.order,
            handler: self.handler,
        }
    }

    /// Sets the cleanup order.
    ///
    /// ```
    /// let builder = deferral::ScopeBuilder::new().order(deferral::Order::Concurrent);
    /// # drop(builder);
    /// ```
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Gives the scope a handler for the async thunks that have not started
    /// when the scope is dropped early (cancelled): they cannot be awaited in
    /// `Drop`, so instead of dropping them unpolled the scope hands each one
    /// over, boxed, for example to spawn it on a runtime. Only for
    /// [`run`](Self::run) (`Send + 'static` thunks).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// let orphans = Arc::new(Mutex::new(Vec::new()));
    /// let sink = orphans.clone();
    /// let scope = deferral::ScopeBuilder::new()
    ///     .on_cancel(move |thunk| sink.lock().unwrap().push(thunk))
    ///     .run(async |d| {
    ///         d.defer_async(async { println!("goodbye") });
    ///         std::future::pending::<()>().await
    ///     });
    /// let mut scope = Box::pin(scope);
    /// let _ = futures::poll!(scope.as_mut()); // the body is now pending
    /// drop(scope); // cancelled: the async thunk is handed over
    /// let thunk = orphans.lock().unwrap().pop().unwrap();
    /// thunk.await; // prints "goodbye"
    /// # });
    /// # }
    /// ```
    #[cfg(feature = "alloc")]
    pub fn on_cancel(
        self,
        handler: impl FnMut(crate::slab::BoxedThunk) + Send + 'static,
    ) -> ScopeBuilder<N, OnCancel> {
        ScopeBuilder {
            order: self.order,
            handler: OnCancel(alloc::boxed::Box::new(handler)),
        }
    }
}

/// What a builder's handler becomes in the scope: [`NoHandler`], or (with
/// `alloc`) [`OnCancel`](crate::OnCancel). Sealed; named only in bounds.
///
/// ```
/// use deferral::{IntoCancelHandler, ScopeBuilder};
/// fn build<const N: usize, H: IntoCancelHandler>(b: ScopeBuilder<N, H>) -> ScopeBuilder<N, H> {
///     b.order(deferral::Order::Fifo)
/// }
/// let _ = build(ScopeBuilder::new());
/// ```
pub trait IntoCancelHandler: crate::slab::sealed::Sealed {
    #[doc(hidden)]
    #[cfg(feature = "alloc")]
    fn into_handler(self) -> Option<CancelHandler>;
    #[doc(hidden)]
    #[cfg(not(feature = "alloc"))]
    fn into_handler(self) -> Option<core::convert::Infallible>;
}

impl crate::slab::sealed::Sealed for NoHandler {}
impl IntoCancelHandler for NoHandler {
    #[cfg(feature = "alloc")]
    fn into_handler(self) -> Option<CancelHandler> {
        None
    }
    #[cfg(not(feature = "alloc"))]
    fn into_handler(self) -> Option<core::convert::Infallible> {
        None
    }
}

#[cfg(feature = "alloc")]
impl crate::slab::sealed::Sealed for OnCancel {}
#[cfg(feature = "alloc")]
impl IntoCancelHandler for OnCancel {
    fn into_handler(self) -> Option<CancelHandler> {
        Some(self.0)
    }
}

impl<const N: usize, H: IntoCancelHandler> ScopeBuilder<N, H> {
    /// Runs `body` with a [`Defer`] handle, then its deferred thunks: like
    /// [`scope`], configured.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let out = deferral::ScopeBuilder::new()
    ///     .run(async |d| {
    ///         d.defer(|| println!("cleanup"));
    ///         "out"
    ///     })
    ///     .await;
    /// assert_eq!(out, "out");
    /// # });
    /// # }
    /// ```
    pub fn run<'s, T, F>(self, body: F) -> DeferScope<'s, T, F, Sendable, N>
    where
        F: for<'d> AsyncFnOnce(&'d Defer<T>) -> T,
        F: for<'d> ScopeBody<'d, T, Sendable, &'d (T, Sendable)>,
    {
        DeferScope::new(body, self.order, self.handler.into_handler())
    }
}

impl<const N: usize> ScopeBuilder<N, NoHandler> {
    /// Runs `body` like [`scope_local`], configured: cleanup may borrow and
    /// need not be `Send`.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let mut log = Vec::new();
    /// deferral::ScopeBuilder::new()
    ///     .order(deferral::Order::Fifo)
    ///     .run_local(async |d| {
    ///         d.defer(|| log.push("first"));
    ///     })
    ///     .await;
    /// assert_eq!(log, ["first"]);
    /// # });
    /// # }
    /// ```
    pub fn run_local<'s, 'env, T, F>(self, body: F) -> DeferScope<'s, T, F, Local<'env>, N>
    where
        F: for<'d> AsyncFnOnce(&'d Defer<T, Local<'env>>) -> T,
        F: for<'d> ScopeBody<'d, T, Local<'env>, &'d (T, Local<'env>)>,
    {
        DeferScope::new(body, self.order, None)
    }
}

/// Runs `body` with a [`Defer`] handle; when it returns, runs the deferred
/// thunks (LIFO), then resolves to the body's output.
///
/// Cleanup is `Send + 'static`, so the scope can be spawned on a
/// multi-threaded runtime; for cleanup that borrows or is not `Send`, use
/// [`scope_local`].
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// use std::sync::{Arc, Mutex};
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let (a, b) = (log.clone(), log.clone());
/// let out = deferral::scope(async |d| {
///     d.defer(move || a.lock().unwrap().push("close file"));
///     d.defer(move || b.lock().unwrap().push("unlock"));
///     "body result"
/// })
/// .await;
/// assert_eq!(out, "body result");
/// assert_eq!(*log.lock().unwrap(), ["unlock", "close file"]);
/// # });
/// # }
/// ```
///
/// A zero-argument `async fn` that registers through the ambient
/// [`defer`](crate::defer) runs in [`scope_fn`] (`scope(defer_test)` does
/// not compile: a body takes the handle).
///
/// # Panics and cancellation
///
/// With `std`, a panic in the body still runs every thunk (async ones are
/// polled to completion), then the panic resumes from `poll`; a panic in a
/// thunk does not stop the others, and the first panic resumes after all
/// ran. If the scope is dropped before it finished, the body is dropped
/// first, then the remaining sync thunks run and the async ones are dropped
/// unpolled (or given to [`ScopeBuilder::on_cancel`]). A thunk that panics
/// while the scope is being dropped *during unwinding* aborts the process
/// (a double panic), as any panicking destructor would.
pub fn scope<'s, T, F>(body: F) -> DeferScope<'s, T, F>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T>) -> T,
    F: for<'d> ScopeBody<'d, T, Sendable, &'d (T, Sendable)>,
{
    DeferScope::new(body, Order::Lifo, None)
}

/// Like [`scope`], for cleanup that borrows or is not `Send`: thunks and
/// guarded values may borrow anything that outlives the call — a `&mut`
/// peripheral, a `Vec` on the caller's stack — and may be `!Send`
/// (`Rc<RefCell<..>>`). The scope future is then `!Send`: await it, or run
/// it on a thread-mode, current-thread or local executor.
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// struct Adc { powered: bool }
/// impl Adc {
///     fn power_off(&mut self) { self.powered = false; }
///     async fn read(&mut self) -> u16 { 512 }
/// }
///
/// let mut adc = Adc { powered: true };
/// let mut log = Vec::new();
/// let sample = deferral::scope_local(async |d| {
///     let mut adc = d.guard(&mut adc, |adc| adc.power_off());
///     d.defer(|| log.push("sampled")); // Go-style: borrow and push
///     adc.read().await
/// })
/// .await;
/// assert_eq!(sample, 512);
/// assert!(!adc.powered);
/// assert_eq!(log, ["sampled"]);
/// # });
/// # }
/// ```
pub fn scope_local<'s, 'env, T, F>(body: F) -> DeferScope<'s, T, F, Local<'env>>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T, Local<'env>>) -> T,
    F: for<'d> ScopeBody<'d, T, Local<'env>, &'d (T, Local<'env>)>,
{
    DeferScope::new(body, Order::Lifo, None)
}

/// A scope around a zero-argument `async fn` (or closure returning a
/// future) that registers its cleanup through the ambient
/// [`defer`](crate::defer) — the seed's `useDefer(deferTest)`, which
/// `scope(defer_test)` cannot be (a scope's body takes the handle).
///
/// ```
/// # futures::executor::block_on(async {
/// async fn defer_test() -> i32 {
///     deferral::defer(|| println!("defer 1"));
///     println!("not defer");
///     1
/// }
/// assert_eq!(deferral::scope_fn(defer_test).await, 1);
/// // With arguments: a closure.
/// async fn add(a: i32, b: i32) -> i32 {
///     deferral::defer(|| println!("added"));
///     a + b
/// }
/// assert_eq!(deferral::scope_fn(|| add(2, 3)).await, 5);
/// # });
/// ```
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub fn scope_fn<'s, T, F, Fut>(body: F) -> DeferScope<'s, T, FnBody<F>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    DeferScope::new(FnBody(body), Order::Lifo, None)
}

/// The body of [`scope_fn`]: a function that takes no handle.
///
/// ```
/// use deferral::{DeferScope, FnBody};
/// fn named<F, Fut>(f: F) -> DeferScope<'static, u8, FnBody<F>>
/// where
///     F: FnOnce() -> Fut,
///     Fut: Future<Output = u8>,
/// {
///     deferral::scope_fn(f)
/// }
/// assert_eq!(futures::executor::block_on(named(async || 7)), 7);
/// ```
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug)]
pub struct FnBody<F>(F);

#[cfg(feature = "std")]
impl<'d, T, F, Fut> ScopeBody<'d, T, Sendable, &'d (T, Sendable)> for FnBody<F>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    type Fut = Fut;

    #[inline(always)]
    fn call(self, _handle: &'d Defer<T, Sendable>) -> Fut {
        (self.0)()
    }
}

/// Where a scope is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd)]
enum Phase {
    /// The body closure waits for the first poll.
    Init,
    /// The body future is being polled.
    Body,
    /// The body is gone; cleanup has not started.
    Ended,
    /// Cleanup runs (the cleaner is initialised).
    Cleaning,
    Done,
}

/// The body closure, then its future, in the same bytes.
union BodyCell<F, Fut> {
    closure: ManuallyDrop<F>,
    future: ManuallyDrop<Fut>,
}

/// The future returned by [`scope`], [`scope_local`] and [`ScopeBuilder`]:
/// resolves to the body's output after every deferred thunk has finished.
///
/// `'s` is the lifetime the body's future is stored at (see the module
/// docs of `scope`); `K` the flavour ([`Sendable`] or [`Local`]); `N` the
/// inline slab capacity in bytes.
///
/// # Size
///
/// Besides its body's future and the `N` bytes of its slab, a scope holds
/// 144 bytes on a 64-bit target with `std` (128 with `alloc` only, 96
/// with no features; `tests/scope_capacity.rs` prints them). A
/// registration takes a two-word header plus the thunk, rounded up to a
/// word. Moving a scope moves its inline bytes: pin it where it lives
/// (`.await` does).
///
/// ```
/// # futures::executor::block_on(async {
/// use futures::future::FusedFuture;
/// let mut scope = Box::pin(deferral::scope(async |_| 7));
/// assert!(!scope.is_terminated());
/// assert_eq!(scope.as_mut().await, 7);
/// assert!(scope.is_terminated());
/// # });
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct DeferScope<'s, T, F, K = Sendable, const N: usize = DEFAULT_CAPACITY>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    slab: Slab<K, N>,
    phase: Phase,
    /// In an `UnsafeCell`: a `&DeferScope` (`is_terminated`, `Debug`) must
    /// not claim the self-borrowing body is frozen.
    body: UnsafeCell<BodyCell<F, F::Fut>>,
    /// How the body ended: its output until it is handed out, the first
    /// panic until it is resumed. `ManuallyDrop`: empty once `Done`, taken
    /// by `cancel` otherwise, so a finished scope's drop glue has nothing
    /// to check.
    exit: ManuallyDrop<Exit<T>>,
    order: Order,
    /// The cleanup loop of `order` (see `Order::driver`).
    drive: crate::cleanup::Drive,
    /// Initialised when cleanup starts (`Phase::Cleaning`); finished or
    /// cancelled, it holds nothing to drop.
    cleaner: MaybeUninit<Cleaner>,
    #[cfg(feature = "alloc")]
    on_cancel: Option<CancelHandler>,
    _pinned: PhantomPinned,
    _life: PhantomData<&'s ()>,
}

// SAFETY: nothing of the body, output or slab is reachable through
// `&DeferScope` (only `is_terminated` and `Debug`, which read the phase).
unsafe impl<'s, T, F, K, const N: usize> Sync for DeferScope<'s, T, F, K, N>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
}

impl<'s, T, F, K, const N: usize> DeferScope<'s, T, F, K, N>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    #[cfg(feature = "alloc")]
    fn new(body: F, order: Order, on_cancel: Option<CancelHandler>) -> Self {
        DeferScope {
            slab: Slab::new(),
            phase: Phase::Init,
            body: UnsafeCell::new(BodyCell {
                closure: ManuallyDrop::new(body),
            }),
            exit: ManuallyDrop::new(Exit::new()),
            order,
            drive: order.driver(),
            cleaner: MaybeUninit::uninit(),
            on_cancel,
            _pinned: PhantomPinned,
            _life: PhantomData,
        }
    }

    #[cfg(not(feature = "alloc"))]
    fn new(body: F, order: Order, _on_cancel: Option<core::convert::Infallible>) -> Self {
        DeferScope {
            slab: Slab::new(),
            phase: Phase::Init,
            body: UnsafeCell::new(BodyCell {
                closure: ManuallyDrop::new(body),
            }),
            exit: ManuallyDrop::new(Exit::new()),
            order,
            drive: order.driver(),
            cleaner: MaybeUninit::uninit(),
            _pinned: PhantomPinned,
            _life: PhantomData,
        }
    }
}

impl<'s, T, F, K, const N: usize> Future for DeferScope<'s, T, F, K, N>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    type Output = T;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        // SAFETY: the scope is pinned, and nothing is moved out of it but
        // the body closure (never pinned) and the output. Every field is
        // reached by a raw projection, never through `&Self` (module docs).
        let this: *mut Self = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above, for each access below.
        unsafe {
            let core = (*this).slab.core();
            if (*this).phase < Phase::Ended {
                let cell = (*this).body.get();
                // Calling the body may already run user code (a closure
                // returning a future runs its synchronous prefix now): it
                // gets the same treatment as a poll, in the same frame.
                let polled = panicking::catch(|| {
                    crate::ambient::enter(core, || {
                        if (*this).phase == Phase::Init {
                            // The scope's address is final: start the slab.
                            Slab::init(ptr::addr_of_mut!((*this).slab));
                            let body = ManuallyDrop::take(&mut (*cell).closure);
                            // If calling the body panics, there is no future.
                            (*this).phase = Phase::Ended;
                            let handle: &'s Defer<T, K> = &*ptr::from_ref(Defer::of(core));
                            let future = body.call(handle);
                            ptr::addr_of_mut!((*cell).future).write(ManuallyDrop::new(future));
                            (*this).phase = Phase::Body;
                        }
                        Pin::new_unchecked(&mut *(*cell).future).poll(cx)
                    })
                });
                match polled {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(out)) => exit_of(this).out = Some(out),
                    Err(p) => exit_of(this).panic = Some(p),
                }
                if (*this).phase == Phase::Body {
                    // Dropped in place before any thunk runs (it may hold
                    // guards), after the tag moved on.
                    (*this).phase = Phase::Ended;
                    if let Err(p) = panicking::catch(|| ManuallyDrop::drop(&mut (*cell).future)) {
                        exit_of(this).panic.get_or_insert(p);
                    }
                }
            }
            if (*this).phase == Phase::Ended {
                if core.is_empty() {
                    // Nothing registered: no cleanup machinery at all.
                    return Self::finish(this);
                }
                let order = (*this).order;
                (*this)
                    .cleaner
                    .write(Cleaner::new(order, core.start_cleanup(order.lifo())));
                (*this).phase = Phase::Cleaning;
            } else if (*this).phase == Phase::Done {
                panic!("`DeferScope` polled after completion");
            }
            let cleaner = (*this).cleaner.assume_init_mut();
            let end = exit_end(this);
            let drive = (*this).drive;
            // Thunks registered in a context run in it (they carry it); the
            // others in the empty one.
            core::task::ready!(crate::context::isolated(|| cleaner.poll(drive, &end, cx)));
            core.forget_chain();
            Self::finish(this)
        }
    }
}

impl<'s, T, F, K, const N: usize> DeferScope<'s, T, F, K, N>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    /// Cleanup is over: hands out the output, or resumes the first panic.
    ///
    /// # Safety
    /// `this` is the pinned scope, its body gone and its cleanup done.
    #[inline]
    unsafe fn finish(this: *mut Self) -> Poll<T> {
        // SAFETY: as the caller guarantees; raw projections only.
        unsafe {
            (*this).phase = Phase::Done;
            if let Some(p) = exit_of(this).panic.take() {
                // The output (if the body returned) is discarded.
                // A second panic from its destructor is dropped: the first
                // one resumes.
                let out = exit_of(this).out.take();
                let _ = panicking::catch(move || drop(out));
                panicking::resume(p);
            }
            match exit_of(this).out.take() {
                Some(out) => Poll::Ready(out),
                None => unreachable!("deferral: a returned body has an output"),
            }
        }
    }

    /// Starts the cleaner if the body ended and cleanup has not begun.
    ///
    /// # Safety
    /// `this` points to a live scope, used through raw projections only;
    /// its body is gone (`phase` is `Ended`, `Cleaning` or later).
    unsafe fn start_cleaner(this: *mut Self) {
        // SAFETY: the caller's contract; `Ended` means no cleaner was
        // written yet.
        unsafe {
            if (*this).phase == Phase::Ended {
                let order = (*this).order;
                let chain = (*this).slab.core().start_cleanup(order.lifo());
                (*this).cleaner.write(Cleaner::new(order, chain));
            }
        }
    }

    /// Cancels what cleanup has not finished: the sync entries run, the
    /// unstarted async ones go to the scope's handler, else (for a
    /// `Sendable` scope) the program's, else are dropped unpolled; started
    /// ones are dropped. Returns how many async entries were cut.
    ///
    /// # Safety
    /// `this` points to a live scope whose cleaner is started
    /// ([`start_cleaner`](Self::start_cleaner)) and whose `phase` already
    /// says what the scope becomes (foreign code runs here).
    unsafe fn cancel_unfinished(this: *mut Self) -> usize {
        // SAFETY: the caller's contract: the cleaner is initialised, and
        // the exit and the handler are disjoint fields of a live scope.
        unsafe {
            let cleaner = (*this).cleaner.assume_init_mut();
            let end = exit_end(this);
            #[cfg(feature = "alloc")]
            let handler = &mut (*this).on_cancel;
            let cut = crate::context::isolated(|| {
                cleaner.cancel(&end, |live| {
                    #[cfg(feature = "alloc")]
                    if let Some(handler) = handler {
                        // Only `Sendable` scopes have a handler (the
                        // builder's types see to it): their payloads are
                        // `Send + 'static`, and this one never started.
                        handler(live.into_boxed());
                        return;
                    }
                    if K::SENDABLE {
                        // The program's handler, if any; else dropped.
                        crate::cancel::hand_over(live);
                    } else {
                        // Dropped unpolled (it may borrow the caller's
                        // state: it cannot run elsewhere).
                        live.drop_payload();
                    }
                })
            });
            (*this).slab.core().forget_chain();
            cut
        }
    }

    /// The slow path of `drop`: the scope did not finish.
    #[cold]
    #[inline(never)]
    fn cancel(&mut self) {
        let this: *mut Self = self;
        // SAFETY: as in `poll`: raw projections only; the body is dropped
        // in place.
        unsafe {
            match (*this).phase {
                Phase::Done => return,
                Phase::Init => {
                    (*this).phase = Phase::Done;
                    ManuallyDrop::drop(&mut (*(*this).body.get()).closure);
                    return;
                }
                Phase::Body => {
                    // Cancelled: the body goes first.
                    (*this).phase = Phase::Ended;
                    let cell = (*this).body.get();
                    if let Err(p) = panicking::catch(|| ManuallyDrop::drop(&mut (*cell).future)) {
                        exit_of(this).panic.get_or_insert(p);
                    }
                }
                Phase::Ended | Phase::Cleaning => {}
            }
            exit_of(this).flags = if panicking::unwinding() {
                crate::exit::CANCELLED | crate::exit::UNWINDING
            } else {
                crate::exit::CANCELLED
            };
            Self::start_cleaner(this);
            (*this).phase = Phase::Done;
            // The output is being discarded: thunks see none. It goes last.
            let out = exit_of(this).out.take();
            Self::cancel_unfinished(this);
            // Whatever a cleanup recovered is dropped with the rest.
            let mut panic = exit_of(this).panic.take();
            let late = panicking::catch(move || drop((exit_of(this).out.take(), out)));
            if let Err(p) = late {
                panic.get_or_insert(p);
            }
            if let Some(p) = panic {
                panicking::resume_unless_panicking(p);
            }
        }
    }
}

/// The scope's exit: an explicit reference to that one field.
///
/// # Safety
/// `this` points to a live scope; nothing else uses its exit while the
/// reference lives (the cleanup loop is not running).
#[inline(always)]
unsafe fn exit_of<'a, 's, T, F, K, const N: usize>(
    this: *mut DeferScope<'s, T, F, K, N>,
) -> &'a mut Exit<T>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    // SAFETY: as the caller guarantees.
    unsafe { &mut *ptr::addr_of_mut!((*this).exit).cast::<Exit<T>>() }
}

/// The scope's exit, as the cleanup loop takes it: raw projections (no
/// reference to the scope).
///
/// # Safety
/// `this` points to a live scope; the `End` is used only while it lives,
/// and while no reference to its exit is in use.
#[inline(always)]
unsafe fn exit_end<'s, T, F, K, const N: usize>(
    this: *mut DeferScope<'s, T, F, K, N>,
) -> crate::exit::End
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    // SAFETY: a field of a live scope is never null; `ManuallyDrop` is
    // `repr(transparent)`.
    unsafe {
        crate::exit::End::of(ptr::NonNull::new_unchecked(
            ptr::addr_of_mut!((*this).exit).cast::<Exit<T>>(),
        ))
    }
}

impl<'s, T, F, K, const N: usize> DeferScope<'s, T, F, K, N>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    /// Races this scope's cleanup against a deadline, so that shutdown
    /// cannot hang on it. When cleanup starts, `deadline()` makes the timer
    /// (any runtime's: `|| tokio::time::sleep(d)`); if it fires first, the
    /// cleanup still running is cut short — async cleanup that started is
    /// dropped, the rest is handed to the cancel handler (or dropped), sync
    /// cleanup still runs — and the scope resolves to
    /// `Err(CutShort)`, which carries the body's output and how many were
    /// cut. Otherwise it resolves to `Ok(output)`.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_async(std::future::pending::<()>()); // a close that hangs
    ///     7
    /// })
    /// .grace(|| async {}) // a timer that has already fired
    /// .await;
    /// let cut = out.unwrap_err();
    /// assert_eq!((cut.cut(), cut.into_output()), (1, 7));
    /// # });
    /// # }
    /// ```
    pub fn grace<G, D>(self, deadline: G) -> Grace<'s, T, F, K, N, G, D>
    where
        G: FnOnce() -> D,
        D: Future,
    {
        Grace {
            scope: self,
            deadline: Some(deadline),
            timer: None,
        }
    }

    /// The body has ended and cleanup has not finished.
    fn cleaning(&self) -> bool {
        matches!(self.phase, Phase::Ended | Phase::Cleaning)
    }

    /// Cuts the cleanup short (see `grace`): returns the output (resuming
    /// the panic, if one is in flight) and how many async entries were cut.
    fn cut_short(self: Pin<&mut Self>) -> (T, usize) {
        // SAFETY: as in `poll`: raw projections only.
        unsafe {
            let this: *mut Self = self.get_unchecked_mut();
            Self::start_cleaner(this);
            (*this).phase = Phase::Cleaning;
            let cut = Self::cancel_unfinished(this);
            match Self::finish(this) {
                Poll::Ready(out) => (out, cut),
                Poll::Pending => unreachable!(),
            }
        }
    }
}

/// The future of [`DeferScope::grace`]: the scope's output, or
/// [`CutShort`] if its cleanup outlived the deadline.
///
/// ```
/// # futures::executor::block_on(async {
/// let graced: deferral::Grace<_, _, _, 256, _, _> =
///     deferral::scope(async |_| 1).grace(|| std::future::pending::<()>());
/// assert_eq!(graced.await.unwrap(), 1);
/// # });
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Grace<'s, T, F, K, const N: usize, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    /// Structurally pinned, like `timer` (see `project`); the deadline
    /// maker is not.
    scope: DeferScope<'s, T, F, K, N>,
    deadline: Option<G>,
    timer: Option<D>,
}

/// `Grace`'s fields, the pinned ones pinned.
struct GraceProj<'a, 's, T, F, K, const N: usize, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    scope: Pin<&'a mut DeferScope<'s, T, F, K, N>>,
    deadline: &'a mut Option<G>,
    timer: Pin<&'a mut Option<D>>,
}

impl<'s, T, F, K, const N: usize, G, D> Grace<'s, T, F, K, N, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    fn project(self: Pin<&mut Self>) -> GraceProj<'_, 's, T, F, K, N, G, D> {
        // SAFETY: `scope` and `timer` are structurally pinned: never moved
        // out of a pinned `Grace` (no by-value accessor, no `Drop` impl,
        // not `repr(packed)`); `Grace` is never `Unpin` (its auto impl
        // needs `DeferScope: Unpin`, which is not: `PhantomPinned`).
        unsafe {
            let this = self.get_unchecked_mut();
            GraceProj {
                scope: Pin::new_unchecked(&mut this.scope),
                deadline: &mut this.deadline,
                timer: Pin::new_unchecked(&mut this.timer),
            }
        }
    }
}

impl<'s, T, F, K, const N: usize, G, D> fmt::Debug for Grace<'s, T, F, K, N, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grace")
            .field("scope", &self.scope)
            .field("timer_started", &self.timer.is_some())
            .finish_non_exhaustive()
    }
}

impl<'s, T, F, K, const N: usize, G, D> Future for Grace<'s, T, F, K, N, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
    G: FnOnce() -> D,
    D: Future,
{
    type Output = Result<T, CutShort<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.scope.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if !this.scope.cleaning() {
            return Poll::Pending;
        }
        if this.timer.is_none() {
            let deadline = this
                .deadline
                .take()
                .expect("deferral: `Grace` polled after completion");
            this.timer.set(Some(deadline()));
        }
        let timer = this.timer.as_mut().as_pin_mut().expect("started");
        core::task::ready!(timer.poll(cx));
        this.timer.set(None);
        let (output, cut) = this.scope.cut_short();
        Poll::Ready(Err(CutShort { output, cut }))
    }
}

/// A scope's cleanup outlived its [grace](DeferScope::grace) deadline and
/// was cut short: the body's output, and how many async cleanups did not
/// finish (dropped, or handed to the cancel handler).
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// let cut = deferral::scope(async |d| {
///     d.defer_async(std::future::pending::<()>());
/// })
/// .grace(|| async {})
/// .await
/// .unwrap_err();
/// assert_eq!(cut.to_string(), "cleanup cut short by its deadline (1 unfinished)");
/// # });
/// # }
/// ```
pub struct CutShort<T> {
    output: T,
    cut: usize,
}

impl<T> CutShort<T> {
    /// How many async cleanups did not finish.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |_| ()).grace(|| async {}).await;
    /// assert!(out.is_ok()); // nothing to cut
    /// # });
    /// ```
    pub fn cut(&self) -> usize {
        self.cut
    }

    /// The body's output.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let cut = deferral::scope(async |d| {
    ///     d.defer_async(std::future::pending::<()>());
    ///     "out"
    /// })
    /// .grace(|| async {})
    /// .await
    /// .unwrap_err();
    /// assert_eq!(*cut.output(), "out");
    /// # });
    /// # }
    /// ```
    pub fn output(&self) -> &T {
        &self.output
    }

    /// The body's output, by value.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_async(std::future::pending::<()>());
    ///     1
    /// })
    /// .grace(|| async {})
    /// .await
    /// .unwrap_or_else(|cut| cut.into_output());
    /// assert_eq!(out, 1);
    /// # });
    /// # }
    /// ```
    pub fn into_output(self) -> T {
        self.output
    }
}

impl<T> fmt::Debug for CutShort<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CutShort")
            .field("cut", &self.cut)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for CutShort<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cleanup cut short by its deadline ({} unfinished)",
            self.cut
        )
    }
}

impl<T> core::error::Error for CutShort<T> {}

impl<'s, T, F, K, const N: usize> Drop for DeferScope<'s, T, F, K, N>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    #[inline]
    fn drop(&mut self) {
        // A finished scope has released everything already (its output
        // was handed out or dropped, its cleanup state is empty).
        if self.phase != Phase::Done {
            self.cancel();
        }
    }
}

impl<'s, T, F, K, const N: usize> FusedFuture for DeferScope<'s, T, F, K, N>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    fn is_terminated(&self) -> bool {
        // A plain field read through `&self` is fine here: `&DeferScope`
        // cannot coexist with a poll (which needs `Pin<&mut>`).
        self.phase == Phase::Done
    }
}

impl<'s, T, F, K, const N: usize> fmt::Debug for DeferScope<'s, T, F, K, N>
where
    K: Flavour,
    F: ScopeBody<'s, T, K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferScope")
            .field("phase", &self.phase)
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}
