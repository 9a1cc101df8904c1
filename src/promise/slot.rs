//! The slot protocol: the shared state between a promise and a resolver that
//! left its executor, in a `static` [`PromiseCell`](crate::PromiseCell) or
//! behind an `Arc` (`DeferredPromise::detached`).
//!
//! # How it works
//!
//! A [`RawSlot`] is one `AtomicU32` state word ([`Word`]), an uninitialised
//! value slot and an [`AtomicWaker`]. The state word packs a generation
//! counter (upper 24 bits) and flags (lower 8 bits):
//!
//! | flag | set by | meaning |
//! |---|---|---|
//! | `RESERVED` | `reserve` (a new promise) | a promise of this generation exists |
//! | `LOCKED` | the resolver | it is writing the value slot |
//! | `OK` / `ERR` | the resolver | the slot holds `Ok` / `Err` (set with the unlock, in one CAS) |
//! | `ABANDONED` | the resolver's drop | dropped without settling |
//! | `CLOSED` | the promise's drop | nobody will read the slot any more |
//!
//! Lifecycle of one generation `g`: `(g, 0)` free → `(g, RESERVED)` →
//! the resolver settles (`LOCKED`, then `OK`/`ERR`) or abandons → the promise
//! takes the value → `(g + 1, 0)` free again. Whichever of promise and
//! resolver finishes *second* frees the cell: the promise after it took the
//! value (or saw abandonment), or when it is dropped and the resolver is
//! already done; the resolver when it finds `CLOSED`. Nobody ever waits for
//! the other side: every operation is lock-free (a compare-exchange retries
//! only when the other side changed the word meanwhile, and each side changes
//! it at most a bounded number of times per generation, so each loop ends), and
//! usable from an interrupt handler.
//!
//! # Why a stale resolver can never touch a newer generation
//!
//! The cell cannot move past generation `g` while an *unfinished* resolver of
//! `g` exists: freeing needs the resolver to have settled, abandoned, or seen
//! `CLOSED` (and then it frees the cell itself). A resolver records locally
//! that it finished (`Resolver`'s phase) and never touches the cell again
//! after that, so its later calls are refused without reading the state word
//! — whatever the generation counter says, at any reuse count. On top of
//! that every transition is a compare-exchange against the exact state its
//! maker expects, generation included (a free is never a plain store), and
//! the promise side checks its generation before touching the slot; these
//! checks cannot fail unless the protocol above is broken, and then they
//! refuse instead of clobbering.
//!
//! # Foreign code
//!
//! Dropping a value, and waking or dropping a waker, runs user code that may
//! panic. The state word is always consistent *before* any of it runs: a
//! value is read into a local, the cell is freed, then the local is dropped
//! ("move out, publish free, then drop"). The promise's registered waker is
//! taken out of the `AtomicWaker` before the cell is freed, so it never
//! outlives its generation (nor can a late party take the next generation's
//! waker). When the promise takes its value, that waker is dropped *before*
//! the value is read: if its destructor panics, the value is still in the
//! slot and the next poll takes it — the waiter still completes.
//!
//! Orderings: every transition that hands the value slot to the other side
//! is `Release` (the resolver's unlock that sets `OK`/`ERR`, the free that
//! ends the promise's read) and every transition that takes it is `Acquire`
//! (the resolver's `LOCKED` CAS, the promise's loads); see the `ORDERING:`
//! notes. A finished party's late wake can reach the next generation's
//! waker: that is a spurious wake-up, which futures tolerate.

use core::fmt;
use core::mem::MaybeUninit;
use core::task::{Context, Poll};

use super::error::{CellBusy, PromiseError, Refusal};
use super::state::{Progress, PromiseState};
use crate::sync::{AtomicU32, AtomicWaker, Ordering, UnsafeCell};

/// A value of the state word: generation and flags (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u32);

impl Word {
    const RESERVED: u32 = 1 << 0;
    const LOCKED: u32 = 1 << 1;
    const OK: u32 = 1 << 2;
    const ERR: u32 = 1 << 3;
    const ABANDONED: u32 = 1 << 4;
    const CLOSED: u32 = 1 << 5;
    const FLAGS: u32 = 0xff;
    const GEN_ONE: u32 = 1 << 8;
    /// The resolver is done: it settled or abandoned.
    const RESOLVER_DONE: u32 = Self::OK | Self::ERR | Self::ABANDONED;

