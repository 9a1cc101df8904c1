//! `TaskQueue` under panics and hostile wakers.
//!
//! What the queue promises (see "Panics" in the `TaskQueue` docs): a panic
//! from a task (`into_future`, `poll`), from a destructor (a task's, a
//! future's, an output's), from `stop_when` or from a waker propagates out
//! of the call that ran it; the queue stays consistent and usable. A task
//! whose `into_future` or `poll` panicked is gone: it is never polled again,
//! its future is dropped (at the latest by the next poll), and it yields
//! nothing. Every other task keeps going and its output is yielded. Every
//! task, future and output is dropped exactly once.
//!
//! The first four tests are the findings of the review of `bf5d9a4`; each
//! names how it failed on that code.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Once};
use std::task::{Context, Poll, Waker};

use deferral::TaskQueue;
use deferral::queue::{NoTimer, OnRejection, Yield};
use futures::Stream;
#[cfg(feature = "alloc")]
use support::Call;
use support::drops::{PanicOnDrop, Tracked};
use support::{Behaviour, DropCounter, Gate, Hostile};

const INJECTED: &str = "injected panic";

/// Keeps the expected panics (ours, the hostile wakers', `PanicOnDrop`'s)
/// out of the test output; any other panic is reported as usual.
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
            let expected = msg.starts_with(INJECTED)
                || msg.starts_with("hostile waker")
                || msg == "PanicOnDrop dropped";
            if !expected {
                default(info);
            }
        }));
    });
}

// ------------------------------------------------------------------ tasks

/// What a task does wrong, and how it runs.
#[derive(Clone, Default)]
struct Plan {
    /// `into_future` panics.
    convert_panics: bool,
    /// The first poll panics.
    poll_panics: bool,
    /// Pending polls (each waking its own waker first) before finishing.
    yields: usize,
    /// Waits for this gate before finishing.
    gate: Option<Gate>,
    /// The task (unstarted) panics when dropped.
    task_drop_panics: bool,
    /// The future panics when dropped.
    future_drop_panics: bool,
    /// The output panics when dropped.
    output_drop_panics: bool,
    rejects: bool,
}

/// Everything that happened to one task.
#[derive(Default)]
struct Life {
    id: usize,
    /// Drops of the task itself (unstarted, or consumed by `into_future`).
    tasks: DropCounter,
    futures: DropCounter,
    outputs: DropCounter,
    conversions: AtomicUsize,
    futures_made: AtomicUsize,
    outputs_made: AtomicUsize,
    /// Polls of a future that had finished or panicked.
    late_polls: AtomicUsize,
    /// A poll of its future panicked (planned, or a waker panicked in it).
    poll_panicked: AtomicBool,
    /// Its `into_future` panics (planned).
    convert_panics: bool,
}

impl Life {
    /// Exactly-once drops: call when the queue and every output are gone.
    fn assert_dropped_once(&self) {
        self.assert_dropped_once_in("");
    }

    fn assert_dropped_once_in(&self, case: &str) {
        let id = format!("{} ({case})", self.id);
        assert_eq!(self.tasks.get(), 1, "task {id}: task drops");
        assert!(
            self.conversions.load(SeqCst) <= 1,
            "task {id} started twice"
        );
        let futures = self.futures_made.load(SeqCst);
        assert_eq!(self.futures.get(), futures, "task {id}: future drops");
        let outputs = self.outputs_made.load(SeqCst);
        assert_eq!(self.outputs.get(), outputs, "task {id}: output drops");
        assert_eq!(
            self.late_polls.load(SeqCst),
            0,
            "task {id} polled after its end"
        );
    }

    fn started(&self) -> bool {
        self.conversions.load(SeqCst) == 1
    }

    /// Started, and neither `into_future` nor a poll panicked.
    fn survived(&self) -> bool {
        self.started() && !self.convert_panics && !self.poll_panicked.load(SeqCst)
    }
}

