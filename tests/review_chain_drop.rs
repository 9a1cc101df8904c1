//! Hostile review of 8c9f2542 (src/promise/ext.rs): `Linked.chain` became a
//! `ManuallyDrop<Chain>` dropped in place by `Linked`'s `Drop` (inline below
//! `4 * size_of::<usize>()`, out of line above), and pin-project's
//! `project_replace(Chain::Empty)` became `take_handler` (`ptr::read` of the
//! handler, a `SetEmpty` guard, `ptr::drop_in_place` of the pinned source).
//!
//! Every test counts drops (exactly once: sources, handlers' captures,
//! reactions, settlement values, captured contexts) or records addresses
//! (a pinned source or reaction never moves between its first poll and its
//! drop; over-aligned parts stay aligned), on every path: settled, dropped
//! unpolled, dropped while the source or the reaction is pending, dropped
//! after completion, and with a panic in a source's destructor, a handler's
//! call or destructor, a reaction's poll or destructor, a settlement's
//! destructor — one link and nested chains of 1, 2, 8 and 64 links, on
//! both sides of the inline/out-of-line threshold.
//!
//! Found: the `Drop` impl 8c9f2542 added to `Linked<P, H, F>` (no
//! `#[may_dangle]` on stable) made dropck require a handler's borrows to
//! outlive the promise, so code that compiled before failed with E0597.
//! The impl was removed; `mod dropck` below now compiles, and would not
//! with such an impl back.

mod support;

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomPinned;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use deferral::PromiseExt;
use deferral::promise::Follow;
use support::drops::{PanicOnDrop, Tracked};
use support::{DropCounter, WakeCounter, poll_once, yield_now};

const AFTER_COMPLETION: &str = "`DeferredPromise` polled after completion";

type Out = Result<Tracked, Tracked>;
type BoxFut<O> = Pin<Box<dyn Future<Output = O> + Send>>;

/// Polls `fut` once, catching a panic (its message, when it has one).
fn poll_caught<F: Future + ?Sized>(
    fut: Pin<&mut F>,
    w: &WakeCounter,
) -> Result<Poll<F::Output>, String> {
    catch_unwind(AssertUnwindSafe(|| poll_once(fut, w))).map_err(|p| message(&*p))
}

fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string payload>".to_owned())
}

/// Runs `f`, which must panic; returns the message.
fn panics<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(p) => message(&*p),
    }
}

// ------------------------------------------------------------------ parts

/// A source (or reaction): pending `pending` times (waking itself), then
/// ready with `out`. Drops `life` with itself; `bomb` makes its destructor
/// panic; `poll_bomb` makes its first ready poll panic instead.
struct Src<O> {
    out: Option<O>,
    pending: usize,
    life: Option<Tracked>,
    bomb: Option<PanicOnDrop>,
    poll_bomb: bool,
}

impl<O> Src<O> {
    fn new(out: O, pending: usize, life: Tracked) -> Self {
        Src {
            out: Some(out),
            pending,
            life: Some(life),
            bomb: None,
            poll_bomb: false,
        }
    }
    fn bomb(mut self, bomb: PanicOnDrop) -> Self {
        self.bomb = Some(bomb);
        self
    }
}

impl<O> Unpin for Src<O> {}

impl<O> Future for Src<O> {
    type Output = O;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        if self.pending > 0 {
            self.pending -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if std::mem::take(&mut self.poll_bomb) {
            panic!("reaction poll");
        }
        let _ = &self.life;
        Poll::Ready(self.out.take().expect("Src polled after it was ready"))
    }
}

/// A handler's capture: it checks its own alignment when the handler runs
/// (the handler is moved out of the pinned chain by `ptr::read`).
trait Capture: Send + 'static {
    fn new(t: Tracked) -> Self;
    fn check(&self);
}

