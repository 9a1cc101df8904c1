//! Inline, const-generic, type-erased storage of deferred thunks.
//!
//! # How it works
//!
//! A [`Slab<N>`] is `N` bytes of 16-aligned inline storage plus a little
//! bookkeeping. Registering a thunk ("an entry") bump-allocates, inside those
//! bytes, a [`Header`] followed by the thunk itself (its "payload"): a closure,
//! a future, or a guarded value with its cleanup. The header records the
//! payload's address and a `&'static` [`EntryVTable`] of monomorphised
//! functions that know the payload's real type (run it, poll it, drop it, take
//! it back). When the inline bytes cannot hold an entry — full, or a payload
//! aligned to more than 16 — the entry is refused and handed back, or, with
//! the `alloc` feature, the header and payload go into one heap block of
//! their own ("spilled"). Bytes are never reused: a slab lives for one scope.
//!
//! Entries are threaded on intrusive doubly linked lists through their
//! headers, whatever storage they sit in:
//!
//! - `armed`: registered, not yet started, in registration order. LIFO
//!   cleanup pops its tail, FIFO its head; defusing an entry unlinks it.
//! - `running`: async entries whose future has been polled at least once and
//!   has not finished. Their payloads are pinned where they are.
//!
//! An entry is on at most one list. Whoever unlinks an entry owns its
//! payload: it must run, drop or take the payload exactly once, then free the
//! entry. Unlinking *before* touching the payload is what makes a panicking
//! thunk or destructor unable to cause a double drop (the heapless
//! `truncate` rule): if the payload panics, the entry is already off every
//! list, so nobody will touch it again.
//!
//! # Addresses and sharing
//!
//! Headers and payloads hold raw pointers into the slab's own bytes, so a
//! slab must not move once the first entry is registered: every entry point
//! takes `Pin<&Self>`. The lists are mutated only under `lock` (a spin flag,
//! held for a few pointer writes) so the owning scope's handle can be `Sync`
//! and a body that holds it across `.await` stays `Send`; that is also why
//! every payload must be `Send`. Cleanup runs after the body (and with it
//! every handle, token and guard) is gone, so it has the slab to itself.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::marker::PhantomPinned;
use core::mem::{MaybeUninit, align_of, size_of};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};

/// The largest payload alignment the inline bytes can honour: the bytes are
/// aligned to this, and offsets are computed from their start, so an entry
/// is correctly aligned whatever address the slab ends up at.
pub(crate) const INLINE_ALIGN: usize = 16;

/// A payload of the slab: something deferred, with a way to finish it.
///
/// `Out` is the scope's output type: thunks that asked for it get
/// `Some(&mut out)` when there is one (the body returned) and `None` when
/// there is not (the body panicked or the scope was cancelled).
pub(crate) trait Payload<Out>: Sized + Send {
    /// What [`take`](Self::take) hands back when an entry is defused.
    type Taken;
    /// Async payloads are polled; sync ones run once.
    const ASYNC: bool;

    /// Runs a sync payload to completion. Never called for async payloads.
    fn run(self, out: Option<&mut Out>);

    /// Polls an async payload. Never called for sync payloads.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, out: Option<&mut Out>) -> Poll<()>;

    /// Defuses a payload that has not started: hands back what was deferred.
    fn take(self) -> Self::Taken;

    /// An async payload that has not started, as a boxed `'static` future
    /// (for a scope's cancel handler); `Err(self)` for sync payloads.
    #[cfg(feature = "alloc")]
    fn into_boxed(self) -> Result<BoxedThunk, Self>;
}

/// A not-yet-started async thunk, as handed to a scope's cancel handler.
#[cfg(feature = "alloc")]
pub type BoxedThunk = Pin<alloc::boxed::Box<dyn Future<Output = ()> + Send + 'static>>;

