// Async cleanup gets how the body ended by value (`Outcome`), not a borrow
// of the error: its future runs after the body, possibly elsewhere (a
// cancelled scope hands it over), where no error can be borrowed. The
// error says what the closure must take instead.
fn main() {
    let _ = deferral::scope(async |d| {
        d.defer_async_with(async |e: &mut String| {
            e.push_str("rolled back");
        });
        Err::<(), String>("failed".into())
    });
}
