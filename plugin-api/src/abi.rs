//! The C ABI between the Steward host and a plugin.
//!
//! Runs in: both the host and every plugin (each cdylib compiles its own copy of this module).
//!
//! Everything here is `#[repr(C)]` and crosses a `dlopen` boundary, so the rules are strict:
//!
//! - No heap ownership crosses the boundary. Strings are borrowed [`Str`] views that live as long
//!   as the call (or `'static` where a field says so). A callee that must return variable-sized data
//!   writes into a buffer the caller owns and reports the length it needed.
//! - No panic crosses the boundary. Every function a plugin exports catches unwinding and turns it
//!   into a [`Status`] or an exit code; the host does the same for the functions in [`HostApi`].
//! - The host function tables are append-only. Each starts with its size in bytes as the host built
//!   it; a plugin compiled against a newer minor version checks `size` before calling a field the
//!   host may not have ([`HostApi::has`]).
//! - The header carries a layout fingerprint of every struct in this module. A plugin built against
//!   an SDK whose structs differ from the host's is refused before any of its code runs.

use std::ffi::c_void;
use std::mem::{align_of, offset_of, size_of};

// issue 15: connections
mod connection;
pub use connection::*;

/// Magic bytes at the start of [`PluginHeader`].
pub const PLUGIN_MAGIC: [u8; 8] = *b"STEWARD\x01";
/// Magic bytes at the start of [`WorkerEntry`].
pub const ENTRY_MAGIC: [u8; 8] = *b"STWENTRY";
/// Magic bytes of a startup hook's descriptor (a [`WorkerEntry`] run by the startup child).
pub const HOOK_MAGIC: [u8; 8] = *b"STWHOOK\x01";
// issue 14: segment init
/// Magic bytes of a segment init hook's descriptor (a [`WorkerEntry`] run by the startup child on
/// every new segment, before the startup hooks).
pub const SEGINIT_MAGIC: [u8; 8] = *b"STWSINIT";
/// Incompatible ABI changes bump the major version; the host refuses any other major.
pub const ABI_MAJOR: u16 = 1;
/// Compatible additions (new fields at the end of a table) bump the minor version.
pub const ABI_MINOR: u16 = 1;
/// The symbol every plugin exports: a `static` [`PluginHeader`].
pub const HEADER_SYMBOL: &str = "steward_plugin_header";
/// Worker entries are exported as `static` [`WorkerEntry`] values named with this prefix followed
/// by the entry's function name.
pub const ENTRY_SYMBOL_PREFIX: &str = "steward_worker_entry__";
/// Startup hooks are exported with this prefix followed by the hook function's name.
pub const HOOK_SYMBOL_PREFIX: &str = "steward_startup_hook__";
// issue 14: segment init
/// Segment init hooks are exported with this prefix followed by the hook function's name.
pub const SEGINIT_SYMBOL_PREFIX: &str = "steward_segment_init__";

/// Longest worker name, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Longest worker type, in bytes.
pub const MAX_TYPE_LEN: usize = 63;
/// Longest library (plugin) name, in bytes.
pub const MAX_LIBRARY_LEN: usize = 63;
/// Longest entry function name, in bytes.
pub const MAX_FUNCTION_LEN: usize = 95;
/// Size of a worker's opaque `extra` argument (PostgreSQL gives 128 bytes).
pub const EXTRA_LEN: usize = 1024;
/// Longest region name, in bytes.
pub const MAX_REGION_NAME_LEN: usize = 63;
/// Longest setting name, in bytes.
pub const MAX_SETTING_NAME_LEN: usize = 63;
/// Longest lock name, in bytes (ABI 1.1).
pub const MAX_LOCK_NAME_LEN: usize = 63;
/// Longest restart delay, in microseconds (one week).
pub const MAX_RESTART_DELAY_US: u64 = 7 * 86_400 * 1_000_000;

