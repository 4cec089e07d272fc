//! The core driven with synthetic time and no process: every host-state transition, every exit
//! outcome per restart policy, backoff, crash-loop limits, crashes during start-up, shutdown and
//! reset, the shutdown escalation, and the worker table's keys.
//!
//! Each scenario is a plain function listed in `scenarios!`, which makes a `#[test]` of each and
//! lets `every_row_of_the_table_is_exercised` run them all on one thread and check that every
//! row of [`ROWS`] fired.

use std::time::Duration;

use super::rows::{take_fired, Row, ROWS};
use super::*;
use crate::registry::{CrashLoopLimit, RestartPolicy, StartTime};

const SEC: Duration = Duration::from_secs(1);

fn spec(name: &str, restart: RestartPolicy, start_time: StartTime) -> WorkerSpec {
    WorkerSpec {
        name: name.to_owned(),
        worker_type: "test".to_owned(),
        plugin: "test".to_owned(),
        library: "test".to_owned(),
        function: "run".to_owned(),
        start_time,
        restart,
        crash_loop: None,
        arg: 0,
        extra: Vec::new(),
    }
}

fn after(d: Duration) -> RestartPolicy {
    RestartPolicy::After(d)
}

fn settings() -> Settings {
    Settings {
        shutdown_timeout: 5 * SEC,
        crash_kill_timeout: 2 * SEC,
        restart_after_crash: true,
    }
}

/// Plays the event loop: answers the actions whose result the core waits for (as the real loop
/// does, before any other event) and records everything the core asked for.
struct Driver {
    core: Core,
    now: Now,
    next_pid: i32,
    /// Every action so far, in order (answers included).
    log: Vec<Action>,
    launch_fails: bool,
    startup_fails: bool,
    segment_fails: bool,
    startup_pid: Option<i32>,
}

impl Driver {
    fn new(specs: Vec<WorkerSpec>, hooks: bool) -> Driver {
        Driver::with(specs, hooks, settings())
    }

    fn with(specs: Vec<WorkerSpec>, hooks: bool, settings: Settings) -> Driver {
        let max = specs.len() as u32 + 2;
        Driver {
            core: Core::new(settings, specs, max, hooks).unwrap(),
            now: Now {
                mono: Instant::now(),
                wall_ms: 1_000_000,
            },
            next_pid: 100,
            log: Vec::new(),
            launch_fails: false,
            startup_fails: false,
            segment_fails: false,
            startup_pid: None,
        }
    }

    /// Feeds `e`; returns the actions it led to (answers included).
    fn ev(&mut self, e: Event<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        self.core.handle(e, self.now, &mut out);
        let mut i = 0;
        while i < out.len() {
            let a = std::mem::take(&mut out[i]);
            let now = self.now;
            match &a {
                Action::Launch(key) => {
                    if self.launch_fails {
                        let error = std::io::Error::from_raw_os_error(libc::EAGAIN);
                        self.core.handle(
                            Event::LaunchFailed {
                                key: *key,
                                error: &error,
                            },
                            now,
                            &mut out,
                        );
                    } else {
                        let pid = self.pid();
                        let (key, spare_slot) = (*key, None);
                        self.core
                            .handle(Event::Launched { key, pid, spare_slot }, now, &mut out);
                    }
                }
                Action::StartStartup => {
                    if self.startup_fails {
                        let error = std::io::Error::from_raw_os_error(libc::ENOMEM);
                        self.core.handle(Event::StartupFailed { error: &error }, now, &mut out);
                    } else {
                        let pid = self.pid();
                        self.startup_pid = Some(pid);
                        let started = Event::ChildStarted {
                            pid,
                            kind: ChildKind::Startup,
                            child_slot: Some(99),
                        };
                        self.core.handle(started, now, &mut out);
                    }
                }
                Action::ScanAdopted => self.core.handle(Event::Scanned, now, &mut out),
                Action::CreateSegment { .. } if self.segment_fails => {
                    let error = "no memory".to_owned();
                    self.core.handle(Event::SegmentFailed { error }, now, &mut out);
                }
                Action::CreateSegment { .. } => self.core.handle(Event::SegmentCreated, now, &mut out),
                _ => {}
            }
            out[i] = a;
            i += 1;
        }
        self.log.extend(out.iter().map(clone_action));
        out
    }

    fn pid(&mut self) -> i32 {
        self.next_pid += 1;
        self.next_pid
    }

    fn pass(&mut self, d: Duration) -> Vec<Action> {
        self.now = self.now.plus(d);
        self.ev(Event::Deadline)
    }

