//! The inline, const-generic window of a [`TaskQueue`](super::TaskQueue):
//! `N` slots used as a ring, in submission order.
//!
//! # How it works
//!
//! The entries `head .. head + len` (modulo `N`) are, in start order:
//! first `started` entries that the queue has started, then the `Queued`
//! ones, not started, in the order they will start: by priority, highest
//! first, and in submission order among equal priorities. A push finds its
//! place from the back (O(1) when priorities are equal, as by default) and
//! shifts the queued entries after it (they are not pinned); taking one
//! queued entry out ([`Ring::remove_queued`], for a cancel or a new
//! priority) shifts the ones after it forward. Tasks start strictly from
//! the front of the queued ones, so the split point is one counter. A
//! started entry is
//!
//! | slot              | counted in | what it is                                        |
//! |-------------------|------------|---------------------------------------------------|
//! | `Running`         | `running`  | a future (and its timeout timer), pinned in place |
//! | `Running`, doomed | —          | a future whose `poll` panicked, to be dropped     |
//! | `Finished`        | `finished` | an output not yet taken                           |
//! | `TimedOut`        | `finished` | a task dropped by its timeout, not yet reported   |
//! | `Vacant`          | —          | taken out of order, or `into_future` panicked     |
//!
//! Every slot outside the window is `Vacant`. Vacant entries at the front
//! are forgotten (`head` moves on) by [`Ring::trim_front`], which every
//! path that needs room or looks at the oldest entry calls first; so the
//! window's length counts them until then, and "nothing held" is read from
//! the counters ([`Ring::held`]), never from the length.
//!
//! # Panics: state first, then foreign code
//!
//! A task's `into_future` and `poll`, and the destructors of tasks, futures
//! and outputs, are foreign code that may panic. The ring is consistent
//! *before* each of them runs, so a panic needs no clean-up (the model is
//! heapless' `Vec::truncate`: shrink, then drop):
//!
//! - [`Ring::start_next`] counts the entry as started and leaves its slot
//!   `Vacant` before `into_future`: if it panics, the entry is a vacant one,
//!   forgotten like any other.
//! - [`Ring::start_next`] (and [`Ring::start_task`], which starts a task
//!   that waited beyond the window straight into a new entry) stores the
//!   future doomed and uncounted before the timeout's timer is made (the
//!   caller's factory): if that panics, the future is dropped by the next
//!   [`Ring::bury`].
//! - [`Ring::poll_slot`] uncounts the task and marks it doomed before
//!   `poll` (of the future, then of its timer), and undoes that when they
//!   return: if one panics, the task is
//!   already gone from the counts, and its future — pinned, it cannot be
//!   moved out — is dropped in place by the next [`Ring::bury`] (the next
//!   poll of the queue) or with the queue. It is never dropped while the
//!   panic unwinds, so a future whose destructor panics too does not abort.
//! - A finished future is uncounted, its output counted and recorded as
//!   [`Latest::Unexamined`], and only then dropped, by assigning the output
//!   over it (an assignment stores the new value even when dropping the old
//!   one panics). A timed-out one likewise, with `TimedOut` assigned over
//!   it.
//! - [`Ring::truncate`] shrinks the window by one entry and uncounts it
//!   before dropping it, newest first; after a panic the rest of the
//!   entries are still in the window, consistent, and a second call goes on.
//!
//! # Pinning
//!
//! The ring is only ever used through `Pin<&mut Ring>`. A `Running` future
//! and its timer are pinned in their slot: never moved, only polled through
//! `Pin::new_unchecked` and dropped in place (by assigning the slot, which
//! drops the old value where it lies, or by the array's drop glue). Queued
//! tasks and outputs are never pinned, so they may be moved (out, or along
//! the ring by a prioritised push).

use core::cell::UnsafeCell;
use core::mem;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::TaskId;
use super::timer::{TimedOut, Timing};

/// Outputs that finished or timed out.
pub(super) type Outcome<F> = Result<<F as IntoFuture>::Output, TimedOut>;

