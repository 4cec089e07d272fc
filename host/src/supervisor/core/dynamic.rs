//! Dynamic workers in the core (issue 14: dynamic workers): a worker's request for a new worker,
//! a handle's terminate, and giving a dynamic worker's slot back once it stopped for good.
//!
//! Runs in: the supervisor, inside [`Core`]; no system call, as everywhere in the core. The loop
//! decodes and validates a request before it becomes an [`Event::Request`], and carries out the
//! publish, answer and retire actions that follow.
//!
//! Invariants: a request is answered exactly once (adopted, no free slot, host not running); an
//! adopted worker is published to its slot before the answer names it, so a handle never points
//! at a slot that does not hold its worker yet; a dynamic worker that is `stopped` or `failed`
//! while the host is up is retired in the same turn (it never runs again, and its slot is the
//! pool's once more); a terminate acts only on the key's own generation.

use super::rows::{self, State, Took};
use super::{Action, Actions, Core, Now, Phase, Row, WorkerKey};
use crate::shared::lifecycle::{ExitStatus, WorkerState};

impl Core {
    /// Dynamic workers in the table and the dynamic slots in all, for `NoFreeSlot`.
    pub(super) fn dynamic_use(&self) -> (u32, u32) {
        let n_static = self.workers().filter(|w| !w.is_dynamic()).count() as u32;
        let used = self.workers().filter(|w| w.is_dynamic()).count() as u32;
        (used, self.max_workers.saturating_sub(n_static))
    }

    /// A handle asked for `key` to stop for good.
    pub(super) fn terminate(&mut self, key: WorkerKey, now: Now, out: &mut Actions) -> Took {
        let up = self.is_up();
        let Some(w) = self.worker_mut(key) else {
            return rows::fired(Row::TerminateStale, State::Host(super::rows::Step::of(self.phase)));
        };
        let from = State::Worker(w.run.state);
        match w.run.state {
            WorkerState::Running => {
                let took = rows::fired(Row::TerminateRunning, from);
                w.run.terminated = true;
                if let Some(pid) = w.run.pid {
                    if let Some(c) = self.children.get_mut(pid) {
                        c.signalled = true;
                    }
                    out.push(Action::Signal {
                        pid,
                        sig: nix::sys::signal::Signal::SIGTERM,
                    });
                }
                took
            }
            WorkerState::NotStarted | WorkerState::WaitingRestart if up => {
                let took = rows::fired(Row::TerminatePending, from);
                w.run.terminated = true;
                w.run.state = WorkerState::Stopped;
                w.run.restart_at = None;
                w.run.restart_at_ms = None;
                if w.run.last_exit.is_none() {
                    w.run.last_exit = Some((ExitStatus::Code(0), now.wall_ms, "terminated before it started".into()));
                }
                self.publish_or_retire(key, out);
                // issue 14: notifications
                self.notify_launcher(key, out);
                took
            }
            _ => rows::fired(Row::TerminateIgnored, from),
        }
    }

    /// Publishes `key`'s status, or, for a dynamic worker that stopped for good while the host
    /// is up, retires it (the loop publishes its last status, then frees the slot).
    pub(super) fn publish_or_retire(&self, key: WorkerKey, out: &mut Actions) {
        let Some(w) = self.worker(key) else { return };
        let done = matches!(w.run.state, WorkerState::Stopped | WorkerState::Failed);
        if w.is_dynamic() && done && matches!(self.phase, Phase::Up(_)) {
            out.push(Action::Retire(key));
        } else {
            out.push(Action::PublishWorker(key));
        }
    }
}
