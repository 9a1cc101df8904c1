//! The "runs everywhere" scenarios, written once against [`Spawn`] and run on
//! every executor by `tests/executors.rs`.
//!
//! Each scenario is an `async fn` that asserts (a failed assertion panics in
//! the executor's thread and fails that executor's test). Nothing here names
//! an executor: the only things a scenario gets from its executor are `poll`,
//! wakers and [`Spawn::spawn`], which is exactly what `deferral` relies on.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use deferral::promise::{Progress, PromiseState};
use deferral::scope::{Concurrent, Fifo, Lifo, Order, ScopeBuilder};
use deferral::{DeferredPromise, PromiseCell, PromiseError, PromiseExt, SharedPromise, scope};
use futures::future::{Either, join_all, select};

use crate::support::{DropCounter, Gate, yield_now};

/// A task to run concurrently with the scenario.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a scenario needs from its executor besides polling it: a way to run
/// another task concurrently (a spawned task, a thread, a local task...).
pub trait Spawn {
    /// Starts `task`; it runs to completion without being awaited.
    fn spawn(&self, task: Task);
}

/// Events in the order they happened.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<&'static str>>>);

impl Log {
    fn push(&self, event: &'static str) {
        self.0.lock().unwrap().push(event);
    }

    /// Pushes `event` when called: a `Send + 'static` cleanup closure.
    fn on(&self, event: &'static str) -> impl FnOnce() + Send + 'static {
        let log = self.clone();
        move || log.push(event)
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Spawns `task` and waits for its output, with a join handle made of the
/// crate's own pieces: a detached promise whose executor spawns the task and
/// whose resolver the task settles. A task that panics drops the resolver
/// unsettled: the join fails instead of hanging.
async fn spawn_joined<T: Send + 'static>(
    sp: &dyn Spawn,
    task: impl Future<Output = T> + Send + 'static,
) -> T {
    DeferredPromise::<T, PromiseError<()>>::detached(move |resolver| {
        sp.spawn(Box::pin(async move {
            let out = task.await;
            // Refused only if the join handle is gone: nobody waits.
            let _ = resolver.resolve(out);
        }))
    })
    .await
    .unwrap_or_else(|e| panic!("the spawned task died before finishing: {e:?}"))
}

/// Sync and async cleanup, guards, in `Lifo`, `Fifo` and `Concurrent` order;
/// async cleanup that suspends is resumed by the executor.
pub async fn cleanup_order(_sp: &dyn Spawn) {
    let log = Log::default();
    ordered::<Lifo>(&log, ["body", "guard", "async", "sync"]).await;
    ordered::<Fifo>(&log, ["body", "sync", "async", "guard"]).await;
    async fn ordered<O: Order + Default + std::fmt::Debug>(log: &Log, expected: [&str; 4]) {
        let order = O::default();
        let l = log.clone();
        let out = ScopeBuilder::new()
            .order(O::default())
            .run(async move |d| {
                d.defer(l.on("sync"));
                let a = l.clone();
                d.defer_async(async move {
                    yield_now().await; // cleanup that suspends
                    a.push("async");
                });
                let g = l.clone();
                let mut conn = d.guard(vec![1, 2], move |conn| {
                    assert_eq!(conn, [1, 2, 3], "the body's changes reach the cleanup");
                    g.push("guard");
                });
                conn.push(3);
                yield_now().await;
                l.push("body");
                conn.len()
            })
            .await;
        assert_eq!(out, 3);
        assert_eq!(log.take(), expected, "{order:?}");
    }

    // Concurrent: the first-run thunk (LIFO) waits for the other one, which
    // would deadlock if cleanup ran one thunk at a time.
    let gate = Gate::new();
    let l = log.clone();
    let out = ScopeBuilder::new()
        .order(Concurrent)
        .run(async |d| {
            let (opener, a) = (gate.clone(), l.clone());
            d.defer_async(async move {
                yield_now().await;
                a.push("opens");
                opener.open();
            });
            let (wait, b) = (gate.wait(), l.clone());
            d.defer_async(async move {
                wait.await;
                b.push("was let in");
            });
            "out"
        })
        .await;
    assert_eq!(out, "out");
    assert_eq!(log.take(), ["opens", "was let in"]);
}

/// An error leaving the body through `?` still runs every cleanup, and
/// cleanup sees the error (`defer_with`) or turns success into an error
/// (`defer_async_with`, Go's named results).
pub async fn cleanup_after_error(_sp: &dyn Spawn) {
    let log = Log::default();
    let l = log.clone();
    let out: Result<u32, String> = scope(async |d| {
        d.defer(l.on("closed"));
        let a = l.clone();
        d.defer_async(async move {
            yield_now().await;
            a.push("flushed");
        });
        let w = l.clone();
        d.defer_with(move |exit: &mut deferral::Exit<Result<u32, String>>| {
            if exit.error_mut().is_some() {
                w.push("saw the error");
            }
        });
        yield_now().await;
        let n: u32 = "not a number".parse().map_err(|_| "parse failed")?;
        Ok(n)
    })
    .await;
    assert_eq!(out, Err("parse failed".to_string()));
    assert_eq!(log.take(), ["saw the error", "flushed", "closed"]);

    let out: Result<u32, &str> = scope(async |d| {
        d.defer_async(async {
            yield_now().await; // an async close that fails
            |exit: &mut deferral::Exit<Result<u32, &'static str>>| {
                exit.add_error("close failed");
            }
        });
        Ok(1)
    })
    .await;
    assert_eq!(out, Err("close failed"));
}

/// A scope dropped while its body is suspended (the `select` below is the
/// executor-independent form of a timeout or an aborted task): the body is
/// dropped, sync cleanup and guards run, async cleanup that cannot run
/// elsewhere (`scope_local`: it may borrow) is dropped unpolled, and an
/// async guard's fallback gets its value. (Handing async cleanup over to the
/// runtime is `cancel_tokio.rs`.)
pub async fn cleanup_after_cancellation(sp: &dyn Spawn) {
    let log = Log::default();
    let drops = DropCounter::new();
    let (started, never) = (Gate::new(), Gate::new());
    let l = log.clone();
    let (in_body, in_cleanup) = (drops.tracked(), drops.tracked());
    let s = started.clone();
    let body = deferral::scope_local(async move |d| {
        let _held_by_body = in_body;
        d.defer(l.on("sync"));
        d.guard("file", |_| ());
        let a = l.clone();
        d.defer_async(async move {
            let _tracked = in_cleanup;
            a.push("async: must not run");
        });
        s.open();
        never.wait().await; // suspended here when cancelled
        unreachable!("the gate never opens")
    });
    match select(Box::pin(body), Box::pin(started.wait())).await {
        Either::Left(_) => panic!("the body cannot finish"),
        Either::Right(((), body)) => {
            assert_eq!(drops.get(), 0, "nothing dropped before the cancel");
            drop(body);
        }
    }
    assert_eq!(log.take(), ["sync"]);
    assert_eq!(
        drops.get(),
        2,
        "the body and the unpolled thunk are dropped"
    );

    // An async guard whose cleanup cannot run: its fallback gets the value.
    let started = Gate::new();
    let s = started.clone();
    let l = log.clone();
    let body = deferral::scope_local(async move |d| {
        let (a, f) = (l.clone(), l.clone());
        let _conn = d.guard_async_with(
            "conn",
            async move |_conn, _outcome: deferral::Outcome| a.push("async cleanup: cannot run"),
            move |conn: &'static str| f.push(if conn == "conn" { "fallback got" } else { "?" }),
        );
        s.open();
        std::future::pending::<()>().await
    });
    match select(Box::pin(body), Box::pin(started.wait())).await {
        Either::Left(_) => panic!("the body cannot finish"),
        Either::Right(((), body)) => drop(body),
    }
    assert_eq!(log.take(), ["fallback got"]);
    let _ = sp;
}

/// Nothing of a deferred promise runs before its first poll: not the
/// executor, not the chained handlers, not a `lazy` future, however many
/// times the executor runs other work meanwhile.
pub async fn lazy_start(_sp: &dyn Spawn) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (r1, r2, r3) = (runs.clone(), runs.clone(), runs.clone());
    let promise = DeferredPromise::<u32, PromiseError<()>>::new(move |res| {
        r1.fetch_add(1, SeqCst);
        res.resolve(20)
    });
    let lazy = DeferredPromise::<u32, ()>::lazy(move || {
        r2.fetch_add(1, SeqCst);
        async {
            yield_now().await;
            Ok(1)
        }
    });
    let chain = promise.deferred_then(move |v| {
        r3.fetch_add(1, SeqCst);
        Ok(v + 1)
    });
    for _ in 0..3 {
        yield_now().await;
    }
    assert_eq!(runs.load(SeqCst), 0, "nothing started before a poll");
    assert_eq!(chain.state(), PromiseState::Pending(Progress::Unstarted));
    assert_eq!(lazy.state(), PromiseState::Pending(Progress::Unstarted));
    assert_eq!(chain.await, Ok(21));
    assert_eq!(
        runs.load(SeqCst),
        2,
        "the executor and the handler, once each"
    );
    assert_eq!(lazy.await, Ok(1));
    assert_eq!(runs.load(SeqCst), 3);
}

