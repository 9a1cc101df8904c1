//! `SharedCell`: a `static`, allocation-free promise that up to `N` tasks
//! await at once, settled once from a task, a thread or an interrupt
//! handler; every waiter gets the settlement (a clone, or a reference).
//!
//! # How it works
//!
//! One `AtomicU32` state word holds everything two parties must agree on:
//!
//! | bits | meaning |
//! |---|---|
//! | `0 .. N` | waiter slot `i` is claimed by a live [`SharedWait`] / [`SharedWaitRef`] |
//! | `30 ..= 31` | the value: `EMPTY` (0), `LOCKED` (1: being written), `OK` (2), `ERR` (3) |
//!
//! beside it an uninitialised value slot and `N` [`AtomicWaker`]s, one per
//! waiter slot (the "fixed array of `AtomicWaker`-style slots" design:
//! Embassy's `Watch` keeps a waker array under a critical-section mutex,
//! maitake-sync's `WaitQueue` links waiters intrusively under a spin lock;
//! here nobody ever holds a lock).
//!
//! - **Waiting** ([`SharedCell::wait`]): one compare-exchange claims the
//!   lowest free slot bit. If the value bits already say `OK`/`ERR`, no slot
//!   is needed. No free slot and no value: [`WaitersFull`], at once.
//! - **Polling**: read the value bits; if settled, release the slot and hand
//!   out the value. Otherwise register the waker in the slot's
//!   `AtomicWaker`, then read the value bits again ("publish, then
//!   re-check").
//! - **Settling** ([`SharedCell::settle`]): a compare-exchange `EMPTY ->
//!   LOCKED` (retried only if a waiter claimed or released a slot
//!   meanwhile; refused if the value bits are not `EMPTY`), write the slot,
//!   then one `fetch_add` turns `LOCKED` into `OK`/`ERR` and returns the
//!   slot bits claimed at that instant: exactly those slots are woken.
//! - **Dropping a waiter**: take the waker out of its slot, clear the slot
//!   bit, then drop the waker.
//!
//! Why no wake-up is lost: claims, releases and the publishing `fetch_add`
//! are read-modify-writes of one word, so they are totally ordered. A slot
//! claimed before the publish is in the bits it returns and gets a `wake`
//! (`AtomicWaker` guarantees that a registration racing that wake either is
//! woken or sees the value on its re-check: the re-check is ordered after
//! the publish through the slot's own state word). A claim after the
//! publish reads the value bits in its own read-modify-write.
//!
//! Interrupt safety: settling never waits for anybody. Its compare-exchange
//! fails only if a waiter changed a slot bit between our load and our
//! exchange, which a pre-empted waiter cannot do (it is not running), and
//! the wakes use `AtomicWaker::wake`, which never spins: an interrupt that
//! settles while the waiter it pre-empted is in the middle of `register`
//! leaves the delivery to that registration.
//!
//! Foreign code (a waker's `clone`, `wake`, `drop`; `T::clone`) runs only
//! with the state consistent: a released slot's waker is dropped after its
//! bit is cleared; a waker is cloned by `AtomicWaker` outside its critical
//! section; a value is cloned after the waiter released its slot, and the
//! value stays in the cell, so a panicking clone or waker drop only means
//! the next poll hands the value out again. With `std`, a waker whose
//! `wake` panics does not stop the others: every claimed slot is woken, then
//! the first panic resumes from `settle` (the settlement stands).
//!
//! Limits, stated: the promise settles once (a latch); [`SharedCell::reset`]
//! needs `&mut self`, because waiters may hold references into the value.
//! At most 30 waiter slots (a compile-time error beyond).

use core::fmt;
use core::future::Future;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::future::FusedFuture;

use super::error::{Refusal, SettleError};
use crate::sync::{AtomicU32, AtomicWaker, Ordering, UnsafeCell};

const VALUE_SHIFT: u32 = 30;
const VALUE: u32 = 0b11 << VALUE_SHIFT;
const EMPTY: u32 = 0;
const LOCKED: u32 = 1 << VALUE_SHIFT;
const OK: u32 = 2 << VALUE_SHIFT;
const ERR: u32 = 3 << VALUE_SHIFT;

