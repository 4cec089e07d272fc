//! The host function table plugins call ([`steward::abi::HostApi`]), and the state behind it.
//!
//! Runs in: the supervisor during preload, and every child (workers call settings, regions and
//! log; exec-mode children also run init again in attach mode).
//!
//! Every function here is `extern "C"`, called from plugin code: none may unwind (each body runs
//! under `catch_unwind`), and every argument is checked (null pointers, UTF-8, lengths) before use.
//! State lives in one process-global [`HostState`]; the supervisor is single-threaded, and in a
//! child a plugin's own threads only reach the log function, which takes no state lock.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;

use steward::abi::{self, Status, Str};

// issue 14: dynamic workers
mod dynamic;
// issue 15: connections
mod connections;

use crate::shared::protocol::{self, Code};
use crate::shared::registry::{
    CrashLoopLimit, RegionSpec, Registry, Setting, SettingKind, Settings, StartTime, WorkerSpec,
};

/// A region as mapped in this process.
#[derive(Debug, Clone, Copy)]
pub struct MappedRegion {
    pub ptr: *mut u8,
    pub len: u64,
}

/// What the host functions work on.
pub struct HostState {
    /// True while a plugin's init runs again in an exec-mode child: registration is a no-op and
    /// settings keep the supervisor's values.
    pub attach_init: bool,
    pub registry: Registry,
    pub settings: Settings,
    /// The config file, for error messages.
    pub config_file: PathBuf,
    /// `[plugins.<name>]` tables from the config.
    pub sections: BTreeMap<String, toml::Table>,
    /// Problems with the operator's plugin settings found while plugins defined them.
    pub config_errors: Vec<String>,
    /// The reason the current plugin call failed, from [`abi::HostApi::fail`].
    pub failure: Option<String>,
    /// Regions mapped in this process, by (plugin, name); empty until the segment exists.
    pub regions: BTreeMap<(String, String), MappedRegion>,
}

// SAFETY: the raw pointers in `regions` point into a `MAP_SHARED` mapping that lives as long as the
// process (or, in the supervisor, is never handed out); access is serialised by the mutex.
unsafe impl Send for HostState {}

static STATE: Mutex<Option<HostState>> = Mutex::new(None);

/// The locks mapped in this process, by (plugin, name), as addresses of their cells: set once
/// the segment is mapped ([`set_locks`]), then only read, so a lookup takes no mutex.
static LOCKS: std::sync::OnceLock<BTreeMap<(String, String), usize>> = std::sync::OnceLock::new();

/// Records where this process's mapping holds each lock (once; children only).
pub fn set_locks(cells: Vec<((String, String), *const crate::shared::locks::LockCell)>) {
    let _ = LOCKS.set(cells.into_iter().map(|(k, p)| (k, p as usize)).collect());
}

/// Mirrors `HostState::attach_init` for the registration fast path: in an exec-mode child's
/// attach-mode init every registration is a no-op, and with N workers each child would otherwise
/// parse and copy all N registrations (O(N^2) over a start).
static ATTACH_INIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets whether init is running in attach mode (both the state and the fast-path flag).
pub fn set_attach_init(on: bool) {
    ATTACH_INIT.store(on, std::sync::atomic::Ordering::Release);
    with_state(|s| s.attach_init = on);
}

fn attaching() -> bool {
    ATTACH_INIT.load(std::sync::atomic::Ordering::Acquire)
}

/// Runs `f` on the state. Panics if [`install`] has not run, which is a host bug.
pub fn with_state<R>(f: impl FnOnce(&mut HostState) -> R) -> R {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(g.as_mut().expect("host state installed before plugins run"))
}

/// Installs the state for this process.
pub fn install(state: HostState) {
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
}

struct Table(abi::HostApi);
// SAFETY: the table holds function pointers and a null context; it is never mutated.
unsafe impl Sync for Table {}

static PRELOAD_TABLE: Table = Table(table(abi::MODE_PRELOAD));
static ATTACH_TABLE: Table = Table(table(abi::MODE_ATTACH));

