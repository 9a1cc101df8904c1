// A `scope_local` holding `!Send` cleanup state cannot be moved to another
// thread: spawning it on tokio's multi-thread runtime is a compile error.
use std::rc::Rc;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let shared = Rc::new(1);
        let scope = deferral::scope_local(async |d| {
            d.defer(move || drop(shared));
        });
        tokio::spawn(scope);
    });
}
