//! Async cleanup that survives cancellation.
//!
//! A scope dropped before it finished — a `tokio::time::timeout`, a losing
//! `select!` branch, an aborted task — cannot await its async cleanup in
//! `Drop`. Its sync cleanup runs there; each async cleanup that would have
//! run (its [condition](crate::When) holds) and never started is an
//! [`Orphan`], handed over to the first of:
//!
//! 1. with the `tokio` feature, the current tokio runtime, if there is one
//!    (`Handle::try_current`): spawned as a [`BoxCleanup`], so the natural
//!    tokio program needs no setup at all;
//! 2. the program's handler, if one is set ([`set_cancel_handler`]): a
//!    runtime adapter, or a `static` [`Reaper`] that a firmware task drains;
//! 3. nobody: the cleanup is dropped unpolled — its destructors run, a
//!    [`guard_async_with`](crate::Defer::guard_async_with) fallback gets its
//!    value — and counted ([`dropped`]).
//!
//! A `scope_local`'s cleanup may borrow the caller's state, so it is never
//! handed over: it goes straight to 3. The orphan sees how the body ended
//! ([`Outcome`]); a scope dropped after its body returned keeps that
//! outcome, so a rollback chosen by `When::Err` still runs.
//!
//! # How the reaper works
//!
//! A [`Reaper<SLOTS, BYTES>`] is `SLOTS` slots of `BYTES` bytes, each with
//! a state word: `EMPTY → FILLING → READY → RUNNING → EMPTY` (with the
//! orphan's outcome in its high bits). A hand-over claims an `EMPTY` slot
//! with a compare-exchange, moves the cleanup's entry in (it was never
//! polled, so it may move; entries are position-independent, so one that
//! fits the slot's size and 16-byte alignment fits at its start), publishes
//! it `READY` with `Release` and wakes the reaper task. Only the task that
//! holds the reaper's *claim* polls slots: [`Reaper::run`]'s future takes
//! the claim (a compare-exchange on `running`) at its first poll and keeps
//! it until dropped; another one resolves to [`ReaperBusy`] at once. It
//! polls every `READY` or `RUNNING` slot in place, and when one finishes
//! (or panics) drops it and stores `EMPTY` with `Release`, after which
//! another hand-over may claim the slot.

use core::cell::Cell;
use core::fmt;
use core::mem::{ManuallyDrop, MaybeUninit};
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use crate::scope::entry::{Head, Live};
use crate::scope::exit::{ExitHead, Outcome};
use crate::sync::{AtomicBool, AtomicU32, AtomicUsize, AtomicWaker, Ordering, UnsafeCell};

/// Cleanup dropped unpolled, program-wide (see [`dropped`]). Through the
/// atomics shim (a read-modify-write needs `portable-atomic` on chips
/// without compare-and-swap); under loom a plain statistic.
#[cfg(not(loom))]
static DROPPED: crate::sync::AtomicUsize = crate::sync::AtomicUsize::new(0);
#[cfg(loom)]
static DROPPED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How many cancelled scopes' async cleanups were dropped unpolled because
/// nothing took them, in this program so far — never silent, never
/// printed: look here, at [`CutShort::dropped`](crate::scope::CutShort::dropped)
/// and at [`Reaper::missed`].
///
/// ```
/// use futures::FutureExt;
/// let before = deferral::cancel::dropped();
/// let mut scope = Box::pin(deferral::scope_local(async |d| {
///     d.defer_async(async {});
///     std::future::pending::<()>().await
/// }));
/// assert!(scope.as_mut().now_or_never().is_none());
/// drop(scope); // cancelled: its async cleanup cannot run anywhere
/// assert!(deferral::cancel::dropped() > before);
/// ```
pub fn dropped() -> usize {
    // ORDERING: a statistic; nothing is published with it.
    DROPPED.load(core::sync::atomic::Ordering::Relaxed)
}

