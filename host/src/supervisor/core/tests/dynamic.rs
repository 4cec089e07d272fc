//! Dynamic workers (issue 14: dynamic workers): a request adopted, refused with the counts of
//! dynamic slots, or answered "not running" in every step; a terminate in every worker state; a
//! dynamic worker that stopped for good is retired, by an exit or by a crash reset.

use super::states::{at, up, STEPS};
use super::*;
use crate::shared::handles::Answer;
use crate::shared::registry::{RestartPolicy, StartTime};

fn request(d: &mut Driver, from: u32, seq: u32, name: &str, restart: RestartPolicy) -> Vec<Action> {
    let spec = Box::new(spec(name, restart, StartTime::HostStart));
    d.ev(Event::Request {
        from,
        seq,
        spec,
        queue_timeout: None,
    })
}

fn answer(a: &[Action]) -> (u32, u32, Answer) {
    a.iter()
        .find_map(|a| match a {
            Action::Answer { to, seq, answer } => Some((*to, *seq, answer.clone())),
            _ => None,
        })
        .expect("the request is answered")
}

fn adopted(a: &[Action]) -> WorkerKey {
    match answer(a).2 {
        Answer::Adopted { slot, generation } => WorkerKey { slot, generation },
        other => panic!("not adopted: {other:?}"),
    }
}

pub(super) fn requests_are_adopted_or_refused_while_up_and_answered_not_running_otherwise() {
    for step in STEPS {
        // Two static workers and two dynamic slots.
        let (mut d, _) = at(step, Progress::Running, settings());
        let a = request(&mut d, 0, 7, "x", RestartPolicy::Never);
        if !up(step) {
            assert_eq!(answer(&a), (0, 7, Answer::HostNotRunning), "{step:?}");
            assert_eq!(d.core.workers().count(), 2, "{step:?}");
            continue;
        }
        // Published before the answer names it, so a handle never sees an empty slot.
        let key = adopted(&a);
        let publish = a.iter().position(|x| *x == Action::PublishRegistration(key));
        let answered = a.iter().position(|x| matches!(x, Action::Answer { .. }));
        assert!(publish < answered && publish.is_some(), "{step:?}: {a:?}");
        assert_eq!(d.core.worker(key).unwrap().run.state, WorkerState::NotStarted);
        assert!(d.core.worker(key).unwrap().is_dynamic());
        adopted(&request(&mut d, 1, 8, "y", RestartPolicy::Never));
        // Every dynamic slot taken: refused at once with the dynamic counts.
        let a = request(&mut d, 1, 9, "z", RestartPolicy::Never);
        assert_eq!(answer(&a), (1, 9, Answer::NoFreeSlot { used: 2, max: 2 }), "{step:?}");
    }
}

pub(super) fn a_terminate_stops_a_worker_for_good_in_each_state() {
    let mut d = Driver::started(vec![
        spec("s", after(SEC), StartTime::HostStart),
        spec("f", after(SEC), StartTime::HostStart),
    ]);
    // Running, under a restarting policy: SIGTERM, and its exit 1 is a stop for good, retired.
    let x = adopted(&request(&mut d, 0, 1, "x", after(SEC)));
    d.ev(Event::Deadline);
    let pid = d.core.worker(x).unwrap().run.pid.unwrap();
    let a = d.ev(Event::Terminate { key: x });
    assert_eq!(signals(&a), vec![(pid, Signal::SIGTERM)]);
    let a = d.exit(pid, ExitStatus::Code(1), false, "asked to restart");
    assert_eq!(d.core.worker(x).unwrap().run.state, WorkerState::Stopped);
    assert!(a.contains(&Action::Retire(x)), "{a:?}");
    // Stopped: nothing more.
    assert!(d.ev(Event::Terminate { key: x }).is_empty());
    d.core.remove_worker(x).unwrap();
    // Gone from the table (a later tenant has another generation): nothing.
    assert!(d.ev(Event::Terminate { key: x }).is_empty());
    let y = adopted(&request(&mut d, 0, 2, "y", after(SEC)));
    assert_eq!(y.slot, x.slot);
    assert_ne!(y.generation, x.generation);
    // Not started yet: stopped at once, and retired.
    let a = d.ev(Event::Terminate { key: y });
    assert_eq!(d.core.worker(y).unwrap().run.state, WorkerState::Stopped);
    assert!(a.contains(&Action::Retire(y)), "{a:?}");
    assert_eq!(launches(&d.ev(Event::Deadline)), 0);
    // A static worker waiting to restart: stopped, published (static workers keep their slot).
    let s = d.key(0);
    d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
    let a = d.ev(Event::Terminate { key: s });
    assert_eq!(d.state_of(0), WorkerState::Stopped);
    assert!(a.contains(&Action::PublishWorker(s)));
    assert_eq!(launches(&d.pass(2 * SEC)), 0);
    // Failed: nothing.
    let f = d.key(1);
    d.exit(d.pid_of(1), ExitStatus::Code(2), false, "bad");
    assert!(d.ev(Event::Terminate { key: f }).is_empty());
    assert_eq!(d.state_of(1), WorkerState::Failed);
}

pub(super) fn a_reset_retires_stopped_dynamic_workers_and_restarts_the_others() {
    let mut d = Driver::started(vec![spec("crasher", after(SEC), StartTime::HostStart)]);
    let once = adopted(&request(&mut d, 0, 1, "once", RestartPolicy::Never));
    let again = adopted(&request(&mut d, 0, 2, "again", after(SEC)));
    d.ev(Event::Deadline);
    d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
    let a = d.all_exit(libc::SIGQUIT);
    assert!(a.contains(&Action::Retire(once)), "{a:?}");
    assert!(!a.contains(&Action::Retire(again)), "{a:?}");
    assert_eq!(d.core.worker(again).unwrap().run.state, WorkerState::WaitingRestart);
    d.core.remove_worker(once).unwrap();
    assert_eq!(launches(&d.ev(Event::Deadline)), 2);
}