/// A task waiting to start, with what decides when it starts and what it
/// gets then.
pub(super) struct Queued<F, X> {
    pub(super) task: F,
    pub(super) priority: i32,
    pub(super) id: TaskId,
    /// Its timeout ([`Timing::Limit`]: nothing for a queue without one).
    pub(super) limit: X,
}

pub(super) enum Slot<F: IntoFuture, T: Timing> {
    Vacant,
    Queued(Queued<F, T::Limit>),
    /// The future and its timeout's timer (uninhabited, and the `Option`
    /// zero-sized, for a queue without a timer).
    Running(F::IntoFuture, Option<T::Sleep>),
    Finished(F::Output),
    TimedOut,
}

/// What polling a slot did.
pub(super) enum Progress {
    /// The slot holds no running task (a stale wake-up).
    Idle,
    Pending,
    /// The task finished (or timed out); its outcome is in the slot,
    /// recorded as [`Latest::Unexamined`].
    Finished,
}

/// The task that finished last, while its output still needs the queue's
/// attention: survives a panic between the task finishing and its output
/// being examined by `stop_when` or yielded, so the next poll can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Latest {
    /// Nothing pending.
    None,
    /// Finished in slot `.0`; `stop_when` has not looked at the output.
    Unexamined(usize),
    /// Finished in slot `.0` and examined (or its examination panicked),
    /// not yet yielded.
    Examined(usize),
}

pub(super) struct Ring<F: IntoFuture, T: Timing, const N: usize> {
    /// In `UnsafeCell`s: the queue's read-only accessors (`len`, `running`,
    /// ..) make a `&Ring`, which must not claim that a running future —
    /// which may point into itself — is frozen (Stacked Borrows UB between
    /// two polls of a self-borrowing task). Slots are read through raw
    /// pointers by `&self` methods and through `get_mut` otherwise.
    slots: [UnsafeCell<Slot<F, T>>; N],
    head: usize,
    len: usize,
    started: usize,
    /// `Running` slots, the doomed one excepted.
    running: usize,
    /// Finished, output not yet taken.
    finished: usize,
    /// A `Running` slot whose future panicked in `poll` (or is being
    /// polled): uncounted, dropped by the next [`Ring::bury`].
    doomed: Option<usize>,
    latest: Latest,
}

impl<F: IntoFuture, T: Timing, const N: usize> Ring<F, T, N> {
    pub(super) const fn new() -> Self {
        const { assert!(N > 0, "a TaskQueue needs a capacity of at least 1") };
        Ring {
            slots: [const { UnsafeCell::new(Slot::Vacant) }; N],
            head: 0,
            len: 0,
            started: 0,
            running: 0,
            finished: 0,
            doomed: None,
            latest: Latest::None,
        }
    }

    /// The same ring for another timing: `timer` converts the timers of
    /// running tasks, `limit` the timeouts of queued ones. Moves the ring,
    /// so only for one that is not pinned (a builder's).
    pub(super) fn convert<T2: Timing>(
        self,
        mut timer: impl FnMut(T::Sleep) -> T2::Sleep,
        mut limit: impl FnMut(T::Limit) -> T2::Limit,
    ) -> Ring<F, T2, N> {
        Ring {
            slots: self.slots.map(|slot| {
                UnsafeCell::new(match slot.into_inner() {
                    Slot::Vacant => Slot::Vacant,
                    Slot::Queued(q) => Slot::Queued(Queued {
                        task: q.task,
                        priority: q.priority,
                        id: q.id,
                        limit: limit(q.limit),
                    }),
                    Slot::Running(fut, t) => Slot::Running(fut, t.map(&mut timer)),
                    Slot::Finished(out) => Slot::Finished(out),
                    Slot::TimedOut => Slot::TimedOut,
                })
            }),
            head: self.head,
            len: self.len,
            started: self.started,
            running: self.running,
            finished: self.finished,
            doomed: self.doomed,
            latest: self.latest,
        }
    }

    /// Tasks held: running, finished and not taken, queued.
    pub(super) fn held(&self) -> usize {
        self.running + self.finished + self.queued()
    }

    /// Tasks not started.
    pub(super) fn queued(&self) -> usize {
        self.len - self.started
    }

