//! The engine of a [`TaskQueue`](super::TaskQueue): its unpinned state
//! and what a poll does (settle, poll the running tasks, take submissions,
//! start tasks), plus the queue's ends of its inboxes.
//!
//! Everything here works on `&mut State` and a `Pin<&mut Ring>`: the
//! queue hands them out only to one caller at a time (see "How it works"
//! in the module docs). The ring is consistent before any foreign code
//! runs (its own docs); this file keeps the rest consistent the same way:
//! a task leaves the queue (and its count) before its destructor runs.

#[cfg(feature = "alloc")]
use alloc::collections::VecDeque;
#[cfg(feature = "alloc")]
use alloc::sync::Arc;
use core::pin::Pin;
use core::ptr::NonNull;
#[cfg(feature = "alloc")]
use core::task::Waker;
use core::task::{Context, Poll};

use super::inbox::Source;
use super::options::{PushError, TaskId, Yield};
use super::ring::{Latest, Progress, Queued, Ring};
#[cfg(feature = "alloc")]
use super::submitter;
use super::timer::{RateLimit, Timing};
#[cfg(feature = "alloc")]
use crate::wake_set::WakeBits;

/// Whether the queue stopped on a rejection, and how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Not stopped.
    No,
    /// Not stopped, but a predicate installed on a live queue has not seen
    /// the outputs that finished before it: the next `settle` examines
    /// them first (`examine_finished`). Not `No`, so that check stays the
    /// only one on the fast path.
    Examine,
    /// Stopped on the rejection in slot `.0`, not yielded yet: nothing
    /// after it is kept (in completion order, nothing else at all but the
    /// results batched ahead of it before a predicate was installed).
    At(usize),
    /// The rejection was yielded: nothing is kept, the stream ends.
    Done,
}

/// Everything but the ring and the rate limit's window: never pinned.
pub(super) struct State<F: IntoFuture, const N: usize, T: Timing, S> {
    pub(super) concurrency: usize,
    pub(super) order: Yield,
    pub(super) stop_when: Option<S>,
    /// An order chosen while results waited in the current one (`order` on
    /// a live queue): it applies once none waits (start of `poll_next`).
    pub(super) next_order: Option<Yield>,
    pub(super) stop: Stop,
    /// `None` was returned and nothing was pushed since.
    pub(super) exhausted: bool,
    pub(super) paused: bool,
    /// [`TaskQueue::close`](super::TaskQueue::close): no more pushes or submissions.
    pub(super) closed: bool,
    pub(super) timing: T,
    pub(super) rate: Option<RateLimit>,
    /// The id of the next task that enters the queue (64 bits: never
    /// wraps; see "Counters" in the module docs).
    next_id: u64,
    /// Tasks beyond the window, in start order (priority, then
    /// submission).
    #[cfg(feature = "alloc")]
    waiting: VecDeque<Queued<F, T::Limit>>,
    /// Per-slot wake flags, made at the first poll.
    #[cfg(feature = "alloc")]
    wake: Option<WakeBits>,
    /// Finished slots to yield next, in the order they finished
    /// (completion order without a predicate).
    #[cfg(feature = "alloc")]
    ready: VecDeque<usize>,
    /// Each slot's waker, made when the slot first runs a task.
    #[cfg(feature = "alloc")]
    wakers: [Option<Waker>; N],
    #[cfg(feature = "alloc")]
    pub(super) inbox: Option<InboxOwner<F>>,
    pub(super) attached: Option<Attached<F>>,
}

/// The queue's end of a submitter inbox: closes it when dropped.
#[cfg(feature = "alloc")]
pub(super) struct InboxOwner<F>(pub(super) Arc<submitter::Inbox<F>>);

#[cfg(feature = "alloc")]
impl<F> Drop for InboxOwner<F> {
    fn drop(&mut self) {
        self.0.close();
        drop(self.0.take_all());
    }
}

