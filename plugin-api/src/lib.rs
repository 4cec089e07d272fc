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
//!   `parking_lot` do not work across processes.
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
//!   regions, and the termination-aware [`Worker::wait`].
//!
//! # What the SDK cannot protect you from
//!
//! - Undefined behaviour in your own code, a `SIGSEGV`, or calling `std::process::exit` yourself:
//!   the host sees a crash, stops every child and resets shared memory.
//! - Threads you start: they die with the worker process, and a thread left running in the
//!   supervisor during init would make every later fork unsafe. Start none in init.
//! - Data races on region memory: a region is raw bytes; use atomics in it.
//! - Blocking forever without calling [`Worker::wait`] or [`Worker::should_stop`]: the host
//!   escalates to `SIGKILL` after its shutdown timeout.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod abi;
mod logging;
mod settings;
mod worker;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

pub use settings::{SettingError, SettingValue};
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
    #[error("the host refused the registration (status {0})")]
    Other(i32),
}

fn valid_name(s: &str, max: usize) -> bool {
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
        }
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
    pub fn extra(mut self, extra: impl Into<Vec<u8>>) -> Self {
        self.extra = extra.into();
        self
    }

    /// Checks what can be checked without the host; the host checks the rest.
    fn validate(&self) -> Result<(), RegisterError> {
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
        Ok(())
    }
}

/// The capability to register things, which exists only while your init runs.
pub struct Registrar<'init> {
    host: &'init abi::HostApi,
    plugin: &'static str,
    /// Whether settings defined now may change on reload (see [`Registrar::restart_only`]).
    reloadable: bool,
}

impl<'init> Registrar<'init> {
    /// The plugin being initialised.
    pub fn plugin(&self) -> &str {
        self.plugin
    }

    /// Whether this is an exec-mode child re-running init to attach (registration is a no-op
    /// there; settings and regions work as in the supervisor).
    pub fn is_attach(&self) -> bool {
        self.host.mode == abi::MODE_ATTACH
    }

    /// Registers a background worker. Validation happens now, not when the worker starts.
    pub fn register_background_worker(&mut self, w: BackgroundWorker) -> Result<(), RegisterError> {
        register_with(self.host, self.plugin, &w)
    }

    /// Registers a startup hook: `entry` (exported with [`startup_hook!`], named with [`entry!`])
    /// runs in the startup child, after shared memory exists and before the host is running.
    /// Hooks run in registration order; any of them may declare the host consistent. A hook that
    /// fails stops the host.
    pub fn register_startup_hook(&mut self, name: &str, entry: EntryPoint) -> Result<(), RegisterError> {
        if !valid_name(name, abi::MAX_NAME_LEN) {
            return Err(RegisterError::BadName(name.to_owned()));
        }
        let library = entry.library.as_deref().unwrap_or("");
        // SAFETY: the table comes from the host; the strings outlive the call.
        let st = unsafe {
            (self.host.register_startup_hook)(
                self.host.ctx,
                abi::Str::new(self.plugin),
                abi::Str::new(name),
                abi::Str::new(library),
                abi::Str::new(&entry.function),
            )
        };
        match st {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_FROZEN => Err(RegisterError::RegistryFrozen),
            abi::STATUS_DUPLICATE => Err(RegisterError::DuplicateName(name.to_owned())),
            abi::STATUS_BAD_NAME => Err(RegisterError::BadName(name.to_owned())),
            abi::STATUS_INVALID => Err(RegisterError::BadEntry {
                library: library.to_owned(),
                function: entry.function,
            }),
            other => Err(RegisterError::Other(other)),
        }
    }

