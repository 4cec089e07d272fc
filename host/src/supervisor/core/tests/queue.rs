//! The dynamic-worker queue and reservations (issue 14: queue): admission with no and with
//! some slots reserved against a full pool; a queued request served in order when a slot frees,
//! skipping what admission still refuses; expiry at the queue timeout (and its deadline in
//! `next_deadline`); a requester that exited; the host leaving `up` with requests queued; an
//! adopting answer that found its request cancelled; a dynamic worker whose launch failed.

use std::collections::BTreeMap;

use super::states::at;
use super::*;
use crate::shared::handles::Answer;
use crate::shared::registry::{RestartPolicy, StartTime};

const UP_WITH_WORKERS: [Step; 3] = [Step::Startup, Step::Consistent, Step::Running];
const NOT_UP: [Step; 5] = [
    Step::Quitting,
    Step::RecoverKilled,
    Step::SmartWaiting,
    Step::Signalled,
    Step::StopKilled,
];

fn of(name: &str, plugin: &str) -> Box<WorkerSpec> {
    let mut s = spec(name, RestartPolicy::Never, StartTime::HostStart);
    s.plugin = plugin.to_owned();
    Box::new(s)
}

fn ask(d: &mut Driver, from: u32, seq: u32, name: &str, plugin: &str, queue: Option<Duration>) -> Vec<Action> {
    d.ev(Event::Request {
        from,
        seq,
        spec: of(name, plugin),
        queue_timeout: queue,
    })
}

fn answers(a: &[Action]) -> Vec<(u32, u32, Answer)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Answer { to, seq, answer } => Some((*to, *seq, answer.clone())),
            _ => None,
        })
        .collect()
}

fn adopted_key(a: &[Action]) -> WorkerKey {
    match answers(a).as_slice() {
        [(_, _, Answer::Adopted { slot, generation })] => WorkerKey {
            slot: *slot,
            generation: *generation,
        },
        other => panic!("not adopted: {other:?}"),
    }
}

fn reserve(d: &mut Driver, plugin: &str, n: u32) {
    d.core.set_reserved(BTreeMap::from([(plugin.to_owned(), n)]));
}

/// Frees `key`'s slot as the loop does: a terminate (and, if it runs, its exit) retires it, and
/// the loop removes it.
fn free(d: &mut Driver, key: WorkerKey) {
    let mut a = d.ev(Event::Terminate { key });
    if let Some(pid) = d.core.worker(key).and_then(|w| w.run.pid) {
        a = d.exit(pid, ExitStatus::Code(0), false, "");
    }
    assert!(a.contains(&Action::Retire(key)), "{a:?}");
    d.core.remove_worker(key).unwrap();
}

pub(super) fn admission_keeps_reserved_slots_for_their_plugin() {
    // Two dynamic slots, none reserved: one plugin may take both.
    let mut d = Driver::started(vec![spec("s", after(SEC), StartTime::HostStart)]);
    adopted_key(&ask(&mut d, 0, 1, "a1", "a", None));
    adopted_key(&ask(&mut d, 0, 2, "a2", "a", None));
    let a = ask(&mut d, 0, 3, "b1", "b", None);
    assert_eq!(answers(&a), vec![(0, 3, Answer::NoFreeSlot { used: 2, max: 2 })]);
    // One reserved for b: a gets the other one only, and its refusal counts b's slot.
    let mut d = Driver::started(vec![spec("s", after(SEC), StartTime::HostStart)]);
    reserve(&mut d, "b", 1);
    adopted_key(&ask(&mut d, 0, 1, "a1", "a", None));
    let a = ask(&mut d, 0, 2, "a2", "a", None);
    assert_eq!(answers(&a), vec![(0, 2, Answer::NoFreeSlot { used: 2, max: 2 })]);
    assert_eq!(d.core.workers().count(), 2, "refused: nothing added");
    // b, under its reservation, always gets its slot; then every slot is taken.
    adopted_key(&ask(&mut d, 0, 3, "b1", "b", None));
    let a = ask(&mut d, 0, 4, "b2", "b", None);
    assert_eq!(answers(&a), vec![(0, 4, Answer::NoFreeSlot { used: 2, max: 2 })]);
    // b may go past its reservation into the shared slots while a does not use them.
    let mut d = Driver::started(vec![spec("s", after(SEC), StartTime::HostStart)]);
    reserve(&mut d, "b", 1);
    adopted_key(&ask(&mut d, 0, 1, "b1", "b", None));
    adopted_key(&ask(&mut d, 0, 2, "b2", "b", None));
}

