//! `TaskQueue`: deferred work started under a concurrency limit, results as
//! a [`Stream`].
//!
//! The seed's "Use case: Task Queue" awaits a list of deferred fetches one
//! after another. [`TaskQueue`] is that loop done properly — what `p-queue`
//! and `p-limit` give JavaScript, and `futures::stream::Buffered` /
//! `BufferUnordered` give Rust — with lazy start, without an executor and
//! without a heap:
//!
//! - a pushed task is not started (not even converted with
//!   [`IntoFuture::into_future`]) until the queue starts it, when a running
//!   slot is free and the queue is polled;
//! - at most [`concurrency`](TaskQueue::concurrency) tasks are in flight
//!   (started, result not yet yielded; default 1: the seed's loop);
//! - results come out as a [`Stream`], in submission or completion order
//!   ([`Yield`]);
//! - on a rejection it keeps going or stops ([`OnRejection`]);
//! - dropping the queue drops unstarted tasks unrun and running ones in
//!   place.
//!
//! See [`TaskQueue`] for how it stores and wakes its tasks.

mod drain;
mod options;
mod ring;
#[cfg(feature = "alloc")]
mod submitter;

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll};

#[cfg(feature = "alloc")]
use alloc::collections::VecDeque;
#[cfg(feature = "alloc")]
use alloc::sync::Arc;
#[cfg(feature = "alloc")]
use core::task::Waker;

use futures_core::Stream;
use futures_core::stream::FusedStream;
use pin_project::pin_project;

pub use drain::Drain;
pub use options::{OnRejection, Outcome, PushError, Yield};
use ring::{Latest, Progress, Ring};
#[cfg(feature = "alloc")]
pub use submitter::Submitter;

#[cfg(feature = "alloc")]
use crate::wake_set::WakeBits;

/// Inline window of a queue made by [`TaskQueue::new`], in tasks.
///
/// Choose another with [`TaskQueue::with_capacity`].
///
/// ```
/// assert_eq!(deferral::DEFAULT_QUEUE_CAPACITY, 16);
/// ```
pub const DEFAULT_QUEUE_CAPACITY: usize = 16;

