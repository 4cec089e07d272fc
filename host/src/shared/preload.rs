//! Loading plugins: find the file, check the header, run init, freeze the registry.
//!
//! Runs in: the supervisor at start-up ([`preload`]), and exec-mode children, which load the same
//! list again in the same order and run init in attach mode ([`attach`]).
//!
//! Invariants: plugins are loaded only from the configured `plugin_dir`, once each (by name and by
//! file identity), and never unloaded: a Rust cdylib with thread-local destructors can crash on
//! `dlclose`. No code of a plugin runs before its header checked out: magic, ABI major version,
//! header size, layout fingerprint, and its strings. After each init in the supervisor the
//! process still has exactly one thread, or start-up stops naming the plugin whose init started
//! one: the supervisor forks every child, and a fork of a multi-threaded process is unsound.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use steward::abi;

use crate::shared::config::Config;
use crate::shared::hostapi::{self, HostState};
use crate::shared::registry::{Registry, Settings};

/// A plugin loaded in this process.
pub struct LoadedPlugin {
    pub name: String,
    pub path: PathBuf,
    /// The file's identity (device, inode, size, mtime in ns) as seen before it was loaded: if the
    /// file at `path` differs now, this process holds code that is no longer there.
    pub file_id: FileId,
    pub version: String,
    pub sdk_version: String,
    lib: libloading::Library,
    init: unsafe extern "C" fn(*const abi::HostApi) -> abi::Status,
}

/// A file's identity: device, inode, size, modification time in nanoseconds.
pub type FileId = (u64, u64, u64, i64);

/// The identity of the file at `path` now, if it exists.
pub fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| id_of(&m))
}

fn id_of(m: &std::fs::Metadata) -> FileId {
    (m.dev(), m.ino(), m.size(), m.mtime() * 1_000_000_000 + m.mtime_nsec())
}

/// Every plugin loaded in this process, in preload order. Set once.
static PLUGINS: OnceLock<Vec<LoadedPlugin>> = OnceLock::new();

pub fn plugins() -> &'static [LoadedPlugin] {
    PLUGINS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// Why a plugin could not be loaded or initialised. Each message names the plugin and its file.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {name}: {path}: no such file (plugin_dir is {dir})", path = path.display(), dir = dir.display())]
    Missing { name: String, path: PathBuf, dir: PathBuf },
    #[error("plugin {name}: {path}: {reason}", path = path.display())]
    Refused {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("plugin {name}: init failed: {reason}")]
    InitFailed { name: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("plugin {name}: its init left the supervisor with {threads} threads; the supervisor forks every child and must stay single-threaded, so a plugin may start threads only in its workers")]
    StartedThread { name: String, threads: usize },
    #[error("the supervisor has {threads} threads before any plugin was loaded; it must be single-threaded to fork")]
    Threaded { threads: usize },
    #[error("worker {worker} (plugin {plugin}): {reason}")]
    Worker {
        worker: String,
        plugin: String,
        reason: String,
    },
}

