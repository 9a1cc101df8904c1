//! The future inside a [`DeferredPromise`](crate::DeferredPromise): the
//! sealed trait [`PromiseFuture`], implemented by one small future per
//! constructor and combinator, and (with `alloc`) its type-erased heap form
//! [`Erased`] / [`LocalErased`], the third parameter of a boxed promise.
//!
//! # How the erased form works
//!
//! An erased promise owns one heap *node*: a `Box`ed [`PromiseFuture`]
//! behind the object-safe trait `Raw`. A node that waits on another erased
//! promise — a link of a chain built on a boxed promise with
//! `deferred_then`/`deferred_catch`/... — names that promise's node as its
//! *pending child*. Polling the outermost promise never recurses through the
//! chain: the driver ([`drive`]) walks down the pending children to the
//! deepest one, keeping the path on a small stack (inline for the first 16
//! nodes, then a `Vec`), polls that node's own future, and on `Ready` climbs
//! one node up and polls that one, whose source is now settled. Each node
//! keeps its settlement in itself (an `Option<Result<T, E>>`) until its
//! parent takes it, in the same drive; the untyped driver never touches a
//! value. Dropping is iterative too: the chain is detached link by link and
//! the nodes are dropped innermost first, as nested drop glue would.
//!
//! So a chain of 100,000 links settles and drops in constant stack, in time
//! linear in its length.
//!
//! # Accessors over pinned futures
//!
//! `&self` methods of a promise ([`DeferredPromise::state`], `Debug`,
//! `is_terminated`) must not make a shared reference over a future that may
//! borrow itself (an `async` block paused while holding a reference to its
//! own local): under Stacked Borrows that reference's read would invalidate
//! the future's inner borrow. So every such future is kept behind an
//! `UnsafeCell` (the promise's and the node's), and the state those
//! accessors read lives outside it (the promise's `progress` byte) or is
//! read through [`PromiseFuture::peek`], which only the cell-backed futures
//! implement, by reading their own plain fields and an atomic.
//!
//! [`DeferredPromise::state`]: crate::DeferredPromise::state

use core::future::Future;
#[cfg(any(feature = "std", not(feature = "alloc")))]
use core::pin::Pin;
#[cfg(any(feature = "std", not(feature = "alloc")))]
use core::task::{Context, Poll};

use super::state::PromiseState;

/// Without `std` a promise keeps nothing of its creation context
/// ([`crate::context::Captured`] is `()`): there is no current context to
/// capture or restore. (With `std` it is a `Snapshot`, whose own `capture`
/// is used.)
#[cfg(not(feature = "std"))]
pub(crate) trait ContextSlot {
    /// Captures nothing.
    fn capture() -> Self;
}

#[cfg(not(feature = "std"))]
impl ContextSlot for () {
    #[inline(always)]
    fn capture() {}
}

/// Calls `f` inside `context`: inline when that changes nothing (`context`
/// and the current one are empty: a thread-local load and a branch);
/// otherwise the context is entered out of line and left when the guard
/// drops (also on unwind). The slow path takes neither a closure nor an
/// address, so `f` — a promise's poll — is inlined once and the future's
/// state is not handed to an opaque call (which kept it in memory on the
/// fast path too: 44 → 32 → 23 instructions for `new`).
#[inline(always)]
pub(crate) fn in_context<R>(context: &crate::context::Captured, f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "std")]
    {
        let _entered = if context.runs_as_is() {
            None
        } else {
            Some(context.enter_out_of_line())
        };
        f()
    }
    #[cfg(not(feature = "std"))]
    {
        let () = context;
        f()
    }
}

pub(crate) mod sealed {
    /// Only this crate's futures are [`PromiseFuture`](super::PromiseFuture)s.
    pub trait Sealed {}
}

