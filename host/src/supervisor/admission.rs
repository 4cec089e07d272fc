//! Connection admission: accepting on the control socket, a connection child for each client
//! the host can serve, and a dead-end child that writes the one-line refusal for the rest.
//!
//! Runs in: the supervisor. It never writes to or blocks on a client socket. Whether the host
//! admits at all comes from the core's phase; slot counting is this module's.

use std::os::fd::OwnedFd;

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
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
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
            // An ordinary slot first; the reserved ones (at the end) only when those are all
            // taken, so they stay free for an operator's status or stop as long as possible.
            let free = self.connection_slots.iter().position(|u| !u);
            match (refusal, free) {
                (None, Some(i)) => {
                    let slot = self.layout.connection_child_slot(i as u32);
                    match self.start_child(
                        ChildKind::Connection,
                        Some(slot),
                        &StartupData::Connection,
                        Some(client),
                    ) {
                        Ok(pid) => {
                            self.connection_slots[i] = true;
                            self.feed(Event::ChildStarted {
                                pid,
                                kind: ChildKind::Connection,
                                child_slot: Some(slot),
                            });
                        }
                        Err(e) => tracing::error!("cannot start a connection child: {e}"),
                    }
                }
                (refusal, _) => {
                    let message = refusal.unwrap_or_else(|| {
                        format!("too many connections (max_connections = {})", self.cfg.max_connections)
                    });
                    // Dead-end children are bounded too: past the bound the socket is just closed.
                    if self.dead_ends >= self.connection_slots.len() * 2 + 8 {
                        continue;
                    }
                    match self.start_child(
                        ChildKind::DeadEnd,
                        None,
                        &StartupData::DeadEnd { message, state: busy },
                        Some(client),
                    ) {
                        Ok(pid) => {
                            self.dead_ends += 1;
                            self.feed(Event::ChildStarted {
                                pid,
                                kind: ChildKind::DeadEnd,
                                child_slot: None,
                            });
                        }
                        Err(e) => tracing::error!("cannot start a dead-end child: {e}"),
                    }
                }
            }
        }
    }
}
