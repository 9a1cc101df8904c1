//! What happens to cleanup when a scope is dropped before it finished (a
//! timeout fired, a `select!` branch lost), and how to keep its async
//! cleanup: the crate depends on no runtime, so here a hand-rolled
//! executor takes it (with tokio, the `tokio` feature does that by
//! itself); and a grace deadline bounds cleanup that hangs.
//!
//! Run it with `cargo run --example cancellation`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use deferral::Outcome;
use deferral::cancel::BoxCleanup;

/// The hand-rolled executor: a queue of cleanups, run to completion by
/// `run_all` (a real one would park; this one just loops).
static QUEUE: Mutex<VecDeque<BoxCleanup>> = Mutex::new(VecDeque::new());

fn run_all() {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let Some(mut task) = QUEUE.lock().unwrap().pop_front() else {
            return;
        };
        if Pin::new(&mut task).poll(&mut cx).is_pending() {
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

type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, line: String) {
    println!("  {line}");
    log.lock().unwrap().push(line);
}

/// A session that holds a connection: a rollback and a goodbye that are
/// async, and a pool that wants the connection back whatever happens.
async fn session(name: &'static str, log: Log, pool: Log) {
    deferral::scope(async |d| {
        let l = log.clone();
        d.defer(move || note(&l, format!("{name}: sync cleanup runs in the drop")));
        let (l, p) = (log.clone(), pool.clone());
        let _conn = d.guard_async_with(
            format!("{name}'s connection"),
            async move |conn: String, outcome: Outcome| {
                After(2).await; // the async rollback
                note(
                    &l,
                    format!("{name}: rolled back ({outcome:?}) on the executor"),
                );
                p.lock().unwrap().push(conn);
            },
            move |conn| {
                // Nothing could run the rollback: the pool still gets it.
                pool.lock().unwrap().push(format!("{conn} (fallback)"));
            },
        );
        std::future::pending::<()>().await // the body never finishes
    })
    .await
}

fn main() {
    println!("1. cancelled with no handler: the async cleanup cannot run, its fallback does");
    let (log, pool) = (Log::default(), Log::default());
    let before = deferral::cancel::dropped();
    cancel(session("first", log.clone(), pool.clone()));
    assert_eq!(
        *log.lock().unwrap(),
        ["first: sync cleanup runs in the drop"]
    );
    assert_eq!(*pool.lock().unwrap(), ["first's connection (fallback)"]);
    assert_eq!(
        deferral::cancel::dropped() - before,
        1,
        "counted, never silent"
    );
    println!("  pool: {:?}", pool.lock().unwrap());

    println!("2. the program's handler hands it to our executor");
    // With tokio there is nothing to write: the `tokio` feature spawns it.
    deferral::cancel::set_cancel_handler(|orphan| {
        QUEUE.lock().unwrap().push_back(orphan.into_boxed())
    });
    let (log, pool) = (Log::default(), Log::default());
    cancel(session("second", log.clone(), pool.clone()));
    run_all();
    deferral::cancel::clear_cancel_handler();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "second: sync cleanup runs in the drop",
            "second: rolled back (Cancelled) on the executor"
        ]
    );
    assert_eq!(*pool.lock().unwrap(), ["second's connection"]);

    println!("3. a grace deadline: cleanup that hangs is cut short");
    let out = futures::executor::block_on(
        deferral::scope(async |d| {
            d.defer_async(std::future::pending::<()>());
            "body output"
        })
        .grace(|| After(3)),
    );
    let cut = out.expect_err("the cleanup hangs");
    println!("  {cut}; the output is still here: {:?}", cut.output());
    assert_eq!((cut.cut(), *cut.output()), (1, "body output"));
}

/// Polls a future once, then drops it (a timeout firing, a `select!` arm
/// losing).
fn cancel(fut: impl Future<Output = ()>) {
    let mut fut = std::pin::pin!(fut);
    let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
}
