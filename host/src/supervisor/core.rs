//! The supervisor's lifecycle core: the host state, every worker's state, restart tracking,
//! crash reset and the three shutdown modes, as data plus one function.
//!
//! Runs in: the supervisor process only, inside its event loop. Performs no system call: no
//! `kill`, no `fork`, no clock read, no logging macro. Time comes in with each event ([`Now`]);
//! everything the core wants done goes out as an [`Action`] the event loop carries out, and the
//! result of an action that can fail (a launch, a new segment, a scan for adopted processes) comes
//! back as the next event. This is what lets `core/tests.rs` drive every transition with
//! synthetic time and no process.
//!
//! Owns: the host [`Phase`] (where an impossible combination, such as "killed but never
//! signalled", has no value to be written with), the worker table keyed by
//! [`WorkerKey`] (slot, generation) in memory `fork` does not copy, the live children by pid (kind,
//! slots, whether the host signalled each: what decides that an exit is not a crash), the
//! adopted processes, the segment generation and the exit code.
//!
//! Does not own: the child-slot pool (the core keeps each child's slot id, so the loop can give
//! it back at the reap), spare children, connection admission, the segment itself, the service
//! manager's rate-limited `STATUS=` line. The event loop keeps those and reports to the core only
//! what changes the lifecycle.
//!
//! Invariants: a child of kind worker with a worker's key is in the child table only while that
//! worker is `running` (during a crash reset a worker whose child is gone stays `running` until
//! the reset decides its state, as status has always shown it); a host signal is recorded on the
//! child before the action that sends it is emitted; the core emits [`Action::Exit`] once, in
//! `stopping`, after a scan for adopted processes found none and no child is left.
//!
//! Every transition is one row of [`rows::ROWS`], recorded with the state it leaves; every
//! handler of an event returns the proof ([`rows::Took`]) that it recorded one, and the unit tests
//! assert each (row, state) pair of the table fires and no other.

mod actions;
mod dynamic;
mod exits;
// issue 15: isolated
mod isolated;
mod notify;
pub mod policy;
mod queue;
pub mod rows;
mod stopping;
#[cfg(test)]
mod tests;
mod workers;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::shared::control::{HostState, StopMode};
use crate::shared::handoff::ChildKind;
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::registry::WorkerSpec;
use crate::supervisor::pool::ChildSlotId;
use crate::supervisor::private::{PidMap, PrivateVec};

pub use actions::Actions;
pub use notify::Launcher;
use rows::{Row, State, Step, Took};
pub use workers::{NoFreeSlot, NotRemovable, Worker, WorkerKey, WorkerRun};

/// Most workers launched per turn of the loop, so sockets and exits are served during a burst.
pub const LAUNCH_BATCH: usize = 64;
/// Retry delay after `fork` itself failed.
pub const LAUNCH_RETRY: Duration = Duration::from_secs(1);

/// The time an event happened: the monotonic clock for deadlines and the wall clock (in ms since
/// the epoch) for the times status shows. Both are read by the event loop, never by the core.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall_ms: u64,
}

impl Now {
    /// The same moment `d` later (tests, and wall-clock times of deadlines).
    pub fn plus(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall_ms: self.wall_ms + d.as_millis() as u64,
        }
    }
}

/// The settings the core decides with; the reloadable ones come again with each applied reload.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub shutdown_timeout: Duration,
    pub crash_kill_timeout: Duration,
    pub restart_after_crash: bool,
}

/// How far the host got through start-up while it is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Before the first start (and, for an instant, between a reset and its start-up).
    Init,
    // issue 14: segment init
    /// The startup child runs the plugins' segment init hooks on a new segment; no worker of any
    /// start time starts until it declares the segment ready. Shown as host state `init`.
    SegmentInit,
    /// The startup child runs the plugins' startup hooks.
    Startup,
    /// A startup hook declared the host consistent; the hooks still run.
    Consistent,
    Running,
}

