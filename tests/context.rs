//! `ContextVar` and `Snapshot`: the seed's `123`-not-`'abc'` example, nesting,
//! no leaks out of `run`/`scope` (also across panics), futures moving between
//! threads, and propagation into `DeferredPromise`s and `DeferScope` thunks.
#![cfg(feature = "alloc")]

mod support;

use deferral::{ContextVar, Snapshot};

/// The explicit API (what firmware without `std` uses).
mod explicit {
    use super::*;

    static A: ContextVar<u32> = ContextVar::new();
    static B: ContextVar<&'static str> = ContextVar::new();

    #[test]
    fn with_value_copies_on_write() {
        let empty = Snapshot::empty();
        let one = empty.with_value(&A, 1);
        let two = one.with_value(&A, 2).with_value(&B, "b");
        assert!(empty.is_empty());
        assert_eq!((empty.get(&A), empty.get(&B)), (None, None));
        assert_eq!((one.get(&A), one.get(&B), one.len()), (Some(&1), None, 1));
        assert_eq!(
            (two.get(&A), two.get(&B), two.len()),
            (Some(&2), Some(&"b"), 2)
        );
        let clone = two.clone();
        assert_eq!(clone.get(&B), Some(&"b"));
        assert_eq!(format!("{two:?}"), "Snapshot { len: 2 }");
    }

    #[test]
    fn variables_are_distinct_keys_even_of_the_same_type() {
        let x: ContextVar<u32> = ContextVar::new();
        let y: ContextVar<u32> = ContextVar::new();
        let s = Snapshot::empty().with_value(&x, 1);
        assert_eq!(s.get(&x), Some(&1));
        assert_eq!(s.get(&y), None);
        let s = s.with_value(&y, 2);
        assert_eq!((s.get(&x), s.get(&y)), (Some(&1), Some(&2)));
    }

    #[test]
    fn a_thousand_variables() {
        let n = if cfg!(miri) { 50 } else { 1000 };
        let vars: Vec<ContextVar<usize>> = (0..n).map(|_| ContextVar::new()).collect();
        let mut s = Snapshot::empty();
        for (i, v) in vars.iter().enumerate() {
            s = s.with_value(v, i);
        }
        assert_eq!(s.len(), n);
        for (i, v) in vars.iter().enumerate() {
            assert_eq!(s.get(v), Some(&i));
        }
    }

    #[test]
    fn values_are_dropped_with_the_last_snapshot() {
        static D: ContextVar<support::drops::Tracked> = ContextVar::new();
        let drops = support::DropCounter::new();
        let s = Snapshot::empty().with_value(&D, drops.tracked());
        let t = s.with_value(&A, 1); // shares the value
        drop(s);
        assert_eq!(drops.get(), 0);
        drop(t);
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn auto_traits() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Snapshot>();
        send_sync::<ContextVar<u8>>();
    }
}

/// The thread-local current context (`std`).
#[cfg(feature = "std")]
mod current {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::pin::pin;
    use std::sync::{Arc, Mutex};
    use std::task::Poll;

    use deferral::context::WithContext;
    use deferral::{DeferredPromise, PromiseExt, scope};

    use super::support::{self, Gate, WakeCounter, block_on, poll_once, yield_now};
    use super::*;

    /// The seed's variable holds a number or a string.
    #[derive(Clone, Debug, PartialEq)]
    enum Js {
        Num(u32),
        Str(&'static str),
    }

    static AC: ContextVar<Js> = ContextVar::new();
    static V: ContextVar<u32> = ContextVar::new();
    static W: ContextVar<&'static str> = ContextVar::new();