    /// Whether a new entry fits (after forgetting the vacant front).
    pub(super) fn has_room(self: Pin<&mut Self>) -> bool {
        let this = self.slots();
        this.trim_front();
        this.len < N
    }

    /// Tasks started and not finished (a doomed one is not counted).
    pub(super) fn running(&self) -> usize {
        self.running
    }

    /// Outcomes not taken yet.
    pub(super) fn finished(&self) -> usize {
        self.finished
    }

    /// Number of started entries (the first `started` offsets).
    #[cfg_attr(feature = "alloc", allow(dead_code))]
    pub(super) fn started(&self) -> usize {
        self.started
    }

    /// The slot index of the entry at `offset` from the oldest.
    pub(super) fn index(&self, offset: usize) -> usize {
        (self.head + offset) % N
    }

    fn offset(&self, index: usize) -> usize {
        (index + N - self.head) % N
    }

    /// Whether slot `index` holds a running task (not a doomed one).
    pub(super) fn is_running(&self, index: usize) -> bool {
        // SAFETY: `&self`: nobody mutates the slot now; reading the
        // discriminant through the raw pointer makes no reference.
        let running = unsafe { matches!(*self.slots[index].get(), Slot::Running(..)) };
        running && self.doomed != Some(index)
    }

    /// Whether slot `index` holds an outcome not taken yet: an output or a
    /// timeout.
    pub(super) fn has_outcome(&self, index: usize) -> bool {
        // SAFETY: as in `is_running`.
        unsafe { matches!(*self.slots[index].get(), Slot::Finished(_) | Slot::TimedOut) }
    }

    /// The output of the finished task in slot `index` (`None` for a
    /// timed-out one).
    pub(super) fn output(&self, index: usize) -> Option<&F::Output> {
        let slot = self.slots[index].get();
        // SAFETY: as in `is_running`; a reference is made only to a
        // finished slot (no future in it).
        unsafe {
            match *slot {
                Slot::Finished(_) => match &*slot {
                    Slot::Finished(out) => Some(out),
                    _ => None,
                },
                _ => None,
            }
        }
    }

    pub(super) fn latest(&self) -> Latest {
        self.latest
    }

    /// Records that the output of slot `index` was examined (call before
    /// running `stop_when` on it).
    pub(super) fn examined(self: Pin<&mut Self>, index: usize) {
        self.slots().latest = Latest::Examined(index);
    }

    /// The latest output needs nothing more (it waits for its turn in
    /// submission order).
    pub(super) fn forget_latest(self: Pin<&mut Self>) {
        self.slots().latest = Latest::None;
    }

    fn slots(self: Pin<&mut Self>) -> &mut Self {
        // SAFETY: callers never move a `Running` future out of its slot (see
        // the module docs); everything else in the ring is not pinned.
        unsafe { self.get_unchecked_mut() }
    }

    /// Forgets the vacant entries at the front.
    fn trim_front(&mut self) {
        while self.started > 0 && matches!(self.slots[self.head].get_mut(), Slot::Vacant) {
            self.head = (self.head + 1) % N;
            self.len -= 1;
            self.started -= 1;
        }
    }

    /// Queues a task behind the queued ones of at least its priority (in
    /// start order); hands it back when the ring is full. Scans from the
    /// back, so equal priorities cost O(1).
    pub(super) fn push(
        self: Pin<&mut Self>,
        entry: Queued<F, T::Limit>,
    ) -> Result<(), Queued<F, T::Limit>> {
        let this = self.slots();
        this.trim_front();
        if this.len == N {
            return Err(entry);
        }
        // The slot after the last entry is `Vacant`: shift the queued
        // entries of lower priority into it, one by one, back to front.
        let mut at = this.len;
        while at > this.started {
            let before = this.index(at - 1);
            if !matches!(this.slots[before].get_mut(), Slot::Queued(q) if q.priority < entry.priority)
            {
                break;
            }
            let moved = mem::replace(this.slots[before].get_mut(), Slot::Vacant);
            *this.slots[this.index(at)].get_mut() = moved;
            at -= 1;
        }
        // `Vacant` (outside the window, or just moved from): nothing is
        // dropped.
        *this.slots[this.index(at)].get_mut() = Slot::Queued(entry);
        this.len += 1;
        Ok(())
    }

