//! Dynamic workers and their handles (issue 14: dynamic workers): [`crate::Worker::launch`]
//! starts a worker at run time; the [`WorkerHandle`] it returns tells how that worker is doing
//! and stops it.
//!
//! Runs in: worker processes. A handle is plain data (a worker slot and a generation), valid in
//! every process of the host: store it in a region ([`WorkerHandle::to_raw`]) and use it from
//! another worker. The host checks the generation on every call, so a handle whose slot has been
//! given to a later worker answers [`HandleError::Stale`], never that worker's status.

use std::time::Duration;

use crate::abi;
use crate::background_worker::{
    abi_spec, ext_of, is_isolated, name_of, queue_timeout_of, BackgroundWorker, RegisterError,
};

/// A dynamic worker, as the launcher (or anyone it gave the handle to) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerHandle {
    slot: u32,
    generation: u64,
}

/// What a worker is doing, as its handle reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerStatus {
    /// Not running its entry yet (or waiting to restart).
    NotYetStarted,
    /// Its process runs its entry (and, for a `needs_ready` worker, declared itself ready).
    Running { pid: i32 },
    /// Stopped for good; the reason is its last exit's (an entry that did not resolve names
    /// it), or why it never started. Non-exhaustive: it gains fields (as `errno` came), so
    /// match it as `Stopped { reason, .. }`.
    #[non_exhaustive]
    Stopped {
        reason: String,
        // issue 14: queue
        /// When its process could not be started (fork or spawn failed: `EAGAIN`, `ENOMEM`): the
        /// errno. The worker does not restart, and its slot is free again.
        errno: Option<i32>,
    },
}

/// Why a handle call gave no status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    #[error("the worker handle is stale: its slot now holds another worker")]
    Stale,
    #[error("timed out waiting for the worker")]
    TimedOut,
    #[error("this worker was asked to stop while it waited")]
    Terminate,
    #[error("worker handles are not available here (not in a worker, or a host without dynamic workers)")]
    Unavailable,
    #[error("the host answered with status {0}")]
    Other(abi::Status),
    // issue 14: control
    #[error("no live worker has that name")]
    NotFound,
    #[error("more than one live worker has that name")]
    Ambiguous,
}

/// Why a launch gave no handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// `used` counts the dynamic slots in use and those reserved for other plugins (free or
    /// not); `max` is every dynamic slot (`max_worker_processes`).
    #[error(
        "no free worker slot ({used} of {max} in use or reserved for other plugins): raise max_worker_processes, or use .queue_timeout(d)"
    )]
    NoFreeSlot { used: u32, max: u32 },
    #[error("invalid dynamic worker: {0}")]
    Invalid(String),
    #[error("the host is not running (recovering or stopping)")]
    HostNotRunning,
    #[error("dynamic workers are not available here: {0}")]
    Unavailable(String),
    #[error("the host answered with status {status}: {message}")]
    Other { status: abi::Status, message: String },
    // issue 14: notifications
    /// A worker of this name is in the host (static, or dynamic and not yet gone): names are how
    /// operators and [`WorkerHandle`]s find workers, so the host refuses a second one.
    #[error("a worker named {0:?} is already in the host")]
    DuplicateName(String),
    /// A `start_after` name that is no worker of the host.
    #[error("start_after names {0:?}, which is no worker of the host")]
    UnknownStartAfter(String),
    // issue 14: queue
    /// The launching worker was asked to stop while its request waited in the queue: the
    /// request is cancelled (no worker was launched).
    #[error("this worker was asked to stop while its launch request waited for a slot")]
    Terminate,
}

fn host() -> Option<&'static abi::HostApi> {
    let h = crate::host()?;
    let end = std::mem::offset_of!(abi::HostApi, handle_terminate) + std::mem::size_of::<usize>();
    h.has(end).then_some(h)
}

fn blank_status() -> abi::HandleStatus {
    abi::HandleStatus {
        size: std::mem::size_of::<abi::HandleStatus>() as u32,
        phase: 0,
        pid: 0,
        reason_len: 0,
        reason: [0; 256],
        errno: 0,
    }
}

fn from_abi(st: abi::Status, out: &abi::HandleStatus) -> Result<WorkerStatus, HandleError> {
    match st {
        abi::STATUS_OK => {}
        abi::STATUS_STALE => return Err(HandleError::Stale),
        abi::STATUS_TIMED_OUT => return Err(HandleError::TimedOut),
        abi::STATUS_TERMINATE => return Err(HandleError::Terminate),
        abi::STATUS_UNAVAILABLE => return Err(HandleError::Unavailable),
        other => return Err(HandleError::Other(other)),
    }
    Ok(match out.phase {
        abi::HANDLE_RUNNING => WorkerStatus::Running { pid: out.pid },
        abi::HANDLE_STOPPED => {
            let n = (out.reason_len as usize).min(out.reason.len());
            WorkerStatus::Stopped {
                reason: String::from_utf8_lossy(&out.reason[..n]).into_owned(),
                errno: (out.errno != 0).then_some(out.errno),
            }
        }
        _ => WorkerStatus::NotYetStarted,
    })
}

