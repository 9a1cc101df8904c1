//! Hostile review of the queue's newest operations — `set_priority`,
//! `cancel`, `set_timeout` — and the ring they shift (`Ring::remove_queued`,
//! `Ring::push`), against panics at every point, re-entrant destructors and
//! iterators, stale and foreign ids, priority extremes, a pinned slow task
//! at the front of a full window, over-aligned and self-borrowing futures.
//!
//! Every task here is a [`Probe`]: its task, future and output count their
//! drops in a shared [`Life`], and its future records its own address at
//! every poll (it is `!Unpin` and `#[repr(align(64))]`, and so is the task,
//! so the queued entries that `remove_queued` and a prioritised push shift
//! along the ring are over-aligned moves). Run natively (with and without
//! `alloc`) and under Miri, Stacked and Tree Borrows.
//!
//! Found, and fixed in the commit after the one that added this file
//! (until then each test was ignored as a BUG, with a minimal reproducer):
//!
//! - `a_submission_keeps_the_timeout_in_force_when_it_was_submitted`: a
//!   `Submitter` submission gets the default timeout in force when a poll
//!   takes it from the inbox, not when it was submitted (`set_timeout`
//!   between the two changes it);
//! - `changing_the_order_of_a_live_queue_loses_no_result`: `order(..)` on a
//!   live `Unpin` queue (builders by value are allowed there, `rate_limit`
//!   documents it) from submission to completion order never yields the
//!   results that waited for their turn: the stream stays pending for ever;
//! - `a_predicate_added_to_a_live_queue_examines_*`: `stop_when(..)` on a
//!   live queue never examines the results that finished before it
//!   (batched in completion order, waiting for their turn in submission
//!   order), so a rejection among them does not stop the queue.
//!
//! Nothing unsound was found: no Miri report, running futures never moved,
//! every task, future and output dropped exactly once, ids never reused.

mod support;

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomPinned;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use deferral::TaskQueue;
use deferral::queue::{Level, Options, PushError, TaskId, TimedOut, Yield};
use futures::Stream;

const INJECTED: &str = "injected panic";

/// Keeps the planned panics out of the test output.
fn quiet_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.starts_with(INJECTED) && !msg.starts_with("hostile waker") {
                default(info);
            }
        }));
    });
}

// ------------------------------------------------------------------ probes

/// What a probe does wrong, and how long it runs.
#[derive(Clone, Copy, Default)]
struct Plan {
    /// Pending polls (each waking its own waker first) before finishing.
    pending: usize,
    /// Never finishes by itself: pending until `Life::release` (woken by it).
    held: bool,
    panic_into_future: bool,
    /// The unstarted task panics when dropped.
    panic_task_drop: bool,
    /// The k-th poll (1-based) panics; 0: none.
    panic_poll_at: usize,
    panic_future_drop: bool,
    panic_output_drop: bool,
    /// The output counts as a rejection (`stop_when`).
    rejects: bool,
}

