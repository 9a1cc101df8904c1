// An executor's value is never dropped silently: a join handle (or an
// `Adopt`, or anything else that was meant to matter) must be returned on
// purpose or discarded with `;`.
use deferral::DeferredPromise;

fn main() {
    let _p = DeferredPromise::<u32, deferral::PromiseError<()>>::detached(|res| {
        std::thread::spawn(move || res.resolve(1))
    });
}
