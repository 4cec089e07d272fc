//! Isolated workers (issue 15: isolated): a crash restarts only the crashed worker per its
//! policy, counts against its crash-loop limit, and never resets the host; an attached worker's
//! crash still does, and so does evidence against the segment from an isolated worker.

use super::*;
use crate::shared::registry::{CrashLoopLimit, RestartPolicy, StartTime};

fn isolated(name: &str, restart: RestartPolicy) -> WorkerSpec {
    WorkerSpec {
        isolated: true,
        ..spec(name, restart, StartTime::HostStart)
    }
}

pub(super) fn an_isolated_crash_restarts_only_that_worker_and_never_resets() {
    let mut d = Driver::started(vec![
        isolated("iso", after(Duration::from_millis(100))),
        spec("other", after(SEC), StartTime::HostStart),
    ]);
    let other = d.pid_of(1);
    // Exit 3 with a header the supervisor finds sound is plugin code's exit, not evidence.
    for status in [
        ExitStatus::Signal(libc::SIGSEGV),
        ExitStatus::Signal(libc::SIGABRT),
        ExitStatus::Code(3),
    ] {
        let a = d.exit(d.pid_of(0), status, false, "");
        assert_eq!(d.state_of(0), WorkerState::WaitingRestart, "{status}");
        assert!(logged(&a, "restarting it alone in 100ms (no reset)"), "{a:?}");
        assert!(signals(&a).is_empty(), "nobody else is signalled: {a:?}");
        assert!(d.core.is_up());
        assert_eq!(d.core.generation(), 1, "the segment is kept");
        assert_eq!(d.pid_of(1), other, "the other worker keeps running");
        assert_eq!(launches(&d.pass(Duration::from_millis(100))), 1, "{status}");
        assert_eq!(d.state_of(0), WorkerState::Running);
    }
}

/// The two kinds of evidence against the segment an isolated child's reap can show, each with
/// the exit that comes with it (`active_exit` for the slot marked active) and what the log says.
pub(super) fn segment_evidence(active_exit: ExitStatus) -> [(ExitStatus, SlotCopy, &'static str); 2] {
    [
        (
            active_exit,
            SlotCopy {
                dead_man: true,
                ..SlotCopy::default()
            },
            "marked active",
        ),
        (
            ExitStatus::Code(3),
            SlotCopy {
                header_corrupt: true,
                ..SlotCopy::default()
            },
            "segment header corrupt too",
        ),
    ]
}

/// What an isolated worker cannot have written is evidence against the segment: a child slot
/// marked active at its reap (it never writes its slot), or exit 3 with a header the supervisor
/// finds corrupt too (the check before isolation). Both reset the host, as an attached crash does.
pub(super) fn evidence_against_the_segment_from_an_isolated_worker_resets_the_host() {
    let evidence = segment_evidence(ExitStatus::Code(0));
    for (status, slot, says) in evidence {
        let mut d = Driver::started(vec![
            isolated("iso", after(SEC)),
            spec("other", after(SEC), StartTime::HostStart),
        ]);
        let other = d.pid_of(1);
        let a = d.exit_slot(d.pid_of(0), status, slot);
        assert!(signals(&a).contains(&(other, Signal::SIGQUIT)), "{status}: {a:?}");
        assert!(logged(&a, says), "{status}: {a:?}");
        assert!(!logged(&a, "no reset"), "{status}: {a:?}");
        d.all_exit(libc::SIGQUIT);
        assert_eq!(d.core.generation(), 2, "{status}: the segment is replaced");
    }
}

pub(super) fn an_isolated_crash_counts_against_the_crash_loop_limit() {
    let mut d = Driver::started(vec![WorkerSpec {
        crash_loop: Some(CrashLoopLimit {
            max: 2,
            window: 60 * SEC,
        }),
        ..isolated("iso", after(Duration::ZERO))
    }]);
    for _ in 0..2 {
        d.exit(d.pid_of(0), ExitStatus::Signal(libc::SIGSEGV), false, "");
        assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
        d.pass(Duration::from_millis(1));
    }
    let a = d.exit(d.pid_of(0), ExitStatus::Signal(libc::SIGSEGV), false, "");
    assert_eq!(d.state_of(0), WorkerState::Failed);
    assert!(logged(&a, "failed: restarted 2 times in 1min"), "{a:?}");
    assert_eq!(d.core.generation(), 1, "still no reset");
    assert_eq!(launches(&d.pass(SEC)), 0);
}

pub(super) fn an_isolated_crash_under_never_fails_it_alone() {
    let mut d = Driver::started(vec![
        isolated("iso", RestartPolicy::Never),
        spec("other", after(SEC), StartTime::HostStart),
    ]);
    let other = d.pid_of(1);
    let a = d.exit(d.pid_of(0), ExitStatus::Signal(libc::SIGSEGV), false, "");
    assert_eq!(d.state_of(0), WorkerState::Failed);
    assert!(logged(&a, "not restarting (no reset: it crashed alone)"), "{a:?}");
    assert_eq!((d.core.generation(), d.pid_of(1)), (1, other));
    // Its ordinary exits keep their meaning.
    let mut d = Driver::started(vec![isolated("iso", after(Duration::ZERO))]);
    d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
    d.pass(Duration::from_millis(1));
    d.exit(d.pid_of(0), ExitStatus::Code(2), false, "bad");
    assert_eq!(d.state_of(0), WorkerState::Failed);
}

pub(super) fn an_attached_crash_beside_an_isolated_worker_still_resets_both() {
    let mut d = Driver::started(vec![
        isolated("iso", after(SEC)),
        spec("attached", after(SEC), StartTime::HostStart),
    ]);
    let iso = d.pid_of(0);
    let a = d.exit(d.pid_of(1), ExitStatus::Signal(libc::SIGSEGV), false, "");
    assert!(signals(&a).contains(&(iso, Signal::SIGQUIT)), "{a:?}");
    d.all_exit(libc::SIGQUIT);
    assert_eq!(d.core.generation(), 2);
}
