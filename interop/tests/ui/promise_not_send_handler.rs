// A combinator is `Send` only if its handler is: a handler holding an `Rc`
// makes the chain, and the task holding it across an `.await`, `!Send`.
use std::rc::Rc;

use deferral::{DeferredPromise, PromiseExt};

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let local = Rc::new(1u8);
        tokio::spawn(async move {
            let p = DeferredPromise::<u8, &'static str>::resolved(1)
                .deferred_then(move |v| Ok::<u8, &'static str>(v + *local));
            tokio::task::yield_now().await;
            p.await
        });
    });
}
