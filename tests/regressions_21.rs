//! Issue 21's scope findings (1–6, 10, 11 for `Dispose` and `Grace`), one
//! test (or more) per finding, named `finding_N_...`. Each was seen failing
//! on c9d10e1 (the engine before the rewrite); the closing note of the
//! issue maps the finding to the test and the old failure.
//!
//! Run them under Miri too (Stacked and Tree Borrows): findings 1, 2 and 11
//! were undefined behaviour that only Miri shows. The cancel handler is
//! program-wide, so the tests that cancel a `scope` take [`handler`] first.

mod support;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use deferral::cancel::{Reaper, ReaperBusy};
use deferral::scope::{ScopeBuilder, Sendable};
use support::order::ORDERS;
use support::{Call, DropCounter, Hostile, WakeCounter, poll_once, yield_now};

/// One test at a time sets the program's cancel handler (or relies on there
/// being none).
fn handler() -> std::sync::MutexGuard<'static, ()> {
    static HANDLER: Mutex<()> = Mutex::new(());
    HANDLER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls a scope whose body never returns once, then drops it: cancelled.
fn cancel<F: Future>(scope: F) {
    let mut scope = pin!(scope);
    assert!(poll_once(scope.as_mut(), &WakeCounter::new()).is_pending());
}

// ------------------------------------------------------------- finding 1
// `Reaper::run` had no owner: two `Reap`s polled one slot at once.

static REAPER_1: Reaper<1, 128> = Reaper::new();
static IN_POLL: AtomicUsize = AtomicUsize::new(0);
static NESTED: AtomicUsize = AtomicUsize::new(0);
static DROPPED_IN_POLL: AtomicUsize = AtomicUsize::new(0);
static INNER_BUSY: AtomicUsize = AtomicUsize::new(0);

/// A cleanup that polls the reaper running it from inside its own poll.
struct PollsTheReaper {
    state: u32,
}