/// The monomorphised functions of one payload type.
pub(crate) struct EntryVTable {
    layout: Layout,
    is_async: bool,
    /// Reads the payload out and runs it. `out` is a `*mut Out` or null.
    run: unsafe fn(payload: *mut u8, out: *mut ()),
    /// Polls the pinned payload in place. `out` is a `*mut Out` or null.
    poll: unsafe fn(payload: *mut u8, cx: &mut Context<'_>, out: *mut ()) -> Poll<()>,
    /// Drops the payload in place.
    drop: unsafe fn(payload: *mut u8),
    /// Reads the payload out, takes it, writes the `Taken` to `dst`.
    take: unsafe fn(payload: *mut u8, dst: *mut ()),
    /// Reads the payload out and boxes it; writes `Option<BoxedThunk>` to `dst`.
    #[cfg(feature = "alloc")]
    boxed: unsafe fn(payload: *mut u8, dst: *mut ()),
}

struct VTableOf<Out, P>(core::marker::PhantomData<(fn(Out), P)>);

impl<Out, P: Payload<Out>> VTableOf<Out, P> {
    const VTABLE: EntryVTable = EntryVTable {
        layout: Layout::new::<P>(),
        is_async: P::ASYNC,
        run: run_payload::<Out, P>,
        poll: poll_payload::<Out, P>,
        drop: drop_payload::<P>,
        take: take_payload::<Out, P>,
        #[cfg(feature = "alloc")]
        boxed: box_payload::<Out, P>,
    };
}

/// # Safety
/// `out` is null or points to a live `Out` nobody else is using.
unsafe fn out_ref<'a, Out>(out: *mut ()) -> Option<&'a mut Out> {
    // SAFETY: guaranteed by the caller.
    unsafe { out.cast::<Out>().as_mut() }
}

/// # Safety
/// `payload` points to an initialised `P` that the caller owns and gives up;
/// `out` as for [`out_ref`].
unsafe fn run_payload<Out, P: Payload<Out>>(payload: *mut u8, out: *mut ()) {
    // SAFETY: the caller owns the payload and never touches it again.
    let p = unsafe { payload.cast::<P>().read() };
    // SAFETY: guaranteed by the caller.
    p.run(unsafe { out_ref(out) });
}

/// # Safety
/// `payload` points to an initialised `P` pinned where it is; `out` as for
/// [`out_ref`].
unsafe fn poll_payload<Out, P: Payload<Out>>(
    payload: *mut u8,
    cx: &mut Context<'_>,
    out: *mut (),
) -> Poll<()> {
    // SAFETY: the payload is initialised, exclusively ours for this call,
    // and never moved while it may have been polled (the slab is pinned and
    // entries are not moved after registration).
    let p = unsafe { Pin::new_unchecked(&mut *payload.cast::<P>()) };
    // SAFETY: guaranteed by the caller.
    p.poll(cx, unsafe { out_ref(out) })
}

/// # Safety
/// `payload` points to an initialised `P` that the caller owns and gives up.
unsafe fn drop_payload<P>(payload: *mut u8) {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr::drop_in_place(payload.cast::<P>()) }
}

/// # Safety
/// As [`run_payload`]; `dst` points to writable `MaybeUninit<P::Taken>`.
unsafe fn take_payload<Out, P: Payload<Out>>(payload: *mut u8, dst: *mut ()) {
    // SAFETY: the caller owns the payload and never touches it again.
    let p = unsafe { payload.cast::<P>().read() };
    let taken = p.take();
    // SAFETY: `dst` is valid for a write of `P::Taken` (caller).
    unsafe { dst.cast::<P::Taken>().write(taken) }
}

/// # Safety
/// As [`run_payload`]; `dst` points to writable `MaybeUninit<Option<BoxedThunk>>`.
#[cfg(feature = "alloc")]
unsafe fn box_payload<Out, P: Payload<Out>>(payload: *mut u8, dst: *mut ()) {
    // SAFETY: the caller owns the payload and never touches it again.
    let p = unsafe { payload.cast::<P>().read() };
    let boxed = p.into_boxed().ok();
    // SAFETY: `dst` is valid for a write of `Option<BoxedThunk>` (caller).
    unsafe { dst.cast::<Option<BoxedThunk>>().write(boxed) }
}

