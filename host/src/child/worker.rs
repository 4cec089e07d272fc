//! A worker child: finds its worker slot, resolves the plugin's entry, and calls it with the
//! runtime's table.
//!
//! Runs in: worker children (and spares, which become one). The exit code and the reason the
//! plugin gave are what the supervisor reads back.

use std::sync::atomic::Ordering;

use crate::child::runtime::{runtime, Identity};
use crate::child::{entry_returned, exit_clean};
use crate::shared::handoff::ChildEnv;
use crate::shared::protocol::ChildSlot;

pub fn worker_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>, worker_slot: u32) -> i32 {
    if worker_slot >= env.segment.layout.n_worker_slots {
        exit_clean(slot, 2, "worker slot out of range");
    }
    let ws = env.segment.worker_slot(worker_slot);
    let name = ws.name.load();
    crate::shared::log::set_identity("worker", Some(&name));
    let (library, function) = (ws.library.load(), ws.function.load());
    let entry = match crate::shared::preload::resolve_entry(&library, &function) {
        Ok(e) => e,
        Err(reason) => {
            tracing::error!("cannot start: {reason}");
            exit_clean(slot, 2, &reason);
        }
    };
    let who = Identity {
        name,
        worker_type: ws.worker_type.load(),
        plugin: ws.plugin.load(),
        arg: ws.arg.load(Ordering::Relaxed),
        extra: ws.extra.load_bytes(),
    };
    let api = runtime(env, slot, who, false);
    crate::shared::hostapi::with_state(|s| s.failure = None);
    if let Some(s) = slot {
        s.mark_entered(crate::shared::shmem::monotonic_ns());
        // issue 14: dynamic workers
        // Whoever waits on this worker's handle for its start-up looks again, and its launcher
        // is told (issue 14: notifications).
        crate::shared::handles::entry_runs(env.segment, worker_slot);
        // issue 14: readiness
        // Others start after this worker, which does not declare readiness itself: its entry
        // running is its readiness.
        if s.notifies_entry() && s.declare_ready() {
            super::runtime::wake_supervisor(env.host_pid);
        }
    }
    // SAFETY: `entry` passed the magic, ABI and fingerprint checks; the SDK's wrapper catches
    // panics inside the plugin.
    let code = unsafe { entry(api) };
    let reason = crate::shared::hostapi::with_state(|s| s.failure.take()).unwrap_or_default();
    entry_returned(slot, code, &reason)
}
