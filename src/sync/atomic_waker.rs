//! `AtomicWaker`: one waker slot that one task registers into and any thread
//! (or interrupt handler) wakes, without locks.
//!
//! # How it works
//!
//! A small state word guards an `UnsafeCell<Option<Waker>>`:
//!
//! - `IDLE` (0): nobody is inside the cell;
//! - `REGISTERING` (1): the registering task is writing the cell;
//! - `WAKING` (2): a waker is taking the waker out of the cell.
//!
//! `register` moves `IDLE -> REGISTERING`, writes the cell, then moves
//! `REGISTERING -> IDLE`. If a wake arrived meanwhile (the state became
//! `REGISTERING | WAKING`), the wake could not take the waker, so `register`
//! takes and wakes it itself: a wake is never lost.
//!
//! `take`/`wake` set `WAKING` with one `fetch_or`. If the state was `IDLE` the
//! caller owns the cell, takes the waker and clears `WAKING`. Otherwise someone
//! else owns the cell and will deliver the wake-up (the registrant, above) or
//! is already delivering one (another waker): either way it returns `None`.
//! Neither side ever spins, so `wake` is safe in an interrupt handler that
//! pre-empted `register` on the same core.
//!
//! The usual protocol on top of it is "publish, then re-check": the producer
//! stores its result, then calls `wake`; the consumer calls `register`, then
//! re-reads the result. Both go through read-modify-writes of this one state
//! word, so one of them always sees the other (see the `ORDERING:` notes).
//!
//! Only one task may call `register` at a time (the owner of the future);
//! concurrent registrations are not supported: the second is ignored.

use core::fmt;
use core::task::Waker;

use super::{AtomicUsize, Ordering, UnsafeCell};

const IDLE: usize = 0;
const REGISTERING: usize = 0b01;
const WAKING: usize = 0b10;

/// A waker slot shared between the task that waits and the code that wakes it.
pub(crate) struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the cell is only accessed by whoever moved the state word out of
// `IDLE` (see the module docs), so accesses never overlap; `Waker` is
// `Send + Sync`.
unsafe impl Send for AtomicWaker {}
// SAFETY: as for `Send`.
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    /// An empty slot.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicUsize::new(IDLE),
            waker: UnsafeCell::new(None),
        }
    }

    /// An empty slot (`loom` atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicUsize::new(IDLE),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` (or keeps the stored one when it `will_wake` the same
    /// task), so that the next `wake` wakes it.
    pub(crate) fn register(&self, waker: &Waker) {
        // ORDERING: `Acquire` on success pairs with the `Release` that ended
        // the previous owner's access (a `take`'s `fetch_and` or a
        // `register`'s final exchange), so our cell access happens after
        // theirs. On failure we do not touch the cell.
        match self
            .state
            .compare_exchange(IDLE, REGISTERING, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {
                // SAFETY: the state is `REGISTERING` and only we set it, so
                // nobody else accesses the cell until we leave that state.
                let old = self.waker.with_mut(|slot| unsafe {
                    match &*slot {
                        Some(current) if current.will_wake(waker) => None,
                        _ => (*slot).replace(waker.clone()),
                    }
                });
                // ORDERING: `AcqRel` on success: `Release` publishes the cell
                // write to the next owner (its `Acquire`); on failure
                // `Acquire` is enough since we only read our own write.
                match self.state.compare_exchange(
                    REGISTERING,
                    IDLE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {}
                    Err(_) => {
                        // A `wake` arrived while we were writing (the state is
                        // `REGISTERING | WAKING`) and could not take the
                        // waker: deliver the wake-up ourselves.
                        // SAFETY: we still own the cell (the waker only set
                        // `WAKING` and left it to us).
                        let woken = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                        // ORDERING: `Release` publishes our cell access to
                        // the next owner; nothing is read here.
                        self.state.swap(IDLE, Ordering::AcqRel);
                        if let Some(w) = woken {
                            w.wake();
                        }
                    }
                }
                // Drop the replaced waker outside the critical section: its
                // drop runs foreign code.
                drop(old);
            }
            Err(WAKING) => {
                // A wake is running right now and will find the old waker (or
                // none): make sure the new task is woken too.
                waker.wake_by_ref();
            }
            Err(_) => {
                // Concurrent `register` calls: unsupported, ignored (the
                // other registration stands).
            }
        }
    }

    /// Removes and returns the stored waker, if this call could reach it.
    pub(crate) fn take(&self) -> Option<Waker> {
        // ORDERING: `AcqRel`: `Acquire` so that, if the state was `IDLE`, we
        // see the last registration's write of the cell; `Release` so that a
        // concurrent `register` that sees `WAKING` also sees every write this
        // thread made before (in particular the result the caller published
        // before waking).
        match self.state.fetch_or(WAKING, Ordering::AcqRel) {
            IDLE => {
                // SAFETY: we moved the state from `IDLE` to `WAKING`: we own
                // the cell until we clear `WAKING`.
                let waker = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                // ORDERING: `Release` ends our access to the cell for the next
                // owner's `Acquire`.
                self.state.fetch_and(!WAKING, Ordering::Release);
                waker
            }
            // Someone else owns the cell: a registration in progress (it will
            // see `WAKING` and wake its waker) or another wake.
            _ => None,
        }
    }

    /// Wakes the stored waker, if any (it is removed: a new `register` is
    /// needed for the next wake-up).
    pub(crate) fn wake(&self) {
        if let Some(waker) = self.take() {
            waker.wake();
        }
    }
}

impl fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicWaker").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom), feature = "std"))]
mod tests {
    use super::AtomicWaker;
    use alloc::sync::Arc;
    use alloc::task::Wake;
    use core::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use core::task::Waker;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn counted() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn wake_without_registration_is_a_no_op() {
        let slot = AtomicWaker::new();
        assert!(slot.take().is_none());
        slot.wake();
    }

    #[test]
    fn only_the_latest_waker_is_woken() {
        let slot = AtomicWaker::new();
        let (first, first_waker) = counted();
        let (second, second_waker) = counted();
        slot.register(&first_waker);
        slot.register(&second_waker);
        slot.wake();
        assert_eq!((first.0.load(SeqCst), second.0.load(SeqCst)), (0, 1));
        // The waker was consumed: a second wake needs a new registration.
        slot.wake();
        assert_eq!(second.0.load(SeqCst), 1);
    }

    #[test]
    fn re_registering_the_same_task_keeps_the_stored_waker() {
        let slot = AtomicWaker::new();
        let (count, waker) = counted();
        slot.register(&waker);
        // Three strong counts: `count`, `waker` and the stored clone.
        assert_eq!(Arc::strong_count(&count), 3);
        slot.register(&waker);
        assert_eq!(Arc::strong_count(&count), 3, "will_wake avoided a clone");
        slot.wake();
        assert_eq!(count.0.load(SeqCst), 1);
    }

    #[test]
    fn wake_from_another_thread_is_delivered() {
        let slot = Arc::new(AtomicWaker::new());
        let (count, waker) = counted();
        slot.register(&waker);
        let remote = slot.clone();
        std::thread::spawn(move || remote.wake()).join().unwrap();
        assert_eq!(count.0.load(SeqCst), 1);
    }
}
