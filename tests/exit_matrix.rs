//! Every way a body can end (returned `Ok`, returned `Err`, panicked,
//! cancelled at each await point of the body or of its cleanup) × every
//! registration kind × every order, in `scope` and `scope_local`: each
//! registration runs at most once and is dropped exactly once, runs exactly
//! when its kind says it should, and in the documented order.
#![cfg(feature = "std")]

mod support;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;

use deferral::{Exit, Order, ScopeBuilder};
use support::{DropLog, WakeCounter, poll_once, yield_now};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Ok,
    Err,
    Panic,
}

type Out = Result<u32, String>;

/// The registrations, in registration order.
const KINDS: [&str; 13] = [
    "defer",
    "defer_with",
    "on_success",
    "on_unwind",
    "on_error",
    "async",
    "async_with",
    "async_on_exit",
    "async_on_success",
    "async_on_unwind",
    "async_on_error",
    "guard",
    "guard_async",
];

/// Whether `kind` runs when the body ended with `outcome` (and nothing else
/// changed the exit: no registration here fails or panics).
fn runs(kind: &str, outcome: Outcome) -> bool {
    match kind {
        "on_success" | "async_on_success" => outcome != Outcome::Panic,
        "on_unwind" | "async_on_unwind" => outcome == Outcome::Panic,
        "on_error" | "async_on_error" => outcome == Outcome::Err,
        _ => true,
    }
}

/// Runs when the scope is cancelled during its body: the sync registrations
/// that do not depend on the output or on a panic.
fn runs_when_cancelled(kind: &str) -> bool {
    matches!(kind, "defer" | "defer_with" | "guard")
}

/// Registers one of every kind, with an await point after each; each
/// thunk logs "run X" when it (starts to) run and owns a value that logs
/// "drop X". Then ends the body with `outcome`.
macro_rules! body {
    ($log:expr, $outcome:expr) => {{
        let log: DropLog = $log;
        let outcome: Outcome = $outcome;
        async move |d| -> Out {
            macro_rules! probe {
                ($name:literal) => {{
                    let (l, held) = (log.clone(), log.on_drop($name));
                    (move || l.push(concat!("run ", $name)), held)
                }};
            }
            let (run, held) = probe!("defer");
            d.defer(move || {
                let _held = held;
                run()
            });
            yield_now().await;
            let (run, held) = probe!("defer_with");
            d.defer_with(move |exit: &mut Exit<Out>| {
                let _held = held;
                assert_eq!(exit.output().is_some(), exit.is_returned());
                run()
            });
            yield_now().await;
            let (run, held) = probe!("on_success");
            d.defer(move || {
                let _held = held;
                run()
            }).when(When::Ok);
            yield_now().await;
            let (run, held) = probe!("on_unwind");
            d.defer(move || {
                let _held = held;
                run()
            }).when(When::Panicked);
            yield_now().await;
            let (run, held) = probe!("on_error");
            d.try_defer_on_error(move |e: &mut String| {
                let _held = held;
                assert_eq!(e, "body failed");
                run()
            })
            .unwrap();
            yield_now().await;
            let (run, held) = probe!("async");
            d.defer_async(async move {
                let _held = held;
                run();
                yield_now().await;
            });
            yield_now().await;
            let (run, held) = probe!("async_with");
            d.defer_async(async move {
                let _held = held;
                run();
                yield_now().await;
                |_: &mut Exit<Out>| ()
            });
            yield_now().await;
            let (run, held) = probe!("async_on_exit");
            d.try_defer_async_on_exit(move |_: &mut Exit<Out>| async move {
                let _held = held;
                run();
                yield_now().await;
            })
            .unwrap();
            yield_now().await;
            let (run, held) = probe!("async_on_success");
            d.defer_async(async move {
                let _held = held;
                run();
                yield_now().await;
            }).when(When::Ok);
            yield_now().await;
            let (run, held) = probe!("async_on_unwind");
            d.defer_async(async move {
                let _held = held;
                run();
                yield_now().await;
            }).when(When::Panicked);
            yield_now().await;
            let (run, held) = probe!("async_on_error");
            d.try_defer_async_on_error(move |e: &mut String| {
                assert_eq!(e, "body failed");
                async move {
                    let _held = held;
                    run();
                    yield_now().await;
                }
            })
            .unwrap();
            yield_now().await;
            let (run, held) = probe!("guard");
            let _g = d.try_guard(held, move |held| {
                let _held = held;
                run()
            });
            yield_now().await;
            let (run, held) = probe!("guard_async");
            let _ga = d.try_guard_async(held, move |held| async move {
                let _held = held;
                run();
                yield_now().await;
                Ok::<(), String>(()) // a close that succeeds
            });
            yield_now().await;
            match outcome {
                Outcome::Ok => Ok(7),
                Outcome::Err => Err("body failed".into()),
                Outcome::Panic => panic!("body panicked"),
            }
        }
    }};
}

type Scope<'a> = Pin<Box<dyn Future<Output = Out> + 'a>>;

fn make(local: bool, order: Order, log: DropLog, outcome: Outcome) -> Scope<'static> {
    if local {
        Box::pin(
            ScopeBuilder::new()
                .order(order)
                .run_local(body!(log, outcome)),
        )
    } else {
        Box::pin(ScopeBuilder::new().order(order).run(body!(log, outcome)))
    }
}