/// A resolver handed to another task settles the promise there; the
/// promise's task is woken across tasks (and threads, on threaded
/// executors): resolve, reject, abandon, and a reused `PromiseCell`.
pub async fn resolve_from_another_task(sp: &dyn Spawn) {
    let spawned = Arc::new(AtomicUsize::new(0));
    let s = spawned.clone();
    let promise = DeferredPromise::<u32, PromiseError<&str>>::detached(|resolver| {
        s.fetch_add(1, SeqCst);
        sp.spawn(Box::pin(async move {
            yield_now().await;
            resolver.resolve(42).unwrap();
        }));
    });
    yield_now().await;
    assert_eq!(
        spawned.load(SeqCst),
        0,
        "the executor runs at the first poll"
    );
    assert_eq!(promise.await, Ok(42));
    assert_eq!(spawned.load(SeqCst), 1);

    let rejected = DeferredPromise::<u32, PromiseError<&str>>::detached(|resolver| {
        sp.spawn(Box::pin(async move {
            yield_now().await;
            resolver.reject("refused").unwrap();
        }));
    });
    assert_eq!(rejected.await, Err(PromiseError::Rejected("refused")));

    let abandoned = DeferredPromise::<u32, PromiseError<&str>>::detached(|resolver| {
        sp.spawn(Box::pin(async move {
            yield_now().await;
            drop(resolver);
        }));
    });
    assert_eq!(abandoned.await, Err(PromiseError::Abandoned));

    // A `PromiseCell` (heap-free in firmware; leaked here so that each test
    // has its own `'static` cell), used three times in a row.
    let cell: &'static PromiseCell<u32, &'static str> = Box::leak(Box::new(PromiseCell::new()));
    for round in 0..3 {
        let (promise, resolver) = cell.promise().unwrap();
        sp.spawn(Box::pin(async move {
            yield_now().await;
            resolver.resolve(round).unwrap();
        }));
        assert_eq!(promise.await, Ok(round));
        assert!(cell.is_free());
    }
    // Give the cell back: every promise and resolver of it is gone (each
    // round ended with the cell free), so nothing refers to it any more.
    // SAFETY: `cell` came from `Box::leak` above and is not used again.
    drop(unsafe { Box::from_raw(std::ptr::from_ref(cell).cast_mut()) });
}