impl Future for PollsTheReaper {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if IN_POLL.fetch_add(1, SeqCst) > 0 {
            NESTED.fetch_add(1, SeqCst);
        }
        self.state += 1;
        if self.state == 1 {
            let mut inner = pin!(REAPER_1.run());
            if let Poll::Ready(Err(ReaperBusy)) = inner.as_mut().poll(cx) {
                INNER_BUSY.fetch_add(1, SeqCst);
            }
            self.state += 10; // written after the inner poll
        }
        IN_POLL.fetch_sub(1, SeqCst);
        if self.state > 1 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for PollsTheReaper {
    fn drop(&mut self) {
        if IN_POLL.load(SeqCst) > 0 {
            DROPPED_IN_POLL.fetch_add(1, SeqCst);
        }
    }
}

#[test]
fn finding_1_a_cleanup_that_polls_its_own_reaper_gets_reaper_busy() {
    let _h = handler();
    deferral::cancel::set_cancel_handler(|orphan| REAPER_1.hand_over(orphan));
    cancel(ScopeBuilder::new().capacity::<1024>().run(async |d| {
        d.defer_async(PollsTheReaper { state: 0 });
        std::future::pending::<()>().await
    }));
    deferral::cancel::clear_cancel_handler();
    assert_eq!(REAPER_1.pending(), 1);
    let mut reap = pin!(REAPER_1.run());
    assert!(poll_once(reap.as_mut(), &WakeCounter::new()).is_pending());
    assert_eq!(INNER_BUSY.load(SeqCst), 1, "the inner `run()` was refused");
    assert_eq!(NESTED.load(SeqCst), 0, "never polled while being polled");
    assert_eq!(
        DROPPED_IN_POLL.load(SeqCst),
        0,
        "never dropped while polled"
    );
    assert_eq!(REAPER_1.pending(), 0, "it finished in the outer poll");
}

#[test]
fn finding_1_a_second_run_resolves_to_reaper_busy_until_the_first_is_dropped() {
    static REAPER: Reaper<1> = Reaper::new();
    let counter = WakeCounter::new();
    let mut first = Box::pin(REAPER.run());
    assert!(poll_once(first.as_mut(), &counter).is_pending());
    let mut second = pin!(REAPER.run());
    assert!(matches!(
        poll_once(second.as_mut(), &counter),
        Poll::Ready(Err(ReaperBusy))
    ));
    // A forgotten claimless `Reap` holds nothing.
    std::mem::forget(REAPER.run());
    drop(first);
    let mut third = pin!(REAPER.run());
    assert!(
        poll_once(third.as_mut(), &counter).is_pending(),
        "the claim was released"
    );
}

/// Counts polls that overlap, from any thread.
struct Exclusive {
    in_poll: &'static AtomicUsize,
    overlaps: &'static AtomicUsize,
    polls: &'static AtomicUsize,
    drops: &'static AtomicUsize,
}

impl Future for Exclusive {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.in_poll.fetch_add(1, SeqCst) > 0 {
            self.overlaps.fetch_add(1, SeqCst);
        }
        std::thread::yield_now();
        let n = self.polls.fetch_add(1, SeqCst);
        self.in_poll.fetch_sub(1, SeqCst);
        if n >= 3 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

#[test]
fn finding_1_two_threads_polling_one_reaper_never_poll_a_cleanup_twice() {
    static REAPER: Reaper<2, 128> = Reaper::new();
    static IN: AtomicUsize = AtomicUsize::new(0);
    static OVERLAPS: AtomicUsize = AtomicUsize::new(0);
    static POLLS: AtomicUsize = AtomicUsize::new(0);
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let _h = handler();
    deferral::cancel::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
    cancel(ScopeBuilder::new().capacity::<1024>().run(async |d| {
        d.defer_async(Exclusive {
            in_poll: &IN,
            overlaps: &OVERLAPS,
            polls: &POLLS,
            drops: &DROPS,
        });
        std::future::pending::<()>().await
    }));
    deferral::cancel::clear_cancel_handler();
    let busy = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let counter = WakeCounter::new();
                let mut reap = pin!(REAPER.run());
                for _ in 0..if cfg!(miri) { 3 } else { 50 } {
                    match poll_once(reap.as_mut(), &counter) {
                        Poll::Ready(Err(ReaperBusy)) => {
                            busy.fetch_add(1, SeqCst);
                            return;
                        }
                        Poll::Ready(Ok(never)) => match never {},
                        Poll::Pending => {}
                    }
                }
            });
        }
    });
    // Whoever was left finishes it.
    let mut reap = pin!(REAPER.run());
    for _ in 0..4 {
        let _ = poll_once(reap.as_mut(), &WakeCounter::new());
    }
    assert_eq!(OVERLAPS.load(SeqCst), 0, "two polls at once");
    assert_eq!(POLLS.load(SeqCst), 4, "polled to completion, no more");
    assert_eq!(DROPS.load(SeqCst), 1, "dropped once");
    assert_eq!(REAPER.pending(), 0);
    assert!(busy.load(SeqCst) <= 1);
}

// ------------------------------------------------------------- finding 2
// `Slot::fits` measured the payload's offset at a stand-in address: an
// entry aligned to 128 was written past its slot.

/// 256 bytes aligned to 128, a future itself.
#[cfg(feature = "alloc")]
#[repr(align(128))]
struct Big([u8; 256], &'static AtomicUsize);

#[cfg(feature = "alloc")]
impl Future for Big {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        assert_eq!(self.0[0], 0x5a);
        Poll::Ready(())
    }
}

#[cfg(feature = "alloc")]
impl Drop for Big {
    fn drop(&mut self) {
        self.1.fetch_add(1, SeqCst);
    }
}

