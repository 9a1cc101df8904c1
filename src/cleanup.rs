//! Running a scope's cleanup — its registered entries, in the scope's
//! [`Order`], after the body — and finishing what is left of it when the
//! scope is dropped early.
//!
//! Nothing here depends on the body's or the output's type: one copy of
//! this code serves every scope in a program (it matters for flash). The
//! typed parts are the entries' vtables (`slab.rs`) and the scope's
//! [`Exit<T>`](crate::Exit), passed through untyped (`End`): this loop
//! records the first panic there (so the cleanup that runs
//! after a panicking one sees it, as in Go).
//!
//! With `std`, one `catch_unwind` surrounds the whole loop, not each entry:
//! the loop keeps its state consistent before it runs any entry (an entry
//! is claimed, and the cursor moved past it, before it runs), so after a
//! caught panic it records the payload and simply goes on. Without `std` a
//! panic unwinds out of `poll`, and the scope's drop finishes the rest.

use core::task::{Context, Poll};

use crate::exit::End;
use crate::panic as panicking;
use crate::slab::{Entry, Live};

/// The order in which a scope runs its deferred thunks after the body.
///
/// ```
/// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
/// # futures::executor::block_on(async {
/// use std::sync::{Arc, Mutex};
/// use deferral::{Order, ScopeBuilder};
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let (a, b) = (log.clone(), log.clone());
/// ScopeBuilder::new()
///     .order(Order::Fifo)
///     .run(async |d| {
///         d.defer(move || a.lock().unwrap().push(1));
///         d.defer(move || b.lock().unwrap().push(2));
///     })
///     .await;
/// assert_eq!(*log.lock().unwrap(), [1, 2]);
/// # });
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Last registered, first run — Go's `defer` and Rust's drop order.
    #[default]
    Lifo,
    /// First registered, first run.
    Fifo,
    /// Every thunk is started in registration order — sync ones run, async
    /// ones are polled once — and then the async ones are polled together
    /// until all finished, like JavaScript's
    /// `Promise.all(fns.map(fn => fn()))`. With `alloc`, each async thunk
    /// gets its own waker and a wake-up polls only the thunks that were
    /// woken; without it, a wake-up polls every unfinished thunk.
    Concurrent,
}

/// Where cleanup is.
enum Stage {
    /// Sequential orders: `next` is the entry to look at; `started` whether
    /// it is an async entry that was polled already.
    Sequential {
        next: Option<Entry>,
        started: bool,
    },
    /// Concurrent order, starting the entries one by one from `next`; the
    /// ones before it were started.
    Starting {
        first: Option<Entry>,
        next: Option<Entry>,
    },
    /// Concurrent order: every async entry was started.
    Running {
        first: Option<Entry>,
    },
    Done,
}

/// The cleanup state of one scope.
pub(crate) struct Cleaner {
    stage: Stage,
    /// The entry being polled right now: if its poll panics, it is dropped.
    polling: Option<Entry>,
    /// Concurrent order with `alloc`: the async entries, indexed, and one
    /// waker each.
    #[cfg(feature = "alloc")]
    wake: Option<alloc::boxed::Box<Indexed>>,
}

// SAFETY: a `Cleaner` is part of its scope: its entries point into the
// scope's own slab, which moves (between threads too) with it, and they
// are only used by whoever polls or drops the scope. Whether the scope may
// move to another thread at all is its slab's business (`SlabCore<K>`).
unsafe impl Send for Cleaner {}
// SAFETY: nothing is reachable through `&Cleaner`.
unsafe impl Sync for Cleaner {}

impl Order {
    /// Cleanup walks the chain newest first (`true`) or reversed.
    pub(crate) fn lifo(self) -> bool {
        self == Order::Lifo
    }

    /// The concurrent loop, as a pointer, for this order. Chosen when the
    /// scope is made: a scope whose order is a constant other than
    /// `Concurrent` never links that loop (flash), and the sequential one is
    /// called directly (inlined).
    #[inline(always)]
    pub(crate) fn driver(self) -> Drive {
        match self {
            Order::Lifo | Order::Fifo => None,
            Order::Concurrent => Some(Cleaner::drive_concurrent),
        }
    }
}

