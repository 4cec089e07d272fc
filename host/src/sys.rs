//! Thin wrappers over the OS mechanisms the host uses: signal flags with a self-pipe, the signal
//! mask around a child's creation, fd hygiene (`close_range`), parent-death detection, and the
//! child subreaper's view of its children.
//!
//! Runs in: the supervisor (signals, self-pipe) and children (signal reset, parent death).
//!
//! Signal handlers here only set a bit and write one byte to a non-blocking pipe (`write(2)` is
//! async-signal-safe); all work happens in the event loop that polls the pipe's read end.
//!
//! System calls go through `rustix`'s safe wrappers (plain system calls that allocate nothing, so
//! fine in a child just after `fork`); handlers are installed with `nix`. Raw `libc` is left where
//! a call must be exactly that (in a signal handler, masks `posix_spawn` takes) or has no wrapper
//! (`close_range`), and for `read`/`fcntl` on raw fds, which a wrapper could only reach through an
//! unsafe borrow of the fd.

pub mod hugetext;

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::pipe::PipeFlags;
use rustix::thread::futex;

/// Bits in the pending-signal mask.
pub const SIG_CHLD: u32 = 1 << 0;
pub const SIG_TERM: u32 = 1 << 1;
pub const SIG_INT: u32 = 1 << 2;
pub const SIG_QUIT: u32 = 1 << 3;
pub const SIG_HUP: u32 = 1 << 4;
pub const SIG_USR1: u32 = 1 << 5;

static PENDING: AtomicU32 = AtomicU32::new(0);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

fn bit_for(sig: i32) -> u32 {
    match sig {
        libc::SIGCHLD => SIG_CHLD,
        libc::SIGTERM => SIG_TERM,
        libc::SIGINT => SIG_INT,
        libc::SIGQUIT => SIG_QUIT,
        libc::SIGHUP => SIG_HUP,
        libc::SIGUSR1 => SIG_USR1,
        _ => 0,
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let saved = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    PENDING.fetch_or(bit_for(sig), Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe, and writes one byte from a local to the fd the
        // handler was given; a full pipe (EAGAIN) already means "wake up". Raw libc on purpose:
        // the handler holds only a raw fd from an atomic, and must call nothing but a plain
        // system call.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
    // SAFETY: restoring errno, which the interrupted code may be about to read; libc's errno
    // location is this thread's and always valid.
    unsafe { *libc::__errno_location() = saved };
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

/// A non-blocking, close-on-exec eventfd: a latch that a signal handler sets with one `write(2)`
/// of 8 bytes. One fd and no pipe buffer, so it is cheaper to create than a pipe in every child.
pub fn eventfd() -> std::io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(
        0,
        EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
    )?)
}

/// Installs the supervisor's handlers, waking the loop through `wake` (the self-pipe's write end).
pub fn install_supervisor_signals(wake: &OwnedFd) -> nix::Result<()> {
    WAKE_FD.store(wake.as_raw_fd(), Ordering::SeqCst);
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        // SAFETY: the handler only touches atomics and calls write(2).
        unsafe { sigaction(sig, &act)? };
    }
    // SAFETY: ignoring SIGPIPE is always sound; writes to a closed socket return EPIPE instead.
    unsafe {
        sigaction(
            Signal::SIGPIPE,
            &SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty()),
        )?
    };
    Ok(())
}

/// Takes and clears the pending-signal bits.
pub fn take_pending() -> u32 {
    PENDING.swap(0, Ordering::SeqCst)
}

/// Reads everything queued on a non-blocking fd (the self-pipe, or a latch eventfd).
pub fn drain(fd: RawFd) {
    let mut buf = [0u8; 256];
    // SAFETY: reading into a local buffer from an fd we own; stops on EAGAIN or EOF.
    while unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } > 0 {}
}

