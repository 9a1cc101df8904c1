//! Compile-fail tests: misuse the type system must reject, each with the
//! error a user sees (`tests/ui/*.stderr`). Regenerate the expected output
//! after a compiler upgrade with `TRYBUILD=overwrite cargo test --test ui`
//! and review the diff.
#![cfg(all(feature = "std", not(miri)))]

#[test]
fn misuse_is_a_compile_error() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
