//! `DeferredPromise`, `Resolver`, `PromiseCell`, `PromiseExt`: behaviour
//! pinned by the issue (laziness, settlement rules, storage modes, wakers).

mod support;

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll};
use std::thread;

use deferral::promise::{CellBusy, Progress, PromiseState, Refusal};
use deferral::{DeferredPromise, PromiseCell, PromiseError, PromiseExt, Resolver};
use futures_core::future::FusedFuture;
use support::{DropCounter, DropLog, WakeCounter, block_on, poll_once};

const UNSTARTED: PromiseState = PromiseState::Pending(Progress::Unstarted);
const STARTED: PromiseState = PromiseState::Pending(Progress::Started);

#[test]
fn sizes() {
    use std::mem::size_of;
    let plain = size_of::<DeferredPromise<u32, (), deferral::promise::Ready<u32, ()>>>();
    let executor = DeferredPromise::<u32, PromiseError<()>>::new(|r| r.resolve(1));
    let executor_size = std::mem::size_of_val(&executor);
    let cell = size_of::<
        DeferredPromise<u32, PromiseError<()>, deferral::promise::CellPromise<'static, u32, ()>>,
    >();
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let deferred = CELL.lazy(|r| r.resolve(1)).unwrap();
    let cell_defer = std::mem::size_of_val(&deferred);
    println!("size_of DeferredPromise<u32, ()> (resolved/rejected): {plain}");
    println!(
        "size_of DeferredPromise::<u32, PromiseError<()>>::new(capture-less executor): {executor_size}"
    );
    println!("size_of DeferredPromise<u32, PromiseError<()>, CellPromise<u32, ()>>: {cell}");
    println!("size_of PromiseCell::<u32, ()>::defer(capture-less executor): {cell_defer}");
    println!(
        "size_of PromiseCell<u32, ()>: {}",
        size_of::<PromiseCell<u32, ()>>()
    );
    println!(
        "size_of Resolver<u32, ()>: {}",
        size_of::<Resolver<'static, u32, ()>>()
    );
    // Promises that run code keep the creation context: one pointer, `std` only.
    let context = if cfg!(feature = "std") {
        size_of::<usize>()
    } else {
        0
    };
    // Each promise is its future plus the one `progress` byte that
    // `state()` reads (kept outside the future, so that `&self` never
    // covers a self-borrowing future), rounded up to the alignment.
    let word = size_of::<usize>();
    assert!(
        plain <= 16
            && executor_size <= 8 + context + word
            && cell <= 24
            && cell_defer <= 24 + context + word
    );
    drop((executor, deferred));
}

#[test]
fn never_polled_promises_never_run_anything() {
    let runs = Arc::new(AtomicUsize::new(0));
    let drops = DropCounter::new();
    {
        let (r, t) = (runs.clone(), drops.tracked());
        let _p = DeferredPromise::<u8, PromiseError<()>>::new(move |res| {
            let _t = t;
            r.fetch_add(1, SeqCst);
            res.resolve(1)
        });
        let r = runs.clone();
        let _l = DeferredPromise::lazy(move || {
            r.fetch_add(1, SeqCst);
            async { Ok::<u8, ()>(1) }
        });
        static CELL: PromiseCell<u8, ()> = PromiseCell::new();
        let r = runs.clone();
        let _c = CELL.lazy(move |res| {
            r.fetch_add(1, SeqCst);
            res.resolve(1)
        });
        let r = runs.clone();
        let r2 = runs.clone();
        let _chain = DeferredPromise::<u8, ()>::resolved(1)
            .deferred_then(move |v| {
                r.fetch_add(1, SeqCst);
                Ok(v)
            })
            .deferred_finally(move || {
                r2.fetch_add(1, SeqCst);
            });
        assert!(!CELL.is_free(), "defer claims the cell at creation");
    }
    assert_eq!(runs.load(SeqCst), 0);
    assert_eq!(drops.get(), 1, "the executor's captures are dropped, once");
}

#[test]
fn executor_runs_inside_the_first_poll() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let mut p = pin!(DeferredPromise::<u8, PromiseError<()>>::new(move |res| {
        r.fetch_add(1, SeqCst);
        res.resolve(5)
    }));
    assert_eq!(p.state(), UNSTARTED);
    assert_eq!(runs.load(SeqCst), 0);
    assert_eq!(
        poll_once(p.as_mut(), &WakeCounter::new()),
        Poll::Ready(Ok(5))
    );
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(p.state(), PromiseState::Fulfilled);
    assert!(p.is_terminated());
}

