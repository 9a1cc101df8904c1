//! Per-thunk wakers for concurrent cleanup (`alloc`): a wake-up polls only
//! the thunks that were woken.
//!
//! Each running async thunk gets an index and a waker that sets its bit in a
//! shared bitset, then wakes the scope through an [`AtomicWaker`]. The
//! scope's poll first registers its waker, then takes (swaps out) the set
//! bits and polls exactly those thunks — "publish, then wake" against
//! "register, then re-check", so no wake-up is lost. Nothing here spins or
//! locks: a thunk's waker may run in an interrupt handler that pre-empted the
//! scope's poll, or the other way round.

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};

use crate::slab::Entry;
use crate::sync::AtomicWaker;

const BITS: usize = usize::BITS as usize;

struct Shared {
    woken: Vec<AtomicUsize>,
    /// The scope's latest waker.
    scope: AtomicWaker,
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
        // read-modify-write in `wake`, which the scope's `register` (an RMW
        // of the same word) either follows — then the scope's later `swap`
        // sees the bit — or precedes, and then `wake` finds its new waker.
        shared.woken[self.index / BITS].fetch_or(1 << (self.index % BITS), Ordering::AcqRel);
        shared.scope.wake();
    }
}

/// The running thunks of a concurrent cleanup, indexed, with their wakers.
pub(crate) struct WakeSet {
    shared: Arc<Shared>,
    /// `None` once finished.
    entries: Vec<Option<(Entry, Waker)>>,
    remaining: usize,
}

impl WakeSet {
    /// Indexes `running`; every thunk starts out woken (it must be polled
    /// once to start).
    pub(crate) fn new(running: impl Iterator<Item = Entry>) -> Self {
        let running: Vec<Entry> = running.collect();
        let words = running.len().div_ceil(BITS);
        let shared = Arc::new(Shared {
            woken: (0..words).map(|_| AtomicUsize::new(usize::MAX)).collect(),
            scope: AtomicWaker::new(),
        });
        let entries: Vec<_> = running
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let waker = Waker::from(Arc::new(SlotWaker {
                    shared: shared.clone(),
                    index,
                }));
                Some((entry, waker))
            })
            .collect();
        WakeSet {
            remaining: entries.len(),
            shared,
            entries,
        }
    }

    /// Polls the woken thunks with `poll`, which returns `Ready` when the
    /// thunk is finished (and no longer to be touched).
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut poll: impl FnMut(Entry, &mut Context<'_>) -> Poll<()>,
    ) -> Poll<()> {
        // Register first, then take the bits (see the module docs).
        self.shared.scope.register(cx.waker());

        for (w, word) in self.shared.woken.iter().enumerate() {
            // ORDERING: `AcqRel`, see `SlotWaker::wake_by_ref`.
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let index = w * BITS + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some(Some((entry, waker))) = self.entries.get(index) else {
                    continue; // padding bits, or already finished
                };
                let (entry, waker) = (*entry, waker.clone());
                if poll(entry, &mut Context::from_waker(&waker)).is_ready() {
                    self.entries[index] = None;
                    self.remaining -= 1;
                }
            }
        }
        if self.remaining == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for WakeSet {
    fn drop(&mut self) {
        // Thunk wakers may outlive the scope (stored by a timer, say): let
        // them keep only the bitset, not the scope's task alive.
        drop(self.shared.scope.take());
    }
}
