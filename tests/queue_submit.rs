//! A `TaskQueue` fed from elsewhere: by `Submitter`s (`alloc`), which keep
//! it open like an mpsc channel's senders, and by a `static` `Inbox` (no
//! heap, interrupt handlers); `close`; and the typed refusals (closed,
//! full, zero concurrency) that hand the task back.

mod support;

use std::future::Ready;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

use deferral::TaskQueue;
use deferral::queue::{Inbox, PushError};
use futures::{Stream, StreamExt};
use support::{WakeCounter, block_on};

/// Polls `stream` once with a waker of `counter`.
fn poll<S: Stream>(stream: Pin<&mut S>, counter: &WakeCounter) -> Poll<Option<S::Item>> {
    let waker = counter.waker();
    stream.poll_next(&mut Context::from_waker(&waker))
}

/// A task that counts its runs and its drops.
struct Probe {
    n: u32,
    runs: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

impl IntoFuture for Probe {
    type Output = u32;
    type IntoFuture = Ready<u32>;
    fn into_future(self) -> Ready<u32> {
        self.runs.fetch_add(1, SeqCst);
        std::future::ready(self.n)
    }
}

#[derive(Default, Clone)]
struct Probes {
    runs: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Probes {
    fn probe(&self, n: u32) -> Probe {
        Probe {
            n,
            runs: self.runs.clone(),
            drops: self.drops.clone(),
        }
    }
    fn runs(&self) -> usize {
        self.runs.load(SeqCst)
    }
    fn drops(&self) -> usize {
        self.drops.load(SeqCst)
    }
}

// ------------------------------------------------------------ submitters

#[cfg(feature = "alloc")]
mod submitters {
    use super::*;
    use futures::stream::FusedStream;

    /// The consumer: `while let Some(r) = queue.next().await` on a
    /// queue fed by a producer thread. It used to get `None` at once (and
    /// the producer's next `submit` was refused), or, retrying, spin
    /// (1,668 `None`s in 15 ms). Now it waits without spinning and ends
    /// exactly when the producer's last submitter is dropped: its polls are
    /// the submissions (each yields one result, or several coalesce) plus
    /// one pending poll per wake-up, and the wake-ups are at most the
    /// submissions plus one (the last drop).
    #[test]
    fn a_submitter_fed_consumer_waits_without_spinning_and_ends_with_the_last_submitter() {
        let submissions = if cfg!(miri) { 5 } else { 200 };
        let mut queue = pin!(TaskQueue::new().concurrency(4));
        let submit = queue.as_mut().submitter();
        let producer = std::thread::spawn(move || {
            let other = submit.clone();
            for n in 0..submissions {
                let by = if n % 2 == 0 { &submit } else { &other };
                by.submit(std::future::ready(n)).unwrap();
                if n % 16 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            // Dropped here, in this order: only the second drop ends it.
            drop(submit);
            std::thread::sleep(std::time::Duration::from_millis(2));
            drop(other);
        });
        let counter = WakeCounter::unparking();
        let (mut polls, mut pending, mut got) = (0, 0, Vec::new());
        loop {
            // Read before the poll, as an executor clears its "woken" flag
            // before polling: a wake that lands during the poll (after the
            // queue registered the waker) must not be slept through. (Read
            // after the poll, a Miri schedule that ran the last submission
            // and both drops during one poll parked forever.)
            let seen = counter.wakes();
            polls += 1;
            match poll(queue.as_mut(), &counter) {
                Poll::Ready(Some(n)) => got.push(n),
                Poll::Ready(None) => break,
                Poll::Pending => {
                    pending += 1;
                    // Sleep until woken (a real executor would).
                    while counter.wakes() == seen {
                        std::thread::park();
                    }
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(got, (0..submissions).collect::<Vec<_>>());
        let wakes = counter.wakes();
        assert!(
            wakes <= submissions as usize + 1,
            "{wakes} wake-ups for {submissions} submissions"
        );
        assert!(
            pending <= wakes,
            "{pending} pending polls, {wakes} wake-ups"
        );
        assert!(
            polls <= 2 * submissions as usize + 2,
            "{polls} polls for {submissions} submissions: spinning"
        );
        assert!(queue.is_terminated());
    }

    /// Exactly at the last drop: an earlier clone's drop keeps it open.
    #[test]
    fn the_stream_ends_when_the_last_submitter_goes() {
        let counter = WakeCounter::new();
        let mut queue = pin!(TaskQueue::new());
        let a = queue.as_mut().submitter();
        let b = a.clone();
        a.submit(std::future::ready(1)).unwrap();
        assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(Some(1)));
        assert_eq!(poll(queue.as_mut(), &counter), Poll::Pending);
        assert!(!queue.is_terminated());
        drop(a);
        assert_eq!(counter.wakes(), 0, "one submitter still lives");
        assert_eq!(poll(queue.as_mut(), &counter), Poll::Pending);
        drop(b);
        assert_eq!(counter.wakes(), 1, "the last drop wakes the queue");
        assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(None));
        assert!(queue.is_terminated());
        // A new submitter opens it again (like a push after `None`).
        let c = queue.as_mut().submitter();
        c.submit(std::future::ready(2)).unwrap();
        drop(c);
        assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(Some(2)));
        assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(None));
    }

