//! loom models of the task queue's cross-thread handoff: a `Submitter` on
//! another thread against the queue's poll (no lost wake-up, the task comes
//! out once) and against the queue's drop (the task is dropped exactly once
//! and never run); a task's per-slot waker (`WakeBits`) fired on another
//! thread against the queue's poll (`register`, then `for_each_woken`: no
//! lost wake-up) and against the queue's drop; the submitter count (the
//! last `Submitter` dropped on another thread against the queue's poll:
//! the stream ends after every submission, and never hangs); the `static`
//! `Inbox` (a submission against the queue's take, two producers against
//! one slot and the take — also across the wrap of its positions —, a
//! submission against the queue's drop, two queues on two threads racing
//! to attach it: one wins); `until` (its level check reads the inboxes'
//! "a submission waits" hints) against a submission on another thread.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_queue`.
#![cfg(loom)]

use std::future::Ready;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use deferral::TaskQueue;
use deferral::queue::{Inbox, Level, PushError};
use futures::{Stream, StreamExt};
use loom::sync::Mutex;
use loom::sync::atomic::AtomicBool;
use loom::thread;

#[derive(Default)]
struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A task that counts its drops and its runs.
struct Probe {
    drops: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

impl IntoFuture for Probe {
    type Output = u8;
    type IntoFuture = Ready<u8>;
    fn into_future(self) -> Ready<u8> {
        self.runs.fetch_add(1, SeqCst);
        std::future::ready(7)
    }
}

#[test]
fn submit_on_another_thread_vs_poll() {
    loom::model(|| {
        let mut queue = Box::pin(TaskQueue::<Probe>::new());
        let submit = queue.as_mut().submitter();
        let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = Probe {
            drops: drops.clone(),
            runs: runs.clone(),
        };
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let th = thread::spawn(move || {
            submit.submit(task).unwrap_or_else(|_| panic!("open"));
        });
        let first = queue.as_mut().poll_next(&mut cx);
        th.join().unwrap();
        match first {
            Poll::Ready(Some(7)) => {}
            Poll::Pending => {
                // Not seen yet, the submitter alive then: the submission
                // (or the submitter's drop) woke the queue, and the
                // submission shows up at the next poll.
                assert!(flag.0.load(SeqCst) >= 1, "lost wake-up");
                assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(Some(7)));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(None));
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn a_waiting_queue_is_woken_by_a_submission() {
    loom::model(|| {
        let mut queue = Box::pin(TaskQueue::<Pin<Box<dyn Future<Output = u8> + Send>>>::new());
        let submit = queue.as_mut().submitter();
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        // A task that stays pending keeps the stream from ending.
        queue
            .as_mut()
            .push(Box::pin(std::future::pending()))
            .unwrap_or_else(|_| panic!("room"));
        assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Pending);
        let th = thread::spawn(move || {
            submit
                .submit(Box::pin(std::future::ready(1)))
                .unwrap_or_else(|_| panic!("open"));
        });
        let polled = queue.as_mut().poll_next(&mut cx);
        th.join().unwrap();
        if polled.is_pending() {
            // Missed by that poll: then the submission woke us.
            assert!(flag.0.load(SeqCst) >= 1, "lost wake-up");
        }
    });
}

#[test]
fn submit_vs_drop_of_the_queue() {
    loom::model(|| {
        let mut queue = Box::pin(TaskQueue::<Probe>::new());
        let submit = queue.as_mut().submitter();
        let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = Probe {
            drops: drops.clone(),
            runs: runs.clone(),
        };
        let th = thread::spawn(move || match submit.submit(task) {
            Ok(()) => {}
            Err(PushError::Closed(task)) => drop(task),
            Err(_) => panic!("unexpected refusal"),
        });
        drop(queue);
        th.join().unwrap();
        assert_eq!(runs.load(SeqCst), 0, "ran after the queue was dropped");
        assert_eq!(drops.load(SeqCst), 1, "dropped exactly once");
    });
}

type BoxTask = Pin<Box<dyn Future<Output = u8> + Send>>;

/// A task that stays pending until `ready` is set, keeping its latest
/// waker in `slot` (stored before the flag is read, so a wake after the
/// store is never missed).
fn gated(ready: Arc<loom::sync::atomic::AtomicBool>, slot: Arc<Mutex<Option<Waker>>>) -> BoxTask {
    Box::pin(std::future::poll_fn(move |cx| {
        *slot.lock().unwrap() = Some(cx.waker().clone());
        if ready.load(std::sync::atomic::Ordering::Acquire) {
            Poll::Ready(1)
        } else {
            Poll::Pending
        }
    }))
}

/// Opens the gate and wakes the task's waker (its `WakeBits` slot waker).
fn open(ready: &AtomicBool, slot: &Mutex<Option<Waker>>) {
    ready.store(true, std::sync::atomic::Ordering::Release);
    let waker = slot.lock().unwrap().take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[test]
fn a_slot_waker_on_another_thread_vs_the_queues_poll() {
    loom::model(|| {
        let mut queue = Box::pin(TaskQueue::<BoxTask>::new());
        let ready = Arc::new(AtomicBool::new(false));
        let slot = Arc::new(Mutex::new(None));
        queue
            .as_mut()
            .push(gated(ready.clone(), slot.clone()))
            .unwrap_or_else(|_| panic!("room"));
        // Started and polled once with its slot waker, which it keeps.
        let first = Waker::from(Arc::new(Flag::default()));
        assert_eq!(
            queue.as_mut().poll_next(&mut Context::from_waker(&first)),
            Poll::Pending
        );
        let th = thread::spawn(move || open(&ready, &slot));
        // A new waker: a wake-up of the first one does not count.
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let polled = queue.as_mut().poll_next(&mut cx);
        th.join().unwrap();
        match polled {
            Poll::Ready(Some(1)) => {}
            Poll::Pending => {
                // Missed by that poll: then the slot waker woke the queue
                // through the waker of that poll, and the next poll polls
                // the task.
                assert!(flag.0.load(SeqCst) >= 1, "lost wake-up");
                assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(Some(1)));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(None));
    });
}

#[test]
fn a_slot_waker_on_another_thread_vs_the_queues_drop() {
    loom::model(|| {
        let mut queue = Box::pin(TaskQueue::<BoxTask>::new());
        let ready = Arc::new(AtomicBool::new(false));
        let slot = Arc::new(Mutex::new(None));
        queue
            .as_mut()
            .push(gated(ready.clone(), slot.clone()))
            .unwrap_or_else(|_| panic!("room"));
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        assert_eq!(
            queue.as_mut().poll_next(&mut Context::from_waker(&waker)),
            Poll::Pending
        );
        let th = thread::spawn(move || open(&ready, &slot));
        drop(queue);
        th.join().unwrap();
        // The queue let go of its waker: only ours is left.
        drop(waker);
        assert_eq!(Arc::strong_count(&flag), 1, "the owner's waker leaked");
    });
}

/// The submitter count: a submission then the last drop on another thread,
/// against the queue's polls. Every poll that is pending was woken; the
/// task comes out once, and then the stream ends (the count is read before
/// the submissions are taken, so a zero count means nothing is left).
#[test]
fn the_last_submitter_dropped_on_another_thread_vs_poll() {
    loom::model(|| {
        let mut queue = Box::pin(TaskQueue::<Probe>::new());
        let submit = queue.as_mut().submitter();
        let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = Probe {
            drops: drops.clone(),
            runs: runs.clone(),
        };
        let th = thread::spawn(move || {
            submit.submit(task).unwrap_or_else(|_| panic!("open"));
            drop(submit);
        });
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let first = queue.as_mut().poll_next(&mut cx);
        th.join().unwrap();
        let mut got = usize::from(first == Poll::Ready(Some(7)));
        match first {
            Poll::Ready(None) => panic!("ended before the submission"),
            // Not seen, the submitter alive then: it woke the queue.
            Poll::Pending => assert!(flag.0.load(SeqCst) >= 1, "lost wake-up"),
            Poll::Ready(_) => {}
        }
        loop {
            match queue.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(7)) => got += 1,
                Poll::Ready(None) => break,
                other => panic!("after the producer finished: {other:?}"),
            }
        }
        assert_eq!(got, 1, "the task came out once");
        assert_eq!((runs.load(SeqCst), drops.load(SeqCst)), (1, 1));
    });
}

/// A pending poll of a queue with a live submitter is woken by the last
/// drop on another thread (no submission at all): no hang.
#[test]
fn a_waiting_queue_is_woken_by_the_last_drop() {
    loom::model(|| {
        let mut queue = Box::pin(TaskQueue::<Probe>::new());
        let submit = queue.as_mut().submitter();
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let th = thread::spawn(move || drop(submit));
        let polled = queue.as_mut().poll_next(&mut cx);
        th.join().unwrap();
        match polled {
            Poll::Ready(None) => {}
            Poll::Pending => {
                assert!(flag.0.load(SeqCst) >= 1, "lost wake-up: the queue hangs");
                assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(None));
            }
            other => panic!("unexpected {other:?}"),
        }
    });
}

fn leaked_inbox<const M: usize>() -> &'static Inbox<Probe, M> {
    Box::leak(Box::new(Inbox::new()))
}

