//! The dynamic-worker queue and slot reservations (issue 14: queue): which plugin may take a
//! dynamic slot now, the requests that wait for one (`.queue_timeout(d)`), and the worker a
//! requester gave up on in the instant it was adopted.
//!
//! Runs in: the supervisor, inside [`Core`]; no system call, as everywhere in the core. Time
//! comes in as [`Now`], and the queue's earliest deadline joins [`Core::next_deadline`].
//!
//! Owns: the FIFO of queued requests and the per-plugin reservations (`reserved_worker_slots`,
//! fixed at start).
//!
//! Invariants: a plugin using fewer dynamic slots than it reserved is always admitted (the
//! reservations sum to at most the dynamic slots, which the configuration checks); the others
//! share what no reservation holds, so no plugin takes a slot reserved for another. A queued
//! request is answered exactly once: served, expired (`NoFreeSlot`) or, when the host stops
//! being up, "host not running"; one whose requester is no longer the process that asked is
//! dropped unanswered (nobody waits for it). Each requester (worker slot) has at most one entry,
//! so the queue is bounded by the worker slots. Requests are served in order, skipping those
//! admission still refuses, so no plugin blocks another at the head of the line; a new request
//! is admitted only after the queue was served, so it never takes a slot a queued one may have.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::rows::{self, State, Took};
use super::{Action, Actions, Core, Level, Now, Row, WorkerKey};
use crate::shared::handles::Answer;
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::registry::WorkerSpec;

/// A request waiting for a dynamic slot (from a worker, or a connection child).
#[derive(Debug)]
pub(super) struct Queued {
    /// The requester's worker slot (its request slot).
    from: u32,
    /// The requester's process when it asked: a restarted requester is not the one waiting.
    from_pid: i32,
    seq: u32,
    spec: WorkerSpec,
    deadline: Instant,
}

/// The queue and the reservations.
#[derive(Debug, Default)]
pub(super) struct Queue {
    waiting: VecDeque<Queued>,
    /// Dynamic slots reserved per plugin (plugins with none are absent).
    reserved: BTreeMap<String, u32>,
    /// Workers adopted from the queue, with their requester's slot, until the loop asks whose
    /// they were (when it publishes them, in the same turn).
    served: Vec<(WorkerKey, u32)>,
}

/// Why admission refused: the counts `NoFreeSlot` reports.
struct Full {
    /// Dynamic slots this plugin cannot take: in use, or reserved for other plugins and free.
    used: u32,
    /// Dynamic slots in all.
    max: u32,
}

impl Core {
    /// Sets the dynamic slots reserved per plugin (from `reserved_worker_slots`, before
    /// [`super::Event::Start`]); zero entries are dropped.
    pub fn set_reserved(&mut self, reserved: BTreeMap<String, u32>) {
        self.queue.reserved = reserved.into_iter().filter(|(_, n)| *n > 0).collect();
    }

    /// Requests waiting in the queue now (status shows it).
    pub fn queued(&self) -> usize {
        self.queue.waiting.len()
    }

    /// The requester's slot of `key`, if it was adopted from the queue (once).
    pub fn take_served_from(&mut self, key: WorkerKey) -> Option<u32> {
        let i = self.queue.served.iter().position(|(k, _)| *k == key)?;
        Some(self.queue.served.swap_remove(i).1)
    }

    /// The process in child slot `from` (a worker's child slot is its worker slot; a connection
    /// or startup child's is its own): who a queued request waits for.
    fn requester_pid(&self, from: u32) -> Option<i32> {
        self.requester(from).map(|l| l.pid)
    }

    /// Whether request `seq` of the requester in slot `from` waits in the queue: its request slot
    /// still says `REQUESTED`, and the loop must not take it again on the next wake-up (which
    /// would put it back at the end of the line with a new deadline).
    pub fn is_queued(&self, from: u32, seq: u32) -> bool {
        self.queue.waiting.iter().any(|q| q.from == from && q.seq == seq)
    }

