//! Hostile review of the live-queue fixes (d914be7e, 183af6ae):
//! `set_timeout` taking in the submissions first, `order(..)` on a live
//! queue, and `stop_when(..)` / `on_rejection(Stop)` on a live queue
//! (`Stop::Examine`, `examine_finished`).
//!
//! Every test here can fail. Found, and fixed in the commit after the one
//! that added this file (until then those tests were ignored as BUGs):
//!
//! - after `order(InCompletionOrder)` on a live queue, a result that waited
//!   for its turn was stuck behind an older running task, and a later
//!   rejection dropped such waiting results: the first fix yielded them
//!   oldest first in completion order. Now the switch applies once no
//!   result waits (they come out in the order they wait in), so neither
//!   order's rules are ever mixed; the three tests about it assert that;
//! - `examine_finished` in completion order stopped at the first rejection
//!   in yield order and dropped the accepted results batched ahead of it
//!   in `ready`: they are kept and yielded first now;
//! - `examine_finished` in submission order after a switch from a batched
//!   completion-order queue truncated slots still listed in `ready` (the
//!   next poll panicked "a finished slot"): a switch now waits until
//!   `ready` is empty, and a stop in completion order keeps what `ready`
//!   lists.
//!
//! No Miri report (Stacked and Tree Borrows).
//!
//! The last section ("third review") is the review of that redesign
//! (d0b01e14: `next_order`, `Ring::retain_finished`), merged here from its
//! own file; what it found is fixed in 9ccee53c.

mod support;

use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use deferral::TaskQueue;
use deferral::queue::{OnRejection, TimedOut, Yield};
use futures::Stream;
use futures::future::Either;
use support::Gate;
use support::drops::DropCounter;
#[cfg(feature = "alloc")]
use support::drops::{PanicOnDrop, Tracked};

const INJECTED: &str = "injected panic";

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
            if !msg.starts_with(INJECTED) && !msg.starts_with("PanicOnDrop") {
                default(info);
            }
        }));
    });
}

type Boxed = Pin<Box<dyn Future<Output = u32>>>;

fn gated(gate: &Gate, n: u32) -> Boxed {
    let wait = gate.wait();
    Box::pin(async move {
        wait.await;
        n
    })
}

fn now(n: u32) -> Boxed {
    Box::pin(async move { n })
}

fn poll<S: Stream + Unpin>(s: &mut S) -> Poll<Option<S::Item>> {
    Pin::new(s).poll_next(&mut Context::from_waker(Waker::noop()))
}

/// Polls up to `polls` times; the items and whether the stream ended.
fn drain<S: Stream + Unpin>(s: &mut S, polls: usize) -> (Vec<S::Item>, bool) {
    let mut out = Vec::new();
    for _ in 0..polls {
        match poll(s) {
            Poll::Ready(Some(x)) => out.push(x),
            Poll::Ready(None) => return (out, true),
            Poll::Pending => {}
        }
    }
    (out, false)
}

/// A submission-order queue (concurrency 3) where 0 runs behind `gate`
/// and 1 and 2 finished and wait for their turn.
fn waiting_behind(gate: &Gate) -> TaskQueue<Boxed> {
    let mut queue = TaskQueue::<Boxed>::new().concurrency(3);
    queue.push(gated(gate, 0)).unwrap();
    queue.push(now(1)).unwrap();
    queue.push(now(2)).unwrap();
    assert!(poll(&mut queue).is_pending());
    assert_eq!((queue.running(), queue.len()), (1, 3));
    queue
}

/// A completion-order queue (concurrency 3) whose last poll finished 0, 1
/// and 2 in one pass: 0 was yielded, 1 and 2 wait (batched in `ready` with
/// `alloc`; unpolled since without).
fn batched() -> TaskQueue<Boxed> {
    let mut queue = TaskQueue::<Boxed>::new()
        .concurrency(3)
        .order(Yield::InCompletionOrder);
    let gates: Vec<Gate> = (0..3).map(|_| Gate::new()).collect();
    for (n, gate) in gates.iter().enumerate() {
        queue.push(gated(gate, n as u32)).unwrap();
    }
    assert!(poll(&mut queue).is_pending());
    for gate in &gates {
        gate.open();
    }
    assert!(matches!(poll(&mut queue), Poll::Ready(Some(0))));
    queue
}

// ------------------------------------------------- order on a live queue

