//! Review of 4a85b46b (a `SharedPromise` handle that returned a *cloned*
//! output lets go of its `Arc`): the output's `Clone` and `Drop` (foreign
//! code, may panic, may re-enter) now meet the last-`Arc` drop inside
//! `poll`; `peek` lends through a strong handle while another thread takes
//! the output; weak handles race the last handle's `try_unwrap`; done
//! handles are forgotten, cloned, dropped.
//!
//! The output type [`Out`] counts its clones and drops (and how many are
//! alive), can panic on the k-th clone or drop, and runs a hook (once) at
//! its next clone: the re-entrant path (the clone drops the other handle,
//! so the cloning handle's `Arc` becomes the last one).
#![cfg(feature = "std")]

mod support;

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex, Once};
use std::task::{Context, Poll, Waker};
use std::thread;

use deferral::SharedPromise;
use futures::future::FusedFuture;
use support::{Gate, Hostile, WakeCounter, block_on};

// -------------------------------------------------------------- the output

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Stats {
    clones: AtomicUsize,
    drops: AtomicUsize,
    /// 1-based clone that panics (0: none).
    clone_panics_at: AtomicUsize,
    /// 1-based drop that panics (0: none).
    drop_panics_at: AtomicUsize,
    /// Every drop panics.
    every_drop_panics: AtomicBool,
    /// Runs (once) at the start of the next clone.
    on_clone: Mutex<Option<Hook>>,
}

impl Stats {
    fn new() -> Arc<Self> {
        Arc::new(Stats::default())
    }
    fn clones(&self) -> usize {
        self.clones.load(SeqCst)
    }
    fn drops(&self) -> usize {
        self.drops.load(SeqCst)
    }
    /// Values alive: the original plus successful clones, minus drops.
    fn live(&self) -> usize {
        1 + self.clones() - self.drops()
    }
    fn on_clone(&self, hook: impl FnOnce() + Send + 'static) {
        *self.on_clone.lock().unwrap() = Some(Box::new(hook));
    }
}

/// The output: `id` 0 is the original, `n` the n-th clone.
struct Out {
    stats: Arc<Stats>,
    id: usize,
}

impl Clone for Out {
    fn clone(&self) -> Self {
        let hook = self.stats.on_clone.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        let n = self.stats.clones.load(SeqCst) + 1;
        if self.stats.clone_panics_at.load(SeqCst) == n {
            self.stats.clone_panics_at.store(0, SeqCst);
            panic!("output clone panics");
        }
        let id = self.stats.clones.fetch_add(1, SeqCst) + 1;
        Out {
            stats: self.stats.clone(),
            id,
        }
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let n = self.stats.drops.fetch_add(1, SeqCst) + 1;
        if self.stats.every_drop_panics.load(SeqCst) || self.stats.drop_panics_at.load(SeqCst) == n
        {
            panic!("output destructor panics (id {})", self.id);
        }
    }
}

type Src = Pin<Box<dyn Future<Output = Out> + Send>>;
type Sp = SharedPromise<Src>;

fn ready_source(stats: &Arc<Stats>) -> Src {
    let out = Out {
        stats: stats.clone(),
        id: 0,
    };
    Box::pin(async move { out })
}

fn gated_source(gate: &Gate, stats: &Arc<Stats>) -> Src {
    let wait = gate.wait();
    let out = Out {
        stats: stats.clone(),
        id: 0,
    };
    Box::pin(async move {
        wait.await;
        out
    })
}

// ----------------------------------------------------------------- helpers

fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = message(info.payload());
            let expected = [
                "output clone panics",
                "output destructor panics",
                "polled after completion",
                "hostile waker",
            ];
            if std::env::var_os("LOUD").is_some() || !expected.iter().any(|e| msg.contains(e)) {
                default(info);
            }
        }));
    });
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".to_owned()
    }
}

fn expect_panic<R>(what: &str, expected: &str, f: impl FnOnce() -> R) {
    quiet_expected_panics();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("{what}: expected a panic containing {expected:?}, got none"),
        Err(p) => {
            let msg = message(&*p);
            assert!(
                msg.contains(expected),
                "{what}: expected a panic containing {expected:?}, got {msg:?}"
            );
        }
    }
}

fn poll(sp: &mut Sp, waker: &Waker) -> Poll<Out> {
    Pin::new(sp).poll(&mut Context::from_waker(waker))
}

fn ready(sp: &mut Sp, waker: &Waker) -> Out {
    match poll(sp, waker) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("pending"),
    }
}

