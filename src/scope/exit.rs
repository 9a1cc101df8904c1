//! How a scope's body ended, as cleanup sees it: [`Exit`] (the output, the
//! panic, and what cleanup may do about them), the [`Outcome`] in one word,
//! [`When`] a registration runs, and how a cleanup's error reaches the
//! output ([`CleanupOutput`], [`Errors`]).
//!
//! One `Exit<T>` lives in each scope. The body's output goes in when the
//! body returns, the first panic when the body (or a cleanup) panics, and
//! the cancelled flag when the scope is dropped before its body returned.
//! Every cleanup that asks for it gets `&mut Exit<T>` in turn, in the
//! scope's order, so a later cleanup sees what an earlier one did.
//!
//! `Exit<T>` is `repr(C)` with its untyped part, [`ExitHead`], first: the
//! cleanup loop, which knows nothing of `T`, reaches the head through the
//! same pointer that typed cleanup casts to `Exit<T>` (tokio's task
//! `Header` trick). Cleanup that runs away from its scope (handed over after
//! a cancellation, or in a [`DeferStack`](crate::scope::DeferStack)) gets a
//! *detached* head that carries only the outcome.

use core::fmt;
use core::ptr::NonNull;

use crate::panic::Panic;

/// The part of an [`Exit`] that does not depend on the output type.
#[repr(C)]
pub(crate) struct ExitHead {
    /// The first panic of the body or of a cleanup, until it is resumed
    /// (or recovered).
    pub(crate) panic: Option<Panic>,
    /// [`CANCELLED`], [`UNWINDING`], [`DETACHED`] and, when detached, the
    /// outcome (two bits at [`OUTCOME_SHIFT`]).
    pub(crate) flags: u8,
}

/// The scope was dropped before its body returned.
pub(crate) const CANCELLED: u8 = 1;
/// The scope was dropped while a panic unwound through its owner.
pub(crate) const UNWINDING: u8 = 2;
/// No `Exit<T>` around this head: a cleanup running away from its scope.
pub(crate) const DETACHED: u8 = 4;
const OUTCOME_SHIFT: u32 = 4;

/// Is the output of the exit at this head an error? (`Fallible` outputs;
/// chosen where the output type is known, called where it is not.)
pub(crate) type Classify = unsafe fn(NonNull<ExitHead>) -> bool;

/// # Safety
/// `head` is the head of a live `Exit<T>`, not borrowed elsewhere.
pub(crate) unsafe fn classify<T: Fallible>(head: NonNull<ExitHead>) -> bool {
    // SAFETY: as the caller guarantees (`Exit<T>` is `repr(C)`, head first).
    let exit = unsafe { head.cast::<Exit<T>>().as_ref() };
    exit.out.as_ref().is_some_and(|out| out.error().is_some())
}

impl ExitHead {
    pub(crate) const fn new(flags: u8) -> Self {
        ExitHead { panic: None, flags }
    }

    /// A head for cleanup that runs away from its scope, which ended with
    /// `outcome`.
    pub(crate) const fn detached(outcome: Outcome) -> Self {
        ExitHead::new(DETACHED | ((outcome as u8) << OUTCOME_SHIFT))
    }

    /// How the scope ended; `err` says whether its output is an error
    /// (asked only when the body returned and nothing panicked since).
    #[inline]
    pub(crate) fn outcome(&self, err: impl FnOnce() -> bool) -> Outcome {
        if self.flags & DETACHED != 0 {
            return Outcome::from_bits(self.flags >> OUTCOME_SHIFT);
        }
        if self.panic.is_some() || self.flags & (CANCELLED | UNWINDING) == CANCELLED | UNWINDING
        {
            Outcome::Panicked
        } else if self.flags & CANCELLED != 0 {
            Outcome::Cancelled
        } else if err() {
            Outcome::Err
        } else {
            Outcome::Ok
        }
    }

    /// The outcome as untyped code sees it: `classify` (if any) tells an
    /// `Err` output from an `Ok` one.
    ///
    /// # Safety
    /// `head` is live and not borrowed elsewhere; `classify` fits its exit.
    #[inline]
    pub(crate) unsafe fn outcome_at(head: NonNull<ExitHead>, classify: Option<Classify>) -> Outcome {
        // SAFETY: as the caller guarantees.
        unsafe { head.as_ref() }.outcome(|| classify.is_some_and(|c| unsafe { c(head) }))
    }