/// A `static` inbox: a submission (and the inbox's close) on another
/// thread against the queue's polls: a pending poll was woken, the task
/// comes out once, the stream ends after it.
#[test]
fn an_inbox_submission_vs_the_queues_take() {
    loom::model(|| {
        let inbox = leaked_inbox::<2>();
        let mut queue = Box::pin(TaskQueue::<Probe>::new());
        queue
            .as_mut()
            .attach(inbox)
            .unwrap_or_else(|_| panic!("free"));
        let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = Probe {
            drops: drops.clone(),
            runs: runs.clone(),
        };
        let th = thread::spawn(move || {
            inbox.submit(task).unwrap_or_else(|_| panic!("room"));
            inbox.close();
        });
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let first = queue.as_mut().poll_next(&mut cx);
        th.join().unwrap();
        let mut got = usize::from(first == Poll::Ready(Some(7)));
        if first.is_pending() {
            assert!(flag.0.load(SeqCst) >= 1, "lost wake-up");
        }
        loop {
            match queue.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(7)) => got += 1,
                Poll::Ready(None) => break,
                other => panic!("after the producer finished: {other:?}"),
            }
        }
        assert_eq!(got, 1);
        assert_eq!((runs.load(SeqCst), drops.load(SeqCst)), (1, 1));
    });
}

