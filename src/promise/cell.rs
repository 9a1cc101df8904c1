//! `PromiseCell`: the shared state between a promise and a resolver that left
//! its executor, with no heap (a `static`) or behind an `Arc`.
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
//! | `SIGNAL` | `reserve` (a [`PromiseCell::wait`] promise) | no `Resolver` exists: the cell itself settles this generation |
//!
//! Lifecycle of one generation `g`: `(g, 0)` free → `(g, RESERVED)` →
//! the resolver settles (`LOCKED`, then `OK`/`ERR`) or abandons → the promise
//! takes the value → `(g + 1, 0)` free again. Whichever of promise and
//! resolver finishes *second* frees the cell: the promise after it took the
//! value (or saw abandonment), or when it is dropped and the resolver is
//! already done; the resolver when it finds `CLOSED`. Nobody ever waits for
//! the other side, so every operation is wait-free apart from CAS retries,
//! and usable from an interrupt handler.
//!
//! # Signal-style generations (`wait`, `PromiseCell::resolve`)
//!
//! A generation reserved by [`PromiseCell::wait`] carries `SIGNAL`: no
//! resolver object exists, and whoever calls the cell's own `resolve` /
//! `reject` / `settle` acts as a resolver for the duration of that call
//! only: it takes `LOCKED`, writes the slot and unlocks with `OK`/`ERR`,
//! exactly as a resolver does. Outside such a call a `SIGNAL` generation's
//! resolver side counts as finished, so the promise's drop frees the cell at
//! once (a timed-out waiter leaves the cell reusable immediately) unless a
//! settlement holds `LOCKED`; then the settler finds `CLOSED` when it
//! unlocks, takes its value back and frees the cell, as a resolver does.
//! A settler that finds no `SIGNAL` generation (the cell is free, or its
//! promise has a `Resolver` of its own), or finds `CLOSED` (the waiter is
//! being dropped), is refused and keeps its value: it never waits and never
//! frees anything it did not lock. A [`Ticket`] names one generation, so a
//! settlement meant for a waiter that timed out is refused
//! ([`Refusal::Stale`]) instead of reaching the next one.
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
use core::future::Future;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::deferred::{DeferredPromise, Sealed, Source};
use super::error::{CellBusy, PromiseError, Refusal, SettleError};
use super::executor::{Driving, ExecutorReturn};
use super::resolver::Resolver;
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
    const SIGNAL: u32 = 1 << 6;
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
            (Self::SIGNAL, "SIGNAL"),
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

    /// Claims the slot for a [`PromiseCell::wait`] promise (no resolver).
    fn reserve_signal(&self) -> Result<u32, CellBusy> {
        self.reserve_with(Word::RESERVED | Word::SIGNAL)
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

    /// A signal-style settlement ([`PromiseCell::settle`]): settles the
    /// pending [`PromiseCell::wait`] promise, of generation `ticket` if one
    /// is given. Never waits: every obstacle is a refusal (module docs).
    fn settle_signal(
        &self,
        ticket: Option<u32>,
        outcome: Result<T, E>,
    ) -> Result<(), Refused<T, E>> {
        // ORDERING: `Acquire` on the load and the CAS, as in `settle`:
        // taking `LOCKED` gives us the slot after the previous generation's
        // last access.
        let mut state = self.load(Ordering::Acquire);
        let locked = loop {
            if ticket.is_some_and(|generation| generation != state.generation()) {
                return Err((outcome, Refusal::Stale));
            }
            if !state.has(Word::RESERVED) || !state.has(Word::SIGNAL) {
                return Err((outcome, Refusal::NoWaiter));
            }
            if state.has(Word::CLOSED) {
                // The waiter is being dropped; it frees the cell itself.
                return Err((outcome, Refusal::Closed));
            }
            if state.has(Word::RESOLVER_DONE | Word::LOCKED) {
                return Err((outcome, Refusal::AlreadySettled));
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
            Ok(()) => {
                // The state is final before the foreign code of the wake.
                self.wake();
                Ok(())
            }
            Err(outcome) => Err((outcome, Refusal::Closed)),
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
    fn try_take(&self, generation: u32) -> Option<Result<T, PromiseError<E>>> {
        // ORDERING: `Acquire` pairs with the resolver's `Release` that set
        // `OK`/`ERR`/`ABANDONED`, so its write of the slot is visible.
        let state = self.load(Ordering::Acquire);
        assert_eq!(
            state.generation(),
            generation,
            "deferral: a cell promise outlived its generation ({state:?})"
        );
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
            // A resolver that abandoned is done; a `SIGNAL` generation has
            // no resolver outside a settlement holding `LOCKED`.
            if state.has(Word::ABANDONED) || (state.has(Word::SIGNAL) && !state.has(Word::LOCKED)) {
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
    fn release_unstarted(&self, generation: u32) {
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

    fn is_free(&self) -> bool {
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

/// A reusable, `const`-constructible home for one promise/resolver pair at a
/// time: no heap, lock-free, the resolver may settle from another thread or an
/// interrupt handler.
///
/// [`promise`](PromiseCell::promise) hands out a promise and a resolver tagged
/// with the cell's current generation. Once both are done (the promise took
/// its settlement or was dropped; the resolver settled or was dropped) the
/// cell is free again and the generation moves on, so a resolver kept from an
/// earlier use is refused ([`Refusal::Stale`]) instead of settling the newer
/// promise. Asking for a promise while the cell is busy returns
/// [`CellBusy`].
///
/// The resolver's `resolve`, `reject` and drop never block and never spin
/// on the other side, so they are safe in an interrupt handler; the promise's
/// waker is woken from there (see the module docs of `promise::cell` for the
/// protocol).
///
/// ```
/// use deferral::{PromiseCell, PromiseError};
/// use futures::executor::block_on;
///
/// static DMA_DONE: PromiseCell<u32, &str> = PromiseCell::new();
///
/// let (promise, resolver) = DMA_DONE.promise().unwrap();
/// // In firmware the resolver goes to the interrupt handler; here a thread.
/// std::thread::spawn(move || resolver.resolve(512).unwrap());
/// assert_eq!(block_on(promise), Ok(512));
///
/// // The cell is reusable once its pair is done.
/// let (promise, resolver) = DMA_DONE.promise().unwrap();
/// resolver.reject("bus error").unwrap();
/// assert_eq!(block_on(promise), Err(PromiseError::Rejected("bus error")));
/// ```
pub struct PromiseCell<T, E> {
    raw: RawSlot<T, E>,
}

impl<T, E> PromiseCell<T, E> {
    /// An empty cell, usable in a `static`.
    ///
    /// ```
    /// static CELL: deferral::PromiseCell<u8, ()> = deferral::PromiseCell::new();
    /// assert!(CELL.is_free());
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            raw: RawSlot::new(),
        }
    }

    /// An empty cell (not `const` under `--cfg loom`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            raw: RawSlot::new(),
        }
    }

    /// A promise and its resolver, sharing this cell. The promise is
    /// `Pending(Unstarted)` until first polled (it may already be settled by
    /// then: the resolver is live from the start).
    ///
    /// Errors with [`CellBusy`] while a previous pair is not done.
    ///
    /// ```
    /// use deferral::PromiseCell;
    ///
    /// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    /// let (promise, resolver) = CELL.promise().unwrap();
    /// resolver.resolve(1).unwrap();
    /// assert_eq!(futures::executor::block_on(promise), Ok(1));
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn promise(
        &self,
    ) -> Result<
        (
            DeferredPromise<T, PromiseError<E>, CellPromise<'_, T, E>>,
            Resolver<'_, T, E>,
        ),
        CellBusy,
    > {
        let generation = self.raw.reserve()?;
        let promise = DeferredPromise::from_start(CellPromise {
            inner: SlotFuture::new(&self.raw, generation),
        });
        Ok((promise, Resolver::cell(&self.raw, generation)))
    }

    /// A lazy promise sharing this cell: `executor` receives the resolver at
    /// the promise's first poll, never before (and never, if the promise is
    /// dropped unpolled: the cell is then free again).
    ///
    /// The cell is claimed now, so [`CellBusy`] is reported at creation.
    ///
    /// ```
    /// use deferral::{Progress, PromiseCell, PromiseState};
    ///
    /// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    /// let promise = CELL
    ///     .lazy(|resolver| {
    ///         std::thread::spawn(move || resolver.resolve(9).unwrap());
    ///     })
    ///     .unwrap();
    /// assert_eq!(promise.state(), PromiseState::Pending(Progress::Unstarted));
    /// assert_eq!(futures::executor::block_on(promise), Ok(9));
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn lazy<'a, X, R>(
        &'a self,
        executor: X,
    ) -> Result<DeferredPromise<T, PromiseError<E>, CellRun<'a, T, E, X>>, CellBusy>
    where
        X: FnOnce(Resolver<'a, T, E>) -> R,
        R: ExecutorReturn<'a, T, E>,
    {
        let generation = self.raw.reserve()?;
        Ok(DeferredPromise::from_start(CellRun {
            slot: &self.raw,
            generation,
            executor: Some(executor),
        }))
    }

    /// A promise settled by the cell itself — [`resolve`](Self::resolve),
    /// [`reject`](Self::reject) or [`settle`](Self::settle) on the cell,
    /// from a task, a thread or an interrupt handler — with no [`Resolver`]
    /// to park anywhere: Embassy's `Signal::wait`, with a value and a typed
    /// refusal.
    ///
    /// The cell is claimed now ([`CellBusy`] while another promise of this
    /// cell is live). Dropping the promise — a timed-out wait, say — frees
    /// the cell at once: the next `wait` (or [`promise`](Self::promise))
    /// succeeds right away. Such a promise is never abandoned: it waits
    /// until the cell is settled or the promise is dropped.
    ///
    /// ```
    /// use deferral::PromiseCell;
    /// use futures::executor::block_on;
    ///
    /// static ADC: PromiseCell<u16, ()> = PromiseCell::new();
    ///
    /// let sample = ADC.wait().unwrap();
    /// // The interrupt handler: `ADC.resolve(read_data_register())`.
    /// std::thread::spawn(|| ADC.resolve(512).unwrap());
    /// assert_eq!(block_on(sample), Ok(512));
    ///
    /// // A wait that timed out (dropped) leaves the cell free at once.
    /// drop(ADC.wait().unwrap());
    /// assert!(ADC.is_free());
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn wait(
        &self,
    ) -> Result<DeferredPromise<T, PromiseError<E>, CellPromise<'_, T, E>>, CellBusy> {
        let generation = self.raw.reserve_signal()?;
        Ok(DeferredPromise::from_start(CellPromise {
            inner: SlotFuture::new(&self.raw, generation),
        }))
    }

    /// Fulfils the promise that [`wait`](Self::wait)s on this cell. Never
    /// blocks or spins: safe in an interrupt handler.
    ///
    /// Refused, with the value handed back, when nobody waits
    /// ([`Refusal::NoWaiter`]: the cell is free, or its promise came from
    /// [`promise`](Self::promise)/[`lazy`](Self::lazy) and has a
    /// [`Resolver`] of its own), when the waiter is being dropped
    /// ([`Refusal::Closed`]) or when it is already settled and has not
    /// taken the value yet ([`Refusal::AlreadySettled`]: the first
    /// settlement wins; unlike `Signal::signal` nothing is overwritten).
    ///
    /// ```
    /// use deferral::{PromiseCell, Refusal};
    ///
    /// static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    /// // Nobody waits: the value comes back.
    /// let refused = CELL.resolve(1).unwrap_err();
    /// assert_eq!((refused.reason(), refused.into_value()), (Refusal::NoWaiter, 1));
    ///
    /// let waiting = CELL.wait().unwrap();
    /// CELL.resolve(2).unwrap();
    /// assert_eq!(CELL.resolve(3).unwrap_err().reason(), Refusal::AlreadySettled);
    /// assert_eq!(futures::executor::block_on(waiting), Ok(2));
    /// ```
    pub fn resolve(&self, value: T) -> Result<(), SettleError<T>> {
        self.settle(Ok(value)).map_err(|refused| {
            refused.map(|outcome| match outcome {
                Ok(value) => value,
                Err(_) => unreachable!("a refusal hands back what it was given"),
            })
        })
    }

    /// Rejects the promise that [`wait`](Self::wait)s on this cell; refused
    /// as [`resolve`](Self::resolve) is.
    ///
    /// ```
    /// use deferral::{PromiseCell, PromiseError};
    ///
    /// static CELL: PromiseCell<u32, &str> = PromiseCell::new();
    /// let waiting = CELL.wait().unwrap();
    /// CELL.reject("overrun").unwrap();
    /// assert_eq!(futures::executor::block_on(waiting), Err(PromiseError::Rejected("overrun")));
    /// ```
    pub fn reject(&self, error: E) -> Result<(), SettleError<E>> {
        self.settle(Err(error)).map_err(|refused| {
            refused.map(|outcome| match outcome {
                Err(error) => error,
                Ok(_) => unreachable!("a refusal hands back what it was given"),
            })
        })
    }

    /// Settles the promise that [`wait`](Self::wait)s on this cell with
    /// `outcome`; refused as [`resolve`](Self::resolve) is.
    ///
    /// ```
    /// use deferral::PromiseCell;
    ///
    /// static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    /// let waiting = CELL.wait().unwrap();
    /// CELL.settle(Ok(5)).unwrap();
    /// assert_eq!(futures::executor::block_on(waiting), Ok(5));
    /// ```
    pub fn settle(&self, outcome: Result<T, E>) -> Result<(), SettleError<Result<T, E>>> {
        self.raw
            .settle_signal(None, outcome)
            .map_err(|(outcome, reason)| SettleError::new(outcome, reason))
    }

    /// Settles the [`wait`](Self::wait) promise that `ticket` was taken
    /// from, and no other: if that promise is gone (it timed out) and the
    /// cell moved on, the settlement is refused with [`Refusal::Stale`]
    /// instead of reaching the next waiter. Otherwise refused as
    /// [`resolve`](Self::resolve) is.
    ///
    /// ```
    /// use deferral::{PromiseCell, Refusal};
    ///
    /// static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    /// let first = CELL.wait().unwrap();
    /// let ticket = first.ticket().unwrap();
    /// drop(first); // timed out
    /// let second = CELL.wait().unwrap();
    /// let refused = CELL.settle_ticket(ticket, Ok(1)).unwrap_err();
    /// assert_eq!(refused.reason(), Refusal::Stale);
    /// let ticket = second.ticket().unwrap();
    /// CELL.settle_ticket(ticket, Ok(2)).unwrap();
    /// assert_eq!(futures::executor::block_on(second), Ok(2));
    /// ```
    pub fn settle_ticket(
        &self,
        ticket: Ticket,
        outcome: Result<T, E>,
    ) -> Result<(), SettleError<Result<T, E>>> {
        self.raw
            .settle_signal(Some(ticket.0), outcome)
            .map_err(|(outcome, reason)| SettleError::new(outcome, reason))
    }

    /// `true` when no promise or resolver of this cell is live.
    ///
    /// ```
    /// static CELL: deferral::PromiseCell<u8, ()> = deferral::PromiseCell::new();
    /// let pair = CELL.promise().unwrap();
    /// assert!(!CELL.is_free());
    /// drop(pair);
    /// assert!(CELL.is_free());
    /// ```
    pub fn is_free(&self) -> bool {
        self.raw.is_free()
    }
}

impl<T, E> Default for PromiseCell<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> fmt::Debug for PromiseCell<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromiseCell")
            .field("free", &self.is_free())
            .finish_non_exhaustive()
    }
}

/// Names one [`PromiseCell::wait`] promise (one generation of its cell), so
/// that [`PromiseCell::settle_ticket`] settles that promise or nobody.
///
/// A ticket is a plain number: copy it, or store it in an `AtomicU32` for an
/// interrupt handler ([`to_bits`](Ticket::to_bits) /
/// [`from_bits`](Ticket::from_bits)). A ticket of another cell, or a forged
/// one, can at worst settle the waiter that happens to hold that generation
/// — what a plain [`PromiseCell::settle`] does anyway.
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use deferral::promise::Ticket;
/// use deferral::PromiseCell;
///
/// static DONE: PromiseCell<u8, ()> = PromiseCell::new();
/// static TICKET: AtomicU32 = AtomicU32::new(0);
///
/// let waiting = DONE.wait().unwrap();
/// TICKET.store(waiting.ticket().unwrap().to_bits(), Ordering::Release);
/// // In the interrupt handler:
/// let ticket = Ticket::from_bits(TICKET.load(Ordering::Acquire));
/// DONE.settle_ticket(ticket, Ok(1)).unwrap();
/// assert_eq!(futures::executor::block_on(waiting), Ok(1));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u32);

impl Ticket {
    /// The ticket as a number (to store it in an atomic).
    ///
    /// ```
    /// # use deferral::promise::Ticket;
    /// let t = Ticket::from_bits(0x100);
    /// assert_eq!(t.to_bits(), 0x100);
    /// ```
    pub const fn to_bits(self) -> u32 {
        self.0
    }

    /// A ticket from [`to_bits`](Ticket::to_bits). Any number is safe: a
    /// wrong one is refused (or names whichever waiter holds it).
    ///
    /// ```
    /// # use deferral::promise::Ticket;
    /// assert_eq!(Ticket::from_bits(7).to_bits(), 7);
    /// ```
    pub const fn from_bits(bits: u32) -> Self {
        Ticket(bits)
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ticket").field(&Word(self.0)).finish()
    }
}

impl<'a, T, E> DeferredPromise<T, PromiseError<E>, CellPromise<'a, T, E>> {
    /// The [`Ticket`] of this promise if it came from
    /// [`PromiseCell::wait`] and has not finished; `None` for a
    /// [`PromiseCell::promise`] promise (settled by its [`Resolver`] only)
    /// and after it handed out its settlement.
    ///
    /// ```
    /// use deferral::PromiseCell;
    ///
    /// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    /// let waiting = CELL.wait().unwrap();
    /// assert!(waiting.ticket().is_some());
    /// drop(waiting);
    /// let (paired, _resolver) = CELL.promise().unwrap();
    /// assert!(paired.ticket().is_none());
    /// ```
    pub fn ticket(&self) -> Option<Ticket> {
        let inner = &self.source()?.inner;
        if inner.done {
            return None;
        }
        // ORDERING: a snapshot: the flag never changes within a generation.
        let state = inner.slot.load(Ordering::Relaxed);
        (state.generation() == inner.generation && state.has(Word::SIGNAL))
            .then_some(Ticket(inner.generation))
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
        assert!(!self.done, "`DeferredPromise` polled after completion");
        let outcome = core::task::ready!(self.slot.poll(self.generation, cx));
        self.done = true;
        Poll::Ready(outcome)
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

/// The source of a [`PromiseCell::promise`] promise, and the running state of
/// a [`PromiseCell::lazy`] one: the promise's side of the cell.
///
/// ```
/// use deferral::promise::CellPromise;
/// use deferral::{DeferredPromise, PromiseCell, PromiseError};
///
/// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
/// type Waiting = DeferredPromise<u8, PromiseError<()>, CellPromise<'static, u8, ()>>;
/// let (promise, resolver): (Waiting, _) = CELL.promise().unwrap();
/// resolver.resolve(3).unwrap();
/// assert_eq!(futures::executor::block_on(promise), Ok(3));
/// ```
pub struct CellPromise<'a, T, E> {
    inner: SlotFuture<&'a RawSlot<T, E>, T, E>,
}

impl<T, E> Future for CellPromise<'_, T, E> {
    type Output = Result<T, PromiseError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.poll_slot(cx)
    }
}

