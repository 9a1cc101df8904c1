//! Without a heap: a cancelled scope's async cleanup moves into a `static`
//! reaper and completes when the reaper task is polled; a full reaper takes
//! the documented fallback (the cleanup is dropped unpolled, once, and
//! counted). Runs with every feature set (CI runs the tests with
//! `--no-default-features` too). Its own test binary: the cancel handler
//! is program-wide.

mod support;

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::Poll;

use support::{WakeCounter, poll_once, yield_now};

static REAPER: deferral::cancel::Reaper<2, 96> = deferral::cancel::Reaper::new();
static CLOSED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A connection whose `close` is async; counts closes and drops.
struct Conn;

impl Conn {
    async fn close(self) {
        yield_now().await;
        CLOSED.fetch_add(1, SeqCst);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, SeqCst);
    }
}

/// Polls a scope holding a guarded `Conn` once (the body waits for ever),
/// then drops it: cancelled.
fn cancel_one() {
    let mut scope = pin!(deferral::scope(async |d| {
        let _conn = d.guard_async(Conn, Conn::close);
        std::future::pending::<()>().await
    }));
    assert!(poll_once(scope.as_mut(), &WakeCounter::new()).is_pending());
}

#[test]
fn cancelled_cleanup_runs_in_the_static_reaper_and_a_full_one_falls_back() {
    deferral::cancel::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
    let waker = WakeCounter::new();
    let mut reap = pin!(REAPER.run());

    cancel_one();
    assert_eq!(REAPER.pending(), 1, "moved into the reaper");
    assert_eq!((CLOSED.load(SeqCst), DROPPED.load(SeqCst)), (0, 0));
    // The reaper task polls it: the close awaits once, then finishes.
    assert!(matches!(poll_once(reap.as_mut(), &waker), Poll::Pending));
    assert_eq!(CLOSED.load(SeqCst), 0, "close() is waiting");
    assert!(matches!(poll_once(reap.as_mut(), &waker), Poll::Pending));
    assert_eq!((CLOSED.load(SeqCst), DROPPED.load(SeqCst)), (1, 1));
    assert_eq!(REAPER.pending(), 0);

    // Fill both slots, then one more: the fallback.
    cancel_one();
    cancel_one();
    assert!(waker.wakes() >= 1, "a hand-over wakes the reaper task");
    assert_eq!(REAPER.pending(), 2);
    cancel_one();
    assert_eq!(REAPER.missed(), 1, "full: counted");
    assert_eq!(
        (CLOSED.load(SeqCst), DROPPED.load(SeqCst)),
        (1, 2),
        "the third was dropped unpolled, once"
    );
    for _ in 0..2 {
        let _ = poll_once(reap.as_mut(), &waker);
    }
    assert_eq!((CLOSED.load(SeqCst), DROPPED.load(SeqCst)), (3, 4));
    assert_eq!(REAPER.pending(), 0);

    // A cleanup bigger than a slot takes the fallback even with room.
    {
        let big_slab = deferral::scope::ScopeBuilder::new().capacity::<512>();
        let mut scope = pin!(big_slab.run(async |d| {
            let big = (Conn, [0_u8; 128]);
            d.defer_async(async move {
                let _big = big;
                unreachable!("never polled")
            });
            std::future::pending::<()>().await
        }));
        assert!(poll_once(scope.as_mut(), &WakeCounter::new()).is_pending());
    } // dropped: cancelled
    assert_eq!(REAPER.pending(), 0, "not moved in");
    assert_eq!(REAPER.missed(), 2);
    assert_eq!(DROPPED.load(SeqCst), 5, "dropped unpolled, once");
    assert_eq!(REAPER.pending(), 0);
    deferral::cancel::clear_cancel_handler();
}