/// Deferred work started under a concurrency limit; results as a [`Stream`].
///
/// `F` is the task type: anything [`IntoFuture`] — a
/// [`DeferredPromise`](crate::DeferredPromise), an `async` block, a boxed
/// future for heterogeneous tasks. `N` is the inline window, in tasks (see
/// Storage below). The queue must be pinned to be polled
/// (`core::pin::pin!`, or `Box::pin`).
///
/// The seed's sequential loop, with deferred promises that start only when
/// their turn comes:
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::{DeferredPromise, TaskQueue};
/// use futures::StreamExt;
/// use std::sync::{Arc, Mutex};
///
/// let started = Arc::new(Mutex::new(Vec::new()));
/// let mut queue = core::pin::pin!(TaskQueue::new()); // concurrency 1
/// for url in 1..=4 {
///     let started = started.clone();
///     let fetch = DeferredPromise::lazy(move || async move {
///         started.lock().unwrap().push(url);
///         Ok::<_, ()>(url * 10)
///     });
///     queue.as_mut().push(fetch).unwrap();
/// }
/// assert!(started.lock().unwrap().is_empty()); // nothing started yet
/// assert_eq!(queue.next().await, Some(Ok(10)));
/// assert_eq!(*started.lock().unwrap(), [1]); // one at a time
/// assert_eq!(queue.as_mut().drain().await, 3);
/// # });
/// ```
///
/// # Storage
///
/// The queue holds an inline window of `N` slots, used as a ring in
/// submission order: the tasks it started (running, or finished with an
/// output waiting for its turn) and the oldest unstarted ones. The window
/// spans from the oldest task not yet yielded to the newest, so in
/// completion order a slow old task keeps the slots after it in use. Without `alloc` a push into a full window hands
/// the task back ([`PushError::Full`]); with `alloc` the tasks beyond the
/// window wait in a `VecDeque`, unbounded, and enter the window as it frees
/// up. Running tasks always live in the window, pinned there, so at most `N`
/// run at once whatever the concurrency.
///
/// # Wake-ups
///
/// With `alloc`, each window slot gets its own waker (lazily, one allocation
/// per slot for the queue's lifetime) that sets the slot's flag in a shared
/// bitset and wakes the queue (the mechanism of the
/// scopes' concurrent cleanup): a wake-up polls only the tasks that were
/// woken. Without `alloc` a per-task waker would have to point into the
/// (stack-pinned) queue and could outlive it, which is unsound, so every task
/// is polled with the caller's waker and a wake-up polls the running tasks —
/// at most `concurrency`, never the unstarted ones — after walking the
/// started part of the window (at most `N` slots). Either way the total poll
/// work is linear in the number of tasks (`benches/queue.rs` measures it).
///
/// # Panics
///
/// A panic in a task (its `into_future` or its `poll`), in a destructor (of
/// a task, a future or an output the queue drops), in the
/// [`stop_when`](Self::stop_when) predicate or in a waker propagates out of
/// the queue method that ran it. The queue stays consistent and usable,
/// like `FuturesUnordered`:
///
/// - a task whose `into_future` or `poll` panicked is gone: it yields
///   nothing, is never polled again, and its future is dropped in place by
///   the next poll (or with the queue), not while the panic unwinds; it no
///   longer counts towards the concurrency limit;
/// - a panicking destructor of a finished future does not lose the output,
///   and a panicking `stop_when` counts as "not a rejection": the output is
///   yielded in its turn;
/// - when dropping tasks, futures or outputs (a stop, or the queue's drop)
///   one destructor panics, the next poll, or the drop itself, goes on
///   with the rest;
/// - the other tasks keep going, and the next poll continues with them.
///
/// Every task is started at most once and every task, future and output is
/// dropped exactly once. As with any Rust collection, a second panic while
/// the first one unwinds (two panicking destructors in one queue drop, say)
/// aborts the process.
#[pin_project]
pub struct TaskQueue<F: IntoFuture, const N: usize = DEFAULT_QUEUE_CAPACITY> {
    /// Pinned: running tasks live here.
    #[pin]
    ring: Ring<F, N>,
    state: State<F, N>,
}

/// Whether the queue stopped on a rejection, and how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Not stopped.
    No,
    /// Stopped on the rejection in slot `.0`, not yielded yet: nothing
    /// after it is kept (in completion order, nothing else at all).
    At(usize),
    /// The rejection was yielded: nothing is kept, the stream ends.
    Done,
}

/// Everything but the window: never pinned.
struct State<F: IntoFuture, const N: usize> {
    concurrency: usize,
    order: Yield,
    stop_when: Option<fn(&F::Output) -> bool>,
    stop: Stop,
    /// `None` was returned and nothing was pushed since.
    exhausted: bool,
    /// Tasks beyond the window, oldest first.
    #[cfg(feature = "alloc")]
    waiting: VecDeque<F>,
    /// Per-slot wake flags, made at the first poll.
    #[cfg(feature = "alloc")]
    wake: Option<WakeBits>,
    /// Each slot's waker, made when the slot first runs a task.
    #[cfg(feature = "alloc")]
    wakers: [Option<Waker>; N],
    #[cfg(feature = "alloc")]
    inbox: Option<InboxOwner<F>>,
}

/// The queue's end of a submitter inbox: closes it when dropped.
#[cfg(feature = "alloc")]
struct InboxOwner<F>(Arc<submitter::Inbox<F>>);

#[cfg(feature = "alloc")]
impl<F> Drop for InboxOwner<F> {
    fn drop(&mut self) {
        self.0.close();
        drop(self.0.take_all());
    }
}

