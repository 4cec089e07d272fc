//! Client children of plugins' listeners (issue 15: connections): a `client` child runs the
//! plugin's connection handler for one accepted socket; a dead-end child refused for a listener
//! runs the handler's rejection writer, or writes a default line.
//!
//! Runs in: client children (a child slot, the dead-man flag, the segment, plugin code) and
//! dead-end children (no child slot; plugin code only when the handler has a rejection writer).
//! A client child of an isolated handler (issue 15: isolated handlers) arrives here with the
//! segment mapped read-only and neither its child slot nor a dead-man flag (see
//! [`crate::shared::isolation`]); the reason it fails with goes to the log only.
//!
//! What the plugin gets about the client travels as the entry's `arg` (the socket's fd, which
//! the SDK then owns) and `extra` (NUL-separated `family, local, peer, pid, uid, gid,
//! admission`; see the SDK's `connection` module). Peer credentials are read here, from the
//! socket itself (`SO_PEERCRED`, the client's at `connect` time), not from anything the client
//! wrote.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::time::Duration;

use steward::abi;

use crate::child::exit_clean;
use crate::child::runtime::{runtime, Identity};
use crate::shared::handoff::{ChildEnv, ClientSocket};
use crate::shared::listen::{ListenAddr, Listener};
use crate::shared::protocol::ChildSlot;
use crate::shared::registry::HandlerSpec;

/// The listener and its handler, from what this child was given.
fn handler_of<'a>(env: &'a ChildEnv<'_>, listener: u32) -> Result<(&'a Listener, &'a HandlerSpec), String> {
    let l = env
        .cfg
        .listeners
        .get(listener as usize)
        .ok_or_else(|| format!("listener {listener} is not in the configuration"))?;
    let h = env
        .registry
        .handler(&l.plugin, &l.handler)
        .ok_or_else(|| format!("handler \"{}.{}\" is not registered", l.plugin, l.handler))?;
    Ok((l, h))
}

/// What the entry's `extra` says about the client.
fn describe(l: &Listener, client: &ClientSocket, admission: u32) -> Vec<u8> {
    let family = match l.addr {
        ListenAddr::Unix { .. } => "unix",
        ListenAddr::Tcp(_) => "tcp",
    };
    let cred = match l.addr {
        ListenAddr::Unix { .. } => {
            nix::sys::socket::getsockopt(&client.fd, nix::sys::socket::sockopt::PeerCredentials).ok()
        }
        ListenAddr::Tcp(_) => None,
    };
    let (pid, uid, gid) = cred.map_or((String::new(), String::new(), String::new()), |c| {
        (c.pid().to_string(), c.uid().to_string(), c.gid().to_string())
    });
    // A client's own socket path could hold any byte but NUL, which is the separator.
    [
        family,
        &client.local,
        &client.peer,
        &pid,
        &uid,
        &gid,
        &admission.to_string(),
    ]
    .join("\0")
    .into_bytes()
}

/// Serves one client with the handler of listener `listener`.
pub fn client_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>, client: ClientSocket, listener: u32) -> i32 {
    let (l, h) = match handler_of(env, listener) {
        Ok(x) => x,
        Err(reason) => exit_clean(slot, 2, &reason),
    };
    crate::shared::log::set_identity("client", Some(&h.name));
    let entry = match crate::shared::preload::resolve_connection_entry(&h.library, &h.function, false) {
        Ok(e) => e,
        Err(reason) => {
            tracing::error!("cannot serve a client: {reason}");
            exit_clean(slot, 2, &reason);
        }
    };
    crate::sys::set_blocking(client.fd.as_raw_fd());
    let extra = describe(l, &client, abi::ADMIT_OK);
    let who = Identity {
        name: h.name.clone(),
        worker_type: "connection".to_owned(),
        plugin: h.plugin.clone(),
        // The SDK takes the fd over; nothing here closes it.
        arg: client.fd.into_raw_fd() as u64,
        extra,
    };
    let api = runtime(env, slot, who, false);
    crate::shared::hostapi::with_state(|s| s.failure = None);
    if let Some(s) = slot {
        s.mark_entered(crate::shared::shmem::monotonic_ns());
    }
    // SAFETY: `entry` passed the magic, ABI and fingerprint checks of a connection handler; the
    // SDK's wrapper catches panics inside the plugin.
    let code = unsafe { entry(api) };
    let reason = crate::shared::hostapi::with_state(|s| s.failure.take()).unwrap_or_default();
    crate::child::entry_returned(slot, code, &reason)
}

/// Answers a refused client of listener `listener`: the handler's rejection writer if it has
/// one, else [`steward::Admission::default_message`]'s line. Exit 0 either way: nothing shared
/// was touched, and a client that went away is not the host's problem. The writer runs with the
/// segment mapped read-only (a store into it kills this child alone) and within the dead-end's
/// deadline, both set up before any plugin code ran here ([`crate::child::run`]).
pub fn refused_main(env: &ChildEnv<'_>, client: ClientSocket, listener: u32, admission: u32) -> i32 {
    crate::shared::log::set_identity("dead-end", None);
    crate::sys::set_blocking(client.fd.as_raw_fd());
    let Ok((l, h)) = handler_of(env, listener) else {
        return 0;
    };
    let writer = h
        .reject
        .as_deref()
        .map(|f| crate::shared::preload::resolve_connection_entry(&h.library, f, true));
    let keep = client.fd.try_clone();
    match writer {
        Some(Ok(entry)) => {
            let extra = describe(l, &client, admission);
            let who = Identity {
                name: h.name.clone(),
                worker_type: "rejection".to_owned(),
                plugin: h.plugin.clone(),
                arg: client.fd.into_raw_fd() as u64,
                extra,
            };
            // The runtime's SIGTERM handler only sets a flag that no rejection writer reads: the
            // host's SIGTERM must end this child as it ends any dead-end. Held across the swap,
            // one that comes while the flag handler is in place ends the child at the unblock.
            crate::child::dead_end::hold_sigterm(true);
            let api = runtime(env, None, who, false);
            crate::child::dead_end::default_sigterm();
            crate::child::dead_end::hold_sigterm(false);
            // SAFETY: `entry` passed the checks of a rejection writer; the SDK's wrapper catches
            // panics inside the plugin.
            let _ = unsafe { entry(api) };
        }
        other => {
            if let Some(Err(reason)) = other {
                tracing::warn!("{reason}; writing the default refusal");
            }
            let line = format!("{}\n", admission_of(admission).default_message());
            let mut f = std::fs::File::from(client.fd);
            let _ = f.write_all(line.as_bytes());
        }
    }
    // Let the client read the answer before the socket goes away; never wait long.
    if let Ok(fd) = keep {
        let s = std::os::unix::net::UnixStream::from(fd);
        let _ = nix::sys::socket::shutdown(s.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut sink = [0u8; 1024];
        let mut s = s;
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    }
    0
}

fn admission_of(v: u32) -> steward::Admission {
    match v {
        abi::ADMIT_OK => steward::Admission::Ok,
        abi::ADMIT_TOO_MANY => steward::Admission::TooMany,
        abi::ADMIT_STARTING => steward::Admission::Starting,
        abi::ADMIT_SHUTTING_DOWN => steward::Admission::ShuttingDown,
        _ => steward::Admission::Recovering,
    }
}