/// Found by review as "BUG: a result that waited for its turn stays stuck
/// behind an older running task after a switch to completion order" (with
/// the first fix, which yielded waiting results oldest first). The rule now
/// (`TaskQueue::order`): results already waiting come out in the order
/// they wait in, and the new order applies from the first poll that finds
/// none waiting. Here: 1 and 2 wait behind 0; after the switch they still
/// do, none is lost; once they are out, completion order holds.
#[test]
fn an_order_switched_on_a_live_queue_applies_once_no_result_waits() {
    let gate = Gate::new();
    let queue = waiting_behind(&gate);
    let mut queue = queue.order(Yield::InCompletionOrder);
    let (out, ended) = drain(&mut queue, 10);
    assert!(!ended);
    assert!(out.is_empty(), "1 and 2 still wait for 0: {out:?}");
    assert_eq!(queue.len(), 3, "nothing lost");
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [0, 1, 2], "in the order they waited in");
    // From now on, completion order: a slow task no longer holds up one
    // that finishes at once.
    let slow = Gate::new();
    queue.push(gated(&slow, 10)).unwrap();
    queue.push(now(11)).unwrap();
    let (out, ended) = drain(&mut queue, 10);
    assert!(!ended);
    assert_eq!(out, [11]);
    slow.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [10]);
}

/// Found by review as "BUG: a rejection after a switch to completion order
/// drops the accepted results that finished before it" (with the first
/// fix). With the switch applying once no result waits, the queue stays in
/// submission order here: the rejection 2 stops it, the results before it
/// (0, still running, and 1, accepted) come out first, nothing is lost.
#[test]
fn a_rejection_after_a_switch_to_completion_order_keeps_the_results_that_finished_before_it() {
    let (held, two) = (Gate::new(), Gate::new());
    let mut queue = TaskQueue::<Boxed>::new()
        .concurrency(3)
        .stop_when(|n: &u32| *n == 2);
    queue.push(gated(&held, 0)).unwrap();
    queue.push(now(1)).unwrap();
    queue.push(gated(&two, 2)).unwrap();
    assert!(poll(&mut queue).is_pending());
    let mut queue = queue.order(Yield::InCompletionOrder);
    two.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(!ended);
    assert!(out.is_empty(), "1 and 2 wait for 0: {out:?}");
    assert!(queue.is_stopped());
    held.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(
        out,
        [0, 1, 2],
        "1 (accepted) and 0 come before the rejection 2"
    );
}

/// Flipped back and forth on a live queue while results wait for their
/// turn: every result comes out exactly once and the stream ends.
#[test]
fn order_flipped_back_and_forth_with_results_waiting_loses_nothing() {
    let gate = Gate::new();
    let mut queue = waiting_behind(&gate);
    let mut out: Vec<u32> = Vec::new();
    for order in [
        Yield::InCompletionOrder,
        Yield::InSubmissionOrder,
        Yield::InCompletionOrder,
        Yield::InSubmissionOrder,
        Yield::InCompletionOrder,
    ] {
        queue = queue.order(order);
        if let Poll::Ready(item) = poll(&mut queue) {
            out.push(item.expect("not ended: 0 runs"));
        }
    }
    assert!(!out.contains(&0));
    queue.push(now(3)).unwrap();
    gate.open();
    let (rest, ended) = drain(&mut queue, 20);
    assert!(ended, "left {}", queue.len());
    out.extend(rest);
    let mut sorted = out.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3], "lost or duplicated: {out:?}");
    assert!(queue.is_empty());
}

/// The same from a batched completion-order queue: submission, completion,
/// submission — 1 and 2 come out once each, nothing else.
#[test]
fn order_flipped_on_a_batched_queue_loses_nothing() {
    let mut queue = batched();
    for order in [
        Yield::InSubmissionOrder,
        Yield::InCompletionOrder,
        Yield::InSubmissionOrder,
    ] {
        queue = queue.order(order);
    }
    let (mut out, ended) = drain(&mut queue, 10);
    assert!(ended);
    out.sort_unstable();
    assert_eq!(out, [1, 2]);
    assert!(queue.is_empty());
}

// ---------------------------------------------- stop_when on a live queue

/// BUG reproducer (`alloc`): a completion-order queue, concurrency 3,
/// tasks 0, 1, 2 behind gates opened together; the poll yields 0 and
/// batches 1 and 2 in `ready`; `.stop_when(|n| *n == 2)`; drain: `[2]`.
/// `examine_finished` stops at the first rejection in yield order (2,
/// after 1 in `ready`) and clears `ready`: 1 — accepted by the predicate,
/// ahead of the rejection in yield order — is dropped unyielded. Broken:
/// no result lost (with the predicate installed from the start the
/// stream is `[0, 1, 2]`; here `[0, 1, 2]` is expected likewise).
#[test]
fn a_predicate_added_to_a_batched_queue_keeps_the_accepted_results_before_the_rejection() {
    let queue = batched();
    let mut queue = queue.stop_when(|n: &u32| *n == 2);
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert!(queue.is_stopped());
    assert_eq!(out, [1, 2], "1 is accepted and comes before the rejection");
}

/// Found by review as "BUG: stop_when after a switch to completion order
/// drops the accepted waiting results examined before the rejection" (with
/// the first fix). Now the switch waits for the waiting results, so the
/// predicate examines them in submission order: 1 accepted, 2 the
/// rejection; 0 (running when the predicate came) is judged as it
/// finishes. Nothing ahead of the rejection is lost.
#[test]
fn a_predicate_added_after_a_switch_keeps_the_accepted_results_before_the_rejection() {
    let gate = Gate::new();
    let queue = waiting_behind(&gate);
    let mut queue = queue
        .order(Yield::InCompletionOrder)
        .stop_when(|n: &u32| *n == 2);
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert!(queue.is_stopped());
    assert_eq!(
        out,
        [0, 1, 2],
        "0 and 1 are accepted and come before the rejection"
    );
}

