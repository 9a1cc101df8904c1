//! `TaskQueue` of N tasks against `futures::stream::iter(..).buffered(k)` /
//! `buffer_unordered(k)` and `futures-buffered`'s `buffered_ordered(k)` /
//! `buffered_unordered(k)`, side by side in one run, for N = 1..4096: task
//! polls, stream polls, allocations and callgrind instruction counts per
//! task (and wall time), to show that the queue's work is linear in N and
//! near what users would pick instead.
//!
//! Two workloads, k = 8, the queue's inline window 16 (the tasks beyond it
//! wait on the heap: default features):
//!
//! - `timer`: each task is a deferred timer: at its first poll it asks to
//!   be woken `d` ticks later (d = 1 + i % 4), registering its waker with a
//!   tiny timer list; the driver advances the tick whenever the stream is
//!   pending and wakes the expired timers. A task is polled exactly twice
//!   if only woken tasks are polled.
//! - `yield`: each task wakes itself (`wake_by_ref`) and returns `Pending`
//!   once, then finishes: nearly all the work is the queue's own.
//!
//! Commands (each case is one complete iteration: build the stream, push
//! or feed N tasks, drive it to its end with a no-op waker, drop it):
//!
//! - `cargo bench -p deferral-bench --bench queue -- table`: polls and allocations per task,
//!   and median wall time, without criterion.
//! - `cargo bench -p deferral-bench --bench queue -- instructions`: the same cases under
//!   `valgrind --tool=callgrind --toggle-collect='*deferral_bench_measure*'`
//!   (the `case` sub-command runs one), instructions per task and the
//!   ratios; the table for BENCHMARKS.md.
//! - `cargo bench -p deferral-bench --bench queue`: the criterion groups.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::future::{Future, IntoFuture};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use deferral::TaskQueue;
use deferral::queue::Yield;
use futures::stream::{self, Stream, StreamExt};
use futures_buffered::BufferedStreamExt;

const K: usize = 8;

/// The queue under test. With `alloc` (default features) a window of 16 and
/// the rest waiting on the heap; without it (`cargo bench -p deferral-bench --bench queue
/// --no-default-features`) every task must fit the inline window.
const WINDOW: usize = 16;
const SIZES: [usize; 7] = [1, 4, 16, 64, 256, 1024, 4096];

/// Counts allocations, for the allocations-per-task column.
struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // ORDERING: a statistic read on this thread after the case.
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // ORDERING: as in `alloc`.
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

thread_local! {
    static TASK_POLLS: Cell<u64> = const { Cell::new(0) };
    static TICK: Cell<u64> = const { Cell::new(0) };
    static TIMERS: RefCell<Vec<(u64, Waker)>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    Timer,
    Yield,
}

impl Work {
    const ALL: [Work; 2] = [Work::Timer, Work::Yield];

    fn name(self) -> &'static str {
        match self {
            Work::Timer => "timer",
            Work::Yield => "yield",
        }
    }
}

/// A deferred task: nothing happens until `into_future` and the first poll.
struct Job(u64, Work);

impl IntoFuture for Job {
    type Output = u64;
    type IntoFuture = Sleep;
    fn into_future(self) -> Sleep {
        Sleep {
            id: self.0,
            work: self.1,
            deadline: None,
        }
    }
}

/// `timer`: ready `1 + id % 4` ticks after its first poll; `yield`: ready
/// at its second poll. Counts its polls.
struct Sleep {
    id: u64,
    work: Work,
    deadline: Option<u64>,
}

