//! Ports of p-queue's documented and tested behaviours to `TaskQueue`:
//! concurrency limit, priority order, `onIdle`/`onEmpty`/`onSizeLessThan`,
//! pause/start, timeout (per task too), `setPriority`, aborting a queued
//! task, `clear`, `addAll`, throttling. Each test cites its source in
//! sindresorhus/p-queue: `test/test.ts` (the test's name) or `readme.md`
//! (the section), at commit 0545d6f for the first ones; the ports of
//! `.onSizeLessThan()`, `.setPriority()`, the timeout overrides and the
//! aborts come from a later `test/test.ts` (the one with the "mass abort"
//! tests, near its end), cited by name and by the `// p-queue:` line they
//! follow.
//!
//! Two differences run through the ports. p-queue starts a task inside
//! `add()`; a `TaskQueue` starts tasks when it is polled, so where a
//! p-queue test reads `size`/`pending` right after `add()` the port polls
//! once first. And a p-queue task hands its result to `add()`'s promise,
//! while a `TaskQueue` yields results as a stream: the ports run the queue
//! with `until(Level::Idle)`/`until(Level::Empty)`, counting the results
//! (p-queue's `onIdle`/`onEmpty` discard them), and record what the tasks
//! did in a shared log. p-queue aborts a task through an `AbortSignal`,
//! running or not; `TaskQueue::cancel` takes a task that has not started
//! out of the queue (a running one is cancelled by dropping it: make it
//! `Abortable`, or give it a timeout), so the abort ports abort before the
//! start.
//!
//! Time is virtual: [`Clock`] is a manual clock whose `sleep` futures
//! complete when it is advanced past their deadline; the queue gets it as
//! its timer factory, and the tasks `delay` on it. [`Clock::run_until`]
//! polls a future with a flag waker and advances the clock only when the
//! future is pending *and was not woken* — so a lost wake-up shows as a
//! stall, never as a hidden repoll.

#![cfg(feature = "alloc")]

mod support;

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::Poll;
use std::time::Duration;

use deferral::TaskQueue;
use deferral::queue::{BoxTask, Level, Options, TaskId, TimedOut};
use futures::StreamExt;

use support::clock::{Clock, Log, Task, delayed, poll_stream_once as poll_once};

// ----------------------------------------------------------- concurrency

/// test/test.ts ".add() - limited concurrency": concurrency 2, three
/// tasks: two run (`pending`), one waits (`size`).
#[test]
fn limited_concurrency_size_and_pending() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    for (i, ms) in [10, 100, 0].into_iter().enumerate() {
        queue.as_mut().push(delayed(&clock, ms, &log, i)).unwrap();
    }
    let _ = poll_once(queue.as_mut());
    assert_eq!((queue.unstarted(), queue.running()), (1, 2));
    clock.run(queue.as_mut().until(Level::Idle).count());
    assert_eq!(log.get(), [0, 2, 1]);
}

/// test/test.ts ".add() - concurrency: 5": 100 tasks of random length,
/// never more than 5 running (`running <= concurrency` and
/// `queue.pending <= concurrency` inside every task).
#[test]
fn concurrency_5_is_never_exceeded() {
    let clock = Clock::default();
    let running = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut queue = pin!(TaskQueue::<Task>::with_capacity::<128>().concurrency(5));
    for i in 0..100u64 {
        let (clock2, running, max) = (clock.clone(), running.clone(), max.clone());
        queue
            .as_mut()
            .push(Box::pin(async move {
                let now = running.fetch_add(1, SeqCst) + 1;
                max.fetch_max(now, SeqCst);
                clock2.delay(30 + (i * 37) % 170).await; // randomInt(30, 200)
                running.fetch_sub(1, SeqCst);
            }))
            .unwrap();
        assert!(queue.running() <= 5);
    }
    clock.run(queue.as_mut().until(Level::Idle).count());
    assert_eq!(max.load(SeqCst), 5);
    assert_eq!(running.load(SeqCst), 0);
}

/// test/test.ts "enforce number in options.concurrency": 0 throws a
/// `TypeError`; 1 and 10 do not. Here: a typed error that hands the queue
/// back, at construction and at run time.
#[test]
fn concurrency_zero_is_a_typed_error() {
    let queue = TaskQueue::<Task>::new();
    let err = queue.try_concurrency(0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a task queue's concurrency must be at least 1"
    );
    let queue = err.into_inner();
    let queue = queue
        .try_concurrency(1)
        .unwrap()
        .try_concurrency(10)
        .unwrap();
    let mut queue = pin!(queue);
    assert!(queue.as_mut().set_concurrency(0).is_err());
    assert_eq!(queue.max_running(), 10, "unchanged by the refusal");
}

// -------------------------------------------------------------- priority

