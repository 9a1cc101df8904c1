//! [`Inbox`]: a `static`, fixed-capacity submission queue for a
//! [`TaskQueue`](super::TaskQueue) — no heap, no lock, usable from an
//! interrupt handler.
//!
//! # How it works
//!
//! A bounded multi-producer, single-consumer ring after crossbeam's
//! `ArrayQueue` (D. Vyukov's bounded queue): `M` slots, each a value cell
//! and a *stamp*, and two positions, `tail` (producers) and `head` (the
//! queue). A position is `lap + index`, with `lap` a multiple of
//! `one_lap = (M + 1).next_power_of_two()`, so positions wrap safely.
//! Slot `i`'s stamp says, for position `p = lap + i`:
//!
//! | stamp      | the slot is                                          |
//! |------------|------------------------------------------------------|
//! | `p`        | free for the producer of position `p`                |
//! | `p + 1`    | written by that producer: the queue may take it       |
//! | `p + one_lap` | taken: free for position `p + one_lap`            |
//!
//! (Stored as `stamp - i`, so a new inbox is all zeros: `const`.)
//!
//! - `submit` reads `tail`, and the slot's stamp. Free: it claims the
//!   position with a compare-and-swap of `tail`, writes the task, then
//!   publishes the stamp `p + 1` (`Release`) and wakes the queue. A stamp
//!   ahead of `p` means `tail` moved meanwhile: read it again (someone
//!   made progress). A stamp of an earlier lap means the slot still holds
//!   (or is being given) an earlier task: the inbox is full, and the task
//!   is handed back — a producer never waits for another.
//! - The queue takes from `head` while the stamp there is `p + 1`, and
//!   stops at the first slot that is not: empty, *or claimed by a producer
//!   that has not published yet*. That producer was pre-empted (by the
//!   queue's task, or an interrupt handler submitting while the queue
//!   takes is simply run to completion first); it publishes, then wakes
//!   the queue, which registered its waker before taking: no wake-up is
//!   lost, nothing spins.
//!
//! Nothing here allocates or locks; on chips without compare-and-swap
//! (`thumbv6m`) the `portable-atomic` features provide it.
//!
//! Who may take from it: producers are anyone, anywhere; the consumer side
//! (`take`, `register`, reading `head`) is single-consumer and belongs to
//! one queue for the program's life: [`TaskQueue::attach`](super::TaskQueue::attach)
//! wins the `ATTACHED` flag with a compare-and-swap from 0, once, and every
//! later attach (by any queue, on any thread) is refused. The inbox is
//! closed for good when that queue is dropped or closed, or by
//! [`Inbox::close`].
//!
//! Positions are `usize` (32 bits on Cortex-M) and wrap: every comparison
//! is a wrapping difference, tested across the wrap (`tests` below, and
//! the loom model `two_producers_across_the_position_wrap`). What wrapping
//! cannot rule out is the ABA of every Vyukov-style ring (crossbeam's
//! `ArrayQueue` too): a producer stalled between its stamp load and its
//! compare-and-swap of `tail` while exactly 2^32 other positions pass (4
//! billion submissions taken meanwhile) would claim a slot it did not check.
//! `tests/loom_queue.rs` model-checks submit against take, against close,
//! against a second producer, and two queues racing to attach.

use core::fmt;
use core::mem::MaybeUninit;
use core::task::Waker;

use super::PushError;
use crate::sync::{AtomicUsize, AtomicWaker, Ordering, UnsafeCell};

const ATTACHED: usize = 0b01;
const CLOSED: usize = 0b10;

struct Cell<F> {
    /// `stamp - index` (see the module docs).
    stamp: AtomicUsize,
    task: UnsafeCell<MaybeUninit<(F, i32)>>,
}

