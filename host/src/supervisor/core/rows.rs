//! The core's transition table as data: one row per real transition (the states it leaves, the
//! event, the state it enters and what the core asks for). docs/architecture.md shows the same
//! table, rendered from this one by [`render`] (a test keeps the two equal).
//!
//! Runs in: the supervisor (the core marks each row as it takes it) and the unit tests.
//!
//! Coverage: every transition in the core's code calls [`fired`] with its row and the state it
//! leaves: the host's [`Step`] for a host row, the worker's state for a worker row. Every handler
//! of an event returns the [`Took`] that only [`fired`] makes, so a path through a handler that
//! records no row does not compile. In tests [`fired`] panics when a row fires from a state its
//! row does not list (the table cannot claim less than the core does) and counts, per thread,
//! each (row, state) pair; `every_row_of_the_table_is_exercised` runs every scenario on one
//! thread and fails naming each listed pair none of them took (nor can it claim more). Outside
//! tests [`fired`] compiles to nothing.

use super::{Phase, Progress, Recovery, Shutdown};
use crate::shared::lifecycle::WorkerState;

mod table;
pub use table::ROWS;

/// A transition of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Row {
    StartNoHooks,
    StartWithHooks,
    StartupLaunchFailed,
    Consistent,
    ConsistentIgnored,
    LaunchDue,
    DeadlineWaits,
    ChildTracked,
    StartupDone,
    StartupFailed,
    StartupExitIgnored,
    CrashRecover,
    CrashStop,
    CrashIgnored,
    CorruptSegmentReported,
    ConnectionCrashed,
    ConnectionExited,
    DeadEndExited,
    SpareDied,
    SpareStopped,
    StaleKey,
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
    ScanLeftSome,
    StopExit,
    AdoptedTracked,
    AdoptedSignalled,
    AdoptedExited,
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
    // issue 14: segment init
    SegmentInitStart,
    SegmentReady,
    SegmentReadyIgnored,
    StartupDoneAfterInit,
    // issue 14: readiness
    ReadyGate,
    WorkerReady,
    ReadyIgnored,
    // issue 14: dynamic workers
    RequestAdopted,
    RequestRefused,
    RequestNotUp,
    TerminateStale,
    TerminateRunning,
    TerminatePending,
    TerminateIgnored,
    // issue 15: isolated
    IsolatedCrashRestarts,
    IsolatedCrashGivesUp,
    IsolatedCrashFails,
    // issue 14: notifications
    RequestDuplicate,
    RequestUnknownStartAfter,
    LauncherGoneRunning,
    LauncherGonePending,
    WorkerResetLauncherGone,
    // issue 14: queue
    RequestQueued,
    QueueServed,
    QueueExpired,
    QueueRequesterGone,
    QueueHostDown,
    RequestOrphaned,
    DynLaunchFailed,
    // issue 15: isolated handlers
    IsolatedClientCrashed,
    IsolatedClientEvidence,
    // issue 15: client spares
    HandedSpareDied,
    ChildStartedStopping,
    DeadEndStartedStopping,
}

/// The host's phase without its data: what a host row leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Init,
    // issue 14: segment init
    SegmentInit,
    Startup,
    Consistent,
    Running,
    Quitting,
    RecoverKilled,
    Resetting,
    SmartWaiting,
    Signalled,
    StopKilled,
}

impl Step {
    pub fn of(phase: Phase) -> Step {
        match phase {
            Phase::Up(Progress::Init) => Step::Init,
            Phase::Up(Progress::SegmentInit) => Step::SegmentInit,
            Phase::Up(Progress::Startup) => Step::Startup,
            Phase::Up(Progress::Consistent) => Step::Consistent,
            Phase::Up(Progress::Running) => Step::Running,
            Phase::Recovering(Recovery::Quitting { .. }) => Step::Quitting,
            Phase::Recovering(Recovery::Killed) => Step::RecoverKilled,
            Phase::Recovering(Recovery::Resetting) => Step::Resetting,
            Phase::Stopping(Shutdown::SmartWaiting) => Step::SmartWaiting,
            Phase::Stopping(Shutdown::Signalled { .. }) => Step::Signalled,
            Phase::Stopping(Shutdown::Killed { .. }) => Step::StopKilled,
        }
    }

