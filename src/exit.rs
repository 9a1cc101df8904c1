//! How a scope's body ended, as the cleanup that asks for it sees it:
//! [`Exit`], and what cleanup may do about it — change the output, add an
//! error to it without losing any ([`AddError`], [`Errors`]), or stop a
//! panic ([`Exit::recover`], with `std`).
//!
//! One `Exit<T>` lives in each scope. The body's output goes in when the
//! body returns, the first panic when the body (or a cleanup) panics, and
//! the cancelled flag when the scope is dropped before it finished. Every
//! cleanup that asks for it gets `&mut Exit<T>` in turn, in the scope's
//! [`Order`](crate::Order), so a later cleanup sees what an earlier one did.

use core::fmt;
use core::ptr::NonNull;

use crate::panic::Panic;

/// How the body of a scope ended, as cleanup sees it.
///
/// | kind | when | [`output`](Exit::output) |
/// |---|---|---|
/// | [`Returned`](ExitKind::Returned) | the body returned, and no cleanup panicked since | `Some` (mutable: cleanup may change it) |
/// | [`Panicked`](ExitKind::Panicked) | the body, or a cleanup that ran before, panicked | `None` if the body panicked |
/// | [`Cancelled`](ExitKind::Cancelled) | the scope was dropped before it finished | `None` |
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// use deferral::{Exit, ExitKind};
/// let out = deferral::scope(async |d| {
///     // Go's named result: deferred code sees and changes it.
///     d.defer_with(|exit: &mut Exit<u32>| {
///         assert_eq!(exit.kind(), ExitKind::Returned);
///         if let Some(out) = exit.output_mut() {
///             *out *= 7;
///         }
///     });
///     6
/// })
/// .await;
/// assert_eq!(out, 42);
/// # });
/// # }
/// ```
pub struct Exit<T> {
    /// The body's output, if it returned (and was not taken back).
    pub(crate) out: Option<T>,
    /// The first panic of the body or of a cleanup, until it is resumed
    /// (or recovered).
    pub(crate) panic: Option<Panic>,
    /// [`CANCELLED`], [`UNWINDING`]. A byte next to the output's tag rather
    /// than a struct of its own: a scope's exit costs no padding.
    pub(crate) flags: u8,
}

/// The scope was dropped before it finished.
pub(crate) const CANCELLED: u8 = 1;
/// ... while the thread was unwinding from a panic elsewhere.
pub(crate) const UNWINDING: u8 = 2;

#[inline(always)]
fn kind_of(panicked: bool, flags: u8) -> ExitKind {
    if panicked {
        ExitKind::Panicked
    } else if flags & CANCELLED != 0 {
        ExitKind::Cancelled
    } else {
        ExitKind::Returned
    }
}

/// A scope's [`Exit`] as the cleanup loop passes it around without knowing
/// `T`: where the whole is, and where its untyped parts are inside it (a
/// constant per `T`): two words.
///
/// Payloads that know the scope's `T` reach the whole ([`End::exit`]); the
/// loop records panics, and payloads registered through the ambient API
/// (which do not know `T`) read the kind, through the offsets.
#[derive(Clone, Copy)]
pub(crate) struct End {
    exit: NonNull<u8>,
    at: &'static Offsets,
}

/// Where `panic` and `flags` are in an `Exit<T>`.
pub(crate) struct Offsets {
    panic: usize,
    flags: usize,
}

struct OffsetsOf<T>(core::marker::PhantomData<T>);

impl<T> OffsetsOf<T> {
    const OFFSETS: Offsets = Offsets {
        panic: core::mem::offset_of!(Exit<T>, panic),
        flags: core::mem::offset_of!(Exit<T>, flags),
    };
}

impl End {
    /// # Safety
    /// `exit` is valid (with provenance over all of it); the `End` (and
    /// every copy) is only used while it is, and never while a reference to
    /// it from elsewhere is in use.
    #[inline(always)]
    pub(crate) unsafe fn of<T>(exit: NonNull<Exit<T>>) -> End {
        End {
            exit: exit.cast(),
            at: &OffsetsOf::<T>::OFFSETS,
        }
    }

    #[inline(always)]
    fn panic(&self) -> *mut Option<Panic> {
        self.exit.as_ptr().wrapping_add(self.at.panic).cast()
    }

