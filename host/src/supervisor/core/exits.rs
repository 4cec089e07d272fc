//! The core's answer to a reaped child: what its exit means under the exit-code contract (see
//! [`super::policy`]) for the child's kind, the worker's restart policy and the host phase.
//!
//! Runs in: the supervisor, inside [`Core`]. What a child left in its slot arrives as a bounded
//! copy ([`SlotCopy`]) the event loop read; the core trusts only its own table for who the
//! child was.

use super::policy::{classify, next_for, Next, Outcome, RestartDecision};
use super::rows::{self, State, Took};
use super::{Action, Actions, Core, Level, Now, Phase, Progress, Row, SlotCopy, WorkerKey};
use crate::shared::handoff::ChildKind;
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::registry::RestartPolicy;

impl Core {
    pub(super) fn child_exited(
        &mut self,
        pid: i32,
        status: ExitStatus,
        slot: SlotCopy,
        now: Now,
        out: &mut Actions,
    ) -> Took {
        let Some(child) = self.children.remove(pid) else {
            // Not a child the core knows: to the core, as any process it did not start.
            return self.adopted_exited(pid, now, out);
        };
        if let (Some(key), Some(us)) = (child.worker, slot.launch_us) {
            if let Some(w) = self.worker_mut(key) {
                w.run.last_launch_us = Some(us);
            }
        }
        let outcome = classify(status, slot.dead_man, child.signalled);
        if status == ExitStatus::Code(crate::shared::shmem::EXIT_CORRUPT_SEGMENT)
            && !child.signalled
            && matches!(child.kind, ChildKind::Spare | ChildKind::Startup)
        {
            // Every child after this one would refuse the segment too (its own log line names
            // the check that failed): reset it, as for any crash. The code is the claim, not
            // proof: plugin code may exit with 3 too. Workers and connections get there through
            // their own crash handling below.
            let took = self.took(Row::CorruptSegmentReported);
            let what = format!(
                "{} child (pid {pid}) exited with code 3, which reports a corrupt shared-memory segment",
                child.kind.info().name
            );
            self.crash(&what, now, out);
            self.launcher_gone(pid, now, out);
            self.after_exit(now, out);
            return took;
        }
        let took = match child.kind {
            ChildKind::DeadEnd => self.took(Row::DeadEndExited),
            ChildKind::Startup => self.startup_exited(pid, status, outcome, slot.reason, now, out),
            // Died before it was handed a worker: it touched nothing shared but its own slot,
            // so this is not a crash.
            ChildKind::Spare if child.signalled => self.took(Row::SpareStopped),
            ChildKind::Spare => {
                let took = self.took(Row::SpareDied);
                out.push(Action::Log(
                    Level::Warn,
                    format!("spare child (pid {pid}) ended with {status}: {}", slot.reason),
                ));
                took
            }
            // issue 15: isolated handlers
            ChildKind::Client if outcome == Outcome::Crash && child.isolated => {
                self.isolated_client_crashed(pid, status, &slot, now, out)
            }
            // issue 15: client spares
            // A spare handed a client and killed before it claimed the client's slot was still
            // spare code, which touches nothing shared but its own slot: as for an unused spare,
            // not a crash. Only that client is lost (its socket went with the spare's channel).
            // One the host signalled (a stop, a recovery) died of that signal: not its fault, so
            // it ends as any signalled client child does.
            ChildKind::Client
                if child.spare.is_some()
                    && !child.signalled
                    && !slot.dead_man
                    && matches!(status, ExitStatus::Signal(_)) =>
            {
                let took = self.took(Row::HandedSpareDied);
                out.push(Action::Log(
                    Level::Warn,
                    format!("spare child (pid {pid}) ended with {status} before taking the client it was handed"),
                ));
                took
            }
            // issue 15: connections: a client child maps the segment and runs plugin code; its
            // crash resets the host as a control connection's does.
            ChildKind::Connection | ChildKind::Client if outcome == Outcome::Crash => {
                let took = self.took(Row::ConnectionCrashed);
                let what = format!(
                    "{} child (pid {pid}) crashed: {status}{}",
                    child.kind.info().name,
                    corrupt_note(status)
                );
                self.crash(&what, now, out);
                took
            }
            ChildKind::Connection | ChildKind::Client => self.took(Row::ConnectionExited),
            ChildKind::Worker => match child.worker.filter(|k| self.worker(*k).is_some()) {
                Some(key) => {
                    let took = self.worker_exited(key, pid, status, outcome, slot, now, out);
                    // issue 14: notifications
                    // After its status is published (or it is retired): the launcher reads it.
                    self.notify_launcher(key, out);
                    // issue 14: readiness
                    // Its readiness went with its process: dependents not yet started wait again.
                    self.publish_dependents(key, out);
                    took
                }
                // A worker child with no worker in the table: the loop never makes one.
                None => self.took(Row::StaleKey),
            },
        };
        // issue 14: notifications
        // Whatever it was, it launched no worker from here on; after its own exit was judged,
        // so a launcher's crash leaves its workers to the reset it began.
        self.launcher_gone(pid, now, out);
        self.after_exit(now, out);
        took
    }

