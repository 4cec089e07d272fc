//! The supervisor: `steward run` after preload.
//!
//! Runs in: the supervisor process only. Single-threaded.
//!
//! One loop waits on one poll set (the self-pipe that signal handlers write to, and the control
//! socket) with one deadline (the earliest restart, kill escalation or pending launch). Each
//! iteration: take signal flags, reap children, advance the host phase, launch a bounded batch of
//! due workers, accept a bounded batch of connections. Nothing blocks on a child.
//!
//! Ownership: the supervisor owns its private worker table (the truth about state, restarts and
//! exits) and publishes a copy of each worker's status to its slot in shared memory for connection
//! children to read. It never takes a lock in shared memory and reads only what children may
//! write there (their child slot's state and reason) with bounded copies.
//!
//! Adopted processes: the supervisor is its children's subreaper, so a process a child leaves
//! behind becomes its child. After a reap that reaped something (rate-limited when it has many
//! children) it records the children it did not start (attributed to the one process reaped
//! since the previous scan, if there was one), reaps them like any child, and stops them at
//! shutdown; it never exits while one is alive.
//!
//! Phases: `Running` -> `Recovering` (a child attached to shared memory crashed: every child gets
//! SIGQUIT, stragglers SIGKILL after `crash_kill_timeout`, then a fresh segment and the workers
//! start again) -> `Running`; any phase -> `Stopping` (smart waits for connections, then all
//! children get SIGTERM, or SIGQUIT for immediate, and SIGKILL after `shutdown_timeout`).
//!
//! The host state that status, the service manager's `STATUS=` and the log report is derived in
//! one place (`Supervisor::state`: the phase, and within `Running` how far start-up has got) and
//! published from one place (`Supervisor::state_changed`), so they cannot disagree.

pub mod launch;
pub mod notify;
pub mod pool;
pub mod private;
pub mod run;
pub mod spawn;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::shared::config::Config;
use crate::shared::control::{HostState, StopMode};
use crate::shared::handoff::{ChildEnv, ChildKind, ClientSocket, StartupData};
use crate::shared::lifecycle::{
    classify, next_for, restarts_after_reset, ExitStatus, Next, Outcome, RestartDecision, RestartTracker, WorkerState,
};
use crate::shared::lockfile::LockFile;
use crate::shared::registry::{Registry, RestartPolicy, Settings, StartTime, WorkerSpec};
use crate::shared::shmem::{Layout, Segment, StatusSnapshot};
use crate::shared::time::now_ms;
use crate::supervisor::launch::launch_child;

/// Most workers launched per loop iteration, so sockets and exits are served during a burst.
const LAUNCH_BATCH: usize = 64;
/// The smallest batch of due workers worth a fork helper: below it, forking the helper costs
/// about as much as the forks it takes over.
const HELPER_MIN_BATCH: usize = 16;
/// Most connections accepted per loop iteration.
const ACCEPT_BATCH: usize = 32;
/// Retry delay after `fork` itself failed.
const LAUNCH_RETRY: Duration = Duration::from_secs(1);
/// How often a long first start-up extends the service manager's start timeout.
const START_EXTEND_EVERY: Duration = Duration::from_secs(5);
/// What a shutdown asks the service manager for beyond `shutdown_timeout`.
const STOP_EXTEND_MARGIN: Duration = Duration::from_secs(5);

/// The supervisor's private record of one worker (index = worker slot).
#[derive(Debug, Clone)]
struct WorkerRun {
    state: WorkerState,
    pid: Option<i32>,
    started_at_ms: Option<u64>,
    restarts: u32,
    ever_started: bool,
    last_exit: Option<(ExitStatus, u64, String)>,
    restart_at: Option<Instant>,
    restart_at_ms: Option<u64>,
    /// Launch decision to entry running, for the last process of this worker that got there.
    last_launch_us: Option<u64>,
    /// When the running process was started (for backoff resets).
    started: Option<Instant>,
    /// Past exits, newest first.
    history: std::collections::VecDeque<(ExitStatus, u64, String)>,
    tracker: RestartTracker,
}

#[derive(Debug, Clone, Copy)]
struct Child {
    kind: ChildKind,
    child_slot: Option<u32>,
    worker: Option<usize>,
    /// A signal the supervisor sent this child (so its death is not a crash).
    signalled: bool,
    /// A worker that was a spare: the spare's slot, freed once the worker claimed its own.
    spare_slot: Option<u32>,
}

/// A process the supervisor adopted as child subreaper: a child of one of its children (or of
/// another adopted process) that outlived its parent. It maps nothing the supervisor relies on
/// and has no slot; it is only reaped, and stopped at shutdown.
#[derive(Debug, Clone)]
struct Adopted {
    /// Where it came from, for the log: `worker NAME (pid N)`, or why that is unknown.
    from: String,
}

/// A process the supervisor reaped, as an adopted process found after it is attributed to it.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Child {
        pid: i32,
        kind: ChildKind,
        worker: Option<usize>,
    },
    Adopted {
        pid: i32,
    },
}

/// The processes reaped since the last scan for adopted ones: how many, the first and the last
/// (kept without allocating: reaping a thousand workers must not cost a thousand strings).
#[derive(Debug, Default)]
struct Exited {
    n: usize,
    first: Option<Origin>,
    last: Option<Origin>,
}

impl Exited {
    fn push(&mut self, o: Origin) {
        self.n += 1;
        if self.first.is_none() {
            self.first = Some(o);
        } else {
            self.last = Some(o);
        }
    }

    /// Whom a process adopted now is attributed to: the one process that could have started it
    /// (a child running plugin code, or an adopted process) reaped since the last scan, or, when
    /// none or several were, a note saying the origin is unknown.
    fn attribution(&self, name: impl Fn(Origin) -> String) -> String {
        match (self.n, self.first, self.last) {
            (1, Some(one), _) => name(one),
            (n, Some(first), Some(last)) => format!(
                "one of {n} processes that exited together ({} ... {})",
                name(first),
                name(last)
            ),
            _ => "an unknown process".to_owned(),
        }
    }
}

/// How often at most the supervisor lists its children to find adopted ones when it has many.
/// Listing them costs about 0.7 ms with 1000 children (the kernel walks its list for every
/// entry), so a mass exit (a shutdown, a crash reset) pays for one listing per interval, not one
/// per reap. With up to [`ADOPTION_SCAN_EAGER`] children a listing costs microseconds and follows
/// every reap, which keeps the attribution exact.
const ADOPTION_SCAN_INTERVAL: Duration = Duration::from_millis(100);
const ADOPTION_SCAN_EAGER: usize = 64;

#[derive(Debug, Clone)]
enum Phase {
    Running,
    Recovering {
        kill_at: Instant,
        killed: bool,
    },
    Stopping {
        mode: StopMode,
        signalled: bool,
        kill_at: Option<Instant>,
        killed: bool,
    },
}

