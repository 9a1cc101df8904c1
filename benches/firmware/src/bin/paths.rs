//! Not measured: more of the crate's `no_std` code paths in one firmware,
//! for `no_fmt.sh` (no `core::fmt` linked from them) — `scope` (the
//! `Send` flavour, with its lock) in the three orders, sync and async
//! cleanup that sees the output, guards, a fixed slab that is full, a
//! cancelled scope; `PromiseCell` with a resolver and lazily;
//! `DeferredPromise` chains; `SignalCell` and `SharedCell` by reference;
//! a `TaskQueue`. Polled to completion by a busy loop (no executor) and
//! run in QEMU like the others: exit status 0 when every check passed.
#![no_std]
#![no_main]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use deferral::promise::SignalCell;
use deferral::scope::{Concurrent, Fifo, ScopeBuilder};
use deferral::{
    DeferredPromise, Exit, PromiseCell, PromiseError, PromiseExt, SharedCell, TaskQueue,
};
use deferral_firmware_bench::{AdcError, check, fail, yield_now};
use futures_core::Stream;

/// Polls `fut` until it is ready (every waker is a no-op: it re-polls).
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

static CELL: PromiseCell<u16, AdcError> = PromiseCell::new();
static SIGNAL: SignalCell<u16, AdcError> = SignalCell::new();
static SHARED: SharedCell<u16, AdcError, 2> = SharedCell::new();

/// Cleanup in every form, in `order`; returns what ran, as digits.
async fn cleanup_forms() -> Result<u32, AdcError> {
    let mut ran = 0u32;
    // `scope`'s flavour (`Send`, locking), 256 bytes: the default 64 of a
    // `no_std` build hold three of these four.
    let out: Result<u32, AdcError> = ScopeBuilder::new()
        .capacity::<256>()
        .run(async |d| {
            d.defer(|| ());
            d.defer_async(async { yield_now().await });
            d.defer_with(|exit: &mut Exit<Result<u32, AdcError>>| {
                if let Some(Ok(v)) = exit.output_mut() {
                    *v += 1;
                }
            });
            let mut g = d.guard_async(5u32, async |v| {
                yield_now().await;
                let _ = v;
            });
            *g += 1;
            yield_now().await;
            Ok(*g)
        })
        .await;
    ran += out? * 10;
    let fifo: u32 = ScopeBuilder::new()
        .capacity::<64>()
        .order(Fifo)
        .run(async |d| {
            d.defer(|| ());
            d.defer_async(async { yield_now().await });
            1
        })
        .await;
    let concurrent: u32 = ScopeBuilder::new()
        .capacity::<96>()
        .order(Concurrent)
        .run(async |d| {
            d.defer_async(async { yield_now().await });
            d.defer_async(async { yield_now().await });
            1
        })
        .await;
    let full: bool = ScopeBuilder::new()
        .capacity::<16>()
        .fixed()
        .run(async |d| {
            // 12 bytes each on this target (a two-word head and a `u32`).
            let (x, y) = (core::hint::black_box(1u32), 2u32);
            let first = d.defer(move || check(x == 1, b"x")).is_ok();
            let second = d.defer(move || check(y == 2, b"y")).is_err();
            first && second
        })
        .await;
    check(full, b"a fixed slab hands the second cleanup back");
    Ok(ran + fifo + concurrent)
}

/// A scope dropped mid-body runs its sync cleanup.
fn cancelled_scope() -> bool {
    let mut off = false;
    {
        let mut scope = pin!(deferral::scope_local(async |d| {
            d.defer(|| off = true);
            core::future::pending::<()>().await;
        }));
        let mut cx = Context::from_waker(Waker::noop());
        check(
            scope.as_mut().poll(&mut cx).is_pending(),
            b"the body is pending",
        );
    }
    off
}

async fn promises() -> u16 {
    // A `static` cell with a resolver.
    let Ok((promise, resolver)) = CELL.promise() else {
        fail(b"the cell is free")
    };
    check(resolver.resolve(7).is_ok(), b"resolved once");
    let a: u16 = promise.await.unwrap_or_default();
    // Lazily: the executor runs at the first poll.
    let Ok(lazy) = CELL.lazy(|resolver| {
        let _ = resolver.reject(AdcError::Overrun);
    }) else {
        fail(b"the cell is free again")
    };
    let b = match lazy.await {
        Err(PromiseError::Rejected(AdcError::Overrun)) => 1,
        _ => 0,
    };
    // A chain, built before anything runs.
    let chain = DeferredPromise::<u16, PromiseError<AdcError>>::new(|res| {
        let _ = res.resolve(20);
    })
    .deferred_then(|v| Ok(v + 1))
    .deferred_catch(|_| Ok::<_, AdcError>(0))
    .deferred_finally(|| ());
    let c = chain.await.unwrap_or(0);
    let d = DeferredPromise::<u16, AdcError>::lazy(|| async { Ok(100) })
        .await
        .unwrap_or(0);
    a + b + c + d
}

async fn cells() -> u16 {
    check(SIGNAL.resolve(1).is_ok(), b"signal kept");
    check(SIGNAL.resolve(2).is_ok(), b"signal replaced");
    let first = SIGNAL.try_take();
    SIGNAL.reset();
    let Ok(by_ref) = SHARED.wait_ref() else {
        fail(b"a waiter slot")
    };
    check(SHARED.resolve(30).is_ok(), b"shared settled");
    let shared = match by_ref.await {
        Ok(v) => *v,
        Err(_) => 0,
    };
    match first {
        Some(Ok(v)) => v + shared,
        _ => 0,
    }
}

async fn queue() -> u32 {
    let queue = pin!(TaskQueue::new().concurrency(2));
    for i in 1..=3u32 {
        let pushed = queue.push(async move {
            yield_now().await;
            Ok::<u32, AdcError>(i)
        });
        check(pushed.is_ok(), b"the queue has room");
    }
    queue.close();
    let mut queue = queue;
    let mut sum = 0;
    while let Some(r) = core::future::poll_fn(|cx| queue.as_mut().poll_next(cx)).await {
        sum += r.unwrap_or(100);
    }
    sum
}

#[entry]
fn main() -> ! {
    check(
        block_on(cleanup_forms()) == Ok(72),
        b"cleanup in every form",
    );
    check(cancelled_scope(), b"a cancelled scope ran its cleanup");
    check(block_on(promises()) == 7 + 1 + 21 + 100, b"promises");
    check(block_on(cells()) == 2 + 30, b"cells");
    check(block_on(queue()) == 6, b"the task queue");
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}
