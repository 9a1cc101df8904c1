//! Hostile review: re-entrancy. Foreign code (a waker's clone/wake/drop, a
//! task's `into_future`/`Drop`, a `stop_when` predicate, a timer factory, a
//! cleanup, a context value's `Drop`) calls back into the object that is
//! running it, through the public API.
//!
//! Every scenario runs on a spawned thread bounded by `recv_timeout`, so a
//! deadlock or a hang fails the test instead of hanging the suite.
//!
//! What was tried (all found fine on this commit; no ignored BUG test):
//!
//! - `SharedPromise` (`src/promise/shared.rs`): a waiter's `wake`, run by
//!   the completing poll's delivery, polls a third clone (gets the output)
//!   and drops a fourth, still registered one (its `unregister` takes the
//!   waiter lock: it must not be held across the wake); a waiter's `wake`
//!   run by the *source's* waker (`Notifier::wake_all`) drops the driving
//!   clone's sibling and clones a new handle, which drives the source to
//!   completion from inside the wake; the source's own `poll`
//!   polls and drops other clones while the state is `POLLING`.
//! - `SharedCell` (`shared_cell.rs`): a waiter's `wake` (run by `settle`'s
//!   `wake_slots`) re-settles the cell (refused), opens and polls a new
//!   waiter and polls/drops another registered waiter; a waker whose
//!   `clone` (inside `AtomicWaker::register`) settles the cell.
//! - `SignalCell` (`signal.rs`): the woken waker re-settles (the latest
//!   wins) and `try_take`s; a waker whose `drop` (run by `SignalWait::poll`
//!   before its `try_take`) steals the value.
//! - `PromiseCell` (`slot.rs`, `resolver.rs`): the waker woken by
//!   `Resolver::settle` polls the promise (which frees the cell), opens a
//!   new pair on the same cell and settles it, and re-settles the outer,
//!   still-running resolver (refused: it is `Settled` before the wake).
//! - `TaskQueue` (`queue/`): a task's `into_future` submits through the
//!   queue's `Submitter` and drops the last one; a finished task's `Drop`
//!   submits; a `stop_when` predicate that submits (the submission is
//!   dropped unrun by the stop); a timer factory that submits; `clear`
//!   with destructors that `push`, `cancel` and `clear` the same queue
//!   (documented: they run outside `with`).
//! - Scopes: a cleanup that registers through the ambient `defer` while
//!   its scope's cleanup runs (documented: it goes to the enclosing scope);
//!   a cleared registration whose destructor registers ambiently during
//!   `Defer::clear` (the `hold` rule); `Guard::run_now` whose cleanup
//!   registers ambiently on its own scope; a `DeferStack`
//!   cleanup that fills another stack which it then disposes.
//! - Context: a `ContextVar` value whose `Drop` reads and sets context
//!   variables while `ContextVar::run` restores the context.
//!
//! Not reachable: a cleanup capturing its own `&Defer` or a token (the
//! `Fits` bounds: `'static` for `scope`, `'env` for `scope_local`), a task calling `&TaskQueue`
//! methods while the queue is polled (`Pin<&mut>`).
#![cfg(feature = "std")]

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::Duration;

use deferral::promise::{Refusal, SharedCell, SignalCell};
use deferral::queue::{BoxTask, Submitter};
use deferral::{ContextVar, DeferStack, PromiseCell, SharedPromise, TaskQueue};
use futures::StreamExt;
use futures::channel::oneshot;
use futures::executor::block_on;

// ------------------------------------------------------------- harness

/// Runs `f` on its own thread; fails if it does not finish within 5 s
/// (a deadlock or a hang), and re-raises its panic.
fn bounded<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    let limit = if cfg!(miri) { 600 } else { 5 };
    match rx.recv_timeout(Duration::from_secs(limit)) {
        Ok(()) => handle.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(_) => unreachable!("sent before returning"),
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("deadlock or hang: no result in {limit} s"),
    }
}

type Hook = Box<dyn FnOnce() + Send>;

