//! [`DeferStack`]: cleanup you own — filled directly or by moving a
//! scope's pending registrations into it, kept in a struct, disposed of
//! later. JavaScript's `DisposableStack.move()`, Python's
//! `ExitStack.pop_all()`.
//!
//! # How it works
//!
//! A stack holds the same erased entries as a scope's slab (see
//! `entry.rs`), in `N` bytes of 16-aligned inline storage that *moves
//! with the stack*: it is an ordinary value until [`DeferStack::dispose`]
//! pins it. So its inline entries are chained by offsets (in the head's
//! link, as a plain integer: offset + 1, 0 for none), never by pointers;
//! an entry aligned to at most 16 sits at the same offset after any
//! 16-aligned address. Entries past the inline bytes (with a growing
//! flavour and `alloc`) get heap blocks of their own, all newer than every
//! inline entry. When the stack is run — disposed of, or dropped — it is in
//! place for good: the entries are chained by pointers, newest first, and
//! driven by the scopes' own driver (`drive.rs`).
//!
//! A payload moved in from a scope was never polled, so it may move; it is
//! *portable* — it never reads its scope's typed output — so it runs with
//! the stack's own exit: the stack's owner "returned" ([`Outcome::Ok`]), or
//! panicked if the stack is dropped while a panic unwinds. Conditions set
//! with `When` are kept.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use super::drive::{self, Driver, Ends, Sequential};
use super::entry::{Erased, Head, Live, async_vtable, sync_vtable};
use super::exit::{ExitHead, Outcome, When};
use super::flavour::{DEFAULT_CAPACITY, Fits, Flavour, Full, Sendable};
use super::payload::{Call, Now, Task};
use super::slab::ALIGN;
use crate::panic as panicking;

#[repr(C, align(16))]
struct Bytes<const N: usize>([MaybeUninit<u8>; N]);

/// Cleanup you own: LIFO, sync and async, outliving the scope that filled
/// it. Dropping it runs its sync cleanup (and hands its async cleanup over,
/// as a cancelled scope does: see [`cancel`](crate::cancel));
/// [`dispose`](Self::dispose) runs all of it, awaiting the async ones.
///
/// The JavaScript proposal's "assist in complex construction": register
/// cleanup for what a constructor opens; if it fails, everything opened so
/// far is cleaned up; if it succeeds, the object keeps the stack.
///
/// ```
/// # futures::executor::block_on(async {
/// use std::sync::{Arc, Mutex};
/// use deferral::DeferStack;
/// struct Host {
///     cleanup: DeferStack,
/// }
/// fn open(fail: bool, log: &Arc<Mutex<Vec<&'static str>>>) -> Result<Host, &'static str> {
///     let mut stack: DeferStack = DeferStack::new();
///     let l = log.clone();
///     stack.defer(move || l.lock().unwrap().push("channel closed"));
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
pub struct DeferStack<K: Flavour = Sendable, const N: usize = DEFAULT_CAPACITY> {
    bytes: UnsafeCell<Bytes<N>>,
    /// Bytes used from the start.
    used: usize,
    /// Offset + 1 of the newest inline entry's head; 0: none.
    top: usize,
    /// Pending entries, inline and on the heap.
    len: usize,
    /// Entries past the inline bytes, oldest first (`alloc`).
    #[cfg(feature = "alloc")]
    heap: alloc::vec::Vec<super::entry::BoxedEntry>,
    _flavour: PhantomData<K>,
}

// SAFETY: the stack owns its payloads; with a `Send` flavour they are all
// `Send` (the registration bounds), and its pointers point into memory it
// owns (its heap blocks).
unsafe impl<K: Flavour + Send, const N: usize> Send for DeferStack<K, N> {}
// SAFETY: `&DeferStack` gives access to nothing but its count.
unsafe impl<K: Flavour, const N: usize> Sync for DeferStack<K, N> {}

