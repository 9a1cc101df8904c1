//! Time for a [`TaskQueue`](super::TaskQueue) without a runtime: per-task
//! timeouts and rate limits run on timer futures that the caller's factory
//! makes ([`Timer`]), so the queue never names a clock.
//!
//! The queue's third type parameter says what it can do with time, and so
//! what its stream yields:
//!
//! | parameter        | made by                                   | can                          | yields                       |
//! |------------------|-------------------------------------------|------------------------------|------------------------------|
//! | [`NoTimer`]      | [`TaskQueue::new`](super::TaskQueue::new)  | —                            | `F::Output`                  |
//! | [`Clock<T>`]     | [`.timer(t)`](super::TaskQueue::timer)     | rate limit                   | `F::Output`                  |
//! | [`Deadline<T>`]  | [`.timeout(d)`](super::TaskQueue::timeout) | rate limit, per-task timeout | `Result<F::Output, TimedOut>` |

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

/// Makes timer futures: the future `sleep(d)` returns completes `d` after
/// it was made. Any `FnMut(Duration) -> impl Future<Output = ()>` is one,
/// so a runtime's sleep plugs in as a closure.
///
/// ```
/// use core::time::Duration;
/// use deferral::queue::Timer;
/// // tokio: `|d| tokio::time::sleep(d)`; Embassy:
/// // `|d: Duration| embassy_time::Timer::after(d.try_into().unwrap())`.
/// let mut never = |_: Duration| core::future::pending::<()>();
/// let _sleep = never.sleep(Duration::from_millis(5));
/// ```
pub trait Timer {
    /// The timer future.
    type Sleep: Future<Output = ()>;
    /// A future that completes `duration` from now.
    ///
    /// ```
    /// use core::time::Duration;
    /// use deferral::queue::Timer;
    /// let mut timer = |_: Duration| async {}; // any `FnMut(Duration) -> impl Future`
    /// futures::executor::block_on(timer.sleep(Duration::from_millis(1)));
    /// ```
    fn sleep(&mut self, duration: Duration) -> Self::Sleep;
}

impl<Mk, S> Timer for Mk
where
    Mk: FnMut(Duration) -> S,
    S: Future<Output = ()>,
{
    type Sleep = S;
    fn sleep(&mut self, duration: Duration) -> S {
        self(duration)
    }
}

/// The outcome of a task that ran out of time: the queue dropped it (in
/// place, unfinished). Yielded as `Err(TimedOut)` by a queue with a
/// [`timeout`](super::TaskQueue::timeout).
///
/// ```
/// use deferral::queue::TimedOut;
/// assert_eq!(TimedOut.to_string(), "the task timed out");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task timed out")
    }
}

impl core::error::Error for TimedOut {}

mod sealed {
    pub trait Sealed {}
}

/// What a [`TaskQueue`](super::TaskQueue) can do with time: [`NoTimer`],
/// [`Clock`] or [`Deadline`] (see the table in their docs). Sealed.
///
/// ```
/// use deferral::queue::{NoTimer, Timing};
/// fn yields<T: Timing>() {}
/// yields::<NoTimer>();
/// ```
pub trait Timing: sealed::Sealed {
    /// The timer future (uninhabited for [`NoTimer`]).
    type Sleep: Future<Output = ()>;
    /// What the queue yields for a task with output `O`.
    type Item<O>;
    /// What a queued task keeps of its own timeout: nothing (`()`) on a
    /// queue without timeouts, `Option<Duration>` on a [`Deadline`] queue.
    #[doc(hidden)]
    type Limit: Copy + fmt::Debug;
    /// Whether a task can have a timeout at all (a queue without one skips
    /// making timers).
    #[doc(hidden)]
    const TIMEOUTS: bool;
    /// The timeout a task gets when it names none (the queue's).
    #[doc(hidden)]
    fn limit(&self) -> Self::Limit;
    #[doc(hidden)]
    fn sleep(&mut self, duration: Duration) -> Self::Sleep;
    /// The timer of a task started with `limit`, if it has a timeout.
    #[doc(hidden)]
    fn deadline(&mut self, limit: Self::Limit) -> Option<Self::Sleep>;
    #[doc(hidden)]
    fn report<O>(outcome: Result<O, TimedOut>) -> Self::Item<O>;
}

/// A queue without a timer: no timeouts, no rate limit (the default).
///
/// ```
/// use deferral::TaskQueue;
/// use deferral::queue::NoTimer;
/// let _queue: TaskQueue<core::future::Ready<u8>, 16, NoTimer> = TaskQueue::new();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimer;