    /// The priority of the last queued task (the one that starts last).
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(super) fn last_queued_priority(&self) -> Option<i32> {
        if self.queued() == 0 {
            return None;
        }
        // SAFETY: `&self`: nobody mutates the slot now; a queued slot holds
        // no future, so reading it through the raw pointer freezes nothing
        // that could point into itself.
        match unsafe { &*self.slots[self.index(self.len - 1)].get() } {
            Slot::Queued(q) => Some(q.priority),
            _ => unreachable!("the entries after the started ones are queued"),
        }
    }

    /// Takes the last queued task (the one that starts last) out of the
    /// ring. Runs no foreign code.
    pub(super) fn pop_last_queued(self: Pin<&mut Self>) -> Option<Queued<F, T::Limit>> {
        let this = self.slots();
        if this.queued() == 0 {
            return None;
        }
        this.len -= 1;
        let index = this.index(this.len);
        match mem::replace(this.slots[index].get_mut(), Slot::Vacant) {
            Slot::Queued(q) => Some(q),
            _ => unreachable!("the entries after the started ones are queued"),
        }
    }

    /// Takes the queued task `id` out of the ring, if it is there; the
    /// queued entries after it move one place forward. Runs no foreign
    /// code.
    pub(super) fn remove_queued(self: Pin<&mut Self>, id: TaskId) -> Option<Queued<F, T::Limit>> {
        let this = self.slots();
        let mut at = this.started;
        loop {
            if at == this.len {
                return None;
            }
            let index = this.index(at);
            if matches!(this.slots[index].get_mut(), Slot::Queued(q) if q.id == id) {
                break;
            }
            at += 1;
        }
        let found = mem::replace(this.slots[this.index(at)].get_mut(), Slot::Vacant);
        // Queued entries are not pinned: close the gap (each move leaves a
        // `Vacant` behind, so nothing is dropped).
        while at + 1 < this.len {
            let next = mem::replace(this.slots[this.index(at + 1)].get_mut(), Slot::Vacant);
            *this.slots[this.index(at)].get_mut() = next;
            at += 1;
        }
        this.len -= 1;
        match found {
            Slot::Queued(q) => Some(q),
            _ => unreachable!("matched above"),
        }
    }

    /// Whether the oldest started entry that is not vacant has an outcome
    /// to take (in start order, the next result is there).
    pub(super) fn oldest_finished(&self) -> bool {
        for offset in 0..self.started {
            let slot = self.slots[self.index(offset)].get();
            // SAFETY: `&self`: nobody mutates the slot now; matching the
            // place through the raw pointer reads the discriminant only and
            // makes no reference (the slot may hold a running future).
            unsafe {
                match *slot {
                    Slot::Vacant => continue,
                    Slot::Finished(_) | Slot::TimedOut => return true,
                    Slot::Queued(_) | Slot::Running(..) => return false,
                }
            }
        }
        false
    }

    /// Starts the first queued task (converts it with `into_future`), makes
    /// its timeout's timer with `timer` (from the task's limit; `None`:
    /// no timeout) and returns its slot index.
    pub(super) fn start_next(
        self: Pin<&mut Self>,
        timer: impl FnOnce(T::Limit) -> Option<T::Sleep>,
    ) -> Option<usize> {
        let this = self.slots();
        if this.started == this.len {
            return None;
        }
        let index = this.index(this.started);
        let Slot::Queued(entry) = mem::replace(this.slots[index].get_mut(), Slot::Vacant) else {
            unreachable!("the entries after the started ones are queued")
        };
        // Counted as started first: if `into_future` panics the slot is a
        // `Vacant` entry among the started ones, which is consistent (and
        // forgotten once it is at the front).
        this.started += 1;
        this.run(index, entry, timer);
        Some(index)
    }

