//! An executor that `adopt`s a future (`PromiseCell::lazy`, `detached`)
//! hands it to the promise, which drives it: panics in that future's poll
//! or drop, and in a waker woken by its settlement, never lose the
//! settlement, never drop the future twice and always free the cell.
//! From hostile review 4 (the last test of each pair failed before the
//! fix: the finished `Adopt` stayed in its slot and every later poll
//! panicked "`Adopt` polled after completion").

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

#[cfg(feature = "alloc")]
use deferral::DeferredPromise;
use deferral::promise::PromiseState;
use deferral::{PromiseCell, PromiseError};
use support::{Call, Hostile, WakeCounter, poll_once};

type Out = Result<u32, PromiseError<()>>;

/// An adopted future: its poll number `panic_at` (1-based) panics, it is
/// ready with 7 from poll `ready_at` on, its drop panics if `panic_drop`.
struct Step {
    polls: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
    panic_at: usize,
    ready_at: usize,
    panic_drop: bool,
}

impl Future for Step {
    type Output = Result<u32, ()>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        let n = self.polls.fetch_add(1, SeqCst) + 1;
        assert_ne!(n, self.panic_at, "adopted poll panics");
        if n >= self.ready_at {
            Poll::Ready(Ok(7))
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
        assert!(!self.panic_drop, "adopted drop panics");
    }
}

/// The future and its (polls, drops) counters.
struct Counted {
    polls: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Counted {
    fn get(&self) -> (usize, usize) {
        (self.polls.load(SeqCst), self.drops.load(SeqCst))
    }
}

fn step(panic_at: usize, ready_at: usize, panic_drop: bool) -> (Step, Counted) {
    let polls = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let future = Step {
        polls: polls.clone(),
        drops: drops.clone(),
        panic_at,
        ready_at,
        panic_drop,
    };
    (future, Counted { polls, drops })
}

type Promise = Pin<Box<dyn PromiseLike>>;

/// The two promises whose executors may adopt, behind one face.
trait PromiseLike: Future<Output = Out> {
    fn state(&self) -> PromiseState;
}

impl<F: deferral::promise::PromiseFuture<u32, PromiseError<()>>> PromiseLike
    for deferral::DeferredPromise<u32, PromiseError<()>, F>
{
    fn state(&self) -> PromiseState {
        deferral::DeferredPromise::state(self)
    }
}

/// Runs `case` with a promise adopting `future` made each way: through a
/// `PromiseCell` (then checks the cell is free at the end) and, with
/// `alloc`, `detached`.
/// (Each test has its own cell: tests run in parallel.)
fn each_kind(
    cell: &'static PromiseCell<u32, ()>,
    make: fn() -> (Step, Counted),
    case: fn(Promise, &Counted),
) {
    let (future, counted) = make();
    let promise = cell.lazy(move |res| res.adopt(future)).unwrap();
    case(Box::pin(promise), &counted);
    assert!(cell.is_free(), "the cell is freed");

    #[cfg(feature = "alloc")]
    {
        let (future, counted) = make();
        let promise =
            DeferredPromise::<u32, PromiseError<()>>::detached(move |res| res.adopt(future));
        case(Box::pin(promise), &counted);
    }
}

fn poll_caught(promise: &mut Promise, waker: &WakeCounter) -> Option<Poll<Out>> {
    catch_unwind(AssertUnwindSafe(|| poll_once(promise.as_mut(), waker))).ok()
}

#[test]
fn the_settlements_wake_panics_and_the_next_poll_still_returns_the_value() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    each_kind(
        &CELL,
        || step(0, 2, false),
        |mut promise, counted| {
            // First poll: pending, the hostile waker is registered.
            let hostile = Hostile::new()
                .panic_on(Call::Wake, 1)
                .panic_on(Call::WakeByRef, 1);
            let waker = hostile.waker();
            assert!(
                promise
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            // Second poll: the adopted future is ready, the settlement wakes
            // the hostile waker, which panics out of this poll.
            let w = WakeCounter::new();
            assert!(poll_caught(&mut promise, &w).is_none());
            assert_eq!(hostile.panics(), 1);
            assert_eq!(promise.state(), PromiseState::Fulfilled);
            // Third poll: the settlement is handed out; the finished
            // future is dropped, not polled again.
            assert_eq!(poll_caught(&mut promise, &w), Some(Poll::Ready(Ok(7))));
            assert_eq!(counted.get(), (2, 1));
            drop(promise);
            assert_eq!(counted.get(), (2, 1));
        },
    );
}

#[test]
fn the_adopted_futures_poll_panics_and_the_next_poll_resumes_it() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    each_kind(
        &CELL,
        || step(1, 2, false),
        |mut promise, counted| {
            let w = WakeCounter::new();
            assert!(poll_caught(&mut promise, &w).is_none());
            // The future can resume (it is not an `async` block): the
            // promise polls it again rather than making up an outcome.
            assert_eq!(poll_caught(&mut promise, &w), Some(Poll::Ready(Ok(7))));
            assert_eq!(counted.get(), (2, 1));
            drop(promise);
            assert_eq!(counted.get(), (2, 1));
        },
    );
}

#[test]
fn the_adopted_futures_drop_panics_after_it_settled() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    each_kind(
        &CELL,
        || step(0, 1, true),
        |mut promise, counted| {
            let w = WakeCounter::new();
            // Settled, then the promise drops the finished future, whose
            // destructor panics.
            assert!(poll_caught(&mut promise, &w).is_none());
            assert_eq!(counted.get(), (1, 1));
            assert_eq!(poll_caught(&mut promise, &w), Some(Poll::Ready(Ok(7))));
            drop(promise);
            assert_eq!(counted.get(), (1, 1), "dropped once");
        },
    );
}

#[test]
fn the_adopted_futures_drop_panics_when_the_pending_promise_is_dropped() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    each_kind(
        &CELL,
        || step(0, usize::MAX, true),
        |mut promise, counted| {
            let w = WakeCounter::new();
            assert_eq!(poll_caught(&mut promise, &w), Some(Poll::Pending));
            assert!(catch_unwind(AssertUnwindSafe(|| drop(promise))).is_err());
            assert_eq!(counted.get(), (1, 1), "dropped once");
            // `each_kind` checks that the resolver inside was still dropped
            // (the cell is free).
        },
    );
}

#[test]
fn an_adopted_async_block_that_panicked_keeps_panicking_and_frees_the_cell() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let promise = CELL
        .lazy(|res| {
            res.adopt(async {
                if true {
                    panic!("boom");
                }
                Ok(1)
            })
        })
        .unwrap();
    let mut promise: Promise = Box::pin(promise);
    let w = WakeCounter::new();
    for _ in 0..3 {
        // An `async` block cannot resume after a panic; the promise never
        // reports an outcome it did not get.
        assert!(poll_caught(&mut promise, &w).is_none());
        assert!(matches!(promise.state(), PromiseState::Pending(_)));
    }
    drop(promise);
    assert!(CELL.is_free());
}
