//! Connection admission: accepting on the control socket, a connection child for each client
//! the host can serve, and a dead-end child that writes the one-line refusal for the rest.
//!
//! Runs in: the supervisor. It never writes to or blocks on a client socket. Whether the host
//! admits at all comes from the core's phase; which slot a child gets, and whether one is left,
//! from the child-slot pool.

use std::os::fd::OwnedFd;

use super::clients::{after_failed_accept, AfterFailedAccept};
use super::core::{Event, Phase};
use super::Supervisor;
use crate::shared::handoff::{ChildKind, ClientSocket, StartupData};

/// Most connections accepted per loop iteration.
const ACCEPT_BATCH: usize = 32;

impl Supervisor {
    pub(super) fn accept(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let (stream, addr) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) => match after_failed_accept(&e) {
                    AfterFailedAccept::Empty => return,
                    // That client's connection left the queue (see `backoff`): the next one.
                    AfterFailedAccept::Retry => continue,
                    AfterFailedAccept::Rest => {
                        // Out of descriptors or memory: the client stays queued, and polling
                        // again at once would spin; the control socket rests as a listener does.
                        let path = self.cfg.socket_path();
                        self.control_backoff
                            .failed_and_warn(std::time::Instant::now(), path.display(), &e);
                        return;
                    }
                },
            };
            let client = ClientSocket {
                fd: OwnedFd::from(stream),
                local: self.cfg.socket_path().display().to_string(),
                peer: addr.as_pathname().map(|p| p.display().to_string()).unwrap_or_default(),
            };
            let refusal = match self.core.phase() {
                // Named by the host state too, as status and `STATUS=` name it.
                Phase::Stopping(s) => Some(format!(
                    "the host is shutting down (state stopping, {} shutdown)",
                    s.mode().as_str()
                )),
                Phase::Recovering(_) => Some("the host is recovering from a crash (state recovering)".to_owned()),
                Phase::Up(_) => None,
            };
            let busy = refusal.as_ref().map(|_| self.core.state().as_str().to_owned());
            // The pool hands out an ordinary slot first and a reserved one only when those are
            // all taken, so the reserved ones stay free for an operator's status or stop.
            let slot = match refusal {
                None => self.pool.acquire(ChildKind::Connection),
                Some(_) => None,
            };
            if let Some(slot) = slot {
                // issue 14: control
                // A request the slot's previous connection child left behind is not this one's.
                if let Some(i) = slot.child_slot() {
                    crate::shared::handles::drop_request(self.segment.request_slot(i));
                }
                match self.start_child(slot, &StartupData::Connection, Some(client)) {
                    Ok(pid) => self.feed(Event::ChildStarted { pid, slot }),
                    Err(e) => tracing::error!("cannot start a connection child: {e}"),
                }
                continue;
            }
            let message = refusal
                .unwrap_or_else(|| format!("too many connections (max_connections = {})", self.cfg.max_connections));
            // Dead-end children are bounded too: past the bound the socket is just closed.
            let Some(slot) = self.pool.acquire(ChildKind::DeadEnd) else {
                continue;
            };
            match self.start_child(slot, &StartupData::DeadEnd { message, state: busy }, Some(client)) {
                Ok(pid) => self.feed(Event::ChildStarted { pid, slot }),
                Err(e) => tracing::error!("cannot start a dead-end child: {e}"),
            }
        }
    }
}
