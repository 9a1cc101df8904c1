//! What a scope's cleanup may hold and what a registration returns: the
//! flavours [`Sendable`] (`scope`), [`Local`] (`scope_local`) and
//! [`Fixed`] (either, without growing), and [`Full`].

use core::fmt;
use core::marker::PhantomData;

/// The inline slab capacity, in bytes, of a scope made by
/// [`scope`](crate::scope()) or [`scope_local`](crate::scope_local): 256 with
/// `alloc` (a full slab spills to the heap), 64 without — sized for small
/// chips; each registration takes a two-word head plus what it captures
/// (see the README's firmware section). Choose another with
/// [`ScopeBuilder::capacity`](crate::scope::ScopeBuilder::capacity).
///
/// ```
/// assert_eq!(deferral::scope::DEFAULT_CAPACITY, if cfg!(feature = "alloc") { 256 } else { 64 });
/// ```
pub const DEFAULT_CAPACITY: usize = if cfg!(feature = "alloc") { 256 } else { 64 };


/// The flavour of [`scope`](crate::scope()): cleanup is `Send + 'static`, so
/// the scope can be spawned on a multi-threaded runtime even while its body
/// holds the handle across `.await`, and cleanup a cancelled scope could not
/// run can be handed over to run elsewhere.
///
/// ```
/// fn spawnable<F: Send>(_: F) {}
/// spawnable(deferral::scope(async |d: &deferral::Defer<u8>| {
///     d.defer(|| println!("closed"));
///     1
/// }));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Sendable;

/// The flavour of [`scope_local`](crate::scope_local): cleanup may borrow
/// anything that outlives the call (`'env`) — `&mut` peripherals, a `Vec`
/// on the caller's stack, `Rc<RefCell<..>>` — and need not be `Send`. The
/// scope is then `!Send`.
///
/// Invariant in `'env`, so a body cannot shorten it to register cleanup
/// that borrows its own locals (they are gone when cleanup runs):
///
/// ```compile_fail
/// # futures::executor::block_on(async {
/// deferral::scope_local(async |d| {
///     let local = String::from("dropped with the body");
///     d.defer(|| println!("{local}")); // error: does not live long enough
/// })
/// .await;
/// # });
/// ```
pub struct Local<'env>(PhantomData<(Invariant<'env>, NotSend)>);

/// `fn(&'env ()) -> &'env ()`: invariant in `'env`.
type Invariant<'env> = fn(&'env ()) -> &'env ();
/// Neither `Send` nor `Sync`.
type NotSend = *mut ();

/// A flavour whose slab never grows: a registration that does not fit
/// returns [`Full`] with the cleanup handed back, even with `alloc` (no
/// heap, ever, and no panic). Made by
/// [`ScopeBuilder::fixed`](crate::scope::ScopeBuilder::fixed).
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::scope::ScopeBuilder;
/// ScopeBuilder::new()
///     .capacity::<32>()
///     .fixed()
///     .run(async |d| {
///         d.defer(|| println!("fits")).unwrap();
///         if let Err(full) = d.defer(|| println!("by hand")) {
///             (full.into_inner())(); // the slab is full: run it now
///         }
///     })
///     .await;
/// # });
/// ```
pub struct Fixed<K = Sendable>(PhantomData<K>);

impl fmt::Debug for Local<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Local")
    }
}

impl<K> fmt::Debug for Fixed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fixed")
    }
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

impl sealed::Sealed for Sendable {}
impl sealed::Sealed for Local<'_> {}
impl<K: Flavour> sealed::Sealed for Fixed<K> {}

