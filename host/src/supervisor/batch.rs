//! Launching: the batch of workers the core asked for, split with a fork helper when that pays,
//! handed to a ready spare in exec mode, or started through `launch_child`; and the one place
//! any child is started and its slot taken from the pool and given back.
//!
//! Runs in: the supervisor. Every worker launch's result goes back to the core as
//! [`Event::Launched`] or [`Event::LaunchFailed`] before any other event.
//!
//! The batch lives on the stack: nothing the supervisor frees between forks (decision 49).

use super::core::{Actions, Event, WorkerKey, LAUNCH_BATCH};
use super::spares::WaitingSpare;
use super::{now, Supervisor};
use crate::shared::handoff::{ChildStart, ClientSocket, StartupData};
use crate::supervisor::launch::launch_child;
use crate::supervisor::pool::ChildSlotId;

/// The smallest batch of due workers worth a fork helper: below it, forking the helper costs
/// about as much as the forks it takes over.
const HELPER_MIN_BATCH: usize = 16;

impl Supervisor {
    /// Launches `due` (at most a batch); in fork mode, a helper forks the second half of a large
    /// batch while this process forks the first (decision 50).
    pub(super) fn launch_batch(&mut self, due: &[WorkerKey], out: &mut Actions) {
        // Each worker's own child slot, taken from the pool first (a slot still held by an
        // earlier process of the same worker is a launch that fails, and is retried).
        let mut batch = [(due[0], None::<ChildSlotId>); LAUNCH_BATCH];
        let mut n = 0;
        for &k in due {
            // issue 14: queue
            // The test-only knob fails a launch before any fork, spawn or hand-off.
            if let Some(e) = crate::sys::test_launch_failure() {
                self.core.handle(Event::LaunchFailed { key: k, error: &e }, now(), out);
                continue;
            }
            match self.pool.acquire_worker(k.slot) {
                Some(id) => {
                    batch[n] = (k, Some(id));
                    n += 1;
                }
                None => {
                    let busy = std::io::Error::other(format!("worker slot {} is still in use", k.slot));
                    self.core
                        .handle(Event::LaunchFailed { key: k, error: &busy }, now(), out);
                }
            }
        }
        let batch = &batch[..n];
        let mut split = batch.len();
        let mut helper = None;
        // issue 15: isolated
        // A helper's workers all start attached; a batch with an isolated one is forked here.
        let any_isolated = batch.iter().any(|(k, _)| self.isolated(*k));
        if let (Some(sib), true) = (self.sibling_fork, batch.len() >= HELPER_MIN_BATCH && !any_isolated) {
            let half = batch.len() / 2;
            for (k, _) in &batch[half..] {
                self.prepare_launch(k.slot);
                self.assign_child_slot(k.slot);
                // The kernel writes each new worker's pid here (see `ForkHelper::finish`).
                self.segment.child_slot(k.slot).clear_pid();
            }
            let slots = batch[half..].iter().map(|(k, _)| k.slot).collect();
            match crate::supervisor::launch::start_fork_helper(&self.env(), sib, slots) {
                Ok(h) => {
                    tracing::debug!(
                        "a fork helper starts {} of {} due workers",
                        batch.len() - half,
                        batch.len()
                    );
                    helper = Some(h);
                    split = half;
                }
                Err(e) => tracing::debug!("no fork helper ({e}): the supervisor forks the whole batch"),
            }
        }
        for &(k, id) in &batch[..split] {
            self.launch_worker(k, id.expect("taken above"), out);
        }
        if let Some(h) = helper {
            for (slot, result) in h.finish(&self.segment) {
                let Some(&(key, Some(id))) = batch[split..].iter().find(|(k, _)| k.slot == slot) else {
                    continue;
                };
                // `finish` checked that each pid is this process's child; one it already tracks
                // (another worker, a spare, an adopted process) was forged in shared memory.
                let result = result.and_then(|pid| {
                    crate::shared::protocol::admit_pid(slot, pid, |p| {
                        self.core.child(p).is_some() || self.core.adopted_from(p).is_some()
                    })
                    .map_err(std::io::Error::other)
                });
                if result.is_err() {
                    self.free_slot(id);
                }
                self.record_launch(key, id, result, None, out);
            }
        }
    }

