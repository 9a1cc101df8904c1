//! [`DeferStack`]: cleanup you own — filled directly or by moving a
//! scope's pending registrations into it, kept in a struct, disposed of
//! later. The Rust form of JavaScript's `DisposableStack.move()` and
//! Python's `ExitStack.pop_all()`.
//!
//! # How it works
//!
//! A stack is `N` bytes of 16-aligned inline storage that *moves with the
//! stack* (it is an ordinary value until [`DeferStack::dispose`] pins it),
//! so entries are found by offsets, never by pointers: each is a two-word
//! header — the payload's vtable (the scope's, shared) and the offset of
//! the entry before it — followed by the payload where the vtable's
//! `payload` function puts it. That offset is the same at any 16-aligned
//! address for payloads aligned to at most 16; others (and, with `alloc`,
//! entries past the inline bytes) go to heap blocks of their own, which
//! are all newer than every inline entry, so LIFO order is "heap blocks,
//! newest first, then the inline chain".
//!
//! A payload moved in from a scope was never polled (only cleanup polls),
//! so it may move; it is *portable* — it never reads its scope's typed
//! output (`Payload::TYPED`) — so it runs with the stack's own exit: it
//! "returned", or is unwinding if the stack is dropped during a panic.
//! Every entry is claimed (its vtable slot cleared in the bookkeeping)
//! before its foreign code runs, so a panic never leaves one to run or
//! drop twice.

use core::fmt;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::{MaybeUninit, align_of, size_of};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use crate::defer::{Fits, Full, Sendable};
use crate::exit::{End, Exit, UNWINDING};
use crate::panic as panicking;
use crate::slab::{EntryVTable, Flavour, Header, Live, Payload, vtable_of};
use crate::thunk::{AsyncThunk, Thunk};

/// `Header`'s layout, with the link as an offset (`usize::MAX`: none).
#[repr(C)]
struct StackHeader {
    vtable: &'static EntryVTable,
    prev: usize,
}

const _: () = assert!(size_of::<StackHeader>() == size_of::<Header>());
const _: () = assert!(align_of::<StackHeader>() == align_of::<Header>());

const NONE: usize = usize::MAX;

/// Inline payloads may be aligned to at most this (their offset after the
/// header is then the same wherever the stack moves).
const INLINE_ALIGN: usize = 16;

#[repr(C, align(16))]
struct Bytes<const N: usize>([MaybeUninit<u8>; N]);

/// An entry in a heap block of its own (`alloc`).
#[cfg(feature = "alloc")]
struct Block {
    header: NonNull<Header>,
    vtable: &'static EntryVTable,
}

/// Cleanup you own: LIFO, sync and async, outliving the scope that filled
/// it. Dropping it runs its sync cleanup; [`dispose`](Self::dispose) runs
/// all of it, awaiting the async ones. See the module docs.
///
/// The JavaScript proposal's "assist in complex construction": register
/// cleanup for what a constructor opens; if it fails, everything opened so
/// far is cleaned up; if it succeeds, the object keeps the stack.
///
/// ```
/// # futures::executor::block_on(async {
/// use deferral::DeferStack;
/// struct Host {
///     cleanup: DeferStack,
/// }
/// fn open(fail: bool, log: &std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>) -> Result<Host, &'static str> {
///     let mut stack: DeferStack = DeferStack::new();
///     let l = log.clone();
///     stack.try_defer(move || l.lock().unwrap().push("channel closed")).unwrap();
///     if fail {
///         return Err("socket failed"); // `stack` drops: the channel is closed
///     }
///     Ok(Host { cleanup: stack.take() }) // JS `stack.move()`
/// }
/// let log = Default::default();
/// assert!(open(true, &log).is_err());
/// assert_eq!(*log.lock().unwrap(), ["channel closed"]);
/// let host = open(false, &log).unwrap();
/// host.cleanup.dispose().await; // later: closes the channel again
/// assert_eq!(log.lock().unwrap().len(), 2);
/// # });
/// ```
pub struct DeferStack<K: Flavour = Sendable, const N: usize = 256> {
    bytes: Bytes<N>,
    /// Bytes used from the start.
    used: usize,
    /// Offset of the newest inline entry's header, or `NONE`.
    top: usize,
    /// Entries in heap blocks, oldest first (`alloc`).
    #[cfg(feature = "alloc")]
    blocks: alloc::vec::Vec<Block>,
    _flavour: PhantomData<K>,
}