/// Result of a call across the boundary. `0` is success; see the `STATUS_*` constants.
pub type Status = i32;
pub const STATUS_OK: Status = 0;
/// Registration is closed: the host has frozen its registry.
pub const STATUS_FROZEN: Status = 1;
/// A name (worker, setting, region) is empty, too long or has a forbidden byte.
pub const STATUS_BAD_NAME: Status = 2;
/// A worker or region with this name already exists.
pub const STATUS_DUPLICATE: Status = 3;
/// An argument is out of range or inconsistent (flags, restart policy, sizes).
pub const STATUS_INVALID: Status = 4;
/// The thing looked up does not exist.
pub const STATUS_NOT_FOUND: Status = 5;
/// The caller's buffer is too small; the needed length was written to the length out-parameter.
pub const STATUS_BUFFER_TOO_SMALL: Status = 6;
/// The configured value of a setting does not fit its definition.
pub const STATUS_BAD_VALUE: Status = 7;
/// The plugin's function failed; its reason was reported through [`HostApi::fail`].
pub const STATUS_FAILED: Status = 8;
/// The plugin's function panicked; the message was reported through [`HostApi::fail`].
pub const STATUS_PANICKED: Status = 9;
/// The call is not available in this process (for example a worker call during init).
pub const STATUS_UNAVAILABLE: Status = 10;
// issue 14: latches
/// The handle names something that has a new tenant since it was taken (a stale latch handle).
pub const STATUS_STALE: Status = 12;
// issue 14: locks
/// A `try_only` lock acquisition found the lock taken in a conflicting mode (ABI 1.1).
pub const STATUS_BUSY: Status = 17;
// issue 14: dynamic workers
/// A wait on a worker handle ran out of time (ABI 1.1).
pub const STATUS_TIMED_OUT: Status = 11;
/// Every worker slot is in use: the launch was refused (ABI 1.1).
pub const STATUS_NO_FREE_SLOT: Status = 13;
/// The host is not running: it is recovering from a crash or stopping (ABI 1.1).
pub const STATUS_HOST_NOT_RUNNING: Status = 14;
/// A wait was cut short because this process was asked to stop (ABI 1.1).
pub const STATUS_TERMINATE: Status = 15;
// issue 15: isolated
/// The call writes shared memory, which an isolated worker's or connection handler's process does
/// not map writable.
pub const STATUS_ISOLATED: Status = 18;

/// A borrowed UTF-8 string. Valid for the duration of the call that receives it, unless the field
/// holding it says `'static`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Str {
    pub ptr: *const u8,
    pub len: usize,
}

// SAFETY: a `Str` is a read-only view; the statics that hold one point at `'static` string data.
unsafe impl Sync for Str {}
// SAFETY: as above; the view carries no thread affinity.
unsafe impl Send for Str {}

