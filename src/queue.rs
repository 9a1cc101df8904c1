//! `TaskQueue`: deferred work started under a concurrency limit.
//!
//! Not implemented yet: see the "TaskQueue" issue. Nothing public lives here.
