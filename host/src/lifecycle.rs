//! The exit-code contract and worker state transitions, as pure functions.
//!
//! Runs in: the supervisor (decisions) and connection children (state names for status).
//!
//! The contract (documented for plugin authors): exit code `0` means done (never restarted),
//! `1` means restart after the worker's policy, `2` means fatal (never restarted, reason kept),
//! anything else or death by a signal is a crash, and so is any exit while the child's dead-man
//! flag is still set. A signal the supervisor sent itself is never counted as a crash.

use std::time::Duration;

use crate::registry::RestartPolicy;

/// A worker's state as status shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum WorkerState {
    #[default]
    NotStarted = 0,
    Running = 1,
    WaitingRestart = 2,
    Stopped = 3,
    Failed = 4,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::NotStarted => "not_started",
            WorkerState::Running => "running",
            WorkerState::WaitingRestart => "waiting_restart",
            WorkerState::Stopped => "stopped",
            WorkerState::Failed => "failed",
        }
    }
    /// Decodes a value read from shared memory; unknown values read as `NotStarted`.
    pub fn from_u32(v: u32) -> WorkerState {
        match v {
            1 => WorkerState::Running,
            2 => WorkerState::WaitingRestart,
            3 => WorkerState::Stopped,
            4 => WorkerState::Failed,
            _ => WorkerState::NotStarted,
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

/// What an exit means under the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: the worker finished its work.
    Done,
    /// Exit 1: restart per policy.
    Restart,
    /// Exit 2: never restart.
    Fatal,
    /// Anything else: shared memory may be corrupt; reset the host.
    Crash,
    /// The child ended because the supervisor signalled it.
    StoppedByHost,
}

/// Classifies an exit. `dead_man` is whether the child's slot was still marked active;
/// `host_signalled` is whether the supervisor had sent this child a signal.
pub fn classify(status: ExitStatus, dead_man: bool, host_signalled: bool) -> Outcome {
    let by_code = match status {
        ExitStatus::Code(0) => Outcome::Done,
        ExitStatus::Code(1) => Outcome::Restart,
        ExitStatus::Code(2) => Outcome::Fatal,
        _ => Outcome::Crash,
    };
    match (host_signalled, dead_man, status) {
        (true, _, ExitStatus::Signal(_)) => Outcome::StoppedByHost,
        (true, _, _) if by_code == Outcome::Crash => Outcome::StoppedByHost,
        (true, true, _) => Outcome::StoppedByHost,
        (false, true, _) => Outcome::Crash,
        _ => by_code,
    }
}

/// What the supervisor does next for the worker that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Leave it `stopped`.
    Stop,
    /// Leave it `failed`.
    Fail,
    /// Start it again after the delay (`waiting_restart` until then).
    RestartAfter(Duration),
    /// Stop every child and recreate shared memory.
    ResetHost,
}

pub fn next_for(outcome: Outcome, policy: RestartPolicy) -> Next {
    match (outcome, policy) {
        (Outcome::Done | Outcome::StoppedByHost, _) => Next::Stop,
        (Outcome::Restart, RestartPolicy::Never) => Next::Stop,
        (Outcome::Restart, RestartPolicy::After(d)) => Next::RestartAfter(d),
        (Outcome::Fatal, _) => Next::Fail,
        (Outcome::Crash, _) => Next::ResetHost,
    }
}

/// Whether a worker starts again after a crash reset: only if its policy restarts it and it was
/// not already done or failed.
pub fn restarts_after_reset(state: WorkerState, policy: RestartPolicy) -> bool {
    matches!(policy, RestartPolicy::After(_)) && !matches!(state, WorkerState::Stopped | WorkerState::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: RestartPolicy = RestartPolicy::After(Duration::from_secs(1));

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(classify(ExitStatus::Code(0), false, false), Outcome::Done);
        assert_eq!(classify(ExitStatus::Code(1), false, false), Outcome::Restart);
        assert_eq!(classify(ExitStatus::Code(2), false, false), Outcome::Fatal);
        assert_eq!(classify(ExitStatus::Code(3), false, false), Outcome::Crash);
        assert_eq!(classify(ExitStatus::Signal(11), false, false), Outcome::Crash);
    }

    #[test]
    fn dead_man_flag_makes_any_exit_a_crash() {
        assert_eq!(classify(ExitStatus::Code(0), true, false), Outcome::Crash);
        assert_eq!(classify(ExitStatus::Code(1), true, false), Outcome::Crash);
    }

    #[test]
    fn signals_the_host_sent_are_not_crashes() {
        assert_eq!(classify(ExitStatus::Signal(15), true, true), Outcome::StoppedByHost);
        assert_eq!(classify(ExitStatus::Signal(9), false, true), Outcome::StoppedByHost);
        assert_eq!(classify(ExitStatus::Code(0), false, true), Outcome::Done);
        assert_eq!(classify(ExitStatus::Code(1), false, true), Outcome::Restart);
    }

    #[test]
    fn next_step_depends_on_policy() {
        assert_eq!(
            next_for(Outcome::Restart, SEC),
            Next::RestartAfter(Duration::from_secs(1))
        );
        assert_eq!(next_for(Outcome::Restart, RestartPolicy::Never), Next::Stop);
        assert_eq!(next_for(Outcome::Fatal, SEC), Next::Fail);
        assert_eq!(next_for(Outcome::Done, SEC), Next::Stop);
        assert_eq!(next_for(Outcome::Crash, RestartPolicy::Never), Next::ResetHost);
    }

    #[test]
    fn reset_restarts_only_live_restartable_workers() {
        assert!(restarts_after_reset(WorkerState::Running, SEC));
        assert!(restarts_after_reset(WorkerState::WaitingRestart, SEC));
        assert!(!restarts_after_reset(WorkerState::Running, RestartPolicy::Never));
        assert!(!restarts_after_reset(WorkerState::Failed, SEC));
        assert!(!restarts_after_reset(WorkerState::Stopped, SEC));
    }
}
