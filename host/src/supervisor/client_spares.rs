//! Spares for plugins' clients (issue 15: client spares, decision 160): an accepted client goes
//! to a ready spare, which has loaded the plugins and mapped the segment already, instead of to
//! a child started for it, in both launch modes.
//!
//! Runs in: the supervisor. The supervisor's end of each waiting spare's channel
//! (`shared::spare_channel`), made only on a host with listeners, lives in the spare's
//! `WaitingSpare` entry. A hand-off is a non-blocking `sendmsg` of the client's fd, then the same
//! futex store and wake as a worker's hand-off; if nothing was sent the spare stays a spare and
//! the client gets a fresh child (a short send, part of a message perhaps queued, stops the spare
//! too). Invariants: a channel is closed with its entry, as soon as its spare is handed anything,
//! is stopped or is reaped, so the supervisor holds no fd for a child that is not a waiting spare
//! and a reused pid never finds an old channel; the supervisor never reads a channel (nothing a
//! spare writes reaches it); once a client is handed over the supervisor's copy of its socket is
//! closed, and a client not handed over is given back to the caller, socket open.

use std::os::fd::OwnedFd;

use super::core::Event;
use super::pool::ChildSlotId;
use super::Supervisor;
use crate::shared::handoff::ClientSocket;
use crate::shared::spare_channel::SendError;

impl Supervisor {
    /// A new spare's channel when the host has listeners: (the supervisor's end, the spare's end
    /// as the client socket it is started with). `(None, None)` otherwise.
    pub(super) fn spare_channel(&self) -> std::io::Result<(Option<OwnedFd>, Option<ClientSocket>)> {
        if self.cfg.listeners.is_empty() {
            return Ok((None, None));
        }
        let (ours, theirs) = crate::shared::spare_channel::pair()?;
        let theirs = ClientSocket {
            fd: theirs,
            local: String::new(),
            peer: String::new(),
        };
        Ok((Some(ours), Some(theirs)))
    }

    /// Hands `client` of listener `i`, admitted in client `slot`, to a ready spare. Returns the
    /// spare's pid, which serves the client from now on, or gives the client back when no spare
    /// is ready or the send failed. The core's record of the spare becomes the client child's.
    pub(super) fn hand_client_to_spare(
        &mut self,
        slot: ChildSlotId,
        i: usize,
        client: ClientSocket,
    ) -> Result<i32, ClientSocket> {
        let Some(cs) = slot.child_slot() else {
            return Err(client);
        };
        // Only a spare that finished loading, as for a worker: one still loading could fail on
        // a plugin file that has changed since.
        let ready = self.spares.iter().position(|w| {
            w.channel.is_some()
                && w.slot
                    .child_slot()
                    .is_some_and(|s| self.segment.child_slot(s).report().ready)
        });
        let Some(k) = ready else {
            return Err(client);
        };
        let (pid, spare) = (self.spares[k].pid, self.spares[k].slot);
        let chan = self.spares[k]
            .channel
            .as_ref()
            .expect("a ready spare was found by its channel");
        match crate::shared::spare_channel::send(chan, i as u32, &client.local, &client.peer, &client.fd) {
            Ok(()) => {}
            // The spare stays a spare; a fresh child takes the client.
            Err(SendError::NotQueued(e)) => {
                tracing::debug!("cannot hand a client to spare {pid}: {e}");
                return Err(client);
            }
            // Part of a message may be queued: the spare leaves the pool (its channel closed
            // with its entry) and is stopped, so it never takes that part for a client's (decision
            // 173); a fresh child takes the client, a new spare the place.
            Err(e @ SendError::Partial(..)) => {
                tracing::warn!("spare child (pid {pid}) stopped: {e}");
                self.spares.swap_remove(k);
                self.spare_refill += 1;
                // Its exit is an unused spare's death (`SpareDied`, a warning): the core's table
                // has no spare the host signalled while it runs.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                return Err(client);
            }
        }
        // The client is in the spare's queue: the supervisor's copies go now.
        drop(client);
        // Its channel goes with its entry.
        self.spares.swap_remove(k);
        self.assign_child_slot(cs);
        self.segment.child_slot(cs).expect_pid(pid);
        let sslot = spare.child_slot().expect("a spare has a child slot");
        self.segment.child_slot(sslot).hand_over(cs);
        self.handoffs.push(pid);
        self.spare_refill += 1;
        // The core's record of the spare becomes the client child's (same pid); the spare's slot
        // is given back once the client child claimed its own (`tend_spares`) or at its reap.
        self.feed(Event::ChildStarted { pid, slot });
        if let Some(ch) = self.core.child_mut(pid) {
            ch.spare = Some(spare);
        }
        Ok(pid)
    }
}
