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
use crate::shared::handoff::{ChildEnv, ChildKind, ClientSocket, StartupData};

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
        LaunchMode::Exec => crate::supervisor::spawn::spawn(env, kind, child_slot, startup, client),
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
                let pid = unsafe { sib.fork(&env.segment.child_slot(slot).pid) };
                if pid == 0 {
                    become_child(
                        env,
                        ChildKind::Worker,
                        Some(slot),
                        &StartupData::Worker { worker_slot: slot },
                        None,
                    );
                }
                let v = if pid < 0 {
                    -std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN)
                } else {
                    pid as i32
                };
                // One record per worker, at once: should this helper be killed, only a worker
                // created in that instant goes unreported. A pipe takes 8 bytes atomically.
                let mut rec = [0u8; 8];
                rec[..4].copy_from_slice(&slot.to_ne_bytes());
                rec[4..].copy_from_slice(&v.to_ne_bytes());
                let _ = nix::unistd::write(&w, &rec);
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
    /// this process (see `reported_results`); the caller still checks it is not one it tracks.
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
        reported_results(
            &self.slots,
            &buf[..got],
            |s| segment.child_slot(s).pid.load(std::sync::atomic::Ordering::Acquire),
            |pid| crate::sys::parent_of(pid) == Some(me),
            status,
        )
    }
}

/// Why a pid that a fork helper reported, or that a child slot holds, is not taken as a new
/// worker's.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("child slot {slot} claims pid {pid}, which is not a child of the supervisor")]
    NotOwnChild { slot: u32, pid: i32 },
    #[error("child slot {slot} claims pid {pid}, already claimed for child slot {other}")]
    Duplicate { slot: u32, pid: i32, other: u32 },
    #[error("the fork helper reported {value} for child slot {slot}, neither a pid nor an errno")]
    Malformed { slot: u32, value: i32 },
    #[error("the fork helper ended early (wait status {status:#x})")]
    HelperEnded { status: i32 },
}

/// Turns a fork helper's records (8 bytes each: slot, then pid or minus errno) into one result
/// per slot of `batch`.
///
/// A record for a slot outside the batch, or a second record for a slot, is dropped; a slot the
/// helper did not report falls back to `slot_pid`, which reads shared memory that every worker
/// can write. A pid from there is kept only if `is_own_child` confirms the supervisor is its
/// parent, and any pid only if no other slot of the batch has it, so a forged one can never make
/// the supervisor signal a process that is not its child. A worker created but refused here is still the supervisor's child: its next scan finds
/// it as an adopted process, so it is neither lost nor left running.
fn reported_results(
    batch: &[u32],
    records: &[u8],
    slot_pid: impl Fn(u32) -> i32,
    is_own_child: impl Fn(i32) -> bool,
    status: i32,
) -> Vec<(u32, std::io::Result<i32>)> {
    let mut reported: Vec<(u32, i32)> = Vec::with_capacity(batch.len());
    for rec in records.chunks_exact(8) {
        let slot = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let v = i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]);
        if !batch.contains(&slot) {
            tracing::warn!("ignoring a fork helper's report for child slot {slot}, which it was not given");
            continue;
        }
        if reported.iter().any(|(s, _)| *s == slot) {
            tracing::warn!("ignoring a fork helper's second report for child slot {slot}");
            continue;
        }
        reported.push((slot, v));
    }
    let mut out: Vec<(u32, std::io::Result<i32>)> = Vec::with_capacity(batch.len());
    for &slot in batch {
        // Only a pid read from shared memory costs a look at /proc: the helper's pipe is private
        // to it and the supervisor (its workers close every fd they were not given), so what
        // arrives there was written by the supervisor's own code, and a batch of hundreds is not
        // slowed by hundreds of file reads.
        let (result, from_slot) = match reported.iter().find(|(s, _)| *s == slot).map(|(_, v)| *v) {
            Some(v) if v > 0 => (Ok(v), false),
            // An errno, as the helper writes it: minus a positive value below 4096.
            Some(v) if (-4095..0).contains(&v) => (Err(std::io::Error::from_raw_os_error(-v)), false),
            Some(value) => (Err(std::io::Error::other(ClaimError::Malformed { slot, value })), false),
            None => match slot_pid(slot) {
                pid if pid > 0 => (Ok(pid), true),
                _ => (Err(std::io::Error::other(ClaimError::HelperEnded { status })), false),
            },
        };
        let result = result.and_then(|pid| {
            if let Some(other) = out.iter().find(|(_, r)| r.as_ref().is_ok_and(|p| *p == pid)) {
                let other = other.0;
                return Err(std::io::Error::other(ClaimError::Duplicate { slot, pid, other }));
            }
            if from_slot && !is_own_child(pid) {
                return Err(std::io::Error::other(ClaimError::NotOwnChild { slot, pid }));
            }
            Ok(pid)
        });
        out.push((slot, result));
    }
    out
}