    /// Requests a named shared-memory region of `size` bytes, zeroed whenever the host creates its
    /// segment (at start and after every crash reset). Workers look it up with [`Worker::region`].
    pub fn request_region(&mut self, name: &str, size: u64) -> Result<(), RegisterError> {
        if !valid_name(name, abi::MAX_REGION_NAME_LEN) {
            return Err(RegisterError::BadRegionName(name.to_owned()));
        }
        // SAFETY: the table comes from the host; the strings outlive the call.
        let st =
            unsafe { (self.host.request_region)(self.host.ctx, abi::Str::new(self.plugin), abi::Str::new(name), size) };
        match st {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_FROZEN => Err(RegisterError::RegistryFrozen),
            abi::STATUS_DUPLICATE => Err(RegisterError::DuplicateRegion(name.to_owned())),
            abi::STATUS_INVALID => Err(RegisterError::BadRegionSize {
                name: name.to_owned(),
                size,
            }),
            abi::STATUS_BAD_NAME => Err(RegisterError::BadRegionName(name.to_owned())),
            other => Err(RegisterError::Other(other)),
        }
    }

    /// Settings defined inside `f` need a restart to change: a reload reports a new value for
    /// them instead of applying it. Settings defined elsewhere change on reload.
    pub fn restart_only<R>(&mut self, f: impl FnOnce(&mut Registrar<'init>) -> R) -> R {
        self.reloadable = false;
        let r = f(self);
        self.reloadable = true;
        r
    }

    /// Defines a boolean setting and returns its configured value.
    pub fn define_bool(&mut self, name: &str, default: bool, description: &str) -> Result<bool, SettingError> {
        settings::define(
            self.host,
            self.plugin,
            name,
            settings::Def::Bool(default),
            description,
            self.reloadable,
        )
    }

    /// Defines an integer setting with inclusive bounds and returns its configured value.
    pub fn define_int(
        &mut self,
        name: &str,
        default: i64,
        bounds: std::ops::RangeInclusive<i64>,
        description: &str,
    ) -> Result<i64, SettingError> {
        settings::define(
            self.host,
            self.plugin,
            name,
            settings::Def::Int(default, bounds),
            description,
            self.reloadable,
        )
    }

    /// Defines a string setting and returns its configured value.
    pub fn define_string(&mut self, name: &str, default: &str, description: &str) -> Result<String, SettingError> {
        settings::define(
            self.host,
            self.plugin,
            name,
            settings::Def::String(default),
            description,
            self.reloadable,
        )
    }

    /// Defines a duration setting (written `"250ms"`, `"2s"`, `"1min"`, `"1h"` or a number of
    /// milliseconds in the file) and returns its configured value.
    pub fn define_duration(
        &mut self,
        name: &str,
        default: Duration,
        description: &str,
    ) -> Result<Duration, SettingError> {
        settings::define(
            self.host,
            self.plugin,
            name,
            settings::Def::Duration(default),
            description,
            self.reloadable,
        )
    }

    /// Defines an enum setting whose value is one of `choices`, and returns its configured value.
    pub fn define_enum(
        &mut self,
        name: &str,
        default: &str,
        choices: &[&str],
        description: &str,
    ) -> Result<String, SettingError> {
        settings::define(
            self.host,
            self.plugin,
            name,
            settings::Def::Enum(default, choices),
            description,
            self.reloadable,
        )
    }

    /// Reads back a setting this plugin defined.
    pub fn setting<T: SettingValue>(&self, name: &str) -> Result<T, SettingError> {
        settings::get(self.host, self.plugin, name)
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

fn register_with(host: &abi::HostApi, plugin: &str, w: &BackgroundWorker) -> Result<(), RegisterError> {
    w.validate()?;
    let spec = abi::WorkerSpec {
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
    };
    // SAFETY: the table comes from the host; `spec` and its strings outlive the call.
    let st = unsafe { (host.register_worker)(host.ctx, abi::Str::new(plugin), &spec) };
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

/// Tries to register a static worker after init, through the raw host table. It always fails once
/// the registry is frozen; it exists so tests can prove that it does.
pub fn register_after_init(w: BackgroundWorker, plugin: &str) -> Result<(), RegisterError> {
    let host = host().ok_or(RegisterError::RegistryFrozen)?;
    register_with(host, plugin, &w)
}

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

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
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

/// Exports the plugin header and init function. Use once per plugin crate:
///
/// ```ignore
/// steward::plugin! { name: "hello", init: init }
/// fn init(reg: &mut steward::Registrar) -> Result<(), steward::InitError> { Ok(()) }
/// ```
///
/// `name` must match the library's file name (`lib<name>.so`).
#[macro_export]
macro_rules! plugin {
    (name: $name:literal, init: $init:path $(,)?) => {
        #[doc(hidden)]
        pub const __STEWARD_PLUGIN_NAME: &str = $name;

        #[doc(hidden)]
        unsafe extern "C" fn __steward_init(host: *const $crate::abi::HostApi) -> $crate::abi::Status {
            // SAFETY: the host calls this with its own table.
            unsafe { $crate::__run_init(host, $name, $init) }
        }

        #[no_mangle]
        #[used]
        pub static steward_plugin_header: $crate::abi::PluginHeader = $crate::abi::PluginHeader {
            magic: $crate::abi::PLUGIN_MAGIC,
            abi_major: $crate::abi::ABI_MAJOR,
            abi_minor: $crate::abi::ABI_MINOR,
            header_size: ::std::mem::size_of::<$crate::abi::PluginHeader>() as u32,
            fingerprint: $crate::abi::LAYOUT_FINGERPRINT,
            name: $crate::abi::Str::new($name),
            version: $crate::abi::Str::new(env!("CARGO_PKG_VERSION")),
            sdk_version: $crate::abi::Str::new($crate::SDK_VERSION),
            init: __steward_init,
        };
    };
}

/// Exports `fn NAME(&mut Worker) -> Result<(), WorkerError>` as a worker entry named `NAME`.
///
/// The exported symbol carries a magic and the ABI fingerprint, so the host can tell a Steward
/// entry from any other symbol. Panics are caught inside the plugin: the worker exits with code 1.
#[macro_export]
macro_rules! worker_entry {
    ($f:ident) => {
        $crate::__export_entry!(
            $f,
            "steward_worker_entry__",
            $crate::abi::ENTRY_MAGIC,
            $crate::__run_worker
        );
    };
}

/// Exports `fn NAME(&mut Startup) -> Result<(), String>` as a startup hook named `NAME`; register
/// it with [`Registrar::register_startup_hook`] and [`entry!`]. An `Err` or a panic fails the hook,
/// which stops the host with the hook's name and the reason.
#[macro_export]
macro_rules! startup_hook {
    ($f:ident) => {
        $crate::__export_entry!(
            $f,
            "steward_startup_hook__",
            $crate::abi::HOOK_MAGIC,
            $crate::__run_hook
        );
    };
}

/// The export both [`worker_entry!`] and [`startup_hook!`] expand to: a module named after the
/// function holding its name and a checked descriptor exported as `<prefix><name>`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_entry {
    ($f:ident, $prefix:literal, $magic:path, $runner:path) => {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        pub mod $f {
            pub const NAME: &str = stringify!($f);

            unsafe extern "C" fn run(api: *const $crate::abi::WorkerApi) -> i32 {
                // SAFETY: the host calls entries and hooks with its own table.
                unsafe { $runner(api, super::$f) }
            }

            #[export_name = concat!($prefix, stringify!($f))]
            #[used]
            pub static ENTRY: $crate::abi::WorkerEntry = $crate::abi::WorkerEntry {
                magic: $magic,
                abi_major: $crate::abi::ABI_MAJOR,
                _reserved: [0; 3],
                fingerprint: $crate::abi::LAYOUT_FINGERPRINT,
                run,
            };
        }
    };
}

/// Names a worker entry or startup hook of this crate, exported with [`worker_entry!`] or
/// [`startup_hook!`]: a typo fails to compile.
#[macro_export]
macro_rules! entry {
    ($f:ident) => {
        $crate::EntryPoint::local($f::NAME)
    };
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
