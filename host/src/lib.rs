//! The Steward host: supervisor, child runtime and control client.
//!
//! The binary `steward` (see `main.rs`) is a thin layer over this library; the end-to-end tests
//! use the same library for the control protocol and its status types.
//!
//! Module map, by the process each part runs in (every module's header says more):
//! - supervisor only: [`run`] (start-up order), [`rundir`], [`lockfile`], [`notify`],
//!   [`hugetext`], [`supervisor`] (the event loop) and [`private`] (its fork-private tables);
//! - supervisor and children: [`config`], [`registry`], [`shmem`], [`protocol`], [`hostapi`], [`log`],
//!   [`lifecycle`], [`sys`], [`time`]; [`launch`] (the supervisor launches, a forked child runs
//!   on from it); [`exec`] (`spawn` in the supervisor, `child_main` in exec-mode children);
//!   [`preload`] (the supervisor at start-up, exec-mode children again in attach mode);
//!   [`reload`] (the supervisor validates and applies, children refresh their settings);
//! - children only: [`child`] (workers, the startup child, connections, dead-ends, spares);
//! - connection children and clients: [`control`] (the control protocol and its status types);
//! - the command line lives in the binary, not here: its `cli` module (under `main.rs`) runs in
//!   the process the operator started; `run` becomes the supervisor through [`run`], every other
//!   command is a short-lived client (of [`control`], a file, or the runtime directory).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod child;
pub mod config;
pub mod control;
pub mod exec;
pub mod hostapi;
pub mod hugetext;
pub mod launch;
pub mod lifecycle;
pub mod lockfile;
pub mod log;
pub mod notify;
pub mod preload;
pub mod private;
pub mod protocol;
pub mod registry;
pub mod reload;
pub mod run;
pub mod rundir;
pub mod shmem;
pub mod supervisor;
pub mod sys;
pub mod time;

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