/// The most waiter slots a [`SharedCell`] can have.
///
/// ```
/// static READY: deferral::SharedCell<(), (), { deferral::promise::MAX_WAITERS }> =
///     deferral::SharedCell::new();
/// assert_eq!(deferral::promise::MAX_WAITERS, 30);
/// ```
pub const MAX_WAITERS: usize = 30;

/// A value of the state word (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Word(u32);

impl Word {
    fn value(self) -> u32 {
        self.0 & VALUE
    }

    fn is_settled(self) -> bool {
        self.value() >= OK
    }

    fn slots(self) -> u32 {
        self.0 & !VALUE
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = match self.value() {
            EMPTY => "EMPTY",
            LOCKED => "LOCKED",
            OK => "OK",
            _ => "ERR",
        };
        write!(f, "{value} slots {:#b}", self.slots())
    }
}

/// A promise that up to `N` tasks await at once, settled once — from a
/// task, a thread or an interrupt handler — with no heap and no lock:
/// `const`-constructible for a `static`.
///
/// - [`wait`](SharedCell::wait) claims one of the `N` waiter slots and
///   returns a future resolving to a clone of the settlement
///   (`T: Clone, E: Clone`); [`wait_ref`](SharedCell::wait_ref) resolves to
///   a reference into the cell instead (no `Clone` needed). Each waiter
///   owns its slot and keeps the waker of its latest poll; a waker it
///   replaces (the same waiter, moved to another task) is dropped, not
///   woken: waiters never share a registration (unlike embassy's
///   `WakerRegistration`).
/// - When all `N` slots are taken by live waiters and nothing is settled
///   yet, `wait` returns [`WaitersFull`] at once: a waiter never silently
///   misses the settlement. A dropped (or finished) waiter frees its slot.
///   Once the cell is settled, `wait` always succeeds (no slot is needed).
/// - [`resolve`](SharedCell::resolve), [`reject`](SharedCell::reject),
///   [`settle`](SharedCell::settle): the first settlement wins, a later one
///   is refused with its value handed back ([`Refusal::AlreadySettled`]).
///   Settling never blocks or spins, so it is safe in an interrupt handler;
///   it wakes every waiter.
///
/// The settlement stays in the cell (a latch): `wait` after it resolves at
/// once. [`reset`](SharedCell::reset) empties it, given `&mut self`.
///
/// Compared with the alternatives: `SharedPromise` needs `alloc`;
/// Embassy's `Signal` serves one waiter and `Watch` takes a critical
/// section for every operation.
///
/// ```
/// use deferral::SharedCell;
/// use futures::executor::block_on;
///
/// // Three tasks wait for the link to come up; the interrupt handler says so.
/// static LINK_UP: SharedCell<u32, (), 3> = SharedCell::new();
///
/// let waiters: Vec<_> = (0..3).map(|_| LINK_UP.wait().unwrap()).collect();
/// assert!(LINK_UP.wait().is_err(), "three slots, all taken");
/// std::thread::spawn(|| LINK_UP.resolve(100).unwrap()); // the interrupt
/// for w in waiters {
///     assert_eq!(block_on(w), Ok(100));
/// }
/// // Settled: late waiters need no slot.
/// assert_eq!(block_on(LINK_UP.wait().unwrap()), Ok(100));
/// ```
pub struct SharedCell<T, E, const N: usize> {
    state: AtomicU32,
    value: UnsafeCell<MaybeUninit<Result<T, E>>>,
    wakers: [AtomicWaker; N],
}

// SAFETY: the value is written once, by the settler holding `LOCKED`, before
// the publishing `Release`; afterwards it is only read, through shared
// references handed to any thread (hence `Sync` for `T` and `E`), and moved
// or dropped only through `&mut self`. Values come from another thread
// (hence `Send`). The wakers are `AtomicWaker`s (`Sync`).
unsafe impl<T: Send + Sync, E: Send + Sync, const N: usize> Sync for SharedCell<T, E, N> {}
// SAFETY: moving the cell moves the value with it.
unsafe impl<T: Send, E: Send, const N: usize> Send for SharedCell<T, E, N> {}

impl<T, E, const N: usize> SharedCell<T, E, N> {
    const SLOTS_FIT: () = assert!(
        N > 0 && N <= MAX_WAITERS,
        "a SharedCell has between 1 and 30 waiter slots"
    );
    const ALL_SLOTS: u32 = if N >= 32 { u32::MAX } else { (1 << N) - 1 };

