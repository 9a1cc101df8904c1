//! The kinds of deferred work: closures run once ([`Call`], [`CallWith`],
//! [`GuardCall`], [`GuardCallWith`]) and async cleanup ([`Task`]), which is
//! one waiting → running → done machine over a [`Start`]: a future given
//! up front, a guarded value's cleanup, or a closure that sees how the
//! body ended.
//!
//! What a cleanup returns is reported to the scope's [`Exit`] through
//! [`CleanupOutput`]; `()` reports nothing and never looks at the exit
//! (`SILENT`), which is what makes such cleanup *portable*: it runs with
//! any exit (a `DeferStack`'s, or none after a hand-over) and is what the
//! ambient API registers on scopes of any output type.
//!
//! Nothing here requires `Send` or `'static`: what a scope may hold is
//! decided at registration, by its flavour.

use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use pin_project::pin_project;

use super::entry::{AsyncPayload, GUARDED, PORTABLE, Payload, SyncPayload};
use super::exit::{CleanupOutput, Exit, ExitHead, Fallible, Outcome};

/// Hands a cleanup's result to the exit, unless it is `()` or there is no
/// typed exit (a detached head: the result is dropped).
#[inline(always)]
fn report<Out, R: CleanupOutput<Out>>(result: R, exit: NonNull<ExitHead>) {
    if R::SILENT {
        return;
    }
    // SAFETY: a payload gets a valid head, ours for the call.
    if unsafe { exit.as_ref() }.is_detached() {
        return;
    }
    // SAFETY: not detached: the head of the scope's `Exit<Out>`.
    result.report(unsafe { typed(exit) });
}

/// The scope's typed exit.
///
/// # Safety
/// `exit` heads an `Exit<Out>` (not detached), ours for the borrow.
#[inline(always)]
unsafe fn typed<'a, Out>(exit: NonNull<ExitHead>) -> &'a mut Exit<Out> {
    // SAFETY: as the caller guarantees (`repr(C)`, head first).
    unsafe { exit.cast::<Exit<Out>>().as_mut() }
}

/// How the body ended, from a typed or a detached head.
#[inline]
fn outcome_of<Out: Fallible>(exit: NonNull<ExitHead>) -> Outcome {
    // SAFETY: a payload gets a valid head; a non-detached one heads an
    // `Exit<Out>`.
    unsafe {
        let head = exit.as_ref();
        if head.is_detached() {
            head.outcome(|| false)
        } else {
            typed::<Out>(exit).outcome()
        }
    }
}

/// Whether a cleanup returning `R` runs with any exit.
const fn portable<Out, R: CleanupOutput<Out>>() -> u8 {
    if R::SILENT { PORTABLE } else { 0 }
}

/// `FnOnce() -> R`.
pub(crate) struct Call<F>(pub(crate) F);

/// `FnOnce(&mut Exit<Out>) -> R`.
pub(crate) struct CallWith<F>(pub(crate) F);

/// A guarded value and its `FnOnce(V) -> R`.
pub(crate) struct GuardCall<V, F> {
    pub(crate) value: V,
    pub(crate) cleanup: F,
}

/// A guarded value and its `FnOnce(V, &mut Exit<Out>) -> R`.
pub(crate) struct GuardCallWith<V, F> {
    pub(crate) value: V,
    pub(crate) cleanup: F,
}

impl<Out, F: FnOnce() -> R, R: CleanupOutput<Out>> Payload<Out> for Call<F> {
    type Taken = F;
    const FLAGS: u8 = portable::<Out, R>();
    fn take(self) -> F {
        self.0
    }
}

impl<Out, F: FnOnce() -> R, R: CleanupOutput<Out>> SyncPayload<Out> for Call<F> {
    #[inline]
    fn run(self, exit: NonNull<ExitHead>) {
        report((self.0)(), exit)
    }
}

