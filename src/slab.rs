//! Inline, const-generic, type-erased storage of deferred thunks: the unsafe
//! heart of [`DeferScope`](crate::DeferScope).
//!
//! # How it works
//!
//! A [`Slab<K, N>`] is `N` bytes of 16-aligned inline storage behind a small
//! [`SlabCore`]. Registering a thunk ("an entry") bump-allocates a two-word
//! [`Header`] followed by the thunk itself (its "payload": a closure, a
//! future, a guarded value with its cleanup). The header holds a
//! `&'static` [`EntryVTable`] of monomorphised functions that know the
//! payload's type (run it, poll it, drop it, take it back), and a pointer to
//! the entry registered before it: the entries form a singly linked chain,
//! newest first, so LIFO cleanup simply walks it; FIFO and concurrent
//! cleanup reverse it once, in place, when cleanup starts.
//!
//! An entry is *live* while its vtable pointer is set. Whoever clears it
//! owns the payload and must run, drop or take it exactly once: clearing
//! comes first (the heapless `truncate` rule), so a payload that panics can
//! never be touched again. Cancelling a registration is clearing its vtable
//! and taking the payload back; the entry stays in the chain and cleanup
//! skips it. If it was the newest entry its bytes are given back to the bump
//! allocator (and so are those of older cleared entries that become the
//! newest), so a loop that registers and cancels never fills the slab.
//!
//! The bump allocator works on addresses, not offsets: it starts when the
//! scope is first polled ([`SlabCore::init`]), when its address is final, so
//! any alignment fits. When the inline bytes cannot hold an entry it is
//! refused and handed back — or, with `alloc`, the allocator moves to a heap
//! chunk (the first of at least 256 bytes, each next one twice as big), so N
//! registrations past the inline bytes make O(log N) allocations. Entries
//! never move once registered: an async payload is polled where it lies.
//!
//! # Sharing
//!
//! The body lends the handle (`&Defer`, which *is* the core) to anything it
//! likes, so every field is a `Cell` and nothing ever makes a `&mut` to the
//! slab. For `scope` the handle is `Sync` (a body that holds it across
//! `.await` stays `Send`), so registrations and cancellations are serialised
//! by a one-word spin lock held for a few pointer writes; `scope_local`'s
//! handle is `!Sync` and skips it ([`Flavour::LOCKS`]). Cleanup runs after the
//! body (and with it every handle, token and guard) is gone, so it has the
//! slab to itself.

use core::alloc::Layout;
use core::cell::{Cell, UnsafeCell};
use core::marker::{PhantomData, PhantomPinned};
use core::mem::{MaybeUninit, align_of, size_of};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use crate::exit::{End, Exit, ExitKind};
use crate::sync::{AtomicBool, Ordering};

/// What a scope's thunks may hold; sealed. Implemented by
/// [`Sendable`](crate::Sendable) (`scope`) and [`Local`](crate::Local)
/// (`scope_local`).
///
/// ```
/// use deferral::{Defer, Flavour};
/// // Code that registers cleanup on either kind of scope.
/// fn log_on_exit<K: Flavour>(d: &Defer<(), K>) {
///     let _ = d.len();
/// }
/// # futures::executor::block_on(deferral::scope(async |d| log_on_exit(d)));
/// ```
pub trait Flavour: sealed::Sealed {
    /// Registrations go through the slab's lock (the handle is `Sync`).
    #[doc(hidden)]
    const LOCKS: bool;
    /// Every payload is `Send + 'static`: a cancelled scope may hand its
    /// async cleanup over to run elsewhere.
    #[doc(hidden)]
    const SENDABLE: bool;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A payload of the slab: something deferred, with a way to finish it.
///
/// `Out` is the scope's output type. Every method gets the scope's
/// [`Ending`]: how the body ended, and its output if it returned.
pub(crate) trait Payload<Out>: Sized {
    /// What [`take`](Self::take) hands back when an entry is defused.
    type Taken;
    /// Async payloads are polled; sync ones run once.
    const ASYNC: bool;
    /// A guarded value the body may be using through a [`Guard`](crate::Guard):
    /// only its guard may take it (never `Defer::clear` or `move_all`).
    const GUARDED: bool = false;
    /// It reads the scope's typed exit ([`Ending::exit`]): it cannot run
    /// anywhere but in its own scope (never moved to a `DeferStack`).
    const TYPED: bool = true;
    /// `thunk::Tokened`: the payload starts with its ambient token's id.
    const TOKENED: bool = false;

    /// Runs a sync payload to completion. Never called for async payloads.
    fn run(self, end: Ending<'_, Out>);

    /// Polls an async payload. Never called for sync payloads.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, end: Ending<'_, Out>) -> Poll<()>;

    /// Defuses a payload that has not started: hands back what was deferred.
    fn take(self) -> Self::Taken;
}

/// How a scope's body ended, as a payload gets it: the scope's
/// [`Exit<Out>`] behind an untyped [`End`].
///
/// The ambient API registers payloads typed for the output `()` on scopes
/// of any output type: those payloads only ever call [`kind`](Self::kind)
/// and [`is_unwinding`](Self::is_unwinding), never [`exit`](Self::exit)
/// (see `thunk.rs`).
pub(crate) struct Ending<'a, Out> {
    end: &'a End,
    _out: PhantomData<fn(Out) -> Out>,
}

impl<'a, Out> Ending<'a, Out> {
    /// # Safety
    /// `end` is the end of an `Exit<Out>` (or of any `Exit`, if the payload
    /// never calls `exit`), valid for `'a` and used by nobody else meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn new(end: &'a End) -> Self {
        Ending {
            end,
            _out: PhantomData,
        }
    }

    #[inline(always)]
    pub(crate) fn kind(&self) -> ExitKind {
        self.end.kind()
    }

    #[inline(always)]
    pub(crate) fn is_unwinding(&self) -> bool {
        self.end.is_unwinding()
    }

    /// The whole exit, output included. Never called by a payload the
    /// ambient API registers.
    #[inline(always)]
    pub(crate) fn exit(&mut self) -> &mut Exit<Out> {
        // SAFETY: an `Exit<Out>` for every payload that calls this, ours
        // alone while `self` is borrowed (`new`).
        unsafe { self.end.exit::<Out>() }
    }

