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
//! whoever owns the chain finishes the rest ([`cancel`]).

use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use super::entry::{Erased, Head, Live};
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

/// Where the cleanup of a chain is.
pub(crate) enum Drive {
    /// One entry at a time, in chain order: `next` is the entry to look
    /// at; `started` whether it is an async entry already polled.
    Sequential { next: *mut Head, started: bool },
    /// Every entry started in chain order, then the async ones polled
    /// together.
    Concurrent(Concurrent),
    Done,
}

// SAFETY: a `Drive` is part of its owner (a scope, a stack's dispose): its
// pointers point into the owner's own storage and are used only by
// whoever polls or drops the owner. Whether the owner may move to another
// thread is the owner's business (its storage's `Send`).
unsafe impl Send for Drive {}
// SAFETY: nothing is reachable through `&Drive`.
unsafe impl Sync for Drive {}

impl Drive {
    /// A driver over the chain from `first`.
    #[inline(always)]
    pub(crate) fn new(first: Option<Erased>, concurrent: bool) -> Self {
        let first = first.map_or(ptr::null_mut(), |e| e.0.as_ptr());
        if concurrent {
            Drive::Concurrent(Concurrent::new(first))
        } else {
            Drive::Sequential {
                next: first,
                started: false,
            }
        }
    }