/// Two producers race for a one-slot inbox while the queue takes: each
/// task is accepted (and comes out once) or handed back full, never lost
/// or duplicated, and nobody waits for anybody.
#[test]
fn two_producers_on_a_one_slot_inbox_vs_the_take() {
    loom::model(|| {
        let inbox = leaked_inbox::<1>();
        let mut queue = Box::pin(TaskQueue::<Probe>::new().concurrency(2));
        queue
            .as_mut()
            .attach(inbox)
            .unwrap_or_else(|_| panic!("free"));
        let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let task = Probe {
                    drops: drops.clone(),
                    runs: runs.clone(),
                };
                thread::spawn(move || match inbox.submit(task) {
                    Ok(()) => true,
                    Err(PushError::Full(task)) => {
                        drop(task);
                        false
                    }
                    Err(_) => panic!("open"),
                })
            })
            .collect();
        let waker = Waker::from(Arc::new(Flag::default()));
        let mut cx = Context::from_waker(&waker);
        let mut got = 0;
        if let Poll::Ready(Some(7)) = queue.as_mut().poll_next(&mut cx) {
            got += 1;
        }
        let accepted = producers
            .into_iter()
            .map(|p| p.join().unwrap())
            .filter(|a| *a)
            .count();
        inbox.close();
        loop {
            match queue.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(7)) => got += 1,
                Poll::Ready(None) => break,
                other => panic!("after the producers finished: {other:?}"),
            }
        }
        assert!(accepted >= 1, "one slot: the first producer fits");
        assert_eq!(got, accepted, "every accepted task came out once");
        assert_eq!(runs.load(SeqCst), accepted);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

/// A submission into a `static` inbox against the queue's drop: never run;
/// refused (handed back), or accepted and dropped by the queue's drop, or
/// accepted after it and left in the (closed) inbox — never dropped twice.
#[test]
fn an_inbox_submission_vs_the_queues_drop() {
    loom::model(|| {
        let inbox = leaked_inbox::<2>();
        let mut queue = Box::pin(TaskQueue::<Probe>::new());
        queue
            .as_mut()
            .attach(inbox)
            .unwrap_or_else(|_| panic!("free"));
        let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = Probe {
            drops: drops.clone(),
            runs: runs.clone(),
        };
        let th = thread::spawn(move || match inbox.submit(task) {
            Ok(()) => true,
            Err(PushError::Closed(task)) => {
                drop(task);
                false
            }
            Err(_) => panic!("room"),
        });
        drop(queue);
        let accepted = th.join().unwrap();
        assert_eq!(runs.load(SeqCst), 0, "ran after the queue was dropped");
        assert!(drops.load(SeqCst) <= 1, "dropped twice");
        if !accepted {
            assert_eq!(drops.load(SeqCst), 1);
        }
        assert!(inbox.is_closed());
    });
}