/// Polls until done, or until `limit` polls, then drops the scope.
/// Returns whether it finished, its output (if it returned) and the number
/// of polls.
fn drive(mut scope: Scope<'_>, limit: usize) -> (bool, Option<Out>, usize) {
    let counter = WakeCounter::new();
    let mut polls = 0;
    let mut output = None;
    let finished = catch_unwind(AssertUnwindSafe(|| {
        while polls < limit {
            polls += 1;
            if let std::task::Poll::Ready(out) = poll_once(scope.as_mut(), &counter) {
                output = Some(out);
                return;
            }
        }
    }));
    let done = output.is_some() || finished.is_err();
    // A scope dropped during the cleanup of a panicked body resumes that
    // panic from `drop` (it is not lost).
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(scope)));
    if let Err(p) = dropped {
        assert_eq!(p.downcast_ref::<&str>(), Some(&"body panicked"));
    }
    (done, output, polls)
}

fn counts(events: &[String]) -> HashMap<&str, usize> {
    let mut count = HashMap::new();
    for e in events {
        *count.entry(e.as_str()).or_default() += 1;
    }
    count
}

#[test]
fn every_outcome_every_registration_every_order() {
    for &local in FLAVOURS {
        for order in [Lifo, Fifo, Concurrent] {
            for outcome in [Outcome::Ok, Outcome::Err, Outcome::Panic] {
                let ctx = format!("local={local} {order:?} {outcome:?}");
                let log = DropLog::new();
                let (done, out, _) = drive(make(local, order, log.clone(), outcome), usize::MAX);
                assert!(done, "{ctx}");
                match outcome {
                    Outcome::Ok => assert_eq!(out, Some(Ok(7)), "{ctx}"),
                    Outcome::Err => assert_eq!(out, Some(Err("body failed".into())), "{ctx}"),
                    Outcome::Panic => assert_eq!(out, None, "{ctx}: the panic resumed"),
                }
                let events = log.events();
                let count = counts(&events);
                let mut expected_runs = Vec::new();
                for kind in KINDS {
                    let run = format!("run {kind}");
                    let ran = count.get(run.as_str()).copied().unwrap_or(0);
                    let dropped = count.get(format!("drop {kind}").as_str()).copied();
                    assert_eq!(dropped, Some(1), "{ctx}: {kind} dropped once: {events:?}");
                    assert_eq!(
                        ran,
                        usize::from(runs(kind, outcome)),
                        "{ctx}: {kind}: {events:?}"
                    );
                    if runs(kind, outcome) {
                        expected_runs.push(run);
                    }
                }
                // Documented order: LIFO reverses registration order; FIFO
                // keeps it; concurrent *starts* them in registration order.
                if order == Lifo {
                    expected_runs.reverse();
                }
                let ran: Vec<&String> = events.iter().filter(|e| e.starts_with("run ")).collect();
                assert_eq!(ran, expected_runs.iter().collect::<Vec<_>>(), "{ctx}");
            }
        }
    }
}

/// Under Miri (slow): one flavour per order, every third drop point.
const FLAVOURS: &[bool] = if cfg!(miri) { &[true] } else { &[false, true] };
const STRIDE: usize = if cfg!(miri) { 3 } else { 1 };

#[test]
fn cancelled_at_every_await_point_every_registration_every_order() {
    for &local in FLAVOURS {
        for order in [Lifo, Fifo, Concurrent] {
            for outcome in [Outcome::Ok, Outcome::Err, Outcome::Panic] {
                let (_, _, total) = drive(make(local, order, DropLog::new(), outcome), usize::MAX);
                // The body awaits once per registration: the first 14 polls
                // end inside the body, the rest inside cleanup.
                let body_polls = KINDS.len() + 1;
                for limit in (1..total).step_by(STRIDE) {
                    let ctx =
                        format!("local={local} {order:?} {outcome:?} dropped after {limit} polls");
                    let log = DropLog::new();
                    let (done, _, _) = drive(make(local, order, log.clone(), outcome), limit);
                    assert!(!done, "{ctx}");
                    let events = log.events();
                    let count = counts(&events);
                    let registered = KINDS.len().min(limit);
                    for (i, kind) in KINDS.iter().enumerate() {
                        let run = count
                            .get(format!("run {kind}").as_str())
                            .copied()
                            .unwrap_or(0);
                        let dropped = count
                            .get(format!("drop {kind}").as_str())
                            .copied()
                            .unwrap_or(0);
                        if i >= registered {
                            assert_eq!((run, dropped), (0, 0), "{ctx}: {kind} never registered");
                            continue;
                        }
                        assert_eq!(dropped, 1, "{ctx}: {kind} dropped once: {events:?}");
                        assert!(run <= 1, "{ctx}: {kind} ran twice: {events:?}");
                        if limit < body_polls {
                            // Cancelled in the body: no output, no panic.
                            assert_eq!(
                                run,
                                usize::from(runs_when_cancelled(kind)),
                                "{ctx}: {kind}: {events:?}"
                            );
                        } else if run == 1 {
                            assert!(runs(kind, outcome), "{ctx}: {kind} should not run");
                        }
                    }
                }
            }
        }
    }
}
