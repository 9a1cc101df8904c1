//! Random operation sequences on a reused `PromiseCell` and on detached
//! (`Arc`) promises, checked against a model: a promise settles at most once,
//! with the first accepted settlement; refused settlements hand the value
//! back with the right reason; the latest registered waker (only) is woken;
//! `state()` and `is_free()` agree with the model; every value is dropped
//! exactly once; the cell is free again once its pair is done.
//!
//! Hostile parties too: wakers whose `clone`, `drop` or `wake` panics, and
//! values whose destructor panics. Every operation that can run such
//! foreign code is caught; the model then checks what must hold anyway (the
//! first accepted settlement is the one delivered, exactly-once drops, the
//! cell freed) and stops predicting wake counts.
#![no_main]

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use arbitrary::Arbitrary;
use deferral::promise::{Progress, PromiseState, Refusal};
use deferral::promise::{PromiseFuture, SignalCell};
use deferral::{DeferredPromise, PromiseCell, PromiseError, PromiseExt, Resolver};
use libfuzzer_sys::fuzz_target;

/// Values alive right now: a lost or doubled drop shows at the end.
static LIVE: AtomicIsize = AtomicIsize::new(0);

#[derive(Debug, PartialEq, Eq)]
struct Val(u8);

/// Values at or above this panic when dropped (after being counted).
const PANICKY: u8 = 240;

impl Val {
    fn new(v: u8) -> Self {
        LIVE.fetch_add(1, SeqCst);
        Val(v)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, SeqCst);
        if self.0 >= PANICKY && !std::thread::panicking() {
            panic!("Val destructor panics");
        }
    }
}

/// libfuzzer-sys makes every panic abort (a crash). Planned panics (hostile
/// wakers, panicking destructors) must unwind to `caught` instead; any other
/// panic still aborts.
fn allow_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            if !(msg.starts_with("hostile waker") || msg.starts_with("Val destructor")) {
                abort(info);
            }
        }));
    });
}

