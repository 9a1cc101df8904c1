//! Cleanup order (LIFO, FIFO, concurrent), output only after every thunk
//! finished, thunks that change the output, nested scopes, the seed example.

mod support;

use std::pin::pin;
use std::task::Poll;

use deferral::scope::ScopeBuilder;
use deferral::{Exit, scope};
use support::order::Order::{self, Concurrent, Fifo, Lifo};
use support::{DropLog, Gate, WakeCounter, block_on, poll_once, yield_now};

/// Registers, in this order: sync "a", async "b" (yields once), sync "c",
/// async "d" (yields once), and logs each as it runs.
async fn body<const N: usize>(
    d: &deferral::Defer<&'static str, deferral::scope::Sendable, N>,
    log: &DropLog,
) -> &'static str {
    let l = log.clone();
    d.defer(move || l.push("a"));
    let l = log.clone();
    d.defer_async(async move {
        l.push("b start");
        yield_now().await;
        l.push("b end");
    });
    let l = log.clone();
    d.defer(move || l.push("c"));
    let l = log.clone();
    d.defer_async(async move {
        l.push("d start");
        yield_now().await;
        l.push("d end");
    });
    log.push("body");
    "out"
}

fn run(order: Order) -> Vec<String> {
    let log = DropLog::new();
    let l = log.clone();
    let out = block_on(support::order::run(order, async move |d| body(d, &l).await));
    assert_eq!(out, "out");
    log.events()
}

#[test]
fn lifo_is_the_default_and_runs_last_registered_first() {
    assert_eq!(
        run(Lifo),
        ["body", "d start", "d end", "c", "b start", "b end", "a"]
    );
    // The builder's default order is LIFO too.
    let log = DropLog::new();
    let l = log.clone();
    block_on(
        ScopeBuilder::new()
            .capacity::<256>()
            .run(async move |d| body(d, &l).await),
    );
    assert_eq!(log.events(), run(Lifo));
}

#[test]
fn fifo_runs_first_registered_first() {
    assert_eq!(
        run(Fifo),
        ["body", "a", "b start", "b end", "c", "d start", "d end"]
    );
}

#[test]
fn concurrent_starts_everything_then_polls_async_thunks_together() {
    let events = run(Concurrent);
    // Every thunk starts in registration order, as the seed's
    // `Promise.all(fns.map(fn => fn()))` calls them: sync ones run, async
    // ones are polled once; both async ones start before either ends.
    assert_eq!(&events[..5], ["body", "a", "b start", "c", "d start"]);
    let mut ends = events[5..].to_vec();
    ends.sort();
    assert_eq!(ends, ["b end", "d end"]);
}

#[test]
fn output_is_returned_only_after_every_thunk_finished() {
    for order in [Lifo, Fifo, Concurrent] {
        let gate = Gate::new();
        let wait = gate.wait();
        let mut scope = pin!(support::order::run(order, async move |d| {
            d.defer_async(wait);
            5
        }));
        let counter = WakeCounter::new();
        assert_eq!(
            poll_once(scope.as_mut(), &counter),
            Poll::Pending,
            "{order:?}"
        );
        assert_eq!(
            poll_once(scope.as_mut(), &counter),
            Poll::Pending,
            "{order:?}"
        );
        gate.open();
        assert!(
            counter.wakes() >= 1,
            "opening the gate wakes the scope ({order:?})"
        );
        assert_eq!(
            poll_once(scope.as_mut(), &counter),
            Poll::Ready(5),
            "{order:?}"
        );
    }
}

#[test]
fn thunks_see_and_change_the_output_in_cleanup_order() {
    let out = block_on(scope(async |d| {
        // Runs last (LIFO): sees what the later-registered ones did.
        d.defer_with(|exit: &mut Exit<Vec<&str>>| push(exit, "first registered"));
        d.defer_async(async {
            yield_now().await;
            |exit: &mut Exit<Vec<&str>>| push(exit, "async")
        });
        d.defer_with(|exit: &mut Exit<Vec<&str>>| push(exit, "last registered"));
        vec!["body"]
    }));
    assert_eq!(
        out,
        ["body", "last registered", "async", "first registered"]
    );
}

