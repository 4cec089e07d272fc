//! A spare handed a client (issue 15: client spares): killed before it claimed the client's slot
//! it ends only that client, in every state where children run unsignalled; killed after, it is
//! a client child's crash like any other.

use super::*;
use crate::supervisor::core::rows::Step;

/// The spare of `kids` handed a client, as the loop records it: the spare's record becomes a
/// client child's that still holds the spare's slot.
fn hand_a_client(d: &mut Driver, kids: &Kids) {
    let spare_slot = d.core.child(kids.spare).expect("the spare runs").slot;
    let client = d.pool.acquire(ChildKind::Client).expect("a client slot");
    d.ev(Event::ChildStarted {
        pid: kids.spare,
        slot: client,
    });
    d.core.child_mut(kids.spare).expect("its record").spare = Some(spare_slot);
}

pub(super) fn a_spare_killed_before_taking_its_client_ends_only_that_client() {
    for step in [
        Step::SegmentInit,
        Step::Startup,
        Step::Consistent,
        Step::Running,
        Step::SmartWaiting,
    ] {
        let (mut d, kids) = at(step, Progress::Running, settings());
        hand_a_client(&mut d, &kids);
        let a = d.exit(kids.spare, ExitStatus::Signal(9), false, "");
        assert!(logged(&a, "before taking the client it was handed"), "{step:?}");
        assert_ne!(d.core.state(), HostState::Recovering, "{step:?}: not a crash");

        // Claimed (its dead-man flag set), the same death is a crash.
        let (mut d, kids) = at(step, Progress::Running, settings());
        hand_a_client(&mut d, &kids);
        let a = d.exit(kids.spare, ExitStatus::Signal(9), true, "");
        assert!(!logged(&a, "before taking the client"), "{step:?}");
        assert_eq!(d.core.state() == HostState::Recovering, up(step), "{step:?}: a crash");
    }
}

/// A spare handed a client just before the host signalled its children dies of the host's own
/// signal: that is the stop (or the recovery) taking it, neither a crash nor the spare's fault.
pub(super) fn a_handed_spare_the_host_signalled_is_stopped_not_blamed() {
    for (step, sig) in [
        (Step::Signalled, 15),
        (Step::StopKilled, 9),
        (Step::Quitting, 3),
        (Step::RecoverKilled, 9),
    ] {
        // Handed its client while the host still ran, then signalled with the rest.
        let (mut d, kids) = at(Step::Running, Progress::Running, settings());
        hand_a_client(&mut d, &kids);
        match step {
            Step::Signalled | Step::StopKilled => {
                d.ev(Event::Stop {
                    mode: StopMode::Fast,
                    why: "SIGINT",
                });
                if step == Step::StopKilled {
                    d.pass(settings().shutdown_timeout);
                }
            }
            _ => {
                d.exit(d.pid_of(0), ExitStatus::Signal(11), false, "");
                if step == Step::RecoverKilled {
                    d.pass(settings().crash_kill_timeout);
                }
            }
        }
        assert_eq!(Step::of(d.core.phase()), step);
        let a = d.exit(kids.spare, ExitStatus::Signal(sig), false, "");
        assert!(!logged(&a, "before taking the client"), "{step:?}: {a:?}");
        assert!(!logged(&a, "crashed"), "{step:?}: {a:?}");
        assert_eq!(Step::of(d.core.phase()), step, "{step:?}: unchanged");
    }
}
