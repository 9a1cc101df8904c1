//! Allocation accounting. This binary installs the counting allocator from
//! `tests/support/alloc.rs`; later issues add their "zero allocations" proofs
//! here so they all share one measured allocator.
#![allow(dead_code)]

#[path = "support/alloc.rs"]
mod counting_alloc;
mod support;

use counting_alloc::{assert_no_alloc, count_allocations};

#[test]
fn counter_sees_an_allocation() {
    // Guards the guard: if the allocator stopped counting, every
    // `assert_no_alloc` below would pass vacuously.
    let (_, n) = count_allocations(|| std::hint::black_box(Box::new(7_u64)));
    assert_eq!(n, 1);
}

#[test]
#[should_panic(expected = "expected no allocations, saw 1")]
fn assert_no_alloc_rejects_an_allocating_closure() {
    assert_no_alloc(|| drop(std::hint::black_box(vec![1_u8; 16])));
}

#[test]
fn polling_a_ready_future_does_not_allocate() {
    let waker = support::WakeCounter::new().waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert_no_alloc(|| {
        let mut fut = std::pin::pin!(std::future::ready(3));
        assert_eq!(fut.as_mut().poll(&mut cx), std::task::Poll::Ready(3));
    });
}
