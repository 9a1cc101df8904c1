//! Hostile review of db741bfa: `WakeBits::for_each_woken(from, ..)` and the
//! queue's `poll_running` resuming a pass after the task it settled
//! (`from = index + 1`) instead of re-taking every flag from 0.
//!
//! What is attacked here, through the public `TaskQueue` API only:
//!
//! - lost wake-ups: a flag set again below `from` during a `poll_next` is
//!   left for the next one; the queue's waker (registered before the pass)
//!   must have been woken, and the next `poll_next` must poll the task;
//! - word boundaries of the flag block: windows `N` of 1, 63, 64, 65, 128,
//!   finishers at 62/63/64/`N − 1` (so `from` is 63, 64 — a word boundary,
//!   `keep == 0` — 65 and `N`, past the last word): every woken task polled
//!   exactly once per `poll_next`, none lost, none polled twice;
//! - a ring that wrapped (slot order differs from submission order) with
//!   `stop_when`, in both orders: outputs exactly once, in the documented
//!   order, nothing polled after it finished or after it was dropped;
//! - the panic path: a task panicking in a resumed pass (`from > 0`, the
//!   `fetch_and` branch) loses no other flag and duplicates none;
//! - real threads waking tasks while the queue polls, bounded by a deadline;
//! - loom (`RUSTFLAGS="--cfg loom"`): a slot waker on another thread
//!   against a pass that resumes from an index inside a word.
#![cfg(feature = "alloc")]

mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[cfg(not(loom))]
use std::pin::pin;

#[cfg(not(loom))]
use deferral::TaskQueue;
#[cfg(not(loom))]
use deferral::queue::Yield;
#[cfg(not(loom))]
use futures::Stream;
#[cfg(not(loom))]
use support::WakeCounter;

type Task = Pin<Box<dyn Future<Output = usize> + Send>>;

/// The controls and the counters of one scripted task.
#[derive(Default)]
struct Ctl {
    /// Polls so far.
    polls: AtomicUsize,
    /// Finish at the next poll.
    ready: AtomicBool,
    /// Wake its own waker at each poll that returns `Pending`.
    self_wake: AtomicBool,
    /// Panic at the next poll.
    panic: AtomicBool,
    /// It returned `Ready`.
    finished: AtomicBool,
    /// Its latest waker (stored before `ready` is read).
    waker: Mutex<Option<Waker>>,
    /// Dropped (the future).
    dropped: AtomicBool,
}

impl Ctl {
    fn polls(&self) -> usize {
        self.polls.load(SeqCst)
    }

    /// Wakes the task's latest waker (a slot waker of the queue), if any.
    /// Takes it: under loom no loom operation (a slot waker's reference
    /// count) may run while the `std` mutex is held.
    fn wake(&self) {
        let waker = self.waker.lock().unwrap().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Makes it ready and wakes it.
    fn finish(&self) {
        self.ready.store(true, SeqCst);
        self.wake();
    }
}

struct Guard(Arc<Ctl>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.dropped.store(true, SeqCst);
    }
}

/// A task with output `id`, driven by `ctl`.
fn task(ctl: &Arc<Ctl>, id: usize) -> Task {
    let guard = Guard(ctl.clone());
    Box::pin(std::future::poll_fn(move |cx| {
        let ctl = &guard.0;
        assert!(
            !ctl.finished.load(SeqCst),
            "task {id} polled after it finished"
        );
        assert!(!ctl.dropped.load(SeqCst), "task {id} polled after drop");
        ctl.polls.fetch_add(1, SeqCst);
        let new = Some(cx.waker().clone());
        let old = std::mem::replace(&mut *ctl.waker.lock().unwrap(), new);
        drop(old);
        if ctl.panic.swap(false, SeqCst) {
            panic!("task {id} panics (on purpose)");
        }
        if ctl.ready.load(SeqCst) {
            ctl.finished.store(true, SeqCst);
            return Poll::Ready(id);
        }
        if ctl.self_wake.load(SeqCst) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }))
}

fn ctls(n: usize) -> Vec<Arc<Ctl>> {
    (0..n).map(|_| Arc::new(Ctl::default())).collect()
}