    /// Records a panic: the first one stays (it is the one that resumes).
    pub(crate) fn record(&mut self, panic: Panic) {
        self.panic.get_or_insert(panic);
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.flags & DETACHED != 0
    }
}

/// How the body of a scope ended, as cleanup sees it: its output (which
/// cleanup may change — Go's named results), the panic in flight (which it
/// may stop — Go's `recover`), and the [`Outcome`].
///
/// | [`outcome`](Exit::outcome) | when | [`output`](Exit::output) |
/// |---|---|---|
/// | [`Ok`](Outcome::Ok) | the body returned a value that is not an `Err`, and no cleanup panicked since | `Some` |
/// | [`Err`](Outcome::Err) | the body returned an `Err` (or a cleanup's error made it one) | `Some` |
/// | [`Panicked`](Outcome::Panicked) | the body, or a cleanup that ran before, panicked | `None` if the body panicked |
/// | [`Cancelled`](Outcome::Cancelled) | the scope was dropped before its body returned | `None` |
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::Exit;
/// let out = deferral::scope(async |d| {
///     d.defer_with(|exit: &mut Exit<u32>| {
///         if let Some(out) = exit.output_mut() {
///             *out *= 7; // Go's named result, changed by deferred code
///         }
///     });
///     6
/// })
/// .await;
/// assert_eq!(out, 42);
/// # });
/// ```
#[repr(C)]
pub struct Exit<T> {
    pub(crate) head: ExitHead,
    /// The body's output, if it returned (and was not taken back).
    pub(crate) out: Option<T>,
}

impl<T> Exit<T> {
    pub(crate) const fn new() -> Self {
        Exit {
            head: ExitHead::new(0),
            out: None,
        }
    }

    /// How the body ended (see the table on [`Exit`]). Needs an output
    /// that can tell success from failure ([`Fallible`]: a `Result`, or
    /// `()`); otherwise ask [`is_panicked`](Self::is_panicked) and
    /// [`is_cancelled`](Self::is_cancelled).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::{Exit, Outcome};
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut Exit<Result<(), &str>>| {
    ///         assert_eq!(exit.outcome(), Outcome::Err);
    ///     });
    ///     Err("failed")
    /// })
    /// .await;
    /// assert!(out.is_err());
    /// # });
    /// ```
    #[inline]
    pub fn outcome(&self) -> Outcome
    where
        T: Fallible,
    {
        self.head
            .outcome(|| self.out.as_ref().is_some_and(|out| out.error().is_some()))
    }

    /// The body returned (it may have returned an `Err`) and nothing
    /// panicked since: "no panic", for outputs of any type.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<u8>| assert!(exit.is_returned()));
    ///     1
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline]
    pub fn is_returned(&self) -> bool {
        self.head.outcome(|| false) == Outcome::Ok
    }

    /// The body, or a cleanup that ran before, panicked (or the scope was
    /// dropped by a panic unwinding through its owner): the panic resumes
    /// after cleanup unless a cleanup [recovers](Exit::recover) it.
    ///
    /// ```
    /// # #[cfg(feature = "std")]
    /// # futures::executor::block_on(async {
    /// use futures::FutureExt;
    /// let panicked = std::panic::AssertUnwindSafe(deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<()>| assert!(exit.is_panicked()));
    ///     panic!("boom");
    /// }))
    /// .catch_unwind()
    /// .await;
    /// assert!(panicked.is_err());
    /// # });
    /// ```
    #[inline]
    pub fn is_panicked(&self) -> bool {
        self.head.outcome(|| false) == Outcome::Panicked
    }

