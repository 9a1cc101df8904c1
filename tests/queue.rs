//! `TaskQueue`: concurrency limit, result order, laziness, drop, stop on
//! rejection, pushes while running (and from inside a task), the `Stream`
//! contract, per-task wake-ups, and the seed's sequential loop.

mod support;

use std::future::IntoFuture;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use deferral::queue::{OnRejection, PushError, Yield};
use deferral::{DeferredPromise, TaskQueue};
use futures::StreamExt;
use futures::stream::FusedStream;
use support::{DropCounter, Gate, WakeCounter, block_on, yield_now};

/// Shared counters and an event log for [`Job`]s.
#[derive(Clone, Default)]
struct Stats {
    /// `into_future` calls: a job converted is a job started.
    converted: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Stats {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn push(&self, event: String) {
        self.log.lock().unwrap().push(event);
    }
    fn job(&self, id: usize, yields: usize, rejects: bool) -> Job {
        Job {
            id,
            yields,
            rejects,
            stats: self.clone(),
        }
    }
}

/// A deferred task: does nothing until converted and polled; then yields
/// `yields` times (waking itself) and finishes with `Ok(id)` or `Err(id)`.
struct Job {
    id: usize,
    yields: usize,
    rejects: bool,
    stats: Stats,
}

impl IntoFuture for Job {
    type Output = Result<usize, usize>;
    type IntoFuture = JobFuture;
    fn into_future(self) -> JobFuture {
        self.stats.converted.fetch_add(1, SeqCst);
        JobFuture {
            job: self,
            started: false,
            done: false,
        }
    }
}

struct JobFuture {
    job: Job,
    started: bool,
    done: bool,
}

impl Future for JobFuture {
    type Output = Result<usize, usize>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "polled after completion");
        let id = self.job.id;
        if !self.started {
            self.started = true;
            let now = self.job.stats.running.fetch_add(1, SeqCst) + 1;
            self.job.stats.max_running.fetch_max(now, SeqCst);
            self.job.stats.push(format!("start {id}"));
        }
        if self.job.yields > 0 {
            self.job.yields -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.done = true;
        self.job.stats.running.fetch_sub(1, SeqCst);
        self.job.stats.push(format!("end {id}"));
        Poll::Ready(if self.job.rejects { Err(id) } else { Ok(id) })
    }
}

impl Drop for JobFuture {
    fn drop(&mut self) {
        if self.started && !self.done {
            self.job.stats.running.fetch_sub(1, SeqCst);
            self.job.stats.push(format!("cancel {}", self.job.id));
        }
    }
}

/// Polls `stream` once for its next item with a fresh waker of `counter`.
fn poll_next<S: futures::Stream>(
    stream: Pin<&mut S>,
    counter: &WakeCounter,
) -> Poll<Option<S::Item>> {
    let waker = counter.waker();
    stream.poll_next(&mut Context::from_waker(&waker))
}

fn yields_of(id: usize) -> usize {
    (id * 7) % 5
}

#[test]
fn at_most_k_tasks_run_at_once() {
    let n = if cfg!(miri) { 8 } else { 40 };
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        for k in [1, 2, 3, 5, 16] {
            let stats = Stats::default();
            let mut queue = pin!(TaskQueue::with_capacity::<64>().concurrency(k).order(order));
            for id in 0..n {
                queue
                    .as_mut()
                    .push(stats.job(id, 1 + yields_of(id), false))
                    .unwrap();
            }
            let mut out: Vec<usize> =
                block_on(queue.as_mut().map(Result::unwrap).collect::<Vec<_>>());
            assert_eq!(stats.max_running.load(SeqCst), k.min(n), "{order:?} k={k}");
            assert_eq!(stats.running.load(SeqCst), 0);
            assert_eq!(stats.converted.load(SeqCst), n);
            if order == Yield::InSubmissionOrder {
                assert_eq!(out, (0..n).collect::<Vec<_>>(), "k={k}");
            } else {
                out.sort();
                assert_eq!(out, (0..n).collect::<Vec<_>>(), "k={k}");
            }
        }
    }
}

