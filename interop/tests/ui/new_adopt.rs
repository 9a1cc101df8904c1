// `new`'s resolver lives only while the executor runs, so it cannot adopt a
// future: the error says to use `lazy` (or `detached` / a `PromiseCell`).
use deferral::DeferredPromise;

fn main() {
    let fetch = async { Ok::<u32, ()>(200) };
    let _p = DeferredPromise::<u32, deferral::PromiseError<()>>::new(|res| res.adopt(fetch));
}