/// test/test.ts ".add() - priority": concurrency 1, priorities 1, 0, 1,
/// 1, 2, -1 → `[1, 3, 1, 2, 0, 0]` (the first runs at once in p-queue;
/// here the first poll starts it, before the others are pushed). Also
/// readme.md `priority`: "Operations with greater priority will be
/// scheduled first."
#[test]
fn priority_order() {
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new());
    let task = |n: u32| -> Task {
        let log = log.clone();
        Box::pin(async move { log.push(n) })
    };
    queue
        .as_mut()
        .push_with(task(1), Options::new().priority(1))
        .unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Ready(Some(())));
    queue
        .as_mut()
        .push_with(task(0), Options::new().priority(0))
        .unwrap();
    queue
        .as_mut()
        .push_with(task(1), Options::new().priority(1))
        .unwrap();
    queue
        .as_mut()
        .push_with(task(2), Options::new().priority(1))
        .unwrap();
    queue
        .as_mut()
        .push_with(task(3), Options::new().priority(2))
        .unwrap();
    queue
        .as_mut()
        .push_with(task(0), Options::new().priority(-1))
        .unwrap();
    Clock::default().run(queue.as_mut().until(Level::Empty).count());
    Clock::default().run(queue.as_mut().until(Level::Idle).count());
    assert_eq!(log.get(), [1, 3, 1, 2, 0, 0]);
}

/// Priority beyond the inline window (`alloc`): a window of 2, tasks
/// waiting on the heap, a later high-priority push overtakes all of them
/// — the window's own queued tasks included.
#[test]
fn priority_order_beyond_the_inline_window() {
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::with_capacity::<2>());
    let task = |n: u32| -> Task {
        let log = log.clone();
        Box::pin(async move { log.push(n) })
    };
    for (n, p) in [
        (10, 0),
        (11, 0),
        (12, 0),
        (20, 1),
        (13, 0),
        (30, 5),
        (21, 1),
    ] {
        queue
            .as_mut()
            .push_with(task(n), Options::new().priority(p))
            .unwrap();
    }
    Clock::default().run(queue.as_mut().until(Level::Idle).count());
    assert_eq!(log.get(), [30, 20, 21, 10, 11, 12, 13]);
}

// ------------------------------------------------------ onEmpty / onIdle

/// test/test.ts ".onEmpty()": concurrency 1, two tasks: `size` 1 and
/// `pending` 1; `onEmpty` resolves with `size` 0; again; and at once on an
/// empty queue. readme.md `.onEmpty()`: "settles when the queue becomes
/// empty. Can be called multiple times."
#[test]
fn on_empty() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new());
    for round in 0..2 {
        queue
            .as_mut()
            .push(delayed(&clock, 10, &log, round))
            .unwrap();
        queue
            .as_mut()
            .push(delayed(&clock, 10, &log, round))
            .unwrap();
        let _ = poll_once(queue.as_mut());
        assert_eq!((queue.unstarted(), queue.running()), (1, 1));
        clock.run(queue.as_mut().until(Level::Empty).count());
        assert_eq!(queue.unstarted(), 0);
        assert_eq!(queue.running(), 1, "empty, not idle: the last one runs");
        clock.run(queue.as_mut().until(Level::Idle).count());
    }
    // An empty queue is empty at once.
    assert_eq!(clock.run(queue.as_mut().until(Level::Empty).count()), 0);
    assert_eq!(queue.unstarted(), 0);
}

/// test/test.ts ".onIdle()": concurrency 2, three tasks: `size` 1,
/// `pending` 2; after `onIdle` both 0; twice. readme.md `.onIdle()`:
/// "settles when the queue becomes empty, and all promises have
/// completed; `queue.size === 0 && queue.pending === 0`".
#[test]
fn on_idle() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    for round in 0..2 {
        for _ in 0..3 {
            queue
                .as_mut()
                .push(delayed(&clock, 100, &log, round))
                .unwrap();
        }
        let _ = poll_once(queue.as_mut());
        assert_eq!((queue.unstarted(), queue.running()), (1, 2));
        let start = clock.now();
        clock.run(queue.as_mut().until(Level::Idle).count());
        assert_eq!((queue.unstarted(), queue.running()), (0, 0));
        assert_eq!(clock.now() - start, 200, "two rounds of 100 ms");
    }
    assert_eq!(log.get().len(), 6);
}

/// test/test.ts ".onIdle() - no pending": an empty queue is idle at once.
#[test]
fn on_idle_with_nothing_pending() {
    let mut queue = pin!(TaskQueue::<Task>::new());
    assert_eq!((queue.unstarted(), queue.running()), (0, 0));
    assert_eq!(
        Clock::default().run(queue.as_mut().until(Level::Idle).count()),
        0
    );
}

