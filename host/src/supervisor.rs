//! The supervisor: `steward run` after preload; its event loop.
//!
//! Runs in: the supervisor process only. Single-threaded.
//!
//! One loop waits on one poll set (the self-pipe that signal handlers write to, the control
//! socket and plugins' listeners, see `clients`) with one deadline (the core's next restart or
//! kill escalation, and the loop's own watchdog, status and scan times). Each iteration: take
//! signal flags, reap children, feed what happened to the lifecycle core, carry out the actions
//! it returns, accept a bounded batch of connections. Nothing blocks on a child.
//!
//! The split: [`core`] decides (host phase, worker states, restarts, crash reset, shutdown,
//! exit code) and performs no system call; this module and its submodules do only what needs
//! the OS: poll, waitpid, fork/spawn, kill, shared-memory and socket I/O, the service manager,
//! and the bookkeeping of what the core does not decide: child slots ([`pool`]), spares
//! (`spares`), the fork helper
//! and launches (`batch`), connection admission (`admission`), adopted processes and
//! reaping (`adoption`), the status published to the segment and the service manager
//! (`status`), and reload validation (`reloading`). An action whose result the core needs
//! (a launch, a segment, a scan) is answered with the next event before any other event.
//!
//! Ownership: the core owns the private worker table (the truth about state, restarts and
//! exits); the loop publishes a copy of each worker's status to its slot in shared memory for
//! connection children to read. It never takes a lock in shared memory and reads only what
//! children may write there (their child slot's state and reason) with bounded copies.
//!
//! Adopted processes: the supervisor is its children's subreaper, so a process a child leaves
//! behind becomes its child. After a reap that reaped something (rate-limited when it has many
//! children) it records the children it did not start (attributed to the one process reaped
//! since the previous scan, if there was one), reaps them like any child, and stops them at
//! shutdown; it never exits while one is alive.

mod admission;
mod adoption;
mod batch;
// issue 15: connections
mod clients;
mod control_intake;
pub mod core;
pub mod launch;
mod launchers;
pub mod notify;
pub mod pool;
pub mod private;
mod reloading;
pub mod run;
mod spares;
// issue 15: client spares
mod client_spares;
pub mod spawn;
mod status;
// issue 14: queue
mod queue;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use crate::shared::config::Config;
use crate::shared::handoff::ChildEnv;
use crate::shared::lockfile::LockFile;
use crate::shared::registry::{Registry, Settings};
use crate::shared::shmem::{Layout, Segment};
use crate::shared::time::now_ms;

use self::core::{Action, Actions, Core, Event, Level, Now, Phase, Progress};

/// The supervisor: the lifecycle core and everything the event loop around it keeps.
pub struct Supervisor {
    cfg: Config,
    core: Core,
    /// The action buffer, reused on every event so that a burst of launches allocates nothing
    /// per worker for it.
    actions: Option<Actions>,
    /// Set once the core asked to exit.
    exit: Option<i32>,
    /// The rest of the registry, which children get too (see [`Registry::for_children`]).
    registry: Registry,
    settings: Settings,
    layout: Layout,
    segment: Segment,
    started_at_ms: u64,
    /// Reaped since the last scan for adopted processes.
    exited: adoption::Exited,
    /// When the next scan for adopted processes is due (something was reaped since the last).
    scan_at: Option<Instant>,
    last_scan: Option<Instant>,
    /// Which child slot each new child gets, per kind (see [`pool`]).
    pool: pool::ChildSlotPool,
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
    /// Spare children not yet handed a worker or a client.
    spares: Vec<spares::WaitingSpare>,
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
    listener: UnixListener,
    // issue 15: connections
    /// Plugins' listeners (see [`clients`]).
    listeners: clients::Listeners,
    /// The control socket's rest after a failed `accept`.
    control_backoff: clients::AcceptBackoff,
    wake_r: OwnedFd,
    _wake_w: OwnedFd,
    death_r: OwnedFd,
    _death_w: OwnedFd,
    _lock: LockFile,
    // issue 14: control
    /// The requester whose request is being fed to the core (a worker's name, or `control`).
    requester: Option<String>,
    /// Who launched each dynamic worker in the table (see [`control_intake`]).
    launchers: std::collections::BTreeMap<core::WorkerKey, String>,
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
    // issue 15: connections
    #[error("{0}")]
    Bind(#[from] clients::BindError),
}

/// The moment an event is fed to the core.
fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall_ms: now_ms(),
    }
}