    /// A shorter-lived copy, to pass on.
    #[inline(always)]
    pub(crate) fn reborrow(&mut self) -> Ending<'_, Out> {
        Ending {
            end: self.end,
            _out: PhantomData,
        }
    }
}

/// The monomorphised functions of one payload type. Each takes the
/// entry's *header* and finds the payload after it itself: the payload's
/// alignment is then a compile-time constant.
pub(crate) struct EntryVTable {
    layout: Layout,
    is_async: bool,
    /// `Payload::GUARDED`.
    guarded: bool,
    /// `!Payload::TYPED`: runs with any exit (movable to a `DeferStack`).
    portable: bool,
    /// An ambient registration with a token: its payload starts with its
    /// `u64` id (`thunk::Tokened`).
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) tokened: bool,
    /// Reads the payload out and runs it. `end` is the scope's
    /// `Exit<Out>`.
    run: unsafe fn(header: *mut Header, end: &End),
    /// Polls the pinned payload in place.
    poll: unsafe fn(header: *mut Header, cx: &mut Context<'_>, end: Option<&End>) -> Poll<()>,
    /// Drops the payload in place.
    drop: unsafe fn(header: *mut Header),
    /// The payload's address (to move a never-polled payload elsewhere).
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    payload: unsafe fn(header: *mut Header) -> *mut u8,
}

impl EntryVTable {
    pub(crate) fn is_async(&self) -> bool {
        self.is_async
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether the payload may run with any exit (see `Payload::TYPED`).
    pub(crate) fn is_portable(&self) -> bool {
        self.portable
    }

    /// Where the payload of an entry headed at `header` starts.
    pub(crate) fn payload_at(&self, header: *mut Header) -> *mut u8 {
        // SAFETY: `payload_of` only computes an address.
        unsafe { (self.payload)(header) }
    }

    /// Polls the payload of an entry polled away from its scope (it sees a
    /// cancelled exit).
    ///
    /// # Safety
    /// `header` heads a live async payload of this vtable, pinned there,
    /// exclusively the caller's.
    pub(crate) unsafe fn poll_alone(&self, header: *mut Header, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: as the caller guarantees.
        unsafe { (self.poll)(header, cx, None) }
    }

    /// Runs a sync payload (consuming it) with `end`.
    ///
    /// # Safety
    /// `header` heads a live sync payload of this vtable, the caller's to
    /// give up; `end` as for [`Ending::new`].
    pub(crate) unsafe fn run_at(&self, header: *mut Header, end: &End) {
        // SAFETY: as the caller guarantees.
        unsafe { (self.run)(header, end) }
    }

    /// Polls an async payload with `end`.
    ///
    /// # Safety
    /// As [`poll_alone`](Self::poll_alone); `end` as for [`Ending::new`].
    pub(crate) unsafe fn poll_at(
        &self,
        header: *mut Header,
        cx: &mut Context<'_>,
        end: &End,
    ) -> Poll<()> {
        // SAFETY: as the caller guarantees.
        unsafe { (self.poll)(header, cx, Some(end)) }
    }

    /// Drops the payload in place.
    ///
    /// # Safety
    /// `header` heads a live payload of this vtable, the caller's to give
    /// up.
    pub(crate) unsafe fn drop_at(&self, header: *mut Header) {
        // SAFETY: as the caller guarantees.
        unsafe { (self.drop)(header) }
    }
}

/// The vtable of payload type `P` in a scope of output `Out`.
pub(crate) fn vtable_of<Out, P: Payload<Out>>() -> &'static EntryVTable {
    &VTableOf::<Out, P>::VTABLE
}

struct VTableOf<Out, P>(PhantomData<(fn(Out), P)>);

impl<Out, P: Payload<Out>> VTableOf<Out, P> {
    const VTABLE: EntryVTable = EntryVTable {
        layout: Layout::new::<P>(),
        is_async: P::ASYNC,
        guarded: P::GUARDED,
        portable: !P::TYPED,
        tokened: P::TOKENED,
        // The function of the other kind is never called: one shared stub
        // instead of one per payload type (flash).
        run: if P::ASYNC {
            not_sync
        } else {
            run_payload::<Out, P>
        },
        poll: if P::ASYNC {
            poll_payload::<Out, P>
        } else {
            not_async
        },
        drop: drop_payload::<P>,
        payload: payload_of::<P>,
    };
}

/// Where a `P` starts after its header: right after it, rounded up to
/// `P`'s alignment (a constant: no padding at all when `P` is aligned no
/// more than a header).
#[inline(always)]
pub(crate) fn payload_of<P>(header: *mut Header) -> *mut u8 {
    let after = header.cast::<u8>().wrapping_add(size_of::<Header>());
    if align_of::<P>() <= align_of::<Header>() {
        return after; // headers are placed at header alignment
    }
    let pad = after.addr().wrapping_neg() & (align_of::<P>() - 1);
    after.wrapping_add(pad)
}

/// # Safety
/// `header` heads a live `P` that the caller owns and gives up; `end` is
/// the scope's `Exit<Out>`, as for [`Ending::new`].
unsafe fn run_payload<Out, P: Payload<Out>>(header: *mut Header, end: &End) {
    // SAFETY: the caller owns the payload and never touches it again.
    let p = unsafe { payload_of::<P>(header).cast::<P>().read() };
    // SAFETY: guaranteed by the caller.
    p.run(unsafe { Ending::new(end) });
}

/// # Safety
/// `header` heads a live `P` pinned where it is; `end` as for
/// [`run_payload`], or `None` for a thunk polled away from its scope
/// (handed over after a cancellation: it sees a cancelled exit).
unsafe fn poll_payload<Out, P: Payload<Out>>(
    header: *mut Header,
    cx: &mut Context<'_>,
    end: Option<&End>,
) -> Poll<()> {
    // SAFETY: the payload is initialised, exclusively ours for this call,
    // and never moved (entries do not move once registered).
    let p = unsafe { Pin::new_unchecked(&mut *payload_of::<P>(header).cast::<P>()) };
    let Some(end) = end else {
        let mut alone = Exit::<Out>::cancelled();
        // SAFETY: a real `Exit<Out>`, ours for the call.
        let end = unsafe { End::of(NonNull::from(&mut alone)) };
        // SAFETY: as above.
        return p.poll(cx, unsafe { Ending::new(&end) });
    };
    // SAFETY: guaranteed by the caller.
    p.poll(cx, unsafe { Ending::new(end) })
}

