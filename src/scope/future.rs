//! [`DeferScope`]: the future that runs a body, then its cleanup; and
//! [`Grace`], which bounds that cleanup by a deadline.
//!
//! # How it works
//!
//! A `DeferScope` owns, inline: the slab (whose core *is* the handle the
//! body borrows), the body closure and then the body future in the same
//! bytes, the exit, and the cleanup driver. Its state is one [`Phase`]:
//! `Init` (the closure, not called yet) → `Body` (the future, polled) →
//! `Cleanup` (the body is gone; the driver runs) → `Done`. The tag moves
//! on *before* the body is dropped in place, so a panicking destructor is
//! never run twice.
//!
//! The body future borrows the handle, which lives in the scope itself: a
//! self-reference, so the scope is `!Unpin` and never moves once polled.
//! Its type cannot be named on stable Rust (`AsyncFnOnce::CallOnceFuture`
//! is unstable), so [`ScopeBody`] names it: it is implemented for every
//! closure `for<'d> FnOnce(&'d Defer<..>) -> Fut`, which every
//! `async |d| ..` closure is. The scope stores the future at the lifetime
//! `'s` of its own type and hands the body a `&'s Defer` made from a
//! pointer to itself. That is sound for the reason a borrow in an `async
//! fn`'s frame is: the body was type-checked for *every* `'d`, so it cannot
//! keep the handle beyond the call that lent it, and the scope drops the
//! body future before anything it borrows.
//!
//! Nothing in the scope is touched through a reference to the whole
//! scope while it runs: every access is a raw-pointer projection of one
//! field. The body is in an `UnsafeCell`, and so are the slab's bytes, so a
//! `&DeferScope` taken between two polls (`is_terminated`, `Debug`) claims
//! nothing about the self-borrowing parts. The rule for every future here
//! that holds another future inline: what may borrow itself across a
//! pending poll lives in an `UnsafeCell` (so does [`Grace`]'s timer), and
//! what `&self` accessors read lives outside it.
//!
//! A scope with nothing registered pays for no cleanup machinery: after
//! the body it finds the slab empty and returns the output straight away.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;

use super::drive::{self, Driver, Ends};
use super::exit::{CANCELLED, Exit, ExitHead, UNWINDING};
use super::flavour::{Flavour, Sendable};
use super::flavour::DEFAULT_CAPACITY;
use super::handle::Defer;
use super::slab::Slab;
use super::{Lifo, Order};
use crate::panic as panicking;

/// The body of a scope: a closure called with the scope's handle that
/// returns the future to run. Implemented for every `async |d| ..` closure
/// (and every `FnOnce(&Defer<T, K, N>) -> impl Future<Output = T>` for all
/// lifetimes of the borrow); you never implement it.
///
/// `Wf` bounds the lifetime `'d` to those for which `&'d Defer<T, K, N>`
/// makes sense, so that bodies may return borrowed outputs.
///
/// ```
/// use deferral::{Defer, scope::{ScopeBody, Sendable, DEFAULT_CAPACITY}};
/// fn is_body<F>(_: F)
/// where
///     F: for<'d> ScopeBody<'d, u8, Sendable, DEFAULT_CAPACITY, &'d (u8, Sendable)>,
/// {
/// }
/// is_body(async |d: &Defer<u8>| {
///     d.defer(|| ());
///     1
/// });
/// ```
pub trait ScopeBody<'d, T, K: Flavour, const N: usize, Wf = &'d (T, K)> {
    /// The body's future.
    type Fut: Future<Output = T>;

