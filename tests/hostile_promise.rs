//! `PromiseCell`, its lazy `defer` form and detached promises against hostile
//! wakers (clone, wake, wake_by_ref or drop panicking on the k-th call; a
//! wake that drops the promise) and against reuse: every settled value is
//! dropped exactly once, every waiter completes, the cell ends up free.
//!
//! Findings 1–3 of the review of bf5d9a4 each have a named test here.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

#[cfg(feature = "alloc")]
use deferral::DeferredPromise;
use deferral::promise::Refusal;
use deferral::{PromiseCell, PromiseError, Resolver};
use support::{Behaviour, Call, DropCounter, Hostile, WakeCounter};

type Tracked = support::drops::Tracked;
type Out = Result<Tracked, PromiseError<()>>;

/// Polls once with `waker`, catching a panic (`None`).
fn poll_caught<F: Future + ?Sized>(
    fut: Pin<&mut F>,
    waker: &std::task::Waker,
) -> Option<Poll<F::Output>> {
    catch_unwind(AssertUnwindSafe(|| {
        fut.poll(&mut Context::from_waker(waker))
    }))
    .ok()
}

/// Drives `fut` to completion: first with the hostile waker, then (after
/// it panicked, or if it stays pending) with well-behaved ones. Panics if
/// the future is still pending after a few polls (a lost wake-up would hang
/// a real executor; here every poll is explicit).
fn finish<F: Future + ?Sized>(mut fut: Pin<&mut F>, hostile: &Hostile) -> F::Output {
    let good = WakeCounter::new();
    for attempt in 0..4 {
        let waker = if attempt == 0 {
            hostile.waker()
        } else {
            good.waker()
        };
        let polled = poll_caught(fut.as_mut(), &waker);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
        if let Some(Poll::Ready(out)) = polled {
            return out;
        }
    }
    panic!("still pending after 4 polls");
}

/// Settles `resolver` with a tracked value, catching a panicking wake.
fn resolve_caught(resolver: &Resolver<'_, Tracked, ()>, value: Tracked) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        resolver.resolve(value).map_err(drop).unwrap();
    }));
}

/// When the resolver settles, relative to the promise's polls.
#[derive(Debug, Clone, Copy)]
enum When {
    BeforeFirstPoll,
    AfterFirstPoll,
}

#[test]
fn cell_against_every_hostile_waker() {
    for behaviour in Behaviour::all() {
        for when in [When::BeforeFirstPoll, When::AfterFirstPoll] {
            let cell = &PromiseCell::new();
            let drops = DropCounter::new();
            let hostile = behaviour.hostile();
            let (promise, resolver) = cell.promise().unwrap();
            let mut promise = Box::pin(promise);
            if let When::BeforeFirstPoll = when {
                resolve_caught(&resolver, drops.tracked());
            }
            let waker = hostile.waker();
            let first = poll_caught(promise.as_mut(), &waker);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
            let out: Out = match first {
                Some(Poll::Ready(out)) => out,
                _ => {
                    if let When::AfterFirstPoll = when {
                        resolve_caught(&resolver, drops.tracked());
                    }
                    finish(promise.as_mut(), &hostile)
                }
            };
            assert!(out.is_ok(), "{behaviour:?} {when:?}: {out:?}");
            drop(out);
            assert_eq!(drops.get(), 1, "{behaviour:?} {when:?}: dropped once");
            drop((promise, resolver));
            assert!(cell.is_free(), "{behaviour:?} {when:?}: the cell is free");
            assert_eq!(hostile.live(), 0, "{behaviour:?} {when:?}: no waker kept");
        }
    }
}

#[test]
fn cell_promise_dropped_after_a_hostile_registration() {
    for behaviour in Behaviour::all() {
        for settle_first in [false, true] {
            let cell = &PromiseCell::new();
            let drops = DropCounter::new();
            let hostile = behaviour.hostile();
            let (promise, resolver) = cell.promise().unwrap();
            let mut promise = Box::pin(promise);
            let waker = hostile.waker();
            let _ = poll_caught(promise.as_mut(), &waker);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
            if settle_first {
                resolve_caught(&resolver, drops.tracked());
            }
            // Dropping the promise may drop the registered (hostile) waker.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(promise)));
            if !settle_first {
                let refused = resolver.resolve(drops.tracked()).unwrap_err();
                assert_eq!(refused.reason(), Refusal::Closed, "{behaviour:?}");
                drop(refused);
            }
            drop(resolver);
            assert_eq!(drops.get(), 1, "{behaviour:?} settle_first={settle_first}");
            assert!(cell.is_free(), "{behaviour:?} settle_first={settle_first}");
            assert_eq!(hostile.live(), 0, "{behaviour:?}");
        }
    }
}

