//! `SignalCell`: a `static`, heap-free signal for one waiting task, settled
//! from anywhere (a task, a thread, an interrupt handler) with no resolver:
//! a settlement made before anyone waits is kept, and a newer one replaces
//! an older one nobody took yet (latest wins, as embassy-sync's `Signal`).
//!
//! # How it works
//!
//! Two value slots and one `AtomicU32` state word:
//!
//! | bits | meaning |
//! |---|---|
//! | `0..=1`, `2..=3` | slot 0's and slot 1's status: `EMPTY`, `WRITING`, `FULL`, `READING` |
//! | `4` | `NEWER`: which `FULL` slot holds the newer settlement |
//! | `5` | `WAITER`: a [`SignalWait`] is live (one at a time) |
//!
//! A slot is touched only by the party that moved it to `WRITING` or
//! `READING` with a compare-exchange (`Acquire`), and handed back by the
//! read-modify-write that moves it on (`Release`).
//!
//! - **Settling** claims a slot — the `FULL` one nobody reads (its old
//!   settlement is replaced: latest wins), else an `EMPTY` one — writes it,
//!   then publishes `FULL` and `NEWER` in one compare-exchange, and wakes
//!   the waiter. The replaced settlement is dropped last, with the state
//!   consistent. Two slots let a settlement land while the waiter is in the
//!   middle of taking the other one (an interrupt that pre-empted it): the
//!   interrupt never waits. Only when *both* slots are held mid-write or
//!   mid-read — a settlement pre-empted by a second settlement while the
//!   waiter reads, say — is a settlement refused, with its value handed
//!   back ([`Refusal::Busy`]).
//! - **Taking** (the waiter's poll, [`SignalCell::try_take`]) claims every
//!   `FULL` slot at once (`READING`), moves the values out, empties the
//!   slots, then drops the older value if there were two (two settlements
//!   raced; the newer wins).
//! - **Waiting**: take; if nothing, register the waker in the
//!   `AtomicWaker`, then take again ("publish, then re-check"): a
//!   settlement published before the registration is found by the second
//!   take, one published after it wakes the registered waker.
//!
//! Every loop retries only when another party changed the word meanwhile,
//! and no party ever waits for another: lock-free, and safe in an
//! interrupt handler. Foreign code (`wake`, a waker's `clone`/`drop`, a
//! replaced value's `drop`) runs only after the state word is consistent,
//! and never between taking a value and handing it out: the waiter drops
//! its registered waker *before* it takes the value, so a panicking waker
//! destructor leaves the value in the cell for the next poll.

use core::fmt;
use core::future::Future;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;

use super::error::{CellBusy, Refusal, SettleError};
use crate::sync::{AtomicU32, AtomicWaker, Ordering, UnsafeCell};

const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const FULL: u32 = 2;
const READING: u32 = 3;
const NEWER: u32 = 1 << 4;
const WAITER: u32 = 1 << 5;

/// Slot `i`'s status in `state`.
#[inline(always)]
const fn status(state: u32, i: u32) -> u32 {
    (state >> (2 * i)) & 0b11
}

/// `state` with slot `i`'s status set to `to`.
#[inline(always)]
const fn with_status(state: u32, i: u32, to: u32) -> u32 {
    (state & !(0b11 << (2 * i))) | (to << (2 * i))
}

/// A `static`-friendly signal carrying a `Result<T, E>` from a settler (an
/// interrupt handler, a thread, a task) to one waiting task: no heap, no
/// lock, no resolver to park.
///
/// - [`resolve`](SignalCell::resolve) / [`reject`](SignalCell::reject) /
///   [`settle`](SignalCell::settle) store the settlement and wake the
///   waiter. Nobody waiting yet? It is kept for the next
///   [`wait`](SignalCell::wait). A settlement nobody took yet is replaced
///   (latest wins, like embassy-sync's `Signal::signal`).
/// - [`wait`](SignalCell::wait) returns a future resolving to the next
///   settlement — `Result<T, E>`, nothing else can happen — taking it out
///   of the cell. One waiter at a time ([`CellBusy`] for a second).
/// - [`try_take`](SignalCell::try_take), [`reset`](SignalCell::reset)
///   (drop a stale settlement before starting a new operation) and
///   [`is_signaled`](SignalCell::is_signaled).
///
/// ```
/// use deferral::promise::SignalCell;
/// use futures::executor::block_on;
///
/// static ADC: SignalCell<u16, &str> = SignalCell::new();
///
/// // The interrupt handler may fire before the task waits: the value is kept.
/// ADC.resolve(511).unwrap();
/// ADC.resolve(512).unwrap(); // latest wins
/// assert_eq!(block_on(ADC.wait().unwrap()), Ok(512));
///
/// // Or after: the waiting task is woken.
/// let sample = ADC.wait().unwrap();
/// std::thread::spawn(|| ADC.reject("overrun").unwrap());
/// assert_eq!(block_on(sample), Err("overrun"));
/// ```
pub struct SignalCell<T, E> {
    state: AtomicU32,
    slots: [UnsafeCell<MaybeUninit<Result<T, E>>>; 2],
    waker: AtomicWaker,
}

