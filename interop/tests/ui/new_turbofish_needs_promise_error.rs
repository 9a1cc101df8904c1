// The turbofish names the promise's own error type: a promise settled by a
// `Resolver` can fail with `PromiseError<E>`, so `new` lives on
// `DeferredPromise<T, PromiseError<E>>` and `DeferredPromise::<u8, ()>::new`
// is an error that points there.
use deferral::DeferredPromise;

fn main() {
    let _p = DeferredPromise::<u8, ()>::new(|r| r.resolve(1));
}
