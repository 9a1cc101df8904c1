//! Error types of the promise module.

use core::fmt;

/// Why a resolver-backed promise did not fulfil: its resolver rejected it, or
/// was dropped without settling it.
///
/// Promises made from a [`Resolver`](crate::Resolver)
/// ([`DeferredPromise::new`](crate::DeferredPromise::new),
/// [`PromiseCell`](crate::PromiseCell), `DeferredPromise::detached`) resolve to
/// `Result<T, PromiseError<E>>`. Promises that cannot be abandoned
/// (`lazy`, `resolved`, `rejected`, combinators) keep their plain error type.
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
/// use futures::executor::block_on;
///
/// let rejected = DeferredPromise::<u8, PromiseError<&str>>::new(|r| r.reject("boom"));
/// assert_eq!(block_on(rejected), Err(PromiseError::Rejected("boom")));
///
/// let abandoned = DeferredPromise::<u8, PromiseError<&str>>::new(|r| drop(r));
/// assert_eq!(block_on(abandoned), Err(PromiseError::Abandoned));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromiseError<E> {
    /// The resolver rejected the promise with this error.
    Rejected(E),
    /// The resolver was dropped without settling the promise.
    Abandoned,
}

impl<E> PromiseError<E> {
    /// The rejection error, or `None` for abandonment.
    ///
    /// ```
    /// use deferral::PromiseError;
    ///
    /// assert_eq!(PromiseError::Rejected(3).rejection(), Some(3));
    /// assert_eq!(PromiseError::<u8>::Abandoned.rejection(), None);
    /// ```
    pub fn rejection(self) -> Option<E> {
        match self {
            PromiseError::Rejected(e) => Some(e),
            PromiseError::Abandoned => None,
        }
    }

    /// `true` if the resolver was dropped without settling.
    ///
    /// ```
    /// use deferral::PromiseError;
    ///
    /// assert!(PromiseError::<()>::Abandoned.is_abandoned());
    /// ```
    pub fn is_abandoned(&self) -> bool {
        matches!(self, PromiseError::Abandoned)
    }

    /// The rejection error, or `abandoned()` for abandonment: one error
    /// type, for `?`.
    ///
    /// ```
    /// use deferral::{DeferredPromise, PromiseError};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum DriverError { Timeout, Gone }
    ///
    /// let p = DeferredPromise::<u8, PromiseError<DriverError>>::new(|r| drop(r));
    /// let out = futures::executor::block_on(p).map_err(|e| e.rejection_or_else(|| DriverError::Gone));
    /// assert_eq!(out, Err(DriverError::Gone));
    /// assert_eq!(PromiseError::Rejected(DriverError::Timeout).rejection_or_else(|| DriverError::Gone), DriverError::Timeout);
    /// ```
    pub fn rejection_or_else(self, abandoned: impl FnOnce() -> E) -> E {
        match self {
            PromiseError::Rejected(e) => {
                // Unused, dropped while `e` is a local (a result moved out
                // before a drop that unwinds would leak, rust-lang/rust#47949).
                drop(abandoned);
                e
            }
            PromiseError::Abandoned => abandoned(),
        }
    }
}

/// `?` from a promise into `std::io::Error` (with `std`), whenever the
/// rejection converts into one: a rejection becomes its own `io::Error`,
/// abandonment an `io::Error` of kind `BrokenPipe` (the settling side went
/// away, as with a dropped channel sender) whose source is
/// [`PromiseError::Abandoned`].
///
/// For your own error type, write the conversion next to it (the orphan
/// rule allows it there, because your type is local to your crate):
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
///
/// #[derive(Debug, PartialEq)]
/// enum MyErr {
///     Io(String),
///     ResolverGone,
/// }
///
/// impl From<PromiseError<MyErr>> for MyErr {
///     fn from(e: PromiseError<MyErr>) -> Self {
///         e.rejection_or_else(|| MyErr::ResolverGone)
///     }
/// }
///
/// async fn read() -> Result<u8, MyErr> {
///     let byte = DeferredPromise::<u8, PromiseError<MyErr>>::new(|r| r.resolve(7)).await?;
///     let gone = DeferredPromise::<u8, PromiseError<MyErr>>::new(|r| drop(r)).await;
///     assert_eq!(gone.map_err(MyErr::from), Err(MyErr::ResolverGone));
///     Ok(byte)
/// }
/// assert_eq!(futures::executor::block_on(read()), Ok(7));
/// ```
///
/// Into `Box<dyn Error + Send + Sync>` it works already (the standard
/// library converts every `Error`), when `E` is an error type itself.
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
/// use std::io;
///
/// async fn fetch() -> io::Result<u32> {
///     let n = DeferredPromise::<u32, PromiseError<io::Error>>::new(|r| r.resolve(3)).await?;
///     let abandoned = DeferredPromise::<u32, PromiseError<io::Error>>::new(|r| drop(r)).await;
///     let err: io::Error = abandoned.unwrap_err().into();
///     assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
///     Ok(n)
/// }
/// assert_eq!(futures::executor::block_on(fetch()).unwrap(), 3);
/// ```
#[cfg(feature = "std")]
impl<E: Into<std::io::Error>> From<PromiseError<E>> for std::io::Error {
    fn from(error: PromiseError<E>) -> Self {
        match error {
            PromiseError::Rejected(e) => e.into(),
            PromiseError::Abandoned => std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                PromiseError::<core::convert::Infallible>::Abandoned,
            ),
        }
    }
}