// SAFETY: the stack owns its payloads; with a `Send` flavour they are all
// `Send` (the registration bounds), and its pointers point into memory it
// owns (its heap blocks).
unsafe impl<K: Flavour + Send, const N: usize> Send for DeferStack<K, N> {}
// SAFETY: `&DeferStack` gives access to nothing but counts.
unsafe impl<K: Flavour, const N: usize> Sync for DeferStack<K, N> {}

impl<K: Flavour, const N: usize> fmt::Debug for DeferStack<K, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferStack")
            .field("len", &self.len())
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}

impl<K: Flavour, const N: usize> Default for DeferStack<K, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Flavour, const N: usize> DeferStack<K, N> {
    /// An empty stack.
    ///
    /// ```
    /// let stack: deferral::DeferStack = deferral::DeferStack::new();
    /// assert!(stack.is_empty());
    /// ```
    pub const fn new() -> Self {
        DeferStack {
            bytes: Bytes([MaybeUninit::uninit(); N]),
            used: 0,
            top: NONE,
            #[cfg(feature = "alloc")]
            blocks: alloc::vec::Vec::new(),
            _flavour: PhantomData,
        }
    }

    fn base(&mut self) -> *mut u8 {
        ptr::addr_of_mut!(self.bytes).cast()
    }

    fn header_at(&mut self, offset: usize) -> *mut Header {
        self.base().wrapping_add(offset).cast()
    }

