//! A hostile review of drops under panicking destructors: every value must be
//! dropped exactly once — never leaked, never twice — when a user destructor
//! (a value, a closure's captures, a future, an output, an error, a context
//! value, a panic payload) panics.
//!
//! The class that started it: rust-lang/rust#47949. When a function's
//! return value has been moved into the return place and something dropped
//! *after* that panics — a temporary of the tail expression, a
//! by-value parameter that was not consumed, the unmoved rest of a
//! partially moved `self`, the unmoved part of a `match` scrutinee — the
//! language never drops the return value: it leaks (edition 2024 does not
//! change it). `Guard::defuse` was fixed for it in 6585ae65; this review
//! found fourteen more (the tests whose doc says "Found"), each seen failing
//! before its fix (the value never dropped) and fixed by dropping the
//! leftover explicitly while the result is still a local. The other tests
//! guard the suspects that turned out fine.
#![cfg(feature = "std")]

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use deferral::promise::PromiseError;
use deferral::{
    ContextVar, DeferStack, DeferredPromise, Guard, PromiseCell, PromiseExt, SharedPromise,
    TaskQueue, When,
};
use futures::StreamExt;
use support::drops::{PanicOnDrop, Tracked};
use support::{DropCounter, block_on};

/// Runs `f`, which must panic.
fn panics<R>(f: impl FnOnce() -> R) {
    assert!(
        catch_unwind(AssertUnwindSafe(f)).is_err(),
        "expected a panic"
    );
}

/// A closure that keeps `bomb` alive (its only capture) until it is dropped.
fn holding<A, R>(bomb: PanicOnDrop, f: impl FnOnce(A) -> R) -> impl FnOnce(A) -> R {
    move |a| {
        let _keep = &bomb;
        f(a)
    }
}

/// A future that is ready at once with its value, and whose destructor (not
/// its completion: an `async` block drops its captures when it completes,
/// inside `poll`) panics.
struct BombFuture<T> {
    value: Option<T>,
    _bomb: PanicOnDrop,
}

impl<T> BombFuture<T> {
    fn new(value: T, bomb: PanicOnDrop) -> Self {
        BombFuture {
            value: Some(value),
            _bomb: bomb,
        }
    }
}

impl<T> Unpin for BombFuture<T> {}

impl<T> Future for BombFuture<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        Poll::Ready(self.value.take().expect("polled once"))
    }
}

// ------------------------------------------------------------------ findings

/// Found, fixed: src/promise/ext.rs, `Then::poll`'s step: `Err(error) =>
/// Next::Done(Err(error))` leaves the unused `on_fulfilled` handler (a
/// by-value closure parameter) to be dropped after the rejection moved into
/// the return place: a handler whose captures panic on drop leaks it.
#[test]

fn then_on_rejection_drops_the_error_when_the_unused_handler_panics_on_drop() {
    let (bombs, errors) = (DropCounter::new(), DropCounter::new());
    let promise = DeferredPromise::<u8, Tracked>::rejected(errors.tracked())
        .deferred_then(holding(bombs.panicking(), Ok::<u8, Tracked>));
    panics(|| block_on(promise));
    assert_eq!(bombs.get(), 1);
    assert_eq!(errors.get(), 1, "the rejection leaked");
}

/// Found, fixed: src/promise/ext.rs, `Catch::poll`'s step: `Ok(value) =>
/// Next::Done(Ok(value))`, the same leak of the fulfilment value.
#[test]

fn catch_on_fulfilment_drops_the_value_when_the_unused_handler_panics_on_drop() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let promise = DeferredPromise::<Tracked, u8>::resolved(values.tracked())
        .deferred_catch(holding(bombs.panicking(), Err::<Tracked, u8>));
    panics(|| block_on(promise));
    assert_eq!(bombs.get(), 1);
    assert_eq!(values.get(), 1, "the value leaked");
}

/// Found, fixed: The erased chain (`BoxPromise`) shares `Linked` and the step closures:
/// the same leak.
#[test]

fn boxed_then_on_rejection_drops_the_error_when_the_unused_handler_panics_on_drop() {
    let (bombs, errors) = (DropCounter::new(), DropCounter::new());
    let promise = DeferredPromise::<u8, Tracked>::rejected(errors.tracked())
        .boxed()
        .deferred_then(holding(bombs.panicking(), Ok::<u8, Tracked>));
    panics(|| block_on(promise));
    assert_eq!(bombs.get(), 1);
    assert_eq!(errors.get(), 1, "the rejection leaked");
}

