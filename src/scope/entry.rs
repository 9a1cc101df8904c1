//! The erased entry: one layout for every piece of deferred work, wherever
//! it lives — a scope's slab, a [`DeferStack`](super::DeferStack), a
//! [`Reaper`](crate::cancel::Reaper) slot, or a heap block of its own
//! ([`BoxCleanup`](crate::cancel::BoxCleanup)).
//!
//! # How it works
//!
//! An entry is a `repr(C)` [`Entry<P>`]: a two-word [`Head`], then the
//! payload `P` (a closure, a future, a guarded value with its cleanup) at
//! a compile-time offset. Untyped code holds a pointer to the head and
//! reaches everything else through the head's [`VTable`] of monomorphised
//! functions (tokio's `RawTask`/`Header` design): the entry's layout, its
//! kind — [`Kind::Sync`] (run once, consuming the payload) or
//! [`Kind::Async`] (polled in place) — and how to drop it.
//!
//! The head's first word is the vtable pointer, tagged in its low bits
//! (vtables are 16-aligned) with the registration's [`When`] (3 bits) and
//! `BUSY` (1 bit: a token is taking the entry back, so nothing else may
//! touch or reclaim it); once the entry is gone it holds no vtable, only a
//! `GONE` tag no live entry has. Whoever clears
//! it owns the payload and must run, drop or take it exactly once, and
//! clears it *before* any foreign code runs (the heapless `truncate`
//! rule), so a panicking payload is never touched twice. The second word
//! links the entry to the one registered before it (how a slab or a stack
//! chains its entries is its own business).
//!
//! A payload never polled may move (it is not pinned yet): handing an
//! async cleanup over after a cancellation copies the entry's bytes to its
//! new home and writes a fresh head there.

use core::alloc::Layout;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use super::exit::{ExitHead, When};

/// The bookkeeping in front of every payload: two words.
#[repr(C)]
pub(crate) struct Head {
    /// The payload's vtable, tagged with the condition and `BUSY`; `GONE`
    /// once the entry is gone.
    word: *const VTable,
    /// The entry registered before this one (its owner's chain).
    pub(crate) link: *mut Head,
}

const WHEN_BITS: usize = 0b0111;
const BUSY: usize = 0b1000;
const TAG_BITS: usize = 0b1111;
/// The word of an entry that is gone: no vtable, and condition bits no
/// [`When`] has, so that "all tag bits clear" alone says "live, not busy,
/// [`When::Always`]" (the cleanup loop's fast path).
const GONE: usize = WHEN_BITS;

/// An entry of payload `P`: the head, then the payload.
#[repr(C)]
pub(crate) struct Entry<P> {
    head: Head,
    payload: P,
}

/// The monomorphised functions of one payload type.
#[repr(C, align(16))]
pub(crate) struct VTable {
    /// The layout of the whole `Entry<P>`.
    pub(crate) layout: Layout,
    pub(crate) kind: Kind,
    /// Drops the payload in place.
    pub(crate) drop: unsafe fn(NonNull<Head>),
    /// [`PORTABLE`], [`GUARDED`].
    pub(crate) flags: u8,
}

/// Runs with any exit (never reads its scope's typed output): may move to
/// a `DeferStack`.
pub(crate) const PORTABLE: u8 = 1;
/// A guarded value the body may be using through a `Guard`: only its guard
/// takes it (never `Defer::clear` or `move_all`).
pub(crate) const GUARDED: u8 = 2;

