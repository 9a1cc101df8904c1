//! Inline, const-generic, type-erased storage of deferred thunks.
//!
//! Not implemented yet: see the "DeferScope" issue. Nothing public lives here.
