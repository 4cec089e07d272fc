//! The loop's side of launchers (issue 14: notifications): the startup child's dynamic-worker
//! requests, and setting a launcher's latch when the core asks for it.
//!
//! Runs in: the supervisor. The core decides who a launcher is, from its own child table
//! (`core/notify.rs`); this module only reads the startup child's request slot (bounded and
//! validated, as `intake` reads a worker's) and sets a latch in a child slot.
//!
//! Invariants: the startup child's request slot is read only while the core has a startup child,
//! and otherwise dropped; a latch is set only for a (child slot, pid) the core named, and SIGURG
//! goes to that pid, never to a pid read from the segment.

use super::Supervisor;
use crate::shared::handles::{answer, drop_request, take_request, Answer};
use crate::shared::handoff::ChildKind;

/// The launcher status shows for a worker a startup hook launched.
pub const STARTUP: &str = "startup";

impl Supervisor {
    /// A request from a startup hook: the startup child's request slot is at its child slot's
    /// index. The child runs every plugin's hooks, so the plugin a request names is its own
    /// claim, trusted as every child is, and validated like any registration (decision 123).
    pub(super) fn intake_startup(&mut self) {
        let i = self.layout.startup_request_slot();
        let r = self.segment.request_slot(i);
        let Some((seq, spec, queue_timeout)) = take_request(r) else {
            return;
        };
        // issue 14: queue: a request waiting in the queue still says REQUESTED.
        if self.core.is_queued(i, seq) {
            return;
        }
        if !self.core.children().any(|(_, c)| c.kind == ChildKind::Startup) {
            drop_request(r);
            return;
        }
        let refused = |why: String| {
            tracing::warn!("a startup hook asked for an invalid dynamic worker: {why}");
            // Nothing was adopted: whether the hook still waits does not matter.
            let _ = answer(r, seq, &Answer::Invalid(why));
        };
        match spec {
            Err(why) => refused(why),
            Ok(spec) if !self.cfg.preload_plugins.contains(&spec.plugin) => refused(format!(
                "plugin {:?} is not preloaded (host.preload_plugins: {})",
                spec.plugin,
                self.cfg.preload_plugins.join(", ")
            )),
            Ok(spec) => {
                // Status shows the launcher by name, as for a worker's launch.
                self.feed_request(STARTUP.to_owned(), i, seq, spec, queue_timeout);
            }
        }
    }

    /// Sets the latch of the launcher `pid`, the core's own live child in `child_slot`, and wakes
    /// it if it sleeps on the latch or handed out its fd.
    pub(super) fn set_launcher_latch(&self, child_slot: u32, pid: i32) {
        if self.segment.child_slot(child_slot).latch().set_current() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGURG);
        }
    }
}