/// Polls with a fresh hostile waker, catching a panic of the poll and of the
/// waker's drop; the poll's result survives a panicking drop.
fn poll_hostile(sp: &mut Sp, hostile: &Hostile) -> Option<Poll<Out>> {
    let mut result = None;
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let hw = hostile.waker();
        result = Some(poll(sp, &hw));
        drop(hw);
    }));
    result
}

/// A done handle holds nothing: it peeks nothing, is `ptr_eq` to nobody,
/// its weak handle never upgrades, its clone is done, polling it panics.
fn assert_holds_nothing(sp: &mut Sp, other: Option<&Sp>) {
    assert!(sp.is_terminated());
    assert!(sp.is_settled());
    assert!(sp.peek().is_none());
    assert!(sp.downgrade().upgrade().is_none());
    if let Some(other) = other {
        assert!(!sp.ptr_eq(other) && !other.ptr_eq(sp));
    }
    let mut clone = sp.clone();
    assert!(clone.is_terminated());
    let w = WakeCounter::new().waker();
    expect_panic("done handle", "polled after completion", || poll(sp, &w));
    expect_panic("clone of a done handle", "polled after completion", || {
        poll(&mut clone, &w)
    });
}

// ------------------------------------------------------------------- tests

/// (4) The output's `Clone` panics in the `Err` branch: the handle keeps its
/// `Arc` and is not done; the next poll clones again. The other handle then
/// moves the original out. Every value dropped once.
#[test]
fn clone_panic_leaves_the_handle_usable() {
    quiet_expected_panics();
    let stats = Stats::new();
    let mut a = Sp::new(ready_source(&stats));
    let mut b = a.clone();
    stats.clone_panics_at.store(1, SeqCst);
    let w = WakeCounter::new().waker();
    expect_panic("a's first poll", "output clone panics", || poll(&mut a, &w));
    assert!(!a.is_terminated());
    assert!(a.ptr_eq(&b));
    assert_eq!(a.peek().map(|o| o.id), Some(0));
    assert!(a.downgrade().upgrade().is_some());
    let va = ready(&mut a, &w);
    assert_eq!(va.id, 1, "a got a clone");
    assert_holds_nothing(&mut a, Some(&b));
    let vb = ready(&mut b, &w);
    assert_eq!(vb.id, 0, "b, the last handle, got the original, moved");
    assert_eq!(stats.clones(), 1);
    drop((a, b, va, vb));
    assert_eq!(stats.live(), 0);
}

/// (1, deterministic) The output's `Clone` drops the only other handle: the
/// cloning handle's `Arc` is now the last, and dropping it drops the stored
/// output inside `poll`. The caller gets the clone; the original is dropped
/// once, there.
#[test]
fn clone_that_drops_the_other_handle_makes_the_poll_drop_the_original() {
    let stats = Stats::new();
    let mut a = Sp::new(ready_source(&stats));
    let b = a.clone();
    let weak = a.downgrade();
    let slot = Arc::new(Mutex::new(Some(b)));
    let s2 = slot.clone();
    stats.on_clone(move || drop(s2.lock().unwrap().take()));
    let w = WakeCounter::new().waker();
    let va = ready(&mut a, &w);
    assert_eq!(va.id, 1);
    assert!(slot.lock().unwrap().is_none(), "the hook dropped b");
    assert_eq!(stats.drops(), 1, "the original was dropped inside the poll");
    assert!(weak.upgrade().is_none(), "the state is gone");
    assert_holds_nothing(&mut a, None);
    drop((a, va));
    assert_eq!(stats.live(), 0);
}

/// (1, 4) As above, and the original's destructor panics: the poll panics
/// with it; the handle is done and holds nothing; the clone made for the
/// caller is dropped during the unwind; nothing is dropped twice or leaked.
#[test]
fn original_destructor_panics_inside_poll() {
    quiet_expected_panics();
    let stats = Stats::new();
    let mut a = Sp::new(ready_source(&stats));
    let b = a.clone();
    let weak = a.downgrade();
    let slot = Arc::new(Mutex::new(Some(b)));
    let s2 = slot.clone();
    stats.on_clone(move || drop(s2.lock().unwrap().take()));
    stats.drop_panics_at.store(1, SeqCst);
    let w = WakeCounter::new().waker();
    expect_panic("a's poll", "output destructor panics (id 0)", || {
        poll(&mut a, &w)
    });
    assert_eq!(
        (stats.clones(), stats.drops()),
        (1, 2),
        "original and clone dropped once each"
    );
    assert_eq!(stats.live(), 0);
    assert!(weak.upgrade().is_none());
    assert_holds_nothing(&mut a, None);
    drop(a);
    assert_eq!(stats.drops(), 2);
}

