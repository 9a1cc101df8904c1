//! Go-style `defer` and lazily-started (deferred) promises for async Rust, on
//! any executor, with or without a heap.
//!
//! # Architecture
//!
//! | module | what lives there |
//! |---|---|
//! | `slab` | the inline, const-generic, type-erased storage of deferred thunks (the unsafe heart of [`DeferScope`](crate)) |
//! | `scope` | `DeferScope`, the poll-driven future that runs a body, then its deferred thunks |
//! | `promise` | `DeferredPromise`, its `Resolver`, the `static`-friendly `PromiseCell`, combinators and `SharedPromise` |
//! | `context` | `ContextVar` and `Snapshot`: values that follow a computation across polls and into deferred work |
//! | `queue` | `TaskQueue`: deferred work started under a concurrency limit, results as a `Stream` |
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

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod context;
pub mod promise;
mod queue;
mod scope;
mod slab;
mod sync;

#[cfg(feature = "alloc")]
pub use promise::SharedPromise;
pub use promise::{
    Adopt, CellBusy, DeferredPromise, Follow, Pending, PromiseCell, PromiseError, PromiseExt,
    PromiseState, Reaction, Refusal, Resolver, SettleError, Start,
};
