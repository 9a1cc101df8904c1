//! The promise API a new user reaches for: errors that compose with `?`,
//! nameable (boxed) promise types, and panicking executors turned into
//! rejections on request (all need `std`).
#![cfg(feature = "std")]

mod support;

use std::io;
use std::pin::Pin;

use deferral::promise::PromiseState;
use deferral::{DeferredPromise, PromiseError, PromiseExt};
use support::{WakeCounter, block_on};

// ------------------------------------------------------------------ errors

#[test]
fn question_mark_into_io_error() {
    async fn read() -> io::Result<u32> {
        let n = DeferredPromise::<u32, PromiseError<io::Error>>::new(|r| r.resolve(5)).await?;
        Ok(n)
    }
    async fn rejected() -> io::Result<u32> {
        DeferredPromise::<u32, PromiseError<io::Error>>::new(|r| {
            r.reject(io::Error::new(io::ErrorKind::TimedOut, "slow"))
        })
        .await?;
        unreachable!()
    }
    async fn abandoned() -> io::Result<u32> {
        DeferredPromise::<u32, PromiseError<io::ErrorKind>>::new(|r| drop(r)).await?;
        unreachable!()
    }
    assert_eq!(block_on(read()).unwrap(), 5);
    assert_eq!(
        block_on(rejected()).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    let gone = block_on(abandoned()).unwrap_err();
    assert_eq!(gone.kind(), io::ErrorKind::BrokenPipe);
    assert!(gone.to_string().contains("abandoned"), "{gone}");
}

#[derive(Debug, PartialEq)]
enum MyErr {
    Device(u8),
    Gone,
}

impl From<PromiseError<MyErr>> for MyErr {
    fn from(e: PromiseError<MyErr>) -> Self {
        e.rejection_or_else(|| MyErr::Gone)
    }
}

#[test]
fn question_mark_into_the_users_own_error() {
    async fn run(settle: u8) -> Result<u8, MyErr> {
        let v = DeferredPromise::<u8, PromiseError<MyErr>>::new(move |r| match settle {
            0 => drop(r),
            1 => drop(r.reject(MyErr::Device(3))),
            _ => drop(r.resolve(9)),
        })
        .await?;
        Ok(v)
    }
    assert_eq!(block_on(run(0)), Err(MyErr::Gone));
    assert_eq!(block_on(run(1)), Err(MyErr::Device(3)));
    assert_eq!(block_on(run(2)), Ok(9));
}

#[test]
fn question_mark_into_a_boxed_error() {
    async fn run() -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
        Ok(DeferredPromise::<u8, PromiseError<io::Error>>::new(|r| drop(r)).await?)
    }
    assert!(
        block_on(run())
            .unwrap_err()
            .to_string()
            .contains("abandoned")
    );
}

// ------------------------------------------------------------------- boxed

struct Client {
    pending: deferral::promise::BoxPromise<'static, u32, PromiseError<io::Error>>,
}

#[test]
fn a_promise_in_a_struct_field_and_promises_of_different_closures_in_a_vec() {
    let c = Client {
        pending: DeferredPromise::new(|r| r.resolve(1)).boxed(),
    };
    assert_eq!(
        c.pending.state(),
        PromiseState::Pending(deferral::promise::Progress::Unstarted)
    );
    let all = vec![
        c.pending,
        DeferredPromise::new(|r| r.resolve(2)).boxed(),
        DeferredPromise::detached(|r| r.adopt(async { Ok(3) })).boxed(),
        DeferredPromise::lazy(|| async { Ok(4) })
            .deferred_then(|v: u32| Ok(v * 10))
            .deferred_catch(|e: io::Error| Err(PromiseError::Rejected(e)))
            .boxed(),
    ];
    let out: Vec<u32> = all.into_iter().map(|p| block_on(p).unwrap()).collect();
    assert_eq!(out, [1, 2, 3, 40]);
}

#[test]
fn boxed_promises_are_send_unpin_fused() {
    use futures::future::FusedFuture;
    fn send_unpin<T: Send + Unpin>(_: &T) {}
    let mut p = DeferredPromise::<u8, ()>::resolved(1).boxed();
    send_unpin(&p);
    assert!(!p.is_terminated());
    assert_eq!(block_on(&mut p), Ok(1));
    assert!(p.is_terminated());
    let local: deferral::promise::LocalBoxPromise<'_, u8, ()> = p.into();
    assert!(local.is_terminated());
}

// ------------------------------------------------------------------ panics

