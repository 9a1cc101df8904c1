//! [`Submitter`] (`alloc`): push into a [`TaskQueue`](super::TaskQueue)
//! from anywhere, including from inside one of its running tasks.
//!
//! # How it works
//!
//! A running task cannot hold `&mut` to the queue that is polling it, so
//! submissions go through a shared inbox: a lock-free, push-only linked list
//! (a Treiber stack). [`Submitter::submit`] allocates a node and links it in
//! with one compare-and-swap, then wakes the queue through an
//! [`AtomicWaker`]. The queue takes the whole list at once (one `swap` with
//! null, so there is no ABA problem: nodes are never popped one by one),
//! reverses it into submission order and appends it to its own tasks.
//! Nothing spins or locks. `tests/loom_queue.rs` model-checks submit vs.
//! poll vs. drop.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::ptr;
use core::task::Waker;

use super::PushError;
use crate::sync::{AtomicBool, AtomicPtr, AtomicWaker, Ordering};

struct Node<F> {
    task: F,
    next: *mut Node<F>,
}

pub(super) struct Inbox<F> {
    /// The newest submission; each node points at the previous one.
    newest: AtomicPtr<Node<F>>,
    /// Set when the queue is dropped or stopped.
    closed: AtomicBool,
    queue: AtomicWaker,
}

// SAFETY: the inbox owns the tasks of its nodes and hands each to exactly one
// thread (the queue's, in `take_all`); no `&F` is ever shared, so `F: Send`
// suffices for both.
unsafe impl<F: Send> Send for Inbox<F> {}
// SAFETY: as for `Send`.
unsafe impl<F: Send> Sync for Inbox<F> {}

impl<F> Inbox<F> {
    pub(super) fn new() -> Self {
        Inbox {
            newest: AtomicPtr::new(ptr::null_mut()),
            closed: AtomicBool::new(false),
            queue: AtomicWaker::new(),
        }
    }

    fn push(&self, task: F) -> Result<(), PushError<F>> {
        // ORDERING: `Acquire` pairs with `close`'s `Release`; a submission
        // racing with `close` may still be linked in, and is then dropped
        // unrun by `close`'s caller or by the inbox's `Drop`, never run.
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed(task));
        }
        let node = Box::into_raw(Box::new(Node {
            task,
            next: ptr::null_mut(),
        }));
        // ORDERING: `Relaxed`: the value is only a guess for the CAS below.
        let mut newest = self.newest.load(Ordering::Relaxed);
        loop {
            // SAFETY: `node` is ours until the CAS below publishes it.
            unsafe { (*node).next = newest };
            // ORDERING: `Release` on success publishes the node's contents
            // to `take_all`'s `Acquire` swap.
            match self.newest.compare_exchange_weak(
                newest,
                node,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(current) => newest = current,
            }
        }
        self.queue.wake();
        Ok(())
    }

    /// Every submission so far, oldest first.
    pub(super) fn take_all(&self) -> Taken<F> {
        // ORDERING: `Acquire` pairs with `push`'s `Release`: we see the
        // contents of every node in the list we take.
        let mut list = self.newest.swap(ptr::null_mut(), Ordering::Acquire);
        let mut oldest_first = ptr::null_mut();
        while !list.is_null() {
            // SAFETY: the list is ours (swapped out); its nodes came from
            // `Box::into_raw` and are each visited once.
            let next = unsafe { (*list).next };
            // SAFETY: as above.
            unsafe { (*list).next = oldest_first };
            oldest_first = list;
            list = next;
        }
        Taken(oldest_first)
    }

    pub(super) fn register(&self, waker: &Waker) {
        self.queue.register(waker);
    }

    /// Refuses further submissions (those racing with this are dropped by
    /// the caller's next `take_all` or by `Drop`).
    pub(super) fn close(&self) {
        // ORDERING: `Release`, see `push`.
        self.closed.store(true, Ordering::Release);
        drop(self.queue.take());
    }

    pub(super) fn is_closed(&self) -> bool {
        // ORDERING: `Acquire`, see `push`.
        self.closed.load(Ordering::Acquire)
    }
}