const fn table(mode: u32) -> abi::HostApi {
    abi::HostApi {
        size: std::mem::size_of::<abi::HostApi>() as u32,
        abi_minor: abi::ABI_MINOR,
        _reserved: 0,
        mode,
        max_level: abi::LEVEL_TRACE,
        ctx: std::ptr::null_mut(),
        log: host_log,
        fail: host_fail,
        register_worker: host_register_worker,
        define_setting: host_define_setting,
        get_setting: host_get_setting,
        request_region: host_request_region,
        region: host_region,
        register_startup_hook: host_register_startup_hook,
        latch_set: host_latch_set,
        // issue 14: locks
        request_lock: host_request_lock,
        lock: host_lock,
        register_segment_init: host_register_segment_init,
        register_worker_ext: host_register_worker_ext,
        // issue 14: dynamic workers
        launch_worker: dynamic::host_launch_worker,
        handle_status: dynamic::host_handle_status,
        handle_wait: dynamic::host_handle_wait,
        handle_terminate: dynamic::host_handle_terminate,
        // issue 14: control
        handle_by_name: dynamic::host_handle_by_name,
        // issue 14: notifications
        launch_worker_ext: dynamic::host_launch_worker_ext,
        // issue 14: queue
        launch_worker_opts: dynamic::host_launch_worker_opts,
        // issue 15: connections
        register_connection_handler: connections::host_register_connection_handler,
    }
}

/// The table passed to plugins' init in this mode.
pub fn table_for(mode: u32) -> &'static abi::HostApi {
    if mode == abi::MODE_ATTACH {
        &ATTACH_TABLE.0
    } else {
        &PRELOAD_TABLE.0
    }
}

/// Views an ABI string, refusing non-UTF-8.
///
/// # Safety
/// `s` must come from the plugin as a valid view for the duration of the call.
unsafe fn text<'a>(s: Str) -> Option<&'a str> {
    // SAFETY: forwarded to the caller.
    unsafe { s.to_str() }
}

fn guarded(f: impl FnOnce() -> Status) -> Status {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(abi::STATUS_INVALID)
}

/// Copies `value` into the plugin's buffer, or reports the length it needs.
///
/// # Safety
/// `buf` must have `cap` writable bytes and `len` must be writable (checked for null).
unsafe fn write_out(value: &str, buf: *mut u8, cap: usize, len: *mut usize) -> Status {
    if len.is_null() {
        return abi::STATUS_INVALID;
    }
    // SAFETY: checked non-null; the plugin owns it.
    unsafe { *len = value.len() };
    if value.len() > cap || (buf.is_null() && !value.is_empty()) {
        return abi::STATUS_BUFFER_TOO_SMALL;
    }
    // SAFETY: `buf` has at least `cap >= value.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), buf, value.len()) };
    abi::STATUS_OK
}

unsafe extern "C" fn host_log(_ctx: *mut c_void, level: u32, plugin: Str, _target: Str, message: Str) {
    let _ = catch_unwind(|| {
        // SAFETY: the plugin passes valid views for the call.
        let plugin = unsafe { plugin.as_bytes() };
        // SAFETY: as above.
        let message = unsafe { message.as_bytes() };
        crate::shared::log::plugin_event(
            level,
            &String::from_utf8_lossy(plugin),
            &String::from_utf8_lossy(message),
        );
    });
}

unsafe extern "C" fn host_latch_set(_ctx: *mut c_void, handle: u64) -> Status {
    // No state lock: a plugin thread may set latches at any rate.
    guarded(|| crate::shared::latch::set(handle))
}

unsafe extern "C" fn host_fail(_ctx: *mut c_void, message: Str) {
    let _ = catch_unwind(|| {
        // SAFETY: the plugin passes a valid view for the call.
        let m = String::from_utf8_lossy(unsafe { message.as_bytes() }).into_owned();
        with_state(|s| s.failure = Some(m));
    });
}

unsafe extern "C" fn host_register_worker(_ctx: *mut c_void, plugin: Str, spec: *const abi::WorkerSpec) -> Status {
    // SAFETY: the plugin's pointers, passed on as they came.
    unsafe { register_worker(plugin, spec, std::ptr::null()) }
}

// issue 14: readiness
unsafe extern "C" fn host_register_worker_ext(
    _ctx: *mut c_void,
    plugin: Str,
    spec: *const abi::WorkerSpec,
    ext: *const abi::WorkerSpecExt,
) -> Status {
    if ext.is_null() {
        return abi::STATUS_INVALID;
    }
    // SAFETY: the plugin's pointers, passed on as they came.
    unsafe { register_worker(plugin, spec, ext) }
}

