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
//! `register` moves `IDLE -> REGISTERING`, looks at or writes the cell, then
//! moves `REGISTERING -> IDLE`. If a wake arrived meanwhile (the state became
//! `REGISTERING | WAKING`), the wake could not take the waker, so `register`
//! takes and wakes it itself: a wake is never lost.
//!
//! No foreign code runs while the state is `REGISTERING`: a waker's `clone`,
//! `wake` and `drop` may panic (or re-enter), so `register` first checks
//! `will_wake` (a pointer comparison) inside, then clones *outside*, enters
//! again to swap the clone in, and drops the replaced waker and wakes a
//! pending one only after the state is back to `IDLE`. Whatever panics, the
//! slot is left usable.
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

/// Proof that this thread moved the state to `REGISTERING` (see
/// [`AtomicWaker::enter`]).
struct Registering(());

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
    ///
    /// No foreign code runs while this call owns the cell: the waker is
    /// cloned, woken and the replaced one dropped only with the state back
    /// to `IDLE`, so a `clone`, `wake` or `drop` that panics leaves the slot
    /// usable (it was: a panicking clone left it `REGISTERING` for ever, and
    /// every later `register` and `wake` was ignored).
    pub(crate) fn register(&self, waker: &Waker) {
        // First look: is the stored waker already the right one? Comparing
        // (`will_wake`) runs no foreign code.
        let Some(owned) = self.enter() else {
            // A wake is running right now and will find the old waker (or
            // none): make sure the new task is woken too. (Or a concurrent
            // `register`: unsupported, this one is then a spurious wake.)
            waker.wake_by_ref();
            return;
        };
        // SAFETY: `enter` moved the state to `REGISTERING`: the cell is ours.
        let current = self
            .waker
            .with(|slot| unsafe { (*slot).as_ref().is_some_and(|w| w.will_wake(waker)) });
        if current {
            self.leave(owned);
            return;
        }
        self.leave(owned);

        // Clone outside the critical section: it may panic.
        let new = waker.clone();
        let Some(owned) = self.enter() else {
            new.wake();
            return;
        };
        // SAFETY: as above.
        let old = self.waker.with_mut(|slot| unsafe { (*slot).replace(new) });
        self.leave(owned);
        // Dropped with the state `IDLE`: its drop is foreign code.
        drop(old);
    }

    /// Moves `IDLE -> REGISTERING`; `None` if someone else owns the cell.
    fn enter(&self) -> Option<Registering> {
        // ORDERING: `Acquire` on success pairs with the `Release` that ended
        // the previous owner's access (a `take`'s `fetch_and` or a `leave`),
        // so our cell access happens after theirs. On failure we do not
        // touch the cell.
        self.state
            .compare_exchange(IDLE, REGISTERING, Ordering::Acquire, Ordering::Acquire)
            .ok()
            .map(|_| Registering(()))
    }

    /// Moves `REGISTERING -> IDLE`. If a wake arrived meanwhile (the state is
    /// `REGISTERING | WAKING`) it could not take the waker: take and wake it
    /// here, after the state is `IDLE` again.
    ///
    /// Out of line without `std`, as `take`: `register` calls it at three
    /// places, and each inlined copy of its read-modify-write loops cost
    /// Cortex-M3 firmware flash (issue 25's program: 116 bytes less).
    #[cfg_attr(not(feature = "std"), inline(never))]
    fn leave(&self, _owned: Registering) {
        // ORDERING: `AcqRel` on success: `Release` publishes the cell write
        // to the next owner (its `Acquire`); on failure `Acquire` is enough
        // since we only read our own write.
        if self
            .state
            .compare_exchange(REGISTERING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
        // SAFETY: we still own the cell (the waker only set `WAKING` and
        // left the delivery to us).
        let woken = self.waker.with_mut(|slot| unsafe { (*slot).take() });
        // ORDERING: `Release` publishes our cell access to the next owner;
        // `Acquire` for symmetry (nothing is read).
        self.state.swap(IDLE, Ordering::AcqRel);
        if let Some(w) = woken {
            w.wake();
        }
    }

    /// Removes and returns the stored waker, if this call could reach it.
    ///
    /// Out of line without `std` (firmware): its read-modify-write loops
    /// (LDREX/STREX on Cortex-M) are the largest part of every wake, and
    /// inlined into each caller they cost flash several times over.
    #[cfg_attr(not(feature = "std"), inline(never))]
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

#[cfg(all(test, not(loom), feature = "std"))]
mod hostile_tests {
    //! Wakers that panic in `clone`, `wake` or `drop` must not break the
    //! slot (finding 4 of the review of bf5d9a4: one panicking `clone` left
    //! the state `REGISTERING` and every later wake-up was lost).
    extern crate std;

    use super::AtomicWaker;
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use core::task::{RawWaker, RawWakerVTable, Waker};
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// A waker whose every `clone` panics, counting wakes.
    fn clone_panics(wakes: &'static AtomicUsize) -> Waker {
        fn clone(_: *const ()) -> RawWaker {
            panic!("clone panics")
        }
        fn wake(p: *const ()) {
            wake_by_ref(p)
        }
        fn wake_by_ref(p: *const ()) {
            // SAFETY: `p` is the `&'static AtomicUsize` below.
            unsafe { &*p.cast::<AtomicUsize>() }.fetch_add(1, SeqCst);
        }
        fn drop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop);
        // SAFETY: the vtable only uses `p` as a `&'static AtomicUsize`.
        unsafe { Waker::from_raw(RawWaker::new((wakes as *const AtomicUsize).cast(), &VTABLE)) }
    }

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl alloc::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn a_panicking_clone_does_not_lose_later_wake_ups() {
        static WAKES: AtomicUsize = AtomicUsize::new(0);
        let slot = AtomicWaker::new();
        let hostile = clone_panics(&WAKES);
        assert!(catch_unwind(AssertUnwindSafe(|| slot.register(&hostile))).is_err());
        // A well-behaved task registers next and must be woken.
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        slot.register(&waker);
        slot.wake();
        assert_eq!(count.0.load(SeqCst), 1, "the wake-up reached the new waker");
        slot.register(&waker);
        assert!(slot.take().is_some(), "the slot still hands out its waker");
    }

    #[test]
    fn a_panicking_drop_of_the_replaced_waker_leaves_the_slot_usable() {
        struct DropPanics;
        impl alloc::task::Wake for DropPanics {
            fn wake(self: Arc<Self>) {}
        }
        impl Drop for DropPanics {
            fn drop(&mut self) {
                panic!("drop panics");
            }
        }
        let slot = AtomicWaker::new();
        slot.register(&Waker::from(Arc::new(DropPanics)));
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        // Replacing the stored waker drops it: the panic escapes `register`,
        // but the new waker is in place.
        assert!(catch_unwind(AssertUnwindSafe(|| slot.register(&waker))).is_err());
        slot.wake();
        assert_eq!(count.0.load(SeqCst), 1);
    }

    #[test]
    fn a_panicking_wake_leaves_the_slot_usable() {
        struct WakePanics;
        impl alloc::task::Wake for WakePanics {
            fn wake(self: Arc<Self>) {
                panic!("wake panics");
            }
        }
        let slot = AtomicWaker::new();
        slot.register(&Waker::from(Arc::new(WakePanics)));
        assert!(catch_unwind(AssertUnwindSafe(|| slot.wake())).is_err());
        let count = Arc::new(Count::default());
        slot.register(&Waker::from(count.clone()));
        slot.wake();
        assert_eq!(count.0.load(SeqCst), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`: the
    //! register/wake handoff under every interleaving.
    use super::AtomicWaker;
    use alloc::sync::Arc as StdArc;
    use core::task::Waker;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    struct Flag(std::sync::atomic::AtomicUsize);
    impl alloc::task::Wake for Flag {
        fn wake(self: StdArc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    extern crate std;

    /// Publish-then-wake against register-then-recheck: the consumer either
    /// sees the value on its re-check or is woken.
    #[test]
    fn no_lost_wake_up() {
        loom::model(|| {
            let slot = Arc::new(AtomicWaker::new());
            let ready = Arc::new(AtomicBool::new(false));
            let (s, r) = (slot.clone(), ready.clone());
            let producer = loom::thread::spawn(move || {
                r.store(true, SeqCst);
                s.wake();
            });
            let flag = StdArc::new(Flag(Default::default()));
            let waker = Waker::from(flag.clone());
            slot.register(&waker);
            let seen = ready.load(SeqCst);
            producer.join().unwrap();
            let woken = flag.0.load(std::sync::atomic::Ordering::SeqCst);
            assert!(seen || woken == 1, "lost wake-up");
        });
    }

    /// Re-registering a different waker while a wake runs: the new waker
    /// is woken (directly or by the wake), the old one at most once.
    #[test]
    fn re_register_vs_wake() {
        loom::model(|| {
            let slot = Arc::new(AtomicWaker::new());
            let ready = Arc::new(AtomicUsize::new(0));
            let first = StdArc::new(Flag(Default::default()));
            slot.register(&Waker::from(first.clone()));
            let (s, r) = (slot.clone(), ready.clone());
            let producer = loom::thread::spawn(move || {
                r.store(1, SeqCst);
                s.wake();
            });
            let second = StdArc::new(Flag(Default::default()));
            slot.register(&Waker::from(second.clone()));
            let seen = ready.load(SeqCst) == 1;
            producer.join().unwrap();
            let (a, b) = (
                first.0.load(std::sync::atomic::Ordering::SeqCst),
                second.0.load(std::sync::atomic::Ordering::SeqCst),
            );
            assert!(a <= 1 && b <= 1);
            assert!(seen || b == 1, "the latest waker missed the wake-up");
        });
    }
}