    /// Calls the body with the handle (the scope does; you never need to).
    ///
    /// ```
    /// use deferral::{Defer, scope::{ScopeBody, Sendable, DEFAULT_CAPACITY}};
    /// fn start<'d>(
    ///     body: impl ScopeBody<'d, u8, Sendable, DEFAULT_CAPACITY>,
    ///     d: &'d Defer<u8>,
    /// ) -> impl Future<Output = u8> {
    ///     body.call(d)
    /// }
    /// # futures::executor::block_on(deferral::scope(async |d| start(async |_: &Defer<u8>| 1, d).await));
    /// ```
    fn call(self, handle: &'d Defer<T, K, N>) -> Self::Fut;
}

impl<'d, T, K, F, Fut, const N: usize> ScopeBody<'d, T, K, N, &'d (T, K)> for F
where
    K: Flavour,
    F: FnOnce(&'d Defer<T, K, N>) -> Fut,
    Fut: Future<Output = T>,
{
    type Fut = Fut;

    #[inline(always)]
    fn call(self, handle: &'d Defer<T, K, N>) -> Fut {
        self(handle)
    }
}

/// Where a scope is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The body closure waits for the first poll.
    Init,
    /// The body future is being polled.
    Body,
    /// The body is gone; the driver runs the cleanup.
    Cleanup,
    Done,
}

/// The body closure, then its future, in the same bytes.
union BodyCell<F, Fut> {
    closure: ManuallyDrop<F>,
    future: ManuallyDrop<Fut>,
}

/// The future of [`scope`](crate::scope()), [`scope_local`](crate::scope_local)
/// and [`ScopeBuilder`](super::ScopeBuilder): resolves to the body's output
/// after every cleanup has finished.
///
/// `'s` is the lifetime the body's future is stored at (see the module
/// docs); `K` the flavour, `N` the inline slab capacity in bytes, `O` the
/// cleanup [order](super::Order).
///
/// # Size
///
/// Besides its body's future and the `N` bytes of its slab, a scope holds
/// its output, its bookkeeping (the slab's core: a few words), and its
/// cleanup driver; `tests/scope_capacity.rs` prints the figures. Moving a
/// scope moves its inline bytes: pin it where it lives (`.await` does).
///
/// ```
/// # futures::executor::block_on(async {
/// use futures::future::FusedFuture;
/// let mut scope = Box::pin(deferral::scope(async |_| 7));
/// assert!(!scope.is_terminated());
/// assert_eq!(scope.as_mut().await, 7);
/// assert!(scope.is_terminated());
/// # });
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct DeferScope<'s, T, F, K = Sendable, const N: usize = DEFAULT_CAPACITY, O = Lifo>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    slab: Slab<K, N>,
    phase: Phase,
    /// In an `UnsafeCell`: a `&DeferScope` must not claim the
    /// self-borrowing body is frozen.
    body: UnsafeCell<BodyCell<F, F::Fut>>,
    /// How the body ended. Emptied by `finish` and `cancel`: a finished
    /// scope's drop has nothing to look at.
    exit: ManuallyDrop<Exit<T>>,
    /// The cleanup in progress (`Phase::Cleanup`).
    drive: ManuallyDrop<O::Drive>,
    _pinned: PhantomPinned,
    _life: PhantomData<(&'s (), O)>,
}

// SAFETY: nothing of the body, the output or the slab is reachable
// through `&DeferScope` (only `is_terminated` and `Debug`, which read the
// phase).
unsafe impl<'s, T, F, K, const N: usize, O> Sync for DeferScope<'s, T, F, K, N, O>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
}