    /// Whether `plugin` may take a dynamic slot now (design §2.3): under its reservation it
    /// may; otherwise only if the slots no reservation holds are not all taken by plugins over
    /// their own reservation.
    fn admit(&self, plugin: &str) -> Result<(), Full> {
        let n_static = self.workers().filter(|w| !w.is_dynamic()).count() as u32;
        let max = self.max_workers.saturating_sub(n_static);
        let mut used: BTreeMap<&str, u32> = BTreeMap::new();
        for w in self.workers().filter(|w| w.is_dynamic()) {
            *used.entry(w.spec.plugin.as_str()).or_default() += 1;
        }
        let total: u32 = used.values().sum();
        let reserved = |p: &str| self.queue.reserved.get(p).copied().unwrap_or(0);
        let held: u32 = self.queue.reserved.values().sum();
        let over: u32 = used.iter().map(|(p, n)| n.saturating_sub(reserved(p))).sum();
        let mine = used.get(plugin).copied().unwrap_or(0);
        let fits = total < max && (mine < reserved(plugin) || over < max.saturating_sub(held));
        if fits {
            return Ok(());
        }
        let others_free: u32 = self
            .queue
            .reserved
            .iter()
            .filter(|(p, _)| p.as_str() != plugin)
            .map(|(p, n)| n.saturating_sub(used.get(p.as_str()).copied().unwrap_or(0)))
            .sum();
        Err(Full {
            used: (total + others_free).min(max),
            max,
        })
    }

    /// Adds `spec`, which admission let in, and answers `Adopted`; `None` (answered
    /// `NoFreeSlot`) if the table has no slot after all.
    fn adopt_request(&mut self, from: u32, seq: u32, spec: WorkerSpec, out: &mut Actions) -> Option<WorkerKey> {
        let name = spec.name.clone();
        // issue 14: notifications: who launched it, from the core's own table of children.
        let launcher = self.requester(from);
        match self.add_worker(spec) {
            Ok(key) => {
                self.adopt(key, launcher);
                out.push(Action::Log(
                    Level::Debug,
                    format!(
                        "dynamic worker {name} added in slot {} (generation {})",
                        key.slot, key.generation
                    ),
                ));
                // Published before the answer names it, so a handle never sees an empty slot.
                out.push(Action::PublishRegistration(key));
                out.push(Action::Answer {
                    to: from,
                    seq,
                    answer: Answer::Adopted {
                        slot: key.slot,
                        generation: key.generation,
                    },
                });
                Some(key)
            }
            Err(_) => {
                let (used, max) = self.dynamic_use();
                out.push(Action::Answer {
                    to: from,
                    seq,
                    answer: Answer::NoFreeSlot { used, max },
                });
                None
            }
        }
    }

    /// The requester in child slot `from` (a running worker, the startup child or a connection
    /// child) asked for a dynamic worker, waiting up to
    /// `queue_timeout` for a slot if none is free.
    pub(super) fn request(
        &mut self,
        from: u32,
        seq: u32,
        spec: WorkerSpec,
        queue_timeout: Option<Duration>,
        now: Now,
        out: &mut Actions,
    ) -> Took {
        if !self.is_up() {
            let took = self.took(Row::RequestNotUp);
            out.push(Action::Answer {
                to: from,
                seq,
                answer: Answer::HostNotRunning,
            });
            return took;
        }
        // One request per requester at a time: an older entry was given up on.
        self.queue.waiting.retain(|q| q.from != from);
        // review: launch queue
        // A slot freed since the last deadline (the loop reaps, then takes requests, then
        // handles the deadline) goes to the queue first, in order: a newcomer never overtakes.
        self.serve_queue(now, out);
        // issue 14: notifications: a duplicate name or an unknown `start_after` is refused
        // before it takes a slot or a place in the queue.
        if let Some(why) = self.refusal(&spec) {
            return self.refuse(from, seq, why, out);
        }
        match self.admit(&spec.plugin) {
            Ok(()) => {
                let took = self.took(Row::RequestAdopted);
                self.adopt_request(from, seq, spec, out);
                took
            }
            Err(_) if queue_timeout.is_some_and(|d| !d.is_zero()) => {
                let took = self.took(Row::RequestQueued);
                let from_pid = self.requester_pid(from).unwrap_or(0);
                out.push(Action::Log(
                    Level::Debug,
                    format!("dynamic worker {} queued for a free slot", spec.name),
                ));
                self.queue.waiting.push_back(Queued {
                    from,
                    from_pid,
                    seq,
                    spec,
                    deadline: now.mono + queue_timeout.unwrap_or_default(),
                });
                took
            }
            Err(full) => {
                let took = self.took(Row::RequestRefused);
                out.push(Action::Answer {
                    to: from,
                    seq,
                    answer: Answer::NoFreeSlot {
                        used: full.used,
                        max: full.max,
                    },
                });
                took
            }
        }
    }