impl Str {
    pub const fn new(s: &str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    pub const EMPTY: Str = Str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Views the bytes.
    ///
    /// # Safety
    /// `ptr` must be null with `len == 0`, or point at `len` readable bytes that stay valid for
    /// the returned lifetime.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    /// Views the string, or `None` when it is not valid UTF-8.
    ///
    /// # Safety
    /// As for [`Str::as_bytes`].
    pub unsafe fn to_str<'a>(self) -> Option<&'a str> {
        // SAFETY: forwarded to the caller.
        std::str::from_utf8(unsafe { self.as_bytes() }).ok()
    }
}

/// The header a plugin exports as `steward_plugin_header`, PostgreSQL's `PG_MODULE_MAGIC` idea.
#[repr(C)]
pub struct PluginHeader {
    pub magic: [u8; 8],
    pub abi_major: u16,
    pub abi_minor: u16,
    /// `size_of::<PluginHeader>()` as the plugin was built.
    pub header_size: u32,
    /// [`LAYOUT_FINGERPRINT`] as the plugin was built.
    pub fingerprint: u64,
    /// `'static`: the plugin's name; must equal the library's file stem without `lib`.
    pub name: Str,
    /// `'static`: the plugin's own version.
    pub version: Str,
    /// `'static`: the SDK version the plugin was built with.
    pub sdk_version: Str,
    /// Called once per process that loads the plugin: in the supervisor with registration open,
    /// and in each exec-mode child in attach mode, where registration is a no-op.
    pub init: unsafe extern "C" fn(host: *const HostApi) -> Status,
}

/// What [`HostApi::mode`] says about the process calling a plugin's init.
pub const MODE_PRELOAD: u32 = 0;
/// Init runs again in a child that re-executed the host: settings and regions are looked up,
/// registration succeeds without doing anything.
pub const MODE_ATTACH: u32 = 1;

/// Log levels passed to [`HostApi::log`].
pub const LEVEL_ERROR: u32 = 1;
pub const LEVEL_WARN: u32 = 2;
pub const LEVEL_INFO: u32 = 3;
pub const LEVEL_DEBUG: u32 = 4;
pub const LEVEL_TRACE: u32 = 5;

/// When a worker starts, relative to the host's states.
pub const START_HOST_START: u32 = 0;
pub const START_CONSISTENT: u32 = 1;
pub const START_RUNNING: u32 = 2;

/// Restart policy kinds for [`WorkerSpec::restart_kind`].
pub const RESTART_NEVER: u32 = 0;
/// Restart after `restart_delay_us`.
pub const RESTART_AFTER: u32 = 1;
/// Restart after `restart_delay_us`, then after delays growing by `backoff_factor_milli / 1000`
/// up to `restart_cap_us`; back to the initial delay once a run lasted `restart_reset_us`.
pub const RESTART_BACKOFF: u32 = 2;

/// A background worker as a plugin registers it.
#[repr(C)]
pub struct WorkerSpec {
    pub name: Str,
    /// Group name shown in status; empty means "same as name".
    pub worker_type: Str,
    /// Library (plugin name) holding the entry; empty means the registering plugin.
    pub library: Str,
    pub function: Str,
    pub start_time: u32,
    pub restart_kind: u32,
    pub restart_delay_us: u64,
    pub arg: u64,
    pub extra: *const u8,
    pub extra_len: usize,
    /// [`RESTART_BACKOFF`] only: growth factor in thousandths (2000 doubles each time).
    pub backoff_factor_milli: u32,
    /// Crash-loop limit: at most this many restarts within `crash_loop_window_us` (0: no limit).
    pub crash_loop_max: u32,
    pub restart_cap_us: u64,
    pub restart_reset_us: u64,
    pub crash_loop_window_us: u64,
}

// issue 14: readiness
/// [`WorkerSpecExt::flags`]: the worker is `starting` until it calls [`WorkerApi::set_ready`].
pub const WORKER_NEEDS_READY: u32 = 1 << 0;
// issue 14: notifications
/// [`WorkerSpecExt::flags`], dynamic workers only: the worker is terminated when the process
/// that launched it exits. A static registration with it is refused.
pub const WORKER_STOP_WITH_LAUNCHER: u32 = 1 << 2;
/// Most `start_after` names one registration carries.
pub const MAX_START_AFTER: usize = 4;
// issue 15: isolated
/// [`WorkerSpecExt::flags`]: the worker's process maps no writable shared memory, holds no
/// dead-man flag, and its crash restarts only itself (never with [`WORKER_NEEDS_READY`]).
pub const WORKER_ISOLATED: u32 = 1 << 1;

/// What a registration adds to its [`WorkerSpec`] (ABI 1.1, through
/// [`HostApi::register_worker_ext`]). Kept out of the fingerprint: it starts with its own size,
/// so a later minor version may append fields the host reads only when `size` covers them.
#[repr(C)]
pub struct WorkerSpecExt {
    /// `size_of::<WorkerSpecExt>()` as the plugin was built.
    pub size: u32,
    /// [`WORKER_NEEDS_READY`], [`WORKER_ISOLATED`], [`WORKER_STOP_WITH_LAUNCHER`] (dynamic
    /// workers only); other bits are refused.
    pub flags: u32,
    /// The workers (by name) that must be ready before this one starts.
    pub start_after: *const Str,
    /// How many names `start_after` points to (at most [`MAX_START_AFTER`]).
    pub n_start_after: usize,
}

// issue 14: dynamic workers
mod handles;
pub use handles::*;
// issue 14: queue
mod queue;
pub use queue::*;

/// The size of [`WorkerSpecExt`] as ABI 1.1 defines it: the least a host accepts. A later minor
/// version appends fields; a host reads those only when the plugin's `size` covers them, so a
/// plugin built against 1.1 keeps loading.
pub const WORKER_SPEC_EXT_SIZE_1_1: usize = 8 + 2 * std::mem::size_of::<usize>();
const _: () = assert!(std::mem::size_of::<WorkerSpecExt>() >= WORKER_SPEC_EXT_SIZE_1_1);

/// Setting kinds for [`SettingDef::kind`].
pub const SETTING_BOOL: u32 = 0;
pub const SETTING_INT: u32 = 1;
pub const SETTING_STRING: u32 = 2;
pub const SETTING_DURATION: u32 = 3;
pub const SETTING_ENUM: u32 = 4;

/// A plugin setting as defined in init. Values cross the boundary in canonical text form:
/// `true`/`false`, a decimal integer, the string itself, whole microseconds, or the enum choice.
#[repr(C)]
pub struct SettingDef {
    pub name: Str,
    pub kind: u32,
    /// Non-zero: the value may change on reload; zero: changes need a restart.
    pub reloadable: u32,
    pub default: Str,
    /// Inclusive bounds for `SETTING_INT` (and microseconds for `SETTING_DURATION`).
    pub min: i64,
    pub max: i64,
    /// For `SETTING_ENUM`: the allowed choices.
    pub choices: *const Str,
    pub n_choices: usize,
    pub description: Str,
}

/// The functions the host offers a plugin, in every process that runs plugin code.
#[repr(C)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the host was built: fields past it do not exist.
    pub size: u32,
    pub abi_minor: u16,
    pub _reserved: u16,
    /// [`MODE_PRELOAD`] or [`MODE_ATTACH`].
    pub mode: u32,
    /// The most verbose level the host will print ([`LEVEL_ERROR`] ..= [`LEVEL_TRACE`]).
    pub max_level: u32,
    pub ctx: *mut c_void,
    /// Writes a log line tagged with the calling process's kind, worker and pid.
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u32, plugin: Str, target: Str, message: Str),
    /// Records the reason the current init or worker call is failing.
    pub fail: unsafe extern "C" fn(ctx: *mut c_void, message: Str),
    /// Registers a static background worker; only while the registry is open.
    pub register_worker: unsafe extern "C" fn(ctx: *mut c_void, plugin: Str, spec: *const WorkerSpec) -> Status,
    /// Defines a setting of `plugin` and writes its configured value (canonical text) into `buf`.
    pub define_setting: unsafe extern "C" fn(
        ctx: *mut c_void,
        plugin: Str,
        def: *const SettingDef,
        buf: *mut u8,
        cap: usize,
        len: *mut usize,
    ) -> Status,
    /// Reads the current value of a setting `plugin` defined (canonical text) into `buf`.
    pub get_setting: unsafe extern "C" fn(
        ctx: *mut c_void,
        plugin: Str,
        name: Str,
        buf: *mut u8,
        cap: usize,
        len: *mut usize,
    ) -> Status,
    /// Requests a named shared-memory region of `size` bytes; only while the registry is open.
    pub request_region: unsafe extern "C" fn(ctx: *mut c_void, plugin: Str, name: Str, size: u64) -> Status,
    /// Looks up a region `plugin` requested; available once the segment exists (in children).
    pub region:
        unsafe extern "C" fn(ctx: *mut c_void, plugin: Str, name: Str, ptr: *mut *mut u8, len: *mut u64) -> Status,
    /// Registers a startup hook `name` running `function` of `library` (empty: `plugin`); only
    /// while the registry is open. Hooks run in registration order in the startup child.
    pub register_startup_hook:
        unsafe extern "C" fn(ctx: *mut c_void, plugin: Str, name: Str, library: Str, function: Str) -> Status,
    // issue 14: latches (ABI 1.1; check with `has` before calling)
    /// Sets the latch a raw `LatchHandle` names, from any process that maps the segment:
    /// [`STATUS_OK`] when it is set (or already was), [`STATUS_STALE`] when the latch's owner is
    /// gone or the handle is malformed, [`STATUS_UNAVAILABLE`] in a process without the segment.
    pub latch_set: unsafe extern "C" fn(ctx: *mut c_void, handle: u64) -> Status,
    // issue 14: locks (ABI 1.1; check with `has` before calling)
    /// Requests a named lock in the segment; only while the registry is open.
    pub request_lock: unsafe extern "C" fn(ctx: *mut c_void, plugin: Str, name: Str) -> Status,
    /// Looks up a lock `plugin` requested and writes its opaque cell for
    /// [`WorkerApi::lock_acquire`]; available once the segment exists (in children).
    pub lock: unsafe extern "C" fn(ctx: *mut c_void, plugin: Str, name: Str, cell: *mut *const c_void) -> Status,
    // issue 14: segment init (ABI 1.1; check with `has` before calling)
    /// Registers a segment init hook running `function` of `library` (empty: `plugin`), named
    /// after the function; only while the registry is open. Init hooks run in registration order
    /// in the startup child on every new segment, before the startup hooks and before any worker.
    pub register_segment_init:
        unsafe extern "C" fn(ctx: *mut c_void, plugin: Str, name: Str, library: Str, function: Str) -> Status,
    // issue 14: readiness (ABI 1.1; check with `has` before calling)
    /// As `register_worker`, with what [`WorkerSpecExt`] adds (readiness, `start_after`).
    pub register_worker_ext: unsafe extern "C" fn(
        ctx: *mut c_void,
        plugin: Str,
        spec: *const WorkerSpec,
        ext: *const WorkerSpecExt,
    ) -> Status,
    // issue 14: dynamic workers (ABI 1.1; check with `has` before calling)
    /// Launches a dynamic worker of `plugin` from a worker: [`STATUS_OK`] with its slot and
    /// generation in `answer`; [`STATUS_NO_FREE_SLOT`] (with `used` and `max`),
    /// [`STATUS_INVALID`], [`STATUS_BAD_NAME`], [`STATUS_HOST_NOT_RUNNING`] or
    /// [`STATUS_UNAVAILABLE`] (not in a worker) with a message.
    pub launch_worker: unsafe extern "C" fn(
        ctx: *mut c_void,
        plugin: Str,
        spec: *const WorkerSpec,
        answer: *mut LaunchAnswer,
    ) -> Status,
    /// Writes the status of the worker `(slot, generation)` names: [`STATUS_STALE`] when the slot
    /// has another tenant.
    pub handle_status:
        unsafe extern "C" fn(ctx: *mut c_void, slot: u32, generation: u64, out: *mut HandleStatus) -> Status,
    /// Waits up to `timeout_us` for the worker to run its entry or stop
    /// ([`HANDLE_WAIT_STARTUP`]), or to stop ([`HANDLE_WAIT_SHUTDOWN`]), then writes its status:
    /// [`STATUS_TIMED_OUT`], [`STATUS_STALE`] or [`STATUS_TERMINATE`] otherwise.
    pub handle_wait: unsafe extern "C" fn(
        ctx: *mut c_void,
        slot: u32,
        generation: u64,
        what: u32,
        timeout_us: u64,
        out: *mut HandleStatus,
    ) -> Status,
    /// Asks the host to stop the worker for good (SIGTERM if it runs): [`STATUS_OK`] (also when
    /// it already stopped) or [`STATUS_STALE`].
    pub handle_terminate: unsafe extern "C" fn(ctx: *mut c_void, slot: u32, generation: u64) -> Status,
    // issue 14: control (ABI 1.1; check with `has` before calling)
    /// Writes the handle of the live worker named `name` (static or dynamic): [`STATUS_OK`], or
    /// [`STATUS_NOT_FOUND`] when no live worker has that name, [`STATUS_DUPLICATE`] when more
    /// than one has (a stopped or failed worker is not live).
    pub handle_by_name:
        unsafe extern "C" fn(ctx: *mut c_void, name: Str, slot: *mut u32, generation: *mut u64) -> Status,
    // issue 14: notifications (ABI 1.1; check with `has` before calling)
    /// As `launch_worker`, with what [`WorkerSpecExt`] adds ([`WORKER_NEEDS_READY`],
    /// [`WORKER_STOP_WITH_LAUNCHER`], `start_after`); also from a startup hook. Besides
    /// `launch_worker`'s answers: [`STATUS_DUPLICATE`] when a worker of that name is in the host,
    /// [`STATUS_NOT_FOUND`] when a `start_after` name is no worker's (the name in `message`).
    pub launch_worker_ext: unsafe extern "C" fn(
        ctx: *mut c_void,
        plugin: Str,
        spec: *const WorkerSpec,
        ext: *const WorkerSpecExt,
        answer: *mut LaunchAnswer,
    ) -> Status,
    // issue 14: queue
    /// As `launch_worker_ext` (`ext` may be null here), with [`LaunchOpts`]: a queue timeout.
    /// Besides its answers: [`STATUS_TERMINATE`] when a queued request was cancelled because
    /// this worker was asked to stop.
    pub launch_worker_opts: unsafe extern "C" fn(
        ctx: *mut c_void,
        plugin: Str,
        spec: *const WorkerSpec,
        ext: *const WorkerSpecExt,
        opts: *const LaunchOpts,
        answer: *mut LaunchAnswer,
    ) -> Status,
    // issue 15: connections (check with `has` before calling)
    /// Registers a connection handler of `plugin`; only while the registry is open.
    pub register_connection_handler:
        unsafe extern "C" fn(ctx: *mut c_void, plugin: Str, spec: *const HandlerSpec) -> Status,
}

