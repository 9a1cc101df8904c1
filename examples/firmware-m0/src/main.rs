//! `deferral` on a Cortex-M0: a micro:bit (nRF51822, `thumbv6m-none-eabi`,
//! no compare-and-swap) under QEMU, the Embassy executor, no heap (no global
//! allocator is linked), atomics through `portable-atomic`'s critical
//! sections.
//!
//! - A task borrows a peripheral (`&mut Adc`) into a `scope_local` whose
//!   cleanup powers it off — on success, on error, and when a timeout
//!   cancels the scope (the scope future is dropped mid-body).
//! - The ADC's "conversion complete" is a `static PromiseCell` settled from
//!   the SysTick exception handler.
//!
//! The firmware exits QEMU through semihosting: status 0 when every check
//! passed, 1 on the first failed check or on any panic.
//!
//! ```console
//! $ cargo run --release   # in examples/firmware-m0/, needs qemu-system-arm
//! ```
#![no_std]
#![no_main]

use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};

use cortex_m::peripheral::SCB;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use cortex_m_semihosting::{debug, hprintln};
use critical_section::Mutex;
use deferral::scope::ScopeBuilder;
use deferral::{PromiseCell, PromiseError, Resolver};
use embassy_executor::Spawner;
use panic_semihosting as _; // a panic prints its message and exits with status 1

/// Fails the run: prints `what` and exits QEMU with status 1.
fn check(ok: bool, what: &str) {
    if !ok {
        hprintln!("FAILED: {}", what);
        debug::exit(debug::EXIT_FAILURE);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdcError {
    /// The conversion was abandoned or failed.
    Conversion,
    /// The body's own error (to check cleanup on the error path).
    Overrun,
}

// ----------------------------------------------------------------- SysTick

/// SysTick interrupts so far.
static TICKS: Mutex<Cell<u32>> = Mutex::new(Cell::new(0));
/// The conversion's resolver, parked for the interrupt handler.
static CONVERSION: Mutex<RefCell<Option<Resolver<'static, u16, AdcError>>>> =
    Mutex::new(RefCell::new(None));
/// Who waits for the next tick (the timeout).
static TICK_WAKER: Mutex<RefCell<Option<Waker>>> = Mutex::new(RefCell::new(None));

fn start_systick() {
    // SAFETY: SysTick is configured here once and then only read by its own
    // handler.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(50_000);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    SCB::clear_pendst();
    let (resolver, waker) = critical_section::with(|cs| {
        let ticks = TICKS.borrow(cs);
        ticks.set(ticks.get() + 1);
        (CONVERSION.borrow(cs).take(), TICK_WAKER.borrow(cs).take())
    });
    // Settled from the interrupt: lock-free, wakes the waiting task.
    if let Some(resolver) = resolver {
        check(resolver.resolve(512).is_ok(), "the conversion is accepted");
    }
    if let Some(waker) = waker {
        waker.wake();
    }
}

fn ticks() -> u32 {
    critical_section::with(|cs| TICKS.borrow(cs).get())
}

/// Resolves after `n` more SysTick interrupts.
struct Timeout {
    until: u32,
}

impl Timeout {
    fn ticks(n: u32) -> Self {
        Timeout { until: ticks() + n }
    }
}

impl Future for Timeout {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        critical_section::with(|cs| {
            if TICKS.borrow(cs).get() >= self.until {
                return Poll::Ready(());
            }
            *TICK_WAKER.borrow(cs).borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// Which of two futures finished first; the other one is dropped.
#[derive(Debug, PartialEq, Eq)]
enum Either<A, B> {
    First(A),
    Second(B),
}

async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    core::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::First(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Second(v));
        }
        Poll::Pending
    })
    .await
}

// ---------------------------------------------------------------- the ADC

/// The one conversion promise the interrupt settles: a `static`, no heap.
static DONE: PromiseCell<u16, AdcError> = PromiseCell::new();

/// A pretend peripheral that must be powered off whatever happens.
struct Adc {
    powered: bool,
    conversions: u8,
}

impl Adc {
    fn power_on(&mut self) {
        self.powered = true;
    }

    fn power_off(&mut self) {
        self.powered = false;
    }

    /// Starts a conversion; the SysTick handler completes it.
    async fn sample(&mut self) -> Result<u16, AdcError> {
        check(self.powered, "sampled while powered");
        let (done, resolver) = DONE.promise().map_err(|_| AdcError::Conversion)?;
        critical_section::with(|cs| CONVERSION.borrow(cs).replace(Some(resolver)));
        let value = done.await.map_err(|e| match e {
            PromiseError::Rejected(e) => e,
            PromiseError::Abandoned => AdcError::Conversion,
        })?;
        self.conversions += 1;
        Ok(value)
    }
}

/// Powers the borrowed ADC on for one sample; the scope powers it off
/// again on every way out, and counts its cleanups in a borrowed local.
async fn sample_once(adc: &mut Adc, cleanups: &mut u8, fail: bool) -> Result<u16, AdcError> {
    // 32 bytes: room for the two registrations below (12 bytes each on
    // this target: a two-word head and a reference; too small a slab is a
    // compile error for a cleanup that can never fit, a panic otherwise).
    ScopeBuilder::new()
        .capacity::<32>()
        .run_local(async |d| {
            // The peripheral stays borrowed (`&mut Adc`): no move, no `Rc`.
            let mut adc = d.guard(adc, Adc::power_off);
            d.defer(|| *cleanups += 1);
            adc.power_on();
            let value = adc.sample().await?;
            if fail {
                return Err(AdcError::Overrun);
            }
            Ok(value)
        })
        .await
}

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    hprintln!("deferral firmware (Cortex-M0): start");
    start_systick();
    let mut adc = Adc {
        powered: false,
        conversions: 0,
    };
    let mut cleanups = 0;

    // 1. Success: sampled (settled from SysTick), then powered off.
    let value = sample_once(&mut adc, &mut cleanups, false).await;
    check(value == Ok(512), "a sample settled from the interrupt");
    check(!adc.powered, "powered off after success");
    check(cleanups == 1, "the borrowing cleanup ran");
    check(DONE.is_free(), "the promise cell is free again");

    // 2. The body's error: still powered off.
    let value = sample_once(&mut adc, &mut cleanups, true).await;
    check(
        value == Err(AdcError::Overrun),
        "the body's error is the output",
    );
    check(!adc.powered, "powered off after an error");
    check(cleanups == 2, "cleanup ran on the error path");

    // 3. A timeout cancels the scope mid-body: dropping it runs the sync
    //    cleanup, and the borrowed peripheral is powered off.
    let raced = select(
        ScopeBuilder::new().capacity::<32>().run_local(async |d| {
            let mut adc = d.guard(&mut adc, Adc::power_off);
            adc.power_on();
            core::future::pending::<()>().await; // never finishes
        }),
        Timeout::ticks(2),
    )
    .await;
    check(raced == Either::Second(()), "the timeout won");
    check(
        !adc.powered,
        "powered off when a timeout cancelled the scope",
    );
    check(adc.conversions == 2, "two conversions");

    hprintln!("deferral firmware (Cortex-M0): all checks passed");
    debug::exit(debug::EXIT_SUCCESS);
}