fn count_dropped() {
    // ORDERING: a statistic.
    DROPPED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// A cancelled scope's async cleanup that never started, handed to the
/// program's cancel handler: run it somewhere ([`into_boxed`](Orphan::into_boxed),
/// [`Reaper::hand_over`]), or drop it (dropped unpolled, and counted).
///
/// ```standalone_crate
/// # #[cfg(feature = "alloc")]
/// # futures::executor::block_on(async {
/// use std::sync::Mutex;
/// static ORPHANS: Mutex<Vec<deferral::cancel::BoxCleanup>> = Mutex::new(Vec::new());
/// deferral::cancel::set_cancel_handler(|orphan| ORPHANS.lock().unwrap().push(orphan.into_boxed()));
/// let mut scope = Box::pin(deferral::scope(async |d| {
///     d.defer_async(async { println!("closed anyway") });
///     std::future::pending::<()>().await
/// }));
/// let _ = futures::poll!(scope.as_mut());
/// drop(scope); // cancelled: its async cleanup is handed over
/// let orphan = ORPHANS.lock().unwrap().pop().unwrap();
/// orphan.await; // prints "closed anyway"
/// # deferral::cancel::clear_cancel_handler();
/// # });
/// ```
pub struct Orphan<'a> {
    live: Live,
    outcome: Outcome,
    /// The scope's count of cleanup dropped unpolled.
    dropped: &'a Cell<usize>,
}

impl fmt::Debug for Orphan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orphan")
            .field("layout", &self.layout())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Orphan<'_> {
    /// The size and alignment of the cleanup's entry (what a [`Reaper`]
    /// slot must hold).
    ///
    /// ```standalone_crate
    /// deferral::cancel::set_cancel_handler(|orphan| {
    ///     let _ = orphan.layout().size();
    /// });
    /// # deferral::cancel::clear_cancel_handler();
    /// ```
    pub fn layout(&self) -> core::alloc::Layout {
        self.live.vtable.layout
    }

    /// How the scope's body ended, as the cleanup will see it.
    ///
    /// ```standalone_crate
    /// deferral::cancel::set_cancel_handler(|orphan| {
    ///     let _ = orphan.outcome();
    /// });
    /// # deferral::cancel::clear_cancel_handler();
    /// ```
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The cleanup as a future of its own (one heap block, `alloc`), to
    /// spawn on a runtime: `tokio::spawn(orphan.into_boxed())`.
    ///
    /// ```standalone_crate
    /// deferral::cancel::set_cancel_handler(|orphan| drop(orphan.into_boxed()));
    /// # deferral::cancel::clear_cancel_handler();
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn into_boxed(self) -> BoxCleanup {
        let this = ManuallyDrop::new(self);
        // SAFETY: a claimed, never-polled async entry of a `Sendable`
        // scope (`Send + 'static`), given up (`this` is not dropped).
        unsafe { BoxCleanup::new(this.live, this.outcome) }
    }
}

impl Drop for Orphan<'_> {
    fn drop(&mut self) {
        // Nobody took it: dropped unpolled, counted first (the destructor
        // is foreign code and may panic).
        self.dropped.set(self.dropped.get() + 1);
        count_dropped();
        // SAFETY: the payload is ours; dropped once, here.
        unsafe { self.live.drop_payload() }
    }
}