    /// Submissions made before the last drop all come out first.
    #[test]
    fn submissions_before_the_last_drop_are_not_lost() {
        let mut queue = pin!(TaskQueue::new().concurrency(3));
        let submit = queue.as_mut().submitter();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let submit = submit.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        submit.submit(std::future::ready(t * 100 + i)).unwrap();
                    }
                })
            })
            .collect();
        drop(submit);
        let mut got: Vec<u32> = block_on(queue.as_mut().collect());
        handles.into_iter().for_each(|h| h.join().unwrap());
        got.sort();
        let mut expected: Vec<u32> = (0..4)
            .flat_map(|t| (0..25).map(move |i| t * 100 + i))
            .collect();
        expected.sort();
        assert_eq!(got, expected);
    }

    /// `close`: the queue drains what it holds and what was submitted,
    /// then ends although a submitter lives; later submissions and pushes
    /// are refused, the task handed back.
    #[test]
    fn close_drains_then_ends_and_refuses_with_the_task_back() {
        let probes = Probes::default();
        let mut queue = pin!(TaskQueue::new());
        let submit = queue.as_mut().submitter();
        submit.submit(probes.probe(1)).unwrap();
        queue.as_mut().push(probes.probe(2)).unwrap();
        queue.as_mut().close();
        assert!(queue.is_closed() && submit.is_closed());
        let Err(PushError::Closed(back)) = submit.submit(probes.probe(3)) else {
            panic!("refused");
        };
        assert_eq!(back.n, 3);
        let Err(PushError::Closed(back)) = queue.as_mut().push(probes.probe(4)) else {
            panic!("refused");
        };
        assert_eq!(back.n, 4);
        drop(back);
        let got: Vec<u32> = block_on(queue.as_mut().collect());
        assert_eq!(got, [2, 1], "pushed, then the submission taken at the poll");
        assert_eq!(probes.runs(), 2);
        assert_eq!(
            probes.drops(),
            3,
            "the two that ran, and the refused one dropped above"
        );
        drop(submit);
    }

    /// `push_all` stops at the first refusal and hands back the refused
    /// task and the rest.
    #[test]
    fn push_all_hands_back_the_refused_task_and_the_rest() {
        let probes = Probes::default();
        let mut queue = pin!(TaskQueue::new());
        queue.as_mut().push(probes.probe(0)).unwrap();
        queue.as_mut().close();
        let err = queue
            .as_mut()
            .push_all((1..4).map(|n| probes.probe(n)))
            .unwrap_err();
        assert!(matches!(&err.refused, PushError::Closed(p) if p.n == 1));
        assert_eq!(err.rest.map(|p| p.n).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(probes.runs(), 0);
    }
}

// ----------------------------------------------------------- static inbox

