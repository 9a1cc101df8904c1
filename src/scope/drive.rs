//! Driving a chain of entries to its end — a scope's cleanup after its
//! body, a [`DeferStack`](super::DeferStack) being disposed of — and
//! finishing what is left of one that cannot be driven any more (a scope
//! dropped early, a grace deadline, a stack dropped).
//!
//! Nothing here depends on the payloads' or the output's types: one copy
//! serves every scope and stack in a program (it matters for flash). The
//! typed parts are the entries' vtables and the exit, passed through its
//! untyped head ([`Ends`]); panics of entries are recorded there, so the
//! cleanup that runs after a panicking one sees it, as in Go.
//!
//! Every entry is claimed (its head cleared) and the cursor moved past it
//! before its foreign code runs, so a panic never leaves one to be run or
//! dropped twice. With `std` one `catch_unwind` surrounds the loop, not
//! each entry: after a caught panic the loop records it and goes on from
//! its (consistent) state. Without `std` a panic unwinds out of `poll`, and
//! whoever owns the chain finishes the rest ([`cancel`]); a panic inside
//! `cancel` itself unwinds too, and a drop guard finishes the rest of the
//! chain while it does.

// `Driver` and the drivers are `pub` in a crate-private module (the sealed
// pattern: `Order::Drive` names them, nobody outside can): their methods
// take crate-private types.
#![allow(private_interfaces)]

use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use super::entry::{Erased, Head, Kind, Live};
use super::exit::{Classify, ExitHead, Outcome, When};
use crate::panic as panicking;

/// How a chain's owner ended, as its entries see it: the exit's head (the
/// scope's, or a detached one), and how to tell an `Err` output.
#[derive(Clone, Copy)]
pub(crate) struct Ends {
    pub(crate) exit: NonNull<ExitHead>,
    pub(crate) classify: Option<Classify>,
}

impl Ends {
    /// Whether an entry with condition `when` runs now.
    #[inline(always)]
    pub(crate) fn holds(self, when: When) -> bool {
        when == When::Always || when.holds(self.outcome())
    }

    #[inline]
    pub(crate) fn outcome(self) -> Outcome {
        // SAFETY: `Ends` is made from a live exit whose head nobody else
        // borrows while cleanup runs, and a `classify` chosen for it.
        unsafe { ExitHead::outcome_at(self.exit, self.classify) }
    }

    /// Records a panic of an entry (the first one stays).
    #[inline]
    fn record(self, panic: panicking::Panic) {
        // SAFETY: as in `outcome`.
        unsafe { (*self.exit.as_ptr()).record(panic) }
    }
}

/// A cleanup driver: where the cleanup of a chain is. [`Sequential`] for
/// [`Lifo`](super::Lifo) and [`Fifo`](super::Fifo) (and stacks),
/// [`Concurrent`] for [`Concurrent`](super::Concurrent): a scope holds only
/// the one its order needs.
pub trait Driver: Sized {
    /// A driver over the chain from `first`.
    fn new(first: *mut Head) -> Self;

