// A guard borrows the scope's slab: it cannot be the body's output, which
// outlives the body.
fn main() {
    let _ = deferral::scope(async |d| {
        let guard = d.guard(String::from("conn"), drop);
        guard
    });
}
