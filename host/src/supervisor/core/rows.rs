//! The core's transition table as data: one row per real transition (state, event, next state
//! and what the core asks for). docs/architecture.md shows the same table.
//!
//! Runs in: the supervisor (the core marks each row as it takes it) and the unit tests.
//!
//! Coverage: each transition in the core's code calls [`fired`] with its row. In tests that
//! counts, per thread, how often each row fired; `every_row_of_the_table_is_exercised` runs every
//! scenario of the core's tests on one thread and fails naming any row that none of them took.
//! Outside tests [`fired`] compiles to nothing.

/// A transition of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Row {
    StartNoHooks,
    StartWithHooks,
    StartupLaunchFailed,
    Consistent,
    ConsistentIgnored,
    StartupDone,
    StartupFailed,
    CrashRecover,
    CrashStop,
    CrashIgnored,
    CorruptSegmentReported,
    ConnectionCrashed,
    SpareDied,
    RecoverKill,
    RecoverReset,
    ResetDone,
    ResetFailed,
    StopSmartWaits,
    StopSignals,
    SmartProceeds,
    StopIgnored,
    StopKill,
    StopScan,
    StopExit,
    AdoptedSignalled,
    ReloadApplied,
    ReloadRefused,
    WorkerDue,
    WorkerLaunched,
    WorkerLaunchFailed,
    WorkerStops,
    WorkerFails,
    WorkerRestarts,
    WorkerGivesUp,
    WorkerCrashes,
    WorkerCrashGivesUp,
    WorkerExitWhileRecovering,
    WorkerExitWhileStopping,
    WorkerStartCancelled,
    WorkerResetRestarts,
    WorkerResetStops,
    WorkerRemoved,
}

/// One row: the row, the state it leaves, the event, and the state it enters with what the core
/// asks the event loop for.
pub struct RowSpec {
    pub row: Row,
    pub from: &'static str,
    pub event: &'static str,
    pub to: &'static str,
}

const fn r(row: Row, from: &'static str, event: &'static str, to: &'static str) -> RowSpec {
    RowSpec { row, from, event, to }
}

