//! Deferred (lazy) promises: a promise whose executor runs inside its first
//! poll, never before — the Rust form of the TC39 `Promise.defer` strawman,
//! whose idea lives on as the TC39 `Promise.lazy` proposal
//! (jasnell/proposal-promise-lazy; `Promise.withResolvers` is its eager
//! cousin).
//!
//! # Why a lazy promise, when every Rust future is lazy already?
//!
//! An `async` block also runs nothing until polled. What a
//! [`DeferredPromise`] adds is what a JS promise is, made lazy:
//!
//! - **Started once, shared.** A [`SharedPromise`] (`alloc`) or a `static`
//!   [`SharedCell`] is awaited by many tasks; the work starts when the first
//!   one needs it and every waiter gets the settlement. A future has one
//!   owner.
//! - **Context captured at creation.** With `std`, the executor runs in the
//!   [`ContextVar`](crate::ContextVar) values current when the promise was
//!   *created*, not those of whichever task first polls it.
//! - **A resolver that escapes.** The executor's [`Resolver`] may be handed to
//!   another task, thread or interrupt handler (`detached`, [`PromiseCell`]),
//!   or the cell itself is settled from an interrupt
//!   ([`PromiseCell::resolve`]): a completion that arrives from outside,
//!   which a plain `async` block cannot express without a channel.
//! - **Handlers that wait to be followed.** A whole `deferred_then` /
//!   `deferred_catch` / `deferred_finally` chain is built first, and each
//!   handler runs only when its promise is polled.
//!
//! # What is here
//!
//! - [`DeferredPromise`]: the state machine (`Pending(Unstarted)` →
//!   `Pending(Started)` → `Fulfilled` | `Rejected`), with the constructors
//!   `new` (a JS-style executor receiving a [`Resolver`]), `lazy`,
//!   `resolved`, `rejected`, and `detached` (`alloc`). What an executor may
//!   return: [`ExecutorReturn`] / [`LocalExecutorReturn`] (an
//!   [`Adopt`] is driven by the promise).
//! - [`Resolver`]: `resolve`, `reject`, `adopt`; first settlement wins, a
//!   refused one hands its value back ([`SettleError`]); dropped unsettled ⇒
//!   [`PromiseError::Abandoned`].
//! - Storage of the shared state: none (the resolver settles inside the
//!   executor), a `static` [`PromiseCell`] (no heap, interrupt-safe,
//!   generation-checked reuse; signal-style [`PromiseCell::wait`] +
//!   [`PromiseCell::resolve`] with no resolver to park), or an `Arc`
//!   (`alloc`).
//! - [`SharedCell`]: a `static`, heap-free promise for up to `N` waiters,
//!   settled from an interrupt.
//! - [`PromiseExt`]: `deferred_then`, `deferred_catch`, `deferred_finally`,
//!   `deferred_then_catch` on any `Future<Output = Result<T, E>>`; handlers
//!   run only when the returned promise is polled, and may return a value
//!   or a future ([`Reaction`]). With `std`, `catch_panics` turns a panic
//!   into a rejection ([`Caught`]).
//! - Nameable types (`alloc`): [`BoxPromise`], [`LocalBoxPromise`]
//!   (`.boxed()`, `.boxed_local()`).
//! - `SharedPromise` (`alloc`): a cloneable promise every clone of which gets
//!   the settlement (the last one gets it moved), with `peek`, `ptr_eq` and
//!   weak handles (`WeakSharedPromise`).
//!
//! ```
//! use deferral::{DeferredPromise, PromiseError, PromiseExt};
//! use futures::executor::block_on;
//!
//! let chain = DeferredPromise::<u32, PromiseError<&str>>::new(|res| res.resolve(123))
//!     .deferred_then(|v| Ok(v * 2))
//!     .deferred_catch(|_e| Ok::<_, core::convert::Infallible>(0))
//!     .deferred_finally(|| println!("done"));
//! // Nothing has run yet: the whole chain exists first.
//! assert_eq!(block_on(chain), Ok(246));
//! ```

#[cfg(feature = "alloc")]
mod boxed;
#[cfg(feature = "std")]
mod catch;
mod cell;
mod deferred;
#[cfg(feature = "alloc")]
mod detached;
mod error;
mod executor;
mod ext;
mod inner;
mod resolver;
#[cfg(feature = "alloc")]
mod shared;
mod shared_cell;
mod signal;
mod slot;
mod state;

#[cfg(feature = "alloc")]
pub use boxed::{BoxPromise, LocalBoxPromise};
#[cfg(feature = "std")]
pub use catch::{CatchPanics, Caught, Panic};
pub use cell::{CellExecutor, CellPromise, PromiseCell};
pub use deferred::{DeferredPromise, Executor, Lazy, Ready};
#[cfg(feature = "alloc")]
pub use detached::Detached;
pub use error::{CellBusy, PromiseError, Refusal, SettleError};
pub use executor::{ExecutorReturn, LocalExecutorReturn, Nothing};
pub use ext::{Catch, Finally, Follow, PromiseExt, Reaction, Then, ThenCatch};
#[cfg(feature = "alloc")]
pub use inner::LocalErased;
pub use inner::{Erased, PromiseFuture};
pub use resolver::{Adopt, Resolver};
#[cfg(feature = "alloc")]
pub use shared::{SharedPromise, WeakSharedPromise};
pub use shared_cell::{MAX_WAITERS, SharedCell, SharedWait, SharedWaitRef, WaitersFull};
pub use signal::{SignalCell, SignalWait};
pub use state::{Progress, PromiseState};