    #[inline(always)]
    fn flags(&self) -> *mut u8 {
        self.exit.as_ptr().wrapping_add(self.at.flags)
    }

    /// How the body ended.
    #[inline(always)]
    pub(crate) fn kind(&self) -> ExitKind {
        // SAFETY: fields of a valid `Exit`, not referenced elsewhere
        // meanwhile (`of`).
        unsafe { kind_of((*self.panic()).is_some(), *self.flags()) }
    }

    /// See [`Exit::is_unwinding`].
    #[inline(always)]
    pub(crate) fn is_unwinding(&self) -> bool {
        // SAFETY: as in `kind`.
        unsafe { (*self.panic()).is_some() || *self.flags() & UNWINDING != 0 }
    }

    /// Records a panic: the first one stays (it is the one that resumes).
    #[inline]
    pub(crate) fn record(&self, panic: Panic) {
        // SAFETY: as in `kind`.
        unsafe { (*self.panic()).get_or_insert(panic) };
    }

    /// The whole exit.
    ///
    /// # Safety
    /// The exit is an `Exit<T>`, and the reference is the only one in use
    /// while it lives.
    #[inline(always)]
    pub(crate) unsafe fn exit<'a, T>(&self) -> &'a mut Exit<T> {
        // SAFETY: as the caller guarantees.
        unsafe { self.exit.cast::<Exit<T>>().as_mut() }
    }
}

/// How a scope's body ended: see [`Exit`].
///
/// ```
/// use deferral::ExitKind;
/// assert_ne!(ExitKind::Returned, ExitKind::Cancelled);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// The body returned its output (and no cleanup panicked since).
    Returned,
    /// The body panicked, or a cleanup that ran before this one did.
    Panicked,
    /// The scope was dropped before the body (or its cleanup) finished.
    Cancelled,
}

impl<T> Exit<T> {
    pub(crate) const fn new() -> Self {
        Exit {
            out: None,
            panic: None,
            flags: 0,
        }
    }

    /// An exit with no scope behind it: a cleanup handed over after its
    /// scope was cancelled runs with this.
    pub(crate) const fn cancelled() -> Self {
        Exit {
            out: None,
            panic: None,
            flags: CANCELLED,
        }
    }

    /// How the body ended (see the table on [`Exit`]).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use deferral::{Exit, ExitKind};
    /// let mut scope = Box::pin(deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut Exit<()>| assert_eq!(exit.kind(), ExitKind::Cancelled));
    ///     std::future::pending::<()>().await
    /// }));
    /// let _ = futures::poll!(scope.as_mut());
    /// drop(scope); // cancelled: the cleanup runs and sees it
    /// # });
    /// # }
    /// ```
    #[inline]
    pub fn kind(&self) -> ExitKind {
        kind_of(self.panic.is_some(), self.flags)
    }

    /// The body returned (and no cleanup panicked since).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<()>| assert!(exit.is_returned()));
    /// })
    /// .await;
    /// # });
    /// # }
    /// ```
    #[inline]
    pub fn is_returned(&self) -> bool {
        self.kind() == ExitKind::Returned
    }

    /// The body, or a cleanup that ran before, panicked: the panic resumes
    /// after cleanup unless a cleanup [recovers](Exit::recover) it.
    ///
    /// ```
    /// # #[cfg(feature = "std")]
    /// # futures::executor::block_on(async {
    /// use futures::FutureExt;
    /// let panicked = std::panic::AssertUnwindSafe(deferral::scope(async |d| {
    ///     d.try_defer_with(|exit: &mut deferral::Exit<()>| assert!(exit.is_panicked())).unwrap();
    ///     panic!("boom");
    /// }))
    /// .catch_unwind()
    /// .await;
    /// assert!(panicked.is_err());
    /// # });
    /// ```
    #[inline]
    pub fn is_panicked(&self) -> bool {
        self.kind() == ExitKind::Panicked
    }