/// BUG reproducer (`alloc`): the batched queue above (0 yielded, 1 and 2
/// in `ready`), then `.order(Yield::InSubmissionOrder).stop_when(|n| *n ==
/// 1)`; poll: 1; poll again: panic "a finished slot". `examine_finished`
/// stops at 1 in start order and clears `ready` only in completion order:
/// the stop truncates slot 2, whose index stays in `ready`, and the next
/// poll pops it and `take`s a vacant slot. Broken: a poll never panics
/// on the queue's own state; `ready` holds finished slots only.
#[test]
fn a_stop_after_a_switch_from_a_batched_queue_leaves_no_stale_ready_index() {
    let queue = batched();
    let mut queue = queue
        .order(Yield::InSubmissionOrder)
        .stop_when(|n: &u32| *n == 1);
    let drained = catch_unwind(AssertUnwindSafe(|| drain(&mut queue, 10)));
    let (out, ended) = drained.expect("no poll panics");
    assert!(ended);
    assert_eq!(out, [1], "the rejection, nothing after it");
    assert!(queue.is_stopped());
    assert!(queue.is_empty());
}

/// Until the next poll, `Stop::Examine` is not a stop: pushes are taken,
/// submitters open, `is_stopped` false, `len` counts everything; that
/// poll stops the queue, drops what came after the rejection once, and
/// closes the submitters.
#[test]
fn a_pending_examination_is_not_a_stop_until_the_next_poll() {
    let gate = Gate::new();
    let drops = DropCounter::new();
    let queue = waiting_behind(&gate);
    let mut queue = queue.stop_when(|n: &u32| *n == 1);
    assert!(!queue.is_stopped());
    let tracked = drops.tracked();
    queue
        .push(Box::pin(async move {
            let _t = tracked;
            3
        }))
        .unwrap();
    #[cfg(feature = "alloc")]
    let submitter = queue.submitter();
    #[cfg(feature = "alloc")]
    {
        let tracked = drops.tracked();
        submitter
            .submit(Box::pin(async move {
                let _t = tracked;
                4
            }))
            .unwrap();
    }
    assert_eq!(queue.len(), 4);
    assert!(!queue.is_stopped());
    assert!(poll(&mut queue).is_pending());
    assert!(queue.is_stopped(), "1 finished before the predicate");
    let expected = if cfg!(feature = "alloc") { 2 } else { 1 };
    assert_eq!(drops.get(), expected, "3 (and 4) dropped unstarted");
    assert!(queue.push(now(5)).is_err(), "a stopped queue takes nothing");
    #[cfg(feature = "alloc")]
    assert!(submitter.submit(now(6)).is_err(), "submissions closed");
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [0, 1]);
    assert_eq!(drops.get(), expected, "dropped once");
}

/// A predicate that panics inside `examine_finished` is asked about each
/// output at most once; the queue stays consistent and yields the rest.
#[test]
fn a_panicking_predicate_in_the_examination_is_not_asked_again() {
    quiet_panics();
    let gate = Gate::new();
    let asked = Rc::new(RefCell::new(Vec::new()));
    let log = asked.clone();
    let queue = waiting_behind(&gate);
    let mut queue = queue.stop_when(move |n: &u32| {
        log.borrow_mut().push(*n);
        if *n == 1 {
            panic!("{INJECTED}");
        }
        false
    });
    let first = catch_unwind(AssertUnwindSafe(|| poll(&mut queue)));
    assert!(first.is_err(), "the predicate panicked");
    assert!(!queue.is_stopped());
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [0, 1, 2]);
    let mut asked = asked.borrow().clone();
    asked.sort_unstable();
    let mut once = asked.clone();
    once.dedup();
    assert_eq!(asked, once, "asked twice about one output");
    assert!(asked.contains(&1));
}

/// Two predicates installed, the second replacing the first, before any
/// poll: only the second one counts.
#[test]
fn a_replaced_predicate_is_not_the_one_examining() {
    let gate = Gate::new();
    let queue = waiting_behind(&gate);
    let mut queue = queue
        .stop_when(|n: &u32| *n == 1)
        .stop_when(|n: &u32| *n == 2);
    queue.push(now(3)).unwrap();
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [0, 1, 2], "stops at 2, not 1");
    assert!(queue.is_stopped());
}

type Fallible = Pin<Box<dyn Future<Output = Result<u32, u32>>>>;

