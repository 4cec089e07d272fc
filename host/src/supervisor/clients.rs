//! Plugins' listeners (issue 15: connections): binding the `[[listen]]` sockets at start-up,
//! accepting their clients, and deciding each client's admission, the postmaster's
//! `BackendStartup` and `canAcceptConnections` in Steward's terms.
//!
//! Runs in: the supervisor. It never writes to, reads from or blocks on a client socket: a served
//! client goes to a client child (kind `client`, a child slot of its own, the plugin's handler),
//! a refused one to a dead-end child that writes the handler's rejection. The supervisor's part
//! is `accept4`, a few counters, `launch_child`, and closing its copy of the socket. Whether a
//! handler runs isolated (issue 15: isolated handlers) comes from the supervisor's own registry
//! and travels in the client child's startup data; the supervisor claims an isolated child's
//! latch for it, as for an isolated worker, and tells the core the child is isolated.
//!
//! Owns: the listening sockets (closed with the supervisor; a Unix one's file is removed when
//! the supervisor drops them, at exit or on a failed start), and per listener the number of clients it serves now. Invariants: a listener's count
//! is raised only for a client child that started and lowered only when that child's slot is
//! freed (`free_slot`), so `open <= max_connections` per listener (each counted child's slot
//! names its listener in the segment, for `status`; freeing the slot clears it); the child-slot
//! pool's `client` kind bounds them all by `max_client_connections`, apart from the control
//! socket's connection slots and the workers' slots, which clients can never take.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Instant;

use steward::abi;

use super::core::{Event, Phase, Progress, Shutdown};
use super::pool::ChildSlotId;
use super::Supervisor;
use crate::shared::config::Config;
use crate::shared::control::ListenerInfo;
use crate::shared::handles;
use crate::shared::handoff::{ChildKind, ClientSocket, StartupData};
use crate::shared::listen::{ListenAddr, Listener};

mod backoff;
mod bind;

pub(super) use backoff::{after_failed_accept, AcceptBackoff, AfterFailedAccept};
pub(super) use bind::bind_with_mode;

/// Most clients accepted per listener per loop iteration, so one busy listener cannot keep the
/// loop from reaping, launching and serving the others.
const ACCEPT_BATCH: usize = 32;

/// Why a listener could not be bound: start-up stops with it.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("{file}: {listener}: {reason}", file = file.display())]
    Listener {
        file: PathBuf,
        listener: String,
        reason: String,
    },
}

enum Sock {
    Unix(UnixListener),
    Tcp(std::net::TcpListener),
}

/// A bound listener.
struct Bound {
    sock: Sock,
    /// Clients this listener serves now.
    open: u32,
    /// A Unix socket's file, removed at exit if it is still ours.
    file: Option<bind::SocketFile>,
    /// Set when `accept` failed for want of a resource.
    backoff: backoff::AcceptBackoff,
}

/// The supervisor's listeners, in the config's order.
#[derive(Default)]
pub struct Listeners {
    bound: Vec<Bound>,
    /// For each client child slot (by its index among the client slots): the listener it serves
    /// plus one, 0 when free.
    serving: Vec<u32>,
}

impl Listeners {
    /// Binds every listener of `cfg`, or says which one failed and why (and removes the socket
    /// files of those it bound before).
    pub fn bind(cfg: &Config, n_client_slots: u32) -> Result<Listeners, BindError> {
        let mut done = Listeners {
            bound: Vec::with_capacity(cfg.listeners.len()),
            serving: vec![0; n_client_slots as usize],
        };
        // On an error, dropping `done` removes the files of the listeners bound so far.
        done.bind_all(cfg).map(|()| done)
    }