#[test]
#[should_panic(expected = "`DeferredPromise` polled after completion")]
fn poll_after_completion_panics() {
    let mut p = pin!(DeferredPromise::<u8, PromiseError<()>>::new(
        |r| r.resolve(1)
    ));
    let counter = WakeCounter::new();
    assert!(poll_once(p.as_mut(), &counter).is_ready());
    let _ = poll_once(p.as_mut(), &counter);
}

#[test]
#[should_panic(expected = "`DeferredPromise` polled after completion")]
fn poll_after_completion_panics_in_cell_mode() {
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    r.resolve(1).unwrap();
    let mut p = pin!(p);
    let counter = WakeCounter::new();
    assert!(poll_once(p.as_mut(), &counter).is_ready());
    let _ = poll_once(p.as_mut(), &counter);
}

#[test]
fn abandoned_resolver_is_a_typed_outcome_in_every_mode() {
    let plain = DeferredPromise::<u8, PromiseError<()>>::new(|r| drop(r));
    assert_eq!(block_on(plain), Err(PromiseError::Abandoned));

    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let mut p = pin!(p);
    let counter = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &counter), Poll::Pending);
    drop(r);
    assert_eq!(counter.wakes(), 1, "abandonment wakes the promise");
    assert_eq!(p.state(), PromiseState::Rejected);
    assert_eq!(
        poll_once(p.as_mut(), &counter),
        Poll::Ready(Err(PromiseError::Abandoned))
    );
    assert!(CELL.is_free());

    #[cfg(feature = "alloc")]
    {
        let detached = DeferredPromise::<u8, PromiseError<()>>::detached(|r| {
            thread::spawn(move || drop(r));
        });
        assert_eq!(block_on(detached), Err(PromiseError::Abandoned));
    }
}

#[test]
fn double_settle_is_refused_with_the_value_back() {
    let p = DeferredPromise::<String, PromiseError<String>>::new(|r| {
        r.resolve("one".into()).unwrap();
        let e = r.resolve("two".into()).unwrap_err();
        assert_eq!(
            (e.reason(), e.into_value()),
            (Refusal::AlreadySettled, Ok("two".to_string()))
        );
        let e = r.reject("three".into()).unwrap_err();
        assert_eq!(
            (e.reason(), e.into_value()),
            (Refusal::AlreadySettled, Err("three".to_string()))
        );
    });
    assert_eq!(block_on(p), Ok("one".to_string()));

    static CELL: PromiseCell<u8, u8> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    r.reject(1).unwrap();
    assert_eq!(r.resolve(2).unwrap_err().into_value(), Ok(2));
    assert_eq!(r.reject(3).unwrap_err().reason(), Refusal::AlreadySettled);
    assert_eq!(block_on(p), Err(PromiseError::Rejected(1)));

    #[cfg(feature = "alloc")]
    {
        let p = DeferredPromise::<u8, PromiseError<u8>>::detached(|r| {
            r.resolve(1).unwrap();
            assert_eq!(r.resolve(2).unwrap_err().reason(), Refusal::AlreadySettled);
        });
        assert_eq!(block_on(p), Ok(1));
    }
}

#[test]
fn resolve_before_the_first_poll_is_returned_by_it() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    assert_eq!(p.state(), UNSTARTED);
    r.resolve(11).unwrap();
    assert_eq!(p.state(), PromiseState::Fulfilled);
    let mut p = pin!(p);
    let counter = WakeCounter::new();
    assert_eq!(poll_once(p.as_mut(), &counter), Poll::Ready(Ok(11)));
    assert_eq!(counter.clones(), 0, "no waker stored when already settled");
    assert!(CELL.is_free());
}

#[test]
fn resolve_from_another_thread_while_polling() {
    static CELL: PromiseCell<u64, ()> = PromiseCell::new();
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for i in 0..rounds {
        let (p, r) = CELL.promise().unwrap();
        let t = thread::spawn(move || r.resolve(i).unwrap());
        assert_eq!(block_on(p), Ok(i));
        t.join().unwrap();
        assert!(CELL.is_free());
    }

    #[cfg(feature = "alloc")]
    for i in 0..rounds {
        let (tx, rx) = mpsc::channel::<Resolver<'static, u64, ()>>();
        let p = DeferredPromise::<u64, PromiseError<()>>::detached(move |r| tx.send(r).unwrap());
        let t = thread::spawn(move || rx.recv().unwrap().resolve(i).unwrap());
        assert_eq!(block_on(p), Ok(i));
        t.join().unwrap();
    }
}