impl<F> Drop for Inbox<F> {
    fn drop(&mut self) {
        drop(self.take_all());
    }
}

/// Submissions taken out of the inbox, oldest first; drops the rest when
/// dropped.
pub(super) struct Taken<F>(*mut Node<F>);

impl<F> Iterator for Taken<F> {
    type Item = F;

    fn next(&mut self) -> Option<F> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: the list is owned by `self` and came from `Box::into_raw`;
        // we advance past the node before anything else can observe it.
        let node = unsafe { Box::from_raw(self.0) };
        self.0 = node.next;
        Some(node.task)
    }
}

impl<F> Drop for Taken<F> {
    fn drop(&mut self) {
        /// Goes on dropping the rest if a task's destructor panics (a
        /// second panic then aborts, as in any collection's drop).
        struct Rest<'a, F>(&'a mut Taken<F>);
        impl<F> Drop for Rest<'_, F> {
            fn drop(&mut self) {
                for task in self.0.by_ref() {
                    drop(task);
                }
            }
        }
        let rest = Rest(self);
        // Each task is unlinked (its node freed) before it is dropped.
        for task in rest.0.by_ref() {
            drop(task);
        }
    }
}

/// A cloneable handle that pushes tasks into a
/// [`TaskQueue`](super::TaskQueue) without `&mut` access to it: from another
/// thread, from an interrupt handler, or from inside one of the queue's own
/// running tasks (`alloc`).
///
/// A submitted task joins the queue's submission order when the queue next
/// polls (it takes the submissions then), and is started like any other.
/// Made by [`TaskQueue::submitter`](super::TaskQueue::submitter).
///
/// ```
/// # futures::executor::block_on(async {
/// use core::{future::Future, pin::Pin};
/// use deferral::TaskQueue;
/// use futures::StreamExt;
///
/// type Task = Pin<Box<dyn Future<Output = u32> + Send>>;
/// let mut queue = core::pin::pin!(TaskQueue::<Task>::new());
/// let submit = queue.as_mut().submitter();
/// queue
///     .as_mut()
///     .push(Box::pin(async move {
///         // A task pushes a follow-up task into its own queue.
///         submit.submit(Box::pin(async { 2 })).unwrap();
///         1
///     }))
///     .unwrap();
/// assert_eq!(queue.collect::<Vec<_>>().await, [1, 2]);
/// # });
/// ```
pub struct Submitter<F> {
    pub(super) inbox: Arc<Inbox<F>>,
}

impl<F> Submitter<F> {
    /// Hands `task` to the queue (not started here) and wakes it. Refused
    /// with [`PushError::Closed`] once the queue is dropped or has stopped
    /// on a rejection.
    ///
    /// A submission racing with the queue's drop may be accepted and then
    /// dropped unrun: it is never run after the queue is gone.
    ///
    /// The queue's waker is woken last, once the task is in the inbox: if
    /// it panics (or drops the queue), the panic propagates out of `submit`
    /// and the task stays submitted (or is dropped unrun with the queue).
    ///
    /// ```
    /// use deferral::{PushError, TaskQueue};
    /// let mut queue = Box::pin(TaskQueue::new());
    /// let submit = queue.as_mut().submitter();
    /// submit.submit(core::future::ready(1)).unwrap();
    /// drop(queue); // the submitted task is dropped, never run
    /// let refused = submit.submit(core::future::ready(2));
    /// assert!(matches!(refused, Err(PushError::Closed(_))));
    /// ```
    pub fn submit(&self, task: F) -> Result<(), PushError<F>> {
        self.inbox.push(task)
    }

    /// Whether the queue is gone (or stopped): [`Self::submit`] then refuses.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let mut queue = Box::pin(TaskQueue::<core::future::Ready<()>>::new());
    /// let submit = queue.as_mut().submitter();
    /// assert!(!submit.is_closed());
    /// drop(queue);
    /// assert!(submit.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inbox.is_closed()
    }
}

impl<F> Clone for Submitter<F> {
    fn clone(&self) -> Self {
        Submitter {
            inbox: self.inbox.clone(),
        }
    }
}

impl<F> fmt::Debug for Submitter<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submitter")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
