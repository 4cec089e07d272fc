//! The control protocol (version 1) and its client.
//!
//! Runs in: connection children (the server side: [`status_from_segment`], [`serve_reload`],
//! [`serve_show`]) and clients (the CLI and tests, [`Client`], and the `format_*` functions that
//! print answers).
//!
//! One JSON object per line each way. A request is `{"v": 1, "cmd": "status"}`,
//! `{"v": 1, "cmd": "stop", "mode": "smart" | "fast" | "immediate"}`,
//! `{"v": 1, "cmd": "reload", "config": "/canonical/path"}` (`config` optional) or
//! `{"v": 1, "cmd": "show", "name": "host.log_level"}` (`name` optional); every answer is
//! `{"v": 1, "ok": true, "result": ...}` or `{"v": 1, "ok": false, "error": "..."}`. A server that
//! refuses a connection (too many connections, shutting down, wrong user) sends one error line and
//! closes. Fields may be added in later versions; none is renamed. A field of the wrong type is
//! refused, never read as absent.
//!
//! What the server answers from is in the segment, written by the supervisor and writable by any
//! child: it is parsed as untrusted input, and a garbled document makes an error answer, not a
//! crash.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::protocol::DecodeError;
use crate::shared::registry::StartTime;
use crate::shared::shmem::Segment;
use crate::shared::time::rfc3339_ms;

/// Kept here too: the control socket's name is part of the control protocol's contract.
pub use crate::shared::config::SOCKET_NAME;
pub const PROTOCOL_VERSION: u64 = 1;
/// The longest request line a server reads.
pub const MAX_LINE: usize = 64 * 1024;
/// How long a connection child waits for each request before it closes the connection, so idle
/// clients cannot hold every connection slot (PostgreSQL's `authentication_timeout`; decision 61).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
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
}

