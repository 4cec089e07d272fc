//! Launchers (issue 14: notifications): duplicate names and unknown `start_after` targets are
//! refused in every step a request is served; a launcher's latch is set when a worker it
//! launched stops or fails to launch, and never once the launcher is gone; `stop_with_launcher`
//! workers end with their launcher in every state, and a crash reset stops them for good.

use super::states::{at, up, STEPS};
use super::*;
use crate::shared::handles::Answer;
use crate::shared::registry::{RestartPolicy, StartTime};

fn request(d: &mut Driver, from: u32, seq: u32, spec: WorkerSpec) -> Vec<Action> {
    d.ev(Event::Request {
        from,
        seq,
        spec: Box::new(spec),
        queue_timeout: None,
    })
}

fn answer(a: &[Action]) -> Answer {
    a.iter()
        .find_map(|a| match a {
            Action::Answer { answer, .. } => Some(answer.clone()),
            _ => None,
        })
        .expect("the request is answered")
}

fn adopted(a: &[Action]) -> WorkerKey {
    match answer(a) {
        Answer::Adopted { slot, generation } => WorkerKey { slot, generation },
        other => panic!("not adopted: {other:?}"),
    }
}

fn swl(name: &str, restart: RestartPolicy) -> WorkerSpec {
    WorkerSpec {
        stop_with_launcher: true,
        ..spec(name, restart, StartTime::HostStart)
    }
}

fn latches(a: &[Action]) -> Vec<(u32, i32)> {
    a.iter()
        .filter_map(|a| match a {
            Action::SetLatch { child_slot, pid } => Some((*child_slot, *pid)),
            _ => None,
        })
        .collect()
}

pub(super) fn duplicate_names_and_unknown_targets_are_refused_while_up() {
    for step in STEPS.into_iter().filter(|s| up(*s)) {
        let (mut d, _) = at(step, Progress::Running, settings());
        adopted(&request(&mut d, 0, 1, spec("x", after(SEC), StartTime::Running)));
        // A dynamic worker's name, and a static one's: refused at once, naming it.
        for name in ["x", "w"] {
            let a = request(&mut d, 0, 2, spec(name, after(SEC), StartTime::Running));
            assert_eq!(answer(&a), Answer::DuplicateName(name.into()), "{step:?}");
        }
        let dependent = WorkerSpec {
            start_after: vec!["w".into(), "nobody".into()],
            ..spec("y", after(SEC), StartTime::Running)
        };
        let a = request(&mut d, 0, 3, dependent);
        assert_eq!(answer(&a), Answer::UnknownStartAfter("nobody".into()), "{step:?}");
        assert_eq!(d.core.workers().count(), 3, "{step:?}: nothing added");
    }
}

pub(super) fn a_launcher_is_told_when_its_workers_stop_or_fail_to_launch() {
    let mut d = Driver::started(vec![spec("l", after(SEC), StartTime::HostStart)]);
    let launcher = d.pid_of(0);
    let x = adopted(&request(
        &mut d,
        0,
        1,
        spec("x", RestartPolicy::Never, StartTime::HostStart),
    ));
    assert_eq!(
        d.core.worker(x).unwrap().launcher,
        Some(Launcher {
            child_slot: 0,
            pid: launcher
        })
    );
    // Its start: the worker sets the latch at its entry, which may come before the publish that
    // makes its handle say running, so the host sets it again after that publish.
    let a = d.ev(Event::Deadline);
    assert_eq!(latches(&a), vec![(0, launcher)]);
    let publish = a.iter().position(|a| *a == Action::PublishWorker(x)).unwrap();
    let latch = a.iter().position(|a| matches!(a, Action::SetLatch { .. })).unwrap();
    assert!(publish < latch, "{a:?}");
    // Its stop is the host's to tell, after its last status.
    let pid = d.core.worker(x).unwrap().run.pid.unwrap();
    let a = d.exit(pid, ExitStatus::Code(0), false, "");
    assert_eq!(latches(&a), vec![(0, launcher)]);
    let retire = a.iter().position(|a| *a == Action::Retire(x)).unwrap();
    let latch = a.iter().position(|a| matches!(a, Action::SetLatch { .. })).unwrap();
    assert!(retire < latch, "{a:?}");
    d.core.remove_worker(x).unwrap();
    // A launch that fails (issue 14: queue: the worker stops with the errno and is retired).
    let y = adopted(&request(&mut d, 0, 2, spec("y", after(SEC), StartTime::HostStart)));
    d.launch_fails = true;
    let a = d.ev(Event::Deadline);
    assert_eq!(latches(&a), vec![(0, launcher)]);
    assert!(a.contains(&Action::Retire(y)), "{a:?}");
    d.core.remove_worker(y).unwrap();
    d.launch_fails = false;
    // A terminate before it started.
    let y = adopted(&request(&mut d, 0, 4, spec("y2", after(SEC), StartTime::HostStart)));
    let a = d.ev(Event::Terminate { key: y });
    assert_eq!(latches(&a), vec![(0, launcher)]);
    d.core.remove_worker(y).unwrap();
    // review: notifications
    // A `needs_ready` worker's start is its readiness: no latch at the launch, one after the
    // publish that follows its declaration.
    let r = WorkerSpec {
        needs_ready: true,
        ..spec("r", RestartPolicy::Never, StartTime::HostStart)
    };
    let r = adopted(&request(&mut d, 0, 5, r));
    let a = d.ev(Event::Deadline);
    assert!(a.iter().any(|a| matches!(a, Action::Launch(k) if *k == r)), "{a:?}");
    assert!(latches(&a).is_empty(), "{a:?}");
    let a = d.ev(Event::Ready { key: r });
    assert_eq!(latches(&a), vec![(0, launcher)]);
    let publish = a.iter().position(|a| *a == Action::PublishWorker(r)).unwrap();
    let latch = a.iter().position(|a| matches!(a, Action::SetLatch { .. })).unwrap();
    assert!(publish < latch, "{a:?}");
    d.ev(Event::Terminate { key: r });
    let rpid = d.core.worker(r).unwrap().run.pid.unwrap();
    d.exit(rpid, ExitStatus::Code(0), false, "");
    d.core.remove_worker(r).unwrap();
    // Once the launcher is gone, its workers run on and nobody is told.
    let z = adopted(&request(&mut d, 0, 3, spec("z", after(SEC), StartTime::HostStart)));
    d.ev(Event::Deadline);
    d.exit(launcher, ExitStatus::Code(1), false, "");
    assert_eq!(d.core.worker(z).unwrap().launcher, None);
    let zpid = d.core.worker(z).unwrap().run.pid.unwrap();
    let a = d.ev(Event::Ready { key: z });
    assert!(latches(&a).is_empty(), "{a:?}");
    assert!(latches(&d.exit(zpid, ExitStatus::Code(1), false, "")).is_empty());
}