    /// At every deadline: while up, serves the queue in order as admission allows and expires
    /// what waited too long without a slot; otherwise answers every queued request "host not
    /// running".
    pub(super) fn serve_queue(&mut self, now: Now, out: &mut Actions) {
        if self.queue.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.queue.waiting);
        let mut refused = std::collections::BTreeSet::new();
        for q in waiting {
            if !self.is_up() {
                rows::fired(Row::QueueHostDown, State::Host(super::rows::Step::of(self.phase)));
                out.push(Action::Answer {
                    to: q.from,
                    seq: q.seq,
                    answer: Answer::HostNotRunning,
                });
                continue;
            }
            if self.requester_pid(q.from) != Some(q.from_pid) {
                // The process that asked is gone: nobody waits for the answer.
                self.took(Row::QueueRequesterGone);
                continue;
            }
            // A worker of that name may have come while it waited (issue 14: notifications).
            if let Some(why) = self.refusal(&q.spec) {
                self.refuse(q.from, q.seq, why, out);
                continue;
            }
            // Adoptions in this pass only make admission stricter: a plugin refused once stays
            // refused until the next deadline.
            let admitted = !refused.contains(&q.spec.plugin) && self.admit(&q.spec.plugin).is_ok();
            if admitted {
                self.took(Row::QueueServed);
                if let Some(key) = self.adopt_request(q.from, q.seq, q.spec, out) {
                    self.queue.served.push((key, q.from));
                }
                continue;
            }
            refused.insert(q.spec.plugin.clone());
            if now.mono >= q.deadline {
                self.took(Row::QueueExpired);
                let (used, max) = match self.admit(&q.spec.plugin) {
                    Err(full) => (full.used, full.max),
                    Ok(()) => self.dynamic_use(),
                };
                out.push(Action::Answer {
                    to: q.from,
                    seq: q.seq,
                    answer: Answer::NoFreeSlot { used, max },
                });
                continue;
            }
            self.queue.waiting.push_back(q);
        }
    }

    /// When the queue next needs a deadline: now if its head could be served, else its
    /// earliest expiry.
    pub(super) fn queue_deadline(&self, now: Now) -> Option<Instant> {
        // Each plugin once: admission depends on the plugin, not on the request.
        let plugins: std::collections::BTreeSet<&str> =
            self.queue.waiting.iter().map(|q| q.spec.plugin.as_str()).collect();
        if plugins.into_iter().any(|p| self.admit(p).is_ok()) {
            return Some(now.mono);
        }
        self.queue.waiting.iter().map(|q| q.deadline).min()
    }

    /// The answer adopting `key` found its request cancelled (the requester's deadline passed
    /// in the same instant): nobody holds a handle to the worker, so it stops for good before
    /// it runs and is retired.
    pub(super) fn request_cancelled(&mut self, key: WorkerKey, now: Now, out: &mut Actions) -> Took {
        let Some(w) = self.worker_mut(key) else {
            return self.took(Row::StaleKey);
        };
        if w.run.state != WorkerState::NotStarted {
            // Launched already (not a path the loop takes): stopped as a terminate would.
            return self.terminate(key, now, out);
        }
        let took = rows::fired(Row::RequestOrphaned, State::Worker(w.run.state));
        w.run.terminated = true;
        w.run.state = WorkerState::Stopped;
        w.run.last_exit = Some((
            ExitStatus::Code(0),
            now.wall_ms,
            "its launcher gave up waiting for the answer".into(),
        ));
        let name = w.spec.name.clone();
        out.push(Action::Log(
            Level::Info,
            format!("dynamic worker {name}: its launcher gave up before the answer; not started"),
        ));
        self.publish_or_retire(key, out);
        took
    }
}