#[test]
fn concurrency_is_capped_by_the_inline_window() {
    let stats = Stats::default();
    let mut queue = pin!(TaskQueue::with_capacity::<2>().concurrency(8));
    assert_eq!(queue.max_running(), 2);
    #[cfg(feature = "alloc")]
    let n = 6; // beyond the window: waits on the heap
    #[cfg(not(feature = "alloc"))]
    let n = 2;
    for id in 0..n {
        queue.as_mut().push(stats.job(id, 2, false)).unwrap();
    }
    assert_eq!(queue.len(), n);
    assert_eq!(block_on(queue.as_mut().count()), n);
    assert_eq!(stats.max_running.load(SeqCst), 2);
}

#[test]
#[should_panic(expected = "the limit must be at least 1")]
fn concurrency_zero_is_refused() {
    let _ = TaskQueue::<Job>::new().concurrency(0);
}

#[test]
fn submission_order_versus_completion_order() {
    // Job 0 is slow, job 1 finishes at once.
    for (order, expected) in [
        (Yield::InSubmissionOrder, [0, 1]),
        (Yield::InCompletionOrder, [1, 0]),
    ] {
        let stats = Stats::default();
        let mut queue = pin!(TaskQueue::new().concurrency(2).order(order));
        queue.as_mut().push(stats.job(0, 3, false)).unwrap();
        queue.as_mut().push(stats.job(1, 0, false)).unwrap();
        let out: Vec<_> = block_on(queue.as_mut().map(Result::unwrap).collect::<Vec<_>>());
        assert_eq!(out, expected, "{order:?}");
        assert_eq!(stats.max_running.load(SeqCst), 2, "both ran together");
        assert!(queue.is_empty());
    }
}

/// Issue 26: a finished task whose result waits for its turn behind a
/// slow, older one no longer counts towards the limit, so the next task
/// starts (p-queue's behaviour). On `c9d10e1` (where it counted until
/// yielded, like `buffered(k)`) in submission order only tasks 0 and 1
/// started: "left: [0, 1], right: [0, 1, 2]".
#[test]
fn a_finished_result_waiting_for_its_turn_does_not_hold_up_starts() {
    for order in [Yield::InSubmissionOrder, Yield::InCompletionOrder] {
        let started = Arc::new(Mutex::new(Vec::new()));
        let gates: Vec<Gate> = (0..4).map(|_| Gate::new()).collect();
        let mut queue = pin!(TaskQueue::new().concurrency(2).order(order));
        for (id, gate) in gates.iter().enumerate() {
            let started = started.clone();
            // Task 1 finishes at its first poll; the others wait for
            // their gate.
            let wait = (id != 1).then(|| gate.wait());
            queue
                .push(async move {
                    started.lock().unwrap().push(id);
                    if let Some(wait) = wait {
                        wait.await;
                    }
                    id
                })
                .unwrap();
        }
        let counter = WakeCounter::new();
        let mut early = Vec::new();
        while let Poll::Ready(Some(id)) = poll_next(queue.as_mut(), &counter) {
            early.push(id);
        }
        // Task 1's result waits for task 0's (submission order) or came
        // out (completion order): either way task 2 runs beside task 0.
        let expected_early: &[usize] = match order {
            Yield::InSubmissionOrder => &[],
            Yield::InCompletionOrder => &[1],
        };
        assert_eq!(early, expected_early, "{order:?}");
        assert_eq!(*started.lock().unwrap(), [0, 1, 2], "{order:?}");
        assert_eq!((queue.running(), queue.unstarted()), (2, 1), "{order:?}");
        for gate in &gates {
            gate.open();
        }
        let mut rest: Vec<usize> = block_on(queue.as_mut().collect());
        if order == Yield::InCompletionOrder {
            rest.sort();
            assert_eq!(rest, [0, 2, 3]);
        } else {
            assert_eq!(rest, [0, 1, 2, 3]);
        }
    }
}