type Stash<'a> = Arc<Mutex<Option<Resolver<'a, Tracked, ()>>>>;

/// A detached promise whose resolver lands in `stash` when it starts.
#[cfg(feature = "alloc")]
fn detached<'a>(stash: &Stash<'a>) -> Pin<Box<dyn Future<Output = Out> + Send + 'a>> {
    let stash = stash.clone();
    Box::pin(DeferredPromise::<Tracked, PromiseError<()>>::detached(
        move |r| {
            *stash.lock().unwrap() = Some(r);
        },
    ))
}

#[test]
fn a_wake_that_drops_the_promise_mid_settlement() {
    for detached_mode in [false, cfg!(feature = "alloc")] {
        static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
        let cell = &CELL;
        let drops = DropCounter::new();
        let hostile = Hostile::new();
        let resolver_slot: Stash<'static> = Arc::default();
        let promise: Pin<Box<dyn Future<Output = Out> + Send>> = if detached_mode {
            #[cfg(feature = "alloc")]
            {
                detached(&resolver_slot)
            }
            #[cfg(not(feature = "alloc"))]
            unreachable!()
        } else {
            let (p, r) = cell.promise().unwrap();
            *resolver_slot.lock().unwrap() = Some(r);
            Box::pin(p)
        };
        let victim = Arc::new(Mutex::new(Some(promise)));
        {
            let mut guard = victim.lock().unwrap();
            let p = guard.as_mut().unwrap();
            let waker = hostile.waker();
            assert!(
                p.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        let v = victim.clone();
        hostile.on_wake(move || drop(v.lock().unwrap().take()));
        let resolver = resolver_slot.lock().unwrap().take().unwrap();
        resolver.resolve(drops.tracked()).map_err(drop).unwrap();
        assert!(hostile.hook_ran(), "detached={detached_mode}");
        assert_eq!(
            drops.get(),
            1,
            "detached={detached_mode}: the closing promise dropped it"
        );
        drop(resolver);
        assert!(cell.is_free());
        assert_eq!(hostile.live(), 0);
    }
}

#[test]
#[cfg(feature = "alloc")]
fn detached_against_every_hostile_waker() {
    for behaviour in Behaviour::all() {
        let drops = DropCounter::new();
        let hostile = behaviour.hostile();
        let stash: Stash<'static> = Arc::default();
        let mut promise = detached(&stash);
        let waker = hostile.waker();
        let first = poll_caught(promise.as_mut(), &waker);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
        let out = match first {
            Some(Poll::Ready(out)) => out,
            _ => {
                if let Some(r) = stash.lock().unwrap().take() {
                    resolve_caught(&r, drops.tracked());
                }
                finish(promise.as_mut(), &hostile)
            }
        };
        assert!(out.is_ok(), "{behaviour:?}: {out:?}");
        drop(out);
        assert_eq!(drops.get(), 1, "{behaviour:?}");
        drop(promise);
        assert_eq!(hostile.live(), 0, "{behaviour:?}");
    }
}

/// Finding 3 of the review of bf5d9a4: the promise's drop dropped its
/// registered waker *before* marking the cell closed. A panicking waker
/// destructor left `CLOSED` unset: the resolver's value was accepted into a
/// slot nobody would read (leaked) and the static cell stayed busy for ever.
#[test]
fn finding_3_panicking_waker_drop_in_close_neither_leaks_nor_wedges_the_cell() {
    static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    let drops = DropCounter::new();
    let hostile = Hostile::new().panic_on(Call::Drop, 1);
    let (promise, resolver) = CELL.promise().unwrap();
    let mut promise = Box::pin(promise);
    let waker = hostile.waker();
    assert!(matches!(
        poll_caught(promise.as_mut(), &waker),
        Some(Poll::Pending)
    ));
    // The registered clone is the first to be dropped: in `close`.
    assert!(catch_unwind(AssertUnwindSafe(move || drop(promise))).is_err());
    drop(waker);
    let refused = resolver.resolve(drops.tracked()).unwrap_err();
    assert_eq!(refused.reason(), Refusal::Closed, "nobody will read it");
    drop(refused);
    assert_eq!(drops.get(), 1, "the value came back and was dropped");
    drop(resolver);
    assert!(CELL.is_free(), "the cell is reusable");
    assert!(CELL.promise().is_ok());
}

/// Finding 2 of the review of bf5d9a4, single-threaded form: a panicking
/// waker destructor while the promise takes its value must not leave the
/// value readable again (double drop) nor the cell busy.
#[test]
fn finding_2_panicking_waker_drop_while_taking_the_value_drops_it_once() {
    static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    let drops = DropCounter::new();
    // Every drop of this waker panics: whichever drop happens while the
    // value is taken (the registration taken out of the cell) panics.
    for k in 1..=3 {
        let hostile = Hostile::new().panic_on(Call::Drop, k);
        let (promise, resolver) = CELL.promise().unwrap();
        let mut promise = Box::pin(promise);
        for _ in 0..2 {
            let waker = hostile.waker();
            let _ = poll_caught(promise.as_mut(), &waker);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
        }
        resolve_caught(&resolver, drops.tracked());
        let out = finish(promise.as_mut(), &hostile);
        drop(out);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(promise)));
        drop(resolver);
        assert_eq!(drops.get(), k, "k={k}: each value dropped once");
        assert!(CELL.is_free(), "k={k}");
    }
}