    /// The step; see [`drive`].
    ///
    /// # Safety
    /// As for [`drive`].
    unsafe fn step(&mut self, ends: Ends, cx: &mut Context<'_>) -> Poll<()>;

    /// Registers the owner's waker before anything is polled, outside the
    /// catch: if its clone panics, the panic is the caller's, not a
    /// cleanup's, and nothing changed.
    fn register(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// After a caught panic: the async entry whose poll panicked, if one
    /// did (it is done: dropped, as `FuturesUnordered` drops one). A sync
    /// entry that panicked was claimed before it ran.
    fn polled_panicked(&mut self) -> Option<Erased>;

    /// The started range `[from, to)` and the unstarted rest; the driver is
    /// done afterwards. What it still holds (the owner's waker) is dropped
    /// by the caller, last.
    fn split(&mut self) -> (*mut Head, *mut Head, *mut Head);
}

/// Drives the chain to its end: the first panic of an entry is recorded in
/// `ends`, and cleanup goes on with the others.
///
/// # Safety
/// The caller owns the chain (every entry in it is its own to drive) and
/// its entries are pinned where they are; `ends` stays valid and unborrowed
/// for the call.
pub(crate) unsafe fn drive<D: Driver>(driver: &mut D, ends: Ends, cx: &mut Context<'_>) -> Poll<()> {
    // Without `std` a panic of an entry's poll unwound out of our caller's
    // previous poll: that entry is done (dropped) before anything else.
    if let Some(live) = driver.polled_panicked().and_then(Erased::claim) {
        // SAFETY: claimed, ours, dropped once.
        unsafe { live.drop_payload() };
    }
    driver.register(cx);
    loop {
        // SAFETY: as the caller guarantees.
        match panicking::catch(|| unsafe { driver.step(ends, cx) }) {
            Ok(poll) => return poll,
            Err(panic) => {
                ends.record(panic);
                if let Some(live) = driver.polled_panicked().and_then(Erased::claim) {
                    // A panic here propagates: the entry is claimed already.
                    // SAFETY: claimed, ours, dropped once.
                    unsafe { live.drop_payload() };
                }
            }
        }
    }
}

/// The chain cannot be driven any more: started async entries are
/// dropped; of the rest, in order, those whose condition does not hold
/// are dropped, sync ones run, and async ones go to `hand_over` (which
/// runs them elsewhere or drops them). Returns how many async entries
/// were cut short (dropped started, or handed over). Panics are recorded
/// in `ends`; the rest still runs. Without `std` (nothing is caught) a
/// panic unwinds out of here, and the rest is finished while it unwinds (a
/// second panic aborts, as in any destructor): nothing leaks.
///
/// # Safety
/// As for [`drive`].
pub(crate) unsafe fn cancel<D: Driver>(
    driver: &mut D,
    ends: Ends,
    mut hand_over: impl FnMut(Live),
) -> usize {
    let (started, started_to, rest) = driver.split();
    let mut left = Left {
        started,
        started_to,
        rest,
        cut: 0,
    };
    let hand_over: &mut dyn FnMut(Live) = &mut hand_over;
    // SAFETY: as the caller guarantees; `left` and `hand_over` outlive the
    // call and are reached only through these pointers meanwhile.
    unsafe { Left::finish(&mut left, ends, hand_over) };
    left.cut
}

/// What [`cancel`] has still to do: the started entries `[started,
/// started_to)`, then the rest from `rest`. Each entry is claimed and the
/// cursors moved past it before its foreign code runs.
struct Left {
    started: *mut Head,
    started_to: *mut Head,
    rest: *mut Head,
    /// Async entries cut short so far.
    cut: usize,
}

impl Left {
    /// The next live entry, claimed, and whether it had started.
    fn next(&mut self) -> Option<(Live, bool)> {
        while let Some(entry) = NonNull::new(self.started).map(Erased) {
            if entry.0.as_ptr() == self.started_to {
                break;
            }
            self.started = entry.link();
            if let Some(live) = entry.claim() {
                return Some((live, true));
            }
        }
        self.started = ptr::null_mut();
        while let Some(entry) = NonNull::new(self.rest).map(Erased) {
            self.rest = entry.link();
            if let Some(live) = entry.claim() {
                return Some((live, false));
            }
        }
        None
    }

    /// Finishes every entry left (see [`cancel`]).
    ///
    /// # Safety
    /// As for [`cancel`]; `this` and `hand_over` are valid for the call
    /// and used by nobody else meanwhile.
    unsafe fn finish(this: *mut Left, ends: Ends, hand_over: *mut (dyn FnMut(Live) + '_)) {
        /// Finishes the rest if an entry's foreign code unwinds (without
        /// `std`, where nothing is caught).
        struct Rest<'h>(*mut Left, Ends, *mut (dyn FnMut(Live) + 'h));
        impl Drop for Rest<'_> {
            fn drop(&mut self) {
                // SAFETY: as for the `finish` that made this guard.
                unsafe { Left::finish(self.0, self.1, self.2) }
            }
        }
        // SAFETY: as the caller guarantees.
        while let Some((live, started)) = unsafe { (*this).next() } {
            let counted = if started {
                live.is_async()
            } else {
                live.is_async() && ends.holds(live.when)
            };
            // SAFETY: as the caller guarantees.
            unsafe { (*this).cut += usize::from(counted) };
            let rest = Rest(this, ends, hand_over);
            let ran = panicking::catch(|| {
                if started || !ends.holds(live.when) {
                    // Started (it cannot finish now), or its condition does
                    // not hold for how the owner ended: dropped.
                    // SAFETY: claimed, ours, dropped once.
                    unsafe { live.drop_payload() };
                } else if live.is_async() {
                    // SAFETY: `hand_over` is valid (caller).
                    unsafe { (*hand_over)(live) };
                } else {
                    // SAFETY: claimed, live, sync; `ends` as guaranteed.
                    unsafe { live.run(ends.exit) };
                }
            });
            core::mem::forget(rest);
            if let Err(p) = ran {
                ends.record(p);
            }
        }
    }
}