/// What bounds the results waiting behind a slow task is the window: with
/// a window of 4, three finished results wait behind task 0 and nothing
/// more starts until it is yielded. (This replaces a test of the old rule,
/// "the queue runs at most `k` results ahead", which counted finished
/// tasks towards the concurrency limit.)
#[test]
fn the_window_bounds_how_far_results_run_ahead_of_a_slow_task() {
    let stats = Stats::default();
    let gate = Gate::new();
    let mut queue = pin!(TaskQueue::with_capacity::<4>().concurrency(2));
    let wait = gate.wait();
    queue
        .push(futures::future::Either::Left(async move {
            wait.await;
            Ok(0)
        }))
        .unwrap();
    let n = if cfg!(feature = "alloc") { 7 } else { 4 };
    for id in 1..n {
        queue
            .push(futures::future::Either::Right(
                stats.job(id, 0, false).into_future(),
            ))
            .unwrap();
    }
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    // Task 0 runs; 1, 2, 3 finished and fill the window.
    assert_eq!(
        stats.log(),
        ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
    );
    assert_eq!((queue.running(), queue.unstarted()), (1, n - 4));
    gate.open();
    let out: Vec<usize> = block_on(queue.as_mut().map(Result::unwrap).collect());
    assert_eq!(out, (0..n).collect::<Vec<_>>());
}

/// A poll with a result ready yields it and starts nothing more: tasks
/// that finish at their first poll start one per poll, whatever the
/// concurrency (the laziness of the docs' first example).
#[test]
fn a_poll_with_a_result_ready_starts_nothing_more() {
    let stats = Stats::default();
    let mut queue = pin!(TaskQueue::new().concurrency(2));
    for id in 0..5 {
        queue.push(stats.job(id, 0, false)).unwrap();
    }
    let counter = WakeCounter::new();
    for id in 0..5 {
        assert_eq!(
            poll_next(queue.as_mut(), &counter),
            Poll::Ready(Some(Ok(id)))
        );
        assert_eq!(stats.converted.load(SeqCst), id + 1);
        assert_eq!(queue.len(), 4 - id);
    }
}

#[test]
fn pushing_does_not_start_or_convert_a_task() {
    let stats = Stats::default();
    let mut queue = pin!(TaskQueue::new());
    queue.as_mut().push(stats.job(0, 1, false)).unwrap();
    queue.as_mut().push(stats.job(1, 0, false)).unwrap();
    assert_eq!(stats.converted.load(SeqCst), 0);
    assert_eq!(queue.running(), 0);
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    // Concurrency 1: only the first was converted and started.
    assert_eq!(stats.converted.load(SeqCst), 1);
    assert_eq!(queue.running(), 1);
    assert_eq!(stats.log(), ["start 0"]);
    assert_eq!(counter.wakes(), 1, "the job's wake reached the caller");
}

#[test]
fn dropping_the_queue_drops_unstarted_tasks_unrun_and_running_ones() {
    let stats = Stats::default();
    let drops = DropCounter::new();
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let mut queue = pin!(TaskQueue::new().concurrency(2));
        for id in 0..5 {
            let stats = stats.clone();
            let ran = ran.clone();
            let token = drops.tracked();
            queue
                .as_mut()
                .push(DeferredPromise::lazy(move || async move {
                    let _token = token;
                    ran.fetch_add(1, SeqCst);
                    stats.push(format!("start {id}"));
                    Gate::new().wait().await; // never opens
                    Ok::<_, ()>(id)
                }))
                .unwrap();
        }
        let counter = WakeCounter::new();
        assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
        assert_eq!(ran.load(SeqCst), 2);
        assert_eq!(drops.get(), 0);
    }
    assert_eq!(ran.load(SeqCst), 2, "unstarted tasks never ran");
    assert_eq!(drops.get(), 5, "every task dropped exactly once");
    assert_eq!(stats.log(), ["start 0", "start 1"]);
}