/// Sets a child's signal dispositions in one pass: each signal in `set` gets its handler (or
/// `SIG_IGN`), every other signal the supervisor handles goes back to its default, and all signals
/// are unblocked. The first thing every child does (a forked one inherits the supervisor's).
///
/// A child starts with signals blocked (all of them after a `fork`, those of
/// [`spawn_blocked_signals`] after an exec) and unblocks them only here, after its dispositions
/// are set: a signal sent in between waits, and then reaches the child's own handler.
pub fn reset_child_signals(set: &[(libc::c_int, libc::sighandler_t)]) {
    // Nothing in a child reads the pending mask, and the wake pipe is the supervisor's.
    WAKE_FD.store(-1, Ordering::SeqCst);
    for sig in [
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGPIPE,
        // std's stack-overflow handler returns when SIGSEGV or SIGBUS was sent with kill(2), which
        // would swallow the signal; a child must die of it like any other program.
        libc::SIGSEGV,
        libc::SIGBUS,
    ] {
        let handler = set.iter().find(|(s, _)| *s == sig).map_or(libc::SIG_DFL, |(_, h)| *h);
        // SAFETY: an all-zero sigaction is a valid "no flags, empty mask"; the handlers callers
        // pass only touch atomics and call async-signal-safe functions. Raw libc: rustix has no
        // sigaction, and the table's handlers are libc values (`SIG_DFL`, `SIG_IGN`, `extern "C"`
        // functions) that go into the struct as they are; the call allocates nothing.
        // The result is not looked at: sigaction fails only for a signal that cannot be caught
        // (none of these) or a bad pointer (these are locals).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler;
            // As signal(3) does: interrupted system calls restart.
            sa.sa_flags = if handler == libc::SIG_DFL { 0 } else { libc::SA_RESTART };
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // SAFETY: an all-zero sigset_t is the empty set on Linux. Raw libc, as every signal mask
    // here: the masks are libc `sigset_t`s because `posix_spawnattr_setsigmask` takes one.
    // sigprocmask fails only for an unknown `how` or a bad pointer, so its result is not looked
    // at, here and in the functions below.
    unsafe {
        let empty: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Blocks every signal in this process and returns the mask it had, for [`restore_mask`].
///
/// The supervisor holds every signal across a `fork`, so that none reaches the new child before
/// the child has replaced the supervisor's handlers (a SIGTERM handled there by the supervisor's
/// handler would be lost); the child unblocks in [`reset_child_signals`].
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigfillset fills a local set; sigprocmask only writes the old mask to a local.
    // Neither can fail with these arguments (sigfillset never fails on Linux).
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

/// Puts back a mask [`block_all_signals`] returned; signals that arrived meanwhile run now.
pub fn restore_mask(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask sigprocmask returned.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// The signals an exec-mode child is started with blocked: those the supervisor sends (and a
/// terminal's Ctrl-C), whose default action would kill the child before its handlers are in
/// place. [`reset_child_signals`] unblocks them.
pub fn spawn_blocked_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset only write the local set; they fail only for a pointer
    // that is null or a signal number out of range, neither of which these are.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGHUP, libc::SIGTERM, libc::SIGQUIT, libc::SIGINT] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// The test-only environment variable that delays every new worker process just before it installs
/// its own signal handlers, while its signals are still blocked (see [`test_child_signal_delay`]).
pub const TEST_CHILD_SIGNAL_DELAY_ENV: &str = "STEWARD_TEST_CHILD_SIGNAL_DELAY_MS";

/// Milliseconds read from [`TEST_CHILD_SIGNAL_DELAY_ENV`] by [`load_test_knobs`]; 0 when unset.
static CHILD_SIGNAL_DELAY_MS: AtomicU32 = AtomicU32::new(0);

/// Reads the test-only knobs from the environment, once per process (the supervisor before its
/// first fork, an exec-mode child at its start), so that no launch pays for reading them.
/// Values above 10 s are capped: a typo must not hold every child for hours.
pub fn load_test_knobs() {
    let ms = std::env::var(TEST_CHILD_SIGNAL_DELAY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
        .min(10_000);
    CHILD_SIGNAL_DELAY_MS.store(ms, Ordering::Relaxed);
}

/// Test-only: waits the configured delay in a new worker process at the point where a signal used to be
/// lost (after the fork or exec, before the child's own handlers are installed). A test sends
/// signals then and checks that each is handled once the handlers are in place.
pub fn test_child_signal_delay() {
    let ms = CHILD_SIGNAL_DELAY_MS.load(Ordering::Relaxed);
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms.into()));
    }
}

/// Closes every fd from 3 up except those in `keep` (negative entries are ignored): a forked
/// child's first act, so that it holds exactly the fds meant for it (nothing of the supervisor's,
/// nothing the host inherited). Allocates nothing: every page a forked child writes is copied.
pub fn close_all_except(keep: &[RawFd]) {
    let mut sorted = [RawFd::MAX; 8];
    let mut n = 0;
    for &fd in keep.iter().filter(|fd| **fd > 2) {
        assert!(n < sorted.len(), "close_all_except keeps at most 8 fds");
        sorted[n] = fd;
        n += 1;
    }
    let sorted = &mut sorted[..n];
    sorted.sort_unstable();
    let mut from: u32 = 3;
    for &mut fd in sorted {
        let fd = fd as u32;
        if fd > from {
            close_fds(from, fd - 1);
        }
        from = from.max(fd + 1);
    }
    close_fds(from, u32::MAX);
}

/// Closes fds `first..=last` with `close_range`, or, where the kernel has none (before Linux 5.9)
/// or a filter refuses it, each open one found in `/proc/self/fd`: a child must never keep an fd
/// of the supervisor's because the fast way failed.
fn close_fds(first: u32, last: u32) {
    // SAFETY: close_range on fds this process owns; nothing refers to them afterwards (the child
    // ends with _exit and never drops the supervisor's owning objects). A raw system call:
    // neither rustix nor nix wraps close_range, and it allocates nothing.
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) } == 0 {
        return;
    }
    if close_listed(first, last) {
        return;
    }
    // No /proc either: every number up to the soft limit on open files, capped so that a limit
    // of 2^30 (some containers) does not mean a billion calls. An fd above both is kept: the
    // last resort of a machine with neither close_range nor /proc.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 20) as u32;
    for fd in first..=last.min(limit.saturating_sub(1)) {
        // SAFETY: as above; EBADF for an fd that is not open is the expected answer.
        unsafe { libc::close(fd as RawFd) };
    }
}