/// The concurrent cleanup loop, if the order is `Concurrent`.
pub(crate) type Drive = Option<fn(&mut Cleaner, &End, &mut Context<'_>) -> Poll<()>>;

impl Cleaner {
    /// Cleanup starting at `first` (the slab's chain, as prepared for
    /// `order`).
    pub(crate) fn new(order: Order, first: Option<Entry>) -> Self {
        Cleaner {
            stage: match order {
                Order::Lifo | Order::Fifo => Stage::Sequential {
                    next: first,
                    started: false,
                },
                Order::Concurrent => Stage::Starting { first, next: first },
            },
            polling: None,
            #[cfg(feature = "alloc")]
            wake: None,
        }
    }

    /// Drives the cleanup to its end. `end` is the state of the scope's
    /// `Exit<T>`; the first panic of an entry is recorded there, and cleanup
    /// goes on with the others.
    ///
    /// # Safety
    /// `end` is valid for the whole call and used by nobody else.
    /// `drive` is the order's [`driver`](Order::driver) (kept by the
    /// scope, not here: it is chosen where the order is a constant).
    pub(crate) unsafe fn poll(
        &mut self,
        drive: Drive,
        end: &End,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            match panicking::catch(|| {
                self.drop_polled();
                match drive {
                    Some(concurrent) => concurrent(self, end, cx),
                    None => self.drive_sequential(end, cx),
                }
            }) {
                Ok(poll) => return poll,
                // The payload that panicked is gone: nobody else uses `end`.
                Err(p) => end.record(p),
            }
        }
    }

    /// After a panic out of an entry's poll: that entry is finished (its
    /// future is dropped, as `FuturesUnordered` drops one that panicked).
    #[inline(always)]
    fn drop_polled(&mut self) {
        if self.polling.is_some() {
            self.drop_panicked();
        }
    }

    #[cold]
    #[inline(never)]
    fn drop_panicked(&mut self) {
        let Some(entry) = self.polling.take() else {
            return;
        };
        #[cfg(feature = "alloc")]
        if let Some(wake) = &mut self.wake {
            wake.remaining -= 1;
        }
        if let Stage::Sequential { next, started } = &mut self.stage {
            if *next == Some(entry) {
                *next = entry.next();
                *started = false;
            }
        }
        // SAFETY: cleanup has the slab to itself; a claimed entry is ours.
        if let Some(live) = unsafe { entry.claim() } {
            // SAFETY: live, and never touched again.
            unsafe { live.drop_payload() };
        }
    }

    #[inline(always)]
    fn drive_sequential(&mut self, end: &End, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.stage {
            Stage::Sequential { next, started } => {
                // The cursor lives in a register while sync entries run and
                // is written back before anything is polled or returned. A
                // panic in a sync entry leaves the stored cursor behind, on
                // entries already claimed: the next walk skips them.
                let mut cursor = *next;
                loop {
                    let Some(entry) = cursor else {
                        *next = None;
                        *started = false;
                        self.stage = Stage::Done;
                        return Poll::Ready(());
                    };
                    // SAFETY: cleanup has the slab to itself.
                    let Some(live) = (unsafe { entry.live() }) else {
                        cursor = entry.next();
                        continue;
                    };
                    if !live.is_async() {
                        // Claimed before it runs: if it panics, it is gone
                        // and cleanup goes on from the next one.
                        // SAFETY: as above.
                        unsafe { entry.claim() };
                        cursor = entry.next();
                        // SAFETY: a live sync payload we just claimed; `end`
                        // is the scope's exit.
                        unsafe { live.run(end) };
                        continue;
                    }
                    *next = cursor;
                    *started = true;
                    self.polling = Some(entry);
                    // SAFETY: a live async payload, pinned in the slab.
                    let poll = unsafe { live.poll(cx, end) };
                    self.polling = None;
                    if poll.is_pending() {
                        return Poll::Pending;
                    }
                    // SAFETY: as above.
                    unsafe { entry.claim() };
                    cursor = entry.next();
                    *next = cursor;
                    *started = false;
                    // SAFETY: finished: drop what is left of it, once.
                    unsafe { live.drop_payload() };
                }
            }
            _ => Poll::Ready(()), // done
        }
    }

    fn drive_concurrent(&mut self, end: &End, cx: &mut Context<'_>) -> Poll<()> {
        #[cfg(feature = "alloc")]
        if self.wake.is_none() {
            if let Stage::Starting { first, .. } = self.stage {
                self.wake = Some(alloc::boxed::Box::new(Indexed::new(async_entries(first))));
            }
        }
        // Start every entry, in order: sync ones run, async ones are polled
        // once (with their own waker, with `alloc`).
        while let Stage::Starting { first, next } = &mut self.stage {
            let Some(entry) = *next else {
                self.stage = Stage::Running { first: *first };
                break;
            };
            *next = entry.next();
            // SAFETY: cleanup has the slab to itself.
            let Some(live) = (unsafe { entry.live() }) else {
                continue;
            };
            if live.is_async() {
                #[cfg(feature = "alloc")]
                if let Some(wake) = &mut self.wake {
                    let polling = &mut self.polling;
                    wake.start(entry, |entry, cx| poll_entry(polling, entry, cx, end));
                    continue;
                }
                if let Poll::Ready(done) = poll_entry(&mut self.polling, entry, cx, end) {
                    finish(done);
                }
            } else {
                // SAFETY: as in `drive`.
                unsafe {
                    entry.claim();
                    live.run(end);
                }
            }
        }
        let Stage::Running { first } = self.stage else {
            return Poll::Ready(());
        };
        #[cfg(feature = "alloc")]
        if let Some(wake) = &mut self.wake {
            let polling = &mut self.polling;
            let poll = wake.poll(cx, |entry, cx| poll_entry(polling, entry, cx, end));
            if poll.is_ready() {
                self.stage = Stage::Done;
                self.wake = None;
            }
            return poll;
        }
        // Without per-entry wakers: poll every unfinished one.
        let mut pending = false;
        let mut next = first;
        while let Some(entry) = next {
            next = entry.next();
            if entry.is_live_async() {
                match poll_entry(&mut self.polling, entry, cx, end) {
                    Poll::Pending => pending = true,
                    Poll::Ready(done) => finish(done),
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            self.stage = Stage::Done;
            Poll::Ready(())
        }
    }

    /// The scope is dropped before cleanup finished (or right after it
    /// started): the started async entries are dropped; of the rest, in
    /// this cleaner's order, sync entries run (with `end`, a cancelled
    /// exit whose output the caller took away) and async ones go to
    /// `hand_over` (a cancel handler) or are dropped unpolled. Panics are
    /// recorded in `end`; the rest still runs.
    ///
    /// # Safety
    /// As for [`poll`](Self::poll).
    /// Returns how many async entries were cut short (dropped after they
    /// started, or handed over / dropped before).
    pub(crate) unsafe fn cancel(&mut self, end: &End, mut hand_over: impl FnMut(Live)) -> usize {
        let mut cut = 0;
        // The started entries are those in `[from, to)`; the rest start at
        // `rest`.
        let (from, to, rest) = match core::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Sequential {
                next,
                started: true,
            } => {
                let after = next.and_then(Entry::next);
                (next, after, after)
            }
            Stage::Sequential {
                next,
                started: false,
            } => (None, None, next),
            Stage::Starting { first, next } => (first, next, next),
            Stage::Running { first } => (first, None, None),
            Stage::Done => return 0,
        };
        self.polling = None;
        #[cfg(feature = "alloc")]
        drop(self.wake.take());
        // 1. Started async entries cannot finish now: drop them.
        let mut next = from;
        while let Some(entry) = next {
            if Some(entry) == to {
                break;
            }
            next = entry.next();
            let dropped = panicking::catch(|| {
                // SAFETY: cleanup has the slab to itself.
                if let Some(live) = unsafe { entry.claim() } {
                    cut += 1;
                    // SAFETY: claimed, live: dropped once.
                    unsafe { live.drop_payload() };
                }
            });
            if let Err(p) = dropped {
                end.record(p);
            }
        }
        // 2. The rest, in order.
        let mut next = rest;
        while let Some(entry) = next {
            next = entry.next();
            // SAFETY: cleanup has the slab to itself.
            let Some(live) = (unsafe { entry.claim() }) else {
                continue;
            };
            let ran = panicking::catch(|| {
                if live.is_async() {
                    cut += 1;
                    hand_over(live);
                } else {
                    // SAFETY: claimed, live, sync.
                    unsafe { live.run(end) };
                }
            });
            if let Err(p) = ran {
                end.record(p);
            }
        }
        cut
    }
}

/// Polls one started async entry. `Ready(Some(live))`: it finished and is
/// claimed; the caller drops what is left of it (foreign code, so after its
/// own bookkeeping). `Ready(None)`: it was not live.
fn poll_entry(
    polling: &mut Option<Entry>,
    entry: Entry,
    cx: &mut Context<'_>,
    end: &End,
) -> Poll<Option<Live>> {
    // SAFETY: cleanup has the slab to itself.
    let Some(live) = (unsafe { entry.live() }) else {
        return Poll::Ready(None);
    };
    *polling = Some(entry);
    // SAFETY: a live async payload, pinned in the slab.
    let poll = unsafe { live.poll(cx, end) };
    *polling = None;
    if poll.is_pending() {
        return Poll::Pending;
    }
    // SAFETY: as above.
    unsafe { entry.claim() };
    Poll::Ready(Some(live))
}

/// Drops what is left of a finished, claimed entry.
fn finish(done: Option<Live>) {
    if let Some(live) = done {
        // SAFETY: claimed by `poll_entry`, dropped once here.
        unsafe { live.drop_payload() };
    }
}

/// The live async entries of the chain from `first`.
#[cfg(feature = "alloc")]
fn async_entries(first: Option<Entry>) -> alloc::vec::Vec<Entry> {
    let mut count = 0;
    let mut next = first;
    while let Some(entry) = next {
        next = entry.next();
        count += usize::from(entry.is_live_async());
    }
    // One allocation, of the exact size.
    let mut all = alloc::vec::Vec::with_capacity(count);
    let mut next = first;
    while let Some(entry) = next {
        next = entry.next();
        if entry.is_live_async() {
            all.push(entry);
        }
    }
    all
}

/// Concurrent cleanup's async entries, indexed in start order, each with a
/// waker of its own that flags its index (`alloc`): a wake-up polls only
/// the entries that were woken.
#[cfg(feature = "alloc")]
pub(crate) struct Indexed {
    bits: crate::wake_set::WakeBits,
    entries: alloc::vec::Vec<Entry>,
    started: usize,
    remaining: usize,
}

#[cfg(feature = "alloc")]
impl Indexed {
    fn new(entries: alloc::vec::Vec<Entry>) -> Self {
        Indexed {
            bits: crate::wake_set::WakeBits::new(entries.len(), false),
            remaining: entries.len(),
            entries,
            started: 0,
        }
    }

    /// Starts (first polls) the next entry, which is `entry`.
    fn start(
        &mut self,
        entry: Entry,
        mut poll: impl FnMut(Entry, &mut Context<'_>) -> Poll<Option<Live>>,
    ) {
        let index = self.started;
        debug_assert_eq!(self.entries.get(index), Some(&entry));
        self.started += 1;
        let waker = self.bits.waker_ref(index);
        if let Poll::Ready(done) = poll(entry, &mut Context::from_waker(&waker)) {
            self.remaining -= 1;
            finish(done);
        }
    }

    /// Polls the entries that were woken; `Ready` once all finished.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut poll: impl FnMut(Entry, &mut Context<'_>) -> Poll<Option<Live>>,
    ) -> Poll<()> {
        // Register first, then take the flags (see `wake_set`).
        self.bits.register(cx.waker());
        let (bits, entries, remaining) = (&self.bits, &self.entries, &mut self.remaining);
        bits.for_each_woken(|index| {
            if let Some(&entry) = entries.get(index) {
                if !entry.is_live_async() {
                    return true; // finished already: a stale wake-up
                }
                let waker = bits.waker_ref(index);
                if let Poll::Ready(done) = poll(entry, &mut Context::from_waker(&waker)) {
                    *remaining -= 1;
                    finish(done);
                }
            }
            true
        });
        if self.remaining == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