/// What a [`abi::WorkerSpecExt`] adds, copied and checked: the readiness flag and the
/// `start_after` names. `None` when the plugin's struct is malformed.
///
/// # Safety
/// `ext` is null or points to a `WorkerSpecExt` of at least its own `size`, whose `start_after`
/// holds `n_start_after` views valid for the call.
unsafe fn readiness_of(ext: *const abi::WorkerSpecExt) -> Option<(bool, Vec<String>, bool)> {
    // SAFETY: null or valid, per this function's contract.
    let Some(ext) = (unsafe { ext.as_ref() }) else {
        return Some((false, Vec::new(), false));
    };
    // Every field read here was in the first ABI 1.1 struct; a shorter one is not ours.
    // The 1.1 size, not today's: a field a later minor version appends must not make this host
    // refuse the plugins built before it.
    // issue 15: isolated (a flag, and one that does not go with readiness: `set_ready` writes)
    let known = abi::WORKER_NEEDS_READY | abi::WORKER_ISOLATED | abi::WORKER_STOP_WITH_LAUNCHER;
    let no_isolated_readiness = abi::WORKER_NEEDS_READY | abi::WORKER_ISOLATED;
    if (ext.size as usize) < abi::WORKER_SPEC_EXT_SIZE_1_1
        || ext.flags & !known != 0
        || ext.flags & no_isolated_readiness == no_isolated_readiness
    {
        return None;
    }
    if ext.n_start_after > abi::MAX_START_AFTER || (ext.start_after.is_null() && ext.n_start_after > 0) {
        return None;
    }
    let views: &[Str] = match ext.n_start_after {
        0 => &[],
        // SAFETY: non-null with `n_start_after` (bounded above) views, per the contract.
        n => unsafe { std::slice::from_raw_parts(ext.start_after, n) },
    };
    let mut names = Vec::with_capacity(views.len());
    for v in views {
        // SAFETY: views valid for the call.
        names.push(unsafe { text(*v) }?.to_owned());
    }
    Some((
        ext.flags & abi::WORKER_NEEDS_READY != 0,
        names,
        ext.flags & abi::WORKER_STOP_WITH_LAUNCHER != 0,
    ))
}

/// Registers a static worker, with its readiness fields when `ext` is not null.
///
/// # Safety
/// As [`readiness_of`], and `spec` is null or a valid `WorkerSpec` whose views are valid for the
/// call.
unsafe fn register_worker(plugin: Str, spec: *const abi::WorkerSpec, ext: *const abi::WorkerSpecExt) -> Status {
    if attaching() {
        return abi::STATUS_OK;
    }
    guarded(|| {
        // SAFETY: per this function's contract.
        match unsafe { spec_from_abi(plugin, spec, ext) } {
            Ok(w) => register(|r| r.add_worker(w)),
            Err(st) => st,
        }
    })
}

