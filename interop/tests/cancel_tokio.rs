//! Cancellation that does not lose async cleanup, on tokio: the program's
//! cancel handler is the documented one-line adapter, and `timeout` cancels
//! a scope mid-body; its async `close()` still runs to completion, once.
//! (Its own test binary: the cancel handler is program-wide.)
#![cfg(all(feature = "std", not(miri)))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::Notify;

struct Conn {
    closes: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
    closed: Arc<Notify>,
}

impl Conn {
    async fn close(self) {
        tokio::time::sleep(Duration::from_millis(5)).await; // an async goodbye
        self.closes.fetch_add(1, SeqCst);
        self.closed.notify_one();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_cancels_a_scope_and_its_async_close_still_runs_once() {
    // The adapter: one line.
    deferral::cancel::set_cancel_handler(|orphan| drop(tokio::spawn(orphan.into_boxed())));

    let (closes, drops, closed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Notify::new()),
    );
    let conn = Conn {
        closes: closes.clone(),
        drops: drops.clone(),
        closed: closed.clone(),
    };
    let work = deferral::scope(async move |d| {
        let _conn = d.try_guard_async(conn, Conn::close).unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await; // mid-body
    });
    let timed_out = tokio::time::timeout(Duration::from_millis(10), work).await;
    assert!(timed_out.is_err(), "the body was cancelled");

    tokio::time::timeout(Duration::from_secs(5), closed.notified())
        .await
        .expect("close() ran on the runtime after the cancellation");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(closes.load(SeqCst), 1, "closed exactly once");
    assert_eq!(drops.load(SeqCst), 1, "dropped exactly once");
    deferral::cancel::clear_cancel_handler();
}
