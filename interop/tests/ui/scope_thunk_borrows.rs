// `scope`'s cleanup is `Send + 'static` (the scope stays spawnable): a borrow
// of the caller's state is refused, with a pointer to `scope_local`.
fn main() {
    let mut log = Vec::new();
    futures::executor::block_on(deferral::scope(async |d| {
        d.defer(|| log.push(1));
    }));
}
