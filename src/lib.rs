//! Go-style `defer` and lazily-started (deferred) promises for async Rust, on
//! any executor, with or without a heap.
//!
//! ```
//! # #[cfg(feature = "alloc")] // (without: a slab sized with `ScopeBuilder::capacity`)
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
//! | [`scope`](mod@scope) | [`scope`](scope()), [`scope_local`], [`Defer`], [`DeferScope`]: run a body, then its cleanup; [`Exit`], [`Outcome`], [`When`]; [`DeferStack`]; the ambient [`defer`] (`std`) |
//! | [`cancel`] | what a cancelled scope does with async cleanup it could not run: the tokio hand-over, the program's handler, the `static` [`Reaper`](cancel::Reaper) |
//! | [`promise`] | `DeferredPromise` and its `Resolver`, combinators, `SharedPromise`; the `static` cells: `PromiseCell` (one settlement), `SharedCell` (many waiters), `SignalCell` (interrupts: the latest settlement wins) |
//! | [`context`] | `ContextVar` and `Snapshot`: values that follow a computation into deferred work (`alloc`) |
//! | [`queue`] | [`TaskQueue`]: deferred work started under a concurrency limit, by priority, paused, timed and rate-limited, run inside its consumer's poll, results as a `Stream`; `Submitter` and the `static` `Inbox` feed it |
//! | `sync` | the atomics shim (core, `portable-atomic`, loom) and `AtomicWaker` |
//! | `wake_set` | per-index wakers for concurrent cleanup and the queue (`alloc`) |
//! | `panic` | catching panics where `std` can |
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
//! - `tokio` (implies `std`): a cancelled scope's async cleanup is spawned on
//!   the current tokio runtime (see [`cancel`]).
//! - `portable-atomic`, `portable-atomic-critical-section`: atomics for chips
//!   without compare-and-swap (Cortex-M0/M0+).
//!
//! With `default-features = false` the crate is `#![no_std]`, never touches a
//! heap, and builds for `thumbv6m-none-eabi` (with an atomics feature),
//! `thumbv7m-none-eabi` and `thumbv7em-none-eabihf`.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The atomics condition every item carries (see `with_atomics!`) is not a
// feature a user turns on: the badges leave it out.
#![cfg_attr(
    docsrs,
    doc(auto_cfg(hide(target_has_atomic = "ptr", feature = "portable-atomic")))
)]
// CI (`.ci/run`, nightly rustdoc with `--cfg deferral_doc_examples`): every
// public item's docs show it in use.
#![cfg_attr(deferral_doc_examples, feature(rustdoc_missing_doc_code_examples))]
#![cfg_attr(deferral_doc_examples, deny(rustdoc::missing_doc_code_examples))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

// Without compare-and-swap (Cortex-M0/M0+: `thumbv6m-none-eabi`) the
// crate's atomics come from `portable-atomic`: one error that says so, and
// nothing else of the crate compiled (not a screenful of "no method named
// `compare_exchange`").
#[cfg(all(not(target_has_atomic = "ptr"), not(feature = "portable-atomic")))]
compile_error!(
    "deferral: this target has no compare-and-swap: enable the `portable-atomic-critical-section` \
     feature (with a `critical-section` implementation, e.g. cortex-m's `critical-section-single-core`), \
     or `portable-atomic` with portable-atomic's own `unsafe-assume-single-core`"
);

/// The crate's items, compiled only where its atomics exist.
macro_rules! with_atomics {
    ($($item:item)*) => {
        $(
            #[cfg(any(target_has_atomic = "ptr", feature = "portable-atomic"))]
            $item
        )*
    };
}

with_atomics! {
    pub mod cancel;
    pub mod context;
    mod panic;
    pub mod promise;
    pub mod queue;
    pub mod scope;
    mod sync;
    #[cfg(feature = "alloc")]
    mod wake_set;

    #[cfg(feature = "alloc")]
    pub use context::{ContextVar, Snapshot};
    #[cfg(feature = "alloc")]
    pub use promise::SharedPromise;
    pub use promise::{DeferredPromise, PromiseCell, PromiseError, PromiseExt, Resolver, SharedCell};
    pub use queue::TaskQueue;
    #[cfg(feature = "alloc")]
    pub use scope::Errors;
    pub use scope::{
        Defer, DeferScope, DeferStack, Exit, Guard, Outcome, Registration, When, scope, scope_local,
    };
    #[cfg(feature = "std")]
    pub use scope::ambient::{defer, defer_async};
}

/// The README's examples, compiled and run as doc-tests.
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
