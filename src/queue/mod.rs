//! [`TaskQueue`]: deferred work started under a concurrency limit, results
//! as a [`Stream`], and everything that goes with it.
//!
//! # Where tasks run, and when they progress
//!
//! A `TaskQueue` is a stream, not a runtime. Its tasks run **inside the
//! poll of whoever consumes the queue** — the code that awaits
//! `queue.next()`, [`until`](TaskQueue::until), or anything else that
//! polls the stream: that poll starts tasks and polls them, one after
//! another, on the consumer's task and thread. Nothing is spawned and
//! nothing runs in parallel (a task that computes for a long time holds up
//! the others and the consumer), and **nothing progresses while nobody
//! polls the queue**: a task waiting for I/O or a timer is woken by it like
//! any future, and the wake-up makes the consumer poll the queue again,
//! which polls that task.
//!
//! One poll of the queue, in this order:
//!
//! 1. yields a result that is already there, if any (and does nothing else);
//! 2. polls the running tasks that were woken since the last poll;
//! 3. takes new submissions ([`Submitter`], [`Inbox`]);
//! 4. starts tasks — each converted with `into_future` and polled once —
//!    while fewer than [`concurrency`](TaskQueue::concurrency) run, until one
//!    has a result to yield (a task that has finished does not count, even
//!    while its result waits for its turn; see [`Yield`]).
//!
//! It returns `Pending` only when no task can start (limit reached, paused,
//! rate-limited, window full, nothing queued): a slow task holds up the
//! results after it in submission order, never the starts.
//!
//! Step 1 is where it differs from p-queue, which starts the next task as
//! soon as one settles: here the poll that hands out a result starts
//! nothing, so with `concurrency(1)` the next task starts at the next poll
//! — after the consumer is done with the result (`futures`'
//! `buffered(1)` behaves the same).
//!
//! The same goes for the context ([`crate::context`], `std`): a task runs
//! in the context of the consumer's poll, not of whoever pushed it (a
//! queue is a stream of work, like `FuturesUnordered`). To keep the
//! pusher's, push `Snapshot::capture().wrap(task)`, or a
//! [`DeferredPromise`](crate::DeferredPromise), which runs in the context
//! it was created in.
//!
//! For tasks that should make progress while you are busy elsewhere, poll
//! the queue from a task of its own (`tokio::spawn(async move { while let
//! Some(r) = queue.next().await { .. } })`); for tasks that should run on
//! several threads at once, spawn them on a runtime (`tokio::task::JoinSet`)
//! and queue their join handles.
//!
//! # What it does
//!
//! A list of deferred fetches awaited one after another is the simplest
//! task queue. [`TaskQueue`] is that loop done properly — what `p-queue`
//! and `p-limit` give JavaScript, and `futures::stream::Buffered` /
//! `BufferUnordered` give Rust — with lazy start, without an executor and
//! without a heap:
//!
//! - a pushed task is not started (not even converted with
//!   [`IntoFuture::into_future`]) until the queue starts it;
//! - at most [`concurrency`](TaskQueue::concurrency) tasks run at once
//!   (default 1: one after another);
//! - tasks start by priority ([`Options`]), then in submission order; a
//!   queued task can get a new [priority](TaskQueue::set_priority) or be
//!   [cancelled](TaskQueue::cancel) by the [`TaskId`] its push returned; the
//!   queue can be [paused](TaskQueue::pause), [cleared](TaskQueue::clear),
//!   [closed](TaskQueue::close);
//! - results come out as a [`Stream`], in start or completion order
//!   ([`Yield`]); [`until`](TaskQueue::until) yields them until the queue
//!   reaches a [`Level`] (p-queue's `onIdle`, `onEmpty`, `onSizeLessThan`);
//! - [`Submitter`]s (`alloc`) and a `static` [`Inbox`] (no heap, interrupt
//!   handlers) feed it from elsewhere and keep it open, like an mpsc
//!   channel's senders;
//! - a [`Timer`] factory gives it [timeouts](TaskQueue::timeout) (per task
//!   too) and a [rate limit](TaskQueue::rate_limit), without a runtime;
//! - on a rejection it keeps going or stops ([`OnRejection`]);
//! - dropping the queue drops unstarted tasks unrun and running ones in
//!   place.
//!
//! # Storing a queue
//!
//! Every method that adds, removes or configures tasks takes `&self`, so a
//! queue is used the same way whether it is a plain value, pinned on the
//! stack (`core::pin::pin!`) or in a `Pin<Box<_>>`: `queue.push(task)`,
//! no `as_mut()`. Only polling it (the [`Stream`], [`TaskQueue::until`])
//! needs it pinned. A queue whose running futures are `Unpin` — boxed
//! tasks ([`BoxTask`]) or any `Unpin` future — is `Unpin` itself, so the
//! type a struct stores is simply:
//!
//! ```
//! # #[cfg(feature = "alloc")] // (`BoxTask` needs a heap)
//! # futures::executor::block_on(async {
//! use deferral::TaskQueue;
//! use deferral::queue::BoxTask;
//! use futures::StreamExt;
//!
//! struct Crawler {
//!     pages: TaskQueue<BoxTask<'static, String>>,
//! }
//!
//! impl Crawler {
//!     fn visit(&self, url: &'static str) {
//!         self.pages.push_boxed(async move { format!("<html>{url}</html>") }).unwrap();
//!     }
//!     async fn next_page(&mut self) -> Option<String> {
//!         self.pages.next().await
//!     }
//! }
//!
//! let mut crawler = Crawler { pages: TaskQueue::new().concurrency(4) };
//! crawler.visit("a");
//! assert_eq!(crawler.next_page().await.as_deref(), Some("<html>a</html>"));
//! # });
//! ```
//!
//! A queue of unboxed `async` blocks (`!Unpin`, the no-heap case) is stored
//! pinned: `Pin<Box<TaskQueue<F>>>`, or pinned in the async fn that owns
//! it; its methods are called the same way.
//!
//! # How it works
//!
//! All of a queue's state lives in one `UnsafeCell<Inner>`: the ring of
//! running and queued tasks (`ring.rs`), the rate limit's window timer,
//! and the unpinned rest (`state.rs`). Two rules make that sound:
//!
//! - **One `&mut` at a time.** A `TaskQueue` is `Send` but not `Sync`, so
//!   its `&self` methods run on one thread. `poll_next` and `until` take
//!   `Pin<&mut Self>`: the borrow checker gives them sole access, and no
//!   `&self` method can run during them. The `&self` methods reach the
//!   state only through `TaskQueue::with` (read-write) and
//!   `TaskQueue::view` (read-only), which set and check a `busy` flag: a
//!   call made while another holds the state — which only a re-entrant
//!   call from foreign code could be, and none of them runs foreign code
//!   inside — panics instead of making a second reference. Foreign code
//!   that `&self` methods do run (a task's destructor in
//!   [`TaskQueue::clear`], an iterator in [`TaskQueue::push_all`]) runs
//!   outside `with`, between two accesses, with the queue consistent; it may
//!   call the queue again.
//! - **No shared reference freezes a future.** A running future may point
//!   into itself (an `async fn` holding a reference to its own local across
//!   an `.await`); a shared reference covering its bytes, made between two
//!   of its polls, invalidates those pointers (Stacked Borrows). So `&Self`
//!   covers only the `UnsafeCell`; the read-only accessors make a `&Ring`
//!   and a `&State`, never a `&Inner`, and the ring's slots and the window
//!   are each in an `UnsafeCell` too, so neither reference claims a future's
//!   bytes. (It did on `c9d10e1`: `len()` took `&TaskQueue`, which covered
//!   the rate limit's window timer; `tests/queue_accessors.rs`.)
//!
//! Pinning: the running futures and timers in the ring's slots and the
//! window timer are structurally pinned — never moved while the queue is
//! pinned (no method moves them; only builders, which take the queue by
//! value, convert them, and a pinned queue cannot be passed by value). So
//! `TaskQueue` is `Unpin` exactly when those two types are
//! (`F::IntoFuture` and the timer's `Sleep`).
//!
//! Who may poll what:
//!
//! | shared part | polled or drained by | enforced by |
//! |---|---|---|
//! | the queue | the holder of `Pin<&mut TaskQueue>` | the borrow checker (`&TaskQueue` cannot poll) |
//! | a `static` [`Inbox`] | the one queue attached to it, ever | a flag set once by [`TaskQueue::attach`] |
//! | a [`Submitter`]'s inbox | the queue that made it | it is private to that queue |
//! | the per-slot wake flags (`wake_set.rs`) | the queue that made them | private to that queue |
//!
//! # Counters
//!
//! | counter | width | guards | on wrap |
//! |---|---|---|---|
//! | [`TaskId`] (`State::next_id`) | 64 bits | which task `cancel` and `set_priority` act on | does not wrap: 2^64 pushes is 584 years at one per nanosecond |
//! | [`Inbox`] positions and stamps | `usize`: 32 bits on Cortex-M | a producer's claim of a slot | wrapping arithmetic throughout, tested across the wrap (`inbox::tests`, release); a producer stalled between two instructions while 2^32 other positions pass could claim a reused slot (the ABA of every Vyukov-style ring, crossbeam's `ArrayQueue` too) |
//!
//! The ring's counters (`head`, `len`, `started`, ..) count slots of a
//! fixed window and guard no reuse; a [`Submitter`] count is bounded by its
//! `Arc`'s.
//!
//! See [`TaskQueue`] for storage, wake-ups and panics.

