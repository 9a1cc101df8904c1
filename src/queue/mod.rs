//! `TaskQueue`: deferred work started under a concurrency limit, results as
//! a [`Stream`].
//!
//! A list of deferred fetches awaited one after another is the simplest
//! task queue. [`TaskQueue`] is that loop done properly — what `p-queue`
//! and `p-limit` give JavaScript, and `futures::stream::Buffered` /
//! `BufferUnordered` give Rust — with lazy start, without an executor and
//! without a heap:
//!
//! - a pushed task is not started (not even converted with
//!   [`IntoFuture::into_future`]) until the queue starts it, when a running
//!   slot is free and the queue is polled;
//! - at most [`concurrency`](TaskQueue::concurrency) tasks are in flight
//!   (started, result not yet yielded; default 1: one after another);
//! - tasks start by [priority](TaskQueue::push_with_priority), then in
//!   submission order; the queue can be [paused](TaskQueue::pause),
//!   [cleared](TaskQueue::clear), [closed](TaskQueue::close);
//! - results come out as a [`Stream`], in start or completion order
//!   ([`Yield`]); [`until_idle`](TaskQueue::until_idle),
//!   [`on_idle`](TaskQueue::on_idle) and [`on_empty`](TaskQueue::on_empty)
//!   run it until p-queue's `onIdle` / `onEmpty` would resolve;
//! - [`Submitter`]s (`alloc`) and a `static` [`Inbox`] (no heap, interrupt
//!   handlers) feed it from elsewhere and keep it open, like an mpsc
//!   channel's senders;
//! - a [`Timer`] factory gives it per-task [timeouts](TaskQueue::timeout)
//!   and a [rate limit](TaskQueue::rate_limit), without a runtime;
//! - on a rejection it keeps going or stops ([`OnRejection`]);
//! - dropping the queue drops unstarted tasks unrun and running ones in
//!   place.
//!
//! See [`TaskQueue`] for how it stores and wakes its tasks.

#[cfg(feature = "alloc")]
mod boxed;
mod drain;
mod inbox;
mod options;
mod ring;
#[cfg(feature = "alloc")]
mod submitter;
mod timer;

use core::fmt;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};
use core::time::Duration;

#[cfg(feature = "alloc")]
use alloc::collections::VecDeque;
#[cfg(feature = "alloc")]
use alloc::sync::Arc;
#[cfg(feature = "alloc")]
use core::task::Waker;

use futures_core::Stream;
use futures_core::stream::FusedStream;

#[cfg(feature = "alloc")]
pub use boxed::BoxedTask;
pub use drain::{Drain, Until};
pub use inbox::Inbox;
use inbox::Source;
pub use options::{
    AttachError, OnRejection, Outcome, PushAllError, PushError, Yield, ZeroConcurrency,
};
use ring::{Latest, Progress, Ring};
#[cfg(feature = "alloc")]
pub use submitter::Submitter;
use timer::RateLimit;
pub use timer::{Clock, Deadline, NoSleep, NoTimer, TimedOut, Timer, Timing};

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

/// The default stop predicate type of a [`TaskQueue`]: a function pointer
/// (what [`TaskQueue::on_rejection`] stores). A queue built with a closure
/// ([`TaskQueue::stop_when`]) names the closure's type instead.
///
/// ```
/// use deferral::{NoTimer, OnRejection, StopFn, TaskQueue};
/// type Job = core::future::Ready<Result<u8, ()>>;
/// let _queue: TaskQueue<Job, 16, NoTimer, StopFn<Result<u8, ()>>> =
///     TaskQueue::new().on_rejection(OnRejection::Stop);
/// ```
pub type StopFn<O> = fn(&O) -> bool;

