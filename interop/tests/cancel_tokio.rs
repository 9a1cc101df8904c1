//! Cancellation on tokio, written the natural way: a request handler takes
//! a pooled connection with one `guard_async_with` (commit on `Ok`, roll
//! back otherwise, return the connection always) and sets no handler at
//! all. `tokio::time::timeout` fires at every await point of its body.
//!
//! - With the `tokio` feature (this member's default): the handler's async
//!   cleanup is spawned on the runtime — the connection is rolled back and
//!   returned, exactly once.
//! - Without it (`--no-default-features --features std`): nothing can run
//!   the async cleanup, and the fallback gets the connection back to the
//!   pool, exactly once.
//! - `scope_local` with `Rc` state on a `LocalSet`: never handed over; the
//!   fallback gets the value (borrowing the caller's `Rc`).
#![cfg(all(feature = "std", not(miri)))]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deferral::Outcome;
use tokio::sync::Semaphore;

/// Await points in the body.
const POINTS: usize = 4;

#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<Conn>>,
    log: Mutex<Vec<String>>,
    returned: AtomicUsize,
}

struct Conn {
    id: usize,
}

impl Pool {
    fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }
    fn take(&self) -> Conn {
        self.idle.lock().unwrap().pop().expect("an idle connection")
    }
    fn put(&self, conn: Conn) {
        self.idle.lock().unwrap().push(conn);
        self.returned.fetch_add(1, SeqCst);
    }
}

/// The handler, as a user writes it: no global setup.
async fn handle(
    pool: Arc<Pool>,
    steps: Arc<Semaphore>,
    reached: Arc<AtomicUsize>,
) -> Result<(), String> {
    deferral::scope(async move |d| {
        let (p1, p2) = (pool.clone(), pool.clone());
        let conn = d.guard_async_with(
            pool.take(),
            async move |conn: Conn, outcome: Outcome| {
                tokio::task::yield_now().await; // the async COMMIT / ROLLBACK
                let what = if outcome.is_ok() {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                p1.note(format!("conn {}: {what} ({outcome:?})", conn.id));
                p1.put(conn);
            },
            move |conn| {
                p2.note(format!("conn {}: fallback", conn.id));
                p2.put(conn);
            },
        );
        for point in 0..POINTS {
            reached.store(point + 1, SeqCst);
            steps.acquire().await.expect("open").forget(); // an await point
            pool.note(format!("conn {}: query {point}", conn.id));
        }
        Ok(())
    })
    .await
}

async fn run_with_timeout_at(point: usize) -> Arc<Pool> {
    let pool = Arc::new(Pool::default());
    pool.idle.lock().unwrap().push(Conn { id: 7 });
    let steps = Arc::new(Semaphore::new(point)); // passes `point` await points
    let reached = Arc::new(AtomicUsize::new(0));
    let request = handle(pool.clone(), steps, reached.clone());
    let out = tokio::time::timeout(Duration::from_millis(30), request).await;
    if point >= POINTS {
        assert_eq!(out.expect("finished"), Ok(()));
    } else {
        assert!(out.is_err(), "timed out at await point {point}");
        assert_eq!(reached.load(SeqCst), point + 1, "it was parked there");
    }
    // Wait (bounded) for the connection to come back.
    for _ in 0..200 {
        if pool.returned.load(SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_at_every_await_point_returns_the_connection_exactly_once() {
    for point in 0..=POINTS {
        let pool = run_with_timeout_at(point).await;
        let log = pool.log.lock().unwrap().clone();
        assert_eq!(
            pool.returned.load(SeqCst),
            1,
            "point {point}: returned once: {log:?}"
        );
        assert_eq!(pool.idle.lock().unwrap().len(), 1, "point {point}");
        let last = log.last().expect("something happened").clone();
        if point >= POINTS {
            assert_eq!(last, "conn 7: COMMIT (Ok)");
        } else if cfg!(feature = "tokio-handover") {
            // Spawned on the runtime: the rollback ran, through the
            // connection, after the request was cancelled.
            assert_eq!(
                last, "conn 7: ROLLBACK (Cancelled)",
                "point {point}: {log:?}"
            );
        } else {
            // No runtime hand-over: the fallback got the connection.
            assert_eq!(last, "conn 7: fallback", "point {point}: {log:?}");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn scope_local_with_rc_state_on_a_local_set_gives_the_fallback_the_value() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let pool: Rc<RefCell<Vec<&'static str>>> = Rc::default();
            let log: Rc<RefCell<Vec<String>>> = Rc::default();
            let (p1, p2, l) = (pool.clone(), pool.clone(), log.clone());
            let request = deferral::scope_local(async |d| {
                let _conn = d.guard_async_with(
                    "conn",
                    async move |conn, outcome: Outcome| {
                        l.borrow_mut().push(format!("cleanup {outcome:?}"));
                        p1.borrow_mut().push(conn);
                    },
                    |conn| p2.borrow_mut().push(conn), // borrows the caller's `Rc`
                );
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<(), ()>(())
            });
            let out = tokio::time::timeout(Duration::from_millis(10), request).await;
            assert!(out.is_err());
            assert_eq!(*pool.borrow(), ["conn"], "the fallback got the value");
            assert!(log.borrow().is_empty(), "the async cleanup could not run");
        })
        .await;
}
