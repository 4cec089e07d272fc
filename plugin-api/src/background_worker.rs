//! What a plugin registers: a [`BackgroundWorker`] (its name, [`EntryPoint`], [`StartTime`] and
//! [`RestartPolicy`]), checked on the plugin's side before the host sees it, and turned into the
//! ABI's `WorkerSpec`.
//!
//! Runs in: a plugin, in its init (in the supervisor, and again in attach mode in an exec-mode
//! child, where the host ignores registrations).

use std::time::Duration;

use crate::{abi, host};

/// When a worker starts, relative to the host's lifecycle (PostgreSQL's `bgw_start_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTime {
    /// As soon as the host has created shared memory.
    HostStart,
    /// Once a startup hook declared the host consistent.
    Consistent,
    /// Once the host is fully running.
    Running,
}

/// What happens when a worker exits with code 1 (or panics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RestartPolicy {
    /// Stay stopped.
    Never,
    /// Start again after this delay, every time.
    After(Duration),
    /// Start again after `initial`, then after delays multiplied by `factor` each time up to
    /// `cap`; back to `initial` once a run lasted at least `reset_after`.
    Backoff {
        initial: Duration,
        factor: f64,
        cap: Duration,
        reset_after: Duration,
    },
}

impl RestartPolicy {
    pub fn never() -> RestartPolicy {
        RestartPolicy::Never
    }
    pub fn after(delay: Duration) -> RestartPolicy {
        RestartPolicy::After(delay)
    }
    /// Exponential backoff from `initial` by `factor` up to `cap`, reset after a run of one
    /// minute (change it with [`RestartPolicy::reset_after`]).
    pub fn backoff(initial: Duration, factor: f64, cap: Duration) -> RestartPolicy {
        RestartPolicy::Backoff {
            initial,
            factor,
            cap,
            reset_after: Duration::from_secs(60),
        }
    }
    /// For a backoff policy: how long a run must last for the delay to go back to `initial`.
    pub fn reset_after(self, d: Duration) -> RestartPolicy {
        match self {
            RestartPolicy::Backoff {
                initial, factor, cap, ..
            } => RestartPolicy::Backoff {
                initial,
                factor,
                cap,
                reset_after: d,
            },
            other => other,
        }
    }
}

/// Names the exported entry a worker runs: a function in a preloaded library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    /// `None`: the library of the plugin that registers the worker.
    pub library: Option<String>,
    pub function: String,
}

impl EntryPoint {
    /// An entry in another preloaded library, named by strings and checked by the host when the
    /// worker starts. For entries of your own crate use [`entry!`], which is checked at compile time.
    ///
    /// [`entry!`]: crate::entry!
    pub fn new(library: impl Into<String>, function: impl Into<String>) -> EntryPoint {
        EntryPoint {
            library: Some(library.into()),
            function: function.into(),
        }
    }

