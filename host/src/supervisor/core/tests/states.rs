//! Each event from each state the table lists for it: the children of every kind ending, stops,
//! reloads, adopted processes and the events that change nothing, in every step an event can
//! find the host in; and the events that name a worker the table no longer has.

use super::*;
use crate::shared::registry::{RestartPolicy, StartTime};
use crate::supervisor::core::rows::Step;

/// Every step an event other than an action's answer can find (the table's `ANY`).
pub(super) const STEPS: [Step; 9] = [
    Step::SegmentInit,
    Step::Startup,
    Step::Consistent,
    Step::Running,
    Step::Quitting,
    Step::RecoverKilled,
    Step::SmartWaiting,
    Step::Signalled,
    Step::StopKilled,
];

pub(super) fn up(step: Step) -> bool {
    matches!(
        step,
        Step::SegmentInit | Step::Startup | Step::Consistent | Step::Running
    )
}

/// Children the scenario can end, besides the workers `w` (slot 0) and `v` (slot 1).
pub(super) struct Kids {
    conn: i32,
    pub(super) spare: i32,
    /// The startup child, while it lives.
    startup: Option<i32>,
}

/// A driver in `step`, with the workers `w` and `v` running (`w` crashed, for a recovering
/// step), a connection and a spare; a recovering or stopping step is entered from `leave`, with
/// the startup child still alive unless that is `Running`.
pub(super) fn at(step: Step, leave: Progress, settings: Settings) -> (Driver, Kids) {
    let specs = vec![
        spec("w", after(SEC), StartTime::HostStart),
        spec("v", after(SEC), StartTime::HostStart),
    ];
    let mut d = Driver::with(specs, true, settings);
    // The segment init step is left only by its own event, which the scenarios feed.
    d.core.set_segment_inits(step == Step::SegmentInit);
    d.ev(Event::Start);
    d.ev(Event::Deadline);
    let conn = d.child(ChildKind::Connection);
    let spare = d.child(ChildKind::Spare);
    let mut startup = d.startup_pid;
    let progress = match step {
        Step::SegmentInit => Progress::SegmentInit,
        Step::Startup => Progress::Startup,
        Step::Consistent => Progress::Consistent,
        Step::Running => Progress::Running,
        _ => leave,
    };
    if !matches!(progress, Progress::SegmentInit | Progress::Startup) {
        d.ev(Event::Consistent);
    }
    if progress == Progress::Running {
        d.exit(startup.take().unwrap(), ExitStatus::Code(0), false, "");
    }
    match step {
        Step::Quitting | Step::RecoverKilled => {
            d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
            if step == Step::RecoverKilled {
                d.pass(settings.crash_kill_timeout);
            }
        }
        Step::SmartWaiting => {
            d.ev(Event::Stop {
                mode: StopMode::Smart,
                why: "SIGTERM",
            });
        }
        Step::Signalled | Step::StopKilled => {
            d.ev(Event::Stop {
                mode: StopMode::Fast,
                why: "SIGINT",
            });
            if step == Step::StopKilled {
                d.pass(settings.shutdown_timeout);
            }
        }
        _ => {}
    }
    assert_eq!(Step::of(d.core.phase()), step, "the driver reached {step:?}");
    (d, Kids { conn, spare, startup })
}

pub(super) fn events_that_change_nothing_change_nothing_in_every_state() {
    for step in STEPS {
        let (mut d, _) = at(step, Progress::Running, settings());
        let phase = d.core.phase();
        if step != Step::Startup {
            d.ev(Event::Consistent);
        }
        if step != Step::SegmentInit {
            d.ev(Event::SegmentReady);
        }
        d.ev(Event::Reloaded(None));
        let a = d.ev(Event::Reloaded(Some(settings())));
        assert!(!signals(&a).is_empty(), "{step:?}: SIGHUP to the children");
        // Not yet past any timeout: a deadline launches what is due, or waits.
        d.ev(Event::Deadline);
        let dead_end = d.child(ChildKind::DeadEnd);
        d.exit(dead_end, ExitStatus::Code(0), false, "");
        d.ev(Event::Adopted {
            pid: 5000,
            from: "worker v".into(),
        });
        assert_eq!(d.core.n_adopted(), 1, "{step:?}");
        d.ev(Event::AdoptedExited { pid: 5000 });
        // A pid the core never knew ends as an adopted process does.
        d.exit(6000, ExitStatus::Code(0), false, "");
        assert_eq!(d.core.n_adopted(), 0, "{step:?}");
        assert_eq!(d.core.phase(), phase, "{step:?}: unchanged");
    }
}

