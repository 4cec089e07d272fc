//! The Steward host: supervisor, child runtime and control client.
//!
//! The binary `steward` (see `main.rs`) is a thin layer over this library; the end-to-end tests
//! use the same library for the control protocol and its status types.
//!
//! Layout by process: every module lives in the group of the process that runs it, and the groups
//! import one another in one direction only (`tests/layout.rs` checks it):
//! - [`sys`]: one OS mechanism per file, each naming its system calls (`signals`: handlers, the
//!   self-pipe's wake-up, masks; `pipe`: pipes and the latch eventfd; `fds`: `close_range` and fd
//!   flags; `prctl`: parent death, subreaper; `proc`; `poll`; `pidfd`; `futex`; `hugetext`: huge
//!   code pages; `test_knobs`), re-exported as `sys::NAME`; imports no other group;
//! - [`shared`]: what the supervisor and its children both run (configuration, registry, the
//!   segment and its encodings, the host table plugins call, logging, reload's validation, plugin
//!   loading, the control protocol, the runtime directory, what a new child is handed); imports
//!   only `sys`;
//! - [`child`]: every child process, one file per kind (`worker` with the `runtime` plugin code
//!   calls, `startup`, `spare`, `connection` with the control protocol's `request` parsing and
//!   `answer`s, `dead_end`) and `exec_main` (`steward child`, where an exec-mode child starts);
//!   imports `shared` and `sys`;
//! - [`supervisor`]: `steward run` after the command line (start-up order, the pure lifecycle core
//!   and the event loop around it, the launch path, the child-slot pool, fork-private tables, the
//!   service manager); imports `child` (a forked child runs on into it), `shared` and `sys`.
//!
//! The command line lives in the binary (`main.rs` and its `cli` module, whose `format` prints the
//! control protocol's answers): `run` becomes the supervisor, every other command is a
//! short-lived client of [`shared::control`], a file, or the runtime directory.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod child;
pub mod shared;
pub mod supervisor;
pub mod sys;

/// Exit codes of the `steward` binary (a documented contract; see docs/operator-guide.md).
pub mod exit_code {
    /// Clean exit (also after a smart or fast shutdown).
    pub const OK: i32 = 0;
    /// Start-up or runtime failure: bad config, bad plugin, lock held, crash with
    /// `restart_after_crash = false`.
    pub const FAILURE: i32 = 1;
    /// Bad command line, or a child given a bad parameter blob.
    pub const USAGE: i32 = 2;
    /// `steward status`: no host runs for that runtime directory (pg_ctl's 3).
    pub const STATUS_NOT_RUNNING: i32 = 3;
    /// `steward status`: whether a host runs cannot be told (pg_ctl's 4).
    pub const STATUS_UNKNOWN: i32 = 4;
}