fn refused(name: &str, path: &Path, reason: impl Into<String>) -> PluginError {
    PluginError::Refused {
        name: name.to_owned(),
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The bytes every version of a plugin header starts with: magic, ABI major and minor version,
/// header size.
const HEADER_PREFIX: u64 = 16;

/// The size the loaded library's symbol table gives the object that starts at `addr`, or `None`
/// when the dynamic linker cannot tell (no such symbol, or not glibc on a 64-bit target).
fn symbol_size(addr: *const std::ffi::c_void, name: &str) -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    {
        // From <dlfcn.h>: ask for the symbol-table entry; the libc crate does not name it.
        const RTLD_DL_SYMENT: libc::c_int = 1;
        // SAFETY: an all-zero `Dl_info` is valid (null pointers); dladdr1 only fills it and
        // `sym`, and reads no memory at `addr`.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let mut sym: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: as above; both out-parameters are live locals.
        let found = unsafe { libc::dladdr1(addr, &mut info, &mut sym, RTLD_DL_SYMENT) };
        // dladdr1 names the nearest symbol at or below `addr`: only one that starts there counts,
        // and only the header symbol itself (an alias at the same address may have another
        // size, or none).
        if found == 0 || sym.is_null() || info.dli_saddr.cast_const() != addr || info.dli_sname.is_null() {
            return None;
        }
        // SAFETY: dli_sname points to a NUL-terminated name in the library's string table, mapped
        // while the library is loaded.
        let sname = unsafe { std::ffi::CStr::from_ptr(info.dli_sname) };
        if sname.to_bytes() != name.as_bytes() {
            return None;
        }
        // SAFETY: with RTLD_DL_SYMENT, `sym` points to the symbol's `Elf64_Sym` in the library's
        // dynamic symbol table, mapped read-only while the library is loaded.
        let size = unsafe { (*(sym as *const libc::Elf64_Sym)).st_size };
        // A size of 0 means the symbol table does not say.
        (size != 0).then_some(size)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
    {
        let _ = (addr, name);
        None
    }
}

/// Reads a `'static` string from a header, bounded and checked.
///
/// # Safety
/// `s` must come from a header that passed the magic and size checks.
unsafe fn header_str(s: abi::Str) -> Option<String> {
    if s.len > 256 {
        return None;
    }
    // SAFETY: forwarded to the caller.
    unsafe { s.to_str() }.map(str::to_owned)
}

/// Opens and checks one plugin file without running any of its code.
pub fn open(cfg: &Config, name: &str) -> Result<LoadedPlugin, PluginError> {
    let path = cfg.plugin_path(name);
    let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PluginError::Missing {
            name: name.to_owned(),
            path: path.clone(),
            dir: cfg.plugin_dir.clone(),
        },
        _ => refused(name, &path, format!("cannot read: {e}")),
    })?;
    if !meta.is_file() {
        return Err(refused(name, &path, "not a regular file"));
    }
    let canon_dir = std::fs::canonicalize(&cfg.plugin_dir).unwrap_or_else(|_| cfg.plugin_dir.clone());
    let canon = std::fs::canonicalize(&path).map_err(|e| refused(name, &path, e.to_string()))?;
    if !canon.starts_with(&canon_dir) {
        return Err(refused(
            name,
            &path,
            format!("resolves to {}, outside plugin_dir", canon.display()),
        ));
    }
    // SAFETY: loading a library runs its ELF constructors. That is the point of a plugin host; the
    // file is the operator's choice, in the operator's plugin_dir. RTLD_LOCAL keeps its symbols
    // out of the global namespace.
    let lib = unsafe {
        libloading::os::unix::Library::open(
            Some(&path),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
        )
    }
    .map_err(|e| refused(name, &path, format!("cannot load: {e}")))?;
    let lib: libloading::Library = lib.into();
    // SAFETY: we only take the symbol's address here; it is read below after the magic check.
    let header: *const abi::PluginHeader =
        match unsafe { lib.get::<*const abi::PluginHeader>(abi::HEADER_SYMBOL.as_bytes()) } {
            Ok(sym) => *sym,
            Err(_) => {
                return Err(refused(
                    name,
                    &path,
                    format!("not a Steward plugin: it has no {} symbol", abi::HEADER_SYMBOL),
                ));
            }
        };
    // The symbol is the static itself, so its address is the header. Where the library's symbol
    // table gives its size, nothing is read past it.
    let sym_size = symbol_size(header.cast(), abi::HEADER_SYMBOL);
    if let Some(n) = sym_size.filter(|n| *n < HEADER_PREFIX) {
        return Err(refused(
            name,
            &path,
            format!("not a Steward plugin: {} is {n} bytes", abi::HEADER_SYMBOL),
        ));
    }
    // SAFETY: the symbol is at least 16 bytes, by its size above or, where the symbol table gives
    // none, as a plugin's header is; the magic is checked before any other field is read.
    let magic = unsafe { std::ptr::read_unaligned(header as *const [u8; 8]) };
    if magic != abi::PLUGIN_MAGIC {
        return Err(refused(
            name,
            &path,
            format!("not a Steward plugin: {} has the wrong magic bytes", abi::HEADER_SYMBOL),
        ));
    }
    // Every version of the header starts with the same 16 bytes: magic, ABI major and minor
    // version, header size. Only they are read until the size says the plugin's header holds all
    // of this host's fields; a shorter one may end where the symbol does.
    // SAFETY: the magic matched, so the symbol is a Steward header and has this prefix; each field
    // is read on its own, unaligned, through a raw pointer (no reference to the whole header yet).
    let (abi_major, abi_minor, header_size) = unsafe {
        (
            std::ptr::addr_of!((*header).abi_major).read_unaligned(),
            std::ptr::addr_of!((*header).abi_minor).read_unaligned(),
            std::ptr::addr_of!((*header).header_size).read_unaligned(),
        )
    };
    if abi_major != abi::ABI_MAJOR {
        return Err(refused(
            name,
            &path,
            format!(
                "built for plugin ABI {abi_major}.{abi_minor}, this host speaks ABI {}.{}: rebuild the plugin against this SDK",
                abi::ABI_MAJOR,
                abi::ABI_MINOR
            ),
        ));
    }
    if (header_size as usize) < std::mem::size_of::<abi::PluginHeader>() {
        return Err(refused(
            name,
            &path,
            format!(
                "header is {header_size} bytes, expected at least {}",
                std::mem::size_of::<abi::PluginHeader>()
            ),
        ));
    }
    if let Some(n) = sym_size.filter(|n| *n < u64::from(header_size)) {
        return Err(refused(
            name,
            &path,
            format!(
                "header says it is {header_size} bytes, but {} is {n}",
                abi::HEADER_SYMBOL
            ),
        ));
    }
    if !header.is_aligned() {
        return Err(refused(
            name,
            &path,
            format!("{} is not aligned as the ABI requires", abi::HEADER_SYMBOL),
        ));
    }
    // SAFETY: the header says it holds every field of this host's `PluginHeader`, and it is
    // aligned; it is the plugin's `'static`, alive while the library is loaded.
    let h = unsafe { &*header };
    if h.fingerprint != abi::LAYOUT_FINGERPRINT {
        return Err(refused(
            name,
            &path,
            format!(
                "ABI layout fingerprint {:#018x} differs from the host's {:#018x}: rebuild the plugin against this SDK",
                h.fingerprint,
                abi::LAYOUT_FINGERPRINT
            ),
        ));
    }
    // SAFETY: the header checked out; its strings are `'static` in the plugin.
    let (Some(pname), Some(version), Some(sdk)) =
        (unsafe { (header_str(h.name), header_str(h.version), header_str(h.sdk_version)) })
    else {
        return Err(refused(
            name,
            &path,
            "header strings are not valid UTF-8 or are too long",
        ));
    };
    if pname != name {
        return Err(refused(
            name,
            &path,
            format!("the file declares plugin name {pname:?}, expected {name:?}"),
        ));
    }
    for p in plugins() {
        if let Ok(m) = std::fs::metadata(&p.path) {
            if m.dev() == meta.dev() && m.ino() == meta.ino() {
                return Err(refused(name, &path, format!("same file as plugin {}", p.name)));
            }
        }
    }
    Ok(LoadedPlugin {
        name: name.to_owned(),
        path,
        file_id: id_of(&meta),
        version,
        sdk_version: sdk,
        init: h.init,
        lib,
    })
}

