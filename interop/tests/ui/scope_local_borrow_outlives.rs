// Cleanup registered on a `scope_local` may borrow what outlives the scope,
// never the body's own locals: they are dropped before cleanup runs.
fn main() {
    futures::executor::block_on(async {
        deferral::scope_local(async |d| {
            let mut local = Vec::new();
            d.defer(|| local.push(1));
        })
        .await;
    });
}
