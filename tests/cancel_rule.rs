//! The one cancellation rule (README, "Cancellation"): when a scope or a
//! stack cannot finish its cleanup where it is, a registration whose
//! condition does not hold for how the body ended is dropped unrun; sync
//! cleanup runs; async cleanup that started is dropped; async cleanup that
//! never started is handed over, with the body's real outcome.
//!
//! Regressions for issue 24's (a)–(d), each of which broke that rule.
#![cfg(feature = "std")]

mod support;

use std::future::pending;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use deferral::cancel::{self, BoxCleanup, Orphan, Reaper};
use deferral::{DeferStack, Outcome, When};
use futures::executor::block_on;
use support::{WakeCounter, poll_once, yield_now};

/// The program's cancel handler is global: these tests take turns.
static HANDLER: Mutex<()> = Mutex::new(());

fn handler_lock() -> std::sync::MutexGuard<'static, ()> {
    HANDLER.lock().unwrap_or_else(|e| e.into_inner())
}

/// (a) A cleanup for success only, moved into a `DeferStack`, does not run
/// when the stack is dropped while a panic unwinds (it used to: the stack
/// took "not cancelled" for success). Dropped normally, the stack runs it.
#[test]
fn an_on_success_cleanup_moved_to_a_stack_does_not_run_when_the_stack_unwinds() {
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let fill = |stack: &mut DeferStack| {
        block_on(deferral::scope(async |d| -> Result<(), ()> {
            let token = d
                .defer(|| {
                    RAN.fetch_add(1, SeqCst);
                })
                .when(When::Ok);
            assert!(token.move_to(stack).is_ok());
            Ok(())
        }))
        .unwrap();
    };

    let mut stack = DeferStack::new();
    fill(&mut stack);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _stack = stack;
        panic!("the owner failed");
    }));
    assert!(unwound.is_err());
    assert_eq!(RAN.load(SeqCst), 0, "not run: the stack's owner panicked");

    let mut stack = DeferStack::new();
    fill(&mut stack);
    drop(stack);
    assert_eq!(RAN.load(SeqCst), 1, "run: the stack's owner did not panic");
}

/// (b) A cancelled scope does not hand over async cleanup whose condition
/// does not hold for a cancellation: with a one-slot reaper, the slot goes
/// to the cleanup that must run (it used to go to the conditional no-op,
/// and the real cleanup was dropped unpolled).
#[test]
fn a_cancelled_scope_hands_over_only_cleanup_whose_condition_holds() {
    static REAPER: Reaper<1> = Reaper::new();
    static CLOSED: AtomicBool = AtomicBool::new(false);
    let _handler = handler_lock();
    cancel::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
    let dropped_before = cancel::dropped();

    let waker = WakeCounter::new();
    let mut scope = Box::pin(deferral::scope(async |d| -> Result<(), ()> {
        d.defer_async(async { CLOSED.store(true, SeqCst) });
        // Newer, so looked at first: must not take the slot.
        d.defer_async(async { unreachable!("committed after a cancellation") })
            .when(When::Ok);
        pending::<()>().await;
        Ok(())
    }));
    assert!(poll_once(scope.as_mut(), &waker).is_pending());
    drop(scope); // cancelled
    cancel::clear_cancel_handler();

    assert_eq!((REAPER.pending(), REAPER.missed()), (1, 0));
    assert_eq!(
        cancel::dropped(),
        dropped_before,
        "nothing dropped unpolled"
    );
    let mut reap = Box::pin(REAPER.run());
    assert!(poll_once(reap.as_mut(), &waker).is_pending());
    assert!(CLOSED.load(SeqCst), "the real cleanup ran in the reaper");
    assert_eq!(REAPER.pending(), 0);
}

/// Orphans the handler received, to run by hand.
static ORPHANS: Mutex<Vec<(Outcome, BoxCleanup)>> = Mutex::new(Vec::new());

fn collect(orphan: Orphan<'_>) {
    let outcome = orphan.outcome();
    ORPHANS.lock().unwrap().push((outcome, orphan.into_boxed()));
}