    /// Starts a child the loop starts on its own (connection, dead-end, spare).
    fn child(&mut self, kind: ChildKind) -> i32 {
        let pid = self.pid();
        self.ev(Event::ChildStarted {
            pid,
            kind,
            child_slot: Some(50),
        });
        pid
    }

    fn exit(&mut self, pid: i32, status: ExitStatus, dead_man: bool, reason: &str) -> Vec<Action> {
        let slot = SlotCopy {
            dead_man,
            reason: reason.to_owned(),
            launch_us: Some(70),
        };
        self.ev(Event::ChildExited { pid, status, slot })
    }

    fn key(&self, slot: u32) -> WorkerKey {
        self.core.workers().find(|w| w.key.slot == slot).unwrap().key
    }

    fn run(&self, slot: u32) -> &WorkerRun {
        &self.core.worker(self.key(slot)).unwrap().run
    }

    fn pid_of(&self, slot: u32) -> i32 {
        self.run(slot).pid.expect("the worker runs")
    }

    fn state_of(&self, slot: u32) -> WorkerState {
        self.run(slot).state
    }

    /// Every live child exits as the signal the host sent it makes it.
    fn all_exit(&mut self, sig: i32) -> Vec<Action> {
        let pids: Vec<i32> = self.core.children().map(|(p, _)| p).collect();
        let mut all = Vec::new();
        for pid in pids {
            all.extend(self.exit(pid, ExitStatus::Signal(sig), true, ""));
        }
        all
    }

    fn started(specs: Vec<WorkerSpec>) -> Driver {
        let mut d = Driver::new(specs, false);
        d.ev(Event::Start);
        d.ev(Event::Deadline);
        d
    }
}

fn clone_action(a: &Action) -> Action {
    match a {
        Action::Done => Action::Done,
        Action::Launch(k) => Action::Launch(*k),
        Action::StartStartup => Action::StartStartup,
        Action::Signal { pid, sig } => Action::Signal { pid: *pid, sig: *sig },
        Action::ScanAdopted => Action::ScanAdopted,
        Action::CreateSegment { generation } => Action::CreateSegment {
            generation: *generation,
        },
        Action::PublishWorker(k) => Action::PublishWorker(*k),
        Action::PublishState(s) => Action::PublishState(*s),
        Action::NotifyState(s) => Action::NotifyState(*s),
        Action::Log(l, t) => Action::Log(*l, t.clone()),
        Action::Exit(c) => Action::Exit(*c),
    }
}

/// The signals asked for, in pid order (the child table has no order of its own).
fn signals(actions: &[Action]) -> Vec<(i32, Signal)> {
    let mut v: Vec<(i32, Signal)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal { pid, sig } => Some((*pid, *sig)),
            _ => None,
        })
        .collect();
    v.sort_by_key(|(pid, _)| *pid);
    v
}

fn launches(actions: &[Action]) -> usize {
    actions.iter().filter(|a| matches!(a, Action::Launch(_))).count()
}

fn logged(actions: &[Action], text: &str) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Log(_, t) if t.contains(text)))
}

fn exit_code(actions: &[Action]) -> Option<i32> {
    actions.iter().find_map(|a| match a {
        Action::Exit(c) => Some(*c),
        _ => None,
    })
}

// ---- start-up ----

fn start_without_hooks_runs_at_once_and_launches() {
    let mut d = Driver::new(vec![spec("a", after(SEC), StartTime::Running)], false);
    let a = d.ev(Event::Start);
    assert_eq!(d.core.state(), HostState::Running);
    assert!(a.contains(&Action::NotifyState(HostState::Running)));
    assert!(logged(&a, "host state: running"));
    let a = d.ev(Event::Deadline);
    assert_eq!(launches(&a), 1);
    assert_eq!(d.state_of(0), WorkerState::Running);
    assert_eq!(d.core.next_deadline(d.now), None, "nothing due: the loop may sleep");
}

