//! Go-style `defer` for async bodies: [`scope`], [`scope_local`] and what
//! they are made of.
//!
//! The body receives a [`Defer`] handle to register cleanup; when the body
//! returns (or panics), the scope runs every registered cleanup — closures
//! and futures — and only then resolves to the body's output.
//!
//! | file | what lives there |
//! |---|---|
//! | `future.rs` | [`DeferScope`] (body → cleanup → done), [`Grace`], [`CutShort`] |
//! | `handle.rs` | [`Defer`] and its eight registrations, [`Registration`], [`Guard`] |
//! | `flavour.rs` | [`Sendable`], [`Local`], [`Fixed`], [`Full`] |
//! | `exit.rs` | [`Exit`], [`Outcome`], [`When`], [`Errors`], [`CleanupOutput`] |
//! | `payload.rs` | the kinds of deferred work (closures, futures, guarded values) |
//! | `entry.rs` | the erased entry every kind is stored as (the unsafe heart) |
//! | `slab.rs` | a scope's inline storage of entries, tokens' epochs |
//! | `drive.rs` | running a chain of entries in order, or concurrently; cutting it short |
//! | `stack.rs` | [`DeferStack`], cleanup you own |
//! | `ambient.rs` | [`defer`](crate::defer) without a handle (`std`) |
//!
//! # Which registration runs when
//!
//! Every registration runs however the body ended — returned, returned an
//! `Err`, panicked, or cancelled — unless its token says otherwise with
//! [`When`]. What a cleanup returns reaches the output ([`CleanupOutput`]).
//! When the scope is cancelled (dropped early), sync cleanup runs in the
//! drop and async cleanup that never started is handed over (see
//! [`cancel`](crate::cancel)).

pub(crate) mod ambient;
pub(crate) mod drive;
pub(crate) mod entry;
pub(crate) mod exit;
mod flavour;
mod future;
mod handle;
mod payload;
pub(crate) mod slab;
mod stack;

use core::fmt;
use core::marker::PhantomData;

#[cfg(feature = "std")]
pub use ambient::{AmbientRegistration, NoScope, try_defer, try_defer_async};
#[cfg(feature = "alloc")]
pub use exit::Errors;
pub use exit::{CleanupOutput, Exit, Fallible, Outcome, When};
pub use flavour::{Fits, Fixed, Flavour, Full, Local, Sendable};
pub use future::{CutShort, DeferScope, Grace, ScopeBody};
pub use flavour::DEFAULT_CAPACITY;
pub use handle::{Defer, Guard, Registration};
pub use stack::{DeferStack, Dispose};

/// The order in which a scope runs its cleanup after the body — a type, so
/// a scope never links the code of an order it does not use:
/// [`Lifo`] (the default), [`Fifo`], [`Concurrent`].
///
/// ```
/// use deferral::scope::{Fifo, ScopeBuilder};
/// let _builder = ScopeBuilder::new().order(Fifo);
/// ```
pub trait Order: order::Sealed {
    /// Cleanup walks the registrations oldest first.
    #[doc(hidden)]
    const REVERSE: bool;
    /// The cleanup driver this order needs (and no other).
    #[doc(hidden)]
    type Drive: drive::Driver;
}

mod order {
    pub trait Sealed {}
}

/// Last registered, first run — Go's `defer` and Rust's drop order.
///
/// ```
/// let _builder = deferral::scope::ScopeBuilder::new().order(deferral::scope::Lifo);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifo;

/// First registered, first run.
///
/// ```
/// # futures::executor::block_on(async {
/// use std::sync::{Arc, Mutex};
/// use deferral::scope::{Fifo, ScopeBuilder};
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let (a, b) = (log.clone(), log.clone());
/// ScopeBuilder::new()
///     .order(Fifo)
///     .run(async |d| {
///         d.defer(move || a.lock().unwrap().push(1));
///         d.defer(move || b.lock().unwrap().push(2));
///     })
///     .await;
/// assert_eq!(*log.lock().unwrap(), [1, 2]);
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Fifo;

/// Every cleanup is started in registration order — sync ones run, async
/// ones are polled once — and then the async ones are polled together
/// until all finished, like JavaScript's `Promise.all(fns.map(fn => fn()))`.
/// With `alloc`, each async cleanup gets its own waker and a wake-up polls
/// only the ones that were woken (one allocation whatever their number);
/// without, a wake-up polls every unfinished one.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::scope::{Concurrent, ScopeBuilder};
/// ScopeBuilder::new()
///     .order(Concurrent)
///     .run(async |d| {
///         d.defer_async(async { println!("closing a") });
///         d.defer_async(async { println!("closing b, meanwhile") });
///     })
///     .await;
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Concurrent;

impl order::Sealed for Lifo {}
impl order::Sealed for Fifo {}
impl order::Sealed for Concurrent {}
impl Order for Lifo {
    const REVERSE: bool = false;
    type Drive = drive::Sequential;
}
impl Order for Fifo {
    const REVERSE: bool = true;
    type Drive = drive::Sequential;
}
impl Order for Concurrent {
    const REVERSE: bool = true;
    type Drive = drive::Concurrent;
}