/// The core's settings from the configuration.
fn core_settings(cfg: &Config) -> core::Settings {
    core::Settings {
        shutdown_timeout: cfg.shutdown_timeout,
        crash_kill_timeout: cfg.crash_kill_timeout,
        restart_after_crash: cfg.restart_after_crash,
    }
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
        // inherit and which needs only the regions from now on: one copy, in the core.
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
        // issue 14: queue
        queue::load_launch_fail_knob();
        // A worker's own child that outlives it comes to the supervisor, which reaps it and stops
        // it at shutdown, instead of escaping to init (as PID 1 of a namespace it comes anyway).
        if let Err(e) = crate::sys::become_subreaper() {
            tracing::warn!(
                "cannot become the child subreaper ({e}): a process a worker leaves behind will not be stopped with the host"
            );
        }

        // issue 15: connections
        // Before the control socket, so a listener that cannot be bound leaves nothing behind.
        let listeners = clients::Listeners::bind(&cfg, layout.n_client_slots)?;
        let path = cfg.socket_path();
        // We hold the lock, so a socket file here is a leftover of a dead host.
        let _ = std::fs::remove_file(&path);
        // 0600 from the moment it exists (see `bind_with_mode` for the mask's part).
        let listener = clients::bind_with_mode(&path, 0o600).map_err(|err| StartError::Listen {
            path: path.clone(),
            err,
        })?;
        listener.set_nonblocking(true)?;

        if cfg.launch_mode == crate::shared::config::LaunchMode::Fork {
            // Forked workers inherit the answers (see `resolve_entry`); a failure is still
            // reported by the worker's child, as its own. Done once here, not per launch: a page
            // the supervisor writes between forks is copied again after every fork.
            for spec in &registry.workers {
                let _ = crate::shared::preload::resolve_entry(&spec.library, &spec.function);
            }
        }
        let mut core = Core::new(
            core_settings(&cfg),
            std::mem::take(&mut registry.workers),
            layout.n_worker_slots,
            !registry.hooks.is_empty(),
        )?;
        // issue 14: queue
        core.set_reserved(cfg.reserved_worker_slots.clone());
        // issue 14: segment init
        core.set_segment_inits(!registry.segment_inits.is_empty());
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
            pool: pool::ChildSlotPool::for_host(&layout)?,
            cfg,
            core,
            actions: Some(Actions::new()?),
            exit: None,
            registry,
            settings,
            layout,
            segment,
            started_at_ms,
            exited: adoption::Exited::default(),
            scan_at: None,
            last_scan: None,
            notifier,
            watchdog_at: None,
            extend_at: None,
            status_sent: String::new(),
            status_sent_at: None,
            status_due: None,
            spares: Vec::new(),
            spare_refill: crate::shared::shmem::SPARE_CHILDREN,
            handoffs: Vec::new(),
            requester: None,
            launchers: std::collections::BTreeMap::new(),
            sibling_fork,
            listener,
            listeners,
            control_backoff: Default::default(),
            wake_r,
            _wake_w: wake_w,
            death_r,
            _death_w: death_w,
            _lock: lock,
        };
        for w in sup.core.workers() {
            sup.publish(w.key);
        }
        sup.publish_info();
        Ok(sup)
    }

    fn env(&self) -> ChildEnv<'_> {
        ChildEnv {
            cfg: &self.cfg,
            registry: &self.registry,
            settings: &self.settings,
            segment: &self.segment,
            host_pid: std::process::id() as i32,
            death_fd: self.death_r.as_raw_fd(),
            generation: self.core.generation(),
        }
    }

    /// Runs until shutdown completes; returns the process exit code.
    pub fn run(mut self) -> i32 {
        self.watchdog_at = self.notifier.watchdog_every.map(|d| Instant::now() + d);
        self.feed(Event::Start);
        if self.notifier.enabled() && self.core.state() != crate::shared::control::HostState::Running {
            self.extend_at = Some(Instant::now());
            self.extend_start_timeout();
        }
        tracing::info!(
            "running: {} workers, {} worker slots ({} registered + {} for dynamic workers), {} connection slots (+{} reserved for status and stop), {} bytes of shared memory, {} mode, control socket {}",
            self.core.workers().count(),
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
            use crate::shared::control::StopMode;
            if pending & crate::sys::SIG_QUIT != 0 {
                self.feed(Event::Stop {
                    mode: StopMode::Immediate,
                    why: "SIGQUIT",
                });
            } else if pending & crate::sys::SIG_INT != 0 {
                self.feed(Event::Stop {
                    mode: StopMode::Fast,
                    why: "SIGINT",
                });
            } else if pending & crate::sys::SIG_TERM != 0 {
                self.feed(Event::Stop {
                    mode: StopMode::Smart,
                    why: "SIGTERM",
                });
            }
            if pending & crate::sys::SIG_HUP != 0 {
                self.reload();
            }
            self.check_segment_ready();
            self.check_consistent();
            if pending & crate::sys::SIG_USR1 != 0 {
                self.check_ready();
                // issue 14: dynamic workers
                self.intake();
                // issue 14: control
                self.intake_control();
                // issue 14: notifications
                self.intake_startup();
                // A request may have made a running worker a target others wait for.
                self.check_ready();
                // issue 15: connections
                self.intake_clients();
            }
            self.extend_start_timeout();
            if let Some(t) = self.watchdog_at {
                if Instant::now() >= t {
                    self.notifier.send("WATCHDOG=1");
                    self.watchdog_at = self.notifier.watchdog_every.map(|d| Instant::now() + d);
                }
            }
            // Reap again: children may have exited while signals were being handled.
            self.reap();
            if self.exit.is_some() {
                break;
            }
            // Launches a batch of due workers, escalates what timed out.
            self.feed(Event::Deadline);
            if self.exit.is_some() {
                break;
            }
            let core_next = self.core.next_deadline(now());
            let more = core_next.is_some_and(|t| t <= Instant::now());
            if !more {
                self.tend_spares();
            }
            // issue 14: queue
            self.publish_queued();
            // After the exits and launches of this turn, so the line (or its deadline) is current.
            self.maybe_send_status();
            let timeout = if more {
                Some(Duration::ZERO)
            } else {
                self.next_deadline(core_next)
            };
            let ms = match timeout {
                None => -1,
                // Round up, so a deadline is never polled for just before it is due.
                Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
            };
            // issue 15: connections: the wait covers plugins' listeners too.
            self.wait_and_accept(ms);
        }
        self.finish()
    }

    fn finish(self) -> i32 {
        let _ = std::fs::remove_file(self.cfg.socket_path());
        tracing::info!("stopped");
        self.exit.unwrap_or(self.core.exit_code())
    }

    /// The earliest of the core's next deadline and the loop's own.
    fn next_deadline(&self, core_next: Option<Instant>) -> Option<Duration> {
        let now = Instant::now();
        [
            core_next,
            self.watchdog_at,
            self.extend_at,
            self.scan_at,
            self.status_due,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.saturating_duration_since(now))
    }

    // issue 14: readiness
    /// Workers declared themselves ready (a flag in each one's child slot, SIGUSR1 as the
    /// wake-up). Only the slots of running workers the core waits on are read, and only the
    /// flag of the process that holds the slot now: a worker's slot is its child slot.
    fn check_ready(&mut self) {
        let ready: Vec<core::WorkerKey> = self
            .core
            .workers()
            .filter(|w| w.awaits_ready())
            .filter(|w| {
                let cs = self.segment.child_slot(w.key.slot);
                // A worker that became a target after it launched (a dynamic worker starts after
                // it) is asked now to report its entry; one whose entry already ran is ready.
                let entered = !w.spec.needs_ready && cs.ask_entry_notice();
                let r = cs.report();
                (r.declared_ready || entered) && w.run.pid.is_some_and(|pid| r.claimed_by(pid))
            })
            .map(|w| w.key)
            .collect();
        for key in ready {
            self.feed(Event::Ready { key });
        }
    }

    // issue 14: dynamic workers
    /// Requests and terminates from workers (SIGUSR1 as the wake-up, as for readiness). Only the
    /// request slots of running workers are read, each copied out bounded and validated
    /// ([`crate::shared::handles::take_request`]); a terminate counts only for the generation
    /// the slot holds now.
    fn intake(&mut self) {
        let n = self.layout.n_worker_slots;
        for i in 0..n {
            let asked = self
                .segment
                .worker_slot(i)
                .terminate_gen
                .swap(0, std::sync::atomic::Ordering::AcqRel);
            if asked != 0 {
                if let Some(key) = self.core.worker_in(i).map(|w| w.key).filter(|k| k.generation == asked) {
                    self.feed(Event::Terminate { key });
                }
            }
            let r = self.segment.request_slot(i);
            let Some((seq, spec, queue_timeout)) = crate::shared::handles::take_request(r) else {
                continue;
            };
            // issue 14: queue
            if self.core.is_queued(i, seq) {
                continue;
            }
            // The requester is the worker running in slot `i` by the core's table, never by what
            // the segment says.
            let requester = self
                .core
                .worker_in(i)
                .filter(|w| w.run.state == crate::shared::lifecycle::WorkerState::Running && w.run.pid.is_some())
                .map(|w| (w.spec.name.clone(), w.spec.plugin.clone()));
            let Some((by, plugin)) = requester else {
                crate::shared::handles::drop_request(r);
                continue;
            };
            let refused = |why: String| {
                tracing::warn!("worker {by} asked for an invalid dynamic worker: {why}");
                // Nothing was adopted: whether the requester still waits does not matter.
                let _ = crate::shared::handles::answer(r, seq, &crate::shared::handles::Answer::Invalid(why));
            };
            match spec {
                Err(why) => refused(why),
                // A worker launches for its own plugin only.
                Ok(spec) if spec.plugin != plugin => refused(format!(
                    "worker {:?} is registered for plugin {:?}, but {by} belongs to {plugin:?}",
                    spec.name, spec.plugin
                )),
                Ok(spec) => {
                    self.feed_request(by, i, seq, spec, queue_timeout);
                }
            }
        }
    }

    /// A startup hook declared the host consistent (flag in the header, SIGUSR1 as a wake-up).
    fn check_consistent(&mut self) {
        if self.core.state() == crate::shared::control::HostState::Startup
            && self
                .segment
                .header()
                .consistent
                .load(std::sync::atomic::Ordering::Acquire)
                != 0
        {
            self.feed(Event::Consistent);
        }
    }

    // issue 14: segment init
    /// The startup child declared the new segment initialised (flag in the header, SIGUSR1 as a
    /// wake-up). Read only while the core waits for it: a child writing the flag at any other
    /// time changes nothing.
    fn check_segment_ready(&mut self) {
        if self.core.phase() == Phase::Up(Progress::SegmentInit)
            && self
                .segment
                .header()
                .segment_ready
                .load(std::sync::atomic::Ordering::Acquire)
                != 0
        {
            self.feed(Event::SegmentReady);
        }
    }

    // ---- the core's events and actions ----

    /// Feeds one event to the core and carries out every action that follows from it.
    fn feed(&mut self, event: Event<'_>) {
        self.with_actions(|sup, out| sup.core.handle(event, now(), out));
    }

    /// Runs `f` with the reused action buffer, then carries out what it appended.
    fn with_actions(&mut self, f: impl FnOnce(&mut Self, &mut Actions)) {
        // Nothing feeds an event while actions are carried out (an action's answer goes into the
        // same buffer); were that to change, a nested call gets a buffer of its own.
        let mut out = match self.actions.take() {
            Some(out) => out,
            None => Actions::new().expect("memory for the supervisor's actions"),
        };
        f(self, &mut out);
        self.execute(&mut out);
        out.clear();
        self.actions = Some(out);
    }

    /// Carries out `out` in order. An action whose result the core needs feeds it back at once,
    /// which appends the actions that follow to `out`, carried out in turn.
    fn execute(&mut self, out: &mut Actions) {
        let mut i = 0;
        while i < out.len() {
            match std::mem::take(&mut out[i]) {
                Action::Done => {}
                Action::Launch(first) => {
                    // A run of launches is one batch: the fork helper may take half of it.
                    let mut due = [first; core::LAUNCH_BATCH];
                    let mut n = 1;
                    while n < core::LAUNCH_BATCH {
                        match out.get(i + 1) {
                            Some(&Action::Launch(k)) => {
                                due[n] = k;
                                n += 1;
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    self.launch_batch(&due[..n], out);
                }
                Action::StartStartup => {
                    // issue 14: notifications
                    // A request an earlier startup child left behind is not this one's.
                    let r = self.segment.request_slot(self.layout.startup_request_slot());
                    crate::shared::handles::drop_request(r);
                    let started = match self.pool.acquire(crate::shared::handoff::ChildKind::Startup) {
                        Some(slot) => self
                            .start_child(slot, &crate::shared::handoff::StartupData::Startup, None)
                            .map(|pid| (pid, slot)),
                        None => Err(std::io::Error::other("the startup child's slot is still in use")),
                    };
                    match started {
                        Ok((pid, slot)) => self.core.handle(Event::ChildStarted { pid, slot }, now(), out),
                        Err(e) => self.core.handle(Event::StartupFailed { error: &e }, now(), out),
                    }
                }
                Action::Signal { pid, sig } => {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                }
                Action::ScanAdopted => {
                    self.scan_adopted(out);
                    self.core.handle(Event::Scanned, now(), out);
                }
                Action::CreateSegment { generation } => self.create_segment(generation, out),
                Action::PublishWorker(key) => self.publish(key),
                Action::PublishState(s) => self.segment.header().set_host_state(s),
                Action::NotifyState(s) => self.notify_state(s),
                Action::Log(level, line) => match level {
                    Level::Debug => tracing::debug!("{line}"),
                    Level::Info => tracing::info!("{line}"),
                    Level::Warn => tracing::warn!("{line}"),
                    Level::Error => tracing::error!("{line}"),
                },
                Action::Exit(code) => self.exit = Some(code),
                // issue 14: dynamic workers
                Action::PublishRegistration(key) => {
                    let by = self.note_launcher(key);
                    if let Some(w) = self.core.worker(key) {
                        self.segment.write_registration(key.slot, &w.spec, &by);
                        // issue 14: notifications
                        if let Some(l) = w.launcher {
                            self.segment.publish_launcher(key.slot, l.child_slot);
                        }
                        // The status with the new generation first, then `in_use`: see
                        // `handles::by_name_in` for the reader's side.
                        self.publish(key);
                        self.segment.hand_over(key.slot);
                    }
                }
                Action::Answer { to, seq, answer } => {
                    // issue 14: queue
                    self.answer(to, seq, &answer, out);
                }
                // issue 14: notifications
                Action::SetLatch { child_slot, pid } => self.set_launcher_latch(child_slot, pid),
                Action::Retire(key) => {
                    self.publish(key);
                    self.segment.retire_worker(key.slot);
                    self.launchers.remove(&key);
                    if let Err(e) = self.core.remove_worker(key) {
                        tracing::warn!("cannot remove dynamic worker in slot {}: {e}", key.slot);
                    }
                }
            }
            i += 1;
        }
    }

    /// A new segment after a crash; the spares belonged to the old one and are gone.
    fn create_segment(&mut self, generation: u64, out: &mut Actions) {
        match Segment::create(
            &self.layout,
            &self.core.static_specs(),
            &self.registry.regions,
            &self.cfg,
            generation,
            self.started_at_ms,
        ) {
            Ok(seg) => {
                // issue 14: dynamic workers
                // Dynamic workers keep their slots across a reset (the reset then decides,
                // per policy, which start again).
                for w in self.core.dynamic_workers() {
                    seg.publish_launched(w.key.slot, &w.spec, self.launcher_of(w.key));
                }
                self.segment = seg;
                self.publish_info();
                self.spares.clear();
                self.handoffs.clear();
                self.spare_refill = crate::shared::shmem::SPARE_CHILDREN;
                self.core.handle(Event::SegmentCreated, now(), out);
            }
            Err(e) => self
                .core
                .handle(Event::SegmentFailed { error: e.to_string() }, now(), out),
        }
    }
}
