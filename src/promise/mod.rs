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
//!   or an interrupt settles a [`SignalCell`] with no resolver at all: a
//!   completion that arrives from outside, which a plain `async` block
//!   cannot express without a channel.
//! - **Handlers that wait to be followed.** A whole `deferred_then` /
//!   `deferred_catch` / `deferred_finally` chain is built first, and each
//!   handler runs only when its promise is polled.
//!
//! # What is here
//!
//! - [`DeferredPromise<T, E, F>`](DeferredPromise): the state machine
//!   (`Pending(Unstarted)` → `Pending(Started)` → `Fulfilled` | `Rejected`)
//!   over one future `F` per constructor and combinator ([`PromiseFuture`]:
//!   [`Executor`], [`Lazy`], [`Ready`], `Detached`, [`CellPromise`],
//!   [`CellExecutor`], [`Then`], [`Catch`], [`ThenCatch`], [`Finally`],
//!   `CatchPanics`, and the boxed [`Erased`]). **Its error type `E` is what
//!   awaiting it can fail with**: `PromiseError<R>` when a [`Resolver`]
//!   settles it (it may be dropped unsettled), the followed value's or
//!   future's otherwise. What an executor may return: [`ExecutorReturn`] /
//!   [`LocalExecutorReturn`] (an [`Adopt`] is driven by the promise).
//! - [`Resolver`]: `resolve`, `reject`, `settle`, `adopt`; first settlement
//!   wins, a refused one hands its value back ([`SettleError`], one type for
//!   the three); dropped unsettled ⇒ [`PromiseError::Abandoned`].
//! - Storage of the shared state: none (the resolver settles inside the
//!   executor), a `static` [`PromiseCell`] (no heap, interrupt-safe,
//!   reusable), or an `Arc` (`detached`, `alloc`); the protocol is the
//!   module `slot`'s.
//! - [`SignalCell`]: a `static` signal an interrupt settles with no resolver;
//!   the latest settlement is kept until the one waiter takes it (embassy's
//!   `Signal`), and the waiter's output is the plain `Result<T, E>`.
//! - [`SharedCell`]: a `static`, heap-free promise for up to `N` waiters,
//!   settled from an interrupt.
//! - [`PromiseExt`]: `deferred_then`, `deferred_catch`, `deferred_finally`,
//!   `deferred_then_catch` on any `Future<Output = Result<T, E>>`; handlers
//!   run only when the returned promise is polled, and may return a value
//!   or a future ([`Reaction`], [`Follow`]). With `std`,
//!   [`DeferredPromise::catch_panics`] turns a panic into a rejection
//!   (`Caught`) and keeps a settlement made before the panic, as in JS.
//! - Nameable types (`alloc`): `DeferredPromise<T, E>` itself — the default
//!   third parameter is the boxed `Erased` — and the aliases `BoxPromise`,
//!   `LocalBoxPromise` (`.boxed()`, `.boxed_local()`). Chains built on a
//!   boxed promise settle and drop without recursion, however long.
//! - `SharedPromise` (`alloc`): a cloneable promise every clone of which gets
//!   the settlement (the last one gets it moved), with `peek`, `ptr_eq` and
//!   weak handles (`WeakSharedPromise`).
//!
//! # Rules the unsafe code keeps
//!
//! - **`&self` never covers a pinned future.** A promise keeps its future in
//!   an `UnsafeCell` and what `state()`, `is_terminated()` and `Debug` read
//!   outside it (a `progress` byte) or through [`PromiseFuture::peek`], which
//!   only the cell-backed futures implement, reading plain fields and an
//!   atomic; the erased nodes do the same (module `inner`). A shared
//!   reference over a paused, self-borrowing future would invalidate its
//!   own pointers (Stacked Borrows).
//! - **State consistent before foreign code.** Wakers are cloned, woken and
//!   dropped, values dropped and handlers run only after every state word is
//!   final for that step (modules `slot`, `signal`, `shared_cell`,
//!   `shared`).
//! - **Counters narrower than 64 bits that guard reuse**, and what a wrap
//!   would do:
//!
//!   | counter | width | what a wrap would do | wrap test |
//!   |---|---|---|---|
//!   | `PromiseCell` / `detached` slot generation (`slot::Word`) | 24 bits | nothing: a finished resolver records that it finished and never reads the cell again, an unfinished one holds its generation (the cell cannot move on under it), and the promise side holds its generation too; the generation is only a backstop that refuses instead of clobbering | `tests/cell_wrap.rs` (release: 2 × 2^24 + 10 reuses, the stale resolver refused) |
//!
//!   There is no other: `SignalCell`, `SharedCell`, `SharedPromise` and
//!   `AtomicWaker` reuse nothing by number (the former `PromiseCell` tickets,
//!   a 24-bit generation handed to interrupt handlers as a plain number,
//!   were accepted again after 2^24 `wait()`/drop cycles; they went with the
//!   signal API, which `SignalCell` replaces with latest-wins semantics).
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

#[cfg(feature = "alloc")]
pub(crate) use deferred::unreachable_state;