/// # Safety
/// `header` heads a live `P` that the caller owns and gives up.
unsafe fn drop_payload<P>(header: *mut Header) {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr::drop_in_place(payload_of::<P>(header).cast::<P>()) }
}

/// The `run` of async payloads.
unsafe fn not_sync(_: *mut Header, _: &End) {
    unreachable!("deferral: an async thunk was run as a sync one")
}

/// The `poll` of sync payloads.
unsafe fn not_async(_: *mut Header, _: &mut Context<'_>, _: Option<&End>) -> Poll<()> {
    unreachable!("deferral: a sync thunk was polled")
}

/// How a token takes its payload back. Not in the vtable: only a token that
/// is actually cancelled links it.
pub(crate) type TakeFn = unsafe fn(header: *mut Header, dst: *mut ());

/// # Safety
/// As [`run_payload`]; `dst` points to writable `MaybeUninit<P::Taken>`.
pub(crate) unsafe fn take_payload<Out, P: Payload<Out>>(header: *mut Header, dst: *mut ()) {
    // SAFETY: the caller owns the payload and never touches it again.
    let p = unsafe { payload_of::<P>(header).cast::<P>().read() };
    let taken = p.take();
    // SAFETY: `dst` is valid for a write of `P::Taken` (caller).
    unsafe { dst.cast::<P::Taken>().write(taken) }
}

/// The bookkeeping in front of every payload: two words.
pub(crate) struct Header {
    /// `None` once the entry finished, was cancelled, or is being run.
    vtable: Option<&'static EntryVTable>,
    /// The entry registered before this one (after it, once cleanup
    /// reversed the chain for FIFO or concurrent order).
    link: *mut Header,
}

impl Header {
    /// The vtable of a live entry.
    ///
    /// # Safety
    /// The entry is live (its vtable is set).
    pub(crate) unsafe fn vtable_unchecked(&self) -> &'static EntryVTable {
        // SAFETY: as the caller guarantees.
        unsafe { self.vtable.unwrap_unchecked() }
    }
}

/// A registered entry: a pointer to its header. Its payload follows the
/// header, aligned for the payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry(NonNull<Header>);

impl Entry {
    #[inline(always)]
    fn vtable(self) -> Option<&'static EntryVTable> {
        // SAFETY: an `Entry` always points to a valid header; its fields
        // are only written by whoever holds the lock or has the slab to
        // itself, which is our caller.
        unsafe { (*self.0.as_ptr()).vtable }
    }

    #[inline(always)]
    fn link(self) -> *mut Header {
        // SAFETY: as in `vtable`.
        unsafe { (*self.0.as_ptr()).link }
    }
}

/// A heap chunk of spilled entries (`alloc`): this header, then bytes.
#[cfg(feature = "alloc")]
struct Chunk {
    prev: *mut Chunk,
    layout: Layout,
}

/// The part of a [`Slab`] that does not depend on `N`; also what a handle
/// points to.
#[repr(C)]
pub(crate) struct SlabCore<K> {
    /// The newest entry.
    top: Cell<*mut Header>,
    /// Bump allocator: next free byte, end of the current region, and its
    /// start (to know whether the newest entry can give its bytes back).
    ///
    /// Uninitialised until [`Slab::init`]: nothing can push before it (the
    /// handle is made after it, and the ambient scope is published only
    /// while the body is polled), so a fresh scope writes only `top`, `lock`
    /// and `chunks`.
    cursor: Cell<MaybeUninit<*mut u8>>,
    limit: Cell<MaybeUninit<*mut u8>>,
    region: Cell<MaybeUninit<*mut u8>>,
    /// Serialises registrations and cancellations when `K::LOCKS`.
    lock: AtomicBool,
    /// How many times `clear` (or `move_all`) removed registrations whose
    /// tokens may still exist: a token remembers it and, if it changed,
    /// never touches its entry (whose bytes may hold another one now).
    /// Saturates: from then on removed entries keep their bytes (see
    /// [`Clears`]). In the lock's padding (no bytes of its own).
    pub(crate) clears: Cell<Clears>,
    /// Spilled chunks, newest first (`alloc`).
    #[cfg(feature = "alloc")]
    chunks: Cell<*mut Chunk>,
    _flavour: PhantomData<K>,
}

// SAFETY: the slab owns its payloads. With a `Send` flavour (`Sendable`)
// every payload is `Send` (the registration bounds guarantee it), and its
// raw pointers point only into memory it owns (its bytes, its chunks).
unsafe impl<K: Flavour + Send> Send for SlabCore<K> {}
// SAFETY: with a `Sync` flavour (`Sendable`, whose `LOCKS` is true) shared
// access only changes the chain under the lock, a payload is only touched by
// whoever claimed it or by the guard that owns it, and payloads are `Send`.
unsafe impl<K: Flavour + Sync> Sync for SlabCore<K> {}

/// The `clears` counter: as wide as fits in the padding after the lock.
#[cfg(target_pointer_width = "64")]
pub(crate) type Clears = u32;
#[cfg(not(target_pointer_width = "64"))]
pub(crate) type Clears = u16;

#[repr(C, align(16))]
struct Bytes<const N: usize>([MaybeUninit<u8>; N]);

/// `N` bytes of inline storage for deferred thunks. See the module docs.
///
/// `!Unpin`: entries point into the bytes, so the slab must not move once
/// started, and the drop glue's `&mut Slab` must not claim unique access to
/// bytes those pointers still reach (Stacked Borrows skips that claim for
/// `!Unpin` types).
#[repr(C)]
pub(crate) struct Slab<K, const N: usize> {
    core: SlabCore<K>,
    bytes: UnsafeCell<Bytes<N>>,
    _pinned: PhantomPinned,
}

impl<K: Flavour, const N: usize> Slab<K, N> {
    /// An empty slab; [`Slab::init`] starts its allocator. (Not `const`:
    /// loom's atomics cannot be made in a `const fn`, and nothing needs it.)
    pub(crate) fn new() -> Self {
        Slab {
            core: SlabCore {
                top: Cell::new(ptr::null_mut()),
                cursor: Cell::new(MaybeUninit::uninit()),
                limit: Cell::new(MaybeUninit::uninit()),
                region: Cell::new(MaybeUninit::uninit()),
                lock: AtomicBool::new(false),
                clears: Cell::new(0),
                #[cfg(feature = "alloc")]
                chunks: Cell::new(ptr::null_mut()),
                _flavour: PhantomData,
            },
            bytes: UnsafeCell::new(Bytes([MaybeUninit::uninit(); N])),
            _pinned: PhantomPinned,
        }
    }

