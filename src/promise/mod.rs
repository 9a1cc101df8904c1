//! `DeferredPromise`: a promise whose executor runs on first poll.
//!
//! Not implemented yet: see the "DeferredPromise" issue. Nothing public lives here.