    /// An empty cell with `N` waiter slots, usable in a `static`.
    ///
    /// ```
    /// static READY: deferral::SharedCell<(), (), 4> = deferral::SharedCell::new();
    /// assert!(!READY.is_settled());
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::SLOTS_FIT;
        Self {
            state: AtomicU32::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            wakers: [const { AtomicWaker::new() }; N],
        }
    }

    /// An empty cell (not `const` under `--cfg loom`).
    #[cfg(loom)]
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::SLOTS_FIT;
        Self {
            state: AtomicU32::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            wakers: core::array::from_fn(|_| AtomicWaker::new()),
        }
    }

    fn load(&self, order: Ordering) -> Word {
        Word(self.state.load(order))
    }

    /// A future resolving to a clone of the settlement, holding one waiter
    /// slot until it completes or is dropped.
    ///
    /// [`WaitersFull`] when all `N` slots are held by live waiters and the
    /// cell is not settled yet.
    ///
    /// ```
    /// use deferral::SharedCell;
    /// use deferral::promise::WaitersFull;
    ///
    /// static CFG: SharedCell<String, (), 1> = SharedCell::new();
    /// let first = CFG.wait().unwrap();
    /// assert_eq!(CFG.wait().err(), Some(WaitersFull));
    /// drop(first); // frees its slot
    /// let second = CFG.wait().unwrap();
    /// CFG.resolve("baud=115200".to_string()).unwrap();
    /// assert_eq!(futures::executor::block_on(second).unwrap(), "baud=115200");
    /// ```
    pub fn wait(&self) -> Result<SharedWait<'_, T, E, N>, WaitersFull> {
        Ok(SharedWait {
            waiter: self.waiter()?,
        })
    }

    /// Like [`wait`](SharedCell::wait), but the future resolves to a
    /// reference to the settlement inside the cell: no `Clone` needed, and
    /// every waiter reads the same value.
    ///
    /// ```
    /// use deferral::SharedCell;
    ///
    /// static TABLE: SharedCell<[u8; 4], (), 2> = SharedCell::new();
    /// let reader = TABLE.wait_ref().unwrap();
    /// TABLE.resolve([1, 2, 3, 4]).unwrap();
    /// let table: &'static [u8; 4] = futures::executor::block_on(reader).unwrap();
    /// assert_eq!(table[3], 4);
    /// ```
    pub fn wait_ref(&self) -> Result<SharedWaitRef<'_, T, E, N>, WaitersFull> {
        Ok(SharedWaitRef {
            waiter: self.waiter()?,
        })
    }

    fn waiter(&self) -> Result<Waiter<'_, T, E, N>, WaitersFull> {
        // ORDERING: `Acquire` on the CAS pairs with the `Release` of the
        // previous holder's release of the slot (its `AtomicWaker` accesses
        // happen before ours), and with the publishing `fetch_add` if we
        // find the value settled (we may read it).
        let mut state = self.load(Ordering::Acquire);
        loop {
            if state.is_settled() {
                return Ok(Waiter::new(self, None));
            }
            let free = !state.slots() & Self::ALL_SLOTS;
            if free == 0 {
                return Err(WaitersFull);
            }
            let bit = free.trailing_zeros();
            match self.state.compare_exchange(
                state.0,
                state.0 | (1 << bit),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Waiter::new(self, Some(bit))),
                Err(actual) => state = Word(actual),
            }
        }
    }

    /// Fulfils the promise: every waiter gets `value` (a clone or a
    /// reference). Never blocks or spins: safe in an interrupt handler.
    ///
    /// Refused, with the value handed back, when the cell is already
    /// settled (or another settlement is being written):
    /// [`Refusal::AlreadySettled`].
    ///
    /// ```
    /// use deferral::SharedCell;
    /// use deferral::promise::Refusal;
    ///
    /// static CELL: SharedCell<u8, (), 2> = SharedCell::new();
    /// CELL.resolve(1).unwrap();
    /// let refused = CELL.resolve(2).unwrap_err();
    /// assert_eq!((refused.reason(), refused.into_value()), (Refusal::AlreadySettled, Ok(2)));
    /// ```
    pub fn resolve(&self, value: T) -> Result<(), SettleError<Result<T, E>>> {
        self.settle(Ok(value))
    }

    /// Rejects the promise: every waiter gets `error`; refused as
    /// [`resolve`](SharedCell::resolve) is.
    ///
    /// ```
    /// use deferral::SharedCell;
    ///
    /// static CELL: SharedCell<u8, &str, 2> = SharedCell::new();
    /// let w = CELL.wait().unwrap();
    /// CELL.reject("sensor missing").unwrap();
    /// assert_eq!(futures::executor::block_on(w), Err("sensor missing"));
    /// ```
    pub fn reject(&self, error: E) -> Result<(), SettleError<Result<T, E>>> {
        self.settle(Err(error))
    }

    /// Settles the promise with `outcome` and wakes every waiter; refused as
    /// [`resolve`](SharedCell::resolve) is.
    ///
    /// With `std`, if a waiter's waker panics in `wake`, the other waiters
    /// are still woken, then the first panic resumes from here; the
    /// settlement stands.
    ///
    /// ```
    /// use deferral::SharedCell;
    ///
    /// static CELL: SharedCell<u8, (), 1> = SharedCell::new();
    /// CELL.settle(Ok(3)).unwrap();
    /// assert_eq!(CELL.get(), Some(Ok(&3)));
    /// ```
    pub fn settle(&self, outcome: Result<T, E>) -> Result<(), SettleError<Result<T, E>>> {
        // ORDERING: `Acquire` on the load and the CAS: the value slot is
        // ours once `LOCKED` is set (nobody else writes it, nobody reads it
        // before `OK`/`ERR`).
        let mut state = self.load(Ordering::Acquire);
        loop {
            if state.value() != EMPTY {
                return Err(SettleError::new(outcome, Refusal::AlreadySettled));
            }
            match self.state.compare_exchange(
                state.0,
                state.0 | LOCKED,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                // Only a waiter claiming or releasing a slot, or another
                // settlement, can have changed the word.
                Err(actual) => state = Word(actual),
            }
        }
        let publish = if outcome.is_ok() {
            OK - LOCKED
        } else {
            ERR - LOCKED
        };
        // SAFETY: we hold `LOCKED`: nobody else writes the slot, and nobody
        // reads it before `OK`/`ERR` is published below.
        self.value
            .with_mut(|slot| unsafe { (*slot).write(outcome) });
        // `LOCKED + (OK - LOCKED) = OK`, likewise for `ERR`: the value bits
        // change, the slot bits are returned as they are at this instant.
        // ORDERING: `AcqRel`: `Release` publishes the value to every
        // waiter's `Acquire` load; `Acquire` orders the claims we read
        // before our wakes of their slots.
        let claimed = Word(self.state.fetch_add(publish, Ordering::AcqRel)).slots();
        self.wake_slots(claimed);
        Ok(())
    }

    /// Wakes the waiters of the slots in `claimed`. With `std`, a panicking
    /// `wake` does not stop the others; the first panic resumes at the end.
    fn wake_slots(&self, mut claimed: u32) {
        let mut first_panic = None;
        while claimed != 0 {
            let bit = claimed.trailing_zeros();
            claimed &= claimed - 1;
            if let Err(panic) = crate::panic::catch(|| self.wakers[bit as usize].wake()) {
                first_panic.get_or_insert(panic);
            }
        }
        if let Some(panic) = first_panic {
            crate::panic::resume(panic);
        }
    }

    /// The settlement, if there is one, by reference.
    ///
    /// ```
    /// use deferral::SharedCell;
    ///
    /// static CELL: SharedCell<u8, (), 1> = SharedCell::new();
    /// assert_eq!(CELL.get(), None);
    /// CELL.reject(()).unwrap();
    /// assert_eq!(CELL.get(), Some(Err(&())));
    /// ```
    pub fn get(&self) -> Option<Result<&T, &E>> {
        // ORDERING: `Acquire` pairs with the publishing `fetch_add`, so the
        // written value is visible.
        if !self.load(Ordering::Acquire).is_settled() {
            return None;
        }
        // SAFETY: settled: the value is initialised and never written again
        // while `&self` lives (only `reset`/drop, through `&mut self`).
        let value = self.value.with(|slot| unsafe { (*slot).assume_init_ref() });
        Some(value.as_ref())
    }

    /// Whether the cell is settled.
    ///
    /// ```
    /// static CELL: deferral::SharedCell<u8, (), 1> = deferral::SharedCell::new();
    /// assert!(!CELL.is_settled());
    /// CELL.resolve(1).unwrap();
    /// assert!(CELL.is_settled());
    /// ```
    pub fn is_settled(&self) -> bool {
        // ORDERING: a snapshot for reporting only.
        self.load(Ordering::Acquire).is_settled()
    }

    /// How many waiter slots are held right now (a snapshot).
    ///
    /// ```
    /// static CELL: deferral::SharedCell<u8, (), 4> = deferral::SharedCell::new();
    /// let a = CELL.wait().unwrap();
    /// let b = CELL.wait_ref().unwrap();
    /// assert_eq!(CELL.waiters(), 2);
    /// drop((a, b));
    /// assert_eq!(CELL.waiters(), 0);
    /// ```
    pub fn waiters(&self) -> usize {
        // ORDERING: a snapshot for reporting only.
        self.load(Ordering::Relaxed).slots().count_ones() as usize
    }

    /// Empties the cell for another use, handing back the settlement if
    /// there was one. Needs `&mut self`: no waiter and no reference into
    /// the value can be alive.
    ///
    /// ```
    /// use deferral::SharedCell;
    ///
    /// let mut cell = SharedCell::<u8, (), 2>::new();
    /// cell.resolve(1).unwrap();
    /// assert_eq!(cell.reset(), Some(Ok(1)));
    /// assert!(cell.resolve(2).is_ok());
    /// ```
    pub fn reset(&mut self) -> Option<Result<T, E>> {
        // `&mut self`: no waiter is alive. One passed to `mem::forget` may
        // have left its slot claimed and its waker registered: drop those
        // wakers first (foreign code, while the cell is unchanged; a panic
        // leaves the rest for the next reset or the cell's drop), then
        // empty the cell.
        for waker in &self.wakers {
            drop(waker.take());
        }
        // ORDERING: `&mut self`: no other thread accesses the cell.
        let state = self.load(Ordering::Acquire);
        self.state.store(EMPTY, Ordering::Relaxed);
        if !state.is_settled() {
            return None;
        }
        // SAFETY: it was settled (initialised), and the state now says
        // empty, so it will not be read or dropped again.
        Some(
            self.value
                .with_mut(|slot| unsafe { (*slot).assume_init_read() }),
        )
    }
}