/// Found, fixed: src/promise/ext.rs, `ThenCatch::poll`'s step: the handler that ran made
/// the reaction (a future holding its result); the other one, a by-value
/// part of the closure's tuple parameter, is dropped after the
/// `Next::Follow(reaction)` moved into the return place.
#[test]

fn then_catch_drops_the_reaction_when_the_other_handler_panics_on_drop() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let value = values.tracked();
    let promise = DeferredPromise::<u8, u8>::resolved(1).deferred_then_catch(
        move |_: u8| Ok::<Tracked, u8>(value),
        holding(bombs.panicking(), Err::<Tracked, u8>),
    );
    panics(|| block_on(promise));
    assert_eq!(bombs.get(), 1);
    assert_eq!(values.get(), 1, "the reaction's value leaked");
}

/// Found, fixed: src/promise/ext.rs, `Holding::poll`: `match (done, this.held.take()) {
/// (Err(error), Some(_)) => Poll::Ready(Err(error)), .. }` — the held
/// settlement is the unmoved part of the scrutinee temporary, dropped after
/// the `finally` handler's error moved into the return place.
#[test]

fn finally_drops_its_error_when_the_held_settlement_panics_on_drop() {
    let (bombs, errors) = (DropCounter::new(), DropCounter::new());
    let error = errors.tracked();
    let promise = DeferredPromise::<PanicOnDrop, Tracked>::resolved(bombs.panicking())
        .deferred_finally(move || Err::<(), Tracked>(error));
    panics(|| block_on(promise));
    assert_eq!(bombs.get(), 1);
    assert_eq!(errors.get(), 1, "the finally handler's error leaked");
}

/// Found, fixed: src/promise/deferred.rs, `Executor::poll_catching`: `match run(true) {
/// .., (outcome, _) => Ok(Poll::Ready(outcome)) }` — the caught panic's
/// payload is the unmoved part of the scrutinee, dropped after the
/// settlement moved into the return place. A payload whose destructor
/// panics leaks the settled value.
#[test]

fn catch_panics_drops_the_settlement_when_the_payload_panics_on_drop() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let (value, bomb) = (values.tracked(), bombs.panicking());
    let promise = DeferredPromise::<Tracked, PromiseError<()>>::new(move |res| {
        let _ = res.resolve(value);
        panic_any(bomb);
    })
    .catch_panics();
    panics(|| block_on(promise));
    assert_eq!(bombs.get(), 1);
    assert_eq!(values.get(), 1, "the settled value leaked");
}

/// Found, fixed: src/promise/detached.rs, `Detached::poll_catching`: `Err(panic) => match
/// .. { Some(outcome) => Ok(Poll::Ready(outcome)) }` — the arm's `panic`
/// binding is dropped after the settlement moved into the return place.
#[test]

fn detached_catch_panics_drops_the_settlement_when_the_payload_panics_on_drop() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let (value, bomb) = (values.tracked(), bombs.panicking());
    let promise = DeferredPromise::<Tracked, PromiseError<()>>::detached(move |res| {
        let _ = res.resolve(value);
        panic_any(bomb);
    })
    .catch_panics();
    panics(|| block_on(promise));
    assert_eq!(bombs.get(), 1);
    assert_eq!(values.get(), 1, "the settled value leaked");
}

/// Found, fixed: src/promise/cell.rs, `CellExecutor::poll_catching`: as the detached one.
#[test]

fn cell_lazy_catch_panics_drops_the_settlement_when_the_payload_panics_on_drop() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let (value, bomb) = (values.tracked(), bombs.panicking());
    let cell = PromiseCell::<Tracked, ()>::new();
    let promise = cell
        .lazy(move |res| {
            let _ = res.resolve(value);
            panic_any(bomb);
        })
        .unwrap()
        .catch_panics();
    panics(|| block_on(promise));
    assert_eq!(bombs.get(), 1);
    assert_eq!(values.get(), 1, "the settled value leaked");
    assert!(cell.is_free());
}

/// Found, fixed: src/context.rs, `ContextVar::run`: `with_current(..).run(f)` — the
/// snapshot holding `value` is a temporary of the tail expression, dropped
/// after `f`'s result moved into the return place: when it is the last
/// owner of a value whose destructor panics, the result leaks.
#[test]

fn context_var_run_drops_the_result_when_the_value_panics_on_drop() {
    static VAR: ContextVar<PanicOnDrop> = ContextVar::new();
    let (bombs, results) = (DropCounter::new(), DropCounter::new());
    panics(|| VAR.run(bombs.panicking(), || results.tracked()));
    assert_eq!(bombs.get(), 1);
    assert_eq!(results.get(), 1, "the closure's result leaked");
}