/// Reads the supervisor's published document. Every byte of the segment is writable by every
/// child, so the document is parsed as untrusted input.
pub fn info_from_segment(seg: &Segment) -> Result<HostInfoDoc, String> {
    let bytes = seg
        .header()
        .info
        .read()
        .ok_or("the host was writing its settings for too long")?;
    if bytes.is_empty() {
        return Err("the host has not published its settings".into());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the host's published settings are unreadable: {e}"))
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

fn last_exit(e: ExitStatus, at: u64, reason: String) -> LastExit {
    let (code, signal) = match e {
        ExitStatus::Code(c) => (Some(c), None),
        ExitStatus::Signal(s) => (None, Some(s)),
    };
    LastExit {
        code,
        signal,
        at: rfc3339_ms(at),
        reason,
    }
}

/// The host state a worker that has not started is waiting for, if any.
fn waiting_for(start: StartTime, host: HostState, state: WorkerState) -> Option<&'static str> {
    if !matches!(state, WorkerState::NotStarted | WorkerState::WaitingRestart) {
        return None;
    }
    match (start, host) {
        (StartTime::Consistent, HostState::Init | HostState::Startup) => Some("consistent"),
        (StartTime::Running, HostState::Init | HostState::Startup | HostState::Consistent) => Some("running"),
        _ => None,
    }
}

/// What status shows for a value the segment holds under a code nobody writes: plainly not a
/// state, so no operator mistakes it for one.
fn unreadable(e: &DecodeError) -> String {
    format!("unreadable ({e})")
}

/// Builds the status answer from the segment (connection children; the supervisor publishes
/// everything there). The count of slots comes from this process's own layout; every code is
/// decoded through [`crate::shared::protocol`], and one that is not known shows as `unreadable (...)`.
pub fn status_from_segment(seg: &Segment) -> Status {
    let h = seg.header();
    let host_state = h.host_state();
    let mut workers = Vec::new();
    for i in 0..seg.layout.n_worker_slots {
        let s = seg.worker_slot(i);
        if s.in_use.load(Ordering::Acquire) == 0 {
            continue;
        }
        let start = s.start_time();
        let mut info = WorkerInfo {
            name: s.name.load(),
            worker_type: s.worker_type.load(),
            plugin: s.plugin.load(),
            function: s.function.load(),
            pid: None,
            state: String::new(),
            started_at: None,
            restarts: 0,
            last_exit: None,
            exits: Vec::new(),
            start_time: start.map_or_else(|e| unreadable(&e), |t| t.as_str().to_owned()),
            waiting_for: None,
            next_restart_at: None,
            launch_us: None,
        };
        match s.status.read() {
            Ok(st) => {
                info.waiting_for = match (start, host_state) {
                    (Ok(start), Ok(host)) => waiting_for(start, host, st.state).map(str::to_owned),
                    _ => None,
                };
                info.launch_us = st
                    .pid
                    .and_then(|_| seg.child_slot(i).report().launch_us)
                    .or(st.last_launch_us);
                info.pid = st.pid;
                info.state = st.state.as_str().to_owned();
                info.started_at = st.started_at_ms.map(rfc3339_ms);
                info.restarts = st.restarts;
                info.last_exit = st.last_exit.map(|(e, at, reason)| last_exit(e, at, reason));
                info.exits = st
                    .history
                    .into_iter()
                    .map(|(e, at, reason)| last_exit(e, at, reason))
                    .collect();
                info.next_restart_at = st.next_restart_at_ms.map(rfc3339_ms);
            }
            Err(e) => info.state = unreadable(&e),
        }
        workers.push(info);
    }
    let info = info_from_segment(seg).unwrap_or_default();
    Status {
        plugins: info.plugins,
        last_reload: info.last_reload,
        pending_restart: info.pending_restart,
        host: HostInfo {
            state: host_state.map_or_else(|e| unreadable(&e), |s| s.as_str().to_owned()),
            pid: h.host_pid.load(Ordering::Relaxed),
            launch_mode: h
                .launch_mode()
                .map_or_else(|e| unreadable(&e), |m| m.as_str().to_owned()),
            started_at: rfc3339_ms(h.host_started_at_ms.load(Ordering::Relaxed)),
            generation: h.generation.load(Ordering::Relaxed),
            shmem_bytes: seg.layout.size,
            slots: Slots {
                workers: seg.layout.n_worker_slots,
                connections: seg.layout.n_connection_slots.saturating_sub(RESERVED_CONNECTIONS),
                reserved_connections: seg.layout.n_connection_slots.min(RESERVED_CONNECTIONS),
                connections_in_use: (0..seg.layout.n_connection_slots)
                    .filter(|&i| seg.child_slot(seg.layout.connection_child_slot(i)).report().in_use())
                    .count() as u32,
                dynamic_workers: seg.layout.n_worker_slots - seg.layout.n_static_workers,
            },
        },
        workers,
    }
}

/// How long a connection child waits for the supervisor to finish a reload it asked for.
pub const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// Serves a `reload` request (connection children): checks that the client means the host's
/// file, takes a ticket, sends SIGHUP, and waits until a reload that began after the ticket was
/// taken has finished; answers with that reload's verdict.
pub fn serve_reload(seg: &Segment, host_pid: i32, host_file: &Path, config: Option<&str>) -> Value {
    if let Some(theirs) = config {
        if !same_file(theirs, host_file) {
            return error(&format!(
                "{theirs} is not this host's configuration file: the host reads {}",
                host_file.display()
            ));
        }
    }
    let h = seg.header();
    // The supervisor records the count it saw when a reload began; a reload that began after
    // this increment read the file after this request was made.
    let ticket = h.reload_requests.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
    tracing::info!("reload requested over the control socket");
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid), nix::sys::signal::Signal::SIGHUP) {
        return error(&format!("cannot signal the host (pid {host_pid}): {e}"));
    }
    let deadline = std::time::Instant::now() + RELOAD_WAIT;
    // Polled: a reload is rare and takes milliseconds; nothing else waits on this child.
    while h.reloads_done.load(Ordering::Acquire) < ticket {
        if std::time::Instant::now() > deadline {
            return error(&format!(
                "the host has not finished the reload after {}s; its log will say what happened",
                RELOAD_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    match info_from_segment(seg).map(|doc| doc.last_reload) {
        Ok(Some(report)) => match serde_json::to_value(&report) {
            Ok(mut v) => {
                v["reloading"] = json!(true);
                v["pid"] = json!(host_pid);
                ok(v)
            }
            Err(e) => error(&e.to_string()),
        },
        Ok(None) => error("the host reloaded but published no verdict"),
        Err(e) => error(&e),
    }
}

/// Serves a `show` request (connection children).
pub fn serve_show(seg: &Segment, name: Option<&str>) -> Value {
    match info_from_segment(seg) {
        Err(e) => error(&e),
        Ok(doc) if doc.settings_omitted => {
            error("the host has more settings than fit in the space it publishes them in; its log lists them at start")
        }
        Ok(doc) => match select_settings(&doc.settings, name) {
            Ok(v) => ok(json!({ "settings": v })),
            Err(e) => error(&e),
        },
    }
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

pub fn ok(result: Value) -> Value {
    json!({"v": PROTOCOL_VERSION, "ok": true, "result": result})
}

pub fn error(msg: &str) -> Value {
    json!({"v": PROTOCOL_VERSION, "ok": false, "error": msg})
}

/// A request the server understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Stop(StopMode),
    /// `config`: the file the client means (canonical path), which must be the host's.
    Reload {
        config: Option<String>,
    },
    /// `name`: one setting, or every setting under a prefix (`host`, `plugins.hello`).
    Show {
        name: Option<String>,
    },
}

/// Parses one request line, or returns the error line to send back.
///
/// Strict on purpose: a field of the wrong type is refused with its own message instead of being
/// read as absent, so a request never does something its sender did not ask for (a `mode` of `5`
/// is not a fast stop).
pub fn parse_request(line: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("malformed request: expected a JSON object".into());
    };
    match obj.get("v") {
        None => return Err("malformed request: missing protocol version \"v\"".into()),
        Some(v) => match v.as_u64() {
            Some(PROTOCOL_VERSION) => {}
            Some(other) => {
                return Err(format!(
                    "unsupported protocol version {other}; this host speaks {PROTOCOL_VERSION}"
                ))
            }
            None => {
                return Err(format!(
                "malformed request: protocol version \"v\" must be a whole number such as {PROTOCOL_VERSION}, not {}",
                shown(v)
            ))
            }
        },
    }
    let cmd = match obj.get("cmd") {
        None => return Err("malformed request: missing \"cmd\"".into()),
        Some(Value::String(c)) => c.as_str(),
        Some(other) => {
            return Err(format!(
                "malformed request: \"cmd\" must be a string, not {}",
                shown(other)
            ))
        }
    };
    match cmd {
        "status" => Ok(Request::Status),
        "reload" => Ok(Request::Reload {
            config: optional_string(obj, "config")?,
        }),
        "show" => Ok(Request::Show {
            name: optional_string(obj, "name")?,
        }),
        "stop" => {
            let mode = match obj.get("mode") {
                None => "fast",
                Some(Value::String(m)) => m.as_str(),
                Some(other) => {
                    return Err(format!(
                        "malformed request: stop \"mode\" must be one of the strings \"smart\", \"fast\" or \"immediate\", not {}",
                        shown(other)
                    ))
                }
            };
            StopMode::parse(mode)
                .map(Request::Stop)
                .ok_or_else(|| format!("unknown stop mode {mode:?} (use smart, fast or immediate)"))
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

/// An optional string field: absent or null is `None`; any other type is refused.
fn optional_string(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(v)) => Ok(Some(v.clone())),
        Some(other) => Err(format!(
            "malformed request: \"{key}\" must be a string, not {}",
            shown(other)
        )),
    }
}

/// A client's value for an error message: bounded, since it is untrusted and may be huge.
fn shown(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 40 {
        let mut end = 40;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {err} (is steward running?)", path = path.display())]
    Connect {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the host closed the connection without answering")]
    Closed,
    #[error("the host refused: {0}")]
    Refused(String),
    /// The socket is served by a process of another user, who is not root: not a host this
    /// client may believe (a runtime directory someone else prepared).
    #[error(
        "{path} is served by uid {uid}, not by this user (uid {me}) or root: not trusting it",
        path = path.display()
    )]
    Untrusted {
        path: std::path::PathBuf,
        uid: u32,
        me: u32,
    },
    /// The host refused because of its state (`recovering`, `stopping`): it is alive, and says so.
    #[error("the host refused: {message}")]
    Busy { state: String, message: String },
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// A control connection.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(socket).map_err(|err| ClientError::Connect {
            path: socket.to_owned(),
            err,
        })?;
        // The server's credentials, from the kernel: a host runs as this user or as root. Root
        // may ask a host of any user (a service's own user, as systemd runs it).
        let me = nix::unistd::geteuid().as_raw();
        let peer = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(std::io::Error::from)?
            .uid();
        if peer != me && peer != 0 && me != 0 {
            return Err(ClientError::Untrusted {
                path: socket.to_owned(),
                uid: peer,
                me,
            });
        }
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = s.try_clone()?;
        Ok(Client {
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Sends one request and reads one answer, returning `result` or the server's error.
    pub fn call(&mut self, req: &Value) -> Result<Value, ClientError> {
        let mut line = req.to_string();
        line.push('\n');
        // A refusing server may already have closed; its error line is still there to read.
        let _ = self.writer.write_all(line.as_bytes());
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(ClientError::Closed);
        }
        let v: Value = serde_json::from_str(&answer).map_err(|e| ClientError::Malformed(e.to_string()))?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(v.get("result").cloned().unwrap_or(Value::Null));
        }
        let message = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_owned();
        match v.get("state").and_then(Value::as_str) {
            Some(state) => Err(ClientError::Busy {
                state: state.to_owned(),
                message,
            }),
            None => Err(ClientError::Refused(message)),
        }
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        let v = self.call(&json!({"v": PROTOCOL_VERSION, "cmd": "status"}))?;
        serde_json::from_value(v).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    pub fn reload(&mut self) -> Result<Value, ClientError> {
        self.call(&json!({"v": PROTOCOL_VERSION, "cmd": "reload"}))
    }

    /// Reloads and returns the host's verdict. `config`: the file the caller means; the host
    /// refuses the request, naming its own file, when that is another one.
    pub fn reload_verdict(&mut self, config: Option<&Path>) -> Result<ReloadReport, ClientError> {
        let mut req = json!({"v": PROTOCOL_VERSION, "cmd": "reload"});
        if let Some(p) = config {
            req["config"] = json!(p.display().to_string());
        }
        let v = self.call(&req)?;
        serde_json::from_value(v).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    /// Every setting, or those `name` selects.
    pub fn show(&mut self, name: Option<&str>) -> Result<Vec<SettingInfo>, ClientError> {
        let v = self.call(&json!({"v": PROTOCOL_VERSION, "cmd": "show", "name": name}))?;
        let settings = v.get("settings").cloned().unwrap_or(Value::Null);
        serde_json::from_value(settings).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    pub fn stop(&mut self, mode: StopMode) -> Result<Value, ClientError> {
        self.call(&json!({"v": PROTOCOL_VERSION, "cmd": "stop", "mode": mode.as_str()}))
    }
}

/// The settings `name` selects: the one so named, or every one under it (`host`,
/// `plugins.hello`); an error naming `name` when there is none.
pub fn select_settings(all: &[SettingInfo], name: Option<&str>) -> Result<Vec<SettingInfo>, String> {
    let Some(name) = name else {
        return Ok(all.to_vec());
    };
    let prefix = format!("{name}.");
    let picked: Vec<SettingInfo> = all
        .iter()
        .filter(|s| s.name == name || s.name.starts_with(&prefix))
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(format!(
            "no setting named {name:?} (names are host.KEY or plugins.PLUGIN.KEY; `steward show` lists them all)"
        ));
    }
    Ok(picked)
}

/// Whether the file a client named (`theirs`, canonical on its side) is the host's own file:
/// compared canonicalised, so a relative path or a symlink to the same file is the same file.
pub fn same_file(theirs: &str, ours: &Path) -> bool {
    let theirs = Path::new(theirs);
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    canon(theirs) == canon(ours)
}

/// What `steward reload` prints: what was applied and what needs a restart, or every error with
/// its file, key and reason.
pub fn format_reload(r: &ReloadReport) -> String {
    let list = |keys: &[String]| {
        if keys.is_empty() {
            "nothing".to_owned()
        } else {
            keys.join(", ")
        }
    };
    if r.applied() {
        let mut out = format!(
            "configuration reloaded from {}\napplied: {}\n",
            r.file,
            list(&r.applied)
        );
        if !r.pending_restart.is_empty() {
            out.push_str(&format!(
                "needs a restart (running values kept): {}\n",
                r.pending_restart.join(", ")
            ));
        }
        out
    } else {
        let mut out = format!(
            "configuration not reloaded: {} error(s) in {}; the host keeps its running configuration\n",
            r.errors.len(),
            r.file
        );
        for e in &r.errors {
            out.push_str(&format!("  {e}\n"));
        }
        out
    }
}

/// Columns padded by display width, not bytes or characters, so names in any script line up in a
/// terminal.
fn columns(head: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| unicode_width::UnicodeWidthStr::width(s);
    let mut widths: Vec<usize> = head.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(width(c));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(widths[i] - width(c) + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head);
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// The table `steward show` prints.
pub fn format_show(settings: &[SettingInfo]) -> String {
    let rows: Vec<Vec<String>> = settings
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                if s.value.is_empty() {
                    "\"\"".to_owned()
                } else {
                    s.value.clone()
                },
                s.source.clone(),
                s.context.clone(),
                if s.pending_restart { "yes" } else { "-" }.to_owned(),
            ]
        })
        .collect();
    columns(&["NAME", "VALUE", "SOURCE", "CONTEXT", "PENDING RESTART"], &rows)
}

/// The LAST EXIT cell: the reason, led by the exit code or signal unless the reason already
/// says it (the supervisor's own reasons, such as `crashed: signal 11 (SIGSEGV)`, do).
fn last_exit_cell(e: &LastExit) -> String {
    let (short, long) = match (e.code, e.signal) {
        (Some(c), _) => (format!("code {c}"), format!("exit code {c}")),
        (_, Some(sig)) => (format!("signal {sig}"), format!("signal {sig}")),
        _ => ("?".to_owned(), "?".to_owned()),
    };
    if e.reason.is_empty() {
        short
    } else if e.reason.contains(&long) {
        e.reason.clone()
    } else {
        format!("{short}: {}", e.reason)
    }
}

/// The readable table `steward status` prints. Columns are aligned by display width, so names
/// in any script line up in a terminal.
pub fn format_table(s: &Status) -> String {
    let h = &s.host;
    let fixed = h.slots.workers.saturating_sub(h.slots.dynamic_workers);
    let mut out = format!(
        "host {} (pid {}, {} mode, generation {}, since {})\nshared memory {} bytes; slots: {} workers ({fixed} registered + {} for dynamic workers), {} connections (+{} reserved for status and stop)\n\n",
        h.state,
        h.pid,
        h.launch_mode,
        h.generation,
        h.started_at,
        h.shmem_bytes,
        h.slots.workers,
        h.slots.dynamic_workers,
        h.slots.connections,
        h.slots.reserved_connections
    );
    let rows: Vec<Vec<String>> = s
        .workers
        .iter()
        .map(|w| {
            vec![
                w.name.clone(),
                w.worker_type.clone(),
                w.plugin.clone(),
                w.state.clone(),
                w.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                w.restarts.to_string(),
                w.last_exit.as_ref().map(last_exit_cell).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    for p in &s.plugins {
        out.push_str(&format!("plugin {} {} ({})\n", p.name, p.version, p.file));
    }
    if let Some(r) = &s.last_reload {
        out.push_str(&format!("last reload: {} at {}", r.outcome, r.at));
        if !r.errors.is_empty() {
            out.push_str(&format!(
                " ({} error(s); `steward status --json` lists them)",
                r.errors.len()
            ));
        }
        out.push('\n');
    }
    if !s.pending_restart.is_empty() {
        out.push_str(&format!("pending restart: {}\n", s.pending_restart.join(", ")));
    }
    if !s.plugins.is_empty() || s.last_reload.is_some() || !s.pending_restart.is_empty() {
        out.push('\n');
    }
    out.push_str(&columns(
        &["NAME", "TYPE", "PLUGIN", "STATE", "PID", "RESTARTS", "LAST EXIT"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_errors_are_specific() {
        assert_eq!(parse_request(r#"{"v":1,"cmd":"status"}"#), Ok(Request::Status));
        assert_eq!(
            parse_request(r#"{"v":1,"cmd":"stop","mode":"smart"}"#),
            Ok(Request::Stop(StopMode::Smart))
        );
        assert_eq!(
            parse_request(r#"{"v":1,"cmd":"stop"}"#),
            Ok(Request::Stop(StopMode::Fast))
        );
        assert!(parse_request("{not json").unwrap_err().starts_with("malformed request"));
        assert!(parse_request(r#"{"v":2,"cmd":"status"}"#)
            .unwrap_err()
            .contains("unsupported protocol version 2"));
        assert!(parse_request(r#"{"v":1,"cmd":"dance"}"#)
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse_request(r#"{"v":1,"cmd":"stop","mode":"gentle"}"#)
            .unwrap_err()
            .contains("unknown stop mode"));
    }

    #[test]
    fn a_stop_mode_that_is_not_a_string_is_refused_not_taken_as_fast() {
        for mode in ["5", "null", "true", "[\"fast\"]", "{}"] {
            let err = parse_request(&format!(r#"{{"v":1,"cmd":"stop","mode":{mode}}}"#)).unwrap_err();
            assert!(
                err.contains("stop \"mode\" must be one of the strings"),
                "{mode}: {err}"
            );
            assert!(err.ends_with(&format!("not {mode}")), "{mode}: {err}");
        }
    }

    #[test]
    fn a_protocol_version_that_is_not_a_whole_number_gets_its_own_refusal() {
        for (v, shown) in [
            ("1.0", "1.0"),
            ("-1", "-1"),
            ("18446744073709551617", "1.8446744073709552e+19"),
            ("\"1\"", "\"1\""),
            ("null", "null"),
        ] {
            let err = parse_request(&format!(r#"{{"v":{v},"cmd":"status"}}"#)).unwrap_err();
            assert!(!err.contains("missing"), "{v}: {err}");
            assert_eq!(
                err,
                format!("malformed request: protocol version \"v\" must be a whole number such as 1, not {shown}"),
                "{v}"
            );
        }
        assert!(parse_request(r#"{"cmd":"status"}"#)
            .unwrap_err()
            .contains("missing protocol version"));
    }

    #[test]
    fn a_command_that_is_not_a_string_is_refused_and_long_values_are_cut() {
        let err = parse_request(r#"{"v":1,"cmd":7}"#).unwrap_err();
        assert_eq!(err, "malformed request: \"cmd\" must be a string, not 7");
        let long = format!(r#"{{"v":1,"cmd":"stop","mode":[{}]}}"#, "1,".repeat(100) + "1");
        let err = parse_request(&long).unwrap_err();
        assert!(err.len() < 200 && err.ends_with("..."), "{err}");
    }

    fn report(outcome: &str) -> ReloadReport {
        ReloadReport {
            at: "2026-11-30T16:00:00.000Z".into(),
            outcome: outcome.into(),
            file: "/etc/steward/steward.toml".into(),
            applied: vec![],
            pending_restart: vec![],
            errors: vec![],
        }
    }

    #[test]
    fn a_reload_verdict_reads_as_what_happened() {
        let mut r = report("applied");
        r.applied = vec!["host.log_level".into()];
        r.pending_restart = vec!["plugins.hello.workers".into()];
        assert_eq!(
            format_reload(&r),
            "configuration reloaded from /etc/steward/steward.toml\napplied: host.log_level\n\
             needs a restart (running values kept): plugins.hello.workers\n"
        );
        assert!(format_reload(&report("applied")).contains("applied: nothing\n"));
        let mut r = report("refused");
        r.errors = vec![
            ConfigProblem {
                file: r.file.clone(),
                key: Some("plugins.hello.greeting".into()),
                reason: "expected a string, got 5".into(),
            },
            ConfigProblem {
                file: r.file.clone(),
                key: None,
                reason: "TOML parse error".into(),
            },
        ];
        assert!(!r.applied());
        assert_eq!(
            format_reload(&r),
            "configuration not reloaded: 2 error(s) in /etc/steward/steward.toml; the host keeps its running configuration\n\
             \x20 /etc/steward/steward.toml: plugins.hello.greeting: expected a string, got 5\n\
             \x20 /etc/steward/steward.toml: TOML parse error\n"
        );
    }

    #[test]
    fn show_selects_by_name_or_prefix_and_lines_up_non_ascii_values() {
        let setting = |name: &str, value: &str| SettingInfo {
            name: name.into(),
            value: value.into(),
            default: String::new(),
            source: "default".into(),
            context: "reload".into(),
            pending_restart: false,
            description: String::new(),
        };
        let all = vec![
            setting("host.log_level", "info"),
            setting("plugins.hello.greeting", "grüße"),
            setting("plugins.hello2.x", "1"),
        ];
        assert_eq!(select_settings(&all, None).unwrap().len(), 3);
        assert_eq!(select_settings(&all, Some("plugins.hello")).unwrap().len(), 1);
        assert_eq!(select_settings(&all, Some("host.log_level")).unwrap().len(), 1);
        assert!(select_settings(&all, Some("plugins.hell"))
            .unwrap_err()
            .contains("no setting named \"plugins.hell\""));
        let table = format_show(&all);
        // The SOURCE column starts at the same character in every row.
        let source_at: Vec<usize> = table
            .lines()
            .skip(1)
            .map(|l| l[..l.find("default").expect("a source")].chars().count())
            .collect();
        assert!(source_at.windows(2).all(|w| w[0] == w[1]), "{table}");
    }

    fn worker(name: &str, last_exit: Option<LastExit>) -> WorkerInfo {
        WorkerInfo {
            name: name.to_owned(),
            worker_type: "t".into(),
            plugin: "p".into(),
            function: "f".into(),
            pid: None,
            state: "stopped".into(),
            started_at: None,
            restarts: 0,
            last_exit,
            next_restart_at: None,
            launch_us: None,
            exits: vec![],
            start_time: "running".into(),
            waiting_for: None,
        }
    }

    fn exit(code: Option<i32>, signal: Option<i32>, reason: &str) -> Option<LastExit> {
        Some(LastExit {
            code,
            signal,
            at: "2026-01-01T00:00:00.000Z".into(),
            reason: reason.into(),
        })
    }

    fn table(workers: Vec<WorkerInfo>) -> String {
        format_table(&Status {
            host: HostInfo {
                state: "running".into(),
                pid: 1,
                launch_mode: "fork".into(),
                started_at: "2026-01-01T00:00:00.000Z".into(),
                generation: 1,
                shmem_bytes: 4096,
                slots: Slots {
                    workers: 11,
                    connections: 16,
                    reserved_connections: 1,
                    connections_in_use: 1,
                    dynamic_workers: 8,
                },
            },
            workers,
            plugins: vec![],
            last_reload: None,
            pending_restart: vec![],
        })
    }

    #[test]
    fn table_says_what_the_worker_slots_are() {
        assert!(table(vec![]).contains(
            "slots: 11 workers (3 registered + 8 for dynamic workers), 16 connections (+1 reserved for status and stop)"
        ));
    }

    #[test]
    fn last_exit_does_not_repeat_the_code() {
        let t = table(vec![
            worker("a", exit(Some(3), None, "exit code 3")),
            worker("b", exit(None, Some(11), "crashed: signal 11 (SIGSEGV)")),
            worker("c", exit(Some(0), None, "stopped by the host (exit code 0)")),
            worker("d", exit(Some(2), None, "testkit was told to exit 2")),
            worker("e", exit(Some(1), None, "")),
        ]);
        let cells: Vec<&str> = t
            .lines()
            .skip(4)
            .map(|l| l.split("  ").last().unwrap().trim())
            .collect();
        assert_eq!(
            cells,
            [
                "exit code 3",
                "crashed: signal 11 (SIGSEGV)",
                "stopped by the host (exit code 0)",
                "code 2: testkit was told to exit 2",
                "code 1"
            ],
            "{t}"
        );
    }

    #[test]
    fn columns_align_by_display_width() {
        let t = table(vec![
            worker("zürich-ß", None),
            worker("東京", None),
            worker("plain", None),
        ]);
        let col = |l: &str| {
            let at = l.find("t  ").expect("TYPE column");
            unicode_width::UnicodeWidthStr::width(&l[..at])
        };
        let lines: Vec<&str> = t.lines().skip(4).collect();
        let first = col(lines[0]);
        for l in &lines {
            assert_eq!(col(l), first, "misaligned:\n{t}");
        }
    }
}
