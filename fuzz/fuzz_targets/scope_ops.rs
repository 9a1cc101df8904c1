//! Random scope bodies against a model of the documented semantics.
//!
//! A body performs a random sequence of operations — the eight
//! registrations (each with an optional `When`, a cleanup that succeeds,
//! fails, panics or recovers, sync or async with a few await points),
//! token and guard operations (`when`, `cancel`, `try_cancel`, `defuse`,
//! `into_parts`, `run_now`, `move_to` a `DeferStack`), `move_all`, `clear`,
//! awaits — then returns `Ok`, returns `Err` or panics. The scope is one of
//! `scope` / `scope_local` / `ScopeBuilder` (growing, small and spilling, or
//! `fixed`), in `Lifo`, `Fifo` or `Concurrent` order, with a
//! `Result<(), usize>` or a `Result<(), Errors<usize>>` output. It is polled
//! by hand with a counting no-op waker for a random number of polls and then
//! dropped, so a cancellation lands on any await point of the body or of
//! its cleanup, or cut short by a `grace` deadline. Afterwards the stack
//! that `move_to` / `move_all` filled is disposed of (maybe dropped midway)
//! or dropped.
//!
//! The model (`BodyModel` while the body runs, then `Sim`) predicts every
//! cleanup's run (and what `_with` cleanups saw), their order, every
//! fallback, the scope's output or resumed panic, the stack's, and checks
//! that every captured value is dropped exactly once. Its rules, from the
//! README (registrations, `When`, `Errors`, Cancellation), `exit.rs`,
//! `cancel.rs` and `tests/{exit_matrix,cancel_rule,scope_*}.rs`:
//!
//! 1. Outcome: `Panicked` if a panic is in flight (the body's or an earlier
//!    cleanup's, unless recovered), else `Cancelled` if the scope was
//!    dropped before its body returned, else `Err` if the output is an
//!    `Err`, else `Ok`. A `DeferStack`'s cleanup always sees `Ok` (it is
//!    never dropped while unwinding here).
//! 2. A registration runs only if its `When` holds for the outcome at the
//!    moment cleanup reaches it; otherwise it is dropped unrun.
//! 3. Order: `Lifo` walks the registrations newest first; `Fifo` oldest
//!    first; `Concurrent` starts them all oldest first (sync ones run,
//!    async ones polled once), then polls the unfinished async ones
//!    together, each once per round in start order (one round right after
//!    the start pass; a panic cuts a round short and a new one starts at
//!    once with the rest and whatever woke meanwhile).
//! 4. A cleanup returning `Err(e)`: an `Ok` output becomes `Err(e.into())`;
//!    an `Err` output keeps the body's error, unless it is `Errors`, which
//!    appends `e`; no output (the body panicked or was cancelled): dropped.
//! 5. A panicking cleanup does not stop the others; the first panic is
//!    resumed when cleanup ends (from `poll`, or from the drop of a
//!    cancelled scope); `Exit::recover` stops it and makes the output
//!    `Ok(())` — except in a scope dropped during its body, where it stops
//!    the panic but there is no output to give anyone: the exit stays
//!    cancelled with no output (`tests/fuzz_regressions_scope.rs`).
//! 6. Cancellation (README "Cancellation", `cancel.rs`): dropped during the
//!    body, the outcome is `Cancelled` and every pending registration is
//!    finished in chain order; dropped during cleanup, the body's outcome
//!    stands, the started async cleanup is dropped and the rest finished.
//!    Finishing: if the condition does not hold, dropped; sync cleanup runs;
//!    async cleanup that never started is handed over — no tokio, no
//!    handler: dropped unpolled. A cleanup that panics meanwhile makes the
//!    rest see `Panicked` (rule 1, as `Exit` documents; the README's
//!    cancellation table reads as if a body dropped early stayed
//!    `Cancelled` whatever its cleanup does — the model follows `Exit`).
//! 7. `guard_async_with`'s fallback gets the value exactly when its cleanup
//!    never starts and it was not taken back (skipped by its condition,
//!    handed over to nobody); never after `defuse` / `into_parts` / `Full`.
//! 8. Tokens: `clear` and `move_all` move the epoch on, always: every
//!    `Registration` made before is refused from then on (`try_cancel` is
//!    `None`, `cancel` panics, `when` does nothing, `move_to` hands it
//!    back); guards are never refused. `clear` drops every pending
//!    unguarded registration; `move_all` moves every pending, unguarded,
//!    portable one (returns `()`, reads no `Exit`) oldest first; `move_to`
//!    moves a portable one.
//! 9. A growing scope never refuses a registration; a fixed one may
//!    (`Err(Full)` hands the cleanup back, unrun), but not while nothing is
//!    pending in it (every registration here fits an empty slab), nor
//!    right after the newest registration was taken back or moved when the
//!    new one is of the same kind (same size): its bytes were given back.
//! 10. A grace deadline that fires while cleanup runs cuts it short as a
//!     drop during cleanup would (rule 6), and the scope resolves to
//!     `CutShort` with the output, `cut` (async cleanups started, or handed
//!     over because their condition holds) and `dropped` (those handed over
//!     to nobody) — or resumes the first panic.
//! 11. `cancel::dropped()` grows by exactly the async cleanups handed over
//!     to nobody (scope, grace, stack).
//! 12. Every `Pending` of the scope comes after a wake-up of its waker.
//! 13. With a cancel handler set (`set_cancel_handler`), a `scope`'s (or a
//!     `Sendable` stack's) unstarted async cleanup whose condition holds is
//!     handed to it — never a `scope_local`'s — with the outcome at that
//!     moment; run later as a `BoxCleanup`, it sees that outcome, runs to
//!     its end (its error goes nowhere; a panic comes out of its poll) and
//!     its fallback never runs.
#![no_main]

use std::any::Any;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::task::{Context, Poll, Wake, Waker};

use arbitrary::Arbitrary;
use deferral::cancel::{BoxCleanup, Orphan};
use deferral::scope::{
    CleanupOutput, Concurrent, Fallible, Fifo, Fixed, Flavour, Full, Local, ScopeBuilder, Sendable,
};
use deferral::{Defer, DeferStack, Errors, Exit, Guard, Outcome, Registration, When};
use libfuzzer_sys::fuzz_target;

// ------------------------------------------------------------------ input

/// The eight registrations: a closure or a future (`Async`), alone or
/// guarding a value (`Guard`), blind or seeing how the body ended (`With`).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Defer,
    DeferWith,
    DeferAsync,
    DeferAsyncWith,
    Guard,
    GuardWith,
    GuardAsync,
    GuardAsyncWith,
}

impl Kind {
    fn is_async(self) -> bool {
        use Kind::*;
        matches!(
            self,
            DeferAsync | DeferAsyncWith | GuardAsync | GuardAsyncWith
        )
    }
    fn is_guard(self) -> bool {
        use Kind::*;
        matches!(self, Guard | GuardWith | GuardAsync | GuardAsyncWith)
    }
    /// Gets `&mut Exit<T>`.
    fn sees_exit(self) -> bool {
        matches!(self, Kind::DeferWith | Kind::GuardWith)
    }
    /// Gets the `Outcome` when it starts.
    fn sees_outcome(self) -> bool {
        matches!(self, Kind::DeferAsyncWith | Kind::GuardAsyncWith)
    }
    /// The values a registration of this kind owns, each counted on drop.
    fn parts(self) -> &'static [Part] {
        match self {
            Kind::GuardAsyncWith => &[Part::Closure, Part::Value, Part::Fallback],
            k if k.is_guard() => &[Part::Closure, Part::Value],
            _ => &[Part::Closure],
        }
    }
}

/// What a cleanup does when it runs.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Ok,
    /// Returns `Err(id)` (a fallible cleanup only).
    Fail,
    /// Panics: a sync cleanup when run, an async one when it starts.
    Panic,
    /// An async cleanup panics in its last poll, after its await points.
    PanicMid,
    /// `Exit::recover(Ok(()))` (the sync `_with` kinds only).
    Recover,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum WhenSel {
    Always,
    Ok,
    Err,
    Failed,
    Panicked,
    Cancelled,
    NotPanicked,
}