#[test]
fn running_jobs_are_cancelled_in_place_on_drop() {
    let stats = Stats::default();
    let mut queue = Box::pin(TaskQueue::new().concurrency(3));
    for id in 0..4 {
        queue.as_mut().push(stats.job(id, 100, false)).unwrap();
    }
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    assert_eq!(stats.running.load(SeqCst), 3);
    drop(queue);
    assert_eq!(stats.running.load(SeqCst), 0);
    let mut log = stats.log();
    log.sort();
    assert_eq!(
        log,
        [
            "cancel 0", "cancel 1", "cancel 2", "start 0", "start 1", "start 2"
        ]
    );
    assert_eq!(stats.converted.load(SeqCst), 3);
}

#[test]
fn stop_on_rejection_in_submission_order() {
    let stats = Stats::default();
    let mut queue = pin!(
        TaskQueue::new()
            .concurrency(2)
            .on_rejection(OnRejection::Stop)
    );
    queue.as_mut().push(stats.job(0, 3, false)).unwrap();
    queue.as_mut().push(stats.job(1, 0, true)).unwrap();
    for id in 2..6 {
        queue.as_mut().push(stats.job(id, 0, false)).unwrap();
    }
    let out: Vec<_> = block_on(queue.as_mut().collect::<Vec<_>>());
    assert_eq!(out, [Ok(0), Err(1)]);
    assert_eq!(
        stats.converted.load(SeqCst),
        2,
        "nothing started after the rejection"
    );
    assert!(queue.is_stopped());
    assert!(queue.is_empty());
    assert!(matches!(
        queue.as_mut().push(stats.job(9, 0, false)),
        Err(PushError::Stopped(_))
    ));
    // The stream stays ended.
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Ready(None));
    assert!(queue.is_terminated());
}

#[test]
fn stop_on_rejection_in_completion_order_cancels_the_rest() {
    let stats = Stats::default();
    let mut queue = pin!(
        TaskQueue::new()
            .concurrency(3)
            .order(Yield::InCompletionOrder)
            .on_rejection(OnRejection::Stop)
    );
    queue.as_mut().push(stats.job(0, 5, false)).unwrap();
    queue.as_mut().push(stats.job(1, 1, true)).unwrap();
    queue.as_mut().push(stats.job(2, 5, false)).unwrap();
    queue.as_mut().push(stats.job(3, 0, false)).unwrap();
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    assert_eq!(queue.len(), 4);
    assert_eq!(queue.running(), 3);
    let out: Vec<_> = block_on(queue.as_mut().collect::<Vec<_>>());
    assert_eq!(out, [Err(1)]);
    assert_eq!(queue.len(), 0);
    assert_eq!(stats.running.load(SeqCst), 0);
    let log = stats.log();
    assert!(log.contains(&"cancel 0".to_string()), "{log:?}");
    assert!(log.contains(&"cancel 2".to_string()), "{log:?}");
    assert!(!log.contains(&"start 3".to_string()), "{log:?}");
}

#[test]
fn keep_going_yields_every_rejection() {
    let stats = Stats::default();
    let mut queue = pin!(TaskQueue::new().concurrency(2));
    for id in 0..6 {
        queue
            .as_mut()
            .push(stats.job(id, id % 2, id % 3 == 0))
            .unwrap();
    }
    let out: Vec<_> = block_on(queue.as_mut().collect::<Vec<_>>());
    assert_eq!(out, [Err(0), Ok(1), Ok(2), Err(3), Ok(4), Ok(5)]);
    assert!(!queue.is_stopped());
}

#[test]
fn stop_when_works_for_outputs_that_are_not_results() {
    let mut queue = pin!(TaskQueue::new().stop_when(|n: &u32| *n > 10));
    for n in [1, 20, 3] {
        queue.as_mut().push(std::future::ready(n)).unwrap();
    }
    assert_eq!(block_on(queue.as_mut().collect::<Vec<_>>()), [1, 20]);
}

