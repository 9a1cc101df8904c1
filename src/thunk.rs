//! The kinds of deferred work a scope stores in its slab: closures (always
//! run, or only on some ways the body can end), futures (likewise, decided
//! when cleanup reaches them), and guarded values with their sync or async
//! cleanup. Each is a [`Payload`] the slab can run, poll, drop or hand back
//! without knowing its type.
//!
//! What a cleanup returns is reported to the scope's [`Exit`] through
//! [`CleanupOutput`]; `()` reports nothing and never even looks at the exit
//! (`SILENT`), which is what lets the ambient API register `()`-returning
//! thunks typed for the output `()` on a scope of any output type.
//!
//! Nothing here requires `Send` or `'static`: what a scope may hold is
//! decided when a thunk is registered (by its flavour, see
//! [`Fits`](crate::Fits)), not here.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project::pin_project;

use crate::exit::{CleanupOutput, Exit, Fallible};
use crate::slab::{Ending, Payload};

/// Hands a cleanup's result to the exit, unless it is `()` (which must
/// not touch a typed exit: see the module docs).
#[inline(always)]
fn report<Out, R: CleanupOutput<Out>>(result: R, mut end: Ending<'_, Out>) {
    if !R::SILENT {
        result.report(end.exit());
    }
}

/// When a conditional cleanup runs: [`ON_SUCCESS`] or [`ON_UNWIND`].
pub(crate) type On = u8;
/// The body returned, and nothing panicked since (scopeguard's
/// `OnSuccess`).
pub(crate) const ON_SUCCESS: On = 0;
/// A panic is in flight (scopeguard's `OnUnwind`).
pub(crate) const ON_UNWIND: On = 1;

/// Reads the untyped part of the exit only (the ambient API registers
/// these).
#[inline(always)]
fn holds<Out>(on: On, end: &Ending<'_, Out>) -> bool {
    match on {
        ON_SUCCESS => end.kind() == crate::ExitKind::Returned,
        _ => end.is_unwinding(),
    }
}

/// `FnOnce() -> R`: always runs.
pub(crate) struct Thunk<F>(pub(crate) F);

/// `FnOnce(&mut Exit<Out>)`: always runs, sees how the body ended.
pub(crate) struct ThunkWith<F>(pub(crate) F);

/// `FnOnce() -> R` that runs only when `ON` holds.
pub(crate) struct When<F, const ON: On>(pub(crate) F);

/// `FnOnce(&mut E)`: runs only if the output is an error, and sees it.
pub(crate) struct OnError<F>(pub(crate) F);