/// One entry at a time, in chain order: LIFO, FIFO (the chain reversed),
/// and stacks.
pub struct Sequential {
    /// The entry to look at (null: done).
    next: *mut Head,
    /// Where `next` is, if it is an async entry: [`WAITING`], [`POLLING`]
    /// (inside its poll: if that unwinds, it stays so, and the entry is
    /// dropped next time), [`PENDING`].
    started: u8,
}

const WAITING: u8 = 0;
const POLLING: u8 = 1;
const PENDING: u8 = 2;

// SAFETY: a driver is part of its owner (a scope, a stack's dispose): its
// pointers point into the owner's own storage and are used only by
// whoever polls or drops the owner. Whether the owner may move to another
// thread is the owner's business (its storage's `Send`).
unsafe impl Send for Sequential {}
// SAFETY: nothing is reachable through `&Sequential`.
unsafe impl Sync for Sequential {}

impl Driver for Sequential {
    #[inline(always)]
    fn new(first: *mut Head) -> Self {
        Sequential {
            next: first,
            started: WAITING,
        }
    }

    #[inline(always)]
    unsafe fn step(&mut self, ends: Ends, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: as the caller guarantees.
        unsafe { sequential(&mut self.next, &mut self.started, ends, cx) }
    }

    #[inline(always)]
    fn polled_panicked(&mut self) -> Option<Erased> {
        if self.started != POLLING {
            return None;
        }
        self.started = WAITING;
        let entry = NonNull::new(self.next).map(Erased)?;
        self.next = entry.link();
        Some(entry)
    }

    fn split(&mut self) -> (*mut Head, *mut Head, *mut Head) {
        let next = core::mem::replace(&mut self.next, ptr::null_mut());
        if core::mem::replace(&mut self.started, WAITING) != WAITING {
            // SAFETY: `next` is an entry of the chain.
            let after = NonNull::new(next).map_or(ptr::null_mut(), |e| Erased(e).link());
            (next, after, after)
        } else {
            (ptr::null_mut(), ptr::null_mut(), next)
        }
    }
}

/// One sequential step: from `next`, runs sync entries and polls async
/// ones until one is pending or the chain ends.
///
/// # Safety
/// As for [`drive`].
#[inline(always)]
unsafe fn sequential(
    next: &mut *mut Head,
    started: &mut u8,
    ends: Ends,
    cx: &mut Context<'_>,
) -> Poll<()> {
    // The cursor lives in a register while sync entries run and is written
    // back before anything is polled or returned. A panic in a sync entry
    // leaves the stored cursor behind, on entries already claimed: the
    // next walk skips them.
    let mut cursor = *next;
    loop {
        let Some(entry) = NonNull::new(cursor).map(Erased) else {
            *next = ptr::null_mut();
            return Poll::Ready(());
        };
        let Some(vtable) = runs(entry, ends) else {
            cursor = entry.link();
            continue;
        };
        match vtable.kind {
            Kind::Sync(run) => {
                // Claimed before it runs: if it panics, it is gone and
                // cleanup goes on from the next one.
                entry.claim_unchecked();
                cursor = entry.link();
                // SAFETY: a live sync payload we claimed; `ends` as
                // guaranteed.
                unsafe { run(entry.0, ends.exit) };
            }
            Kind::Async(poll) => {
                *next = cursor;
                *started = POLLING;
                // SAFETY: a live async payload, pinned in its storage; when
                // ready, it is gone and dropped.
                if unsafe { poll(entry.0, cx, ends.exit) }.is_pending() {
                    *started = PENDING;
                    return Poll::Pending;
                }
                *started = WAITING;
                cursor = entry.link();
                *next = cursor;
            }
        }
    }
}

