//! The kinds of deferred work a scope stores in its slab: plain closures,
//! closures that see the output, futures, and guarded values with their
//! sync or async cleanup. Each is a [`Payload`] the slab can run, poll, drop
//! or hand back without knowing its type.
//!
//! Nothing here requires `Send` or `'static`: what a scope may hold is
//! decided when a thunk is registered (by its flavour, see
//! [`Fits`](crate::Fits)), not here.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project::pin_project;

use crate::slab::{Ending, Payload};

/// `FnOnce()`.
pub(crate) struct Thunk<F>(pub(crate) F);

/// `FnOnce(&mut Out)`: runs only if there is an output.
pub(crate) struct ThunkWith<F>(pub(crate) F);

/// A future, polled to completion during cleanup.
#[pin_project]
pub(crate) struct AsyncThunk<Fut>(#[pin] pub(crate) Fut);

/// A future whose output (a `FnOnce(&mut Out)`) is applied to the output.
#[pin_project]
pub(crate) struct AsyncThunkWith<Fut>(#[pin] pub(crate) Fut);

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

impl<Out, F: FnOnce()> Payload<Out> for Thunk<F> {
    type Taken = F;
    const ASYNC: bool = false;
    #[inline]
    fn run(self, _: &mut Ending<Out>) {
        (self.0)()
    }
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut Ending<Out>) -> Poll<()> {
        never_polled()
    }
    fn take(self) -> F {
        self.0
    }
}

impl<Out, F: FnOnce(&mut Out)> Payload<Out> for ThunkWith<F> {
    type Taken = F;
    const ASYNC: bool = false;
    #[inline]
    fn run(self, end: &mut Ending<Out>) {
        if let Some(out) = end.out.as_mut() {
            (self.0)(out)
        }
    }
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut Ending<Out>) -> Poll<()> {
        never_polled()
    }
    fn take(self) -> F {
        self.0
    }
}

impl<Out, Fut: Future<Output = ()>> Payload<Out> for AsyncThunk<Fut> {
    type Taken = Fut;
    const ASYNC: bool = true;
    fn run(self, _: &mut Ending<Out>) {
        never_run()
    }
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, _: &mut Ending<Out>) -> Poll<()> {
        self.project().0.poll(cx)
    }
    fn take(self) -> Fut {
        self.0
    }
}

impl<Out, Fut> Payload<Out> for AsyncThunkWith<Fut>
where
    Fut: Future,
    Fut::Output: FnOnce(&mut Out),
{
    type Taken = Fut;
    const ASYNC: bool = true;
    fn run(self, _: &mut Ending<Out>) {
        never_run()
    }
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, end: &mut Ending<Out>) -> Poll<()> {
        let amend = core::task::ready!(self.project().0.poll(cx));
        if let Some(out) = end.out.as_mut() {
            amend(out);
        }
        Poll::Ready(())
    }
    fn take(self) -> Fut {
        self.0
    }
}

impl<Out, V, F: FnOnce(V)> Payload<Out> for GuardThunk<V, F> {
    type Taken = V;
    const ASYNC: bool = false;
    #[inline]
    fn run(self, _: &mut Ending<Out>) {
        (self.cleanup)(self.value)
    }
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut Ending<Out>) -> Poll<()> {
        never_polled()
    }
    fn take(self) -> V {
        self.value
    }
}

impl<V, F, Fut> Future for GuardAsync<V, F, Fut>
where
    F: FnOnce(V) -> Fut,
    Fut: Future<Output = ()>,
{
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
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
                core::task::ready!(fut.poll(cx));
                self.project_replace(GuardAsync::Done);
                Poll::Ready(())
            }
            _ => panic!("deferral: guard cleanup polled after completion"),
        }
    }
}

impl<Out, V, F, Fut> Payload<Out> for GuardAsync<V, F, Fut>
where
    F: FnOnce(V) -> Fut,
    Fut: Future<Output = ()>,
{
    type Taken = V;
    const ASYNC: bool = true;
    fn run(self, _: &mut Ending<Out>) {
        never_run()
    }
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, _: &mut Ending<Out>) -> Poll<()> {
        Future::poll(self, cx)
    }
    fn take(self) -> V {
        match self {
            GuardAsync::Armed { value, .. } => value,
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
    fn run(self, end: &mut Ending<Out>) {
        let InContext { payload, snapshot } = self;
        snapshot.run(|| payload.run(end))
    }
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, end: &mut Ending<Out>) -> Poll<()> {
        let this = self.project();
        let payload = this.payload;
        this.snapshot.run(|| payload.poll(cx, end))
    }
    fn take(self) -> P::Taken {
        self.payload.take()
    }
}