/// Calls a plugin's init and turns its status into a result.
fn run_init(p: &LoadedPlugin, mode: u32) -> Result<(), PluginError> {
    hostapi::with_state(|s| s.failure = None);
    let table = hostapi::table_for(mode);
    // SAFETY: the header checked out; init is the plugin's own exported function and the SDK's
    // wrapper catches panics. A plugin that lets one escape aborts the process (Rust's rule for
    // `extern "C"`), which start-up reports as a crash of `steward run`.
    let status = unsafe { (p.init)(table) };
    let (failure, config_errors) = hostapi::with_state(|s| (s.failure.take(), std::mem::take(&mut s.config_errors)));
    if !config_errors.is_empty() {
        return Err(PluginError::Config(config_errors.join("\n")));
    }
    match status {
        abi::STATUS_OK => Ok(()),
        abi::STATUS_PANICKED => Err(PluginError::InitFailed {
            name: p.name.clone(),
            reason: failure.unwrap_or_else(|| "init panicked".into()),
        }),
        st => Err(PluginError::InitFailed {
            name: p.name.clone(),
            reason: failure.unwrap_or_else(|| format!("init returned status {st}")),
        }),
    }
}

/// The supervisor's preload: load and init every plugin in order, then freeze the registry and
/// check what only the whole registry can tell (unknown setting keys, entry libraries).
pub fn preload(cfg: &Config) -> Result<(), PluginError> {
    hostapi::install(HostState {
        attach_init: false,
        registry: Registry::default(),
        settings: Settings::default(),
        config_file: cfg.path.clone(),
        sections: cfg.plugin_sections.clone(),
        config_errors: Vec::new(),
        failure: None,
        regions: Default::default(),
    });
    // `fork` copies only the calling thread: a lock another thread holds (in malloc, in the
    // plugin) stays locked forever in the child. So every init is followed by a thread count,
    // which names the plugin that broke the rule instead of letting a child hang later.
    match thread_count() {
        Some(threads) if threads > 1 => return Err(PluginError::Threaded { threads }),
        Some(_) => {}
        None => tracing::warn!(
            "cannot count the supervisor's threads (/proc/self/status is unreadable): a plugin whose init starts a thread will not be refused"
        ),
    }
    let mut loaded = Vec::new();
    for name in &cfg.preload_plugins {
        let p = open(cfg, name)?;
        tracing::debug!(
            "loaded plugin {} {} (SDK {}) from {}",
            p.name,
            p.version,
            p.sdk_version,
            p.path.display()
        );
        run_init(&p, abi::MODE_PRELOAD)?;
        match thread_count() {
            Some(threads) if threads > 1 => {
                return Err(PluginError::StartedThread {
                    name: p.name.clone(),
                    threads,
                })
            }
            _ => {}
        }
        loaded.push(p);
    }
    let _ = PLUGINS.set(loaded);
    hostapi::with_state(|s| {
        s.registry.freeze();
        check_frozen(cfg, &s.registry, &s.settings)
    })
}