impl WhenSel {
    fn get(self) -> When {
        match self {
            WhenSel::Always => When::Always,
            WhenSel::Ok => When::Ok,
            WhenSel::Err => When::Err,
            WhenSel::Failed => When::Failed,
            WhenSel::Panicked => When::Panicked,
            WhenSel::Cancelled => When::Cancelled,
            WhenSel::NotPanicked => When::NotPanicked,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct RegOp {
    kind: Kind,
    when: Option<WhenSel>,
    action: Action,
    /// Await points of an async cleanup (mod 4).
    yields: u8,
    /// Returns `Result<(), usize>` rather than `()`.
    fallible: bool,
}

/// How a handle is taken back: tokens `try_cancel` / `cancel`, guards
/// `defuse` / `into_parts` / `run_now` (each maps onto what applies).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    TryCancel,
    Cancel,
    Defuse,
    IntoParts,
    RunNow,
}

/// `pick` chooses one of the live tokens and guards (mod their number).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Register(RegOp),
    /// One await point in the body.
    Yield,
    Take {
        pick: u8,
        how: Take,
    },
    When {
        pick: u8,
        when: WhenSel,
    },
    MoveTo {
        pick: u8,
    },
    MoveAll,
    Clear,
    /// Changes a guarded value through the guard.
    Use {
        pick: u8,
    },
    /// Drops a token or guard: the registration stays.
    DropHandle {
        pick: u8,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Ok,
    Err,
    Panic,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Slab {
    /// `scope` / `scope_local` (or the builder's default capacity).
    Default,
    /// A 64-byte slab that spills to the heap.
    Small,
    /// A fixed slab: registrations may return `Err(Full)`.
    Fixed,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum OrderSel {
    Lifo,
    Fifo,
    Concurrent,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum StackEnd {
    Drop,
    /// `dispose()`, dropped after this many polls if it has not finished.
    Dispose(Option<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    local: bool,
    slab: Slab,
    order: OrderSel,
    /// The output is `Result<(), Errors<usize>>` (else `Result<(), usize>`).
    all_errors: bool,
    ending: Ending,
    /// Drop the scope after this many polls (if it has not finished).
    polls: Option<u8>,
    /// `grace(..)` with a timer that fires at its `k % 8 + 1`-th poll.
    grace: Option<u8>,
    /// How the `DeferStack` filled by `move_to` / `move_all` ends.
    stack: StackEnd,
    /// A cancel handler collects what cancelled scopes and dropped stacks
    /// hand over; it is run afterwards.
    handler: bool,
    ops: Vec<Op>,
}

const MAX_OPS: usize = 48;
const MAX_POLLS: usize = 100_000;
/// The body's error and panic.
const BODY: usize = 1_000_000;
/// A fixed slab's capacity: every registration here fits it alone.
const FIXED_CAP: usize = 256;

// ---------------------------------------------------------- instruments

/// The panic payload of every injected panic: its registration's id (or
/// `BODY`).
#[derive(Debug)]
struct Injected(usize);

thread_local! {
    /// A panic the body provokes on purpose (a refused `cancel`): silent.
    static EXPECTED: Cell<bool> = const { Cell::new(false) };
}

fn expect_panic<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    EXPECTED.set(true);
    let r = catch_unwind(AssertUnwindSafe(f));
    EXPECTED.set(false);
    r
}

fn panic_id(p: Box<dyn Any + Send>) -> usize {
    p.downcast::<Injected>().map_or(usize::MAX, |i| i.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    /// Captured by the cleanup closure or future.
    Closure,
    /// A guard's value.
    Value,
    /// Captured by `guard_async_with`'s fallback.
    Fallback,
}

/// What a cleanup saw when it ran (or started).
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Nothing,
    Outcome(Outcome),
    Exit {
        outcome: Outcome,
        output: Option<MOut>,
        unwinding: bool,
    },
}

/// The output as the model holds it: the errors' ids, oldest first.
type MOut = Result<(), Vec<usize>>;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// A sync cleanup ran, or an async one started; `uses` is a guarded
    /// value's count of `Use`s.
    Run {
        id: usize,
        seen: Seen,
        uses: Option<u32>,
    },
    /// An async cleanup's future finished.
    Done { id: usize },
    /// `guard_async_with`'s fallback got the value.
    Fallback { id: usize, uses: u32 },
}

#[derive(Default)]
struct World {
    events: Mutex<Vec<Event>>,
    drops: Mutex<BTreeMap<(usize, Part), u32>>,
    /// The body returned or panicked.
    body_ended: AtomicBool,
    /// The harness is dropping the scope.
    dropping: AtomicBool,
}

type W = Arc<World>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    fn log(&self, e: Event) {
        lock(&self.events).push(e);
    }
}

/// A value owned by a registration: counts its drop.
struct Tracked {
    w: W,
    id: usize,
    part: Part,
    uses: u32,
}

impl Tracked {
    fn new(w: &W, id: usize, part: Part) -> Self {
        Tracked {
            w: w.clone(),
            id,
            part,
            uses: 0,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        *lock(&self.w.drops).entry((self.id, self.part)).or_default() += 1;
    }
}

/// Returns `Pending` once (waking itself), then `Ready`.
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

/// A grace deadline: fires at its `n + 1`-th poll.
struct Timer(u8);

impl Future for Timer {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What the cancel handler received: the outcome each orphan will see,
/// and the orphan.
static ORPHANS: Mutex<Vec<(Outcome, BoxCleanup)>> = Mutex::new(Vec::new());

fn collect(orphan: Orphan<'_>) {
    let outcome = orphan.outcome();
    lock(&ORPHANS).push((outcome, orphan.into_boxed()));
}

/// Runs what the handler received, in order; the outcome each was handed
/// with, and the panic that came out of it.
fn run_orphans() -> Vec<(Outcome, Option<usize>)> {
    let orphans = std::mem::take(&mut *lock(&ORPHANS));
    orphans
        .into_iter()
        .map(|(outcome, orphan)| {
            let ran = catch_unwind(AssertUnwindSafe(move || {
                let mut cx = Context::from_waker(Waker::noop());
                let mut orphan = pin!(orphan);
                let mut polls = 0;
                while orphan.as_mut().poll(&mut cx).is_pending() {
                    polls += 1;
                    assert!(polls < MAX_POLLS, "an orphan makes no progress");
                }
            }));
            (outcome, ran.err().map(panic_id))
        })
        .collect()
}

/// A no-op waker that counts its wake-ups.
#[derive(Default)]
struct WakeCount(AtomicUsize);

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

// ------------------------------------------------------------- cleanup

type Out<E> = Result<(), E>;

/// The output's error: one (`usize`, the body's kept) or all (`Errors`).
trait ModelErr: From<usize> + Debug + Send + 'static {
    const ALL: bool;
    fn ids(&self) -> Vec<usize>;
}

impl ModelErr for usize {
    const ALL: bool = false;
    fn ids(&self) -> Vec<usize> {
        vec![*self]
    }
}

impl ModelErr for Errors<usize> {
    const ALL: bool = true;
    fn ids(&self) -> Vec<usize> {
        self.iter().copied().collect()
    }
}

fn model_out<E: ModelErr>(out: &Out<E>) -> MOut {
    out.as_ref().map(|_| ()).map_err(ModelErr::ids)
}

/// What a cleanup returns: `()` (portable) or `Result<(), usize>`.
trait Ret: Send + 'static {
    fn make(error: Option<usize>) -> Self;
}

impl Ret for () {
    fn make(_: Option<usize>) {}
}

impl Ret for Result<(), usize> {
    fn make(error: Option<usize>) -> Self {
        error.map_or(Ok(()), Err)
    }
}

/// A registration as decoded: `action` only says what applies to `kind`.
#[derive(Debug, Clone, Copy)]
struct Spec {
    id: usize,
    kind: Kind,
    action: Action,
    yields: u8,
    fallible: bool,
}

impl Spec {
    fn new(id: usize, r: RegOp) -> Self {
        let action = match r.action {
            Action::Fail if !r.fallible => Action::Ok,
            Action::Recover if !r.kind.sees_exit() => Action::Ok,
            Action::PanicMid if !r.kind.is_async() => Action::Panic,
            a => a,
        };
        Spec {
            id,
            kind: r.kind,
            action,
            yields: r.yields % 4,
            fallible: r.fallible,
        }
    }

    /// Returns `()` and reads no `Exit`: may move to a `DeferStack`.
    fn portable(self) -> bool {
        !self.fallible && !self.kind.sees_exit()
    }
}

/// A sync cleanup: logs its run, then does its action.
fn act<R: Ret>(t: &Tracked, spec: Spec, seen: Seen, uses: Option<u32>) -> R {
    t.w.log(Event::Run {
        id: spec.id,
        seen,
        uses,
    });
    match spec.action {
        Action::Panic | Action::PanicMid => panic_any(Injected(spec.id)),
        Action::Fail => R::make(Some(spec.id)),
        Action::Ok | Action::Recover => R::make(None),
    }
}

/// An async cleanup starts: logs it; panics if its action says so.
fn start(t: &Tracked, spec: Spec, seen: Seen, uses: Option<u32>) {
    t.w.log(Event::Run {
        id: spec.id,
        seen,
        uses,
    });
    if spec.action == Action::Panic {
        panic_any(Injected(spec.id));
    }
}

/// An async cleanup once started: its await points, then its action.
async fn finish<R: Ret>(t: Tracked, value: Option<Tracked>, spec: Spec) -> R {
    for _ in 0..spec.yields {
        YieldNow(false).await;
    }
    if spec.action == Action::PanicMid {
        panic_any(Injected(spec.id));
    }
    t.w.log(Event::Done { id: spec.id });
    drop(value);
    R::make((spec.action == Action::Fail).then_some(spec.id))
}

fn seen_exit<E: ModelErr>(exit: &Exit<Out<E>>) -> Seen {
    Seen::Exit {
        outcome: exit.outcome(),
        output: exit.output().map(model_out),
        unwinding: exit.is_unwinding(),
    }
}

/// A sync `_with` cleanup: sees the exit, may recover, then acts.
fn act_with<E: ModelErr, R: Ret>(
    t: &Tracked,
    spec: Spec,
    exit: &mut Exit<Out<E>>,
    uses: Option<u32>,
) -> R {
    let seen = seen_exit(exit);
    if spec.action == Action::Recover {
        exit.recover(Ok(()));
    }
    act(t, spec, seen, uses)
}

// ------------------------------------------------------------ flavours

/// The eight registrations on any flavour, as a `Result` (`Full` only in a
/// fixed scope). Cleanup here is `Send + 'static`, which every flavour
/// accepts.
#[allow(clippy::type_complexity)]
trait Fl<T: Fallible, const N: usize>: Flavour + Sized {
    fn defer<F, R>(d: &Defer<T, Self, N>, f: F) -> Result<Registration<'_, T, F, Self>, Full<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: CleanupOutput<T>;
    fn defer_with<F, R>(
        d: &Defer<T, Self, N>,
        f: F,
    ) -> Result<Registration<'_, T, F, Self>, Full<F>>
    where
        F: FnOnce(&mut Exit<T>) -> R + Send + 'static,
        R: CleanupOutput<T>;
    fn defer_async<Fut>(
        d: &Defer<T, Self, N>,
        fut: Fut,
    ) -> Result<Registration<'_, T, Fut, Self>, Full<Fut>>
    where
        Fut: Future + Send + 'static,
        Fut::Output: CleanupOutput<T>;
    fn defer_async_with<F, Fut>(
        d: &Defer<T, Self, N>,
        f: F,
    ) -> Result<Registration<'_, T, F, Self>, Full<F>>
    where
        F: FnOnce(Outcome) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: CleanupOutput<T>;
    fn guard<V, F, R>(
        d: &Defer<T, Self, N>,
        v: V,
        f: F,
    ) -> Result<Guard<'_, T, V, F, Self>, Full<(V, F)>>
    where
        V: Send + 'static,
        F: FnOnce(V) -> R + Send + 'static,
        R: CleanupOutput<T>;
    fn guard_with<V, F, R>(
        d: &Defer<T, Self, N>,
        v: V,
        f: F,
    ) -> Result<Guard<'_, T, V, F, Self>, Full<(V, F)>>
    where
        V: Send + 'static,
        F: FnOnce(V, &mut Exit<T>) -> R + Send + 'static,
        R: CleanupOutput<T>;
    fn guard_async<V, F, Fut>(
        d: &Defer<T, Self, N>,
        v: V,
        f: F,
    ) -> Result<Guard<'_, T, V, F, Self>, Full<(V, F)>>
    where
        V: Send + 'static,
        F: FnOnce(V) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: CleanupOutput<T>;
    fn guard_async_with<V, F, G, Fut>(
        d: &Defer<T, Self, N>,
        v: V,
        f: F,
        g: G,
    ) -> Result<Guard<'_, T, V, (F, G), Self>, Full<(V, (F, G))>>
    where
        V: Send + 'static,
        F: FnOnce(V, Outcome) -> Fut + Send + 'static,
        G: FnOnce(V) + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: CleanupOutput<T>;
}

fn grown<X, Y>(x: X) -> Result<X, Y> {
    Ok(x)
}

fn fixed<X>(x: X) -> X {
    x
}

macro_rules! impl_fl {
    ($([$($lt:lifetime)?] $K:ty => $wrap:ident;)*) => {$(
        #[allow(clippy::type_complexity)]
        impl<$($lt,)? T: Fallible, const N: usize> Fl<T, N> for $K {
            fn defer<F, R>(d: &Defer<T, Self, N>, f: F) -> Result<Registration<'_, T, F, Self>, Full<F>>
            where
                F: FnOnce() -> R + Send + 'static,
                R: CleanupOutput<T>,
            {
                $wrap(d.defer(f))
            }
            fn defer_with<F, R>(d: &Defer<T, Self, N>, f: F) -> Result<Registration<'_, T, F, Self>, Full<F>>
            where
                F: FnOnce(&mut Exit<T>) -> R + Send + 'static,
                R: CleanupOutput<T>,
            {
                $wrap(d.defer_with(f))
            }
            fn defer_async<Fut>(d: &Defer<T, Self, N>, fut: Fut) -> Result<Registration<'_, T, Fut, Self>, Full<Fut>>
            where
                Fut: Future + Send + 'static,
                Fut::Output: CleanupOutput<T>,
            {
                $wrap(d.defer_async(fut))
            }
            fn defer_async_with<F, Fut>(d: &Defer<T, Self, N>, f: F) -> Result<Registration<'_, T, F, Self>, Full<F>>
            where
                F: FnOnce(Outcome) -> Fut + Send + 'static,
                Fut: Future + Send + 'static,
                Fut::Output: CleanupOutput<T>,
            {
                $wrap(d.defer_async_with(f))
            }
            fn guard<V, F, R>(d: &Defer<T, Self, N>, v: V, f: F) -> Result<Guard<'_, T, V, F, Self>, Full<(V, F)>>
            where
                V: Send + 'static,
                F: FnOnce(V) -> R + Send + 'static,
                R: CleanupOutput<T>,
            {
                $wrap(d.guard(v, f))
            }
            fn guard_with<V, F, R>(d: &Defer<T, Self, N>, v: V, f: F) -> Result<Guard<'_, T, V, F, Self>, Full<(V, F)>>
            where
                V: Send + 'static,
                F: FnOnce(V, &mut Exit<T>) -> R + Send + 'static,
                R: CleanupOutput<T>,
            {
                $wrap(d.guard_with(v, f))
            }
            fn guard_async<V, F, Fut>(d: &Defer<T, Self, N>, v: V, f: F) -> Result<Guard<'_, T, V, F, Self>, Full<(V, F)>>
            where
                V: Send + 'static,
                F: FnOnce(V) -> Fut + Send + 'static,
                Fut: Future + Send + 'static,
                Fut::Output: CleanupOutput<T>,
            {
                $wrap(d.guard_async(v, f))
            }
            fn guard_async_with<V, F, G, Fut>(
                d: &Defer<T, Self, N>,
                v: V,
                f: F,
                g: G,
            ) -> Result<Guard<'_, T, V, (F, G), Self>, Full<(V, (F, G))>>
            where
                V: Send + 'static,
                F: FnOnce(V, Outcome) -> Fut + Send + 'static,
                G: FnOnce(V) + Send + 'static,
                Fut: Future + Send + 'static,
                Fut::Output: CleanupOutput<T>,
            {
                $wrap(d.guard_async_with(v, f, g))
            }
        }
    )*};
}

impl_fl! {
    [] Sendable => grown;
    ['env] Local<'env> => grown;
    [] Fixed<Sendable> => fixed;
    ['env] Fixed<Local<'env>> => fixed;
}

// ------------------------------------------------------------- handles

type BoxFut<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;
type Hd<'d, K, const M: usize> = Box<dyn Handle<'d, K, M> + 'd>;

/// A token or a guard, type-erased; the model only calls what applies to
/// its kind.
trait Handle<'d, K: Flavour, const M: usize> {
    fn when(self: Box<Self>, when: When) -> Hd<'d, K, M>;
    fn move_to(self: Box<Self>, stack: &mut DeferStack<K, M>) -> Result<(), Hd<'d, K, M>>;
    /// A token: `try_cancel`, or `cancel` (`strict`); whether it was taken
    /// (what comes back is dropped).
    fn cancel(self: Box<Self>, strict: bool) -> bool {
        let _ = strict;
        unreachable!("not a token")
    }
    /// A guard: `defuse`, or `into_parts` (the cleanup is dropped unrun).
    fn take_value(self: Box<Self>, into_parts: bool) -> Tracked {
        let _ = into_parts;
        unreachable!("not a guard")
    }
    /// `Guard::run_now`: a sync guard runs (`None`), an async one hands
    /// back its future.
    fn run_now(self: Box<Self>) -> Option<BoxFut<'d>> {
        unreachable!("no run_now")
    }
    fn value(&mut self) -> &mut Tracked {
        unreachable!("not a guard")
    }
}

struct Tok<R>(R);

impl<'d, T: Fallible + 'd, X: 'd, K: Flavour + 'd, const M: usize> Handle<'d, K, M>
    for Tok<Registration<'d, T, X, K>>
{
    fn when(self: Box<Self>, when: When) -> Hd<'d, K, M> {
        Box::new(Tok(self.0.when(when)))
    }
    fn move_to(self: Box<Self>, stack: &mut DeferStack<K, M>) -> Result<(), Hd<'d, K, M>> {
        self.0
            .move_to(stack)
            .map_err(|t| Box::new(Tok(t)) as Hd<'d, K, M>)
    }
    fn cancel(self: Box<Self>, strict: bool) -> bool {
        if !strict {
            return self.0.try_cancel().is_some();
        }
        match expect_panic(move || self.0.cancel()) {
            Ok(taken) => {
                drop(taken);
                true
            }
            Err(p) => {
                let msg = (p.downcast_ref::<String>().map(String::as_str))
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or_default();
                assert!(msg.contains("cleared or moved"), "cancel panicked: {msg:?}");
                false
            }
        }
    }
}

/// A guard whose cleanup is `FnOnce(V) -> R`.
struct SyncG<G, R>(G, PhantomData<R>);
/// A guard whose cleanup is `FnOnce(V) -> Fut`.
struct AsyncG<G, Fut>(G, PhantomData<Fut>);
/// `guard_with`, `guard_async_with`: no `run_now`.
struct WithG<G>(G);

macro_rules! guard_common {
    ($rebuild:expr) => {
        fn when(self: Box<Self>, when: When) -> Hd<'d, K, M> {
            Box::new($rebuild(self.0.when(when)))
        }
        fn move_to(self: Box<Self>, stack: &mut DeferStack<K, M>) -> Result<(), Hd<'d, K, M>> {
            Guard::move_to(self.0, stack).map_err(|g| Box::new($rebuild(g)) as Hd<'d, K, M>)
        }
        fn take_value(self: Box<Self>, into_parts: bool) -> Tracked {
            if into_parts {
                Guard::into_parts(self.0).0
            } else {
                Guard::defuse(self.0)
            }
        }
        fn value(&mut self) -> &mut Tracked {
            &mut self.0
        }
    };
}

impl<'d, T, C, R, K, const M: usize> Handle<'d, K, M> for SyncG<Guard<'d, T, Tracked, C, K>, R>
where
    T: Fallible + 'd,
    C: FnOnce(Tracked) -> R + 'd,
    R: 'd,
    K: Flavour + 'd,
{
    guard_common!(|g| SyncG(g, PhantomData));
    fn run_now(self: Box<Self>) -> Option<BoxFut<'d>> {
        drop(Guard::run_now(self.0)); // its result is the body's to ignore
        None
    }
}

