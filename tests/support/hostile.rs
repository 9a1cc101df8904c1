//! Hostile wakers: wakers whose `clone`, `wake`, `wake_by_ref` or `drop`
//! panics on the k-th call, and wakers whose `wake` runs arbitrary code (drops
//! a clone of the promise, the queue, the scope...).
//!
//! Every waker made by one [`Hostile`] shares its counters and its plan, so
//! "the 2nd clone panics" counts clones of clones too. The counters are
//! updated *before* a planned panic, so a test can tell that the call
//! happened.
//!
//! ```ignore
//! let hostile = Hostile::new().panic_on(Call::Drop, 1);
//! let waker = hostile.waker();
//! // the first drop of any waker made by `hostile` panics
//! ```

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{RawWaker, RawWakerVTable, Waker};

/// The four things a waker can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Clone,
    Wake,
    WakeByRef,
    Drop,
}

impl Call {
    pub const ALL: [Call; 4] = [Call::Clone, Call::Wake, Call::WakeByRef, Call::Drop];

    fn index(self) -> usize {
        self as usize
    }
}

/// One hostile behaviour, for test matrices: every `Call` panicking on its
/// 1st and 2nd use, and a wake that runs the victim hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Calls of this kind panic on the k-th call (1-based).
    PanicOn(Call, usize),
    /// `wake`/`wake_by_ref` first runs the [`Hostile::on_wake`] hook (once).
    RunsHookOnWake,
}

impl Behaviour {
    /// Every panicking behaviour, k = 1 and 2.
    pub fn panicking() -> Vec<Behaviour> {
        let mut all = Vec::new();
        for call in Call::ALL {
            for k in [1, 2] {
                all.push(Behaviour::PanicOn(call, k));
            }
        }
        all
    }

    /// The panicking behaviours plus [`Behaviour::RunsHookOnWake`].
    pub fn all() -> Vec<Behaviour> {
        let mut all = Self::panicking();
        all.push(Behaviour::RunsHookOnWake);
        all
    }

    /// A fresh [`Hostile`] behaving like this.
    pub fn hostile(self) -> Hostile {
        match self {
            Behaviour::PanicOn(call, k) => Hostile::new().panic_on(call, k),
            Behaviour::RunsHookOnWake => Hostile::new(),
        }
    }
}

type Hook = Box<dyn FnOnce() + Send>;

struct State {
    /// How many times each `Call` happened (index: `Call as usize`).
    calls: [AtomicUsize; 4],
    /// Wakers made by `Hostile::waker` (not clones).
    created: AtomicUsize,
    /// Clones that succeeded (a panicking clone makes no waker).
    cloned: AtomicUsize,
    /// The 1-based call number at which each kind panics (0: never).
    panic_at: [usize; 4],
    /// Run (once) by the first wake, before anything else it does.
    hook: Mutex<Option<Hook>>,
    /// Panics actually raised.
    panics: AtomicUsize,
}

/// Makes hostile wakers and reads what happened to them.
#[derive(Clone)]
pub struct Hostile(Arc<State>);

impl fmt::Debug for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hostile")
            .field("clones", &self.count(Call::Clone))
            .field("wakes", &self.wakes())
            .field("drops", &self.count(Call::Drop))
            .field("panics", &self.panics())
            .finish()
    }
}

impl Default for Hostile {
    fn default() -> Self {
        Self::new()
    }
}

impl Hostile {
    /// Wakers that only count, until told otherwise.
    pub fn new() -> Self {
        Hostile(Arc::new(State {
            calls: Default::default(),
            created: AtomicUsize::new(0),
            cloned: AtomicUsize::new(0),
            panic_at: [0; 4],
            hook: Mutex::new(None),
            panics: AtomicUsize::new(0),
        }))
    }

    /// The `k`-th call (1-based, counted over every waker of this
    /// `Hostile`) of kind `call` panics. Must be set before `waker()`.
    pub fn panic_on(self, call: Call, k: usize) -> Self {
        assert!(k > 0);
        let mut state =
            Arc::try_unwrap(self.0).unwrap_or_else(|_| panic!("set the plan before making wakers"));
        state.panic_at[call.index()] = k;
        Hostile(Arc::new(state))
    }

