//! What runs in a child process: how every child starts and ends, and the dispatch to its kind.
//!
//! Runs in: children only, started by [`crate::supervisor::launch::launch_child`] (fork mode) or by
//! [`crate::child::exec_main::child_main`] (exec mode).
//!
//! A child first makes sure it cannot outlive the supervisor (`PR_SET_PDEATHSIG` plus a check of
//! its parent, and the death pipe for `wait`), sets its own signal dispositions and only then
//! unblocks signals (it starts with them blocked, so none is lost or kills it early), tags its log
//! lines, and marks its child slot active (the dead-man flag). It clears the flag only on a clean
//! exit through `exit_clean`, so any other way out counts as a crash. Plugin code runs only in
//! worker children, only through a checked entry. An isolated worker (issue 15) instead turns
//! its mapping read-only first and has no dead-man flag: it writes nothing in the segment.
//!
//! One file per kind of child, each entered from [`run`]: `worker` (a worker calls its plugin's
//! entry), `startup` (the startup hooks), `spare` (a child waiting to become a worker),
//! `connection` (the control protocol's server), `dead_end` (one refusal line); `runtime` is the
//! table of host functions plugin code gets in a worker or the startup child, and `exec_main` is
//! where an exec-mode child starts before it comes here.

// issue 15: connections
mod client;
mod connection;
mod dead_end;
pub mod exec_main;
mod runtime;
mod spare;
mod startup;
mod worker;

use std::io::Write;

use crate::child::connection::connection_main;
use crate::child::dead_end::dead_end_main;
use crate::child::runtime::on_hup;
use crate::child::spare::spare_main;
use crate::child::startup::startup_main;
use crate::child::worker::worker_main;
use crate::shared::handoff::{ChildEnv, ChildKind, ClientSocket, StartupData};
use crate::shared::protocol::ChildSlot;

/// Ends the process without unwinding or running atexit handlers of plugins.
pub fn exit(code: i32) -> ! {
    let _ = std::io::stderr().flush();
    // SAFETY: _exit has no preconditions. libc's, because std has none: `process::exit` would run
    // atexit handlers (plugins' among them) in a copy of the supervisor.
    unsafe { libc::_exit(code) }
}

/// Set once this child has begun a clean exit: from then on no thread of it takes a plugin lock
/// (see [`exit_clean`] and `runtime::api_lock_acquire`).
pub(crate) static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Clears the dead-man flag, records the reason, and exits with `code`; unless the child still
/// holds (or waits for) a plugin lock: that exit is a crash, as dying holding one is, because the
/// lock would stay taken in shared memory that every other worker uses. The flag then stays set,
/// and the supervisor resets shared memory.
fn exit_clean(slot: Option<&ChildSlot>, code: i32, reason: &str) -> ! {
    if let Some(s) = slot {
        // Announced before the count is read, and `runtime::api_lock_acquire` counts before it
        // reads this (both sequentially consistent): a plugin thread that takes a lock while this
        // thread exits is either counted here, which makes the exit a crash, or sees the flag
        // and never takes the lock.
        EXITING.store(true, std::sync::atomic::Ordering::SeqCst);
        let held = s.locks_held().load(std::sync::atomic::Ordering::SeqCst);
        if held > 0 {
            let locks = if held == 1 { "lock" } else { "locks" };
            tracing::error!(
                "exiting while holding {held} {locks} (a guard was leaked or never dropped); \
                 that is a crash: the host resets shared memory"
            );
            exit(code)
        }
        s.deactivate(reason);
    }
    exit(code)
}

// issue 15: isolated
/// Ends a child whose plugin entry returned `code`, failing with `reason` if it said why. An
/// isolated child (a worker or a client child) has no child slot to carry the reason to status
/// (a store): the log carries it.
fn entry_returned(slot: Option<&ChildSlot>, code: i32, reason: &str) -> ! {
    if crate::shared::isolation::active() && !reason.is_empty() {
        tracing::warn!("exiting with code {code}: {reason}");
    }
    exit_clean(slot, code, reason)
}

