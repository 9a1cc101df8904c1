//! `TaskQueue` of N tasks against `futures::stream::iter(..).buffered(k)`
//! and `buffer_unordered(k)`, in one run: total task polls, stream polls and
//! time for N = 1..4096, to show that the queue's work is linear in N.
//!
//! Each task is a deferred timer: at its first poll it asks to be woken `d`
//! ticks later (d = 1 + i % 4), registering its waker with a tiny timer list;
//! the driver advances the tick whenever the stream is pending and wakes the
//! expired timers. A task is therefore polled exactly twice if only woken
//! tasks are polled. Concurrency k = 8, the queue's inline window 16 (the
//! tasks beyond it wait on the heap: default features).
//!
//! `cargo bench --bench queue -- --warm-up-time 1 --measurement-time 2`
//! prints the table first, then runs the criterion groups.

use std::cell::{Cell, RefCell};
use std::future::{Future, IntoFuture};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use deferral::{TaskQueue, Yield};
use futures::stream::{self, Stream, StreamExt};

const K: usize = 8;

/// The queue under test. With `alloc` (default features) a window of 16 and
/// the rest waiting on the heap; without it (`cargo bench --bench queue
/// --no-default-features`) every task must fit the inline window.
const WINDOW: usize = if cfg!(feature = "alloc") { 16 } else { 4096 };
const SIZES: [usize; 7] = [1, 4, 16, 64, 256, 1024, 4096];

thread_local! {
    static TASK_POLLS: Cell<u64> = const { Cell::new(0) };
    static TICK: Cell<u64> = const { Cell::new(0) };
    static TIMERS: RefCell<Vec<(u64, Waker)>> = const { RefCell::new(Vec::new()) };
}

/// A deferred task: nothing happens until `into_future` and the first poll.
struct Job(u64);

impl IntoFuture for Job {
    type Output = u64;
    type IntoFuture = Sleep;
    fn into_future(self) -> Sleep {
        Sleep {
            id: self.0,
            deadline: None,
        }
    }
}

/// Ready `1 + id % 4` ticks after its first poll; counts its polls.
struct Sleep {
    id: u64,
    deadline: Option<u64>,
}

impl Future for Sleep {
    type Output = u64;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        TASK_POLLS.with(|p| p.set(p.get() + 1));
        let now = TICK.with(Cell::get);
        let id = self.id;
        let deadline = *self.deadline.get_or_insert(now + 1 + id % 4);
        if now >= deadline {
            return Poll::Ready(id);
        }
        TIMERS.with(|t| t.borrow_mut().push((deadline, cx.waker().clone())));
        Poll::Pending
    }
}

/// Runs `stream` to its end; returns (items, stream polls, task polls).
fn drive<S: Stream>(stream: S) -> (usize, u64, u64) {
    TASK_POLLS.with(|p| p.set(0));
    TICK.with(|t| t.set(0));
    TIMERS.with(|t| t.borrow_mut().clear());
    let mut stream = pin!(stream);
    let mut cx = Context::from_waker(Waker::noop());
    let (mut items, mut stream_polls) = (0, 0);
    loop {
        stream_polls += 1;
        match stream.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(out)) => {
                black_box(out);
                items += 1;
            }
            Poll::Ready(None) => break,
            Poll::Pending => {
                let now = TICK.with(|t| {
                    t.set(t.get() + 1);
                    t.get()
                });
                let expired: Vec<Waker> = TIMERS.with(|t| {
                    let mut t = t.borrow_mut();
                    assert!(!t.is_empty(), "pending with no timer: a lost wake-up");
                    let mut expired = Vec::new();
                    t.retain(|(deadline, w)| {
                        if *deadline <= now {
                            expired.push(w.clone());
                            false
                        } else {
                            true
                        }
                    });
                    expired
                });
                expired.into_iter().for_each(Waker::wake);
            }
        }
    }
    (items, stream_polls, TASK_POLLS.with(Cell::get))
}

#[derive(Clone, Copy)]
enum Impl {
    QueueSubmission,
    QueueCompletion,
    Buffered,
    BufferUnordered,
}

impl Impl {
    const ALL: [Impl; 4] = [
        Impl::QueueSubmission,
        Impl::QueueCompletion,
        Impl::Buffered,
        Impl::BufferUnordered,
    ];

    fn name(self) -> &'static str {
        match self {
            Impl::QueueSubmission => "TaskQueue submission",
            Impl::QueueCompletion => "TaskQueue completion",
            Impl::Buffered => "buffered(8)",
            Impl::BufferUnordered => "buffer_unordered(8)",
        }
    }

    fn run(self, n: usize) -> (usize, u64, u64) {
        let jobs = (0..n as u64).map(Job);
        match self {
            Impl::QueueSubmission | Impl::QueueCompletion => {
                let order = if let Impl::QueueSubmission = self {
                    Yield::InSubmissionOrder
                } else {
                    Yield::InCompletionOrder
                };
                let mut queue = Box::pin(
                    TaskQueue::<Job>::with_capacity::<WINDOW>()
                        .concurrency(K)
                        .order(order),
                );
                for job in jobs {
                    queue.as_mut().push(job).unwrap();
                }
                drive(queue)
            }
            Impl::Buffered => drive(stream::iter(jobs.map(IntoFuture::into_future)).buffered(K)),
            Impl::BufferUnordered => {
                drive(stream::iter(jobs.map(IntoFuture::into_future)).buffer_unordered(K))
            }
        }
    }
}

/// Median time of one run of `imp` with `n` tasks.
fn time(imp: Impl, n: usize) -> Duration {
    let reps = (20_000 / n).clamp(5, 2_000);
    let mut samples: Vec<Duration> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                black_box(imp.run(n));
            }
            start.elapsed() / reps as u32
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn print_table() {
    println!(
        "\nTaskQueue (window {}, {}) vs futures buffered/buffer_unordered, k = {K}, timer tasks (2 polls each if only woken tasks are polled)\n",
        WINDOW,
        if cfg!(feature = "alloc") {
            "alloc: per-slot wakers"
        } else {
            "no alloc: one waker"
        },
    );
    println!(
        "| {:<22} | {:>5} | {:>11} | {:>12} | {:>13} | {:>11} | {:>9} |",
        "impl", "N", "task polls", "polls / task", "stream polls", "time (µs)", "ns / task"
    );
    println!(
        "|{:-<24}|{:->7}|{:->13}|{:->14}|{:->15}|{:->13}|{:->11}|",
        "", "", "", "", "", "", ""
    );
    for n in SIZES {
        for imp in Impl::ALL {
            let (items, stream_polls, task_polls) = imp.run(n);
            assert_eq!(items, n, "{}", imp.name());
            let t = time(imp, n);
            println!(
                "| {:<22} | {:>5} | {:>11} | {:>12.2} | {:>13} | {:>11.1} | {:>9.1} |",
                imp.name(),
                n,
                task_polls,
                task_polls as f64 / n as f64,
                stream_polls,
                t.as_secs_f64() * 1e6,
                t.as_nanos() as f64 / n as f64,
            );
        }
    }
    println!();
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    for n in SIZES {
        for imp in Impl::ALL {
            group.bench_with_input(BenchmarkId::new(imp.name(), n), &n, |b, &n| {
                b.iter(|| imp.run(n))
            });
        }
    }
    group.finish();
}

fn main() {
    print_table();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
