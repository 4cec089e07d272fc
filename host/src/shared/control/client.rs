//! The client side of the control protocol: one connection, one request and one answer at a time.
//!
//! Runs in: clients (every `steward` command but `run`, and the tests). A client believes a server
//! only when the kernel says it runs as the client's user or as root.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::shared::control::{ReloadReport, SettingInfo, Status, StopMode, PROTOCOL_VERSION};

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
        s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
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

    // issue 14: control
    /// Launches a dynamic worker of a preloaded plugin; the host is the judge of every field.
    pub fn launch(&mut self, l: &Launch<'_>) -> Result<Launched, ClientError> {
        let mut req = json!({
            "v": PROTOCOL_VERSION,
            "cmd": "launch",
            "plugin": l.plugin,
            "entry": l.entry,
            "name": l.name,
            "arg": l.arg,
            "restart": l.restart.map_or_else(|| "never".to_owned(), crate::shared::time::format_duration),
        });
        self.wait_fields(&mut req, l.wait)?;
        let v = self.call(&req)?;
        serde_json::from_value(v).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    /// Stops the live worker `name` for good; with `wait`, until it stopped.
    pub fn terminate(&mut self, name: &str, wait: Option<Duration>) -> Result<Terminated, ClientError> {
        let mut req = json!({"v": PROTOCOL_VERSION, "cmd": "terminate", "name": name});
        self.wait_fields(&mut req, wait)?;
        let v = self.call(&req)?;
        serde_json::from_value(v).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    /// Adds `wait` and `timeout_ms`, and gives the answer that long beyond the usual timeout.
    fn wait_fields(&mut self, req: &mut Value, wait: Option<Duration>) -> Result<(), ClientError> {
        if let Some(t) = wait {
            req["wait"] = json!(true);
            req["timeout_ms"] = json!(t.as_millis().min(u64::MAX as u128) as u64);
            self.reader
                .get_ref()
                .set_read_timeout(Some(ANSWER_TIMEOUT.saturating_add(t)))?;
        }
        Ok(())
    }
}

/// How long a client waits for an answer beyond what it asked the host to wait for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

// issue 14: control
/// A `launch` request: the entry is the function `entry` of the preloaded plugin `plugin`.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub plugin: &'a str,
    pub entry: &'a str,
    pub name: &'a str,
    pub arg: u64,
    /// `None`: never restarted (the default); else restarted this long after each exit.
    pub restart: Option<Duration>,
    /// Wait up to this long for the worker's entry to run.
    pub wait: Option<Duration>,
}

/// What `launch` answered: the new worker's handle, and its pid when the launch waited for it.
#[derive(Debug, Clone, serde::Deserialize, PartialEq, Eq)]
pub struct Launched {
    pub name: String,
    pub slot: u32,
    pub generation: u64,
    #[serde(default)]
    pub pid: Option<i32>,
}

/// What `terminate` answered: the worker's handle, and why it stopped when it waited for that.
#[derive(Debug, Clone, serde::Deserialize, PartialEq, Eq)]
pub struct Terminated {
    pub name: String,
    pub slot: u32,
    pub generation: u64,
    #[serde(default)]
    pub stopped: Option<String>,
}