/// `onIdle` on a queue that submitters keep open resolves (the stream
/// itself would wait), and `until_idle` yields the results it discards.
#[test]
fn on_idle_resolves_while_a_submitter_keeps_the_queue_open() {
    let clock = Clock::default();
    let mut queue = pin!(TaskQueue::<BoxTask<'static, u32>>::new().concurrency(2));
    let submit = queue.as_mut().submitter();
    for n in 0..3 {
        let clock2 = clock.clone();
        submit
            .submit_boxed(async move {
                clock2.delay(10 * u64::from(n)).await;
                n
            })
            .unwrap();
    }
    let got: Vec<u32> = clock.run(queue.as_mut().until(Level::Idle).collect());
    assert_eq!(got, [0, 1, 2]);
    // Still open: the stream waits for the submitter.
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    drop(submit);
    assert_eq!(poll_once(queue.as_mut()), Poll::Ready(None));
}

// ---------------------------------------------------------- pause/start

/// test/test.ts ".pause()": concurrency 2; paused, five tasks: `size` 5,
/// `pending` 0, `isPaused`; start: `size` 3, `pending` 2; one more and
/// pause: `size` 4, `pending` 2; start: unchanged until they finish;
/// clear: `size` 0. readme.md `.pause()`: "Put queue execution on hold."
#[test]
fn pause_and_start() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    queue.as_mut().pause();
    for i in 0..5 {
        queue
            .as_mut()
            .push(delayed(&clock, 20_000, &log, i))
            .unwrap();
    }
    assert_eq!(
        poll_once(queue.as_mut()),
        Poll::Pending,
        "paused: not ended"
    );
    assert_eq!((queue.unstarted(), queue.running()), (5, 0));
    assert!(queue.is_paused());

    queue.as_mut().resume();
    let _ = poll_once(queue.as_mut());
    assert_eq!((queue.unstarted(), queue.running()), (3, 2));
    assert!(!queue.is_paused());

    queue
        .as_mut()
        .push(delayed(&clock, 20_000, &log, 5))
        .unwrap();
    queue.as_mut().pause();
    let _ = poll_once(queue.as_mut());
    assert_eq!((queue.unstarted(), queue.running()), (4, 2));
    assert!(queue.is_paused());

    queue.as_mut().resume();
    let _ = poll_once(queue.as_mut());
    assert_eq!((queue.unstarted(), queue.running()), (4, 2));
    assert!(!queue.is_paused());

    assert_eq!(queue.as_mut().clear(), 4);
    assert_eq!(queue.unstarted(), 0);
}

/// test/test.ts "autoStart: false" and ".start() - return this": a queue
/// that does not start until told, then `await queue.start().onIdle()`.
#[test]
fn paused_at_creation_then_started_until_idle() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    queue.as_mut().pause();
    for i in 0..3 {
        queue.as_mut().push(delayed(&clock, 100, &log, i)).unwrap();
    }
    assert_eq!(
        clock.run_until(pin!(queue.as_mut().until(Level::Idle).count()), 1_000),
        None
    );
    assert_eq!((queue.unstarted(), queue.running()), (3, 0));
    queue.as_mut().resume();
    clock.run(queue.as_mut().until(Level::Idle).count());
    assert_eq!((queue.unstarted(), queue.running()), (0, 0));
    assert_eq!(log.get(), [0, 1, 2]);
}

/// Pausing stops only starts: the running tasks finish and their results
/// come out (readme.md `.pause()`, `.start()`).
#[test]
fn running_tasks_finish_while_paused() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    for i in 0..4 {
        queue.as_mut().push(delayed(&clock, 10, &log, i)).unwrap();
    }
    let _ = poll_once(queue.as_mut());
    queue.as_mut().pause();
    assert_eq!(
        clock.run_until(pin!(queue.as_mut().until(Level::Idle).count()), 1_000),
        None
    );
    assert_eq!(log.get(), [0, 1]);
    assert_eq!((queue.unstarted(), queue.running()), (2, 0));
}

// --------------------------------------------------------------- timeout

/// test/test.ts ".add() - timeout without throwing": timeout 300 ms; tasks
/// of 400, 250, 301, 100 and 0 ms; after `onIdle` only the three within
/// the timeout finished (`['⚡️', '🐅', '🦆']`). readme.md `timeout`:
/// "Per-operation timeout in milliseconds."
#[test]
fn timeout_drops_the_slow_tasks() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(5)
            .timer(clock.timer())
            .timeout(Duration::from_millis(300))
    );
    for (ms, name) in [
        (400, "🐌"),
        (250, "🦆"),
        (301, "🐢"),
        (100, "🐅"),
        (0, "⚡️"),
    ] {
        queue
            .as_mut()
            .push(delayed(&clock, ms, &log, name))
            .unwrap();
    }
    clock.run(queue.as_mut().until(Level::Idle).count());
    assert_eq!(log.get(), ["⚡️", "🐅", "🦆"]);
    assert_eq!(clock.now(), 300, "the slow ones were dropped at 300 ms");
}

/// test/test.ts ".add() - timeout with throwing": the timed-out task
/// rejects (`TimeoutError`), the other one finishes. Here: the stream
/// yields `Err(TimedOut)` for it, `Ok` for the other, in start order.
#[test]
fn timeout_is_reported_as_its_own_outcome() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(2)
            .timer(clock.timer())
            .timeout(Duration::from_millis(300))
    );
    queue
        .as_mut()
        .push(delayed(&clock, 400, &log, "🐌"))
        .unwrap();
    queue
        .as_mut()
        .push(delayed(&clock, 200, &log, "🦆"))
        .unwrap();
    let outcomes: Vec<Result<(), TimedOut>> = clock.run(queue.as_mut().collect());
    assert_eq!(outcomes, [Err(TimedOut), Ok(())]);
    assert_eq!(log.get(), ["🦆"]);
}

