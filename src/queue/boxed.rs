//! [`BoxTask`] (`alloc`): tasks of mixed types in one queue, each boxed
//! by [`TaskQueue::push_boxed`] — still started (and converted with
//! `into_future`) only when the queue starts it.

use alloc::boxed::Box;
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project::pin_project;

use super::{PushError, TaskId, TaskQueue, Timing};

/// A type-erased task: what a queue of tasks of mixed types holds
/// (`alloc`), named like `futures`' `BoxFuture` (and this crate's
/// `BoxPromise`). [`TaskQueue::push_boxed`] and
/// [`Submitter::submit_boxed`](super::Submitter::submit_boxed) box any
/// task into one. It is `Unpin`, and so is a queue of them: a struct can
/// store a `TaskQueue<BoxTask<'static, T>>` as it is.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::TaskQueue;
/// use deferral::queue::BoxTask;
/// use futures::StreamExt;
/// // Two closures, two future types, one queue, no pinning:
/// let mut queue = TaskQueue::<BoxTask<Result<u32, ()>>>::new();
/// queue.push_boxed(async { Ok(1) }).unwrap();
/// let two = 2;
/// queue.push_boxed(async move { Ok(two) }).unwrap();
/// assert_eq!(queue.next().await, Some(Ok(1)));
/// assert_eq!(queue.next().await, Some(Ok(2)));
/// # });
/// ```
pub type BoxTask<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Converts its task with `into_future` at the first poll, not before.
#[pin_project(project = LazyProj)]
enum LazyStart<I: IntoFuture> {
    Task(Option<I>),
    Running(#[pin] I::IntoFuture),
}

impl<I: IntoFuture> Future for LazyStart<I> {
    type Output = I::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<I::Output> {
        if let LazyProj::Task(task) = self.as_mut().project() {
            let task = task.take().expect("LazyStart polled after a panic");
            self.set(LazyStart::Running(task.into_future()));
        }
        match self.project() {
            LazyProj::Running(fut) => fut.poll(cx),
            LazyProj::Task(_) => unreachable!("started above"),
        }
    }
}

/// Boxes `task` into a [`BoxTask`] that converts it at its first poll.
pub(super) fn boxed<'a, I>(task: I) -> BoxTask<'a, I::Output>
where
    I: IntoFuture + Send + 'a,
    I::IntoFuture: Send,
{
    Box::pin(LazyStart::Task(Some(task)))
}

impl<'a, O, const N: usize, T: Timing, S> TaskQueue<BoxTask<'a, O>, N, T, S> {
    /// Boxes `task` (one allocation) and pushes it: how tasks of different
    /// types — two closures' promises, say — share a queue. The task is
    /// still converted with `into_future` and started only when the queue
    /// starts it.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use deferral::queue::BoxTask;
    /// use futures::StreamExt;
    /// let queue = TaskQueue::<BoxTask<u32>>::new();
    /// queue.push_boxed(async { 1 }).unwrap();
    /// queue.push_boxed(core::future::ready(2)).unwrap();
    /// assert_eq!(queue.collect::<Vec<_>>().await, [1, 2]);
    /// # });
    /// ```
    pub fn push_boxed<I>(&self, task: I) -> Result<TaskId, PushError<BoxTask<'a, O>>>
    where
        I: IntoFuture<Output = O> + Send + 'a,
        I::IntoFuture: Send,
    {
        self.push(boxed(task))
    }
}

impl<'a, O> super::Submitter<BoxTask<'a, O>> {
    /// Boxes `task` and submits it (see [`TaskQueue::push_boxed`]).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use deferral::queue::BoxTask;
    /// use futures::StreamExt;
    /// let queue = TaskQueue::<BoxTask<'static, u32>>::new();
    /// let submit = queue.submitter();
    /// submit.submit_boxed(async { 1 }).unwrap();
    /// drop(submit);
    /// assert_eq!(queue.collect::<Vec<_>>().await, [1]);
    /// # });
    /// ```
    pub fn submit_boxed<I>(&self, task: I) -> Result<(), PushError<BoxTask<'a, O>>>
    where
        I: IntoFuture<Output = O> + Send + 'a,
        I::IntoFuture: Send,
    {
        self.submit(boxed(task))
    }
}
