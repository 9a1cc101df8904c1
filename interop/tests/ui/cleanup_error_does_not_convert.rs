// A cleanup's error reaches the output through `From`, as `?` does: an
// error type that does not convert is a compile error that says so.
struct DbError;
struct AppError;

fn main() {
    let _ = deferral::scope(async |d| {
        d.defer(|| Err::<(), DbError>(DbError));
        Ok::<(), AppError>(())
    });
}