#[cfg(feature = "alloc")]
mod boxed;
mod inbox;
mod options;
mod ring;
mod state;
#[cfg(feature = "alloc")]
mod submitter;
mod timer;
mod until;

use core::cell::{Cell, UnsafeCell};
use core::fmt;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};
use core::time::Duration;

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

use futures_core::Stream;
use futures_core::stream::FusedStream;

#[cfg(feature = "alloc")]
pub use boxed::BoxTask;
pub use inbox::Inbox;
use inbox::Source;
pub use options::{
    AttachError, OnRejection, Options, Outcome, PushAllError, PushError, TaskId, Yield,
    ZeroConcurrency,
};
use ring::Ring;
#[cfg(feature = "alloc")]
use state::InboxOwner;
use state::{Attached, State, Unstarted};
#[cfg(feature = "alloc")]
pub use submitter::Submitter;
use timer::RateLimit;
pub use timer::{Clock, Deadline, NoSleep, NoTimer, TimedOut, Timer, Timing};
pub use until::{Level, Until};

/// Inline window of a queue made by [`TaskQueue::new`], in tasks.
///
/// Choose another with [`TaskQueue::with_capacity`].
///
/// ```
/// assert_eq!(deferral::queue::DEFAULT_CAPACITY, 16);
/// ```
pub const DEFAULT_CAPACITY: usize = 16;

/// The default stop predicate type of a [`TaskQueue`]: a function pointer
/// (what [`TaskQueue::on_rejection`] stores). A queue built with a closure
/// ([`TaskQueue::stop_when`]) names the closure's type instead.
///
/// ```
/// use deferral::TaskQueue;
/// use deferral::queue::{NoTimer, OnRejection, StopFn};
/// type Job = core::future::Ready<Result<u8, ()>>;
/// let _queue: TaskQueue<Job, 16, NoTimer, StopFn<Result<u8, ()>>> =
///     TaskQueue::new().on_rejection(OnRejection::Stop);
/// ```
pub type StopFn<O> = fn(&O) -> bool;

