//! What runs when a scope is dropped before it finished, and how to keep
//! its async cleanup: a hand-rolled executor takes the orphaned cleanup
//! (the crate depends on no runtime), and a grace deadline bounds cleanup
//! that hangs.
//!
//! Run it with `cargo run --example cancellation`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// The hand-rolled executor: a queue of boxed futures, run to completion
/// by `run_all` (a real one would park; this one just loops).
static QUEUE: Mutex<VecDeque<deferral::cancel::BoxCleanup>> = Mutex::new(VecDeque::new());

fn run_all() {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let Some(mut task) = QUEUE.lock().unwrap().pop_front() else {
            return;
        };
        if task.as_mut().poll(&mut cx).is_pending() {
            QUEUE.lock().unwrap().push_back(task);
        }
    }
}

/// Ready after `n` polls: a stand-in for a timer.
struct After(u32);

impl Future for After {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

async fn session(name: &'static str) {
    deferral::scope(async |d| {
        d.defer(move || println!("  {name}: sync cleanup runs in drop"));
        d.defer_async(async move {
            After(2).await;
            println!("  {name}: async goodbye sent (on the executor)");
        });
        std::future::pending::<()>().await // the body never finishes
    })
    .await
}

fn main() {
    println!("1. cancelled with no handler: async cleanup is dropped unpolled");
    cancel(session("first"));

    println!("2. the program's handler hands it to our executor");
    // With tokio this line is:
    // deferral::cancel::set_cancel_handler(|o| drop(tokio::spawn(o.into_boxed())));
    deferral::cancel::set_cancel_handler(|orphan| QUEUE.lock().unwrap().push_back(orphan.into_boxed()));
    cancel(session("second"));
    run_all();

    println!("3. a grace deadline: cleanup that hangs is cut short");
    let out = futures::executor::block_on(
        deferral::scope(async |d| {
            d.defer_async(std::future::pending::<()>());
            "body output"
        })
        .grace(|| After(3)),
    );
    match out {
        Ok(out) => println!("  finished: {out}"),
        Err(cut) => println!("  {cut}; the output is still here: {:?}", cut.output()),
    }
    deferral::cancel::clear_cancel_handler();
}

/// Polls a future once, then drops it (a timeout firing, a `select!` arm
/// losing).
fn cancel(fut: impl Future<Output = ()>) {
    let mut fut = std::pin::pin!(fut);
    let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
}
