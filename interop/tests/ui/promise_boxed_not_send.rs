// Boxing into the `Send` form (`boxed`, whose type a struct field stores as
// `DeferredPromise<T, E>`) needs a `Send` future: an `Rc` captured by the
// executor is refused; `boxed_local` is the form for it.
use std::rc::Rc;

use deferral::{DeferredPromise, PromiseError};

fn main() {
    let local = Rc::new(1u8);
    let _p: DeferredPromise<u8, PromiseError<()>> =
        DeferredPromise::new(move |r| r.resolve(*local)).boxed();
}
