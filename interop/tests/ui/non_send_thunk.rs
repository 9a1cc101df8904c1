// Scopes are `Send` (they can be spawned on multi-threaded runtimes), so
// every thunk must be `Send`.
use std::rc::Rc;

fn main() {
    let _ = deferral::scope(async |d: &deferral::Defer<()>| {
        let shared = Rc::new(1);
        d.defer(move || drop(shared));
    });
}