/// Sync or async, and the one function of that kind.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// Reads the payload out and runs it.
    Sync(unsafe fn(NonNull<Head>, NonNull<ExitHead>)),
    /// Polls the payload in place. When it is ready, the entry is gone
    /// and its payload dropped (by the time the poll returns).
    Async(unsafe fn(NonNull<Head>, &mut Context<'_>, NonNull<ExitHead>) -> Poll<()>),
}

/// A payload: something deferred, with its vtable flags and a way to be
/// taken back unrun. `Out` is the scope's output type.
pub(crate) trait Payload<Out>: Sized {
    /// What [`take`](Self::take) hands back when a registration is
    /// cancelled.
    type Taken;
    /// [`PORTABLE`] | [`GUARDED`].
    const FLAGS: u8;
    /// Defuses a payload that has not started: hands back what was deferred.
    fn take(self) -> Self::Taken;

    /// Drops the payload in place: unrun (a cancelled scope, a cleared
    /// registration) or finished. Overridden by a payload that must be
    /// dropped in a context of its own (`InContext`).
    ///
    /// # Safety
    /// `this` points to a live payload, pinned where it is, that the
    /// caller gives up: it is never touched again.
    #[inline(always)]
    unsafe fn drop_in_place(this: *mut Self) {
        // SAFETY: as the caller guarantees.
        unsafe { ptr::drop_in_place(this) }
    }
}

/// A payload run once.
pub(crate) trait SyncPayload<Out>: Payload<Out> {
    /// `exit` is the scope's `Exit<Out>` head, or a detached one.
    fn run(self, exit: NonNull<ExitHead>);
}

/// A payload polled in place.
pub(crate) trait AsyncPayload<Out>: Payload<Out> {
    /// Polls the payload; `exit` as for [`SyncPayload::run`].
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, exit: NonNull<ExitHead>) -> Poll<()>;
}

struct SyncOf<Out, P>(core::marker::PhantomData<(fn(Out), P)>);
struct AsyncOf<Out, P>(core::marker::PhantomData<(fn(Out), P)>);

impl<Out, P: SyncPayload<Out>> SyncOf<Out, P> {
    const VTABLE: VTable = VTable {
        layout: Layout::new::<Entry<P>>(),
        kind: Kind::Sync(run::<Out, P>),
        drop: drop_payload::<Out, P>,
        flags: P::FLAGS,
    };
}

impl<Out, P: AsyncPayload<Out>> AsyncOf<Out, P> {
    const VTABLE: VTable = VTable {
        layout: Layout::new::<Entry<P>>(),
        kind: Kind::Async(poll::<Out, P>),
        drop: drop_payload::<Out, P>,
        flags: P::FLAGS,
    };
}

/// The vtable of a sync payload `P` for output `Out`.
#[inline(always)]
pub(crate) fn sync_vtable<Out, P: SyncPayload<Out>>() -> &'static VTable {
    &SyncOf::<Out, P>::VTABLE
}

/// The vtable of an async payload `P` for output `Out`.
#[inline(always)]
pub(crate) fn async_vtable<Out, P: AsyncPayload<Out>>() -> &'static VTable {
    &AsyncOf::<Out, P>::VTABLE
}

/// Where the payload of an `Entry<P>` headed at `head` is.
#[inline(always)]
pub(crate) fn payload_of<P>(head: NonNull<Head>) -> *mut P {
    // SAFETY: only computes an address inside the entry (no access).
    unsafe { &raw mut (*head.cast::<Entry<P>>().as_ptr()).payload }
}

/// # Safety
/// `head` heads a live `Entry<P>` whose payload the caller gives up;
/// `exit` as for [`SyncPayload::run`].
unsafe fn run<Out, P: SyncPayload<Out>>(head: NonNull<Head>, exit: NonNull<ExitHead>) {
    // SAFETY: the caller owns the payload and never touches it again.
    let payload = unsafe { payload_of::<P>(head).read() };
    payload.run(exit);
}

/// Polls; a finished payload is dropped here, its entry marked gone first
/// (a panicking destructor leaves nothing to drop twice). Inlined into the
/// payload's poll, that drop usually compiles to nothing (a finished
/// [`Task`](super::payload::Task) holds nothing).
///
/// # Safety
/// `head` heads a live `Entry<P>` pinned where it is, exclusively the
/// caller's for the call.
unsafe fn poll<Out, P: AsyncPayload<Out>>(
    head: NonNull<Head>,
    cx: &mut Context<'_>,
    exit: NonNull<ExitHead>,
) -> Poll<()> {
    // SAFETY: as the caller guarantees; entries never move once polled.
    let payload = unsafe { Pin::new_unchecked(&mut *payload_of::<P>(head)) };
    let poll = payload.poll(cx, exit);
    if poll.is_ready() {
        Erased(head).claim_unchecked();
        // SAFETY: ours (the caller's), gone now: dropped once.
        unsafe { P::drop_in_place(payload_of::<P>(head)) };
    }
    poll
}