#[test]
fn only_the_latest_waker_is_woken() {
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let mut p = pin!(p);
    let (first, second) = (WakeCounter::new(), WakeCounter::new());
    assert_eq!(p.state(), UNSTARTED);
    assert_eq!(poll_once(p.as_mut(), &first), Poll::Pending);
    assert_eq!(p.state(), STARTED);
    assert_eq!(poll_once(p.as_mut(), &second), Poll::Pending);
    assert_eq!(first.live(), 0, "the replaced waker was dropped");
    // Re-polling with the same task's waker does not clone again.
    let waker = second.waker();
    let clones = second.clones();
    assert!(
        p.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    assert_eq!(second.clones(), clones, "will_wake kept the stored waker");
    r.resolve(1).unwrap();
    assert_eq!((first.wakes(), second.wakes()), (0, 1));
    assert_eq!(poll_once(p.as_mut(), &second), Poll::Ready(Ok(1)));
    drop(waker);
    assert_eq!(second.live(), 0, "no waker kept after completion");
}

#[test]
fn stale_resolver_is_refused_after_reuse() {
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, old) = CELL.promise().unwrap();
    drop(p); // closes generation 1; `old` still holds it
    assert_eq!(
        CELL.promise().err(),
        Some(CellBusy),
        "busy until the resolver is done"
    );
    assert_eq!(old.resolve(1).unwrap_err().reason(), Refusal::Closed);
    drop(old); // now the cell is free
    let (p, new) = CELL.promise().unwrap();

    // A resolver of a finished generation, kept around:
    let (tx, rx) = mpsc::channel();
    let first = CELL.lazy(move |r| tx.send(r).unwrap());
    assert_eq!(first.err(), Some(CellBusy));
    new.resolve(2).unwrap();
    assert_eq!(block_on(p), Ok(2));
    drop(rx);
    // `new` settled and its promise finished: the cell moved on.
    let (p2, fresh) = CELL.promise().unwrap();
    let refused = new.resolve(3).unwrap_err();
    assert_eq!(
        (refused.reason(), refused.into_value()),
        (Refusal::Stale, Ok(3))
    );
    drop(new); // a stale drop does not abandon the newer promise
    assert_eq!(p2.state(), UNSTARTED);
    fresh.resolve(4).unwrap();
    assert_eq!(block_on(p2), Ok(4));
}

#[test]
fn stale_resolver_of_a_settled_generation_cannot_abandon_the_next() {
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let (tx, rx) = mpsc::channel();
    // Keep a resolver that never settles, from a generation that ends by
    // the promise being dropped after the resolver... it cannot end while
    // the resolver lives, so this resolver is the one that frees it:
    drop(p);
    tx.send(r).unwrap();
    let r = rx.recv().unwrap();
    drop(r);
    let (p, r) = CELL.promise().unwrap();
    r.resolve(9).unwrap();
    assert_eq!(block_on(p), Ok(9));
}

#[test]
fn cell_busy_is_a_typed_error() {
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let pair = CELL.promise().unwrap();
    assert_eq!(CELL.promise().err(), Some(CellBusy));
    assert_eq!(CELL.lazy(|r| r.resolve(1)).err(), Some(CellBusy));
    assert_eq!(
        CellBusy.to_string(),
        "promise cell busy: its previous promise or resolver is still live"
    );
    drop(pair);
    assert!(CELL.is_free());
    // A `defer` promise dropped unpolled frees the cell: no resolver exists.
    drop(CELL.lazy(|r| r.resolve(1)).unwrap());
    assert!(CELL.is_free());
}

#[test]
fn settled_values_are_dropped_exactly_once() {
    static CELL: PromiseCell<support::drops::Tracked, ()> = PromiseCell::new();
    let drops = DropCounter::new();
    // Settled, never taken: the promise's drop drops it.
    let (p, r) = CELL.promise().unwrap();
    r.resolve(drops.tracked()).unwrap();
    drop(p);
    assert_eq!(drops.get(), 1);
    drop(r);
    assert!(CELL.is_free());
    // Settled after the promise is gone: handed back, not stored.
    let (p, r) = CELL.promise().unwrap();
    drop(p);
    let refused = r.resolve(drops.tracked()).unwrap_err();
    assert_eq!((refused.reason(), drops.get()), (Refusal::Closed, 1));
    drop(refused);
    assert_eq!(drops.get(), 2);
    drop(r);
    // Taken by the promise: dropped by whoever receives it.
    let (p, r) = CELL.promise().unwrap();
    r.resolve(drops.tracked()).unwrap();
    let value = block_on(p).unwrap();
    assert_eq!(drops.get(), 2);
    drop(value);
    assert_eq!(drops.get(), 3);
    assert!(CELL.is_free());
}

