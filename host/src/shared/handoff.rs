//! What the supervisor hands a new child: its kind, its startup data, its client socket, and in
//! exec mode the parameter blob that carries all of it across `execve`.
//!
//! Runs in: the supervisor (which fills these in) and every child (which reads them). The blob's
//! bytes come from the supervisor only, through a memfd no other process can reach, but a child
//! still refuses a blob of another version or a truncated one with a clear message and exit
//! code 2.
//!
//! Blob format: 8 magic bytes, a little-endian `u32` version, a little-endian `u32` payload
//! length, then the payload (JSON of [`Params`]).

use std::os::fd::{OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::shared::config::Config;
use crate::shared::registry::{Registry, Settings};
use crate::shared::shmem::{Layout, Segment};

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
    // issue 15: connections
    /// Serves one client of a plugin's listener with the plugin's connection handler.
    Client,
}

/// What the supervisor knows about a kind.
pub struct KindInfo {
    pub kind: ChildKind,
    /// The name in logs and `ps`.
    pub name: &'static str,
    /// Whether the child maps shared memory (and so has a child slot and a dead-man flag; its
    /// crash resets the host).
    pub attaches_shmem: bool,
    /// Whether the child runs plugin code, and so may start processes of its own that outlive
    /// it: only such a child can be the origin of a process the supervisor adopts. For a
    /// dead-end this is the control socket's; a plugin listener's dead-end runs the handler's
    /// rejection writer (`StartupData::Refused`), which the supervisor's pool tells apart
    /// (`ChildSlotPool::runs_plugin_code`).
    pub runs_plugin_code: bool,
}

pub const KINDS: [KindInfo; 6] = [
    KindInfo {
        kind: ChildKind::Worker,
        name: "worker",
        attaches_shmem: true,
        runs_plugin_code: true,
    },
    KindInfo {
        kind: ChildKind::Connection,
        name: "connection",
        attaches_shmem: true,
        runs_plugin_code: false,
    },
    KindInfo {
        kind: ChildKind::DeadEnd,
        name: "dead-end",
        attaches_shmem: false,
        runs_plugin_code: false,
    },
    KindInfo {
        kind: ChildKind::Startup,
        name: "startup",
        attaches_shmem: true,
        runs_plugin_code: true,
    },
    KindInfo {
        kind: ChildKind::Spare,
        name: "spare",
        attaches_shmem: true,
        runs_plugin_code: true,
    },
    // issue 15: connections
    KindInfo {
        kind: ChildKind::Client,
        name: "client",
        attaches_shmem: true,
        runs_plugin_code: true,
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
    Worker {
        worker_slot: u32,
        // issue 15: isolated
        /// The worker runs isolated (see [`StartupData::isolated`]).
        #[serde(default)]
        isolated: bool,
    },
    Connection,
    /// `state`: the host state when the refusal is because of it (`recovering`, `stopping`), so a
    /// client can tell a host that is busy from one that is full.
    DeadEnd {
        message: String,
        state: Option<String>,
    },
    Startup,
    Spare,
    // issue 15: connections
    /// A client of listener `listener` (its index in the config's `listeners`), served.
    Client {
        listener: u32,
        // issue 15: isolated handlers
        /// The listener's handler is isolated (the supervisor's registry says so).
        #[serde(default)]
        isolated: bool,
    },
    /// A client of listener `listener` turned away for `admission` (an `abi::ADMIT_*` value):
    /// a dead-end child writes the handler's rejection, or a default line.
    Refused {
        listener: u32,
        admission: u32,
    },
}

// issue 15: isolated
impl StartupData {
    /// Whether the child runs isolated: it maps the segment read-only, holds no dead-man flag,
    /// and its crash is its own (never a host reset). A property of the child's spec, decided by
    /// the supervisor from its own registry and carried by the launch path (in exec mode inside
    /// the blob), never read from shared memory. Kinds that can run isolated say so here.
    pub fn isolated(&self) -> bool {
        match self {
            StartupData::Worker { isolated, .. } => *isolated,
            // issue 15: isolated handlers
            StartupData::Client { isolated, .. } => *isolated,
            // A refused client's dead-end may run the handler's rejection writer: plugin code in
            // a child with no dead-man flag, whose crash nothing would reset.
            StartupData::Refused { .. } => true,
            _ => false,
        }
    }
}

/// An accepted client connection handed to a child.
#[derive(Debug)]
pub struct ClientSocket {
    pub fd: OwnedFd,
    /// The listening socket's path (or, for a TCP listener, its `ip:port`).
    pub local: String,
    /// The peer's address (empty for an unnamed Unix socket).
    pub peer: String,
}

/// One child to start: what the launch path carries from the supervisor's decision to the new
/// process (in fork mode to [`crate::child::run`], in exec mode into the parameter blob).
#[derive(Debug)]
pub struct ChildStart<'a> {
    pub kind: ChildKind,
    /// The child slot it takes in the segment, for kinds that attach to shared memory.
    pub child_slot: Option<u32>,
    pub startup: &'a StartupData,
    /// For connection kinds: the accepted client socket, which the supervisor drops at once.
    pub client: Option<ClientSocket>,
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

pub const BLOB_MAGIC: [u8; 8] = *b"STWBLOB\x01";
pub const BLOB_VERSION: u32 = 1;
pub const FD_BLOB: RawFd = 3;
pub const FD_SEGMENT: RawFd = 4;
pub const FD_DEATH: RawFd = 5;
pub const FD_CLIENT: RawFd = 6;
/// The largest payload a child accepts.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// Everything an exec-mode child needs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Params {
    pub kind: ChildKind,
    pub child_slot: Option<u32>,
    pub startup: StartupData,
    pub host_pid: i32,
    pub generation: u64,
    pub layout: Layout,
    pub config: Config,
    pub registry: Registry,
    pub settings: Settings,
    /// For connection kinds: the client socket's addresses (the fd is [`FD_CLIENT`]).
    pub client: Option<(String, String)>,
}