fn polls(ctls: &[Arc<Ctl>]) -> Vec<usize> {
    ctls.iter().map(|c| c.polls()).collect()
}

/// One `poll_next` with a fresh counting waker: the result and whether
/// that waker was woken (during the call or up to now).
#[cfg(not(loom))]
fn poll_counted<S: Stream + ?Sized>(s: Pin<&mut S>) -> (Poll<Option<S::Item>>, WakeCounter) {
    let counter = WakeCounter::new();
    let waker = counter.waker();
    let out = s.poll_next(&mut Context::from_waker(&waker));
    (out, counter)
}

// ------------------------------------------------------------ lost wake-ups

/// The brief's scenario: a task wakes itself from inside its poll, below a
/// task that finishes in the same pass. The pass resumes after the
/// finisher, so the self-waker's new flag is left for the next `poll_next`:
/// that call's waker must have been woken, and the next call must poll it
/// (exactly once). All three orders/predicate combinations that resume.
#[cfg(not(loom))]
#[test]
fn self_wake_below_a_finisher_wakes_the_queue_and_is_polled_next() {
    for (order, stop) in [
        (Yield::InSubmissionOrder, false),
        (Yield::InSubmissionOrder, true),
        (Yield::InCompletionOrder, true),
    ] {
        // Slot 0: the self-waker; slot 1: the finisher; slot 2: idle.
        let c = ctls(3);
        let queue = TaskQueue::<Task>::with_capacity::<4>()
            .concurrency(4)
            .order(order);
        // The same type either way: `S` defaults to a `fn` pointer.
        let queue = if stop {
            queue.stop_when((|_: &usize| false) as fn(&usize) -> bool)
        } else {
            queue
        };
        let mut queue = Box::pin(queue);
        for (i, ctl) in c.iter().enumerate() {
            queue.push(task(ctl, i)).unwrap();
        }
        let (out, _) = poll_counted(queue.as_mut());
        assert_eq!(out, Poll::Pending);
        assert_eq!(polls(&c), [1, 1, 1]);

        c[0].self_wake.store(true, SeqCst);
        c[0].wake();
        c[1].finish();
        let (out, woken) = poll_counted(queue.as_mut());
        assert_eq!(polls(&c), [2, 2, 1], "{order:?} {stop}: one poll each");
        match order {
            // The self-waker is the oldest: nothing to yield yet.
            Yield::InSubmissionOrder => assert_eq!(out, Poll::Pending),
            Yield::InCompletionOrder => assert_eq!(out, Poll::Ready(Some(1))),
        }
        assert!(
            woken.wakes() >= 1,
            "{order:?} {stop}: flag 0 set again, left below `from`, and this poll's waker never woken"
        );
        // The next poll polls it (once), and again wakes its caller.
        for k in 3..8 {
            let (out, woken) = poll_counted(queue.as_mut());
            assert_eq!(out, Poll::Pending, "{order:?} {stop}");
            assert_eq!(c[0].polls(), k, "{order:?} {stop}: once per poll_next");
            assert!(woken.wakes() >= 1, "{order:?} {stop}");
            assert_eq!(c[2].polls(), 1, "never woken");
        }
        // It finishes: the rest comes out, in order, once.
        c[0].self_wake.store(false, SeqCst);
        c[0].ready.store(true, SeqCst);
        c[2].finish();
        let mut got = Vec::new();
        for _ in 0..10 {
            match poll_counted(queue.as_mut()).0 {
                Poll::Ready(Some(v)) => got.push(v),
                Poll::Ready(None) => break,
                Poll::Pending => panic!("{order:?} {stop}: stalled with {got:?}"),
            }
        }
        match order {
            Yield::InSubmissionOrder => assert_eq!(got, [0, 1, 2]),
            Yield::InCompletionOrder => assert_eq!(got, [0, 2]),
        }
    }
}

