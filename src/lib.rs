//! Go-style `defer` and lazily-started (deferred) promises for async Rust, on
//! any executor, with or without a heap.
//!
//! ```
//! # #[cfg(feature = "alloc")] // (without `alloc`: `try_guard`, `try_defer_async`)
//! # futures::executor::block_on(async {
//! use std::sync::{Arc, Mutex};
//!
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let l = log.clone();
//! let out = deferral::scope(async |d| {
//!     // Moved into the scope, `&mut` for the body, closed after it (LIFO).
//!     let mut conn = d.guard(vec!["open"], move |c| l.lock().unwrap().extend(c));
//!     conn.push("query");
//!     d.defer_async(async { /* awaited after the body, before `out` */ });
//!     Ok::<_, std::io::Error>(conn.len())
//! })
//! .await;
//! assert_eq!(out.unwrap(), 2);
//! assert_eq!(*log.lock().unwrap(), ["open", "query"]);
//! # });
//! ```
//!
//! # Architecture
//!
//! | module | what lives there |
//! |---|---|
//! | `slab` | the inline, const-generic, type-erased storage of deferred thunks (the unsafe heart of [`DeferScope`]) |
//! | `thunk` | the kinds of deferred work: closures, futures, guarded values with sync or async cleanup |
//! | `scope` | [`scope`], [`Defer`], [`DeferScope`]: run a body, then its deferred thunks |
//! | `ambient` | [`defer()`] and [`defer_async()`] without a handle (`std`) |
//! | `promise` | `DeferredPromise`, its `Resolver`, the `static`-friendly `PromiseCell` (also settled from an interrupt with no resolver), the `static` multi-waiter `SharedCell`, combinators, boxed promises and `SharedPromise` |
//! | `context` | `ContextVar` and `Snapshot`: values that follow a computation across polls and into deferred work |
//! | `queue` | `TaskQueue`: deferred work started under a concurrency limit, by priority, paused, timed and rate-limited, results as a `Stream`; `Submitter` and the `static` `Inbox` feed it |
//!
//! Nothing here assumes an executor, a timer or an allocator: everything is
//! driven by `poll`, wakers and [`core::task::Context`].
//!
//! # Features
//!
//! - `alloc`: heap-backed storage (slab spill, `Arc`-shared promise state,
//!   `SharedPromise`, the copy-on-write context map).
//! - `std` (default, implies `alloc`): panic catching in scopes, the ambient
//!   (thread-local) API, the thread-local current context.
//!
//! With `default-features = false` the crate is `#![no_std]`, never touches a
//! heap, and builds for `thumbv7m-none-eabi` and `thumbv7em-none-eabihf`.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// CI (`.ci/run`, nightly rustdoc with `--cfg deferral_doc_examples`): every
// public item's docs show it in use.
#![cfg_attr(deferral_doc_examples, feature(rustdoc_missing_doc_code_examples))]
#![cfg_attr(deferral_doc_examples, deny(rustdoc::missing_doc_code_examples))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod ambient;
mod cancel;
mod cleanup;
mod context;
mod defer;
mod exit;
mod panic;
pub mod promise;
mod queue;
mod scope;
mod slab;
mod stack;
mod sync;
mod thunk;
#[cfg(feature = "alloc")]
mod wake_set;

#[cfg(feature = "std")]
pub use ambient::{
    AmbientRegistration, NoScope, defer, defer_async, defer_async_on_success,
    defer_async_on_unwind, defer_on_success, defer_on_unwind, try_defer, try_defer_async,
    try_defer_async_on_success, try_defer_async_on_unwind, try_defer_on_success,
    try_defer_on_unwind,
};
pub use cancel::{Orphan, Reap, Reaper, clear_cancel_handler, set_cancel_handler};
pub use cleanup::Order;
#[cfg(feature = "std")]
pub use context::WithContext;
#[cfg(feature = "alloc")]
pub use context::{ContextVar, Snapshot};
pub use defer::{Defer, Fits, Full, Guard, Local, Registration, Sendable};
#[cfg(feature = "alloc")]
pub use exit::Errors;
pub use exit::{AddError, CleanupOutput, Exit, ExitKind, Fallible};
#[cfg(feature = "alloc")]
pub use promise::SharedPromise;
pub use promise::{DeferredPromise, PromiseCell, PromiseError, PromiseExt, Resolver, SharedCell};
pub use queue::{
    AttachError, Clock, DEFAULT_QUEUE_CAPACITY, Deadline, Drain, Inbox, NoSleep, NoTimer,
    OnRejection, Outcome, PushAllError, PushError, RateLimited, StopFn, TaskQueue, TimedOut, Timer,
    Timing, Until, Yield, ZeroConcurrency,
};
#[cfg(feature = "alloc")]
pub use queue::{BoxedTask, Submitter};
#[cfg(feature = "alloc")]
pub use scope::OnCancel;
pub use scope::{
    CutShort, DEFAULT_CAPACITY, DeferScope, Grace, IntoCancelHandler, NoHandler, ScopeBody,
    ScopeBuilder, scope, scope_local,
};
#[cfg(feature = "std")]
pub use scope::{FnBody, scope_fn};
#[cfg(feature = "alloc")]
pub use slab::BoxedThunk;
pub use slab::Flavour;
pub use stack::{DeferStack, Dispose};

/// The README's examples, compiled and run as doc-tests.
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
