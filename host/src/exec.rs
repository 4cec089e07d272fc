//! Exec launch mode: a child re-executes the `steward` binary and finds everything again by name.
//!
//! Runs in: the supervisor ([`spawn`]) and the new child ([`child_main`], `steward child`).
//!
//! Nothing is inherited but what is passed on purpose. The supervisor writes one versioned
//! parameter blob into a memfd and starts the binary with `posix_spawn` (glibc implements it with
//! `clone(CLONE_VM | CLONE_VFORK)`, so the cost does not grow with the supervisor's memory). The
//! child's fds are exactly: stdio, the blob ([`FD_BLOB`], closed once read), the segment
//! ([`FD_SEGMENT`]), the host-death pipe ([`FD_DEATH`]) and, for connection kinds, the client
//! socket ([`FD_CLIENT`]); every other fd of the supervisor is close-on-exec.
//!
//! Blob format: 8 magic bytes, a little-endian `u32` version, a little-endian `u32` payload
//! length, then the payload (JSON of [`Params`]). A child refuses a blob of another version or a
//! truncated one with a clear message and exit code 2.

use std::ffi::CString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::launch::{ChildEnv, ChildKind, ClientSocket, StartupData};
use crate::registry::{Registry, Settings};
use crate::shmem::{Layout, Segment};

pub const BLOB_MAGIC: [u8; 8] = *b"STWBLOB\x01";
pub const BLOB_VERSION: u32 = 1;
pub const FD_BLOB: RawFd = 3;
pub const FD_SEGMENT: RawFd = 4;
pub const FD_DEATH: RawFd = 5;
pub const FD_CLIENT: RawFd = 6;
/// The largest payload a child accepts.
const MAX_PAYLOAD: u32 = 64 << 20;

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

/// The binary to execute and the environment, computed once.
struct Program {
    path: CString,
    argv0: CString,
    arg1: CString,
    env: Vec<CString>,
}

fn program() -> std::io::Result<&'static Program> {
    static P: OnceLock<Program> = OnceLock::new();
    if let Some(p) = P.get() {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let cs = |s: &[u8]| CString::new(s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
    use std::os::unix::ffi::OsStrExt;
    let env = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let p = Program {
        path: cs(exe.as_os_str().as_bytes())?,
        argv0: cs(b"steward")?,
        arg1: cs(b"child")?,
        env,
    };
    Ok(P.get_or_init(|| p))
}

/// Duplicates `fd` above the fixed child fd numbers, close-on-exec, so that `adddup2` never maps
/// an fd onto itself (which would leave `FD_CLOEXEC` set on some libcs).
fn dup_high(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a fresh fd we own, or -1.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
    if d < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Starts an exec-mode child.
pub fn spawn(
    env: &ChildEnv<'_>,
    kind: ChildKind,
    child_slot: Option<u32>,
    startup: &StartupData,
    client: Option<ClientSocket>,
) -> std::io::Result<i32> {
    let prog = program()?;
    let params = Params {
        kind,
        child_slot,
        startup: startup.clone(),
        host_pid: env.host_pid,
        generation: env.generation,
        layout: env.segment.layout.clone(),
        // Children take plugin settings from `settings` and re-read the file on reload; the raw
        // plugin tables would only make every blob (and every child's decoding) bigger.
        config: Config {
            plugin_sections: Default::default(),
            ..env.cfg.clone()
        },
        registry: env.registry.clone(),
        settings: env.settings.clone(),
        client: client.as_ref().map(|c| (c.local.clone(), c.peer.clone())),
    };
    let blob = encode(&params);
    let raw = nix::sys::memfd::memfd_create(c"steward-params", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(std::io::Error::from)?;
    let mut file = std::fs::File::from(raw);
    file.write_all(&blob)?;
    file.rewind()?;

    let mut sources = vec![(dup_high(file.as_raw_fd())?, FD_BLOB)];
    sources.push((dup_high(env.segment.raw_fd())?, FD_SEGMENT));
    sources.push((dup_high(env.death_fd)?, FD_DEATH));
    if let Some(c) = &client {
        sources.push((dup_high(c.fd.as_raw_fd())?, FD_CLIENT));
    }

    // SAFETY: the file-actions and attribute objects are initialised before use and destroyed
    // after; every pointer passed to posix_spawn outlives the call. Raw libc: neither rustix nor
    // nix 0.29 wraps posix_spawn, and glibc's is the one that spawns with `CLONE_VFORK`.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut fa))?;
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawnattr_init(&mut attr))?;
        let result = (|| {
            for (src, dst) in &sources {
                check(libc::posix_spawn_file_actions_adddup2(&mut fa, src.as_raw_fd(), *dst))?;
            }
            // Default dispositions for everything (SIGPIPE is ignored in the supervisor, and no
            // handler survives an exec anyway), and the signals the supervisor sends blocked until
            // the child's handlers are installed (`child::run` unblocks them): with their default
            // action, a reload or stop landing while the child is still loading would kill it,
            // and a killed worker counts as a crash.
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &all))?;
            let blocked = crate::sys::spawn_blocked_signals();
            check(libc::posix_spawnattr_setsigmask(&mut attr, &blocked))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
            ))?;
            let argv = [
                prog.argv0.as_ptr() as *mut libc::c_char,
                prog.arg1.as_ptr() as *mut _,
                std::ptr::null_mut(),
            ];
            let mut envp: Vec<*mut libc::c_char> = prog.env.iter().map(|e| e.as_ptr() as *mut _).collect();
            envp.push(std::ptr::null_mut());
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                prog.path.as_ptr(),
                &fa,
                &attr,
                argv.as_ptr(),
                envp.as_ptr(),
            ))?;
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        result
    }
}

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
    crate::log::init(params.config.log_format, &params.config.log_level);
    crate::log::set_identity(params.kind.info().name, None);
    let client_fd = params.client.as_ref().map(|_| FD_CLIENT);
    if client_fd.is_some_and(|fd| !crate::sys::is_open(fd)) {
        eprintln!("steward child: the blob names a client socket but fd {FD_CLIENT} is not open");
        return crate::exit_code::USAGE;
    }

    // SAFETY: fd 4 is the segment the supervisor passed; ownership moves to `Segment`.
    let seg_fd = unsafe { OwnedFd::from_raw_fd(FD_SEGMENT) };
    let segment = match Segment::attach(seg_fd, &params.layout, params.generation, params.host_pid) {
        Ok(s) => s,
        Err(e @ crate::shmem::SegmentError::Corrupt { .. }) => {
            // Every child after this one would refuse it too: the supervisor must reset it.
            tracing::error!("{e}; exiting so that the host resets shared memory");
            return crate::shmem::EXIT_CORRUPT_SEGMENT;
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
    let needs_plugins = matches!(params.kind, ChildKind::Worker | ChildKind::Startup | ChildKind::Spare);
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
                crate::preload::attach(&cfg, registry, settings).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
    )
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
