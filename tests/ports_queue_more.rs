//! A completeness pass over sindresorhus/p-queue's own test suite: every
//! test in its `test/` directory, at the newest version stored for each
//! file, classified as covered (by which test), not applicable (why), or
//! ported here. Files: `test/basic.ts` @60cc62a, `test/advanced.ts`
//! @ada422d, `test/rate-limit.ts` @f43fa4c, `test/strict.ts` @03b8156,
//! `test/validation.ts` @78f28cb, `test/priority-queue.ts` @ea65ce3,
//! `test/debug.ts` @ada422d, and `test/test.ts` (the newest stored, with
//! the "mass abort" tests; its tests that also appear, by name, in
//! basic.ts or advanced.ts are listed there only). `test/bench.ts` is a
//! benchmark, not tests.
//!
//! Conventions as in `tests/queue_pqueue.rs` (see its header): tasks start
//! when the queue is polled, so a port polls once where p-queue reads
//! `size`/`pending` right after `add()`; results come as a stream; time is
//! the virtual clock of `tests/support/clock.rs`. p-queue's default
//! concurrency is `Infinity`: ports of tests relying on it use 8 or more.
//! `size` is `unstarted()`, `pending` is `running()`.
//!
//! Key: C = covered by an existing test (`qp::` = tests/queue_pqueue.rs,
//! `pq::` = tests/ports_queue.rs); N/A = not applicable, with the reason;
//! P = ported here (test name). 180 upstream tests: C 76, N/A 74, P 30.
//!
//! | upstream test | class | where / why |
//! |---|---|---|
//! | **basic.ts** | | |
//! | .add() | C | pq::add_one_size_and_pending |
//! | .add() - limited concurrency | C | qp::limited_concurrency_size_and_pending |
//! | .add() - concurrency: 1 | C | pq::concurrency_1_runs_one_after_another |
//! | .add() - concurrency: 5 | C | qp::concurrency_5_is_never_exceeded |
//! | .add() - update concurrency | C | pq::update_concurrency_while_running |
//! | .add() - priority | C | qp::priority_order |
//! | .sizeBy() - priority | N/A | no count per priority (only `unstarted()`) |
//! | .add() - priority defaults to 0 when undefined | C | pq::priority_defaults_to_0 |
//! | .add() - timeout always throws | C | pq::timeout_always_reports |
//! | .add() - timeout behavior | C | pq::timeout_behavior |
//! | .add() - change timeout in between | P | change_timeout_in_between |
//! | .onEmpty() | C | qp::on_empty |
//! | .onIdle() | C | qp::on_idle |
//! | .onSizeLessThan() | C | qp::on_size_less_than |
//! | .onIdle() - no pending | C | qp::on_idle_with_nothing_pending |
//! | .onPendingZero() - resolves immediately when pending === 0 | N/A | no "nothing running" `Level` (Idle, Empty, Below only); an empty queue: qp::on_idle_with_nothing_pending |
//! | .onPendingZero() - waits for running tasks to finish | N/A | no "nothing running" `Level`; on a queue that is not paused p-queue reaches pending 0 only when idle: qp::on_idle |
//! | .onPendingZero() - works while paused with queued items | C | qp::running_tasks_finish_while_paused |
//! | .onPendingZero() - multiple concurrent waiters all resolve | N/A | `until` borrows the queue mutably: one waiter at a time, by design |
//! | .onPendingZero() - resolves even if tasks throw errors | P | running_reaches_zero_even_if_a_task_fails |
//! | .onPendingZero() - works after clear() | C | pq::clear_with_a_running_task_is_empty_not_idle |
//! | .onPendingZero() - integration with pause/start | P | running_tasks_finish_while_paused_then_resume |
//! | .onPendingZero() - adding tasks while waiting | P | tasks_added_while_waiting_for_idle_are_included |
//! | .onPendingZero() - rapid sequential calls | N/A | promise-helper timing; no onPendingZero |
//! | .onPendingZero() - high concurrency | P | running_tasks_finish_while_paused_high_concurrency |
//! | .onPendingZero() - starts with empty queue | N/A | promise-helper; no onPendingZero (its idle part: qp::on_idle) |
//! | .onPendingZero() - works with onEmpty and onIdle | C | pq::empty_and_idle_wait_while_paused |
//! | .clear() | C | qp::clear_drops_the_unstarted_tasks |
//! | .addAll() | C | qp::add_all |
//! | enforce number in options.concurrency | C | qp::concurrency_zero_is_a_typed_error |
//! | enforce number in queue.concurrency | C | qp::concurrency_zero_is_a_typed_error (`set_concurrency(0)`) |
//! | enforce number in options.intervalCap | C | pq::interval_cap_and_interval_validation |
//! | enforce finite in options.interval | C | pq::interval_cap_and_interval_validation (`Duration` cannot be negative or infinite) |
//! | autoStart: false | C | qp::pause_and_start, qp::paused_at_creation_then_started_until_idle |
//! | .start() - return this | C | qp::paused_at_creation_then_started_until_idle |
//! | .start() - not paused | C | pq::resume_when_not_paused |
//! | .pause() | C | qp::pause_and_start |
//! | .add() sync/async mixed tasks | C | pq::add_sync_async_mixed_tasks |
//! | .add() - handle task throwing error (skipped upstream) | C | pq::a_failing_task_does_not_stop_the_queue |
//! | .add() - handle task promise failure | C | pq::a_task_added_after_a_failure_runs |
//! | .addAll() sync/async mixed tasks | C | qp::add_all_mixed_tasks |
//! | should resolve empty when size is zero | C | pq::empty_is_reached_across_a_pause |
//! | .add() - throttled | C | qp::throttled |
//! | .add() - throttled, carryoverConcurrencyCount false | C | pq::throttled_without_carryover |
//! | .add() - throttled, carryoverConcurrencyCount true | N/A | no carryover option: running tasks never count against the next interval (the `false` case, pq::throttled_without_carryover) |
//! | .add() - throttled 10, concurrency 5 | C | qp::throttled_10_concurrency_5 |
//! | .add() - throttled finish and resume | C | pq::throttled_finish_and_resume |
//! | pause should work when throttled | C | qp::pause_works_when_throttled |
//! | .intervalCap - changed when at rest | P | interval_cap_changed_at_rest |
//! | .intervalCap - changed while running, larger than full cap | P | interval_cap_raised_above_a_full_cap |
//! | .intervalCap - changed while running, larger than not full cap | P | interval_cap_raised_above_a_cap_not_full |
//! | .intervalCap - changed while running, smaller than full cap | P | interval_cap_lowered_below_a_full_cap (found a bug, fixed) |
//! | .intervalCap - changed while running, smaller than not full cap and can run more | P | interval_cap_lowered_with_room_left |
//! | .intervalCap - changed while running, smaller than not full cap and cannot run more | P | interval_cap_lowered_to_the_starts_made (found a bug, fixed) |
//! | .intervalCap - changed while running, larger than full cap and should run multiple more | P | interval_cap_raised_to_run_several_more |
//! | **advanced.ts** | | |
//! | clear interval on pause | C | pq::paused_after_the_first_task_the_second_stays_queued |
//! | should be an event emitter | N/A | no EventEmitter: results come as a stream |
//! | should emit active event per item | N/A | no events (a start is observable only in the task) |
//! | should emit idle event when idle | C | pq::the_next_task_starts_at_the_poll_after_a_result_differs (size/pending; the event count N/A) |
//! | should emit empty event when empty | C | pq::the_next_task_starts_at_the_poll_after_a_result_differs (same) |
//! | should emit add event when adding task | C | pq::the_next_task_starts_at_the_poll_after_a_result_differs (its size/pending checks are the same; the event count N/A) |
//! | should emit next event when completing task | C | pq::the_next_task_starts_at_the_poll_after_a_result_differs |
//! | should emit completed / error events | P | completed_and_error_outcomes_differs |
//! | should verify timeout overrides passed to add | C | qp::per_task_timeout_overrides_the_queues |
//! | should skip an aborted job | C | qp::a_cancelled_task_never_runs |
//! | should pass AbortSignal instance to job | N/A | tasks are futures, not functions given options: no signal is passed |
//! | aborted jobs do not use interval cap | C | qp::cancelled_tasks_do_not_use_the_rate_limit |
//! | aborting multiple jobs at the same time | P | aborting_two_tasks_at_once |
//! | pending promises counted fast enough | C | pq::pending_counted_fast_enough |
//! | pending promises with abortions counted fast enough | C | qp::a_cancelled_task_frees_its_turn |
//! | intervalCap | C | pq::interval_cap |
//! | consumed interval is remembered between idle states | C | pq::consumed_interval_is_remembered_between_idle_states |
//! | consumed interval is updated on time, even between idle states | C | pq::consumed_interval_is_updated_on_time_between_idle_states |
//! | .setPriority() - execute a promise before planned | C | qp::set_priority_before_planned |
//! | interval should be maintained when using await between adds (issue #182) | C | pq::interval_is_kept_with_awaits_between_adds |
//! | interval maintained when queue becomes empty multiple times | C | pq::interval_is_kept_when_the_queue_empties_several_times |
//! | interval reset after long idle period | C | pq::interval_resets_after_a_long_idle_period (at cap 1; at cap 2 here: interval_reset_after_long_idle_period_cap_2, which found a bug, fixed) |
//! | interval with carryoverIntervalCount after queue empty | C | pq::interval_after_the_queue_empties |
//! | .setPriority() - execute a promise after planned | C | qp::set_priority_after_planned |
//! | .setPriority() - execute a promise before planned - concurrency 2 | C | qp::set_priority_before_planned_concurrency_2 |
//! | .setPriority() - execute a promise before planned - concurrency 3 | C | qp::set_priority_before_planned_concurrency_3 |
//! | .setPriority() - execute a multiple promise before planned, with variable priority | C | qp::set_priority_of_several_with_variable_priority |
//! | .setPriority() - execute a promise before planned - concurrency 3 and unspecified `id` | C | qp::set_priority_by_the_id_a_push_returned |
//! | process exits cleanly after interval tasks complete | C | pq::idle_does_not_wait_for_the_interval |
//! | intervalCap should be respected with high concurrency (issue #126) | C | pq::interval_cap_with_high_concurrency |
//! | isRateLimited property | N/A | no `isRateLimited` accessor |
//! | rate-limit event emission | N/A | no events |
//! | onRateLimit() promise helper | N/A | no onRateLimit |
//! | onRateLimitCleared() promise helper | N/A | no onRateLimitCleared |
//! | rate-limit works with pause/start | C | pq::rate_limit_with_pause_and_start |
//! | rate-limit with high concurrency | P | rate_limit_with_high_concurrency (its starts; the events N/A) |
//! | rate-limit with queue.clear() while rate-limited | C | pq::rate_limit_with_clear |
//! | rate-limit events fire only once per transition | N/A | no events |
//! | rate-limit with interval boundary conditions | N/A | asserts only `isRateLimited` and events (its start timing: pq::interval_cap) |
//! | should not cause stack overflow with many aborted tasks | C | qp::mass_cancel_drains_the_queue |
//! | rate-limit with carryoverIntervalCount behavior | N/A | asserts only `isRateLimited` and events |
//! | rate-limit with aborted tasks | P | rate_limit_with_cancelled_tasks |
//! | rate-limit with error-throwing tasks | P | rate_limit_with_failing_tasks |
//! | rate-limit state remains stable within intervals | N/A | `isRateLimited` flicker; no such accessor |
//! | rate-limit microtask batching - multiple events in same tick | N/A | no events |
//! | rate-limit clear() racing with scheduled update | P | rate_limit_clear_then_push |
//! | rate-limit with dynamic concurrency changes | P | rate_limit_holds_when_concurrency_is_raised |
//! | rate-limit with setPriority() while rate-limited | P | set_priority_while_rate_limited |
//! | rate-limit multiple concurrent onRateLimit() calls | N/A | no onRateLimit |
//! | rate-limit when all queued tasks are aborted | P | rate_limit_when_all_queued_tasks_are_cancelled |
//! | **test.ts** (not in basic.ts / advanced.ts) | | |
//! | .add() - timeout without throwing | C | qp::timeout_drops_the_slow_tasks |
//! | .add() - timeout with throwing (test.failing upstream) | C | qp::timeout_is_reported_as_its_own_outcome |
//! | mass abort does not overflow the stack and drains the queue | C | qp::mass_cancel_drains_the_queue |
//! | mass abort does not overflow with higher concurrency either | P | mass_cancel_with_higher_concurrency |
//! | mass abort with runnable jobs interspersed | C | qp::mass_cancel_with_runnable_tasks_interspersed |
//! | mass abort preserves priority order among runnable jobs | C | qp::mass_cancel_keeps_the_priority_order |
//! | mass abort drains after pause then resume | C | qp::mass_cancel_while_paused_then_resume |
//! | mass abort paused mid-drain and resumed | P | mass_cancel_paused_mid_drain_and_resumed |
//! | mass abort under an interval window does not consume intervalCap | C | qp::cancelled_tasks_do_not_use_the_rate_limit |
//! | mass abort yields to the event loop while draining | N/A | `cancel` is synchronous, there is no drain and no event loop |
//! | **rate-limit.ts** | | |
//! | rate-limit rapid pause/start cycles | P | rate_limit_rapid_pause_resume_cycles |
//! | rate-limit edge case with zero-interval | C | pq::interval_cap_and_interval_validation (`Duration::ZERO` does not throttle) |
//! | rate-limit state consistency with sync microtask scheduling | N/A | `isRateLimited` and events |
//! | rate-limit with queue manipulation during rate-limit event | N/A | no events (no handler runs inside the queue) |
//! | onRateLimit() with microtask race condition | N/A | no onRateLimit |
//! | onRateLimitCleared() with microtask race condition | N/A | no onRateLimitCleared |
//! | onRateLimit() called during state transition | N/A | no onRateLimit |
//! | onRateLimit/onRateLimitCleared rapid transitions | N/A | no events |
//! | onRateLimit() resolves when rate limit is triggered | N/A | no onRateLimit |
//! | **strict.ts** (all 30) | N/A | no `strict` (sliding-window) mode: `rate_limit` is a fixed window opened at its first start |
//! | strict mode enforces sliding window rate limiting; vs fixed window timing; with large intervalCap; clear() preserves ticks; with concurrency limit; rate limit events; isRateLimited property; with pause/start; throws error with interval=0; with priority; with onRateLimit(); with carryoverIntervalCount; throws error with intervalCap: Infinity; with AbortSignal; frees capacity when task aborts before start; ignores aborted tasks for sliding window; aborted tasks do not trigger rateLimit event; after queue becomes idle; prevents boundary bursts; with long-running tasks; isSaturated property; multiple complete intervals; precision timing; with concurrency: Infinity; with timeout option; rapid sequential adds; clear with pending timeout; handles edge case of exactly intervalCap tasks; interleaved add and await; circular buffer compaction | N/A | (same) |
//! | **validation.ts** | | |
//! | backlog drains before interval reset - triggers rate-limit-cleared | N/A | `isRateLimited` and events |
//! | setPriority validates input | C | qp::set_priority_of_a_task_that_is_not_queued_is_refused (`false`, not a throw) |
//! | timeout validation in constructor | N/A | a `Duration` cannot be negative, NaN or infinite; no `timeout` getter |
//! | abort before start frees concurrency immediately | C | qp::a_cancelled_task_frees_its_turn |
//! | carryover mode with no backlog does not report limited | N/A | `isRateLimited` and events; no carryover option |
//! | clear() triggers immediate state drop while rate-limited | N/A | `isRateLimited` and events (clear under a rate limit: pq::rate_limit_with_clear) |
//! | abort before start rolls back interval count | C | qp::cancelled_tasks_do_not_use_the_rate_limit, pq::interval_resets_after_a_long_idle_period |
//! | **priority-queue.ts** (the internal class, through `TaskQueue`) | | |
//! | PriorityQueue ignores dequeued items in queue operations | P | queue_operations_ignore_started_tasks |
//! | PriorityQueue inserts high-priority items correctly after partial dequeue | P | urgent_push_after_some_started |
//! | PriorityQueue appends same-priority and lower-priority items correctly after partial dequeue | P | same_and_lower_priority_after_some_started |
//! | PriorityQueue removes the live duplicate id after partial dequeue | N/A | `TaskId`s are unique: no duplicate ids |
//! | PriorityQueue removes by run after partial dequeue | P | queue_operations_ignore_started_tasks |
//! | PriorityQueue ignores consumed items with no live match | C | qp::set_priority_of_a_task_that_is_not_queued_is_refused, qp::cancel_leaves_a_running_task_alone |
//! | PriorityQueue stays ordered after cursor compaction | P | priority_order_after_many_starts |
//! | PriorityQueue setPriority works when only one live item remains | P | set_priority_when_one_task_is_left |
//! | **debug.ts** | | |
//! | runningTasks returns current running tasks; returns empty array when no tasks running; updates as tasks complete; includes timeout information; returns fresh arrays; handles tasks without IDs; works with interval rate limiting (7) | N/A | no `runningTasks` introspection (only the `running()` count) |
//! | isSaturated property detects when queue is at capacity; isSaturated with paused queue; isSaturated with rate-limited queue (3) | N/A | no `isSaturated` accessor |
//! | improved timeout error includes queue state | N/A | `TimedOut` carries no message or queue state |
//!
//! Findings, fixed with these tests as their regression tests: calling
//! `rate_limit` again on a live (`Unpin`) queue forgot the starts already
//! made in the current window; and a window that expired with fewer than
//! `starts` starts in it absorbed one more start before it was replaced,
//! so one more task than the cap could start at once after an idle
//! period.