    fn bind_all(&mut self, cfg: &Config) -> Result<(), BindError> {
        let bound = &mut self.bound;
        for (i, l) in cfg.listeners.iter().enumerate() {
            let fail = |reason: String| BindError::Listener {
                file: cfg.path.clone(),
                listener: l.describe(i),
                reason,
            };
            let b = match &l.addr {
                ListenAddr::Unix { path, mode } => {
                    let (s, file) = bind::bind_unix(path, *mode).map_err(fail)?;
                    Bound {
                        sock: Sock::Unix(s),
                        open: 0,
                        file: Some(file),
                        backoff: Default::default(),
                    }
                }
                ListenAddr::Tcp(a) => {
                    let s = std::net::TcpListener::bind(a).map_err(|e| fail(bind::bind_reason(&e)))?;
                    s.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
                    Bound {
                        sock: Sock::Tcp(s),
                        open: 0,
                        file: None,
                        backoff: Default::default(),
                    }
                }
            };
            bound.push(b);
        }
        Ok(())
    }

    /// The listeners to poll at `now` (those not paused after a failed `accept`): index and fd.
    fn polled(&self, now: Instant) -> impl Iterator<Item = (usize, RawFd)> + '_ {
        self.bound
            .iter()
            .enumerate()
            .filter(move |(_, b)| !b.backoff.paused(now))
            .map(|(i, b)| match &b.sock {
                Sock::Unix(s) => (i, s.as_raw_fd()),
                Sock::Tcp(s) => (i, s.as_raw_fd()),
            })
    }

    /// When the first pause in force at `now` ends.
    fn resumes_at(&self, now: Instant) -> Option<Instant> {
        self.bound.iter().filter_map(|b| b.backoff.resumes_at(now)).min()
    }

    /// Accepts one client of listener `i`: the socket and its addresses, `None` when none waits
    /// or `accept` failed for want of a resource (the listener then rests; see [`backoff`]). An
    /// error that was about one client only is passed over and `accept` called again at once.
    fn accept(&mut self, i: usize, local: &Listener) -> Option<ClientSocket> {
        loop {
            let r = match &self.bound[i].sock {
                Sock::Unix(s) => s.accept().map(|(c, a)| {
                    let peer = a.as_pathname().map(|p| p.display().to_string()).unwrap_or_default();
                    (OwnedFd::from(c), peer)
                }),
                Sock::Tcp(s) => s.accept().map(|(c, a)| (OwnedFd::from(c), a.to_string())),
            };
            let e = match r {
                Ok((fd, peer)) => {
                    return Some(ClientSocket {
                        fd,
                        local: match &local.addr {
                            ListenAddr::Unix { path, .. } => path.display().to_string(),
                            ListenAddr::Tcp(a) => a.to_string(),
                        },
                        peer,
                    })
                }
                Err(e) => e,
            };
            match backoff::after_failed_accept(&e) {
                backoff::AfterFailedAccept::Empty => return None,
                // That connection has left the queue: the loop ends with the queue.
                backoff::AfterFailedAccept::Retry => continue,
                backoff::AfterFailedAccept::Rest => {
                    self.bound[i].backoff.failed_and_warn(Instant::now(), &local.addr, &e);
                    return None;
                }
            }
        }
    }
}

/// Removes the Unix listeners' socket files, each only while it is still the one bound here:
/// the supervisor drops its listeners when it exits or fails to start (children never run
/// destructors: they leave through `_exit`).
impl Drop for Listeners {
    fn drop(&mut self) {
        for f in self.bound.iter().filter_map(|b| b.file.as_ref()) {
            f.remove();
        }
    }
}

impl Supervisor {
    /// The admission a new client gets now, apart from the counts: served only while the host
    /// runs; during a start after a crash reset, as during the reset itself, "recovering".
    fn host_admission(&self) -> u32 {
        match self.core.phase() {
            Phase::Stopping(_) => abi::ADMIT_SHUTTING_DOWN,
            Phase::Recovering(_) => abi::ADMIT_RECOVERING,
            Phase::Up(Progress::Running) => abi::ADMIT_OK,
            Phase::Up(_) if self.core.generation() > 1 => abi::ADMIT_RECOVERING,
            Phase::Up(_) => abi::ADMIT_STARTING,
        }
    }