/// A fixed-capacity inbox of up to `M` tasks, meant for a `static`: it
/// feeds one [`TaskQueue`](super::TaskQueue) without a heap, from anywhere —
/// other tasks, other threads, interrupt handlers. [`Inbox::submit`] never
/// allocates, locks or waits: a full inbox hands the task back.
///
/// An inbox keeps its queue open (an empty queue waits for submissions)
/// until it is closed: by [`Inbox::close`] (the producers are done), by
/// [`TaskQueue::close`](super::TaskQueue::close) or by the queue's drop.
/// Closing is for good: an inbox serves one queue for the program's life.
///
/// Who may use which side: anyone may submit, from anywhere, at once. Only
/// one queue ever takes from it — the first one
/// [attached](super::TaskQueue::attach); every later attach, by any queue on
/// any thread, is refused with [`AttachError`](super::AttachError) (a
/// compare-and-swap of its flags, so two queues racing to attach cannot both
/// win).
///
/// ```
/// # futures::executor::block_on(async {
/// use core::future::Ready;
/// use deferral::TaskQueue;
/// use deferral::queue::Inbox;
/// use futures::StreamExt;
///
/// static INBOX: Inbox<Ready<u32>, 8> = Inbox::new();
///
/// let mut queue = core::pin::pin!(TaskQueue::new());
/// queue.attach(&INBOX).unwrap();
/// // In an interrupt handler, say:
/// INBOX.submit(core::future::ready(7)).unwrap();
/// assert_eq!(queue.next().await, Some(7));
/// INBOX.close(); // no more submissions: the stream ends
/// assert_eq!(queue.next().await, None);
/// # });
/// ```
pub struct Inbox<F, const M: usize> {
    cells: [Cell<F>; M],
    /// The next position a producer claims.
    tail: AtomicUsize,
    /// The next position the queue takes (only the queue writes it).
    head: AtomicUsize,
    /// `ATTACHED | CLOSED`.
    flags: AtomicUsize,
    queue: AtomicWaker,
}

// SAFETY: the inbox hands each task from the producer that wrote it to the
// one queue that takes it (the stamps order those accesses); no `&F` is
// ever shared, so `F: Send` suffices.
unsafe impl<F: Send, const M: usize> Sync for Inbox<F, M> {}
// SAFETY: as for `Sync`.
unsafe impl<F: Send, const M: usize> Send for Inbox<F, M> {}

impl<F, const M: usize> Inbox<F, M> {
    const ONE_LAP: usize = (M + 1).next_power_of_two();