/// Closes the open fds in `first..=last` that `/proc/self/fd` lists, reading the directory with
/// raw `getdents64` into a stack buffer: no allocation and no lock, so it is safe in a forked
/// child, as glibc's `closefrom` fallback and CPython's do it. Closing an fd while the listing
/// goes on is fine: procfs continues from the next fd number. False when `/proc` cannot be
/// opened.
fn close_listed(first: u32, last: u32) -> bool {
    // SAFETY: open of a NUL-terminated constant path; the fd is closed below.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return false;
    }
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`, which lives on this
        // stack frame; `dir` is the directory opened above.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0usize;
        while at + 19 < n as usize {
            // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 || at + reclen > n as usize {
                break;
            }
            let name = &buf[at + 19..at + reclen];
            let mut fd: u32 = 0;
            let mut digits = 0;
            for &c in name.iter().take_while(|c| **c != 0) {
                if !c.is_ascii_digit() {
                    digits = 0;
                    break;
                }
                fd = fd.saturating_mul(10).saturating_add(u32::from(c - b'0'));
                digits += 1;
            }
            if digits > 0 && (first..=last).contains(&fd) && fd as RawFd != dir {
                // SAFETY: as in `close_fds`.
                unsafe { libc::close(fd as RawFd) };
            }
            at += reclen;
        }
    }
    // SAFETY: the directory fd opened above, closed once.
    unsafe { libc::close(dir) };
    true
}

/// Marks every fd from 3 up close-on-exec: fds the host inherited from whoever started it must
/// not reach exec-mode children. Where the kernel has no `CLOSE_RANGE_CLOEXEC` (before Linux
/// 5.11), each fd listed in `/proc/self/fd` is marked; an fd that cannot be is named in the log.
pub fn cloexec_inherited() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags (raw: no wrapper, as above).
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } == 0 {
        return;
    }
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list /proc/self/fd ({e}): inherited fds may reach exec-mode children");
            return;
        }
    };
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only read and set this fd's flags; the fd that listed the
        // directory is closed by now and fails harmlessly with EBADF.
        let set = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) == 0
        };
        if !set {
            let e = std::io::Error::last_os_error();
            tracing::warn!("cannot mark inherited fd {fd} close-on-exec ({e}): it may reach exec-mode children");
        }
    }
}

/// Whether `fd` is open in this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Asks the kernel to SIGKILL this process when its parent dies, then checks that the parent is
/// still `host_pid` (it may have died before the request). Returns false if it is already gone.
pub fn die_with_parent(host_pid: i32) -> bool {
    // Cannot fail with a valid signal; the parent check below covers the rest. Both calls are
    // plain system calls that allocate nothing, as a child straight after a fork needs.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    rustix::process::Pid::as_raw(rustix::process::getppid()) == host_pid
}

/// Makes this process the child subreaper of everything it starts: a process whose parent dies
/// (a worker's own child that outlives the worker) becomes this process's child instead of init's,
/// so the supervisor can reap it and stop it at shutdown.
pub fn become_subreaper() -> std::io::Result<()> {
    // The argument is a flag, not a pid: any non-zero value turns the attribute on.
    Ok(rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(1))?)
}

/// The pids of this (single-threaded) process's live children, from
/// `/proc/self/task/<tid>/children`, or, on a kernel without that file, from every process's
/// parent in `/proc`. What `/proc` says is read as untrusted text: anything but a positive pid is
/// skipped.
pub fn own_children() -> Vec<i32> {
    let (tid, pid) = (rustix::thread::gettid().as_raw_pid(), std::process::id() as i32);
    let parse = |text: &str| -> Vec<i32> {
        text.split_ascii_whitespace()
            .filter_map(|w| w.parse::<i32>().ok())
            .filter(|p| *p > 0)
            .collect()
    };
    if let Ok(text) = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")) {
        return parse(&text);
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// The parent of process `pid`, from `/proc/<pid>/stat`; `None` for a pid that is not positive,
/// a process that is gone, or a file that does not parse. A zombie keeps its parent until it is
/// reaped, so a child that has already exited still counts as the caller's.
pub fn parent_of(pid: i32) -> Option<i32> {
    if pid <= 0 {
        return None;
    }
    parse_stat_ppid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The ppid field of a `/proc/<pid>/stat` line: `pid (comm) state ppid ...`. `comm` is chosen by
/// the process and may hold spaces and parentheses, so the fields are split after the last `)`.
fn parse_stat_ppid(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_ascii_whitespace().nth(1)?.parse::<i32>().ok()
}

/// Clears `O_NONBLOCK` on a socket a child inherited non-blocking.
///
/// Nothing to report: both calls fail only with `EBADF`, and the caller holds `fd`.
pub fn set_blocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL on an fd we hold.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

/// Clears `FD_CLOEXEC` so the fd survives an exec (only the fds meant for an exec-mode child).
pub fn clear_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: F_SETFD on an fd we hold.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Polls `fds` for input; `timeout_ms < 0` waits forever. Returns the revents per fd (all zero
/// on a timeout or an interruption).
///
/// Every fd in `fds` must stay open for the duration of the call (callers pass fds they hold).
pub fn poll_in(fds: &[RawFd], timeout_ms: i32) -> Vec<i16> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        // SAFETY: the caller keeps each fd open until this function returns, which is as long as
        // the borrow lives.
        .map(|&fd| PollFd::from_borrowed_fd(unsafe { BorrowedFd::borrow_raw(fd) }, PollFlags::IN))
        .collect();
    let timeout = (timeout_ms >= 0).then(|| Timespec {
        tv_sec: (timeout_ms / 1000).into(),
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as _,
    });
    // An error reads as "nothing yet": EINTR is that; EFAULT and EINVAL cannot happen with this
    // array; ENOMEM passes. Every caller looks again, with its own deadline.
    match rustix::event::poll(&mut pfds, timeout.as_ref()) {
        Ok(n) if n > 0 => pfds.iter().map(|p| p.revents().bits() as i16).collect(),
        _ => vec![0; fds.len()],
    }
}

/// Waits until process `pid` has exited or `timeout` has passed; `Ok(true)` once it has exited (a
/// zombie counts, and so does a pid that no longer exists). Event-driven: a pidfd becomes readable
/// when its process exits. `Err` if the kernel gives no pidfd for another reason.
pub fn wait_pid_exit(pid: i32, timeout: std::time::Duration) -> std::io::Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    // pidfd_open(2) refuses anything but a positive pid with EINVAL; so does this, before `Pid`
    // (which holds only positive pids) is built.
    let Some(target) = (pid > 0).then(|| rustix::process::Pid::from_raw(pid)).flatten() else {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    };
    let fd = match rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(true),
        Err(e) => return Err(e.into()),
    };
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        if poll_in(&[fd.as_raw_fd()], ms)[0] != 0 {
            return Ok(true);
        }
        if left.is_zero() {
            return Ok(false);
        }
    }
}

/// `futex(FUTEX_WAIT)` on a word in shared memory: sleeps while `*word == expected`, at most
/// `timeout` (`None`: until woken or interrupted by a signal). Spurious returns are fine; callers
/// re-check.
///
/// Not `FUTEX_PRIVATE_FLAG`: the word lives in the shared segment and another process (the
/// supervisor) wakes it; a private futex is keyed by this process's address space and would never
/// see that wake.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<std::time::Duration>) {
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: t.subsec_nanos() as _,
    });
    // EAGAIN (the word already changed), EINTR and ETIMEDOUT all mean "look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// `futex(FUTEX_WAKE)` on a shared word (see [`futex_wait`]): wakes one waiter. Never blocks.
pub fn futex_wake(word: &AtomicU32) {
    // Fails only for a bad address or flags; `word` is a live reference and the flags are fixed.
    let _ = futex::wake(word, futex::Flags::empty(), 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    #[test]
    fn the_parent_is_read_after_the_last_parenthesis() {
        assert_eq!(parse_stat_ppid("42 (a) b) R 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("42 (w) S 99 42"), Some(99));
        assert_eq!(parse_stat_ppid("42 (w) S"), None);
        assert_eq!(parse_stat_ppid("garbage"), None);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Exited but not reaped: a zombie still names its parent.
        assert!(wait_pid_exit(pid, Duration::from_secs(10)).unwrap());
        assert_eq!(parent_of(pid), Some(std::process::id() as i32));
        child.wait().unwrap();
        assert_eq!(parent_of(0), None);
        assert_eq!(parent_of(-1), None);
        assert_ne!(parent_of(1), Some(std::process::id() as i32));
    }

    #[test]
    fn close_fds_closes_exactly_the_range() {
        // High numbers, which the kernel gives no other test thread while these are closed
        // (it hands out the lowest free fd).
        let (r0, w0) = pipe().unwrap();
        // SAFETY: F_DUPFD returns a fresh fd this test owns (closed below), or -1.
        let (r, w) = unsafe {
            (
                libc::fcntl(r0.as_raw_fd(), libc::F_DUPFD, 1000),
                libc::fcntl(w0.as_raw_fd(), libc::F_DUPFD, 1000),
            )
        };
        assert!(r >= 1000 && w >= 1000);
        close_fds(r as u32, r as u32);
        assert!(!is_open(r));
        assert!(is_open(w));
        close_fds(w as u32, w as u32);
        assert!(!is_open(w));
    }

    #[test]
    fn the_proc_listing_closes_exactly_the_range() {
        // The fallback where close_range is missing, run directly; high numbers as above.
        let (r0, w0) = pipe().unwrap();
        // SAFETY: F_DUPFD returns a fresh fd this test owns (closed below), or -1.
        let (a, b) = unsafe {
            (
                libc::fcntl(r0.as_raw_fd(), libc::F_DUPFD, 1100),
                libc::fcntl(w0.as_raw_fd(), libc::F_DUPFD, 1100),
            )
        };
        assert!(a >= 1100 && b > a);
        assert!(close_listed(a as u32, a as u32));
        assert!(!is_open(a));
        assert!(is_open(b));
        assert!(is_open(r0.as_raw_fd()) && is_open(w0.as_raw_fd()));
        assert!(close_listed(b as u32, u32::MAX));
        assert!(!is_open(b));
    }

    #[test]
    fn poll_in_reports_input_and_nothing_on_a_timeout() {
        let (r, w) = pipe().unwrap();
        assert_eq!(poll_in(&[r.as_raw_fd()], 0), vec![0]);
        std::fs::File::from(w).write_all(b"x").unwrap();
        // The write end is closed now too: input and hang-up, never zero.
        assert_ne!(poll_in(&[r.as_raw_fd()], -1)[0], 0);
        let (r2, _w2) = pipe().unwrap();
        let start = Instant::now();
        assert_eq!(poll_in(&[r2.as_raw_fd()], 20), vec![0]);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn wait_pid_exit_sees_exits_waits_for_the_living_and_refuses_nonpositive_pids() {
        let mut done = std::process::Command::new("true").spawn().unwrap();
        // Not reaped yet: a zombie has exited.
        assert!(wait_pid_exit(done.id() as i32, Duration::from_secs(10)).unwrap());
        done.wait().unwrap();

        let mut alive = std::process::Command::new("sleep").arg("10").spawn().unwrap();
        let start = Instant::now();
        assert!(!wait_pid_exit(alive.id() as i32, Duration::from_millis(20)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(20));
        alive.kill().unwrap();
        alive.wait().unwrap();

        for pid in [0, -1] {
            let e = wait_pid_exit(pid, Duration::ZERO).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "pid {pid}");
        }
    }

    #[test]
    fn futex_wait_returns_when_the_word_differs_or_the_timeout_passes() {
        let word = AtomicU32::new(1);
        let start = Instant::now();
        futex_wait(&word, 0, Some(Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(5));
        let start = Instant::now();
        futex_wait(&word, 1, Some(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    /// The spare's wait: another process wakes the word in shared memory. A private futex is
    /// keyed by the waiter's address space, so this would hang until the test gives up on it.
    #[test]
    fn futex_wake_reaches_a_waiter_in_another_process() {
        const LEN: usize = 4096;
        // SAFETY: a fresh shared anonymous mapping, unmapped at the end of the test.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        // SAFETY: the mapping is page-aligned, zeroed and lives until the munmap below; both
        // words are only accessed atomically.
        let (word, ready) = unsafe { (&*(map as *const AtomicU32), &*(map as *const AtomicU32).add(1)) };
        // SAFETY: the child only reads and writes atomics, makes futex system calls (no
        // allocation, no lock) and ends with _exit, as a child of a threaded process must.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            ready.store(1, Ordering::SeqCst);
            while word.load(Ordering::SeqCst) == 0 {
                // Untimed, as a spare waits: only the wake can end this.
                futex_wait(word, 0, None);
            }
            // SAFETY: ends the child without running the test harness's code.
            unsafe { libc::_exit(0) };
        }
        // Wake only once the child sleeps in its futex wait, so the wake is what ends it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let sleeping = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('S')))
        };
        while !(ready.load(Ordering::SeqCst) == 1 && sleeping()) {
            assert!(Instant::now() < deadline, "the child never went to sleep");
            std::thread::yield_now();
        }
        word.store(1, Ordering::SeqCst);
        futex_wake(word);
        let exited = wait_pid_exit(pid, Duration::from_secs(10));
        if !matches!(exited, Ok(true)) {
            // SAFETY: this test's own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        // SAFETY: nothing refers to the mapping any more.
        unsafe { libc::munmap(map, LEN) };
        assert!(
            matches!(exited, Ok(true)),
            "the wake did not reach the other process: {exited:?}"
        );
    }
}