    /// The scope was dropped before its body returned.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let mut scope = Box::pin(deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<()>| assert!(exit.is_cancelled()));
    ///     std::future::pending::<()>().await
    /// }));
    /// let _ = futures::poll!(scope.as_mut());
    /// drop(scope); // cancelled: the cleanup runs and sees it
    /// # });
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.head.outcome(|| false) == Outcome::Cancelled
    }

    /// A panic is in flight: the body's, an earlier cleanup's, or (with
    /// `std`) one unwinding through the code that dropped the scope —
    /// scopeguard's `OnUnwind`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<()>| assert!(!exit.is_unwinding()));
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline]
    pub fn is_unwinding(&self) -> bool {
        self.head.panic.is_some() || self.head.flags & UNWINDING != 0
    }

    /// The body's output, if it returned.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<u8>| assert_eq!(exit.output(), Some(&3)));
    ///     3
    /// })
    /// .await;
    /// # });
    /// ```
    #[inline]
    pub fn output(&self) -> Option<&T> {
        self.out.as_ref()
    }

    /// The body's output, to change: the scope resolves to the output as
    /// the last cleanup left it.
    ///
    /// ```
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
    /// ```
    #[inline]
    pub fn output_mut(&mut self) -> Option<&mut T> {
        self.out.as_mut()
    }

    /// The error the body returned, if it did — Zig's `errdefer |err|`.
    ///
    /// ```
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
    /// ```
    #[inline]
    pub fn error_mut(&mut self) -> Option<&mut T::Error>
    where
        T: Fallible,
    {
        self.out.as_mut().and_then(Fallible::error_mut)
    }

    /// The payload of the panic in flight, if any (`std`).
    ///
    /// ```
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
    /// ```
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn panic_payload(&self) -> Option<&(dyn core::any::Any + Send)> {
        self.head.panic.as_deref()
    }

    /// Stops the panic in flight, if any, and makes `output` the scope's
    /// output — Go's `recover()`. Returns the panic's payload; `None` (and
    /// `output` is dropped) if nothing is panicking. The cleanup that runs
    /// after this one sees the body as returned — unless the scope was
    /// cancelled before its body returned: the panic is stopped, but there
    /// is no output to give anyone (`output` is dropped) and it stays
    /// [cancelled](Exit::is_cancelled).
    ///
    /// ```
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
    /// ```
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn recover(&mut self, output: T) -> Option<std::boxed::Box<dyn core::any::Any + Send>> {
        let payload = self.head.panic.take()?;
        if self.head.flags & CANCELLED != 0 {
            // Nobody receives an output: the exit stays "cancelled, no
            // output" (dropping `output` is foreign code, run last).
            drop(output);
            return Some(payload);
        }
        // The old output (left by a body that returned before a cleanup
        // panicked) is replaced; dropping it is foreign code, run once the
        // exit is consistent again.
        let old = self.out.replace(output);
        drop(old);
        Some(payload)
    }
}

impl<U, E> Exit<Result<U, E>> {
    /// Adds a cleanup's error to the output, converted with `From` as `?`
    /// does: `Ok` becomes `Err(error.into())`. If the output is an `Err`
    /// already, the body's error stays (it is the cause; the cleanup's is
    /// usually its consequence, as in Go's
    /// `if err == nil { err = f.Close() }`) and `error` is handed back —
    /// unless the output collects them all ([`Errors<E>`](Errors)), which
    /// appends it.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_with(|exit: &mut deferral::Exit<Result<u8, String>>| {
    ///         exit.add_error("close failed"); // &str into String
    ///     });
    ///     Ok(1)
    /// })
    /// .await;
    /// assert_eq!(out, Err("close failed".to_string()));
    /// # });
    /// ```
    pub fn add_error<F>(&mut self, error: F) -> Option<F>
    where
        E: From<F> + 'static,
        F: 'static,
    {
        match &mut self.out {
            Some(Ok(_)) => {
                self.out = Some(Err(E::from(error)));
                None
            }
            Some(Err(first)) => append(first, error),
            None => Some(error),
        }
    }
}

/// Appends `error` to `first` if that collects errors of its type
/// ([`Errors<F>`]); hands it back otherwise.
fn append<E: 'static, F: 'static>(first: &mut E, error: F) -> Option<F> {
    #[cfg(feature = "alloc")]
    {
        let any: &mut dyn core::any::Any = first;
        if let Some(all) = any.downcast_mut::<Errors<F>>() {
            all.push(error);
            return None;
        }
    }
    let _ = first;
    Some(error)
}

impl<T: fmt::Debug> fmt::Debug for Exit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exit")
            .field("output", &self.out)
            .field("panicked", &self.is_panicked())
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// How a scope's body ended, in one word: what an async cleanup that
/// asks for it receives ([`Defer::guard_async_with`](crate::Defer::guard_async_with)),
/// and what [`When`] tests.
///
/// ```
/// use deferral::Outcome;
/// assert!(Outcome::Ok.is_ok());
/// assert!(Outcome::Cancelled.is_failure());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Outcome {
    /// The body returned, and its output is not an `Err`.
    Ok = 0,
    /// The body returned an `Err`.
    Err = 1,
    /// The body (or a cleanup that ran before) panicked, or the scope was
    /// dropped by a panic unwinding through its owner.
    Panicked = 2,
    /// The scope was dropped before its body returned (a timeout, a losing
    /// `select!` branch, an aborted task).
    Cancelled = 3,
}