/// `stop_when`, then `on_rejection(KeepGoing)` before any poll: the
/// pending examination must not stop the queue or lose anything.
#[test]
fn a_predicate_removed_before_the_next_poll_stops_nothing() {
    let gate = Gate::new();
    let mut queue = TaskQueue::<Fallible>::new().concurrency(3);
    let wait = gate.wait();
    queue
        .push(Box::pin(async move {
            wait.await;
            Ok(0)
        }))
        .unwrap();
    queue.push(Box::pin(async { Err(1) })).unwrap();
    queue.push(Box::pin(async { Ok(2) })).unwrap();
    assert!(poll(&mut queue).is_pending());
    let mut queue = queue
        .on_rejection(OnRejection::Stop)
        .stop_when(|r: &Result<u32, u32>| r.is_err())
        .on_rejection(OnRejection::KeepGoing);
    assert!(!queue.is_stopped());
    queue.push(Box::pin(async { Ok(3) })).unwrap();
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [Ok(0), Err(1), Ok(2), Ok(3)]);
    assert!(!queue.is_stopped());
}

/// `on_rejection(Stop)` on a live queue: the rejection that finished
/// before it stops the queue at the next poll (submission order).
#[test]
fn on_rejection_stop_on_a_live_queue_examines_the_waiting_results() {
    let gate = Gate::new();
    let mut queue = TaskQueue::<Fallible>::new().concurrency(3);
    let wait = gate.wait();
    queue
        .push(Box::pin(async move {
            wait.await;
            Ok(0)
        }))
        .unwrap();
    queue.push(Box::pin(async { Err(1) })).unwrap();
    queue.push(Box::pin(async { Ok(2) })).unwrap();
    assert!(poll(&mut queue).is_pending());
    let mut queue = queue.on_rejection(OnRejection::Stop);
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [Ok(0), Err(1)]);
    assert!(queue.is_stopped());
}

/// `clear()`, `close()` and the queue's drop while the examination is
/// pending: every future dropped exactly once, nothing panics.
#[test]
fn clear_close_and_drop_with_an_examination_pending() {
    let drops = DropCounter::new();
    let gate = Gate::new();
    let mut queue = TaskQueue::<Boxed>::new().concurrency(2);
    let mk = |n: u32, gated: bool| -> Boxed {
        let tracked = drops.tracked();
        let wait = gate.wait();
        Box::pin(async move {
            let _t = tracked;
            if gated {
                wait.await;
            }
            n
        })
    };
    queue.push(mk(0, true)).unwrap();
    queue.push(mk(1, false)).unwrap();
    queue.push(mk(2, true)).unwrap();
    queue.push(mk(3, false)).unwrap();
    queue.push(mk(4, false)).unwrap();
    assert!(poll(&mut queue).is_pending());
    assert_eq!(drops.get(), 1, "0 and 2 run, 1 finished; 3, 4 unstarted");
    let mut queue = queue.stop_when(|n: &u32| *n == 1);
    queue.clear();
    assert_eq!(drops.get(), 3, "3 and 4 dropped by clear");
    queue.close();
    assert!(!queue.is_stopped());
    assert!(poll(&mut queue).is_pending(), "0 still runs");
    assert!(queue.is_stopped());
    assert_eq!(drops.get(), 4, "2 dropped by the stop (after 1)");
    drop(queue);
    assert_eq!(drops.get(), 5, "0's future dropped with the queue");
}

/// An output whose destructor may panic.
struct Out(u32, #[allow(dead_code)] Option<support::drops::PanicOnDrop>);

/// The stop `examine_finished` finds drops what comes after the rejection
/// (submission order): a panicking output destructor among them unwinds
/// out of that poll; the next polls go on, and each future and output is
/// dropped exactly once.
#[test]
fn a_panicking_drop_after_an_examined_rejection_leaves_the_queue_consistent() {
    quiet_panics();
    type Outs = Pin<Box<dyn Future<Output = Out>>>;
    let (gate, late) = (Gate::new(), Gate::new());
    let (outputs, futures) = (DropCounter::new(), DropCounter::new());
    let mut queue = TaskQueue::<Outs>::new().concurrency(4);
    let wait = gate.wait();
    queue
        .push(Box::pin(async move {
            wait.await;
            Out(0, None)
        }))
        .unwrap();
    queue.push(Box::pin(async { Out(1, None) })).unwrap();
    let panicking = outputs.panicking();
    queue
        .push(Box::pin(async move { Out(2, Some(panicking)) }))
        .unwrap();
    let (wait, tracked) = (late.wait(), futures.tracked());
    queue
        .push(Box::pin(async move {
            let _t = tracked;
            wait.await;
            Out(3, None)
        }))
        .unwrap();
    assert!(poll(&mut queue).is_pending());
    assert_eq!(queue.running(), 2);
    let mut queue = queue.stop_when(|o: &Out| o.0 == 1);
    let first = catch_unwind(AssertUnwindSafe(|| poll(&mut queue)));
    assert!(first.is_err(), "2's output panicked when dropped");
    assert!(queue.is_stopped());
    assert_eq!((outputs.get(), futures.get()), (1, 1), "3 and 2 dropped");
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [0, 1]);
    drop(out);
    assert_eq!((outputs.get(), futures.get()), (1, 1), "dropped once");
    assert!(queue.is_empty());
}

