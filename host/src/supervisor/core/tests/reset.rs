//! Crash resets: during running, start-up and a reset, and what they do to each worker.

use super::*;
use crate::shared::registry::{RestartPolicy, StartTime};

// ---- crash reset ----

pub(super) fn a_crash_resets_the_host_and_restarts_by_policy() {
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

pub(super) fn status_names_the_crashed_segment_until_the_new_one_exists() {
    let mut d = Driver::started(vec![spec("only", after(SEC), StartTime::HostStart)]);
    // The only attached child: its crash leads straight to a new segment, in the same turn.
    d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert_eq!(
        d.notified,
        vec![
            (HostState::Running, 1),
            (HostState::Recovering, 1),
            (HostState::Running, 2)
        ],
        "the recovering line names generation 1, the segment that crashed"
    );
    d.ev(Event::Deadline);
    d.segment_fails = true;
    d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert_eq!(d.notified[3..], [(HostState::Recovering, 2), (HostState::Stopping, 3)]);
}

pub(super) fn a_reset_stops_a_never_worker_that_was_waiting_and_leaves_unstarted_ones() {
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

pub(super) fn a_crash_during_startup_resets_and_starts_up_again() {
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

pub(super) fn a_crash_during_a_reset_startup_resets_again_with_a_new_generation() {
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

pub(super) fn a_failed_segment_stops_the_host() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    d.segment_fails = true;
    let a = d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert!(logged(
        &a,
        "cannot recreate shared memory after a crash: no memory; stopping"
    ));
    assert_eq!(exit_code(&a), Some(crate::exit_code::FAILURE));
}

pub(super) fn restart_after_crash_off_stops_the_host() {
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

pub(super) fn children_of_other_kinds_crash_or_not_as_their_kind_says() {
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