impl<'s, T, F, K, const N: usize, O> DeferScope<'s, T, F, K, N, O>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    #[inline(always)]
    pub(crate) fn new(body: F) -> Self {
        DeferScope {
            slab: Slab::new(),
            phase: Phase::Init,
            body: UnsafeCell::new(BodyCell {
                closure: ManuallyDrop::new(body),
            }),
            exit: ManuallyDrop::new(Exit::new()),
            drive: ManuallyDrop::new(O::Drive::new(ptr::null_mut())),
            _pinned: PhantomPinned,
            _life: PhantomData,
        }
    }

    /// The scope's exit, as cleanup takes it: its head, through a raw
    /// projection (no reference to the scope).
    #[inline(always)]
    fn ends(this: *mut Self) -> Ends {
        // SAFETY: a field of a live scope is never null; `ManuallyDrop` is
        // `repr(transparent)` and `Exit` is `repr(C)`, head first.
        unsafe {
            Ends {
                exit: NonNull::new_unchecked((&raw mut (*this).exit).cast::<ExitHead>()),
                classify: (*this).slab.core().classify(),
            }
        }
    }

    /// The scope's exit, by reference.
    ///
    /// # Safety
    /// `this` is live; nothing else uses its exit while the reference lives.
    #[inline(always)]
    unsafe fn exit<'a>(this: *mut Self) -> &'a mut Exit<T> {
        // SAFETY: as the caller guarantees.
        unsafe { &mut *(&raw mut (*this).exit).cast::<Exit<T>>() }
    }

    /// Cleanup is over: hands out the output, or resumes the first panic.
    ///
    /// # Safety
    /// `this` is the pinned scope, its body gone and its cleanup done.
    #[inline]
    unsafe fn finish(this: *mut Self) -> Poll<T> {
        // SAFETY: as the caller guarantees; raw projections only.
        unsafe {
            (*this).phase = Phase::Done;
            (*this).slab.core().release();
            let exit = Self::exit(this);
            if let Some(p) = exit.head.panic.take() {
                // The output (if the body returned) is discarded; a panic
                // from its destructor is dropped: the first one resumes.
                let out = exit.out.take();
                let _ = panicking::catch(move || drop(out));
                panicking::resume(p);
            }
            match exit.out.take() {
                Some(out) => Poll::Ready(out),
                // Only without `std` (which records every panic): polled
                // again after the body's end unwound out of a poll.
                None => panic!("`DeferScope` polled again after its body panicked"),
            }
        }
    }

    /// Ends the body in place (its future dropped after the tag moved on).
    ///
    /// # Safety
    /// `this` is live, in `Phase::Body`.
    unsafe fn end_body(this: *mut Self) {
        // SAFETY: as the caller guarantees.
        unsafe {
            (*this).phase = Phase::Cleanup;
            #[cfg(not(feature = "std"))]
            let unwinding = Self::if_the_end_unwinds(this);
            let cell = (*this).body.get();
            if let Err(p) = panicking::catch(|| ManuallyDrop::drop(&mut (*cell).future)) {
                Self::exit(this).head.record(p);
            }
            #[cfg(not(feature = "std"))]
            unwinding.defuse();
        }
    }

    /// Without `std` nothing catches a panic: if the body's end — its
    /// closure's call, its future's drop — unwinds (out of `poll` or
    /// `drop`), this guard, dropped while it unwinds, leaves the scope as
    /// `std` would have: the cleanup sees a panic, and the driver holds the
    /// chain, so that whoever polls or drops the scope next runs it (none
    /// leaks; a later poll panics once the cleanup ran: no output). With a
    /// panic strategy of `abort` it compiles to nothing.
    ///
    /// # Safety
    /// For the guard's drop: `this` stays live, in `Phase::Cleanup` with
    /// its driver not started, until the guard is defused, which the
    /// caller does as soon as the body's end returned; dropped undefused
    /// (while that end unwinds), the body is gone.
    #[cfg(not(feature = "std"))]
    #[inline(always)]
    unsafe fn if_the_end_unwinds(this: *mut Self) -> panicking::OnUnwind<impl FnOnce()> {
        panicking::OnUnwind::new(move || {
            // SAFETY: as `if_the_end_unwinds`'s caller guarantees: the body
            // is gone (its end unwound), the driver not started.
            unsafe {
                Self::exit(this).head.flags |= CANCELLED | UNWINDING;
                Self::start_drive(this);
            }
        })
    }

    /// Starts the driver over the slab's chain.
    ///
    /// # Safety
    /// `this` is live, in `Phase::Cleanup`, its driver not started.
    #[inline(always)]
    unsafe fn start_drive(this: *mut Self) {
        // SAFETY: the body is gone: the scope has the slab to itself; the
        // driver it replaces holds nothing.
        unsafe {
            let first = (*this).slab.core().start_cleanup(O::REVERSE);
            *(*this).drive = O::Drive::new(first.map_or(ptr::null_mut(), |e| e.0.as_ptr()));
        }
    }

    /// Drops the driver (what it holds may be the owner's waker: foreign
    /// code), leaving an empty one in its place first.
    ///
    /// # Safety
    /// `this` is live.
    unsafe fn end_drive(this: *mut Self) {
        // SAFETY: as the caller guarantees.
        let old = unsafe { core::mem::replace(&mut *(*this).drive, O::Drive::new(ptr::null_mut())) };
        drop(old);
    }

    /// Cuts what cleanup has not finished: started async cleanup is
    /// dropped, sync cleanup runs, unstarted async cleanup is handed over
    /// (see [`cancel`](crate::cancel)) — all of it under the one rule that
    /// a registration whose condition does not hold is dropped unrun.
    /// Returns (cut, dropped unpolled).
    ///
    /// # Safety
    /// `this` is live, in `Phase::Cleanup`, with its driver started; its
    /// phase says what the scope becomes (foreign code runs here).
    unsafe fn cut(this: *mut Self) -> (usize, usize) {
        let ends = Self::ends(this);
        let dropped = core::cell::Cell::new(0);
        // SAFETY: the driver owns the chain; `ends` is the scope's exit.
        let cut = crate::context::isolated(|| unsafe {
            drive::cancel(&mut *(*this).drive, ends, |live| {
                // SAFETY: a claimed, never-polled async entry of this scope.
                if K::SENDABLE {
                    crate::cancel::hand_over(live, ends.outcome(), &dropped)
                } else {
                    // May borrow the caller's state: it cannot run
                    // elsewhere. Dropped (a guard's fallback gets its value).
                    crate::cancel::drop_unpolled(live, &dropped)
                }
            })
        });
        (cut, dropped.get())
    }

    /// Drives the cleanup.
    ///
    /// # Safety
    /// `this` is the pinned scope, in `Phase::Cleanup` with its driver
    /// started.
    #[inline(always)]
    unsafe fn drive(this: *mut Self, cx: &mut Context<'_>) -> Poll<T> {
        // SAFETY: as the caller guarantees; raw projections only.
        unsafe {
            let ends = Self::ends(this);
            // Cleanup registered in a context runs in it (it carries it);
            // the rest in the empty one.
            core::task::ready!(crate::context::isolated(|| drive::drive(
                &mut *(*this).drive,
                ends,
                cx
            )));
            Self::end_drive(this);
            Self::finish(this)
        }
    }

    /// The slow path of `drop`: the scope did not finish.
    #[cold]
    #[inline(never)]
    fn cancel(&mut self) {
        let this: *mut Self = self;
        // SAFETY: as in `poll`: raw projections only; the body is dropped
        // in place.
        unsafe {
            let unwinding = if panicking::unwinding() { UNWINDING } else { 0 };
            match (*this).phase {
                Phase::Done => return,
                Phase::Init => {
                    (*this).phase = Phase::Done;
                    ManuallyDrop::drop(&mut (*(*this).body.get()).closure);
                    return;
                }
                Phase::Body => {
                    // Cancelled before the body returned.
                    Self::exit(this).head.flags |= CANCELLED | unwinding;
                    // Without `std` the body's destructor may unwind out of
                    // here (nothing catches it): the cancellation is then
                    // finished while it unwinds, so no cleanup leaks (a
                    // second panic aborts, as in any destructor).
                    let rest = panicking::OnUnwind::new(|| Self::cancel_rest(this));
                    Self::end_body(this);
                    rest.defuse();
                }
                // The body returned (or panicked): its outcome stands.
                Phase::Cleanup => Self::exit(this).head.flags |= unwinding,
            }
            Self::cancel_rest(this);
        }
    }

    /// The rest of `cancel`, once the body is gone: starts the driver if
    /// nothing did (a body cancelled just now), cuts the cleanup, and drops
    /// what is left.
    ///
    /// # Safety
    /// `this` is live, its body gone, its phase `Cleanup` or `Body`.
    unsafe fn cancel_rest(this: *mut Self) {
        // SAFETY: as the caller guarantees; raw projections only.
        unsafe {
            // Once the driver started, the slab is empty for good (the body,
            // and with it every handle, is gone): a chain left there was
            // never handed to it.
            if !(*this).slab.core().is_empty() {
                Self::start_drive(this);
            }
            (*this).phase = Phase::Done;
            Self::cut(this);
            (*this).slab.core().release();
            // Whatever is left (an output nobody receives, a panic) goes
            // last.
            let exit = Self::exit(this);
            let mut panic = exit.head.panic.take();
            let out = exit.out.take();
            if let Err(p) = panicking::catch(move || drop(out)) {
                panic.get_or_insert(p);
            }
            ManuallyDrop::drop(&mut (*this).drive);
            if let Some(p) = panic {
                panicking::resume_unless_panicking(p);
            }
        }
    }

    /// Races this scope's cleanup against a deadline, so that shutdown
    /// cannot hang on it. When cleanup starts, `deadline()` makes the timer
    /// (any runtime's: `|| tokio::time::sleep(d)`); if it fires first, the
    /// cleanup still running is cut short — async cleanup that started is
    /// dropped, the rest that would run is handed over (see
    /// [`cancel`](crate::cancel)), sync cleanup still runs — and the scope
    /// resolves to `Err(CutShort)`, which carries the body's output and how
    /// many were cut. Otherwise it resolves to `Ok(output)`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_async(std::future::pending::<()>()); // a close that hangs
    ///     7
    /// })
    /// .grace(|| async {}) // a timer that has already fired
    /// .await;
    /// let cut = out.unwrap_err();
    /// assert_eq!((cut.cut(), cut.into_output()), (1, 7));
    /// # });
    /// ```
    pub fn grace<G, D>(self, deadline: G) -> Grace<'s, T, F, K, N, O, G, D>
    where
        G: FnOnce() -> D,
        D: Future,
    {
        Grace {
            scope: self,
            deadline: Some(deadline),
            timer: UnsafeCell::new(None),
        }
    }

    /// The body has ended and cleanup has not finished.
    fn cleaning(&self) -> bool {
        self.phase == Phase::Cleanup
    }

    /// Cuts the cleanup short (see `grace`): returns the output (resuming
    /// the panic, if one is in flight), how many were cut, and how many of
    /// those were dropped unpolled.
    fn cut_short(self: Pin<&mut Self>) -> (T, usize, usize) {
        // SAFETY: as in `poll`: raw projections only.
        unsafe {
            let this: *mut Self = self.get_unchecked_mut();
            let (cut, dropped) = Self::cut(this);
            Self::end_drive(this);
            match Self::finish(this) {
                Poll::Ready(out) => (out, cut, dropped),
                Poll::Pending => unreachable!(),
            }
        }
    }
}

