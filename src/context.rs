//! `ContextVar` and `Snapshot`: values that follow a computation across
//! polls and into the work it defers — the Rust form of TC39 AsyncContext
//! (`AsyncContext.Variable`, `AsyncContext.Snapshot`).
//!
//! # How it works
//!
//! A [`Snapshot`] is an immutable map from variable to value, shared behind
//! one `Arc` (`hashbrown`, keys are the variables' ids, values
//! `Arc<dyn Any + Send + Sync>`). The empty snapshot is a null pointer, so
//! capturing, cloning and dropping it cost nothing and never allocate.
//! Setting a variable never mutates a map: it builds a new one (copy on
//! write, O(number of variables)), so a snapshot somebody captured — and the
//! caller's own context — can never change under them. Capturing the current
//! context is an `Arc` clone: O(1) whatever its size.
//!
//! With `std`, the *current* snapshot is a thread-local pointer to the map of
//! a snapshot owned by the innermost [`Snapshot::run`] / [`ContextVar::run`] frame or
//! [`WithContext`] poll on this thread; each of those restores the previous
//! pointer when it returns — also when it unwinds — so a value set inside
//! never leaks out. The thread-local has no destructor and a `const`
//! initialiser: reading it is a plain thread-local load.
//!
//! Without `std` there is no thread-local: the same types work with the
//! snapshot passed explicitly ([`Snapshot::with_value`], [`Snapshot::get`]),
//! see "Firmware" below. Without `alloc` there is no map, and nothing of this
//! module is public.
//!
//! # Where it propagates by itself (`std`)
//!
//! - A [`DeferredPromise`](crate::DeferredPromise) (every constructor and
//!   every [`PromiseExt`](crate::PromiseExt) combinator) captures the current
//!   snapshot when it is created and runs its executor or handler — and
//!   polls what it started — inside that snapshot, not the one current at
//!   its first poll (the seed's `123`, not `'abc'`). Promises that run no
//!   code (`resolved`, `rejected`, `PromiseCell::promise`) capture nothing.
//! - A thunk registered on a [`DeferScope`](crate::DeferScope) runs (or is
//!   polled, and dropped if its scope is cancelled before it finished) in
//!   the snapshot that was current when it was registered.
//! - A [`SharedPromise`](crate::SharedPromise)'s source is polled in the
//!   snapshot current at `SharedPromise::new`, whichever clone drives it.
//!
//! Nothing else captures. A plain future — an `async` block, a
//! `TaskQueue` task — is a value, not a call: `V.run(v, || async { .. })`
//! returns a future that does **not** keep `v` (TC39's async functions
//! keep the context of their call; a Rust future runs in the context of
//! whoever polls it). To keep it, wrap the future
//! ([`ContextVar::scope`], [`Snapshot::wrap`]) or make it a promise
//! (`DeferredPromise::lazy(|| fut)`). Likewise a [`TaskQueue`](crate::TaskQueue)
//! runs its tasks in the consumer's context: push a wrapped future or a
//! promise to keep the pusher's.
//!
#![cfg_attr(feature = "std", doc = "```")]
#![cfg_attr(not(feature = "std"), doc = "```ignore")]
//! use deferral::{ContextVar, DeferredPromise, PromiseError};
//!
//! static AC: ContextVar<u32> = ContextVar::new();
//!
//! // `ac.run(123, () => Promise.defer((res) => res(ac.get())))` (the seed's
//! // `Promise.defer`, today's TC39 `Promise.lazy` proposal)
//! let p = AC.run(123, || DeferredPromise::<_, PromiseError<()>>::new(|res| res.resolve(AC.get())));
//! // `ac.run('abc', () => p.then(..))`: the executor still sees 123.
//! let seen = AC.run(456, || futures::executor::block_on(p));
//! assert_eq!(seen, Ok(Some(123)));
//! assert_eq!(AC.get(), None); // nothing leaked out
//! ```
//!
//! # Firmware (no `std`)
//!
//! Without a thread-local there is no "current" snapshot: a task keeps its
//! `Snapshot` and passes it (or a clone: O(1)) to the work it starts. On a
//! single-core executor a task may publish its snapshot in a `static` for
//! the duration of each poll — exactly what the thread-local does with
//! `std` — as long as interrupt handlers never read it (they interrupt an
//! arbitrary task):
//!
#![cfg_attr(feature = "alloc", doc = "```")]
#![cfg_attr(not(feature = "alloc"), doc = "```ignore")]
//! use deferral::{ContextVar, Snapshot};
//!
//! static DEVICE: ContextVar<&'static str> = ContextVar::new();
//!
//! fn handle(ctx: &Snapshot) -> usize {
//!     ctx.get(&DEVICE).map_or(0, |name| name.len())
//! }
//!
//! let root = Snapshot::empty();
//! let uart = root.with_value(&DEVICE, "uart0"); // a new map; `root` is unchanged
//! let for_later = uart.clone(); // O(1): move it into deferred work
//! assert_eq!(handle(&uart), 5);
//! assert_eq!(handle(&for_later), 5);
//! assert_eq!(handle(&root), 0);
//! ```

