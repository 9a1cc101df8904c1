//! Async cleanup that survives cancellation: a scope dropped before it
//! finished cannot await its unstarted async cleanup in `Drop`, so it hands
//! each one over — as an [`Orphan`] — to whatever runs it: a per-scope
//! handler ([`ScopeBuilder::on_cancel`](crate::ScopeBuilder::on_cancel),
//! `alloc`), or the program's ([`set_cancel_handler`]): a runtime adapter
//! (one line for tokio) or, without a heap, a `static` [`Reaper`] that a
//! firmware task drains.
//!
//! # How the reaper works
//!
//! A [`Reaper<SLOTS, BYTES>`] is `SLOTS` slots of `BYTES` bytes, each with a
//! state word: `EMPTY → FILLING → READY → RUNNING → EMPTY`. Handing over
//! claims an `EMPTY` slot with a compare-exchange, moves the cleanup's bytes
//! in (it was never polled, so it may move), publishes it `READY` with
//! `Release` and wakes the reaper task. Only that task moves a slot on from
//! `READY`: it polls every `READY` or `RUNNING` slot's cleanup in place
//! (pinned there), and when one finishes drops it and stores `EMPTY` with
//! `Release`, after which another hand-over may claim the slot. A cleanup
//! that does not fit any free slot is the documented fallback: dropped
//! unpolled at once (its destructors run), and counted.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::slab::{Header, Live};
use crate::sync::{AtomicU32, AtomicUsize, AtomicWaker, Ordering, UnsafeCell};

/// A cancelled scope's async cleanup that never started, handed to a
/// cancel handler: run it somewhere, or drop it (dropping it drops the
/// cleanup unpolled, as a scope without a handler does).
///
/// ```standalone_crate
/// # #[cfg(feature = "alloc")]
/// # futures::executor::block_on(async {
/// use std::sync::Mutex;
/// static ORPHANS: Mutex<Vec<deferral::BoxedThunk>> = Mutex::new(Vec::new());
/// deferral::set_cancel_handler(|orphan| ORPHANS.lock().unwrap().push(orphan.into_boxed()));
/// let mut scope = Box::pin(deferral::scope(async |d| {
///     d.try_defer_async(async { println!("closed anyway") }).unwrap();
///     std::future::pending::<()>().await
/// }));
/// let _ = futures::poll!(scope.as_mut());
/// drop(scope); // cancelled: its async cleanup is handed over
/// let orphan = ORPHANS.lock().unwrap().pop().unwrap();
/// orphan.await; // prints "closed anyway"
/// # deferral::clear_cancel_handler();
/// # });
/// ```
pub struct Orphan<'a> {
    live: Live,
    _scope: PhantomData<&'a mut ()>,
}

// SAFETY: only made from a `Sendable` scope's payloads (`Send + 'static`).
unsafe impl Send for Orphan<'_> {}

impl fmt::Debug for Orphan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orphan")
            .field("layout", &self.layout())
            .finish_non_exhaustive()
    }
}

impl Orphan<'_> {
    /// # Safety
    /// `live` is a claimed, never-polled async payload of a `Sendable`
    /// scope, the caller's to give up.
    pub(crate) unsafe fn new(live: Live) -> Self {
        Orphan {
            live,
            _scope: PhantomData,
        }
    }

    /// The size and alignment of the cleanup (to size a [`Reaper`]'s
    /// slots).
    ///
    /// ```standalone_crate
    /// deferral::set_cancel_handler(|orphan| {
    ///     println!("{} bytes of cleanup, dropped", orphan.layout().size());
    /// });
    /// # deferral::clear_cancel_handler();
    /// ```
    pub fn layout(&self) -> Layout {
        self.live.vtable().layout()
    }

    /// The cleanup as a boxed future, to spawn on a runtime (`alloc`):
    /// `tokio::spawn(orphan.into_boxed())`. It sees a cancelled
    /// [`Exit`](crate::Exit).
    ///
    /// ```standalone_crate
    /// deferral::set_cancel_handler(|orphan| drop(orphan.into_boxed()));
    /// # deferral::clear_cancel_handler();
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn into_boxed(self) -> crate::BoxedThunk {
        let live = self.live;
        core::mem::forget(self);
        // SAFETY: as `new` guarantees; never touched again (forgotten).
        unsafe { live.into_boxed() }
    }

    /// Moves the cleanup into the entry at `to` (for a reaper slot).
    ///
    /// # Safety
    /// As [`Live::move_to`].
    unsafe fn move_to(self, to: *mut Header) {
        let live = self.live;
        core::mem::forget(self);
        // SAFETY: as the caller guarantees.
        unsafe { live.move_to(to) }
    }
}