/// A task woken (by another task's poll) at an index below `from` after
/// the pass visited it: the waker of that `poll_next` is woken, the next
/// poll polls it. The waking task is the finisher itself, which wakes a
/// lower slot on its way out — a "completion wakes a dependant" pattern.
#[cfg(not(loom))]
#[test]
fn a_finisher_waking_a_lower_slot_wakes_the_queue() {
    let c = ctls(3);
    let mut queue = pin!(
        TaskQueue::<Task>::with_capacity::<4>()
            .concurrency(4)
            .order(Yield::InSubmissionOrder)
    );
    // Slot 0 waits; slot 1 wakes slot 0 then finishes; slot 2 waits.
    queue.push(task(&c[0], 0)).unwrap();
    let (c0, c1) = (c[0].clone(), c[1].clone());
    let inner = task(&c[1], 1);
    let mut inner = Some(inner);
    queue
        .push(Box::pin(std::future::poll_fn(move |cx| {
            let out = inner.as_mut().unwrap().as_mut().poll(cx);
            if out.is_ready() {
                c0.ready.store(true, SeqCst);
                c0.wake(); // slot 0, already visited in this pass
                inner = None;
            }
            out
        })))
        .unwrap();
    queue.push(task(&c[2], 2)).unwrap();
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Pending);
    c1.finish();
    let (out, woken) = poll_counted(queue.as_mut());
    assert_eq!(
        out,
        Poll::Pending,
        "slot 0 is the oldest and not polled again"
    );
    assert_eq!(polls(&c), [1, 2, 1]);
    assert!(
        woken.wakes() >= 1,
        "lost wake-up: flag 0 left set, caller not woken"
    );
    let (out, _) = poll_counted(queue.as_mut());
    assert_eq!(out, Poll::Ready(Some(0)));
    assert_eq!(polls(&c), [2, 2, 1]);
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Ready(Some(1)));
    c[2].finish();
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Ready(Some(2)));
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Ready(None));
}

// ---------------------------------------------------------- word boundaries

/// All `N` tasks running in a fresh window (task `i` in slot `i`); then
/// every task woken, the `finishers` made ready and the `spinners` waking
/// themselves: the next `poll_next` polls every task exactly once (so the
/// resumed passes lose no flag of a later word, and take none twice).
/// Then, for a few polls, each spinner is polled exactly once per
/// `poll_next` that polls the running tasks, and each such `Pending`
/// wakes the caller. Finally everything finishes and comes out in
/// submission order, exactly once.
#[cfg(not(loom))]
fn boundary<const N: usize>(finishers: &[usize], spinners: &[usize]) {
    let what = format!("N = {N}, finishers {finishers:?}, spinners {spinners:?}");
    let c = ctls(N);
    let mut queue = pin!(
        TaskQueue::<Task>::with_capacity::<N>()
            .concurrency(N)
            .order(Yield::InSubmissionOrder)
    );
    for (i, ctl) in c.iter().enumerate() {
        queue.push(task(ctl, i)).unwrap();
    }
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Pending);
    assert_eq!(polls(&c), vec![1; N], "{what}");
    for (i, ctl) in c.iter().enumerate() {
        if finishers.contains(&i) {
            ctl.ready.store(true, SeqCst);
        }
        if spinners.contains(&i) {
            ctl.self_wake.store(true, SeqCst);
        }
        ctl.wake();
    }
    let mut got = Vec::new();
    let (out, woken) = poll_counted(queue.as_mut());
    assert_eq!(polls(&c), vec![2; N], "{what}: one poll per woken task");
    let spinning = |got: &[usize]| spinners.iter().any(|s| !got.contains(s));
    match out {
        Poll::Ready(Some(v)) => got.push(v),
        Poll::Pending => assert!(
            !spinning(&got) || woken.wakes() >= 1,
            "{what}: Pending, a spinner's flag left set, caller not woken"
        ),
        Poll::Ready(None) => panic!("{what}: ended early"),
    }
    let mut ended = false;
    // Spinners: at most once per `poll_next`, and polled whenever the call
    // reached the running tasks (it returned `Pending`).
    for _ in 0..(N + 4) {
        if ended {
            break;
        }
        let before = polls(&c);
        let (out, woken) = poll_counted(queue.as_mut());
        let after = polls(&c);
        for i in 0..N {
            let d = after[i] - before[i];
            assert!(d <= 1, "{what}: task {i} polled {d} times in one poll_next");
            if spinners.contains(&i) && !finishers.contains(&i) && out.is_pending() {
                assert_eq!(d, 1, "{what}: spinner {i} woken, not polled");
            }
            if !spinners.contains(&i) {
                assert_eq!(d, 0, "{what}: task {i} polled, never woken");
            }
        }
        match out {
            Poll::Ready(Some(v)) => got.push(v),
            Poll::Pending => assert!(
                !spinners.iter().any(|s| !finishers.contains(s)) || woken.wakes() >= 1,
                "{what}: Pending without waking the caller"
            ),
            // Legitimate only once everything came out (checked below).
            Poll::Ready(None) => ended = true,
        }
    }
    // Everything finishes.
    for ctl in &c {
        ctl.self_wake.store(false, SeqCst);
        ctl.ready.store(true, SeqCst);
        ctl.wake();
    }
    for _ in 0..(2 * N + 4) {
        if ended {
            break;
        }
        match poll_counted(queue.as_mut()).0 {
            Poll::Ready(Some(v)) => got.push(v),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("{what}: stalled after {got:?}"),
        }
    }
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "{what}");
    for (i, ctl) in c.iter().enumerate() {
        assert!(ctl.finished.load(SeqCst), "{what}: task {i}");
        assert!(ctl.dropped.load(SeqCst), "{what}: task {i}");
    }
}