/// One `SharedPromise` awaited by several spawned tasks and this one: the
/// source runs once, started by the first clone polled, and every clone gets
/// its output.
pub async fn shared_promise(sp: &dyn Spawn) {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let shared = SharedPromise::new(DeferredPromise::<String, ()>::lazy(move || {
        r.fetch_add(1, SeqCst);
        async {
            yield_now().await;
            yield_now().await;
            Ok("config".to_string())
        }
    }));
    let joins: Vec<_> = (0..4)
        .map(|_| {
            let clone = shared.clone();
            spawn_joined(sp, clone)
        })
        .collect();
    yield_now().await;
    assert_eq!(runs.load(SeqCst), 0, "not started before a clone is polled");
    for out in join_all(joins).await {
        assert_eq!(out.as_deref(), Ok("config"));
    }
    assert_eq!(shared.await.as_deref(), Ok("config"));
    assert_eq!(runs.load(SeqCst), 1, "the source ran once");
}

/// A `TaskQueue` with a concurrency limit of 2 over six deferred tasks, each
/// waiting for a promise that a spawned task resolves: nothing starts before
/// the queue is polled, never more than two run at once, and the results
/// arrive as a `Stream` in submission order, woken by the executor's tasks.
pub async fn task_queue(sp: &dyn Spawn) {
    use futures::StreamExt;
    let started = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut queue = std::pin::pin!(deferral::TaskQueue::new().concurrency(2));
    for n in 0..6_u32 {
        let (started, running, peak) = (started.clone(), running.clone(), peak.clone());
        let task = DeferredPromise::<u32, PromiseError<()>>::lazy(move || async move {
            started.fetch_add(1, SeqCst);
            peak.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
            let reply = DeferredPromise::<u32, PromiseError<()>>::detached(|resolver| {
                sp.spawn(Box::pin(async move {
                    yield_now().await;
                    resolver.resolve(n * 10).unwrap();
                }));
            });
            let out = reply.await;
            running.fetch_sub(1, SeqCst);
            out
        });
        assert!(queue.as_mut().push(task).is_ok());
    }
    yield_now().await;
    assert_eq!(
        started.load(SeqCst),
        0,
        "nothing starts before the queue is polled"
    );
    let results: Vec<_> = queue.collect().await;
    assert_eq!(results, (0..6).map(|n| Ok(n * 10)).collect::<Vec<_>>());
    assert_eq!(started.load(SeqCst), 6);
    assert!(
        peak.load(SeqCst) <= 2,
        "at most two at once, saw {}",
        peak.load(SeqCst)
    );
}
