//! Reaping, and the processes the supervisor adopts as child subreaper.
//!
//! Runs in: the supervisor. `waitpid` and the listing of its own children happen here; what an
//! exit means is the core's (an [`Event::ChildExited`] with a bounded copy of the child's slot);
//! which adopted processes live is the core's too, fed by [`Event::Adopted`] and
//! [`Event::AdoptedExited`]. This module keeps only what names an adopted process in the log:
//! which processes exited since the last scan.
//!
//! A process a child leaves behind becomes the supervisor's child. After a reap that reaped
//! something (rate-limited when it has many children) it records the children it did not start,
//! attributed to the one process reaped since the previous scan, if there was one.

use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::core::policy::{classify, Outcome};
use super::core::{Actions, Event, SlotCopy, WorkerKey};
use super::{now, Supervisor};
use crate::shared::handoff::ChildKind;
use crate::shared::lifecycle::ExitStatus;

/// A process the supervisor reaped, as an adopted process found after it is attributed to it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Origin {
    Child {
        pid: i32,
        kind: ChildKind,
        worker: Option<WorkerKey>,
    },
    Adopted {
        pid: i32,
    },
}

/// The processes reaped since the last scan for adopted ones: how many, the first and the last
/// (kept without allocating: reaping a thousand workers must not cost a thousand strings).
#[derive(Debug, Default)]
pub(super) struct Exited {
    n: usize,
    first: Option<Origin>,
    last: Option<Origin>,
}

impl Exited {
    fn push(&mut self, o: Origin) {
        self.n += 1;
        if self.first.is_none() {
            self.first = Some(o);
        } else {
            self.last = Some(o);
        }
    }

    /// Whom a process adopted now is attributed to: the one process that could have started it
    /// (a child running plugin code, or an adopted process) reaped since the last scan, or, when
    /// none or several were, a note saying the origin is unknown.
    fn attribution(&self, name: impl Fn(Origin) -> String) -> String {
        match (self.n, self.first, self.last) {
            (1, Some(one), _) => name(one),
            (n, Some(first), Some(last)) => format!(
                "one of {n} processes that exited together ({} ... {})",
                name(first),
                name(last)
            ),
            _ => "an unknown process".to_owned(),
        }
    }
}

/// How often at most the supervisor lists its children to find adopted ones when it has many.
/// Listing them costs about 0.7 ms with 1000 children (the kernel walks its list for every
/// entry), so a mass exit (a shutdown, a crash reset) pays for one listing per interval, not one
/// per reap. With up to [`ADOPTION_SCAN_EAGER`] children a listing costs microseconds and follows
/// every reap, which keeps the attribution exact.
const ADOPTION_SCAN_INTERVAL: Duration = Duration::from_millis(100);
const ADOPTION_SCAN_EAGER: usize = 64;