    /// Whether the loop accepts on the plugins' listeners at all: not once a shutdown has
    /// signalled the children. A smart shutdown still waiting for its sessions answers new
    /// clients "shutting down", as the postmaster does while it waits; past that, clients wait
    /// in the backlog until the host exits and closes it, so none of them can start a child that
    /// keeps a stopping host alive.
    fn accepts_clients(&self) -> bool {
        !matches!(
            self.core.phase(),
            Phase::Stopping(Shutdown::Signalled { .. } | Shutdown::Killed { .. })
        )
    }

    /// The loop's one wait, up to `ms` (negative: no deadline), on the self-pipe, the control
    /// socket and every listener that accepts now (none once a shutdown has signalled; not one
    /// resting after a failed `accept`, whose rest also bounds the wait); then it drains the pipe
    /// and accepts on what became readable.
    pub(super) fn wait_and_accept(&mut self, ms: i32) {
        let now = Instant::now();
        let mut fds = vec![self.wake_r.as_raw_fd()];
        // The control socket rests after a failed `accept` as a listener does (see `backoff`).
        let control = !self.control_backoff.paused(now);
        if control {
            fds.push(self.listener.as_raw_fd());
        }
        let first_listener = fds.len();
        let mut polled = Vec::new();
        let mut resume = self.control_backoff.resumes_at(now);
        if self.accepts_clients() {
            for (i, fd) in self.listeners.polled(now) {
                polled.push(i);
                fds.push(fd);
            }
            resume = resume.into_iter().chain(self.listeners.resumes_at(now)).min();
        }
        let ms = match resume {
            Some(t) => {
                // Rounded up, so the rest is over when the poll returns.
                let rest = t.duration_since(now).as_millis().min(i32::MAX as u128 - 1) as i32 + 1;
                if ms < 0 {
                    rest
                } else {
                    ms.min(rest)
                }
            }
            None => ms,
        };
        let r = crate::sys::poll_in(&fds, ms);
        if r[0] != 0 {
            crate::sys::drain(self.wake_r.as_raw_fd());
        }
        if control && r[1] != 0 {
            self.accept();
        }
        for (k, _) in r.iter().enumerate().skip(first_listener).filter(|(_, ev)| **ev != 0) {
            self.accept_clients(polled[k - first_listener]);
        }
    }

