//! [`Drain`]: wait for every task of a [`TaskQueue`], discarding outputs.

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;

use super::TaskQueue;

/// Future of [`TaskQueue::drain`]: runs the queue until it is empty and
/// resolves to the number of results it discarded.
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
pub struct Drain<'a, F: IntoFuture, const N: usize> {
    pub(super) queue: Pin<&'a mut TaskQueue<F, N>>,
    pub(super) drained: usize,
}

impl<F: IntoFuture, const N: usize> Future for Drain<'_, F, N> {
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        loop {
            match self.queue.as_mut().poll_next(cx) {
                Poll::Ready(Some(out)) => {
                    drop(out);
                    self.drained += 1;
                }
                Poll::Ready(None) => return Poll::Ready(self.drained),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<F: IntoFuture, const N: usize> fmt::Debug for Drain<'_, F, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("queue", &*self.queue)
            .field("drained", &self.drained)
            .finish()
    }
}
