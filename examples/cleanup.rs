//! Go-style `defer` for async Rust: cleanup that runs when the body ends —
//! in reverse order, after errors and panics, and before the scope returns.
//!
//! Run it with `cargo run --example cleanup`.

use std::io;
use std::sync::{Arc, Mutex};

/// A pretend network connection whose `close` is async and can fail.
struct Conn {
    name: &'static str,
    log: Log,
}

type Log = Arc<Mutex<Vec<String>>>;

impl Conn {
    async fn open(name: &'static str, log: &Log) -> io::Result<Conn> {
        log.lock().unwrap().push(format!("open {name}"));
        Ok(Conn {
            name,
            log: log.clone(),
        })
    }

    async fn send(&mut self, msg: &str) -> io::Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} <- {msg}", self.name));
        Ok(())
    }

    async fn close(self) -> io::Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("close {}", self.name));
        if self.name == "flaky" {
            return Err(io::Error::other("flaky: close failed"));
        }
        Ok(())
    }
}

/// Opens two connections, uses them, and lets the scope close them (LIFO).
/// A failing `close` turns the function's `Ok` into its `Err` instead of
/// being lost, and a failed transfer is recorded (Zig's `errdefer`).
async fn transfer(log: &Log, second: &'static str) -> io::Result<usize> {
    deferral::scope(async |d| {
        // The body uses each connection as `&mut Conn`; the scope consumes
        // it with `close()`, and a close error becomes the scope's error.
        let mut db = d.guard_async(Conn::open("db", log).await?, |c| c.close());
        // Runs (LIFO) after `peer` is closed and before `db` is: it sees a
        // failed close of `peer` as the transfer's error.
        let l = log.clone();
        d.defer_on_error(move |e: &mut io::Error| {
            l.lock()
                .unwrap()
                .push(format!("db: mark transfer failed ({e})"))
        });
        let mut peer = d.guard_async(Conn::open(second, log).await?, |c| c.close());
        let l = log.clone();
        d.defer(move || l.lock().unwrap().push("led off".into()));

        db.send("BEGIN").await?;
        peer.send("rows").await?;
        db.send("COMMIT").await?;
        Ok(2)
    })
    .await
}

fn main() {
    futures::executor::block_on(async {
        for second in ["peer", "flaky"] {
            let log = Log::default();
            let result = transfer(&log, second).await;
            println!("transfer via {second}: {result:?}");
            for line in log.lock().unwrap().iter() {
                println!("    {line}");
            }
        }
    });
}