/// The seed: `Promise.try_defer(res => res(123)).then(doSomething)
/// .catch(handleTheError).finally(doOneLastThing)` — the whole chain exists
/// before the executor runs.
#[test]
fn seed_chain_is_built_before_anything_runs() {
    let log = DropLog::new();
    let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
    let chain = DeferredPromise::<u32, PromiseError<&str>>::new(move |res| {
        l1.push("executor");
        res.resolve(123)
    })
    .deferred_then(move |v| {
        l2.push(format!("then {v}"));
        Err(PromiseError::Rejected("doSomething failed"))
    })
    .deferred_catch(move |e: PromiseError<&str>| {
        l3.push(format!("catch {}", e.rejection().unwrap()));
        Ok::<u32, ()>(0)
    })
    .deferred_finally(move || l4.push("finally"));
    log.push("chain built");
    assert_eq!(chain.state(), UNSTARTED);
    assert_eq!(block_on(chain), Ok(0));
    assert_eq!(
        log.events(),
        [
            "chain built",
            "executor",
            "then 123",
            "catch doSomething failed",
            "finally"
        ]
    );
}

/// The seed's unhandled-rejection case: with a deferred promise the rejection
/// happens only after the catch handler is attached.
#[test]
fn seed_rejection_happens_after_the_handler_is_attached() {
    let log = DropLog::new();
    let l = log.clone();
    let deferred = DeferredPromise::<(), PromiseError<&str>>::new(move |_res| {
        l.push("rejected");
        _res.reject("boom")
    });
    log.push("no rejection yet");
    let l = log.clone();
    let handled = deferred.deferred_catch(move |e| {
        l.push(format!("handled {}", e.rejection().unwrap()));
        Ok::<(), ()>(())
    });
    log.push("handler attached");
    assert_eq!(block_on(handled), Ok(()));
    assert_eq!(
        log.events(),
        [
            "no rejection yet",
            "handler attached",
            "rejected",
            "handled boom"
        ]
    );
}

/// The seed's task-queue loop: a queue of deferred fetches, awaited one
/// after another; each starts only when the loop reaches it.
#[test]
fn seed_task_queue_loop() {
    let log = DropLog::new();
    let fetch = |log: DropLog, n: u32| {
        DeferredPromise::lazy(move || {
            log.push(format!("start {n}"));
            async move { Ok::<_, ()>(n * 100) }
        })
    };
    let mut tasks: VecDeque<_> = (1..=4).map(|n| fetch(log.clone(), n)).collect();
    assert!(log.events().is_empty(), "nothing started while queueing");
    let mut results = Vec::new();
    while let Some(task) = tasks.pop_front() {
        log.push(format!("await {}", results.len() + 1));
        results.push(block_on(task).unwrap());
    }
    assert_eq!(results, [100, 200, 300, 400]);
    assert_eq!(
        log.events(),
        [
            "await 1", "start 1", "await 2", "start 2", "await 3", "start 3", "await 4", "start 4"
        ]
    );
}

#[test]
fn handlers_may_return_values_or_futures() {
    let p = DeferredPromise::<u8, ()>::resolved(1)
        .deferred_then(|v| DeferredPromise::<u8, ()>::resolved(v + 1))
        .deferred_then(|v| deferral::promise::Follow(async move { Ok(v * 10) }))
        .deferred_then_catch(|v| Ok::<u32, ()>(u32::from(v)), |()| Ok(0));
    assert_eq!(block_on(p), Ok(20));

    let failing_finally =
        DeferredPromise::<u8, &str>::resolved(1).deferred_finally(|| Err("cleanup"));
    assert_eq!(block_on(failing_finally), Err("cleanup"));
}