impl<'s, T, F, K, const N: usize, O> Future for DeferScope<'s, T, F, K, N, O>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    type Output = T;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        // SAFETY: the scope is pinned, and nothing is moved out of it but
        // the body closure (never pinned) and the output. Every field is
        // reached by a raw projection, never through `&Self`.
        let this: *mut Self = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above, for each access below.
        unsafe {
            if (*this).phase != Phase::Cleanup {
                if (*this).phase == Phase::Done {
                    panic!("`DeferScope` polled after completion");
                }
                if (*this).phase == Phase::Init {
                    // The scope's address is final: start the slab.
                    Slab::init(&raw mut (*this).slab);
                }
                let core = (*this).slab.core();
                let cell = (*this).body.get();
                // Calling the body may already run user code (a closure
                // returning a future runs its synchronous prefix now): it
                // gets the same treatment as a poll, in the same frame.
                let polled = panicking::catch(|| {
                    crate::scope::ambient::enter(core, || {
                        if (*this).phase == Phase::Init {
                            let body = ManuallyDrop::take(&mut (*cell).closure);
                            // If calling the body panics, there is no future.
                            (*this).phase = Phase::Cleanup;
                            #[cfg(not(feature = "std"))]
                            let unwinding = Self::if_the_end_unwinds(this);
                            let handle: &'s Defer<T, K, N> = &*ptr::from_ref(Defer::of(core));
                            let future = body.call(handle);
                            #[cfg(not(feature = "std"))]
                            unwinding.defuse();
                            (&raw mut (*cell).future).write(ManuallyDrop::new(future));
                            (*this).phase = Phase::Body;
                        }
                        Pin::new_unchecked(&mut *(*cell).future).poll(cx)
                    })
                });
                let out = match polled {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(out)) => {
                        Self::end_body(this);
                        Some(out)
                    }
                    Err(p) => {
                        Self::exit(this).head.record(p);
                        if (*this).phase == Phase::Body {
                            Self::end_body(this);
                        }
                        None
                    }
                };
                if core.is_empty() && out.is_some() && Self::exit(this).head.panic.is_none() {
                    // Nothing registered: no cleanup machinery at all.
                    (*this).phase = Phase::Done;
                    core.release();
                    return Poll::Ready(out.unwrap_unchecked());
                }
                Self::exit(this).out = out;
                Self::start_drive(this);
            }
            Self::drive(this, cx)
        }
    }
}

