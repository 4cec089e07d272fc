//! `steward run` (the host in the foreground) and `steward start` (the host detached, like
//! `pg_ctl start -w`).
//!
//! Runs in: `run` becomes the supervisor; `start` is a short-lived CLI process that spawns
//! `steward run` in a new session with stdin from /dev/null and stdout and stderr appended to a
//! log file, then waits until that very process (checked by pid) answers status with state
//! `running`, or exits, or `--timeout` passes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use steward_host::exit_code;
use steward_host::shared::config::LaunchMode;
use steward_host::shared::control::Client;

use super::{load_config, CliError, RunArgs, StartArgs};

/// How many of the log's last lines a failed start prints.
const TAIL_LINES: usize = 20;

pub fn cmd_run(args: &RunArgs) -> Result<i32, CliError> {
    let mut cfg = load_config(&args.config)?;
    if let Some(m) = args.launch_mode {
        cfg.launch_mode = m.into();
    }
    // A refusal to start is an answer to the command, printed as every other command prints its
    // errors (and as a bad file is), not as a log line.
    Ok(steward_host::supervisor::run::run(cfg)?)
}

pub fn cmd_start(args: &StartArgs) -> Result<i32, CliError> {
    // The file is checked here too, so that a bad one fails at once with its error rather than
    // through the log.
    let cfg = load_config(&args.config)?;
    let log_path = args.log.clone().unwrap_or_else(default_log_path);
    let log_err = |err| CliError::Log {
        path: log_path.clone(),
        err,
    };
    let log = open_log(&log_path, args.log.is_none()).map_err(log_err)?;
    // Only what this start appends is shown on failure, not an earlier run's lines.
    let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(CliError::Spawn)?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg("--config").arg(&cfg.path);
    if let Some(m) = args.launch_mode {
        cmd.arg("--launch-mode").arg(LaunchMode::from(m).as_str());
    }
    let out = log.try_clone().map_err(log_err)?;
    // Every path in the configuration is absolute by now (relative ones are resolved against the
    // file's directory), so the host needs no working directory: "/" pins no mount.
    cmd.stdin(Stdio::null()).stdout(out).stderr(log).current_dir("/");
    // The detached host is not this command's service: it must not speak for a unit that
    // started `steward start` (use `steward run` under systemd).
    for var in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
    ] {
        cmd.env_remove(var);
    }
    // SAFETY: setsid is async-signal-safe and touches only the new process: it leaves this
    // command's session and controlling terminal, so a hang-up of the terminal does not reach it.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().map_err(CliError::Spawn)?;
    let pid = child.id() as i32;
    let socket = cfg.socket_path();
    let deadline = Instant::now() + args.timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|err| CliError::Watch { pid, err })? {
            return Err(CliError::StartExited {
                status,
                tail: tail(&log_path, offset, TAIL_LINES),
                log: log_path,
            });
        }
        // The pid check keeps another host on the same runtime directory, whose lock makes this
        // one fail, from being taken for it.
        if let Ok(s) = Client::connect(&socket).and_then(|mut c| c.status()) {
            if s.host.pid == pid as u32 && s.host.state == "running" {
                println!("steward started (pid {pid}); log: {}", log_path.display());
                return Ok(exit_code::OK);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CliError::StartTimeout {
                pid,
                timeout: args.timeout,
                tail: tail(&log_path, offset, TAIL_LINES),
                log: log_path,
            });
        }
        // Woken at once by the host's exit; else look at the socket again after a short while.
        let _ = steward_host::sys::wait_pid_exit(pid, left.min(Duration::from_millis(20)));
    }
}

/// `/var/log/steward/steward.log` for root; `$XDG_STATE_HOME/steward/steward.log`, or
/// `~/.local/state/steward/steward.log`, otherwise.
pub fn default_log_path() -> PathBuf {
    if nix::unistd::getuid().is_root() {
        return PathBuf::from("/var/log/steward/steward.log");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/log"));
    state.join("steward/steward.log")
}

/// Opens the log for appending, creating it with mode 0600 (and, for the default path, its
/// directory with mode 0700). A symlink is refused, and so is anything but a regular file: the
/// host's output must not be sent somewhere a neighbour planted.
fn open_log(path: &Path, create_dir: bool) -> std::io::Result<File> {
    if create_dir {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
    }
    // O_NONBLOCK: opening a FIFO someone put there must fail or return, not hang.
    let f = File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_APPEND),
    )?;
    Ok(f)
}

/// The last `n` lines of what was written to `path` after `offset`.
fn tail(path: &Path, offset: u64, n: usize) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        text = String::from_utf8_lossy(&buf).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(cannot read {}: {e})", path.display());
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    if out.is_empty() {
        out.push_str("(the host wrote nothing)");
    }
    out
}