    /// An empty, open inbox (`M > 0`, checked at compile time).
    ///
    /// ```
    /// static INBOX: deferral::queue::Inbox<core::future::Ready<()>, 4> = deferral::queue::Inbox::new();
    /// assert_eq!(INBOX.capacity(), 4);
    /// ```
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        const { assert!(M > 0, "an Inbox needs a capacity of at least 1") };
        Inbox {
            cells: [const {
                Cell {
                    stamp: AtomicUsize::new(0),
                    task: UnsafeCell::new(MaybeUninit::uninit()),
                }
            }; M],
            tail: AtomicUsize::new(0),
            head: AtomicUsize::new(0),
            flags: AtomicUsize::new(0),
            queue: AtomicWaker::new(),
        }
    }

    /// An empty, open inbox (`loom` atomics cannot be built in a `const
    /// fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Inbox {
            cells: core::array::from_fn(|_| Cell {
                stamp: AtomicUsize::new(0),
                task: UnsafeCell::new(MaybeUninit::uninit()),
            }),
            tail: AtomicUsize::new(0),
            head: AtomicUsize::new(0),
            flags: AtomicUsize::new(0),
            queue: AtomicWaker::new(),
        }
    }

    /// An empty, open inbox whose positions start at the lap boundary at
    /// or below `position`: tests and loom models of the positions' wrap
    /// around `usize::MAX` (32 bits on Cortex-M).
    #[cfg(any(test, loom))]
    #[doc(hidden)]
    pub fn starting_at(position: usize) -> Self {
        let lap = position & !(Self::ONE_LAP - 1);
        Inbox {
            cells: core::array::from_fn(|_| Cell {
                // `stamp - index` of "free for position `lap + index`".
                stamp: AtomicUsize::new(lap),
                task: UnsafeCell::new(MaybeUninit::uninit()),
            }),
            tail: AtomicUsize::new(lap),
            head: AtomicUsize::new(lap),
            flags: AtomicUsize::new(0),
            queue: AtomicWaker::new(),
        }
    }

    /// How many tasks it holds at most, `M`.
    ///
    /// ```
    /// static INBOX: deferral::queue::Inbox<core::future::Ready<()>, 2> = deferral::queue::Inbox::new();
    /// assert_eq!(INBOX.capacity(), 2);
    /// ```
    pub fn capacity(&self) -> usize {
        M
    }

    /// Hands `task` to the queue (not started here) and wakes it; no heap,
    /// no lock, no waiting, so an interrupt handler may call it. Refused,
    /// the task handed back, with [`PushError::Full`] when `M` tasks wait
    /// (or one is being submitted in the slot needed next) and with
    /// [`PushError::Closed`] once the inbox is closed.
    ///
    /// A submission racing with the queue's drop may be accepted and then
    /// stay in the inbox: never run, and (like anything in a `static`)
    /// never dropped.
    ///
    /// ```
    /// use deferral::queue::{Inbox, PushError};
    /// static INBOX: Inbox<u8, 1> = Inbox::new();
    /// INBOX.submit(1).unwrap();
    /// assert!(matches!(INBOX.submit(2), Err(PushError::Full(2))));
    /// ```
    pub fn submit(&self, task: F) -> Result<(), PushError<F>> {
        self.submit_with_priority(task, 0)
    }

    /// [`Self::submit`] with a priority (higher first, FIFO among equals):
    /// see [`Options::priority`](super::Options::priority). A submitted
    /// task gets the queue's timeout.
    ///
    /// ```
    /// static INBOX: deferral::queue::Inbox<u8, 2> = deferral::queue::Inbox::new();
    /// INBOX.submit_with_priority(1, 5).unwrap();
    /// ```
    pub fn submit_with_priority(&self, task: F, priority: i32) -> Result<(), PushError<F>> {
        // ORDERING: `Acquire` pairs with `close`'s `Release` (a refusal is
        // only advisory: a submission racing with the close is accepted,
        // and the queue takes it or it stays, never run twice).
        if self.flags.load(Ordering::Acquire) & CLOSED != 0 {
            return Err(PushError::Closed(task));
        }
        // ORDERING: `Relaxed`: a guess, checked against the slot's stamp
        // and claimed by the compare-and-swap below.
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let index = tail & (Self::ONE_LAP - 1);
            let cell = &self.cells[index];
            // ORDERING: `Acquire` pairs with the queue's `Release` store
            // after it took the previous lap's task: our write of the cell
            // comes after its read.
            let stamp = cell.stamp.load(Ordering::Acquire).wrapping_add(index);
            let ahead = stamp.wrapping_sub(tail) as isize;
            if ahead > 0 {
                // Another producer filled this position: `tail` moved on.
                // ORDERING: `Relaxed`, a new guess as above.
                tail = self.tail.load(Ordering::Relaxed);
                continue;
            }
            if ahead < 0 {
                // The slot still holds an earlier lap's task (or another
                // producer is writing one): full. Never wait for it.
                return Err(PushError::Full(task));
            }
            let next = if index + 1 < M {
                tail.wrapping_add(1)
            } else {
                (tail & !(Self::ONE_LAP - 1)).wrapping_add(Self::ONE_LAP)
            };
            // ORDERING: `Relaxed` suffices to claim the position (only one
            // producer can move `tail` from this value); the cell's
            // contents are published by the stamp's `Release` below.
            match self
                .tail
                .compare_exchange_weak(tail, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    // SAFETY: we claimed position `tail`, whose cell is free
                    // (stamp `tail`, read with `Acquire` above): no one else
                    // reads or writes it until we publish.
                    cell.task
                        .with_mut(|task_cell| unsafe { (*task_cell).write((task, priority)) });
                    // ORDERING: `Release` publishes the write to the queue's
                    // `Acquire` load of the stamp.
                    cell.stamp
                        .store(tail.wrapping_add(1).wrapping_sub(index), Ordering::Release);
                    // Foreign code (the queue's waker) last: the task is in.
                    self.queue.wake();
                    return Ok(());
                }
                Err(current) => tail = current,
            }
        }
    }

    /// Refuses further submissions; the queue runs what was submitted, then
    /// its stream ends (once it holds nothing else either). For good.
    ///
    /// ```
    /// use deferral::queue::{Inbox, PushError};
    /// static INBOX: Inbox<u8, 2> = Inbox::new();
    /// INBOX.close();
    /// assert!(INBOX.is_closed());
    /// assert!(matches!(INBOX.submit(1), Err(PushError::Closed(1))));
    /// ```
    pub fn close(&self) {
        // ORDERING: `Release`, see `submit`; the wake that follows reaches
        // a queue waiting for submissions (its `register` and our `take`
        // are read-modify-writes of one word, see `AtomicWaker`).
        self.flags.fetch_or(CLOSED, Ordering::AcqRel);
        self.queue.wake();
    }

    /// Whether the inbox is closed: [`Self::submit`] then refuses.
    ///
    /// ```
    /// static INBOX: deferral::queue::Inbox<u8, 2> = deferral::queue::Inbox::new();
    /// assert!(!INBOX.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        // ORDERING: `Acquire`, see `submit`.
        self.flags.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Marks the inbox as serving a queue; `false` if it already served
    /// one (or is closed).
    pub(super) fn attach(&self) -> bool {
        // ORDERING: `Acquire` on success: the queue's later takes see
        // everything submitted before (they also read the stamps).
        self.flags
            .compare_exchange(0, ATTACHED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the oldest published task; `None` if there is none, or if the
    /// next one is still being written (its producer wakes the queue when
    /// done). Only the attached queue calls this.
    fn take(&self) -> Option<(F, i32)> {
        // ORDERING: `Relaxed`: only this (single) consumer writes `head`.
        let head = self.head.load(Ordering::Relaxed);
        let index = head & (Self::ONE_LAP - 1);
        let cell = &self.cells[index];
        // ORDERING: `Acquire` pairs with the producer's `Release` store.
        let stamp = cell.stamp.load(Ordering::Acquire).wrapping_add(index);
        if stamp != head.wrapping_add(1) {
            return None;
        }
        // SAFETY: stamp `head + 1`: the task is written and published, and
        // no producer touches the cell until we store the next stamp.
        let task = cell.task.with(|task| unsafe { (*task).assume_init_read() });
        let next = if index + 1 < M {
            head.wrapping_add(1)
        } else {
            (head & !(Self::ONE_LAP - 1)).wrapping_add(Self::ONE_LAP)
        };
        // ORDERING: `Relaxed`: only this consumer reads `head`.
        self.head.store(next, Ordering::Relaxed);
        // ORDERING: `Release`: our read of the cell happens before the next
        // lap's producer writes it (its `Acquire` load of the stamp).
        cell.stamp.store(
            head.wrapping_add(Self::ONE_LAP).wrapping_sub(index),
            Ordering::Release,
        );
        Some(task)
    }
}

impl<F, const M: usize> Inbox<F, M> {
    /// Whether a published submission waits at the head (only the attached
    /// queue asks).
    fn has_pending(&self) -> bool {
        // ORDERING: `Relaxed` for `head` (only the queue writes it);
        // `Relaxed` for the stamp: a hint for `TaskQueue::until` (a
        // submission it misses wakes the queue, whose next poll takes it).
        let head = self.head.load(Ordering::Relaxed);
        let index = head & (Self::ONE_LAP - 1);
        let stamp = self.cells[index]
            .stamp
            .load(Ordering::Relaxed)
            .wrapping_add(index);
        stamp == head.wrapping_add(1)
    }
}

impl<F, const M: usize> fmt::Debug for Inbox<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("capacity", &M)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
impl<F, const M: usize> Default for Inbox<F, M> {
    fn default() -> Self {
        Self::new()
    }
}

/// The queue's view of an attached [`Inbox`], whatever its capacity.
pub(super) trait Source<F>: Sync {
    /// The oldest published submission, if any.
    fn take(&self) -> Option<(F, i32)>;
    /// Whether one is there to take (a hint).
    fn has_pending(&self) -> bool;
    fn register(&self, waker: &Waker);
    /// Not closed.
    fn is_open(&self) -> bool;
    /// Closes it (the queue closed or stopped).
    fn close(&self);
    /// Closes it and lets go of the queue's waker (the queue is dropped).
    fn detach(&self);
}

impl<F: Send, const M: usize> Source<F> for Inbox<F, M> {
    fn take(&self) -> Option<(F, i32)> {
        Inbox::take(self)
    }
    fn has_pending(&self) -> bool {
        Inbox::has_pending(self)
    }
    fn register(&self, waker: &Waker) {
        self.queue.register(waker);
    }
    fn is_open(&self) -> bool {
        !self.is_closed()
    }
    fn close(&self) {
        // ORDERING: `Release`, see `submit`.
        self.flags.fetch_or(CLOSED, Ordering::AcqRel);
    }
    fn detach(&self) {
        Source::close(self);
        drop(self.queue.take());
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The positions wrap around `usize::MAX` (after 4 billion submissions
    /// on a 32-bit chip): across the wrap the inbox stays FIFO, refuses the
    /// stale side — a producer whose slot still holds the previous lap's
    /// task gets `Full`, the queue does not take a slot that is not
    /// published — and never loses or repeats a task. (Run in release too:
    /// `cargo test --release --lib queue::inbox`; in debug builds any
    /// arithmetic that did not wrap would panic here.)
    #[test]
    fn positions_wrap_around_usize_max() {
        const M: usize = 3;
        let one_lap = Inbox::<u32, M>::ONE_LAP;
        let inbox = Inbox::<u32, M>::starting_at(usize::MAX - 8 * one_lap);
        let start = inbox.tail.load(Ordering::Relaxed);
        let (mut next_in, mut next_out) = (0u32, 0u32);
        for round in 0..64 {
            // Fill it: `M` accepted, then refused with the task back.
            for _ in 0..M {
                inbox.submit(next_in).unwrap();
                next_in += 1;
            }
            match inbox.submit(u32::MAX) {
                Err(PushError::Full(task)) => assert_eq!(task, u32::MAX),
                other => panic!("round {round}: a full inbox took a task: {other:?}"),
            }
            // Take some (one, two or three), oldest first.
            for _ in 0..=(round % M) {
                assert_eq!(inbox.take().map(|(t, _)| t), Some(next_out));
                next_out += 1;
            }
            // The rest stay: the queue takes nothing beyond them.
            let left = next_in - next_out;
            for _ in 0..left {
                assert_eq!(inbox.take().map(|(t, _)| t), Some(next_out));
                next_out += 1;
            }
            assert_eq!(inbox.take().map(|(t, _)| t), None, "round {round}");
        }
        let end = inbox.tail.load(Ordering::Relaxed);
        assert!(
            end < start,
            "the positions wrapped ({start:#x} -> {end:#x})"
        );
        assert_eq!(next_out, next_in);
    }

    /// A slot claimed by a producer but not yet published is not taken,
    /// across the wrap too, and nothing after it is taken first: the
    /// producer is simulated — it claims the position past `usize::MAX`,
    /// another producer fills the next one, and only then the first
    /// writes and publishes.
    #[test]
    fn an_unpublished_slot_is_not_taken_across_the_wrap() {
        const M: usize = 2;
        let one_lap = Inbox::<u32, M>::ONE_LAP;
        let inbox = Inbox::<u32, M>::starting_at(usize::MAX - one_lap + 1);
        inbox.submit(0).unwrap();
        inbox.submit(1).unwrap();
        assert_eq!(inbox.take().map(|(t, _)| t), Some(0));
        assert_eq!(inbox.take().map(|(t, _)| t), Some(1));
        // The next position is past `usize::MAX`: claim it (as `submit`
        // does with its compare-and-swap) without publishing.
        let claimed = inbox.tail.load(Ordering::Relaxed);
        assert!(claimed < one_lap, "wrapped: {claimed:#x}");
        inbox
            .tail
            .compare_exchange(claimed, claimed + 1, Ordering::Relaxed, Ordering::Relaxed)
            .unwrap();
        inbox.submit(2).unwrap(); // the next position, published
        assert_eq!(inbox.take().map(|(t, _)| t), None, "unpublished head");
        // The first producer finishes: write, then publish the stamp.
        let index = claimed & (one_lap - 1);
        let cell = &inbox.cells[index];
        // SAFETY: the position is claimed above and not published: no one
        // else reads or writes the cell (the test plays its producer).
        cell.task.with_mut(|task| unsafe { (*task).write((1, 0)) });
        cell.stamp.store(
            claimed.wrapping_add(1).wrapping_sub(index),
            Ordering::Release,
        );
        assert_eq!(inbox.take().map(|(t, _)| t), Some(1));
        assert_eq!(inbox.take().map(|(t, _)| t), Some(2));
        assert_eq!(inbox.take().map(|(t, _)| t), None);
    }
}
