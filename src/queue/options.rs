//! How a [`TaskQueue`](super::TaskQueue) yields its results and reacts to a
//! rejection, how one task is pushed ([`Options`]) and named ([`TaskId`]),
//! and why the queue may refuse a task (or a setting).

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use super::timer::{Deadline, NoTimer, Timer, Timing};

/// The name of a task in its queue, returned by
/// [`TaskQueue::push`](super::TaskQueue::push): what
/// [`cancel`](super::TaskQueue::cancel) and
/// [`set_priority`](super::TaskQueue::set_priority) take (p-queue's `id`).
///
/// Each queue numbers the tasks that enter it from 0, in 64 bits (so they
/// never wrap): an id means something only to the queue that returned it.
/// It carries no mark of its queue: given to another queue's `cancel` or
/// `set_priority`, it names that queue's task of the same number.
/// Tasks from a [`Submitter`](super::Submitter) or an
/// [`Inbox`](super::Inbox) get an id too, which nobody learns.
///
/// ```
/// use deferral::TaskQueue;
/// let queue = TaskQueue::new();
/// let a = queue.push(core::future::ready(1)).unwrap();
/// let b = queue.push(core::future::ready(2)).unwrap();
/// assert!(a < b); // in the order they entered the queue
/// assert_eq!(format!("{a:?}"), "TaskId(0)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub(super) u64);

/// How one task is pushed ([`TaskQueue::push_with`](super::TaskQueue::push_with)):
/// its priority and, on a queue with a [timeout](super::TaskQueue::timeout),
/// its own timeout — p-queue's `add` options. `T` is the queue's
/// [`Timing`], inferred from the queue: only a [`Deadline`] queue's
/// options have [`Options::timeout`].
///
/// ```
/// use core::time::Duration;
/// use deferral::TaskQueue;
/// use deferral::queue::Options;
/// let queue = TaskQueue::new()
///     .timer(|_: Duration| core::future::pending::<()>())
///     .timeout(Duration::from_secs(1));
/// let slow = Options::new().priority(-1).timeout(Duration::from_secs(60));
/// queue.push_with(core::future::ready("report"), slow).unwrap();
/// queue.push_with(core::future::ready("no limit"), Options::new().timeout(None)).unwrap();
/// ```
pub struct Options<T: Timing = NoTimer> {
    pub(super) priority: i32,
    /// The task's own timeout, if set (`None`: the queue's).
    pub(super) limit: Option<T::Limit>,
    _timing: PhantomData<fn() -> T>,
}

impl<T: Timing> Options<T> {
    /// Priority 0 and the queue's timeout (what
    /// [`TaskQueue::push`](super::TaskQueue::push) uses).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// use deferral::queue::Options;
    /// let queue = TaskQueue::new();
    /// queue.push_with(async {}, Options::new()).unwrap();
    /// ```
    pub const fn new() -> Self {
        Options {
            priority: 0,
            limit: None,
            _timing: PhantomData,
        }
    }

    /// Sets the priority (default 0): the task starts before every waiting
    /// task of a lower priority and after those of the same or a higher one
    /// (higher first, FIFO among equals).
    ///
    /// ```
    /// use deferral::queue::Options;
    /// let urgent: Options = Options::new().priority(10);
    /// # let _ = urgent;
    /// ```
    pub const fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

impl<Mk: Timer> Options<Deadline<Mk>> {
    /// Gives the task its own timeout from its start instead of the
    /// queue's; `None`: no timeout for this task (p-queue's per-task
    /// `timeout`). Only on a queue with [`TaskQueue::timeout`](super::TaskQueue::timeout).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::time::Duration;
    /// use deferral::TaskQueue;
    /// use deferral::queue::{Options, TimedOut};
    /// use futures::StreamExt;
    /// use futures::future::Either;
    /// let queue = TaskQueue::new()
    ///     .timer(|_: Duration| core::future::ready(())) // every timer is over at once
    ///     .timeout(Duration::from_millis(10));
    /// let never = || Either::Right(core::future::pending());
    /// queue.push(never()).unwrap();
    /// queue.push_with(Either::Left(core::future::ready(1)), Options::new().timeout(None)).unwrap();
    /// assert_eq!(Box::pin(queue).collect::<Vec<_>>().await, [Err(TimedOut), Ok(1)]);
    /// # });
    /// ```
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.limit = Some(timeout.into());
        self
    }
}