// SAFETY: a value slot is accessed only by the party that claimed it with a
// compare-exchange of the state word (module docs), one at a time; values
// move between threads (hence `Send`), and no reference to a value is ever
// handed out (so `T: Sync` is not needed).
unsafe impl<T: Send, E: Send> Sync for SignalCell<T, E> {}
// SAFETY: moving the cell moves its values.
unsafe impl<T: Send, E: Send> Send for SignalCell<T, E> {}

impl<T, E> SignalCell<T, E> {
    /// An empty signal, usable in a `static`.
    ///
    /// ```
    /// static DONE: deferral::promise::SignalCell<(), ()> = deferral::promise::SignalCell::new();
    /// assert!(!DONE.is_signaled());
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            state: AtomicU32::new(EMPTY),
            slots: [
                UnsafeCell::new(MaybeUninit::uninit()),
                UnsafeCell::new(MaybeUninit::uninit()),
            ],
            waker: AtomicWaker::new(),
        }
    }

    /// An empty signal (not `const` under `--cfg loom`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            state: AtomicU32::new(EMPTY),
            slots: [
                UnsafeCell::new(MaybeUninit::uninit()),
                UnsafeCell::new(MaybeUninit::uninit()),
            ],
            waker: AtomicWaker::new(),
        }
    }

    /// Stores `value` for the waiter (replacing a settlement nobody took)
    /// and wakes it. Never blocks or spins: safe in an interrupt handler.
    ///
    /// Refused, with the value handed back, only when both value slots are
    /// in use by other parties at this instant ([`Refusal::Busy`]; see
    /// the module docs of `promise::signal`).
    ///
    /// ```
    /// use deferral::promise::SignalCell;
    ///
    /// static CELL: SignalCell<u32, ()> = SignalCell::new();
    /// CELL.resolve(1).unwrap();
    /// assert_eq!(CELL.try_take(), Some(Ok(1)));
    /// ```
    pub fn resolve(&self, value: T) -> Result<(), SettleError<Result<T, E>>> {
        self.settle(Ok(value))
    }

    /// Stores `error` for the waiter; as [`resolve`](Self::resolve).
    ///
    /// ```
    /// use deferral::promise::SignalCell;
    ///
    /// static CELL: SignalCell<u32, &str> = SignalCell::new();
    /// let waiting = CELL.wait().unwrap();
    /// CELL.reject("overrun").unwrap();
    /// assert_eq!(futures::executor::block_on(waiting), Err("overrun"));
    /// ```
    pub fn reject(&self, error: E) -> Result<(), SettleError<Result<T, E>>> {
        self.settle(Err(error))
    }

    /// Stores `outcome` for the waiter; as [`resolve`](Self::resolve).
    ///
    /// ```
    /// use deferral::promise::SignalCell;
    ///
    /// static CELL: SignalCell<u32, ()> = SignalCell::new();
    /// CELL.settle(Ok(5)).unwrap();
    /// assert_eq!(futures::executor::block_on(CELL.wait().unwrap()), Ok(5));
    /// ```
    pub fn settle(&self, outcome: Result<T, E>) -> Result<(), SettleError<Result<T, E>>> {
        // ORDERING: `Acquire` on the load and the claiming CAS: the slot's
        // previous owner handed it back with a `Release` (a reader's empty,
        // a writer's publish), so its accesses happen before ours.
        let mut state = self.state.load(Ordering::Acquire);
        let (slot, replaced) = loop {
            let Some(slot) = Self::pick(state) else {
                return Err(SettleError::new(outcome, Refusal::Busy));
            };
            let claimed = with_status(state, slot, WRITING);
            match self
                .state
                .compare_exchange(state, claimed, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => break (slot, status(state, slot) == FULL),
                Err(actual) => state = actual,
            }
        };
        let cell = &self.slots[(slot & 1) as usize];
        // SAFETY: we moved the slot to `WRITING`: nobody else touches it
        // until we publish. A `FULL` slot holds a value (read out to be
        // dropped after publishing); an `EMPTY` one holds none.
        let old = cell.with_mut(|p| unsafe {
            let old = replaced.then(|| (*p).assume_init_read());
            (*p).write(outcome);
            old
        });
        // ORDERING: the publishing CAS is `AcqRel`: `Release` hands the
        // written value to the reader's `Acquire` claim. The load and the
        // failure are `Relaxed`: from them we only recompute our own
        // slot's bits and `NEWER`, reading nothing the word guards.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let published = (with_status(state, slot, FULL) & !NEWER) | (slot << 4);
            match self
                .state
                .compare_exchange(state, published, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        // Foreign code last: the wake, then the replaced value's drop.
        self.waker.wake();
        drop(old);
        Ok(())
    }

    /// The slot a settlement may claim in `state`: the `FULL` one (replace
    /// it; the older one if both are), else an `EMPTY` one.
    #[inline(always)]
    fn pick(state: u32) -> Option<u32> {
        let newer = (state & NEWER) >> 4;
        let older = newer ^ 1;
        if status(state, older) == FULL {
            return Some(older);
        }
        if status(state, newer) == FULL {
            return Some(newer);
        }
        (0..2).find(|&i| status(state, i) == EMPTY)
    }

    /// Takes the settlement, if one is stored, without waiting.
    ///
    /// ```
    /// use deferral::promise::SignalCell;
    ///
    /// static CELL: SignalCell<u8, ()> = SignalCell::new();
    /// assert_eq!(CELL.try_take(), None);
    /// CELL.resolve(3).unwrap();
    /// assert_eq!(CELL.try_take(), Some(Ok(3)));
    /// assert_eq!(CELL.try_take(), None);
    /// ```
    pub fn try_take(&self) -> Option<Result<T, E>> {
        // ORDERING: `Acquire` on the load and the claiming CAS pairs with
        // the writer's publishing `Release`: its value is visible.
        let mut state = self.state.load(Ordering::Acquire);
        let (full, newest) = loop {
            let full: u32 = (0..2)
                .filter(|&i| status(state, i) == FULL)
                .map(|i| 1 << i)
                .sum();
            if full == 0 {
                return None;
            }
            let mut claimed = state;
            for i in 0..2 {
                if full & (1 << i) != 0 {
                    claimed = with_status(claimed, i, READING);
                }
            }
            match self
                .state
                .compare_exchange(state, claimed, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    let newest = if full == 0b11 {
                        (state & NEWER) >> 4
                    } else {
                        full.trailing_zeros()
                    };
                    break (full, newest);
                }
                Err(actual) => state = actual,
            }
        };
        // SAFETY: we moved these slots from `FULL` to `READING`: they hold
        // values, and nobody else touches them until we empty them.
        let take =
            |i: u32| self.slots[(i & 1) as usize].with_mut(|p| unsafe { (*p).assume_init_read() });
        let value = take(newest);
        let older = (full == 0b11).then(|| take(newest ^ 1));
        // `READING` is `0b11`: clearing both bits empties the slot.
        let mask: u32 = (0..2)
            .filter(|&i| full & (1 << i) != 0)
            .map(|i| 0b11 << (2 * i))
            .sum();
        // ORDERING: `Release` ends our reads of the slots before the next
        // writer's `Acquire` claim.
        self.state.fetch_and(!mask, Ordering::Release);
        // Foreign code after the state is consistent: the value two racing
        // settlements made obsolete.
        drop(older);
        Some(value)
    }

    /// Drops a settlement nobody took (a stale reading, before starting a
    /// new operation).
    ///
    /// ```
    /// use deferral::promise::SignalCell;
    ///
    /// static CELL: SignalCell<u8, ()> = SignalCell::new();
    /// CELL.resolve(1).unwrap();
    /// CELL.reset();
    /// assert!(!CELL.is_signaled());
    /// ```
    pub fn reset(&self) {
        drop(self.try_take());
    }

    /// Whether a settlement is stored (a snapshot).
    ///
    /// ```
    /// use deferral::promise::SignalCell;
    ///
    /// static CELL: SignalCell<u8, ()> = SignalCell::new();
    /// assert!(!CELL.is_signaled());
    /// CELL.resolve(1).unwrap();
    /// assert!(CELL.is_signaled());
    /// ```
    pub fn is_signaled(&self) -> bool {
        // ORDERING: a snapshot for reporting only.
        let state = self.state.load(Ordering::Acquire);
        status(state, 0) == FULL || status(state, 1) == FULL
    }

    /// A future resolving to the next settlement (one stored already, or
    /// the next one made), taking it out of the cell. One waiter at a time:
    /// [`CellBusy`] while another [`SignalWait`] of this cell is live. The
    /// wait keeps the waker of its latest poll; one it replaces is dropped,
    /// not woken (embassy's `Signal` wakes it, because several of its
    /// waits may compete; here the replaced waker can only be this
    /// future's own, from before it moved to another task). A settlement
    /// wakes the registered waker once and takes it out: a later one
    /// before the wait is polled again replaces the value without waking
    /// anyone (the task is already scheduled), and that poll gets the
    /// latest.
    ///
    /// ```
    /// use deferral::promise::SignalCell;
    /// use deferral::promise::CellBusy;
    ///
    /// static CELL: SignalCell<u8, ()> = SignalCell::new();
    /// let first = CELL.wait().unwrap();
    /// assert_eq!(CELL.wait().err(), Some(CellBusy));
    /// drop(first);
    /// assert!(CELL.wait().is_ok());
    /// ```
    pub fn wait(&self) -> Result<SignalWait<'_, T, E>, CellBusy> {
        // ORDERING: `Acquire` pairs with the previous waiter's `Release` of
        // the claim: its `AtomicWaker` accesses happen before ours.
        let previous = self.state.fetch_or(WAITER, Ordering::Acquire);
        if previous & WAITER != 0 {
            return Err(CellBusy);
        }
        Ok(SignalWait {
            cell: self,
            done: false,
        })
    }

    /// The waiter gives its claim back (its waker was taken out before).
    fn release_waiter(&self) {
        // ORDERING: `Release` ends our accesses to the `AtomicWaker` before
        // the next waiter's `Acquire` claim.
        self.state.fetch_and(!WAITER, Ordering::Release);
    }
}