#[cfg(feature = "std")]
pub use imp::WithContext;
#[cfg(feature = "alloc")]
pub use imp::{ContextVar, Snapshot};

/// What a [`DeferredPromise`](crate::DeferredPromise) or a deferred thunk
/// keeps of its creation context: the snapshot with `std`, nothing without
/// (there is no current context to capture or restore).
#[cfg(feature = "std")]
pub(crate) type Captured = Snapshot;
/// What a [`DeferredPromise`](crate::DeferredPromise) or a deferred thunk
/// keeps of its creation context: nothing without `std`.
#[cfg(not(feature = "std"))]
pub(crate) type Captured = ();

/// Runs `f` in the empty context (the context of a thunk registered outside
/// any value), restoring the current one afterwards.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn isolated<R>(f: impl FnOnce() -> R) -> R {
    imp::EMPTY.run(f)
}

/// Runs `f`: without `std` there is no current context to isolate from.
#[cfg(not(feature = "std"))]
pub(crate) fn isolated<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(feature = "alloc")]
mod imp {
    use alloc::sync::Arc;
    use core::any::Any;
    use core::fmt;
    use core::hash::{BuildHasher, Hasher};
    use core::marker::PhantomData;
    // Not the `crate::sync` shim: a `ContextVar` must be const-constructible
    // in a `static`, and its id is not part of any cross-thread handoff loom
    // would model.
    use core::sync::atomic::{AtomicUsize, Ordering};

    use hashbrown::HashMap;

    type Value = Arc<dyn Any + Send + Sync>;

    /// A snapshot's variables. A type of its own for its `Drop`: hashbrown
    /// frees its table after dropping the values, in one function, so a
    /// value whose destructor panics would leak the table. Draining first
    /// keeps the table owned by this struct's field, which is freed by the
    /// drop glue even while that panic unwinds (the `Drain` drops the
    /// remaining values on the way, as `Vec` does).
    #[derive(Clone)]
    struct Map(HashMap<usize, Value, IdHash>);

    impl Drop for Map {
        fn drop(&mut self) {
            self.0.drain().for_each(drop);
        }
    }

    /// Hashes the (small, unique, sequential) variable ids: a Fibonacci
    /// multiply spreads them over the high bits hashbrown uses for its
    /// control bytes, and keeps the low bits (the bucket index) distinct.
    #[derive(Clone, Copy, Default)]
    struct IdHash;

    struct IdHasher(u64);

    impl BuildHasher for IdHash {
        type Hasher = IdHasher;
        fn build_hasher(&self) -> IdHasher {
            IdHasher(0)
        }
    }

    impl Hasher for IdHasher {
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
        }
        fn write_usize(&mut self, n: usize) {
            self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }

    /// A context variable: a typed key whose value follows the computation
    /// — TC39 `AsyncContext.Variable`, `tokio::task_local!` without the
    /// macro.
    ///
    /// Const-constructible, so it lives in a `static`. With `std`,
    /// [`run`](Self::run) and [`scope`](Self::scope) set it for a closure or
    /// a future, and [`get`](Self::get) / [`with`](Self::with) read the
    /// current value (`None` when unset). Without `std`, read and set it
    /// through an explicit [`Snapshot`].
    ///
    /// `T: Send + Sync + 'static` is required: a snapshot is shared (by
    /// `Arc`) with every promise and thunk that captured it, and those move
    /// to and run on other threads, several at once; `'static` because
    /// values are stored type-erased (`dyn Any`).
    ///
    /// With `std`, values propagate by themselves into deferred work: a
    /// [`DeferredPromise`](crate::DeferredPromise) runs its executor or
    /// handler in the context current when it was *created* (not at its
    /// first poll), and a [`DeferScope`](crate::DeferScope) thunk runs in the
    /// context current when it was registered.
    ///
    /// Compared with `tokio::task_local!`, which also scopes a value to a
    /// future's polls: any number of variables can be captured together in
    /// one O(1) [`Snapshot`] and restored elsewhere (a spawned task, a
    /// callback), and deferred promises and thunks capture it for you; no
    /// runtime is involved. And [`scope`](ContextVar::scope) installs a
    /// whole snapshot: the future sees the other variables as they were
    /// when `scope` was called, not those of whoever polls it (a
    /// `task_local!` scope swaps only its own key). Compared with
    /// tracing's `Instrument`, which carries one span: the values are
    /// arbitrary typed data the code reads back.
    ///
    #[cfg_attr(feature = "std", doc = "```")]
    #[cfg_attr(not(feature = "std"), doc = "```ignore")]
    /// use deferral::ContextVar;
    ///
    /// static REQUEST: ContextVar<u64> = ContextVar::new();
    ///
    /// assert_eq!(REQUEST.get(), None);
    /// REQUEST.run(7, || {
    ///     assert_eq!(REQUEST.get(), Some(7));
    ///     REQUEST.run(8, || assert_eq!(REQUEST.get(), Some(8)));
    ///     assert_eq!(REQUEST.get(), Some(7));
    /// });
    /// assert_eq!(REQUEST.get(), None);
    /// ```
    pub struct ContextVar<T> {
        /// 0 until first set; then unique for the life of the process.
        id: AtomicUsize,
        _value: PhantomData<fn() -> T>,
    }

    impl<T> ContextVar<T> {
        /// A new variable, unset in every context.
        ///
        /// ```
        /// use deferral::ContextVar;
        ///
        /// static TRACE_ID: ContextVar<u128> = ContextVar::new();
        /// let local: ContextVar<&'static str> = ContextVar::new();
        /// # let _ = (&TRACE_ID, local);
        /// ```
        pub const fn new() -> Self {
            ContextVar {
                id: AtomicUsize::new(0),
                _value: PhantomData,
            }
        }

        /// The id, if the variable was ever set.
        #[inline]
        fn assigned_id(&self) -> Option<usize> {
            // ORDERING: the id is a bare number published once by a CAS;
            // no other memory is read on the strength of it, so Relaxed
            // suffices (every thread sees the single value in the atomic's
            // modification order).
            match self.id.load(Ordering::Relaxed) {
                0 => None,
                id => Some(id),
            }
        }

        fn id(&self) -> usize {
            match self.assigned_id() {
                Some(id) => id,
                None => self.assign_id(),
            }
        }