impl<'s, T, F, K, const N: usize, O> Drop for DeferScope<'s, T, F, K, N, O>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    #[inline]
    fn drop(&mut self) {
        // A finished scope has released everything already.
        if self.phase != Phase::Done {
            self.cancel();
        }
    }
}

impl<'s, T, F, K, const N: usize, O> FusedFuture for DeferScope<'s, T, F, K, N, O>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    fn is_terminated(&self) -> bool {
        self.phase == Phase::Done
    }
}

impl<'s, T, F, K, const N: usize, O> fmt::Debug for DeferScope<'s, T, F, K, N, O>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferScope")
            .field("phase", &self.phase)
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}

/// The future of [`DeferScope::grace`]: the scope's output, or
/// [`CutShort`] if its cleanup outlived the deadline.
///
/// ```
/// # futures::executor::block_on(async {
/// let graced = deferral::scope(async |_| 1).grace(|| std::future::pending::<()>());
/// assert_eq!(graced.await.unwrap(), 1);
/// # });
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Grace<'s, T, F, K, const N: usize, O, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    /// Structurally pinned, like `timer` (see `project`); the deadline
    /// maker is not.
    scope: DeferScope<'s, T, F, K, N, O>,
    deadline: Option<G>,
    /// In an `UnsafeCell`, like the scope's body: the timer may borrow its
    /// own state across a pending poll, and a `&Grace` taken between two
    /// polls (`Debug`) must not claim those bytes are frozen (Stacked and
    /// Tree Borrows; issue 21, finding 11).
    timer: UnsafeCell<Option<D>>,
}