    fn startup_exited(
        &mut self,
        pid: i32,
        status: ExitStatus,
        outcome: Outcome,
        reason: String,
        now: Now,
        out: &mut Actions,
    ) -> Took {
        if !self.is_up() {
            // Recovering or stopping: the host signalled it, or a smart shutdown outlived it.
            return self.took(Row::StartupExitIgnored);
        }
        // issue 14: segment init
        if outcome == Outcome::Done && self.phase == Phase::Up(Progress::Running) {
            // Only init hooks were registered: the segment was declared ready, which already
            // made the host running.
            return self.took(Row::StartupDoneAfterInit);
        }
        // A clean exit before the segment was declared ready skipped an init hook: a failure.
        let skipped_init = self.phase == Phase::Up(Progress::SegmentInit);
        if outcome == Outcome::Done && !skipped_init {
            let took = self.took(Row::StartupDone);
            self.enter(Phase::Up(Progress::Running), out);
            return took;
        }
        let took = self.took(Row::StartupFailed);
        let reason = match (outcome, reason.is_empty()) {
            (Outcome::Done, _) => {
                format!("the startup child (pid {pid}) ended with {status} before the segment init hooks finished")
            }
            // The child names the hook it is running in its slot, so a crash still names it.
            (Outcome::Crash, false) => format!("the startup child (pid {pid}) ended with {status} while {reason}"),
            (_, false) => reason,
            (_, true) => format!("the startup child (pid {pid}) ended with {status}"),
        };
        let line = format!("start-up failed: {reason}; stopping");
        self.fail(line, "a failed startup hook", now, out);
        took
    }

