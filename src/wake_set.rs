//! Per-index wakers (`alloc`): a wake-up polls only the futures that were
//! woken. Used by concurrent cleanup (`cleanup::Indexed`) and by the task
//! queue.
//!
//! Each running future gets an index and a waker that sets its bit in a
//! shared bitset, then wakes the owner (the scope, the queue) through an
//! [`AtomicWaker`]. The wakers share one `Arc`: a waker's data pointer is
//! its index's anchor inside it (which points back at the `Arc`'d state),
//! so making or cloning one only counts a reference — no allocation per
//! index or per waker. The owner's poll first registers its waker, then takes
//! (swaps out) the set bits and polls exactly those futures — "publish, then
//! wake" against "register, then re-check", so no wake-up is lost. Nothing
//! here spins or locks: a future's waker may run in an interrupt handler that
//! pre-empted the owner's poll, or the other way round.
//!
//! The flags and the owner's waker are atomics of the [`crate::sync`] shim,
//! so `tests/loom_queue.rs` model-checks a slot waker on another thread
//! against the owner's `register` and `for_each_woken`. The `Arc` stays
//! `alloc`'s (its count is what the wakers' vtable manages).
//!
//! A panic in the owner's waker (its `clone` in `register`, its `wake` in a
//! slot waker, its `drop`) propagates to the caller; the flags are set or
//! taken before it runs, so none is lost but the panicking call's own.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::task::{RawWaker, RawWakerVTable, Waker};

use crate::sync::{AtomicUsize, AtomicWaker, Ordering};

const BITS: usize = usize::BITS as usize;

/// Everything the wakers share: one `Arc` allocation (and two boxed
/// slices), whatever the number of indices.
struct Shared {
    woken: Box<[AtomicUsize]>,
    /// The owner's latest waker.
    owner: AtomicWaker,
    /// Index `i`'s waker points at `anchors[i]`.
    anchors: Box<[Anchor]>,
}

/// What a waker's data pointer points at: its index, and the `Arc`'d
/// `Shared` that holds this anchor (and whose count the waker holds).
struct Anchor {
    /// `Arc::as_ptr` of the `Arc<Shared>` (taken before it was made, from
    /// its `Weak`: the same pointer).
    shared: *const Shared,
    index: usize,
}

// SAFETY: an anchor is only read (through `&`); its pointer is to an
// `Arc<Shared>`, which is `Send + Sync` (atomics and boxed slices of them).
unsafe impl Send for Anchor {}
// SAFETY: as for `Send`.
unsafe impl Sync for Anchor {}

impl Shared {
    fn wake(&self, index: usize) {
        // ORDERING: `AcqRel`: the bit is published before the `AtomicWaker`
        // read-modify-write in `wake`, which the owner's `register` (an RMW
        // of the same word) either follows — then the owner's later `swap`
        // sees the bit — or precedes, and then `wake` finds its new waker.
        self.woken[index / BITS].fetch_or(1 << (index % BITS), Ordering::AcqRel);
        // Foreign code (the owner's waker) runs last: the bit is set even
        // if it panics.
        self.owner.wake();
    }
}

/// The wakers' vtable: the data pointer is a `*const Anchor` inside a live
/// `Arc<Shared>` whose strong count the waker holds.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// # Safety
/// `data` is the data pointer of a live waker of this vtable.
unsafe fn anchor<'a>(data: *const ()) -> &'a Anchor {
    // SAFETY: the waker holds a count of the `Arc<Shared>` whose `anchors`
    // contain `data`: the anchor lives as long as the waker.
    unsafe { &*data.cast::<Anchor>() }
}

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: the caller passes a live waker's data.
    let shared = unsafe { anchor(data) }.shared;
    // SAFETY: `shared` is the pointer of a live `Arc<Shared>` (the cloned
    // waker holds a count); the new waker owns the new count.
    unsafe { Arc::increment_strong_count(shared) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: the caller passes the data of a waker it gives up.
    let anchor = unsafe { anchor(data) };
    let index = anchor.index;
    // SAFETY: this waker's count of the `Arc`, taken over: released when
    // `shared` is dropped — also if the owner's waker panics in `wake`
    // (a `drop` after the wake would then be skipped, leaking the flags).
    let shared = unsafe { Arc::from_raw(anchor.shared) };
    shared.wake(index);
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the caller passes a live waker's data.
    let anchor = unsafe { anchor(data) };
    // SAFETY: the waker holds a count: `Shared` is alive.
    unsafe { &*anchor.shared }.wake(anchor.index);
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: the caller passes the data of the waker being dropped. The
    // pointer is copied out first: dropping the last count frees the
    // anchor.
    let shared = unsafe { anchor(data) }.shared;
    // SAFETY: this waker owned one count of that `Arc`.
    unsafe { Arc::decrement_strong_count(shared) };
}

