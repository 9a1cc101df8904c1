//! A tokio service whose request handlers borrow a database-like connection
//! from a pool: the connection goes back to the pool after every request —
//! returned, failed, panicked or timed out — a transaction commits on
//! success and rolls back on error (`defer_on_error`, Zig's `errdefer`),
//! and a failing `close` is reported instead of lost.
//!
//! ```console
//! $ cargo run -p deferral-interop --example tokio_service
//! ```

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deferral::Exit;
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
    async fn release(self: Arc<Self>, conn: Conn) {
        tokio::task::yield_now().await; // `DISCARD ALL` on a real server
        self.idle.lock().unwrap().push(conn);
        self.returned.fetch_add(1, SeqCst);
        self.permits.add_permits(1);
    }
}

/// One request: a transaction on a pooled connection.
async fn handle(pool: Arc<Pool>, user: u32, sql: &'static str) -> io::Result<u64> {
    deferral::scope(async move |d| {
        // The connection is the scope's for the whole body, and goes back
        // to the pool after it however the body ends.
        let p = pool.clone();
        let mut conn = d.guard_async(pool.acquire().await, move |c| p.release(c));
        conn.query("BEGIN").await?;
        // Roll back only if the body fails; commit only if it succeeds.
        let log = conn.log.clone();
        d.defer_on_error(move |e: &mut io::Error| {
            log.lock()
                .unwrap()
                .push(format!("user {user}: ROLLBACK ({e})"));
        });
        // (`defer_on_success` would run on an `Err` too: the body
        // *returned*. Commit looks at the output.)
        let log = conn.log.clone();
        d.defer_with(move |exit: &mut Exit<io::Result<u64>>| {
            if let Some(Ok(_)) = exit.output() {
                log.lock().unwrap().push(format!("user {user}: COMMIT"));
            }
        });
        let rows = conn.query(sql).await?;
        Ok(rows)
    })
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // A cancelled scope (a timed-out request) hands its unstarted async
    // cleanup — here, giving the connection back — to tokio.
    deferral::cancel::set_cancel_handler(|orphan| drop(tokio::spawn(orphan.into_boxed())));

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
    // connection still goes back to the pool (through the cancel handler).
    let slow = handle(pool.clone(), 99, "SELECT pg_sleep(10)");
    let timed_out = tokio::time::timeout(Duration::from_micros(1), slow).await;
    assert!(timed_out.is_err());
    while pool.returned.load(SeqCst) < 9 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.idle.lock().unwrap().len(), 2);

    let log = log.lock().unwrap();
    assert_eq!(log.iter().filter(|l| l.ends_with("COMMIT")).count(), 7);
    assert!(
        log.iter()
            .any(|l| l.starts_with("user 3: ROLLBACK (no such table)"))
    );
    for line in log.iter().filter(|l| l.starts_with("user")) {
        println!("{line}");
    }
    println!("8 requests and 1 timeout on 2 connections: every connection returned");
}