    /// How many cleanups are pending.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| ());
    /// assert_eq!(stack.len(), 1);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        let mut count = 0;
        let mut next = self.top;
        let base = ptr::addr_of!(self.bytes).cast::<u8>();
        while next != NONE {
            count += 1;
            // SAFETY: `next` is the offset of a header we wrote.
            next = unsafe { (*base.add(next).cast::<StackHeader>()).prev };
        }
        #[cfg(feature = "alloc")]
        {
            count += self.blocks.len();
        }
        count
    }

    /// Nothing is pending.
    ///
    /// ```
    /// assert!(deferral::DeferStack::<deferral::Sendable, 64>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.top == NONE && {
            #[cfg(feature = "alloc")]
            {
                self.blocks.is_empty()
            }
            #[cfg(not(feature = "alloc"))]
            {
                true
            }
        }
    }

    /// Moves everything out into a new stack and leaves this one empty —
    /// JavaScript's `DisposableStack.move()`, Python's `ExitStack.pop_all()`.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| println!("closed by whoever owns the stack"));
    /// let owned = stack.take();
    /// assert!(stack.is_empty() && owned.len() == 1);
    /// # }
    /// ```
    pub fn take(&mut self) -> Self {
        core::mem::take(self)
    }

    /// Defers `f` (run when the stack is dropped or disposed of, LIFO).
    /// Hands it back if the stack is full (only without `alloc`).
    ///
    /// ```
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.try_defer(|| println!("bye")).unwrap();
    /// drop(stack); // prints "bye"
    /// ```
    pub fn try_defer<F>(&mut self, f: F) -> Result<(), Full<F>>
    where
        F: FnOnce() + Fits<K>,
    {
        self.push(Thunk(f)).map_err(|Thunk(f)| Full::new(f))
    }

    /// Defers a future, awaited by [`dispose`](Self::dispose). If the stack
    /// is dropped instead, it is handed to the program's cancel handler
    /// ([`set_cancel_handler`](crate::set_cancel_handler)) or dropped
    /// unpolled.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.try_defer_async(async { println!("flushed") }).unwrap();
    /// stack.dispose().await;
    /// # });
    /// ```
    pub fn try_defer_async<Fut>(&mut self, fut: Fut) -> Result<(), Full<Fut>>
    where
        Fut: Future<Output = ()> + Fits<K>,
    {
        self.push(AsyncThunk(fut))
            .map_err(|AsyncThunk(f)| Full::new(f))
    }

    /// Defers `f` (run when the stack is dropped or disposed of, LIFO).
    /// With `alloc` a full stack spills to the heap, so this cannot fail;
    /// without it, [`try_defer`](Self::try_defer) hands `f` back.
    ///
    /// ```
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| println!("bye"));
    /// drop(stack); // prints "bye"
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    #[track_caller]
    pub fn defer<F>(&mut self, f: F)
    where
        F: FnOnce() + Fits<K>,
    {
        crate::defer::stored(self.try_defer(f))
    }

    /// Defers a future, awaited by [`dispose`](Self::dispose) (see
    /// [`try_defer_async`](Self::try_defer_async)); cannot fail with
    /// `alloc`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer_async(async { println!("flushed") });
    /// stack.dispose().await;
    /// # });
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    #[track_caller]
    pub fn defer_async<Fut>(&mut self, fut: Fut)
    where
        Fut: Future<Output = ()> + Fits<K>,
    {
        crate::defer::stored(self.try_defer_async(fut))
    }

    fn push<P: Payload<()>>(&mut self, payload: P) -> Result<(), P> {
        let vtable = vtable_of::<(), P>();
        let Some(header) = self.room(vtable) else {
            return Err(payload);
        };
        // SAFETY: `room` reserved a header and the payload's bytes.
        unsafe {
            vtable
                .payload_at(header.as_ptr())
                .cast::<P>()
                .write(payload);
        }
        Ok(())
    }

    /// Takes a live, never-polled, portable entry of a scope (claimed by
    /// the caller); `false` (untouched) if there is no room.
    ///
    /// # Safety
    /// As [`Live::move_to`]; the payload fits the flavour `K`.
    pub(crate) unsafe fn accept(&mut self, live: Live) -> bool {
        let Some(header) = self.room(live.vtable()) else {
            return false;
        };
        // SAFETY: `room` reserved the bytes; as the caller guarantees.
        unsafe { live.move_payload_to(header.as_ptr()) };
        true
    }

    /// Reserves a header and a payload of `vtable`'s layout and links the
    /// header (so the caller must write the payload before anything else
    /// can run).
    fn room(&mut self, vtable: &'static EntryVTable) -> Option<NonNull<Header>> {
        let layout = vtable.layout();
        #[cfg(feature = "alloc")]
        let spilled = !self.blocks.is_empty();
        #[cfg(not(feature = "alloc"))]
        let spilled = false;
        if !spilled && layout.align() <= INLINE_ALIGN {
            // One pointer to the bytes: every other is derived from it (a
            // second `&mut self` would retag them and invalidate the first).
            let base = self.base();
            let start = self.used.next_multiple_of(align_of::<Header>());
            let header = base.wrapping_add(start).cast::<Header>();
            let payload = vtable.payload_at(header);
            let end = payload
                .addr()
                .wrapping_sub(base.addr())
                .checked_add(layout.size());
            if let Some(end) = end.filter(|&end| end <= N) {
                // SAFETY: `[start, end)` lies in our bytes, aligned for a
                // header.
                unsafe {
                    header.cast::<StackHeader>().write(StackHeader {
                        vtable,
                        prev: self.top,
                    });
                }
                self.top = start;
                self.used = end;
                // SAFETY: inside our bytes.
                return Some(unsafe { NonNull::new_unchecked(header) });
            }
        }
        #[cfg(feature = "alloc")]
        return Some(self.spill(vtable)); // never `None`: `defer` cannot fail
        #[cfg(not(feature = "alloc"))]
        None
    }

    #[cfg(feature = "alloc")]
    #[cold]
    fn spill(&mut self, vtable: &'static EntryVTable) -> NonNull<Header> {
        let layout = block_layout(vtable);
        // SAFETY: a non-zero size (a header).
        let header = unsafe { alloc::alloc::alloc(layout) }.cast::<Header>();
        let Some(header) = NonNull::new(header) else {
            alloc::alloc::handle_alloc_error(layout);
        };
        self.blocks.push(Block { header, vtable });
        header
    }

    /// Claims the newest entry: the caller runs, polls or drops it.
    fn pop(&mut self) -> Option<Popped> {
        #[cfg(feature = "alloc")]
        if let Some(block) = self.blocks.pop() {
            return Some(Popped {
                // SAFETY: a live payload we wrote.
                live: unsafe { Live::at(block.header, block.vtable) },
                block: Some(block.header),
            });
        }
        if self.top == NONE {
            return None;
        }
        let header = self.header_at(self.top);
        // SAFETY: the header we wrote at `top`.
        let StackHeader { vtable, prev } = unsafe { header.cast::<StackHeader>().read() };
        self.top = prev;
        // SAFETY: inside our bytes.
        let header = unsafe { NonNull::new_unchecked(header) };
        Some(Popped {
            // SAFETY: a live payload we wrote; now claimed.
            live: unsafe { Live::at(header, vtable) },
            #[cfg(feature = "alloc")]
            block: None,
        })
    }

    /// Drops every pending cleanup unrun; returns how many.
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| unreachable!());
    /// assert_eq!(stack.clear(), 1);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// With `std`, if a destructor panics the others are still dropped,
    /// then the first panic resumes.
    pub fn clear(&mut self) -> usize {
        let mut count = 0;
        let mut panic = None;
        while let Some(popped) = self.pop() {
            count += 1;
            // SAFETY: claimed; dropped once.
            if let Err(p) = panicking::catch(|| unsafe { popped.drop_payload() }) {
                panic.get_or_insert(p);
            }
        }
        self.used = 0;
        if let Some(p) = panic {
            panicking::resume(p);
        }
        count
    }

    /// Runs everything, LIFO: sync cleanup runs, async cleanup is awaited
    /// — `DisposableStack.disposeAsync()`, `AsyncExitStack.aclose()`. Each
    /// sees an exit that "returned". A panic in one does not stop the
    /// others; the first resumes at the end (`std`).
    ///
    /// ```
    /// # #[cfg(feature = "alloc")] { // (without `alloc`: the `try_` forms)
    /// # futures::executor::block_on(async {
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| println!("2"));
    /// stack.defer_async(async { println!("1") });
    /// stack.dispose().await;
    /// # });
    /// # }
    /// ```
    pub fn dispose(self) -> Dispose<K, N> {
        Dispose {
            stack: self,
            polling: None,
            exit: Exit::new(),
            _pinned: PhantomPinned,
        }
    }
}