/// Where a crash reset has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Every child got SIGQUIT; the attached ones that remain get SIGKILL at `kill_at`.
    Quitting { kill_at: Instant },
    /// The attached children that outlived `crash_kill_timeout` got SIGKILL.
    Killed,
    /// Every attached child is gone; a new segment is being created.
    Resetting,
}

/// Where a shutdown has got. A smart shutdown waits before it signals; the other modes begin
/// signalled. "Killed" can only follow "signalled", so no value says "killed, never signalled".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Smart: no new connections; waiting for the connections to end before signalling.
    SmartWaiting,
    /// Every child got SIGTERM (SIGQUIT for immediate); SIGKILL follows at `kill_at`.
    Signalled { mode: StopMode, kill_at: Instant },
    /// What outlived `shutdown_timeout` got SIGKILL.
    Killed { mode: StopMode },
}

impl Shutdown {
    pub fn mode(self) -> StopMode {
        match self {
            Shutdown::SmartWaiting => StopMode::Smart,
            Shutdown::Signalled { mode, .. } | Shutdown::Killed { mode } => mode,
        }
    }
}

/// The host's phase: the one value the host state is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Up(Progress),
    Recovering(Recovery),
    Stopping(Shutdown),
}

/// A live child of the supervisor, as the core tracks it.
#[derive(Debug, Clone, Copy)]
pub struct Child {
    pub kind: ChildKind,
    /// The slot the child-slot pool handed it (a dead-end's has no child slot in the segment).
    pub slot: ChildSlotId,
    pub worker: Option<WorkerKey>,
    /// The host sent it a stopping signal (so its death is not a crash).
    pub signalled: bool,
    /// A worker that was a spare: the spare's slot, given back once the worker claimed its own.
    pub spare: Option<ChildSlotId>,
    // issue 15: isolated handlers
    /// A client child of an isolated handler: its crash ends only its connection.
    pub isolated: bool,
}

/// A bounded, validated copy of what a child left in its child slot, read by the event loop.
#[derive(Debug, Clone, Default)]
pub struct SlotCopy {
    /// The slot was still marked active: the child did not exit cleanly.
    pub dead_man: bool,
    /// What the child said it was doing or why it stopped (bounded).
    pub reason: String,
    /// Launch decision to entry running, if the child got there.
    pub launch_us: Option<u64>,
    // issue 15: isolated
    /// The child exited with the code that reports a corrupt segment, and the supervisor's own
    /// check of the segment header, made at the reap, failed too: evidence, not the child's claim.
    pub header_corrupt: bool,
}