/// A waker whose first `wake`, first `clone` and first `drop` each run a
/// hook (taken out before it runs, so a hook may clone or drop the waker).
#[derive(Default)]
struct Hooks {
    on_wake: Mutex<Option<Hook>>,
    on_clone: Mutex<Option<Hook>>,
    on_drop: Mutex<Option<Hook>>,
    wakes: AtomicUsize,
    live: AtomicUsize,
}

impl Hooks {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    fn on_wake(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_wake.lock().unwrap() = Some(Box::new(f));
    }
    fn on_clone(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_clone.lock().unwrap() = Some(Box::new(f));
    }
    fn on_drop(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_drop.lock().unwrap() = Some(Box::new(f));
    }
    fn run(slot: &Mutex<Option<Hook>>) {
        let hook = slot.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
    }
    fn wakes(&self) -> usize {
        self.wakes.load(SeqCst)
    }
    fn waker(self: &Arc<Self>) -> Waker {
        self.live.fetch_add(1, SeqCst);
        let raw = RawWaker::new(Arc::into_raw(self.clone()).cast(), &VTABLE);
        // SAFETY: the vtable treats the pointer as an `Arc<Hooks>`.
        unsafe { Waker::from_raw(raw) }
    }
}

/// A new strong handle on the waker's `Hooks` (the waker keeps its own).
unsafe fn hooks(p: *const ()) -> Arc<Hooks> {
    // SAFETY: `p` came from `Arc::into_raw` and the waker still owns that
    // count: borrowed through a `ManuallyDrop`, then cloned.
    let borrowed = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p.cast::<Hooks>()) });
    Arc::clone(&borrowed)
}

unsafe fn w_clone(p: *const ()) -> RawWaker {
    // SAFETY: see `hooks`.
    let h = unsafe { hooks(p) };
    Hooks::run(&h.on_clone);
    h.live.fetch_add(1, SeqCst);
    RawWaker::new(Arc::into_raw(h).cast(), &VTABLE)
}
unsafe fn w_wake(p: *const ()) {
    // SAFETY: see `hooks`; the by-value wake then drops it.
    unsafe {
        w_wake_by_ref(p);
        w_drop(p);
    }
}
unsafe fn w_wake_by_ref(p: *const ()) {
    // SAFETY: see `hooks`.
    let h = unsafe { hooks(p) };
    h.wakes.fetch_add(1, SeqCst);
    Hooks::run(&h.on_wake);
}
unsafe fn w_drop(p: *const ()) {
    // SAFETY: the pointer owns one strong count.
    let h = unsafe { Arc::from_raw(p.cast::<Hooks>()) };
    h.live.fetch_sub(1, SeqCst);
    Hooks::run(&h.on_drop);
}
static VTABLE: RawWakerVTable = RawWakerVTable::new(w_clone, w_wake, w_wake_by_ref, w_drop);

fn poll_with<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

// ------------------------------------------------------- SharedPromise

type Source = oneshot::Receiver<u32>;
type Shared = SharedPromise<Source>;
type Stash = Arc<Mutex<Option<Shared>>>;

fn stash(p: Shared) -> Stash {
    Arc::new(Mutex::new(Some(p)))
}

#[test]
fn shared_promise_wake_polls_and_drops_other_clones_during_delivery() {
    bounded(|| {
        let (tx, rx) = oneshot::channel::<u32>();
        let mut a = SharedPromise::new(rx);
        let third = stash(a.clone());
        let fourth = stash(a.clone());
        let noop = futures::task::noop_waker();
        // The fourth is registered (a slot in the list), not woken yet.
        assert!(poll_with(fourth.lock().unwrap().as_mut().unwrap(), &noop).is_pending());

        let mut b = a.clone();
        let hooks = Hooks::new();
        let (t, f) = (third.clone(), fourth.clone());
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        hooks.on_wake(move || {
            // Re-enter: poll another clone, drop a registered one.
            let mut third = t.lock().unwrap().take().unwrap();
            *g.lock().unwrap() = Some(poll_with(&mut third, &futures::task::noop_waker()));
            drop(f.lock().unwrap().take());
        });
        assert!(poll_with(&mut b, &hooks.waker()).is_pending());
        // `a` drives: it polls the source (pending), registers.
        assert!(poll_with(&mut a, &noop).is_pending());
        tx.send(7).unwrap();
        // The completing poll closes the list and wakes `b`, whose wake
        // re-enters.
        assert_eq!(poll_with(&mut a, &noop), Poll::Ready(Ok(7)));
        assert_eq!(hooks.wakes(), 1);
        assert_eq!(*got.lock().unwrap(), Some(Poll::Ready(Ok(7))));
        assert_eq!(poll_with(&mut b, &noop), Poll::Ready(Ok(7)));
        assert!(fourth.lock().unwrap().is_none());
    });
}