/// The program's cancel handler (null: none), a `fn(Orphan)` as a pointer.
static HANDLER: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Sets the program's cancel handler: every [`scope`](crate::scope())
/// dropped before it finished hands it each async cleanup that would have
/// run and never started (unless the current tokio runtime took it, with
/// the `tokio` feature). Replaces the previous handler.
///
/// ```ignore
/// // any runtime, with `alloc`
/// deferral::cancel::set_cancel_handler(|orphan| my_runtime::spawn(orphan.into_boxed()));
/// // a `static` reaper, no heap (drain it with `REAPER.run().await`)
/// static REAPER: deferral::cancel::Reaper<4, 128> = deferral::cancel::Reaper::new();
/// deferral::cancel::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
/// ```
///
/// ```standalone_crate
/// deferral::cancel::set_cancel_handler(|orphan| drop(orphan)); // the default, spelled out
/// # deferral::cancel::clear_cancel_handler();
/// ```
pub fn set_cancel_handler(handler: fn(Orphan<'_>)) {
    // ORDERING: `Release` publishes the function pointer (code, not data:
    // nothing else to publish) to the `Acquire` in `hand_over`.
    HANDLER.store(handler as *mut (), core::sync::atomic::Ordering::Release);
}

/// Removes the program's cancel handler.
///
/// ```
/// deferral::cancel::clear_cancel_handler();
/// ```
pub fn clear_cancel_handler() {
    // ORDERING: as in `set_cancel_handler`.
    HANDLER.store(core::ptr::null_mut(), core::sync::atomic::Ordering::Release);
}

/// Hands a `Sendable` scope's cleanup over (see the module docs); counts it
/// in `dropped` if nothing took it.
///
/// # Safety
/// `live` is a claimed, never-polled async entry of a `Sendable` scope
/// (`Send + 'static`), the caller's to give up.
pub(crate) unsafe fn hand_over(live: Live, outcome: Outcome, dropped: &Cell<usize>) {
    #[cfg(feature = "tokio")]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        // SAFETY: as the caller guarantees.
        drop(runtime.spawn(unsafe { BoxCleanup::new(live, outcome) }));
        return;
    }
    let orphan = Orphan {
        live,
        outcome,
        dropped,
    };
    // ORDERING: pairs with the `Release` in `set_cancel_handler`.
    let handler = HANDLER.load(core::sync::atomic::Ordering::Acquire);
    if handler.is_null() {
        drop(orphan);
        return;
    }
    // SAFETY: only `set_cancel_handler` stores a non-null value: a
    // `fn(Orphan<'_>)`.
    let handler = unsafe { core::mem::transmute::<*mut (), fn(Orphan<'_>)>(handler) };
    handler(orphan);
}

/// Drops a cleanup that cannot be handed over (it may borrow), counting it.
///
/// # Safety
/// `live` is a claimed async entry, the caller's to give up.
pub(crate) unsafe fn drop_unpolled(live: Live, dropped: &Cell<usize>) {
    drop(Orphan {
        live,
        outcome: Outcome::Cancelled,
        dropped,
    });
}

/// A cancelled scope's async cleanup as a future of its own, in one heap
/// block (`alloc`): spawn it or await it. It sees how the body ended; its
/// result (an error for an output nobody receives) is dropped. Dropped
/// before its first poll, it counts as dropped unpolled ([`dropped`]).
///
/// ```standalone_crate
/// use std::sync::Mutex;
/// use futures::FutureExt;
/// static TAKEN: Mutex<Option<deferral::cancel::BoxCleanup>> = Mutex::new(None);
/// deferral::cancel::set_cancel_handler(|orphan| *TAKEN.lock().unwrap() = Some(orphan.into_boxed()));
/// let mut scope = Box::pin(deferral::scope(async |d| {
///     d.defer_async(async { println!("goodbye") });
///     std::future::pending::<()>().await
/// }));
/// assert!(scope.as_mut().now_or_never().is_none());
/// drop(scope);
/// let cleanup = TAKEN.lock().unwrap().take().unwrap();
/// futures::executor::block_on(cleanup); // prints "goodbye"
/// # deferral::cancel::clear_cancel_handler();
/// ```
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct BoxCleanup {
    entry: crate::scope::entry::BoxedEntry,
    exit: ExitHead,
    polled: bool,
}

// SAFETY: only made from a `Sendable` scope's payloads (`Send + 'static`).
#[cfg(feature = "alloc")]
unsafe impl Send for BoxCleanup {}

#[cfg(feature = "alloc")]
impl BoxCleanup {
    /// # Safety
    /// As [`hand_over`].
    unsafe fn new(live: Live, outcome: Outcome) -> Self {
        BoxCleanup {
            // SAFETY: as the caller guarantees.
            entry: unsafe { crate::scope::entry::BoxedEntry::new(live) },
            exit: ExitHead::detached(outcome),
            polled: false,
        }
    }
}

#[cfg(feature = "alloc")]
impl fmt::Debug for BoxCleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxCleanup")
            .field("done", &self.entry.live().is_none())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "alloc")]
impl Future for BoxCleanup {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let live = this
            .entry
            .live()
            .expect("deferral: a `BoxCleanup` polled after completion");
        this.polled = true;
        // SAFETY: a live async payload, pinned in its heap block (which
        // never moves), ours; the exit is a detached head, ours for the
        // call.
        // Finished, it is gone and dropped.
        unsafe { live.poll(cx, NonNull::from(&mut this.exit)) }
    }
}

#[cfg(feature = "alloc")]
impl Drop for BoxCleanup {
    fn drop(&mut self) {
        if !self.polled && self.entry.live().is_some() {
            count_dropped();
        }
    }
}

const EMPTY: u32 = 0;
const FILLING: u32 = 1;
const READY: u32 = 2;
const RUNNING: u32 = 3;
const STATE: u32 = 0b11;
const OUTCOME_SHIFT: u32 = 8;