impl<'d, T, C, Fut, K, const M: usize> Handle<'d, K, M> for AsyncG<Guard<'d, T, Tracked, C, K>, Fut>
where
    T: Fallible + 'd,
    C: FnOnce(Tracked) -> Fut + 'd,
    Fut: Future + 'd,
    K: Flavour + 'd,
{
    guard_common!(|g| AsyncG(g, PhantomData));
    fn run_now(self: Box<Self>) -> Option<BoxFut<'d>> {
        let fut = Guard::run_now(self.0);
        Some(Box::pin(async move { drop(fut.await) }))
    }
}

impl<'d, T, C, K, const M: usize> Handle<'d, K, M> for WithG<Guard<'d, T, Tracked, C, K>>
where
    T: Fallible + 'd,
    C: 'd,
    K: Flavour + 'd,
{
    guard_common!(WithG);
}

fn sync_guard<'d, T, C, R, K, const M: usize>(g: Guard<'d, T, Tracked, C, K>) -> Hd<'d, K, M>
where
    T: Fallible + 'd,
    C: FnOnce(Tracked) -> R + 'd,
    R: 'd,
    K: Flavour + 'd,
{
    Box::new(SyncG(g, PhantomData::<R>))
}

fn async_guard<'d, T, C, Fut, K, const M: usize>(g: Guard<'d, T, Tracked, C, K>) -> Hd<'d, K, M>
where
    T: Fallible + 'd,
    C: FnOnce(Tracked) -> Fut + 'd,
    Fut: Future + 'd,
    K: Flavour + 'd,
{
    Box::new(AsyncG(g, PhantomData::<Fut>))
}