enum Dropper {
    Quiet(#[allow(dead_code)] Tracked),
    Loud(#[allow(dead_code)] PanicOnDrop),
}

fn dropper(counter: &DropCounter, panics: bool) -> Dropper {
    if panics {
        Dropper::Loud(counter.panicking())
    } else {
        Dropper::Quiet(counter.tracked())
    }
}

struct Task {
    life: Arc<Life>,
    plan: Plan,
    _drop: Dropper,
}

impl Task {
    fn new(id: usize, plan: Plan) -> (Task, Arc<Life>) {
        let life = Arc::new(Life {
            id,
            convert_panics: plan.convert_panics,
            ..Life::default()
        });
        let task = Task {
            _drop: dropper(&life.tasks, plan.task_drop_panics),
            life: life.clone(),
            plan,
        };
        (task, life)
    }
}

impl IntoFuture for Task {
    type Output = Out;
    type IntoFuture = Fut;
    fn into_future(self) -> Fut {
        self.life.conversions.fetch_add(1, SeqCst);
        if self.plan.convert_panics {
            panic!("{INJECTED}: into_future of task {}", self.life.id);
        }
        self.life.futures_made.fetch_add(1, SeqCst);
        Fut {
            _drop: dropper(&self.life.futures, self.plan.future_drop_panics),
            life: self.life.clone(),
            yields: self.plan.yields,
            wait: self.plan.gate.as_ref().map(|g| Box::pin(g.wait()) as _),
            plan: self.plan.clone(),
            ended: false,
        }
    }
}

struct Fut {
    life: Arc<Life>,
    plan: Plan,
    yields: usize,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Finished, or a poll unwound.
    ended: bool,
    _drop: Dropper,
}

impl Future for Fut {
    type Output = Out;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Out> {
        let this = &mut *self;
        if this.ended {
            this.life.late_polls.fetch_add(1, SeqCst);
        }
        // Ended unless this poll returns: a panic (ours or a waker's) ends it.
        this.ended = true;
        this.life.poll_panicked.store(true, SeqCst);
        if this.plan.poll_panics {
            panic!("{INJECTED}: poll of task {}", this.life.id);
        }
        if this.yields > 0 {
            this.yields -= 1;
            cx.waker().wake_by_ref();
            this.ended = false;
            this.life.poll_panicked.store(false, SeqCst);
            return Poll::Pending;
        }
        if let Some(wait) = &mut this.wait {
            if wait.as_mut().poll(cx).is_pending() {
                this.ended = false;
                this.life.poll_panicked.store(false, SeqCst);
                return Poll::Pending;
            }
        }
        this.life.poll_panicked.store(false, SeqCst);
        this.life.outputs_made.fetch_add(1, SeqCst);
        Poll::Ready(Out {
            id: this.life.id,
            rejects: this.plan.rejects,
            _drop: dropper(&this.life.outputs, this.plan.output_drop_panics),
        })
    }
}

struct Out {
    id: usize,
    rejects: bool,
    _drop: Dropper,
}

impl Out {
    fn is_rejection(&self) -> bool {
        self.rejects
    }
}

// ----------------------------------------------------------------- driving

/// One poll of `queue` with `waker`; `Err(())` if it panicked.
fn poll<S: Stream + ?Sized>(
    queue: Pin<&mut S>,
    waker: &Waker,
) -> Result<Poll<Option<S::Item>>, ()> {
    catch_unwind(AssertUnwindSafe(|| {
        queue.poll_next(&mut Context::from_waker(waker))
    }))
    .map_err(|_| ())
}

/// Polls until the stream ends (at most `budget` polls), catching panics;
/// returns the ids yielded (the outputs are dropped, a panic of theirs
/// caught) and how many polls panicked.
fn run_to_end<const N: usize, S: FnMut(&Out) -> bool>(
    mut queue: Pin<&mut TaskQueue<Task, N, NoTimer, S>>,
    waker: &Waker,
    budget: usize,
) -> (Vec<usize>, usize) {
    let mut yielded = Vec::new();
    let mut panics = 0;
    for _ in 0..budget {
        match poll(queue.as_mut(), waker) {
            Err(()) => panics += 1,
            Ok(Poll::Ready(Some(out))) => {
                yielded.push(out.id);
                let _ = catch_unwind(AssertUnwindSafe(|| drop(out)));
            }
            Ok(Poll::Ready(None)) => return (yielded, panics),
            Ok(Poll::Pending) => {}
        }
    }
    panic!(
        "the queue never ended: yielded {yielded:?}, {} left",
        queue.len()
    );
}

fn noop() -> &'static Waker {
    Waker::noop()
}

// ------------------------------------------------------------ the findings

/// Finding 1: a panicking `into_future` left the oldest window slot vacant
/// and `take_oldest` looked only at that slot: in submission order nothing
/// came out any more. On `bf5d9a4`: "the queue never ended: yielded []".
#[test]
fn a_panicking_into_future_does_not_stall_submission_order() {
    quiet_panics();
    let mut queue = Box::pin(TaskQueue::<Task>::new().concurrency(2));
    let plans = [
        Plan {
            convert_panics: true,
            ..Plan::default()
        },
        Plan::default(),
        Plan::default(),
    ];
    let mut lives = Vec::new();
    for (id, plan) in plans.iter().enumerate() {
        let (task, life) = Task::new(id, plan.clone());
        lives.push(life);
        queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
    }
    assert!(
        poll(queue.as_mut(), noop()).is_err(),
        "into_future of task 0 panics"
    );
    assert_eq!(queue.len(), 2, "task 0 is gone");
    let (yielded, panics) = run_to_end(queue.as_mut(), noop(), 20);
    assert_eq!((yielded, panics), (vec![1, 2], 0));
    assert!(queue.is_empty());
    drop(queue);
    for life in &lives {
        life.assert_dropped_once();
    }
}

/// Finding 2: a finished future whose destructor panicked skipped the
/// counters (they were updated after the in-place drop). On `bf5d9a4`:
/// "running() after the panic: left: 1, right: 0"; past that check,
/// "attempt to subtract with overflow" (`ring.rs:182`, debug builds) when
/// the output is taken.
#[test]
fn a_finished_future_whose_destructor_panics_is_counted_and_its_output_kept() {
    quiet_panics();
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let mut queue = Box::pin(TaskQueue::<Task>::new().order(order));
        let (task, life) = Task::new(
            0,
            Plan {
                future_drop_panics: true,
                ..Plan::default()
            },
        );
        queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
        assert!(
            poll(queue.as_mut(), noop()).is_err(),
            "the future's drop panics"
        );
        assert_eq!(queue.running(), 0, "running() after the panic ({order:?})");
        assert_eq!(queue.len(), 1, "the output is held ({order:?})");
        assert_eq!(life.futures.get(), 1);
        let (yielded, panics) = run_to_end(queue.as_mut(), noop(), 10);
        assert_eq!((yielded, panics), (vec![0], 0), "{order:?}");
        assert_eq!((queue.len(), queue.running()), (0, 0));
        drop(queue);
        life.assert_dropped_once();
    }
}