// SAFETY: through `&Grace` only the scope's phase is read (`Debug`); the
// deadline maker and the timer are reached only through `Pin<&mut Grace>`.
unsafe impl<'s, T, F, K, const N: usize, O, G, D> Sync for Grace<'s, T, F, K, N, O, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
}

impl<'s, T, F, K, const N: usize, O, G, D> Grace<'s, T, F, K, N, O, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    #[allow(clippy::type_complexity)]
    fn project(
        self: Pin<&mut Self>,
    ) -> (
        Pin<&mut DeferScope<'s, T, F, K, N, O>>,
        &mut Option<G>,
        Pin<&mut Option<D>>,
    ) {
        // SAFETY: `scope` and `timer` are structurally pinned: never moved
        // out of a pinned `Grace` (no by-value accessor, no `Drop` impl,
        // not `repr(packed)`); `Grace` is never `Unpin` (`DeferScope` is
        // not: `PhantomPinned`). The timer's cell is ours alone for the
        // borrow of `self` (nothing reads it through `&Grace`).
        unsafe {
            let this = self.get_unchecked_mut();
            (
                Pin::new_unchecked(&mut this.scope),
                &mut this.deadline,
                Pin::new_unchecked(&mut *this.timer.get()),
            )
        }
    }
}

impl<'s, T, F, K, const N: usize, O, G, D> fmt::Debug for Grace<'s, T, F, K, N, O, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nothing of the (pinned, possibly self-borrowing) timer is read,
        // and `&self` claims nothing about it (it is in its cell).
        f.debug_struct("Grace")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl<'s, T, F, K, const N: usize, O, G, D> Future for Grace<'s, T, F, K, N, O, G, D>