    fn generation(self) -> u32 {
        self.0 & !Self::FLAGS
    }

    fn has(self, flags: u32) -> bool {
        self.0 & flags != 0
    }

    fn with(self, flags: u32) -> Word {
        Word(self.0 | flags)
    }

    fn without(self, flags: u32) -> Word {
        Word(self.0 & !flags)
    }

    fn is_free(self) -> bool {
        self.0 & Self::FLAGS == 0
    }

    /// The free state word of the generation after `generation`.
    fn next_free(generation: u32) -> Word {
        Word(generation.wrapping_add(Self::GEN_ONE))
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gen {}:", self.generation() >> 8)?;
        for (flag, name) in [
            (Self::RESERVED, "RESERVED"),
            (Self::LOCKED, "LOCKED"),
            (Self::OK, "OK"),
            (Self::ERR, "ERR"),
            (Self::ABANDONED, "ABANDONED"),
            (Self::CLOSED, "CLOSED"),
        ] {
            if self.has(flag) {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

/// What a refused [`RawSlot::settle`] hands back.
pub(crate) type Refused<T, E> = (Result<T, E>, Refusal);

/// How [`RawSlot::settle`] ended, for the resolver's own bookkeeping.
pub(crate) enum Settled<T, E> {
    /// Accepted: the caller must record that it finished, then call
    /// [`RawSlot::wake`].
    Accepted,
    /// Refused; the cell is untouched and the resolver still holds its
    /// generation (it must abandon or free it later).
    Refused(Refused<T, E>),
    /// Refused because the promise was dropped (before or while we wrote);
    /// the value is handed back and we freed the cell: the resolver is
    /// finished.
    ClosedAndFreed(Result<T, E>),
}

/// The shared state of one promise/resolver pair (see the module docs).
pub(crate) struct RawSlot<T, E> {
    state: AtomicU32,
    value: UnsafeCell<MaybeUninit<Result<T, E>>>,
    waker: AtomicWaker,
}

// SAFETY: the value slot is accessed by one side at a time (the protocol in
// the module docs); values of `T`/`E` move between threads, hence `Send`.
unsafe impl<T: Send, E: Send> Send for RawSlot<T, E> {}
// SAFETY: as for `Send`: shared access never touches the slot concurrently,
// and no `&T`/`&E` is ever handed out, so `T: Sync` is not needed.
unsafe impl<T: Send, E: Send> Sync for RawSlot<T, E> {}

impl<T, E> RawSlot<T, E> {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            waker: AtomicWaker::new(),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            waker: AtomicWaker::new(),
        }
    }

    fn load(&self, order: Ordering) -> Word {
        Word(self.state.load(order))
    }

    /// One compare-exchange of the state word.
    fn cas(&self, from: Word, to: Word, success: Ordering, failure: Ordering) -> Result<(), Word> {
        self.state
            .compare_exchange(from.0, to.0, success, failure)
            .map(drop)
            .map_err(Word)
    }

    /// Claims the slot for a new promise with a `Resolver`; returns its
    /// generation.
    pub(crate) fn reserve(&self) -> Result<u32, CellBusy> {
        self.reserve_with(Word::RESERVED)
    }

    fn reserve_with(&self, flags: u32) -> Result<u32, CellBusy> {
        // ORDERING: `Acquire` (load and CAS) pairs with the `Release` of the
        // free that ended the previous generation, so the previous owner's
        // slot accesses happen before ours.
        let state = self.load(Ordering::Acquire);
        if !state.is_free() {
            return Err(CellBusy);
        }
        match self.cas(
            state,
            state.with(flags),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(()) => Ok(state.generation()),
            Err(_) => Err(CellBusy),
        }
    }

    /// Ends a generation whose state word is exactly `expected`: the cell is
    /// free for the next promise. Only the party that finishes second calls
    /// this, so nobody else can change the word meanwhile; if somebody did,
    /// the protocol is broken and the cell is left busy rather than freed
    /// under them.
    fn free(&self, expected: Word) {
        // ORDERING: `Release` publishes our last slot access (a read or a
        // drop of the value) to the next reserver's `Acquire`.
        let freed = self.cas(
            expected,
            Word::next_free(expected.generation()),
            Ordering::Release,
            Ordering::Relaxed,
        );
        debug_assert!(
            freed.is_ok(),
            "deferral: cell changed under its last owner: {freed:?}"
        );
    }

    /// The resolver's settlement (the caller is a resolver of `generation`
    /// that has not finished).
    pub(crate) fn settle(&self, generation: u32, outcome: Result<T, E>) -> Settled<T, E> {
        // ORDERING: `Acquire` on the load and the CAS: taking `LOCKED` gives
        // us the slot, which must happen after the previous generation's
        // last access (published by `free`'s `Release`).
        let mut state = self.load(Ordering::Acquire);
        let locked = loop {
            if state.generation() != generation || !state.has(Word::RESERVED) {
                // Cannot happen for an unfinished resolver (module docs).
                return Settled::Refused((outcome, Refusal::Stale));
            }
            if state.has(Word::RESOLVER_DONE | Word::LOCKED) {
                return Settled::Refused((outcome, Refusal::AlreadySettled));
            }
            if state.has(Word::CLOSED) {
                // The promise is gone and we are the last side: free the
                // cell now rather than at our drop.
                // ORDERING: `AcqRel`: `Acquire` pairs with the promise's
                // `CLOSED` (its last accesses happen before the next
                // generation's), `Release` publishes the free.
                match self.cas(
                    state,
                    Word::next_free(generation),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(()) => return Settled::ClosedAndFreed(outcome),
                    Err(actual) => {
                        state = actual;
                        continue;
                    }
                }
            }
            match self.cas(
                state,
                state.with(Word::LOCKED),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(()) => break state.with(Word::LOCKED),
                Err(actual) => state = actual,
            }
        };
        match self.write_and_unlock(locked, outcome) {
            Ok(()) => Settled::Accepted,
            Err(outcome) => Settled::ClosedAndFreed(outcome),
        }
    }

    /// Writes `outcome` into the slot we hold `LOCKED` (state word `locked`)
    /// and publishes it. `Err` hands the outcome back when the promise was
    /// dropped meanwhile: we were the last side and freed the cell.
    fn write_and_unlock(&self, locked: Word, outcome: Result<T, E>) -> Result<(), Result<T, E>> {
        let flag = if outcome.is_ok() { Word::OK } else { Word::ERR };
        // SAFETY: we hold `LOCKED` for our generation: nobody else touches
        // the slot, and it is empty (no `OK`/`ERR` was set).
        self.value
            .with_mut(|slot| unsafe { (*slot).write(outcome) });
        // Only `CLOSED` can have been added meanwhile (the promise's drop).
        // ORDERING: `AcqRel` on success: `Release` hands the written value to
        // the promise's `Acquire` load. On failure `Acquire` pairs with the
        // promise's `CLOSED` `fetch_or`, after which it no longer touches
        // the slot.
        match self.cas(
            locked,
            locked.without(Word::LOCKED).with(flag),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(()) => Ok(()),
            Err(closed) => {
                debug_assert_eq!(closed, locked.with(Word::CLOSED));
                // The promise was dropped while we wrote: take the value back
                // and, being the last side, free the cell.
                // SAFETY: we still hold `LOCKED`, the slot holds what we wrote.
                let outcome = self
                    .value
                    .with_mut(|slot| unsafe { (*slot).assume_init_read() });
                self.free(closed);
                Err(outcome)
            }
        }
    }

    /// Wakes the promise after an accepted settlement or an abandonment.
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// The resolver's drop without a settlement (the caller is a resolver of
    /// `generation` that has not finished). Returns whether to [`wake`]
    /// (Self::wake) the promise.
    #[must_use]
    pub(crate) fn abandon(&self, generation: u32) -> bool {
        // ORDERING: `Acquire` so that, if we free the cell after `CLOSED`,
        // the promise's last accesses happen before the next generation's.
        let mut state = self.load(Ordering::Acquire);
        loop {
            if state.generation() != generation
                || !state.has(Word::RESERVED)
                || state.has(Word::RESOLVER_DONE | Word::LOCKED)
            {
                // Cannot happen for an unfinished resolver (module docs).
                return false;
            }
            let closed = state.has(Word::CLOSED);
            let new = if closed {
                Word::next_free(generation)
            } else {
                state.with(Word::ABANDONED)
            };
            // ORDERING: `AcqRel`: `Release` publishes `ABANDONED` (or the
            // free) to the promise / next reserver, `Acquire` as above.
            match self.cas(state, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(()) => return !closed,
                Err(actual) => state = actual,
            }
        }
    }

    /// The settlement, if there is one; taking it frees the cell.
    pub(crate) fn try_take(&self, generation: u32) -> Option<Result<T, PromiseError<E>>> {
        // ORDERING: `Acquire` pairs with the resolver's `Release` that set
        // `OK`/`ERR`/`ABANDONED`, so its write of the slot is visible.
        let state = self.load(Ordering::Acquire);
        if state.generation() != generation {
            // Cannot happen (module docs); a literal message keeps `core::fmt`
            // out of firmware builds.
            panic!("deferral: a cell promise outlived its generation");
        }
        if !state.has(Word::RESOLVER_DONE) {
            return None;
        }
        // Our registration must not outlive the generation. Its drop is
        // foreign code and may panic: it runs while the state is final for
        // the resolver (done) and untouched for us (the value still in the
        // slot), so a panic here only means the next poll takes the value.
        drop(self.waker.take());
        let outcome = if state.has(Word::OK | Word::ERR) {
            // SAFETY: `OK`/`ERR` means the resolver wrote the slot and left
            // it to us; the cell is freed (below) only after this read, so
            // nobody writes it meanwhile.
            let value = self
                .value
                .with_mut(|slot| unsafe { (*slot).assume_init_read() });
            value.map_err(PromiseError::Rejected)
        } else {
            Err(PromiseError::Abandoned)
        };
        // No foreign code between the read and the free.
        self.free(state);
        Some(outcome)
    }

    /// The promise's poll: publish the waker, then re-check.
    pub(crate) fn poll(
        &self,
        generation: u32,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, PromiseError<E>>> {
        if let Some(outcome) = self.try_take(generation) {
            return Poll::Ready(outcome);
        }
        self.waker.register(cx.waker());
        match self.try_take(generation) {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        }
    }

    /// The promise's drop before it took a settlement.
    pub(crate) fn close(&self, generation: u32) {
        // Out before `CLOSED`: once it is set, a live resolver may free the
        // cell and a new pair register its waker here at any moment.
        let waker = self.waker.take();
        // ORDERING: `AcqRel`: `Acquire` so that a value the resolver wrote
        // (its `Release`) is visible before we read it; `Release` so that a
        // resolver seeing `CLOSED` sees our last accesses before it frees.
        let state = Word(self.state.fetch_or(Word::CLOSED, Ordering::AcqRel));
        if state.generation() != generation {
            // Cannot happen (module docs); touch nothing of a newer pair's.
            debug_assert!(false, "deferral: a cell promise outlived its generation");
            return;
        }
        let value = if state.has(Word::OK | Word::ERR) {
            // SAFETY: the resolver settled and left: the slot is ours and
            // initialised; we free the cell after moving it out.
            let value = self
                .value
                .with_mut(|slot| unsafe { (*slot).assume_init_read() });
            self.free(state.with(Word::CLOSED));
            Some(value)
        } else {
            // A resolver that abandoned is done.
            if state.has(Word::ABANDONED) {
                self.free(state.with(Word::CLOSED));
            }
            // Otherwise a resolver is live (maybe writing): it sees
            // `CLOSED` and frees the cell itself.
            None
        };
        // Foreign code last, with the cell already consistent.
        drop(waker);
        drop(value);
    }

    /// An unstarted [`PromiseCell::lazy`] promise is dropped: no resolver
    /// was ever made, so the promise side is the only side.
    pub(crate) fn release_unstarted(&self, generation: u32) {
        self.free(Word(generation).with(Word::RESERVED));
    }

    /// What the promise of `generation` would find if polled now.
    pub(crate) fn peek(&self, generation: u32, unstarted: bool) -> PromiseState {
        // ORDERING: a snapshot for reporting only; `Acquire` for symmetry
        // with `try_take` (nothing is read from the slot).
        let state = self.load(Ordering::Acquire);
        if state.generation() != generation {
            // Only reachable for a promise that already took its value.
            return PromiseState::Pending(Progress::Started);
        }
        if state.has(Word::OK) {
            PromiseState::Fulfilled
        } else if state.has(Word::ERR | Word::ABANDONED) {
            PromiseState::Rejected
        } else if unstarted {
            PromiseState::Pending(Progress::Unstarted)
        } else {
            PromiseState::Pending(Progress::Started)
        }
    }

    pub(crate) fn is_free(&self) -> bool {
        // ORDERING: a snapshot for reporting only.
        self.load(Ordering::Acquire).is_free()
    }

    /// Whether the promise of `generation` is gone (a resolver's question).
    pub(crate) fn is_closed(&self, generation: u32) -> bool {
        // ORDERING: a snapshot for reporting only.
        let state = self.load(Ordering::Acquire);
        state.generation() != generation || state.has(Word::CLOSED)
    }
}

impl<T, E> Drop for RawSlot<T, E> {
    fn drop(&mut self) {
        // Unreachable through the public API (the promise takes or drops
        // the value before the slot can be dropped), kept as a backstop.
        // ORDERING: `&mut self`: no other thread can access the slot.
        let state = self.load(Ordering::Acquire);
        if state.has(Word::OK | Word::ERR) {
            // SAFETY: `OK`/`ERR` means the slot holds a value nobody took.
            self.value
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
    }
}

/// A promise's side of a shared [`RawSlot`], by reference (a
/// [`PromiseCell`]) or, with `alloc`, behind an `Arc`.
pub(crate) struct SlotFuture<P, T, E>
where
    P: core::ops::Deref<Target = RawSlot<T, E>>,
{
    slot: P,
    generation: u32,
    done: bool,
}

impl<P, T, E> SlotFuture<P, T, E>
where
    P: core::ops::Deref<Target = RawSlot<T, E>>,
{
    pub(crate) fn new(slot: P, generation: u32) -> Self {
        Self {
            slot,
            generation,
            done: false,
        }
    }

    pub(crate) fn poll_slot(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, PromiseError<E>>> {
        // The promise's wrapper never polls a finished future.
        debug_assert!(!self.done);
        let outcome = core::task::ready!(self.slot.poll(self.generation, cx));
        self.done = true;
        Poll::Ready(outcome)
    }

    /// `true` once the settlement was handed out.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The slot handle and the generation (to make this generation's
    /// resolver).
    pub(crate) fn parts(&self) -> (&P, u32) {
        (&self.slot, self.generation)
    }

    /// The promise is dropped before anyone made a resolver for its
    /// generation (an unstarted `PromiseCell::lazy`): free the cell now.
    pub(crate) fn release_unstarted(&mut self) {
        if !self.done {
            self.done = true;
            self.slot.release_unstarted(self.generation);
        }
    }

    /// The settlement if the resolver already left one (used after a
    /// caught panic, to keep a settlement made before it: JS semantics).
    #[cfg(feature = "std")]
    pub(crate) fn take_now(&mut self) -> Option<Result<T, PromiseError<E>>> {
        if self.done {
            return None;
        }
        let outcome = self.slot.try_take(self.generation)?;
        self.done = true;
        Some(outcome)
    }

    pub(crate) fn peek(&self, unstarted: bool) -> PromiseState {
        self.slot.peek(self.generation, unstarted)
    }
}

impl<P, T, E> Drop for SlotFuture<P, T, E>
where
    P: core::ops::Deref<Target = RawSlot<T, E>>,
{
    fn drop(&mut self) {
        if !self.done {
            self.slot.close(self.generation);
        }
    }
}