impl<Out, F: FnOnce(&mut Exit<Out>) -> R, R: CleanupOutput<Out>> Payload<Out> for CallWith<F> {
    type Taken = F;
    const FLAGS: u8 = 0;
    fn take(self) -> F {
        self.0
    }
}

impl<Out, F: FnOnce(&mut Exit<Out>) -> R, R: CleanupOutput<Out>> SyncPayload<Out>
    for CallWith<F>
{
    #[inline]
    fn run(self, exit: NonNull<ExitHead>) {
        // SAFETY: not portable, so never detached: the scope's exit.
        let result = (self.0)(unsafe { typed(exit) });
        report(result, exit)
    }
}

impl<Out, V, F: FnOnce(V) -> R, R: CleanupOutput<Out>> Payload<Out> for GuardCall<V, F> {
    type Taken = (V, F);
    const FLAGS: u8 = GUARDED | portable::<Out, R>();
    fn take(self) -> (V, F) {
        (self.value, self.cleanup)
    }
}

impl<Out, V, F: FnOnce(V) -> R, R: CleanupOutput<Out>> SyncPayload<Out> for GuardCall<V, F> {
    #[inline]
    fn run(self, exit: NonNull<ExitHead>) {
        report((self.cleanup)(self.value), exit)
    }
}

impl<Out, V, F, R> Payload<Out> for GuardCallWith<V, F>
where
    F: FnOnce(V, &mut Exit<Out>) -> R,
    R: CleanupOutput<Out>,
{
    type Taken = (V, F);
    const FLAGS: u8 = GUARDED;
    fn take(self) -> (V, F) {
        (self.value, self.cleanup)
    }
}

impl<Out, V, F, R> SyncPayload<Out> for GuardCallWith<V, F>
where
    F: FnOnce(V, &mut Exit<Out>) -> R,
    R: CleanupOutput<Out>,
{
    #[inline]
    fn run(self, exit: NonNull<ExitHead>) {
        // SAFETY: not portable, so never detached: the scope's exit.
        let result = (self.cleanup)(self.value, unsafe { typed(exit) });
        report(result, exit)
    }
}

/// How an async cleanup starts: what it holds before cleanup reaches it,
/// and the future it becomes then.
pub(crate) trait Start<Out>: Sized {
    type Fut: Future;
    /// What a cancelled registration hands back.
    type Taken;
    /// [`PORTABLE`] | [`GUARDED`] (the future's output is reported).
    const FLAGS: u8;
    /// Cleanup reached it: the future to poll. May run user code.
    fn start(self, exit: NonNull<ExitHead>) -> Self::Fut;
    fn take(self) -> Self::Taken;
}

/// Async cleanup: waiting for cleanup to reach it, running, or done.
#[pin_project(project = TaskProj, project_replace = TaskOwn)]
pub(crate) enum Task<S, Fut> {
    Waiting(S),
    Running(#[pin] Fut),
    Done,
}

impl<Out, S> Payload<Out> for Task<S, S::Fut>
where
    S: Start<Out>,
    <S::Fut as Future>::Output: CleanupOutput<Out>,
{
    type Taken = S::Taken;
    const FLAGS: u8 = S::FLAGS & (GUARDED | portable::<Out, <S::Fut as Future>::Output>());
    fn take(self) -> S::Taken {
        match self {
            Task::Waiting(start) => start.take(),
            _ => unreachable!("deferral: a started cleanup was defused"),
        }
    }
}

impl<Out, S> AsyncPayload<Out> for Task<S, S::Fut>
where
    S: Start<Out>,
    <S::Fut as Future>::Output: CleanupOutput<Out>,
{
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        exit: NonNull<ExitHead>,
    ) -> Poll<()> {
        if let TaskProj::Waiting(_) = self.as_mut().project() {
            // `Done` while starting: if it panics, nothing is left to drop
            // twice.
            let TaskOwn::Waiting(start) = self.as_mut().project_replace(Task::Done) else {
                unreachable!()
            };
            let fut = start.start(exit);
            self.as_mut().project_replace(Task::Running(fut));
        }
        match self.as_mut().project() {
            TaskProj::Running(fut) => {
                let result = core::task::ready!(fut.poll(cx));
                self.project_replace(Task::Done);
                report(result, exit);
                Poll::Ready(())
            }
            _ => panic!("deferral: cleanup polled after completion"),
        }
    }
}