/// Copies a plugin's registration (and what `ext` adds, when not null) into a [`WorkerSpec`]:
/// the same conversion for a static worker and a dynamic one.
///
/// # Safety
/// As [`register_worker`].
unsafe fn spec_from_abi(
    plugin: Str,
    spec: *const abi::WorkerSpec,
    ext: *const abi::WorkerSpecExt,
) -> Result<WorkerSpec, Status> {
    // SAFETY: the plugin passes a valid spec (checked for null) and views for the call.
    let Some(spec) = (unsafe { spec.as_ref() }) else {
        return Err(abi::STATUS_INVALID);
    };
    // SAFETY: as above.
    let (Some(plugin), Some(name), Some(wtype), Some(library), Some(function)) = (unsafe {
        (
            text(plugin),
            text(spec.name),
            text(spec.worker_type),
            text(spec.library),
            text(spec.function),
        )
    }) else {
        return Err(abi::STATUS_BAD_NAME);
    };
    let (Ok(start_time), Ok(restart)) = (StartTime::decode(spec.start_time), protocol::restart_policy(spec)) else {
        return Err(abi::STATUS_INVALID);
    };
    let us = std::time::Duration::from_micros;
    let crash_loop = (spec.crash_loop_max > 0).then(|| CrashLoopLimit {
        max: spec.crash_loop_max,
        window: us(spec.crash_loop_window_us),
    });
    if spec.extra_len > abi::EXTRA_LEN || (spec.extra.is_null() && spec.extra_len > 0) {
        return Err(abi::STATUS_INVALID);
    }
    let extra = if spec.extra_len == 0 {
        Vec::new()
    } else {
        // SAFETY: non-null with `extra_len <= EXTRA_LEN` readable bytes, per the ABI.
        unsafe { std::slice::from_raw_parts(spec.extra, spec.extra_len) }.to_vec()
    };
    // SAFETY: per this function's contract.
    let Some((needs_ready, start_after, stop_with_launcher)) = (unsafe { readiness_of(ext) }) else {
        return Err(abi::STATUS_INVALID);
    };
    // issue 15: isolated
    // SAFETY: null or valid, and checked by `readiness_of` above.
    let isolated = unsafe { ext.as_ref() }.is_some_and(|e| e.flags & abi::WORKER_ISOLATED != 0);
    Ok(WorkerSpec {
        isolated,
        needs_ready,
        start_after,
        stop_with_launcher,
        name: name.to_owned(),
        worker_type: if wtype.is_empty() { name } else { wtype }.to_owned(),
        plugin: plugin.to_owned(),
        library: if library.is_empty() { plugin } else { library }.to_owned(),
        function: function.to_owned(),
        start_time,
        restart,
        crash_loop,
        arg: spec.arg,
        extra,
    })
}

unsafe extern "C" fn host_register_startup_hook(
    _ctx: *mut c_void,
    plugin: Str,
    name: Str,
    library: Str,
    function: Str,
) -> Status {
    // SAFETY: the caller's views are valid for the call, which `register_hook` does not outlive.
    unsafe { register_hook(plugin, name, library, function, Registry::add_hook) }
}

// issue 14: segment init
unsafe extern "C" fn host_register_segment_init(
    _ctx: *mut c_void,
    plugin: Str,
    name: Str,
    library: Str,
    function: Str,
) -> Status {
    // SAFETY: as for `host_register_startup_hook`.
    unsafe { register_hook(plugin, name, library, function, Registry::add_segment_init) }
}

/// Adds a registration through `add`, answering with its status. In an exec-mode child re-running
/// init it adds nothing and answers OK: the supervisor already registered the same thing.
fn register(add: impl FnOnce(&mut Registry) -> Result<(), crate::shared::registry::RegistryError>) -> Status {
    with_state(|s| {
        if s.attach_init {
            return abi::STATUS_OK;
        }
        match add(&mut s.registry) {
            Ok(()) => abi::STATUS_OK,
            Err(e) => e.status(),
        }
    })
}

/// Registers a hook (a startup hook or a segment init hook) named by the plugin's views, through
/// `add` (see [`register`]).
///
/// # Safety
/// Each `Str` must be a view valid for the duration of the call, as the ABI requires of callers.
unsafe fn register_hook(
    plugin: Str,
    name: Str,
    library: Str,
    function: Str,
    add: fn(&mut Registry, crate::shared::registry::HookSpec) -> Result<(), crate::shared::registry::RegistryError>,
) -> Status {
    guarded(|| {
        // SAFETY: views valid for the call (this function's contract).
        let (Some(plugin), Some(name), Some(library), Some(function)) =
            (unsafe { (text(plugin), text(name), text(library), text(function)) })
        else {
            return abi::STATUS_BAD_NAME;
        };
        let h = crate::shared::registry::HookSpec {
            name: name.to_owned(),
            plugin: plugin.to_owned(),
            library: if library.is_empty() { plugin } else { library }.to_owned(),
            function: function.to_owned(),
        };
        register(|r| add(r, h))
    })
}

unsafe extern "C" fn host_request_region(_ctx: *mut c_void, plugin: Str, name: Str, size: u64) -> Status {
    guarded(|| {
        // SAFETY: views valid for the call.
        let (Some(plugin), Some(name)) = (unsafe { (text(plugin), text(name)) }) else {
            return abi::STATUS_BAD_NAME;
        };
        register(|r| {
            r.add_region(RegionSpec {
                plugin: plugin.to_owned(),
                name: name.to_owned(),
                size,
            })
        })
    })
}