impl WorkerHandle {
    /// The handle as two numbers, to store in shared memory.
    pub fn to_raw(self) -> (u32, u64) {
        (self.slot, self.generation)
    }

    /// A handle from [`WorkerHandle::to_raw`]'s numbers. Any numbers are safe: the host checks
    /// them, and ones that name no worker give [`HandleError::Stale`].
    pub fn from_raw(slot: u32, generation: u64) -> WorkerHandle {
        WorkerHandle { slot, generation }
    }

    // issue 14: control
    /// The handle of the live worker named `name`, static or dynamic: the host scans its worker
    /// slots. [`HandleError::NotFound`] when no live worker has that name (a dynamic worker is
    /// gone once it stopped for good; a stopped or failed static worker is not live).
    /// [`HandleError::Ambiguous`] when more than one live worker has it.
    pub fn by_name(name: &str) -> Result<WorkerHandle, HandleError> {
        let h = crate::host().ok_or(HandleError::Unavailable)?;
        let end = std::mem::offset_of!(abi::HostApi, handle_by_name) + std::mem::size_of::<usize>();
        if !h.has(end) {
            return Err(HandleError::Unavailable);
        }
        let (mut slot, mut generation) = (0u32, 0u64);
        // SAFETY: the host's function (the table has it: checked), with a name valid for the
        // call and two out-parameters that outlive it.
        match unsafe { (h.handle_by_name)(h.ctx, abi::Str::new(name), &mut slot, &mut generation) } {
            abi::STATUS_OK => Ok(WorkerHandle { slot, generation }),
            abi::STATUS_NOT_FOUND | abi::STATUS_BAD_NAME => Err(HandleError::NotFound),
            abi::STATUS_DUPLICATE => Err(HandleError::Ambiguous),
            abi::STATUS_UNAVAILABLE => Err(HandleError::Unavailable),
            other => Err(HandleError::Other(other)),
        }
    }

    /// The worker slot.
    pub fn slot(self) -> u32 {
        self.slot
    }

    /// The generation, which tells this worker from the slot's other tenants.
    pub fn generation(self) -> u64 {
        self.generation
    }

    /// The worker's status now.
    pub fn status(self) -> Result<WorkerStatus, HandleError> {
        let h = host().ok_or(HandleError::Unavailable)?;
        let mut out = blank_status();
        // SAFETY: the host's function (the table has it: checked), with a status struct of the
        // size it says.
        let st = unsafe { (h.handle_status)(h.ctx, self.slot, self.generation, &mut out) };
        from_abi(st, &out)
    }

    fn wait(self, what: u32, timeout: Duration) -> Result<WorkerStatus, HandleError> {
        let h = host().ok_or(HandleError::Unavailable)?;
        let mut out = blank_status();
        let us = timeout.as_micros().min(u64::MAX as u128) as u64;
        // SAFETY: as in `status`.
        let st = unsafe { (h.handle_wait)(h.ctx, self.slot, self.generation, what, us, &mut out) };
        from_abi(st, &out)
    }

    /// Waits until the worker runs its entry ([`WorkerStatus::Running`]; a `needs_ready` worker
    /// once it called `set_ready`) or stopped without getting there ([`WorkerStatus::Stopped`],
    /// with the reason: a launch failure comes back here). Any process holding the handle may
    /// wait, not only the launcher.
    pub fn wait_for_startup(self, timeout: Duration) -> Result<WorkerStatus, HandleError> {
        self.wait(abi::HANDLE_WAIT_STARTUP, timeout)
    }

    /// Waits until the worker stopped for good; gives [`WorkerStatus::Stopped`].
    pub fn wait_for_shutdown(self, timeout: Duration) -> Result<WorkerStatus, HandleError> {
        self.wait(abi::HANDLE_WAIT_SHUTDOWN, timeout)
    }

    /// Asks the host to stop the worker for good (SIGTERM if it runs; it is not restarted,
    /// whatever its policy). Returns at once: [`WorkerHandle::wait_for_shutdown`] waits for the
    /// stop. A worker that already stopped gives `Ok`.
    pub fn terminate(self) -> Result<(), HandleError> {
        let h = host().ok_or(HandleError::Unavailable)?;
        // SAFETY: as in `status`.
        match unsafe { (h.handle_terminate)(h.ctx, self.slot, self.generation) } {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_STALE => Err(HandleError::Stale),
            abi::STATUS_UNAVAILABLE => Err(HandleError::Unavailable),
            other => Err(HandleError::Other(other)),
        }
    }
}