/// The bookkeeping in front of every payload.
struct Header {
    vtable: &'static EntryVTable,
    payload: *mut u8,
    prev: *mut Header,
    next: *mut Header,
    /// Spilled to its own heap block (free it when done).
    #[cfg(feature = "alloc")]
    heap: bool,
}

/// An intrusive list of headers.
struct List {
    head: *mut Header,
    tail: *mut Header,
}

impl List {
    const EMPTY: List = List {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
    };

    fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// # Safety
    /// `e` is a valid header on no list.
    unsafe fn push_back(&mut self, e: *mut Header) {
        // SAFETY: `e` is valid (caller) and so is the tail, which is on
        // this list.
        unsafe {
            (*e).prev = self.tail;
            (*e).next = ptr::null_mut();
            if self.tail.is_null() {
                self.head = e;
            } else {
                (*self.tail).next = e;
            }
        }
        self.tail = e;
    }

    /// # Safety
    /// `e` is a valid header on this list.
    unsafe fn unlink(&mut self, e: *mut Header) {
        // SAFETY: `e` and its neighbours are valid headers on this list.
        unsafe {
            let (prev, next) = ((*e).prev, (*e).next);
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).next = next;
            }
            if next.is_null() {
                self.tail = prev;
            } else {
                (*next).prev = prev;
            }
            (*e).prev = ptr::null_mut();
            (*e).next = ptr::null_mut();
        }
    }

    /// Unlinks and returns the newest (`lifo`) or oldest entry.
    fn pop(&mut self, lifo: bool) -> Option<Entry> {
        let e = if lifo { self.tail } else { self.head };
        if e.is_null() {
            return None;
        }
        // SAFETY: `e` is the head or tail of this list, so valid and on it.
        unsafe { self.unlink(e) };
        Some(Entry(e))
    }
}

struct State {
    /// Bytes of the inline storage handed out so far.
    used: usize,
    armed: List,
    running: List,
}

#[repr(C, align(16))]
struct Bytes<const N: usize>([MaybeUninit<u8>; N]);

/// `N` bytes of inline storage for deferred thunks. See the module docs.
///
/// `repr(C)`: the bytes sit at the same offset after the core whatever `N`
/// is, so a one-pointer [`RawSlab`] can find them.
#[repr(C)]
pub(crate) struct Slab<const N: usize> {
    core: SlabCore,
    bytes: UnsafeCell<Bytes<N>>,
}

/// Where a slab's bytes start, relative to its core (the same for every `N`).
const BYTES_OFFSET: usize = core::mem::offset_of!(Slab<0>, bytes);

/// The part of a [`Slab`] that does not depend on `N`.
pub(crate) struct SlabCore {
    /// Serialises every change to `state` made through a shared reference.
    lock: AtomicBool,
    state: UnsafeCell<State>,
    /// `N`, the number of inline bytes.
    cap: usize,
    /// Headers point into our own bytes.
    _pinned: PhantomPinned,
}

// SAFETY: the slab owns its payloads, which are all `Send` (`Payload:
// Send`); its raw pointers point only into memory it owns (its bytes and
// its spilled blocks), so moving the whole slab to another thread moves all
// of that with it.
unsafe impl Send for SlabCore {}
// SAFETY: through `&SlabCore`, `state` is only changed under `lock`, and a
// payload is only touched by whoever unlinked it (one thread) or by the
// guard that owns it; all payloads are `Send`, so touching them from
// whichever thread holds the reference is fine.
unsafe impl Sync for SlabCore {}

/// A registered entry: a pointer to its header. Owned by whoever unlinked
/// it, or, while armed, referred to by its registration token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry(*mut Header);

