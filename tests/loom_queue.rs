//! loom models of the task queue's cross-thread handoff: a `Submitter` on
//! another thread against the queue's poll (no lost wake-up, the task comes
//! out once) and against the queue's drop (the task is dropped exactly once
//! and never run).
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
