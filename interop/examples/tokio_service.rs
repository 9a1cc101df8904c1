//! A tokio service whose request handlers borrow a database-like connection
//! from a pool: one registration commits the transaction on success, rolls
//! it back through the connection otherwise — an error, a panic, or a
//! timeout — and returns the connection to the pool after every request.
//! No global setup: with `deferral`'s `tokio` feature, the cleanup of a
//! timed-out request is spawned on the runtime.
//!
//! ```console
//! $ cargo run -p deferral-interop --example tokio_service
//! ```

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deferral::Outcome;
use tokio::sync::Semaphore;

/// A connection: a name, and what happened on it.
#[derive(Debug)]
struct Conn {
    id: usize,
    log: Arc<Mutex<Vec<String>>>,
}

impl Conn {
    async fn query(&mut self, sql: &str) -> io::Result<u64> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.log
            .lock()
            .unwrap()
            .push(format!("conn {}: {sql}", self.id));
        if sql.contains("missing_table") {
            return Err(io::Error::other("no such table"));
        }
        if sql.contains("pg_sleep") {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        Ok(sql.len() as u64)
    }
}

/// A pool of connections behind a semaphore.
struct Pool {
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
    returned: AtomicUsize,
}

impl Pool {
    fn new(size: usize, log: &Arc<Mutex<Vec<String>>>) -> Arc<Self> {
        let idle = (0..size)
            .map(|id| Conn {
                id,
                log: log.clone(),
            })
            .collect();
        Arc::new(Pool {
            idle: Mutex::new(idle),
            permits: Semaphore::new(size),
            returned: AtomicUsize::new(0),
        })
    }

    async fn acquire(&self) -> Conn {
        self.permits.acquire().await.expect("never closed").forget();
        self.idle
            .lock()
            .unwrap()
            .pop()
            .expect("a permit means an idle conn")
    }

    /// Gives a connection back (an async step, like a driver's `reset`).
    async fn release(&self, conn: Conn) {
        tokio::task::yield_now().await; // `DISCARD ALL` on a real server
        self.release_now(conn);
    }

    fn release_now(&self, conn: Conn) {
        self.idle.lock().unwrap().push(conn);
        self.returned.fetch_add(1, SeqCst);
        self.permits.add_permits(1);
    }
}

/// One request: a transaction on a pooled connection.
async fn handle(pool: Arc<Pool>, user: u32, sql: &'static str) -> io::Result<u64> {
    deferral::scope(async move |d| {
        // The connection is the scope's for the whole body; after it, one
        // cleanup commits or rolls back through it, then gives it back —
        // however the body ended (an error, a panic, a timeout).
        let (p1, p2) = (pool.clone(), pool.clone());
        let mut conn = d.guard_async_with(
            pool.acquire().await,
            async move |mut conn: Conn, outcome: Outcome| {
                let end = if outcome.is_ok() {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                let done = conn.query(end).await.map(drop);
                conn.log
                    .lock()
                    .unwrap()
                    .push(format!("user {user}: {end} ({outcome:?})"));
                p1.release(conn).await;
                done // a failed COMMIT is the request's error
            },
            // Only if the cleanup can never run (no runtime to spawn it on).
            move |conn| p2.release_now(conn),
        );
        conn.query("BEGIN").await?;
        let rows = conn.query(sql).await?;
        Ok(rows)
    })
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::new(2, &log);

    // Eight requests on two connections; the scopes are `Send`, so they
    // run on tokio's worker threads.
    let mut requests = tokio::task::JoinSet::new();
    for user in 0..8 {
        let sql = if user == 3 {
            "SELECT * FROM missing_table"
        } else {
            "SELECT 1"
        };
        requests.spawn(handle(pool.clone(), user, sql));
    }
    let mut failed = 0;
    while let Some(result) = requests.join_next().await {
        if result.expect("no handler panicked").is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1);
    assert_eq!(pool.returned.load(SeqCst), 8);

    // A request that times out mid-query: the scope is dropped, and its
    // cleanup still rolls back and returns the connection (spawned on the
    // runtime: no handler to set).
    let slow = handle(pool.clone(), 99, "SELECT pg_sleep(10)");
    let timed_out = tokio::time::timeout(Duration::from_millis(20), slow).await;
    assert!(timed_out.is_err());
    while pool.returned.load(SeqCst) < 9 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(pool.idle.lock().unwrap().len(), 2);

    let log = log.lock().unwrap();
    assert_eq!(log.iter().filter(|l| l.ends_with("COMMIT (Ok)")).count(), 7);
    assert!(log.iter().any(|l| l == "user 3: ROLLBACK (Err)"));
    assert!(log.iter().any(|l| l == "user 99: ROLLBACK (Cancelled)"));
    for line in log.iter().filter(|l| l.starts_with("user")) {
        println!("{line}");
    }
    println!("8 requests and 1 timeout on 2 connections: every connection returned");
}
