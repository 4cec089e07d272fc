//! The Steward host: supervisor, child runtime and control client.
//!
//! The binary `steward` (see `main.rs`) is a thin layer over this library; the end-to-end tests
//! use the same library for the control protocol and its status types.
//!
//! Module map, by the process each part runs in:
//! - supervisor only: [`supervisor`], [`private`], [`run`], [`hugetext`], [`preload`] (also exec-mode workers, in attach
//!   mode), [`lockfile`];
//! - supervisor and children: [`config`], [`registry`], [`shmem`], [`hostapi`], [`log`],
//!   [`launch`], [`lifecycle`], [`sys`], [`time`];
//! - children only: [`child`], and [`exec`]'s `child_main` (its `spawn` runs in the supervisor);
//! - clients (the CLI): [`control`].

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