impl<T, E, const N: usize> Drop for SharedCell<T, E, N> {
    fn drop(&mut self) {
        // ORDERING: `&mut self`: no other thread accesses the cell.
        if self.load(Ordering::Acquire).is_settled() {
            // SAFETY: settled: the value is initialised and dropped once.
            self.value
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
    }
}

impl<T, E, const N: usize> Default for SharedCell<T, E, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E, const N: usize> fmt::Debug for SharedCell<T, E, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCell")
            // ORDERING: a snapshot for reporting only.
            .field("state", &self.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

/// All waiter slots of a [`SharedCell`] are held by live waiters, and the
/// cell is not settled yet: a new waiter could miss the settlement, so it is
/// refused instead. Retry after a waiter finished or was dropped, or size
/// the cell for more waiters.
///
/// ```
/// use deferral::SharedCell;
/// use deferral::promise::WaitersFull;
///
/// static CELL: SharedCell<u8, (), 1> = SharedCell::new();
/// let _only = CELL.wait().unwrap();
/// assert_eq!(CELL.wait_ref().err(), Some(WaitersFull));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitersFull;

impl fmt::Display for WaitersFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every waiter slot of the shared cell is taken")
    }
}

impl core::error::Error for WaitersFull {}

/// One waiter's hold on a [`SharedCell`]: its slot (none if the cell was
/// settled when it was made, or once released) and whether it finished.
struct Waiter<'a, T, E, const N: usize> {
    cell: &'a SharedCell<T, E, N>,
    slot: Option<u32>,
    done: bool,
}

