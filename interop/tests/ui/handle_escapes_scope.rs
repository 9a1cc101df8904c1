// The handle is lent to the body only: it cannot be kept after the scope.
fn main() {
    let mut kept = None;
    let _ = deferral::scope(async |d: &deferral::Defer<()>| {
        kept = Some(d);
    });
    let _ = kept;
}
