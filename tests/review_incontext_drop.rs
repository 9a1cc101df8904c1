//! A hostile review of d84d5691: `Payload::drop_in_place`, overridden by
//! `InContext` so that a cleanup registered while a context variable is set
//! is *dropped* inside its registration snapshot too (the snapshot is read
//! out, the payload dropped in place inside it, the snapshot dropped once,
//! as a local, also while unwinding).
//!
//! Every path that drops an entry's payload goes through the vtable's
//! `drop` (`drop_payload::<Out, P>`) or the async `poll` (a finished
//! payload): a condition that does not hold (`runs`, `Left::finish`),
//! `Defer::clear` and `DeferStack::clear` (`slab::drain`), a started entry
//! cut by a cancellation or a grace deadline, an entry whose poll panicked
//! (`drive`'s `polled_panicked`), an orphan nobody takes (`Orphan::drop`,
//! `drop_unpolled`, a full reaper), a `BoxCleanup`/`BoxedEntry` (spilled
//! stack entries, `into_boxed`, the tokio hand-over), a reaper's slot
//! (finished, or dropped with the reaper). The tests below drive each of
//! them with a payload whose destructor reads `ContextVar::get`, and the
//! unhappy ones with destructors that panic (the payload's, the context
//! value's when the snapshot is its last owner, both), over-aligned
//! payloads (`repr(align(64))`, so `InContext`'s field offsets and the
//! heap chunks' alignment are exercised), cross-thread drops and a
//! forgotten scope. No bug found: every test passes on d84d5691; with the
//! `InContext::drop_in_place` override compiled out, 18 of the 26 fail
//! (each asserting "seen in the registration context": the payload is then
//! dropped in the empty or the dropper's context). The other 8 guard what
//! the override must keep: a finished payload dropped once and without an
//! allocation, the snapshot dropped once under panicking destructors, the
//! take path left alone, a forgotten scope, the double-panic abort.
//! Miri (Stacked and Tree Borrows, strict provenance, symbolic alignment)
//! runs all but the abort test (a child process).
#![cfg(feature = "std")]
#![allow(clippy::type_complexity)]

#[path = "support/alloc.rs"]
mod counting_alloc;
mod support;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

use deferral::cancel::{BoxCleanup, Orphan, Reaper};
use deferral::scope::Local;
use deferral::{ContextVar, DeferStack, Snapshot, When};
use support::{WakeCounter, poll_once, yield_now};

static CTX: ContextVar<u32> = ContextVar::new();
static VAL: ContextVar<Val> = ContextVar::new();

/// What each probe saw: (event, `CTX.get()` then).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(&'static str, Option<u32>)>>>);

impl Seen {
    fn new() -> Self {
        // Room enough that logging never allocates (the allocation test).
        Seen(Arc::new(Mutex::new(Vec::with_capacity(16))))
    }
    fn push(&self, event: &'static str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((event, CTX.get()));
    }
    fn get(&self) -> Vec<(&'static str, Option<u32>)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn probe(&self, name: &'static str) -> Probe {
        Probe {
            seen: self.clone(),
            name,
            panic: false,
        }
    }
    fn panicking(&self, name: &'static str) -> Probe {
        Probe {
            seen: self.clone(),
            name,
            panic: true,
        }
    }
}

/// Logs `name` and the current `CTX` when dropped; panics after if asked.
struct Probe {
    seen: Seen,
    name: &'static str,
    panic: bool,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.seen.push(self.name);
        if self.panic {
            panic!("probe {} panics", self.name);
        }
    }
}

/// A context value counting its drops; panics when dropped if asked.
struct Val {
    drops: Arc<AtomicUsize>,
    panic: bool,
}

impl Drop for Val {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
        if self.panic {
            panic!("context value panics");
        }
    }
}

fn val(panic: bool) -> (Val, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    (
        Val {
            drops: drops.clone(),
            panic,
        },
        drops,
    )
}

/// An over-aligned capture: checks its own alignment and logs `CTX` when
/// dropped.
#[repr(align(64))]
struct Big {
    seen: Seen,
    name: &'static str,
}

impl Drop for Big {
    fn drop(&mut self) {
        let aligned = std::ptr::from_ref(self).addr() % 64 == 0;
        self.seen
            .push(if aligned { self.name } else { "MISALIGNED" });
    }
}

/// The cancel handler is program-wide: tests that cancel a `Sendable`
/// scope (or stack) holding async cleanup take this lock, and set the
/// handler they need (none: dropped unpolled) for their duration.
static HANDLER: Mutex<()> = Mutex::new(());

struct HandlerGuard(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        deferral::cancel::clear_cancel_handler();
    }
}