#[cfg(not(loom))]
#[test]
fn window_of_1() {
    boundary::<1>(&[], &[0]);
    boundary::<1>(&[0], &[]);
    boundary::<1>(&[0], &[0]);
}

#[cfg(not(loom))]
#[test]
#[cfg_attr(
    miri,
    ignore = "minutes under Miri; the word-boundary and two-word cases run in window_of_65, the threads in loom"
)]
fn window_of_63() {
    boundary::<63>(&[61, 62], &[0, 60]);
    boundary::<63>(&[0, 1, 2, 30, 62], &[3, 31, 61]);
}

#[cfg(not(loom))]
#[test]
#[cfg_attr(
    miri,
    ignore = "minutes under Miri; the word-boundary and two-word cases run in window_of_65, the threads in loom"
)]
fn window_of_64() {
    // 63 finishing: `from` = 64, past the only word.
    boundary::<64>(&[63], &[0, 62]);
    boundary::<64>(&[62, 63], &[0, 61]);
    boundary::<64>(&[0, 31, 63], &[1, 30, 32, 62]);
}

#[cfg(not(loom))]
#[test]
fn window_of_65() {
    // 63 finishing: `from` = 64 (`keep == 0`: the second word swapped);
    // 64 finishing: `from` = 65, past the last index.
    boundary::<65>(&[63], &[0, 62, 64]);
    if cfg!(miri) {
        return; // one two-word case: each takes about 12 s under Miri
    }
    boundary::<65>(&[63, 64], &[0, 62]);
    boundary::<65>(&[64], &[63]);
    boundary::<65>(&[62], &[63, 64]);
}

#[cfg(not(loom))]
#[test]
#[cfg_attr(
    miri,
    ignore = "minutes under Miri; the word-boundary and two-word cases run in window_of_65, the threads in loom"
)]
fn window_of_128() {
    boundary::<128>(&[63, 64, 65], &[0, 62, 66, 127]);
    boundary::<128>(&[0, 63, 127], &[1, 64, 126]);
    boundary::<128>(&[62, 64, 126], &[63, 65, 127]);
    if cfg!(miri) {
        return; // the rest is the same code, many more passes
    }
    // Every other task finishes: a resumed pass per finisher.
    let evens: Vec<usize> = (0..128).step_by(2).collect();
    let odds: Vec<usize> = (1..128).step_by(2).collect();
    boundary::<128>(&evens, &odds);
    boundary::<128>(&odds, &evens);
}

