//! The flash a scope costs: `main` runs a body that defers two sync
//! cleanups and one async cleanup (`--features scope`), the same work
//! written by hand at the end of the body (`--features hand`), or just the
//! body (neither: the baseline). `measure.sh` builds all three for
//! `thumbv7m-none-eabi` and `thumbv6m-none-eabi` and prints the `.text`
//! differences.
#![no_std]
#![no_main]

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use cortex_m_rt::entry;
use panic_halt as _;

/// Polls `fut` to completion with a no-op waker.
fn block<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// One await point.
async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[inline(never)]
fn led_off(led: &mut u32) {
    *black_box(led) = 0;
}

#[inline(never)]
fn close(port: &mut u32) {
    *black_box(port) += 1;
}

async fn flush(port: &mut u32) {
    yield_now().await;
    *black_box(port) += 2;
}

#[entry]
fn main() -> ! {
    let mut led = black_box(1u32);
    let mut port = black_box(0u32);
    let mut buf = black_box(0u32);
    let out: u32;
    #[cfg(feature = "scope")]
    {
        // Two sync cleanups and one async cleanup, all borrowing locals;
        // a 64-byte slab (enough for these three).
        out = block(
            deferral::scope::ScopeBuilder::new()
                .capacity::<64>()
                .run_local(async |d| {
                    d.defer_async(flush(&mut buf));
                    d.defer(|| led_off(&mut led));
                    d.defer(|| close(&mut port));
                    yield_now().await;
                    black_box(7)
                }),
        );
    }
    #[cfg(feature = "hand")]
    {
        out = block(async {
            yield_now().await;
            let out = black_box(7);
            close(&mut port);
            led_off(&mut led);
            flush(&mut buf).await;
            out
        });
    }
    #[cfg(not(any(feature = "scope", feature = "hand")))]
    {
        out = block(async {
            yield_now().await;
            black_box(7)
        });
    }
    black_box((out, led, port, buf));
    loop {
        cortex_m::asm::nop();
    }
}