#![cfg(feature = "alloc")]

mod support;

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::Poll;
use std::time::Duration;

use deferral::TaskQueue;
use deferral::queue::{BoxTask, Level, Options, TaskId, TimedOut};
use futures::StreamExt;
use futures::future::{AbortHandle, Abortable, Aborted};

use support::clock::{Clock, Log, Task, delayed, poll_stream_once as poll_once};

type Val<T> = BoxTask<'static, T>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A task that records the clock's time when it starts, waits `ms`, and
/// returns its start time.
fn stamped(clock: &Clock, log: &Log<u64>, ms: u64) -> Val<u64> {
    let (clock, log) = (clock.clone(), log.clone());
    Box::pin(async move {
        let start = clock.now();
        log.push(start);
        clock.delay(ms).await;
        start
    })
}

/// A task that finishes at its first poll with `name`.
fn instant(name: &'static str) -> Val<&'static str> {
    Box::pin(async move { name })
}

/// Moves the clock to `ms` with nothing to poll.
fn advance_to(clock: &Clock, ms: u64) {
    assert_eq!(
        clock.run_until(pin!(std::future::pending::<()>()), ms),
        None
    );
    assert_eq!(clock.now(), ms);
}

// ------------------------------------------------------------- timeouts

/// sindresorhus/p-queue test/basic.ts (and test/test.ts) ".add() - change
/// timeout in between": queue timeout 50 ms, concurrency 2; a 300 ms task
/// times out; `queue.timeout = 200`; a 100 ms task then finishes. The new
/// default applies to tasks pushed afterwards (p-queue reads it in `add`);
/// `None` leaves only tasks with their own timeout timed.
#[test]
fn change_timeout_in_between() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(2)
            .timer(clock.timer())
            .timeout(ms(50))
    );
    queue.push(delayed(&clock, 300, &log, "🐌")).unwrap();
    queue.set_timeout(ms(200)); // p-queue: queue.timeout = newTimeout;
    queue.push(delayed(&clock, 100, &log, "🐅")).unwrap();
    let out: Vec<Result<(), TimedOut>> = clock.run(queue.as_mut().until(Level::Idle).collect());
    assert_eq!(out, [Err(TimedOut), Ok(())]);
    assert_eq!(log.get(), ["🐅"]);
    assert_eq!(clock.now(), 100);
    // Lowered again: the next plain push times out at 20 ms.
    queue.set_timeout(ms(20));
    queue.push(delayed(&clock, 100, &log, "plain")).unwrap();
    assert_eq!(clock.run(queue.as_mut().next()), Some(Err(TimedOut)));
    assert_eq!(clock.now(), 120);
    // None: a plain push has no timeout, one with its own keeps it.
    queue.set_timeout(None);
    queue.push(delayed(&clock, 300, &log, "untimed")).unwrap();
    queue
        .push_with(
            delayed(&clock, 300, &log, "own"),
            Options::new().timeout(ms(10)),
        )
        .unwrap();
    let out: Vec<Result<(), TimedOut>> = clock.run(queue.as_mut().until(Level::Idle).collect());
    assert_eq!(out, [Ok(()), Err(TimedOut)]);
    assert_eq!(log.get(), ["🐅", "untimed"]);
}

