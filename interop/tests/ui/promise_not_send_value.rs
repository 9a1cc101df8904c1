// A promise is `Send` exactly when its parts are: holding a promise of an
// `Rc` across an `.await` makes the task `!Send`, so it cannot be spawned.
use std::rc::Rc;

use deferral::DeferredPromise;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::spawn(async {
            let p = DeferredPromise::<Rc<u8>, ()>::resolved(Rc::new(1));
            tokio::task::yield_now().await;
            let _ = p.await;
        });
    });
}
