// `When::Ok` / `When::Err` tell success from failure: the body's output
// must be able to (a `Result`, or `()`).
fn main() {
    let _ = deferral::scope(async |d| {
        d.defer(|| ()).when(deferral::When::Panicked);
        7_u32
    });
}
