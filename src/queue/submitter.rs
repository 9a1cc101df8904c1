//! [`Submitter`] (`alloc`): push into a [`TaskQueue`](super::TaskQueue)
//! from anywhere, including from inside one of its running tasks.
//!
//! # How it works
//!
//! A running task cannot hold a reference to the queue that is polling it
//! (and a `TaskQueue` is not `Sync`), so submissions go through a shared
//! inbox: a lock-free, push-only linked list
//! (a Treiber stack). [`Submitter::submit`] allocates a node and links it in
//! with one compare-and-swap, then wakes the queue through an
//! [`AtomicWaker`]. The queue takes the whole list at once (one `swap` with
//! null, so there is no ABA problem: nodes are never popped one by one),
//! reverses it into submission order and appends it to its own tasks.
//! Nothing spins or locks. `tests/loom_queue.rs` model-checks submit vs.
//! poll vs. drop.
//!
//! The inbox also counts the live [`Submitter`]s, like an mpsc channel
//! counts its senders: while one lives (and the queue is not closed), an
//! empty queue waits for work instead of ending its stream. The last one
//! to go wakes the queue, after its count reached zero; the queue reads
//! the count *before* it takes the submissions, so a zero it reads comes
//! after every submission (see `Inbox::is_open`).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::ptr;
use core::task::Waker;

use super::PushError;
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, AtomicWaker, Ordering};

struct Node<F> {
    task: F,
    priority: i32,
    next: *mut Node<F>,
}