/// One wake flag per index `0..len`, and the owner's waker.
pub(crate) struct WakeBits {
    shared: Arc<Shared>,
}

impl WakeBits {
    /// `len` flags, all set when `woken` (every future must be polled once
    /// to start), else all clear. Three allocations, whatever `len`: the
    /// wakers made by [`Self::waker`] allocate nothing.
    pub(crate) fn new(len: usize, woken: bool) -> Self {
        let init = if woken { usize::MAX } else { 0 };
        WakeBits {
            shared: Arc::new_cyclic(|weak| Shared {
                woken: (0..len.div_ceil(BITS))
                    .map(|_| AtomicUsize::new(init))
                    .collect(),
                owner: AtomicWaker::new(),
                anchors: (0..len)
                    .map(|index| Anchor {
                        shared: weak.as_ptr(),
                        index,
                    })
                    .collect(),
            }),
        }
    }

    /// A waker that sets flag `index` (`< len`) and wakes the owner. It
    /// holds a count of the shared flags: no allocation.
    pub(crate) fn waker(&self, index: usize) -> Waker {
        let data: *const Anchor = &self.shared.anchors[index];
        // A count for the new waker (dropped by its `drop_waker`).
        core::mem::forget(self.shared.clone());
        // SAFETY: `data` points into the `Arc<Shared>` whose count the
        // waker now holds; the vtable treats it as exactly that.
        unsafe { Waker::from_raw(RawWaker::new(data.cast(), &VTABLE)) }
    }

    /// Registers the owner's waker: call before [`Self::for_each_woken`].
    pub(crate) fn register(&self, waker: &Waker) {
        self.shared.owner.register(waker);
    }

    /// Takes the set flags and calls `f` with each index, in increasing
    /// order, until `f` returns `false`: the flags not yet handed to `f`
    /// are then put back (the owner is expected to poll again). They are put
    /// back too if `f` panics, so a caught panic loses no wake-up but the
    /// panicking one's.
    pub(crate) fn for_each_woken(&self, mut f: impl FnMut(usize) -> bool) {
        /// Puts the untaken flags of one word back when dropped.
        struct Untaken<'a> {
            word: &'a AtomicUsize,
            bits: usize,
        }
        impl Drop for Untaken<'_> {
            fn drop(&mut self) {
                if self.bits != 0 {
                    // ORDERING: only the owner's own later `swap` reads these
                    // bits back; `Relaxed` suffices for that.
                    self.word.fetch_or(self.bits, Ordering::Relaxed);
                }
            }
        }
        for (w, word) in self.shared.woken.iter().enumerate() {
            let mut untaken = Untaken {
                word,
                // ORDERING: `AcqRel`, see `Shared::wake`.
                bits: word.swap(0, Ordering::AcqRel),
            };
            while untaken.bits != 0 {
                let index = w * BITS + untaken.bits.trailing_zeros() as usize;
                untaken.bits &= untaken.bits - 1;
                if !f(index) {
                    return; // `untaken` puts the rest back
                }
            }
        }
    }
}

impl Drop for WakeBits {
    fn drop(&mut self) {
        // Slot wakers may outlive the owner (stored by a timer, say): let
        // them keep only the bitset, not the owner's task alive.
        drop(self.shared.owner.take());
    }
}