/// Finding 3: a task whose poll panicked stayed `Running`, holding its slot
/// of the concurrency limit forever (`FuturesUnordered` drops such a task).
/// On `bf5d9a4`: "the panicked task is not running: left: 1, right: 0";
/// past that check, "the queue never ended: yielded [], 2 left" (with
/// `alloc` the dead task is never woken again, without it it is polled
/// again; either way task 1 never starts).
#[test]
fn a_task_whose_poll_panicked_is_dropped_and_frees_its_slot() {
    quiet_panics();
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let mut queue = Box::pin(TaskQueue::<Task>::new().order(order)); // concurrency 1
        let (bad, bad_life) = Task::new(
            0,
            Plan {
                poll_panics: true,
                ..Plan::default()
            },
        );
        let (good, good_life) = Task::new(
            1,
            Plan {
                yields: 1,
                ..Plan::default()
            },
        );
        queue.as_mut().push(bad).unwrap_or_else(|_| panic!("room"));
        queue.as_mut().push(good).unwrap_or_else(|_| panic!("room"));
        assert!(
            poll(queue.as_mut(), noop()).is_err(),
            "task 0's poll panics"
        );
        assert_eq!(
            queue.running(),
            0,
            "the panicked task is not running ({order:?})"
        );
        assert_eq!(queue.len(), 1, "only task 1 is left ({order:?})");
        let (yielded, panics) = run_to_end(queue.as_mut(), noop(), 10);
        assert_eq!((yielded, panics), (vec![1], 0), "{order:?}");
        assert_eq!(bad_life.futures.get(), 1, "the panicked future was dropped");
        drop(queue);
        bad_life.assert_dropped_once();
        good_life.assert_dropped_once();
    }
}

/// Finding 4: in completion order a panicking `stop_when` lost the finished
/// output (nothing takes a finished slot out of order later) and the queue
/// never ended. On `bf5d9a4`: "the queue never ended: yielded [], 2 left"
/// (with concurrency 1, task 1 never starts either).
#[test]
fn a_panicking_stop_when_in_completion_order_keeps_the_output() {
    quiet_panics();
    fn stop_when(out: &Out) -> bool {
        if out.id == 0 {
            panic!("{INJECTED}: stop_when");
        }
        out.is_rejection()
    }
    let mut queue = Box::pin(
        TaskQueue::<Task>::new()
            .order(Yield::InCompletionOrder)
            .stop_when(stop_when),
    );
    let mut lives = Vec::new();
    for id in 0..2 {
        let (task, life) = Task::new(id, Plan::default());
        lives.push(life);
        queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
    }
    assert!(poll(queue.as_mut(), noop()).is_err(), "stop_when panics");
    assert!(!queue.is_stopped(), "a panicking stop_when is no rejection");
    // The output whose examination panicked comes next, then the rest.
    let (yielded, panics) = run_to_end(queue.as_mut(), noop(), 10);
    assert_eq!((yielded, panics), (vec![0, 1], 0));
    drop(queue);
    for life in &lives {
        life.assert_dropped_once();
    }
}

// ------------------------------------------------- destructors that panic

/// In submission order a stop drops the entries after the rejection; an
/// output whose destructor panics there must not stop the truncation for
/// good. On `bf5d9a4` the entry left behind was yielded after the
/// rejection: "left: [0, 1], right: [0]".
#[test]
fn a_stop_whose_truncation_panics_is_finished_by_the_next_poll() {
    quiet_panics();
    let gate = Gate::new();
    let plans = [
        Plan {
            gate: Some(gate.clone()),
            rejects: true,
            ..Plan::default()
        },
        Plan::default(),
        Plan {
            output_drop_panics: true,
            ..Plan::default()
        },
    ];
    let mut queue = Box::pin(
        TaskQueue::<Task>::new()
            .concurrency(3)
            .stop_when(Out::is_rejection),
    );
    let mut lives = Vec::new();
    for (id, plan) in plans.iter().enumerate() {
        let (task, life) = Task::new(id, plan.clone());
        lives.push(life);
        queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
    }
    assert!(matches!(poll(queue.as_mut(), noop()), Ok(Poll::Pending)));
    assert_eq!(queue.len(), 3, "1 and 2 finished, waiting for 0");
    gate.open();
    // Task 0 rejects: 2's output (dropped first, newest first) panics.
    assert!(poll(queue.as_mut(), noop()).is_err());
    assert!(queue.is_stopped());
    let (yielded, panics) = run_to_end(queue.as_mut(), noop(), 10);
    assert_eq!((yielded, panics), (vec![0], 0));
    drop(queue);
    for life in &lives {
        life.assert_dropped_once();
    }
}

/// In completion order a stop drops everything but the rejection, which
/// comes next: unstarted tasks whose destructor panics included.
#[test]
fn a_stop_in_completion_order_with_a_panicking_task_destructor() {
    quiet_panics();
    let gate = Gate::new();
    let plans = [
        Plan {
            gate: Some(gate.clone()),
            ..Plan::default()
        },
        Plan {
            rejects: true,
            ..Plan::default()
        },
        Plan::default(),
        Plan {
            task_drop_panics: true,
            ..Plan::default()
        },
    ];
    let mut queue = Box::pin(
        TaskQueue::<Task>::new()
            .concurrency(2)
            .order(Yield::InCompletionOrder)
            .stop_when(Out::is_rejection),
    );
    let mut lives = Vec::new();
    for (id, plan) in plans.iter().enumerate() {
        let (task, life) = Task::new(id, plan.clone());
        lives.push(life);
        queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
    }
    // 0 waits, 1 rejects: 3's destructor panics while the rest is dropped.
    assert!(poll(queue.as_mut(), noop()).is_err());
    assert!(queue.is_stopped());
    let (yielded, panics) = run_to_end(queue.as_mut(), noop(), 10);
    assert_eq!((yielded, panics), (vec![1], 0));
    assert!(!lives[2].started() && !lives[3].started(), "never ran");
    assert_eq!(lives[0].futures.get(), 1, "the running task was cancelled");
    drop(queue);
    for life in &lives {
        life.assert_dropped_once();
    }
}

/// `OnRejection::Stop` in completion order: a rejection whose examination
/// happens after a panicking future destructor is still a stop.
#[test]
fn a_rejection_whose_future_destructor_panics_still_stops_the_queue() {
    quiet_panics();
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let plans = [
            Plan {
                rejects: true,
                future_drop_panics: true,
                ..Plan::default()
            },
            Plan::default(),
        ];
        let mut queue = Box::pin(
            TaskQueue::<Task>::new()
                .order(order)
                .stop_when(Out::is_rejection),
        );
        let mut lives = Vec::new();
        for (id, plan) in plans.iter().enumerate() {
            let (task, life) = Task::new(id, plan.clone());
            lives.push(life);
            queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
        }
        assert!(poll(queue.as_mut(), noop()).is_err());
        let (yielded, panics) = run_to_end(queue.as_mut(), noop(), 10);
        assert_eq!((yielded, panics), (vec![0], 0), "{order:?}");
        assert!(queue.is_stopped());
        assert!(!lives[1].started());
        drop(queue);
        for life in &lives {
            life.assert_dropped_once();
        }
    }
}

