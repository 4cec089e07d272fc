//! The core's worker table: workers keyed by (slot, generation), their run records, launches,
//! and what a crash reset or a shutdown does to them.
//!
//! Runs in: the supervisor, inside [`Core`]. The table lives in memory `fork` does not copy
//! (see [`crate::supervisor::private`]): it is written on every launch and exit.
//!
//! Invariants: a slot holds at most one worker; a worker's key names its slot and a generation
//! taken from the host's counter, which no crash reset rewinds, so a key is never reused for
//! another worker; static workers hold slots `0..n` from the start and are never removed.

use std::collections::VecDeque;
use std::time::Instant;

use super::policy::{restarts_after_reset, RestartTracker};
use super::rows::{self, State, Took};
use super::{start_time_reached, Action, Actions, Core, Level, Now, Progress, Row, LAUNCH_BATCH, LAUNCH_RETRY};
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::registry::{RestartPolicy, WorkerSpec};
use crate::supervisor::pool::ChildSlotId;

/// A worker's identity: its slot, and the generation that tells it from the slot's earlier and
/// later tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerKey {
    pub slot: u32,
    pub generation: u64,
}

/// A target a worker still waits for (review: start_after keys).
enum Unready<'a> {
    /// In the table, not ready.
    Waiting(&'a Worker),
    /// No longer in the table (retired): by its `start_after` name.
    Gone(&'a str),
}

/// Every worker slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no free worker slot ({used} of {max} in use)")]
pub struct NoFreeSlot {
    pub used: u32,
    pub max: u32,
}

/// Why a worker cannot be removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRemovable {
    #[error("no worker has key {0:?}")]
    Unknown(WorkerKey),
    #[error("worker {0} was registered at start-up")]
    Static(String),
    #[error("worker {name} is {state}: only a stopped or failed worker is removed")]
    Live { name: String, state: &'static str },
}

/// The supervisor's record of one worker's runs: the truth status publishes a copy of.
#[derive(Debug, Clone, Default)]
pub struct WorkerRun {
    pub state: WorkerState,
    pub pid: Option<i32>,
    pub started_at_ms: Option<u64>,
    pub restarts: u32,
    pub ever_started: bool,
    pub last_exit: Option<(ExitStatus, u64, String)>,
    pub restart_at: Option<Instant>,
    pub restart_at_ms: Option<u64>,
    /// Launch decision to entry running, for the last process of this worker that got there.
    pub last_launch_us: Option<u64>,
    /// When the running process was started (for backoff resets).
    pub started: Option<Instant>,
    // issue 14: readiness
    /// The running process declared itself ready (or, for a worker without `needs_ready` that
    /// others start after, its entry ran); cleared when it exits.
    pub ready: bool,
    // issue 14: dynamic workers
    /// A handle terminated it: it stops for good whatever its exit says.
    pub terminated: bool,
    // issue 14: notifications
    /// Why the host ended it, shown as its exit's reason (its launcher exited).
    pub stop_reason: Option<String>,
    // issue 14: queue
    /// The errno of the launch that failed, for a dynamic worker stopped by it.
    pub launch_errno: Option<i32>,
    /// Past exits, newest first.
    pub history: VecDeque<(ExitStatus, u64, String)>,
    pub tracker: RestartTracker,
}

impl WorkerRun {
    /// Waits to start again `d` after `now`: the monotonic deadline the core acts on and the
    /// wall-clock time status shows, always set together.
    pub fn restart_in(&mut self, d: std::time::Duration, now: Now) {
        self.state = WorkerState::WaitingRestart;
        self.restart_at = Some(now.mono + d);
        self.restart_at_ms = Some(now.wall_ms + d.as_millis() as u64);
    }

    /// Fails for good: `why` it gave up, kept as its last exit's reason with the exit's own
    /// `reason` after it. Returns that reason.
    pub fn give_up(&mut self, status: ExitStatus, now: Now, why: &str, reason: &str) -> String {
        self.state = WorkerState::Failed;
        let full = format!("{why} (last exit: {reason})");
        self.last_exit = Some((status, now.wall_ms, full.clone()));
        full
    }
}

/// One worker in the table.
#[derive(Debug)]
pub struct Worker {
    pub key: WorkerKey,
    pub spec: WorkerSpec,
    pub run: WorkerRun,
    /// Added at run time: removed from the table once it stopped for good.
    dynamic: bool,
    // issue 14: readiness
    /// The workers this one starts after (its `start_after`, resolved once, one key per name):
    /// keys, not slots, so a target that was retired stays gone and never becomes the slot's
    /// next tenant (review: start_after keys).
    targets: Vec<WorkerKey>,
    /// Some worker starts after this one.
    pub dependents: bool,
    // issue 14: notifications
    /// The process that launched it (dynamic workers), while that process lives.
    pub launcher: Option<super::Launcher>,
}

impl Worker {
    // issue 14: dynamic workers
    /// Added at run time (a dynamic worker).
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// What status shows: a running worker that must declare itself ready is `starting` until
    /// it has. In the core it is `running` throughout, so every exit row applies to it as is.
    pub fn shown_state(&self) -> WorkerState {
        match self.run.state {
            WorkerState::Running if self.spec.needs_ready && !self.run.ready => WorkerState::Starting,
            s => s,
        }
    }

    /// Whether the supervisor is to tell the core when this worker's running process becomes
    /// ready: it must declare it, or others wait for its entry to run.
    pub fn awaits_ready(&self) -> bool {
        self.run.state == WorkerState::Running && !self.run.ready && (self.spec.needs_ready || self.dependents)
    }

    /// Whether its process is to report its entry running as readiness: others start after it
    /// and it does not declare readiness itself.
    pub fn notifies_entry(&self) -> bool {
        self.dependents && !self.spec.needs_ready
    }

    // issue 14: notifications
    /// Sets the workers it starts after (a dynamic worker's, resolved at adoption).
    pub(super) fn set_targets(&mut self, targets: Vec<WorkerKey>) {
        self.targets = targets;
    }
}

impl Core {
    pub(super) fn insert(&mut self, spec: WorkerSpec, dynamic: bool) -> std::io::Result<WorkerKey> {
        let free = self.workers.iter().position(Option::is_none);
        let slot = free.unwrap_or(self.workers.len()) as u32;
        let key = WorkerKey {
            slot,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        let w = Some(Worker {
            key,
            spec,
            run: WorkerRun::default(),
            dynamic,
            targets: Vec::new(),
            dependents: false,
            launcher: None,
        });
        match free {
            Some(i) => self.workers[i] = w,
            None => self.workers.push(w)?,
        }
        Ok(key)
    }

    /// Adds a worker at run time, in the lowest free slot; it starts when its start time has
    /// come, at the next [`super::Event::Deadline`].
    pub fn add_worker(&mut self, spec: WorkerSpec) -> Result<WorkerKey, NoFreeSlot> {
        let used = self.workers.iter().flatten().count() as u32;
        let full = NoFreeSlot {
            used,
            max: self.max_workers,
        };
        if used >= self.max_workers {
            return Err(full);
        }
        self.insert(spec, true).map_err(|_| full)
    }

    /// Removes a worker added at run time that stopped or failed, freeing its slot.
    pub fn remove_worker(&mut self, key: WorkerKey) -> Result<WorkerSpec, NotRemovable> {
        let Some(w) = self.worker(key) else {
            return Err(NotRemovable::Unknown(key));
        };
        if !w.dynamic {
            return Err(NotRemovable::Static(w.spec.name.clone()));
        }
        if !matches!(w.run.state, WorkerState::Stopped | WorkerState::Failed) {
            return Err(NotRemovable::Live {
                name: w.spec.name.clone(),
                state: w.run.state.as_str(),
            });
        }
        rows::fired(Row::WorkerRemoved, State::Worker(w.run.state));
        let w = self.workers[key.slot as usize].take().expect("checked above");
        Ok(w.spec)
    }

    pub fn worker(&self, key: WorkerKey) -> Option<&Worker> {
        self.workers
            .get(key.slot as usize)
            .and_then(Option::as_ref)
            .filter(|w| w.key == key)
    }

    pub(super) fn worker_mut(&mut self, key: WorkerKey) -> Option<&mut Worker> {
        self.workers
            .get_mut(key.slot as usize)
            .and_then(Option::as_mut)
            .filter(|w| w.key == key)
    }

    /// The worker in `slot`, whatever its generation.
    pub fn worker_in(&self, slot: u32) -> Option<&Worker> {
        self.workers.get(slot as usize).and_then(Option::as_ref)
    }

    /// Every worker, in slot order.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter().flatten()
    }

    /// The static workers' registrations, for a new segment.
    pub fn static_specs(&self) -> Vec<WorkerSpec> {
        self.workers().filter(|w| !w.dynamic).map(|w| w.spec.clone()).collect()
    }

    // issue 14: readiness
    /// Resolves the static workers' `start_after` names to keys (the registry checked that each
    /// names a worker and that they make no cycle).
    pub(super) fn link_start_after(&mut self) {
        for i in 0..self.workers.len() {
            let Some(w) = self.workers[i].as_ref() else { continue };
            let targets = self.resolve_targets(&w.spec.start_after);
            for t in &targets {
                if let Some(target) = self.worker_mut(*t) {
                    target.dependents = true;
                }
            }
            if let Some(w) = self.workers[i].as_mut() {
                w.targets = targets;
            }
        }
    }

    // review: start_after keys
    /// The keys of the workers `names` names, one per name, in order: a name no worker in the
    /// table has (refused before adoption; never for a registry's names) gets a key no worker
    /// has, so it reads as a target that is gone.
    pub(super) fn resolve_targets(&self, names: &[String]) -> Vec<WorkerKey> {
        names
            .iter()
            .map(|t| {
                self.workers().find(|o| &o.spec.name == t).map_or(
                    WorkerKey {
                        slot: u32::MAX,
                        generation: 0,
                    },
                    |o| o.key,
                )
            })
            .collect()
    }

    /// The first worker `w` starts after that is not ready, if any: the worker, or the name of a
    /// target that is gone (a retired dynamic worker: stopped for good, whoever holds its slot
    /// now).
    fn unready_target<'a>(&'a self, w: &'a Worker) -> Option<Unready<'a>> {
        w.targets
            .iter()
            .zip(&w.spec.start_after)
            .find_map(|(&t, name)| match self.worker(t) {
                Some(t) if t.run.ready => None,
                Some(t) => Some(Unready::Waiting(t)),
                None => Some(Unready::Gone(name)),
            })
    }

    /// Why a worker that has not started waits for another worker: status's `waiting_for`
    /// (`worker A ready`, or `worker A (failed)` when A will not come back by itself).
    pub fn waiting_for(&self, key: WorkerKey) -> Option<String> {
        let w = self.worker(key)?;
        if !matches!(w.run.state, WorkerState::NotStarted | WorkerState::WaitingRestart) {
            return None;
        }
        Some(match self.unready_target(w)? {
            Unready::Gone(name) => format!("worker {name} ({})", WorkerState::Stopped.as_str()),
            Unready::Waiting(t) => match t.run.state {
                s @ (WorkerState::Stopped | WorkerState::Failed) => format!("worker {} ({})", t.spec.name, s.as_str()),
                _ => format!("worker {} ready", t.spec.name),
            },
        })
    }

    /// Whether a worker due by its state and start time still waits for a target's readiness.
    pub(super) fn gated(&self, w: &Worker) -> bool {
        !w.targets.is_empty() && self.unready_target(w).is_some()
    }

    /// Publishes the workers that start after `key` and have not started, whose `waiting_for`
    /// follows its readiness.
    pub(super) fn publish_dependents(&self, key: WorkerKey, out: &mut Actions) {
        if !self.worker(key).is_some_and(|w| w.dependents) {
            return;
        }
        for w in self.workers() {
            if w.targets.contains(&key) && matches!(w.run.state, WorkerState::NotStarted | WorkerState::WaitingRestart)
            {
                out.push(Action::PublishWorker(w.key));
            }
        }
    }

    /// The running process of `key` declared itself ready (or its entry ran, for a worker others
    /// start after); read by the loop from the worker's child slot.
    pub(super) fn ready(&mut self, key: WorkerKey, out: &mut Actions) -> Took {
        let Some(w) = self.worker_mut(key) else {
            return self.took(Row::StaleKey);
        };
        let from = State::Worker(w.run.state);
        if w.run.ready || w.run.state != WorkerState::Running {
            return rows::fired(Row::ReadyIgnored, from);
        }
        let took = rows::fired(Row::WorkerReady, from);
        w.run.ready = true;
        let needs_ready = w.spec.needs_ready;
        out.push(Action::PublishWorker(key));
        self.publish_dependents(key, out);
        // issue 14: notifications
        // A `needs_ready` worker's start is its readiness: see `launched`.
        if needs_ready {
            self.notify_launcher(key, out);
        }
        took
    }

    /// Asks for up to a batch of the workers that are due.
    pub(super) fn launch_due(&mut self, progress: Progress, now: Now, out: &mut Actions) {
        let mut n = 0;
        for w in self.workers.iter().flatten() {
            if !start_time_reached(progress, w.spec.start_time) {
                continue;
            }
            let due = match w.run.state {
                WorkerState::NotStarted => true,
                WorkerState::WaitingRestart => w.run.restart_at.is_none_or(|t| t <= now.mono),
                _ => false,
            };
            if !due {
                continue;
            }
            if self.gated(w) {
                rows::fired(Row::ReadyGate, State::Worker(w.run.state));
                continue;
            }
            if n == LAUNCH_BATCH {
                break;
            }
            rows::fired(Row::WorkerDue, State::Worker(w.run.state));
            out.push(Action::Launch(w.key));
            n += 1;
        }
    }

    pub(super) fn launched(
        &mut self,
        key: WorkerKey,
        pid: i32,
        slot: ChildSlotId,
        spare: Option<ChildSlotId>,
        now: Now,
        out: &mut Actions,
    ) -> Took {
        let Some(w) = self.worker_mut(key) else {
            return self.took(Row::StaleKey);
        };
        let took = rows::fired(Row::WorkerLaunched, State::Worker(w.run.state));
        let r = &mut w.run;
        if r.ever_started {
            r.restarts += 1;
        }
        r.ever_started = true;
        r.state = WorkerState::Running;
        r.pid = Some(pid);
        r.started_at_ms = Some(now.wall_ms);
        r.started = Some(now.mono);
        r.restart_at = None;
        r.restart_at_ms = None;
        self.children.insert(
            pid,
            super::Child {
                kind: crate::shared::handoff::ChildKind::Worker,
                slot,
                worker: Some(key),
                signalled: false,
                spare,
                isolated: false,
            },
        );
        out.push(Action::PublishWorker(key));
        // issue 14: notifications
        // The worker sets its launcher's latch itself when its entry runs, but its handle says
        // running only once this publish is done, which may come later (after the whole launch
        // batch): the supervisor sets the latch too, after the publish, so whichever comes last
        // finds both. A `needs_ready` worker's start is its readiness (`ready`).
        if !self.worker(key).is_some_and(|w| w.spec.needs_ready) {
            self.notify_launcher(key, out);
        }
        took
    }

    pub(super) fn launch_failed(
        &mut self,
        key: WorkerKey,
        error: &std::io::Error,
        now: Now,
        out: &mut Actions,
    ) -> Took {
        let Some(w) = self.worker_mut(key) else {
            return self.took(Row::StaleKey);
        };
        // issue 14: queue
        // A dynamic worker's fork or spawn failure is an answer to its launcher, not a retry: it
        // stops with the errno and its slot is freed at once. A failure without an errno (the
        // loop's own: its child slot still held by the previous process) passes, so it retries.
        if let (true, Some(errno)) = (w.is_dynamic(), error.raw_os_error()) {
            let took = rows::fired(Row::DynLaunchFailed, State::Worker(w.run.state));
            let reason = format!("launch failed: {error}");
            out.push(Action::Log(
                Level::Error,
                format!("cannot start dynamic worker {}: {error}; stopped", w.spec.name),
            ));
            w.run.state = WorkerState::Stopped;
            w.run.restart_at = None;
            w.run.restart_at_ms = None;
            w.run.launch_errno = Some(errno);
            w.run.last_exit = Some((ExitStatus::Code(0), now.wall_ms, reason));
            self.publish_or_retire(key, out);
            // issue 14: notifications
            self.notify_launcher(key, out);
            return took;
        }
        let took = rows::fired(Row::WorkerLaunchFailed, State::Worker(w.run.state));
        out.push(Action::Log(
            Level::Error,
            format!(
                "cannot start worker {}: {error}; retrying in {:?}",
                w.spec.name, LAUNCH_RETRY
            ),
        ));
        w.run.restart_in(LAUNCH_RETRY, now);
        out.push(Action::PublishWorker(key));
        // issue 14: notifications
        self.notify_launcher(key, out);
        took
    }

    /// A shutdown began: a restart or a first start still to come is cancelled.
    pub(super) fn cancel_restarts(&mut self, out: &mut Actions) {
        for w in self.workers.iter_mut().flatten() {
            if matches!(w.run.state, WorkerState::WaitingRestart | WorkerState::NotStarted) {
                rows::fired(Row::WorkerStartCancelled, State::Worker(w.run.state));
                w.run.state = WorkerState::Stopped;
                w.run.restart_at = None;
                w.run.restart_at_ms = None;
            }
        }
        for w in self.workers.iter().flatten() {
            out.push(Action::PublishWorker(w.key));
        }
    }

    /// After a crash reset: schedules the workers whose policy restarts them; returns how many.
    pub(super) fn reset_workers(&mut self, now: Now, out: &mut Actions) -> usize {
        let mut restarting = 0;
        for w in self.workers.iter_mut().flatten() {
            // issue 14: notifications
            if Core::reset_ends_with_launcher(w, now) {
                continue;
            }
            let policy = w.spec.restart;
            let r = &mut w.run;
            if r.state == WorkerState::NotStarted {
                // Never started (still waiting for its start time): it starts when that comes,
                // whatever its restart policy.
                continue;
            }
            if restarts_after_reset(r.state, policy) {
                rows::fired(Row::WorkerResetRestarts, State::Worker(r.state));
                r.state = WorkerState::WaitingRestart;
                r.restart_at = Some(now.mono);
                r.restart_at_ms = None;
                restarting += 1;
            } else if matches!(r.state, WorkerState::Running | WorkerState::WaitingRestart) {
                rows::fired(Row::WorkerResetStops, State::Worker(r.state));
                r.state = WorkerState::Stopped;
                r.restart_at = None;
                r.restart_at_ms = None;
                if matches!(policy, RestartPolicy::Never) && r.last_exit.is_none() {
                    r.last_exit = Some((
                        ExitStatus::Signal(libc::SIGQUIT),
                        now.wall_ms,
                        "stopped by a crash reset".into(),
                    ));
                }
            }
        }
        for w in self.workers.iter().flatten() {
            // issue 14: dynamic workers
            // A dynamic worker the reset leaves stopped or failed never runs again.
            if w.dynamic && matches!(w.run.state, WorkerState::Stopped | WorkerState::Failed) {
                out.push(Action::Retire(w.key));
            } else {
                out.push(Action::PublishWorker(w.key));
            }
        }
        restarting
    }

    /// The dynamic workers, for a new segment's worker slots.
    pub fn dynamic_workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers().filter(|w| w.dynamic)
    }
}