pub(super) fn a_freed_slot_serves_the_queue_in_order_skipping_what_admission_refuses() {
    for step in UP_WITH_WORKERS {
        let (mut d, _) = at(step, Progress::Running, settings());
        reserve(&mut d, "b", 1);
        let x = adopted_key(&ask(&mut d, 0, 1, "x", "a", None));
        let y = adopted_key(&ask(&mut d, 0, 2, "y", "b", None));
        // Full: queued, not answered.
        let a = ask(&mut d, 0, 3, "qa", "a", Some(10 * SEC));
        assert!(answers(&a).is_empty(), "{step:?}: {a:?}");
        let a = ask(&mut d, 1, 4, "qb", "b", Some(10 * SEC));
        assert!(answers(&a).is_empty(), "{step:?}: {a:?}");
        assert_eq!(d.core.queued(), 2);
        // The loop leaves a queued request alone on later wake-ups.
        assert!(d.core.is_queued(0, 3) && d.core.is_queued(1, 4));
        assert!(!d.core.is_queued(0, 2) && !d.core.is_queued(1, 3));
        // A deadline with nothing freed changes nothing.
        assert!(answers(&d.ev(Event::Deadline)).is_empty());
        // b's slot frees: qa, first in line, may not take b's reserved slot; qb, behind it, is
        // served.
        free(&mut d, y);
        assert_eq!(d.core.next_deadline(d.now), Some(d.now.mono), "{step:?}: servable now");
        let a = d.ev(Event::Deadline);
        let qb = adopted_key(&a);
        assert_eq!(d.core.worker(qb).unwrap().spec.name, "qb");
        assert_eq!(answers(&a)[0].0, 1, "answered to its requester");
        assert_eq!(d.core.queued(), 1);
        // Published before the answer; launched at the next deadline, which is now.
        assert_eq!(launches(&a), 0);
        assert_eq!(d.core.next_deadline(d.now), Some(d.now.mono));
        assert_eq!(launches(&d.ev(Event::Deadline)), 1);
        // a's own slot frees: qa is served.
        free(&mut d, x);
        let qa = adopted_key(&d.ev(Event::Deadline));
        assert_eq!(d.core.worker(qa).unwrap().spec.name, "qa");
        assert_eq!(d.core.queued(), 0);
    }
}

pub(super) fn a_queued_request_expires_at_its_timeout_and_its_deadline_wakes_the_loop() {
    for step in UP_WITH_WORKERS {
        let (mut d, _) = at(step, Progress::Running, settings());
        adopted_key(&ask(&mut d, 0, 1, "x", "a", None));
        adopted_key(&ask(&mut d, 0, 2, "y", "a", None));
        assert_eq!(launches(&d.ev(Event::Deadline)), 2);
        let t = Duration::from_millis(200);
        ask(&mut d, 1, 3, "late", "a", Some(t));
        let due = d.now.mono + t;
        assert_eq!(d.core.next_deadline(d.now), Some(due), "{step:?}");
        assert!(answers(&d.pass(t / 2)).is_empty());
        let a = d.pass(t / 2);
        assert_eq!(
            answers(&a),
            vec![(1, 3, Answer::NoFreeSlot { used: 2, max: 2 })],
            "{step:?}"
        );
        assert_eq!(d.core.queued(), 0);
        assert_eq!(d.core.next_deadline(d.now), None);
        // A zero timeout is no queue: refused at once.
        let a = ask(&mut d, 1, 4, "now", "a", Some(Duration::ZERO));
        assert_eq!(answers(&a), vec![(1, 4, Answer::NoFreeSlot { used: 2, max: 2 })]);
        // A slot freed by the time the deadline is handled serves the request rather than
        // expiring it.
        ask(&mut d, 1, 5, "edge", "a", Some(t));
        let x = d.core.workers().find(|w| w.spec.name == "x").unwrap().key;
        free(&mut d, x);
        let a = d.pass(t);
        assert_eq!(d.core.worker(adopted_key(&a)).unwrap().spec.name, "edge", "{step:?}");
    }
}