impl<T, E> Sealed for CellPromise<'_, T, E> {}

impl<T, E> Source<T, PromiseError<E>> for CellPromise<'_, T, E> {
    type Running = Self;
    type Context = ();

    fn start(self) -> Self {
        self
    }

    fn unstarted_state(&self) -> PromiseState {
        self.inner.peek(true)
    }

    fn running_state(running: &Self) -> PromiseState {
        running.inner.peek(false)
    }
}

impl<T, E> fmt::Debug for CellPromise<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CellPromise")
            .field("state", &self.inner.peek(false))
            .finish_non_exhaustive()
    }
}

/// The source of a [`PromiseCell::lazy`] promise: the executor, waiting for
/// the first poll, and the claimed cell.
///
/// ```
/// use deferral::PromiseCell;
///
/// static CELL: PromiseCell<u8, ()> = PromiseCell::new();
/// let promise = CELL.lazy(|r| r.resolve(1)).unwrap();
/// assert_eq!(futures::executor::block_on(promise), Ok(1));
/// ```
pub struct CellRun<'a, T, E, X> {
    slot: &'a RawSlot<T, E>,
    generation: u32,
    executor: Option<X>,
}

impl<T, E, X> Sealed for CellRun<'_, T, E, X> {}

impl<'a, T, E, X, R> Source<T, PromiseError<E>> for CellRun<'a, T, E, X>
where
    X: FnOnce(Resolver<'a, T, E>) -> R,
    R: ExecutorReturn<'a, T, E>,
{
    type Running = Driving<CellPromise<'a, T, E>, R::Drive>;
    type Context = crate::context::Captured;

    fn start(mut self) -> Self::Running {
        let executor = self.executor.take();
        let running = CellPromise {
            inner: SlotFuture::new(self.slot, self.generation),
        };
        // If the executor panics, `running` is dropped and closes the
        // generation; the resolver's drop (during unwinding) frees it. An
        // `Adopt` it returns is driven by the promise.
        let drive = executor
            .and_then(|executor| executor(Resolver::cell(self.slot, self.generation)).into_drive());
        Driving::new(running, drive)
    }

    fn running_state(running: &Self::Running) -> PromiseState {
        running.promise().inner.peek(false)
    }
}

impl<T, E, X> Drop for CellRun<'_, T, E, X> {
    fn drop(&mut self) {
        if self.executor.is_some() {
            // Dropped unstarted: no resolver was ever made, so the promise
            // side is the only side; free the cell directly.
            self.slot.release_unstarted(self.generation);
        }
    }
}

impl<T, E, X> fmt::Debug for CellRun<'_, T, E, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CellRun")
            .field("started", &self.executor.is_none())
            .finish_non_exhaustive()
    }
}
