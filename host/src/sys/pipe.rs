//! Wake-up channels: `pipe2(2)` for the supervisor's self-pipe and the death pipe, `eventfd(2)` for
//! a child's latch, and the `read(2)` loop that empties either.
//!
//! Runs in: the supervisor (the self-pipe, the death pipe) and children (the latch).

use std::os::fd::{OwnedFd, RawFd};

use rustix::event::EventfdFlags;
use rustix::pipe::PipeFlags;

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

/// Reads everything queued on a non-blocking fd (the self-pipe, or a latch eventfd).
pub fn drain(fd: RawFd) {
    let mut buf = [0u8; 256];
    // SAFETY: reading into a local buffer from an fd we own; stops on EAGAIN or EOF.
    while unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } > 0 {}
}
