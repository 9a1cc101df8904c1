//! A scope's inline, const-generic storage of erased entries: the unsafe
//! heart of [`DeferScope`](crate::DeferScope). It knows layouts, vtables
//! and heads; what a payload is, it leaves to `payload.rs`.
//!
//! # How it works
//!
//! A [`Slab<K, N>`] is a [`Core`] followed by `N` bytes of 16-aligned
//! inline storage. Registering bump-allocates an [`Entry<P>`](super::entry)
//! at the cursor and links it to the newest entry before it: the entries
//! form a singly linked chain, newest first, so LIFO cleanup walks it, and
//! FIFO and concurrent cleanup reverse it once, in place, when cleanup
//! starts. The allocator works on addresses: it starts when the scope is
//! first polled ([`Slab::init`]), when its address is final. When the inline
//! bytes cannot hold an entry, a growing flavour with `alloc` moves on to a
//! heap chunk (the first of at least 256 bytes, each next one twice as
//! big: N registrations make O(log N) allocations); otherwise the payload is
//! handed back. Entries never move once registered: an async payload is
//! polled where it lies.
//!
//! The body lends the handle (`&Defer`, which *is* the core) to anything it
//! likes, so every field is a `Cell` and nothing makes a `&mut` to the
//! core. For `scope` the handle is `Sync` (a body holding it across `.await`
//! stays `Send`), so every change to the chain, the cursor or an entry's
//! head happens under a one-word spin lock, which is never held while
//! foreign code runs (a destructor, a token's take): such an entry is first
//! marked `BUSY` or unlinked, so nothing else touches it, and finished
//! afterwards by a drop guard, also if the foreign code panics.
//! `scope_local`'s handle is `!Sync` and has no lock at all.
//!
//! Tokens ([`Registration`](crate::Registration)) name their entry by
//! address and the core's *epoch* when they were made (read under the lock
//! that registered the entry); [`clear`](Core::clear)
//! and [`move_all`](Core::move_all) move the epoch on, after which no token
//! made before touches the slab (its entry's bytes may hold another entry
//! by then). The epoch is 64 bits wide: it cannot wrap. A token's check is
//! O(1); `clear` and `move_all` are O(n).
//!
//! Bytes are given back when the newest entries are gone: a loop that
//! registers and cancels never fills the slab. While `clear` drops entries
//! it unlinked, giving bytes back is held off (`hold`), so a registration
//! made by a destructor meanwhile cannot land on them.
//!
//! Cleanup runs after the body (and with it every handle, token and guard)
//! is gone, so it has the slab to itself: [`start_cleanup`](Core::start_cleanup)
//! hands the chain to the driver.

use core::alloc::Layout;
use core::cell::{Cell, UnsafeCell};
use core::marker::{PhantomData, PhantomPinned};
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use super::entry::{Erased, GUARDED, Head, Live, PORTABLE, TakeFn, VTable};
use super::exit::{Classify, When};
use super::flavour::Flavour;
use crate::sync::{AtomicBool, Ordering};

/// The part of a [`Slab`] that does not depend on `N`; what a handle is.
///
/// (Zero-initialised fields alternate with others: a long run of zeros
/// makes LLVM call `memset` at `opt-level = "s"`, which costs a firmware
/// 170 bytes of flash when nothing else needs it.)
#[repr(C)]
pub(crate) struct Core<K: Flavour> {
    /// The newest entry.
    top: Cell<*mut Head>,
    /// Bump allocator: next free byte, end of the current region, and its
    /// start.
    cursor: Cell<*mut u8>,
    limit: Cell<*mut u8>,
    /// Moves on at every `clear` and `move_all` (see the module docs).
    epoch: Cell<u64>,
    region: Cell<*mut u8>,
    /// Tells an `Err` output from an `Ok` one, once a registration needs it
    /// (`Registration::when`): set where the output type is known.
    classify: Cell<Option<Classify>>,
    /// The flavour's `GROWS`, for the ambient API (which does not know
    /// the flavour).
    grows: bool,
    /// Serialises changes when `K::LOCKS` (a one-word spin lock). Every
    /// flavour has it, so that the ambient API can treat any core as a
    /// `Core<Sendable>` (the layout is the same; locking a `Local` core is
    /// harmless).
    lock: AtomicBool,
    /// `clear`s under way: no bytes are given back meanwhile.
    hold: Cell<u32>,
    /// Spilled chunks, newest first (`alloc`).
    #[cfg(feature = "alloc")]
    chunks: Cell<*mut Chunk>,
    /// A program-unique id, made when an ambient token first needs it.
    #[cfg(feature = "std")]
    instance: Cell<u64>,
    _flavour: PhantomData<K>,
}

