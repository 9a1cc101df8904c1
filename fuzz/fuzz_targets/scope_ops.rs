//! Random sequences of register / cancel / await / panic operations in a
//! scope's body, which then returns `Ok`, returns `Err` or panics, driven for
//! a random number of polls and then dropped (or run to the end), checked
//! against a model: every thunk and guarded value runs or is dropped exactly
//! once, cancelled ones never run, conditional ones (on success, on error,
//! on unwind) run exactly when the exit they see says so, and completed
//! LIFO/FIFO cleanup runs in the modelled order and ends with the modelled
//! output: cleanup errors appended to an `Errors` chain, panics resumed
//! unless a cleanup recovered them.
#![no_main]

use std::pin::Pin;
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use deferral::{Errors, Exit, Guard, Order, ScopeBuilder};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Defer,
    DeferAsync { yields: u8 },
    Guard,
    GuardAsync { yields: u8 },
    /// A sync thunk that runs, then panics.
    PanickingThunk,
    /// Cancel (defuse) the newest registration still holding a token.
    CancelNewest,
    /// Cancel the oldest registration still holding a token.
    CancelOldest,
    /// The body awaits once.
    Yield,
    /// `defer_on_success`, `defer_on_unwind`, `defer_on_error`; `asynchronous`:
    /// their async forms.
    OnSuccess { asynchronous: bool },
    OnUnwind { asynchronous: bool },
    OnError { asynchronous: bool },
    /// A cleanup that fails: adds its error to the output.
    Failing { asynchronous: bool },
    /// `defer_with` that recovers a panic in flight, output `Ok(())`.
    Recover,
}

#[derive(Debug, Arbitrary)]
struct Input {
    order: u8,
    small_slab: bool,
    body_panics: bool,
    body_fails: bool,
    /// Drop the scope after this many polls (if it has not finished).
    polls: Option<u8>,
    ops: Vec<Op>,
}

const INJECTED: &str = "fuzz-injected panic";

type Log = Arc<Mutex<Vec<(usize, Event)>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Ran,
    Dropped,
}

/// Records exactly one event: `Ran` when run, `Dropped` if dropped unrun.
struct Probe {
    id: usize,
    log: Log,
    done: bool,
}

impl Probe {
    fn run(mut self) {
        self.done = true;
        self.log.lock().unwrap().push((self.id, Event::Ran));
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if !self.done {
            self.log.lock().unwrap().push((self.id, Event::Dropped));
        }
    }
}

/// Yields `n` times, then runs the probe.
struct AsyncProbe {
    probe: Option<Probe>,
    yields: u8,
}

impl Future for AsyncProbe {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yields > 0 {
            self.yields -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.probe.take().expect("polled after completion").run();
        Poll::Ready(())
    }
}

struct YieldNow(bool);
impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Sync,
    Async,
    /// Runs only on some exits; sync or async.
    OnSuccess(bool),
    OnUnwind(bool),
    OnError(bool),
    /// Runs always, then adds its id to the errors.
    Failing(bool),
    /// Runs always; stops a panic in flight.
    Recover,
    /// Runs always, then panics.
    Panicking,
}

type Out = Result<(), Errors<usize>>;

/// The body's error, in the output's `Errors`.
const BODY_ERROR: usize = usize::MAX;