/// # Safety
/// `head` heads a live `Entry<P>` that the caller gives up.
unsafe fn drop_payload<Out, P: Payload<Out>>(head: NonNull<Head>) {
    // SAFETY: as the caller guarantees.
    unsafe { P::drop_in_place(payload_of::<P>(head)) }
}

/// How a token takes its payload back: reads it out of the entry headed
/// at the first argument and writes its `Taken` to the second. Not in the
/// vtable: only a token that is actually cancelled links it.
pub(crate) type TakeFn = unsafe fn(NonNull<Head>, *mut ());

/// # Safety
/// `head` heads a live `Entry<P>` whose payload the caller gives up (this
/// reads it out first, before any foreign code); `dst` is valid for a
/// write of `P::Taken`.
pub(crate) unsafe fn take_payload<Out, P: Payload<Out>>(head: NonNull<Head>, dst: *mut ()) {
    // SAFETY: as the caller guarantees.
    let payload = unsafe { payload_of::<P>(head).read() };
    let taken = payload.take();
    // SAFETY: as the caller guarantees.
    unsafe { dst.cast::<P::Taken>().write(taken) }
}

impl Head {
    /// A head for a live entry of `vtable` with condition `when`.
    #[inline(always)]
    pub(crate) fn new(vtable: &'static VTable, when: When, link: *mut Head) -> Head {
        Head {
            word: ptr::from_ref(vtable).map_addr(|a| a | when as usize),
            link,
        }
    }

    /// Writes a head for `P` at `at` and the payload after it.
    ///
    /// # Safety
    /// `at` is valid for writes of an `Entry<P>` and aligned for it.
    #[inline(always)]
    pub(crate) unsafe fn write<P>(at: NonNull<Head>, head: Head, payload: P) {
        // SAFETY: as the caller guarantees.
        unsafe {
            at.as_ptr().write(head);
            payload_of::<P>(at).write(payload);
        }
    }
}

/// An entry's head, as untyped code handles it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Erased(pub(crate) NonNull<Head>);

impl Erased {
    /// # Safety (for every method)
    /// `self` points to a valid head; its fields are only written by
    /// whoever owns the entry's storage right now (under the slab's lock,
    /// or with the storage to itself), which is the caller.
    #[inline(always)]
    fn word(self) -> *const VTable {
        // SAFETY: see above.
        unsafe { (*self.0.as_ptr()).word }
    }

    #[inline(always)]
    fn set_word(self, word: *const VTable) {
        // SAFETY: see `word`.
        unsafe { (*self.0.as_ptr()).word = word }
    }

    /// The entry registered before this one, in its owner's chain.
    #[inline(always)]
    pub(crate) fn link(self) -> *mut Head {
        // SAFETY: see `word`.
        unsafe { (*self.0.as_ptr()).link }
    }

    #[inline(always)]
    pub(crate) fn set_link(self, link: *mut Head) {
        // SAFETY: see `word`.
        unsafe { (*self.0.as_ptr()).link = link }
    }

    /// The next entry in the chain.
    #[inline(always)]
    pub(crate) fn next(self) -> Option<Erased> {
        NonNull::new(self.link()).map(Erased)
    }