// ------------------------------------------- onPendingZero (no running)

/// sindresorhus/p-queue test/basic.ts ".onPendingZero() - integration with
/// pause/start": concurrency 2, tasks of 100, 100 and 50 ms; paused after
/// two started: once they finish `[1, 2]`, `pending` 0, `size` 1; after
/// `start()` and `onIdle` `[1, 2, 3]`. (No `onPendingZero` here: the
/// paused queue yields the running tasks' results, then is pending.)
#[test]
fn running_tasks_finish_while_paused_then_resume() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    for (ms, n) in [(100, 1), (100, 2), (50, 3)] {
        queue.push(delayed(&clock, ms, &log, n)).unwrap();
    }
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    assert_eq!((queue.running(), queue.unstarted()), (2, 1));
    queue.pause();
    assert_eq!(
        clock.run_until(pin!(queue.as_mut().until(Level::Idle).count()), 1_000),
        None
    );
    assert_eq!(log.get(), [1, 2]);
    assert_eq!((queue.running(), queue.unstarted()), (0, 1));
    queue.resume();
    assert_eq!(clock.run(queue.as_mut().until(Level::Idle).count()), 1);
    assert_eq!(log.get(), [1, 2, 3]);
    assert_eq!(clock.now(), 1_050);
}

/// sindresorhus/p-queue test/basic.ts ".onPendingZero() - high
/// concurrency": concurrency 100, 200 tasks of 10 ms: 100 run, 100 wait;
/// paused: the 100 running finish, `pending` 0, `size` 100.
#[test]
fn running_tasks_finish_while_paused_high_concurrency() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::with_capacity::<128>().concurrency(100));
    for i in 0..200 {
        queue.push(delayed(&clock, 10, &log, i)).unwrap();
    }
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    assert_eq!((queue.running(), queue.unstarted()), (100, 100));
    queue.pause();
    assert_eq!(
        clock.run_until(pin!(queue.as_mut().until(Level::Idle).count()), 1_000),
        None
    );
    assert_eq!((queue.running(), queue.unstarted()), (0, 100));
    assert_eq!(log.get(), (0..100).collect::<Vec<_>>());
}

