//! `deferral` on bare metal: an LM3S6965 (Cortex-M3) under QEMU, the Embassy
//! executor, no heap (no global allocator is linked: `deferral` is built with
//! `default-features = false`).
//!
//! - A task runs a `deferral::scope` that registers deferred cleanup (sync,
//!   async and a guard) and checks it ran, in LIFO order, on success and on
//!   error.
//! - A `DeferredPromise` on a `static PromiseCell` is settled from the
//!   SysTick exception handler: resolved, then rejected, then a lazy
//!   `PromiseCell::lazy` promise whose executor arms the timer only when the
//!   promise is first polled.
//! - Two Embassy tasks await one `static SharedCell` (a multi-waiter
//!   promise, no heap, no lock) that the SysTick handler resolves once.
//! - A scope cancelled before its cleanup could run (a timeout, say): its
//!   async cleanup goes to a `static Reaper` that a task of its own drains
//!   (the program's cancel handler hands it over), so the peripheral is
//!   still powered down.
//!
//! The firmware exits QEMU through semihosting: status 0 when every check
//! passed, 1 on the first failed check or on any panic.
//!
//! ```console
//! $ cargo run --release   # in examples/firmware/, needs qemu-system-arm
//! ```
#![no_std]
#![no_main]

use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use core::task::{Context, Poll};

use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::SCB;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use cortex_m_semihosting::{debug, hprintln};
use deferral::cancel::Reaper;
use deferral::promise::{Progress, PromiseState};
use deferral::scope::ScopeBuilder;
use deferral::{PromiseCell, PromiseError, Resolver, SharedCell};
use embassy_executor::Spawner;
use panic_semihosting as _; // a panic prints its message and exits with status 1

/// What the "sensor" (the interrupt, or the body using it) can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SensorError {
    Timeout,
    /// A scope's inline slab was full (no heap to spill to): `Full`.
    NoRoom,
}

/// The one promise/resolver pair the interrupt settles: a `static`, no heap.
static SAMPLE: PromiseCell<u32, SensorError> = PromiseCell::new();

/// What the SysTick handler does with the resolver it finds.
#[derive(Clone, Copy)]
enum Action {
    Resolve,
    Reject,
}

/// The hand-off of the resolver from thread mode to the SysTick handler.
///
/// A `Resolver` is `Send` (it may be settled from another context) but not
/// `Sync`, and the handler must *take* it (settling consumes the one-shot
/// right, dropping it afterwards is a no-op). Moving a non-`Sync` value
/// between thread mode and a handler needs exclusive access to the slot, and
/// on a single core the cheapest correct exclusion is masking interrupts for
/// the few instructions of the `Option::take`/`replace`:
/// `cortex_m::interrupt::Mutex`. The settlement itself (`resolve`/`reject`
/// and the wake-up) runs outside the critical section and is lock-free: it
/// never waits for the promise's side.
static ARMED: Mutex<RefCell<Option<Armed>>> = Mutex::new(RefCell::new(None));

/// A resolver given to the SysTick handler, and what to settle it with.
type Armed = (Resolver<'static, u32, SensorError>, Action);

/// How many resolvers the SysTick handler settled.
static SETTLED: AtomicU32 = AtomicU32::new(0);

/// "Link up", awaited by two tasks at once: resolved once by SysTick.
static LINK_UP: SharedCell<u32, SensorError, 2> = SharedCell::new();
/// SysTick resolves `LINK_UP` on its next run.
static LINK_ARMED: AtomicBool = AtomicBool::new(false);
/// What each of the two link tasks saw (0: nothing yet).
static LINK_SEEN: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];

/// Gives `resolver` to the SysTick handler and starts the timer.
fn arm(resolver: Resolver<'static, u32, SensorError>, action: Action) {
    interrupt::free(|cs| {
        let previous = ARMED.borrow(cs).replace(Some((resolver, action)));
        check(previous.is_none(), "one resolver armed at a time");
    });
    start_systick();
}

/// Starts SysTick: its handler fires once, about 20,000 cycles from now.
fn start_systick() {
    // SAFETY: SysTick is used only here and in its own handler, which stops
    // the counter; no other code holds the peripheral.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(20_000);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    // SAFETY: see `arm`: the handler owns SysTick while it is running.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.disable_counter();
    syst.disable_interrupt();
    // The counter may have wrapped again before it stopped (QEMU's SysTick
    // runs on host time): drop that second pending SysTick.
    SCB::clear_pendst();
    let armed = interrupt::free(|cs| ARMED.borrow(cs).take());
    if let Some((resolver, action)) = armed {
        let n = SETTLED.fetch_add(1, Ordering::Relaxed) + 1;
        // Settled from the interrupt handler: lock-free, wakes the task.
        let settled = match action {
            Action::Resolve => resolver.resolve(1000 + n).is_ok(),
            Action::Reject => resolver.reject(SensorError::Timeout).is_ok(),
        };
        check(settled, "the handler's settlement is accepted");
    }
    if LINK_ARMED.swap(false, Ordering::Relaxed) {
        // Every task waiting on the cell is woken; each gets a clone.
        check(
            LINK_UP.resolve(100).is_ok(),
            "the shared cell is resolved once",
        );
    }
}