fn tok<'d, T: Fallible + 'd, X: 'd, K: Flavour + 'd, const M: usize>(
    r: Registration<'d, T, X, K>,
) -> Hd<'d, K, M> {
    Box::new(Tok(r))
}

/// A guard's registration came back (`Full`): its value, unrun.
fn refused<C>(full: Full<(Tracked, C)>, id: usize) {
    let (v, cleanup) = full.into_inner();
    assert_eq!(v.id, id, "Full hands back the guarded value");
    drop((v, cleanup));
}

/// Registers `spec` on `d`; `Err(())` if the slab was full (what came back
/// is dropped here, unrun).
fn register<'d, K, const N: usize, E, const M: usize, R>(
    d: &'d Defer<Out<E>, K, N>,
    spec: Spec,
    w: &W,
) -> Result<Hd<'d, K, M>, ()>
where
    K: Fl<Out<E>, N>,
    E: ModelErr,
    R: Ret + CleanupOutput<Out<E>>,
{
    let id = spec.id;
    let t = Tracked::new(w, id, Part::Closure);
    match spec.kind {
        Kind::Defer => K::defer(d, move || act::<R>(&t, spec, Seen::Nothing, None))
            .map(tok::<_, _, K, M>)
            .map_err(drop),
        Kind::DeferWith => K::defer_with(d, move |exit: &mut Exit<Out<E>>| {
            act_with::<E, R>(&t, spec, exit, None)
        })
        .map(tok::<_, _, K, M>)
        .map_err(drop),
        Kind::DeferAsync => K::defer_async(d, async move {
            start(&t, spec, Seen::Nothing, None);
            finish::<R>(t, None, spec).await
        })
        .map(tok::<_, _, K, M>)
        .map_err(drop),
        Kind::DeferAsyncWith => K::defer_async_with(d, move |outcome: Outcome| {
            start(&t, spec, Seen::Outcome(outcome), None);
            finish::<R>(t, None, spec)
        })
        .map(tok::<_, _, K, M>)
        .map_err(drop),
        Kind::Guard => {
            let v = Tracked::new(w, id, Part::Value);
            K::guard(d, v, move |v: Tracked| {
                let r = act::<R>(&t, spec, Seen::Nothing, Some(v.uses));
                drop(v);
                r
            })
            .map(sync_guard)
            .map_err(|full| refused(full, id))
        }
        Kind::GuardWith => {
            let v = Tracked::new(w, id, Part::Value);
            K::guard_with(d, v, move |v: Tracked, exit: &mut Exit<Out<E>>| {
                let r = act_with::<E, R>(&t, spec, exit, Some(v.uses));
                drop(v);
                r
            })
            .map(|g| Box::new(WithG(g)) as Hd<'d, K, M>)
            .map_err(|full| refused(full, id))
        }
        Kind::GuardAsync => {
            let v = Tracked::new(w, id, Part::Value);
            K::guard_async(d, v, move |v: Tracked| {
                start(&t, spec, Seen::Nothing, Some(v.uses));
                finish::<R>(t, Some(v), spec)
            })
            .map(async_guard)
            .map_err(|full| refused(full, id))
        }
        Kind::GuardAsyncWith => {
            let v = Tracked::new(w, id, Part::Value);
            let f = Tracked::new(w, id, Part::Fallback);
            K::guard_async_with(
                d,
                v,
                move |v: Tracked, outcome: Outcome| {
                    start(&t, spec, Seen::Outcome(outcome), Some(v.uses));
                    finish::<R>(t, Some(v), spec)
                },
                move |v: Tracked| {
                    f.w.log(Event::Fallback { id, uses: v.uses });
                },
            )
            .map(|g| Box::new(WithG(g)) as Hd<'d, K, M>)
            .map_err(|full| refused(full, id))
        }
    }
}

// ------------------------------------------------------- the body model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// In the scope.
    Pending,
    /// `Err(Full)`: handed back and dropped.
    Refused,
    /// Cancelled, defused or taken apart: dropped unrun.
    Taken,
    /// `Guard::run_now` (in the body).
    RanNow,
    /// In the `DeferStack`.
    Moved,
    /// `Defer::clear`.
    Cleared,
}

#[derive(Debug, Clone)]
struct RegM {
    spec: Spec,
    when: When,
    state: St,
    /// The epoch its token was made at.
    epoch: u64,
    /// `Use`s of a guarded value.
    uses: u32,
}

#[derive(Debug, Clone)]
enum Ended {
    Returned(MOut),
    Panicked(usize),
}

/// The model's state, kept by the body as it runs.
#[derive(Debug)]
struct BodyModel {
    fixed: bool,
    /// In registration order (refused ones too).
    regs: Vec<RegM>,
    /// Moves on at every `clear` and `move_all`.
    epoch: u64,
    /// Indices into `regs`, in the order they entered the stack.
    stack: Vec<usize>,
    /// Events the body causes itself (`run_now`).
    expected: Vec<Event>,
    ended: Option<Ended>,
    /// Await points the body reached (each returns `Pending` once).
    awaits: usize,
    /// The newest pending registration was just taken back or moved: its
    /// bytes are free again, so one of the same kind fits (a fixed slab).
    freed: Option<(Kind, bool)>,
}

impl BodyModel {
    fn pending(&self) -> usize {
        self.regs.iter().filter(|r| r.state == St::Pending).count()
    }

    /// Registration `i` leaves the slab (taken back, run now, moved).
    fn remove(&mut self, i: usize, state: St) {
        let newest = self.regs.iter().rposition(|r| r.state == St::Pending);
        let spec = self.regs[i].spec;
        self.freed = (newest == Some(i)).then_some((spec.kind, spec.fallible));
        self.regs[i].state = state;
    }

    fn end(&mut self, w: &World, ended: Ended) {
        self.ended = Some(ended);
        w.body_ended.store(true, SeqCst);
    }
}

fn pick<H>(handles: &[H], pick: u8) -> Option<usize> {
    (!handles.is_empty()).then(|| usize::from(pick) % handles.len())
}

async fn body<'d, K, const N: usize, E, const M: usize>(
    d: &'d Defer<Out<E>, K, N>,
    input: &Input,
    m: &mut BodyModel,
    stack: &mut DeferStack<K, M>,
    w: W,
) -> Out<E>
where
    K: Fl<Out<E>, N>,
    E: ModelErr,
{
    let mut handles: Vec<(usize, Hd<'d, K, M>)> = Vec::new();
    for (id, op) in input.ops.iter().take(MAX_OPS).enumerate() {
        match *op {
            Op::Register(r) => {
                let spec = Spec::new(id, r);
                let registered = if spec.fallible {
                    register::<K, N, E, M, Result<(), usize>>(d, spec, &w)
                } else {
                    register::<K, N, E, M, ()>(d, spec, &w)
                };
                let mut reg = RegM {
                    spec,
                    when: When::Always,
                    state: St::Pending,
                    epoch: m.epoch,
                    uses: 0,
                };
                match registered {
                    Ok(mut h) => {
                        if let Some(when) = r.when {
                            h = h.when(when.get());
                            reg.when = when.get();
                        }
                        handles.push((m.regs.len(), h));
                    }
                    Err(()) => {
                        assert!(m.fixed, "a growing slab refused {spec:?}");
                        assert!(m.pending() > 0, "an empty fixed slab refused {spec:?}");
                        assert_ne!(
                            m.freed,
                            Some((spec.kind, spec.fallible)),
                            "the bytes of the newest registration, taken back, were not given back"
                        );
                        reg.state = St::Refused;
                    }
                }
                m.regs.push(reg);
                m.freed = None;
            }
            Op::Yield => {
                m.awaits += 1;
                YieldNow(false).await;
            }
            Op::Take { pick: p, how } => {
                let Some(pos) = pick(&handles, p) else {
                    continue;
                };
                let (i, h) = handles.remove(pos);
                let spec = m.regs[i].spec;
                if !spec.kind.is_guard() {
                    // Refused exactly when `clear` / `move_all` ran since.
                    let stale = m.regs[i].epoch != m.epoch;
                    let taken = h.cancel(matches!(how, Take::Cancel | Take::RunNow));
                    assert_eq!(taken, !stale, "token of {:?}", m.regs[i]);
                    if taken {
                        m.remove(i, St::Taken);
                    }
                } else if how == Take::RunNow && matches!(spec.kind, Kind::Guard | Kind::GuardAsync)
                {
                    m.remove(i, St::RanNow);
                    m.expected.push(Event::Run {
                        id: spec.id,
                        seen: Seen::Nothing,
                        uses: Some(m.regs[i].uses),
                    });
                    // The cleanup's panic is the body's.
                    if spec.action == Action::Panic {
                        m.end(&w, Ended::Panicked(spec.id));
                    }
                    if let Some(mut fut) = h.run_now() {
                        // Awaited by the body: its await points are the body's.
                        let mut polls = 0;
                        std::future::poll_fn(|cx| {
                            polls += 1;
                            if polls > usize::from(spec.yields) && spec.action == Action::PanicMid {
                                m.end(&w, Ended::Panicked(spec.id));
                            }
                            let poll = fut.as_mut().poll(cx);
                            match poll {
                                Poll::Pending => m.awaits += 1,
                                Poll::Ready(()) => m.expected.push(Event::Done { id: spec.id }),
                            }
                            poll
                        })
                        .await;
                    }
                } else {
                    let into_parts = matches!(how, Take::IntoParts | Take::Cancel | Take::RunNow);
                    let v = h.take_value(into_parts);
                    assert_eq!(
                        (v.id, v.uses),
                        (spec.id, m.regs[i].uses),
                        "the guarded value"
                    );
                    m.remove(i, St::Taken);
                }
            }
            Op::When { pick: p, when } => {
                let Some(pos) = pick(&handles, p) else {
                    continue;
                };
                let (i, h) = handles.remove(pos);
                handles.insert(pos, (i, h.when(when.get())));
                // A refused token's `when` does nothing.
                let reg = &mut m.regs[i];
                if reg.spec.kind.is_guard() || reg.epoch == m.epoch {
                    assert_eq!(reg.state, St::Pending);
                    reg.when = when.get();
                }
            }
            Op::MoveTo { pick: p } => {
                let Some(pos) = pick(&handles, p) else {
                    continue;
                };
                let (i, h) = handles.remove(pos);
                let reg = &m.regs[i];
                let movable =
                    reg.spec.portable() && (reg.spec.kind.is_guard() || reg.epoch == m.epoch);
                match h.move_to(stack) {
                    Ok(()) => {
                        assert!(movable, "moved {reg:?}");
                        m.remove(i, St::Moved);
                        m.stack.push(i);
                    }
                    Err(h) => {
                        assert!(!movable, "refused to move {reg:?}");
                        handles.insert(pos, (i, h));
                    }
                }
            }
            Op::MoveAll => {
                let n = d.move_all(stack);
                let moved: Vec<usize> = (0..m.regs.len())
                    .filter(|&i| {
                        let r = &m.regs[i];
                        r.state == St::Pending && !r.spec.kind.is_guard() && r.spec.portable()
                    })
                    .collect();
                assert_eq!(n, moved.len(), "move_all: {:?}", m.regs);
                for i in moved {
                    m.regs[i].state = St::Moved;
                    m.stack.push(i);
                }
                m.epoch += 1;
                m.freed = None;
            }
            Op::Clear => {
                let n = d.clear();
                let mut cleared = 0;
                for r in &mut m.regs {
                    if r.state == St::Pending && !r.spec.kind.is_guard() {
                        r.state = St::Cleared;
                        cleared += 1;
                    }
                }
                assert_eq!(n, cleared, "clear: {:?}", m.regs);
                m.epoch += 1;
                m.freed = None;
            }
            Op::Use { pick: p } => {
                let Some(pos) = pick(&handles, p) else {
                    continue;
                };
                let (i, h) = &mut handles[pos];
                if m.regs[*i].spec.kind.is_guard() {
                    h.value().uses += 1;
                    m.regs[*i].uses += 1;
                }
            }
            Op::DropHandle { pick: p } => {
                let Some(pos) = pick(&handles, p) else {
                    continue;
                };
                drop(handles.remove(pos));
            }
        }
        assert_eq!(d.len(), m.pending(), "len after {op:?}");
        assert_eq!(d.is_empty(), m.pending() == 0);
    }
    drop(handles); // dropping tokens and guards keeps the registrations
    match input.ending {
        Ending::Ok => {
            m.end(&w, Ended::Returned(Ok(())));
            Ok(())
        }
        Ending::Err => {
            m.end(&w, Ended::Returned(Err(vec![BODY])));
            let failed: Result<(), usize> = Err(BODY);
            failed?; // `?` converts with `From`
            unreachable!()
        }
        Ending::Panic => {
            m.end(&w, Ended::Panicked(BODY));
            panic_any(Injected(BODY))
        }
    }
}

// ------------------------------------------------------ the cleanup model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Es {
    Waiting,
    /// Started; the await points it has left.
    Running(u8),
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Pending,
    Done,
    Panicked,
}