    /// Starts `entry` (one that was never in the ring) in a new entry after
    /// the others, as [`Self::start_next`] does; hands it back if the ring
    /// is full (call [`Self::has_room`] first: it forgets the vacant front)
    /// or still holds queued tasks (they start first).
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(super) fn start_task(
        self: Pin<&mut Self>,
        entry: Queued<F, T::Limit>,
        timer: impl FnOnce(T::Limit) -> Option<T::Sleep>,
    ) -> Result<usize, Queued<F, T::Limit>> {
        let this = self.slots();
        // The caller trimmed the front (`has_room`).
        if this.len == N || this.started < this.len {
            return Err(entry);
        }
        let index = this.index(this.len);
        // A `Vacant` entry among the started ones until it runs (as in
        // `start_next`): consistent if `into_future` panics.
        this.len += 1;
        this.started += 1;
        this.run(index, entry, timer);
        Ok(index)
    }

    /// Converts `entry`'s task into the running future of the `Vacant`
    /// started slot `index`, with its timer.
    fn run(
        &mut self,
        index: usize,
        entry: Queued<F, T::Limit>,
        timer: impl FnOnce(T::Limit) -> Option<T::Sleep>,
    ) {
        let Queued { task, limit, .. } = entry;
        let fut = task.into_future();
        // The slot is `Vacant`: nothing is dropped.
        *self.slots[index].get_mut() = Slot::Running(fut, None);
        if T::TIMEOUTS {
            // Doomed and uncounted while the timer is made (the caller's
            // factory): if that panics, `bury` drops the future.
            debug_assert!(self.doomed.is_none());
            self.doomed = Some(index);
            let timer = timer(limit);
            if let Slot::Running(_, slot) = self.slots[index].get_mut() {
                // `None` before: nothing is dropped.
                *slot = timer;
            }
            self.doomed = None;
        }
        self.running += 1;
    }

    /// Polls the task in slot `index`, if it is running, then its timer if
    /// it is still pending.
    pub(super) fn poll_slot(self: Pin<&mut Self>, index: usize, cx: &mut Context<'_>) -> Progress {
        let this = self.slots();
        debug_assert!(this.doomed.is_none(), "`bury` comes first");
        if this.doomed.is_some() {
            return Progress::Idle;
        }
        let Slot::Running(fut, timer) = this.slots[index].get_mut() else {
            return Progress::Idle;
        };
        // Doomed while it runs: if `poll` panics, the task is already gone
        // from the counts and is dropped by the next `bury`.
        this.running -= 1;
        this.doomed = Some(index);
        // SAFETY: the future is pinned in its slot (module docs): it is
        // dropped in place below, never moved.
        let outcome = match unsafe { Pin::new_unchecked(fut) }.poll(cx) {
            Poll::Ready(out) => Some(Slot::Finished(out)),
            Poll::Pending => match timer {
                // SAFETY: as for the future: the timer is pinned in the
                // slot with it and dropped in place with it.
                Some(timer) => match unsafe { Pin::new_unchecked(timer) }.poll(cx) {
                    Poll::Ready(()) => Some(Slot::TimedOut),
                    Poll::Pending => None,
                },
                None => None,
            },
        };
        this.doomed = None;
        let Some(outcome) = outcome else {
            this.running += 1;
            return Progress::Pending;
        };
        debug_assert!(
            !matches!(this.latest, Latest::Unexamined(_)),
            "the previous output was settled"
        );
        this.finished += 1;
        this.latest = Latest::Unexamined(index);
        // Drops the future (and timer) in place (foreign code), with the
        // counts already right; the outcome is stored even if that drop
        // panics.
        *this.slots[index].get_mut() = outcome;
        Progress::Finished
    }

    /// Drops the future whose `poll` panicked, if any. Call before anything
    /// else in a poll.
    pub(super) fn bury(self: Pin<&mut Self>) {
        let this = self.slots();
        if let Some(index) = this.doomed.take() {
            // Already uncounted. Drops the future in place; the slot is
            // `Vacant` afterwards even if that panics.
            *this.slots[index].get_mut() = Slot::Vacant;
        }
    }

