//! Exec launch mode, the supervisor's half: start a child that re-executes the `steward` binary
//! and finds everything again by name.
//!
//! Runs in: the supervisor only. The child's half is [`crate::child::exec_main`]; the blob both
//! read is [`crate::shared::handoff`].
//!
//! Nothing is inherited but what is passed on purpose. The supervisor writes one versioned
//! parameter blob into a memfd and starts the binary with `posix_spawn` (glibc implements it with
//! `clone(CLONE_VM | CLONE_VFORK)`, so the cost does not grow with the supervisor's memory). The
//! child's fds are exactly: stdio, the blob ([`FD_BLOB`], closed once read), the segment
//! ([`FD_SEGMENT`]), the host-death pipe ([`FD_DEATH`]) and, for connection kinds, the client
//! socket ([`FD_CLIENT`]); every other fd of the supervisor is close-on-exec.

use std::ffi::CString;
use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use crate::shared::config::Config;
use crate::shared::handoff::{encode, ChildEnv, ChildStart, Params, FD_BLOB, FD_CLIENT, FD_DEATH, FD_SEGMENT};

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
pub fn spawn(env: &ChildEnv<'_>, start: ChildStart<'_>) -> std::io::Result<i32> {
    let ChildStart {
        kind,
        child_slot,
        startup,
        client,
    } = start;
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