impl<E: fmt::Display> fmt::Display for PromiseError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromiseError::Rejected(e) => write!(f, "promise rejected: {e}"),
            PromiseError::Abandoned => f.write_str("promise abandoned: its resolver was dropped"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for PromiseError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            PromiseError::Rejected(e) => Some(e),
            PromiseError::Abandoned => None,
        }
    }
}

/// Why a settlement was refused.
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
/// use deferral::promise::Refusal;
///
/// let p = DeferredPromise::<u8, PromiseError<()>>::new(|r| {
///     r.resolve(1).unwrap();
///     assert_eq!(r.resolve(2).unwrap_err().reason(), Refusal::AlreadySettled);
/// });
/// # drop(p);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The promise was already settled: the first settlement wins.
    AlreadySettled,
    /// The resolver's promise already finished (it took the settlement, or
    /// was dropped after it) and the shared state moved on: for a reused
    /// [`PromiseCell`](crate::PromiseCell), the resolver belongs to an
    /// earlier use and must not touch the current one.
    Stale,
    /// The promise was dropped: nobody will read the value.
    Closed,
    /// Both value slots of a [`SignalCell`](crate::promise::SignalCell)
    /// are in use by other parties at this instant (a settlement pre-empted
    /// by another one while the waiter takes a value): retry, or keep the
    /// value.
    Busy,
}

/// A refused settlement: the value handed back, and why.
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
/// use deferral::promise::Refusal;
///
/// let p = DeferredPromise::<String, PromiseError<()>>::new(|r| {
///     r.resolve("first".to_string()).unwrap();
///     let refused = r.resolve("second".to_string()).unwrap_err();
///     assert_eq!(refused.reason(), Refusal::AlreadySettled);
///     assert_eq!(refused.into_value(), Ok("second".to_string()));
/// });
/// # drop(p);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SettleError<V> {
    value: V,
    reason: Refusal,
}

impl<V> SettleError<V> {
    pub(crate) fn new(value: V, reason: Refusal) -> Self {
        Self { value, reason }
    }

    /// Why the settlement was refused.
    ///
    /// ```
    /// # use deferral::{DeferredPromise, PromiseError};
    /// # use deferral::promise::Refusal;
    /// # let p = DeferredPromise::<u8, PromiseError<()>>::new(|r| {
    /// #     r.resolve(1).unwrap();
    /// assert_eq!(r.reject(()).unwrap_err().reason(), Refusal::AlreadySettled);
    /// # });
    /// # drop(p);
    /// ```
    pub fn reason(&self) -> Refusal {
        self.reason
    }

    /// The refused value, handed back.
    ///
    /// ```
    /// # use deferral::{DeferredPromise, PromiseError};
    /// # let p = DeferredPromise::<u8, PromiseError<()>>::new(|r| {
    /// #     r.resolve(1).unwrap();
    /// assert_eq!(r.resolve(2).unwrap_err().into_value(), Ok(2));
    /// # });
    /// # drop(p);
    /// ```
    pub fn into_value(self) -> V {
        self.value
    }
}

impl<V> fmt::Debug for SettleError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value need not be `Debug`: a refused buffer is still reported.
        f.debug_struct("SettleError")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<V> fmt::Display for SettleError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.reason {
            Refusal::AlreadySettled => "settlement refused: the promise is already settled",
            Refusal::Stale => "settlement refused: stale resolver of a reused promise cell",
            Refusal::Closed => "settlement refused: the promise was dropped",
            Refusal::Busy => "settlement refused: the signal cell is busy",
        })
    }
}

impl<V> core::error::Error for SettleError<V> {}

/// A [`PromiseCell`](crate::PromiseCell) already serves a live promise (or its
/// resolver has not finished): it is free again once both are done.
///
/// ```
/// use deferral::PromiseCell;
/// use deferral::promise::CellBusy;
///
/// static CELL: PromiseCell<u32, ()> = PromiseCell::new();
/// let (promise, resolver) = CELL.promise().unwrap();
/// assert_eq!(CELL.promise().err(), Some(CellBusy));
/// drop((promise, resolver));
/// assert!(CELL.promise().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CellBusy;

impl fmt::Display for CellBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("promise cell busy: its previous promise or resolver is still live")
    }
}

impl core::error::Error for CellBusy {}