/// A future, polled to completion during cleanup; its output is reported.
#[pin_project]
pub(crate) struct AsyncThunk<Fut>(#[pin] pub(crate) Fut);

/// Async cleanup decided when cleanup reaches it: `decide` sees how the
/// body ended and returns the future to run, or `None`.
#[pin_project(project = DecidedProj, project_replace = DecidedOwn)]
pub(crate) enum Decided<D, Fut> {
    Waiting(D),
    Running(#[pin] Fut),
    Done,
}

/// How a [`Decided`] cleanup decides, and what a cancelled one hands back.
pub(crate) trait Decide<Out> {
    type Fut: Future;
    type Taken;
    /// `decide` reads the typed exit.
    const TYPED: bool;
    fn decide(self, end: Ending<'_, Out>) -> Option<Self::Fut>;
    fn taken(self) -> Self::Taken;
}

/// The user's `FnOnce(&mut Exit<Out>) -> Fut`.
pub(crate) struct OnExitFn<F>(pub(crate) F);

/// The user's `FnOnce(&mut E) -> Fut`, called only if the output is `Err`.
pub(crate) struct OnErrorFn<F>(pub(crate) F);

/// The user's future, run only when `ON` holds.
pub(crate) struct OnCond<Fut, const ON: On>(pub(crate) Fut);

/// A guarded value and its sync cleanup.
pub(crate) struct GuardThunk<V, F> {
    pub(crate) value: V,
    pub(crate) cleanup: F,
}

/// A guarded value and its async cleanup: armed until cleanup starts, then
/// the future the cleanup returned.
#[pin_project(project = GuardAsyncProj, project_replace = GuardAsyncOwn)]
pub(crate) enum GuardAsync<V, F, Fut> {
    Armed { value: V, cleanup: F },
    Running(#[pin] Fut),
    Done,
}

fn never_polled() -> ! {
    unreachable!("deferral: a sync thunk was polled")
}

fn never_run() -> ! {
    unreachable!("deferral: an async thunk was run as a sync one")
}

/// The sync payloads: `run` is theirs, `poll` is never called.
macro_rules! sync_payload {
    () => {
        const ASYNC: bool = false;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>, _: Ending<'_, Out>) -> Poll<()> {
            never_polled()
        }
    };
}

/// The async payloads: `poll` is theirs, `run` is never called.
macro_rules! async_payload {
    () => {
        const ASYNC: bool = true;
        fn run(self, _: Ending<'_, Out>) {
            never_run()
        }
    };
}

impl<Out, F, R> Payload<Out> for Thunk<F>
where
    F: FnOnce() -> R,
    R: CleanupOutput<Out>,
{
    type Taken = F;
    const TYPED: bool = !R::SILENT;
    sync_payload!();
    #[inline]
    fn run(self, end: Ending<'_, Out>) {
        report((self.0)(), end)
    }
    fn take(self) -> F {
        self.0
    }
}

impl<Out, F: FnOnce(&mut Exit<Out>)> Payload<Out> for ThunkWith<F> {
    type Taken = F;
    sync_payload!();
    #[inline]
    fn run(self, mut end: Ending<'_, Out>) {
        (self.0)(end.exit())
    }
    fn take(self) -> F {
        self.0
    }
}

impl<Out, F, R, const ON: On> Payload<Out> for When<F, ON>
where
    F: FnOnce() -> R,
    R: CleanupOutput<Out>,
{
    type Taken = F;
    const TYPED: bool = !R::SILENT;
    sync_payload!();
    #[inline]
    fn run(self, end: Ending<'_, Out>) {
        if holds(ON, &end) {
            report((self.0)(), end)
        }
    }
    fn take(self) -> F {
        self.0
    }
}

impl<Out, F> Payload<Out> for OnError<F>
where
    Out: Fallible,
    F: FnOnce(&mut Out::Error),
{
    type Taken = F;
    sync_payload!();
    #[inline]
    fn run(self, mut end: Ending<'_, Out>) {
        if let Some(error) = end.exit().error_mut() {
            (self.0)(error)
        }
    }
    fn take(self) -> F {
        self.0
    }
}

impl<Out, Fut> Payload<Out> for AsyncThunk<Fut>
where
    Fut: Future,
    Fut::Output: CleanupOutput<Out>,
{
    type Taken = Fut;
    const TYPED: bool = !<Fut::Output as CleanupOutput<Out>>::SILENT;
    async_payload!();
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, end: Ending<'_, Out>) -> Poll<()> {
        let result = core::task::ready!(self.project().0.poll(cx));
        report(result, end);
        Poll::Ready(())
    }
    fn take(self) -> Fut {
        self.0
    }
}

impl<Out, F, Fut> Decide<Out> for OnExitFn<F>
where
    F: FnOnce(&mut Exit<Out>) -> Fut,
    Fut: Future,
{
    type Fut = Fut;
    type Taken = F;
    const TYPED: bool = true;
    #[inline]
    fn decide(self, mut end: Ending<'_, Out>) -> Option<Fut> {
        Some((self.0)(end.exit()))
    }
    fn taken(self) -> F {
        self.0
    }
}

impl<Out, F, Fut> Decide<Out> for OnErrorFn<F>
where
    Out: Fallible,
    F: FnOnce(&mut Out::Error) -> Fut,
    Fut: Future,
{
    type Fut = Fut;
    type Taken = F;
    const TYPED: bool = true;
    #[inline]
    fn decide(self, mut end: Ending<'_, Out>) -> Option<Fut> {
        end.exit().error_mut().map(self.0)
    }
    fn taken(self) -> F {
        self.0
    }
}

impl<Out, Fut: Future, const ON: On> Decide<Out> for OnCond<Fut, ON> {
    type Fut = Fut;
    type Taken = Fut;
    const TYPED: bool = false;
    #[inline]
    fn decide(self, end: Ending<'_, Out>) -> Option<Fut> {
        holds(ON, &end).then_some(self.0)
    }
    fn taken(self) -> Fut {
        self.0
    }
}

impl<Out, D, Fut> Payload<Out> for Decided<D, Fut>
where
    D: Decide<Out, Fut = Fut>,
    Fut: Future,
    Fut::Output: CleanupOutput<Out>,
{
    type Taken = D::Taken;
    const TYPED: bool = D::TYPED || !<Fut::Output as CleanupOutput<Out>>::SILENT;
    async_payload!();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut end: Ending<'_, Out>) -> Poll<()> {
        if let DecidedProj::Waiting(_) = self.as_mut().project() {
            // `Done` while deciding: if it panics, nothing is left to drop
            // twice.
            let DecidedOwn::Waiting(decide) = self.as_mut().project_replace(Decided::Done) else {
                unreachable!()
            };
            match decide.decide(end.reborrow()) {
                Some(fut) => {
                    self.as_mut().project_replace(Decided::Running(fut));
                }
                None => return Poll::Ready(()),
            }
        }
        match self.as_mut().project() {
            DecidedProj::Running(fut) => {
                let result = core::task::ready!(fut.poll(cx));
                self.project_replace(Decided::Done);
                report(result, end);
                Poll::Ready(())
            }
            _ => panic!("deferral: cleanup polled after completion"),
        }
    }
    fn take(self) -> D::Taken {
        match self {
            Decided::Waiting(decide) => decide.taken(),
            _ => unreachable!("deferral: a started cleanup was defused"),
        }
    }
}

impl<Out, V, F, R> Payload<Out> for GuardThunk<V, F>
where
    F: FnOnce(V) -> R,
    R: CleanupOutput<Out>,
{
    type Taken = (V, F);
    const GUARDED: bool = true;
    const TYPED: bool = !R::SILENT;
    sync_payload!();
    #[inline]
    fn run(self, end: Ending<'_, Out>) {
        report((self.cleanup)(self.value), end)
    }
    fn take(self) -> (V, F) {
        (self.value, self.cleanup)
    }
}

impl<Out, V, F, Fut> Payload<Out> for GuardAsync<V, F, Fut>
where
    F: FnOnce(V) -> Fut,
    Fut: Future,
    Fut::Output: CleanupOutput<Out>,
{
    type Taken = (V, F);
    const GUARDED: bool = true;
    const TYPED: bool = !<Fut::Output as CleanupOutput<Out>>::SILENT;
    async_payload!();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>, end: Ending<'_, Out>) -> Poll<()> {
        if let GuardAsyncProj::Armed { .. } = self.as_mut().project() {
            // `Done` while the cleanup runs: if it panics, nothing is left
            // to drop twice.
            let GuardAsyncOwn::Armed { value, cleanup } =
                self.as_mut().project_replace(GuardAsync::Done)
            else {
                unreachable!()
            };
            let fut = cleanup(value);
            self.as_mut().project_replace(GuardAsync::Running(fut));
        }
        match self.as_mut().project() {
            GuardAsyncProj::Running(fut) => {
                let result = core::task::ready!(fut.poll(cx));
                self.project_replace(GuardAsync::Done);
                report(result, end);
                Poll::Ready(())
            }
            _ => panic!("deferral: guard cleanup polled after completion"),
        }
    }
    fn take(self) -> (V, F) {
        match self {
            GuardAsync::Armed { value, cleanup } => (value, cleanup),
            _ => unreachable!("deferral: a started guard was defused"),
        }
    }
}

