//! A dead-end child: answers a connection the host cannot serve (too many connections, shutting
//! down, recovering) with one error line, and closes.
//!
//! Runs in: dead-end children. A control socket's dead-end runs no plugin code and touches no
//! shared memory; a plugin listener's (`child::client::refused_main`) may run the handler's
//! rejection writer, in a mapping of the segment made read-only first (see
//! [`crate::shared::isolation`]). Either way the child holds no child slot and no dead-man flag,
//! and lives at most [`DEADLINE`]: a client that trickles bytes, or a writer that blocks, cannot
//! keep it (or a stopping host waiting for it) alive.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::child::connection::answer;
use crate::child::connection::write_line;
use crate::shared::handoff::ClientSocket;

/// The longest a dead-end child lives, from its start (decision 164).
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Gives this dead-end child its overall deadline: SIGALRM with its default action (the process
/// ends) after [`DEADLINE`]. Called before any plugin code can run in it, so the only way past
/// the deadline is a plugin that changes SIGALRM itself; the host's SIGKILL at shutdown still
/// ends that one.
pub fn arm_deadline() {
    // SAFETY: an all-zero sigaction is a valid "no flags, empty mask"; sigaction(2) only reads
    // that local (the old action's pointer is null), and SIG_DFL installs no code to run. alarm(2)
    // has no preconditions and touches no memory. Both are per-process and thread-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        libc::alarm(DEADLINE.as_secs() as libc::c_uint);
    }
}

/// Blocks (`hold`) or unblocks SIGTERM in this single-threaded child. A rejection writer's
/// dead-end holds it from before the plugin runtime installs its flag-only handler until
/// [`default_sigterm`] has put the default action back, so a SIGTERM that comes in between stays
/// pending and ends the child at the unblock instead of only setting a flag no one reads.
pub fn hold_sigterm(hold: bool) {
    let how = if hold { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
    // SAFETY: `set` is a local sigset_t that sigemptyset initialises before use; sigprocmask
    // reads it and writes no old mask (null); the process has one thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

/// Puts SIGTERM's default action back, after the plugin runtime installed its flag-only handler:
/// a rejection writer has no loop that reads the flag, and the host's SIGTERM must end it.
pub fn default_sigterm() {
    // SAFETY: as in `arm_deadline`: a valid local sigaction, no old action written, no handler.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

pub fn dead_end_main(client: ClientSocket, message: &str, state: Option<&str>) {
    crate::sys::set_blocking(client.fd.as_raw_fd());
    let mut stream = UnixStream::from(client.fd);
    let mut answer = answer::error(message);
    if let Some(state) = state {
        answer["state"] = state.into();
    }
    let _ = write_line(&mut stream, &answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client read the line before the socket goes away; never wait long.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}
