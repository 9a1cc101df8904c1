//! Virtual time for queue tests (p-queue ports): a manual [`Clock`] whose
//! [`Sleep`] futures complete when it is advanced past their deadline, the
//! queue's timer factory ([`Clock::timer`]), and [`Clock::run_until`],
//! which polls a future with a flag waker and advances the clock only when
//! the future is pending *and was not woken* — so a lost wake-up shows as
//! a stall, never as a hidden repoll. Plus the tasks' shared [`Log`].

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use deferral::queue::BoxTask;

#[derive(Default)]
pub struct ClockState {
    now: u64,
    timers: Vec<(u64, Waker)>,
}

/// A manual clock, in milliseconds.
#[derive(Clone, Default)]
pub struct Clock(Arc<Mutex<ClockState>>);

impl Clock {
    pub fn now(&self) -> u64 {
        self.0.lock().unwrap().now
    }

    /// A future that completes `ms` after now.
    pub fn delay(&self, ms: u64) -> Sleep {
        Sleep {
            clock: self.clone(),
            deadline: self.now() + ms,
        }
    }

    /// The queue's timer factory.
    pub fn timer(&self) -> impl FnMut(Duration) -> Sleep + use<> {
        let clock = self.clone();
        move |d: Duration| clock.delay(d.as_millis() as u64)
    }

    /// Moves to the next deadline (at most `limit`), waking the expired
    /// timers; `false` if there is none before `limit` (now = `limit`).
    pub fn advance(&self, limit: u64) -> bool {
        let expired = {
            let mut state = self.0.lock().unwrap();
            let next = state.timers.iter().map(|(d, _)| *d).min();
            match next {
                Some(next) if next <= limit => state.now = state.now.max(next),
                _ => {
                    state.now = state.now.max(limit);
                    return false;
                }
            }
            let now = state.now;
            let (expired, kept) = std::mem::take(&mut state.timers)
                .into_iter()
                .partition(|(d, _)| *d <= now);
            state.timers = kept;
            expired
        };
        for (_, waker) in expired {
            waker.wake();
        }
        true
    }

    /// Polls `fut` until it completes or the clock reaches `until`; the
    /// clock advances only while `fut` is pending and was not woken.
    pub fn run_until<F: Future>(&self, mut fut: Pin<&mut F>, until: u64) -> Option<F::Output> {
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100_000 {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return Some(out);
            }
            if flag.0.swap(false, SeqCst) {
                continue; // woken: poll again at the same time
            }
            if !self.advance(until) {
                return None; // `until` reached
            }
        }
        panic!("no progress at {} ms", self.now());
    }

    /// Runs `fut` to completion; it must not need time beyond an hour.
    pub fn run<F: Future>(&self, fut: F) -> F::Output {
        self.run_until(pin!(fut), 3_600_000)
            .expect("completes within an hour of virtual time")
    }
}

#[derive(Default)]
pub struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, SeqCst);
    }
}

pub struct Sleep {
    clock: Clock,
    deadline: u64,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.0.lock().unwrap();
        if state.now >= self.deadline {
            return Poll::Ready(());
        }
        state.timers.push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

/// A log the tasks write to.
#[derive(Clone, Default)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub fn push(&self, t: T) {
        self.0.lock().unwrap().push(t);
    }
    pub fn get(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}

pub type Task = BoxTask<'static, ()>;

/// p-queue's `async () => { await delay(ms); result.push(value) }`.
pub fn delayed<T: Clone + Send + 'static>(clock: &Clock, ms: u64, log: &Log<T>, value: T) -> Task {
    let (clock, log) = (clock.clone(), log.clone());
    Box::pin(async move {
        clock.delay(ms).await;
        log.push(value);
    })
}

/// Polls `queue` once (starting what may start), with a no-op waker.
pub fn poll_stream_once<S: futures::Stream>(queue: Pin<&mut S>) -> Poll<Option<S::Item>> {
    queue.poll_next(&mut Context::from_waker(Waker::noop()))
}