/// sindresorhus/p-queue test/basic.ts ".onPendingZero() - resolves even if
/// tasks throw errors": concurrency 2, a 50 ms task that fails and a 50 ms
/// one that does not: both run at once, and `pending` reaches 0.
#[test]
fn running_reaches_zero_even_if_a_task_fails() {
    let clock = Clock::default();
    let mut queue = pin!(TaskQueue::<Val<Result<&str, &str>>>::new().concurrency(2));
    let c = clock.clone();
    queue
        .push(Box::pin(async move {
            c.delay(50).await;
            Err("Task failed")
        }))
        .unwrap();
    let c = clock.clone();
    queue
        .push(Box::pin(async move {
            c.delay(50).await;
            Ok("done")
        }))
        .unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    assert_eq!(queue.running(), 2);
    let out: Vec<_> = clock.run(queue.as_mut().until(Level::Idle).collect());
    assert_eq!(out, [Err("Task failed"), Ok("done")]);
    assert_eq!((queue.running(), clock.now()), (0, 50));
}

/// sindresorhus/p-queue test/basic.ts ".onPendingZero() - adding tasks
/// while waiting": concurrency 2, two 100 ms tasks; while waiting, two
/// 50 ms tasks are added (`size` 2): the wait covers them too, and ends
/// with `pending` 0, `size` 0. Here a `Submitter` adds them while
/// `until(Level::Idle)` runs (a push needs the queue, which `until`
/// borrows).
#[test]
fn tasks_added_while_waiting_for_idle_are_included() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(TaskQueue::<Task>::new().concurrency(2));
    let submit = queue.submitter();
    queue.push(delayed(&clock, 100, &log, 0)).unwrap();
    queue.push(delayed(&clock, 100, &log, 1)).unwrap();
    {
        let mut idle = pin!(queue.as_mut().until(Level::Idle).count());
        assert_eq!(clock.run_until(idle.as_mut(), 10), None);
        submit.submit(delayed(&clock, 50, &log, 2)).unwrap();
        submit.submit(delayed(&clock, 50, &log, 3)).unwrap();
        assert_eq!(clock.run_until(idle.as_mut(), 1_000), Some(4));
    }
    assert_eq!((queue.running(), queue.unstarted()), (0, 0));
    assert_eq!(log.get(), [0, 1, 2, 3]);
    assert_eq!(
        clock.now(),
        150,
        "the later two started when the first two ended"
    );
}

// ---------------------------------------- intervalCap changed (builder)
//
// p-queue sets `queue.intervalCap` on a live queue; a `TaskQueue` has no
// setter, but its `rate_limit` builder can be called again on a queue that
// is `Unpin` (boxed tasks, this clock's `Sleep`), between polls. These
// ports do that.

/// A live, `Unpin` queue: concurrency 8 (p-queue's default is
/// `Infinity`), `cap` starts per `per` ms.
fn live_rate_limited(
    clock: &Clock,
    cap: usize,
    per: u64,
) -> TaskQueue<Task, 16, deferral::queue::Clock<impl FnMut(Duration) -> support::clock::Sleep>> {
    TaskQueue::<Task>::new()
        .concurrency(8)
        .timer(clock.timer())
        .rate_limit(cap, ms(per))
}

/// sindresorhus/p-queue test/basic.ts ".intervalCap - changed when at
/// rest": 1 per 500 ms, two tasks: `[1]` at 300 ms, `[1, 2]` at 600 ms; at
/// 1200 ms the cap becomes 2 and two more tasks both run by 1500 ms.
#[test]
fn interval_cap_changed_at_rest() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = live_rate_limited(&clock, 1, 500);
    queue.push(delayed(&clock, 0, &log, 1)).unwrap();
    queue.push(delayed(&clock, 0, &log, 2)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 300), None);
    assert_eq!(log.get(), [1]);
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 600), Some(1));
    assert_eq!(log.get(), [1, 2]);
    advance_to(&clock, 1_200);
    let mut queue = queue.rate_limit(2, ms(500));
    queue.push(delayed(&clock, 0, &log, 3)).unwrap();
    queue.push(delayed(&clock, 0, &log, 4)).unwrap();
    assert_eq!(
        clock.run_until(pin!(queue.by_ref().count()), 1_500),
        Some(2)
    );
    assert_eq!(log.get(), [1, 2, 3, 4]);
    assert_eq!(clock.now(), 1_200, "both at once");
}