pub(super) fn a_queued_request_whose_requester_exited_or_asked_again_is_dropped() {
    for step in UP_WITH_WORKERS {
        let (mut d, _) = at(step, Progress::Running, settings());
        let x = adopted_key(&ask(&mut d, 0, 1, "x", "a", None));
        adopted_key(&ask(&mut d, 0, 2, "y", "a", None));
        ask(&mut d, 1, 3, "gone", "a", Some(10 * SEC));
        // The requester exits (and will restart as another process): nobody waits any more.
        d.exit(d.pid_of(1), ExitStatus::Code(1), false, "");
        free(&mut d, x);
        let a = d.ev(Event::Deadline);
        assert!(answers(&a).is_empty(), "{step:?}: {a:?}");
        assert_eq!(d.core.queued(), 0);
        assert!(d.core.workers().all(|w| w.spec.name != "gone"));
        // A requester asking again replaces its older entry (which it gave up on).
        adopted_key(&ask(&mut d, 0, 4, "z", "a", None));
        ask(&mut d, 0, 5, "first", "a", Some(10 * SEC));
        ask(&mut d, 0, 6, "second", "a", Some(10 * SEC));
        assert_eq!(d.core.queued(), 1);
    }
}

pub(super) fn requests_queued_when_the_host_stops_being_up_are_answered_not_running() {
    for step in NOT_UP {
        let (mut d, kids) = at(Step::Running, Progress::Running, settings());
        adopted_key(&ask(&mut d, 0, 1, "x", "a", None));
        adopted_key(&ask(&mut d, 0, 2, "y", "a", None));
        ask(&mut d, 1, 3, "q", "a", Some(60 * SEC));
        let _ = kids;
        let a = match step {
            Step::Quitting => {
                d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
                d.ev(Event::Deadline)
            }
            Step::RecoverKilled => {
                d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
                d.pass(settings().crash_kill_timeout)
            }
            Step::SmartWaiting => {
                d.ev(Event::Stop {
                    mode: StopMode::Smart,
                    why: "SIGTERM",
                });
                d.ev(Event::Deadline)
            }
            Step::Signalled => {
                d.ev(Event::Stop {
                    mode: StopMode::Fast,
                    why: "SIGINT",
                });
                d.ev(Event::Deadline)
            }
            _ => {
                d.ev(Event::Stop {
                    mode: StopMode::Fast,
                    why: "SIGINT",
                });
                d.pass(settings().shutdown_timeout)
            }
        };
        assert_eq!(Step::of(d.core.phase()), step);
        assert_eq!(answers(&a), vec![(1, 3, Answer::HostNotRunning)], "{step:?}");
        assert_eq!(d.core.queued(), 0);
    }
}

pub(super) fn an_adopted_worker_whose_request_was_cancelled_is_stopped_before_it_runs() {
    let mut d = Driver::started(vec![spec("s", after(SEC), StartTime::HostStart)]);
    let x = adopted_key(&ask(&mut d, 0, 1, "x", "a", None));
    // The loop's answer found CANCELLED: the requester's deadline passed in that instant.
    let a = d.ev(Event::RequestCancelled { key: x });
    let w = d.core.worker(x).unwrap();
    assert_eq!(w.run.state, WorkerState::Stopped);
    assert!(
        w.run.last_exit.as_ref().unwrap().2.contains("gave up"),
        "{:?}",
        w.run.last_exit
    );
    assert!(a.contains(&Action::Retire(x)), "{a:?}");
    d.core.remove_worker(x).unwrap();
    assert_eq!(launches(&d.ev(Event::Deadline)), 0, "never launched");
    // A key the table no longer has changes nothing.
    assert!(d.ev(Event::RequestCancelled { key: x }).is_empty());
    // Served from the queue, then cancelled before its launch at the next deadline: the same.
    adopted_key(&ask(&mut d, 0, 2, "y", "a", None));
    let z = adopted_key(&ask(&mut d, 0, 3, "z", "a", None));
    ask(&mut d, 0, 4, "q", "a", Some(10 * SEC));
    free(&mut d, z);
    let a = d.ev(Event::Deadline);
    assert_eq!(launches(&a), 1, "y only: q launches at the next deadline");
    let q = adopted_key(&a);
    let a = d.ev(Event::RequestCancelled { key: q });
    assert!(a.contains(&Action::Retire(q)), "{a:?}");
    d.core.remove_worker(q).unwrap();
    assert_eq!(launches(&d.ev(Event::Deadline)), 0);
}

