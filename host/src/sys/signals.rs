//! Signals: `sigaction(2)` for the supervisor's handlers and a child's dispositions,
//! `sigprocmask(2)` around a child's creation, and the self-pipe's `write(2)` that wakes the loop.
//!
//! Runs in: the supervisor (handlers, the pending mask, masks around `fork`) and children (their
//! dispositions and the unblocking that follows).
//!
//! Signal handlers here only set a bit and write one byte to a non-blocking pipe (`write(2)` is
//! async-signal-safe); all work happens in the event loop that polls the pipe's read end.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

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

/// Makes `handler` (with `SA_RESTART`) the disposition of `sig` unless it already is; returns
/// whether it had to install it. One `sigaction` query when nothing changed: cheap enough to run
/// before each latch wait, so a plugin that reset the host's handler loses no wake-up.
pub fn ensure_handler(sig: libc::c_int, handler: libc::sighandler_t) -> bool {
    // SAFETY: querying with a null new action only writes the local `old`; installing passes a
    // zeroed (empty mask, no flags) action whose handler the caller vouches is async-signal-safe.
    // Raw libc, as in `reset_child_signals`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old);
        if old.sa_sigaction == handler {
            return false;
        }
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
    true
}
