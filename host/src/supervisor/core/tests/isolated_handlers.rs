//! Isolated handlers (issue 15: isolated handlers): a crash of an isolated handler's client
//! child ends only that connection in every state where a child can crash unsignalled (no
//! reset, nobody signalled, the other sessions tracked still); evidence against the segment from
//! it still resets; an attached handler's client child still resets the host.
//!
//! Client children take slots of their own kind, which the driver's pool does not have: they
//! come from a pool of client slots kept here, given back before the exit is fed, as the loop
//! does.

use super::*;
use crate::supervisor::core::rows::Step;

/// Client slots for the scenarios' client children.
struct Clients {
    pool: ChildSlotPool,
    slots: Vec<(i32, ChildSlotId)>,
}

impl Clients {
    fn new() -> Clients {
        let layout = Layout::compute_with_clients(&Registry::default(), 2, 2, 4);
        Clients {
            pool: ChildSlotPool::new(&layout, 1, true).unwrap(),
            slots: Vec::new(),
        }
    }

    /// Starts a client child, of an isolated handler if `isolated`.
    fn start(&mut self, d: &mut Driver, isolated: bool) -> i32 {
        let pid = d.pid();
        let slot = self.pool.acquire(ChildKind::Client).expect("a free client slot");
        self.slots.push((pid, slot));
        match isolated {
            true => d.ev(Event::IsolatedClientStarted { pid, slot }),
            false => d.ev(Event::ChildStarted { pid, slot }),
        };
        pid
    }

    fn exit(&mut self, d: &mut Driver, pid: i32, status: ExitStatus, slot: SlotCopy) -> Vec<Action> {
        let i = self.slots.iter().position(|(p, _)| *p == pid).expect("a client child");
        self.pool.release(self.slots.remove(i).1).unwrap();
        d.ev(Event::ChildExited { pid, status, slot })
    }
}

const UNSIGNALLED: [Step; 5] = [
    Step::SegmentInit,
    Step::Startup,
    Step::Consistent,
    Step::Running,
    Step::SmartWaiting,
];

pub(super) fn an_isolated_handlers_crash_ends_only_its_connection_in_every_state() {
    for step in UNSIGNALLED {
        for status in [
            ExitStatus::Signal(libc::SIGSEGV),
            ExitStatus::Signal(libc::SIGABRT),
            ExitStatus::Signal(libc::SIGKILL),
            ExitStatus::Code(3),
            ExitStatus::Code(7),
        ] {
            let (mut d, _) = at(step, Progress::Running, settings());
            let mut c = Clients::new();
            let (crasher, other, attached) = (c.start(&mut d, true), c.start(&mut d, true), c.start(&mut d, false));
            let state = d.core.state();
            let a = c.exit(&mut d, crasher, status, SlotCopy::default());
            assert!(
                logged(&a, "only its connection ends (no reset"),
                "{step:?} {status}: {a:?}"
            );
            assert!(signals(&a).is_empty(), "{step:?} {status}: nobody is signalled: {a:?}");
            assert_eq!(d.core.state(), state, "{step:?} {status}");
            assert_eq!(d.core.generation(), 1, "{step:?} {status}: the segment is kept");
            for pid in [other, attached] {
                assert!(
                    d.core.child(pid).is_some(),
                    "{step:?} {status}: the other sessions go on"
                );
            }
            // A clean end of one is no crash either.
            let a = c.exit(&mut d, other, ExitStatus::Code(0), SlotCopy::default());
            assert!(signals(&a).is_empty() && !logged(&a, "crashed"), "{a:?}");
        }
    }
}

/// Its slot marked active (it never writes its slot) or exit 3 with a header the supervisor
/// finds corrupt too: evidence against the segment, which resets the host as any crash does.
pub(super) fn evidence_against_the_segment_from_an_isolated_handler_resets_the_host() {
    let evidence = segment_evidence(ExitStatus::Signal(libc::SIGSEGV));
    for step in UNSIGNALLED {
        for (status, slot, says) in evidence.clone() {
            let (mut d, _) = at(step, Progress::Running, settings());
            let mut c = Clients::new();
            let (crasher, other) = (c.start(&mut d, true), c.start(&mut d, true));
            let a = c.exit(&mut d, crasher, status, slot);
            assert!(!logged(&a, "no reset"), "{step:?} {status}: {a:?}");
            if up(step) {
                assert!(logged(&a, says), "{step:?} {status}: {a:?}");
                assert_eq!(d.core.state(), HostState::Recovering, "{step:?} {status}");
                assert!(signals(&a).contains(&(other, Signal::SIGQUIT)), "{step:?}: {a:?}");
            } else {
                // A smart wait ignores a crash, as for any child (the host stops anyway).
                assert_eq!(d.core.state(), HostState::Stopping, "{step:?} {status}");
            }
        }
    }
}

pub(super) fn an_attached_handlers_crash_still_resets_the_host() {
    let (mut d, _) = at(Step::Running, Progress::Running, settings());
    let mut c = Clients::new();
    let (attached, isolated) = (c.start(&mut d, false), c.start(&mut d, true));
    let a = c.exit(&mut d, attached, ExitStatus::Signal(libc::SIGSEGV), SlotCopy::default());
    assert!(logged(&a, "client child (pid"), "{a:?}");
    assert!(!logged(&a, "no reset"), "{a:?}");
    assert_eq!(d.core.state(), HostState::Recovering);
    assert!(
        signals(&a).contains(&(isolated, Signal::SIGQUIT)),
        "the isolated sessions end with the reset too: {a:?}"
    );
}
