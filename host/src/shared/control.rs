//! The control protocol (version 1): its messages, the status and reload types both ends share,
//! and the client.
//!
//! Runs in: clients (the CLI and the tests, through [`Client`]), connection children (which serve
//! the protocol: `child::connection` parses requests and builds answers from the segment), and the
//! supervisor (which publishes a [`HostInfoDoc`] for them and keeps [`ReloadReport`]s).
//!
//! One JSON object per line each way. A request is `{"v": 1, "cmd": "status"}`,
//! `{"v": 1, "cmd": "stop", "mode": "smart" | "fast" | "immediate"}`,
//! `{"v": 1, "cmd": "reload", "config": "/canonical/path"}` (`config` optional) or
//! `{"v": 1, "cmd": "show", "name": "host.log_level"}` (`name` optional),
//! `{"v": 1, "cmd": "launch", "plugin": "p", "entry": "f", "name": "n", "arg": 0, "restart":
//! "never" | "5s", "wait": false, "timeout_ms": 10000}` (all but the first three optional) or
//! `{"v": 1, "cmd": "terminate", "name": "n", "wait": false, "timeout_ms": 10000}`; every answer is
//! `{"v": 1, "ok": true, "result": ...}` or `{"v": 1, "ok": false, "error": "..."}`. A server that
//! refuses a connection (too many connections, shutting down, wrong user) sends one error line and
//! closes. Fields may be added in later versions; none is renamed. A field of the wrong type is
//! refused, never read as absent.

use serde::{Deserialize, Serialize};

mod client;

pub use client::{Client, ClientError, Launch, Launched, Terminated};

/// Kept here too: the control socket's name is part of the control protocol's contract.
pub use crate::shared::config::SOCKET_NAME;
pub const PROTOCOL_VERSION: u64 = 1;
/// Connection slots beyond `max_connections`, kept for `status` and `stop` (PostgreSQL's
/// `superuser_reserved_connections`): a connection that gets one is refused anything else.
pub const RESERVED_CONNECTIONS: u32 = 1;

/// Host states live with the other shared-memory codes; clients and the CLI name them here.
pub use crate::shared::protocol::HostState;

/// `steward status --json`: the host and every worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub host: HostInfo,
    pub workers: Vec<WorkerInfo>,
    /// The plugins the host loaded, in `preload_plugins` order.
    #[serde(default)]
    pub plugins: Vec<PluginInfo>,
    /// What the last reload (over the control socket or by SIGHUP) did; null before the first.
    #[serde(default)]
    pub last_reload: Option<ReloadReport>,
    /// Keys whose value in the file differs from the running one and waits for a restart (as of
    /// the last reload that was applied).
    #[serde(default)]
    pub pending_restart: Vec<String>,
    // issue 15: status listeners
    /// The plugins' listeners (`[[listen]]`), in the file's order.
    #[serde(default)]
    pub listeners: Vec<ListenerInfo>,
}

// issue 15: status listeners
/// One `[[listen]]` listener in `status`: where it listens, whose handler serves it, and how
/// many of its clients are served now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListenerInfo {
    /// `unix <path>` or `tcp <addr:port>`: the path as resolved, the address as bound.
    pub address: String,
    /// `plugin.name`.
    pub handler: String,
    /// The handler runs isolated: its client children map shared memory read-only, and a crash
    /// ends only its own connection.
    #[serde(default)]
    pub isolated: bool,
    /// Most clients served at once through this listener.
    pub max_connections: u32,
    /// Clients a client child serves now through this listener (a session open, or just ended
    /// and its child not yet reaped).
    #[serde(default)]
    pub open: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub file: String,
}

