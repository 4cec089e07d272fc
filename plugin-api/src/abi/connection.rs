//! The ABI of connection handlers (issue 15: connections): their descriptors' magic and symbol
//! prefixes, the registration struct, and the admission states a handler or a rejection writer
//! is told about.
//!
//! Runs in: both the host and every plugin, as the rest of [`crate::abi`]. Append only: new
//! fields go at the end of [`HandlerSpec`], which carries its own size and is kept out of the
//! layout fingerprint for that reason.

use super::Str;

/// Magic bytes of a connection handler's descriptor (a [`super::WorkerEntry`] run by a client
/// child).
pub const CONN_MAGIC: [u8; 8] = *b"STWCONN\x01";
/// Magic bytes of a rejection writer's descriptor (a [`super::WorkerEntry`] run by a dead-end
/// child).
pub const REJECT_MAGIC: [u8; 8] = *b"STWREJCT";
/// Connection handlers are exported with this prefix followed by the function's name.
pub const CONN_SYMBOL_PREFIX: &str = "steward_connection_entry__";
/// Rejection writers are exported with this prefix followed by the function's name.
pub const REJECT_SYMBOL_PREFIX: &str = "steward_rejection_entry__";

/// A connection handler as a plugin registers it, through
/// [`super::HostApi::register_connection_handler`].
#[repr(C)]
pub struct HandlerSpec {
    /// `size_of::<HandlerSpec>()` as the plugin was built.
    pub size: u32,
    /// [`HANDLER_ISOLATED`]; a bit the host does not know is refused.
    pub flags: u32,
    /// The handler's name, unique within the plugin; a listener names it `plugin.name`.
    pub name: Str,
    /// The library holding the entries; empty means the registering plugin.
    pub library: Str,
    /// The handler's function, exported with `connection_entry!`.
    pub function: Str,
    /// The rejection writer's function, exported with `rejection_entry!`; empty: none (the host
    /// writes a default line).
    pub reject_function: Str,
}

/// The size of [`HandlerSpec`] as it was first defined: the least a host accepts.
pub const HANDLER_SPEC_SIZE_1: usize = 8 + 4 * std::mem::size_of::<Str>();
const _: () = assert!(std::mem::size_of::<HandlerSpec>() >= HANDLER_SPEC_SIZE_1);

// issue 15: isolated handlers
/// [`HandlerSpec::flags`]: the handler's client children map no writable shared memory and hold
/// no dead-man flag, and a crash of one ends only its own connection (never a host reset).
pub const HANDLER_ISOLATED: u32 = 1 << 0;

/// Admission states, as a connection handler or a rejection writer is told them: the client is
/// served.
pub const ADMIT_OK: u32 = 0;
/// The listener's `max_connections` or the host's `max_client_connections` is reached.
pub const ADMIT_TOO_MANY: u32 = 1;
/// The host is starting: not running yet.
pub const ADMIT_STARTING: u32 = 2;
/// The host is shutting down.
pub const ADMIT_SHUTTING_DOWN: u32 = 3;
/// The host is resetting shared memory after a crash.
pub const ADMIT_RECOVERING: u32 = 4;