/// A future given up front (`defer_async`).
pub(crate) struct Now<Fut>(pub(crate) Fut);

impl<Out, Fut: Future> Start<Out> for Now<Fut> {
    type Fut = Fut;
    type Taken = Fut;
    const FLAGS: u8 = PORTABLE;
    #[inline]
    fn start(self, _: NonNull<ExitHead>) -> Fut {
        self.0
    }
    fn take(self) -> Fut {
        self.0
    }
}

/// A guarded value and its `FnOnce(V) -> Fut` (`guard_async`).
pub(crate) struct GuardStart<V, F> {
    pub(crate) value: V,
    pub(crate) cleanup: F,
}

impl<Out, V, F: FnOnce(V) -> Fut, Fut: Future> Start<Out> for GuardStart<V, F> {
    type Fut = Fut;
    type Taken = (V, F);
    const FLAGS: u8 = PORTABLE | GUARDED;
    #[inline]
    fn start(self, _: NonNull<ExitHead>) -> Fut {
        (self.cleanup)(self.value)
    }
    fn take(self) -> (V, F) {
        (self.value, self.cleanup)
    }
}

/// `FnOnce(Outcome) -> Fut` (`defer_async_with`).
pub(crate) struct WithStart<F>(pub(crate) F);

impl<Out: Fallible, F: FnOnce(Outcome) -> Fut, Fut: Future> Start<Out> for WithStart<F> {
    type Fut = Fut;
    type Taken = F;
    const FLAGS: u8 = PORTABLE;
    #[inline]
    fn start(self, exit: NonNull<ExitHead>) -> Fut {
        (self.0)(outcome_of::<Out>(exit))
    }
    fn take(self) -> F {
        self.0
    }
}

/// A guarded value, its `FnOnce(V, Outcome) -> Fut`, and the `FnOnce(V)`
/// that gets the value instead if the cleanup never starts
/// (`guard_async_with`): it runs when this is dropped unstarted.
pub(crate) struct GuardWithStart<V, F, G: FnOnce(V)> {
    value: ManuallyDrop<V>,
    cleanup: ManuallyDrop<F>,
    fallback: ManuallyDrop<G>,
}

impl<V, F, G: FnOnce(V)> GuardWithStart<V, F, G> {
    pub(crate) fn new(value: V, cleanup: F, fallback: G) -> Self {
        GuardWithStart {
            value: ManuallyDrop::new(value),
            cleanup: ManuallyDrop::new(cleanup),
            fallback: ManuallyDrop::new(fallback),
        }
    }

    /// The guarded value, for the `Guard`.
    pub(crate) fn value_mut(this: *mut Self) -> *mut V {
        // SAFETY: only computes an address (`ManuallyDrop` is transparent).
        unsafe { (&raw mut (*this).value).cast() }
    }

    fn into_parts(self) -> (V, F, G) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: each field is read once, and `this` is never dropped.
        unsafe {
            (
                ManuallyDrop::take(&mut this.value),
                ManuallyDrop::take(&mut this.cleanup),
                ManuallyDrop::take(&mut this.fallback),
            )
        }
    }
}