/// What a scope's cleanup may hold and what its registrations return;
/// sealed: [`Sendable`], [`Local`], [`Fixed`].
///
/// ```
/// use deferral::{Defer, scope::Flavour};
/// // Code that registers cleanup on either kind of scope.
/// fn log_on_exit<K: Flavour, const N: usize>(d: &Defer<(), K, N>) {
///     let _ = d.len();
/// }
/// # futures::executor::block_on(deferral::scope(async |d| log_on_exit(d)));
/// ```
pub trait Flavour: sealed::Sealed {
    /// Payloads are `Send + 'static`: a cancelled scope may hand its async
    /// cleanup over to run elsewhere.
    #[doc(hidden)]
    const SENDABLE: bool;
    /// A full slab spills to the heap (`alloc`), rather than refusing.
    #[doc(hidden)]
    const GROWS: bool;
    /// Registrations are serialised by the slab's lock (the handle is
    /// `Sync`).
    #[doc(hidden)]
    const LOCKS: bool;
    /// What a registration returns: the token, or a `Result` with [`Full`].
    #[doc(hidden)]
    type Reg<R, X>;
    #[doc(hidden)]
    fn reg<R, X>(registered: Result<R, Full<X>>) -> Self::Reg<R, X>;
}

/// A registration on a growing slab: with `alloc` it cannot fail (a full
/// slab spills); without, a slab that runs out panics — a sizing bug, like
/// an out-of-bounds index (a cleanup that can never fit is a compile error).
#[inline(always)]
#[track_caller]
fn grown<R, X>(registered: Result<R, Full<X>>) -> R {
    match registered {
        Ok(registration) => registration,
        Err(_) => full(),
    }
}

#[cold]
#[track_caller]
fn full() -> ! {
    panic!("deferral: the scope's slab is full (raise `ScopeBuilder::capacity`, or use `fixed()`)")
}

impl Flavour for Sendable {
    const SENDABLE: bool = true;
    const GROWS: bool = true;
    const LOCKS: bool = true;
    type Reg<R, X> = R;
    #[inline(always)]
    #[track_caller]
    fn reg<R, X>(registered: Result<R, Full<X>>) -> R {
        grown(registered)
    }
}

impl Flavour for Local<'_> {
    const SENDABLE: bool = false;
    const GROWS: bool = true;
    const LOCKS: bool = false;
    type Reg<R, X> = R;
    #[inline(always)]
    #[track_caller]
    fn reg<R, X>(registered: Result<R, Full<X>>) -> R {
        grown(registered)
    }
}

impl<K: Flavour> Flavour for Fixed<K> {
    const SENDABLE: bool = K::SENDABLE;
    const GROWS: bool = false;
    const LOCKS: bool = K::LOCKS;
    type Reg<R, X> = Result<R, Full<X>>;
    #[inline(always)]
    fn reg<R, X>(registered: Result<R, Full<X>>) -> Result<R, Full<X>> {
        registered
    }
}

/// What a scope of flavour `K` can hold: `Send + 'static` for [`Sendable`]
/// (`scope`), anything that outlives `'env` for [`Local<'env>`]
/// (`scope_local`). Implemented for every type that qualifies; sealed.
///
/// ```
/// use deferral::scope::{Fits, Local, Sendable};
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
impl<K: Flavour, X: Fits<K>> Fits<Fixed<K>> for X {}

/// A [fixed](Fixed) slab was full: the registration is handed back,
/// nothing is lost.
///
/// ```
/// # futures::executor::block_on(async {
/// deferral::scope::ScopeBuilder::new()
///     .capacity::<24>() // room for one small cleanup (and its head)
///     .fixed()
///     .run(async |d| {
///         d.defer(|| println!("fits")).unwrap();
///         let full = d.defer(|| println!("by hand")).unwrap_err();
///         (full.into_inner())();
///     })
///     .await;
/// # });
/// ```
pub struct Full<X>(pub(crate) X);

impl<X> Full<X> {
    /// What could not be registered (the cleanup, or the guarded value and
    /// its cleanup).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope::ScopeBuilder::new()
    ///     .capacity::<32>()
    ///     .fixed()
    ///     .run(async |d| {
    ///         let _first = d.guard(1, drop).unwrap();
    ///         let (value, _cleanup) = d.guard(7, drop).unwrap_err().into_inner();
    ///         assert_eq!(value, 7);
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
        f.write_str("the scope's slab is full")
    }
}

impl<X> core::error::Error for Full<X> {}
