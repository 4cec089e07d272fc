//! A spare: a child that has loaded the plugins and mapped the segment before any worker needs
//! it, and becomes the worker it is handed.
//!
//! Runs in: spare children, in both launch modes. An exec-mode spare is an executed `steward
//! child`; a fork-mode spare is forked from the supervisor when its loop is idle (decision 133)
//! and so shares the supervisor's loaded plugins, as a worker forked at launch would.
//!
//! On a host with listeners a spare can be handed a plugin's client instead (issue 15: client
//! spares, decision 160): the slot it is handed is then a client child slot, and the client's
//! socket waits on the spare's channel (`shared::spare_channel`), which came as its startup's
//! client socket.

use std::sync::atomic::Ordering;

use crate::child::runtime::RELOAD;
use crate::child::worker::worker_main;
use crate::child::{exit, exit_clean};
use crate::shared::handoff::{ChildEnv, ClientSocket};
use crate::shared::protocol::ChildSlot;

// issue 15: client spares
/// How much a spare populates ahead of time, over all its mappings (decision 171): of its loaded
/// objects' code and read-only data (what it may read from disk at each refill), and of its
/// heap, stack and objects' data (what becomes its own memory). Beyond these the memory and the
/// reads would cost more than the faults they save.
const PREFAULT_BUDGET: crate::sys::PrefaultBudget = crate::sys::PrefaultBudget {
    read: 16 << 20,
    write: 4 << 20,
};

/// How long a new spare waits to be handed something before it fills its page tables.
const PREFAULT_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

/// Whether any loaded plugin's file is no longer the file that was loaded (compared with the
/// identity taken before loading, so a replacement during loading counts as a change).
fn plugin_files_changed() -> bool {
    crate::shared::preload::plugins()
        .iter()
        .any(|p| crate::shared::preload::file_id(&p.path) != Some(p.file_id))
}

/// A spare child: plugins are loaded and the segment mapped; it waits to be handed a worker
/// slot, claims that worker's child slot (its dead-man flag) and becomes the worker. In exec
/// mode, if a plugin file changed since it was loaded, it executes itself again first, so the
/// worker runs (or fails on) the file as it is now, exactly like a freshly executed child.
pub fn spare_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>, channel: Option<ClientSocket>) -> i32 {
    crate::shared::log::set_identity("spare", None);
    let Some(own) = slot else {
        exit_clean(None, 2, "spare child without a slot")
    };

    // Plugins are loaded and the segment is mapped: this spare can take a worker now.
    own.mark_ready();
    // issue 15: client spares
    // A spare nothing was handed to for `PREFAULT_AFTER` fills its page tables, and stops once
    // something is (decision 162): under a stream of clients or launches a spare is used sooner
    // and never spends a core on it. One timed wait per spare, at its start: an idle host's
    // spares still never wake.
    own.wait_for_hand_over(Some(PREFAULT_AFTER));
    if own.assigned().is_none() {
        crate::sys::populate_own_mappings(PREFAULT_BUDGET, || own.assigned().is_some());
    }
    // Blocks with no timeout: an idle host must not wake its spares (they would cost every idle
    // host a wake-up per spare and tick). Only three things end the wait: the supervisor's
    // hand-off (a store and a FUTEX_WAKE on `assign`), a signal (SIGHUP sets the reload flag,
    // SIGTERM and SIGQUIT end the process), and the host's death, which kills this process
    // through `PR_SET_PDEATHSIG` (set in `run`, after which the parent was checked, so a host
    // that died earlier was seen there). The parent check after each return is a cheap second
    // line, never a reason to wake.
    let worker_slot = loop {
        if let Some(w) = own.assigned() {
            break w;
        }
        own.wait_for_hand_over(None);
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != env.host_pid {
            exit(1);
        }
    };
    let layout = &env.segment.layout;
    // issue 15: client spares: a client child slot means a client waits on the channel.
    let to_client = layout.n_client_slots > 0
        && (layout.client_child_slot(0)..layout.client_child_slot(layout.n_client_slots)).contains(&worker_slot);
    if worker_slot >= layout.n_worker_slots && !to_client {
        exit_clean(slot, 2, "spare handed a worker slot out of range");
    }
    let exec = env.cfg.launch_mode == crate::shared::config::LaunchMode::Exec;
    // A forked spare shares the supervisor's loaded plugins, as a freshly forked worker would:
    // only an executed spare can have loaded a file that has since changed. One handed a client
    // does so too, and runs the plugins' initialisers before it claims the client slot: a crash
    // there ends only that client (decision 172).
    if exec && plugin_files_changed() {
        // The new image starts with default dispositions: block what the supervisor sends until
        // its handlers are in place, as for a spawned child (see `sys::spawn_blocked_signals`).
        let blocked = crate::sys::spawn_blocked_signals();
        // SAFETY: rewinding the blob fd this process kept open, blocking signals (restored by
        // the new image's `child::run`), then replacing the process image with the same program;
        // on failure execv returns and we report it.
        unsafe {
            libc::sigprocmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
            libc::lseek(crate::shared::handoff::FD_BLOB, 0, libc::SEEK_SET);
            let argv = [c"steward".as_ptr(), c"child".as_ptr(), std::ptr::null()];
            libc::execv(c"/proc/self/exe".as_ptr(), argv.as_ptr());
        }
        let reason = format!("cannot execute steward again: {}", std::io::Error::last_os_error());
        env.segment.child_slot(worker_slot).set_reason(&reason);
        exit_clean(slot, 2, &reason);
    }
    if exec {
        // SAFETY: the blob fd is ours and no longer needed (a forked spare has none).
        unsafe { libc::close(crate::shared::handoff::FD_BLOB) };
    }
    let cs = env.segment.child_slot(worker_slot);
    // issue 15: client spares
    // The client is taken before the slot is claimed: a spare without one leaves the client slot
    // unclaimed, and its exit is an ordinary client child's failure.
    let handed = match (to_client, &channel) {
        (true, Some(chan)) => match crate::shared::spare_channel::recv(&chan.fd) {
            Ok(h) => Some(h),
            Err(reason) => {
                // Its own slot is not the one the supervisor reads for this exit: the log says why.
                let reason = format!("spare handed a client: {reason}");
                tracing::error!("{reason}");
                exit_clean(slot, 2, &reason)
            }
        },
        (true, None) => {
            tracing::error!("spare handed a client but it has no channel");
            exit_clean(slot, 2, "spare handed a client but it has no channel")
        }
        (false, _) => None,
    };
    // A worker has no use for the channel; a client child no more once its client is here.
    drop(channel);
    cs.activate();
    if RELOAD.swap(false, Ordering::SeqCst) {
        // A reload arrived while this child waited: start the worker with the new values.
        crate::shared::reload::refresh_child_settings();
    }
    match handed {
        Some(h) => {
            let client = ClientSocket {
                fd: h.fd,
                local: h.local,
                peer: h.peer,
            };
            crate::child::client::client_main(env, Some(cs), client, h.listener)
        }
        None => worker_main(env, Some(cs), worker_slot),
    }
}