impl<T, E> Drop for SignalCell<T, E> {
    fn drop(&mut self) {
        // ORDERING: `&mut self`: no other access can be in progress.
        let state = self.state.load(Ordering::Acquire);
        for i in 0..2 {
            if status(state, i) == FULL {
                // SAFETY: `FULL` slots hold a value nobody took; dropped once.
                self.slots[(i & 1) as usize].with_mut(|p| unsafe { (*p).assume_init_drop() });
            }
        }
    }
}

impl<T, E> Default for SignalCell<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> fmt::Debug for SignalCell<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalCell")
            .field("signaled", &self.is_signaled())
            .finish_non_exhaustive()
    }
}

/// The future of [`SignalCell::wait`]: the next settlement of the cell,
/// taken out of it. `Unpin`; holds the cell's one waiter claim until it
/// completes or is dropped; polling it after it completed panics.
///
/// ```
/// use deferral::promise::SignalCell;
///
/// static CELL: SignalCell<u8, ()> = SignalCell::new();
/// let w = CELL.wait().unwrap();
/// CELL.resolve(9).unwrap();
/// assert_eq!(futures::executor::block_on(w), Ok(9));
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct SignalWait<'a, T, E> {
    cell: &'a SignalCell<T, E>,
    done: bool,
}

impl<T, E> Future for SignalWait<'_, T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        if self.done {
            panic!("`SignalWait` polled after completion");
        }
        let cell = self.cell;
        loop {
            if cell.is_signaled() {
                // Our registration must not outlive the wait. Its drop is
                // foreign code and may panic: it runs while the value is
                // still in the cell and we still hold the claim, so a panic
                // here only means the next poll takes the value.
                drop(cell.waker.take());
                if let Some(outcome) = cell.try_take() {
                    // No foreign code from the take to the return.
                    self.done = true;
                    cell.release_waiter();
                    return Poll::Ready(outcome);
                }
                // Somebody else's `try_take` got it: wait for the next one.
            }
            // Publish the waker, then re-check.
            cell.waker.register(cx.waker());
            if !cell.is_signaled() {
                return Poll::Pending;
            }
        }
    }
}

impl<T, E> FusedFuture for SignalWait<'_, T, E> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T, E> Drop for SignalWait<'_, T, E> {
    fn drop(&mut self) {
        if !self.done {
            // The waker out, the claim given back, then the waker dropped
            // (foreign code, with the state consistent).
            let waker = self.cell.waker.take();
            self.cell.release_waiter();
            drop(waker);
        }
    }
}

impl<T, E> fmt::Debug for SignalWait<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalWait")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