// SAFETY: the core owns its payloads. With a `Send` flavour every payload
// is `Send` (the registration bounds guarantee it), and its raw pointers
// point only into memory it owns (its bytes, its chunks).
unsafe impl<K: Flavour + Send> Send for Core<K> {}
// SAFETY: with a `Sync` flavour (`Sendable`, whose lock is a real one)
// shared access changes the chain, the cursor and heads only under the
// lock; a payload is touched only by whoever claimed it or marked it busy,
// and payloads are `Send`.
unsafe impl<K: Flavour + Sync> Sync for Core<K> {}

/// A heap chunk of spilled entries (`alloc`): this header, then bytes.
#[cfg(feature = "alloc")]
struct Chunk {
    prev: *mut Chunk,
    layout: Layout,
}

/// Inline bytes and chunks are aligned to this; an entry aligned beyond it
/// goes to a chunk allocated with its own alignment.
pub(crate) const ALIGN: usize = 16;

#[repr(C, align(16))]
struct Bytes<const N: usize>([MaybeUninit<u8>; N]);

/// `N` bytes of inline storage for a scope's entries; see the module docs.
///
/// `!Unpin`: entries point into the bytes, so the slab must not move once
/// started, and a `&mut Slab` must not claim unique access to bytes those
/// pointers reach (Stacked Borrows skips that claim for `!Unpin` types).
#[repr(C)]
pub(crate) struct Slab<K: Flavour, const N: usize> {
    /// Written by [`Slab::init`] (nothing is written before: a scope that
    /// is never polled costs nothing to make).
    core: MaybeUninit<Core<K>>,
    bytes: UnsafeCell<Bytes<N>>,
    _pinned: PhantomPinned,
}

/// A registration's place in the slab: its entry, and the epoch its token
/// remembers (see [`Core::push`]).
pub(crate) struct Pushed {
    pub(crate) head: NonNull<Head>,
    pub(crate) epoch: u64,
}

/// Holds the lock (if the flavour locks) until dropped, also on unwind.
struct Locked<'a, K: Flavour>(&'a Core<K>);

impl<K: Flavour> Drop for Locked<'_, K> {
    #[inline(always)]
    fn drop(&mut self) {
        if K::LOCKS {
            // ORDERING: `Release` publishes our writes to the chain, heads
            // and payloads to the next `Acquire` of the lock.
            self.0.lock.store(false, Ordering::Release);
        }
    }
}

impl<K: Flavour, const N: usize> Slab<K, N> {
    /// A slab to be started by [`Slab::init`].
    pub(crate) const fn new() -> Self {
        Slab {
            core: MaybeUninit::uninit(),
            bytes: UnsafeCell::new(Bytes([MaybeUninit::uninit(); N])),
            _pinned: PhantomPinned,
        }
    }

    /// Writes the core, its bump allocator at the inline bytes.
    ///
    /// # Safety
    /// `this` points to a slab that will not move again (it is pinned) and
    /// carries provenance over all of it; called once, before
    /// [`core`](Self::core).
    #[inline(always)]
    pub(crate) unsafe fn init(this: *mut Self) {
        // SAFETY: `this` is valid (caller); `&raw mut` makes no reference,
        // so the pointer keeps `this`'s provenance.
        unsafe {
            let bytes = (&raw mut (*this).bytes).cast::<u8>();
            (&raw mut (*this).core).cast::<Core<K>>().write(Core {
                top: Cell::new(ptr::null_mut()),
                cursor: Cell::new(bytes),
                limit: Cell::new(bytes.add(N)),
                region: Cell::new(bytes),
                epoch: Cell::new(0),
                classify: Cell::new(None),
                hold: Cell::new(0),
                lock: AtomicBool::new(false),
                grows: K::GROWS,
                #[cfg(feature = "alloc")]
                chunks: Cell::new(ptr::null_mut()),
                #[cfg(feature = "std")]
                instance: Cell::new(0),
                _flavour: PhantomData,
            });
        }
    }

