//! Per-index wakers (`alloc`): a wake-up polls only the futures that were
//! woken. Used by concurrent cleanup (`cleanup::Indexed`) and by the task
//! queue.
//!
//! Each running future gets an index and a waker that sets its bit in a
//! shared bitset, then wakes the owner (the scope, the queue) through an
//! [`AtomicWaker`]. All of it — the flags, the owner's waker and one small
//! slot per index that the index's wakers point at — is one heap block with
//! a reference count, so `N` per-index wakers cost one allocation, and
//! making or cloning one is a counter increment (`futures-buffered` and
//! `FuturesUnordered` allocate per task). The owner's poll first registers its waker, then takes
//! (swaps out) the set bits and polls exactly those futures — "publish, then
//! wake" against "register, then re-check", so no wake-up is lost. Nothing
//! here spins or locks: a future's waker may run in an interrupt handler that
//! pre-empted the owner's poll, or the other way round.
//!
//! The flags and the owner's waker are atomics of the [`crate::sync`] shim,
//! so `tests/loom_queue.rs` model-checks a slot waker on another thread
//! against the owner's `register` and `for_each_woken`. The `Arc`s stay
//! `alloc`'s: a [`Waker`] is made from an `alloc::sync::Arc` only.
//!
//! A panic in the owner's waker (its `clone` in `register`, its `wake` in a
//! slot waker, its `drop`) propagates to the caller; the flags are set or
//! taken before it runs, so none is lost but the panicking call's own.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::mem::{align_of, size_of};
use core::ops::Deref;
use core::ptr::{self, NonNull};
use core::task::{RawWaker, RawWakerVTable, Waker};

use crate::sync::{AtomicUsize, AtomicWaker, Ordering};

const BITS: usize = usize::BITS as usize;

/// The start of the shared block: then `words` flag words, then `len`
/// slots.
#[repr(C)]
struct Header {
    /// The `WakeBits` and every live slot waker.
    refs: AtomicUsize,
    /// The owner's latest waker.
    owner: AtomicWaker,
    words: usize,
    len: usize,
}

/// What a slot waker points at.
#[repr(C)]
struct Slot {
    header: *const Header,
    index: usize,
}

/// The block's layout and the offsets of the flags and the slots in it:
/// the header, the flags right after it, the slots right after them (all
/// word-aligned, so no padding: `FLAGS` is a constant and the slots' offset
/// one multiply-add).
fn block(words: usize, len: usize) -> (Layout, usize, usize) {
    let (layout, flags) = Layout::new::<Header>()
        .extend(Layout::array::<AtomicUsize>(words).expect("wake flags fit in memory"))
        .expect("wake flags fit in memory");
    let (layout, slots) = layout
        .extend(Layout::array::<Slot>(len).expect("wake slots fit in memory"))
        .expect("wake slots fit in memory");
    debug_assert_eq!((flags, slots), (FLAGS, slots_at(words)));
    (layout.pad_to_align(), flags, slots)
}

/// Where the flags start.
const FLAGS: usize = size_of::<Header>();

/// Where the slots start, after `words` flags.
const fn slots_at(words: usize) -> usize {
    FLAGS + words * size_of::<AtomicUsize>()
}

const _: () = {
    assert!(size_of::<Header>() % align_of::<AtomicUsize>() == 0);
    assert!(align_of::<Slot>() <= align_of::<AtomicUsize>());
    assert!(size_of::<AtomicUsize>() % align_of::<Slot>() == 0);
};

/// One wake flag per index `0..len`, and the owner's waker.
pub(crate) struct WakeBits {
    header: NonNull<Header>,
}

// SAFETY: everything in the block is an atomic or immutable after `new`;
// the owner's waker is behind an `AtomicWaker`.
unsafe impl Send for WakeBits {}
// SAFETY: as above.
unsafe impl Sync for WakeBits {}

impl WakeBits {
    /// `len` flags, all set when `woken` (every future must be polled once
    /// to start), else all clear.
    pub(crate) fn new(len: usize, woken: bool) -> Self {
        let words = len.div_ceil(BITS);
        let (layout, flags, slots) = block(words, len);
        // SAFETY: the layout has a non-zero size (it holds a `Header`).
        let base = unsafe { alloc::alloc::alloc(layout) };
        let Some(base) = NonNull::new(base) else {
            alloc::alloc::handle_alloc_error(layout)
        };
        let header = base.cast::<Header>();
        let init = if woken { usize::MAX } else { 0 };
        // SAFETY: fresh memory laid out by `block`: every write is in bounds
        // and aligned.
        unsafe {
            header.write(Header {
                refs: AtomicUsize::new(1),
                owner: AtomicWaker::new(),
                words,
                len,
            });
            let flags = base.as_ptr().add(flags).cast::<AtomicUsize>();
            for w in 0..words {
                flags.add(w).write(AtomicUsize::new(init));
            }
            let slots = base.as_ptr().add(slots).cast::<Slot>();
            for index in 0..len {
                slots.add(index).write(Slot {
                    header: header.as_ptr(),
                    index,
                });
            }
        }
        WakeBits { header }
    }