/// One problem with a configuration file: the file, the key when the problem has one, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigProblem {
    pub file: String,
    #[serde(default)]
    pub key: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: {k}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl From<&crate::shared::config::ConfigError> for ConfigProblem {
    fn from(e: &crate::shared::config::ConfigError) -> ConfigProblem {
        ConfigProblem {
            file: e.file.display().to_string(),
            key: e.key.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// The verdict of one reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReloadReport {
    /// When the reload finished (RFC 3339).
    pub at: String,
    /// `applied` or `refused`.
    pub outcome: String,
    /// The file the host read.
    pub file: String,
    /// Keys whose new values took effect.
    #[serde(default)]
    pub applied: Vec<String>,
    /// Keys whose new values wait for a restart.
    #[serde(default)]
    pub pending_restart: Vec<String>,
    /// Why the file was refused: every problem found.
    #[serde(default)]
    pub errors: Vec<ConfigProblem>,
}

impl ReloadReport {
    pub fn applied(&self) -> bool {
        self.outcome == "applied"
    }
}

/// One setting of the running host, as `steward show` lists it (PostgreSQL's `pg_settings`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SettingInfo {
    /// `host.<key>` or `plugins.<plugin>.<key>`.
    pub name: String,
    /// The running value.
    pub value: String,
    pub default: String,
    /// Where the running value came from: `default`, `file` or `command line`.
    pub source: String,
    /// `reload` (a reload applies a new value) or `restart`.
    pub context: String,
    /// The file has another value that waits for a restart.
    pub pending_restart: bool,
    #[serde(default)]
    pub description: String,
}

/// What the supervisor publishes about its configuration (in the segment's header, for
/// connection children to answer `status`, `reload` and `show` from).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostInfoDoc {
    pub config_file: String,
    pub plugins: Vec<PluginInfo>,
    pub settings: Vec<SettingInfo>,
    /// Set when the settings did not fit in the space the segment has for this document.
    #[serde(default)]
    pub settings_omitted: bool,
    pub last_reload: Option<ReloadReport>,
    pub pending_restart: Vec<String>,
    // issue 14: queue
    /// Dynamic worker slots reserved per plugin (`reserved_worker_slots`).
    #[serde(default)]
    pub reserved_worker_slots: std::collections::BTreeMap<String, u32>,
    // issue 15: status listeners
    /// The listeners, in the file's order, with `open` 0: a connection child counts it from the
    /// client child slots.
    #[serde(default)]
    pub listeners: Vec<ListenerInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    pub state: String,
    pub pid: u32,
    pub launch_mode: String,
    pub started_at: String,
    /// How many times the segment was created (1 at start, +1 per crash reset).
    pub generation: u64,
    pub shmem_bytes: u64,
    pub slots: Slots,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slots {
    /// Every worker slot: the registered workers' and `max_worker_processes` more.
    pub workers: u32,
    /// `max_connections`: the slots any request may use.
    pub connections: u32,
    /// Slots beyond those for `status` and `stop` only.
    #[serde(default)]
    pub reserved_connections: u32,
    /// Control connections open now, the one asking included.
    #[serde(default)]
    pub connections_in_use: u32,
    /// Of `workers`, the slots reserved for dynamic workers (`max_worker_processes`).
    #[serde(default)]
    pub dynamic_workers: u32,
    // issue 14: queue
    /// Dynamic-worker requests waiting for a free slot (`.queue_timeout(d)`).
    #[serde(default)]
    pub queued: u32,
    /// Of `dynamic_workers`, the slots reserved per plugin (`reserved_worker_slots`).
    #[serde(default)]
    pub reserved: std::collections::BTreeMap<String, u32>,
    // issue 15: connection benchmarks
    /// Child slots for plugins' clients (`max_client_connections`; 0 without listeners).
    #[serde(default)]
    pub clients: u32,
    /// Of `clients`, the slots a client child holds now (a session open or just ended and not
    /// yet reaped).
    #[serde(default)]
    pub clients_in_use: u32,
    // issue 15: client spares
    /// Spare children waiting now, plugins loaded, for a worker or a client to be handed them
    /// (at most 2; fewer while the pool is being refilled).
    #[serde(default)]
    pub spares_waiting: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub worker_type: String,
    pub plugin: String,
    pub function: String,
    pub pid: Option<i32>,
    pub state: String,
    pub started_at: Option<String>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    #[serde(default)]
    pub next_restart_at: Option<String>,
    /// Microseconds from the launch decision to the entry being called: for the running process
    /// once its entry runs, else for the last process of this worker that got there.
    #[serde(default)]
    pub launch_us: Option<u64>,
    /// The last few exits, newest first.
    #[serde(default)]
    pub exits: Vec<LastExit>,
    /// When start time: `host_start`, `consistent` or `running`.
    #[serde(default)]
    pub start_time: String,
    /// For a worker not started yet because the host has not reached its start time: the state
    /// it waits for (`consistent` or `running`); else null.
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// The line the worker's running process last gave with `set_activity` (bounded, one line);
    /// null when it gave none or has no running process.
    #[serde(default)]
    pub activity: Option<String>,
    // issue 14: control
    /// Launched at run time (a dynamic worker) rather than registered in a plugin's init.
    #[serde(default)]
    pub dynamic: bool,
    /// The worker slot it occupies.
    #[serde(default)]
    pub slot: u32,
    /// Its generation, which tells it from the slot's other tenants: with `slot`, its handle.
    #[serde(default)]
    pub generation: u64,
    /// Who launched a dynamic worker: the launching worker's name, or `control` (`steward
    /// launch`); null for a static worker.
    #[serde(default)]
    pub launcher: Option<String>,
    // issue 15: isolated
    /// Whether the worker runs isolated: no writable shared memory, and its crash restarts only
    /// itself.
    #[serde(default)]
    pub isolated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastExit {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signal: Option<i32>,
    pub at: String,
    pub reason: String,
}

/// Shutdown modes (PostgreSQL's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopMode {
    Smart,
    Fast,
    Immediate,
}

impl StopMode {
    pub fn parse(s: &str) -> Option<StopMode> {
        match s {
            "smart" => Some(StopMode::Smart),
            "fast" => Some(StopMode::Fast),
            "immediate" => Some(StopMode::Immediate),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
    /// The signal that asks the supervisor for this mode.
    pub fn signal(self) -> nix::sys::signal::Signal {
        match self {
            StopMode::Smart => nix::sys::signal::Signal::SIGTERM,
            StopMode::Fast => nix::sys::signal::Signal::SIGINT,
            StopMode::Immediate => nix::sys::signal::Signal::SIGQUIT,
        }
    }
}