impl HostApi {
    /// Whether the host's table has the field ending at byte `end` (an `offset_of + size_of`).
    pub fn has(&self, end: usize) -> bool {
        end <= self.size as usize
    }
}

/// Why [`WorkerApi::wait`] returned.
pub const WAIT_TIMEOUT: u32 = 0;
pub const WAIT_TERMINATE: u32 = 1;
pub const WAIT_HOST_GONE: u32 = 2;
/// The configuration was reloaded: settings read from now on have their new values.
pub const WAIT_RELOAD: u32 = 3;
/// The worker's latch was set (returned only by [`WorkerApi::wait_latch`], never by `wait`).
pub const WAIT_LATCH: u32 = 4;

/// Lock modes for [`WorkerApi::lock_acquire`] and [`WorkerApi::lock_release`] (ABI 1.1).
pub const LOCK_EXCLUSIVE: u32 = 0;
pub const LOCK_SHARED: u32 = 1;

/// The functions the host offers a running worker, passed to its entry.
#[repr(C)]
pub struct WorkerApi {
    /// `size_of::<WorkerApi>()` as the host was built.
    pub size: u32,
    pub _reserved: u32,
    pub ctx: *mut c_void,
    pub host: *const HostApi,
    pub name: Str,
    pub worker_type: Str,
    /// The plugin that registered the worker.
    pub plugin: Str,
    pub arg: u64,
    pub extra: *const u8,
    pub extra_len: usize,
    /// Non-zero once termination was requested or the host is gone.
    pub should_stop: unsafe extern "C" fn(ctx: *mut c_void) -> u32,
    /// Sleeps up to `timeout_us` microseconds; returns early with the reason.
    pub wait: unsafe extern "C" fn(ctx: *mut c_void, timeout_us: u64) -> u32,
    /// In the startup child only: declares the host consistent (workers that start at
    /// `START_CONSISTENT` may start). Elsewhere it does nothing.
    pub declare_consistent: unsafe extern "C" fn(ctx: *mut c_void),
    /// Non-zero once a configuration reload was requested and not yet reported by `wait`.
    pub reload_requested: unsafe extern "C" fn(ctx: *mut c_void) -> u32,
    // issue 14: latches (ABI 1.1; check `size` before calling)
    /// As `wait`, and also returns [`WAIT_LATCH`] when this process's latch is set, resetting it.
    pub wait_latch: unsafe extern "C" fn(ctx: *mut c_void, timeout_us: u64) -> u32,
    /// This process's latch as a raw handle (never 0 in a worker or the startup child).
    pub latch: unsafe extern "C" fn(ctx: *mut c_void) -> u64,
    /// The eventfd that becomes readable when the latch is set (or on terminate or reload); the
    /// host owns it. From now on every set signals this process.
    pub latch_fd: unsafe extern "C" fn(ctx: *mut c_void) -> i32,
    /// Resets the latch and empties the latch fd; non-zero if the latch was set.
    pub latch_reset: unsafe extern "C" fn(ctx: *mut c_void) -> u32,
    /// Shows one line of the worker's own state in `steward status` (bounded by the host).
    pub set_activity: unsafe extern "C" fn(ctx: *mut c_void, text: Str),
    // issue 14: locks (ABI 1.1; check `size` before calling)
    /// Takes the lock `cell` (from [`HostApi::lock`]) in `mode`; with `try_only` non-zero returns
    /// [`STATUS_BUSY`] instead of waiting. Counts the lock as held by this process before it
    /// takes it, so a death from here on is a crash.
    pub lock_acquire: unsafe extern "C" fn(ctx: *mut c_void, cell: *const c_void, mode: u32, try_only: u32) -> Status,
    /// Releases a lock this process took in `mode`.
    pub lock_release: unsafe extern "C" fn(ctx: *mut c_void, cell: *const c_void, mode: u32),
    // issue 14: readiness (ABI 1.1; check `size` before calling)
    /// Declares the worker ready: status shows it `running` from now on (it was `starting` if it
    /// registered with [`WORKER_NEEDS_READY`]), and workers registered to start after it may
    /// start. Only the first call counts.
    pub set_ready: unsafe extern "C" fn(ctx: *mut c_void),
}