/// The timeout counts from the task's start, not from its push (p-queue
/// starts the timer when the operation runs): with concurrency 1, the
/// second 200 ms task starts at 200 ms and finishes within its 300 ms.
#[test]
fn timeout_counts_from_the_start() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .timer(clock.timer())
            .timeout(Duration::from_millis(300))
    );
    for i in 0..3 {
        queue.as_mut().push(delayed(&clock, 200, &log, i)).unwrap();
    }
    let outcomes: Vec<_> = clock.run(queue.as_mut().collect());
    assert_eq!(outcomes, [Ok(()), Ok(()), Ok(())]);
    assert_eq!(clock.now(), 600);
}

// ------------------------------------------------------------------ clear

/// test/test.ts ".clear()": concurrency 2, six long tasks: `size` 4,
/// `pending` 2; `clear()`: `size` 0 (the running ones go on). readme.md
/// `.clear()`: "Clear the queue."
#[test]
fn clear_drops_the_unstarted_tasks() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    for i in 0..6 {
        queue
            .as_mut()
            .push(delayed(&clock, 20_000, &log, i))
            .unwrap();
    }
    let _ = poll_once(queue.as_mut());
    assert_eq!((queue.unstarted(), queue.running()), (4, 2));
    assert_eq!(queue.as_mut().clear(), 4);
    assert_eq!((queue.unstarted(), queue.running()), (0, 2));
    clock.run(queue.as_mut().until(Level::Idle).count());
    assert_eq!(log.get(), [0, 1], "the cleared tasks never ran");
}

/// `clear` also drops submissions not taken yet.
#[test]
fn clear_drops_pending_submissions() {
    let mut queue = pin!(TaskQueue::<Task>::new());
    let submit = queue.as_mut().submitter();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let ran = ran.clone();
        submit
            .submit(Box::pin(async move {
                ran.fetch_add(1, SeqCst);
            }))
            .unwrap();
    }
    assert_eq!(queue.as_mut().clear(), 3);
    drop(submit);
    assert_eq!(Clock::default().run(queue.as_mut().count()), 0);
    assert_eq!(ran.load(SeqCst), 0);
}

// ----------------------------------------------------------------- addAll

/// test/test.ts ".addAll()": `addAll([fn, fn])` resolves to both results,
/// in order. readme.md `.addAll(fns)`: "Same as `.add()`, but accepts an
/// array".
#[test]
fn add_all() {
    let mut queue = pin!(TaskQueue::new().concurrency(2));
    let fixture = || async { "fixture" };
    let pushed = queue.as_mut().push_all([fixture(), fixture()]).unwrap();
    assert_eq!(pushed, 2);
    assert_eq!(queue.unstarted(), 2);
    let out: Vec<_> = Clock::default().run(queue.as_mut().collect());
    assert_eq!(out, ["fixture", "fixture"]);
}

/// test/test.ts ".addAll() sync/async mixed tasks": mixed task types in
/// one call — here `BoxTask`s — results in submission order.
#[test]
fn add_all_mixed_tasks() {
    let clock = Clock::default();
    let mut queue = pin!(TaskQueue::<BoxTask<'static, &str>>::new().concurrency(4));
    let sleep = clock.delay(2000);
    let tasks: Vec<BoxTask<'static, &str>> = vec![
        Box::pin(async { "sync 1" }),
        Box::pin(async move {
            sleep.await;
            "delayed"
        }),
        Box::pin(std::future::ready("sync 2")),
        Box::pin(futures::future::lazy(|_| "fixture")),
    ];
    queue.as_mut().push_all(tasks).unwrap();
    let out: Vec<_> = clock.run(queue.as_mut().collect());
    assert_eq!(out, ["sync 1", "delayed", "sync 2", "fixture"]);
}

// ------------------------------------------------------------- throttling

/// test/test.ts ".add() - throttled": `intervalCap: 1, interval: 500`;
/// the second task, added at 250 ms, runs only once the interval is over.
/// readme.md `intervalCap`: "The max number of runs in the given interval
/// of time."
#[test]
fn throttled() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(4)
            .timer(clock.timer())
            .rate_limit(1, Duration::from_millis(500))
    );
    let _open = queue.as_mut().submitter(); // p-queue's queue never ends
    let push = |queue: Pin<&mut TaskQueue<Task, 16, _>>, n: u32| {
        let log = log.clone();
        queue.push(Box::pin(async move { log.push(n) })).unwrap();
    };
    push(queue.as_mut(), 1);
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 250), None);
    push(queue.as_mut(), 2);
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 490), None);
    assert_eq!(log.get(), [1]);
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 550), None);
    assert_eq!(log.get(), [1, 2]);
}