/// Found, fixed: src/scope/payload.rs, `InContext::take`: `self.payload.take()` — the
/// snapshot, the unmoved rest of `self`, is dropped after what is handed
/// back moved into the return place. A registration made while a context
/// variable was set is the snapshot's last owner once that context is left:
/// cancelling it leaks the cleanup when a context value panics on drop.
#[test]

fn cancel_in_context_drops_the_cleanup_when_the_context_value_panics_on_drop() {
    static VAR: ContextVar<PanicOnDrop> = ContextVar::new();
    let (bombs, captures) = (DropCounter::new(), DropCounter::new());
    let (bomb, capture) = (bombs.panicking(), captures.tracked());
    block_on(deferral::scope(async |d| {
        let token = VAR.run(bomb, || {
            d.defer(move || {
                let _keep = &capture;
                unreachable!("cancelled");
            })
        });
        panics(|| token.cancel());
        assert!(d.is_empty());
    }));
    assert_eq!(bombs.get(), 1);
    assert_eq!(captures.get(), 1, "the cancelled cleanup leaked");
}

/// Found, fixed: The same path through a guard: `Guard::defuse` (fixed for its own tail in
/// 6585ae65) still leaks the value when the guard was made in a context,
/// because `InContext::take` leaks the `(value, cleanup)` first.
#[test]

fn defuse_in_context_drops_the_value_when_the_context_value_panics_on_drop() {
    static VAR: ContextVar<PanicOnDrop> = ContextVar::new();
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let (bomb, value) = (bombs.panicking(), values.tracked());
    block_on(deferral::scope(async |d| {
        let guard = VAR.run(bomb, || d.guard(value, |_| unreachable!("defused")));
        panics(|| Guard::defuse(guard));
    }));
    assert_eq!(bombs.get(), 1);
    assert_eq!(values.get(), 1, "the guarded value leaked");
}

/// Found, fixed: src/promise/shared.rs, `Inner::into_output`: `match self.slot.into_inner()
/// { Slot::Complete(output) => output, .. }` — the captured creation context,
/// the unmoved rest of `self`, is dropped after the output moved into the
/// return place: the last handle's output leaks when a context value
/// panics on drop.
#[test]

fn shared_promise_drops_the_output_when_the_context_value_panics_on_drop() {
    static VAR: ContextVar<PanicOnDrop> = ContextVar::new();
    let (bombs, outputs) = (DropCounter::new(), DropCounter::new());
    let output = Arc::new(outputs.tracked());
    let shared = VAR.run(bombs.panicking(), || {
        SharedPromise::new(async move { output })
    });
    panics(|| block_on(shared));
    assert_eq!(bombs.get(), 1);
    assert_eq!(outputs.get(), 1, "the output leaked");
}

/// Found, fixed: src/promise/error.rs, `PromiseError::rejection_or_else`: in the
/// `Rejected(e) => e` arm the unused `abandoned` closure (a by-value
/// parameter) is dropped after `e` moved into the return place. (std's
/// `Option::unwrap_or_else` has the same shape: a low-severity finding.)
#[test]

fn rejection_or_else_drops_the_error_when_the_closure_panics_on_drop() {
    let (bombs, errors) = (DropCounter::new(), DropCounter::new());
    let error = PromiseError::Rejected(errors.tracked());
    let bomb = bombs.panicking();
    panics(|| {
        error.rejection_or_else(move || {
            let _keep = &bomb;
            unreachable!("rejected")
        })
    });
    assert_eq!(bombs.get(), 1);
    assert_eq!(errors.get(), 1, "the rejection leaked");
}

/// Found, fixed: src/queue/mod.rs, `TaskQueue::stop_when`: `state.convert(|t| t, |_|
/// Some(is_rejection))` — the old predicate is the closure's unconsumed
/// by-value parameter, dropped after `Some(is_rejection)` moved into the
/// return place: replacing a predicate whose captures panic on drop leaks
/// the new one.
#[test]

fn stop_when_drops_the_new_predicate_when_the_old_one_panics_on_drop() {
    let (bombs, captures) = (DropCounter::new(), DropCounter::new());
    let (bomb, capture) = (bombs.panicking(), captures.tracked());
    let queue = TaskQueue::<core::future::Ready<u8>>::new().stop_when(move |_: &u8| {
        let _keep = &bomb;
        false
    });
    panics(|| {
        queue.stop_when(move |_: &u8| {
            let _keep = &capture;
            false
        })
    });
    assert_eq!(bombs.get(), 1);
    assert_eq!(captures.get(), 1, "the new predicate leaked");
}

// ------------------------------------------------ suspects that are fine

