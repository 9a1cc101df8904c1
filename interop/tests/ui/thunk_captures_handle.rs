// A thunk cannot keep the handle (thunks are `'static`): registering more
// thunks while the scope cleans up is impossible through the handle.
fn main() {
    let _ = deferral::scope(async |d: &deferral::Defer<()>| {
        d.defer(move || {
            let _ = d.defer(|| ());
        });
    });
}
