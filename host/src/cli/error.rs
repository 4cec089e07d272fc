//! Why a command failed, as one typed error that `main` prints as `steward: MESSAGE` and maps to
//! an exit code.
//!
//! Runs in: the CLI process. Results that are part of a command's contract rather than failures
//! (`status`'s 3 and 4, `run`'s own exit code) are not errors: the command prints them and
//! returns the code.

use std::path::PathBuf;
use std::time::Duration;

use steward_host::exit_code;
use steward_host::shared::config::ConfigError;
use steward_host::shared::control::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0} (the default path: give --config FILE or set STEWARD_CONFIG)")]
    DefaultConfig(ConfigError),
    #[error("{0}")]
    Run(#[from] steward_host::supervisor::run::RunError),
    #[error("{0}")]
    Plugin(#[from] steward_host::shared::preload::PluginError),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{err}; signalling pid {pid} failed: {signal}")]
    Signal {
        err: ClientError,
        pid: i32,
        signal: nix::Error,
    },
    /// The lock file names a pid that does not hold the lock as this process sees it: another
    /// PID namespace's number (a host that is PID 1 of a container records 1), or a stale or
    /// forged file. Signalling it could hit an unrelated process, so nothing is signalled.
    #[error(
        "{err}; the lock file names pid {pid}, but that process does not hold the lock as seen from here \
         (the host may run in another PID namespace): nothing was signalled; signal the host from its own namespace"
    )]
    NotTheHolder { err: ClientError, pid: i32 },
    #[error("the host did not stop within shutdown_timeout + 10s")]
    StopTimeout,
    #[error("the host answers but is not ready: its state is {0}")]
    NotReady(String),
    #[error("--log {path}: {err}", path = path.display())]
    Log { path: PathBuf, err: std::io::Error },
    #[error("cannot start the host: {0}")]
    Spawn(std::io::Error),
    #[error("cannot watch the host (pid {pid}): {err}")]
    Watch { pid: i32, err: std::io::Error },
    #[error("the host exited during start-up ({status}); the end of its log {log}:\n{tail}", log = log.display())]
    StartExited {
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("the host (pid {pid}) is not running after {timeout:?}; it was left as it is. The end of its log {log}:\n{tail}", log = log.display())]
    StartTimeout {
        pid: i32,
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("man: there is no command {0:?}")]
    NoSuchCommand(String),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl CliError {
    /// The exit code the failure maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::NoSuchCommand(_) => exit_code::USAGE,
            _ => exit_code::FAILURE,
        }
    }
}