/// Deferred work started under a concurrency limit; results as a [`Stream`].
///
/// `F` is the task type: anything [`IntoFuture`] — a
/// [`DeferredPromise`](crate::DeferredPromise), an `async` block, a
/// [`BoxedTask`] for tasks of mixed types. `N` is the inline window, in
/// tasks (see Storage below). `T` says what the queue can do with time
/// ([`NoTimer`], [`Clock`], [`Deadline`]), `S` is the stop predicate's type
/// ([`Self::stop_when`]). The queue must be pinned to be polled
/// (`core::pin::pin!`, or `Box::pin`).
///
/// A sequential loop over deferred promises that start only when their
/// turn comes:
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
/// # When the stream ends
///
/// A queue fed only by [`Self::push`] ends its stream (`None`) when it
/// holds nothing, like `FuturesUnordered`, and yields again after the
/// next push. A queue that a [`Submitter`] or an [`Inbox`] can feed stays
/// open instead, like an mpsc receiver: while a submitter lives (or the
/// inbox is open) an empty queue is pending — it registers its waker and
/// is woken by the next submission, or when the last submitter goes — and
/// it ends once they are all gone (or [`Self::close`] was called) and its
/// work is done. A queue stopped on a rejection ends after the rejection.
/// To wait for "everything so far" on an open queue, use
/// [`Self::until_idle`] or [`Self::on_idle`].
///
/// # Storage
///
/// The queue holds an inline window of `N` slots, used as a ring in start
/// order: the tasks it started (running, or finished with an output waiting
/// for its turn) and the first unstarted ones (by priority, then submission
/// order). The window spans from the oldest task not yet yielded to the
/// newest, so in completion order a slow old task keeps the slots after it
/// in use. Without `alloc` a push into a full window hands the task back
/// ([`PushError::Full`]); with `alloc` the tasks beyond the window wait in
/// a `VecDeque` (sorted by priority, as p-queue does: a push of a higher
/// priority than waiting ones is a binary search and an insertion),
/// unbounded, and start from there into the window as it frees up.
/// Running tasks always live in the window, pinned there, so at most `N`
/// run at once whatever the concurrency.
///
/// # Wake-ups
///
/// With `alloc`, each window slot gets its own waker (lazily, for the
/// queue's lifetime) that sets the slot's flag in a shared bitset and wakes
/// the queue (the mechanism of the scopes' concurrent cleanup): a wake-up
/// polls only the tasks that were woken. Without `alloc` a per-task waker
/// would have to point into the (stack-pinned) queue and could outlive it,
/// which is unsound, so every task is polled with the caller's waker and a
/// wake-up polls the running tasks — at most `concurrency`, never the
/// unstarted ones — after walking the started part of the window (at most
/// `N` slots). Either way the total poll work is linear in the number of
/// tasks (`benches/queue.rs` measures it). A task's timeout timer is
/// polled with its task's waker, after the task, while it runs.
///
/// # Panics
///
/// A panic in a task (its `into_future` or its `poll`), in a destructor (of
/// a task, a future or an output the queue drops), in the
/// [`stop_when`](Self::stop_when) predicate, in the [`Timer`] factory or a
/// timer, or in a waker propagates out of the queue method that ran it.
/// The queue stays consistent and usable, like `FuturesUnordered`:
///
/// - a task whose `into_future` or `poll` (or its timer's poll, or the
///   factory making its timer) panicked is gone: it yields nothing, is
///   never polled again, and its future is dropped in place by the next
///   poll (or with the queue), not while the panic unwinds; it no longer
///   counts towards the concurrency limit;
/// - a panicking destructor of a finished future does not lose the output,
///   and a panicking `stop_when` counts as "not a rejection": the output is
///   yielded in its turn;
/// - when dropping tasks, futures or outputs (a stop, a clear, or the
///   queue's drop) one destructor panics, the next poll or clear, or the
///   drop itself, goes on with the rest;
/// - the other tasks keep going, and the next poll continues with them.
///
/// Every task is started at most once and every task, future and output is
/// dropped exactly once. As with any Rust collection, a second panic while
/// the first one unwinds (two panicking destructors in one queue drop, say)
/// aborts the process.
pub struct TaskQueue<
    F: IntoFuture,
    const N: usize = DEFAULT_QUEUE_CAPACITY,
    T: Timing = NoTimer,
    S = StopFn<<F as IntoFuture>::Output>,
> {
    /// Pinned: running tasks (and their timers) live here. Structurally
    /// pinned, like `window` (see `project`).
    ring: Ring<F, T::Sleep, N>,
    /// The rate limit's current window, from its first start.
    window: Option<T::Sleep>,
    state: State<F, N, T, S>,
}

/// `TaskQueue`'s fields, the pinned ones pinned.
struct TaskQueueProj<'a, F: IntoFuture, const N: usize, T: Timing, S> {
    ring: Pin<&'a mut Ring<F, T::Sleep, N>>,
    window: Pin<&'a mut Option<T::Sleep>>,
    state: &'a mut State<F, N, T, S>,
}