impl<T: Timing> Default for Options<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Timing> Clone for Options<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Timing> Copy for Options<T> {}

impl<T: Timing> fmt::Debug for Options<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("priority", &self.priority)
            .field("timeout", &self.limit)
            .finish()
    }
}

/// The order in which a [`TaskQueue`](super::TaskQueue) yields its results.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::TaskQueue;
/// use deferral::queue::Yield;
/// use futures::StreamExt;
/// let queue = TaskQueue::new().concurrency(2).order(Yield::InCompletionOrder);
/// queue.push(core::future::ready(1)).unwrap();
/// queue.push(core::future::ready(2)).unwrap();
/// let mut all: Vec<i32> = Box::pin(queue).collect().await;
/// all.sort();
/// assert_eq!(all, [1, 2]);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Yield {
    /// Results come out in the order the tasks were started — the order
    /// they were pushed, unless priorities reorder the starts — like
    /// `futures::stream::Buffered` or awaiting a list one by one: a
    /// finished task's output waits (in its slot of the window) for the
    /// older ones. It no longer counts towards the concurrency limit
    /// meanwhile: the queue starts the next task (p-queue's behaviour),
    /// as far as the window has room.
    #[default]
    InSubmissionOrder,
    /// Each result comes out as soon as its task finishes, like
    /// `futures::stream::BufferUnordered`. Unlike it, a slow task pins the
    /// queue's window (see "Storage" on
    /// [`TaskQueue`](super::TaskQueue)): until it finishes, at most `N − 1`
    /// tasks start after it, so pick `N` well above the concurrency when
    /// durations vary a lot.
    InCompletionOrder,
}

/// What a [`TaskQueue`](super::TaskQueue) does when a task's output is a
/// rejection (see [`Outcome`]).
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::TaskQueue;
/// use deferral::queue::OnRejection;
/// use futures::StreamExt;
/// let queue = TaskQueue::new().on_rejection(OnRejection::Stop);
/// for r in [Ok(1), Err("boom"), Ok(3)] {
///     queue.push(async move { r }).unwrap();
/// }
/// let seen: Vec<_> = Box::pin(queue).collect().await;
/// assert_eq!(seen, [Ok(1), Err("boom")]); // the third task never ran
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRejection {
    /// Yield every result, rejections included (`Promise.allSettled`).
    #[default]
    KeepGoing,
    /// Start nothing after the first rejection; yield it (in the queue's
    /// [`Yield`] order) and end the stream, dropping what is left
    /// (`Promise.all`, `p-limit` with a throwing task).
    Stop,
}

/// A task output that can be a rejection: what
/// [`TaskQueue::on_rejection`](super::TaskQueue::on_rejection) looks at.
///
/// Implemented for `Result` (`Err` is a rejection), so it covers
/// [`DeferredPromise`](crate::DeferredPromise). For other outputs, implement
/// it, or pass a predicate to
/// [`TaskQueue::stop_when`](super::TaskQueue::stop_when).
///
/// ```
/// use deferral::queue::Outcome;
/// assert!(Err::<(), _>("no").is_rejection());
/// assert!(!Ok::<_, ()>(1).is_rejection());
/// ```
pub trait Outcome {
    /// Whether this output is a rejection.
    ///
    /// ```
    /// use deferral::queue::Outcome;
    /// assert!(Err::<u8, &str>("failed").is_rejection());
    /// ```
    fn is_rejection(&self) -> bool;
}

impl<T, E> Outcome for Result<T, E> {
    fn is_rejection(&self) -> bool {
        self.is_err()
    }
}