    /// The scope was dropped before it finished.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let mut scope = Box::pin(deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<()>| assert!(exit.is_cancelled()));
    ///     std::future::pending::<()>().await
    /// }));
    /// let _ = futures::poll!(scope.as_mut());
    /// # });
    /// # }
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.kind() == ExitKind::Cancelled
    }

    /// Cleanup runs because of a panic: the body's, an earlier cleanup's,
    /// or (with `std`) one unwinding through the code that dropped the
    /// scope. This is when [`defer_on_unwind`](crate::Defer::defer_on_unwind)
    /// cleanup runs, like `scopeguard::defer_on_unwind!`.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<()>| assert!(!exit.is_unwinding()));
    /// })
    /// .await;
    /// # });
    /// # }
    /// ```
    #[inline]
    pub fn is_unwinding(&self) -> bool {
        self.panic.is_some() || self.flags & UNWINDING != 0
    }

    /// The body's output, if it returned.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<u8>| assert_eq!(exit.output(), Some(&3)));
    ///     3
    /// })
    /// .await;
    /// # });
    /// # }
    /// ```
    #[inline]
    pub fn output(&self) -> Option<&T> {
        self.out.as_ref()
    }

    /// The body's output, to change: what the scope resolves to is the
    /// output after every cleanup ran (Go's named results).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<String>| {
    ///         if let Some(out) = exit.output_mut() {
    ///             out.push_str(", closed");
    ///         }
    ///     });
    ///     String::from("sent")
    /// })
    /// .await;
    /// assert_eq!(out, "sent, closed");
    /// # });
    /// # }
    /// ```
    #[inline]
    pub fn output_mut(&mut self) -> Option<&mut T> {
        self.out.as_mut()
    }

    /// The error the body returned (for `Result` outputs): `Some` when the
    /// output is `Err` — Zig's `errdefer |err|`.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<Result<(), String>>| {
    ///         if let Some(e) = exit.error_mut() {
    ///             e.insert_str(0, "rolled back: ");
    ///         }
    ///     });
    ///     Err(String::from("disk full"))
    /// })
    /// .await;
    /// assert_eq!(out, Err(String::from("rolled back: disk full")));
    /// # });
    /// # }
    /// ```
    #[inline]
    pub fn error_mut(&mut self) -> Option<&mut T::Error>
    where
        T: Fallible,
    {
        self.out.as_mut().and_then(Fallible::error_mut)
    }

    /// Adds a cleanup's error to the output, losing none where the output
    /// can hold them: `Ok` becomes `Err(error)`; an `Err` that is an
    /// [`Errors`] chain gets `error` appended. Hands `error` back if the
    /// output cannot take it (a plain `Err` already — the body's error
    /// wins, as in Go — or no output at all).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<Result<u8, &str>>| {
    ///         exit.add_error("close failed");
    ///     });
    ///     Ok(1)
    /// })
    /// .await;
    /// assert_eq!(out, Err("close failed"));
    /// # });
    /// # }
    /// ```
    #[inline]
    pub fn add_error<E>(&mut self, error: E) -> Option<E>
    where
        T: AddError<E>,
    {
        match &mut self.out {
            Some(out) => out.add_error(error),
            None => Some(error),
        }
    }

    /// The payload of the panic in flight, if any (`std`).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use futures::FutureExt;
    /// let _ = std::panic::AssertUnwindSafe(deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<()>| {
    ///         let payload = exit.panic_payload().unwrap();
    ///         assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    ///     });
    ///     panic!("boom");
    /// }))
    /// .catch_unwind()
    /// .await;
    /// # });
    /// # }
    /// ```
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn panic_payload(&self) -> Option<&(dyn core::any::Any + Send)> {
        self.panic.as_deref()
    }

    /// Stops the panic in flight, if any, and makes `output` the scope's
    /// output — Go's `recover()`. Returns the panic's payload; `None` (and
    /// `output` is dropped) if nothing is panicking.
    ///
    /// The scope then resolves normally, and the cleanup that runs after
    /// this one sees [`ExitKind::Returned`]. Recovering in a cancelled
    /// scope only stops the panic: nobody receives the output.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<&str>| {
    ///         if let Some(p) = exit.recover("recovered") {
    ///             println!("Recovered in f: {:?}", p.downcast_ref::<&str>());
    ///         }
    ///     });
    ///     panic!("boom")
    /// })
    /// .await;
    /// assert_eq!(out, "recovered");
    /// # });
    /// # }
    /// ```
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn recover(&mut self, output: T) -> Option<std::boxed::Box<dyn core::any::Any + Send>> {
        let payload = self.panic.take()?;
        // The old output (left by a body that returned before a cleanup
        // panicked) is replaced; dropping it is the caller's foreign code,
        // run after the state is consistent again.
        let old = self.out.replace(output);
        drop(old);
        Some(payload)
    }
}

