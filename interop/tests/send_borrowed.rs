//! Issue 26 item 1: a promise holding borrowed value or error types is
//! `Send` across `.await` whenever its parts are — every constructor, every
//! combinator, the cell promises and the `SharedCell`/`SignalCell` waits,
//! spawned on tokio's multi-thread runtime. (Before, holding
//! `DeferredPromise::<u32, &'static str>::rejected("x")` across an `.await`
//! failed with "implementation of `Source` is not general enough".) The
//! `!Send` cases are compile-fail tests in `tests/ui/promise_not_send_*.rs`.
#![cfg(feature = "std")]
// Handlers are closures on purpose: what users write, and the types whose
// `Send`-ness (with borrowed captures and outputs) is under test.
#![allow(clippy::redundant_closure)]

use std::future::Future;

use deferral::promise::{SignalCell, SignalWait};
use deferral::{DeferredPromise, PromiseCell, PromiseError, PromiseExt, SharedCell, SharedPromise};

/// The shape from the issue: the future must be `Send`.
fn send<F: Future + Send>(f: F) -> F {
    f
}

async fn yield_now() {
    tokio::task::yield_now().await;
}

/// Holds `promise` across an `.await`, then awaits it, on a spawned task.
async fn across_await<T, F>(promise: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(async move {
        let promise = promise;
        yield_now().await;
        promise.await
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_example_compiles_and_runs() {
    let out = tokio::spawn(send(async {
        let p = DeferredPromise::<u32, &'static str>::rejected("x");
        yield_now().await;
        p.await
    }))
    .await
    .unwrap();
    assert_eq!(out, Err("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_constructor_with_borrowed_types_is_send_across_await() {
    // `new`, `resolved`, `rejected`, `lazy`, `detached`.
    let p = DeferredPromise::<&'static str, PromiseError<&'static str>>::new(|r| r.resolve("new"));
    assert_eq!(across_await(p).await, Ok("new"));
    let p = DeferredPromise::<&'static str, &'static str>::resolved("resolved");
    assert_eq!(across_await(p).await, Ok("resolved"));
    let p = DeferredPromise::<&'static str, &'static str>::rejected("rejected");
    assert_eq!(across_await(p).await, Err("rejected"));
    let p = DeferredPromise::lazy(|| async {
        yield_now().await;
        Ok::<&'static str, &'static str>("lazy")
    });
    assert_eq!(across_await(p).await, Ok("lazy"));
    let p = DeferredPromise::<&'static str, PromiseError<&'static str>>::detached(|r| {
        std::thread::spawn(move || r.reject("detached"));
    });
    assert_eq!(
        across_await(p).await,
        Err(PromiseError::Rejected("detached"))
    );
    let p = DeferredPromise::<&'static str, PromiseError<&'static str>>::detached(|r| {
        r.adopt(async { Ok("adopted") })
    });
    assert_eq!(across_await(p).await, Ok("adopted"));

    // `PromiseCell::promise` and `PromiseCell::lazy`, `catch_panics`, boxed.
    static CELL: PromiseCell<&'static str, &'static str> = PromiseCell::new();
    let (p, r) = CELL.promise().unwrap();
    std::thread::spawn(move || r.resolve("cell"));
    assert_eq!(across_await(p).await, Ok("cell"));
    let p = CELL.lazy(|r| r.adopt(async { Err("cell lazy") })).unwrap();
    assert_eq!(
        across_await(p).await,
        Err(PromiseError::Rejected("cell lazy"))
    );
    let p = DeferredPromise::<&'static str, &'static str>::resolved("caught").catch_panics();
    assert_eq!(across_await(p).await.unwrap(), "caught");
    let p: DeferredPromise<&'static str, &'static str> =
        DeferredPromise::lazy(|| async { Ok("boxed") }).boxed();
    assert_eq!(across_await(p).await, Ok("boxed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_combinator_with_borrowed_types_is_send_across_await() {
    let source = || DeferredPromise::<&'static str, &'static str>::resolved("v");
    let p = source().deferred_then(|v| Ok::<_, &'static str>(v.len()));
    assert_eq!(across_await(p).await, Ok(1));
    let p = DeferredPromise::<&'static str, &'static str>::rejected("e")
        .deferred_catch(|e| Ok::<&'static str, &'static str>(e));
    assert_eq!(across_await(p).await, Ok("e"));
    let p = source().deferred_then_catch(|v| Ok::<_, &'static str>(v), |e| Ok(e));
    assert_eq!(across_await(p).await, Ok("v"));
    let p = source().deferred_finally(|| ());
    assert_eq!(across_await(p).await, Ok("v"));
    // A handler returning a promise, and a whole chain.
    let p = source()
        .deferred_then(|v| DeferredPromise::lazy(move || async move { Ok::<_, &'static str>(v) }))
        .deferred_catch(|e: &'static str| Ok::<_, &'static str>(e))
        .deferred_finally(|| ());
    assert_eq!(across_await(p).await, Ok("v"));
    // The boxed forms (inherent: their links are boxed too).
    let boxed: DeferredPromise<&'static str, &'static str> = source().boxed();
    let p = boxed
        .deferred_then(|v| Ok::<_, &'static str>(v))
        .deferred_catch(|e| Ok::<_, &'static str>(e))
        .deferred_then_catch(|v| Ok::<_, &'static str>(v), |e| Ok(e))
        .deferred_finally(|| ());
    assert_eq!(across_await(p).await, Ok("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_and_signal_waits_with_borrowed_types_are_send_across_await() {
    static SHARED: SharedCell<&'static str, &'static str, 2> = SharedCell::new();
    let w = SHARED.wait().unwrap();
    let r = SHARED.wait_ref().unwrap();
    std::thread::spawn(|| SHARED.resolve("shared"));
    assert_eq!(across_await(w).await, Ok("shared"));
    assert_eq!(across_await(r).await, Ok(&"shared"));

    static SIGNAL: SignalCell<&'static str, &'static str> = SignalCell::new();
    let w: SignalWait<'static, _, _> = SIGNAL.wait().unwrap();
    std::thread::spawn(|| SIGNAL.reject("signal"));
    assert_eq!(across_await(w).await, Err("signal"));

    let shared = SharedPromise::new(DeferredPromise::<&'static str, &'static str>::resolved(
        "sp",
    ));
    let clone = shared.clone();
    assert_eq!(across_await(clone).await, Ok("sp"));
    assert_eq!(across_await(shared).await, Ok("sp"));
}

/// Non-`'static` borrows: the futures are `Send` (checked at compile time)
/// and run to completion on this thread.
#[test]
fn promises_over_local_borrows_are_send() {
    let owned = String::from("local");
    let value: &str = &owned;
    let out = futures::executor::block_on(send(async {
        let a = DeferredPromise::<&str, &str>::resolved(value);
        let b = DeferredPromise::<&str, PromiseError<&str>>::new(|r| r.resolve(value));
        let c = DeferredPromise::lazy(|| async { Ok::<&str, &str>(value) })
            .deferred_then(|v| Ok::<_, &str>(v.len()));
        let d = DeferredPromise::<&str, &str>::rejected(value)
            .deferred_catch(|e| Ok::<&str, ()>(e))
            .deferred_finally(|| ())
            .boxed();
        futures::future::ready(()).await;
        (a.await, b.await, c.await, d.await)
    }));
    assert_eq!(out, (Ok("local"), Ok("local"), Ok(5), Ok("local")));
}
