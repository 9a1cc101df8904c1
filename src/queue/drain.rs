//! [`Drain`] (`drain`, `on_idle`, `on_empty`): run a [`TaskQueue`] to a
//! point, discarding outputs; [`Until`] (`until_idle`, `until_empty`): the
//! same as a stream of the outputs.

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;
use futures_core::stream::FusedStream;

use super::{TaskQueue, Timing};

/// Where a [`Drain`] or an [`Until`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The queue's stream ends.
    Stream,
    /// Nothing waits to start, nothing runs, no result is left.
    Idle,
    /// Nothing waits to start.
    Empty,
}

impl End {
    /// Whether `queue`, just polled to `Pending`, is there.
    fn reached<F: IntoFuture, const N: usize, T: Timing, S>(
        self,
        queue: &TaskQueue<F, N, T, S>,
    ) -> bool {
        match self {
            End::Stream => false,
            End::Idle => queue.is_empty(),
            End::Empty => queue.unstarted() == 0,
        }
    }
}

/// Future of [`TaskQueue::drain`], [`TaskQueue::on_idle`] and
/// [`TaskQueue::on_empty`]: runs the queue until its stream ends, until it
/// is idle, or until nothing waits to start, and resolves to the number of
/// results it discarded on the way.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::TaskQueue;
/// let mut queue = core::pin::pin!(TaskQueue::new().concurrency(4));
/// for i in 0..10 {
///     queue.as_mut().push(async move { i }).unwrap();
/// }
/// assert_eq!(queue.as_mut().drain().await, 10);
/// assert!(queue.is_empty());
/// # });
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct Drain<'a, F: IntoFuture, const N: usize, T: Timing, S> {
    queue: Pin<&'a mut TaskQueue<F, N, T, S>>,
    end: End,
    drained: usize,
}

impl<'a, F: IntoFuture, const N: usize, T: Timing, S> Drain<'a, F, N, T, S> {
    pub(super) fn new(queue: Pin<&'a mut TaskQueue<F, N, T, S>>, end: End) -> Self {
        Drain {
            queue,
            end,
            drained: 0,
        }
    }
}

impl<F, const N: usize, T, S> Future for Drain<'_, F, N, T, S>
where
    F: IntoFuture,
    T: Timing,
    S: FnMut(&F::Output) -> bool,
{
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let this = &mut *self;
        loop {
            match this.queue.as_mut().poll_next(cx) {
                Poll::Ready(Some(out)) => {
                    this.drained += 1;
                    drop(out);
                }
                Poll::Ready(None) => return Poll::Ready(this.drained),
                Poll::Pending if this.end.reached(&this.queue) => {
                    return Poll::Ready(this.drained);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> fmt::Debug for Drain<'_, F, N, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("queue", &*self.queue)
            .field("end", &self.end)
            .field("drained", &self.drained)
            .finish()
    }
}

/// Stream of [`TaskQueue::until_idle`] and [`TaskQueue::until_empty`]: the
/// queue's results until it is idle, or until nothing waits to start;
/// the queue itself goes on afterwards.
///
/// ```
/// # futures::executor::block_on(async {
/// use core::future::{Ready, ready};
/// use deferral::{Inbox, TaskQueue};
/// use futures::StreamExt;
/// static INBOX: Inbox<Ready<u8>, 2> = Inbox::new();
/// let mut queue = core::pin::pin!(TaskQueue::new());
/// queue.as_mut().attach(&INBOX).unwrap(); // the queue stays open
/// queue.as_mut().push(ready(1)).unwrap();
/// assert_eq!(queue.as_mut().until_idle().collect::<Vec<_>>().await, [1]);
/// # });
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct Until<'a, F: IntoFuture, const N: usize, T: Timing, S> {
    queue: Pin<&'a mut TaskQueue<F, N, T, S>>,
    end: End,
    done: bool,
}

impl<'a, F: IntoFuture, const N: usize, T: Timing, S> Until<'a, F, N, T, S> {
    pub(super) fn new(queue: Pin<&'a mut TaskQueue<F, N, T, S>>, end: End) -> Self {
        Until {
            queue,
            end,
            done: false,
        }
    }
}

impl<F, const N: usize, T, S> Stream for Until<'_, F, N, T, S>
where
    F: IntoFuture,
    T: Timing,
    S: FnMut(&F::Output) -> bool,
{
    type Item = T::Item<F::Output>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.queue.as_mut().poll_next(cx) {
            Poll::Ready(Some(out)) => Poll::Ready(Some(out)),
            Poll::Pending if !this.end.reached(&this.queue) => Poll::Pending,
            Poll::Ready(None) | Poll::Pending => {
                this.done = true;
                Poll::Ready(None)
            }
        }
    }
}

impl<F, const N: usize, T, S> FusedStream for Until<'_, F, N, T, S>
where
    F: IntoFuture,
    T: Timing,
    S: FnMut(&F::Output) -> bool,
{
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> fmt::Debug for Until<'_, F, N, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Until")
            .field("queue", &*self.queue)
            .field("end", &self.end)
            .field("done", &self.done)
            .finish()
    }
}
