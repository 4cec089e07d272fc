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
use crate::shared::shmem::{CHILD_ACTIVE, CHILD_FREE};

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
                self.core.child(*pid).and_then(|c| c.child_slot).is_some_and(|w| {
                    let cs = self.segment.child_slot(w);
                    cs.state.load(Ordering::Acquire) == CHILD_ACTIVE && cs.pid.load(Ordering::Relaxed) == *pid
                })
            })
            .collect();
        for pid in claimed {
            self.handoffs.retain(|p| *p != pid);
            if let Some(ss) = self.core.child_mut(pid).and_then(|c| c.spare_slot.take()) {
                self.free_spare_slot(ss);
            }
        }
        while self.spare_refill > 0 && (self.spares.len() as u32) < crate::shared::shmem::SPARE_CHILDREN {
            let Some(sslot) = self.free_spare_child_slot() else {
                break;
            };
            self.spare_refill -= 1;
            let ss = self.segment.child_slot(sslot);
            ss.assign.store(0, Ordering::Relaxed);
            ss.ready.store(0, Ordering::Relaxed);
            match self.start_child(ChildKind::Spare, Some(sslot), &StartupData::Spare, None) {
                Ok(pid) => {
                    self.feed(Event::ChildStarted {
                        pid,
                        kind: ChildKind::Spare,
                        child_slot: Some(sslot),
                    });
                    self.spares.push((pid, sslot));
                }
                Err(e) => {
                    tracing::warn!("cannot start a spare child: {e}");
                    break;
                }
            }
        }
    }

    /// A spare slot that neither a waiting spare nor an unclaimed hand-off uses.
    fn free_spare_child_slot(&self) -> Option<u32> {
        (0..self.layout.n_spare_slots)
            .map(|k| self.layout.spare_child_slot(k))
            .find(|s| {
                self.segment.child_slot(*s).state.load(Ordering::Acquire) == CHILD_FREE
                    && !self.spares.iter().any(|(_, ss)| ss == s)
                    && !self.core.children().any(|(_, c)| c.spare_slot == Some(*s))
            })
    }

    pub(super) fn free_spare_slot(&self, s: u32) {
        let cs = self.segment.child_slot(s);
        cs.assign.store(0, Ordering::Relaxed);
        cs.ready.store(0, Ordering::Relaxed);
        cs.state.store(CHILD_FREE, Ordering::Release);
    }
}