    /// Accepts a batch of clients of listener `i`, each to a client child or a dead-end child.
    pub(super) fn accept_clients(&mut self, i: usize) {
        for _ in 0..ACCEPT_BATCH {
            let Some(client) = self.listeners.accept(i, &self.cfg.listeners[i]) else {
                return;
            };
            let mut admission = self.host_admission();
            let mut slot = None;
            if admission == abi::ADMIT_OK {
                let full = self.listeners.bound[i].open >= self.cfg.listeners[i].max_connections;
                slot = if full {
                    None
                } else {
                    self.pool.acquire(ChildKind::Client)
                };
                if slot.is_none() {
                    admission = abi::ADMIT_TOO_MANY;
                }
            }
            let listener = i as u32;
            if let Some(slot) = slot {
                // A request the slot's previous client child left behind is not this one's.
                if let Some(i) = slot.child_slot().filter(|i| *i < self.layout.n_request_slots()) {
                    handles::drop_request(self.segment.request_slot(i));
                }
                // issue 15: isolated handlers
                // Decided from the supervisor's own registry, never from the segment.
                let l = &self.cfg.listeners[i];
                let isolated = self.registry.handler(&l.plugin, &l.handler).is_some_and(|h| h.isolated);
                // issue 15: client spares
                // A spare maps the segment writable: an isolated handler's client always gets a
                // fresh child (decision 163).
                let client = if isolated {
                    client
                } else {
                    match self.hand_client_to_spare(slot, i, client) {
                        Ok(_) => {
                            self.serve(slot, i);
                            continue;
                        }
                        Err(client) => client,
                    }
                };
                match self.start_child(slot, &StartupData::Client { listener, isolated }, Some(client)) {
                    Ok(pid) if isolated => {
                        self.serve(slot, i);
                        // It cannot claim its latch (a write): the supervisor does, for the pid
                        // it just learnt, and wakes the child that waits for that.
                        if let Some(s) = slot.child_slot() {
                            self.segment.child_slot(s).latch().adopt_isolated(pid);
                        }
                        self.feed(Event::IsolatedClientStarted { pid, slot });
                    }
                    Ok(pid) => {
                        self.serve(slot, i);
                        self.feed(Event::ChildStarted { pid, slot });
                    }
                    Err(e) => tracing::error!("cannot start a client child for {}: {e}", self.cfg.listeners[i].addr),
                }
                continue;
            }
            // Dead-end children are bounded too, apart from the control socket's (which the
            // clients must never starve): past the bound the socket is just closed.
            let Some(slot) = self.pool.acquire_client_dead_end() else {
                continue;
            };
            match self.start_child(slot, &StartupData::Refused { listener, admission }, Some(client)) {
                Ok(pid) => self.feed(Event::ChildStarted { pid, slot }),
                Err(e) => tracing::error!("cannot start a dead-end child: {e}"),
            }
        }
    }

    /// Counts a client child that started in `slot` against listener `i`.
    fn serve(&mut self, slot: ChildSlotId, i: usize) {
        let Some(k) = self.client_index(slot) else { return };
        self.listeners.serving[k] = i as u32 + 1;
        self.listeners.bound[i].open += 1;
        // issue 15: status listeners
        // Mirrored in the child slot for `status` (freeing the slot clears it), so the counts
        // connection children show are this one's.
        if let Some(s) = slot.child_slot() {
            self.segment.child_slot(s).serve_listener(i as u32);
        }
    }

    // issue 15: status listeners
    /// The listeners as `status` shows them, `open` left at 0 (connection children count it
    /// from the client child slots): a TCP address as bound, isolation from the supervisor's
    /// own registry.
    pub(super) fn listener_infos(&self) -> Vec<ListenerInfo> {
        self.cfg
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let bound = match self.listeners.bound.get(i).map(|b| &b.sock) {
                    Some(Sock::Tcp(s)) => s.local_addr().ok().map(|a| format!("tcp {a}")),
                    _ => None,
                };
                ListenerInfo {
                    address: bound.unwrap_or_else(|| l.addr.to_string()),
                    handler: format!("{}.{}", l.plugin, l.handler),
                    isolated: self.registry.handler(&l.plugin, &l.handler).is_some_and(|h| h.isolated),
                    max_connections: l.max_connections,
                    open: 0,
                }
            })
            .collect()
    }

    /// A client child's slot is free again: its listener serves one client fewer.
    pub(super) fn client_slot_freed(&mut self, slot: ChildSlotId) {
        let Some(k) = self.client_index(slot) else { return };
        let i = std::mem::take(&mut self.listeners.serving[k]);
        if let Some(b) = i.checked_sub(1).and_then(|i| self.listeners.bound.get_mut(i as usize)) {
            b.open = b.open.saturating_sub(1);
        }
    }

    /// Dynamic workers requested by client children (`Connection::launch`), read only from the
    /// request slots of client children the core has running. A session launches for its
    /// handler's plugin only, and the entry is looked up in that plugin's own library, whatever
    /// the request says: every byte of it is untrusted.
    pub(super) fn intake_clients(&mut self) {
        for k in 0..self.layout.n_client_slots {
            let i = self.layout.client_child_slot(k);
            let r = self.segment.request_slot(i);
            // A session's launch is not queued (as a control connection's): every slot taken is
            // a refusal at once.
            let Some((seq, spec, _)) = handles::take_request(r) else {
                continue;
            };
            let live = self.runs_child_in(ChildKind::Client, i);
            let listener = self.listeners.serving[k as usize]
                .checked_sub(1)
                .map(|l| &self.cfg.listeners[l as usize]);
            let (Some(l), true) = (listener, live) else {
                handles::drop_request(r);
                continue;
            };
            let by = format!("{}.{}", l.plugin, l.handler);
            let mut spec = match spec {
                Ok(spec) if spec.plugin == l.plugin => spec,
                Ok(spec) => {
                    let why = format!(
                        "handler {by} may launch workers of plugin {} only, not {}",
                        l.plugin, spec.plugin
                    );
                    // Nothing was adopted: whether the session still waits does not matter.
                    let _ = handles::answer(r, seq, &handles::Answer::Invalid(why));
                    continue;
                }
                Err(why) => {
                    let _ = handles::answer(r, seq, &handles::Answer::Invalid(why));
                    continue;
                }
            };
            spec.library = spec.plugin.clone();
            self.feed_request(by, i, seq, spec, None);
        }
    }

    fn client_index(&self, slot: ChildSlotId) -> Option<usize> {
        let k = slot.child_slot()?.checked_sub(self.layout.client_child_slot(0))? as usize;
        (slot.kind() == ChildKind::Client && k < self.listeners.serving.len()).then_some(k)
    }
}