    #[allow(clippy::too_many_arguments)]
    fn worker_exited(
        &mut self,
        key: WorkerKey,
        pid: i32,
        status: ExitStatus,
        outcome: Outcome,
        slot: SlotCopy,
        now: Now,
        out: &mut Actions,
    ) -> Took {
        let up = self.is_up();
        let stopping = matches!(self.phase, Phase::Stopping(_));
        let Some(w) = self.worker_mut(key) else {
            return self.took(Row::StaleKey);
        };
        let name = w.spec.name.clone();
        // issue 15: isolated
        let isolated = w.spec.isolated;
        let policy = w.spec.restart;
        let crash_loop = w.spec.crash_loop;
        // issue 15: isolated
        // Evidence against the segment resets the host as for any attached crash.
        let isolated_evidence = isolated.then(|| super::isolated::evidence(&slot)).flatten();
        // issue 14: notifications
        let host_reason = w.run.stop_reason.clone().filter(|_| outcome != Outcome::Crash);
        let reason = match (outcome, slot.reason.is_empty()) {
            _ if host_reason.is_some() => host_reason.unwrap_or_default(),
            (Outcome::Crash, _) if isolated_evidence.is_some() => {
                format!(
                    "crashed: {status}{} ({})",
                    corrupt_note(status),
                    isolated_evidence.unwrap_or_default()
                )
            }
            (Outcome::Crash, _) if slot.dead_man && matches!(status, ExitStatus::Code(_)) => {
                format!("crashed: {status} without a clean exit (dead-man flag still set)")
            }
            (Outcome::Crash, _) => format!("crashed: {status}{}", corrupt_note(status)),
            (Outcome::StoppedByHost, _) => format!("stopped by the host ({status})"),
            (_, false) => slot.reason,
            (Outcome::Done, true) => "done".to_owned(),
            (_, true) => status.to_string(),
        };
        let r = &mut w.run;
        let from = State::Worker(r.state);
        r.pid = None;
        r.ready = false;
        r.last_exit = Some((status, now.wall_ms, reason.clone()));
        r.history.push_front((status, now.wall_ms, reason.clone()));
        r.history.truncate(crate::shared::shmem::EXIT_HISTORY);
        let ran_for = r
            .started
            .take()
            .map(|t| now.mono.saturating_duration_since(t))
            .unwrap_or_default();

        if !up {
            // Recovering or stopping: what happens next is decided by the phase, not the exit.
            let took = if stopping {
                r.state = WorkerState::Stopped;
                rows::fired(Row::WorkerExitWhileStopping, from)
            } else {
                rows::fired(Row::WorkerExitWhileRecovering, from)
            };
            out.push(Action::PublishWorker(key));
            return took;
        }
        // issue 14: dynamic workers
        // A terminated worker stops for good, whatever its exit asks for (a crash still resets).
        let next = match next_for(outcome, policy) {
            Next::Restart if r.terminated => Next::Stop,
            next => next,
        };
        let took = match next {
            next @ (Next::Stop | Next::Fail) => {
                let (row, state, level, verb) = match next {
                    Next::Stop => (Row::WorkerStops, WorkerState::Stopped, Level::Info, "exited"),
                    _ => (Row::WorkerFails, WorkerState::Failed, Level::Error, "failed"),
                };
                r.state = state;
                let line = format!("worker {name} (pid {pid}) {verb} with {status}: {reason}; not restarting");
                out.push(Action::Log(level, line));
                rows::fired(row, from)
            }
            Next::Restart => match r.tracker.decide(policy, crash_loop, now.mono, ran_for) {
                RestartDecision::After(d) => {
                    r.restart_in(d, now);
                    out.push(Action::Log(
                        Level::Info,
                        format!(
                            "worker {name} (pid {pid}) exited with {status}: {reason}; restarting in {}",
                            crate::shared::time::format_duration(d)
                        ),
                    ));
                    rows::fired(Row::WorkerRestarts, from)
                }
                RestartDecision::GiveUp(why) => {
                    let full = r.give_up(status, now, &why, &reason);
                    out.push(Action::Log(
                        Level::Error,
                        format!("worker {name} (pid {pid}) failed: {full}; not restarting"),
                    ));
                    rows::fired(Row::WorkerGivesUp, from)
                }
            },
            // issue 15: isolated
            Next::ResetHost if isolated && isolated_evidence.is_none() => {
                return self.isolated_crashed(key, pid, status, reason, from, ran_for, now, out);
            }
            Next::ResetHost => {
                // A crash counts against the crashed worker's crash-loop limit too.
                let gave_up = match policy {
                    RestartPolicy::Never => None,
                    _ => match r.tracker.decide(policy, crash_loop, now.mono, ran_for) {
                        RestartDecision::GiveUp(why) => Some(why),
                        RestartDecision::After(_) => None,
                    },
                };
                let took = if let Some(why) = gave_up {
                    r.give_up(status, now, &why, &reason);
                    out.push(Action::Log(
                        Level::Error,
                        format!("worker {name} (pid {pid}) failed: {why}; it will not start again after the reset"),
                    ));
                    rows::fired(Row::WorkerCrashGivesUp, from)
                } else {
                    r.state = WorkerState::WaitingRestart;
                    rows::fired(Row::WorkerCrashes, from)
                };
                out.push(Action::PublishWorker(key));
                self.crash(&format!("worker {name} (pid {pid}) {reason}"), now, out);
                return took;
            }
        };
        self.publish_or_retire(key, out);
        took
    }
}

/// What a crashed child's exit code says about the segment, for the crash's log line.
pub(super) fn corrupt_note(status: ExitStatus) -> &'static str {
    if status == ExitStatus::Code(crate::shared::shmem::EXIT_CORRUPT_SEGMENT) {
        " (the code that reports a corrupt shared-memory segment)"
    } else {
        ""
    }
}
