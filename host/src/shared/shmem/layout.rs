//! Where everything in the segment lies, computed once from the frozen registry and the settings.
//!
//! Runs in: the supervisor (computes it before creating the segment; `steward check` too) and
//! exec-mode children (get it in the parameter blob and check the segment's header against it).
//!
//! Invariants: every part starts 64-byte aligned and the whole is at least 4096 bytes; the same
//! registry and settings always give the same layout; slot counts never change for a segment's
//! life.

use super::{Header, WorkerSlot};
use crate::shared::config::Config;
use crate::shared::locks::LockCell;
use crate::shared::protocol::ChildSlot;
use crate::shared::registry::Registry;

/// How many spare children exec mode keeps ready.
pub const SPARE_CHILDREN: u32 = 2;
const ALIGN: u64 = 64;

/// Where everything is, computed from the frozen registry and the settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub n_static_workers: u32,
    pub n_worker_slots: u32,
    pub n_connection_slots: u32,
    /// Slots for spare exec-mode children (see `supervisor`), after the startup child's.
    pub n_spare_slots: u32,
    pub child_slots_off: u64,
    pub worker_slots_off: u64,
    pub regions_off: u64,
    pub region_offsets: Vec<u64>,
    // issue 14: locks
    /// The lock table: one [`LockCell`] (a cache line) per lock of the registry, in its order.
    #[serde(default)]
    pub locks_off: u64,
    #[serde(default)]
    pub n_locks: u32,
    // issue 14: dynamic workers
    /// The request slots: one per child slot up to the startup child's, each requester's at its
    /// child slot's index.
    #[serde(default)]
    pub requests_off: u64,
    pub size: u64,
    // issue 15: connections
    /// Slots for client children of plugins' listeners, after the spares'.
    #[serde(default)]
    pub n_client_slots: u32,
}

fn align(v: u64) -> u64 {
    v.div_ceil(ALIGN) * ALIGN
}

impl Layout {
    /// The layout a host with `cfg` uses: `max_connections` ordinary connection slots and the ones
    /// reserved for `status` and `stop`. `run` and `check` both take it from here, so `check`
    /// reports the segment `run` would create.
    pub fn for_host(reg: &Registry, cfg: &Config) -> Layout {
        // A host without listeners serves no client: it gives their children no slot.
        let clients = if cfg.listeners.is_empty() {
            0
        } else {
            cfg.max_client_connections
        };
        Layout::compute_with_clients(
            reg,
            cfg.max_worker_processes,
            cfg.max_connections + crate::shared::control::RESERVED_CONNECTIONS,
            clients,
        )
    }

    pub fn compute(reg: &Registry, max_worker_processes: u32, max_connections: u32) -> Layout {
        Layout::compute_with_clients(reg, max_worker_processes, max_connections, 0)
    }

    /// As [`Layout::compute`], with `clients` child slots for plugins' client connections.
    pub fn compute_with_clients(
        reg: &Registry,
        max_worker_processes: u32,
        max_connections: u32,
        clients: u32,
    ) -> Layout {
        let n_static_workers = reg.workers.len() as u32;
        let n_worker_slots = n_static_workers + max_worker_processes;
        // Workers, connections, one slot for the startup child, and the spares'.
        let n_child = (n_worker_slots + max_connections + 1 + SPARE_CHILDREN + clients) as u64;
        let child_slots_off = align(std::mem::size_of::<Header>() as u64);
        let worker_slots_off = align(child_slots_off + n_child * std::mem::size_of::<ChildSlot>() as u64);
        let regions_off = align(worker_slots_off + n_worker_slots as u64 * std::mem::size_of::<WorkerSlot>() as u64);
        let mut next = regions_off;
        let mut region_offsets = Vec::with_capacity(reg.regions.len());
        for r in &reg.regions {
            region_offsets.push(next);
            next = align(next + r.size);
        }
        let locks_off = next;
        let n_locks = reg.locks.len() as u32;
        next = align(locks_off + n_locks as u64 * std::mem::size_of::<LockCell>() as u64);
        let requests_off = next;
        next = align(
            requests_off
                + Layout::n_request_slots_for(n_worker_slots, max_connections, SPARE_CHILDREN, clients) as u64
                    * std::mem::size_of::<crate::shared::handles::RequestSlot>() as u64,
        );
        Layout {
            n_static_workers,
            n_worker_slots,
            n_connection_slots: max_connections,
            n_spare_slots: SPARE_CHILDREN,
            child_slots_off,
            worker_slots_off,
            regions_off,
            region_offsets,
            locks_off,
            n_locks,
            requests_off,
            size: next.max(4096),
            n_client_slots: clients,
        }
    }

