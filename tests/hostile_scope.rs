//! Scopes against hostile wakers: the scope is polled with wakers whose
//! clone, wake, wake_by_ref or drop panics on the k-th call, and with a
//! waker whose wake drops the scope itself. In every order, every thunk runs
//! (or, when the scope is dropped early, runs or is dropped) exactly once,
//! every guarded value is dropped exactly once, and a scope that is polled
//! on completes.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use deferral::Defer;
use deferral::scope::{Concurrent, Fifo, Lifo, ScopeBuilder, Sendable};
use futures::future::FusedFuture;
use support::order::{ORDERS, Order};
use support::{Behaviour, DropCounter, Gate, Hostile, WakeCounter};

/// Thunks registered by [`scope_under_test`], and what they touch.
struct Fixture {
    ran: DropCounter,
    drops: DropCounter,
    gates: Vec<Gate>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            ran: DropCounter::new(),
            drops: DropCounter::new(),
            gates: (0..3).map(|_| Gate::new()).collect(),
        }
    }

    /// How many `ran` and `drops` events a completed scope produces.
    const RUNS: usize = 5;
    const VALUES: usize = 5;
}

type BoxedScope = Pin<Box<dyn FusedFuture<Output = u32> + Send>>;

/// A scope with two sync thunks, three async thunks waiting on gates (one of
/// them a guard), each holding a tracked value.
fn scope_under_test(order: Order, f: &Fixture) -> BoxedScope {
    let (ran, drops) = (f.ran.clone(), f.drops.clone());
    let gates = f.gates.clone();
    let body = async move |d: &Defer<u32, Sendable, 1024>| {
        for _ in 0..2 {
            let (r, v) = (ran.clone(), drops.tracked());
            d.defer(move || {
                drop(v);
                drop(r.tracked());
            });
        }
        for gate in &gates[..2] {
            let (r, v, wait) = (ran.clone(), drops.tracked(), gate.wait());
            d.defer_async(async move {
                wait.await;
                drop(v);
                drop(r.tracked());
            });
        }
        let (r, wait) = (ran.clone(), gates[2].wait());
        let mut g = d.guard_async(drops.tracked(), move |v| async move {
            wait.await;
            drop(v);
            drop(r.tracked());
        });
        let _: &mut _ = &mut *g;
        7
    };
    match order {
        Order::Lifo => Box::pin(ScopeBuilder::new().capacity::<1024>().order(Lifo).run(body)),
        Order::Fifo => Box::pin(ScopeBuilder::new().capacity::<1024>().order(Fifo).run(body)),
        Order::Concurrent => Box::pin(
            ScopeBuilder::new()
                .capacity::<1024>()
                .order(Concurrent)
                .run(body),
        ),
    }
}

fn poll_caught(
    s: Pin<&mut (dyn FusedFuture<Output = u32> + Send)>,
    waker: &std::task::Waker,
) -> Option<Poll<u32>> {
    catch_unwind(AssertUnwindSafe(|| s.poll(&mut Context::from_waker(waker)))).ok()
}

/// How a driven scope ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Returned(u32),
    /// A thunk panicked (here: the hostile waker, inside the thunk's poll);
    /// the others ran, then the panic resumed and the scope terminated.
    ResumedAPanic,
}

#[test]
fn scopes_against_every_hostile_waker() {
    for order in ORDERS {
        for behaviour in Behaviour::panicking() {
            let f = Fixture::new();
            let hostile = behaviour.hostile();
            let mut s = scope_under_test(order, &f);
            let waker = hostile.waker();
            // First poll with the hostile waker: the body returns, cleanup
            // starts and waits on the gates.
            let _ = poll_caught(s.as_mut(), &waker);
            for gate in &f.gates {
                let _ = catch_unwind(AssertUnwindSafe(|| gate.open()));
            }
            let _ = poll_caught(s.as_mut(), &waker);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
            // Then polled on with a good waker: it must end.
            let good = WakeCounter::new();
            let mut ended = None;
            for _ in 0..4 {
                if s.is_terminated() {
                    ended = Some(Ended::ResumedAPanic);
                    break;
                }
                if let Some(Poll::Ready(v)) = poll_caught(s.as_mut(), &good.waker()) {
                    ended = Some(Ended::Returned(v));
                    break;
                }
            }
            let ended = ended.unwrap_or_else(|| panic!("{order:?} {behaviour:?}: never ended"));
            // With `std` a thunk's panic is caught and resumed at the end;
            // without it, it unwinds out of that poll and the thunk whose
            // poll panicked is dropped (like `FuturesUnordered`): the scope
            // goes on and may return.
            if ended == Ended::Returned(7) && cfg!(feature = "std") {
                assert_eq!(
                    f.ran.get(),
                    Fixture::RUNS,
                    "{order:?} {behaviour:?}: every thunk ran once"
                );
            }
            assert_eq!(
                f.drops.get(),
                Fixture::VALUES,
                "{order:?} {behaviour:?}: every value dropped once"
            );
            let _ = catch_unwind(AssertUnwindSafe(move || drop(s)));
            let _ = catch_unwind(AssertUnwindSafe(move || drop(f.gates)));
            assert_eq!(hostile.live(), 0, "{order:?} {behaviour:?}: no waker kept");
        }
    }
}

#[test]
fn a_wake_that_drops_the_scope_mid_cleanup() {
    for order in ORDERS {
        for opened in 0..3 {
            let f = Fixture::new();
            let hostile = Hostile::new();
            let s = scope_under_test(order, &f);
            let victim: Arc<Mutex<Option<BoxedScope>>> = Arc::new(Mutex::new(Some(s)));
            {
                let mut guard = victim.lock().unwrap();
                let s = guard.as_mut().unwrap();
                let waker = hostile.waker();
                assert!(
                    s.as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_pending()
                );
            }
            // The wake-up from a gate drops the scope (cancels its cleanup).
            let v = victim.clone();
            hostile.on_wake(move || drop(v.lock().unwrap().take()));
            // Opened in a rotating order: the first to reach a registered
            // waiter wakes the scope.
            for i in 0..3 {
                f.gates[(opened + i) % 3].open();
            }
            assert!(
                victim.lock().unwrap().is_none(),
                "{order:?}: the wake dropped the scope"
            );
            // Dropped early: sync thunks ran; async ones ran or were dropped.
            assert!(f.ran.get() >= 2, "{order:?} opened={opened}");
            assert_eq!(
                f.drops.get(),
                Fixture::VALUES,
                "{order:?} opened={opened}: each value dropped once"
            );
            drop(f.gates);
            assert_eq!(hostile.live(), 0, "{order:?}");
        }
    }
}

#[test]
fn a_scope_dropped_with_a_hostile_waker_registered_drops_everything_once() {
    for order in ORDERS {
        for behaviour in Behaviour::panicking() {
            let f = Fixture::new();
            let hostile = behaviour.hostile();
            let mut s = scope_under_test(order, &f);
            let waker = hostile.waker();
            let _ = poll_caught(s.as_mut(), &waker);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
            let _ = catch_unwind(AssertUnwindSafe(move || drop(s)));
            assert_eq!(f.drops.get(), Fixture::VALUES, "{order:?} {behaviour:?}");
            let _ = catch_unwind(AssertUnwindSafe(move || drop(f.gates)));
            assert_eq!(hostile.live(), 0, "{order:?} {behaviour:?}");
        }
    }
}