#[embassy_executor::task(pool_size = 2)]
async fn link_task(id: usize) {
    let wait = LINK_UP.wait().expect("two waiters fit the cell");
    let seen = wait.await;
    check(seen == Ok(100), "each task gets the shared value");
    LINK_SEEN[id].store(100, Ordering::Release);
}

/// The order in which cleanup ran, as small numbers (no heap, no `Vec`).
static LOG: [AtomicU8; 8] = [const { AtomicU8::new(0) }; 8];
static LOG_LEN: AtomicUsize = AtomicUsize::new(0);

fn log(event: u8) {
    let i = LOG_LEN.fetch_add(1, Ordering::Relaxed);
    check(i < LOG.len(), "log overflow");
    LOG[i].store(event, Ordering::Relaxed);
}

fn take_log() -> [u8; 8] {
    let mut out = [0; 8];
    let n = LOG_LEN.swap(0, Ordering::Relaxed);
    for (o, l) in out.iter_mut().zip(&LOG[..n]) {
        *o = l.swap(0, Ordering::Relaxed);
    }
    out
}

/// Fails the run: prints `what` and exits QEMU with status 1.
fn check(ok: bool, what: &str) {
    if !ok {
        hprintln!("FAILED: {}", what);
        debug::exit(debug::EXIT_FAILURE);
    }
}

/// Returns `Pending` once (after waking itself): a real suspension point.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A pretend peripheral that must be switched off whatever happens.
struct Led;

impl Led {
    fn off(self) {
        log(4);
    }
}

/// A body that registers cleanup, then succeeds or fails.
async fn blink(fail: bool) -> Result<u32, SensorError> {
    // 128 bytes of inline storage, sized for what this body registers; a
    // fixed slab: a registration that does not fit returns `Full` (here
    // mapped to an error with `?`) instead of panicking.
    ScopeBuilder::new()
        .capacity::<128>()
        .fixed()
        .run(async |d| {
            let led = d.guard(Led, Led::off).map_err(|_| SensorError::NoRoom)?;
            d.defer(|| log(3)).map_err(|_| SensorError::NoRoom)?;
            d.defer_async(async {
                YieldNow(false).await; // cleanup that suspends
                log(2);
            })
            .map_err(|_| SensorError::NoRoom)?;
            d.defer_with(|exit: &mut deferral::Exit<Result<u32, SensorError>>| {
                // Go's named results: cleanup sees (and may change) the output.
                if exit.error_mut().is_some() {
                    log(9);
                }
            })
            .map_err(|_| SensorError::NoRoom)?;
            log(1);
            YieldNow(false).await;
            let _ = &*led;
            if fail {
                return Err(SensorError::Timeout);
            }
            Ok(7)
        })
        .await
}

static CLEANUP_DONE: AtomicU8 = AtomicU8::new(0);

#[embassy_executor::task]
async fn cleanup_task() {
    check(blink(false).await == Ok(7), "scope output");
    // LIFO: the body (1), then defer_with, defer_async (2), defer (3), guard (4).
    check(
        take_log() == [1, 2, 3, 4, 0, 0, 0, 0],
        "cleanup order on success",
    );
    check(
        blink(true).await == Err(SensorError::Timeout),
        "scope error",
    );
    check(
        take_log() == [1, 9, 2, 3, 4, 0, 0, 0],
        "cleanup after an error",
    );
    CLEANUP_DONE.store(1, Ordering::Release);
}

/// A heap-free home for the async cleanup of cancelled scopes: two slots
/// of 64 bytes, drained by `reaper_task`.
static REAPER: Reaper<2> = Reaper::new();

#[embassy_executor::task]
async fn reaper_task() {
    // Runs the handed-over cleanup for ever (a second `run` would resolve
    // to `ReaperBusy`).
    let _ = REAPER.run().await;
}

static RADIO_ON: AtomicBool = AtomicBool::new(false);

/// A body that powers a radio up and never finishes on its own: the
/// caller gives up on it after a few polls (a timeout), which drops the
/// scope before its cleanup could be awaited.
async fn transmit() {
    deferral::scope(async |d| {
        RADIO_ON.store(true, Ordering::Relaxed);
        d.defer_async(async {
            YieldNow(false).await; // an async power-down sequence
            RADIO_ON.store(false, Ordering::Relaxed);
        });
        core::future::pending::<()>().await
    })
    .await
}

