//! Per-index wakers (`alloc`): a wake-up polls only the futures that were
//! woken. Used by concurrent cleanup (`cleanup::Indexed`) and by the task
//! queue.
//!
//! Each running future gets an index and a waker that sets its bit in a
//! shared bitset, then wakes the owner (the scope, the queue) through an
//! [`AtomicWaker`]. The owner's poll first registers its waker, then takes
//! (swaps out) the set bits and polls exactly those futures — "publish, then
//! wake" against "register, then re-check", so no wake-up is lost. Nothing
//! here spins or locks: a future's waker may run in an interrupt handler that
//! pre-empted the owner's poll, or the other way round.
//!
//! The flags and the owner's waker are atomics of the [`crate::sync`] shim,
//! so `tests/loom_queue.rs` model-checks a slot waker on another thread
//! against the owner's `register` and `for_each_woken`. The `Arc`s stay
//! `alloc`'s: a [`Waker`] is made from an `alloc::sync::Arc` only.
//!
//! A panic in the owner's waker (its `clone` in `register`, its `wake` in a
//! slot waker, its `drop`) propagates to the caller; the flags are set or
//! taken before it runs, so none is lost but the panicking call's own.

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::task::Waker;

use crate::sync::{AtomicUsize, AtomicWaker, Ordering};

const BITS: usize = usize::BITS as usize;

struct Shared {
    woken: Vec<AtomicUsize>,
    /// The owner's latest waker.
    owner: AtomicWaker,
}

struct SlotWaker {
    shared: Arc<Shared>,
    index: usize,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let shared = &self.shared;
        // ORDERING: `AcqRel`: the bit is published before the `AtomicWaker`
        // read-modify-write in `wake`, which the owner's `register` (an RMW
        // of the same word) either follows — then the owner's later `swap`
        // sees the bit — or precedes, and then `wake` finds its new waker.
        shared.woken[self.index / BITS].fetch_or(1 << (self.index % BITS), Ordering::AcqRel);
        // Foreign code (the owner's waker) runs last: the bit is set even
        // if it panics.
        shared.owner.wake();
    }
}

/// One wake flag per index `0..len`, and the owner's waker.
pub(crate) struct WakeBits {
    shared: Arc<Shared>,
}

impl WakeBits {
    /// `len` flags, all set when `woken` (every future must be polled once
    /// to start), else all clear.
    pub(crate) fn new(len: usize, woken: bool) -> Self {
        let init = if woken { usize::MAX } else { 0 };
        WakeBits {
            shared: Arc::new(Shared {
                woken: (0..len.div_ceil(BITS))
                    .map(|_| AtomicUsize::new(init))
                    .collect(),
                owner: AtomicWaker::new(),
            }),
        }
    }

    /// A waker that sets flag `index` and wakes the owner (allocates).
    pub(crate) fn waker(&self, index: usize) -> Waker {
        Waker::from(Arc::new(SlotWaker {
            shared: self.shared.clone(),
            index,
        }))
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
                // ORDERING: `AcqRel`, see `SlotWaker::wake_by_ref`.
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
