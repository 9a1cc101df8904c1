// `new`'s resolver cannot leave the executor (here: into a thread). The
// compiler says "borrowed data escapes"; `DeferredPromise::new`'s docs
// ("The resolver cannot leave the executor") point at `detached` and
// `PromiseCell`, whose resolvers may.
use deferral::DeferredPromise;

fn main() {
    let _p = DeferredPromise::<u32, deferral::PromiseError<()>>::new(|res| {
        std::thread::spawn(move || res.resolve(1));
    });
}
