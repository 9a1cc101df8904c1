//! Concurrent cleanup: with `alloc`, a wake-up polls only the woken thunk;
//! total polls are linear in the number of thunks.

mod support;

use std::pin::pin;
use std::task::Poll;

use deferral::scope::{Concurrent, ScopeBuilder};
use support::{Gate, WakeCounter, poll_once};

fn gated_scope(gates: &[Gate]) -> impl Future<Output = ()> + use<> {
    let waits: Vec<_> = gates.iter().map(Gate::wait).collect();
    // 16 gates do not fit the default slab without `alloc`.
    ScopeBuilder::new()
        .capacity::<4096>()
        .order(Concurrent)
        .run(async move |d| {
            for w in waits {
                d.defer_async(w);
            }
        })
}

#[test]
fn all_thunks_finish_whatever_order_they_are_woken_in() {
    let n = 16;
    let gates: Vec<Gate> = (0..n).map(|_| Gate::new()).collect();
    let mut s = pin!(gated_scope(&gates));
    let counter = WakeCounter::new();
    assert_eq!(poll_once(s.as_mut(), &counter), Poll::Pending);
    for i in [3, 0, 15, 7, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13] {
        gates[i].open();
        assert_eq!(poll_once(s.as_mut(), &counter), Poll::Pending);
    }
    gates[14].open();
    assert_eq!(poll_once(s.as_mut(), &counter), Poll::Ready(()));
    assert!(gates.iter().all(|g| g.polls() >= 2));
}

#[test]
#[cfg(feature = "alloc")]
fn a_wake_up_polls_only_the_woken_thunk() {
    let n = if cfg!(miri) { 8 } else { 256 };
    let gates: Vec<Gate> = (0..n).map(|_| Gate::new()).collect();
    let mut s = pin!(gated_scope(&gates));
    let counter = WakeCounter::new();
    assert_eq!(poll_once(s.as_mut(), &counter), Poll::Pending);
    assert!(gates.iter().all(|g| g.polls() == 1), "each started once");
    for (i, gate) in gates.iter().enumerate() {
        let wakes = counter.wakes();
        gate.open();
        assert_eq!(counter.wakes(), wakes + 1, "the scope's waker is woken");
        let polled = poll_once(s.as_mut(), &counter);
        assert_eq!(polled.is_ready(), i == n - 1);
        assert_eq!(gate.polls(), 2, "the woken thunk is polled");
        let others: usize = gates.iter().map(Gate::polls).sum::<usize>() - 2 * (i + 1);
        assert_eq!(others, n - i - 1, "no other thunk was polled again");
    }
    let total: usize = gates.iter().map(Gate::polls).sum();
    assert_eq!(total, 2 * n, "total polls are linear in N");
}

#[test]
#[cfg(feature = "alloc")]
fn a_spurious_scope_poll_polls_no_thunk() {
    let gates: Vec<Gate> = (0..4).map(|_| Gate::new()).collect();
    let mut s = pin!(gated_scope(&gates));
    let counter = WakeCounter::new();
    assert_eq!(poll_once(s.as_mut(), &counter), Poll::Pending);
    for _ in 0..3 {
        assert_eq!(poll_once(s.as_mut(), &counter), Poll::Pending);
    }
    assert!(gates.iter().all(|g| g.polls() == 1));
    for g in &gates {
        g.open();
    }
    assert_eq!(poll_once(s.as_mut(), &counter), Poll::Ready(()));
}