/// An entry popped off the stack, and its heap block if it has one.
struct Popped {
    live: Live,
    #[cfg(feature = "alloc")]
    block: Option<NonNull<Header>>,
}

impl Popped {
    /// # Safety
    /// Live and claimed; never touched again.
    unsafe fn drop_payload(self) {
        let _free = self.free();
        // SAFETY: as the caller guarantees.
        unsafe { self.live.drop_payload() }
    }

    /// Frees the heap block (if any) when dropped.
    fn free(&self) -> FreeBlock {
        FreeBlock {
            #[cfg(feature = "alloc")]
            block: self.block.map(|b| (b, self.live.vtable())),
        }
    }
}

struct FreeBlock {
    #[cfg(feature = "alloc")]
    block: Option<(NonNull<Header>, &'static EntryVTable)>,
}

impl Drop for FreeBlock {
    fn drop(&mut self) {
        #[cfg(feature = "alloc")]
        if let Some((header, vtable)) = self.block {
            // SAFETY: allocated by `spill` with this layout.
            unsafe { alloc::alloc::dealloc(header.as_ptr().cast(), block_layout(vtable)) };
        }
    }
}

#[cfg(feature = "alloc")]
fn block_layout(vtable: &EntryVTable) -> core::alloc::Layout {
    core::alloc::Layout::new::<Header>()
        .extend(vtable.layout())
        .expect("deferred thunk too large to allocate")
        .0
        .pad_to_align()
}

impl<K: Flavour, const N: usize> Drop for DeferStack<K, N> {
    /// Runs the sync cleanup (LIFO); async cleanup cannot be awaited here:
    /// a `Send + 'static` stack hands it to the program's cancel handler,
    /// otherwise it is dropped unpolled.
    fn drop(&mut self) {
        if self.is_empty() {
            return;
        }
        let mut exit = Exit::<()>::new();
        if panicking::unwinding() {
            exit.flags |= UNWINDING;
        }
        // SAFETY: our own exit, used only through `end` below.
        let end = unsafe { End::of(NonNull::from(&mut exit)) };
        while let Some(popped) = self.pop() {
            let ran = panicking::catch(|| {
                let _free = popped.free();
                let live = popped.live;
                // SAFETY: claimed; run, handed over or dropped once.
                unsafe {
                    if !live.is_async() {
                        live.vtable().run_at(live.header(), &end);
                    } else if K::SENDABLE {
                        // Moved out by the handler during the call, or
                        // dropped; the block (if any) is freed after.
                        hand_over_copy(live);
                    } else {
                        live.drop_payload();
                    }
                }
            });
            if let Err(p) = ran {
                // Seen by the cleanup that runs after it, as in a scope.
                end.record(p);
            }
        }
        self.used = 0;
        if let Some(p) = exit.panic.take() {
            panicking::resume_unless_panicking(p);
        }
    }
}

/// Hands a stack's async entry to the program's cancel handler. The
/// handler may keep the orphan only by moving it out (`into_boxed`, a
/// reaper), which it does during the call: the stack's bytes are fine.
///
/// # Safety
/// Claimed, never polled, `Send + 'static`.
unsafe fn hand_over_copy(live: Live) {
    // SAFETY: as the caller guarantees.
    unsafe { crate::cancel::hand_over(live) }
}

/// The future of [`DeferStack::dispose`].
///
/// ```
/// # futures::executor::block_on(async {
/// let stack: deferral::DeferStack = deferral::DeferStack::new();
/// let dispose: deferral::Dispose = stack.dispose();
/// dispose.await;
/// # });
/// ```
pub struct Dispose<K: Flavour = Sendable, const N: usize = 256> {
    stack: DeferStack<K, N>,
    /// The async entry being polled (pinned where it lies).
    polling: Option<(Live, FreeBlock)>,
    exit: Exit<()>,
    _pinned: PhantomPinned,
}

impl<K: Flavour, const N: usize> fmt::Debug for Dispose<K, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispose")
            .field("left", &self.stack.len())
            .finish_non_exhaustive()
    }
}