/// The future a [`DeferredPromise`](crate::DeferredPromise) drives: one per
/// constructor and combinator ([`Executor`](crate::promise::Executor),
/// [`Lazy`](crate::promise::Lazy), [`Ready`](crate::promise::Ready),
/// [`Then`](crate::promise::Then), [`CellPromise`](crate::promise::CellPromise),
/// ..., and [`Erased`] for boxed promises). Sealed: it is the third
/// parameter of `DeferredPromise<T, E, F>`, never implemented outside this
/// crate.
///
/// ```
/// use deferral::DeferredPromise;
/// use deferral::promise::PromiseFuture;
///
/// fn unstarted<T, E, F: PromiseFuture<T, E>>(p: &DeferredPromise<T, E, F>) -> bool {
///     !p.state().is_settled()
/// }
/// assert!(unstarted(&DeferredPromise::<u8, deferral::PromiseError<()>>::new(|r| r.resolve(1))));
/// ```
pub trait PromiseFuture<T, E>: Future<Output = Result<T, E>> + sealed::Sealed {
    /// Whether [`peek`](Self::peek) knows more than the promise's own
    /// progress (the cell-backed futures: a resolver may settle them
    /// before they are polled).
    #[doc(hidden)]
    const PEEKS: bool = false;

    /// Whether polling again after a panic out of `poll` is meaningful:
    /// only for the cell-backed futures, whose panics come from a waker's
    /// destructor while the settlement stays in the slot (the next poll
    /// takes it). Every other future is finished by a panic.
    #[doc(hidden)]
    const RESUMES_AFTER_PANIC: bool = false;

    /// What the future would find if polled now.
    ///
    /// # Safety
    ///
    /// `this` points to a live future that nobody accesses mutably right
    /// now; only called when [`PEEKS`](Self::PEEKS) is `true`.
    #[doc(hidden)]
    unsafe fn peek(this: *const Self, unstarted: bool) -> PromiseState {
        let _ = this;
        if unstarted {
            PromiseState::Pending(super::state::Progress::Unstarted)
        } else {
            PromiseState::Pending(super::state::Progress::Started)
        }
    }

    /// `poll` with a panic caught; a future that settled before the panic
    /// (a resolver that settled, then its executor panicked) returns that
    /// settlement instead: a throw after `resolve` is ignored in JS.
    #[cfg(feature = "std")]
    #[doc(hidden)]
    fn poll_catching(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Result<Poll<Result<T, E>>, crate::panic::Panic> {
        crate::panic::catch(|| self.poll(cx))
    }

    /// This future on the heap, erased (`boxed`); an erased one is moved,
    /// not boxed again.
    #[cfg(feature = "alloc")]
    #[doc(hidden)]
    fn into_erased<'a>(self) -> Erased<'a, T, E>
    where
        Self: Sized + Send + 'a,
        T: 'a,
        E: 'a,
    {
        Erased(RawErased::leaf(self))
    }

    /// This future on the heap, erased, not `Send` (`boxed_local`).
    #[cfg(feature = "alloc")]
    #[doc(hidden)]
    fn into_local_erased<'a>(self) -> LocalErased<'a, T, E>
    where
        Self: Sized + 'a,
        T: 'a,
        E: 'a,
    {
        LocalErased(RawErased::leaf(self))
    }
}

// ------------------------------------------------------------ erased form

#[cfg(not(feature = "alloc"))]
mod no_alloc {
    use core::convert::Infallible;
    use core::marker::PhantomData;

    /// What `Erased` stands for, as a type.
    type Output<'a, T, E> = (&'a (), fn() -> Result<T, E>);

    /// The third parameter of a boxed `DeferredPromise` (with `alloc`).
    /// Without `alloc` nothing is boxed: the type exists (it is the default
    /// of `DeferredPromise<T, E>`) but has no value.
    ///
    /// ```
    /// # #[cfg(not(feature = "alloc"))]
    /// let _: Option<deferral::promise::Erased<'static, u8, ()>> = None;
    /// ```
    pub struct Erased<'a, T, E> {
        pub(super) never: Infallible,
        pub(super) _output: PhantomData<Output<'a, T, E>>,
    }
}
#[cfg(not(feature = "alloc"))]
pub use no_alloc::Erased;

#[cfg(not(feature = "alloc"))]
impl<T, E> Future for Erased<'_, T, E> {
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        match self.never {}
    }
}

#[cfg(not(feature = "alloc"))]
impl<T, E> sealed::Sealed for Erased<'_, T, E> {}
#[cfg(not(feature = "alloc"))]
impl<T, E> PromiseFuture<T, E> for Erased<'_, T, E> {}