    // issue 14: notifications
    /// Request slots: each requester's at its child slot's index, the worker slots' and the
    /// connection slots' (issue 14: control), then the startup child's (startup hooks launch
    /// dynamic workers too).
    /// With client slots (issue 15: connections), the table runs up to the last of them, so a
    /// client child's request slot is at its child slot's index too; the spares' entries before
    /// them stay unused.
    fn n_request_slots_for(
        n_worker_slots: u32,
        n_connection_slots: u32,
        n_spare_slots: u32,
        n_client_slots: u32,
    ) -> u32 {
        match n_client_slots {
            0 => n_worker_slots + n_connection_slots + 1,
            _ => n_worker_slots + n_connection_slots + 1 + n_spare_slots + n_client_slots,
        }
    }

    pub fn n_request_slots(&self) -> u32 {
        Layout::n_request_slots_for(
            self.n_worker_slots,
            self.n_connection_slots,
            self.n_spare_slots,
            self.n_client_slots,
        )
    }

    /// The startup child's request slot: its child slot's index.
    pub fn startup_request_slot(&self) -> u32 {
        self.startup_child_slot()
    }

    /// The startup child's slot.
    pub fn startup_child_slot(&self) -> u32 {
        self.n_worker_slots + self.n_connection_slots
    }

    /// The child slot of spare number `k`.
    pub fn spare_child_slot(&self, k: u32) -> u32 {
        self.startup_child_slot() + 1 + k
    }

    // issue 15: connections
    /// The child slot of client connection number `i`.
    pub fn client_child_slot(&self, i: u32) -> u32 {
        self.spare_child_slot(self.n_spare_slots) + i
    }

    /// How many child slots there are, of every kind.
    pub fn n_child_slots(&self) -> u32 {
        self.client_child_slot(self.n_client_slots)
    }

    /// The child slot of connection number `i`.
    pub fn connection_child_slot(&self, i: u32) -> u32 {
        self.n_worker_slots + i
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::registry::RegionSpec;

    #[test]
    fn layout_counts_static_plus_dynamic_and_aligns_regions() {
        let mut reg = Registry::default();
        reg.add_region(RegionSpec {
            plugin: "p".into(),
            name: "a".into(),
            size: 10,
        })
        .unwrap();
        reg.add_region(RegionSpec {
            plugin: "p".into(),
            name: "b".into(),
            size: 100,
        })
        .unwrap();
        let l = Layout::compute(&reg, 8, 4);
        assert_eq!(l.n_worker_slots, 8);
        assert_eq!(l.connection_child_slot(0), 8);
        assert!(l.region_offsets.iter().all(|o| o % 64 == 0));
        assert!(l.region_offsets[1] >= l.region_offsets[0] + 10);
        assert!(l.size >= l.region_offsets[1] + 100);
        assert_eq!(l.n_locks, 0);
    }

    #[test]
    fn the_lock_table_follows_the_regions_one_cache_line_per_lock() {
        let mut reg = Registry::default();
        reg.add_region(RegionSpec {
            plugin: "p".into(),
            name: "a".into(),
            size: 10,
        })
        .unwrap();
        for name in ["x", "y", "z"] {
            reg.add_lock(crate::shared::registry::LockSpec {
                plugin: "p".into(),
                name: name.into(),
            })
            .unwrap();
        }
        let l = Layout::compute(&reg, 2, 2);
        assert_eq!(l.n_locks, 3);
        assert_eq!(l.locks_off % 64, 0);
        assert!(l.locks_off >= l.region_offsets[0] + 10);
        assert!(l.size >= l.locks_off + 3 * 64);
    }
}