fn start_times_gate_workers_through_startup_and_consistent() {
    let mut d = Driver::new(
        vec![
            spec("early", after(SEC), StartTime::HostStart),
            spec("mid", after(SEC), StartTime::Consistent),
            spec("late", after(SEC), StartTime::Running),
        ],
        true,
    );
    let a = d.ev(Event::Start);
    assert!(a.contains(&Action::StartStartup));
    assert_eq!(d.core.state(), HostState::Startup);
    d.ev(Event::Deadline);
    assert_eq!(
        [d.state_of(0), d.state_of(1), d.state_of(2)],
        [WorkerState::Running, WorkerState::NotStarted, WorkerState::NotStarted]
    );
    d.ev(Event::Consistent);
    assert_eq!(d.core.state(), HostState::Consistent);
    d.ev(Event::Deadline);
    assert_eq!(d.state_of(1), WorkerState::Running);
    assert_eq!(d.state_of(2), WorkerState::NotStarted);
    let startup = d.startup_pid.unwrap();
    d.exit(startup, ExitStatus::Code(0), false, "");
    assert_eq!(d.core.state(), HostState::Running);
    d.ev(Event::Deadline);
    assert_eq!(d.state_of(2), WorkerState::Running);
    // A late declaration changes nothing.
    d.ev(Event::Consistent);
    assert_eq!(d.core.state(), HostState::Running);
}

fn a_startup_child_that_cannot_start_stops_the_host() {
    let mut d = Driver::new(vec![], true);
    d.startup_fails = true;
    let a = d.ev(Event::Start);
    assert!(logged(&a, "cannot start the startup child"));
    assert_eq!(exit_code(&a), Some(crate::exit_code::FAILURE));
}

fn a_failed_startup_hook_stops_the_host_immediately() {
    let mut d = Driver::new(vec![spec("a", after(SEC), StartTime::HostStart)], true);
    d.ev(Event::Start);
    d.ev(Event::Deadline);
    let startup = d.startup_pid.unwrap();
    let a = d.exit(startup, ExitStatus::Code(2), false, "hook x refused");
    assert!(logged(&a, "start-up failed: hook x refused; stopping"));
    assert_eq!(
        d.core.phase(),
        Phase::Stopping(Shutdown::Signalled {
            mode: StopMode::Immediate,
            kill_at: d.now.mono + 5 * SEC
        })
    );
    assert_eq!(signals(&a), vec![(d.pid_of(0), Signal::SIGQUIT)]);
    let a = d.all_exit(libc::SIGQUIT);
    assert_eq!(exit_code(&a), Some(crate::exit_code::FAILURE));
}

// ---- exit outcomes per restart policy ----

fn every_exit_outcome_under_every_policy() {
    let backoff = RestartPolicy::Backoff {
        initial: SEC,
        factor_milli: 2000,
        cap: 10 * SEC,
        reset_after: 60 * SEC,
    };
    use WorkerState::*;
    // (status, dead-man flag) -> state after, under never, a fixed delay, backoff; and whether
    // it is a crash, which resets the host (at once here: no other child to wait for) and
    // restarts the worker unless its policy is never.
    let cases: &[(ExitStatus, bool, [WorkerState; 3], bool)] = &[
        (ExitStatus::Code(0), false, [Stopped, Stopped, Stopped], false),
        (
            ExitStatus::Code(1),
            false,
            [Stopped, WaitingRestart, WaitingRestart],
            false,
        ),
        (ExitStatus::Code(2), false, [Failed, Failed, Failed], false),
        (
            ExitStatus::Code(3),
            false,
            [Stopped, WaitingRestart, WaitingRestart],
            true,
        ),
        (
            ExitStatus::Code(77),
            false,
            [Stopped, WaitingRestart, WaitingRestart],
            true,
        ),
        (
            ExitStatus::Signal(11),
            false,
            [Stopped, WaitingRestart, WaitingRestart],
            true,
        ),
        (
            ExitStatus::Code(0),
            true,
            [Stopped, WaitingRestart, WaitingRestart],
            true,
        ),
        (
            ExitStatus::Code(1),
            true,
            [Stopped, WaitingRestart, WaitingRestart],
            true,
        ),
    ];
    for &(status, dead_man, want, crash) in cases {
        for (p, policy) in [RestartPolicy::Never, after(SEC), backoff].into_iter().enumerate() {
            let mut d = Driver::started(vec![spec("w", policy, StartTime::HostStart)]);
            let pid = d.pid_of(0);
            d.exit(pid, status, dead_man, "");
            let what = format!("{status} (dead-man {dead_man}) under {policy:?}");
            assert_eq!(d.state_of(0), want[p], "{what}");
            assert!(d.core.is_up());
            assert_eq!(d.core.generation() == 2, crash, "{what}");
            assert_eq!(d.run(0).pid, None);
            assert_eq!(d.run(0).last_launch_us, Some(70));
            assert_eq!(d.run(0).history.len(), 1);
        }
    }
}

