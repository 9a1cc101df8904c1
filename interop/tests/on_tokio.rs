//! The crate on tokio's runtimes: promises resolved from spawned tasks,
//! context values following futures across workers, a `scope_local` on a
//! `LocalSet`. (Moved here from the root test suite so that the root's
//! `cargo test` compiles no runtime.)

use std::cell::RefCell;
use std::rc::Rc;

use deferral::{ContextVar, DeferredPromise, PromiseExt, scope_local};

static V: ContextVar<u32> = ContextVar::new();

#[test]
fn works_on_tokio_multi_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let rounds = if cfg!(miri) { 2 } else { 100 };
    rt.block_on(async {
        for i in 0..rounds {
            let p = DeferredPromise::<u32, deferral::PromiseError<()>>::detached(move |r| {
                tokio::spawn(async move { r.resolve(i).unwrap() });
            })
            .deferred_then(|v| Ok(v + 1));
            assert_eq!(tokio::spawn(p).await.unwrap(), Ok(i + 1));
        }
    });
}

#[test]
fn detached_resolver_spawned_on_tokio() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let out = rt.block_on(async {
        DeferredPromise::<u32, deferral::PromiseError<()>>::detached(|res| {
            tokio::spawn(async move { res.resolve(1) });
        })
        .await
    });
    assert_eq!(out, Ok(1));
}

#[test]
fn rc_refcell_state_under_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let state = Rc::new(RefCell::new(Vec::new()));
    let local = tokio::task::LocalSet::new();
    let s = state.clone();
    local.block_on(&rt, async move {
        let handle = tokio::task::spawn_local(async move {
            scope_local(async |d| {
                let s2 = s.clone();
                d.defer(move || s2.borrow_mut().push("closed"));
                let s3 = s.clone();
                d.defer_async(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    s3.borrow_mut().push("flushed");
                });
                s.borrow_mut().push("body");
                tokio::task::yield_now().await;
                7
            })
            .await
        });
        assert_eq!(handle.await.unwrap(), 7);
    });
    assert_eq!(*state.borrow(), ["body", "flushed", "closed"]);
}

#[cfg_attr(miri, ignore)] // a real runtime
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_moving_between_tokio_workers_keep_their_values() {
    let mut tasks = Vec::new();
    for i in 0..16_u32 {
        tasks.push(tokio::spawn(V.scope(i, async move {
            let mut threads = std::collections::HashSet::new();
            for _ in 0..200 {
                threads.insert(std::thread::current().id());
                assert_eq!(V.get(), Some(i));
                tokio::task::yield_now().await;
            }
            assert_eq!(V.get(), Some(i));
            threads.len()
        })));
    }
    let mut moved = 0;
    for t in tasks {
        if t.await.unwrap() > 1 {
            moved += 1;
        }
    }
    // Not guaranteed by tokio, so only reported.
    println!("{moved} of 16 tasks ran on more than one worker");
    assert_eq!(V.get(), None);
}
