//! The rows of the core's transition table ([`super::Row`] documents the table and its checks).
//! Rows are data of one shape, kept apart from the code that reads them so the table can grow.
//!
//! Runs in: the supervisor and the unit tests.

use super::{Row, RowSpec, State, Step};
use crate::shared::lifecycle::WorkerState;

const fn r(row: Row, from: &'static [State], event: &'static str, to: &'static str) -> RowSpec {
    RowSpec { row, from, event, to }
}

use State::{Host as H, Worker as W};
use Step::*;
use WorkerState::{Failed, NotStarted, Stopped, WaitingRestart};

/// Start-up's steps, where launches happen.
const UP: &[State] = &[H(SegmentInit), H(Startup), H(Consistent), H(Running)];
/// Every step an event other than the answer to an action can find. `init` and `recovering
/// (resetting)` are left in the turn that entered them: `init` by the start, `resetting` by the
/// answer to the segment the core asked for.
const ANY: &[State] = &[
    H(SegmentInit),
    H(Startup),
    H(Consistent),
    H(Running),
    H(Quitting),
    H(RecoverKilled),
    H(SmartWaiting),
    H(Signalled),
    H(StopKilled),
];
/// Where a child the host has not signalled can be alive: up, or a smart shutdown still waiting.
const UNSIGNALLED: &[State] = &[H(SegmentInit), H(Startup), H(Consistent), H(Running), H(SmartWaiting)];
/// Where every child has been signalled.
const SIGNALLED: &[State] = &[H(Quitting), H(RecoverKilled), H(Signalled), H(StopKilled)];
const RECOVERING: &[State] = &[H(Quitting), H(RecoverKilled)];
const STOPPING: &[State] = &[H(SmartWaiting), H(Signalled), H(StopKilled)];
const STOPPED_SIGNALLED: &[State] = &[H(Signalled), H(StopKilled)];
const NOT_UP: &[State] = &[
    H(Quitting),
    H(RecoverKilled),
    H(SmartWaiting),
    H(Signalled),
    H(StopKilled),
];
const DUE: &[State] = &[W(NotStarted), W(WaitingRestart)];
const RUNNING: &[State] = &[W(WorkerState::Running)];
const LIVE: &[State] = &[W(WorkerState::Running), W(WaitingRestart)];
const DONE: &[State] = &[W(Stopped), W(Failed)];