impl Outcome {
    fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Outcome::Ok,
            1 => Outcome::Err,
            2 => Outcome::Panicked,
            _ => Outcome::Cancelled,
        }
    }

    /// The body succeeded: commit.
    ///
    /// ```
    /// assert!(!deferral::Outcome::Err.is_ok());
    /// ```
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }

    /// Anything but success — an error, a panic, a cancellation: roll back.
    ///
    /// ```
    /// assert!(deferral::Outcome::Panicked.is_failure());
    /// ```
    pub fn is_failure(self) -> bool {
        self != Outcome::Ok
    }
}

/// When a registration runs, as a value — scopeguard's `Strategy`, Zig's
/// `errdefer` — set with [`Registration::when`](crate::Registration::when)
/// or [`Guard::when`](crate::Guard::when). A registration whose condition
/// does not hold for how the body ended is dropped unrun (a guarded value
/// is dropped, or given to its fallback), and never handed over after a
/// cancellation.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::When;
/// let out: Result<(), &str> = deferral::scope(async |d| {
///     d.defer(|| println!("rolled back")).when(When::Err); // errdefer
///     d.defer(|| unreachable!("not committed")).when(When::Ok);
///     Err("failed")
/// })
/// .await;
/// assert!(out.is_err());
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum When {
    /// However the body ended (Go's `defer`): the default.
    #[default]
    Always = 0,
    /// The body succeeded ([`Outcome::Ok`]): commit.
    Ok = 1,
    /// The body returned an `Err` ([`Outcome::Err`]): Zig's `errdefer`.
    Err = 2,
    /// Anything but success: an error, a panic, a cancellation — roll back.
    Failed = 3,
    /// A panic ([`Outcome::Panicked`]): scopeguard's `OnUnwind`.
    Panicked = 4,
    /// The scope was dropped before its body returned.
    Cancelled = 5,
    /// Anything but a panic — the body returned (`Ok` or `Err`) or the
    /// scope was dropped without unwinding: scopeguard's `OnSuccess`
    /// (`guard_on_success`), which runs whenever the thread is not
    /// panicking. Stricter, [`Ok`](When::Ok) also skips an `Err` output and
    /// a cancellation.
    ///
    /// ```
    /// use deferral::{Outcome, When};
    /// assert!(When::NotPanicked.holds(Outcome::Err));
    /// assert!(When::NotPanicked.holds(Outcome::Cancelled));
    /// assert!(!When::NotPanicked.holds(Outcome::Panicked));
    /// ```
    NotPanicked = 6,
}

impl When {
    pub(crate) const fn from_bits(bits: usize) -> Self {
        match bits {
            1 => When::Ok,
            2 => When::Err,
            3 => When::Failed,
            4 => When::Panicked,
            5 => When::Cancelled,
            6 => When::NotPanicked,
            _ => When::Always,
        }
    }

    /// Whether a registration with this condition runs after `outcome`.
    ///
    /// ```
    /// use deferral::{Outcome, When};
    /// assert!(When::Failed.holds(Outcome::Cancelled));
    /// assert!(!When::Ok.holds(Outcome::Err));
    /// ```
    pub fn holds(self, outcome: Outcome) -> bool {
        // One bit per (condition, outcome): four bits a condition, in
        // `When` order, bit `outcome` (`Ok`, `Err`, `Panicked`,
        // `Cancelled`) set when it runs. A shift and a mask, no branch.
        const RUNS: u32 = {
            let rows: [u32; 7] = [
                0b1111, // Always
                0b0001, // Ok
                0b0010, // Err
                0b1110, // Failed: anything but Ok
                0b0100, // Panicked
                0b1000, // Cancelled
                0b1011, // NotPanicked: anything but Panicked
            ];
            let mut packed = 0;
            let mut i = 0;
            while i < rows.len() {
                packed |= rows[i] << (4 * i);
                i += 1;
            }
            packed
        };
        (RUNS >> (self as u32 * 4 + outcome as u32)) & 1 != 0
    }
}