#[cfg(feature = "alloc")]
pub use erased::{Erased, LocalErased};
#[cfg(feature = "alloc")]
pub(crate) use erased::{NodeFuture, OwnedNode, Raw, RawErased};

#[cfg(feature = "alloc")]
mod erased {
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use core::cell::{Cell, UnsafeCell};
    use core::future::Future;
    use core::marker::PhantomData;
    use core::mem::ManuallyDrop;
    use core::pin::Pin;
    use core::ptr::NonNull;
    use core::task::{Context, Poll};

    use super::{PromiseFuture, sealed};
    use crate::promise::state::PromiseState;

    /// The object-safe, untyped face of a heap node (see the module docs).
    ///
    /// Every method takes `&self`: the node's future and settlement are in
    /// `UnsafeCell`s, and the driver holds the only access to a node while
    /// it calls them (the chain is exclusively borrowed by the poll or drop
    /// of its outermost promise).
    pub(crate) trait Raw {
        /// The unfinished erased node this one waits on, if any.
        ///
        /// # Safety
        ///
        /// No other access to this node is in progress.
        unsafe fn pending_child(&self) -> Option<NonNull<dyn Raw + '_>>;

        /// Polls this node's own future (its erased child, if any, has
        /// finished); on `Ready` the settlement is kept in the node.
        ///
        /// # Safety
        ///
        /// As for `pending_child`; the node is pinned (it never moves
        /// out of its `Box`).
        unsafe fn advance(&self, cx: &mut Context<'_>) -> Poll<()>;

        /// Moves the kept settlement to `out`, which points to an
        /// `Option<Result<T, E>>` of this node's output type.
        ///
        /// # Safety
        ///
        /// As for `pending_child`, and `out` is valid and of the node's
        /// output type (the typed handle, [`RawErased`], guarantees it).
        unsafe fn take_output(&self, out: *mut ());

        /// What the node's future would find if polled now.
        ///
        /// # Safety
        ///
        /// No mutable access to the node is in progress.
        unsafe fn peek(&self, unstarted: bool) -> PromiseState;

        /// Takes the erased child out, for the iterative drop.
        ///
        /// # Safety
        ///
        /// As for `pending_child`.
        unsafe fn take_child(&self) -> Option<OwnedNode<'_>>;

        /// Whether the node keeps its settlement (its future finished).
        ///
        /// # Safety
        ///
        /// No mutable access to the node is in progress.
        unsafe fn is_finished(&self) -> bool;
    }

    /// An owned heap node (a `Box<dyn Raw>` by another name, so that moving
    /// it never retags the node it points to).
    pub(crate) struct OwnedNode<'a>(NonNull<dyn Raw + 'a>);

    impl<'a> OwnedNode<'a> {
        pub(crate) fn new<N: Raw + 'a>(node: N) -> Self {
            let raw: NonNull<dyn Raw + 'a> = NonNull::from(Box::leak(Box::new(node)));
            OwnedNode(raw)
        }

