//! loom models of the task queue's cross-thread handoff: a `Submitter` on
//! another thread against the queue's poll (no lost wake-up, the task comes
//! out once) and against the queue's drop (the task is dropped exactly once
//! and never run); a task's per-slot waker (`WakeBits`) fired on another
//! thread against the queue's poll (`register`, then `for_each_woken`: no
//! lost wake-up) and against the queue's drop.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_queue`.
#![cfg(loom)]

use std::future::Ready;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use deferral::{PushError, TaskQueue};
use futures::Stream;
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
            Poll::Ready(None) => {
                // Not seen yet: the submission must show up at the next poll.
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
