//! Values that record their drops, to prove "dropped exactly once".

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// Counts the drops of every [`Tracked`] value it handed out.
#[derive(Debug, Clone, Default)]
pub struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A value that increments this counter when dropped.
    pub fn tracked(&self) -> Tracked {
        Tracked(self.0.clone())
    }

    /// A value that increments this counter and then panics when dropped.
    pub fn panicking(&self) -> PanicOnDrop {
        PanicOnDrop(self.0.clone())
    }

    pub fn get(&self) -> usize {
        self.0.load(SeqCst)
    }
}

/// Increments its [`DropCounter`] once, when dropped.
#[derive(Debug)]
pub struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Increments its [`DropCounter`], then panics, when dropped.
#[derive(Debug)]
pub struct PanicOnDrop(Arc<AtomicUsize>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
        panic!("PanicOnDrop dropped");
    }
}

/// An ordered log of events ("drop a", "run b", ...) shared between clones,
/// for asserting the order in which thunks ran and values were dropped.
#[derive(Debug, Clone, Default)]
pub struct DropLog(Arc<Mutex<Vec<String>>>);

impl DropLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `event` to the log.
    pub fn push(&self, event: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.into());
    }

    /// A value that logs `"drop {name}"` when dropped.
    pub fn on_drop(&self, name: &str) -> LogOnDrop {
        LogOnDrop {
            log: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Everything logged so far, in order.
    pub fn events(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Logs `"drop {name}"` to its [`DropLog`] when dropped.
#[derive(Debug)]
pub struct LogOnDrop {
    log: DropLog,
    name: String,
}

impl Drop for LogOnDrop {
    fn drop(&mut self) {
        self.log.push(format!("drop {}", self.name));
    }
}
