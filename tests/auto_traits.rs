//! The auto traits every public type promises (in the style of futures-rs'
//! `tests/auto_traits.rs`): a change that silently makes a scope non-`Send`
//! or a resolver `Sync` fails here.
#![allow(dead_code)]

use std::cell::Cell;
use std::future::Ready;
use std::marker::PhantomPinned;
use std::rc::Rc;

use deferral::*;
use static_assertions::{assert_impl_all as yes, assert_not_impl_any as no};

type SendFut = Ready<()>;
type PinnedFut = PendingPinned;

/// Holds an `Rc`: neither `Send` nor `Sync`.
struct LocalFut(Rc<()>);
impl Future for LocalFut {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}

struct PendingPinned(PhantomPinned);
impl Future for PendingPinned {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}

// --- DeferScope and its handle ------------------------------------------
// The handle is shared with the body across `.await`: it must be `Sync` for
// the body to be `Send`, whatever the output type is.
yes!(Defer<()>: Send, Sync, Unpin);
yes!(Defer<Rc<()>>: Send, Sync);
yes!(Defer<Cell<u8>>: Send, Sync);
// A scope is exactly as `Send` as what it runs.
yes!(DeferScope<SendFut>: Send, Sync, Unpin);
yes!(DeferScope<LocalFut>: Unpin);
no!(DeferScope<LocalFut>: Send, Sync);
no!(DeferScope<PinnedFut>: Unpin);
// Tokens and guards follow what they hold, like `&mut V`.
yes!(Deferred<'static, fn()>: Send, Sync, Unpin);
no!(Deferred<'static, Rc<()>>: Send, Sync);
yes!(Guard<'static, String>: Send, Sync, Unpin);
yes!(Guard<'static, Cell<u8>>: Send);
no!(Guard<'static, Cell<u8>>: Sync);
no!(Guard<'static, Rc<()>>: Send, Sync);
yes!(Full<u8>: Send, Sync, Unpin);
yes!(ScopeBuilder: Send, Unpin);
yes!(Order: Send, Sync, Unpin, Copy);
#[cfg(feature = "std")]
yes!(NoScope<u8>: Send, Sync, Unpin);
#[cfg(feature = "alloc")]
yes!(BoxedThunk: Send, Unpin);

// --- DeferredPromise -------------------------------------------------------
yes!(DeferredPromise<u32, ()>: Send, Sync, Unpin);
no!(DeferredPromise<Rc<u32>, ()>: Send, Sync);
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
#[cfg(feature = "alloc")]
yes!(SharedPromise<DeferredPromise<u32, ()>>: Send, Sync, Unpin, Clone);
yes!(WeakSharedPromise<DeferredPromise<u32, ()>>: Send, Sync, Unpin, Clone);

#[test]
fn auto_traits_are_checked_at_compile_time() {
    // Everything above is a compile-time assertion; this test only makes
    // the file show up in test output.
}