fn the_exit_reasons_follow_the_contract() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    let a = d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    assert!(
        logged(&a, "exited with exit code 1: exit code 1; restarting in 1s"),
        "{a:?}"
    );
    d.pass(SEC);
    let a = d.exit(d.pid_of(0), ExitStatus::Code(2), false, "bad input");
    assert!(
        logged(&a, "failed with exit code 2: bad input; not restarting"),
        "{a:?}"
    );
    assert_eq!(d.run(0).restarts, 1);
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    d.exit(d.pid_of(0), ExitStatus::Code(0), true, "");
    let reason = &d.run(0).last_exit.as_ref().unwrap().2;
    assert_eq!(
        reason,
        "crashed: exit code 0 without a clean exit (dead-man flag still set)"
    );
}

fn backoff_grows_to_its_cap_and_resets_after_a_long_run() {
    let policy = RestartPolicy::Backoff {
        initial: Duration::from_millis(10),
        factor_milli: 2000,
        cap: Duration::from_millis(50),
        reset_after: SEC,
    };
    let mut d = Driver::started(vec![spec("w", policy, StartTime::HostStart)]);
    let mut delays = Vec::new();
    for ran in [1, 1, 1, 1, 1, 2000, 1] {
        d.now = d.now.plus(Duration::from_millis(ran));
        d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
        let at = d.run(0).restart_at.unwrap();
        delays.push(at.duration_since(d.now.mono).as_millis());
        // Not due before its delay; due at it.
        assert_eq!(launches(&d.ev(Event::Deadline)), 0);
        assert_eq!(d.core.next_deadline(d.now), Some(at));
        d.now.mono = at;
        assert_eq!(launches(&d.ev(Event::Deadline)), 1);
    }
    assert_eq!(delays, vec![10, 20, 40, 50, 50, 10, 20]);
}

fn a_crash_loop_limit_fails_the_worker() {
    let limited = |restart| WorkerSpec {
        crash_loop: Some(CrashLoopLimit {
            max: 2,
            window: 60 * SEC,
        }),
        ..spec("w", restart, StartTime::HostStart)
    };
    let mut d = Driver::started(vec![limited(after(Duration::ZERO))]);
    for _ in 0..2 {
        d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
        assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
        d.pass(Duration::from_millis(1));
    }
    let a = d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    assert_eq!(d.state_of(0), WorkerState::Failed);
    assert!(
        logged(
            &a,
            "failed: restarted 2 times in 1min (last exit: exit code 1); not restarting"
        ),
        "{a:?}"
    );
    // A crash counts too: past the limit the worker fails and the host still resets.
    let mut d = Driver::started(vec![limited(after(Duration::ZERO))]);
    for _ in 0..2 {
        d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
        d.pass(Duration::from_millis(1));
    }
    let a = d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert_eq!(d.state_of(0), WorkerState::Failed);
    assert!(logged(&a, "it will not start again after the reset"));
    assert!(d.core.is_up(), "reset at once: no other child");
    assert_eq!(d.core.generation(), 2);
    assert_eq!(
        launches(&d.pass(SEC)),
        0,
        "a failed worker stays failed after the reset"
    );
}

fn a_launch_failure_retries_after_a_second() {
    let mut d = Driver::new(vec![spec("w", after(SEC), StartTime::HostStart)], false);
    d.launch_fails = true;
    d.ev(Event::Start);
    let a = d.ev(Event::Deadline);
    assert!(
        logged(&a, "cannot start worker w: Resource temporarily unavailable"),
        "{a:?}"
    );
    assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
    d.launch_fails = false;
    assert_eq!(launches(&d.pass(Duration::from_millis(999))), 0);
    assert_eq!(launches(&d.pass(Duration::from_millis(1))), 1);
    assert_eq!(d.run(0).restarts, 0, "a failed launch is not a restart");
}

fn launches_come_in_bounded_batches() {
    let specs = (0..100)
        .map(|i| spec(&format!("w{i}"), after(SEC), StartTime::HostStart))
        .collect();
    let mut d = Driver::new(specs, false);
    d.ev(Event::Start);
    assert_eq!(launches(&d.ev(Event::Deadline)), LAUNCH_BATCH);
    assert_eq!(d.core.next_deadline(d.now), Some(d.now.mono), "more are due at once");
    assert_eq!(launches(&d.ev(Event::Deadline)), 100 - LAUNCH_BATCH);
    assert_eq!(d.core.counts(), (100, 0));
}

// ---- crash reset ----