/// sindresorhus/p-queue test/basic.ts ".intervalCap - changed while
/// running, larger than full cap": 1 per 500 ms, two tasks (the first
/// started); the cap becomes 2: the second runs in the same interval.
#[test]
fn interval_cap_raised_above_a_full_cap() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = live_rate_limited(&clock, 1, 500);
    queue.push(delayed(&clock, 0, &log, 1)).unwrap();
    queue.push(delayed(&clock, 0, &log, 2)).unwrap();
    assert_eq!(poll_once(Pin::new(&mut queue)), Poll::Ready(Some(())));
    assert_eq!(poll_once(Pin::new(&mut queue)), Poll::Pending, "cap 1");
    let mut queue = queue.rate_limit(2, ms(500));
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 300), Some(1));
    assert_eq!((log.get(), clock.now()), (vec![1, 2], 0));
}

/// sindresorhus/p-queue test/basic.ts ".intervalCap - changed while
/// running, larger than not full cap": 3 per 500 ms, two tasks run; the
/// cap becomes 4 at 200 ms and a third task runs at once.
#[test]
fn interval_cap_raised_above_a_cap_not_full() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = live_rate_limited(&clock, 3, 500);
    queue.push(delayed(&clock, 0, &log, 1)).unwrap();
    queue.push(delayed(&clock, 0, &log, 2)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 200), Some(2));
    advance_to(&clock, 200);
    let mut queue = queue.rate_limit(4, ms(500));
    queue.push(delayed(&clock, 0, &log, 3)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 400), Some(1));
    assert_eq!((log.get(), clock.now()), (vec![1, 2, 3], 200));
}

/// sindresorhus/p-queue test/basic.ts ".intervalCap - changed while
/// running, smaller than full cap": 3 per 500 ms; tasks 1 (instant), 2
/// (300 ms), 3 (instant): `[1, 3]` at 100 ms, the cap used up. The cap
/// becomes 2 and task 4 is added: it must wait for the next interval —
/// `[1, 3, 2]` at 300 ms, `[1, 3, 2, 4]` at 600 ms.
#[test]

fn interval_cap_lowered_below_a_full_cap() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = live_rate_limited(&clock, 3, 500);
    queue.push(delayed(&clock, 0, &log, 1)).unwrap();
    queue.push(delayed(&clock, 300, &log, 2)).unwrap();
    queue.push(delayed(&clock, 0, &log, 3)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 100), None);
    assert_eq!(log.get(), [1, 3]);
    let mut queue = queue.rate_limit(2, ms(500));
    queue.push(delayed(&clock, 0, &log, 4)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 100), None);
    assert_eq!(log.get(), [1, 3], "no start left in this interval");
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 300), None);
    assert_eq!(log.get(), [1, 3, 2], "task 4 waits for the next interval");
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 600), Some(1));
    assert_eq!(log.get(), [1, 3, 2, 4]);
}

/// sindresorhus/p-queue test/basic.ts ".intervalCap - changed while
/// running, smaller than not full cap and can run more": 4 per 500 ms;
/// tasks 1 (instant) and 2 (300 ms) started; the cap becomes 3 at 100 ms
/// and task 3 runs at once: `[1, 3, 2]` at 300 ms.
#[test]
fn interval_cap_lowered_with_room_left() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = live_rate_limited(&clock, 4, 500);
    queue.push(delayed(&clock, 0, &log, 1)).unwrap();
    queue.push(delayed(&clock, 300, &log, 2)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 100), None);
    assert_eq!(log.get(), [1]);
    let mut queue = queue.rate_limit(3, ms(500));
    queue.push(delayed(&clock, 0, &log, 3)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 300), Some(2));
    assert_eq!(log.get(), [1, 3, 2]);
}

/// sindresorhus/p-queue test/basic.ts ".intervalCap - changed while
/// running, smaller than not full cap and cannot run more": 4 per 500 ms;
/// tasks 1 (instant) and 2 (200 ms) started; the cap becomes 2 at 100 ms
/// (two starts made): task 3 waits for the next interval — `[1, 2]` at
/// 300 ms, `[1, 2, 3]` at 600 ms.
#[test]

fn interval_cap_lowered_to_the_starts_made() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = live_rate_limited(&clock, 4, 500);
    queue.push(delayed(&clock, 0, &log, 1)).unwrap();
    queue.push(delayed(&clock, 200, &log, 2)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 100), None);
    assert_eq!(log.get(), [1]);
    let mut queue = queue.rate_limit(2, ms(500));
    queue.push(delayed(&clock, 0, &log, 3)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 100), None);
    assert_eq!(log.get(), [1], "no start left in this interval");
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 300), None);
    assert_eq!(log.get(), [1, 2], "task 3 waits for the next interval");
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 600), Some(1));
    assert_eq!(log.get(), [1, 2, 3]);
}

/// sindresorhus/p-queue test/basic.ts ".intervalCap - changed while
/// running, larger than full cap and should run multiple more": 2 per
/// 500 ms; tasks 1, 2 (instant), 3, 4 (200 ms): `[1, 2]` at 100 ms; the cap
/// becomes 4 and both others run at once: `[1, 2, 3, 4]` at 400 ms.
#[test]
fn interval_cap_raised_to_run_several_more() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = live_rate_limited(&clock, 2, 500);
    queue.push(delayed(&clock, 0, &log, 1)).unwrap();
    queue.push(delayed(&clock, 0, &log, 2)).unwrap();
    queue.push(delayed(&clock, 200, &log, 3)).unwrap();
    queue.push(delayed(&clock, 200, &log, 4)).unwrap();
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 100), None);
    assert_eq!(log.get(), [1, 2]);
    let mut queue = queue.rate_limit(4, ms(500));
    assert_eq!(clock.run_until(pin!(queue.by_ref().count()), 400), Some(2));
    assert_eq!((log.get(), clock.now()), (vec![1, 2, 3, 4], 300));
}

// ------------------------------------------- events, by their outcomes

/// sindresorhus/p-queue test/advanced.ts "should emit completed / error
/// events": concurrency 1; job1 (100 ms), job2 (fails after 1 ms), job3
/// (100 ms): `completed`/`error` counts 1/0 after job1, 1/1 after job2,
/// 2/1 after job3, with `pending`/`size` 1/1, 1/0, 0/0, then 1/0 and 0/0.
/// Here there are no events: the counts are those of the `Ok` and `Err`
/// results the stream yields.
///
/// deferral differs (module docs, "Where tasks run", step 1): the poll
/// that yields job1's result starts nothing, so right after it `running`
/// is 0 and `unstarted` 1 (p-queue: `pending` 1, `size` 0).
#[test]
fn completed_and_error_outcomes_differs() {
    let clock = Clock::default();
    let mut queue = pin!(TaskQueue::<Val<Result<u32, &str>>>::new());
    let job = |ms: u64, out: Result<u32, &'static str>| -> Val<Result<u32, &'static str>> {
        let c = clock.clone();
        Box::pin(async move {
            c.delay(ms).await;
            out
        })
    };
    let (mut completed, mut errors) = (0, 0);
    let mut tally = |r: Result<u32, &str>| match r {
        Ok(_) => completed += 1,
        Err(_) => errors += 1,
    };
    queue.push(job(100, Ok(1))).unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    assert_eq!((queue.running(), queue.unstarted()), (1, 0));
    queue.push(job(1, Err("failure"))).unwrap();
    assert_eq!((queue.running(), queue.unstarted()), (1, 1));
    tally(clock.run(queue.as_mut().next()).unwrap()); // await job1
    assert_eq!(
        (queue.running(), queue.unstarted()),
        (0, 1),
        "differs: job2 starts at the next poll"
    );
    let after_job2 = clock.run(queue.as_mut().next()).unwrap();
    assert_eq!(after_job2, Err("failure"));
    tally(after_job2);
    assert_eq!((queue.running(), queue.unstarted()), (0, 0));
    queue.push(job(100, Ok(3))).unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    assert_eq!((queue.running(), queue.unstarted()), (1, 0));
    tally(clock.run(queue.as_mut().next()).unwrap());
    assert_eq!((queue.running(), queue.unstarted()), (0, 0));
    assert_eq!((completed, errors), (2, 1));
    assert_eq!(clock.now(), 201);
}