impl<F: IntoFuture> TaskQueue<F> {
    /// An empty queue with an inline window of [`DEFAULT_QUEUE_CAPACITY`]
    /// tasks, concurrency 1, [`Yield::InSubmissionOrder`] and
    /// [`OnRejection::KeepGoing`].
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new();
    /// assert!(queue.is_empty());
    /// ```
    pub const fn new() -> Self {
        TaskQueue::with_capacity()
    }

    /// An empty queue with an inline window of `M` tasks (`M > 0`, checked
    /// at compile time), otherwise as [`TaskQueue::new`].
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::with_capacity::<64>();
    /// assert_eq!(queue.capacity(), 64);
    /// ```
    pub const fn with_capacity<const M: usize>() -> TaskQueue<F, M> {
        TaskQueue {
            ring: Ring::new(),
            state: State {
                concurrency: 1,
                order: Yield::InSubmissionOrder,
                stop_when: None,
                stop: Stop::No,
                exhausted: false,
                #[cfg(feature = "alloc")]
                waiting: VecDeque::new(),
                #[cfg(feature = "alloc")]
                wake: None,
                #[cfg(feature = "alloc")]
                wakers: [const { None }; M],
                #[cfg(feature = "alloc")]
                inbox: None,
            },
        }
    }
}

impl<F: IntoFuture> Default for TaskQueue<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: IntoFuture, const N: usize> TaskQueue<F, N> {
    /// Keeps up to `limit` tasks in flight (default 1): started, and whose
    /// result has not been yielded yet — like `buffered(limit)`. So at most
    /// `limit` run at once, and the queue never runs more than `limit`
    /// results ahead of its consumer (with `limit` 1, the next task starts
    /// when the previous result is taken: the seed's loop). At most `N`
    /// whatever `limit` is: started tasks live in the inline window.
    ///
    /// # Panics
    ///
    /// If `limit` is 0: nothing could ever run.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new().concurrency(4);
    /// assert_eq!(queue.max_running(), 4);
    /// ```
    pub fn concurrency(mut self, limit: usize) -> Self {
        assert!(
            limit > 0,
            "TaskQueue::concurrency: the limit must be at least 1"
        );
        self.state.concurrency = limit;
        self
    }

    /// Chooses the order of the results (default
    /// [`Yield::InSubmissionOrder`]).
    ///
    /// ```
    /// use deferral::{TaskQueue, Yield};
    /// let _queue = TaskQueue::<core::future::Ready<u8>>::new().order(Yield::InCompletionOrder);
    /// ```
    pub fn order(mut self, order: Yield) -> Self {
        self.state.order = order;
        self
    }

    /// Stops on the first rejected output ([`OnRejection::Stop`]) or keeps
    /// going (the default), for outputs that are [`Outcome`]s, such as a
    /// [`DeferredPromise`](crate::DeferredPromise)'s `Result`.
    ///
    /// After a stop the queue starts nothing more, drops its unstarted tasks
    /// and the running ones whose results would come after the rejection,
    /// yields what comes before it and the rejection itself (in the chosen
    /// [`Yield`] order: in completion order the rejection is next), then
    /// ends; pushes are refused with [`PushError::Stopped`].
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::{OnRejection, PushError, TaskQueue};
    /// let mut queue = core::pin::pin!(TaskQueue::new().on_rejection(OnRejection::Stop));
    /// use core::future::ready;
    /// queue.as_mut().push(ready(Err::<u8, _>("no"))).unwrap();
    /// queue.as_mut().push(ready(Ok(1))).unwrap();
    /// assert_eq!(queue.as_mut().drain().await, 1);
    /// assert!(queue.is_stopped());
    /// let refused = queue.as_mut().push(ready(Ok(2)));
    /// assert!(matches!(refused, Err(PushError::Stopped(_))));
    /// # });
    /// ```
    pub fn on_rejection(self, on_rejection: OnRejection) -> Self
    where
        F::Output: Outcome,
    {
        match on_rejection {
            OnRejection::Stop => self.stop_when(<F::Output as Outcome>::is_rejection),
            OnRejection::KeepGoing => {
                let mut this = self;
                this.state.stop_when = None;
                this
            }
        }
    }

