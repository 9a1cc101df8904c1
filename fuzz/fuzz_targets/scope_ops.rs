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
use deferral::{DeferStack, Errors, Exit, Guard, Order, ScopeBuilder};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Defer,
    DeferAsync {
        yields: u8,
    },
    Guard,
    GuardAsync {
        yields: u8,
    },
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
    OnSuccess {
        asynchronous: bool,
    },
    OnUnwind {
        asynchronous: bool,
    },
    OnError {
        asynchronous: bool,
    },
    /// A cleanup that fails: adds its error to the output.
    Failing {
        asynchronous: bool,
    },
    /// `defer_with` that recovers a panic in flight, output `Ok(())`.
    Recover,
    /// `Defer::clear`: every pending registration but guards dropped unrun.
    Clear,
    /// `Defer::move_all` into a stack that outlives the scope.
    MoveAll,
    /// Take the newest registration still holding a token or guard back:
    /// a guard's cleanup runs now (`Guard::run_now`), a token cancels.
    RunNowNewest,
}

#[derive(Debug, Arbitrary)]
struct Input {
    order: u8,
    small_slab: bool,
    body_panics: bool,
    body_fails: bool,
    /// Dispose of the stack `MoveAll` filled (else it is dropped).
    dispose_stack: bool,
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

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    /// Cancelled, cleared or never registered: dropped unrun.
    Dropped,
    /// Moved into the stack.
    Moved,
    /// A guard run now.
    RanEarly,
}

/// What taking a registration back did.
enum Took {
    Cancelled,
    Ran,
    /// The token was refused (cleared or moved since).
    Stale,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: usize,
    kind: Kind,
    guard: bool,
    state: State,
    /// `clear`/`move_all` removed something since it was registered: its
    /// token is refused (a guard's never is).
    stale: bool,
}

impl Kind {
    /// Runs with any exit: `move_all` takes it.
    fn portable(self) -> bool {
        matches!(
            self,
            Kind::Sync | Kind::Async | Kind::OnSuccess(_) | Kind::OnUnwind(_) | Kind::Panicking
        )
    }
}

/// The body's error, in the output's `Errors`.
const BODY_ERROR: usize = usize::MAX;