/// test/test.ts ".add() - throttled 10, concurrency 5": 13 tasks of
/// 300 ms, at most 10 starts per 1000 ms and 5 at once: 5 results at
/// 400 ms (5 running), 10 at 700 ms, still 10 at 1200 ms (3 running),
/// 13 at 1400 ms.
#[test]
fn throttled_10_concurrency_5() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(5)
            .timer(clock.timer())
            .rate_limit(10, Duration::from_millis(1000))
    );
    for i in 0..13 {
        queue.as_mut().push(delayed(&clock, 300, &log, i)).unwrap();
    }
    {
        let mut drain = pin!(queue.as_mut().count());
        assert_eq!(clock.run_until(drain.as_mut(), 400), None);
        assert_eq!(log.get(), (0..5).collect::<Vec<_>>());
        assert_eq!(clock.run_until(drain.as_mut(), 700), None);
        assert_eq!(log.get(), (0..10).collect::<Vec<_>>());
        assert_eq!(clock.run_until(drain.as_mut(), 1200), None);
        assert_eq!(log.get(), (0..10).collect::<Vec<_>>());
        assert_eq!(clock.run_until(drain.as_mut(), 1400), Some(13));
        assert_eq!(log.get(), (0..13).collect::<Vec<_>>());
    }
    assert_eq!(queue.running(), 0);
}

/// test/test.ts "pause should work when throttled": concurrency 2, 2 per
/// 1000 ms, four 100 ms tasks; paused at 600 ms until 1500 ms: the second
/// pair runs only after the resume.
#[test]
fn pause_works_when_throttled() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(2)
            .timer(clock.timer())
            .rate_limit(2, Duration::from_millis(1000))
    );
    for i in 0..4 {
        queue.as_mut().push(delayed(&clock, 100, &log, i)).unwrap();
    }
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 300), None);
    assert_eq!(log.get(), [0, 1]);
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 600), None);
    queue.as_mut().pause();
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 1400), None);
    assert_eq!(log.get(), [0, 1]);
    queue.as_mut().resume();
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 2200), Some(2));
    assert_eq!(log.get(), [0, 1, 2, 3]);
    assert!(clock.now() >= 1500);
}

// ------------------------------------------------------- onSizeLessThan

/// test/test.ts ".onSizeLessThan()": concurrency 1, five 100 ms tasks;
/// `onSizeLessThan(4)` → size 3, pending 1; `(2)` → 1, 1; `(10)` at once →
/// 1, 1; `(1)` → 0, 1.
#[test]
fn on_size_less_than() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new());
    for i in 0..5 {
        queue.push(delayed(&clock, 100, &log, i)).unwrap();
    }
    // p-queue: await queue.onSizeLessThan(4);
    clock.run(queue.as_mut().until(Level::Below(4)).count());
    assert_eq!((queue.unstarted(), queue.running()), (3, 1));
    // p-queue: await queue.onSizeLessThan(2);
    clock.run(queue.as_mut().until(Level::Below(2)).count());
    assert_eq!((queue.unstarted(), queue.running()), (1, 1));
    // p-queue: await queue.onSizeLessThan(10); (already: at once)
    let now = clock.now();
    assert_eq!(clock.run(queue.as_mut().until(Level::Below(10)).count()), 0);
    assert_eq!(
        (queue.unstarted(), queue.running(), clock.now()),
        (1, 1, now)
    );
    // p-queue: await queue.onSizeLessThan(1);
    clock.run(queue.as_mut().until(Level::Below(1)).count());
    assert_eq!((queue.unstarted(), queue.running()), (0, 1));
    assert_eq!(log.get(), [0, 1, 2, 3]);
}

// ------------------------------------------------------------ setPriority

type Named = BoxTask<'static, &'static str>;

/// p-queue's `async () => { await delay(ms); result.push(name) }`, whose
/// result here is its name: in submission order the stream yields the
/// names in start order, which is what priorities decide.
fn named(clock: &Clock, ms: u64, name: &'static str) -> Named {
    let sleep = clock.delay(ms);
    Box::pin(async move {
        sleep.await;
        name
    })
}

/// Pushes `names` (400 ms tasks) with the given concurrency, polls once
/// (p-queue starts tasks inside `add()`), then runs `change`; returns the
/// names in start order and the ids.
fn set_priority_case(
    concurrency: usize,
    names: &[&'static str],
    change: impl FnOnce(&TaskQueue<Named>, &[TaskId]),
) -> Vec<&'static str> {
    let clock = Clock::default();
    let mut queue = pin!(TaskQueue::<Named>::new().concurrency(concurrency));
    let ids: Vec<TaskId> = names
        .iter()
        .map(|name| queue.push(named(&clock, 400, name)).unwrap())
        .collect();
    let _ = poll_once(queue.as_mut());
    assert_eq!(queue.running(), concurrency);
    change(&queue, &ids);
    clock.run(queue.as_mut().collect())
}

/// test/test.ts ".setPriority() - execute a promise before planned".
#[test]
fn set_priority_before_planned() {
    let out = set_priority_case(1, &["🐌", "🦆", "🐢"], |queue, ids| {
        // p-queue: queue.setPriority('🐢', 1);
        assert!(queue.set_priority(ids[2], 1));
    });
    assert_eq!(out, ["🐌", "🐢", "🦆"]);
}

