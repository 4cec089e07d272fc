//! Waiting for another process to exit: `pidfd_open(2)`, polled.
//!
//! Runs in: the CLI (`steward stop` and `steward start` wait for a host to exit) and the
//! supervisor (waiting for a fork helper, and checking at start-up that pidfds work).

use std::os::fd::AsRawFd;

use crate::sys::poll::poll_in;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
}