#[repr(C, align(16))]
struct SlotBytes<const BYTES: usize>([MaybeUninit<u8>; BYTES]);

struct Slot<const BYTES: usize> {
    /// `EMPTY`/`FILLING`/`READY`/`RUNNING`, and the outcome above.
    state: AtomicU32,
    /// An entry: a head (its vtable says how to poll and drop), then the
    /// payload.
    bytes: UnsafeCell<SlotBytes<BYTES>>,
}

/// A `static`, fixed-capacity home for cancelled scopes' async cleanup,
/// without a heap: up to `SLOTS` cleanups whose entries (a two-word head
/// plus the cleanup) fit `BYTES` bytes, run by the one task that awaits
/// [`run`](Reaper::run).
///
/// Install it with [`set_cancel_handler`]; a cancelled scope then moves
/// each unstarted async cleanup into a free slot and wakes the task. When
/// no slot is free or big enough: dropped unpolled at once, and counted
/// in [`missed`](Reaper::missed).
///
/// ```standalone_crate
/// # futures::executor::block_on(async {
/// use std::sync::atomic::{AtomicBool, Ordering};
/// static REAPER: deferral::cancel::Reaper<2> = deferral::cancel::Reaper::new();
/// static CLOSED: AtomicBool = AtomicBool::new(false);
/// deferral::cancel::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
///
/// let mut scope = Box::pin(deferral::scope(async |d| {
///     d.defer_async(async { CLOSED.store(true, Ordering::SeqCst) });
///     std::future::pending::<()>().await
/// }));
/// let _ = futures::poll!(scope.as_mut());
/// drop(scope); // cancelled: the cleanup moves into the reaper
/// assert_eq!(REAPER.pending(), 1);
///
/// let _ = futures::poll!(std::pin::pin!(REAPER.run())); // the reaper task
/// assert!(CLOSED.load(Ordering::SeqCst));
/// assert_eq!(REAPER.pending(), 0);
/// # deferral::cancel::clear_cancel_handler();
/// # });
/// ```
pub struct Reaper<const SLOTS: usize, const BYTES: usize = 64> {
    slots: [Slot<BYTES>; SLOTS],
    waker: AtomicWaker,
    missed: AtomicUsize,
    /// A task's `Reap` polls the slots (see the module docs).
    running: AtomicBool,
}