/// Deferred work started under a concurrency limit; results as a [`Stream`].
///
/// **Where tasks run:** inside the poll of the queue's consumer — whoever
/// awaits `queue.next()` (or polls the stream some other way). Nothing is
/// spawned, nothing runs in parallel, and nothing progresses while nobody
/// polls the queue; see "Where tasks run, and when they progress" in the
/// [module docs](self).
///
/// `F` is the task type: anything [`IntoFuture`] — an `async` block, a
/// [`DeferredPromise`](crate::DeferredPromise), a [`BoxTask`] for tasks of
/// mixed types. `N` is the inline window, in tasks (see Storage below).
/// `T` says what the queue can do with time ([`NoTimer`], [`Clock`],
/// [`Deadline`]), `S` is the stop predicate's type ([`Self::stop_when`]).
/// Tasks are added through `&self`; polling needs the queue pinned
/// (`core::pin::pin!`, `Box::pin`, or nothing at all when it is `Unpin`:
/// see "Storing a queue" in the module docs). Who may poll it: whoever holds
/// it mutably — `Pin<&mut TaskQueue>` or the queue itself —, one at a time;
/// a shared `&TaskQueue` (what `push` takes) cannot poll, and the queue is
/// not `Sync`, so its `&self` methods all run on one thread.
///
/// A sequential loop over deferred tasks that start only when their turn
/// comes:
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::TaskQueue;
/// use futures::StreamExt;
/// use std::sync::{Arc, Mutex};
///
/// let started = Arc::new(Mutex::new(Vec::new()));
/// let mut queue = core::pin::pin!(TaskQueue::new()); // concurrency 1
/// for url in 1..=4 {
///     let started = started.clone();
///     queue
///         .push(async move {
///             started.lock().unwrap().push(url);
///             Ok::<_, ()>(url * 10)
///         })
///         .unwrap();
/// }
/// assert!(started.lock().unwrap().is_empty()); // nothing started yet
/// assert_eq!(queue.next().await, Some(Ok(10)));
/// assert_eq!(*started.lock().unwrap(), [1]); // one at a time
/// assert_eq!(queue.count().await, 3); // the rest, results discarded
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
/// [`Self::until`] with [`Level::Idle`].
///
/// # Storage
///
/// The queue holds an inline window of `N` slots, used as a ring in start
/// order: the tasks it started (running, or finished with an output waiting
/// for its turn) and the first unstarted ones (by priority, then submission
/// order). The window spans from the oldest task not yet yielded to the
/// newest started one, the tasks yielded between them included (in
/// completion order too), so a slow old task keeps the slots after it in
/// use: until it finishes, at most `N − 1` tasks start after it, whatever
/// the concurrency (a `FuturesUnordered` has no such bound; pick `N` well
/// above the concurrency when task durations vary a lot) — the window, not
/// the concurrency, bounds how far the queue runs ahead of its oldest
/// unfinished task and of its consumer. Without `alloc` a push into a full
/// window hands the task back ([`PushError::Full`]); with `alloc` the tasks
/// beyond the window wait in a `VecDeque` (sorted by priority, as p-queue
/// does: a push of a higher priority than waiting ones is a binary search
/// and an insertion), unbounded, and start from there into the window as
/// it frees up. Running tasks always live in the window, pinned there.
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
    const N: usize = DEFAULT_CAPACITY,
    T: Timing = NoTimer,
    S = StopFn<<F as IntoFuture>::Output>,
> {
    /// Everything (see "How it works" in the module docs).
    inner: UnsafeCell<Inner<F, N, T, S>>,
    /// A `&self` method holds a reference into `inner` (see `with`).
    busy: Cell<bool>,
}

/// A queue's state: the pinned parts (the ring's running futures, the
/// window timer), each in an `UnsafeCell`, and the rest.
struct Inner<F: IntoFuture, const N: usize, T: Timing, S> {
    /// Structurally pinned: running tasks (and their timers) live here.
    ring: Ring<F, T, N>,
    /// The rate limit's current window, from its first start. Structurally
    /// pinned; in a cell so that a `&Inner` would not freeze it (none is
    /// made, see the module docs; this keeps it so).
    window: UnsafeCell<Option<T::Sleep>>,
    state: State<F, N, T, S>,
}

// SAFETY: only the ring's running futures (`F::IntoFuture`) and the timers
// (`T::Sleep`: per task, and the window) are pinned (structurally, see the
// module docs); when both are `Unpin`, moving a queue moves nothing that
// relies on its address. Nothing else in the queue is ever pinned.
impl<F, const N: usize, T, S> Unpin for TaskQueue<F, N, T, S>
where
    F: IntoFuture,
    F::IntoFuture: Unpin,
    T: Timing,
    T::Sleep: Unpin,
{
}

/// A pinned queue's parts, the pinned ones pinned (`TaskQueue::project`).
struct Parts<'a, F: IntoFuture, const N: usize, T: Timing, S> {
    ring: Pin<&'a mut Ring<F, T, N>>,
    window: Pin<&'a mut Option<T::Sleep>>,
    state: &'a mut State<F, N, T, S>,
}