/// Every transition. Host rows first, then workers.
pub const ROWS: &[RowSpec] = &[
    r(
        Row::StartNoHooks,
        &[H(Init)],
        "start (no startup hooks)",
        "running; `READY=1`",
    ),
    r(
        Row::StartWithHooks,
        &[H(Init)],
        "start",
        "startup; start the startup child",
    ),
    r(
        Row::SegmentInitStart,
        &[H(Init)],
        "start, segment init hooks registered",
        "init (segment init); start the startup child",
    ),
    r(
        Row::SegmentReady,
        &[H(SegmentInit)],
        "segment declared ready",
        "startup, or running (`READY=1`) without startup hooks",
    ),
    r(
        Row::SegmentReadyIgnored,
        &[
            H(Startup),
            H(Consistent),
            H(Running),
            H(Quitting),
            H(RecoverKilled),
            H(SmartWaiting),
            H(Signalled),
            H(StopKilled),
        ],
        "segment declared ready (not sent by the loop)",
        "unchanged",
    ),
    r(
        Row::StartupLaunchFailed,
        &[H(SegmentInit), H(Startup)],
        "startup child not started",
        "stopping (immediate); exit 1",
    ),
    r(Row::Consistent, &[H(Startup)], "consistent declared", "consistent"),
    r(
        Row::ConsistentIgnored,
        &[
            H(SegmentInit),
            H(Consistent),
            H(Running),
            H(Quitting),
            H(RecoverKilled),
            H(SmartWaiting),
            H(Signalled),
            H(StopKilled),
        ],
        "consistent declared",
        "unchanged",
    ),
    r(
        Row::LaunchDue,
        UP,
        "deadline",
        "launch the workers due (at most 64 a turn)",
    ),
    r(Row::DeadlineWaits, NOT_UP, "deadline, no timeout passed", "unchanged"),
    r(
        Row::ChildTracked,
        &[
            H(SegmentInit),
            H(Startup),
            H(Consistent),
            H(Running),
            H(Quitting),
            H(RecoverKilled),
            H(SmartWaiting),
        ],
        "connection, dead-end, spare or startup child started",
        "tracked",
    ),
    r(
        Row::StartupDone,
        &[H(Startup), H(Consistent)],
        "startup child exit 0",
        "running; `READY=1`",
    ),
    r(
        Row::StartupFailed,
        &[H(SegmentInit), H(Startup), H(Consistent), H(Running)],
        "startup child failed",
        "stopping (immediate); exit 1",
    ),
    r(
        Row::StartupDoneAfterInit,
        &[H(Running)],
        "startup child exit 0 (segment init hooks only)",
        "unchanged",
    ),
    r(Row::StartupExitIgnored, NOT_UP, "startup child exited", "unchanged"),
    r(
        Row::CrashRecover,
        UP,
        "attached child crashed",
        "recovering; SIGQUIT to every child",
    ),
    r(
        Row::CrashStop,
        UP,
        "crash, `restart_after_crash = false`",
        "stopping (immediate); exit 1",
    ),
    r(
        Row::CrashIgnored,
        &[H(SmartWaiting)],
        "crash of a child not yet signalled",
        "unchanged",
    ),
    r(
        Row::CorruptSegmentReported,
        UNSIGNALLED,
        "startup or spare child exit 3 (corrupt segment)",
        "as a crash",
    ),
    r(
        Row::ConnectionCrashed,
        UNSIGNALLED,
        "connection child crashed",
        "as a crash",
    ),
    r(
        Row::ConnectionExited,
        ANY,
        "connection child exited, no crash",
        "unchanged",
    ),
    r(Row::DeadEndExited, ANY, "dead-end child exited", "unchanged"),
    r(
        Row::SpareDied,
        UNSIGNALLED,
        "unused spare exited",
        "unchanged; a warning",
    ),
    r(Row::SpareStopped, SIGNALLED, "signalled spare exited", "unchanged"),
    r(
        Row::StaleKey,
        &[H(Running)],
        "an event names a worker the table no longer has (not sent by the loop)",
        "unchanged",
    ),
    r(
        Row::RequestAdopted,
        UP,
        "dynamic-worker request",
        "unchanged; worker added, published, answered",
    ),
    r(
        Row::RequestRefused,
        UP,
        "dynamic-worker request, no free slot",
        "unchanged; answered `NoFreeSlot`",
    ),
    r(
        Row::RequestNotUp,
        NOT_UP,
        "dynamic-worker request",
        "unchanged; answered \"host not running\"",
    ),
    r(
        Row::TerminateStale,
        &[H(Running)],
        "terminate, key not in table",
        "unchanged",
    ),
    r(
        Row::RecoverKill,
        &[H(Quitting)],
        "`crash_kill_timeout` passed",
        "recovering (killed); SIGKILL to the attached children",
    ),
    r(
        Row::RecoverReset,
        RECOVERING,
        "no attached child left",
        "recovering (resetting); create a segment",
    ),
    r(
        Row::ResetDone,
        &[H(Resetting)],
        "segment created",
        "init, then as start",
    ),
    r(
        Row::ResetFailed,
        &[H(Resetting)],
        "segment failed",
        "stopping (immediate); exit 1",
    ),
    r(
        Row::StopSmartWaits,
        &[
            H(SegmentInit),
            H(Startup),
            H(Consistent),
            H(Running),
            H(Quitting),
            H(RecoverKilled),
        ],
        "stop smart, connections open",
        "stopping (smart wait)",
    ),
    r(
        Row::StopSignals,
        &[
            H(SegmentInit),
            H(Startup),
            H(Consistent),
            H(Running),
            H(Quitting),
            H(RecoverKilled),
            H(Resetting),
            H(SmartWaiting),
            H(Signalled),
            H(StopKilled),
        ],
        "stop (in a harsher mode, if stopping)",
        "stopping (signalled); SIGTERM (SIGQUIT if immediate) to all",
    ),
    r(
        Row::SmartProceeds,
        &[H(SmartWaiting)],
        "last connection exited",
        "stopping (signalled); SIGTERM to all",
    ),
    r(
        Row::StopIgnored,
        STOPPING,
        "stop in the same or a milder mode",
        "unchanged",
    ),
    r(
        Row::StopKill,
        &[H(Signalled)],
        "`shutdown_timeout` passed",
        "stopping (killed); SIGKILL to all",
    ),
    r(
        Row::StopScan,
        STOPPED_SIGNALLED,
        "no child left",
        "scan for adopted processes",
    ),
    r(
        Row::ScanLeftSome,
        STOPPED_SIGNALLED,
        "the scan ended with a child or adopted process left",
        "unchanged",
    ),
    r(
        Row::StopExit,
        STOPPED_SIGNALLED,
        "the scan ended with nothing left",
        "exit with the exit code",
    ),
    r(
        Row::AdoptedTracked,
        &[
            H(SegmentInit),
            H(Startup),
            H(Consistent),
            H(Running),
            H(Quitting),
            H(RecoverKilled),
            H(SmartWaiting),
        ],
        "adopted process found",
        "tracked",
    ),
    r(
        Row::AdoptedSignalled,
        STOPPED_SIGNALLED,
        "adopted process found",
        "tracked; signalled as the rest",
    ),
    r(
        Row::AdoptedExited,
        ANY,
        "adopted (or unknown) process reaped",
        "forgotten; as any exit",
    ),
    r(
        Row::ReloadApplied,
        ANY,
        "reload applied",
        "new timeouts; SIGHUP to every child but dead-ends",
    ),
    r(Row::ReloadRefused, ANY, "reload refused", "unchanged"),
    r(
        Row::WorkerDue,
        DUE,
        "deadline, start time reached",
        "launch it (at most 64 a turn)",
    ),
    r(
        Row::ReadyGate,
        DUE,
        "deadline, a `start_after` worker not ready",
        "unchanged; `waiting_for` names it",
    ),
    r(
        Row::WorkerLaunched,
        DUE,
        "launched",
        "`running` (shown `starting` until ready if it needs readiness)",
    ),
    r(
        Row::WorkerReady,
        RUNNING,
        "declared ready (or entry ran, when others start after it)",
        "`running`, ready; its dependents may start",
    ),
    r(
        Row::ReadyIgnored,
        RUNNING,
        "declared ready again (not sent by the loop)",
        "unchanged",
    ),
    r(Row::WorkerLaunchFailed, DUE, "launch failed", "`waiting_restart`, 1 s"),
    r(
        Row::WorkerStops,
        RUNNING,
        "exit 0; exit 1 under `never`; stopped by the host",
        "`stopped`",
    ),
    r(Row::WorkerFails, RUNNING, "exit 2", "`failed`"),
    r(
        Row::WorkerRestarts,
        RUNNING,
        "exit 1 under a restarting policy",
        "`waiting_restart`, after the delay (backoff grows)",
    ),
    r(
        Row::WorkerGivesUp,
        RUNNING,
        "exit 1 past the crash-loop limit",
        "`failed`",
    ),
    r(
        Row::WorkerCrashes,
        RUNNING,
        "crash",
        "`waiting_restart`; the host resets",
    ),
    r(
        Row::WorkerCrashGivesUp,
        RUNNING,
        "crash past the crash-loop limit",
        "`failed`; the host resets",
    ),
    r(
        Row::WorkerExitWhileRecovering,
        RUNNING,
        "exit while recovering",
        "unchanged until the reset",
    ),
    r(
        Row::WorkerExitWhileStopping,
        RUNNING,
        "exit while stopping",
        "`stopped`",
    ),
    r(Row::WorkerStartCancelled, DUE, "stop", "`stopped`"),
    r(
        Row::WorkerResetRestarts,
        LIVE,
        "reset, policy restarts",
        "`waiting_restart`, now",
    ),
    r(Row::WorkerResetStops, LIVE, "reset, policy `never`", "`stopped`"),
    r(
        Row::TerminateRunning,
        RUNNING,
        "terminate",
        "unchanged; SIGTERM; its exit stops it for good",
    ),
    r(Row::TerminatePending, DUE, "terminate", "`stopped`; retired if dynamic"),
    r(Row::TerminateIgnored, DONE, "terminate", "unchanged"),
    r(
        Row::WorkerRemoved,
        &[W(Stopped), W(Failed)],
        "remove (added at run time)",
        "the slot is free",
    ),
    // issue 15: isolated
    r(
        Row::IsolatedCrashRestarts,
        RUNNING,
        "crash of an isolated worker",
        "`waiting_restart`, after the delay; no reset",
    ),
    r(
        Row::IsolatedCrashGivesUp,
        RUNNING,
        "crash of an isolated worker past the crash-loop limit",
        "`failed`; no reset",
    ),
    r(
        Row::IsolatedCrashFails,
        RUNNING,
        "crash of an isolated worker under `never` or terminated",
        "`failed`; no reset",
    ),
    // issue 14: notifications
    r(
        Row::RequestDuplicate,
        UP,
        "dynamic-worker request, a worker has its name",
        "unchanged; answered `DuplicateName`",
    ),
    r(
        Row::RequestUnknownStartAfter,
        UP,
        "dynamic-worker request, `start_after` names no worker",
        "unchanged; answered `UnknownStartAfter`",
    ),
    r(
        Row::LauncherGoneRunning,
        RUNNING,
        "its launcher exited (`stop_with_launcher`)",
        "unchanged; SIGTERM; its exit stops it for good",
    ),
    r(
        Row::LauncherGonePending,
        DUE,
        "its launcher exited (`stop_with_launcher`)",
        "`stopped`; retired",
    ),
    r(
        Row::WorkerResetLauncherGone,
        &[W(NotStarted), W(WorkerState::Running), W(WaitingRestart)],
        "reset, `stop_with_launcher`",
        "`stopped` (its launcher is gone); retired",
    ),
    // issue 14: queue
    r(
        Row::RequestQueued,
        QUEUE_UP,
        "dynamic-worker request with a queue timeout, no slot admits it",
        "unchanged; queued",
    ),
    r(
        Row::QueueServed,
        QUEUE_UP,
        "deadline, a queued request admitted",
        "unchanged; worker added, published, answered",
    ),
    r(
        Row::QueueExpired,
        QUEUE_UP,
        "deadline, a queued request's timeout passed",
        "unchanged; answered `NoFreeSlot`",
    ),
    r(
        Row::QueueRequesterGone,
        QUEUE_UP,
        "deadline, a queued request's requester exited",
        "unchanged; dropped",
    ),
    r(
        Row::QueueHostDown,
        NOT_UP,
        "deadline, requests queued",
        "unchanged; each answered \"host not running\"",
    ),
    r(
        Row::RequestOrphaned,
        &[W(NotStarted)],
        "the adopting answer found its request cancelled",
        "`stopped`; retired",
    ),
    r(
        Row::DynLaunchFailed,
        DUE,
        "launch failed, dynamic worker",
        "`stopped` with the errno; retired",
    ),
    // issue 15: isolated handlers
    r(
        Row::IsolatedClientCrashed,
        UNSIGNALLED,
        "client child of an isolated handler crashed",
        "unchanged; only its connection ends, no reset",
    ),
    r(
        Row::IsolatedClientEvidence,
        UNSIGNALLED,
        "client child of an isolated handler crashed, its slot or the header corrupt",
        "as a crash",
    ),
    // issue 15: client spares
    r(
        Row::HandedSpareDied,
        UNSIGNALLED,
        "spare handed a client killed before it claimed the client's slot",
        "unchanged; a warning (that client alone is lost)",
    ),
    r(
        Row::ChildStartedStopping,
        STOPPED_SIGNALLED,
        "connection, spare, startup or client child started; once killed, a dead-end too",
        "tracked; signalled as the rest (SIGKILL once killed)",
    ),
    r(
        Row::DeadEndStartedStopping,
        &[H(Signalled)],
        "dead-end child started",
        "tracked, not signalled: its deadline ends it",
    ),
];

// issue 14: queue
/// Where a queued request can come from: a running worker (none runs during segment init).
const QUEUE_UP: &[State] = &[H(Startup), H(Consistent), H(Running)];
