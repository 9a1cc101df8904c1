//! Hostile review of d0b01e14: `order(..)` on a live queue deferred to
//! `State::next_order` (applied at the end of a `poll_next` once no result
//! waits), and `Ring::retain_finished` (a stop found by `examine_finished`
//! in completion order keeps the accepted results batched in `ready`).
//!
//! Every test here can fail. Found, and fixed in the commit after the one
//! that added this file (until then ignored as BUGs, reproducers in their
//! docs): the deferred switch was only looked at by a poll that yields
//! nothing, so a poll that finds no result waiting still followed the old
//! order — a result held back behind an older running task after a switch
//! to completion order (for as long as that task runs, also after
//! `until(Level::Idle)` ended with the switch pending), and one yielded
//! ahead of an older task after a switch to submission order. The switch
//! is now applied at the start of the first poll that finds none waiting.

// The `alloc`-only tests use some of the imports and helpers.
#![cfg_attr(not(feature = "alloc"), allow(unused_imports, dead_code))]

mod support;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll, Waker};

use deferral::TaskQueue;
use deferral::queue::Yield;
use futures::Stream;
use support::Gate;
use support::drops::{DropCounter, PanicOnDrop, Tracked};

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
            if !msg.starts_with("PanicOnDrop") {
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

type Item = (u32, Option<Tracked>);
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