/// Resets the `busy` flag when a `with` or `view` ends, even by a panic.
struct Release<'a>(&'a Cell<bool>);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> TaskQueue<F, N, T, S> {
    /// Marks the state as in use; panics if it is already (a re-entrant
    /// call: see "How it works").
    #[inline(always)]
    fn enter(&self) -> Release<'_> {
        if self.busy.replace(true) {
            reentered();
        }
        Release(&self.busy)
    }

    /// Runs `f` on the ring and the state: the one way `&self` methods
    /// change the queue. `f` must run no foreign code (see "How it works").
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(Pin<&mut Ring<F, T, N>>, &mut State<F, N, T, S>) -> R) -> R {
        let _busy = self.enter();
        let inner = self.inner.get();
        // SAFETY: `busy` was clear, so no other reference into `inner`
        // exists: the queue is `!Sync` (this thread only), a `Pin<&mut
        // Self>` holder cannot coexist with our `&self`, and every other
        // `&self` access goes through `enter` and ends before returning.
        // The references made here live until `f` returns, and `f` runs no
        // foreign code that could call back. The ring is pinned in place
        // if the queue is (its running futures are never moved: ring.rs);
        // if the queue is not pinned, no future in it has been polled
        // (polling needs `Pin<&mut Self>`), or the queue is `Unpin`.
        let (ring, state) =
            unsafe { (Pin::new_unchecked(&mut (*inner).ring), &mut (*inner).state) };
        f(ring, state)
    }

    /// Runs `f` on shared references to the ring and the state: the one
    /// way `&self` methods read the queue.
    #[inline(always)]
    fn view<R>(&self, f: impl FnOnce(&Ring<F, T, N>, &State<F, N, T, S>) -> R) -> R {
        let _busy = self.enter();
        let inner = self.inner.get();
        // SAFETY: as in `with`, no mutable reference into `inner` exists
        // meanwhile. No `&Inner` is made: `&Ring` freezes its counters but
        // not its slots (each in an `UnsafeCell`), so no running future's
        // bytes are claimed, and the window is not reached at all.
        let (ring, state) = unsafe { (&(*inner).ring, &(*inner).state) };
        f(ring, state)
    }

    /// The parts of a pinned queue, for polling.
    fn project(self: Pin<&mut Self>) -> Parts<'_, F, N, T, S> {
        // SAFETY: `Pin<&mut Self>` is sole access (no `&self` method runs
        // meanwhile, see "How it works"). The ring and the window are
        // structurally pinned: never moved out of a pinned queue (no
        // method moves them, `TaskQueue` has no `Drop` impl, not
        // `repr(packed)`), and the `Unpin` impl requires both to be `Unpin`.
        // The state is not pinned.
        unsafe {
            let inner = self.get_unchecked_mut().inner.get_mut();
            Parts {
                ring: Pin::new_unchecked(&mut inner.ring),
                window: Pin::new_unchecked(inner.window.get_mut()),
                state: &mut inner.state,
            }
        }
    }

    /// The state of a queue a builder owns (the state is never pinned).
    fn state_mut(&mut self) -> &mut State<F, N, T, S> {
        &mut self.inner.get_mut().state
    }

    /// The queue by value, for a builder (nothing in it is pinned: a pinned
    /// queue cannot be passed by value).
    fn into_inner(self) -> Inner<F, N, T, S> {
        self.inner.into_inner()
    }

    fn from_inner(inner: Inner<F, N, T, S>) -> Self {
        TaskQueue {
            inner: UnsafeCell::new(inner),
            busy: Cell::new(false),
        }
    }
}

#[cold]
#[inline(never)]
fn reentered() -> ! {
    panic!("TaskQueue: a method was called again while another one was running (re-entered)")
}

impl<F: IntoFuture> TaskQueue<F> {
    /// An empty queue with an inline window of [`DEFAULT_CAPACITY`]
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
            inner: UnsafeCell::new(Inner {
                ring: Ring::new(),
                window: UnsafeCell::new(None),
                state: State::new(NoTimer),
            }),
            busy: Cell::new(false),
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
    /// calls it when a task with a timeout starts and when a rate-limit
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
        // The window is `None`: a queue without a timer opens none.
        let Inner { ring, state, .. } = self.into_inner();
        TaskQueue::from_inner(Inner {
            ring: ring.convert(|never| match never {}, |()| ()),
            window: UnsafeCell::new(None),
            state: state.convert(|NoTimer| Clock(timer), |s| s),
        })
    }
}

impl<F: IntoFuture, const N: usize, Mk: Timer, S> TaskQueue<F, N, Clock<Mk>, S> {
    /// Gives every task a timeout from its start: a task still running then
    /// is dropped (in place, unfinished) and yields `Err(TimedOut)`; the
    /// others yield `Ok(output)` — the stream's item becomes
    /// `Result<F::Output, TimedOut>`. `timeout` is the default: a task
    /// pushed with [`Options::timeout`] has its own, and with `None` only
    /// those tasks have one. The timer is made from the queue's [`Timer`]
    /// factory when the task starts, so time spent waiting to start does not
    /// count (p-queue's `timeout`). When the queue stops on rejections
    /// ([`Self::on_rejection`], [`Self::stop_when`]), a timeout is a
    /// rejection.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::time::Duration;
    /// use deferral::TaskQueue;
    /// use deferral::queue::TimedOut;
    /// use futures::StreamExt;
    /// use futures::future::Either;
    /// // A timer that is already over: every task that does not finish at
    /// // its first poll times out.
    /// let queue = TaskQueue::new()
    ///     .timer(|_: Duration| core::future::ready(()))
    ///     .timeout(Duration::from_millis(10));
    /// queue.push(Either::Left(core::future::ready(1))).unwrap();
    /// queue.push(Either::Right(core::future::pending())).unwrap();
    /// assert_eq!(queue.collect::<Vec<_>>().await, [Ok(1), Err(TimedOut)]);
    /// # });
    /// ```
    pub fn timeout(self, timeout: impl Into<Option<Duration>>) -> TaskQueue<F, N, Deadline<Mk>, S> {
        let timeout = timeout.into();
        let Inner {
            ring,
            window,
            state,
        } = self.into_inner();
        TaskQueue::from_inner(Inner {
            // Running tasks keep running without a timeout; queued ones get
            // the new default.
            ring: ring.convert(|sleep| sleep, |()| timeout),
            window,
            state: state.convert(|Clock(timer)| Deadline { timer, timeout }, |s| s),
        })
    }
}