/// An output that can tell success from failure: `Result` (an `Err` is a
/// failure), `()` and `!` (never one). What [`Exit::outcome`], [`When`] and
/// [`Outcome`] need.
///
/// ```
/// use deferral::scope::Fallible;
/// let mut out: Result<u8, &str> = Err("no");
/// assert_eq!(out.error_mut(), Some(&mut "no"));
/// ```
#[diagnostic::on_unimplemented(
    message = "the scope's output `{Self}` cannot tell success from failure",
    label = "needs an output that is a `Result` (or `()`)",
    note = "return a `Result` from the body, or use `defer_with` and `Exit::is_panicked` / `is_cancelled`"
)]
pub trait Fallible {
    /// The error type.
    type Error;
    /// The error, if this is one.
    ///
    /// ```
    /// use deferral::scope::Fallible;
    /// assert!(Ok::<u8, ()>(1).error().is_none());
    /// ```
    fn error(&self) -> Option<&Self::Error>;
    /// The error, if this is one, to change.
    ///
    /// ```
    /// use deferral::scope::Fallible;
    /// let mut out: Result<u8, String> = Ok(1);
    /// assert!(out.error_mut().is_none());
    /// ```
    fn error_mut(&mut self) -> Option<&mut Self::Error>;
}

impl<U, E> Fallible for Result<U, E> {
    type Error = E;
    #[inline]
    fn error(&self) -> Option<&E> {
        self.as_ref().err()
    }
    #[inline]
    fn error_mut(&mut self) -> Option<&mut E> {
        self.as_mut().err()
    }
}

/// A body that only panics (its output type is `!`) never fails.
impl Fallible for Never {
    type Error = core::convert::Infallible;
    #[inline]
    fn error(&self) -> Option<&Self::Error> {
        None
    }
    #[inline]
    fn error_mut(&mut self) -> Option<&mut Self::Error> {
        None
    }
}

impl Fallible for () {
    type Error = core::convert::Infallible;
    #[inline]
    fn error(&self) -> Option<&Self::Error> {
        None
    }
    #[inline]
    fn error_mut(&mut self) -> Option<&mut Self::Error> {
        None
    }
}

/// What a cleanup may finish with, and what the scope does with it:
///
/// - `()`: nothing (nor does `!`, for a cleanup that only panics).
/// - `Result<(), E>`: an `Err` is [added](Exit::add_error) to the output,
///   converted with `From` as `?` does — a failing `close()` turns `Ok`
///   into `Err`.
/// - `FnOnce(&mut Exit<T>)`: called with the scope's [`Exit`], to change
///   the output after async work.
///
/// ```
/// # futures::executor::block_on(async {
/// #[derive(Debug)]
/// struct DbError;
/// #[derive(Debug)]
/// enum AppError { Db(DbError) }
/// impl From<DbError> for AppError {
///     fn from(e: DbError) -> Self { AppError::Db(e) }
/// }
/// struct Conn;
/// impl Conn {
///     async fn close(self) -> Result<(), DbError> { Err(DbError) }
/// }
/// let out: Result<(), AppError> = deferral::scope(async |d| {
///     let _conn = d.guard_async(Conn, Conn::close);
///     Ok(())
/// })
/// .await;
/// assert!(matches!(out, Err(AppError::Db(DbError))));
/// # });
/// ```
#[diagnostic::on_unimplemented(
    message = "a cleanup that returns `{Self}` cannot report to a scope whose output is `{T}`",
    label = "cleanup must return `()`, a `Result<(), E>` whose `E` converts into the output's error, or a `FnOnce(&mut Exit<_>)`",
    note = "ignore a result explicitly with `let _ = ..` if it does not matter"
)]
pub trait CleanupOutput<T>: sealed::Sealed<T> {
    /// `()`: nothing to report (the exit is not even looked at).
    #[doc(hidden)]
    const SILENT: bool = false;
    /// Reports to the scope's exit (the scope does this with what a
    /// cleanup returns).
    #[doc(hidden)]
    fn report(self, exit: &mut Exit<T>);
}

