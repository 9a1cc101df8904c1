//! The benchmark cases, shared by the wall-time harnesses (`scope.rs`,
//! `promise.rs`, criterion) and the instruction-count harness
//! (`instructions.rs`, callgrind).
//!
//! Every case is a plain `fn()` that does one complete iteration of the work
//! (create, drive by hand with a no-op waker, settle, drop) and `black_box`es
//! its inputs and outputs. No runtime: the figures measure the crates, not an
//! executor. Each group lists our implementation(s) (`ours`) first, then the
//! alternatives a user would pick instead (`theirs`).

pub mod promise;
pub mod scope;

use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};

/// Polls `fut` with a no-op waker until it is ready (the futures here wake
/// themselves or are settled by the case between polls).
#[inline(always)]
pub fn block<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Polls `fut` once with a no-op waker.
#[inline(always)]
pub fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// An async thunk that yields once (wakes itself, returns `Pending`), then
/// finishes: the smallest cleanup that really awaits.
pub struct YieldOnce {
    yielded: bool,
    x: u64,
}

impl YieldOnce {
    #[inline(always)]
    pub fn new(x: u64) -> Self {
        YieldOnce { yielded: false, x }
    }
}

impl Future for YieldOnce {
    type Output = ();
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            core::hint::black_box(self.x);
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// The registry of every group: `$cb!` receives, per group, its id (also the
/// criterion group name), its title, a note explaining the pairing, and its
/// rows (`ours`/`theirs`, id, label, case function).
#[allow(unused_macros)]
macro_rules! scope_groups {
    ($cb:ident) => {
        $cb! {
            "scope_empty" "Empty scope vs. bare body"
            "The same trivial body (returns a `black_box`ed `u32`), created and polled to completion, with and without `deferral::scope` around it (default capacity, default `std` features: the scope catches panics and publishes the ambient scope while polling)."
            [
                ours "scope" "`deferral::scope`, no thunk" $crate::cases::scope::empty_ours,
                theirs "bare" "bare `async` body" $crate::cases::scope::empty_bare,
            ]
            "scope_sync_1" "Register + run 1 sync thunk"
            "One closure capturing a `u64`, registered in the body and run at its end. Every contender runs inside an `async` block polled once, so they all pay the same future overhead. `scopeguard::defer!` and `async_safe_defer::defer` are stack guards (no type erasure, cannot be cancelled by handle or reordered); the boxed baseline is `Vec<Box<dyn FnOnce() + Send>>` push, then pop-and-call."
            [
                ours "scope" "`deferral::scope` + `d.defer`" $crate::cases::scope::sync_ours::<1>,
                theirs "scopeguard" "`scopeguard::defer!`" $crate::cases::scope::sync_scopeguard_macro,
                theirs "async_safe_defer" "`async_safe_defer::defer`" $crate::cases::scope::sync_asd::<1>,
                theirs "boxed" "`Vec<Box<dyn FnOnce()>>`" $crate::cases::scope::sync_boxed::<1>,
            ]
            "scope_sync_8" "Register + run 8 sync thunks"
            "As above with 8 closures; the stack guards are an array of 8 `scopeguard::guard`s / `async_safe_defer::defer`s built with `array::from_fn` (same closure type, dropped in array order)."
            [
                ours "scope" "`deferral::scope` + 8 × `d.defer`" $crate::cases::scope::sync_ours::<8>,
                theirs "scopeguard" "`[scopeguard::guard; 8]`" $crate::cases::scope::sync_scopeguard::<8>,
                theirs "async_safe_defer" "`[async_safe_defer::defer; 8]`" $crate::cases::scope::sync_asd::<8>,
                theirs "boxed" "`Vec<Box<dyn FnOnce()>>`" $crate::cases::scope::sync_boxed::<8>,
            ]
            "scope_sync_64" "Register + run 64 sync thunks"
            "As above with 64 closures. Our scope gets `capacity::<4096>()` so all 64 stay inline (the default 256 bytes would spill to the heap; that row is shown too)."
            [
                ours "scope" "`deferral` (capacity 4096) + 64 × `d.defer`" $crate::cases::scope::sync_ours_big::<64>,
                ours "scope_spill" "`deferral::scope` (default 256 B, spills)" $crate::cases::scope::sync_ours::<64>,
                theirs "scopeguard" "`[scopeguard::guard; 64]`" $crate::cases::scope::sync_scopeguard::<64>,
                theirs "async_safe_defer" "`[async_safe_defer::defer; 64]`" $crate::cases::scope::sync_asd::<64>,
                theirs "boxed" "`Vec<Box<dyn FnOnce()>>`" $crate::cases::scope::sync_boxed::<64>,
            ]
            "scope_async_1" "Register + run 1 async thunk"
            "One future (`YieldOnce`: wakes itself and returns `Pending` once, then finishes) registered in the body and awaited after it; the whole scope is polled until ready. `async_safe_defer::AsyncScope` boxes a closure and the future it returns (its documented `async_scope!` usage); the boxed baseline pushes `Pin<Box<dyn Future + Send>>` on a `Vec` and awaits them in LIFO order; `join_all`/`FuturesUnordered` are the concurrent baselines over the same boxed futures."
            [
                ours "lifo" "`deferral`, `Lifo`" $crate::cases::scope::async_ours::<1, false>,
                ours "concurrent" "`deferral`, `Concurrent`" $crate::cases::scope::async_ours::<1, true>,
                theirs "async_safe_defer" "`async_safe_defer::AsyncScope`" $crate::cases::scope::async_asd::<1>,
                theirs "boxed" "`Vec<Pin<Box<dyn Future>>>`, sequential" $crate::cases::scope::async_boxed::<1>,
                theirs "join_all" "`futures::future::join_all` (boxed)" $crate::cases::scope::async_join_all::<1>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed)" $crate::cases::scope::async_unordered::<1>,
            ]
            "scope_async_8" "Register + run 8 async thunks"
            "As above with 8 `YieldOnce` futures."
            [
                ours "lifo" "`deferral`, `Lifo`" $crate::cases::scope::async_ours::<8, false>,
                ours "concurrent" "`deferral`, `Concurrent`" $crate::cases::scope::async_ours::<8, true>,
                theirs "async_safe_defer" "`async_safe_defer::AsyncScope`" $crate::cases::scope::async_asd::<8>,
                theirs "boxed" "`Vec<Pin<Box<dyn Future>>>`, sequential" $crate::cases::scope::async_boxed::<8>,
                theirs "join_all" "`futures::future::join_all` (boxed)" $crate::cases::scope::async_join_all::<8>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed)" $crate::cases::scope::async_unordered::<8>,
            ]
            "scope_async_64" "Register + run 64 async thunks"
            "As above with 64 `YieldOnce` futures; our scope gets `capacity::<8192>()` so they stay inline."
            [
                ours "lifo" "`deferral`, `Lifo`" $crate::cases::scope::async_ours::<64, false>,
                ours "concurrent" "`deferral`, `Concurrent`" $crate::cases::scope::async_ours::<64, true>,
                theirs "async_safe_defer" "`async_safe_defer::AsyncScope`" $crate::cases::scope::async_asd::<64>,
                theirs "boxed" "`Vec<Pin<Box<dyn Future>>>`, sequential" $crate::cases::scope::async_boxed::<64>,
                theirs "join_all" "`futures::future::join_all` (boxed)" $crate::cases::scope::async_join_all::<64>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed)" $crate::cases::scope::async_unordered::<64>,
            ]
            "scope_concurrent_512" "Concurrent cleanup, 512 async thunks"
            "Linearity check (SPEC: total poll work linear in N): 512 `YieldOnce` thunks, `Concurrent` vs `FuturesUnordered` (boxed). Divide by N: the per-thunk cost should stay flat from 64 to 4096. Our slab (8192 B) spills to the heap past about 140 thunks here."
            [
                ours "concurrent" "`deferral`, `Concurrent`" $crate::cases::scope::async_ours::<512, true>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed)" $crate::cases::scope::async_unordered::<512>,
            ]
            "scope_concurrent_4096" "Concurrent cleanup, 4096 async thunks"
            "As above with 4096 thunks (fewer callgrind iterations)."
            [
                ours "concurrent" "`deferral`, `Concurrent`" $crate::cases::scope::async_ours::<4096, true>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed)" $crate::cases::scope::async_unordered::<4096>,
            ]
            "scope_n_1" "N = 1 thunks, default capacity"
            "The N-sweep behind the fixed and marginal costs in BENCHMARKS.md: 1 thunk(s) registered in a default `deferral::scope` (256 B inline; past about ten entries it spills to heap chunks that double in size) and run after the body. `sync`: a closure capturing a `u64`; `sync_local`: the same in `scope_local`, borrowing a local; `async_ready`: an `async` block that finishes at its first poll; `lifo`/`concurrent`: `YieldOnce` (suspends once). Theirs: `Vec<Box<dyn FnOnce()>>` and `FuturesUnordered` (boxed)."
            [
                ours "sync" "`d.defer`" $crate::cases::scope::sweep_sync::<1>,
                ours "sync_local" "`scope_local` + `d.defer` (borrowing)" $crate::cases::scope::sweep_sync_local::<1>,
                ours "async_ready" "`d.defer_async`, ready at once" $crate::cases::scope::sweep_async_ready::<1>,
                ours "lifo" "`d.defer_async(YieldOnce)`, `Lifo`" $crate::cases::scope::sweep_async::<1, false>,
                ours "concurrent" "`d.defer_async(YieldOnce)`, `Concurrent`" $crate::cases::scope::sweep_async::<1, true>,
                theirs "boxed" "`Vec<Box<dyn FnOnce()>>`" $crate::cases::scope::sweep_boxed_sync::<1>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed `YieldOnce`)" $crate::cases::scope::sweep_unordered::<1>,
            ]
            "scope_n_16" "N = 16 thunks, default capacity"
            "The N-sweep behind the fixed and marginal costs in BENCHMARKS.md: 16 thunk(s) registered in a default `deferral::scope` (256 B inline; past about ten entries it spills to heap chunks that double in size) and run after the body. `sync`: a closure capturing a `u64`; `sync_local`: the same in `scope_local`, borrowing a local; `async_ready`: an `async` block that finishes at its first poll; `lifo`/`concurrent`: `YieldOnce` (suspends once). Theirs: `Vec<Box<dyn FnOnce()>>` and `FuturesUnordered` (boxed)."
            [
                ours "sync" "`d.defer`" $crate::cases::scope::sweep_sync::<16>,
                ours "sync_local" "`scope_local` + `d.defer` (borrowing)" $crate::cases::scope::sweep_sync_local::<16>,
                ours "async_ready" "`d.defer_async`, ready at once" $crate::cases::scope::sweep_async_ready::<16>,
                ours "lifo" "`d.defer_async(YieldOnce)`, `Lifo`" $crate::cases::scope::sweep_async::<16, false>,
                ours "concurrent" "`d.defer_async(YieldOnce)`, `Concurrent`" $crate::cases::scope::sweep_async::<16, true>,
                theirs "boxed" "`Vec<Box<dyn FnOnce()>>`" $crate::cases::scope::sweep_boxed_sync::<16>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed `YieldOnce`)" $crate::cases::scope::sweep_unordered::<16>,
            ]
            "scope_n_256" "N = 256 thunks, default capacity"
            "The N-sweep behind the fixed and marginal costs in BENCHMARKS.md: 256 thunk(s) registered in a default `deferral::scope` (256 B inline; past about ten entries it spills to heap chunks that double in size) and run after the body. `sync`: a closure capturing a `u64`; `sync_local`: the same in `scope_local`, borrowing a local; `async_ready`: an `async` block that finishes at its first poll; `lifo`/`concurrent`: `YieldOnce` (suspends once). Theirs: `Vec<Box<dyn FnOnce()>>` and `FuturesUnordered` (boxed)."
            [
                ours "sync" "`d.defer`" $crate::cases::scope::sweep_sync::<256>,
                ours "sync_local" "`scope_local` + `d.defer` (borrowing)" $crate::cases::scope::sweep_sync_local::<256>,
                ours "async_ready" "`d.defer_async`, ready at once" $crate::cases::scope::sweep_async_ready::<256>,
                ours "lifo" "`d.defer_async(YieldOnce)`, `Lifo`" $crate::cases::scope::sweep_async::<256, false>,
                ours "concurrent" "`d.defer_async(YieldOnce)`, `Concurrent`" $crate::cases::scope::sweep_async::<256, true>,
                theirs "boxed" "`Vec<Box<dyn FnOnce()>>`" $crate::cases::scope::sweep_boxed_sync::<256>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed `YieldOnce`)" $crate::cases::scope::sweep_unordered::<256>,
            ]
            "scope_n_4096" "N = 4096 thunks, default capacity"
            "The N-sweep behind the fixed and marginal costs in BENCHMARKS.md: 4096 thunk(s) registered in a default `deferral::scope` (256 B inline; past about ten entries it spills to heap chunks that double in size) and run after the body. `sync`: a closure capturing a `u64`; `sync_local`: the same in `scope_local`, borrowing a local; `async_ready`: an `async` block that finishes at its first poll; `lifo`/`concurrent`: `YieldOnce` (suspends once). Theirs: `Vec<Box<dyn FnOnce()>>` and `FuturesUnordered` (boxed)."
            [
                ours "sync" "`d.defer`" $crate::cases::scope::sweep_sync::<4096>,
                ours "sync_local" "`scope_local` + `d.defer` (borrowing)" $crate::cases::scope::sweep_sync_local::<4096>,
                ours "async_ready" "`d.defer_async`, ready at once" $crate::cases::scope::sweep_async_ready::<4096>,
                ours "lifo" "`d.defer_async(YieldOnce)`, `Lifo`" $crate::cases::scope::sweep_async::<4096, false>,
                ours "concurrent" "`d.defer_async(YieldOnce)`, `Concurrent`" $crate::cases::scope::sweep_async::<4096, true>,
                theirs "boxed" "`Vec<Box<dyn FnOnce()>>`" $crate::cases::scope::sweep_boxed_sync::<4096>,
                theirs "futures_unordered" "`FuturesUnordered` (boxed `YieldOnce`)" $crate::cases::scope::sweep_unordered::<4096>,
            ]
            "scope_local_8" "scope_local vs. scopeguard, 8 borrowing thunks"
            "Cleanup that borrows the caller's state (`&mut u64` through a raw pointer so all eight may add to it): `deferral::scope_local` with 8 `d.defer`s vs an array of 8 `scopeguard::guard`s in the same `async` block."
            [
                ours "scope_local" "`deferral::scope_local`" $crate::cases::scope::local_sync_ours::<8>,
                theirs "scopeguard" "`[scopeguard::guard; 8]`" $crate::cases::scope::local_sync_scopeguard::<8>,
            ]
            "scope_guard_async" "guard_async"
            "A `u64` guarded for the body (which increments it through the guard), then closed by an async cleanup (`YieldOnce`). The floor is the same body with the close written by hand at its end (not run on early return, panic or cancellation); `async_safe_defer` registers the boxed close after the body."
            [
                ours "scope" "`d.guard_async`" $crate::cases::scope::guard_async_ours,
                theirs "manual" "hand-written close at the end" $crate::cases::scope::guard_async_manual,
                theirs "async_safe_defer" "`async_safe_defer::AsyncScope`" $crate::cases::scope::guard_async_asd,
            ]
        }
    };
}
#[allow(unused_imports)]
pub(crate) use scope_groups;