impl<F: IntoFuture, const N: usize, Mk: Timer, S> TaskQueue<F, N, Deadline<Mk>, S> {
    /// Changes the default timeout of a queue that has timeouts (p-queue's
    /// `queue.timeout = ms`): tasks pushed from now on get it, those
    /// already pushed keep theirs (p-queue reads it in `add`), and a task
    /// pushed with [`Options::timeout`] keeps its own. `None`: from now on
    /// only such tasks have one. A submission counts as pushed when it
    /// was submitted: the queue takes in what its [`Submitter`]s sent
    /// before it changes the default (without `alloc`, an attached
    /// [`Inbox`]'s tasks that do not fit in the window yet get the default
    /// in force when they do).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::time::Duration;
    /// use deferral::TaskQueue;
    /// use deferral::queue::TimedOut;
    /// use futures::StreamExt;
    /// // A timer that is already over: a task with a timeout that does not
    /// // finish at its first poll times out.
    /// let queue = TaskQueue::new()
    ///     .timer(|_: Duration| core::future::ready(()))
    ///     .timeout(Duration::from_millis(10));
    /// queue.push(core::future::pending::<()>()).unwrap();
    /// queue.set_timeout(None);
    /// queue.push(core::future::pending()).unwrap();
    /// let mut queue = core::pin::pin!(queue);
    /// assert_eq!(queue.next().await, Some(Err(TimedOut)));
    /// // The second task has no timeout: it is still running.
    /// assert_eq!(futures::poll!(queue.next()), core::task::Poll::Pending);
    /// # });
    /// ```
    pub fn set_timeout(&self, timeout: impl Into<Option<Duration>>) {
        let timeout = timeout.into();
        self.with(|ring, state| {
            // What was submitted before keeps the old default.
            state.refill(ring);
            state.timing.timeout = timeout;
        });
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> TaskQueue<F, N, T, S> {
    /// Runs up to `limit` tasks at once (default 1: one after another;
    /// p-queue's `concurrency`). A task counts from its start until it
    /// finishes: a finished task whose result waits for its turn (in
    /// submission order) does not hold up the next start — unlike
    /// `buffered(limit)`, which counts it until it is yielded. What bounds
    /// the results waiting for the consumer is the window, `N`; at most `N`
    /// tasks run, whatever `limit` is.
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
        self.state_mut().concurrency = limit;
        Ok(self)
    }

    /// Changes the concurrency limit of a running queue (p-queue's
    /// `queue.concurrency = n`): a lower limit lets the running tasks
    /// finish and starts none until fewer run; a higher one starts more at
    /// the next poll. 0 is refused.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new();
    /// queue.set_concurrency(8).unwrap();
    /// assert_eq!(queue.max_running(), 8);
    /// assert!(queue.set_concurrency(0).is_err());
    /// ```
    pub fn set_concurrency(&self, limit: usize) -> Result<(), ZeroConcurrency> {
        if limit == 0 {
            return Err(ZeroConcurrency(()));
        }
        self.with(|_, state| state.concurrency = limit);
        Ok(())
    }

    /// Chooses the order of the results (default
    /// [`Yield::InSubmissionOrder`]).
    ///
    /// On a queue that already holds results not yet yielded (one that was
    /// polled, then moved: an `Unpin` queue), those come out in the order
    /// they wait in, and the new order applies from the first poll that
    /// finds none waiting: the switch never loses or holds back a result.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// use deferral::queue::Yield;
    /// let _queue = TaskQueue::<core::future::Ready<u8>>::new().order(Yield::InCompletionOrder);
    /// ```
    pub fn order(mut self, order: Yield) -> Self {
        let waiting = self.view(|ring, _| ring.finished() > 0);
        let state = self.state_mut();
        if waiting && order != state.order {
            state.next_order = Some(order);
        } else {
            state.order = order;
            state.next_order = None;
        }
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
    /// use core::future::ready;
    /// use deferral::TaskQueue;
    /// use deferral::queue::{OnRejection, PushError};
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new().on_rejection(OnRejection::Stop));
    /// queue.push(ready(Err::<u8, _>("no"))).unwrap();
    /// queue.push(ready(Ok(1))).unwrap();
    /// assert_eq!(queue.as_mut().count().await, 1);
    /// assert!(queue.is_stopped());
    /// let refused = queue.push(ready(Ok(2)));
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
        let Inner {
            ring,
            window,
            state,
        } = self.into_inner();
        TaskQueue::from_inner(Inner {
            ring,
            window,
            state: state.convert(|t| t, |_| stop).examining_finished(),
        })
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
    /// let queue = TaskQueue::new().stop_when(move |n: &u32| {
    ///     seen += 1;
    ///     *n > limit || seen > 10
    /// });
    /// for n in [3, 5, 1] {
    ///     queue.push(async move { n }).unwrap();
    /// }
    /// assert_eq!(Box::pin(queue).collect::<Vec<_>>().await, [3, 5]);
    /// # });
    /// ```
    pub fn stop_when<P>(self, is_rejection: P) -> TaskQueue<F, N, T, P>
    where
        P: FnMut(&F::Output) -> bool,
    {
        let Inner {
            ring,
            window,
            state,
        } = self.into_inner();
        TaskQueue::from_inner(Inner {
            ring,
            window,
            // The old predicate is dropped before the new one is handed
            // out: if its destructor panics, the unwinding drops the new
            // one (rust-lang/rust#47949).
            state: state
                .convert(
                    |t| t,
                    |old| {
                        drop(old);
                        Some(is_rejection)
                    },
                )
                .examining_finished(),
        })
    }

    /// Adds a task at the end of the queue (priority 0, the queue's
    /// timeout) and returns its [`TaskId`]. It is not started here (nor
    /// converted with `into_future`): the queue starts it when it is
    /// polled and fewer than the limit run. Works while other tasks run.
    ///
    /// Refused, the task handed back, when the window is full without
    /// `alloc` ([`PushError::Full`]), after a stop
    /// ([`PushError::Stopped`]) and after [`Self::close`]
    /// ([`PushError::Closed`]).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::ready;
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.push(ready(1)).unwrap();
    /// assert_eq!(queue.next().await, Some(1));
    /// queue.push(ready(2)).unwrap(); // after the first result
    /// assert_eq!(queue.next().await, Some(2));
    /// assert_eq!(queue.next().await, None);
    /// # });
    /// ```
    pub fn push(&self, task: F) -> Result<TaskId, PushError<F>> {
        self.with(|ring, state| state.push(ring, task, 0, None))
    }

    /// [`Self::push`] with [`Options`]: a priority (p-queue's `priority`:
    /// a task starts before every waiting task of a lower priority, after
    /// those of the same or a higher one; default 0) and, on a queue with
    /// a [timeout](Self::timeout), the task's own timeout (p-queue's
    /// per-task `timeout`). Running tasks are not affected. Refused as
    /// [`Self::push`] is; without `alloc`, a full window refuses any
    /// priority.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::ready;
    /// use deferral::TaskQueue;
    /// use deferral::queue::Options;
    /// use futures::StreamExt;
    /// let queue = TaskQueue::new();
    /// queue.push(ready("b")).unwrap();
    /// queue.push_with(ready("a"), Options::new().priority(1)).unwrap();
    /// queue.push_with(ready("c"), Options::new().priority(-1)).unwrap();
    /// assert_eq!(Box::pin(queue).collect::<Vec<_>>().await, ["a", "b", "c"]);
    /// # });
    /// ```
    pub fn push_with(&self, task: F, options: Options<T>) -> Result<TaskId, PushError<F>> {
        self.with(|ring, state| state.push(ring, task, options.priority, options.limit))
    }

    /// Pushes every task of `tasks` in order (p-queue's `addAll`), and
    /// returns how many. On the first refusal it stops and hands back the
    /// refused task and the tasks not pushed yet; those pushed stay.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let queue = TaskQueue::new().concurrency(2);
    /// let pushed = queue.push_all((1..=3).map(core::future::ready)).unwrap();
    /// assert_eq!(pushed, 3);
    /// assert_eq!(Box::pin(queue).collect::<Vec<_>>().await, [1, 2, 3]);
    /// # });
    /// ```
    pub fn push_all<I>(&self, tasks: I) -> Result<usize, PushAllError<F, I::IntoIter>>
    where
        I: IntoIterator<Item = F>,
    {
        let mut rest = tasks.into_iter();
        let mut pushed = 0;
        // The iterator is foreign code: it runs between pushes, outside
        // `with`.
        while let Some(task) = rest.next() {
            if let Err(refused) = self.push(task) {
                return Err(PushAllError { refused, rest });
            }
            pushed += 1;
        }
        Ok(pushed)
    }

    /// Gives the task `id`, if it has not started yet, a new priority: it
    /// then starts after the waiting tasks of that priority (p-queue's
    /// `setPriority`). `false` if `id` is not waiting to start (it started,
    /// finished, was cancelled or cleared). Ids are numbered per queue, as
    /// p-queue's are: an id from another queue names this queue's task of
    /// the same number, if any (see [`TaskId`]).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::ready;
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let queue = TaskQueue::new();
    /// queue.push(ready("a")).unwrap();
    /// let b = queue.push(ready("b")).unwrap();
    /// assert!(queue.set_priority(b, 1));
    /// assert_eq!(Box::pin(queue).collect::<Vec<_>>().await, ["b", "a"]);
    /// # });
    /// ```
    pub fn set_priority(&self, id: TaskId, priority: i32) -> bool {
        self.with(|ring, state| state.set_priority(ring, id, priority))
    }

    /// Takes the task `id` out of the queue if it has not started yet, and
    /// hands it back unrun (p-queue aborts a queued task through its
    /// `signal`); `None` if it is not waiting to start. A running task is
    /// not touched: to stop one, make the task itself cancellable (e.g.
    /// `futures::future::Abortable`), or let a [timeout](Self::timeout)
    /// drop it.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::ready;
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let queue = TaskQueue::new();
    /// queue.push(ready(1)).unwrap();
    /// let two = queue.push(ready(2)).unwrap();
    /// let task = queue.cancel(two).unwrap(); // handed back, never started
    /// assert_eq!(task.into_inner(), 2);
    /// assert!(queue.cancel(two).is_none());
    /// assert_eq!(Box::pin(queue).collect::<Vec<_>>().await, [1]);
    /// # });
    /// ```
    pub fn cancel(&self, id: TaskId) -> Option<F> {
        self.with(|ring, state| state.remove(ring, id).map(|entry| entry.task))
    }

    /// A handle that pushes into this queue from another thread or from
    /// inside a running task (`alloc`); while one lives the queue stays
    /// open. See [`Submitter`].
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deferral::TaskQueue;
    /// use futures::StreamExt;
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// let submit = queue.submitter();
    /// std::thread::spawn(move || submit.submit(async { 7 }).unwrap()).join().unwrap();
    /// assert_eq!(queue.next().await, Some(7));
    /// assert_eq!(queue.next().await, None); // the submitter is gone
    /// # });
    /// ```
    #[cfg(feature = "alloc")]
    pub fn submitter(&self) -> Submitter<F> {
        self.with(|_, state| {
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
        })
    }

    /// Takes its submissions from `inbox`, a `static` [`Inbox`] (no heap,
    /// interrupt-safe). The queue stays open while the inbox is; an inbox
    /// serves one queue, once: refused with [`AttachError`] if this one
    /// already has an inbox or `inbox` served a queue (or was closed).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// use deferral::queue::Inbox;
    /// static INBOX: Inbox<core::future::Ready<u8>, 4> = Inbox::new();
    /// let queue = TaskQueue::new();
    /// queue.attach(&INBOX).unwrap();
    /// let other = TaskQueue::new();
    /// assert!(other.attach(&INBOX).is_err());
    /// ```
    pub fn attach<const M: usize>(&self, inbox: &'static Inbox<F, M>) -> Result<(), AttachError>
    where
        F: Send + 'static,
    {
        self.with(|_, state| {
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
        })
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
    /// queue.pause();
    /// queue.push(core::future::ready(1)).unwrap();
    /// let mut cx = Context::from_waker(core::task::Waker::noop());
    /// assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Pending);
    /// queue.resume();
    /// assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(Some(1)));
    /// ```
    pub fn pause(&self) {
        self.with(|_, state| state.paused = true);
    }

    /// Lets the queue start tasks again after [`Self::pause`] (p-queue's
    /// `start`); they start at the next poll.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new();
    /// queue.pause();
    /// queue.resume();
    /// assert!(!queue.is_paused());
    /// ```
    pub fn resume(&self) {
        self.with(|_, state| state.paused = false);
    }

    /// Whether the queue is paused (p-queue's `isPaused`).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new();
    /// assert!(!queue.is_paused());
    /// queue.pause();
    /// assert!(queue.is_paused());
    /// ```
    pub fn is_paused(&self) -> bool {
        self.view(|_, state| state.paused)
    }

    /// Accepts no more work: pushes and submissions are refused with
    /// [`PushError::Closed`] (the task handed back); what the queue holds
    /// and what was submitted before runs, then the stream ends — the mpsc
    /// receiver's `close`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::{Ready, ready};
    /// use deferral::TaskQueue;
    /// use deferral::queue::{Inbox, PushError};
    /// use futures::StreamExt;
    /// static INBOX: Inbox<Ready<u8>, 4> = Inbox::new();
    /// let queue = TaskQueue::new();
    /// queue.attach(&INBOX).unwrap(); // keeps the queue open
    /// INBOX.submit(ready(1)).unwrap();
    /// queue.close();
    /// assert!(matches!(INBOX.submit(ready(2)), Err(PushError::Closed(_))));
    /// assert!(matches!(queue.push(ready(3)), Err(PushError::Closed(_))));
    /// assert_eq!(Box::pin(queue).collect::<Vec<_>>().await, [1]); // drained, then ended
    /// # });
    /// ```
    pub fn close(&self) {
        self.with(|_, state| {
            state.closed = true;
            #[cfg(feature = "alloc")]
            if let Some(inbox) = &state.inbox {
                inbox.0.close_for_submitters();
            }
            if let Some(attached) = &state.attached {
                attached.source().close();
            }
        });
    }

    /// Whether [`Self::close`] was called.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<u8>>::new();
    /// queue.close();
    /// assert!(queue.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.view(|_, state| state.closed)
    }

    /// Drops every task not started yet — pushed, waiting, or submitted
    /// and not taken yet — unrun, newest first, and returns how many
    /// (p-queue's `clear`). Running tasks and finished results stay. Each
    /// task leaves the queue before it is dropped (a destructor may use the
    /// queue): if a destructor panics, the rest stay queued and the next
    /// `clear` goes on.
    ///
    /// ```
    /// use core::task::{Context, Poll};
    /// use deferral::TaskQueue;
    /// use futures::Stream;
    /// let mut queue = core::pin::pin!(TaskQueue::new().concurrency(2));
    /// for _ in 0..6 {
    ///     queue.push(core::future::pending::<()>()).unwrap();
    /// }
    /// let mut cx = Context::from_waker(core::task::Waker::noop());
    /// assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Pending); // two start
    /// assert_eq!(queue.clear(), 4);
    /// assert_eq!((queue.unstarted(), queue.running()), (0, 2));
    /// ```
    pub fn clear(&self) -> usize {
        let mut dropped = 0;
        // Each batch is taken out under `with`, then dropped outside it.
        while let Some(unstarted) = self.with(|ring, state| state.next_to_clear(ring)) {
            match unstarted {
                Unstarted::One(task) => {
                    dropped += 1;
                    drop(task);
                }
                #[cfg(feature = "alloc")]
                Unstarted::Submitted(tasks) => {
                    // The list drops the rest if one destructor panics.
                    for task in tasks {
                        dropped += 1;
                        drop(task);
                    }
                }
            }
        }
        dropped
    }

    /// The queue's results until it reaches `level` — [`Level::Idle`]
    /// (p-queue's `onIdle`), [`Level::Empty`] (`onEmpty`) or
    /// [`Level::Below`] (`onSizeLessThan`) — as a stream; it also ends
    /// where the queue's stream does. The queue goes on afterwards. To wait
    /// without keeping the results (as p-queue's promises do), count them:
    /// `queue.as_mut().until(Level::Idle).count().await`.
    ///
    /// The level is looked at after each poll of the queue (the first one
    /// always happens, and takes the pending submissions): once it is
    /// reached, the stream ends without polling the queue again.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use core::future::{Ready, ready};
    /// use deferral::TaskQueue;
    /// use deferral::queue::{Inbox, Level};
    /// use futures::StreamExt;
    /// static INBOX: Inbox<Ready<u8>, 4> = Inbox::new();
    /// let mut queue = core::pin::pin!(TaskQueue::new());
    /// queue.attach(&INBOX).unwrap(); // keeps the queue open
    /// INBOX.submit(ready(1)).unwrap();
    /// INBOX.submit(ready(2)).unwrap();
    /// let batch: Vec<_> = queue.as_mut().until(Level::Idle).collect().await;
    /// assert_eq!(batch, [1, 2]);
    /// INBOX.submit(ready(3)).unwrap();
    /// assert_eq!(queue.next().await, Some(3));
    /// # });
    /// ```
    #[doc(
        alias = "on_idle",
        alias = "onIdle",
        alias = "on_empty",
        alias = "onEmpty"
    )]
    #[doc(alias = "onSizeLessThan", alias = "drain")]
    pub fn until(self: Pin<&mut Self>, level: Level) -> Until<'_, F, N, T, S> {
        Until::new(self, level)
    }

    /// Tasks held: running, finished with a result not yet yielded, and
    /// not started (submissions not yet taken by a poll are not counted).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::new();
    /// queue.push(async {}).unwrap();
    /// assert_eq!(queue.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.view(|ring, state| ring.held() + state.waiting_len())
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
    /// let queue = TaskQueue::new();
    /// queue.push(async {}).unwrap();
    /// assert_eq!(queue.unstarted(), 1);
    /// ```
    pub fn unstarted(&self) -> usize {
        self.view(|ring, state| ring.queued() + state.waiting_len())
    }

    /// Tasks started and not finished (p-queue's `pending`).
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::new();
    /// queue.push(async {}).unwrap();
    /// assert_eq!(queue.running(), 0); // not polled yet: nothing started
    /// ```
    pub fn running(&self) -> usize {
        self.view(|ring, _| ring.running())
    }

    /// The most tasks running at once: the concurrency, at most `N`.
    ///
    /// ```
    /// use deferral::TaskQueue;
    /// let queue = TaskQueue::<core::future::Ready<()>>::with_capacity::<2>().concurrency(8);
    /// assert_eq!(queue.max_running(), 2);
    /// ```
    pub fn max_running(&self) -> usize {
        self.view(|_, state| state.max_running())
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
        self.view(|_, state| state.is_stopped())
    }
}