/// Cleanup of a chain of registrations, simulated poll by poll: a scope's
/// after its body, or a stack's.
struct Sim<'a> {
    regs: &'a [RegM],
    concurrent: bool,
    all_errors: bool,
    /// Indices into `regs`, in the order cleanup walks them.
    chain: Vec<usize>,
    state: Vec<Es>,
    /// Sequential: the position cleanup is at.
    cursor: usize,
    /// Concurrent: every entry started.
    started: bool,
    /// Concurrent: positions whose waker was woken.
    woken: BTreeSet<usize>,
    out: Option<MOut>,
    panic: Option<usize>,
    cancelled: bool,
    /// A stack's cleanup sees this outcome, whatever happens.
    detached: Option<Outcome>,
    events: Vec<Event>,
    /// Async cleanup handed over and dropped unpolled (nobody took it).
    unpolled: usize,
    /// A cancel handler takes what is handed over (rule 13).
    hands_over: bool,
    /// What it took: indices into `regs`, and the outcome handed over.
    orphans: Vec<(usize, Outcome)>,
}

impl<'a> Sim<'a> {
    fn new(regs: &'a [RegM], chain: Vec<usize>, concurrent: bool, all_errors: bool) -> Self {
        Sim {
            regs,
            concurrent,
            all_errors,
            state: vec![Es::Waiting; chain.len()],
            chain,
            cursor: 0,
            started: false,
            woken: BTreeSet::new(),
            out: None,
            panic: None,
            cancelled: false,
            detached: None,
            events: Vec::new(),
            unpolled: 0,
            hands_over: false,
            orphans: Vec::new(),
        }
    }