    #[doc(hidden)]
    pub fn local(function: &str) -> EntryPoint {
        EntryPoint {
            library: None,
            function: function.to_owned(),
        }
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    #[error("registry frozen: background workers and regions can only be registered during plugin init")]
    RegistryFrozen,
    #[error("worker name {0:?} is empty, longer than {max} bytes, or has a control character", max = abi::MAX_NAME_LEN)]
    BadName(String),
    #[error("worker type {0:?} is longer than {max} bytes or has a control character", max = abi::MAX_TYPE_LEN)]
    BadType(String),
    #[error("entry {library:?}/{function:?} is not a valid library and function name")]
    BadEntry { library: String, function: String },
    #[error("restart delay {0:?} is longer than the limit of one week")]
    BadRestartDelay(Duration),
    #[error("backoff policy: factor must be 1 to 100 and initial <= cap (got factor {factor}, initial {initial:?}, cap {cap:?})")]
    BadBackoff {
        factor: f64,
        initial: Duration,
        cap: Duration,
    },
    #[error("crash-loop limit: at least one restart in a non-zero window")]
    BadCrashLoopLimit,
    #[error("extra argument is {0} bytes; at most {max} fit", max = abi::EXTRA_LEN)]
    ExtraTooLong(usize),
    #[error("a worker named {0:?} is already registered")]
    DuplicateName(String),
    #[error("region name {0:?} is empty, longer than {max} bytes, or has a control character", max = abi::MAX_REGION_NAME_LEN)]
    BadRegionName(String),
    #[error("region {0:?} is requested twice")]
    DuplicateRegion(String),
    #[error("region {name:?}: size {size} is zero or too large")]
    BadRegionSize { name: String, size: u64 },
    #[error("lock name {name:?} of plugin {plugin} is empty, longer than {max} bytes, or has a control character", max = abi::MAX_LOCK_NAME_LEN)]
    BadLockName { plugin: String, name: String },
    #[error("lock {name:?} of plugin {plugin} is requested twice")]
    DuplicateLock { plugin: String, name: String },
    #[error("lock {name:?} of plugin {plugin}: this host is too old to offer locks (plugin ABI 1.1 or later needed)")]
    LocksNotSupported { plugin: String, name: String },
    #[error("lock {name:?} of plugin {plugin}: the host refused (status {status}; it holds at most 4096 locks)")]
    LockRefused { plugin: String, name: String, status: i32 },
    // issue 14: readiness
    #[error("worker {worker:?}: start_after {target:?} is empty, longer than {max} bytes, names the worker itself, or is one of more than {most} names", max = abi::MAX_NAME_LEN, most = abi::MAX_START_AFTER)]
    BadStartAfter { worker: String, target: String },
    #[error("worker {0:?}: this host is too old for needs_ready and start_after (plugin ABI 1.1 or later needed)")]
    ReadinessNotSupported(String),
    // issue 15: isolated
    #[error("plugin {plugin}, worker {worker:?}: an isolated worker cannot use needs_ready (declaring readiness writes shared memory, which its process does not map writable)")]
    IsolatedNeedsReady { plugin: String, worker: String },
    #[error("plugin {plugin}, worker {worker:?}: this host is too old for isolated workers (plugin ABI 1.1 with WORKER_ISOLATED needed)")]
    IsolatedNotSupported { plugin: String, worker: String },
    // issue 14: notifications
    #[error("worker {0:?}: stop_with_launcher is for dynamic workers (a static worker has no launcher)")]
    DynamicOnly(String),
    #[error("the host refused the registration (status {0})")]
    Other(i32),
    // issue 14: queue
    #[error("worker {0:?}: queue_timeout is for dynamic workers (Worker::launch), not static registrations")]
    QueueTimeoutDynamicOnly(String),
    #[error("worker {worker:?}: queue timeout {timeout:?} is longer than the limit of one week")]
    BadQueueTimeout { worker: String, timeout: Duration },
}

pub(crate) fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(|c| c.is_control())
}

/// A background worker to register: PostgreSQL's `BackgroundWorker`, as a builder.
#[derive(Debug, Clone)]
pub struct BackgroundWorker {
    name: String,
    worker_type: Option<String>,
    entry: EntryPoint,
    start_time: StartTime,
    restart: RestartPolicy,
    crash_loop: Option<(u32, Duration)>,
    arg: u64,
    extra: Vec<u8>,
    // issue 14: readiness
    needs_ready: bool,
    start_after: Vec<String>,
    // issue 15: isolated
    isolated: bool,
    // issue 14: notifications
    stop_with_launcher: bool,
    // issue 14: queue
    queue_timeout: Option<Duration>,
}