/// Every task finishes in one pass, all in one `poll_next` (a resumed
/// pass per finisher, `N` of them, across two words): each polled once.
#[cfg(not(loom))]
#[test]
#[cfg_attr(
    miri,
    ignore = "minutes under Miri; the word-boundary and two-word cases run in window_of_65, the threads in loom"
)]
fn every_task_finishing_in_one_pass() {
    let all: Vec<usize> = (0..65).collect();
    boundary::<65>(&all, &[]);
    if cfg!(miri) {
        return;
    }
    let all: Vec<usize> = (0..128).collect();
    boundary::<128>(&all, &[]);
    boundary::<65>(&all, &all);
}

// ------------------------------------------------- stale flags left behind

/// A task that wakes itself and then finishes in the same poll (a
/// combinator that wakes its waker on the way out, say) leaves its own
/// flag set. Before db741bfa the pass restarted from 0 after settling it
/// and took (discarded) that flag in the same `poll_next`; now the pass
/// resumes from `index + 1`, so the stale flag outlives the call. With a
/// window of 1 (and the default concurrency 1) the next task starts in the
/// same slot at a later `poll_next` whose running-task pass was skipped
/// (`ring.running() == 0`), and the poll after that polls it for the old
/// task's flag: a spurious poll of a task nobody woke. Allowed by the
/// `Future` contract (no lost wake-up, no double output), but the queue's
/// promise is to poll only the tasks woken since the last poll
/// (`ports_streams.rs`: "Nobody woke them: a second poll polls none").
/// Found by this review, fixed: a task started in a slot clears the slot's
/// flag before its first poll (`WakeBits::forget`), whatever order.
#[cfg(not(loom))]
#[test]
fn a_finished_tasks_stale_flag_does_not_poll_the_slots_next_task() {
    let (a, b) = (Arc::new(Ctl::default()), Arc::new(Ctl::default()));
    let mut queue = pin!(TaskQueue::<Task>::with_capacity::<1>());
    let a2 = a.clone();
    let mut inner = Some(task(&a, 0));
    queue
        .push(Box::pin(std::future::poll_fn(move |cx| {
            let out = inner.as_mut().unwrap().as_mut().poll(cx);
            if out.is_ready() {
                cx.waker().wake_by_ref(); // on the way out
                inner = None;
            }
            out
        })))
        .unwrap();
    queue.push(task(&b, 1)).unwrap(); // beyond the window: waits
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Pending);
    a2.finish();
    // A finishes in a pass (its flag set again on the way out) and is yielded.
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Ready(Some(0)));
    // B starts in slot 0 and is polled once.
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Pending);
    assert_eq!(b.polls(), 1);
    // Nobody woke B.
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Pending);
    assert_eq!(b.polls(), 1, "B polled for A's stale flag");
}

/// The same stale flag with a window larger than 1 is discarded by the
/// next pass before its slot can be reused: no spurious poll.
#[cfg(not(loom))]
#[test]
fn a_finished_tasks_stale_flag_is_discarded_before_reuse_in_a_wider_window() {
    let c = ctls(3);
    let mut queue = pin!(TaskQueue::<Task>::with_capacity::<2>().concurrency(2));
    let a = c[0].clone();
    let mut inner = Some(task(&c[0], 0));
    queue
        .push(Box::pin(std::future::poll_fn(move |cx| {
            let out = inner.as_mut().unwrap().as_mut().poll(cx);
            if out.is_ready() {
                cx.waker().wake_by_ref();
                inner = None;
            }
            out
        })))
        .unwrap();
    queue.push(task(&c[1], 1)).unwrap();
    queue.push(task(&c[2], 2)).unwrap(); // waits beyond the window
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Pending);
    a.finish();
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Ready(Some(0)));
    // Task 2 starts in slot 0 (polled once); 1 is still running.
    for _ in 0..3 {
        let _ = poll_counted(queue.as_mut());
    }
    assert_eq!(polls(&c)[1..], [1, 1], "polled, never woken");
}

// ------------------------------------------------- wrapped ring, stop_when