#[test]
fn the_seeds_sequential_loop() {
    // const tasks = [Promise.try_defer(res => res(fetch(url))), ...];
    // while (tasks.length > 0) await tasks.shift();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut queue = pin!(TaskQueue::new());
    for url in 1..=4 {
        let log = log.clone();
        queue
            .as_mut()
            .push(DeferredPromise::lazy(move || async move {
                log.lock().unwrap().push(format!("fetch {url}"));
                yield_now().await;
                log.lock().unwrap().push(format!("done {url}"));
                Ok::<_, ()>(url)
            }))
            .unwrap();
    }
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing fetched before awaiting"
    );
    block_on(async {
        while let Some(response) = queue.next().await {
            log.lock()
                .unwrap()
                .push(format!("got {}", response.unwrap()));
        }
    });
    let expected: Vec<String> = (1..=4)
        .flat_map(|u| {
            [
                format!("fetch {u}"),
                format!("done {u}"),
                format!("got {u}"),
            ]
        })
        .collect();
    assert_eq!(*log.lock().unwrap(), expected);
}

#[test]
fn stream_contract_after_none() {
    let mut queue = pin!(TaskQueue::new());
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Ready(None));
    assert!(queue.is_terminated());
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Ready(None));
    queue.as_mut().push(std::future::ready(1)).unwrap();
    assert!(!queue.is_terminated());
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Ready(Some(1)));
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Ready(None));
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Ready(None));
}

#[test]
fn pushing_while_tasks_run() {
    let stats = Stats::default();
    let mut queue = pin!(TaskQueue::new().concurrency(2));
    queue.as_mut().push(stats.job(0, 2, false)).unwrap();
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    queue.as_mut().push(stats.job(1, 0, false)).unwrap();
    queue.as_mut().push(stats.job(2, 0, false)).unwrap();
    let out: Vec<_> = block_on(queue.as_mut().map(Result::unwrap).collect::<Vec<_>>());
    assert_eq!(out, [0, 1, 2]);
}

#[test]
#[cfg(not(feature = "alloc"))]
fn a_full_window_hands_the_task_back() {
    let stats = Stats::default();
    let mut queue = pin!(TaskQueue::with_capacity::<2>());
    queue.as_mut().push(stats.job(0, 0, false)).unwrap();
    queue.as_mut().push(stats.job(1, 0, false)).unwrap();
    let Err(PushError::Full(job)) = queue.as_mut().push(stats.job(2, 0, false)) else {
        panic!("the window is full");
    };
    assert_eq!(job.id, 2);
    let counter = WakeCounter::new();
    assert_eq!(
        poll_next(queue.as_mut(), &counter),
        Poll::Ready(Some(Ok(0)))
    );
    queue.as_mut().push(job).unwrap();
    let out: Vec<_> = block_on(queue.as_mut().collect::<Vec<_>>());
    assert_eq!(out, [Ok(1), Ok(2)]);
}

/// `cancel` and `set_priority` inside the inline window (the only storage
/// without `alloc`): a cancelled task comes back unconverted and frees its
/// slot for a push; a new priority reorders the queued tasks, behind their
/// equals; neither touches a running task.
#[test]
fn cancel_and_set_priority_inside_the_inline_window() {
    let stats = Stats::default();
    let mut queue = pin!(TaskQueue::with_capacity::<4>());
    let ids: Vec<_> = (0..4)
        .map(|id| queue.push(stats.job(id, 1, false)).unwrap())
        .collect();
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    assert_eq!(queue.running(), 1); // job 0
    assert!(queue.cancel(ids[0]).is_none(), "running");
    assert!(!queue.set_priority(ids[0], 9), "running");
    let job = queue.cancel(ids[2]).expect("queued");
    assert_eq!(job.id, 2);
    assert_eq!(stats.converted.load(SeqCst), 1, "only job 0 started");
    // Its slot is free again (without `alloc`: it would be `Full`).
    let four = queue.push(stats.job(4, 0, false)).unwrap();
    assert!(queue.set_priority(four, 1)); // before job 1
    assert!(queue.set_priority(ids[3], 1)); // after job 4: behind its equal
    assert!(queue.cancel(ids[2]).is_none(), "once");
    let out: Vec<usize> = block_on(queue.as_mut().map(Result::unwrap).collect());
    assert_eq!(out, [0, 4, 3, 1]);
    drop(job);
}