/// Every transition. Host rows first, then workers.
pub const ROWS: &[RowSpec] = &[
    r(
        Row::StartNoHooks,
        "init",
        "start (no startup hooks)",
        "running; READY=1",
    ),
    r(Row::StartWithHooks, "init", "start", "startup; start the startup child"),
    r(
        Row::StartupLaunchFailed,
        "startup",
        "startup child not started",
        "stopping (immediate); exit 1",
    ),
    r(Row::Consistent, "startup", "consistent declared", "consistent"),
    r(Row::ConsistentIgnored, "any other", "consistent declared", "unchanged"),
    r(
        Row::StartupDone,
        "startup, consistent",
        "startup child exit 0",
        "running; READY=1",
    ),
    r(
        Row::StartupFailed,
        "startup, consistent",
        "startup child failed",
        "stopping (immediate); exit 1",
    ),
    r(
        Row::CrashRecover,
        "startup..running",
        "attached child crashed",
        "recovering; SIGQUIT to every child",
    ),
    r(
        Row::CrashStop,
        "startup..running",
        "crash, restart_after_crash = false",
        "stopping (immediate); exit 1",
    ),
    r(Row::CrashIgnored, "recovering, stopping", "crash", "unchanged"),
    r(
        Row::CorruptSegmentReported,
        "any",
        "startup or spare child exit 3",
        "as a crash",
    ),
    r(Row::ConnectionCrashed, "any", "connection child crashed", "as a crash"),
    r(Row::SpareDied, "any", "unused spare exited", "unchanged; warning"),
    r(
        Row::RecoverKill,
        "recovering (quitting)",
        "crash_kill_timeout passed",
        "recovering (killed); SIGKILL to attached children",
    ),
    r(
        Row::RecoverReset,
        "recovering (quitting, killed)",
        "no attached child left",
        "recovering (resetting); create a segment",
    ),
    r(
        Row::ResetDone,
        "recovering (resetting)",
        "segment created",
        "init, then as start",
    ),
    r(
        Row::ResetFailed,
        "recovering (resetting)",
        "segment failed",
        "stopping (immediate); exit 1",
    ),
    r(
        Row::StopSmartWaits,
        "not stopping",
        "stop smart, connections open",
        "stopping (smart, waiting)",
    ),
    r(
        Row::StopSignals,
        "not stopping, or a milder mode",
        "stop",
        "stopping (signalled); SIGTERM (SIGQUIT if immediate) to all",
    ),
    r(
        Row::SmartProceeds,
        "stopping (smart, waiting)",
        "last connection exited",
        "stopping (signalled); SIGTERM to all",
    ),
    r(
        Row::StopIgnored,
        "stopping",
        "stop in the same or a milder mode",
        "unchanged",
    ),
    r(
        Row::StopKill,
        "stopping (signalled)",
        "shutdown_timeout passed",
        "stopping (killed); SIGKILL to all",
    ),
    r(Row::StopScan, "stopping", "no child left", "scan for adopted processes"),
    r(
        Row::StopExit,
        "stopping",
        "scan found nothing left",
        "exit with the exit code",
    ),
    r(
        Row::AdoptedSignalled,
        "stopping (signalled, killed)",
        "adopted process found",
        "signal it as the rest",
    ),
    r(
        Row::ReloadApplied,
        "any",
        "reload applied",
        "new timeouts; SIGHUP to children",
    ),
    r(Row::ReloadRefused, "any", "reload refused", "unchanged"),
    r(
        Row::WorkerDue,
        "not_started, waiting_restart",
        "deadline, start time reached",
        "launch it",
    ),
    r(
        Row::WorkerLaunched,
        "not_started, waiting_restart",
        "launched",
        "running",
    ),
    r(
        Row::WorkerLaunchFailed,
        "not_started, waiting_restart",
        "launch failed",
        "waiting_restart (1 s)",
    ),
    r(
        Row::WorkerStops,
        "running",
        "exit 0, exit 1 under never, stopped by host",
        "stopped",
    ),
    r(Row::WorkerFails, "running", "exit 2", "failed"),
    r(
        Row::WorkerRestarts,
        "running",
        "exit 1 under a restarting policy",
        "waiting_restart (delay, backoff)",
    ),
    r(
        Row::WorkerGivesUp,
        "running",
        "exit 1 past the crash-loop limit",
        "failed",
    ),
    r(Row::WorkerCrashes, "running", "crash", "waiting_restart; host crash"),
    r(
        Row::WorkerCrashGivesUp,
        "running",
        "crash past the crash-loop limit",
        "failed; host crash",
    ),
    r(
        Row::WorkerExitWhileRecovering,
        "running",
        "exit while recovering",
        "unchanged until the reset",
    ),
    r(
        Row::WorkerExitWhileStopping,
        "running",
        "exit while stopping",
        "stopped",
    ),
    r(
        Row::WorkerStartCancelled,
        "not_started, waiting_restart",
        "stop",
        "stopped",
    ),
    r(
        Row::WorkerResetRestarts,
        "running, waiting_restart",
        "reset, policy restarts",
        "waiting_restart (now)",
    ),
    r(
        Row::WorkerResetStops,
        "running, waiting_restart",
        "reset, policy never",
        "stopped",
    ),
    r(
        Row::WorkerRemoved,
        "stopped, failed (added at run time)",
        "remove",
        "slot free",
    ),
];

#[cfg(test)]
thread_local! {
    static FIRED: std::cell::RefCell<std::collections::BTreeMap<Row, u32>> = Default::default();
}

/// Marks `row` as taken (counted in tests only).
#[inline(always)]
pub fn fired(row: Row) {
    #[cfg(test)]
    assert!(ROWS.iter().any(|r| r.row == row), "{row:?} is not in the table");
    #[cfg(test)]
    FIRED.with(|f| *f.borrow_mut().entry(row).or_default() += 1);
    #[cfg(not(test))]
    let _ = row;
}

/// The rows taken on this thread since the last call, and resets the count.
#[cfg(test)]
pub fn take_fired() -> std::collections::BTreeMap<Row, u32> {
    FIRED.with(|f| std::mem::take(&mut *f.borrow_mut()))
}