    /// The host state, and the step's name within it when the state has several.
    fn names(self) -> (&'static str, Option<&'static str>) {
        match self {
            Step::Init => ("init", None),
            Step::SegmentInit => ("init", Some("segment init")),
            Step::Startup => ("startup", None),
            Step::Consistent => ("consistent", None),
            Step::Running => ("running", None),
            Step::Quitting => ("recovering", Some("quitting")),
            Step::RecoverKilled => ("recovering", Some("killed")),
            Step::Resetting => ("recovering", Some("resetting")),
            Step::SmartWaiting => ("stopping", Some("smart wait")),
            Step::Signalled => ("stopping", Some("signalled")),
            Step::StopKilled => ("stopping", Some("killed")),
        }
    }
}

/// The state a row leaves: the host's step, or the worker's state for a worker's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Host(Step),
    Worker(WorkerState),
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            State::Host(s) => match s.names() {
                (state, Some(step)) => write!(f, "{state} ({step})"),
                (state, None) => f.write_str(state),
            },
            State::Worker(w) => f.write_str(w.as_str()),
        }
    }
}

/// Proof that a row was recorded: only [`fired`] makes one, and every handler of an event
/// returns one.
pub struct Took(());

/// One row: the row, the states it leaves, the event, and the state it enters with what the
/// core asks the event loop for.
pub struct RowSpec {
    pub row: Row,
    pub from: &'static [State],
    pub event: &'static str,
    pub to: &'static str,
}

#[cfg(test)]
thread_local! {
    static FIRED: std::cell::RefCell<Vec<(Row, State)>> = Default::default();
}

/// Marks `row` as taken from `from` (checked and counted in tests only).
#[inline(always)]
pub fn fired(row: Row, from: State) -> Took {
    #[cfg(test)]
    {
        let listed = ROWS.iter().any(|r| r.row == row && r.from.contains(&from));
        assert!(
            listed,
            "{row:?} fired from {from}, which the table does not list for it"
        );
        FIRED.with(|f| {
            let mut f = f.borrow_mut();
            if !f.contains(&(row, from)) {
                f.push((row, from));
            }
        });
    }
    #[cfg(not(test))]
    let _ = (row, from);
    Took(())
}

/// The (row, state) pairs taken on this thread since the last call, and resets the record.
#[cfg(test)]
pub fn take_fired() -> Vec<(Row, State)> {
    FIRED.with(|f| std::mem::take(&mut *f.borrow_mut()))
}

/// The table's rows whose states are the host's (`workers` false) or a worker's, as the
/// Markdown table docs/architecture.md shows: states of one host state are grouped, and a
/// worker's state is code.
pub fn render(workers: bool) -> String {
    let mut s = String::new();
    for spec in ROWS {
        if matches!(spec.from.first(), Some(State::Worker(_))) != workers {
            continue;
        }
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            from_text(spec.from),
            spec.event,
            spec.to
        ));
    }
    s
}

fn from_text(from: &[State]) -> String {
    let mut parts: Vec<String> = Vec::new();
    // Host steps are grouped by host state, in the table's order: "recovering (quitting,
    // killed)"; all of a state's steps are the state alone.
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for st in from {
        match *st {
            State::Host(step) => {
                let (state, sub) = step.names();
                match groups.iter_mut().find(|(s, _)| *s == state) {
                    Some((_, subs)) => subs.extend(sub),
                    None => groups.push((state, sub.into_iter().collect())),
                }
            }
            State::Worker(w) => parts.push(format!("`{}`", w.as_str())),
        }
    }
    for (state, subs) in groups {
        let all = match state {
            "recovering" => 3,
            "stopping" => 3,
            _ => 0,
        };
        if subs.is_empty() || subs.len() == all {
            parts.push(state.to_owned());
        } else {
            parts.push(format!("{state} ({})", subs.join(", ")));
        }
    }
    parts.join(", ")
}