unsafe extern "C" fn host_region(
    _ctx: *mut c_void,
    plugin: Str,
    name: Str,
    ptr: *mut *mut u8,
    len: *mut u64,
) -> Status {
    guarded(|| {
        if ptr.is_null() || len.is_null() {
            return abi::STATUS_INVALID;
        }
        // SAFETY: views valid for the call.
        let (Some(plugin), Some(name)) = (unsafe { (text(plugin), text(name)) }) else {
            return abi::STATUS_BAD_NAME;
        };
        with_state(|s| match s.regions.get(&(plugin.to_owned(), name.to_owned())) {
            Some(r) => {
                // SAFETY: both checked non-null above; the plugin owns them.
                unsafe {
                    *ptr = r.ptr;
                    *len = r.len;
                }
                abi::STATUS_OK
            }
            None if s.registry.regions.iter().any(|r| r.plugin == plugin && r.name == name) => abi::STATUS_UNAVAILABLE,
            None => abi::STATUS_NOT_FOUND,
        })
    })
}

fn kind_of(def: &abi::SettingDef) -> Option<SettingKind> {
    Some(match def.kind {
        abi::SETTING_BOOL => SettingKind::Bool,
        abi::SETTING_INT if def.min <= def.max => SettingKind::Int {
            min: def.min,
            max: def.max,
        },
        abi::SETTING_STRING => SettingKind::String,
        abi::SETTING_DURATION if def.min <= def.max => SettingKind::Duration {
            min_us: def.min,
            max_us: def.max,
        },
        abi::SETTING_ENUM => {
            if def.choices.is_null() || def.n_choices == 0 || def.n_choices > 256 {
                return None;
            }
            // SAFETY: the plugin passes `n_choices` valid views (bounded above).
            let views = unsafe { std::slice::from_raw_parts(def.choices, def.n_choices) };
            let mut choices = Vec::with_capacity(views.len());
            for v in views {
                // SAFETY: valid views for the call.
                choices.push(unsafe { text(*v) }?.to_owned());
            }
            SettingKind::Enum(choices)
        }
        _ => return None,
    })
}

unsafe extern "C" fn host_define_setting(
    _ctx: *mut c_void,
    plugin: Str,
    def: *const abi::SettingDef,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> Status {
    guarded(|| {
        // SAFETY: checked for null; valid for the call.
        let Some(def) = (unsafe { def.as_ref() }) else {
            return abi::STATUS_INVALID;
        };
        // SAFETY: views valid for the call.
        let (Some(plugin), Some(name), Some(default), Some(description)) =
            (unsafe { (text(plugin), text(def.name), text(def.default), text(def.description)) })
        else {
            return abi::STATUS_BAD_NAME;
        };
        let name_ok = !name.is_empty()
            && name.len() <= abi::MAX_SETTING_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return abi::STATUS_BAD_NAME;
        }
        // issue 14: queue: the host owns this key of every plugin section.
        if name == crate::shared::config::RESERVED_WORKER_SLOTS_KEY {
            return abi::STATUS_DUPLICATE;
        }
        let Some(kind) = kind_of(def) else {
            return abi::STATUS_INVALID;
        };
        if !kind.accepts_canonical(default) {
            // The plugin's own default must fit its own definition.
            return abi::STATUS_INVALID;
        }
        let value = with_state(|s| {
            let key = (plugin.to_owned(), name.to_owned());
            if let Some(existing) = s.settings.map.get(&key) {
                if s.attach_init {
                    // Init running again in a child: the supervisor's value stands.
                    return Ok(existing.value.clone());
                }
                return Err(abi::STATUS_DUPLICATE);
            }
            if s.registry.is_frozen() || s.attach_init {
                return Err(abi::STATUS_FROZEN);
            }
            let configured = s.sections.get(plugin).and_then(|t| t.get(name)).cloned();
            let value = match configured {
                None => default.to_owned(),
                Some(v) => match kind.canonical(&v) {
                    Ok(c) => c,
                    Err(reason) => {
                        s.config_errors.push(format!(
                            "{}: plugins.{plugin}.{name}: {reason}",
                            s.config_file.display()
                        ));
                        return Err(abi::STATUS_BAD_VALUE);
                    }
                },
            };
            if value.len() > cap {
                // Not recorded yet: the plugin retries with a larger buffer, and that retry must
                // not look like a second definition.
                return Ok(value);
            }
            s.settings.map.insert(
                key,
                Setting {
                    kind,
                    reloadable: def.reloadable != 0,
                    default: default.to_owned(),
                    value: value.clone(),
                    description: description.to_owned(),
                },
            );
            Ok(value)
        });
        match value {
            // SAFETY: the plugin passes a buffer of `cap` bytes and a length out-pointer.
            Ok(v) => unsafe { write_out(&v, buf, cap, len) },
            Err(st) => st,
        }
    })
}