/// The queue's end of a `static` [`Inbox`](super::Inbox): closes it and drops what it
/// still holds when dropped.
///
/// A pointer, not a `&'static dyn Source<F>`: that type would require
/// `F: 'static` of every queue, attached or not.
pub(super) struct Attached<F>(pub(super) NonNull<dyn Source<F>>);

// SAFETY: made only from a `&'static Inbox<F, M>` with `F: Send` (see
// `TaskQueue::attach`), which is `Sync` (so `&Inbox` is `Send + Sync`).
unsafe impl<F: Send> Send for Attached<F> {}
// SAFETY: as for `Send`.
unsafe impl<F: Send> Sync for Attached<F> {}

impl<F> Attached<F> {
    pub(super) fn source(&self) -> &dyn Source<F> {
        // SAFETY: the pointer came from a `&'static` inbox: valid for ever,
        // and only ever read through shared references.
        unsafe { self.0.as_ref() }
    }
}

impl<F> Drop for Attached<F> {
    fn drop(&mut self) {
        /// Goes on dropping the rest if a task's destructor panics.
        struct Rest<'a, F>(&'a dyn Source<F>);
        impl<F> Drop for Rest<'_, F> {
            fn drop(&mut self) {
                while let Some(task) = self.0.take() {
                    drop(task);
                }
            }
        }
        let source = self.source();
        source.detach();
        let rest = Rest(source);
        // Each task is taken out of the inbox before it is dropped.
        while let Some(task) = rest.0.take() {
            drop(task);
        }
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> State<F, N, T, S> {
    /// A new queue's state: see [`TaskQueue::new`](super::TaskQueue::new).
    pub(super) const fn new(timing: T) -> Self {
        State {
            concurrency: 1,
            order: Yield::InSubmissionOrder,
            stop_when: None,
            stop: Stop::No,
            exhausted: false,
            next_order: None,
            paused: false,
            closed: false,
            timing,
            rate: None,
            next_id: 0,
            #[cfg(feature = "alloc")]
            waiting: VecDeque::new(),
            #[cfg(feature = "alloc")]
            wake: None,
            #[cfg(feature = "alloc")]
            ready: VecDeque::new(),
            #[cfg(feature = "alloc")]
            wakers: [const { None }; N],
            #[cfg(feature = "alloc")]
            inbox: None,
            attached: None,
        }
    }

    pub(super) fn max_running(&self) -> usize {
        self.concurrency.min(N)
    }

    pub(super) fn is_stopped(&self) -> bool {
        matches!(self.stop, Stop::At(_) | Stop::Done)
    }

    /// Whether a submitter or the attached inbox holds submissions the
    /// queue has not taken yet (reads atomics only).
    pub(super) fn has_submissions(&self) -> bool {
        #[cfg(feature = "alloc")]
        if self
            .inbox
            .as_ref()
            .is_some_and(|inbox| inbox.0.has_pending())
        {
            return true;
        }
        self.attached
            .as_ref()
            .is_some_and(|a| a.source().has_pending())
    }

    pub(super) fn waiting_len(&self) -> usize {
        #[cfg(feature = "alloc")]
        return self.waiting.len();
        #[cfg(not(feature = "alloc"))]
        0
    }

    /// After a predicate was installed: the next poll runs it over the
    /// outputs that finished before (`examine_finished`).
    pub(super) fn examining_finished(mut self) -> Self {
        if self.stop_when.is_some() && self.stop == Stop::No {
            self.stop = Stop::Examine;
        }
        self
    }

    /// The same state with another timing and stop predicate (builders);
    /// the waiting tasks keep the new timing's default timeout.
    pub(super) fn convert<T2: Timing, S2>(
        self,
        timing: impl FnOnce(T) -> T2,
        stop_when: impl FnOnce(Option<S>) -> Option<S2>,
    ) -> State<F, N, T2, S2> {
        let timing = timing(self.timing);
        #[cfg(feature = "alloc")]
        let waiting = {
            let limit = timing.limit();
            self.waiting
                .into_iter()
                .map(|q| Queued {
                    task: q.task,
                    priority: q.priority,
                    id: q.id,
                    limit,
                })
                .collect()
        };
        State {
            concurrency: self.concurrency,
            order: self.order,
            stop_when: stop_when(self.stop_when),
            next_order: self.next_order,
            stop: self.stop,
            exhausted: self.exhausted,
            paused: self.paused,
            closed: self.closed,
            timing,
            rate: self.rate,
            next_id: self.next_id,
            #[cfg(feature = "alloc")]
            waiting,
            #[cfg(feature = "alloc")]
            wake: self.wake,
            #[cfg(feature = "alloc")]
            ready: self.ready,
            #[cfg(feature = "alloc")]
            wakers: self.wakers,
            #[cfg(feature = "alloc")]
            inbox: self.inbox,
            attached: self.attached,
        }
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> State<F, N, T, S> {
    /// Queues `task` with a new id; refused after a stop or a close (and,
    /// without `alloc`, when the window is full).
    pub(super) fn push(
        &mut self,
        ring: Pin<&mut Ring<F, T, N>>,
        task: F,
        priority: i32,
        limit: Option<T::Limit>,
    ) -> Result<TaskId, PushError<F>> {
        if self.closed {
            return Err(PushError::Closed(task));
        }
        if self.is_stopped() {
            return Err(PushError::Stopped(task));
        }
        let entry = self.entry(task, priority, limit);
        let id = entry.id;
        self.enqueue(ring, entry)
            .map_err(|q| PushError::Full(q.task))?;
        self.exhausted = false;
        Ok(id)
    }

    /// A queue entry for `task` with the next id (a refused entry uses up
    /// its id: ids only grow).
    fn entry(&mut self, task: F, priority: i32, limit: Option<T::Limit>) -> Queued<F, T::Limit> {
        let id = TaskId(self.next_id);
        self.next_id += 1;
        Queued {
            task,
            priority,
            id,
            limit: limit.unwrap_or_else(|| self.timing.limit()),
        }
    }

    /// Takes the queued task `id` out (from the window or the waiting
    /// tasks), if it has not started. Runs no foreign code.
    pub(super) fn remove(
        &mut self,
        ring: Pin<&mut Ring<F, T, N>>,
        id: TaskId,
    ) -> Option<Queued<F, T::Limit>> {
        if let Some(entry) = ring.remove_queued(id) {
            return Some(entry);
        }
        #[cfg(feature = "alloc")]
        if let Some(at) = self.waiting.iter().position(|q| q.id == id) {
            return self.waiting.remove(at);
        }
        None
    }

    /// Gives the queued task `id` a new priority: it starts after the
    /// waiting tasks of that priority (p-queue's `setPriority`). `false` if
    /// `id` is not waiting to start. Runs no foreign code.
    pub(super) fn set_priority(
        &mut self,
        mut ring: Pin<&mut Ring<F, T, N>>,
        id: TaskId,
        priority: i32,
    ) -> bool {
        let Some(mut entry) = self.remove(ring.as_mut(), id) else {
            return false;
        };
        entry.priority = priority;
        // Room: the entry was just taken out (of the window, or from the
        // waiting tasks, which are unbounded).
        if self.enqueue(ring, entry).is_err() {
            unreachable!("a queued task was just taken out");
        }
        true
    }

    /// Queues a task in start order: in the window if it starts before
    /// every task waiting beyond it, else among those (`alloc`).
    #[cfg_attr(not(feature = "alloc"), allow(unused_mut))]
    fn enqueue(
        &mut self,
        mut ring: Pin<&mut Ring<F, T, N>>,
        entry: Queued<F, T::Limit>,
    ) -> Result<(), Queued<F, T::Limit>> {
        #[cfg(feature = "alloc")]
        {
            let priority = entry.priority;
            // The window's queued tasks all start before the waiting ones:
            // a task goes into the window only if it starts before those.
            let entry = match self.waiting.front() {
                Some(first) if priority <= first.priority => entry,
                _ => match ring.as_mut().push(entry) {
                    Ok(()) => return Ok(()),
                    Err(entry) => {
                        if ring.last_queued_priority().is_some_and(|p| p < priority) {
                            // Full: the last queued task of the window
                            // waits instead.
                            let evicted = ring.as_mut().pop_last_queued().expect("queued");
                            self.waiting.push_front(evicted);
                            if ring.push(entry).is_err() {
                                unreachable!("a slot was just freed");
                            }
                            return Ok(());
                        }
                        entry
                    }
                },
            };
            // Behind the waiting tasks of at least its priority.
            match self.waiting.back() {
                Some(last) if last.priority < priority => {
                    let at = self.waiting.partition_point(|q| q.priority >= priority);
                    self.waiting.insert(at, entry);
                }
                _ => self.waiting.push_back(entry),
            }
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        ring.push(entry)
    }

    /// Moves the submissions into the window or the waiting tasks. Without
    /// `alloc`, an attached inbox's tasks are taken only while the window
    /// has room (the rest wait in the inbox).
    pub(super) fn refill(&mut self, mut ring: Pin<&mut Ring<F, T, N>>) {
        if self.is_stopped() {
            return; // `enforce_stop` drops them
        }
        #[cfg(feature = "alloc")]
        if let Some(inbox) = &self.inbox {
            for (task, priority) in inbox.0.take_all() {
                self.exhausted = false;
                let entry = self.entry(task, priority, None);
                // Unbounded with `alloc`.
                let _ = self.enqueue(ring.as_mut(), entry);
            }
        }
        while cfg!(feature = "alloc") || ring.as_mut().has_room() {
            let Some((task, priority)) = self.attached.as_ref().and_then(|a| a.source().take())
            else {
                break;
            };
            self.exhausted = false;
            let entry = self.entry(task, priority, None);
            if self.enqueue(ring.as_mut(), entry).is_err() {
                unreachable!("the window had room");
            }
        }
    }

    /// The next unstarted task to drop for [`TaskQueue::clear`](super::TaskQueue::clear), newest
    /// first: the submissions (all at once: the list drops the rest if one
    /// destructor panics), the attached inbox's, the waiting tasks, the
    /// window's. Runs no foreign code: the caller drops what it gets.
    pub(super) fn next_to_clear(&mut self, ring: Pin<&mut Ring<F, T, N>>) -> Option<Unstarted<F>> {
        #[cfg(feature = "alloc")]
        if let Some(inbox) = &self.inbox {
            let taken = inbox.0.take_all();
            if !taken.is_empty() {
                return Some(Unstarted::Submitted(taken));
            }
        }
        if let Some(task) = self.attached.as_ref().and_then(|a| a.source().take()) {
            return Some(Unstarted::One(task.0));
        }
        #[cfg(feature = "alloc")]
        if let Some(entry) = self.waiting.pop_back() {
            return Some(Unstarted::One(entry.task));
        }
        ring.pop_last_queued()
            .map(|entry| Unstarted::One(entry.task))
    }
}

/// Unstarted tasks taken out of the queue, to be dropped outside it.
pub(super) enum Unstarted<F> {
    One(F),
    /// Submissions, oldest first.
    #[cfg(feature = "alloc")]
    Submitted(submitter::Taken<F>),
}

impl<F, const N: usize, T, S> State<F, N, T, S>
where
    F: IntoFuture,
    T: Timing,
    S: FnMut(&F::Output) -> bool,
{
    /// [`Stop::Examine`]: runs a predicate installed on a live queue over
    /// the outputs that finished before it, in the order the queue yields
    /// them: the latest (see `settle`), those waiting in `ready`, then the
    /// rest in start order. The first rejection stops the queue as `settle`
    /// would have (in completion order it is yielded next). `Examine` is
    /// cleared and the latest marked examined first: a panicking predicate
    /// is not asked again (as in `settle_slow`), about that output or the
    /// ones after it.
    #[cold]
    #[inline(never)]
    fn examine_finished(&mut self, mut ring: Pin<&mut Ring<F, T, N>>) {
        self.stop = Stop::No;
        let Some(is_rejection) = &mut self.stop_when else {
            return;
        };
        let latest = match ring.latest() {
            Latest::Unexamined(index) => Some(index),
            Latest::Examined(_) | Latest::None => None,
        };
        if let Some(index) = latest {
            // Before the predicate runs (see `settle_slow`).
            ring.as_mut().examined(index);
        }
        #[cfg(feature = "alloc")]
        let ready = &self.ready;
        #[cfg(not(feature = "alloc"))]
        let ready: &[usize] = &[];
        let in_start_order = (0..ring.started()).map(|offset| ring.index(offset));
        let order: &mut dyn Iterator<Item = usize> = match self.order {
            Yield::InCompletionOrder => &mut latest.into_iter().chain(ready.iter().copied()).chain(
                in_start_order
                    .clone()
                    .filter(|index| Some(*index) != latest && !ready.contains(index)),
            ),
            Yield::InSubmissionOrder => &mut in_start_order.clone(),
        };
        let mut rejection = None;
        for index in order {
            if ring.has_outcome(index) && ring.output(index).is_none_or(&mut *is_rejection) {
                rejection = Some(index);
                break;
            }
        }
        if let Some(index) = rejection {
            self.stop = Stop::At(index);
            // In completion order the results yielded before it still come
            // out (the latest, then `ready` up to it); `enforce_stop` keeps
            // them and drops the rest.
            #[cfg(feature = "alloc")]
            if self.order == Yield::InCompletionOrder {
                let kept = self.ready.iter().position(|&i| i == index).map_or(0, |k| k + 1);
                self.ready.truncate(kept);
            }
        }
    }

    /// Handles the outcome of the task that finished last, if it still
    /// needs it: `stop_when` looks at it (once; a timeout is a rejection
    /// when stopping), then, in completion order, returns its slot, to be
    /// yielded next. Also the first thing a poll does, which finishes what
    /// a panic interrupted.
    #[inline(always)]
    fn settle(&mut self, ring: Pin<&mut Ring<F, T, N>>) -> Option<usize> {
        match ring.latest() {
            // Nothing to do (the common case).
            Latest::None if self.stop == Stop::No => return None,
            // No predicate to run: nothing to examine, nothing to stop.
            Latest::Unexamined(index) if self.stop_when.is_none() && self.stop == Stop::No => {
                return if self.order == Yield::InCompletionOrder {
                    Some(index)
                } else {
                    ring.forget_latest(); // it waits for its turn
                    None
                };
            }
            _ => {}
        }
        self.settle_slow(ring)
    }

    /// [`Self::settle`] with a predicate to run or a stop to enforce.
    #[inline(never)]
    fn settle_slow(&mut self, mut ring: Pin<&mut Ring<F, T, N>>) -> Option<usize> {
        if self.stop == Stop::Examine {
            self.examine_finished(ring.as_mut());
        }
        if let Latest::Unexamined(index) = ring.latest() {
            // Examined first: a panicking `stop_when` is not asked again,
            // and the output counts as no rejection.
            ring.as_mut().examined(index);
            if let Some(is_rejection) = &mut self.stop_when {
                if ring.output(index).is_none_or(is_rejection) {
                    self.stop = Stop::At(index);
                }
            }
        }
        self.enforce_stop(ring.as_mut());
        match ring.latest() {
            Latest::Examined(index) if self.order == Yield::InCompletionOrder => Some(index),
            Latest::Examined(_) => {
                // It waits for its turn.
                ring.forget_latest();
                None
            }
            Latest::Unexamined(_) | Latest::None => None,
        }
    }

    /// After a stop, drops what must not run or be yielded any more: the
    /// submissions, the waiting tasks, and the window's entries after the
    /// rejection (in completion order, all but the rejection; once it is
    /// yielded, everything). Each is taken out before it is dropped, so
    /// after a panicking destructor the next call goes on.
    fn enforce_stop(&mut self, ring: Pin<&mut Ring<F, T, N>>) {
        if !self.is_stopped() {
            return;
        }
        #[cfg(feature = "alloc")]
        {
            if let Some(inbox) = &self.inbox {
                inbox.0.close_for_submitters();
                for task in inbox.0.take_all() {
                    drop(task);
                }
            }
            while let Some(task) = self.waiting.pop_back() {
                drop(task);
            }
        }
        if let Some(attached) = &self.attached {
            attached.source().close();
            while let Some(task) = attached.source().take() {
                drop(task);
            }
        }
        match (self.stop, self.order) {
            (Stop::No | Stop::Examine, _) => {}
            (Stop::At(index), Yield::InSubmissionOrder) => ring.truncate_after(index),
            #[cfg(feature = "alloc")]
            (Stop::At(index), Yield::InCompletionOrder) if !self.ready.is_empty() => {
                // Results batched before a predicate was installed, up to
                // the rejection (`examine_finished`).
                let (ready, latest) = (&self.ready, ring.latest());
                ring.retain_finished(|i| {
                    i == index || ready.contains(&i) || latest == Latest::Examined(i)
                });
            }
            (Stop::At(index), Yield::InCompletionOrder) => ring.retain_only(index),
            (Stop::Done, _) => ring.clear(),
        }
    }

    /// Takes the outcome of slot `index`, finished and settled. Runs no
    /// foreign code: the output is returned, never dropped here.
    fn take(&mut self, ring: Pin<&mut Ring<F, T, N>>, index: usize) -> T::Item<F::Output> {
        let out = ring.take(index).expect("a finished slot");
        if self.stop == Stop::At(index) {
            // Everything else is gone already (`enforce_stop`).
            self.stop = Stop::Done;
        }
        T::report(out)
    }

    /// In start order: the oldest result, if it is there.
    fn take_oldest(&mut self, ring: Pin<&mut Ring<F, T, N>>) -> Option<T::Item<F::Output>> {
        let (index, out) = ring.take_oldest()?;
        if self.stop == Stop::At(index) {
            self.stop = Stop::Done;
        }
        Some(T::report(out))
    }

    /// Polls the running tasks that may have progressed; in completion
    /// order, returns the slot of the first that finished (settled, not
    /// taken yet).
    #[cfg(feature = "alloc")]
    fn poll_running(&mut self, mut ring: Pin<&mut Ring<F, T, N>>) -> Option<usize> {
        // In completion order without a predicate, the tasks that finish in
        // one pass are all kept, in the order they finished, and yielded by
        // the next polls without registering or taking the flags again.
        let batch = self.stop_when.is_none() && self.order == Yield::InCompletionOrder;
        // Where a pass resumes after settling a finished task: each task is
        // polled at most once per call.
        let mut from = 0;
        loop {
            let mut finished = None;
            let bits = self.wake.as_ref()?;
            let (wakers, ready) = (&self.wakers, &mut self.ready);
            bits.for_each_woken(from, |index| {
                if index >= N || !ring.is_running(index) {
                    return true; // padding bits, stale wake-ups
                }
                let Some(waker) = &wakers[index] else {
                    return true;
                };
                match ring
                    .as_mut()
                    .poll_slot(index, &mut Context::from_waker(waker))
                {
                    Progress::Finished if batch => {
                        // Nothing to examine: it waits in `ready`.
                        ring.as_mut().forget_latest();
                        ready.push_back(index);
                        true
                    }
                    Progress::Finished => {
                        finished = Some(index);
                        false
                    }
                    Progress::Idle | Progress::Pending => true,
                }
            });
            if let Some(index) = self.ready.pop_front() {
                return Some(index);
            }
            // The unvisited flags (after the finished task) were put back:
            // settle the finished task (which may stop the queue), then go
            // on from the next index. The flags before it were all visited
            // in this call; one set again since (a task that woke itself,
            // which woke this queue's waker too) waits for the next poll.
            from = finished? + 1;
            if let Some(index) = self.settle(ring.as_mut()) {
                return Some(index);
            }
        }
    }

    /// Polls every running task with the caller's waker (no per-task wakers
    /// without `alloc`); in completion order, returns the slot of the first
    /// that finished (settled, not taken yet).
    #[cfg(not(feature = "alloc"))]
    fn poll_running(
        &mut self,
        mut ring: Pin<&mut Ring<F, T, N>>,
        cx: &mut Context<'_>,
    ) -> Option<usize> {
        let mut offset = 0;
        let mut left = ring.running();
        while left > 0 && offset < ring.started() {
            let index = ring.index(offset);
            offset += 1;
            if !ring.is_running(index) {
                continue;
            }
            left -= 1;
            if let Progress::Finished = ring.as_mut().poll_slot(index, cx) {
                if let Some(index) = self.settle(ring.as_mut()) {
                    return Some(index);
                }
                // A stop may have dropped entries: walk what is left.
                if self.is_stopped() {
                    return None;
                }
            }
        }
        None
    }

    /// Whether the rate limit lets one more task start now. The window's
    /// timer is polled first, whatever the count: a window that ended
    /// (even with starts to spare) is closed before this start is counted,
    /// so the start opens a new one. (Counting it in the stale window
    /// would let one start more than `starts` happen within one `per`.)
    fn rate_allows(
        &mut self,
        mut window: Pin<&mut Option<T::Sleep>>,
        cx: &mut Context<'_>,
    ) -> bool {
        let Some(rate) = &mut self.rate else {
            return true;
        };
        let open = match window.as_mut().as_pin_mut() {
            Some(timer) => timer.poll(cx).is_pending(),
            None => false,
        };
        if !open {
            // No window, or it is over: the next start opens a new one.
            // The count first: dropping the timer may panic (the slot is
            // still left `None`).
            rate.started = 0;
            window.set(None);
        }
        rate.started < rate.cap
    }

    /// Tasks waiting to start, in the window or beyond it.
    fn has_unstarted(&self, ring: &Ring<F, T, N>) -> bool {
        ring.queued() > 0 || self.waiting_len() > 0
    }

    /// Whether a poll may start one more task now (the rate limit aside):
    /// not paused or stopped, fewer than the limit running, one waiting
    /// — and, in start order, no result ready to yield (the poll yields
    /// it first; the next one starts more).
    fn may_start(&self, ring: &Ring<F, T, N>) -> bool {
        !self.paused
            && !self.is_stopped()
            && ring.running() < self.max_running()
            && self.has_unstarted(ring)
            && !(self.order == Yield::InSubmissionOrder && ring.oldest_finished())
    }

    /// Starts the next task — the window's first queued one, else the
    /// first waiting beyond the window, in a new window entry — and polls
    /// it once (opening a rate-limit window first if there is none).
    /// `None` if there is none, or no room in the window.
    fn start_next(
        &mut self,
        mut ring: Pin<&mut Ring<F, T, N>>,
        mut window: Pin<&mut Option<T::Sleep>>,
        cx: &mut Context<'_>,
    ) -> Option<(usize, Progress)> {
        #[cfg(feature = "alloc")]
        let from_waiting = ring.queued() == 0;
        #[cfg(not(feature = "alloc"))]
        let from_waiting = false;
        if from_waiting && !ring.as_mut().has_room() {
            return None;
        }
        if let Some(rate) = &mut self.rate {
            if window.is_none() {
                window.set(Some(self.timing.sleep(rate.per)));
            }
            rate.started += 1;
        }
        let timing = &mut self.timing;
        let timer = |limit| timing.deadline(limit);
        #[cfg(feature = "alloc")]
        let index = if from_waiting {
            let entry = self.waiting.pop_front()?;
            match ring.as_mut().start_task(entry, timer) {
                Ok(index) => index,
                Err(_) => unreachable!("checked: room, nothing queued"),
            }
        } else {
            ring.as_mut().start_next(timer)?
        };
        #[cfg(not(feature = "alloc"))]
        let index = ring.as_mut().start_next(timer)?;
        #[cfg(feature = "alloc")]
        let progress = {
            let _ = cx;
            let bits = self.wake.as_ref().expect("made at the start of the poll");
            // A flag the slot's previous task left (it woke itself as it
            // finished) would poll this one for nothing.
            bits.forget(index);
            let waker = self.wakers[index].get_or_insert_with(|| bits.waker(index));
            ring.poll_slot(index, &mut Context::from_waker(waker))
        };
        #[cfg(not(feature = "alloc"))]
        let progress = ring.poll_slot(index, cx);
        Some((index, progress))
    }

    /// Registers `cx`'s waker with the inboxes, then reads whether a
    /// submission may still come (in that order: see `Inbox::is_open`).
    fn register_and_check_open(&mut self, cx: &mut Context<'_>) -> bool {
        let mut open = false;
        #[cfg(feature = "alloc")]
        {
            if let Some(inbox) = &self.inbox {
                inbox.0.register(cx.waker());
                open |= inbox.0.is_open();
            }
            if self.wake.is_none() {
                self.wake = Some(WakeBits::new(N, false));
                if self.stop_when.is_none() && self.order == Yield::InCompletionOrder {
                    // The batch of finished tasks (see `poll_running`).
                    self.ready.reserve_exact(self.max_running());
                }
            }
            if let Some(bits) = &self.wake {
                bits.register(cx.waker());
            }
        }
        if let Some(attached) = &self.attached {
            attached.source().register(cx.waker());
            open |= attached.source().is_open();
        }
        open && !self.closed
    }

    #[inline(always)] // its one caller is `Stream::poll_next`
    pub(super) fn poll_next(
        &mut self,
        mut ring: Pin<&mut Ring<F, T, N>>,
        mut window: Pin<&mut Option<T::Sleep>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T::Item<F::Output>>> {
        // 0. Finish what a panic interrupted: drop a future whose poll
        // panicked, settle an output, go on with a stop.
        ring.as_mut().bury();
        if self.next_order.is_some() && ring.finished() == 0 {
            // No result waits in the old order any more (see `next_order`;
            // results finish only inside a poll, so this is the first poll
            // that finds none).
            self.order = self.next_order.take().unwrap_or(self.order);
        }
        if let Some(index) = self.settle(ring.as_mut()) {
            return Poll::Ready(Some(self.take(ring, index)));
        }
        // A result already there needs no waker: yield it at once.
        #[cfg(feature = "alloc")]
        if let Some(index) = self.ready.pop_front() {
            return Poll::Ready(Some(self.take(ring, index)));
        }
        if self.order == Yield::InSubmissionOrder {
            if let Some(out) = self.take_oldest(ring.as_mut()) {
                return Poll::Ready(Some(out));
            }
        }

        // Register first, then look (see `wake_set` and `Inbox::is_open`).
        let open = self.register_and_check_open(cx) && !self.is_stopped();

        // 1. The running tasks.
        if ring.running() > 0 {
            #[cfg(feature = "alloc")]
            let finished = self.poll_running(ring.as_mut());
            #[cfg(not(feature = "alloc"))]
            let finished = self.poll_running(ring.as_mut(), cx);
            if let Some(index) = finished {
                return Poll::Ready(Some(self.take(ring, index)));
            }
        }

        // 2. Take the submissions; start tasks, each polled once, while
        // fewer than the limit run (a finished task does not count, even
        // while its result waits for its turn), until one has a result to
        // yield.
        self.refill(ring.as_mut());
        while self.may_start(&ring) && self.rate_allows(window.as_mut(), cx) {
            let Some((_, progress)) = self.start_next(ring.as_mut(), window.as_mut(), cx) else {
                break;
            };
            if let Progress::Finished = progress {
                if let Some(index) = self.settle(ring.as_mut()) {
                    return Poll::Ready(Some(self.take(ring, index)));
                }
            }
        }

        // 3. In start order, the oldest result if it is there.
        if self.order == Yield::InSubmissionOrder {
            if let Some(out) = self.take_oldest(ring.as_mut()) {
                return Poll::Ready(Some(out));
            }
        }

        if ring.held() == 0 && self.waiting_len() == 0 && !open {
            self.exhausted = true;
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