mod sealed {
    pub trait Sealed<T> {}
    impl<T> Sealed<T> for () {}
    impl<T> Sealed<T> for super::Never {}
    impl<U, E, F> Sealed<Result<U, E>> for Result<(), F> {}
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
/// The never type (`!`), which a cleanup that only panics returns.
type Never = <fn() -> ! as Returns>::Output;

impl<T> CleanupOutput<T> for Never {
    const SILENT: bool = true;
    #[inline(always)]
    fn report(self, _: &mut Exit<T>) {}
}

impl<U, E, F> CleanupOutput<Result<U, E>> for Result<(), F>
where
    E: From<F> + 'static,
    F: 'static,
{
    #[inline]
    fn report(self, exit: &mut Exit<Result<U, E>>) {
        if let Err(error) = self {
            // Handed back (the body's error stays, or no output): dropped.
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

/// Every error of a scope, oldest first: the body's, then each failing
/// cleanup's — Go's `errors.Join`, JavaScript's `SuppressedError` flattened
/// (`alloc`).
///
/// Make the body return `Result<_, Errors<E>>` and no cleanup error is
/// lost: a cleanup returning `Err(e)` appends it. `?` on an `E` in the body
/// works (`From<E>`). [`first`](Errors::first) is the oldest error (the
/// body's, if it failed) and [`last`](Errors::last) the newest;
/// [`Display`](fmt::Display) shows the first and how many came later (`{:#}`
/// shows them all, oldest first). [`Error::source`] is the first error's
/// source: its cause, not its siblings.
///
/// [`Error::source`]: core::error::Error::source
///
/// ```
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
/// assert_eq!(errors.to_string(), "the body failed (and 2 later errors)");
/// assert_eq!(errors.last(), "second disposal failed");
/// # });
/// ```
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub struct Errors<E> {
    first: E,
    rest: alloc::vec::Vec<E>,
}

#[cfg(feature = "alloc")]
impl<E> Errors<E> {
    /// A collection of one error.
    ///
    /// ```
    /// assert_eq!(deferral::Errors::new("e").len(), 1);
    /// ```
    pub fn new(error: E) -> Self {
        Errors {
            first: error,
            rest: alloc::vec::Vec::new(),
        }
    }

    /// Appends a newer error.
    ///
    /// ```
    /// let mut errors = deferral::Errors::new("a");
    /// errors.push("b");
    /// assert_eq!(errors.len(), 2);
    /// ```
    pub fn push(&mut self, error: E) {
        self.rest.push(error);
    }

    /// The oldest error (the body's, if it failed).
    ///
    /// ```
    /// assert_eq!(*deferral::Errors::new("a").first(), "a");
    /// ```
    pub fn first(&self) -> &E {
        &self.first
    }

    /// The newest error (the last cleanup's to fail).
    ///
    /// ```
    /// let mut errors = deferral::Errors::new("a");
    /// errors.push("b");
    /// assert_eq!(*errors.last(), "b");
    /// ```
    pub fn last(&self) -> &E {
        self.rest.last().unwrap_or(&self.first)
    }

    /// How many errors (at least one).
    ///
    /// ```
    /// assert_eq!(deferral::Errors::new(()).len(), 1);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        1 + self.rest.len()
    }

    /// The errors, oldest first.
    ///
    /// ```
    /// let mut errors = deferral::Errors::new(1);
    /// errors.push(2);
    /// assert_eq!(errors.iter().sum::<i32>(), 3);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        core::iter::once(&self.first).chain(&self.rest)
    }

    /// The errors, oldest first, by value.
    ///
    /// ```
    /// let mut errors = deferral::Errors::new("a");
    /// errors.push("b");
    /// assert_eq!(errors.into_vec(), ["a", "b"]);
    /// ```
    pub fn into_vec(self) -> alloc::vec::Vec<E> {
        let mut all = self.rest;
        all.insert(0, self.first);
        all
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
        write!(f, "{}", self.first)?;
        match self.rest.len() {
            0 => Ok(()),
            1 => f.write_str(" (and 1 later error)"),
            later => write!(f, " (and {later} later errors)"),
        }
    }
}

#[cfg(feature = "alloc")]
impl<E: core::error::Error> core::error::Error for Errors<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.first.source()
    }
}

/// `?` from a scope returning `Result<_, Errors<io::Error>>` into
/// `io::Result`: the kind of the first error, with all of them inside.
#[cfg(feature = "std")]
impl From<Errors<std::io::Error>> for std::io::Error {
    fn from(errors: Errors<std::io::Error>) -> Self {
        std::io::Error::new(errors.first().kind(), errors)
    }
}
