//! A scope whose body holds the handle and a guard across `.await` is `Send`
//! and runs on tokio's multi-thread runtime, moving between worker threads.
#![cfg(not(miri))] // tokio's runtime is too slow under Miri; the same paths run in the other tests

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use deferral::scope;
use deferral::scope::{Concurrent, ScopeBuilder};

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_body_is_spawned_and_cleans_up_on_the_runtime() {
    let closed = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..16_u64 {
        let closed = closed.clone();
        let fut = assert_send(scope(async move |d| {
            let c = closed.clone();
            let mut conn = d.guard_async(Vec::<u64>::new(), move |v| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                assert_eq!(v.len(), 3);
                c.fetch_add(1, SeqCst);
            });
            for step in 0..3 {
                tokio::task::yield_now().await;
                conn.push(i * 10 + step);
            }
            let c = closed.clone();
            d.defer(move || {
                c.fetch_add(1, SeqCst);
            });
            conn.iter().sum::<u64>()
        }));
        handles.push(tokio::spawn(fut));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let i = i as u64;
        assert_eq!(h.await.unwrap(), 3 * i * 10 + 3);
    }
    assert_eq!(closed.load(SeqCst), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cleanup_is_woken_from_timers_on_other_threads() {
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = done.clone();
    let out = tokio::spawn(
        ScopeBuilder::new()
            .capacity::<4096>() // five tokio `Sleep`s do not fit 512 bytes
            .order(Concurrent)
            .run(async move |d| {
                for ms in [5, 1, 3, 2, 4] {
                    let done = d2.clone();
                    d.defer_async(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        done.fetch_add(1, SeqCst);
                    });
                }
                "out"
            }),
    )
    .await
    .unwrap();
    assert_eq!(out, "out");
    assert_eq!(done.load(SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_task_cancels_the_scope() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scope(async move |d| {
        d.defer(move || {
            r.fetch_add(1, SeqCst);
        });
        started_tx.send(()).unwrap();
        std::future::pending::<()>().await
    }));
    started_rx.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(
        ran.load(SeqCst),
        1,
        "the sync thunk ran when the task was dropped"
    );
}
