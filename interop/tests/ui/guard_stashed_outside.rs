// Nor can a guard be stashed in a variable outside the scope.
fn main() {
    let mut stash = None;
    let _ = deferral::scope(async |d: &deferral::Defer<()>| {
        stash = Some(d.try_guard(5_u32, drop).unwrap());
    });
    drop(stash);
}