unsafe extern "C" fn host_get_setting(
    _ctx: *mut c_void,
    plugin: Str,
    name: Str,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> Status {
    guarded(|| {
        // SAFETY: views valid for the call.
        let (Some(plugin), Some(name)) = (unsafe { (text(plugin), text(name)) }) else {
            return abi::STATUS_BAD_NAME;
        };
        let v = with_state(|s| {
            s.settings
                .map
                .get(&(plugin.to_owned(), name.to_owned()))
                .map(|s| s.value.clone())
        });
        match v {
            // SAFETY: the plugin passes a buffer of `cap` bytes and a length out-pointer.
            Some(v) => unsafe { write_out(&v, buf, cap, len) },
            None => abi::STATUS_NOT_FOUND,
        }
    })
}

// issue 14: locks

unsafe extern "C" fn host_request_lock(_ctx: *mut c_void, plugin: Str, name: Str) -> Status {
    if attaching() {
        return abi::STATUS_OK;
    }
    guarded(|| {
        // SAFETY: views valid for the call.
        let (Some(plugin), Some(name)) = (unsafe { (text(plugin), text(name)) }) else {
            return abi::STATUS_BAD_NAME;
        };
        let l = crate::shared::registry::LockSpec {
            plugin: plugin.to_owned(),
            name: name.to_owned(),
        };
        register(|r| r.add_lock(l))
    })
}

unsafe extern "C" fn host_lock(_ctx: *mut c_void, plugin: Str, name: Str, cell: *mut *const c_void) -> Status {
    guarded(|| {
        if cell.is_null() {
            return abi::STATUS_INVALID;
        }
        // SAFETY: views valid for the call.
        let (Some(plugin), Some(name)) = (unsafe { (text(plugin), text(name)) }) else {
            return abi::STATUS_BAD_NAME;
        };
        // issue 15: isolated
        if crate::shared::isolation::active() {
            return abi::STATUS_ISOLATED;
        }
        let key = (plugin.to_owned(), name.to_owned());
        if let Some(addr) = LOCKS.get().and_then(|m| m.get(&key)) {
            // SAFETY: checked non-null above; the plugin owns it.
            unsafe { *cell = *addr as *const c_void };
            return abi::STATUS_OK;
        }
        // Requested but not mapped here (init, or a process without the segment), or unknown.
        if with_state(|s| s.registry.locks.iter().any(|l| l.plugin == plugin && l.name == name)) {
            abi::STATUS_UNAVAILABLE
        } else {
            abi::STATUS_NOT_FOUND
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 15: isolated
    /// The host checks the flags itself: a plugin that skips the SDK's checks cannot register an
    /// isolated worker that needs readiness, nor set a flag this host does not know.
    #[test]
    fn the_isolated_flag_is_known_and_refused_with_needs_ready() {
        let ext = |flags| abi::WorkerSpecExt {
            size: std::mem::size_of::<abi::WorkerSpecExt>() as u32,
            flags,
            start_after: std::ptr::null(),
            n_start_after: 0,
        };
        // SAFETY: each pointer is a live local with no names.
        let read = |e: &abi::WorkerSpecExt| unsafe { readiness_of(e) };
        assert_eq!(read(&ext(abi::WORKER_ISOLATED)), Some((false, vec![], false)));
        assert_eq!(read(&ext(abi::WORKER_NEEDS_READY)), Some((true, vec![], false)));
        assert_eq!(read(&ext(abi::WORKER_ISOLATED | abi::WORKER_NEEDS_READY)), None);
        // issue 14: notifications
        assert_eq!(
            read(&ext(abi::WORKER_STOP_WITH_LAUNCHER | abi::WORKER_NEEDS_READY)),
            Some((true, vec![], true))
        );
        assert_eq!(read(&ext(1 << 3)), None);
    }
}