impl BackgroundWorker {
    /// A worker named `name` (unique in the host) running `entry`. Defaults: starts at
    /// [`StartTime::Running`], restarts after one second, argument 0, no extra bytes.
    pub fn new(name: impl Into<String>, entry: EntryPoint) -> BackgroundWorker {
        BackgroundWorker {
            name: name.into(),
            worker_type: None,
            entry,
            start_time: StartTime::Running,
            restart: RestartPolicy::After(Duration::from_secs(1)),
            crash_loop: None,
            arg: 0,
            extra: Vec::new(),
            needs_ready: false,
            start_after: Vec::new(),
            isolated: false,
            stop_with_launcher: false,
            queue_timeout: None,
        }
    }

    // issue 14: queue
    /// For [`crate::Worker::launch`] only: when no worker slot is free (or the free ones are
    /// reserved for other plugins), wait up to `d` in the host's queue for one instead of failing
    /// at once with [`crate::LaunchError::NoFreeSlot`]; the same error comes when `d` runs out.
    /// Requests are served in order as slots free. A SIGTERM to the launching worker while it
    /// waits cancels the request ([`crate::LaunchError::Terminate`]). At most a week; zero means
    /// no wait. A static registration with it is refused
    /// ([`RegisterError::QueueTimeoutDynamicOnly`]).
    pub fn queue_timeout(mut self, d: Duration) -> Self {
        self.queue_timeout = Some(d);
        self
    }
    /// The group name shown in status; defaults to the name.
    pub fn worker_type(mut self, t: impl Into<String>) -> Self {
        self.worker_type = Some(t.into());
        self
    }
    pub fn start_time(mut self, t: StartTime) -> Self {
        self.start_time = t;
        self
    }
    pub fn restart(mut self, p: RestartPolicy) -> Self {
        self.restart = p;
        self
    }
    /// Marks the worker `failed` ("restarted N times in W") once it has been restarted `max`
    /// times within `window`. Without this there is no limit.
    pub fn crash_loop_limit(mut self, max: u32, window: Duration) -> Self {
        self.crash_loop = Some((max, window));
        self
    }
    pub fn arg(mut self, arg: u64) -> Self {
        self.arg = arg;
        self
    }
    /// Opaque bytes the worker reads back with [`Worker::extra`]; at most [`abi::EXTRA_LEN`].
    ///
    /// [`Worker::extra`]: crate::Worker::extra
    pub fn extra(mut self, extra: impl Into<Vec<u8>>) -> Self {
        self.extra = extra.into();
        self
    }

    // issue 14: readiness
    /// The worker declares when it is ready with [`Worker::set_ready`]: `steward status` shows it
    /// `starting` from its launch until then, and workers that [`start_after`] it wait for that.
    /// Without this a worker is ready as soon as its entry runs.
    ///
    /// [`Worker::set_ready`]: crate::Worker::set_ready
    /// [`start_after`]: BackgroundWorker::start_after
    pub fn needs_ready(mut self) -> Self {
        self.needs_ready = true;
        self
    }

    /// Starts this worker only once the worker named `name` (of any plugin) is ready, and again
    /// only once it is ready again when this one waits to restart. Up to four names; the host
    /// refuses to start when one names no worker or they make a cycle.
    pub fn start_after(mut self, name: impl Into<String>) -> Self {
        self.start_after.push(name.into());
        self
    }

    // issue 15: isolated
    /// Runs the worker isolated: its process maps shared memory read-only and holds no dead-man
    /// flag, so a crash (a signal, an abort, a wild write into the segment, which faults) restarts
    /// only this worker per its policy, counted against its crash-loop limit, and never resets
    /// the host. It keeps settings, logging, reload, its own latch ([`Worker::wait`] returns
    /// [`WaitResult::Latch`] when another process sets it) and host-death detection; it may read
    /// regions. What writes shared memory is refused: locks ([`LockError::Isolated`]), setting
    /// other workers' latches, launching or terminating workers, [`Worker::set_activity`] (does
    /// nothing) and [`needs_ready`] (refused at registration). Static workers only.
    ///
    /// [`Worker::wait`]: crate::Worker::wait
    /// [`WaitResult::Latch`]: crate::WaitResult::Latch
    /// [`LockError::Isolated`]: crate::LockError::Isolated
    /// [`Worker::set_activity`]: crate::Worker::set_activity
    /// [`needs_ready`]: BackgroundWorker::needs_ready
    pub fn isolated(mut self) -> Self {
        self.isolated = true;
        self
    }

