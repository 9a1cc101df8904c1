//! The two documents this crate comes from, their JavaScript ported line by
//! line: the `defer` / `useDefer` proof of concept, and the TC39 "Deferred
//! Promises" proposal (`Promise.defer`, `deferredThen`, `AsyncContext`, the
//! task queue, unhandled rejections). Each JS line is the comment above its
//! Rust.
//!
//! ```console
//! $ cargo run --example seeds
//! ```

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use deferral::{ContextVar, DeferredPromise, PromiseError, PromiseExt};
use futures::executor::block_on;

fn main() {
    block_on(seed_defer());
    block_on(promise_defer());
    block_on(promise_chain());
    async_context();
    block_on(deferred_then());
    block_on(task_queue());
    block_on(unhandled_rejection());
}

// ---- seed 1: `defer` and `useDefer` over AsyncLocalStorage ------------

// async function deferTest() {
async fn defer_test() -> i32 {
    //   defer(() => { console.log("defer 1", fns); });
    deferral::defer(|| println!("defer 1"));
    //   console.log("not defer");
    println!("not defer");
    //   return 1;
    1
}

// async function deferTest2() { .. "defer 2" .. "not defer 2" .. }
async fn defer_test2() -> i32 {
    deferral::defer(|| println!("defer 2"));
    println!("not defer 2");
    1
}

async fn seed_defer() {
    println!("-- defer / useDefer");
    // useDefer(deferTest);
    assert_eq!(deferral::scope::scope_fn(defer_test).await, 1);
    // useDefer(deferTest2);
    assert_eq!(deferral::scope::scope_fn(defer_test2).await, 1);
    // (The seed prints the stored functions' source, `fns`; a Rust closure
    // has none. `Defer::len` counts them when you hold the handle.)
}

// ---- seed 2: deferred promises --------------------------------------

async fn promise_defer() {
    println!("-- Promise.defer");
    // let called = false;
    let called = Rc::new(Cell::new(false));
    // let val = 123;
    let val = Rc::new(Cell::new("123"));

    // const promise = Promise.defer((res) => {
    let promise = DeferredPromise::<i32, PromiseError<()>>::new({
        let (called, val) = (called.clone(), val.clone());
        move |res| {
            //   called = true;
            called.set(true);
            //   console.log(val);  // 'abc'
            println!("{}", val.get());
            assert_eq!(val.get(), "abc");
            //   res(123);
            res.resolve(123)
        }
    }); // });

    // val = 'abc';
    val.set("abc");
    // console.log(called); // false because the promise has not been awaited yet.
    println!("{}", called.get());
    assert!(!called.get());

    // const result = await promise;
    let result = promise.await;

    // console.log(result);  // 123
    println!("{result:?}");
    assert_eq!(result, Ok(123));
    // console.log(called);  // true
    println!("{}", called.get());
    assert!(called.get());
}

async fn promise_chain() {
    println!("-- a whole chain before the callback runs");
    let do_something = |v: i32| Ok::<_, PromiseError<()>>(v + 1);
    let handle_the_error = |_: PromiseError<()>| Ok::<_, PromiseError<()>>(0);
    let do_one_last_thing = || println!("finally");
    // Promise.defer((res) => res(123))
    let chain = DeferredPromise::<i32, PromiseError<()>>::new(|res| res.resolve(123))
        //    .then(doSomething)
        .deferred_then(do_something)
        //    .catch(handleTheError)
        .deferred_catch(handle_the_error)
        //    .finally(doOneLastThing);
        .deferred_finally(do_one_last_thing);
    // The entire chain is created while the callback waits for the first poll.
    assert_eq!(chain.await, Ok(124));
}

// const ac = new AsyncContext.Variable();
static AC: ContextVar<&'static str> = ContextVar::new();

fn async_context() {
    println!("-- Promise.defer and AsyncContext");
    // const p = ac.run(123, () => Promise.defer((res) => res(ac.get())));
    let p = AC.run("123", || {
        DeferredPromise::<&str, PromiseError<()>>::new(|res| res.resolve(AC.get().unwrap()))
    });
    // ac.run('abc', () => {
    AC.run("abc", || {
        //   p.then((val) => console.log(val)); // 123
        let val = block_on(p).unwrap();
        println!("{val}");
        assert_eq!(val, "123");
    }); // });
}

async fn deferred_then() {
    println!("-- deferredThen");
    let invoked = Rc::new(Cell::new(false));
    let i = invoked.clone();
    // const p = Promise.resolve(1).deferredThen((val) => console.log(val));
    let p = DeferredPromise::<i32, ()>::resolved(1).deferred_then(move |val| {
        i.set(true);
        println!("{val}");
        Ok(())
    });
    // { drain the microtask queue } ... the then function is not actually invoked yet.
    yield_now().await; // the executor runs other work; nobody waits for `p`
    assert!(!invoked.get());
    // p.then(() => {});  // the continuation is now scheduled
    p.await.unwrap();
    assert!(invoked.get());
}

async fn task_queue() {
    println!("-- use case: task queue");
    let fetched = Rc::new(Cell::new(0));
    let fetch = |url: &'static str| {
        let fetched = fetched.clone();
        move |res: deferral::Resolver<'_, &'static str, ()>| {
            fetched.set(fetched.get() + 1);
            res.resolve(url)
        }
    };
    // const tasks = [
    let mut tasks = VecDeque::from([
        //   Promise.defer((res) => res(fetch('http://example.com/1'))),
        DeferredPromise::new(fetch("http://example.com/1")),
        DeferredPromise::new(fetch("http://example.com/2")),
        DeferredPromise::new(fetch("http://example.com/3")),
        DeferredPromise::new(fetch("http://example.com/4")),
    ]); // ];
    assert_eq!(fetched.get(), 0); // nothing fetched yet
    // while (tasks.length > 0) {
    while let Some(task) = tasks.pop_front() {
        //   await tasks.shift();
        println!("{}", task.await.unwrap());
    } // }
    assert_eq!(fetched.get(), 4);
}

async fn unhandled_rejection() {
    println!("-- use case: no unhandled-rejection bookkeeping");
    let rejected = Rc::new(Cell::new(false));
    let r = rejected.clone();
    // const deferred = Promise.defer((res, rej) => rej(new Error('boom')));
    let deferred = DeferredPromise::<(), PromiseError<&str>>::new(move |res| {
        r.set(true);
        res.reject("boom")
    });
    // The rejection has not occurred yet:
    assert!(!rejected.get());
    // deferred.catch(() => {}); // attaching the handler schedules the promise
    let handled = deferred.deferred_catch(|e| {
        println!("handled: {e:?}");
        Ok::<_, ()>(())
    });
    assert!(!rejected.get());
    handled.await.unwrap();
    // When the rejection occurs the handler is already attached.
    assert!(rejected.get());
}

/// Pending once (waking itself): "drain the microtask queue".
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