/// Runs a child of `kind` to completion and returns its exit code.
pub fn run(
    env: &ChildEnv<'_>,
    kind: ChildKind,
    child_slot: Option<u32>,
    startup: &StartupData,
    client: Option<ClientSocket>,
    prepare: impl FnOnce() -> Result<(), String>,
) -> i32 {
    // The supervisor decides how children stop: a terminal's Ctrl-C (SIGINT to the whole process
    // group) or hang-up (SIGHUP) must not kill them behind its back, which would read as a crash.
    // A write to a closed pipe or socket is an error, not a death (as in any Rust program).
    // Plugin code sees SIGHUP as a reload request; the flag is set even before its runtime exists
    // (exec-mode plugin loading), so no request is lost. Other kinds ignore it.
    let hup = if matches!(
        kind,
        ChildKind::Worker | ChildKind::Startup | ChildKind::Spare | ChildKind::Client
    ) {
        on_hup as *const () as libc::sighandler_t
    } else {
        libc::SIG_IGN
    };
    // Test-only (zero unless set): a signal sent to a new worker now must wait for the handlers
    // below.
    if kind == ChildKind::Worker {
        crate::sys::test_child_signal_delay();
    }
    crate::sys::reset_child_signals(&[
        (libc::SIGQUIT, on_quit as *const () as libc::sighandler_t),
        (libc::SIGINT, libc::SIG_IGN),
        (libc::SIGHUP, hup),
        (libc::SIGPIPE, libc::SIG_IGN),
    ]);
    if !crate::sys::die_with_parent(env.host_pid) {
        return 1;
    }
    // Before plugin loading (exec mode) and any rejection writer: a dead-end's time is bounded,
    // whatever its client or its plugin code does (decision 164).
    if kind == ChildKind::DeadEnd {
        crate::child::dead_end::arm_deadline();
    }
    // An exec-mode child checked the header when it mapped the segment; a forked one inherited
    // the mapping and checks it here, before relying on anything in it.
    if kind.info().attaches_shmem && env.cfg.launch_mode == crate::shared::config::LaunchMode::Fork {
        if let Err(e) = env.segment.check_header(env.generation, env.host_pid) {
            crate::shared::log::set_identity(kind.info().name, None);
            tracing::error!("{e}; exiting so that the host resets shared memory");
            exit(crate::shared::shmem::EXIT_CORRUPT_SEGMENT);
        }
    }
    // issue 15: isolated
    // Before anything of a plugin runs (exec mode loads plugins in `prepare` below): from here on
    // a store into the segment faults in this process alone. No dead-man flag either: the flag
    // is a store, and an isolated crash is only this child's.
    let isolated = startup.isolated();
    if isolated {
        if let Err(e) = crate::shared::isolation::enter(env.segment, child_slot) {
            crate::shared::log::set_identity(kind.info().name, None);
            tracing::error!("cannot map shared memory read-only for an isolated child: {e}");
            exit(2);
        }
    }
    let slot = match child_slot {
        Some(i) if kind.info().attaches_shmem && !isolated => {
            let s = env.segment.child_slot(i);
            s.activate();
            Some(s)
        }
        _ => None,
    };
    // Exec mode loads plugins here, with the dead-man flag set, so a failure is this child's
    // reported reason (exit 2: not restarted in a loop).
    if let Err(reason) = prepare() {
        tracing::error!("cannot start: {reason}");
        // A spare that was already handed a worker (it re-executed after a plugin file changed)
        // fails as that worker: the reason goes to the worker's slot, which it has not claimed.
        if let (ChildKind::Spare, Some(s)) = (kind, slot) {
            if let Some(w) = s.assigned().filter(|w| *w < env.segment.layout.n_worker_slots) {
                env.segment.child_slot(w).set_reason(&reason);
            }
        }
        exit_clean(slot, 2, &reason);
    }
    match (kind, startup) {
        (ChildKind::Worker, StartupData::Worker { worker_slot, .. }) => worker_main(env, slot, *worker_slot),
        (ChildKind::Startup, StartupData::Startup) => startup_main(env, slot),
        (ChildKind::Spare, StartupData::Spare) => spare_main(env, slot, client),
        (ChildKind::Connection, _) => {
            crate::shared::log::set_identity("connection", None);
            // The last connection slot is the reserved one (see `control::RESERVED_CONNECTIONS`).
            let layout = &env.segment.layout;
            let reserved = child_slot.is_some_and(|s| {
                layout.n_connection_slots > 0 && s == layout.connection_child_slot(layout.n_connection_slots - 1)
            });
            // issue 14: control
            // A connection child requests dynamic workers and uses handles as a worker does,
            // through the request slot at its own child slot's index. Its SIGTERM is the
            // default (it dies), so nothing it waits for needs a stop flag.
            let own = child_slot.filter(|&s| s < layout.n_request_slots());
            crate::shared::handles::attach(env.segment, own, env.host_pid, || false);
            match client {
                Some(c) => connection_main(env, slot, c, reserved),
                None => exit_clean(slot, 2, "connection child without a client socket"),
            }
        }
        (ChildKind::DeadEnd, StartupData::DeadEnd { message, state }) => {
            crate::shared::log::set_identity("dead-end", None);
            if let Some(c) = client {
                dead_end_main(c, message, state.as_deref());
            }
            0
        }
        // issue 15: connections
        (ChildKind::Client, StartupData::Client { listener, .. }) => match client {
            Some(c) => client::client_main(env, slot, c, *listener),
            None => exit_clean(slot, 2, "client child without a client socket"),
        },
        (ChildKind::DeadEnd, StartupData::Refused { listener, admission }) => match client {
            Some(c) => client::refused_main(env, c, *listener, *admission),
            None => 0,
        },
        _ => exit_clean(slot, 2, "startup data does not match the child kind"),
    }
}

extern "C" fn on_quit(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe. Exit code 2 with the dead-man flag set: a crash, unless
    // the supervisor sent the SIGQUIT itself (crash reset or immediate shutdown).
    unsafe { libc::_exit(2) }
}
