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

/// Opens two connections, uses them, and lets the scope close them (LIFO),
/// turning a failed close into the function's error instead of losing it.
async fn transfer(log: &Log, second: &'static str) -> io::Result<usize> {
    deferral::scope(async |d| {
        let mut db = d.guard_async(Conn::open("db", log).await?, |c| async move {
            c.close().await.expect("db closes cleanly");
        })?;
        let peer = Conn::open(second, log).await?;
        d.defer_async_with(async move {
            let closed = peer.close().await;
            // Go's named result: a failing close turns Ok into Err.
            move |out: &mut io::Result<usize>| {
                if let (Ok(_), Err(e)) = (&*out, closed) {
                    *out = Err(e);
                }
            }
        })?;
        let l = log.clone();
        d.defer(move || l.lock().unwrap().push("led off".into()))?;

        db.send("BEGIN").await?;
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