pub(super) fn a_spare_and_a_connection_end_in_every_state_as_their_signal_says() {
    for step in STEPS {
        let (mut d, kids) = at(step, Progress::Running, settings());
        let a = d.exit(kids.spare, ExitStatus::Code(1), false, "cannot load plugin");
        // A spare the host did not signal died of its own accord: worth a warning.
        assert_eq!(
            logged(&a, "spare child"),
            up(step) || step == Step::SmartWaiting,
            "{step:?}"
        );
        let a = d.exit(kids.conn, ExitStatus::Code(0), false, "");
        assert!(!logged(&a, "crashed"), "{step:?}");
        assert_eq!(
            d.core.state() == HostState::Recovering,
            !up(step) && !matches!(step, Step::SmartWaiting | Step::Signalled | Step::StopKilled),
            "{step:?}"
        );
    }
}

pub(super) fn an_unsignalled_child_that_crashes_resets_or_is_ignored_by_a_smart_wait() {
    let unsignalled = [
        Step::SegmentInit,
        Step::Startup,
        Step::Consistent,
        Step::Running,
        Step::SmartWaiting,
    ];
    for step in unsignalled {
        let (mut d, kids) = at(step, Progress::Running, settings());
        d.exit(kids.spare, ExitStatus::Code(3), false, "");
        let want = if up(step) {
            HostState::Recovering
        } else {
            HostState::Stopping
        };
        assert_eq!(d.core.state(), want, "{step:?}: a corrupt segment reported");
        let (mut d, kids) = at(step, Progress::Running, settings());
        let a = d.exit(kids.conn, ExitStatus::Signal(11), false, "");
        // Ignored by a smart wait, without a line of the core's own.
        assert_eq!(logged(&a, "connection child (pid"), up(step), "{step:?}");
        assert_eq!(d.core.state(), want, "{step:?}: a connection crashed");
        if step == Step::SmartWaiting {
            assert_eq!(signals(&a).len(), 3, "the last connection is gone: SIGTERM to the rest");
        }
    }
    let off = Settings {
        restart_after_crash: false,
        ..settings()
    };
    for step in [Step::SegmentInit, Step::Startup, Step::Consistent, Step::Running] {
        let (mut d, kids) = at(step, Progress::Running, off);
        let a = d.exit(kids.conn, ExitStatus::Signal(11), false, "");
        assert!(logged(&a, "restart_after_crash is off"), "{step:?}");
        assert_eq!(d.core.state(), HostState::Stopping, "{step:?}");
        assert_eq!(d.core.exit_code(), crate::exit_code::FAILURE, "{step:?}");
    }
}

pub(super) fn the_startup_child_ends_start_up_only_while_the_host_is_up() {
    // Running is reached only by the startup child's end (with startup hooks); the segment init
    // step's own exits are in `seginit.rs`.
    for step in STEPS
        .into_iter()
        .filter(|s| !matches!(s, Step::Running | Step::SegmentInit))
    {
        let (mut d, kids) = at(step, Progress::Startup, settings());
        let startup = kids.startup.expect("left up from startup");
        if up(step) {
            let a = d.exit(startup, ExitStatus::Code(0), false, "");
            assert!(a.contains(&Action::NotifyState(HostState::Running)), "{step:?}");
            let (mut d, kids) = at(step, Progress::Startup, settings());
            let a = d.exit(kids.startup.unwrap(), ExitStatus::Code(2), false, "hook h refused");
            assert!(logged(&a, "start-up failed: hook h refused"), "{step:?}");
            assert_eq!(d.core.state(), HostState::Stopping, "{step:?}");
        } else {
            let phase = d.core.phase();
            let a = d.exit(startup, ExitStatus::Code(0), false, "");
            assert!(!logged(&a, "start-up failed"), "{step:?}");
            assert_eq!(d.core.phase(), phase, "{step:?}: not running, not failed");
        }
    }
}

