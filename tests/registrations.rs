//! What issue 22 asked of the registrations, one test each: "on success"
//! means a non-`Err` output; a cleanup's error converts into the output's
//! with `From`, as `?` does; commit / roll back / return is one
//! registration over the guarded value. (The `async |e: &mut E|` closure
//! that cannot be written is a UI test:
//! `interop/tests/ui/async_cleanup_borrows_the_error.rs`.)

mod support;

use std::cell::RefCell;

use deferral::scope::ScopeBuilder;
use deferral::{Exit, Outcome, When};
use futures::executor::block_on;
use support::yield_now;

#[derive(Debug, PartialEq)]
struct DbError(&'static str);

#[derive(Debug, PartialEq)]
enum AppError {
    Body(&'static str),
    Db(DbError),
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        AppError::Db(e)
    }
}

#[test]
fn cleanup_for_success_does_not_run_after_the_body_returns_err() {
    let log = RefCell::new(Vec::new());
    // (Four registrations: more than the 64 bytes a no-`alloc` scope has
    // by default on a 64-bit host.)
    let out: Result<(), AppError> =
        block_on(ScopeBuilder::new().capacity::<256>().run_local(async |d| {
            d.defer(|| log.borrow_mut().push("commit")).when(When::Ok);
            d.defer_async(async { log.borrow_mut().push("commit async") })
                .when(When::Ok);
            let _tx = d
                .guard("tx", |_| log.borrow_mut().push("commit guard"))
                .when(When::Ok);
            d.defer(|| log.borrow_mut().push("rollback"))
                .when(When::Err);
            Err(AppError::Body("failed"))
        }));
    assert_eq!(out, Err(AppError::Body("failed")));
    assert_eq!(*log.borrow(), ["rollback"]);

    // And after `Ok`, the other way round.
    log.borrow_mut().clear();
    let out: Result<u8, AppError> = block_on(deferral::scope_local(async |d| {
        d.defer(|| log.borrow_mut().push("commit")).when(When::Ok);
        d.defer(|| log.borrow_mut().push("rollback"))
            .when(When::Err);
        Ok(1)
    }));
    assert_eq!(out, Ok(1));
    assert_eq!(*log.borrow(), ["commit"]);
}

#[test]
fn a_cleanup_error_converts_into_the_output_error_with_from() {
    // Sync: `Result<(), DbError>` into a body returning `Result<_, AppError>`.
    let out: Result<u8, AppError> = block_on(deferral::scope(async |d| {
        d.defer(|| Err(DbError("close failed")));
        Ok(1)
    }));
    assert_eq!(out, Err(AppError::Db(DbError("close failed"))));

    // Async, from a guard's cleanup future.
    let out: Result<u8, AppError> = block_on(deferral::scope(async |d| {
        let _conn = d.guard_async("conn", async |_conn| {
            yield_now().await;
            Err(DbError("flush failed"))
        });
        Ok(2)
    }));
    assert_eq!(out, Err(AppError::Db(DbError("flush failed"))));

    // The body failed first: its error is the one kept (the cause).
    let out: Result<u8, AppError> = block_on(deferral::scope(async |d| {
        d.defer(|| Err(DbError("close failed")));
        Err(AppError::Body("query failed"))
    }));
    assert_eq!(out, Err(AppError::Body("query failed")));
}

#[test]
fn commit_roll_back_and_return_in_one_registration_over_the_guarded_value() {
    struct Conn {
        log: Vec<&'static str>,
    }
    impl Conn {
        async fn commit(&mut self) {
            yield_now().await;
            self.log.push("commit");
        }
        async fn rollback(&mut self) {
            yield_now().await;
            self.log.push("rollback");
        }
    }
    let pool = RefCell::new(Vec::new());
    let run = |fail: bool| -> Result<(), &'static str> {
        // A slab big enough for the connection and its cleanup's future
        // without a heap too.
        block_on(ScopeBuilder::new().capacity::<512>().run_local(async |d| {
            let mut conn = d.guard_async_with(
                Conn { log: vec![] },
                async |mut conn: Conn, outcome: Outcome| {
                    if outcome.is_ok() {
                        conn.commit().await
                    } else {
                        conn.rollback().await
                    }
                    pool.borrow_mut().push(conn); // returned however it ended
                },
                |conn| pool.borrow_mut().push(conn),
            );
            conn.log.push("query"); // `&mut Conn` for the body
            yield_now().await;
            if fail { Err("failed") } else { Ok(()) }
        }))
    };
    assert_eq!(run(false), Ok(()));
    assert_eq!(run(true), Err("failed"));
    let pool = pool.into_inner();
    assert_eq!(pool.len(), 2, "both connections went back");
    assert_eq!(pool[0].log, ["query", "commit"]);
    assert_eq!(pool[1].log, ["query", "rollback"]);
}

#[test]
fn a_cleanup_sees_how_the_body_ended_through_exit() {
    let out: Result<u8, AppError> = block_on(deferral::scope(async |d| {
        d.defer_with(|exit: &mut Exit<Result<u8, AppError>>| {
            assert_eq!(exit.outcome(), Outcome::Err);
            if let Some(AppError::Body(msg)) = exit.error_mut() {
                *msg = "rolled back";
            }
        });
        Err(AppError::Body("failed"))
    }));
    assert_eq!(out, Err(AppError::Body("rolled back")));
}

/// `When::holds` for every condition and outcome, against the rule each
/// variant documents.
#[test]
fn when_holds_exactly_for_its_outcomes() {
    let outcomes = [
        Outcome::Ok,
        Outcome::Err,
        Outcome::Panicked,
        Outcome::Cancelled,
    ];
    let conditions = [
        When::Always,
        When::Ok,
        When::Err,
        When::Failed,
        When::Panicked,
        When::Cancelled,
        When::NotPanicked,
    ];
    for when in conditions {
        for outcome in outcomes {
            let expected = match when {
                When::Always => true,
                When::Ok => outcome == Outcome::Ok,
                When::Err => outcome == Outcome::Err,
                When::Failed => outcome != Outcome::Ok,
                When::Panicked => outcome == Outcome::Panicked,
                When::Cancelled => outcome == Outcome::Cancelled,
                When::NotPanicked => outcome != Outcome::Panicked,
            };
            assert_eq!(when.holds(outcome), expected, "{when:?} {outcome:?}");
        }
    }
}