impl<F: IntoFuture, const N: usize, T: Timing, S> TaskQueue<F, N, T, S> {
    fn project(self: Pin<&mut Self>) -> TaskQueueProj<'_, F, N, T, S> {
        // SAFETY: `ring` and `window` are structurally pinned: never moved
        // out of a pinned queue (no by-value accessor, no `Drop` impl on
        // `TaskQueue` itself, not `repr(packed)`), and the auto-`Unpin`
        // impl requires both to be `Unpin`. `state` is not pinned.
        unsafe {
            let this = self.get_unchecked_mut();
            TaskQueueProj {
                ring: Pin::new_unchecked(&mut this.ring),
                window: Pin::new_unchecked(&mut this.window),
                state: &mut this.state,
            }
        }
    }
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
struct State<F: IntoFuture, const N: usize, T, S> {
    concurrency: usize,
    order: Yield,
    stop_when: Option<S>,
    stop: Stop,
    /// `None` was returned and nothing was pushed since.
    exhausted: bool,
    paused: bool,
    /// [`TaskQueue::close`]: no more pushes or submissions.
    closed: bool,
    timing: T,
    rate: Option<RateLimit>,
    /// Tasks beyond the window, in start order (priority, then
    /// submission), with their priorities.
    #[cfg(feature = "alloc")]
    waiting: VecDeque<(i32, F)>,
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
    inbox: Option<InboxOwner<F>>,
    attached: Option<Attached<F>>,
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

/// The queue's end of a `static` [`Inbox`]: closes it and drops what it
/// still holds when dropped.
///
/// A pointer, not a `&'static dyn Source<F>`: that type would require
/// `F: 'static` of every queue, attached or not.
struct Attached<F>(NonNull<dyn Source<F>>);

// SAFETY: made only from a `&'static Inbox<F, M>` with `F: Send` (see
// `TaskQueue::attach`), which is `Sync` (so `&Inbox` is `Send + Sync`).
unsafe impl<F: Send> Send for Attached<F> {}
// SAFETY: as for `Send`.
unsafe impl<F: Send> Sync for Attached<F> {}

impl<F> Attached<F> {
    fn source(&self) -> &dyn Source<F> {
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

impl<F: IntoFuture> TaskQueue<F> {
    /// An empty queue with an inline window of [`DEFAULT_QUEUE_CAPACITY`]
    /// tasks, concurrency 1, [`Yield::InSubmissionOrder`],
    /// [`OnRejection::KeepGoing`] and no timer.
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
            window: None,
            state: State {
                concurrency: 1,
                order: Yield::InSubmissionOrder,
                stop_when: None,
                stop: Stop::No,
                exhausted: false,
                paused: false,
                closed: false,
                timing: NoTimer,
                rate: None,
                #[cfg(feature = "alloc")]
                waiting: VecDeque::new(),
                #[cfg(feature = "alloc")]
                wake: None,
                #[cfg(feature = "alloc")]
                ready: VecDeque::new(),
                #[cfg(feature = "alloc")]
                wakers: [const { None }; M],
                #[cfg(feature = "alloc")]
                inbox: None,
                attached: None,
            },
        }
    }
}

impl<F: IntoFuture> Default for TaskQueue<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: IntoFuture, const N: usize, S> TaskQueue<F, N, NoTimer, S> {
    /// Gives the queue a [`Timer`] factory: any `FnMut(Duration) -> impl
    /// Future<Output = ()>`, such as a runtime's `sleep`. Then
    /// [`Self::rate_limit`] and [`Self::timeout`] can use it. The queue
    /// calls it when a task starts (for its timeout) and when a rate-limit
    /// window opens; nothing else in the queue knows about time.
    ///
    /// ```
    /// use core::time::Duration;
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new()
    ///     .timer(|_: Duration| core::future::pending::<()>()) // e.g. tokio::time::sleep
    ///     .rate_limit(10, Duration::from_secs(1));
    /// # drop(queue);
    /// ```
    pub fn timer<Mk: Timer>(self, timer: Mk) -> TaskQueue<F, N, Clock<Mk>, S> {
        TaskQueue {
            ring: self.ring.map_timer(|never| match never {}),
            window: None,
            state: self.state.convert(|NoTimer| Clock(timer), |s| s),
        }
    }
}

impl<F: IntoFuture, const N: usize, Mk: Timer, S> TaskQueue<F, N, Clock<Mk>, S> {
    /// Gives every task `timeout` from its start: a task still running then
    /// is dropped (in place, unfinished) and yields `Err(TimedOut)`; the
    /// others yield `Ok(output)` — the stream's item becomes
    /// `Result<F::Output, TimedOut>`. The timer is made from the queue's
    /// [`Timer`] factory when the task starts, so time spent waiting to
    /// start does not count (p-queue's `timeout`). When the queue stops on
    /// rejections ([`Self::on_rejection`], [`Self::stop_when`]), a timeout
    /// is a rejection.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::time::Duration;
    /// use deferral::{TaskQueue, TimedOut};
    /// use futures::StreamExt;
    /// // A timer that is already over: every task that does not finish at
    /// // its first poll times out.
    /// let mut queue = core::pin::pin!(
    ///     TaskQueue::new()
    ///         .timer(|_: Duration| core::future::ready(()))
    ///         .timeout(Duration::from_millis(10))
    /// );
    /// queue.as_mut().push(futures::future::Either::Left(core::future::ready(1))).unwrap();
    /// queue.as_mut().push(futures::future::Either::Right(core::future::pending())).unwrap();
    /// assert_eq!(queue.collect::<Vec<_>>().await, [Ok(1), Err(TimedOut)]);
    /// # });
    /// ```
    pub fn timeout(self, timeout: Duration) -> TaskQueue<F, N, Deadline<Mk>, S> {
        TaskQueue {
            ring: self.ring,
            window: self.window,
            state: self
                .state
                .convert(|Clock(timer)| Deadline { timer, timeout }, |s| s),
        }
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> TaskQueue<F, N, T, S> {
    /// Keeps up to `limit` tasks in flight (default 1): started, and whose
    /// result has not been yielded yet — like `buffered(limit)`. So at most
    /// `limit` run at once, and the queue never runs more than `limit`
    /// results ahead of its consumer (with `limit` 1, the next task starts
    /// when the previous result is taken). At most `N` whatever `limit` is:
    /// started tasks live in the inline window.
    ///
    /// # Panics
    ///
    /// If `limit` is 0: nothing could ever run. For a limit that comes from
    /// outside (configuration), [`Self::try_concurrency`] returns a typed
    /// error instead.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new().concurrency(4);
    /// assert_eq!(queue.max_running(), 4);
    /// ```
    pub fn concurrency(self, limit: usize) -> Self {
        match self.try_concurrency(limit) {
            Ok(queue) => queue,
            Err(_) => panic!("TaskQueue::concurrency: the limit must be at least 1"),
        }
    }

    /// [`Self::concurrency`], refusing 0 with a typed error that hands the
    /// queue back.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new();
    /// let queue = queue.try_concurrency(0).unwrap_err().into_inner();
    /// assert_eq!(queue.try_concurrency(3).unwrap().max_running(), 3);
    /// ```
    // The queue is handed back whole: that is the point of the error.
    #[allow(clippy::result_large_err)]
    pub fn try_concurrency(mut self, limit: usize) -> Result<Self, ZeroConcurrency<Self>> {
        if limit == 0 {
            return Err(ZeroConcurrency(self));
        }
        self.state.concurrency = limit;
        Ok(self)
    }

    /// Changes the concurrency limit of a running queue (p-queue's
    /// `queue.concurrency = n`): a lower limit lets the running tasks
    /// finish and starts none until fewer are in flight; a higher one
    /// starts more at the next poll. 0 is refused.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::<core::future::Ready<u8>>::new());
    /// queue.as_mut().set_concurrency(8).unwrap();
    /// assert_eq!(queue.max_running(), 8);
    /// assert!(queue.as_mut().set_concurrency(0).is_err());
    /// ```
    pub fn set_concurrency(self: Pin<&mut Self>, limit: usize) -> Result<(), ZeroConcurrency> {
        if limit == 0 {
            return Err(ZeroConcurrency(()));
        }
        self.project().state.concurrency = limit;
        Ok(())
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
    /// [`DeferredPromise`](crate::DeferredPromise)'s `Result`. Replaces a
    /// [`Self::stop_when`] predicate.
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
    pub fn on_rejection(self, on_rejection: OnRejection) -> TaskQueue<F, N, T>
    where
        F::Output: Outcome,
    {
        let stop = match on_rejection {
            OnRejection::Stop => Some(<F::Output as Outcome>::is_rejection as StopFn<F::Output>),
            OnRejection::KeepGoing => None,
        };
        TaskQueue {
            ring: self.ring,
            window: self.window,
            state: self.state.convert(|t| t, |_| stop),
        }
    }

    /// [`OnRejection::Stop`] for any output: `is_rejection` (any `FnMut`,
    /// it may capture) decides.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let limit = 4;
    /// let mut seen = 0;
    /// let mut queue = core::pin::pin!(TaskQueue::new().stop_when(move |n: &u32| {
    ///     seen += 1;
    ///     *n > limit || seen > 10
    /// }));
    /// for n in [3, 5, 1] {
    ///     queue.as_mut().push(async move { n }).unwrap();
    /// }
    /// assert_eq!(queue.collect::<Vec<_>>().await, [3, 5]);
    /// # });
    /// ```
    pub fn stop_when<P>(self, is_rejection: P) -> TaskQueue<F, N, T, P>
    where
        P: FnMut(&F::Output) -> bool,
    {
        TaskQueue {
            ring: self.ring,
            window: self.window,
            state: self.state.convert(|t| t, |_| Some(is_rejection)),
        }
    }

    /// Adds a task at the end of the queue (priority 0). It is not started
    /// here (nor converted with `into_future`): the queue starts it when
    /// it is polled and a running slot is free. Works while other tasks
    /// run.
    ///
    /// Refused, the task handed back, when the window is full without
    /// `alloc` ([`PushError::Full`]), after a stop
    /// ([`PushError::Stopped`]) and after [`Self::close`]
    /// ([`PushError::Closed`]).
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
        self.push_with_priority(task, 0)
    }

    /// Adds a task that starts before every waiting task of a lower
    /// priority, and after those of the same or a higher one (p-queue's
    /// `priority`: higher first, default 0, FIFO among equals). Running
    /// tasks are not affected. Refused as [`Self::push`] is; without
    /// `alloc`, a full window refuses any priority.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// use core::future::ready;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().push(ready("b")).unwrap();
    /// queue.as_mut().push_with_priority(ready("a"), 1).unwrap();
    /// queue.as_mut().push_with_priority(ready("c"), -1).unwrap();
    /// assert_eq!(queue.collect::<Vec<_>>().await, ["a", "b", "c"]);
    /// # });
    /// ```
    pub fn push_with_priority(
        self: Pin<&mut Self>,
        task: F,
        priority: i32,
    ) -> Result<(), PushError<F>> {
        let this = self.project();
        if this.state.closed {
            return Err(PushError::Closed(task));
        }
        this.state.push(this.ring, task, priority)
    }

    /// Pushes every task of `tasks` in order (p-queue's `addAll`), and
    /// returns how many. On the first refusal it stops and hands back the
    /// refused task and the tasks not pushed yet; those pushed stay.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new().concurrency(2));
    /// let pushed = queue.as_mut().push_all((1..=3).map(core::future::ready)).unwrap();
    /// assert_eq!(pushed, 3);
    /// assert_eq!(queue.collect::<Vec<_>>().await, [1, 2, 3]);
    /// # });
    /// ```
    pub fn push_all<I>(
        mut self: Pin<&mut Self>,
        tasks: I,
    ) -> Result<usize, PushAllError<F, I::IntoIter>>
    where
        I: IntoIterator<Item = F>,
    {
        let mut rest = tasks.into_iter();
        let mut pushed = 0;
        while let Some(task) = rest.next() {
            if let Err(refused) = self.as_mut().push(task) {
                return Err(PushAllError { refused, rest });
            }
            pushed += 1;
        }
        Ok(pushed)
    }

    /// A handle that pushes into this queue without `&mut` access, from
    /// another thread or from inside a running task (`alloc`); while one
    /// lives the queue stays open. See [`Submitter`].
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// let submit = queue.as_mut().submitter();
    /// std::thread::spawn(move || submit.submit(async { 7 }).unwrap()).join().unwrap();
    /// assert_eq!(queue.next().await, Some(7));
    /// assert_eq!(queue.next().await, None); // the submitter is gone
    /// # });
    /// ```
    #[cfg(feature = "alloc")]
    pub fn submitter(self: Pin<&mut Self>) -> Submitter<F> {
        let state = self.project().state;
        let closed = state.is_stopped() || state.closed;
        let inbox = &state
            .inbox
            .get_or_insert_with(|| InboxOwner(Arc::new(submitter::Inbox::new())))
            .0;
        if closed {
            inbox.close_for_submitters();
        }
        inbox.add_sender();
        state.exhausted = false;
        Submitter {
            inbox: inbox.clone(),
        }
    }

    /// Takes its submissions from `inbox`, a `static` [`Inbox`] (no heap,
    /// interrupt-safe). The queue stays open while the inbox is; an inbox
    /// serves one queue, once: refused with [`AttachError`] if this one
    /// already has an inbox or `inbox` served a queue (or was closed).
    ///
    /// ```
    /// use deferral::{Inbox, TaskQueue};
    /// static INBOX: Inbox<core::future::Ready<u8>, 4> = Inbox::new();
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().attach(&INBOX).unwrap();
    /// let mut other = core::pin::pin!(TaskQueue::new());
    /// assert!(other.as_mut().attach(&INBOX).is_err());
    /// ```
    pub fn attach<const M: usize>(
        self: Pin<&mut Self>,
        inbox: &'static Inbox<F, M>,
    ) -> Result<(), AttachError>
    where
        F: Send + 'static,
    {
        let state = self.project().state;
        if state.attached.is_some() || !inbox.attach() {
            return Err(AttachError(()));
        }
        if state.closed || state.is_stopped() {
            Source::close(inbox);
        }
        let source: &'static dyn Source<F> = inbox;
        state.attached = Some(Attached(NonNull::from(source)));
        state.exhausted = false;
        Ok(())
    }

    /// Starts no more tasks until [`Self::resume`] (p-queue's `pause`);
    /// running tasks go on, and their results come out. A paused queue
    /// with unstarted tasks is pending, not ended.
    ///
    /// ```
    /// use core::task::{Context, Poll};
    /// use deferral::TaskQueue;
    /// use futures::Stream;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().pause();
    /// queue.as_mut().push(core::future::ready(1)).unwrap();
    /// let mut cx = Context::from_waker(core::task::Waker::noop());
    /// assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Pending);
    /// queue.as_mut().resume();
    /// assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(Some(1)));
    /// ```
    pub fn pause(self: Pin<&mut Self>) {
        self.project().state.paused = true;
    }

    /// Lets the queue start tasks again after [`Self::pause`] (p-queue's
    /// `start`); they start at the next poll.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::<core::future::Ready<u8>>::new());
    /// queue.as_mut().pause();
    /// queue.as_mut().resume();
    /// assert!(!queue.is_paused());
    /// ```
    pub fn resume(self: Pin<&mut Self>) {
        self.project().state.paused = false;
    }

    /// Whether the queue is paused (p-queue's `isPaused`).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::<core::future::Ready<u8>>::new());
    /// assert!(!queue.is_paused());
    /// queue.as_mut().pause();
    /// assert!(queue.is_paused());
    /// ```
    pub fn is_paused(&self) -> bool {
        self.state.paused
    }

    /// Accepts no more work: pushes and submissions are refused with
    /// [`PushError::Closed`] (the task handed back); what the queue holds
    /// and what was submitted before runs, then the stream ends — the mpsc
    /// receiver's `close`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::{Ready, ready};
    /// use deferral::{Inbox, PushError, TaskQueue};
    /// use futures::StreamExt;
    /// static INBOX: Inbox<Ready<u8>, 4> = Inbox::new();
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().attach(&INBOX).unwrap(); // keeps the queue open
    /// INBOX.submit(ready(1)).unwrap();
    /// queue.as_mut().close();
    /// assert!(matches!(INBOX.submit(ready(2)), Err(PushError::Closed(_))));
    /// assert!(matches!(queue.as_mut().push(ready(3)), Err(PushError::Closed(_))));
    /// assert_eq!(queue.collect::<Vec<_>>().await, [1]); // drained, then ended
    /// # });
    /// ```
    pub fn close(self: Pin<&mut Self>) {
        let state = self.project().state;
        state.closed = true;
        #[cfg(feature = "alloc")]
        if let Some(inbox) = &state.inbox {
            inbox.0.close_for_submitters();
        }
        if let Some(attached) = &state.attached {
            attached.source().close();
        }
    }

    /// Whether [`Self::close`] was called.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::<core::future::Ready<u8>>::new());
    /// queue.as_mut().close();
    /// assert!(queue.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.state.closed
    }

    /// Drops every task not started yet — pushed, waiting, or submitted
    /// and not taken yet — unrun, newest first, and returns how many
    /// (p-queue's `clear`). Running tasks and finished results stay. Each
    /// task leaves the queue before it is dropped: if a destructor panics,
    /// the rest stay queued and the next `clear` goes on.
    ///
    /// ```
    /// use core::task::{Context, Poll};
    /// use deferral::TaskQueue;
    /// use futures::Stream;
    /// let mut queue = core::pin::pin!(TaskQueue::new().concurrency(2));
    /// for _ in 0..6 {
    ///     queue.as_mut().push(core::future::pending::<()>()).unwrap();
    /// }
    /// let mut cx = Context::from_waker(core::task::Waker::noop());
    /// assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Pending); // two start
    /// assert_eq!(queue.as_mut().clear(), 4);
    /// assert_eq!((queue.unstarted(), queue.running()), (0, 2));
    /// ```
    pub fn clear(self: Pin<&mut Self>) -> usize {
        let this = self.project();
        this.state.clear(this.ring)
    }

    /// A future that runs the queue until its stream ends (see "When the
    /// stream ends" above: for an open queue, when its submitters are gone
    /// or it is closed), discarding the results, and resolves to how many
    /// it discarded.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().push(async { "a" }).unwrap();
    /// assert_eq!(queue.as_mut().drain().await, 1);
    /// # });
    /// ```
    pub fn drain(self: Pin<&mut Self>) -> Drain<'_, F, N, T, S> {
        Drain::new(self, drain::End::Stream)
    }