    #[test]
    fn the_seed_example_sees_123_not_abc() {
        // const p = ac.run(123, () => Promise.try_defer((res) => res(ac.get())));
        let p = AC.run(Js::Num(123), || {
            DeferredPromise::<_, deferral::PromiseError<()>>::new(|res| res.resolve(AC.get()))
        });
        // ac.run('abc', () => { p.then((val) => console.log(val)); });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let chain = AC.run(Js::Str("abc"), || {
            p.deferred_then(move |val| {
                // The handler runs in the context of `.then()`: 'abc'.
                s.lock().unwrap().push(AC.get());
                Ok(val)
            })
        });
        assert!(seen.lock().unwrap().is_empty(), "nothing ran yet");
        // Awaited in yet another context: neither leaks in.
        let val = V.run(9, || block_on(chain));
        assert_eq!(val, Ok(Some(Js::Num(123))));
        assert_eq!(*seen.lock().unwrap(), [Some(Js::Str("abc"))]);
        assert_eq!(AC.get(), None);
    }

    #[test]
    fn a_promise_created_in_the_empty_context_runs_in_it() {
        let p = DeferredPromise::<_, deferral::PromiseError<()>>::new(|res| res.resolve(V.get()));
        assert_eq!(V.run(1, || block_on(p)), Ok(None));
    }

    #[test]
    fn nested_runs_stack_and_unwind() {
        assert_eq!(V.get(), None);
        V.run(1, || {
            assert_eq!(V.get(), Some(1));
            W.run("w", || {
                assert_eq!((V.get(), W.get()), (Some(1), Some("w")));
                V.run(2, || assert_eq!((V.get(), W.get()), (Some(2), Some("w"))));
                assert_eq!(V.get(), Some(1));
            });
            assert_eq!(W.get(), None);
            assert_eq!(V.get(), Some(1));
        });
        assert_eq!((V.get(), W.get()), (None, None));
    }

    #[test]
    fn with_borrows_the_value() {
        static S: ContextVar<String> = ContextVar::new();
        assert!(S.with(|s| s.is_none()));
        let len = S.run("hello".to_string(), || S.with(|s| s.map(String::len)));
        assert_eq!(len, Some(5));
    }

    #[test]
    fn a_captured_snapshot_never_changes() {
        let snap = V.run(1, Snapshot::capture);
        V.run(2, || {
            // Setting inside the snapshot's run makes a new map.
            snap.run(|| V.run(3, || assert_eq!(V.get(), Some(3))));
            assert_eq!(snap.get(&V), Some(&1));
            assert_eq!(snap.run(|| V.get()), Some(1));
            assert_eq!(V.get(), Some(2));
        });
        assert!(Snapshot::capture().is_empty());
    }

    #[test]
    fn context_is_restored_after_a_panic_inside_run() {
        let r = catch_unwind(|| V.run(1, || -> () { panic!("boom") }));
        assert!(r.is_err());
        assert_eq!(V.get(), None);
        V.run(1, || {
            let r = catch_unwind(|| V.run(2, || W.run("w", || -> () { panic!("boom") })));
            assert!(r.is_err());
            assert_eq!((V.get(), W.get()), (Some(1), None));
            let snap = V.run(5, Snapshot::capture);
            let r = catch_unwind(AssertUnwindSafe(|| snap.run(|| -> () { panic!("boom") })));
            assert!(r.is_err());
            assert_eq!(V.get(), Some(1));
        });
        assert_eq!(V.get(), None);
    }

    #[test]
    fn context_is_restored_after_a_panic_inside_a_poll() {
        let mut fut = pin!(V.scope(1, async {
            yield_now().await;
            panic!("boom")
        }));
        let w = WakeCounter::new();
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        let r = catch_unwind(AssertUnwindSafe(|| poll_once(fut.as_mut(), &w)));
        assert!(r.is_err());
        assert_eq!(V.get(), None);
    }

    type Log = Arc<Mutex<Vec<(&'static str, Option<u32>)>>>;

    /// Records the value of `V` on every poll and when dropped.
    struct Probe {
        log: Log,
        polls: usize,
    }

    impl std::future::Future for Probe {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
            self.log.lock().unwrap().push(("poll", V.get()));
            self.polls += 1;
            if self.polls == 3 {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.log.lock().unwrap().push(("drop", V.get()));
        }
    }

    #[test]
    fn scope_installs_the_value_on_every_poll_and_drop_only() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let fut = V.scope(
            7,
            Probe {
                log: log.clone(),
                polls: 0,
            },
        );
        assert_eq!(V.get(), None);
        let mut fut = Box::pin(fut);
        let w = WakeCounter::new();
        assert!(V.run(1, || poll_once(fut.as_mut(), &w)).is_pending());
        assert_eq!(V.get(), None, "not leaked out of a poll");
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        assert_eq!(V.get(), None);
        // Dropped before it finished: the drop sees the value too.
        drop(fut);
        assert_eq!(V.get(), None);
        assert_eq!(
            *log.lock().unwrap(),
            [("poll", Some(7)), ("poll", Some(7)), ("drop", Some(7))]
        );
    }

    #[test]
    fn wrap_carries_the_whole_snapshot() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let snap = V.run(4, Snapshot::capture);
        let fut: WithContext<Probe> = snap.wrap(Probe {
            log: log.clone(),
            polls: 0,
        });
        assert!(format!("{fut:?}").starts_with("WithContext"));
        V.run(5, || block_on(fut));
        assert_eq!(
            *log.lock().unwrap(),
            [
                ("poll", Some(4)),
                ("poll", Some(4)),
                ("poll", Some(4)),
                ("drop", Some(4))
            ]
        );
    }

    #[test]
    fn a_wrapped_future_polled_on_two_threads_sees_its_value_on_both() {
        let mut fut = Box::pin(V.scope(11, async {
            let first = (std::thread::current().id(), V.get());
            yield_now().await;
            let second = (std::thread::current().id(), V.get());
            (first, second)
        }));
        let w = WakeCounter::new();
        let fut = std::thread::spawn(move || {
            assert!(poll_once(fut.as_mut(), &w).is_pending());
            assert_eq!(V.get(), None);
            fut
        })
        .join()
        .unwrap();
        let ((t1, v1), (t2, v2)) = std::thread::spawn(move || {
            let mut fut = fut;
            let w = WakeCounter::new();
            let Poll::Ready(out) = poll_once(fut.as_mut(), &w) else {
                panic!("pending after one yield")
            };
            out
        })
        .join()
        .unwrap();
        assert_ne!(t1, t2);
        assert_eq!((v1, v2), (Some(11), Some(11)));
    }

    #[test]
    fn values_do_not_cross_threads() {
        V.run(1, || {
            std::thread::scope(|s| {
                s.spawn(|| assert_eq!(V.get(), None));
                // To carry it, capture and run.
                let snap = Snapshot::capture();
                s.spawn(move || assert_eq!(snap.run(|| V.get()), Some(1)));
            });
        });
    }

    #[test]
    fn promise_handlers_and_started_futures_run_in_the_creation_context() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
        let lazy = V.run(1, || {
            DeferredPromise::lazy(move || {
                l1.lock().unwrap().push(("make", V.get()));
                async move {
                    yield_now().await;
                    l2.lock().unwrap().push(("future", V.get()));
                    Ok::<_, ()>(V.get())
                }
            })
        });
        let chain = V.run(2, || {
            lazy.deferred_then(move |v| {
                l3.lock().unwrap().push(("then", V.get()));
                // A future returned by a handler is followed in the handler's context.
                DeferredPromise::lazy(move || async move { Ok((v, V.get())) })
            })
        });
        let out = V.run(3, || block_on(chain));
        assert_eq!(out, Ok((Some(1), Some(2))));
        assert_eq!(
            *log.lock().unwrap(),
            [("make", Some(1)), ("future", Some(1)), ("then", Some(2))]
        );
    }

    #[test]
    fn every_combinator_runs_its_handler_in_its_creation_context() {
        let c = V.run(1, || {
            DeferredPromise::<u32, u32>::rejected(0)
                .deferred_catch(|_| Ok::<_, ()>(V.get().unwrap()))
        });
        let f = V.run(2, || {
            DeferredPromise::<u32, ()>::resolved(0)
                .deferred_finally(|| assert_eq!(V.get(), Some(2)))
        });
        let tc = V.run(3, || {
            DeferredPromise::<u32, ()>::resolved(0)
                .deferred_then_catch(|_| Ok::<_, ()>(V.get().unwrap()), |_| Ok(0))
        });
        static CELL: deferral::PromiseCell<Option<u32>, ()> = deferral::PromiseCell::new();
        let cell = V.run(4, || CELL.lazy(|r| r.resolve(V.get())).unwrap());
        assert_eq!(block_on(c), Ok(1));
        assert_eq!(block_on(f), Ok(0));
        assert_eq!(block_on(tc), Ok(3));
        assert_eq!(block_on(cell), Ok(Some(4)));
        let detached = V.run(5, || {
            DeferredPromise::<_, deferral::PromiseError<()>>::detached(|r| r.resolve(V.get()))
        });
        assert_eq!(block_on(detached), Ok(Some(5)));
    }

    /// A promise enters its creation context out of line and leaves it
    /// when a guard drops: a handler that panics, three links deep and each
    /// link in its own context, leaves the poller's context as it was, and
    /// a chain polled across two polls sees each link's own context.
    #[test]
    fn a_panicking_handler_leaves_the_pollers_context_intact() {
        let chain = V.run(1, || {
            let p = DeferredPromise::<u32, ()>::lazy(|| async {
                yield_now().await;
                Ok(V.get().unwrap())
            });
            let p = V.run(2, || {
                p.deferred_then(|v| Ok::<_, ()>(v * 10 + V.get().unwrap()))
            });
            W.run("w", || {
                p.deferred_then(|v| -> Result<u32, ()> {
                    assert_eq!((v, V.get(), W.get()), (12, Some(1), Some("w")));
                    panic!("boom")
                })
            })
        });
        let mut chain = pin!(chain);
        let w = WakeCounter::new();
        V.run(7, || {
            assert!(poll_once(chain.as_mut(), &w).is_pending());
            assert_eq!((V.get(), W.get()), (Some(7), None));
            let r = catch_unwind(AssertUnwindSafe(|| poll_once(chain.as_mut(), &w)));
            assert!(r.is_err(), "the handler's panic reaches the poller");
            assert_eq!((V.get(), W.get()), (Some(7), None));
        });
        assert_eq!((V.get(), W.get()), (None, None));
    }

    #[test]
    fn a_thunk_runs_in_the_context_of_its_registration() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
        let out = block_on(scope(async |d| {
            V.run(1, || {
                d.defer(move || l1.lock().unwrap().push(("sync", V.get())));
            });
            V.run(2, || {
                d.defer_async(async move {
                    l2.lock().unwrap().push(("async-1", V.get()));
                    yield_now().await;
                    l2.lock().unwrap().push(("async-2", V.get()));
                });
            });
            d.defer(move || l3.lock().unwrap().push(("plain", V.get())));
            V.get()
        }));
        assert_eq!(out, None);
        assert_eq!(
            *log.lock().unwrap(),
            [
                ("plain", None),
                ("async-1", Some(2)),
                ("async-2", Some(2)),
                ("sync", Some(1))
            ]
        );
    }

    #[test]
    fn guards_registered_in_a_context_keep_their_value_reference() {
        // The wrapped payload must sit at the entry's payload address, or the
        // guard's `&mut V` would point at the wrong bytes.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s1, s2) = (seen.clone(), seen.clone());
        block_on(scope(async |d| {
            let mut g = V.run(8, || {
                d.guard(vec![1_u8], move |v| s1.lock().unwrap().push((v, V.get())))
            });
            g.push(2);
            let mut ga = V.run(9, || {
                d.guard_async(String::from("a"), move |v| async move {
                    yield_now().await;
                    s2.lock().unwrap().push((v.into_bytes(), V.get()));
                })
            });
            yield_now().await;
            ga.push('b');
            g.push(3);
        }));
        assert_eq!(
            *seen.lock().unwrap(),
            [(b"ab".to_vec(), Some(9)), (vec![1, 2, 3], Some(8))]
        );
    }

    #[test]
    fn a_cancelled_thunk_comes_back_unwrapped() {
        let ran = Arc::new(Mutex::new(false));
        let r = ran.clone();
        let back = block_on(scope(async |d| {
            let token = V.run(1, || d.defer(move || *r.lock().unwrap() = true));
            token.cancel()
        }));
        back();
        assert!(*ran.lock().unwrap());
    }

    #[test]
    fn thunks_registered_in_the_empty_context_run_in_it() {
        // The scope is polled inside a context at cleanup, but its thunk was
        // registered outside any: it must not see the cleanup poll's value.
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let gate = Gate::new();
        let wait = gate.wait();
        let mut fut = Box::pin(scope(async move |d| {
            d.defer(move || l.lock().unwrap().push(V.get()));
            wait.await;
        }));
        let w = WakeCounter::new();
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        gate.open();
        assert!(V.run(5, || poll_once(fut.as_mut(), &w)).is_ready());
        assert_eq!(*log.lock().unwrap(), [None]);
    }

    #[test]
    fn a_dropped_scope_runs_its_sync_thunks_in_their_contexts() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l1, l2) = (log.clone(), log.clone());
        let gate = Gate::new();
        let wait = gate.wait();
        let mut fut = Box::pin(scope(async move |d| {
            d.defer(move || l1.lock().unwrap().push(V.get()));
            V.run(6, || {
                d.defer(move || l2.lock().unwrap().push(V.get()));
            });
            wait.await;
        }));
        let w = WakeCounter::new();
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        V.run(5, || drop(fut));
        assert_eq!(*log.lock().unwrap(), [Some(6), None]);
    }

    #[test]
    fn a_cancel_handler_gets_async_thunks_that_still_carry_their_context() {
        // The only test of this binary that sets the program's handler.
        static HANDED: Mutex<Vec<deferral::cancel::BoxCleanup>> = Mutex::new(Vec::new());
        deferral::cancel::set_cancel_handler(|orphan| {
            HANDED.lock().unwrap().push(orphan.into_boxed())
        });
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let gate = Gate::new();
        let wait = gate.wait();
        let mut fut = Box::pin(scope(async move |d| {
            V.run(3, || {
                d.defer_async(async move { *s.lock().unwrap() = Some(V.get()) });
            });
            wait.await;
        }));
        let w = WakeCounter::new();
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        drop(fut);
        deferral::cancel::clear_cancel_handler();
        let thunk = HANDED.lock().unwrap().pop().unwrap();
        block_on(thunk);
        assert_eq!(*seen.lock().unwrap(), Some(Some(3)));
    }

    #[test]
    fn ambient_defer_captures_too() {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        block_on(scope(async move |_d| {
            V.run(4, || {
                deferral::scope::try_defer(move || *s.lock().unwrap() = Some(V.get()))
            })
            .unwrap();
        }));
        assert_eq!(*seen.lock().unwrap(), Some(Some(4)));
    }

    #[test]
    fn sizes() {
        use std::mem::size_of;
        println!("size_of Snapshot: {}", size_of::<Snapshot>());
        println!("size_of ContextVar<u64>: {}", size_of::<ContextVar<u64>>());
        println!(
            "size_of WithContext<Ready<()>>: {}",
            size_of::<WithContext<std::future::Ready<()>>>()
        );
        assert_eq!(size_of::<Snapshot>(), size_of::<usize>());
        let _ = support::DropCounter::new();
    }
}
