// Nor can a guard be stashed in a variable outside the scope.
fn main() {
    let mut stash = None;
    let _ = deferral::scope(async |d: &deferral::Defer<()>| {
        stash = Some(d.guard(5_u32, drop));
    });
    drop(stash);
}
