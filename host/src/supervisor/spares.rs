//! Spare children (exec mode): executed children with the plugins loaded and the segment mapped,
//! waiting to be handed a worker slot, so a worker starts without paying for an exec.
//!
//! Runs in: the supervisor. A spare is a child like any other in the core's table (kind spare);
//! handing it a worker turns its record into the worker's. Spares are refilled only when the
//! loop is idle, one per spare used, never for one that died unused.

use std::sync::atomic::Ordering;

use super::core::Event;
use super::Supervisor;
use crate::shared::handoff::{ChildKind, StartupData};
use crate::shared::shmem::CHILD_ACTIVE;
use crate::supervisor::pool::ChildSlotId;

impl Supervisor {
    /// Frees spare slots whose workers claimed their own slot, and starts spares when the loop
    /// has nothing else to launch.
    pub(super) fn tend_spares(&mut self) {
        if self.cfg.launch_mode != crate::shared::config::LaunchMode::Exec || !self.core.is_up() {
            return;
        }
        let claimed: Vec<i32> = self
            .handoffs
            .iter()
            .copied()
            .filter(|pid| {
                self.core
                    .child(*pid)
                    .and_then(|c| c.slot.child_slot())
                    .is_some_and(|w| {
                        let cs = self.segment.child_slot(w);
                        cs.state.load(Ordering::Acquire) == CHILD_ACTIVE && cs.pid.load(Ordering::Relaxed) == *pid
                    })
            })
            .collect();
        for pid in claimed {
            self.handoffs.retain(|p| *p != pid);
            if let Some(ss) = self.core.child_mut(pid).and_then(|c| c.spare.take()) {
                self.free_spare_slot(ss);
            }
        }
        while self.spare_refill > 0 && (self.spares.len() as u32) < crate::shared::shmem::SPARE_CHILDREN {
            // Neither a waiting spare nor an unclaimed hand-off holds the slot the pool gives.
            let Some(slot) = self.pool.acquire(ChildKind::Spare) else {
                break;
            };
            self.spare_refill -= 1;
            let ss = self
                .segment
                .child_slot(slot.child_slot().expect("a spare has a child slot"));
            ss.assign.store(0, Ordering::Relaxed);
            ss.ready.store(0, Ordering::Relaxed);
            match self.start_child(slot, &StartupData::Spare, None) {
                Ok(pid) => {
                    self.feed(Event::ChildStarted { pid, slot });
                    self.spares.push((pid, slot));
                }
                Err(e) => {
                    tracing::warn!("cannot start a spare child: {e}");
                    break;
                }
            }
        }
    }

    /// Gives a spare's slot back once the spare is gone or its worker claimed its own slot.
    pub(super) fn free_spare_slot(&mut self, id: ChildSlotId) {
        if let Some(s) = id.child_slot() {
            let cs = self.segment.child_slot(s);
            cs.assign.store(0, Ordering::Relaxed);
            cs.ready.store(0, Ordering::Relaxed);
        }
        self.free_slot(id);
    }
}