// SAFETY: an `Entry` is an address; using it requires the slab (see above),
// whose own `Send`/`Sync` reasoning covers the pointee.
unsafe impl Send for Entry {}
// SAFETY: as above.
unsafe impl Sync for Entry {}

impl Entry {
    /// The payload's address.
    pub(crate) fn payload(self) -> *mut u8 {
        // SAFETY: an `Entry` always points to a valid header.
        unsafe { (*self.0).payload }
    }

    pub(crate) fn is_async(self) -> bool {
        // SAFETY: an `Entry` always points to a valid header.
        unsafe { (*self.0).vtable.is_async }
    }
}

impl<const N: usize> Slab<N> {
    /// An empty slab.
    pub(crate) const fn new() -> Self {
        Slab {
            core: SlabCore {
                lock: AtomicBool::new(false),
                state: UnsafeCell::new(State {
                    used: 0,
                    armed: List::EMPTY,
                    running: List::EMPTY,
                }),
                cap: N,
                _pinned: PhantomPinned,
            },
            bytes: UnsafeCell::new(Bytes([MaybeUninit::uninit(); N])),
        }
    }

    /// The `N`-erased view every operation goes through.
    pub(crate) fn raw(self: Pin<&Self>) -> RawSlab<'_> {
        debug_assert_eq!(core::mem::offset_of!(Self, bytes), BYTES_OFFSET);
        // Derived from a reference to the whole slab, so the pointer may
        // reach the bytes too (they are in an `UnsafeCell`: writable).
        RawSlab {
            slab: NonNull::from(self.get_ref()).cast(),
            _life: core::marker::PhantomData,
        }
    }
}

/// A pinned slab with its capacity erased: one pointer, `Copy`, so handles
/// and tokens can keep one.
#[derive(Clone, Copy)]
pub(crate) struct RawSlab<'a> {
    /// The slab's core, with provenance over the whole `Slab<N>`.
    slab: NonNull<SlabCore>,
    _life: core::marker::PhantomData<&'a SlabCore>,
}

// SAFETY: a `RawSlab` is a shared reference to a slab; see `SlabCore`'s
// `Send`/`Sync` impls.
unsafe impl Send for RawSlab<'_> {}
// SAFETY: as above.
unsafe impl Sync for RawSlab<'_> {}

/// Releases the slab lock when dropped (also on unwind).
struct Locked<'a> {
    core: &'a SlabCore,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // ORDERING: Release publishes our writes to `state` (and to the
        // payload we may have written) to the next `Acquire` of the lock.
        self.core.lock.store(false, Ordering::Release);
    }
}