    /// A future that runs the queue until it is idle — nothing waits to
    /// start, nothing runs, no result is left (p-queue's `onIdle`) —
    /// discarding the results it takes on the way, and resolves to how
    /// many it discarded: for tasks that hand their results on themselves
    /// (a resolver, a channel). To keep the results, use
    /// [`Self::until_idle`]. Unlike [`Self::drain`] it resolves while
    /// submitters live. A paused queue with unstarted tasks is not idle.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::{Ready, ready};
    /// use deferral::{Inbox, TaskQueue};
    /// static INBOX: Inbox<Ready<u8>, 4> = Inbox::new();
    /// let mut queue = core::pin::pin!(TaskQueue::new().concurrency(2));
    /// queue.as_mut().attach(&INBOX).unwrap(); // keeps the queue open
    /// for n in 0..3 {
    ///     INBOX.submit(ready(n)).unwrap();
    /// }
    /// assert_eq!(queue.as_mut().on_idle().await, 3);
    /// assert!(queue.is_empty());
    /// # });
    /// ```
    pub fn on_idle(self: Pin<&mut Self>) -> Drain<'_, F, N, T, S> {
        Drain::new(self, drain::End::Idle)
    }

    /// A future that runs the queue until no task waits to start (they
    /// all started; some may still run: p-queue's `onEmpty`), discarding
    /// the results it takes on the way, and resolves to how many it
    /// discarded. To keep the results, use [`Self::until_empty`].
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::new().concurrency(2));
    /// for _ in 0..3 {
    ///     queue.as_mut().push(futures::future::pending::<()>()).unwrap();
    /// }
    /// queue.as_mut().set_concurrency(3).unwrap();
    /// assert_eq!(queue.as_mut().on_empty().await, 0); // all three started
    /// assert_eq!((queue.unstarted(), queue.running()), (0, 3));
    /// # });
    /// ```
    pub fn on_empty(self: Pin<&mut Self>) -> Drain<'_, F, N, T, S> {
        Drain::new(self, drain::End::Empty)
    }

    /// The queue's results until it is idle (see [`Self::on_idle`]), as a
    /// stream: the way to wait for "everything so far" on a queue that
    /// submitters keep open. The queue goes on afterwards.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::{Ready, ready};
    /// use deferral::{Inbox, TaskQueue};
    /// use futures::StreamExt;
    /// static INBOX: Inbox<Ready<u8>, 4> = Inbox::new();
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().attach(&INBOX).unwrap(); // keeps the queue open
    /// INBOX.submit(ready(1)).unwrap();
    /// INBOX.submit(ready(2)).unwrap();
    /// let batch: Vec<_> = queue.as_mut().until_idle().collect().await;
    /// assert_eq!(batch, [1, 2]);
    /// INBOX.submit(ready(3)).unwrap();
    /// assert_eq!(queue.next().await, Some(3));
    /// # });
    /// ```
    pub fn until_idle(self: Pin<&mut Self>) -> Until<'_, F, N, T, S> {
        Until::new(self, drain::End::Idle)
    }

    /// The queue's results until no task waits to start (see
    /// [`Self::on_empty`]), as a stream; the queue goes on afterwards.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new().concurrency(2));
    /// let task = |n: u8| async move {
    ///     if n > 1 {
    ///         futures::future::pending::<()>().await; // runs for ever
    ///     }
    ///     n
    /// };
    /// queue.as_mut().push_all([0, 1, 2, 3].map(task)).unwrap();
    /// // Until the last one started: 0 and 1 finish, 2 and 3 run.
    /// let firsts: Vec<_> = queue.as_mut().until_empty().collect().await;
    /// assert_eq!(firsts, [0, 1]);
    /// assert_eq!((queue.unstarted(), queue.running()), (0, 2));
    /// # });
    /// ```
    pub fn until_empty(self: Pin<&mut Self>) -> Until<'_, F, N, T, S> {
        Until::new(self, drain::End::Empty)
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
        self.ring.held() + self.state.waiting_len()
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

    /// Tasks waiting to start (p-queue's `size`; submissions not yet taken
    /// by a poll are not counted).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.as_mut().push(async {}).unwrap();
    /// assert_eq!(queue.unstarted(), 1);
    /// ```
    pub fn unstarted(&self) -> usize {
        self.ring.queued() + self.state.waiting_len()
    }

    /// Tasks started and not finished (p-queue's `pending`).
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