// --------------------------------------------------------------- timeouts

/// A timeout among the examined outcomes is a rejection: the first timer
/// (task 0's) never fires, the others are over at once, so 1 (pending)
/// times out while it waits for 0; `stop_when(|_| false)` on the live
/// queue stops at that timeout (never asking the predicate about it).
#[test]
fn a_timeout_among_the_examined_outcomes_stops_the_queue() {
    let timers = Arc::new(AtomicUsize::new(0));
    let made = timers.clone();
    let gate = Gate::new();
    let mut queue = TaskQueue::<Boxed>::new()
        .concurrency(2)
        .timer(move |_: Duration| {
            if made.fetch_add(1, SeqCst) == 0 {
                Either::Left(std::future::pending::<()>())
            } else {
                Either::Right(std::future::ready(()))
            }
        })
        .timeout(Duration::from_millis(10));
    queue.push(gated(&gate, 0)).unwrap();
    queue.push(Box::pin(std::future::pending())).unwrap();
    assert!(poll(&mut queue).is_pending());
    assert_eq!(timers.load(SeqCst), 2);
    let asked = Rc::new(RefCell::new(Vec::new()));
    let log = asked.clone();
    let mut queue = queue.stop_when(move |n: &u32| {
        log.borrow_mut().push(*n);
        false
    });
    queue.push(now(2)).unwrap();
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [Ok(0), Err(TimedOut)]);
    assert!(queue.is_stopped());
    assert_eq!(*asked.borrow(), [0], "the timeout needs no predicate");
}

/// `set_timeout` with an attached static inbox: a task taken into the
/// window keeps the default in force when it was taken; without `alloc`,
/// the ones that did not fit get the default in force when they do.
#[test]
fn set_timeout_with_an_attached_inbox_and_a_full_window() {
    type Sent = Pin<Box<dyn Future<Output = u32> + Send>>;
    static INBOX: deferral::queue::Inbox<Sent, 4> = deferral::queue::Inbox::new();
    let limits = Arc::new(Mutex::new(Vec::new()));
    let log = limits.clone();
    let mut queue = TaskQueue::<Sent>::with_capacity::<2>()
        .concurrency(1)
        .timer(move |d: Duration| {
            log.lock().unwrap().push(d.as_millis() as u64);
            std::future::ready(())
        })
        .timeout(Duration::from_millis(10));
    queue.attach(&INBOX).unwrap();
    for n in 0..4 {
        INBOX.submit(Box::pin(async move { n })).unwrap();
    }
    queue.set_timeout(Duration::from_millis(20));
    INBOX.close();
    let (out, ended) = drain(&mut queue, 20);
    assert!(ended);
    assert_eq!(out, [Ok(0), Ok(1), Ok(2), Ok(3)]);
    let limits = limits.lock().unwrap().clone();
    if cfg!(feature = "alloc") {
        assert_eq!(limits, [10, 10, 10, 10], "all submitted before");
    } else {
        assert_eq!(limits, [10, 10, 20, 20], "2 fit in the window");
    }
}

// ===================================================== third review
//
// Hostile review of d0b01e14: `order(..)` on a live queue deferred to
// `State::next_order` (applied at the end of a `poll_next` once no result
// waits), and `Ring::retain_finished` (a stop found by `examine_finished`
// in completion order keeps the accepted results batched in `ready`).
//
// Every test here can fail. Found, and fixed in the commit after the one
// that added this file (until then ignored as BUGs, reproducers in their
// docs): the deferred switch was only looked at by a poll that yields
// nothing, so a poll that finds no result waiting still followed the old
// order — a result held back behind an older running task after a switch
// to completion order (for as long as that task runs, also after
// `until(Level::Idle)` ended with the switch pending), and one yielded
// ahead of an older task after a switch to submission order. The switch
// is now applied at the start of the first poll that finds none waiting.
// ------------------------------------------------ next_order on a live queue

/// BUG reproducer: submission order, concurrency 4: 0 (gated), 1 (at
/// once), 2 and 3 (gated); poll: 1 waits behind 0; `.order(InCompletion
/// Order)` (deferred: a result waits); open 0; poll: 0; poll: 1 — no
/// result waits any more; open 3; poll: `Pending`, 3 is held behind 2
/// (and stays so while 2 runs: every result after it too). `next_order`
/// is only applied at the end of a poll that yielded nothing and left no
/// result waiting; the poll that yielded 1 returned first, and the next
/// one left 3 waiting in the old order. Broken: `TaskQueue::order`'s
/// "the new order applies from the first poll that finds none waiting:
/// the switch never ... holds back a result".
#[test]
fn a_switch_to_completion_order_applies_once_the_waiting_results_are_out() {
    let (g0, g2, g3) = (Gate::new(), Gate::new(), Gate::new());
    let mut queue = TaskQueue::<Boxed>::new().concurrency(4);
    queue.push(gated(&g0, 0)).unwrap();
    queue.push(now(1)).unwrap();
    queue.push(gated(&g2, 2)).unwrap();
    queue.push(gated(&g3, 3)).unwrap();
    assert!(poll(&mut queue).is_pending());
    let mut queue = queue.order(Yield::InCompletionOrder);
    g0.open();
    assert_eq!(poll(&mut queue), Poll::Ready(Some(0)));
    assert_eq!(poll(&mut queue), Poll::Ready(Some(1)));
    // None waits now: completion order.
    g3.open();
    assert_eq!(
        poll(&mut queue),
        Poll::Ready(Some(3)),
        "3 finished after every waiting result was out; 2 still runs"
    );
    g2.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [2]);
}