/// Encodes a blob.
pub fn encode(p: &Params) -> Vec<u8> {
    let payload = serde_json::to_vec(p).expect("parameters serialise");
    let mut out = Vec::with_capacity(16 + payload.len());
    out.extend_from_slice(&BLOB_MAGIC);
    out.extend_from_slice(&BLOB_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes a blob, saying exactly what is wrong with a bad one.
pub fn decode(b: &[u8]) -> Result<Params, String> {
    if b.len() < 16 {
        return Err(format!("truncated: {} bytes, a blob has at least 16", b.len()));
    }
    if b[..8] != BLOB_MAGIC {
        return Err("not a Steward parameter blob (bad magic)".into());
    }
    let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    if version != BLOB_VERSION {
        return Err(format!(
            "version {version}; this steward reads version {BLOB_VERSION} (mixed binaries?)"
        ));
    }
    let len = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD {
        return Err(format!("payload of {len} bytes is larger than {MAX_PAYLOAD}"));
    }
    let payload = &b[16..];
    if payload.len() != len as usize {
        return Err(format!(
            "truncated: the header says {len} bytes of payload, found {}",
            payload.len()
        ));
    }
    serde_json::from_slice(payload).map_err(|e| format!("malformed payload: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_blobs_are_refused_with_the_reason() {
        assert!(decode(b"short").unwrap_err().contains("truncated"));
        assert!(decode(&[0u8; 20]).unwrap_err().contains("bad magic"));
        let mut b = BLOB_MAGIC.to_vec();
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        assert!(decode(&b).unwrap_err().contains("version 7"));
        let mut b = BLOB_MAGIC.to_vec();
        b.extend_from_slice(&BLOB_VERSION.to_le_bytes());
        b.extend_from_slice(&100u32.to_le_bytes());
        b.extend_from_slice(b"{}");
        assert!(decode(&b).unwrap_err().contains("header says 100 bytes"));
    }
}