impl Drop for Orphan<'_> {
    fn drop(&mut self) {
        // SAFETY: the payload is ours (`new`); dropped once, here.
        unsafe { self.live.drop_payload() }
    }
}

/// The program's cancel handler (`0`: none), a `fn(Orphan)` as a pointer.
static HANDLER: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Sets the program's cancel handler: every [`scope`](crate::scope)
/// (`Send + 'static` cleanup) dropped before it finished, and without a
/// handler of its own, hands it each async cleanup that never started,
/// instead of dropping it unpolled. Replaces the previous handler.
///
/// Runtime adapters are one line:
///
/// ```ignore
/// // tokio
/// deferral::set_cancel_handler(|orphan| drop(tokio::spawn(orphan.into_boxed())));
/// // a `static` reaper, no heap (drain it with `REAPER.run().await`)
/// static REAPER: deferral::Reaper<4> = deferral::Reaper::new();
/// deferral::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
/// ```
///
/// `scope_local` cleanup may borrow the caller's state, so it is never
/// handed over: a cancelled `scope_local` drops its unstarted async
/// cleanup (its sync cleanup runs, as always).
///
/// ```standalone_crate
/// deferral::set_cancel_handler(|orphan| drop(orphan)); // the default, spelled out
/// # deferral::clear_cancel_handler();
/// ```
pub fn set_cancel_handler(handler: fn(Orphan<'_>)) {
    // ORDERING: `Release` publishes the function pointer (code, not data:
    // nothing else to publish) to the `Acquire` in `hand_over`.
    HANDLER.store(handler as *mut (), Ordering::Release);
}

/// Removes the program's cancel handler: cancelled scopes drop their
/// unstarted async cleanup again.
///
/// ```
/// deferral::clear_cancel_handler();
/// ```
pub fn clear_cancel_handler() {
    // ORDERING: as in `set_cancel_handler`.
    HANDLER.store(core::ptr::null_mut(), Ordering::Release);
}

/// Hands `live` to the program's handler, or drops it.
///
/// # Safety
/// As [`Orphan::new`].
pub(crate) unsafe fn hand_over(live: Live) {
    // SAFETY: as the caller guarantees.
    let orphan = unsafe { Orphan::new(live) };
    // ORDERING: pairs with the `Release` in `set_cancel_handler`.
    let handler = HANDLER.load(Ordering::Acquire);
    if handler.is_null() {
        drop(orphan);
        return;
    }
    // SAFETY: only `set_cancel_handler` stores a non-null value: a
    // `fn(Orphan<'_>)`.
    let handler = unsafe { core::mem::transmute::<*mut (), fn(Orphan<'_>)>(handler) };
    handler(orphan);
}

const EMPTY: u32 = 0;
const FILLING: u32 = 1;
const READY: u32 = 2;
const RUNNING: u32 = 3;

#[repr(C, align(16))]
struct SlotBytes<const BYTES: usize>([MaybeUninit<u8>; BYTES]);

struct Slot<const BYTES: usize> {
    state: AtomicU32,
    /// A header (its vtable says how to poll and drop), then the payload.
    bytes: UnsafeCell<SlotBytes<BYTES>>,
}

/// A `static`, fixed-capacity home for cancelled scopes' async cleanup,
/// without a heap: up to `SLOTS` cleanups of up to `BYTES` bytes each
/// (header included, 16 bytes on 64-bit targets, 8 on 32-bit), run by a
/// task that awaits [`run`](Reaper::run).
///
/// Install it with [`set_cancel_handler`]; a cancelled scope then moves
/// each unstarted async cleanup into a free slot and wakes the task. When
/// no slot is free or big enough, the documented fallback: the cleanup is
/// dropped unpolled at once — its destructors run, exactly once — and
/// counted in [`missed`](Reaper::missed).
///
/// ```standalone_crate
/// # futures::executor::block_on(async {
/// use std::sync::atomic::{AtomicBool, Ordering};
/// static REAPER: deferral::Reaper<2> = deferral::Reaper::new();
/// static CLOSED: AtomicBool = AtomicBool::new(false);
/// deferral::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
///
/// let mut scope = Box::pin(deferral::scope(async |d| {
///     d.try_defer_async(async { CLOSED.store(true, Ordering::SeqCst) }).unwrap();
///     std::future::pending::<()>().await
/// }));
/// let _ = futures::poll!(scope.as_mut());
/// drop(scope); // cancelled: the cleanup moves into the reaper
/// assert_eq!(REAPER.pending(), 1);
///
/// let _ = futures::poll!(std::pin::pin!(REAPER.run())); // the reaper task
/// assert!(CLOSED.load(Ordering::SeqCst));
/// assert_eq!(REAPER.pending(), 0);
/// # deferral::clear_cancel_handler();
/// # });
/// ```
pub struct Reaper<const SLOTS: usize, const BYTES: usize = 64> {
    slots: [Slot<BYTES>; SLOTS],
    waker: AtomicWaker,
    missed: AtomicUsize,
}

// SAFETY: a slot's bytes are written only by the hand-over that claimed it
// (`FILLING`) and then used only by the reaper task (`READY`/`RUNNING`),
// with `Release`/`Acquire` between them; the cleanups are `Send + 'static`.
unsafe impl<const SLOTS: usize, const BYTES: usize> Sync for Reaper<SLOTS, BYTES> {}
// SAFETY: as above.
unsafe impl<const SLOTS: usize, const BYTES: usize> Send for Reaper<SLOTS, BYTES> {}

impl<const SLOTS: usize, const BYTES: usize> fmt::Debug for Reaper<SLOTS, BYTES> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaper")
            .field("pending", &self.pending())
            .field("missed", &self.missed())
            .finish_non_exhaustive()
    }
}

impl<const BYTES: usize> Slot<BYTES> {
    // A `const` initialiser for the array in `Reaper::new`: each use is a
    // fresh slot, which is the point.
    #[cfg(not(loom))]
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Self = Slot {
        state: AtomicU32::new(EMPTY),
        bytes: UnsafeCell::new(SlotBytes([MaybeUninit::uninit(); BYTES])),
    };

    #[cfg(loom)]
    fn empty() -> Self {
        Slot {
            state: AtomicU32::new(EMPTY),
            bytes: UnsafeCell::new(SlotBytes([MaybeUninit::uninit(); BYTES])),
        }
    }

    /// Whether the payload of `vtable` fits after a header in a slot
    /// (computed on a 16-aligned stand-in address: no access to the slot).
    fn fits(vtable: &crate::slab::EntryVTable) -> bool {
        const AT: usize = 64; // any multiple of 16
        let header = core::ptr::without_provenance_mut::<Header>(AT);
        let payload = vtable.payload_at(header).addr() - AT;
        BYTES >= core::mem::size_of::<Header>()
            && payload
                .checked_add(vtable.layout().size())
                .is_some_and(|end| end <= BYTES)
    }
}

impl<const SLOTS: usize, const BYTES: usize> Default for Reaper<SLOTS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SLOTS: usize, const BYTES: usize> Reaper<SLOTS, BYTES> {
    /// An empty reaper, for a `static`.
    ///
    /// ```
    /// static REAPER: deferral::Reaper<4, 128> = deferral::Reaper::new();
    /// assert_eq!(REAPER.pending(), 0);
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Reaper {
            slots: [Slot::EMPTY; SLOTS],
            waker: AtomicWaker::new(),
            missed: AtomicUsize::new(0),
        }
    }

    /// An empty reaper (loom's atomics cannot be made in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Reaper {
            slots: core::array::from_fn(|_| Slot::empty()),
            waker: AtomicWaker::new(),
            missed: AtomicUsize::new(0),
        }
    }

    /// Takes a cancelled scope's cleanup: moves it into a free slot and
    /// wakes the task running [`run`](Self::run). With no slot free (or
    /// none big enough) it is dropped unpolled at once and counted in
    /// [`missed`](Self::missed). Never blocks or spins: callable from an
    /// interrupt handler.
    ///
    /// ```standalone_crate
    /// static REAPER: deferral::Reaper<1> = deferral::Reaper::new();
    /// deferral::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
    /// # deferral::clear_cancel_handler();
    /// ```
    pub fn hand_over(&self, orphan: Orphan<'_>) {
        let vtable = orphan.live.vtable();
        let fits = Slot::<BYTES>::fits(vtable);
        for slot in self.slots.iter().filter(|_| fits) {
            // ORDERING: `Acquire` pairs with the reaper's `Release` of
            // `EMPTY`: its drop of the previous cleanup is done before we
            // write the bytes.
            if slot
                .state
                .compare_exchange(EMPTY, FILLING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // SAFETY: the slot is ours (`FILLING`) and fits the payload; the
            // orphan was never polled.
            slot.bytes
                .with_mut(|bytes| unsafe { orphan.move_to(bytes.cast::<Header>()) });
            // ORDERING: `Release` publishes the bytes to the reaper's
            // `Acquire` load of `READY`.
            slot.state.store(READY, Ordering::Release);
            self.waker.wake();
            return;
        }
        // The fallback: dropped unpolled, counted first (the destructor is
        // foreign code and may panic).
        // ORDERING: a statistic; nothing is published with it.
        self.missed.fetch_add(1, Ordering::Relaxed);
        drop(orphan);
    }

    /// How many handed-over cleanups have not finished yet.
    ///
    /// ```
    /// static REAPER: deferral::Reaper<1> = deferral::Reaper::new();
    /// assert_eq!(REAPER.pending(), 0);
    /// ```
    pub fn pending(&self) -> usize {
        self.slots
            .iter()
            // ORDERING: a snapshot for the caller; nothing is read after it.
            .filter(|slot| slot.state.load(Ordering::Relaxed) != EMPTY)
            .count()
    }

    /// How many cleanups were dropped unpolled because no slot was free or
    /// big enough (the fallback).
    ///
    /// ```
    /// static REAPER: deferral::Reaper<1> = deferral::Reaper::new();
    /// assert_eq!(REAPER.missed(), 0);
    /// ```
    pub fn missed(&self) -> usize {
        // ORDERING: a statistic.
        self.missed.load(Ordering::Relaxed)
    }

    /// The reaper task: polls every handed-over cleanup to completion, for
    /// ever (it never resolves). Await it in one task, for example an
    /// Embassy task or a thread's `block_on`.
    ///
    /// ```
    /// static REAPER: deferral::Reaper<1> = deferral::Reaper::new();
    /// let task = REAPER.run(); // spawn this
    /// # drop(task);
    /// ```
    pub fn run(&self) -> Reap<'_, SLOTS, BYTES> {
        Reap { reaper: self }
    }

    /// Polls the cleanups; see [`Reap`].
    fn poll_slots(&self, cx: &mut Context<'_>) {
        // Register first, then look: a hand-over after the look wakes us.
        self.waker.register(cx.waker());
        for slot in &self.slots {
            // ORDERING: `Acquire` pairs with the hand-over's `Release` of
            // `READY`: the bytes are there.
            let state = slot.state.load(Ordering::Acquire);
            if state != READY && state != RUNNING {
                continue;
            }
            // Only this task moves a slot on from `READY`.
            // ORDERING: nobody else reads it meanwhile; `Relaxed`.
            slot.state.store(RUNNING, Ordering::Relaxed);
            /// Drops the cleanup and frees the slot when it finished or
            /// panicked.
            struct Finish<'a, const B: usize>(&'a Slot<B>);
            impl<const B: usize> Drop for Finish<'_, B> {
                fn drop(&mut self) {
                    struct Free<'a, const B: usize>(&'a Slot<B>);
                    impl<const B: usize> Drop for Free<'_, B> {
                        fn drop(&mut self) {
                            // ORDERING: `Release`: our drop of the cleanup
                            // happens before the next hand-over's writes.
                            self.0.state.store(EMPTY, Ordering::Release);
                        }
                    }
                    let _free = Free(self.0);
                    self.0.bytes.with_mut(|bytes| {
                        let header = bytes.cast::<Header>();
                        // SAFETY: a live payload (`RUNNING`), ours; the
                        // vtable was written by the hand-over.
                        unsafe { (*header).vtable_unchecked().drop_at(header) }
                    });
                }
            }
            let finish = Finish(slot);
            let poll = slot.bytes.with_mut(|bytes| {
                let header = bytes.cast::<Header>();
                // SAFETY: a live async payload (`READY`/`RUNNING`), pinned
                // in the slot (it never moves again), polled only by this
                // task.
                unsafe { (*header).vtable_unchecked().poll_alone(header, cx) }
            });
            if poll.is_pending() {
                core::mem::forget(finish);
            }
        }
    }
}