#[test]
fn handler_runs_only_when_its_promise_is_polled() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (source, resolver) = CELL.promise().unwrap();
    let mut then = pin!(source.deferred_then(move |v| {
        r.fetch_add(1, SeqCst);
        Ok(v)
    }));
    resolver.resolve(3).unwrap(); // the source settles...
    assert_eq!(runs.load(SeqCst), 0); // ...but nobody follows the `then` yet
    assert_eq!(
        poll_once(then.as_mut(), &WakeCounter::new()),
        Poll::Ready(Ok(3))
    );
    assert_eq!(runs.load(SeqCst), 1);
}

#[test]
fn states_are_reported_through_a_life() {
    assert_eq!(
        DeferredPromise::<u8, ()>::resolved(1).state(),
        PromiseState::Fulfilled
    );
    assert_eq!(
        DeferredPromise::<u8, ()>::rejected(()).state(),
        PromiseState::Rejected
    );
    let mut p = pin!(DeferredPromise::<u8, PromiseError<()>>::new(
        |r| r.reject(())
    ));
    assert_eq!(p.state(), UNSTARTED);
    assert!(!p.is_terminated());
    assert_eq!(
        poll_once(p.as_mut(), &WakeCounter::new()),
        Poll::Ready(Err(PromiseError::Rejected(())))
    );
    assert_eq!(p.state(), PromiseState::Rejected);
    assert!(p.is_terminated());
    assert_eq!(PromiseState::Fulfilled.to_string(), "fulfilled");
}

#[test]
fn adopt_settles_with_the_adopted_future() {
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    let adopt = r.adopt(async { Ok(8) });
    assert_eq!(p.state(), UNSTARTED);
    let (adopted, value) = block_on(futures::future::join(adopt, p));
    assert!(adopted.is_ok());
    assert_eq!(value, Ok(8));
    // Dropping an unfinished adoption abandons the promise.
    let (p, r) = CELL.promise().unwrap();
    drop(r.adopt(std::future::pending()));
    assert_eq!(block_on(p), Err(PromiseError::Abandoned));
}

#[test]
fn error_messages() {
    assert_eq!(
        PromiseError::Rejected("x").to_string(),
        "promise rejected: x"
    );
    assert_eq!(
        PromiseError::<&str>::Abandoned.to_string(),
        "promise abandoned: its resolver was dropped"
    );
    let p = DeferredPromise::<u8, PromiseError<()>>::new(|r| {
        r.resolve(1).unwrap();
        assert_eq!(
            r.resolve(2).unwrap_err().to_string(),
            "settlement refused: the promise is already settled"
        );
    });
    drop(p);
}

#[test]
fn auto_traits() {
    fn send<T: Send>(_: &T) {}
    fn sync<T: Sync>() {}
    let p = DeferredPromise::<u8, PromiseError<()>>::new(|r| r.resolve(1));
    send(&p);
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    send(&p);
    send(&r);
    sync::<PromiseCell<u8, ()>>();
    #[cfg(feature = "alloc")]
    send(&DeferredPromise::<u8, PromiseError<()>>::detached(drop));
    let chain = p.deferred_then(Ok).deferred_finally(|| ());
    send(&chain);
    drop((chain, r));
}

#[cfg(feature = "alloc")]
mod shared {
    use super::*;
    use deferral::SharedPromise;