    /// Points the bump allocator at the inline bytes.
    ///
    /// # Safety
    /// `this` points to a slab that will not move again (it is pinned) and
    /// carries provenance over all of it; called once, before any push.
    pub(crate) unsafe fn init(this: *mut Self) {
        // SAFETY: `this` is valid (caller); `addr_of_mut!` makes no
        // reference, so the pointer keeps `this`'s provenance.
        unsafe {
            let bytes = ptr::addr_of_mut!((*this).bytes).cast::<u8>();
            let core = &(*this).core;
            core.region.set(MaybeUninit::new(bytes));
            core.cursor.set(MaybeUninit::new(bytes));
            core.limit.set(MaybeUninit::new(bytes.add(N)));
        }
    }

    pub(crate) fn core(&self) -> &SlabCore<K> {
        &self.core
    }
}

/// Releases the slab lock when dropped (also on unwind).
struct Locked<'a>(Option<&'a AtomicBool>);

impl Drop for Locked<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(lock) = self.0 {
            // ORDERING: `Release` publishes our writes to the chain and the
            // payload to the next `Acquire` of the lock.
            lock.store(false, Ordering::Release);
        }
    }
}

impl<K: Flavour> SlabCore<K> {
    /// The bump allocator's next free byte.
    #[inline(always)]
    fn cursor(&self) -> *mut u8 {
        // SAFETY: only called on the push path, after `Slab::init` (see the
        // field's docs).
        unsafe { self.cursor.get().assume_init() }
    }

    #[inline(always)]
    fn limit(&self) -> *mut u8 {
        // SAFETY: as in `cursor`.
        unsafe { self.limit.get().assume_init() }
    }