impl<F: IntoFuture, const N: usize, T: Timing + RateLimited, S> TaskQueue<F, N, T, S> {
    /// Starts at most `starts` tasks per `per` (p-queue's `intervalCap` and
    /// `interval`): a window opens at the first start after the previous
    /// one closed, with a timer from the queue's [`Timer`] factory; once
    /// `starts` tasks started in it, the next start waits for the timer.
    /// Running tasks are not limited, and the concurrency limit still
    /// holds. Needs [`Self::timer`].
    ///
    /// # Panics
    ///
    /// If `starts` is 0: nothing could ever start.
    ///
    /// ```
    /// use core::task::{Context, Poll};
    /// use core::time::Duration;
    /// use deferral::TaskQueue;
    /// use futures::Stream;
    /// // A window that never closes: one start, ever.
    /// let mut queue = core::pin::pin!(
    ///     TaskQueue::new()
    ///         .concurrency(4)
    ///         .timer(|_: Duration| core::future::pending::<()>())
    ///         .rate_limit(1, Duration::from_secs(1))
    /// );
    /// queue.as_mut().push_all([1, 2].map(core::future::ready)).unwrap();
    /// let mut cx = Context::from_waker(core::task::Waker::noop());
    /// assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(Some(1)));
    /// assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Pending);
    /// assert_eq!(queue.unstarted(), 1);
    /// ```
    pub fn rate_limit(mut self, starts: usize, per: Duration) -> Self {
        assert!(
            starts > 0,
            "TaskQueue::rate_limit: at least one start per interval"
        );
        self.state.rate = Some(RateLimit {
            cap: starts,
            per,
            started: 0,
        });
        self
    }
}

