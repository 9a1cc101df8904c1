//! Nothing here: the benchmarks are this package's `[[bench]]` targets (see
//! `Cargo.toml`). Run them with `cargo bench -p deferral-bench`, or
//! `bash benches/report.sh` for the side-by-side report.
