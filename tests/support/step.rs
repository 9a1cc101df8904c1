//! Futures that give tests control over await points.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Returns `Pending` once (waking itself), then `Ready`: one await point.
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

#[derive(Debug)]
pub struct YieldNow(bool);

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

/// A future that stays pending until its [`Gate`] is opened; counts polls.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<GateState>);

#[derive(Debug, Default)]
struct GateState {
    open: AtomicBool,
    polls: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the gate and wakes the last waker that polled it.
    pub fn open(&self) {
        self.0.open.store(true, SeqCst);
        // Take the waker out first: waking while holding the lock would
        // poison it if the waker panics.
        let waker = self
            .0
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// How many times a [`Gate::wait`] future of this gate was polled.
    pub fn polls(&self) -> usize {
        self.0.polls.load(SeqCst)
    }

    /// A future that resolves once the gate is open.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let state = self.0.clone();
        std::future::poll_fn(move |cx| {
            state.polls.fetch_add(1, SeqCst);
            *state.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            if state.open.load(SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}
