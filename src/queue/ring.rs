//! The inline, const-generic window of a [`TaskQueue`](super::TaskQueue):
//! `N` slots used as a ring, in submission order.
//!
//! # How it works
//!
//! The entries `head .. head + len` (modulo `N`) are, in submission order:
//! first `started` entries that the queue has started (each `Running`,
//! `Finished` with an output not yet yielded, or `Vacant` once yielded out of
//! order), then the `Queued` ones, not started. Tasks start strictly in
//! submission order, so the split point is one counter.
//!
//! # Pinning
//!
//! The ring is only ever used through `Pin<&mut Ring>`. A `Running` future
//! is pinned in its slot: it is never moved, only polled through
//! `Pin::new_unchecked` and dropped in place (by assigning the slot, which
//! drops the old value where it lies, or by the array's drop glue). Queued
//! tasks and outputs are never pinned, so they may be moved out.

use core::mem;
use core::pin::Pin;
use core::task::{Context, Poll};

pub(super) enum Slot<F: IntoFuture> {
    Vacant,
    Queued(F),
    Running(F::IntoFuture),
    Finished(F::Output),
}

/// What polling a slot did.
pub(super) enum Progress {
    /// The slot holds no running task (a stale wake-up).
    Idle,
    Pending,
    /// The task finished; its output is in the slot.
    Finished,
}

pub(super) struct Ring<F: IntoFuture, const N: usize> {
    slots: [Slot<F>; N],
    head: usize,
    len: usize,
    started: usize,
    running: usize,
    /// Finished, output not yet taken.
    finished: usize,
}

impl<F: IntoFuture, const N: usize> Ring<F, N> {
    pub(super) const fn new() -> Self {
        const { assert!(N > 0, "a TaskQueue needs a capacity of at least 1") };
        Ring {
            slots: [const { Slot::Vacant }; N],
            head: 0,
            len: 0,
            started: 0,
            running: 0,
            finished: 0,
        }
    }

    /// Window slots in use, from the oldest entry to the newest (vacant
    /// ones in between included).
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Tasks held: running, finished and not taken, queued.
    pub(super) fn held(&self) -> usize {
        self.running + self.finished + (self.len - self.started)
    }

    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(super) fn is_full(&self) -> bool {
        self.len == N
    }

    /// Tasks started and not finished.
    pub(super) fn running(&self) -> usize {
        self.running
    }

    /// Tasks started whose output was not taken yet.
    pub(super) fn in_flight(&self) -> usize {
        self.running + self.finished
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

    pub(super) fn is_running(&self, index: usize) -> bool {
        matches!(self.slots[index], Slot::Running(_))
    }

    /// The output of the finished task in slot `index`.
    pub(super) fn output(&self, index: usize) -> Option<&F::Output> {
        match &self.slots[index] {
            Slot::Finished(out) => Some(out),
            _ => None,
        }
    }

    fn slots(self: Pin<&mut Self>) -> &mut Self {
        // SAFETY: callers never move a `Running` future out of its slot (see
        // the module docs); everything else in the ring is not pinned.
        unsafe { self.get_unchecked_mut() }
    }

    /// Appends a task, not started; hands it back when the ring is full.
    pub(super) fn push(self: Pin<&mut Self>, task: F) -> Result<(), F> {
        let this = self.slots();
        if this.len == N {
            return Err(task);
        }
        let index = this.index(this.len);
        this.slots[index] = Slot::Queued(task);
        this.len += 1;
        Ok(())
    }

    /// Starts the oldest queued task (converts it with `into_future`) and
    /// returns its slot index.
    pub(super) fn start_next(self: Pin<&mut Self>) -> Option<usize> {
        let this = self.slots();
        if this.started == this.len {
            return None;
        }
        let index = this.index(this.started);
        // Counted as started first: if `into_future` panics the slot is a
        // `Vacant` entry among the started ones, which is consistent.
        this.started += 1;
        let Slot::Queued(task) = mem::replace(&mut this.slots[index], Slot::Vacant) else {
            unreachable!("the entries after the started ones are queued")
        };
        this.slots[index] = Slot::Running(task.into_future());
        this.running += 1;
        Some(index)
    }

    /// Polls the task in slot `index`, if it is running.
    pub(super) fn poll_slot(self: Pin<&mut Self>, index: usize, cx: &mut Context<'_>) -> Progress {
        let this = self.slots();
        let Slot::Running(fut) = &mut this.slots[index] else {
            return Progress::Idle;
        };
        // SAFETY: the future is pinned in its slot (module docs): it is
        // dropped in place below, never moved.
        match unsafe { Pin::new_unchecked(fut) }.poll(cx) {
            Poll::Pending => Progress::Pending,
            Poll::Ready(out) => {
                // Drops the future in place.
                this.slots[index] = Slot::Finished(out);
                this.running -= 1;
                this.finished += 1;
                Progress::Finished
            }
        }
    }

    /// Takes the output of slot `index` (out of submission order is fine).
    pub(super) fn take(self: Pin<&mut Self>, index: usize) -> Option<F::Output> {
        let this = self.slots();
        if !matches!(this.slots[index], Slot::Finished(_)) {
            return None;
        }
        let Slot::Finished(out) = mem::replace(&mut this.slots[index], Slot::Vacant) else {
            unreachable!()
        };
        this.finished -= 1;
        // Forget the vacant entries at the front.
        while this.started > 0 && matches!(this.slots[this.head], Slot::Vacant) {
            this.head = (this.head + 1) % N;
            this.len -= 1;
            this.started -= 1;
        }
        Some(out)
    }

    /// Takes the output of the oldest entry if it has finished.
    pub(super) fn take_oldest(self: Pin<&mut Self>) -> Option<F::Output> {
        if self.started == 0 {
            return None;
        }
        let head = self.head;
        self.take(head)
    }

    /// Drops every entry after slot `index` (in submission order): queued
    /// tasks unrun, running ones in place, outputs.
    pub(super) fn truncate_after(self: Pin<&mut Self>, index: usize) {
        let this = self.slots();
        let keep = this.offset(index) + 1;
        // Shrink first, then drop, newest first: a panicking drop leaves the
        // ring consistent (the rest of the entries are then dropped by the
        // array's drop glue, in place).
        while this.len > keep {
            this.len -= 1;
            if this.started > this.len {
                this.started = this.len;
            }
            let i = this.index(this.len);
            this.forget(i);
            // Drops a running future in place.
            this.slots[i] = Slot::Vacant;
        }
    }

    /// Uncounts slot `index`, about to be dropped.
    fn forget(&mut self, index: usize) {
        match self.slots[index] {
            Slot::Running(_) => self.running -= 1,
            Slot::Finished(_) => self.finished -= 1,
            Slot::Vacant | Slot::Queued(_) => {}
        }
    }

    /// Drops every entry.
    pub(super) fn clear(mut self: Pin<&mut Self>) {
        if self.len > 0 {
            let first = self.head;
            self.as_mut().truncate_after(first);
            let this = self.slots();
            this.forget(first);
            this.len = 0;
            this.started = 0;
            this.slots[first] = Slot::Vacant;
        }
    }
}
