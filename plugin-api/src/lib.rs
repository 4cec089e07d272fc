//! The Steward plugin SDK.
//!
//! Runs in: a plugin (a `cdylib`) loaded by the Steward host, in the supervisor during init and in
//! each worker process afterwards.
//!
//! # Why this is harder than it looks
//!
//! A plugin is a shared library whose code runs in several processes. Its init runs in the
//! supervisor before anything else; its worker entries run in child processes that were forked
//! from the supervisor or that re-executed the host binary and loaded the plugin afresh. So:
//!
//! - **Nothing in memory is shared between processes** except the named regions you request in
//!   init; a `static` set in one worker is invisible to every other. Locks from `std` or
//!   `parking_lot` do not work across processes: request a [`Lock`] in init instead.
//! - **Fork copies, exec forgets.** In fork mode a worker inherits what init left in memory; in
//!   exec mode it starts from nothing and init runs again in *attach* mode. Code that works in one
//!   mode only is a bug: keep per-process state in the worker.
//! - **Signals are flags.** Termination is a request you observe through [`Worker::should_stop`]
//!   and [`Worker::wait`]; no code of yours runs inside a signal handler.
//! - **Panics must not cross the library boundary.** The macros here catch unwinding in init and in
//!   every worker entry and turn it into an error the host reports; a worker that panics exits
//!   with code 1 and is restarted per its policy.
//! - **Each plugin has its own copy of `std` and `tracing`.** The SDK installs a `tracing`
//!   subscriber in your plugin that forwards events to the host's log, tagged with your plugin and
//!   the worker's name.
//!
//! # Which part to use for what
//!
//! - [`plugin!`] exports your plugin's header and init function.
//! - [`Registrar`] exists only during init: define settings, request shared-memory regions and
//!   register background workers with [`BackgroundWorker`].
//! - [`worker_entry!`] exports a `fn(&mut Worker) -> Result<(), WorkerError>` as a worker entry;
//!   [`entry!`] names it for registration, checked at compile time.
//! - [`Worker`] is what a running worker gets: its name, argument and extra bytes, settings,
//!   regions, locks, the termination-aware [`Worker::wait`], its latch ([`Worker::latch`], a
//!   [`LatchHandle`] any process of the host can [`LatchHandle::set`] to wake that `wait`, and
//!   [`Worker::latch_fd`] for async code), [`Worker::set_activity`] for `steward status`, and
//!   [`Worker::set_ready`] for a worker registered [`BackgroundWorker::needs_ready`], which
//!   others may [`BackgroundWorker::start_after`].
//! - [`shareable!`] declares a struct that [`Region::get`] can view in shared memory; a [`Lock`]
//!   from [`Worker::lock`] guards it across processes.
//! - The error and status enums ([`WaitResult`], [`LaunchError`], [`WorkerStatus`], ...) are
//!   `#[non_exhaustive]` since SDK 0.2: match them with a `_` arm, and test stopping with
//!   [`WaitResult::should_stop`].
//!
//! `plugins/worker_spi` in the Steward repository uses these together, and the plugin author
//! guide walks through it.
//!
//! # What the SDK cannot protect you from
//!
//! - Undefined behaviour in your own code, a `SIGSEGV`, or calling `std::process::exit` yourself:
//!   the host sees a crash, stops every child and resets shared memory.
//! - Threads you start: they die with the worker process, and a thread left running in the
//!   supervisor during init would make every later fork unsafe. Start none in init.
//! - Data races on region memory: view a region only as a [`Shareable`] type (atomics), and
//!   guard multi-step updates with a [`Lock`].
//! - Blocking forever without calling [`Worker::wait`] or [`Worker::should_stop`]: the host
//!   escalates to `SIGKILL` after its shutdown timeout.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod abi;
mod background_worker;
// issue 15: connections
mod connection;
mod handle;
mod latch;
mod lock;
mod logging;
mod macros;
mod registrar;
mod run;
mod settings;
mod shareable;
mod worker;

use std::sync::atomic::{AtomicPtr, Ordering};

pub use background_worker::{
    register_after_init, BackgroundWorker, EntryPoint, RegisterError, RestartPolicy, StartTime,
};
#[doc(hidden)]
pub use handle::__launch_error;
pub use handle::{HandleError, LaunchError, WorkerHandle, WorkerStatus};
pub use latch::{AtomicLatchHandle, LatchHandle};
pub use lock::{ExclusiveGuard, Lock, LockError, SharedGuard};
pub use registrar::Registrar;
#[doc(hidden)]
pub use run::__run_segment_init;
pub use run::InitError;
#[doc(hidden)]
pub use run::{__run_hook, __run_init, __run_worker};
pub use settings::{SettingError, SettingValue};
pub use shareable::Shareable;
pub use worker::SegmentInit;
// issue 15: connections
pub use connection::{Admission, Connection, ConnectionHandler, Peer, Rejection};
#[doc(hidden)]
pub use run::{__run_connection, __run_rejection};
pub use worker::{Region, RegionError, Startup, WaitResult, Worker, WorkerError};

/// The SDK's version, recorded in every plugin's header.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The host's function table, set once by the init wrapper of this plugin. Each plugin has its own
/// copy of this static (each cdylib carries its own copy of the SDK).
static HOST: AtomicPtr<abi::HostApi> = AtomicPtr::new(std::ptr::null_mut());

/// The plugin this copy of the SDK was compiled into (set by its init). Worker settings and
/// regions are looked up for this plugin, so an entry that another plugin registered still reads
/// the settings of the library its code lives in.
static OWN_PLUGIN: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

pub(crate) fn own_plugin() -> Option<&'static str> {
    OWN_PLUGIN.get().copied()
}

fn host() -> Option<&'static abi::HostApi> {
    let p = HOST.load(Ordering::Acquire);
    // SAFETY: the host's table is a `'static` in the host binary; it is only ever set from the
    // pointer the host passed to init.
    unsafe { p.as_ref() }
}
