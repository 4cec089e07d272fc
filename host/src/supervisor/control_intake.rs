//! Dynamic workers launched over the control socket (issue 14: control): the intake of
//! connection children's requests, and who launched each dynamic worker.
//!
//! Runs in: the supervisor, in its event loop (on SIGUSR1, beside the workers' intake).
//!
//! Owns: `Supervisor::launchers`, the launcher of every dynamic worker in the table (a worker's
//! name, or [`CONTROL`]), which the loop writes into the worker slot with the registration so
//! that `status` can show it, and writes again into every new segment after a crash reset.
//!
//! Invariants: a connection child's request slot has its child slot's index; the requester is the
//! connection child the core's table has in that slot, never what the segment says; a request
//! names a preloaded plugin, and the entry's library is that plugin's own, whatever the request
//! carried (every byte of it is untrusted, as a worker's request is).

use super::core::{Event, WorkerKey};
use super::Supervisor;
use crate::shared::handles::{self, Answer};
use crate::shared::handoff::ChildKind;
use crate::shared::registry::WorkerSpec;

/// The launcher status shows for a worker launched over the control socket.
pub const CONTROL: &str = "control";

impl Supervisor {
    /// Feeds the core the request `seq` of the child in slot `from`, launching `spec`; status
    /// names `by` as the worker's launcher (a worker's name, `control`, `startup`, a handler).
    pub(super) fn feed_request(
        &mut self,
        by: String,
        from: u32,
        seq: u32,
        spec: WorkerSpec,
        queue_timeout: Option<std::time::Duration>,
    ) {
        self.requester = Some(by);
        self.feed(Event::Request {
            from,
            seq,
            spec: Box::new(spec),
            queue_timeout,
        });
        self.requester = None;
    }

    /// Whether the core runs a `kind` child in child slot `i`: a request slot is read only for
    /// such a child, and a request left in any other is dropped unread.
    pub(super) fn runs_child_in(&self, kind: ChildKind, i: u32) -> bool {
        self.core
            .children()
            .any(|(_, ch)| ch.kind == kind && ch.slot.child_slot() == Some(i))
    }

    /// Requests from connection children (`steward launch`). Only the request slots of connection
    /// children the core has running are read.
    pub(super) fn intake_control(&mut self) {
        for c in 0..self.layout.n_connection_slots {
            let i = self.layout.connection_child_slot(c);
            let r = self.segment.request_slot(i);
            // A control client's launch does not queue (issue 14: queue): any timeout is ignored.
            let Some((seq, spec, _)) = handles::take_request(r) else {
                continue;
            };
            let live = self.runs_child_in(ChildKind::Connection, i);
            if !live {
                handles::drop_request(r);
                continue;
            }
            let refused = |why: String| {
                tracing::warn!("a control client asked for an invalid dynamic worker: {why}");
                // Nothing was adopted: whether the client still waits does not matter.
                let _ = handles::answer(r, seq, &Answer::Invalid(why));
            };
            let mut spec = match spec {
                Ok(spec) => spec,
                Err(why) => {
                    refused(why);
                    continue;
                }
            };
            if !self.cfg.preload_plugins.contains(&spec.plugin) {
                refused(format!(
                    "plugin {:?} is not preloaded (host.preload_plugins: {})",
                    spec.plugin,
                    self.cfg.preload_plugins.join(", ")
                ));
                continue;
            }
            // The entry is looked up in the plugin's own library: a client names a plugin and a
            // function, never a file to load.
            spec.library = spec.plugin.clone();
            self.feed_request(CONTROL.to_owned(), i, seq, spec, None);
        }
    }

    /// Records who launched `key` (the requester of the request being adopted) and returns it.
    pub(super) fn note_launcher(&mut self, key: WorkerKey) -> String {
        // issue 14: queue: a request served from the queue is adopted at a deadline, when no
        // requester is being fed; the core says whose it was.
        let by = match self.requester.clone() {
            Some(by) => by,
            None => match self.core.take_served_from(key) {
                Some(from) if from < self.layout.n_worker_slots => self
                    .core
                    .worker_in(from)
                    .map(|w| w.spec.name.clone())
                    .unwrap_or_default(),
                Some(from) if from == self.layout.startup_request_slot() => super::launchers::STARTUP.to_owned(),
                Some(_) => CONTROL.to_owned(),
                None => String::new(),
            },
        };
        self.launchers.retain(|k, _| k.slot != key.slot);
        self.launchers.insert(key, by.clone());
        by
    }

    /// Who launched `key` ("" for a static worker).
    pub(super) fn launcher_of(&self, key: WorkerKey) -> &str {
        self.launchers.get(&key).map_or("", String::as_str)
    }
}