impl<K: Flavour, const N: usize> Future for Dispose<K, N> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: nothing is moved out; the stack's bytes stay where they
        // are from now on (the future is pinned), so an async entry may be
        // polled in place.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: our own exit, used only through `end` in this call.
        let end = unsafe { End::of(NonNull::from(&mut this.exit)) };
        loop {
            if let Some((live, _)) = &this.polling {
                let live = *live;
                let polled = panicking::catch(|| {
                    // SAFETY: a live async payload pinned in place, ours.
                    unsafe { live.vtable().poll_at(live.header(), cx, &end) }
                });
                match polled {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(())) => {
                        let (live, free) = this.polling.take().expect("polling");
                        let _free = free;
                        // SAFETY: finished: drop what is left, once.
                        if let Err(p) = panicking::catch(|| unsafe { live.drop_payload() }) {
                            end.record(p);
                        }
                    }
                    Err(p) => {
                        // Finished by panicking: dropped, like a scope's.
                        let (live, free) = this.polling.take().expect("polling");
                        let _free = free;
                        end.record(p);
                        // SAFETY: as above.
                        if let Err(p) = panicking::catch(|| unsafe { live.drop_payload() }) {
                            end.record(p);
                        }
                    }
                }
                continue;
            }
            let Some(popped) = this.stack.pop() else {
                this.stack.used = 0;
                if let Some(p) = this.exit.panic.take() {
                    panicking::resume(p);
                }
                return Poll::Ready(());
            };
            if popped.live.is_async() {
                let free = popped.free();
                this.polling = Some((popped.live, free));
                continue;
            }
            let ran = panicking::catch(|| {
                let _free = popped.free();
                // SAFETY: claimed, sync: run once.
                unsafe { popped.live.vtable().run_at(popped.live.header(), &end) }
            });
            if let Err(p) = ran {
                end.record(p);
            }
        }
    }
}

impl<K: Flavour, const N: usize> Drop for Dispose<K, N> {
    fn drop(&mut self) {
        // Dropped before it finished: the entry being polled is dropped;
        // the rest goes the way of a dropped stack (its own `Drop`).
        if let Some((live, free)) = self.polling.take() {
            let _free = free;
            // SAFETY: live, ours, never touched again.
            unsafe { live.drop_payload() };
        }
    }
}