/// Finding 2, the racing form: the resolver settles on another thread while
/// the promise polls with wakers whose drop panics. Whichever side takes the
/// registration out of the cell drops it; the value is read once.
#[test]
fn finding_2_panicking_waker_drop_racing_a_settlement_drops_the_value_once() {
    static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    let rounds = if cfg!(miri) { 20 } else { 1_000 };
    let drops = DropCounter::new();
    for round in 0..rounds {
        let hostile = Hostile::new().panic_on(Call::Drop, 1);
        let (promise, resolver) = CELL.promise().unwrap();
        let mut promise = Box::pin(promise);
        let value = drops.tracked();
        let settler = std::thread::spawn(move || {
            let _ = catch_unwind(AssertUnwindSafe(|| resolver.resolve(value).map_err(drop)));
        });
        // One waker: its registered clone is the first waker dropped, so
        // the panic fires exactly where the value is being taken (unless
        // the resolver's wake consumed the clone first).
        let waker = hostile.waker();
        let out = loop {
            let polled = poll_caught(promise.as_mut(), &waker);
            if let Some(Poll::Ready(out)) = polled {
                break out;
            }
            if settler.is_finished() {
                break finish(promise.as_mut(), &Hostile::new());
            }
        };
        settler.join().unwrap();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
        assert!(out.is_ok());
        drop(out);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(promise)));
        assert_eq!(drops.get(), round + 1, "round {round}");
        assert!(CELL.is_free(), "round {round}");
    }
}

/// The invariant behind the fix of finding 1 (`tests/cell_wrap.rs`), without
/// waiting for the counter to wrap: a resolver that finished (settled, or found its promise gone and
/// freed the cell) never touches the cell again, so it cannot settle,
/// abandon or free a newer generation.
#[test]
fn finished_resolvers_never_touch_a_reused_cell() {
    static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    let drops = DropCounter::new();

    // A resolver whose settlement was taken, kept around.
    let (p, settled) = CELL.promise().unwrap();
    settled.resolve(drops.tracked()).map_err(drop).unwrap();
    drop(support::block_on(p));
    // A resolver that found its promise gone and freed the cell.
    let (p, released) = CELL.promise().unwrap();
    drop(p);
    let refused = released.resolve(drops.tracked()).unwrap_err();
    assert_eq!(refused.reason(), Refusal::Closed);
    drop(refused);
    assert!(CELL.is_free());

    // An unstarted lazy promise, then a started pair, at the next generations.
    let lazy = CELL.lazy(|_r| ()).unwrap();
    for finished in [&settled, &released] {
        let refused = finished.resolve(drops.tracked()).unwrap_err();
        assert_ne!(refused.reason(), Refusal::AlreadySettled);
        drop(refused);
    }
    drop(lazy);
    assert!(
        CELL.is_free(),
        "nothing was settled into the unstarted promise"
    );
    let (p, fresh) = CELL.promise().unwrap();
    let refused = settled.resolve(drops.tracked()).unwrap_err();
    assert_eq!(refused.reason(), Refusal::Stale);
    drop(refused);
    drop((settled, released)); // finished: their drops abandon nothing
    assert_eq!(
        p.state(),
        deferral::promise::PromiseState::Pending(deferral::promise::Progress::Unstarted)
    );
    fresh.resolve(drops.tracked()).map_err(drop).unwrap();
    drop(support::block_on(p));
    drop(fresh);
    assert_eq!(drops.get(), 6, "every value dropped exactly once");
    assert!(CELL.is_free());
}