#[cfg(feature = "alloc")]
#[test]
fn finding_2_an_over_aligned_orphan_is_refused_not_written_past_its_slot() {
    #[repr(C, align(4096))]
    struct Page(Reaper<1, 320>);
    static PAGE: Page = Page(Reaper::new());
    static WIDE: Reaper<1, 1024> = Reaper::new();
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let _h = handler();
    deferral::cancel::set_cancel_handler(|orphan| PAGE.0.hand_over(orphan));
    cancel(ScopeBuilder::new().capacity::<1024>().run(async |d| {
        d.defer_async(Big([0x5a; 256], &DROPS));
        std::future::pending::<()>().await
    }));
    assert_eq!(PAGE.0.missed(), 1, "refused, and the count is intact");
    assert_eq!(PAGE.0.pending(), 0);
    assert_eq!(DROPS.load(SeqCst), 1, "dropped unpolled, once");

    // Big enough, but a slot promises 16-byte alignment only.
    deferral::cancel::set_cancel_handler(|orphan| WIDE.hand_over(orphan));
    cancel(ScopeBuilder::new().capacity::<1024>().run(async |d| {
        d.defer_async(Big([0x5a; 256], &DROPS));
        std::future::pending::<()>().await
    }));
    assert_eq!(
        (WIDE.missed(), WIDE.pending(), DROPS.load(SeqCst)),
        (1, 0, 2)
    );

    // The page's reaper still works: a small cleanup runs there.
    static RAN: AtomicUsize = AtomicUsize::new(0);
    deferral::cancel::set_cancel_handler(|orphan| PAGE.0.hand_over(orphan));
    cancel(ScopeBuilder::new().capacity::<1024>().run(async |d| {
        d.defer_async(async {
            RAN.fetch_add(1, SeqCst);
        });
        std::future::pending::<()>().await
    }));
    deferral::cancel::clear_cancel_handler();
    assert_eq!(PAGE.0.pending(), 1);
    let _ = poll_once(pin!(PAGE.0.run()), &WakeCounter::new());
    assert_eq!(
        (RAN.load(SeqCst), PAGE.0.pending(), PAGE.0.missed()),
        (1, 0, 1)
    );
}

// ------------------------------------------------------------- finding 3
// `Reaper` had no `Drop`: one that is not a `static` leaked what it held.

std::thread_local! {
    static LOCAL_REAPER: Reaper<2, 128> = const { Reaper::new() };
}

#[test]
fn finding_3_a_thread_local_reaper_drops_what_it_holds_when_the_thread_ends() {
    let _h = handler();
    let drops = DropCounter::new();
    let (a, b) = (drops.tracked(), drops.tracked());
    std::thread::spawn(move || {
        deferral::cancel::set_cancel_handler(|orphan| LOCAL_REAPER.with(|r| r.hand_over(orphan)));
        // One half-run (polled, pending), one never polled.
        cancel(ScopeBuilder::new().capacity::<1024>().run(async move |d| {
            d.defer_async(async move {
                let _a = a;
                std::future::pending::<()>().await
            });
            std::future::pending::<()>().await
        }));
        LOCAL_REAPER.with(|r| {
            let _ = poll_once(pin!(r.run()), &WakeCounter::new());
        });
        cancel(ScopeBuilder::new().capacity::<1024>().run(async move |d| {
            d.defer_async(async move {
                let _b = b;
            });
            std::future::pending::<()>().await
        }));
        deferral::cancel::clear_cancel_handler();
        LOCAL_REAPER.with(|r| assert_eq!(r.pending(), 2));
    })
    .join()
    .unwrap();
    assert_eq!(
        drops.get(),
        2,
        "the thread's reaper dropped both, once each"
    );
}

#[test]
fn finding_3_a_reaper_field_is_dropped_with_its_owner() {
    // Not reachable from a handler (which is a `fn`), but constructible and
    // droppable: an empty one drops nothing, twice.
    struct App {
        _reaper: Reaper<2>,
    }
    drop(App {
        _reaper: Reaper::new(),
    });
}