/// The ordinary case of `Then` and `Catch` (no handler panics) stays
/// exact: the rejection passes through, the handler is dropped.
#[test]
fn then_and_catch_pass_settlements_through_and_drop_the_handler() {
    let (handlers, errors) = (DropCounter::new(), DropCounter::new());
    let handler = handlers.tracked();
    let promise =
        DeferredPromise::<u8, Tracked>::rejected(errors.tracked()).deferred_then(move |v: u8| {
            let _keep = &handler;
            Ok::<u8, Tracked>(v)
        });
    assert!(block_on(promise).is_err());
    assert_eq!((handlers.get(), errors.get()), (1, 1));
}

/// `Linked::drive`, second half: the reaction's output is a local while the
/// finished reaction is dropped (`chain.set(Empty)`): a reaction whose
/// destructor panics does not leak the output.
#[test]
fn a_reaction_whose_drop_panics_does_not_leak_its_output() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let reaction = BombFuture::new(Ok::<Tracked, ()>(values.tracked()), bombs.panicking());
    let promise = DeferredPromise::<u8, ()>::resolved(1)
        .deferred_then(move |_| deferral::promise::Follow(reaction));
    panics(|| block_on(promise));
    assert_eq!((bombs.get(), values.get()), (1, 1));
}

/// `Lazy::poll`: the output is a local while the finished future is
/// dropped (`*state = Done`).
#[test]
fn a_lazy_future_whose_drop_panics_does_not_leak_its_output() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let (bomb, value) = (bombs.panicking(), values.tracked());
    let promise = DeferredPromise::<Tracked, ()>::lazy(move || BombFuture::new(Ok(value), bomb));
    panics(|| block_on(promise));
    assert_eq!((bombs.get(), values.get()), (1, 1));
}

/// The boxed leaf (`Leaf::advance`): the output is a local while the
/// finished future is dropped in place.
#[test]
fn a_boxed_future_whose_drop_panics_does_not_leak_its_output() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let (bomb, value) = (bombs.panicking(), values.tracked());
    let promise =
        DeferredPromise::<Tracked, ()>::lazy(move || BombFuture::new(Ok(value), bomb)).boxed();
    panics(|| block_on(promise));
    assert_eq!((bombs.get(), values.get()), (1, 1));
}

/// `SharedPromise::drive`: a source whose destructor panics after it
/// finished still stores its output (`Store`), which the state drops once.
#[test]
fn a_shared_source_whose_drop_panics_does_not_leak_its_output() {
    let (bombs, values) = (DropCounter::new(), DropCounter::new());
    let (bomb, value) = (bombs.panicking(), Arc::new(values.tracked()));
    let shared = SharedPromise::new(BombFuture::new(value, bomb));
    let other = shared.clone();
    panics(|| block_on(shared));
    drop(other);
    assert_eq!((bombs.get(), values.get()), (1, 1));
}

/// `DeferScope::poll`: the body's output survives the body future's
/// panicking destructor (`end_body` catches it) and is dropped exactly once
/// when the panic resumes.
#[test]
fn a_scope_body_whose_drop_panics_does_not_leak_its_output() {
    let (bombs, values, ran) = (DropCounter::new(), DropCounter::new(), DropCounter::new());
    let (bomb, value, cleanup) = (bombs.panicking(), values.tracked(), ran.tracked());
    panics(|| {
        block_on(deferral::scope(move |d: &deferral::Defer<Tracked>| {
            d.defer(move || drop(cleanup));
            BombFuture::new(value, bomb)
        }))
    });
    assert_eq!((bombs.get(), values.get(), ran.get()), (1, 1, 1));
}

/// `Defer::clear` (the slab's `drain`): one panicking destructor does not
/// stop the others, and none is dropped twice or run.
#[test]
fn clear_drops_every_registration_once_when_one_panics() {
    let (bombs, captures) = (DropCounter::new(), DropCounter::new());
    block_on(deferral::scope(async |d| {
        for i in 0..4 {
            let capture = captures.tracked();
            if i == 1 {
                let bomb = bombs.panicking();
                d.defer(move || {
                    let _keep = (&bomb, &capture);
                    unreachable!("cleared");
                });
            } else {
                d.defer(move || {
                    let _keep = &capture;
                    unreachable!("cleared");
                });
            }
        }
        panics(|| d.clear());
        assert!(d.is_empty());
    }));
    assert_eq!((bombs.get(), captures.get()), (1, 4));
}

