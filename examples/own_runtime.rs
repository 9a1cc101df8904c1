//! `deferral` inside your own runtime: a hand-rolled executor (a run queue,
//! `core::task` wakers made with `Wake`, thread park/unpark; no runtime
//! crate) drives a `deferral::scope` and `DeferredPromise`s, and builds its
//! join handle out of a detached promise. The crate needs nothing from it but
//! `poll` and wakers.
//!
//! Run it with `cargo run --example own_runtime`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use deferral::{DeferredPromise, PromiseCell, PromiseError};

// ------------------------------------------------ the runtime (~50 lines)

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The run queue of woken tasks, and the thread that runs it.
struct Shared {
    queue: Mutex<VecDeque<Arc<Task>>>,
    thread: Thread,
}

/// A spawned future (`None` once finished, and for `block_on`'s own future,
/// which lives on `block_on`'s stack).
struct Task {
    future: Mutex<Option<BoxFuture>>,
    shared: Arc<Shared>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        let shared = self.shared.clone();
        shared.queue.lock().unwrap().push_back(self);
        shared.thread.unpark(); // a wake before `park` makes `park` return
    }
}

/// Spawns tasks onto the runtime, from any thread.
#[derive(Clone)]
struct Spawner(Arc<Shared>);

impl Spawner {
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let future = Mutex::new(Some(Box::pin(future) as BoxFuture));
        Arc::new(Task {
            future,
            shared: self.0.clone(),
        })
        .wake();
    }
}

/// Runs `main` and the tasks it spawns on this thread until `main` is done.
fn block_on<T, F: Future<Output = T>>(main: impl FnOnce(Spawner) -> F) -> T {
    let shared = Arc::new(Shared {
        queue: Mutex::default(),
        thread: thread::current(),
    });
    let main_task = Arc::new(Task {
        future: Mutex::new(None),
        shared: shared.clone(),
    });
    let mut main = pin!(main(Spawner(shared.clone())));
    main_task.clone().wake();
    loop {
        let Some(task) = shared.queue.lock().unwrap().pop_front() else {
            thread::park();
            continue;
        };
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        if Arc::ptr_eq(&task, &main_task) {
            if let Poll::Ready(out) = main.as_mut().poll(&mut cx) {
                return out;
            }
        } else {
            let mut slot = task.future.lock().unwrap();
            if slot
                .as_mut()
                .is_some_and(|f| f.as_mut().poll(&mut cx).is_ready())
            {
                *slot = None; // finished: later wake-ups find nothing to poll
            }
        }
    }
}

// ------------------------------------------------ using deferral on it

/// A join handle built from the crate: a detached promise whose resolver
/// the task settles (a panicking task drops it: `Err(Abandoned)`). Lazy, like
/// every deferred promise: the task is spawned when the handle is first
/// polled.
fn spawn_lazy<T, F>(
    spawner: &Spawner,
    task: F,
) -> impl Future<Output = Result<T, PromiseError<()>>> + use<T, F>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let spawner = spawner.clone();
    DeferredPromise::<T, PromiseError<()>>::detached(move |resolver| {
        spawner.spawn(async move {
            let out = task.await; // not inside `resolve(..)`: `&Resolver` is not `Send`
            let _ = resolver.resolve(out); // refused only if nobody waits
        })
    })
}

/// A `static`, heap-free promise slot, settled by another task.
static READY: PromiseCell<&'static str, ()> = PromiseCell::new();

fn main() {
    let out = block_on(async |spawner: Spawner| {
        deferral::scope(async |d| {
            d.defer(|| println!("4. sync cleanup, last (LIFO)"));
            // Async cleanup that waits for another task of our runtime.
            let flush = spawn_lazy(&spawner, async { String::from("log flushed by a task") });
            d.defer_async(async move {
                println!("3. async cleanup: {}", flush.await.unwrap());
            });

            // A lazy promise: its executor runs at the first poll, and
            // hands the resolver to an OS thread (a driver, a callback...).
            let sensor = DeferredPromise::<u32, PromiseError<&str>>::detached(|resolver| {
                println!("1. sensor promise started");
                thread::spawn(move || resolver.resolve(42).unwrap());
            });
            let reading = sensor.await.unwrap();

            let (ready, resolver) = READY.promise().unwrap();
            spawner.spawn(async move { resolver.resolve("ready").unwrap() });
            println!("2. body: reading {reading}, {}", ready.await.unwrap());
            reading
        })
        .await
    });
    assert_eq!(out, 42);
    assert!(READY.is_free());
    println!("5. scope output: {out}");
}