    /// [`OnRejection::Stop`] for any output: `is_rejection` decides.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new().stop_when(|n: &u32| *n == 0));
    /// for n in [3, 0, 5] {
    ///     queue.as_mut().push(async move { n }).unwrap();
    /// }
    /// assert_eq!(queue.collect::<Vec<_>>().await, [3, 0]);
    /// # });
    /// ```
    pub fn stop_when(mut self, is_rejection: fn(&F::Output) -> bool) -> Self {
        self.state.stop_when = Some(is_rejection);
        self
    }

    /// Adds a task at the end of the queue. It is not started here (nor
    /// converted with `into_future`): the queue starts it when it is polled
    /// and a running slot is free. Works while other tasks run.
    ///
    /// Refused (the task handed back) when the window is full without
    /// `alloc` ([`PushError::Full`]) and after a stop
    /// ([`PushError::Stopped`]).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// use core::future::ready;
    /// queue.as_mut().push(ready(1)).unwrap();
    /// assert_eq!(queue.next().await, Some(1));
    /// queue.as_mut().push(ready(2)).unwrap(); // after the first result
    /// assert_eq!(queue.next().await, Some(2));
    /// assert_eq!(queue.next().await, None);
    /// # });
    /// ```
    pub fn push(self: Pin<&mut Self>, task: F) -> Result<(), PushError<F>> {
        let this = self.project();
        this.state.push(this.ring, task)
    }

    /// A handle that pushes into this queue without `&mut` access, from
    /// another thread or from inside a running task (`alloc`). See
    /// [`Submitter`].
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// let submit = queue.as_mut().submitter();
    /// std::thread::spawn(move || submit.submit(async { 7 }).unwrap()).join().unwrap();
    /// assert_eq!(queue.next().await, Some(7));
    /// # });
    /// ```
    #[cfg(feature = "alloc")]
    pub fn submitter(self: Pin<&mut Self>) -> Submitter<F> {
        let state = self.project().state;
        let stopped = state.is_stopped();
        let inbox = &state
            .inbox
            .get_or_insert_with(|| InboxOwner(Arc::new(submitter::Inbox::new())))
            .0;
        if stopped {
            inbox.close();
        }
        Submitter {
            inbox: inbox.clone(),
        }
    }

    /// A future that runs the queue until it is empty (or stopped),
    /// discarding the results, and resolves to how many it discarded.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().push(async { "a" }).unwrap();
    /// assert_eq!(queue.as_mut().drain().await, 1);
    /// # });
    /// ```
    pub fn drain(self: Pin<&mut Self>) -> Drain<'_, F, N> {
        Drain {
            queue: self,
            drained: 0,
        }
    }

    /// Tasks held: running, finished with a result not yet yielded, and
    /// not started (submissions not yet taken by a poll are not counted).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().push(async {}).unwrap();
    /// assert_eq!(queue.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        #[cfg(feature = "alloc")]
        let waiting = self.state.waiting.len();
        #[cfg(not(feature = "alloc"))]
        let waiting = 0;
        self.ring.held() + waiting
    }

    /// Whether [`Self::len`] is 0.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// assert!(TaskQueue::<core::future::Ready<()>>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tasks started and not finished.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().push(async {}).unwrap();
    /// assert_eq!(queue.running(), 0); // not polled yet: nothing started
    /// ```
    pub fn running(&self) -> usize {
        self.ring.running()
    }

    /// The most tasks in flight at once: the concurrency, at most `N`.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<()>>::with_capacity::<2>().concurrency(8);
    /// assert_eq!(queue.max_running(), 2);
    /// ```
    pub fn max_running(&self) -> usize {
        self.state.max_running()
    }

    /// The inline window, `N`.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// assert_eq!(TaskQueue::<core::future::Ready<()>>::new().capacity(), 16);
    /// ```
    pub fn capacity(&self) -> usize {
        N
    }

    /// Whether the queue stopped on a rejection (see
    /// [`Self::on_rejection`]).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// assert!(!TaskQueue::<core::future::Ready<()>>::new().is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.state.is_stopped()
    }
}

