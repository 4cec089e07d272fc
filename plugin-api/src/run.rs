//! What runs when the host calls into the plugin: the bodies of the exported init, worker entries
//! and startup hooks. Each checks the table it is given, catches panics so none crosses the
//! library boundary, and turns a failure into a reason the host reports.
//!
//! Runs in: a plugin: init in the supervisor (and in attach mode in exec-mode children), entries
//! in workers, hooks in the startup child. The macros in `macros.rs` expand to calls of these
//! functions through `$crate::`, so they stay public at the crate root, hidden from the docs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use crate::registrar::Registrar;
use crate::{abi, host, logging, Connection, Rejection, SegmentInit, Startup, Worker, WorkerError, HOST, OWN_PLUGIN};

/// An error returned from a plugin's init: the host stops start-up and prints it with the
/// plugin's name.
#[derive(Debug)]
pub struct InitError(pub String);

impl<E: std::fmt::Display> From<E> for InitError {
    fn from(e: E) -> InitError {
        InitError(e.to_string())
    }
}

fn report_failure(host: &abi::HostApi, msg: &str) {
    // SAFETY: the table comes from the host; the string outlives the call.
    unsafe { (host.fail)(host.ctx, abi::Str::new(msg)) }
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[doc(hidden)]
/// The body of the `init` function [`plugin!`] exports.
///
/// # Safety
/// `host` must be the pointer the Steward host passed to the plugin's init.
pub unsafe fn __run_init(
    host: *const abi::HostApi,
    plugin: &'static str,
    init: fn(&mut Registrar<'_>) -> Result<(), InitError>,
) -> abi::Status {
    // SAFETY: the host passes a valid `'static` table.
    let Some(h) = (unsafe { host.as_ref() }) else {
        return abi::STATUS_INVALID;
    };
    HOST.store(host as *mut abi::HostApi, Ordering::Release);
    let _ = OWN_PLUGIN.set(plugin);
    logging::install(plugin);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut reg = Registrar {
            host: h,
            plugin,
            reloadable: true,
        };
        init(&mut reg)
    }));
    match r {
        Ok(Ok(())) => abi::STATUS_OK,
        Ok(Err(e)) => {
            report_failure(h, &e.0);
            abi::STATUS_FAILED
        }
        Err(p) => {
            report_failure(h, &format!("init panicked: {}", panic_message(&*p)));
            abi::STATUS_PANICKED
        }
    }
}

/// The table the host passed to an entry or hook, checked for null; adopts the host's function
/// table if no init ran in this process (a forked child inherits the supervisor's).
///
/// # Safety
/// `api` must be the pointer the Steward host passed to the entry or hook.
unsafe fn entry_table<'a>(api: *const abi::WorkerApi) -> Option<&'a abi::WorkerApi> {
    // SAFETY: the host passes a valid table that outlives the process's entry.
    let api = unsafe { api.as_ref() }?;
    if HOST.load(Ordering::Acquire).is_null() && !api.host.is_null() {
        HOST.store(api.host as *mut abi::HostApi, Ordering::Release);
    }
    Some(api)
}

/// Reports `reason` to the host as the reason this process ends, and returns `code`.
fn failed(code: i32, reason: &str) -> i32 {
    if let Some(h) = host() {
        report_failure(h, reason);
    }
    code
}

#[doc(hidden)]
/// The body of every exported worker entry.
///
/// # Safety
/// `api` must be the pointer the Steward host passed to the entry.
pub unsafe fn __run_worker(api: *const abi::WorkerApi, f: fn(&mut Worker) -> Result<(), WorkerError>) -> i32 {
    // SAFETY: forwarded to the caller.
    let Some(api) = (unsafe { entry_table(api) }) else {
        return 2;
    };
    let mut w = Worker::new(api);
    match catch_unwind(AssertUnwindSafe(|| f(&mut w))) {
        Ok(Ok(())) => 0,
        Ok(Err(WorkerError::Restart(msg))) => {
            tracing::error!("{msg}");
            failed(1, &msg)
        }
        Ok(Err(WorkerError::Fatal(msg))) => {
            tracing::error!("fatal: {msg}");
            failed(2, &msg)
        }
        // The panic hook already logged the message with its location.
        Err(p) => failed(1, &format!("panicked: {}", panic_message(&*p))),
    }
}

#[doc(hidden)]
/// The body of every exported startup hook.
///
/// # Safety
/// `api` must be the pointer the Steward host passed to the hook.
pub unsafe fn __run_hook(api: *const abi::WorkerApi, f: fn(&mut Startup) -> Result<(), String>) -> i32 {
    // SAFETY: forwarded to the caller.
    let Some(api) = (unsafe { entry_table(api) }) else {
        return 2;
    };
    let mut s = Startup::new(api);
    match catch_unwind(AssertUnwindSafe(|| f(&mut s))) {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => failed(2, &msg),
        Err(p) => failed(2, &format!("panicked: {}", panic_message(&*p))),
    }
}

// issue 14: segment init
#[doc(hidden)]
/// The body of every exported segment init hook.
///
/// # Safety
/// `api` must be the pointer the Steward host passed to the hook.
pub unsafe fn __run_segment_init(api: *const abi::WorkerApi, f: fn(&mut SegmentInit) -> Result<(), String>) -> i32 {
    // SAFETY: forwarded to the caller.
    let Some(api) = (unsafe { entry_table(api) }) else {
        return 2;
    };
    let mut s = SegmentInit::new(api);
    match catch_unwind(AssertUnwindSafe(|| f(&mut s))) {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => failed(2, &msg),
        Err(p) => failed(2, &format!("panicked: {}", panic_message(&*p))),
    }
}

// issue 15: connections
#[doc(hidden)]
/// The body of every exported connection handler: exit code 0 when the handler returns `Ok`,
/// 1 for an `Err` or a panic (the connection ends; the host resets nothing for it).
///
/// # Safety
/// `api` must be the pointer the Steward host passed to the entry.
pub unsafe fn __run_connection(api: *const abi::WorkerApi, f: fn(&mut Connection) -> Result<(), WorkerError>) -> i32 {
    // SAFETY: forwarded to the caller.
    let Some(api) = (unsafe { entry_table(api) }) else {
        return 2;
    };
    let Some(mut c) = Connection::new(Worker::new(api)) else {
        return failed(2, "the host passed no client socket");
    };
    match catch_unwind(AssertUnwindSafe(|| f(&mut c))) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            let msg = e.to_string();
            tracing::warn!("connection ended: {msg}");
            failed(1, &msg)
        }
        Err(p) => failed(1, &format!("panicked: {}", panic_message(&*p))),
    }
}

#[doc(hidden)]
/// The body of every exported rejection writer.
///
/// # Safety
/// `api` must be the pointer the Steward host passed to the entry.
pub unsafe fn __run_rejection(api: *const abi::WorkerApi, f: fn(&mut Rejection)) -> i32 {
    // SAFETY: forwarded to the caller.
    let Some(api) = (unsafe { entry_table(api) }) else {
        return 2;
    };
    let Some(mut r) = Rejection::new(&Worker::new(api)) else {
        return failed(2, "the host passed no client socket");
    };
    match catch_unwind(AssertUnwindSafe(|| f(&mut r))) {
        Ok(()) => 0,
        Err(p) => failed(1, &format!("panicked: {}", panic_message(&*p))),
    }
}