        /// The node, for the driver.
        pub(crate) fn ptr(&self) -> NonNull<dyn Raw + 'a> {
            self.0
        }
    }

    impl Drop for OwnedNode<'_> {
        fn drop(&mut self) {
            // SAFETY: the pointer came from `Box::leak` in `new` and is
            // owned by this handle alone; it is freed once, here.
            drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        }
    }

    /// `Leaf::state` values.
    const RUNNING: u8 = 0;
    /// The future was dropped; the settlement waits in `output`.
    const DONE: u8 = 1;

    /// A node over one future (a [`NodeFuture`]). Nothing here is ever
    /// reached through a shared reference but the `Cell` and the
    /// `UnsafeCell`s, so `&Leaf` never reads the future's bytes.
    struct Leaf<F: Future> {
        /// Pinned (never moved); dropped in place when it finishes.
        future: UnsafeCell<ManuallyDrop<F>>,
        output: UnsafeCell<Option<F::Output>>,
        state: Cell<u8>,
    }

    impl<F: Future> Drop for Leaf<F> {
        fn drop(&mut self) {
            if self.state.get() == RUNNING {
                // SAFETY: still running: the future is initialised, and it
                // is dropped in place once (pinned data may be).
                unsafe { ManuallyDrop::drop(self.future.get_mut()) };
            }
        }
    }

    impl<F: NodeFuture> Raw for Leaf<F> {
        unsafe fn pending_child(&self) -> Option<NonNull<dyn Raw + '_>> {
            if self.state.get() != RUNNING {
                return None;
            }
            // SAFETY: running: the future is initialised; the caller has
            // the only access to the node.
            unsafe { F::pending_child(self.future.get().cast::<F>()) }
        }

        unsafe fn advance(&self, cx: &mut Context<'_>) -> Poll<()> {
            if self.state.get() != RUNNING {
                return Poll::Ready(());
            }
            // SAFETY: the caller has the only access to the node, which is
            // pinned in its `Box`; the future is never moved (only dropped
            // in place, below or in `Drop`).
            let future = unsafe { Pin::new_unchecked(&mut **self.future.get()) };
            let output = core::task::ready!(future.poll(cx));
            // The state first: if the destructor panics, the future is not
            // dropped again by `Drop`.
            self.state.set(DONE);
            // SAFETY: as above; dropped in place exactly once.
            unsafe { ManuallyDrop::drop(&mut *self.future.get()) };
            // SAFETY: the only access to the node.
            unsafe { *self.output.get() = Some(output) };
            Poll::Ready(())
        }

        unsafe fn take_output(&self, out: *mut ()) {
            // SAFETY: the caller has the only access to the node; `out` is
            // an `Option<F::Output>` (the typed handle's promise).
            unsafe { *out.cast::<Option<F::Output>>() = (*self.output.get()).take() };
        }

        unsafe fn peek(&self, unstarted: bool) -> PromiseState {
            if self.state.get() != RUNNING {
                return PromiseState::Pending(crate::promise::Progress::Started);
            }
            // SAFETY: nobody accesses the node mutably; `peek_node` reads
            // plain fields and atomics only.
            unsafe { F::peek_node(self.future.get().cast::<F>(), unstarted) }
        }

        unsafe fn take_child(&self) -> Option<OwnedNode<'_>> {
            if self.state.get() != RUNNING {
                return None;
            }
            // SAFETY: the caller has the only access to the node.
            unsafe { F::take_child(self.future.get().cast::<F>()) }
        }

        unsafe fn is_finished(&self) -> bool {
            self.state.get() != RUNNING
        }
    }

    /// What a leaf needs of its future beyond polling: the hooks of an
    /// erased chain link (a future whose source is an erased promise),
    /// defaulted for every other future. They take raw pointers: a chain
    /// link may hold a self-borrowing reaction future, which no shared
    /// reference may cover.
    pub(crate) trait NodeFuture: Future {
        /// The unfinished erased node this future waits on.
        ///
        /// # Safety
        ///
        /// `this` is live and nobody else accesses it.
        unsafe fn pending_child<'s>(this: *const Self) -> Option<NonNull<dyn Raw + 's>>
        where
            Self: 's,
        {
            let _ = this;
            None
        }

        /// Takes the erased node this future waits on out (for dropping).
        ///
        /// # Safety
        ///
        /// As for `pending_child`.
        unsafe fn take_child<'s>(this: *mut Self) -> Option<OwnedNode<'s>>
        where
            Self: 's,
        {
            let _ = this;
            None
        }

        /// [`PromiseFuture::peek`].
        ///
        /// # Safety
        ///
        /// As for `PromiseFuture::peek`.
        unsafe fn peek_node(this: *const Self, unstarted: bool) -> PromiseState;
    }

    /// The typed handle on a node: `Raw` whose output is `Result<T, E>`.
    pub(crate) struct RawErased<'a, T, E> {
        node: Option<OwnedNode<'a>>,
        _output: PhantomData<fn() -> Result<T, E>>,
    }

    impl<'a, T: 'a, E: 'a> RawErased<'a, T, E> {
        /// A node over `future`, which has no erased child.
        pub(crate) fn leaf<F: PromiseFuture<T, E> + 'a>(future: F) -> Self {
            Self::over(Plain(future))
        }

        /// A node over `future`, which may wait on an erased child (a
        /// chain link over a boxed promise).
        pub(crate) fn over<N>(future: N) -> Self
        where
            N: NodeFuture<Output = Result<T, E>> + 'a,
        {
            RawErased {
                node: Some(OwnedNode::new(Leaf {
                    future: UnsafeCell::new(ManuallyDrop::new(future)),
                    output: UnsafeCell::new(None),
                    state: Cell::new(RUNNING),
                })),
                _output: PhantomData,
            }
        }
    }

    impl<'a, T, E> RawErased<'a, T, E> {
        /// The node, if it has not finished (for a parent's
        /// `pending_child`).
        pub(crate) fn pending(&self) -> Option<NonNull<dyn Raw + 'a>> {
            let node = self.node.as_ref()?.ptr();
            // SAFETY: the caller (a parent's `pending_child`) has the only
            // access to the chain.
            (!unsafe { node.as_ref().is_finished() }).then_some(node)
        }

        /// Takes the node out (for a parent's `take_child`).
        pub(crate) fn take(&mut self) -> Option<OwnedNode<'a>> {
            self.node.take()
        }

        fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
            let Some(node) = &self.node else {
                // The promise's wrapper never polls a finished future.
                panic!("`DeferredPromise` polled after completion");
            };
            core::task::ready!(drive(node.ptr(), cx));
            let mut out: Option<Result<T, E>> = None;
            // SAFETY: we own the node and nothing else accesses it; its
            // output type is `Result<T, E>` (how it was made).
            unsafe { node.ptr().as_ref().take_output((&raw mut out).cast()) };
            // The finished chain is dropped before the value is handed out.
            drop(self.node.take());
            match out {
                Some(out) => Poll::Ready(out),
                None => panic!("`DeferredPromise` polled after completion"),
            }
        }

        fn peek(&self, unstarted: bool) -> PromiseState {
            match &self.node {
                // SAFETY: `&self`: nobody accesses the node mutably.
                Some(node) => unsafe { node.ptr().as_ref().peek(unstarted) },
                None => PromiseState::Pending(crate::promise::Progress::Started),
            }
        }
    }

    impl<T, E> Drop for RawErased<'_, T, E> {
        fn drop(&mut self) {
            let Some(root) = self.node.take() else {
                return;
            };
            // SAFETY: we own the chain: nothing else accesses its nodes.
            let Some(child) = (unsafe { root.ptr().as_ref().take_child() }) else {
                return; // a single node: its drop glue recurses no further
            };
            // Detach the chain link by link, then drop innermost first (the
            // order nested drop glue would use); a node whose drop panics
            // leaves the rest to the `Vec`'s drop glue, each dropped once.
            // The lifetimes are forgotten: every node outlives this call.
            let mut nodes: Vec<OwnedNode<'_>> = Vec::new();
            nodes.push(root);
            let mut next = Some(forget_lifetime(child));
            while let Some(node) = next.take() {
                // SAFETY: as above.
                next = unsafe { node.ptr().as_ref().take_child() }.map(forget_lifetime);
                nodes.push(node);
            }
            while let Some(node) = nodes.pop() {
                drop(node);
            }
        }
    }

    /// Shortens nothing that matters: nodes of one chain are all alive until
    /// the drop loop above frees them, innermost first.
    fn forget_lifetime<'b>(node: OwnedNode<'_>) -> OwnedNode<'b> {
        let raw = node.0;
        core::mem::forget(node);
        // SAFETY: the same pointer, owned by the new handle; a trait
        // object's lifetime bound is not part of its layout. The node is
        // only used (dropped) while everything it borrows is alive: inside
        // the drop of the chain's outermost promise, which outlives it.
        OwnedNode(unsafe {
            core::mem::transmute::<NonNull<dyn Raw + '_>, NonNull<dyn Raw + 'b>>(raw)
        })
    }

    /// The path from the root to the node being polled: inline for short
    /// chains, on the heap beyond.
    struct Path<'a> {
        inline: [Option<NonNull<dyn Raw + 'a>>; 16],
        len: usize,
        spill: Vec<NonNull<dyn Raw + 'a>>,
    }

    impl<'a> Path<'a> {
        fn push(&mut self, node: NonNull<dyn Raw + 'a>) {
            if self.len < self.inline.len() {
                self.inline[self.len] = Some(node);
                self.len += 1;
            } else {
                self.spill.push(node);
            }
        }

        fn pop(&mut self) -> Option<NonNull<dyn Raw + 'a>> {
            if let Some(node) = self.spill.pop() {
                return Some(node);
            }
            if self.len == 0 {
                return None;
            }
            self.len -= 1;
            self.inline[self.len].take()
        }
    }

    /// Polls the chain under `root` without recursing (module docs).
    /// `Ready` once `root` keeps its settlement.
    fn drive<'a>(root: NonNull<dyn Raw + 'a>, cx: &mut Context<'_>) -> Poll<()> {
        // Why every deref below is sound: the root is exclusively borrowed
        // by the poll of its promise, and every node under it is owned by
        // its parent: the driver has the only access to each, one at a
        // time. Nodes are pinned in their `Box`es; a node is freed only by
        // its parent (after `advance` took its settlement), never while it
        // is on the path.
        let mut node = root;
        // The common case: a single node.
        // SAFETY: as above.
        let Some(child) = (unsafe { node.as_ref().pending_child() }) else {
            // SAFETY: as above.
            return unsafe { node.as_ref().advance(cx) };
        };
        let mut path = Path {
            inline: [None; 16],
            len: 0,
            spill: Vec::new(),
        };
        path.push(node);
        node = shorten(child);
        loop {
            // Down to the deepest unfinished node.
            // SAFETY: as above.
            while let Some(child) = unsafe { node.as_ref().pending_child() } {
                path.push(node);
                node = shorten(child);
            }
            // SAFETY: as above.
            core::task::ready!(unsafe { node.as_ref().advance(cx) });
            // Settled: its parent takes the settlement at its own advance.
            match path.pop() {
                Some(parent) => node = parent,
                None => return Poll::Ready(()),
            }
        }
    }

    /// A child's pointer at its parent's lifetime bound (children outlive
    /// their parents' borrows; see `drive`).
    fn shorten<'a>(child: NonNull<dyn Raw + '_>) -> NonNull<dyn Raw + 'a> {
        // SAFETY: as in `forget_lifetime`: the same pointer; it is only used
        // inside `drive`, while the whole chain is alive and borrowed.
        unsafe { core::mem::transmute::<NonNull<dyn Raw + '_>, NonNull<dyn Raw + 'a>>(child) }
    }

    /// Any [`PromiseFuture`] as a [`NodeFuture`] with no erased child.
    pub(crate) struct Plain<F>(F);

    impl<F: Future> Future for Plain<F> {
        type Output = F::Output;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            // SAFETY: structural pinning of the only field: `Plain` has no
            // `Drop`, is not `repr(packed)`, and never moves `F` out.
            unsafe { self.map_unchecked_mut(|plain| &mut plain.0) }.poll(cx)
        }
    }

    impl<T, E, F> NodeFuture for Plain<F>
    where
        F: PromiseFuture<T, E> + Future<Output = Result<T, E>>,
    {
        unsafe fn peek_node(this: *const Self, unstarted: bool) -> PromiseState {
            // SAFETY: as the caller guarantees; `Plain` is a newtype.
            unsafe { F::peek(&raw const (*this).0, unstarted) }
        }
    }

    /// The third parameter of a boxed, `Send` promise
    /// ([`BoxPromise<'a, T, E>`](crate::promise::BoxPromise), which
    /// `DeferredPromise<T, E>` is with `'a = 'static`): the promise's future
    /// on the heap, type-erased. Made by
    /// [`boxed`](crate::DeferredPromise::boxed). A chain built on a boxed
    /// promise with [`deferred_then`](crate::DeferredPromise::deferred_then)
    /// and friends settles and drops without recursion, however long.
    ///
    /// ```
    /// use deferral::DeferredPromise;
    ///
    /// let mut p: DeferredPromise<u64, ()> = DeferredPromise::resolved(0).boxed();
    /// for _ in 0..10_000 {
    ///     p = p.deferred_then(|v| Ok(v + 1));
    /// }
    /// assert_eq!(futures::executor::block_on(p), Ok(10_000));
    /// ```
    pub struct Erased<'a, T, E>(pub(crate) RawErased<'a, T, E>);

    /// The third parameter of a boxed promise that need not be `Send`
    /// ([`LocalBoxPromise<'a, T, E>`](crate::promise::LocalBoxPromise)); made
    /// by [`boxed_local`](crate::DeferredPromise::boxed_local).
    ///
    /// ```
    /// use deferral::promise::LocalBoxPromise;
    /// use deferral::DeferredPromise;
    /// use std::rc::Rc;
    ///
    /// let rc = Rc::new(2);
    /// let p: LocalBoxPromise<'_, u32, ()> =
    ///     DeferredPromise::lazy(move || async move { Ok(*rc) }).boxed_local();
    /// assert_eq!(futures::executor::block_on(p), Ok(2));
    /// ```
    pub struct LocalErased<'a, T, E>(pub(crate) RawErased<'a, T, E>);

    // SAFETY: an `Erased` is made only from `Send` futures (`into_erased`
    // requires it, and the chain links made on it require `Send` handlers),
    // and a settlement is kept in a node only within one poll, handed out
    // in that same poll: moving the handle moves `Send` futures, and `T`s
    // and `E`s only when they are `Send`.
    unsafe impl<T: Send, E: Send> Send for Erased<'_, T, E> {}
    // SAFETY: `&Erased` only reads (`peek`: plain fields and atomics).
    unsafe impl<T, E> Sync for Erased<'_, T, E> {}
    // SAFETY: as for `Erased`'s `Sync`.
    unsafe impl<T, E> Sync for LocalErased<'_, T, E> {}

    // The future is pinned on the heap.
    impl<T, E> Unpin for Erased<'_, T, E> {}
    impl<T, E> Unpin for LocalErased<'_, T, E> {}

    macro_rules! erased_impls {
        ($name:ident) => {
            impl<T, E> Future for $name<'_, T, E> {
                type Output = Result<T, E>;

                #[inline]
                fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
                    self.0.poll(cx)
                }
            }

            impl<T, E> sealed::Sealed for $name<'_, T, E> {}
        };
    }

    erased_impls!(Erased);
    erased_impls!(LocalErased);

    impl<'b, T, E> PromiseFuture<T, E> for Erased<'b, T, E> {
        const PEEKS: bool = true;
        const RESUMES_AFTER_PANIC: bool = true;

        unsafe fn peek(this: *const Self, unstarted: bool) -> PromiseState {
            // SAFETY: as the caller guarantees.
            unsafe { (*this).0.peek(unstarted) }
        }

        fn into_erased<'a>(self) -> Erased<'a, T, E>
        where
            Self: Sized + Send + 'a,
            T: 'a,
            E: 'a,
        {
            self // already on the heap: moved, not boxed again
        }

        fn into_local_erased<'a>(self) -> LocalErased<'a, T, E>
        where
            Self: Sized + 'a,
            T: 'a,
            E: 'a,
        {
            LocalErased(self.0)
        }
    }

    impl<'b, T, E> PromiseFuture<T, E> for LocalErased<'b, T, E> {
        const PEEKS: bool = true;
        const RESUMES_AFTER_PANIC: bool = true;

        unsafe fn peek(this: *const Self, unstarted: bool) -> PromiseState {
            // SAFETY: as the caller guarantees.
            unsafe { (*this).0.peek(unstarted) }
        }

        fn into_local_erased<'a>(self) -> LocalErased<'a, T, E>
        where
            Self: Sized + 'a,
            T: 'a,
            E: 'a,
        {
            self
        }
    }

    impl<'a, T, E> Erased<'a, T, E> {
        /// The node this promise waits on, for a chain link over it.
        pub(crate) fn pending(&self) -> Option<NonNull<dyn Raw + 'a>> {
            self.0.pending()
        }

        /// Takes the node out, for a chain link's iterative drop.
        pub(crate) fn take(&mut self) -> Option<OwnedNode<'a>> {
            self.0.take()
        }
    }

    impl<'a, T, E> LocalErased<'a, T, E> {
        /// As [`Erased::pending`].
        pub(crate) fn pending(&self) -> Option<NonNull<dyn Raw + 'a>> {
            self.0.pending()
        }

        /// As [`Erased::take`].
        pub(crate) fn take(&mut self) -> Option<OwnedNode<'a>> {
            self.0.take()
        }
    }
}