/// Submissions from several threads into a `static` inbox; the queue
/// takes them as they come, and ends when the producers close it.
#[test]
fn a_static_inbox_fed_by_threads() {
    static INBOX: Inbox<Ready<u32>, 8> = Inbox::new();
    let (threads, each) = if cfg!(miri) { (2, 5) } else { (3, 300) };
    let mut queue = pin!(TaskQueue::new().concurrency(2));
    queue.as_mut().attach(&INBOX).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let done = done.clone();
            std::thread::spawn(move || {
                for i in 0..each {
                    let mut task = std::future::ready(t * 1000 + i);
                    // Full: hand back, retry later (never waits inside).
                    loop {
                        match INBOX.submit(task) {
                            Ok(()) => break,
                            Err(PushError::Full(back)) => {
                                task = back;
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                if done.fetch_add(1, SeqCst) + 1 == threads as usize {
                    INBOX.close(); // the last producer: no more
                }
            })
        })
        .collect();
    let mut got: Vec<u32> = block_on(queue.as_mut().collect());
    handles.into_iter().for_each(|h| h.join().unwrap());
    got.sort();
    let mut expected: Vec<u32> = (0..threads)
        .flat_map(|t| (0..each).map(move |i| t * 1000 + i))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

/// A full inbox hands the task back; an attached inbox keeps the queue
/// open until it is closed; the queue takes only what fits its window
/// without `alloc` (the rest waits in the inbox).
#[test]
fn a_static_inbox_full_open_and_closed() {
    static INBOX: Inbox<Ready<u32>, 2> = Inbox::new();
    let counter = WakeCounter::new();
    let mut queue = pin!(TaskQueue::with_capacity::<2>());
    queue.as_mut().attach(&INBOX).unwrap();
    assert_eq!(poll(queue.as_mut(), &counter), Poll::Pending, "open: waits");
    INBOX.submit(std::future::ready(1)).unwrap();
    INBOX
        .submit_with_priority(std::future::ready(2), 1)
        .unwrap();
    assert_eq!(counter.wakes(), 1, "the first submission woke the queue");
    let Err(PushError::Full(back)) = INBOX.submit(std::future::ready(3)) else {
        panic!("full");
    };
    assert_eq!(block_on(back), 3);
    // Both taken at the poll: the higher priority starts first.
    assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(Some(2)));
    assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(Some(1)));
    assert_eq!(poll(queue.as_mut(), &counter), Poll::Pending);
    INBOX.close();
    assert_eq!(counter.wakes(), 2, "closing woke the queue");
    assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(None));
    assert!(matches!(
        INBOX.submit(std::future::ready(4)),
        Err(PushError::Closed(_))
    ));
}

/// Priority among submissions taken together.
#[test]
fn a_static_inbox_carries_priorities() {
    static INBOX: Inbox<Ready<&str>, 4> = Inbox::new();
    let mut queue = pin!(TaskQueue::new());
    queue.as_mut().attach(&INBOX).unwrap();
    INBOX.submit(std::future::ready("low")).unwrap();
    INBOX
        .submit_with_priority(std::future::ready("high"), 3)
        .unwrap();
    INBOX
        .submit_with_priority(std::future::ready("mid"), 1)
        .unwrap();
    INBOX.close();
    assert_eq!(
        block_on(queue.as_mut().collect::<Vec<_>>()),
        ["high", "mid", "low"]
    );
}

/// An inbox serves one queue, once; a queue has one inbox.
#[test]
fn an_inbox_serves_one_queue() {
    static A: Inbox<Ready<u8>, 1> = Inbox::new();
    static B: Inbox<Ready<u8>, 1> = Inbox::new();
    let mut queue = pin!(TaskQueue::new());
    queue.as_mut().attach(&A).unwrap();
    assert!(queue.as_mut().attach(&B).is_err(), "one inbox per queue");
    let mut other = pin!(TaskQueue::new());
    let err = other.as_mut().attach(&A).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the inbox serves another queue, or this queue has one"
    );
    other.as_mut().attach(&B).unwrap();
}

