//! Spare children: children with the plugins loaded and the segment mapped, waiting to be handed
//! a worker slot, so a worker starts without paying for an exec (exec mode) or a fork of the
//! supervisor and the child's set-up around it (fork mode, decision 133).
//!
//! Runs in: the supervisor. A spare is a child like any other in the core's table (kind spare);
//! handing it a worker turns its record into the worker's. Spares are refilled only when the
//! loop is idle, one per spare used, never for one that died unused.

use std::os::fd::OwnedFd;

use super::core::Event;
use super::pool::ChildSlotId;
use super::Supervisor;
use crate::shared::handoff::{ChildKind, StartupData};

/// A spare the loop started that was not handed anything yet.
pub(super) struct WaitingSpare {
    pub pid: i32,
    pub slot: ChildSlotId,
    // issue 15: client spares
    /// The supervisor's end of its channel, on a host with listeners (`client_spares`); closed
    /// with this entry, when the spare is handed anything or reaped.
    pub channel: Option<OwnedFd>,
}

impl Supervisor {
    /// Frees spare slots whose workers claimed their own slot, and starts spares when the loop
    /// has nothing else to launch.
    pub(super) fn tend_spares(&mut self) {
        if !self.core.is_up() {
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
                    .is_some_and(|w| self.segment.child_slot(w).report().claimed_by(*pid))
            })
            .collect();
        for pid in claimed {
            self.handoffs.retain(|p| *p != pid);
            if let Some(ss) = self.core.child_mut(pid).and_then(|c| c.spare.take()) {
                self.free_slot(ss);
            }
        }
        while self.spare_refill > 0 && (self.spares.len() as u32) < crate::shared::shmem::SPARE_CHILDREN {
            // Neither a waiting spare nor an unclaimed hand-off holds the slot the pool gives.
            let Some(slot) = self.pool.acquire(ChildKind::Spare) else {
                break;
            };
            self.spare_refill -= 1;
            // issue 15: client spares
            let (ours, theirs) = match self.spare_channel() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("cannot make a spare child's channel: {e}");
                    self.free_slot(slot);
                    break;
                }
            };
            match self.start_child(slot, &StartupData::Spare, theirs) {
                Ok(pid) => {
                    self.feed(Event::ChildStarted { pid, slot });
                    self.spares.push(WaitingSpare {
                        pid,
                        slot,
                        channel: ours,
                    });
                }
                Err(e) => {
                    tracing::warn!("cannot start a spare child: {e}");
                    break;
                }
            }
        }
    }
}