// ------------------------------------------------------------ aborting

/// sindresorhus/p-queue test/advanced.ts "aborting multiple jobs at the
/// same time": concurrency 1, two never-ending jobs with their own
/// signals, both aborted: both reject, `size` 0, `pending` 0. The first
/// one is running by then: here a running task is stopped the documented
/// way, by making it `Abortable` (`cancel` takes only unstarted tasks).
#[test]
fn aborting_two_tasks_at_once() {
    type Job = Abortable<std::future::Pending<()>>;
    let mut queue = pin!(TaskQueue::<Job>::new());
    let mut handles = Vec::new();
    for _ in 0..2 {
        let (handle, registration) = AbortHandle::new_pair();
        queue
            .push(Abortable::new(std::future::pending(), registration))
            .unwrap();
        handles.push(handle);
    }
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    assert_eq!((queue.running(), queue.unstarted()), (1, 1));
    // p-queue: setTimeout(() => { controller1.abort(); controller2.abort(); }, 0);
    for handle in &handles {
        handle.abort();
    }
    let out: Vec<_> = Clock::default().run(queue.as_mut().until(Level::Idle).collect());
    assert_eq!(out, [Err(Aborted), Err(Aborted)]);
    assert_eq!((queue.len(), queue.running(), queue.unstarted()), (0, 0, 0));
}

/// sindresorhus/p-queue test/test.ts "mass abort does not overflow with
/// higher concurrency either": for concurrency 2, 8 and 64, 5,000
/// never-ending jobs, all aborted: every one rejects, `size` and
/// `pending` 0. Here the unstarted ones are cancelled (handed back) and the
/// running ones — as many as the concurrency — aborted (`Abortable`).
#[test]
fn mass_cancel_with_higher_concurrency() {
    type Job = Abortable<std::future::Pending<()>>;
    let n = if cfg!(miri) { 80 } else { 5_000 };
    for concurrency in [2, 8, 64] {
        let mut queue = pin!(TaskQueue::<Job>::with_capacity::<64>().concurrency(concurrency));
        let jobs: Vec<(TaskId, AbortHandle)> = (0..n)
            .map(|_| {
                let (handle, registration) = AbortHandle::new_pair();
                let id = queue
                    .push(Abortable::new(std::future::pending(), registration))
                    .unwrap();
                (id, handle)
            })
            .collect();
        assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
        assert_eq!(queue.running(), concurrency);
        let mut handed_back = 0;
        for (id, handle) in &jobs {
            match queue.cancel(*id) {
                Some(_) => handed_back += 1,
                None => handle.abort(),
            }
        }
        assert_eq!(handed_back, n - concurrency, "concurrency {concurrency}");
        let out: Vec<_> = Clock::default().run(queue.as_mut().until(Level::Idle).collect());
        assert_eq!(out, vec![Err(Aborted); concurrency]);
        assert_eq!((queue.unstarted(), queue.running()), (0, 0));
    }
}

/// sindresorhus/p-queue test/test.ts "mass abort paused mid-drain and
/// resumed": concurrency 1, 5,000 jobs: a gate job in the middle, a
/// runnable one at the end, the rest aborted. Once the gate runs the
/// queue is paused; releasing the gate while paused does not start the
/// runnable job; after `start()` it runs, and the queue is empty.
#[test]
fn mass_cancel_paused_mid_drain_and_resumed() {
    let n = if cfg!(miri) { 50 } else { 5_000 };
    let ran = Arc::new(AtomicBool::new(false));
    let (release, gate) = futures::channel::oneshot::channel::<()>();
    let mut gate = Some(gate);
    let mut queue = pin!(TaskQueue::<Task>::new());
    let mut aborted = Vec::new();
    for i in 0..n {
        if i == n / 2 {
            let gate = gate.take().unwrap();
            queue
                .push(Box::pin(async move {
                    let _ = gate.await;
                }))
                .unwrap();
        } else if i == n - 1 {
            let ran = ran.clone();
            queue
                .push(Box::pin(async move { ran.store(true, SeqCst) }))
                .unwrap();
        } else {
            aborted.push(queue.push(Box::pin(std::future::pending())).unwrap());
        }
    }
    for id in aborted {
        assert!(queue.cancel(id).is_some());
    }
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    assert_eq!(
        (queue.running(), queue.unstarted()),
        (1, 1),
        "the gate runs"
    );
    queue.pause();
    assert!(!ran.load(SeqCst));
    release.send(()).unwrap();
    let clock = Clock::default();
    assert_eq!(
        clock.run_until(pin!(queue.as_mut().until(Level::Idle).count()), 20),
        None
    );
    assert!(!ran.load(SeqCst), "paused: the runnable job did not start");
    assert_eq!((queue.running(), queue.unstarted()), (0, 1));
    queue.resume();
    assert_eq!(clock.run(queue.as_mut().until(Level::Idle).count()), 1);
    assert!(ran.load(SeqCst));
    assert_eq!((queue.running(), queue.unstarted()), (0, 0));
}

// ------------------------------------------------------- rate limiting

/// sindresorhus/p-queue test/advanced.ts "rate-limit with high
/// concurrency" (its behaviour; the events have no counterpart):
/// concurrency 10, 3 per 500 ms, ten 50 ms tasks: three start per
/// interval, and all complete.
#[test]
fn rate_limit_with_high_concurrency() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Val<u64>>::new()
            .concurrency(10)
            .timer(clock.timer())
            .rate_limit(3, ms(500))
    );
    for _ in 0..10 {
        queue.push(stamped(&clock, &log, 50)).unwrap();
    }
    assert_eq!(clock.run(queue.as_mut().until(Level::Idle).count()), 10);
    assert_eq!(log.get(), [0, 0, 0, 500, 500, 500, 1000, 1000, 1000, 1500]);
}