impl<'a, T, E, const N: usize> Waiter<'a, T, E, N> {
    fn new(cell: &'a SharedCell<T, E, N>, slot: Option<u32>) -> Self {
        Self {
            cell,
            slot,
            done: false,
        }
    }

    /// Polls for the settlement and hands it to `map` (a clone, or the
    /// references themselves). The waiter is marked done only after `map`
    /// returned: its slot is released first (consistent state before the
    /// foreign code of the waker's drop and of `map`), and if either
    /// panics, the latched value is still in the cell and the next poll
    /// hands it out.
    fn poll_map<R>(
        &mut self,
        cx: &mut Context<'_>,
        map: impl FnOnce(Result<&'a T, &'a E>) -> R,
    ) -> Poll<R> {
        if self.done {
            panic!("`SharedCell` waiter polled after completion");
        }
        let out = match self.cell.get() {
            Some(out) => out,
            None => {
                let Some(slot) = self.slot else {
                    // A waiter of an unsettled cell holds a slot.
                    panic!("deferral: a SharedCell waiter lost its slot");
                };
                self.cell.wakers[slot as usize].register(cx.waker());
                match self.cell.get() {
                    Some(out) => out,
                    None => return Poll::Pending,
                }
            }
        };
        self.release();
        let out = map(out);
        self.done = true;
        Poll::Ready(out)
    }

