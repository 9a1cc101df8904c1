//! [`BoxedTask`] (`alloc`): tasks of mixed types in one queue, each boxed
//! by [`TaskQueue::push_boxed`] — still started (and converted with
//! `into_future`) only when the queue starts it.

use alloc::boxed::Box;
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project::pin_project;

use super::{PushError, TaskQueue, Timing};

/// A type-erased task: what a queue of tasks of mixed types holds
/// (`alloc`). [`TaskQueue::push_boxed`] and
/// [`Submitter::submit_boxed`](super::Submitter::submit_boxed) box any
/// task into one.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::{BoxedTask, DeferredPromise, TaskQueue};
/// use futures::StreamExt;
/// // Two closures, two promise types, one queue:
/// let mut queue = core::pin::pin!(TaskQueue::<BoxedTask<Result<u32, ()>>>::new());
/// queue.as_mut().push_boxed(DeferredPromise::lazy(|| async { Ok(1) })).unwrap();
/// let two = 2;
/// queue.as_mut().push_boxed(DeferredPromise::lazy(move || async move { Ok(two) })).unwrap();
/// assert_eq!(queue.collect::<Vec<_>>().await, [Ok(1), Ok(2)]);
/// # });
/// ```
pub type BoxedTask<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// Boxes `task` into a [`BoxedTask`] that converts it at its first poll.
pub(super) fn boxed<'a, I>(task: I) -> BoxedTask<'a, I::Output>
where
    I: IntoFuture + Send + 'a,
    I::IntoFuture: Send,
{
    Box::pin(LazyStart::Task(Some(task)))
}

impl<'a, O, const N: usize, T: Timing, S> TaskQueue<BoxedTask<'a, O>, N, T, S> {
    /// Boxes `task` (one allocation) and pushes it: how tasks of different
    /// types — two closures' promises, say — share a queue. The task is
    /// still converted with `into_future` and started only when the queue
    /// starts it.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::{BoxedTask, TaskQueue};
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::<BoxedTask<u32>>::new());
    /// queue.as_mut().push_boxed(async { 1 }).unwrap();
    /// queue.as_mut().push_boxed(core::future::ready(2)).unwrap();
    /// assert_eq!(queue.collect::<Vec<_>>().await, [1, 2]);
    /// # });
    /// ```
    pub fn push_boxed<I>(self: Pin<&mut Self>, task: I) -> Result<(), PushError<BoxedTask<'a, O>>>
    where
        I: IntoFuture<Output = O> + Send + 'a,
        I::IntoFuture: Send,
    {
        self.push(boxed(task))
    }
}

impl<'a, O> super::Submitter<BoxedTask<'a, O>> {
    /// Boxes `task` and submits it (see [`TaskQueue::push_boxed`]).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::{BoxedTask, TaskQueue};
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::<BoxedTask<'static, u32>>::new());
    /// let submit = queue.as_mut().submitter();
    /// submit.submit_boxed(async { 1 }).unwrap();
    /// drop(submit);
    /// assert_eq!(queue.collect::<Vec<_>>().await, [1]);
    /// # });
    /// ```
    pub fn submit_boxed<I>(&self, task: I) -> Result<(), PushError<BoxedTask<'a, O>>>
    where
        I: IntoFuture<Output = O> + Send + 'a,
        I::IntoFuture: Send,
    {
        self.submit(boxed(task))
    }
}