/// Who drains a `static` inbox: two queues on two threads attach it at
/// once; exactly one wins, for good (issue 21: "every public type that can
/// be polled or drained by two parties says who may and enforces it").
#[test]
fn two_queues_race_to_attach_one_inbox() {
    loom::model(|| {
        let inbox = leaked_inbox::<1>();
        let attach = move || {
            let queue = TaskQueue::<Probe>::new();
            let won = queue.attach(inbox).is_ok();
            drop(queue); // a winner's drop closes the inbox
            won
        };
        let th = thread::spawn(attach);
        let here = attach();
        let there = th.join().unwrap();
        assert!(here ^ there, "exactly one attach wins: {here} {there}");
        assert!(inbox.is_closed());
    });
}

/// `until(Level::Idle)` reads whether a submission waits (a hint) while a
/// producer submits on another thread: the batch ends with or without it,
/// and the task comes out exactly once, then or later.
#[test]
fn until_idle_vs_a_submission_on_another_thread() {
    loom::model(|| {
        let inbox = leaked_inbox::<1>();
        let mut queue = Box::pin(TaskQueue::<Probe>::new());
        queue.attach(inbox).unwrap_or_else(|_| panic!("free"));
        let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = Probe {
            drops: drops.clone(),
            runs: runs.clone(),
        };
        let th = thread::spawn(move || {
            inbox.submit(task).unwrap_or_else(|_| panic!("room"));
        });
        let waker = Waker::from(Arc::new(Flag::default()));
        let mut cx = Context::from_waker(&waker);
        let mut got = 0;
        {
            let mut batch = queue.as_mut().until(Level::Idle);
            loop {
                match Pin::new(&mut batch).poll_next(&mut cx) {
                    Poll::Ready(Some(7)) => got += 1,
                    Poll::Ready(None) => break,
                    Poll::Pending => {
                        // Pending only while the task runs or waits: the
                        // producer is done by the time we look again.
                        thread::yield_now();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        th.join().unwrap();
        inbox.close();
        loop {
            match queue.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(7)) => got += 1,
                Poll::Ready(None) => break,
                other => panic!("after the producer finished: {other:?}"),
            }
        }
        assert_eq!(got, 1, "the task came out once");
        assert_eq!((runs.load(SeqCst), drops.load(SeqCst)), (1, 1));
    });
}

/// `two_producers_on_a_one_slot_inbox_vs_the_take` with the inbox's
/// positions about to wrap around `usize::MAX`: a producer with a stale
/// guess of `tail` or of a stamp is refused (its compare-and-swap fails,
/// or it sees the slot full) across the wrap as before it.
#[test]
fn two_producers_across_the_position_wrap() {
    loom::model(|| {
        let inbox: &'static Inbox<Probe, 1> = Box::leak(Box::new(Inbox::starting_at(usize::MAX)));
        let mut queue = Box::pin(TaskQueue::<Probe>::new().concurrency(2));
        queue.attach(inbox).unwrap_or_else(|_| panic!("free"));
        let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // One task through the last lap before the wrap.
        inbox
            .submit(Probe {
                drops: drops.clone(),
                runs: runs.clone(),
            })
            .unwrap_or_else(|_| panic!("room"));
        let waker = Waker::from(Arc::new(Flag::default()));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(queue.as_mut().poll_next(&mut cx), Poll::Ready(Some(7)));
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let task = Probe {
                    drops: drops.clone(),
                    runs: runs.clone(),
                };
                thread::spawn(move || match inbox.submit(task) {
                    Ok(()) => true,
                    Err(PushError::Full(task)) => {
                        drop(task);
                        false
                    }
                    Err(_) => panic!("open"),
                })
            })
            .collect();
        let mut got = 1;
        if let Poll::Ready(Some(7)) = queue.as_mut().poll_next(&mut cx) {
            got += 1;
        }
        let accepted = producers
            .into_iter()
            .map(|p| p.join().unwrap())
            .filter(|a| *a)
            .count();
        inbox.close();
        loop {
            match queue.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(7)) => got += 1,
                Poll::Ready(None) => break,
                other => panic!("after the producers finished: {other:?}"),
            }
        }
        assert!(accepted >= 1, "one slot: the first producer fits");
        assert_eq!(got, 1 + accepted, "every accepted task came out once");
        assert_eq!(runs.load(SeqCst), 1 + accepted);
        assert_eq!(drops.load(SeqCst), 3);
    });
}