#[test]
fn a_wake_up_polls_only_the_woken_task_or_only_running_ones() {
    let gates: Vec<Gate> = (0..5).map(|_| Gate::new()).collect();
    let mut queue = pin!(
        TaskQueue::new()
            .concurrency(3)
            .order(Yield::InCompletionOrder)
    );
    for gate in &gates {
        queue.as_mut().push(gate.wait()).unwrap();
    }
    let counter = WakeCounter::new();
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    let polls = |gates: &[Gate]| gates.iter().map(Gate::polls).collect::<Vec<_>>();
    assert_eq!(polls(&gates), [1, 1, 1, 0, 0]);
    gates[1].open();
    assert_eq!(counter.wakes(), 1);
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Ready(Some(())));
    if cfg!(feature = "alloc") {
        // Per-task wake flags: only the woken task was polled.
        assert_eq!(polls(&gates), [1, 2, 1, 0, 0]);
    } else {
        // One waker for all: the running tasks were polled, never the
        // unstarted ones.
        assert_eq!(polls(&gates), [2, 2, 1, 0, 0]);
    }
    // The next poll starts task 3 (the freed slot).
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    assert_eq!(gates[3].polls(), 1);
    assert_eq!(gates[4].polls(), 0);
}

#[cfg(feature = "alloc")]
mod submitter {
    use super::*;
    use deferral::queue::Level;
    use std::future::Future;

    type Task = Pin<Box<dyn Future<Output = u32> + Send>>;

    #[test]
    fn a_running_task_pushes_into_its_own_queue() {
        let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
        let submit = queue.as_mut().submitter();
        let inner = submit.clone();
        queue
            .as_mut()
            .push(Box::pin(async move {
                yield_now().await;
                let again = inner.clone();
                inner
                    .submit(Box::pin(async move {
                        again.submit(Box::pin(async { 3 })).unwrap();
                        2
                    }))
                    .unwrap();
                1
            }))
            .unwrap();
        // `submit` keeps the queue open: run it until it is idle.
        let out: Vec<u32> = block_on(queue.as_mut().until(Level::Idle).collect::<Vec<_>>());
        assert_eq!(out, [1, 2, 3]);
        assert!(!submit.is_closed());
    }