    /// Drives the chain to its end.
    ///
    /// # Safety
    /// The caller owns the chain (every entry in it is its own to drive)
    /// and its entries are pinned where they are; `ends` stays valid and
    /// unborrowed for the call.
    pub(crate) unsafe fn poll(&mut self, ends: Ends, cx: &mut Context<'_>) -> Poll<()> {
        if let Drive::Concurrent(c) = self {
            // The owner's waker is cloned here, outside the catch: if its
            // clone panics, the panic is the caller's (not a cleanup's),
            // and nothing changed.
            c.register(cx);
        }
        loop {
            // SAFETY: as the caller guarantees.
            match panicking::catch(|| unsafe { self.step(ends, cx) }) {
                Ok(poll) => return poll,
                Err(panic) => {
                    ends.record(panic);
                    self.drop_panicked();
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn step(&mut self, ends: Ends, cx: &mut Context<'_>) -> Poll<()> {
        let poll = match self {
            // SAFETY: as for `poll`.
            Drive::Sequential { next, started } => unsafe { sequential(next, started, ends, cx) },
            // SAFETY: as for `poll`.
            Drive::Concurrent(c) => unsafe { c.poll(ends, cx) },
            Drive::Done => Poll::Ready(()),
        };
        if poll.is_ready() {
            *self = Drive::Done;
        }
        poll
    }

    /// After a caught panic: the async entry whose poll panicked is done
    /// (dropped, as `FuturesUnordered` drops one that panicked). A sync
    /// entry that panicked was claimed before it ran: nothing to do.
    #[cold]
    fn drop_panicked(&mut self) {
        let entry = match self {
            Drive::Sequential { next, started } if *started => {
                let entry = NonNull::new(*next).map(Erased);
                *next = entry.map_or(ptr::null_mut(), Erased::link);
                *started = false;
                entry
            }
            Drive::Concurrent(c) => c.polled_panicked(),
            _ => None,
        };
        if let Some(live) = entry.and_then(Erased::claim) {
            // A panic here propagates: the entry is claimed already.
            // SAFETY: claimed, ours, dropped once.
            unsafe { live.drop_payload() };
        }
    }

    /// The chain cannot be driven any more: started async entries are
    /// dropped; of the rest, in order, those whose condition does not hold
    /// are dropped, sync ones run, and async ones go to `hand_over` (which
    /// runs them elsewhere or drops them). Returns how many async entries
    /// were cut short (dropped started, or handed over). Panics are recorded
    /// in `ends`; the rest still runs.
    ///
    /// # Safety
    /// As for [`poll`](Self::poll).
    pub(crate) unsafe fn cancel(&mut self, ends: Ends, mut hand_over: impl FnMut(Live)) -> usize {
        let mut cut = 0;
        let (started_from, started_to, rest, _wake) = match core::mem::replace(self, Drive::Done) {
            Drive::Sequential { next, started } if started => {
                // SAFETY: `next` is an entry of the chain.
                let after = NonNull::new(next).map_or(ptr::null_mut(), |e| Erased(e).link());
                (next, after, after, None)
            }
            Drive::Sequential { next, .. } => (ptr::null_mut(), ptr::null_mut(), next, None),
            Drive::Concurrent(c) => c.into_parts(),
            Drive::Done => return 0,
        };
        // 1. Started async entries cannot finish now: drop them.
        let mut next = NonNull::new(started_from).map(Erased);
        while let Some(entry) = next {
            if entry.0.as_ptr() == started_to {
                break;
            }
            next = entry.next();
            if let Some(live) = entry.claim() {
                if live.is_async() {
                    cut += 1;
                }
                // SAFETY: claimed, ours, dropped once.
                if let Err(p) = panicking::catch(|| unsafe { live.drop_payload() }) {
                    ends.record(p);
                }
            }
        }
        // 2. The rest, in order, under the one rule: an entry whose
        // condition does not hold for how the owner ended is dropped unrun.
        let mut next = NonNull::new(rest).map(Erased);
        while let Some(entry) = next {
            next = entry.next();
            let Some(live) = entry.claim() else { continue };
            let ran = panicking::catch(|| {
                if !ends.holds(live.when) {
                    // SAFETY: claimed, ours, dropped once.
                    unsafe { live.drop_payload() };
                } else if live.is_async() {
                    cut += 1;
                    hand_over(live);
                } else {
                    // SAFETY: claimed, live, sync; `ends` as guaranteed.
                    unsafe { live.run(ends.exit) };
                }
            });
            if let Err(p) = ran {
                ends.record(p);
            }
        }
        // `_wake` (the owner's waker, foreign code) is dropped last.
        cut
    }
}

/// One sequential step: from `next`, runs sync entries and polls async
/// ones until one is pending or the chain ends.
///
/// # Safety
/// As for [`Drive::poll`].
#[inline(always)]
unsafe fn sequential(
    next: &mut *mut Head,
    started: &mut bool,
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
        let Some(live) = entry.live() else {
            cursor = entry.link();
            continue;
        };
        if !ends.holds(live.when) {
            entry.claim();
            cursor = entry.link();
            // SAFETY: claimed, ours, dropped once.
            unsafe { live.drop_payload() };
            continue;
        }
        if !live.is_async() {
            // Claimed before it runs: if it panics, it is gone and cleanup
            // goes on from the next one.
            entry.claim();
            cursor = entry.link();
            // SAFETY: a live sync payload we claimed; `ends` as guaranteed.
            unsafe { live.run(ends.exit) };
            continue;
        }
        *next = cursor;
        *started = true;
        // SAFETY: a live async payload, pinned in its storage.
        if unsafe { live.poll(cx, ends.exit) }.is_pending() {
            return Poll::Pending;
        }
        *started = false;
        entry.claim();
        cursor = entry.link();
        *next = cursor;
        // SAFETY: finished: drop what is left of it, once.
        unsafe { live.drop_payload() };
    }
}

/// Concurrent cleanup: every entry started in order, then the async ones
/// polled together. With `alloc`, each async entry gets a waker of its own
/// and a wake-up polls only the entries that were woken; without, a
/// wake-up polls every unfinished one.
pub(crate) struct Concurrent {
    first: *mut Head,
    /// The next entry to start; null once all started.
    starting: *mut Head,
    /// The entry being polled (if its poll panics, it is dropped).
    polling: *mut Head,
    #[cfg(feature = "alloc")]
    wake: Option<alloc::boxed::Box<Indexed>>,
}

impl Concurrent {
    fn new(first: *mut Head) -> Self {
        Concurrent {
            first,
            starting: first,
            polling: ptr::null_mut(),
            #[cfg(feature = "alloc")]
            wake: None,
        }
    }

    /// Registers the owner's waker (before anything is polled).
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

    /// The started range, the unstarted rest, and the wake-up state (to be
    /// dropped last: it holds the owner's waker).
    fn into_parts(self) -> (*mut Head, *mut Head, *mut Head, Option<impl Sized>) {
        #[cfg(feature = "alloc")]
        let wake = self.wake;
        #[cfg(not(feature = "alloc"))]
        let wake = None::<()>;
        (self.first, self.starting, self.starting, wake)
    }

    /// # Safety
    /// As for [`Drive::poll`].
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
            let Some(live) = entry.live() else { continue };
            #[cfg(feature = "alloc")]
            let index = match &mut wake {
                Some(w) if live.is_async() => {
                    w.started += 1;
                    w.started - 1
                }
                _ => 0,
            };
            if !ends.holds(live.when) {
                entry.claim();
                #[cfg(feature = "alloc")]
                if let Some(w) = &mut wake {
                    w.remaining -= usize::from(live.is_async());
                }
                // SAFETY: claimed, ours, dropped once.
                unsafe { live.drop_payload() };
                continue;
            }
            if !live.is_async() {
                entry.claim();
                // SAFETY: claimed, live, sync; `ends` as guaranteed.
                unsafe { live.run(ends.exit) };
                continue;
            }
            #[cfg(feature = "alloc")]
            if let Some(w) = &mut wake {
                debug_assert_eq!(w.entries.get(index), Some(&entry));
                let waker = w.bits.waker_ref(index);
                // SAFETY: as for `Drive::poll`.
                if unsafe { poll_entry(polling, live, &mut Context::from_waker(&waker), ends) }
                    .is_ready()
                {
                    w.remaining -= 1;
                }
                continue;
            }
            // SAFETY: as for `Drive::poll`.
            let _ = unsafe { poll_entry(polling, live, cx, ends) };
        }
        #[cfg(feature = "alloc")]
        if let Some(w) = wake {
            let Indexed {
                bits,
                entries,
                remaining,
                ..
            } = w;
            bits.for_each_woken(|index| {
                // Not live: finished already (a stale wake-up).
                if let Some(live) = entries.get(index).and_then(|e| e.live()) {
                    let waker = bits.waker_ref(index);
                    let mut cx = Context::from_waker(&waker);
                    // SAFETY: as for `Drive::poll`.
                    if unsafe { poll_entry(polling, live, &mut cx, ends) }.is_ready() {
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
            if let Some(live) = entry.live().filter(|l| l.is_async()) {
                // SAFETY: as for `Drive::poll`.
                pending |= unsafe { poll_entry(&mut self.polling, live, cx, ends) }.is_pending();
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    }
}

/// Polls a live async entry whose condition holds; when it finishes, claims
/// and drops it. `polling` names it meanwhile (a panic drops it).
///
/// # Safety
/// As for [`Drive::poll`].
unsafe fn poll_entry(
    polling: &mut *mut Head,
    live: Live,
    cx: &mut Context<'_>,
    ends: Ends,
) -> Poll<()> {
    *polling = live.head.as_ptr();
    // SAFETY: a live async payload, pinned in its storage.
    let poll = unsafe { live.poll(cx, ends.exit) };
    *polling = ptr::null_mut();
    if poll.is_ready() {
        Erased(live.head).claim();
        // SAFETY: finished: drop what is left of it, once.
        unsafe { live.drop_payload() };
    }
    poll
}

/// Concurrent cleanup's async entries, indexed in start order, each with a
/// waker of its own that flags its index (`alloc`).
#[cfg(feature = "alloc")]
struct Indexed {
    bits: crate::wake_set::WakeBits,
    entries: alloc::vec::Vec<Erased>,
    /// How many were started (or skipped by their condition).
    started: usize,
    remaining: usize,
}

#[cfg(feature = "alloc")]
impl Indexed {
    /// The live async entries of the chain from `first`, in order, with
    /// one allocation of the exact size (plus the wake flags).
    fn new(first: *mut Head) -> Self {
        let asyncs = || {
            let mut next = NonNull::new(first).map(Erased);
            core::iter::from_fn(move || {
                loop {
                    let entry = next?;
                    next = entry.next();
                    if entry.live().is_some_and(Live::is_async) {
                        return Some(entry);
                    }
                }
            })
        };
        let mut entries = alloc::vec::Vec::with_capacity(asyncs().count());
        entries.extend(asyncs());
        Indexed {
            bits: crate::wake_set::WakeBits::new(entries.len(), false),
            remaining: entries.len(),
            entries,
            started: 0,
        }
    }
}