impl Future for Sleep {
    type Output = u64;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        TASK_POLLS.with(|p| p.set(p.get() + 1));
        let id = self.id;
        if self.work == Work::Yield {
            if self.deadline.replace(0).is_some() {
                return Poll::Ready(id);
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let now = TICK.with(Cell::get);
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
                TIMERS.with(|t| {
                    let mut t = t.borrow_mut();
                    let mut i = 0;
                    while i < t.len() {
                        if t[i].0 <= now {
                            t.swap_remove(i).1.wake();
                        } else {
                            i += 1;
                        }
                    }
                });
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
    FbOrdered,
    FbUnordered,
}

impl Impl {
    const ALL: [Impl; 6] = [
        Impl::QueueSubmission,
        Impl::QueueCompletion,
        Impl::Buffered,
        Impl::BufferUnordered,
        Impl::FbOrdered,
        Impl::FbUnordered,
    ];

    fn name(self) -> &'static str {
        match self {
            Impl::QueueSubmission => "TaskQueue submission",
            Impl::QueueCompletion => "TaskQueue completion",
            Impl::Buffered => "futures buffered",
            Impl::BufferUnordered => "futures buffer_unordered",
            Impl::FbOrdered => "futures-buffered ordered",
            Impl::FbUnordered => "futures-buffered unordered",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Impl::QueueSubmission => "queue_submission",
            Impl::QueueCompletion => "queue_completion",
            Impl::Buffered => "buffered",
            Impl::BufferUnordered => "buffer_unordered",
            Impl::FbOrdered => "fb_ordered",
            Impl::FbUnordered => "fb_unordered",
        }
    }

    #[inline(never)]
    fn run(self, work: Work, n: usize) -> (usize, u64, u64) {
        let jobs = (0..n as u64).map(move |i| Job(i, work));
        let futures = jobs.clone().map(IntoFuture::into_future);
        match self {
            Impl::QueueSubmission | Impl::QueueCompletion => {
                let order = if let Impl::QueueSubmission = self {
                    Yield::InSubmissionOrder
                } else {
                    Yield::InCompletionOrder
                };
                // On the stack, like the other streams (`drive` pins them
                // there).
                let mut queue = pin!(
                    TaskQueue::<Job>::with_capacity::<WINDOW>()
                        .concurrency(K)
                        .order(order)
                );
                for job in jobs {
                    queue.as_mut().push(job).unwrap();
                }
                drive(queue)
            }
            Impl::Buffered => drive(stream::iter(futures).buffered(K)),
            Impl::BufferUnordered => drive(stream::iter(futures).buffer_unordered(K)),
            Impl::FbOrdered => drive(stream::iter(futures).buffered_ordered(K)),
            Impl::FbUnordered => drive(stream::iter(futures).buffered_unordered(K)),
        }
    }
}

fn parse_impl(id: &str) -> Impl {
    *Impl::ALL
        .iter()
        .find(|i| i.id() == id)
        .unwrap_or_else(|| panic!("no impl {id}"))
}

fn parse_work(name: &str) -> Work {
    *Work::ALL
        .iter()
        .find(|w| w.name() == name)
        .unwrap_or_else(|| panic!("no workload {name}"))
}

/// Median time of one run of `imp` with `n` tasks.
fn time(imp: Impl, work: Work, n: usize) -> Duration {
    let reps = (20_000 / n).clamp(5, 2_000);
    let mut samples: Vec<Duration> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                black_box(imp.run(work, n));
            }
            start.elapsed() / reps as u32
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// Allocations of one run.
fn allocations(imp: Impl, work: Work, n: usize) -> u64 {
    // ORDERING: single-threaded statistic.
    let before = ALLOCS.load(Ordering::Relaxed);
    black_box(imp.run(work, n));
    ALLOCS.load(Ordering::Relaxed) - before
}

fn print_table() {
    println!(
        "\nTaskQueue (window {}, per-slot wakers) vs futures and futures-buffered, k = {K}\n",
        WINDOW,
    );
    println!(
        "| work  | {:<26} | {:>5} | {:>12} | {:>13} | {:>12} | {:>9} |",
        "impl", "N", "polls / task", "stream polls", "allocs / task", "ns / task"
    );
    println!(
        "|-------|{:-<28}|{:->7}|{:->14}|{:->15}|{:->14}|{:->11}|",
        "", "", "", "", "", ""
    );
    for work in Work::ALL {
        for n in SIZES {
            for imp in Impl::ALL {
                let (items, stream_polls, task_polls) = imp.run(work, n);
                assert_eq!(items, n, "{}", imp.name());
                let allocs = allocations(imp, work, n);
                let t = time(imp, work, n);
                println!(
                    "| {:<5} | {:<26} | {:>5} | {:>12.2} | {:>13} | {:>12.2} | {:>9.1} |",
                    work.name(),
                    imp.name(),
                    n,
                    task_polls as f64 / n as f64,
                    stream_polls,
                    allocs as f64 / n as f64,
                    t.as_nanos() as f64 / n as f64,
                );
            }
        }
    }
    println!();
}

// ------------------------------------------------------------- callgrind

#[inline(never)]
fn deferral_bench_warm_up(imp: Impl, work: Work, n: usize, iters: u64) {
    for _ in 0..iters {
        black_box(imp.run(work, n));
    }
}

#[inline(never)]
fn deferral_bench_measure(imp: Impl, work: Work, n: usize, iters: u64) {
    for _ in 0..iters {
        black_box(imp.run(work, n));
    }
}

fn iters_for(n: usize) -> u64 {
    (4096 / n as u64).clamp(4, 200)
}

/// `case IMPL WORK N ITERS`: one case, measured (for callgrind).
fn case(imp: &str, work: &str, n: &str, iters: &str) {
    let (imp, work) = (parse_impl(imp), parse_work(work));
    let n: usize = n.parse().expect("N");
    let iters: u64 = iters.parse().expect("ITERS");
    deferral_bench_warm_up(imp, work, n, 2);
    // ORDERING: single-threaded statistic.
    let before = ALLOCS.load(Ordering::Relaxed);
    deferral_bench_measure(imp, work, n, iters);
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let (_, _, task_polls) = imp.run(work, n);
    println!("allocs {allocs}");
    println!("polls {task_polls}");
}

/// Instructions, allocations and task polls per task of one case, under
/// callgrind.
fn callgrind(imp: Impl, work: Work, n: usize) -> Option<(f64, f64, f64)> {
    let iters = iters_for(n);
    let file = std::env::temp_dir().join(format!(
        "deferral-queue-{}-{}-{}-{n}.callgrind",
        std::process::id(),
        imp.id(),
        work.name()
    ));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg("--toggle-collect=*deferral_bench_measure*")
        .arg(std::env::current_exe().ok()?)
        .args([
            "case",
            imp.id(),
            work.name(),
            &n.to_string(),
            &iters.to_string(),
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let read = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let profile = std::fs::read_to_string(&file).ok()?;
    let _ = std::fs::remove_file(&file);
    let total = profile
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())?;
    let per_task = |v: f64| v / n as f64;
    Some((
        per_task(total / iters as f64),
        per_task(read("allocs ")? / iters as f64),
        per_task(read("polls ")?),
    ))
}

fn instructions() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind not found (apt-get install valgrind)");
        return;
    }
    println!(
        "\nInstructions per task (callgrind `Ir`, whole run: build, push/feed N tasks, drive to the end, drop), k = {K}, TaskQueue window {WINDOW}; ratios are TaskQueue ÷ the other\n"
    );
    println!(
        "| work | N | TaskQueue completion | futures buffer_unordered | futures-buffered unordered | ÷ buffer_unordered | ÷ futures-buffered | TaskQueue submission | futures buffered | futures-buffered ordered | ÷ buffered | ÷ futures-buffered | polls / task (queue, buffer_unordered, fb) | allocs / task (queue, buffer_unordered, fb) |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|");
    for work in Work::ALL {
        for n in SIZES {
            let m: Vec<Option<(f64, f64, f64)>> =
                Impl::ALL.iter().map(|&i| callgrind(i, work, n)).collect();
            let ir = |i: usize| m[i].map(|v| v.0);
            let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => format!("{:.2}×", a / b),
                _ => "—".to_string(),
            };
            let triple = |f: fn(&(f64, f64, f64)) -> f64, a: usize, b: usize, c: usize| {
                let g = |i: usize| {
                    m[i].as_ref()
                        .map_or("—".to_string(), |v| format!("{:.2}", f(v)))
                };
                format!("{}, {}, {}", g(a), g(b), g(c))
            };
            println!(
                "| {} | {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                work.name(),
                fmt(ir(1)),
                fmt(ir(3)),
                fmt(ir(5)),
                ratio(ir(1), ir(3)),
                ratio(ir(1), ir(5)),
                fmt(ir(0)),
                fmt(ir(2)),
                fmt(ir(4)),
                ratio(ir(0), ir(2)),
                ratio(ir(0), ir(4)),
                triple(|v| v.2, 1, 3, 5),
                triple(|v| v.1, 1, 3, 5),
            );
        }
    }
    println!();
}

fn bench(c: &mut Criterion) {
    for work in Work::ALL {
        let mut group = c.benchmark_group(format!("queue_{}", work.name()));
        for n in SIZES {
            for imp in Impl::ALL {
                group.bench_with_input(BenchmarkId::new(imp.name(), n), &n, |b, &n| {
                    b.iter(|| imp.run(work, n))
                });
            }
        }
        group.finish();
    }
}

fn main() {
    // `cargo bench` appends `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["case", imp, work, n, iters] => case(imp, work, n, iters),
        ["instructions", ..] => instructions(),
        ["table", ..] => print_table(),
        _ => {
            print_table();
            let mut c = Criterion::default().configure_from_args();
            bench(&mut c);
            c.final_summary();
        }
    }
}
