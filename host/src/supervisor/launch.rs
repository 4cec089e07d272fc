//! `launch_child`: the one way the supervisor starts a process.
//!
//! Runs in: the supervisor (the launching half) and, for an instant, the new child.
//!
//! Every child kind is an entry in [`KINDS`](crate::shared::handoff::KINDS); the supervisor passes the kind, the child slot (for
//! kinds that attach to shared memory), the kind's startup data, and for connection kinds the
//! client socket. It gets the pid back and drops its copy of the client socket at once. In fork
//! mode the child continues from a copy of the supervisor and runs [`crate::child::run`]; in exec
//! mode it re-executes the `steward` binary with everything in a parameter blob
//! ([`crate::supervisor::spawn`]).

use std::os::fd::{AsRawFd, OwnedFd};

use crate::shared::config::LaunchMode;
use crate::shared::handoff::{ChildEnv, ChildKind, ChildStart, StartupData};

/// Starts a child of `kind`. Returns its pid; the client socket is closed in the caller either
/// way when `client` drops.
pub fn launch_child(env: &ChildEnv<'_>, start: ChildStart<'_>) -> std::io::Result<i32> {
    match env.cfg.launch_mode {
        LaunchMode::Fork => fork_child(env, start),
        LaunchMode::Exec => crate::supervisor::spawn::spawn(env, start),
    }
}

/// How long the supervisor waits for a fork helper before it kills it.
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Fork mode: a short-lived helper that forks part of a batch of workers while the supervisor
/// forks the rest, so that the page-table copying of a large batch runs on two cores. The helper is
/// forked from the supervisor like any child; each worker it creates is the supervisor's own child
/// (`CLONE_PARENT`), as if the supervisor had forked it (see decision 50).
pub struct ForkHelper {
    pid: i32,
    results: OwnedFd,
    slots: Vec<u32>,
}

/// How to create a process the way glibc's `fork` does, but as a child of the caller's parent:
/// the address of the thread's tid field (written by the kernel in the new process, as glibc's
/// `fork` has it written) and of its robust-futex list (registered again in the new process, as
/// glibc's `fork` does). Both addresses are learnt from the kernel, not from glibc's internals,
/// and are the same in the supervisor and in every process forked from it.
#[derive(Debug, Clone, Copy)]
pub struct SiblingFork {
    tid_addr: usize,
    robust_head: usize,
    robust_len: usize,
}