impl<T: fmt::Debug> fmt::Debug for Exit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exit")
            .field("kind", &self.kind())
            .field("output", &self.out)
            .finish_non_exhaustive()
    }
}

/// An output that may be an error: `Result`. What
/// [`defer_on_error`](crate::Defer::defer_on_error) and
/// [`Exit::error_mut`] look at.
///
/// ```
/// use deferral::Fallible;
/// let mut out: Result<u8, &str> = Err("no");
/// assert_eq!(out.error_mut(), Some(&mut "no"));
/// ```
pub trait Fallible {
    /// The error type.
    type Error;
    /// The error, if this is one.
    ///
    /// ```
    /// use deferral::Fallible;
    /// let mut out: Result<u8, String> = Ok(1);
    /// assert!(out.error_mut().is_none());
    /// ```
    fn error_mut(&mut self) -> Option<&mut Self::Error>;
}

impl<U, E> Fallible for Result<U, E> {
    type Error = E;
    #[inline]
    fn error_mut(&mut self) -> Option<&mut E> {
        self.as_mut().err()
    }
}

/// An output a cleanup's error can be added to.
///
/// - `Result<U, E>` takes an `E` if it is `Ok` (it becomes `Err`); the
///   body's own error wins over a cleanup's, which is handed back.
/// - `Result<U, Errors<E>>` takes every `E`: `Ok` becomes `Err`, and an
///   `Err` gets it appended — no error is lost.
///
/// ```
/// use deferral::AddError;
/// let mut first: Result<(), &str> = Err("body");
/// assert_eq!(first.add_error("close"), Some("close")); // handed back
/// # #[cfg(feature = "alloc")] {
/// # use deferral::Errors;
/// let mut all: Result<(), Errors<&str>> = Err(Errors::new("body"));
/// assert_eq!(all.add_error("close"), None);
/// assert_eq!(all.unwrap_err().iter().collect::<Vec<_>>(), [&"body", &"close"]);
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "a cleanup's `{E}` cannot be added to the scope's output `{Self}`",
    label = "the scope's output must be a `Result<_, {E}>` (or `Result<_, deferral::Errors<{E}>>`)",
    note = "map the cleanup's error into the body's error type, or ignore it explicitly with `let _ = ..`"
)]
pub trait AddError<E> {
    /// Adds `error`; hands it back if it could not be kept.
    ///
    /// ```
    /// use deferral::AddError;
    /// let mut out: Result<u8, &str> = Ok(1);
    /// assert_eq!(out.add_error("close failed"), None);
    /// assert_eq!(out, Err("close failed"));
    /// ```
    fn add_error(&mut self, error: E) -> Option<E>;
}

impl<U, E> AddError<E> for Result<U, E> {
    #[inline]
    fn add_error(&mut self, error: E) -> Option<E> {
        if self.is_ok() {
            *self = Err(error);
            return None;
        }
        Some(error)
    }
}

#[cfg(feature = "alloc")]
impl<U, E> AddError<E> for Result<U, Errors<E>> {
    #[inline]
    fn add_error(&mut self, error: E) -> Option<E> {
        match self {
            Ok(_) => *self = Err(Errors::new(error)),
            Err(errors) => errors.push(error),
        }
        None
    }
}