/// Everything that happened to one probe.
#[derive(Default)]
struct Life {
    id: u32,
    /// Drops of the unstarted task (not the one `into_future` consumed).
    task_drops: AtomicUsize,
    starts: AtomicUsize,
    polls: AtomicUsize,
    future_drops: AtomicUsize,
    outputs: AtomicUsize,
    output_drops: AtomicUsize,
    /// The future's address at each poll.
    addrs: Mutex<Vec<usize>>,
    /// `held` probes finish once this is set; the waker to wake then.
    released: std::sync::atomic::AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Life {
    /// Exactly-once: the task was dropped unstarted, or started once and
    /// its future dropped once; every output made was dropped once.
    fn assert_once(&self) {
        let id = self.id;
        let starts = self.starts.load(SeqCst);
        assert!(starts <= 1, "probe {id} started {starts} times");
        let tasks = self.task_drops.load(SeqCst);
        let futures = self.future_drops.load(SeqCst);
        assert_eq!(
            tasks + futures,
            1,
            "probe {id}: {tasks} task drops + {futures} future drops"
        );
        assert_eq!(
            self.outputs.load(SeqCst),
            self.output_drops.load(SeqCst),
            "probe {id}: output drops"
        );
    }

    fn started(&self) -> bool {
        self.starts.load(SeqCst) == 1
    }

    /// The future never moved between polls, and was 64-aligned.
    fn assert_never_moved(&self) {
        let addrs = self.addrs.lock().unwrap();
        if let Some(first) = addrs.first() {
            assert_eq!(first % 64, 0, "probe {}: misaligned future", self.id);
            assert!(
                addrs.iter().all(|a| a == first),
                "probe {}: running future moved: {addrs:x?}",
                self.id
            );
        }
    }

    /// Lets a `held` probe finish (wakes its last waker).
    fn release(&self) {
        self.released.store(true, SeqCst);
        // Woken outside the lock (a hostile wake may panic).
        let waker = self.waker.lock().unwrap().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

type Hook = Box<dyn FnOnce()>;

/// A task. Over-aligned, so the ring's shifts move 64-aligned values.
#[repr(align(64))]
struct Probe {
    plan: Plan,
    life: Arc<Life>,
    /// Runs when the unstarted task is dropped (before a planned panic).
    on_drop: Option<Hook>,
    /// `false` once `into_future` consumed it.
    unstarted: bool,
    /// Where `into_future` logs the probe's id (the order of the starts).
    starts: Option<Rc<RefCell<Vec<u32>>>>,
}

fn probe(id: u32, plan: Plan) -> (Probe, Arc<Life>) {
    let life = Arc::new(Life {
        id,
        ..Life::default()
    });
    (
        Probe {
            plan,
            life: life.clone(),
            on_drop: None,
            starts: None,
            unstarted: true,
        },
        life,
    )
}

impl Drop for Probe {
    fn drop(&mut self) {
        if !self.unstarted {
            return;
        }
        self.life.task_drops.fetch_add(1, SeqCst);
        if let Some(hook) = self.on_drop.take() {
            hook();
        }
        if self.plan.panic_task_drop {
            panic!("{INJECTED}: task drop {}", self.life.id);
        }
    }
}

impl IntoFuture for Probe {
    type Output = Out;
    type IntoFuture = ProbeFuture;
    fn into_future(mut self) -> ProbeFuture {
        self.life.starts.fetch_add(1, SeqCst);
        if let Some(log) = &self.starts {
            log.borrow_mut().push(self.life.id);
        }
        if self.plan.panic_into_future {
            // The task is dropped by the unwinding (counted as unstarted).
            panic!("{INJECTED}: into_future {}", self.life.id);
        }
        self.unstarted = false;
        ProbeFuture {
            plan: self.plan,
            life: self.life.clone(),
            polls: AtomicUsize::new(0),
            _pinned: PhantomPinned,
        }
    }
}

/// A future that must not move once polled (`!Unpin`, over-aligned).
#[repr(align(64))]
struct ProbeFuture {
    plan: Plan,
    life: Arc<Life>,
    polls: AtomicUsize,
    _pinned: PhantomPinned,
}

impl Future for ProbeFuture {
    type Output = Out;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Out> {
        // Shared access only: no `unsafe` needed to read a pinned future.
        let this = self.as_ref().get_ref();
        this.life
            .addrs
            .lock()
            .unwrap()
            .push(std::ptr::from_ref(this).addr());
        this.life.polls.fetch_add(1, SeqCst);
        let n = this.polls.fetch_add(1, SeqCst) + 1;
        if n == this.plan.panic_poll_at {
            panic!("{INJECTED}: poll {}", this.life.id);
        }
        if this.plan.held && !this.life.released.load(SeqCst) {
            let new = cx.waker().clone();
            // The old waker is dropped after the lock (its drop may panic).
            let old = this.life.waker.lock().unwrap().replace(new);
            drop(old);
            return Poll::Pending;
        }
        if n <= this.plan.pending {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.life.outputs.fetch_add(1, SeqCst);
        Poll::Ready(Out {
            id: this.life.id,
            rejects: this.plan.rejects,
            panic_drop: this.plan.panic_output_drop,
            life: this.life.clone(),
        })
    }
}

impl Drop for ProbeFuture {
    fn drop(&mut self) {
        self.life.future_drops.fetch_add(1, SeqCst);
        if self.plan.panic_future_drop {
            panic!("{INJECTED}: future drop {}", self.life.id);
        }
    }
}

struct Out {
    id: u32,
    rejects: bool,
    panic_drop: bool,
    life: Arc<Life>,
}

impl Drop for Out {
    fn drop(&mut self) {
        self.life.output_drops.fetch_add(1, SeqCst);
        if self.panic_drop {
            panic!("{INJECTED}: output drop {}", self.id);
        }
    }
}

// ----------------------------------------------------------------- driving

/// One poll with a no-op waker; `Err(())` if it panicked.
fn poll<S: Stream + ?Sized>(queue: Pin<&mut S>) -> Result<Poll<Option<S::Item>>, ()> {
    catch_unwind(AssertUnwindSafe(|| {
        queue.poll_next(&mut Context::from_waker(Waker::noop()))
    }))
    .map_err(|_| ())
}

/// What an item of a queue of probes names.
trait Item {
    /// The probe's id; `None` for a timeout.
    fn id(&self) -> Option<u32>;
}

impl Item for Out {
    fn id(&self) -> Option<u32> {
        Some(self.id)
    }
}

impl Item for Result<Out, TimedOut> {
    fn id(&self) -> Option<u32> {
        self.as_ref().ok().map(|out| out.id)
    }
}

/// Polls until the stream ends (at most `budget` polls), catching panics
/// (the outputs are dropped, their panics caught); the ids yielded
/// (`u32::MAX` for a timeout) and how many polls panicked.
fn run_to_end<S>(mut queue: Pin<&mut S>, budget: usize) -> (Vec<u32>, usize)
where
    S: Stream + ?Sized,
    S::Item: Item,
{
    let mut yielded = Vec::new();
    let mut panics = 0;
    for _ in 0..budget {
        match poll(queue.as_mut()) {
            Err(()) => panics += 1,
            Ok(Poll::Ready(Some(item))) => {
                yielded.push(item.id().unwrap_or(u32::MAX));
                let _ = catch_unwind(AssertUnwindSafe(|| drop(item)));
            }
            Ok(Poll::Ready(None)) => return (yielded, panics),
            Ok(Poll::Pending) => {}
        }
    }
    panic!("the queue never ended: yielded {yielded:?}");
}

fn push<const N: usize, T: deferral::queue::Timing, S>(
    queue: &TaskQueue<Probe, N, T, S>,
    task: Probe,
) -> TaskId {
    queue.push(task).unwrap_or_else(|_| panic!("refused"))
}

fn push_prio<const N: usize, T: deferral::queue::Timing, S>(
    queue: &TaskQueue<Probe, N, T, S>,
    task: Probe,
    priority: i32,
) -> TaskId {
    queue
        .push_with(task, Options::new().priority(priority))
        .unwrap_or_else(|_| panic!("refused"))
}

// ------------------------------------------------ priorities and FIFO order

/// `set_priority` puts a task after every queued task of its new priority
/// (even its current one: re-prioritising to the same value moves it to the
/// back of its equals), FIFO among equals everywhere else, at the extremes
/// `i32::MIN` and `i32::MAX` too. All inside the window (no `alloc` needed).
#[test]
fn set_priority_keeps_fifo_among_equals_at_the_extremes() {
    let queue = TaskQueue::<Probe>::new();
    let mut lives = Vec::new();
    let mut id = |n: u32, priority: i32| {
        let (task, life) = probe(n, Plan::default());
        lives.push(life);
        push_prio(&queue, task, priority)
    };
    let a: Vec<TaskId> = (0..6).map(|n| id(n, 0)).collect();
    let b = id(10, i32::MAX);
    let c = id(11, i32::MIN);
    let d = id(12, i32::MIN);
    // Same priority: a2 goes behind the other zeros.
    assert!(queue.set_priority(a[2], 0));
    // c joins b at MAX (behind it), then b re-joins MAX (behind c).
    assert!(queue.set_priority(c, i32::MAX));
    assert!(queue.set_priority(b, i32::MAX));
    // a0 drops to MIN, behind d.
    assert!(queue.set_priority(a[0], i32::MIN));
    // a4 to -1: after every 0, before the MINs.
    assert!(queue.set_priority(a[4], -1));
    // A new MAX push goes behind c and b.
    let e = id(13, i32::MAX);
    assert_eq!((queue.len(), queue.unstarted()), (10, 10));
    let _ = (d, e);
    let mut queue = Box::pin(queue);
    let (order, panics) = run_to_end(queue.as_mut(), 100);
    assert_eq!(panics, 0);
    assert_eq!(order, [11, 10, 13, 1, 3, 5, 2, 4, 12, 0]);
    for life in &lives {
        life.assert_once();
    }
}

/// Rounds of a randomised test: `default`, or `REVIEW_QUEUE_ROUNDS` (to
/// fuzz longer by hand).
fn rounds(default: u64) -> u64 {
    std::env::var("REVIEW_QUEUE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// A reference model of the queue's start order: `(id, priority)` in the
/// order they start; an entry goes behind every one of at least its
/// priority.
fn model_insert(model: &mut Vec<(u32, i32)>, id: u32, priority: i32) {
    let at = model
        .iter()
        .rposition(|&(_, p)| p >= priority)
        .map_or(0, |i| i + 1);
    model.insert(at, (id, priority));
}

/// Pushes, prioritised pushes, `set_priority` and `cancel` of random ids
/// (queued, started, cancelled, never issued), with a poll (one task starts
/// and finishes) now and then, against the model. With `alloc` the window
/// is 1 or 2 (most tasks wait beyond it, and re-prioritising moves them
/// across); without, it is 1 or 4 and a push into a full window is refused.
#[test]
fn random_ops_against_a_start_order_model() {
    if cfg!(feature = "alloc") {
        random_ops::<1>();
        random_ops::<2>();
    } else {
        random_ops::<1>();
        random_ops::<4>();
    }
}

fn random_ops<const N: usize>() {
    const PRIOS: [i32; 5] = [i32::MIN, -1, 0, 1, i32::MAX];
    let rounds = rounds(if cfg!(miri) { 4 } else { 40 });
    for round in 0..rounds {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ round ^ ((N as u64) << 32);
        let mut rand = move |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        let mut queue = Box::pin(TaskQueue::<Probe>::with_capacity::<N>());
        let mut model: Vec<(u32, i32)> = Vec::new();
        let mut ids: Vec<(TaskId, u32)> = Vec::new();
        let mut lives = Vec::new();
        let mut next = 0u32;
        for step in 0..60 {
            match rand(6) {
                0 | 1 => {
                    let priority = PRIOS[rand(5)];
                    let (task, life) = probe(next, Plan::default());
                    lives.push(life);
                    match queue.push_with(task, Options::new().priority(priority)) {
                        Ok(id) => {
                            assert!(ids.last().is_none_or(|&(last, _)| last < id), "ids grow");
                            ids.push((id, next));
                            model_insert(&mut model, next, priority);
                        }
                        Err(PushError::Full(task)) => {
                            if cfg!(feature = "alloc") {
                                panic!("refused as full with `alloc`");
                            }
                            assert_eq!(model.len(), N, "refused with room, step {step}");
                            drop(task);
                        }
                        Err(_) => panic!("refused"),
                    }
                    next += 1;
                }
                2 if !ids.is_empty() => {
                    let (id, n) = ids[rand(ids.len())];
                    let priority = PRIOS[rand(5)];
                    let queued = model.iter().position(|&(m, _)| m == n);
                    assert_eq!(queue.set_priority(id, priority), queued.is_some());
                    if let Some(at) = queued {
                        model.remove(at);
                        model_insert(&mut model, n, priority);
                    }
                }
                3 if !ids.is_empty() => {
                    let (id, n) = ids[rand(ids.len())];
                    let queued = model.iter().position(|&(m, _)| m == n);
                    let task = queue.cancel(id);
                    assert_eq!(task.is_some(), queued.is_some(), "cancel, step {step}");
                    if let Some(at) = queued {
                        assert_eq!(task.as_ref().unwrap().life.id, n);
                        model.remove(at);
                    }
                }
                _ => match poll(queue.as_mut()) {
                    Ok(Poll::Ready(Some(out))) => {
                        let (first, _) = model.remove(0);
                        assert_eq!(out.id, first, "start order, step {step}");
                    }
                    Ok(Poll::Ready(None)) => assert!(model.is_empty()),
                    other => panic!("unexpected {:?}", other.map(|p| p.is_pending())),
                },
            }
            assert_eq!(queue.unstarted(), model.len(), "step {step}");
            assert_eq!(queue.len(), model.len(), "step {step}");
            assert_eq!(queue.running(), 0);
        }
        let (rest, panics) = run_to_end(queue.as_mut(), 200);
        assert_eq!(panics, 0);
        let expected: Vec<u32> = model.iter().map(|&(n, _)| n).collect();
        assert_eq!(rest, expected);
        drop(queue);
        for life in &lives {
            life.assert_once();
        }
    }
}

/// The model with concurrency: tasks that run for 0 to 3 polls, up to 3
/// at once, in both orders; `set_priority` and `cancel` of ids queued,
/// running, finished, yielded, cancelled; `set_concurrency` changes. After
/// every poll the tasks it started (logged by `into_future`, in order) must
/// be the model's first queued ones; `cancel` and `set_priority` must
/// agree with the model; every task not cancelled comes out once (in
/// submission order: in start order). Without `alloc` a push into a full
/// window is refused (and handed back) — the model just skips it.
#[test]
fn random_ops_with_concurrency_against_the_model() {
    if cfg!(feature = "alloc") {
        concurrent_ops::<2>();
        concurrent_ops::<3>();
    } else {
        concurrent_ops::<3>();
        concurrent_ops::<6>();
    }
}

fn concurrent_ops<const N: usize>() {
    const PRIOS: [i32; 5] = [i32::MIN, -1, 0, 1, i32::MAX];
    let rounds = rounds(if cfg!(miri) { 2 } else { 24 });
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            Yield::InSubmissionOrder
        } else {
            Yield::InCompletionOrder
        };
        let mut seed: u64 = 0xa076_1d64_78bd_642f ^ round ^ ((N as u64) << 40);
        let mut rand = move |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut queue = Box::pin(
            TaskQueue::<Probe>::with_capacity::<N>()
                .concurrency(1 + rand(3))
                .order(order),
        );
        let mut model: Vec<(u32, i32)> = Vec::new();
        let mut ids: Vec<(TaskId, u32)> = Vec::new();
        let mut started: Vec<u32> = Vec::new();
        let mut cancelled: Vec<u32> = Vec::new();
        let mut yielded: Vec<u32> = Vec::new();
        let mut lives = Vec::new();
        let mut next = 0u32;
        let case = format!("N {N}, round {round}, {order:?}");
        for step in 0..80 {
            match rand(8) {
                0..=2 => {
                    let priority = PRIOS[rand(5)];
                    let (mut task, life) = probe(
                        next,
                        Plan {
                            pending: rand(4),
                            ..Plan::default()
                        },
                    );
                    task.starts = Some(log.clone());
                    lives.push(life);
                    match queue.push_with(task, Options::new().priority(priority)) {
                        Ok(id) => {
                            ids.push((id, next));
                            model_insert(&mut model, next, priority);
                        }
                        Err(PushError::Full(task)) => {
                            if cfg!(feature = "alloc") {
                                panic!("{case}: refused as full with `alloc`");
                            }
                            assert_eq!(task.life.id, next);
                        }
                        Err(_) => panic!("{case}: refused"),
                    }
                    next += 1;
                }
                3 if !ids.is_empty() => {
                    let (id, n) = ids[rand(ids.len())];
                    let priority = PRIOS[rand(5)];
                    let queued = model.iter().position(|&(m, _)| m == n);
                    let moved = queue.set_priority(id, priority);
                    assert_eq!(moved, queued.is_some(), "{case}: step {step}");
                    if let Some(at) = queued {
                        model.remove(at);
                        model_insert(&mut model, n, priority);
                    }
                }
                4 if !ids.is_empty() => {
                    let (id, n) = ids[rand(ids.len())];
                    let queued = model.iter().position(|&(m, _)| m == n);
                    let task = queue.cancel(id);
                    assert_eq!(task.is_some(), queued.is_some(), "{case}: step {step}");
                    if let Some(at) = queued {
                        model.remove(at);
                        cancelled.push(n);
                    }
                }
                5 => queue.set_concurrency(1 + rand(3)).unwrap(),
                _ => {
                    match poll(queue.as_mut()) {
                        Ok(Poll::Ready(Some(out))) => yielded.push(out.id),
                        Ok(_) => {}
                        Err(()) => panic!("{case}: a poll panicked"),
                    }
                    let new: Vec<u32> = log.borrow_mut().drain(..).collect();
                    for n in new {
                        assert!(!model.is_empty(), "{case}: {n} started from nowhere");
                        let (first, _) = model.remove(0);
                        assert_eq!(n, first, "{case}: start order, step {step}");
                        started.push(n);
                    }
                }
            }
            assert_eq!(queue.unstarted(), model.len(), "{case}: step {step}");
            assert!(queue.running() <= 3.min(N), "{case}");
        }
        let (rest, panics) = run_to_end(queue.as_mut(), 1000);
        assert_eq!(panics, 0);
        yielded.extend(rest);
        started.extend(log.borrow_mut().drain(..));
        let from_model: Vec<u32> = model.iter().map(|&(n, _)| n).collect();
        assert!(
            started.ends_with(&from_model),
            "{case}: the rest in model order"
        );
        if order == Yield::InSubmissionOrder {
            assert_eq!(yielded, started, "{case}: yielded in start order");
        }
        let mut all = yielded.clone();
        all.extend(&cancelled);
        all.sort_unstable();
        let mut expected: Vec<u32> = ids.iter().map(|&(_, n)| n).collect();
        expected.sort_unstable();
        assert_eq!(all, expected, "{case}: each once, or cancelled");
        drop(queue);
        for life in &lives {
            life.assert_once();
            life.assert_never_moved();
        }
    }
}

// ------------------------------------------------------------ ids and ends

/// `cancel` and `set_priority` act only on a task waiting to start: not on
/// one running, finished and waiting for its turn, yielded, cancelled,
/// cleared, or whose `into_future` panicked; an id this queue never issued
/// names nothing; an id from another queue names this queue's task of the
/// same number (documented: ids carry no mark of their queue). Nothing is
/// touched by a refusal (counts, later order).
#[test]
fn cancel_and_set_priority_refuse_every_id_not_waiting_to_start() {
    quiet_panics();
    let mut queue = Box::pin(TaskQueue::<Probe>::with_capacity::<8>().concurrency(2));
    let (slow, slow_life) = probe(
        0,
        Plan {
            held: true,
            ..Plan::default()
        },
    );
    let (fast, fast_life) = probe(1, Plan::default());
    let (bad, bad_life) = probe(
        2,
        Plan {
            panic_into_future: true,
            ..Plan::default()
        },
    );
    let (queued, queued_life) = probe(3, Plan::default());
    let (victim, victim_life) = probe(4, Plan::default());
    let (cleared, cleared_life) = probe(5, Plan::default());
    let slow = push(&queue, slow);
    let fast = push(&queue, fast);
    // Another queue's ids: 0..=9 there; 9 is never issued here.
    let other = TaskQueue::<Probe>::new();
    let mut other_lives = Vec::new();
    let mut foreign = Vec::new();
    for n in 0..10 {
        let (task, life) = probe(100 + n, Plan::default());
        other_lives.push(life);
        foreign.push(push(&other, task));
    }
    drop(other);
    // First poll: slow (held) and fast start; fast finishes and waits for
    // slow (submission order).
    assert!(matches!(poll(queue.as_mut()), Ok(Poll::Pending)));
    assert_eq!((queue.running(), queue.unstarted(), queue.len()), (1, 0, 2));
    queue.pause();
    let bad = push(&queue, bad);
    let queued = push(&queue, queued);
    let victim = push(&queue, victim);
    assert!(queue.cancel(foreign[9]).is_none());
    assert!(!queue.set_priority(foreign[9], 1));
    for id in [slow, fast] {
        assert!(queue.cancel(id).is_none(), "{id:?} started");
        assert!(!queue.set_priority(id, i32::MAX), "{id:?} started");
    }
    // A foreign id of the same number as `fast` names `fast`: started.
    assert!(queue.cancel(foreign[1]).is_none());
    // Cancelled: handed back once, then unknown.
    let task = queue.cancel(victim).expect("queued");
    assert_eq!(task.life.id, 4);
    drop(task);
    assert!(queue.cancel(victim).is_none());
    assert!(!queue.set_priority(victim, 5));
    // A foreign id of `queued`'s number names `queued`.
    assert!(queue.set_priority(foreign[3], 0));
    assert_eq!((queue.running(), queue.unstarted(), queue.len()), (1, 2, 4));
    // Cleared: unknown afterwards.
    let cleared = push(&queue, cleared);
    assert_eq!(queue.clear(), 3); // bad, queued, cleared
    for id in [cleared, queued, bad] {
        assert!(queue.cancel(id).is_none());
        assert!(!queue.set_priority(id, 1));
    }
    // Pushed after them: a new id; its `into_future` panics.
    let (bad2, bad2_life) = probe(
        6,
        Plan {
            panic_into_future: true,
            ..Plan::default()
        },
    );
    let bad2 = push(&queue, bad2);
    assert!(bad2 > cleared);
    queue.resume();
    assert!(poll(queue.as_mut()).is_err(), "into_future panics");
    assert!(queue.cancel(bad2).is_none());
    assert!(!queue.set_priority(bad2, 1));
    assert_eq!((queue.running(), queue.unstarted(), queue.len()), (1, 0, 2));
    slow_life.release();
    let (order, panics) = run_to_end(queue.as_mut(), 50);
    assert_eq!((order, panics), (vec![0, 1], 0));
    // Yielded: unknown.
    assert!(queue.cancel(slow).is_none() && queue.cancel(fast).is_none());
    drop(queue);
    for life in [
        &slow_life,
        &fast_life,
        &bad_life,
        &queued_life,
        &victim_life,
        &cleared_life,
        &bad2_life,
    ] {
        life.assert_once();
    }
    assert!(!bad_life.started() && !queued_life.started());
    for life in &other_lives {
        life.assert_once();
    }
}

/// Ids only grow and are never reused: across cancels (a cancelled task
/// pushed again gets a new id, the old one stays dead), clears, panicking
/// `into_future`s, and refusals (a push into a full window, without
/// `alloc`, uses up an id).
#[test]
fn ids_only_grow_and_stale_ids_stay_dead() {
    quiet_panics();
    let mut queue = Box::pin(TaskQueue::<Probe>::with_capacity::<2>());
    let mut lives = Vec::new();
    let mut ids = Vec::new();
    let mut fresh = |n: u32, plan: Plan| {
        let (task, life) = probe(n, plan);
        lives.push(life);
        task
    };
    let a = push(&queue, fresh(0, Plan::default()));
    ids.push(a);
    let task = queue.cancel(a).unwrap();
    let a2 = push(&queue, task);
    ids.push(a2);
    assert!(queue.cancel(a).is_none(), "the old id is dead");
    assert!(!queue.set_priority(a, 3));
    let b = push(&queue, fresh(1, Plan::default()));
    ids.push(b);
    if cfg!(feature = "alloc") {
        ids.push(push(&queue, fresh(2, Plan::default())));
    } else {
        match queue.push(fresh(2, Plan::default())) {
            Err(PushError::Full(task)) => drop(task),
            _ => panic!("the window of 2 is full"),
        }
    }
    assert_eq!(queue.clear(), ids.len() - 1);
    let c = push(
        &queue,
        fresh(
            3,
            Plan {
                panic_into_future: true,
                ..Plan::default()
            },
        ),
    );
    ids.push(c);
    assert!(poll(queue.as_mut()).is_err());
    let d = push(&queue, fresh(4, Plan::default()));
    ids.push(d);
    // Without `alloc` the refused push used up id 3 all the same.
    assert_eq!(format!("{d:?}"), "TaskId(5)");
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "ids grow: {ids:?}");
    }
    for &old in &ids[..ids.len() - 1] {
        assert!(queue.cancel(old).is_none(), "{old:?} is dead");
    }
    let (order, panics) = run_to_end(queue.as_mut(), 20);
    assert_eq!((order, panics), (vec![4], 0));
    drop(queue);
    for life in &lives {
        life.assert_once();
    }
}

// ------------------------------------------------------ pinning and moves

/// Running futures (`!Unpin`, 64-aligned) never move while `push_with`
/// and `set_priority` shift the queued entries back and `cancel` shifts
/// them forward, `clear` empties them, and the slots around the running
/// ones are reused; each records its address at every poll.
#[test]
fn running_futures_never_move_while_queued_entries_shift() {
    let mut queue = Box::pin(TaskQueue::<Probe>::with_capacity::<8>().concurrency(3));
    let mut lives = Vec::new();
    let mut fresh = |n: u32, pending: usize| {
        let (task, life) = probe(
            n,
            Plan {
                pending,
                ..Plan::default()
            },
        );
        lives.push(life);
        task
    };
    for n in 0..3 {
        push(&queue, fresh(n, 6));
    }
    let q: Vec<TaskId> = (3..7).map(|n| push(&queue, fresh(n, 2))).collect();
    let mut yielded = Vec::new();
    let step = |queue: Pin<&mut TaskQueue<Probe, 8>>, yielded: &mut Vec<u32>| {
        if let Ok(Poll::Ready(Some(out))) = poll(queue) {
            yielded.push(out.id);
        }
    };
    step(queue.as_mut(), &mut yielded);
    assert_eq!((queue.running(), queue.unstarted()), (3, 4));
    // A MAX push shifts every queued entry back.
    let top = push_prio(&queue, fresh(7, 1), i32::MAX);
    step(queue.as_mut(), &mut yielded);
    // remove_queued + push: the first queued to the back, then forward.
    assert!(queue.set_priority(top, i32::MIN));
    assert!(queue.set_priority(q[0], i32::MIN));
    step(queue.as_mut(), &mut yielded);
    // cancel shifts the rest forward.
    drop(queue.cancel(q[1]).unwrap());
    step(queue.as_mut(), &mut yielded);
    assert_eq!(queue.running(), 3, "the window keeps the three");
    assert!(queue.clear() >= 3);
    for n in 8..11 {
        push_prio(&queue, fresh(n, 3), n as i32);
    }
    let (rest, panics) = run_to_end(queue.as_mut(), 100);
    assert_eq!(panics, 0);
    yielded.extend(rest);
    assert_eq!(yielded, [0, 1, 2, 10, 9, 8]);
    drop(queue);
    for life in &lives {
        life.assert_once();
        life.assert_never_moved();
    }
    // The three long runners were polled at every step (so a move would show).
    assert!(lives[..3].iter().all(|l| l.polls.load(SeqCst) == 7));
}

/// The same in completion order, where a task that finishes early leaves a
/// hole among the started entries (its slot vacant, not forgotten until it
/// reaches the front): queued entries shift next to the hole and start
/// behind it, and the long runners on both sides of it never move.
#[test]
fn running_futures_never_move_around_holes_in_completion_order() {
    let mut queue = Box::pin(
        TaskQueue::<Probe>::with_capacity::<8>()
            .concurrency(3)
            .order(Yield::InCompletionOrder),
    );
    let mut lives = Vec::new();
    let mut fresh = |n: u32, pending: usize| {
        let (task, life) = probe(
            n,
            Plan {
                pending,
                ..Plan::default()
            },
        );
        lives.push(life);
        task
    };
    push(&queue, fresh(0, 9));
    push(&queue, fresh(1, 1));
    push(&queue, fresh(2, 9));
    let q: Vec<TaskId> = (3..7).map(|n| push(&queue, fresh(n, 9))).collect();
    let mut yielded = Vec::new();
    for round in 0..4 {
        if let Ok(Poll::Ready(Some(out))) = poll(queue.as_mut()) {
            yielded.push(out.id);
        }
        match round {
            0 => {
                let _ = push_prio(&queue, fresh(7, 0), i32::MAX);
            }
            1 => assert!(queue.set_priority(q[3], i32::MAX)),
            2 => drop(queue.cancel(q[0]).expect("queued")),
            _ => assert!(queue.set_priority(q[2], i32::MIN)),
        }
    }
    // 1 finished at its second poll and was yielded: a hole at slot 1 that
    // stays (0 is still running at the front); 7 (MAX) started after 2.
    assert!(yielded.contains(&1), "{yielded:?}");
    let (rest, panics) = run_to_end(queue.as_mut(), 100);
    assert_eq!(panics, 0);
    yielded.extend(rest);
    let mut all = yielded.clone();
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 4, 5, 6, 7], "{yielded:?}");
    drop(queue);
    for life in &lives {
        life.assert_once();
        life.assert_never_moved();
    }
}