/// BUG reproducer (`alloc`): completion order, concurrency 3, 0, 1, 2
/// behind gates opened together; poll: 0 (1 and 2 batched in `ready`);
/// `.order(InSubmissionOrder)` (deferred); poll: 1; poll: 2 — nothing
/// left; push 5 (gated) and 6 (at once); poll: `Some(6)` ahead of the
/// running 5. The polls that emptied `ready` returned before the switch;
/// the next one starts 5 and 6 and yields 6 in completion order. Broken:
/// after a switch to submission order, once the results that waited are
/// out, results come in submission order.
#[cfg(feature = "alloc")]
#[test]
fn a_switch_to_submission_order_applies_once_the_batched_results_are_out() {
    let gates: Vec<Gate> = (0..3).map(|_| Gate::new()).collect();
    let mut queue = TaskQueue::<Boxed>::new()
        .concurrency(3)
        .order(Yield::InCompletionOrder);
    for (n, gate) in gates.iter().enumerate() {
        queue.push(gated(gate, n as u32)).unwrap();
    }
    assert!(poll(&mut queue).is_pending());
    gates.iter().for_each(Gate::open);
    assert_eq!(poll(&mut queue), Poll::Ready(Some(0)));
    let mut queue = queue.order(Yield::InSubmissionOrder);
    assert_eq!(poll(&mut queue), Poll::Ready(Some(1)));
    assert_eq!(poll(&mut queue), Poll::Ready(Some(2)));
    let slow = Gate::new();
    queue.push(gated(&slow, 5)).unwrap();
    queue.push(now(6)).unwrap();
    assert_eq!(poll(&mut queue), Poll::Pending, "6 waits for 5");
    slow.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [5, 6]);
}

/// BUG reproducer: `waiting_behind` (1 and 2 wait behind the running 0),
/// `.order(InCompletionOrder)`, open 0, `until(Level::Idle)` collects
/// `[0, 1, 2]` — it stops at the level, so the queue's own stream never
/// gets the poll that would find nothing waiting and apply the switch;
/// push 10 (gated) and 11 (at once): drain gives `[]`, 11 held behind 10
/// (every poll ends with 11 waiting, so the switch waits for 10). Broken:
/// the first poll that finds no result waiting uses the new order.
#[test]
fn a_switch_pending_when_until_idle_ends_applies_to_the_next_tasks() {
    use deferral::queue::Level;
    use futures::StreamExt;
    let gate = Gate::new();
    let queue = waiting_behind(&gate);
    let mut queue = queue.order(Yield::InCompletionOrder);
    gate.open();
    let out: Vec<u32> =
        futures::executor::block_on(Pin::new(&mut queue).until(Level::Idle).collect());
    assert_eq!(out, [0, 1, 2]);
    assert!(queue.is_empty());
    let slow = Gate::new();
    queue.push(gated(&slow, 10)).unwrap();
    queue.push(now(11)).unwrap();
    let (out, ended) = drain(&mut queue, 10);
    assert!(!ended);
    assert_eq!(out, [11], "completion order: 11 does not wait for 10");
    slow.open();
    assert_eq!(drain(&mut queue, 10), (vec![10], true));
}

/// A→B→A while results wait: the pending switch is cancelled, submission
/// order holds, nothing lost or duplicated, and later tasks still wait
/// for older ones.
#[test]
fn a_switch_cancelled_by_the_current_order_keeps_submission_order() {
    let gate = Gate::new();
    let queue = waiting_behind(&gate);
    let mut queue = queue
        .order(Yield::InCompletionOrder)
        .order(Yield::InSubmissionOrder);
    let (out, ended) = drain(&mut queue, 5);
    assert!(!ended);
    assert!(out.is_empty());
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [0, 1, 2]);
    let slow = Gate::new();
    queue.push(gated(&slow, 10)).unwrap();
    queue.push(now(11)).unwrap();
    let (out, ended) = drain(&mut queue, 5);
    assert!(!ended);
    assert!(out.is_empty(), "11 waits for 10: {out:?}");
    slow.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [10, 11]);
}