    /// A scope's pending registrations, in its order.
    fn scope(regs: &'a [RegM], order: OrderSel, all_errors: bool) -> Self {
        let mut chain: Vec<usize> = (0..regs.len())
            .filter(|&i| regs[i].state == St::Pending)
            .collect();
        if order == OrderSel::Lifo {
            chain.reverse();
        }
        Sim::new(regs, chain, order == OrderSel::Concurrent, all_errors)
    }

    /// A stack: last in, first run; its owner returned.
    fn stack(regs: &'a [RegM], moved: &[usize]) -> Self {
        let mut sim = Sim::new(regs, moved.iter().rev().copied().collect(), false, false);
        sim.detached = Some(Outcome::Ok);
        sim
    }

    fn reg(&self, pos: usize) -> &'a RegM {
        &self.regs[self.chain[pos]]
    }

    /// Rule 1.
    fn outcome(&self) -> Outcome {
        if let Some(o) = self.detached {
            o
        } else if self.panic.is_some() {
            Outcome::Panicked
        } else if self.cancelled {
            Outcome::Cancelled
        } else if matches!(self.out, Some(Err(_))) {
            Outcome::Err
        } else {
            Outcome::Ok
        }
    }

    /// Rule 2.
    fn holds(&self, pos: usize) -> bool {
        self.reg(pos).when.holds(self.outcome())
    }

    fn seen(&self, kind: Kind) -> Seen {
        if kind.sees_exit() {
            Seen::Exit {
                outcome: self.outcome(),
                output: self.out.clone(),
                unwinding: self.panic.is_some(),
            }
        } else if kind.sees_outcome() {
            Seen::Outcome(self.outcome())
        } else {
            Seen::Nothing
        }
    }

    /// Rule 5: the first panic stays.
    fn record(&mut self, id: usize) {
        self.panic.get_or_insert(id);
    }

    /// Rule 4.
    fn add_error(&mut self, id: usize) {
        match &mut self.out {
            Some(Ok(())) => self.out = Some(Err(vec![id])),
            Some(Err(errors)) if self.all_errors => errors.push(id),
            _ => {}
        }
    }

    fn ran(&mut self, pos: usize) {
        let r = self.reg(pos);
        self.events.push(Event::Run {
            id: r.spec.id,
            seen: self.seen(r.spec.kind),
            uses: r.spec.kind.is_guard().then_some(r.uses),
        });
    }

    /// Dropped without starting (rule 7: a fallback gets the value).
    fn skip(&mut self, pos: usize) {
        let r = self.reg(pos);
        if r.spec.kind == Kind::GuardAsyncWith {
            self.events.push(Event::Fallback {
                id: r.spec.id,
                uses: r.uses,
            });
        }
        self.state[pos] = Es::Gone;
    }

    fn run_sync(&mut self, pos: usize) {
        self.ran(pos);
        let spec = self.reg(pos).spec;
        match spec.action {
            Action::Panic | Action::PanicMid => self.record(spec.id),
            Action::Fail => self.add_error(spec.id),
            // Stops the panic; an output only if the body returned (rule 5).
            Action::Recover => {
                if self.panic.take().is_some() && !self.cancelled {
                    self.out = Some(Ok(()));
                }
            }
            Action::Ok => {}
        }
        self.state[pos] = Es::Gone;
    }

    /// Starts an async cleanup; `false` if it panicked doing so.
    fn start(&mut self, pos: usize) -> bool {
        self.ran(pos);
        let spec = self.reg(pos).spec;
        if spec.action == Action::Panic {
            self.record(spec.id);
            self.state[pos] = Es::Gone;
            return false;
        }
        self.state[pos] = Es::Running(spec.yields);
        true
    }

    /// Polls a started async cleanup once.
    fn step(&mut self, pos: usize) -> Step {
        let spec = self.reg(pos).spec;
        match self.state[pos] {
            Es::Running(0) => {
                self.state[pos] = Es::Gone;
                if spec.action == Action::PanicMid {
                    self.record(spec.id);
                    return Step::Panicked;
                }
                self.events.push(Event::Done { id: spec.id });
                if spec.action == Action::Fail {
                    self.add_error(spec.id);
                }
                Step::Done
            }
            Es::Running(n) => {
                self.state[pos] = Es::Running(n - 1);
                Step::Pending
            }
            s => unreachable!("stepped a {s:?} cleanup"),
        }
    }

    /// One poll of the cleanup: whether it finished (rule 3).
    fn poll(&mut self) -> bool {
        if self.concurrent {
            return self.poll_concurrent();
        }
        while self.cursor < self.chain.len() {
            let pos = self.cursor;
            if self.state[pos] == Es::Waiting {
                if !self.holds(pos) {
                    self.skip(pos);
                    self.cursor += 1;
                    continue;
                }
                if !self.reg(pos).spec.kind.is_async() {
                    self.run_sync(pos);
                    self.cursor += 1;
                    continue;
                }
                if !self.start(pos) {
                    self.cursor += 1;
                    continue;
                }
            }
            if self.step(pos) == Step::Pending {
                return false;
            }
            self.cursor += 1;
        }
        true
    }

    fn poll_concurrent(&mut self) -> bool {
        if !self.started {
            self.started = true;
            for pos in 0..self.chain.len() {
                if !self.holds(pos) {
                    self.skip(pos);
                } else if !self.reg(pos).spec.kind.is_async() {
                    self.run_sync(pos);
                } else if self.start(pos) && self.step(pos) == Step::Pending {
                    self.woken.insert(pos);
                }
            }
        }
        loop {
            let round: Vec<usize> = std::mem::take(&mut self.woken).into_iter().collect();
            let mut cut = None;
            for (i, &pos) in round.iter().enumerate() {
                match self.step(pos) {
                    Step::Pending => {
                        self.woken.insert(pos);
                    }
                    Step::Panicked => {
                        cut = Some(i);
                        break;
                    }
                    Step::Done => {}
                }
            }
            match cut {
                Some(i) => self.woken.extend(&round[i + 1..]),
                None => break,
            }
        }
        !self.state.iter().any(|s| matches!(s, Es::Running(_)))
    }

    /// The cleanup cannot be driven any more (rule 6). Returns what a
    /// grace cut-off reports: how many async cleanups were cut short
    /// (started, or handed over because their condition holds), and how
    /// many of those were dropped unpolled.
    fn cancel(&mut self) -> (usize, usize) {
        let (mut cut, mut unpolled) = (0, 0);
        let from = if self.concurrent { 0 } else { self.cursor };
        for pos in from..self.chain.len() {
            match self.state[pos] {
                Es::Gone => {}
                Es::Running(_) => {
                    self.state[pos] = Es::Gone;
                    cut += 1;
                }
                Es::Waiting if !self.holds(pos) => self.skip(pos),
                Es::Waiting if self.reg(pos).spec.kind.is_async() => {
                    cut += 1;
                    if self.hands_over {
                        self.orphans.push((self.chain[pos], self.outcome()));
                        self.state[pos] = Es::Gone;
                    } else {
                        self.skip(pos);
                        unpolled += 1;
                    }
                }
                Es::Waiting => self.run_sync(pos),
            }
        }
        self.unpolled += unpolled;
        (cut, unpolled)
    }
}