// SAFETY: a slot's bytes are written only by the hand-over that claimed it
// (`FILLING`), then used only by the task holding the claim
// (`READY`/`RUNNING`), with `Release`/`Acquire` between them; the cleanups
// are `Send + 'static`.
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

    /// Whether an entry of `layout` fits at the start of a slot (16-aligned).
    fn fits(layout: core::alloc::Layout) -> bool {
        layout.size() <= BYTES && layout.align() <= align_of::<SlotBytes<BYTES>>()
    }

    /// Calls `f` with the slot's entry (inside the cell's access, so loom
    /// sees it).
    fn with_head<R>(&self, f: impl FnOnce(NonNull<Head>) -> R) -> R {
        self.bytes.with_mut(|bytes| {
            // SAFETY: an `UnsafeCell`'s pointer is never null.
            f(unsafe { NonNull::new_unchecked(bytes.cast::<Head>()) })
        })
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
    /// static REAPER: deferral::cancel::Reaper<4, 128> = deferral::cancel::Reaper::new();
    /// assert_eq!(REAPER.pending(), 0);
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Reaper {
            slots: [Slot::EMPTY; SLOTS],
            waker: AtomicWaker::new(),
            missed: AtomicUsize::new(0),
            running: AtomicBool::new(false),
        }
    }

    /// An empty reaper (loom's atomics cannot be made in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Reaper {
            slots: core::array::from_fn(|_| Slot::empty()),
            waker: AtomicWaker::new(),
            missed: AtomicUsize::new(0),
            running: AtomicBool::new(false),
        }
    }

    /// Takes a cancelled scope's cleanup: moves it into a free slot and
    /// wakes the task running [`run`](Self::run). With no slot free (or
    /// none big enough), it is dropped unpolled at once and counted in
    /// [`missed`](Self::missed). Never blocks or spins: callable from an
    /// interrupt handler.
    ///
    /// ```standalone_crate
    /// static REAPER: deferral::cancel::Reaper<1> = deferral::cancel::Reaper::new();
    /// deferral::cancel::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
    /// # deferral::cancel::clear_cancel_handler();
    /// ```
    pub fn hand_over(&self, orphan: Orphan<'_>) {
        let fits = Slot::<BYTES>::fits(orphan.layout());
        for slot in self.slots.iter().filter(|_| fits) {
            // ORDERING: `Acquire` pairs with the runner's `Release` of
            // `EMPTY`: its drop of the previous cleanup is done before we
            // write the bytes.
            if slot
                .state
                .compare_exchange(EMPTY, FILLING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let orphan = ManuallyDrop::new(orphan);
            // SAFETY: the slot is ours (`FILLING`) and fits the entry at its
            // start; the orphan was never polled, and is given up.
            slot.with_head(|head| unsafe { orphan.live.move_to(head) });
            let outcome = (orphan.outcome as u32) << OUTCOME_SHIFT;
            // ORDERING: `Release` publishes the bytes to the runner's
            // `Acquire` load of `READY`.
            slot.state.store(READY | outcome, Ordering::Release);
            self.waker.wake();
            return;
        }
        // ORDERING: a statistic; nothing is published with it.
        self.missed.fetch_add(1, Ordering::Relaxed);
        drop(orphan);
    }

    /// How many handed-over cleanups have not finished yet.
    ///
    /// ```
    /// static REAPER: deferral::cancel::Reaper<1> = deferral::cancel::Reaper::new();
    /// assert_eq!(REAPER.pending(), 0);
    /// ```
    pub fn pending(&self) -> usize {
        self.slots
            .iter()
            // ORDERING: a snapshot for the caller; nothing is read after it.
            .filter(|slot| slot.state.load(Ordering::Relaxed) & STATE != EMPTY)
            .count()
    }

    /// How many cleanups were dropped unpolled because no slot was free or
    /// big enough.
    ///
    /// ```
    /// static REAPER: deferral::cancel::Reaper<1> = deferral::cancel::Reaper::new();
    /// assert_eq!(REAPER.missed(), 0);
    /// ```
    pub fn missed(&self) -> usize {
        // ORDERING: a statistic.
        self.missed.load(Ordering::Relaxed)
    }

    /// The reaper task: polls every handed-over cleanup to completion, for
    /// ever. One task drives a reaper: while one `run()` future is alive
    /// and polled, another resolves to [`ReaperBusy`] at its first poll.
    ///
    /// ```
    /// static REAPER: deferral::cancel::Reaper<1> = deferral::cancel::Reaper::new();
    /// let task = REAPER.run(); // spawn this
    /// # drop(task);
    /// ```
    pub fn run(&self) -> Reap<'_, SLOTS, BYTES> {
        Reap {
            reaper: self,
            claimed: false,
        }
    }

    /// Polls the cleanups. Only the claim's holder calls this.
    fn poll_slots(&self, cx: &mut Context<'_>) {
        // Register first, then look: a hand-over after the look wakes us.
        self.waker.register(cx.waker());
        for slot in &self.slots {
            // ORDERING: `Acquire` pairs with the hand-over's `Release` of
            // `READY`: the bytes are there.
            let state = slot.state.load(Ordering::Acquire);
            if !matches!(state & STATE, READY | RUNNING) {
                continue;
            }
            // Only the claim's holder moves a slot on from `READY`.
            // ORDERING: nobody else reads it meanwhile; `Relaxed`.
            slot.state.store(state & !STATE | RUNNING, Ordering::Relaxed);
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
                    self.0.with_head(|head| {
                        if let Some(live) = crate::scope::entry::Erased(head).claim() {
                            // SAFETY: a live payload (`RUNNING`), ours.
                            unsafe { live.drop_payload() }
                        }
                    });
                }
            }
            let finish = Finish(slot);
            let outcome = state >> OUTCOME_SHIFT;
            let mut exit = ExitHead::detached(match outcome {
                0 => Outcome::Ok,
                1 => Outcome::Err,
                2 => Outcome::Panicked,
                _ => Outcome::Cancelled,
            });
            let poll = slot.with_head(|head| {
                let live = crate::scope::entry::Erased(head)
                    .live()
                    .expect("deferral: a reaper slot holds a live cleanup");
                // SAFETY: a live async payload (`READY`/`RUNNING`), pinned
                // in the slot (it never moves again), polled only by the
                // claim's holder; the exit is ours for the call.
                unsafe { live.poll(cx, NonNull::from(&mut exit)) }
            });
            if poll.is_pending() {
                core::mem::forget(finish);
            }
        }
    }
}