impl<'a> RawSlab<'a> {
    fn core(self) -> &'a SlabCore {
        // SAFETY: a `RawSlab<'a>` comes from a `Pin<&'a Slab<N>>` (or is a
        // detached copy whose user keeps the slab alive).
        unsafe { self.slab.as_ref() }
    }

    /// Start of the inline bytes.
    fn base(self) -> *mut u8 {
        // SAFETY: the bytes follow the core at `BYTES_OFFSET` inside the
        // same `Slab<N>`, which `slab`'s provenance covers.
        unsafe { self.slab.as_ptr().cast::<u8>().add(BYTES_OFFSET) }
    }

    fn lock(self) -> Locked<'a> {
        // ORDERING: Acquire pairs with the Release in `Locked::drop`, so we
        // see every change made under the lock before us.
        while self
            .core()
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        Locked { core: self.core() }
    }

    /// # Safety
    /// The caller holds the lock, or has the slab to itself (cleanup).
    #[allow(clippy::mut_from_ref)]
    unsafe fn state(self) -> &'a mut State {
        // SAFETY: exclusive access is guaranteed by the caller.
        unsafe { &mut *self.core().state.get() }
    }

    /// Registers `payload`, or hands it back if it does not fit (without
    /// `alloc`). With `std`, a payload registered while a context variable
    /// is set is wrapped so that it runs in that context (`InContext`,
    /// payload first: the entry's payload address is the same); in the empty
    /// context nothing is captured or wrapped (cleanup runs isolated from
    /// the context of its poll, see `scope::Driver`).
    pub(crate) fn push<Out, P: Payload<Out>>(self, payload: P) -> Result<Entry, P> {
        #[cfg(feature = "std")]
        {
            let snapshot = crate::Snapshot::capture();
            if !snapshot.is_empty() {
                let wrapped = crate::thunk::InContext { payload, snapshot };
                return self
                    .push_raw::<Out, _>(wrapped)
                    .map_err(|wrapped| wrapped.payload);
            }
        }
        self.push_raw(payload)
    }

    fn push_raw<Out, P: Payload<Out>>(self, payload: P) -> Result<Entry, P> {
        let vtable: &'static EntryVTable = &VTableOf::<Out, P>::VTABLE;
        let locked = self.lock();
        // SAFETY: we hold the lock.
        let inline = self.bump(unsafe { self.state() }, vtable.layout);
        let (locked, (header, spot), heap) = match inline {
            Some(room) => (locked, room, false),
            None => {
                // Allocate without holding the lock.
                drop(locked);
                let Some(room) = spill(vtable.layout) else {
                    return Err(payload);
                };
                (self.lock(), room, true)
            }
        };
        // SAFETY: `bump`/`spill` returned fresh, suitably aligned, writable
        // memory for a header and for a `P`, owned by this slab; we hold the
        // lock to link the entry.
        unsafe {
            spot.cast::<P>().write(payload);
            header.write(Header {
                vtable,
                payload: spot,
                prev: ptr::null_mut(),
                next: ptr::null_mut(),
                #[cfg(feature = "alloc")]
                heap,
            });
            self.state().armed.push_back(header);
        }
        #[cfg(not(feature = "alloc"))]
        let _ = heap;
        drop(locked);
        Ok(Entry(header))
    }

    /// Room for a header and a payload of `layout` in the inline bytes.
    fn bump(self, state: &mut State, layout: Layout) -> Option<(*mut Header, *mut u8)> {
        if layout.align() > INLINE_ALIGN {
            return None;
        }
        let header_at = state.used.checked_next_multiple_of(align_of::<Header>())?;
        let payload_at =
            (header_at + size_of::<Header>()).checked_next_multiple_of(layout.align())?;
        let end = payload_at.checked_add(layout.size())?;
        if end > self.core().cap {
            return None;
        }
        state.used = end;
        let base = self.base();
        // SAFETY: both offsets are within the `cap` bytes at `base` (checked
        // above), and aligned because `base` is `INLINE_ALIGN`-aligned.
        unsafe { Some((base.add(header_at).cast(), base.add(payload_at))) }
    }

    /// Defuses an armed entry: unlinks it and writes what was deferred
    /// (its payload's `Taken`) to `dst`.
    ///
    /// # Safety
    /// `entry` was returned by [`push`](Self::push) on this slab, is still
    /// armed (cleanup has not begun), this is its only take, and `dst` is
    /// valid for a write of the payload's `Taken` type.
    unsafe fn take_into(self, entry: Entry, dst: *mut ()) {
        {
            let _locked = self.lock();
            // SAFETY: we hold the lock; the entry is armed (caller).
            unsafe { self.state().armed.unlink(entry.0) };
        }
        // SAFETY: the entry is off every list, so its payload is ours; `dst`
        // is writable (caller). The block is freed even if the take panics.
        unsafe {
            let _free = FreeOnDrop(entry);
            (entry.vtable().take)(entry.payload(), dst);
        }
    }

    /// Defuses an armed entry whose payload's `Taken` is `X`, returning it.
    ///
    /// # Safety
    /// As [`take_into`](Self::take_into), with `X` the payload's `Taken`
    /// type.
    pub(crate) unsafe fn take_erased<X>(self, entry: Entry) -> X {
        let mut dst = MaybeUninit::<X>::uninit();
        // SAFETY: as the caller guarantees; `dst` is valid for a write of `X`.
        unsafe {
            self.take_into(entry, dst.as_mut_ptr().cast());
            dst.assume_init()
        }
    }

    /// The same slab with its lifetime erased, for the handle and the
    /// ambient thread-local.
    ///
    /// # Safety
    /// The caller makes sure the copy is not used after the slab is gone.
    pub(crate) unsafe fn detach(self) -> RawSlab<'static> {
        // SAFETY: only the lifetime changes; the caller keeps it honest.
        unsafe { core::mem::transmute::<RawSlab<'a>, RawSlab<'static>>(self) }
    }

    /// Unlinks the next armed entry to finish, in LIFO or FIFO order. The
    /// caller owns it: it must run, start, drop or box it, then free it.
    ///
    /// # Safety
    /// The caller has the slab to itself (cleanup).
    pub(crate) unsafe fn pop_armed(self, lifo: bool) -> Option<Entry> {
        // SAFETY: exclusive access (caller).
        unsafe { self.state().armed.pop(lifo) }
    }

    /// Whether any entry is armed or running.
    ///
    /// # Safety
    /// The caller has the slab to itself (cleanup).
    pub(crate) unsafe fn is_empty(self) -> bool {
        // SAFETY: exclusive access (caller).
        let state = unsafe { self.state() };
        state.armed.is_empty() && state.running.is_empty()
    }

    /// Puts an unlinked async entry that has been polled on the running list.
    ///
    /// # Safety
    /// Exclusive access; `entry` is owned by the caller and on no list.
    pub(crate) unsafe fn park_running(self, entry: Entry) {
        // SAFETY: exclusive access and ownership (caller).
        unsafe { self.state().running.push_back(entry.0) }
    }

    /// Unlinks a running entry (it finished, or is being dropped).
    ///
    /// # Safety
    /// Exclusive access; `entry` is on the running list.
    pub(crate) unsafe fn unpark_running(self, entry: Entry) {
        // SAFETY: as the caller guarantees.
        unsafe { self.state().running.unlink(entry.0) }
    }

    /// The running entries, oldest first (a snapshot: the caller may unlink
    /// the entry it was just given).
    ///
    /// # Safety
    /// Exclusive access for as long as the iterator is used.
    pub(crate) unsafe fn running(self) -> impl Iterator<Item = Entry> + 'a {
        // SAFETY: exclusive access (caller).
        let mut next = unsafe { self.state().running.head };
        core::iter::from_fn(move || {
            let e = NonNull::new(next)?.as_ptr();
            // SAFETY: `e` is on the running list, so a valid header; we read
            // its successor before the caller may unlink it.
            next = unsafe { (*e).next };
            Some(Entry(e))
        })
    }
}