/// How a scope (or the model of it) finished.
#[derive(Debug, Default, PartialEq)]
struct Verdict {
    /// The poll that returned `Ready` or panicked.
    finished_at: Option<usize>,
    output: Option<MOut>,
    poll_panic: Option<usize>,
    /// Dropping the scope resumed this panic.
    drop_panic: Option<usize>,
    /// A grace deadline cut the cleanup short: `CutShort::{cut, dropped}`
    /// (its output is `output`).
    cut: Option<(usize, usize)>,
}

fn predict(
    sim: &mut Sim<'_>,
    model: &BodyModel,
    limit: Option<usize>,
    grace: Option<u8>,
) -> Verdict {
    let mut v = Verdict::default();
    let Some(ended) = &model.ended else {
        // Dropped in the body (or before its first poll).
        sim.cancelled = true;
        sim.cancel();
        v.drop_panic = sim.panic;
        return v;
    };
    match ended {
        Ended::Returned(out) => sim.out = Some(out.clone()),
        Ended::Panicked(id) => sim.panic = Some(*id),
    }
    // Cleanup starts in the poll in which the body ended; a grace timer is
    // made then, and polled after the scope in each poll that did not
    // finish it.
    let mut poll = model.awaits + 1;
    let mut timer = grace.map(|k| k % 8);
    loop {
        if sim.poll() {
            v.finished_at = Some(poll);
            match sim.panic {
                Some(p) => v.poll_panic = Some(p),
                None => v.output = sim.out.clone(),
            }
            return v;
        }
        match &mut timer {
            Some(0) => {
                // Cut short: the body's outcome stands; the first panic, if
                // any, resumes from the poll instead.
                let cut = sim.cancel();
                v.finished_at = Some(poll);
                match sim.panic {
                    Some(p) => v.poll_panic = Some(p),
                    None => {
                        v.output = sim.out.clone();
                        v.cut = Some(cut);
                    }
                }
                return v;
            }
            Some(k) => *k -= 1,
            None => {}
        }
        if Some(poll) == limit {
            sim.cancel();
            v.drop_panic = sim.panic;
            return v;
        }
        poll += 1;
        assert!(poll < MAX_POLLS, "the model does not finish");
    }
}

// ------------------------------------------------------------- harness

/// How the scope's future (graced or not) resolved.
enum Fin<E> {
    Out(Out<E>),
    Cut {
        cut: usize,
        dropped: usize,
        output: Out<E>,
    },
}

fn drive<E: ModelErr>(
    mut scope: Pin<Box<dyn Future<Output = Fin<E>> + '_>>,
    polls: Option<u8>,
    world: &World,
) -> Verdict {
    let wakes = Arc::new(WakeCount::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let limit = polls.map_or(usize::MAX, usize::from);
    let mut v = Verdict::default();
    let mut n = 0;
    while n < limit {
        n += 1;
        assert!(n < MAX_POLLS, "the scope makes no progress");
        let before = wakes.0.load(SeqCst);
        match catch_unwind(AssertUnwindSafe(|| scope.as_mut().poll(&mut cx))) {
            Ok(Poll::Pending) => {
                assert!(
                    wakes.0.load(SeqCst) > before,
                    "Pending without a wake-up (poll {n})"
                );
            }
            Ok(Poll::Ready(fin)) => {
                v.finished_at = Some(n);
                match fin {
                    Fin::Out(out) => v.output = Some(model_out(&out)),
                    Fin::Cut {
                        cut,
                        dropped,
                        output,
                    } => {
                        v.output = Some(model_out(&output));
                        v.cut = Some((cut, dropped));
                    }
                }
                break;
            }
            Err(p) => {
                v.finished_at = Some(n);
                v.poll_panic = Some(panic_id(p));
                break;
            }
        }
    }
    world.dropping.store(true, SeqCst);
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(scope))) {
        v.drop_panic = Some(panic_id(p));
    }
    v
}

/// Disposes of the stack (dropping `Dispose` after `limit` polls) or
/// drops it; the panic that came out, if any.
fn finish_stack<K: Flavour, const M: usize>(
    stack: DeferStack<K, M>,
    end: StackEnd,
) -> Option<usize> {
    let result = catch_unwind(AssertUnwindSafe(move || match end {
        StackEnd::Drop => drop(stack),
        StackEnd::Dispose(limit) => {
            let mut cx = Context::from_waker(Waker::noop());
            let mut disposing = pin!(stack.dispose());
            let mut polls = 0;
            while Some(polls) != limit.map(usize::from) {
                polls += 1;
                assert!(polls < MAX_POLLS, "dispose makes no progress");
                if disposing.as_mut().poll(&mut cx).is_ready() {
                    break;
                }
            }
        }
    }));
    result.err().map(panic_id)
}

/// Every value dropped exactly once — but what is in the stack, not yet.
/// Every value dropped exactly once — but those of the registrations still
/// `alive` (in the stack, or handed over and not run yet), not yet.
fn check_drops(world: &World, model: &BodyModel, alive: &BTreeSet<usize>, when: &str) {
    let mut expected = BTreeMap::new();
    for (i, r) in model.regs.iter().enumerate() {
        if alive.contains(&i) {
            continue;
        }
        for &part in r.spec.kind.parts() {
            expected.insert((r.spec.id, part), 1);
        }
    }
    let drops = lock(&world.drops).clone();
    assert_eq!(drops, expected, "drops {when}: {:?}", model.regs);
}

/// What the orphans do when run as `BoxCleanup`s: they start (seeing the
/// outcome handed over), run their await points, then finish or panic.
fn predict_orphans(
    regs: &[RegM],
    orphans: &[(usize, Outcome)],
    events: &mut Vec<Event>,
) -> Vec<(Outcome, Option<usize>)> {
    orphans
        .iter()
        .map(|&(i, outcome)| {
            let r = &regs[i];
            let id = r.spec.id;
            events.push(Event::Run {
                id,
                seen: if r.spec.kind.sees_outcome() {
                    Seen::Outcome(outcome)
                } else {
                    Seen::Nothing
                },
                uses: r.spec.kind.is_guard().then_some(r.uses),
            });
            let panic = match r.spec.action {
                Action::Panic | Action::PanicMid => Some(id),
                _ => {
                    events.push(Event::Done { id });
                    None
                }
            };
            (outcome, panic)
        })
        .collect()
}

