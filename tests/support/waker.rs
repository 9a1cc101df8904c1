//! An instrumented waker: counts clones, wakes and drops, and can unpark the
//! thread that waits for it, so a tiny `block_on` can be built on it.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::thread::{self, Thread};

/// Counters shared by every clone of one instrumented waker.
#[derive(Debug)]
struct Counts {
    /// Wakers made by `WakeCounter::waker` (not clones).
    created: AtomicUsize,
    clones: AtomicUsize,
    /// `wake` (by value) plus `wake_by_ref`.
    wakes: AtomicUsize,
    /// Drops of clones, including the drop that consumes a `wake`.
    drops: AtomicUsize,
    /// The thread to unpark on a wake (for `block_on`), if any.
    thread: Option<Thread>,
}

/// Creates instrumented wakers and reads their counters.
///
/// Every waker made by one `WakeCounter` shares its counters: a clone of a
/// clone is counted on the same `WakeCounter`.
#[derive(Debug, Clone)]
pub struct WakeCounter(Arc<Counts>);

impl Default for WakeCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl WakeCounter {
    /// A counter whose wakers do nothing but count.
    pub fn new() -> Self {
        Self::with_thread(None)
    }

    /// A counter whose wakers also unpark the current thread.
    pub fn unparking() -> Self {
        Self::with_thread(Some(thread::current()))
    }

    fn with_thread(thread: Option<Thread>) -> Self {
        WakeCounter(Arc::new(Counts {
            created: AtomicUsize::new(0),
            clones: AtomicUsize::new(0),
            wakes: AtomicUsize::new(0),
            drops: AtomicUsize::new(0),
            thread,
        }))
    }

    /// A new waker counted here (creating it is not counted as a clone).
    pub fn waker(&self) -> Waker {
        self.0.created.fetch_add(1, SeqCst);
        let ptr = Arc::into_raw(self.0.clone()) as *const ();
        // SAFETY: `ptr` comes from `Arc::into_raw` of an `Arc<Counts>` and
        // the vtable functions below treat it as exactly that.
        unsafe { Waker::from_raw(RawWaker::new(ptr, &VTABLE)) }
    }

    /// How many times a waker was cloned.
    pub fn clones(&self) -> usize {
        self.0.clones.load(SeqCst)
    }

    /// How many times a waker was woken (by value or by reference).
    pub fn wakes(&self) -> usize {
        self.0.wakes.load(SeqCst)
    }

    /// How many wakers were dropped (a `wake` by value counts as a drop).
    pub fn drops(&self) -> usize {
        self.0.drops.load(SeqCst)
    }

    /// Wakers made here (by `waker()` or by cloning) that are still alive.
    pub fn live(&self) -> usize {
        self.0.created.load(SeqCst) + self.clones() - self.drops()
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

unsafe fn clone(ptr: *const ()) -> RawWaker {
    // SAFETY: `ptr` is an `Arc<Counts>` from `Arc::into_raw` (see `waker`),
    // still alive because the waker being cloned holds it.
    let counts = unsafe { &*(ptr as *const Counts) };
    counts.clones.fetch_add(1, SeqCst);
    // SAFETY: as above; the new waker owns one more strong count.
    unsafe { Arc::increment_strong_count(ptr as *const Counts) };
    RawWaker::new(ptr, &VTABLE)
}

unsafe fn wake(ptr: *const ()) {
    // SAFETY: the caller passes the data of a live waker it gives up.
    unsafe {
        wake_by_ref(ptr);
        drop_waker(ptr);
    }
}

unsafe fn wake_by_ref(ptr: *const ()) {
    // SAFETY: `ptr` is the `Arc<Counts>` data of a live waker.
    let counts = unsafe { &*(ptr as *const Counts) };
    counts.wakes.fetch_add(1, SeqCst);
    if let Some(thread) = &counts.thread {
        thread.unpark();
    }
}

unsafe fn drop_waker(ptr: *const ()) {
    // SAFETY: `ptr` is the `Arc<Counts>` data of the waker being dropped,
    // which owns one strong count.
    let counts = unsafe { Arc::from_raw(ptr as *const Counts) };
    counts.drops.fetch_add(1, SeqCst);
}

/// Polls `fut` once with a fresh waker of `counter`.
pub fn poll_once<F: Future + ?Sized>(
    fut: std::pin::Pin<&mut F>,
    counter: &WakeCounter,
) -> Poll<F::Output> {
    let waker = counter.waker();
    fut.poll(&mut Context::from_waker(&waker))
}

/// Runs `fut` to completion on the current thread, parking between polls.
///
/// The waker is instrumented, so a future that returns `Pending` without ever
/// arranging a wake-up hangs here exactly as it would on a real executor; the
/// tests that exercise such paths use `poll_once` instead.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let counter = WakeCounter::unparking();
    let waker = counter.waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}