    // issue 14: notifications
    /// For a dynamic worker: the host terminates it when the process that launched it exits
    /// (cleanly, by a crash, or terminated), and its handle then says it stopped because its
    /// launcher exited; a crash reset stops it for good. Without this a dynamic worker outlives
    /// its launcher. A static registration with it is refused ([`RegisterError::DynamicOnly`]).
    pub fn stop_with_launcher(mut self) -> Self {
        self.stop_with_launcher = true;
        self
    }

    /// Checks what can be checked without the host; the host checks the rest.
    pub(crate) fn validate(&self) -> Result<(), RegisterError> {
        if !valid_name(&self.name, abi::MAX_NAME_LEN) {
            return Err(RegisterError::BadName(self.name.clone()));
        }
        if let Some(t) = &self.worker_type {
            if !valid_name(t, abi::MAX_TYPE_LEN) {
                return Err(RegisterError::BadType(t.clone()));
            }
        }
        let lib_ok = self
            .entry
            .library
            .as_deref()
            .is_none_or(|l| valid_name(l, abi::MAX_LIBRARY_LEN));
        let fn_ok = valid_name(&self.entry.function, abi::MAX_FUNCTION_LEN)
            && self
                .entry
                .function
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !lib_ok || !fn_ok {
            return Err(RegisterError::BadEntry {
                library: self.entry.library.clone().unwrap_or_default(),
                function: self.entry.function.clone(),
            });
        }
        if self.extra.len() > abi::EXTRA_LEN {
            return Err(RegisterError::ExtraTooLong(self.extra.len()));
        }
        let too_long = |d: Duration| d.as_micros() > abi::MAX_RESTART_DELAY_US as u128;
        match self.restart {
            RestartPolicy::After(d) if too_long(d) => return Err(RegisterError::BadRestartDelay(d)),
            RestartPolicy::Backoff {
                initial,
                factor,
                cap,
                reset_after,
            } => {
                if !(1.0..=100.0).contains(&factor) || initial > cap {
                    return Err(RegisterError::BadBackoff { factor, initial, cap });
                }
                if too_long(cap) || too_long(reset_after) {
                    return Err(RegisterError::BadRestartDelay(cap.max(reset_after)));
                }
            }
            _ => {}
        }
        if let Some((max, window)) = self.crash_loop {
            if max == 0 || window.is_zero() || too_long(window) {
                return Err(RegisterError::BadCrashLoopLimit);
            }
        }
        for (i, t) in self.start_after.iter().enumerate() {
            if !valid_name(t, abi::MAX_NAME_LEN) || *t == self.name || i >= abi::MAX_START_AFTER {
                return Err(RegisterError::BadStartAfter {
                    worker: self.name.clone(),
                    target: t.clone(),
                });
            }
        }
        Ok(())
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

pub(crate) fn register_with(host: &abi::HostApi, plugin: &str, w: &BackgroundWorker) -> Result<(), RegisterError> {
    w.validate()?;
    // issue 15: isolated
    if w.isolated && w.needs_ready {
        return Err(RegisterError::IsolatedNeedsReady {
            plugin: plugin.to_owned(),
            worker: w.name.clone(),
        });
    }
    // issue 14: notifications
    if w.stop_with_launcher {
        return Err(RegisterError::DynamicOnly(w.name.clone()));
    }
    // issue 14: queue
    if w.queue_timeout.is_some() {
        return Err(RegisterError::QueueTimeoutDynamicOnly(w.name.clone()));
    }
    // issue 15: isolated
    // Decided before the call, from the table: a host that knows the flag refuses a bad entry
    // with the same STATUS_INVALID an older one gives an unknown flag.
    if w.isolated && !isolation_known(host.size) {
        return Err(RegisterError::IsolatedNotSupported {
            plugin: plugin.to_owned(),
            worker: w.name.clone(),
        });
    }
    let spec = abi_spec(w);
    let st = register_spec(host, plugin, w, &spec)?;
    refusal(st, w)
}

// issue 15: isolated
/// Whether a host whose table is `table_size` bytes knows `WORKER_ISOLATED`: its table has
/// `handle_by_name`, the last field of the release (ABI 1.1) that brought isolated workers.
fn isolation_known(table_size: u32) -> bool {
    let end = std::mem::offset_of!(abi::HostApi, handle_by_name) + std::mem::size_of::<usize>();
    end <= table_size as usize
}

/// What a registration's status means for `w`.
fn refusal(st: abi::Status, w: &BackgroundWorker) -> Result<(), RegisterError> {
    match st {
        abi::STATUS_OK => Ok(()),
        abi::STATUS_FROZEN => Err(RegisterError::RegistryFrozen),
        abi::STATUS_DUPLICATE => Err(RegisterError::DuplicateName(w.name.clone())),
        abi::STATUS_BAD_NAME => Err(RegisterError::BadName(w.name.clone())),
        abi::STATUS_INVALID => Err(RegisterError::BadEntry {
            library: w.entry.library.clone().unwrap_or_default(),
            function: w.entry.function.clone(),
        }),
        other => Err(RegisterError::Other(other)),
    }
}

// issue 14: notifications
/// The flags and `start_after` names [`abi::WorkerSpecExt`] carries for `w`, if it needs one
/// (readiness, `start_after`, `stop_with_launcher`).
pub(crate) fn ext_of(w: &BackgroundWorker) -> Option<(u32, Vec<abi::Str>)> {
    let mut flags = 0;
    if w.needs_ready {
        flags |= abi::WORKER_NEEDS_READY;
    }
    if w.stop_with_launcher {
        flags |= abi::WORKER_STOP_WITH_LAUNCHER;
    }
    let names: Vec<abi::Str> = w.start_after.iter().map(|t| abi::Str::new(t)).collect();
    (flags != 0 || !names.is_empty()).then_some((flags, names))
}

// issue 15: isolated
/// Whether the builder asks for isolation, which only static workers have.
pub(crate) fn is_isolated(w: &BackgroundWorker) -> bool {
    w.isolated
}

// issue 14: queue
/// The queue timeout the builder asks for, checked against the one-week limit.
pub(crate) fn queue_timeout_of(w: &BackgroundWorker) -> Result<Option<Duration>, RegisterError> {
    match w.queue_timeout {
        Some(d) if d.as_micros() > u128::from(abi::MAX_RESTART_DELAY_US) => Err(RegisterError::BadQueueTimeout {
            worker: w.name.clone(),
            timeout: d,
        }),
        q => Ok(q.filter(|d| !d.is_zero())),
    }
}

/// The builder's name, for errors.
pub(crate) fn name_of(w: &BackgroundWorker) -> &str {
    &w.name
}

/// The builder as the ABI's registration; it borrows `w`'s strings and bytes.
pub(crate) fn abi_spec(w: &BackgroundWorker) -> abi::WorkerSpec {
    abi::WorkerSpec {
        name: abi::Str::new(&w.name),
        worker_type: w.worker_type.as_deref().map(abi::Str::new).unwrap_or(abi::Str::EMPTY),
        library: w.entry.library.as_deref().map(abi::Str::new).unwrap_or(abi::Str::EMPTY),
        function: abi::Str::new(&w.entry.function),
        start_time: match w.start_time {
            StartTime::HostStart => abi::START_HOST_START,
            StartTime::Consistent => abi::START_CONSISTENT,
            StartTime::Running => abi::START_RUNNING,
        },
        restart_kind: match w.restart {
            RestartPolicy::Never => abi::RESTART_NEVER,
            RestartPolicy::After(_) => abi::RESTART_AFTER,
            RestartPolicy::Backoff { .. } => abi::RESTART_BACKOFF,
        },
        restart_delay_us: match w.restart {
            RestartPolicy::Never => 0,
            RestartPolicy::After(d) | RestartPolicy::Backoff { initial: d, .. } => micros(d),
        },
        backoff_factor_milli: match w.restart {
            RestartPolicy::Backoff { factor, .. } => (factor * 1000.0).round() as u32,
            _ => 0,
        },
        restart_cap_us: match w.restart {
            RestartPolicy::Backoff { cap, .. } => micros(cap),
            _ => 0,
        },
        restart_reset_us: match w.restart {
            RestartPolicy::Backoff { reset_after, .. } => micros(reset_after),
            _ => 0,
        },
        crash_loop_max: w.crash_loop.map_or(0, |(m, _)| m),
        crash_loop_window_us: w.crash_loop.map_or(0, |(_, win)| micros(win)),
        arg: w.arg,
        extra: w.extra.as_ptr(),
        extra_len: w.extra.len(),
    }
}

fn register_spec(
    host: &abi::HostApi,
    plugin: &str,
    w: &BackgroundWorker,
    spec: &abi::WorkerSpec,
) -> Result<abi::Status, RegisterError> {
    Ok(if w.needs_ready || !w.start_after.is_empty() || w.isolated {
        // issue 14: readiness
        let end = std::mem::offset_of!(abi::HostApi, register_worker_ext) + std::mem::size_of::<usize>();
        if !host.has(end) && w.isolated {
            // issue 15: isolated
            return Err(RegisterError::IsolatedNotSupported {
                plugin: plugin.to_owned(),
                worker: w.name.clone(),
            });
        }
        if !host.has(end) {
            return Err(RegisterError::ReadinessNotSupported(w.name.clone()));
        }
        let names: Vec<abi::Str> = w.start_after.iter().map(|t| abi::Str::new(t)).collect();
        let ext = abi::WorkerSpecExt {
            size: std::mem::size_of::<abi::WorkerSpecExt>() as u32,
            flags: if w.needs_ready { abi::WORKER_NEEDS_READY } else { 0 }
                // issue 15: isolated
                | if w.isolated { abi::WORKER_ISOLATED } else { 0 },
            start_after: names.as_ptr(),
            n_start_after: names.len(),
        };
        // SAFETY: the table has the field (checked above); `spec`, `ext` and the strings they
        // point to outlive the call.
        unsafe { (host.register_worker_ext)(host.ctx, abi::Str::new(plugin), spec, &ext) }
    } else {
        // SAFETY: the table comes from the host; `spec` and its strings outlive the call.
        unsafe { (host.register_worker)(host.ctx, abi::Str::new(plugin), spec) }
    })
}

/// Tries to register a static worker after init, through the raw host table. It always fails once
/// the registry is frozen; it exists so tests can prove that it does.
pub fn register_after_init(w: BackgroundWorker, plugin: &str) -> Result<(), RegisterError> {
    let host = host().ok_or(RegisterError::RegistryFrozen)?;
    register_with(host, plugin, &w)
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 15: isolated
    #[test]
    fn too_old_for_isolation_is_decided_by_the_table_not_by_status_invalid() {
        let full = std::mem::size_of::<abi::HostApi>() as u32;
        assert!(isolation_known(full));
        let before = std::mem::offset_of!(abi::HostApi, handle_by_name) as u32;
        assert!(!isolation_known(before));
        // A host that knows isolation and refuses the entry gets the ordinary error.
        let w = BackgroundWorker::new("w", EntryPoint::new("lib", "entry")).isolated();
        match refusal(abi::STATUS_INVALID, &w) {
            Err(RegisterError::BadEntry { function, .. }) => assert_eq!(function, "entry"),
            other => panic!("{other:?}"),
        }
    }
}
