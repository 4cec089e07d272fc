//! The dead-end children of the plugins' listeners (review of plugin connections): a bound of
//! their own, apart from the control socket's.
//!
//! Runs in: the supervisor only, as part of [`ChildSlotPool`].
//!
//! Owns: the two bounds; the dead-end span's positions from `control_dead_ends` on. The span
//! holds the control socket's dead-ends first ([`dead_end_capacity`]`(C)`, handed out by
//! `acquire(DeadEnd)`), then the listeners' ([`client_capacity`], handed out by
//! [`ChildSlotPool::acquire_client_dead_end`]). Invariant: neither ever takes the other's, so a
//! flood of plugin clients, each refused into a dead-end, never leaves an operator's refused
//! `status` without its one-line answer (decision 166). Both kinds of dead-end are released
//! alike, by their position.

use super::{ChildSlotId, ChildSlotPool};
use crate::shared::handoff::ChildKind;

/// How many of the control socket's dead-end children may live at once: past it, a refused
/// client's socket is closed unanswered, so a flood cannot make the supervisor fork unbounded.
pub fn dead_end_capacity(n_connection_slots: u32) -> u32 {
    n_connection_slots.saturating_mul(2).saturating_add(8)
}

/// How many dead-end children the plugins' listeners may have at once, for `n_client_slots`
/// client slots (`max_client_connections`; 0 without listeners): `2 n + 8`, as the control
/// socket's bound for its connections.
pub fn client_capacity(n_client_slots: u32) -> u32 {
    match n_client_slots {
        0 => 0,
        n => n.saturating_mul(2).saturating_add(8),
    }
}

impl ChildSlotPool {
    /// Takes the lowest free dead-end slot of the listeners' clients; `None` when all are taken.
    pub fn acquire_client_dead_end(&mut self) -> Option<ChildSlotId> {
        let s = self.span(ChildKind::DeadEnd);
        let pos = self.next(s, self.control_dead_ends, s.len, false)?;
        self.set(s, pos, true);
        Some(self.id(ChildKind::DeadEnd, s, pos))
    }

    /// Whether the child holding `id` may run plugin code, and so leave processes behind: its
    /// kind's `runs_plugin_code`, or a dead-end of a plugin's listener, which loads the handler's
    /// library and runs its rejection writer (the control socket's dead-ends run only the
    /// host's code).
    pub fn runs_plugin_code(&self, id: ChildSlotId) -> bool {
        id.kind.info().runs_plugin_code || (id.kind == ChildKind::DeadEnd && id.index >= self.control_dead_ends)
    }

    /// How many dead-end slots the listeners' clients have.
    pub fn client_dead_end_capacity(&self) -> u32 {
        self.span(ChildKind::DeadEnd).len - self.control_dead_ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::registry::Registry;
    use crate::shared::shmem::Layout;

    /// Clients refused in a flood fill their own dead-ends only: the control socket's stay free,
    /// and a freed client dead-end serves the next client.
    #[test]
    fn client_dead_ends_never_take_the_control_sockets() {
        let layout = Layout::compute_with_clients(&Registry::default(), 4, 3, 5);
        let mut pool = ChildSlotPool::new(&layout, 1, true).unwrap();
        assert_eq!(pool.client_dead_end_capacity(), 2 * 5 + 8);
        assert_eq!(
            pool.capacity(ChildKind::DeadEnd),
            dead_end_capacity(3) + client_capacity(5)
        );
        let clients: Vec<_> = std::iter::from_fn(|| pool.acquire_client_dead_end()).collect();
        assert_eq!(clients.len(), 18);
        let control: Vec<_> = std::iter::from_fn(|| pool.acquire(ChildKind::DeadEnd)).collect();
        assert_eq!(
            control.len() as u32,
            dead_end_capacity(3),
            "the control socket's are all free"
        );
        assert!(pool.acquire_client_dead_end().is_none());
        pool.release(clients[4]).unwrap();
        assert!(pool.acquire(ChildKind::DeadEnd).is_none(), "never a client's");
        assert_eq!(pool.acquire_client_dead_end(), Some(clients[4]));
        pool.release(control[0]).unwrap();
        assert!(pool.acquire_client_dead_end().is_none(), "never the control socket's");
        assert_eq!(pool.acquire(ChildKind::DeadEnd), Some(control[0]));
    }

    /// A listener's dead-end runs plugin code (its handler's rejection writer), so a process it
    /// leaves behind is attributed to it; the control socket's dead-ends never do.
    #[test]
    fn only_the_listeners_dead_ends_run_plugin_code() {
        let layout = Layout::compute_with_clients(&Registry::default(), 4, 3, 5);
        let mut pool = ChildSlotPool::new(&layout, 1, true).unwrap();
        let control = pool.acquire(ChildKind::DeadEnd).unwrap();
        let client = pool.acquire_client_dead_end().unwrap();
        assert!(!pool.runs_plugin_code(control));
        assert!(pool.runs_plugin_code(client));
        let connection = pool.acquire(ChildKind::Connection).unwrap();
        assert!(!pool.runs_plugin_code(connection));
        let served = pool.acquire(ChildKind::Client).unwrap();
        assert!(pool.runs_plugin_code(served));
    }

    /// A host without listeners has no client dead-ends, and its control socket keeps `2 C + 8`.
    #[test]
    fn no_listeners_no_client_dead_ends() {
        let layout = Layout::compute_with_clients(&Registry::default(), 4, 3, 0);
        let mut pool = ChildSlotPool::new(&layout, 1, true).unwrap();
        assert_eq!(pool.client_dead_end_capacity(), 0);
        assert!(pool.acquire_client_dead_end().is_none());
        assert_eq!(pool.capacity(ChildKind::DeadEnd), dead_end_capacity(3));
    }
}