/// Dropping the queue with one panicking destructor (a running future, a
/// finished output, an unstarted task: each in turn) drops everything else
/// exactly once.
#[test]
fn dropping_the_queue_with_a_panicking_destructor_drops_everything_once() {
    quiet_panics();
    for culprit in 0..3 {
        let gate = Gate::new();
        // 0 runs (holds the head), 1 finished (its output waits for 0's),
        // 2 runs (a finished task does not count towards the limit), 3 is
        // not started (concurrency 2).
        let gated = || Plan {
            gate: Some(gate.clone()),
            ..Plan::default()
        };
        let mut plans = [gated(), Plan::default(), gated(), Plan::default()];
        match culprit {
            0 => plans[0].future_drop_panics = true,
            1 => plans[1].output_drop_panics = true,
            _ => plans[3].task_drop_panics = true,
        }
        let mut queue = Box::pin(TaskQueue::<Task>::new().concurrency(2));
        let mut lives = Vec::new();
        for (id, plan) in plans.iter().enumerate() {
            let (task, life) = Task::new(id, plan.clone());
            lives.push(life);
            queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
        }
        assert!(matches!(poll(queue.as_mut(), noop()), Ok(Poll::Pending)));
        assert_eq!((queue.running(), queue.unstarted(), queue.len()), (2, 1, 4));
        assert!(catch_unwind(AssertUnwindSafe(|| drop(queue))).is_err());
        for life in &lives {
            life.assert_dropped_once();
        }
    }
}

// ---------------------------------------------------------- hostile wakers

/// A wake of the queue's (hostile) waker drops the queue itself: the task
/// being woken is dropped exactly once, never polled again.
#[test]
fn a_wake_that_drops_the_queue() {
    quiet_panics();
    let hostile = Hostile::new();
    let gate = Gate::new();
    let mut queue = Box::pin(TaskQueue::<Task>::new());
    let (task, life) = Task::new(
        0,
        Plan {
            gate: Some(gate.clone()),
            ..Plan::default()
        },
    );
    queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
    let waker = hostile.waker();
    assert!(matches!(poll(queue.as_mut(), &waker), Ok(Poll::Pending)));
    hostile.on_wake(move || drop(queue));
    gate.open();
    assert!(hostile.hook_ran());
    assert_eq!(life.futures.get(), 1, "dropped by the wake");
    drop((waker, gate));
    life.assert_dropped_once();
    assert_eq!(hostile.live(), 0);
}

/// A wake from a `Submitter`'s submission drops the last other handle.
#[cfg(feature = "alloc")]
#[test]
fn a_wake_from_a_submission_drops_the_queue() {
    quiet_panics();
    let hostile = Hostile::new();
    let mut queue = Box::pin(TaskQueue::<Task>::new());
    let submit = queue.as_mut().submitter();
    let waker = hostile.waker();
    // Empty, but a submitter lives: the queue waits for submissions.
    assert!(matches!(poll(queue.as_mut(), &waker), Ok(Poll::Pending)));
    hostile.on_wake(move || drop(queue));
    let (task, life) = Task::new(0, Plan::default());
    assert!(
        submit.submit(task).is_ok(),
        "accepted, then the queue is dropped"
    );
    assert!(hostile.hook_ran());
    assert!(submit.is_closed());
    drop(waker);
    life.assert_dropped_once();
    assert!(!life.started(), "never ran");
    assert_eq!(hostile.live(), 0);
}

/// Submissions still in the inbox when the queue is dropped are dropped
/// exactly once, even when one destructor panics. On `bf5d9a4` the ones
/// after the panicking one leaked: "task 2: task drops: left: 0, right: 1".
#[cfg(feature = "alloc")]
#[test]
fn submissions_dropped_with_the_queue_all_drop_after_a_panic() {
    quiet_panics();
    let mut queue = Box::pin(TaskQueue::<Task>::new());
    let submit = queue.as_mut().submitter();
    let mut lives = Vec::new();
    for id in 0..3 {
        let (task, life) = Task::new(
            id,
            Plan {
                task_drop_panics: id == 1,
                ..Plan::default()
            },
        );
        lives.push(life);
        assert!(submit.submit(task).is_ok());
    }
    assert!(catch_unwind(AssertUnwindSafe(|| drop(queue))).is_err());
    for life in &lives {
        life.assert_dropped_once();
    }
}

/// A stop with submissions in the inbox and tasks waiting beyond the
/// window, one of whose destructors panics: all dropped once, none run.
#[cfg(feature = "alloc")]
#[test]
fn a_stop_drops_waiting_and_submitted_tasks_once_even_after_a_panic() {
    quiet_panics();
    let mut queue = Box::pin(
        TaskQueue::<Task>::with_capacity::<2>()
            .concurrency(1)
            .stop_when(Out::is_rejection),
    );
    let submit = queue.as_mut().submitter();
    let mut lives = Vec::new();
    let (task, life) = Task::new(
        0,
        Plan {
            rejects: true,
            ..Plan::default()
        },
    );
    lives.push(life);
    queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
    for id in 1..5 {
        let (task, life) = Task::new(
            id,
            Plan {
                task_drop_panics: id == 3,
                ..Plan::default()
            },
        );
        lives.push(life);
        if id % 2 == 0 {
            assert!(submit.submit(task).is_ok());
        } else {
            queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
        }
    }
    let (yielded, panics) = run_to_end(queue.as_mut(), noop(), 10);
    assert_eq!((yielded, panics), (vec![0], 1));
    for life in &lives[1..] {
        assert!(!life.started());
    }
    drop(queue);
    for life in &lives {
        life.assert_dropped_once();
    }
}