    #[test]
    fn started_by_the_first_polled_clone_and_every_clone_gets_the_settlement() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let a = SharedPromise::new(DeferredPromise::<String, PromiseError<String>>::new(
            move |res| {
                r.fetch_add(1, SeqCst);
                res.reject("no".into())
            },
        ));
        let b = a.clone();
        let c = b.clone();
        assert_eq!(runs.load(SeqCst), 0);
        let expected = Err(PromiseError::Rejected("no".to_string()));
        assert_eq!(block_on(c), expected);
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(block_on(a), expected);
        assert_eq!(block_on(b), expected);
        assert_eq!(runs.load(SeqCst), 1, "the source ran once");
    }

    #[test]
    fn latest_wakers_of_all_waiting_clones_are_woken() {
        static CELL: PromiseCell<u8, ()> = PromiseCell::new();
        let (p, r) = CELL.promise().unwrap();
        let a = SharedPromise::new(p);
        let mut a = pin!(a);
        let mut b = pin!(a.clone());
        let (a_old, a_new, b_w) = (WakeCounter::new(), WakeCounter::new(), WakeCounter::new());
        assert_eq!(poll_once(a.as_mut(), &a_old), Poll::Pending);
        assert_eq!(poll_once(b.as_mut(), &b_w), Poll::Pending);
        assert_eq!(poll_once(a.as_mut(), &a_new), Poll::Pending);
        assert_eq!(a_old.live(), 0, "the replaced waker was dropped");
        r.resolve(4).unwrap();
        assert_eq!((a_old.wakes(), a_new.wakes(), b_w.wakes()), (0, 1, 1));
        assert_eq!(poll_once(b.as_mut(), &b_w), Poll::Ready(Ok(4)));
        assert_eq!(poll_once(a.as_mut(), &a_new), Poll::Ready(Ok(4)));
        assert!(a.is_terminated() && b.is_terminated());
    }

    #[test]
    fn dropped_clones_unregister_their_waker() {
        static CELL: PromiseCell<u8, ()> = PromiseCell::new();
        let (p, r) = CELL.promise().unwrap();
        let a = SharedPromise::new(p);
        let mut b = Box::pin(a.clone());
        let w = WakeCounter::new();
        assert_eq!(poll_once(b.as_mut(), &w), Poll::Pending);
        assert_eq!(w.live(), 1, "the waiter list holds a clone");
        drop(b);
        assert_eq!(w.live(), 0, "dropping the clone dropped its waker");
        r.resolve(1).unwrap();
        assert_eq!(w.wakes(), 0, "a dropped clone is not woken");
        assert_eq!(block_on(a), Ok(1));
    }

    #[test]
    fn a_woken_clone_dropped_before_repolling_passes_the_wake_on() {
        static CELL: PromiseCell<u8, ()> = PromiseCell::new();
        let (p, r) = CELL.promise().unwrap();
        let mut a = Box::pin(SharedPromise::new(p));
        let mut b = Box::pin(a.clone());
        let (wa, wb) = (WakeCounter::new(), WakeCounter::new());
        assert_eq!(poll_once(a.as_mut(), &wa), Poll::Pending); // a drives the source
        assert_eq!(poll_once(b.as_mut(), &wb), Poll::Pending);
        // The source's waker fires without the source being ready (here: by
        // hand), waking both; `a` goes away without re-polling.
        drop(r); // abandons: wakes the source's waker, which wakes a and b
        assert_eq!((wa.wakes(), wb.wakes()), (1, 1));
        drop(a);
        assert_eq!(
            poll_once(b.as_mut(), &wb),
            Poll::Ready(Err(PromiseError::Abandoned))
        );
    }

    #[test]
    #[should_panic(expected = "`SharedPromise` polled after completion")]
    fn shared_poll_after_completion_panics() {
        let mut a = Box::pin(SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1)));
        let w = WakeCounter::new();
        assert!(poll_once(a.as_mut(), &w).is_ready());
        let _ = poll_once(a.as_mut(), &w);
    }

    #[test]
    fn clones_on_many_threads() {
        let threads = if cfg!(miri) { 2 } else { 8 };
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let shared = SharedPromise::new(DeferredPromise::<u32, PromiseError<()>>::detached(
            move |res| {
                r.fetch_add(1, SeqCst);
                thread::spawn(move || res.resolve(77).unwrap());
            },
        ));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let clone = shared.clone();
                thread::spawn(move || block_on(clone))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Ok(77));
        }
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(block_on(shared), Ok(77));
    }

    #[test]
    fn shared_promise_is_send_and_sync_when_its_parts_are() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        let s = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1));
        send_sync(&s);
    }

    /// A value that counts its clones and its drops.
    #[derive(Debug)]
    struct Counted {
        clones: Arc<AtomicUsize>,
        drops: Arc<AtomicUsize>,
    }

    impl Counted {
        fn new() -> (Self, Arc<AtomicUsize>, Arc<AtomicUsize>) {
            let (clones, drops) = (Arc::default(), Arc::default());
            let c = Counted {
                clones: Arc::clone(&clones),
                drops: Arc::clone(&drops),
            };
            (c, clones, drops)
        }
    }

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, SeqCst);
            Counted {
                clones: self.clones.clone(),
                drops: self.drops.clone(),
            }
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.fetch_add(1, SeqCst);
        }
    }

    type Source = DeferredPromise<Counted, (), deferral::promise::Ready<Counted, ()>>;

    fn counted() -> (SharedPromise<Source>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (value, clones, drops) = Counted::new();
        let shared = SharedPromise::new(DeferredPromise::<Counted, ()>::resolved(value));
        (shared, clones, drops)
    }

    #[test]
    fn peek_sees_the_output_once_settled_without_starting_anything() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let a = SharedPromise::new(DeferredPromise::<u8, PromiseError<()>>::new(move |res| {
            r.fetch_add(1, SeqCst);
            res.resolve(9)
        }));
        let b = a.clone();
        assert_eq!(b.peek(), None);
        assert_eq!(runs.load(SeqCst), 0, "peek does not start the source");
        let mut a = Box::pin(a);
        assert_eq!(
            poll_once(a.as_mut(), &WakeCounter::new()),
            Poll::Ready(Ok(9))
        );
        assert_eq!(b.peek(), Some(&Ok(9)));
        // As futures' `Shared`: a handle that returned the output let go of
        // the state and has nothing to peek at.
        assert_eq!(a.peek(), None, "a done handle holds nothing");
        // `b` is the last strong handle: it moves the output out, and then
        // has nothing to peek at either.
        let mut b = Box::pin(b);
        assert_eq!(
            poll_once(b.as_mut(), &WakeCounter::new()),
            Poll::Ready(Ok(9))
        );
        assert_eq!(b.peek(), None);
    }

    #[test]
    #[should_panic(expected = "`SharedPromise`'s source panicked")]
    fn peek_panics_once_the_source_panicked() {
        let a = SharedPromise::new(DeferredPromise::<u8, ()>::lazy(|| async {
            panic!("source panics")
        }));
        let b = a.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| block_on(a)));
        assert!(result.is_err());
        let _ = b.peek();
    }

    #[test]
    fn ptr_eq_tells_clones_from_other_promises() {
        let a = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1));
        let other = SharedPromise::new(DeferredPromise::<u8, ()>::resolved(1));
        let b = a.clone();
        assert!(a.ptr_eq(&b) && b.ptr_eq(&a) && a.ptr_eq(&a));
        assert!(!a.ptr_eq(&other));
        assert!(a.downgrade().upgrade().unwrap().ptr_eq(&a));
        // A handle that moved the output out belongs to no promise.
        drop(a);
        let mut b = Box::pin(b);
        assert!(poll_once(b.as_mut(), &WakeCounter::new()).is_ready());
        assert!(!b.ptr_eq(&b.clone()));
        drop(other);
    }

    #[test]
    fn weak_handles_upgrade_only_while_a_strong_one_lives() {
        let (a, clones, drops) = counted();
        let weak = a.downgrade();
        let weak2 = weak.clone();
        let b = weak.upgrade().expect("a is alive");
        assert!(b.ptr_eq(&a));
        drop((a, b));
        assert!(weak.upgrade().is_none() && weak2.upgrade().is_none());
        assert_eq!(drops.load(SeqCst), 1, "a weak handle keeps nothing alive");
        assert_eq!(clones.load(SeqCst), 0);
        assert!(format!("{weak:?}").contains("WeakSharedPromise"));
    }

    #[test]
    fn the_last_strong_handle_moves_the_output_out() {
        // One handle: never cloned.
        let (a, clones, drops) = counted();
        let v = block_on(a).unwrap();
        assert_eq!(clones.load(SeqCst), 0);
        drop(v);
        assert_eq!(drops.load(SeqCst), 1);

        // Two: the first clones, the last moves.
        let (a, clones, drops) = counted();
        let b = a.clone();
        let va = block_on(a).unwrap();
        assert_eq!(clones.load(SeqCst), 1);
        let vb = block_on(b).unwrap();
        assert_eq!(clones.load(SeqCst), 1, "the last handle moved it out");
        drop((va, vb));
        assert_eq!(drops.load(SeqCst), 2);

        // A weak handle does not count; once the output is moved out, it
        // cannot upgrade.
        let (a, clones, drops) = counted();
        let weak = a.downgrade();
        let v = block_on(a).unwrap();
        assert_eq!(clones.load(SeqCst), 0);
        assert!(weak.upgrade().is_none());
        drop(v);
        assert_eq!(drops.load(SeqCst), 1);

        // A handle that is done but alive no longer holds the promise (as
        // futures' `Shared`): the other one, the last still waiting, moves
        // the output out (futures-rs `future_shared.rs`
        // `dont_do_unnecessary_clones_on_output`, with the done handle kept).
        let (a, clones, drops) = counted();
        let mut a = Box::pin(a);
        let b = a.clone();
        let va = match poll_once(a.as_mut(), &WakeCounter::new()) {
            Poll::Ready(v) => v.unwrap(),
            Poll::Pending => unreachable!("resolved"),
        };
        assert!(a.peek().is_none());
        assert!(!a.ptr_eq(&b));
        let vb = block_on(b).unwrap();
        assert_eq!(
            clones.load(SeqCst),
            1,
            "the last waiting handle moved it out"
        );
        drop((a, va, vb));
        assert_eq!(drops.load(SeqCst), 2);
    }

    #[test]
    fn waiting_clones_race_to_be_last_and_every_value_is_dropped_once() {
        let threads = if cfg!(miri) { 3 } else { 16 };
        let (value, clones, drops) = Counted::new();
        let (tx, rx) = futures::channel::oneshot::channel::<Counted>();
        let shared = SharedPromise::new(DeferredPromise::<Counted, ()>::lazy(move || async move {
            Ok(rx.await.expect("sent"))
        }));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let clone = shared.clone();
                thread::spawn(move || block_on(clone).unwrap())
            })
            .collect();
        drop(shared);
        tx.send(value).unwrap();
        let values: Vec<Counted> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // Each handle clones at most once; the one that finds itself the
        // last strong handle moves the original out instead. When every
        // handle becomes ready while the others still hold the state, all
        // of them clone (none is last), and the original is dropped with
        // the state: `threads` clones plus the original.
        let made = 1 + clones.load(SeqCst);
        assert!(
            clones.load(SeqCst) <= threads,
            "at most one clone per handle"
        );
        drop(values);
        assert_eq!(drops.load(SeqCst), made, "every value dropped exactly once");
    }

    #[test]
    fn a_weak_upgrade_racing_the_last_handle_gets_the_value_or_nothing() {
        let rounds = if cfg!(miri) { 2 } else { 50 };
        for _ in 0..rounds {
            let (last, clones, drops) = counted();
            let weak = last.downgrade();
            let upgrader = thread::spawn(move || weak.upgrade().map(|b| block_on(b).unwrap()));
            let v = block_on(last).unwrap();
            let upgraded = upgrader.join().unwrap();
            // Nobody upgraded in time: moved, never cloned. Upgraded: at
            // least one of the two cloned (both, if each saw the other's
            // handle still alive).
            let cloned = clones.load(SeqCst);
            match upgraded {
                None => assert_eq!(cloned, 0),
                Some(_) => assert!(cloned == 1 || cloned == 2, "{cloned} clones"),
            }
            drop((v, upgraded));
            assert_eq!(drops.load(SeqCst), 1 + clones.load(SeqCst));
        }
    }
}