    #[inline(always)]
    fn lock(&self) -> Locked<'_> {
        if !K::LOCKS {
            return Locked(None);
        }
        // ORDERING: `Acquire` pairs with the `Release` in `Locked::drop`, so
        // we see every change made under the lock before us.
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        Locked(Some(&self.lock))
    }

    /// Registers `payload`; hands it back when the slab is full (only
    /// without `alloc`) or not started yet. With `std`, a payload registered
    /// while a context variable is set is wrapped so that it runs in that
    /// context (`InContext`, payload first: the entry's payload address is
    /// the same); in the empty context nothing is captured or wrapped
    /// (cleanup runs isolated from the context of its poll).
    /// Returns the entry, its payload's address and how to take it back.
    #[inline(always)]
    pub(crate) fn push<Out, P: Payload<Out>>(
        &self,
        payload: P,
    ) -> Result<(Entry, *mut u8, TakeFn), P> {
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

    #[inline(always)]
    fn push_raw<Out, P: Payload<Out>>(&self, payload: P) -> Result<(Entry, *mut u8, TakeFn), P> {
        let vtable: &'static EntryVTable = &VTableOf::<Out, P>::VTABLE;
        let locked = self.lock();
        let Some(header) = self.bump(vtable.layout) else {
            drop(locked);
            return Err(payload);
        };
        // SAFETY: `bump` returned fresh, aligned, writable memory for a
        // header and a `P` after it, owned by this slab; we hold the lock
        // (or the flavour needs none) to link the entry.
        unsafe {
            payload_of::<P>(header).cast::<P>().write(payload);
            header.write(Header {
                vtable: Some(vtable),
                link: self.top.get(),
            });
        }
        self.top.set(header);
        drop(locked);
        // SAFETY: `header` is non-null (inside our bytes or a chunk).
        let entry = Entry(unsafe { NonNull::new_unchecked(header) });
        Ok((entry, payload_of::<P>(header), take_payload::<Out, P>))
    }

    /// Room for a header and a payload of `layout`.
    #[inline(always)]
    fn bump(&self, layout: Layout) -> Option<*mut Header> {
        if self.aligned_enough(layout) {
            if let Some((header, end)) = fit(self.cursor(), self.limit(), layout) {
                self.cursor.set(MaybeUninit::new(end));
                return Some(header);
            }
        }
        #[cfg(feature = "alloc")]
        return Some(self.spill(layout)); // never `None`: the callers' `Full` arm is dead code
        #[cfg(not(feature = "alloc"))]
        None
    }

    /// Whether the current region promises `layout`'s alignment. `fit`
    /// pads by address, which is all an over-aligned payload needs in the
    /// inline bytes (they are where the scope lives: no allocation to ask);
    /// a heap chunk, though, must have been *allocated* with that
    /// alignment, or the payload's alignment rests on where the allocator
    /// happened to put the chunk (Miri's symbolic alignment check rejects
    /// that). Compile-time `true` for every payload aligned to 16 or less
    /// (chunks are at least 16-aligned): no cost on the common path.
    #[inline(always)]
    fn aligned_enough(&self, layout: Layout) -> bool {
        #[cfg(feature = "alloc")]
        if layout.align() > 16 {
            let chunk = self.chunks.get();
            // SAFETY: a non-null `chunks` is our current chunk, alive.
            return chunk.is_null() || layout.align() <= unsafe { (*chunk).layout.align() };
        }
        let _ = layout;
        true
    }

    /// Moves the allocator to a new heap chunk big enough for `layout`.
    #[cfg(feature = "alloc")]
    #[cold]
    fn spill(&self, layout: Layout) -> *mut Header {
        let previous = self.chunks.get();
        let previous_size = if previous.is_null() {
            0
        } else {
            // SAFETY: our own chunk.
            unsafe { (*previous).layout.size() }
        };
        let need = size_of::<Chunk>()
            + align_of::<Header>()
            + size_of::<Header>()
            + layout.align()
            + layout.size();
        let size = need.max(256).max(previous_size.saturating_mul(2));
        let align = layout.align().max(align_of::<Chunk>()).max(16);
        // Overflows only for a payload near `isize::MAX` bytes: like
        // `Vec::push`, a panic ("capacity overflow"), never a `Full`.
        let chunk_layout = Layout::from_size_align(size, align).expect("capacity overflow");
        // SAFETY: `chunk_layout` has a non-zero size.
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
        let start = chunk.cast::<u8>().wrapping_add(size_of::<Chunk>());
        let end = chunk.cast::<u8>().wrapping_add(size);
        self.region.set(MaybeUninit::new(start));
        let (header, cursor) =
            fit(start, end, layout).expect("a chunk is sized for its first entry");
        self.cursor.set(MaybeUninit::new(cursor));
        self.limit.set(MaybeUninit::new(end));
        header
    }

    /// The `clears` count a token made now remembers.
    #[inline(always)]
    pub(crate) fn clears(&self) -> Clears {
        self.clears.get()
    }

    /// Defuses a live entry and writes what was deferred (its payload's
    /// `Taken`) to `dst`; if it was the newest entry, its bytes become free
    /// again. `clears` is what the token remembered (`None` for a guard,
    /// whose entry is never cleared): if registrations were cleared since,
    /// the entry may be gone, and nothing is touched: `false`.
    ///
    /// # Safety
    /// `entry` was returned by [`push`](Self::push) on this slab, this is
    /// its only take (its token is consumed), cleanup has not begun, and
    /// `dst` is valid for a write of the payload's `Taken` type.
    pub(crate) unsafe fn take_into(
        &self,
        entry: Entry,
        take: TakeFn,
        dst: *mut (),
        clears: Option<Clears>,
    ) -> bool {
        // Marked `TAKING` under the lock: cleanup never starts while a token
        // lives, and `reclaim` leaves the bytes alone until we are done.
        {
            let _locked = self.lock();
            if clears.is_some_and(|clears| clears != self.clears.get()) {
                return false;
            }
            // SAFETY: we hold the lock (or the flavour needs none).
            let was = unsafe { entry.set_vtable(Some(&TAKING)) };
            match was {
                Some(v) if !ptr::eq(v, &TAKING) && !ptr::eq(v, &KEPT) => {}
                // Claimed by `clear`/`move_all` (once `clears` saturated).
                _ => {
                    // SAFETY: as above.
                    unsafe { entry.set_vtable(was) };
                    return false;
                }
            }
        }
        // Outside the lock: taking drops what is not handed back (a guard's
        // cleanup closure), which is foreign code.
        // SAFETY: the entry is ours (`TAKING`); `dst` is writable (caller).
        unsafe { take(entry.0.as_ptr(), dst) };
        let _locked = self.lock();
        // SAFETY: as above.
        unsafe { entry.set_vtable(None) };
        self.reclaim();
        true
    }

    /// Takes back the ambient registration with this id at `entry`, if it
    /// is in this slab's chain and pending; `false` otherwise (nothing is
    /// touched: `entry` is only compared, never read, unless it is found).
    ///
    /// # Safety
    /// The body is running (cleanup has not begun); `take` and `dst` fit
    /// the payload registered with `id` (ids are unique in the program).
    #[cfg(feature = "std")]
    pub(crate) unsafe fn take_tokened(
        &self,
        entry: NonNull<Header>,
        id: u64,
        take: TakeFn,
        dst: *mut (),
    ) -> bool {
        {
            let _locked = self.lock();
            let mut next = self.top.get();
            loop {
                if next.is_null() {
                    return false;
                }
                if next == entry.as_ptr() {
                    break;
                }
                // SAFETY: a valid header in the chain; we hold the lock.
                next = unsafe { (*next).link };
            }
            // SAFETY: found in the chain: a valid header.
            let header = unsafe { &mut *next };
            match header.vtable {
                // SAFETY: a tokened payload starts with its `u64` id.
                Some(v) if v.tokened && unsafe { (v.payload)(next).cast::<u64>().read() } == id => {
                }
                _ => return false,
            }
            header.vtable = Some(&TAKING);
        }
        // SAFETY: the entry is ours (`TAKING`), with the payload of `id`.
        unsafe { take(entry.as_ptr(), dst) };
        let _locked = self.lock();
        // SAFETY: a valid header; we hold the lock.
        unsafe { (*entry.as_ptr()).vtable = None };
        self.reclaim();
        true
    }

    /// Moves a pending, portable entry out with `mv` (which returns
    /// whether it took it; if not, the entry stays registered). `None` if
    /// the token is stale (`clears` changed) or the entry is not portable.
    ///
    /// # Safety
    /// As [`take_into`](Self::take_into); `mv` takes a claimed, never
    /// polled entry (or leaves it untouched and returns `false`).
    pub(crate) unsafe fn move_entry(
        &self,
        entry: Entry,
        clears: Option<Clears>,
        mv: impl FnOnce(Live) -> bool,
    ) -> Option<bool> {
        let vtable = {
            let _locked = self.lock();
            if clears.is_some_and(|clears| clears != self.clears.get()) {
                return None;
            }
            // SAFETY: we hold the lock (or the flavour needs none).
            let was = unsafe { entry.set_vtable(Some(&TAKING)) };
            let vtable = match was {
                Some(v) if !ptr::eq(v, &TAKING) && !ptr::eq(v, &KEPT) => v,
                _ => {
                    // SAFETY: as above.
                    unsafe { entry.set_vtable(was) };
                    return None;
                }
            };
            if !vtable.portable {
                // SAFETY: as above.
                unsafe { entry.set_vtable(Some(vtable)) };
                return None;
            }
            vtable
        };
        let moved = mv(Live { entry, vtable });
        let _locked = self.lock();
        // SAFETY: as above.
        unsafe { entry.set_vtable(if moved { None } else { Some(vtable) }) };
        if moved {
            self.reclaim();
        }
        Some(moved)
    }

    /// How many registrations are pending (guards included).
    pub(crate) fn len(&self) -> usize {
        let _locked = self.lock();
        let mut count = 0;
        let mut next = self.top.get();
        while !next.is_null() {
            // SAFETY: every header in the chain is valid; we hold the lock.
            let (vtable, link) = unsafe { ((*next).vtable, (*next).link) };
            count += usize::from(vtable.is_some_and(|v| !ptr::eq(v, &KEPT)));
            next = link;
        }
        count
    }

    /// Removes the pending registrations `select` picks among those no
    /// guard holds, handing each (claimed) to `each`, which returns whether
    /// it took it: newest first, or (`oldest_first`) oldest first, stopping
    /// at the first one `each` leaves (it stays registered). Returns how
    /// many were taken.
    ///
    /// Every token made before is refused from now on (the `clears` count
    /// moves on), also the tokens of entries that stay. Each entry is
    /// marked `TAKING` under the lock and handed to `each` (foreign code: a
    /// destructor) with the slab consistent and unlocked; with `std` a
    /// panic in `each` is caught (the entry counts as taken: it is gone),
    /// the rest are still handed over, and the first panic resumes at the
    /// end.
    ///
    /// # Safety
    /// The body is running (cleanup has not begun).
    pub(crate) unsafe fn remove_where(
        &self,
        select: impl Fn(&EntryVTable) -> bool,
        oldest_first: bool,
        mut each: impl FnMut(Live) -> bool,
    ) -> usize {
        let candidate =
            |v: &EntryVTable| !v.guarded && !ptr::eq(v, &TAKING) && !ptr::eq(v, &KEPT) && select(v);
        // Claims the next candidate (newest or oldest) under the lock.
        let next = || {
            let _locked = self.lock();
            let mut found = ptr::null_mut::<Header>();
            let mut next = self.top.get();
            while !next.is_null() {
                // SAFETY: a valid header in the chain; we hold the lock.
                let header = unsafe { &*next };
                if header.vtable.is_some_and(candidate) {
                    found = next;
                    if !oldest_first {
                        break;
                    }
                }
                next = header.link;
            }
            let header = NonNull::new(found)?;
            // SAFETY: as above; found in the chain.
            let vtable = unsafe { (*found).vtable.replace(&TAKING)? };
            // Every token made before this claim is refused from now on
            // (under the same lock: a token checks it there). Saturated,
            // the count stays, and tokens tell a claimed entry by its
            // vtable (`TAKING`, then `KEPT`: those bytes are never reused).
            self.clears.set(self.clears.get().saturating_add(1));
            Some(Live {
                entry: Entry(header),
                vtable,
            })
        };
        let mut count = 0;
        let mut panic = None;
        while let Some(live) = next() {
            let taken = match crate::panic::catch(|| each(live)) {
                Ok(taken) => taken,
                Err(p) => {
                    panic.get_or_insert(p);
                    true // a panicking destructor: gone all the same
                }
            };
            let _locked = self.lock();
            let keep = self.clears.get() == Clears::MAX;
            let vtable = match (taken, keep) {
                (false, _) => Some(live.vtable),
                (true, true) => Some(&KEPT),
                (true, false) => None,
            };
            // SAFETY: the entry is ours (`TAKING`); we hold the lock.
            unsafe { live.entry.set_vtable(vtable) };
            if !taken {
                break;
            }
            count += 1;
            self.reclaim();
        }
        if let Some(p) = panic {
            crate::panic::resume(p);
        }
        count
    }

    /// Gives the bytes of the newest entries back while they are cleared
    /// and lie in the current region. Called under the lock.
    fn reclaim(&self) {
        loop {
            let top = self.top.get();
            if top.is_null() {
                return;
            }
            // SAFETY: `top` is a valid header; we hold the lock.
            let (vtable, link) = unsafe { ((*top).vtable, (*top).link) };
            // SAFETY: an entry exists, so the allocator was started.
            let region = unsafe { self.region.get().assume_init() };
            let here = region.addr()..self.cursor().addr();
            if vtable.is_some() || !here.contains(&top.addr()) {
                return;
            }
            self.cursor.set(MaybeUninit::new(top.cast()));
            self.top.set(link);
        }
    }

    /// Whether nothing was ever registered (or everything registered was
    /// cancelled and given back): cleanup has nothing to do.
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.top.get().is_null()
    }

    /// The first entry cleanup looks at: the newest (`lifo`), or, after
    /// reversing the chain in place, the oldest; every entry links to the
    /// next one to look at. Cleanup starts once the body is gone.
    ///
    /// # Safety
    /// The caller has the slab to itself from now on (the body is gone),
    /// and calls this once.
    pub(crate) unsafe fn start_cleanup(&self, lifo: bool) -> Option<Entry> {
        let mut first = self.top.replace(ptr::null_mut());
        if !lifo {
            let mut reversed = ptr::null_mut();
            while !first.is_null() {
                // SAFETY: every header in the chain is valid and ours now.
                unsafe {
                    let next = (*first).link;
                    (*first).link = reversed;
                    reversed = first;
                    first = next;
                }
            }
            first = reversed;
        }
        // The chain now belongs to the caller's cursor: `drain` (the last
        // line of defence in `Drop`) walks it from there.
        self.top.set(first);
        NonNull::new(first).map(Entry)
    }

    /// Cleanup is over and every entry was claimed: nothing for `drain` to
    /// walk.
    pub(crate) fn forget_chain(&self) {
        self.top.set(ptr::null_mut());
    }
}

