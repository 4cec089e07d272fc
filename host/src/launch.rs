//! `launch_child`: the one way the supervisor starts a process.
//!
//! Runs in: the supervisor (the launching half) and, for an instant, the new child.
//!
//! Every child kind is an entry in [`KINDS`]; the supervisor passes the kind, the child slot (for
//! kinds that attach to shared memory), the kind's startup data, and for connection kinds the
//! client socket. It gets the pid back and drops its copy of the client socket at once. In fork
//! mode the child continues from a copy of the supervisor and runs [`crate::child::run`]; in exec
//! mode it re-executes the `steward` binary with everything in a parameter blob
//! ([`crate::exec`]).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::config::{Config, LaunchMode};
use crate::registry::{Registry, Settings};
use crate::shmem::Segment;

/// The kinds of child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildKind {
    /// Runs a background worker's entry.
    Worker,
    /// Serves one control connection.
    Connection,
    /// Writes one error line to a refused connection and exits.
    DeadEnd,
    /// Runs the plugins' startup hooks in order, before the host is running.
    Startup,
    /// Exec mode only: an executed child with plugins loaded and the segment mapped, waiting to
    /// be handed a worker slot.
    Spare,
}

/// What the supervisor knows about a kind.
pub struct KindInfo {
    pub kind: ChildKind,
    /// The name in logs and `ps`.
    pub name: &'static str,
    /// Whether the child maps shared memory (and so has a child slot and a dead-man flag; its
    /// crash resets the host).
    pub attaches_shmem: bool,
}

pub const KINDS: [KindInfo; 5] = [
    KindInfo {
        kind: ChildKind::Worker,
        name: "worker",
        attaches_shmem: true,
    },
    KindInfo {
        kind: ChildKind::Connection,
        name: "connection",
        attaches_shmem: true,
    },
    KindInfo {
        kind: ChildKind::DeadEnd,
        name: "dead-end",
        attaches_shmem: false,
    },
    KindInfo {
        kind: ChildKind::Startup,
        name: "startup",
        attaches_shmem: true,
    },
    KindInfo {
        kind: ChildKind::Spare,
        name: "spare",
        attaches_shmem: true,
    },
];

impl ChildKind {
    pub fn info(self) -> &'static KindInfo {
        KINDS.iter().find(|k| k.kind == self).expect("every kind is in KINDS")
    }
}

/// Per-kind startup data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartupData {
    Worker { worker_slot: u32 },
    Connection,
    DeadEnd { message: String },
    Startup,
    Spare,
}

/// An accepted client connection handed to a child.
#[derive(Debug)]
pub struct ClientSocket {
    pub fd: OwnedFd,
    /// The listening socket's path.
    pub local: String,
    /// The peer's address (empty for an unnamed Unix socket).
    pub peer: String,
}

/// What every child needs from the supervisor.
pub struct ChildEnv<'a> {
    pub cfg: &'a Config,
    pub registry: &'a Registry,
    pub settings: &'a Settings,
    pub segment: &'a Segment,
    pub host_pid: i32,
    /// Read end of the pipe whose write end only the supervisor holds.
    pub death_fd: RawFd,
    pub generation: u64,
}

/// Starts a child of `kind`. Returns its pid; the client socket is closed in the caller either
/// way when `client` drops.
pub fn launch_child(
    env: &ChildEnv<'_>,
    kind: ChildKind,
    child_slot: Option<u32>,
    startup: &StartupData,
    client: Option<ClientSocket>,
) -> std::io::Result<i32> {
    match env.cfg.launch_mode {
        LaunchMode::Fork => fork_child(env, kind, child_slot, startup, client),
        LaunchMode::Exec => crate::exec::spawn(env, kind, child_slot, startup, client),
    }
}

fn fork_child(
    env: &ChildEnv<'_>,
    kind: ChildKind,
    child_slot: Option<u32>,
    startup: &StartupData,
    client: Option<ClientSocket>,
) -> std::io::Result<i32> {
    // SAFETY: the supervisor is single-threaded, so the child inherits no lock held by another
    // thread; it runs `child::run` and ends with `_exit`, never returning into the event loop.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            let client_fd = client.as_ref().map_or(-1, |c| c.fd.as_raw_fd());
            crate::sys::close_all_except(&[env.segment.raw_fd(), env.death_fd, client_fd]);
            // A panic must end this child here: unwinding further would run the supervisor's
            // loop (and drop its fork-private tables, which this process does not have).
            // Exit code 101, as for a panic in an exec-mode child's `main`.
            let run =
                std::panic::AssertUnwindSafe(|| crate::child::run(env, kind, child_slot, startup, client, || Ok(())));
            let code = std::panic::catch_unwind(run).unwrap_or(101);
            crate::child::exit(code)
        }
        pid => Ok(pid),
    }
}
