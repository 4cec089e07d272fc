//! What a plugin's network service gets (issue 15: connections): [`ConnectionHandler`] to
//! register one, [`Connection`] in the child that serves one client, [`Rejection`] in the
//! dead-end child that answers a client the host turns away.
//!
//! Runs in: a plugin. A [`Connection`] exists only inside the handler exported with
//! [`crate::connection_entry!`], in a client child the host started for one accepted socket; a
//! [`Rejection`] only inside the writer exported with [`crate::rejection_entry!`].
//!
//! What the host passes about the client (its addresses, Unix peer credentials, the admission
//! state) arrives as the entry's `extra` bytes, written by the host: NUL-separated fields
//! `family, local, peer, pid, uid, gid, admission`, and the socket's fd as the entry's `arg`.
//! The SDK owns the fd from then on and closes it when the handler returns.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::abi;
use crate::background_worker::{BackgroundWorker, EntryPoint};
use crate::handle::{LaunchError, WorkerHandle};
use crate::latch::LatchHandle;
use crate::lock::{Lock, LockError};
use crate::settings::{SettingError, SettingValue};
use crate::worker::{Region, RegionError, WaitResult, Worker};

/// A connection handler to register with [`crate::Registrar::register_handler`]: its name (a
/// listener names it `plugin.name`), its entry, and optionally a rejection writer.
#[derive(Debug, Clone)]
pub struct ConnectionHandler {
    pub(crate) name: String,
    pub(crate) serve: EntryPoint,
    pub(crate) reject: Option<EntryPoint>,
    // issue 15: isolated handlers
    pub(crate) isolated: bool,
}

impl ConnectionHandler {
    /// A handler named `name` served by `serve` (exported with [`crate::connection_entry!`],
    /// named with [`crate::entry!`]).
    pub fn new(name: &str, serve: EntryPoint) -> ConnectionHandler {
        ConnectionHandler {
            name: name.to_owned(),
            serve,
            reject: None,
            isolated: false,
        }
    }

    /// The function (exported with [`crate::rejection_entry!`]) that writes this protocol's own
    /// answer to a client the host turns away: too many clients, starting, shutting down,
    /// recovering. Without one the host writes [`Admission::default_message`] and a newline.
    ///
    /// The writer runs in a dead-end child with no child slot, whose shared memory is mapped
    /// read-only for every handler, isolated or not: write the answer and return, take no lock
    /// (a store into a region kills the dead-end; the client gets nothing, the host goes on).
    /// The dead-end lives at most 5 seconds from its start, writer included, and SIGTERM (a
    /// shutdown) ends it at once, so keep the answer to a line. Start no process from it: one
    /// it forks is outside that deadline and the parent-death signal, and is left to the host's
    /// shutdown.
    pub fn rejection(mut self, reject: EntryPoint) -> ConnectionHandler {
        self.reject = Some(reject);
        self
    }

    // issue 15: isolated handlers
    /// Serves each client isolated, as [`BackgroundWorker::isolated`] runs a worker: the client
    /// child maps shared memory read-only and holds no dead-man flag, so its crash (a signal, an
    /// abort, a wild write into the segment, which faults) ends only its own connection; the host
    /// is not reset and every other session goes on. It keeps the peer, settings, logging, its
    /// own latch to wait on, [`Connection::should_stop`] and host-death detection, and may read
    /// regions. What writes shared memory is refused: locks ([`LockError::Isolated`]), setting a
    /// latch ([`LatchHandle::set`] returns `false`, its own latch's too), and
    /// [`Connection::launch`]. The rejection writer needs no flag: it runs read-only for every
    /// handler (see [`ConnectionHandler::rejection`]).
    ///
    /// On a host without isolated handlers the registration fails with
    /// [`crate::RegisterError::BadEntry`].
    pub fn isolated(mut self) -> ConnectionHandler {
        self.isolated = true;
        self
    }
}

/// Why a client is served or turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Served.
    Ok,
    /// The listener's `max_connections`, or the host's `max_client_connections`, is reached.
    TooMany,
    /// The host is starting and not running yet.
    Starting,
    /// The host is shutting down.
    ShuttingDown,
    /// The host is resetting shared memory after a crash.
    Recovering,
}

impl Admission {
    fn from_abi(v: u32) -> Admission {
        match v {
            abi::ADMIT_OK => Admission::Ok,
            abi::ADMIT_TOO_MANY => Admission::TooMany,
            abi::ADMIT_STARTING => Admission::Starting,
            abi::ADMIT_SHUTTING_DOWN => Admission::ShuttingDown,
            _ => Admission::Recovering,
        }
    }

    /// The line the host writes when the handler has no rejection writer.
    pub fn default_message(self) -> &'static str {
        match self {
            Admission::Ok => "ok",
            Admission::TooMany => "error: too many clients",
            Admission::Starting => "error: the server is starting up",
            Admission::ShuttingDown => "error: the server is shutting down",
            Admission::Recovering => "error: the server is recovering from a crash",
        }
    }
}

/// Who is on the other end, as the host accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `"unix"` or `"tcp"`.
    pub family: String,
    /// The listener's address: its socket path, or `ip:port`.
    pub local: String,
    /// The client's address: `ip:port`, a Unix socket's path, or empty for an unnamed one.
    pub addr: String,
    /// Unix sockets only: the client's pid, uid and gid when it connected (`SO_PEERCRED`).
    pub pid: Option<i32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The entry's `extra`, decoded: the peer and the admission.
