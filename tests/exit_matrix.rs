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

use deferral::{Exit, Outcome, When};
use support::order::{ORDERS, Order};
use support::{DropLog, WakeCounter, poll_once, yield_now};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    Ok,
    Err,
    Panic,
}

type Out = Result<u32, String>;

/// The registrations, in registration order: the eight ways in, and
/// conditions (`When`) on sync, async and guarded cleanup.
const KINDS: [&str; 19] = [
    "defer",
    "defer_with",
    "when_ok",
    "when_err",
    "when_failed",
    "when_panicked",
    "when_cancelled",
    "when_not_panicked",
    "async",
    "async_with",
    "async_when_ok",
    "async_when_err",
    "async_when_failed",
    "async_when_not_panicked",
    "guard",
    "guard_with",
    "guard_when_ok",
    "guard_async",
    "guard_async_with",
];

/// What the body's ending is, as cleanup sees it.
fn outcome_of(ending: Ending) -> Outcome {
    match ending {
        Ending::Ok => Outcome::Ok,
        Ending::Err => Outcome::Err,
        Ending::Panic => Outcome::Panicked,
    }
}

/// Whether `kind` runs when the scope ended with `outcome` (and nothing else
/// changed the exit: no registration here fails or panics).
fn runs(kind: &str, outcome: Outcome) -> bool {
    let when = match kind {
        "when_ok" | "async_when_ok" | "guard_when_ok" => When::Ok,
        "when_err" | "async_when_err" => When::Err,
        "when_failed" | "async_when_failed" => When::Failed,
        "when_panicked" => When::Panicked,
        "when_cancelled" => When::Cancelled,
        "when_not_panicked" | "async_when_not_panicked" => When::NotPanicked,
        _ => When::Always,
    };
    when.holds(outcome)
}

fn is_async(kind: &str) -> bool {
    kind.contains("async")
}