// ------------------------------------------------------------- finding 4
// Concurrent cleanup retried a panicking `Waker::clone` for ever, recording
// each as a cleanup panic.

/// A waker whose `clone` panics, the first `LIMIT` times (a bound, so that
/// the old engine's endless retry ends).
static CLONES: AtomicUsize = AtomicUsize::new(0);
const LIMIT: usize = 1000;
static PANICKY: RawWakerVTable = RawWakerVTable::new(
    |p| {
        if CLONES.fetch_add(1, SeqCst) < LIMIT {
            panic!("waker clone panics");
        }
        RawWaker::new(p, &PANICKY)
    },
    |_| {},
    |_| {},
    |_| {},
);

#[test]
fn finding_4_a_panicking_waker_clone_neither_hangs_nor_is_a_cleanup_panic() {
    for order in ORDERS {
        CLONES.store(0, SeqCst);
        let mut scope = support::order::run(order, async |d| {
            d.defer_async(yield_now());
            7
        });
        // SAFETY: the vtable never reads the data pointer.
        let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &PANICKY)) };
        let first = catch_unwind(AssertUnwindSafe(|| {
            scope.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        let attempts = CLONES.load(SeqCst);
        assert!(
            attempts <= 1,
            "{order:?}: the clone was tried {attempts} times"
        );
        assert_eq!(
            first.is_err(),
            attempts == 1,
            "{order:?}: the waker's panic is the caller's"
        );
        let out = match first {
            // Without `alloc` concurrent cleanup may finish in one poll.
            Ok(Poll::Ready(out)) => Some(out),
            _ => catch_unwind(AssertUnwindSafe(|| support::block_on(scope.as_mut()))).ok(),
        };
        assert_eq!(out, Some(7), "{order:?}: no cleanup panicked");
    }
}

// ------------------------------------------------------------- finding 5
// A grace cut-off dropped the owner's waker (foreign code) before the
// started cleanup: if that drop panicked, the started cleanup leaked.

#[test]
fn finding_5_a_grace_cut_off_drops_started_cleanup_even_if_the_waker_drop_panics() {
    let _h = handler();
    for order in ORDERS {
        let drops = DropCounter::new();
        let (a, b) = (drops.tracked(), drops.tracked());
        let mut graced = support::order::run_grace(
            order,
            async move |d| {
                d.defer_async(async move {
                    let _a = a;
                    std::future::pending::<()>().await
                });
                d.defer_async(async move {
                    let _b = b;
                    std::future::pending::<()>().await
                });
            },
            yield_now,
        );
        let hostile = Hostile::new().panic_on(Call::Drop, 1);
        let waker = hostile.waker();
        let mut cx = Context::from_waker(&waker);
        assert!(graced.as_mut().poll(&mut cx).is_pending());
        assert_eq!(drops.get(), 0);
        let cut = catch_unwind(AssertUnwindSafe(|| graced.as_mut().poll(&mut cx)));
        // Ours (its first drop panics if the scope never stored a clone).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(waker)));
        if order == support::order::Order::Concurrent && cfg!(feature = "alloc") {
            assert!(cut.is_err(), "the owner waker's drop panicked");
        }
        assert_eq!(drops.get(), 2, "{order:?}: both cleanups were dropped");
        drop(graced);
        assert_eq!(drops.get(), 2, "{order:?}: once");
    }
}

/// With `alloc` concurrent cleanup keeps a clone of the owner's waker (its
/// per-entry wakers wake it): a cancelled scope drops it after the cleanup.
#[cfg(feature = "alloc")]
#[test]
fn finding_5_a_cancelled_concurrent_scope_drops_started_cleanup_before_the_waker() {
    let drops = DropCounter::new();
    let a = drops.tracked();
    let builder = ScopeBuilder::new()
        .capacity::<1024>()
        .order(deferral::scope::Concurrent);
    let mut scope = Box::pin(builder.run(async move |d| {
        d.defer_async(async move {
            let _a = a;
            std::future::pending::<()>().await
        });
    }));
    let hostile = Hostile::new().panic_on(Call::Drop, 1);
    let waker = hostile.waker();
    assert!(
        scope
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(scope)));
    drop(waker); // its one panicking drop is spent (if not, the test fails)
    assert!(dropped.is_err(), "the owner waker's drop panicked");
    assert_eq!(drops.get(), 1, "the started cleanup was dropped first");
}

