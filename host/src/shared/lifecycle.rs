//! A worker's state and how a child process ended: the values status shows.
//!
//! Runs in: the supervisor (which decides them, see `supervisor::core::policy` for the exit-code
//! contract) and connection children (which show them).

/// A worker's state as status shows it (its code in the segment: [`crate::shared::protocol`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkerState {
    #[default]
    NotStarted,
    Running,
    WaitingRestart,
    Stopped,
    Failed,
    // issue 14: readiness
    /// Running, but not yet declared ready (a worker registered with `needs_ready`). Only status
    /// shows it: the supervisor's core keeps such a worker `running` (see `Worker::shown_state`).
    Starting,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::NotStarted => "not_started",
            WorkerState::Running => "running",
            WorkerState::WaitingRestart => "waiting_restart",
            WorkerState::Stopped => "stopped",
            WorkerState::Failed => "failed",
            WorkerState::Starting => "starting",
        }
    }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(s)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown");
                write!(f, "signal {s} ({name})")
            }
        }
    }
}