/// test/test.ts ".setPriority() - execute a promise after planned".
#[test]
fn set_priority_after_planned() {
    let names = ["🐌", "🦆", "🦆", "🐢", "🦆", "🦆"];
    let out = set_priority_case(1, &names, |queue, ids| {
        // p-queue: queue.setPriority('🐢', -1);
        assert!(queue.set_priority(ids[3], -1));
    });
    assert_eq!(out, ["🐌", "🦆", "🦆", "🦆", "🦆", "🐢"]);
}

/// test/test.ts ".setPriority() - execute a promise before planned -
/// concurrency 2".
#[test]
fn set_priority_before_planned_concurrency_2() {
    let out = set_priority_case(2, &["🐌", "🦆", "🐢", "⚡️"], |queue, ids| {
        // p-queue: queue.setPriority('⚡️', 1);
        assert!(queue.set_priority(ids[3], 1));
    });
    assert_eq!(out, ["🐌", "🦆", "⚡️", "🐢"]);
}

/// test/test.ts ".setPriority() - execute a promise before planned -
/// concurrency 3".
#[test]
fn set_priority_before_planned_concurrency_3() {
    let names = ["🐌", "🦆", "🐢", "⚡️", "🦀"];
    let out = set_priority_case(3, &names, |queue, ids| {
        // p-queue: queue.setPriority('🦀', 1);
        assert!(queue.set_priority(ids[4], 1));
    });
    assert_eq!(out, ["🐌", "🦆", "🐢", "🦀", "⚡️"]);
}

/// test/test.ts ".setPriority() - execute a multiple promise before
/// planned, with variable priority".
#[test]
fn set_priority_of_several_with_variable_priority() {
    let names = ["🐌", "🦆", "🐢", "⚡️", "🦀"];
    let out = set_priority_case(2, &names, |queue, ids| {
        // p-queue: queue.setPriority('⚡️', 1); queue.setPriority('🦀', 2);
        assert!(queue.set_priority(ids[3], 1));
        assert!(queue.set_priority(ids[4], 2));
    });
    assert_eq!(out, ["🐌", "🦆", "🦀", "⚡️", "🐢"]);
}

/// test/test.ts ".setPriority() - execute a promise before planned -
/// concurrency 3 and unspecified `id`": p-queue numbers tasks without an
/// `id` ('5' is the fifth); here every push returns its `TaskId`.
#[test]
fn set_priority_by_the_id_a_push_returned() {
    let names = ["🐌", "🦆", "🐢", "⚡️", "🦀"];
    let out = set_priority_case(3, &names, |queue, ids| {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "numbered in order");
        // p-queue: queue.setPriority('5', 1);
        assert!(queue.set_priority(ids[4], 1));
    });
    assert_eq!(out, ["🐌", "🦆", "🐢", "🦀", "⚡️"]);
}

/// p-queue throws (`ReferenceError`) for an id that is not queued; here
/// `set_priority` says `false` — for a running, a finished, a cancelled
/// and a cleared task — and changes nothing.
#[test]
fn set_priority_of_a_task_that_is_not_queued_is_refused() {
    let clock = Clock::default();
    let mut queue = pin!(TaskQueue::<Named>::new());
    let running = queue.push(named(&clock, 100, "running")).unwrap();
    let cancelled = queue.push(named(&clock, 100, "cancelled")).unwrap();
    let kept = queue.push(named(&clock, 100, "kept")).unwrap();
    let _ = poll_once(queue.as_mut());
    assert!(!queue.set_priority(running, 5));
    assert!(queue.cancel(cancelled).is_some());
    assert!(!queue.set_priority(cancelled, 5));
    let out: Vec<_> = clock.run(queue.as_mut().collect());
    assert_eq!(out, ["running", "kept"]);
    assert!(!queue.set_priority(kept, 5), "finished");
    let cleared = queue.push(named(&clock, 100, "cleared")).unwrap();
    assert_eq!(queue.clear(), 1);
    assert!(!queue.set_priority(cleared, 5));
}

/// `set_priority` across the inline window's edge: tasks beyond the
/// window (waiting on the heap) move into it and back, and the start order
/// stays "priority, then push order".
#[test]
fn set_priority_across_the_inline_window() {
    let clock = Clock::default();
    let mut queue = pin!(TaskQueue::<Named>::with_capacity::<2>());
    let names = ["a", "b", "c", "d", "e"];
    let ids: Vec<TaskId> = names
        .iter()
        .map(|name| queue.push(named(&clock, 10, name)).unwrap())
        .collect();
    assert!(queue.set_priority(ids[4], 2)); // e: from the heap to the front
    assert!(queue.set_priority(ids[0], -1)); // a: from the window to the back
    assert!(queue.set_priority(ids[2], 2)); // c: after e
    let out: Vec<_> = clock.run(queue.as_mut().collect());
    assert_eq!(out, ["e", "c", "b", "d", "a"]);
}