/// Without the opt-in a panicking executor unwinds out of `poll`; the
/// promise is then finished (polling again panics with a clear message).
#[test]
fn panicking_executor_propagates_by_default() {
    let mut p = Box::pin(DeferredPromise::<u8, PromiseError<()>>::new(|_r| {
        panic!("executor bug")
    }));
    let w = WakeCounter::new();
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        support::poll_once(p.as_mut(), &w)
    }));
    assert!(first.is_err());
    assert_eq!(p.state(), PromiseState::Rejected);
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        support::poll_once(p.as_mut(), &w)
    }));
    let message = again.unwrap_err();
    assert_eq!(
        message.downcast_ref::<&str>(),
        Some(&"`DeferredPromise` polled after completion")
    );
}

#[test]
fn catch_panics_turns_a_panicking_executor_into_a_rejection() {
    use deferral::promise::Caught;
    let p =
        DeferredPromise::<u8, PromiseError<()>>::new(|_r| panic!("executor bug")).catch_panics();
    match block_on(p) {
        Err(Caught::Panicked(panic)) => assert_eq!(panic.message(), Some("executor bug")),
        other => panic!("{other:?}"),
    }
    // A detached executor that panicked after handing its resolver out:
    // the resolver is dropped by the unwinding (abandon), the panic wins.
    let p = DeferredPromise::<u8, PromiseError<()>>::detached(|_r| -> () { panic!("late") })
        .catch_panics();
    assert!(matches!(block_on(p), Err(Caught::Panicked(_))));
    // A panicking handler in a chain, and a panicking followed future.
    let p = DeferredPromise::<u8, ()>::resolved(1)
        .deferred_then(|_| -> Result<u8, ()> { panic!("handler") })
        .catch_panics();
    assert!(matches!(block_on(p), Err(Caught::Panicked(ref p)) if p.message() == Some("handler")));
    let p = DeferredPromise::<u8, ()>::lazy(|| async { panic!("{}", String::from("future")) })
        .catch_panics();
    assert!(matches!(block_on(p), Err(Caught::Panicked(ref p)) if p.message() == Some("future")));
    // Values and rejections pass through.
    let p = DeferredPromise::<u8, PromiseError<&str>>::new(|r| r.reject("no")).catch_panics();
    assert!(matches!(
        block_on(p),
        Err(Caught::Rejected(PromiseError::Rejected("no")))
    ));
    let mut p = DeferredPromise::<u8, ()>::resolved(3).catch_panics();
    assert_eq!(block_on(Pin::new(&mut p)).unwrap(), 3);
}

/// Issue 26: `catch_panics` after a settlement keeps the first settlement,
/// as in JS (`new Promise((res) => { res(123); throw e })` stays resolved
/// with 123). On c9d10e1 the value was lost: `Err(Caught::Panicked(..))`.
#[test]
fn catch_panics_after_a_settlement_keeps_the_first_settlement() {
    use deferral::PromiseCell;
    use deferral::promise::Caught;
    let p = DeferredPromise::<u8, PromiseError<()>>::new(|res| {
        res.resolve(123).unwrap();
        panic!("thrown after resolving");
    })
    .catch_panics();
    assert_eq!(block_on(p).unwrap(), 123);
    // A rejection followed by a panic: the rejection stands.
    let p = DeferredPromise::<u8, PromiseError<&str>>::new(|res| {
        res.reject("no").unwrap();
        panic!("thrown after rejecting");
    })
    .catch_panics();
    assert!(matches!(
        block_on(p),
        Err(Caught::Rejected(PromiseError::Rejected("no")))
    ));
    // The same with the resolvers that may leave their executor.
    let p = DeferredPromise::<u8, PromiseError<()>>::detached(|res| {
        res.resolve(7).unwrap();
        panic!("late");
    })
    .catch_panics();
    assert_eq!(block_on(p).unwrap(), 7);
    static CELL: PromiseCell<u8, ()> = PromiseCell::new();
    let p = CELL
        .lazy(|res| {
            res.resolve(9).unwrap();
            panic!("late");
        })
        .unwrap()
        .catch_panics();
    assert_eq!(block_on(p).unwrap(), 9);
    assert!(CELL.is_free());
    // A panic before any settlement is still the rejection.
    let p = CELL
        .lazy(|_res| -> () { panic!("early") })
        .unwrap()
        .catch_panics();
    assert!(matches!(block_on(p), Err(Caught::Panicked(ref p)) if p.message() == Some("early")));
    assert!(CELL.is_free());
}