/// `DeferStack::clear` and `Drop`: the same, for a stack.
#[test]
fn a_stack_drops_every_cleanup_once_when_one_panics() {
    let (bombs, captures, runs) = (DropCounter::new(), DropCounter::new(), DropCounter::new());
    let mut stack: DeferStack = DeferStack::new();
    for i in 0..3 {
        let capture = captures.tracked();
        let bomb = (i == 1).then(|| bombs.panicking());
        stack.defer(move || {
            let _keep = (&bomb, &capture);
            unreachable!("cleared");
        });
    }
    panics(|| stack.clear());
    assert!(stack.is_empty());
    assert_eq!((bombs.get(), captures.get()), (1, 3));
    // Dropped: a panicking cleanup does not stop the others.
    for i in 0..3 {
        let run = runs.tracked();
        stack.defer(move || {
            drop(run);
            assert_ne!(i, 1, "the middle one panics");
        });
    }
    panics(|| drop(stack));
    assert_eq!(runs.get(), 3);
}

/// `GuardWithStart`'s `Drop`: the cleanup closure is dropped first; if that
/// panics, the fallback still gets the value (a condition that does not
/// hold drops the registration unstarted).
#[test]
fn a_skipped_async_guard_gives_its_value_to_the_fallback_when_the_cleanup_panics_on_drop() {
    let (bombs, values, fallbacks) = (DropCounter::new(), DropCounter::new(), DropCounter::new());
    let (bomb, value, fallback) = (bombs.panicking(), values.tracked(), fallbacks.tracked());
    panics(|| {
        block_on(deferral::scope(async |d| {
            let _g = d
                .guard_async_with(
                    value,
                    move |_v, _| {
                        let _keep = &bomb;
                        async { unreachable!("skipped") }
                    },
                    move |v| {
                        drop(fallback);
                        drop(v);
                    },
                )
                .when(When::Err);
            Ok::<(), ()>(())
        }))
    });
    assert_eq!((bombs.get(), values.get(), fallbacks.get()), (1, 1, 1));
}

/// `Exit::recover`: the output it replaces is dropped once the exit is
/// consistent again; if that panics, the new output is in place and is
/// dropped exactly once when the new panic resumes.
#[test]
fn recover_over_an_output_whose_drop_panics_keeps_the_new_output() {
    #[allow(dead_code)]
    enum Out {
        Bomb(PanicOnDrop),
        Fine(Tracked),
    }
    let (bombs, news) = (DropCounter::new(), DropCounter::new());
    let (bomb, new) = (bombs.panicking(), news.tracked());
    panics(|| {
        block_on(deferral::scope(async move |d| {
            // LIFO: runs last, after the panicking cleanup.
            d.defer_with(move |exit: &mut deferral::Exit<Out>| {
                let payload = exit.recover(Out::Fine(new));
                assert!(payload.is_some(), "the earlier cleanup panicked");
            });
            d.defer(|| panic!("cleanup"));
            Out::Bomb(bomb)
        }))
    });
    assert_eq!((bombs.get(), news.get()), (1, 1));
}

/// `TaskQueue::clear`: a task whose destructor panics stops the clear; the
/// rest stay queued, consistent, and are dropped once with the queue.
#[test]
fn queue_clear_drops_every_task_once_when_one_panics() {
    struct Task(
        #[allow(dead_code)] Tracked,
        #[allow(dead_code)] Option<PanicOnDrop>,
    );
    impl IntoFuture for Task {
        type Output = ();
        type IntoFuture = core::future::Ready<()>;
        fn into_future(self) -> Self::IntoFuture {
            core::future::ready(())
        }
    }
    let (bombs, tasks) = (DropCounter::new(), DropCounter::new());
    let queue = TaskQueue::<Task>::with_capacity::<8>();
    for i in 0..5 {
        let bomb = (i == 2).then(|| bombs.panicking());
        assert!(queue.push(Task(tasks.tracked(), bomb)).is_ok());
    }
    panics(|| queue.clear());
    let left = queue.len();
    assert!(left < 5);
    drop(queue);
    assert_eq!((bombs.get(), tasks.get()), (1, 5));
}

/// `Ring::poll_slot`: a finished future whose destructor panics still
/// leaves its output in the slot (assigned over it), yielded by the next
/// poll, dropped once.
#[test]
fn a_queued_future_whose_drop_panics_still_yields_its_output() {
    let (bombs, outputs) = (DropCounter::new(), DropCounter::new());
    let mut queue = TaskQueue::<BombFuture<Option<Tracked>>>::new();
    assert!(
        queue
            .push(BombFuture::new(Some(outputs.tracked()), bombs.panicking()))
            .is_ok()
    );
    panics(|| block_on(queue.next()));
    let out = block_on(queue.next()).expect("the output was kept");
    assert!(out.is_some());
    drop(out);
    assert_eq!((bombs.get(), outputs.get()), (1, 1));
}