/// Stands for an entry removed once `clears` saturated: it keeps its bytes
/// (a stale token could otherwise reach a newer registration in them), and
/// cleanup "runs" it: nothing.
static KEPT: EntryVTable = EntryVTable {
    layout: Layout::new::<()>(),
    is_async: false,
    guarded: false,
    portable: false,
    tokened: false,
    run: |_, _| (),
    poll: |_, _, _| unreachable!(),
    drop: |_| (),
    payload: |_| unreachable!(),
};

/// Stands for an entry whose token is taking it back (never called).
static TAKING: EntryVTable = EntryVTable {
    layout: Layout::new::<()>(),
    is_async: false,
    guarded: false,
    portable: false,
    tokened: false,
    run: |_, _| unreachable!(),
    poll: |_, _, _| unreachable!(),
    drop: |_| unreachable!(),
    payload: |_| unreachable!(),
};

impl Entry {
    /// Sets the vtable, returning the old one.
    ///
    /// # Safety
    /// The caller holds the slab's lock or has the slab to itself.
    unsafe fn set_vtable(
        self,
        vtable: Option<&'static EntryVTable>,
    ) -> Option<&'static EntryVTable> {
        // SAFETY: a valid header; exclusive access (caller).
        unsafe { core::mem::replace(&mut (*self.0.as_ptr()).vtable, vtable) }
    }

    /// Its header.
    #[cfg(feature = "std")]
    pub(crate) fn header(self) -> NonNull<Header> {
        self.0
    }

    /// The entry cleanup looks at after this one.
    #[inline(always)]
    pub(crate) fn next(self) -> Option<Entry> {
        NonNull::new(self.link()).map(Entry)
    }

    /// Claims a live entry for cleanup: from now on it is the caller's to
    /// run, poll or drop, and nobody else's. `None` if it was cancelled or
    /// already finished.
    ///
    /// # Safety
    /// The caller has the slab to itself (cleanup).
    #[inline(always)]
    pub(crate) unsafe fn claim(self) -> Option<Live> {
        // SAFETY: as the caller guarantees.
        unsafe { self.set_vtable(None) }.map(|vtable| Live {
            entry: self,
            vtable,
        })
    }

    /// A view of a live entry, without claiming it (an async entry stays
    /// live while it is being polled).
    ///
    /// # Safety
    /// The caller has the slab to itself (cleanup).
    #[inline(always)]
    pub(crate) unsafe fn live(self) -> Option<Live> {
        self.vtable().map(|vtable| Live {
            entry: self,
            vtable,
        })
    }

    /// Whether the entry is live and async (to be started).
    pub(crate) fn is_live_async(self) -> bool {
        self.vtable().is_some_and(EntryVTable::is_async)
    }
}

