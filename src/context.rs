//! `ContextVar` and `Snapshot`: context that follows deferred work.
//!
//! Not implemented yet: see the "Context propagation" issue. Nothing public lives here.
