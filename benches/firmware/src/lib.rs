//! What the three variants of issue 25's firmware program share, so that
//! they differ only in how they clean up and signal: the pretend ADC and
//! its SysTick "conversion complete" interrupt, a tick timeout, a `select`,
//! the executor's entry, the checks, and a panic handler.
//!
//! The program, the same in every variant:
//!
//! 1. The sampler task powers the ADC up, starts a conversion and awaits
//!    the reading with a timeout; the ADC must be powered down on every
//!    path: a reading (return), a failed conversion (error, returned early
//!    with `?`), and no answer (the timeout wins and drops the reading
//!    future mid-await: cancellation).
//! 2. The SysTick handler completes a started conversion on a powered ADC
//!    and signals the reading to the sampler through a `static` cell.
//! 3. Two consumer tasks await one `static` result (the first reading,
//!    published by the sampler).
//!
//! Nothing here formats (no `core::fmt`): messages are byte strings written
//! through semihosting, numbers are turned into digits by hand, and the
//! panic handler ignores its `PanicInfo`. So whatever formatting code a
//! variant links comes from that variant's own code and libraries.
#![no_std]

use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};

use cortex_m::peripheral::SCB;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_semihosting::{debug, hio};
use critical_section::Mutex;
use embassy_executor::{Executor, Spawner};

// ---------------------------------------------------------------- the ADC

/// What a conversion can fail with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AdcError {
    /// The conversion failed (the interrupt says so).
    Overrun,
    /// No reading in time.
    Timeout,
    /// The signal already has a waiter (cannot happen here).
    Busy,
}

/// The reading the interrupt delivers.
pub const READING: u16 = 512;

/// Ticks the sampler waits for a reading (one tick delivers it).
pub const TIMEOUT_TICKS: u32 = 4;

/// The pretend peripheral's registers: power, and "start a conversion".
static ADC_POWER: AtomicU32 = AtomicU32::new(0);
static ADC_START: AtomicU32 = AtomicU32::new(0);

/// What the interrupt does with the next conversion.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Mode {
    /// Completes it with [`READING`].
    Answer = 0,
    /// Completes it with [`AdcError::Overrun`].
    Fail = 1,
    /// Never completes it (the sampler's timeout fires).
    Silent = 2,
}

static MODE: AtomicU32 = AtomicU32::new(Mode::Answer as u32);

/// Sets what the interrupt does with the next conversion.
pub fn set_mode(mode: Mode) {
    MODE.store(mode as u32, Ordering::Relaxed);
}

/// The ADC, owned by the sampler task (one handle: [`Adc::take`]).
pub struct Adc(());

impl Adc {
    /// The one handle.
    pub fn take() -> Adc {
        Adc(())
    }

    /// Powers the ADC up.
    #[inline(never)]
    pub fn power_on(&mut self) {
        ADC_POWER.store(1, Ordering::Relaxed);
    }

    /// Powers the ADC down: must happen on every path.
    #[inline(never)]
    pub fn power_off(&mut self) {
        ADC_POWER.store(0, Ordering::Relaxed);
        ADC_START.store(0, Ordering::Relaxed);
    }

    /// Starts a conversion: the next SysTick completes it.
    #[inline(never)]
    pub fn start(&mut self) {
        check(powered(), b"a conversion starts on a powered ADC");
        ADC_START.store(1, Ordering::Relaxed);
    }
}

/// Whether the ADC is powered.
pub fn powered() -> bool {
    ADC_POWER.load(Ordering::Relaxed) != 0
}

// ---------------------------------------------------------------- SysTick

/// SysTick interrupts so far (written by the handler only).
static TICKS: AtomicU32 = AtomicU32::new(0);
/// The timeout's deadline (`u32::MAX`: none) and its waker.
static DEADLINE: AtomicU32 = AtomicU32::new(u32::MAX);
static TIMER_WAKER: Mutex<RefCell<Option<Waker>>> = Mutex::new(RefCell::new(None));

/// Starts SysTick, periodic.
pub fn start_systick() {
    // SAFETY: SysTick is configured here once, before the executor runs;
    // its handler only clears the pending bit.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(50_000);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// The shared half of each variant's SysTick handler: counts the tick,
/// wakes the timeout if its deadline passed, and completes a started
/// conversion on a powered ADC: the reading (or error) to signal, if any.
#[inline(always)]
pub fn tick() -> Option<Result<u16, AdcError>> {
    SCB::clear_pendst();
    let now = TICKS.load(Ordering::Relaxed) + 1;
    TICKS.store(now, Ordering::Relaxed);
    if now >= DEADLINE.load(Ordering::Relaxed) {
        let waker = critical_section::with(|cs| TIMER_WAKER.borrow(cs).take());
        if let Some(waker) = waker {
            waker.wake();
        }
    }
    if ADC_START.load(Ordering::Relaxed) == 0 || !powered() {
        return None;
    }
    ADC_START.store(0, Ordering::Relaxed);
    match MODE.load(Ordering::Relaxed) {
        0 => Some(Ok(READING)),
        1 => Some(Err(AdcError::Overrun)),
        _ => None,
    }
}

/// Resolves `ticks` SysTick interrupts from now; woken by the handler (one
/// timeout at a time: the sampler's).
pub struct Timeout {
    until: u32,
}

impl Timeout {
    /// A timeout `ticks` ticks from now.
    pub fn after(ticks: u32) -> Self {
        let until = TICKS.load(Ordering::Relaxed) + ticks;
        DEADLINE.store(until, Ordering::Relaxed);
        Timeout { until }
    }
}

impl Future for Timeout {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        critical_section::with(|cs| {
            if TICKS.load(Ordering::Relaxed) >= self.until {
                return Poll::Ready(());
            }
            let mut waker = TIMER_WAKER.borrow(cs).borrow_mut();
            match &mut *waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        DEADLINE.store(u32::MAX, Ordering::Relaxed);
        drop(critical_section::with(|cs| TIMER_WAKER.borrow(cs).take()));
    }
}

/// Which of two futures finished first.
pub enum Either<A, B> {
    /// The first.
    First(A),
    /// The second.
    Second(B),
}

/// Polls `a`, then `b`; the first ready wins and the other is dropped (a
/// struct, as embassy-futures' `select`: an `async fn` would keep both the
/// argument and its pinned copy of `a` in its state).
pub fn select<A: Future, B: Future>(a: A, b: B) -> Select<A, B> {
    Select { a, b }
}

/// The future of [`select`].
pub struct Select<A, B> {
    a: A,
    b: B,
}

impl<A: Future, B: Future> Future for Select<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `a` and `b` are never moved out of the pinned `Select`
        // (structural pinning; `Select` has no `Drop` and is not `Unpin`
        // unless both are).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        if let Poll::Ready(v) = unsafe { Pin::new_unchecked(&mut this.a) }.poll(cx) {
            return Poll::Ready(Either::First(v));
        }
        // SAFETY: as above.
        if let Poll::Ready(v) = unsafe { Pin::new_unchecked(&mut this.b) }.poll(cx) {
            return Poll::Ready(Either::Second(v));
        }
        Poll::Pending
    }
}