/// sindresorhus/p-queue test/advanced.ts "rate-limit with aborted tasks":
/// 2 per 1000 ms; two tasks run, two queued ones are aborted, a fifth
/// waits: it runs in the next interval, the aborted ones never.
#[test]
fn rate_limit_with_cancelled_tasks() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(8)
            .timer(clock.timer())
            .rate_limit(2, ms(1000))
    );
    queue.push(delayed(&clock, 50, &log, "a")).unwrap();
    queue.push(delayed(&clock, 50, &log, "b")).unwrap();
    let c = queue.push(delayed(&clock, 50, &log, "c")).unwrap();
    let d = queue.push(delayed(&clock, 50, &log, "d")).unwrap();
    queue.push(delayed(&clock, 50, &log, "e")).unwrap();
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 10), None);
    assert_eq!((queue.running(), queue.unstarted()), (2, 3));
    assert!(queue.cancel(c).is_some());
    assert!(queue.cancel(d).is_some());
    assert_eq!(queue.unstarted(), 1);
    assert_eq!(clock.run(queue.as_mut().until(Level::Idle).count()), 3);
    assert_eq!(log.get(), ["a", "b", "e"]);
    assert_eq!(clock.now(), 1050);
}

/// sindresorhus/p-queue test/advanced.ts "rate-limit with error-throwing
/// tasks": 2 per 1000 ms; a task, a failing task, a third: the third
/// still runs (in the next interval), and every result comes out.
#[test]
fn rate_limit_with_failing_tasks() {
    let clock = Clock::default();
    let mut queue = pin!(
        TaskQueue::<Val<Result<u64, u64>>>::new()
            .concurrency(8)
            .timer(clock.timer())
            .rate_limit(2, ms(1000))
    );
    for fails in [false, true, false] {
        let c = clock.clone();
        queue
            .push(Box::pin(async move {
                let start = c.now();
                c.delay(50).await;
                if fails { Err(start) } else { Ok(start) }
            }))
            .unwrap();
    }
    let out: Vec<_> = clock.run(queue.as_mut().until(Level::Idle).collect());
    assert_eq!(out, [Ok(0), Err(0), Ok(1000)]);
    assert!(!queue.is_stopped());
}

/// sindresorhus/p-queue test/advanced.ts "rate-limit clear() racing with
/// scheduled update": 1 per 1000 ms, two tasks (the first started); clear,
/// `size` 0; a task added right after still waits for the interval the
/// first one used, then the queue goes idle.
#[test]
fn rate_limit_clear_then_push() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Val<u64>>::new()
            .concurrency(8)
            .timer(clock.timer())
            .rate_limit(1, ms(1000))
    );
    queue.push(stamped(&clock, &log, 50)).unwrap();
    queue.push(stamped(&clock, &log, 50)).unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    assert_eq!(queue.clear(), 1);
    assert_eq!(queue.unstarted(), 0);
    queue.push(stamped(&clock, &log, 10)).unwrap();
    assert_eq!(clock.run(queue.as_mut().until(Level::Idle).count()), 2);
    assert_eq!(log.get(), [0, 1000]);
}

/// sindresorhus/p-queue test/advanced.ts "rate-limit with dynamic
/// concurrency changes": concurrency 1, 2 per 500 ms, five 50 ms tasks;
/// at 150 ms (two ran, rate-limited) the concurrency becomes 5: the cap
/// still holds, two starts per interval.
#[test]
fn rate_limit_holds_when_concurrency_is_raised() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Val<u64>>::new()
            .timer(clock.timer())
            .rate_limit(2, ms(500))
    );
    for _ in 0..5 {
        queue.push(stamped(&clock, &log, 50)).unwrap();
    }
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 150), None);
    assert_eq!(log.get(), [0, 50]);
    queue.set_concurrency(5).unwrap();
    assert_eq!(clock.run(queue.as_mut().until(Level::Idle).count()), 3);
    assert_eq!(log.get(), [0, 50, 500, 500, 1000]);
}

/// sindresorhus/p-queue test/advanced.ts "rate-limit with setPriority()
/// while rate-limited": concurrency 1, 1 per 500 ms; `first`, then `low`
/// (0), `high` (1), `medium` (0.5 — integer priorities here: 0, 2, 1);
/// while rate-limited `low` gets priority 2 (here 3): `first, low, high,
/// medium`, one per interval.
#[test]
fn set_priority_while_rate_limited() {
    let clock = Clock::default();
    let mut queue = pin!(
        TaskQueue::<Val<(&str, u64)>>::new()
            .timer(clock.timer())
            .rate_limit(1, ms(500))
    );
    let task = |name: &'static str| -> Val<(&'static str, u64)> {
        let c = clock.clone();
        Box::pin(async move {
            let start = c.now();
            c.delay(10).await;
            (name, start)
        })
    };
    queue.push(task("first")).unwrap();
    // p-queue starts `first` inside `add()`: here, the first poll.
    assert_eq!(poll_once(queue.as_mut()), Poll::Pending);
    let low = queue
        .push_with(task("low"), Options::new().priority(0))
        .unwrap();
    queue
        .push_with(task("high"), Options::new().priority(2))
        .unwrap();
    queue
        .push_with(task("medium"), Options::new().priority(1))
        .unwrap();
    let mut out = Vec::new();
    {
        let mut batch = pin!(queue.as_mut().until(Level::Idle));
        let first = clock.run_until(pin!(batch.as_mut().next()), 50);
        out.push(first.flatten().unwrap());
    }
    assert_eq!((queue.running(), queue.unstarted()), (0, 3));
    assert!(queue.set_priority(low, 3));
    out.extend(clock.run(queue.as_mut().until(Level::Idle).collect::<Vec<_>>()));
    assert_eq!(
        out,
        [("first", 0), ("low", 500), ("high", 1000), ("medium", 1500)]
    );
}

/// sindresorhus/p-queue test/advanced.ts "rate-limit when all queued tasks
/// are aborted": 1 per 1000 ms, one running task and two queued ones,
/// both aborted: the queue goes idle with the running task (at 50 ms),
/// not at the interval's end.
#[test]
fn rate_limit_when_all_queued_tasks_are_cancelled() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Task>::new()
            .concurrency(8)
            .timer(clock.timer())
            .rate_limit(1, ms(1000))
    );
    queue.push(delayed(&clock, 50, &log, 0)).unwrap();
    let ids: Vec<TaskId> = (1..3)
        .map(|i| queue.push(delayed(&clock, 50, &log, i)).unwrap())
        .collect();
    assert_eq!(clock.run_until(pin!(queue.as_mut().count()), 10), None);
    for id in ids {
        assert!(queue.cancel(id).is_some());
    }
    assert_eq!(clock.run(queue.as_mut().until(Level::Idle).count()), 1);
    assert_eq!((log.get(), clock.now()), (vec![0], 50));
}