/// (1, 4) FINDING: every drop of the output panics (a drop bomb that is
/// `Clone`). In the `Err` branch the clone for the caller is alive on the
/// stack while the last `Arc` drops the original: its panic unwinds through
/// the clone, whose destructor panics too: panic during unwinding, the
/// process aborts. Before 4a85b46b the original was dropped later, by the
/// last handle's `Drop`, with nothing else alive: one panic. The scenario
/// runs in a child process; the parent asserts it was not aborted.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn every_drop_panics_does_not_abort() {
    const CHILD: &str = "REVIEW_SHARED_ABORT_CHILD";
    if std::env::var_os(CHILD).is_some() {
        quiet_expected_panics();
        let stats = Stats::new();
        let mut a = Sp::new(ready_source(&stats));
        let b = a.clone();
        let slot = Arc::new(Mutex::new(Some(b)));
        let s2 = slot.clone();
        stats.on_clone(move || drop(s2.lock().unwrap().take()));
        stats.every_drop_panics.store(true, SeqCst);
        let w = WakeCounter::new().waker();
        let r = catch_unwind(AssertUnwindSafe(|| poll(&mut a, &w)));
        // Before 4a85b46b the poll returns the clone and the original drops
        // with `a`; since, the poll panics. Either way: one panic at a time.
        match r {
            Ok(Poll::Ready(v)) => std::mem::forget(v), // dropping it would panic
            Ok(Poll::Pending) => panic!("pending"),
            Err(_) => {}
        }
        let _ = catch_unwind(AssertUnwindSafe(move || drop(a)));
        std::process::exit(0);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "every_drop_panics_does_not_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child: {:?}\n{}",
        out.status,
        stderr
            .lines()
            .filter(|l| l.contains("panic"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// (2) A reference lent by `peek` stays valid while another handle on
/// another thread completes: that handle's `try_unwrap` fails (the peeking
/// handle is strong), it clones. Then the peeking handle, the last, moves
/// the original out.
#[test]
fn peek_survives_another_thread_taking_the_output() {
    let stats = Stats::new();
    let mut a = Sp::new(ready_source(&stats));
    let b = a.clone();
    let mut c = a.clone();
    let w = WakeCounter::new().waker();
    assert_eq!(ready(&mut c, &w).id, 1, "c drove and cloned");
    let r = a.peek().expect("complete");
    thread::scope(|s| {
        let t = s.spawn(move || block_on(b));
        // Read through the reference while b completes.
        for _ in 0..if cfg!(miri) { 3 } else { 1000 } {
            assert_eq!(r.id, 0);
            thread::yield_now();
        }
        let vb = t.join().unwrap();
        assert_eq!(vb.id, 2, "b cloned: a is strong while it lends");
    });
    assert_eq!(r.id, 0);
    assert!(Arc::ptr_eq(&r.stats, &stats));
    let va = ready(&mut a, &w);
    assert_eq!(va.id, 0, "a, the last, moved the original out");
    assert_eq!(stats.clones(), 2);
    drop((a, c, va));
    assert_eq!(stats.live(), 0);
}

/// (1, 3) Two handles (and a weak handle's upgrade) complete at once on
/// separate threads. At most one of them gets the original; whichever drops
/// the last `Arc` drops it if nobody moved it; every value is dropped once.
#[test]
fn two_handles_and_an_upgrade_complete_at_once() {
    let rounds = if cfg!(miri) { 4 } else { 2000 };
    for round in 0..rounds {
        let stats = Stats::new();
        let a = Sp::new(ready_source(&stats));
        let b = a.clone();
        let weak = a.downgrade();
        let barrier = Arc::new(Barrier::new(3));
        let (b1, b2) = (barrier.clone(), barrier.clone());
        let ta = thread::spawn(move || {
            b1.wait();
            block_on(a).id
        });
        let tb = thread::spawn(move || {
            b2.wait();
            block_on(b).id
        });
        barrier.wait();
        let vc = weak.upgrade().map(|c| block_on(c).id);
        let (va, vb) = (ta.join().unwrap(), tb.join().unwrap());
        let originals = [Some(va), Some(vb), vc]
            .iter()
            .filter(|v| **v == Some(0))
            .count();
        assert!(originals <= 1, "round {round}: {va} {vb} {vc:?}");
        assert!(weak.upgrade().is_none());
        assert_eq!(stats.live(), 0, "round {round}: {va} {vb} {vc:?}");
        assert_eq!(
            stats.drops(),
            1 + stats.clones(),
            "round {round}: every value once"
        );
    }
}

/// (3) The last handle moves the output out while a weak handle tries to
/// upgrade on another thread: the upgrade either succeeds before (and the
/// last handle clones) or fails. Never both a moved original and a live
/// upgraded handle that can still read it, never the original moved twice,
/// and every value dropped once.
#[test]
fn upgrade_races_the_last_try_unwrap() {
    let rounds = if cfg!(miri) { 4 } else { 2000 };
    for _ in 0..rounds {
        let stats = Stats::new();
        let mut a = Sp::new(ready_source(&stats));
        let mut driver = a.clone();
        let w = WakeCounter::new().waker();
        // Complete it, keeping `a` as the only strong handle.
        assert_eq!(ready(&mut driver, &w).id, 1);
        drop(driver);
        let weak = a.downgrade();
        let t = thread::spawn(move || {
            weak.upgrade().map(|c| {
                let seen = c.peek().map(|o| o.id);
                (seen, block_on(c).id)
            })
        });
        let va = ready(&mut a, &w).id;
        let vc = t.join().unwrap();
        match vc {
            None => assert_eq!(va, 0, "no upgrade: a moved"),
            Some((seen, vc)) => {
                assert_eq!(seen, Some(0));
                // At most one moves the original (id 0); both may clone
                // when their `try_unwrap`s overlap (each then lets go, and
                // the last one drops the original: `live() == 0` below).
                // Seen under ThreadSanitizer's scheduling.
                assert!(va != vc, "both moved the original: {va} {vc}");
            }
        }
        assert_eq!(stats.live(), 0);
    }
}

/// (5) A hostile waker's `wake` polls a third, unpolled clone to completion
/// while the driver's completing poll delivers the wake-ups (re-entrant
/// `ready` in the `Err` branch, inside the driver's `deliver`); and one
/// whose `wake` drops the last other handle. Values are dropped once.
#[test]
fn wake_hook_polls_another_clone_during_completion() {
    quiet_expected_panics();
    for drop_instead in [false, true] {
        let stats = Stats::new();
        let gate = Gate::new();
        let mut a = Sp::new(gated_source(&gate, &stats));
        let mut b = a.clone();
        let c = a.clone();
        let wa = WakeCounter::new();
        let hostile = Hostile::new();
        let hw = hostile.waker();
        assert!(poll(&mut a, &wa.waker()).is_pending());
        assert!(poll(&mut b, &hw).is_pending());
        let got = Arc::new(Mutex::new(None));
        let g2 = got.clone();
        hostile.on_wake(move || {
            let mut c = c;
            if !drop_instead {
                let w = WakeCounter::new().waker();
                *g2.lock().unwrap() = Some(ready(&mut c, &w).id);
            }
        });
        gate.open();
        assert!(hostile.hook_ran());
        let va = ready(&mut a, &wa.waker());
        let vb = ready(&mut b, &hw);
        let vc = got.lock().unwrap().take();
        let ids = [Some(va.id), Some(vb.id), vc];
        assert_eq!(
            ids.iter().filter(|v| **v == Some(0)).count(),
            1,
            "exactly one moved the original: {ids:?}"
        );
        assert_eq!(vb.id, 0, "b is the last");
        drop((a, b, va, vb, hw));
        assert_eq!(stats.live(), 0);
        assert_eq!(hostile.live(), 0);
        assert_eq!(wa.live(), 0);
    }
}

/// (5) Panicking wakers (clone, wake, drop; 1st and 2nd call) on the
/// completion path that now ends with a cloning handle letting go: every
/// handle still gets a value, every value and waker is dropped once.
#[test]
fn hostile_waker_matrix_on_the_letting_go_path() {
    quiet_expected_panics();
    for behaviour in support::Behaviour::all() {
        let stats = Stats::new();
        let gate = Gate::new();
        let mut a = Sp::new(gated_source(&gate, &stats));
        let mut b = a.clone();
        let hostile = behaviour.hostile();
        let wa = WakeCounter::new();
        let wka = wa.waker();
        let mut values = Vec::new();
        // b registers with the hostile waker (may panic in its clone).
        let mut b_pending = false;
        for _ in 0..3 {
            match poll_hostile(&mut b, &hostile) {
                Some(Poll::Pending) => {
                    b_pending = true;
                    break;
                }
                Some(Poll::Ready(_)) => panic!("{behaviour:?}: ready before the gate"),
                None => continue,
            }
        }
        assert!(b_pending, "{behaviour:?}");
        let _ = catch_unwind(AssertUnwindSafe(|| gate.open()));
        // a completes the source (if b's wake did not): a's poll may panic
        // with the waker's panic; its next poll returns the value.
        for _ in 0..3 {
            match catch_unwind(AssertUnwindSafe(|| poll(&mut a, &wka))) {
                Ok(Poll::Ready(v)) => {
                    values.push(v);
                    break;
                }
                Ok(Poll::Pending) => {}
                Err(_) => {}
            }
        }
        assert_eq!(values.len(), 1, "{behaviour:?}: a got nothing");
        assert_holds_nothing(&mut a, Some(&b));
        for _ in 0..3 {
            if let Some(Poll::Ready(v)) = poll_hostile(&mut b, &hostile) {
                values.push(v);
                break;
            }
        }
        assert_eq!(values.len(), 2, "{behaviour:?}: b got nothing");
        assert_eq!(values[1].id, 0, "{behaviour:?}: b, the last, moved");
        // Dropping handles and wakers may panic (hostile drop): catch each.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(a)));
        let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
        drop(values);
        drop(wka);
        assert_eq!(stats.live(), 0, "{behaviour:?}");
        assert_eq!(hostile.live(), 0, "{behaviour:?}: hostile wakers alive");
        assert_eq!(wa.live(), 0, "{behaviour:?}");
    }
}

/// (6) Forgetting a done handle leaks nothing and changes nothing: the
/// other handle is still the last and moves the original out.
#[test]
fn forget_a_done_handle() {
    let stats = Stats::new();
    let mut a = Sp::new(ready_source(&stats));
    let mut b = a.clone();
    let w = WakeCounter::new().waker();
    assert_eq!(ready(&mut a, &w).id, 1);
    std::mem::forget(a);
    assert_eq!(ready(&mut b, &w).id, 0);
    assert_eq!(stats.live(), 0);
    drop(b);
}

/// (6) Forgetting a registered handle leaks its `Arc` (safe): the other
/// handles can only clone, and the original is never dropped. A leak, not
/// UB; Miri would report the leak, so native only.
#[test]
#[cfg_attr(miri, ignore = "leaks on purpose")]
fn forget_a_registered_handle_leaks_the_original() {
    let stats = Stats::new();
    let gate = Gate::new();
    let mut a = Sp::new(gated_source(&gate, &stats));
    let mut b = a.clone();
    let wb = WakeCounter::new();
    assert!(poll(&mut b, &wb.waker()).is_pending());
    std::mem::forget(b);
    gate.open();
    let w = WakeCounter::new().waker();
    let va = ready(&mut a, &w);
    assert_eq!(va.id, 1, "a clones: the forgotten handle still counts");
    drop((a, va));
    assert_eq!(stats.live(), 1, "the original is leaked with the state");
}

/// (7) A handle that registered a waker (its `key` is `Some`), was woken,
/// then returned a clone: it is done, holds nothing, and its `Drop` and
/// its clone's `Drop` touch nothing. Its wakers are all released.
#[test]
fn drop_of_a_done_handle_that_had_registered() {
    let stats = Stats::new();
    let gate = Gate::new();
    let mut a = Sp::new(gated_source(&gate, &stats));
    let mut b = a.clone();
    let c = a.clone();
    let (wa, wb) = (WakeCounter::new(), WakeCounter::new());
    assert!(poll(&mut a, &wa.waker()).is_pending());
    assert!(poll(&mut b, &wb.waker()).is_pending());
    gate.open();
    let va = ready(&mut a, &wa.waker());
    let vb = ready(&mut b, &wb.waker());
    assert_eq!((va.id, vb.id), (1, 2), "c still holds the state");
    assert_eq!(wb.wakes(), 1);
    let b2 = b.clone();
    assert!(b2.is_terminated());
    drop((b2, b, a));
    assert_eq!((wa.live(), wb.live()), (0, 0));
    let mut c = c;
    assert_eq!(ready(&mut c, &WakeCounter::new().waker()).id, 0);
    drop((c, va, vb));
    assert_eq!(stats.live(), 0);
}