#[test]
fn shared_promise_source_waker_wake_reenters_the_waiter_list() {
    bounded(|| {
        let (tx, rx) = oneshot::channel::<u32>();
        let mut a = SharedPromise::new(rx);
        let sibling = stash(a.clone());
        let made = stash(a.clone());
        let noop = futures::task::noop_waker();
        assert!(poll_with(sibling.lock().unwrap().as_mut().unwrap(), &noop).is_pending());

        let hooks = Hooks::new();
        let (s, m) = (sibling.clone(), made.clone());
        hooks.on_wake(move || {
            // Run by `Notifier::wake_all` (the source's waker): drop a
            // registered clone, make a new one and poll it: nobody is
            // polling, so it drives the (now ready) source itself.
            drop(s.lock().unwrap().take());
            let mut guard = m.lock().unwrap();
            let mut fresh = guard.as_ref().unwrap().clone();
            *guard = None;
            assert_eq!(
                poll_with(&mut fresh, &futures::task::noop_waker()),
                Poll::Ready(Ok(3))
            );
        });
        assert!(poll_with(&mut a, &hooks.waker()).is_pending());
        // The oneshot wakes the source's waker (the notifier) synchronously.
        tx.send(3).unwrap();
        assert_eq!(hooks.wakes(), 1);
        assert!(made.lock().unwrap().is_none(), "the hook ran to its end");
        assert_eq!(poll_with(&mut a, &noop), Poll::Ready(Ok(3)));
    });
}

/// A source whose `poll` polls and drops other clones of its own
/// `SharedPromise` (the state is `POLLING` meanwhile).
struct Reentrant {
    others: Arc<Mutex<Vec<SharedPromise<Reentrant>>>>,
    polls: u32,
}

impl Future for Reentrant {
    type Output = u32;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.polls += 1;
        let mut others = std::mem::take(&mut *self.others.lock().unwrap());
        for other in &mut others {
            assert!(poll_with(other, &futures::task::noop_waker()).is_pending());
        }
        // Drop one of them, keep the rest for the next poll.
        others.pop();
        *self.others.lock().unwrap() = others;
        if self.polls < 3 {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(self.polls)
        }
    }
}

#[test]
fn shared_promise_source_poll_reenters_its_own_clones() {
    bounded(|| {
        let others = Arc::new(Mutex::new(Vec::new()));
        let mut a = SharedPromise::new(Reentrant {
            others: others.clone(),
            polls: 0,
        });
        let keep = a.clone();
        others
            .lock()
            .unwrap()
            .extend([a.clone(), a.clone(), a.clone(), a.clone()]);
        let out = block_on(&mut a);
        assert_eq!(out, 3);
        assert_eq!(keep.peek(), Some(&3));
        // The survivors were woken by the completion and get the output.
        for mut other in std::mem::take(&mut *others.lock().unwrap()) {
            assert_eq!(block_on(&mut other), 3);
        }
    });
}

// ----------------------------------------------------------- SharedCell