/// sindresorhus/p-queue test/rate-limit.ts "rate-limit rapid pause/start
/// cycles": 1 per 100 ms, paused, four tasks; three cycles of start,
/// 25 ms, pause, 50 ms; then start: all four run, 100 ms apart or more.
#[test]
fn rate_limit_rapid_pause_resume_cycles() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Val<u64>>::new()
            .concurrency(8)
            .timer(clock.timer())
            .rate_limit(1, ms(100))
    );
    queue.pause();
    for _ in 0..4 {
        queue.push(stamped(&clock, &log, 0)).unwrap();
    }
    for _ in 0..3 {
        queue.resume();
        let now = clock.now();
        assert_eq!(
            clock.run_until(pin!(queue.as_mut().count()), now + 25),
            None
        );
        queue.pause();
        let now = clock.now();
        assert_eq!(
            clock.run_until(pin!(queue.as_mut().count()), now + 50),
            None
        );
    }
    queue.resume();
    clock.run(queue.as_mut().until(Level::Idle).count());
    let stamps = log.get();
    assert_eq!(stamps.len(), 4);
    assert!(stamps.windows(2).all(|w| w[1] - w[0] >= 100), "{stamps:?}");
}

/// sindresorhus/p-queue test/advanced.ts "interval reset after long idle
/// period", at `intervalCap: 2` instead of 1: 2 per 100 ms; one task; 250 ms
/// idle; then three tasks: two may start at once, the third waits for the
/// interval (>= 90 ms later).
#[test]

fn interval_reset_after_long_idle_period_cap_2() {
    let clock = Clock::default();
    let log = Log::default();
    let mut queue = pin!(
        TaskQueue::<Val<u64>>::new()
            .concurrency(8)
            .timer(clock.timer())
            .rate_limit(2, ms(100))
    );
    queue.push(stamped(&clock, &log, 0)).unwrap();
    clock.run(queue.as_mut().until(Level::Idle).count());
    advance_to(&clock, 250);
    for _ in 0..3 {
        queue.push(stamped(&clock, &log, 0)).unwrap();
    }
    clock.run(queue.as_mut().until(Level::Idle).count());
    let stamps = log.get();
    assert_eq!(stamps.len(), 4);
    assert_eq!(
        stamps.iter().filter(|&&t| t == 250).count(),
        2,
        "at most 2 starts per 100 ms: {stamps:?}"
    );
    assert!(stamps[3] - stamps[2] >= 90, "{stamps:?}");
}

// ------------------------------------- priority order after some starts

/// sindresorhus/p-queue test/priority-queue.ts "PriorityQueue inserts
/// high-priority items correctly after partial dequeue": `first`, `second`
/// (0), `third` (-1); `first` taken; `urgent` (1) added: `urgent, second,
/// third`.
#[test]
fn urgent_push_after_some_started() {
    let mut queue = pin!(TaskQueue::<Val<&str>>::new());
    queue.push(instant("first")).unwrap();
    queue.push(instant("second")).unwrap();
    queue
        .push_with(instant("third"), Options::new().priority(-1))
        .unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Ready(Some("first")));
    queue
        .push_with(instant("urgent"), Options::new().priority(1))
        .unwrap();
    assert_eq!(queue.unstarted(), 3);
    let out: Vec<_> = Clock::default().run(queue.as_mut().collect());
    assert_eq!(out, ["urgent", "second", "third"]);
}

/// sindresorhus/p-queue test/priority-queue.ts "PriorityQueue appends
/// same-priority and lower-priority items correctly after partial
/// dequeue": `first`, `second` (0); `first` taken; `samePriority` (0),
/// `lowerPriority` (-1) added: `second, samePriority, lowerPriority`.
#[test]
fn same_and_lower_priority_after_some_started() {
    let mut queue = pin!(TaskQueue::<Val<&str>>::new());
    queue.push(instant("first")).unwrap();
    queue.push(instant("second")).unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Ready(Some("first")));
    queue.push(instant("samePriority")).unwrap();
    queue
        .push_with(instant("lowerPriority"), Options::new().priority(-1))
        .unwrap();
    assert_eq!(queue.unstarted(), 3);
    let out: Vec<_> = Clock::default().run(queue.as_mut().collect());
    assert_eq!(out, ["second", "samePriority", "lowerPriority"]);
}

/// sindresorhus/p-queue test/priority-queue.ts "PriorityQueue stays
/// ordered after cursor compaction": 150 tasks, the first 120 taken, an
/// `urgent` one (1) added: `size` 31; `urgent` first, then the other 30 in
/// order. Here the window (16) has wrapped many times by then, and the
/// rest wait beyond it.
#[test]
fn priority_order_after_many_starts() {
    let clock = Clock::default();
    let mut queue = pin!(TaskQueue::<Val<usize>>::new());
    for i in 0..150 {
        queue.push(Box::pin(async move { i })).unwrap();
    }
    for i in 0..120 {
        assert_eq!(clock.run(queue.as_mut().next()), Some(i));
    }
    queue
        .push_with(Box::pin(async { 1_000 }), Options::new().priority(1))
        .unwrap();
    assert_eq!(queue.unstarted(), 31);
    let out: Vec<_> = clock.run(queue.as_mut().collect());
    let expected: Vec<usize> = std::iter::once(1_000).chain(120..150).collect();
    assert_eq!(out, expected);
    assert_eq!(queue.len(), 0);
}

/// sindresorhus/p-queue test/priority-queue.ts "PriorityQueue setPriority
/// works when only one live item remains": `first`, `second`; `first`
/// taken; `setPriority('second', 1)`: `size` 1, then `second`.
#[test]
fn set_priority_when_one_task_is_left() {
    let mut queue = pin!(TaskQueue::<Val<&str>>::new());
    queue.push(instant("first")).unwrap();
    let second = queue.push(instant("second")).unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Ready(Some("first")));
    assert!(queue.set_priority(second, 1));
    assert_eq!(queue.unstarted(), 1);
    let out: Vec<_> = Clock::default().run(queue.as_mut().collect());
    assert_eq!(out, ["second"]);
}

/// sindresorhus/p-queue test/priority-queue.ts "PriorityQueue ignores
/// dequeued items in queue operations" and "PriorityQueue removes by run
/// after partial dequeue": once `first` is taken, `setPriority` and
/// `remove` act only on the tasks still queued: `second` gets a new
/// priority, `third` is removed, `size` 1. Here: `set_priority` and
/// `cancel` of the started task change nothing (`false`, `None`).
#[test]
fn queue_operations_ignore_started_tasks() {
    let mut queue = pin!(TaskQueue::<Val<&str>>::new());
    let first = queue.push(instant("first")).unwrap();
    let second = queue.push(instant("second")).unwrap();
    let third = queue.push(instant("third")).unwrap();
    assert_eq!(poll_once(queue.as_mut()), Poll::Ready(Some("first")));
    assert!(!queue.set_priority(first, 2));
    assert!(queue.cancel(first).is_none());
    assert!(queue.set_priority(second, 2));
    assert!(queue.cancel(third).is_some());
    assert_eq!(queue.unstarted(), 1);
    let out: Vec<_> = Clock::default().run(queue.as_mut().collect());
    assert_eq!(out, ["second"]);
    assert_eq!(queue.len(), 0);
}