    #[test]
    fn another_thread_submits_while_the_queue_waits() {
        let mut queue = pin!(TaskQueue::<Task>::new());
        let submit = queue.as_mut().submitter();
        let gate = Gate::new();
        let wait = gate.wait();
        queue
            .as_mut()
            .push(Box::pin(async move {
                wait.await;
                1
            }))
            .unwrap();
        let handle = std::thread::spawn(move || {
            submit.submit(Box::pin(async { 2 })).unwrap();
            gate.open();
        });
        let out: Vec<u32> = block_on(queue.as_mut().take(2).collect::<Vec<_>>());
        handle.join().unwrap();
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn threads_submit_concurrently_every_task_comes_out_once() {
        let (threads, per_thread) = if cfg!(miri) { (3, 10) } else { (4, 500) };
        let mut queue = pin!(TaskQueue::<Task>::new().concurrency(3));
        let submit = queue.as_mut().submitter();
        let gate = Gate::new();
        let wait = gate.wait();
        // Keeps the queue alive (not empty) until every thread is done.
        queue
            .as_mut()
            .push(Box::pin(async move {
                wait.await;
                u32::MAX
            }))
            .unwrap();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let submit = submit.clone();
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        let n = (t * per_thread + i) as u32;
                        submit
                            .submit(Box::pin(async move {
                                yield_now().await;
                                n
                            }))
                            .unwrap();
                    }
                })
            })
            .collect();
        // The threads' clones keep the queue open until they are done.
        drop(submit);
        let opener = std::thread::spawn({
            let gate = gate.clone();
            move || {
                handles.into_iter().for_each(|h| h.join().unwrap());
                gate.open();
            }
        });
        let mut out: Vec<u32> = block_on(queue.as_mut().collect::<Vec<_>>());
        opener.join().unwrap();
        out.sort();
        let mut expected: Vec<u32> = (0..(threads * per_thread) as u32).collect();
        expected.push(u32::MAX);
        assert_eq!(out, expected);
    }

    #[test]
    fn submissions_after_drop_or_stop_are_refused_and_never_run() {
        let ran = Arc::new(AtomicUsize::new(0));
        let task = |n: u32| -> Task {
            let ran = ran.clone();
            Box::pin(async move {
                ran.fetch_add(1, SeqCst);
                n
            })
        };
        let mut queue = Box::pin(TaskQueue::<Task>::new().stop_when(|n| *n == 0));
        let submit = queue.as_mut().submitter();
        submit.submit(task(1)).unwrap();
        drop(queue);
        assert!(submit.is_closed());
        assert!(matches!(submit.submit(task(2)), Err(PushError::Closed(_))));
        assert_eq!(ran.load(SeqCst), 0);

        let mut queue = pin!(TaskQueue::<Task>::new().stop_when(|n| *n == 0));
        let submit = queue.as_mut().submitter();
        submit.submit(task(0)).unwrap();
        assert_eq!(block_on(queue.as_mut().collect::<Vec<_>>()), [0]);
        assert!(submit.submit(task(5)).is_err());
        assert_eq!(ran.load(SeqCst), 1);
    }

    #[test]
    fn many_tasks_beyond_the_window() {
        let n = if cfg!(miri) { 40 } else { 1000 };
        let stats = Stats::default();
        let mut queue = pin!(TaskQueue::with_capacity::<4>().concurrency(3));
        for id in 0..n {
            queue
                .as_mut()
                .push(stats.job(id, yields_of(id), false))
                .unwrap();
        }
        let out: Vec<usize> = block_on(queue.as_mut().map(Result::unwrap).collect::<Vec<_>>());
        assert_eq!(out, (0..n).collect::<Vec<_>>());
        assert_eq!(stats.max_running.load(SeqCst), 3);
    }
}

#[test]
fn len_counts_tasks_not_window_slots() {
    let stats = Stats::default();
    let mut queue = pin!(
        TaskQueue::with_capacity::<4>()
            .concurrency(3)
            .order(Yield::InCompletionOrder)
    );
    queue.as_mut().push(stats.job(0, 5, false)).unwrap();
    queue.as_mut().push(stats.job(1, 0, false)).unwrap();
    queue.as_mut().push(stats.job(2, 5, false)).unwrap();
    queue.as_mut().push(stats.job(3, 5, false)).unwrap();
    let counter = WakeCounter::new();
    assert_eq!(
        poll_next(queue.as_mut(), &counter),
        Poll::Ready(Some(Ok(1)))
    );
    // Job 1's result came out as soon as it finished (job 2 is not started
    // yet); its slot stays in use behind the slow job 0: three tasks held.
    assert_eq!(queue.len(), 3);
    assert_eq!(queue.running(), 1);
    assert_eq!(poll_next(queue.as_mut(), &counter), Poll::Pending);
    assert_eq!((queue.len(), queue.running()), (3, 3));
    let rest: Vec<_> = block_on(queue.as_mut().map(Result::unwrap).collect::<Vec<_>>());
    assert_eq!(rest.len(), 3);
    assert!(queue.is_empty());
}