impl<V, F, G: FnOnce(V)> Drop for GuardWithStart<V, F, G> {
    fn drop(&mut self) {
        // Never started (cancelled with nobody to run it, skipped by its
        // condition, dropped by a full reaper): the fallback gets the
        // value. The cleanup closure goes first, then the fallback runs.
        // SAFETY: each field is taken once; `self` is being dropped.
        let (value, cleanup, fallback) = unsafe {
            (
                ManuallyDrop::take(&mut self.value),
                ManuallyDrop::take(&mut self.cleanup),
                ManuallyDrop::take(&mut self.fallback),
            )
        };
        struct Then<V, G: FnOnce(V)>(Option<(V, G)>);
        impl<V, G: FnOnce(V)> Drop for Then<V, G> {
            fn drop(&mut self) {
                if let Some((value, fallback)) = self.0.take() {
                    fallback(value)
                }
            }
        }
        // The fallback runs even if the cleanup closure's drop panics.
        let then = Then(Some((value, fallback)));
        drop(cleanup);
        drop(then);
    }
}

impl<Out, V, F, G, Fut> Start<Out> for GuardWithStart<V, F, G>
where
    Out: Fallible,
    F: FnOnce(V, Outcome) -> Fut,
    G: FnOnce(V),
    Fut: Future,
{
    type Fut = Fut;
    type Taken = (V, (F, G));
    const FLAGS: u8 = PORTABLE | GUARDED;
    #[inline]
    fn start(self, exit: NonNull<ExitHead>) -> Fut {
        let outcome = outcome_of::<Out>(exit);
        let (value, cleanup, fallback) = self.into_parts();
        drop(fallback);
        cleanup(value, outcome)
    }
    fn take(self) -> (V, (F, G)) {
        let (value, cleanup, fallback) = self.into_parts();
        (value, (cleanup, fallback))
    }
}

/// A payload registered while a context variable was set: run, polled and
/// dropped inside the snapshot current at registration (`std`).
#[cfg(feature = "std")]
#[pin_project]
pub(crate) struct InContext<P> {
    #[pin]
    pub(crate) payload: P,
    pub(crate) snapshot: crate::Snapshot,
}

#[cfg(feature = "std")]
impl<Out, P: Payload<Out>> Payload<Out> for InContext<P> {
    type Taken = P::Taken;
    const FLAGS: u8 = P::FLAGS;
    fn take(self) -> P::Taken {
        let InContext { payload, snapshot } = self;
        let taken = payload.take();
        // Dropped while `taken` is a local: if the snapshot was the last
        // owner of a context value whose destructor panics, the unwinding
        // drops what was taken (a result moved out before a drop that
        // unwinds would leak, rust-lang/rust#47949).
        drop(snapshot);
        taken
    }

    /// The payload is dropped inside the snapshot, as it runs or is
    /// polled in it: a cleanup future dropped unfinished (its scope
    /// cancelled) sees its registration's context in its destructors,
    /// as `WithContext` and a promise's future do.
    unsafe fn drop_in_place(this: *mut Self) {
        // SAFETY: the caller gives up `*this` (live, pinned in place): the
        // snapshot is moved out, so the only drop of it is this local's
        // (also while unwinding, if the payload's destructor panics), and
        // the payload is dropped in place (pinning allows that), once.
        let snapshot = unsafe { core::ptr::read(&raw const (*this).snapshot) };
        // SAFETY: as above; `snapshot` is a separate local, nothing else
        // reaches the payload.
        snapshot.run(|| unsafe { P::drop_in_place(&raw mut (*this).payload) });
    }
}

#[cfg(feature = "std")]
impl<Out, P: SyncPayload<Out>> SyncPayload<Out> for InContext<P> {
    fn run(self, exit: NonNull<ExitHead>) {
        let InContext { payload, snapshot } = self;
        snapshot.run(|| payload.run(exit))
    }
}

#[cfg(feature = "std")]
impl<Out, P: AsyncPayload<Out>> AsyncPayload<Out> for InContext<P> {
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, exit: NonNull<ExitHead>) -> Poll<()> {
        let this = self.project();
        let payload = this.payload;
        this.snapshot.run(|| payload.poll(cx, exit))
    }
}
