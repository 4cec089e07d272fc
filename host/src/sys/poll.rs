//! Waiting for input on fds: `poll(2)`.
//!
//! Runs in: the supervisor (its event loop) and children (a worker's `wait`, the death pipe).

use std::os::fd::{BorrowedFd, RawFd};

use rustix::event::{PollFd, PollFlags, Timespec};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::pipe::pipe;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

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
}