// ------------------------------------------------------- per-task timeout

/// test/test.ts "should verify timeout overrides passed to add": queue
/// timeout 200 ms; a 400 ms task times out, one with `{timeout: 600}` does
/// not, a 100 ms one does not, a 100 ms one with `{timeout: 50}` does.
/// (The `{throwOnTimeout: false}` case has no counterpart: a timed-out task
/// always yields `Err(TimedOut)`.) Plus: `timeout(None)`, no timeout at all.
#[test]
fn per_task_timeout_overrides_the_queues() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .timer(clock.timer())
            .timeout(Duration::from_millis(200))
    );
    let ms = Duration::from_millis;
    // p-queue: await t.throwsAsync(queue.add(async () => { await delay(400); }));
    queue.push(delayed(&clock, 400, &log, "400")).unwrap();
    // p-queue: queue.add(async () => { await delay(400); }, {timeout: 600})
    let own = Options::new().timeout(ms(600));
    queue
        .push_with(delayed(&clock, 400, &log, "400/600"), own)
        .unwrap();
    // p-queue: queue.add(async () => { await delay(100); })
    queue.push(delayed(&clock, 100, &log, "100")).unwrap();
    // p-queue: queue.add(async () => { await delay(100); }, {timeout: 50})
    let short = Options::new().timeout(ms(50));
    queue
        .push_with(delayed(&clock, 100, &log, "100/50"), short)
        .unwrap();
    let none = Options::new().timeout(None);
    queue
        .push_with(delayed(&clock, 5_000, &log, "5000/none"), none)
        .unwrap();
    let out: Vec<Result<(), TimedOut>> = clock.run(queue.as_mut().collect());
    assert_eq!(out, [Err(TimedOut), Ok(()), Ok(()), Err(TimedOut), Ok(())]);
    assert_eq!(log.get(), ["400/600", "100", "5000/none"]);
    // One at a time: 200 (timed out) + 400 + 100 + 50 (timed out) + 5000.
    assert_eq!(clock.now(), 5_750);
}

/// A queue made with `.timeout(None)` has no default: only the tasks
/// pushed with their own timeout can time out.
#[test]
fn only_tasks_with_their_own_timeout_time_out() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(2)
            .timer(clock.timer())
            .timeout(None)
    );
    queue
        .push(delayed(&clock, 1_000, &log, "no limit"))
        .unwrap();
    let own = Options::new().timeout(Duration::from_millis(10));
    queue
        .push_with(delayed(&clock, 1_000, &log, "10 ms"), own)
        .unwrap();
    let out: Vec<Result<(), TimedOut>> = clock.run(queue.as_mut().collect());
    assert_eq!(out, [Ok(()), Err(TimedOut)]);
    assert_eq!(log.get(), ["no limit"]);
}

// ------------------------------------------------- aborting a queued task

/// test/test.ts "should skip an aborted job": a job aborted before it
/// starts never runs; here `cancel` hands it back.
#[test]
fn a_cancelled_task_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let mut queue = pin!(TaskQueue::<Task>::new());
    let r = ran.clone();
    let id = queue
        .push(Box::pin(async move { r.store(true, SeqCst) }))
        .unwrap();
    let task = queue.cancel(id).expect("still queued");
    assert_eq!((queue.len(), queue.unstarted()), (0, 0));
    assert_eq!(Clock::default().run(queue.as_mut().count()), 0);
    drop(task);
    assert!(!ran.load(SeqCst));
    assert!(queue.cancel(id).is_none(), "once");
}

/// test/test.ts "pending promises with abortions counted fast enough":
/// paused, concurrency 2; two 1000 ms tasks, an aborted one, then one
/// that records it ran: after 100 ms it has not (two run), after 1100 ms it
/// has; the aborted one never ran.
#[test]
fn a_cancelled_task_frees_its_turn() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    queue.pause(); // p-queue: autoStart: false
    queue.push(delayed(&clock, 1_000, &log, "a")).unwrap();
    queue.push(delayed(&clock, 1_000, &log, "b")).unwrap();
    let aborted = queue.push(delayed(&clock, 1_000, &log, "aborted")).unwrap();
    queue.push(delayed(&clock, 0, &log, "third")).unwrap();
    // p-queue: controller.abort(); queue.start();
    assert!(queue.cancel(aborted).is_some());
    queue.resume();
    let mut idle = pin!(queue.as_mut().until(Level::Idle).count());
    assert_eq!(clock.run_until(idle.as_mut(), 100), None);
    assert!(log.get().is_empty(), "hasThirdRun is false");
    assert_eq!(clock.run_until(idle.as_mut(), 1_100), Some(3));
    assert_eq!(log.get(), ["a", "b", "third"]);
}