#[test]
fn shared_cell_wake_resettles_and_opens_new_waiters() {
    static CELL: SharedCell<u32, (), 4> = SharedCell::new();
    bounded(|| {
        let noop = futures::task::noop_waker();
        let other = Arc::new(Mutex::new(Some(CELL.wait().unwrap())));
        assert!(poll_with(other.lock().unwrap().as_mut().unwrap(), &noop).is_pending());
        let mut first = CELL.wait().unwrap();
        let hooks = Hooks::new();
        let results = Arc::new(Mutex::new(Vec::new()));
        let (o, r) = (other.clone(), results.clone());
        hooks.on_wake(move || {
            let refused = CELL.resolve(9).unwrap_err();
            assert_eq!(refused.reason(), Refusal::AlreadySettled);
            let mut fresh = CELL.wait().unwrap();
            r.lock()
                .unwrap()
                .push(poll_with(&mut fresh, &futures::task::noop_waker()));
            // Another registered waiter, polled then dropped from here.
            let mut other = o.lock().unwrap().take().unwrap();
            r.lock()
                .unwrap()
                .push(poll_with(&mut other, &futures::task::noop_waker()));
        });
        assert!(poll_with(&mut first, &hooks.waker()).is_pending());
        assert_eq!(CELL.waiters(), 2);
        CELL.resolve(1).unwrap();
        assert_eq!(hooks.wakes(), 1);
        assert_eq!(
            *results.lock().unwrap(),
            [Poll::Ready(Ok(1)), Poll::Ready(Ok(1))]
        );
        assert_eq!(poll_with(&mut first, &noop), Poll::Ready(Ok(1)));
        assert_eq!(CELL.waiters(), 0);
    });
}

#[test]
fn shared_cell_waker_clone_settles_during_register() {
    static CELL: SharedCell<u32, (), 2> = SharedCell::new();
    bounded(|| {
        let hooks = Hooks::new();
        hooks.on_clone(|| CELL.resolve(5).unwrap());
        let waker = hooks.waker();
        let mut wait = CELL.wait().unwrap();
        // The clone (inside `register`) settles; the re-check sees it.
        assert_eq!(poll_with(&mut wait, &waker), Poll::Ready(Ok(5)));
        assert_eq!(CELL.waiters(), 0);
        drop(waker);
        assert_eq!(hooks.live.load(SeqCst), 0, "no waker kept");
    });
}

// ----------------------------------------------------------- SignalCell

#[test]
fn signal_cell_woken_waker_resettles_latest_wins() {
    static CELL: SignalCell<u32, ()> = SignalCell::new();
    bounded(|| {
        let hooks = Hooks::new();
        hooks.on_wake(|| {
            CELL.resolve(2).unwrap();
        });
        let mut wait = CELL.wait().unwrap();
        assert!(poll_with(&mut wait, &hooks.waker()).is_pending());
        CELL.resolve(1).unwrap();
        assert_eq!(hooks.wakes(), 1);
        assert_eq!(
            poll_with(&mut wait, &futures::task::noop_waker()),
            Poll::Ready(Ok(2))
        );
        assert!(!CELL.is_signaled());
        // Woken again and taken from inside the wake.
        let hooks = Hooks::new();
        let taken = Arc::new(Mutex::new(None));
        let t = taken.clone();
        hooks.on_wake(move || *t.lock().unwrap() = CELL.try_take());
        let mut wait = CELL.wait().unwrap();
        assert!(poll_with(&mut wait, &hooks.waker()).is_pending());
        CELL.resolve(4).unwrap();
        assert_eq!(*taken.lock().unwrap(), Some(Ok(4)));
        assert!(poll_with(&mut wait, &hooks.waker()).is_pending());
        CELL.resolve(6).unwrap();
        assert_eq!(
            poll_with(&mut wait, &futures::task::noop_waker()),
            Poll::Ready(Ok(6))
        );
    });
}

#[test]
fn signal_wait_waker_drop_steals_the_value_then_next_settlement_arrives() {
    static CELL: SignalCell<u32, ()> = SignalCell::new();
    bounded(|| {
        let hooks = Hooks::new();
        let stolen = Arc::new(Mutex::new(None));
        let s = stolen.clone();
        let mut wait = CELL.wait().unwrap();
        {
            let waker = hooks.waker();
            assert!(poll_with(&mut wait, &waker).is_pending());
        }
        // Only the registered clone is alive: the poll's `drop(take())`
        // drops it, and its drop steals the value.
        hooks.on_drop(move || *s.lock().unwrap() = CELL.try_take());
        CELL.resolve(1).unwrap(); // wakes (and drops) the clone: stolen there
        assert_eq!(*stolen.lock().unwrap(), Some(Ok(1)));
        let counter = Hooks::new();
        assert!(poll_with(&mut wait, &counter.waker()).is_pending());
        CELL.resolve(2).unwrap();
        assert_eq!(counter.wakes(), 1, "the next settlement wakes the waiter");
        assert_eq!(
            poll_with(&mut wait, &futures::task::noop_waker()),
            Poll::Ready(Ok(2))
        );
    });
}