/// Fills a window of 4 so that submission order A, B, C, D sits in slots
/// 2, 3, 0, 1 (two tasks run and are yielded first), then makes all four
/// ready in one pass (index order C, D, A, B). Returns the outputs and the
/// controls.
#[cfg(not(loom))]
fn wrapped(order: Yield, rejects: &'static [usize]) -> (Vec<usize>, Vec<Arc<Ctl>>) {
    let c = ctls(6);
    let queue = TaskQueue::<Task>::with_capacity::<4>()
        .concurrency(4)
        .order(order)
        .stop_when(move |v: &usize| rejects.contains(v));
    let mut queue = Box::pin(queue);
    for (i, ctl) in c.iter().enumerate().take(2) {
        ctl.ready.store(true, SeqCst);
        queue.push(task(ctl, 100 + i)).unwrap();
    }
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Ready(Some(100)));
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Ready(Some(101)));
    // A..D = outputs 0..4, in slots 2, 3, 0, 1.
    for (i, ctl) in c[2..].iter().enumerate() {
        queue.push(task(ctl, i)).unwrap();
    }
    assert_eq!(poll_counted(queue.as_mut()).0, Poll::Pending);
    assert_eq!(polls(&c[2..]), [1; 4]);
    for ctl in &c[2..] {
        ctl.finish();
    }
    let mut got = Vec::new();
    for _ in 0..12 {
        match poll_counted(queue.as_mut()).0 {
            Poll::Ready(Some(v)) => got.push(v),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("{order:?} {rejects:?}: stalled after {got:?}"),
        }
    }
    for (i, ctl) in c[2..].iter().enumerate() {
        assert!(ctl.polls() <= 2, "task {i} polled {} times", ctl.polls());
        assert!(ctl.dropped.load(SeqCst), "task {i} not dropped");
    }
    (got, c)
}

#[cfg(not(loom))]
#[test]
fn wrapped_ring_submission_order_with_stop_when() {
    assert_eq!(wrapped(Yield::InSubmissionOrder, &[]).0, [0, 1, 2, 3]);
    // C (slot 0) rejects first in the pass: D (slot 1, newer) is dropped
    // unpolled; A and B (older, slots 2 and 3) still run in the resumed pass.
    let (got, c) = wrapped(Yield::InSubmissionOrder, &[2]);
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(c[5].polls(), 1, "D polled after the stop");
    assert!(!c[5].finished.load(SeqCst));
    // B rejects too, seen after C in the pass: the stop moves to B.
    assert_eq!(wrapped(Yield::InSubmissionOrder, &[1, 2]).0, [0, 1]);
    // D rejects, seen second in the pass.
    assert_eq!(wrapped(Yield::InSubmissionOrder, &[3]).0, [0, 1, 2, 3]);
    assert_eq!(wrapped(Yield::InSubmissionOrder, &[0]).0, [0]);
}

#[cfg(not(loom))]
#[test]
fn wrapped_ring_completion_order_with_stop_when() {
    // Completion order is the pass's slot order: C, D, A, B.
    assert_eq!(wrapped(Yield::InCompletionOrder, &[]).0, [2, 3, 0, 1]);
    assert_eq!(wrapped(Yield::InCompletionOrder, &[3]).0, [2, 3]);
    assert_eq!(wrapped(Yield::InCompletionOrder, &[2]).0, [2]);
    assert_eq!(wrapped(Yield::InCompletionOrder, &[1]).0, [2, 3, 0, 1]);
}

// --------------------------------------------------------------- the panic