/// Self-borrowing tasks (an `async` block holding `&mut` to its own local
/// across pending awaits) keep running while every `&self` mutator —
/// push with a priority, `set_priority`, `cancel`, `clear`, `pause` /
/// `resume`, `set_concurrency`, `set_timeout` — runs between two of their
/// polls and shifts the queued entries next to them. Under Miri (Stacked
/// and Tree Borrows) a `&mut` over the ring that claimed a running
/// future's bytes would invalidate the future's own pointer.
#[test]
fn mutators_between_polls_of_self_borrowing_tasks() {
    async fn task(seed: u32) -> u32 {
        let mut local = [seed; 4];
        let r = &mut local;
        support::yield_now().await;
        r[0] += 1;
        support::yield_now().await;
        r[1] += r[0];
        support::yield_now().await;
        r.iter().sum()
    }
    let mut queue = Box::pin(
        TaskQueue::with_capacity::<4>()
            .concurrency(2)
            .timer(|_: Duration| std::future::pending::<()>())
            .timeout(Duration::from_secs(1)),
    );
    let mut out = Vec::new();
    queue.push(task(1)).unwrap();
    queue.push(task(2)).unwrap();
    let mut queued: Vec<TaskId> = Vec::new();
    for step in 0..40u32 {
        // Two queued ones next to the running ones, reshuffled (an id that
        // started meanwhile is refused and forgotten).
        while queued.len() < 2 {
            let options = Options::new().priority(step as i32 % 3);
            queued.push(queue.push_with(task(10 + step), options).unwrap());
        }
        queued.retain(|&id| queue.set_priority(id, -(step as i32)));
        if step % 3 == 0 {
            if let Some(id) = queued.pop() {
                assert!(queue.cancel(id).is_some());
            }
        }
        queue.set_timeout(Duration::from_secs(u64::from(step) + 1));
        queue.pause();
        queue.resume();
        queue.set_concurrency(2).unwrap();
        if step % 7 == 6 {
            queue.clear();
            queued.clear();
        }
        let _ = (queue.len(), queue.unstarted(), queue.running());
        match queue
            .as_mut()
            .poll_next(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Some(n)) => out.push(n.unwrap()),
            Poll::Ready(None) => unreachable!("always something queued"),
            Poll::Pending => {}
        }
        if out.len() >= 4 {
            break;
        }
    }
    // Each result is seed*4 + 1 + (seed + 1): the borrows worked.
    assert!(out.len() >= 4, "{out:?}");
    for n in &out {
        let seed = (n - 2) / 5;
        assert_eq!(*n, seed * 5 + 2, "{out:?}");
    }
}