fn a_crash_resets_the_host_and_restarts_by_policy() {
    let mut d = Driver::started(vec![
        spec("crasher", after(SEC), StartTime::HostStart),
        spec("once", RestartPolicy::Never, StartTime::HostStart),
        spec("again", after(SEC), StartTime::HostStart),
    ]);
    let conn = d.child(ChildKind::Connection);
    let dead_end = d.child(ChildKind::DeadEnd);
    let (once, again) = (d.pid_of(1), d.pid_of(2));
    let a = d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert!(logged(&a, "worker crasher (pid 101) crashed: signal 11 (SIGSEGV); stopping the 4 other children (SIGQUIT) and resetting shared memory"), "{a:?}");
    assert_eq!(d.core.state(), HostState::Recovering);
    assert_eq!(signals(&a).len(), 4);
    // Exits while recovering are recorded but decide nothing.
    d.exit(once, ExitStatus::Signal(libc::SIGQUIT), true, "");
    d.exit(dead_end, ExitStatus::Code(0), false, "");
    d.exit(conn, ExitStatus::Signal(libc::SIGQUIT), true, "");
    assert_eq!(d.core.state(), HostState::Recovering, "one attached child left");
    // The last one outlives crash_kill_timeout.
    assert!(d.pass(SEC).is_empty());
    let a = d.pass(SEC);
    assert!(logged(
        &a,
        "1 child still alive after crash_kill_timeout: sending SIGKILL"
    ));
    assert_eq!(signals(&a), vec![(again, Signal::SIGKILL)]);
    let a = d.exit(again, ExitStatus::Signal(9), false, "");
    assert!(a.contains(&Action::CreateSegment { generation: 2 }));
    assert!(
        logged(&a, "shared memory reset (generation 2); restarting 2 workers"),
        "{a:?}"
    );
    assert_eq!(d.core.state(), HostState::Running);
    assert_eq!(d.state_of(1), WorkerState::Stopped);
    assert_eq!(
        d.run(1).last_exit.as_ref().unwrap().2,
        "stopped by the host (signal 3 (SIGQUIT))"
    );
    assert_eq!(launches(&d.ev(Event::Deadline)), 2);
}

fn a_reset_stops_a_never_worker_that_was_waiting_and_leaves_unstarted_ones() {
    let mut d = Driver::new(
        vec![
            spec("w", after(SEC), StartTime::HostStart),
            spec("never", RestartPolicy::Never, StartTime::HostStart),
            spec("late", after(SEC), StartTime::Running),
        ],
        true,
    );
    d.ev(Event::Start);
    // Launches that failed leave both waiting, with no exit yet.
    d.launch_fails = true;
    d.ev(Event::Deadline);
    d.launch_fails = false;
    let startup = d.startup_pid.unwrap();
    let conn = d.child(ChildKind::Connection);
    d.exit(conn, ExitStatus::Signal(6), false, "");
    d.all_exit(libc::SIGQUIT);
    assert_ne!(Some(startup), d.startup_pid, "a new startup child after the reset");
    assert_eq!(d.core.state(), HostState::Startup);
    assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
    assert_eq!(d.state_of(1), WorkerState::Stopped);
    assert_eq!(d.run(1).last_exit.as_ref().unwrap().2, "stopped by a crash reset");
    assert_eq!(
        d.state_of(2),
        WorkerState::NotStarted,
        "never started: waits for its start time"
    );
}

fn a_crash_during_startup_resets_and_starts_up_again() {
    let mut d = Driver::new(vec![spec("w", after(SEC), StartTime::HostStart)], true);
    d.ev(Event::Start);
    d.ev(Event::Deadline);
    let first = d.startup_pid.unwrap();
    d.exit(d.pid_of(0), ExitStatus::Code(0), true, "");
    assert_eq!(d.core.state(), HostState::Recovering);
    // The startup child's exit while recovering is not a failed start-up.
    let a = d.exit(first, ExitStatus::Signal(libc::SIGQUIT), true, "running hook h");
    assert!(!logged(&a, "start-up failed"));
    assert_eq!(d.core.state(), HostState::Startup);
    assert_ne!(d.startup_pid, Some(first));
}

fn a_crash_during_a_reset_startup_resets_again_with_a_new_generation() {
    let mut d = Driver::new(vec![spec("w", after(SEC), StartTime::HostStart)], true);
    d.ev(Event::Start);
    d.ev(Event::Deadline);
    d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    d.all_exit(libc::SIGQUIT);
    assert_eq!(d.core.generation(), 2);
    // The new startup child reports a corrupt segment: reset again.
    let a = d.exit(d.startup_pid.unwrap(), ExitStatus::Code(3), true, "");
    assert!(logged(&a, "startup child (pid"), "{a:?}");
    assert!(logged(
        &a,
        "exited with code 3, which reports a corrupt shared-memory segment"
    ));
    assert_eq!(d.core.generation(), 3);
    assert_eq!(d.core.state(), HostState::Startup);
}