/// A live entry as cleanup sees it: its payload and vtable.
#[derive(Clone, Copy)]
pub(crate) struct Live {
    entry: Entry,
    vtable: &'static EntryVTable,
}

impl Live {
    #[inline(always)]
    pub(crate) fn is_async(self) -> bool {
        self.vtable.is_async
    }

    pub(crate) fn vtable(self) -> &'static EntryVTable {
        self.vtable
    }

    pub(crate) fn header(self) -> *mut Header {
        self.entry.0.as_ptr()
    }

    /// Moves the payload (never polled: not pinned yet) to an entry headed
    /// at `to`, which gets this vtable; the old entry is then dead.
    ///
    /// # Safety
    /// The payload is live, never polled, and the caller's to give up;
    /// `to` is valid for a header and, after it where `payload_at` puts it,
    /// the payload's layout.
    pub(crate) unsafe fn move_to(self, to: *mut Header) {
        // SAFETY: as the caller guarantees.
        unsafe {
            to.write(Header {
                vtable: Some(self.vtable),
                link: ptr::null_mut(),
            });
            self.move_payload_to(to);
        }
    }

    /// Moves only the payload to where an entry headed at `to` has it (the
    /// caller writes that header).
    ///
    /// # Safety
    /// As [`move_to`](Self::move_to).
    pub(crate) unsafe fn move_payload_to(self, to: *mut Header) {
        // SAFETY: as the caller guarantees.
        unsafe {
            let from = (self.vtable.payload)(self.header());
            let dst = (self.vtable.payload)(to);
            ptr::copy_nonoverlapping(from, dst, self.vtable.layout.size());
        }
    }

    /// A live entry that is not in a slab (a `DeferStack`'s).
    ///
    /// # Safety
    /// `header` heads a live payload of `vtable`.
    pub(crate) unsafe fn at(header: NonNull<Header>, vtable: &'static EntryVTable) -> Live {
        Live {
            entry: Entry(header),
            vtable,
        }
    }

    /// Runs a sync payload, consuming it.
    ///
    /// # Safety
    /// The payload is sync and was not run, dropped or moved out yet; `end`
    /// is the scope's `Exit<Out>` for the payload's `Out`,
    /// nobody else's to use meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn run(self, end: &End) {
        // SAFETY: as the caller guarantees.
        unsafe { (self.vtable.run)(self.header(), end) }
    }

    /// Polls an async payload in place.
    ///
    /// # Safety
    /// The payload is async and live (not dropped, not moved out); `end`
    /// as for [`run`](Self::run).
    #[inline(always)]
    pub(crate) unsafe fn poll(self, cx: &mut Context<'_>, end: &End) -> Poll<()> {
        // SAFETY: as the caller guarantees.
        unsafe { (self.vtable.poll)(self.header(), cx, Some(end)) }
    }

    /// Drops the payload in place.
    ///
    /// # Safety
    /// The payload is live; the caller never touches it again.
    #[inline(always)]
    pub(crate) unsafe fn drop_payload(self) {
        // SAFETY: as the caller guarantees.
        unsafe { (self.vtable.drop)(self.header()) }
    }

    /// Moves a never-polled async payload into a box of its own (`alloc`),
    /// for a scope's cancel handler: a `'static` future.
    ///
    /// # Safety
    /// The payload is async, never polled, `Send + 'static` (a `Sendable`
    /// scope's), and the caller never touches the entry again.
    #[cfg(feature = "alloc")]
    pub(crate) unsafe fn into_boxed(self) -> BoxedThunk {
        // A block laid out like an entry (a header, then the payload where
        // `payload_of` finds it), so the vtable serves it unchanged. The
        // header's fields are never read.
        let (block, _) = block_layout(self.vtable.layout);
        // SAFETY: the block has a non-zero size (a header).
        let header = unsafe { alloc::alloc::alloc(block) }.cast::<Header>();
        if header.is_null() {
            alloc::alloc::handle_alloc_error(block);
        }
        // SAFETY: the payload was never polled, so it is not pinned yet and
        // may move; the block is fresh, and `payload` finds the same offset
        // in it as the slab's entry had (both are aligned for the payload).
        unsafe {
            let from = (self.vtable.payload)(self.header());
            let to = (self.vtable.payload)(header);
            ptr::copy_nonoverlapping(from, to, self.vtable.layout.size());
        }
        alloc::boxed::Box::pin(ErasedThunk {
            header,
            vtable: self.vtable,
            done: false,
        })
    }
}

/// The layout of a heap block holding one entry (header, then a payload
/// of `payload`), and the payload's offset in it.
#[cfg(feature = "alloc")]
fn block_layout(payload: Layout) -> (Layout, usize) {
    Layout::new::<Header>()
        .extend(payload)
        .expect("deferred thunk too large to allocate")
}

/// A not-yet-started async thunk, as handed to a scope's cancel handler
/// (`alloc`): spawn it, or await it.
///
/// ```
/// let thunk: deferral::BoxedThunk = Box::pin(async { println!("goodbye") });
/// futures::executor::block_on(thunk);
/// ```
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub type BoxedThunk = Pin<alloc::boxed::Box<dyn Future<Output = ()> + Send + 'static>>;

/// An async payload moved out of its slab into a heap block of its own.
#[cfg(feature = "alloc")]
struct ErasedThunk {
    header: *mut Header,
    vtable: &'static EntryVTable,
    done: bool,
}