/// The future of [`Reaper::run`]: never resolves.
///
/// ```
/// static REAPER: deferral::Reaper<2> = deferral::Reaper::new();
/// let reap: deferral::Reap<'static, 2, 64> = REAPER.run();
/// let _ = futures::executor::block_on(futures::future::select(reap, std::future::ready(())));
/// ```
pub struct Reap<'a, const SLOTS: usize, const BYTES: usize> {
    reaper: &'a Reaper<SLOTS, BYTES>,
}

impl<const SLOTS: usize, const BYTES: usize> fmt::Debug for Reap<'_, SLOTS, BYTES> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reap").finish_non_exhaustive()
    }
}

impl<const SLOTS: usize, const BYTES: usize> Future for Reap<'_, SLOTS, BYTES> {
    type Output = core::convert::Infallible;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.reaper.poll_slots(cx);
        Poll::Pending
    }
}

#[cfg(all(loom, test, feature = "alloc"))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`: a
    //! cancelled scope's hand-over to the reaper on one thread against the
    //! reaper task on another.
    extern crate std;
    use super::{Orphan, Reaper};
    use crate::slab::{Header, Live, vtable_of};
    use crate::thunk::AsyncThunk;
    use core::ptr::NonNull;
    use core::task::{Context, Poll, Waker};
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// Counts its run and its drop.
    struct Probe {
        ran: Arc<AtomicUsize>,
        dropped: Arc<AtomicUsize>,
    }
    impl Future for Probe {
        type Output = ();
        fn poll(self: core::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            self.ran.fetch_add(1, SeqCst);
            Poll::Ready(())
        }
    }
    impl Drop for Probe {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, SeqCst);
        }
    }

    /// An orphan in a heap block of its own (as a scope's entry would be).
    fn orphan(
        ran: &Arc<AtomicUsize>,
        dropped: &Arc<AtomicUsize>,
    ) -> (Orphan<'static>, *mut u8, alloc::alloc::Layout) {
        let vtable = vtable_of::<(), AsyncThunk<Probe>>();
        let layout = alloc::alloc::Layout::from_size_align(256, 16).unwrap();
        // SAFETY: a fresh block, big and aligned enough for a header and
        // the payload.
        unsafe {
            let block = alloc::alloc::alloc(layout);
            let header = block.cast::<Header>();
            let payload = vtable.payload_at(header).cast::<AsyncThunk<Probe>>();
            payload.write(AsyncThunk(Probe {
                ran: ran.clone(),
                dropped: dropped.clone(),
            }));
            let live = Live::at(NonNull::new_unchecked(header), vtable);
            (Orphan::new(live), block, layout)
        }
    }

    #[test]
    fn hand_over_vs_reap() {
        loom::model(|| {
            let reaper: Arc<Reaper<1, 128>> = Arc::new(Reaper::new());
            let (ran, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let (orphan, block, layout) = orphan(&ran, &dropped);
            let block = block as usize;
            let r = reaper.clone();
            let producer = loom::thread::spawn(move || {
                r.hand_over(orphan);
                // SAFETY: the payload moved into the reaper (or was
                // dropped): the block is ours to free.
                unsafe { alloc::alloc::dealloc(block as *mut u8, layout) };
            });
            let mut cx = Context::from_waker(Waker::noop());
            let mut reap = core::pin::pin!(reaper.run());
            // Poll until the producer is done and nothing is pending.
            loop {
                let _ = reap.as_mut().poll(&mut cx);
                if ran.load(SeqCst) == 1 {
                    break;
                }
                loom::thread::yield_now();
            }
            producer.join().unwrap();
            assert_eq!(ran.load(SeqCst), 1, "ran once");
            assert_eq!(dropped.load(SeqCst), 1, "dropped once");
            assert_eq!(reaper.pending(), 0);
            assert_eq!(reaper.missed(), 0);
        });
    }
}