/// An "interrupt" that fires in the middle of the promise's waker
/// registration (from inside `Waker::clone`) and settles the promise from
/// there: nothing spins or deadlocks, and the wake-up is not lost (the
/// poll's re-check sees the value). The clone runs outside the slot's
/// critical section, so the wake finds no waker to wake; a wake landing
/// *inside* it (delivered by the registrant) is covered by the loom models
/// of `AtomicWaker`.
#[test]
fn resolve_from_an_interrupt_preempting_registration() {
    use std::sync::Mutex;
    use std::task::{RawWaker, RawWakerVTable, Waker};

    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    static ISR_RESOLVER: Mutex<Option<Resolver<'static, u32, ()>>> = Mutex::new(None);
    static WAKES: AtomicUsize = AtomicUsize::new(0);
    static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

    fn interrupt() {
        if let Some(r) = ISR_RESOLVER.lock().unwrap().take() {
            INTERRUPTS.fetch_add(1, SeqCst);
            r.resolve(42).unwrap();
        }
    }
    unsafe fn clone(_: *const ()) -> RawWaker {
        interrupt(); // the "interrupt" pre-empts `register` right here
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    unsafe fn wake(_: *const ()) {
        WAKES.fetch_add(1, SeqCst);
    }
    unsafe fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, noop);

    let (p, r) = CELL.promise().unwrap();
    *ISR_RESOLVER.lock().unwrap() = Some(r);
    // SAFETY: the vtable functions ignore the (null) data pointer.
    let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
    let mut p = pin!(p);
    let poll = p.as_mut().poll(&mut Context::from_waker(&waker));
    assert_eq!(INTERRUPTS.load(SeqCst), 1);
    assert_eq!(poll, Poll::Ready(Ok(42)));
    assert!(WAKES.load(SeqCst) <= 1, "at most one (spurious) wake-up");
    assert!(CELL.is_free());
}
