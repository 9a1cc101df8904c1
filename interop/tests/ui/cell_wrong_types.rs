// A `PromiseCell<u32, ()>` is resolved with a `u32`, nothing else.
use deferral::PromiseCell;

static CELL: PromiseCell<u32, ()> = PromiseCell::new();

fn main() {
    let (_promise, resolver) = CELL.promise().unwrap();
    let _ = resolver.resolve("forty-two");
}