/// Runs `body` with a [`Defer`] handle; when it returns, runs the cleanup
/// (last registered first), then resolves to the body's output.
///
/// Cleanup is `Send + 'static`, so the scope can be spawned on a
/// multi-threaded runtime; for cleanup that borrows or is not `Send`, use
/// [`scope_local`].
///
/// ```
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
/// ```
///
/// A zero-argument `async fn` that registers through the ambient
/// [`defer`](crate::defer) runs in [`scope_fn`] (`scope(defer_test)` does
/// not compile: a body takes the handle).
///
/// # Panics and cancellation
///
/// With `std`, a panic in the body still runs every cleanup (async ones are
/// polled to completion), then the panic resumes from `poll`; a panic in a
/// cleanup does not stop the others, and the first panic resumes after all
/// ran. If the scope is dropped before it finished, the body is dropped
/// first, then the remaining sync cleanup runs and the async cleanup that
/// never started is handed over (see [`cancel`](crate::cancel)). A cleanup
/// that panics while the scope is dropped *during unwinding* aborts the
/// process (a double panic), as any panicking destructor would.
pub fn scope<'s, T, F>(body: F) -> DeferScope<'s, T, F>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T>) -> T,
    F: for<'d> ScopeBody<'d, T, Sendable, DEFAULT_CAPACITY, &'d (T, Sendable)>,
{
    DeferScope::new(body)
}

/// Like [`scope`], for cleanup that borrows or is not `Send`: cleanup and
/// guarded values may borrow anything that outlives the call — a `&mut`
/// peripheral, a `Vec` on the caller's stack — and may be `!Send`
/// (`Rc<RefCell<..>>`). The scope future is then `!Send`, and is cheaper:
/// no lock, no hand-over.
///
/// ```
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
/// ```
pub fn scope_local<'s, 'env, T, F>(body: F) -> DeferScope<'s, T, F, Local<'env>>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T, Local<'env>>) -> T,
    F: for<'d> ScopeBody<'d, T, Local<'env>, DEFAULT_CAPACITY, &'d (T, Local<'env>)>,
{
    DeferScope::new(body)
}

/// A scope around a zero-argument `async fn` (or closure returning a
/// future) that registers its cleanup through the ambient
/// [`defer`](crate::defer) — the seed's `useDefer(deferTest)`.
///
/// ```
/// # futures::executor::block_on(async {
/// async fn defer_test() -> i32 {
///     deferral::defer(|| println!("defer 1"));
///     println!("not defer");
///     1
/// }
/// assert_eq!(deferral::scope::scope_fn(defer_test).await, 1);
/// // With arguments: a closure.
/// async fn add(a: i32, b: i32) -> i32 {
///     deferral::defer(|| println!("added"));
///     a + b
/// }
/// assert_eq!(deferral::scope::scope_fn(|| add(2, 3)).await, 5);
/// # });
/// ```
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub fn scope_fn<'s, T, F, Fut>(body: F) -> DeferScope<'s, T, FnBody<F>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    DeferScope::new(FnBody(body))
}

/// The body of [`scope_fn`]: a function that takes no handle.
///
/// ```
/// use deferral::scope::{DeferScope, FnBody};
/// fn named<F, Fut>(f: F) -> DeferScope<'static, u8, FnBody<F>>
/// where
///     F: FnOnce() -> Fut,
///     Fut: Future<Output = u8>,
/// {
///     deferral::scope::scope_fn(f)
/// }
/// assert_eq!(futures::executor::block_on(named(async || 7)), 7);
/// ```
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug)]
pub struct FnBody<F>(F);

#[cfg(feature = "std")]
impl<'d, T, F, Fut> ScopeBody<'d, T, Sendable, DEFAULT_CAPACITY, &'d (T, Sendable)> for FnBody<F>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    type Fut = Fut;

    #[inline(always)]
    fn call(self, _handle: &'d Defer<T>) -> Fut {
        (self.0)()
    }
}

/// Configures a scope: its slab capacity, its cleanup [`Order`], and
/// whether its slab may grow ([`fixed`](Self::fixed)).
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::scope::{Fifo, ScopeBuilder};
/// let out = ScopeBuilder::new()
///     .capacity::<1024>()
///     .order(Fifo)
///     .run(async |d| {
///         d.defer(|| println!("runs first"));
///         d.defer(|| println!("runs second"));
///         "done"
///     })
///     .await;
/// assert_eq!(out, "done");
/// # });
/// ```
#[must_use = "a builder does nothing until `run`"]
pub struct ScopeBuilder<const N: usize = DEFAULT_CAPACITY, O = Lifo, const FIXED: bool = false> {
    _order: PhantomData<O>,
}

impl<const N: usize, O, const FIXED: bool> fmt::Debug for ScopeBuilder<N, O, FIXED> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeBuilder")
            .field("capacity", &N)
            .field("fixed", &FIXED)
            .finish_non_exhaustive()
    }
}