/// The number of threads of this process, from the kernel (`/proc/self/status`, `Threads:`);
/// `None` where `/proc` is not mounted, and then the check cannot be made.
pub fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_threads(&status)
}

fn parse_threads(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn check_frozen(cfg: &Config, reg: &Registry, settings: &Settings) -> Result<(), PluginError> {
    // issue 15: connections
    // A listener whose handler is missing or cannot run stops start-up, naming the listener.
    for (i, l) in cfg.listeners.iter().enumerate() {
        let fail = |reason: String| {
            PluginError::Config(format!(
                "{}: {}: handler \"{}.{}\": {reason}",
                cfg.path.display(),
                l.describe(i),
                l.plugin,
                l.handler
            ))
        };
        let Some(h) = reg.handler(&l.plugin, &l.handler) else {
            let known: Vec<String> = reg
                .handlers
                .iter()
                .map(|h| format!("{}.{}", h.plugin, h.name))
                .collect();
            return Err(fail(format!(
                "no plugin registered it (registered handlers: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        };
        resolve_connection_entry(&h.library, &h.function, false).map_err(&fail)?;
        if let Some(r) = &h.reject {
            resolve_connection_entry(&h.library, r, true).map_err(&fail)?;
        }
    }
    for (plugin, table) in &cfg.plugin_sections {
        for key in table.keys() {
            if !settings.map.contains_key(&(plugin.clone(), key.clone())) {
                let defined: Vec<&str> = settings
                    .map
                    .keys()
                    .filter(|(p, _)| p == plugin)
                    .map(|(_, n)| n.as_str())
                    .collect();
                return Err(PluginError::Config(format!(
                    "{}: plugins.{plugin}.{key}: unknown key (plugin {plugin} defines: {})",
                    cfg.path.display(),
                    if defined.is_empty() {
                        "nothing".to_owned()
                    } else {
                        defined.join(", ")
                    }
                )));
            }
        }
    }
    for h in &reg.hooks {
        if !cfg.preload_plugins.contains(&h.library) {
            return Err(PluginError::Config(format!(
                "startup hook {} (plugin {}): entry library {:?} is not in preload_plugins",
                h.name, h.plugin, h.library
            )));
        }
    }
    // issue 14: segment init
    for h in &reg.segment_inits {
        if !cfg.preload_plugins.contains(&h.library) {
            return Err(PluginError::Config(format!(
                "segment init hook {} (plugin {}): entry library {:?} is not in preload_plugins",
                h.name, h.plugin, h.library
            )));
        }
    }
    // issue 14: readiness
    reg.check_start_after().map_err(|e| PluginError::Worker {
        worker: e.worker,
        plugin: e.plugin,
        reason: e.reason,
    })?;
    for w in &reg.workers {
        if !cfg.preload_plugins.contains(&w.library) {
            return Err(PluginError::Worker {
                worker: w.name.clone(),
                plugin: w.plugin.clone(),
                reason: format!("entry library {:?} is not in preload_plugins", w.library),
            });
        }
    }
    Ok(())
}

/// An exec-mode child's preload: the same files in the same order, init in attach mode, with the
/// supervisor's frozen registry and settings already in place.
pub fn attach(cfg: &Config, registry: Registry, settings: Settings) -> Result<(), PluginError> {
    hostapi::install(HostState {
        attach_init: true,
        registry,
        settings,
        config_file: cfg.path.clone(),
        sections: cfg.plugin_sections.clone(),
        config_errors: Vec::new(),
        failure: None,
        regions: Default::default(),
    });
    hostapi::set_attach_init(true);
    let mut loaded = Vec::new();
    for name in &cfg.preload_plugins {
        let p = open(cfg, name)?;
        run_init(&p, abi::MODE_ATTACH)?;
        loaded.push(p);
    }
    let _ = PLUGINS.set(loaded);
    hostapi::set_attach_init(false);
    Ok(())
}

/// A checked worker entry, ready to call.
pub type EntryFn = unsafe extern "C" fn(*const abi::WorkerApi) -> i32;

/// Finds `function` in the loaded `library` and checks that it is a Steward worker entry.
///
/// Results are remembered for the life of the process (libraries are never unloaded, so a
/// result cannot change). The fork-mode supervisor resolves each entry before it forks the
/// worker, so a forked child finds the answer in memory instead of searching the libraries'
/// symbol tables, which would make every launch fault in the dynamic loader's pages.
pub fn resolve_entry(library: &str, function: &str) -> Result<EntryFn, String> {
    /// (library, function, result) for every entry resolved so far.
    type Resolved = Vec<(String, String, Result<EntryFn, String>)>;
    static RESOLVED: Mutex<Resolved> = Mutex::new(Vec::new());
    let mut resolved = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, r)) = resolved.iter().find(|(l, f, _)| l == library && f == function) {
        return r.clone();
    }
    let r = resolve(
        library,
        function,
        abi::ENTRY_SYMBOL_PREFIX,
        abi::ENTRY_MAGIC,
        "worker entry",
        "steward::worker_entry!",
    );
    resolved.push((library.to_owned(), function.to_owned(), r.clone()));
    r
}

/// Finds startup hook `function` in the loaded `library` and checks its descriptor.
pub fn resolve_hook(library: &str, function: &str) -> Result<EntryFn, String> {
    resolve(
        library,
        function,
        abi::HOOK_SYMBOL_PREFIX,
        abi::HOOK_MAGIC,
        "startup hook",
        "steward::startup_hook!",
    )
}

// issue 14: segment init
/// Finds segment init hook `function` in the loaded `library` and checks its descriptor.
pub fn resolve_segment_init(library: &str, function: &str) -> Result<EntryFn, String> {
    resolve(
        library,
        function,
        abi::SEGINIT_SYMBOL_PREFIX,
        abi::SEGINIT_MAGIC,
        "segment init hook",
        "steward::segment_init!",
    )
}

// issue 15: connections
/// Finds connection handler `function` in the loaded `library` (or, with `reject`, a rejection
/// writer) and checks its descriptor.
pub fn resolve_connection_entry(library: &str, function: &str, reject: bool) -> Result<EntryFn, String> {
    match reject {
        false => resolve(
            library,
            function,
            abi::CONN_SYMBOL_PREFIX,
            abi::CONN_MAGIC,
            "connection handler",
            "steward::connection_entry!",
        ),
        true => resolve(
            library,
            function,
            abi::REJECT_SYMBOL_PREFIX,
            abi::REJECT_MAGIC,
            "rejection writer",
            "steward::rejection_entry!",
        ),
    }
}

fn resolve(
    library: &str,
    function: &str,
    prefix: &str,
    magic_want: [u8; 8],
    what: &str,
    export: &str,
) -> Result<EntryFn, String> {
    let Some(p) = plugins().iter().find(|p| p.name == library) else {
        return Err(format!("entry library {library:?} is not loaded"));
    };
    let sym = format!("{prefix}{function}");
    // SAFETY: only the address is taken; the descriptor is validated before `run` is used.
    let entry: *const abi::WorkerEntry = match unsafe { p.lib.get::<*const abi::WorkerEntry>(sym.as_bytes()) } {
        Ok(s) => *s,
        Err(_) => {
            // SAFETY: only probing whether the plain symbol exists; it is never called.
            let plain = unsafe { p.lib.get::<*const u8>(function.as_bytes()) }.is_ok();
            return Err(if plain {
                format!(
                    "function {function:?} in library {library:?} ({}) is not a Steward {what} (export it with {export})",
                    p.path.display()
                )
            } else {
                format!(
                    "function {function:?} not found in library {library:?} ({})",
                    p.path.display()
                )
            });
        }
    };
    // SAFETY: the symbol named with our prefix is read as a descriptor; magic first.
    let magic = unsafe { std::ptr::read_unaligned(entry as *const [u8; 8]) };
    if magic != magic_want {
        return Err(format!(
            "symbol {sym} in library {library:?} is not a Steward {what} (bad magic)"
        ));
    }
    // SAFETY: the magic matched.
    let e = unsafe { &*entry };
    if e.abi_major != abi::ABI_MAJOR || e.fingerprint != abi::LAYOUT_FINGERPRINT {
        return Err(format!(
            "{what} {function:?} in library {library:?} was built for another ABI"
        ));
    }
    Ok(e.run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    fn a_symbols_size_comes_from_the_symbol_table_and_only_for_its_start() {
        // SAFETY: dlsym only looks the name up.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) };
        assert!(!f.is_null());
        // glibc may name the entry by an alias of the same function.
        let size = |addr| symbol_size(addr, "getpid").or_else(|| symbol_size(addr, "__getpid"));
        assert!(size(f).is_some_and(|n| n > 0), "{:?}", size(f));
        // Another symbol's name at that address: not this symbol's size.
        assert_eq!(symbol_size(f, abi::HEADER_SYMBOL), None);
        // Inside the symbol, not at its start: unknown.
        assert_eq!(size(f.cast::<u8>().wrapping_add(1).cast()), None);
        let local = 0u64;
        assert_eq!(size((&local as *const u64).cast()), None);
    }

    #[test]
    fn reads_the_thread_count() {
        assert_eq!(parse_threads("Name:\tsteward\nThreads:\t3\nSigQ:\t0/1\n"), Some(3));
        assert_eq!(parse_threads("Name:\tsteward\n"), None);
        assert!(thread_count().is_some_and(|n| n >= 1));
    }
}