    /// Takes the outcome of slot `index` (out of start order is fine). Runs
    /// no foreign code.
    pub(super) fn take(self: Pin<&mut Self>, index: usize) -> Option<Outcome<F>> {
        let this = self.slots();
        let out = match this.slots[index].get_mut() {
            Slot::Finished(_) => match mem::replace(this.slots[index].get_mut(), Slot::Vacant) {
                Slot::Finished(out) => Ok(out),
                _ => unreachable!(),
            },
            Slot::TimedOut => {
                *this.slots[index].get_mut() = Slot::Vacant;
                Err(TimedOut)
            }
            _ => return None,
        };
        this.finished -= 1;
        if matches!(this.latest, Latest::Unexamined(i) | Latest::Examined(i) if i == index) {
            this.latest = Latest::None;
        }
        // The vacant front is forgotten lazily, by whatever needs room or
        // the oldest entry next (`push`, `has_room`, `take_oldest`).
        Some(out)
    }

    /// Takes the outcome of the oldest entry if it has finished, with its
    /// slot index. Runs no foreign code.
    pub(super) fn take_oldest(mut self: Pin<&mut Self>) -> Option<(usize, Outcome<F>)> {
        self.as_mut().slots().trim_front();
        if self.started == 0 {
            return None;
        }
        let head = self.head;
        self.take(head).map(|out| (head, out))
    }

    /// Uncounts slot `index`, about to be dropped.
    fn forget(&mut self, index: usize) {
        match self.slots[index].get_mut() {
            Slot::Running(..) if self.doomed == Some(index) => self.doomed = None,
            Slot::Running(..) => self.running -= 1,
            Slot::Finished(_) | Slot::TimedOut => self.finished -= 1,
            Slot::Vacant | Slot::Queued(..) => {}
        }
        if matches!(self.latest, Latest::Unexamined(i) | Latest::Examined(i) if i == index) {
            self.latest = Latest::None;
        }
    }

    /// Drops every entry after the first `keep` (in submission order),
    /// newest first: queued tasks unrun, running ones in place, outputs.
    ///
    /// Each entry leaves the window and the counts before it is dropped: if
    /// a destructor panics, the entries not dropped yet are still in the
    /// window, and calling this again goes on.
    fn truncate(&mut self, keep: usize) {
        while self.len > keep {
            self.len -= 1;
            if self.started > self.len {
                self.started = self.len;
            }
            let i = self.index(self.len);
            self.forget(i);
            // Drops a running future in place.
            *self.slots[i].get_mut() = Slot::Vacant;
        }
    }

    /// Drops every entry after slot `index` (see [`Self::truncate`]).
    pub(super) fn truncate_after(self: Pin<&mut Self>, index: usize) {
        let this = self.slots();
        let keep = this.offset(index) + 1;
        this.truncate(keep);
    }

    /// Drops every entry but the one in slot `index`: those after it (see
    /// [`Self::truncate`]), then those before it, oldest first, each
    /// leaving the window before it is dropped.
    pub(super) fn retain_only(self: Pin<&mut Self>, index: usize) {
        let this = self.slots();
        let keep = this.offset(index) + 1;
        this.truncate(keep);
        while this.head != index {
            let i = this.head;
            this.forget(i);
            this.head = (i + 1) % N;
            this.len -= 1;
            // `index` is started, so is every entry before it.
            this.started -= 1;
            *this.slots[i].get_mut() = Slot::Vacant;
        }
    }

    /// Drops every entry but the started ones `keep` names: the unstarted
    /// ones (see [`Self::truncate`]), then the started ones, newest first,
    /// each uncounted before it is dropped in place (a slot assigned
    /// `Vacant`, as `take` leaves one): after a panicking destructor a
    /// second call goes on.
    #[cfg(feature = "alloc")]
    pub(super) fn retain_finished(self: Pin<&mut Self>, keep: impl Fn(usize) -> bool) {
        let this = self.slots();
        this.truncate(this.started);
        for offset in (0..this.started).rev() {
            let i = this.index(offset);
            if !keep(i) {
                this.forget(i);
                // Drops a running future in place.
                *this.slots[i].get_mut() = Slot::Vacant;
            }
        }
    }

    /// Drops every entry (see [`Self::truncate`]).
    pub(super) fn clear(self: Pin<&mut Self>) {
        self.slots().truncate(0);
    }
}