pub(super) struct Inbox<F> {
    /// The newest submission; each node points at the previous one.
    newest: AtomicPtr<Node<F>>,
    /// Set when the queue is dropped, closed or stopped.
    closed: AtomicBool,
    /// Live `Submitter`s.
    senders: AtomicUsize,
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
            senders: AtomicUsize::new(0),
            queue: AtomicWaker::new(),
        }
    }

    /// Whether a submission may still come: a `Submitter` lives and the
    /// inbox is not closed. Read it *before* [`Self::take_all`]: once it
    /// reads `false`, that `take_all` sees every submission ever made.
    pub(super) fn is_open(&self) -> bool {
        // ORDERING: `Acquire` pairs with the `Release` of the last
        // `Submitter`'s decrement (`Drop`): every submission made before
        // any submitter was dropped happens before this load, hence before
        // the caller's `take_all`.
        self.senders.load(Ordering::Acquire) > 0 && !self.is_closed()
    }

    /// Whether a submission waits to be taken.
    pub(super) fn has_pending(&self) -> bool {
        // ORDERING: `Relaxed`: a hint for `TaskQueue::until` (a submission
        // it misses wakes the queue, whose next poll takes it).
        !self.newest.load(Ordering::Relaxed).is_null()
    }

    /// A new `Submitter`'s count.
    pub(super) fn add_sender(&self) {
        // ORDERING: `Relaxed`, as in `Arc::clone`: the caller holds the
        // queue or a submitter, so the count cannot reach zero meanwhile.
        self.senders.fetch_add(1, Ordering::Relaxed);
    }

    fn push(&self, task: F, priority: i32) -> Result<(), PushError<F>> {
        // ORDERING: `Acquire` pairs with `close`'s `Release`; a submission
        // racing with `close` may still be linked in, and is then dropped
        // unrun by `close`'s caller or by the inbox's `Drop`, never run.
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed(task));
        }
        let node = Box::into_raw(Box::new(Node {
            task,
            priority,
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
    /// the caller's next `take_all` or by `Drop`) and lets go of the
    /// queue's waker.
    pub(super) fn close(&self) {
        // ORDERING: `Release`, see `push`.
        self.closed.store(true, Ordering::Release);
        drop(self.queue.take());
    }

    /// Refuses further submissions; the queue drains what it holds.
    pub(super) fn close_for_submitters(&self) {
        // ORDERING: `Release`, see `push`.
        self.closed.store(true, Ordering::Release);
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

impl<F> Taken<F> {
    /// Whether no submission was taken.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_null()
    }
}

impl<F> Iterator for Taken<F> {
    /// A task and its priority.
    type Item = (F, i32);

    fn next(&mut self) -> Option<(F, i32)> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: the list is owned by `self` and came from `Box::into_raw`;
        // we advance past the node before anything else can observe it.
        let node = unsafe { Box::from_raw(self.0) };
        self.0 = node.next;
        Some((node.task, node.priority))
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
/// [`TaskQueue`](super::TaskQueue) without access to it: from another
/// thread or from inside one of the queue's own running tasks (`alloc`: each
/// submission allocates a node; for interrupt handlers and without a heap,
/// use a `static` [`Inbox`](super::Inbox)).
///
/// Like an mpsc channel's senders, the submitters keep the queue open:
/// while one lives, an empty queue waits for submissions (its stream is
/// pending) instead of ending; when the last one is dropped (or the queue
/// is [closed](super::TaskQueue::close)) and the work is done, the stream
/// ends. A submitted task joins the queue when the queue next polls, and
/// starts like any other. Made by
/// [`TaskQueue::submitter`](super::TaskQueue::submitter).
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::TaskQueue;
/// use futures::StreamExt;
///
/// let mut queue = core::pin::pin!(TaskQueue::new().concurrency(2));
/// let submit = queue.submitter();
/// let producer = std::thread::spawn(move || {
///     for n in 1..=3 {
///         submit.submit(async move { n * 10 }).unwrap();
///     }
///     // `submit` is dropped here: the queue ends once the work is done.
/// });
/// let mut got = Vec::new();
/// while let Some(n) = queue.next().await {
///     got.push(n);
/// }
/// producer.join().unwrap();
/// assert_eq!(got, [10, 20, 30]);
/// # });
/// ```
pub struct Submitter<F> {
    pub(super) inbox: Arc<Inbox<F>>,
}

impl<F> Submitter<F> {
    /// Hands `task` to the queue (not started here) and wakes it. Refused
    /// with [`PushError::Closed`] once the queue is dropped, closed or has
    /// stopped on a rejection.
    ///
    /// A submission racing with the queue's drop may be accepted and then
    /// dropped unrun: it is never run after the queue is gone.
    ///
    /// The queue's waker is woken last, once the task is in the inbox: if
    /// it panics (or drops the queue), the panic propagates out of `submit`
    /// and the task stays submitted (or is dropped unrun with the queue).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// use deferral::queue::PushError;
    /// let queue = TaskQueue::new();
    /// let submit = queue.submitter();
    /// submit.submit(core::future::ready(1)).unwrap();
    /// drop(queue); // the submitted task is dropped, never run
    /// let refused = submit.submit(core::future::ready(2));
    /// assert!(matches!(refused, Err(PushError::Closed(_))));
    /// ```
    pub fn submit(&self, task: F) -> Result<(), PushError<F>> {
        self.inbox.push(task, 0)
    }

    /// [`Self::submit`] with a priority (higher first, FIFO among equals):
    /// see [`Options::priority`](super::Options::priority). A submitted
    /// task gets the queue's timeout.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let queue = TaskQueue::new();
    /// let submit = queue.submitter();
    /// submit.submit(core::future::ready("low")).unwrap();
    /// submit.submit_with_priority(core::future::ready("high"), 1).unwrap();
    /// drop(submit);
    /// assert_eq!(queue.collect::<Vec<_>>().await, ["high", "low"]);
    /// # });
    /// ```
    pub fn submit_with_priority(&self, task: F, priority: i32) -> Result<(), PushError<F>> {
        self.inbox.push(task, priority)
    }

    /// Whether the queue is gone, closed or stopped: [`Self::submit`] then
    /// refuses.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<()>>::new();
    /// let submit = queue.submitter();
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
        self.inbox.add_sender();
        Submitter {
            inbox: self.inbox.clone(),
        }
    }
}

impl<F> Drop for Submitter<F> {
    fn drop(&mut self) {
        // ORDERING: `Release` publishes this submitter's submissions to the
        // queue's `Acquire` load in `Inbox::is_open` (they are published by
        // their own `Release` CAS too; this orders the count after them);
        // `Acquire` so that the last one sees every other's decrement
        // before it wakes the queue.
        if self.inbox.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: the queue may be waiting for submissions. Its
            // waker runs last (foreign code), with the count already zero.
            self.inbox.queue.wake();
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