/// What a cleanup may finish with, and what the scope does with it:
///
/// - `()`: nothing (nor does `!`, for a cleanup that only panics).
/// - `Result<(), E>`: an `Err` is [added](Exit::add_error) to the output
///   (so a failing `close()` turns `Ok` into `Err`) — the output must be
///   able to take it ([`AddError`]).
/// - `FnOnce(&mut Exit<T>)`: called with the scope's [`Exit`], to change
///   the output after async work.
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// struct Conn;
/// impl Conn {
///     async fn close(self) -> Result<(), String> {
///         Err("close failed".into())
///     }
/// }
/// let out = deferral::scope(async |d| {
///     let _conn = d.guard_async(Conn, |c| c.close());
///     Ok(())
/// })
/// .await;
/// assert_eq!(out, Err("close failed".to_string()));
/// # });
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "a cleanup that returns `{Self}` cannot report to a scope whose output is `{T}`",
    label = "cleanup must return `()`, a `Result<(), E>` the output can take, or a `FnOnce(&mut Exit<_>)`",
    note = "ignore a result explicitly with `let _ = ..` if it does not matter"
)]
pub trait CleanupOutput<T>: sealed::Sealed<T> {
    /// `()`: nothing to report (the exit is not even looked at).
    #[doc(hidden)]
    const SILENT: bool = false;
    /// Reports to the scope's exit (the scope does this with what a
    /// cleanup returns).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// use deferral::{CleanupOutput, Exit};
    /// let out = deferral::scope(async |d| {
    ///     // By hand, what returning `Err("flush failed")` from cleanup does:
    ///     d.defer_with(|exit: &mut Exit<Result<(), &str>>| Err("flush failed").report(exit));
    ///     Ok(())
    /// })
    /// .await;
    /// assert_eq!(out, Err("flush failed"));
    /// # });
    /// # }
    /// ```
    fn report(self, exit: &mut Exit<T>);
}

mod sealed {
    pub trait Sealed<T> {}
    impl<T> Sealed<T> for () {}
    impl<T> Sealed<T> for super::Never {}
    impl<T, E> Sealed<T> for Result<(), E> {}
    impl<T, F: FnOnce(&mut super::Exit<T>)> Sealed<T> for F {}
}

impl<T> CleanupOutput<T> for () {
    const SILENT: bool = true;
    #[inline(always)]
    fn report(self, _: &mut Exit<T>) {}
}

/// `!`, named on stable Rust: the return type of `fn() -> !`.
#[doc(hidden)]
pub trait Returns {
    type Output;
}
impl<R> Returns for fn() -> R {
    type Output = R;
}
/// The never type (`!`), which a cleanup that only panics returns
/// (`|| unreachable!()`: on edition 2024 its type falls back to `!`).
type Never = <fn() -> ! as Returns>::Output;

impl<T> CleanupOutput<T> for Never {
    const SILENT: bool = true;
    #[inline(always)]
    fn report(self, _: &mut Exit<T>) {}
}

impl<T: AddError<E>, E> CleanupOutput<T> for Result<(), E> {
    #[inline]
    fn report(self, exit: &mut Exit<T>) {
        if let Err(error) = self {
            // Handed back (the body's error wins, or no output): dropped.
            drop(exit.add_error(error));
        }
    }
}

impl<T, F: FnOnce(&mut Exit<T>)> CleanupOutput<T> for F {
    #[inline]
    fn report(self, exit: &mut Exit<T>) {
        self(exit)
    }
}

/// Every error of a scope, in order: the body's first, then each cleanup's
/// — JavaScript's `SuppressedError`, flattened, for Rust's `?` (`alloc`).
///
/// Make the body return `Result<_, Errors<E>>` and no cleanup error is
/// lost: a cleanup returning `Err(e)` ([`CleanupOutput`]) or calling
/// [`Exit::add_error`] appends it. `?` on an `E` in the body works
/// (`From<E>`), and `?` on the scope's result converts into
/// `Box<dyn Error>` (or anything `From<Errors<E>>`; `io::Error` is).
///
/// [`Display`](fmt::Display) shows the first error and how many followed;
/// the alternate form (`{:#}`) shows them all. [`Error::source`] walks the
/// chain: the source of each error in it is the next one.
///
/// [`Error::source`]: core::error::Error::source
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// use deferral::Errors;
/// let out: Result<(), Errors<String>> = deferral::scope(async |d| {
///     d.defer(|| Err("second disposal failed".to_string()));
///     d.defer(|| Err("first disposal failed".to_string()));
///     Err("the body failed".to_string())?
/// })
/// .await;
/// let errors = out.unwrap_err();
/// assert_eq!(
///     errors.iter().map(String::as_str).collect::<Vec<_>>(),
///     ["the body failed", "first disposal failed", "second disposal failed"]
/// );
/// assert_eq!(errors.to_string(), "the body failed (and 2 more)");
/// # });
/// # }
/// ```
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub struct Errors<E> {
    error: E,
    next: Option<alloc::boxed::Box<Errors<E>>>,
}