/// What happened, as the event loop reports it.
#[derive(Debug)]
pub enum Event<'a> {
    /// The loop starts: the first start-up.
    Start,
    /// A startup hook declared the host consistent.
    Consistent,
    /// Time passed: launch the workers that are due, escalate what timed out.
    Deadline,
    /// A signal or control command asks for a shutdown.
    Stop { mode: StopMode, why: &'static str },
    /// SIGHUP's new file was valid and applied (`Some`, with its settings) or refused (`None`).
    Reloaded(Option<Settings>),
    /// A worker the core asked for ([`Action::Launch`]) was started in `slot`, from the spare
    /// that held `spare` if that is set.
    Launched {
        key: WorkerKey,
        pid: i32,
        slot: ChildSlotId,
        spare: Option<ChildSlotId>,
    },
    /// A worker the core asked for could not be started.
    LaunchFailed { key: WorkerKey, error: &'a std::io::Error },
    /// The loop started a child of its own accord (connection, dead-end, spare) or the startup
    /// child the core asked for.
    ChildStarted { pid: i32, slot: ChildSlotId },
    // issue 15: isolated handlers
    /// The loop started a client child of an isolated handler (its own registry says so).
    IsolatedClientStarted { pid: i32, slot: ChildSlotId },
    /// The startup child the core asked for could not be started.
    StartupFailed { error: &'a std::io::Error },
    /// A child in the core's table was reaped.
    ChildExited {
        pid: i32,
        status: ExitStatus,
        slot: SlotCopy,
    },
    /// A scan found a process the supervisor did not start (it is the subreaper).
    Adopted { pid: i32, from: String },
    /// An adopted process was reaped.
    AdoptedExited { pid: i32 },
    /// The scan asked for by [`Action::ScanAdopted`] is complete.
    Scanned,
    /// The segment asked for by [`Action::CreateSegment`] is in place.
    SegmentCreated,
    /// The segment asked for by [`Action::CreateSegment`] could not be created.
    SegmentFailed { error: String },
    // issue 14: segment init
    /// The startup child declared the segment initialised (every segment init hook returned).
    SegmentReady,
    // issue 14: readiness
    /// A running worker's process declared itself ready (or its entry ran, for a worker others
    /// start after), as its child slot says.
    Ready { key: WorkerKey },
    // issue 14: dynamic workers
    /// The running worker in worker slot `from`, or the connection child in child slot `from`,
    /// asked for a dynamic worker; the loop decoded and validated the registration from its
    /// request slot (request number `seq`).
    Request {
        from: u32,
        seq: u32,
        spec: Box<WorkerSpec>,
        // issue 14: queue
        /// Wait up to this long for a slot when none is free (`.queue_timeout(d)`).
        queue_timeout: Option<Duration>,
    },
    /// A handle asked for the worker `key` to stop for good (the loop checked the generation).
    Terminate { key: WorkerKey },
    // issue 14: queue
    /// The answer adopting `key` found its request cancelled: its requester gave up.
    RequestCancelled { key: WorkerKey },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// What the core asks the event loop to do, in order.
#[derive(Debug, PartialEq, Eq, Default)]
pub enum Action {
    /// Placeholder left behind when the loop takes an action out of the buffer.
    #[default]
    Done,
    /// Start this worker; answer with [`Event::Launched`] or [`Event::LaunchFailed`].
    Launch(WorkerKey),
    /// Start the startup child; answer with [`Event::ChildStarted`] or [`Event::StartupFailed`].
    StartStartup,
    /// Send `sig` to `pid` (a child or an adopted process).
    Signal { pid: i32, sig: Signal },
    /// List the supervisor's children for adopted processes; answer with [`Event::Adopted`]
    /// for each new one, then [`Event::Scanned`].
    ScanAdopted,
    /// Create a new segment with this generation; answer with [`Event::SegmentCreated`] or
    /// [`Event::SegmentFailed`].
    CreateSegment { generation: u64 },
    /// Publish this worker's status to its slot.
    PublishWorker(WorkerKey),
    /// Publish the host state to the segment.
    PublishState(HostState),
    /// Tell the service manager the host state changed (`READY=1`, `STOPPING=1`, `STATUS=`).
    NotifyState(HostState),
    /// Write a line to the host's log.
    Log(Level, String),
    /// The host is done: exit with this code.
    Exit(i32),
    // issue 14: dynamic workers
    /// Write this dynamic worker's registration into its worker slot, then publish its status.
    PublishRegistration(WorkerKey),
    /// Answer request `seq` in request slot `to` (a worker's or a connection child's).
    Answer {
        to: u32,
        seq: u32,
        answer: crate::shared::handles::Answer,
    },
    /// This dynamic worker stopped for good: publish its last status, take its slot back from
    /// status, and remove it from the table ([`Core::remove_worker`]), freeing the slot.
    Retire(WorkerKey),
    // issue 14: notifications
    /// Set the latch of the live child `pid` in `child_slot` (a launcher: one of its workers
    /// stopped or failed to start), with SIGURG to `pid` if it sleeps on it.
    SetLatch { child_slot: u32, pid: i32 },
}

/// The core: see the module header.
pub struct Core {
    settings: Settings,
    has_startup_hooks: bool,
    // issue 14: segment init
    /// Plugins registered segment init hooks: every new segment waits for them in
    /// [`Progress::SegmentInit`].
    has_segment_inits: bool,
    phase: Phase,
    /// The state last reported (log, service manager), to report each change once.
    reported: HostState,
    /// Index = worker slot; `None`: a free slot.
    workers: PrivateVec<Option<Worker>>,
    /// Most worker slots (registered plus dynamic).
    max_workers: u32,
    /// The next worker generation: a per-host counter, never reset, so a key is never reused.
    next_generation: u64,
    /// The segment generation (1 for the first segment, one more per crash reset).
    generation: u64,
    children: PidMap<Child>,
    /// Adopted processes by pid, with where each came from; usually empty.
    adopted: BTreeMap<i32, String>,
    /// A scan asked for and not yet answered.
    scan_pending: bool,
    exit_code: i32,
    // issue 14: queue
    /// Requests waiting for a dynamic slot, and the per-plugin reservations.
    queue: queue::Queue,
}

impl Core {
    /// A core for the static workers `specs` (slots `0..specs.len()`), with room for
    /// `max_workers` in all.
    pub fn new(
        settings: Settings,
        specs: Vec<WorkerSpec>,
        max_workers: u32,
        has_startup_hooks: bool,
    ) -> std::io::Result<Core> {
        let mut core = Core {
            settings,
            has_startup_hooks,
            has_segment_inits: false,
            phase: Phase::Up(Progress::Init),
            reported: HostState::Init,
            workers: PrivateVec::with_capacity(specs.len())?,
            max_workers: max_workers.max(specs.len() as u32),
            next_generation: 1,
            generation: 1,
            children: PidMap::new()?,
            adopted: BTreeMap::new(),
            scan_pending: false,
            exit_code: crate::exit_code::OK,
            queue: queue::Queue::default(),
        };
        for spec in specs {
            core.insert(spec, false)?;
        }
        core.link_start_after();
        Ok(core)
    }

    // issue 14: segment init
    /// Whether plugins registered segment init hooks (set before [`Event::Start`]).
    pub fn set_segment_inits(&mut self, on: bool) {
        self.has_segment_inits = on;
    }

    /// Feeds one event; appends what to do to `out` (which the caller clears and reuses).
    pub fn handle(&mut self, event: Event<'_>, now: Now, out: &mut Actions) {
        // Each arm returns the row it took: a path that records none does not compile.
        let _: Took = match event {
            Event::Start => self.enter_startup(out),
            Event::Consistent => self.consistent(out),
            Event::Deadline => {
                let took = self.deadline(now, out);
                // issue 14: queue
                // After the due launches: a worker served here launches at the next deadline,
                // which is now, so a cancelled answer never meets a launch in the same batch.
                self.serve_queue(now, out);
                took
            }
            Event::Stop { mode, why } => self.stop(mode, why, now, out),
            Event::Reloaded(settings) => self.reloaded(settings, out),
            Event::Launched { key, pid, slot, spare } => self.launched(key, pid, slot, spare, now, out),
            Event::LaunchFailed { key, error } => self.launch_failed(key, error, now, out),
            Event::ChildStarted { pid, slot } => self.child_started(pid, slot, false, out),
            // issue 15: isolated handlers
            Event::IsolatedClientStarted { pid, slot } => self.isolated_client_started(pid, slot, out),
            Event::StartupFailed { error } => {
                let took = self.took(Row::StartupLaunchFailed);
                let line = format!("cannot start the startup child: {error}; stopping");
                self.fail(line, "a failed startup", now, out);
                took
            }
            Event::ChildExited { pid, status, slot } => self.child_exited(pid, status, slot, now, out),
            Event::Adopted { pid, from } => self.adopted(pid, from, out),
            Event::AdoptedExited { pid } => self.adopted_exited(pid, now, out),
            Event::Scanned => self.scanned(out),
            Event::SegmentCreated => self.segment_created(now, out),
            Event::SegmentFailed { error } => {
                let took = self.took(Row::ResetFailed);
                self.generation += 1;
                let line = format!("cannot recreate shared memory after a crash: {error}; stopping");
                self.fail(line, "a failed reset", now, out);
                took
            }
            Event::SegmentReady => self.segment_ready(out),
            Event::Ready { key } => self.ready(key, out),
            Event::Request {
                from,
                seq,
                spec,
                queue_timeout,
            } => self.request(from, seq, *spec, queue_timeout, now, out),
            Event::Terminate { key } => self.terminate(key, now, out),
            Event::RequestCancelled { key } => self.request_cancelled(key, now, out),
        };
    }

    // ---- what the event loop reads ----

    /// The host state that status, the service manager and the log report, derived from the
    /// phase so they cannot disagree.
    pub fn state(&self) -> HostState {
        match self.phase {
            Phase::Up(Progress::Init | Progress::SegmentInit) => HostState::Init,
            Phase::Up(Progress::Startup) => HostState::Startup,
            Phase::Up(Progress::Consistent) => HostState::Consistent,
            Phase::Up(Progress::Running) => HostState::Running,
            Phase::Recovering(_) => HostState::Recovering,
            Phase::Stopping(_) => HostState::Stopping,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The shutdown mode while stopping.
    pub fn stop_mode(&self) -> Option<StopMode> {
        match self.phase {
            Phase::Stopping(s) => Some(s.mode()),
            _ => None,
        }
    }

    /// Whether the host is up (launches, spares and new connections are allowed).
    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up(_))
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    pub fn child(&self, pid: i32) -> Option<&Child> {
        self.children.get(pid)
    }

    /// The loop's own bookkeeping on a child (the slot a spare hand-off frees).
    pub fn child_mut(&mut self, pid: i32) -> Option<&mut Child> {
        self.children.get_mut(pid)
    }

    pub fn children(&self) -> impl Iterator<Item = (i32, &Child)> {
        self.children.iter()
    }

    pub fn n_children(&self) -> usize {
        self.children.len()
    }

    pub fn adopted_from(&self, pid: i32) -> Option<&str> {
        self.adopted.get(&pid).map(String::as_str)
    }

    pub fn n_adopted(&self) -> usize {
        self.adopted.len()
    }

    /// The next moment the core wants a [`Event::Deadline`] (now, when workers are due at once).
    pub fn next_deadline(&self, now: Now) -> Option<Instant> {
        match self.phase {
            Phase::Up(progress) => {
                let mut best: Option<Instant> = None;
                for w in self.workers.iter().flatten() {
                    // A worker held back by a target's readiness is due only when that comes.
                    if !start_time_reached(progress, w.spec.start_time) || self.gated(w) {
                        continue;
                    }
                    let t = match (w.run.state, w.run.restart_at) {
                        (WorkerState::NotStarted, _) | (WorkerState::WaitingRestart, None) => now.mono,
                        (WorkerState::WaitingRestart, Some(t)) => t,
                        _ => continue,
                    };
                    best = Some(best.map_or(t, |b| b.min(t)));
                }
                // issue 14: queue
                match self.queue_deadline(now) {
                    Some(q) => Some(best.map_or(q, |b| b.min(q))),
                    None => best,
                }
            }
            Phase::Recovering(Recovery::Quitting { kill_at }) => Some(kill_at),
            Phase::Stopping(Shutdown::Signalled { kill_at, .. }) => Some(kill_at),
            _ => None,
        }
    }

    /// Running and failed workers, for the service manager's status line.
    pub fn counts(&self) -> (usize, usize) {
        let (mut running, mut failed) = (0, 0);
        for w in self.workers.iter().flatten() {
            match w.run.state {
                WorkerState::Running | WorkerState::Starting => running += 1,
                WorkerState::Failed => failed += 1,
                _ => {}
            }
        }
        (running, failed)
    }

    // ---- host phase ----

    /// Records a host row, taken from the current step.
    fn took(&self, row: Row) -> Took {
        rows::fired(row, State::Host(Step::of(self.phase)))
    }

    /// Moves to `phase` and publishes the state; logs it and tells the service manager when the
    /// reported state changed.
    fn enter(&mut self, phase: Phase, out: &mut Actions) {
        self.phase = phase;
        let s = self.state();
        out.push(Action::PublishState(s));
        if s != self.reported {
            self.reported = s;
            out.push(Action::Log(Level::Info, format!("host state: {}", s.as_str())));
            out.push(Action::NotifyState(s));
        }
    }

    /// At start and after every crash reset: the startup child runs the startup hooks, or the
    /// host goes straight to running when no plugin registered any.
    fn enter_startup(&mut self, out: &mut Actions) -> Took {
        if self.has_segment_inits {
            // The startup child runs the init hooks first; `segment_ready` moves on from there.
            let took = self.took(Row::SegmentInitStart);
            self.enter(Phase::Up(Progress::SegmentInit), out);
            out.push(Action::StartStartup);
            return took;
        }
        if !self.has_startup_hooks {
            let took = self.took(Row::StartNoHooks);
            self.enter(Phase::Up(Progress::Running), out);
            return took;
        }
        let took = self.took(Row::StartWithHooks);
        self.enter(Phase::Up(Progress::Startup), out);
        out.push(Action::StartStartup);
        took
    }

    // issue 14: segment init
    /// The segment is initialised: on to the startup hooks the same child runs next, or, with
    /// none, straight to running (the child then only exits).
    fn segment_ready(&mut self, out: &mut Actions) -> Took {
        if self.phase != Phase::Up(Progress::SegmentInit) {
            return self.took(Row::SegmentReadyIgnored);
        }
        let took = self.took(Row::SegmentReady);
        let next = match self.has_startup_hooks {
            true => Progress::Startup,
            false => Progress::Running,
        };
        self.enter(Phase::Up(next), out);
        took
    }

    fn consistent(&mut self, out: &mut Actions) -> Took {
        if self.phase != Phase::Up(Progress::Startup) {
            return self.took(Row::ConsistentIgnored);
        }
        let took = self.took(Row::Consistent);
        self.enter(Phase::Up(Progress::Consistent), out);
        took
    }

    fn reloaded(&mut self, settings: Option<Settings>, out: &mut Actions) -> Took {
        let Some(settings) = settings else {
            return self.took(Row::ReloadRefused);
        };
        let took = self.took(Row::ReloadApplied);
        self.settings = settings;
        // A reload request is not a stop: a death after SIGHUP is judged on its own.
        for (pid, c) in self.children.iter() {
            if c.kind != ChildKind::DeadEnd {
                out.push(Action::Signal {
                    pid,
                    sig: Signal::SIGHUP,
                });
            }
        }
        took
    }

    /// Sends `sig` to the children `which` selects, recording first that the host signalled
    /// them.
    fn signal_children(&mut self, sig: Signal, which: impl Fn(&Child) -> bool, out: &mut Actions) {
        for (pid, c) in self.children.iter_mut() {
            if which(c) {
                c.signalled = true;
                out.push(Action::Signal { pid, sig });
            }
        }
    }

    fn signal_adopted(&self, sig: Signal, out: &mut Actions) {
        for &pid in self.adopted.keys() {
            out.push(Action::Signal { pid, sig });
        }
    }

    fn attached_children(&self) -> usize {
        self.children.values().filter(|c| c.kind.info().attaches_shmem).count()
    }

    fn connections(&self) -> usize {
        self.children
            .values()
            .filter(|c| matches!(c.kind, ChildKind::Connection | ChildKind::Client))
            .count()
    }
}

/// Whether the host got far enough for a worker with `start` to start.
fn start_time_reached(progress: Progress, start: crate::shared::registry::StartTime) -> bool {
    use crate::shared::registry::StartTime;
    if progress == Progress::SegmentInit {
        // Not even `host_start`: no worker may see a region before its plugin initialised it.
        return false;
    }
    match start {
        StartTime::HostStart => true,
        StartTime::Consistent => matches!(progress, Progress::Consistent | Progress::Running),
        StartTime::Running => progress == Progress::Running,
    }
}
