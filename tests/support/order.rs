//! Cleanup orders as a value, for tests that run one scenario in each:
//! the crate makes the order a type (`deferral::scope::{Lifo, Fifo,
//! Concurrent}`), so these helpers pick the builder by value and box it.

use std::future::Future;
use std::pin::Pin;

use deferral::Defer;
use deferral::scope::{Concurrent, Fifo, Lifo, Local, ScopeBody, ScopeBuilder, Sendable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Lifo,
    Fifo,
    Concurrent,
}

pub const ORDERS: [Order; 3] = [Order::Lifo, Order::Fifo, Order::Concurrent];

pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The slab of the scopes these helpers build: room for the tests' async
/// cleanup without `alloc` (whose default is 64 bytes).
pub const CAPACITY: usize = 1024;
pub type BoxedSend<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `ScopeBuilder::new().capacity::<CAPACITY>().order(order).run(body)`, boxed.
pub fn run<'a, T: 'a, F>(order: Order, body: F) -> Boxed<'a, T>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T, Sendable, CAPACITY>) -> T + 'a,
    F: for<'d> ScopeBody<'d, T, Sendable, CAPACITY, &'d (T, Sendable)>,
{
    run_n::<CAPACITY, T, F>(order, body)
}

/// `ScopeBuilder::new().capacity::<CAPACITY>().order(order).run_local(body)`, boxed.
pub fn run_local<'a, 'env: 'a, T: 'a, F>(order: Order, body: F) -> Boxed<'a, T>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T, Local<'env>, CAPACITY>) -> T + 'a,
    F: for<'d> ScopeBody<'d, T, Local<'env>, CAPACITY, &'d (T, Local<'env>)>,
{
    run_local_n::<CAPACITY, T, F>(order, body)
}

/// `ScopeBuilder::new().capacity::<N>().order(order).run(body)`, boxed.
pub fn run_n<'a, const N: usize, T: 'a, F>(order: Order, body: F) -> Boxed<'a, T>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T, Sendable, N>) -> T + 'a,
    F: for<'d> ScopeBody<'d, T, Sendable, N, &'d (T, Sendable)>,
{
    let b = ScopeBuilder::new().capacity::<N>();
    match order {
        Order::Lifo => Box::pin(b.order(Lifo).run(body)),
        Order::Fifo => Box::pin(b.order(Fifo).run(body)),
        Order::Concurrent => Box::pin(b.order(Concurrent).run(body)),
    }
}

/// As [`run`], `Send` (for scopes spawned on a multi-threaded runtime).
pub fn run_send<'a, const N: usize, T: Send + 'a, F>(order: Order, body: F) -> BoxedSend<'a, T>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T, Sendable, N>) -> T + Send + 'a,
    F: for<'d> ScopeBody<'d, T, Sendable, N, &'d (T, Sendable)>,
    for<'d> <F as ScopeBody<'d, T, Sendable, N, &'d (T, Sendable)>>::Fut: Send,
{
    let b = ScopeBuilder::new().capacity::<N>();
    match order {
        Order::Lifo => Box::pin(b.order(Lifo).run(body)),
        Order::Fifo => Box::pin(b.order(Fifo).run(body)),
        Order::Concurrent => Box::pin(b.order(Concurrent).run(body)),
    }
}

/// `ScopeBuilder::new().capacity::<N>().order(order).run_local(body)`, boxed.
pub fn run_local_n<'a, 'env: 'a, const N: usize, T: 'a, F>(order: Order, body: F) -> Boxed<'a, T>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T, Local<'env>, N>) -> T + 'a,
    F: for<'d> ScopeBody<'d, T, Local<'env>, N, &'d (T, Local<'env>)>,
{
    let b = ScopeBuilder::new().capacity::<N>();
    match order {
        Order::Lifo => Box::pin(b.order(Lifo).run_local(body)),
        Order::Fifo => Box::pin(b.order(Fifo).run_local(body)),
        Order::Concurrent => Box::pin(b.order(Concurrent).run_local(body)),
    }
}

/// `ScopeBuilder::new().order(order).run(body).grace(deadline)`, boxed.
pub fn run_grace<'a, T: 'a, F, G, D>(
    order: Order,
    body: F,
    deadline: G,
) -> Boxed<'a, Result<T, deferral::scope::CutShort<T>>>
where
    F: for<'d> AsyncFnOnce(&'d Defer<T, Sendable, CAPACITY>) -> T + 'a,
    F: for<'d> ScopeBody<'d, T, Sendable, CAPACITY, &'d (T, Sendable)>,
    G: FnOnce() -> D + 'a,
    D: Future + 'a,
{
    let b = ScopeBuilder::new().capacity::<CAPACITY>();
    match order {
        Order::Lifo => Box::pin(b.order(Lifo).run(body).grace(deadline)),
        Order::Fifo => Box::pin(b.order(Fifo).run(body).grace(deadline)),
        Order::Concurrent => Box::pin(b.order(Concurrent).run(body).grace(deadline)),
    }
}