impl<F: IntoFuture, const N: usize> State<F, N> {
    fn max_running(&self) -> usize {
        self.concurrency.min(N)
    }

    fn is_stopped(&self) -> bool {
        self.stop != Stop::No
    }

    fn push(&mut self, ring: Pin<&mut Ring<F, N>>, task: F) -> Result<(), PushError<F>> {
        if self.is_stopped() {
            return Err(PushError::Stopped(task));
        }
        self.exhausted = false;
        #[cfg(feature = "alloc")]
        if !self.waiting.is_empty() {
            self.waiting.push_back(task);
            return Ok(());
        }
        match ring.push(task) {
            Ok(()) => Ok(()),
            #[cfg(feature = "alloc")]
            Err(task) => {
                self.waiting.push_back(task);
                Ok(())
            }
            #[cfg(not(feature = "alloc"))]
            Err(task) => Err(PushError::Full(task)),
        }
    }

    /// Moves the submissions and the waiting tasks into the window.
    #[cfg(feature = "alloc")]
    fn refill(&mut self, mut ring: Pin<&mut Ring<F, N>>) {
        if self.is_stopped() {
            return; // `enforce_stop` drops them
        }
        if let Some(inbox) = &self.inbox {
            for task in inbox.0.take_all() {
                self.exhausted = false;
                self.waiting.push_back(task);
            }
        }
        while !ring.is_full() {
            let Some(task) = self.waiting.pop_front() else {
                break;
            };
            if let Err(task) = ring.as_mut().push(task) {
                self.waiting.push_front(task);
                break;
            }
        }
    }