    /// The core.
    ///
    /// # Safety
    /// [`init`](Self::init) was called.
    #[inline(always)]
    pub(crate) unsafe fn core(&self) -> &Core<K> {
        // SAFETY: written by `init` (the caller guarantees it ran).
        unsafe { self.core.assume_init_ref() }
    }
}

/// Rounds `at` up to `align` (a power of two).
#[inline(always)]
fn align_up(at: *mut u8, align: usize) -> *mut u8 {
    at.map_addr(|a| a.wrapping_add(align - 1) & !(align - 1))
}

impl<K: Flavour> Core<K> {
    #[inline(always)]
    fn lock(&self) -> Locked<'_, K> {
        if K::LOCKS {
            // ORDERING: `Acquire` pairs with the `Release` in
            // `Locked::drop`: we see every change made under the lock
            // before us.
            while self
                .lock
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                core::hint::spin_loop();
            }
        }
        Locked(self)
    }

    /// Registers `payload` (of `vtable`'s layout) as the newest entry;
    /// hands it back when it does not fit. Returns its head and the epoch
    /// its token remembers, read under the same lock: read afterwards, a
    /// `clear` on another thread in between (a body that shares `&Defer`
    /// with scoped threads) would race with the read, and could leave the
    /// token naming the cleared entry's bytes at the new epoch.
    ///
    /// # Safety
    /// `vtable` is the vtable of an `Entry<P>`; the slab was started.
    #[inline(always)]
    pub(crate) unsafe fn push<P>(
        &self,
        vtable: &'static VTable,
        payload: P,
    ) -> Result<Pushed, P> {
        let locked = self.lock();
        let Some(at) = self.bump(vtable.layout) else {
            drop(locked);
            return Err(payload);
        };
        // SAFETY: `bump` returned fresh, aligned, writable memory for the
        // entry, owned by this slab; we hold the lock to link it.
        unsafe { Head::write(at, Head::new(vtable, When::Always, self.top.get()), payload) };
        self.top.set(at.as_ptr());
        let epoch = self.epoch.get();
        drop(locked);
        Ok(Pushed { head: at, epoch })
    }

    /// Room for an entry of `layout`.
    #[inline(always)]
    fn bump(&self, layout: Layout) -> Option<NonNull<Head>> {
        // The cursor is always aligned for a head (every entry's size is a
        // multiple of its alignment, at least a head's): most entries need
        // no rounding, and that is known at compile time.
        if layout.align() <= align_of::<Head>() {
            let at = self.cursor.get();
            if layout.size() <= self.limit.get().addr().wrapping_sub(at.addr()) {
                // SAFETY: `[at, at + size)` lies within the region.
                self.cursor.set(unsafe { at.add(layout.size()) });
                // SAFETY: inside our bytes or a chunk: not null.
                return Some(unsafe { NonNull::new_unchecked(at.cast()) });
            }
        } else if layout.align() <= ALIGN || self.chunk_align() >= layout.align() {
            let at = align_up(self.cursor.get(), layout.align());
            // Aligning may move `at` past `limit` (a region whose end is not
            // aligned: an inline capacity that is not a multiple of 16, a
            // chunk an entry filled exactly): then there is no room at all
            // (a wrapping difference would be a huge "room").
            let room = self.limit.get().addr().checked_sub(at.addr());
            if at.addr() >= self.cursor.get().addr() && room.is_some_and(|r| layout.size() <= r) {
                // SAFETY: `[at, at + size)` lies within the region.
                self.cursor.set(unsafe { at.add(layout.size()) });
                // SAFETY: inside our bytes or a chunk: not null.
                return Some(unsafe { NonNull::new_unchecked(at.cast()) });
            }
        }
        #[cfg(feature = "alloc")]
        if K::GROWS && self.grows {
            return Some(self.spill(layout));
        }
        None
    }

    /// The alignment the current region promises beyond [`ALIGN`]: a heap
    /// chunk's own (an entry aligned beyond 16 must rest on how the block
    /// was allocated, not where it landed); the inline bytes promise 16.
    #[inline(always)]
    fn chunk_align(&self) -> usize {
        #[cfg(feature = "alloc")]
        {
            let chunk = self.chunks.get();
            if !chunk.is_null() {
                // SAFETY: a non-null `chunks` is our current chunk, alive.
                return unsafe { (*chunk).layout.align() };
            }
        }
        ALIGN
    }

    /// Moves the allocator to a new heap chunk big enough for `layout`.
    #[cfg(feature = "alloc")]
    #[cold]
    fn spill(&self, layout: Layout) -> NonNull<Head> {
        let previous = self.chunks.get();
        let previous_size = if previous.is_null() {
            0
        } else {
            // SAFETY: our own chunk.
            unsafe { (*previous).layout.size() }
        };
        let align = layout.align().max(ALIGN);
        let header = size_of::<Chunk>().next_multiple_of(align);
        let size = (header + layout.size())
            .max(256)
            .max(previous_size.saturating_mul(2));
        // Overflows only for a payload near `isize::MAX` bytes: like
        // `Vec::push`, a panic, never a `Full`.
        let chunk_layout = Layout::from_size_align(size, align).expect("capacity overflow");
        // SAFETY: a non-zero size.
        let chunk = unsafe { alloc::alloc::alloc(chunk_layout) }.cast::<Chunk>();
        if chunk.is_null() {
            alloc::alloc::handle_alloc_error(chunk_layout);
        }
        // SAFETY: fresh memory of `size` bytes, aligned for `Chunk`.
        unsafe {
            chunk.write(Chunk {
                prev: previous,
                layout: chunk_layout,
            });
        }
        self.chunks.set(chunk);
        let start = chunk.cast::<u8>().wrapping_add(header);
        self.region.set(start);
        self.cursor.set(start.wrapping_add(layout.size()));
        self.limit.set(chunk.cast::<u8>().wrapping_add(size));
        // SAFETY: inside the fresh chunk, aligned for `layout`.
        unsafe { NonNull::new_unchecked(start.cast()) }
    }

    /// Moves the epoch on: every token made before is stale.
    fn next_epoch(&self) {
        self.epoch.set(self.epoch.get() + 1);
    }

    /// Whether a token made at `epoch` (`None`: a guard's, whose entry is
    /// never cleared or moved by others) still names its entry, and the
    /// entry is pending. Under the lock.
    #[inline(always)]
    fn owns(&self, head: NonNull<Head>, epoch: Option<u64>) -> bool {
        epoch.is_none_or(|epoch| epoch == self.epoch.get()) && Erased(head).is_pending()
    }

    /// Defuses a pending entry and writes what was deferred to `dst` with
    /// `take`; its bytes are given back if it was the newest. `false` (and
    /// nothing is touched) if the token is stale.
    ///
    /// # Safety
    /// `head` and `take` come from a registration on this slab whose token
    /// is consumed by this call; cleanup has not begun; `dst` is valid for
    /// a write of the payload's `Taken`.
    pub(crate) unsafe fn take(
        &self,
        head: NonNull<Head>,
        epoch: Option<u64>,
        take: TakeFn,
        dst: *mut (),
    ) -> bool {
        {
            let _locked = self.lock();
            if !self.owns(head, epoch) {
                return false;
            }
            // Ours from now on: `clear`, `move_all` and `reclaim` leave a
            // busy entry alone.
            Erased(head).set_busy(true);
        }
        // Finishes the entry also if the take's foreign code (what is not
        // handed back, dropped) panics: no registration is left busy.
        struct Finish<'a, K: Flavour>(&'a Core<K>, NonNull<Head>);
        impl<K: Flavour> Drop for Finish<'_, K> {
            fn drop(&mut self) {
                let _locked = self.0.lock();
                Erased(self.1).claim();
                self.0.reclaim();
            }
        }
        let finish = Finish(self, head);
        // SAFETY: the entry is ours (busy) and live; as the caller
        // guarantees for `take` and `dst`.
        unsafe { take(head, dst) };
        drop(finish);
        true
    }

    /// Notes how to tell an `Err` output from an `Ok` one, for an entry
    /// whose outcome untyped code may have to compute: one with a
    /// condition, or a portable `_with` cleanup that may be handed over
    /// (a rollback handed over after a cut-off must see the `Err`).
    pub(crate) fn set_classify(&self, classify: Classify) {
        let _locked = self.lock();
        self.classify.set(Some(classify));
    }

    /// Sets a pending entry's condition; `false` if the token is stale.
    pub(crate) fn set_when(
        &self,
        head: NonNull<Head>,
        epoch: Option<u64>,
        when: When,
        classify: Classify,
    ) -> bool {
        let _locked = self.lock();
        if !self.owns(head, epoch) {
            return false;
        }
        Erased(head).set_when(when);
        self.classify.set(Some(classify));
        true
    }

    /// How the output is classified, if a registration asked for it.
    pub(crate) fn classify(&self) -> Option<Classify> {
        self.classify.get()
    }

    /// Moves a pending, portable entry out with `accept` (which moves its
    /// bytes, never polled, and runs no user code); `false` if the token is
    /// stale, the entry is not portable, or `accept` had no room.
    pub(crate) fn move_entry(
        &self,
        head: NonNull<Head>,
        epoch: Option<u64>,
        accept: impl FnOnce(Live) -> bool,
    ) -> bool {
        let _locked = self.lock();
        if !self.owns(head, epoch) {
            return false;
        }
        let entry = Erased(head);
        let Some(live) = entry.live() else {
            return false;
        };
        if live.vtable.flags & PORTABLE == 0 || !accept(live) {
            return false;
        }
        entry.claim();
        self.reclaim();
        true
    }

    /// Moves every pending, portable, unguarded entry to `accept`, oldest
    /// first, stopping at the first it has no room for; returns how many
    /// moved. Tokens made before are stale from now on.
    pub(crate) fn move_all(&self, mut accept: impl FnMut(Live) -> bool) -> usize {
        let _locked = self.lock();
        self.next_epoch();
        // Oldest first: reverse the chain, walk it, reverse it back (no
        // memory needed, all under the lock: `accept` copies bytes only).
        let oldest = reverse(self.top.get());
        let mut moved = 0;
        let mut next = NonNull::new(oldest).map(Erased);
        while let Some(entry) = next {
            next = entry.next();
            let Some(live) = entry.live() else { continue };
            if entry.is_busy() || live.vtable.flags & (PORTABLE | GUARDED) != PORTABLE {
                continue;
            }
            if !accept(live) {
                break;
            }
            entry.claim();
            moved += 1;
        }
        self.top.set(reverse(oldest));
        self.reclaim();
        moved
    }

    /// Drops every pending unguarded entry unrun, newest first; returns how
    /// many. Tokens made before are stale from now on. With `std` a
    /// panicking destructor does not stop the others; the first panic
    /// resumes at the end.
    pub(crate) fn clear(&self) -> usize {
        // Unlink the candidates into a list of our own, under the lock.
        let mut mine: *mut Head = ptr::null_mut();
        let mut last: *mut Head = ptr::null_mut();
        {
            let _locked = self.lock();
            self.next_epoch();
            self.hold.set(self.hold.get() + 1);
            let mut prev: Option<Erased> = None;
            let mut next = NonNull::new(self.top.get()).map(Erased);
            while let Some(entry) = next {
                next = entry.next();
                let selected = entry.is_pending()
                    && entry.vtable().is_some_and(|v| v.flags & GUARDED == 0);
                if !selected {
                    prev = Some(entry);
                    continue;
                }
                let after = entry.link();
                match prev {
                    Some(prev) => prev.set_link(after),
                    None => self.top.set(after),
                }
                entry.set_link(ptr::null_mut());
                if last.is_null() {
                    mine = entry.0.as_ptr();
                } else {
                    Erased(NonNull::new(last).expect("linked")).set_link(entry.0.as_ptr());
                }
                last = entry.0.as_ptr();
            }
        }
        // Drop them outside the lock (foreign code); nobody else can reach
        // them, and their bytes stay ours until `hold` is released.
        struct Release<'a, K: Flavour>(&'a Core<K>);
        impl<K: Flavour> Drop for Release<'_, K> {
            fn drop(&mut self) {
                let _locked = self.0.lock();
                self.0.hold.set(self.0.hold.get() - 1);
                self.0.reclaim();
            }
        }
        let _release = Release(self);
        drain(mine)
    }

    /// How many registrations are pending (guards included).
    pub(crate) fn len(&self) -> usize {
        let _locked = self.lock();
        let mut count = 0;
        let mut next = NonNull::new(self.top.get()).map(Erased);
        while let Some(entry) = next {
            count += usize::from(entry.is_pending());
            next = entry.next();
        }
        count
    }

    /// Gives back the bytes of the newest entries while they are gone and
    /// lie in the current region. Under the lock.
    fn reclaim(&self) {
        if self.hold.get() != 0 {
            return;
        }
        let region = self.region.get();
        let here = region.addr()..self.cursor.get().addr();
        loop {
            let Some(top) = NonNull::new(self.top.get()).map(Erased) else {
                if !region.is_null() {
                    self.cursor.set(region);
                }
                return;
            };
            if !here.contains(&top.0.addr().get()) {
                // In an older region: the current one is all free.
                self.cursor.set(region);
                return;
            }
            match top.vtable() {
                None => self.top.set(top.link()),
                Some(vtable) if !top.is_busy() => {
                    let end = top.0.as_ptr().cast::<u8>().wrapping_add(vtable.layout.size());
                    self.cursor.set(end);
                    return;
                }
                Some(_) => return,
            }
        }
    }

    /// Nothing registered, or all of it cancelled and given back.
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.top.get().is_null()
    }

    /// The first entry cleanup looks at: the newest, or (`reverse`, for
    /// FIFO and concurrent order) the oldest; every entry links to the next
    /// one to look at.
    ///
    /// # Safety
    /// The caller has the slab to itself from now on (the body is gone) and
    /// drives or drops every entry of the chain.
    #[inline(always)]
    pub(crate) unsafe fn start_cleanup(&self, reverse_it: bool) -> Option<Erased> {
        let first = self.top.replace(ptr::null_mut());
        let first = if reverse_it { reverse(first) } else { first };
        NonNull::new(first).map(Erased)
    }

    /// Frees the spilled chunks. The scope calls it when cleanup is over
    /// (every entry was run or dropped).
    #[inline(always)]
    pub(crate) fn release(&self) {
        #[cfg(feature = "alloc")]
        if !self.chunks.get().is_null() {
            self.free_chunks();
        }
    }

    #[cfg(feature = "alloc")]
    #[cold]
    fn free_chunks(&self) {
        let mut chunk = self.chunks.replace(ptr::null_mut());
        while !chunk.is_null() {
            // SAFETY: our chunks, allocated in `spill` with the layout they
            // record; no entry in them is live any more.
            unsafe {
                let Chunk { prev, layout } = chunk.read();
                alloc::alloc::dealloc(chunk.cast(), layout);
                chunk = prev;
            }
        }
        self.region.set(ptr::null_mut());
    }

    /// This scope's program-unique id (made on first use; `std`).
    #[cfg(feature = "std")]
    pub(crate) fn instance(&self) -> u64 {
        let _locked = self.lock();
        if self.instance.get() == 0 {
            self.instance.set(next_id());
        }
        self.instance.get()
    }

    /// The id, if one was made (an ambient token compares it).
    #[cfg(feature = "std")]
    pub(crate) fn instance_if_any(&self) -> u64 {
        self.instance.get()
    }
}