fn run(input: Input) {
    let order = match input.order % 3 {
        0 => Order::Lifo,
        1 => Order::Fifo,
        _ => Order::Concurrent,
    };
    let log = Log::default();
    // In registration order: the model.
    let model = Arc::new(Mutex::new(Vec::<Entry>::new()));
    let stack: Arc<Mutex<DeferStack>> = Arc::default();
    let n_ops = input.ops.len();
    let (l, m, st) = (log.clone(), model.clone(), stack.clone());
    let ops = input.ops;
    let body_panics = input.body_panics;
    let body_fails = input.body_fails;
    let body = async move |d: &deferral::Defer<Out>| -> Out {
        type Take<'a> = Box<dyn FnOnce(bool) -> Took + 'a>;
        let mut cancels: Vec<(usize, Take<'_>)> = Vec::new();
        macro_rules! token {
            ($t:expr) => {{
                let t = $t;
                Box::new(move |_run_now: bool| match t.try_cancel() {
                    Some(x) => {
                        drop(x);
                        Took::Cancelled
                    }
                    None => Took::Stale,
                }) as Take<'_>
            }};
        }
        for (id, op) in ops.into_iter().enumerate() {
            let probe = Probe {
                id,
                log: l.clone(),
                done: false,
            };
            let (kind, guard) = match op {
                Op::Defer => {
                    cancels.push((id, token!(d.try_defer(move || probe.run()).unwrap())));
                    (Kind::Sync, false)
                }
                Op::PanickingThunk => {
                    let t = d
                        .try_defer(move || {
                            probe.run();
                            panic!("{INJECTED}");
                        })
                        .unwrap();
                    cancels.push((id, token!(t)));
                    (Kind::Panicking, false)
                }
                Op::OnSuccess {
                    asynchronous: false,
                } => {
                    cancels.push((
                        id,
                        token!(d.try_defer_on_success(move || probe.run()).unwrap()),
                    ));
                    (Kind::OnSuccess(false), false)
                }
                Op::OnSuccess { asynchronous: true } => {
                    let t = d
                        .try_defer_async_on_success(AsyncProbe {
                            probe: Some(probe),
                            yields: 1,
                        })
                        .unwrap();
                    cancels.push((id, token!(t)));
                    (Kind::OnSuccess(true), false)
                }
                Op::OnUnwind {
                    asynchronous: false,
                } => {
                    cancels.push((
                        id,
                        token!(d.try_defer_on_unwind(move || probe.run()).unwrap()),
                    ));
                    (Kind::OnUnwind(false), false)
                }
                Op::OnUnwind { asynchronous: true } => {
                    let t = d
                        .try_defer_async_on_unwind(AsyncProbe {
                            probe: Some(probe),
                            yields: 1,
                        })
                        .unwrap();
                    cancels.push((id, token!(t)));
                    (Kind::OnUnwind(true), false)
                }
                Op::OnError {
                    asynchronous: false,
                } => {
                    let t = d
                        .try_defer_on_error(move |_: &mut Errors<usize>| probe.run())
                        .unwrap();
                    cancels.push((id, token!(t)));
                    (Kind::OnError(false), false)
                }
                Op::OnError { asynchronous: true } => {
                    let t = d
                        .try_defer_async_on_error(move |_: &mut Errors<usize>| AsyncProbe {
                            probe: Some(probe),
                            yields: 1,
                        })
                        .unwrap();
                    cancels.push((id, token!(t)));
                    (Kind::OnError(true), false)
                }
                Op::Failing {
                    asynchronous: false,
                } => {
                    let t = d
                        .try_defer(move || {
                            probe.run();
                            Err(id)
                        })
                        .unwrap();
                    cancels.push((id, token!(t)));
                    (Kind::Failing(false), false)
                }
                Op::Failing { asynchronous: true } => {
                    let g = d
                        .try_guard_async(probe, move |p| async move {
                            YieldNow(false).await;
                            p.run();
                            Err(id)
                        })
                        .unwrap();
                    // An async guard run now hands back its future: dropped
                    // here, unpolled (the probe inside is dropped).
                    cancels.push((
                        id,
                        Box::new(move |_| {
                            drop(Guard::into_parts(g));
                            Took::Cancelled
                        }),
                    ));
                    (Kind::Failing(true), true)
                }
                Op::Recover => {
                    let t = d
                        .try_defer_with(move |exit: &mut Exit<Out>| {
                            probe.run();
                            exit.recover(Ok(()));
                        })
                        .unwrap();
                    cancels.push((id, token!(t)));
                    (Kind::Recover, false)
                }
                Op::DeferAsync { yields } => {
                    let t = d
                        .try_defer_async(AsyncProbe {
                            probe: Some(probe),
                            yields: yields % 4,
                        })
                        .unwrap();
                    cancels.push((id, token!(t)));
                    (Kind::Async, false)
                }
                Op::Guard => {
                    let g = d.try_guard(probe, Probe::run).unwrap();
                    assert_eq!(g.id, id);
                    cancels.push((
                        id,
                        Box::new(move |run_now| {
                            if run_now {
                                Guard::run_now(g);
                                Took::Ran
                            } else {
                                drop(Guard::defuse(g));
                                Took::Cancelled
                            }
                        }),
                    ));
                    (Kind::Sync, true)
                }
                Op::GuardAsync { yields } => {
                    let g = d
                        .try_guard_async(probe, move |p| AsyncProbe {
                            probe: Some(p),
                            yields: yields % 4,
                        })
                        .unwrap();
                    cancels.push((
                        id,
                        Box::new(move |_| {
                            drop(Guard::defuse(g));
                            Took::Cancelled
                        }),
                    ));
                    (Kind::Async, true)
                }
                Op::CancelNewest | Op::CancelOldest | Op::RunNowNewest => {
                    drop(probe);
                    let which = if matches!(op, Op::CancelOldest) {
                        Some(0)
                    } else {
                        cancels.len().checked_sub(1)
                    };
                    if let Some(i) = which.filter(|&i| i < cancels.len()) {
                        let (cid, take) = cancels.remove(i);
                        let took = take(matches!(op, Op::RunNowNewest));
                        let mut m = m.lock().unwrap();
                        match took {
                            Took::Cancelled => {
                                assert!(!m[cid].stale, "a stale token was honoured: {:?}", m[cid]);
                                m[cid].state = State::Dropped
                            }
                            Took::Ran => m[cid].state = State::RanEarly,
                            Took::Stale => {
                                assert!(m[cid].stale, "a token was refused: {:?}", m[cid])
                            }
                        }
                    }
                    m.lock().unwrap().push(Entry {
                        id,
                        kind: Kind::Sync,
                        guard: false,
                        state: State::Dropped,
                        stale: false,
                    });
                    continue;
                }
                Op::Clear => {
                    drop(probe);
                    let n = d.clear();
                    let mut m = m.lock().unwrap();
                    let mut expected = 0;
                    for e in m
                        .iter_mut()
                        .filter(|e| e.state == State::Pending && !e.guard)
                    {
                        e.state = State::Dropped;
                        expected += 1;
                    }
                    assert_eq!(n, expected, "clear: {m:?}");
                    if n > 0 {
                        m.iter_mut()
                            .filter(|e| !e.guard)
                            .for_each(|e| e.stale = true);
                    }
                    m.push(Entry {
                        id,
                        kind: Kind::Sync,
                        guard: false,
                        state: State::Dropped,
                        stale: false,
                    });
                    continue;
                }
                Op::MoveAll => {
                    drop(probe);
                    let n = d.move_all(&mut st.lock().unwrap());
                    let mut m = m.lock().unwrap();
                    let mut expected = 0;
                    for e in m
                        .iter_mut()
                        .filter(|e| e.state == State::Pending && !e.guard && e.kind.portable())
                    {
                        e.state = State::Moved;
                        expected += 1;
                    }
                    assert_eq!(n, expected, "move_all: {m:?}");
                    if n > 0 {
                        m.iter_mut()
                            .filter(|e| !e.guard)
                            .for_each(|e| e.stale = true);
                    }
                    m.push(Entry {
                        id,
                        kind: Kind::Sync,
                        guard: false,
                        state: State::Dropped,
                        stale: false,
                    });
                    continue;
                }
                Op::Yield => {
                    drop(probe);
                    m.lock().unwrap().push(Entry {
                        id,
                        kind: Kind::Sync,
                        guard: false,
                        state: State::Dropped,
                        stale: false,
                    });
                    YieldNow(false).await;
                    continue;
                }
            };
            m.lock().unwrap().push(Entry {
                id,
                kind,
                guard,
                state: State::Pending,
                stale: false,
            });
        }
        drop(cancels); // dropping tokens keeps the registrations
        if body_panics {
            panic!("{INJECTED}");
        }
        if body_fails {
            Err(Errors::new(BODY_ERROR))
        } else {
            Ok(())
        }
    };
    let scope = if input.small_slab {
        Box::pin(ScopeBuilder::new().capacity::<64>().order(order).run(body))
            as Pin<Box<dyn Future<Output = Out>>>
    } else {
        Box::pin(
            ScopeBuilder::new()
                .capacity::<2048>()
                .order(order)
                .run(body),
        )
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
    // The stack outlives the scope: disposed of (awaited) or dropped.
    let stack = std::mem::take(&mut *stack.lock().unwrap());
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if input.dispose_stack {
            let mut dispose = std::pin::pin!(stack.dispose());
            let mut polls = 0;
            while dispose.as_mut().poll(&mut cx).is_pending() {
                polls += 1;
                assert!(polls < 100_000, "dispose does not make progress");
            }
        } else {
            drop(stack);
        }
    }));

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
    for e in &model {
        let event = seen[e.id];
        match e.state {
            State::Dropped => {
                assert_eq!(
                    event,
                    Some(Event::Dropped),
                    "{e:?} must be dropped unrun: {events:?}"
                );
                continue;
            }
            State::RanEarly => {
                assert_eq!(event, Some(Event::Ran), "{e:?} ran now: {events:?}");
                continue;
            }
            State::Moved => continue, // checked below, on the stack's own exit
            State::Pending => {}
        }
        assert!(event.is_some(), "{e:?} neither ran nor dropped: {events:?}");
        if !completed {
            continue; // dropped early: exactly once is all that holds for every kind
        }
        match e.kind {
            Kind::Sync | Kind::Panicking | Kind::Recover | Kind::Failing(_) | Kind::Async => {
                assert_eq!(
                    event,
                    Some(Event::Ran),
                    "{e:?} must run: {events:?} {model:?}"
                )
            }
            _ => {}
        }
    }
    // The stack: LIFO over what moved (in registration order), on an exit
    // that "returned" and sees the panics of the cleanups run before.
    let mut stack_panic = false;
    for e in model.iter().rev().filter(|e| e.state == State::Moved) {
        let asynchronous = matches!(
            e.kind,
            Kind::Async | Kind::OnSuccess(true) | Kind::OnUnwind(true)
        );
        let runs = (!asynchronous || input.dispose_stack)
            && match e.kind {
                Kind::OnSuccess(_) => !stack_panic,
                Kind::OnUnwind(_) => stack_panic,
                _ => true,
            };
        let expected = if runs { Event::Ran } else { Event::Dropped };
        assert_eq!(seen[e.id], Some(expected), "moved {e:?}: {events:?}");
        if e.kind == Kind::Panicking {
            stack_panic = true;
        }
    }
    if !completed || order == Order::Concurrent {
        return;
    }
    // Completed, sequential: replay the cleanup on the model's exit.
    let mut expected: Vec<(usize, Kind)> = model
        .iter()
        .filter(|e| e.state == State::Pending)
        .map(|e| (e.id, e.kind))
        .collect();
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
            assert_eq!(
                seen[id],
                Some(Event::Dropped),
                "{id} ({kind:?}) must not run: {events:?}"
            );
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
    let pending: Vec<usize> = model
        .iter()
        .filter(|e| e.state == State::Pending)
        .map(|e| e.id)
        .collect();
    let actual: Vec<usize> = events
        .iter()
        .filter(|(id, e)| *e == Event::Ran && pending.contains(id))
        .map(|(id, _)| *id)
        .collect();
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