impl<K: Flavour, const N: usize> fmt::Debug for DeferStack<K, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferStack")
            .field("len", &self.len)
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
            bytes: UnsafeCell::new(Bytes([MaybeUninit::uninit(); N])),
            used: 0,
            top: 0,
            len: 0,
            #[cfg(feature = "alloc")]
            heap: alloc::vec::Vec::new(),
            _flavour: PhantomData,
        }
    }

    /// How many cleanups are pending.
    ///
    /// ```
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| ());
    /// assert_eq!(stack.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing is pending.
    ///
    /// ```
    /// assert!(deferral::DeferStack::<deferral::scope::Sendable, 64>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves everything out into a new stack and leaves this one empty —
    /// JavaScript's `DisposableStack.move()`, Python's `ExitStack.pop_all()`.
    ///
    /// ```
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| println!("closed by whoever owns the stack"));
    /// let owned = stack.take();
    /// assert!(stack.is_empty() && owned.len() == 1);
    /// ```
    pub fn take(&mut self) -> Self {
        core::mem::take(self)
    }

    /// Defers `f` (run when the stack is dropped or disposed of, LIFO). In
    /// a [`Fixed`](super::Fixed) stack, returns `Err(Full)` with `f` when
    /// it is full.
    ///
    /// ```
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| println!("bye"));
    /// drop(stack); // prints "bye"
    /// ```
    #[track_caller]
    pub fn defer<F>(&mut self, f: F) -> K::Reg<(), F>
    where
        F: FnOnce() + Fits<K>,
    {
        K::reg(
            self.push(sync_vtable::<(), Call<F>>(), Call(f))
                .map_err(|Call(f)| Full(f)),
        )
    }

    /// Defers a future, awaited by [`dispose`](Self::dispose). If the stack
    /// is dropped instead, it is handed over as a cancelled scope's would be
    /// (see [`cancel`](crate::cancel)).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer_async(async { println!("flushed") });
    /// stack.dispose().await;
    /// # });
    /// ```
    #[track_caller]
    pub fn defer_async<Fut>(&mut self, fut: Fut) -> K::Reg<(), Fut>
    where
        Fut: Future<Output = ()> + Fits<K>,
    {
        let task: Task<Now<Fut>, Fut> = Task::Waiting(Now(fut));
        K::reg(
            self.push(async_vtable::<(), Task<Now<Fut>, Fut>>(), task)
                .map_err(|task| match task {
                    Task::Waiting(Now(fut)) => Full(fut),
                    _ => unreachable!(),
                }),
        )
    }

    fn base(&mut self) -> *mut u8 {
        self.bytes.get().cast()
    }

    /// Room for an entry of `layout`: inline, or a heap block (a growing
    /// flavour with `alloc`). Calls `write` with it.
    fn room(&mut self, layout: core::alloc::Layout, write: impl FnOnce(NonNull<Head>)) -> bool {
        #[cfg(feature = "alloc")]
        let spilled = !self.heap.is_empty();
        #[cfg(not(feature = "alloc"))]
        let spilled = false;
        if !spilled && layout.align() <= ALIGN {
            let start = self.used.next_multiple_of(layout.align());
            if start.checked_add(layout.size()).is_some_and(|end| end <= N) {
                // One pointer to the bytes: every other is derived from it.
                let at = self.base().wrapping_add(start).cast::<Head>();
                // SAFETY: inside our bytes, aligned for the entry.
                let at = unsafe { NonNull::new_unchecked(at) };
                write(at);
                Erased(at).set_link(ptr::without_provenance_mut(self.top));
                self.top = start + 1;
                self.used = start + layout.size();
                self.len += 1;
                return true;
            }
        }
        let _ = write;
        false
    }

    fn push<P>(&mut self, vtable: &'static super::entry::VTable, payload: P) -> Result<(), P> {
        let mut payload = Some(payload);
        let placed = self.room(vtable.layout, |at| {
            let payload = payload.take().expect("once");
            // SAFETY: `room` reserved the entry's bytes.
            unsafe { Head::write(at, Head::new(vtable, When::Always, ptr::null_mut()), payload) }
        });
        if placed {
            return Ok(());
        }
        let payload = payload.take().expect("not placed");
        #[cfg(feature = "alloc")]
        if K::GROWS {
            self.heap.push(super::entry::BoxedEntry::with(vtable, payload));
            self.len += 1;
            return Ok(());
        }
        Err(payload)
    }

    /// Takes a live, never-polled, portable entry of a scope (claimed by
    /// the caller once this returns `true`); `false` (untouched) if there
    /// is no room. Copies bytes only: no user code runs.
    ///
    /// # Safety
    /// As [`Live::move_to`]'s source; the payload fits the flavour `K`.
    pub(crate) unsafe fn accept(&mut self, live: Live) -> bool {
        // SAFETY: `room` reserved the entry's bytes; as the caller
        // guarantees.
        if self.room(live.vtable.layout, |at| unsafe {
            live.move_to(at);
        }) {
            return true;
        }
        #[cfg(feature = "alloc")]
        if K::GROWS {
            // SAFETY: as the caller guarantees.
            self.heap.push(unsafe { super::entry::BoxedEntry::new(live) });
            self.len += 1;
            return true;
        }
        false
    }

    /// Chains every entry by pointers, newest first, and hands the chain
    /// over: the stack is empty afterwards but for the heap blocks, which
    /// it frees when dropped (their payloads are the chain's). The stack
    /// must not move while the chain is in use.
    fn chain(&mut self) -> *mut Head {
        let base = self.base();
        let mut first: *mut Head = ptr::null_mut();
        let mut last: Option<Erased> = None;
        let mut append = |entry: Erased| {
            match last {
                Some(last) => last.set_link(entry.0.as_ptr()),
                None => first = entry.0.as_ptr(),
            }
            last = Some(entry);
        };
        #[cfg(feature = "alloc")]
        for block in self.heap.iter().rev() {
            append(Erased(block.head()));
        }
        let mut top = self.top;
        while top != 0 {
            let at = Erased(NonNull::new(base.wrapping_add(top - 1).cast()).expect("inside"));
            top = at.link().addr();
            append(at);
        }
        if let Some(last) = last {
            last.set_link(ptr::null_mut());
        }
        self.top = 0;
        self.used = 0;
        self.len = 0;
        first
    }

    /// Drops every pending cleanup unrun; returns how many.
    ///
    /// ```
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| unreachable!());
    /// assert_eq!(stack.clear(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// With `std`, if a destructor panics the others are still dropped,
    /// then the first panic resumes.
    pub fn clear(&mut self) -> usize {
        let first = self.chain();
        // The heap blocks are freed afterwards, also if a destructor panics.
        #[cfg(feature = "alloc")]
        struct Free<'a>(&'a mut alloc::vec::Vec<super::entry::BoxedEntry>);
        #[cfg(feature = "alloc")]
        impl Drop for Free<'_> {
            fn drop(&mut self) {
                self.0.clear();
            }
        }
        #[cfg(feature = "alloc")]
        let _free = Free(&mut self.heap);
        super::slab::drain(first)
    }

    /// Runs everything, LIFO: sync cleanup runs, async cleanup is awaited
    /// — `DisposableStack.disposeAsync()`, `AsyncExitStack.aclose()`. Each
    /// sees its owner as having returned. A panic in one does not stop the
    /// others; the first resumes at the end (`std`).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let mut stack: deferral::DeferStack = deferral::DeferStack::new();
    /// stack.defer(|| println!("2"));
    /// stack.defer_async(async { println!("1") });
    /// stack.dispose().await;
    /// # });
    /// ```
    pub fn dispose(self) -> Dispose<K, N> {
        Dispose {
            stack: self,
            drive: None,
            exit: ExitHead::detached(Outcome::Ok),
            _pinned: PhantomPinned,
        }
    }
}