#[allow(unused_macros)]
macro_rules! promise_groups {
    ($cb:ident) => {
        $cb! {
            "promise_in_executor" "Promise: create + first poll + settle in the executor"
            "A `u32` produced inside the first poll. `DeferredPromise::new` settles through its (non-escaping) `Resolver`; `DeferredPromise::lazy` follows a `ready` future; `futures::future::lazy` runs its closure at the first poll."
            [
                ours "new" "`DeferredPromise::new(\\|r\\| r.resolve(v))`" $crate::cases::promise::in_executor_new,
                ours "lazy" "`DeferredPromise::lazy(\\|\\| ready(Ok(v)))`" $crate::cases::promise::in_executor_lazy,
                theirs "futures_lazy" "`futures::future::lazy`" $crate::cases::promise::in_executor_futures_lazy,
            ]
            "promise_escaping" "Promise with an escaping resolver"
            "Create, first poll (`Pending`), settle from outside (send), poll again (`Ready`), drop both halves. Ours: `DeferredPromise::detached` (one `Arc` at the first poll; the resolver leaves the executor through a `Cell`) and a `static PromiseCell` (`CELL.promise()`, no heap). Theirs: the three oneshot channels; `maitake_sync::WaitCell` and `embassy_sync::signal::Signal` are notification primitives (the `WaitCell` carries the value in a `static AtomicU32` set before `wake`). Embassy's `Signal` is shown with `NoopRawMutex` (single-context only) and with `CriticalSectionRawMutex` (interrupt-safe; on this host the `critical-section` std implementation, a global lock)."
            [
                ours "detached" "`DeferredPromise::detached` (Arc)" $crate::cases::promise::escaping_detached,
                ours "cell" "`PromiseCell::promise` (static)" $crate::cases::promise::escaping_cell,
                theirs "futures_oneshot" "`futures::channel::oneshot`" $crate::cases::promise::escaping_futures_oneshot,
                theirs "tokio_oneshot" "`tokio::sync::oneshot`" $crate::cases::promise::escaping_tokio_oneshot,
                theirs "oneshot" "`oneshot`" $crate::cases::promise::escaping_oneshot,
                theirs "waitcell" "`maitake_sync::WaitCell` (static)" $crate::cases::promise::escaping_waitcell,
                theirs "signal_noop" "`embassy_sync` `Signal<NoopRawMutex>`" $crate::cases::promise::escaping_signal_noop,
                theirs "signal_cs" "`embassy_sync` `Signal<CriticalSectionRawMutex>` (static)" $crate::cases::promise::escaping_signal_cs,
            ]
            "promise_signal" "Signal-style settlement of a static cell (one waiter)"
            "The waiter is created and polled (`Pending`), the \"interrupt\" settles, the waiter is polled again (`Ready`). Ours: `PromiseCell::wait` settled by `CELL.resolve(v)` (no resolver object; refused with the value back if nobody waits). Theirs: Embassy's `Signal` (overwrites; `CriticalSectionRawMutex` is its interrupt-safe flavour, on this host the `critical-section` std implementation, a global lock) and `maitake_sync::WaitCell` (no value; carried in a `static AtomicU32`)."
            [
                ours "cell_wait" "`PromiseCell::wait` + `CELL.resolve` (static)" $crate::cases::promise::signal_cell,
                theirs "signal_cs" "`embassy_sync` `Signal<CriticalSectionRawMutex>` (static)" $crate::cases::promise::escaping_signal_cs,
                theirs "signal_noop" "`embassy_sync` `Signal<NoopRawMutex>`" $crate::cases::promise::escaping_signal_noop,
                theirs "waitcell" "`maitake_sync::WaitCell` (static)" $crate::cases::promise::escaping_waitcell,
            ]
            "promise_multi_1" "Static multi-waiter promise, 1 waiter"
            "A settle-once promise awaited by N tasks, no heap: the cell (created per iteration), N waiters each polled (`Pending`), one settlement from the \"interrupt\", each waiter polled again (`Ready`, a `u32` each). Ours: `SharedCell<u32, (), N>` (lock-free). Theirs: Embassy's `Watch<CriticalSectionRawMutex, u32, N>` (a critical section per operation) and, for one waiter, `Signal<CriticalSectionRawMutex>`."
            [
                ours "shared_cell" "`deferral::SharedCell`" $crate::cases::promise::multi_shared_cell::<1>,
                theirs "watch" "`embassy_sync::watch::Watch` (CS)" $crate::cases::promise::multi_watch::<1>,
                theirs "signal" "`embassy_sync::signal::Signal` (CS)" $crate::cases::promise::multi_signal_1,
            ]
            "promise_multi_4" "Static multi-waiter promise, 4 waiters"
            "As above with 4 waiters (`Signal` serves one waiter only)."
            [
                ours "shared_cell" "`deferral::SharedCell`" $crate::cases::promise::multi_shared_cell::<4>,
                theirs "watch" "`embassy_sync::watch::Watch` (CS)" $crate::cases::promise::multi_watch::<4>,
            ]
            "promise_multi_16" "Static multi-waiter promise, 16 waiters"
            "As above with 16 waiters."
            [
                ours "shared_cell" "`deferral::SharedCell`" $crate::cases::promise::multi_shared_cell::<16>,
                theirs "watch" "`embassy_sync::watch::Watch` (CS)" $crate::cases::promise::multi_watch::<16>,
            ]
            "promise_shared_1" "Shared promise, 1 waiter"
            "The same source (a `futures::channel::oneshot::Receiver<u32>`) wrapped by `SharedPromise` and by `futures::future::Shared`; the clones are created, each polled (`Pending`), the sender sends, each polled again (`Ready`)."
            [
                ours "shared_promise" "`deferral::SharedPromise`" $crate::cases::promise::shared_ours::<1>,
                theirs "futures_shared" "`futures::future::Shared`" $crate::cases::promise::shared_futures::<1>,
            ]
            "promise_shared_8" "Shared promise, 8 waiters"
            "As above with 8 clones."
            [
                ours "shared_promise" "`deferral::SharedPromise`" $crate::cases::promise::shared_ours::<8>,
                theirs "futures_shared" "`futures::future::Shared`" $crate::cases::promise::shared_futures::<8>,
            ]
            "promise_shared_64" "Shared promise, 64 waiters"
            "As above with 64 clones."
            [
                ours "shared_promise" "`deferral::SharedPromise`" $crate::cases::promise::shared_ours::<64>,
                theirs "futures_shared" "`futures::future::Shared`" $crate::cases::promise::shared_futures::<64>,
            ]
            "promise_shared_1000" "Shared promise, 1000 waiters"
            "As above with 1000 clones (issue 26 target: at most 1.5× `futures::future::Shared`)."
            [
                ours "shared_promise" "`deferral::SharedPromise`" $crate::cases::promise::shared_ours::<1000>,
                theirs "futures_shared" "`futures::future::Shared`" $crate::cases::promise::shared_futures::<1000>,
            ]
            "promise_then_1" "deferred_then chain, length 1"
            "A settled `u32` source followed by one `+ 1` handler, built then polled to completion: `DeferredPromise::resolved(..).deferred_then(\\|v\\| Ok(v + 1))` vs `futures::future::ready(Ok(..))` with `TryFutureExt::map_ok` and with `and_then(\\|v\\| ready(Ok(v + 1)))`."
            [
                ours "deferred_then" "`deferred_then`" $crate::cases::promise::then_ours_1,
                theirs "map_ok" "`TryFutureExt::map_ok`" $crate::cases::promise::then_map_ok_1,
                theirs "and_then" "`TryFutureExt::and_then`" $crate::cases::promise::then_and_then_1,
            ]
            "promise_then_8" "deferred_then chain, length 8"
            "As above, 8 handlers."
            [
                ours "deferred_then" "`deferred_then`" $crate::cases::promise::then_ours_8,
                theirs "map_ok" "`TryFutureExt::map_ok`" $crate::cases::promise::then_map_ok_8,
                theirs "and_then" "`TryFutureExt::and_then`" $crate::cases::promise::then_and_then_8,
            ]
            "promise_then_64" "deferred_then chain, length 64"
            "As above, 64 handlers."
            [
                ours "deferred_then" "`deferred_then`" $crate::cases::promise::then_ours_64,
                theirs "map_ok" "`TryFutureExt::map_ok`" $crate::cases::promise::then_map_ok_64,
                theirs "and_then" "`TryFutureExt::and_then`" $crate::cases::promise::then_and_then_64,
            ]
            "promise_then_boxed_64" "Boxed chain, length 64, built in a loop"
            "`p = p.deferred_then(\\|v\\| Ok(v + 1))` on a boxed `DeferredPromise<u32, ()>` (one heap node per link, settled without recursion) vs `futures`' `p = p.map_ok(..).boxed()`."
            [
                ours "deferred_then_boxed" "boxed `deferred_then`" $crate::cases::promise::then_boxed_64,
                theirs "map_ok_boxed" "`map_ok(..).boxed()`" $crate::cases::promise::then_map_ok_boxed_64,
            ]
            "promise_then_boxed_512" "Boxed chain, length 512 (linearity)"
            "As above with 512 links: the cost per link stays flat (the chain settles iteratively)."
            [
                ours "deferred_then_boxed" "boxed `deferred_then`" $crate::cases::promise::then_boxed::<512>,
            ]
            "promise_then_boxed_4096" "Boxed chain, length 4096 (linearity)"
            "As above with 4096 links."
            [
                ours "deferred_then_boxed" "boxed `deferred_then`" $crate::cases::promise::then_boxed::<4096>,
            ]
        }
    };
}
#[allow(unused_imports)]
pub(crate) use promise_groups;