fn conclude<K: Flavour, const M: usize>(
    input: &Input,
    all_errors: bool,
    dropped_before: usize,
    world: &World,
    model: &BodyModel,
    verdict: Verdict,
    stack: DeferStack<K, M>,
) {
    let limit = input.polls.map(usize::from);
    if model.ended.is_none() && limit != Some(0) {
        assert_eq!(
            Some(model.awaits),
            limit,
            "the body was dropped at its last await"
        );
    }
    // A `scope_local`'s cleanup is never handed over.
    let hands_over = input.handler && !input.local;
    let mut sim = Sim::scope(&model.regs, input.order, all_errors);
    sim.hands_over = hands_over;
    let expected = predict(&mut sim, model, limit, input.grace);
    let mut orphans = std::mem::take(&mut sim.orphans);
    let mut unpolled = sim.unpolled;
    let mut events = model.expected.clone();
    events.extend(std::mem::take(&mut sim.events));
    assert_eq!(
        verdict,
        expected,
        "the scope's end; events {:#?}",
        lock(&world.events)
    );
    assert_eq!(
        *lock(&world.events),
        events,
        "events; model {:#?}",
        model.regs
    );
    let mut alive: BTreeSet<usize> = orphans.iter().map(|&(i, _)| i).collect();
    alive.extend(&model.stack);
    check_drops(world, model, &alive, "after the scope");

    assert_eq!(stack.len(), model.stack.len());
    let panic = finish_stack(stack, input.stack);
    let mut sim = Sim::stack(&model.regs, &model.stack);
    sim.hands_over = hands_over;
    match input.stack {
        StackEnd::Drop => drop(sim.cancel()),
        StackEnd::Dispose(limit) => {
            let mut polls = 0;
            loop {
                if Some(polls) == limit.map(usize::from) {
                    sim.cancel();
                    break;
                }
                polls += 1;
                if sim.poll() {
                    break;
                }
            }
        }
    }
    unpolled += sim.unpolled;
    assert_eq!(
        deferral::cancel::dropped() - dropped_before,
        unpolled,
        "cancel::dropped() counts what nobody took"
    );
    events.extend(sim.events);
    assert_eq!(panic, sim.panic, "the stack's panic");
    assert_eq!(*lock(&world.events), events, "events with the stack's");
    for &i in &model.stack {
        alive.remove(&i);
    }
    alive.extend(sim.orphans.iter().map(|&(i, _)| i));
    check_drops(world, model, &alive, "after the stack");

    // What the handler took runs now, in the order it was handed over.
    orphans.extend(sim.orphans);
    deferral::cancel::clear_cancel_handler();
    let ran = run_orphans();
    let predicted = predict_orphans(&model.regs, &orphans, &mut events);
    assert_eq!(ran, predicted, "the orphans: outcomes handed over, panics");
    assert_eq!(*lock(&world.events), events, "events with the orphans'");
    check_drops(world, model, &BTreeSet::new(), "at the end");
}

/// Runs `input` in the scope `make(body)`; `E` the output's error, `M` the
/// stack's capacity.
macro_rules! case {
    ($input:expr, $E:ty, $M:literal, $fixed:literal, $($make:tt)+) => {{
        let input: &Input = $input;
        let world = W::default();
        let mut model = BodyModel {
            fixed: $fixed,
            regs: Vec::new(),
            epoch: 0,
            stack: Vec::new(),
            expected: Vec::new(),
            ended: None,
            awaits: 0,
            freed: None,
        };
        let mut stack = DeferStack::<_, $M>::new();
        let dropped_before = deferral::cancel::dropped();
        if input.handler {
            deferral::cancel::set_cancel_handler(collect);
        } else {
            deferral::cancel::clear_cancel_handler();
        }
        let verdict = {
            let (m, s, w) = (&mut model, &mut stack, world.clone());
            let scope = $($make)+(async move |d| body(d, input, m, s, w).await);
            // An async block adds no await point: one poll of it is one of
            // the scope.
            let fut: Pin<Box<dyn Future<Output = Fin<$E>> + '_>> = match input.grace {
                None => Box::pin(async move { Fin::Out(scope.await) }),
                Some(k) => Box::pin(async move {
                    match scope.grace(move || Timer(k % 8)).await {
                        Ok(out) => Fin::Out(out),
                        Err(cut) => Fin::Cut {
                            cut: cut.cut(),
                            dropped: cut.dropped(),
                            output: cut.into_output(),
                        },
                    }
                }),
            };
            drive(fut, input.polls, &world)
        };
        conclude(input, <$E as ModelErr>::ALL, dropped_before, &world, &model, verdict, stack);
    }};
}

/// Every flavour, slab and order, for one output type. A fixed scope's
/// stack is fixed too, and big enough for everything.
macro_rules! cases {
    ($input:expr, $E:ty) => {{
        let input: &Input = $input;
        use OrderSel::{Concurrent as C, Fifo as F, Lifo as L};
        match (input.local, input.slab, input.order) {
            (false, Slab::Default, L) => case!(input, $E, 64, false, deferral::scope),
            (false, Slab::Default, F) => {
                case!(input, $E, 64, false, ScopeBuilder::new().order(Fifo).run)
            }
            (false, Slab::Default, C) => {
                case!(
                    input,
                    $E,
                    64,
                    false,
                    ScopeBuilder::new().order(Concurrent).run
                )
            }
            (true, Slab::Default, L) => case!(input, $E, 64, false, deferral::scope_local),
            (true, Slab::Default, F) => case!(
                input,
                $E,
                64,
                false,
                ScopeBuilder::new().order(Fifo).run_local
            ),
            (true, Slab::Default, C) => {
                case!(
                    input,
                    $E,
                    64,
                    false,
                    ScopeBuilder::new().order(Concurrent).run_local
                )
            }
            (false, Slab::Small, L) => case!(
                input,
                $E,
                64,
                false,
                ScopeBuilder::new().capacity::<64>().run
            ),
            (false, Slab::Small, F) => {
                case!(
                    input,
                    $E,
                    64,
                    false,
                    ScopeBuilder::new().capacity::<64>().order(Fifo).run
                )
            }
            (false, Slab::Small, C) => {
                case!(
                    input,
                    $E,
                    64,
                    false,
                    ScopeBuilder::new().capacity::<64>().order(Concurrent).run
                )
            }
            (true, Slab::Small, L) => case!(
                input,
                $E,
                64,
                false,
                ScopeBuilder::new().capacity::<64>().run_local
            ),
            (true, Slab::Small, F) => {
                case!(
                    input,
                    $E,
                    64,
                    false,
                    ScopeBuilder::new().capacity::<64>().order(Fifo).run_local
                )
            }
            (true, Slab::Small, C) => case!(
                input,
                $E,
                64,
                false,
                ScopeBuilder::new()
                    .capacity::<64>()
                    .order(Concurrent)
                    .run_local
            ),
            (false, Slab::Fixed, L) => {
                case!(
                    input,
                    $E,
                    16384,
                    true,
                    ScopeBuilder::new().capacity::<FIXED_CAP>().fixed().run
                )
            }
            (false, Slab::Fixed, F) => case!(
                input,
                $E,
                16384,
                true,
                ScopeBuilder::new()
                    .capacity::<FIXED_CAP>()
                    .fixed()
                    .order(Fifo)
                    .run
            ),
            (false, Slab::Fixed, C) => case!(
                input,
                $E,
                16384,
                true,
                ScopeBuilder::new()
                    .capacity::<FIXED_CAP>()
                    .fixed()
                    .order(Concurrent)
                    .run
            ),
            (true, Slab::Fixed, L) => case!(
                input,
                $E,
                16384,
                true,
                ScopeBuilder::new()
                    .capacity::<FIXED_CAP>()
                    .fixed()
                    .run_local
            ),
            (true, Slab::Fixed, F) => case!(
                input,
                $E,
                16384,
                true,
                ScopeBuilder::new()
                    .capacity::<FIXED_CAP>()
                    .fixed()
                    .order(Fifo)
                    .run_local
            ),
            (true, Slab::Fixed, C) => case!(
                input,
                $E,
                16384,
                true,
                ScopeBuilder::new()
                    .capacity::<FIXED_CAP>()
                    .fixed()
                    .order(Concurrent)
                    .run_local
            ),
        }
    }};
}

fn run(input: &Input) {
    if input.all_errors {
        cases!(input, Errors<usize>);
    } else {
        cases!(input, usize);
    }
}

fuzz_target!(|input: Input| {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // libfuzzer-sys aborts on any panic; injected ones (and the refused
        // `cancel` the body provokes) are expected and caught, every other
        // panic (a failed check, even inside a cleanup) must still abort.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().is::<Injected>() || EXPECTED.get() {
                return;
            }
            default(info);
            std::process::abort();
        }));
    });
    run(&input);
});