fn handler(h: Option<fn(Orphan<'_>)>) -> HandlerGuard {
    let guard = HANDLER.lock().unwrap_or_else(|e| e.into_inner());
    match h {
        Some(h) => deferral::cancel::set_cancel_handler(h),
        None => deferral::cancel::clear_cancel_handler(),
    }
    HandlerGuard(guard)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Sync payloads (`d.defer`) that never run.
// ---------------------------------------------------------------------------

/// A sync cleanup whose condition does not hold (`When::Err`, the body
/// returned `Ok`) is dropped unrun (`drive::runs`): its captures see the
/// registration context, not the empty one cleanup runs in, nor the
/// poller's.
#[test]
fn a_sync_cleanup_whose_condition_fails_is_dropped_in_its_registration_context() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(false);
    let out = CTX.run(9, || {
        support::block_on(deferral::scope(async move |d| {
            let p = s.probe("dropped unrun");
            VAL.run(v, || {
                CTX.run(3, || {
                    d.defer(move || {
                        let _p = p;
                        unreachable!("When::Err on an Ok body");
                    })
                    .when(When::Err);
                })
            });
            Ok::<u8, ()>(1)
        }))
    });
    assert_eq!(out, Ok(1));
    assert_eq!(seen.get(), [("dropped unrun", Some(3))]);
    assert_eq!(v_drops.load(SeqCst), 1, "the snapshot is dropped once");
}

/// A cancelled scope (dropped mid-body): a sync cleanup whose condition
/// fails for `Cancelled` (`When::Ok`) is dropped unrun in its context
/// (`Left::finish`); an unconditional one runs there and its captures are
/// dropped there; a plain one (registered in no context) sees the empty
/// context the cut runs in, not the dropper's.
#[test]
fn sync_cleanups_of_a_cancelled_scope_are_run_or_dropped_in_their_contexts() {
    let seen = Seen::new();
    let s = seen.clone();
    let mut fut = Box::pin(deferral::scope_local(async move |d| {
        let (a, b, c) = (s.probe("skipped"), s.probe("ran"), s.probe("plain"));
        CTX.run(3, || {
            d.defer(move || drop(a)).when(When::Ok);
        });
        CTX.run(4, || {
            d.defer(move || drop(b));
        });
        d.defer(move || drop(c));
        std::future::pending::<Result<(), ()>>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    CTX.run(7, || drop(fut));
    assert_eq!(
        seen.get(),
        [("plain", None), ("ran", Some(4)), ("skipped", Some(3))]
    );
}

// ---------------------------------------------------------------------------
// `Defer::clear` and panicking destructors.
// ---------------------------------------------------------------------------

/// `Defer::clear` drops sync and async registrations (`slab::drain`): each
/// in its own registration context; one registered in none sees the
/// clearer's. The context is the clearer's again afterwards.
#[test]
fn clear_drops_each_registration_in_its_own_context() {
    let seen = Seen::new();
    let s = seen.clone();
    let out = support::block_on(deferral::scope(async move |d| {
        let (a, b, c) = (s.probe("sync 3"), s.probe("async 4"), s.probe("plain"));
        CTX.run(3, || {
            d.defer(move || drop(a));
        });
        CTX.run(4, || {
            d.defer_async(async move { drop(b) });
        });
        d.defer(move || drop(c));
        CTX.run(9, || {
            assert_eq!(d.clear(), 3);
            assert_eq!(CTX.get(), Some(9));
        });
        CTX.get()
    }));
    assert_eq!(out, None);
    assert_eq!(
        seen.get(),
        [
            ("plain", Some(9)),
            ("async 4", Some(4)),
            ("sync 3", Some(3))
        ]
    );
}

/// A payload whose destructor panics in `clear`: the panic resumes after
/// the others are dropped, each in its context, each once; the clearer's
/// context is restored; the snapshots (last owners of their values) are
/// dropped once; and the scope, finishing later, drops nothing twice (the
/// entries were claimed before their destructors ran).
#[test]
fn a_panicking_payload_destructor_in_clear_restores_the_context_and_drops_once() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(false);
    let out = support::block_on(deferral::scope(async move |d| {
        let (a, b) = (s.panicking("panics 3"), s.probe("async 4"));
        VAL.run(v, || {
            CTX.run(3, || {
                d.defer(move || drop(a));
            });
            CTX.run(4, || {
                d.defer_async(async move { drop(b) });
            });
        });
        let caught = CTX.run(9, || {
            let r = catch_unwind(AssertUnwindSafe(|| d.clear()));
            (r.map_err(|p| panic_message(&*p)), CTX.get())
        });
        (caught, CTX.get())
    }));
    assert_eq!(
        out,
        ((Err("probe panics 3 panics".to_owned()), Some(9)), None)
    );
    assert_eq!(seen.get(), [("async 4", Some(4)), ("panics 3", Some(3))]);
    assert_eq!(v_drops.load(SeqCst), 1);
}

/// A cancelled `scope_local` (its unstarted async cleanup dropped unpolled,
/// `drop_unpolled`) whose cleanup's captures panic when dropped: dropped
/// in its context, once; the panic comes out of the scope's drop; the
/// dropper's context is restored; the snapshot is dropped once.
#[test]
fn a_panicking_unstarted_cleanup_dropped_by_a_cancel_restores_the_context() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(false);
    let mut fut = Box::pin(deferral::scope_local(async move |d| {
        let p = s.panicking("unstarted");
        VAL.run(v, || {
            CTX.run(3, || {
                d.defer_async(async move { drop(p) });
            })
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    let (r, after) = CTX.run(5, || {
        let r = catch_unwind(AssertUnwindSafe(|| drop(fut)));
        (r.map_err(|p| panic_message(&*p)), CTX.get())
    });
    assert_eq!(r, Err("probe unstarted panics".to_owned()));
    assert_eq!(after, Some(5));
    assert_eq!(CTX.get(), None);
    assert_eq!(seen.get(), [("unstarted", Some(3))]);
    assert_eq!(v_drops.load(SeqCst), 1);
}

/// The snapshot is the last owner of a context value whose destructor
/// panics, and the cancelled cleanup's own drop is fine: the payload is
/// dropped (in its context) before the snapshot, the value once, and the
/// panic surfaces from the scope's drop with the context restored.
#[test]
fn a_context_value_panicking_when_a_cancelled_cleanup_drops_its_snapshot() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(true);
    let mut fut = Box::pin(deferral::scope_local(async move |d| {
        let p = s.probe("unstarted");
        VAL.run(v, || {
            CTX.run(3, || {
                d.defer_async(async move { drop(p) });
            })
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    let (r, after) = CTX.run(5, || {
        let r = catch_unwind(AssertUnwindSafe(|| drop(fut)));
        (r.map_err(|p| panic_message(&*p)), CTX.get())
    });
    assert_eq!(r, Err("context value panics".to_owned()));
    assert_eq!(after, Some(5));
    assert_eq!(seen.get(), [("unstarted", Some(3))]);
    assert_eq!(v_drops.load(SeqCst), 1);
}

/// The same, for a cleanup that *finished*: its snapshot is dropped by the
/// async `poll` (`P::drop_in_place` after `claim_unchecked`). The panic is
/// caught by the driver and resumes at the end; the entry (gone already)
/// is not dropped again by `polled_panicked`; everything dropped once.
#[test]
fn a_context_value_panicking_when_a_finished_cleanup_drops_its_snapshot() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(true);
    let r = catch_unwind(AssertUnwindSafe(|| {
        support::block_on(deferral::scope(async move |d| {
            let (p, q) = (s.probe("finished"), s.probe("later"));
            // Registered first, runs last (LIFO): cleanup goes on after
            // the panic.
            d.defer(move || drop(q));
            VAL.run(v, || {
                CTX.run(3, || {
                    d.defer_async(async move {
                        yield_now().await;
                        drop(p)
                    });
                })
            });
        }))
    }));
    assert_eq!(
        r.map_err(|p| panic_message(&*p)),
        Err("context value panics".to_owned())
    );
    assert_eq!(seen.get(), [("finished", Some(3)), ("later", None)]);
    assert_eq!(v_drops.load(SeqCst), 1);
}

const ABORT_CHILD: &str = "DEFERRAL_REVIEW_INCONTEXT_ABORT_CHILD";

/// The child of the next test: does nothing unless its variable is set.
#[test]
fn double_panic_child() {
    if std::env::var_os(ABORT_CHILD).is_none() {
        return;
    }
    let seen = Seen::new();
    let s = seen.clone();
    let (v, _) = val(true);
    let mut fut = Box::pin(deferral::scope_local(async move |d| {
        let p = s.panicking("unstarted");
        VAL.run(v, || {
            CTX.run(3, || {
                d.defer_async(async move { drop(p) });
            })
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    let _ = catch_unwind(AssertUnwindSafe(|| drop(fut)));
    println!("NOT ABORTED");
}

/// Both the payload's destructor and the context value's (the snapshot its
/// last owner) panic: the second panic happens while the first unwinds
/// through `InContext::drop_in_place` (the snapshot local), which is
/// Rust's "panic in a destructor during cleanup" abort — as the drop glue
/// of the struct did before the change — and nothing else (no double drop,
/// no return).
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_payload_and_a_context_value_both_panicking_abort_as_a_panic_during_unwind() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "double_panic_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ABORT_CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "SIGABRT: {stderr}");
    }
    assert!(stderr.contains("probe unstarted panics"), "{stderr}");
    assert!(stderr.contains("context value panics"), "{stderr}");
    assert!(
        stderr.contains("panic in a destructor during cleanup"),
        "{stderr}"
    );
    assert!(!stdout.contains("NOT ABORTED"));
}

// ---------------------------------------------------------------------------
// Started, finished and panicking async cleanup.
// ---------------------------------------------------------------------------

/// A finished async cleanup is dropped by `poll` inside its snapshot: its
/// future's captures (dropped when it completes) see the registration
/// context, its snapshot is released right then (not when the scope is
/// dropped), and the finishing poll allocates nothing (the snapshot's run
/// only swaps a thread-local pointer).
#[test]
fn a_finished_async_cleanup_is_dropped_in_context_at_once_and_allocates_nothing() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(false);
    let mut fut = Box::pin(deferral::scope(async move |d| {
        let p = s.probe("finished");
        VAL.run(v, || {
            CTX.run(3, || {
                d.defer_async(async move {
                    yield_now().await;
                    drop(p)
                });
            })
        });
        5_u8
    }));
    let w = WakeCounter::new();
    let waker = w.waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(v_drops.load(SeqCst), 0);
    let out = counting_alloc::assert_no_alloc(|| fut.as_mut().poll(&mut cx));
    assert_eq!(out, std::task::Poll::Ready(5));
    assert_eq!(seen.get(), [("finished", Some(3))]);
    assert_eq!(v_drops.load(SeqCst), 1, "released when it finished");
    drop(fut);
    assert_eq!(v_drops.load(SeqCst), 1);
}

/// An async cleanup whose poll panics is dropped by the driver
/// (`polled_panicked`) inside its snapshot; the panic resumes at the end;
/// the cleanup after it still runs in its own context.
#[test]
fn a_cleanup_whose_poll_panicked_is_dropped_in_its_registration_context() {
    let seen = Seen::new();
    let s = seen.clone();
    let r = catch_unwind(AssertUnwindSafe(|| {
        CTX.run(9, || {
            support::block_on(deferral::scope(async move |d| {
                let (p, q) = (s.probe("poll panicked"), s.probe("next"));
                CTX.run(4, || {
                    d.defer(move || drop(q));
                });
                CTX.run(3, || {
                    d.defer_async(async move {
                        let _p = p;
                        yield_now().await;
                        panic!("cleanup poll panics");
                    });
                });
            }))
        })
    }));
    assert_eq!(
        r.map_err(|p| panic_message(&*p)),
        Err("cleanup poll panics".to_owned())
    );
    assert_eq!(seen.get(), [("poll panicked", Some(3)), ("next", Some(4))]);
    assert_eq!(CTX.get(), None);
}

/// A started async cleanup cut by a grace deadline is dropped (started:
/// `Left::finish`) in its context.
#[test]
fn a_started_cleanup_cut_by_a_grace_deadline_is_dropped_in_its_context() {
    let _h = handler(None);
    let seen = Seen::new();
    let s = seen.clone();
    let gate = support::Gate::new();
    let g = gate.clone();
    let mut fut = Box::pin(
        deferral::scope(async move |d| {
            let p = s.probe("cut");
            CTX.run(3, || {
                d.defer_async(async move {
                    let _p = p;
                    std::future::pending::<()>().await
                });
            });
            7_u8
        })
        .grace(move || g.wait()),
    );
    let w = WakeCounter::new();
    assert!(poll_once(fut.as_mut(), &w).is_pending());
    assert!(seen.get().is_empty(), "started, pending");
    gate.open();
    let out = CTX.run(5, || poll_once(fut.as_mut(), &w));
    match out {
        std::task::Poll::Ready(Err(cut)) => assert_eq!((cut.cut(), cut.into_output()), (1, 7)),
        other => panic!("expected a cut, got {:?}", other.map(|r| r.is_ok())),
    }
    assert_eq!(seen.get(), [("cut", Some(3))]);
}

/// A started, pending async cleanup of a `Sendable` scope dropped
/// mid-cleanup (the port's reproducer, with a context value and an
/// ambient registration too): both dropped in their contexts, the
/// snapshot once.
#[test]
fn started_handle_and_ambient_cleanups_dropped_mid_cleanup_see_their_contexts() {
    let _h = handler(None);
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(false);
    let mut fut = Box::pin(deferral::scope(async move |d| {
        let (p, q) = (s.probe("handle"), s.probe("ambient"));
        VAL.run(v, || {
            CTX.run(3, || {
                d.defer_async(async move {
                    let _p = p;
                    std::future::pending::<()>().await
                });
                deferral::defer_async(async move {
                    let _q = q;
                    std::future::pending::<()>().await
                });
            })
        });
    }));
    let w = WakeCounter::new();
    assert!(poll_once(fut.as_mut(), &w).is_pending());
    CTX.run(5, || drop(fut));
    let mut got = seen.get();
    got.sort();
    assert_eq!(got, [("ambient", Some(3)), ("handle", Some(3))]);
    assert_eq!(v_drops.load(SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Over-aligned payloads, spilled to heap chunks.
// ---------------------------------------------------------------------------

/// `repr(align(64))` captures (entries spilled to 64-aligned heap chunks;
/// the inline slab promises 16): sync cleared, async cleared, async
/// cancelled unstarted (`scope_local`: dropped unpolled in place), each
/// dropped in place (aligned) and in its context.
#[test]
fn over_aligned_payloads_are_dropped_in_place_and_in_context() {
    let seen = Seen::new();
    let s = seen.clone();
    let mut fut = Box::pin(deferral::scope_local(async move |d| {
        let big = |name| Big {
            seen: s.clone(),
            name,
        };
        let (a, b, c) = (big("sync cleared"), big("async cleared"), big("cancelled"));
        CTX.run(3, || {
            d.defer(move || drop(a));
        });
        CTX.run(4, || {
            d.defer_async(async move {
                yield_now().await;
                drop(b)
            });
        });
        assert_eq!(CTX.run(9, || d.clear()), 2);
        CTX.run(6, || {
            d.defer_async(async move {
                let _c = c;
                yield_now().await;
            });
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    CTX.run(5, || drop(fut));
    assert_eq!(
        seen.get(),
        [
            ("async cleared", Some(4)),
            ("sync cleared", Some(3)),
            ("cancelled", Some(6)),
        ]
    );
}

/// An over-aligned cleanup run to completion and one finished after being
/// polled: the future's state (aligned 64) dropped by `poll` in context.
#[test]
fn an_over_aligned_async_cleanup_finishes_and_drops_in_context() {
    let seen = Seen::new();
    let s = seen.clone();
    let out = support::block_on(deferral::scope(async move |d| {
        let a = Big {
            seen: s.clone(),
            name: "finished",
        };
        CTX.run(3, || {
            d.defer_async(async move {
                yield_now().await;
                drop(a)
            });
        });
        1_u8
    }));
    assert_eq!(out, 1);
    assert_eq!(seen.get(), [("finished", Some(3))]);
}

// ---------------------------------------------------------------------------
// Handed over: orphans, boxed cleanup on other threads, reapers, tokio.
// ---------------------------------------------------------------------------

static BOXED: Mutex<Vec<BoxCleanup>> = Mutex::new(Vec::new());

fn box_it(orphan: Orphan<'_>) {
    BOXED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(orphan.into_boxed());
}

fn take_boxed() -> Vec<BoxCleanup> {
    std::mem::take(&mut *BOXED.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Cancelled cleanups boxed by the handler (`into_boxed`: moved to a
/// `BoxedEntry`, one of them over-aligned) and dropped on another thread —
/// one never polled, one polled once and pending: each dropped there in
/// its registration context (the snapshot travels with the entry).
#[test]
fn boxed_orphans_dropped_on_another_thread_see_their_registration_context() {
    let seen = Seen::new();
    let s = seen.clone();
    let mut boxed = {
        let _h = handler(Some(box_it));
        let mut fut = Box::pin(deferral::scope(async move |d| {
            let (p, q) = (s.probe("unpolled"), s.probe("polled"));
            let big = Big {
                seen: s.clone(),
                name: "big unpolled",
            };
            CTX.run(3, || {
                d.defer_async(async move {
                    let _p = p;
                    yield_now().await;
                });
            });
            CTX.run(4, || {
                d.defer_async(async move {
                    let _q = q;
                    s.push("polled in");
                    std::future::pending::<()>().await
                });
            });
            CTX.run(6, || {
                d.defer_async(async move {
                    let _big = big;
                    yield_now().await;
                });
            });
            std::future::pending::<()>().await
        }));
        assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
        CTX.run(5, || drop(fut));
        take_boxed()
    };
    // Handed over newest first: [big (6), polled (4), unpolled (3)].
    assert_eq!(boxed.len(), 3);
    assert!(seen.get().is_empty());
    let mut polled = Box::pin(boxed.remove(1));
    assert!(poll_once(polled.as_mut(), &WakeCounter::new()).is_pending());
    std::thread::spawn(move || {
        drop(boxed);
        drop(polled);
    })
    .join()
    .unwrap();
    assert_eq!(
        seen.get(),
        [
            ("polled in", Some(4)),
            ("big unpolled", Some(6)),
            ("unpolled", Some(3)),
            ("polled", Some(4)),
        ]
    );
}

type BigReaper = Reaper<2, 256>;
type TinyReaper = Reaper<1, 32>;
static BIG_REAPER: AtomicPtr<BigReaper> = AtomicPtr::new(std::ptr::null_mut());
static TINY_REAPER: AtomicPtr<TinyReaper> = AtomicPtr::new(std::ptr::null_mut());

fn to_big_reaper(orphan: Orphan<'_>) {
    let r = BIG_REAPER.load(SeqCst);
    assert!(!r.is_null());
    // SAFETY: set to a live boxed reaper for the duration of the test that
    // installed this handler (under `HANDLER`), cleared before it is freed.
    unsafe { &*r }.hand_over(orphan);
}

fn to_tiny_reaper(orphan: Orphan<'_>) {
    let r = TINY_REAPER.load(SeqCst);
    assert!(!r.is_null());
    // SAFETY: as in `to_big_reaper`.
    unsafe { &*r }.hand_over(orphan);
}

/// Handed to a reaper (moved into a slot): polled there in its context; a
/// finished one dropped in it (`Finish`); one still pending when the
/// (heap) reaper is dropped, dropped in it (`drop_slots`).
#[test]
fn reaper_cleanups_are_polled_and_dropped_in_their_registration_context() {
    let _h = handler(Some(to_big_reaper));
    let reaper = Box::into_raw(Box::new(BigReaper::new()));
    BIG_REAPER.store(reaper, SeqCst);
    let seen = Seen::new();
    let s = seen.clone();
    let mut fut = Box::pin(deferral::scope(async move |d| {
        let (p, q) = (s.probe("finished"), s.probe("pending"));
        let s2 = s.clone();
        CTX.run(3, || {
            d.defer_async(async move {
                s2.push("polled 3");
                yield_now().await;
                drop(p)
            });
        });
        CTX.run(4, || {
            d.defer_async(async move {
                let _q = q;
                s.push("polled 4");
                std::future::pending::<()>().await
            });
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    CTX.run(5, || drop(fut));
    {
        // SAFETY: the reaper lives until the `Box::from_raw` below.
        let r = unsafe { &*reaper };
        assert_eq!(r.pending(), 2);
        let mut reap = Box::pin(r.run());
        let w = WakeCounter::new();
        assert!(CTX.run(8, || poll_once(reap.as_mut(), &w)).is_pending());
        assert!(CTX.run(8, || poll_once(reap.as_mut(), &w)).is_pending());
        assert_eq!(r.pending(), 1);
    }
    BIG_REAPER.store(std::ptr::null_mut(), SeqCst);
    // SAFETY: from `Box::into_raw` above; nothing refers to it any more.
    CTX.run(8, || drop(unsafe { Box::from_raw(reaper) }));
    let mut got = seen.get();
    got.sort();
    assert_eq!(
        got,
        [
            ("finished", Some(3)),
            ("pending", Some(4)),
            ("polled 3", Some(3)),
            ("polled 4", Some(4)),
        ]
    );
}

/// A reaper with no room (the entry does not fit its slot): the orphan is
/// dropped unpolled at once, in its context.
#[test]
fn a_cleanup_a_full_reaper_misses_is_dropped_in_its_registration_context() {
    let _h = handler(Some(to_tiny_reaper));
    let reaper = Box::into_raw(Box::new(TinyReaper::new()));
    TINY_REAPER.store(reaper, SeqCst);
    let seen = Seen::new();
    let s = seen.clone();
    let mut fut = Box::pin(deferral::scope(async move |d| {
        let p = s.probe("missed");
        CTX.run(3, || {
            d.defer_async(async move {
                let _p = p;
                yield_now().await;
            });
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    CTX.run(5, || drop(fut));
    TINY_REAPER.store(std::ptr::null_mut(), SeqCst);
    // SAFETY: from `Box::into_raw` above; nothing refers to it any more.
    let reaper = unsafe { Box::from_raw(reaper) };
    assert_eq!(reaper.missed(), 1);
    assert_eq!(seen.get(), [("missed", Some(3))]);
}

/// With the `tokio` feature, a cancelled scope inside a runtime spawns its
/// unstarted cleanup there (a `BoxCleanup`): polled in its context, and —
/// the runtime shut down before it finished — dropped in it; one spawned
/// and never polled, dropped by the shutdown, too.
#[cfg(feature = "tokio")]
#[test]
fn a_cleanup_spawned_on_tokio_is_dropped_by_its_shutdown_in_its_context() {
    let _h = handler(None);
    let seen = Seen::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cancel_one = |ctx: u32, name: &'static str| {
        let s = seen.clone();
        let mut fut = Box::pin(deferral::scope(async move |d| {
            let p = s.probe(name);
            CTX.run(ctx, || {
                d.defer_async(async move {
                    let _p = p;
                    s.push("polled");
                    std::future::pending::<()>().await
                });
            });
            std::future::pending::<()>().await
        }));
        assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
        let _enter = rt.enter();
        CTX.run(5, || drop(fut));
    };
    cancel_one(3, "polled, then shut down");
    assert!(seen.get().is_empty(), "spawned, not run yet");
    CTX.run(7, || {
        rt.block_on(async {
            for _ in 0..8 {
                yield_now().await;
            }
        })
    });
    assert_eq!(seen.get(), [("polled", Some(3))]);
    cancel_one(4, "never polled");
    CTX.run(8, || drop(rt));
    let mut got = seen.get();
    got.sort();
    assert_eq!(
        got,
        [
            ("never polled", Some(4)),
            ("polled", Some(3)),
            ("polled, then shut down", Some(3)),
        ]
    );
}

// ---------------------------------------------------------------------------
// Moved into a `DeferStack`.
// ---------------------------------------------------------------------------

/// Registrations moved into a `DeferStack` (`move_all`: bytes copied, the
/// snapshot with them) and cleared there: dropped in their contexts.
#[test]
fn cleanups_moved_to_a_stack_and_cleared_are_dropped_in_their_contexts() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(false);
    let mut stack: DeferStack = DeferStack::new();
    support::block_on(deferral::scope(async |d| {
        let (a, b) = (s.probe("sync"), s.probe("async"));
        let big = Big {
            seen: s.clone(),
            name: "big",
        };
        VAL.run(v, || {
            CTX.run(3, || {
                d.defer(move || drop(a));
            });
            CTX.run(4, || {
                d.defer_async(async move { drop(b) });
            });
            CTX.run(6, || {
                d.defer_async(async move { drop(big) });
            });
        });
        assert_eq!(d.move_all(&mut stack), 3);
    }));
    assert!(seen.get().is_empty(), "moved, not run");
    assert_eq!(CTX.run(9, || stack.clear()), 3);
    assert_eq!(
        seen.get(),
        [("big", Some(6)), ("async", Some(4)), ("sync", Some(3))]
    );
    assert_eq!(v_drops.load(SeqCst), 1);
}

/// A `Local` stack filled from a `scope_local` and dropped: its sync
/// cleanup runs in its context, its async cleanup is dropped unpolled
/// (`drop_unpolled`) in its context; a `Sendable` stack dropped with no
/// handler does the same through `hand_over`; a stack disposed of and
/// dropped mid-dispose drops its started cleanup in its context.
#[test]
fn cleanups_of_a_dropped_or_half_disposed_stack_see_their_contexts() {
    let seen = Seen::new();
    let s = seen.clone();
    let mut local: DeferStack<Local<'_>> = DeferStack::new();
    support::block_on(deferral::scope_local(async |d| {
        let (a, b) = (s.probe("local sync"), s.probe("local async"));
        CTX.run(3, || {
            d.defer(move || drop(a));
        });
        CTX.run(4, || {
            d.defer_async(async move { drop(b) });
        });
        assert_eq!(d.move_all(&mut local), 2);
    }));
    CTX.run(9, || drop(local));
    assert_eq!(
        seen.get(),
        [("local async", Some(4)), ("local sync", Some(3))]
    );

    let seen = Seen::new();
    let s = seen.clone();
    let mut sendable: DeferStack = DeferStack::new();
    let mut disposed: DeferStack = DeferStack::new();
    support::block_on(deferral::scope(async |d| {
        let (a, b) = (s.probe("sendable async"), s.probe("disposed async"));
        CTX.run(3, || {
            d.defer_async(async move { drop(a) });
        });
        assert_eq!(d.move_all(&mut sendable), 1);
        let s2 = s.clone();
        CTX.run(4, || {
            d.defer_async(async move {
                let _b = b;
                s2.push("disposing");
                std::future::pending::<()>().await
            });
        });
        assert_eq!(d.move_all(&mut disposed), 1);
    }));
    {
        let _h = handler(None);
        CTX.run(9, || drop(sendable));
    }
    let mut dispose = Box::pin(disposed.dispose());
    assert!(
        CTX.run(8, || poll_once(dispose.as_mut(), &WakeCounter::new()))
            .is_pending()
    );
    CTX.run(9, || drop(dispose));
    assert_eq!(
        seen.get(),
        [
            ("sendable async", Some(3)),
            ("disposing", Some(4)),
            ("disposed async", Some(4)),
        ]
    );
}

// ---------------------------------------------------------------------------
// Guards, take, capture inside a destructor, forget.
// ---------------------------------------------------------------------------

/// An unstarted `guard_async_with` of a cancelled scope: its `Drop` (the
/// payload's) hands the value to the fallback, which now runs in the
/// registration context too; an unstarted `guard_async`'s value is dropped
/// there.
#[test]
fn unstarted_guards_of_a_cancelled_scope_drop_and_fall_back_in_context() {
    let seen = Seen::new();
    let s = seen.clone();
    let mut fut = Box::pin(deferral::scope_local(async move |d| {
        let (a, b) = (s.probe("guarded"), s.probe("fallback value"));
        let s2 = s.clone();
        let _g = CTX.run(3, || d.guard_async(a, async move |a| drop(a)));
        let _h = CTX.run(4, || {
            d.guard_async_with(
                b,
                async move |b, _| drop(b),
                move |b| {
                    s2.push("fallback");
                    drop(b)
                },
            )
        });
        std::future::pending::<Result<(), ()>>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    CTX.run(5, || drop(fut));
    assert_eq!(
        seen.get(),
        [
            ("fallback", Some(4)),
            ("fallback value", Some(4)),
            ("guarded", Some(3)),
        ]
    );
}

/// `Registration::cancel` (`take_payload`, not a drop): the closure comes
/// back whole, the snapshot is released once (its value dropped), and what
/// the caller then drops sees the caller's context — the take path is not
/// a drop path and the change leaves it alone.
#[test]
fn a_cancelled_registration_hands_back_its_closure_and_releases_the_snapshot() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(false);
    let vd = v_drops.clone();
    support::block_on(deferral::scope(async move |d| {
        let p = s.probe("taken");
        let r = VAL.run(v, || CTX.run(3, || d.defer(move || drop(p))));
        let f = r.cancel();
        assert_eq!(vd.load(SeqCst), 1);
        CTX.run(9, || drop(f));
    }));
    assert_eq!(seen.get(), [("taken", Some(9))]);
    assert_eq!(v_drops.load(SeqCst), 1);
}

/// A destructor that captures the current snapshot while it is dropped
/// inside `InContext::drop_in_place` (where the current snapshot is the
/// drop's local): it gets a clone of the registration context that stays
/// valid after the drop returned (nothing points at the dead local).
#[test]
fn a_snapshot_captured_by_a_destructor_outlives_the_drop() {
    struct Capture(Arc<Mutex<Option<Snapshot>>>);
    impl Drop for Capture {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(Snapshot::capture());
        }
    }
    let slot = Arc::new(Mutex::new(None));
    let c = Capture(slot.clone());
    let mut fut = Box::pin(deferral::scope_local(async move |d| {
        CTX.run(3, || {
            d.defer_async(async move {
                let _c = c;
                yield_now().await
            });
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    CTX.run(5, || drop(fut));
    let snap = slot.lock().unwrap().take().unwrap();
    assert_eq!(CTX.get(), None);
    assert_eq!(snap.get(&CTX), Some(&3));
    assert_eq!(CTX.run(7, || snap.run(|| CTX.get())), Some(3));
}

static PARKED: Mutex<Vec<Pin<Box<dyn Future<Output = ()> + Send>>>> = Mutex::new(Vec::new());

/// A scope future forgotten (never dropped) while its cleanup is pending
/// in a context: nothing is dropped or run, the context of the thread is
/// untouched, the context value stays alive. (Kept reachable from a static
/// rather than `mem::forget`: never dropped all the same, and Miri's leak
/// check and LeakSanitizer accept it.)
#[test]
fn a_forgotten_scope_drops_nothing_and_leaves_the_context_alone() {
    let seen = Seen::new();
    let s = seen.clone();
    let (v, v_drops) = val(false);
    let mut fut: Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(deferral::scope(async move |d| {
            let p = s.probe("forgotten");
            VAL.run(v, || {
                CTX.run(3, || {
                    d.defer_async(async move {
                        let _p = p;
                        yield_now().await;
                    });
                })
            });
            std::future::pending::<()>().await
        }));
    assert!(poll_once(fut.as_mut(), &WakeCounter::new()).is_pending());
    CTX.run(5, || {
        PARKED.lock().unwrap().push(fut);
        assert_eq!(CTX.get(), Some(5));
    });
    assert_eq!(CTX.get(), None);
    assert!(seen.get().is_empty());
    assert_eq!(v_drops.load(SeqCst), 0);
}

/// Nested drops in place: an outer cleanup (registered in 3) owns an inner
/// cancelled scope whose cleanup was registered in 4. Dropping the outer
/// payload (inside 3) drops the inner scope, whose cut drops its cleanup
/// inside 4 and restores 3; the outer payload's next field sees 3 again,
/// and the dropper's own context is back at the end (LIFO restores).
#[test]
fn nested_in_context_drops_restore_each_context_in_turn() {
    let seen = Seen::new();
    let s = seen.clone();
    let mut inner = Box::pin(deferral::scope_local(async move |d| {
        let p = s.probe("inner");
        CTX.run(4, || {
            d.defer_async(async move {
                let _p = p;
                yield_now().await;
            });
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(inner.as_mut(), &WakeCounter::new()).is_pending());
    let s = seen.clone();
    let mut outer = Box::pin(deferral::scope_local(async move |d| {
        let after = s.probe("outer, after the inner scope");
        CTX.run(3, || {
            d.defer_async(async move {
                // Dropped in declaration order: `inner` first.
                let _inner = inner;
                let _after = after;
                yield_now().await;
            });
        });
        std::future::pending::<()>().await
    }));
    assert!(poll_once(outer.as_mut(), &WakeCounter::new()).is_pending());
    let after = CTX.run(5, || {
        drop(outer);
        CTX.get()
    });
    assert_eq!(after, Some(5));
    assert_eq!(
        seen.get(),
        [
            ("inner", Some(4)),
            ("outer, after the inner scope", Some(3))
        ]
    );
}
