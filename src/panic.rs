//! Catching panics where the standard library can (`std`), and a no-op
//! stand-in where it cannot, so the scope's code reads the same either way.
//!
//! Without `std` a panic simply unwinds (or aborts) through `poll`; the scope
//! keeps its bookkeeping consistent at every step, so what is left is dropped
//! or run exactly once by `Drop`.

/// A caught panic's payload.
#[cfg(feature = "std")]
pub(crate) type Panic = std::boxed::Box<dyn core::any::Any + Send + 'static>;
/// Without `std` nothing is caught, so there is never a payload.
#[cfg(not(feature = "std"))]
pub(crate) type Panic = core::convert::Infallible;

/// Runs `f`, catching a panic (with `std`).
///
/// `AssertUnwindSafe` is sound here: after a caught panic the scope never
/// observes the state `f` was changing again, it only drops it (the body, a
/// thunk) or resumes the panic once everything else ran.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    #[cfg(feature = "std")]
    {
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(f))
    }
    #[cfg(not(feature = "std"))]
    {
        Ok(f())
    }
}

/// Resumes a caught panic.
pub(crate) fn resume(panic: Panic) -> ! {
    #[cfg(feature = "std")]
    {
        std::panic::resume_unwind(panic)
    }
    #[cfg(not(feature = "std"))]
    match panic {}
}

/// Resumes a caught panic unless the thread is already unwinding (a second
/// panic would abort): then the payload is dropped.
pub(crate) fn resume_unless_panicking(panic: Panic) {
    #[cfg(feature = "std")]
    if !std::thread::panicking() {
        resume(panic)
    }
    #[cfg(not(feature = "std"))]
    match panic {}
}

/// The thread is unwinding from a panic (with `std`; never known without).
#[inline]
pub(crate) fn unwinding() -> bool {
    #[cfg(feature = "std")]
    {
        std::thread::panicking()
    }
    #[cfg(not(feature = "std"))]
    {
        false
    }
}

/// Aborts the process: with `std` directly, without it by panicking while a
/// panic unwinds (which the runtime turns into an abort).
#[cfg(feature = "alloc")]
#[cold]
pub(crate) fn abort() -> ! {
    #[cfg(feature = "std")]
    {
        std::process::abort()
    }
    #[cfg(not(feature = "std"))]
    {
        struct Twice;
        impl Drop for Twice {
            fn drop(&mut self) {
                panic!("deferral: aborting");
            }
        }
        let _twice = Twice;
        panic!("deferral: aborting");
    }
}

/// Runs `f` when dropped, unless [defused](OnUnwind::defuse) first: what
/// must be finished even if foreign code unwinds past it (without `std`,
/// where nothing is caught).
pub(crate) struct OnUnwind<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> OnUnwind<F> {
    pub(crate) fn new(f: F) -> Self {
        OnUnwind(Some(f))
    }

    /// Nothing unwound: `f` does not run.
    pub(crate) fn defuse(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for OnUnwind<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}