/// A forked child's life: keep only its own fds, run, and end with `_exit`.
fn become_child(
    env: &ChildEnv<'_>,
    kind: ChildKind,
    child_slot: Option<u32>,
    startup: &StartupData,
    client: Option<ClientSocket>,
) -> ! {
    let client_fd = client.as_ref().map_or(-1, |c| c.fd.as_raw_fd());
    crate::sys::close_all_except(&[env.segment.raw_fd(), env.death_fd, client_fd]);
    // A panic must end this child here: unwinding further would run the supervisor's loop (and
    // drop its fork-private tables, which this process does not have). Exit code 101, as for a
    // panic in an exec-mode child's `main`.
    let run = std::panic::AssertUnwindSafe(|| crate::child::run(env, kind, child_slot, startup, client, || Ok(())));
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    crate::child::exit(code)
}

fn fork_child(
    env: &ChildEnv<'_>,
    kind: ChildKind,
    child_slot: Option<u32>,
    startup: &StartupData,
    client: Option<ClientSocket>,
) -> std::io::Result<i32> {
    // Every signal stays blocked from before the fork until the child has its own handlers
    // (`child::run` unblocks): a signal sent to the new pid in between would otherwise run the
    // supervisor's handler in the child, which only sets a flag nobody there reads, and be lost.
    let old = crate::sys::block_all_signals();
    // SAFETY: the supervisor is single-threaded, so the child inherits no lock held by another
    // thread; it runs `child::run` and ends with `_exit`, never returning into the event loop.
    // glibc's fork, as in `start_fork_helper`: the child goes on to use std and the allocator.
    let pid = unsafe { libc::fork() };
    match pid {
        0 => become_child(env, kind, child_slot, startup, client),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(slot: u32, v: i32) -> Vec<u8> {
        let mut r = slot.to_ne_bytes().to_vec();
        r.extend_from_slice(&v.to_ne_bytes());
        r
    }

    /// Results as (slot, pid or the error's text), for comparing.
    fn run(batch: &[u32], records: &[u8], in_slots: &[(u32, i32)], own: &[i32]) -> Vec<(u32, Result<i32, String>)> {
        let slot_pid = |s| in_slots.iter().find(|(x, _)| *x == s).map_or(0, |(_, p)| *p);
        reported_results(batch, records, slot_pid, |p| own.contains(&p), 0x9)
            .into_iter()
            .map(|(s, r)| (s, r.map_err(|e| e.to_string())))
            .collect()
    }

    #[test]
    fn reported_pids_of_own_children_are_kept_and_errnos_become_errors() {
        let records = [rec(4, 100), rec(5, -libc::EAGAIN)].concat();
        let out = run(&[4, 5], &records, &[], &[100]);
        assert_eq!(out[0], (4, Ok(100)));
        assert_eq!(out[1].0, 5);
        let e = out[1].1.as_ref().unwrap_err();
        assert!(e.contains("Resource temporarily unavailable"), "{e}");
    }

    /// A worker may overwrite any child slot with any pid: one the supervisor did not create is
    /// refused, so it is never tracked, and so never signalled.
    #[test]
    fn a_pid_that_is_not_the_supervisors_child_is_refused() {
        // The helper reported slot 4 and ended before slot 5; slot 5 names init.
        let out = run(&[4, 5], &rec(4, 100), &[(5, 1)], &[100]);
        assert_eq!(out[0], (4, Ok(100)));
        assert_eq!(
            out[1],
            (
                5,
                Err("child slot 5 claims pid 1, which is not a child of the supervisor".into())
            )
        );
        // The helper's own report comes through its private pipe and is taken without a look
        // at /proc (here: a pid the check would refuse).
        let out = run(&[4], &rec(4, 100), &[], &[]);
        assert_eq!(out[0], (4, Ok(100)));
    }

    #[test]
    fn one_pid_is_taken_for_one_slot_only() {
        // Slot 5's worker wrote slot 4's pid into its own slot before the helper reported it.
        let out = run(&[4, 5], &rec(4, 100), &[(5, 100)], &[100]);
        assert_eq!(out[0], (4, Ok(100)));
        assert_eq!(
            out[1],
            (
                5,
                Err("child slot 5 claims pid 100, already claimed for child slot 4".into())
            )
        );
    }

    #[test]
    fn records_for_other_slots_twice_or_out_of_range_are_ignored() {
        let records = [rec(9, 300), rec(4, 100), rec(4, 200), rec(5, i32::MIN), rec(6, 0)].concat();
        let out = run(&[4, 5, 6, 7], &records, &[], &[100, 200, 300]);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], (4, Ok(100)));
        assert_eq!(
            out[1],
            (
                5,
                Err(format!(
                    "the fork helper reported {} for child slot 5, neither a pid nor an errno",
                    i32::MIN
                ))
            )
        );
        assert!(out[2].1.as_ref().unwrap_err().contains("reported 0 for child slot 6"));
        // Not reported, and nothing in its slot.
        assert_eq!(out[3], (7, Err("the fork helper ended early (wait status 0x9)".into())));
    }
}