impl<K: Flavour, const N: usize> Drop for DeferStack<K, N> {
    /// Runs the sync cleanup (LIFO); async cleanup cannot be awaited here:
    /// a `Send + 'static` stack hands it over, otherwise it is dropped.
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        let unwinding = panicking::unwinding();
        let mut exit = ExitHead::detached(if unwinding {
            Outcome::Panicked
        } else {
            Outcome::Ok
        });
        let mut drive = Sequential::new(self.chain());
        // SAFETY: the chain is ours, in place until the heap blocks are
        // freed below; `exit` is ours.
        unsafe { cancel::<K>(&mut drive, NonNull::from(&mut exit)) };
        #[cfg(feature = "alloc")]
        self.heap.clear();
        if let Some(p) = exit.panic.take() {
            panicking::resume_unless_panicking(p);
        }
    }
}

/// Finishes a stack's chain that cannot be awaited: sync cleanup runs,
/// async cleanup is handed over (`Sendable`) or dropped.
///
/// # Safety
/// The chain is the caller's, in place; `exit` is live and unborrowed.
unsafe fn cancel<K: Flavour>(drive: &mut Sequential, exit: NonNull<ExitHead>) -> usize {
    let ends = Ends {
        exit,
        classify: None,
    };
    let dropped = core::cell::Cell::new(0);
    // SAFETY: as the caller guarantees.
    unsafe {
        drive::cancel(drive, ends, |live| {
            // SAFETY: a claimed, never-polled async entry of the stack.
            if K::SENDABLE {
                crate::cancel::hand_over(live, ends.outcome(), &dropped)
            } else {
                crate::cancel::drop_unpolled(live, &dropped)
            }
        })
    }
}

