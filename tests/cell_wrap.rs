//! Finding 1 of the review of bf5d9a4: a `PromiseCell`'s 24-bit generation
//! counter wraps after 2^24 reuses, and a resolver kept that long used to be
//! taken for the newer generation's: it settled the newer promise (or a lazy
//! one that never started, leaking the value), and in a race two promises
//! received one value and dropped it twice.
//!
//! The cell now refuses a finished resolver by construction (it never
//! touches the cell again), at any reuse count. This reuses one cell
//! 2 × 2^24 + 10 times: release mode only (about a second); CI runs it with
//! `cargo test --release --test cell_wrap`.

mod support;

use deferral::PromiseCell;
use deferral::promise::Refusal;
use support::DropCounter;

type Tracked = support::drops::Tracked;

const WRAP: u32 = 1 << 24;

/// One reuse of the cell: claim it (lazily) and let it go.
fn reuse(cell: &PromiseCell<Tracked, ()>) {
    drop(cell.lazy(|_resolver| ()).unwrap());
}

#[test]
#[cfg_attr(
    any(debug_assertions, miri),
    ignore = "release only: 2^25 reuses (cargo test --release --test cell_wrap)"
)]
fn finding_1_a_finished_resolver_is_refused_after_the_generation_wraps() {
    static CELL: PromiseCell<Tracked, ()> = PromiseCell::new();
    let drops = DropCounter::new();

    // Generation 0: settled, taken; the resolver is kept.
    let (promise, stale) = CELL.promise().unwrap();
    stale.resolve(drops.tracked()).map_err(drop).unwrap();
    drop(support::block_on(promise));
    let mut created = 1;

    // Back to generation 0 (mod 2^24) with a fresh pair on it.
    for _ in 0..WRAP - 1 {
        reuse(&CELL);
    }
    let (promise, fresh) = CELL.promise().unwrap();
    let refused = stale.resolve(drops.tracked()).unwrap_err();
    created += 1;
    assert_eq!(refused.reason(), Refusal::Stale);
    drop(refused);
    fresh.resolve(drops.tracked()).map_err(drop).unwrap();
    created += 1;
    assert!(
        support::block_on(promise).is_ok(),
        "the newer promise got its own value"
    );
    drop(fresh);

    // Once more, with a lazy promise that never starts on that generation:
    // nothing may be settled into it (it used to leak the value).
    for _ in 0..WRAP - 1 {
        reuse(&CELL);
    }
    let lazy = CELL.lazy(|_resolver| ()).unwrap();
    let refused = stale.resolve(drops.tracked()).unwrap_err();
    created += 1;
    assert_eq!(refused.reason(), Refusal::Stale);
    drop(refused);
    drop(lazy);
    assert!(CELL.is_free());

    // And past it.
    for _ in 0..10 {
        reuse(&CELL);
    }
    drop(stale); // a finished resolver's drop abandons nothing
    let (promise, fresh) = CELL.promise().unwrap();
    fresh.resolve(drops.tracked()).map_err(drop).unwrap();
    created += 1;
    drop(support::block_on(promise));
    drop(fresh);
    assert_eq!(drops.get(), created, "every value dropped exactly once");
    assert!(CELL.is_free());
}
