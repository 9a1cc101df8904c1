//! Links `deferral` (no default features) into a `no_std` staticlib without
//! a global allocator. Building it is the test.
#![no_std]

// Keep the dependency linked even before it has public items.
extern crate deferral;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
