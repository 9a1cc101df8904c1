//! Issue 21 finding 11, for the promise types: `&self` accessors
//! (`state()`, `Debug`, `is_terminated()`) called between two polls of a
//! promise whose future borrows itself — a `lazy` async block, a handler's
//! followed future, a boxed promise, `catch_panics`, `WithContext` — must not
//! make a shared reference over that future (Stacked Borrows: its read would
//! pop the future's own `&mut` to its local, and the next poll would use a
//! dead pointer). Run under Miri with Stacked and with Tree Borrows; on
//! c9d10e1 `DeferredPromise::state()` over a started `lazy` promise was
//! reported as UB here.

#![cfg(feature = "std")]

mod support;

use std::pin::pin;
use std::task::Poll;

use deferral::promise::{Follow, Progress, PromiseState};
use deferral::{DeferredPromise, PromiseExt};
use futures::future::FusedFuture;
use support::{WakeCounter, poll_once, yield_now};

/// Keeps `&mut` to a local across pending await points.
async fn self_borrowing(seed: u32) -> u32 {
    let mut local = [seed; 4];
    let r = &mut local;
    yield_now().await;
    r[0] += 1;
    yield_now().await;
    r.iter().sum()
}

const STARTED: PromiseState = PromiseState::Pending(Progress::Started);

/// Polls `p` to completion, calling every accessor between two polls.
fn poll_with_accessors<T, E, F>(mut p: std::pin::Pin<&mut DeferredPromise<T, E, F>>) -> Result<T, E>
where
    F: deferral::promise::PromiseFuture<T, E>,
{
    let w = WakeCounter::new();
    loop {
        match poll_once(p.as_mut(), &w) {
            Poll::Ready(out) => {
                assert!(p.is_terminated());
                return out;
            }
            Poll::Pending => {
                // Between two polls: the future is paused holding a pointer
                // into itself.
                assert_eq!(p.state(), STARTED);
                assert!(!p.is_terminated());
                assert!(format!("{:?}", *p).contains("DeferredPromise"));
            }
        }
    }
}

#[test]
fn lazy_promise_accessors_between_polls() {
    let p = pin!(DeferredPromise::lazy(|| async {
        Ok::<_, ()>(self_borrowing(2).await)
    }));
    assert_eq!(poll_with_accessors(p), Ok(9));
}

#[test]
fn combinator_accessors_while_following_a_self_borrowing_future() {
    let p = pin!(
        DeferredPromise::<u32, ()>::resolved(1)
            .deferred_then(|v| Follow(async move { Ok::<_, ()>(self_borrowing(v).await) }))
            .deferred_catch(|()| Ok::<u32, ()>(0))
            .deferred_then_catch(
                |v| Follow(async move { Ok::<_, ()>(self_borrowing(v).await) }),
                |()| Follow(async { Ok(0) }),
            )
            .deferred_finally(|| {
                Follow(async {
                    let _sum = self_borrowing(0).await;
                    Ok(())
                })
            })
    );
    // 1 -> 5 -> 5 -> 21
    assert_eq!(poll_with_accessors(p), Ok(21));
}

#[test]
fn boxed_and_caught_promise_accessors_between_polls() {
    let p = pin!(
        DeferredPromise::lazy(|| async { Ok::<_, ()>(self_borrowing(1).await) })
            .boxed()
            .deferred_then(|v| Follow(async move { Ok::<_, ()>(self_borrowing(v).await) }))
    );
    assert_eq!(poll_with_accessors(p), Ok(21));
    let p = pin!(
        DeferredPromise::lazy(|| async { Ok::<_, ()>(self_borrowing(3).await) })
            .boxed_local()
            .catch_panics()
    );
    assert_eq!(poll_with_accessors(p).unwrap(), 13);
}

#[test]
fn with_context_accessors_between_polls() {
    use deferral::ContextVar;
    static V: ContextVar<u32> = ContextVar::new();
    let mut f = pin!(V.scope(5, async { self_borrowing(V.get().unwrap()).await }));
    let w = WakeCounter::new();
    let out = loop {
        match poll_once(f.as_mut(), &w) {
            Poll::Ready(out) => break out,
            Poll::Pending => assert!(format!("{:?}", *f).contains("WithContext")),
        }
    };
    assert_eq!(out, 21);
}
