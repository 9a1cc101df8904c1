//! A counting global allocator. Include it (`#[path = "support/alloc.rs"] mod
//! counting_alloc;`) only in a test binary of its own, because it installs
//! itself as that binary's `#[global_allocator]`.
//!
//! Counts are per thread, so the test harness's other threads (and other
//! tests running in parallel) do not disturb a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to [`System`], counting allocations made on the current thread.
pub struct CountingAlloc;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

thread_local! {
    // `const` initialisation: reading these never allocates (no lazy init),
    // so the allocator can use them without recursing into itself.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: during thread teardown the locals may be gone; such
    // allocations are not part of any measurement.
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|b| b.set(b.get() + size));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counting touches only `Cell`s of the current thread.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations (and reallocations) made on this thread so far, and their bytes.
pub fn allocations() -> (usize, usize) {
    (ALLOCS.with(Cell::get), BYTES.with(Cell::get))
}

/// Runs `f`, returning its result and the number of allocations it made on
/// this thread.
pub fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let (before, _) = allocations();
    let out = f();
    let (after, _) = allocations();
    (out, after - before)
}

/// Runs `f` and panics if it allocated on this thread.
#[track_caller]
pub fn assert_no_alloc<R>(f: impl FnOnce() -> R) -> R {
    let (out, n) = count_allocations(f);
    assert_eq!(n, 0, "expected no allocations, saw {n}");
    out
}
