// A `SignalCell` wait can never be abandoned (no resolver exists): its
// output is the plain `Result<T, E>`, so there is no `Abandoned` arm to
// match — writing one is a type error.
use deferral::PromiseError;
use deferral::promise::SignalCell;

static ADC: SignalCell<u16, ()> = SignalCell::new();

fn main() {
    let out = futures::executor::block_on(ADC.wait().unwrap());
    match out {
        Ok(_) => {}
        Err(PromiseError::Abandoned) => {}
    }
}