    /// Gives the slot back: the waker out, the bit cleared, then the waker
    /// dropped (foreign code, with the state consistent).
    fn release(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        // If a settlement is waking this slot right now, `take` finds
        // nothing: the settler owns the waker and drops it after waking.
        let waker = self.cell.wakers[slot as usize].take();
        // ORDERING: `Release` ends our accesses to the slot's waker before
        // the next claimant's `Acquire` claim.
        self.cell.state.fetch_and(!(1 << slot), Ordering::Release);
        drop(waker);
    }
}

impl<T, E, const N: usize> Drop for Waiter<'_, T, E, N> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<T, E, const N: usize> fmt::Debug for Waiter<'_, T, E, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("slot", &self.slot)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A waiter of a [`SharedCell`] that resolves to a clone of its settlement;
/// made by [`SharedCell::wait`]. Holds one waiter slot until it completes or
/// is dropped. `Unpin`; polling it after it completed panics.
///
/// ```
/// use deferral::SharedCell;
///
/// static CELL: SharedCell<Vec<u8>, (), 2> = SharedCell::new();
/// let (a, b) = (CELL.wait().unwrap(), CELL.wait().unwrap());
/// CELL.resolve(vec![1, 2]).unwrap();
/// assert_eq!(futures::executor::block_on(a), Ok(vec![1, 2]));
/// assert_eq!(futures::executor::block_on(b), Ok(vec![1, 2]));
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
#[derive(Debug)]
pub struct SharedWait<'a, T, E, const N: usize> {
    waiter: Waiter<'a, T, E, N>,
}

impl<T: Clone, E: Clone, const N: usize> Future for SharedWait<'_, T, E, N> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        // The slot is released before the clone, and the waiter is done
        // only after it: a panicking `clone` leaves the value in the cell
        // for the next poll.
        self.waiter.poll_map(cx, |out| match out {
            Ok(value) => Ok(value.clone()),
            Err(error) => Err(error.clone()),
        })
    }
}

impl<T: Clone, E: Clone, const N: usize> FusedFuture for SharedWait<'_, T, E, N> {
    fn is_terminated(&self) -> bool {
        self.waiter.done
    }
}

/// A waiter of a [`SharedCell`] that resolves to a reference to its
/// settlement; made by [`SharedCell::wait_ref`]. Holds one waiter slot until
/// it completes or is dropped. `Unpin`; polling it after it completed
/// panics.
///
/// ```
/// use deferral::SharedCell;
///
/// static CELL: SharedCell<u32, (), 1> = SharedCell::new();
/// let w = CELL.wait_ref().unwrap();
/// CELL.resolve(9).unwrap();
/// assert_eq!(futures::executor::block_on(w), Ok(&9));
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
#[derive(Debug)]
pub struct SharedWaitRef<'a, T, E, const N: usize> {
    waiter: Waiter<'a, T, E, N>,
}

impl<'a, T, E, const N: usize> Future for SharedWaitRef<'a, T, E, N> {
    type Output = Result<&'a T, &'a E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<&'a T, &'a E>> {
        self.waiter.poll_map(cx, |out| out)
    }
}

impl<T, E, const N: usize> FusedFuture for SharedWaitRef<'_, T, E, N> {
    fn is_terminated(&self) -> bool {
        self.waiter.done
    }
}
