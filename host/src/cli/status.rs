//! `steward status`: pg_ctl's status contract, for people, scripts and probes.
//!
//! Runs in: the CLI process. Exit 0 when the host answers (whatever state it reports, also when it
//! answers only that it is recovering from a crash or shutting down), 3 when no
//! host runs for the runtime directory (the directory, the lock file or the lock itself is not
//! there), 4 when it cannot tell (no permission, a lock held by a host that does not answer within
//! `--timeout`, a file that cannot be read). With `--ready`, a host that answers in a state other
//! than `running` exits 1 instead of 0, for readiness probes. Each case prints something: the
//! table or a sentence, and with `--json` always one JSON object with a top-level `"state"`.
//!
//! The probe reads the runtime directory without writing to it and opens the lock file with
//! `O_NOFOLLOW`: the directory may belong to someone else.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;
use serde_json::{json, Value};
use steward_host::exit_code;
use steward_host::shared::control::{Client, ClientError, Status};

use super::format;
use super::target::{resolve, Target};
use super::{CliError, StatusArgs};

/// What the probe found out.
#[derive(Debug)]
pub enum Probe {
    /// The host answered.
    Answered(Box<Status>),
    /// The host answered that it is recovering from a crash or shutting down, and serves no
    /// request until that is over: alive, in that state, but without a worker table to show.
    Busy { state: String, reason: String },
    /// No host runs for this runtime directory; why we know.
    NotRunning(String),
    /// Whether a host runs cannot be told; why not.
    Unknown(String),
}

pub fn cmd_status(args: &StatusArgs) -> Result<i32, CliError> {
    let (probe, runtime_dir) = match resolve(&args.target) {
        Ok(t) => (probe(&t, args.timeout), Some(t.runtime_dir)),
        Err(e) => (Probe::Unknown(e.to_string()), None),
    };
    let dir = runtime_dir.as_ref().map(|d| d.display().to_string());
    match probe {
        Probe::Answered(s) => {
            if args.json {
                let mut v = serde_json::to_value(&*s).expect("status serialises");
                if let Value::Object(m) = &mut v {
                    m.insert("state".into(), Value::String(s.host.state.clone()));
                }
                println!("{}", serde_json::to_string_pretty(&v).expect("JSON serialises"));
            } else {
                print!("{}", format::format_table(&s));
            }
            if args.ready && s.host.state != "running" {
                return Err(CliError::NotReady(s.host.state.clone()));
            }
            Ok(exit_code::OK)
        }
        Probe::Busy { state, reason } => {
            if args.json {
                print_json(&state, dir, &reason);
            } else {
                println!("host {state}: {reason}");
            }
            if args.ready {
                return Err(CliError::NotReady(state));
            }
            Ok(exit_code::OK)
        }
        Probe::NotRunning(reason) => {
            if args.json {
                print_json("not running", dir, &reason);
            } else {
                println!("no host running: {reason}");
            }
            Ok(exit_code::STATUS_NOT_RUNNING)
        }
        Probe::Unknown(reason) => {
            if args.json {
                print_json("unknown", dir, &reason);
            } else {
                eprintln!("steward: cannot tell whether a host is running: {reason}");
            }
            Ok(exit_code::STATUS_UNKNOWN)
        }
    }
}

fn print_json(state: &str, runtime_dir: Option<String>, reason: &str) {
    let v = json!({"state": state, "runtime_dir": runtime_dir, "reason": reason});
    println!("{}", serde_json::to_string_pretty(&v).expect("JSON serialises"));
}

/// Looks at the runtime directory, the lock and the socket, in that order.
pub fn probe(t: &Target, timeout: Duration) -> Probe {
    let dir = &t.runtime_dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Probe::Unknown(format!("{} is not a directory", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Probe::NotRunning(format!("the runtime directory {} does not exist", dir.display()))
        }
        Err(e) => return Probe::Unknown(format!("cannot access the runtime directory {}: {e}", dir.display())),
    }
    let lock = t.lock_path();
    let pid = match lock_state(&lock) {
        Ok(Lock::Absent) => {
            return Probe::NotRunning(format!(
                "there is no lock file {} (the host is not running)",
                lock.display()
            ))
        }
        Ok(Lock::Free) => {
            return Probe::NotRunning(format!(
                "no process holds the lock {} (the host is not running)",
                lock.display()
            ))
        }
        Ok(Lock::Held(pid)) => pid,
        Err(reason) => return Probe::Unknown(reason),
    };
    let holder = pid
        .map(|p| format!("the host (pid {p})"))
        .unwrap_or_else(|| "a host".into());
    match status_within(&t.socket_path(), timeout) {
        Some(Ok(s)) => Probe::Answered(Box::new(s)),
        Some(Err(ClientError::Busy { state, message })) => Probe::Busy { state, reason: message },
        Some(Err(e)) => Probe::Unknown(format!("{holder} holds the lock {}, but: {e}", lock.display())),
        None => Probe::Unknown(format!(
            "{holder} holds the lock {}, but its control socket did not answer within {timeout:?}",
            lock.display()
        )),
    }
}

/// The lock file's state, as far as a reader can see it.
enum Lock {
    /// No lock file.
    Absent,
    /// A lock file nobody holds: left by a host that was killed.
    Free,
    /// Held, by the process whose pid the file records if it is readable.
    Held(Option<i32>),
}

/// Looks at the lock at `path`; `Err` when that cannot be found out.
fn lock_state(path: &Path) -> Result<Lock, String> {
    let mut file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::Absent),
        Err(e) => return Err(format!("cannot open the lock file {}: {e}", path.display())),
    };
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(format!("the lock file {} is not a regular file", path.display()));
    }
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        // Nobody holds it; closing the file on return releases the probe's shared lock at once.
        Ok(()) => Ok(Lock::Free),
        Err(Errno::WOULDBLOCK) => {
            // From the descriptor just checked, not the path again, which may have changed.
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            Ok(Lock::Held(pid))
        }
        Err(e) => Err(format!(
            "cannot test the lock file {}: {}",
            path.display(),
            std::io::Error::from(e)
        )),
    }
}

/// Asks for the status, giving up after `timeout` (`None`): a host that holds its lock but does
/// not answer must not hang a probe. The call runs on a thread of its own, which is simply left
/// behind when the process exits.
fn status_within(socket: &Path, timeout: Duration) -> Option<Result<Status, ClientError>> {
    let (tx, rx) = mpsc::channel();
    let socket = socket.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(Client::connect(&socket).and_then(|mut c| c.status()));
    });
    rx.recv_timeout(timeout).ok()
}
