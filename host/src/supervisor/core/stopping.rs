//! The core's recovery and shutdown transitions: a crash reset (SIGQUIT, SIGKILL after
//! `crash_kill_timeout`, a new segment) and the three shutdown modes (smart waits for the
//! connections, then SIGTERM, or SIGQUIT for immediate, and SIGKILL after `shutdown_timeout`),
//! up to the final scan for adopted processes and the exit.
//!
//! Runs in: the supervisor, inside [`Core`]. Each step is a variant of [`Recovery`] or
//! [`Shutdown`]; the deadlines live in those variants, so a step that has no deadline cannot
//! be given one.

use nix::sys::signal::Signal;

use super::rows::Took;
use super::{Action, Actions, Child, Core, Level, Now, Phase, Progress, Recovery, Row, Shutdown, StopMode};
use crate::shared::handoff::ChildKind;
use crate::supervisor::pool::ChildSlotId;

impl Core {
    pub(super) fn deadline(&mut self, now: Now, out: &mut Actions) -> Took {
        match self.phase {
            Phase::Up(progress) => {
                let took = self.took(Row::LaunchDue);
                self.launch_due(progress, now, out);
                took
            }
            Phase::Recovering(Recovery::Quitting { kill_at }) if now.mono >= kill_at => {
                let n = self.attached_children();
                if n == 0 {
                    // Every exit checks this already; checking here too means a passed deadline
                    // can never leave the loop polling with a zero timeout.
                    return self.reset(out);
                }
                let took = self.took(Row::RecoverKill);
                let who = match n {
                    1 => "1 child".to_owned(),
                    n => format!("{n} children"),
                };
                out.push(Action::Log(
                    Level::Warn,
                    format!("{who} still alive after crash_kill_timeout: sending SIGKILL"),
                ));
                self.signal_children(Signal::SIGKILL, |c| c.kind.info().attaches_shmem, out);
                self.phase = Phase::Recovering(Recovery::Killed);
                took
            }
            Phase::Stopping(Shutdown::Signalled { mode, kill_at }) if now.mono >= kill_at => {
                let took = self.took(Row::StopKill);
                self.log_stragglers(out);
                self.signal_children(Signal::SIGKILL, |_| true, out);
                self.signal_adopted(Signal::SIGKILL, out);
                self.phase = Phase::Stopping(Shutdown::Killed { mode });
                took
            }
            _ => self.took(Row::DeadlineWaits),
        }
    }

    /// Names every process still alive at the SIGKILL of a shutdown, in pid order.
    fn log_stragglers(&self, out: &mut Actions) {
        let mut live: Vec<(i32, Child)> = self.children.iter().map(|(p, c)| (p, *c)).collect();
        live.sort_by_key(|(pid, _)| *pid);
        let mut names: Vec<String> = live
            .iter()
            .map(|(pid, c)| match c.worker.and_then(|k| self.worker(k)) {
                Some(w) => format!("{} (pid {pid})", w.spec.name),
                None => format!("{} (pid {pid})", c.kind.info().name),
            })
            .collect();
        names.extend(
            self.adopted
                .iter()
                .map(|(pid, from)| format!("adopted process {pid} (left behind by {from})")),
        );
        out.push(Action::Log(
            Level::Warn,
            format!(
                "still running after shutdown_timeout, sending SIGKILL: {}",
                names.join(", ")
            ),
        ));
    }

    // ---- crash recovery ----

    /// A child attached to shared memory crashed (`what` names it and how).
    pub(super) fn crash(&mut self, what: &str, now: Now, out: &mut Actions) -> Took {
        if !self.is_up() {
            return self.took(Row::CrashIgnored);
        }
        if !self.settings.restart_after_crash {
            let took = self.took(Row::CrashStop);
            let line = format!("{what}; restart_after_crash is off: stopping the host");
            self.fail(line, "a crash", now, out);
            return took;
        }
        let took = self.took(Row::CrashRecover);
        out.push(Action::Log(
            Level::Error,
            format!(
                "{what}; {} and resetting shared memory",
                stopping_children(self.children.len())
            ),
        ));
        let kill_at = now.mono + self.settings.crash_kill_timeout;
        self.enter(Phase::Recovering(Recovery::Quitting { kill_at }), out);
        self.signal_children(Signal::SIGQUIT, |_| true, out);
        took
    }