impl<const SLOTS: usize, const BYTES: usize> Drop for Reaper<SLOTS, BYTES> {
    fn drop(&mut self) {
        // A reaper that is not a `static` (a field, a thread-local) drops
        // what it still holds: unpolled or half-run, exactly once.
        drop_slots(&self.slots);
    }
}

/// Drops the cleanup each slot holds, exactly once. If one destructor
/// panics, the later slots are still dropped while it unwinds (a second
/// panic then aborts, as in `Vec`'s drop): nothing leaks.
fn drop_slots<const B: usize>(slots: &[Slot<B>]) {
    /// Drops the slots after a panicking one.
    struct Rest<'a, const B: usize>(&'a [Slot<B>]);
    impl<const B: usize> Drop for Rest<'_, B> {
        fn drop(&mut self) {
            drop_slots(self.0);
        }
    }
    for (index, slot) in slots.iter().enumerate() {
        // ORDERING: the reaper is being dropped (`&mut`): nobody else is
        // here.
        if slot.state.load(Ordering::Relaxed) & STATE == EMPTY {
            continue;
        }
        // Emptied and claimed before the destructor (foreign code) runs.
        // ORDERING: as above.
        slot.state.store(EMPTY, Ordering::Relaxed);
        let rest = Rest(&slots[index + 1..]);
        slot.with_head(|head| {
            if let Some(live) = crate::scope::entry::Erased(head).claim() {
                // SAFETY: a live payload, ours (we own the reaper); claimed,
                // so dropped once.
                unsafe { live.drop_payload() }
            }
        });
        core::mem::forget(rest);
    }
}

/// Another task drives this reaper: what a second [`Reaper::run`] resolves
/// to.
///
/// ```
/// # futures::executor::block_on(async {
/// static REAPER: deferral::cancel::Reaper<1> = deferral::cancel::Reaper::new();
/// let mut first = Box::pin(REAPER.run());
/// assert!(futures::poll!(first.as_mut()).is_pending()); // the runner
/// let err = REAPER.run().await.unwrap_err();
/// assert_eq!(err.to_string(), "another task runs this reaper");
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaperBusy;

impl fmt::Display for ReaperBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("another task runs this reaper")
    }
}

impl core::error::Error for ReaperBusy {}

/// The future of [`Reaper::run`]: runs for ever, or resolves to
/// [`ReaperBusy`] if another one runs the reaper.
///
/// ```
/// static REAPER: deferral::cancel::Reaper<2> = deferral::cancel::Reaper::new();
/// let reap: deferral::cancel::Reap<'static, 2, 64> = REAPER.run();
/// let _ = futures::executor::block_on(futures::future::select(reap, std::future::ready(())));
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Reap<'a, const SLOTS: usize, const BYTES: usize> {
    reaper: &'a Reaper<SLOTS, BYTES>,
    claimed: bool,
}

impl<const SLOTS: usize, const BYTES: usize> fmt::Debug for Reap<'_, SLOTS, BYTES> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reap")
            .field("claimed", &self.claimed)
            .finish_non_exhaustive()
    }
}

impl<const SLOTS: usize, const BYTES: usize> Future for Reap<'_, SLOTS, BYTES> {
    type Output = Result<core::convert::Infallible, ReaperBusy>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.claimed {
            // ORDERING: `Acquire` pairs with the previous holder's
            // `Release` in `drop`: its last slot writes happen before ours.
            if self
                .reaper
                .running
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return Poll::Ready(Err(ReaperBusy));
            }
            self.claimed = true;
        }
        self.reaper.poll_slots(cx);
        Poll::Pending
    }
}

impl<const SLOTS: usize, const BYTES: usize> Drop for Reap<'_, SLOTS, BYTES> {
    fn drop(&mut self) {
        if self.claimed {
            // ORDERING: `Release` publishes our slot writes to the next
            // holder's `Acquire`.
            self.reaper.running.store(false, Ordering::Release);
        }
    }
}