/// One case of the matrix: six tasks (two waking themselves, two waiting
/// for gates opened between polls, two ready at once), concurrency 2, a
/// window of 4; the caller's waker is hostile. With a submitter, the last
/// two tasks are submitted between polls and the wake hook drops a clone of
/// the submitter; without, the hook drops a tracked value. Without `alloc`
/// only the four that fit are pushed.
fn hostile_case(behaviour: Behaviour, order: Yield, with_submitter: bool) {
    let case = format!("{behaviour:?}, {order:?}, submitter: {with_submitter}");
    let hostile = behaviour.hostile();
    let gates = [Gate::new(), Gate::new()];
    let plans = [
        Plan {
            yields: 2,
            ..Plan::default()
        },
        Plan {
            gate: Some(gates[0].clone()),
            ..Plan::default()
        },
        Plan::default(),
        Plan {
            gate: Some(gates[1].clone()),
            ..Plan::default()
        },
        Plan {
            yields: 1,
            ..Plan::default()
        },
        Plan::default(),
    ];
    let tasks = if cfg!(feature = "alloc") { 6 } else { 4 };
    let mut queue = Box::pin(
        TaskQueue::<Task>::with_capacity::<4>()
            .concurrency(2)
            .order(order),
    );
    let victim = DropCounter::new();
    #[cfg(feature = "alloc")]
    let mut submit = with_submitter.then(|| queue.as_mut().submitter());
    #[cfg(not(feature = "alloc"))]
    let submit: Option<Box<()>> = None;
    match &submit {
        #[cfg(feature = "alloc")]
        Some(submit) => {
            let clone = submit.clone();
            hostile.on_wake(move || drop(clone));
        }
        _ => {
            let value = victim.tracked();
            hostile.on_wake(move || drop(value));
        }
    }
    let mut lives = Vec::new();
    let mut later = std::collections::VecDeque::new();
    for (id, plan) in plans.iter().take(tasks).enumerate() {
        let (task, life) = Task::new(id, plan.clone());
        lives.push(life);
        if submit.is_some() && id >= 4 {
            later.push_back(task);
        } else {
            queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
        }
    }
    drop(plans);

    let waker = hostile.waker();
    let mut yielded = Vec::new();
    let mut ended = false;
    for step in 0..100 {
        match poll(queue.as_mut(), &waker) {
            Ok(Poll::Ready(Some(out))) => yielded.push(out.id),
            Ok(Poll::Ready(None)) if later.is_empty() => {
                ended = true;
                break;
            }
            Ok(_) | Err(()) => {}
        }
        // Between polls: a submission (its wake-up may panic: the task is
        // submitted all the same), and the gates open (their wake-ups may
        // panic too).
        #[cfg(feature = "alloc")]
        if let (Some(submit), Some(task)) = (&submit, later.pop_front()) {
            let accepted = catch_unwind(AssertUnwindSafe(|| submit.submit(task)));
            assert!(!matches!(accepted, Ok(Err(_))), "{case}: refused");
        }
        // The last submission made: let the queue end (its last drop
        // wakes the queue, with a waker that may panic).
        #[cfg(feature = "alloc")]
        if later.is_empty() {
            if let Some(submit) = submit.take() {
                let _ = catch_unwind(AssertUnwindSafe(|| drop(submit)));
            }
        }
        if step == 1 || step == 3 {
            let gate = &gates[step / 2];
            let _ = catch_unwind(AssertUnwindSafe(|| gate.open()));
        }
    }
    assert!(ended, "{case}: never ended, yielded {yielded:?}");
    assert!(queue.is_empty(), "{case}");
    assert_eq!(queue.running(), 0, "{case}");
    // Whatever still holds a waker may run a hostile drop.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(queue)));
    let _ = catch_unwind(AssertUnwindSafe(|| drop(submit)));
    let _ = catch_unwind(AssertUnwindSafe(|| drop(gates)));
    let _ = catch_unwind(AssertUnwindSafe(|| drop(waker)));

    let mut seen = yielded.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        yielded.len(),
        "{case}: yielded twice: {yielded:?}"
    );
    for life in &lives {
        life.assert_dropped_once_in(&case);
        if life.survived() {
            assert!(yielded.contains(&life.id), "{case}: task {} lost", life.id);
        } else {
            assert!(
                !yielded.contains(&life.id),
                "{case}: task {} yielded",
                life.id
            );
        }
    }
    let survivors = lives.iter().filter(|l| l.survived()).count();
    assert!(
        survivors + 1 >= tasks,
        "{case}: one panic kills at most one task"
    );
    if order == Yield::InSubmissionOrder {
        let mut sorted = yielded.clone();
        sorted.sort();
        assert_eq!(yielded, sorted, "{case}: submission order");
    }
    if behaviour == Behaviour::RunsHookOnWake {
        assert!(hostile.hook_ran(), "{case}: the waker was never woken");
    }
    assert!(victim.get() <= 1);
    assert_eq!(hostile.live(), 0, "{case}: wakers leaked");
}

/// `AtomicWaker::register` used to clone the caller's waker inside its
/// `REGISTERING` state, and a panicking clone left it there: every later
/// wake-up of the queue was lost (finding 4 of the review of bf5d9a4).
#[cfg(feature = "alloc")]
#[test]
fn after_a_panicking_clone_of_the_callers_waker_the_queue_is_still_woken() {
    quiet_panics();
    let gate = Gate::new();
    let mut queue = Box::pin(TaskQueue::<Task>::new());
    let (task, life) = Task::new(
        0,
        Plan {
            gate: Some(gate.clone()),
            ..Plan::default()
        },
    );
    queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
    let hostile = Hostile::new().panic_on(Call::Clone, 1);
    assert!(
        poll(queue.as_mut(), &hostile.waker()).is_err(),
        "register's clone panics"
    );
    let counter = support::WakeCounter::new();
    assert!(matches!(
        poll(queue.as_mut(), &counter.waker()),
        Ok(Poll::Pending)
    ));
    gate.open();
    assert_eq!(counter.wakes(), 1, "lost wake-up");
    drop(queue);
    life.assert_dropped_once();
}