/// The timer future of [`NoTimer`]: there is none (uninhabited), so a
/// queue without a timer stores nothing for it.
///
/// ```
/// fn _never(n: deferral::queue::NoSleep) -> ! {
///     match n {}
/// }
/// ```
#[derive(Debug)]
pub enum NoSleep {}

impl Future for NoSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match *self {}
    }
}

impl sealed::Sealed for NoTimer {}

impl Timing for NoTimer {
    type Sleep = NoSleep;
    type Item<O> = O;
    type Limit = ();
    const TIMEOUTS: bool = false;
    fn limit(&self) {}
    fn sleep(&mut self, _: Duration) -> NoSleep {
        unreachable!("a queue without a timer sets no timeout and no rate limit")
    }
    fn deadline(&mut self, (): ()) -> Option<NoSleep> {
        None
    }
    fn report<O>(outcome: Result<O, TimedOut>) -> O {
        outcome.unwrap_or_else(|_| unreachable!("no timeout without a timer"))
    }
}

/// A queue with a [`Timer`] factory (for a rate limit); tasks have no
/// timeout, and the queue yields their outputs as they are. Made by
/// [`TaskQueue::timer`](super::TaskQueue::timer).
///
/// ```
/// use core::time::Duration;
/// use deferral::TaskQueue;
/// use deferral::queue::Clock;
/// fn never(_: Duration) -> core::future::Pending<()> {
///     core::future::pending()
/// }
/// let _queue: TaskQueue<core::future::Ready<u8>, 16, Clock<fn(Duration) -> _>> =
///     TaskQueue::new().timer(never as fn(Duration) -> _);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Clock<T>(pub(super) T);

impl<T> sealed::Sealed for Clock<T> {}

impl<T: Timer> Timing for Clock<T> {
    type Sleep = T::Sleep;
    type Item<O> = O;
    type Limit = ();
    const TIMEOUTS: bool = false;
    fn limit(&self) {}
    fn sleep(&mut self, duration: Duration) -> T::Sleep {
        self.0.sleep(duration)
    }
    fn deadline(&mut self, (): ()) -> Option<T::Sleep> {
        None
    }
    fn report<O>(outcome: Result<O, TimedOut>) -> O {
        outcome.unwrap_or_else(|_| unreachable!("no timeout on a `Clock` queue"))
    }
}

/// A queue whose tasks each get a timeout from their start (and that can
/// rate-limit): a task still running then is dropped and yields
/// `Err(TimedOut)`; the others yield `Ok(output)`. The queue's timeout is
/// the default (none at all with `.timeout(None)`); a task can have its own
/// ([`Options::timeout`](super::Options::timeout)). Made by
/// [`TaskQueue::timeout`](super::TaskQueue::timeout).
///
/// ```
/// use core::time::Duration;
/// use deferral::TaskQueue;
/// use deferral::queue::{Deadline, TimedOut};
/// let queue = TaskQueue::<core::future::Ready<u8>>::new()
///     .timer(|_: Duration| core::future::pending::<()>())
///     .timeout(Duration::from_secs(1));
/// fn yields<S: futures::Stream<Item = Result<u8, TimedOut>>>(_: &S) {}
/// yields(&Box::pin(queue));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Deadline<T> {
    pub(super) timer: T,
    /// The default timeout of a task.
    pub(super) timeout: Option<Duration>,
}

impl<T> sealed::Sealed for Deadline<T> {}

impl<T: Timer> Timing for Deadline<T> {
    type Sleep = T::Sleep;
    type Item<O> = Result<O, TimedOut>;
    type Limit = Option<Duration>;
    const TIMEOUTS: bool = true;
    fn limit(&self) -> Option<Duration> {
        self.timeout
    }
    fn sleep(&mut self, duration: Duration) -> T::Sleep {
        self.timer.sleep(duration)
    }
    fn deadline(&mut self, limit: Option<Duration>) -> Option<T::Sleep> {
        limit.map(|d| self.timer.sleep(d))
    }
    fn report<O>(outcome: Result<O, TimedOut>) -> Result<O, TimedOut> {
        outcome
    }
}

/// At most `cap` starts per `per`: the window opens at its first start.
#[derive(Debug, Clone, Copy)]
pub(super) struct RateLimit {
    pub(super) cap: usize,
    pub(super) per: Duration,
    /// Starts in the current window.
    pub(super) started: usize,
}