    /// Clears a worker's launch timestamps in its child slot before it is launched.
    fn prepare_launch(&self, slot: u32) {
        // issue 14: readiness
        let notify = self.core.worker_in(slot).is_some_and(|w| w.notifies_entry());
        self.segment
            .child_slot(slot)
            .prepare_launch(crate::shared::shmem::monotonic_ns(), notify);
        // issue 14: dynamic workers
        // A request the slot's previous process left behind is not the new process's.
        crate::shared::handles::drop_request(self.segment.request_slot(slot));
    }

    // issue 15: isolated
    /// Whether the worker `key` names runs isolated (the supervisor's own registry says so).
    fn isolated(&self, key: WorkerKey) -> bool {
        self.core.worker(key).is_some_and(|w| w.spec.isolated)
    }

    fn launch_worker(&mut self, key: WorkerKey, id: ChildSlotId, out: &mut Actions) {
        let slot = key.slot;
        let isolated = self.isolated(key);
        self.prepare_launch(slot);
        // Only a spare that finished loading: one still loading could fail on a plugin file that
        // has changed since, and would report that older failure as this worker's. Never for an
        // isolated worker: a spare mapped the segment writable and runs plugin code already.
        let ready = self.spares.iter().position(|w| {
            !isolated
                && w.slot
                    .child_slot()
                    .is_some_and(|s| self.segment.child_slot(s).report().ready)
        });
        // issue 15: client spares: the spare's channel, if any, goes with its entry.
        match ready.map(|k| self.spares.swap_remove(k)) {
            Some(WaitingSpare { pid, slot: spare, .. }) => {
                // Hand the worker slot to a spare: it claims `slot` and runs the entry.
                self.assign_child_slot(slot);
                self.segment.child_slot(slot).expect_pid(pid);
                let sslot = spare.child_slot().expect("a spare has a child slot");
                self.segment.child_slot(sslot).hand_over(slot);
                self.handoffs.push(pid);
                self.spare_refill += 1;
                // The core's record of the spare becomes this worker's (same pid).
                self.record_launch(key, id, Ok(pid), Some(spare), out);
            }
            None => {
                let startup = StartupData::Worker {
                    worker_slot: slot,
                    isolated,
                };
                let result = self.start_child(id, &startup, None);
                // issue 15: isolated
                // The isolated worker cannot claim its latch (a write): the supervisor does, for
                // the pid it just learnt, and wakes the worker that waits for that.
                if let (true, Ok(pid)) = (isolated, &result) {
                    self.segment.child_slot(slot).latch().adopt_isolated(*pid);
                }
                self.record_launch(key, id, result, None, out);
            }
        }
    }

    fn record_launch(
        &mut self,
        key: WorkerKey,
        slot: ChildSlotId,
        result: std::io::Result<i32>,
        spare: Option<ChildSlotId>,
        out: &mut Actions,
    ) {
        match result {
            Ok(pid) => {
                self.core.handle(Event::Launched { key, pid, slot, spare }, now(), out);
                if let Some(w) = self.core.worker(key) {
                    tracing::debug!("started worker {} (pid {pid})", w.spec.name);
                }
            }
            Err(e) => self.core.handle(Event::LaunchFailed { key, error: &e }, now(), out),
        }
    }

    /// Marks a child slot as assigned to a child about to start, with no reason yet.
    pub(super) fn assign_child_slot(&self, slot: u32) {
        self.segment.child_slot(slot).assign();
    }

    /// Gives a slot back: to the pool, and its child slot in the segment marked free (with a
    /// spare's fields cleared for the next tenant).
    pub(super) fn free_slot(&mut self, id: ChildSlotId) {
        if let Some(s) = id.child_slot() {
            self.segment.child_slot(s).free();
        }
        if let Err(e) = self.pool.release(id) {
            tracing::error!("child-slot pool: {e}");
        }
        // issue 15: connections
        self.client_slot_freed(id);
    }

    /// Starts a child of `slot`'s kind in `slot` (taken from the pool) through `launch_child`.
    /// Its child slot is assigned first; if the launch fails, the slot is given back. The caller
    /// tells the core.
    pub(super) fn start_child(
        &mut self,
        slot: ChildSlotId,
        startup: &StartupData,
        client: Option<ClientSocket>,
    ) -> std::io::Result<i32> {
        let child_slot = slot.child_slot();
        if let Some(s) = child_slot {
            self.assign_child_slot(s);
        }
        let start = ChildStart {
            kind: slot.kind(),
            child_slot,
            startup,
            client,
        };
        let result = launch_child(&self.env(), start);
        if result.is_err() {
            self.free_slot(slot);
        }
        result
    }
}