    /// The vtable of a live entry (busy or not); `None` once gone.
    #[inline(always)]
    pub(crate) fn vtable(self) -> Option<&'static VTable> {
        let word = self.word();
        // SAFETY: a word with an address is a tagged `&'static VTable`.
        (word.addr() & !TAG_BITS != 0).then(|| unsafe { &*word.map_addr(|a| a & !TAG_BITS) })
    }

    /// Live and not being taken.
    #[inline(always)]
    pub(crate) fn is_pending(self) -> bool {
        let word = self.word();
        word.addr() & !TAG_BITS != 0 && word.addr() & BUSY == 0
    }

    #[inline(always)]
    pub(crate) fn is_busy(self) -> bool {
        self.word().addr() & BUSY != 0
    }

    /// The registration's condition.
    #[inline(always)]
    pub(crate) fn when(self) -> When {
        When::from_bits(self.word().addr() & WHEN_BITS)
    }

    #[inline(always)]
    pub(crate) fn set_when(self, when: When) {
        let word = self.word();
        self.set_word(word.map_addr(|a| (a & !WHEN_BITS) | when as usize));
    }

    /// Marks a pending entry busy (a token is taking it back).
    #[inline(always)]
    pub(crate) fn set_busy(self, busy: bool) {
        let word = self.word();
        self.set_word(word.map_addr(|a| if busy { a | BUSY } else { a & !BUSY }));
    }

    /// The vtable of a pending entry with condition [`When::Always`] (the
    /// tag bits are all clear: one test), else `None`.
    #[inline(always)]
    pub(crate) fn plain(self) -> Option<&'static VTable> {
        let word = self.word();
        // SAFETY: with no tag bit set the word is a live entry's untagged
        // `&'static VTable` (a gone entry's has tag bits).
        (word.addr() & TAG_BITS == 0).then(|| unsafe { &*word })
    }

    /// Claims a live entry whose vtable the caller already read.
    #[inline(always)]
    pub(crate) fn claim_unchecked(self) {
        self.set_word(ptr::without_provenance(GONE));
    }

    /// Claims a live entry: from now on it is the caller's to run, poll or
    /// drop, and nobody else's. `None` if it was gone already.
    #[inline(always)]
    pub(crate) fn claim(self) -> Option<Live> {
        let vtable = self.vtable()?;
        let when = self.when();
        self.set_word(ptr::without_provenance(GONE));
        Some(Live {
            head: self.0,
            vtable,
            when,
        })
    }

    /// A view of a live entry without claiming it (an async entry stays
    /// live while it is polled).
    #[inline(always)]
    pub(crate) fn live(self) -> Option<Live> {
        Some(Live {
            head: self.0,
            vtable: self.vtable()?,
            when: self.when(),
        })
    }
}

/// A live entry, as whoever drives it sees it: where it is, its vtable
/// and its condition.
#[derive(Clone, Copy)]
pub(crate) struct Live {
    pub(crate) head: NonNull<Head>,
    pub(crate) vtable: &'static VTable,
    pub(crate) when: When,
}

impl Live {
    #[inline(always)]
    pub(crate) fn is_async(self) -> bool {
        matches!(self.vtable.kind, Kind::Async(_))
    }

