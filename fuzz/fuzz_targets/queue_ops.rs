//! Random sequences of push / submit / poll / wake / drop operations on a
//! `TaskQueue`, with tasks that finish after a random number of polls,
//! reject, panic once in a poll, or submit a follow-up task from inside,
//! checked against a model: every task is started at most once and ends
//! exactly once (finished, cancelled while running, or dropped unstarted),
//! never more than `k` run at once, results come out once each and in
//! submission order when asked, and after a stop nothing starts and the
//! stream ends with the rejection.
#![no_main]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use deferral::{OnRejection, PushError, Submitter, TaskQueue, Yield};
use futures::Stream;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Spec {
    polls: u8,
    rejects: bool,
    panics: bool,
    /// Submits a follow-up task when it finishes.
    follow_up: bool,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Push(Spec),
    Submit(Spec),
    Poll,
    /// Wakes the stored waker of one task.
    Wake(u8),
    WakeAll,
    Drop,
}

#[derive(Debug, Arbitrary)]
struct Input {
    completion_order: bool,
    stop: bool,
    concurrency: u8,
    ops: Vec<Op>,
}

const INJECTED: &str = "fuzz-injected panic";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Finished,
    Cancelled,
    DroppedUnstarted,
}

#[derive(Default)]
struct Record {
    started: usize,
    ends: Vec<End>,
}

struct Shared {
    records: Mutex<BTreeMap<usize, Record>>,
    next_id: AtomicUsize,
    running: AtomicUsize,
    limit: usize,
    wakers: Mutex<BTreeMap<usize, Waker>>,
}

impl Shared {
    fn end(&self, id: usize, end: End) {
        self.records.lock().unwrap().entry(id).or_default().ends.push(end);
    }

    fn task(self: &Arc<Self>, spec: &Spec, submit: &Submitter<Task>) -> Task {
        let id = self.next_id.fetch_add(1, SeqCst);
        self.records.lock().unwrap().insert(id, Record::default());
        Task {
            id,
            polls: spec.polls % 8,
            rejects: spec.rejects,
            panics: spec.panics,
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
    panics: bool,
    follow_up: Option<Submitter<Task>>,
    shared: Arc<Shared>,
    converted: bool,
}

impl Drop for Task {
    fn drop(&mut self) {
        if !self.converted {
            self.shared.end(self.id, End::DroppedUnstarted);
        }
    }
}

impl IntoFuture for Task {
    type Output = Result<usize, usize>;
    type IntoFuture = Running;
    fn into_future(mut self) -> Running {
        self.converted = true;
        Running {
            task: self,
            started: false,
            done: false,
        }
    }
}

struct Running {
    task: Task,
    started: bool,
    done: bool,
}

impl Future for Running {
    type Output = Result<usize, usize>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "a finished task was polled again");
        let id = self.task.id;
        let shared = self.task.shared.clone();
        if !self.started {
            self.started = true;
            shared.records.lock().unwrap().get_mut(&id).unwrap().started += 1;
            let now = shared.running.fetch_add(1, SeqCst) + 1;
            assert!(now <= shared.limit, "{now} tasks run at once, limit {}", shared.limit);
        }
        shared.wakers.lock().unwrap().insert(id, cx.waker().clone());
        if self.task.panics {
            self.task.panics = false;
            panic!("{INJECTED}");
        }
        if self.task.polls > 0 {
            self.task.polls -= 1;
            return Poll::Pending;
        }
        self.done = true;
        shared.running.fetch_sub(1, SeqCst);
        shared.wakers.lock().unwrap().remove(&id);
        shared.end(id, End::Finished);
        if let Some(submit) = self.task.follow_up.take() {
            let spec = Spec {
                polls: id as u8,
                rejects: false,
                panics: false,
                follow_up: false,
            };
            let child = shared.task(&spec, &submit);
            match submit.submit(child) {
                Ok(()) => {}
                Err(PushError::Closed(child) | PushError::Stopped(child)) => drop(child),
                Err(PushError::Full(_)) => panic!("a submitter is unbounded"),
            }
        }
        Poll::Ready(if self.task.rejects { Err(id) } else { Ok(id) })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.started && !self.done {
            self.task.shared.running.fetch_sub(1, SeqCst);
            self.task.shared.end(self.task.id, End::Cancelled);
        }
    }
}

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
}

