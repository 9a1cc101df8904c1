//! The auto traits every public type promises (in the style of futures-rs'
//! `tests/auto_traits.rs`): a change that silently makes a scope non-`Send`
//! or a resolver `Sync` fails here.
#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;

use deferral::cancel::{Orphan, Reaper, ReaperBusy};
use deferral::promise::{
    CellBusy, CellPromise, PromiseState, Ready, SettleError, SignalCell, SignalWait,
};
#[cfg(feature = "alloc")]
use deferral::promise::{LocalBoxPromise, WeakSharedPromise};
use deferral::scope::{
    Concurrent, CutShort, Fifo, Fixed, Full, Lifo, Local, ScopeBuilder, Sendable,
};
use deferral::*;
use static_assertions::{assert_impl_all as yes, assert_not_impl_any as no};

// --- DeferScope and its handle ------------------------------------------
// The handle is shared with the body across `.await`: it must be `Sync` for
// the body to be `Send`, whatever the output type is.
yes!(Defer<()>: Send, Sync, Unpin);
yes!(Defer<Rc<()>>: Send, Sync);
yes!(Defer<Cell<u8>>: Send, Sync);
// `scope_local`'s handle may reach `!Send` cleanup: it stays on its thread.
no!(Defer<(), Local<'static>>: Send, Sync);
// Tokens and guards follow what they hold, like `&mut V`.
yes!(Registration<'static, (), fn()>: Send, Sync, Unpin);
yes!(Registration<'static, Rc<()>, fn()>: Send, Sync, Unpin); // the output type is not held
no!(Registration<'static, (), Rc<()>>: Send, Sync);
no!(Registration<'static, (), fn(), Local<'static>>: Send);
yes!(Guard<'static, (), String, fn(String)>: Send, Sync, Unpin);
yes!(Guard<'static, (), Cell<u8>, fn(Cell<u8>)>: Send);
no!(Guard<'static, (), Cell<u8>, fn(Cell<u8>)>: Sync);
no!(Guard<'static, (), Rc<()>, fn(Rc<()>)>: Send, Sync);
no!(Guard<'static, (), String, fn(String), Local<'static>>: Send);
yes!(Full<u8>: Send, Sync, Unpin);
yes!(ScopeBuilder: Send, Sync, Unpin);
yes!(Sendable: Send, Sync);
no!(Local<'static>: Send, Sync);
yes!(Fixed: Send, Sync);
no!(Fixed<Local<'static>>: Send, Sync);
yes!(DeferStack: Send, Sync);
no!(DeferStack<Local<'static>>: Send);
// A stack can be disposed of inside `tokio::spawn` (issue "Soundness of the
// new machinery", finding 10).
yes!(scope::Dispose: Send);
no!(scope::Dispose<Local<'static>>: Send);
yes!(Outcome: Send, Sync, Unpin, Copy);
yes!(When: Send, Sync, Unpin, Copy);
yes!(CutShort<u8>: Send, Sync, Unpin);
yes!(Reaper<2>: Send, Sync);
yes!(ReaperBusy: Send, Sync, Copy);
no!(Orphan<'static>: Send);

// A scope is exactly as `Send` as what it runs (its type names a closure,
// so these are checked on values; the `!Send` cases are compile-fail tests
// in `tests/ui`).
#[test]
fn a_scope_is_send_and_sync_when_what_it_runs_is() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let s = scope(async |d: &Defer<u8>| {
        d.defer(|| ());
        let guard = d.guard(String::new(), drop);
        std::future::ready(()).await;
        guard.len() as u8
    });
    send_sync(&s);
    let local = scope_local(async |d| {
        d.defer(|| ());
        1
    });
    // Sync: nothing is reachable through `&DeferScope`.
    fn sync<T: Sync>(_: &T) {}
    sync(&local);
}
yes!(Lifo: Send, Sync, Unpin, Copy);
yes!(Fifo: Send, Sync, Unpin, Copy);
yes!(Concurrent: Send, Sync, Unpin, Copy);
#[cfg(feature = "std")]
yes!(scope::NoScope<u8>: Send, Sync, Unpin);
#[cfg(feature = "alloc")]
yes!(cancel::BoxCleanup: Send, Unpin);

// --- DeferredPromise -------------------------------------------------------
// A promise is `Send` exactly when its future is; `Sync` always: nothing but
// its progress byte (and a cell's atomic state) is reachable through
// `&DeferredPromise`, never the future or a value (as for `&DeferScope`).
yes!(DeferredPromise<u32, (), Ready<u32, ()>>: Send, Sync, Unpin);
no!(DeferredPromise<Rc<u32>, (), Ready<Rc<u32>, ()>>: Send);
yes!(DeferredPromise<Rc<u32>, (), Ready<Rc<u32>, ()>>: Sync);
yes!(DeferredPromise<u32, PromiseError<()>, CellPromise<'static, u32, ()>>: Send, Sync, Unpin);
// The boxed promise (`alloc`): the default third parameter.
#[cfg(feature = "alloc")]
yes!(DeferredPromise<u32, ()>: Send, Sync, Unpin);
#[cfg(feature = "alloc")]
no!(DeferredPromise<Rc<u32>, ()>: Send);
#[cfg(feature = "alloc")]
no!(LocalBoxPromise<'static, u32, ()>: Send);
#[cfg(feature = "alloc")]
yes!(LocalBoxPromise<'static, u32, ()>: Sync, Unpin);
yes!(PromiseState: Send, Sync, Unpin, Copy);
yes!(PromiseError<u8>: Send, Sync, Unpin);
yes!(SettleError<u8>: Send, Sync, Unpin);
yes!(CellBusy: Send, Sync, Unpin);
// A cell is a `static`: shared by the task and the interrupt handler.
yes!(PromiseCell<u32, ()>: Send, Sync);
// A resolver may move to another thread or an interrupt handler, but is not
// shared: settling takes `&self` and only one holder may settle.
yes!(Resolver<'static, u32, ()>: Send);
no!(Resolver<'static, u32, ()>: Sync);
no!(Resolver<'static, Rc<u32>, ()>: Send);
// The signal: a `static` shared by the task and the interrupt handler; its
// waiter may move between threads.
yes!(SignalCell<u32, ()>: Send, Sync);
yes!(SignalWait<'static, u32, ()>: Send, Sync, Unpin);
#[cfg(feature = "alloc")]
yes!(SharedPromise<DeferredPromise<u32, ()>>: Send, Sync, Unpin, Clone);
#[cfg(feature = "alloc")]
yes!(WeakSharedPromise<DeferredPromise<u32, ()>>: Send, Sync, Unpin, Clone);

// --- TaskQueue ------------------------------------------------------------
// Moved between threads (spawned), never shared: its `&self` methods change
// it, so it is `Send` but not `Sync` (`Submitter`/`Inbox` push from other
// threads). `Unpin` exactly when its running futures (and timers) are: a
// queue of boxed tasks sits in a struct as it is; one of `async` blocks is
// pinned.
type Pending = std::future::Pending<u32>;
/// A future that is not `Unpin` (as every `async` block).
struct Pinned(std::marker::PhantomPinned);
impl std::future::Future for Pinned {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}
yes!(queue::TaskQueue<Pending>: Send, Unpin);
no!(queue::TaskQueue<Pending>: Sync);
no!(queue::TaskQueue<std::future::Ready<Rc<u32>>>: Send);
yes!(queue::TaskQueue<Pinned>: Send);
no!(queue::TaskQueue<Pinned>: Unpin);
#[cfg(feature = "alloc")]
yes!(queue::TaskQueue<queue::BoxTask<'static, Rc<u32>>>: Unpin);
#[cfg(feature = "alloc")]
yes!(queue::TaskQueue<queue::BoxTask<'static, u32>>: Send, Unpin);
#[cfg(feature = "alloc")]
yes!(queue::Submitter<Pending>: Send, Sync, Clone);
yes!(queue::Inbox<Pending, 4>: Send, Sync);
yes!(queue::TaskId: Send, Sync, Unpin, Copy);
yes!(queue::Options: Send, Sync, Unpin, Copy);
yes!(queue::Level: Send, Sync, Unpin, Copy);

#[test]
fn auto_traits_are_checked_at_compile_time() {
    // Everything above is a compile-time assertion; this test only makes
    // the file show up in test output.
}