/// A task the queue did not take, handed back: nothing is lost or run.
///
/// ```
/// use deferral::TaskQueue;
/// use deferral::queue::PushError;
/// let queue = TaskQueue::with_capacity::<1>();
/// queue.push(core::future::ready(1)).unwrap();
/// match queue.push(core::future::ready(2)) {
///     Ok(_id) => assert!(cfg!(feature = "alloc")), // waits on the heap
///     Err(PushError::Full(task)) => drop(task),   // without `alloc`
///     Err(other) => unreachable!("{other}"),
/// }
/// ```
pub enum PushError<F> {
    /// The inline window is full (only without `alloc`; with it, tasks
    /// beyond the window wait on the heap). Yield some results first, or
    /// choose a bigger capacity.
    Full(F),
    /// The queue stopped on a rejection ([`OnRejection::Stop`]): it starts
    /// nothing any more.
    Stopped(F),
    /// The queue was closed ([`TaskQueue::close`](super::TaskQueue::close)),
    /// or — for a [`Submitter`](super::Submitter) or an
    /// [`Inbox`](super::Inbox) — dropped, stopped, or the inbox closed.
    Closed(F),
}

impl<F> PushError<F> {
    /// The refused task.
    ///
    /// ```
    /// use deferral::queue::PushError;
    /// assert_eq!(PushError::Stopped(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> F {
        match self {
            PushError::Full(task) | PushError::Stopped(task) | PushError::Closed(task) => task,
        }
    }
}

impl<F> fmt::Debug for PushError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Stopped(_) => "Stopped(..)",
            PushError::Closed(_) => "Closed(..)",
        })
    }
}

impl<F> fmt::Display for PushError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "the task queue's inline window is full",
            PushError::Stopped(_) => "the task queue stopped on a rejection",
            PushError::Closed(_) => "the task queue is closed (or was dropped)",
        })
    }
}

impl<F> core::error::Error for PushError<F> {}

/// [`TaskQueue::push_all`](super::TaskQueue::push_all) stopped at a
/// refusal: the refused task, and the tasks not pushed yet (those before
/// were pushed).
///
/// ```
/// use deferral::TaskQueue;
/// let queue = TaskQueue::new();
/// queue.close();
/// let err = queue.push_all([1, 2, 3].map(core::future::ready)).unwrap_err();
/// assert_eq!(err.refused.into_inner().into_inner(), 1);
/// assert_eq!(err.rest.count(), 2);
/// ```
pub struct PushAllError<F, I> {
    /// The task that was refused, and why.
    pub refused: PushError<F>,
    /// The tasks after it, not pushed.
    pub rest: I,
}

impl<F, I> fmt::Debug for PushAllError<F, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushAllError")
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl<F, I> fmt::Display for PushAllError<F, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "push_all stopped: {}", self.refused)
    }
}

impl<F, I> core::error::Error for PushAllError<F, I> {}

/// A concurrency limit of 0 was refused (nothing could ever run); holds
/// what was handed back: the queue, for
/// [`TaskQueue::try_concurrency`](super::TaskQueue::try_concurrency).
///
/// ```
/// use deferral::TaskQueue;
/// let err = TaskQueue::<core::future::Ready<()>>::new().try_concurrency(0).unwrap_err();
/// assert_eq!(err.to_string(), "a task queue's concurrency must be at least 1");
/// let _queue = err.into_inner();
/// ```
pub struct ZeroConcurrency<Q = ()>(pub(super) Q);

impl<Q> ZeroConcurrency<Q> {
    /// What was handed back.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<()>>::new();
    /// let queue = queue.try_concurrency(0).unwrap_err().into_inner();
    /// assert_eq!(queue.max_running(), 1);
    /// ```
    pub fn into_inner(self) -> Q {
        self.0
    }
}

impl<Q> fmt::Debug for ZeroConcurrency<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ZeroConcurrency(..)")
    }
}

impl<Q> fmt::Display for ZeroConcurrency<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a task queue's concurrency must be at least 1")
    }
}

impl<Q> core::error::Error for ZeroConcurrency<Q> {}

/// [`TaskQueue::attach`](super::TaskQueue::attach) refused: the queue has
/// an inbox already, or the inbox served a queue before (or was closed).
///
/// ```
/// use deferral::TaskQueue;
/// use deferral::queue::Inbox;
/// static INBOX: Inbox<core::future::Ready<()>, 1> = Inbox::new();
/// INBOX.close();
/// let queue = TaskQueue::new();
/// let err = queue.attach(&INBOX).unwrap_err();
/// assert_eq!(err.to_string(), "the inbox serves another queue, or this queue has one");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachError(pub(super) ());

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the inbox serves another queue, or this queue has one")
    }
}

impl core::error::Error for AttachError {}