/// A task panics in a resumed pass (`from` = 2, inside the word: the
/// `fetch_and` branch): the flags after it are put back, the ones before
/// were taken once; the next `poll_next` polls exactly the tasks not
/// reached plus the self-waker, and nothing twice.
#[cfg(not(loom))]
#[test]
#[cfg_attr(
    miri,
    ignore = "minutes under Miri; the word-boundary and two-word cases run in window_of_65, the threads in loom"
)]
fn a_panic_in_a_resumed_pass_loses_no_flag_and_duplicates_none() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    for n_after in [1, 3, 70] {
        // 0: spinner; 1: finisher; 2: woken; 3: panics; then `n_after`
        // woken tasks (across a word boundary for 70).
        let n = 4 + n_after;
        let c = ctls(n);
        let mut queue = pin!(
            TaskQueue::<Task>::with_capacity::<128>()
                .concurrency(128)
                .order(Yield::InSubmissionOrder)
        );
        for (i, ctl) in c.iter().enumerate() {
            queue.push(task(ctl, i)).unwrap();
        }
        assert_eq!(poll_counted(queue.as_mut()).0, Poll::Pending);
        c[0].self_wake.store(true, SeqCst);
        c[1].ready.store(true, SeqCst);
        c[3].panic.store(true, SeqCst);
        for ctl in &c {
            ctl.wake();
        }
        let counter = WakeCounter::new();
        let waker = counter.waker();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            queue.as_mut().poll_next(&mut Context::from_waker(&waker))
        }));
        assert!(caught.is_err(), "the task's panic propagates");
        let mut expect = vec![2; 4];
        expect.extend(vec![1; n_after]);
        assert_eq!(polls(&c), expect, "{n_after}: stopped at the panic");
        assert!(
            counter.wakes() >= 1,
            "{n_after}: the spinner woke the caller"
        );
        // The next poll: the spinner and the tasks not reached, once each.
        let (out, woken) = poll_counted(queue.as_mut());
        assert_eq!(out, Poll::Pending);
        let mut expect = vec![3, 2, 2, 2];
        expect.extend(vec![2; n_after]);
        assert_eq!(polls(&c), expect, "{n_after}: after the panic");
        assert!(woken.wakes() >= 1);
        // Then only the spinner.
        let (out, _) = poll_counted(queue.as_mut());
        assert_eq!(out, Poll::Pending);
        expect[0] += 1;
        assert_eq!(polls(&c), expect, "{n_after}: only the spinner");
        assert!(c[3].dropped.load(SeqCst), "the panicking task is buried");
        // Everything else finishes, in submission order, the panicked one
        // missing.
        for (i, ctl) in c.iter().enumerate() {
            ctl.self_wake.store(false, SeqCst);
            if i != 3 {
                ctl.finish();
            }
        }
        let mut got = Vec::new();
        for _ in 0..(2 * n + 4) {
            match poll_counted(queue.as_mut()).0 {
                Poll::Ready(Some(v)) => got.push(v),
                Poll::Ready(None) => break,
                Poll::Pending => panic!("{n_after}: stalled after {got:?}"),
            }
        }
        let want: Vec<usize> = (0..n).filter(|&i| i != 3).collect();
        assert_eq!(got, want, "{n_after}");
    }
}

// ------------------------------------------------------------------ threads

/// Real threads finish tasks (and wake spinners) while the queue is
/// polled: every output comes out once, in submission order, within a
/// deadline; each `Pending` is followed by a wake-up (the loop parks until
/// one, with a timeout that fails the test). Tasks in a window of 128,
/// across both words.
#[cfg(not(loom))]
#[test]
#[cfg_attr(
    miri,
    ignore = "minutes under Miri; the word-boundary and two-word cases run in window_of_65, the threads in loom"
)]
fn threads_wake_tasks_during_passes() {
    use std::thread;
    use std::time::{Duration, Instant};
    let (n, threads, rounds) = if cfg!(miri) { (20, 2, 1) } else { (128, 3, 20) };
    for round in 0..rounds {
        let c = ctls(n);
        let mut queue = pin!(
            TaskQueue::<Task>::with_capacity::<128>()
                .concurrency(128)
                .order(Yield::InSubmissionOrder)
        );
        for (i, ctl) in c.iter().enumerate() {
            // Some spin until their thread makes them ready.
            ctl.self_wake.store(i % 5 == 0, SeqCst);
            queue.push(task(ctl, i)).unwrap();
        }
        let woken = Arc::new(AtomicBool::new(false));
        let main = thread::current();
        let waker = Waker::from(Arc::new(Unpark(woken.clone(), main)));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Pending);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<Arc<Ctl>> = c
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i + round) % threads == t)
                    .map(|(_, c)| c.clone())
                    .rev() // newer first: results wait for the older
                    .collect();
                thread::spawn(move || {
                    for ctl in mine {
                        ctl.finish();
                        thread::yield_now();
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(if cfg!(miri) { 600 } else { 20 });
        let mut got = Vec::new();
        let mut polls_of_queue = 0;
        loop {
            polls_of_queue += 1;
            assert!(polls_of_queue < 1_000_000, "round {round}: unbounded");
            woken.store(false, SeqCst);
            match queue.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(v)) => got.push(v),
                Poll::Ready(None) => break,
                Poll::Pending => {
                    while !woken.load(SeqCst) {
                        let now = Instant::now();
                        assert!(
                            now < deadline,
                            "round {round}: lost wake-up, stalled after {} results (running {})",
                            got.len(),
                            queue.running()
                        );
                        thread::park_timeout(Duration::from_millis(50).min(deadline - now));
                    }
                }
            }
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(got, (0..n).collect::<Vec<_>>(), "round {round}");
    }
}

