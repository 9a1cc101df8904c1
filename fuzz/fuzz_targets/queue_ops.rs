//! Random sequences of push (with a priority and a per-task timeout; the
//! queue's default timeout changed between pushes) /
//! submit / set_priority / cancel / poll / `until(level)` / wake / pause /
//! resume / clear / close / time / drop operations on a `TaskQueue` with a
//! virtual-time timer (per-task timeout, rate limit),
//! with tasks that finish after a random number of polls,
//! reject, submit a follow-up task from inside, or panic: in `into_future`,
//! once in a poll, in their destructor (the task's, the future's or the
//! output's) or in `stop_when`; and with hostile wakers (the caller's waker
//! panics on its k-th clone, wake or drop, or drops a `Submitter` when
//! woken). Checked against a model: every task is started at most once and
//! ends exactly once (finished, cancelled while running, dropped unstarted,
//! or its `into_future` panicked), is never polled after it finished or
//! panicked, and its output is dropped exactly once; never more than `k`
//! run at once; every task that neither panicked nor was cut by a stop is
//! yielded, once (as `Err(TimedOut)` iff its future was dropped by its
//! timeout), and in start order when asked; pushed tasks start by
//! priority, FIFO among equals (a new priority puts a task behind its
//! equals); `set_priority` and `cancel` act exactly on the pushed tasks
//! not started yet (a cancelled task comes back unrun, with its id);
//! `until(level)` ends only at its level (or the queue's end); nothing
//! starts while paused; never more than `cap` starts in a rate-limit
//! window (it opens at a start, lasts `per`, and the first start at or
//! after its end opens the next); a clear drops every unstarted task
//! unrun; after a stop nothing starts and the stream ends with the
//! rejection; the queue always ends (closed, or its last submitter
//! dropped).
#![no_main]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::thread;

use arbitrary::Arbitrary;
use std::time::Duration;

use deferral::TaskQueue;
use deferral::queue::{Level, Options, PushError, Submitter, TaskId, TimedOut, Yield};
use futures::Stream;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Fault {
    None,
    /// `into_future` panics.
    Convert,
    /// The first poll panics.
    Poll,
    /// The unstarted task's destructor panics.
    TaskDrop,
    /// The future's destructor panics.
    FutureDrop,
    /// The output's destructor panics.
    OutputDrop,
    /// `stop_when` panics on the output.
    StopWhen,
}