/// Registers one of every kind, with an await point after each; each
/// cleanup logs "run X" when it (starts to) run and owns a value that logs
/// "drop X". Then ends the body with `ending`.
macro_rules! body {
    ($log:expr, $ending:expr) => {{
        let log: DropLog = $log;
        let ending: Ending = $ending;
        let expected = outcome_of(ending);
        async move |d| -> Out {
            macro_rules! probe {
                ($name:literal) => {{
                    let (l, held) = (log.clone(), log.on_drop($name));
                    (move || l.push(concat!("run ", $name)), held)
                }};
            }
            macro_rules! sync_when {
                ($name:literal, $when:expr) => {{
                    let (run, held) = probe!($name);
                    d.defer(move || {
                        let _held = held;
                        run()
                    })
                    .when($when);
                    yield_now().await;
                }};
            }
            macro_rules! async_when {
                ($name:literal, $when:expr) => {{
                    let (run, held) = probe!($name);
                    d.defer_async(async move {
                        let _held = held;
                        run();
                        yield_now().await;
                    })
                    .when($when);
                    yield_now().await;
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
            sync_when!("when_ok", When::Ok);
            sync_when!("when_err", When::Err);
            sync_when!("when_failed", When::Failed);
            sync_when!("when_panicked", When::Panicked);
            sync_when!("when_cancelled", When::Cancelled);
            sync_when!("when_not_panicked", When::NotPanicked);
            let (run, held) = probe!("async");
            d.defer_async(async move {
                let _held = held;
                run();
                yield_now().await;
            });
            yield_now().await;
            let (run, held) = probe!("async_with");
            d.defer_async_with(move |outcome: Outcome| async move {
                let _held = held;
                assert!(
                    outcome == expected || outcome == Outcome::Cancelled,
                    "{outcome:?}"
                );
                run();
                yield_now().await;
            });
            yield_now().await;
            async_when!("async_when_ok", When::Ok);
            async_when!("async_when_err", When::Err);
            async_when!("async_when_failed", When::Failed);
            async_when!("async_when_not_panicked", When::NotPanicked);
            let (run, held) = probe!("guard");
            let _g = d.guard(held, move |held| {
                let _held = held;
                run()
            });
            yield_now().await;
            let (run, held) = probe!("guard_with");
            let _gw = d.guard_with(held, move |held, exit: &mut Exit<Out>| {
                let _held = held;
                let o = exit.outcome();
                assert!(o == expected || o == Outcome::Cancelled, "{o:?}");
                run()
            });
            yield_now().await;
            let (run, held) = probe!("guard_when_ok");
            let _gok = d
                .guard(held, move |held| {
                    let _held = held;
                    run()
                })
                .when(When::Ok);
            yield_now().await;
            let (run, held) = probe!("guard_async");
            let _ga = d.guard_async(held, move |held| async move {
                let _held = held;
                run();
                yield_now().await;
                Ok::<(), String>(()) // a close that succeeds
            });
            yield_now().await;
            let (run, held) = probe!("guard_async_with");
            let fallback = log.clone();
            let _gaw = d.guard_async_with(
                held,
                move |held, outcome| async move {
                    let _held = held;
                    assert!(
                        outcome == expected || outcome == Outcome::Cancelled,
                        "{outcome:?}"
                    );
                    run();
                    yield_now().await;
                },
                move |held| {
                    fallback.push("fallback guard_async_with");
                    drop(held);
                },
            );
            yield_now().await;
            match ending {
                Ending::Ok => Ok(7),
                Ending::Err => Err("body failed".into()),
                Ending::Panic => panic!("body panicked"),
            }
        }
    }};
}

type Scope<'a> = Pin<Box<dyn Future<Output = Out> + 'a>>;

fn make(local: bool, order: Order, log: DropLog, ending: Ending) -> Scope<'static> {
    // 19 registrations do not all fit the default slab without `alloc`.
    if local {
        support::order::run_local_n::<2048, _, _>(order, body!(log, ending))
    } else {
        support::order::run_n::<2048, _, _>(order, body!(log, ending))
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
        for order in ORDERS {
            for ending in [Ending::Ok, Ending::Err, Ending::Panic] {
                let ctx = format!("local={local} {order:?} {ending:?}");
                let outcome = outcome_of(ending);
                let log = DropLog::new();
                let (done, out, _) = drive(make(local, order, log.clone(), ending), usize::MAX);
                assert!(done, "{ctx}");
                match ending {
                    Ending::Ok => assert_eq!(out, Some(Ok(7)), "{ctx}"),
                    Ending::Err => assert_eq!(out, Some(Err("body failed".into())), "{ctx}"),
                    Ending::Panic => assert_eq!(out, None, "{ctx}: the panic resumed"),
                }
                let events = log.events();
                let count = counts(&events);
                assert_eq!(
                    count.get("fallback guard_async_with"),
                    None,
                    "{ctx}: {events:?}"
                );
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
                if order == Order::Lifo {
                    expected_runs.reverse();
                }
                let ran: Vec<&String> = events.iter().filter(|e| e.starts_with("run ")).collect();
                assert_eq!(ran, expected_runs.iter().collect::<Vec<_>>(), "{ctx}");
            }
        }
    }
}

/// Under Miri (slow): one flavour, every third drop point.
const FLAVOURS: &[bool] = if cfg!(miri) { &[true] } else { &[false, true] };
const STRIDE: usize = if cfg!(miri) { 3 } else { 1 };

/// The one rule of cancellation: a scope dropped in its body ended
/// `Cancelled`; one dropped in its cleanup keeps the body's outcome. Either
/// way a registration runs only if its condition holds for that outcome:
/// sync cleanup then runs in the drop, async cleanup that never started is
/// handed over (here: nobody takes it, so it is dropped, and an async guard's
/// fallback gets its value), started async cleanup is dropped.
#[test]
fn cancelled_at_every_await_point_every_registration_every_order() {
    for &local in FLAVOURS {
        for order in ORDERS {
            for ending in [Ending::Ok, Ending::Err, Ending::Panic] {
                let (_, _, total) = drive(make(local, order, DropLog::new(), ending), usize::MAX);
                // The body awaits once per registration: the first polls end
                // inside the body, the rest inside cleanup.
                let body_polls = KINDS.len() + 1;
                for limit in (1..total).step_by(STRIDE) {
                    let ctx =
                        format!("local={local} {order:?} {ending:?} dropped after {limit} polls");
                    let log = DropLog::new();
                    let (done, _, _) = drive(make(local, order, log.clone(), ending), limit);
                    assert!(!done, "{ctx}");
                    let events = log.events();
                    let count = counts(&events);
                    let outcome = if limit < body_polls {
                        Outcome::Cancelled
                    } else {
                        outcome_of(ending)
                    };
                    let registered = KINDS.len().min(limit);
                    for (i, kind) in KINDS.iter().enumerate() {
                        let get = |e: String| count.get(e.as_str()).copied().unwrap_or(0);
                        let run = get(format!("run {kind}"));
                        let dropped = get(format!("drop {kind}"));
                        if i >= registered {
                            assert_eq!((run, dropped), (0, 0), "{ctx}: {kind} never registered");
                            continue;
                        }
                        assert_eq!(dropped, 1, "{ctx}: {kind} dropped once: {events:?}");
                        assert!(run <= 1, "{ctx}: {kind} ran twice: {events:?}");
                        if run == 1 {
                            assert!(runs(kind, outcome), "{ctx}: {kind} should not run");
                        }
                        if limit < body_polls && !is_async(kind) {
                            // Cancelled in the body: sync cleanup whose
                            // condition holds for `Cancelled` runs.
                            assert_eq!(
                                run,
                                usize::from(runs(kind, outcome)),
                                "{ctx}: {kind}: {events:?}"
                            );
                        }
                        if *kind == "guard_async_with" {
                            let fallback = get("fallback guard_async_with".into());
                            assert_eq!(
                                run + fallback,
                                1,
                                "{ctx}: the async guard ran or its fallback got the value: {events:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