    /// The first `wake` or `wake_by_ref` runs `hook` before counting, e.g.
    /// to drop the last clone of the thing being woken.
    pub fn on_wake(&self, hook: impl FnOnce() + Send + 'static) {
        *self.0.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    }

    /// A new waker (its creation is not a clone).
    pub fn waker(&self) -> Waker {
        self.0.created.fetch_add(1, SeqCst);
        let ptr = Arc::into_raw(self.0.clone()).cast::<()>();
        // SAFETY: `ptr` is an `Arc<State>` from `into_raw`; the vtable below
        // treats it as exactly that.
        unsafe { Waker::from_raw(RawWaker::new(ptr, &VTABLE)) }
    }

    pub fn count(&self, call: Call) -> usize {
        self.0.calls[call.index()].load(SeqCst)
    }

    /// `wake` plus `wake_by_ref`.
    pub fn wakes(&self) -> usize {
        self.count(Call::Wake) + self.count(Call::WakeByRef)
    }

    /// Panics this `Hostile` raised.
    pub fn panics(&self) -> usize {
        self.0.panics.load(SeqCst)
    }

    /// Wakers alive: created plus clones, minus drops and by-value wakes
    /// (which consume their waker, even when they panic).
    pub fn live(&self) -> usize {
        self.0.created.load(SeqCst) + self.0.cloned.load(SeqCst)
            - self.count(Call::Drop)
            - self.count(Call::Wake)
    }

    /// Whether the hook set by [`Hostile::on_wake`] has run.
    pub fn hook_ran(&self) -> bool {
        self.0
            .hook
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// # Safety
/// `ptr` is the data of a live hostile waker.
unsafe fn state<'a>(ptr: *const ()) -> &'a State {
    // SAFETY: as the caller guarantees.
    unsafe { &*ptr.cast::<State>() }
}

/// Counts `call`, then panics if the plan says so.
fn record(state: &State, call: Call) {
    let n = state.calls[call.index()].fetch_add(1, SeqCst) + 1;
    if state.panic_at[call.index()] == n {
        state.panics.fetch_add(1, SeqCst);
        panic!("hostile waker: {call:?} #{n} panics");
    }
}

fn run_hook(state: &State) {
    let hook = state.hook.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(hook) = hook {
        hook();
    }
}

unsafe fn clone(ptr: *const ()) -> RawWaker {
    // SAFETY: cloning a live waker.
    let s = unsafe { state(ptr) };
    record(s, Call::Clone);
    // SAFETY: the new waker owns one more strong count (taken only if the
    // clone did not panic).
    unsafe { Arc::increment_strong_count(ptr.cast::<State>()) };
    s.cloned.fetch_add(1, SeqCst);
    RawWaker::new(ptr, &VTABLE)
}

unsafe fn wake(ptr: *const ()) {
    // A by-value wake consumes the waker whatever happens: release our
    // strong count even if the planned panic fires.
    struct Release(*const ());
    impl Drop for Release {
        fn drop(&mut self) {
            // SAFETY: the waker being consumed owned this strong count.
            drop(unsafe { Arc::from_raw(self.0.cast::<State>()) });
        }
    }
    let _release = Release(ptr);
    // SAFETY: the waker is live until `_release` runs.
    let s = unsafe { state(ptr) };
    run_hook(s);
    record(s, Call::Wake);
}

unsafe fn wake_by_ref(ptr: *const ()) {
    // SAFETY: waking a live waker by reference.
    let s = unsafe { state(ptr) };
    run_hook(s);
    record(s, Call::WakeByRef);
}

unsafe fn drop_waker(ptr: *const ()) {
    // SAFETY: the waker being dropped owns one strong count.
    let arc = unsafe { Arc::from_raw(ptr.cast::<State>()) };
    record(&arc, Call::Drop);
}