/// (c) After a grace cut-off, unstarted cleanup is judged by how the body
/// really ended: the body returned `Err`, so a `When::Err` rollback is
/// handed over with `Outcome::Err` and runs (it used to be judged as
/// cancelled, and dropped).
#[test]
fn a_rollback_cut_short_by_a_grace_deadline_still_runs_elsewhere() {
    static ROLLED_BACK: AtomicBool = AtomicBool::new(false);
    let _handler = handler_lock();
    ORPHANS.lock().unwrap().clear();
    cancel::set_cancel_handler(collect);

    let out = block_on(
        deferral::scope(async |d| -> Result<(), &str> {
            // LIFO: the hanging close runs first; the rollback waits.
            d.defer_async(async { ROLLED_BACK.store(true, SeqCst) })
                .when(When::Err);
            d.defer_async(async {
                yield_now().await;
                pending::<()>().await
            });
            Err("failed")
        })
        .grace(yield_now),
    );
    cancel::clear_cancel_handler();

    let cut = out.unwrap_err();
    assert_eq!(*cut.output(), Err("failed"));
    assert_eq!(
        cut.cut(),
        2,
        "the hanging close (dropped), the rollback (handed over)"
    );
    let orphans = std::mem::take(&mut *ORPHANS.lock().unwrap());
    assert_eq!(orphans.len(), 1);
    let (outcome, cleanup) = orphans.into_iter().next().unwrap();
    assert_eq!(
        outcome,
        Outcome::Err,
        "the body's real outcome, not Cancelled"
    );
    assert!(!ROLLED_BACK.load(SeqCst));
    block_on(cleanup);
    assert!(ROLLED_BACK.load(SeqCst));
}

/// Found by the `scope_ops` fuzz model: with no condition set anywhere in
/// the scope, an unconditional `guard_async_with` / `defer_async_with`
/// handed over after a cut-off was told `Outcome::Ok` though the body had
/// returned `Err` (untyped code could not tell an `Err` output from an `Ok`
/// one), so it committed instead of rolling back.
#[test]
fn an_unconditional_rollback_cut_short_sees_the_body_s_err() {
    static SEEN: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let _handler = handler_lock();
    ORPHANS.lock().unwrap().clear();
    SEEN.lock().unwrap().clear();
    cancel::set_cancel_handler(collect);

    let out = block_on(
        deferral::scope(async |d| -> Result<(), &str> {
            // LIFO: the hanging close runs first; the other two wait.
            d.guard_async_with(
                1u8,
                async |_conn, outcome| SEEN.lock().unwrap().push(outcome),
                drop,
            );
            d.defer_async_with(async |outcome| SEEN.lock().unwrap().push(outcome));
            d.defer_async(async {
                yield_now().await;
                pending::<()>().await
            });
            Err("failed")
        })
        .grace(yield_now),
    );
    cancel::clear_cancel_handler();

    assert_eq!(*out.unwrap_err().output(), Err("failed"));
    let orphans = std::mem::take(&mut *ORPHANS.lock().unwrap());
    let outcomes: Vec<Outcome> = orphans.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        outcomes,
        [Outcome::Err, Outcome::Err],
        "handed over with the body's Err"
    );
    for (_, cleanup) in orphans {
        block_on(cleanup);
    }
    assert_eq!(
        *SEEN.lock().unwrap(),
        [Outcome::Err, Outcome::Err],
        "both roll back"
    );
}

/// (d) `CutShort::cut` counts only cleanup that was going to run: the body
/// succeeded, so two rollbacks for `Err` are dropped unrun and not counted
/// (it said 3 where one hung).
#[test]
fn cut_counts_only_cleanup_that_was_going_to_run() {
    let _handler = handler_lock();
    cancel::clear_cancel_handler();
    let out = block_on(
        deferral::scope(async |d| -> Result<u8, ()> {
            d.defer_async(async { unreachable!("no rollback after success") })
                .when(When::Err);
            d.defer_async(async { unreachable!("no rollback after success") })
                .when(When::Err);
            d.defer_async(pending::<()>()); // hangs
            Ok(7)
        })
        .grace(yield_now),
    );
    let cut = out.unwrap_err();
    assert_eq!((cut.cut(), cut.dropped()), (1, 0));
    assert_eq!(cut.into_output(), Ok(7));
}