impl Entry {
    fn vtable(self) -> &'static EntryVTable {
        // SAFETY: an `Entry` always points to a valid header.
        unsafe { (*self.0).vtable }
    }

    /// Runs a sync payload (consuming it) and frees the entry.
    ///
    /// # Safety
    /// The caller owns the entry (unlinked it), its payload is initialised
    /// and sync, and `out` is null or a `*mut Out` of the slab's `Out`.
    pub(crate) unsafe fn run(self, out: *mut ()) {
        // SAFETY: as the caller guarantees; the block is freed even if the
        // thunk panics, after the payload was moved out of it.
        unsafe {
            let _free = FreeOnDrop(self);
            (self.vtable().run)(self.payload(), out);
        }
    }

    /// Polls an async payload in place. Does not free the entry.
    ///
    /// # Safety
    /// The caller owns the entry (or it is on the running list and the
    /// caller has the slab to itself), the payload is initialised and async,
    /// `out` as for [`run`](Self::run).
    pub(crate) unsafe fn poll(self, cx: &mut Context<'_>, out: *mut ()) -> Poll<()> {
        // SAFETY: as the caller guarantees.
        unsafe { (self.vtable().poll)(self.payload(), cx, out) }
    }

    /// Drops the payload in place and frees the entry.
    ///
    /// # Safety
    /// The caller owns the entry and its payload is initialised.
    pub(crate) unsafe fn drop_payload(self) {
        // SAFETY: as the caller guarantees; the block is freed even if the
        // destructor panics.
        unsafe {
            let _free = FreeOnDrop(self);
            (self.vtable().drop)(self.payload());
        }
    }

    /// Moves an async payload that never started into a box (for a cancel
    /// handler) and frees the entry. `None` for a sync payload, which is
    /// then consumed: the caller must not use it.
    ///
    /// # Safety
    /// The caller owns the entry, its payload is initialised and was never
    /// polled.
    #[cfg(feature = "alloc")]
    pub(crate) unsafe fn into_boxed(self) -> Option<BoxedThunk> {
        let mut dst = MaybeUninit::<Option<BoxedThunk>>::uninit();
        // SAFETY: as the caller guarantees; `dst` is writable.
        unsafe {
            let _free = FreeOnDrop(self);
            (self.vtable().boxed)(self.payload(), dst.as_mut_ptr().cast());
            dst.assume_init()
        }
    }
}