#[test]
fn a_failing_close_turns_ok_into_err() {
    struct Conn;
    impl Conn {
        async fn close(self) -> Result<(), &'static str> {
            yield_now().await;
            Err("close failed")
        }
    }
    let out: Result<u32, &str> = block_on(scope(async |d| {
        let conn = d.guard(Conn, drop);
        let conn = deferral::Guard::defuse(conn);
        d.defer_async(async move {
            let closed = conn.close().await;
            move |exit: &mut Exit<Result<u32, &'static str>>| {
                if let Err(e) = closed {
                    exit.add_error(e);
                }
            }
        });
        Ok(7)
    }));
    assert_eq!(out, Err("close failed"));
}

#[test]
fn error_outputs_run_every_thunk_too() {
    let log = DropLog::new();
    let (a, b) = (log.clone(), log.clone());
    let out: Result<(), &str> = block_on(scope(async move |d| {
        d.defer(move || a.push("a"));
        d.guard(b, |b| b.push("guard"));
        Err("failed")?;
        unreachable!()
    }));
    assert_eq!(out, Err("failed"));
    assert_eq!(log.events(), ["guard", "a"]);
}

#[test]
fn guards_give_the_body_mutable_access_and_cleanup_gets_the_final_value() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(ScopeBuilder::new().capacity::<256>().run(async move |d| {
        let l2 = l.clone();
        let mut count = d.guard(0_u32, move |n| l2.push(format!("sync {n}")));
        let mut name = d.guard_async(String::from("conn"), move |s| async move {
            yield_now().await;
            l.push(format!("async {s}"));
        });
        for _ in 0..3 {
            *count += 1;
            yield_now().await;
        }
        name.push_str("-closed");
    }));
    assert_eq!(log.events(), ["async conn-closed", "sync 3"]);
}

#[test]
fn nested_scopes_finish_inner_cleanup_before_outer() {
    let log = DropLog::new();
    let l = log.clone();
    block_on(scope(async move |outer| {
        let lo = l.clone();
        outer.defer(move || lo.push("outer"));
        let li = l.clone();
        scope(async move |inner: &deferral::Defer<()>| {
            inner.defer(move || li.push("inner"));
            yield_now().await;
        })
        .await;
        l.push("after inner");
    }));
    assert_eq!(log.events(), ["inner", "after inner", "outer"]);
}

#[test]
#[cfg(feature = "std")] // the ambient `deferral::defer` needs a thread-local
fn seed_example_two_functions_under_use_defer() {
    // The seed's `deferTest` / `deferTest2`, each run under `useDefer`: the
    // deferred function runs after the body's own output, before the scope
    // resolves with the body's result.
    async fn defer_test(log: DropLog) -> i32 {
        let l = log.clone();
        deferral::scope::try_defer(move || l.push("defer 1")).unwrap();
        log.push("not defer");
        1
    }
    async fn defer_test2(log: DropLog) -> i32 {
        let l = log.clone();
        deferral::scope::try_defer(move || l.push("defer 2")).unwrap();
        log.push("not defer 2");
        1
    }
    let log = DropLog::new();
    let (a, b) = (log.clone(), log.clone());
    assert_eq!(block_on(scope(async move |_| defer_test(a).await)), 1);
    assert_eq!(block_on(scope(async move |_| defer_test2(b).await)), 1);
    assert_eq!(
        log.events(),
        ["not defer", "defer 1", "not defer 2", "defer 2"]
    );
}

#[test]
fn polling_after_completion_panics_with_a_clear_message() {
    use futures::future::FusedFuture;
    let mut s = pin!(scope(async |_| 1));
    let counter = WakeCounter::new();
    assert!(!s.is_terminated());
    assert_eq!(poll_once(s.as_mut(), &counter), Poll::Ready(1));
    assert!(s.is_terminated());
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_once(s.as_mut(), &counter)
    }))
    .unwrap_err();
    assert_eq!(
        err.downcast_ref::<&str>(),
        Some(&"`DeferScope` polled after completion")
    );
}

fn push<'a>(exit: &mut Exit<Vec<&'a str>>, what: &'a str) {
    exit.output_mut().expect("the body returned").push(what);
}