fn a_failed_segment_stops_the_host() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    d.segment_fails = true;
    let a = d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert!(logged(
        &a,
        "cannot recreate shared memory after a crash: no memory; stopping"
    ));
    assert_eq!(exit_code(&a), Some(crate::exit_code::FAILURE));
}

fn restart_after_crash_off_stops_the_host() {
    let off = Settings {
        restart_after_crash: false,
        ..settings()
    };
    let mut d = Driver::with(vec![spec("w", after(SEC), StartTime::HostStart)], false, off);
    d.ev(Event::Start);
    d.ev(Event::Deadline);
    let other = d.child(ChildKind::Connection);
    let a = d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert!(logged(&a, "restart_after_crash is off: stopping the host"));
    assert!(logged(&a, "immediate shutdown requested (a crash)"));
    assert_eq!(signals(&a), vec![(other, Signal::SIGQUIT)]);
    let a = d.all_exit(libc::SIGQUIT);
    assert_eq!(exit_code(&a), Some(crate::exit_code::FAILURE));
}

fn children_of_other_kinds_crash_or_not_as_their_kind_says() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    let spare = d.child(ChildKind::Spare);
    let a = d.exit(spare, ExitStatus::Code(1), false, "cannot load plugin");
    assert!(logged(&a, "ended with exit code 1: cannot load plugin"));
    assert!(d.core.is_up(), "a spare that died unused is not a crash");
    let spare = d.child(ChildKind::Spare);
    d.exit(spare, ExitStatus::Code(3), false, "");
    assert_eq!(
        d.core.state(),
        HostState::Recovering,
        "but one that reports a corrupt segment is"
    );
    d.all_exit(libc::SIGQUIT);
    d.ev(Event::Deadline);
    let conn = d.child(ChildKind::Connection);
    let a = d.exit(conn, ExitStatus::Signal(11), false, "");
    assert!(logged(&a, "connection child (pid"));
    assert_eq!(d.core.state(), HostState::Recovering);
}

// ---- shutdown ----

fn smart_escalates_to_fast_to_immediate_to_sigkill() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    let w = d.pid_of(0);
    let conn = d.child(ChildKind::Connection);
    let adopted = 4242;
    d.ev(Event::Adopted {
        pid: adopted,
        from: "worker w (pid 101)".into(),
    });
    let a = d.ev(Event::Stop {
        mode: StopMode::Smart,
        why: "SIGTERM",
    });
    assert!(logged(&a, "smart shutdown requested (SIGTERM)"));
    assert_eq!(d.core.phase(), Phase::Stopping(Shutdown::SmartWaiting));
    assert!(signals(&a).is_empty(), "smart waits for the connection");
    assert!(d
        .ev(Event::Stop {
            mode: StopMode::Smart,
            why: "again"
        })
        .is_empty());
    let a = d.ev(Event::Stop {
        mode: StopMode::Fast,
        why: "SIGINT",
    });
    assert_eq!(
        signals(&a),
        vec![
            (w, Signal::SIGTERM),
            (conn, Signal::SIGTERM),
            (adopted, Signal::SIGTERM)
        ]
    );
    assert!(d
        .ev(Event::Stop {
            mode: StopMode::Fast,
            why: "again"
        })
        .is_empty());
    d.now = d.now.plus(SEC);
    let a = d.ev(Event::Stop {
        mode: StopMode::Immediate,
        why: "SIGQUIT",
    });
    assert_eq!(signals(&a).len(), 3);
    assert!(signals(&a).iter().all(|(_, s)| *s == Signal::SIGQUIT));
    // The timeout counts from the immediate stop.
    assert!(d.pass(Duration::from_millis(4999)).is_empty());
    let a = d.pass(Duration::from_millis(1));
    assert!(logged(
        &a,
        "still running after shutdown_timeout, sending SIGKILL: w (pid 101), connection (pid 102), adopted process 4242 (left behind by worker w (pid 101))"
    ), "{a:?}");
    assert_eq!(signals(&a).len(), 3);
    // A process found now gets SIGKILL at once.
    let a = d.ev(Event::Adopted {
        pid: 4343,
        from: "x".into(),
    });
    assert_eq!(signals(&a), vec![(4343, Signal::SIGKILL)]);
    d.all_exit(9);
    d.ev(Event::AdoptedExited { pid: adopted });
    let a = d.ev(Event::AdoptedExited { pid: 4343 });
    assert_eq!(exit_code(&a), Some(0));
    assert_eq!(d.state_of(0), WorkerState::Stopped);
}

