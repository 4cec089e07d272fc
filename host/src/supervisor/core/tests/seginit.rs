//! Segment init hooks (issue 14: segment init): the `init (segment init)` step holds back every
//! worker, whatever its start time, until the startup child declares the segment ready, at start
//! and after each crash reset; a failing or vanishing init stops the host.

use super::*;
use crate::shared::registry::StartTime;

/// A driver whose plugins registered segment init hooks (and startup hooks if `hooks`), with a
/// worker of each start time.
fn with_init(hooks: bool) -> Driver {
    let specs = vec![
        spec("early", after(SEC), StartTime::HostStart),
        spec("mid", after(SEC), StartTime::Consistent),
        spec("late", after(SEC), StartTime::Running),
    ];
    let mut d = Driver::new(specs, hooks);
    d.core.set_segment_inits(true);
    d
}

fn states(d: &Driver) -> [WorkerState; 3] {
    [d.state_of(0), d.state_of(1), d.state_of(2)]
}

const NONE_STARTED: [WorkerState; 3] = [WorkerState::NotStarted; 3];

pub(super) fn segment_init_holds_every_worker_until_the_segment_is_ready() {
    let mut d = with_init(true);
    let a = d.ev(Event::Start);
    assert!(a.contains(&Action::StartStartup));
    assert_eq!(d.core.phase(), Phase::Up(Progress::SegmentInit));
    assert_eq!(d.core.state(), HostState::Init);
    assert!(
        !a.iter().any(|a| matches!(a, Action::NotifyState(_))),
        "{a:?}: nothing to tell yet"
    );
    // Not even `host_start` workers, however long the hooks take; and nothing for the loop to
    // wake up for.
    assert_eq!(launches(&d.ev(Event::Deadline)), 0);
    assert_eq!(launches(&d.pass(60 * SEC)), 0);
    assert_eq!(states(&d), NONE_STARTED);
    assert_eq!(d.core.next_deadline(d.now), None);
    // Ready: the same child goes on with the startup hooks, and start-up proceeds as without.
    let a = d.ev(Event::SegmentReady);
    assert!(a.contains(&Action::NotifyState(HostState::Startup)));
    assert!(
        !a.contains(&Action::StartStartup),
        "the startup child is already running"
    );
    d.ev(Event::Deadline);
    assert_eq!(
        states(&d),
        [WorkerState::Running, WorkerState::NotStarted, WorkerState::NotStarted]
    );
    // A second declaration changes nothing.
    d.ev(Event::SegmentReady);
    assert_eq!(d.core.state(), HostState::Startup);
    d.ev(Event::Consistent);
    let startup = d.startup_pid.unwrap();
    d.exit(startup, ExitStatus::Code(0), false, "");
    assert_eq!(d.core.state(), HostState::Running);
    d.ev(Event::Deadline);
    assert_eq!(states(&d), [WorkerState::Running; 3]);
}

pub(super) fn segment_init_without_startup_hooks_runs_once_ready() {
    let mut d = with_init(false);
    d.ev(Event::Start);
    assert_eq!(launches(&d.ev(Event::Deadline)), 0);
    let a = d.ev(Event::SegmentReady);
    assert!(
        a.contains(&Action::NotifyState(HostState::Running)),
        "READY=1 once initialised"
    );
    assert_eq!(launches(&d.ev(Event::Deadline)), 3);
    // The startup child, with no startup hook to run, then ends: nothing changes.
    let startup = d.startup_pid.unwrap();
    let a = d.exit(startup, ExitStatus::Code(0), false, "");
    assert!(!a.iter().any(|a| matches!(a, Action::NotifyState(_))), "{a:?}");
    assert_eq!(d.core.state(), HostState::Running);
    // Should it die instead, after declaring the segment ready, start-up still failed.
    let mut d = with_init(false);
    d.ev(Event::Start);
    d.ev(Event::SegmentReady);
    let startup = d.startup_pid.unwrap();
    let a = d.exit(
        startup,
        ExitStatus::Signal(9),
        true,
        "segment init hook f (plugin p) was running",
    );
    assert!(logged(&a, "start-up failed"), "{a:?}");
    assert_eq!(d.core.state(), HostState::Stopping);
    assert_eq!(d.core.exit_code(), crate::exit_code::FAILURE);
}

pub(super) fn a_failed_segment_init_stops_the_host_naming_the_hook() {
    for hooks in [false, true] {
        let mut d = with_init(hooks);
        d.ev(Event::Start);
        let startup = d.startup_pid.unwrap();
        let why = "segment init hook fill (plugin p) failed: no room";
        let a = d.exit(startup, ExitStatus::Code(2), false, why);
        assert!(logged(&a, &format!("start-up failed: {why}; stopping")), "{a:?}");
        assert_eq!(d.core.stop_mode(), Some(StopMode::Immediate));
        let a = d.ev(Event::Scanned);
        assert_eq!(exit_code(&a), Some(crate::exit_code::FAILURE), "{a:?}");
        assert_eq!(states(&d), [WorkerState::Stopped; 3], "no worker ever started");
        // A clean exit that never declared the segment ready skipped a hook: a failure too.
        let mut d = with_init(hooks);
        d.ev(Event::Start);
        let startup = d.startup_pid.unwrap();
        let a = d.exit(startup, ExitStatus::Code(0), false, "");
        assert!(logged(&a, "before the segment init hooks finished"), "{a:?}");
        assert_eq!(d.core.exit_code(), crate::exit_code::FAILURE);
    }
    // A startup child that cannot start stops the host from the segment init step as well.
    let mut d = with_init(true);
    d.startup_fails = true;
    let a = d.ev(Event::Start);
    assert!(logged(&a, "cannot start the startup child"));
    assert_eq!(exit_code(&a), Some(crate::exit_code::FAILURE));
}

pub(super) fn every_reset_initialises_its_new_segment_first() {
    let mut d = with_init(false);
    d.ev(Event::Start);
    d.ev(Event::SegmentReady);
    d.ev(Event::Deadline);
    let startup = d.startup_pid.unwrap();
    d.exit(startup, ExitStatus::Code(0), false, "");
    d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    assert_eq!(d.core.state(), HostState::Recovering);
    let a = d.all_exit(libc::SIGQUIT);
    assert!(
        a.iter().any(|a| matches!(a, Action::CreateSegment { generation: 2 })),
        "{a:?}"
    );
    assert!(a.contains(&Action::StartStartup), "{a:?}");
    assert_eq!(d.core.phase(), Phase::Up(Progress::SegmentInit));
    assert_eq!(d.core.generation(), 2);
    // Every worker waits for the new segment's init, restarts due or not.
    assert_eq!(launches(&d.pass(10 * SEC)), 0);
    d.ev(Event::SegmentReady);
    assert_eq!(d.core.state(), HostState::Running);
    assert_eq!(launches(&d.ev(Event::Deadline)), 3);
}
