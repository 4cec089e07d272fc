//! The [`Registrar`]: the capability to register workers, startup hooks, regions and locks and to
//! define settings, which exists only while a plugin's init runs.
//!
//! Runs in: a plugin, in its init. Every call goes through the host's table; the host freezes its
//! registry after init, so a call after that fails with [`RegisterError::RegistryFrozen`].

use std::time::Duration;

use crate::abi;
use crate::background_worker::{register_with, valid_name, BackgroundWorker, EntryPoint, RegisterError};
use crate::connection::ConnectionHandler;
use crate::settings::{self, SettingError, SettingValue};

/// The capability to register things, which exists only while your init runs.
pub struct Registrar<'init> {
    pub(crate) host: &'init abi::HostApi,
    pub(crate) plugin: &'static str,
    /// Whether settings defined now may change on reload (see [`Registrar::restart_only`]).
    pub(crate) reloadable: bool,
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
    ///
    /// [`startup_hook!`]: crate::startup_hook!
    /// [`entry!`]: crate::entry!
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

    // issue 14: segment init
    /// Registers a segment init hook: `entry` (exported with [`segment_init!`], named with
    /// [`entry!`]) runs in the startup child on every new shared-memory segment (at start-up and
    /// after each crash reset), before the startup hooks and before any worker of any start time
    /// starts, so it is the place to give this plugin's regions their initial values. Init hooks
    /// run in registration order; one that fails (an `Err` or a panic) stops the host, naming it.
    /// The hook is named after its function. On a host older than ABI 1.1 this fails with
    /// [`RegisterError::Other`] and [`abi::STATUS_UNAVAILABLE`].
    ///
    /// [`segment_init!`]: crate::segment_init!
    /// [`entry!`]: crate::entry!
    pub fn on_segment_init(&mut self, entry: EntryPoint) -> Result<(), RegisterError> {
        let h = self.host;
        let end = std::mem::offset_of!(abi::HostApi, register_segment_init) + std::mem::size_of::<usize>();
        if !h.has(end) {
            return Err(RegisterError::Other(abi::STATUS_UNAVAILABLE));
        }
        let library = entry.library.as_deref().unwrap_or("");
        // SAFETY: the table comes from the host and has the field (checked above); the strings
        // outlive the call.
        let st = unsafe {
            (h.register_segment_init)(
                h.ctx,
                abi::Str::new(self.plugin),
                abi::Str::new(&entry.function),
                abi::Str::new(library),
                abi::Str::new(&entry.function),
            )
        };
        match st {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_FROZEN => Err(RegisterError::RegistryFrozen),
            abi::STATUS_DUPLICATE => Err(RegisterError::DuplicateName(entry.function)),
            abi::STATUS_BAD_NAME | abi::STATUS_INVALID => Err(RegisterError::BadEntry {
                library: library.to_owned(),
                function: entry.function,
            }),
            other => Err(RegisterError::Other(other)),
        }
    }

    // issue 15: connections
    /// Registers a connection handler `name` served by `serve` (exported with
    /// [`connection_entry!`], named with [`entry!`]); a `[[listen]]` table of the config names
    /// it `plugin.name`. [`Registrar::register_handler`] takes a [`ConnectionHandler`] with a
    /// rejection writer.
    ///
    /// [`connection_entry!`]: crate::connection_entry!
    /// [`entry!`]: crate::entry!
    pub fn register_connection_handler(&mut self, name: &str, serve: EntryPoint) -> Result<(), RegisterError> {
        self.register_handler(ConnectionHandler::new(name, serve))
    }

    /// Registers a connection handler built with [`ConnectionHandler`]. On a host without
    /// connection handlers this fails with [`RegisterError::Other`] and
    /// [`abi::STATUS_UNAVAILABLE`].
    pub fn register_handler(&mut self, h: ConnectionHandler) -> Result<(), RegisterError> {
        let host = self.host;
        let end = std::mem::offset_of!(abi::HostApi, register_connection_handler) + std::mem::size_of::<usize>();
        if !host.has(end) {
            return Err(RegisterError::Other(abi::STATUS_UNAVAILABLE));
        }
        if !valid_name(&h.name, abi::MAX_NAME_LEN) {
            return Err(RegisterError::BadName(h.name));
        }
        let library = h.serve.library.as_deref().unwrap_or("");
        let reject = h.reject.as_ref().map_or("", |r| r.function.as_str());
        let spec = abi::HandlerSpec {
            size: std::mem::size_of::<abi::HandlerSpec>() as u32,
            // issue 15: isolated handlers
            flags: if h.isolated { abi::HANDLER_ISOLATED } else { 0 },
            name: abi::Str::new(&h.name),
            library: abi::Str::new(library),
            function: abi::Str::new(&h.serve.function),
            reject_function: abi::Str::new(reject),
        };
        // SAFETY: the table comes from the host and has the field (checked above); the spec and
        // its strings outlive the call.
        let st = unsafe { (host.register_connection_handler)(host.ctx, abi::Str::new(self.plugin), &spec) };
        match st {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_FROZEN => Err(RegisterError::RegistryFrozen),
            abi::STATUS_DUPLICATE => Err(RegisterError::DuplicateName(h.name)),
            abi::STATUS_BAD_NAME => Err(RegisterError::BadName(h.name)),
            abi::STATUS_INVALID => Err(RegisterError::BadEntry {
                library: library.to_owned(),
                function: h.serve.function,
            }),
            other => Err(RegisterError::Other(other)),
        }
    }

    /// Requests a named shared-memory region of `size` bytes, zeroed whenever the host creates its
    /// segment (at start and after every crash reset). Workers look it up with [`Worker::region`].
    ///
    /// [`Worker::region`]: crate::Worker::region
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

    /// Requests a named lock in shared memory, taken shared or exclusive by any worker of the host
    /// with [`Worker::lock`]. Lock names are this plugin's own (another plugin's lock of the same
    /// name is another lock). The host creates every lock free with each new segment, at start
    /// and after every crash reset.
    ///
    /// [`Worker::lock`]: crate::Worker::lock
    pub fn request_lock(&mut self, name: &str) -> Result<(), RegisterError> {
        let (plugin, owned) = (self.plugin.to_owned(), name.to_owned());
        if !valid_name(name, abi::MAX_LOCK_NAME_LEN) {
            return Err(RegisterError::BadLockName { plugin, name: owned });
        }
        if !crate::lock::host_api_has_locks(self.host) {
            return Err(RegisterError::LocksNotSupported { plugin, name: owned });
        }
        // SAFETY: the table comes from the host (its size checked above); the strings outlive
        // the call.
        let st = unsafe { (self.host.request_lock)(self.host.ctx, abi::Str::new(self.plugin), abi::Str::new(name)) };
        match st {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_FROZEN => Err(RegisterError::RegistryFrozen),
            abi::STATUS_DUPLICATE => Err(RegisterError::DuplicateLock { plugin, name: owned }),
            abi::STATUS_BAD_NAME => Err(RegisterError::BadLockName { plugin, name: owned }),
            status => Err(RegisterError::LockRefused {
                plugin,
                name: owned,
                status,
            }),
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