/// The same switch asked twice (A→B, B again) stays pending once, and a
/// queue that ends with it pending ends once, every result out, then
/// runs in the new order.
#[test]
fn a_switch_asked_twice_and_a_stream_ending_with_it_pending() {
    let gate = Gate::new();
    let queue = waiting_behind(&gate);
    let mut queue = queue
        .order(Yield::InCompletionOrder)
        .order(Yield::InCompletionOrder);
    gate.open();
    let mut out = Vec::new();
    loop {
        match poll(&mut queue) {
            Poll::Ready(Some(n)) => out.push(n),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("nothing runs: {out:?}"),
        }
    }
    assert_eq!(out, [0, 1, 2]);
    assert_eq!(poll(&mut queue), Poll::Ready(None), "ended stays ended");
    let slow = Gate::new();
    queue.push(gated(&slow, 10)).unwrap();
    queue.push(now(11)).unwrap();
    let (out, ended) = drain(&mut queue, 5);
    assert!(!ended);
    assert_eq!(out, [11]);
    slow.open();
    assert_eq!(drain(&mut queue, 5), (vec![10], true));
}

/// `close()` with a switch pending and `stop_when` on top: the waiting
/// results before the rejection come out once, the stream ends.
#[test]
fn close_and_stop_with_a_switch_pending_lose_nothing() {
    let gate = Gate::new();
    let queue = waiting_behind(&gate);
    let queue = queue.order(Yield::InCompletionOrder);
    queue.close();
    let mut queue = queue.stop_when(|n: &u32| *n == 1);
    gate.open();
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out, [0, 1], "0 accepted, 1 the rejection, 2 dropped");
    assert!(queue.is_empty());
}

// ------------------------------------------------------- retain_finished

#[cfg(feature = "alloc")]
type Item = (u32, Option<Tracked>);
#[cfg(feature = "alloc")]
type Outs = Pin<Box<dyn Future<Output = Item>>>;

/// Completion order, concurrency 5: 0, 1, 2 (outputs tracked) batched
/// together, 3 (holding a destructor that panics) and 4 (tracked) still
/// running. `stop_when(|o| o.0 == 1)`: the examination stops at 1 in
/// `ready`; `retain_finished` drops newest first: 4, then 3 panics out of
/// the poll before 2 is dropped. The next polls go on: 1 comes out once,
/// 2 is dropped once, the stream ends, every count once.
#[cfg(feature = "alloc")]
#[test]
fn retain_finished_with_a_panicking_running_future_goes_on_after_the_panic() {
    quiet_panics();
    let (outputs, futures) = (DropCounter::new(), DropCounter::new());
    let gates: Vec<Gate> = (0..5).map(|_| Gate::new()).collect();
    let mut queue = TaskQueue::<Outs>::new()
        .concurrency(5)
        .order(Yield::InCompletionOrder);
    for n in 0..3u32 {
        let (wait, out) = (gates[n as usize].wait(), outputs.tracked());
        queue
            .push(Box::pin(async move {
                wait.await;
                (n, Some(out))
            }))
            .unwrap();
    }
    let (wait, bomb): (_, PanicOnDrop) = (gates[3].wait(), futures.panicking());
    queue
        .push(Box::pin(async move {
            let _bomb = bomb;
            wait.await;
            (3, None)
        }))
        .unwrap();
    let (wait, t) = (gates[4].wait(), futures.tracked());
    queue
        .push(Box::pin(async move {
            let _t = t;
            wait.await;
            (4, None)
        }))
        .unwrap();
    assert!(poll(&mut queue).is_pending());
    assert_eq!(queue.running(), 5);
    gates[..3].iter().for_each(Gate::open);
    let first = match poll(&mut queue) {
        Poll::Ready(Some(item)) => item,
        other => panic!("0 expected: {:?}", other.map(|o| o.map(|i| i.0))),
    };
    assert_eq!(first.0, 0);
    drop(first);
    assert_eq!(outputs.get(), 1);
    let mut queue = queue.stop_when(|o: &Item| o.0 == 1);
    let panicked = catch_unwind(AssertUnwindSafe(|| poll(&mut queue)));
    assert!(panicked.is_err(), "3's future panicked when dropped");
    assert!(queue.is_stopped());
    assert_eq!(futures.get(), 2, "4, then 3 dropped");
    assert_eq!(outputs.get(), 1, "2 not dropped yet");
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [1]);
    assert_eq!(outputs.get(), 2, "2 dropped once");
    drop(out);
    assert_eq!((outputs.get(), futures.get()), (3, 2), "each once");
    assert!(queue.is_empty());
    assert_eq!(queue.running(), 0);
    gates.iter().for_each(Gate::open);
    assert!(matches!(poll(&mut queue), Poll::Ready(None)));
}