impl Default for ScopeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ScopeBuilder {
    /// A builder with [`DEFAULT_CAPACITY`] and [`Lifo`] order.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope::ScopeBuilder::new().run(async |_| 1).await;
    /// assert_eq!(out, 1);
    /// # });
    /// ```
    pub const fn new() -> Self {
        ScopeBuilder {
            _order: PhantomData,
        }
    }
}

impl<const N: usize, O: Order, const FIXED: bool> ScopeBuilder<N, O, FIXED> {
    /// Sets the inline slab capacity to `M` bytes.
    ///
    /// ```
    /// let builder = deferral::scope::ScopeBuilder::new().capacity::<64>();
    /// # drop(builder);
    /// ```
    pub const fn capacity<const M: usize>(self) -> ScopeBuilder<M, O, FIXED> {
        ScopeBuilder {
            _order: PhantomData,
        }
    }

    /// Sets the cleanup order: [`Lifo`], [`Fifo`] or [`Concurrent`].
    ///
    /// ```
    /// let builder = deferral::scope::ScopeBuilder::new().order(deferral::scope::Concurrent);
    /// # drop(builder);
    /// ```
    pub fn order<P: Order>(self, order: P) -> ScopeBuilder<N, P, FIXED> {
        let _ = order;
        ScopeBuilder {
            _order: PhantomData,
        }
    }

    /// A slab that never grows ([`Fixed`]): a registration that does not
    /// fit returns `Err(Full)` with the cleanup, even with `alloc` — no
    /// heap, ever, and no panic.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope::ScopeBuilder::new()
    ///     .capacity::<64>()
    ///     .fixed()
    ///     .run(async |d| {
    ///         d.defer(|| ()).map_err(|_| "full")?;
    ///         Ok::<_, &str>(1)
    ///     })
    ///     .await;
    /// assert_eq!(out, Ok(1));
    /// # });
    /// ```
    pub const fn fixed(self) -> ScopeBuilder<N, O, true> {
        ScopeBuilder {
            _order: PhantomData,
        }
    }
}

impl<const N: usize, O: Order> ScopeBuilder<N, O, false> {
    /// Runs `body` like [`scope`], configured.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope::ScopeBuilder::new()
    ///     .run(async |d| {
    ///         d.defer(|| println!("cleanup"));
    ///         "out"
    ///     })
    ///     .await;
    /// assert_eq!(out, "out");
    /// # });
    /// ```
    pub fn run<'s, T, F>(self, body: F) -> DeferScope<'s, T, F, Sendable, N, O>
    where
        F: for<'d> AsyncFnOnce(&'d Defer<T, Sendable, N>) -> T,
        F: for<'d> ScopeBody<'d, T, Sendable, N, &'d (T, Sendable)>,
    {
        DeferScope::new(body)
    }

    /// Runs `body` like [`scope_local`], configured.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let mut log = Vec::new();
    /// deferral::scope::ScopeBuilder::new()
    ///     .order(deferral::scope::Fifo)
    ///     .run_local(async |d| {
    ///         d.defer(|| log.push("first"));
    ///     })
    ///     .await;
    /// assert_eq!(log, ["first"]);
    /// # });
    /// ```
    pub fn run_local<'s, 'env, T, F>(self, body: F) -> DeferScope<'s, T, F, Local<'env>, N, O>
    where
        F: for<'d> AsyncFnOnce(&'d Defer<T, Local<'env>, N>) -> T,
        F: for<'d> ScopeBody<'d, T, Local<'env>, N, &'d (T, Local<'env>)>,
    {
        DeferScope::new(body)
    }
}

impl<const N: usize, O: Order> ScopeBuilder<N, O, true> {
    /// Runs `body` like [`scope`], with a [`Fixed`] slab.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope::ScopeBuilder::new()
    ///     .fixed()
    ///     .run(async |d| d.defer(|| ()).is_ok())
    ///     .await;
    /// assert!(out);
    /// # });
    /// ```
    pub fn run<'s, T, F>(self, body: F) -> DeferScope<'s, T, F, Fixed<Sendable>, N, O>
    where
        F: for<'d> AsyncFnOnce(&'d Defer<T, Fixed<Sendable>, N>) -> T,
        F: for<'d> ScopeBody<'d, T, Fixed<Sendable>, N, &'d (T, Fixed<Sendable>)>,
    {
        DeferScope::new(body)
    }

    /// Runs `body` like [`scope_local`], with a [`Fixed`] slab.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let mut log = Vec::new();
    /// deferral::scope::ScopeBuilder::new()
    ///     .capacity::<32>()
    ///     .fixed()
    ///     .run_local(async |d| {
    ///         d.defer(|| log.push("closed")).unwrap();
    ///     })
    ///     .await;
    /// assert_eq!(log, ["closed"]);
    /// # });
    /// ```
    pub fn run_local<'s, 'env, T, F>(
        self,
        body: F,
    ) -> DeferScope<'s, T, F, Fixed<Local<'env>>, N, O>
    where
        F: for<'d> AsyncFnOnce(&'d Defer<T, Fixed<Local<'env>>, N>) -> T,
        F: for<'d> ScopeBody<'d, T, Fixed<Local<'env>>, N, &'d (T, Fixed<Local<'env>>)>,
    {
        DeferScope::new(body)
    }
}