#[cfg(not(loom))]
struct Unpark(Arc<AtomicBool>, std::thread::Thread);

#[cfg(not(loom))]
impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, SeqCst);
        self.1.unpark();
    }
}

// --------------------------------------------------------------------- loom

/// loom: the queue's pass stops at slot 1 (finished) and resumes from 2
/// (`fetch_and` keeping bits 0 and 1) while another thread wakes slot 0
/// (below `from`) and slot 2 (at `from`) at any point. Whatever the
/// interleaving: no panic, and if the `poll_next` left a task unpolled
/// after its wake, that `poll_next`'s waker was woken and the next poll
/// polls it.
#[cfg(loom)]
mod loom_model {
    use super::*;
    use deferral::TaskQueue;
    use deferral::queue::Yield;
    use futures::Stream;
    use loom::thread;
    use std::sync::atomic::Ordering::SeqCst;

    #[derive(Default)]
    struct Flag(AtomicUsize);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn poll(queue: Pin<&mut TaskQueue<Task, 4>>, flag: &Arc<Flag>) -> Poll<Option<usize>> {
        let waker = Waker::from(flag.clone());
        queue.poll_next(&mut Context::from_waker(&waker))
    }

    fn model(racing_finisher: bool) {
        loom::model(move || {
            let c = ctls(3);
            let queue = TaskQueue::<Task>::with_capacity::<4>()
                .concurrency(4)
                .order(Yield::InSubmissionOrder)
                .stop_when((|_: &usize| false) as fn(&usize) -> bool);
            let mut queue = Box::pin(queue);
            for (i, ctl) in c.iter().enumerate() {
                queue.as_mut().push(task(ctl, i)).unwrap();
            }
            let first = Arc::new(Flag::default());
            assert_eq!(poll(queue.as_mut(), &first), Poll::Pending);
            // Slot 1 made ready and woken before the poll (or, in the
            // second model, by the other thread): the pass finishes it and
            // resumes from 2.
            let (c0, c1, c2) = (c[0].clone(), c[1].clone(), c[2].clone());
            if !racing_finisher {
                c1.finish();
            }
            let th = thread::spawn(move || {
                if racing_finisher {
                    c1.finish();
                }
                c0.wake();
                c2.wake();
            });
            let flag = Arc::new(Flag::default());
            let out = poll(queue.as_mut(), &flag);
            th.join().unwrap();
            assert_eq!(out, Poll::Pending);
            let p = polls(&c);
            assert!(
                p.iter().all(|&p| p <= 2),
                "polled twice in one poll_next: {p:?}"
            );
            if p != [2, 2, 2] {
                assert!(flag.0.load(SeqCst) >= 1, "lost wake-up {p:?}");
                let again = Arc::new(Flag::default());
                assert_eq!(poll(queue.as_mut(), &again), Poll::Pending);
                assert_eq!(polls(&c), [2, 2, 2], "not polled after its wake");
            }
            assert!(c[1].finished.load(SeqCst));
        });
    }

    #[test]
    fn a_slot_waker_on_another_thread_vs_a_resumed_pass() {
        model(false);
    }

    #[test]
    fn a_finisher_and_slot_wakers_on_another_thread_vs_the_pass() {
        model(true);
    }
}
