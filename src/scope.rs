//! `DeferScope`: run an async body, then its deferred thunks.
//!
//! Not implemented yet: see the "DeferScope" issue. Nothing public lives here.
