//! How a [`TaskQueue`](super::TaskQueue) yields its results and reacts to a
//! rejection, and why it may refuse a task (or a setting).

use core::fmt;

/// The order in which a [`TaskQueue`](super::TaskQueue) yields its results.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::{TaskQueue, Yield};
/// use futures::StreamExt;
/// let mut queue = core::pin::pin!(
///     TaskQueue::new().concurrency(2).order(Yield::InCompletionOrder)
/// );
/// queue.as_mut().push(core::future::ready(1)).unwrap();
/// queue.as_mut().push(core::future::ready(2)).unwrap();
/// let mut all: Vec<i32> = queue.collect().await;
/// all.sort();
/// assert_eq!(all, [1, 2]);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Yield {
    /// Results come out in the order the tasks were started — the order
    /// they were pushed, unless priorities reorder the starts — like
    /// `futures::stream::Buffered` or awaiting a list one by one: a
    /// finished task's output waits (in its slot) for the older ones.
    #[default]
    InSubmissionOrder,
    /// Each result comes out as soon as its task finishes, like
    /// `futures::stream::BufferUnordered`.
    InCompletionOrder,
}

/// What a [`TaskQueue`](super::TaskQueue) does when a task's output is a
/// rejection (see [`Outcome`]).
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::{OnRejection, TaskQueue};
/// use futures::StreamExt;
/// let mut queue = core::pin::pin!(TaskQueue::new().on_rejection(OnRejection::Stop));
/// for r in [Ok(1), Err("boom"), Ok(3)] {
///     queue.as_mut().push(async move { r }).unwrap();
/// }
/// let seen: Vec<_> = queue.collect().await;
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
/// use deferral::{PushError, TaskQueue};
/// let mut queue = core::pin::pin!(TaskQueue::with_capacity::<1>());
/// queue.as_mut().push(core::future::ready(1)).unwrap();
/// match queue.as_mut().push(core::future::ready(2)) {
///     Ok(()) => assert!(cfg!(feature = "alloc")), // waits on the heap
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
    /// use deferral::PushError;
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
/// let mut queue = core::pin::pin!(TaskQueue::new());
/// queue.as_mut().close();
/// let err = queue.as_mut().push_all([1, 2, 3].map(core::future::ready)).unwrap_err();
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
/// use deferral::{Inbox, TaskQueue};
/// static INBOX: Inbox<core::future::Ready<()>, 1> = Inbox::new();
/// INBOX.close();
/// let mut queue = core::pin::pin!(TaskQueue::new());
/// let err = queue.as_mut().attach(&INBOX).unwrap_err();
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