// ---------------------------------------------------------------- panics

/// A task's `poll` panics; until the next poll its future is doomed (not
/// counted, not dropped). Meanwhile `cancel`, `set_priority`, `push` and
/// `clear` work and do not touch it; the next poll drops it (once), and
/// everything else runs. Also when that destructor panics too (the poll
/// that buries it panics; the one after goes on), and when the queue is
/// dropped instead of polled.
#[test]
fn a_doomed_future_survives_cancel_set_priority_push_and_clear_until_buried() {
    quiet_panics();
    for (panic_future_drop, poll_again) in [(false, true), (true, true), (false, false)] {
        let case = format!("future drop panics: {panic_future_drop}, polled: {poll_again}");
        let mut queue = Box::pin(TaskQueue::<Probe>::with_capacity::<8>().concurrency(2));
        let (bad, bad_life) = probe(
            0,
            Plan {
                panic_poll_at: 2,
                pending: 5,
                panic_future_drop,
                ..Plan::default()
            },
        );
        let (runner, runner_life) = probe(
            1,
            Plan {
                pending: 3,
                ..Plan::default()
            },
        );
        let mut lives = vec![bad_life.clone(), runner_life.clone()];
        let mut fresh = |n: u32| {
            let (task, life) = probe(n, Plan::default());
            lives.push(life);
            task
        };
        push(&queue, bad);
        push(&queue, runner);
        let a = push(&queue, fresh(2));
        let b = push(&queue, fresh(3));
        let c = push(&queue, fresh(4));
        assert!(matches!(poll(queue.as_mut()), Ok(Poll::Pending)), "{case}");
        assert!(poll(queue.as_mut()).is_err(), "{case}: the 2nd poll panics");
        assert_eq!(bad_life.future_drops.load(SeqCst), 0, "{case}: not yet");
        assert_eq!(queue.running(), 1, "{case}: the doomed one is not counted");
        assert_eq!((queue.unstarted(), queue.len()), (3, 4), "{case}");
        drop(queue.cancel(b).unwrap());
        assert!(queue.set_priority(c, 9));
        let d = push_prio(&queue, fresh(5), 9);
        assert_eq!(queue.clear(), 3, "{case}: a, c, d");
        for id in [a, c, d] {
            assert!(queue.cancel(id).is_none(), "{case}");
        }
        let e = push(&queue, fresh(6));
        assert!(queue.set_priority(e, i32::MIN));
        assert_eq!(bad_life.future_drops.load(SeqCst), 0, "{case}: still not");
        assert_eq!((queue.running(), queue.unstarted()), (1, 1), "{case}");
        if poll_again {
            let buried = poll(queue.as_mut());
            assert_eq!(bad_life.future_drops.load(SeqCst), 1, "{case}: buried");
            assert_eq!(buried.is_err(), panic_future_drop, "{case}");
            let (order, panics) = run_to_end(queue.as_mut(), 50);
            assert_eq!((order, panics), (vec![1, 6], 0), "{case}");
        } else {
            let dropped = catch_unwind(AssertUnwindSafe(|| drop(queue)));
            assert!(dropped.is_ok(), "{case}");
        }
        for life in &lives {
            life.assert_once();
        }
        assert_eq!(bad_life.outputs.load(SeqCst), 0, "{case}");
    }
}