fn smart_signals_once_the_last_connection_ends() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    let conn = d.child(ChildKind::Connection);
    d.ev(Event::Stop {
        mode: StopMode::Smart,
        why: "SIGTERM",
    });
    // A connection that crashes while the host waits for it does not reset a stopping host.
    let a = d.exit(conn, ExitStatus::Signal(11), false, "");
    assert_eq!(signals(&a), vec![(d.pid_of(0), Signal::SIGTERM)]);
    let a = d.exit(d.pid_of(0), ExitStatus::Code(0), false, "");
    assert!(a.contains(&Action::ScanAdopted));
    assert_eq!(exit_code(&a), Some(0));
}

fn a_stop_cancels_pending_restarts_and_first_starts() {
    let mut d = Driver::new(
        vec![
            spec("w", after(5 * SEC), StartTime::HostStart),
            spec("late", after(SEC), StartTime::Running),
        ],
        true,
    );
    d.ev(Event::Start);
    d.ev(Event::Deadline);
    d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
    d.ev(Event::Stop {
        mode: StopMode::Fast,
        why: "SIGINT",
    });
    assert_eq!([d.state_of(0), d.state_of(1)], [WorkerState::Stopped; 2]);
    assert_eq!(d.run(0).restart_at, None);
    assert_eq!(launches(&d.pass(10 * SEC)), 0);
}

fn exits_while_stopping_are_stops() {
    let mut d = Driver::started(vec![
        spec("w", after(SEC), StartTime::HostStart),
        spec("v", after(SEC), StartTime::HostStart),
    ]);
    d.ev(Event::Stop {
        mode: StopMode::Immediate,
        why: "SIGQUIT",
    });
    // Even a crash: the host signalled it.
    d.exit(d.pid_of(0), ExitStatus::Signal(11), true, "");
    assert_eq!(d.state_of(0), WorkerState::Stopped);
    assert_eq!(d.core.state(), HostState::Stopping);
    let a = d.exit(d.pid_of(1), ExitStatus::Code(1), false, "");
    assert_eq!(d.state_of(1), WorkerState::Stopped);
    assert_eq!(exit_code(&a), Some(0));
}

fn a_stop_while_recovering_stops() {
    let mut d = Driver::started(vec![
        spec("w", after(SEC), StartTime::HostStart),
        spec("v", after(SEC), StartTime::HostStart),
    ]);
    d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert_eq!(d.core.state(), HostState::Recovering);
    let a = d.ev(Event::Stop {
        mode: StopMode::Fast,
        why: "SIGINT",
    });
    assert_eq!(d.core.state(), HostState::Stopping);
    assert_eq!(d.state_of(0), WorkerState::Stopped, "its restart is cancelled");
    assert_eq!(signals(&a), vec![(d.pid_of(1), Signal::SIGTERM)]);
    let a = d.all_exit(libc::SIGTERM);
    assert!(!a.iter().any(|a| matches!(a, Action::CreateSegment { .. })));
    assert_eq!(exit_code(&a), Some(0));
}

fn a_stop_with_nothing_running_exits_after_one_scan() {
    let mut d = Driver::started(vec![]);
    let a = d.ev(Event::Stop {
        mode: StopMode::Smart,
        why: "SIGTERM",
    });
    assert_eq!(a.iter().filter(|a| **a == Action::ScanAdopted).count(), 1);
    assert_eq!(exit_code(&a), Some(0));
    assert_eq!(d.core.exit_code(), 0);
}

// ---- reload ----

fn an_applied_reload_passes_sighup_and_new_timeouts() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    let dead_end = d.child(ChildKind::DeadEnd);
    assert!(d.ev(Event::Reloaded(None)).is_empty());
    let longer = Settings {
        shutdown_timeout: 9 * SEC,
        ..settings()
    };
    let a = d.ev(Event::Reloaded(Some(longer)));
    assert_eq!(
        signals(&a),
        vec![(d.pid_of(0), Signal::SIGHUP)],
        "not the dead-end {dead_end}"
    );
    // SIGHUP is not a stop: an exit after it is judged on its own.
    d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
    d.pass(SEC);
    d.ev(Event::Stop {
        mode: StopMode::Fast,
        why: "SIGINT",
    });
    assert_eq!(d.core.next_deadline(d.now), Some(d.now.mono + 9 * SEC));
}

