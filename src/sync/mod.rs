//! Synchronisation primitives shared by the crate's modules, behind a shim so
//! the same code runs on `core` atomics normally and on `loom`'s model-checked
//! atomics under `--cfg loom`.
//!
//! Only 32-bit and pointer-sized atomics are used, so everything here builds
//! (with compare-and-swap) on `thumbv7m-none-eabi`. With the
//! `portable-atomic` feature the atomics are `portable-atomic`'s, which
//! provide compare-and-swap on chips without it (`thumbv6m-none-eabi`) with
//! a critical section or by disabling interrupts (see the crate features).

pub(crate) mod atomic_waker;

pub(crate) use atomic_waker::AtomicWaker;

#[cfg(all(not(loom), not(feature = "portable-atomic")))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize};
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::{Ordering, fence};
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering, fence,
};
#[cfg(all(not(loom), feature = "portable-atomic"))]
#[allow(unused_imports)]
pub(crate) use portable_atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize};

#[cfg(all(not(loom), feature = "alloc"))]
pub(crate) use alloc::sync::Arc;
#[cfg(all(loom, feature = "alloc"))]
pub(crate) use loom::sync::Arc;

#[cfg(all(loom, feature = "std"))]
pub(crate) use loom::sync::Mutex;
/// A lock that puts a waiting thread to sleep (`SharedPromise`'s waiter
/// list, with `std`); loom's model of it under `--cfg loom`.
#[cfg(all(not(loom), feature = "std"))]
pub(crate) use std::sync::Mutex;

/// Busy-wait hint for the few places that spin (never on a path an interrupt
/// handler can take).
#[cfg(feature = "alloc")]
// Its one user, `SharedPromise`, sleeps on a `Mutex` instead with `std`.
#[cfg_attr(feature = "std", allow(dead_code))]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// An `UnsafeCell` with `loom`'s closure-based access API, so that under
/// `--cfg loom` every access is checked for data races.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a shared raw pointer to the contents.
    #[inline(always)]
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    /// The contents (the cell is owned: no access can be in progress).
    #[inline(always)]
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