pub struct Supervisor {
    cfg: Config,
    /// The static workers' registrations (index = worker slot). Read on every launch and exit
    /// but needed by no child, which finds its own in its worker slot: kept where `fork` does not
    /// copy it (see [`crate::supervisor::private`]).
    specs: crate::supervisor::private::PrivateSlice<WorkerSpec>,
    /// The rest of the registry, which children get too (see [`Registry::for_children`]).
    registry: Registry,
    settings: Settings,
    layout: Layout,
    segment: Segment,
    generation: u64,
    started_at_ms: u64,
    /// Written on every launch and exit, so kept where `fork` does not copy it (see
    /// [`crate::supervisor::private`]).
    workers: crate::supervisor::private::PrivateSlice<WorkerRun>,
    /// Live children by pid, where `fork` does not copy them (see [`crate::supervisor::private`]).
    children: crate::supervisor::private::PidMap<Child>,
    /// Live adopted processes by pid (see [`Adopted`]); usually empty.
    adopted: std::collections::BTreeMap<i32, Adopted>,
    /// Reaped since the last scan for adopted processes.
    exited: Exited,
    /// When the next scan for adopted processes is due (something was reaped since the last).
    scan_at: Option<Instant>,
    last_scan: Option<Instant>,
    connection_slots: Vec<bool>,
    dead_ends: usize,
    phase: Phase,
    /// How far start-up has got (startup, consistent or running): the host state while `phase`
    /// is `Running`, and what start-time gating reads. Never reported on its own: see
    /// [`Supervisor::state`].
    progress: HostState,
    /// The state last published (segment, log, `STATUS=`), to report each change once.
    reported: HostState,
    notifier: crate::supervisor::notify::Notifier,
    watchdog_at: Option<Instant>,
    /// While the first start-up's hooks run (before the first `READY=1`): when to extend the
    /// service manager's start timeout again. `None` outside that window.
    extend_at: Option<Instant>,
    status_sent: String,
    status_sent_at: Option<Instant>,
    /// When a changed `STATUS=` line held back by the rate limit is due (a loop deadline, so it
    /// is sent even if nothing else happens).
    status_due: Option<Instant>,
    /// Exec mode: spare children (pid, child slot) not yet handed a worker.
    spares: Vec<(i32, u32)>,
    /// How many spares to start when the loop is idle (one per spare used; never for a spare
    /// that died unused, so a broken plugin cannot make spares respawn in a loop).
    spare_refill: u32,
    /// Workers started from a spare that have not claimed their own child slot yet.
    handoffs: Vec<i32>,
    /// Fork mode on more than one core: how a fork helper creates workers (decision 50).
    sibling_fork: Option<crate::supervisor::launch::SiblingFork>,
    /// The verdict of the last reload, for status and the reload's caller.
    last_reload: Option<crate::shared::control::ReloadReport>,
    /// Keys whose new value in the file waits for a restart (from the last applied reload).
    pending_restart: Vec<String>,
    /// Keys whose running value came from the file (see `reload_applied`).
    file_keys: std::collections::BTreeSet<String>,
    /// Host keys whose running value came from the command line (`--launch-mode`).
    overrides: Vec<&'static str>,
    /// The `[host]` values an empty file gives, for `show`.
    host_defaults: std::collections::BTreeMap<&'static str, String>,
    exit_code: i32,
    listener: UnixListener,
    wake_r: OwnedFd,
    _wake_w: OwnedFd,
    death_r: OwnedFd,
    _death_w: OwnedFd,
    _lock: LockFile,
}

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Segment(#[from] crate::shared::shmem::SegmentError),
    #[error("cannot listen on {path}: {err}", path = path.display())]
    Listen {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(nix::Error),
}

impl Supervisor {
    /// Creates the segment, the control socket and the signal plumbing. Plugins are loaded and
    /// the registry frozen already.
    pub fn new(
        cfg: Config,
        lock: LockFile,
        notifier: crate::supervisor::notify::Notifier,
    ) -> Result<Supervisor, StartError> {
        // The worker registrations move out of the plugin-facing state, which forked children
        // inherit and which needs only the regions from now on: one copy, in the supervisor.
        let (mut registry, settings) = crate::shared::hostapi::with_state(|s| {
            let children = s.registry.for_children();
            (std::mem::replace(&mut s.registry, children), s.settings.clone())
        });
        let layout = Layout::for_host(&registry, &cfg);
        let started_at_ms = now_ms();
        let segment = Segment::create(&layout, &registry.workers, &registry.regions, &cfg, 1, started_at_ms)?;

        let (wake_r, wake_w) = crate::sys::pipe()?;
        let (death_r, death_w) = crate::sys::pipe()?;
        crate::sys::install_supervisor_signals(&wake_w).map_err(StartError::Signals)?;
        crate::sys::load_test_knobs();
        // A worker's own child that outlives it comes to the supervisor, which reaps it and stops
        // it at shutdown, instead of escaping to init (as PID 1 of a namespace it comes anyway).
        if let Err(e) = crate::sys::become_subreaper() {
            tracing::warn!(
                "cannot become the child subreaper ({e}): a process a worker leaves behind will not be stopped with the host"
            );
        }

        let path = cfg.socket_path();
        // We hold the lock, so a socket file here is a leftover of a dead host.
        let _ = std::fs::remove_file(&path);
        // SAFETY: umask only changes this process's file-creation mask; it makes the socket 0600
        // from the moment it exists instead of after a chmod.
        let old = unsafe { libc::umask(0o177) };
        let listener = UnixListener::bind(&path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        let listener = listener.map_err(|err| StartError::Listen {
            path: path.clone(),
            err,
        })?;
        listener.set_nonblocking(true)?;

        let workers = vec![
            WorkerRun {
                state: WorkerState::NotStarted,
                pid: None,
                started_at_ms: None,
                restarts: 0,
                ever_started: false,
                last_exit: None,
                restart_at: None,
                restart_at_ms: None,
                last_launch_us: None,
                started: None,
                history: Default::default(),
                tracker: RestartTracker::default(),
            };
            registry.workers.len()
        ];
        if cfg.launch_mode == crate::shared::config::LaunchMode::Fork {
            // Forked workers inherit the answers (see `resolve_entry`); a failure is still
            // reported by the worker's child, as its own. Done once here, not per launch: a page
            // the supervisor writes between forks is copied again after every fork.
            for spec in &registry.workers {
                let _ = crate::shared::preload::resolve_entry(&spec.library, &spec.function);
            }
        }
        let specs = crate::supervisor::private::PrivateSlice::from_vec(std::mem::take(&mut registry.workers))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let sibling_fork = if cfg.launch_mode == crate::shared::config::LaunchMode::Fork && cores > 1 {
            crate::supervisor::launch::SiblingFork::probe()
                .inspect_err(|why| tracing::debug!("workers are forked by the supervisor alone: {why}"))
                .ok()
        } else {
            None
        };
        let file_keys = crate::shared::reload::keys_in_file(&cfg.path);
        let overrides = match Config::load(&cfg.path) {
            Ok(file) if file.launch_mode != cfg.launch_mode => vec!["host.launch_mode"],
            _ => Vec::new(),
        };
        let host_defaults = Config::parse(&cfg.path, "")
            .map(|d| {
                crate::shared::reload::host_settings(&d)
                    .into_iter()
                    .map(|h| (h.key, h.value))
                    .collect()
            })
            .unwrap_or_default();
        let sup = Supervisor {
            last_reload: None,
            pending_restart: Vec::new(),
            file_keys,
            overrides,
            host_defaults,
            // The last one is reserved for status and stop (see `accept`).
            connection_slots: vec![
                false;
                (cfg.max_connections + crate::shared::control::RESERVED_CONNECTIONS) as usize
            ],
            cfg,
            specs,
            registry,
            settings,
            layout,
            segment,
            generation: 1,
            started_at_ms,
            workers: crate::supervisor::private::PrivateSlice::from_vec(workers)?,
            children: crate::supervisor::private::PidMap::new()?,
            adopted: Default::default(),
            exited: Exited::default(),
            scan_at: None,
            last_scan: None,
            dead_ends: 0,
            phase: Phase::Running,
            progress: HostState::Init,
            reported: HostState::Init,
            notifier,
            watchdog_at: None,
            extend_at: None,
            status_sent: String::new(),
            status_sent_at: None,
            status_due: None,
            spares: Vec::new(),
            spare_refill: crate::shared::shmem::SPARE_CHILDREN,
            handoffs: Vec::new(),
            sibling_fork,
            exit_code: crate::exit_code::OK,
            listener,
            wake_r,
            _wake_w: wake_w,
            death_r,
            _death_w: death_w,
            _lock: lock,
        };
        for i in 0..sup.workers.len() {
            sup.publish(i);
        }
        sup.publish_info();
        Ok(sup)
    }

    /// The host state: the one truth that status (through the segment), the service manager's
    /// `STATUS=` and the log all report. Derived, never stored on its own, so a phase change
    /// cannot leave one of them behind.
    fn state(&self) -> HostState {
        match self.phase {
            Phase::Running => self.progress,
            Phase::Recovering { .. } => HostState::Recovering,
            Phase::Stopping { .. } => HostState::Stopping,
        }
    }

    /// Publishes the state after `phase` or `progress` changed: to the segment (again after a
    /// reset, which made a new one), and, when it differs from the last one reported, to the log
    /// and the service manager (`READY=1` on reaching running, `STOPPING=1` on stopping).
    fn state_changed(&mut self) {
        let s = self.state();
        self.segment.header().set_host_state(s);
        if s == self.reported {
            return;
        }
        self.reported = s;
        tracing::info!("host state: {}", s.as_str());
        let line = self.status_line();
        let msg = match s {
            HostState::Running => format!("READY=1\n{line}"),
            // The service manager's stop timeout must not cut the host's own escalation short:
            // ask for `shutdown_timeout` and a margin (systemd uses it only where its own
            // `TimeoutStopSec` is shorter).
            HostState::Stopping => format!(
                "STOPPING=1\nEXTEND_TIMEOUT_USEC={}\n{line}",
                (self.cfg.shutdown_timeout + STOP_EXTEND_MARGIN).as_micros()
            ),
            _ => line.clone(),
        };
        self.notifier.send(&msg);
        self.status_sent = line;
        self.status_sent_at = Some(Instant::now());
    }

    /// Long start-ups under systemd: while the first start-up's hooks run, keep extending the
    /// start timeout (`EXTEND_TIMEOUT_USEC`), a tick at a time, so a slow hook (a plugin
    /// recovering its state, as PostgreSQL replays WAL) is not killed by `TimeoutStartSec`. Each
    /// extension covers three ticks, so one late turn of the loop does not end the start; the
    /// extensions stop with the first `READY=1`, and a start-up that stops making the loop turn
    /// runs into the timeout again. After a crash reset the service is already started and no
    /// start timeout runs.
    fn extend_start_timeout(&mut self) {
        let Some(at) = self.extend_at else { return };
        if !matches!(self.state(), HostState::Startup | HostState::Consistent) {
            self.extend_at = None;
            return;
        }
        let now = Instant::now();
        if now >= at {
            self.notifier
                .send(&format!("EXTEND_TIMEOUT_USEC={}", (START_EXTEND_EVERY * 3).as_micros()));
            self.extend_at = Some(now + START_EXTEND_EVERY);
        }
    }

    fn publish(&self, i: usize) {
        let w = &self.workers[i];
        self.segment.worker_slot(i as u32).status.publish(&StatusSnapshot {
            state: w.state,
            restarts: w.restarts,
            pid: w.pid,
            started_at_ms: w.started_at_ms,
            last_exit: w.last_exit.clone(),
            next_restart_at_ms: w.restart_at_ms,
            last_launch_us: w.last_launch_us,
            history: w.history.iter().cloned().collect(),
        });
    }

    /// Publishes the configuration document (`status`'s plugins and reload fields, `show`'s
    /// settings) to the segment, cut down to fit when it would not.
    fn publish_info(&self) {
        use crate::shared::control::{ConfigProblem, HostInfoDoc, PluginInfo, SettingInfo};
        let pending = |name: &str| self.pending_restart.iter().any(|k| k == name);
        let source = |name: &str| {
            if self.overrides.contains(&name) {
                "command line"
            } else if self.file_keys.contains(name) {
                "file"
            } else {
                "default"
            }
            .to_owned()
        };
        let context = |reloadable: bool| if reloadable { "reload" } else { "restart" }.to_owned();
        let mut settings: Vec<SettingInfo> = crate::shared::reload::host_settings(&self.cfg)
            .into_iter()
            .map(|h| SettingInfo {
                name: h.key.to_owned(),
                default: self.host_defaults.get(h.key).cloned().unwrap_or_default(),
                source: source(h.key),
                context: context(h.reloadable),
                pending_restart: pending(h.key),
                value: h.value,
                description: String::new(),
            })
            .collect();
        for ((plugin, key), st) in &self.settings.map {
            let name = format!("plugins.{plugin}.{key}");
            settings.push(SettingInfo {
                source: source(&name),
                context: context(st.reloadable),
                pending_restart: pending(&name),
                value: st.shown(&st.value),
                default: st.shown(&st.default),
                description: st.description.clone(),
                name,
            });
        }
        let plugins = crate::shared::preload::plugins()
            .iter()
            .map(|p| PluginInfo {
                name: p.name.clone(),
                version: p.version.clone(),
                file: p.path.display().to_string(),
            })
            .collect();
        let mut doc = HostInfoDoc {
            config_file: self.cfg.path.display().to_string(),
            plugins,
            settings,
            settings_omitted: false,
            last_reload: self.last_reload.clone(),
            pending_restart: self.pending_restart.clone(),
        };
        let fits = |doc: &HostInfoDoc| {
            let text = serde_json::to_string(doc).unwrap_or_default();
            (text.len() <= crate::shared::shmem::INFO_LEN).then_some(text)
        };
        let mut text = fits(&doc);
        if text.is_none() {
            doc.settings.clear();
            doc.settings_omitted = true;
            text = fits(&doc);
        }
        if text.is_none() {
            if let Some(r) = &mut doc.last_reload {
                let more = r.errors.len().saturating_sub(16);
                r.errors.truncate(16);
                r.errors.push(ConfigProblem {
                    file: r.file.clone(),
                    key: None,
                    reason: format!("and {more} more error(s): the host's log lists them all"),
                });
            }
            doc.pending_restart.truncate(64);
            text = fits(&doc);
        }
        match text {
            Some(t) => self.segment.header().info.publish(&t),
            None => tracing::warn!("the host's configuration is too large to publish for status and show"),
        }
    }

    fn env(&self) -> ChildEnv<'_> {
        ChildEnv {
            cfg: &self.cfg,
            registry: &self.registry,
            settings: &self.settings,
            segment: &self.segment,
            host_pid: std::process::id() as i32,
            death_fd: self.death_r.as_raw_fd(),
            generation: self.generation,
        }
    }

    /// Runs until shutdown completes; returns the process exit code.
    pub fn run(mut self) -> i32 {
        self.watchdog_at = self.notifier.watchdog_every.map(|d| Instant::now() + d);
        self.enter_startup();
        if self.notifier.enabled() && self.state() != HostState::Running {
            self.extend_at = Some(Instant::now());
            self.extend_start_timeout();
        }
        tracing::info!(
            "running: {} workers, {} worker slots ({} registered + {} for dynamic workers), {} connection slots (+{} reserved for status and stop), {} bytes of shared memory, {} mode, control socket {}",
            self.workers.len(),
            self.layout.n_worker_slots,
            self.layout.n_static_workers,
            self.layout.n_worker_slots - self.layout.n_static_workers,
            self.cfg.max_connections,
            crate::shared::control::RESERVED_CONNECTIONS,
            self.layout.size,
            self.cfg.launch_mode.as_str(),
            self.cfg.socket_path().display()
        );
        loop {
            let pending = crate::sys::take_pending();
            if pending & crate::sys::SIG_CHLD != 0 {
                self.reap();
            }
            if pending & crate::sys::SIG_QUIT != 0 {
                self.begin_shutdown(StopMode::Immediate, "SIGQUIT");
            } else if pending & crate::sys::SIG_INT != 0 {
                self.begin_shutdown(StopMode::Fast, "SIGINT");
            } else if pending & crate::sys::SIG_TERM != 0 {
                self.begin_shutdown(StopMode::Smart, "SIGTERM");
            }
            if pending & crate::sys::SIG_HUP != 0 {
                self.reload();
            }
            self.check_consistent();
            self.extend_start_timeout();
            if let Some(t) = self.watchdog_at {
                if Instant::now() >= t {
                    self.notifier.send("WATCHDOG=1");
                    self.watchdog_at = self.notifier.watchdog_every.map(|d| Instant::now() + d);
                }
            }
            // Reap again: children may have exited while signals were being handled.
            self.reap();
            if self.advance() {
                break;
            }
            let more = self.launch_due();
            if !more {
                self.tend_spares();
            }
            // After the exits and launches of this turn, so the line (or its deadline) is current.
            self.maybe_send_status();
            let timeout = if more {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
            };
            let ms = match timeout {
                None => -1,
                // Round up, so a deadline is never polled for just before it is due.
                Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
            };
            let r = crate::sys::poll_in(&[self.wake_r.as_raw_fd(), self.listener.as_raw_fd()], ms);
            if r[0] != 0 {
                crate::sys::drain(self.wake_r.as_raw_fd());
            }
            if r[1] != 0 {
                self.accept();
            }
        }
        self.finish()
    }

    fn finish(self) -> i32 {
        let _ = std::fs::remove_file(self.cfg.socket_path());
        tracing::info!("stopped");
        self.exit_code
    }

    fn next_deadline(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut best: Option<Instant> = None;
        let mut consider = |t: Instant| best = Some(best.map_or(t, |b| b.min(t)));
        if let Some(t) = self.watchdog_at {
            consider(t);
        }
        if let Some(t) = self.extend_at {
            consider(t);
        }
        if let Some(t) = self.scan_at {
            consider(t);
        }
        if let Some(t) = self.status_due {
            consider(t);
        }
        match &self.phase {
            Phase::Running => {
                // Only workers that may start now: one still waiting for its start time has no
                // deadline (counting its past restart time would make the loop spin).
                for (i, w) in self.workers.iter().enumerate() {
                    if let (WorkerState::WaitingRestart, Some(t)) = (w.state, w.restart_at) {
                        if self.start_time_reached(self.specs[i].start_time) {
                            consider(t);
                        }
                    }
                }
            }
            Phase::Recovering { kill_at, killed: false } => consider(*kill_at),
            Phase::Stopping {
                kill_at: Some(t),
                killed: false,
                ..
            } => consider(*t),
            _ => {}
        }
        best.map(|t| t.saturating_duration_since(now))
    }

    // ---- host states, startup and reload ----

    /// Whether the host has reached the state a worker with `start` waits for.
    fn start_time_reached(&self, start: StartTime) -> bool {
        match start {
            StartTime::HostStart => true,
            StartTime::Consistent => matches!(self.progress, HostState::Consistent | HostState::Running),
            StartTime::Running => self.progress == HostState::Running,
        }
    }

    fn enter_state(&mut self, s: HostState) {
        self.progress = s;
        self.state_changed();
    }

    fn status_line(&self) -> String {
        let running = self.workers.iter().filter(|w| w.state == WorkerState::Running).count();
        let failed = self.workers.iter().filter(|w| w.state == WorkerState::Failed).count();
        let shutdown = match self.phase {
            Phase::Stopping { mode, .. } => format!("{} shutdown, ", mode.as_str()),
            _ => String::new(),
        };
        format!(
            "STATUS={}: {shutdown}{running} of {} workers running, {failed} failed, generation {}",
            self.state().as_str(),
            self.workers.len(),
            self.generation
        )
    }

    /// Keeps the service manager's `STATUS=` current as workers come and go (at most every
    /// 100 ms, and at once when the count of running workers settles).
    fn maybe_send_status(&mut self) {
        if !self.notifier.enabled() {
            return;
        }
        let line = self.status_line();
        if line == self.status_sent {
            self.status_due = None;
            return;
        }
        let due = self
            .status_sent_at
            .map_or(Instant::now(), |t| t + Duration::from_millis(100));
        if Instant::now() >= due {
            self.notifier.send(&line);
            self.status_sent = line;
            self.status_sent_at = Some(Instant::now());
            self.status_due = None;
        } else {
            self.status_due = Some(due);
        }
    }

    /// At start and after every crash reset: run the startup hooks in a startup child, or go
    /// straight to running when no plugin registered any.
    fn enter_startup(&mut self) {
        if self.registry.hooks.is_empty() {
            self.enter_state(HostState::Running);
            return;
        }
        self.enter_state(HostState::Startup);
        let slot = self.layout.startup_child_slot();
        if let Err(e) = self.start_child(ChildKind::Startup, Some(slot), &StartupData::Startup, None, None) {
            tracing::error!("cannot start the startup child: {e}; stopping");
            self.exit_code = crate::exit_code::FAILURE;
            self.begin_shutdown(StopMode::Immediate, "a failed startup");
        }
    }

    /// A startup hook declared the host consistent (flag in the header, SIGUSR1 as a wake-up).
    fn check_consistent(&mut self) {
        if self.progress == HostState::Startup
            && matches!(self.phase, Phase::Running)
            && self
                .segment
                .header()
                .consistent
                .load(std::sync::atomic::Ordering::Acquire)
                != 0
        {
            self.enter_state(HostState::Consistent);
        }
    }

    fn startup_exited(&mut self, pid: i32, status: ExitStatus, outcome: Outcome, reason: String) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        if outcome == Outcome::Done {
            self.check_consistent();
            self.enter_state(HostState::Running);
            return;
        }
        let reason = match (outcome, reason.is_empty()) {
            // The child names the hook it is running in its slot, so a crash still names it.
            (Outcome::Crash, false) => format!("the startup child (pid {pid}) ended with {status} while {reason}"),
            (_, false) => reason,
            (_, true) => format!("the startup child (pid {pid}) ended with {status}"),
        };
        tracing::error!("start-up failed: {reason}; stopping");
        self.exit_code = crate::exit_code::FAILURE;
        self.begin_shutdown(StopMode::Immediate, "a failed startup hook");
    }

    /// SIGHUP: validate the whole file; apply it, or keep the running configuration. Either
    /// way the verdict is published for status and for the connection child that asked.
    fn reload(&mut self) {
        self.notifier.reloading();
        // Every control-socket request counted by now is answered by this reload, which reads
        // the file after this load.
        let covers = self
            .segment
            .header()
            .reload_requests
            .load(std::sync::atomic::Ordering::Acquire);
        let file = self.cfg.path.display().to_string();
        let report = match crate::shared::reload::plan(&self.cfg, &self.settings) {
            Err(errors) => {
                for e in &errors {
                    tracing::error!("reload: {e}");
                }
                tracing::error!(
                    "configuration not reloaded: {} error(s); keeping the running configuration",
                    errors.len()
                );
                crate::shared::control::ReloadReport {
                    at: crate::shared::time::rfc3339_ms(now_ms()),
                    outcome: "refused".into(),
                    file,
                    applied: Vec::new(),
                    pending_restart: Vec::new(),
                    errors: errors.iter().map(crate::shared::control::ConfigProblem::from).collect(),
                }
            }
            Ok(plan) => {
                crate::shared::log::configure(plan.config.log_format, &plan.config.log_level);
                self.cfg = plan.config;
                self.settings = plan.settings.clone();
                crate::shared::hostapi::with_state(|s| s.settings = plan.settings);
                for key in &plan.need_restart {
                    tracing::warn!("reload: {key} changed but takes effect only after a restart");
                }
                if plan.applied.is_empty() {
                    tracing::info!("configuration reloaded: nothing to apply");
                } else {
                    tracing::info!("configuration reloaded: applied {}", plan.applied.join(", "));
                }
                self.signal_all(Signal::SIGHUP, |c| c.kind != ChildKind::DeadEnd);
                self.reload_applied(&plan.need_restart);
                crate::shared::control::ReloadReport {
                    at: crate::shared::time::rfc3339_ms(now_ms()),
                    outcome: "applied".into(),
                    file,
                    applied: plan.applied,
                    pending_restart: plan.need_restart,
                    errors: Vec::new(),
                }
            }
        };
        self.last_reload = Some(report);
        self.publish_info();
        // After the verdict is in place: a connection child that sees this reads it.
        self.segment
            .header()
            .reloads_done
            .store(covers, std::sync::atomic::Ordering::Release);
        // The end of a reload for the service manager; but never `READY=1` before start-up has
        // completed or once stopping has begun, which would say the opposite of the state.
        let line = self.status_line();
        if self.state() == HostState::Running {
            self.notifier.send(&format!("READY=1\n{line}"));
        } else {
            self.notifier.send(&line);
        }
        self.status_sent = line;
        self.status_sent_at = Some(Instant::now());
    }

    /// Records where the running values come from after an applied reload: a reloadable key
    /// takes its value from the new file (or its default), a restart-only one keeps the value,
    /// and the source, it started with.
    fn reload_applied(&mut self, need_restart: &[String]) {
        let now_in_file = crate::shared::reload::keys_in_file(&self.cfg.path);
        let host = crate::shared::reload::host_settings(&self.cfg);
        let reloadable = |key: &str| {
            host.iter().any(|h| h.key == key && h.reloadable)
                || self
                    .settings
                    .map
                    .iter()
                    .any(|((p, k), st)| st.reloadable && key.strip_prefix("plugins.") == Some(&format!("{p}.{k}")))
        };
        let mut keys: std::collections::BTreeSet<String> =
            self.file_keys.iter().filter(|k| !reloadable(k)).cloned().collect();
        keys.extend(now_in_file.into_iter().filter(|k| reloadable(k)));
        self.file_keys = keys;
        self.pending_restart = need_restart.to_vec();
    }

    // ---- launching ----

    /// Launches up to a batch of due workers; returns whether more are due.
    fn launch_due(&mut self) -> bool {
        if !matches!(self.phase, Phase::Running) {
            return false;
        }
        let now = Instant::now();
        // The batch, on the stack: nothing the supervisor frees between forks (decision 49).
        let mut due = [0usize; LAUNCH_BATCH];
        let mut n = 0;
        let mut more = false;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if !self.start_time_reached(self.specs[i].start_time) {
                continue;
            }
            let is_due = match w.state {
                WorkerState::NotStarted => true,
                WorkerState::WaitingRestart => w.restart_at.is_none_or(|t| t <= now),
                _ => false,
            };
            if !is_due {
                continue;
            }
            if n == LAUNCH_BATCH {
                more = true;
                break;
            }
            due[n] = i;
            n += 1;
        }
        let due = &due[..n];
        // A large batch in fork mode: a helper forks the second half while this process forks
        // the first (decision 50).
        let mut split = due.len();
        let mut helper = None;
        if let (Some(sib), true) = (self.sibling_fork, due.len() >= HELPER_MIN_BATCH) {
            let half = due.len() / 2;
            for &i in &due[half..] {
                self.prepare_launch(i);
                self.assign_child_slot(i as u32);
                // The kernel writes each new worker's pid here (see `ForkHelper::finish`).
                self.segment.child_slot(i as u32).clear_pid();
            }
            let slots = due[half..].iter().map(|&i| i as u32).collect();
            match crate::supervisor::launch::start_fork_helper(&self.env(), sib, slots) {
                Ok(h) => {
                    tracing::debug!("a fork helper starts {} of {} due workers", due.len() - half, due.len());
                    helper = Some(h);
                    split = half;
                }
                Err(e) => tracing::debug!("no fork helper ({e}): the supervisor forks the whole batch"),
            }
        }
        for &i in &due[..split] {
            self.launch_worker(i);
        }
        if let Some(h) = helper {
            for (slot, result) in h.finish(&self.segment) {
                let i = slot as usize;
                // `finish` checked that each pid is this process's child; one it already tracks
                // (another worker, a spare, an adopted process) was forged in shared memory.
                let result = result.and_then(|pid| {
                    if self.children.get(pid).is_some() || self.adopted.contains_key(&pid) {
                        let why =
                            format!("child slot {slot} claims pid {pid}, which is another child of the supervisor");
                        return Err(std::io::Error::other(why));
                    }
                    Ok(pid)
                });
                self.track_launched(&result, ChildKind::Worker, Some(slot), Some(i));
                self.record_launch(i, result);
            }
        }
        more
    }

    /// Clears worker `i`'s launch timestamps in its child slot before it is launched.
    fn prepare_launch(&self, i: usize) {
        self.segment
            .child_slot(i as u32)
            .prepare_launch(crate::shared::shmem::monotonic_ns());
    }

    fn launch_worker(&mut self, i: usize) {
        let slot = i as u32;
        self.prepare_launch(i);
        // Only a spare that finished loading: one still loading could fail on a plugin file that
        // has changed since, and would report that older failure as this worker's.
        let ready = self
            .spares
            .iter()
            .position(|(_, s)| self.segment.child_slot(*s).report().ready);
        let result = match ready.map(|k| self.spares.swap_remove(k)) {
            Some((pid, sslot)) => {
                // Hand the worker slot to a spare: it claims `slot` and runs the entry.
                self.assign_child_slot(slot);
                self.segment.child_slot(slot).expect_pid(pid);
                self.segment.child_slot(sslot).hand_over(slot);
                self.handoffs.push(pid);
                self.spare_refill += 1;
                let child = Child {
                    kind: ChildKind::Worker,
                    child_slot: Some(slot),
                    worker: Some(i),
                    signalled: false,
                    spare_slot: Some(sslot),
                };
                self.children.insert(pid, child);
                Ok(pid)
            }
            None => self.start_child(
                ChildKind::Worker,
                Some(slot),
                &StartupData::Worker { worker_slot: slot },
                None,
                Some(i),
            ),
        };
        self.record_launch(i, result);
    }

    fn record_launch(&mut self, i: usize, result: std::io::Result<i32>) {
        let w = &mut self.workers[i];
        match result {
            Ok(pid) => {
                if w.ever_started {
                    w.restarts += 1;
                }
                w.ever_started = true;
                w.state = WorkerState::Running;
                w.pid = Some(pid);
                w.started_at_ms = Some(now_ms());
                w.started = Some(Instant::now());
                w.restart_at = None;
                w.restart_at_ms = None;
                tracing::debug!("started worker {} (pid {pid})", self.specs[i].name);
            }
            Err(e) => {
                tracing::error!(
                    "cannot start worker {}: {e}; retrying in {:?}",
                    self.specs[i].name,
                    LAUNCH_RETRY
                );
                w.state = WorkerState::WaitingRestart;
                w.restart_at = Some(Instant::now() + LAUNCH_RETRY);
                w.restart_at_ms = Some(now_ms() + LAUNCH_RETRY.as_millis() as u64);
            }
        }
        self.publish(i);
    }

    /// Marks a child slot as assigned to a child about to start, with no reason yet.
    fn assign_child_slot(&self, slot: u32) {
        self.segment.child_slot(slot).assign();
    }

    /// Starts a child through `launch_child` and records it. Its slot, if it has one, is assigned
    /// first and freed again if the launch fails.
    fn start_child(
        &mut self,
        kind: ChildKind,
        slot: Option<u32>,
        startup: &StartupData,
        client: Option<ClientSocket>,
        worker: Option<usize>,
    ) -> std::io::Result<i32> {
        if let Some(s) = slot {
            self.assign_child_slot(s);
        }
        let result = launch_child(&self.env(), kind, slot, startup, client);
        self.track_launched(&result, kind, slot, worker);
        result
    }

    /// Records a launched child, or frees its slot again if the launch failed.
    fn track_launched(
        &mut self,
        result: &std::io::Result<i32>,
        kind: ChildKind,
        slot: Option<u32>,
        worker: Option<usize>,
    ) {
        match result {
            Ok(pid) => {
                let child = Child {
                    kind,
                    child_slot: slot,
                    worker,
                    signalled: false,
                    spare_slot: None,
                };
                self.children.insert(*pid, child);
            }
            Err(_) => {
                if let Some(s) = slot {
                    self.segment.child_slot(s).free();
                }
            }
        }
    }

    // ---- spare children (exec mode) ----

    /// Frees spare slots whose workers claimed their own slot, and starts spares when the loop
    /// has nothing else to launch.
    fn tend_spares(&mut self) {
        if self.cfg.launch_mode != crate::shared::config::LaunchMode::Exec || !matches!(self.phase, Phase::Running) {
            return;
        }
        let claimed: Vec<i32> = self
            .handoffs
            .iter()
            .copied()
            .filter(|pid| {
                self.children
                    .get(*pid)
                    .and_then(|c| c.child_slot)
                    .is_some_and(|w| self.segment.child_slot(w).report().claimed_by(*pid))
            })
            .collect();
        for pid in claimed {
            self.handoffs.retain(|p| *p != pid);
            if let Some(ss) = self.children.get_mut(pid).and_then(|c| c.spare_slot.take()) {
                self.free_spare_slot(ss);
            }
        }
        while self.spare_refill > 0 && (self.spares.len() as u32) < crate::shared::shmem::SPARE_CHILDREN {
            let Some(sslot) = self.free_spare_child_slot() else {
                break;
            };
            self.spare_refill -= 1;
            match self.start_child(ChildKind::Spare, Some(sslot), &StartupData::Spare, None, None) {
                Ok(pid) => self.spares.push((pid, sslot)),
                Err(e) => {
                    tracing::warn!("cannot start a spare child: {e}");
                    break;
                }
            }
        }
    }

    /// A spare slot that neither a waiting spare nor an unclaimed hand-off uses.
    fn free_spare_child_slot(&self) -> Option<u32> {
        (0..self.layout.n_spare_slots)
            .map(|k| self.layout.spare_child_slot(k))
            .find(|s| {
                !self.segment.child_slot(*s).report().in_use()
                    && !self.spares.iter().any(|(_, ss)| ss == s)
                    && !self.children.values().any(|c| c.spare_slot == Some(*s))
            })
    }

    fn free_spare_slot(&self, s: u32) {
        self.segment.child_slot(s).free();
    }

    // ---- connections ----

    fn accept(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let (stream, addr) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            };
            let client = ClientSocket {
                fd: OwnedFd::from(stream),
                local: self.cfg.socket_path().display().to_string(),
                peer: addr.as_pathname().map(|p| p.display().to_string()).unwrap_or_default(),
            };
            let refusal = match &self.phase {
                // Named by the host state too, as status and `STATUS=` name it.
                Phase::Stopping { mode, .. } => Some(format!(
                    "the host is shutting down (state stopping, {} shutdown)",
                    mode.as_str()
                )),
                Phase::Recovering { .. } => Some("the host is recovering from a crash (state recovering)".to_owned()),
                Phase::Running => None,
            };
            let busy = refusal.as_ref().map(|_| self.state().as_str().to_owned());
            // An ordinary slot first; the reserved ones (at the end) only when those are all
            // taken, so they stay free for an operator's status or stop as long as possible.
            let free = self.connection_slots.iter().position(|u| !u);
            match (refusal, free) {
                (None, Some(i)) => {
                    let slot = self.layout.connection_child_slot(i as u32);
                    match self.start_child(
                        ChildKind::Connection,
                        Some(slot),
                        &StartupData::Connection,
                        Some(client),
                        None,
                    ) {
                        Ok(_) => self.connection_slots[i] = true,
                        Err(e) => tracing::error!("cannot start a connection child: {e}"),
                    }
                }
                (refusal, _) => {
                    let message = refusal.unwrap_or_else(|| {
                        format!("too many connections (max_connections = {})", self.cfg.max_connections)
                    });
                    // Dead-end children are bounded too: past the bound the socket is just closed.
                    if self.dead_ends >= self.connection_slots.len() * 2 + 8 {
                        continue;
                    }
                    match self.start_child(
                        ChildKind::DeadEnd,
                        None,
                        &StartupData::DeadEnd { message, state: busy },
                        Some(client),
                        None,
                    ) {
                        Ok(_) => self.dead_ends += 1,
                        Err(e) => tracing::error!("cannot start a dead-end child: {e}"),
                    }
                }
            }
        }
    }

    // ---- reaping ----

    fn reap(&mut self) {
        let mut reaped = false;
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), ExitStatus::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            };
            reaped = true;
            if let Some(child) = self.children.remove(pid) {
                // A control connection or a dead-end child runs only the host's own code and
                // starts no process: its exit next to a worker's must not blur the attribution.
                if child.kind.info().runs_plugin_code {
                    self.exited.push(Origin::Child {
                        pid,
                        kind: child.kind,
                        worker: child.worker,
                    });
                }
                self.child_exited(pid, child, status);
                continue;
            }
            let from = match self.adopted.remove(&pid) {
                Some(a) => a.from,
                // Adopted and gone before a scan saw it.
                None => self.exited.attribution(|o| self.name(o)),
            };
            tracing::info!("adopted process {pid} (left behind by {from}) exited with {status}");
            self.exited.push(Origin::Adopted { pid });
        }
        if reaped && self.scan_at.is_none() {
            let now = Instant::now();
            let interval = if self.children.len() + self.adopted.len() <= ADOPTION_SCAN_EAGER {
                Duration::ZERO
            } else {
                ADOPTION_SCAN_INTERVAL
            };
            self.scan_at = Some(self.last_scan.map_or(now, |t| (t + interval).max(now)));
        }
        if self.scan_at.is_some_and(|t| Instant::now() >= t) {
            self.scan_adopted();
        }
    }

    /// How a reaped process is named where an adopted process is attributed to it.
    fn name(&self, o: Origin) -> String {
        match o {
            Origin::Child {
                pid, worker: Some(i), ..
            } => format!("worker {} (pid {pid})", self.specs[i].name),
            Origin::Child { pid, kind, .. } => format!("{} child (pid {pid})", kind.info().name),
            Origin::Adopted { pid } => format!("adopted process {pid}"),
        }
    }

    /// Records every child of this process that is neither a child it started nor one it already
    /// adopted, attributed to what was reaped since the last scan. During a shutdown that has
    /// signalled its children, a newly adopted process gets the same signal at once.
    fn scan_adopted(&mut self) {
        let from = self.exited.attribution(|o| self.name(o));
        self.exited = Exited::default();
        self.scan_at = None;
        self.last_scan = Some(Instant::now());
        let mut new = Vec::new();
        for pid in crate::sys::own_children() {
            if self.children.get(pid).is_none() && !self.adopted.contains_key(&pid) {
                tracing::info!("adopted process {pid}, left behind by {from}");
                self.adopted.insert(pid, Adopted { from: from.clone() });
                new.push(pid);
            }
        }
        if let Phase::Stopping {
            mode,
            signalled: true,
            killed,
            ..
        } = self.phase
        {
            let sig = match (killed, mode) {
                (true, _) => Signal::SIGKILL,
                (false, StopMode::Immediate) => Signal::SIGQUIT,
                (false, _) => Signal::SIGTERM,
            };
            for pid in new {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
        }
    }

    /// Sends `sig` to every adopted process.
    fn signal_adopted(&self, sig: Signal) {
        for &pid in self.adopted.keys() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
    }

    fn child_exited(&mut self, pid: i32, child: Child, status: ExitStatus) {
        // Copy what the child left in its slot: bounded, untrusted.
        let (dead_man, reason, launch_us) = match child.child_slot {
            Some(s) => {
                let cs = self.segment.child_slot(s);
                let report = cs.report();
                cs.free();
                (report.dead_man(), report.reason, report.launch_us)
            }
            None => (false, String::new(), None),
        };
        if let (Some(i), Some(us)) = (child.worker, launch_us) {
            self.workers[i].last_launch_us = Some(us);
        }
        if let Some(ss) = child.spare_slot {
            self.free_spare_slot(ss);
            self.handoffs.retain(|p| *p != pid);
        }
        let outcome = classify(status, dead_man, child.signalled);
        if status == ExitStatus::Code(crate::shared::shmem::EXIT_CORRUPT_SEGMENT) && !child.signalled {
            // Every child after this one would refuse the segment too (its own log line names
            // the check that failed): reset it, as for any crash, whatever the child's kind.
            // The code is the claim, not proof: plugin code may exit with 3 too. The child's own
            // line before this one names the check that failed when it was the segment.
            let what = format!(
                "{} child (pid {pid}) exited with code 3, which reports a corrupt shared-memory segment",
                child.kind.info().name
            );
            match child.kind {
                ChildKind::Spare => {
                    self.spares.retain(|(p, _)| *p != pid);
                    self.crash(&what);
                    return;
                }
                ChildKind::Startup => {
                    self.crash(&what);
                    return;
                }
                ChildKind::Worker | ChildKind::Connection | ChildKind::DeadEnd => {}
            }
        }
        match child.kind {
            ChildKind::DeadEnd => {
                self.dead_ends = self.dead_ends.saturating_sub(1);
            }
            ChildKind::Startup => self.startup_exited(pid, status, outcome, reason),
            ChildKind::Spare => {
                // Died before it was handed a worker: it touched nothing shared but its own slot,
                // so this is not a crash; it is not replaced until a spare is used again.
                self.spares.retain(|(p, _)| *p != pid);
                if !child.signalled {
                    tracing::warn!("spare child (pid {pid}) ended with {status}: {reason}");
                }
            }
            ChildKind::Connection => {
                if let Some(s) = child.child_slot {
                    let i = (s - self.layout.n_worker_slots) as usize;
                    if let Some(u) = self.connection_slots.get_mut(i) {
                        *u = false;
                    }
                }
                if outcome == Outcome::Crash {
                    self.crash(&format!(
                        "connection child (pid {pid}) crashed: {status}{}",
                        corrupt_note(status)
                    ));
                }
            }
            ChildKind::Worker => {
                let Some(i) = child.worker else { return };
                self.worker_exited(i, pid, status, outcome, dead_man, reason);
            }
        }
    }

    fn worker_exited(
        &mut self,
        i: usize,
        pid: i32,
        status: ExitStatus,
        outcome: Outcome,
        dead_man: bool,
        reason: String,
    ) {
        let spec = &self.specs[i];
        let name = spec.name.clone();
        let policy = spec.restart;
        let crash_loop = spec.crash_loop;
        let reason = match (outcome, reason.is_empty()) {
            (Outcome::Crash, _) if dead_man && matches!(status, ExitStatus::Code(_)) => {
                format!("crashed: {status} without a clean exit (dead-man flag still set)")
            }
            (Outcome::Crash, _) => format!("crashed: {status}{}", corrupt_note(status)),
            (Outcome::StoppedByHost, _) => format!("stopped by the host ({status})"),
            (_, false) => reason,
            (Outcome::Done, true) => "done".to_owned(),
            (_, true) => status.to_string(),
        };
        let w = &mut self.workers[i];
        w.pid = None;
        w.last_exit = Some((status, now_ms(), reason.clone()));
        w.history.push_front((status, now_ms(), reason.clone()));
        w.history.truncate(crate::shared::shmem::EXIT_HISTORY);
        let ran_for = w.started.take().map(|t| t.elapsed()).unwrap_or_default();

        if !matches!(self.phase, Phase::Running) {
            // Recovering or stopping: what happens next is decided by the phase, not the exit.
            if matches!(self.phase, Phase::Stopping { .. }) {
                w.state = WorkerState::Stopped;
            }
            self.publish(i);
            return;
        }
        match next_for(outcome, policy) {
            Next::Stop => {
                w.state = WorkerState::Stopped;
                tracing::info!("worker {name} (pid {pid}) exited with {status}: {reason}; not restarting");
            }
            Next::Fail => {
                w.state = WorkerState::Failed;
                tracing::error!("worker {name} (pid {pid}) failed with {status}: {reason}; not restarting");
            }
            Next::Restart => match w.tracker.decide(policy, crash_loop, Instant::now(), ran_for) {
                RestartDecision::After(d) => {
                    w.state = WorkerState::WaitingRestart;
                    w.restart_at = Some(Instant::now() + d);
                    w.restart_at_ms = Some(now_ms() + d.as_millis() as u64);
                    tracing::info!(
                        "worker {name} (pid {pid}) exited with {status}: {reason}; restarting in {}",
                        crate::shared::time::format_duration(d)
                    );
                }
                RestartDecision::GiveUp(why) => {
                    w.state = WorkerState::Failed;
                    let full = format!("{why} (last exit: {reason})");
                    w.last_exit = Some((status, now_ms(), full.clone()));
                    tracing::error!("worker {name} (pid {pid}) failed: {full}; not restarting");
                }
            },
            Next::ResetHost => {
                // A crash counts against the crashed worker's crash-loop limit too.
                if !matches!(policy, RestartPolicy::Never) {
                    if let RestartDecision::GiveUp(why) = w.tracker.decide(policy, crash_loop, Instant::now(), ran_for)
                    {
                        w.state = WorkerState::Failed;
                        w.last_exit = Some((status, now_ms(), format!("{why} (last exit: {reason})")));
                        tracing::error!(
                            "worker {name} (pid {pid}) failed: {why}; it will not start again after the reset"
                        );
                        self.publish(i);
                        self.crash(&format!("worker {name} (pid {pid}) {reason}"));
                        return;
                    }
                }
                w.state = WorkerState::WaitingRestart;
                self.publish(i);
                self.crash(&format!("worker {name} (pid {pid}) {reason}"));
                return;
            }
        }
        self.publish(i);
    }

    // ---- crash recovery ----

    fn crash(&mut self, what: &str) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        if !self.cfg.restart_after_crash {
            tracing::error!("{what}; restart_after_crash is off: stopping the host");
            self.exit_code = crate::exit_code::FAILURE;
            self.begin_shutdown(StopMode::Immediate, "a crash");
            return;
        }
        tracing::error!(
            "{what}; {} and resetting shared memory",
            stopping_children(self.children.len())
        );
        self.phase = Phase::Recovering {
            kill_at: Instant::now() + self.cfg.crash_kill_timeout,
            killed: false,
        };
        self.state_changed();
        self.signal_all(Signal::SIGQUIT, |_| true);
    }

    fn signal_all(&mut self, sig: Signal, which: impl Fn(&Child) -> bool) {
        for (pid, c) in self.children.iter_mut() {
            if which(c) {
                // A reload request is not a stop: a death after SIGHUP is judged on its own.
                c.signalled |= sig != Signal::SIGHUP;
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
        }
    }

    fn attached_children(&self) -> usize {
        self.children.values().filter(|c| c.kind.info().attaches_shmem).count()
    }

    /// Recreates the segment and schedules the workers that restart after a crash.
    fn reset(&mut self) {
        self.generation += 1;
        match Segment::create(
            &self.layout,
            &self.specs,
            &self.registry.regions,
            &self.cfg,
            self.generation,
            self.started_at_ms,
        ) {
            Ok(seg) => {
                self.segment = seg;
                self.publish_info();
            }
            Err(e) => {
                tracing::error!("cannot recreate shared memory after a crash: {e}; stopping");
                self.exit_code = crate::exit_code::FAILURE;
                // Not `state_changed`: the host goes from recovering straight to stopping.
                self.phase = Phase::Running;
                self.begin_shutdown(StopMode::Immediate, "a failed reset");
                return;
            }
        }
        let now = Instant::now();
        let mut restarting = 0;
        for (i, w) in self.workers.iter_mut().enumerate() {
            let policy = self.specs[i].restart;
            if w.state == WorkerState::NotStarted {
                // Never started (still waiting for its start time): it starts when that comes,
                // whatever its restart policy.
                continue;
            }
            if restarts_after_reset(w.state, policy) {
                w.state = WorkerState::WaitingRestart;
                w.restart_at = Some(now);
                w.restart_at_ms = None;
                restarting += 1;
            } else if matches!(
                w.state,
                WorkerState::Running | WorkerState::WaitingRestart | WorkerState::NotStarted
            ) {
                w.state = WorkerState::Stopped;
                w.restart_at = None;
                w.restart_at_ms = None;
                if matches!(policy, RestartPolicy::Never) && w.last_exit.is_none() {
                    w.last_exit = Some((
                        ExitStatus::Signal(libc::SIGQUIT),
                        now_ms(),
                        "stopped by a crash reset".into(),
                    ));
                }
            }
        }
        for i in 0..self.workers.len() {
            self.publish(i);
        }
        // Published by `enter_startup` below, so the host goes from recovering to startup (or
        // running) without reporting the running of before the crash in between.
        self.phase = Phase::Running;
        // Every spare belonged to the old segment and is gone: start afresh when idle.
        self.spares.clear();
        self.handoffs.clear();
        self.spare_refill = crate::shared::shmem::SPARE_CHILDREN;
        tracing::info!(
            "shared memory reset (generation {}); restarting {restarting} workers",
            self.generation
        );
        self.enter_startup();
    }

    // ---- shutdown ----

    fn begin_shutdown(&mut self, mode: StopMode, why: &str) {
        if let Phase::Stopping { mode: current, .. } = self.phase {
            if mode <= current {
                return;
            }
        }
        tracing::info!("{} shutdown requested ({why})", mode.as_str());
        self.spare_refill = 0;
        self.spares.clear();
        for w in self.workers.iter_mut() {
            if matches!(w.state, WorkerState::WaitingRestart | WorkerState::NotStarted) {
                w.state = WorkerState::Stopped;
                w.restart_at = None;
                w.restart_at_ms = None;
            }
        }
        for i in 0..self.workers.len() {
            self.publish(i);
        }
        self.phase = Phase::Stopping {
            mode,
            signalled: false,
            kill_at: None,
            killed: false,
        };
        self.state_changed();
    }

    /// Moves the current phase forward; returns true when the host may exit.
    fn advance(&mut self) -> bool {
        let now = Instant::now();
        match self.phase.clone() {
            Phase::Running => false,
            Phase::Recovering { kill_at, killed } => {
                if self.attached_children() == 0 {
                    self.reset();
                } else if !killed && now >= kill_at {
                    tracing::warn!(
                        "{} still alive after crash_kill_timeout: sending SIGKILL",
                        match self.attached_children() {
                            1 => "1 child".to_owned(),
                            n => format!("{n} children"),
                        }
                    );
                    self.signal_all(Signal::SIGKILL, |c| c.kind.info().attaches_shmem);
                    self.phase = Phase::Recovering { kill_at, killed: true };
                }
                false
            }
            Phase::Stopping {
                mode,
                signalled,
                kill_at,
                killed,
            } => {
                if self.children.is_empty() {
                    // Nothing that is left may outlive the host: look once more for processes
                    // the last children left behind (they are signalled as they are found).
                    self.scan_adopted();
                    if self.adopted.is_empty() {
                        return true;
                    }
                }
                let connections = self
                    .children
                    .values()
                    .filter(|c| c.kind == ChildKind::Connection)
                    .count();
                if mode == StopMode::Smart && !signalled && connections > 0 {
                    return false; // smart: wait for clients to finish
                }
                if !signalled {
                    let sig = if mode == StopMode::Immediate {
                        Signal::SIGQUIT
                    } else {
                        Signal::SIGTERM
                    };
                    // With no child left (smart or fast), the adopted ones are still signalled;
                    // the scan just above has found them already.
                    if !self.children.is_empty() {
                        self.signal_all(sig, |_| true);
                        self.scan_adopted();
                    }
                    self.signal_adopted(sig);
                    self.phase = Phase::Stopping {
                        mode,
                        signalled: true,
                        kill_at: Some(now + self.cfg.shutdown_timeout),
                        killed,
                    };
                    return false;
                }
                if let Some(t) = kill_at {
                    if !killed && now >= t {
                        let mut live: Vec<(i32, Child)> = self.children.iter().map(|(p, c)| (p, *c)).collect();
                        live.sort_by_key(|(pid, _)| *pid);
                        let mut names: Vec<String> = live
                            .iter()
                            .map(|(pid, c)| match c.worker {
                                Some(i) => format!("{} (pid {pid})", self.specs[i].name),
                                None => format!("{} (pid {pid})", c.kind.info().name),
                            })
                            .collect();
                        names.extend(
                            self.adopted
                                .iter()
                                .map(|(pid, a)| format!("adopted process {pid} (left behind by {})", a.from)),
                        );
                        tracing::warn!(
                            "still running after shutdown_timeout, sending SIGKILL: {}",
                            names.join(", ")
                        );
                        self.signal_all(Signal::SIGKILL, |_| true);
                        self.signal_adopted(Signal::SIGKILL);
                        self.phase = Phase::Stopping {
                            mode,
                            signalled,
                            kill_at,
                            killed: true,
                        };
                    }
                }
                false
            }
        }
    }
}