/// A task handed back by `cancel` panics when dropped (in the caller: the
/// task already left the queue), a task's `into_future` panics, an output's
/// destructor panics: after each, the counts are right, `set_priority`
/// and `cancel` still find the queued tasks, and later pushes run.
#[test]
fn panics_around_cancel_and_set_priority_leave_the_queue_consistent() {
    quiet_panics();
    let mut queue = Box::pin(TaskQueue::<Probe>::with_capacity::<4>());
    let mut lives = Vec::new();
    let mut fresh = |n: u32, plan: Plan| {
        let (task, life) = probe(n, plan);
        lives.push(life);
        task
    };
    let a = push(
        &queue,
        fresh(
            0,
            Plan {
                panic_task_drop: true,
                ..Plan::default()
            },
        ),
    );
    let b = push(
        &queue,
        fresh(
            1,
            Plan {
                panic_into_future: true,
                ..Plan::default()
            },
        ),
    );
    let c = push(
        &queue,
        fresh(
            2,
            Plan {
                panic_output_drop: true,
                ..Plan::default()
            },
        ),
    );
    let d = push(&queue, fresh(3, Plan::default()));
    let task = queue.cancel(a).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(task))).is_err());
    assert_eq!((queue.len(), queue.unstarted()), (3, 3));
    assert!(queue.set_priority(d, 1));
    assert!(queue.set_priority(b, 1)); // b behind d
    // d first.
    match poll(queue.as_mut()) {
        Ok(Poll::Ready(Some(out))) => assert_eq!(out.id, 3),
        _ => panic!("d"),
    }
    // b's into_future panics.
    assert!(poll(queue.as_mut()).is_err());
    assert_eq!((queue.len(), queue.unstarted(), queue.running()), (1, 1, 0));
    assert!(!queue.set_priority(b, 0));
    // c's output panics when the consumer drops it: the queue is not
    // involved any more.
    match poll(queue.as_mut()) {
        Ok(Poll::Ready(Some(out))) => {
            assert_eq!(out.id, 2);
            assert!(catch_unwind(AssertUnwindSafe(|| drop(out))).is_err());
        }
        _ => panic!("c"),
    }
    assert!(queue.cancel(c).is_none());
    let e = push(&queue, fresh(4, Plan::default()));
    assert!(e > d);
    let (order, panics) = run_to_end(queue.as_mut(), 20);
    assert_eq!((order, panics), (vec![4], 0));
    drop(queue);
    for life in &lives {
        life.assert_once();
    }
}

/// A queue shared through an `Rc`, whose tasks' destructors (run by
/// `clear`, outside the queue's state) call `cancel` (and drop what it
/// hands back, re-entrantly again), `set_priority`, `push` and
/// `set_timeout`, and then panic: the panic leaves the rest queued, the
/// next `clear` goes on, every task is dropped exactly once, and the
/// timeouts are those in force when each task was pushed (the factory
/// logs them as the tasks start).
#[test]
fn reentrant_destructors_cancel_reprioritise_push_and_set_timeout_during_clear() {
    quiet_panics();
    type Factory = Box<dyn FnMut(Duration) -> std::future::Pending<()>>;
    type Queue = TaskQueue<Probe, 4, deferral::queue::Deadline<Factory>>;
    let made = Rc::new(RefCell::new(Vec::new()));
    let log = made.clone();
    let factory: Factory = Box::new(move |d| {
        log.borrow_mut().push(d.as_millis() as u64);
        std::future::pending()
    });
    let queue: Rc<Queue> = Rc::new(
        TaskQueue::with_capacity::<4>()
            .timer(factory)
            .timeout(Duration::from_millis(10)),
    );
    let lives = Rc::new(RefCell::new(Vec::new()));
    let fresh = |n: u32, plan: Plan| {
        let (task, life) = probe(n, plan);
        lives.borrow_mut().push(life);
        task
    };
    let keep = push(&queue, fresh(0, Plan::default()));
    let victim = push(&queue, fresh(1, Plan::default()));
    let mut loud = fresh(
        2,
        Plan {
            panic_task_drop: true,
            ..Plan::default()
        },
    );
    let own = Rc::new(std::cell::Cell::new(None));
    {
        let weak = Rc::downgrade(&queue);
        let lives = lives.clone();
        let own = own.clone();
        loud.on_drop = Some(Box::new(move || {
            let queue = weak.upgrade().unwrap();
            // The task being dropped already left the queue.
            let own = own.get().unwrap();
            assert!(queue.cancel(own).is_none());
            assert!(!queue.set_priority(own, 1));
            // Handed back and dropped here: a nested re-entrant drop.
            assert_eq!(queue.cancel(victim).unwrap().life.id, 1);
            assert!(queue.set_priority(keep, 7));
            queue.set_timeout(Duration::from_millis(30));
            let (task, life) = probe(3, Plan::default());
            lives.borrow_mut().push(life);
            queue.push(task).unwrap_or_else(|_| panic!("room"));
        }));
    }
    own.set(Some(push(&queue, loud)));
    // `clear` drops the newest first: `loud`, which panics after its hook.
    assert!(catch_unwind(AssertUnwindSafe(|| queue.clear())).is_err());
    // keep (10 ms) and the one pushed by the hook (30 ms) are queued.
    assert_eq!((queue.len(), queue.unstarted()), (2, 2));
    assert!(queue.set_priority(keep, 0)); // keeps its own 10 ms
    let late = push(&queue, fresh(4, Plan::default())); // 30 ms
    queue.set_timeout(None);
    let plain = push(&queue, fresh(5, Plan::default())); // none
    assert!(queue.cancel(late).is_some());
    let task = queue.cancel(plain).unwrap();
    push(&queue, task); // pushed again: no timeout
    let queue = Rc::try_unwrap(queue).unwrap_or_else(|_| panic!("one owner"));
    let mut queue = Box::pin(queue);
    let (order, panics) = run_to_end(queue.as_mut(), 20);
    assert_eq!((order, panics), (vec![3, 0, 5], 0));
    assert_eq!(*made.borrow(), [30, 10]);
    drop(queue);
    for life in lives.borrow().iter() {
        life.assert_once();
    }
}

/// The default timeout `set_timeout` sets is read when a task enters the
/// queue, as p-queue reads it in `add` — and a task `set_priority` moves
/// (across the window, beyond it with `alloc`) keeps its own.
#[test]
fn set_priority_keeps_each_tasks_timeout() {
    type Factory = Box<dyn FnMut(Duration) -> std::future::Pending<()>>;
    let made = Rc::new(RefCell::new(Vec::new()));
    let log = made.clone();
    let factory: Factory = Box::new(move |d| {
        log.borrow_mut().push(d.as_millis() as u64);
        std::future::pending()
    });
    let mut queue = Box::pin(
        TaskQueue::<Probe>::with_capacity::<2>()
            .timer(factory)
            .timeout(Duration::from_millis(1)),
    );
    let mut lives = Vec::new();
    let mut fresh = |n: u32| {
        let (task, life) = probe(n, Plan::default());
        lives.push(life);
        task
    };
    let count = if cfg!(feature = "alloc") { 5 } else { 2 };
    let ids: Vec<TaskId> = (0..count)
        .map(|n| {
            queue.set_timeout(Duration::from_millis(u64::from(n) + 1));
            push(&queue, fresh(n))
        })
        .collect();
    queue.set_timeout(Duration::from_millis(99));
    // Reverse the order: each to the front.
    for (n, &id) in ids.iter().enumerate() {
        assert!(queue.set_priority(id, n as i32));
    }
    let (order, panics) = run_to_end(queue.as_mut(), 50);
    assert_eq!(panics, 0);
    let expected: Vec<u32> = (0..count).rev().collect();
    assert_eq!(order, expected);
    let timeouts: Vec<u64> = (1..=u64::from(count)).rev().collect();
    assert_eq!(*made.borrow(), timeouts);
    drop(queue);
    for life in &lives {
        life.assert_once();
    }
}