/// The queue's drop closes its inbox and drops what it still holds, once,
/// unrun.
#[test]
fn dropping_the_queue_closes_the_inbox_and_drops_its_tasks() {
    static INBOX: Inbox<Probe, 4> = Inbox::new();
    let probes = Probes::default();
    let mut queue = Box::pin(TaskQueue::new());
    queue.as_mut().attach(&INBOX).unwrap();
    INBOX.submit(probes.probe(1)).unwrap();
    INBOX.submit(probes.probe(2)).unwrap();
    drop(queue);
    assert!(INBOX.is_closed());
    assert_eq!((probes.runs(), probes.drops()), (0, 2));
    let Err(PushError::Closed(back)) = INBOX.submit(probes.probe(3)) else {
        panic!("closed");
    };
    drop(back);
    assert_eq!(probes.drops(), 3);
}

/// `close` on the queue closes its inbox too; what was submitted runs.
#[test]
fn closing_the_queue_closes_its_inbox() {
    static INBOX: Inbox<Ready<u8>, 4> = Inbox::new();
    let mut queue = pin!(TaskQueue::new());
    queue.as_mut().attach(&INBOX).unwrap();
    INBOX.submit(std::future::ready(1)).unwrap();
    queue.as_mut().close();
    assert!(INBOX.is_closed());
    assert_eq!(block_on(queue.as_mut().collect::<Vec<_>>()), [1]);
}

/// The inbox wraps around its positions many times (laps of a capacity
/// that is not a power of two), filled up and emptied in turn, without
/// losing or repeating a task.
#[test]
fn a_static_inbox_wraps_around() {
    static INBOX: Inbox<Ready<u32>, 3> = Inbox::new();
    let rounds = if cfg!(miri) { 10 } else { 1000 };
    let counter = WakeCounter::new();
    let mut queue = pin!(TaskQueue::new().concurrency(3));
    queue.as_mut().attach(&INBOX).unwrap();
    let mut next = 0;
    for round in 0..rounds {
        let fill = 1 + round % 3;
        for _ in 0..fill {
            INBOX.submit(std::future::ready(next)).unwrap();
            next += 1;
        }
        if fill == 3 {
            assert!(matches!(
                INBOX.submit(std::future::ready(u32::MAX)),
                Err(PushError::Full(_))
            ));
        }
        for k in 0..fill {
            assert_eq!(
                poll(queue.as_mut(), &counter),
                Poll::Ready(Some(next - fill + k))
            );
        }
        assert_eq!(poll(queue.as_mut(), &counter), Poll::Pending);
    }
    INBOX.close();
    assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(None));
}

/// A small window in completion order fed only by an inbox: the queue
/// takes from the inbox as the window frees up (without `alloc` it holds
/// nothing beyond the window), so it never stalls with submissions left.
#[test]
fn a_small_window_in_completion_order_keeps_taking_from_its_inbox() {
    static INBOX: Inbox<Ready<u32>, 4> = Inbox::new();
    let counter = WakeCounter::new();
    let mut queue = pin!(
        TaskQueue::with_capacity::<2>()
            .concurrency(2)
            .order(deferral::queue::Yield::InCompletionOrder)
    );
    queue.as_mut().attach(&INBOX).unwrap();
    let total = if cfg!(miri) { 12 } else { 200 };
    let (mut next, mut got) = (0, Vec::new());
    for _ in 0..10 * total {
        if got.len() == total as usize {
            break;
        }
        while next < total && INBOX.submit(std::future::ready(next)).is_ok() {
            next += 1;
        }
        match poll(queue.as_mut(), &counter) {
            Poll::Ready(Some(n)) => got.push(n),
            Poll::Ready(None) => panic!("ended early"),
            Poll::Pending => {}
        }
    }
    assert_eq!(
        got.len(),
        total as usize,
        "stalled: {} of {total}",
        got.len()
    );
    got.sort();
    assert_eq!(got, (0..total).collect::<Vec<_>>());
    INBOX.close();
    assert_eq!(poll(queue.as_mut(), &counter), Poll::Ready(None));
}