/// Concurrent cleanup: every entry started in order, then the async ones
/// polled together. With `alloc`, each async entry gets a waker of its own
/// and a wake-up polls only the entries that were woken; without, a
/// wake-up polls every unfinished one.
pub struct Concurrent {
    first: *mut Head,
    /// The next entry to start; null once all started.
    starting: *mut Head,
    /// The entry being polled (if its poll panics, it is dropped).
    polling: *mut Head,
    #[cfg(feature = "alloc")]
    wake: Option<alloc::boxed::Box<Indexed>>,
}

// SAFETY: as for `Sequential`; the wake state is the owner's too.
unsafe impl Send for Concurrent {}
// SAFETY: nothing is reachable through `&Concurrent`.
unsafe impl Sync for Concurrent {}

impl Driver for Concurrent {
    fn new(first: *mut Head) -> Self {
        Concurrent {
            first,
            starting: first,
            polling: ptr::null_mut(),
            #[cfg(feature = "alloc")]
            wake: None,
        }
    }

    unsafe fn step(&mut self, ends: Ends, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: as the caller guarantees.
        unsafe { self.poll(ends, cx) }
    }

    #[inline]
    fn register(&mut self, cx: &mut Context<'_>) {
        #[cfg(feature = "alloc")]
        self.wake
            .get_or_insert_with(|| alloc::boxed::Box::new(Indexed::new(self.first)))
            .bits
            .register(cx.waker());
        #[cfg(not(feature = "alloc"))]
        let _ = cx;
    }

    fn polled_panicked(&mut self) -> Option<Erased> {
        let entry = NonNull::new(core::mem::replace(&mut self.polling, ptr::null_mut()))?;
        #[cfg(feature = "alloc")]
        if let Some(wake) = &mut self.wake {
            wake.remaining -= 1;
        }
        Some(Erased(entry))
    }

    fn split(&mut self) -> (*mut Head, *mut Head, *mut Head) {
        let first = core::mem::replace(&mut self.first, ptr::null_mut());
        let starting = core::mem::replace(&mut self.starting, ptr::null_mut());
        (first, starting, starting)
    }
}