/// Launches `w` as a dynamic worker of `plugin` (the SDK side of `Worker::launch`).
pub(crate) fn launch(plugin: &str, w: &BackgroundWorker) -> Result<WorkerHandle, LaunchError> {
    w.validate()
        .map_err(|e: RegisterError| LaunchError::Invalid(e.to_string()))?;
    // issue 15: isolated
    if is_isolated(w) {
        return Err(LaunchError::Invalid(format!(
            "worker {:?}: isolated is for static workers",
            name_of(w)
        )));
    }
    let h = host().ok_or_else(|| LaunchError::Unavailable("the host has no dynamic workers (ABI 1.0)".into()))?;
    // issue 14: notifications
    // The launcher hears from its workers through its latch: from now on `wait` reports it.
    crate::latch::mark_used();
    // issue 14: queue
    let queue_timeout = queue_timeout_of(w).map_err(|e| LaunchError::Invalid(e.to_string()))?;
    let spec = abi_spec(w);
    let ext = ext_of(w);
    let has_ext = h.has(std::mem::offset_of!(abi::HostApi, launch_worker_ext) + std::mem::size_of::<usize>());
    if ext.is_some() && !has_ext {
        return Err(LaunchError::Unavailable(
            "this host is too old for needs_ready, start_after and stop_with_launcher on dynamic workers".into(),
        ));
    }
    let mut answer = abi::LaunchAnswer::new();
    let st = match (queue_timeout, &ext) {
        (None, Some((flags, names))) => {
            let ext = abi::WorkerSpecExt {
                size: std::mem::size_of::<abi::WorkerSpecExt>() as u32,
                flags: *flags,
                start_after: names.as_ptr(),
                n_start_after: names.len(),
            };
            // SAFETY: the host's function (the table has it: checked above), with a
            // registration, `ext` and names that outlive the call, and an answer struct of the
            // size it says.
            unsafe { (h.launch_worker_ext)(h.ctx, abi::Str::new(plugin), &spec, &ext, &mut answer) }
        }
        // SAFETY: the host's function (checked present), with a registration whose strings
        // and bytes `w` keeps alive for the call, and an answer struct of the size it says.
        (None, None) => unsafe { (h.launch_worker)(h.ctx, abi::Str::new(plugin), &spec, &mut answer) },
        // issue 14: queue
        (Some(d), ext) => {
            let end = std::mem::offset_of!(abi::HostApi, launch_worker_opts) + std::mem::size_of::<usize>();
            if !h.has(end) {
                return Err(LaunchError::Unavailable(
                    "this host is too old for queue_timeout: no launch queue".into(),
                ));
            }
            let opts = abi::LaunchOpts {
                size: std::mem::size_of::<abi::LaunchOpts>() as u32,
                flags: abi::LAUNCH_QUEUE,
                queue_timeout_us: d.as_micros() as u64,
            };
            let ext = ext.as_ref().map(|(flags, names)| abi::WorkerSpecExt {
                size: std::mem::size_of::<abi::WorkerSpecExt>() as u32,
                flags: *flags,
                start_after: names.as_ptr(),
                n_start_after: names.len(),
            });
            let ext_ptr = ext
                .as_ref()
                .map_or(std::ptr::null(), |e| e as *const abi::WorkerSpecExt);
            // SAFETY: the table has the field (checked); the registration, `ext` (or null), the
            // names, `opts` and the answer struct (of the size it says) outlive the call.
            unsafe { (h.launch_worker_opts)(h.ctx, abi::Str::new(plugin), &spec, ext_ptr, &opts, &mut answer) }
        }
    };
    if st == abi::STATUS_OK {
        return Ok(WorkerHandle {
            slot: answer.slot,
            generation: answer.generation,
        });
    }
    let n = (answer.message_len as usize).min(answer.message.len());
    let message = String::from_utf8_lossy(&answer.message[..n]).into_owned();
    Err(__launch_error(st, message, answer.used, answer.max))
}

#[doc(hidden)]
/// The error a refused launch answer means: the host's status, the detail it wrote as the
/// message (the reason of an `Invalid` or `Unavailable`, the name of a `DuplicateName` or
/// `UnknownStartAfter`, which the variant's words frame) and the slot counts. Public for the
/// host, whose own launch errors are worded by these, so each message has one source.
pub fn __launch_error(status: abi::Status, message: String, used: u32, max: u32) -> LaunchError {
    match status {
        abi::STATUS_NO_FREE_SLOT => LaunchError::NoFreeSlot { used, max },
        abi::STATUS_INVALID | abi::STATUS_BAD_NAME => LaunchError::Invalid(message),
        abi::STATUS_HOST_NOT_RUNNING => LaunchError::HostNotRunning,
        abi::STATUS_UNAVAILABLE => LaunchError::Unavailable(message),
        abi::STATUS_DUPLICATE => LaunchError::DuplicateName(message),
        abi::STATUS_NOT_FOUND => LaunchError::UnknownStartAfter(message),
        abi::STATUS_TERMINATE => LaunchError::Terminate,
        status => LaunchError::Other { status, message },
    }
}