/// test/test.ts "aborted jobs do not use interval cap": one start per
/// 100 ms, five aborted jobs and a normal one: the normal one starts in the
/// first window (at once), not after five.
#[test]
fn cancelled_tasks_do_not_use_the_rate_limit() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .timer(clock.timer())
            .rate_limit(1, Duration::from_millis(100))
    );
    let aborted: Vec<TaskId> = (0..5)
        .map(|i| queue.push(delayed(&clock, 0, &log, i)).unwrap())
        .collect();
    queue.push(delayed(&clock, 0, &log, 5)).unwrap();
    for id in aborted {
        assert!(queue.cancel(id).is_some());
    }
    assert_eq!(clock.run(queue.as_mut().count()), 1);
    assert_eq!((log.get(), clock.now()), (vec![5], 0));
    assert_eq!(queue.unstarted(), 0);
}

/// test/test.ts "mass abort does not overflow the stack and drains the
/// queue": 10,000 queued tasks aborted (cancelled) at once: each handed
/// back unrun, the queue empty; none runs.
#[test]
fn mass_cancel_drains_the_queue() {
    let n = if cfg!(miri) { 100 } else { 10_000 };
    let ran = Arc::new(AtomicUsize::new(0));
    let mut queue = pin!(TaskQueue::<Task>::new());
    let ids: Vec<TaskId> = (0..n)
        .map(|_| {
            let ran = ran.clone();
            queue
                .push(Box::pin(async move {
                    ran.fetch_add(1, SeqCst);
                    std::future::pending::<()>().await
                }))
                .unwrap()
        })
        .collect();
    // Newest first, the worst case for the search.
    let cancelled = ids.iter().rev().filter(|&&id| queue.cancel(id).is_some());
    assert_eq!(cancelled.count(), n);
    assert_eq!((queue.unstarted(), queue.running(), queue.len()), (0, 0, 0));
    assert_eq!(Clock::default().run(queue.as_mut().count()), 0);
    assert_eq!(ran.load(SeqCst), 0);
}

/// test/test.ts "mass abort with runnable jobs interspersed": 6,000 jobs,
/// every 250th runnable, the rest aborted: the runnable ones run, in
/// queue order.
#[test]
fn mass_cancel_with_runnable_tasks_interspersed() {
    let (n, every) = if cfg!(miri) { (60, 25) } else { (6_000, 250) };
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new());
    let mut aborted = Vec::new();
    for i in 0..n {
        let log = log.clone();
        let id = queue.push(Box::pin(async move { log.push(i) })).unwrap();
        if i % every != 0 {
            aborted.push(id);
        }
    }
    for id in aborted {
        assert!(queue.cancel(id).is_some());
    }
    let runnable: Vec<usize> = (0..n).step_by(every).collect();
    assert_eq!(Clock::default().run(queue.as_mut().count()), runnable.len());
    assert_eq!(log.get(), runnable);
    assert_eq!((queue.unstarted(), queue.running()), (0, 0));
}

/// test/test.ts "mass abort preserves priority order among runnable
/// jobs": 3,000 jobs at priority 0, every 500th runnable with priority
/// `count - index` (descending); the rest aborted: the runnable ones run
/// in push order.
#[test]
fn mass_cancel_keeps_the_priority_order() {
    let (n, every) = if cfg!(miri) { (30, 5) } else { (3_000, 500) };
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new());
    let mut aborted = Vec::new();
    for i in 0..n {
        let log = log.clone();
        let task: Task = Box::pin(async move { log.push(i) });
        if i % every == 0 {
            let priority = (n - i) as i32;
            queue
                .push_with(task, Options::new().priority(priority))
                .unwrap();
        } else {
            aborted.push(queue.push(task).unwrap());
        }
    }
    for id in aborted {
        assert!(queue.cancel(id).is_some());
    }
    Clock::default().run(queue.as_mut().count());
    assert_eq!(log.get(), (0..n).step_by(every).collect::<Vec<_>>());
}

/// test/test.ts "mass abort drains after pause then resume": paused,
/// concurrency 2, 5,000 jobs aborted while paused (all still queued):
/// after the resume the queue is empty at once.
#[test]
fn mass_cancel_while_paused_then_resume() {
    let n = if cfg!(miri) { 50 } else { 5_000 };
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    queue.pause();
    let ids: Vec<TaskId> = (0..n)
        .map(|_| queue.push(Box::pin(std::future::pending())).unwrap())
        .collect();
    assert_eq!((queue.running(), queue.unstarted()), (0, n));
    for id in ids {
        assert!(queue.cancel(id).is_some());
    }
    queue.resume();
    assert_eq!(Clock::default().run(queue.as_mut().count()), 0);
    assert_eq!((queue.running(), queue.unstarted()), (0, 0));
}

/// A running task is not cancelled (p-queue's abort of a running job has
/// no counterpart: drop the task, or give it a timeout): `cancel` says
/// `None` and the task finishes.
#[test]
fn cancel_leaves_a_running_task_alone() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new());
    let id = queue.push(delayed(&clock, 10, &log, "ran")).unwrap();
    let _ = poll_once(queue.as_mut());
    assert_eq!(queue.running(), 1);
    assert!(queue.cancel(id).is_none());
    assert_eq!(clock.run(queue.as_mut().count()), 1);
    assert_eq!(log.get(), ["ran"]);
}
