//! [`TaskQueue::until`](super::TaskQueue::until): the queue's results until
//! it reaches a [`Level`] — p-queue's `onIdle`, `onEmpty` and
//! `onSizeLessThan`, as one stream.

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;
use futures_core::stream::FusedStream;

use super::{TaskQueue, Timing};

/// How far a queue runs in [`TaskQueue::until`](super::TaskQueue::until).
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::TaskQueue;
/// use deferral::queue::Level;
/// use futures::StreamExt;
/// let mut queue = core::pin::pin!(TaskQueue::new()); // concurrency 1
/// for n in 0..5 {
///     queue.push(async move { n }).unwrap();
/// }
/// // Until fewer than 3 wait to start (each task finishes at its start).
/// let firsts: Vec<_> = queue.as_mut().until(Level::Below(3)).collect().await;
/// assert_eq!((firsts, queue.unstarted()), (vec![0, 1, 2], 2));
/// // The rest, until nothing is left; the results are counted, not kept.
/// assert_eq!(queue.as_mut().until(Level::Idle).count().await, 2);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Nothing waits to start, nothing runs, no result is left (p-queue's
    /// `onIdle`).
    Idle,
    /// Nothing waits to start; some tasks may still run (p-queue's
    /// `onEmpty`; the same as `Below(1)`).
    Empty,
    /// Fewer than this many tasks wait to start (p-queue's
    /// `onSizeLessThan`). `Below(0)` is never reached: the batch runs until
    /// the queue's stream ends.
    Below(usize),
}

impl Level {
    /// Whether `queue` is there: submissions not taken yet count as work
    /// to do (the next poll takes them), so only after they are in.
    fn reached<F: IntoFuture, const N: usize, T: Timing, S>(
        self,
        queue: &TaskQueue<F, N, T, S>,
    ) -> bool {
        queue.view(|ring, state| {
            let unstarted = ring.queued() + state.waiting_len();
            !state.has_submissions()
                && match self {
                    // Nothing held at all: running, finished or queued.
                    Level::Idle => ring.held() + state.waiting_len() == 0,
                    Level::Empty => unstarted == 0,
                    Level::Below(n) => unstarted < n,
                }
        })
    }
}

/// Stream of [`TaskQueue::until`](super::TaskQueue::until): the queue's
/// results until it reaches its [`Level`] (or its own stream ends); the
/// queue itself goes on afterwards.
///
/// ```
/// # futures::executor::block_on(async {
/// use core::future::{Ready, ready};
/// use deferral::TaskQueue;
/// use deferral::queue::{Inbox, Level};
/// use futures::StreamExt;
/// static INBOX: Inbox<Ready<u8>, 2> = Inbox::new();
/// let mut queue = core::pin::pin!(TaskQueue::new());
/// queue.attach(&INBOX).unwrap(); // the queue stays open
/// queue.push(ready(1)).unwrap();
/// assert_eq!(queue.as_mut().until(Level::Idle).collect::<Vec<_>>().await, [1]);
/// # });
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct Until<'a, F: IntoFuture, const N: usize, T: Timing, S> {
    queue: Pin<&'a mut TaskQueue<F, N, T, S>>,
    level: Level,
    /// The queue was polled once (and so took its submissions).
    polled: bool,
    done: bool,
}

impl<'a, F: IntoFuture, const N: usize, T: Timing, S> Until<'a, F, N, T, S> {
    pub(super) fn new(queue: Pin<&'a mut TaskQueue<F, N, T, S>>, level: Level) -> Self {
        Until {
            queue,
            level,
            polled: false,
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
        // The level is looked at after each poll of the queue: a result
        // yielded by one may have brought it there.
        if this.done || (this.polled && this.level.reached(&this.queue)) {
            this.done = true;
            return Poll::Ready(None);
        }
        this.polled = true;
        match this.queue.as_mut().poll_next(cx) {
            Poll::Ready(Some(out)) => Poll::Ready(Some(out)),
            Poll::Pending if !this.level.reached(&this.queue) => Poll::Pending,
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
            .field("level", &self.level)
            .field("polled", &self.polled)
            .field("done", &self.done)
            .finish()
    }
}