pub(super) fn a_dynamic_launch_failure_stops_it_with_the_errno_and_frees_the_slot() {
    let mut d = Driver::started(vec![spec("s", after(SEC), StartTime::HostStart)]);
    let x = adopted_key(&ask(&mut d, 0, 1, "x", "a", None));
    d.launch_fails = true;
    let a = d.ev(Event::Deadline);
    let w = d.core.worker(x).unwrap();
    assert_eq!(w.run.state, WorkerState::Stopped);
    assert_eq!(w.run.launch_errno, Some(libc::EAGAIN));
    assert!(w.run.last_exit.as_ref().unwrap().2.starts_with("launch failed: "));
    assert!(a.contains(&Action::Retire(x)), "retired at once: {a:?}");
    d.core.remove_worker(x).unwrap();
    // A dynamic worker waiting to restart whose relaunch fails: the same, no retry.
    d.launch_fails = false;
    let mut s = *of("again", "a");
    s.restart = after(SEC);
    let y = adopted_key(&d.ev(Event::Request {
        from: 0,
        seq: 2,
        spec: Box::new(s),
        queue_timeout: None,
    }));
    d.ev(Event::Deadline);
    let pid = d.core.worker(y).unwrap().run.pid.unwrap();
    d.exit(pid, ExitStatus::Code(1), false, "");
    assert_eq!(d.core.worker(y).unwrap().run.state, WorkerState::WaitingRestart);
    d.launch_fails = true;
    let a = d.pass(SEC);
    assert_eq!(d.core.worker(y).unwrap().run.state, WorkerState::Stopped);
    assert!(a.contains(&Action::Retire(y)), "{a:?}");
    // A static worker keeps its retry.
    d.exit(d.pid_of(0), ExitStatus::Code(1), false, "");
    d.pass(SEC);
    assert_eq!(d.state_of(0), WorkerState::WaitingRestart);
    // A failure of the loop's own, without an errno (its slot still held), is retried, dynamic
    // or not: it passes.
    d.launch_fails = false;
    let z = adopted_key(&ask(&mut d, 0, 3, "z", "a", None));
    let busy = std::io::Error::other("worker slot 2 is still in use");
    d.ev(Event::LaunchFailed { key: z, error: &busy });
    assert_eq!(d.core.worker(z).unwrap().run.state, WorkerState::WaitingRestart);
    assert_eq!(d.core.worker(z).unwrap().run.launch_errno, None);
}

// review: launch queue
pub(super) fn a_new_request_never_takes_a_freed_slot_ahead_of_the_queue() {
    for step in UP_WITH_WORKERS {
        let (mut d, _) = at(step, Progress::Running, settings());
        let x = adopted_key(&ask(&mut d, 0, 1, "x", "a", None));
        adopted_key(&ask(&mut d, 0, 2, "y", "a", None));
        let a = ask(&mut d, 1, 3, "queued", "a", Some(10 * SEC));
        assert!(answers(&a).is_empty(), "{step:?}: {a:?}");
        // x's slot frees, and a new request comes before the loop's deadline: the queued one is
        // served with the freed slot, the newcomer waits behind (or is refused without a queue).
        free(&mut d, x);
        let a = ask(&mut d, 2, 4, "newcomer", "a", Some(10 * SEC));
        let got = answers(&a);
        assert_eq!(got.len(), 1, "{step:?}: {a:?}");
        assert_eq!(got[0].0, 1, "{step:?}: answered to the queued requester");
        let k = adopted_key(&a);
        assert_eq!(d.core.worker(k).unwrap().spec.name, "queued", "{step:?}");
        assert!(d.core.is_queued(2, 4), "{step:?}");
        let a = ask(&mut d, 0, 5, "no-queue", "a", None);
        assert_eq!(
            answers(&a),
            vec![(0, 5, Answer::NoFreeSlot { used: 2, max: 2 })],
            "{step:?}"
        );
    }
}
