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

// ------------------------------------------------------------- review 5

use deferral::Resolver;
use support::{Behaviour, DropCounter};

/// The message of a caught panic (`&str` or `String` payloads).
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<non-string payload>")
    }
}

/// Polls with `waker`, catching a panic: `Err(message)` if it panicked.
fn poll_with(promise: &mut Promise, waker: &std::task::Waker) -> Result<Poll<Out>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        promise.as_mut().poll(&mut Context::from_waker(waker))
    }))
    .map_err(|p| message(&*p))
}

#[test]
fn wake_panics_then_the_finished_futures_drop_panics_then_the_value_is_returned() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    each_kind(
        &CELL,
        || step(0, 2, true),
        |mut promise, counted| {
            let hostile = Hostile::new().panic_on(Call::Wake, 1);
            assert_eq!(poll_with(&mut promise, &hostile.waker()), Ok(Poll::Pending));
            let w = WakeCounter::new().waker();
            // Settles; the settlement's wake panics.
            assert_eq!(
                poll_with(&mut promise, &w),
                Err("hostile waker: Wake #1 panics".to_owned())
            );
            assert_eq!(counted.get(), (2, 0));
            assert_eq!(promise.state(), PromiseState::Fulfilled);
            // The finished future is dropped, not polled; its drop panics.
            assert_eq!(
                poll_with(&mut promise, &w),
                Err("adopted drop panics".to_owned())
            );
            assert_eq!(counted.get(), (2, 1));
            assert_eq!(promise.state(), PromiseState::Fulfilled);
            // Next poll: the value.
            assert_eq!(poll_with(&mut promise, &w), Ok(Poll::Ready(Ok(7))));
            drop(promise);
            assert_eq!(counted.get(), (2, 1), "dropped once");
        },
    );
}

/// The settlement's wake panicked; the promise is then dropped without
/// another poll (the finished future and the value go with it).
fn dropped_unpolled(mut promise: Promise, counted: &Counted, panic_drop: bool) {
    let hostile = Hostile::new().panic_on(Call::Wake, 1);
    assert_eq!(poll_with(&mut promise, &hostile.waker()), Ok(Poll::Pending));
    let w = WakeCounter::new().waker();
    assert_eq!(
        poll_with(&mut promise, &w),
        Err("hostile waker: Wake #1 panics".to_owned())
    );
    assert_eq!(counted.get(), (2, 0));
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(promise)));
    assert_eq!(dropped.is_err(), panic_drop);
    assert_eq!(counted.get(), (2, 1), "dropped once");
}

#[test]
fn wake_panics_then_the_promise_is_dropped_without_a_poll() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    each_kind(
        &CELL,
        || step(0, 2, false),
        |p, c| dropped_unpolled(p, c, false),
    );
    each_kind(
        &CELL,
        || step(0, 2, true),
        |p, c| dropped_unpolled(p, c, true),
    );
}

/// A settled value with a drop counter: `PromiseCell<Tracked, ()>`.
type TrackedOut = Result<support::drops::Tracked, PromiseError<()>>;

/// An adopted future ready on its second poll with `value`.
struct Second<V> {
    value: Option<V>,
    polled: bool,
}