impl WorkerApi {
    /// Whether the host's table has the field ending at byte `end` (an `offset_of + size_of`).
    pub fn has(&self, end: usize) -> bool {
        end <= self.size as usize
    }
}

/// What a worker entry exports: checked by the host before it calls `run`.
#[repr(C)]
pub struct WorkerEntry {
    pub magic: [u8; 8],
    pub abi_major: u16,
    pub _reserved: [u16; 3],
    pub fingerprint: u64,
    /// Runs the worker; returns its exit code (0 done, 1 restart, 2 fatal).
    pub run: unsafe extern "C" fn(api: *const WorkerApi) -> i32,
}

const fn mix(h: u64, v: usize) -> u64 {
    // FNV-1a over the value's eight bytes.
    let mut h = h;
    let mut i = 0;
    let v = v as u64;
    while i < 8 {
        h ^= (v >> (i * 8)) & 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

macro_rules! fingerprint_of {
    // Fixed structs: size, alignment and every field's offset.
    ($h:expr, $t:ty, [$($field:ident),* $(,)?]) => {{
        let mut h = mix($h, size_of::<$t>());
        h = mix(h, align_of::<$t>());
        $( h = mix(h, offset_of!($t, $field)); )*
        h
    }};
    // Append-only tables: the size the table had in ABI 1.0 (not today's), alignment and the
    // offsets of the ABI 1.0 fields only, so that a minor version may append fields (guarded by
    // the table's `size`) without changing the fingerprint plugins built so far carry.
    (append_only $h:expr, $t:ty, $size_1_0:expr, [$($field:ident),* $(,)?]) => {{
        let mut h = mix($h, $size_1_0);
        h = mix(h, align_of::<$t>());
        $( h = mix(h, offset_of!($t, $field)); )*
        h
    }};
}

/// The size of [`HostApi`] in ABI 1.0: it ended with `register_startup_hook`.
const HOST_API_SIZE_1_0: usize = offset_of!(HostApi, register_startup_hook) + size_of::<usize>();
/// The size of [`WorkerApi`] in ABI 1.0: it ended with `reload_requested`.
const WORKER_API_SIZE_1_0: usize = offset_of!(WorkerApi, reload_requested) + size_of::<usize>();

/// A hash of the size, alignment and field offsets of every struct in this module, plus the
/// major version. Host and plugin must agree on it. For the append-only function tables it covers
/// only the ABI 1.0 fields and size: new fields go at the end of a table and are never added here,
/// so a plugin built against ABI 1.0 still loads in a host of a later minor version.
pub const LAYOUT_FINGERPRINT: u64 = {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    h = mix(h, ABI_MAJOR as usize);
    h = fingerprint_of!(h, Str, [ptr, len]);
    h = fingerprint_of!(
        h,
        PluginHeader,
        [
            magic,
            abi_major,
            abi_minor,
            header_size,
            fingerprint,
            name,
            version,
            sdk_version,
            init
        ]
    );
    h = fingerprint_of!(
        h,
        WorkerSpec,
        [
            name,
            worker_type,
            library,
            function,
            start_time,
            restart_kind,
            restart_delay_us,
            arg,
            extra,
            extra_len,
            backoff_factor_milli,
            crash_loop_max,
            restart_cap_us,
            restart_reset_us,
            crash_loop_window_us
        ]
    );
    h = fingerprint_of!(
        h,
        SettingDef,
        [
            name,
            kind,
            reloadable,
            default,
            min,
            max,
            choices,
            n_choices,
            description
        ]
    );
    h = fingerprint_of!(
        append_only h,
        HostApi,
        HOST_API_SIZE_1_0,
        [
            size,
            abi_minor,
            mode,
            max_level,
            ctx,
            log,
            fail,
            register_worker,
            define_setting,
            get_setting,
            request_region,
            region
        ]
    );
    h = fingerprint_of!(
        append_only h,
        WorkerApi,
        WORKER_API_SIZE_1_0,
        [
            size,
            ctx,
            host,
            name,
            worker_type,
            plugin,
            arg,
            extra,
            extra_len,
            should_stop,
            wait
        ]
    );
    h = fingerprint_of!(h, WorkerEntry, [magic, abi_major, fingerprint, run]);
    h
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint every plugin built against ABI 1.0 carries. Appending a field to a function
    /// table must leave it unchanged, or the host would refuse every plugin built so far.
    #[test]
    fn appending_to_the_tables_keeps_the_abi_1_0_fingerprint() {
        assert_eq!(LAYOUT_FINGERPRINT, 0xffb6_31ef_e7c8_8e56);
        assert!(size_of::<HostApi>() > HOST_API_SIZE_1_0);
        assert!(size_of::<WorkerApi>() > WORKER_API_SIZE_1_0);
    }

    /// A host accepts a `WorkerSpecExt` of the size ABI 1.1 gave it, whatever is appended later.
    #[test]
    fn the_worker_spec_extension_keeps_its_1_1_size() {
        assert_eq!(WORKER_SPEC_EXT_SIZE_1_1, 24);
    }
}
