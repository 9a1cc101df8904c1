//! `PromiseState`: what a `DeferredPromise` reports about itself.

use core::fmt;

/// Where a [`DeferredPromise`](crate::DeferredPromise) is in its life, as
/// reported by [`DeferredPromise::state`](crate::DeferredPromise::state).
///
/// `Pending(Unstarted)` → `Pending(Started)` → `Fulfilled` | `Rejected`. A
/// promise keeps reporting its settlement after it handed the value out
/// (use [`FusedFuture::is_terminated`](futures_core::future::FusedFuture) to
/// tell whether it was consumed). A promise whose resolver was dropped
/// without settling (`PromiseError::Abandoned`) reports `Rejected`.
///
/// ```
/// use deferral::{DeferredPromise, PromiseError};
/// use deferral::promise::{Progress, PromiseState};
///
/// let p = DeferredPromise::<u32, PromiseError<()>>::new(|r| r.resolve(7));
/// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
/// assert_eq!(futures::executor::block_on(p), Ok(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromiseState {
    /// Not settled yet.
    Pending(Progress),
    /// Settled with a value (`Ok`).
    Fulfilled,
    /// Settled with an error (`Err`), including abandonment.
    Rejected,
}

/// The two kinds of [`PromiseState::Pending`].
///
/// ```
/// use deferral::DeferredPromise;
/// use deferral::promise::{Progress, PromiseState};
///
/// let p = DeferredPromise::lazy(|| async { Ok::<u8, ()>(1) });
/// assert_eq!(p.state(), PromiseState::Pending(Progress::Unstarted));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Progress {
    /// Nothing has run yet: the executor (or handler, or source future) waits
    /// for the first poll.
    Unstarted,
    /// The first poll happened; the settlement is not there yet.
    Started,
}

impl PromiseState {
    /// `true` for `Fulfilled` and `Rejected`.
    ///
    /// ```
    /// use deferral::DeferredPromise;
    /// use deferral::promise::PromiseState;
    ///
    /// assert!(DeferredPromise::<u8, ()>::resolved(1).state().is_settled());
    /// assert!(!PromiseState::Pending(deferral::promise::Progress::Started).is_settled());
    /// ```
    pub fn is_settled(self) -> bool {
        !matches!(self, PromiseState::Pending(_))
    }
}

impl fmt::Display for PromiseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PromiseState::Pending(Progress::Unstarted) => "pending (not started)",
            PromiseState::Pending(Progress::Started) => "pending (started)",
            PromiseState::Fulfilled => "fulfilled",
            PromiseState::Rejected => "rejected",
        })
    }
}