/// Returns `Pending` once, waking itself: lets the other tasks run.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

// ------------------------------------------------------- tasks and checks

/// What each consumer saw (`0`: nothing yet; see [`encode`]).
static SEEN: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
static SAMPLER_DONE: AtomicU32 = AtomicU32::new(0);

/// A settlement as one non-zero word.
pub fn encode(r: Result<u16, AdcError>) -> u32 {
    match r {
        Ok(v) => 0x1_0000 | v as u32,
        Err(e) => 0x2_0000 | e as u32,
    }
}

/// Consumer `id` saw `r`.
pub fn consumer_saw(id: usize, r: Result<u16, AdcError>) {
    SEEN[id & 1].store(encode(r), Ordering::Release);
}

/// The sampler finished its three paths.
pub fn sampler_done() {
    SAMPLER_DONE.store(1, Ordering::Release);
}

/// Runs the executor; `init` spawns the tasks (`#[embassy_executor::main]`
/// would `unwrap()` its spawn, which links `Debug` for `SpawnError`).
pub fn run(init: impl FnOnce(Spawner)) -> ! {
    start_systick();
    let mut executor = Executor::new();
    let executor_ptr = &raw mut executor;
    // SAFETY: `run` never returns, so `executor` is never moved or dropped:
    // it lives as long as the program (what the `main` macro does too).
    let executor: &'static mut Executor = unsafe { &mut *executor_ptr };
    executor.run(init)
}

/// Fails the run unless a spawn succeeded.
pub fn spawned<T, E>(token: Result<T, E>) -> T {
    match token {
        Ok(token) => token,
        Err(_) => fail(b"a task pool has room"),
    }
}

/// Waits for the sampler and both consumers, checks what the consumers
/// saw, prints the task future sizes and exits QEMU with status 0.
pub async fn finish(sampler_future: usize, consumer_future: usize) -> ! {
    while SAMPLER_DONE.load(Ordering::Acquire) == 0
        || SEEN.iter().any(|s| s.load(Ordering::Acquire) == 0)
    {
        yield_now().await;
    }
    for seen in &SEEN {
        check(
            seen.load(Ordering::Acquire) == encode(Ok(READING)),
            b"each consumer got the first reading",
        );
    }
    print(b"sampler task future: ", sampler_future);
    print(b"consumer task future: ", consumer_future);
    write(b"all checks passed\n");
    debug::exit(debug::EXIT_SUCCESS);
    halt()
}

/// The size of the future `f()` returns (a task's future, at compile time).
pub const fn future_size<F: FnOnce() -> Fut, Fut>(_: &F) -> usize {
    size_of::<Fut>()
}

/// The size of the future `f(arg)` returns.
pub const fn future_size1<A, F: FnOnce(A) -> Fut, Fut>(_: &F) -> usize {
    size_of::<Fut>()
}

/// Fails the run with `what` unless `ok`.
#[inline(always)]
pub fn check(ok: bool, what: &'static [u8]) {
    if !ok {
        fail(what);
    }
}

/// Prints `FAILED: what` and exits QEMU with status 1.
#[cold]
#[inline(never)]
pub fn fail(what: &'static [u8]) -> ! {
    write(b"FAILED: ");
    write(what);
    write(b"\n");
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

/// Writes bytes to the host's stdout (semihosting).
fn write(bytes: &[u8]) {
    if let Ok(mut out) = hio::hstdout() {
        let _ = out.write_all(bytes);
    }
}

/// Prints `label`, `n` in decimal and a newline, without `core::fmt`.
fn print(label: &[u8], mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    write(label);
    write(&digits[i..]);
    write(b"\n");
}

/// A panic exits QEMU with status 1, without formatting its message (the
/// point is to measure the crate, not panic formatting).
#[cfg(not(feature = "fmt-panic"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    fail(b"panic")
}

/// With `--features fmt-panic`: a panic prints its message and location
/// (as `panic-semihosting` or `panic-probe` do), so every panic's
/// formatting arguments are linked: `no_fmt.sh` compares what each variant
/// links then.
#[cfg(feature = "fmt-panic")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if let Ok(mut out) = hio::hstdout() {
        let _ = core::fmt::write(&mut out, format_args!("{info}\n"));
    }
    fail(b"panic")
}