#[cfg(feature = "alloc")]
impl<E> Errors<E> {
    /// A chain of one error.
    ///
    /// ```
    /// assert_eq!(deferral::Errors::new("e").len(), 1);
    /// ```
    pub fn new(error: E) -> Self {
        Errors { error, next: None }
    }

    /// Appends an error to the chain.
    ///
    /// ```
    /// let mut errors = deferral::Errors::new("a");
    /// errors.push("b");
    /// assert_eq!(errors.len(), 2);
    /// ```
    pub fn push(&mut self, error: E) {
        let mut last = self;
        while let Some(ref mut next) = last.next {
            last = next;
        }
        last.next = Some(alloc::boxed::Box::new(Errors::new(error)));
    }

    /// The first error (the body's, if it failed).
    ///
    /// ```
    /// assert_eq!(*deferral::Errors::new("a").first(), "a");
    /// ```
    pub fn first(&self) -> &E {
        &self.error
    }

    /// The errors after the first, as a chain, if any.
    ///
    /// ```
    /// let mut errors = deferral::Errors::new("a");
    /// errors.push("b");
    /// assert_eq!(errors.rest().map(|r| *r.first()), Some("b"));
    /// ```
    pub fn rest(&self) -> Option<&Errors<E>> {
        self.next.as_deref()
    }

    /// How many errors (at least one).
    ///
    /// ```
    /// assert_eq!(deferral::Errors::new(()).len(), 1);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The errors, in order.
    ///
    /// ```
    /// let mut errors = deferral::Errors::new(1);
    /// errors.push(2);
    /// assert_eq!(errors.iter().sum::<i32>(), 3);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        let mut next = Some(self);
        core::iter::from_fn(move || {
            let this = next?;
            next = this.next.as_deref();
            Some(&this.error)
        })
    }

    /// The errors, in order, by value.
    ///
    /// ```
    /// let mut errors = deferral::Errors::new("a");
    /// errors.push("b");
    /// assert_eq!(errors.into_vec(), ["a", "b"]);
    /// ```
    pub fn into_vec(self) -> alloc::vec::Vec<E> {
        let mut all = alloc::vec::Vec::with_capacity(self.len());
        let mut node = core::mem::ManuallyDrop::new(self);
        loop {
            let next = node.next.take();
            // SAFETY: `node` is never used or dropped again (it is in a
            // `ManuallyDrop`, and replaced right below), so its error is
            // moved out exactly once; its `next` was taken first.
            all.push(unsafe { core::ptr::read(&node.error) });
            match next {
                Some(boxed) => node = core::mem::ManuallyDrop::new(*boxed),
                None => return all,
            }
        }
    }
}

#[cfg(feature = "alloc")]
impl<E> Drop for Errors<E> {
    fn drop(&mut self) {
        // Iteratively: a long chain must not overflow the stack.
        let mut next = self.next.take();
        while let Some(mut boxed) = next {
            next = boxed.next.take();
        }
    }
}

#[cfg(feature = "alloc")]
impl<E> From<E> for Errors<E> {
    fn from(error: E) -> Self {
        Errors::new(error)
    }
}

#[cfg(feature = "alloc")]
impl<E: fmt::Debug> fmt::Debug for Errors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "alloc")]
impl<E: fmt::Display> fmt::Display for Errors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            for (i, error) in self.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{error}")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.error)?;
        match self.len() - 1 {
            0 => Ok(()),
            more => write!(f, " (and {more} more)"),
        }
    }
}

#[cfg(feature = "alloc")]
impl<E: core::error::Error + 'static> core::error::Error for Errors<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.next
            .as_deref()
            .map(|next| next as &(dyn core::error::Error + 'static))
    }
}

/// `?` from a scope returning `Result<_, Errors<io::Error>>` into
/// `io::Result`: the kind of the first error, with the whole chain inside.
#[cfg(feature = "std")]
impl From<Errors<std::io::Error>> for std::io::Error {
    fn from(errors: Errors<std::io::Error>) -> Self {
        std::io::Error::new(errors.first().kind(), errors)
    }
}
