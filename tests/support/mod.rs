//! Test helpers shared by the integration tests: include with `mod support;`.
//!
//! - [`waker`]: an instrumented waker counting clones, wakes and drops, and a
//!   `block_on` built on it;
//! - [`drops`]: values that record when (and in what order) they are dropped;
//! - [`hostile`]: wakers whose clone, wake or drop panics on the k-th call,
//!   or whose wake runs a hook (drops the thing being woken);
//! - [`step`]: futures that control await points (`yield_now`, `Gate`);
//! - [`order`]: cleanup orders as a value (the crate makes them types);
//! - [`clock`] (`alloc`): virtual time and a task log for queue tests;
//! - `alloc` (not declared here): a counting global allocator, included only
//!   by the test binary that installs it (`tests/alloc_count.rs`).
#![allow(dead_code, unreachable_pub, unused_imports)]

#[cfg(feature = "alloc")]
pub mod clock;
pub mod drops;
pub mod hostile;
pub mod order;
pub mod step;
pub mod waker;

pub use drops::{DropCounter, DropLog};
pub use hostile::{Behaviour, Call, Hostile};
pub use step::{Gate, yield_now};
pub use waker::{WakeCounter, block_on, poll_once};