    fn header(&self) -> &Header {
        // SAFETY: the block lives while we hold our reference.
        unsafe { self.header.as_ref() }
    }

    fn flags(&self) -> &[AtomicUsize] {
        flags_of(self.header.as_ptr())
    }

    fn slot(&self, index: usize) -> *const Slot {
        let header = self.header();
        assert!(index < header.len, "deferral: wake slot out of range");
        // SAFETY: in bounds of the block (checked above).
        unsafe {
            self.header
                .as_ptr()
                .cast::<u8>()
                .add(slots_at(header.words))
                .cast::<Slot>()
                .add(index)
        }
    }

    /// A waker that sets flag `index` and wakes the owner (no allocation:
    /// a reference count increment).
    pub(crate) fn waker(&self, index: usize) -> Waker {
        let slot = self.slot(index);
        acquire_ref(self.header());
        // SAFETY: the vtable's contract: `slot` is a slot of a live block
        // and the new waker owns the reference taken above.
        unsafe { Waker::from_raw(RawWaker::new(slot.cast(), &VTABLE)) }
    }

    /// A borrowed waker for flag `index`, for one poll: no reference count
    /// changes unless the polled future clones it.
    pub(crate) fn waker_ref(&self, index: usize) -> WakerRef<'_> {
        let slot = self.slot(index);
        // SAFETY: as in `waker`, except that this waker owns no reference:
        // it is never dropped (`ManuallyDrop`) and lives no longer than
        // `&self`, which keeps the block alive.
        let waker = unsafe { Waker::from_raw(RawWaker::new(slot.cast(), &VTABLE)) };
        WakerRef {
            waker: ManuallyDrop::new(waker),
            _bits: PhantomData,
        }
    }

    /// Clears flag `index`: a wake-up left by whatever used that index
    /// before (a task that woke itself as it finished), not for what uses
    /// it now. Call before the new user's first poll.
    pub(crate) fn forget(&self, index: usize) {
        // `flags` has a word for every index below `len` (checked here).
        let word = &self.flags()[index / BITS];
        // ORDERING: `Relaxed`: the cleared wake-up hands nothing over (its
        // task is gone); a wake of the new user comes after this, from its
        // own poll, and sets the bit again.
        word.fetch_and(!(1 << (index % BITS)), Ordering::Relaxed);
    }

    /// Registers the owner's waker: call before [`Self::for_each_woken`].
    pub(crate) fn register(&self, waker: &Waker) {
        self.header().owner.register(waker);
    }

    /// Takes the set flags of the indexes from `from` on and calls `f` with
    /// each index, in increasing order, until `f` returns `false`: the flags
    /// not yet handed to `f` are then put back (the owner is expected to
    /// poll again). They are put back too if `f` panics, so a caught panic
    /// loses no wake-up but the panicking one's. Flags below `from` are
    /// left set, untouched (an owner resuming a pass skips what it visited).
    ///
    /// Always inlined: it is the inner loop of its owners' polls (the task
    /// queue's measured ~45 instructions per task more when LLVM chose to
    /// call it, which it did or not depending on unrelated code).
    #[inline(always)]
    pub(crate) fn for_each_woken(&self, from: usize, mut f: impl FnMut(usize) -> bool) {
        /// Puts the untaken flags of one word back when dropped.
        struct Untaken<'a> {
            word: &'a AtomicUsize,
            bits: usize,
        }
        impl Drop for Untaken<'_> {
            fn drop(&mut self) {
                if self.bits != 0 {
                    // ORDERING: only the owner's own later `swap` reads these
                    // bits back; `Relaxed` suffices for that.
                    self.word.fetch_or(self.bits, Ordering::Relaxed);
                }
            }
        }
        let first = from / BITS;
        for (w, word) in self.flags().iter().enumerate().skip(first) {
            // The bits below `from` stay (only in its word).
            let keep = if w == first {
                (1usize << (from % BITS)) - 1
            } else {
                0
            };
            let bits = if keep == 0 {
                // ORDERING: `AcqRel`, see `wake_by_ref`.
                word.swap(0, Ordering::AcqRel)
            } else {
                // ORDERING: as the `swap`, for the bits it clears.
                word.fetch_and(keep, Ordering::AcqRel) & !keep
            };
            let mut untaken = Untaken { word, bits };
            while untaken.bits != 0 {
                let index = w * BITS + untaken.bits.trailing_zeros() as usize;
                untaken.bits &= untaken.bits - 1;
                if !f(index) {
                    return; // `untaken` puts the rest back
                }
            }
        }
    }
}