pub(super) fn the_startup_child_launches_from_its_own_request_slot() {
    let mut d = Driver::new(vec![spec("w", after(SEC), StartTime::Running)], true);
    d.ev(Event::Start);
    let startup = d.startup_pid.unwrap();
    let slot = d.core.child(startup).unwrap().slot.child_slot().unwrap();
    let x = adopted(&request(
        &mut d,
        slot,
        1,
        spec("x", RestartPolicy::Never, StartTime::Running),
    ));
    let l = d
        .core
        .worker(x)
        .unwrap()
        .launcher
        .expect("the startup child launched it");
    assert_eq!((l.child_slot, l.pid), (slot, startup));
    // Its end is the hooks' end: no latch from here on.
    d.exit(startup, ExitStatus::Code(0), false, "");
    assert_eq!(d.core.worker(x).unwrap().launcher, None);
}

pub(super) fn stop_with_launcher_workers_end_with_it_in_every_state() {
    let mut d = Driver::started(vec![spec("l", after(SEC), StartTime::HostStart)]);
    let launcher = d.pid_of(0);
    let running = adopted(&request(&mut d, 0, 1, swl("a", after(SEC))));
    let waiting = adopted(&request(&mut d, 0, 2, swl("b", after(SEC))));
    d.ev(Event::Deadline);
    let bpid = d.core.worker(waiting).unwrap().run.pid.unwrap();
    d.exit(bpid, ExitStatus::Code(1), false, "");
    assert_eq!(d.core.worker(waiting).unwrap().run.state, WorkerState::WaitingRestart);
    let apid = d.core.worker(running).unwrap().run.pid.unwrap();
    let a = d.exit(launcher, ExitStatus::Code(1), false, "");
    assert_eq!(signals(&a), vec![(apid, Signal::SIGTERM)]);
    assert!(a.contains(&Action::Retire(waiting)), "{a:?}");
    let why = format!("launcher exited (pid {launcher})");
    assert_eq!(d.core.worker(waiting).unwrap().run.last_exit.as_ref().unwrap().2, why);
    d.core.remove_worker(waiting).unwrap();
    // Its exit from that SIGTERM stops it for good, with the reason.
    let a = d.exit(apid, ExitStatus::Code(0), false, "");
    assert!(a.contains(&Action::Retire(running)), "{a:?}");
    let w = d.core.worker(running).unwrap();
    assert_eq!(
        (w.run.state, w.run.last_exit.as_ref().unwrap().2.as_str()),
        (WorkerState::Stopped, why.as_str())
    );
    d.core.remove_worker(running).unwrap();
    // Not started yet: stopped at once.
    d.pass(SEC);
    let launcher = d.pid_of(0);
    let pending = adopted(&request(&mut d, 0, 3, swl("c", after(SEC))));
    let a = d.exit(launcher, ExitStatus::Code(1), false, "");
    assert!(a.contains(&Action::Retire(pending)), "{a:?}");
    assert_eq!(d.core.worker(pending).unwrap().run.state, WorkerState::Stopped);
    // Workers without the flag outlive their launcher.
    d.core.remove_worker(pending).unwrap();
    d.pass(SEC);
    let keep = adopted(&request(&mut d, 0, 4, spec("k", after(SEC), StartTime::HostStart)));
    d.ev(Event::Deadline);
    let a = d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    assert!(signals(&a).is_empty(), "{a:?}");
    assert_eq!(d.core.worker(keep).unwrap().run.state, WorkerState::Running);
}

