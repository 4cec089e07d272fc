//! Launchers and what they are told (issue 14: notifications): who launched each dynamic
//! worker, the latch set when one of its workers stops or fails to start, the workers that end
//! with their launcher, and the refusals a request gets before it takes a slot (a duplicate name,
//! an unknown `start_after` target).
//!
//! Runs in: the supervisor, inside [`Core`]; no system call. The loop sets the latch
//! ([`Action::SetLatch`]) and writes the launcher's latch handle next to the registration (a
//! worker sets it itself when it starts: its entry running, or `set_ready` for a `needs_ready`
//! worker; the core asks for a set too after it publishes that start, which may come later).
//!
//! Invariants: a launcher is recorded as (child slot, pid) from the core's own child table when
//! the request is adopted, never from anything a child wrote; it is forgotten when that child is
//! reaped, so no latch is ever set for a pid the kernel may have given to another process; a
//! `stop_with_launcher` worker whose launcher is gone never runs again (terminated while the host
//! is up, stopped by the crash reset that took every process).

use super::rows::{self, State, Took};
use super::{Action, Actions, Core, Level, Now, Row, WorkerKey};
use crate::shared::handles::Answer;
use crate::shared::handoff::ChildKind;
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::registry::WorkerSpec;

/// The process that launched a dynamic worker: its child slot and pid, from the core's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launcher {
    pub child_slot: u32,
    pub pid: i32,
}

/// Why a request is refused before it takes a slot.
pub(super) enum Refusal {
    Duplicate(String),
    UnknownStartAfter(String),
}

impl Core {
    /// The live child whose request slot is `from`: a requester's request slot is at its child
    /// slot's index (a worker's, or the startup child's).
    pub(super) fn requester(&self, from: u32) -> Option<Launcher> {
        self.children
            .iter()
            .find(|(_, c)| c.kind != ChildKind::Spare && c.slot.child_slot() == Some(from))
            .map(|(pid, _)| Launcher { child_slot: from, pid })
    }

    /// What refuses `spec` at once: a name some worker in the table has (static workers keep
    /// theirs for the host's life; a dynamic one until it is retired), or a `start_after` name
    /// that is no worker's.
    pub(super) fn refusal(&self, spec: &WorkerSpec) -> Option<Refusal> {
        if self.workers().any(|w| w.spec.name == spec.name) {
            return Some(Refusal::Duplicate(spec.name.clone()));
        }
        spec.start_after
            .iter()
            .find(|t| !self.workers().any(|w| &w.spec.name == *t))
            .map(|t| Refusal::UnknownStartAfter(t.clone()))
    }

    /// Answers a refused request; returns the row.
    pub(super) fn refuse(&self, from: u32, seq: u32, why: Refusal, out: &mut Actions) -> Took {
        let (row, answer, line) = match why {
            Refusal::Duplicate(n) => (
                Row::RequestDuplicate,
                Answer::DuplicateName(n.clone()),
                format!("a dynamic worker named {n:?} was refused: a worker of that name is in the host"),
            ),
            Refusal::UnknownStartAfter(n) => (
                Row::RequestUnknownStartAfter,
                Answer::UnknownStartAfter(n.clone()),
                format!("a dynamic worker was refused: start_after names {n:?}, which is no worker"),
            ),
        };
        let took = self.took(row);
        out.push(Action::Log(Level::Warn, line));
        out.push(Action::Answer { to: from, seq, answer });
        took
    }

    /// Records who launched the adopted `key` and links its `start_after` targets.
    pub(super) fn adopt(&mut self, key: WorkerKey, launcher: Option<Launcher>) {
        // review: start_after keys
        let targets = match self.worker(key) {
            Some(w) => self.resolve_targets(&w.spec.start_after),
            None => return,
        };
        for &t in &targets {
            if let Some(target) = self.worker_mut(t) {
                target.dependents = true;
            }
        }
        if let Some(w) = self.worker_mut(key) {
            w.launcher = launcher;
            w.set_targets(targets);
        }
    }

    /// Sets the latch of `key`'s launcher, if it has one that is still alive.
    pub(super) fn notify_launcher(&self, key: WorkerKey, out: &mut Actions) {
        let Some(l) = self.worker(key).and_then(|w| w.launcher) else {
            return;
        };
        if self
            .children
            .get(l.pid)
            .is_some_and(|c| c.slot.child_slot() == Some(l.child_slot))
        {
            out.push(Action::SetLatch {
                child_slot: l.child_slot,
                pid: l.pid,
            });
        }
    }

    /// The child `pid` was reaped: the workers it launched forget it, and those that stop with
    /// it are terminated while the host is up (a crash reset stops them with everything else).
    pub(super) fn launcher_gone(&mut self, pid: i32, now: Now, out: &mut Actions) {
        let mut ending = Vec::new();
        for w in self.workers.iter_mut().flatten() {
            if w.launcher.is_some_and(|l| l.pid == pid) {
                w.launcher = None;
                if w.spec.stop_with_launcher {
                    ending.push(w.key);
                }
            }
        }
        if !self.is_up() {
            return;
        }
        for key in ending {
            self.end_with_launcher(key, pid, now, out);
        }
    }

    /// Terminates `key`, whose launcher `pid` exited, for good.
    fn end_with_launcher(&mut self, key: WorkerKey, pid: i32, now: Now, out: &mut Actions) {
        let Some(w) = self.worker_mut(key) else { return };
        let from = State::Worker(w.run.state);
        let reason = format!("launcher exited (pid {pid})");
        w.run.stop_reason = Some(reason.clone());
        match w.run.state {
            WorkerState::Running => {
                rows::fired(Row::LauncherGoneRunning, from);
                w.run.terminated = true;
                if let Some(wpid) = w.run.pid {
                    if let Some(c) = self.children.get_mut(wpid) {
                        c.signalled = true;
                    }
                    out.push(Action::Signal {
                        pid: wpid,
                        sig: nix::sys::signal::Signal::SIGTERM,
                    });
                }
            }
            WorkerState::NotStarted | WorkerState::WaitingRestart => {
                rows::fired(Row::LauncherGonePending, from);
                w.run.terminated = true;
                w.run.state = WorkerState::Stopped;
                w.run.restart_at = None;
                w.run.restart_at_ms = None;
                w.run.last_exit = Some((ExitStatus::Code(0), now.wall_ms, reason));
                self.publish_or_retire(key, out);
            }
            // Stopped or failed: a dynamic worker is retired in the turn it got there, so only
            // a stopping host (which returned above) could hold one.
            _ => {}
        }
    }

    /// A crash reset took every process: the `stop_with_launcher` workers' launchers too.
    /// Returns whether `w` stops for that reason (its state set, with the reason).
    pub(super) fn reset_ends_with_launcher(w: &mut super::Worker, now: Now) -> bool {
        if !w.spec.stop_with_launcher || w.run.state == WorkerState::Stopped || w.run.state == WorkerState::Failed {
            return false;
        }
        rows::fired(Row::WorkerResetLauncherGone, State::Worker(w.run.state));
        w.run.state = WorkerState::Stopped;
        w.run.restart_at = None;
        w.run.restart_at_ms = None;
        w.launcher = None;
        w.run.last_exit = Some((
            ExitStatus::Signal(libc::SIGQUIT),
            now.wall_ms,
            "launcher exited (stopped by a crash reset)".into(),
        ));
        true
    }
}
