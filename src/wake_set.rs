//! Per-thunk wakers for concurrent cleanup (`alloc`): a wake-up polls only
//! the thunks that were woken.
//!
//! Each running async thunk gets an index and a waker that sets its bit in a
//! shared bitset, then wakes the scope's latest waker. The scope's poll
//! first publishes its waker, then takes (swaps out) the set bits and polls
//! exactly those thunks: a wake that lands after the swap finds the new
//! waker, one that lands before is in the bits — no wake-up is lost.

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use core::task::{Context, Poll, Waker};

use crate::slab::Entry;

const BITS: usize = usize::BITS as usize;

struct Shared {
    woken: Vec<AtomicUsize>,
    /// Guards `waker`. The scope spins on it (briefly: wakers never block
    /// on it); a waker only `try`s it, so a waker running in an interrupt
    /// cannot deadlock against the scope it interrupted.
    lock: AtomicBool,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: `waker` is only accessed by whoever holds `lock`; everything else
// is atomic.
unsafe impl Sync for Shared {}
// SAFETY: as above; `Waker` is `Send`.
unsafe impl Send for Shared {}

impl Shared {
    fn try_lock(&self) -> bool {
        // ORDERING: SeqCst, with the SeqCst bit updates, orders "set bit,
        // then find the lock taken" before "release the lock, then swap the
        // bits": a waker that cannot take the lock is seen by the scope's
        // scan that follows the unlock.
        self.lock
            .compare_exchange(false, true, SeqCst, SeqCst)
            .is_ok()
    }

    fn unlock(&self) {
        // ORDERING: see `try_lock`.
        self.lock.store(false, SeqCst);
    }
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
        // ORDERING: see `Shared::try_lock`.
        shared.woken[self.index / BITS].fetch_or(1 << (self.index % BITS), SeqCst);
        if shared.try_lock() {
            // SAFETY: we hold the lock.
            let waker = unsafe { (*shared.waker.get()).clone() };
            shared.unlock();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        // Else the scope holds the lock to publish a new waker, and scans
        // the bits after releasing it.
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
            lock: AtomicBool::new(false),
            waker: UnsafeCell::new(None),
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
        // Publish our waker first, then take the bits.
        while !self.shared.try_lock() {
            core::hint::spin_loop();
        }
        // SAFETY: we hold the lock.
        let slot = unsafe { &mut *self.shared.waker.get() };
        match slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        self.shared.unlock();

        for (w, word) in self.shared.woken.iter().enumerate() {
            // ORDERING: see `Shared::try_lock`.
            let mut bits = word.swap(0, SeqCst);
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
