//! Shutdown modes and their escalation, reload, and the worker table's keys.

use super::*;
use crate::shared::registry::{RestartPolicy, StartTime};

// ---- shutdown ----

pub(super) fn smart_escalates_to_fast_to_immediate_to_sigkill() {
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

pub(super) fn smart_signals_once_the_last_connection_ends() {
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

pub(super) fn a_stop_cancels_pending_restarts_and_first_starts() {
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

pub(super) fn exits_while_stopping_are_stops() {
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

pub(super) fn a_stop_while_recovering_stops() {
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

pub(super) fn a_stop_with_nothing_running_exits_after_one_scan() {
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

pub(super) fn an_applied_reload_passes_sighup_and_new_timeouts() {
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

pub(super) fn workers_are_keyed_by_slot_and_a_generation_that_never_repeats() {
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

pub(super) fn a_child_started_while_stopping_gets_the_signal_the_rest_got() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    let w = d.pid_of(0);
    d.ev(Event::Stop {
        mode: StopMode::Fast,
        why: "SIGINT",
    });
    // A control connection's child started after the SIGTERMs went out gets one too.
    let conn = d.pid();
    let slot = d.pool.acquire(ChildKind::Connection).unwrap();
    let a = d.ev(Event::ChildStarted { pid: conn, slot });
    assert_eq!(signals(&a), vec![(conn, Signal::SIGTERM)]);
    // A dead-end is left to write its "shutting down" line: its own deadline ends it.
    let dead_end = d.pid();
    let slot = d.pool.acquire(ChildKind::DeadEnd).unwrap();
    let a = d.ev(Event::ChildStarted { pid: dead_end, slot });
    assert_eq!(signals(&a), vec![]);
    // Past shutdown_timeout, everything left is killed, and so is every child started later.
    let a = d.pass(5 * SEC);
    let mut killed = signals(&a);
    killed.sort();
    let mut want = vec![
        (w, Signal::SIGKILL),
        (conn, Signal::SIGKILL),
        (dead_end, Signal::SIGKILL),
    ];
    want.sort();
    assert_eq!(killed, want);
    let late = d.pid();
    let slot = d.pool.acquire(ChildKind::DeadEnd).unwrap();
    let a = d.ev(Event::ChildStarted { pid: late, slot });
    assert_eq!(signals(&a), vec![(late, Signal::SIGKILL)]);
    let a = d.all_exit(libc::SIGKILL);
    assert_eq!(exit_code(&a), Some(0), "no child left: the host exits");
}