/// A payload registered while a context variable was set: run or polled
/// inside the snapshot current at registration.
///
/// `repr(C)` with the payload first: the slab hands out the payload's
/// address for guards (`&mut V` into a `GuardThunk`/`GuardAsync`), which
/// must be the address of the wrapped payload too.
#[cfg(feature = "std")]
#[pin_project]
#[repr(C)]
pub(crate) struct InContext<P> {
    #[pin]
    pub(crate) payload: P,
    pub(crate) snapshot: crate::Snapshot,
}

#[cfg(feature = "std")]
impl<Out, P: Payload<Out>> Payload<Out> for InContext<P> {
    type Taken = P::Taken;
    const ASYNC: bool = P::ASYNC;
    const GUARDED: bool = P::GUARDED;
    const TYPED: bool = P::TYPED;
    const TOKENED: bool = P::TOKENED;
    fn run(self, end: Ending<'_, Out>) {
        let InContext { payload, snapshot } = self;
        snapshot.run(|| payload.run(end))
    }
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, end: Ending<'_, Out>) -> Poll<()> {
        let this = self.project();
        let payload = this.payload;
        this.snapshot.run(|| payload.poll(cx, end))
    }
    fn take(self) -> P::Taken {
        self.payload.take()
    }
}

/// An ambient registration with a token (`deferral::defer` and friends):
/// its id, unique in the program, first — the token finds its entry by it.
#[cfg(feature = "std")]
#[pin_project]
#[repr(C)]
pub(crate) struct Tokened<P> {
    pub(crate) id: u64,
    #[pin]
    pub(crate) payload: P,
}

#[cfg(feature = "std")]
impl<Out, P: Payload<Out>> Payload<Out> for Tokened<P> {
    type Taken = P::Taken;
    const ASYNC: bool = P::ASYNC;
    const GUARDED: bool = P::GUARDED;
    const TYPED: bool = P::TYPED;
    const TOKENED: bool = true;
    fn run(self, end: Ending<'_, Out>) {
        self.payload.run(end)
    }
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, end: Ending<'_, Out>) -> Poll<()> {
        self.project().payload.poll(cx, end)
    }
    fn take(self) -> P::Taken {
        self.payload.take()
    }
}