impl<V: Unpin> Future for Second<V> {
    type Output = Result<V, ()>;
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::replace(&mut self.polled, true) {
            Poll::Ready(Ok(self.value.take().expect("polled after completion")))
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn wake_panics_and_the_settled_value_is_dropped_exactly_once() {
    static CELL: PromiseCell<support::drops::Tracked, ()> = PromiseCell::new();
    // Each way: handed out by the next poll, or dropped with the promise.
    for take in [true, false] {
        let values = DropCounter::new();
        let future = Second {
            value: Some(values.tracked()),
            polled: false,
        };
        let mut promise = Box::pin(CELL.lazy(move |res| res.adopt(future)).unwrap());
        let hostile = Hostile::new().panic_on(Call::Wake, 1);
        let waker = hostile.waker();
        assert!(
            promise
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let w = WakeCounter::new();
        assert!(catch_unwind(AssertUnwindSafe(|| poll_once(promise.as_mut(), &w))).is_err());
        assert_eq!(values.get(), 0);
        if take {
            let out: TrackedOut = match poll_once(promise.as_mut(), &w) {
                Poll::Ready(out) => out,
                Poll::Pending => panic!("the settlement is there"),
            };
            assert!(out.is_ok());
            assert_eq!(values.get(), 0);
            drop(out);
            assert_eq!(values.get(), 1);
        }
        drop(promise);
        assert_eq!(values.get(), 1, "the value is dropped exactly once");
        assert!(CELL.is_free());
    }
}

#[cfg(feature = "std")]
#[test]
fn catch_panics_returns_the_value_when_the_settlements_wake_panics() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    for panic_drop in [false, true] {
        let (future, counted) = step(0, 2, panic_drop);
        let mut promise = Box::pin(
            CELL.lazy(move |res| res.adopt(future))
                .unwrap()
                .catch_panics(),
        );
        let hostile = Hostile::new().panic_on(Call::Wake, 1);
        let waker = hostile.waker();
        assert!(
            promise
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let w = WakeCounter::new();
        // The panic is caught, the settlement made before it stands.
        match poll_once(promise.as_mut(), &w) {
            Poll::Ready(Ok(7)) => {}
            other => panic!("expected Ready(Ok(7)), got {:?}", other.map(|r| r.is_ok())),
        }
        assert_eq!(hostile.panics(), 1);
        assert_eq!(counted.get(), (2, 0));
        let dropped = catch_unwind(AssertUnwindSafe(|| drop(promise)));
        assert_eq!(dropped.is_err(), panic_drop);
        assert_eq!(counted.get(), (2, 1), "dropped once");
        assert!(CELL.is_free());
    }
}

#[cfg(feature = "std")]
#[test]
fn catch_panics_on_detached_returns_the_value_when_the_settlements_wake_panics() {
    for panic_drop in [false, true] {
        let (future, counted) = step(0, 2, panic_drop);
        let mut promise = Box::pin(
            DeferredPromise::<u32, PromiseError<()>>::detached(move |res| res.adopt(future))
                .catch_panics(),
        );
        let hostile = Hostile::new().panic_on(Call::Wake, 1);
        let waker = hostile.waker();
        assert!(
            promise
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let w = WakeCounter::new();
        assert!(matches!(
            poll_once(promise.as_mut(), &w),
            Poll::Ready(Ok(7))
        ));
        assert_eq!(counted.get(), (2, 0));
        let dropped = catch_unwind(AssertUnwindSafe(|| drop(promise)));
        assert_eq!(dropped.is_err(), panic_drop);
        assert_eq!(counted.get(), (2, 1), "dropped once");
    }
}

/// Every hostile behaviour (each call panicking on its 1st or 2nd use),
/// adopted futures ready on poll 1..=3 whose drop may panic: polling with
/// the hostile waker (a fresh one each poll) always ends with the value,
/// never with "`Adopt` polled after completion"; the future is dropped
/// once and the cell freed.
#[test]
fn every_hostile_waker_ends_with_the_value() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    for behaviour in Behaviour::panicking() {
        for ready_at in 1..=3 {
            for panic_drop in [false, true] {
                let run = |mut promise: Promise, counted: &Counted| {
                    let hostile = behaviour.hostile();
                    let mut out = None;
                    for _ in 0..8 {
                        // (A fresh waker each poll, dropped apart: its own
                        // drop may be the one that panics.)
                        let waker = hostile.waker();
                        let polled = poll_with(&mut promise, &waker);
                        let _ = catch_unwind(AssertUnwindSafe(|| drop(waker)));
                        match polled {
                            Ok(Poll::Ready(o)) => {
                                out = Some(o);
                                break;
                            }
                            Ok(Poll::Pending) => {}
                            Err(m) => assert!(
                                m.starts_with("hostile waker") || m == "adopted drop panics",
                                "{behaviour:?} ready_at {ready_at}: unexpected panic {m:?}"
                            ),
                        }
                    }
                    assert_eq!(out, Some(Ok(7)), "{behaviour:?} ready_at {ready_at}");
                    assert_eq!(counted.get().1, 1, "{behaviour:?} ready_at {ready_at}");
                    let _ = catch_unwind(AssertUnwindSafe(|| drop(promise)));
                    assert_eq!(counted.get().1, 1, "{behaviour:?}: dropped once");
                };
                let (future, counted) = step(0, ready_at, panic_drop);
                let promise = CELL.lazy(move |res| res.adopt(future)).unwrap();
                run(Box::pin(promise), &counted);
                assert!(CELL.is_free(), "{behaviour:?} ready_at {ready_at}");
                #[cfg(feature = "alloc")]
                {
                    let (future, counted) = step(0, ready_at, panic_drop);
                    let promise = DeferredPromise::<u32, PromiseError<()>>::detached(move |res| {
                        res.adopt(future)
                    });
                    run(Box::pin(promise), &counted);
                }
            }
        }
    }
}

/// An executor may hand over another promise's `Adopt`. If that promise is
/// gone the settlement is refused and the refused value is dropped right
/// after the poll that finished the `Adopt`: a panic there leaves the
/// finished `Adopt` in the slot, like a panicking wake.
#[test]
fn a_refused_settlement_whose_value_panics_on_drop() {
    static CELL: PromiseCell<support::drops::PanicOnDrop, ()> = PromiseCell::new();
    static OTHER: PromiseCell<support::drops::PanicOnDrop, ()> = PromiseCell::new();
    let values = DropCounter::new();
    let (other_promise, other_resolver) = OTHER.promise().unwrap();
    drop(other_promise);
    let value = values.panicking();
    let promise = CELL
        .lazy(move |res: Resolver<'static, _, ()>| {
            drop(res);
            other_resolver.adopt(async move { Ok(value) })
        })
        .unwrap();
    let mut promise = Box::pin(promise);
    let w = WakeCounter::new();
    let first = catch_unwind(AssertUnwindSafe(|| poll_once(promise.as_mut(), &w)));
    assert_eq!(
        first.map(|_| ()).map_err(|p| message(&*p)),
        Err("PanicOnDrop dropped".to_owned())
    );
    assert_eq!(values.get(), 1);
    // The finished `Adopt` is dropped, not polled again.
    let second = catch_unwind(AssertUnwindSafe(|| poll_once(promise.as_mut(), &w)))
        .map_err(|p| message(&*p));
    assert!(
        matches!(second, Ok(Poll::Ready(Err(PromiseError::Abandoned)))),
        "{:?}",
        second.map(|p| p.map(|r| r.map(|_| ())))
    );
    drop(promise);
    assert_eq!(values.get(), 1);
    assert!(CELL.is_free());
    assert!(OTHER.is_free());
}

#[cfg(feature = "alloc")]
#[test]
fn boxed_wake_panics_and_the_next_poll_returns_the_value() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    for panic_drop in [false, true] {
        let (future, counted) = step(0, 2, panic_drop);
        let mut promise = Box::pin(CELL.lazy(move |res| res.adopt(future)).unwrap().boxed());
        let hostile = Hostile::new().panic_on(Call::Wake, 1);
        let waker = hostile.waker();
        assert!(
            promise
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let w = WakeCounter::new();
        let mut out = None;
        for _ in 0..3 {
            if let Ok(Poll::Ready(o)) =
                catch_unwind(AssertUnwindSafe(|| poll_once(promise.as_mut(), &w)))
            {
                out = Some(o);
                break;
            }
        }
        assert_eq!(out, Some(Ok(7)));
        drop(promise);
        assert_eq!(counted.get(), (2, 1));
        assert!(CELL.is_free());
    }
}

#[cfg(feature = "alloc")]
#[test]
fn detached_wake_panics_then_the_promise_moves_to_another_thread() {
    let (future, counted) = step(0, 2, false);
    let mut promise = Box::pin(DeferredPromise::<u32, PromiseError<()>>::detached(
        move |res| res.adopt(future),
    ));
    let hostile = Hostile::new().panic_on(Call::Wake, 1);
    let waker = hostile.waker();
    assert!(
        promise
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    let w = WakeCounter::new();
    assert!(catch_unwind(AssertUnwindSafe(|| poll_once(promise.as_mut(), &w))).is_err());
    let out = std::thread::spawn(move || support::block_on(promise))
        .join()
        .unwrap();
    assert_eq!(out, Ok(7));
    assert_eq!(counted.get(), (2, 1));
}

/// A promise forgotten after the settlement's wake panicked: nothing is
/// dropped, the cell stays taken (a leak, not a double drop).
#[test]
fn wake_panics_then_the_promise_is_forgotten() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Leaky(bool);
    impl Future for Leaky {
        type Output = Result<u32, ()>;
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Ready(Ok(7))
            } else {
                Poll::Pending
            }
        }
    }
    impl Drop for Leaky {
        fn drop(&mut self) {
            DROPS.fetch_add(1, SeqCst);
        }
    }
    let mut promise =
        std::mem::ManuallyDrop::new(CELL.lazy(|res| res.adopt(Leaky(false))).unwrap());
    let hostile = Hostile::new().panic_on(Call::Wake, 1);
    let waker = hostile.waker();
    assert!(
        Pin::new(&mut *promise)
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    drop(waker);
    let w = WakeCounter::new();
    assert!(catch_unwind(AssertUnwindSafe(|| poll_once(Pin::new(&mut *promise), &w))).is_err());
    assert_eq!(hostile.panics(), 1);
    // Forgotten (never dropped).
    let _ = &promise;
    assert_eq!(DROPS.load(SeqCst), 0);
    assert!(!CELL.is_free());
    assert!(
        CELL.lazy(|res| res.resolve(1)).is_err(),
        "the cell stays taken"
    );
}
