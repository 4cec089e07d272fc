//! The core's answer to the crash of an isolated worker (issue 15: isolated): the worker alone
//! restarts per its policy, and the host is never reset.
//!
//! Runs in: the supervisor, inside [`Core`], from [`Core::child_exited`]'s worker branch.
//!
//! Why no reset: an isolated worker's process maps the segment read-only and holds no dead-man
//! flag and no lock, so whatever it did before it died cannot have left shared memory
//! inconsistent: a wild store into the segment is exactly what killed it (SIGSEGV). Its crash is
//! a failure like exit 1 and counts against its crash-loop limit; under `never` it fails. Whether
//! a worker is isolated comes from the supervisor's own registry, never from the segment.
//!
//! Not here: evidence against the segment that an isolated worker cannot have made (its child
//! slot marked active, or exit 3 with a header the supervisor finds corrupt too). `worker_exited`
//! sends those down the ordinary reset path.
//!
//! Isolated handlers (issue 15: isolated handlers): a client child of an isolated handler maps
//! the segment read-only too, so its crash ends only its own connection, with the same
//! exception for evidence against the segment. A client child has no restart policy: the
//! client whose session it served sees its socket close, and every other session goes on.

use std::time::Duration;

use super::policy::RestartDecision;
use super::rows::{self, State, Took};
use super::{Action, Actions, Core, Level, Now, Row, SlotCopy, WorkerKey};
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::registry::RestartPolicy;
use crate::supervisor::pool::ChildSlotId;

/// What an isolated child's reap shows that the child cannot have made, so evidence against
/// the segment: an isolated child never writes its slot (it maps it read-only), so a slot
/// marked active was scribbled by an attached process; and a header the supervisor itself finds
/// corrupt is corrupt for all.
pub(super) fn evidence(slot: &SlotCopy) -> Option<&'static str> {
    match (slot.header_corrupt, slot.dead_man) {
        (true, _) => Some("the supervisor found the segment header corrupt too"),
        (false, true) => {
            Some("its child slot was marked active, which an isolated process cannot write: another process wrote it")
        }
        (false, false) => None,
    }
}

impl Core {
    /// The isolated worker `key` (pid `pid`, in state `from` until now) crashed with `status`
    /// after a run of `ran_for`; `reason` is what status shows. Its run record already says it
    /// exited.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn isolated_crashed(
        &mut self,
        key: WorkerKey,
        pid: i32,
        status: ExitStatus,
        reason: String,
        from: State,
        ran_for: Duration,
        now: Now,
        out: &mut Actions,
    ) -> Took {
        let Some(w) = self.worker_mut(key) else {
            return self.took(Row::StaleKey);
        };
        let (name, policy, crash_loop) = (w.spec.name.clone(), w.spec.restart, w.spec.crash_loop);
        let r = &mut w.run;
        let took = if matches!(policy, RestartPolicy::Never) || r.terminated {
            r.state = WorkerState::Failed;
            out.push(Action::Log(
                Level::Error,
                format!("isolated worker {name} (pid {pid}) {reason}; not restarting (no reset: it crashed alone)"),
            ));
            rows::fired(Row::IsolatedCrashFails, from)
        } else {
            match r.tracker.decide(policy, crash_loop, now.mono, ran_for) {
                RestartDecision::After(d) => {
                    r.restart_in(d, now);
                    out.push(Action::Log(
                        Level::Warn,
                        format!(
                            "isolated worker {name} (pid {pid}) {reason}; restarting it alone in {} (no reset)",
                            crate::shared::time::format_duration(d)
                        ),
                    ));
                    rows::fired(Row::IsolatedCrashRestarts, from)
                }
                RestartDecision::GiveUp(why) => {
                    let full = r.give_up(status, now, &why, &reason);
                    out.push(Action::Log(
                        Level::Error,
                        format!("isolated worker {name} (pid {pid}) failed: {full}; not restarting (no reset)"),
                    ));
                    rows::fired(Row::IsolatedCrashGivesUp, from)
                }
            }
        };
        self.publish_or_retire(key, out);
        took
    }
}

// issue 15: isolated handlers
impl Core {
    /// Tracks the client child `pid` of an isolated handler, started in `slot` (signalled at
    /// once if a shutdown has signalled the rest, as any child started then).
    pub(super) fn isolated_client_started(&mut self, pid: i32, slot: ChildSlotId, out: &mut Actions) -> Took {
        self.child_started(pid, slot, true, out)
    }

    /// The client child `pid` of an isolated handler crashed with `status`: only its connection
    /// ends, unless its reap shows evidence against the segment.
    pub(super) fn isolated_client_crashed(
        &mut self,
        pid: i32,
        status: ExitStatus,
        slot: &SlotCopy,
        now: Now,
        out: &mut Actions,
    ) -> Took {
        let what = format!(
            "client child (pid {pid}) of an isolated handler crashed: {status}{}",
            super::exits::corrupt_note(status)
        );
        if let Some(e) = evidence(slot) {
            let took = self.took(Row::IsolatedClientEvidence);
            self.crash(&format!("{what} ({e})"), now, out);
            return took;
        }
        let took = self.took(Row::IsolatedClientCrashed);
        out.push(Action::Log(
            Level::Warn,
            format!("{what}; only its connection ends (no reset: it crashed alone)"),
        ));
        took
    }
}