fn poll(queue: Pin<&mut TaskQueue<Task, 4>>, model: &mut Model) -> Option<Poll<Option<()>>> {
    let stopped_before = queue.is_stopped();
    let mut cx = Context::from_waker(Waker::noop());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut queue = queue;
        let out = queue.as_mut().poll_next(&mut cx);
        (out, queue.is_stopped())
    }));
    let Ok((out, stopped)) = result else {
        return None; // an injected panic: the queue must stay sound
    };
    if stopped_before {
        assert!(stopped, "a stopped queue stays stopped");
    }
    Some(match out {
        Poll::Pending => Poll::Pending,
        Poll::Ready(None) => {
            if model.rejected {
                model.ended_on_stop = true;
            }
            Poll::Ready(None)
        }
        Poll::Ready(Some(result)) => {
            assert!(!model.ended_on_stop, "a result after the stream ended on a stop");
            assert!(!model.rejected, "a result after the rejection that stopped the queue");
            let id = match result {
                Ok(id) => id,
                Err(id) => {
                    if model.stop {
                        model.rejected = true;
                    }
                    id
                }
            };
            assert!(!model.yielded.contains(&id), "task {id} yielded twice");
            model.yielded.push(id);
            Poll::Ready(Some(()))
        }
    })
}

fn run(input: Input) {
    let limit = 1 + input.concurrency as usize % 5; // 5 > the window of 4
    let order = if input.completion_order {
        Yield::InCompletionOrder
    } else {
        Yield::InSubmissionOrder
    };
    let on_rejection = if input.stop {
        OnRejection::Stop
    } else {
        OnRejection::KeepGoing
    };
    let shared = Arc::new(Shared {
        records: Mutex::new(BTreeMap::new()),
        next_id: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        limit: limit.min(4),
        wakers: Mutex::new(BTreeMap::new()),
    });
    let mut model = Model {
        order,
        stop: input.stop,
        yielded: Vec::new(),
        ended_on_stop: false,
        rejected: false,
        pushed: Vec::new(),
    };
    let mut queue = Box::pin(
        TaskQueue::<Task>::with_capacity::<4>()
            .concurrency(limit)
            .order(order)
            .on_rejection(on_rejection),
    );
    let submit = queue.as_mut().submitter();
    let mut panicked = false;
    let mut dropped = false;
    for op in input.ops.iter().take(256) {
        match op {
            Op::Push(spec) => {
                let task = shared.task(spec, &submit);
                let id = task.id;
                match queue.as_mut().push(task) {
                    Ok(()) => model.pushed.push(id),
                    Err(PushError::Stopped(task)) => {
                        assert!(queue.is_stopped());
                        drop(task);
                    }
                    Err(e) => panic!("unexpected refusal {e}"),
                }
            }
            Op::Submit(spec) => {
                let task = shared.task(spec, &submit);
                if let Err(refused) = submit.submit(task) {
                    assert!(queue.is_stopped(), "refused {refused}");
                }
            }
            Op::Poll => {
                if poll(queue.as_mut(), &mut model).is_none() {
                    panicked = true;
                }
            }
            Op::Wake(i) => {
                let waker = shared.wakers.lock().unwrap().values().nth(*i as usize).cloned();
                if let Some(w) = waker {
                    w.wake();
                }
            }
            Op::WakeAll => {
                let wakers: Vec<Waker> = shared.wakers.lock().unwrap().values().cloned().collect();
                wakers.into_iter().for_each(Waker::wake);
            }
            Op::Drop => {
                dropped = true;
                break;
            }
        }
    }

    if !dropped {
        // Run to the end: wake everything between polls (a caught panic
        // loses at most the panicking task's wake-up).
        let mut finished = false;
        for _ in 0..10_000 {
            match poll(queue.as_mut(), &mut model) {
                Some(Poll::Ready(None)) => {
                    finished = true;
                    break;
                }
                None => panicked = true,
                _ => {}
            }
            let wakers: Vec<Waker> = shared.wakers.lock().unwrap().values().cloned().collect();
            wakers.into_iter().for_each(Waker::wake);
        }
        assert!(finished, "the queue never ended");
        assert!(queue.is_empty());
        assert_eq!(shared.running.load(SeqCst), 0);
        if !input.stop {
            // Keep going: every task pushed was yielded.
            for id in &model.pushed {
                assert!(model.yielded.contains(id), "task {id} was never yielded");
            }
        }
    }
    drop(queue);
    assert!(submit.is_closed());
    let _ = panicked;

    // Submission order: the pushed tasks come out in push order.
    if model.order == Yield::InSubmissionOrder {
        let pushed_yielded: Vec<usize> =
            model.yielded.iter().copied().filter(|id| model.pushed.contains(id)).collect();
        let mut sorted = pushed_yielded.clone();
        sorted.sort();
        assert_eq!(pushed_yielded, sorted, "submission order broken");
    }

    // Every task created ended exactly once; started iff it did not end
    // unstarted; never started twice.
    drop(submit);
    assert_eq!(shared.running.load(SeqCst), 0);
    let records = shared.records.lock().unwrap();
    for (id, record) in records.iter() {
        assert_eq!(record.ends.len(), 1, "task {id} ended {:?}", record.ends);
        assert!(record.started <= 1, "task {id} started twice");
        let unstarted = record.ends[0] == End::DroppedUnstarted;
        assert_eq!(record.started == 0, unstarted, "task {id}: {:?}", record.ends);
        if record.ends[0] != End::Finished {
            assert!(!model.yielded.contains(id), "task {id} yielded without finishing");
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