// ---------------------------------------------------------- PromiseCell

#[test]
fn promise_cell_woken_waker_reuses_the_cell_and_resettles() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    bounded(|| {
        let (promise, resolver) = CELL.promise().unwrap();
        let promise = Arc::new(Mutex::new(Some(promise)));
        let hooks = Hooks::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (p, l) = (promise.clone(), log.clone());
        hooks.on_wake(move || {
            let mut promise = p.lock().unwrap().take().unwrap();
            let noop = futures::task::noop_waker();
            let first = poll_with(&mut promise, &noop);
            l.lock().unwrap().push(format!("{first:?}"));
            drop(promise);
            // The cell is free again: a new pair, settled from here, while
            // the outer `settle` is still inside its wake.
            let (mut again, r2) = CELL.promise().expect("the cell was freed");
            r2.resolve(2).unwrap();
            drop(r2);
            let second = poll_with(&mut again, &noop);
            l.lock().unwrap().push(format!("{second:?}"));
        });
        let mut guard = promise.lock().unwrap();
        assert!(poll_with(guard.as_mut().unwrap(), &hooks.waker()).is_pending());
        drop(guard);
        resolver.resolve(1).unwrap();
        assert!(resolver.is_settled());
        // The finished resolver never touches the reused cell.
        let refused = resolver.resolve(3).unwrap_err();
        assert_ne!(refused.reason(), Refusal::Closed);
        drop(resolver);
        assert_eq!(*log.lock().unwrap(), ["Ready(Ok(1))", "Ready(Ok(2))"]);
        assert!(CELL.is_free());
    });
}

// ------------------------------------------------------------ TaskQueue

type Task = BoxTask<'static, u32>;

/// A task that, when the queue converts it, submits children through the
/// queue's submitter and then drops it (the last one).
struct Spawner {
    submit: Option<Submitter<Task>>,
    value: u32,
}

impl IntoFuture for Spawner {
    type Output = u32;
    type IntoFuture = std::future::Ready<u32>;
    fn into_future(mut self) -> Self::IntoFuture {
        let submit = self.submit.take().unwrap();
        submit.submit_boxed(async { 10 }).unwrap();
        submit
            .submit_boxed(DropSubmits {
                submit: Some(submit.clone()),
            })
            .unwrap();
        drop(submit);
        std::future::ready(self.value)
    }
}

/// A future that finishes at once and submits a task from its `Drop`
/// (dropped in place in the queue's ring, mid-poll).
struct DropSubmits {
    submit: Option<Submitter<Task>>,
}

impl Future for DropSubmits {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
        Poll::Ready(20)
    }
}

impl Drop for DropSubmits {
    fn drop(&mut self) {
        if let Some(submit) = self.submit.take() {
            let _ = submit.submit_boxed(async { 30 });
        }
    }
}

#[test]
fn queue_into_future_and_drop_submit_and_drop_the_last_submitter() {
    bounded(|| {
        let queue = TaskQueue::<Task>::new().concurrency(2);
        let submit = queue.submitter();
        submit
            .submit_boxed(Spawner {
                submit: Some(submit.clone()),
                value: 1,
            })
            .unwrap();
        drop(submit);
        let mut out = block_on(queue.collect::<Vec<_>>());
        out.sort_unstable();
        assert_eq!(
            out,
            [1, 10, 20, 30],
            "every submission ran; the stream ended"
        );
    });
}

