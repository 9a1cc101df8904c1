//! Issue 26 item 2: chains settle (and drop) iteratively. 100,000
//! `deferred_then` / `deferred_catch` / `deferred_finally` links, built with
//! and without an explicit `.boxed()`, on a 2 MiB thread in a debug build.
//! Before, each link cost about 1.4 KB of stack in a debug build and 1,500
//! links overflowed such a thread. Also: handlers run in order exactly once,
//! every link's captures are dropped exactly once (settled, dropped
//! unsettled, a panicking handler, a panicking destructor), and a pending
//! source in the middle of a deep chain is polled once per wake-up.
#![cfg(feature = "alloc")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::Poll;

use deferral::{DeferredPromise, PromiseCell, PromiseError};
use support::{WakeCounter, block_on, poll_once};

/// Links per chain: 100,000 natively, fewer under Miri (the driver is the
/// same code at any length).
const LINKS: usize = if cfg!(miri) { 300 } else { 100_000 };

/// Runs `f` on a thread with a 2 MiB stack (the default of spawned threads
/// on Linux, set explicitly).
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deferred_then_links_settle_without_recursion_unboxed_loop() {
    let out = on_small_stack(|| {
        let mut p: DeferredPromise<u64, ()> = DeferredPromise::resolved(0).boxed();
        for _ in 0..LINKS {
            p = p.deferred_then(|v| Ok(v + 1));
        }
        block_on(p)
    });
    assert_eq!(out, Ok(LINKS as u64));
}

#[test]
fn deferred_then_links_settle_without_recursion_boxed_each_time() {
    let out = on_small_stack(|| {
        let mut p: DeferredPromise<u64, ()> = DeferredPromise::resolved(0).boxed();
        for _ in 0..LINKS {
            p = p.deferred_then(|v| Ok(v + 1)).boxed();
        }
        block_on(p)
    });
    assert_eq!(out, Ok(LINKS as u64));
}

#[test]
fn catch_and_finally_links_settle_without_recursion() {
    let out = on_small_stack(|| {
        let finally_runs = Arc::new(AtomicUsize::new(0));
        let mut p: DeferredPromise<u64, u64> = DeferredPromise::rejected(0).boxed();
        for i in 0..LINKS {
            p = match i % 3 {
                // Recover, counting the rejections seen.
                0 => p.deferred_catch(|e| Err::<u64, u64>(e + 1)),
                1 => {
                    let runs = finally_runs.clone();
                    p.deferred_finally(move || {
                        runs.fetch_add(1, SeqCst);
                    })
                }
                _ => p.deferred_then(|v| Ok(v + 1_000_000)).boxed(),
            };
        }
        (block_on(p), finally_runs.load(SeqCst))
    });
    let catches = LINKS.div_ceil(3) as u64;
    assert_eq!(out.0, Err(catches), "every catch ran once, no then did");
    assert_eq!(out.1, LINKS / 3 + usize::from(LINKS % 3 == 2));
}

#[test]
fn a_deep_unsettled_chain_drops_without_recursion_each_capture_once() {
    let drops = on_small_stack(|| {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let mut p: DeferredPromise<u64, ()> = DeferredPromise::lazy(std::future::pending).boxed();
        for _ in 0..LINKS {
            let c = Counted(drops.clone());
            p = p.deferred_then(move |v| {
                let _c = &c;
                Ok(v)
            });
        }
        let w = WakeCounter::new();
        let mut p = Box::pin(p);
        assert!(poll_once(p.as_mut(), &w).is_pending());
        drop(p);
        drops.load(SeqCst)
    });
    assert_eq!(drops, LINKS, "every link's capture dropped exactly once");
}

