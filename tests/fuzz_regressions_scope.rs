//! Scope bugs found with the `scope_ops` fuzz target and its model
//! (`fuzz/fuzz_targets/scope_ops.rs`), each reduced to a minimal test. A
//! test marked `#[ignore = "bug: .."]` states the documented behaviour the
//! crate does not have yet; the fuzz model avoids that case meanwhile (see
//! the comment there).
//!
//! - `recovering_in_a_cancelled_scope_leaves_a_consistent_exit`: found
//!   while checking the model's rules against the docs (the model had
//!   copied what the crate does), not by a crash; fixed (`Exit::recover`
//!   in a scope cancelled during its body gives no output).
#![cfg(feature = "std")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use deferral::Exit;

type Out = Result<(), &'static str>;

/// A scope dropped during its body whose cleanup recovers the panic of an
/// earlier cleanup: the cleanup after it must see a consistent `Exit`. The
/// table on `Exit` says a cancelled body has no output; `Exit::recover`
/// says the next cleanup sees the body as returned; either way
/// `output().is_some() == is_returned()`, as `tests/exit_matrix.rs` checks
/// for every other ending. It sees `is_cancelled()` with
/// `output() == Some(Ok(()))` and `is_returned() == false`.
#[test]
fn recovering_in_a_cancelled_scope_leaves_a_consistent_exit() {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let mut scope = Box::pin(deferral::scope(async move |d| -> Out {
        // Dropped during the body: cleanup runs newest first.
        d.defer_with(move |exit: &mut Exit<Out>| {
            let view = (
                exit.is_cancelled(),
                exit.is_returned(),
                exit.output().copied(),
            );
            *s.lock().unwrap() = Some(view);
        });
        d.defer_with(|exit: &mut Exit<Out>| assert!(exit.recover(Ok(())).is_some()));
        d.defer(|| panic!("a cleanup panics during the cancellation"));
        std::future::pending::<()>().await;
        Ok(())
    }));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(scope.as_mut().poll(&mut cx).is_pending());
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(scope)));
    assert!(dropped.is_ok(), "the panic was recovered");
    let (cancelled, returned, output) = seen.lock().unwrap().take().expect("the last cleanup ran");
    let view = format!("is_cancelled {cancelled}, is_returned {returned}, output {output:?}");
    assert_eq!(output.is_some(), returned, "{view}");
    assert!(
        !cancelled || output.is_none(),
        "a cancelled body has no output: {view}"
    );
}