#[test]
fn queue_stop_when_predicate_submits() {
    bounded(|| {
        let base = TaskQueue::<Task>::new();
        let submit = base.submitter();
        let inner = submit.clone();
        let refused = Arc::new(Mutex::new(Vec::new()));
        let r = refused.clone();
        let queue = base.stop_when(move |n: &u32| {
            // Submits while the queue settles the output.
            r.lock()
                .unwrap()
                .push(inner.submit_boxed(async { 99 }).is_ok());
            *n == 2
        });
        for n in 1..=4 {
            submit.submit_boxed(async move { n }).unwrap();
        }
        drop(submit);
        let out = block_on(queue.collect::<Vec<_>>());
        assert_eq!(out, [1, 2], "stopped at the rejection; the 99s never ran");
        assert!(!refused.lock().unwrap().is_empty());
    });
}

#[test]
fn queue_timer_factory_submits() {
    bounded(|| {
        let base = TaskQueue::<Task>::new();
        let submit = base.submitter();
        let factory_submit = submit.clone();
        let made = Arc::new(AtomicUsize::new(0));
        let m = made.clone();
        let queue = base
            .timer(move |_: Duration| {
                if m.fetch_add(1, SeqCst) < 2 {
                    factory_submit.submit_boxed(async { 100 }).unwrap();
                }
                // A window that is over at once.
                std::future::ready(())
            })
            .rate_limit(1, Duration::from_secs(1));
        submit.submit_boxed(async { 1 }).unwrap();
        drop(submit);
        // The factory keeps a submitter: the stream does not end, take 3.
        let out = block_on(queue.take(3).collect::<Vec<_>>());
        assert_eq!(out, [1, 100, 100]);
        assert!(made.load(SeqCst) >= 2);
    });
}

/// A queue task whose destructor calls back into its queue.
struct Reenters {
    queue: std::rc::Weak<TaskQueue<Reenters>>,
    victim: Option<deferral::queue::TaskId>,
    nested_clear: bool,
    drops: Arc<AtomicUsize>,
}

impl IntoFuture for Reenters {
    type Output = ();
    type IntoFuture = std::future::Ready<()>;
    fn into_future(self) -> Self::IntoFuture {
        std::future::ready(())
    }
}

impl Drop for Reenters {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
        let Some(queue) = self.queue.upgrade() else {
            return;
        };
        if let Some(victim) = self.victim.take() {
            // Taken out; its own drop runs here, re-entrant again.
            drop(queue.cancel(victim));
        }
        queue
            .push(Reenters {
                queue: std::rc::Weak::new(),
                victim: None,
                nested_clear: false,
                drops: self.drops.clone(),
            })
            .unwrap();
        assert!(!queue.is_empty());
        if self.nested_clear {
            self.nested_clear = false;
            queue.clear();
        }
    }
}

#[test]
fn queue_clear_destructors_push_cancel_and_clear_the_same_queue() {
    bounded(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let queue = std::rc::Rc::new(TaskQueue::<Reenters>::new());
        let plain = |queue: &std::rc::Rc<TaskQueue<Reenters>>| Reenters {
            queue: std::rc::Rc::downgrade(queue),
            victim: None,
            nested_clear: false,
            drops: drops.clone(),
        };
        let victim = queue.push(plain(&queue)).unwrap();
        queue
            .push(Reenters {
                queue: std::rc::Rc::downgrade(&queue),
                victim: Some(victim),
                nested_clear: true,
                drops: drops.clone(),
            })
            .unwrap();
        // The outer `clear` drops one (the newest); its destructor's nested
        // `clear` drops the two it made pending.
        let cleared = queue.clear();
        assert_eq!(cleared, 1);
        assert_eq!(queue.len(), 0, "clear empties what destructors pushed");
        // 2 originals, each pushing one plain task (whose weak is empty).
        assert_eq!(drops.load(SeqCst), 4);
    });
}

// --------------------------------------------------------------- scopes

#[test]
fn cleanup_registering_ambiently_goes_to_the_enclosing_scope() {
    bounded(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        block_on(deferral::scope(async move |outer| {
            let l2 = l.clone();
            outer.defer(move || l2.lock().unwrap().push("outer cleanup"));
            let l3 = l.clone();
            deferral::scope(async move |inner| {
                let l4 = l3.clone();
                inner.defer(move || {
                    l4.lock().unwrap().push("inner cleanup");
                    let l5 = l4.clone();
                    deferral::scope::try_defer(move || {
                        l5.lock().unwrap().push("registered during cleanup")
                    })
                    .expect("the enclosing scope's body is still running");
                });
            })
            .await;
            l.lock().unwrap().push("outer body ends");
        }));
        assert_eq!(
            *log.lock().unwrap(),
            [
                "inner cleanup",
                "outer body ends",
                "registered during cleanup",
                "outer cleanup"
            ]
        );
    });
}