/// Completion order: 0 yielded, 1 and 2 batched in `ready`, 3 runs; a
/// predicate rejecting 2 keeps 1 and 2 (`retain_finished`) and drops 3 in
/// place once. Both come out once, in order, the stream ends; `len` and
/// `running` are right after each step.
#[cfg(feature = "alloc")]
#[test]
fn retain_finished_keeps_the_batched_results_up_to_the_rejection() {
    let futures = DropCounter::new();
    let gates: Vec<Gate> = (0..4).map(|_| Gate::new()).collect();
    let mut queue = TaskQueue::<Boxed>::new()
        .concurrency(4)
        .order(Yield::InCompletionOrder);
    for n in 0..3u32 {
        queue.push(gated(&gates[n as usize], n)).unwrap();
    }
    let (wait, t) = (gates[3].wait(), futures.tracked());
    queue
        .push(Box::pin(async move {
            let _t = t;
            wait.await;
            3
        }))
        .unwrap();
    assert!(poll(&mut queue).is_pending());
    gates[..3].iter().for_each(Gate::open);
    assert_eq!(poll(&mut queue), Poll::Ready(Some(0)));
    let mut queue = queue.stop_when(|n: &u32| *n == 2);
    assert_eq!(poll(&mut queue), Poll::Ready(Some(1)));
    assert_eq!(futures.get(), 1, "3 dropped by the stop");
    assert_eq!((queue.running(), queue.len()), (0, 1));
    assert_eq!(poll(&mut queue), Poll::Ready(Some(2)));
    assert!(queue.is_empty());
    gates[3].open();
    assert_eq!(drain(&mut queue, 5), (vec![], true));
    assert_eq!(futures.get(), 1);
}

/// A poll that batched 0, 1 and 2 in `ready` and then panicked in 3's
/// poll (3 doomed); `stop_when(|o| o.0 == 1)`; the next poll buries 3,
/// examines `ready` (1 the rejection), `retain_finished` drops 2's output
/// and the running 4 once each; 0 and 1 come out once, the stream ends.
#[cfg(feature = "alloc")]
#[test]
fn retain_finished_after_a_panicked_poll_with_a_doomed_task() {
    quiet_panics();
    let (outputs, futures) = (DropCounter::new(), DropCounter::new());
    let gates: Vec<Gate> = (0..5).map(|_| Gate::new()).collect();
    let mut queue = TaskQueue::<Outs>::new()
        .concurrency(5)
        .order(Yield::InCompletionOrder);
    for n in 0..3u32 {
        let (wait, out) = (gates[n as usize].wait(), outputs.tracked());
        queue
            .push(Box::pin(async move {
                wait.await;
                (n, Some(out))
            }))
            .unwrap();
    }
    let (wait, t3) = (gates[3].wait(), futures.tracked());
    queue
        .push(Box::pin(async move {
            let _t = t3;
            wait.await;
            panic!("PanicOnDrop-style injected poll panic");
        }))
        .unwrap();
    let (wait, t4) = (gates[4].wait(), futures.tracked());
    queue
        .push(Box::pin(async move {
            let _t = t4;
            wait.await;
            (4, None)
        }))
        .unwrap();
    assert!(poll(&mut queue).is_pending());
    gates[..4].iter().for_each(Gate::open);
    let panicked = catch_unwind(AssertUnwindSafe(|| poll(&mut queue)));
    assert!(panicked.is_err(), "3's poll panicked");
    let mut queue = queue.stop_when(|o: &Item| o.0 == 1);
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [0, 1]);
    assert_eq!((outputs.get(), futures.get()), (1, 2), "2, 3 and 4 once");
    drop(out);
    assert_eq!((outputs.get(), futures.get()), (3, 2), "each once");
    assert!(queue.is_empty());
    gates[4].open();
    assert!(matches!(poll(&mut queue), Poll::Ready(None)));
}

/// A switch to submission order pending on a batched completion-order
/// queue (1 and 2 in `ready`), then a predicate rejecting 1: the
/// examination runs in the current (completion) order, keeps 1, drops 2
/// once; the stream is `[1]` and ends, nothing left.
#[cfg(feature = "alloc")]
#[test]
fn a_predicate_with_a_switch_pending_on_a_batched_queue() {
    let outputs = DropCounter::new();
    let gates: Vec<Gate> = (0..3).map(|_| Gate::new()).collect();
    let mut queue = TaskQueue::<Outs>::new()
        .concurrency(3)
        .order(Yield::InCompletionOrder);
    for n in 0..3u32 {
        let (wait, out) = (gates[n as usize].wait(), outputs.tracked());
        queue
            .push(Box::pin(async move {
                wait.await;
                (n, Some(out))
            }))
            .unwrap();
    }
    assert!(poll(&mut queue).is_pending());
    gates.iter().for_each(Gate::open);
    assert!(matches!(poll(&mut queue), Poll::Ready(Some((0, _)))));
    assert_eq!(outputs.get(), 1);
    let mut queue = queue
        .order(Yield::InSubmissionOrder)
        .stop_when(|o: &Item| o.0 == 1);
    let (out, ended) = drain(&mut queue, 10);
    assert!(ended);
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), [1]);
    assert_eq!(outputs.get(), 2, "2 dropped once");
    drop(out);
    assert_eq!(outputs.get(), 3);
    assert!(queue.is_empty() && queue.is_stopped());
}
