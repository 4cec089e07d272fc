//! `steward child`: where an exec-mode child starts.
//!
//! Runs in: the new child only, right after `execve`. It reads the parameter blob the supervisor
//! left on fd 3 ([`crate::shared::handoff`]), checks every fd it was promised, maps the segment
//! and runs [`crate::child::run`] as a forked child would.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::shared::handoff::{
    decode, ChildEnv, ChildKind, ClientSocket, FD_BLOB, FD_CLIENT, FD_DEATH, FD_SEGMENT, MAX_PAYLOAD,
};
use crate::shared::shmem::Segment;

/// `steward child`: the exec-mode child's `main`. Returns the exit code.
pub fn child_main() -> i32 {
    let missing = |fd: RawFd, what: &str| {
        eprintln!("steward child: no {what} on fd {fd}: `steward child` is started by the host in exec launch mode, not by hand");
        crate::exit_code::USAGE
    };
    if !crate::sys::is_open(FD_BLOB) {
        return missing(FD_BLOB, "parameter blob");
    }
    // SAFETY: fd 3 is open (checked above) and was placed for this process by the supervisor.
    let mut blob_file = unsafe { std::fs::File::from_raw_fd(FD_BLOB) };
    let mut blob = Vec::new();
    if let Err(e) = (&mut blob_file).take(MAX_PAYLOAD as u64 + 17).read_to_end(&mut blob) {
        eprintln!("steward child: cannot read the parameter blob on fd {FD_BLOB}: {e}");
        return crate::exit_code::USAGE;
    }
    let params = match decode(&blob) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("steward child: bad parameter blob: {e}");
            return crate::exit_code::USAGE;
        }
    };
    // A spare keeps its blob open: if its plugin files change before it is handed a worker, it
    // executes itself again with the same blob (see `child::spare_main`). The kind is the decoded
    // one: the payload's bytes say nothing reliable about it (field order, spacing).
    if params.kind == ChildKind::Spare {
        use std::os::fd::IntoRawFd;
        let _ = blob_file.into_raw_fd();
    } else {
        drop(blob_file);
    }
    for (fd, what) in [(FD_SEGMENT, "shared-memory segment"), (FD_DEATH, "host-death pipe")] {
        if !crate::sys::is_open(fd) {
            return missing(fd, what);
        }
    }
    crate::sys::load_test_knobs();
    crate::shared::log::init(params.config.log_format, &params.config.log_level);
    crate::shared::log::set_identity(params.kind.info().name, None);
    let client_fd = params.client.as_ref().map(|_| FD_CLIENT);
    if client_fd.is_some_and(|fd| !crate::sys::is_open(fd)) {
        eprintln!("steward child: the blob names a client socket but fd {FD_CLIENT} is not open");
        return crate::exit_code::USAGE;
    }

    // SAFETY: fd 4 is the segment the supervisor passed; ownership moves to `Segment`.
    let seg_fd = unsafe { OwnedFd::from_raw_fd(FD_SEGMENT) };
    let segment = match Segment::attach(seg_fd, &params.layout, params.generation, params.host_pid) {
        Ok(s) => s,
        Err(e @ crate::shared::shmem::SegmentError::Corrupt { .. }) => {
            // Every child after this one would refuse it too: the supervisor must reset it.
            tracing::error!("{e}; exiting so that the host resets shared memory");
            return crate::shared::shmem::EXIT_CORRUPT_SEGMENT;
        }
        Err(e) => {
            tracing::error!("cannot map shared memory: {e}");
            return crate::exit_code::FAILURE;
        }
    };
    let client = params.client.as_ref().map(|(local, peer)| ClientSocket {
        // SAFETY: fd 6 is the client socket the supervisor passed for connection kinds.
        fd: unsafe { OwnedFd::from_raw_fd(FD_CLIENT) },
        local: local.clone(),
        peer: peer.clone(),
    });
    let env = ChildEnv {
        cfg: &params.config,
        registry: &params.registry,
        settings: &params.settings,
        segment: &segment,
        host_pid: params.host_pid,
        death_fd: FD_DEATH,
        generation: params.generation,
    };
    // Only workers and the startup child run plugin code, so only they load plugins again: a broken plugin file then
    // fails its workers with a clear reason and never `steward status`.
    // issue 15: connections: a client child runs its handler, and a refused client's dead-end
    // child its handler's rejection writer if there is one.
    let needs_plugins = match &params.startup {
        crate::shared::handoff::StartupData::Refused { listener, .. } => params
            .config
            .listeners
            .get(*listener as usize)
            .and_then(|l| params.registry.handler(&l.plugin, &l.handler))
            .is_some_and(|h| h.reject.is_some()),
        _ => matches!(
            params.kind,
            ChildKind::Worker | ChildKind::Startup | ChildKind::Spare | ChildKind::Client
        ),
    };
    let cfg = params.config.clone();
    let registry = params.registry.clone();
    let settings = params.settings.clone();
    crate::child::run(
        &env,
        params.kind,
        params.child_slot,
        &params.startup,
        client,
        move || {
            if needs_plugins {
                crate::shared::preload::attach(&cfg, registry, settings).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
    )
}