/// Frees a spilled entry's heap block when dropped (no-op for inline ones).
struct FreeOnDrop(Entry);

impl Drop for FreeOnDrop {
    fn drop(&mut self) {
        #[cfg(feature = "alloc")]
        {
            let header = self.0.0;
            // SAFETY: the owner handed us a valid header whose payload is
            // gone; a spilled block was allocated by `spill` with exactly
            // this layout, and nothing points into it any more.
            unsafe {
                if (*header).heap {
                    let (layout, _) = block_layout((*header).vtable.layout);
                    alloc::alloc::dealloc(header.cast(), layout);
                }
            }
        }
        #[cfg(not(feature = "alloc"))]
        let _ = self.0;
    }
}

/// The heap block of a spilled entry, and the payload's offset in it.
#[cfg(feature = "alloc")]
fn block_layout(payload: Layout) -> (Layout, usize) {
    Layout::new::<Header>()
        .extend(payload)
        .expect("deferred thunk too large to allocate")
}

/// A heap block for a header and a payload of `layout`.
#[cfg(feature = "alloc")]
fn spill(payload: Layout) -> Option<(*mut Header, *mut u8)> {
    let (layout, offset) = block_layout(payload);
    // SAFETY: `layout` has non-zero size (it contains a `Header`).
    let block = unsafe { alloc::alloc::alloc(layout) };
    if block.is_null() {
        alloc::alloc::handle_alloc_error(layout);
    }
    // SAFETY: `offset` is within the block (from `Layout::extend`).
    Some((block.cast(), unsafe { block.add(offset) }))
}

#[cfg(not(feature = "alloc"))]
fn spill(_payload: Layout) -> Option<(*mut Header, *mut u8)> {
    None
}

impl Drop for SlabCore {
    fn drop(&mut self) {
        // A scope finishes or cancels every entry itself; this is the last
        // line of defence (a scope leaked mid-cleanup by a panic that
        // escaped, say): drop whatever is left, unlinking first.
        drain(self.state.get_mut());
    }
}