struct Small(#[allow(dead_code)] Tracked);
impl Capture for Small {
    fn new(t: Tracked) -> Self {
        Small(t)
    }
    fn check(&self) {}
}

/// 256 bytes: a one-link chain is over the inline threshold.
struct Big([u8; 256], #[allow(dead_code)] Tracked);
impl Capture for Big {
    fn new(t: Tracked) -> Self {
        Big([7; 256], t)
    }
    fn check(&self) {
        assert!(self.0.iter().all(|&b| b == 7), "the capture was corrupted");
    }
}

#[repr(align(64))]
struct Aligned(u64, #[allow(dead_code)] Tracked);
impl Capture for Aligned {
    fn new(t: Tracked) -> Self {
        Aligned(0xA11A_11ED, t)
    }
    fn check(&self) {
        assert!(std::ptr::from_ref(self).is_aligned(), "misaligned capture");
        assert_eq!(self.0, 0xA11A_11ED);
    }
}

#[derive(Default)]
struct Counts {
    src: DropCounter,
    hnd: DropCounter,
    rx: DropCounter,
    val: DropCounter,
    ran: Arc<AtomicUsize>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Then,
    Catch,
    ThenCatch,
    Finally,
}
const KINDS: [Kind; 4] = [Kind::Then, Kind::Catch, Kind::ThenCatch, Kind::Finally];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Unpolled,
    SourcePending,
    ReactionPending,
    Done,
    PolledAgain,
}
const STOPS: [Stop; 5] = [
    Stop::Unpolled,
    Stop::SourcePending,
    Stop::ReactionPending,
    Stop::Done,
    Stop::PolledAgain,
];

/// One link of `kind` over a source settling (after one pending poll) with
/// a tracked value, `Ok` or `Err`; its handler(s) capture a `K` and follow
/// a reaction that is pending once.
fn one_link<K: Capture>(kind: Kind, ok: bool, c: &Counts) -> BoxFut<Out> {
    let v = c.val.tracked();
    let src = Src::new(if ok { Ok(v) } else { Err(v) }, 1, c.src.tracked());
    let (ran, rx) = (c.ran.clone(), c.rx.clone());
    match kind {
        Kind::Then => {
            let k = K::new(c.hnd.tracked());
            Box::pin(src.deferred_then(move |v: Tracked| {
                k.check();
                ran.fetch_add(1, SeqCst);
                Follow(Src::new(Ok(v), 1, rx.tracked()))
            }))
        }
        Kind::Catch => {
            let k = K::new(c.hnd.tracked());
            Box::pin(src.deferred_catch(move |e: Tracked| {
                k.check();
                ran.fetch_add(1, SeqCst);
                Follow(Src::new(Ok::<Tracked, Tracked>(e), 1, rx.tracked()))
            }))
        }
        Kind::ThenCatch => {
            let (k1, k2) = (K::new(c.hnd.tracked()), K::new(c.hnd.tracked()));
            let (ran2, rx2) = (ran.clone(), rx.clone());
            Box::pin(src.deferred_then_catch(
                move |v: Tracked| {
                    k1.check();
                    ran.fetch_add(1, SeqCst);
                    Follow(Src::new(Ok::<Tracked, Tracked>(v), 1, rx.tracked()))
                },
                move |e: Tracked| {
                    k2.check();
                    ran2.fetch_add(1, SeqCst);
                    Follow(Src::new(Err::<Tracked, Tracked>(e), 1, rx2.tracked()))
                },
            ))
        }
        Kind::Finally => {
            let k = K::new(c.hnd.tracked());
            Box::pin(src.deferred_finally(move || {
                k.check();
                ran.fetch_add(1, SeqCst);
                Follow(Src::new(Ok::<(), Tracked>(()), 1, rx.tracked()))
            }))
        }
    }
}

fn runs_handler(kind: Kind, ok: bool) -> bool {
    match kind {
        Kind::Then => ok,
        Kind::Catch => !ok,
        Kind::ThenCatch | Kind::Finally => true,
    }
}

fn one_link_matrix<K: Capture>() {
    for kind in KINDS {
        for ok in [true, false] {
            for stop in STOPS {
                let c = Counts::default();
                let ctx = format!("{kind:?} ok={ok} {stop:?}");
                let runs = runs_handler(kind, ok);
                let handlers = if kind == Kind::ThenCatch { 2 } else { 1 };
                let mut p = one_link::<K>(kind, ok, &c);
                let w = WakeCounter::new();
                let mut out = None;
                if stop != Stop::Unpolled {
                    assert!(poll_once(p.as_mut(), &w).is_pending(), "{ctx}");
                    assert_eq!((c.src.get(), c.hnd.get(), c.val.get()), (0, 0, 0), "{ctx}");
                }
                if matches!(stop, Stop::ReactionPending | Stop::Done | Stop::PolledAgain) {
                    match poll_once(p.as_mut(), &w) {
                        Poll::Pending => assert!(runs, "{ctx}"),
                        Poll::Ready(o) => {
                            assert!(!runs, "{ctx}");
                            out = Some(o);
                        }
                    }
                    // The settled source is dropped as the link settles,
                    // and every handler with it (run or not).
                    assert_eq!(c.src.get(), 1, "{ctx}: settled source dropped once");
                    assert_eq!(c.hnd.get(), handlers, "{ctx}: handlers dropped once");
                    assert_eq!(c.ran.load(SeqCst), usize::from(runs), "{ctx}");
                    assert_eq!(c.val.get(), 0, "{ctx}: the value is alive");
                }
                if matches!(stop, Stop::Done | Stop::PolledAgain) && out.is_none() {
                    match poll_once(p.as_mut(), &w) {
                        Poll::Ready(o) => out = Some(o),
                        Poll::Pending => panic!("{ctx}: reaction still pending"),
                    }
                    assert_eq!(c.rx.get(), 1, "{ctx}: reaction dropped as it settled");
                }
                if let Some(o) = &out {
                    let expect_ok = match kind {
                        Kind::Then | Kind::Finally | Kind::ThenCatch => ok,
                        Kind::Catch => true,
                    };
                    assert_eq!(o.is_ok(), expect_ok, "{ctx}");
                }
                if stop == Stop::PolledAgain {
                    let msg = poll_caught(p.as_mut(), &w).unwrap_err();
                    assert_eq!(msg, AFTER_COMPLETION, "{ctx}");
                }
                drop(out);
                drop(p);
                let reacted = runs && stop != Stop::Unpolled && stop != Stop::SourcePending;
                assert_eq!(c.src.get(), 1, "{ctx}: source");
                assert_eq!(c.hnd.get(), handlers, "{ctx}: handler captures");
                assert_eq!(c.rx.get(), usize::from(reacted), "{ctx}: reaction");
                assert_eq!(c.val.get(), 1, "{ctx}: settlement value");
                let ran = runs && stop != Stop::Unpolled && stop != Stop::SourcePending;
                assert_eq!(c.ran.load(SeqCst), usize::from(ran), "{ctx}: handler runs");
            }
        }
    }
}

/// Every combinator, `Ok` and `Err`, stopped (dropped) at every point:
/// source, handler captures, reaction and value each dropped exactly once.
/// `Small` keeps nothing inline (the source alone is over the threshold):
/// the out-of-line `drop_chain`.
#[test]
fn each_link_each_stop_drops_everything_once_small_capture() {
    one_link_matrix::<Small>();
}

/// As above, with a 256-byte capture (the handler is `ptr::read` out of the
/// chain: its bytes must arrive intact).
#[test]
fn each_link_each_stop_drops_everything_once_big_capture() {
    one_link_matrix::<Big>();
}

/// As above, with a `#[repr(align(64))]` capture: the handler read out of
/// the chain is still aligned when it runs.
#[test]
fn each_link_each_stop_drops_everything_once_aligned_capture() {
    one_link_matrix::<Aligned>();
}

// -------------------------------------------------- the inline threshold

thread_local! {
    static TINY_SRC: Cell<usize> = const { Cell::new(0) };
    static TINY_HND: Cell<usize> = const { Cell::new(0) };
    static TINY_RAN: Cell<usize> = const { Cell::new(0) };
}

/// A zero-sized capture counting its drops in a thread-local.
struct Zst;
impl Drop for Zst {
    fn drop(&mut self) {
        TINY_HND.with(|c| c.set(c.get() + 1));
    }
}

/// A zero-sized capture whose destructor panics (after counting).
struct ZstBomb;
impl Drop for ZstBomb {
    fn drop(&mut self) {
        TINY_HND.with(|c| c.set(c.get() + 1));
        panic!("zst handler drop");
    }
}

/// A tiny source (a few bytes: the one-link chain stays under the inline
/// threshold): pending `pending` times, then ready; panics on drop if
/// `bomb`.
struct Tiny {
    out: Option<Result<u8, u8>>,
    pending: u8,
    bomb: bool,
}
impl Future for Tiny {
    type Output = Result<u8, u8>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u8, u8>> {
        if self.pending > 0 {
            self.pending -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.out.take().expect("Tiny polled after ready"))
    }
}
impl Drop for Tiny {
    fn drop(&mut self) {
        TINY_SRC.with(|c| c.set(c.get() + 1));
        if self.bomb {
            panic!("tiny source drop");
        }
    }
}

fn tiny_counts() -> (usize, usize, usize) {
    (
        TINY_SRC.with(Cell::get),
        TINY_HND.with(Cell::get),
        TINY_RAN.with(Cell::get),
    )
}

fn tiny_reset() {
    TINY_SRC.with(|c| c.set(0));
    TINY_HND.with(|c| c.set(0));
    TINY_RAN.with(|c| c.set(0));
}

fn tiny(ok: bool, pending: u8, bomb: bool) -> Tiny {
    Tiny {
        out: Some(if ok { Ok(1) } else { Err(1) }),
        pending,
        bomb,
    }
}

/// A one-link chain small enough for the inline drop (asserted through the
/// promise's size), dropped at every stop, with a source whose destructor
/// panics or not and a zero-sized handler: source and handler once, the
/// finished link panics "polled after completion".
#[test]
fn a_tiny_link_under_the_threshold_drops_once_on_every_path() {
    for bomb in [false, true] {
        for pending in [0u8, 1] {
            for polls in 0..3usize {
                tiny_reset();
                let ctx = format!("bomb={bomb} pending={pending} polls={polls}");
                let z = Zst;
                let p = tiny(true, pending, bomb).deferred_then(move |v| {
                    let _z = &z;
                    TINY_RAN.with(|c| c.set(c.get() + 1));
                    Ok::<u8, u8>(v + 1)
                });
                // chain + context (+ progress): the chain is at most the
                // promise minus a pointer-sized context, well under 4 words.
                assert!(
                    size_of_val(&p) <= 3 * size_of::<usize>(),
                    "{ctx}: not a tiny chain ({} bytes)",
                    size_of_val(&p)
                );
                let mut p = Box::pin(p);
                let w = WakeCounter::new();
                let mut settled = false;
                for i in 0..polls {
                    match poll_caught(p.as_mut(), &w) {
                        Ok(Poll::Pending) => assert!(i < usize::from(pending), "{ctx}"),
                        Ok(Poll::Ready(out)) => {
                            assert!(!bomb, "{ctx}");
                            assert_eq!(out, Ok(2), "{ctx}");
                            settled = true;
                        }
                        Err(msg) if !settled && bomb => {
                            assert_eq!(msg, "tiny source drop", "{ctx}");
                            assert_eq!(tiny_counts(), (1, 1, 0), "{ctx}: after the bomb");
                            settled = true;
                        }
                        Err(msg) => {
                            assert!(settled, "{ctx}: {msg}");
                            assert_eq!(msg, AFTER_COMPLETION, "{ctx}");
                        }
                    }
                }
                let (src, hnd, ran) = tiny_counts();
                if settled {
                    assert_eq!((src, hnd), (1, 1), "{ctx}: settled");
                    assert_eq!(ran, usize::from(!bomb), "{ctx}");
                } else {
                    assert_eq!((src, hnd, ran), (0, 0, 0), "{ctx}: nothing dropped yet");
                }
                if bomb && !settled {
                    // The unsettled chain's inline drop: the source's
                    // destructor panics, the handler is still dropped.
                    assert_eq!(panics(move || drop(p)), "tiny source drop", "{ctx}");
                } else {
                    drop(p);
                }
                let (src, hnd, _) = tiny_counts();
                assert_eq!((src, hnd), (1, 1), "{ctx}: after drop");
            }
        }
    }
}

/// A one-link `Catch` small enough for the inline drop, on a fulfilment:
/// its unused zero-sized handler's destructor panics. The value still
/// comes out (on the next poll the link is finished), the source and the
/// handler are dropped once.
#[test]
fn a_tiny_catch_whose_unused_handler_panics_on_drop() {
    tiny_reset();
    let z = ZstBomb;
    let p = tiny(true, 0, false).deferred_catch(move |e: u8| {
        let _z = &z;
        Ok::<u8, u8>(e)
    });
    assert!(size_of_val(&p) <= 3 * size_of::<usize>());
    let mut p = Box::pin(p);
    let w = WakeCounter::new();
    assert_eq!(poll_caught(p.as_mut(), &w).unwrap_err(), "zst handler drop");
    assert_eq!(tiny_counts(), (1, 1, 0));
    assert_eq!(poll_caught(p.as_mut(), &w).unwrap_err(), AFTER_COMPLETION);
    drop(p);
    assert_eq!(tiny_counts(), (1, 1, 0));
}

/// Two and three tiny links (the inner links' chains are inline, the outer
/// ones may not be): dropped unpolled, pending and with the bottom
/// source's destructor panicking, everything once.
#[test]
fn tiny_nested_links_drop_once_on_both_sides_of_the_threshold() {
    for bomb in [false, true] {
        for polls in 0..3usize {
            tiny_reset();
            let ctx = format!("bomb={bomb} polls={polls}");
            let (z1, z2, z3) = (Zst, Zst, Zst);
            let p = tiny(false, 1, bomb)
                .deferred_catch(move |e: u8| {
                    let _z = &z1;
                    TINY_RAN.with(|c| c.set(c.get() + 1));
                    Ok::<u8, u8>(e + 1)
                })
                .deferred_then(move |v| {
                    let _z = &z2;
                    TINY_RAN.with(|c| c.set(c.get() + 1));
                    Ok::<u8, u8>(v + 1)
                })
                .deferred_finally(move || {
                    let _z = &z3;
                    TINY_RAN.with(|c| c.set(c.get() + 1));
                });
            let mut p = Box::pin(p);
            let w = WakeCounter::new();
            let mut done = false;
            for _ in 0..polls {
                match poll_caught(p.as_mut(), &w) {
                    Ok(Poll::Pending) => {}
                    Ok(Poll::Ready(out)) => {
                        assert_eq!(out, Ok(3), "{ctx}");
                        assert_eq!(tiny_counts(), (1, 3, 3), "{ctx}");
                        done = true;
                    }
                    Err(msg) if !done => {
                        assert_eq!(msg, "tiny source drop", "{ctx}");
                        assert_eq!(tiny_counts(), (1, 1, 0), "{ctx}: first handler dropped");
                        done = true;
                    }
                    Err(msg) => assert_eq!(msg, AFTER_COMPLETION, "{ctx}"),
                }
            }
            if bomb && !done {
                assert_eq!(panics(move || drop(p)), "tiny source drop", "{ctx}");
            } else {
                drop(p);
            }
            let (src, hnd, ran) = tiny_counts();
            assert_eq!((src, hnd), (1, 3), "{ctx}: each once");
            assert!(ran == 0 || ran == 3, "{ctx}");
        }
    }
}

// ------------------------------------------------------------ deep chains

#[cfg(feature = "std")]
static LINK_CTX: deferral::ContextVar<CtxVal> = deferral::ContextVar::new();

/// A context value: the link it was set for, and a drop counter.
#[cfg(feature = "std")]
struct CtxVal(usize, #[allow(dead_code)] Tracked);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan {
    None,
    /// Link i's handler panics when called.
    HandlerPanics(usize),
    /// Link i's settled source (wrapped) panics when dropped in place.
    SourceDropPanics(usize),
    /// Link i's unused handler panics when dropped.
    UnusedDropPanics(usize),
    /// Link i's reaction panics when polled.
    ReactionPollPanics(usize),
}

#[derive(Default)]
struct Deep {
    plan: Cell<Option<Plan>>,
    next: Cell<usize>,
    expect: Cell<u64>,
    hnd: DropCounter,
    hnd_made: Cell<usize>,
    bombs: DropCounter,
    bombs_made: Cell<usize>,
    rx: DropCounter,
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    ctx: DropCounter,
    ran: Arc<AtomicUsize>,
}

impl Deep {
    fn plan(&self) -> Plan {
        self.plan.get().unwrap_or(Plan::None)
    }
    fn capture(&self) -> Tracked {
        self.hnd_made.set(self.hnd_made.get() + 1);
        self.hnd.tracked()
    }
    fn bomb_if(&self, yes: bool) -> Option<PanicOnDrop> {
        yes.then(|| {
            self.bombs_made.set(self.bombs_made.get() + 1);
            self.bombs.panicking()
        })
    }
    /// Makes link `i` (its index, in construction order), in a context of
    /// its own when `std`.
    fn link<R>(&self, make: impl FnOnce(usize) -> R) -> R {
        let i = self.next.get();
        self.next.set(i + 1);
        #[cfg(feature = "std")]
        {
            LINK_CTX.run(CtxVal(i, self.ctx.tracked()), || make(i))
        }
        #[cfg(not(feature = "std"))]
        {
            make(i)
        }
    }
}

/// In a handler of link `i`: its own context is current.
fn in_link_context(_i: usize) {
    #[cfg(feature = "std")]
    assert_eq!(
        LINK_CTX.with(|v| v.map(|v| v.0)),
        Some(_i),
        "link {_i}'s handler runs in its context"
    );
}

/// Delegates to `inner`; panics on drop when it holds a bomb.
struct Wrap<P> {
    inner: P,
    _bomb: Option<PanicOnDrop>,
}
impl<P: Future + Unpin> Future for Wrap<P> {
    type Output = P::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<P::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

type R = Result<u64, u64>;

fn wrap<P>(p: P, d: &Deep, i: usize) -> Wrap<P> {
    Wrap {
        inner: p,
        _bomb: d.bomb_if(d.plan() == Plan::SourceDropPanics(i)),
    }
}

/// A reaction pending once; its poll panics if planned for link `i`.
fn reaction(v: R, rx: &DropCounter, poll_bomb: bool) -> Src<R> {
    let mut s = Src::new(v, 1, rx.tracked());
    s.poll_bomb = poll_bomb;
    s
}

fn then<P>(p: P, d: &Deep) -> impl Future<Output = R> + Send + Unpin + use<P>
where
    P: Future<Output = R> + Send + Unpin,
{
    d.link(|i| {
        let cap = d.capture();
        let (plan, ran, rx) = (d.plan(), d.ran.clone(), d.rx.clone());
        d.expect.set(d.expect.get() + 1);
        wrap(p, d, i).deferred_then(move |v| {
            let _c = &cap;
            in_link_context(i);
            ran.fetch_add(1, SeqCst);
            if plan == Plan::HandlerPanics(i) {
                panic!("handler {i}");
            }
            Follow(reaction(
                Ok(v + 1),
                &rx,
                plan == Plan::ReactionPollPanics(i),
            ))
        })
    })
}

fn catch<P>(p: P, d: &Deep) -> impl Future<Output = R> + Send + Unpin + use<P>
where
    P: Future<Output = R> + Send + Unpin,
{
    d.link(|i| {
        let cap = d.capture();
        let bomb = d.bomb_if(d.plan() == Plan::UnusedDropPanics(i));
        wrap(p, d, i).deferred_catch(move |e: u64| {
            let _c = (&cap, &bomb);
            unreachable!("catch on a fulfilled chain ({e})");
            #[allow(unreachable_code)]
            Ok::<u64, u64>(e)
        })
    })
}

fn tc<P>(p: P, d: &Deep) -> impl Future<Output = R> + Send + Unpin + use<P>
where
    P: Future<Output = R> + Send + Unpin,
{
    d.link(|i| {
        let (cap1, cap2) = (d.capture(), d.capture());
        let bomb = d.bomb_if(d.plan() == Plan::UnusedDropPanics(i));
        let (plan, ran, rx) = (d.plan(), d.ran.clone(), d.rx.clone());
        d.expect.set(d.expect.get() + 1);
        wrap(p, d, i).deferred_then_catch(
            move |v: u64| {
                let _c = &cap1;
                in_link_context(i);
                ran.fetch_add(1, SeqCst);
                if plan == Plan::HandlerPanics(i) {
                    panic!("handler {i}");
                }
                Follow(reaction(
                    Ok(v + 1),
                    &rx,
                    plan == Plan::ReactionPollPanics(i),
                ))
            },
            move |e: u64| {
                let _c = (&cap2, &bomb);
                Follow(Src::new(
                    Err::<u64, u64>(e),
                    0,
                    DropCounter::new().tracked(),
                ))
            },
        )
    })
}

fn fin<P>(p: P, d: &Deep) -> impl Future<Output = R> + Send + Unpin + use<P>
where
    P: Future<Output = R> + Send + Unpin,
{
    d.link(|i| {
        let cap = d.capture();
        let (plan, ran, rx) = (d.plan(), d.ran.clone(), d.rx.clone());
        wrap(p, d, i).deferred_finally(move || {
            let _c = &cap;
            in_link_context(i);
            ran.fetch_add(1, SeqCst);
            if plan == Plan::HandlerPanics(i) {
                panic!("handler {i}");
            }
            let mut s = Src::new(Ok::<(), u64>(()), 1, rx.tracked());
            s.poll_bomb = plan == Plan::ReactionPollPanics(i);
            Follow(s)
        })
    })
}

/// Applies the named link functions, bottom first.
macro_rules! nest {
    ($p:expr, $d:expr; ) => { $p };
    ($p:expr, $d:expr; $f:ident $($rest:ident)*) => { nest!($f($p, $d), $d; $($rest)*) };
}

/// The links of a chain of `n`: `then catch tc fin` repeated.
fn kind_of(i: usize) -> &'static str {
    ["then", "catch", "tc", "fin"][i % 4]
}

fn plans(n: usize) -> Vec<Plan> {
    let mid = n / 2;
    let runs = |i: usize| kind_of(i) != "catch";
    let unused = (mid..n).find(|&i| matches!(kind_of(i), "catch" | "tc"));
    let run_at = (mid..n).find(|&i| runs(i)).unwrap_or(0);
    let mut v = vec![
        Plan::None,
        Plan::HandlerPanics(run_at),
        Plan::SourceDropPanics(mid),
        Plan::SourceDropPanics(0),
        Plan::SourceDropPanics(n - 1),
        Plan::ReactionPollPanics(run_at),
    ];
    v.extend(unused.map(Plan::UnusedDropPanics));
    v
}

/// Drives a deep chain under every plan, stopping after `stop` polls (or
/// at the end), then checks: captures, bombs, reactions and contexts each
/// dropped exactly once; a finished chain panics "polled after completion".
fn deep_case<F: Future<Output = R> + Unpin>(
    n: usize,
    plan: Plan,
    stop: Option<usize>,
    d: &Deep,
    p: F,
) {
    let ctx = format!("n={n} {plan:?} stop={stop:?}");
    assert_eq!(d.next.get(), n, "{ctx}");
    let mut p = Box::new(p);
    let w = WakeCounter::new();
    let mut polls = 0;
    let mut finished = false;
    let mut panicked = None;
    while stop.is_none_or(|s| polls < s) && !finished {
        polls += 1;
        assert!(polls < 4 * n + 10, "{ctx}: does not settle");
        match poll_caught(Pin::new(&mut *p), &w) {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(out)) => {
                assert_eq!(plan, Plan::None, "{ctx}");
                assert_eq!(out, Ok(d.expect.get()), "{ctx}");
                finished = true;
            }
            Err(msg) => {
                panicked = Some(msg);
                finished = true;
            }
        }
    }
    if stop.is_none() {
        let expect = match plan {
            Plan::None => None,
            Plan::HandlerPanics(i) => Some(format!("handler {i}")),
            Plan::ReactionPollPanics(_) => Some("reaction poll".to_owned()),
            Plan::SourceDropPanics(_) | Plan::UnusedDropPanics(_) => {
                Some("PanicOnDrop dropped".to_owned())
            }
        };
        assert_eq!(panicked, expect, "{ctx}");
        if plan != Plan::None && !matches!(plan, Plan::ReactionPollPanics(_)) {
            assert_eq!(d.bombs.get(), d.bombs_made.get(), "{ctx}: bombs");
        }
        if !matches!(plan, Plan::ReactionPollPanics(_)) {
            let again = poll_caught(Pin::new(&mut *p), &w).unwrap_err();
            assert_eq!(again, AFTER_COMPLETION, "{ctx}");
        }
    }
    let unsettled_bomb = d.bombs_made.get() > d.bombs.get();
    if unsettled_bomb {
        assert_eq!(panics(move || drop(p)), "PanicOnDrop dropped", "{ctx}");
    } else {
        drop(p);
    }
    assert_eq!(d.hnd.get(), d.hnd_made.get(), "{ctx}: handler captures");
    assert_eq!(d.bombs.get(), d.bombs_made.get(), "{ctx}: bombs");
    #[cfg(feature = "std")]
    assert_eq!(d.ctx.get(), n, "{ctx}: each link's context released once");
    let ran = d.ran.load(SeqCst);
    assert!(
        d.rx.get() <= ran,
        "{ctx}: reactions {} > runs {ran}",
        d.rx.get()
    );
}

macro_rules! deep_test {
    ($name:ident, $n:expr, [$($f:ident)*]) => {
        #[test]
        fn $name() {
            for plan in plans($n) {
                for stop in [Some(0), Some(1), Some(2), Some($n + 1), None] {
                    let d = Deep::default();
                    d.plan.set(Some(plan));
                    let base = Src::new(Ok::<u64, u64>(0), 1, DropCounter::new().tracked());
                    let p = nest!(base, &d; $($f)*);
                    deep_case($n, plan, stop, &d, p);
                }
            }
        }
    };
}

deep_test!(a_chain_of_1_link_drops_once_under_every_plan, 1, [then]);
deep_test!(a_chain_of_2_links_drops_once_under_every_plan, 2, [then catch]);
deep_test!(
    a_chain_of_8_links_drops_once_under_every_plan,
    8,
    [then catch tc fin then catch tc fin]
);
/// 64 links: eight groups of eight nested links, each group boxed as the
/// next group's source (64 directly nested link types overflow rustc).
#[test]
fn a_chain_of_64_links_drops_once_under_every_plan() {
    for plan in plans(64) {
        for stop in [Some(0), Some(1), Some(2), Some(65), None] {
            let d = Deep::default();
            d.plan.set(Some(plan));
            let mut p: BoxFut<R> =
                Box::pin(Src::new(Ok::<u64, u64>(0), 1, DropCounter::new().tracked()));
            for _ in 0..8 {
                p = Box::pin(nest!(p, &d; then catch tc fin then catch tc fin));
            }
            deep_case(64, plan, stop, &d, p);
        }
    }
}

// ---------------------------------------------------------------- pinning

/// Addresses a pinned part recorded: (event, address).
#[derive(Clone, Default)]
struct Addrs(Arc<Mutex<Vec<(&'static str, usize)>>>);
impl Addrs {
    fn push(&self, what: &'static str, addr: usize) {
        self.0.lock().unwrap().push((what, addr));
    }
    fn take(&self) -> Vec<(&'static str, usize)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    /// Every address recorded is the same one, aligned to `align`, and a
    /// drop was recorded (last).
    fn assert_one_place(&self, ctx: &str, align: usize, min_events: usize) {
        let v = self.take();
        assert!(v.len() >= min_events, "{ctx}: {v:?}");
        assert_eq!(v.last().map(|e| e.0), Some("drop"), "{ctx}: {v:?}");
        assert!(
            v.iter().all(|e| e.1 == v[0].1),
            "{ctx}: moved while pinned: {v:?}"
        );
        assert_eq!(v[0].1 % align, 0, "{ctx}: misaligned {v:?}");
    }
}

/// A `!Unpin`, over-aligned source: records its address at every poll and
/// at its drop; pending `pending` times.
#[repr(align(64))]
struct PinSrc {
    addrs: Addrs,
    pending: AtomicUsize,
    out: Mutex<Option<R>>,
    _pin: PhantomPinned,
}
impl PinSrc {
    fn new(addrs: &Addrs, pending: usize, out: R) -> Self {
        PinSrc {
            addrs: addrs.clone(),
            pending: AtomicUsize::new(pending),
            out: Mutex::new(Some(out)),
            _pin: PhantomPinned,
        }
    }
}
impl Future for PinSrc {
    type Output = R;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this: &Self = &self;
        this.addrs.push("poll", std::ptr::from_ref(this).addr());
        if this.pending.load(SeqCst) > 0 {
            this.pending.fetch_sub(1, SeqCst);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(this.out.lock().unwrap().take().expect("PinSrc ready twice"))
    }
}
impl Drop for PinSrc {
    fn drop(&mut self) {
        self.addrs.push("drop", std::ptr::from_ref(self).addr());
    }
}

/// Records its own address (inside the async block holding it) when made
/// and when dropped.
struct AddrOnDrop(Addrs);
impl Drop for AddrOnDrop {
    fn drop(&mut self) {
        self.0.push("drop", std::ptr::from_ref(self).addr());
    }
}

/// An async block holding a reference to its own local across awaits:
/// `pending` yields, recording the local's address before each and after
/// the last.
fn self_ref(addrs: &Addrs, pending: usize, out: R) -> impl Future<Output = R> + Send + use<> {
    let addrs = addrs.clone();
    async move {
        let guard = AddrOnDrop(addrs.clone());
        let me = &guard;
        for _ in 0..pending {
            addrs.push("poll", std::ptr::from_ref(me).addr());
            yield_now().await;
        }
        addrs.push("poll", std::ptr::from_ref(me).addr());
        out
    }
}

/// A `!Unpin` over-aligned source, and a self-referential async block as a
/// source and as a reaction, under each combinator, small and big
/// handlers: never moved between their first poll and their drop (whether
/// dropped in place as the link settles, by the reaction's completion, or
/// by the link's own drop while pending), always aligned.
#[test]
fn pinned_sources_and_reactions_never_move_until_dropped() {
    for polls in 1..5usize {
        for big in [false, true] {
            let (sa, ra) = (Addrs::default(), Addrs::default());
            let ctx = format!("polls={polls} big={big}");
            let pad = [big as u8; 256];
            let ra2 = ra.clone();
            let p: BoxFut<R> = if big {
                Box::pin(PinSrc::new(&sa, 1, Ok(1)).deferred_then(move |v| {
                    assert_eq!(pad[255], 1);
                    Follow(self_ref(&ra2, 1, Ok(v + 1)))
                }))
            } else {
                Box::pin(
                    PinSrc::new(&sa, 1, Ok(1))
                        .deferred_then(move |v| Follow(self_ref(&ra2, 1, Ok(v + 1)))),
                )
            };
            // Moved around before its first poll: allowed.
            let p = std::hint::black_box(p);
            let mut p = p;
            let w = WakeCounter::new();
            let mut out = None;
            for _ in 0..polls.min(3) {
                if let Poll::Ready(o) = poll_once(p.as_mut(), &w) {
                    out = Some(o);
                }
            }
            if polls >= 2 {
                // The source settled: dropped in place by `take_handler`.
                sa.assert_one_place(&format!("{ctx} source"), 64, 3);
            }
            drop(p);
            if polls < 2 {
                sa.assert_one_place(&format!("{ctx} source"), 64, polls + 1);
            }
            if polls >= 2 {
                ra.assert_one_place(&format!("{ctx} reaction"), 1, 2);
            }
            assert_eq!(out, (polls >= 3).then_some(Ok(2)), "{ctx}");
        }
    }
}

/// A self-referential async block as the source of a `Finally` and a
/// `ThenCatch`, dropped while pending and settled.
#[test]
fn self_referential_sources_under_finally_and_then_catch_stay_put() {
    for polls in 0..4usize {
        let a = Addrs::default();
        let p = self_ref(&a, 2, Err(5)).deferred_finally(|| ());
        let mut p = Box::pin(p);
        let w = WakeCounter::new();
        for _ in 0..polls {
            let _ = poll_once(p.as_mut(), &w);
        }
        drop(p);
        if polls > 0 {
            a.assert_one_place(&format!("finally polls={polls}"), 1, polls.min(3) + 1);
        }

        let a = Addrs::default();
        let p = self_ref(&a, 2, Err(5)).deferred_then_catch(Ok::<u64, u64>, |e| Ok(e + 1));
        let mut p = Box::pin(p);
        for _ in 0..polls {
            let _ = poll_once(p.as_mut(), &w);
        }
        drop(p);
        if polls > 0 {
            a.assert_one_place(&format!("then_catch polls={polls}"), 1, polls.min(3) + 1);
        }
    }
}

// ------------------------------------------------- reactions and values

/// A reaction whose poll panics: the chain stays on its reaction, which the
/// link's drop drops exactly once (with the value it holds); the handler's
/// capture went when it ran.
#[test]
fn a_reaction_whose_poll_panics_is_dropped_once_with_its_value() {
    for big in [false, true] {
        let c = Counts::default();
        let (rx, val) = (c.rx.clone(), c.val.clone());
        let cap = c.hnd.tracked();
        let pad = [0u8; 256];
        let p = Src::new(Ok::<u64, u64>(1), 0, c.src.tracked()).deferred_then(move |_| {
            let _c = &cap;
            let _p = if big { pad.len() } else { 0 };
            let mut s = Src::new(Ok::<Tracked, u64>(val.tracked()), 0, rx.tracked());
            s.poll_bomb = true;
            Follow(s)
        });
        let mut p = Box::pin(p);
        let w = WakeCounter::new();
        assert_eq!(poll_caught(p.as_mut(), &w).unwrap_err(), "reaction poll");
        assert_eq!(
            (c.src.get(), c.hnd.get(), c.rx.get(), c.val.get()),
            (1, 1, 0, 0)
        );
        drop(p);
        assert_eq!(
            (c.src.get(), c.hnd.get(), c.rx.get(), c.val.get()),
            (1, 1, 1, 1)
        );
    }
}

/// A pending reaction whose destructor panics, dropped with the link (the
/// out-of-line `drop_chain` for a big chain, inline for a small one): its
/// value dropped once; the captured context released once.
#[test]
fn a_pending_reaction_whose_drop_panics_drops_its_value_once() {
    for big in [false, true] {
        let c = Counts::default();
        let bombs = DropCounter::new();
        let (rx, val, b) = (c.rx.clone(), c.val.clone(), bombs.clone());
        let pad = [0u8; 256];
        let p = std::future::ready(Ok::<u8, u8>(1)).deferred_then(move |_| {
            let _p = if big { pad.len() } else { 0 };
            Follow(Src::new(Ok::<Tracked, u8>(val.tracked()), 2, rx.tracked()).bomb(b.panicking()))
        });
        let mut p = Box::pin(p);
        let w = WakeCounter::new();
        assert!(poll_once(p.as_mut(), &w).is_pending());
        assert_eq!(panics(move || drop(p)), "PanicOnDrop dropped");
        assert_eq!(
            (c.rx.get(), c.val.get(), bombs.get()),
            (1, 1, 1),
            "big={big}"
        );
    }
}

/// `Finally`'s held settlement, whose destructor panics, dropped with the
/// link while the handler's reaction is pending: the reaction and the
/// held value each once.
#[test]
fn finally_drops_a_held_settlement_that_panics_on_drop_once() {
    let (rx, bombs) = (DropCounter::new(), DropCounter::new());
    let rx2 = rx.clone();
    let p = std::future::ready(Ok::<PanicOnDrop, u8>(bombs.panicking()))
        .deferred_finally(move || Follow(Src::new(Ok::<(), u8>(()), 3, rx2.tracked())));
    let mut p = Box::pin(p);
    let w = WakeCounter::new();
    assert!(poll_once(p.as_mut(), &w).is_pending());
    assert_eq!(bombs.get(), 0);
    assert_eq!(panics(move || drop(p)), "PanicOnDrop dropped");
    assert_eq!((rx.get(), bombs.get()), (1, 1));
}

/// A source whose destructor panics as the link settles, for `Catch`,
/// `ThenCatch` and `Finally` with big and aligned captures (`Then` with a
/// small one is in promise_chain.rs): the handlers dropped once, the value
/// once, the chain finished.
#[test]
fn a_settled_source_whose_drop_panics_under_each_combinator() {
    fn case<K: Capture>(kind: Kind, ok: bool) {
        let c = Counts::default();
        let bombs = DropCounter::new();
        let v = c.val.tracked();
        let src =
            Src::new(if ok { Ok(v) } else { Err(v) }, 0, c.src.tracked()).bomb(bombs.panicking());
        let ctx = format!("{kind:?} ok={ok} {}", std::any::type_name::<K>());
        let ran = c.ran.clone();
        let mut p: BoxFut<Out> = match kind {
            Kind::Then => {
                let k = K::new(c.hnd.tracked());
                Box::pin(src.deferred_then(move |v: Tracked| {
                    let _k = &k;
                    ran.fetch_add(1, SeqCst);
                    Ok(v)
                }))
            }
            Kind::Catch => {
                let k = K::new(c.hnd.tracked());
                Box::pin(src.deferred_catch(move |e: Tracked| {
                    let _k = &k;
                    ran.fetch_add(1, SeqCst);
                    Ok::<Tracked, Tracked>(e)
                }))
            }
            Kind::ThenCatch => {
                let (k1, k2) = (K::new(c.hnd.tracked()), K::new(c.hnd.tracked()));
                Box::pin(src.deferred_then_catch(
                    move |v: Tracked| {
                        let _k = &k1;
                        Ok::<Tracked, Tracked>(v)
                    },
                    move |e: Tracked| {
                        let _k = &k2;
                        Err::<Tracked, Tracked>(e)
                    },
                ))
            }
            Kind::Finally => {
                let k = K::new(c.hnd.tracked());
                Box::pin(src.deferred_finally(move || {
                    let _k = &k;
                }))
            }
        };
        let w = WakeCounter::new();
        assert_eq!(
            poll_caught(p.as_mut(), &w).unwrap_err(),
            "PanicOnDrop dropped",
            "{ctx}"
        );
        let handlers = if kind == Kind::ThenCatch { 2 } else { 1 };
        assert_eq!(c.ran.load(SeqCst), 0, "{ctx}: no handler ran");
        assert_eq!(
            (c.src.get(), c.hnd.get(), c.val.get()),
            (1, handlers, 1),
            "{ctx}"
        );
        assert_eq!(
            poll_caught(p.as_mut(), &w).unwrap_err(),
            AFTER_COMPLETION,
            "{ctx}"
        );
        drop(p);
        assert_eq!(
            (c.src.get(), c.hnd.get(), c.val.get(), bombs.get()),
            (1, handlers, 1, 1),
            "{ctx}"
        );
    }
    for kind in KINDS {
        for ok in [true, false] {
            case::<Big>(kind, ok);
            case::<Aligned>(kind, ok);
        }
    }
}

/// The unused handler of `Then` on a rejection and of `Catch` on a
/// fulfilment, big and aligned, whose destructor panics: the settlement
/// dropped once (review_drop_panics.rs has the small-closure case), the
/// link finished, nothing dropped again by the link's drop.
#[test]
fn an_unused_big_or_aligned_handler_whose_drop_panics() {
    struct BigBomb(
        #[allow(dead_code)] [u8; 256],
        #[allow(dead_code)] PanicOnDrop,
    );
    #[repr(align(64))]
    struct AlignedBomb(#[allow(dead_code)] PanicOnDrop);
    for aligned in [false, true] {
        for then in [true, false] {
            let (val, src, bombs) = (DropCounter::new(), DropCounter::new(), DropCounter::new());
            let s = Src::new(
                if then {
                    Err::<Tracked, Tracked>(val.tracked())
                } else {
                    Ok(val.tracked())
                },
                0,
                src.tracked(),
            );
            let (b1, b2) = (
                BigBomb([1; 256], bombs.panicking()),
                AlignedBomb(bombs.panicking()),
            );
            // Only one of them is captured; the other is dropped (and
            // panics) here, caught.
            let mut p: BoxFut<Out> = if then {
                if aligned {
                    panics(move || drop(b1));
                    Box::pin(s.deferred_then(move |v| {
                        let _b = &b2;
                        Ok(v)
                    }))
                } else {
                    panics(move || drop(b2));
                    Box::pin(s.deferred_then(move |v| {
                        let _b = &b1;
                        Ok(v)
                    }))
                }
            } else if aligned {
                panics(move || drop(b1));
                Box::pin(s.deferred_catch(move |e| {
                    let _b = &b2;
                    Ok::<Tracked, Tracked>(e)
                }))
            } else {
                panics(move || drop(b2));
                Box::pin(s.deferred_catch(move |e| {
                    let _b = &b1;
                    Ok::<Tracked, Tracked>(e)
                }))
            };
            let ctx = format!("aligned={aligned} then={then}");
            let w = WakeCounter::new();
            assert_eq!(
                poll_caught(p.as_mut(), &w).unwrap_err(),
                "PanicOnDrop dropped",
                "{ctx}"
            );
            assert_eq!((val.get(), src.get(), bombs.get()), (1, 1, 2), "{ctx}");
            assert_eq!(
                poll_caught(p.as_mut(), &w).unwrap_err(),
                AFTER_COMPLETION,
                "{ctx}"
            );
            drop(p);
            assert_eq!((val.get(), src.get(), bombs.get()), (1, 1, 2), "{ctx}");
        }
    }
}

// ------------------------------------------------------------- contexts

/// One link of each combinator made while a context value is set (its
/// only owner, once `run` returns, is the link's captured context),
/// dropped at every stop: the value is released exactly once, and only
/// when the link is dropped.
#[cfg(feature = "std")]
#[test]
fn a_links_captured_context_is_released_once_at_every_stop() {
    for kind in KINDS {
        for ok in [true, false] {
            for stop in STOPS {
                let ctx = format!("{kind:?} ok={ok} {stop:?}");
                let (c, values) = (Counts::default(), DropCounter::new());
                let mut p = LINK_CTX.run(CtxVal(0, values.tracked()), || {
                    one_link::<Aligned>(kind, ok, &c)
                });
                assert_eq!(values.get(), 0, "{ctx}: held by the link");
                let w = WakeCounter::new();
                let polls = match stop {
                    Stop::Unpolled => 0,
                    Stop::SourcePending => 1,
                    Stop::ReactionPending => 2,
                    Stop::Done => 3,
                    Stop::PolledAgain => 4,
                };
                let mut out = None;
                for _ in 0..polls {
                    match poll_caught(p.as_mut(), &w) {
                        Ok(Poll::Ready(o)) => out = Some(o),
                        Ok(Poll::Pending) => {}
                        Err(msg) => assert_eq!(msg, AFTER_COMPLETION, "{ctx}"),
                    }
                }
                assert_eq!(values.get(), 0, "{ctx}: held until the link drops");
                drop(p);
                assert_eq!(values.get(), 1, "{ctx}: released once");
                drop(out);
                assert_eq!((c.src.get(), c.val.get()), (1, 1), "{ctx}");
            }
        }
    }
}

/// A handler that panics, and a settled source whose destructor panics, in
/// a link made in a context: the context value released once, when the
/// link is dropped, and a context value whose own destructor panics is
/// dropped once too (after the chain: nothing else of the link leaks).
#[cfg(feature = "std")]
#[test]
fn a_links_context_is_released_once_when_the_link_panics() {
    static BOMB_CTX: deferral::ContextVar<PanicOnDrop> = deferral::ContextVar::new();
    for src_bomb in [false, true] {
        let ctx = format!("src_bomb={src_bomb}");
        let (values, ctx_bombs, caps, bombs) = (
            DropCounter::new(),
            DropCounter::new(),
            DropCounter::new(),
            DropCounter::new(),
        );
        let cap = caps.tracked();
        let mut s = Src::new(Ok::<u64, u64>(1), 0, DropCounter::new().tracked());
        if src_bomb {
            s = s.bomb(bombs.panicking());
        }
        let p = BOMB_CTX.run(ctx_bombs.panicking(), || {
            LINK_CTX.run(CtxVal(0, values.tracked()), || {
                s.deferred_then(move |_| -> Result<u64, u64> {
                    let _c = &cap;
                    panic!("handler ran");
                })
            })
        });
        let mut p = Box::pin(p);
        let w = WakeCounter::new();
        let msg = poll_caught(p.as_mut(), &w).unwrap_err();
        let expect = if src_bomb {
            "PanicOnDrop dropped"
        } else {
            "handler ran"
        };
        assert_eq!(msg, expect, "{ctx}");
        assert_eq!(
            (caps.get(), values.get(), ctx_bombs.get()),
            (1, 0, 0),
            "{ctx}"
        );
        // The link's drop releases the context last; its value's
        // destructor panics out of the link's drop glue.
        assert_eq!(panics(move || drop(p)), "PanicOnDrop dropped", "{ctx}");
        assert_eq!(
            (caps.get(), values.get(), ctx_bombs.get()),
            (1, 1, 1),
            "{ctx}"
        );
    }
}

/// A pending link whose source's destructor panics, made in a context:
/// the link's `Drop` unwinds out of dropping the chain; the handler and
/// the context (dropped by the glue after `Drop::drop`) each once.
#[cfg(feature = "std")]
#[test]
fn a_pending_link_whose_source_drop_panics_still_releases_its_context() {
    for big in [false, true] {
        let (values, caps, bombs) = (DropCounter::new(), DropCounter::new(), DropCounter::new());
        let cap = caps.tracked();
        let pad = [3u8; 256];
        let s =
            Src::new(Ok::<u64, u64>(1), 5, DropCounter::new().tracked()).bomb(bombs.panicking());
        let p = LINK_CTX.run(CtxVal(0, values.tracked()), || {
            s.deferred_then(move |v| {
                let _c = &cap;
                Ok::<u64, u64>(v + if big { u64::from(pad[0]) } else { 0 })
            })
        });
        let mut p = Box::pin(p);
        let w = WakeCounter::new();
        assert!(poll_once(p.as_mut(), &w).is_pending());
        assert_eq!(panics(move || drop(p)), "PanicOnDrop dropped");
        assert_eq!(
            (bombs.get(), caps.get(), values.get()),
            (1, 1, 1),
            "big={big}"
        );
    }
}

// -------------------------------------------------- boxed, shared, caught

/// Boxed (erased) chains — the link nodes reach their source through
/// `HasSource::source_mut`, `&mut *self.chain` — over a pending source,
/// mixed with unboxed links, dropped after 0..=4 polls, with and without a
/// settled source whose destructor panics: every part once.
#[cfg(feature = "alloc")]
#[test]
fn boxed_chains_drop_every_part_once() {
    use deferral::promise::BoxPromise;
    for bomb in [false, true] {
        for polls in 0..6usize {
            let ctx = format!("bomb={bomb} polls={polls}");
            let c = Counts::default();
            let bombs = DropCounter::new();
            let mut s = Src::new(Ok::<u64, u64>(1), 1, c.src.tracked());
            if bomb {
                s = s.bomb(bombs.panicking());
            }
            let (k1, k2, k3, k4, k5) = (
                Big::new(c.hnd.tracked()),
                Aligned::new(c.hnd.tracked()),
                Small::new(c.hnd.tracked()),
                Big::new(c.hnd.tracked()),
                Aligned::new(c.hnd.tracked()),
            );
            let (rx1, rx2) = (c.rx.clone(), c.rx.clone());
            let base: BoxPromise<'static, u64, u64> =
                deferral::DeferredPromise::lazy(move || s).boxed();
            let p = base
                .deferred_then(move |v| {
                    k1.check();
                    Follow(Src::new(Ok::<u64, u64>(v + 1), 1, rx1.tracked()))
                })
                .deferred_catch(move |e| {
                    k2.check();
                    Ok::<u64, u64>(e)
                })
                .deferred_then_catch(
                    move |v| {
                        let _k = &k3;
                        Ok::<u64, u64>(v + 1)
                    },
                    move |e| {
                        k4.check();
                        Err(e)
                    },
                )
                .deferred_finally(move || {
                    k5.check();
                    Follow(Src::new(Ok::<(), u64>(()), 1, rx2.tracked()))
                });
            // An unboxed link over the boxed chain, boxed again.
            let cap = c.hnd.tracked();
            let p = p
                .deferred_then(move |v| {
                    let _c = &cap;
                    Ok::<u64, u64>(v * 10)
                })
                .boxed();
            let mut p = Box::pin(p);
            let w = WakeCounter::new();
            let mut res = None;
            for _ in 0..polls {
                match poll_caught(p.as_mut(), &w) {
                    Ok(Poll::Ready(o)) => res = Some(o),
                    Ok(Poll::Pending) => {}
                    Err(msg) => {
                        assert!(bomb || res.is_some(), "{ctx}: {msg}");
                        res = res.or(Some(Err(u64::MAX)));
                    }
                }
            }
            if bomb && bombs.get() == 0 {
                assert_eq!(panics(move || drop(p)), "PanicOnDrop dropped", "{ctx}");
            } else {
                drop(p);
            }
            if !bomb && polls >= 5 {
                assert_eq!(res, Some(Ok(30)), "{ctx}");
            }
            assert_eq!(c.src.get(), 1, "{ctx}: source");
            assert_eq!(c.hnd.get(), 6, "{ctx}: captures");
            assert_eq!(bombs.get(), usize::from(bomb), "{ctx}: bomb");
            assert!(c.rx.get() <= 2, "{ctx}");
        }
    }
}

/// A chain inside a `SharedPromise`: one handle dropped while the chain is
/// pending, another drives it to the end; or every handle dropped while
/// pending; or the handler panics. Every part dropped once, the shared
/// output once (after the last handle and output).
#[cfg(feature = "alloc")]
#[test]
fn a_chain_in_a_shared_promise_drops_every_part_once() {
    use deferral::SharedPromise;
    for mode in 0..3 {
        let c = Counts::default();
        let (cap, out_counter) = (c.hnd.tracked(), c.val.clone());
        let panicking = mode == 2;
        let chain = Src::new(Ok::<u64, u64>(1), 1, c.src.tracked())
            .deferred_then(move |v| {
                let _c = &cap;
                if panicking {
                    panic!("shared handler");
                }
                Ok::<Arc<Tracked>, u64>(Arc::new(out_counter.tracked()))
                    .map(|t| (t, v))
                    .map(|(t, _)| t)
            })
            .deferred_finally(|| ());
        let s1 = SharedPromise::new(chain);
        let mut s2 = Box::pin(s1.clone());
        let mut s1 = Box::pin(s1);
        let w = WakeCounter::new();
        assert!(poll_once(s1.as_mut(), &w).is_pending());
        drop(s1);
        match mode {
            0 => {
                let mut out = None;
                for _ in 0..3 {
                    if let Poll::Ready(o) = poll_once(s2.as_mut(), &w) {
                        out = Some(o);
                        break;
                    }
                }
                assert!(matches!(out, Some(Ok(_))));
                assert_eq!((c.src.get(), c.hnd.get(), c.val.get()), (1, 1, 0));
                drop(out);
                drop(s2);
            }
            1 => drop(s2),
            _ => {
                let mut msg = None;
                for _ in 0..3 {
                    match poll_caught(s2.as_mut(), &w) {
                        Err(m) => {
                            msg = Some(m);
                            break;
                        }
                        Ok(Poll::Pending) => {}
                        Ok(Poll::Ready(_)) => panic!("settled"),
                    }
                }
                assert_eq!(msg.as_deref(), Some("shared handler"));
                drop(s2);
            }
        }
        assert_eq!(c.src.get(), 1, "mode {mode}: source");
        assert_eq!(c.hnd.get(), 1, "mode {mode}: capture");
        assert_eq!(c.val.get(), usize::from(mode == 0), "mode {mode}: output");
    }
}

/// `catch_panics` around a chain whose handler panics, or whose settled
/// source panics as it is dropped in place: the panic comes out as a
/// rejection, every part dropped once.
#[cfg(feature = "std")]
#[test]
fn catch_panics_around_a_chain_drops_every_part_once() {
    use deferral::promise::Caught;
    for src_bomb in [false, true] {
        let c = Counts::default();
        let bombs = DropCounter::new();
        let cap = Big::new(c.hnd.tracked());
        let mut s = Src::new(Ok::<u64, u64>(1), 1, c.src.tracked());
        if src_bomb {
            s = s.bomb(bombs.panicking());
        }
        let cap2 = c.hnd.tracked();
        let p = s
            .deferred_then(move |v| -> Result<u64, u64> {
                cap.check();
                panic!("caught handler {v}");
            })
            .deferred_catch(move |e| {
                let _c = &cap2;
                Ok::<u64, u64>(e)
            })
            .catch_panics();
        let out = support::block_on(p);
        let Err(Caught::Panicked(panic)) = out else {
            panic!("not caught")
        };
        let expect = if src_bomb {
            "PanicOnDrop dropped"
        } else {
            "caught handler 1"
        };
        assert_eq!(panic.message(), Some(expect));
        assert_eq!(
            (c.src.get(), c.hnd.get(), bombs.get()),
            (1, 2, usize::from(src_bomb))
        );
    }
}

// --------------------------------------------------------------- forget

/// `mem::forget` of a chain — unpolled on the stack, and pinned in a box
/// while its source is pending, and while its reaction is pending: nothing
/// is dropped (no double drop later, no drop at all), and the thread goes
/// on running other chains normally.
#[test]
#[cfg_attr(
    miri,
    ignore = "leaks by design (a forgotten boxed chain): run under Miri with -Zmiri-ignore-leaks"
)]
fn a_forgotten_chain_drops_nothing_and_the_thread_goes_on() {
    for polls in 0..3usize {
        let c = Counts::default();
        let p = one_link::<Big>(Kind::Then, true, &c);
        let mut p = p;
        let w = WakeCounter::new();
        for _ in 0..polls {
            assert!(poll_once(p.as_mut(), &w).is_pending());
        }
        std::mem::forget(p);
        let settled = usize::from(polls >= 2);
        assert_eq!(
            (c.src.get(), c.hnd.get(), c.rx.get(), c.val.get()),
            (settled, settled, 0, 0),
            "polls={polls}"
        );
        // The thread goes on.
        let c2 = Counts::default();
        let out = support::block_on(one_link::<Aligned>(Kind::ThenCatch, false, &c2));
        assert!(out.is_err());
        drop(out);
        assert_eq!(
            (c2.src.get(), c2.hnd.get(), c2.rx.get(), c2.val.get()),
            (1, 2, 1, 1)
        );
    }
    tiny_reset();
    let z = Zst;
    let unpolled = tiny(true, 0, true).deferred_then(move |v| {
        let _z = &z;
        Ok::<u8, u8>(v)
    });
    std::mem::forget(unpolled);
    assert_eq!(tiny_counts(), (0, 0, 0));
}

// ----------------------------------------------------------------- dropck

/// Found (a compile-time regression, not UB): with a `Drop` impl on
/// `Linked<P, H, F>` (8c9f2542; `#[may_dangle]` is not stable), dropck
/// required every type parameter — the handler closure and its borrows —
/// to strictly outlive the promise: this was E0597 "`s` does not live long
/// enough ... when `p` is dropped and runs the destructor". It compiled
/// before, and does again (`futures`' combinators allow it too): if this
/// file fails to build, a combinator type gained a `Drop` impl.
mod dropck {
    use deferral::{DeferredPromise, PromiseExt};

    #[test]
    fn a_handler_may_borrow_a_local_declared_after_the_promise() {
        let (mut then, mut catch, mut both, mut finally);
        let s = String::from("ab");
        then = DeferredPromise::<u8, ()>::resolved(1)
            .deferred_then(|v| Ok::<u8, ()>(v + s.len() as u8));
        catch = DeferredPromise::<u8, ()>::rejected(())
            .deferred_catch(|()| Ok::<u8, ()>(s.len() as u8));
        both = DeferredPromise::<u8, ()>::resolved(1).deferred_then_catch(
            |v| Ok::<u8, ()>(v + s.len() as u8),
            |()| Ok::<u8, ()>(s.len() as u8),
        );
        finally = DeferredPromise::<u8, ()>::resolved(1).deferred_finally(|| {
            let _ = s.len();
        });
        // By reference: each promise is still there when `s` is dropped
        // (declared after them), and dropped after it.
        assert_eq!(futures::executor::block_on(&mut then), Ok(3));
        assert_eq!(futures::executor::block_on(&mut catch), Ok(2));
        assert_eq!(futures::executor::block_on(&mut both), Ok(3));
        assert_eq!(futures::executor::block_on(&mut finally), Ok(1));
    }
}

// ------------------------------------------------------------------ order

/// The documented order: a settled source is dropped (in place) before
/// its handler runs; an unsettled link drops its source, then its
/// handler; a settled one drops its reaction as it completes.
#[test]
fn drop_order_settled_source_before_the_handler_runs() {
    use support::DropLog;
    for settle in [false, true] {
        let log = DropLog::new();
        let (l1, l2) = (log.clone(), log.clone());
        let src_guard = log.on_drop("source");
        let cap = log.on_drop("handler");
        // Not an async block (it would drop its capture as it completes):
        // the guard goes with the source's own drop, in `take_handler`.
        struct Logged(
            std::future::Ready<Result<u8, u8>>,
            #[allow(dead_code)] support::drops::LogOnDrop,
        );
        impl Future for Logged {
            type Output = Result<u8, u8>;
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                Pin::new(&mut self.0).poll(cx)
            }
        }
        let s = Logged(std::future::ready(Ok(1)), src_guard);
        let p = s.deferred_then(move |v| {
            l1.push("run handler");
            let _c = &cap;
            let g = l2.on_drop("reaction");
            Follow(async move {
                let _g = &g;
                Ok::<u8, u8>(v)
            })
        });
        let mut p = Box::pin(p);
        if settle {
            assert_eq!(support::block_on(p.as_mut()), Ok(1));
            assert_eq!(
                log.events(),
                [
                    "drop source",
                    "run handler",
                    "drop handler",
                    "drop reaction"
                ],
            );
        }
        drop(p);
        if !settle {
            assert_eq!(log.events(), ["drop source", "drop handler"]);
        }
    }
}
