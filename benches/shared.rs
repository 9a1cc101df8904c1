//! Contention: N waiters on one `SharedPromise`, against
//! `futures::future::Shared`, for N = 1, 64 and 1000. The source is a
//! `futures::channel::oneshot::Receiver<u32>`; every waiter polls its clone
//! once (and waits), then the timer starts, the sender sends, and the timer
//! stops when the last waiter has its value (and dropped its clone). Setting
//! the waiters up and tearing them down is not timed (`iter_custom`).
//!
//! Two kinds of waiters, both measured, because each is honest about
//! something different:
//!
//! - `shared_waiters_threads`: each waiter is an OS thread blocked in
//!   `futures::executor::block_on` (a pool of N threads, reused across
//!   iterations, so thread creation is not what is measured). With 1000
//!   threads on a 2-core machine this is the worst case for the waiter
//!   list's lock: every thread is woken at once and they all come back for
//!   it, and a thread holding it can be preempted. It is the case the review
//!   of `bf5d9a4` measured (a spin lock there took 0.58-2.86 s).
//! - `shared_waiters_tasks`: each waiter is a task on a tokio multi-thread
//!   runtime with 2 workers: how a `SharedPromise` is normally used. Only two
//!   threads touch the lock at a time; the executor's own wake-up and
//!   scheduling costs are part of the time.
//!
//! What to expect: with threads, `SharedPromise` wakes its waiters after
//! releasing its lock (it must: a wake may re-enter the promise), so woken
//! threads finish while the rest are still being woken; `futures::Shared`
//! wakes under its `Mutex`, and the woken threads queue up behind it. With
//! tokio tasks the same difference costs us: a worker that picks up a task
//! woken by `futures::Shared` blocks on that `Mutex`, so tokio counts it as
//! busy and the waking thread (outside the runtime) never unparks it; the
//! queued tasks are then drained in one batch. Our woken tasks finish at
//! once, the worker goes idle, and the next wake unparks it again: one
//! park/unpark per task, whose cost grows with the machine's load (both
//! promises poll each task exactly twice here; the time goes to the
//! scheduler). Waking under the lock is not an option: a wake may re-enter
//! the promise.
//!
//! Run: `cargo bench -p deferral-bench --bench shared` (add `-- threads/1000` to filter), or
//! `DEFERRAL_PAIRED=200 cargo bench -p deferral-bench --bench shared` for paired medians (see
//! [`paired`]).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use deferral::SharedPromise;
use futures::FutureExt;
use futures::channel::oneshot;

type Source = oneshot::Receiver<u32>;
type Output = Result<u32, oneshot::Canceled>;

const WAITERS: [usize; 3] = [1, 64, 1000];

/// Counts down; the last count unparks the thread that made it.
struct Latch {
    left: AtomicUsize,
    waiter: Thread,
}

impl Latch {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Latch {
            left: AtomicUsize::new(n),
            waiter: thread::current(),
        })
    }

    fn count_down(&self) {
        if self.left.fetch_sub(1, SeqCst) == 1 {
            self.waiter.unpark();
        }
    }

    /// Parks until the count reaches zero (on the thread that made it).
    fn wait(&self) {
        while self.left.load(SeqCst) != 0 {
            thread::park();
        }
    }
}

/// Awaits `clone`, counting `polled` down after its first poll; the clone
/// is dropped as soon as it completes (inside the timed part, as it would
/// be in real code).
async fn wait_on<S: Future<Output = Output> + Unpin>(clone: S, polled: Arc<Latch>) -> Output {
    let (mut clone, mut first) = (Some(clone), Some(polled));
    std::future::poll_fn(move |cx| {
        let poll = Pin::new(clone.as_mut().expect("polled after completion")).poll(cx);
        if let Some(polled) = first.take() {
            polled.count_down();
        }
        if poll.is_ready() {
            clone = None;
        }
        poll
    })
    .await
}

type Job = Box<dyn FnOnce() + Send>;

/// N threads, each running the jobs it is sent, one at a time.
struct Pool {
    senders: Vec<mpsc::Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(n: usize) -> Self {
        let (senders, handles) = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Job>();
                let handle = thread::spawn(move || {
                    for job in rx {
                        job();
                    }
                });
                (tx, handle)
            })
            .unzip();
        Pool { senders, handles }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.senders.clear();
        for h in self.handles.drain(..) {
            h.join().unwrap();
        }
    }
}