impl Concurrent {
    /// # Safety
    /// As for [`drive`].
    unsafe fn poll(&mut self, ends: Ends, cx: &mut Context<'_>) -> Poll<()> {
        let Concurrent {
            starting, polling, ..
        } = self;
        #[cfg(feature = "alloc")]
        let mut wake = self.wake.as_deref_mut();
        // Start every entry, in order: sync ones run, async ones are polled
        // once (with their own waker, with `alloc`).
        while let Some(entry) = NonNull::new(*starting).map(Erased) {
            *starting = entry.link();
            let Some(vtable) = runs(entry, ends) else {
                continue;
            };
            let poll = match vtable.kind {
                Kind::Sync(run) => {
                    entry.claim_unchecked();
                    // SAFETY: claimed, live, sync; `ends` as guaranteed.
                    unsafe { run(entry.0, ends.exit) };
                    continue;
                }
                Kind::Async(poll) => poll,
            };
            #[cfg(feature = "alloc")]
            if let Some(w) = &mut wake {
                let index = w.entries.len();
                w.entries.push(entry);
                w.remaining += 1;
                let waker = w.bits.waker_ref(index);
                let mut cx = Context::from_waker(&waker);
                // SAFETY: as for `drive`.
                if unsafe { poll_entry(polling, entry, poll, &mut cx, ends) }.is_ready() {
                    w.remaining -= 1;
                }
                continue;
            }
            // SAFETY: as for `drive`.
            let _ = unsafe { poll_entry(polling, entry, poll, cx, ends) };
        }
        #[cfg(feature = "alloc")]
        if let Some(w) = wake {
            let Indexed {
                bits,
                entries,
                remaining,
            } = w;
            bits.for_each_woken(0, |index| {
                // Gone: finished already (a stale wake-up).
                let Some(entry) = entries.get(index) else { return true };
                if let Some(Kind::Async(poll)) = entry.vtable().map(|v| v.kind) {
                    let waker = bits.waker_ref(index);
                    let mut cx = Context::from_waker(&waker);
                    // SAFETY: as for `drive`.
                    if unsafe { poll_entry(polling, *entry, poll, &mut cx, ends) }.is_ready() {
                        *remaining -= 1;
                    }
                }
                true
            });
            return if *remaining == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        // Without per-entry wakers: poll every unfinished one.
        let mut pending = false;
        let mut next = NonNull::new(self.first).map(Erased);
        while let Some(entry) = next {
            next = entry.next();
            if let Some(Kind::Async(poll)) = entry.vtable().map(|v| v.kind) {
                // SAFETY: as for `drive`.
                pending |= unsafe { poll_entry(&mut self.polling, entry, poll, cx, ends) }
                    .is_pending();
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    }
}

/// The vtable of a live entry that runs now; an entry whose condition does
/// not hold is dropped (claimed first), a gone one skipped: `None`.
#[inline(always)]
fn runs(entry: Erased, ends: Ends) -> Option<&'static super::entry::VTable> {
    // The common case in one test: pending, and always runs.
    if let Some(vtable) = entry.plain() {
        return Some(vtable);
    }
    let live = entry.live()?;
    if ends.holds(live.when) {
        return Some(live.vtable);
    }
    entry.claim_unchecked();
    // SAFETY: claimed, ours, dropped once.
    unsafe { live.drop_payload() };
    None
}

/// Polls a live async entry whose condition holds (once finished, it is
/// gone and dropped). `polling` names it meanwhile (a panic drops it).
///
/// # Safety
/// As for [`drive`]; `poll` is the entry's.
#[inline(always)]
unsafe fn poll_entry(
    polling: &mut *mut Head,
    entry: Erased,
    poll: unsafe fn(NonNull<Head>, &mut Context<'_>, NonNull<ExitHead>) -> Poll<()>,
    cx: &mut Context<'_>,
    ends: Ends,
) -> Poll<()> {
    *polling = entry.0.as_ptr();
    // SAFETY: a live async payload, pinned in its storage.
    let poll = unsafe { poll(entry.0, cx, ends.exit) };
    *polling = ptr::null_mut();
    poll
}

/// Concurrent cleanup's async entries, indexed in start order, each with a
/// waker of its own that flags its index (`alloc`).
#[cfg(feature = "alloc")]
struct Indexed {
    bits: crate::wake_set::WakeBits,
    /// The started async entries (room for all, reserved up front).
    entries: alloc::vec::Vec<Erased>,
    /// Started and not finished.
    remaining: usize,
}

#[cfg(feature = "alloc")]
impl Indexed {
    /// Room for the async entries of the chain from `first`: one
    /// allocation of the exact size (plus the wake flags).
    fn new(first: *mut Head) -> Self {
        let mut count = 0;
        let mut next = NonNull::new(first).map(Erased);
        while let Some(entry) = next {
            next = entry.next();
            count += usize::from(matches!(entry.vtable().map(|v| v.kind), Some(Kind::Async(_))));
        }
        Indexed {
            bits: crate::wake_set::WakeBits::new(count, false),
            entries: alloc::vec::Vec::with_capacity(count),
            remaining: 0,
        }
    }
}
