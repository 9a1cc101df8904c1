//! Issue 25's firmware program written by hand, as an Embassy user would
//! without `deferral`: a `Drop` guard powers the ADC down on every path,
//! embassy-sync's `Signal` carries the reading from the interrupt, and
//! embassy-sync's `OnceLock` is awaited by both consumers. See `src/lib.rs`
//! for the program.
#![no_std]
#![no_main]

use core::future::Future;
use core::ops::{Deref, DerefMut};

use cortex_m_rt::{entry, exception};
use deferral_firmware_bench::{
    Adc, AdcError, Either, Mode, READING, TIMEOUT_TICKS, Timeout, check, consumer_saw, finish,
    future_size, future_size1, powered, run, sampler_done, select, set_mode, spawned, tick,
};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::once_lock::OnceLock;
use embassy_sync::signal::Signal;

/// The reading, from the interrupt to the sampler (latest wins).
static CONVERSION: Signal<CriticalSectionRawMutex, Result<u16, AdcError>> = Signal::new();
/// The first reading, awaited by both consumers.
static FIRST: OnceLock<Result<u16, AdcError>> = OnceLock::new();

#[exception]
fn SysTick() {
    if let Some(reading) = tick() {
        CONVERSION.signal(reading);
    }
}

/// The ADC, powered up for as long as this guard lives.
struct Powered<'a>(&'a mut Adc);

impl<'a> Powered<'a> {
    fn on(adc: &'a mut Adc) -> Self {
        adc.power_on();
        Powered(adc)
    }
}

impl Drop for Powered<'_> {
    fn drop(&mut self) {
        self.0.power_off();
    }
}

impl Deref for Powered<'_> {
    type Target = Adc;
    fn deref(&self) -> &Adc {
        self.0
    }
}

impl DerefMut for Powered<'_> {
    fn deref_mut(&mut self) -> &mut Adc {
        self.0
    }
}

/// Powers the ADC up for one reading; the guard powers it down on every
/// way out: the reading, the error (`?`), and cancellation (the timeout
/// drops this future mid-await).
async fn read(adc: &mut Adc) -> Result<u16, AdcError> {
    let mut adc = Powered::on(adc);
    adc.start();
    let value = CONVERSION.wait().await?;
    Ok(value)
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
    check(FIRST.init(first).is_ok(), b"the first reading is published");

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
    let first = *FIRST.get().await;
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