impl<F: IntoFuture, const N: usize, T: Timing + RateLimited, S> TaskQueue<F, N, T, S> {
    /// Starts at most `starts` tasks per `per` (p-queue's `intervalCap` and
    /// `interval`): a window opens at the first start after the previous
    /// one closed, with a timer from the queue's [`Timer`] factory; once
    /// `starts` tasks started in it, the next start waits for the timer.
    /// Running tasks are not limited, and the concurrency limit still
    /// holds. Needs [`Self::timer`]. Called again on a queue that already
    /// started tasks, the new limit applies from the current window on:
    /// the starts already made in it count (p-queue's `intervalCap`
    /// setter); the window keeps its end.
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
    /// queue.push_all([1, 2].map(core::future::ready)).unwrap();
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
        let rate = &mut self.state_mut().rate;
        // Called again on a queue that already started tasks (p-queue's
        // `intervalCap` setter): the starts made in the current window
        // still count against the new limit.
        let started = rate.as_ref().map_or(0, |rate| rate.started);
        *rate = Some(RateLimit {
            cap: starts,
            per,
            started,
        });
        self
    }
}

/// The [`Timing`]s that have a [`Timer`]: [`Clock`] and [`Deadline`], on
/// which [`TaskQueue::rate_limit`] is available.
///
/// ```
/// use core::time::Duration;
/// use deferral::queue::{Clock, RateLimited};
/// fn can_rate_limit<T: RateLimited>() {}
/// can_rate_limit::<Clock<fn(Duration) -> core::future::Pending<()>>>();
/// ```
pub trait RateLimited: Timing {}
impl<Mk: Timer> RateLimited for Clock<Mk> {}
impl<Mk: Timer> RateLimited for Deadline<Mk> {}