// ------------------------------------------------------------- finding 6
// A panicking `take` (a context snapshot's destructor) left the entry
// `TAKING`: `len()` counted it and cleanup hit `unreachable!()`.

#[cfg(feature = "std")]
mod finding_6 {
    use super::*;

    struct Bomb(&'static AtomicUsize);

    impl Drop for Bomb {
        fn drop(&mut self) {
            if self.0.swap(0, SeqCst) == 1 {
                panic!("a context value's destructor panics");
            }
        }
    }

    static CTX: deferral::ContextVar<Bomb> = deferral::ContextVar::new();

    #[test]
    fn finding_6_a_panicking_take_leaves_no_registration_behind() {
        static ARMED: AtomicUsize = AtomicUsize::new(1);
        static LEN: AtomicUsize = AtomicUsize::new(usize::MAX);
        let out = catch_unwind(AssertUnwindSafe(|| {
            support::block_on(ScopeBuilder::new().capacity::<1024>().run(async |d| {
                let token = CTX.run(Bomb(&ARMED), || d.defer(|| ()));
                let taken = catch_unwind(AssertUnwindSafe(|| {
                    let _ = token.cancel();
                }));
                assert!(taken.is_err(), "the snapshot's destructor panicked");
                LEN.store(d.len(), SeqCst);
                d.defer(|| ()); // the bytes are usable again
                d.len()
            }))
        }));
        assert_eq!(LEN.load(SeqCst), 0, "len() after the panicking take");
        assert_eq!(out.ok(), Some(1), "cleanup after the panicking take");
    }

    #[test]
    fn finding_6_a_panicking_guard_take_leaves_no_registration_behind() {
        static ARMED: AtomicUsize = AtomicUsize::new(1);
        let ran = DropCounter::new();
        let r = ran.clone();
        let out = catch_unwind(AssertUnwindSafe(|| {
            support::block_on(ScopeBuilder::new().capacity::<1024>().run(async move |d| {
                let guard = CTX.run(Bomb(&ARMED), || d.guard(5, |_| ()));
                let taken = catch_unwind(AssertUnwindSafe(|| deferral::Guard::defuse(guard)));
                assert!(taken.is_err());
                let t = r.tracked();
                d.defer(move || drop(t));
                d.len()
            }))
        }));
        assert_eq!(out.ok(), Some(1));
        assert_eq!(ran.get(), 1, "the later cleanup ran");
    }
}

// ------------------------------------------------------------ finding 10
// `Dispose` was `!Send` even for a `Send` stack.

#[test]
fn finding_10_dispose_of_a_send_stack_is_send() {
    use deferral::DeferStack;
    use deferral::scope::{Dispose, Local};
    static_assertions::assert_impl_all!(Dispose: Send);
    static_assertions::assert_impl_all!(Dispose<deferral::scope::Fixed, 64>: Send);
    static_assertions::assert_not_impl_any!(Dispose<Local<'static>>: Send);

    let drops = DropCounter::new();
    let mut stack: DeferStack<Sendable, 1024> = DeferStack::new();
    let t = drops.tracked();
    stack.defer(move || drop(t));
    let t = drops.tracked();
    stack.defer_async(async move {
        yield_now().await;
        drop(t);
    });
    // Disposed on another thread, and inside a `Send` scope's body.
    let dispose = stack.dispose();
    std::thread::spawn(move || support::block_on(dispose))
        .join()
        .unwrap();
    assert_eq!(drops.get(), 2);

    fn spawnable<F: Future + Send>(f: F) -> F {
        f
    }
    let mut stack: DeferStack<Sendable, 1024> = DeferStack::new();
    let t = drops.tracked();
    stack.defer(move || drop(t));
    support::block_on(spawnable(ScopeBuilder::new().capacity::<1024>().run(
        async move |_| {
            stack.dispose().await;
        },
    )));
    assert_eq!(drops.get(), 3);
}

// ------------------------------------------------------------ finding 11
// `&self` accessors over pinned, self-borrowing futures between two polls:
// a `&Dispose` or `&Grace` retagged the cleanup's (or the timer's) bytes
// as shared and invalidated their own `&mut` (Stacked and Tree Borrows).

/// Keeps `&mut` to a local across pending await points, written before and
/// after each (an active tag under Tree Borrows).
async fn self_borrowing(rounds: u32) -> u32 {
    let mut local = [1u32; 4];
    let r = &mut local;
    for _ in 0..rounds {
        r[0] += 1;
        yield_now().await;
        r[0] += 1;
    }
    r.iter().sum()
}

#[test]
fn finding_11_dispose_debug_between_polls_of_a_self_borrowing_cleanup() {
    let mut stack: deferral::DeferStack<Sendable, 1024> = deferral::DeferStack::new();
    stack.defer_async(async {
        assert_eq!(self_borrowing(3).await, 10);
    });
    let mut dispose = Box::pin(stack.dispose());
    let counter = WakeCounter::new();
    let mut polls = 0;
    while poll_once(dispose.as_mut(), &counter).is_pending() {
        let shown = format!("{:?}", &*dispose);
        assert!(shown.starts_with("Dispose"));
        polls += 1;
        assert!(polls < 10);
    }
    assert_eq!(polls, 3);
}

#[test]
fn finding_11_grace_debug_between_polls_of_a_self_borrowing_timer_and_cleanup() {
    let mut graced = Box::pin(
        ScopeBuilder::new()
            .capacity::<1024>()
            .run(async |d| {
                d.defer_async(async {
                    assert_eq!(self_borrowing(3).await, 10);
                });
                self_borrowing(2).await
            })
            .grace(|| async {
                self_borrowing(5).await;
            }),
    );
    let counter = WakeCounter::new();
    let mut polls = 0;
    let out = loop {
        if let Poll::Ready(out) = poll_once(graced.as_mut(), &counter) {
            break out;
        }
        let shown = format!("{:?}", &*graced);
        assert!(shown.starts_with("Grace"));
        polls += 1;
        assert!(polls < 20);
    };
    assert_eq!(out.ok(), Some(8), "the cleanup finished before the timer");
}

#[test]
fn finding_11_scope_debug_and_is_terminated_between_polls() {
    use futures::future::FusedFuture;
    for order in ORDERS {
        let mut scope = support::order::run_n::<2048, _, _>(order, async |d| {
            d.defer_async(async {
                assert_eq!(self_borrowing(3).await, 10);
            });
            self_borrowing(2).await
        });
        let counter = WakeCounter::new();
        let mut polls = 0;
        let out = loop {
            if let Poll::Ready(out) = poll_once(scope.as_mut(), &counter) {
                break out;
            }
            polls += 1;
            assert!(polls < 20);
        };
        assert_eq!(out, 8);
        // The boxed `dyn Future` hides the accessors: check them on a named
        // scope too.
        let mut named = Box::pin(ScopeBuilder::new().capacity::<1024>().run(async |d| {
            d.defer_async(async {
                self_borrowing(2).await;
            });
            self_borrowing(2).await
        }));
        loop {
            if poll_once(named.as_mut(), &counter).is_ready() {
                break;
            }
            assert!(!named.is_terminated());
            let _ = format!("{:?}", &*named);
        }
        assert!(named.is_terminated());
    }
}