/// Drops every entry left, unlinking each first; if a destructor panics, the
/// rest are still dropped while unwinding (a second panic aborts).
fn drain(state: &mut State) {
    struct KeepDraining<'a>(&'a mut State);
    impl Drop for KeepDraining<'_> {
        fn drop(&mut self) {
            drain(self.0);
        }
    }
    loop {
        let Some(e) = state.running.pop(true).or_else(|| state.armed.pop(true)) else {
            return;
        };
        let guard = KeepDraining(state);
        // SAFETY: we own the whole slab (`&mut`), the entry is unlinked and
        // its payload initialised.
        unsafe { e.drop_payload() };
        core::mem::forget(guard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicUsize;

    struct Count<'a>(&'a AtomicUsize);
    impl Drop for Count<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    struct Sync<F>(F);
    impl<F: FnOnce() + Send> Payload<()> for Sync<F> {
        type Taken = F;
        const ASYNC: bool = false;
        fn run(self, _: Option<&mut ()>) {
            (self.0)()
        }
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>, _: Option<&mut ()>) -> Poll<()> {
            unreachable!()
        }
        fn take(self) -> F {
            self.0
        }
        #[cfg(feature = "alloc")]
        fn into_boxed(self) -> Result<BoxedThunk, Self> {
            Err(self)
        }
    }

    #[test]
    fn lifo_and_fifo_pop_in_registration_order() {
        let slab = core::pin::pin!(Slab::<256>::new());
        let raw = slab.as_ref().raw();
        let entries: [Entry; 3] = core::array::from_fn(|i| {
            raw.push::<(), _>(Sync(move || ()))
                .ok()
                .unwrap_or_else(|| panic!("fits {i}"))
        });
        // SAFETY: exclusive use in this test.
        unsafe {
            assert_eq!(raw.pop_armed(true), Some(entries[2]));
            assert_eq!(raw.pop_armed(false), Some(entries[0]));
            assert_eq!(raw.pop_armed(true), Some(entries[1]));
            assert_eq!(raw.pop_armed(true), None);
            for e in entries {
                e.run(ptr::null_mut());
            }
        }
    }

    #[test]
    fn payloads_are_aligned_and_full_hands_back() {
        #[repr(align(16))]
        struct Big([u8; 40]);
        let slab = core::pin::pin!(Slab::<128>::new());
        let raw = slab.as_ref().raw();
        let big = Big([7; 40]);
        // Move `big` whole: a closure using only `big.0` would capture just
        // that (align 1) field.
        let e = raw
            .push::<(), _>(Sync(move || {
                let big = big;
                assert_eq!(big.0[39], 7)
            }))
            .ok()
            .unwrap();
        assert_eq!(e.payload().addr() % 16, 0);
        let second = Big([1; 40]);
        let r = raw.push::<(), _>(Sync(move || {
            let second = second;
            assert_eq!(second.0[0], 1)
        }));
        #[cfg(not(feature = "alloc"))]
        assert!(
            r.is_err(),
            "128 bytes hold one 40-byte payload and its header, not two"
        );
        #[cfg(feature = "alloc")]
        assert!(r.is_ok(), "with alloc a full slab spills");
    }

    #[test]
    fn dropping_a_slab_drops_unfinished_payloads_once() {
        let drops = AtomicUsize::new(0);
        {
            let slab = core::pin::pin!(Slab::<512>::new());
            let raw = slab.as_ref().raw();
            for _ in 0..20 {
                let c = Count(&drops);
                let _ = raw.push::<(), _>(Sync(move || drop(c)));
            }
        }
        assert_eq!(drops.load(Ordering::Relaxed), 20);
    }

    #[test]
    #[cfg(feature = "std")]
    fn a_panicking_destructor_does_not_stop_the_drain() {
        extern crate std;
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Loud(bool);
        impl Drop for Loud {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::Relaxed);
                if self.0 {
                    panic!("loud");
                }
            }
        }
        let result = std::panic::catch_unwind(|| {
            let slab = core::pin::pin!(Slab::<1024>::new());
            let raw = slab.as_ref().raw();
            for i in 0..5 {
                let loud = Loud(i == 3); // dropped second (drain is LIFO)
                let _ = raw.push::<(), _>(Sync(move || drop(loud)));
            }
        });
        assert!(result.is_err());
        assert_eq!(
            DROPS.load(Ordering::Relaxed),
            5,
            "every payload dropped once"
        );
    }
}