impl SiblingFork {
    /// What this process would need, or why it cannot have it (`PR_GET_TID_ADDRESS` needs a
    /// kernel built with checkpoint/restore support, as distribution kernels are).
    pub fn probe() -> Result<SiblingFork, String> {
        // `clone`'s argument order differs between architectures; only this one's is used.
        if !cfg!(target_arch = "x86_64") {
            return Err("a fork helper is only used on x86_64".into());
        }
        // The supervisor waits for a helper through a pidfd, with a deadline.
        if let Err(e) = crate::sys::wait_pid_exit(std::process::id() as i32, std::time::Duration::ZERO) {
            return Err(format!("pidfd_open: {e}"));
        }
        // A pid read from a child slot is taken only once /proc names the supervisor as its
        // parent: that /proc must be readable and this process's own (not another PID
        // namespace's, where the same number is someone else), so it must give this process's
        // parent as the kernel does.
        if crate::sys::parent_of(std::process::id() as i32)
            != Some(rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()))
        {
            return Err(
                "/proc does not show this process's own parent, so a helper's workers could not be checked".into(),
            );
        }
        let tid_addr = match rustix::thread::get_clear_child_tid_address() {
            Ok(addr) => addr.map_or(0, |p| p.as_ptr() as usize),
            Err(e) => return Err(format!("prctl(PR_GET_TID_ADDRESS): {}", std::io::Error::from(e))),
        };
        let mut robust_head: usize = 0;
        let mut robust_len: usize = 0;
        // Raw, because neither rustix nor nix wraps get_robust_list (a call only a fork
        // implementation needs).
        // SAFETY: get_robust_list(0, ..) only writes this thread's list head and its length to
        // the two out-parameters, which are live locals of the right size.
        let got = unsafe {
            libc::syscall(
                libc::SYS_get_robust_list,
                0,
                &mut robust_head as *mut usize,
                &mut robust_len as *mut usize,
            )
        };
        if got != 0 {
            return Err(format!("get_robust_list: {}", std::io::Error::last_os_error()));
        }
        // The tid field must hold this thread's id, or it is not glibc's.
        let tid = rustix::thread::gettid().as_raw_pid();
        if tid_addr == 0
            || robust_head == 0
            // SAFETY: the address is this thread's own tid field, in mapped memory.
            || unsafe { std::ptr::read_volatile(tid_addr as *const libc::pid_t) } != tid
        {
            return Err("the thread's tid and robust-list addresses are not what glibc's fork sets".into());
        }
        Ok(SiblingFork {
            tid_addr,
            robust_head,
            robust_len,
        })
    }

    /// `fork`, but the new process is a child of this process's parent. The kernel also writes
    /// the new pid to `pid_out` (shared memory the supervisor reads) before this returns.
    ///
    /// # Safety
    /// As for `fork`; the calling process must be single-threaded and forked (by glibc's `fork`)
    /// from the process `probe` ran in.
    unsafe fn fork(self, pid_out: &std::sync::atomic::AtomicI32) -> i64 {
        let flags = libc::CLONE_PARENT
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_SETTID
            | libc::CLONE_CHILD_CLEARTID
            | libc::SIGCHLD;
        // SAFETY: the flags glibc's fork passes, plus CLONE_PARENT and CLONE_PARENT_SETTID; no new
        // stack, so the child continues on a copy of this one; the kernel writes the child's tid
        // to its own tid field, and to `pid_out`, a live atomic in the shared segment. x86_64
        // order: flags, stack, parent tid, child tid, tls. Raw system calls because this is a fork
        // implementation: no library wraps a clone whose child goes on running on the caller's
        // stack, nor set_robust_list, which the child makes before it runs anything else.
        unsafe {
            let pid = libc::syscall(
                libc::SYS_clone,
                flags as libc::c_ulong,
                0usize,
                pid_out.as_ptr(),
                self.tid_addr,
                0usize,
            );
            if pid == 0 {
                libc::syscall(libc::SYS_set_robust_list, self.robust_head, self.robust_len);
            }
            pid
        }
    }
}

/// Forks a helper that launches the workers of `slots` (a worker's child slot is its worker slot,
/// already assigned), or returns why not. The supervisor then forks its own share and calls
/// [`ForkHelper::finish`].
pub fn start_fork_helper(env: &ChildEnv<'_>, sib: SiblingFork, slots: Vec<u32>) -> std::io::Result<ForkHelper> {
    // Non-blocking: after the helper is gone, the supervisor reads what is there and stops.
    let (r, w) = crate::sys::pipe()?;
    // No supervisor handler ever runs in the helper (a terminal's Ctrl-C reaches the whole
    // group): its signals are blocked from before the fork, and stay blocked in the workers it
    // creates until each has set its own dispositions.
    let old = crate::sys::block_all_signals();
    // SAFETY: the supervisor is single-threaded; the helper only forks and writes to a pipe,
    // then `_exit`s. glibc's fork (which nix's fork merely wraps), not a raw clone: it also runs
    // glibc's own bookkeeping for the child (locks, cached ids), which `SiblingFork::fork` requires.
    let pid = unsafe { libc::fork() };
    if pid != 0 {
        let e = std::io::Error::last_os_error();
        crate::sys::restore_mask(&old);
        if pid < 0 {
            return Err(e);
        }
    }
    match pid {
        0 => {
            drop(r);
            // Nothing of the supervisor's stays open here (its listener, lock file, the write end
            // of the host-death pipe), and the helper dies with the supervisor, as any child does.
            crate::sys::close_all_except(&[env.segment.raw_fd(), env.death_fd, w.as_raw_fd()]);
            if !crate::sys::die_with_parent(env.host_pid) {
                crate::child::exit(1);
            }
            for &slot in &slots {
                // SAFETY: this helper is single-threaded and was forked by glibc from the
                // supervisor, where `sib` was probed.
                let pid = unsafe { sib.fork(env.segment.child_slot(slot).pid_word()) };
                if pid == 0 {
                    // The supervisor gives a helper no isolated worker (see `batch`).
                    let startup = StartupData::Worker {
                        worker_slot: slot,
                        isolated: false,
                    };
                    become_child(
                        env,
                        ChildStart {
                            kind: ChildKind::Worker,
                            child_slot: Some(slot),
                            startup: &startup,
                            client: None,
                        },
                    );
                }
                let result = if pid < 0 {
                    Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN))
                } else {
                    Ok(pid as i32)
                };
                // One record per worker, at once: should this helper be killed, only a worker
                // created in that instant goes unreported.
                let _ = nix::unistd::write(&w, &crate::shared::protocol::fork_record(slot, result));
            }
            crate::child::exit(0)
        }
        pid => Ok(ForkHelper { pid, results: r, slots }),
    }
}