/// Registers a cleanup ambiently from its destructor.
struct RegistersOnDrop(Arc<Mutex<Vec<&'static str>>>);

impl Drop for RegistersOnDrop {
    fn drop(&mut self) {
        let log = self.0.clone();
        deferral::defer(move || log.lock().unwrap().push("registered by a destructor"));
    }
}

#[test]
fn clear_destructor_registers_on_the_scope_being_cleared() {
    bounded(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        block_on(deferral::scope(async move |d| {
            let big = [7u8; 48];
            let l1 = l.clone();
            d.defer(move || l1.lock().unwrap().push("kept"));
            let dropper = RegistersOnDrop(l.clone());
            d.defer(move || {
                let _keep = &dropper;
                unreachable!("cleared")
            });
            d.defer(move || assert_eq!(big[0], 7));
            // Cleared registrations' bytes are held while destructors run:
            // the ambient registration lands elsewhere, and survives.
            assert_eq!(d.clear(), 3);
            assert_eq!(d.len(), 1, "the destructor's registration");
            let l2 = l.clone();
            d.defer(move || l2.lock().unwrap().push("after clear"));
        }));
        assert_eq!(
            *log.lock().unwrap(),
            ["after clear", "registered by a destructor"]
        );
    });
}

#[test]
fn guard_run_now_cleanup_registers_ambiently_inside_the_body() {
    bounded(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        block_on(deferral::scope_local(async move |d| {
            let l1 = l.clone();
            let guard = d.guard(5u32, move |v| {
                // Foreign code run by `run_now`, inside the body: it
                // registers on the very scope whose guard it is.
                let l2 = l1.clone();
                deferral::defer(move || l2.lock().unwrap().push("ambient"));
                l1.lock()
                    .unwrap()
                    .push(if v == 5 { "cleanup 5" } else { "?" });
            });
            deferral::Guard::run_now(guard);
            assert_eq!(d.len(), 1, "the guard is gone, the ambient one is in");
        }));
        assert_eq!(*log.lock().unwrap(), ["cleanup 5", "ambient"]);
    });
}

#[test]
fn defer_stack_cleanup_fills_and_disposes_another_stack() {
    bounded(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut a: DeferStack = DeferStack::new();
        let l = log.clone();
        a.defer(move || {
            let mut b: DeferStack = DeferStack::new();
            let l1 = l.clone();
            b.defer(move || l1.lock().unwrap().push("b"));
            use futures::FutureExt;
            assert!(b.dispose().now_or_never().is_some(), "sync cleanup only");
            l.lock().unwrap().push("a");
        });
        block_on(a.dispose());
        assert_eq!(*log.lock().unwrap(), ["b", "a"]);
    });
}

// -------------------------------------------------------------- context

static VAR: ContextVar<Loud> = ContextVar::new();
static OTHER: ContextVar<u32> = ContextVar::new();

/// A context value whose `Drop` reads and sets context variables.
struct Loud(Arc<Mutex<Vec<String>>>);

impl Drop for Loud {
    fn drop(&mut self) {
        let seen = VAR.with(|v| v.is_some());
        let nested = OTHER.run(8, || OTHER.get());
        let outer = OTHER.get();
        self.0
            .lock()
            .unwrap()
            .push(format!("{seen} {nested:?} {outer:?}"));
    }
}

#[test]
fn context_value_drop_reads_and_sets_context() {
    bounded(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = OTHER.run(1, || {
            VAR.run(Loud(log.clone()), || {
                assert!(VAR.with(|v| v.is_some()));
                OTHER.get()
            })
        });
        assert_eq!(out, Some(1));
        // Dropped after `run` restored the context: no VAR, OTHER is 1.
        assert_eq!(*log.lock().unwrap(), ["false Some(8) Some(1)"]);
    });
}