pub(super) fn a_reset_stops_stop_with_launcher_workers_for_good() {
    // Running and waiting to restart at the crash.
    let mut d = Driver::started(vec![spec("l", after(SEC), StartTime::HostStart)]);
    let running = adopted(&request(&mut d, 0, 1, swl("a", after(SEC))));
    let waiting = adopted(&request(&mut d, 0, 2, swl("b", after(SEC))));
    d.ev(Event::Deadline);
    let bpid = d.core.worker(waiting).unwrap().run.pid.unwrap();
    d.exit(bpid, ExitStatus::Code(1), false, "");
    d.exit(d.pid_of(0), ExitStatus::Signal(libc::SIGSEGV), false, "");
    let a = d.all_exit(libc::SIGQUIT);
    for key in [running, waiting] {
        assert!(a.contains(&Action::Retire(key)), "{a:?}");
        let w = d.core.worker(key).unwrap();
        assert_eq!(w.run.state, WorkerState::Stopped);
        assert!(w.run.last_exit.as_ref().unwrap().2.contains("launcher exited"));
        d.core.remove_worker(key).unwrap();
    }
    // Not started yet at the crash.
    d.ev(Event::Deadline);
    let pending = adopted(&request(&mut d, 0, 3, swl("c", after(SEC))));
    // The launcher is the only child: its crash is the whole reset.
    let mut a = d.exit(d.pid_of(0), ExitStatus::Signal(libc::SIGSEGV), false, "");
    a.extend(d.all_exit(libc::SIGQUIT));
    assert!(a.contains(&Action::Retire(pending)), "{a:?}");
}

// review: start_after keys
pub(super) fn a_dynamic_dependent_never_follows_its_retired_targets_slot() {
    let mut d = Driver::started(vec![spec("l", after(SEC), StartTime::HostStart)]);
    let t = adopted(&request(
        &mut d,
        0,
        1,
        spec("t", RestartPolicy::Never, StartTime::HostStart),
    ));
    let dependent = WorkerSpec {
        start_after: vec!["t".into()],
        ..spec("dep", after(SEC), StartTime::HostStart)
    };
    let dep = adopted(&request(&mut d, 0, 2, dependent));
    d.ev(Event::Deadline);
    d.ev(Event::Ready { key: t });
    assert_eq!(launches(&d.ev(Event::Deadline)), 1);
    assert_eq!(d.core.worker(dep).unwrap().run.state, WorkerState::Running);
    // The target stops for good and is retired; an unrelated worker takes its slot and is ready.
    d.ev(Event::Terminate { key: t });
    let tpid = d.core.worker(t).unwrap().run.pid.unwrap();
    assert!(d
        .exit(tpid, ExitStatus::Code(0), false, "")
        .contains(&Action::Retire(t)));
    d.core.remove_worker(t).unwrap();
    let u = adopted(&request(
        &mut d,
        0,
        3,
        spec("u", RestartPolicy::Never, StartTime::HostStart),
    ));
    assert_eq!(u.slot, t.slot, "the slot is reused");
    d.ev(Event::Deadline);
    d.ev(Event::Ready { key: u });
    // The dependent exits to restart: its target is gone, not the slot's new tenant, so it waits
    // (decision 153), and status says for what.
    let dpid = d.core.worker(dep).unwrap().run.pid.unwrap();
    d.exit(dpid, ExitStatus::Code(1), false, "");
    assert_eq!(launches(&d.pass(2 * SEC)), 0);
    assert_eq!(d.core.worker(dep).unwrap().run.state, WorkerState::WaitingRestart);
    assert_eq!(d.core.waiting_for(dep).as_deref(), Some("worker t (stopped)"));
    // And a new tenant that never becomes ready does not gate it on its name either.
    d.ev(Event::Terminate { key: u });
    let upid = d.core.worker(u).unwrap().run.pid.unwrap();
    d.exit(upid, ExitStatus::Code(0), false, "");
    d.core.remove_worker(u).unwrap();
    let v = adopted(&request(
        &mut d,
        0,
        4,
        spec("v", RestartPolicy::Never, StartTime::HostStart),
    ));
    assert_eq!(v.slot, t.slot);
    assert_eq!(d.core.waiting_for(dep).as_deref(), Some("worker t (stopped)"));
}