#[test]
fn hostile_wakers_matrix() {
    quiet_panics();
    for behaviour in Behaviour::all() {
        for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
            let submitters: &[bool] = if cfg!(feature = "alloc") {
                &[false, true]
            } else {
                &[false]
            };
            for &with_submitter in submitters {
                hostile_case(behaviour, order, with_submitter);
            }
        }
    }
}

/// `OnRejection::Stop` still works when the output is a `Result` and a
/// task panicked before the rejection (the panicked task is just gone).
#[test]
fn a_panicked_task_does_not_count_as_a_rejection() {
    quiet_panics();
    let mut queue = Box::pin(
        TaskQueue::<Pin<Box<dyn Future<Output = Result<u8, u8>> + Send>>>::new()
            .concurrency(2)
            .on_rejection(OnRejection::Stop),
    );
    queue
        .as_mut()
        .push(Box::pin(async {
            if true {
                panic!("{INJECTED}: async task");
            }
            Ok(0)
        }))
        .unwrap_or_else(|_| panic!("room"));
    queue
        .as_mut()
        .push(Box::pin(async { Ok(1) }))
        .unwrap_or_else(|_| panic!("room"));
    assert!(poll(queue.as_mut(), noop()).is_err());
    let mut rest = Vec::new();
    for _ in 0..5 {
        match poll(queue.as_mut(), noop()) {
            Ok(Poll::Ready(Some(r))) => rest.push(r),
            Ok(Poll::Ready(None)) => break,
            other => panic!("unexpected {:?}", other.map(|p| p.is_ready())),
        }
    }
    assert_eq!(rest, [Ok(1)]);
    assert!(!queue.is_stopped());
}

// ------------------------------------------- waiting for work, timers, clear

/// One case: the queue waits for work (a submitter, or a `static` inbox)
/// with a hostile waker registered; submissions and the end (the last
/// submitter's drop, the inbox's close) wake it, and any of those wakes
/// may panic or run the hook. The queue must still yield every task once
/// and end, with no waker leaked.
fn waiting_case(behaviour: Behaviour, source: usize) {
    let case = format!("{behaviour:?}, source {source}");
    let hostile = behaviour.hostile();
    let victim = DropCounter::new();
    let value = victim.tracked();
    hostile.on_wake(move || drop(value));
    let mut queue = Box::pin(TaskQueue::<Task>::new().concurrency(2));
    let mut lives = Vec::new();
    #[cfg(feature = "alloc")]
    let mut submit = (source == 0).then(|| queue.as_mut().submitter());
    // One `static` inbox per case (an inbox serves one queue, once).
    static INBOXES: [deferral::queue::Inbox<Task, 4>; 32] =
        [const { deferral::queue::Inbox::new() }; 32];
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let inbox = &INBOXES[NEXT.fetch_add(1, SeqCst)];
    if source == 1 {
        queue.as_mut().attach(inbox).unwrap();
    }
    let waker = hostile.waker();
    let mut yielded = Vec::new();
    let mut ended = false;
    for step in 0..40 {
        match poll(queue.as_mut(), &waker) {
            Ok(Poll::Ready(Some(out))) => yielded.push(out.id),
            Ok(Poll::Ready(None)) => {
                ended = true;
                break;
            }
            Ok(Poll::Pending) | Err(()) => {}
        }
        if step < 3 {
            let (task, life) = Task::new(step, Plan::default());
            lives.push(life);
            let submitted = catch_unwind(AssertUnwindSafe(|| match source {
                #[cfg(feature = "alloc")]
                0 => submit.as_ref().unwrap().submit(task).is_ok(),
                _ => inbox.submit(task).is_ok(),
            }));
            assert!(!matches!(submitted, Ok(false)), "{case}: refused");
        } else if step == 3 {
            // The end of the producers: wakes the queue (may panic).
            let _ = catch_unwind(AssertUnwindSafe(|| match source {
                #[cfg(feature = "alloc")]
                0 => drop(submit.take()),
                _ => inbox.close(),
            }));
        }
    }
    assert!(ended, "{case}: never ended, yielded {yielded:?}");
    let _ = catch_unwind(AssertUnwindSafe(|| drop(queue)));
    let _ = catch_unwind(AssertUnwindSafe(|| drop(waker)));
    yielded.sort();
    assert_eq!(yielded, [0, 1, 2], "{case}");
    for life in &lives {
        life.assert_dropped_once_in(&case);
    }
    assert!(victim.get() <= 1);
    assert_eq!(hostile.live(), 0, "{case}: wakers leaked");
}

#[test]
fn hostile_wakers_while_the_queue_waits_for_work() {
    quiet_panics();
    for behaviour in Behaviour::all() {
        let sources: &[usize] = if cfg!(feature = "alloc") {
            &[0, 1]
        } else {
            &[1]
        };
        for &source in sources {
            waiting_case(behaviour, source);
        }
    }
}

/// A timer whose factory panics on its `k`-th call and whose sleeps all
/// panic on their first poll when `poll_panics`; never completes.
struct Timers {
    calls: Arc<AtomicUsize>,
    factory_panics_at: usize,
    poll_panics: bool,
}

struct HostileSleep {
    poll_panics: bool,
    _drop: Tracked,
}

impl Future for HostileSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.poll_panics {
            panic!("{INJECTED}: timer poll");
        }
        Poll::Pending
    }
}

