//! "No executor assumptions", shown: the scenarios of `tests/scenarios/` (one
//! suite, written once) run on tokio (current-thread and multi-thread),
//! `futures::executor` (`block_on` and `LocalPool`), smol's `async-executor`
//! and Embassy's executor on the host (`platform-std`). Bare metal (Embassy on
//! a Cortex-M3 under QEMU) is `examples/firmware/`.
//!
//! One test per executor and scenario, e.g.
//! `cargo test --test executors embassy::shared_promise`.
// Real runtimes: too slow under Miri, and tokio has its own `cfg(loom)` mode;
// the scenarios use `SharedPromise`, `detached` and `on_cancel` (`alloc`).
#![cfg(all(feature = "alloc", not(miri), not(loom)))]

mod scenarios;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

use scenarios::{Spawn, Task};

/// Runs `run` on its own thread and fails the test if it panics or has not
/// finished within a minute: a scenario whose wake-up is lost fails instead
/// of hanging the test run.
fn watchdog(run: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        run();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => thread.join().expect("scenario thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // `run` panicked: re-raise its panic here.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("scenario hung (lost wake-up?)"),
    }
}

// ------------------------------------------------------------------ tokio

struct TokioSpawn(tokio::runtime::Handle);

impl Spawn for TokioSpawn {
    fn spawn(&self, task: Task) {
        drop(self.0.spawn(task)); // detached
    }
}

fn tokio_with<F, Fut>(runtime: tokio::runtime::Runtime, scenario: F)
where
    F: FnOnce(TokioSpawn) -> Fut,
    Fut: Future<Output = ()>,
{
    let sp = TokioSpawn(runtime.handle().clone());
    runtime.block_on(scenario(sp));
}

fn tokio_current_thread<F, Fut>(scenario: F)
where
    F: FnOnce(TokioSpawn) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    watchdog(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tokio_with(rt, scenario);
    });
}

/// The scenario runs in `block_on` on the test's thread; what it spawns runs
/// on two worker threads, so wake-ups cross threads.
fn tokio_multi_thread<F, Fut>(scenario: F)
where
    F: FnOnce(TokioSpawn) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    watchdog(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        tokio_with(rt, scenario);
    });
}

// -------------------------------------------------------- futures::executor

/// `block_on` has no spawner: "another task" is another thread running its
/// own `block_on`.
struct ThreadSpawn;

impl Spawn for ThreadSpawn {
    fn spawn(&self, task: Task) {
        std::thread::spawn(move || futures::executor::block_on(task));
    }
}

fn futures_block_on<F, Fut>(scenario: F)
where
    F: FnOnce(ThreadSpawn) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    watchdog(|| futures::executor::block_on(scenario(ThreadSpawn)));
}

struct LocalPoolSpawn(futures::executor::LocalSpawner);

impl Spawn for LocalPoolSpawn {
    fn spawn(&self, task: Task) {
        use futures::task::LocalSpawnExt;
        self.0.spawn_local(task).expect("the pool is running");
    }
}

/// Everything on one thread: the scenario and its spawned tasks are tasks
/// of one `LocalPool`.
fn futures_local_pool<F, Fut>(scenario: F)
where
    F: FnOnce(LocalPoolSpawn) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    watchdog(|| {
        let mut pool = futures::executor::LocalPool::new();
        let sp = LocalPoolSpawn(pool.spawner());
        pool.run_until(scenario(sp));
    });
}

// ------------------------------------------------------- smol's executor

struct SmolSpawn(Arc<async_executor::Executor<'static>>);

impl Spawn for SmolSpawn {
    fn spawn(&self, task: Task) {
        self.0.spawn(task).detach();
    }
}

/// The scenario runs inside `Executor::run` on the test's thread, and a
/// second thread runs the same executor, so spawned tasks may run on either.
fn smol<F, Fut>(scenario: F)
where
    F: FnOnce(SmolSpawn) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    watchdog(|| {
        let ex = Arc::new(async_executor::Executor::new());
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
        let helper = {
            let ex = ex.clone();
            std::thread::spawn(move || futures::executor::block_on(ex.run(stop_rx)))
        };
        futures::executor::block_on(ex.run(scenario(SmolSpawn(ex.clone()))));
        drop(stop_tx);
        let _ = helper.join().expect("helper thread");
    });
}

// ------------------------------------------------------- embassy (host)

type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// The scenario itself, as an Embassy task (tasks are statically allocated:
/// one pool slot per concurrently running test).
#[embassy_executor::task(pool_size = 8)]
async fn embassy_scenario(scenario: LocalTask, done: Arc<AtomicBool>) {
    scenario.await;
    done.store(true, SeqCst);
}

/// A task a scenario spawns.
#[embassy_executor::task(pool_size = 32)]
async fn embassy_spawned(task: Task) {
    task.await;
}

#[derive(Clone, Copy)]
struct EmbassySpawn(embassy_executor::Spawner);

impl Spawn for EmbassySpawn {
    fn spawn(&self, task: Task) {
        self.0
            .spawn(embassy_spawned(task).expect("embassy task pool has room"));
    }
}

/// Embassy's thread executor never returns from `run`; `run_until` stops it
/// once the scenario's task has finished (the executor is leaked: it must
/// be `'static`).
fn embassy<F, Fut>(scenario: F)
where
    F: FnOnce(EmbassySpawn) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    watchdog(|| {
        let executor = Box::leak(Box::new(embassy_executor::Executor::new()));
        let done = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        executor.run_until(
            move |spawner| {
                let scenario: LocalTask = Box::pin(scenario(EmbassySpawn(spawner)));
                spawner.spawn(embassy_scenario(scenario, finished).expect("pool has room"));
            },
            || done.load(SeqCst),
        );
    });
}

// ---------------------------------------------------------------- the suite

/// One test per executor and scenario: `executor::scenario`.
macro_rules! suite {
    (executors: [$($executor:ident),* $(,)?], scenarios: $scenarios:tt) => {
        $( suite!(@on $executor $scenarios); )*
    };
    (@on $executor:ident [$($scenario:ident),* $(,)?]) => {
        mod $executor {
            $(
                #[test]
                fn $scenario() {
                    super::$executor(|sp| async move { super::scenarios::$scenario(&sp).await });
                }
            )*
        }
    };
}

suite! {
    executors: [
        tokio_current_thread,
        tokio_multi_thread,
        futures_block_on,
        futures_local_pool,
        smol,
        embassy,
    ],
    scenarios: [
        cleanup_order,
        cleanup_after_error,
        cleanup_after_cancellation,
        lazy_start,
        resolve_from_another_task,
        shared_promise,
        task_queue,
    ]
}
