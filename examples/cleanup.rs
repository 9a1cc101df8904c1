//! Go-style `defer` for async Rust: cleanup that runs when the body ends —
//! in reverse order, after errors and panics, and before the scope returns.
//!
//! A transfer over a pooled database connection: commit on success, roll
//! back on failure, return the connection to the pool either way — one
//! registration over the `&mut Conn` the body uses. A failing `close`
//! turns the function's `Ok` into an `Err` instead of being lost.
//!
//! Run it with `cargo run --example cleanup`.

use std::sync::{Arc, Mutex};

use deferral::{Outcome, When};

/// A pretend database connection whose operations are async.
struct Conn {
    id: u32,
    log: Log,
}

type Log = Arc<Mutex<Vec<String>>>;

#[derive(Debug)]
enum DbError {
    Rejected(&'static str),
}

/// The application's error: database errors convert into it with `?` —
/// and so do the cleanup's.
#[derive(Debug)]
enum AppError {
    Db(DbError),
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        AppError::Db(e)
    }
}

impl Conn {
    fn note(&self, what: impl Into<String>) {
        self.log
            .lock()
            .unwrap()
            .push(format!("conn {}: {}", self.id, what.into()));
    }
    async fn execute(&mut self, sql: &'static str) -> Result<(), DbError> {
        self.note(sql);
        if sql.contains("bad") {
            return Err(DbError::Rejected(sql));
        }
        Ok(())
    }
    async fn commit(&mut self) -> Result<(), DbError> {
        self.note("COMMIT");
        Ok(())
    }
    async fn rollback(&mut self) -> Result<(), DbError> {
        self.note("ROLLBACK");
        Ok(())
    }
}

/// A connection pool: `get` takes one, `put` returns it.
#[derive(Clone, Default)]
struct Pool(Arc<Mutex<Vec<Conn>>>);

impl Pool {
    fn get(&self) -> Conn {
        self.0.lock().unwrap().pop().expect("a free connection")
    }
    fn put(&self, conn: Conn) {
        conn.note("back in the pool");
        self.0.lock().unwrap().push(conn);
    }
}

async fn transfer(pool: &Pool, log: &Log, rows: &'static str) -> Result<u32, AppError> {
    deferral::scope(async |d| {
        let (p1, p2) = (pool.clone(), pool.clone());
        // One registration: the body uses `&mut Conn`; after it, commit or
        // roll back, then return the connection, however the body ended.
        // If the cleanup can never run (the scope cancelled, nothing to run
        // it), the fallback still gets the connection back to the pool.
        let mut conn = d.guard_async_with(
            pool.get(),
            async move |mut conn: Conn, outcome: Outcome| {
                let done = if outcome.is_ok() {
                    conn.commit().await
                } else {
                    conn.rollback().await
                };
                p1.put(conn);
                done // a failing commit becomes the transfer's error
            },
            move |conn| p2.put(conn),
        );
        // Zig's `errdefer`: only when the transfer fails.
        let l = log.clone();
        d.defer(move || l.lock().unwrap().push("alert: transfer failed".into()))
            .when(When::Failed);

        conn.execute("BEGIN").await?;
        conn.execute(rows).await?;
        Ok(conn.id)
    })
    .await
}

fn main() {
    futures::executor::block_on(async {
        let log = Log::default();
        let pool = Pool::default();
        pool.put(Conn {
            id: 1,
            log: log.clone(),
        });
        log.lock().unwrap().clear();

        let ok = transfer(&pool, &log, "INSERT rows").await;
        println!("transfer: {ok:?}");
        let failed = transfer(&pool, &log, "INSERT bad rows").await;
        println!("transfer: {failed:?}");
        for line in log.lock().unwrap().iter() {
            println!("    {line}");
        }

        assert!(matches!(ok, Ok(1)));
        let Err(AppError::Db(DbError::Rejected(sql))) = failed else {
            panic!("the transfer failed");
        };
        assert_eq!(sql, "INSERT bad rows");
        assert_eq!(
            *log.lock().unwrap(),
            [
                "conn 1: BEGIN",
                "conn 1: INSERT rows",
                "conn 1: COMMIT",
                "conn 1: back in the pool",
                "conn 1: BEGIN",
                "conn 1: INSERT bad rows",
                "alert: transfer failed",
                "conn 1: ROLLBACK",
                "conn 1: back in the pool",
            ]
        );
        assert_eq!(pool.0.lock().unwrap().len(), 1, "the connection came back");
    });
}
