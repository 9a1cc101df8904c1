//! Nothing here: the tests are this package's `tests/` (run them with
//! `cargo test -p deferral-interop`).