/// `Submitter::submit` docs: "A submitted task gets the queue's timeout";
/// `set_timeout` docs: tasks pushed from now on get the new default, those
/// already pushed keep theirs (p-queue reads it in `add`). A task
/// submitted while the default was 10 ms, but taken by the queue's next
/// poll after `set_timeout(99 ms)`, should keep 10 ms.
#[cfg(feature = "alloc")]
#[test]
fn a_submission_keeps_the_timeout_in_force_when_it_was_submitted() {
    type Factory = Box<dyn FnMut(Duration) -> std::future::Pending<()>>;
    let made = Rc::new(RefCell::new(Vec::new()));
    let log = made.clone();
    let factory: Factory = Box::new(move |d| {
        log.borrow_mut().push(d.as_millis() as u64);
        std::future::pending()
    });
    let mut queue = Box::pin(
        TaskQueue::<Probe>::new()
            .timer(factory)
            .timeout(Duration::from_millis(10)),
    );
    let submit = queue.submitter();
    let (task, life) = probe(0, Plan::default());
    submit.submit(task).unwrap_or_else(|_| panic!("open"));
    queue.set_timeout(Duration::from_millis(99));
    drop(submit);
    let (order, panics) = run_to_end(queue.as_mut(), 20);
    assert_eq!((order, panics), (vec![0], 0));
    assert_eq!(*made.borrow(), [10], "the timeout in force at submission");
    drop(queue);
    life.assert_once();
}

/// After a stop (in either order) whose truncation panicked (a
/// destructor), some queued tasks are still in the window: `set_priority`
/// may move them and `cancel` take them, but the next poll must still drop
/// the rest unrun, yield the rejection and end; pushes stay refused.
#[test]
fn set_priority_and_cancel_between_a_panicking_stop_and_its_end() {
    quiet_panics();
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let mut queue = Box::pin(
            TaskQueue::<Probe>::with_capacity::<8>()
                .concurrency(1)
                .order(order)
                .stop_when(|out: &Out| out.rejects),
        );
        let mut lives = Vec::new();
        let mut fresh = |n: u32, plan: Plan| {
            let (task, life) = probe(n, plan);
            lives.push(life);
            task
        };
        push(
            &queue,
            fresh(
                0,
                Plan {
                    rejects: true,
                    ..Plan::default()
                },
            ),
        );
        let a = push(&queue, fresh(1, Plan::default()));
        let b = push(&queue, fresh(2, Plan::default()));
        let c = push(&queue, fresh(3, Plan::default()));
        // The newest, dropped first by the truncation, panics.
        push(
            &queue,
            fresh(
                4,
                Plan {
                    panic_task_drop: true,
                    ..Plan::default()
                },
            ),
        );
        assert!(poll(queue.as_mut()).is_err(), "the truncation panics");
        assert!(queue.is_stopped());
        assert_eq!(queue.unstarted(), 3, "a, b, c left");
        assert!(queue.set_priority(c, i32::MAX));
        assert!(queue.set_priority(a, i32::MIN));
        let task = queue.cancel(b).unwrap();
        drop(task);
        let (task, life) = probe(5, Plan::default());
        assert!(matches!(queue.push(task), Err(PushError::Stopped(_))));
        life.assert_once();
        let (order, panics) = run_to_end(queue.as_mut(), 20);
        assert_eq!((order, panics), (vec![0], 0), "only the rejection");
        assert!(queue.cancel(a).is_none() && queue.cancel(c).is_none());
        drop(queue);
        for (n, life) in lives.iter().enumerate() {
            life.assert_once();
            assert_eq!(life.started(), n == 0, "probe {n} started");
        }
    }
}

// ----------------------------------------------------- the pinned window

/// A full window (capacity 3) whose front task is slow and pinned: in
/// both orders, the fast tasks after it run and finish, the window stays
/// full until the slow one ends (a push is refused without `alloc`, waits
/// beyond the window with it), `cancel` and `set_priority` work on what
/// waits, and the slow future never moves.
#[test]
fn a_full_window_pinned_by_a_slow_front_task_in_both_orders() {
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let mut queue = Box::pin(
            TaskQueue::<Probe>::with_capacity::<3>()
                .concurrency(3)
                .order(order),
        );
        let mut lives = Vec::new();
        let mut fresh = |n: u32, plan: Plan| {
            let (task, life) = probe(n, plan);
            lives.push(life);
            task
        };
        push(
            &queue,
            fresh(
                0,
                Plan {
                    held: true,
                    ..Plan::default()
                },
            ),
        );
        push(&queue, fresh(1, Plan::default()));
        push(
            &queue,
            fresh(
                2,
                Plan {
                    pending: 1,
                    ..Plan::default()
                },
            ),
        );
        let mut yielded = Vec::new();
        for _ in 0..4 {
            if let Ok(Poll::Ready(Some(out))) = poll(queue.as_mut()) {
                yielded.push(out.id);
            }
        }
        match order {
            Yield::InSubmissionOrder => assert!(yielded.is_empty(), "{order:?}"),
            _ => assert_eq!(yielded, [1, 2], "{order:?}"),
        }
        assert_eq!(queue.running(), 1);
        // The window is full (the slow task pins it).
        let extra = fresh(3, Plan::default());
        let waiting = if cfg!(feature = "alloc") {
            let x = push(&queue, extra);
            let y = push(&queue, fresh(4, Plan::default()));
            let z = push(&queue, fresh(5, Plan::default()));
            assert!(queue.set_priority(z, 1));
            drop(queue.cancel(x).unwrap());
            vec![y, z]
        } else {
            match queue.push(extra) {
                Err(PushError::Full(task)) => drop(task),
                _ => panic!("{order:?}: the window is full"),
            }
            Vec::new()
        };
        for _ in 0..3 {
            assert!(
                matches!(poll(queue.as_mut()), Ok(Poll::Pending)),
                "{order:?}"
            );
        }
        assert_eq!(
            queue.running(),
            1,
            "{order:?}: nothing started past the window"
        );
        assert_eq!(queue.unstarted(), waiting.len(), "{order:?}");
        lives[0].release();
        let (rest, panics) = run_to_end(queue.as_mut(), 50);
        assert_eq!(panics, 0);
        yielded.extend(rest);
        let expected: &[u32] = match (order, cfg!(feature = "alloc")) {
            (Yield::InSubmissionOrder, true) => &[0, 1, 2, 5, 4],
            (Yield::InSubmissionOrder, false) => &[0, 1, 2],
            (_, true) => &[1, 2, 0, 5, 4],
            (_, false) => &[1, 2, 0],
        };
        assert_eq!(yielded, expected, "{order:?}");
        drop(queue);
        for life in &lives {
            life.assert_once();
            life.assert_never_moved();
        }
        assert!(lives[0].polls.load(SeqCst) >= 2);
    }
}

// ----------------------------------------------- iterators, until, forget

/// `push_all`'s iterator runs between pushes: it may re-prioritise and
/// cancel the tasks it already pushed, and push some itself; when it
/// panics, what it pushed stays, with unique ids, and the queue runs it.
#[test]
fn push_all_iterator_reenters_and_panics() {
    quiet_panics();
    let queue = TaskQueue::<Probe>::new();
    let lives = RefCell::new(Vec::new());
    let fresh = |n: u32| {
        let (task, life) = probe(n, Plan::default());
        lives.borrow_mut().push(life);
        task
    };
    let mut n = 0;
    let iter = std::iter::from_fn(|| {
        n += 1;
        match n {
            // The first two pushed (ids 0 and 1) are queued by now.
            3 => {
                // `push_all` holds no access to the queue while its
                // iterator runs.
                let inner = push(&queue, fresh(100));
                assert!(queue.set_priority(inner, 5));
                Some(fresh(2))
            }
            5 => panic!("{INJECTED}: iterator"),
            _ => Some(fresh(n - 1)),
        }
    });
    let pushed = catch_unwind(AssertUnwindSafe(|| queue.push_all(iter).is_ok()));
    assert!(pushed.is_err(), "the iterator panicked");
    // 0, 1, 100 (pushed inside), 2, 3.
    assert_eq!(queue.len(), 5);
    let mut queue = Box::pin(queue);
    let (order, panics) = run_to_end(queue.as_mut(), 20);
    assert_eq!((order, panics), (vec![100, 0, 1, 2, 3], 0));
    for life in lives.borrow().iter() {
        life.assert_once();
    }
}

/// `until(Level::Below(n))` after `cancel`: the first poll always happens
/// (one result), then the level is looked at; a forgotten `Until` (it
/// only borrows the queue) leaves the queue usable and consistent.
#[test]
fn until_below_after_cancel_and_a_forgotten_until() {
    let mut queue = Box::pin(TaskQueue::<Probe>::new());
    let mut lives = Vec::new();
    let mut ids = Vec::new();
    for n in 0..6 {
        let (task, life) = probe(n, Plan::default());
        lives.push(life);
        ids.push(push(&queue, task));
    }
    drop(queue.cancel(ids[1]).unwrap());
    drop(queue.cancel(ids[4]).unwrap());
    assert_eq!(queue.unstarted(), 4);
    let mut until = queue.as_mut().until(Level::Below(4));
    let first = futures::executor::block_on(futures::StreamExt::next(&mut until));
    assert_eq!(first.map(|o| o.id), Some(0));
    assert!(futures::executor::block_on(futures::StreamExt::next(&mut until)).is_none());
    let mut until = queue.as_mut().until(Level::Below(2));
    let second = futures::executor::block_on(futures::StreamExt::next(&mut until));
    assert_eq!(second.map(|o| o.id), Some(2));
    // Forgotten after one result (it owns no heap: nothing leaks). `Until`
    // has no destructor today; the point is that the queue must never come
    // to rely on one.
    #[allow(clippy::forget_non_drop)]
    std::mem::forget(until);
    assert_eq!((queue.len(), queue.unstarted()), (2, 2));
    assert!(queue.set_priority(ids[5], 1));
    let (order, panics) = run_to_end(queue.as_mut(), 20);
    assert_eq!((order, panics), (vec![5, 3], 0));
    for life in &lives {
        life.assert_once();
    }
}