fn decode(extra: &[u8]) -> (Peer, Admission) {
    let text = String::from_utf8_lossy(extra);
    let f: Vec<&str> = text.split('\0').collect();
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    let peer = Peer {
        family: field(0).to_owned(),
        local: field(1).to_owned(),
        addr: field(2).to_owned(),
        pid: field(3).parse().ok(),
        uid: field(4).parse().ok(),
        gid: field(5).parse().ok(),
    };
    (
        peer,
        Admission::from_abi(field(6).parse().unwrap_or(abi::ADMIT_RECOVERING)),
    )
}

/// Takes the client socket the host passed as the entry's `arg`.
fn take_socket(arg: u64) -> Option<OwnedFd> {
    let fd = RawFd::try_from(arg).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the host passes the fd of the accepted client socket, open in this process and owned
    // by no one else in it; it is taken once, by the entry's wrapper.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One client's connection, in the child that serves it: the socket as a std stream
/// ([`Read`], [`Write`]), the peer, and what a [`Worker`] offers (settings, regions, locks,
/// latch, `should_stop`, `launch`).
///
/// Reading waits for the client and for the host at once: when the host asks the connection
/// to end (fast shutdown, or the host is gone) a read returns an error of kind
/// [`std::io::ErrorKind::ConnectionAborted`], so a handler that reads in a loop ends without
/// checking [`Connection::should_stop`] itself. Writing blocks until the client takes the bytes;
/// a client that never reads is ended by the host's `shutdown_timeout` at shutdown.
pub struct Connection {
    w: Worker,
    sock: OwnedFd,
    peer: Peer,
}

impl Connection {
    pub(crate) fn new(w: Worker) -> Option<Connection> {
        let sock = take_socket(w.arg())?;
        let (peer, _) = decode(w.extra());
        // Taking the latch fd now makes every set, and a termination request, wake a read.
        let _ = w.latch_fd();
        Some(Connection { w, sock, peer })
    }

    /// The handler's name, as registered.
    pub fn handler(&self) -> &str {
        self.w.name()
    }
    /// The plugin that registered the handler.
    pub fn plugin(&self) -> &str {
        self.w.plugin()
    }
    /// The client.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
    /// The socket's fd, for code that polls it with other fds (it stays the connection's).
    pub fn socket_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
    /// Whether the host asked this connection to end (fast shutdown) or is gone.
    pub fn should_stop(&self) -> bool {
        self.w.should_stop()
    }
    /// As [`Worker::wait`].
    pub fn wait(&self, timeout: Duration) -> WaitResult {
        self.w.wait(timeout)
    }
    /// As [`Worker::latch`].
    pub fn latch(&self) -> LatchHandle {
        self.w.latch()
    }
    /// As [`Worker::setting`].
    pub fn setting<T: SettingValue>(&self, name: &str) -> Result<T, SettingError> {
        self.w.setting(name)
    }
    /// As [`Worker::region`].
    pub fn region(&self, name: &str) -> Result<Region, RegionError> {
        self.w.region(name)
    }
    /// As [`Worker::lock`].
    pub fn lock(&self, name: &str) -> Result<Lock, LockError> {
        self.w.lock(name)
    }
    /// As [`Worker::set_activity`]: shown for this connection's child slot.
    pub fn set_activity(&self, text: &str) {
        self.w.set_activity(text)
    }
    /// As [`Worker::launch`]: a dynamic worker of the handler's plugin, started by this session
    /// (a parallel query's leader starting its helpers). It outlives the session unless the
    /// handler terminates it through its handle.
    pub fn launch(&self, w: BackgroundWorker) -> Result<WorkerHandle, LaunchError> {
        self.w.launch(w)
    }

    /// Waits until the socket is readable, the host asks the connection to end, or the host is
    /// gone.
    fn wait_readable(&self) -> std::io::Result<()> {
        let latch = self.w.latch_fd().map(|f| f.as_raw_fd()).unwrap_or(-1);
        loop {
            if self.w.should_stop() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the host asked this connection to end",
                ));
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: latch,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two pollfds we own, alive for the call; a negative fd is ignored by poll.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
            if n > 0 && fds[0].revents != 0 {
                return Ok(());
            }
            if n > 0 && fds[1].revents != 0 && !self.w.should_stop() {
                // The plugin's own latch: not ours to reset. Wait on the socket alone a while,
                // then look at the host again.
                fds[0].revents = 0;
                // SAFETY: as above, one pollfd.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) };
                if n > 0 {
                    return Ok(());
                }
            }
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.wait_readable()?;
        (&*self.file()).read(buf)
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.file()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Connection {
    /// The socket as a `File` for plain `read(2)` and `write(2)`, which work on any stream
    /// socket; never closed through this view.
    fn file(&self) -> std::mem::ManuallyDrop<std::fs::File> {
        // SAFETY: the fd stays open as long as `self`; `ManuallyDrop` keeps the view from closing
        // it.
        std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(self.sock.as_raw_fd()) })
    }
}

/// A client the host turns away, in the dead-end child that answers it: write the protocol's
/// own refusal, then return (the host closes the socket). Keep it short: shared memory is
/// read-only here, the child lives at most 5 seconds and SIGTERM ends it (see
/// [`ConnectionHandler::rejection`]).
pub struct Rejection {
    sock: OwnedFd,
    peer: Peer,
    admission: Admission,
    handler: String,
}

impl Rejection {
    pub(crate) fn new(w: &Worker) -> Option<Rejection> {
        let sock = take_socket(w.arg())?;
        let (peer, admission) = decode(w.extra());
        Some(Rejection {
            sock,
            peer,
            admission,
            handler: w.name().to_owned(),
        })
    }
    /// Why the client is turned away.
    pub fn admission(&self) -> Admission {
        self.admission
    }
    /// The client.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
    /// The handler's name.
    pub fn handler(&self) -> &str {
        &self.handler
    }
}

impl Write for Rejection {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: as for `Connection::file`.
        let f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(self.sock.as_raw_fd()) });
        (&*f).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