/// Panics in the timer factory (making a task's timer) and in a timer's
/// poll: the task concerned is gone (like a task whose poll panicked), the
/// others run; every task, future, output and timer is dropped once.
#[test]
fn panicking_timers_kill_only_their_task() {
    quiet_panics();
    for (factory_panics_at, poll_panics) in [(2, false), (0, true)] {
        let timers = DropCounter::new();
        let t = Timers {
            calls: Arc::new(AtomicUsize::new(0)),
            factory_panics_at,
            poll_panics,
        };
        let made = t.calls.clone();
        let counter = timers.clone();
        let factory = move |_: std::time::Duration| {
            let n = t.calls.fetch_add(1, SeqCst) + 1;
            if n == t.factory_panics_at {
                panic!("{INJECTED}: timer factory");
            }
            HostileSleep {
                poll_panics: t.poll_panics && n == 1,
                _drop: counter.tracked(),
            }
        };
        let mut queue = Box::pin(
            TaskQueue::<Task>::new()
                .concurrency(3)
                .timer(factory)
                .timeout(std::time::Duration::from_secs(1)),
        );
        let mut lives = Vec::new();
        for id in 0..3 {
            let (task, life) = Task::new(
                id,
                Plan {
                    yields: 1,
                    ..Plan::default()
                },
            );
            lives.push(life);
            queue.as_mut().push(task).unwrap_or_else(|_| panic!("room"));
        }
        let mut yielded = Vec::new();
        let mut panics = 0;
        for _ in 0..20 {
            match poll(queue.as_mut(), noop()) {
                Err(()) => panics += 1,
                Ok(Poll::Ready(Some(Ok(out)))) => yielded.push(out.id),
                Ok(Poll::Ready(Some(Err(timed_out)))) => panic!("{timed_out}"),
                Ok(Poll::Ready(None)) => break,
                Ok(Poll::Pending) => {}
            }
        }
        assert_eq!(panics, 1, "({factory_panics_at}, {poll_panics})");
        let dead = if poll_panics { 0 } else { 1 };
        let expected: Vec<usize> = (0..3).filter(|&id| id != dead).collect();
        assert_eq!(yielded, expected, "({factory_panics_at}, {poll_panics})");
        assert_eq!(queue.running(), 0);
        drop(queue);
        for life in &lives {
            life.assert_dropped_once();
        }
        let made = made.load(SeqCst) - usize::from(factory_panics_at > 0);
        assert_eq!(timers.get(), made, "every timer dropped once");
    }
}

/// `clear` with a panicking task destructor: the panic propagates, the
/// rest stay queued, and the next `clear` drops them; each once, none run.
#[test]
fn clear_with_a_panicking_destructor_goes_on_next_time() {
    quiet_panics();
    let mut queue = Box::pin(TaskQueue::<Task>::with_capacity::<4>());
    queue.as_mut().pause();
    let mut lives = Vec::new();
    for id in 0..6 {
        let (task, life) = Task::new(
            id,
            Plan {
                task_drop_panics: id == 2,
                ..Plan::default()
            },
        );
        lives.push(life);
        if queue.as_mut().push(task).is_err() {
            lives.pop(); // without `alloc` the window holds 4
        }
    }
    let held = queue.unstarted();
    assert!(catch_unwind(AssertUnwindSafe(|| queue.as_mut().clear())).is_err());
    let left = queue.unstarted();
    assert!(left < held);
    assert_eq!(queue.as_mut().clear(), left);
    assert_eq!(queue.unstarted(), 0);
    drop(queue);
    for life in &lives {
        assert!(!life.started());
        life.assert_dropped_once();
    }
}

// ------------------------------------------- the static inbox, hostile

/// What the queue's waker does when the inbox wakes it.
#[derive(Debug, Clone, Copy)]
enum OnInboxWake {
    /// Drops the queue (the inbox's owner) from inside the wake.
    DropsTheQueue,
    /// Polls the queue again from inside the wake (with another waker).
    RepollsTheQueue,
}

