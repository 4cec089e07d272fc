//! The core's recovery and shutdown transitions: a crash reset (SIGQUIT, SIGKILL after
//! `crash_kill_timeout`, a new segment) and the three shutdown modes (smart waits for the
//! connections, then SIGTERM, or SIGQUIT for immediate, and SIGKILL after `shutdown_timeout`),
//! up to the final scan for adopted processes and the exit.
//!
//! Runs in: the supervisor, inside [`Core`]. Each step is a variant of [`Recovery`] or
//! [`Shutdown`]; the deadlines live in those variants, so a step that has no deadline cannot
//! be given one.

use nix::sys::signal::Signal;

use super::{rows, Action, Actions, Child, Core, Level, Now, Phase, Progress, Recovery, Row, Shutdown, StopMode};

impl Core {
    pub(super) fn deadline(&mut self, now: Now, out: &mut Actions) {
        match self.phase {
            Phase::Up(progress) => self.launch_due(progress, now, out),
            Phase::Recovering(Recovery::Quitting { kill_at }) if now.mono >= kill_at => {
                let n = self.attached_children();
                if n == 0 {
                    // Every exit checks this already; checking here too means a passed deadline
                    // can never leave the loop polling with a zero timeout.
                    self.after_exit(now, out);
                    return;
                }
                rows::fired(Row::RecoverKill);
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
            }
            Phase::Stopping(Shutdown::Signalled { mode, kill_at }) if now.mono >= kill_at => {
                rows::fired(Row::StopKill);
                self.log_stragglers(out);
                self.signal_children(Signal::SIGKILL, |_| true, out);
                self.signal_adopted(Signal::SIGKILL, out);
                self.phase = Phase::Stopping(Shutdown::Killed { mode });
            }
            _ => {}
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
    pub(super) fn crash(&mut self, what: &str, now: Now, out: &mut Actions) {
        if !self.is_up() {
            rows::fired(Row::CrashIgnored);
            return;
        }
        if !self.settings.restart_after_crash {
            rows::fired(Row::CrashStop);
            let line = format!("{what}; restart_after_crash is off: stopping the host");
            self.fail(line, "a crash", now, out);
            return;
        }
        rows::fired(Row::CrashRecover);
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
    }

    /// After anything left: a recovery resets once no attached child is left; a shutdown moves
    /// on once the connections or all children are gone.
    pub(super) fn after_exit(&mut self, now: Now, out: &mut Actions) {
        match self.phase {
            Phase::Recovering(Recovery::Quitting { .. } | Recovery::Killed) if self.attached_children() == 0 => {
                rows::fired(Row::RecoverReset);
                self.phase = Phase::Recovering(Recovery::Resetting);
                self.generation += 1;
                out.push(Action::CreateSegment {
                    generation: self.generation,
                });
            }
            Phase::Stopping(s) => {
                if s == Shutdown::SmartWaiting && self.connections() == 0 {
                    rows::fired(Row::SmartProceeds);
                    self.signal_stop(StopMode::Smart, now, out);
                }
                if self.children.is_empty() && !self.scan_pending {
                    // Nothing that is left may outlive the host: look once more for processes
                    // the last children left behind.
                    rows::fired(Row::StopScan);
                    self.scan_pending = true;
                    out.push(Action::ScanAdopted);
                }
            }
            _ => {}
        }
    }

    pub(super) fn segment_created(&mut self, now: Now, out: &mut Actions) {
        rows::fired(Row::ResetDone);
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
    }

    // ---- shutdown ----

    /// Something the host cannot go on without failed: log `line`, exit with the failure code,
    /// and stop immediately (`why` names it in the shutdown's line).
    pub(super) fn fail(&mut self, line: String, why: &'static str, now: Now, out: &mut Actions) {
        out.push(Action::Log(Level::Error, line));
        self.exit_code = crate::exit_code::FAILURE;
        self.stop(StopMode::Immediate, why, now, out);
    }

    pub(super) fn stop(&mut self, mode: StopMode, why: &str, now: Now, out: &mut Actions) {
        if let Phase::Stopping(s) = self.phase {
            if mode <= s.mode() {
                rows::fired(Row::StopIgnored);
                return;
            }
        }
        out.push(Action::Log(
            Level::Info,
            format!("{} shutdown requested ({why})", mode.as_str()),
        ));
        self.cancel_restarts(out);
        if mode == StopMode::Smart && self.connections() > 0 {
            rows::fired(Row::StopSmartWaits);
            self.enter(Phase::Stopping(Shutdown::SmartWaiting), out);
        } else {
            rows::fired(Row::StopSignals);
            self.signal_stop(mode, now, out);
        }
        self.after_exit(now, out);
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

    pub(super) fn adopted(&mut self, pid: i32, from: String, out: &mut Actions) {
        self.adopted.insert(pid, from);
        let sig = match self.phase {
            Phase::Stopping(Shutdown::Signalled { mode, .. }) => stop_signal(mode),
            Phase::Stopping(Shutdown::Killed { .. }) => Signal::SIGKILL,
            _ => return,
        };
        rows::fired(Row::AdoptedSignalled);
        out.push(Action::Signal { pid, sig });
    }

    pub(super) fn scanned(&mut self, out: &mut Actions) {
        self.scan_pending = false;
        if matches!(self.phase, Phase::Stopping(_)) && self.children.is_empty() && self.adopted.is_empty() {
            rows::fired(Row::StopExit);
            out.push(Action::Exit(self.exit_code));
        }
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