    /// Handles the output of the task that finished last, if it still
    /// needs it: `stop_when` looks at it (once), then, in completion order,
    /// returns its slot, to be yielded next. Also the first thing a poll
    /// does, which finishes what a panic interrupted.
    fn settle(&mut self, mut ring: Pin<&mut Ring<F, N>>) -> Option<usize> {
        if let Latest::Unexamined(index) = ring.latest() {
            // Examined first: a panicking `stop_when` is not asked again,
            // and the output counts as no rejection.
            ring.as_mut().examined(index);
            if let Some(is_rejection) = self.stop_when {
                if ring.output(index).is_some_and(is_rejection) {
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
    fn enforce_stop(&mut self, ring: Pin<&mut Ring<F, N>>) {
        if self.stop == Stop::No {
            return;
        }
        #[cfg(feature = "alloc")]
        {
            if let Some(inbox) = &self.inbox {
                inbox.0.close();
                self.waiting.extend(inbox.0.take_all());
            }
            while let Some(task) = self.waiting.pop_back() {
                drop(task);
            }
        }
        match (self.stop, self.order) {
            (Stop::No, _) => {}
            (Stop::At(index), Yield::InSubmissionOrder) => ring.truncate_after(index),
            (Stop::At(index), Yield::InCompletionOrder) => ring.retain_only(index),
            (Stop::Done, _) => ring.clear(),
        }
    }

    /// Takes the output of slot `index`, finished and settled. Runs no
    /// foreign code: the output is returned, never dropped here.
    fn take(&mut self, ring: Pin<&mut Ring<F, N>>, index: usize) -> F::Output {
        let out = ring.take(index).expect("a finished slot");
        if self.stop == Stop::At(index) {
            // Everything else is gone already (`enforce_stop`).
            self.stop = Stop::Done;
        }
        out
    }

    /// Polls the running tasks that may have progressed; in completion
    /// order, returns the slot of the first that finished (settled, not
    /// taken yet).
    #[cfg(feature = "alloc")]
    fn poll_running(&mut self, mut ring: Pin<&mut Ring<F, N>>) -> Option<usize> {
        loop {
            let mut finished = false;
            let bits = self.wake.as_ref()?;
            let wakers = &self.wakers;
            bits.for_each_woken(|index| {
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
                    Progress::Finished => {
                        finished = true;
                        false
                    }
                    Progress::Idle | Progress::Pending => true,
                }
            });
            // The unvisited flags were put back: settle the finished task
            // (which may stop the queue), then go on.
            if !finished {
                return None;
            }
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
        mut ring: Pin<&mut Ring<F, N>>,
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

    /// Starts the task in the oldest queued slot and polls it once.
    fn start_next(
        &mut self,
        mut ring: Pin<&mut Ring<F, N>>,
        cx: &mut Context<'_>,
    ) -> Option<(usize, Progress)> {
        let index = ring.as_mut().start_next()?;
        #[cfg(feature = "alloc")]
        let progress = {
            let _ = cx;
            let bits = self.wake.as_ref().expect("made at the start of the poll");
            let waker = self.wakers[index].get_or_insert_with(|| bits.waker(index));
            ring.poll_slot(index, &mut Context::from_waker(waker))
        };
        #[cfg(not(feature = "alloc"))]
        let progress = ring.poll_slot(index, cx);
        Some((index, progress))
    }

    fn poll_next(
        &mut self,
        mut ring: Pin<&mut Ring<F, N>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<F::Output>> {
        // 0. Finish what a panic interrupted: drop a future whose poll
        // panicked, settle an output, go on with a stop.
        ring.as_mut().bury();
        if let Some(index) = self.settle(ring.as_mut()) {
            return Poll::Ready(Some(self.take(ring, index)));
        }

        // Register first, then look (see `wake_set`).
        #[cfg(feature = "alloc")]
        {
            if let Some(inbox) = &self.inbox {
                inbox.0.register(cx.waker());
            }
            self.wake
                .get_or_insert_with(|| WakeBits::new(N, false))
                .register(cx.waker());
        }

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

        // 2. Start tasks up to the limit, each polled once.
        #[cfg(feature = "alloc")]
        self.refill(ring.as_mut());
        while !self.is_stopped() && ring.in_flight() < self.max_running() {
            let Some((_, progress)) = self.start_next(ring.as_mut(), cx) else {
                break;
            };
            if let Progress::Finished = progress {
                if let Some(index) = self.settle(ring.as_mut()) {
                    return Poll::Ready(Some(self.take(ring, index)));
                }
            }
            #[cfg(feature = "alloc")]
            self.refill(ring.as_mut());
        }

        // 3. In submission order, the oldest result if it is there.
        if self.order == Yield::InSubmissionOrder {
            if let Some((index, out)) = ring.as_mut().take_oldest() {
                if self.stop == Stop::At(index) {
                    self.stop = Stop::Done;
                }
                return Poll::Ready(Some(out));
            }
        }

        #[cfg(feature = "alloc")]
        let waiting = self.waiting.is_empty();
        #[cfg(not(feature = "alloc"))]
        let waiting = true;
        if ring.len() == 0 && waiting {
            self.exhausted = true;
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

impl<F: IntoFuture, const N: usize> Stream for TaskQueue<F, N> {
    type Item = F::Output;

    /// Starts tasks up to the limit and yields the next result; `None`
    /// when the queue is empty (or stopped and drained). A queue that
    /// returned `None` yields again after a new push, like
    /// `FuturesUnordered`; polling it again without one returns `None`.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = self.project();
        this.state.poll_next(this.ring, cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

impl<F: IntoFuture, const N: usize> FusedStream for TaskQueue<F, N> {
    /// True once the stream returned `None` and nothing was pushed since
    /// (a [`Submitter`]'s submission is noticed by the next poll only).
    fn is_terminated(&self) -> bool {
        self.state.exhausted
    }
}

impl<F: IntoFuture, const N: usize> fmt::Debug for TaskQueue<F, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskQueue")
            .field("capacity", &N)
            .field("concurrency", &self.state.concurrency)
            .field("order", &self.state.order)
            .field("len", &self.len())
            .field("running", &self.running())
            .field("stopped", &self.state.is_stopped())
            .finish_non_exhaustive()
    }
}