// ---- the worker table ----

fn workers_are_keyed_by_slot_and_a_generation_that_never_repeats() {
    let mut d = Driver::started(vec![
        spec("a", after(SEC), StartTime::HostStart),
        spec("b", after(SEC), StartTime::HostStart),
    ]);
    assert_eq!(d.key(0), WorkerKey { slot: 0, generation: 1 });
    assert_eq!(d.key(1), WorkerKey { slot: 1, generation: 2 });
    let x = d
        .core
        .add_worker(spec("x", RestartPolicy::Never, StartTime::HostStart))
        .unwrap();
    assert_eq!(x, WorkerKey { slot: 2, generation: 3 });
    let y = d
        .core
        .add_worker(spec("y", RestartPolicy::Never, StartTime::HostStart))
        .unwrap();
    assert_eq!(
        d.core.add_worker(spec("z", RestartPolicy::Never, StartTime::HostStart)),
        Err(NoFreeSlot { used: 4, max: 4 })
    );
    assert_eq!(launches(&d.ev(Event::Deadline)), 2);
    assert!(matches!(d.core.remove_worker(x), Err(NotRemovable::Live { .. })));
    assert!(matches!(d.core.remove_worker(d.key(0)), Err(NotRemovable::Static(_))));
    // A crash reset in between: generations go on counting.
    d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    d.all_exit(libc::SIGQUIT);
    assert!(d.core.is_up());
    assert_eq!(
        d.core.worker(x).unwrap().run.state,
        WorkerState::Stopped,
        "never: not restarted"
    );
    assert_eq!(d.core.remove_worker(x).unwrap().name, "x");
    assert!(matches!(d.core.remove_worker(x), Err(NotRemovable::Unknown(_))));
    let z = d
        .core
        .add_worker(spec("z", RestartPolicy::Never, StartTime::HostStart))
        .unwrap();
    assert_eq!(
        z,
        WorkerKey { slot: 2, generation: 5 },
        "the freed slot, a new generation"
    );
    assert!(d.core.worker(x).is_none(), "the old key does not reach the new tenant");
    assert!(d.core.worker(y).is_some());
    assert_eq!(d.core.static_specs().len(), 2);
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        const SCENARIOS: &[(&str, fn())] = &[$((stringify!($name), $name)),*];
        mod each {
            $(#[test]
            fn $name() {
                super::$name()
            })*
        }
    };
}

scenarios! {
    start_without_hooks_runs_at_once_and_launches,
    start_times_gate_workers_through_startup_and_consistent,
    a_startup_child_that_cannot_start_stops_the_host,
    a_failed_startup_hook_stops_the_host_immediately,
    every_exit_outcome_under_every_policy,
    the_exit_reasons_follow_the_contract,
    backoff_grows_to_its_cap_and_resets_after_a_long_run,
    a_crash_loop_limit_fails_the_worker,
    a_launch_failure_retries_after_a_second,
    launches_come_in_bounded_batches,
    a_crash_resets_the_host_and_restarts_by_policy,
    a_reset_stops_a_never_worker_that_was_waiting_and_leaves_unstarted_ones,
    a_crash_during_startup_resets_and_starts_up_again,
    a_crash_during_a_reset_startup_resets_again_with_a_new_generation,
    a_failed_segment_stops_the_host,
    restart_after_crash_off_stops_the_host,
    children_of_other_kinds_crash_or_not_as_their_kind_says,
    smart_escalates_to_fast_to_immediate_to_sigkill,
    smart_signals_once_the_last_connection_ends,
    a_stop_cancels_pending_restarts_and_first_starts,
    exits_while_stopping_are_stops,
    a_stop_while_recovering_stops,
    a_stop_with_nothing_running_exits_after_one_scan,
    an_applied_reload_passes_sighup_and_new_timeouts,
    workers_are_keyed_by_slot_and_a_generation_that_never_repeats,
}

#[test]
fn every_row_of_the_table_is_exercised() {
    take_fired();
    for (_, scenario) in SCENARIOS {
        scenario();
    }
    let fired = take_fired();
    let missed: Vec<Row> = ROWS.iter().map(|r| r.row).filter(|r| !fired.contains_key(r)).collect();
    assert!(missed.is_empty(), "rows no scenario takes: {missed:?}");
    // And the table lists each row once.
    let mut rows: Vec<Row> = ROWS.iter().map(|r| r.row).collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), ROWS.len());
}
