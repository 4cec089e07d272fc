//! Start-up, and what each exit means under each restart policy.

use super::*;
use crate::shared::registry::{Backoff, CrashLoopLimit, RestartPolicy, StartTime};

// ---- start-up ----

pub(super) fn start_without_hooks_runs_at_once_and_launches() {
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

pub(super) fn start_times_gate_workers_through_startup_and_consistent() {
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

pub(super) fn a_startup_child_that_cannot_start_stops_the_host() {
    let mut d = Driver::new(vec![], true);
    d.startup_fails = true;
    let a = d.ev(Event::Start);
    assert!(logged(&a, "cannot start the startup child"));
    assert_eq!(exit_code(&a), Some(crate::exit_code::FAILURE));
}

pub(super) fn a_failed_startup_hook_stops_the_host_immediately() {
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

pub(super) fn every_exit_outcome_under_every_policy() {
    let backoff = RestartPolicy::Backoff(Backoff {
        initial: SEC,
        factor_milli: 2000,
        cap: 10 * SEC,
        reset_after: 60 * SEC,
    });
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
    // Stopped by the host: a worker the host signalled is never restarted and never a crash,
    // whatever it exits with, under every policy (the fourth outcome; the host signals a worker
    // only to stop it or in a crash reset, so the host is stopping here).
    for policy in [RestartPolicy::Never, after(SEC), backoff] {
        for (status, dead_man) in [
            (ExitStatus::Signal(libc::SIGTERM), true),
            (ExitStatus::Signal(libc::SIGSEGV), false),
            (ExitStatus::Code(77), true),
        ] {
            let mut d = Driver::started(vec![spec("w", policy, StartTime::HostStart)]);
            d.ev(Event::Stop {
                mode: StopMode::Fast,
                why: "SIGINT",
            });
            d.exit(d.pid_of(0), status, dead_man, "");
            let what = format!("{status} (dead-man {dead_man}) under {policy:?}");
            assert_eq!(d.state_of(0), Stopped, "{what}");
            let reason = &d.run(0).last_exit.as_ref().unwrap().2;
            assert_eq!(*reason, format!("stopped by the host ({status})"), "{what}");
            assert_eq!(d.core.generation(), 1, "{what}: no reset");
        }
    }
}

pub(super) fn the_exit_reasons_follow_the_contract() {
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

pub(super) fn backoff_grows_to_its_cap_and_resets_after_a_long_run() {
    let policy = RestartPolicy::Backoff(Backoff {
        initial: Duration::from_millis(10),
        factor_milli: 2000,
        cap: Duration::from_millis(50),
        reset_after: SEC,
    });
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

pub(super) fn a_crash_loop_limit_fails_the_worker() {
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

pub(super) fn a_launch_failure_retries_after_a_second() {
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

pub(super) fn launches_come_in_bounded_batches() {
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
