//! Readiness and `start_after` (issue 14: readiness): a worker that starts after another waits
//! until that one's running process is ready, shows why it waits, and waits again whenever the
//! target's process is gone; a worker that needs readiness is shown `starting` until it declares
//! it.

use super::*;
use crate::shared::registry::StartTime;

fn target(needs_ready: bool, restart: RestartPolicy) -> WorkerSpec {
    WorkerSpec {
        needs_ready,
        ..spec("a", restart, StartTime::HostStart)
    }
}

fn dependent() -> WorkerSpec {
    WorkerSpec {
        start_after: vec!["a".into()],
        ..spec("b", after(SEC), StartTime::HostStart)
    }
}

fn shown(d: &Driver, slot: u32) -> WorkerState {
    d.core.worker(d.key(slot)).unwrap().shown_state()
}

fn ready(d: &mut Driver, slot: u32) -> Vec<Action> {
    let key = d.key(slot);
    d.ev(Event::Ready { key })
}

pub(super) fn start_after_waits_for_its_target_to_declare_itself_ready() {
    let mut d = Driver::started(vec![target(true, after(SEC)), dependent()]);
    // The target runs, shown `starting`; its dependent waits and says for what, with nothing
    // for the loop to wake up for until the target's declaration comes.
    assert_eq!(
        (d.state_of(0), shown(&d, 0)),
        (WorkerState::Running, WorkerState::Starting)
    );
    assert_eq!(d.state_of(1), WorkerState::NotStarted);
    assert_eq!(d.core.waiting_for(d.key(1)).as_deref(), Some("worker a ready"));
    assert_eq!(d.core.next_deadline(d.now), None);
    assert_eq!(launches(&d.pass(60 * SEC)), 0);
    assert!(d.core.worker(d.key(0)).unwrap().awaits_ready());
    assert!(
        !d.core.worker(d.key(0)).unwrap().notifies_entry(),
        "it declares readiness itself"
    );
    // Ready: shown running, and the dependent's status is published (its wait is over).
    let a = ready(&mut d, 0);
    assert_eq!(shown(&d, 0), WorkerState::Running);
    assert!(a.contains(&Action::PublishWorker(d.key(0))));
    assert!(a.contains(&Action::PublishWorker(d.key(1))));
    assert_eq!(d.core.waiting_for(d.key(1)), None);
    assert_eq!(launches(&d.ev(Event::Deadline)), 1);
    assert_eq!(d.state_of(1), WorkerState::Running);
    // A second declaration changes nothing.
    assert!(ready(&mut d, 0).is_empty());
    assert_eq!(d.core.counts(), (2, 0));
}

pub(super) fn a_target_that_exits_makes_its_dependents_wait_again() {
    // Without `needs_ready` the target is ready once its entry runs, which its process reports
    // because a worker starts after it.
    let mut d = Driver::started(vec![target(false, after(SEC)), dependent()]);
    assert!(d.core.worker(d.key(0)).unwrap().notifies_entry());
    assert_eq!(
        shown(&d, 0),
        WorkerState::Running,
        "nothing to declare: never `starting`"
    );
    ready(&mut d, 0);
    d.ev(Event::Deadline);
    assert_eq!(d.state_of(1), WorkerState::Running);
    // The target exits to restart: the running dependent keeps running.
    let a = d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    assert_eq!(d.state_of(1), WorkerState::Running);
    assert!(
        !a.contains(&Action::PublishWorker(d.key(1))),
        "a running dependent's status is unchanged"
    );
    // The dependent exits too: it waits for the target's new process, whose restart comes first.
    d.exit(d.pid_of(1), ExitStatus::Code(1), false, "");
    assert_eq!(d.core.waiting_for(d.key(1)).as_deref(), Some("worker a ready"));
    let a = d.pass(SEC);
    assert_eq!(launches(&a), 1);
    assert_eq!(
        (d.state_of(0), d.state_of(1)),
        (WorkerState::Running, WorkerState::WaitingRestart)
    );
    ready(&mut d, 0);
    d.ev(Event::Deadline);
    assert_eq!(d.state_of(1), WorkerState::Running);
    // A target that fails for good: a dependent that stops waits on, and says why.
    d.exit(d.pid_of(0), ExitStatus::Code(2), false, "");
    d.exit(d.pid_of(1), ExitStatus::Code(1), false, "");
    assert_eq!(d.core.waiting_for(d.key(1)).as_deref(), Some("worker a (failed)"));
    assert_eq!(launches(&d.pass(60 * SEC)), 0);
}

pub(super) fn after_a_crash_reset_dependents_wait_for_the_new_target() {
    let mut d = Driver::started(vec![target(true, after(SEC)), dependent()]);
    ready(&mut d, 0);
    d.ev(Event::Deadline);
    // The target crashes: the host resets, and both restart, the dependent only once the
    // target's new process is ready again.
    d.exit(d.pid_of(0), ExitStatus::Signal(libc::SIGSEGV), true, "");
    d.all_exit(libc::SIGQUIT);
    assert_eq!(d.core.state(), HostState::Running);
    d.ev(Event::Deadline);
    assert_eq!(d.state_of(0), WorkerState::Running);
    assert_eq!(shown(&d, 0), WorkerState::Starting);
    assert_eq!(d.state_of(1), WorkerState::WaitingRestart);
    assert_eq!(d.core.waiting_for(d.key(1)).as_deref(), Some("worker a ready"));
    ready(&mut d, 0);
    assert_eq!(launches(&d.ev(Event::Deadline)), 1);
    assert_eq!(d.state_of(1), WorkerState::Running);
}