pub(super) fn stops_in_every_state() {
    for step in STEPS {
        // Smart: waits for the connection while up or recovering, changes nothing once stopping.
        let (mut d, _) = at(step, Progress::Running, settings());
        let before = d.core.phase();
        d.ev(Event::Stop {
            mode: StopMode::Smart,
            why: "SIGTERM",
        });
        match step {
            Step::SmartWaiting | Step::Signalled | Step::StopKilled => {
                assert_eq!(d.core.phase(), before, "{step:?}")
            }
            _ => assert_eq!(d.core.phase(), Phase::Stopping(Shutdown::SmartWaiting), "{step:?}"),
        }
        // Immediate: signals from every state, a harsher mode while stopping.
        let (mut d, _) = at(step, Progress::Running, settings());
        let a = d.ev(Event::Stop {
            mode: StopMode::Immediate,
            why: "SIGQUIT",
        });
        assert!(signals(&a).iter().all(|(_, s)| *s == Signal::SIGQUIT), "{step:?}");
        assert_eq!(d.core.stop_mode(), Some(StopMode::Immediate), "{step:?}");
    }
}

pub(super) fn events_for_a_worker_the_table_no_longer_has_change_nothing() {
    let mut d = Driver::started(vec![spec("w", after(SEC), StartTime::HostStart)]);
    let x = d
        .core
        .add_worker(spec("x", RestartPolicy::Never, StartTime::HostStart))
        .unwrap();
    d.ev(Event::Deadline);
    let pid = d.core.worker(x).unwrap().run.pid.unwrap();
    d.exit(pid, ExitStatus::Code(0), false, "");
    d.core.remove_worker(x).unwrap();
    let slot = d.pool.acquire_worker(x.slot).unwrap();
    let a = d.ev(Event::Launched {
        key: x,
        pid: 700,
        slot,
        spare: None,
    });
    assert!(a.is_empty(), "{a:?}");
    let error = std::io::Error::from_raw_os_error(libc::EAGAIN);
    assert!(d.ev(Event::LaunchFailed { key: x, error: &error }).is_empty());
    // A worker child with no worker: the loop never starts one, and its end is no crash.
    d.ev(Event::ChildStarted { pid: 701, slot });
    d.exit(701, ExitStatus::Signal(11), false, "");
    assert_eq!(d.core.state(), HostState::Running);
    assert_eq!(d.core.generation(), 1);
}

pub(super) fn a_launch_that_fails_again_waits_again() {
    let mut d = Driver::new(vec![spec("w", after(SEC), StartTime::HostStart)], false);
    d.launch_fails = true;
    d.ev(Event::Start);
    d.ev(Event::Deadline);
    let a = d.pass(SEC);
    assert!(logged(&a, "cannot start worker w"), "{a:?}");
    assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
    assert_eq!(d.run(0).restart_at, Some(d.now.mono + SEC));
}

pub(super) fn a_worker_added_at_run_time_that_failed_is_removed() {
    let mut d = Driver::started(vec![]);
    let x = d.core.add_worker(spec("x", after(SEC), StartTime::HostStart)).unwrap();
    d.ev(Event::Deadline);
    let pid = d.core.worker(x).unwrap().run.pid.unwrap();
    d.exit(pid, ExitStatus::Code(2), false, "bad input");
    assert_eq!(d.core.worker(x).unwrap().run.state, WorkerState::Failed);
    assert_eq!(d.core.remove_worker(x).unwrap().name, "x");
    assert!(d.core.worker(x).is_none());
}