fn run(input: Input) {
    let order = match input.order % 3 {
        0 => Order::Lifo,
        1 => Order::Fifo,
        _ => Order::Concurrent,
    };
    let log = Log::default();
    // (id, kind, cancelled), in registration order: the model.
    let model = Arc::new(Mutex::new(Vec::<(usize, Kind, bool)>::new()));
    let n_ops = input.ops.len();
    let (l, m) = (log.clone(), model.clone());
    let ops = input.ops;
    let body_panics = input.body_panics;
    let body_fails = input.body_fails;
    let body = async move |d: &deferral::Defer<Out>| -> Out {
        let mut cancels: Vec<(usize, Box<dyn FnOnce() + '_>)> = Vec::new();
        for (id, op) in ops.into_iter().enumerate() {
            let probe = Probe { id, log: l.clone(), done: false };
            let kind = match op {
                Op::Defer => {
                    let t = d.defer(move || probe.run()).unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::Sync
                }
                Op::PanickingThunk => {
                    let t = d
                        .defer(move || {
                            probe.run();
                            panic!("{INJECTED}");
                        })
                        .unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::Panicking
                }
                Op::OnSuccess { asynchronous: false } => {
                    let t = d.defer_on_success(move || probe.run()).unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::OnSuccess(false)
                }
                Op::OnSuccess { asynchronous: true } => {
                    let t = d.defer_async_on_success(AsyncProbe { probe: Some(probe), yields: 1 }).unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::OnSuccess(true)
                }
                Op::OnUnwind { asynchronous: false } => {
                    let t = d.defer_on_unwind(move || probe.run()).unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::OnUnwind(false)
                }
                Op::OnUnwind { asynchronous: true } => {
                    let t = d.defer_async_on_unwind(AsyncProbe { probe: Some(probe), yields: 1 }).unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::OnUnwind(true)
                }
                Op::OnError { asynchronous: false } => {
                    let t = d.defer_on_error(move |_: &mut Errors<usize>| probe.run()).unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::OnError(false)
                }
                Op::OnError { asynchronous: true } => {
                    let t = d
                        .defer_async_on_error(move |_: &mut Errors<usize>| AsyncProbe { probe: Some(probe), yields: 1 })
                        .unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::OnError(true)
                }
                Op::Failing { asynchronous: false } => {
                    let t = d
                        .defer(move || {
                            probe.run();
                            Err(id)
                        })
                        .unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::Failing(false)
                }
                Op::Failing { asynchronous: true } => {
                    let g = d
                        .guard_async(probe, move |p| async move {
                            YieldNow(false).await;
                            p.run();
                            Err(id)
                        })
                        .unwrap();
                    cancels.push((id, Box::new(move || drop(Guard::defuse(g)))));
                    Kind::Failing(true)
                }
                Op::Recover => {
                    let t = d
                        .defer_with(move |exit: &mut Exit<Out>| {
                            probe.run();
                            exit.recover(Ok(()));
                        })
                        .unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::Recover
                }
                Op::DeferAsync { yields } => {
                    let t = d.defer_async(AsyncProbe { probe: Some(probe), yields: yields % 4 }).unwrap();
                    cancels.push((id, Box::new(move || drop(t.cancel()))));
                    Kind::Async
                }
                Op::Guard => {
                    let g = d.guard(probe, Probe::run).unwrap();
                    assert_eq!(g.id, id);
                    cancels.push((id, Box::new(move || drop(Guard::defuse(g)))));
                    Kind::Sync
                }
                Op::GuardAsync { yields } => {
                    let g = d
                        .guard_async(probe, move |p| AsyncProbe { probe: Some(p), yields: yields % 4 })
                        .unwrap();
                    cancels.push((id, Box::new(move || drop(Guard::defuse(g)))));
                    Kind::Async
                }
                Op::CancelNewest | Op::CancelOldest => {
                    drop(probe);
                    let which = if matches!(op, Op::CancelNewest) { cancels.len().checked_sub(1) } else { Some(0) };
                    if let Some(i) = which.filter(|&i| i < cancels.len()) {
                        let (cid, cancel) = cancels.remove(i);
                        cancel();
                        m.lock().unwrap()[cid].2 = true;
                    }
                    m.lock().unwrap().push((id, Kind::Sync, true)); // the unused probe
                    continue;
                }
                Op::Yield => {
                    drop(probe);
                    m.lock().unwrap().push((id, Kind::Sync, true));
                    YieldNow(false).await;
                    continue;
                }
            };
            m.lock().unwrap().push((id, kind, false));
        }
        drop(cancels); // dropping tokens keeps the registrations
        if body_panics {
            panic!("{INJECTED}");
        }
        if body_fails { Err(Errors::new(BODY_ERROR)) } else { Ok(()) }
    };
    let scope = if input.small_slab {
        Box::pin(ScopeBuilder::new().capacity::<64>().order(order).run(body)) as Pin<Box<dyn Future<Output = Out>>>
    } else {
        Box::pin(ScopeBuilder::new().capacity::<2048>().order(order).run(body))
    };

    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let limit = input.polls.map_or(usize::MAX, usize::from);
    let mut scope = Some(scope);
    let completed;
    let mut output = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut polls = 0;
        while polls < limit {
            polls += 1;
            if let Poll::Ready(out) = scope.as_mut().unwrap().as_mut().poll(&mut cx) {
                output = Some(out);
                break;
            }
            assert!(polls < 100_000, "scope does not make progress");
        }
        drop(scope.take()); // cancellation, if not completed
    }));
    // A panic out of `poll` finished the scope too.
    completed = output.is_some() || (result.is_err() && scope.is_some());
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(scope.take())));

    // Model checks.
    let events = log.lock().unwrap().clone();
    let model = model.lock().unwrap().clone();
    assert!(model.len() <= n_ops);
    let mut seen = vec![None; n_ops];
    for &(id, e) in &events {
        assert!(seen[id].is_none(), "probe {id} had two events: {events:?}");
        seen[id] = Some(e);
    }
    let panicked = result.is_err();
    for &(id, kind, cancelled) in &model {
        let event = seen[id];
        if cancelled {
            assert_eq!(event, Some(Event::Dropped), "cancelled {id} must be dropped unrun");
            continue;
        }
        assert!(event.is_some(), "{id} ({kind:?}) neither ran nor dropped: {events:?}");
        if !completed {
            continue; // dropped early: exactly once is all that holds for every kind
        }
        match kind {
            Kind::Sync | Kind::Panicking | Kind::Recover | Kind::Failing(_) | Kind::Async => {
                assert_eq!(event, Some(Event::Ran), "{id} ({kind:?}) must run: {events:?} {model:?}")
            }
            _ => {}
        }
    }
    if !completed || order == Order::Concurrent {
        return;
    }
    // Completed, sequential: replay the cleanup on the model's exit.
    let mut expected: Vec<(usize, Kind)> =
        model.iter().filter(|(_, _, cancelled)| !cancelled).map(|&(id, kind, _)| (id, kind)).collect();
    if order == Order::Lifo {
        expected.reverse();
    }
    let mut panic = body_panics;
    let mut out: Option<Vec<usize>> = match (body_panics, body_fails) {
        (true, _) => None,
        (false, true) => Some(vec![BODY_ERROR]),
        (false, false) => Some(vec![]),
    };
    let mut ran = Vec::new();
    for (id, kind) in expected {
        let runs = match kind {
            Kind::OnSuccess(_) => !panic,
            Kind::OnUnwind(_) => panic,
            Kind::OnError(_) => out.as_ref().is_some_and(|errors| !errors.is_empty()),
            _ => true,
        };
        if runs {
            ran.push(id);
        } else {
            assert_eq!(seen[id], Some(Event::Dropped), "{id} ({kind:?}) must not run: {events:?}");
        }
        match kind {
            Kind::Panicking => panic = true,
            Kind::Failing(_) => {
                if let Some(errors) = &mut out {
                    errors.push(id);
                }
            }
            Kind::Recover if panic => {
                panic = false;
                out = Some(vec![]);
            }
            _ => {}
        }
    }
    let actual: Vec<usize> = events.iter().filter(|(_, e)| *e == Event::Ran).map(|(id, _)| *id).collect();
    assert_eq!(actual, ran, "cleanup order ({order:?}): {model:?}");
    assert_eq!(panicked, panic, "the panic resumes unless recovered");
    if !panic {
        let errors = out.expect("an output unless panicking");
        let output = output.expect("returned");
        match output {
            Ok(()) => assert!(errors.is_empty(), "expected errors {errors:?}"),
            Err(chain) => assert_eq!(chain.into_vec(), errors),
        }
    }
}

fuzz_target!(|input: Input| {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // libfuzzer-sys aborts on any panic; injected panics are expected
        // and caught, every other panic (a failed check) must still abort.
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if msg != INJECTED {
                eprintln!("{info}");
                std::process::abort();
            }
        }));
    });
    run(input);
});