    /// After anything left: a recovery resets once no attached child is left; a shutdown moves
    /// on once the connections or all children are gone.
    pub(super) fn after_exit(&mut self, now: Now, out: &mut Actions) {
        match self.phase {
            Phase::Recovering(Recovery::Quitting { .. } | Recovery::Killed) if self.attached_children() == 0 => {
                self.reset(out);
            }
            Phase::Stopping(s) => {
                if s == Shutdown::SmartWaiting && self.connections() == 0 {
                    self.took(Row::SmartProceeds);
                    self.signal_stop(StopMode::Smart, now, out);
                }
                if self.children.is_empty() && !self.scan_pending {
                    // Nothing that is left may outlive the host: look once more for processes
                    // the last children left behind.
                    self.took(Row::StopScan);
                    self.scan_pending = true;
                    out.push(Action::ScanAdopted);
                }
            }
            _ => {}
        }
    }

    /// No attached child is left of a crash reset: ask for the new segment.
    fn reset(&mut self, out: &mut Actions) -> Took {
        let took = self.took(Row::RecoverReset);
        self.phase = Phase::Recovering(Recovery::Resetting);
        // The generation moves on when the new segment exists (or could not be made): until
        // then status and `STATUS=` name the segment that crashed.
        out.push(Action::CreateSegment {
            generation: self.generation + 1,
        });
        took
    }

    pub(super) fn segment_created(&mut self, now: Now, out: &mut Actions) -> Took {
        let took = self.took(Row::ResetDone);
        self.generation += 1;
        let restarting = self.reset_workers(now, out);
        // Published by `enter_startup` below, so the host goes from recovering to startup (or
        // running) without reporting the running of before the crash in between.
        self.phase = Phase::Up(Progress::Init);
        out.push(Action::Log(
            Level::Info,
            format!(
                "shared memory reset (generation {}); restarting {restarting} workers",
                self.generation
            ),
        ));
        self.enter_startup(out);
        took
    }

    // ---- shutdown ----

    /// Something the host cannot go on without failed: log `line`, exit with the failure code,
    /// and stop immediately (`why` names it in the shutdown's line).
    pub(super) fn fail(&mut self, line: String, why: &'static str, now: Now, out: &mut Actions) {
        out.push(Action::Log(Level::Error, line));
        self.exit_code = crate::exit_code::FAILURE;
        self.stop(StopMode::Immediate, why, now, out);
    }

    pub(super) fn stop(&mut self, mode: StopMode, why: &str, now: Now, out: &mut Actions) -> Took {
        if let Phase::Stopping(s) = self.phase {
            if mode <= s.mode() {
                return self.took(Row::StopIgnored);
            }
        }
        out.push(Action::Log(
            Level::Info,
            format!("{} shutdown requested ({why})", mode.as_str()),
        ));
        self.cancel_restarts(out);
        let took = if mode == StopMode::Smart && self.connections() > 0 {
            let took = self.took(Row::StopSmartWaits);
            self.enter(Phase::Stopping(Shutdown::SmartWaiting), out);
            took
        } else {
            let took = self.took(Row::StopSignals);
            self.signal_stop(mode, now, out);
            took
        };
        self.after_exit(now, out);
        took
    }