        #[cold]
        fn assign_id(&self) -> usize {
            static NEXT: AtomicUsize = AtomicUsize::new(1);
            // ORDERING: only uniqueness matters, which the read-modify-write
            // gives under any ordering.
            let fresh = NEXT
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
                .expect("deferral: context variable ids exhausted");
            // ORDERING: as in `assigned_id`; the CAS decides which fresh id
            // wins if two threads race to set the variable first.
            match self
                .id
                .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => fresh,
                Err(winner) => winner,
            }
        }
    }

    impl<T> Default for ContextVar<T> {
        /// Same as [`ContextVar::new`].
        ///
        /// ```
        /// let v: deferral::ContextVar<u8> = Default::default();
        /// # let _ = v;
        /// ```
        fn default() -> Self {
            Self::new()
        }
    }

    impl<T> fmt::Debug for ContextVar<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ContextVar")
                .field("id", &self.assigned_id())
                .finish()
        }
    }

    /// An immutable capture of every context variable's value — TC39
    /// `AsyncContext.Snapshot`.
    ///
    /// Cheap to capture and clone (one `Arc`, or nothing when empty), never
    /// changed by anybody once made: setting a variable makes a new
    /// snapshot. With `std`, [`capture`](Self::capture) takes the current
    /// one, [`run`](Self::run) and [`wrap`](Self::wrap) restore it around a
    /// closure or every poll of a future. With or without `std`,
    /// [`with_value`](Self::with_value) and [`get`](Self::get) build and read
    /// snapshots passed explicitly.
    ///
    #[cfg_attr(feature = "std", doc = "```")]
    #[cfg_attr(not(feature = "std"), doc = "```ignore")]
    /// use deferral::{ContextVar, Snapshot};
    ///
    /// static USER: ContextVar<&'static str> = ContextVar::new();
    ///
    /// let snap = USER.run("ada", Snapshot::capture);
    /// assert_eq!(USER.get(), None);
    /// assert_eq!(snap.run(|| USER.get()), Some("ada"));
    /// assert_eq!(snap.get(&USER), Some(&"ada"));
    /// ```
    #[derive(Clone, Default)]
    pub struct Snapshot {
        /// `None` is the empty context: free to capture, clone and drop.
        map: Option<Arc<Map>>,
    }

    impl Drop for Snapshot {
        #[inline]
        fn drop(&mut self) {
            // Tested first so that the empty case writes nothing.
            if self.map.is_some() {
                if let Some(map) = self.map.take() {
                    release(map);
                }
            }
        }
    }

    /// Gives back a snapshot's count, out of line and by value: `Arc`'s own
    /// drop passes the `Arc`'s address to its slow path, which, inlined
    /// into a promise's poll, kept the whole promise in memory on the fast
    /// path (where the snapshot is empty and this is never called).
    #[inline(never)]
    fn release(map: Arc<Map>) {
        drop(map);
    }

    #[cfg(feature = "std")]
    pub(super) static EMPTY: Snapshot = Snapshot::empty();

    impl Snapshot {
        /// The snapshot in which no variable is set. Allocates nothing.
        ///
        /// ```
        /// let empty = deferral::Snapshot::empty();
        /// assert!(empty.is_empty());
        /// ```
        pub const fn empty() -> Self {
            Snapshot { map: None }
        }

        /// Whether no variable is set in this snapshot.
        ///
        /// ```
        /// use deferral::{ContextVar, Snapshot};
        ///
        /// static V: ContextVar<u8> = ContextVar::new();
        /// assert!(Snapshot::empty().is_empty());
        /// assert!(!Snapshot::empty().with_value(&V, 1).is_empty());
        /// ```
        #[inline]
        pub fn is_empty(&self) -> bool {
            self.map.is_none()
        }

        /// How many variables are set in this snapshot.
        ///
        /// ```
        /// use deferral::{ContextVar, Snapshot};
        ///
        /// static A: ContextVar<u8> = ContextVar::new();
        /// static B: ContextVar<u8> = ContextVar::new();
        /// let s = Snapshot::empty().with_value(&A, 1).with_value(&B, 2).with_value(&A, 3);
        /// assert_eq!(s.len(), 2);
        /// ```
        pub fn len(&self) -> usize {
            self.map.as_ref().map_or(0, |m| m.0.len())
        }

        /// The value of `var` in this snapshot, if it is set.
        ///
        /// ```
        /// use deferral::{ContextVar, Snapshot};
        ///
        /// static LEVEL: ContextVar<u8> = ContextVar::new();
        /// let s = Snapshot::empty().with_value(&LEVEL, 3);
        /// assert_eq!(s.get(&LEVEL), Some(&3));
        /// assert_eq!(Snapshot::empty().get(&LEVEL), None);
        /// ```
        #[inline]
        pub fn get<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<&T> {
            let map = self.map.as_deref()?;
            let value = map.0.get(&var.assigned_id()?)?;
            // The id is unique to `var`, and only `with_value` with a
            // `ContextVar<T>` stores under it: the downcast cannot fail.
            value.downcast_ref::<T>()
        }

        /// A new snapshot: this one with `var` set to `value`. `self` is not
        /// changed (copy on write: the map is cloned, O(number of
        /// variables); the values are shared).
        ///
        /// ```
        /// use deferral::{ContextVar, Snapshot};
        ///
        /// static N: ContextVar<u32> = ContextVar::new();
        /// let one = Snapshot::empty().with_value(&N, 1);
        /// let two = one.with_value(&N, 2);
        /// assert_eq!((one.get(&N), two.get(&N)), (Some(&1), Some(&2)));
        /// ```
        #[must_use = "`with_value` returns a new snapshot and leaves `self` unchanged"]
        pub fn with_value<T: Send + Sync + 'static>(
            &self,
            var: &ContextVar<T>,
            value: T,
        ) -> Snapshot {
            let mut map = match &self.map {
                Some(map) => Map::clone(map),
                None => Map(HashMap::with_capacity_and_hasher(1, IdHash)),
            };
            map.0.insert(var.id(), Arc::new(value));
            Snapshot {
                map: Some(Arc::new(map)),
            }
        }
    }

    impl fmt::Debug for Snapshot {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Snapshot")
                .field("len", &self.len())
                .finish()
        }
    }

    #[cfg(feature = "std")]
    pub use current::WithContext;

    /// The current snapshot: a thread-local (`std`).
    #[cfg(feature = "std")]
    mod current {
        use core::cell::Cell;
        use core::future::Future;
        use core::marker::PhantomData;
        use core::mem::ManuallyDrop;
        use core::pin::Pin;
        use core::ptr;

        use alloc::sync::Arc;
        use core::task::{Context, Poll};

        use futures_core::future::FusedFuture;

        use super::{ContextVar, Map, Snapshot};

        std::thread_local! {
            /// Null, or the map of the snapshot of the innermost [`Entered`]
            /// guard alive on this thread (never an empty one): the `Arc`'s
            /// data pointer, not the snapshot's address, so that entering
            /// takes a value and a promise's inline poll never hands its own
            /// address to the out-of-line slow path (which kept the promise
            /// in memory on the fast path too).
            static CURRENT: Cell<*const Map> = const { Cell::new(ptr::null()) };
        }

        /// Makes a snapshot current for as long as it lives; restores the
        /// previous one when dropped (also while unwinding). Guards are only
        /// ever locals of the functions below and of the promises'
        /// `in_context` (never stored, never forgotten), so they drop in
        /// LIFO order on the thread that made them (a raw pointer field:
        /// `!Send`).
        pub(crate) struct Entered<'a> {
            /// The pointer to restore, or `None` if entering changed nothing
            /// (the common case: empty inside empty).
            prev: Option<*const Map>,
            _snapshot: PhantomData<&'a Snapshot>,
        }

        impl Drop for Entered<'_> {
            #[inline]
            fn drop(&mut self) {
                if let Some(prev) = self.prev {
                    CURRENT.with(|c| c.set(prev));
                }
            }
        }

        /// Whether the empty context is current on this thread: one
        /// thread-local load (a `const`-initialised `Cell` of a pointer, so
        /// no lazy-initialisation check; non-atomic, so the compiler merges
        /// a promise's capture and its first poll's check into one load).
        #[inline(always)]
        fn current_is_empty() -> bool {
            CURRENT.with(Cell::get).is_null()
        }

        #[inline]
        fn enter(snapshot: &Snapshot) -> Entered<'_> {
            Entered {
                prev: enter_map(snapshot.map_ptr()),
                _snapshot: PhantomData,
            }
        }

        /// Makes `new` (null: the empty context) current; returns the
        /// pointer to restore, `None` if nothing changed.
        #[inline]
        fn enter_map(new: *const Map) -> Option<*const Map> {
            CURRENT.with(|c| {
                let prev = c.get();
                (prev != new).then(|| {
                    c.set(new);
                    prev
                })
            })
        }

        /// The slow path of the promises' `in_context`: out of line and
        /// taking the map pointer by value (see `CURRENT`).
        #[cold]
        #[inline(never)]
        fn enter_map_out_of_line(new: *const Map) -> Option<*const Map> {
            enter_map(new)
        }

        /// Calls `f` with the current snapshot.
        #[inline]
        fn with_current<R>(f: impl FnOnce(&Snapshot) -> R) -> R {
            let current = CURRENT.with(Cell::get);
            if current.is_null() {
                f(&super::EMPTY)
            } else {
                // A snapshot borrowed from the guard's: `from_raw` rebuilds
                // its `Arc` without taking a count and `ManuallyDrop` never
                // gives one back; `f` may clone it (a count of its own).
                let borrowed = ManuallyDrop::new(Snapshot {
                    // SAFETY: a non-null `CURRENT` is `Arc::as_ptr` of the
                    // map of a snapshot borrowed by an `Entered<'a>` guard
                    // still alive on this thread (guards restore the
                    // previous pointer when dropped, in LIFO order, also
                    // while unwinding), so that `Arc` holds a strong count
                    // for as long as `f` runs. (`from_raw` asks for a
                    // pointer from `into_raw`, which is `as_ptr` then
                    // `forget`: the same pointer, with the same provenance.)
                    map: Some(unsafe { Arc::from_raw(current) }),
                });
                f(&borrowed)
            }
        }

        impl Snapshot {
            /// `true` when running inside this snapshot changes nothing now:
            /// it is empty and so is the current one. The inline fast path
            /// of promises created and polled where no context variable is
            /// set.
            #[inline(always)]
            pub(crate) fn runs_as_is(&self) -> bool {
                self.is_empty() && current_is_empty()
            }

            /// The current snapshot of this thread: O(1) (an `Arc` clone),
            /// nothing at all when no variable is set.
            ///
            /// ```
            /// use deferral::{ContextVar, Snapshot};
            ///
            /// static V: ContextVar<u8> = ContextVar::new();
            /// assert!(Snapshot::capture().is_empty());
            /// let inside = V.run(1, Snapshot::capture);
            /// assert_eq!(inside.get(&V), Some(&1));
            /// ```
            #[inline]
            pub fn capture() -> Snapshot {
                // A null `CURRENT` is the empty context (`enter` stores null
                // for it): nothing to clone.
                if current_is_empty() {
                    return Snapshot::empty();
                }
                with_current(Snapshot::clone)
            }

            /// Calls `f` with this snapshot current, then restores the
            /// previous one (also if `f` panics). Snapshots never change,
            /// so a run may nest anywhere, even inside a run of the same
            /// snapshot (TC39's `AsyncContext.Snapshot`; Python refuses to
            /// enter a `Context` twice because its contexts are mutable).
            ///
            /// ```
            /// use deferral::{ContextVar, Snapshot};
            ///
            /// static V: ContextVar<u8> = ContextVar::new();
            /// let snap = V.run(1, Snapshot::capture);
            /// V.run(2, || {
            ///     assert_eq!(snap.run(|| V.get()), Some(1));
            ///     assert_eq!(V.get(), Some(2));
            /// });
            /// ```
            #[inline]
            pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
                // Empty inside empty (the fast path): nothing to install or
                // restore. One call site of `f`, so it inlines.
                let _entered = if self.runs_as_is() {
                    None
                } else {
                    Some(enter(self))
                };
                f()
            }

            /// Makes this snapshot current until the guard drops: the slow
            /// path of the promises' `in_context`. The call is out of line
            /// and takes neither a closure nor an address (only the map
            /// pointer, by value), so that the caller's inline fast path
            /// does not hand the state it works on to an opaque call.
            #[inline(always)]
            pub(crate) fn enter_out_of_line(&self) -> Entered<'_> {
                Entered {
                    prev: enter_map_out_of_line(self.map_ptr()),
                    _snapshot: PhantomData,
                }
            }

            /// The map's address (null when empty): what `CURRENT` holds.
            #[inline(always)]
            fn map_ptr(&self) -> *const Map {
                self.map.as_ref().map_or(ptr::null(), Arc::as_ptr)
            }

            /// A future that polls (and drops) `future` with this snapshot
            /// current, whoever polls it and on whatever thread.
            ///
            /// ```
            /// use deferral::{ContextVar, Snapshot};
            ///
            /// static V: ContextVar<u8> = ContextVar::new();
            /// let fut = V.run(1, || Snapshot::capture().wrap(async { V.get() }));
            /// assert_eq!(futures::executor::block_on(fut), Some(1));
            /// ```
            pub fn wrap<F: Future>(self, future: F) -> WithContext<F> {
                WithContext {
                    snapshot: self,
                    future: core::cell::UnsafeCell::new(Some(future)),
                }
            }
        }

        impl<T: Send + Sync + 'static> ContextVar<T> {
            /// Calls `f` with this variable set to `value` (on top of the
            /// current context), then restores the previous context — also
            /// if `f` panics.
            ///
            /// ```
            /// use deferral::ContextVar;
            ///
            /// static V: ContextVar<&'static str> = ContextVar::new();
            /// assert_eq!(V.run("a", || V.get()), Some("a"));
            /// assert_eq!(V.get(), None);
            /// ```
            pub fn run<R>(&self, value: T, f: impl FnOnce() -> R) -> R {
                let snapshot = with_current(|current| current.with_value(self, value));
                let out = snapshot.run(f);
                // Dropped while `out` is a local: if `value`'s destructor
                // panics, the unwinding drops `f`'s result (a result moved
                // out before a drop that unwinds would leak,
                // rust-lang/rust#47949).
                drop(snapshot);
                out
            }

            /// A future that polls (and drops) `future` with this variable
            /// set to `value`, on top of the context current *now*; the
            /// value is installed on every poll and removed after it.
            ///
            /// The other variables are those of the context current when
            /// `scope` is called (TC39: an async function keeps the context
            /// of its call), not of each poll: installing is O(1) per poll.
            ///
            /// ```
            /// use deferral::ContextVar;
            ///
            /// static V: ContextVar<u32> = ContextVar::new();
            /// let fut = V.scope(5, async { V.get() });
            /// assert_eq!(V.get(), None);
            /// assert_eq!(futures::executor::block_on(fut), Some(5));
            /// ```
            pub fn scope<F: Future>(&self, value: T, future: F) -> WithContext<F> {
                with_current(|current| current.with_value(self, value)).wrap(future)
            }

            /// Calls `f` with a reference to the current value (`None` when
            /// unset).
            ///
            /// ```
            /// use deferral::ContextVar;
            ///
            /// static NAME: ContextVar<String> = ContextVar::new();
            /// let len = NAME.run("ada".to_string(), || NAME.with(|n| n.map_or(0, String::len)));
            /// assert_eq!(len, 3);
            /// ```
            #[inline]
            pub fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
                with_current(|current| f(current.get(self)))
            }

            /// A clone of the current value (`None` when unset).
            ///
            /// ```
            /// use deferral::ContextVar;
            ///
            /// static V: ContextVar<u64> = ContextVar::new();
            /// assert_eq!(V.get(), None);
            /// assert_eq!(V.run(9, || V.get()), Some(9));
            /// ```
            #[inline]
            pub fn get(&self) -> Option<T>
            where
                T: Clone,
            {
                self.with(|v| v.cloned())
            }
        }

        /// A future polled, and dropped, inside a [`Snapshot`]: made by
        /// [`Snapshot::wrap`] and [`ContextVar::scope`]. The inner future is
        /// dropped as soon as it completes, inside the snapshot, before
        /// its output is returned (as tokio's `task_local!` scope and
        /// futures' combinators do), or with the wrapper if that comes
        /// first.
        ///
        /// ```
        /// use deferral::{ContextVar, context::WithContext};
        ///
        /// static V: ContextVar<u8> = ContextVar::new();
        /// let fut: WithContext<_> = V.scope(3, async { V.get() });
        /// assert_eq!(futures::executor::block_on(fut), Some(3));
        /// ```
        #[must_use = "futures do nothing unless you .await or poll them"]
        pub struct WithContext<F> {
            snapshot: Snapshot,
            /// `None` only while being dropped. Structurally pinned (see
            /// `project`). In an `UnsafeCell` so that `&WithContext` (its
            /// `Debug`) never covers the future's bytes: a shared reference
            /// over a pinned, self-borrowing future between two polls is
            /// undefined behaviour under Stacked Borrows.
            future: core::cell::UnsafeCell<Option<F>>,
        }

        // SAFETY: `&WithContext` reaches only the snapshot (`Sync`) and, for
        // `is_terminated`, `F::is_terminated` through `&F` when `F: Sync`
        // allows it; the future is otherwise only touched through `&mut`.
        unsafe impl<F: Sync> Sync for WithContext<F> {}

        // Only the future is pinned.
        impl<F: Unpin> Unpin for WithContext<F> {}

        impl<F> WithContext<F> {
            /// The snapshot and the pinned future.
            fn project(self: Pin<&mut Self>) -> (&Snapshot, Pin<&mut Option<F>>) {
                // SAFETY: `future` is structurally pinned: never moved out
                // of a pinned `WithContext` (no by-value accessor; `Drop`
                // drops it in place, below; not `repr(packed)`), and the
                // type is `Unpin` only if `F` is (above).
                unsafe {
                    let this = self.get_unchecked_mut();
                    (&this.snapshot, Pin::new_unchecked(this.future.get_mut()))
                }
            }
        }

        impl<F: Future> Future for WithContext<F> {
            type Output = F::Output;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
                let (snapshot, mut future) = self.project();
                let _entered = enter(snapshot);
                let out = future
                    .as_mut()
                    .as_pin_mut()
                    .expect("deferral: `WithContext` polled after completion")
                    .poll(cx);
                if out.is_ready() {
                    // Dropped in place, inside the snapshot, while the
                    // output is a local: if the destructor panics, the
                    // unwinding drops the output too (rust-lang/rust#47949).
                    future.set(None);
                }
                out
            }
        }

        impl<F: FusedFuture> FusedFuture for WithContext<F> {
            fn is_terminated(&self) -> bool {
                // SAFETY: `&self`: nobody accesses the future mutably. The
                // reference is `F`'s own `is_terminated` receiver: a fused
                // future answers it by its own means.
                unsafe { (*self.future.get()).as_ref() }.is_none_or(F::is_terminated)
            }
        }

        impl<F> Drop for WithContext<F> {
            fn drop(&mut self) {
                // SAFETY: `self` is never used again after `drop`, so it
                // may be treated as pinned (it may have been); the future
                // is dropped in place, as pinning requires.
                let this = unsafe { Pin::new_unchecked(self) };
                let (snapshot, mut future) = this.project();
                let _entered = enter(snapshot);
                // Drops the future in place, inside the snapshot.
                future.set(None);
            }
        }

        impl<F> core::fmt::Debug for WithContext<F> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct("WithContext")
                    .field("snapshot", &self.snapshot)
                    .finish_non_exhaustive()
            }
        }
    }
}