/// Polls `fut` `polls` times, then drops it: a timeout without a timer.
async fn give_up_after<F: Future>(polls: usize, fut: F) {
    let mut fut = core::pin::pin!(fut);
    let mut left = polls;
    core::future::poll_fn(|cx| {
        if left == 0 {
            return Poll::Ready(());
        }
        left -= 1;
        let _ = fut.as_mut().poll(cx);
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    hprintln!("deferral firmware: start");
    report_sizes();
    spawner.spawn(cleanup_task().expect("task pool has room"));

    // 0. Cancelled cleanup runs in the reaper task.
    deferral::cancel::set_cancel_handler(|orphan| REAPER.hand_over(orphan));
    spawner.spawn(reaper_task().expect("task pool has room"));
    give_up_after(2, transmit()).await;
    check(
        RADIO_ON.load(Ordering::Relaxed),
        "the scope was cut short with the radio on",
    );
    check(REAPER.pending() == 1, "its power-down went to the reaper");
    while REAPER.pending() != 0 {
        YieldNow(false).await;
    }
    check(
        !RADIO_ON.load(Ordering::Relaxed),
        "the reaper powered the radio down",
    );
    check(
        REAPER.missed() == 0 && deferral::cancel::dropped() == 0,
        "nothing dropped",
    );

    // 1. Resolved from the interrupt handler.
    let (promise, resolver) = SAMPLE.promise().expect("the cell is free");
    arm(resolver, Action::Resolve);
    check(promise.await == Ok(1001), "resolved from SysTick");
    check(SAMPLE.is_free(), "the cell is free after the first promise");

    // 2. The same cell, reused: rejected from the interrupt handler.
    let (promise, resolver) = SAMPLE.promise().expect("the cell is free again");
    arm(resolver, Action::Reject);
    check(
        promise.await == Err(PromiseError::Rejected(SensorError::Timeout)),
        "rejected from SysTick",
    );

    // 3. Lazy: the executor (which arms the timer) runs at the first poll.
    let promise = SAMPLE
        .lazy(|resolver| arm(resolver, Action::Resolve))
        .expect("the cell is free a third time");
    YieldNow(false).await;
    YieldNow(false).await;
    check(
        promise.state() == PromiseState::Pending(Progress::Unstarted),
        "a deferred promise does not start before it is polled",
    );
    check(
        SETTLED.load(Ordering::Relaxed) == 2
            && interrupt::free(|cs| ARMED.borrow(cs).borrow().is_none()),
        "no resolver handed to the interrupt yet",
    );
    check(
        promise.await == Ok(1003),
        "lazy promise resolved from SysTick",
    );

    // 4. One `static SharedCell`, awaited by two tasks, resolved by SysTick.
    spawner.spawn(link_task(0).expect("task pool has room"));
    spawner.spawn(link_task(1).expect("task pool has room"));
    while LINK_UP.waiters() < 2 {
        YieldNow(false).await;
    }
    check(
        LINK_SEEN.iter().all(|s| s.load(Ordering::Acquire) == 0),
        "nobody woke early",
    );
    LINK_ARMED.store(true, Ordering::Relaxed);
    start_systick();
    while LINK_SEEN.iter().any(|s| s.load(Ordering::Acquire) == 0) {
        YieldNow(false).await;
    }
    check(LINK_UP.is_settled(), "the shared cell stays settled");

    while CLEANUP_DONE.load(Ordering::Acquire) == 0 {
        YieldNow(false).await;
    }
    hprintln!("deferral firmware: all checks passed");
    debug::exit(debug::EXIT_SUCCESS);
}

/// Prints what a scope holds besides its body and slab on this 32-bit
/// target (BENCHMARKS.md and `tests/scope_capacity.rs` give 64-bit).
fn report_sizes() {
    fn size_of_val<T>(_: &T) -> usize {
        core::mem::size_of::<T>()
    }
    fn size_of_output<T>(_: impl FnOnce() -> T) -> usize {
        core::mem::size_of::<T>()
    }
    let empty_body = async |_: &deferral::Defer<(), deferral::scope::Local<'_>, 0>| {};
    // Sizes the body's future type without calling anything.
    fn never<T>() -> T {
        unreachable!("only sized, never called")
    }
    let body = size_of_output(|| empty_body(never()));
    let scope = size_of_val(&ScopeBuilder::new().capacity::<0>().run_local(async |_| {}));
    hprintln!(
        "scope_local overhead: {} bytes (DeferScope<_, 0> = {}, body = {})",
        scope - body,
        scope,
        body
    );
}
