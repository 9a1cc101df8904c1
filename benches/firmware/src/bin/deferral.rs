//! Issue 25's firmware program written with `deferral`: a `scope_local`
//! with a guard powers the ADC down on every path, a `static SignalCell`
//! carries the reading from the interrupt, and a `static SharedCell` is
//! awaited by both consumers. See `src/lib.rs` for the program.
#![no_std]
#![no_main]

use core::future::Future;

use cortex_m_rt::{entry, exception};
use deferral::SharedCell;
use deferral::promise::SignalCell;
use deferral::scope::ScopeBuilder;
use deferral_firmware_bench::{
    Adc, AdcError, Either, Mode, READING, TIMEOUT_TICKS, Timeout, check, consumer_saw, finish,
    future_size, future_size1, powered, run, sampler_done, select, set_mode, spawned, tick,
};

/// The reading, from the interrupt to the sampler (latest wins).
static CONVERSION: SignalCell<u16, AdcError> = SignalCell::new();
/// The first reading, awaited by both consumers.
static FIRST: SharedCell<u16, AdcError, 2> = SharedCell::new();

#[exception]
fn SysTick() {
    if let Some(reading) = tick() {
        check(CONVERSION.settle(reading).is_ok(), b"the reading is kept");
    }
}

/// Powers the ADC up for one reading; the scope powers it down on every
/// way out: the reading, the error (`?`), and cancellation (the timeout
/// drops this future mid-await).
async fn read(adc: &mut Adc) -> Result<u16, AdcError> {
    // 16 bytes: the guard's entry (a two-word head and `&mut Adc`); a
    // smaller slab is a compile error.
    ScopeBuilder::new()
        .capacity::<16>()
        .run_local(async |d| {
            let mut adc = d.guard(adc, Adc::power_off);
            adc.power_on();
            adc.start();
            let Ok(reading) = CONVERSION.wait() else {
                return Err(AdcError::Busy);
            };
            let value = reading.await?;
            Ok(value)
        })
        .await
}

/// One reading with a timeout.
async fn sample(adc: &mut Adc) -> Result<u16, AdcError> {
    match select(read(adc), Timeout::after(TIMEOUT_TICKS)).await {
        Either::First(reading) => reading,
        Either::Second(()) => Err(AdcError::Timeout),
    }
}

async fn sampler() {
    let mut adc = Adc::take();
    set_mode(Mode::Answer);
    let first = sample(&mut adc).await;
    check(first == Ok(READING), b"a reading from the interrupt");
    check(!powered(), b"powered down after a reading");
    check(
        FIRST.settle(first).is_ok(),
        b"the first reading is published",
    );

    set_mode(Mode::Fail);
    check(
        sample(&mut adc).await == Err(AdcError::Overrun),
        b"the conversion's error",
    );
    check(!powered(), b"powered down after an error");

    set_mode(Mode::Silent);
    check(
        sample(&mut adc).await == Err(AdcError::Timeout),
        b"the timeout",
    );
    check(
        !powered(),
        b"powered down when the timeout cancelled the read",
    );
    sampler_done();
    finish(future_size(&sampler), future_size1(&consumer)).await
}

async fn consumer(id: usize) {
    let first = match FIRST.wait() {
        Ok(waiting) => waiting.await,
        Err(_) => Err(AdcError::Busy),
    };
    consumer_saw(id, first);
}

#[embassy_executor::task]
fn sampler_task() -> impl Future<Output = ()> {
    sampler()
}

#[embassy_executor::task(pool_size = 2)]
fn consumer_task(id: usize) -> impl Future<Output = ()> {
    consumer(id)
}

#[entry]
fn main() -> ! {
    run(|spawner| {
        spawner.spawn(spawned(consumer_task(0)));
        spawner.spawn(spawned(consumer_task(1)));
        spawner.spawn(spawned(sampler_task()));
    })
}