    /// Runs a sync payload (consuming it).
    ///
    /// # Safety
    /// The payload is live and the caller's; a sync one is given up.
    /// `exit` is the head of the scope's `Exit<Out>` for the payload's
    /// `Out` (or a detached head), used by nobody else meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn run(self, exit: NonNull<ExitHead>) {
        match self.vtable.kind {
            // SAFETY: as the caller guarantees.
            Kind::Sync(run) => unsafe { run(self.head, exit) },
            Kind::Async(_) => unreachable!(),
        }
    }

    /// Polls an async payload in place; once it is ready, the entry is
    /// gone and its payload dropped.
    ///
    /// # Safety
    /// The payload is async, live, pinned where it is and the caller's for
    /// the call; `exit` as for [`run`](Self::run).
    #[inline(always)]
    pub(crate) unsafe fn poll(self, cx: &mut Context<'_>, exit: NonNull<ExitHead>) -> Poll<()> {
        match self.vtable.kind {
            // SAFETY: as the caller guarantees.
            Kind::Async(poll) => unsafe { poll(self.head, cx, exit) },
            Kind::Sync(_) => unreachable!(),
        }
    }

    /// Drops the payload in place.
    ///
    /// # Safety
    /// The payload is live and the caller's; never touched again.
    #[inline(always)]
    pub(crate) unsafe fn drop_payload(self) {
        // SAFETY: as the caller guarantees.
        unsafe { (self.vtable.drop)(self.head) }
    }

    /// Moves the entry (never polled: not pinned yet) to `to`, which gets a
    /// live head with this vtable and condition; this entry's bytes are
    /// dead afterwards.
    ///
    /// # Safety
    /// The payload is live, never polled and the caller's to give up; `to`
    /// is valid for writes of `self.vtable.layout` and aligned for it.
    pub(crate) unsafe fn move_to(self, to: NonNull<Head>) -> Live {
        // SAFETY: as the caller guarantees; the regions cannot overlap
        // (both are entries the caller owns, distinct).
        unsafe {
            ptr::copy_nonoverlapping(
                self.head.as_ptr().cast::<u8>(),
                to.as_ptr().cast::<u8>(),
                self.vtable.layout.size(),
            );
            to.as_ptr()
                .write(Head::new(self.vtable, self.when, ptr::null_mut()));
        }
        Live { head: to, ..self }
    }
}

/// An entry in a heap block of its own (`alloc`): owns the payload (while
/// its head says it is live) and the block.
#[cfg(feature = "alloc")]
pub(crate) struct BoxedEntry {
    head: NonNull<Head>,
    layout: Layout,
}

#[cfg(feature = "alloc")]
impl BoxedEntry {
    /// Moves a never-polled entry into a new heap block.
    ///
    /// # Safety
    /// As [`Live::move_to`]'s source.
    pub(crate) unsafe fn new(live: Live) -> Self {
        let layout = live.vtable.layout;
        // SAFETY: an entry's layout has a non-zero size (a head).
        let block = unsafe { alloc::alloc::alloc(layout) }.cast::<Head>();
        let Some(block) = NonNull::new(block) else {
            alloc::alloc::handle_alloc_error(layout)
        };
        // SAFETY: a fresh block of the entry's layout.
        unsafe { live.move_to(block) };
        BoxedEntry {
            head: block,
            layout,
        }
    }

    /// A new heap block holding an entry of `vtable` (the vtable of an
    /// `Entry<P>`) with `payload`.
    pub(crate) fn with<P>(vtable: &'static VTable, payload: P) -> Self {
        let layout = vtable.layout;
        // SAFETY: an entry's layout has a non-zero size (a head).
        let block = unsafe { alloc::alloc::alloc(layout) }.cast::<Head>();
        let Some(block) = NonNull::new(block) else {
            alloc::alloc::handle_alloc_error(layout)
        };
        // SAFETY: a fresh block of the entry's layout.
        unsafe { Head::write(block, Head::new(vtable, When::Always, ptr::null_mut()), payload) };
        BoxedEntry {
            head: block,
            layout,
        }
    }

    /// The entry, while it is live.
    pub(crate) fn live(&self) -> Option<Live> {
        Erased(self.head).live()
    }

    /// Its head (to link it into a chain).
    pub(crate) fn head(&self) -> NonNull<Head> {
        self.head
    }
}

#[cfg(feature = "alloc")]
impl Drop for BoxedEntry {
    fn drop(&mut self) {
        struct Free(NonNull<Head>, Layout);
        impl Drop for Free {
            fn drop(&mut self) {
                // SAFETY: allocated in `BoxedEntry::new` with this layout.
                unsafe { alloc::alloc::dealloc(self.0.as_ptr().cast(), self.1) }
            }
        }
        // Freed even if the payload's destructor panics.
        let _free = Free(self.head, self.layout);
        if let Some(live) = Erased(self.head).claim() {
            // SAFETY: live and ours; claimed first.
            unsafe { live.drop_payload() }
        }
    }
}