/// Issue 21 ("the hostile kit runs over the queue's inbox"): a queue
/// attached to a `static` `Inbox` waits for work with a hostile waker;
/// the inbox wakes it from `submit` or `close`, and that wake drops the
/// queue or polls it again. Nothing is lost or run twice: every task is
/// yielded once or dropped unrun once, a dropped queue's inbox refuses
/// later submissions, and no waker leaks.
fn inbox_wake_case(on_wake: OnInboxWake, wake_from_close: bool) {
    use std::sync::Mutex;
    type Shared = Arc<Mutex<Option<Pin<Box<TaskQueue<Task>>>>>>;
    let case = format!("{on_wake:?}, from close: {wake_from_close}");
    static INBOXES: [deferral::queue::Inbox<Task, 4>; 8] =
        [const { deferral::queue::Inbox::new() }; 8];
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let inbox = &INBOXES[NEXT.fetch_add(1, SeqCst)];

    let queue: Shared = Arc::new(Mutex::new(Some(Box::pin(TaskQueue::new()))));
    queue
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .attach(inbox)
        .unwrap();
    let yielded = Arc::new(Mutex::new(Vec::new()));
    let hostile = Hostile::new();
    {
        let (queue, yielded) = (queue.clone(), yielded.clone());
        hostile.on_wake(move || match on_wake {
            OnInboxWake::DropsTheQueue => {
                let taken = queue.lock().unwrap().take();
                drop(taken);
            }
            OnInboxWake::RepollsTheQueue => {
                let mut guard = queue.lock().unwrap();
                let queue = guard.as_mut().unwrap();
                let mut cx = Context::from_waker(Waker::noop());
                while let Poll::Ready(Some(out)) = queue.as_mut().poll_next(&mut cx) {
                    yielded.lock().unwrap().push(out.id);
                }
            }
        });
    }
    let waker = hostile.waker();
    let mut lives = Vec::new();
    // The queue waits for work: its waker is in the inbox (the hostile one
    // only where the submission is to run the hook).
    {
        let mut guard = queue.lock().unwrap();
        let q = guard.as_mut().unwrap();
        let first = if wake_from_close { noop() } else { &waker };
        assert!(
            matches!(poll(q.as_mut(), first), Ok(Poll::Pending)),
            "{case}"
        );
    }
    let (task, life) = Task::new(0, Plan::default());
    lives.push(life);
    if wake_from_close {
        inbox
            .submit(task)
            .unwrap_or_else(|_| panic!("{case}: refused"));
        let mut guard = queue.lock().unwrap();
        let q = guard.as_mut().unwrap();
        // Takes task 0 and re-registers the hostile waker.
        if let Ok(Poll::Ready(Some(out))) = poll(q.as_mut(), &waker) {
            yielded.lock().unwrap().push(out.id);
        }
        drop(guard);
        inbox.close(); // wakes: the hook runs here
    } else {
        // The submission wakes: the hook runs inside `submit`.
        inbox
            .submit(task)
            .unwrap_or_else(|_| panic!("{case}: refused"));
    }
    assert!(hostile.hook_ran(), "{case}: the wake ran the hook");
    // A later submission: taken by a live queue, refused by a dropped one.
    let (task, life) = Task::new(1, Plan::default());
    lives.push(life);
    let refused = inbox.submit(task).err();
    let dropped = queue.lock().unwrap().is_none();
    match on_wake {
        OnInboxWake::DropsTheQueue => {
            assert!(
                matches!(refused, Some(deferral::queue::PushError::Closed(_))),
                "{case}"
            );
        }
        OnInboxWake::RepollsTheQueue if wake_from_close => {
            assert!(
                matches!(refused, Some(deferral::queue::PushError::Closed(_))),
                "{case}"
            );
        }
        OnInboxWake::RepollsTheQueue => assert!(refused.is_none(), "{case}"),
    }
    drop(refused);
    if !dropped {
        inbox.close();
        let mut guard = queue.lock().unwrap();
        let q = guard.as_mut().unwrap();
        let mut ended = false;
        for _ in 0..10 {
            match poll(q.as_mut(), &waker) {
                Ok(Poll::Ready(Some(out))) => yielded.lock().unwrap().push(out.id),
                Ok(Poll::Ready(None)) => {
                    ended = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(ended, "{case}: never ended");
        guard.take();
    }
    let yielded = yielded.lock().unwrap().clone();
    match (on_wake, wake_from_close) {
        (OnInboxWake::DropsTheQueue, false) => assert_eq!(yielded, [] as [usize; 0], "{case}"),
        (OnInboxWake::DropsTheQueue, true) | (OnInboxWake::RepollsTheQueue, true) => {
            assert_eq!(yielded, [0], "{case}")
        }
        (OnInboxWake::RepollsTheQueue, false) => assert_eq!(yielded, [0, 1], "{case}"),
    }
    drop(waker);
    for life in &lives {
        life.assert_dropped_once_in(&case);
    }
    assert_eq!(hostile.live(), 0, "{case}: wakers leaked");
}

#[test]
fn inbox_wakes_that_drop_or_repoll_the_queue() {
    quiet_panics();
    for on_wake in [OnInboxWake::DropsTheQueue, OnInboxWake::RepollsTheQueue] {
        for wake_from_close in [false, true] {
            inbox_wake_case(on_wake, wake_from_close);
        }
    }
}

// ------------------------------------------------ re-entrant destructors

thread_local! {
    /// A queue the tasks below reach from their destructors (a shared
    /// reference is all `&self` methods need).
    static CALLED_BACK: TaskQueue<CallsBack, 4> = const { TaskQueue::with_capacity::<4>() };
}

/// A task whose destructor calls back into its own queue.
struct CallsBack {
    calls_back: bool,
    _drops: Tracked,
    pushed: DropCounter,
}

impl IntoFuture for CallsBack {
    type Output = ();
    type IntoFuture = std::future::Ready<()>;
    fn into_future(self) -> Self::IntoFuture {
        std::future::ready(())
    }
}

impl Drop for CallsBack {
    fn drop(&mut self) {
        if !std::mem::take(&mut self.calls_back) {
            return;
        }
        CALLED_BACK.with(|queue| {
            // Every `&self` method, from inside `clear`'s drop of a task.
            let _ = (queue.len(), queue.unstarted(), queue.running());
            let _ = (queue.is_paused(), queue.is_closed(), queue.is_stopped());
            assert!(format!("{queue:?}").contains("TaskQueue"));
            let extra = CallsBack {
                calls_back: false,
                _drops: self.pushed.tracked(),
                pushed: DropCounter::new(),
            };
            let id = queue.push(extra).unwrap_or_else(|_| panic!("room"));
            assert!(queue.set_priority(id, 1));
            queue.pause();
            queue.resume();
            // A nested clear drops the rest (and the task just pushed).
            let _ = queue.clear();
        });
    }
}

/// `clear` drops each task outside its access to the queue, so a task's
/// destructor may use the queue — read it, push, re-prioritise, clear it
/// again — and every task is still dropped exactly once (no re-entrancy
/// panic, no double drop; Miri sees no aliasing).
#[test]
fn a_task_destructor_may_call_back_into_the_queue_during_clear() {
    let drops = DropCounter::new();
    let pushed = DropCounter::new();
    CALLED_BACK.with(|queue| {
        for i in 0..3 {
            queue
                .push(CallsBack {
                    // The newest (dropped first by `clear`) calls back.
                    calls_back: i == 2,
                    _drops: drops.tracked(),
                    pushed: pushed.clone(),
                })
                .unwrap_or_else(|_| panic!("room"));
        }
        let outer = queue.clear();
        assert!(outer >= 1);
        assert_eq!(drops.get(), 3, "each task dropped once");
        assert_eq!(pushed.get(), 1, "the task pushed from a destructor too");
        assert_eq!((queue.len(), queue.unstarted()), (0, 0));
    });
}