// SAFETY: only built from `Sendable` payloads (`Live::into_boxed`),
// which are `Send + 'static`.
#[cfg(feature = "alloc")]
unsafe impl Send for ErasedThunk {}

#[cfg(feature = "alloc")]
impl Future for ErasedThunk {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        assert!(
            !self.done,
            "deferral: a cancelled thunk polled after completion"
        );
        // SAFETY: the payload is live, pinned in its block (the box is
        // pinned and the block never moves); it sees a cancelled exit.
        let poll = unsafe { (self.vtable.poll)(self.header, cx, None) };
        if poll.is_ready() {
            self.done = true;
            // SAFETY: finished: drop what is left of it, once.
            unsafe { (self.vtable.drop)(self.header) };
        }
        poll
    }
}

#[cfg(feature = "alloc")]
impl Drop for ErasedThunk {
    fn drop(&mut self) {
        struct Free(*mut Header, Layout);
        impl Drop for Free {
            fn drop(&mut self) {
                // SAFETY: allocated in `into_boxed` with this layout.
                unsafe { alloc::alloc::dealloc(self.0.cast(), self.1) };
            }
        }
        let _free = Free(self.header, block_layout(self.vtable.layout).0);
        if !self.done {
            self.done = true;
            // SAFETY: live and never to be touched again.
            unsafe { (self.vtable.drop)(self.header) };
        }
    }
}

impl<K> Drop for SlabCore<K> {
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "alloc")]
        let spilled = !self.chunks.get().is_null();
        #[cfg(not(feature = "alloc"))]
        let spilled = false;
        if self.top.get().is_null() && !spilled {
            return; // the common case: cleanup finished, nothing spilled
        }
        self.release();
    }
}

impl<K> SlabCore<K> {
    #[cold]
    #[inline(never)]
    fn release(&mut self) {
        // A scope finishes or cancels every entry itself; this is the last
        // line of defence (a panic escaping its drop, say): drop whatever is
        // still live, then free the chunks.
        struct FreeChunks<'a, K>(&'a SlabCore<K>);
        impl<K> Drop for FreeChunks<'_, K> {
            fn drop(&mut self) {
                #[cfg(feature = "alloc")]
                {
                    let mut chunk = self.0.chunks.replace(ptr::null_mut());
                    while !chunk.is_null() {
                        // SAFETY: our chunks, allocated in `spill` with the
                        // layout they record; no entry is live any more.
                        unsafe {
                            let Chunk { prev, layout } = chunk.read();
                            alloc::alloc::dealloc(chunk.cast(), layout);
                            chunk = prev;
                        }
                    }
                }
                #[cfg(not(feature = "alloc"))]
                let _ = self.0;
            }
        }
        let _free = FreeChunks(self);
        drain(self.top.get());
    }
}

/// Drops every live entry from `first` on; if a destructor panics, the rest
/// are still dropped while unwinding (a second panic aborts).
fn drain(first: *mut Header) {
    struct KeepDraining(*mut Header);
    impl Drop for KeepDraining {
        fn drop(&mut self) {
            drain(self.0);
        }
    }
    let mut next = NonNull::new(first).map(Entry);
    while let Some(entry) = next {
        next = entry.next();
        // SAFETY: we own the whole slab (it is being dropped).
        if let Some(live) = unsafe { entry.claim() } {
            let guard = KeepDraining(next.map_or(ptr::null_mut(), |e| e.0.as_ptr()));
            // SAFETY: claimed, live.
            unsafe { live.drop_payload() };
            core::mem::forget(guard);
        }
    }
}

/// Carves a header and a payload of `layout` out of `[cursor, limit)`:
/// returns (header, new cursor); `None` when it does not fit. The cursor always sits at header
/// alignment, so the header goes right there, and for payloads aligned no
/// more than a header the whole entry is a compile-time constant size (this
/// is inlined with a constant `layout`): one subtraction and a compare.
#[inline(always)]
fn fit(cursor: *mut u8, limit: *mut u8, layout: Layout) -> Option<(*mut Header, *mut u8)> {
    const fn round_up(n: usize, align: usize) -> usize {
        (n + align - 1) & !(align - 1)
    }
    let room = limit.addr().wrapping_sub(cursor.addr());
    let size = if layout.align() <= align_of::<Header>() {
        round_up(size_of::<Header>() + layout.size(), align_of::<Header>())
    } else {
        let after = cursor.addr().wrapping_add(size_of::<Header>());
        let pad = after.wrapping_neg() & (layout.align() - 1);
        let unrounded = (size_of::<Header>() + pad).checked_add(layout.size())?;
        unrounded.checked_add(align_of::<Header>() - 1)? & !(align_of::<Header>() - 1)
    };
    if size > room {
        return None;
    }
    // SAFETY: `[cursor, cursor + size)` lies within `[cursor, limit)`.
    unsafe { Some((cursor.cast(), cursor.add(size))) }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod clears_tests {
    use super::Clears;

    /// `clears` saturates: registrations removed from then on keep their
    /// bytes for ever, and tokens still tell them apart (by `KEPT`), so a
    /// stale token never reaches another registration.
    #[test]
    fn a_saturated_clears_count_still_refuses_stale_tokens() {
        futures::executor::block_on(crate::ScopeBuilder::new().capacity::<128>().run(async |d| {
            d.core_for_tests().clears.set(Clears::MAX - 1);
            let old = d.try_defer(|| unreachable!("cleared")).unwrap();
            assert_eq!(d.clear(), 1); // the count reaches MAX here
            assert_eq!(d.core_for_tests().clears.get(), Clears::MAX);
            assert!(old.try_cancel().is_none());
            // Registered and cleared at MAX: the count no longer moves.
            let stale = d.try_defer(|| unreachable!("cleared at MAX")).unwrap();
            assert_eq!(d.clear(), 1);
            assert_eq!(d.core_for_tests().clears.get(), Clears::MAX);
            // Its bytes are kept (`KEPT`): a new registration goes elsewhere,
            // and the stale token is refused by the entry's state.
            let fresh = d.try_defer(|| ()).unwrap();
            assert!(stale.try_cancel().is_none());
            assert!(fresh.try_cancel().is_some());
            assert_eq!(d.len(), 0, "kept entries are not pending");
        }));
    }
}