impl<F, const N: usize, T, S> Stream for TaskQueue<F, N, T, S>
where
    F: IntoFuture,
    T: Timing,
    S: FnMut(&F::Output) -> bool,
{
    type Item = T::Item<F::Output>;

    /// Yields the next result, starting and polling tasks as described in
    /// "Where tasks run" (module docs); `None` when the queue is empty and
    /// closed to submissions (or stopped and drained): see "When the stream
    /// ends" in the [`TaskQueue`] docs. A queue that returned `None` yields
    /// again after a new push, like `FuturesUnordered`; polling it again
    /// without one returns `None`.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Parts {
            ring,
            window,
            state,
        } = self.project();
        state.poll_next(ring, window, cx)
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
        self.view(|_, state| state.exhausted)
    }
}

impl<F: IntoFuture, const N: usize, T: Timing, S> fmt::Debug for TaskQueue<F, N, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Read first: the formatter is foreign code (it may call back).
        let (concurrency, order, len, running, paused, closed, stopped) =
            self.view(|ring, state| {
                (
                    state.concurrency,
                    state.order,
                    ring.held() + state.waiting_len(),
                    ring.running(),
                    state.paused,
                    state.closed,
                    state.is_stopped(),
                )
            });
        f.debug_struct("TaskQueue")
            .field("capacity", &N)
            .field("concurrency", &concurrency)
            .field("order", &order)
            .field("len", &len)
            .field("running", &running)
            .field("paused", &paused)
            .field("closed", &closed)
            .field("stopped", &stopped)
            .finish_non_exhaustive()
    }
}