#[cfg(all(test, loom, feature = "alloc"))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`: the
    //! reaper's claim (issue 21, finding 1) and hand-over under every
    //! interleaving.
    extern crate std;

    use super::{Orphan, Reap, Reaper, ReaperBusy};
    use crate::scope::entry::{AsyncPayload, BoxedEntry, Erased, Payload, async_vtable};
    use crate::scope::exit::{ExitHead, Outcome};
    use core::cell::Cell;
    use core::pin::{Pin, pin};
    use core::ptr::NonNull;
    use core::task::{Context, Poll, Waker};
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// A cleanup that finishes at its first poll; counts its polls (and
    /// overlapping ones) and its drop.
    struct Probe {
        polls: Arc<AtomicUsize>,
        in_poll: Arc<AtomicUsize>,
        overlaps: Arc<AtomicUsize>,
        drops: Arc<AtomicUsize>,
    }

    impl Payload<()> for Probe {
        type Taken = ();
        const FLAGS: u8 = crate::scope::entry::PORTABLE;
        fn take(self) {}
    }

    impl AsyncPayload<()> for Probe {
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>, _: NonNull<ExitHead>) -> Poll<()> {
            if self.in_poll.fetch_add(1, SeqCst) != 0 {
                self.overlaps.fetch_add(1, SeqCst);
            }
            self.polls.fetch_add(1, SeqCst);
            self.in_poll.fetch_sub(1, SeqCst);
            Poll::Ready(())
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.drops.fetch_add(1, SeqCst);
        }
    }

    /// Polls a `Reap` once: `true` if it holds the claim.
    fn poll_reap(reap: Pin<&mut Reap<'_, 1, 128>>) -> bool {
        match reap.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Pending => true,
            Poll::Ready(Err(ReaperBusy)) => false,
            Poll::Ready(Ok(never)) => match never {},
        }
    }

    /// Two tasks poll a `Reap` of one reaper each while a third thread
    /// hands a cleanup over: at most one holds the claim at a time, the
    /// cleanup is never polled by two at once, and it runs exactly once
    /// (by one of them, or by a later runner) and is dropped once. Bounded
    /// to 3 preemptions unless `LOOM_MAX_PREEMPTIONS` says otherwise (6
    /// takes ~40 s); without the claim it fails at once ("two claim
    /// holders").
    #[test]
    fn two_runners_and_a_hand_over() {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(|| {
            let reaper: Arc<Reaper<1, 128>> = Arc::new(Reaper::new());
            let counts: [Arc<AtomicUsize>; 4] = core::array::from_fn(|_| Arc::new(AtomicUsize::new(0)));
            let [polls, in_poll, overlaps, drops] = counts.clone();
            let r = reaper.clone();
            let producer = loom::thread::spawn(move || {
                let probe = Probe {
                    polls,
                    in_poll,
                    overlaps,
                    drops,
                };
                let block = BoxedEntry::with(async_vtable::<(), Probe>(), probe);
                // Claimed, as a cancelled scope's driver claims an entry
                // before handing it over; the block is freed afterwards.
                let live = Erased(block.head()).claim().expect("live");
                let dropped = Cell::new(0);
                r.hand_over(Orphan {
                    live,
                    outcome: Outcome::Cancelled,
                    dropped: &dropped,
                });
                assert_eq!(dropped.get(), 0);
                drop(block);
            });
            let holders = Arc::new(AtomicUsize::new(0));
            let (r, h) = (reaper.clone(), holders.clone());
            let other = loom::thread::spawn(move || {
                let mut reap = pin!(r.run());
                if poll_reap(reap.as_mut()) {
                    assert_eq!(h.fetch_add(1, SeqCst), 0, "two claim holders");
                    let _ = poll_reap(reap.as_mut());
                    h.fetch_sub(1, SeqCst);
                }
            });
            {
                let mut reap = pin!(reaper.run());
                if poll_reap(reap.as_mut()) {
                    assert_eq!(holders.fetch_add(1, SeqCst), 0, "two claim holders");
                    let _ = poll_reap(reap.as_mut());
                    holders.fetch_sub(1, SeqCst);
                }
            }
            producer.join().unwrap();
            other.join().unwrap();
            let [polls, _, overlaps, drops] = &counts;
            assert!(polls.load(SeqCst) <= 1);
            // Both runners are gone: a later one finishes what is left.
            let mut reap = pin!(reaper.run());
            assert!(poll_reap(reap.as_mut()), "the claim was released");
            assert_eq!(polls.load(SeqCst), 1, "ran once");
            assert_eq!(drops.load(SeqCst), 1, "dropped once");
            assert_eq!(overlaps.load(SeqCst), 0, "polled by two at once");
            assert_eq!((reaper.pending(), reaper.missed()), (0, 0));
        });
    }
}