#[derive(Debug, Arbitrary)]
struct Spec {
    polls: u8,
    rejects: bool,
    fault: Fault,
    /// Submits a follow-up task when it finishes.
    follow_up: bool,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Call {
    Clone,
    Wake,
    WakeByRef,
    Drop,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum WakerPlan {
    Noop,
    /// The k-th (1..=3) call of this kind panics.
    Panics(Call, u8),
    /// The first wake drops a `Submitter` clone.
    DropsSubmitter,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Push(Spec),
    Submit(Spec),
    /// Push with a priority in -2..=2 and a timeout of its own (0: the
    /// queue's, 1: none, else that many ticks).
    PushWith(Spec, u8, u8),
    /// Gives the n-th pushed task (modulo their number) a priority in
    /// -2..=2.
    SetPriority(u8, u8),
    /// Cancels the n-th pushed task (modulo their number).
    Cancel(u8),
    /// Polls `until(level)` (`l % 4`: 0 idle, 1 empty, else below
    /// `l / 4 % 4`) up to `1 + n % 8` times.
    Until(u8, u8),
    Pause,
    Resume,
    /// Drops every unstarted task.
    Clear,
    /// Advances the virtual clock by this many ticks.
    Advance(u8),
    /// Polls with a fresh waker following the plan.
    Poll(WakerPlan),
    /// Wakes the stored waker of one task.
    Wake(u8),
    WakeAll,
    Drop,
    /// Changes the queue's default timeout for later pushes (0: none, else
    /// that many ticks modulo 16).
    SetTimeout(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    completion_order: bool,
    stop: bool,
    concurrency: u8,
    /// Ticks of each task's timeout (0: none that fires).
    timeout: u8,
    /// At most `1 + cap % 3` starts per `per` ticks (`per` 0: no limit).
    rate: (u8, u8),
    /// How the run ends: `close()`, or dropping every submitter.
    end_by_close: bool,
    ops: Vec<Op>,
}

const INJECTED: &str = "fuzz-injected panic";

/// Panics with the injected message, unless a panic is already unwinding
/// (a second panic would abort, which no collection can prevent).
fn inject() {
    if !thread::panicking() {
        panic!("{INJECTED}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Finished,
    Cancelled,
    DroppedUnstarted,
    ConvertPanicked,
}

#[derive(Default)]
struct Record {
    started: usize,
    ends: Vec<End>,
    /// A poll of its future panicked (injected, or a waker's panic).
    poll_panicked: bool,
    /// `stop_when` panicked on its output: not a rejection.
    stop_when_panicked: bool,
    output_drops: usize,
    /// Its priority, the last one given.
    priority: i32,
    /// Its order among its priority at its start (see `Shared::queued`).
    order: u64,
}

struct Shared {
    records: Mutex<BTreeMap<usize, Record>>,
    next_id: AtomicUsize,
    running: AtomicUsize,
    limit: usize,
    wakers: Mutex<BTreeMap<usize, Waker>>,
    /// The queue is paused: nothing may start.
    paused: AtomicBool,
    /// Pushed (not submitted) tasks not started, not dropped: id →
    /// (priority, order). A start must not skip one of a higher priority,
    /// or one of the same with a lower order (pushed, or given its
    /// priority, earlier).
    queued: Mutex<BTreeMap<usize, (i32, u64)>>,
    /// The next order number (see `queued`).
    order: AtomicUsize,
    /// The virtual clock, and the time of every start, in order (for the
    /// rate limit: at most `cap` starts in a window of `per` ticks that
    /// opens at a start and closes `per` ticks later).
    clock: Clock,
    starts: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn with<R>(&self, id: usize, f: impl FnOnce(&mut Record) -> R) -> R {
        f(lock(&self.records).entry(id).or_default())
    }

    fn end(&self, id: usize, end: End) {
        self.with(id, |r| r.ends.push(end));
    }

    /// Stores `waker` for `id`; the old one is dropped outside the lock.
    fn store_waker(&self, id: usize, waker: Option<Waker>) {
        let old = match waker {
            Some(w) => lock(&self.wakers).insert(id, w),
            None => lock(&self.wakers).remove(&id),
        };
        drop(old);
    }

    fn task(self: &Arc<Self>, spec: &Spec, submit: &Submitter<Task>) -> Task {
        self.task_with(spec, submit, 0)
    }

    fn task_with(self: &Arc<Self>, spec: &Spec, submit: &Submitter<Task>, priority: i32) -> Task {
        let id = self.next_id.fetch_add(1, SeqCst);
        lock(&self.records).insert(
            id,
            Record {
                priority,
                ..Record::default()
            },
        );
        Task {
            id,
            polls: spec.polls % 8,
            rejects: spec.rejects,
            fault: spec.fault,
            follow_up: spec.follow_up.then(|| submit.clone()),
            shared: self.clone(),
            converted: false,
        }
    }
}

struct Task {
    id: usize,
    polls: u8,
    rejects: bool,
    fault: Fault,
    follow_up: Option<Submitter<Task>>,
    shared: Arc<Shared>,
    converted: bool,
}

impl Drop for Task {
    fn drop(&mut self) {
        if !self.converted {
            lock(&self.shared.queued).remove(&self.id);
            self.shared.end(self.id, End::DroppedUnstarted);
            if matches!(self.fault, Fault::TaskDrop) {
                inject();
            }
        }
    }
}

impl IntoFuture for Task {
    type Output = Result<Out, Out>;
    type IntoFuture = Running;
    fn into_future(mut self) -> Running {
        self.converted = true;
        let shared = self.shared.clone();
        assert!(
            !shared.paused.load(SeqCst),
            "task {} started while paused",
            self.id
        );
        {
            // Priority order among the pushed tasks waiting in the queue.
            let mut queued = lock(&shared.queued);
            if let Some((mine, my_order)) = queued.remove(&self.id) {
                for (&other, &(p, order)) in queued.iter() {
                    assert!(
                        p < mine || (p == mine && order > my_order),
                        "task {} (priority {mine}) started before task {other} (priority {p})",
                        self.id
                    );
                }
                self.shared.with(self.id, |r| r.order = my_order);
            }
        }
        self.shared.with(self.id, |r| r.started += 1);
        let now = lock(&shared.clock.0).now;
        lock(&shared.starts).push(now);
        if matches!(self.fault, Fault::Convert) {
            shared.end(self.id, End::ConvertPanicked);
            panic!("{INJECTED}");
        }
        let now = shared.running.fetch_add(1, SeqCst) + 1;
        assert!(
            now <= shared.limit,
            "{now} tasks run at once, limit {}",
            shared.limit
        );
        Running {
            task: self,
            done: false,
            poisoned: false,
        }
    }
}

struct Running {
    task: Task,
    done: bool,
    /// A poll unwound: the queue must never poll this again.
    poisoned: bool,
}

impl Future for Running {
    type Output = Result<Out, Out>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "a finished task was polled again");
        assert!(
            !self.poisoned,
            "a task was polled again after its poll panicked"
        );
        let id = self.task.id;
        let shared = self.task.shared.clone();
        // Poisoned unless this poll returns (a waker may panic in it too).
        self.poisoned = true;
        shared.with(id, |r| r.poll_panicked = true);
        // The clone (foreign code with a hostile waker) outside the lock.
        let waker = cx.waker().clone();
        shared.store_waker(id, Some(waker));
        if matches!(self.task.fault, Fault::Poll) {
            panic!("{INJECTED}");
        }
        if self.task.polls > 0 {
            self.task.polls -= 1;
            self.poisoned = false;
            shared.with(id, |r| r.poll_panicked = false);
            return Poll::Pending;
        }
        // Still poisoned: the submission wakes the queue, whose waker may
        // panic (the child is submitted all the same).
        if let Some(submit) = self.task.follow_up.take() {
            let spec = Spec {
                polls: id as u8,
                rejects: false,
                fault: Fault::None,
                follow_up: false,
            };
            let child = shared.task(&spec, &submit);
            match submit.submit(child) {
                Ok(()) => {}
                Err(PushError::Closed(child) | PushError::Stopped(child)) => drop(child),
                Err(PushError::Full(_)) => panic!("a submitter is unbounded"),
            }
        }
        self.poisoned = false;
        shared.with(id, |r| r.poll_panicked = false);
        self.done = true;
        shared.running.fetch_sub(1, SeqCst);
        shared.store_waker(id, None);
        shared.end(id, End::Finished);
        let out = Out {
            id,
            fault: self.task.fault,
            shared: shared.clone(),
        };
        Poll::Ready(if self.task.rejects { Err(out) } else { Ok(out) })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let shared = &self.task.shared;
        if !self.done {
            shared.running.fetch_sub(1, SeqCst);
            shared.end(self.task.id, End::Cancelled);
            shared.store_waker(self.task.id, None);
        }
        if matches!(self.task.fault, Fault::FutureDrop) {
            inject();
        }
    }
}

struct Out {
    id: usize,
    fault: Fault,
    shared: Arc<Shared>,
}

impl Drop for Out {
    fn drop(&mut self) {
        self.shared.with(self.id, |r| r.output_drops += 1);
        if matches!(self.fault, Fault::OutputDrop) {
            inject();
        }
    }
}

fn stop_when(out: &Result<Out, Out>) -> bool {
    let o = match out {
        Ok(o) | Err(o) => o,
    };
    if matches!(o.fault, Fault::StopWhen) {
        o.shared.with(o.id, |r| r.stop_when_panicked = true);
        panic!("{INJECTED}");
    }
    out.is_err()
}

// ------------------------------------------------------- a hostile waker

/// Submitter clones for hostile wakers to drop. A waker holds them
/// weakly: a waker that owned a `Submitter` would own the inbox that
/// stores the waker (a cycle, leaked if the waker is never dropped).
type Victims = Mutex<Vec<Submitter<Task>>>;

struct Hostile {
    plan: WakerPlan,
    calls: [AtomicUsize; 4],
    victims: Weak<Victims>,
}

impl Hostile {
    fn record(&self, call: Call) {
        let n = self.calls[call as usize].fetch_add(1, SeqCst) + 1;
        match self.plan {
            WakerPlan::Panics(c, k) if c as usize == call as usize && n == 1 + k as usize % 3 => {
                inject()
            }
            WakerPlan::DropsSubmitter if matches!(call, Call::Wake | Call::WakeByRef) => {
                if let Some(victims) = self.victims.upgrade() {
                    let victim = lock(&victims).pop();
                    drop(victim);
                }
            }
            _ => {}
        }
    }

    fn waker(self: &Arc<Self>) -> Waker {
        let ptr = Arc::into_raw(self.clone()).cast::<()>();
        // SAFETY: `ptr` is an `Arc<Hostile>` from `into_raw`; the vtable
        // treats it as exactly that.
        unsafe { Waker::from_raw(RawWaker::new(ptr, &VTABLE)) }
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_w, wake_w, wake_by_ref_w, drop_w);

unsafe fn clone_w(ptr: *const ()) -> RawWaker {
    // SAFETY: the data of a live waker.
    let h = unsafe { &*ptr.cast::<Hostile>() };
    h.record(Call::Clone);
    // SAFETY: the new waker owns one more count (only if no panic above).
    unsafe { Arc::increment_strong_count(ptr.cast::<Hostile>()) };
    RawWaker::new(ptr, &VTABLE)
}

unsafe fn wake_w(ptr: *const ()) {
    // SAFETY: a by-value wake consumes the waker's count, panic or not.
    let h = unsafe { Arc::from_raw(ptr.cast::<Hostile>()) };
    h.record(Call::Wake);
}

unsafe fn wake_by_ref_w(ptr: *const ()) {
    // SAFETY: the data of a live waker.
    let h = unsafe { &*ptr.cast::<Hostile>() };
    h.record(Call::WakeByRef);
}

unsafe fn drop_w(ptr: *const ()) {
    // SAFETY: the waker being dropped owns one count.
    let h = unsafe { Arc::from_raw(ptr.cast::<Hostile>()) };
    h.record(Call::Drop);
}

// ----------------------------------------------------------------- model

struct Model {
    order: Yield,
    stop: bool,
    /// Yielded ids, in order.
    yielded: Vec<usize>,
    /// The stream ended after a stop.
    ended_on_stop: bool,
    /// A rejection was yielded (with `stop`).
    rejected: bool,
    pushed: Vec<usize>,
    /// `Err(TimedOut)` yielded.
    timeouts: usize,
}

type Item = Result<Result<Out, Out>, TimedOut>;

// ------------------------------------------------------------ virtual time

#[derive(Default)]
struct Time {
    now: u64,
    timers: Vec<(u64, Waker)>,
}

#[derive(Clone, Default)]
struct Clock(Arc<Mutex<Time>>);

struct Sleep {
    clock: Clock,
    deadline: u64,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Our own wakers only (slot wakers, or the caller's without
        // per-slot ones — which may be hostile: clone outside the lock).
        if lock(&self.clock.0).now >= self.deadline {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        lock(&self.clock.0).timers.push((self.deadline, waker));
        Poll::Pending
    }
}

impl Clock {
    /// Advances by `ticks`, waking the expired timers (outside the lock).
    fn advance(&self, ticks: u64) {
        let expired: Vec<Waker> = {
            let mut time = lock(&self.0);
            // Saturating: a timeout that never fires is a deadline far away.
            time.now = time.now.saturating_add(ticks);
            let now = time.now;
            let (expired, kept) = std::mem::take(&mut time.timers)
                .into_iter()
                .partition(|(d, _)| *d <= now);
            time.timers = kept;
            expired.into_iter().map(|(_, w)| w).collect()
        };
        for w in expired {
            wake(w);
        }
    }

    /// Ticks to the next deadline (1 if none).
    fn to_next(&self) -> u64 {
        let time = lock(&self.0);
        time.timers
            .iter()
            .map(|(d, _)| d.saturating_sub(time.now))
            .min()
            .unwrap_or(1)
            .max(1)
    }
}

fn poll<Q: Stream<Item = Item> + ?Sized>(
    queue: Pin<&mut Q>,
    model: &mut Model,
    shared: &Shared,
    waker: &Waker,
) -> Option<Poll<Option<()>>> {
    poll_stream(queue, model, shared, waker, true)
}

/// Polls the queue or an `until` batch of it (`is_queue: false`: its end
/// is not the queue's) once; `None` if it panicked.
fn poll_stream<Q: Stream<Item = Item> + ?Sized>(
    queue: Pin<&mut Q>,
    model: &mut Model,
    shared: &Shared,
    waker: &Waker,
    is_queue: bool,
) -> Option<Poll<Option<()>>> {
    let mut cx = Context::from_waker(waker);
    let mut queue = queue;
    let result = catch_unwind(AssertUnwindSafe(|| queue.as_mut().poll_next(&mut cx)));
    let Ok(out) = result else {
        return None; // an injected panic: the queue must stay sound
    };
    Some(match out {
        Poll::Pending => Poll::Pending,
        Poll::Ready(None) => {
            if model.rejected && is_queue {
                model.ended_on_stop = true;
            }
            Poll::Ready(None)
        }
        Poll::Ready(Some(Err(TimedOut))) => {
            // Which task timed out is not said; its future was dropped
            // (`Cancelled`). A timeout is a rejection when stopping.
            assert!(
                !model.ended_on_stop && !model.rejected,
                "a result after the stop"
            );
            model.timeouts += 1;
            if model.stop {
                model.rejected = true;
            }
            Poll::Ready(Some(()))
        }
        Poll::Ready(Some(Ok(result))) => {
            assert!(
                !model.ended_on_stop,
                "a result after the stream ended on a stop"
            );
            assert!(
                !model.rejected,
                "a result after the rejection that stopped the queue"
            );
            let id = match &result {
                Ok(out) => out.id,
                Err(out) => {
                    let examined = !shared.with(out.id, |r| r.stop_when_panicked);
                    if model.stop && examined {
                        model.rejected = true;
                    }
                    out.id
                }
            };
            assert_eq!(
                shared.with(id, |r| r.ends.clone()),
                [End::Finished],
                "task {id} yielded without finishing"
            );
            assert!(!model.yielded.contains(&id), "task {id} yielded twice");
            model.yielded.push(id);
            let _ = catch_unwind(AssertUnwindSafe(|| drop(result)));
            Poll::Ready(Some(()))
        }
    })
}

fn wake(waker: Waker) {
    let _ = catch_unwind(AssertUnwindSafe(|| waker.wake()));
}

fn wakers(shared: &Shared) -> Vec<Waker> {
    let all = lock(&shared.wakers);
    // Our own wakers (slot wakers, the noop waker) clone without panicking;
    // a hostile caller's waker (without per-slot wakers) may not.
    all.values()
        .filter_map(|w| catch_unwind(AssertUnwindSafe(|| w.clone())).ok())
        .collect()
}

fn run(input: Input) {
    let limit = 1 + input.concurrency as usize % 5; // 5 > the window of 4
    let order = if input.completion_order {
        Yield::InCompletionOrder
    } else {
        Yield::InSubmissionOrder
    };
    let clock = Clock::default();
    let shared = Arc::new(Shared {
        records: Mutex::new(BTreeMap::new()),
        next_id: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        limit: limit.min(4),
        wakers: Mutex::new(BTreeMap::new()),
        paused: AtomicBool::new(false),
        queued: Mutex::new(BTreeMap::new()),
        order: AtomicUsize::new(0),
        clock: clock.clone(),
        starts: Mutex::new(Vec::new()),
    });
    let mut model = Model {
        order,
        stop: input.stop,
        yielded: Vec::new(),
        ended_on_stop: false,
        rejected: false,
        pushed: Vec::new(),
        timeouts: 0,
    };
    let timer = {
        let clock = clock.clone();
        move |d: Duration| Sleep {
            deadline: lock(&clock.0).now.saturating_add(d.as_millis() as u64),
            clock: clock.clone(),
        }
    };
    let timeout = match input.timeout {
        0 => u64::MAX / 4, // never fires
        t => u64::from(t % 16),
    };
    let mut queue = TaskQueue::<Task>::with_capacity::<4>()
        .concurrency(limit)
        .order(order)
        .timer(timer)
        .timeout(Duration::from_millis(timeout));
    if input.rate.1 > 0 {
        let (cap, per) = input.rate;
        queue = queue.rate_limit(
            1 + cap as usize % 3,
            Duration::from_millis(u64::from(per % 8)),
        );
    }
    if input.stop {
        queue = queue.stop_when(stop_when as fn(&Result<Out, Out>) -> bool);
    }
    let mut queue = Some(Box::pin(queue));
    let mut submit = Some(queue.as_mut().unwrap().as_mut().submitter());
    let victims: Arc<Victims> = Arc::new(Mutex::new(Vec::new()));
    // Pushed tasks: (our id, the queue's `TaskId`).
    let mut ids: Vec<(usize, TaskId)> = Vec::new();
    for op in input.ops.iter().take(256) {
        let Some(q) = queue.as_mut() else { break };
        let sub = submit.as_ref().expect("kept until the end");
        match op {
            Op::Push(spec) | Op::PushWith(spec, ..) => {
                let mut options = Options::new();
                let mut priority = 0;
                if let Op::PushWith(_, p, t) = op {
                    priority = i32::from(*p % 5) - 2;
                    options = options.priority(priority);
                    match t {
                        0 => {}
                        1 => options = options.timeout(None),
                        t => options = options.timeout(Duration::from_millis(u64::from(t % 16))),
                    }
                }
                let task = shared.task_with(spec, sub, priority);
                let id = task.id;
                // In the model first (the push runs no foreign code); a
                // refused task's drop takes it out again.
                let order = shared.order.fetch_add(1, SeqCst) as u64;
                lock(&shared.queued).insert(id, (priority, order));
                match q.push_with(task, options) {
                    Ok(task_id) => {
                        model.pushed.push(id);
                        ids.push((id, task_id));
                    }
                    Err(PushError::Stopped(task)) => {
                        assert!(q.is_stopped());
                        let _ = catch_unwind(AssertUnwindSafe(|| drop(task)));
                    }
                    Err(e) => panic!("unexpected refusal {e}"),
                }
            }
            Op::SetPriority(n, p) => {
                let Some(&(id, task_id)) = ids.get(*n as usize % ids.len().max(1)) else {
                    continue;
                };
                let priority = i32::from(*p % 5) - 2;
                let queued = lock(&shared.queued).contains_key(&id);
                let order = shared.order.fetch_add(1, SeqCst) as u64;
                // Runs no foreign code: it cannot panic.
                let changed = q.set_priority(task_id, priority);
                assert_eq!(changed, queued, "set_priority of task {id}");
                if changed {
                    lock(&shared.queued).insert(id, (priority, order));
                    shared.with(id, |r| r.priority = priority);
                }
            }
            Op::Cancel(n) => {
                let Some(&(id, task_id)) = ids.get(*n as usize % ids.len().max(1)) else {
                    continue;
                };
                let queued = lock(&shared.queued).contains_key(&id);
                let cancelled = q.cancel(task_id);
                assert_eq!(cancelled.is_some(), queued, "cancel of task {id}");
                if let Some(task) = cancelled {
                    assert_eq!(task.id, id, "cancel handed back another task");
                    assert!(!task.converted, "a cancelled task was started");
                    // Its destructor may panic (planned): it ends unstarted.
                    let _ = catch_unwind(AssertUnwindSafe(|| drop(task)));
                    assert!(!lock(&shared.queued).contains_key(&id));
                }
            }
            Op::Until(level, polls) => {
                let level = match level % 4 {
                    0 => Level::Idle,
                    1 => Level::Empty,
                    _ => Level::Below(usize::from(level / 4 % 4)),
                };
                let mut until = q.as_mut().until(level);
                let mut ended = false;
                for _ in 0..1 + polls % 8 {
                    // A panic inside: the batch is abandoned (the queue
                    // stays usable, checked by the ops that follow).
                    match poll_stream(
                        Pin::new(&mut until),
                        &mut model,
                        &shared,
                        Waker::noop(),
                        false,
                    ) {
                        Some(Poll::Ready(None)) => {
                            ended = true;
                            break;
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                drop(until);
                if ended {
                    let reached = match level {
                        Level::Idle => q.is_empty(),
                        Level::Empty => q.unstarted() == 0,
                        Level::Below(n) => q.unstarted() < n,
                    };
                    // Or the queue's own stream ended (it is empty then;
                    // `Below(0)` is never reached).
                    assert!(
                        reached || q.is_empty(),
                        "until({level:?}) ended before its level"
                    );
                }
            }
            Op::Submit(spec) => {
                let task = shared.task(spec, sub);
                // The queue's waker may panic: the task is submitted anyway.
                match catch_unwind(AssertUnwindSafe(|| sub.submit(task))) {
                    Ok(Err(refused)) => {
                        assert!(q.is_stopped(), "refused {refused}");
                        let _ = catch_unwind(AssertUnwindSafe(|| drop(refused)));
                    }
                    Ok(Ok(())) | Err(_) => {}
                }
            }
            Op::Poll(plan) => {
                lock(&victims).push(sub.clone());
                let hostile = Arc::new(Hostile {
                    plan: *plan,
                    calls: Default::default(),
                    victims: Arc::downgrade(&victims),
                });
                let waker = match plan {
                    WakerPlan::Noop => Waker::noop().clone(),
                    _ => hostile.waker(),
                };
                let stopped_before = q.is_stopped();
                poll(q.as_mut(), &mut model, &shared, &waker);
                if stopped_before {
                    assert!(q.is_stopped(), "a stopped queue stays stopped");
                }
                // The counts are right whatever happened.
                assert!(q.running() <= shared.running.load(SeqCst));
                let _ = catch_unwind(AssertUnwindSafe(|| drop(waker)));
            }
            Op::Wake(i) => {
                let waker = wakers(&shared).into_iter().nth(*i as usize);
                if let Some(w) = waker {
                    wake(w);
                }
            }
            Op::WakeAll => wakers(&shared).into_iter().for_each(wake),
            Op::Pause => {
                q.as_mut().pause();
                shared.paused.store(true, SeqCst);
            }
            Op::Resume => {
                q.as_mut().resume();
                shared.paused.store(false, SeqCst);
            }
            Op::Clear => {
                // A task's destructor may panic: the next clear goes on.
                if catch_unwind(AssertUnwindSafe(|| q.as_mut().clear())).is_ok() {
                    assert_eq!(q.unstarted(), 0, "clear left unstarted tasks");
                }
            }
            Op::Advance(ticks) => clock.advance(u64::from(*ticks % 8)),
            Op::Drop => {
                let q = queue.take();
                let _ = catch_unwind(AssertUnwindSafe(|| drop(q)));
            }
            Op::SetTimeout(t) => match t {
                0 => q.set_timeout(None),
                t => q.set_timeout(Duration::from_millis(u64::from(t % 16))),
            },
        }
    }

    if let Some(mut q) = queue.take() {
        q.as_mut().resume();
        shared.paused.store(false, SeqCst);
        // The end of the work: closed, or every submitter dropped (the
        // follow-up tasks' own clones go when those tasks end).
        if input.end_by_close {
            q.as_mut().close();
        } else {
            let _ = catch_unwind(AssertUnwindSafe(|| drop(submit.take())));
            // Taken out first: a dropped submitter may wake a hostile
            // waker that locks `victims` itself.
            let taken = std::mem::take(&mut *lock(&victims));
            let _ = catch_unwind(AssertUnwindSafe(|| drop(taken)));
        }
        // Run to the end: wake everything and let time pass between polls
        // (a caught panic loses at most the panicking task's wake-up).
        let mut finished = false;
        for _ in 0..10_000 {
            if let Some(Poll::Ready(None)) = poll(q.as_mut(), &mut model, &shared, Waker::noop()) {
                finished = true;
                break;
            }
            wakers(&shared).into_iter().for_each(wake);
            clock.advance(clock.to_next());
        }
        assert!(finished, "the queue never ended");
        assert!(q.is_empty());
        assert_eq!(q.running(), 0);
        assert_eq!(shared.running.load(SeqCst), 0);
        if !input.stop {
            // Keep going: every task pushed that did not panic was yielded
            // (or timed out: its future was dropped, `Cancelled`).
            let records = lock(&shared.records);
            for id in &model.pushed {
                let r = &records[id];
                let panicked = r.ends == [End::ConvertPanicked] || r.poll_panicked;
                let gone =
                    panicked || r.ends == [End::Cancelled] || r.ends == [End::DroppedUnstarted];
                assert_eq!(model.yielded.contains(id), !gone, "task {id}: {:?}", r.ends);
            }
            let timed_out = records
                .values()
                .filter(|r| r.ends == [End::Cancelled] && !r.poll_panicked)
                .count();
            assert_eq!(timed_out, model.timeouts, "timeouts yielded");
        }
        let _ = catch_unwind(AssertUnwindSafe(|| drop(q)));
    }
    if let Some(submit) = &submit {
        assert!(submit.is_closed());
    }

    // Start order: the pushed tasks come out in start order, which is
    // push order among equal priorities.
    if model.order == Yield::InSubmissionOrder {
        let records = lock(&shared.records);
        for priority in -2..=2 {
            let orders: Vec<u64> = model
                .yielded
                .iter()
                .filter(|id| model.pushed.contains(id) && records[*id].priority == priority)
                .map(|id| records[id].order)
                .collect();
            let mut sorted = orders.clone();
            sorted.sort();
            assert_eq!(orders, sorted, "submission order broken");
        }
    }

    // Every task created ended exactly once; started iff it did not end
    // unstarted; never started twice; every output dropped exactly once.
    // The last handles may drop the inbox, and with it a hostile waker.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(submit)));
    let _ = catch_unwind(AssertUnwindSafe(|| drop(victims)));
    // Timers and slot wakers may be the last owners of a hostile waker.
    let timers = std::mem::take(&mut lock(&clock.0).timers);
    let _ = catch_unwind(AssertUnwindSafe(|| drop(timers)));
    let left = std::mem::take(&mut *lock(&shared.wakers));
    for waker in left.into_values() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(waker)));
    }
    assert_eq!(shared.running.load(SeqCst), 0);
    // The rate limit: a window opens at a start and lasts `per` ticks; at
    // most `cap` starts fall in it; the first start at or after its end
    // opens the next one.
    if input.rate.1 > 0 {
        let (cap, per) = (1 + input.rate.0 as usize % 3, u64::from(input.rate.1 % 8));
        let starts = lock(&shared.starts);
        let mut window: Option<(u64, usize)> = None;
        for &t in starts.iter() {
            match &mut window {
                Some((opened, n)) if t < opened.saturating_add(per) => {
                    *n += 1;
                    assert!(
                        *n <= cap,
                        "{n} starts in the window opened at {opened} (cap {cap} per {per}): {starts:?}"
                    );
                }
                _ => window = Some((t, 1)),
            }
        }
    }
    let records = lock(&shared.records);
    for (id, record) in records.iter() {
        assert_eq!(record.ends.len(), 1, "task {id} ended {:?}", record.ends);
        assert!(record.started <= 1, "task {id} started twice");
        let unstarted = record.ends[0] == End::DroppedUnstarted;
        assert_eq!(
            record.started == 0,
            unstarted,
            "task {id}: {:?}",
            record.ends
        );
        let finished = record.ends[0] == End::Finished;
        assert_eq!(
            record.output_drops,
            usize::from(finished),
            "task {id}: output drops"
        );
        if !finished {
            assert!(
                !model.yielded.contains(id),
                "task {id} yielded without finishing"
            );
        }
    }
}

fuzz_target!(|input: Input| {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if msg != INJECTED {
                eprintln!("{info}");
                std::process::abort();
            }
        }));
    });
    run(input);
});