impl Supervisor {
    pub(super) fn reap(&mut self) {
        let mut reaped = false;
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), ExitStatus::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            };
            reaped = true;
            if let Some(child) = self.core.child(pid).copied() {
                // A control connection or a control socket's dead-end runs only the host's own
                // code and starts no process: its exit next to a worker's must not blur the
                // attribution. A listener's dead-end runs the handler's rejection writer, and
                // counts.
                if self.pool.runs_plugin_code(child.slot) {
                    self.exited.push(Origin::Child {
                        pid,
                        kind: child.kind,
                        worker: child.worker,
                    });
                }
                let mut slot = self.release_child(pid, &child);
                // issue 15: isolated
                // Exit 3 claims a corrupt segment; plugin code may exit 3 too. The supervisor's
                // own look at the header tells a claim from the fact.
                if status == ExitStatus::Code(crate::shared::shmem::EXIT_CORRUPT_SEGMENT) {
                    slot.header_corrupt = self
                        .segment
                        .check_header(self.core.generation(), std::process::id() as i32)
                        .is_err();
                }
                if child.kind == ChildKind::Startup && classify(status, slot.dead_man, child.signalled) == Outcome::Done
                {
                    // A hook may have declared the segment ready or the host consistent just
                    // before the child ended.
                    self.check_segment_ready();
                    self.check_consistent();
                }
                self.feed(Event::ChildExited { pid, status, slot });
                continue;
            }
            let from = match self.core.adopted_from(pid) {
                Some(f) => f.to_owned(),
                // Adopted and gone before a scan saw it.
                None => self.exited.attribution(|o| self.name(o)),
            };
            tracing::info!("adopted process {pid} (left behind by {from}) exited with {status}");
            self.exited.push(Origin::Adopted { pid });
            self.feed(Event::AdoptedExited { pid });
        }
        if reaped && self.scan_at.is_none() {
            let now = Instant::now();
            let interval = if self.core.n_children() + self.core.n_adopted() <= ADOPTION_SCAN_EAGER {
                Duration::ZERO
            } else {
                ADOPTION_SCAN_INTERVAL
            };
            self.scan_at = Some(self.last_scan.map_or(now, |t| (t + interval).max(now)));
        }
        if self.scan_at.is_some_and(|t| Instant::now() >= t) {
            self.with_actions(|sup, out| sup.scan_adopted(out));
        }
    }

    /// Copies what a reaped child left in its slot (bounded, untrusted) and frees the slots and
    /// the loop's own records of it.
    fn release_child(&mut self, pid: i32, child: &super::core::Child) -> SlotCopy {
        let slot = match child.slot.child_slot() {
            Some(s) => {
                let report = self.segment.child_slot(s).report();
                SlotCopy {
                    dead_man: report.dead_man(),
                    reason: report.reason,
                    launch_us: report.launch_us,
                    header_corrupt: false,
                }
            }
            None => SlotCopy::default(),
        };
        if child.kind == ChildKind::Spare {
            // issue 15: client spares: its channel, if any, goes with its entry.
            self.spares.retain(|w| w.pid != pid);
        }
        self.free_slot(child.slot);
        if let Some(ss) = child.spare {
            self.free_slot(ss);
            self.handoffs.retain(|p| *p != pid);
        }
        slot
    }

    /// How a reaped process is named where an adopted process is attributed to it.
    fn name(&self, o: Origin) -> String {
        match o {
            Origin::Child {
                pid, worker: Some(k), ..
            } if self.core.worker(k).is_some() => {
                format!(
                    "worker {} (pid {pid})",
                    self.core.worker(k).map_or("", |w| &w.spec.name)
                )
            }
            Origin::Child { pid, kind, .. } => format!("{} child (pid {pid})", kind.info().name),
            Origin::Adopted { pid } => format!("adopted process {pid}"),
        }
    }

    /// Tells the core about every child of this process that is neither a child it started nor
    /// one it already adopted, attributed to what was reaped since the last scan. The core
    /// signals one found during a shutdown that has signalled the rest.
    pub(super) fn scan_adopted(&mut self, out: &mut Actions) {
        let from = self.exited.attribution(|o| self.name(o));
        self.exited = Exited::default();
        self.scan_at = None;
        self.last_scan = Some(Instant::now());
        for pid in crate::sys::own_children() {
            if self.core.child(pid).is_none() && self.core.adopted_from(pid).is_none() {
                tracing::info!("adopted process {pid}, left behind by {from}");
                self.core.handle(
                    Event::Adopted {
                        pid,
                        from: from.clone(),
                    },
                    now(),
                    out,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adopted_process_is_attributed_only_when_one_process_exited() {
        let name = |o: Origin| match o {
            Origin::Child { pid, .. } => format!("worker (pid {pid})"),
            Origin::Adopted { pid } => format!("adopted process {pid}"),
        };
        let mut e = Exited::default();
        assert_eq!(e.attribution(name), "an unknown process");
        let w = |pid| Origin::Child {
            pid,
            kind: ChildKind::Worker,
            worker: Some(WorkerKey { slot: 0, generation: 1 }),
        };
        e.push(w(7));
        assert_eq!(e.attribution(name), "worker (pid 7)");
        e.push(Origin::Adopted { pid: 8 });
        e.push(w(9));
        assert_eq!(
            e.attribution(name),
            "one of 3 processes that exited together (worker (pid 7) ... worker (pid 9))"
        );
    }
}
