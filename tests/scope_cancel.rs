//! Cancellation: a scope dropped at any await point — of the body or of the
//! cleanup — drops the body first, runs the remaining sync thunks, drops the
//! async ones (or hands them to the cancel handler), and runs or drops
//! every thunk and guarded value exactly once. Also: cancel tokens.

mod support;

use std::collections::HashMap;
use std::pin::pin;
use std::task::Poll;

use deferral::Guard;
use deferral::scope::ScopeBuilder;
use support::order::{Boxed, ORDERS, Order};
use support::{DropLog, WakeCounter, poll_once, yield_now};

/// The program's cancel handler is global: the tests of this binary that
/// depend on it (set or unset) take turns.
static HANDLER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn handler_lock() -> std::sync::MutexGuard<'static, ()> {
    HANDLER.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scope with an await point between every registration, and async
/// thunks that themselves await. Logs "new X" when a tracked value is
/// created, "drop X" when dropped, "run X" when a thunk runs.
fn scenario(order: Order, log: DropLog) -> Boxed<'static, &'static str> {
    support::order::run(order, async move |d| {
        let l = log.clone();
        log.push("new s1");
        d.defer(move || l.push("run s1"));

        log.push("new a1");
        let (l, held) = (log.clone(), log.on_drop("a1"));
        d.defer_async(async move {
            let _held = held;
            l.push("run a1 start");
            yield_now().await;
            l.push("run a1 end");
        });
        yield_now().await;

        log.push("new g");
        let l = log.clone();
        let mut g = d.guard(log.on_drop("g"), move |v| {
            l.push("run g");
            drop(v);
        });
        yield_now().await;

        log.push("new ga");
        let l = log.clone();
        let _ga = d.guard_async(log.on_drop("ga"), move |v| async move {
            l.push("run ga start");
            yield_now().await;
            l.push("run ga end");
            drop(v);
        });
        log.push("new body local");
        let _local = log.on_drop("body local");
        yield_now().await;
        let _ = &mut *g;
        "done"
    })
}

/// Polls needed to finish the scenario.
fn polls_to_finish(order: Order) -> usize {
    let mut s = pin!(scenario(order, DropLog::new()));
    let counter = WakeCounter::new();
    let mut n = 1;
    while poll_once(s.as_mut(), &counter).is_pending() {
        n += 1;
    }
    n
}

fn check_exactly_once(events: &[String], context: &str) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for e in events {
        *count.entry(e).or_default() += 1;
    }
    for (e, n) in &count {
        assert_eq!(*n, 1, "{e:?} happened {n} times ({context}): {events:?}");
    }
    for e in events {
        if let Some(name) = e.strip_prefix("new ") {
            let dropped = count.contains_key(format!("drop {name}").as_str());
            let ran = count.contains_key(format!("run {name}").as_str());
            match name {
                // A sync thunk always runs, even on cancellation.
                "s1" => assert!(ran, "s1 must run ({context}): {events:?}"),
                // Values: dropped exactly once whatever happened.
                _ => assert!(dropped, "{name} must be dropped ({context}): {events:?}"),
            }
        }
    }
    // The body (and its local) is dropped before any cleanup runs.
    if let Some(local) = events.iter().position(|e| e == "drop body local") {
        let first_run = events
            .iter()
            .position(|e| e.starts_with("run "))
            .unwrap_or(usize::MAX);
        assert!(
            local < first_run,
            "body dropped after cleanup started ({context}): {events:?}"
        );
    }
}

#[test]
fn cancelled_at_every_await_point_everything_runs_or_drops_exactly_once() {
    let _handler = handler_lock();
    for order in ORDERS {
        let total = polls_to_finish(order);
        assert!(
            total >= 4,
            "the scenario has await points ({order:?}): {total}"
        );
        for k in 0..=total {
            let log = DropLog::new();
            let counter = WakeCounter::new();
            {
                let mut s = Box::pin(scenario(order, log.clone()));
                for _ in 0..k {
                    if poll_once(s.as_mut(), &counter).is_ready() {
                        break;
                    }
                }
                // Dropped here: after k polls, possibly finished.
            }
            let events = log.events();
            check_exactly_once(&events, &format!("{order:?}, dropped after {k} polls"));
            assert_eq!(counter.live(), 0, "no waker leaked ({order:?}, {k})");
        }
    }
}

#[test]
fn cancelled_scope_runs_sync_thunks_and_drops_async_ones_unpolled() {
    let _handler = handler_lock();
    let log = DropLog::new();
    let l = log.clone();
    {
        let mut s = pin!(ScopeBuilder::new().capacity::<256>().run(async move |d| {
            let l1 = l.clone();
            d.defer(move || l1.push("sync"));
            let (l2, held) = (l.clone(), l.on_drop("async thunk"));
            d.defer_async(async move {
                let _held = held;
                l2.push("async polled");
            });
            let _local = l.on_drop("body");
            std::future::pending::<()>().await
        }));
        assert_eq!(poll_once(s.as_mut(), &WakeCounter::new()), Poll::Pending);
    }
    assert_eq!(log.events(), ["drop body", "drop async thunk", "sync"]);
}

#[test]
#[cfg(feature = "alloc")]
fn cancel_handler_receives_unstarted_async_thunks() {
    use std::sync::Mutex;
    static HANDED: Mutex<Vec<deferral::cancel::BoxCleanup>> = Mutex::new(Vec::new());
    let _handler = handler_lock();
    deferral::cancel::set_cancel_handler(|orphan| HANDED.lock().unwrap().push(orphan.into_boxed()));
    let log = DropLog::new();
    let l = log.clone();
    {
        let mut s = pin!(ScopeBuilder::new().run(async move |d| {
            for name in ["one", "two"] {
                let l = l.clone();
                d.defer_async(async move { l.push(name) });
            }
            let l = l.clone();
            d.guard_async(7, move |n| async move { l.push(format!("guard {n}")) });
            std::future::pending::<()>().await
        }));
        assert_eq!(poll_once(s.as_mut(), &WakeCounter::new()), Poll::Pending);
    }
    deferral::cancel::clear_cancel_handler();
    assert!(log.events().is_empty(), "nothing ran during the drop");
    let thunks = std::mem::take(&mut *HANDED.lock().unwrap());
    assert_eq!(thunks.len(), 3);
    for thunk in thunks {
        support::block_on(thunk); // a runtime would spawn them
    }
    assert_eq!(
        log.events(),
        ["guard 7", "two", "one"],
        "handed over in LIFO order"
    );
}

#[test]
fn cancel_tokens_defuse_registrations() {
    let log = DropLog::new();
    let l = log.clone();
    let out = support::block_on(ScopeBuilder::new().run(async move |d| {
        let l1 = l.clone();
        let keep = d.defer(move || l1.push("kept"));
        let l2 = l.clone();
        let token = d.defer(move || l2.push("cancelled sync"));
        let thunk = token.cancel();
        let l3 = l.clone();
        let token = d.defer_async(async move { l3.push("cancelled async") });
        drop(token.cancel());
        let guard = d.guard(String::from("value"), |_| panic!("defused"));
        let value = Guard::defuse(guard);
        let guard = d.guard_async(5_u8, |_| async { panic!("defused") });
        let five = Guard::defuse(guard);
        let _ = keep; // dropping a token keeps its registration
        thunk(); // the handed-back thunk still works
        (value, five)
    }));
    assert_eq!(out, (String::from("value"), 5));
    assert_eq!(log.events(), ["cancelled sync", "kept"]);
}