    /// Signals every child and adopted process for a shutdown in `mode` and starts the
    /// `shutdown_timeout` clock.
    fn signal_stop(&mut self, mode: StopMode, now: Now, out: &mut Actions) {
        let kill_at = now.mono + self.settings.shutdown_timeout;
        self.enter(Phase::Stopping(Shutdown::Signalled { mode, kill_at }), out);
        let sig = stop_signal(mode);
        self.signal_children(sig, |_| true, out);
        self.signal_adopted(sig, out);
        if !self.children.is_empty() && !self.scan_pending {
            // A process a child left behind just now is found and signalled too.
            self.scan_pending = true;
            out.push(Action::ScanAdopted);
        }
    }

    /// A connection, dead-end, spare, startup or client child started (`isolated`: a client
    /// child of an isolated handler). During a stop the loop starts only the control socket's
    /// dead-ends (admission refuses, spares need the host up, the listeners are not polled once
    /// the children were signalled); past `shutdown_timeout` such a child gets SIGKILL: the host
    /// exits only with no child left. A dead-end started while the signalled shutdown waits is
    /// left alone, as the postmaster's are: it carries the "shutting down" answer an operator's
    /// `status` needs, and its own deadline ends it. Any other kind started once the children
    /// were signalled would get the stop's signal at once, a guard for no path of today.
    pub(super) fn child_started(&mut self, pid: i32, slot: ChildSlotId, isolated: bool, out: &mut Actions) -> Took {
        let (row, sig) = match self.phase {
            Phase::Stopping(Shutdown::Signalled { .. }) if slot.kind() == ChildKind::DeadEnd => {
                (Row::DeadEndStartedStopping, None)
            }
            Phase::Stopping(Shutdown::Signalled { mode, .. }) => (Row::ChildStartedStopping, Some(stop_signal(mode))),
            Phase::Stopping(Shutdown::Killed { .. }) => (Row::ChildStartedStopping, Some(Signal::SIGKILL)),
            _ => (Row::ChildTracked, None),
        };
        let took = self.took(row);
        let child = Child {
            kind: slot.kind(),
            slot,
            worker: None,
            signalled: sig.is_some(),
            spare: None,
            isolated,
        };
        self.children.insert(pid, child);
        if let Some(sig) = sig {
            out.push(Action::Signal { pid, sig });
        }
        took
    }

    pub(super) fn adopted(&mut self, pid: i32, from: String, out: &mut Actions) -> Took {
        self.adopted.insert(pid, from);
        let sig = match self.phase {
            Phase::Stopping(Shutdown::Signalled { mode, .. }) => stop_signal(mode),
            Phase::Stopping(Shutdown::Killed { .. }) => Signal::SIGKILL,
            // Signalled with the rest when a shutdown signals them.
            _ => return self.took(Row::AdoptedTracked),
        };
        let took = self.took(Row::AdoptedSignalled);
        out.push(Action::Signal { pid, sig });
        took
    }

    pub(super) fn adopted_exited(&mut self, pid: i32, now: Now, out: &mut Actions) -> Took {
        let took = self.took(Row::AdoptedExited);
        self.adopted.remove(&pid);
        self.after_exit(now, out);
        took
    }

    pub(super) fn scanned(&mut self, out: &mut Actions) -> Took {
        self.scan_pending = false;
        if !(matches!(self.phase, Phase::Stopping(_)) && self.children.is_empty() && self.adopted.is_empty()) {
            // What is left ends with an exit, which asks for the next scan.
            return self.took(Row::ScanLeftSome);
        }
        let took = self.took(Row::StopExit);
        out.push(Action::Exit(self.exit_code));
        took
    }
}

fn stop_signal(mode: StopMode) -> Signal {
    match mode {
        StopMode::Immediate => Signal::SIGQUIT,
        StopMode::Smart | StopMode::Fast => Signal::SIGTERM,
    }
}

/// The log's words for stopping the children left at a crash (the crashed one is gone already).
fn stopping_children(n: usize) -> String {
    match n {
        0 => "no other child is running".to_owned(),
        1 => "stopping the 1 other child (SIGQUIT)".to_owned(),
        n => format!("stopping the {n} other children (SIGQUIT)"),
    }
}
