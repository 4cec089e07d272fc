//! The exit-code contract and the restart decisions, as pure functions.
//!
//! Runs in: the supervisor, inside the lifecycle core.
//!
//! The contract (documented for plugin authors): exit code `0` means done (never restarted),
//! `1` means restart after the worker's policy, `2` means fatal (never restarted, reason kept),
//! anything else or death by a signal is a crash, and so is any exit while the child's dead-man
//! flag is still set. A signal the supervisor sent itself is never counted as a crash.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::registry::{CrashLoopLimit, RestartPolicy};

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
    /// Start it again per its policy (`waiting_restart` until then); [`RestartTracker`] says when.
    Restart,
    /// Stop every child and recreate shared memory.
    ResetHost,
}

pub fn next_for(outcome: Outcome, policy: RestartPolicy) -> Next {
    match (outcome, policy) {
        (Outcome::Done | Outcome::StoppedByHost, _) => Next::Stop,
        (Outcome::Restart, RestartPolicy::Never) => Next::Stop,
        (Outcome::Restart, _) => Next::Restart,
        (Outcome::Fatal, _) => Next::Fail,
        (Outcome::Crash, _) => Next::ResetHost,
    }
}

/// Whether a worker starts again after a crash reset: only if its policy restarts it and it was
/// not already done or failed.
pub fn restarts_after_reset(state: WorkerState, policy: RestartPolicy) -> bool {
    !matches!(policy, RestartPolicy::Never) && !matches!(state, WorkerState::Stopped | WorkerState::Failed)
}

/// Per-worker restart bookkeeping: the current backoff delay and recent restarts.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    /// The delay the next backoff restart will use (None: the policy's initial delay).
    next_backoff: Option<Duration>,
    /// When recent restarts were decided, oldest first, within the crash-loop window.
    recent: VecDeque<Instant>,
}

/// What to do with a worker that wants a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start it again after this delay.
    After(Duration),
    /// It hit its crash-loop limit: mark it failed with this reason.
    GiveUp(String),
}

impl RestartTracker {
    /// Decides the restart of a worker whose policy restarts it, after a run of `ran_for`.
    /// Counts this restart against the crash-loop limit.
    pub fn decide(
        &mut self,
        policy: RestartPolicy,
        limit: Option<CrashLoopLimit>,
        now: Instant,
        ran_for: Duration,
    ) -> RestartDecision {
        if let Some(l) = limit {
            while self.recent.front().is_some_and(|t| now.duration_since(*t) >= l.window) {
                self.recent.pop_front();
            }
            if self.recent.len() >= l.max as usize {
                return RestartDecision::GiveUp(format!(
                    "restarted {} times in {}",
                    l.max,
                    crate::shared::time::format_duration(l.window)
                ));
            }
            self.recent.push_back(now);
        }
        match policy {
            RestartPolicy::Never => RestartDecision::After(Duration::ZERO),
            RestartPolicy::After(d) => RestartDecision::After(d),
            RestartPolicy::Backoff(b) => {
                if ran_for >= b.reset_after {
                    self.next_backoff = None;
                }
                let delay = self.next_backoff.unwrap_or(b.initial).min(b.cap);
                let grown = delay.as_micros().saturating_mul(b.factor_milli as u128) / 1000;
                self.next_backoff = Some(Duration::from_micros(grown.min(b.cap.as_micros()) as u64).max(b.initial));
                RestartDecision::After(delay)
            }
        }
    }
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
        assert_eq!(next_for(Outcome::Restart, SEC), Next::Restart);
        assert_eq!(next_for(Outcome::Restart, RestartPolicy::Never), Next::Stop);
        assert_eq!(next_for(Outcome::Fatal, SEC), Next::Fail);
        assert_eq!(next_for(Outcome::Done, SEC), Next::Stop);
        assert_eq!(next_for(Outcome::Crash, RestartPolicy::Never), Next::ResetHost);
    }

    fn backoff(reset_ms: u64) -> RestartPolicy {
        RestartPolicy::Backoff(crate::shared::registry::Backoff {
            initial: Duration::from_millis(10),
            factor_milli: 2000,
            cap: Duration::from_millis(50),
            reset_after: Duration::from_millis(reset_ms),
        })
    }

    #[test]
    fn backoff_grows_to_its_cap_and_resets_after_a_long_run() {
        let mut t = RestartTracker::default();
        let now = Instant::now();
        let short = Duration::from_millis(1);
        let delays: Vec<RestartDecision> = (0..5).map(|_| t.decide(backoff(1000), None, now, short)).collect();
        let ms = |d: u64| RestartDecision::After(Duration::from_millis(d));
        assert_eq!(delays, vec![ms(10), ms(20), ms(40), ms(50), ms(50)]);
        assert_eq!(
            t.decide(backoff(1000), None, now, Duration::from_secs(2)),
            ms(10),
            "a long run resets"
        );
        assert_eq!(t.decide(backoff(1000), None, now, short), ms(20));
    }

    #[test]
    fn crash_loop_limit_gives_up_within_the_window_only() {
        let limit = Some(CrashLoopLimit {
            max: 3,
            window: Duration::from_secs(10),
        });
        let mut t = RestartTracker::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                t.decide(SEC, limit, t0 + Duration::from_secs(i), Duration::ZERO),
                RestartDecision::After(Duration::from_secs(1))
            );
        }
        assert_eq!(
            t.decide(SEC, limit, t0 + Duration::from_secs(3), Duration::ZERO),
            RestartDecision::GiveUp("restarted 3 times in 10s".into())
        );
        // Once the first restarts leave the window, restarts are allowed again.
        let mut t2 = RestartTracker::default();
        for i in 0..3 {
            t2.decide(SEC, limit, t0 + Duration::from_secs(i * 6), Duration::ZERO);
        }
        assert_eq!(
            t2.decide(SEC, limit, t0 + Duration::from_secs(18), Duration::ZERO),
            RestartDecision::After(Duration::from_secs(1))
        );
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