/// What a crashed child's exit code says about the segment, for the crash's log line.
fn corrupt_note(status: ExitStatus) -> &'static str {
    if status == ExitStatus::Code(crate::shared::shmem::EXIT_CORRUPT_SEGMENT) {
        " (the code that reports a corrupt shared-memory segment)"
    } else {
        ""
    }
}

/// The log's words for stopping the children left at a crash (the crashed one is gone already).
fn stopping_children(n: usize) -> String {
    match n {
        0 => "no other child is running".to_owned(),
        1 => "stopping the 1 other child (SIGQUIT)".to_owned(),
        n => format!("stopping the {n} other children (SIGQUIT)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adopted_process_is_attributed_only_when_one_process_exited() {
        let name = |o: Origin| match o {
            Origin::Child { pid, .. } => format!("worker (pid {pid})"),
            Origin::Adopted { pid } => format!("adopted process {pid}"),
        };
        let mut e = Exited::default();
        assert_eq!(e.attribution(name), "an unknown process");
        let w = |pid| Origin::Child {
            pid,
            kind: ChildKind::Worker,
            worker: Some(0),
        };
        e.push(w(7));
        assert_eq!(e.attribution(name), "worker (pid 7)");
        e.push(Origin::Adopted { pid: 8 });
        e.push(w(9));
        assert_eq!(
            e.attribution(name),
            "one of 3 processes that exited together (worker (pid 7) ... worker (pid 9))"
        );
    }

    #[test]
    fn the_crash_line_counts_the_other_children_in_words() {
        assert_eq!(stopping_children(0), "no other child is running");
        assert_eq!(stopping_children(1), "stopping the 1 other child (SIGQUIT)");
        assert_eq!(stopping_children(7), "stopping the 7 other children (SIGQUIT)");
    }
}