/// The [`Timing`]s that have a [`Timer`]: [`Clock`] and [`Deadline`], on
/// which [`TaskQueue::rate_limit`] is available.
///
/// ```
/// use core::time::Duration;
/// use deferral::{Clock, RateLimited};
/// fn can_rate_limit<T: RateLimited>() {}
/// can_rate_limit::<Clock<fn(Duration) -> core::future::Pending<()>>>();
/// ```
pub trait RateLimited: Timing {}
impl<Mk: Timer> RateLimited for Clock<Mk> {}
impl<Mk: Timer> RateLimited for Deadline<Mk> {}

impl<F: IntoFuture, const N: usize, T, S> State<F, N, T, S> {
    fn max_running(&self) -> usize {
        self.concurrency.min(N)
    }

    fn is_stopped(&self) -> bool {
        self.stop != Stop::No
    }

    fn waiting_len(&self) -> usize {
        #[cfg(feature = "alloc")]
        return self.waiting.len();
        #[cfg(not(feature = "alloc"))]
        0
    }

    /// The same state with another timing and stop predicate (builders).
    fn convert<T2, S2>(
        self,
        timing: impl FnOnce(T) -> T2,
        stop_when: impl FnOnce(Option<S>) -> Option<S2>,
    ) -> State<F, N, T2, S2> {
        State {
            concurrency: self.concurrency,
            order: self.order,
            stop_when: stop_when(self.stop_when),
            stop: self.stop,
            exhausted: self.exhausted,
            paused: self.paused,
            closed: self.closed,
            timing: timing(self.timing),
            rate: self.rate,
            #[cfg(feature = "alloc")]
            waiting: self.waiting,
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
    fn push(
        &mut self,
        ring: Pin<&mut Ring<F, T::Sleep, N>>,
        task: F,
        priority: i32,
    ) -> Result<(), PushError<F>> {
        if self.is_stopped() {
            return Err(PushError::Stopped(task));
        }
        self.exhausted = false;
        self.enqueue(ring, task, priority)
    }

    /// Queues a task in start order: in the window if it starts before
    /// every task waiting beyond it, else among those (`alloc`).
    #[cfg_attr(not(feature = "alloc"), allow(unused_mut))]
    fn enqueue(
        &mut self,
        mut ring: Pin<&mut Ring<F, T::Sleep, N>>,
        task: F,
        priority: i32,
    ) -> Result<(), PushError<F>> {
        #[cfg(feature = "alloc")]
        {
            // The window's queued tasks all start before the waiting ones:
            // a task goes into the window only if it starts before those.
            let task = match self.waiting.front() {
                Some((p, _)) if priority <= *p => task,
                _ => match ring.as_mut().push(task, priority) {
                    Ok(()) => return Ok(()),
                    Err(task) => {
                        if ring.last_queued_priority().is_some_and(|p| p < priority) {
                            // Full: the last queued task of the window
                            // waits instead.
                            let (evicted, p) = ring.as_mut().pop_last_queued().expect("queued");
                            self.waiting.push_front((p, evicted));
                            if ring.push(task, priority).is_err() {
                                unreachable!("a slot was just freed");
                            }
                            return Ok(());
                        }
                        task
                    }
                },
            };
            // Behind the waiting tasks of at least its priority.
            match self.waiting.back() {
                Some((p, _)) if *p < priority => {
                    let at = self.waiting.partition_point(|(p, _)| *p >= priority);
                    self.waiting.insert(at, (priority, task));
                }
                _ => self.waiting.push_back((priority, task)),
            }
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        ring.push(task, priority).map_err(PushError::Full)
    }

    /// Moves the submissions into the window or the waiting tasks. Without
    /// `alloc`, an attached inbox's tasks are taken only while the window
    /// has room (the rest wait in the inbox).
    fn refill(&mut self, mut ring: Pin<&mut Ring<F, T::Sleep, N>>) {
        if self.is_stopped() {
            return; // `enforce_stop` drops them
        }
        #[cfg(feature = "alloc")]
        if let Some(inbox) = &self.inbox {
            for (task, priority) in inbox.0.take_all() {
                self.exhausted = false;
                let _ = self.enqueue(ring.as_mut(), task, priority);
            }
        }
        while cfg!(feature = "alloc") || ring.as_mut().has_room() {
            let Some((task, priority)) = self.attached.as_ref().and_then(|a| a.source().take())
            else {
                break;
            };
            self.exhausted = false;
            self.enqueue(ring.as_mut(), task, priority)
                .expect("the window had room");
        }
    }

    /// Drops the unstarted tasks, newest first; see [`TaskQueue::clear`].
    fn clear(&mut self, mut ring: Pin<&mut Ring<F, T::Sleep, N>>) -> usize {
        let mut dropped = 0;
        #[cfg(feature = "alloc")]
        if let Some(inbox) = &self.inbox {
            // The `Taken` list drops the rest if one destructor panics.
            for task in inbox.0.take_all() {
                dropped += 1;
                drop(task);
            }
        }
        if let Some(attached) = &self.attached {
            while let Some(task) = attached.source().take() {
                dropped += 1;
                drop(task);
            }
        }
        #[cfg(feature = "alloc")]
        while let Some(task) = self.waiting.pop_back() {
            dropped += 1;
            drop(task);
        }
        while let Some(task) = ring.as_mut().pop_last_queued() {
            dropped += 1;
            drop(task);
        }
        dropped
    }
}

impl<F, const N: usize, T, S> State<F, N, T, S>
where
    F: IntoFuture,
    T: Timing,
    S: FnMut(&F::Output) -> bool,
{
    /// Handles the outcome of the task that finished last, if it still
    /// needs it: `stop_when` looks at it (once; a timeout is a rejection
    /// when stopping), then, in completion order, returns its slot, to be
    /// yielded next. Also the first thing a poll does, which finishes what
    /// a panic interrupted.
    #[inline(always)]
    fn settle(&mut self, ring: Pin<&mut Ring<F, T::Sleep, N>>) -> Option<usize> {
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
    fn settle_slow(&mut self, mut ring: Pin<&mut Ring<F, T::Sleep, N>>) -> Option<usize> {
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
    fn enforce_stop(&mut self, ring: Pin<&mut Ring<F, T::Sleep, N>>) {
        if self.stop == Stop::No {
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
            (Stop::No, _) => {}
            (Stop::At(index), Yield::InSubmissionOrder) => ring.truncate_after(index),
            (Stop::At(index), Yield::InCompletionOrder) => ring.retain_only(index),
            (Stop::Done, _) => ring.clear(),
        }
    }

    /// Takes the outcome of slot `index`, finished and settled. Runs no
    /// foreign code: the output is returned, never dropped here.
    fn take(&mut self, ring: Pin<&mut Ring<F, T::Sleep, N>>, index: usize) -> T::Item<F::Output> {
        let out = ring.take(index).expect("a finished slot");
        if self.stop == Stop::At(index) {
            // Everything else is gone already (`enforce_stop`).
            self.stop = Stop::Done;
        }
        T::report(out)
    }

    /// In start order: the oldest result, if it is there.
    fn take_oldest(&mut self, ring: Pin<&mut Ring<F, T::Sleep, N>>) -> Option<T::Item<F::Output>> {
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
    fn poll_running(&mut self, mut ring: Pin<&mut Ring<F, T::Sleep, N>>) -> Option<usize> {
        // In completion order without a predicate, the tasks that finish in
        // one pass are all kept, in the order they finished, and yielded by
        // the next polls without registering or taking the flags again.
        let batch = self.stop_when.is_none() && self.order == Yield::InCompletionOrder;
        loop {
            let mut finished = false;
            let bits = self.wake.as_ref()?;
            let (wakers, ready) = (&self.wakers, &mut self.ready);
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
                    Progress::Finished if batch => {
                        // Nothing to examine: it waits in `ready`.
                        ring.as_mut().forget_latest();
                        ready.push_back(index);
                        true
                    }
                    Progress::Finished => {
                        finished = true;
                        false
                    }
                    Progress::Idle | Progress::Pending => true,
                }
            });
            if let Some(index) = self.ready.pop_front() {
                return Some(index);
            }
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
        mut ring: Pin<&mut Ring<F, T::Sleep, N>>,
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

    /// Whether the rate limit lets one more task start now (polls the
    /// window's timer when the window is used up).
    fn rate_allows(
        &mut self,
        mut window: Pin<&mut Option<T::Sleep>>,
        cx: &mut Context<'_>,
    ) -> bool {
        let Some(rate) = &mut self.rate else {
            return true;
        };
        if rate.started < rate.cap {
            return true;
        }
        if let Some(timer) = window.as_mut().as_pin_mut() {
            if timer.poll(cx).is_pending() {
                return false;
            }
        }
        // The window is over: the next start opens a new one. (Dropping the
        // timer may panic: the counts are reset next time, as it is gone.)
        window.set(None);
        rate.started = 0;
        true
    }

    /// Tasks waiting to start, in the window or beyond it.
    fn has_unstarted(&self, ring: &Ring<F, T::Sleep, N>) -> bool {
        ring.queued() > 0 || self.waiting_len() > 0
    }

    /// Starts the next task — the window's first queued one, else the
    /// first waiting beyond the window, in a new window entry — and polls
    /// it once (opening a rate-limit window first if there is none).
    /// `None` if there is none, or no room in the window.
    fn start_next(
        &mut self,
        mut ring: Pin<&mut Ring<F, T::Sleep, N>>,
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
        let timer = timing.timeout().map(|d| move || timing.sleep(d));
        #[cfg(feature = "alloc")]
        let index = if from_waiting {
            let (_, task) = self.waiting.pop_front()?;
            match ring.as_mut().start_task(task, timer) {
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

    fn poll_next(
        &mut self,
        mut ring: Pin<&mut Ring<F, T::Sleep, N>>,
        mut window: Pin<&mut Option<T::Sleep>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T::Item<F::Output>>> {
        // 0. Finish what a panic interrupted: drop a future whose poll
        // panicked, settle an output, go on with a stop.
        ring.as_mut().bury();
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

        // 2. Take the submissions; start tasks up to the limits, each
        // polled once.
        self.refill(ring.as_mut());
        while !self.paused
            && !self.is_stopped()
            && ring.in_flight() < self.max_running()
            && self.has_unstarted(&ring)
            && self.rate_allows(window.as_mut(), cx)
        {
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

impl<F, const N: usize, T, S> Stream for TaskQueue<F, N, T, S>
where
    F: IntoFuture,
    T: Timing,
    S: FnMut(&F::Output) -> bool,
{
    type Item = T::Item<F::Output>;

    /// Starts tasks up to the limits and yields the next result; `None`
    /// when the queue is empty and closed to submissions (or stopped and
    /// drained): see "When the stream ends" in the [`TaskQueue`] docs. A
    /// queue that returned `None` yields again after a new push, like
    /// `FuturesUnordered`; polling it again without one returns `None`.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        this.state.poll_next(this.ring, this.window, cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

impl<F, const N: usize, T, S> FusedStream for TaskQueue<F, N, T, S>
where
    F: IntoFuture,
    T: Timing,
    S: FnMut(&F::Output) -> bool,
{
    /// True once the stream returned `None` and nothing was pushed since
    /// (a submission is noticed by the next poll only).
    fn is_terminated(&self) -> bool {
        self.state.exhausted
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> fmt::Debug for TaskQueue<F, N, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskQueue")
            .field("capacity", &N)
            .field("concurrency", &self.state.concurrency)
            .field("order", &self.state.order)
            .field("len", &self.len())
            .field("running", &self.running())
            .field("paused", &self.state.paused)
            .field("closed", &self.state.closed)
            .field("stopped", &self.state.is_stopped())
            .finish_non_exhaustive()
    }
}