impl ForkHelper {
    /// Waits for the helper and returns each slot's pid or launch error.
    ///
    /// The helper only forks, so it ends within milliseconds. One that does not (stopped by a
    /// debugger or SIGSTOP) must not hold up the supervisor's loop: after `HELPER_TIMEOUT` it is
    /// killed. A worker it created but did not report is still known by the pid the kernel wrote
    /// into its child slot (cleared by the supervisor before the helper started); the others are
    /// launch failures, retried like any other. Every pid returned was checked to be a child of
    /// this process (see `protocol::fork_helper_results`); the caller still checks it is not one
    /// it tracks (`protocol::admit_pid`).
    pub fn finish(self, segment: &crate::shared::shmem::Segment) -> Vec<(u32, std::io::Result<i32>)> {
        if !matches!(crate::sys::wait_pid_exit(self.pid, HELPER_TIMEOUT), Ok(true)) {
            // SAFETY: signalling this process's own child, which has not been reaped.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: waits for this process's own child, by pid.
        while unsafe { libc::waitpid(self.pid, &mut status, 0) } == -1
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
        // The helper is gone, so everything it wrote is in the pipe.
        let mut buf = vec![0u8; self.slots.len() * 8];
        let mut got = 0;
        let mut f = std::fs::File::from(self.results);
        while got < buf.len() {
            match std::io::Read::read(&mut f, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let me = std::process::id() as i32;
        crate::shared::protocol::fork_helper_results(
            &self.slots,
            &buf[..got],
            |s| segment.child_slot(s).report().pid,
            |pid| crate::sys::parent_of(pid) == Some(me),
            status,
        )
    }
}

/// A forked child's life: keep only its own fds, run, and end with `_exit`.
fn become_child(env: &ChildEnv<'_>, start: ChildStart<'_>) -> ! {
    let client_fd = start.client.as_ref().map_or(-1, |c| c.fd.as_raw_fd());
    crate::sys::close_all_except(&[env.segment.raw_fd(), env.death_fd, client_fd]);
    // A panic must end this child here: unwinding further would run the supervisor's loop (and
    // drop its fork-private tables, which this process does not have). Exit code 101, as for a
    // panic in an exec-mode child's `main`.
    let run = std::panic::AssertUnwindSafe(|| {
        crate::child::run(
            env,
            start.kind,
            start.child_slot,
            start.startup,
            start.client,
            || Ok(()),
        )
    });
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    crate::child::exit(code)
}

fn fork_child(env: &ChildEnv<'_>, start: ChildStart<'_>) -> std::io::Result<i32> {
    // Every signal stays blocked from before the fork until the child has its own handlers
    // (`child::run` unblocks): a signal sent to the new pid in between would otherwise run the
    // supervisor's handler in the child, which only sets a flag nobody there reads, and be lost.
    let old = crate::sys::block_all_signals();
    // SAFETY: the supervisor is single-threaded, so the child inherits no lock held by another
    // thread; it runs `child::run` and ends with `_exit`, never returning into the event loop.
    // glibc's fork, as in `start_fork_helper`: the child goes on to use std and the allocator.
    let pid = unsafe { libc::fork() };
    match pid {
        0 => become_child(env, start),
        -1 => {
            let e = std::io::Error::last_os_error();
            crate::sys::restore_mask(&old);
            Err(e)
        }
        pid => {
            crate::sys::restore_mask(&old);
            Ok(pid)
        }
    }
}