where
    K: Flavour,
    F: ScopeBody<'s, T, K, N>,
    O: Order,
    G: FnOnce() -> D,
    D: Future,
{
    type Output = Result<T, CutShort<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (mut scope, deadline, mut timer) = self.project();
        if let Poll::Ready(out) = scope.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if !scope.cleaning() {
            return Poll::Pending;
        }
        // The timer is started once the deadline maker is gone: asking the
        // timer (`is_none()`) would make a `&Option<D>` over a future that
        // may borrow itself (issue 21, finding 11's class).
        if let Some(deadline) = deadline.take() {
            timer.set(Some(deadline()));
        }
        let Some(fired) = timer.as_mut().as_pin_mut() else {
            panic!("deferral: `Grace` polled after completion")
        };
        core::task::ready!(fired.poll(cx));
        timer.set(None);
        let (output, cut, dropped) = scope.cut_short();
        Poll::Ready(Err(CutShort {
            output,
            cut,
            dropped,
        }))
    }
}

/// A scope's cleanup outlived its [grace](DeferScope::grace) deadline and
/// was cut short: the body's output, how many async cleanups did not finish
/// here, and how many of those were dropped unpolled (nothing took them).
///
/// ```
/// # futures::executor::block_on(async {
/// let cut = deferral::scope(async |d| {
///     d.defer_async(std::future::pending::<()>());
/// })
/// .grace(|| async {})
/// .await
/// .unwrap_err();
/// assert_eq!(cut.to_string(), "cleanup cut short by its deadline (1 unfinished)");
/// # });
/// ```
pub struct CutShort<T> {
    output: T,
    cut: usize,
    dropped: usize,
}

impl<T> CutShort<T> {
    /// How many async cleanups did not finish here (dropped after they
    /// started, or handed over to run elsewhere).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |_| ()).grace(|| async {}).await;
    /// assert!(out.is_ok()); // nothing to cut
    /// # });
    /// ```
    pub fn cut(&self) -> usize {
        self.cut
    }

    /// How many of those were dropped unpolled: nothing took them (see
    /// [`cancel`](crate::cancel)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let cut = deferral::scope_local(async |d| {
    ///     d.defer_async(async {});
    ///     d.defer_async(std::future::pending::<()>());
    /// })
    /// .grace(|| async {})
    /// .await
    /// .unwrap_err();
    /// assert_eq!((cut.cut(), cut.dropped()), (2, 1)); // one started, one never did
    /// # });
    /// ```
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// The body's output.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let cut = deferral::scope(async |d| {
    ///     d.defer_async(std::future::pending::<()>());
    ///     "out"
    /// })
    /// .grace(|| async {})
    /// .await
    /// .unwrap_err();
    /// assert_eq!(*cut.output(), "out");
    /// # });
    /// ```
    pub fn output(&self) -> &T {
        &self.output
    }

    /// The body's output, by value.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let out = deferral::scope(async |d| {
    ///     d.defer_async(std::future::pending::<()>());
    ///     1
    /// })
    /// .grace(|| async {})
    /// .await
    /// .unwrap_or_else(|cut| cut.into_output());
    /// assert_eq!(out, 1);
    /// # });
    /// ```
    pub fn into_output(self) -> T {
        self.output
    }
}

impl<T> fmt::Debug for CutShort<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CutShort")
            .field("cut", &self.cut)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for CutShort<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cleanup cut short by its deadline ({} unfinished)",
            self.cut
        )
    }
}

impl<T> core::error::Error for CutShort<T> {}