/// One iteration with the waiters on `pool`'s threads; returns the time from
/// the send to the last waiter done.
fn on_threads<S>(pool: &Pool, wrap: fn(Source) -> S) -> Duration
where
    S: Future<Output = Output> + Clone + Unpin + Send + 'static,
{
    let n = pool.senders.len();
    let (tx, rx) = oneshot::channel();
    let shared = wrap(rx);
    let (polled, done) = (Latch::new(n), Latch::new(n));
    for sender in &pool.senders {
        let (clone, polled, done) = (shared.clone(), polled.clone(), done.clone());
        let job: Job = Box::new(move || {
            black_box(futures::executor::block_on(wait_on(clone, polled)).unwrap());
            done.count_down();
        });
        sender.send(job).unwrap();
    }
    polled.wait();
    let start = Instant::now();
    tx.send(7).unwrap();
    done.wait();
    let elapsed = start.elapsed();
    drop(shared);
    elapsed
}

/// One iteration with `n` tasks on `rt`; returns the time from the send to
/// the last task done.
fn as_tasks<S>(rt: &tokio::runtime::Runtime, n: usize, wrap: fn(Source) -> S) -> Duration
where
    S: Future<Output = Output> + Clone + Unpin + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let shared = wrap(rx);
    let (polled, done) = (Latch::new(n), Latch::new(n));
    for _ in 0..n {
        let (clone, polled, done) = (shared.clone(), polled.clone(), done.clone());
        drop(rt.spawn(async move {
            black_box(wait_on(clone, polled).await.unwrap());
            done.count_down();
        }));
    }
    polled.wait();
    let start = Instant::now();
    tx.send(7).unwrap();
    done.wait();
    let elapsed = start.elapsed();
    drop(shared);
    elapsed
}

fn ours(source: Source) -> SharedPromise<Source> {
    SharedPromise::new(source)
}

fn theirs(source: Source) -> futures::future::Shared<Source> {
    source.shared()
}

fn total<F: FnMut() -> Duration>(iters: u64, mut f: F) -> Duration {
    (0..iters).map(|_| f()).sum()
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("shared_waiters_threads");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for n in WAITERS {
        let pool = Pool::new(n);
        group.bench_function(BenchmarkId::new("deferral_SharedPromise", n), |b| {
            b.iter_custom(|iters| total(iters, || on_threads(&pool, ours)))
        });
        group.bench_function(BenchmarkId::new("futures_Shared", n), |b| {
            b.iter_custom(|iters| total(iters, || on_threads(&pool, theirs)))
        });
    }
    group.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("shared_waiters_tasks");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for n in WAITERS {
        group.bench_function(BenchmarkId::new("deferral_SharedPromise", n), |b| {
            b.iter_custom(|iters| total(iters, || as_tasks(&rt, n, ours)))
        });
        group.bench_function(BenchmarkId::new("futures_Shared", n), |b| {
            b.iter_custom(|iters| total(iters, || as_tasks(&rt, n, theirs)))
        });
    }
    group.finish();
}

/// `DEFERRAL_PAIRED=rounds cargo bench -p deferral-bench --bench shared`: instead of
/// criterion, run ours and theirs alternately (the order flipped every
/// round) and print the medians and their ratio. On a shared machine the
/// load changes between criterion's benchmarks; a paired run sees the same
/// load for both.
fn paired(rounds: usize) {
    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }
    fn report(what: &str, n: usize, ours: Vec<Duration>, theirs: Vec<Duration>) {
        let (o, t) = (median(ours), median(theirs));
        println!(
            "{what:>7} {n:>5}: SharedPromise {o:>10.2?}  futures::Shared {t:>10.2?}  ratio {:.2}",
            o.as_secs_f64() / t.as_secs_f64()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for n in WAITERS {
        let pool = Pool::new(n);
        let (mut ours_t, mut theirs_t) = (Vec::new(), Vec::new());
        let (mut ours_k, mut theirs_k) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                ours_t.push(on_threads(&pool, ours));
                theirs_t.push(on_threads(&pool, theirs));
                ours_k.push(as_tasks(&rt, n, ours));
                theirs_k.push(as_tasks(&rt, n, theirs));
            } else {
                theirs_t.push(on_threads(&pool, theirs));
                ours_t.push(on_threads(&pool, ours));
                theirs_k.push(as_tasks(&rt, n, theirs));
                ours_k.push(as_tasks(&rt, n, ours));
            }
        }
        report("threads", n, ours_t, theirs_t);
        report("tasks", n, ours_k, theirs_k);
    }
}

criterion_group!(shared, benches);

fn main() {
    match std::env::var("DEFERRAL_PAIRED") {
        Ok(rounds) => paired(rounds.parse().expect("DEFERRAL_PAIRED=<rounds>")),
        Err(_) => {
            shared();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