#[cfg(test)]
mod tests {
    use crate::shared::handoff::ChildKind;
    use crate::shared::registry::Registry;
    use crate::shared::shmem::Layout;
    use crate::supervisor::pool::{dead_end_capacity, ChildSlotPool};

    /// Clients have child slots of their own, after every other kind's: a flood of them takes
    /// no worker slot, no control connection slot, no spare's or the startup child's.
    #[test]
    fn clients_never_starve_workers_or_the_control_socket() {
        let layout = Layout::compute_with_clients(&Registry::default(), 4, 3, 5);
        assert_eq!(
            layout.client_child_slot(0),
            layout.spare_child_slot(layout.n_spare_slots)
        );
        assert_eq!(layout.n_child_slots(), layout.client_child_slot(5));
        let mut pool = ChildSlotPool::new(&layout, 1, true).unwrap();
        let clients: Vec<_> = std::iter::from_fn(|| pool.acquire(ChildKind::Client)).collect();
        let slots: Vec<_> = clients.iter().map(|c| c.child_slot().unwrap()).collect();
        assert_eq!(slots, (0..5).map(|i| layout.client_child_slot(i)).collect::<Vec<_>>());
        for kind in [
            ChildKind::Worker,
            ChildKind::Connection,
            ChildKind::Startup,
            ChildKind::Spare,
        ] {
            assert!(pool.acquire(kind).is_some(), "{kind:?} starved by clients");
        }
        assert_eq!(pool.capacity(ChildKind::DeadEnd), dead_end_capacity(3) + 2 * 5 + 8);
        pool.release(clients[2]).unwrap();
        assert_eq!(pool.acquire(ChildKind::Client), Some(clients[2]));
    }

    /// A host without listeners gives clients no slot at all.
    #[test]
    fn no_listener_no_client_slots() {
        let cfg = crate::shared::config::Config::parse(std::path::Path::new("/etc/steward.toml"), "").unwrap();
        assert_eq!(Layout::for_host(&Registry::default(), &cfg).n_client_slots, 0);
        let cfg = crate::shared::config::Config::parse(
            std::path::Path::new("/etc/steward.toml"),
            "[host]\nmax_client_connections = 7\n[[listen]]\nhandler = \"p.h\"\ntcp = \"127.0.0.1:9\"\n",
        )
        .unwrap();
        assert_eq!(Layout::for_host(&Registry::default(), &cfg).n_client_slots, 7);
    }
}