#[test]
fn a_pending_source_under_a_deep_chain_settles_it_once_woken() {
    static CELL: PromiseCell<u64, ()> = PromiseCell::new();
    let (ran, out) = on_small_stack(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let (source, resolver) = CELL.promise().unwrap();
        let mut p: DeferredPromise<u64, PromiseError<()>> = source.boxed();
        for _ in 0..LINKS {
            let ran = ran.clone();
            p = p.deferred_then(move |v| {
                ran.fetch_add(1, SeqCst);
                Ok(v + 1)
            });
        }
        let w = WakeCounter::new();
        let mut p = Box::pin(p);
        assert!(poll_once(p.as_mut(), &w).is_pending());
        assert!(poll_once(p.as_mut(), &w).is_pending());
        assert_eq!(
            ran.load(SeqCst),
            0,
            "no handler runs before the source settles"
        );
        resolver.resolve(7).unwrap();
        assert_eq!(w.wakes(), 1);
        let out = poll_once(p.as_mut(), &w);
        (ran.load(SeqCst), out)
    });
    assert_eq!(ran, LINKS, "each handler ran exactly once");
    assert_eq!(out, Poll::Ready(Ok(7 + LINKS as u64)));
    assert!(CELL.is_free());
}

#[test]
fn a_panicking_handler_deep_in_a_chain_drops_everything_once() {
    let drops = on_small_stack(|| {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let links = LINKS.min(5_000);
        let mut p: DeferredPromise<u64, ()> = DeferredPromise::resolved(0).boxed();
        for i in 0..links {
            let c = Counted(drops.clone());
            p = p.deferred_then(move |v| {
                let _c = &c;
                if i == links / 2 {
                    panic!("handler {i}");
                }
                Ok(v + 1)
            });
        }
        let mut p = Box::pin(p);
        let w = WakeCounter::new();
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(p.as_mut(), &w)));
        assert!(caught.is_err());
        // Finished: polling again panics with the usual message.
        let again =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(p.as_mut(), &w)));
        assert_eq!(
            again.unwrap_err().downcast_ref::<&str>(),
            Some(&"`DeferredPromise` polled after completion")
        );
        drop(p);
        (drops.load(SeqCst), links)
    });
    assert_eq!(
        drops.0, drops.1,
        "every link's capture dropped exactly once"
    );
}

/// The cost is linear in the chain's length: doubling the length doubles
/// the work (measured as handler calls and, in `benches/`, instructions).
#[test]
fn handler_calls_are_linear_in_the_length() {
    for links in [10usize, 1_000, 10_000] {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut p: DeferredPromise<u64, ()> = DeferredPromise::resolved(0).boxed();
        for _ in 0..links {
            let calls = calls.clone();
            p = p.deferred_then(move |v| {
                calls.fetch_add(1, SeqCst);
                Ok(v + 1)
            });
        }
        assert_eq!(block_on(p), Ok(links as u64));
        assert_eq!(calls.load(SeqCst), links);
    }
}

/// A settled source whose destructor panics, in an unboxed link: the link
/// drops the source in place while moving its handler out in one step. The
/// panic reaches the poller, the handler (never run) is dropped exactly
/// once, the source's value once, and the finished link panics with the
/// usual message if polled again.
#[test]
fn a_source_whose_destructor_panics_drops_the_handler_once() {
    use deferral::PromiseExt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Context;

    #[derive(Debug)]
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    /// Ready with a `Counted` at once; panics when dropped.
    struct Bomb(Option<Counted>);
    impl Future for Bomb {
        type Output = Result<Counted, ()>;
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Ready(Ok(self.0.take().unwrap()))
        }
    }
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("source destructor");
        }
    }

    let (values, handlers, runs) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let capture = Counted(handlers.clone());
    let ran = runs.clone();
    let p = Bomb(Some(Counted(values.clone()))).deferred_then(move |v: Counted| {
        let _c = &capture;
        ran.fetch_add(1, SeqCst);
        Ok::<_, ()>(v)
    });
    let mut p = Box::pin(p);
    let w = WakeCounter::new();
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(p.as_mut(), &w)));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<&str>(),
        Some(&"source destructor")
    );
    assert_eq!(runs.load(SeqCst), 0, "the handler never ran");
    assert_eq!(handlers.load(SeqCst), 1, "the handler was dropped once");
    assert_eq!(
        values.load(SeqCst),
        1,
        "the source's value was dropped once"
    );
    let again =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(p.as_mut(), &w)));
    assert_eq!(
        again.unwrap_err().downcast_ref::<&str>(),
        Some(&"`DeferredPromise` polled after completion")
    );
    drop(p);
    assert_eq!((handlers.load(SeqCst), values.load(SeqCst)), (1, 1));
}