// ---------------------------------------------------------------- timeouts

/// A timer that completes after `ms % 1000` pending polls (waking itself),
/// and panics when dropped if `ms >= 1000`.
struct Countdown {
    left: usize,
    panic_drop: bool,
}

impl Future for Countdown {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.left == 0 {
            return Poll::Ready(());
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Countdown {
    fn drop(&mut self) {
        if self.panic_drop {
            panic!("{INJECTED}: timer drop");
        }
    }
}

fn countdown(d: Duration) -> Countdown {
    let ms = d.as_millis() as usize;
    Countdown {
        left: ms % 1000,
        panic_drop: ms >= 1000,
    }
}

/// At a timeout the future and its timer are dropped in place, with
/// `TimedOut` assigned over them: when the future's destructor panics, or
/// the timer's (at a timeout, or when its task finishes first), the poll
/// panics but the outcome is kept and yielded by a later poll, in both
/// orders; meanwhile `set_priority`, `cancel`, `set_timeout` and `push`
/// work on the queued tasks, and everything is dropped once.
#[test]
fn timeouts_whose_destructors_panic_keep_their_outcome() {
    quiet_panics();
    let ms = Duration::from_millis;
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let mut queue = Box::pin(
            TaskQueue::<Probe>::with_capacity::<8>()
                .concurrency(3)
                .order(order)
                .timer(countdown as fn(Duration) -> Countdown)
                .timeout(ms(50)),
        );
        let mut lives = Vec::new();
        let mut fresh = |n: u32, plan: Plan| {
            let (task, life) = probe(n, plan);
            lives.push(life);
            task
        };
        let held = Plan {
            held: true,
            ..Plan::default()
        };
        let with = |t| Options::new().timeout(ms(t));
        // 0: times out after 2 polls, its future's drop panics.
        let t0 = fresh(
            0,
            Plan {
                panic_future_drop: true,
                ..held
            },
        );
        queue.push_with(t0, with(2)).unwrap_or_else(|_| panic!());
        // 1: times out after 3 polls, its timer's drop panics.
        queue
            .push_with(fresh(1, held), with(1003))
            .unwrap_or_else(|_| panic!());
        // 2: finishes at its 2nd poll, before its timer; the timer's drop
        // panics.
        let t2 = fresh(
            2,
            Plan {
                pending: 1,
                ..Plan::default()
            },
        );
        queue.push_with(t2, with(1009)).unwrap_or_else(|_| panic!());
        let d = push(&queue, fresh(3, Plan::default()));
        let mut yielded = Vec::new();
        let mut panics = 0;
        for step in 0..12 {
            match poll(queue.as_mut()) {
                Err(()) => panics += 1,
                Ok(Poll::Ready(Some(item))) => {
                    yielded.push(item.id().unwrap_or(u32::MAX));
                }
                Ok(Poll::Ready(None)) => break,
                Ok(Poll::Pending) => {}
            }
            match step {
                0 => {
                    assert!(queue.set_priority(d, -1));
                    queue.set_timeout(ms(1));
                    let e = push_prio(&queue, fresh(4, held), 1); // 1 poll
                    assert!(queue.set_priority(e, 0));
                }
                1 => {
                    let f = push(&queue, fresh(5, Plan::default()));
                    assert_eq!(queue.cancel(f).map(|t| t.life.id), Some(5));
                    queue.set_timeout(None);
                }
                _ => {}
            }
        }
        assert_eq!(panics, 3, "{order:?}: three destructors panicked");
        let timed_out = yielded.iter().filter(|&&id| id == u32::MAX).count();
        assert_eq!(timed_out, 3, "{order:?}: 0, 1 and 4 timed out: {yielded:?}");
        let mut ok: Vec<u32> = yielded
            .iter()
            .copied()
            .filter(|&id| id != u32::MAX)
            .collect();
        ok.sort_unstable();
        assert_eq!(ok, [2, 3], "{order:?}: {yielded:?}");
        if order == Yield::InSubmissionOrder {
            // 0, 1, 2 started first, then 4 (priority 0), then 3 (-1).
            assert_eq!(yielded, [u32::MAX, u32::MAX, 2, u32::MAX, 3], "{order:?}");
        }
        assert!(queue.is_empty());
        drop(queue);
        for life in &lives {
            life.assert_once();
        }
    }
}

// ------------------------------------------------- builders on a live queue

type Boxed = Pin<Box<dyn Future<Output = u32>>>;

/// Builders take the queue by value, so on an `Unpin` queue they can be
/// called after it started tasks (`rate_limit`'s docs describe exactly
/// that). A result that finished in submission order and waits for an
/// older task must still come out after `order(Yield::InCompletionOrder)`.
#[test]
fn changing_the_order_of_a_live_queue_loses_no_result() {
    let gate = support::Gate::new();
    let mut queue = TaskQueue::<Boxed>::new().concurrency(2);
    let wait = gate.wait();
    queue
        .push(Box::pin(async move {
            wait.await;
            0
        }))
        .unwrap();
    queue.push(Box::pin(async { 1 })).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    // 0 runs; 1 finished and waits for 0 (submission order).
    assert!(Pin::new(&mut queue).poll_next(&mut cx).is_pending());
    assert_eq!((queue.running(), queue.len()), (1, 2));
    let mut queue = queue.order(Yield::InCompletionOrder);
    gate.open();
    let mut out = Vec::new();
    for _ in 0..10 {
        match Pin::new(&mut queue).poll_next(&mut cx) {
            Poll::Ready(Some(n)) => out.push(n),
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    out.sort_unstable();
    assert_eq!(out, [0, 1], "len {} left", queue.len());
    assert!(queue.is_empty());
}

/// The reverse change (completion to submission order) with results
/// already batched for completion order: nothing is lost or repeated.
#[test]
fn changing_a_live_queue_to_submission_order_loses_no_result() {
    let mut queue = TaskQueue::<Boxed>::new()
        .concurrency(3)
        .order(Yield::InCompletionOrder);
    for n in 0..3 {
        queue.push(Box::pin(async move { n })).unwrap();
    }
    let gate = support::Gate::new();
    let wait = gate.wait();
    queue
        .push(Box::pin(async move {
            wait.await;
            3
        }))
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    if let Poll::Ready(Some(n)) = Pin::new(&mut queue).poll_next(&mut cx) {
        out.push(n);
    }
    let mut queue = queue.order(Yield::InSubmissionOrder);
    gate.open();
    for _ in 0..20 {
        match Pin::new(&mut queue).poll_next(&mut cx) {
            Poll::Ready(Some(n)) => out.push(n),
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    out.sort_unstable();
    assert_eq!(out, [0, 1, 2, 3]);
    assert!(queue.is_empty());
}

/// `stop_when` on a live completion-order queue whose last poll batched
/// finished results (no predicate then): the predicate must still see each
/// output before it is yielded — a rejection among them stops the queue.
#[test]
fn a_predicate_added_to_a_live_queue_examines_batched_results() {
    let mut queue = TaskQueue::<Boxed>::new()
        .concurrency(3)
        .order(Yield::InCompletionOrder);
    let gates: Vec<support::Gate> = (0..3).map(|_| support::Gate::new()).collect();
    for (n, gate) in gates.iter().enumerate() {
        let wait = gate.wait();
        queue
            .push(Box::pin(async move {
                wait.await;
                n as u32
            }))
            .unwrap();
    }
    queue.push(Box::pin(async { 3 })).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut queue).poll_next(&mut cx).is_pending());
    for gate in &gates {
        gate.open();
    }
    // One pass finishes 0, 1 and 2: 0 is yielded, 1 and 2 are batched.
    assert!(matches!(
        Pin::new(&mut queue).poll_next(&mut cx),
        Poll::Ready(Some(0))
    ));
    let mut queue = queue.stop_when(|n: &u32| *n == 1);
    let mut out = Vec::new();
    for _ in 0..10 {
        match Pin::new(&mut queue).poll_next(&mut cx) {
            Poll::Ready(Some(n)) => out.push(n),
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    assert!(queue.is_stopped(), "1 is a rejection; yielded {out:?}");
    assert_eq!(out, [1], "the rejection ends the stream (completion order)");
}

/// `mem::forget` of a task handed back by `cancel` and of a `Submitter`:
/// the task is leaked, never dropped (no double drop either), and the
/// queue, kept open by the forgotten submitter, is pending when empty
/// until `close` (documented: a submitter keeps the queue open).
#[cfg(feature = "alloc")]
#[test]
#[cfg_attr(miri, ignore = "leaks on purpose (mem::forget of heap-owning values)")]
fn forgotten_cancelled_task_and_submitter() {
    let mut queue = Box::pin(TaskQueue::<Probe>::new());
    let (a, a_life) = probe(0, Plan::default());
    let (b, b_life) = probe(1, Plan::default());
    let a = push(&queue, a);
    push(&queue, b);
    std::mem::forget(queue.cancel(a).unwrap());
    std::mem::forget(queue.submitter());
    let mut out = Vec::new();
    for _ in 0..5 {
        match poll(queue.as_mut()) {
            Ok(Poll::Ready(Some(o))) => out.push(o.id),
            Ok(Poll::Ready(None)) => panic!("a submitter lives (forgotten)"),
            _ => {}
        }
    }
    assert_eq!(out, [1]);
    assert!(queue.is_empty());
    queue.close();
    assert!(matches!(poll(queue.as_mut()), Ok(Poll::Ready(None))));
    drop(queue);
    b_life.assert_once();
    assert_eq!(a_life.task_drops.load(SeqCst), 0, "leaked, not dropped");
    assert_eq!(a_life.starts.load(SeqCst), 0);
}

// ------------------------------------------------------- hostile wakers

/// One case: the consumer's waker panics on its k-th clone, wake or drop.
/// A slow task pins the front of the window; between polls the queued
/// (and, with `alloc`, waiting) tasks are re-prioritised, cancelled and
/// pushed, and the slow task is released (its wake-up reaches the hostile
/// waker). One panic kills at most one task; nothing is lost, repeated or
/// started after its cancel; everything is dropped once; no waker leaks.
fn hostile_case(behaviour: support::Behaviour) {
    let case = format!("{behaviour:?}");
    let hostile = behaviour.hostile();
    let waker = hostile.waker();
    let mut queue = Box::pin(TaskQueue::<Probe>::with_capacity::<4>().concurrency(2));
    let mut lives = Vec::new();
    let mut fresh = |n: u32, plan: Plan| {
        let (task, life) = probe(n, plan);
        lives.push(life);
        task
    };
    let held = Plan {
        held: true,
        ..Plan::default()
    };
    push(&queue, fresh(0, held));
    // Busy (waking itself) for 4 polls: with 0 it fills the concurrency,
    // so nothing else starts before step 3 unless a panic kills one.
    push(
        &queue,
        fresh(
            1,
            Plan {
                pending: 4,
                ..Plan::default()
            },
        ),
    );
    // The others are busy for 2 polls: a started one holds its slot of
    // the concurrency for a while.
    let busy = Plan {
        pending: 2,
        ..Plan::default()
    };
    let two = push(&queue, fresh(2, busy));
    let three = push(&queue, fresh(3, busy));
    let beyond = cfg!(feature = "alloc");
    let four = beyond.then(|| push(&queue, fresh(4, busy)));
    let mut yielded = Vec::new();
    let mut pushed_late = false;
    for step in 0..60 {
        let polled = catch_unwind(AssertUnwindSafe(|| {
            queue.as_mut().poll_next(&mut Context::from_waker(&waker))
        }));
        match polled {
            Ok(Poll::Ready(Some(out))) => yielded.push(out.id),
            Ok(Poll::Ready(None)) => break,
            Ok(Poll::Pending) | Err(_) => {}
        }
        match step {
            0 => {
                let _ = queue.set_priority(three, i32::MAX);
                if let Some(four) = four {
                    let _ = queue.set_priority(four, 1);
                }
            }
            1 => assert!(queue.cancel(two).is_some(), "{case}: 2 started"),
            2 => {
                let released = catch_unwind(AssertUnwindSafe(|| lives[0].release()));
                let _ = released;
            }
            3 => {
                let (task, life) = probe(5, busy);
                lives.push(life);
                push_prio(&queue, task, i32::MIN);
                pushed_late = true;
            }
            _ => {}
        }
    }
    assert!(pushed_late);
    assert!(queue.is_empty(), "{case}: never ended, yielded {yielded:?}");
    let mut seen = yielded.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), yielded.len(), "{case}: repeated: {yielded:?}");
    // Whatever still holds the hostile waker may panic dropping it.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(queue)));
    let _ = catch_unwind(AssertUnwindSafe(|| drop(waker)));
    let mut died = 0;
    for life in &lives {
        life.assert_once();
        let id = life.id;
        if id == 2 {
            assert!(
                !life.started() && !yielded.contains(&2),
                "{case}: cancelled ran"
            );
        } else if !yielded.contains(&id) {
            assert!(life.started(), "{case}: {id} lost unstarted: {yielded:?}");
            died += 1;
        }
    }
    assert!(died <= 1, "{case}: {died} tasks died of one panic");
    assert!(hostile.panics() <= 1);
    assert_eq!(hostile.live(), 0, "{case}: wakers leaked");
}

#[test]
fn hostile_consumer_wakers_around_set_priority_cancel_and_a_pinned_window() {
    quiet_panics();
    for behaviour in support::Behaviour::panicking() {
        hostile_case(behaviour);
    }
}

/// The same in submission order: a result that finished while no
/// predicate was set and waits for an older task is yielded, in its turn,
/// without the predicate ever seeing it.
#[test]
fn a_predicate_added_to_a_live_queue_examines_results_waiting_for_their_turn() {
    let gate = support::Gate::new();
    let mut queue = TaskQueue::<Boxed>::new().concurrency(2);
    let wait = gate.wait();
    queue
        .push(Box::pin(async move {
            wait.await;
            0
        }))
        .unwrap();
    queue.push(Box::pin(async { 1 })).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    // 0 runs; 1 finished (no predicate yet) and waits for 0.
    assert!(Pin::new(&mut queue).poll_next(&mut cx).is_pending());
    let mut queue = queue.stop_when(|n: &u32| *n == 1);
    queue.push(Box::pin(async { 2 })).unwrap();
    gate.open();
    let mut out = Vec::new();
    for _ in 0..10 {
        match Pin::new(&mut queue).poll_next(&mut cx) {
            Poll::Ready(Some(n)) => out.push(n),
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    assert!(queue.is_stopped(), "1 is a rejection; yielded {out:?}");
    assert_eq!(out, [0, 1], "nothing after the rejection");
}

// --------------------------------------- wakers that call into the queue

thread_local! {
    /// The queue the re-entering wakers reach (a queue is `!Sync`, so it
    /// is shared on this thread only), the ids they pushed, and the lives
    /// of the probes they made.
    static SHARED: RefCell<Option<Rc<TaskQueue<Probe>>>> = const { RefCell::new(None) };
    static PUSHED: RefCell<Vec<TaskId>> = const { RefCell::new(Vec::new()) };
    static MADE: RefCell<Vec<Arc<Life>>> = const { RefCell::new(Vec::new()) };
}

fn shared(f: impl FnOnce(&TaskQueue<Probe>)) {
    let queue = SHARED.with(|q| q.borrow().clone());
    if let Some(queue) = queue {
        f(&queue);
    }
}

/// A waker whose `wake` pushes into the shared queue (a new probe, to the
/// front) and whose drop cancels the last probe it pushed (dropping it
/// re-entrantly) and re-prioritises `bump`.
struct Reentering {
    tag: u32,
    bump: TaskId,
}

impl std::task::Wake for Reentering {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        shared(|queue| {
            for n in 0..2 {
                let (task, life) = probe(200 + self.tag * 10 + n, Plan::default());
                MADE.with(|m| m.borrow_mut().push(life));
                let id = push_prio(queue, task, i32::MAX);
                PUSHED.with(|p| p.borrow_mut().push(id));
            }
        });
    }
}

impl Drop for Reentering {
    fn drop(&mut self) {
        shared(|queue| {
            let last = PUSHED.with(|p| p.borrow_mut().pop());
            if let Some(id) = last {
                let task = queue.cancel(id).expect("queued");
                drop(task);
                assert!(queue.cancel(id).is_none());
            }
            assert!(queue.set_priority(self.bump, 5));
        });
    }
}

/// A queued task holds a waker whose `wake` and drop call into the queue
/// (push, cancel, set_priority); the task is dropped by the caller of
/// `cancel` and by `clear`, outside the queue's state: the calls work,
/// `clear` also drops what they pushed, and everything is dropped once.
#[test]
fn waker_wake_and_drop_reenter_the_queue_from_cancel_and_clear() {
    let queue = Rc::new(TaskQueue::<Probe>::new());
    SHARED.with(|q| *q.borrow_mut() = Some(queue.clone()));
    let mut lives = Vec::new();
    let mut fresh = |n: u32| {
        let (task, life) = probe(n, Plan::default());
        lives.push(life);
        task
    };
    let bump = push(&queue, fresh(0));
    let with_waker = |mut task: Probe, tag: u32| {
        let waker = Waker::from(Arc::new(Reentering { tag, bump }));
        task.on_drop = Some(Box::new(move || {
            waker.wake_by_ref(); // pushes two
            drop(waker.clone()); // a clone: the waker lives on
            drop(waker); // the last: cancels one of the two
        }));
        task
    };
    let a = push(&queue, with_waker(fresh(1), 1));
    push(&queue, fresh(2));
    let task = queue.cancel(a).unwrap();
    drop(task);
    // 210 (MAX), 0 (5), 2; 211 was cancelled by the waker's drop.
    assert_eq!(queue.unstarted(), 3);
    push(&queue, with_waker(fresh(3), 2));
    // clear drops 3 first (its waker pushes 220, 221 and cancels 221),
    // then the four left.
    assert_eq!(queue.clear(), 5);
    assert!(queue.is_empty());
    push(&queue, fresh(4));
    SHARED.with(|q| *q.borrow_mut() = None);
    let mut queue = Box::pin(Rc::try_unwrap(queue).unwrap_or_else(|_| panic!("one owner")));
    let (order, panics) = run_to_end(queue.as_mut(), 10);
    assert_eq!((order, panics), (vec![4], 0));
    drop(queue);
    for life in lives.iter().chain(MADE.with(|m| m.borrow().clone()).iter()) {
        life.assert_once();
        assert!(!life.started() || life.id == 4);
    }
    assert_eq!(MADE.with(|m| m.borrow().len()), 4);
}
