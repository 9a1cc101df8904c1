//! Issue 25's firmware program as a bare skeleton — the floor: the same
//! executor, tasks, interrupt and peripheral pokes, with no cleanup or
//! signalling library. The reading and the first reading travel through
//! plain atomic words that the tasks poll (waking themselves), and the ADC
//! is powered down by explicit calls: after the read, and by the caller
//! when the timeout cancelled it (no guard runs on cancellation). See
//! `src/lib.rs` for the program.
#![no_std]
#![no_main]

use core::future::Future;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::{entry, exception};
use deferral_firmware_bench::{
    Adc, AdcError, Either, Mode, READING, TIMEOUT_TICKS, Timeout, check, consumer_saw, encode,
    finish, future_size, future_size1, powered, run, sampler_done, select, set_mode, spawned, tick,
    yield_now,
};

/// The reading, from the interrupt to the sampler (`0`: none; [`encode`]).
static CONVERSION: AtomicU32 = AtomicU32::new(0);
/// The first reading, read by both consumers (`0`: not yet).
static FIRST: AtomicU32 = AtomicU32::new(0);

fn decode(word: u32) -> Result<u16, AdcError> {
    if word & 0x1_0000 != 0 {
        Ok(word as u16)
    } else {
        Err(AdcError::Overrun)
    }
}

#[exception]
fn SysTick() {
    if let Some(reading) = tick() {
        CONVERSION.store(encode(reading), Ordering::Release);
    }
}

/// Polls `word` until it is set (waking itself: no waker is stored).
async fn poll_word(word: &AtomicU32) -> u32 {
    loop {
        let w = word.load(Ordering::Acquire);
        if w != 0 {
            return w;
        }
        yield_now().await;
    }
}

/// Powers the ADC up for one reading and down after it (no cleanup runs
/// if this future is dropped: the caller powers down then).
async fn read(adc: &mut Adc) -> Result<u16, AdcError> {
    adc.power_on();
    adc.start();
    let reading = decode(poll_word(&CONVERSION).await);
    CONVERSION.store(0, Ordering::Relaxed);
    adc.power_off();
    let value = reading?;
    Ok(value)
}

/// One reading with a timeout.
async fn sample(adc: &mut Adc) -> Result<u16, AdcError> {
    match select(read(adc), Timeout::after(TIMEOUT_TICKS)).await {
        Either::First(reading) => reading,
        Either::Second(()) => {
            adc.power_off();
            Err(AdcError::Timeout)
        }
    }
}

async fn sampler() {
    let mut adc = Adc::take();
    set_mode(Mode::Answer);
    let first = sample(&mut adc).await;
    check(first == Ok(READING), b"a reading from the interrupt");
    check(!powered(), b"powered down after a reading");
    FIRST.store(encode(first), Ordering::Release);

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
    let first = decode(poll_word(&FIRST).await);
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