/// The future of [`DeferStack::dispose`]. `Send` when the stack is.
///
/// ```
/// # futures::executor::block_on(async {
/// let stack: deferral::DeferStack = deferral::DeferStack::new();
/// let dispose: deferral::scope::Dispose = stack.dispose();
/// dispose.await;
/// # });
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Dispose<K: Flavour = Sendable, const N: usize = DEFAULT_CAPACITY> {
    stack: DeferStack<K, N>,
    /// Started at the first poll, once the stack is pinned.
    drive: Option<Sequential>,
    exit: ExitHead,
    _pinned: PhantomPinned,
}

impl<K: Flavour, const N: usize> fmt::Debug for Dispose<K, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nothing of the (pinned, possibly self-borrowing) cleanup is read.
        f.debug_struct("Dispose")
            .field("started", &self.drive.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: Flavour, const N: usize> Future for Dispose<K, N> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: nothing is moved out; the stack's bytes stay where they
        // are from now on (the future is pinned), so entries may be polled
        // in place.
        let this = unsafe { self.get_unchecked_mut() };
        let drive = match &mut this.drive {
            Some(drive) => drive,
            None => {
                let first = this.stack.chain();
                this.drive.insert(Sequential::new(first))
            }
        };
        let ends = Ends {
            exit: NonNull::from(&mut this.exit),
            classify: None,
        };
        // SAFETY: the chain is ours and pinned; `ends` is our exit.
        core::task::ready!(unsafe { drive::drive(drive, ends, cx) });
        if let Some(p) = this.exit.panic.take() {
            panicking::resume(p);
        }
        Poll::Ready(())
    }
}

impl<K: Flavour, const N: usize> Drop for Dispose<K, N> {
    fn drop(&mut self) {
        // Dropped before it finished: the rest goes the way of a dropped
        // stack (unstarted, in the stack's own `Drop`, if never polled).
        if let Some(drive) = &mut self.drive {
            if panicking::unwinding() {
                self.exit.flags = ExitHead::detached(Outcome::Panicked).flags;
            }
            // SAFETY: the chain is ours, in place; the exit is ours.
            unsafe { cancel::<K>(drive, NonNull::from(&mut self.exit)) };
            if let Some(p) = self.exit.panic.take() {
                panicking::resume_unless_panicking(p);
            }
        }
    }
}