/// Runs `f`, catching a panic: `None` if it panicked.
fn caught<R>(f: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// A waker that panics in one of its functions (every `period`-th call).
#[derive(Clone, Copy, Debug)]
enum Hostility {
    Clone,
    Drop,
    Wake,
}

struct HostileState {
    hostility: Hostility,
    calls: AtomicUsize,
}

impl HostileState {
    fn call(&self, kind: Hostility) {
        if std::mem::discriminant(&kind) == std::mem::discriminant(&self.hostility) {
            let n = self.calls.fetch_add(1, SeqCst);
            if n % 2 == 0 && !std::thread::panicking() {
                panic!("hostile waker: {kind:?}");
            }
        }
    }
}

fn hostile_waker(state: &Arc<HostileState>) -> Waker {
    use std::task::{RawWaker, RawWakerVTable};
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_raw);
    unsafe fn clone(p: *const ()) -> RawWaker {
        // SAFETY: `p` is an `Arc<HostileState>` (see `hostile_waker`).
        let s = unsafe { &*p.cast::<HostileState>() };
        s.call(Hostility::Clone);
        // SAFETY: one more strong count for the new waker.
        unsafe { Arc::increment_strong_count(p.cast::<HostileState>()) };
        RawWaker::new(p, &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        // SAFETY: consumes the waker's strong count, also on unwind.
        let s = unsafe { Arc::from_raw(p.cast::<HostileState>()) };
        s.call(Hostility::Wake);
    }
    unsafe fn wake_by_ref(p: *const ()) {
        // SAFETY: a live waker's data.
        unsafe { &*p.cast::<HostileState>() }.call(Hostility::Wake);
    }
    unsafe fn drop_raw(p: *const ()) {
        // SAFETY: the dropped waker's strong count.
        let s = unsafe { Arc::from_raw(p.cast::<HostileState>()) };
        s.call(Hostility::Drop);
    }
    let p = Arc::into_raw(state.clone()).cast::<()>();
    // SAFETY: the vtable treats `p` as the `Arc<HostileState>` it is.
    unsafe { Waker::from_raw(RawWaker::new(p, &VTABLE)) }
}

#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

static CELL: PromiseCell<Val, u8> = PromiseCell::new();

#[derive(Arbitrary, Debug)]
enum Op {
    /// `CELL.promise()` (`lazy == false`) or `CELL.lazy(..)`.
    Create {
        lazy: bool,
    },
    /// `DeferredPromise::detached(..)`.
    Detached,
    Resolve {
        resolver: u8,
        value: u8,
    },
    Reject {
        resolver: u8,
        error: u8,
    },
    DropResolver {
        resolver: u8,
    },
    /// Wakers 0 and 1 are well behaved and counted; 2, 3 and 4 panic in
    /// `clone`, `drop` or `wake` (every other call).
    Poll {
        waker: u8,
    },
    DropPromise,
    /// Reuse the cell this many times (if it is free): moves the
    /// generation counter on.
    Churn {
        times: u8,
    },
    /// A chain of `deferred_then`/`deferred_catch`/`deferred_finally`
    /// links (`kinds`, cycled, `len × 64` links when `deep`) on a resolved
    /// or rejected source, unboxed (up to 8 links) or boxed (any length,
    /// settled without recursion), polled to the end or dropped unpolled;
    /// every handler captures a value (dropped exactly once) and one may
    /// panic.
    Chain {
        start: Result<u8, u8>,
        kinds: Vec<u8>,
        len: u8,
        deep: bool,
        boxed: bool,
        poll: bool,
        panic_at: Option<u8>,
    },
    /// An executor that adopts a future (`PromiseCell::lazy` on its own
    /// cell, or `detached`): the future is ready at its poll `ready_at`,
    /// panics at its poll `panic_at` and in its destructor if `panic_drop`;
    /// the promise is polled with `wakers` (hostile ones too), then dropped
    /// (`drop_early`) or polled with a good waker until it is ready.
    Adopt {
        detached: bool,
        ready_at: u8,
        panic_at: Option<u8>,
        panic_drop: bool,
        value: u8,
        wakers: Vec<u8>,
        drop_early: bool,
    },
    /// `SignalCell`: settle (latest wins), take, wait (poll / drop).
    SignalSettle {
        value: Result<u8, u8>,
    },
    SignalTake,
    SignalWait,
    SignalPoll {
        waker: u8,
    },
    SignalDropWait,
}

static SIGNAL: SignalCell<Val, u8> = SignalCell::new();

/// The model of a chain: the output of `kinds` applied to `start`; `None`
/// when a handler panics (at link `panic_at`).
fn model_chain(
    start: Result<u8, u8>,
    kinds: &[u8],
    len: usize,
    panic_at: Option<usize>,
) -> Option<Result<u8, u8>> {
    let mut v = start;
    for i in 0..len {
        let kind = kinds.get(i % kinds.len().max(1)).copied().unwrap_or(0) % 3;
        let runs = match kind {
            0 => v.is_ok(),
            1 => v.is_err(),
            _ => true,
        };
        if runs && panic_at == Some(i) {
            return None;
        }
        v = match (kind, v) {
            (0, Ok(x)) => Ok(x.wrapping_add(1)),
            (1, Err(e)) => {
                if e % 2 == 0 {
                    Ok(e)
                } else {
                    Err(e.wrapping_add(1))
                }
            }
            (_, v) => v,
        };
    }
    Some(v)
}

/// A handler's captured value (counted in `LIVE`: dropped exactly once)
/// and the panic plan.
struct Capture(#[allow(dead_code)] Val, bool);

impl Capture {
    fn check(&self) {
        if self.1 {
            panic!("hostile waker: planned handler panic");
        }
    }
}

/// Builds and runs one chain, checking it against `model_chain`.
fn run_chain(
    start: Result<u8, u8>,
    kinds: &[u8],
    len: usize,
    boxed: bool,
    poll: bool,
    panic_at: Option<usize>,
) {
    let expected = model_chain(start, kinds, len, panic_at);
    let source = match start {
        Ok(v) => DeferredPromise::<u8, u8>::resolved(v),
        Err(e) => DeferredPromise::<u8, u8>::rejected(e),
    };
    let kind = |i: usize| kinds.get(i % kinds.len().max(1)).copied().unwrap_or(0) % 3;
    let cap = |i: usize| Capture(Val::new((i % 200) as u8), panic_at == Some(i));
    let out = if boxed {
        let mut p: DeferredPromise<u8, u8> = source.boxed();
        for i in 0..len {
            let c = cap(i);
            p = match kind(i) {
                0 => p.deferred_then(move |x| {
                    c.check();
                    Ok(x.wrapping_add(1))
                }),
                1 => p.deferred_catch(move |e| {
                    c.check();
                    if e % 2 == 0 {
                        Ok(e)
                    } else {
                        Err(e.wrapping_add(1))
                    }
                }),
                _ => p.deferred_finally(move || c.check()),
            };
        }
        if !poll {
            drop(p);
            return;
        }
        caught(move || futures::executor::block_on(p))
    } else {
        // Unboxed: a fixed shape of up to 8 links (each a distinct type).
        let len = len.min(8);
        let expected_short = model_chain(start, kinds, len, panic_at);
        let mut p: futures::future::LocalBoxFuture<'static, Result<u8, u8>> = Box::pin(source);
        for i in 0..len {
            let c = cap(i);
            p = match kind(i) {
                0 => Box::pin(p.deferred_then(move |x| {
                    c.check();
                    Ok(x.wrapping_add(1))
                })),
                1 => Box::pin(p.deferred_catch(move |e| {
                    c.check();
                    if e % 2 == 0 {
                        Ok(e)
                    } else {
                        Err(e.wrapping_add(1))
                    }
                })),
                _ => Box::pin(p.deferred_finally(move || c.check())),
            };
        }
        if !poll {
            drop(p);
            return;
        }
        let got = caught(move || futures::executor::block_on(p));
        assert_eq!(got, expected_short, "unboxed chain vs model");
        return;
    };
    assert_eq!(out, expected, "boxed chain vs model");
}

type Out = Result<Val, PromiseError<u8>>;

static ADOPT_CELL: PromiseCell<Val, u8> = PromiseCell::new();

/// The future an `Op::Adopt` executor hands over; counts its polls and
/// drops.
struct Adopted {
    value: Option<Val>,
    polls: Rc<std::cell::Cell<u8>>,
    drops: Rc<std::cell::Cell<u8>>,
    ready_at: u8,
    panic_at: Option<u8>,
    panic_drop: bool,
}

impl Future for Adopted {
    type Output = Result<Val, u8>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<Val, u8>> {
        let n = self.polls.get() + 1;
        self.polls.set(n);
        if Some(n) == self.panic_at {
            panic!("hostile waker: planned adopted-future panic");
        }
        if n >= self.ready_at {
            Poll::Ready(Ok(self.value.take().expect("adopted future polled after completion")))
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
        if self.panic_drop && !std::thread::panicking() {
            panic!("hostile waker: planned adopted-future drop panic");
        }
    }
}

/// Runs one `Op::Adopt`: whatever panics on the way (the adopted future's
/// poll or drop, a hostile waker), the promise either delivers the adopted
/// value or, dropped early, frees its cell; the future is dropped exactly
/// once.
#[allow(clippy::too_many_arguments)]
fn run_adopt(
    detached: bool,
    ready_at: u8,
    panic_at: Option<u8>,
    panic_drop: bool,
    value: u8,
    wakers: &[u8],
    drop_early: bool,
    hostile: &[Arc<HostileState>; 3],
) {
    let (polls, drops) = (Rc::new(std::cell::Cell::new(0)), Rc::new(std::cell::Cell::new(0)));
    let ready_at = ready_at % 6 + 1;
    let future = Adopted {
        value: Some(Val::new(value % PANICKY)),
        polls: polls.clone(),
        drops: drops.clone(),
        ready_at,
        panic_at: panic_at.map(|p| p % 8 + 1),
        panic_drop,
    };
    let mut promise: Pin<Box<dyn TestPromise>> = if detached {
        Box::pin(DeferredPromise::<Val, PromiseError<u8>>::detached(move |r| {
            r.adopt(future)
        }))
    } else {
        Box::pin(ADOPT_CELL.lazy(move |r| r.adopt(future)).expect("adopt cell free"))
    };
    let good = Waker::from(Arc::new(Count::default()));
    let mut delivered = None;
    for &w in wakers.iter().take(8) {
        let waker = match w % 4 {
            0 => good.clone(),
            i => hostile_waker(&hostile[usize::from(i) - 1]),
        };
        let poll = caught(|| promise.as_mut().poll_it(&mut Context::from_waker(&waker)));
        let _ = caught(move || drop(waker));
        if let Some(Poll::Ready(out)) = poll {
            delivered = Some(out);
            break;
        }
    }
    if delivered.is_none() && !drop_early {
        // Every poll either makes progress (the future counts it) or
        // panics out after it; a few more than the future needs suffice.
        for _ in 0..usize::from(ready_at) + 3 {
            if let Some(Poll::Ready(out)) =
                caught(|| promise.as_mut().poll_it(&mut Context::from_waker(&good)))
            {
                delivered = Some(out);
                break;
            }
        }
        assert!(delivered.is_some(), "adopted settlement never delivered");
    }
    let _ = caught(move || drop(promise));
    if let Some(out) = delivered {
        match out {
            Ok(Val(v)) => assert_eq!(v, value % PANICKY, "adopted value"),
            Err(e) => panic!("adopted future's value lost: {e:?}"),
        }
    }
    assert!(drops.get() == 1, "adopted future dropped {} times", drops.get());
    assert!(ADOPT_CELL.is_free(), "adopt cell busy after its promise was dropped");
}

/// Object-safe view of the different `DeferredPromise` types under test.
trait TestPromise {
    fn poll_it(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Out>;
    fn state_of(&self) -> PromiseState;
}

impl<F: PromiseFuture<Val, PromiseError<u8>>> TestPromise
    for DeferredPromise<Val, PromiseError<u8>, F>
{
    fn poll_it(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Out> {
        std::future::Future::poll(self, cx)
    }

    fn state_of(&self) -> PromiseState {
        self.state()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Settle {
    Ok(u8),
    Err(u8),
    Abandoned,
}

/// The model of one promise/resolver pair.
#[derive(Debug)]
struct Gen {
    in_cell: bool,
    /// First accepted settlement (or abandonment).
    settled: Option<Settle>,
    promise_live: bool,
    started: bool,
    /// The resolver exists and has not been dropped (it may have settled).
    resolver_live: bool,
    /// The resolver accepted a settlement.
    resolver_settled: bool,
    /// The resolver found its promise gone and freed the cell.
    resolver_released: bool,
    /// `PromiseCell::promise` (resolver at creation) vs. lazy executors.
    eager: bool,
}

impl Gen {
    /// Holds the cell: the promise is live, or the resolver is live and has
    /// not settled (a lazy promise dropped unstarted never made one).
    fn holds_cell(&self) -> bool {
        self.in_cell
            && (self.promise_live
                || (self.resolver_live && !self.resolver_settled && !self.resolver_released))
    }
}

struct Harness {
    promise: Option<(Pin<Box<dyn TestPromise>>, usize)>,
    resolvers: Vec<(Resolver<'static, Val, u8>, usize)>,
    gens: Vec<Gen>,
    wakers: [Arc<Count>; 2],
    hostile: [Arc<HostileState>; 3],
    expected_wakes: [usize; 2],
    registered: Option<usize>,
    /// A hostile waker or destructor ran: wake counts are no longer
    /// predicted.
    chaos: bool,
    delivered: Rc<RefCell<Option<Resolver<'static, Val, u8>>>>,
}

impl Harness {
    fn cell_busy(&self) -> bool {
        self.gens.iter().any(Gen::holds_cell)
    }

    fn check(&self) {
        assert_eq!(
            CELL.is_free(),
            !self.cell_busy(),
            "is_free vs model {:?}",
            self.gens
        );
        for (i, w) in self.wakers.iter().enumerate() {
            if !self.chaos {
                assert_eq!(
                    w.0.load(SeqCst),
                    self.expected_wakes[i],
                    "wake count of waker {i}"
                );
            }
        }
        if let Some((p, id)) = &self.promise {
            let g = &self.gens[*id];
            let expected = match (g.settled, g.started || g.eager) {
                (Some(Settle::Ok(_)), true) => PromiseState::Fulfilled,
                (Some(_), true) => PromiseState::Rejected,
                _ if g.started => PromiseState::Pending(Progress::Started),
                _ => PromiseState::Pending(Progress::Unstarted),
            };
            assert_eq!(p.state_of(), expected, "state vs model {g:?}");
        }
    }

    /// A settlement (or abandonment) reached the promise: wake its waker.
    fn settled_now(&mut self, id: usize, s: Settle) {
        self.gens[id].settled = Some(s);
        if self.promise.as_ref().map(|p| p.1) == Some(id) {
            if let Some(w) = self.registered.take() {
                self.expected_wakes[w] += 1;
            }
        }
    }

    fn settle(&mut self, index: u8, outcome: Result<u8, u8>) {
        if self.resolvers.is_empty() {
            return;
        }
        let i = usize::from(index) % self.resolvers.len();
        let id = self.resolvers[i].1;
        let g = &self.gens[id];
        let expected = if g.resolver_settled {
            // Its promise finished: the storage moved on (stale); otherwise
            // the first settlement stands.
            if g.promise_live {
                Err(Refusal::AlreadySettled)
            } else {
                Err(Refusal::Stale)
            }
        } else if !g.promise_live {
            Err(Refusal::Closed)
        } else {
            Ok(())
        };
        let r = &self.resolvers[i].0;
        // Only an accepted settlement runs foreign code (the wake): a panic
        // means it was accepted. A refused value comes back and is dropped
        // here (its destructor may panic too).
        let got = match outcome {
            Ok(v) => caught(|| r.resolve(Val::new(v))).map(|r| {
                r.map_err(|e| {
                    assert_eq!(e.reason(), expected.unwrap_err());
                    let back = e.into_value();
                    assert!(
                        matches!(back, Ok(Val(b)) if b == v),
                        "refused value handed back"
                    );
                    let _ = caught(move || drop(back));
                    e_reason(expected)
                })
            }),
            Err(v) => caught(|| r.reject(v)).map(|r| {
                r.map_err(|e| {
                    assert_eq!(e.reason(), expected.unwrap_err());
                    assert!(
                        matches!(e.into_value(), Err(b) if b == v),
                        "refused error handed back"
                    );
                    e_reason(expected)
                })
            }),
        };
        let got = match got {
            Some(got) => got,
            None => {
                self.chaos = true;
                Ok(())
            }
        };
        assert_eq!(
            got.is_ok(),
            expected.is_ok(),
            "settle accepted vs model {g:?}"
        );
        if expected == Err(Refusal::Closed) {
            self.gens[id].resolver_released = true;
        }
        if got.is_ok() {
            self.gens[id].resolver_settled = true;
            let s = match outcome {
                Ok(v) => Settle::Ok(v),
                Err(v) => Settle::Err(v),
            };
            self.settled_now(id, s);
        }
    }

    fn take_delivery(&mut self, id: usize) {
        if let Some(r) = self.delivered.borrow_mut().take() {
            self.gens[id].resolver_live = true;
            self.resolvers.push((r, id));
        }
    }
}

fn e_reason(expected: Result<(), Refusal>) -> Refusal {
    expected.unwrap_err()
}

fuzz_target!(|ops: Vec<Op>| {
    allow_planned_panics();
    assert!(CELL.is_free(), "a previous run left the cell busy");
    let mut h = Harness {
        promise: None,
        resolvers: Vec::new(),
        gens: Vec::new(),
        wakers: [Arc::default(), Arc::default()],
        hostile: [Hostility::Clone, Hostility::Drop, Hostility::Wake].map(|hostility| {
            Arc::new(HostileState {
                hostility,
                calls: AtomicUsize::new(0),
            })
        }),
        expected_wakes: [0, 0],
        registered: None,
        chaos: false,
        delivered: Rc::new(RefCell::new(None)),
    };
    let mut signal_model: Option<Result<u8, u8>> = None;
    let mut signal_wait: Option<Pin<Box<deferral::promise::SignalWait<'static, Val, u8>>>> = None;
    // The signal's own wakers: the harness's counted ones model the pair.
    let signal_wakers: [Arc<Count>; 2] = [Arc::default(), Arc::default()];
    for op in ops.into_iter().take(96) {
        match op {
            Op::Create { lazy } => {
                let busy = h.cell_busy();
                let new_gen = |eager| Gen {
                    in_cell: true,
                    settled: None,
                    promise_live: true,
                    started: false,
                    resolver_live: eager,
                    resolver_settled: false,
                    resolver_released: false,
                    eager,
                };
                let made: Option<(
                    Pin<Box<dyn TestPromise>>,
                    Option<Resolver<'static, Val, u8>>,
                )> = if lazy {
                    let slot = h.delivered.clone();
                    match CELL.lazy(move |r| *slot.borrow_mut() = Some(r)) {
                        Ok(p) => Some((Box::pin(p), None)),
                        Err(_) => None,
                    }
                } else {
                    match CELL.promise() {
                        Ok((p, r)) => Some((Box::pin(p), Some(r))),
                        Err(_) => None,
                    }
                };
                assert_eq!(made.is_none(), busy, "CellBusy vs model");
                let Some((p, r)) = made else { continue };
                if h.promise.is_some() {
                    // The harness holds one promise at a time: drop the new
                    // pair right away (promise first, then resolver).
                    drop(p);
                    drop(r);
                    continue;
                }
                let id = h.gens.len();
                h.gens.push(new_gen(!lazy));
                h.promise = Some((p, id));
                if let Some(r) = r {
                    h.resolvers.push((r, id));
                }
            }
            Op::Detached => {
                if h.promise.is_some() {
                    continue;
                }
                let slot = h.delivered.clone();
                let p = DeferredPromise::<Val, PromiseError<u8>>::detached(move |r| {
                    *slot.borrow_mut() = Some(r);
                });
                let id = h.gens.len();
                h.gens.push(Gen {
                    in_cell: false,
                    settled: None,
                    promise_live: true,
                    started: false,
                    resolver_live: false,
                    resolver_settled: false,
                    resolver_released: false,
                    eager: false,
                });
                h.promise = Some((Box::pin(p), id));
            }
            Op::Resolve { resolver, value } => h.settle(resolver, Ok(value)),
            Op::Reject { resolver, error } => h.settle(resolver, Err(error)),
            Op::DropResolver { resolver } => {
                if h.resolvers.is_empty() {
                    continue;
                }
                let i = usize::from(resolver) % h.resolvers.len();
                let (r, id) = h.resolvers.swap_remove(i);
                // Abandoning wakes the promise: that wake may panic.
                if caught(move || drop(r)).is_none() {
                    h.chaos = true;
                }
                h.gens[id].resolver_live = false;
                let g = &h.gens[id];
                if !g.resolver_settled && !g.resolver_released && g.promise_live {
                    h.settled_now(id, Settle::Abandoned);
                }
            }
            Op::Poll { waker } => {
                let Some((p, id)) = h.promise.as_mut() else {
                    continue;
                };
                let id = *id;
                let w = usize::from(waker % 5);
                let waker = match w {
                    0 | 1 => Waker::from(h.wakers[w].clone()),
                    _ => {
                        h.chaos = true;
                        hostile_waker(&h.hostile[w - 2])
                    }
                };
                let poll = caught(|| p.as_mut().poll_it(&mut Context::from_waker(&waker)));
                if caught(move || drop(waker)).is_none() {
                    h.chaos = true;
                }
                let first = !h.gens[id].started;
                h.gens[id].started = true;
                if first {
                    h.take_delivery(id);
                }
                let Some(poll) = poll else {
                    // A hostile waker panicked inside the poll: the promise
                    // did not complete, nothing was taken.
                    h.chaos = true;
                    h.registered = None;
                    continue;
                };
                match (poll, h.gens[id].settled) {
                    (Poll::Pending, None) => h.registered = (w < 2).then_some(w),
                    (Poll::Ready(out), Some(s)) => {
                        let got = match &out {
                            Ok(Val(v)) => Settle::Ok(*v),
                            Err(PromiseError::Rejected(e)) => Settle::Err(*e),
                            Err(PromiseError::Abandoned) => Settle::Abandoned,
                        };
                        assert_eq!(got, s, "settlement vs model");
                        if caught(move || drop(out)).is_none() {
                            h.chaos = true;
                        }
                        h.registered = None;
                        h.gens[id].promise_live = false;
                        h.promise = None;
                    }
                    (poll, s) => panic!("poll gave {poll:?}, model says {s:?}"),
                }
            }
            Op::DropPromise => {
                if let Some((p, id)) = h.promise.take() {
                    // Drops the registered waker and a settled value.
                    if caught(move || drop(p)).is_none() {
                        h.chaos = true;
                    }
                    h.gens[id].promise_live = false;
                    h.registered = None;
                }
            }
            Op::Churn { times } => {
                if h.cell_busy() {
                    continue;
                }
                for _ in 0..times {
                    drop(CELL.lazy(|_| ()).unwrap());
                }
            }
            Op::Chain {
                start,
                kinds,
                len,
                deep,
                boxed,
                poll,
                panic_at,
            } => {
                let len = if deep {
                    usize::from(len) * 64
                } else {
                    usize::from(len)
                };
                run_chain(start, &kinds, len, boxed, poll, panic_at.map(usize::from));
            }
            Op::Adopt {
                detached,
                ready_at,
                panic_at,
                panic_drop,
                value,
                wakers,
                drop_early,
            } => {
                run_adopt(
                    detached,
                    ready_at,
                    panic_at,
                    panic_drop,
                    value,
                    &wakers,
                    drop_early,
                    &h.hostile,
                );
            }
            Op::SignalSettle { value } => {
                let v = match value {
                    Ok(v) => Ok(Val::new(v % PANICKY)),
                    Err(e) => Err(e),
                };
                // Single-threaded: never `Busy`. A replaced value is dropped
                // by the settler; the wake may be a hostile waker's.
                match caught(|| SIGNAL.settle(v)) {
                    Some(r) => assert!(r.is_ok(), "a single-threaded settle is never refused"),
                    None => h.chaos = true,
                }
                signal_model = Some(value.map(|v| v % PANICKY));
            }
            Op::SignalTake => {
                let got = SIGNAL.try_take().map(|r| r.map(|Val(v)| v));
                assert_eq!(got, signal_model.take(), "try_take vs model");
            }
            Op::SignalWait => {
                let made = SIGNAL.wait();
                assert_eq!(made.is_err(), signal_wait.is_some(), "one waiter at a time");
                if let Ok(w) = made {
                    signal_wait = Some(Box::pin(w));
                }
            }
            Op::SignalPoll { waker } => {
                let Some(w) = signal_wait.as_mut() else {
                    continue;
                };
                let i = usize::from(waker % 5);
                let waker = match i {
                    0 | 1 => Waker::from(signal_wakers[i].clone()),
                    _ => {
                        h.chaos = true;
                        hostile_waker(&h.hostile[i - 2])
                    }
                };
                let poll = caught(|| w.as_mut().poll(&mut Context::from_waker(&waker)));
                let _ = caught(move || drop(waker));
                match poll {
                    Some(Poll::Ready(out)) => {
                        let got = out.map(|Val(v)| v);
                        assert_eq!(Some(got), signal_model.take(), "wait vs model");
                        signal_wait = None;
                    }
                    Some(Poll::Pending) => assert!(signal_model.is_none(), "pending with a value"),
                    // A hostile waker panicked: the value, if any, is still in the cell.
                    None => assert_eq!(SIGNAL.is_signaled(), signal_model.is_some()),
                }
            }
            Op::SignalDropWait => {
                if let Some(w) = signal_wait.take() {
                    let _ = caught(move || drop(w));
                }
            }
        }
        h.check();
    }
    // Tear down: every value dropped exactly once, the cell free again.
    if let Some((p, id)) = h.promise.take() {
        let _ = caught(move || drop(p));
        h.gens[id].promise_live = false;
    }
    for (r, _) in h.resolvers.drain(..) {
        let _ = caught(move || drop(r));
    }
    if let Some(w) = signal_wait.take() {
        let _ = caught(move || drop(w));
    }
    SIGNAL.reset();
    let delivered = h.delivered.borrow_mut().take();
    let _ = caught(move || drop(delivered));
    assert!(CELL.is_free(), "cell busy after every pair was dropped");
    assert_eq!(LIVE.load(SeqCst), 0, "a value was leaked or dropped twice");
});