impl Drop for WakeBits {
    fn drop(&mut self) {
        // Slot wakers may outlive the owner (stored by a timer, say): let
        // them keep only the block, not the owner's task alive.
        let owner = self.header().owner.take();
        // SAFETY: we give up our reference; nothing of ours is used after.
        unsafe { release_ref(self.header.as_ptr()) };
        // Foreign code last.
        drop(owner);
    }
}

/// A waker borrowed from a [`WakeBits`] for one poll.
pub(crate) struct WakerRef<'a> {
    waker: ManuallyDrop<Waker>,
    _bits: PhantomData<&'a WakeBits>,
}

impl Deref for WakerRef<'_> {
    type Target = Waker;
    fn deref(&self) -> &Waker {
        &self.waker
    }
}

fn flags_of<'a>(header: *const Header) -> &'a [AtomicUsize] {
    // SAFETY: `header` starts a live block (callers hold a reference); the
    // flags are initialised atomics at `flags`.
    unsafe {
        let words = (*header).words;
        core::slice::from_raw_parts(header.cast::<u8>().add(FLAGS).cast::<AtomicUsize>(), words)
    }
}

fn acquire_ref(header: &Header) {
    // ORDERING: `Relaxed`, as `Arc::clone`: the new reference is made from
    // an existing one, which keeps the block alive meanwhile.
    let old = header.refs.fetch_add(1, Ordering::Relaxed);
    if old > isize::MAX as usize {
        // Forgotten clones wrapped the count: abort rather than free a block
        // still in use (as `Arc` does).
        crate::panic::abort();
    }
}

/// # Safety
/// The caller owns one reference to the block at `header` and gives it up.
unsafe fn release_ref(header: *const Header) {
    // SAFETY: the block is alive while we hold our reference.
    let refs = unsafe { &(*header).refs };
    // ORDERING: `Release` publishes our accesses to the block to the last
    // owner, whose `Acquire` load orders them before the free (as `Arc`).
    if refs.fetch_sub(1, Ordering::Release) != 1 {
        return;
    }
    // ORDERING: `Acquire`: reads the last decrement (a release sequence of
    // every earlier one), so every other owner's accesses happen before the
    // free. A load rather than `Arc`'s `fence(Acquire)`: the same guarantee
    // here, and ThreadSanitizer understands it (it ignores fences, and
    // reported the free as racing with another thread's decrement; std's
    // `Arc` makes the same substitution under TSan).
    refs.load(Ordering::Acquire);
    // SAFETY: we were the last reference: nobody else can reach the block.
    unsafe {
        let owner = (*header).owner.take();
        let (layout, _, _) = block((*header).words, (*header).len);
        ptr::drop_in_place(header.cast_mut());
        alloc::alloc::dealloc(header.cast_mut().cast(), layout);
        // Foreign code last.
        drop(owner);
    }
}

static VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_slot, wake_slot, wake_slot_by_ref, drop_slot);

/// # Safety (all four)
/// `data` is a `*const Slot` of a live block; for `wake` and `drop` the
/// waker owns one reference, which they give up.
unsafe fn clone_slot(data: *const ()) -> RawWaker {
    // SAFETY: as above.
    acquire_ref(unsafe { &*(*data.cast::<Slot>()).header });
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake_slot(data: *const ()) {
    /// Gives the reference up even if waking the owner panics.
    struct Release(*const Header);
    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: the consumed waker's reference.
            unsafe { release_ref(self.0) }
        }
    }
    // SAFETY: as above.
    let _release = Release(unsafe { (*data.cast::<Slot>()).header });
    // SAFETY: as above.
    unsafe { wake_slot_by_ref(data) }
}

unsafe fn wake_slot_by_ref(data: *const ()) {
    // SAFETY: as above.
    let (header, index) = unsafe {
        let slot = &*data.cast::<Slot>();
        (slot.header, slot.index)
    };
    // SAFETY: the flag word of `index` is in the block (index < len).
    let word = unsafe {
        &*header
            .cast::<u8>()
            .add(FLAGS)
            .cast::<AtomicUsize>()
            .add(index / BITS)
    };
    // ORDERING: `AcqRel`: the bit is published before the `AtomicWaker`
    // read-modify-write in `wake`, which the owner's `register` (an RMW
    // of the same word) either follows — then the owner's later `swap`
    // sees the bit — or precedes, and then `wake` finds its new waker.
    word.fetch_or(1 << (index % BITS), Ordering::AcqRel);
    // Foreign code (the owner's waker) runs last: the bit is set even if it
    // panics.
    // SAFETY: the block is alive (the waker holds or borrows a reference).
    unsafe { (*header).owner.wake() };
}

unsafe fn drop_slot(data: *const ()) {
    // SAFETY: as above.
    unsafe { release_ref((*data.cast::<Slot>()).header) }
}
