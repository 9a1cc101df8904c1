//! Adoption wherever a resolver can settle: the executor of `detached` and
//! of `PromiseCell::lazy` may return `res.adopt(future)` and the promise
//! drives it; `new`'s cannot (a compile error, `tests/ui/new_adopt.rs`).
//! Executors returning anything else than `()`, a settlement's `Result` or
//! an `Adopt` do not compile (`tests/ui/executor_returns_a_value.rs`).
#![cfg_attr(not(feature = "alloc"), allow(unused_imports))]

mod support;

use std::io;
use std::sync::{Arc, Mutex};

use deferral::{DeferredPromise, PromiseCell, PromiseError};
use support::{WakeCounter, block_on, yield_now};

/// The JS `new Promise(res => res(fetch(..)))`, ported literally with a
/// detached resolver: the promise drives the adopted future and resolves to
/// its value (it used to resolve to `Err(Abandoned)` without running it).
#[cfg(feature = "alloc")]
#[test]
fn detached_adopt_resolves_to_the_adopted_value() {
    let ran = Arc::new(Mutex::new(false));
    let r = ran.clone();
    let fetch = async move {
        yield_now().await; // really pending once
        *r.lock().unwrap() = true;
        Ok::<_, io::Error>(200)
    };
    let p = DeferredPromise::<u32, PromiseError<io::Error>>::detached(|res| res.adopt(fetch));
    assert!(!*ran.lock().unwrap(), "lazy: nothing ran yet");
    assert_eq!(block_on(p).unwrap(), 200);
    assert!(*ran.lock().unwrap());
}

#[cfg(feature = "alloc")]
#[test]
fn detached_adopt_of_a_rejection_rejects() {
    let p =
        DeferredPromise::<u32, PromiseError<&str>>::detached(|res| res.adopt(async { Err("404") }));
    assert_eq!(block_on(p), Err(PromiseError::Rejected("404")));
}

#[test]
fn cell_defer_adopt_resolves_to_the_adopted_value() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let p = CELL
        .lazy(|res| {
            res.adopt(async {
                yield_now().await;
                Ok(7)
            })
        })
        .unwrap();
    assert_eq!(block_on(p), Ok(7));
    assert!(CELL.is_free());
}

/// A promise that drives an adopted future and is dropped before it
/// finishes: the adopted future is dropped, its resolver abandons, the
/// cell is free.
#[test]
fn dropping_a_promise_mid_adoption_frees_everything() {
    static CELL: PromiseCell<u32, ()> = PromiseCell::new();
    let drops = support::DropCounter::new();
    let guard = drops.tracked();
    let mut p = Box::pin(
        CELL.lazy(move |res| {
            res.adopt(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(1)
            })
        })
        .unwrap(),
    );
    assert!(support::poll_once(p.as_mut(), &WakeCounter::new()).is_pending());
    drop(p);
    assert_eq!(drops.get(), 1);
    assert!(CELL.is_free());
}

/// Executors that settle directly keep working with every return shape.
#[cfg(feature = "alloc")]
#[test]
fn executor_return_shapes() {
    let unit = DeferredPromise::<u8, PromiseError<()>>::detached(|res| {
        res.resolve(1).unwrap();
    });
    let result = DeferredPromise::<u8, PromiseError<()>>::detached(|res| res.resolve(2));
    let rejected = DeferredPromise::<u8, PromiseError<()>>::detached(|res| res.reject(()));
    let settled = DeferredPromise::<u8, PromiseError<()>>::new(|res| res.settle(Ok(4)));
    assert_eq!(block_on(unit), Ok(1));
    assert_eq!(block_on(result), Ok(2));
    assert_eq!(block_on(rejected), Err(PromiseError::Rejected(())));
    assert_eq!(block_on(settled), Ok(4));
}