/// Reverses a chain in place; returns its new first entry.
fn reverse(mut first: *mut Head) -> *mut Head {
    let mut reversed = ptr::null_mut();
    while let Some(entry) = NonNull::new(first).map(Erased) {
        first = entry.link();
        entry.set_link(reversed);
        reversed = entry.0.as_ptr();
    }
    reversed
}

/// Drops every live entry of the chain from `first` on, in order; returns
/// how many. A panicking destructor does not stop the others: with `std`
/// the first panic resumes after the last; without, the rest are dropped
/// while it unwinds.
pub(crate) fn drain(first: *mut Head) -> usize {
    struct KeepDraining(*mut Head);
    impl Drop for KeepDraining {
        fn drop(&mut self) {
            drain(self.0);
        }
    }
    let mut count = 0;
    let mut panic = None;
    let mut next = NonNull::new(first).map(Erased);
    while let Some(entry) = next {
        next = entry.next();
        if let Some(live) = entry.claim() {
            count += 1;
            let guard = KeepDraining(next.map_or(ptr::null_mut(), |e| e.0.as_ptr()));
            // SAFETY: claimed: ours, dropped once.
            if let Err(p) = crate::panic::catch(|| unsafe { live.drop_payload() }) {
                panic.get_or_insert(p);
            }
            core::mem::forget(guard);
        }
    }
    if let Some(p) = panic {
        crate::panic::resume(p);
    }
    count
}

/// A program-wide unique id, for a scope an ambient token names; 0 once
/// the 2^64 ids ran out (a token then never finds its scope).
#[cfg(feature = "std")]
pub(crate) fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // ORDERING: only uniqueness matters, which every RMW on one atomic
    // gives.
    NEXT.fetch_update(Relaxed, Relaxed, |id| id.checked_add(1))
        .unwrap_or(0)
}
